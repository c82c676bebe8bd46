//! TIME extension tests (ext-time.adoc).

use super::*;
use crate::{eid, error};

/// ext-time.adoc § Set Timer (FID #0): "always returns SBI_SUCCESS"; the
/// absolute value goes to the environment, which also clears the pending
/// timer interrupt.
#[test]
fn set_timer_programs_and_succeeds() {
    let mut env = MockEnv::new(1);
    assert_eq!(env.ret(eid::TIME, 0, &[123_456]), ok(0));
    assert_eq!(env.events, [Ev::SetTimer(123_456)]);
}

/// ext-time.adoc § Set Timer (FID #0): `(uint64_t)-1` means "infinitely far
/// into the future"; it is passed through, not treated as an error.
#[test]
fn set_timer_infinity_and_zero() {
    let mut env = MockEnv::new(1);
    assert_eq!(env.ret(eid::TIME, 0, &[u64::MAX]), ok(0));
    assert_eq!(env.ret(eid::TIME, 0, &[0]), ok(0));
    assert_eq!(env.events, [Ev::SetTimer(u64::MAX), Ev::SetTimer(0)]);
}

/// ext-time.adoc, table_time_function_list has only FID 0;
/// binary-encoding.adoc: other FIDs are NOT_SUPPORTED, with no side effect.
#[test]
fn unknown_time_fid() {
    let mut env = MockEnv::new(1);
    for fid in [1, 2, u64::MAX] {
        assert_eq!(env.ret(eid::TIME, fid, &[5]), err(error::NOT_SUPPORTED));
    }
    assert!(env.events.is_empty());
}
