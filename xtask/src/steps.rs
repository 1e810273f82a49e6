//! The steps of `cargo xtask test`, each counted in the tally.

use crate::qemu;
use crate::report::{libtest_counts, Tally};
use crate::targets::{Kernel, KERNELS, TARGETS};
use crate::toolchain::{cargo, ensure_targets, run, run_capture};

/// What `cargo xtask test` runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestOptions {
    /// Skip `cargo fmt` and `cargo clippy` (`--no-lint`).
    pub no_lint: bool,
    /// Skip the QEMU suites (`--host-only`).
    pub host_only: bool,
}

fn header(title: &str) {
    eprintln!("\n==== {title} ====");
}

/// The library crates built for each bare-metal target (the core plus that architecture's).
const BARE_METAL: [(&str, &str); 2] = [
    ("awk-paging-x86_64", TARGETS[0]),
    ("awk-paging-aarch64", TARGETS[1]),
];

/// The distinct kernel bins of the table that build for `target` and pass `present`.
fn kernel_bins(target: &str, present: impl Fn(&Kernel) -> bool) -> Vec<&'static str> {
    let mut bins: Vec<&str> = KERNELS
        .iter()
        .filter(|k| k.arch.target() == target && present(k))
        .map(|k| k.bin)
        .collect();
    bins.sort_unstable();
    bins.dedup();
    bins
}

/// One check: runs `args` through cargo, counting success as one passed, failure as one failed.
fn check(tally: &mut Tally, name: &str, args: &[&str]) {
    let ok = run(cargo().args(args));
    println!("{name} ... {}", if ok { "ok" } else { "FAILED" });
    tally.record(name, ok);
}

/// Everything CI runs, in order; a failing step does not stop the later ones.
pub fn test(tally: &mut Tally, opts: TestOptions) {
    header("bare-metal targets (rustup)");
    let ok = ensure_targets();
    println!("rustup targets ... {}", if ok { "ok" } else { "FAILED" });
    tally.record("rustup targets", ok);

    if !opts.no_lint {
        header("format");
        check(tally, "cargo fmt --check", &["fmt", "--all", "--check"]);

        header("clippy (host)");
        check(
            tally,
            "clippy host",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        );

        header("clippy (bare-metal libraries)");
        for (krate, target) in BARE_METAL {
            check(
                tally,
                &format!("clippy {krate} --target {target}"),
                &[
                    "clippy",
                    "-p",
                    "awk-paging",
                    "-p",
                    krate,
                    "--target",
                    target,
                    "--",
                    "-D",
                    "warnings",
                ],
            );
        }

        header("clippy (QEMU kernels)");
        // Per target, only that architecture's kernels: `--bins` would also check the other
        // architecture's bins, which do not build for this target.
        for target in TARGETS {
            let mut args = vec![
                "clippy",
                "-p",
                "qemu-tests",
                "--features",
                qemu::FEATURES,
                "--target",
                target,
            ];
            // A kernel without a source yet fails in the QEMU step instead.
            let bins = kernel_bins(target, Kernel::exists);
            if bins.is_empty() {
                args.push("--lib");
            }
            for bin in bins {
                args.extend(["--bin", bin]);
            }
            args.extend(["--", "-D", "warnings"]);
            check(
                tally,
                &format!("clippy qemu-tests kernels --target {target}"),
                &args,
            );
        }
    }

    header("host tests");
    let (ok, out) = run_capture(cargo().args(["test", "--workspace"]));
    match libtest_counts(&out) {
        Some((p, f)) => {
            println!("host tests: {p} passed, {f} failed");
            tally.add("host tests", p, f);
            if !ok && f == 0 {
                // E.g. one test crate failed to compile after others ran.
                println!("cargo test exit status ... FAILED");
                tally.record(
                    "cargo test (failed without a failing test: build error?)",
                    false,
                );
            }
        }
        None => {
            println!("cargo test: no test results ... FAILED");
            tally.record("cargo test (no test results: build failed?)", false);
        }
    }

    header("bare-metal builds (no_std)");
    for (krate, target) in BARE_METAL {
        check(
            tally,
            &format!("build awk-paging {krate} --target {target}"),
            &["build", "-p", "awk-paging", "-p", krate, "--target", target],
        );
    }

    if !opts.host_only {
        header("QEMU test kernels");
        qemu::test_kernels(tally, None, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_bins_per_target() {
        assert_eq!(
            kernel_bins("aarch64-unknown-none", |_| true),
            ["aarch64-demo", "aarch64-tests"]
        );
        assert_eq!(
            kernel_bins("x86_64-unknown-none", |k| k.is_test()),
            ["x86_64-tests"]
        );
    }
}
