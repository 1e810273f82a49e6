//! Project automation.
//!
//! - `cargo xtask test [--host-only] [--no-lint] [--no-miri]`: formatting, lints, host tests,
//!   rustdoc, packaging, bare-metal builds, Miri and the QEMU suites, ending with one
//!   `N passed, N failed` line.
//! - `cargo xtask qemu [x86_64|aarch64]`: boots the demo kernels.
//! - `cargo xtask qemu --tests [--no-flush] [x86_64|aarch64]`: runs the QEMU test kernels only;
//!   `--no-flush` (or `XTASK_NO_FLUSH=1`) builds them with the `no-tlb-flush` negative control.
//! - `cargo xtask miri [--full]`: the library tests under Miri (nightly, installed if missing).
//! - `cargo xtask doc`, `cargo xtask package`: the rustdoc and `cargo package` steps alone.
//! - `cargo xtask bench [--smoke] [--runs N]`: the comparison benchmark; writes BENCHMARKS.md
//!   (`--smoke`: a few seconds, nothing written).
//! - `cargo xtask install-qemu`: runs the QEMU install (Debian, as root) even if QEMU is present.
//! - `cargo xtask inspect --dump FILE --root ADDR --arch x86_64|aarch64 [--translate ADDR...]`:
//!   ptdump and W+X audit of the tables in a physical-memory dump ([`inspect`]);
//!   `cargo xtask inspect --qemu-check`: its cross-check against QEMU's walker alone.
//!
//! Every command first installs what it needs ([`prereq::ensure`]).

mod bench;
mod inspect;
mod prereq;
mod qemu;
mod report;
mod steps;
mod targets;
mod toolchain;

use std::process::ExitCode;

use prereq::Needs;
use report::Tally;
use steps::TestOptions;
use targets::Arch;

const USAGE: &str = "usage:
  cargo xtask test [--host-only] [--no-lint] [--no-miri]  everything CI runs
  cargo xtask qemu [x86_64|aarch64]                       boot the demo kernels
  cargo xtask qemu --tests [--no-flush] [x86_64|aarch64]  run the QEMU test kernels only
  cargo xtask miri [--full]                               library tests under Miri (nightly)
  cargo xtask doc                                         rustdoc of the libraries, -D warnings
  cargo xtask package                                     cargo package of the libraries
  cargo xtask bench [--smoke] [--runs N]                  comparison benchmark -> BENCHMARKS.md
  cargo xtask install-qemu                                (re)run the Debian QEMU install
  cargo xtask inspect --dump FILE --root ADDR --arch x86_64|aarch64 [--base ADDR]
      [--va-bits 39|48] [--upper] [--pa-bits N] [--mair VALUE] [--no-1g] [--no-ptdump]
      [--translate ADDR...]
                                                          ptdump + W+X audit of a memory dump
  cargo xtask inspect --qemu-check                        its QEMU cross-check alone
environment: XTASK_NO_FLUSH=1 (same as --no-flush), XTASK_QEMU_TIMEOUT=<seconds per boot>";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Test(TestOptions),
    Demo(Option<Arch>),
    QemuTests { arch: Option<Arch>, no_flush: bool },
    Miri { full: bool },
    Doc,
    Package,
    Bench { smoke: bool, runs: usize },
    InstallQemu,
    Inspect(Vec<String>),
    InspectQemu,
}

impl Cmd {
    /// What the command needs installed before it runs: anything that builds a kernel needs the
    /// bare-metal targets and QEMU.
    fn needs(&self) -> Needs {
        let kernels = Needs {
            targets: true,
            qemu: true,
            miri: false,
        };
        match self {
            Cmd::Test(opts) => opts.needs(),
            Cmd::Demo(_) | Cmd::QemuTests { .. } | Cmd::InspectQemu => kernels,
            Cmd::Miri { .. } => Needs {
                miri: true,
                ..Needs::default()
            },
            // Host builds only; install-qemu installs QEMU itself (even when present).
            Cmd::Doc | Cmd::Package | Cmd::Bench { .. } | Cmd::InstallQemu | Cmd::Inspect(_) => {
                Needs::default()
            }
        }
    }
}

