//! Hart State Management extension, EID `0x48534D` "HSM" (ext-hsm.adoc).
//!
//! * `hart_start(hartid, start_addr, opaque)`, checks in order:
//!   `SBI_ERR_INVALID_PARAM` if `hartid` is not a vCPU; `SBI_ERR_INVALID_ADDRESS`
//!   unless `[start_addr, start_addr + 4)` is inside guest RAM (the only
//!   executable guest-physical memory); then by the target's state:
//!   `STOPPED` → start it, `SBI_SUCCESS`; `STOP_PENDING` → `SBI_ERR_FAILED`
//!   (the hart is on its way to `STOPPED`, so it is neither "already started"
//!   nor startable yet: the caller may retry); every other state
//!   (`STARTED`, `START_PENDING`, `SUSPENDED`, `SUSPEND_PENDING`,
//!   `RESUME_PENDING`) → `SBI_ERR_ALREADY_AVAILABLE` ("already started",
//!   or a start is already under way).
//! * `hart_stop()` → [`Outcome::HartStop`](crate::Outcome::HartStop).
//! * `hart_get_status(hartid)` → the state ID, or `SBI_ERR_INVALID_PARAM`.
//! * `hart_suspend(suspend_type, resume_addr, opaque)`: `suspend_type` is a
//!   `uint32_t`, so only the low 32 bits of `a0` count (binary-encoding.adoc:
//!   32-bit data uses only 32 bits). `0x0000_0000` → retentive suspend;
//!   `0x8000_0000` → non-retentive suspend, `SBI_ERR_INVALID_ADDRESS` if
//!   `resume_addr` is not inside RAM. Every other value is either reserved or
//!   platform specific, and Rivet implements no platform-specific suspend
//!   type, so per table_hsm_hart_suspend_errors ("`suspend_type` is reserved
//!   or is platform-specific and unimplemented") they get
//!   `SBI_ERR_INVALID_PARAM`. (`SBI_ERR_NOT_SUPPORTED` is for implemented
//!   types with missing dependencies, which Rivet has none of.)

use crate::{error, fid::hsm as f, valid_hart, HartState, Outcome, SbiCall, SbiEnv, SbiRet};
use rivet_guest_mem::GuestMemory;

/// `suspend_type` for the default retentive suspend.
pub(crate) const SUSPEND_DEFAULT_RETENTIVE: u32 = 0x0000_0000;
/// `suspend_type` for the default non-retentive suspend.
pub(crate) const SUSPEND_DEFAULT_NON_RETENTIVE: u32 = 0x8000_0000;

/// Bytes that must be inside RAM at a start/resume address: one 32-bit
/// instruction parcel.
const EXEC_CHECK_LEN: u64 = 4;

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> Outcome {
    match call.fid {
        f::HART_START => Outcome::Ret(hart_start(env, call.a0(), call.a1(), call.a2())),
        f::HART_STOP => Outcome::HartStop,
        f::HART_GET_STATUS => Outcome::Ret(match valid_hart(env, call.a0()) {
            Some(hart) => SbiRet::success(env.hart_state(hart).id()),
            None => SbiRet::err(error::INVALID_PARAM),
        }),
        f::HART_SUSPEND => hart_suspend(env, call.a0(), call.a1(), call.a2()),
        _ => Outcome::Ret(SbiRet::not_supported()),
    }
}

/// True if the guest may begin executing at `addr` (inside RAM).
fn exec_addr_ok<E: SbiEnv>(env: &mut E, addr: u64) -> bool {
    env.mem().check_range(addr, EXEC_CHECK_LEN).is_ok()
}

fn hart_start<E: SbiEnv>(env: &mut E, hartid: u64, start_addr: u64, opaque: u64) -> SbiRet {
    let Some(hart) = valid_hart(env, hartid) else {
        return SbiRet::err(error::INVALID_PARAM);
    };
    if !exec_addr_ok(env, start_addr) {
        return SbiRet::err(error::INVALID_ADDRESS);
    }
    match env.hart_state(hart) {
        HartState::Stopped => {
            env.hart_start(hart, start_addr, opaque);
            SbiRet::success(0)
        }
        HartState::StopPending => SbiRet::err(error::FAILED),
        HartState::Started
        | HartState::StartPending
        | HartState::Suspended
        | HartState::SuspendPending
        | HartState::ResumePending => SbiRet::err(error::ALREADY_AVAILABLE),
    }
}

fn hart_suspend<E: SbiEnv>(env: &mut E, a0: u64, resume_addr: u64, opaque: u64) -> Outcome {
    // uint32_t: the upper 32 bits of a0 are ignored (deliberate truncation).
    let suspend_type = (a0 & 0xFFFF_FFFF) as u32;
    match suspend_type {
        SUSPEND_DEFAULT_RETENTIVE => Outcome::Suspend {
            retentive: true,
            resume_addr,
            opaque,
        },
        SUSPEND_DEFAULT_NON_RETENTIVE => {
            if exec_addr_ok(env, resume_addr) {
                Outcome::Suspend {
                    retentive: false,
                    resume_addr,
                    opaque,
                }
            } else {
                Outcome::Ret(SbiRet::err(error::INVALID_ADDRESS))
            }
        }
        // 0x0000_0001..=0x0FFF_FFFF, 0x8000_0001..=0x8FFF_FFFF: reserved.
        // 0x1000_0000..=0x7FFF_FFFF, 0x9000_0000..=0xFFFF_FFFF: platform
        // specific, none implemented.
        _ => Outcome::Ret(SbiRet::err(error::INVALID_PARAM)),
    }
}
