//! The steps of `cargo xtask test`, each counted in the tally; `doc`, `package` and `miri` also
//! run on their own.

use std::process::Command;

use crate::prereq::{Needs, Ready};
use crate::qemu;
use crate::report::{libtest_counts, Tally};
use crate::targets::{Kernel, KERNELS, TARGETS};
use crate::toolchain::{cargo, root, run, run_capture, MIRI_TOOLCHAIN};

/// What `cargo xtask test` runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestOptions {
    /// Skip `cargo fmt` and `cargo clippy` (`--no-lint`).
    pub no_lint: bool,
    /// Skip the QEMU suites (`--host-only`).
    pub host_only: bool,
    /// Skip the Miri run (`--no-miri`).
    pub no_miri: bool,
}

impl TestOptions {
    /// What the selected steps need installed: the bare-metal targets always (clippy and the
    /// no_std builds use them), QEMU for the kernels, nightly Miri for the Miri step.
    pub fn needs(self) -> Needs {
        Needs {
            targets: true,
            qemu: !self.host_only,
            miri: !self.no_miri,
        }
    }
}

/// The publishable library crates: documented, packaged and run under Miri.
pub const LIBRARIES: [&str; 3] = ["awk-paging", "awk-paging-x86_64", "awk-paging-aarch64"];

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
    check_cmd(tally, name, cargo().args(args));
}

/// One check of any command.
fn check_cmd(tally: &mut Tally, name: &str, cmd: &mut Command) -> bool {
    let ok = run(cmd);
    println!("{name} ... {}", if ok { "ok" } else { "FAILED" });
    tally.record(name, ok);
    ok
}

/// Runs a libtest-based suite (`cargo test`, `cargo miri test`), counting each test it reports,
/// plus one failure if it failed without a failing test (a build error, or Miri stopping a
/// test binary on undefined behaviour before its result line).
fn test_suite(tally: &mut Tally, name: &str, cmd: &mut Command) {
    let (ok, out) = run_capture(cmd);
    match libtest_counts(&out) {
        Some((p, f)) => {
            println!("{name}: {p} passed, {f} failed");
            tally.add(name, p, f);
            if !ok && f == 0 {
                println!("{name} exit status ... FAILED");
                tally.record(
                    &format!("{name} (failed without a failing test: build error or UB?)"),
                    false,
                );
            }
        }
        None => {
            println!("{name}: no test results ... FAILED");
            tally.record(&format!("{name} (no test results: build failed?)"), false);
        }
    }
}

/// A flags variable (`RUSTDOCFLAGS`, `MIRIFLAGS`): ours, then whatever the caller set.
fn flags_env(var: &str, ours: &str) -> String {
    match std::env::var(var) {
        Ok(theirs) if !theirs.trim().is_empty() => format!("{ours} {theirs}"),
        _ => ours.to_string(),
    }
}

/// `-p` for each library crate.
fn each_library() -> Vec<&'static str> {
    LIBRARIES.iter().flat_map(|k| ["-p", k]).collect()
}

/// The library docs as docs.rs builds them (every feature), with every rustdoc warning (broken
/// intra-doc links above all) an error.
pub fn rustdoc(tally: &mut Tally) {
    header("rustdoc (-D warnings)");
    let mut cmd = cargo();
    cmd.args(["doc", "--no-deps", "--all-features"])
        .args(each_library())
        .env("RUSTDOCFLAGS", flags_env("RUSTDOCFLAGS", "-D warnings"));
    check_cmd(tally, "rustdoc library crates -D warnings", &mut cmd);
}

/// `cargo package` of the library crates together, so the backends resolve the unpublished
/// core from cargo's local overlay; each package is verified by building it from its `.crate`
/// (in the workspace's target directory, so only the packaged crates themselves compile).
/// `--allow-dirty`: the check is what would be published from this tree, committed or not.
pub fn package(tally: &mut Tally) {
    header("cargo package (library crates)");
    let mut cmd = cargo();
    cmd.arg("package").args(each_library()).arg("--allow-dirty");
    check_cmd(tally, "cargo package library crates", &mut cmd);
}

/// Conformance-suite instances Miri skips unless `--full`: the same checks over a second regime
/// of an architecture whose first regime Miri runs (x86_64 with 1 GiB pages is run, without is
/// skipped; AArch64 48-bit TTBR0 and 39-bit TTBR1 are run, covering 4 and 3 levels and both
/// halves). Everything else, new test files included, runs. Module paths, matched as libtest
/// `--skip` substrings.
pub const MIRI_SKIP: [&str; 3] = ["without_1g_pages::", "ttbr0_39::", "ttbr1_48::"];

/// `MIRIFLAGS`: physical memory is reached through integer offsets (`OffsetPhysMem`), by design;
/// the seed static API's tests leak their `'static` tables, by design.
pub const MIRIFLAGS: &str = "-Zmiri-permissive-provenance -Zmiri-ignore-leaks";

