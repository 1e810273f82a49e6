//! The steps of `cargo xtask test`, each counted in the tally.

use crate::qemu;
use crate::report::{libtest_counts, Tally};
use crate::toolchain::{cargo, ensure_targets, run, run_capture};

fn header(title: &str) {
    eprintln!("\n==== {title} ====");
}

/// Everything CI runs.
pub fn test(tally: &mut Tally, lint: bool, host_only: bool) {
    header("bare-metal targets");
    let targets_ok = ensure_targets();
    tally.record("rustup targets", targets_ok);

    if lint {
        header("format");
        tally.record(
            "cargo fmt --check",
            run(cargo().args(["fmt", "--all", "--check"])),
        );
        header("clippy (host)");
        tally.record(
            "clippy host",
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
        );
        header("clippy (bare metal)");
        for (krate, target) in [
            ("awk-paging-x86_64", "x86_64-unknown-none"),
            ("awk-paging-aarch64", "aarch64-unknown-none"),
        ] {
            let ok = run(cargo().args([
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
            ]));
            tally.record(&format!("clippy {krate} {target}"), ok);
        }
        for k in qemu::KERNELS.iter().filter(|k| k.exists()) {
            let ok = run(cargo().args([
                "clippy",
                "-p",
                "qemu-tests",
                "--features",
                "kernel",
                "--target",
                k.target,
                "--bin",
                k.bin,
                "--",
                "-D",
                "warnings",
            ]));
            tally.record(&format!("clippy {}", k.bin), ok);
        }
    }

    header("host tests");
    let (ok, out) = run_capture(cargo().args(["test", "--workspace"]));
    match libtest_counts(&out) {
        Some((p, f)) => {
            tally.add("host tests", p, f);
            if !ok && f == 0 {
                tally.record("cargo test (exit status)", false);
            }
        }
        None => tally.record("cargo test (no test results: build failed?)", false),
    }

    header("bare-metal builds (no_std)");
    for (krate, target) in [
        ("awk-paging-x86_64", "x86_64-unknown-none"),
        ("awk-paging-aarch64", "aarch64-unknown-none"),
    ] {
        let ok = run(cargo().args(["build", "-p", "awk-paging", "-p", krate, "--target", target]));
        tally.record(&format!("build {krate} for {target}"), ok);
    }

    if !host_only {
        header("QEMU");
        qemu::test_kernels(tally);
    }
}
