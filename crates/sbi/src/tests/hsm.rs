//! HSM extension tests (ext-hsm.adoc).

use super::*;
use crate::{eid, error, fid::hsm as f};

const ALL_STATES: [HartState; 7] = [
    HartState::Started,
    HartState::Stopped,
    HartState::StartPending,
    HartState::StopPending,
    HartState::Suspended,
    HartState::SuspendPending,
    HartState::ResumePending,
];

fn start(env: &mut MockEnv, hart: u64, addr: u64, opaque: u64) -> SbiRet {
    env.ret(eid::HSM, f::HART_START, &[hart, addr, opaque])
}

/// ext-hsm.adoc, table_hsm_states: the state IDs.
#[test]
fn state_ids() {
    let ids: std::vec::Vec<u64> = ALL_STATES.iter().map(|s| s.id()).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6]);
}

/// ext-hsm.adoc § Hart start (FID #0), table_hsm_hart_start_errors:
/// SBI_SUCCESS "Hart was previously in stopped state. It will start executing
/// from start_addr"; `opaque` goes to a1 (table_hsm_hart_start_regs).
#[test]
fn start_stopped_hart() {
    let mut env = MockEnv::new(4);
    assert_eq!(start(&mut env, 2, RAM_BASE + 0x200, 0xC0FFEE), ok(0));
    assert_eq!(
        env.events,
        [Ev::HartStart {
            hart: 2,
            addr: RAM_BASE + 0x200,
            opaque: 0xC0FFEE
        }]
    );
    assert_eq!(env.states[2], HartState::StartPending);
    // The first and the last 4-byte slot of RAM are fine.
    assert_eq!(start(&mut env, 1, RAM_BASE, u64::MAX), ok(0));
    assert_eq!(start(&mut env, 3, RAM_END - 4, 0), ok(0));
}

/// table_hsm_hart_start_errors: SBI_ERR_INVALID_PARAM "hartid is not a valid
/// hartid". Nothing is started.
#[test]
fn start_invalid_hartid() {
    let mut env = MockEnv::new(4);
    for hart in [4, 63, 64, 1 << 32, u64::MAX] {
        assert_eq!(
            start(&mut env, hart, RAM_BASE, 0),
            err(error::INVALID_PARAM),
            "{hart}"
        );
    }
    assert!(env.events.is_empty());
}

/// table_hsm_hart_start_errors: SBI_ERR_ALREADY_AVAILABLE "The given hartid is
/// already started" — including the caller itself, a hart whose start is
/// already pending, and harts that are suspended or on their way in or out.
#[test]
fn start_non_stopped_hart_already_available() {
    let mut env = MockEnv::new(2);
    assert_eq!(
        start(&mut env, 0, RAM_BASE, 0),
        err(error::ALREADY_AVAILABLE)
    );
    for s in [
        HartState::Started,
        HartState::StartPending,
        HartState::Suspended,
        HartState::SuspendPending,
        HartState::ResumePending,
    ] {
        env.states[1] = s;
        assert_eq!(
            start(&mut env, 1, RAM_BASE, 0),
            err(error::ALREADY_AVAILABLE),
            "{s:?}"
        );
    }
    assert!(env.events.is_empty());
}

/// table_hsm_hart_start_errors: SBI_ERR_FAILED "for unspecified or unknown
/// other reasons" — Rivet's answer for STOP_PENDING, a hart that is neither
/// started nor yet stopped (the caller may retry).
#[test]
fn start_stop_pending_hart_fails() {
    let mut env = MockEnv::new(2);
    env.states[1] = HartState::StopPending;
    assert_eq!(start(&mut env, 1, RAM_BASE, 0), err(error::FAILED));
    assert!(env.events.is_empty());
}

/// table_hsm_hart_start_errors: SBI_ERR_INVALID_ADDRESS "start_addr is not
/// valid": not a valid physical address / not executable through G-stage,
/// i.e. outside guest RAM (incl. straddling its end or wrapping 2^64).
#[test]
fn start_invalid_address() {
    let mut env = MockEnv::new(2);
    for addr in [
        0,
        RAM_BASE - 4,
        RAM_BASE - 1,
        RAM_END - 3,
        RAM_END,
        u64::MAX - 1,
        u64::MAX,
    ] {
        assert_eq!(
            start(&mut env, 1, addr, 0),
            err(error::INVALID_ADDRESS),
            "{addr:#x}"
        );
    }
    assert!(env.events.is_empty());
    assert_eq!(env.states[1], HartState::Stopped);
}

/// Check order (documented in hsm.rs): hartid, then address, then state.
#[test]
fn start_error_precedence() {
    let mut env = MockEnv::new(2);
    assert_eq!(start(&mut env, 9, 0, 0), err(error::INVALID_PARAM));
    assert_eq!(start(&mut env, 0, 0, 0), err(error::INVALID_ADDRESS));
}

/// ext-hsm.adoc § Hart stop (FID #1): "not expected to return"; arguments
/// are ignored.
#[test]
fn hart_stop() {
    let mut env = MockEnv::new(2);
    assert_eq!(env.call(eid::HSM, f::HART_STOP, &[]), Outcome::HartStop);
    assert_eq!(
        env.call(eid::HSM, f::HART_STOP, &[u64::MAX; 6]),
        Outcome::HartStop
    );
    assert!(env.events.is_empty());
}

