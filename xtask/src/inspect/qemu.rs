//! The QEMU cross-check: QEMU's own page-table walker against the host tool.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::parse::{
    as_info_mem, pages, parse_info_mem, parse_info_tlb, parse_regions, probes, translations,
};
use super::tool_command;
use crate::report::Tally;
use crate::targets::{Arch, Kernel, Mode};
use crate::toolchain::{cargo, describe, run};

/// One architecture's introspection kernel (`qemu-tests/src/bin/<arch>-inspect.rs`; not rows
/// of the test table: they follow no test protocol, they wait to be read) and how to read it.
struct Setup {
    kernel: Kernel,
    /// Guest RAM saved with `pmemsave`: `[base, base + len)` (all of `kernel.memory`).
    ram: (u64, u64),
    /// The host tool's regime arguments.
    regime: &'static [&'static str],
    /// Whether QEMU has `info mem` / `info tlb` for the architecture (x86 only).
    info: bool,
}

const SETUPS: [Setup; 2] = [
    Setup {
        kernel: Kernel {
            bin: "x86_64-inspect",
            arch: Arch::X86_64,
            machine: "microvm",
            memory: "128M",
            extra: &[],
            label: "x86_64/inspect",
            mode: Mode::Demo,
        },
        ram: (0, 128 << 20),
        regime: &["--arch", "x86_64"],
        info: true,
    },
    Setup {
        kernel: Kernel {
            bin: "aarch64-inspect",
            arch: Arch::Aarch64,
            machine: "virt",
            memory: "256M",
            extra: &[],
            label: "aarch64/inspect",
            mode: Mode::Demo,
        },
        ram: (0x4000_0000, 256 << 20),
        regime: &["--arch", "aarch64", "--va-bits", "48"],
        info: false,
    },
];
/// How long the kernel may take to get ready, and QEMU to answer.
const WAIT: Duration = Duration::from_secs(60);

