//! The host tool behind `cargo xtask inspect`: the ptdump and W+X audit of the page tables in a
//! physical-memory dump, and single translations.
//!
//! ```text
//! cargo xtask inspect --dump FILE --root ADDR --arch x86_64|aarch64 [--base ADDR]
//!     [--va-bits 39|48] [--upper] [--pa-bits N] [--mair VALUE] [--no-1g] [--budget N] [--no-ptdump]
//!     [--translate ADDR...]
//! ```
//!
//! - `FILE`: a raw dump (QEMU `pmemsave`; its first byte is physical address `--base`, default
//!   0) or an ELF core (QEMU `dump-guest-memory`; its `PT_LOAD` segments by physical address).
//! - `--root`: CR3 / TTBRn as read from the CPU (PCID, ASID and CnP bits are ignored).
//! - x86_64: 4-level paging, 1 GiB pages unless `--no-1g`, 52-bit MAXPHYADDR unless
//!   `--pa-bits`. AArch64: 4 KiB granule, `--va-bits` 48 (default) or 39, TTBR0 unless
//!   `--upper` (TTBR1), 48-bit PA unless `--pa-bits`; memory types decode with this crate's
//!   MAIR layout, or with the dumped kernel's MAIR_EL1 value given with `--mair`.
//!
//! Exit status: 0 when the audit is clean, 1 when it found something, 2 on bad arguments or an
//! unreadable file.

use std::process::ExitCode;

use awk_paging::inspect::{Classify, ForeignTable, PhysRead, RawDump};
use awk_paging::{PhyAddr, VirtAddr};
use awk_paging_aarch64::{ForeignMair, Half, VaSize, A64};
use awk_paging_x86_64::X86_64;

#[derive(Debug, Default)]
struct Options {
    dump: String,
    root: u64,
    aarch64: bool,
    base: u64,
    va39: bool,
    upper: bool,
    pa_bits: Option<u8>,
    mair: Option<u64>,
    no_1g: bool,
    budget: Option<u64>,
    no_ptdump: bool,
    translate: Vec<u64>,
}

fn number(s: &str) -> Result<u64, String> {
    let t = s.replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("not a number: {s}"))
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let (mut dump, mut root, mut arch) = (None, None, None);
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--dump" => dump = Some(value("--dump")?),
            "--root" => root = Some(number(&value("--root")?)?),
            "--arch" => arch = Some(value("--arch")?),
            "--base" => o.base = number(&value("--base")?)?,
            "--va-bits" => match value("--va-bits")?.as_str() {
                "39" => o.va39 = true,
                "48" => o.va39 = false,
                v => return Err(format!("--va-bits: 39 or 48, not {v}")),
            },
            "--pa-bits" => {
                o.pa_bits = Some(
                    number(&value("--pa-bits")?)?
                        .try_into()
                        .map_err(|_| "--pa-bits: too large")?,
                )
            }
            "--budget" => o.budget = Some(number(&value("--budget")?)?),
            "--mair" => o.mair = Some(number(&value("--mair")?)?),
            "--upper" => o.upper = true,
            "--no-1g" => o.no_1g = true,
            "--no-ptdump" => o.no_ptdump = true,
            "--translate" => {
                while let Some(v) = it.peek().filter(|v| !v.starts_with("--")) {
                    o.translate.push(number(v)?);
                    it.next();
                }
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    o.dump = dump.ok_or("--dump FILE is required")?;
    o.root = root.ok_or("--root ADDR is required")?;
    o.aarch64 = match arch.as_deref() {
        Some("x86_64") => false,
        Some("aarch64") => true,
        Some(a) => return Err(format!("--arch: x86_64 or aarch64, not {a}")),
        None => return Err("--arch x86_64|aarch64 is required".into()),
    };
    Ok(o)
}

