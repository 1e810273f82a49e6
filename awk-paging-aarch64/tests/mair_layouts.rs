//! Taking over a kernel's MAIR_EL1: the regime encodes each memory type through the index the
//! kernel's value holds for it, decodes every index through that value, and refuses values that
//! lack a memory type — on the instance API and through the seed `AArch64::init_with_mair`.
//!
//! Expected indices below are written out by hand from each MAIR value's bytes, not computed by
//! the code under test.

use std::sync::Mutex;

use awk_paging::arch::Arch;
use awk_paging::emu::EmuMemory;
use awk_paging::{
    ActiveTable, Attrs, Flags, FrameAllocator, Mapper, MemoryType, NoTlb, OffsetPhysMem, PageSize,
    PageTable, PhyAddr, Tlb, VirtAddr, PAGESIZE,
};
use awk_paging_aarch64::mair::{self, MairError, MairLayout, UnknownAttr};
use awk_paging_aarch64::{AArch64, MairInitError, A64};

const TYPES: [MemoryType; 4] = [
    MemoryType::WriteBack,
    MemoryType::WriteThrough,
    MemoryType::Uncached,
    MemoryType::Device,
];

fn flags(mt: MemoryType) -> Flags {
    mt.with_permissions(true, false)
}

/// The AttrIndx field of a descriptor (bits 4:2).
fn attr_indx(d: u64) -> u8 {
    ((d >> 2) & 7) as u8
}

/// `(MAIR_EL1, [index for WB, WT, NC, Device])`, by hand.
const LAYOUTS: [(u64, [u8; 4]); 5] = [
    // The crate's own.
    (0x00_04_44_aa_ff, [0, 1, 2, 3]),
    // Types in other slots: 0 nGnRnE, 1 NC, 2 WB, 3 WT (RWA), 4 nGnRE (preferred for Device).
    (0x04_bb_ff_44_00, [2, 3, 1, 4]),
    // Device-nGnRnE only (at 7); write-back transient (0x77) at 6; slots 0..=3 hold attributes
    // this crate does not use (nGRE, GRE, tagged WB, inner-WB/outer-NC).
    (0x00_77_88_44_4f_f0_0c_08, [6, 5, 4, 7]),
    // Two write-back candidates: the lowest index wins; nGnRE after nGnRnE still preferred.
    (0x04_00_44_aa_ee_ff, [0, 2, 3, 5]),
    // Linux's layout (arch/arm64 MT_*: 0 nGnRnE, 1 nGnRE, 2 NC, 3 WB... here WT at 4).
    (0xaa_ff_44_04_00, [3, 4, 2, 1]),
];

#[test]
fn each_memory_type_goes_to_the_kernels_index_and_back() {
    for (value, expect) in LAYOUTS {
        let layout = MairLayout::from_mair(value).unwrap_or_else(|e| panic!("{value:#x}: {e}"));
        let r = A64::default().with_mair(layout);
        for (mt, want) in TYPES.into_iter().zip(expect) {
            assert_eq!(layout.index_of(mt), want, "{value:#x} {mt:?}");
            for level in [0u8, 1, 2] {
                let d = r.leaf_entry(PhyAddr::new(0x4000_0000), level, Attrs::from(flags(mt)));
                assert_eq!(attr_indx(d), want, "{value:#x} {mt:?} level {level}");
                assert_eq!(r.leaf_attrs(d, level).flags, flags(mt), "{value:#x} {mt:?}");
            }
        }
    }
}

#[test]
fn the_default_layout_is_the_old_fixed_one() {
    let l = MairLayout::DEFAULT;
    assert_eq!(l.value(), mair::MAIR_EL1);
    for mt in TYPES {
        assert_eq!(l.index_of(mt), mair::index_of(mt));
    }
    for i in 0..5 {
        assert_eq!(l.memory_type(i).ok(), mair::memory_type(i));
    }
    assert_eq!(A64::default().mair(), l);
}

#[test]
fn values_missing_a_type_are_refused_precisely() {
    let cases = [
        // WB, WT, NC; no device. (A zero byte is Device-nGnRnE: every slot must be taken.)
        (0x44_44_44_44_44_44_aa_ff, MemoryType::Device),
        // Only gathering/reordering device kinds: not suitable.
        (0x0c_08_0c_08_0c_44_aa_ff, MemoryType::Device),
        // No write-through.
        (0x04_04_04_04_04_04_44_ff, MemoryType::WriteThrough),
        // No write-back: tagged (0xf0) and mixed (0x4f) do not count.
        (0x04_44_aa_4f_f0, MemoryType::WriteBack),
        // No non-cacheable.
        (0x04_aa_ff, MemoryType::Uncached),
        // Nothing usable at all: the first type is named.
        (0x0808_0808_0808_0808, MemoryType::WriteBack),
    ];
    for (value, missing) in cases {
        assert_eq!(
            MairLayout::from_mair(value),
            Err(MairError::Missing(missing)),
            "{value:#x}"
        );
    }
}

#[test]
fn indices_without_a_memory_type_decode_without_panicking() {
    // Slots 0..=3: nGRE, GRE, tagged WB, mixed — none of the crate's types.
    let value = 0x00_77_88_44_4f_f0_0c_08;
    let l = MairLayout::from_mair(value).unwrap();
    let bytes = [0x08, 0x0c, 0xf0, 0x4f];
    for (i, byte) in bytes.into_iter().enumerate() {
        assert_eq!(
            l.memory_type(i as u8),
            Err(UnknownAttr {
                index: i as u8,
                byte
            })
        );
    }
    assert_eq!(l.memory_type(9), Err(UnknownAttr { index: 9, byte: 0 }));
    // A descriptor written by someone else with such an index decodes as Device (the most
    // restrictive type), not a panic.
    let r = A64::default().with_mair(l);
    let wb = r.leaf_entry(PhyAddr::new(0x4000_0000), 0, Attrs::from(Flags::RX));
    for i in 0..4u64 {
        let d = (wb & !(7 << 2)) | (i << 2);
        let a = r.leaf_attrs(d, 0);
        assert_eq!(a.flags.memory_type(), MemoryType::Device, "index {i}");
    }
}

