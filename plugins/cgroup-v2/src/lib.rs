//! tong's cgroup v2 plugin: the container gets one directory in the unified hierarchy
//! (found through /proc/self/mountinfo). Limits are translated from OCI
//! `linux.resources` by a pure function ([`translate`]), the needed controllers are
//! delegated down from the hierarchy's root, and the directory fd is offered for
//! clone3's CLONE_INTO_CGROUP.

mod plugin;
mod translate;

#[cfg(test)]
mod real_tests;

pub use plugin::CgroupV2;

tong_plugin_sdk::export_cgroup_plugin!(CgroupV2);
