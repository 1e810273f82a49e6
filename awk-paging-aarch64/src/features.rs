//! The ID_AA64MMFR1_EL1 fields for the hardware Access flag and dirty state (FEAT_HAFDBS) and
//! for Privileged Access Never (FEAT_PAN), and the TCR_EL1 / SCTLR_EL1 bits that turn them on.
//!
//! Arm ARM (DDI 0487), ID_AA64MMFR1_EL1: HAFDBS is bits 3:0 (0b0000 none, 0b0001 hardware
//! Access flag, 0b0010 Access flag and dirty state, 0b0011 also the table Access flag,
//! FEAT_HAFT); PAN is bits 23:20 (0b0001 FEAT_PAN, 0b0010 FEAT_PAN2, 0b0011 FEAT_PAN3).
//! TCR_EL1.HA is bit 39 and TCR_EL1.HD bit 40 (HD has an effect only with HA set);
//!
//! PAN itself (SCTLR_EL1.SPAN, PSTATE.PAN, the user-access window) is [`crate::pan`].
//!
//! This module only decodes and encodes: a kernel reads the register ([`Mmfr1::read`], bare
//! metal), asks [`Mmfr1::hardware_flags`] what the CPU can do, and ORs
//! [`HardwareFlags::tcr_bits`] into the TCR_EL1 value it writes. [`Tracking`] is the regime's
//! side: which of those updates the descriptors it builds expect
//! ([`A64::with_tracking`](crate::A64::with_tracking)), with a software Access flag for CPUs
//! without them.
//!
//! ```
//! use awk_paging_aarch64::features::{HardwareFlags, Mmfr1};
//! // A CPU with HAFDBS = 0b0010 and PAN = 0b0011 (QEMU's `-cpu max` reports these).
//! let id = Mmfr1::from_id_aa64mmfr1(0x0030_0002);
//! assert_eq!(id.hardware_flags(), HardwareFlags { access: true, dirty: true });
//! assert!(id.has_pan());
//! ```

/// TCR_EL1.HA (bit 39): the hardware sets the Access flag of stage-1 descriptors.
pub const TCR_HA: u64 = 1 << 39;
/// TCR_EL1.HD (bit 40): hardware management of dirty state (DBM, descriptor bit 51) for
/// stage 1; effective only together with [`TCR_HA`].
pub const TCR_HD: u64 = 1 << 40;
/// The two ID_AA64MMFR1_EL1 fields this crate uses, as the raw 4-bit values.
///
/// ```
/// use awk_paging_aarch64::features::Mmfr1;
/// // Cortex-A72 reports neither feature.
/// let id = Mmfr1::from_id_aa64mmfr1(0);
/// assert!(!id.has_pan() && !id.hardware_flags().access);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmfr1 {
    /// HAFDBS, bits 3:0.
    pub hafdbs: u8,
    /// PAN, bits 23:20.
    pub pan: u8,
}

impl Mmfr1 {
    /// The fields of an ID_AA64MMFR1_EL1 value.
    ///
    /// ```
    /// use awk_paging_aarch64::features::Mmfr1;
    /// assert_eq!(Mmfr1::from_id_aa64mmfr1(0x0010_0001), Mmfr1 { hafdbs: 1, pan: 1 });
    /// ```
    #[must_use]
    pub const fn from_id_aa64mmfr1(value: u64) -> Self {
        Mmfr1 {
            hafdbs: (value & 0xf) as u8,
            pan: ((value >> 20) & 0xf) as u8,
        }
    }

    /// This CPU's fields (reads ID_AA64MMFR1_EL1). Bare-metal AArch64 only.
    ///
    /// ```no_run
    /// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    /// # fn f() {
    /// let id = awk_paging_aarch64::features::Mmfr1::read();
    /// let _ = id.has_pan();
    /// # }
    /// ```
    #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
    #[must_use]
    pub fn read() -> Self {
        use aarch64_cpu::registers::{Readable, ID_AA64MMFR1_EL1};
        Self::from_id_aa64mmfr1(ID_AA64MMFR1_EL1.get())
    }