#[test]
fn every_byte_in_every_slot_is_classified_without_panicking() {
    for slot in 0..8 {
        for byte in 0..=255u64 {
            let value = (mair::MAIR_EL1 & !(0xff << (8 * slot))) | (byte << (8 * slot));
            if let Ok(l) = MairLayout::from_mair(value) {
                for mt in TYPES {
                    assert!(l.index_of(mt) < 8);
                    assert_eq!(l.memory_type(l.index_of(mt)), Ok(mt), "{value:#x} {mt:?}");
                }
            }
        }
    }
}

#[test]
fn a_table_over_emulated_memory_uses_the_kernels_indices() {
    let (value, expect) = LAYOUTS[1];
    let mem = EmuMemory::new(16);
    let regime = A64::default().with_mair(MairLayout::from_mair(value).unwrap());
    let mut pt = PageTable::new(regime, &mem, &mem, NoTlb).unwrap();
    for (i, (mt, want)) in TYPES.into_iter().zip(expect).enumerate() {
        let va = VirtAddr::new(0x4000_0000 + i as u64 * 0x1000);
        unsafe { pt.map(va, PhyAddr::new(0x9000_0000), PageSize::Size4K, flags(mt)) }
            .unwrap()
            .flush();
        let (_, raw) = pt.raw_entry(va).unwrap();
        assert_eq!(attr_indx(raw), want, "{mt:?}");
        assert_eq!(pt.translate(va).unwrap().attrs.flags, flags(mt));
    }
}

/// Host "physical memory" for the seed API (Send).
struct Frames(Mutex<Vec<u64>>);

unsafe impl FrameAllocator for &'static Frames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        self.0.lock().unwrap().pop().map(PhyAddr::new)
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.0.lock().unwrap().push(frame.as_u64());
    }
}

fn seed_table() -> awk_paging_aarch64::KernelTable {
    let frames = 32u64;
    let buf: &'static mut [u8] =
        Box::leak(vec![0u8; (frames as usize + 1) * PAGESIZE].into_boxed_slice());
    let host = (buf.as_mut_ptr() as u64 + PAGESIZE as u64 - 1) & !(PAGESIZE as u64 - 1);
    let base = 0x10_0000u64;
    let pool: &'static Frames = Box::leak(Box::new(Frames(Mutex::new(
        (0..frames).map(|i| base + i * PAGESIZE as u64).collect(),
    ))));
    let alloc: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    let tlb: &'static (dyn Tlb + Sync) = &NoTlb;
    // SAFETY: the frames are exactly the leaked buffer, reached at this offset.
    let direct = unsafe { OffsetPhysMem::new(host - base) };
    PageTable::new(A64::default(), direct, alloc, tlb).expect("root")
}

#[test]
fn seed_init_takes_the_kernels_mair() {
    // Refused: nothing installed.
    assert_eq!(
        AArch64::init_with_mair(seed_table(), 0x44_44_44_44_44_44_aa_ff),
        Err(MairInitError::Mair(MairError::Missing(MemoryType::Device)))
    );
    assert!(!AArch64::global().is_initialized());

    let (value, expect) = LAYOUTS[1];
    assert_eq!(AArch64::init_with_mair(seed_table(), value), Ok(()));
    let va = VirtAddr::new(0x1_0000_0000);
    let device = Flags::DEVICE;
    assert_eq!(
        unsafe { AArch64::map(va, PhyAddr::new(0x900_0000), device) },
        Ok(())
    );
    let raw = AArch64::with_table(|t| t.raw_entry(va).map(|(_, raw)| raw))
        .unwrap()
        .unwrap();
    assert_eq!(
        attr_indx(raw),
        expect[3],
        "Device-nGnRE of the kernel's MAIR"
    );
    assert_eq!(
        AArch64::with_table(|t| t.translate(va).map(|t| t.attrs.flags)),
        Ok(Ok(device))
    );
    assert_eq!(
        AArch64::init_with_mair(seed_table(), value),
        Err(MairInitError::AlreadyInitialized)
    );
}

#[test]
fn a_mair_without_write_through_can_serve_it_uncached() {
    // awkernel's MAIR_EL1: 0 WB, 1 Device-nGnRE, 2 NC, 3..=7 zero (Device-nGnRnE).
    let awkernel = 0x44_04_ff;
    assert_eq!(
        MairLayout::from_mair(awkernel),
        Err(MairError::Missing(MemoryType::WriteThrough))
    );
    let l = MairLayout::from_mair_uncached_write_through(awkernel).unwrap();
    let expect = [0u8, 2, 2, 1];
    for (mt, want) in TYPES.into_iter().zip(expect) {
        assert_eq!(l.index_of(mt), want, "{mt:?}");
    }
    // A write-through page is encoded non-cacheable and reads back as such.
    let r = A64::default().with_mair(l);
    let d = r.leaf_entry(
        PhyAddr::new(0x4000_0000),
        0,
        Attrs::from(flags(MemoryType::WriteThrough)),
    );
    assert_eq!(attr_indx(d), 2);
    assert_eq!(r.leaf_attrs(d, 0).flags, flags(MemoryType::Uncached));
    // The substitute never hides another missing type.
    assert_eq!(
        MairLayout::from_mair_uncached_write_through(0x04_04_04_04_04_04_04_ff),
        Err(MairError::Missing(MemoryType::Uncached))
    );
}
