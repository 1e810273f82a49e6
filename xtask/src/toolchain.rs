//! Running cargo and rustup, and making sure the bare-metal targets are installed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};

use crate::targets::TARGETS;

/// The workspace root, found at run time (never compiled in: a copied checkout that reuses a
/// `target/` directory must test itself, not the tree the binary was first built in).
///
/// Starts from `CARGO_MANIFEST_DIR` as `cargo run` sets it for the running process (the
/// checkout cargo resolved, even with `--manifest-path`), else from the current directory, and
/// walks up to the first `Cargo.toml` with a `[workspace]` table. Computed once.
pub fn root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let starts = [
            std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
            std::env::current_dir().ok(),
        ];
        starts
            .into_iter()
            .flatten()
            .find_map(|start| workspace_root(&start))
            .unwrap_or_else(|| {
                eprintln!(
                    "xtask: no Cargo.toml with a [workspace] table in or above the current \
                     directory; run it as `cargo xtask` inside the awk-paging checkout"
                );
                std::process::exit(2)
            })
    })
    .clone()
}

/// The nearest directory at or above `start` whose `Cargo.toml` declares a workspace.
pub fn workspace_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        declares_workspace(&text).then(|| dir.to_path_buf())
    })
}

/// Whether a manifest has a `[workspace]` table (a `[workspace.*]` header defines it too).
fn declares_workspace(manifest: &str) -> bool {
    manifest.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("[workspace]") || l.starts_with("[workspace.")
    })
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

/// The command line as a shell would run it, with the variables set for it in front.
pub fn describe(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(k, v)| {
        v.map(|v| format!("{}={:?}", k.to_string_lossy(), v.to_string_lossy()))
    });
    let program = std::iter::once(cmd.get_program().to_string_lossy().into_owned());
    let args = cmd.get_args().map(|a| a.to_string_lossy().into_owned());
    envs.chain(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The entries of `wanted` that `installed` (one per line, as `rustup target list --installed`
/// or `rustup component list --installed` print them) does not list. A component is listed
/// with its host triple appended (`miri-x86_64-unknown-linux-gnu`) or without (`rust-src`).
pub fn missing<'a>(installed: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|w| {
            !installed.lines().map(str::trim).any(|l| {
                l == *w
                    || l.strip_prefix(*w)
                        .is_some_and(|rest| rest.starts_with('-') && rest[1..].contains('-'))
            })
        })
        .collect()
}

/// `rustup` run from the workspace root, so `rust-toolchain.toml` picks the pinned toolchain.
fn rustup() -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(root());
    c
}

