//! Hart set / hart list tests (binary-encoding.adoc § Hart list parameter).

use crate::{HartSet, InvalidHartMask, HART_MASK_BASE_ALL};
use std::vec::Vec;

/// binary-encoding.adoc § Hart list parameter: ids are `base + bit index`.
#[test]
fn base_plus_bit_index() {
    assert_eq!(HartSet::from_mask(0b101, 2, 8), Ok(HartSet(0b1_0100)));
    assert_eq!(HartSet::from_mask(1, 7, 8), Ok(HartSet(1 << 7)));
    assert_eq!(HartSet::from_mask(u64::MAX, 0, 64), Ok(HartSet(u64::MAX)));
}

/// binary-encoding.adoc § Hart list parameter: "`hart_mask_base` can be set
/// to `-1` to indicate that `hart_mask` shall be ignored and all available
/// harts must be considered."
#[test]
fn base_minus_one_is_all() {
    for mask in [0, 1, 0xDEAD_BEEF, u64::MAX] {
        assert_eq!(
            HartSet::from_mask(mask, HART_MASK_BASE_ALL, 3),
            Ok(HartSet(0b111))
        );
        assert_eq!(
            HartSet::from_mask(mask, u64::MAX, 64),
            Ok(HartSet(u64::MAX))
        );
    }
    assert_eq!(HartSet::from_mask(1, u64::MAX, 0), Ok(HartSet::EMPTY));
}

/// binary-encoding.adoc, table_hart_mask_errors: any constructed hartid that
/// is not valid → error (including overflow of `base + index`).
#[test]
fn invalid_and_overflowing_ids() {
    assert_eq!(HartSet::from_mask(1 << 4, 0, 4), Err(InvalidHartMask));
    assert_eq!(HartSet::from_mask(0b11, 3, 4), Err(InvalidHartMask));
    assert_eq!(
        HartSet::from_mask(1 << 63, u64::MAX - 10, 64),
        Err(InvalidHartMask)
    );
    assert_eq!(
        HartSet::from_mask(1 << 1, u64::MAX - 1, 64),
        Err(InvalidHartMask)
    );
    assert_eq!(
        HartSet::from_mask(1, u64::MAX - 1, 64),
        Err(InvalidHartMask)
    );
    assert_eq!(HartSet::from_mask(1, 64, 64), Err(InvalidHartMask));
}

/// binary-encoding.adoc § Hart list parameter, NOTE: "`hart_mask_base` does
/// not need to be an enabled or supervisor available hartid unless the
/// zeroth bit of `hart_mask` is set." An empty mask is valid for any base.
#[test]
fn base_need_not_be_valid_unless_bit0() {
    assert_eq!(HartSet::from_mask(0, 1000, 4), Ok(HartSet::EMPTY));
    assert_eq!(HartSet::from_mask(0, u64::MAX - 1, 4), Ok(HartSet::EMPTY));
    // Base 2 is valid here, and the bit 1 target (3) too.
    assert_eq!(HartSet::from_mask(0b10, 2, 4), Ok(HartSet(1 << 3)));
}

/// The vCPU limit never exceeds 64 (one XLEN-bit mask).
#[test]
fn limit_is_capped_at_64() {
    assert_eq!(HartSet::all(100), HartSet(u64::MAX));
    assert_eq!(HartSet::all(64), HartSet(u64::MAX));
    assert_eq!(HartSet::all(63), HartSet(u64::MAX >> 1));
    assert_eq!(HartSet::all(0), HartSet::EMPTY);
    assert_eq!(HartSet::from_mask(1 << 63, 1, 1000), Err(InvalidHartMask));
}

#[test]
fn iteration_and_queries() {
    let s =
        HartSet(0b1000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0010_1001);
    assert_eq!(s.iter().collect::<Vec<_>>(), [0, 3, 5, 63]);
    assert_eq!(s.iter().len(), 4);
    assert_eq!(s.len(), 4);
    assert!(s.contains(0) && s.contains(63) && !s.contains(1));
    assert!(!s.contains(64) && !s.contains(usize::MAX));
    assert!(HartSet::EMPTY.is_empty());
    assert_eq!(HartSet::EMPTY.iter().next(), None);
    assert_eq!(HartSet(u64::MAX).into_iter().count(), 64);
}
