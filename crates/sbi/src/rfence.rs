//! RFENCE extension, EID `0x52464E43` "RFNC" (ext-rfence.adoc).
//!
//! Implemented: `remote_fence_i` (FID 0), `remote_sfence_vma` (FID 1),
//! `remote_sfence_vma_asid` (FID 2). The `remote_hfence_*` functions
//! (FIDs 3..=6) answer `SBI_ERR_NOT_SUPPORTED`, which their error tables
//! allow ("not implemented or one of the target hart doesn't support
//! hypervisor extension"): Rivet gives guests no H extension.
//!
//! Checks, in order:
//! 1. the hart list (binary-encoding.adoc): `SBI_ERR_INVALID_PARAM`;
//! 2. the ASID, for FID 2: it must fit RV64 `satp.ASID` (16 bits), else
//!    `SBI_ERR_INVALID_PARAM` ("Either `asid`, or at least one hartid ... is
//!    not valid");
//! 3. the range: unless it denotes the whole address space (`start == 0 &&
//!    size == 0`, or `size == 2^64 - 1`), `[start, start + size)` must not
//!    extend past `2^64`, else `SBI_ERR_INVALID_ADDRESS` ("`start_addr` or
//!    `size` is not valid"). A range ending exactly at `2^64` is fine (it is
//!    the top of the sign-extended upper half). `size == 0` with a non-zero
//!    start is an empty range and is accepted.
//!
//! Nothing is sent unless every check passes; an empty hart list succeeds
//! without calling the environment.

use crate::{error, fid::rfence as f, hart_limit, Fence, HartSet, SbiCall, SbiEnv, SbiRet};

/// Largest ASID on RV64 (`satp.ASID` is 16 bits wide).
pub(crate) const ASID_MAX: u64 = 0xFFFF;

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> SbiRet {
    let fence = match call.fid {
        f::REMOTE_FENCE_I => Fence::I,
        f::REMOTE_SFENCE_VMA => Fence::Vma {
            start: call.a2(),
            size: call.a3(),
        },
        f::REMOTE_SFENCE_VMA_ASID => Fence::VmaAsid {
            start: call.a2(),
            size: call.a3(),
            asid: call.a4(),
        },
        // FIDs 3..=6 (hfence.*) and anything else.
        _ => return SbiRet::not_supported(),
    };
    let targets = match HartSet::from_mask(call.a0(), call.a1(), hart_limit(env)) {
        Ok(t) => t,
        Err(_) => return SbiRet::err(error::INVALID_PARAM),
    };
    if let Err(code) = validate(&fence) {
        return SbiRet::err(code);
    }
    send(env, targets, fence);
    SbiRet::success(0)
}

/// True for the two "entire address space" encodings.
pub(crate) const fn range_is_full(start: u64, size: u64) -> bool {
    (start == 0 && size == 0) || size == u64::MAX
}

/// Checks the ASID and range of a fence; `Err` carries the SBI error code.
pub(crate) fn validate(fence: &Fence) -> Result<(), i64> {
    match *fence {
        Fence::I => Ok(()),
        Fence::Vma { start, size } => check_range(start, size),
        Fence::VmaAsid { start, size, asid } => {
            if asid > ASID_MAX {
                return Err(error::INVALID_PARAM);
            }
            check_range(start, size)
        }
    }
}

fn check_range(start: u64, size: u64) -> Result<(), i64> {
    if range_is_full(start, size) || size == 0 {
        return Ok(());
    }
    // Last byte is start + size - 1 (size >= 1 here); it must not wrap.
    match start.checked_add(size.wrapping_sub(1)) {
        Some(_) => Ok(()),
        None => Err(error::INVALID_ADDRESS),
    }
}

/// Sends a validated fence, skipping the environment for an empty set.
pub(crate) fn send<E: SbiEnv>(env: &mut E, targets: HartSet, fence: Fence) {
    if !targets.is_empty() {
        env.remote_fence(targets, fence);
    }
}
