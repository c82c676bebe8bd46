//! Base extension, EID `0x10` (ext-base.adoc).
//!
//! Every function always succeeds; an unknown FID answers
//! `SBI_ERR_NOT_SUPPORTED` (binary-encoding.adoc).

use crate::{fid::base as f, probe, SbiCall, SbiEnv, SbiRet, IMPL_ID, IMPL_VERSION, SPEC_VERSION};

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> SbiRet {
    base_call(call, env.machine_ids())
}

/// A Base extension call answered from `machine_ids` alone (mvendorid,
/// marchid, mimpid): Base needs nothing else from the environment, so a
/// hypervisor can serve it without its VM state (an exit fast path).
pub fn base_call(call: &SbiCall, machine_ids: (u64, u64, u64)) -> SbiRet {
    match call.fid {
        f::GET_SPEC_VERSION => SbiRet::success(SPEC_VERSION),
        f::GET_IMPL_ID => SbiRet::success(IMPL_ID),
        f::GET_IMPL_VERSION => SbiRet::success(IMPL_VERSION),
        // `long extension_id` compared as the full register value.
        f::PROBE_EXTENSION => SbiRet::success(u64::from(probe(call.a0()))),
        f::GET_MVENDORID => SbiRet::success(machine_ids.0),
        f::GET_MARCHID => SbiRet::success(machine_ids.1),
        f::GET_MIMPID => SbiRet::success(machine_ids.2),
        _ => SbiRet::not_supported(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{eid, error};

    fn call(fid: u64, a0: u64) -> SbiCall {
        SbiCall {
            eid: eid::BASE,
            fid,
            args: [a0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn base_call_needs_only_the_machine_ids() {
        let ids = (0x489, 7, 9);
        assert_eq!(
            base_call(&call(f::GET_SPEC_VERSION, 0), ids).value,
            SPEC_VERSION
        );
        assert_eq!(base_call(&call(f::GET_MVENDORID, 0), ids).value, 0x489);
        assert_eq!(base_call(&call(f::GET_MARCHID, 0), ids).value, 7);
        assert_eq!(base_call(&call(f::GET_MIMPID, 0), ids).value, 9);
        assert_eq!(base_call(&call(f::PROBE_EXTENSION, eid::HSM), ids).value, 1);
        assert_eq!(
            base_call(&call(f::PROBE_EXTENSION, 0x5043_4E00), ids).value,
            0
        );
        let bad = base_call(&call(99, 0), ids);
        assert_eq!(bad.error, error::NOT_SUPPORTED);
    }
}
