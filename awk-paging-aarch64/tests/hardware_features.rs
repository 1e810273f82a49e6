//! ID_AA64MMFR1_EL1 decoding and the TCR_EL1 / SCTLR_EL1 enable bits for FEAT_HAFDBS and
//! FEAT_PAN, against bit positions written out by hand from the Arm ARM (DDI 0487):
//! ID_AA64MMFR1_EL1.HAFDBS = bits 3:0, .PAN = bits 23:20; TCR_EL1.HA = bit 39, .HD = bit 40.

use awk_paging_aarch64::features::{HardwareFlags, Mmfr1, TCR_HA, TCR_HD};
use awk_paging_aarch64::pan::pan_in_mmfr1;

#[test]
fn enable_bits_sit_where_the_arm_arm_puts_them() {
    assert_eq!(TCR_HA, 0x0000_0080_0000_0000);
    assert_eq!(TCR_HD, 0x0000_0100_0000_0000);
}

#[test]
fn id_fields_are_read_from_their_own_bits_only() {
    // Every bit set except the two fields: nothing leaks in.
    let others = !0x00f0_000f_u64;
    assert_eq!(
        Mmfr1::from_id_aa64mmfr1(others),
        Mmfr1 { hafdbs: 0, pan: 0 }
    );
    // Neighbouring fields set (VMIDBits 7:4, SpecSEI 27:24) next to the values under test.
    assert_eq!(
        Mmfr1::from_id_aa64mmfr1(0x0f1f_00f2),
        Mmfr1 { hafdbs: 2, pan: 1 }
    );
    // QEMU -cpu max style: PAN3, HAFDBS with dirty state.
    assert_eq!(
        Mmfr1::from_id_aa64mmfr1(0x0030_0002),
        Mmfr1 { hafdbs: 2, pan: 3 }
    );
}

#[test]
fn hafdbs_values_map_to_the_hardware_updates_they_promise() {
    let flags = |hafdbs| Mmfr1 { hafdbs, pan: 0 }.hardware_flags();
    assert_eq!(
        flags(0),
        HardwareFlags {
            access: false,
            dirty: false
        }
    );
    assert_eq!(
        flags(1),
        HardwareFlags {
            access: true,
            dirty: false
        }
    );
    assert_eq!(
        flags(2),
        HardwareFlags {
            access: true,
            dirty: true
        }
    );
    assert_eq!(
        flags(3),
        HardwareFlags {
            access: true,
            dirty: true
        }
    );
}

#[test]
fn pan_is_present_from_field_value_one() {
    assert!(!Mmfr1 { hafdbs: 0, pan: 0 }.has_pan());
    for pan in 1..=3 {
        assert!(Mmfr1 { hafdbs: 0, pan }.has_pan(), "PAN = {pan}");
        // Agrees with the pan module's test of the whole register.
        let raw = u64::from(pan) << 20;
        assert_eq!(Mmfr1::from_id_aa64mmfr1(raw).has_pan(), pan_in_mmfr1(raw));
    }
}

#[test]
fn tcr_bits_for_each_configuration() {
    let bits = |access, dirty| HardwareFlags { access, dirty }.tcr_bits();
    assert_eq!(bits(false, false), 0);
    assert_eq!(bits(true, false), 1 << 39);
    assert_eq!(bits(true, true), 1 << 39 | 1 << 40);
    // HD without HA is not architecturally meaningful: neither bit.
    assert_eq!(bits(false, true), 0);
}
