//! Installing QEMU where it is missing, building the kernels, booting them under a timeout with
//! their console streamed, and counting what they report.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::report::{check_kernel_run, parse_kernel, Tally};
use crate::targets::{select, Arch, Kernel, KernelExit, Mode};
use crate::toolchain::{cargo, describe, run};

/// How long one kernel may run under TCG before it counts as hung (override:
/// `XTASK_QEMU_TIMEOUT=<seconds>`).
const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// Cargo features of a normal kernel build.
pub const FEATURES: &str = "kernel";
/// Cargo features of the negative control: the TLB hook does nothing.
pub const NO_FLUSH_FEATURES: &str = "kernel,no-tlb-flush";

/// The tests that depend on TLB maintenance: built with `no-tlb-flush`, exactly these must fail
/// (they see stale translations). Kept sorted. `Some(arch)`: a test only that architecture's
/// kernels have.
const TLB_DEPENDENT: [(&str, Option<Arch>); 10] = [
    ("live::contiguous_hint_map_and_protect", AARCH64_ONLY),
    ("live::instance_api_huge_page_lifecycle", None),
    ("live::map_range_alloc_then_unmap_range_free", None),
    ("live::protect_range_splits_live_huge_page", None),
    ("live::range_past_the_threshold_is_seen_by_the_cpu", None),
    ("live::remap_visible_after_flush", None),
    ("live::remap_visible_after_flush_all", None),
    ("live::remap_visible_after_flush_page", None),
    ("live::unmap_range_reclaimed_table_is_not_walked", None),
    ("smp::concurrent_map_unmap_and_remap", None),
];

/// A [`TLB_DEPENDENT`] test of the AArch64 kernels only.
const AARCH64_ONLY: Option<Arch> = Some(Arch::Aarch64);

/// The TLB-dependent tests of `arch`'s kernels, sorted.
fn tlb_dependent(arch: Arch) -> Vec<&'static str> {
    TLB_DEPENDENT
        .iter()
        .filter(|(_, only)| only.is_none_or(|a| a == arch))
        .map(|&(name, _)| name)
        .collect()
}

fn timeout() -> Duration {
    let secs = std::env::var("XTASK_QEMU_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    Duration::from_secs(secs)
}

/// What one boot produced.
pub struct Boot {
    /// QEMU's exit status; `None` if it was killed (timeout) or died from a signal.
    pub status: Option<i32>,
    pub timed_out: bool,
    /// Console output, stdout and stderr, in arrival order per stream.
    pub output: String,
}

fn build(k: &Kernel, features: &str) -> bool {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "qemu-tests",
        "--features",
        features,
        "--target",
        k.arch.target(),
        "--bin",
        k.bin,
    ]))
}