fn parse(args: &[String], no_flush_env: bool) -> Result<Cmd, String> {
    let (cmd, flags) = args.split_first().ok_or("no command")?;
    match cmd.as_str() {
        "test" => {
            let mut opts = TestOptions::default();
            for f in flags {
                match f.as_str() {
                    "--host-only" => opts.host_only = true,
                    "--no-lint" => opts.no_lint = true,
                    "--no-miri" => opts.no_miri = true,
                    _ => return Err(format!("unknown argument to test: {f}")),
                }
            }
            Ok(Cmd::Test(opts))
        }
        "qemu" => {
            let (mut arch, mut tests, mut no_flush) = (None, false, no_flush_env);
            for f in flags {
                match f.as_str() {
                    "--tests" => tests = true,
                    "--no-flush" => no_flush = true,
                    a if arch.is_none() && Arch::from_name(a).is_some() => {
                        arch = Arch::from_name(a);
                    }
                    _ => return Err(format!("unknown argument to qemu: {f}")),
                }
            }
            if tests {
                Ok(Cmd::QemuTests { arch, no_flush })
            } else if no_flush && !no_flush_env {
                Err("--no-flush applies to the test kernels: add --tests".into())
            } else {
                Ok(Cmd::Demo(arch))
            }
        }
        "miri" => match flags {
            [] => Ok(Cmd::Miri { full: false }),
            [f] if f == "--full" => Ok(Cmd::Miri { full: true }),
            _ => Err(format!("unknown arguments to miri: {}", flags.join(" "))),
        },
        "bench" => {
            let (mut smoke, mut runs) = (false, 3);
            let mut it = flags.iter();
            while let Some(f) = it.next() {
                match f.as_str() {
                    "--smoke" => smoke = true,
                    "--runs" => {
                        runs = it
                            .next()
                            .and_then(|n| n.parse().ok())
                            .filter(|&n| n > 0)
                            .ok_or("--runs needs a positive number")?;
                    }
                    _ => return Err(format!("unknown argument to bench: {f}")),
                }
            }
            Ok(Cmd::Bench { smoke, runs })
        }
        "doc" if flags.is_empty() => Ok(Cmd::Doc),
        "package" if flags.is_empty() => Ok(Cmd::Package),
        "install-qemu" if flags.is_empty() => Ok(Cmd::InstallQemu),
        "inspect" if flags == ["--qemu-check"] => Ok(Cmd::InspectQemu),
        "inspect" => Ok(Cmd::Inspect(flags.to_vec())),
        _ => Err(format!("unknown command {}", args.join(" "))),
    }
}

