//! Foreign x86_64 tables written by hand with the Intel SDM's bits (Vol. 3A §4.5, tables 4-15
//! to 4-20: P = 0, R/W = 1, U/S = 2, PWT = 3, PCD = 4, PS = 7, G = 8, XD = 63): the effective
//! access over all four levels, the faults of reserved encodings, the ptdump and the W+X audit
//! — read through a raw dump of the memory, as the host tool reads one.

use awk_paging::emu::EmuMemory;
use awk_paging::inspect::{Access, Fault, Finding, ForeignTable, Invalid, RawDump};
use awk_paging::{MemoryType, PageSize, PhyAddr, VirtAddr};
use awk_paging_x86_64::X86_64;

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const XD: u64 = 1 << 63;
const BASE: u64 = 0x10_0000;

fn frame(i: u64) -> u64 {
    BASE + 0x1000 * i
}

/// Tables in an emulator arena, then copied out as a raw dump.
struct Space {
    mem: EmuMemory,
}

impl Space {
    fn new() -> Space {
        Space {
            mem: EmuMemory::new(16),
        }
    }
    fn set(&self, table: u64, index: u64, raw: u64) -> &Self {
        assert!(self
            .mem
            .write_u64(PhyAddr::new(frame(table) + 8 * index), raw));
        self
    }
    fn dump(&self) -> Vec<u8> {
        (0..16 * 512)
            .flat_map(|w| {
                self.mem
                    .read_u64(PhyAddr::new(BASE + 8 * w))
                    .unwrap()
                    .to_le_bytes()
            })
            .collect()
    }
}

fn table(bytes: &[u8], arch: X86_64) -> ForeignTable<X86_64, RawDump<'_>> {
    ForeignTable::new(
        arch,
        RawDump::new(PhyAddr::new(BASE), bytes),
        PhyAddr::new(frame(0)),
    )
}

/// PML4 (frame 0) entry 1 -> PDPT (1) entry 2 -> PD (2) entry 3 -> PT (3) entry 4:
/// VA 0x80_8060_4000.
const VA: u64 = (1 << 39) | (2 << 30) | (3 << 21) | (4 << 12);

#[test]
fn access_is_the_intersection_of_every_level() {
    let leaf = 0xabc_d000 | P | RW | US; // user RWX at the leaf
    let cases: [([u64; 3], Access); 5] = [
        (
            [P | RW | US; 3],
            Access {
                kernel_read: true,
                kernel_write: true,
                kernel_exec: true,
                user_read: true,
                user_write: true,
                user_exec: true,
            },
        ),
        // R/W = 0 in the PML4E: nothing below is writable.
        (
            [P | US, P | RW | US, P | RW | US],
            Access {
                kernel_read: true,
                kernel_write: false,
                kernel_exec: true,
                user_read: true,
                user_write: false,
                user_exec: true,
            },
        ),
        // XD in the PDPTE: nothing below executes.
        (
            [P | RW | US, P | RW | US | XD, P | RW | US],
            Access {
                kernel_read: true,
                kernel_write: true,
                kernel_exec: false,
                user_read: true,
                user_write: true,
                user_exec: false,
            },
        ),
        // U/S = 0 in the PDE: the user page is a kernel page (SMEP off: kernel-executable).
        (
            [P | RW | US, P | RW | US, P | RW],
            Access {
                kernel_read: true,
                kernel_write: true,
                kernel_exec: true,
                user_read: false,
                user_write: false,
                user_exec: false,
            },
        ),
        // All three at once.
        ([P | US, P | RW | US | XD, P | RW], Access::READ_ONLY),
    ];
    for (upper, want) in cases {
        let s = Space::new();
        s.set(0, 1, frame(1) | upper[0])
            .set(1, 2, frame(2) | upper[1])
            .set(2, 3, frame(3) | upper[2])
            .set(3, 4, leaf);
        let bytes = s.dump();
        let r = table(&bytes, X86_64::new())
            .translate(VirtAddr::new(VA + 0x123))
            .unwrap();
        assert_eq!(r.access, want, "{upper:x?}");
        assert_eq!(
            (r.pa, r.size, r.level),
            (PhyAddr::new(0xabc_d123), PageSize::Size4K, 0)
        );
    }
}

