//! `cargo xtask inspect`: the host tool for page tables in a physical-memory dump (the ptdump,
//! the W+X audit, single translations). The tool itself is the `inspect` example of
//! `awk-paging-x86_64` (it links both architectures' regimes, which xtask does not depend on,
//! so a broken library never breaks xtask); this forwards the arguments to it. `qemu`: the
//! cross-check against QEMU's walker; `parse`: reading what QEMU and the tool print.

use std::process::ExitCode;

mod parse;
mod qemu;

pub use qemu::qemu_cross_check;

use crate::toolchain::{cargo, describe};

/// The cargo invocation that runs the tool with `args`.
pub fn tool_command(args: &[String]) -> std::process::Command {
    let mut c = cargo();
    c.args([
        "run",
        "--quiet",
        "-p",
        "awk-paging-x86_64",
        "--example",
        "inspect",
        "--",
    ])
    .args(args);
    c
}

/// Runs the tool with `args`, passing its exit status on (0: clean audit, 1: findings, 2: bad
/// arguments or file).
pub fn tool(args: &[String]) -> ExitCode {
    let mut c = tool_command(args);
    eprintln!("$ {}", describe(&c));
    match c.status() {
        Ok(s) => ExitCode::from(s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(2)),
        Err(e) => {
            eprintln!("xtask inspect: cannot run cargo: {e}");
            ExitCode::from(2)
        }
    }
}
