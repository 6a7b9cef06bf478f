//! tong core
