//! RFENCE extension tests (ext-rfence.adoc).

use super::*;
use crate::{eid, error, fid::rfence as f, Fence};

/// ext-rfence.adoc § Remote FENCE.I (FID #0).
#[test]
fn fence_i() {
    let mut env = MockEnv::new(4);
    assert_eq!(env.ret(eid::RFENCE, f::REMOTE_FENCE_I, &[0b110, 0]), ok(0));
    assert_eq!(
        env.ret(eid::RFENCE, f::REMOTE_FENCE_I, &[0, u64::MAX]),
        ok(0)
    );
    assert_eq!(
        env.events,
        [
            Ev::Fence(HartSet(0b110), Fence::I),
            Ev::Fence(HartSet(0xF), Fence::I)
        ]
    );
}

/// ext-rfence.adoc § Remote SFENCE.VMA (FID #1): the range is passed on.
#[test]
fn sfence_vma_range() {
    let mut env = MockEnv::new(2);
    let r = env.ret(
        eid::RFENCE,
        f::REMOTE_SFENCE_VMA,
        &[0b10, 0, 0xFFFF_FFC0_0000_0000, 0x2000],
    );
    assert_eq!(r, ok(0));
    assert_eq!(
        env.events,
        [Ev::Fence(
            HartSet(0b10),
            Fence::Vma {
                start: 0xFFFF_FFC0_0000_0000,
                size: 0x2000
            }
        )]
    );
}

/// ext-rfence.adoc, introduction: the whole address space when "start_addr
/// and size are both 0, or size is equal to 2^XLEN-1" — both accepted, with
/// any start for the second form.
#[test]
fn full_address_space_encodings() {
    let mut env = MockEnv::new(1);
    for (start, size) in [
        (0, 0),
        (0, u64::MAX),
        (0x1234, u64::MAX),
        (u64::MAX, u64::MAX),
    ] {
        assert_eq!(
            env.ret(eid::RFENCE, f::REMOTE_SFENCE_VMA, &[1, 0, start, size]),
            ok(0)
        );
        let fence = Fence::Vma { start, size };
        assert!(fence.is_full());
        assert_eq!(env.events.pop(), Some(Ev::Fence(HartSet(1), fence)));
    }
    assert!(!Fence::Vma { start: 0, size: 1 }.is_full());
    assert!(!Fence::Vma {
        start: 4096,
        size: 0
    }
    .is_full());
    assert!(Fence::VmaAsid {
        start: 0,
        size: 0,
        asid: 3
    }
    .is_full());
    assert!(!Fence::I.is_full());
}

/// ext-rfence.adoc, table_rfence_remote_sfence_vma_errors:
/// SBI_ERR_INVALID_ADDRESS when "start_addr or size is not valid": a range
/// running past 2^64 (not one of the full-space encodings). A range ending
/// exactly at 2^64 is valid. Nothing is sent on error.
#[test]
fn wrapping_range_is_invalid_address() {
    let mut env = MockEnv::new(2);
    for (start, size) in [
        (u64::MAX, 2),
        (0xFFFF_FFFF_FFFF_F000, 0x2000),
        (3, u64::MAX - 1),
    ] {
        let r = env.ret(eid::RFENCE, f::REMOTE_SFENCE_VMA, &[1, 0, start, size]);
        assert_eq!(r, err(error::INVALID_ADDRESS), "{start:#x}+{size:#x}");
        let r = env.ret(
            eid::RFENCE,
            f::REMOTE_SFENCE_VMA_ASID,
            &[1, 0, start, size, 1],
        );
        assert_eq!(r, err(error::INVALID_ADDRESS));
    }
    assert!(env.events.is_empty());
    // Ending exactly at 2^64, and an empty range, are valid.
    let valid = [
        (0xFFFF_FFFF_FFFF_F000, 0x1000),
        (u64::MAX, 1),
        (2, u64::MAX - 1),
        (0x1000, 0),
    ];
    for (start, size) in valid {
        assert_eq!(
            env.ret(eid::RFENCE, f::REMOTE_SFENCE_VMA, &[1, 0, start, size]),
            ok(0)
        );
    }
    assert_eq!(env.events.len(), valid.len());
}

