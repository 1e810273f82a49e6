//! What the AArch64 MMU makes of entries the walker does not use (Arm ARM D8.3 "Translation
//! table descriptor formats", D8.4 "Memory access control", D8.15 "MMU faults"), for
//! [`awk_paging::inspect`].
//!
//! Access follows the stage-1 EL1&0 rules with hierarchical permissions enabled: AP\[2\]
//! (read-only) and AP\[1\] (EL0 access), restricted by APTable; EL0 execution by UXN and
//! UXNTable alone (execute-only user memory exists); EL1 execution by PXN and PXNTable, and
//! never from memory writable at EL0 (the implicit PXN of D8.4). SCTLR_EL1.WXN = 0 and PAN = 0
//! are assumed. Memory types follow this crate's MAIR layout ([`crate::mair`]); an index the
//! layout does not use reads as device memory.

use awk_paging::arch::{Arch, Limits};
use awk_paging::inspect::{Access, Classify, Invalid};

use crate::descriptor::{bits as b, OA_MASK};
use crate::A64;

/// ```
/// use awk_paging::arch::{Arch, Limits};
/// use awk_paging::inspect::{Classify, Invalid};
/// use awk_paging_aarch64::descriptor::bits;
/// use awk_paging_aarch64::A64;
/// let a = A64::default(); // 48-bit VA: our level 3 is Arm level 0
/// assert_eq!(a.invalid(0x1000 | 0b01 | bits::AF, 3), Invalid::LeafNotAllowed); // level-0 block
/// assert_eq!(a.invalid(0x1000 | 0b11, 0), Invalid::AccessFlag); // page with AF = 0
/// assert_eq!(a.invalid(0x1000 | 0b10, 2), Invalid::NotPresent); // bit 0 clear
/// assert_eq!(A64::default().with_pa_bits(40).invalid((1 << 44) | 0b11, 2), Invalid::AddressSize);
/// // An EL0-writable page is never executable at EL1, whatever PXN says.
/// let raw = 0x5000 | 0b11 | bits::AF | bits::AP_EL0 | bits::UXN;
/// let acc = a.access(raw, 0, Limits::NONE);
/// assert!(acc.user_write && !acc.kernel_exec && !acc.user_exec);
/// ```
impl Classify for A64 {
    fn invalid(&self, raw: u64, level: u8) -> Invalid {
        if raw & b::VALID == 0 {
            return Invalid::NotPresent;
        }
        let oa = raw & OA_MASK;
        if oa >> self.pa_bits() != 0 {
            return Invalid::AddressSize;
        }
        let top = self.levels().saturating_sub(1);
        let af = raw & b::AF != 0;
        match (raw & 0b11, level) {
            // Arm level 0 of a 4-level regime has no blocks without FEAT_LPA2, and level 3 no
            // 0b01 encoding: both are translation faults.
            (0b01, l) if l == top && top == 3 => Invalid::LeafNotAllowed,
            (0b01, 0) => Invalid::LeafNotAllowed,
            (0b01, _) | (0b11, 0) if !af => Invalid::AccessFlag,
            _ => Invalid::ReservedBits,
        }
    }

    fn access(&self, raw: u64, _level: u8, limits: Limits) -> Access {
        let write = raw & b::AP_RO == 0 && !limits.no_write;
        let user = raw & b::AP_EL0 != 0 && !limits.no_user;
        let user_write = user && write;
        Access {
            kernel_read: true,
            kernel_write: write,
            kernel_exec: raw & b::PXN == 0 && !limits.no_exec && !user_write,
            user_read: user,
            user_write,
            user_exec: raw & b::UXN == 0 && !limits.no_user_exec,
        }
    }
}
