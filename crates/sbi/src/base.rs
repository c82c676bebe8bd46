//! Base extension, EID `0x10` (ext-base.adoc).
//!
//! Every function always succeeds; an unknown FID answers
//! `SBI_ERR_NOT_SUPPORTED` (binary-encoding.adoc).

use crate::{fid::base as f, probe, SbiCall, SbiEnv, SbiRet, IMPL_ID, IMPL_VERSION, SPEC_VERSION};

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> SbiRet {
    match call.fid {
        f::GET_SPEC_VERSION => SbiRet::success(SPEC_VERSION),
        f::GET_IMPL_ID => SbiRet::success(IMPL_ID),
        f::GET_IMPL_VERSION => SbiRet::success(IMPL_VERSION),
        // `long extension_id` compared as the full register value.
        f::PROBE_EXTENSION => SbiRet::success(u64::from(probe(call.a0()))),
        f::GET_MVENDORID => SbiRet::success(env.machine_ids().0),
        f::GET_MARCHID => SbiRet::success(env.machine_ids().1),
        f::GET_MIMPID => SbiRet::success(env.machine_ids().2),
        _ => SbiRet::not_supported(),
    }
}
