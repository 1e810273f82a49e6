//! The ordering and TLB-maintenance checks (tracer + walking TLB model) on the AArch64
//! encoding, for the 48-bit and 39-bit regimes of both halves.

use awk_paging::conformance::ordering_checks::OrderingSpec;
use awk_paging::{PhyAddr, VirtAddr};
use awk_paging_aarch64::{Half, VaSize, A64};

fn spec(va: u64) -> OrderingSpec {
    OrderingSpec::new(VirtAddr::new(va), PhyAddr::new(0x1_0000_0000))
}

/// 48-bit TTBR0, 48-bit output.
mod ttbr0_48 {
    use super::*;
    awk_paging::ordering_tests!(
        A64::new(VaSize::Bits48, Half::Lower),
        spec(0x0000_4000_0000_0000)
    );
}

/// 39-bit TTBR0 (3 levels), 40-bit output (table frames above 1 TiB are refused).
mod ttbr0_39_pa40 {
    use super::*;
    awk_paging::ordering_tests!(
        A64::new(VaSize::Bits39, Half::Lower).with_pa_bits(40),
        spec(0x0000_0040_0000_0000)
    );
}

/// 48-bit TTBR1 (kernel half).
mod ttbr1_48 {
    use super::*;
    awk_paging::ordering_tests!(
        A64::new(VaSize::Bits48, Half::Upper),
        spec(0xffff_c000_0000_0000)
    );
}

mod hand_built {
    use awk_paging::arch::table_index;
    use awk_paging::emu::{CpuAccess, EmuMemory, EmuTlb, Tracer};
    use awk_paging::{Flags, PageSize, PhyAddr, VirtAddr};
    use awk_paging_aarch64::descriptor::{bits, OA_MASK};
    use awk_paging_aarch64::{Half, VaSize, A64};

    const AP_TABLE: u64 = 0b11 << 61;

    fn entry(table: u64, va: VirtAddr, level: u8) -> PhyAddr {
        PhyAddr::new(table + 8 * table_index(va, level) as u64)
    }

    /// A taken-over Arm level-1 table descriptor with APTable = 0b10 (no write below): a
    /// writable page mapped below it gets write access, the sibling keeps AP[2] = 1 pushed
    /// down, and the tracer sees push-down, barrier, widening.
    #[test]
    fn aptable_read_only_descriptor_is_widened_for_a_writable_page() {
        let mem = EmuMemory::new(32);
        let tlb = EmuTlb::new();
        let regime = A64::new(VaSize::Bits48, Half::Lower);
        let t = Tracer::new(regime, &mem, Some(&tlb));
        let mut pt = t.new_table().unwrap();
        let s = VirtAddr::new(0x0000_4000_0000_0000);
        let (n, far) = (
            VirtAddr::new(s.as_u64() + 0x1000),
            VirtAddr::new(s.as_u64() + 0x40_0000),
        );
        unsafe { pt.map(s, PhyAddr::new(0x10_0000), PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
        // Arm L0 -> L1 descriptor (our level 2).
        let l0 = mem.read_u64(entry(pt.root().as_u64(), s, 3)).unwrap();
        let l1_at = entry(l0 & OA_MASK, s, 2);
        let l1 = mem.read_u64(l1_at).unwrap();
        assert_eq!(l1 & AP_TABLE, 0);
        assert!(mem.write_u64(l1_at, l1 | (0b10 << 61)), "APTable = 0b10");
        pt.forget_cached_walks();
        t.adopt(pt.root());
        assert!(
            !pt.translate(s).unwrap().attrs.flags.write,
            "sibling read-only now"
        );

        t.clear();
        for v in [n, far] {
            unsafe { pt.map(v, PhyAddr::new(0x20_0000), PageSize::Size4K, Flags::RW) }
                .unwrap()
                .flush();
        }
        t.assert_flushed();
        assert_eq!(mem.read_u64(l1_at).unwrap() & AP_TABLE, 0, "APTable lifted");
        let l2 = mem.read_u64(entry(l1 & OA_MASK, s, 1)).unwrap();
        let l3_s = mem.read_u64(entry(l2 & OA_MASK, s, 0)).unwrap();
        assert_eq!(
            l3_s & bits::AP_RO,
            bits::AP_RO,
            "AP[2] pushed down to the sibling"
        );
        for (v, write) in [(s, false), (n, true), (far, true)] {
            assert_eq!(pt.translate(v).unwrap().attrs.flags.write, write, "{v:?}");
            assert!(matches!(
                tlb.access_walk(&mem, &regime, pt.root(), v),
                CpuAccess::Mapped(_)
            ));
            assert_eq!(
                tlb.cached_attrs(v).unwrap().flags.write,
                write,
                "CPU at {v:?}"
            );
        }
        unsafe { pt.destroy() };
        t.assert_flushed();
    }
}