#[test]
fn reserved_encodings_fault_precisely() {
    let s = Space::new();
    s.set(0, 1, frame(1) | P | RW)
        .set(0, 2, 0x4000_0000 | P | RW | PS) // PS in a PML4E
        .set(1, 2, frame(2) | P | RW)
        .set(1, 3, 0x4000_0000 | P | RW | PS) // 1 GiB page
        .set(2, 3, 0x20_2000 | P | RW | PS) // 2 MiB page with bit 13 set
        .set(2, 4, 0x40_0000 | P | RW | PS) // a good 2 MiB page
        .set(2, 5, (1 << 45) | P | RW | PS); // above a 40-bit MAXPHYADDR
    let bytes = s.dump();
    let no1g = table(&bytes, X86_64::new());
    let gig = table(&bytes, X86_64::new().with_1g_pages(true).with_pa_bits(40));
    let inv = |level, raw, why| Err(Fault::Invalid { level, raw, why });
    assert_eq!(
        no1g.translate(VirtAddr::new(2 << 39)),
        inv(3, 0x4000_0000 | P | RW | PS, Invalid::LeafNotAllowed)
    );
    let va1g = (1 << 39) | (3 << 30);
    assert_eq!(
        no1g.translate(VirtAddr::new(va1g)),
        inv(2, 0x4000_0000 | P | RW | PS, Invalid::PageSizeNotSupported)
    );
    assert_eq!(
        gig.translate(VirtAddr::new(va1g + 0x1234_5678)).unwrap().pa,
        PhyAddr::new(0x5234_5678)
    );
    let va2m = (1 << 39) | (2 << 30) | (3 << 21);
    assert_eq!(
        no1g.translate(VirtAddr::new(va2m)),
        inv(1, 0x20_2000 | P | RW | PS, Invalid::ReservedBits)
    );
    assert_eq!(
        no1g.translate(VirtAddr::new(va2m + (1 << 21) + 5))
            .unwrap()
            .pa,
        PhyAddr::new(0x40_0005)
    );
    assert!(no1g.translate(VirtAddr::new(va2m + (2 << 21))).is_ok()); // 52-bit MAXPHYADDR
    assert_eq!(
        gig.translate(VirtAddr::new(va2m + (2 << 21))),
        inv(1, (1 << 45) | P | RW | PS, Invalid::ReservedBits)
    );
    assert_eq!(
        no1g.translate(VirtAddr::new(va2m + (3 << 21))),
        Err(Fault::NotMapped { level: 1 })
    );
    assert_eq!(
        no1g.translate(VirtAddr::new(0x0000_8000_0000_0000)),
        Err(Fault::Address(awk_paging::AddrError::NonCanonical))
    );
    // The audit lists each of them once (not-present entries are no finding).
    let mut faults = Vec::new();
    let audit = no1g
        .audit(|f| {
            if let Finding::Fault { va, level, why, .. } = f {
                faults.push((va.as_u64(), *level, *why))
            }
        })
        .unwrap();
    assert_eq!(
        faults,
        [
            (va2m, 1, Invalid::ReservedBits),
            (va1g, 2, Invalid::PageSizeNotSupported),
            (2 << 39, 3, Invalid::LeafNotAllowed)
        ]
    );
    assert_eq!(audit.faults.count, 3);
}

