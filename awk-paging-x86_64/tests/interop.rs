//! Cross-checks against the `x86_64` crate: tables it builds (as a bootloader would, with
//! 2 MiB and 1 GiB direct-map pages) read correctly through ours, and ours through it.

use awk_paging::emu::EmuMemory;
use awk_paging::{Flags, FrameAllocator, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
use awk_paging_x86_64::{with_offset_page_table, X86_64};
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Mapper as X86Mapper, Page, PageTableFlags, PhysFrame,
    Size1GiB, Size2MiB, Size4KiB,
};

/// Lends emulator frames to the `x86_64` crate.
struct Lend<'a>(&'a EmuMemory);

unsafe impl X86FrameAllocator<Size4KiB> for Lend<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = (&*self.0).allocate_frame()?;
        Some(PhysFrame::containing_address(x86_64::PhysAddr::new(
            f.as_u64(),
        )))
    }
}

#[test]
fn bootloader_style_direct_map_translates_with_sizes() {
    let mem = EmuMemory::new(64);
    let regime = X86_64::new().with_1g_pages(true);
    let mut pt = PageTable::new(regime, unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    let direct = 0xffff_8000_0000_0000u64;
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    let build = |opt: &mut x86_64::structures::paging::OffsetPageTable<'_>| {
        let mut lend = Lend(&mem);
        // 0..1 GiB as one 1 GiB page, 1..1.5 GiB as 2 MiB pages, one 4 KiB page after that.
        let g = Page::<Size1GiB>::containing_address(x86_64::VirtAddr::new(direct));
        let f = PhysFrame::<Size1GiB>::containing_address(x86_64::PhysAddr::new(0));
        unsafe { opt.map_to(g, f, flags, &mut lend) }
            .unwrap()
            .ignore();
        for i in 0..256u64 {
            let v = x86_64::VirtAddr::new(direct + (1 << 30) + i * 0x20_0000);
            let p = x86_64::PhysAddr::new((1 << 30) + i * 0x20_0000);
            let page = Page::<Size2MiB>::containing_address(v);
            let frame = PhysFrame::<Size2MiB>::containing_address(p);
            unsafe { opt.map_to(page, frame, flags, &mut lend) }
                .unwrap()
                .ignore();
        }
        let v = x86_64::VirtAddr::new(direct + 0x6000_0000);
        let page = Page::<Size4KiB>::containing_address(v);
        let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(0x6000_0000));
        unsafe { opt.map_to(page, frame, flags, &mut lend) }
            .unwrap()
            .ignore();
    };
    // SAFETY: the closure maps through the x86_64 crate with frames from the same arena.
    unsafe { with_offset_page_table(&mut pt, build) };
    let probes = [
        (0x1234_5678u64, PageSize::Size1G),
        (0x3fff_ffff, PageSize::Size1G),
        (0x4000_0000, PageSize::Size2M),
        (0x5fff_fff8, PageSize::Size2M),
        (0x6000_0abc, PageSize::Size4K),
    ];
    for (off, size) in probes {
        let t = pt.translate(VirtAddr::new(direct + off)).unwrap();
        assert_eq!((t.pa, t.size), (PhyAddr::new(off), size), "offset {off:#x}");
        assert_eq!(t.attrs.flags, Flags::RW, "offset {off:#x}");
    }
    assert!(pt.translate(VirtAddr::new(direct + 0x6000_1000)).is_err());
}

#[test]
fn our_mappings_translate_through_the_x86_64_crate() {
    use x86_64::structures::paging::Translate;
    let mem = EmuMemory::new(64);
    let regime = X86_64::new().with_1g_pages(true);
    let mut pt = PageTable::new(regime, unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    let maps = [
        (0x0000_1000_0000_0000u64, 0x7000u64, PageSize::Size4K),
        (0x0000_1000_0020_0000, 0x20_0000, PageSize::Size2M),
        (0x0000_1000_4000_0000, 0x4000_0000, PageSize::Size1G),
        (0xffff_ffff_ffff_f000, 0x1_2345_6000, PageSize::Size4K),
    ];
    for (va, pa, size) in maps {
        unsafe { pt.map(VirtAddr::new(va), PhyAddr::new(pa), size, Flags::RO) }
            .unwrap()
            .flush();
    }
    for (va, pa, size) in maps {
        let probe = va + (size.bytes() - 8);
        // SAFETY: reads only.
        let seen = unsafe {
            with_offset_page_table(&mut pt, |opt| {
                opt.translate_addr(x86_64::VirtAddr::new(probe))
            })
        };
        assert_eq!(
            seen,
            Some(x86_64::PhysAddr::new(pa + (size.bytes() - 8))),
            "{va:#x}"
        );
    }
}

#[test]
fn walks_name_canonical_upper_half_addresses() {
    let mem = EmuMemory::new(16);
    let mut pt =
        PageTable::new(X86_64::new(), unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    let (high, low) = (
        VirtAddr::new(0xffff_8000_0000_0000),
        VirtAddr::new(0x7fff_ffff_f000),
    );
    for va in [high, low] {
        unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RO) }
            .unwrap()
            .flush();
    }
    let mut seen = Vec::new();
    pt.for_each_mapping(|m| seen.push(m.page));
    assert_eq!(seen, [low, high]);
    let mut text = String::new();
    awk_paging::dump::write(&pt, &mut text).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("0xffff800000000000-0xffff800000001000"),
        "{text}"
    );
}
