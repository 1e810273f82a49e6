//! Counting checks and parsing test-runner output.

use crate::targets::KernelExit;

/// Running totals of everything `cargo xtask test` checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    /// Names of the failed checks, for the recap.
    pub failures: Vec<String>,
}

impl Tally {
    /// Records one check (a build, a lint run, one QEMU test).
    pub fn record(&mut self, name: &str, ok: bool) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures.push(name.to_string());
        }
    }

    /// Adds counts parsed from a runner's output.
    pub fn add(&mut self, name: &str, passed: usize, failed: usize) {
        self.passed += passed;
        self.failed += failed;
        if failed > 0 {
            self.failures.push(format!("{name} ({failed} failed)"));
        }
    }

    /// The closing line CI reads.
    pub fn summary_line(&self) -> String {
        if !self.failures.is_empty() {
            eprintln!("\nfailed: {}", self.failures.join(", "));
        }
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

/// Sums libtest's `test result: ok. N passed; M failed; ...` lines.
pub fn libtest_counts(output: &str) -> Option<(usize, usize)> {
    let mut found = false;
    let (mut passed, mut failed) = (0, 0);
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        let mut p: Option<usize> = None;
        let mut f: Option<usize> = None;
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            for pair in words.windows(2) {
                match pair[1] {
                    "passed" => p = pair[0].parse().ok(),
                    "failed" => f = pair[0].parse().ok(),
                    _ => {}
                }
            }
        }
        if let (Some(p), Some(f)) = (p, f) {
            passed += p;
            failed += f;
            found = true;
        }
    }
    found.then_some((passed, failed))
}

/// One `test NAME ... ok|FAILED: why` line of a QEMU kernel.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelTest {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What a kernel printed: its test lines and its summary, if it got that far.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KernelRun {
    pub tests: Vec<KernelTest>,
    pub summary: Option<(usize, usize)>,
}

/// Parses a kernel's console output (see `qemu-tests/src/harness.rs`).
pub fn parse_kernel(output: &str) -> KernelRun {
    let mut run = KernelRun::default();
    for line in output.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, result)) = rest.split_once(" ... ") {
                let ok = result == "ok";
                let detail = result
                    .strip_prefix("FAILED: ")
                    .unwrap_or(result)
                    .to_string();
                if ok || result.starts_with("FAILED") {
                    run.tests.push(KernelTest {
                        name: name.to_string(),
                        ok,
                        detail,
                    });
                }
            }
        } else if let Some(rest) = line.strip_prefix("qemu-tests: ") {
            run.summary = libtest_like(rest);
        }
    }
    run
}

/// Whether a kernel run as a whole went right, beyond its individual test lines: it printed its
/// summary, the summary agrees with the test lines, and the exit status agrees with both.
pub fn check_kernel_run(run: &KernelRun, exit: KernelExit, timed_out: bool) -> Result<(), String> {
    let passed = run.tests.iter().filter(|t| t.ok).count();
    let failed = run.tests.len() - passed;
    if timed_out {
        return Err(format!(
            "hung: killed by the timeout after {passed} passed, {failed} failed"
        ));
    }
    if exit == KernelExit::Crash {
        return Err("crashed (unexpected exception or panic)".into());
    }
    match run.summary {
        None => return Err(format!("no summary line (exit: {exit})")),
        Some(s) if s != (passed, failed) => {
            return Err(format!(
            "summary says {} passed, {} failed but {passed} passed, {failed} failed were printed",
            s.0, s.1
        ))
        }
        Some(_) => {}
    }
    let expected = if failed == 0 {
        KernelExit::Success
    } else {
        KernelExit::TestFailures
    };
    if run.tests.is_empty() {
        return Err("no tests ran".into());
    }
    if exit != expected {
        return Err(format!("exit: {exit}, expected: {expected}"));
    }
    Ok(())
}

