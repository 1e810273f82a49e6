//! Counting checks and parsing test-runner output.

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
    fn tally_counts_and_formats() {
        let mut t = Tally::default();
        t.record("fmt", true);
        t.record("clippy", false);
        t.add("host tests", 10, 1);
        assert_eq!((t.passed, t.failed), (11, 2));
        assert_eq!(t.summary_line(), "11 passed, 2 failed");
    }
}
