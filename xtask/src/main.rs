//! Project automation.
//!
//! - `cargo xtask test [--host-only] [--no-lint]`: formatting, lints, host tests, bare-metal
//!   builds and the QEMU suites, ending with one `N passed, N failed` line.
//! - `cargo xtask qemu [x86_64|aarch64]`: boots the demo kernels.
//! - `cargo xtask qemu --tests [--no-flush] [x86_64|aarch64]`: runs the QEMU test kernels only;
//!   `--no-flush` (or `XTASK_NO_FLUSH=1`) builds them with the `no-tlb-flush` negative control.
//! - `cargo xtask install-qemu`: runs the QEMU install (Debian, as root) even if QEMU is present.

mod qemu;
mod report;
mod steps;
mod targets;
mod toolchain;

use std::process::ExitCode;

use report::Tally;
use steps::TestOptions;
use targets::Arch;

const USAGE: &str = "usage:
  cargo xtask test [--host-only] [--no-lint]
  cargo xtask qemu [x86_64|aarch64]                       boot the demo kernels
  cargo xtask qemu --tests [--no-flush] [x86_64|aarch64]  run the QEMU test kernels only
  cargo xtask install-qemu                                (re)run the Debian QEMU install
environment: XTASK_NO_FLUSH=1 (same as --no-flush), XTASK_QEMU_TIMEOUT=<seconds per boot>";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Test(TestOptions),
    Demo(Option<Arch>),
    QemuTests { arch: Option<Arch>, no_flush: bool },
    InstallQemu,
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
        "install-qemu" if flags.is_empty() => Ok(Cmd::InstallQemu),
        _ => Err(format!("unknown command {cmd}")),
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
    match parse(&args, no_flush_env) {
        Err(e) => {
            eprintln!("xtask: {e}\n{USAGE}");
            ExitCode::from(2)
        }
        Ok(Cmd::Test(opts)) => {
            let mut tally = Tally::default();
            steps::test(&mut tally, opts);
            finish(&tally)
        }
        Ok(Cmd::QemuTests { arch, no_flush }) => {
            let mut tally = Tally::default();
            qemu::test_kernels(&mut tally, arch, no_flush);
            finish(&tally)
        }
        Ok(Cmd::InstallQemu) => match qemu::install_qemu(true) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask install-qemu: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Cmd::Demo(arch)) => match qemu::demo(arch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask qemu: {e}");
                ExitCode::FAILURE
            }
        },
    }
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
                host_only: true
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
    }
}
