//! Legacy extension tests (ext-legacy.adoc).

use super::*;
use crate::{eid, error, Fence, ResetReason, ResetType};

/// ext-legacy.adoc: "The SBI function ID field in a6 register is ignored" and
/// "Nothing is returned in a1" (Outcome::Legacy writes a0 only).
/// § Set Timer (EID #0x00): returns 0 on success.
#[test]
fn set_timer_ignores_fid() {
    let mut env = MockEnv::new(1);
    assert_eq!(
        env.call(eid::LEGACY_SET_TIMER, 0x1234, &[99]),
        Outcome::Legacy(0)
    );
    assert_eq!(
        env.call(eid::LEGACY_SET_TIMER, u64::MAX, &[u64::MAX]),
        Outcome::Legacy(0)
    );
    assert_eq!(env.events, [Ev::SetTimer(99), Ev::SetTimer(u64::MAX)]);
}

/// § Console Putchar (EID #0x01): `int ch`, written as a byte; returns 0.
#[test]
fn console_putchar() {
    let mut env = MockEnv::new(1);
    assert_eq!(env.legacy(eid::LEGACY_CONSOLE_PUTCHAR, &[b'h' as u64]), 0);
    assert_eq!(env.legacy(eid::LEGACY_CONSOLE_PUTCHAR, &[0xFFFF_FF69]), 0);
    assert_eq!(env.console_out, b"hi");
}

/// § Console Getchar (EID #0x02): "returns the byte on success, or -1 for
/// failure". Byte 0xFF is 255, not -1.
#[test]
fn console_getchar() {
    let mut env = MockEnv::new(1);
    assert_eq!(env.legacy(eid::LEGACY_CONSOLE_GETCHAR, &[]), -1);
    env.console_in.extend([b'q', 0xFF, 0]);
    assert_eq!(
        env.legacy(eid::LEGACY_CONSOLE_GETCHAR, &[]),
        i64::from(b'q')
    );
    assert_eq!(env.legacy(eid::LEGACY_CONSOLE_GETCHAR, &[]), 255);
    assert_eq!(env.legacy(eid::LEGACY_CONSOLE_GETCHAR, &[]), 0);
    assert_eq!(env.legacy(eid::LEGACY_CONSOLE_GETCHAR, &[]), -1);
}

/// § Clear IPI (EID #0x03): "returns 0 if no IPI had been pending, or an
/// implementation specific positive value if an IPI had been pending".
#[test]
fn clear_ipi() {
    let mut env = MockEnv::new(1);
    env.ipi_pending = true;
    assert_eq!(env.legacy(eid::LEGACY_CLEAR_IPI, &[]), 1);
    assert!(!env.ipi_pending);
    assert_eq!(env.legacy(eid::LEGACY_CLEAR_IPI, &[]), 0);
    assert_eq!(env.events, [Ev::ClearIpi, Ev::ClearIpi]);
}

/// § Send IPI (EID #0x04): `hart_mask` is a virtual address of a bit vector,
/// one unsigned long for up to 64 harts; returns 0 on success.
#[test]
fn send_ipi_through_pointer() {
    let mut env = MockEnv::new(4);
    env.legacy_masks.push((0xFFFF_FFC0_0000_1000, 0b1001));
    assert_eq!(
        env.legacy(eid::LEGACY_SEND_IPI, &[0xFFFF_FFC0_0000_1000]),
        0
    );
    assert_eq!(
        env.events,
        [
            Ev::MaskRead(0xFFFF_FFC0_0000_1000),
            Ev::Ipi(HartSet(0b1001))
        ]
    );
}

/// Null hart_mask pointer = all harts (the v0.1 convention of BBL/OpenSBI/KVM;
/// not stated in ext-legacy.adoc). The pointer is not dereferenced.
#[test]
fn null_mask_means_all_harts() {
    let mut env = MockEnv::new(3);
    assert_eq!(env.legacy(eid::LEGACY_SEND_IPI, &[0]), 0);
    assert_eq!(env.legacy(eid::LEGACY_REMOTE_FENCE_I, &[0]), 0);
    assert_eq!(
        env.events,
        [Ev::Ipi(HartSet(0b111)), Ev::Fence(HartSet(0b111), Fence::I)]
    );
}

