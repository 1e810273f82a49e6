//! The ordering and TLB-maintenance checks (tracer + walking TLB model) on the x86_64 encoding.

use awk_paging::conformance::ordering_checks::OrderingSpec;
use awk_paging::{PhyAddr, VirtAddr};
use awk_paging_x86_64::X86_64;

fn spec() -> OrderingSpec {
    OrderingSpec::new(
        VirtAddr::new(0xffff_c000_0000_0000),
        PhyAddr::new(0x1_0000_0000),
    )
}

/// The architectural maximum output size.
mod pa52 {
    use super::*;
    awk_paging::ordering_tests!(X86_64::new(), spec());
}

/// MAXPHYADDR 36 (table frames above 64 GiB are refused).
mod pa36 {
    use super::*;
    awk_paging::ordering_tests!(X86_64::new().with_1g_pages(true).with_pa_bits(36), spec());
}

mod hand_built {
    use awk_paging::arch::table_index;
    use awk_paging::emu::{CpuAccess, EmuMemory, EmuTlb, Tracer};
    use awk_paging::{Flags, PageSize, PhyAddr, VirtAddr};
    use awk_paging_x86_64::X86_64;

    const PRESENT: u64 = 1 << 0;
    const RW: u64 = 1 << 1;
    const NX: u64 = 1 << 63;
    const ADDR: u64 = 0x000f_ffff_ffff_f000;

    fn entry(table: u64, va: VirtAddr, level: u8) -> PhyAddr {
        PhyAddr::new(table + 8 * table_index(va, level) as u64)
    }

    /// A taken-over PDPTE with R/W = 0 (as the `x86_64` crate makes for a read-only first
    /// mapping): a writable page mapped below it gets R/W, the siblings stay read-only through
    /// the pushed-down R/W = 0, and the tracer sees push-down, barrier, widening.
    #[test]
    fn read_only_pdpte_is_widened_for_a_writable_page() {
        let mem = EmuMemory::new(32);
        let tlb = EmuTlb::new();
        let regime = X86_64::new();
        let t = Tracer::new(regime, &mem, Some(&tlb));
        let mut pt = t.new_table().unwrap();
        let s = VirtAddr::new(0xffff_c000_0000_0000);
        let (n, far) = (
            VirtAddr::new(s.as_u64() + 0x1000),
            VirtAddr::new(s.as_u64() + 0x40_0000),
        );
        unsafe { pt.map(s, PhyAddr::new(0x10_0000), PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
        // Walk by hand: PML4E -> PDPT -> PDPTE.
        let pml4e = mem.read_u64(entry(pt.root().as_u64(), s, 3)).unwrap();
        let pdpte_at = entry(pml4e & ADDR, s, 2);
        let pdpte = mem.read_u64(pdpte_at).unwrap();
        assert_eq!(pdpte & (PRESENT | RW), PRESENT | RW);
        assert!(mem.write_u64(pdpte_at, pdpte & !RW), "R/W = 0 in the PDPTE");
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
        assert_eq!(mem.read_u64(pdpte_at).unwrap() & RW, RW, "PDPTE widened");
        let pde = mem.read_u64(entry(pdpte & ADDR, s, 1)).unwrap();
        let pte_s = mem.read_u64(entry(pde & ADDR, s, 0)).unwrap();
        assert_eq!(pte_s & RW, 0, "R/W = 0 pushed down to the sibling's PTE");
        assert_eq!(pte_s & NX, NX);
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
