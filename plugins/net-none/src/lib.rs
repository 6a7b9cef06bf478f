//! tong net-none plugin (work in progress).