/// ext-legacy.adoc: memory faults on the supervisor's behalf should be
/// redirected to it; Rivet instead returns the negative code INVALID_ADDRESS
/// ("implementation specific negative error code") for an unreadable mask,
/// and sends nothing.
#[test]
fn unreadable_mask() {
    let mut env = MockEnv::new(2);
    for e in [0x04, 0x05, 0x06, 0x07] {
        assert_eq!(
            env.legacy(e, &[0x4000, 0, 0, 0]),
            error::INVALID_ADDRESS,
            "eid {e}"
        );
    }
    assert!(actions(&env).is_empty());
}

/// A mask naming a hart that does not exist: INVALID_PARAM (a negative,
/// implementation-specific code), nothing sent; an empty mask: 0, nothing sent.
#[test]
fn invalid_and_empty_masks() {
    let mut env = MockEnv::new(2);
    env.legacy_masks.push((0x100, 0b100));
    env.legacy_masks.push((0x200, 0));
    env.legacy_masks.push((0x300, 1 << 63));
    for e in [0x04, 0x05, 0x06, 0x07] {
        assert_eq!(env.legacy(e, &[0x100, 0, 0, 0]), error::INVALID_PARAM);
        assert_eq!(env.legacy(e, &[0x300, 0, 0, 0]), error::INVALID_PARAM);
        assert_eq!(env.legacy(e, &[0x200, 0, 0, 0]), 0);
    }
    assert!(actions(&env).is_empty());
}

/// § Remote FENCE.I (EID #0x05), § Remote SFENCE.VMA (EID #0x06), § Remote
/// SFENCE.VMA with ASID (EID #0x07): arguments in a1.. after the mask pointer.
#[test]
fn remote_fences() {
    let mut env = MockEnv::new(2);
    env.legacy_masks.push((0x80, 0b10));
    assert_eq!(env.legacy(0x05, &[0x80]), 0);
    assert_eq!(env.legacy(0x06, &[0x80, 0x4000, 0x1000]), 0);
    assert_eq!(env.legacy(0x07, &[0x80, 0, u64::MAX, 17]), 0);
    let set = HartSet(0b10);
    assert_eq!(
        actions(&env),
        [
            Ev::Fence(set, Fence::I),
            Ev::Fence(
                set,
                Fence::Vma {
                    start: 0x4000,
                    size: 0x1000
                }
            ),
            Ev::Fence(
                set,
                Fence::VmaAsid {
                    start: 0,
                    size: u64::MAX,
                    asid: 17
                }
            ),
        ]
    );
}

/// Legacy fences validate range and ASID like RFENCE (ext-rfence.adoc
/// tables): wrapping range → INVALID_ADDRESS, ASID > 16 bits → INVALID_PARAM;
/// nothing sent.
#[test]
fn remote_fence_bad_args() {
    let mut env = MockEnv::new(2);
    assert_eq!(
        env.legacy(0x06, &[0, u64::MAX - 1, 8]),
        error::INVALID_ADDRESS
    );
    assert_eq!(env.legacy(0x07, &[0, 0, 0, 0x1_0000]), error::INVALID_PARAM);
    assert!(env.events.is_empty());
}

/// § System Shutdown (EID #0x08): "doesn't return".
#[test]
fn shutdown() {
    let mut env = MockEnv::new(1);
    assert_eq!(
        env.call(eid::LEGACY_SHUTDOWN, 7, &[1, 2, 3]),
        Outcome::Reset {
            kind: ResetType::Shutdown,
            reason: ResetReason::None
        }
    );
}

/// ext-legacy.adoc, table_legacy_function_list: 0x09-0x0F are reserved, so
/// binary-encoding.adoc's unsupported-EID rule applies (full sbiret).
#[test]
fn reserved_legacy_eids() {
    let mut env = MockEnv::new(1);
    for e in 0x09..=0x0F {
        assert_eq!(
            env.call(e, 0, &[0]),
            Outcome::Ret(err(error::NOT_SUPPORTED))
        );
    }
}