/// ext-rfence.adoc § Remote SFENCE.VMA with ASID (FID #2),
/// table_rfence_remote_sfence_vma_asid_errors: INVALID_PARAM when "asid ...
/// is not valid". RV64 ASIDs are at most 16 bits.
#[test]
fn sfence_vma_asid() {
    let mut env = MockEnv::new(2);
    assert_eq!(
        env.ret(
            eid::RFENCE,
            f::REMOTE_SFENCE_VMA_ASID,
            &[3, 0, 0, 0, 0xFFFF]
        ),
        ok(0)
    );
    assert_eq!(
        env.events,
        [Ev::Fence(
            HartSet(3),
            Fence::VmaAsid {
                start: 0,
                size: 0,
                asid: 0xFFFF
            }
        )]
    );
    env.events.clear();
    for asid in [0x1_0000, 1 << 63, u64::MAX] {
        let r = env.ret(eid::RFENCE, f::REMOTE_SFENCE_VMA_ASID, &[3, 0, 0, 0, asid]);
        assert_eq!(r, err(error::INVALID_PARAM));
    }
    assert!(env.events.is_empty());
}

/// ext-rfence.adoc: every RFENCE function follows the hart mask rules
/// (binary-encoding.adoc, table_hart_mask_errors): invalid hart →
/// INVALID_PARAM, nothing fenced. The hart list is checked before the range.
#[test]
fn invalid_harts_rejected() {
    let mut env = MockEnv::new(2);
    for fid in [
        f::REMOTE_FENCE_I,
        f::REMOTE_SFENCE_VMA,
        f::REMOTE_SFENCE_VMA_ASID,
    ] {
        assert_eq!(
            env.ret(eid::RFENCE, fid, &[0b100, 0]),
            err(error::INVALID_PARAM)
        );
        assert_eq!(
            env.ret(eid::RFENCE, fid, &[1 << 63, u64::MAX - 3]),
            err(error::INVALID_PARAM)
        );
    }
    // Both the hart list and the range are bad: hart list wins.
    assert_eq!(
        env.ret(eid::RFENCE, f::REMOTE_SFENCE_VMA, &[0b100, 0, u64::MAX, 16]),
        err(error::INVALID_PARAM)
    );
    assert!(env.events.is_empty());
}

/// binary-encoding.adoc § Hart list parameter, NOTE: empty mask with any
/// base → success, nothing to fence. The range is still validated.
#[test]
fn empty_mask_fences_nothing() {
    let mut env = MockEnv::new(2);
    assert_eq!(env.ret(eid::RFENCE, f::REMOTE_FENCE_I, &[0, 77]), ok(0));
    assert_eq!(
        env.ret(eid::RFENCE, f::REMOTE_SFENCE_VMA, &[0, 0, 0x1000, 0x1000]),
        ok(0)
    );
    assert_eq!(
        env.ret(eid::RFENCE, f::REMOTE_SFENCE_VMA, &[0, 0, u64::MAX, 16]),
        err(error::INVALID_ADDRESS)
    );
    assert!(env.events.is_empty());
}

/// ext-rfence.adoc § Remote HFENCE.* (FID #3..#6): NOT_SUPPORTED "as it is
/// not implemented or one of the target hart doesn't support hypervisor
/// extension" — Rivet guests have no H extension. Nothing is fenced, even
/// for valid arguments. Unknown FIDs are NOT_SUPPORTED too.
#[test]
fn hfence_functions_not_supported() {
    let mut env = MockEnv::new(2);
    for fid in [3, 4, 5, 6, 7, u64::MAX] {
        assert_eq!(
            env.ret(eid::RFENCE, fid, &[1, 0, 0, 0, 0]),
            err(error::NOT_SUPPORTED)
        );
        assert_eq!(
            env.ret(eid::RFENCE, fid, &[0, u64::MAX, 0, 0, 0]),
            err(error::NOT_SUPPORTED)
        );
    }
    assert!(env.events.is_empty());
}

/// ext-rfence.adoc: remote harts may be in any HSM state; they are still
/// "available to the supervisor", so they are valid targets.
#[test]
fn stopped_targets_are_valid() {
    let mut env = MockEnv::new(3);
    assert_eq!(env.states[1], HartState::Stopped);
    assert_eq!(env.ret(eid::RFENCE, f::REMOTE_FENCE_I, &[0b110, 0]), ok(0));
    assert_eq!(env.events, [Ev::Fence(HartSet(0b110), Fence::I)]);
}