fn finish(tally: &Tally) -> ExitCode {
    println!("{}", tally.summary_line());
    if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let no_flush_env = std::env::var("XTASK_NO_FLUSH").is_ok_and(|v| !v.is_empty() && v != "0");
    let cmd = match parse(&args, no_flush_env) {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("xtask: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if cmd == Cmd::InstallQemu {
        return match qemu::install_qemu(true) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask install-qemu: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::Inspect(args) = &cmd {
        // A tool, not a check: its own output and exit status.
        return inspect::tool(args);
    }
    let mut tally = Tally::default();
    let needs = cmd.needs();
    let ready = prereq::ensure(needs, &mut tally);
    match cmd {
        // Runs every step it can; a missing prerequisite skips only the steps that need it.
        Cmd::Test(opts) => steps::test(&mut tally, opts, ready),
        _ if !ready.covers(needs) => {}
        Cmd::QemuTests { arch, no_flush } => qemu::test_kernels(&mut tally, arch, no_flush),
        Cmd::Demo(arch) => {
            let result = qemu::demo(arch);
            if let Err(e) = &result {
                eprintln!("xtask qemu: {e}");
            }
            tally.record("demo kernels boot and exit successfully", result.is_ok());
        }
        Cmd::Miri { full } => {
            steps::miri(&mut tally, full);
            if !full {
                eprintln!(
                    "(focused set, see xtask's MIRI_FOCUSED; `cargo xtask miri --full` runs every test)"
                );
            }
        }
        Cmd::Doc => steps::rustdoc(&mut tally),
        Cmd::Package => steps::package(&mut tally),
        Cmd::InspectQemu => inspect::qemu_cross_check(&mut tally),
        Cmd::Bench { smoke, runs } => {
            let command = ["cargo", "xtask"]
                .into_iter()
                .map(String::from)
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            bench::bench(&mut tally, smoke, runs, &command);
        }
        Cmd::InstallQemu | Cmd::Inspect(_) => unreachable!("handled above"),
    }
    finish(&tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd, String> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&args, false)
    }

    #[test]
    fn parses_command_lines() {
        assert_eq!(p("test"), Ok(Cmd::Test(TestOptions::default())));
        assert_eq!(
            p("test --no-lint --host-only"),
            Ok(Cmd::Test(TestOptions {
                no_lint: true,
                host_only: true,
                no_miri: false,
            }))
        );
        assert_eq!(
            p("test --no-miri"),
            Ok(Cmd::Test(TestOptions {
                no_miri: true,
                ..TestOptions::default()
            }))
        );
        assert!(p("test --hostonly").is_err());
        assert_eq!(p("qemu"), Ok(Cmd::Demo(None)));
        assert_eq!(p("qemu aarch64"), Ok(Cmd::Demo(Some(Arch::Aarch64))));
        assert!(p("qemu riscv64").is_err());
        assert!(p("qemu x86_64 aarch64").is_err());
        assert!(p("qemu --no-flush").is_err());
        assert_eq!(
            p("qemu --tests --no-flush x86_64"),
            Ok(Cmd::QemuTests {
                arch: Some(Arch::X86_64),
                no_flush: true
            })
        );
        assert_eq!(
            parse(&["qemu".into(), "--tests".into()], true),
            Ok(Cmd::QemuTests {
                arch: None,
                no_flush: true
            })
        );
        assert!(p("").is_err());
        assert!(p("build").is_err());
        assert_eq!(p("install-qemu"), Ok(Cmd::InstallQemu));
        assert!(p("install-qemu now").is_err());
        assert_eq!(p("miri"), Ok(Cmd::Miri { full: false }));
        assert_eq!(p("miri --full"), Ok(Cmd::Miri { full: true }));
        assert!(p("miri --full --full").is_err());
        assert!(p("miri x86_64").is_err());
        assert_eq!(p("doc"), Ok(Cmd::Doc));
        assert!(p("doc --open").is_err());
        assert_eq!(p("package"), Ok(Cmd::Package));
        assert_eq!(
            p("bench"),
            Ok(Cmd::Bench {
                smoke: false,
                runs: 3
            })
        );
        assert_eq!(
            p("bench --smoke"),
            Ok(Cmd::Bench {
                smoke: true,
                runs: 3
            })
        );
        assert_eq!(
            p("bench --runs 5"),
            Ok(Cmd::Bench {
                smoke: false,
                runs: 5
            })
        );
        assert!(p("bench --runs").is_err());
        assert!(p("bench --runs 0").is_err());
        assert!(p("bench --fast").is_err());
    }

    #[test]
    fn every_kernel_building_command_ensures_targets_and_qemu() {
        let kernel_cmds = [
            "qemu",
            "qemu x86_64",
            "qemu aarch64",
            "qemu --tests",
            "qemu --tests --no-flush aarch64",
            "test",
            "test --no-lint",
        ];
        for c in kernel_cmds {
            let needs = p(c).unwrap().needs();
            assert!(needs.targets && needs.qemu, "{c}: {needs:?}");
        }
        // Bare-metal builds without QEMU still need the targets.
        let host = p("test --host-only").unwrap().needs();
        assert!(host.targets && !host.qemu, "{host:?}");
        assert!(host.miri);
        assert!(!p("test --no-miri").unwrap().needs().miri);
        assert_eq!(
            p("miri").unwrap().needs(),
            Needs {
                miri: true,
                ..Needs::default()
            }
        );
        assert_eq!(p("doc").unwrap().needs(), Needs::default());
        assert_eq!(p("package").unwrap().needs(), Needs::default());
    }
}