/// Reads the monitor until its prompt; returns what came before it.
fn monitor_answer(m: &mut UnixStream) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !buf.ends_with(b"(qemu) ") {
        let n = m.read(&mut chunk).map_err(|e| format!("monitor: {e}"))?;
        if n == 0 {
            return Err("monitor closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).replace('\r', ""))
}

fn monitor(m: &mut UnixStream, command: &str) -> Result<String, String> {
    eprintln!("  (qemu) {command}");
    m.write_all(format!("{command}\n").as_bytes())
        .map_err(|e| format!("monitor: {e}"))?;
    monitor_answer(m)
}

/// What the boot gave: the kernel's console, QEMU's `info mem` and `info tlb`.
struct Saved {
    console: String,
    info_mem: String,
    info_tlb: String,
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Boots the kernel with a monitor socket, waits for it to get ready, asks QEMU for `info
/// mem`, `info tlb`, a `pmemsave` of all RAM into `dump` and an ELF core of it
/// (`dump-guest-memory`) beside it (extension `.elf`), then quits.
fn boot_and_save(setup: &Setup, dir: &Path, dump: &Path) -> Result<Saved, String> {
    let k = &setup.kernel;
    let socket = dir.join("monitor.sock");
    let mut cmd = Command::new(k.arch.qemu());
    cmd.args(k.qemu_args())
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("$ {}", describe(&cmd));
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().ok_or("no QEMU stdout")?;
    let label = k.label;
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("  {label} | {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut console = String::new();
    loop {
        let left = WAIT.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                console += &line;
                console.push('\n');
                if line == "inspect: ready" {
                    break;
                }
                if line == "inspect: setup failed" {
                    kill(&mut child);
                    return Err("the kernel could not build its address space".into());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill(&mut child);
                return Err(format!("the kernel was not ready after {WAIT:?}"));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                kill(&mut child);
                return Err("QEMU exited before the kernel was ready".into());
            }
        }
    }
    let result = (|| -> Result<(String, String), String> {
        let mut m = UnixStream::connect(&socket).map_err(|e| format!("monitor socket: {e}"))?;
        m.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
        monitor_answer(&mut m)?;
        let (info_mem, info_tlb) = if setup.info {
            (monitor(&mut m, "info mem")?, monitor(&mut m, "info tlb")?)
        } else {
            (String::new(), String::new())
        };
        let (base, len) = setup.ram;
        monitor(
            &mut m,
            &format!("pmemsave {base:#x} {len:#x} \"{}\"", dump.display()),
        )?;
        monitor(
            &mut m,
            &format!("dump-guest-memory {}", dump.with_extension("elf").display()),
        )?;
        let _ = m.write_all(b"quit\n");
        Ok((info_mem, info_tlb))
    })();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    kill(&mut child);
    let (info_mem, info_tlb) = result?;
    Ok(Saved {
        console,
        info_mem,
        info_tlb,
    })
}

fn record(tally: &mut Tally, k: &Kernel, name: &str, result: Result<(), String>) {
    let name = format!("[{}] {name}", k.label);
    match &result {
        Ok(()) => println!("{name} ... ok"),
        Err(why) => println!("{name} ... FAILED: {why}"),
    }
    tally.record(&name, result.is_ok());
}

/// The QEMU cross-check of both architectures ([`cross_check`]). The targets and QEMU must be
/// in place.
pub fn qemu_cross_check(tally: &mut Tally) {
    for setup in &SETUPS {
        cross_check(tally, setup);
    }
}

/// Boots one introspection kernel under QEMU, saves its RAM with `pmemsave`, runs the host
/// tool on the dump and requires its ptdump to equal the kernel's live ptdump, its
/// translations to agree with what the CPU did at the sampled addresses (x86: real reads and
/// writes, faults included; AArch64: `AT S1E1R/W` and the PA in PAR_EL1), and on x86 its
/// regions to agree with QEMU's `info mem` (ranges, user, write) and `info tlb` (every page's
/// frame).
fn cross_check(tally: &mut Tally, setup: &Setup) {
    let k = &setup.kernel;
    let stage = "clippy, build, boot, pmemsave, dump-guest-memory, host tool";
    // Not rows of the kernel table, so the lint step does not see them: linted here, as the
    // lint step lints the kernels (same profile: its check results are reused), and built as
    // the QEMU step builds them (release).
    let kernel = |verb| {
        let mut c = cargo();
        c.arg(verb);
        if verb == "build" {
            c.arg("--release");
        }
        c.args([
            "-p",
            "qemu-tests",
            "--features",
            crate::qemu::FEATURES,
            "--target",
            k.arch.target(),
            "--bin",
            k.bin,
        ]);
        if verb == "clippy" {
            c.args(["--", "-D", "warnings"]);
        }
        run(&mut c)
    };
    if !kernel("clippy") || !kernel("build") {
        return record(tally, k, stage, Err("kernel clippy or build failed".into()));
    }
    let dir = std::env::temp_dir().join(format!("awk-inspect-{}-{}", std::process::id(), k.bin));
    let _ = std::fs::create_dir_all(&dir);
    let dump = dir.join("memory.raw");
    let result = boot_and_save(setup, &dir, &dump).and_then(|s| {
        let root = s
            .console
            .lines()
            .find_map(|l| l.strip_prefix("inspect: root "))
            .ok_or("the kernel printed no root")?
            .to_string();
        let tool_on = |file: &Path, base: bool, translate: bool| -> Result<String, String> {
            let mut args: Vec<String> = vec!["--dump".into(), file.display().to_string()];
            if base {
                args.extend(["--base".into(), format!("{:#x}", setup.ram.0)]);
            }
            args.extend(["--root".into(), root.clone()]);
            args.extend(setup.regime.iter().map(|a| a.to_string()));
            if translate {
                args.push("--translate".into());
                args.extend(probes(&s.console).iter().map(|p| format!("{:#x}", p.va)));
            }
            let mut c = tool_command(&args);
            eprintln!("$ {}", describe(&c));
            let out = c.output().map_err(|e| format!("host tool: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            eprint!("{text}");
            if !matches!(out.status.code(), Some(0 | 1)) {
                return Err(format!(
                    "host tool failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(text)
        };
        let tool = tool_on(&dump, true, true)?;
        let elf = tool_on(&dump.with_extension("elf"), false, false)?;
        Ok((s, tool, elf))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (saved, tool, elf) = match result {
        Ok(x) => x,
        Err(e) => return record(tally, k, stage, Err(e)),
    };
    record(tally, k, stage, Ok(()));

    let live: Vec<&str> = saved
        .console
        .lines()
        .skip_while(|l| *l != "inspect: live ptdump begin")
        .skip(1)
        .take_while(|l| *l != "inspect: live ptdump end")
        .collect();
    let host: Vec<&str> = tool
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("translate "))
        .collect();
    record(
        tally,
        k,
        "host ptdump of the pmemsave dump equals the kernel's live ptdump",
        if !live.is_empty() && live == host {
            Ok(())
        } else {
            Err(format!("live {live:#?}\nhost {host:#?}"))
        },
    );

    // The same memory as an ELF core: the regions (after the header line) must be the same.
    let body = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("translate "))
            .map(String::from)
            .collect()
    };
    record(
        tally,
        k,
        "host ptdump of the dump-guest-memory ELF core equals the pmemsave one",
        if body(&elf) == body(&tool) && elf.lines().next().is_some_and(|h| h.contains("piece(s)")) {
            Ok(())
        } else {
            Err(format!("ELF core:\n{elf}"))
        },
    );

    let cpu = probes(&saved.console);
    let mut host = translations(&tool);
    if cpu.iter().all(|p| p.pa.is_none()) {
        for h in &mut host {
            h.pa = None;
        }
    }
    record(
        tally,
        k,
        &format!(
            "host translations agree with the MMU's ({} addresses: {})",
            cpu.len(),
            if k.arch == Arch::X86_64 {
                "reads and writes, faults"
            } else {
                "AT S1E1R/W, PAR_EL1"
            }
        ),
        if !cpu.is_empty() && cpu == host {
            Ok(())
        } else {
            Err(format!("cpu {cpu:x?}\nhost {host:x?}"))
        },
    );

    if !setup.info {
        return;
    }
    let regions = parse_regions(&tool);
    let qemu_mem = parse_info_mem(&saved.info_mem);
    let ours = as_info_mem(&regions);
    record(
        tally,
        k,
        &format!(
            "host ptdump agrees with QEMU's info mem ({} ranges)",
            qemu_mem.len()
        ),
        if !qemu_mem.is_empty() && ours == qemu_mem {
            Ok(())
        } else {
            Err(format!("info mem {qemu_mem:x?}\nours {ours:x?}"))
        },
    );
    let mut qemu_tlb = parse_info_tlb(&saved.info_tlb);
    qemu_tlb.sort_unstable();
    let ours = pages(&regions);
    record(
        tally,
        k,
        &format!(
            "host ptdump agrees with QEMU's info tlb ({} pages)",
            qemu_tlb.len()
        ),
        if !qemu_tlb.is_empty() && ours == qemu_tlb {
            Ok(())
        } else {
            let only_qemu: Vec<_> = qemu_tlb
                .iter()
                .filter(|p| !ours.contains(p))
                .take(8)
                .collect();
            let only_ours: Vec<_> = ours
                .iter()
                .filter(|p| !qemu_tlb.contains(p))
                .take(8)
                .collect();
            Err(format!(
                "only in info tlb {only_qemu:x?}; only ours {only_ours:x?}"
            ))
        },
    );
}
