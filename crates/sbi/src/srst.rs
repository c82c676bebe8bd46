//! System Reset extension, EID `0x53525354` "SRST" (ext-sys-reset.adoc).
//!
//! `sbi_system_reset(uint32_t reset_type, uint32_t reset_reason)`: only the
//! low 32 bits of `a0`/`a1` count (binary-encoding.adoc: 32-bit data uses
//! only 32 bits).
//!
//! * Types: 0 shutdown, 1 cold reboot, 2 warm reboot → accepted.
//!   `0x3..=0xEFFF_FFFF` are reserved and `0xF000_0000..=0xFFFF_FFFF` are
//!   vendor/platform specific, none of which Rivet implements: both get
//!   `SBI_ERR_INVALID_PARAM` ("reserved or is platform-specific and
//!   unimplemented", table_srst_system_reset_errors). `SBI_ERR_NOT_SUPPORTED`
//!   would mean "implemented but missing dependencies", which never applies.
//! * Reasons: 0 none, 1 system failure → accepted; `0x2..=0xDFFF_FFFF`
//!   reserved → `SBI_ERR_INVALID_PARAM`; `0xE000_0000..=0xEFFF_FFFF` (SBI
//!   implementation specific) and `0xF000_0000..=0xFFFF_FFFF` (vendor or
//!   platform specific) → accepted as [`ResetReason::Other`]: a reason only
//!   informs, and Rivet's implementation of every such reason is to report
//!   it to the VMM unchanged.
//!
//! Both arguments are checked before anything happens.

use crate::{error, fid::srst as f, Outcome, ResetReason, ResetType, SbiCall, SbiRet};

pub(crate) fn handle(call: &SbiCall) -> Outcome {
    match call.fid {
        f::SYSTEM_RESET => {
            // uint32_t parameters: deliberate truncation to the low 32 bits.
            let reset_type = (call.a0() & 0xFFFF_FFFF) as u32;
            let reset_reason = (call.a1() & 0xFFFF_FFFF) as u32;
            match (decode_type(reset_type), decode_reason(reset_reason)) {
                (Some(kind), Some(reason)) => Outcome::Reset { kind, reason },
                _ => Outcome::Ret(SbiRet::err(error::INVALID_PARAM)),
            }
        }
        _ => Outcome::Ret(SbiRet::not_supported()),
    }
}

fn decode_type(t: u32) -> Option<ResetType> {
    match t {
        0 => Some(ResetType::Shutdown),
        1 => Some(ResetType::ColdReboot),
        2 => Some(ResetType::WarmReboot),
        _ => None,
    }
}

fn decode_reason(r: u32) -> Option<ResetReason> {
    match r {
        0 => Some(ResetReason::None),
        1 => Some(ResetReason::SystemFailure),
        0x0000_0002..=0xDFFF_FFFF => None,
        0xE000_0000..=0xFFFF_FFFF => Some(ResetReason::Other(r)),
    }
}