/// The `PT_LOAD` segments of an ELF64 little-endian core file, by physical address. A
/// malformed file is an error, never a panic.
fn elf_segments(bytes: &[u8]) -> Result<Vec<RawDump<'_>>, String> {
    let field = |o: u64, n: usize| -> Result<u64, String> {
        let start = usize::try_from(o).map_err(|_| "ELF offset too large")?;
        let b = start
            .checked_add(n)
            .and_then(|end| bytes.get(start..end))
            .ok_or("truncated ELF file")?;
        Ok(b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("only 64-bit little-endian ELF cores are supported".into());
    }
    let (phoff, phentsize, phnum) = (field(0x20, 8)?, field(0x36, 2)?, field(0x38, 2)?);
    let mut out = Vec::new();
    for i in 0..phnum {
        let ph = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or("ELF program header offset overflows")?;
        let at = |o: u64, n| field(ph.checked_add(o).ok_or("ELF offset overflows")?, n);
        if at(0, 4)? != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr, filesz) = (at(8, 8)?, at(0x18, 8)?, at(0x20, 8)?);
        let seg = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(s, l)| bytes.get(s..s.checked_add(l)?))
            .ok_or(format!("PT_LOAD segment {i} outside the file"))?;
        out.push(RawDump::new(PhyAddr::new(paddr), seg));
    }
    if out.is_empty() {
        return Err("ELF core without PT_LOAD segments".into());
    }
    Ok(out)
}

fn report<A: Classify, R: PhysRead>(t: ForeignTable<A, R>, o: &Options) -> Result<bool, String> {
    let t = match o.budget {
        Some(b) => t.with_budget(b),
        None => t,
    };
    let mut clean = true;
    if !o.no_ptdump {
        let mut text = String::new();
        let audit = t.ptdump(&mut text).map_err(|e| e.to_string())?;
        print!("{text}");
        clean = audit.is_clean();
    }
    for &va in &o.translate {
        match t.translate(VirtAddr::new(va)) {
            Ok(r) => println!(
                "translate {va:#018x} -> {:#014x}  ({} page {:#x}, L{}, {}, {:?}, entry {:#x})",
                r.pa.as_u64(),
                r.size,
                r.page.as_u64(),
                r.level,
                r.access,
                r.memory_type,
                r.raw
            ),
            Err(f) => println!("translate {va:#018x} -> fault: {f}"),
        }
    }
    Ok(clean)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("inspect: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes = match std::fs::read(&o.dump) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("inspect: {}: {e}", o.dump);
            return ExitCode::from(2);
        }
    };
    let segments = if bytes.starts_with(b"\x7fELF") {
        match elf_segments(&bytes) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("inspect: {}: {e}", o.dump);
                return ExitCode::from(2);
            }
        }
    } else {
        vec![RawDump::new(PhyAddr::new(o.base), &bytes)]
    };
    let mem: &[RawDump] = &segments;
    let root = PhyAddr::new(o.root & 0x000f_ffff_ffff_f000);
    println!(
        "# {} tables at {:#x}, {} bytes of memory in {} piece(s)",
        if o.aarch64 { "aarch64" } else { "x86_64" },
        root.as_u64(),
        segments.iter().map(RawDump::len).sum::<usize>(),
        segments.len()
    );
    let result = if o.aarch64 {
        let va = if o.va39 {
            VaSize::Bits39
        } else {
            VaSize::Bits48
        };
        let half = if o.upper { Half::Upper } else { Half::Lower };
        let arch = A64::new(va, half).with_pa_bits(o.pa_bits.unwrap_or(48));
        let root = PhyAddr::new(root.as_u64() & 0x0000_ffff_ffff_f000);
        match o.mair {
            Some(mair) => report(
                ForeignTable::new(ForeignMair::new(arch, mair), mem, root),
                &o,
            ),
            None => report(ForeignTable::new(arch, mem, root), &o),
        }
    } else {
        let arch = X86_64::new()
            .with_1g_pages(!o.no_1g)
            .with_pa_bits(o.pa_bits.unwrap_or(52));
        report(ForeignTable::new(arch, mem, root), &o)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("inspect: {e}");
            ExitCode::from(2)
        }
    }
}
