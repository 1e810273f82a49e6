//! Expected AArch64 descriptor bits for the 32 `Flags` combinations (kernel, non-global 4 KiB
//! pages), written out from the Arm ARM field definitions (D8.3): bits[1:0] 0b11 page / 0b01
//! block, AttrIndx[4:2] (0 WB, 1 WT, 2 NC, 3 Device-nGnRE), AP[7:6] (AP[2] = bit 7 read-only,
//! AP[1] = bit 6 EL0), SH[9:8] = 0b11 inner shareable, AF bit 10, nG bit 11, PXN bit 53, UXN
//! bit 54. Shared by the host encoding test and the QEMU kernel.
#![allow(dead_code)]

use awk_paging::FlagsError;

pub const PAGE: u64 = 0b11;
pub const BLOCK: u64 = 0b01;
pub const WT: u64 = 1 << 2;
pub const NC: u64 = 2 << 2;
pub const DEV: u64 = 3 << 2;
pub const EL0: u64 = 1 << 6;
pub const RO: u64 = 1 << 7;
pub const SH_INNER: u64 = 0b11 << 8;
pub const AF: u64 = 1 << 10;
pub const NG: u64 = 1 << 11;
pub const PXN: u64 = 1 << 53;
pub const UXN: u64 = 1 << 54;
/// Every kernel page: valid page, inner shareable, AF, non-global.
pub const K: u64 = PAGE | SH_INNER | AF | NG;

pub const WX: Result<u64, FlagsError> = Err(FlagsError::WritableAndExecutable);
pub const DX: Result<u64, FlagsError> = Err(FlagsError::ExecutableDevice);

/// Index = execute | write << 1 | cache << 2 | write_through << 3 | device << 4.
pub const TABLE: [Result<u64, FlagsError>; 32] = [
    Ok(K | NC | RO | PXN | UXN),  // 0: uncached RO
    Ok(K | NC | RO | UXN),        // 1: uncached RX (kernel: never EL0-executable)
    Ok(K | NC | PXN | UXN),       // 2: uncached RW
    WX,                           // 3
    Ok(K | RO | PXN | UXN),       // 4: WB RO
    Ok(K | RO | UXN),             // 5: WB RX
    Ok(K | PXN | UXN),            // 6: WB RW
    WX,                           // 7
    Ok(K | NC | RO | PXN | UXN),  // 8: write_through without cache = uncached
    Ok(K | NC | RO | UXN),        // 9
    Ok(K | NC | PXN | UXN),       // 10
    WX,                           // 11
    Ok(K | WT | RO | PXN | UXN),  // 12: WT RO
    Ok(K | WT | RO | UXN),        // 13: WT RX
    Ok(K | WT | PXN | UXN),       // 14: WT RW
    WX,                           // 15
    Ok(K | DEV | RO | PXN | UXN), // 16: device RO
    DX,                           // 17
    Ok(K | DEV | PXN | UXN),      // 18: device RW
    DX,                           // 19
    Ok(K | DEV | RO | PXN | UXN), // 20: device ignores cache
    DX,                           // 21
    Ok(K | DEV | PXN | UXN),      // 22
    DX,                           // 23
    Ok(K | DEV | RO | PXN | UXN), // 24: device ignores write_through
    DX,                           // 25
    Ok(K | DEV | PXN | UXN),      // 26
    DX,                           // 27
    Ok(K | DEV | RO | PXN | UXN), // 28
    DX,                           // 29
    Ok(K | DEV | PXN | UXN),      // 30
    DX,                           // 31
];

/// The MAIR_EL1 `Attr<n>` byte for each AttrIndx value above, from the Arm ARM's MAIR_EL1
/// description (high nibble outer, low nibble inner): 0 = `0xff` Normal write-back
/// non-transient read/write-allocate, 1 = `0xaa` Normal write-through non-transient
/// read-allocate, 2 = `0x44` Normal non-cacheable, 3 = `0x04` Device-nGnRE, 4 = `0x00`
/// Device-nGnRnE. Not derived from the crate's `mair` table: what the MMU reports (PAR_EL1.ATTR)
/// is compared with these.
pub const ATTR: [u8; 5] = [0xff, 0xaa, 0x44, 0x04, 0x00];

/// MAIR_EL1 as the bytes above make it (`Attr<n>` in bits 8n+7:8n, Attr5..7 unused = 0).
pub const MAIR_EL1: u64 = u64::from_le_bytes([0xff, 0xaa, 0x44, 0x04, 0x00, 0x00, 0x00, 0x00]);

/// The complete SCTLR_EL1 value after `mmu::enable`, bit by bit from the register description:
/// M (0), C (2), SA (3), SA0 (4), ITD (7), SED (8), EOS (11), I (12), TSCXT (20), EIS (22),
/// SPAN (23), nTLSMD (28), LSMAOE (29); every other bit 0.
pub const SCTLR_EL1: u64 = 1 << 29
    | 1 << 28
    | 1 << 23
    | 1 << 22
    | 1 << 20
    | 1 << 12
    | 1 << 11
    | 1 << 8
    | 1 << 7
    | 1 << 4
    | 1 << 3
    | 1 << 2
    | 1;
