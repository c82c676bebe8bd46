//! SRST extension tests (ext-sys-reset.adoc).

use super::*;
use crate::{eid, error, ResetReason, ResetType};

fn reset(env: &mut MockEnv, ty: u64, reason: u64) -> Outcome {
    env.call(eid::SRST, 0, &[ty, reason])
}

/// ext-sys-reset.adoc § System reset (FID #0), table_srst_system_reset_types
/// and table_srst_system_reset_reasons: types 0/1/2 with reasons 0/1.
#[test]
fn valid_types_and_reasons() {
    let mut env = MockEnv::new(1);
    let kinds = [
        (0, ResetType::Shutdown),
        (1, ResetType::ColdReboot),
        (2, ResetType::WarmReboot),
    ];
    for (t, kind) in kinds {
        assert_eq!(
            reset(&mut env, t, 0),
            Outcome::Reset {
                kind,
                reason: ResetReason::None
            }
        );
        assert_eq!(
            reset(&mut env, t, 1),
            Outcome::Reset {
                kind,
                reason: ResetReason::SystemFailure
            }
        );
    }
}

/// ext-sys-reset.adoc: both parameters are `uint32_t`; binary-encoding.adoc:
/// only 32 bits are used, so upper register bits are ignored.
#[test]
fn upper_bits_ignored() {
    let mut env = MockEnv::new(1);
    assert_eq!(
        reset(&mut env, 0xFFFF_FFFF_0000_0001, 0x8000_0000_0000_0001),
        Outcome::Reset {
            kind: ResetType::ColdReboot,
            reason: ResetReason::SystemFailure
        }
    );
    assert_eq!(
        reset(&mut env, 1 << 32, 0xFFFF_FFFF_E000_0000),
        Outcome::Reset {
            kind: ResetType::Shutdown,
            reason: ResetReason::Other(0xE000_0000)
        }
    );
}

/// table_srst_system_reset_errors: SBI_ERR_INVALID_PARAM when reset_type "is
/// reserved or is platform-specific and unimplemented": reserved
/// 0x00000003-0xEFFFFFFF and vendor/platform 0xF0000000-0xFFFFFFFF (Rivet
/// implements none of the latter).
#[test]
fn reserved_and_vendor_types_invalid_param() {
    let mut env = MockEnv::new(1);
    for t in [3, 0x1000, 0xEFFF_FFFF, 0xF000_0000, 0xFFFF_FFFF] {
        assert_eq!(
            reset(&mut env, t, 0),
            Outcome::Ret(err(error::INVALID_PARAM)),
            "{t:#x}"
        );
    }
}

/// table_srst_system_reset_reasons: 0x00000002-0xDFFFFFFF reserved →
/// INVALID_PARAM (table_srst_system_reset_errors), even with a valid type.
#[test]
fn reserved_reasons_invalid_param() {
    let mut env = MockEnv::new(1);
    for r in [2, 0x1234, 0xDFFF_FFFF] {
        assert_eq!(
            reset(&mut env, 0, r),
            Outcome::Ret(err(error::INVALID_PARAM)),
            "{r:#x}"
        );
    }
    // Bad type and bad reason together.
    assert_eq!(
        reset(&mut env, 3, 2),
        Outcome::Ret(err(error::INVALID_PARAM))
    );
    // Bad type with good reason.
    assert_eq!(
        reset(&mut env, 3, 0),
        Outcome::Ret(err(error::INVALID_PARAM))
    );
}

/// table_srst_system_reset_reasons: 0xE0000000-0xEFFFFFFF SBI-implementation
/// specific and 0xF0000000-0xFFFFFFFF vendor/platform specific reasons are
/// accepted and passed through raw.
#[test]
fn implementation_and_vendor_reasons_passed_through() {
    let mut env = MockEnv::new(1);
    for r in [0xE000_0000u32, 0xEFFF_FFFF, 0xF000_0000, 0xFFFF_FFFF] {
        assert_eq!(
            reset(&mut env, 2, u64::from(r)),
            Outcome::Reset {
                kind: ResetType::WarmReboot,
                reason: ResetReason::Other(r)
            }
        );
    }
}

/// binary-encoding.adoc: unsupported FID → NOT_SUPPORTED, no reset.
#[test]
fn unknown_srst_fid() {
    let mut env = MockEnv::new(1);
    for fid in [1, u64::MAX] {
        assert_eq!(env.ret(eid::SRST, fid, &[0, 0]), err(error::NOT_SUPPORTED));
    }
}
