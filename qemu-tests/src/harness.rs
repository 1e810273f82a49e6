//! The test protocol shared by every QEMU kernel.
//!
//! A kernel prints, on its console, one line per test and one summary line:
//!
//! ```text
//! test x86_64::remap_visible_after_flush ... ok
//! test x86_64::write_to_read_only_faults ... FAILED: expected a fault at 0x4000_1000
//! qemu-tests: 41 passed, 1 failed
//! ```
//!
//! and then exits with status [`EXIT_SUCCESS`] when nothing failed. `cargo xtask test` parses the
//! `test ... ok|FAILED` lines (a kernel that hangs or dies before the summary line fails as a
//! whole).

use core::fmt::Write;

/// The summary line's prefix, parsed by xtask.
pub const SUMMARY_PREFIX: &str = "qemu-tests:";

/// One test: a name (printed and parsed by xtask) and a function.
pub struct Test {
    /// Printed after `test `; unique within one kernel.
    pub name: &'static str,
    /// Runs the test; `Err` carries the reason.
    pub run: fn() -> Result<(), Failure>,
}

/// Why a test failed: the conformance suite's allocation-free message type.
pub use awk_paging::conformance::Failure;

/// Returns `Err(Failure)` from the enclosing test with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::harness::Failure::new(format_args!($($arg)*)))
    };
}

/// Fails the enclosing test unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::fail!($($arg)*);
        }
    };
}

/// Fails the enclosing test unless `left == right`, printing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($arg:tt)*) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            $crate::fail!("{}: {:?} != {:?}", format_args!($($arg)*), l, r);
        }
    }};
}

/// Counts of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tests that returned `Ok`.
    pub passed: usize,
    /// Tests that returned `Err`.
    pub failed: usize,
}

/// Runs `tests` in order, printing one line per test, and returns the counts (the caller prints
/// the summary with [`print_summary`] after any further tests and then exits).
pub fn run(out: &mut dyn Write, prefix: &str, tests: &[Test], summary: &mut Summary) {
    for t in tests {
        let _ = write!(out, "test {prefix}{} ... ", t.name);
        match (t.run)() {
            Ok(()) => {
                summary.passed += 1;
                let _ = writeln!(out, "ok");
            }
            Err(e) => {
                summary.failed += 1;
                let _ = writeln!(out, "FAILED: {}", e.as_str());
            }
        }
    }
}

/// Prints the summary line xtask looks for.
pub fn print_summary(out: &mut dyn Write, summary: Summary) {
    let _ = writeln!(
        out,
        "{SUMMARY_PREFIX} {} passed, {} failed",
        summary.passed, summary.failed
    );
}

/// Exit status a kernel reports when every test passed (xtask maps each machine's exit encoding
/// back to this value).
pub const EXIT_SUCCESS: u32 = 0;
/// Exit status a kernel reports when a test failed.
pub const EXIT_FAILURE: u32 = 1;
/// Exit status a kernel reports on an unexpected exception or panic.
pub const EXIT_CRASH: u32 = 3;
