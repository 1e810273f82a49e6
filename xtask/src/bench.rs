//! `cargo xtask bench [--smoke] [--runs N]`: the comparison benchmark
//! (`awk-paging-x86_64/benches/compare`), built with the bench profile (thin LTO, one codegen
//! unit).
//!
//! - Full (default): `N` consecutive runs (3 unless `--runs`), each printed as it finishes, then
//!   written into BENCHMARKS.md between the generated-section markers with the machine, the
//!   date, the commit and the exact command.
//! - `--smoke`: small workloads, one round, nothing written (a few seconds after the build):
//!   keeps the benchmark compiling and every result checked. `cargo xtask test` runs it.
//!
//! Both first check the benchmark binary's symbols: each timed loop and each non-inlined call
//! wrapper must exist once per implementation, so no two were folded into one
//! ([`EXPECTED_SYMBOLS`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::report::Tally;
use crate::toolchain::{cargo, describe, root};

/// The cargo arguments that build and run the benchmark.
pub const BENCH_ARGS: [&str; 5] = ["bench", "-p", "awk-paging-x86_64", "--bench", "compare"];

/// The generated section of BENCHMARKS.md.
pub const BEGIN: &str = "<!-- bench:begin (written by cargo xtask bench) -->";
pub const END: &str = "<!-- bench:end -->";

/// How many copies of each generic function the benchmark binary must contain (`nm -C`).
/// Per operation: 7 per-page implementations × 2 page sizes × 2 call shapes, plus the 2 seed
/// APIs (4 KiB, non-inlined) = 30 timed loops, and 7 + 2 = 9 non-inlined wrappers. The two
/// `x86_64` crate columns differ only in translate, so their map, protect and unmap loops and
/// wrappers are identical code that the linker may merge (4 loops and 1 wrapper fewer): that is
/// the only folding allowed.
pub const EXPECTED_SYMBOLS: [(&str, usize, usize); 8] = [
    ("compare::subject::translate_loop", 30, 30),
    ("compare::subject::map_loop", 26, 30),
    ("compare::subject::protect_loop", 26, 30),
    ("compare::subject::unmap_loop", 26, 30),
    ("compare::subject::translate_call", 9, 9),
    ("compare::subject::map_call", 8, 9),
    ("compare::subject::protect_call", 8, 9),
    ("compare::subject::unmap_call", 8, 9),
];

/// Runs the benchmark (see the module documentation).
pub fn bench(tally: &mut Tally, smoke: bool, runs: usize, command: &str) {
    let Some(exe) = build(tally) else { return };
    check_symbols(tally, &exe);
    let args: &[&str] = if smoke { &["--smoke"] } else { &[] };
    let mut outputs = Vec::new();
    for k in 1..=(if smoke { 1 } else { runs }) {
        eprintln!("\n==== benchmark run {k} ====");
        let mut cmd = cargo();
        cmd.args(BENCH_ARGS).arg("--").args(args);
        eprintln!("$ {}", describe(&cmd));
        let out = cmd.stderr(Stdio::inherit()).output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let text = text.unwrap_or_default();
        println!("{text}");
        tally.record(&format!("benchmark run {k}"), ok);
        if !ok {
            return;
        }
        outputs.push(text);
    }
    if !smoke {
        let section = generated_section(&outputs, command);
        let path = root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let written = std::fs::write(&path, splice(&old, &section));
        if let Err(e) = &written {
            eprintln!("xtask bench: writing {}: {e}", path.display());
        }
        tally.record("BENCHMARKS.md written", written.is_ok());
    }
}

/// Builds the benchmark; its executable.
fn build(tally: &mut Tally) -> Option<PathBuf> {
    let mut cmd = cargo();
    cmd.args(BENCH_ARGS)
        .args(["--no-run", "--message-format=json"]);
    eprintln!("$ {}", describe(&cmd));
    let out = cmd.stderr(Stdio::inherit()).output();
    let exe = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| executable(&String::from_utf8_lossy(&o.stdout)).map(PathBuf::from));
    tally.record("benchmark builds", exe.is_some());
    exe
}

/// The `"executable"` of the `compare` bench target in cargo's JSON messages.
pub fn executable(json: &str) -> Option<String> {
    json.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains("\"compare\""))
        .find_map(|l| {
            let rest = &l[l.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            Some(rest[..rest.find('"')?].replace("\\\\", "\\"))
        })
}

