//! Reading physical memory that may be incomplete: [`PhysRead`] and the dumps it reads.

use core::fmt;

use crate::PhyAddr;

/// Why a physical address could not be read: the dump (or the memory behind the reader) has
/// no byte there.
///
/// ```
/// use awk_paging::inspect::{PhysRead, RawDump, ReadError};
/// use awk_paging::PhyAddr;
/// let dump = RawDump::new(PhyAddr::new(0x1000), &[0u8; 16]);
/// assert_eq!(dump.read_u64(PhyAddr::new(0x2000)), Err(ReadError { addr: PhyAddr::new(0x2000) }));
/// assert_eq!(ReadError { addr: PhyAddr::new(0x2000) }.to_string(), "physical address 0x2000 not readable");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadError {
    /// The address that could not be read.
    pub addr: PhyAddr,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "physical address {:#x} not readable", self.addr.as_u64())
    }
}

/// Read-only access to physical memory that may fail: a memory dump that lacks frames, another
/// machine's memory, or (infallibly) the running kernel's own tables through
/// [`LiveMem`](crate::inspect::LiveMem).
///
/// Nothing here is `unsafe`: a reader returns values, never pointers, so any answer — even a
/// wrong one — is safe; the walkers built on it check everything they read.
///
/// ```
/// use awk_paging::inspect::{PhysRead, ReadError};
/// use awk_paging::PhyAddr;
/// /// Every word reads as its own address (a hostile "memory").
/// struct Mirror;
/// impl PhysRead for Mirror {
///     fn read_u64(&self, pa: PhyAddr) -> Result<u64, ReadError> {
///         Ok(pa.as_u64())
///     }
/// }
/// assert_eq!(Mirror.read_u64(PhyAddr::new(0x18)), Ok(0x18));
/// ```
pub trait PhysRead {
    /// The little-endian 64-bit word at `pa` (8-byte aligned: a table entry).
    fn read_u64(&self, pa: PhyAddr) -> Result<u64, ReadError>;
}

impl<R: PhysRead + ?Sized> PhysRead for &R {
    #[inline(always)]
    fn read_u64(&self, pa: PhyAddr) -> Result<u64, ReadError> {
        (**self).read_u64(pa)
    }
}

/// A contiguous piece of physical memory held as bytes: a raw dump (QEMU's `pmemsave`) starting
/// at physical address `base`, or one `PT_LOAD` segment of an ELF core dump.
///
/// ```
/// use awk_paging::inspect::{PhysRead, RawDump};
/// use awk_paging::PhyAddr;
/// let mut bytes = [0u8; 32];
/// bytes[8..16].copy_from_slice(&0x1234_5678_u64.to_le_bytes());
/// let dump = RawDump::new(PhyAddr::new(0x4000), &bytes);
/// assert_eq!(dump.read_u64(PhyAddr::new(0x4008)), Ok(0x1234_5678));
/// assert!(dump.read_u64(PhyAddr::new(0x4020)).is_err()); // past the end
/// assert!(dump.read_u64(PhyAddr::new(0x3ff8)).is_err()); // before the start
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RawDump<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> RawDump<'a> {
    /// `bytes` holds physical memory from `base` on.
    ///
    /// ```
    /// use awk_paging::inspect::RawDump;
    /// use awk_paging::PhyAddr;
    /// let d = RawDump::new(PhyAddr::new(0x1000), &[0; 8]);
    /// assert_eq!((d.base(), d.len()), (PhyAddr::new(0x1000), 8));
    /// ```
    #[must_use]
    pub const fn new(base: PhyAddr, bytes: &'a [u8]) -> Self {
        RawDump {
            base: base.as_u64(),
            bytes,
        }
    }

    /// The physical address of the first byte.
    ///
    /// ```
    /// # use awk_paging::{inspect::RawDump, PhyAddr};
    /// assert_eq!(RawDump::new(PhyAddr::new(0x2000), &[]).base(), PhyAddr::new(0x2000));
    /// ```
    #[must_use]
    pub const fn base(&self) -> PhyAddr {
        PhyAddr::new(self.base)
    }

    /// How many bytes it holds.
    ///
    /// ```
    /// # use awk_paging::{inspect::RawDump, PhyAddr};
    /// assert_eq!(RawDump::new(PhyAddr::new(0), &[0; 3]).len(), 3);
    /// ```
    #[must_use]
    pub const fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it holds no byte.
    ///
    /// ```
    /// # use awk_paging::{inspect::RawDump, PhyAddr};
    /// assert!(RawDump::new(PhyAddr::new(0), &[]).is_empty());
    /// ```
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl PhysRead for RawDump<'_> {
    #[inline]
    fn read_u64(&self, pa: PhyAddr) -> Result<u64, ReadError> {
        let err = ReadError { addr: pa };
        let off = pa.as_u64().checked_sub(self.base).ok_or(err)?;
        let off = usize::try_from(off).map_err(|_| err)?;
        let end = off.checked_add(8).ok_or(err)?;
        match self.bytes.get(off..end) {
            Some(b) => {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                Ok(u64::from_le_bytes(w))
            }
            None => Err(err),
        }
    }
}

/// Several pieces (an ELF core's `PT_LOAD` segments): a read is served by the first piece that
/// holds all eight bytes.
///
/// ```
/// use awk_paging::inspect::{PhysRead, RawDump};
/// use awk_paging::PhyAddr;
/// let low = [1u8; 8];
/// let high = [2u8; 8];
/// let pieces = [RawDump::new(PhyAddr::new(0), &low), RawDump::new(PhyAddr::new(0x10_0000), &high)];
/// assert_eq!(pieces[..].read_u64(PhyAddr::new(0x10_0000)), Ok(0x0202_0202_0202_0202));
/// assert!(pieces[..].read_u64(PhyAddr::new(0x8)).is_err()); // the hole between them
/// ```
impl PhysRead for [RawDump<'_>] {
    fn read_u64(&self, pa: PhyAddr) -> Result<u64, ReadError> {
        self.iter()
            .find_map(|d| d.read_u64(pa).ok())
            .ok_or(ReadError { addr: pa })
    }
}
