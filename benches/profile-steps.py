#!/usr/bin/env python3
"""Groups the system calls of `strace -f -T -ttt` traces of one runtime's `run` into steps.

    profile-steps.py --label NAME --untraced MS_FILE --bundle DIR --root DIR TRACE...

Each trace is one `RUNTIME run` of the bundle. Wall time is charged by event order: the
time from the start of one system call (any process or thread of the run) to the start
of the next is charged to the first one's step, so the steps add up to the traced total
and a blocking call (wait, a pipe read) is charged only until another process does
something. User-space work between two calls goes to the step of the call before it.

Steps are told apart by what the calls touch (paths, flags) and by which process makes
them (the runtime, a helper thread, the container child): see classify() below.
Prints medians over the traces: wall ms, an estimate without strace, system calls.
"""
import argparse
import re
import statistics
import sys
from collections import defaultdict

STEPS = [
    "exec + dynamic linking",
    "runtime init, CLI parse",
    "config read + parse",
    "plugin discovery + dlopen",
    "state dir + state writes",
    "cgroup: discovery",
    "cgroup: create (mkdir)",
    "cgroup: limits, devices",
    "cgroup: lock warm-up (thread)",
    "clone with namespaces",
    "cgroup: attach (cgroup.procs)",
    "network: loopback",
    "child: hostname, ids, caps, seccomp",
    "rootfs: mounts, devices, pivot",
    "exec of /bin/true (+ its run)",
    "sync parent/child, other",
    "wait for exit",
    "teardown: cgroup rmdir",
    "teardown: other",
]

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z_0-9]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
DUR = re.compile(r"<(\d+\.\d+)>\s*$")
CGROUP = re.compile(r'"/sys/fs/cgroup/([^/"]+)')
MOUNT = re.compile(r'^mount\("([^"]*)", "([^"]*)", (?:"([^"]*)"|NULL)')


def parse(path):
    """Events (start, pid, syscall, text, duration) of one trace, in start order, and the exits."""
    events, pending, exits = [], {}, {}
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            if rest.startswith("+++"):
                exits[pid] = ts
                continue
            if rest.startswith("---"):
                continue
            r = RESUMED.match(rest)
            if r:
                if pid in pending:
                    start, name, head = pending.pop(pid)
                    d = DUR.search(rest)
                    events.append((start, pid, name, head + r.group(2), float(d.group(1)) if d else 0.0))
                continue
            c = CALL.match(rest)
            if not c:
                continue
            if rest.endswith("<unfinished ...>"):
                pending[pid] = (ts, c.group(1), rest[: -len("<unfinished ...>")])
                continue
            d = DUR.search(rest)
            events.append((ts, pid, c.group(1), rest, float(d.group(1)) if d else 0.0))
    for pid, (start, name, head) in pending.items():  # exit_group, execve that never returned
        events.append((start, pid, name, head, 0.0))
    events.sort(key=lambda e: e[0])
    return events, exits