/// The `cargo` arguments of the Miri run: the library crates' unit and integration tests (doc
/// tests do not run under Miri), every test binary even after a failure.
pub fn miri_args(full: bool) -> Vec<String> {
    let mut args = vec![format!("+{MIRI_TOOLCHAIN}")];
    args.extend(["miri", "test", "--no-fail-fast"].map(String::from));
    args.extend(each_library().into_iter().map(String::from));
    args.extend(["--lib", "--tests", "--"].map(String::from));
    if !full {
        for s in MIRI_SKIP {
            args.extend(["--skip".to_string(), s.to_string()]);
        }
    }
    args
}

/// The library tests under Miri (undefined behaviour, out-of-bounds and misaligned accesses,
/// aliasing violations), each test counted.
pub fn miri(tally: &mut Tally, full: bool) {
    header(if full {
        "miri (all library tests)"
    } else {
        "miri (library tests; duplicate conformance regimes skipped)"
    });
    let start = std::time::Instant::now();
    let mut cmd = cargo();
    cmd.args(miri_args(full))
        .env("MIRIFLAGS", flags_env("MIRIFLAGS", MIRIFLAGS));
    test_suite(tally, "miri", &mut cmd);
    eprintln!("miri took {:.0?}", start.elapsed());
}

/// Everything CI runs, in order; a failing step does not stop the later ones.
/// Steps whose prerequisite is missing are skipped (the prerequisite already counts as failed).
pub fn test(tally: &mut Tally, opts: TestOptions, ready: Ready) {
    eprintln!("workspace: {}", root().display());
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
    test_suite(tally, "host tests", cargo().args(["test", "--workspace"]));

    // The comparison benchmark in its smoke mode (a few seconds: small workloads, every result
    // checked, call sites not folded), so it keeps compiling and stays right; the full run is
    // `cargo xtask bench`.
    header("benchmark smoke run");
    crate::bench::bench(tally, true, 1, "cargo xtask bench --smoke");

    rustdoc(tally);
    package(tally);

    header("bare-metal builds (no_std)");
    for (krate, target) in BARE_METAL {
        check(
            tally,
            &format!("build awk-paging {krate} --target {target}"),
            &["build", "-p", "awk-paging", "-p", krate, "--target", target],
        );
    }

    if !opts.no_miri && ready.miri {
        miri(tally, false);
    }

    if !opts.host_only && ready.qemu {
        header("QEMU test kernels");
        qemu::test_kernels(tally, None, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_needs_what_its_steps_build_with() {
        let all = TestOptions::default().needs();
        assert_eq!(
            all,
            Needs {
                targets: true,
                qemu: true,
                miri: true
            }
        );
        let host = TestOptions {
            host_only: true,
            no_lint: true,
            no_miri: true,
        };
        // The no_std builds need the targets even without QEMU and lints.
        assert_eq!(
            host.needs(),
            Needs {
                targets: true,
                qemu: false,
                miri: false
            }
        );
    }

    #[test]
    fn miri_runs_all_library_tests_but_duplicate_regimes() {
        let args = miri_args(false);
        let s = args.join(" ");
        assert!(s.starts_with("+nightly miri test --no-fail-fast "), "{s}");
        for k in LIBRARIES {
            assert!(s.contains(&format!("-p {k} ")), "{s}");
        }
        // Unit and integration tests (new `tests/*.rs` included), no doc tests.
        assert!(s.contains(" --lib --tests -- "), "{s}");
        assert!(!s.contains("--test "), "{s}");
        // libtest's --skip is a substring match: emulate it.
        let runs = |test: &str| !MIRI_SKIP.iter().any(|p| test.contains(p));
        assert!(runs("with_1g_pages::map_translate_unmap_round_trip"));
        assert!(!runs("without_1g_pages::map_translate_unmap_round_trip"));
        assert!(runs("ttbr0_48::destroy_frees_every_table"));
        assert!(runs("ttbr1_39::destroy_frees_every_table"));
        assert!(!runs("ttbr0_39::destroy_frees_every_table"));
        assert!(runs("seed_api_lifecycle"));
        assert!(runs("safe_api::map_unmap"));
        assert_eq!(
            args.iter().filter(|a| *a == "--skip").count(),
            MIRI_SKIP.len()
        );
        let full = miri_args(true).join(" ");
        assert!(full.ends_with("--lib --tests --"), "{full}");
    }

    #[test]
    fn miri_skips_name_existing_conformance_modules() {
        // A renamed module would make the skip a silent no-op (a slower run): keep them in sync.
        let mut sources = String::new();
        for k in LIBRARIES {
            let dir = root().join(k).join("tests");
            for entry in std::fs::read_dir(&dir).unwrap() {
                sources += &std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            }
        }
        for s in MIRI_SKIP {
            let module = s.trim_end_matches("::");
            assert!(sources.contains(&format!("mod {module} {{")), "{module}");
        }
    }

    #[test]
    fn flags_variables_keep_the_callers() {
        assert_eq!(
            flags_env("XTASK_TEST_UNSET_FLAGS", "-D warnings"),
            "-D warnings"
        );
    }

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