    /// What the hardware can update in descriptors: HAFDBS 0b0001 the Access flag, 0b0010
    /// and above (0b0011 adds the table Access flag, which this crate does not use) also
    /// the dirty state. Reserved values above 0b0011 are read as the strongest defined one,
    /// as the Arm ARM's ID-field scheme (higher values add to lower ones) allows.
    ///
    /// ```
    /// use awk_paging_aarch64::features::{HardwareFlags, Mmfr1};
    /// let af_only = Mmfr1 { hafdbs: 1, pan: 0 };
    /// assert_eq!(af_only.hardware_flags(), HardwareFlags { access: true, dirty: false });
    /// ```
    #[must_use]
    pub const fn hardware_flags(self) -> HardwareFlags {
        HardwareFlags {
            access: self.hafdbs >= 0b0001,
            dirty: self.hafdbs >= 0b0010,
        }
    }

    /// Whether PSTATE.PAN exists (FEAT_PAN, PAN field 0b0001 or above); the same answer as
    /// [`crate::pan::pan_in_mmfr1`] on the whole register.
    ///
    /// ```
    /// use awk_paging_aarch64::features::Mmfr1;
    /// assert!(Mmfr1 { hafdbs: 0, pan: 2 }.has_pan());
    /// ```
    #[must_use]
    pub const fn has_pan(self) -> bool {
        self.pan >= 0b0001
    }
}

/// Which descriptor updates the kernel lets the hardware do (the TCR_EL1.HA / HD it sets).
///
/// ```
/// use awk_paging_aarch64::features::{HardwareFlags, TCR_HA, TCR_HD};
/// assert_eq!(HardwareFlags { access: true, dirty: true }.tcr_bits(), TCR_HA | TCR_HD);
/// assert_eq!(HardwareFlags::NONE.tcr_bits(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardwareFlags {
    /// The hardware sets the Access flag (TCR_EL1.HA).
    pub access: bool,
    /// The hardware manages dirty state through DBM (TCR_EL1.HD).
    pub dirty: bool,
}

impl HardwareFlags {
    /// No hardware updates: the Access flag is software's (an access to an AF = 0 page
    /// takes an Access flag fault) and there is no dirty state.
    ///
    /// ```
    /// assert!(!awk_paging_aarch64::features::HardwareFlags::NONE.access);
    /// ```
    pub const NONE: HardwareFlags = HardwareFlags {
        access: false,
        dirty: false,
    };

    /// The TCR_EL1 bits for these updates. Dirty state without the Access flag is not a
    /// configuration the architecture defines (HD has no effect when HA is 0), so `dirty`
    /// without `access` sets neither bit.
    ///
    /// ```
    /// use awk_paging_aarch64::features::{HardwareFlags, TCR_HA};
    /// assert_eq!(HardwareFlags { access: true, dirty: false }.tcr_bits(), TCR_HA);
    /// assert_eq!(HardwareFlags { access: false, dirty: true }.tcr_bits(), 0);
    /// ```
    #[must_use]
    pub const fn tcr_bits(self) -> u64 {
        match (self.access, self.dirty) {
            (true, true) => TCR_HA | TCR_HD,
            (true, false) => TCR_HA,
            (false, _) => 0,
        }
    }
}

