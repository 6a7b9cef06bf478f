//! tong's cgroup v1 plugin: the container gets a directory in every mounted v1
//! hierarchy (found through /proc/self/mountinfo) and, on a hybrid host, in the cgroup2
//! hierarchy too. Limits are translated from OCI `linux.resources` by a pure function
//! ([`translate`]); freezing uses the v1 freezer.

mod plugin;
mod translate;

#[cfg(test)]
mod real_tests;

pub use plugin::CgroupV1;

tong_plugin_sdk::export_cgroup_plugin!(CgroupV1);
