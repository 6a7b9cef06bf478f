#!/usr/bin/env python3
"""The kernel's own cost of the steps of a container start, each measured alone.

    kernel-floor.py RUNS

Per namespace: unshare(2) of that namespace alone, timed inside a forked child (the
child exits right after; teardown, e.g. of a network namespace, goes on in the kernel
afterwards). cgroup v1: mkdir and rmdir of one empty cgroup in each hierarchy mounted
under /sys/fs/cgroup, and the move of a process into it with the kernel's cgroup
migration lock warm (a move just before) and cold (150 ms idle before). Mounts: each
filesystem of the default spec mounted once in a private mount namespace. Needs root;
everything it creates is removed, also on failure.
"""
import ctypes
import os
import shutil
import statistics
import sys
import tempfile
import time

libc = ctypes.CDLL(None, use_errno=True)
NS = {"mnt": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "pid": 0x20000000,
      "net": 0x40000000, "cgroup": 0x02000000}


def in_child(fn):
    """Runs fn() in a forked child; returns what it measured (ms) through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, repr(fn()).encode())
            os._exit(0)
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not out:
        sys.exit(f"kernel-floor: measurement failed in {fn.__name__}")
    return eval(out)  # a float or a dict of floats written by the child above


def unshare_ms(flags):
    def measure():
        t0 = time.perf_counter()
        if libc.unshare(flags) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        return (time.perf_counter() - t0) * 1000
    return measure


MOUNTS = {
    "proc": (b"proc", b"proc", 0, None),
    "tmpfs (/dev)": (b"tmpfs", b"tmpfs", 2, b"mode=755,size=65536k"),
    "devpts": (b"devpts", b"devpts", 2 | 8, b"newinstance,ptmxmode=0666,mode=0620"),
    "mqueue": (b"mqueue", b"mqueue", 2 | 4 | 8, None),
    "sysfs (ro)": (b"sysfs", b"sysfs", 1 | 2 | 4 | 8, None),
}


def mounts(base):
    """Each mount of the default spec onto an empty directory under base, in a private
    mount namespace of the child (the mounts go away with it; the parent removes base)."""
    if libc.unshare(NS["mnt"]) != 0 or libc.mount(None, b"/", None, 0x40000 | 0x4000, None) != 0:  # MS_PRIVATE|MS_REC
        raise OSError(ctypes.get_errno(), "private mount namespace")
    out = {}
    for name, (src, fstype, flags, data) in MOUNTS.items():
        target = os.path.join(base, name.split()[0])
        t0 = time.perf_counter()
        if libc.mount(src, target.encode(), fstype, flags, data) != 0:
            raise OSError(ctypes.get_errno(), f"mount {name}")
        out[name] = (time.perf_counter() - t0) * 1000
    return out


def cgroup_v1(runs):
    roots = sorted(
        os.path.join("/sys/fs/cgroup", d) for d in os.listdir("/sys/fs/cgroup")
        if os.path.isfile(os.path.join("/sys/fs/cgroup", d, "cgroup.procs"))
        and not os.path.islink(os.path.join("/sys/fs/cgroup", d))
        and os.path.isfile(os.path.join("/sys/fs/cgroup", d, "tasks"))  # v1 hierarchies only
    )
    name = f"tong-kernel-floor-{os.getpid()}"
    mk, rm, warm, cold = [], [], [], []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            for root in roots:
                os.mkdir(os.path.join(root, name))
            mk.append((time.perf_counter() - t0) * 1000)

            def move(cold_lock, hierarchy=os.path.join(roots[0], name)):
                def measure():
                    if cold_lock:
                        time.sleep(0.15)
                    else:  # a no-op move warms the lock
                        with open(os.path.join(os.path.dirname(hierarchy), "cgroup.procs"), "w") as f:
                            f.write(str(os.getpid()))
                    t0 = time.perf_counter()
                    with open(os.path.join(hierarchy, "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))
                    return (time.perf_counter() - t0) * 1000
                return measure
            warm.append(in_child(move(False)))
            cold.append(in_child(move(True)))
            time.sleep(0.01)  # the children have exited: their cgroups are empty
            t0 = time.perf_counter()
            for root in roots:
                os.rmdir(os.path.join(root, name))
            rm.append((time.perf_counter() - t0) * 1000)
    finally:
        for root in roots:
            try:
                os.rmdir(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return len(roots), mk, rm, warm, cold


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    med = statistics.median
    print(f"kernel floor (each step alone, median of {runs}, ms)")
    for ns, flag in NS.items():
        print(f"  unshare {ns:23} {med([in_child(unshare_ms(flag)) for _ in range(runs)]):7.3f}")
    print(f"  unshare {'mnt+uts+ipc+pid+net':23} "
          f"{med([in_child(unshare_ms(sum(NS[n] for n in ('mnt', 'uts', 'ipc', 'pid', 'net')))) for _ in range(runs)]):7.3f}")
    base = tempfile.mkdtemp(prefix="tong-kernel-floor.")
    try:
        for name in MOUNTS:
            os.mkdir(os.path.join(base, name.split()[0]))
        per_mount = [in_child(lambda: mounts(base)) for _ in range(runs)]
    finally:
        shutil.rmtree(base)
    for name in per_mount[0]:
        print(f"  mount {name:25} {med([m[name] for m in per_mount]):7.3f}")
    n, mk, rm, warm, cold = cgroup_v1(runs)
    print(f"  cgroup v1 mkdir x {n} hierarchies  {med(mk):7.3f}")
    print(f"  cgroup v1 rmdir x {n} hierarchies  {med(rm):7.3f}")
    print(f"  cgroup.procs move, lock warm      {med(warm):7.3f}")
    print(f"  cgroup.procs move, lock cold      {med(cold):7.3f}   (after 150 ms with no migration)")


if __name__ == "__main__":
    main()
