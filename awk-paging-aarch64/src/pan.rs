//! Privileged Access Never (FEAT_PAN, Arm ARM D8.4.2): with `PSTATE.PAN` set, an EL1 data
//! access to memory EL0 may access faults (a permission fault), so a kernel bug cannot read or
//! write user memory by accident — the AArch64 counterpart of x86 SMAP. The kernel touches
//! user memory only inside an explicit window, [`with_user_access`] (x86: `stac` … `clac`).
//!
//! PSTATE.PAN is written through its system-register form (`S3_0_C4_C2_3`, bit 22), which
//! assembles for the baseline Armv8.0 target; it is touched only where ID_AA64MMFR1_EL1 reports
//! the feature (elsewhere the register is UNDEFINED).

/// PSTATE.PAN as its system register holds it (bit 22).
pub const PAN_BIT: u64 = 1 << 22;

/// SCTLR_EL1.SPAN (bit 23): 0 = PSTATE.PAN is set on every exception taken to EL1.
pub const SCTLR_SPAN: u64 = 1 << 23;

/// Whether an ID_AA64MMFR1_EL1 value reports FEAT_PAN (its PAN field, bits 23:20, non-zero).
///
/// ```
/// use awk_paging_aarch64::pan::pan_in_mmfr1;
/// assert!(pan_in_mmfr1(0b0001 << 20));
/// assert!(pan_in_mmfr1(0b0011 << 20)); // FEAT_PAN3
/// assert!(!pan_in_mmfr1(0xf << 24));
/// ```
#[must_use]
pub const fn pan_in_mmfr1(mmfr1: u64) -> bool {
    crate::features::Mmfr1::from_id_aa64mmfr1(mmfr1).has_pan()
}

/// Whether this CPU has FEAT_PAN (reads ID_AA64MMFR1_EL1). Bare-metal AArch64 only.
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
#[must_use]
pub fn has_pan() -> bool {
    let mmfr1: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe {
        core::arch::asm!("mrs {x}, id_aa64mmfr1_el1", x = out(reg) mmfr1,
            options(nomem, nostack, preserves_flags));
    }
    pan_in_mmfr1(mmfr1)
}

/// Whether PSTATE.PAN is set on this CPU now (`false` without FEAT_PAN). Bare-metal AArch64
/// only.
///
/// ```no_run
/// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
/// # fn f() {
/// use awk_paging_aarch64::pan;
/// // SAFETY: EL1, no user memory touched outside the window afterwards.
/// let on = unsafe { pan::enable() };
/// assert_eq!(pan::is_on(), on);
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
#[must_use]
pub fn is_on() -> bool {
    if !has_pan() {
        return false;
    }
    let v: u64;
    // SAFETY: reading PSTATE.PAN (FEAT_PAN present) has no side effects.
    unsafe {
        core::arch::asm!("mrs {v}, s3_0_c4_c2_3", v = out(reg) v,
            options(nomem, nostack, preserves_flags));
    }
    v & PAN_BIT != 0
}

/// Turns PAN on where the CPU has it: PSTATE.PAN set now, and SCTLR_EL1.SPAN cleared so every
/// exception taken to EL1 sets it again. Returns whether PAN is on.
///
/// # Safety
///
/// EL1 only; from now on EL1 code must not touch EL0-accessible memory outside
/// [`with_user_access`] (it faults).
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
pub unsafe fn enable() -> bool {
    if !has_pan() {
        return false;
    }
    // SAFETY: EL1 (caller); SCTLR_EL1.SPAN and PSTATE.PAN only change privileged access
    // checks; the isb makes the SCTLR write take effect before returning.
    unsafe {
        core::arch::asm!(
            "mrs {t}, sctlr_el1",
            "bic {t}, {t}, {span}",
            "msr sctlr_el1, {t}",
            "isb",
            "msr s3_0_c4_c2_3, {pan}",
            t = out(reg) _,
            span = in(reg) SCTLR_SPAN,
            pan = in(reg) PAN_BIT,
            options(nostack, preserves_flags)
        );
    }
    true
}

/// Turns PAN off again (PSTATE.PAN cleared, SCTLR_EL1.SPAN set) where the CPU has it.
///
/// # Safety
///
/// EL1 only.
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
pub unsafe fn disable() {
    if !has_pan() {
        return;
    }
    // SAFETY: EL1 (caller); as in `enable`.
    unsafe {
        core::arch::asm!(
            "msr s3_0_c4_c2_3, xzr",
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, {span}",
            "msr sctlr_el1, {t}",
            "isb",
            t = out(reg) _,
            span = in(reg) SCTLR_SPAN,
            options(nostack, preserves_flags)
        );
    }
}

/// Runs `f` with PSTATE.PAN clear — the kernel's explicit window onto user memory (a
/// `copy_from_user`) — and restores PSTATE.PAN afterwards (also if `f` unwinds, which bare
/// metal does not). Without FEAT_PAN it just runs `f`.
///
/// ```no_run
/// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
/// # fn f(user_ptr: *const u64) -> u64 {
/// // SAFETY: user_ptr is a user address this process may read.
/// awk_paging_aarch64::pan::with_user_access(|| unsafe { user_ptr.read_volatile() })
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
pub fn with_user_access<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: writes back the PSTATE.PAN value read below.
            unsafe {
                core::arch::asm!("msr s3_0_c4_c2_3, {v}", v = in(reg) self.0,
                    options(nostack, preserves_flags));
            }
        }
    }
    if !has_pan() {
        return f();
    }
    let before: u64;
    // SAFETY: reading PSTATE.PAN (FEAT_PAN present); clearing it only widens what EL1 may
    // access, which is the point of the window.
    unsafe {
        core::arch::asm!("mrs {v}, s3_0_c4_c2_3", "msr s3_0_c4_c2_3, xzr", v = out(reg) before,
            options(nostack, preserves_flags));
    }
    let _restore = Restore(before & PAN_BIT);
    f()
}
