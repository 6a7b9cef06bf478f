//! tong rootfs-pivot plugin (work in progress).
