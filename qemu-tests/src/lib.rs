//! Bare-metal test kernels that prove awk-paging on QEMU's real MMUs.
//!
//! Nothing here builds for the host: the kernels are `[[bin]]` targets with
//! `required-features = ["kernel"]`, built by `cargo xtask` for `x86_64-unknown-none` and
//! `aarch64-unknown-none`. The shared pieces are:
//!
//! - [`harness`]: the test list, the result protocol that xtask parses, failure messages without
//!   an allocator.
//! - `x86_64` / `aarch64`: boot code, console, exception handlers with fault recovery, and the way
//!   each machine exits with a status code.
#![no_std]
// Test failures carry a fixed-size message (no allocator on bare metal).
#![allow(clippy::result_large_err)]

pub mod harness;

/// Expected descriptor bits, written out from the architecture manuals (shared with host tests).
pub mod expect {
    pub mod aarch64;
    pub mod x86_64;
}

#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod bare_harness;
#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod demo;
#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod frames;
#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod live;
#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod probe;
#[cfg(all(feature = "kernel", target_os = "none"))]
pub mod smp;

#[cfg(all(feature = "kernel", target_arch = "x86_64", target_os = "none"))]
pub mod x86_64;

#[cfg(all(feature = "kernel", target_arch = "aarch64", target_os = "none"))]
pub mod aarch64;
