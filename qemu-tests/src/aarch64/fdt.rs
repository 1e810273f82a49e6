//! Just enough of a flattened device tree reader to find RAM: QEMU `virt` puts the DTB at the
//! start of RAM for a bare-metal (ELF) kernel, and the `/memory@...` node's `reg` says where RAM
//! is and how large (`-m`).

/// The DTB's magic number (big-endian in memory).
const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Larger DTBs are not believed (QEMU's `virt` DTB is about 1 MiB at most).
const MAX_SIZE: usize = 2 << 20;

/// A DTB in memory.
struct Blob<'a>(&'a [u8]);

impl Blob<'_> {
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.0.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The NUL-terminated string at `at`.
    fn str(&self, at: usize) -> Option<&[u8]> {
        let rest = self.0.get(at..)?;
        let len = rest.iter().position(|&c| c == 0)?;
        Some(&rest[..len])
    }

    /// `cells` big-endian 32-bit cells at `at`, as one number.
    fn cells(&self, at: usize, cells: u32) -> Option<u64> {
        (0..cells as usize).try_fold(0u64, |acc, i| {
            Some((acc << 32) | u64::from(self.u32(at + 4 * i)?))
        })
    }
}

/// The first RAM region (`(start, end)`) of the DTB at physical address `dtb` (identity-mapped),
/// or `None` if there is no valid DTB there or it has no memory node.
///
/// # Safety
///
/// `dtb` must be readable for its header's `totalsize` bytes (at most 2 MiB are read).
pub unsafe fn ram(dtb: u64) -> Option<(u64, u64)> {
    // SAFETY: the caller's guarantee, for the 40-byte header.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    let h = Blob(header);
    let size = h.u32(4)? as usize;
    if h.u32(0)? != MAGIC || !(40..=MAX_SIZE).contains(&size) {
        return None;
    }
    // SAFETY: as above, for the whole blob.
    let b = Blob(unsafe { core::slice::from_raw_parts(dtb as *const u8, size) });
    let (structs, strings) = (b.u32(8)? as usize, b.u32(12)? as usize);
    // Root cells (the specification's defaults until the root says otherwise).
    let (mut address_cells, mut size_cells) = (2, 1);
    let (mut depth, mut in_memory) = (0u32, false);
    let mut at = structs;
    loop {
        let token = b.u32(at)?;
        at += 4;
        match token {
            BEGIN_NODE => {
                let name = b.str(at)?;
                at += (name.len() + 1).next_multiple_of(4);
                depth += 1;
                in_memory = depth == 2 && name.starts_with(b"memory");
            }
            END_NODE => {
                depth = depth.checked_sub(1)?;
                in_memory = false;
            }
            PROP => {
                let (len, name) = (b.u32(at)? as usize, b.u32(at + 4)? as usize);
                let value = at + 8;
                at = value + len.next_multiple_of(4);
                let name = b.str(strings + name)?;
                match (depth, name) {
                    (1, b"#address-cells") => address_cells = b.u32(value)?,
                    (1, b"#size-cells") => size_cells = b.u32(value)?,
                    (2, b"reg") if in_memory => {
                        let start = b.cells(value, address_cells)?;
                        let len = b.cells(value + 4 * address_cells as usize, size_cells)?;
                        return Some((start, start.checked_add(len)?));
                    }
                    _ => {}
                }
            }
            NOP => {}
            END => return None,
            _ => return None,
        }
    }
}
