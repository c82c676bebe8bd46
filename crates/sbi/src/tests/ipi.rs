//! IPI extension tests (ext-ipi.adoc, binary-encoding.adoc § Hart list
//! parameter).

use super::*;
use crate::{eid, error};

fn send(env: &mut MockEnv, mask: u64, base: u64) -> SbiRet {
    env.ret(eid::IPI, 0, &[mask, base])
}

/// ext-ipi.adoc § Send IPI (FID #0), table_ipi_send_errors: SBI_SUCCESS
/// "IPI was sent to all the targeted harts".
#[test]
fn send_to_listed_harts() {
    let mut env = MockEnv::new(4);
    assert_eq!(send(&mut env, 0b1010, 0), ok(0));
    assert_eq!(send(&mut env, 0b1, 2), ok(0));
    assert_eq!(
        env.events,
        [Ev::Ipi(HartSet(0b1010)), Ev::Ipi(HartSet(0b100))]
    );
}

/// binary-encoding.adoc § Hart list parameter: `hart_mask_base == -1` means
/// "hart_mask shall be ignored and all available harts must be considered".
#[test]
fn base_minus_one_targets_all() {
    let mut env = MockEnv::new(4);
    assert_eq!(send(&mut env, 0, u64::MAX), ok(0));
    assert_eq!(send(&mut env, 0xFFFF_0000_DEAD_BEEF, u64::MAX), ok(0));
    assert_eq!(env.events, [Ev::Ipi(HartSet(0xF)), Ev::Ipi(HartSet(0xF))]);
}

/// ext-ipi.adoc, table_ipi_send_errors: SBI_ERR_INVALID_PARAM when "at least
/// one hartid constructed from hart_mask_base and hart_mask is not valid";
/// Rivet then sends to nobody (not even the valid ones).
#[test]
fn invalid_hart_rejects_whole_call() {
    let mut env = MockEnv::new(4);
    assert_eq!(send(&mut env, 0b1_0001, 0), err(error::INVALID_PARAM));
    assert_eq!(send(&mut env, 0b11, 3), err(error::INVALID_PARAM));
    assert_eq!(send(&mut env, 1, 64), err(error::INVALID_PARAM));
    assert!(env.events.is_empty());
}

/// binary-encoding.adoc, table_hart_mask_errors: `base + index` overflowing
/// 2^64 constructs no valid hartid → INVALID_PARAM, nothing sent. A base of
/// `-2` is not the "all harts" value.
#[test]
fn overflowing_ids_are_invalid() {
    let mut env = MockEnv::new(64);
    assert_eq!(
        send(&mut env, 1 << 63, u64::MAX - 5),
        err(error::INVALID_PARAM)
    );
    assert_eq!(
        send(&mut env, 1 << 63 | 1, 1 << 63),
        err(error::INVALID_PARAM)
    );
    assert_eq!(send(&mut env, 1, u64::MAX - 1), err(error::INVALID_PARAM));
    assert_eq!(send(&mut env, 2, u64::MAX - 1), err(error::INVALID_PARAM));
    assert!(env.events.is_empty());
}

/// binary-encoding.adoc § Hart list parameter, NOTE: the base "does not need
/// to be an enabled or supervisor available hartid unless the zeroth bit of
/// hart_mask is set". An empty mask names no hart: success, nothing sent.
#[test]
fn empty_mask_succeeds_and_sends_nothing() {
    let mut env = MockEnv::new(4);
    assert_eq!(send(&mut env, 0, 0), ok(0));
    assert_eq!(send(&mut env, 0, 4), ok(0));
    assert_eq!(send(&mut env, 0, u64::MAX - 1), ok(0));
    assert!(env.events.is_empty());
    // Bit 0 clear: only the named target (base 2 + bit 1 = hart 3) matters.
    assert_eq!(send(&mut env, 0b10, 2), ok(0));
    assert_eq!(env.events, [Ev::Ipi(HartSet(1 << 3))]);
}

/// ext-ipi.adoc table_ipi_send_errors defines validity as "enabled by the
/// platform / available to the supervisor", not as the HSM state: stopped
/// and suspended harts are valid targets (the environment latches VSSIP),
/// and so is the caller itself.
#[test]
fn non_started_and_self_targets_are_valid() {
    let mut env = MockEnv::new(3);
    env.states[2] = HartState::Suspended;
    assert_eq!(send(&mut env, 0b111, 0), ok(0));
    assert_eq!(env.events, [Ev::Ipi(HartSet(0b111))]);
}

/// binary-encoding.adoc § Hart list parameter: at most XLEN harts per call;
/// Rivet VMs have at most 64 vCPUs, and a larger reported count is capped.
#[test]
fn sixty_four_harts_and_cap() {
    let mut env = MockEnv::new(64);
    assert_eq!(send(&mut env, u64::MAX, 0), ok(0));
    assert_eq!(send(&mut env, 1, 63), ok(0));
    let mut big = MockEnv::new(100);
    assert_eq!(send(&mut big, 1, 64), err(error::INVALID_PARAM));
    assert_eq!(send(&mut big, 0, u64::MAX), ok(0));
    assert_eq!(
        env.events,
        [Ev::Ipi(HartSet(u64::MAX)), Ev::Ipi(HartSet(1 << 63))]
    );
    assert_eq!(big.events, [Ev::Ipi(HartSet(u64::MAX))]);
}

/// A VM reporting zero vCPUs: "all harts" is empty, any listed hart invalid.
#[test]
fn zero_vcpus() {
    let mut env = MockEnv::new(0);
    assert_eq!(send(&mut env, 1, u64::MAX), ok(0));
    assert_eq!(send(&mut env, 1, 0), err(error::INVALID_PARAM));
    assert!(env.events.is_empty());
}

/// binary-encoding.adoc: unsupported FID → SBI_ERR_NOT_SUPPORTED (the IPI
/// function list has only FID 0); nothing is sent.
#[test]
fn unknown_ipi_fid() {
    let mut env = MockEnv::new(2);
    assert_eq!(env.ret(eid::IPI, 1, &[1, 0]), err(error::NOT_SUPPORTED));
    assert_eq!(
        env.ret(eid::IPI, u64::MAX, &[1, 0]),
        err(error::NOT_SUPPORTED)
    );
    assert!(env.events.is_empty());
}
