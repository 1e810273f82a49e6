//! Running cargo and rustup, and making sure the bare-metal targets are installed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};

use crate::targets::TARGETS;

/// The workspace root (xtask lives one level below it).
pub fn root() -> std::path::PathBuf {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or(manifest)
}

/// `cargo` through the rustup proxy, so `rust-toolchain.toml` picks the pinned toolchain.
pub fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root());
    c
}

/// Runs a command with inherited output; `true` on success.
pub fn run(cmd: &mut Command) -> bool {
    eprintln!("$ {}", describe(cmd));
    match cmd.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("  could not start: {e}");
            false
        }
    }
}

/// Runs a command, streaming its stdout and stderr to ours as they arrive and capturing both;
/// returns (success, stdout followed by stderr).
pub fn run_capture(cmd: &mut Command) -> (bool, String) {
    eprintln!("$ {}", describe(cmd));
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("  could not start: {e}");
            return (false, String::new());
        }
    };
    let out = child.stdout.take().map(|p| tee(p, false));
    let err = child.stderr.take().map(|p| tee(p, true));
    let ok = child.wait().is_ok_and(|s| s.success());
    let mut text = String::new();
    for t in [out, err].into_iter().flatten() {
        text.push_str(&t.join().unwrap_or_default());
        text.push('\n');
    }
    (ok, text)
}

/// Copies a pipe to our stdout (or stderr) as it arrives, returning everything read.
fn tee(mut pipe: impl Read + Send + 'static, to_stderr: bool) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = if to_stderr {
                std::io::stderr().write_all(&buf[..n])
            } else {
                std::io::stdout().write_all(&buf[..n])
            };
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

pub fn describe(cmd: &Command) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

/// Installs missing bare-metal targets for the pinned toolchain (`rust-toolchain.toml`).
pub fn ensure_targets() -> bool {
    let installed = Command::new("rustup")
        .current_dir(root())
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    run(Command::new("rustup")
        .current_dir(root())
        .args(["target", "add"])
        .args(&missing))
}
