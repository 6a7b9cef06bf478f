//! Shared helpers of the tong benches.
