//! Expected x86_64 page-table entry bits for the 32 `Flags` combinations, written out from the
//! Intel SDM (Vol. 3A §4.5, table 4-19): P = bit 0, R/W = bit 1, U/S = bit 2, PWT = bit 3,
//! PCD = bit 4, A = bit 5, D = bit 6, PS = bit 7, G = bit 8, XD = bit 63; power-on PAT: PWT
//! selects WT, PCD selects UC-, both select UC. Kernel leaves (these rows) are created with A
//! and D set, so the processor never writes them (as Linux creates its kernel PTEs). Shared by the host encoding test and the QEMU kernel (which checks the
//! entries the CPU actually walked).
#![allow(dead_code)]

use awk_paging::FlagsError;

pub const P: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const PWT: u64 = 1 << 3;
pub const PCD: u64 = 1 << 4;
pub const A: u64 = 1 << 5;
pub const D: u64 = 1 << 6;
pub const PS: u64 = 1 << 7;
pub const G: u64 = 1 << 8;
pub const XD: u64 = 1 << 63;

pub const WX: Result<u64, FlagsError> = Err(FlagsError::WritableAndExecutable);
pub const DX: Result<u64, FlagsError> = Err(FlagsError::ExecutableDevice);

/// Index = execute | write << 1 | cache << 2 | write_through << 3 | device << 4.
pub const TABLE: [Result<u64, FlagsError>; 32] = [
    Ok(P | A | D | PCD | XD),            // 0: uncached RO
    Ok(P | A | D | PCD),                 // 1: uncached RX
    Ok(P | A | D | RW | PCD | XD),       // 2: uncached RW
    WX,                                  // 3
    Ok(P | A | D | XD),                  // 4: WB RO
    Ok(P | A | D),                       // 5: WB RX
    Ok(P | A | D | RW | XD),             // 6: WB RW
    WX,                                  // 7
    Ok(P | A | D | PCD | XD),            // 8: write_through without cache = uncached
    Ok(P | A | D | PCD),                 // 9
    Ok(P | A | D | RW | PCD | XD),       // 10
    WX,                                  // 11
    Ok(P | A | D | PWT | XD),            // 12: WT RO
    Ok(P | A | D | PWT),                 // 13: WT RX
    Ok(P | A | D | RW | PWT | XD),       // 14: WT RW
    WX,                                  // 15
    Ok(P | A | D | PCD | PWT | XD),      // 16: device RO (UC)
    DX,                                  // 17
    Ok(P | A | D | RW | PCD | PWT | XD), // 18: device RW
    DX,                                  // 19
    Ok(P | A | D | PCD | PWT | XD),      // 20: device ignores cache
    DX,                                  // 21
    Ok(P | A | D | RW | PCD | PWT | XD), // 22
    DX,                                  // 23
    Ok(P | A | D | PCD | PWT | XD),      // 24: device ignores write_through
    DX,                                  // 25
    Ok(P | A | D | RW | PCD | PWT | XD), // 26
    DX,                                  // 27
    Ok(P | A | D | PCD | PWT | XD),      // 28
    DX,                                  // 29
    Ok(P | A | D | RW | PCD | PWT | XD), // 30
    DX,                                  // 31
];