class Classifier:
    """Assigns each event a step; steps are sticky per process until another rule matches."""

    def __init__(self, bundle, root, exe_dir):
        self.bundle, self.root, self.exe_dir = bundle, root, exe_dir
        self.main = None
        self.threads = set()
        self.container = None
        self.container_exited = False
        self.sticky = {}
        self.ldcache_fd = None
        self.ldcache_addr = None

    def step(self, pid, name, text):
        if self.main is None:
            self.main = pid
        s = self._rule(pid, name, text)
        if s is None:
            s = self.sticky.get(pid) or self._default(pid)
        self.sticky[pid] = s
        return s

    def _default(self, pid):
        if pid in self.threads:
            return "cgroup: lock warm-up (thread)"
        if pid == self.container:
            return "sync parent/child, other"
        if pid != self.main:
            return "sync parent/child, other"
        return "runtime init, CLI parse"

    def _rule(self, pid, name, text):
        cur = self.sticky.get(pid)
        # Dynamic linking: from the runtime's execve until the loader unmaps ld.so.cache.
        if pid == self.main and name in ("execve", "execveat") and cur in (None, "exec + dynamic linking", "runtime init, CLI parse"):
            return "exec + dynamic linking"
        if cur == "exec + dynamic linking":
            if name == "openat" and "/etc/ld.so.cache" in text:
                self.ldcache_fd = text.rsplit("= ", 1)[-1].split()[0]
            elif name == "mmap" and self.ldcache_fd and f", {self.ldcache_fd}, 0)" in text:
                self.ldcache_addr = text.rsplit("= ", 1)[-1].split()[0]
                self.ldcache_fd = None
            elif name == "munmap" and self.ldcache_addr and text.startswith(f"munmap({self.ldcache_addr},"):
                return "runtime init, CLI parse"
            return None
        if name in ("clone", "clone3", "fork", "vfork"):
            child = text.rsplit("= ", 1)[-1].split()[0]
            if "CLONE_THREAD" in text:
                if child.isdigit():
                    self.threads.add(int(child))
                return None
            if child.isdigit() and self.container is None:
                self.container = int(child)
                self.sticky[self.container] = "sync parent/child, other"
            return "clone with namespaces"
        if name in ("unshare",) and "CLONE_NEW" in text:
            return "clone with namespaces"
        if name in ("execve", "execveat") and pid == self.main and cur == "runtime init, CLI parse":
            return "exec + dynamic linking"  # crun re-executes itself from a sealed copy
        if name in ("execve", "execveat") and pid == self.container:
            return "exec of /bin/true (+ its run)"
        if pid == self.container and cur == "exec of /bin/true (+ its run)":
            return None
        if "/sys/fs/cgroup" in text:
            if pid in self.threads:
                return "cgroup: lock warm-up (thread)"
            if name in ("rmdir", "unlinkat") or (name == "openat" and "cgroup.procs" in text and self.container_exited):
                return "teardown: cgroup rmdir"
            if name in ("mkdir", "mkdirat"):
                return "cgroup: create (mkdir)"
            if "cgroup.procs" in text:
                return "cgroup: attach (cgroup.procs)"
            if name in ("statfs", "access", "statx", "newfstatat") and text.count("/") <= 5 and "cgroup.controllers" not in text:
                return "cgroup: discovery"
            return "cgroup: limits, devices"
        if any(p in text for p in ("/proc/self/cgroup", "/proc/self/mountinfo", "cgroup.controllers")):
            return "cgroup: lock warm-up (thread)" if pid in self.threads else "cgroup: discovery"
        if self.root and self.root in text:
            return "teardown: other" if self.container_exited else "state dir + state writes"
        if "config.json" in text and pid == self.main:
            return "config read + parse"
        if "libtong_plugin" in text or "tong-plugin-cache" in text or "/tong/plugins" in text or (
            self.exe_dir and f'"{self.exe_dir}"' in text and "O_DIRECTORY" in text
        ):
            return "plugin discovery + dlopen"
        if pid == self.main:
            if name == "setns" and "CLONE_NEWNET" in text or "SIOCSIFFLAGS" in text or "SIOCGIFFLAGS" in text:
                return "network: loopback"
            if name in ("wait4", "waitid", "poll", "ppoll", "epoll_wait", "epoll_pwait", "signalfd4") and self.container and not self.container_exited:
                return "wait for exit"
            if self.container_exited and cur not in ("teardown: cgroup rmdir", "teardown: other"):
                return "teardown: other"
        if pid != self.main and pid not in self.threads:
            if name in ("mount", "umount2", "pivot_root", "openat2", "mkdirat", "mknodat", "symlinkat", "fchownat", "chroot", "fchdir", "umask"):
                return "rootfs: mounts, devices, pivot"
            if name in ("sethostname", "setdomainname", "setgroups", "setresuid", "setresgid", "capset", "seccomp") or (
                name == "prctl" and ("NO_NEW_PRIVS" in text or "CAPBSET" in text or "KEEPCAPS" in text)
            ):
                return "child: hostname, ids, caps, seccomp"
            if name == "read" and cur == "rootfs: mounts, devices, pivot":
                return "sync parent/child, other"
        return None


