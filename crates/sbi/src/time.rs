//! Timer extension, EID `0x54494D45` "TIME" (ext-time.adoc).
//!
//! `sbi_set_timer(stime_value)` always returns `SBI_SUCCESS`; the
//! environment programs the vCPU timer and clears the pending timer
//! interrupt. `stime_value` is absolute; `u64::MAX` means "never".

use crate::{fid::time as f, SbiCall, SbiEnv, SbiRet};

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> SbiRet {
    match call.fid {
        f::SET_TIMER => {
            env.set_timer(call.a0());
            SbiRet::success(0)
        }
        _ => SbiRet::not_supported(),
    }
}