/// Counts the symbols `nm -C` lists for each name of [`EXPECTED_SYMBOLS`] (exact name).
pub fn symbol_counts(nm_output: &str) -> Vec<(&'static str, usize)> {
    EXPECTED_SYMBOLS
        .iter()
        .map(|&(name, _, _)| {
            let n = nm_output
                .lines()
                .filter(|l| l.split_whitespace().nth(2) == Some(name))
                .count();
            (name, n)
        })
        .collect()
}

fn check_symbols(tally: &mut Tally, exe: &Path) {
    let nm = Command::new("nm").arg("-C").arg(exe).output();
    let Some(nm) = nm.ok().filter(|o| o.status.success()) else {
        eprintln!("xtask bench: `nm` did not run (binutils missing?)");
        tally.record("benchmark symbols (nm)", false);
        return;
    };
    let text = String::from_utf8_lossy(&nm.stdout);
    let mut ok = true;
    for ((name, n), (_, lo, hi)) in symbol_counts(&text).into_iter().zip(EXPECTED_SYMBOLS) {
        let fine = (lo..=hi).contains(&n);
        eprintln!(
            "  {name}: {n} copies (expected {lo}..={hi}){}",
            if fine { "" } else { "  <- FOLDED OR MISSING" }
        );
        ok &= fine;
    }
    println!(
        "benchmark call sites not folded (nm) ... {}",
        if ok { "ok" } else { "FAILED" }
    );
    tally.record("benchmark call sites not folded (nm)", ok);
}

/// The machine, as /proc/cpuinfo names it, and its CPU count.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpus} × {model} ({} {})",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The commit, marked `+ uncommitted changes` when the tree (BENCHMARKS.md aside) differs.
fn commit() -> String {
    let head = command_output("git", &["rev-parse", "--short=12", "HEAD"]);
    let status = command_output("git", &["status", "--porcelain", "--untracked-files=no"]);
    let dirty = status.lines().any(|l| !l.ends_with("BENCHMARKS.md"));
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

/// The generated part of BENCHMARKS.md: how it was made, then each run's tables.
pub fn generated_section(runs: &[String], command: &str) -> String {
    let mut s = format!(
        "{BEGIN}\n\n- Machine: {}\n- Date: {}\n- Commit: {}\n- Command: `{command}` ({} consecutive runs of `{}`)\n",
        machine(),
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit(),
        runs.len(),
        ["cargo"].iter().chain(BENCH_ARGS.iter()).copied().collect::<Vec<_>>().join(" "),
    );
    for (k, r) in runs.iter().enumerate() {
        s.push_str(&format!("\n### Run {}\n\n{}\n", k + 1, r.trim_end()));
    }
    s.push('\n');
    s.push_str(END);
    s
}

/// `doc` with its generated section replaced by `section` (appended if there is none).
pub fn splice(doc: &str, section: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &doc[..b], &doc[e + END.len()..])
        }
        _ => format!("{}\n{section}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_generated_section() {
        let doc = format!("# B\n\nprose\n\n{BEGIN}\nold\n{END}\n\nmore prose\n");
        let new = splice(&doc, &format!("{BEGIN}\nnew\n{END}"));
        assert_eq!(
            new,
            format!("# B\n\nprose\n\n{BEGIN}\nnew\n{END}\n\nmore prose\n")
        );
        let appended = splice("# B\n", &format!("{BEGIN}\nx\n{END}"));
        assert_eq!(appended, format!("# B\n{BEGIN}\nx\n{END}\n"));
    }

    #[test]
    fn finds_the_bench_executable_in_cargo_json() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"compare","kind":["bench"]},"executable":"/t/release/deps/compare-abc"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(json).as_deref(),
            Some("/t/release/deps/compare-abc")
        );
        assert_eq!(executable(r#"{"reason":"build-finished"}"#), None);
    }

    #[test]
    fn counts_exact_symbol_names() {
        let nm = "0000 t compare::subject::map_loop\n0001 t compare::subject::map_loop\n0002 t compare::subject::map_loop_other\n";
        let counts = symbol_counts(nm);
        assert_eq!(counts[1], ("compare::subject::map_loop", 2));
    }

    #[test]
    fn the_section_names_machine_date_commit_and_command() {
        let s = generated_section(&["| t |".into()], "cargo xtask bench");
        for want in [
            "Machine:",
            "Date:",
            "Commit:",
            "`cargo xtask bench`",
            "### Run 1",
            BEGIN,
            END,
        ] {
            assert!(s.contains(want), "{want}: {s}");
        }
    }
}