def analyse(path, bundle, root, exe_dir):
    events, exits = parse(path)
    cls = Classifier(bundle, root, exe_dir)
    wall, count, durs = defaultdict(float), defaultdict(int), defaultdict(list)
    procs_fd = {}  # (pid, fd) -> hierarchy, for the writes to an open cgroup.procs
    end = max(list(exits.values()) + [e[0] + e[4] for e in events])
    for i, (ts, pid, name, text, dur) in enumerate(events):
        if cls.container is not None and cls.container in exits and ts >= exits[cls.container]:
            cls.container_exited = True
        step = cls.step(pid, name, text)
        nxt = events[i + 1][0] if i + 1 < len(events) else end
        wall[step] += nxt - ts
        count[step] += 1
        cg = CGROUP.search(text)
        if cg and name in ("mkdir", "mkdirat", "rmdir"):
            durs[f"{name.replace('mkdirat', 'mkdir')} {cg.group(1)}"].append(dur)
        elif cg and name == "openat" and "cgroup.procs" in text:
            procs_fd[(pid, text.rsplit("= ", 1)[-1].split()[0])] = cg.group(1)
        elif name == "write" and (pid, text[6:].split(",", 1)[0]) in procs_fd:
            durs[f"attach {procs_fd.pop((pid, text[6:].split(',', 1)[0]))}"].append(dur)
        m = MOUNT.match(f"{name}({text.split('(', 1)[-1]}") if name == "mount" else None
        if m:
            durs[f"mount {m.group(3) or ('bind' if 'MS_BIND' in text else 'flags')} {m.group(1)}"].append(dur)
        if name in ("umount2", "pivot_root", "clone", "clone3", "execve", "execveat", "unshare"):
            durs[name].append(dur)
    total = end - events[0][0]
    return wall, count, total, len(events), durs


def med(xs):
    return statistics.median(xs) if xs else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--untraced", required=True, help="file of untraced run times, ms, one a line")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--exe-dir", default="")
    ap.add_argument("--details", action="store_true", help="also print per-hierarchy and per-mount call times")
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args()
    runs = [analyse(t, a.bundle, a.root, a.exe_dir) for t in a.traces]
    untraced = [float(x) for x in open(a.untraced).read().split()]
    traced_total = med([r[2] * 1000 for r in runs])
    calls_total = med([r[3] for r in runs])
    untraced_total = med(untraced)
    # strace's cost is roughly per system call: spread the traced-minus-untraced difference
    # over the calls, and take each step's share off it.
    per_call = max(0.0, (traced_total - untraced_total) / calls_total) if calls_total else 0.0
    print(f"{a.label}: {len(runs)} traced runs, median {traced_total:.2f} ms traced, "
          f"{untraced_total:.2f} ms untraced ({len(untraced)} runs), {calls_total:.0f} system calls;")
    print(f"  strace adds ~{per_call * 1000:.0f} us per call; 'untraced est.' = traced - calls x that")
    print(f"  {'step':38} {'traced ms':>10} {'untraced est.':>14} {'calls':>6}")
    rows = []
    for step in STEPS:
        w = med([r[0].get(step, 0.0) * 1000 for r in runs])
        c = med([r[1].get(step, 0) for r in runs])
        if w == 0 and c == 0:
            continue
        rows.append((step, w, max(0.0, w - c * per_call), c))
    for step, w, est, c in rows:
        print(f"  {step:38} {w:10.2f} {est:14.2f} {c:6.0f}")
    print(f"  {'total (medians of the whole run)':38} {traced_total:10.2f} {untraced_total:14.2f} {calls_total:6.0f}")
    if a.details:
        keys = sorted({k for r in runs for k in r[4]})
        print(f"  single calls, median of the call's own time (strace -T), ms:")
        for k in keys:
            vals = [v for r in runs for v in r[4].get(k, [])]
            print(f"    {k:60} {med(vals) * 1000:8.3f}  (n={len(vals)})")


if __name__ == "__main__":
    sys.exit(main())