/// ext-hsm.adoc § Hart get status (FID #2): the state ID in `sbiret.value`;
/// table_hsm_hart_get_status_errors: INVALID_PARAM for an invalid hartid.
#[test]
fn get_status() {
    let mut env = MockEnv::new(2);
    for s in ALL_STATES {
        env.states[1] = s;
        assert_eq!(env.ret(eid::HSM, f::HART_GET_STATUS, &[1]), ok(s as u64));
    }
    assert_eq!(env.ret(eid::HSM, f::HART_GET_STATUS, &[0]), ok(0));
    for hart in [2, 64, u64::MAX] {
        assert_eq!(
            env.ret(eid::HSM, f::HART_GET_STATUS, &[hart]),
            err(error::INVALID_PARAM)
        );
    }
}

fn suspend(env: &mut MockEnv, ty: u64, addr: u64, opaque: u64) -> Outcome {
    env.call(eid::HSM, f::HART_SUSPEND, &[ty, addr, opaque])
}

/// ext-hsm.adoc § Hart suspend (FID #3), table_hsm_hart_suspend_types:
/// 0x00000000 is the default retentive suspend; "The resume_addr parameter is
/// unused during retentive suspend", so any value is accepted.
#[test]
fn suspend_default_retentive() {
    let mut env = MockEnv::new(1);
    assert_eq!(
        suspend(&mut env, 0, 0xDEAD, 7),
        Outcome::Suspend {
            retentive: true,
            resume_addr: 0xDEAD,
            opaque: 7
        }
    );
}

/// ext-hsm.adoc § Hart suspend: `suspend_type` is `uint32_t`, and
/// binary-encoding.adoc: for 32-bit data only 32 bits are used — upper bits
/// of a0 are ignored.
#[test]
fn suspend_type_upper_bits_ignored() {
    let mut env = MockEnv::new(1);
    for ty in [0xFFFF_FFFF_0000_0000, 1 << 32, 0x1234_5678_0000_0000] {
        assert_eq!(
            suspend(&mut env, ty, 0, 0),
            Outcome::Suspend {
                retentive: true,
                resume_addr: 0,
                opaque: 0
            }
        );
    }
    assert_eq!(
        suspend(&mut env, 0xFFFF_FFFF_8000_0000, RAM_BASE, 1),
        Outcome::Suspend {
            retentive: false,
            resume_addr: RAM_BASE,
            opaque: 1
        }
    );
}

/// table_hsm_hart_suspend_types: 0x80000000 default non-retentive; resumes at
/// `resume_addr` with a1 = opaque (table_hsm_hart_resume_regs).
#[test]
fn suspend_default_non_retentive() {
    let mut env = MockEnv::new(1);
    assert_eq!(
        suspend(&mut env, 0x8000_0000, RAM_BASE + 0x40, 0xABCD),
        Outcome::Suspend {
            retentive: false,
            resume_addr: RAM_BASE + 0x40,
            opaque: 0xABCD
        }
    );
}

/// table_hsm_hart_suspend_errors: SBI_ERR_INVALID_ADDRESS "resume_addr is not
/// valid" (non-retentive only).
#[test]
fn suspend_non_retentive_bad_address() {
    let mut env = MockEnv::new(1);
    for addr in [0, RAM_BASE - 1, RAM_END - 2, RAM_END, u64::MAX] {
        assert_eq!(
            suspend(&mut env, 0x8000_0000, addr, 0),
            Outcome::Ret(err(error::INVALID_ADDRESS)),
            "{addr:#x}"
        );
    }
}

/// table_hsm_hart_suspend_errors: SBI_ERR_INVALID_PARAM "suspend_type is
/// reserved or is platform-specific and unimplemented". Reserved:
/// 0x00000001-0x0FFFFFFF, 0x80000001-0x8FFFFFFF. Platform specific (Rivet
/// implements none): 0x10000000-0x7FFFFFFF, 0x90000000-0xFFFFFFFF.
#[test]
fn suspend_reserved_and_platform_types_invalid_param() {
    let mut env = MockEnv::new(1);
    let types = [
        0x0000_0001,
        0x0FFF_FFFF,
        0x8000_0001,
        0x8FFF_FFFF,
        0x1000_0000,
        0x7FFF_FFFF,
        0x9000_0000,
        0xFFFF_FFFF,
        0xFFFF_FFFF_FFFF_FFFF,
    ];
    for ty in types {
        assert_eq!(
            suspend(&mut env, ty, RAM_BASE, 0),
            Outcome::Ret(err(error::INVALID_PARAM)),
            "{ty:#x}"
        );
    }
}

/// binary-encoding.adoc: unsupported FID → NOT_SUPPORTED.
#[test]
fn unknown_hsm_fid() {
    let mut env = MockEnv::new(2);
    for fid in [4, 5, u64::MAX] {
        assert_eq!(
            env.ret(eid::HSM, fid, &[1, RAM_BASE, 0]),
            err(error::NOT_SUPPORTED)
        );
    }
    assert!(env.events.is_empty());
}
