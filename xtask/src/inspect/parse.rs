//! Reading what QEMU and the host tool print: `info mem`, `info tlb`, ptdump regions,
//! translations and the kernels' probe lines.

/// One line of QEMU's x86 `info mem`: `start-end size urw` (`-` for a missing permission).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    pub start: u64,
    pub end: u64,
    pub user: bool,
    pub write: bool,
}

pub fn hex(s: &str) -> Option<u64> {
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
