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
    forget_packaged_copies();
    // Its own target directory, emptied first: cargo never rebuilds a registry crate whose
    // version it built before, and the core reaches the backends' verification as the registry
    // crate `awk-paging` 0.1.0 — built from an older core, if the shared directory has one.
    let dir = root().join("target").join("xtask-package");
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = cargo();
    cmd.arg("package")
        .args(each_library())
        .arg("--allow-dirty")
        .env("CARGO_TARGET_DIR", &dir);
    check_cmd(tally, "cargo package library crates", &mut cmd);
}

/// Removes the copies of this workspace's crates that earlier `cargo package` runs extracted
/// into cargo's registry sources. Packaging the backends resolves `awk-paging` 0.1.0 from a local
/// overlay, and cargo reuses an already extracted `awk-paging-0.1.0` directory of the same
/// overlay as is: after the core changed, a checkout at a path that was packaged before would
/// verify the backends against the old core. The crates are unpublished, so every such
/// directory is one of those stale copies.
fn forget_packaged_copies() {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for registry in registries.flatten() {
        let Ok(crates) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for krate in crates.flatten() {
            let name = krate.file_name();
            let name = name.to_string_lossy();
            if LIBRARIES.iter().any(|l| {
                name.strip_prefix(l)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            }) {
                let _ = std::fs::remove_dir_all(krate.path());
            }
        }
    }
}

/// What `cargo xtask test` runs under Miri, per library crate: `(crate, test files, skipped
/// test-name substrings)`. The core, where all the table-memory unsafe code lives (entry access,
/// reserve chains, the emulator's memory), runs the files that exercise it from every side —
/// safe-code walks of corrupt and recursive tables, the tracer and TLB model, the ordering
/// checks (every operation, range engine included), the lock, a model sequence. The backends run
/// what crosses an unsafe boundary of theirs: the seed API (lock, `OffsetPhysMem`), the
/// `x86_64`-crate interop, the encodings over a direct map, the contiguous hint, and the
/// ordering checks on hand-built taken-over tables. Their per-regime repeats of the core's
/// checks, the conformance suites and the many-thread stress test take minutes each under Miri:
/// `cargo xtask miri --full` runs everything.
pub const MIRI_FOCUSED: [(&str, &[&str], &[&str]); 3] = [
    (
        "awk-paging",
        &[
            "safe_walks",
            "bogus_tables",
            "tlb_model",
            "tracer_rules",
            "ordering",
            "global_table",
            "range_model",
            "frame_pool",
        ],
        &["many_threads_share_the_lock", "ro_tables::"],
    ),
    (
        "awk-paging-x86_64",
        &[
            "encoding",
            "interop",
            "ordering",
            "static_api",
            "static_api_hooks",
        ],
        &["pa52::", "pa36::"],
    ),
    (
        "awk-paging-aarch64",
        &[
            "encoding",
            "contiguous",
            "maintenance",
            "ordering",
            "static_api",
        ],
        &["ttbr0_48::", "ttbr0_39_pa40::", "ttbr1_48::"],
    ),
];

/// `MIRIFLAGS`: physical memory is reached through integer offsets (`OffsetPhysMem`), by design;
/// the seed static API's tests leak their `'static` tables, by design.
pub const MIRIFLAGS: &str = "-Zmiri-permissive-provenance -Zmiri-ignore-leaks";

/// The `cargo` argument lists of the Miri run, one per invocation: with `full`, every unit and
/// integration test of the library crates (doc tests do not run under Miri); otherwise the
/// focused set, one invocation per crate.
pub fn miri_args(full: bool) -> Vec<Vec<String>> {
    let head = || {
        let mut a = vec![format!("+{MIRI_TOOLCHAIN}")];
        a.extend(["miri", "test", "--no-fail-fast"].map(String::from));
        a
    };
    if full {
        let mut a = head();
        a.extend(each_library().into_iter().map(String::from));
        a.extend(["--lib", "--tests"].map(String::from));
        return vec![a];
    }
    MIRI_FOCUSED
        .iter()
        .map(|(krate, tests, skips)| {
            let mut a = head();
            a.extend(["-p", krate, "--lib"].map(String::from));
            for t in *tests {
                a.extend(["--test".to_string(), t.to_string()]);
            }
            a.push("--".into());
            for s in *skips {
                a.extend(["--skip".to_string(), s.to_string()]);
            }
            a
        })
        .collect()
}

/// The library tests under Miri (undefined behaviour, out-of-bounds and misaligned accesses,
/// aliasing violations), each test counted.
pub fn miri(tally: &mut Tally, full: bool) {
    header(if full {
        "miri (all library tests)"
    } else {
        "miri (focused library tests; `cargo xtask miri --full` for all)"
    });
    let start = std::time::Instant::now();
    for args in miri_args(full) {
        let mut cmd = cargo();
        cmd.args(args)
            .env("MIRIFLAGS", flags_env("MIRIFLAGS", MIRIFLAGS));
        test_suite(tally, "miri", &mut cmd);
    }
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
        header("QEMU cross-check of the page-table inspector");
        crate::inspect::qemu_cross_check(tally);
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
    fn miri_focused_runs_each_crate_full_runs_everything() {
        let runs = miri_args(false);
        assert_eq!(runs.len(), LIBRARIES.len());
        for (args, k) in runs.iter().zip(LIBRARIES) {
            let s = args.join(" ");
            assert!(s.starts_with("+nightly miri test --no-fail-fast "), "{s}");
            assert!(s.contains(&format!("-p {k} --lib --test ")), "{s}");
            assert!(s.contains("--test ordering"), "{s}");
            assert!(s.contains(" -- --skip "), "{s}");
        }
        let full = miri_args(true);
        assert_eq!(full.len(), 1);
        let s = full[0].join(" ");
        assert!(s.ends_with("--lib --tests"), "{s}");
        for k in LIBRARIES {
            assert!(s.contains(&format!("-p {k} ")), "{s}");
        }
    }

    #[test]
    fn miri_focused_names_existing_test_files_and_tests() {
        // A renamed file or test would fail the run or make the skip a silent no-op.
        for (krate, tests, skips) in MIRI_FOCUSED {
            let mut sources = String::new();
            for t in tests {
                let path = root().join(krate).join("tests").join(format!("{t}.rs"));
                sources += &std::fs::read_to_string(&path)
                    .unwrap_or_else(|_| panic!("{}", path.display()));
            }
            for s in skips {
                let name = s.trim_end_matches("::");
                assert!(
                    sources.contains(&format!("fn {name}("))
                        || sources.contains(&format!("mod {name} {{")),
                    "{krate}: {s}"
                );
            }
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