/// What `rustup <args>` prints, or nothing if it cannot run.
fn rustup_output(args: &[&str]) -> String {
    rustup()
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Installs missing bare-metal targets for the pinned toolchain (`rust-toolchain.toml`).
pub fn ensure_targets() -> bool {
    let installed = rustup_output(&["target", "list", "--installed"]);
    let missing = missing(&installed, &TARGETS);
    missing.is_empty() || run(rustup().args(["target", "add"]).args(&missing))
}

/// The toolchain Miri runs on.
pub const MIRI_TOOLCHAIN: &str = "nightly";
/// Miri and the standard library sources it builds its sysroot from.
const MIRI_COMPONENTS: [&str; 2] = ["miri", "rust-src"];

/// Installs Miri on the nightly toolchain if it is missing (the toolchain too, minimal profile),
/// then builds Miri's sysroot (`cargo miri setup`, a no-op once done), so that the run that
/// follows measures only the tests.
pub fn ensure_miri() -> bool {
    let listed = rustup()
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            MIRI_TOOLCHAIN,
        ])
        .output();
    let installed = match listed {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let missing = missing(&text, &MIRI_COMPONENTS);
            missing.is_empty()
                || run(rustup()
                    .args(["component", "add"])
                    .args(&missing)
                    .args(["--toolchain", MIRI_TOOLCHAIN]))
        }
        // No nightly toolchain at all.
        _ => {
            let mut c = rustup();
            c.args([
                "toolchain",
                "install",
                MIRI_TOOLCHAIN,
                "--profile",
                "minimal",
            ]);
            for comp in MIRI_COMPONENTS {
                c.args(["--component", comp]);
            }
            run(&mut c)
        }
    };
    installed && run(cargo().args([&format!("+{MIRI_TOOLCHAIN}"), "miri", "setup"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory tree under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn describes_commands_with_their_environment() {
        let mut c = Command::new("cargo");
        c.args(["doc", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings");
        assert_eq!(
            describe(&c),
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc --no-deps"
        );
        assert_eq!(describe(&Command::new("qemu")), "qemu");
    }

    #[test]
    fn missing_targets_and_components() {
        let targets = "x86_64-unknown-linux-gnu\nx86_64-unknown-none\n";
        assert_eq!(
            missing(targets, &["x86_64-unknown-none", "aarch64-unknown-none"]),
            ["aarch64-unknown-none"]
        );
        assert!(missing(targets, &["x86_64-unknown-none"]).is_empty());
        let components = "cargo-x86_64-unknown-linux-gnu\nmiri-x86_64-unknown-linux-gnu\n\
                          rust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n";
        assert_eq!(missing(components, &["miri", "rust-src"]), ["rust-src"]);
        assert!(missing(&format!("{components}rust-src\n"), &["miri", "rust-src"]).is_empty());
        // A prefix of another component's name is not that component.
        assert_eq!(missing("rust-src\n", &["rust"]), ["rust"]);
        assert_eq!(missing("", &["miri"]), ["miri"]);
    }

    #[test]
    fn manifest_workspace_detection() {
        assert!(declares_workspace("[workspace]\nmembers = [\"a\"]\n"));
        assert!(declares_workspace(
            "[package]\nname = \"x\"\n\n  [workspace]\n"
        ));
        assert!(declares_workspace(
            "[workspace.dependencies]\nfoo = \"1\"\n"
        ));
        // Members inherit from the workspace but are not its root.
        assert!(!declares_workspace(
            "[package]\nedition.workspace = true\n[dependencies]\nfoo.workspace = true\n"
        ));
        assert!(!declares_workspace("# [workspace]\n[package]\n"));
    }

    #[test]
    fn finds_the_root_of_the_tree_it_starts_in() {
        let s = Scratch::new("root");
        s.write(
            "Cargo.toml",
            "[workspace]\nmembers = [\"xtask\", \"core\"]\n",
        );
        s.write("xtask/Cargo.toml", "[package]\nname = \"xtask\"\n");
        s.write("core/src/lib.rs", "");
        s.write("core/Cargo.toml", "[package]\nedition.workspace = true\n");
        // A copy of the checkout elsewhere: it must find itself, not the original.
        s.write("copy/Cargo.toml", "[workspace]\n");
        s.write("copy/xtask/Cargo.toml", "[package]\nname = \"xtask\"\n");
        let root = s.0.as_path();
        assert_eq!(workspace_root(root).as_deref(), Some(root));
        assert_eq!(workspace_root(&root.join("xtask")).as_deref(), Some(root));
        assert_eq!(
            workspace_root(&root.join("core/src")).as_deref(),
            Some(root)
        );
        let copy = root.join("copy");
        assert_eq!(
            workspace_root(&copy.join("xtask")).as_deref(),
            Some(copy.as_path())
        );
    }

    #[test]
    fn no_root_outside_a_workspace() {
        let s = Scratch::new("noroot");
        s.write("crate/Cargo.toml", "[package]\nname = \"lone\"\n");
        // The temp dir itself may sit below some workspace on odd machines; only check that
        // the lone package's manifest is never taken for a root.
        let found = workspace_root(&s.0.join("crate"));
        assert_ne!(found.as_deref(), Some(s.0.join("crate").as_path()));
        assert_ne!(found.as_deref(), Some(s.0.as_path()));
    }

    #[test]
    fn this_checkout_is_found_at_run_time() {
        // `cargo test` runs with the package directory as the current directory.
        let here = std::env::current_dir().unwrap();
        let root = workspace_root(&here).unwrap();
        assert!(root.join("xtask/Cargo.toml").exists());
        assert!(root.join("awk-paging/Cargo.toml").exists());
        assert_eq!(super::root(), root);
    }
}
