//! IPI extension, EID `0x735049` "sPI" (ext-ipi.adoc).
//!
//! `sbi_send_ipi(hart_mask, hart_mask_base)`: the hart list is validated as
//! a whole first (`SBI_ERR_INVALID_PARAM`, nothing sent, on any invalid
//! hart); an empty list succeeds without calling the environment. Targets may
//! be in any HSM state; see [`SbiEnv::send_ipi`](crate::SbiEnv::send_ipi).

use crate::{error, fid::ipi as f, hart_limit, HartSet, SbiCall, SbiEnv, SbiRet};

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> SbiRet {
    match call.fid {
        f::SEND_IPI => match HartSet::from_mask(call.a0(), call.a1(), hart_limit(env)) {
            Ok(targets) => {
                send(env, targets);
                SbiRet::success(0)
            }
            Err(_) => SbiRet::err(error::INVALID_PARAM),
        },
        _ => SbiRet::not_supported(),
    }
}

/// Sends to a validated set, skipping the environment when it is empty.
pub(crate) fn send<E: SbiEnv>(env: &mut E, targets: HartSet) {
    if !targets.is_empty() {
        env.send_ipi(targets);
    }
}
