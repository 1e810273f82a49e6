//! Building and booting the QEMU test kernels, and installing QEMU where it is missing.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::report::{parse_kernel, Tally};
use crate::toolchain::{cargo, root, run};

/// How long one kernel may run under TCG before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(90);

/// One bootable kernel of the `qemu-tests` package.
pub struct Kernel {
    /// Its `[[bin]]` name.
    pub bin: &'static str,
    /// Rust target.
    pub target: &'static str,
    /// QEMU binary.
    pub qemu: &'static str,
    /// QEMU arguments before `-kernel`.
    pub args: &'static [&'static str],
    /// Prefix for printed test names (`[x86_64] ...`).
    pub label: &'static str,
    /// A demo (for `cargo xtask qemu`) rather than a test kernel.
    pub demo: bool,
    /// Also run the negative control: built with `no-tlb-flush`, the remap test must fail.
    pub negative_control: bool,
}

impl Kernel {
    /// Whether the kernel's source exists yet.
    pub fn exists(&self) -> bool {
        root()
            .join("qemu-tests/src/bin")
            .join(format!("{}.rs", self.bin))
            .exists()
    }

    fn elf(&self) -> PathBuf {
        root()
            .join("target")
            .join(self.target)
            .join("release")
            .join(self.bin)
    }

    /// Maps QEMU's exit status to the kernel's own code (`harness::EXIT_*`).
    fn kernel_code(&self, status: Option<i32>) -> Option<i32> {
        let s = status?;
        if self.qemu.ends_with("x86_64") {
            // isa-debug-exit: status = (value << 1) | 1.
            (s & 1 == 1).then_some(s >> 1)
        } else {
            Some(s)
        }
    }
}

const X86_ARGS: &[&str] = &[
    "-M",
    "microvm",
    "-accel",
    "tcg",
    "-m",
    "256M",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
];
const ARM_ARGS: &[&str] = &[
    "-machine",
    "virt",
    "-cpu",
    "cortex-a72",
    "-accel",
    "tcg",
    "-m",
    "256M",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
    "-semihosting",
];
const ARM_EL2_ARGS: &[&str] = &[
    "-machine",
    "virt,virtualization=on",
    "-cpu",
    "cortex-a72",
    "-accel",
    "tcg",
    "-m",
    "256M",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
    "-semihosting",
];

/// Every kernel: adding one is one line here plus its `[[bin]]` in `qemu-tests`.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        bin: "x86_64-tests",
        target: "x86_64-unknown-none",
        qemu: "qemu-system-x86_64",
        args: X86_ARGS,
        label: "x86_64",
        demo: false,
        negative_control: true,
    },
    Kernel {
        bin: "aarch64-tests",
        target: "aarch64-unknown-none",
        qemu: "qemu-system-aarch64",
        args: ARM_ARGS,
        label: "aarch64",
        demo: false,
        negative_control: true,
    },
    Kernel {
        bin: "aarch64-tests",
        target: "aarch64-unknown-none",
        qemu: "qemu-system-aarch64",
        args: ARM_EL2_ARGS,
        label: "aarch64/el2",
        demo: false,
        negative_control: false,
    },
    Kernel {
        bin: "x86_64-demo",
        target: "x86_64-unknown-none",
        qemu: "qemu-system-x86_64",
        args: X86_ARGS,
        label: "x86_64",
        demo: true,
        negative_control: false,
    },
    Kernel {
        bin: "aarch64-demo",
        target: "aarch64-unknown-none",
        qemu: "qemu-system-aarch64",
        args: ARM_ARGS,
        label: "aarch64",
        demo: true,
        negative_control: false,
    },
];

/// Builds and boots every test kernel, counting each test line.
pub fn test_kernels(tally: &mut Tally) {
    let kernels: Vec<&Kernel> = KERNELS.iter().filter(|k| !k.demo).collect();
    let present: Vec<&&Kernel> = kernels.iter().filter(|k| k.exists()).collect();
    if present.is_empty() {
        eprintln!("no QEMU test kernels in qemu-tests/src/bin yet: nothing to boot");
        return;
    }
    if let Err(e) = ensure_qemu() {
        eprintln!("{e}");
        tally.record("QEMU installed", false);
        return;
    }
    for k in &present {
        boot_and_count(k, tally);
    }
    for k in present.iter().filter(|k| k.negative_control) {
        negative_control(k, tally);
    }
}

fn build(k: &Kernel) -> bool {
    build_with(k, "kernel")
}

fn build_with(k: &Kernel, features: &str) -> bool {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "qemu-tests",
        "--features",
        features,
        "--target",
        k.target,
        "--bin",
        k.bin,
    ]))
}

/// The tests that depend on TLB maintenance: with a TLB hook that does nothing, exactly these
/// must fail (they see stale translations).
const TLB_DEPENDENT: [&str; 2] = [
    "live::instance_api_huge_page_lifecycle",
    "live::remap_visible_after_flush",
];