#[test]
fn ptdump_and_audit_of_a_small_kernel_space() {
    let s = Space::new();
    let hi = 0xffff_8000_0000_0000u64;
    // Kernel half (PML4 entry 256): text RX (2 pages), data RW+NX, a W+X page, an executable
    // device page and a user page without XD (the kernel may run it); global kernel pages.
    s.set(0, 256, frame(1) | P | RW | US)
        .set(1, 0, frame(2) | P | RW | US)
        .set(2, 0, frame(3) | P | RW | US)
        .set(3, 0, 0x20_0000 | P | G)
        .set(3, 1, 0x20_1000 | P | G)
        .set(3, 2, 0x30_0000 | P | RW | G | XD)
        .set(3, 3, 0x30_1000 | P | RW | G) // W+X
        .set(3, 4, 0xfee0_0000 | P | RW | PCD | PWT) // device, executable
        .set(3, 5, 0x50_0000 | P | US) // user, executable, kernel may run it
        .set(2, 1, 0x4000_0000 | P | RW | PS | G | XD); // 2 MiB RW data
    let bytes = s.dump();
    let t = table(&bytes, X86_64::new());
    let mut text = String::new();
    let audit = t.ptdump(&mut text).unwrap();
    let expected = [
        "0xffff800000000000-0xffff800000002000      8K -> 0x000000200000  4K x2     L0 k:r-x u:--- write-back    kernel global",
        "0xffff800000002000-0xffff800000003000      4K -> 0x000000300000  4K x1     L0 k:rw- u:--- write-back    kernel global",
        "0xffff800000003000-0xffff800000004000      4K -> 0x000000301000  4K x1     L0 k:rwx u:--- write-back    kernel global",
        "0xffff800000004000-0xffff800000005000      4K -> 0x0000fee00000  4K x1     L0 k:rwx u:--- device        kernel ng",
        "0xffff800000005000-0xffff800000006000      4K -> 0x000000500000  4K x1     L0 k:r-x u:r-x write-back    user   ng",
        "0xffff800000200000-0xffff800000400000      2M -> 0x000040000000  2M x1     L1 k:rw- u:--- write-back    kernel global",
        "W+X        0xffff800000003000-0xffff800000004000      4K -> 0x000000301000  4K x1     L0 k:rwx u:--- write-back    kernel global",
        "W+X        0xffff800000004000-0xffff800000005000      4K -> 0x0000fee00000  4K x1     L0 k:rwx u:--- device        kernel ng",
        "DEVICE+X   0xffff800000004000-0xffff800000005000      4K -> 0x0000fee00000  4K x1     L0 k:rwx u:--- device        kernel ng",
        "USER-KEXEC 0xffff800000005000-0xffff800000006000      4K -> 0x000000500000  4K x1     L0 k:r-x u:r-x write-back    user   ng",
        "6 regions (2072K mapped); W+X: 2 (8K); device+X: 1 (4K); user executable by kernel: 1 (4K); faulting entries: 0 (0); broken: 0 (0); 4 tables, 2048 entries read",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "\n{text}");
    assert_eq!(
        (
            audit.write_exec.count,
            audit.device_exec.count,
            audit.user_exec_by_kernel.count
        ),
        (2, 1, 1)
    );
    let dev = t.translate(VirtAddr::new(hi + 0x4008)).unwrap();
    assert_eq!(
        (dev.memory_type, dev.pa),
        (MemoryType::Device, PhyAddr::new(0xfee0_0008))
    );
}

/// A live table built by the crate reads the same through its own accessor and through a
/// copy of its memory (the dump the host tool would get).
#[test]
fn live_and_dumped_tables_agree() {
    use awk_paging::{Flags, NoTlb, PageTable};
    let mem = EmuMemory::new(16);
    let mut pt = PageTable::new(X86_64::new(), &mem, &mem, NoTlb).unwrap();
    for (va, size) in [
        (0x1000, PageSize::Size4K),
        (0x20_0000, PageSize::Size2M),
        (0xffff_8000_0000_0000, PageSize::Size4K),
    ] {
        unsafe {
            pt.map(
                VirtAddr::new(va),
                PhyAddr::new(0x4000_0000),
                size,
                Flags::RW,
            )
        }
        .unwrap()
        .flush();
    }
    let bytes: Vec<u8> = (0..16 * 512)
        .flat_map(|w| {
            mem.read_u64(PhyAddr::new(BASE + 8 * w))
                .unwrap()
                .to_le_bytes()
        })
        .collect();
    let dumped = ForeignTable::new(
        X86_64::new(),
        RawDump::new(PhyAddr::new(BASE), &bytes),
        pt.root(),
    );
    let (mut live, mut dead) = (String::new(), String::new());
    pt.inspect().ptdump(&mut live).unwrap();
    dumped.ptdump(&mut dead).unwrap();
    assert_eq!(live, dead);
    assert_eq!(live.lines().count(), 3 + 1);
    // And the old dump (runs of mappings) lists the same pages.
    let mut runs = Vec::new();
    awk_paging::dump::runs(&pt, |r| runs.push((r.first.page.as_u64(), r.pages)));
    assert_eq!(
        runs,
        [(0x1000, 1), (0x20_0000, 1), (0xffff_8000_0000_0000, 1)]
    );
}
