//! Running cargo and rustup, and making sure the bare-metal targets are installed.

use std::process::{Command, Stdio};

/// The bare-metal targets the libraries and kernels build for.
pub const TARGETS: [&str; 2] = ["x86_64-unknown-none", "aarch64-unknown-none"];

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

/// Runs a command, echoing and capturing its stdout and stderr; returns (success, combined).
pub fn run_capture(cmd: &mut Command) -> (bool, String) {
    eprintln!("$ {}", describe(cmd));
    match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output() {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprint!("{stderr}");
            print!("{stdout}");
            (out.status.success(), format!("{stdout}\n{stderr}"))
        }
        Err(e) => {
            eprintln!("  could not start: {e}");
            (false, String::new())
        }
    }
}

fn describe(cmd: &Command) -> String {
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
