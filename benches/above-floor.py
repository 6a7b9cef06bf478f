#!/usr/bin/env python3
"""Where tong's CPU time goes above the floor: a CPU profile of `tong run` and of the floor
runtime (benches/floor-runtime/floor.c, the same kernel work alone) on the same bundle,
each sample charged to one category, in ms of CPU per container.

    benches/above-floor.py [--runs N] [--tong BINARY]

Needs root, gcc, perf (apt-get install linux-perf) and a release build. Samples come from
`perf record -e cpu-clock -g` (a software clock: it works where the VM offers no hardware
counters); a sample is charged to the first category its call chain matches, in the
order below, so a page fault taken inside the dynamic loader counts as a page fault.
`perf stat` gives the total CPU time per container (task-clock, all threads and children).
"""
import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# (category, test on the call chain: list of (symbol, dso) from the leaf up)
CATEGORIES = [
    ("the container's /bin/true (exec, run, exit)", lambda comm, ch: comm == "true"),
    ("page faults", lambda comm, ch: any(s == "asm_exc_page_fault" for s, _ in ch)),
    ("clone (namespaces, threads, fork)", lambda comm, ch: any(s in ("__do_sys_clone3", "__do_sys_clone", "__x64_sys_clone", "__x64_sys_vfork") for s, _ in ch)),
    ("execve of the runtime and its stub", lambda comm, ch: any(s in ("__x64_sys_execve", "__x64_sys_execveat") for s, _ in ch)),
    ("process and thread exit", lambda comm, ch: any(s in ("do_exit", "do_group_exit") for s, _ in ch)),
    ("cgroup files (mkdir, rmdir, read, write)", lambda comm, ch: any(s.startswith(("cgroup_", "__cgroup", "cgroup1_", "kernfs_")) for s, _ in ch)),
    ("mounts, pivot_root", lambda comm, ch: any(s in ("__x64_sys_mount", "__x64_sys_umount", "__do_sys_pivot_root", "__x64_sys_open_tree", "__x64_sys_move_mount", "__x64_sys_mount_setattr", "__x64_sys_fsmount", "__x64_sys_fsconfig") for s, _ in ch)),
    ("/proc reads (mountinfo, cgroup, stat)", lambda comm, ch: any(s.startswith(("seq_read", "proc_")) for s, _ in ch)),
    ("other system calls", lambda comm, ch: any(s.startswith("entry_SYSCALL") for s, _ in ch)),
    ("dynamic loader (user space)", lambda comm, ch: bool(ch) and "ld-linux" in ch[0][1]),
    ("libc, libgcc (user space)", lambda comm, ch: bool(ch) and ("libc.so" in ch[0][1] or "libgcc" in ch[0][1])),
    ("the runtime's own code (user space)", lambda comm, ch: bool(ch) and "kernel.kallsyms" not in ch[0][1]),
    ("other kernel work (interrupts, scheduling)", lambda comm, ch: True),
]


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def profile(name, loop, runs, scratch):
    """CPU ms per container by category, and total task-clock ms per container."""
    data = os.path.join(scratch, f"{name}.perf")
    sh("perf", "record", "-q", "-e", "cpu-clock", "-F", "20000", "-g", "-o", data, "--", "sh", "-c", loop,
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = subprocess.run(["perf", "script", "-i", data, "-F", "comm,period,ip,sym,dso"],
                          check=True, capture_output=True, text=True).stdout
    by_cat = collections.Counter()
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        head = lines[0].split()
        comm, period = head[0], int(head[-1]) if head[-1].isdigit() else 0
        if comm in ("sh", "seq", "perf"):
            continue
        chain = []
        for frame in lines[1:]:
            parts = frame.split()
            sym = parts[1].split("+")[0] if len(parts) > 2 else ""
            dso = frame.rsplit("(", 1)[-1].rstrip(")")
            chain.append((sym, dso))
        for cat, test in CATEGORIES:
            if test(comm, chain):
                by_cat[cat] += period
                break
    return {cat: ns / runs / 1e6 for cat, ns in by_cat.items()}


def task_clock(argv_for, runs):
    """Mean task-clock (ms) of `runs` containers, from perf stat -r."""
    out = subprocess.run(["perf", "stat", "-x", ",", "-e", "task-clock", "-r", str(runs), "--", *argv_for],
                         check=True, capture_output=True, text=True).stderr
    for line in out.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and "task-clock" in fields[2]:
            return float(fields[0])
    sys.exit(f"above-floor: no task-clock in perf stat output:\n{out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--tong", default=os.path.join(REPO, "target/release/tong"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: above-floor needs root (runtimes create namespaces and cgroups)")
        return
    for tool in ("perf", "gcc"):
        if not shutil.which(tool):
            sys.exit(f"above-floor: {tool} not found (apt-get install linux-perf gcc)")
    scratch = tempfile.mkdtemp(prefix="tong-above-floor.")
    try:
        bundle = os.path.join(scratch, "bundle")
        sh(os.path.join(REPO, "ci/make-bundle"), bundle, "/bin/true", stdout=subprocess.DEVNULL)
        floor = os.path.join(scratch, "floor")
        sh("gcc", "-O2", "-static", "-w", "-o", floor, os.path.join(HERE, "floor-runtime/floor.c"))
        tong_root, floor_root = os.path.join(scratch, "root-tong"), os.path.join(scratch, "root-floor")
        # Both on the host's layout. The floor mounts only inside the container's own new
        # mount namespace (it always makes one), never in the caller's.
        tong_loop = f"for i in $(seq {a.runs}); do {a.tong} --root {tong_root} run --bundle {bundle} t$i; done"
        floor_loop = f"for i in $(seq {a.runs}); do {floor} --root {floor_root} run --bundle {bundle} f$i; done"
        sh(a.tong, "--root", tong_root, "run", "--bundle", bundle, "warm", stdout=subprocess.DEVNULL)
        tong_cpu = task_clock([a.tong, "--root", tong_root, "run", "--bundle", bundle, "stat"], a.runs)
        floor_cpu = task_clock([floor, "--root", floor_root, "run", "--bundle", bundle, "stat"], a.runs)
        tong = profile("tong", tong_loop, a.runs, scratch)
        fl = profile("floor", floor_loop, a.runs, scratch)
        print(f"CPU per container (perf stat task-clock, mean of {a.runs}, all threads and children):")
        print(f"  tong {tong_cpu:.2f} ms, floor {floor_cpu:.2f} ms")
        print(f"\nCPU per container by category (perf record, {a.runs} containers each), ms:")
        print(f"  {'category':46} {'tong':>7} {'floor':>7} {'tong-floor':>10}")
        for cat, _ in CATEGORIES:
            t, f = tong.get(cat, 0.0), fl.get(cat, 0.0)
            print(f"  {cat:46} {t:7.2f} {f:7.2f} {t - f:10.2f}")
        print(f"  {'total sampled':46} {sum(tong.values()):7.2f} {sum(fl.values()):7.2f} "
              f"{sum(tong.values()) - sum(fl.values()):10.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