/// Builds `k` with `no-tlb-flush` and checks that exactly the TLB-dependent tests fail: proof
/// that they can see a missing flush.
fn negative_control(k: &Kernel, tally: &mut Tally) {
    let name = format!(
        "[{}] negative control: the TLB-dependent tests fail without TLB flushes",
        k.label
    );
    let ok = build_with(k, "kernel,no-tlb-flush")
        && match boot(k) {
            Ok((_, output)) => {
                let run = parse_kernel(&output);
                let mut failed: Vec<&str> = run
                    .tests
                    .iter()
                    .filter(|t| !t.ok)
                    .map(|t| t.name.as_str())
                    .collect();
                failed.sort_unstable();
                eprintln!("  negative control: failed tests {failed:?}");
                failed == TLB_DEPENDENT
            }
            Err(e) => {
                eprintln!("  {e}");
                false
            }
        };
    println!("{name} ... {}", if ok { "ok" } else { "FAILED" });
    tally.record(&name, ok);
}

fn boot_and_count(k: &Kernel, tally: &mut Tally) {
    let name = format!("[{}] {}", k.label, k.bin);
    if !build(k) {
        tally.record(&format!("{name}: build"), false);
        return;
    }
    let (status, output) = match boot(k) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: {e}");
            tally.record(&format!("{name}: {e}"), false);
            return;
        }
    };
    let run = parse_kernel(&output);
    for t in &run.tests {
        let line = if t.ok {
            "ok".to_string()
        } else {
            format!("FAILED: {}", t.detail)
        };
        println!("[{}] test {} ... {line}", k.label, t.name);
        tally.record(&format!("[{}] {}", k.label, t.name), t.ok);
    }
    let counted = (
        run.tests.iter().filter(|t| t.ok).count(),
        run.tests.iter().filter(|t| !t.ok).count(),
    );
    let code = k.kernel_code(status);
    let sane = run.summary == Some(counted) && code == Some(if counted.1 == 0 { 0 } else { 1 });
    if !sane {
        eprintln!("{name}: summary {:?}, counted {counted:?}, exit status {status:?} -> kernel code {code:?}", run.summary);
        tally.record(&format!("{name}: crashed, hung or exited wrongly"), false);
    }
}

/// Boots `k`, streaming its console; returns QEMU's exit status (None if killed) and output.
fn boot(k: &Kernel) -> Result<(Option<i32>, String), String> {
    let mut child = Command::new(k.qemu)
        .args(k.args)
        .arg("-kernel")
        .arg(k.elf())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", k.qemu))?;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let label = k.label;
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("  {label} | {line}");
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s.code();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("  {label} | killed after {TIMEOUT:?} (hung)");
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    if !err.trim().is_empty() {
        eprintln!("  {label} stderr | {}", err.trim());
    }
    let output: Vec<String> = rx.try_iter().collect();
    Ok((status, output.join("\n")))
}

/// `cargo xtask qemu [arch]`: boots the demo kernels.
pub fn demo(arch: Option<&str>) -> Result<(), String> {
    ensure_qemu()?;
    let mut ok = true;
    for k in KERNELS
        .iter()
        .filter(|k| k.demo && arch.is_none_or(|a| k.label == a))
    {
        if !k.exists() {
            return Err(format!("{} does not exist yet", k.bin));
        }
        if !build(k) {
            return Err(format!("building {} failed", k.bin));
        }
        let (status, _) = boot(k)?;
        let code = k.kernel_code(status);
        println!("[{}] {} exited with kernel code {code:?}", k.label, k.bin);
        ok &= code == Some(0);
    }
    if ok {
        Ok(())
    } else {
        Err("a demo kernel failed".into())
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

/// Makes sure both QEMU system emulators exist, installing them on Debian as root.
pub fn ensure_qemu() -> Result<(), String> {
    if have("qemu-system-x86_64") && have("qemu-system-aarch64") {
        return Ok(());
    }
    let how = "install QEMU: Debian/Ubuntu `apt-get install qemu-system-x86 qemu-system-arm`, \
               Fedora `dnf install qemu-system-x86 qemu-system-aarch64`, macOS `brew install qemu`";
    let sources = std::path::Path::new("/etc/apt/sources.list.d/debian.sources");
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root_user || !sources.exists() || !have("apt-get") {
        return Err(format!("QEMU is missing; {how}"));
    }
    // The preinstalled qemu-utils comes from bookworm-backports; the system emulators must come
    // from there too, from the mirror this machine is already configured for. The extra list is
    // added beside the configured sources (their dependencies come from the main suite).
    let text = std::fs::read_to_string(sources).map_err(|e| e.to_string())?;
    let uri = text
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| format!("no URIs in {}; {how}", sources.display()))?;
    let list = std::env::temp_dir().join("awk-paging-backports.list");
    std::fs::write(&list, format!("deb {uri} bookworm-backports main\n"))
        .map_err(|e| e.to_string())?;
    let opt = format!("Dir::Etc::sourcelist={}", list.display());
    let update = run(Command::new("apt-get").args(["-o", &opt, "update"]));
    let install = update
        && run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "-o",
                &opt,
                "install",
                "-y",
                "--no-install-recommends",
                "-t",
                "bookworm-backports",
                "qemu-system-x86",
                "qemu-system-arm",
            ]));
    let _ = std::fs::remove_file(&list);
    if install && have("qemu-system-x86_64") && have("qemu-system-aarch64") {
        Ok(())
    } else {
        Err(format!(
            "installing QEMU from bookworm-backports failed; {how}"
        ))
    }
}
