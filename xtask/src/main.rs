//! Project automation.
//!
//! - `cargo xtask test [--host-only] [--no-lint]`: formatting, lints, host tests, bare-metal
//!   builds and the QEMU suites, ending with one `N passed, N failed` line.
//! - `cargo xtask qemu [x86_64|aarch64]`: boots the demo kernels.

mod qemu;
mod report;
mod steps;
mod toolchain;

use std::process::ExitCode;

use report::Tally;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  cargo xtask test [--host-only] [--no-lint]\n  cargo xtask qemu [x86_64|aarch64]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        return usage();
    };
    let flags = &args[1..];
    match cmd.as_str() {
        "test" => {
            let host_only = flags.iter().any(|f| f == "--host-only");
            let lint = !flags.iter().any(|f| f == "--no-lint");
            let mut tally = Tally::default();
            steps::test(&mut tally, lint, host_only);
            println!("{}", tally.summary_line());
            if tally.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        "qemu" => {
            let arch = flags.first().map(String::as_str);
            match qemu::demo(arch) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xtask qemu: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
