#!/usr/bin/env python3
"""The timing core of benches/side-by-side (which sets up the bundle and the mount namespaces).

Every runtime command is started the same way: this process setns()es into the
runtime's mount namespace (untimed), then posix_spawn()s the runtime directly (no wrapper
process) and waits; the time runs from the spawn until the wait returns. Peak RSS comes
from a separate pass through GNU time. Samples are interleaved in a de Bruijn order, so each runtime follows each
one (itself too) equally often: what ran just before moves a sample by up to a quarter
on this VM (the previous container's teardown goes on in the kernel).
"""
import argparse
import collections
import ctypes
import itertools
import os
import statistics
import sys
import time

CLONE_NEWNS = 0x00020000
libc = ctypes.CDLL(None, use_errno=True)


def de_bruijn(n):
    """A cyclic order of 0..n-1 (each n times) in which every ordered pair, a runtime after
    itself included, occurs once: run back to back, each runtime follows each one equally
    often (rounds through every permutation do not: the joins between rounds repeat pairs)."""
    a, seq = [0] * (2 * n + 1), []

    def db(t, p):
        if t > 2:
            if 2 % p == 0:
                seq.extend(a[1 : p + 1])
            return
        a[t] = a[t - p]
        db(t + 1, p)
        for j in range(a[t - p] + 1, n):
            a[t] = j
            db(t + 1, t)

    db(1, 1)
    return seq


def enter(ns_fd):
    """Moves this (single-threaded) process into a mount namespace, outside the timed part."""
    if libc.setns(ns_fd, CLONE_NEWNS) != 0:
        sys.exit(f"side-by-side: setns: {os.strerror(ctypes.get_errno())}")


DEVNULL = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]


def spawn(argv, ns_fd):
    """Runs argv in the mount namespace ns_fd; returns (ms, exit status). posix_spawn
    (vfork + exec) costs about a fifth of a fork of this interpreter on this VM."""
    enter(ns_fd)
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=DEVNULL)
    _, status = os.waitpid(pid, 0)
    return (time.perf_counter() - t0) * 1000, os.waitstatus_to_exitcode(status)


def peak_rss(argv, ns_fd, scratch):
    """Peak RSS (KiB) of argv and the children it waited for, by GNU time (a small parent:
    the high-water mark a child inherits across exec is its parent's)."""
    out = os.path.join(scratch, "rss")
    _, code = spawn(["/usr/bin/time", "-f", "%M", "-o", out, *argv], ns_fd)
    if code != 0:
        sys.exit(f"side-by-side: `{' '.join(argv)}` failed with exit code {code}")
    with open(out) as f:
        return int(f.read().split()[-1])


class Runtime:
    def __init__(self, name, binary, root, ns_path):
        self.name, self.binary, self.root = name, binary, root
        self.ns_fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)

    def cmd(self, *args):
        return [self.binary, "--root", self.root, *args]


