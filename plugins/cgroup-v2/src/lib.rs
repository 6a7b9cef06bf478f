//! tong cgroup-v2 plugin (work in progress).
