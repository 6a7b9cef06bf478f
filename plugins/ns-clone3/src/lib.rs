//! tong ns-clone3 plugin (work in progress).
