//! End-to-end benchmarks: the real handlers against the local emulator, with figures printed.

pub mod api;
pub mod cold_start;
pub mod pipeline;