/// How a regime ([`A64::with_tracking`](crate::A64::with_tracking)) records that pages were
/// accessed and written: the Access flag (AF, descriptor bit 10) and, with FEAT_HAFDBS dirty
/// state, the dirty bit modifier (DBM, bit 51) with AP\[2\] as the dirty record (Arm ARM D8.4,
/// "Hardware management of the Access flag and dirty state").
///
/// The mode must match what the kernel wrote to TCR_EL1 ([`tcr_bits`](Self::tcr_bits)): a
/// regime that believes the hardware updates entries when it does not loses nothing (it only
/// uses atomic updates needlessly), but one that believes it does not while it does may lose a
/// hardware update.
///
/// ```
/// use awk_paging_aarch64::features::{HardwareFlags, Tracking, TCR_HA, TCR_HD};
/// let cpu = HardwareFlags { access: true, dirty: true };
/// let mode = Tracking::for_cpu(cpu);
/// assert_eq!(mode, Tracking::HardwareAccessDirty);
/// assert_eq!(mode.tcr_bits(), TCR_HA | TCR_HD);
/// assert_eq!(Tracking::default(), Tracking::Off);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Tracking {
    /// No record (the default). Every leaf has AF = 1; a leaf with AF = 0 (in tables taken
    /// over from elsewhere) is no mapping, as its first access would take an Access flag
    /// fault nobody resolves. [`accessed_dirty`](awk_paging::arch::Arch::accessed_dirty)
    /// answers `(AF, true)` and nothing is cleared.
    ///
    /// ```
    /// use awk_paging_aarch64::features::Tracking;
    /// assert_eq!(Tracking::Off.tcr_bits(), 0);
    /// assert!(!Tracking::Off.hardware_updates());
    /// ```
    #[default]
    Off,
    /// Software Access flag, for CPUs without FEAT_HAFDBS (TCR_EL1.HA = 0): software clears AF
    /// to age a page; a leaf with AF = 0 is still a mapping for the walker (translate, unmap
    /// and protect see it), and the CPU's next access to it takes an Access flag fault, which
    /// the kernel resolves with
    /// [`UserSpace::set_accessed`](awk_paging::space::UserSpace::set_accessed). No dirty
    /// record: every page reads as dirty.
    ///
    /// ```
    /// use awk_paging::emu::EmuMemory;
    /// use awk_paging::space::{KernelHalf, UserSpace};
    /// use awk_paging::{Attrs, Flags, NoTlb, PageSize, VirtAddr};
    /// use awk_paging_aarch64::{features::Tracking, A64};
    /// assert_eq!(Tracking::SoftwareAccess.tcr_bits(), 0);
    /// assert!(!Tracking::SoftwareAccess.hardware_updates());
    ///
    /// let mem = EmuMemory::new(16);
    /// let regime = A64::default().with_tracking(Tracking::SoftwareAccess);
    /// let mut u = UserSpace::new(regime, &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// let va = VirtAddr::new(0x40_0000);
    /// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// unsafe { u.map(va, mem.allocate_data_frame().unwrap(), PageSize::Size4K, rw) }.unwrap().flush();
    /// // Age the page: AF cleared, the mapping stays.
    /// let (ad, flush) = u.clear_accessed_dirty(va, PageSize::Size4K, true, false).unwrap();
    /// flush.flush();
    /// assert!(ad.accessed && u.translate(va).is_ok());
    /// // The next access faults (Access flag fault); the handler sets AF and retries.
    /// assert_eq!(u.set_accessed(va), Ok(true));
    /// assert_eq!(u.set_accessed(va), Ok(false));
    /// ```
    SoftwareAccess,
    /// Hardware Access flag (TCR_EL1.HA = 1): the walk of a leaf with AF = 0 sets AF instead of
    /// faulting. No dirty record.
    ///
    /// ```
    /// use awk_paging_aarch64::features::{Tracking, TCR_HA};
    /// assert_eq!(Tracking::HardwareAccess.tcr_bits(), TCR_HA);
    /// assert!(!Tracking::HardwareAccess.tracks_dirty());
    /// ```
    HardwareAccess,
    /// Hardware Access flag and dirty state (TCR_EL1.HA = HD = 1): the hardware sets AF, and
    /// the first write to a leaf with DBM = 1 and AP\[2\] = 1 (*writable-clean*) clears AP\[2\]
    /// (*writable-dirty*) instead of raising a Permission fault. Writable user leaves are
    /// created writable-clean, writable kernel leaves writable-dirty (settled: the hardware has
    /// nothing left to write in them, as x86 kernel leaves are created Accessed and Dirty).
    ///
    /// ```
    /// use awk_paging_aarch64::features::{Tracking, TCR_HA, TCR_HD};
    /// assert_eq!(Tracking::HardwareAccessDirty.tcr_bits(), TCR_HA | TCR_HD);
    /// assert!(Tracking::HardwareAccessDirty.tracks_dirty());
    /// ```
    HardwareAccessDirty,
}

