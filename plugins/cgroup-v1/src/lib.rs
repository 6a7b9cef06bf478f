//! tong cgroup-v1 plugin (work in progress).