/// Parses `N passed, M failed`.
fn libtest_like(s: &str) -> Option<(usize, usize)> {
    let (p, f) = s.split_once(',')?;
    let p = p.trim().strip_suffix(" passed")?.parse().ok()?;
    let f = f.trim().strip_suffix(" failed")?.parse().ok()?;
    Some((p, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_libtest_result_lines() {
        let out = "running 3 tests\ntest a ... ok\n\
                   test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out\n\
                   test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s\n";
        assert_eq!(libtest_counts(out), Some((10, 2)));
        assert_eq!(libtest_counts("error[E0308]: mismatched types"), None);
    }

    #[test]
    fn parses_kernel_lines_and_summary() {
        let out = "boot\r\ntest remap ... ok\r\ntest fault ... FAILED: no fault at 0x1000\n\
                   test weird ... maybe\nqemu-tests: 1 passed, 1 failed\n";
        let run = parse_kernel(out);
        assert_eq!(run.tests.len(), 2);
        assert_eq!(
            run.tests[0],
            KernelTest {
                name: "remap".into(),
                ok: true,
                detail: "ok".into()
            }
        );
        assert!(!run.tests[1].ok);
        assert_eq!(run.tests[1].detail, "no fault at 0x1000");
        assert_eq!(run.summary, Some((1, 1)));
        assert_eq!(parse_kernel("test x ... ok\n").summary, None);
    }

    #[test]
    fn libtest_real_cargo_output() {
        // Unit tests, an integration test binary with a failure, doc-tests, and a crate with none.
        let out = "     Running unittests src/lib.rs (target/debug/deps/awk_paging-1)\n\
                   running 2 tests\ntest a::b ... ok\ntest a::c ... ok\n\n\
                   test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n\
                   running 3 tests\ntest x ... FAILED\n\
                   test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   error: test failed, to rerun pass `--test walk`\n\
                   running 0 tests\n\
                   test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\
                      Doc-tests awk_paging\nrunning 4 tests\n\
                   test result: ok. 4 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; all doctests ran in 0.50s; merged doctests compilation took 0.40s\n";
        assert_eq!(libtest_counts(out), Some((8, 1)));
        // A crate whose tests ran none still parses (0, 0), unlike a build that never ran.
        assert_eq!(
            libtest_counts("test result: ok. 0 passed; 0 failed; 0 ignored"),
            Some((0, 0))
        );
        // A test *named* like a result line does not count; only the harness's own line does.
        assert_eq!(libtest_counts("test test_result_ok ... ok\n"), None);
    }

    fn run_of(ok: &[bool], summary: Option<(usize, usize)>) -> KernelRun {
        KernelRun {
            tests: ok
                .iter()
                .enumerate()
                .map(|(i, &ok)| KernelTest {
                    name: format!("t{i}"),
                    ok,
                    detail: String::new(),
                })
                .collect(),
            summary,
        }
    }

    #[test]
    fn kernel_run_consistency() {
        use KernelExit::*;
        let good = run_of(&[true, true], Some((2, 0)));
        assert_eq!(check_kernel_run(&good, Success, false), Ok(()));
        // Exited successfully but the summary never came: died or hung mid-way.
        assert!(check_kernel_run(&run_of(&[true], None), Success, false).is_err());
        // Summary disagrees with the printed lines.
        assert!(check_kernel_run(&run_of(&[true], Some((2, 0))), Success, false).is_err());
        // Failing tests reported with the failure status: the lines already count them.
        let bad = run_of(&[true, false], Some((1, 1)));
        assert_eq!(check_kernel_run(&bad, TestFailures, false), Ok(()));
        // ... but not with success status, nor success lines with failure status.
        assert!(check_kernel_run(&bad, Success, false).is_err());
        assert!(check_kernel_run(&good, TestFailures, false).is_err());
        // Crash, triple fault (x86 status 0), timeout.
        assert!(check_kernel_run(&good, Crash, false).is_err());
        assert!(check_kernel_run(&good, Unexpected(Some(0)), false).is_err());
        assert!(check_kernel_run(&good, Success, true).is_err());
        // A kernel that ran nothing proves nothing.
        assert!(check_kernel_run(&run_of(&[], Some((0, 0))), Success, false).is_err());
    }

    #[test]
    fn tally_counts_and_formats() {
        let mut t = Tally::default();
        t.record("fmt", true);
        t.record("clippy", false);
        t.add("host tests", 10, 1);
        assert_eq!((t.passed, t.failed), (11, 2));
        assert_eq!(t.summary_line(), "11 passed, 2 failed");
    }
}