impl Tracking {
    /// The best mode a CPU with these capabilities (from [`Mmfr1::hardware_flags`]) offers:
    /// hardware dirty state if it has it, else the hardware Access flag, else the software
    /// Access flag (always available).
    ///
    /// ```
    /// use awk_paging_aarch64::features::{HardwareFlags, Mmfr1, Tracking};
    /// assert_eq!(Tracking::for_cpu(HardwareFlags::NONE), Tracking::SoftwareAccess);
    /// let af_only = Mmfr1::from_id_aa64mmfr1(0b0001).hardware_flags();
    /// assert_eq!(Tracking::for_cpu(af_only), Tracking::HardwareAccess);
    /// ```
    #[must_use]
    pub const fn for_cpu(cpu: HardwareFlags) -> Tracking {
        match (cpu.access, cpu.dirty) {
            (true, true) => Tracking::HardwareAccessDirty,
            (true, false) => Tracking::HardwareAccess,
            // Dirty state without the Access flag is no configuration (HD needs HA).
            (false, _) => Tracking::SoftwareAccess,
        }
    }

    /// The hardware updates this mode needs from the CPU.
    ///
    /// ```
    /// use awk_paging_aarch64::features::{HardwareFlags, Tracking};
    /// assert_eq!(Tracking::SoftwareAccess.hardware_flags(), HardwareFlags::NONE);
    /// assert_eq!(
    ///     Tracking::HardwareAccess.hardware_flags(),
    ///     HardwareFlags { access: true, dirty: false }
    /// );
    /// ```
    #[must_use]
    pub const fn hardware_flags(self) -> HardwareFlags {
        match self {
            Tracking::Off | Tracking::SoftwareAccess => HardwareFlags::NONE,
            Tracking::HardwareAccess => HardwareFlags {
                access: true,
                dirty: false,
            },
            Tracking::HardwareAccessDirty => HardwareFlags {
                access: true,
                dirty: true,
            },
        }
    }

    /// The TCR_EL1 bits (HA, HD) to OR into the value the kernel writes for this mode.
    ///
    /// ```
    /// use awk_paging_aarch64::features::{Tracking, TCR_HA};
    /// assert_eq!(Tracking::HardwareAccess.tcr_bits(), TCR_HA);
    /// assert_eq!(Tracking::Off.tcr_bits(), 0);
    /// ```
    #[must_use]
    pub const fn tcr_bits(self) -> u64 {
        self.hardware_flags().tcr_bits()
    }

    /// Whether the hardware writes live descriptors in this mode (TCR_EL1.HA is set).
    ///
    /// ```
    /// use awk_paging_aarch64::features::Tracking;
    /// assert!(Tracking::HardwareAccess.hardware_updates());
    /// assert!(!Tracking::SoftwareAccess.hardware_updates());
    /// ```
    #[must_use]
    pub const fn hardware_updates(self) -> bool {
        matches!(
            self,
            Tracking::HardwareAccess | Tracking::HardwareAccessDirty
        )
    }

    /// Whether leaves keep an access record (every mode but [`Off`](Self::Off)): AF = 0 leaves
    /// are then mappings, aged pages.
    ///
    /// ```
    /// use awk_paging_aarch64::features::Tracking;
    /// assert!(!Tracking::Off.tracks_access());
    /// assert!(Tracking::HardwareAccessDirty.tracks_access());
    /// ```
    #[must_use]
    pub const fn tracks_access(self) -> bool {
        !matches!(self, Tracking::Off)
    }

    /// Whether leaves keep a dirty record ([`HardwareAccessDirty`](Self::HardwareAccessDirty)
    /// only).
    ///
    /// ```
    /// use awk_paging_aarch64::features::Tracking;
    /// assert!(!Tracking::HardwareAccess.tracks_dirty());
    /// ```
    #[must_use]
    pub const fn tracks_dirty(self) -> bool {
        matches!(self, Tracking::HardwareAccessDirty)
    }
}
