//! `cargo xtask inspect`: the host tool for page tables in a physical-memory dump (the ptdump,
//! the W+X audit, single translations). The tool itself is the `inspect` example of
//! `awk-paging-x86_64` (it links both architectures' regimes, which xtask does not depend on,
//! so a broken library never breaks xtask); this forwards the arguments to it.

use std::process::ExitCode;

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

// ---------------------------------------------------------------------------------------------
// The QEMU cross-check: QEMU's own page-table walker against the host tool.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::report::Tally;
use crate::targets::{Arch, Kernel, Mode};
use crate::toolchain::run;

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

/// One line of QEMU's x86 `info mem`: `start-end size urw` (`-` for a missing permission).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    pub start: u64,
    pub end: u64,
    pub user: bool,
    pub write: bool,
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// The ranges of an `info mem` answer (other lines, such as the echoed command, are skipped).
pub fn parse_info_mem(text: &str) -> Vec<MemRange> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, _size, prot) = (f.next()?, f.next()?, f.next()?);
            let (a, b) = range.split_once('-')?;
            let prot = prot.as_bytes();
            if a.len() != 16 || b.len() != 16 || prot.len() != 3 || prot[1] != b'r' {
                return None;
            }
            Some(MemRange {
                start: hex(a)?,
                end: hex(b)?,
                user: prot[0] == b'u',
                write: prot[2] == b'w',
            })
        })
        .collect()
}

/// The pages of an `info tlb` answer: `va: pa flags` per page.
pub fn parse_info_tlb(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let (va, rest) = l.trim().split_once(": ")?;
            let pa = rest.split_whitespace().next()?;
            (va.len() == 16).then_some((hex(va)?, hex(pa)?))
        })
        .collect()
}

/// One region line of the tool's ptdump: (start, end, frame, page size, pages, access text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub frame: u64,
    pub page: u64,
    pub access: String,
}

/// The region lines of a ptdump (`0x...-0x... LEN -> 0x... SIZE xN LEVEL k:... u:... ...`).
pub fn parse_regions(text: &str) -> Vec<Region> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (range, arrow) = (f.first()?, f.get(2)?);
            let (a, b) = range.split_once('-')?;
            if *arrow != "->" || !a.starts_with("0x") {
                return None;
            }
            let page = match *f.get(4)? {
                "4K" => 1 << 12,
                "2M" => 1 << 21,
                "1G" => 1 << 30,
                _ => return None,
            };
            Some(Region {
                start: hex(a)?,
                end: hex(b)?,
                frame: hex(f.get(3)?)?,
                page,
                access: format!("{} {}", f.get(7)?, f.get(8)?),
            })
        })
        .collect()
}

/// The tool's regions as `info mem` shows them: user and write access as the kernel sees
/// them, adjacent ranges with the same access merged, physical addresses ignored.
pub fn as_info_mem(regions: &[Region]) -> Vec<MemRange> {
    let mut out: Vec<MemRange> = Vec::new();
    for r in regions {
        let m = MemRange {
            start: r.start,
            end: r.end,
            user: r.access.contains("u:r"),
            write: r.access.starts_with("k:rw"),
        };
        match out.last_mut() {
            Some(l) if l.end == m.start && l.user == m.user && l.write == m.write => l.end = m.end,
            _ => out.push(m),
        }
    }
    out
}

/// Every page of the regions, as `(va, pa)`.
pub fn pages(regions: &[Region]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for r in regions {
        let mut va = r.start;
        while va != r.end {
            out.push((va, r.frame + (va - r.start)));
            va = va.wrapping_add(r.page);
        }
    }
    out.sort_unstable();
    out
}

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
/// mem`, `info tlb` and a `pmemsave` of all RAM into `dump`, then quits.
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
            Err(_) => {
                kill(&mut child);
                return Err(format!("the kernel was not ready after {WAIT:?}"));
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

/// What one address does: readable, writable (by the kernel), and the physical address the
/// MMU reported (AArch64 `AT` → PAR_EL1; x86 probes report none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub va: u64,
    pub read: bool,
    pub write: bool,
    pub pa: Option<u64>,
}

/// `inspect: probe VA read=ok|fault write=ok|fault [pa=PA]` lines: what the CPU did.
pub fn probes(console: &str) -> Vec<Probe> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("inspect: probe ")?;
            let mut f = rest.split_whitespace();
            let va = hex(f.next()?)?;
            let read = f.next()? == "read=ok";
            let write = f.next()? == "write=ok";
            let pa = f.next().and_then(|p| hex(p.strip_prefix("pa=")?));
            Some(Probe {
                va,
                read,
                write,
                pa: pa.filter(|_| read),
            })
        })
        .collect()
}