def run_checked(rt, *args):
    ms, code = spawn(rt.cmd(*args), rt.ns_fd)
    if code != 0:
        sys.exit(f"side-by-side: `{rt.name} {' '.join(args)}` failed with exit code {code}")
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--runtime", action="append", required=True, help="NAME=BINARY=ROOT=MOUNT_NS_PATH")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--idle", type=float, default=0.0)
    ap.add_argument("--rss-samples", type=int, default=3)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--measures", default="run,split,batch", help="comma-separated subset of run,split,batch")
    ap.add_argument("--id-prefix", default=f"sbs-{os.getpid()}-", help="container ids start with this")
    ap.add_argument("--order", choices=("all", "fixed"), default="all",
                    help="all: each runtime follows each equally often; fixed: forward then reverse (the old direct-ab's)")
    ap.add_argument("--samples-dir", help="also write each measure's samples (ms, one a line) to DIR/MEASURE.RUNTIME")
    a = ap.parse_args()
    rts = [Runtime(*spec.split("=", 3)) for spec in a.runtime]
    n = len(rts)
    cycle = de_bruijn(n) if a.order == "all" else list(range(n)) + list(reversed(range(n)))
    seq = itertools.count()

    def fresh(rt):
        return f"{a.id_prefix}{rt.name}-{next(seq)}"

    def one_run(rt):
        return run_checked(rt, "run", "--bundle", a.bundle, fresh(rt))

    def one_split(rt):
        cid = fresh(rt)
        return sum(run_checked(rt, *args) for args in
                   (("create", "--bundle", a.bundle, cid), ("start", cid), ("delete", "-f", cid)))

    def one_batch(rt):
        return sum(one_run(rt) for _ in range(a.batch))

    # The harness's own cost: the same spawn of /bin/true.
    harness = [spawn(["/bin/true"], rts[0].ns_fd)[0] for _ in range(max(a.runs, 5))]
    for rt in rts:  # warm the page cache and each runtime's first-run work
        one_run(rt)

    results = {}
    measures = a.measures.split(",")
    after = collections.defaultdict(list)  # (runtime, the runtime before it) -> run samples
    for measure, fn, count in (("run", one_run, a.runs), ("split", one_split, a.runs), ("batch", one_batch, a.rounds)):
        if measure not in measures:
            continue
        samples = {rt.name: [] for rt in rts}
        prev = rts[-1].name  # the warm-up just before the run measure ends with it
        for k in itertools.cycle(cycle):
            if all(len(xs) >= count for xs in samples.values()):
                break
            if len(samples[rts[k].name]) >= count:
                continue
            if measure != "batch" and a.idle:
                time.sleep(a.idle)
            samples[rts[k].name].append(fn(rts[k]))
            if measure == "run":
                after[(rts[k].name, prev)].append(samples[rts[k].name][-1])
            prev = rts[k].name
        results[measure] = samples
        if a.samples_dir:
            for name, xs in samples.items():
                with open(os.path.join(a.samples_dir, f"{measure}.{name}"), "w") as f:
                    f.write("".join(f"{x:.3f}\n" for x in xs))

    rss = {}
    for rt in rts if a.rss_samples else []:  # max of a few samples, as GNU time reports one process at a time
        cid = fresh(rt)
        rss[rt.name] = (
            max(peak_rss(rt.cmd("run", "--bundle", a.bundle, fresh(rt)), rt.ns_fd, a.scratch) for _ in range(a.rss_samples)),
            peak_rss(rt.cmd("create", "--bundle", a.bundle, cid), rt.ns_fd, a.scratch),
        )
        run_checked(rt, "delete", "-f", cid)

    def stats(xs):
        return statistics.median(xs), min(xs), max(xs)

    print(f"harness floor (posix_spawn of /bin/true, wait): median {statistics.median(harness):.2f} ms, "
          "included in every time below")
    titles = {
        "run": f"run of /bin/true ({a.runs} interleaved runs)",
        "split": f"create; start; delete -f ({a.runs} interleaved runs)",
        "batch": f"{a.batch} sequential containers ({a.rounds} interleaved rounds)",
    }
    medians = {}
    for measure in measures:
        print(f"\n{titles[measure]}")
        print(f"  {'runtime':6} {'median ms':>10} {'min ms':>10} {'max ms':>10} {'x crun':>8}")
        crun = statistics.median(results[measure]["crun"]) if "crun" in results[measure] else None
        for rt in rts:
            m, lo, hi = stats(results[measure][rt.name])
            medians[(measure, rt.name)] = m
            ratio = f"{m / crun:.2f}" if crun else "-"
            print(f"  {rt.name:6} {m:10.2f} {lo:10.2f} {hi:10.2f} {ratio:>8}")

    if after:
        print("\nrun, by the runtime that ran just before (median ms, samples)")
        for (name, prev), xs in sorted(after.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            if prev:
                print(f"  {name:6} after {prev:6} {statistics.median(xs):8.2f} {len(xs):4}")

    if not rss:
        return
    print(f"\npeak RSS of the runtime process, KiB (GNU time %M, max of {a.rss_samples}; includes waited-for children)")
    print(f"  {'runtime':6} {'run':>8} {'create':>8}")
    for rt in rts:
        print(f"  {rt.name:6} {rss[rt.name][0]:8} {rss[rt.name][1]:8}")

    if "crun" in rss and "tong" in rss and len(measures) == 3:
        def ratio(measure):
            return medians[(measure, "tong")] / medians[(measure, "crun")]

        def verdict(v, target):
            return "met" if v <= target else "NOT met"

        r, s, b = ratio("run"), ratio("split"), ratio("batch")
        if "floor" in rss:
            def floor_ratio(measure):
                return medians[(measure, "floor")] / medians[(measure, "crun")]

            print(f"\nfloor (benches/floor-runtime: the kernel work alone) x crun: run {floor_ratio('run'):.2f}, "
                  f"{a.batch}x {floor_ratio('batch'):.2f}, create+start+delete {floor_ratio('split'):.2f}; "
                  f"peak RSS {rss['floor'][0]} KiB")
        print(f"\ntargets: run {r:.2f} (<= 0.5: {verdict(r, 0.5)}), {a.batch}x {b:.2f} (<= 0.5: {verdict(b, 0.5)}), "
              f"create+start+delete {s:.2f} (<= 0.6: {verdict(s, 0.6)}); peak RSS of run "
              f"{rss['tong'][0]} vs {rss['crun'][0]} KiB ({verdict(rss['tong'][0] / rss['crun'][0], 1.0)})")


if __name__ == "__main__":
    main()