/// Streams one pipe line by line to the terminal (prefixed with `label`) and into `tx`.
fn pump(pipe: impl Read + Send + 'static, label: String, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // Kernel consoles are not guaranteed UTF-8; never stop reading on bad bytes.
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    eprintln!("  {label} | {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Boots `k` (already built), streaming its console, killing it after the timeout.
pub fn boot(k: &Kernel) -> Result<Boot, String> {
    let mut cmd = Command::new(k.arch.qemu());
    cmd.args(k.qemu_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("$ {}", describe(&cmd));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", k.arch.qemu()))?;
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(out) = child.stdout.take() {
        pump(out, k.label.to_string(), tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, format!("{} stderr", k.label), tx.clone());
    }
    drop(tx);
    let limit = timeout();
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break (s.code(), false);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("  {} | killed after {limit:?}: hung", k.label);
            break (None, true);
        }
        thread::sleep(Duration::from_millis(20));
    };
    // The pumps end when the pipes close (QEMU has exited); collect everything they read.
    let output: Vec<String> = rx.iter().collect();
    Ok(Boot {
        status,
        timed_out,
        output: output.join("\n"),
    })
}

/// Builds and boots one test kernel with `features`, printing and counting each test line plus
/// one extra failure if the run as a whole went wrong.
fn run_test_kernel(k: &Kernel, features: &str, tally: &mut Tally) {
    let name = format!("[{}] {}", k.label, k.bin);
    if !k.exists() {
        let why = format!("{name}: not built yet (no qemu-tests/src/bin/{}.rs)", k.bin);
        println!("{why} ... FAILED");
        tally.record(&why, false);
        return;
    }
    if !build(k, features) {
        println!("{name}: build ... FAILED");
        tally.record(&format!("{name}: build"), false);
        return;
    }
    let boot = match boot(k) {
        Ok(b) => b,
        Err(e) => {
            println!("{name}: {e} ... FAILED");
            tally.record(&format!("{name}: {e}"), false);
            return;
        }
    };
    let parsed = parse_kernel(&boot.output);
    for t in &parsed.tests {
        let result = if t.ok {
            "ok".to_string()
        } else {
            format!("FAILED: {}", t.detail)
        };
        println!("[{}] test {} ... {result}", k.label, t.name);
        tally.record(&format!("[{}] {}", k.label, t.name), t.ok);
    }
    let exit = k.arch.kernel_exit(boot.status);
    if let Err(why) = check_kernel_run(&parsed, exit, boot.timed_out) {
        println!("{name}: crashed/hung/exit status ... FAILED: {why}");
        tally.record(&format!("{name}: crashed/hung/exit status ({why})"), false);
    }
}

/// Builds `k` with `no-tlb-flush` and checks that exactly the TLB-dependent tests fail: proof
/// that they can see a missing flush.
fn negative_control(k: &Kernel, tally: &mut Tally) {
    let name = format!(
        "[{}] negative control: exactly the TLB-dependent tests fail without TLB flushes",
        k.label
    );
    let ok = k.exists()
        && build(k, NO_FLUSH_FEATURES)
        && match boot(k) {
            Ok(boot) => {
                let parsed = parse_kernel(&boot.output);
                let mut failed: Vec<&str> = parsed
                    .tests
                    .iter()
                    .filter(|t| !t.ok)
                    .map(|t| t.name.as_str())
                    .collect();
                failed.sort_unstable();
                let expected = tlb_dependent(k.arch);
                eprintln!("  negative control: failed tests {failed:?}, expected {expected:?}");
                let whole =
                    check_kernel_run(&parsed, k.arch.kernel_exit(boot.status), boot.timed_out);
                if let Err(why) = &whole {
                    eprintln!("  negative control run: {why}");
                }
                failed == expected && whole.is_ok()
            }
            Err(e) => {
                eprintln!("  {e}");
                false
            }
        };
    println!("{name} ... {}", if ok { "ok" } else { "FAILED" });
    tally.record(&name, ok);
}

/// Runs every test kernel (of `arch`, if given). With `no_flush`, the kernels are built with
/// `no-tlb-flush` instead (their TLB-dependent tests must then fail) and the negative controls
/// are not run separately.
///
/// The targets and QEMU must be in place ([`crate::prereq::ensure`]).
pub fn test_kernels(tally: &mut Tally, arch: Option<Arch>, no_flush: bool) {
    let features = if no_flush {
        NO_FLUSH_FEATURES
    } else {
        FEATURES
    };
    for k in select(true, arch) {
        run_test_kernel(k, features, tally);
    }
    if !no_flush {
        for k in select(true, arch).filter(|k| {
            k.mode
                == Mode::Test {
                    negative_control: true,
                }
        }) {
            negative_control(k, tally);
        }
    }
}

/// `cargo xtask qemu [arch]`: builds and boots the demo kernels; all must exit successfully.
/// The targets and QEMU must be in place ([`crate::prereq::ensure`]).
pub fn demo(arch: Option<Arch>) -> Result<(), String> {
    let mut failed = Vec::new();
    for k in select(false, arch) {
        let name = format!("[{}] {}", k.label, k.bin);
        if !k.exists() {
            failed.push(format!("{name}: not built yet"));
            continue;
        }
        if !build(k, FEATURES) {
            failed.push(format!("{name}: build failed"));
            continue;
        }
        let boot = boot(k)?;
        let exit = k.arch.kernel_exit(boot.status);
        println!("{name} exited: {exit} (QEMU status {:?})", boot.status);
        if exit != KernelExit::Success {
            failed.push(format!("{name}: {exit}"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const HOW_TO_INSTALL: &str = "install QEMU yourself: \
    Debian/Ubuntu `sudo apt-get install qemu-system-x86 qemu-system-arm`, \
    Fedora `sudo dnf install qemu-system-x86 qemu-system-aarch64`, \
    macOS `brew install qemu`";

/// The first `URIs:` value of a deb822 sources file.
pub fn first_uri(deb822: &str) -> Option<&str> {
    deb822
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| l.trim_start().strip_prefix("URIs:"))
        .and_then(|v| v.split_whitespace().next())
}

/// Makes sure both QEMU system emulators exist, installing them on Debian as root.
pub fn ensure_qemu() -> Result<(), String> {
    install_qemu(false)
}

/// Installs QEMU on Debian as root if it is missing, or (with `force`, `cargo xtask install-qemu`)
/// runs the install even when it is present (apt then finds it up to date).
pub fn install_qemu(force: bool) -> Result<(), String> {
    let both = || have(Arch::X86_64.qemu()) && have(Arch::Aarch64.qemu());
    if !force && both() {
        return Ok(());
    }
    let sources = std::path::Path::new("/etc/apt/sources.list.d/debian.sources");
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root_user || !sources.exists() || !have("apt-get") {
        return Err(format!(
            "QEMU (qemu-system-x86_64, qemu-system-aarch64) is missing and is only installed \
             automatically as root on Debian; {HOW_TO_INSTALL}"
        ));
    }
    eprintln!("\n==== installing QEMU from bookworm-backports ====");
    // The preinstalled qemu-utils comes from bookworm-backports, so a plain install of the
    // system emulators conflicts; they must come from backports too, from the mirror this
    // machine is already configured for. The extra list *replaces* only the main sources.list:
    // the deb822 files in sources.list.d stay, because QEMU's dependencies come from the main
    // suite (with `Dir::Etc::sourceparts=-` apt would see backports alone and, worse, `update`
    // would drop the other suites' cached indexes).
    let text = std::fs::read_to_string(sources).map_err(|e| e.to_string())?;
    let uri = first_uri(&text)
        .ok_or_else(|| format!("no URIs in {}; {HOW_TO_INSTALL}", sources.display()))?;
    let list = std::env::temp_dir().join(format!("xtask-backports-{}.list", std::process::id()));
    std::fs::write(&list, format!("deb {uri} bookworm-backports main\n"))
        .map_err(|e| e.to_string())?;
    let opt = format!("Dir::Etc::sourcelist={}", list.display());
    let apt = || {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", &opt]);
        c
    };
    let installed = run(apt().arg("update"))
        && run(apt().args([
            "install",
            "-y",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
            "qemu-system-x86",
            "qemu-system-arm",
        ]));
    let _ = std::fs::remove_file(&list);
    if installed && both() {
        Ok(())
    } else {
        Err(format!(
            "installing QEMU from bookworm-backports failed; {HOW_TO_INSTALL}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_uri_of_deb822() {
        let text = "Types: deb\n# URIs: http://commented.invalid/x\nURIs: http://mirror.invalid/debian http://other.invalid/d\n\
                    Suites: bookworm\n\nTypes: deb\nURIs: http://security.invalid/\n";
        assert_eq!(first_uri(text), Some("http://mirror.invalid/debian"));
        assert_eq!(first_uri("Types: deb\nSuites: bookworm\n"), None);
    }

    #[test]
    fn tlb_dependent_list_is_sorted() {
        let names = TLB_DEPENDENT.map(|(name, _)| name);
        let mut sorted = names;
        sorted.sort_unstable();
        assert_eq!(sorted, names);
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let list = tlb_dependent(arch);
            assert!(list.is_sorted(), "{list:?}");
            assert!(list.contains(&"live::remap_visible_after_flush"));
        }
    }
}