/// `translate VA -> PA (... k:rwx ...)` or `translate VA -> fault: ...` lines of the tool.
pub fn translations(tool: &str) -> Vec<Probe> {
    tool.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("translate ")?;
            let mut f = rest.split_whitespace();
            let va = hex(f.next()?)?;
            if rest.contains("-> fault") {
                return Some(Probe {
                    va,
                    read: false,
                    write: false,
                    pa: None,
                });
            }
            let pa = hex(f.nth(1)?)?;
            let k = rest.split_whitespace().find(|w| w.starts_with("k:"))?;
            Some(Probe {
                va,
                read: k.starts_with("k:r"),
                write: k.starts_with("k:rw"),
                pa: Some(pa),
            })
        })
        .collect()
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
    let stage = "clippy, build, boot, pmemsave, host tool";
    // Not rows of the kernel table, so the lint step does not see them: linted here.
    let kernel = |verb| {
        let mut c = cargo();
        c.args([
            verb,
            "--release",
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
        let mut args: Vec<String> = vec![
            "--dump".into(),
            dump.display().to_string(),
            "--base".into(),
            format!("{:#x}", setup.ram.0),
            "--root".into(),
            root,
        ];
        args.extend(setup.regime.iter().map(|a| a.to_string()));
        args.push("--translate".into());
        args.extend(probes(&s.console).iter().map(|p| format!("{:#x}", p.va)));
        let mut c = tool_command(&args);
        eprintln!("$ {}", describe(&c));
        let out = c.output().map_err(|e| format!("host tool: {e}"))?;
        let tool = String::from_utf8_lossy(&out.stdout).into_owned();
        eprint!("{tool}");
        if !matches!(out.status.code(), Some(0 | 1)) {
            return Err(format!(
                "host tool failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok((s, tool))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (saved, tool) = match result {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_info_mem_and_tlb() {
        // As QEMU 10 prints them (the first line: the echoed command, with escape codes).
        let mem = "info m\u{1b}[K\u{1b}[Dinfo mem\u{1b}[K\n\
                   0000000000000000-0000000040000000 0000000040000000 -rw\n\
                   0000400000100000-0000400000102000 0000000000002000 ur-\n\
                   (qemu) ";
        assert_eq!(
            parse_info_mem(mem),
            [
                MemRange {
                    start: 0,
                    end: 0x4000_0000,
                    user: false,
                    write: true
                },
                MemRange {
                    start: 0x4000_0010_0000,
                    end: 0x4000_0010_2000,
                    user: true,
                    write: false
                },
            ]
        );
        let tlb = "0000000000200000: 0000000000200000 --PDA---W\n\
                   ffff900000000000: 0000000001000000 X-G-DA---W\n";
        assert_eq!(
            parse_info_tlb(tlb),
            [(0x20_0000, 0x20_0000), (0xffff_9000_0000_0000, 0x100_0000)]
        );
    }

    #[test]
    fn regions_become_info_mem_ranges_and_pages() {
        let dump = "# x86_64 tables at 0x10b000\n\
            0x0000000000000000-0x0000000000400000      4M -> 0x000000000000  2M x2     L1 k:rwx u:--- write-back    kernel ng\n\
            0x0000000000400000-0x0000000000401000      4K -> 0x000000900000  4K x1     L0 k:rw- u:--- write-back    kernel ng\n\
            0x0000000000401000-0x0000000000402000      4K -> 0x000000a00000  4K x1     L0 k:r-- u:r-- write-back    user   ng\n\
            W+X        0x0000000000000000-0x0000000000400000      4M -> 0x000000000000  2M x2     L1 k:rwx u:--- write-back    kernel ng\n";
        let r = parse_regions(dump);
        assert_eq!(r.len(), 3);
        assert_eq!(
            as_info_mem(&r),
            [
                MemRange {
                    start: 0,
                    end: 0x40_1000,
                    user: false,
                    write: true
                },
                MemRange {
                    start: 0x40_1000,
                    end: 0x40_2000,
                    user: true,
                    write: false
                },
            ]
        );
        assert_eq!(
            pages(&r),
            [
                (0, 0),
                (0x20_0000, 0x20_0000),
                (0x40_0000, 0x90_0000),
                (0x40_1000, 0xa0_0000)
            ]
        );
        let t = "translate 0x0000000000400000 -> 0x000000900000  (4K page 0x400000, L0, k:rw- u:---, WriteBack, entry 0x1)\n\
                 translate 0x0000000000500000 -> fault: not mapped (level 1 entry not present)\n";
        let p = |va, read, write, pa| Probe {
            va,
            read,
            write,
            pa,
        };
        assert_eq!(
            translations(t),
            [
                p(0x40_0000, true, true, Some(0x90_0000)),
                p(0x50_0000, false, false, None)
            ]
        );
        assert_eq!(
            probes(
                "inspect: probe 0x0000000000400000 read=ok write=fault\n\
                 inspect: probe 0x0000000000401000 read=ok write=ok pa=0x41005000\n\
                 inspect: probe 0x0000000000402000 read=fault write=fault pa=0x0\n"
            ),
            [
                p(0x40_0000, true, false, None),
                p(0x40_1000, true, true, Some(0x4100_5000)),
                p(0x40_2000, false, false, None)
            ]
        );
    }
}
