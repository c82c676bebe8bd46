//! Legacy (v0.1) extensions, EIDs `0x00..=0x08` (ext-legacy.adoc).
//!
//! `a6` is ignored and only `a0` is written back
//! ([`Outcome::Legacy`](crate::Outcome::Legacy)); the error codes are
//! "implementation specific negative" values, for which Rivet reuses the
//! standard SBI codes.
//!
//! * `0x00 set_timer(stime_value)` → like TIME, returns 0.
//! * `0x01 console_putchar(ch)` → writes the low byte, returns 0.
//! * `0x02 console_getchar()` → the byte (0..=255) or -1 if none is pending.
//! * `0x03 clear_ipi()` → clears the caller's pending software interrupt via
//!   [`SbiEnv::clear_ipi`](crate::SbiEnv::clear_ipi); returns 0 if none was
//!   pending, 1 if one was (the spec's "implementation specific positive
//!   value"). With the trait's default `clear_ipi` (no override) this is
//!   always 0 and nothing is cleared.
//! * `0x04 send_ipi(hart_mask)`, `0x05 remote_fence_i(hart_mask)`,
//!   `0x06 remote_sfence_vma(hart_mask, start, size)`,
//!   `0x07 remote_sfence_vma_asid(hart_mask, start, size, asid)`:
//!   `hart_mask` is a guest *virtual* address of the bit vector. Rivet has at
//!   most 64 harts, so the vector is one `unsigned long` (bit `i` = hart `i`).
//!   A null pointer means "all harts" (the v0.1 convention that OpenSBI, KVM
//!   and BBL follow and Linux relies on; the v3.0 text does not mention it).
//!   An unreadable mask returns `SBI_ERR_INVALID_ADDRESS` (-5); the spec's
//!   preferred behaviour, redirecting the page/access fault to the guest with
//!   `sepc` at the `ECALL`, needs fault details this interface does not carry.
//!   A mask naming a hart that is not a vCPU returns `SBI_ERR_INVALID_PARAM`
//!   (-3) and nothing is sent. Fence ranges and ASIDs are checked as in
//!   RFENCE (-5 / -3). An empty mask succeeds without sending anything.
//! * `0x08 shutdown()` → [`Outcome::Reset`](crate::Outcome::Reset) with
//!   `Shutdown` / `ResetReason::None`.

use crate::{
    eid, error, hart_limit, ipi, rfence, Fence, HartSet, Outcome, ResetReason, ResetType, SbiCall,
    SbiEnv, SbiRet,
};

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> Outcome {
    match call.eid {
        eid::LEGACY_SET_TIMER => {
            env.set_timer(call.a0());
            Outcome::Legacy(0)
        }
        eid::LEGACY_CONSOLE_PUTCHAR => {
            // `int ch`: deliberate truncation to the low byte.
            env.console_write(&[(call.a0() & 0xFF) as u8]);
            Outcome::Legacy(0)
        }
        eid::LEGACY_CONSOLE_GETCHAR => {
            let mut buf = [0u8; 1];
            let got = env.console_read(&mut buf);
            let [byte] = buf;
            Outcome::Legacy(if got >= 1 { i64::from(byte) } else { -1 })
        }
        eid::LEGACY_CLEAR_IPI => Outcome::Legacy(i64::from(env.clear_ipi())),
        eid::LEGACY_SEND_IPI => Outcome::Legacy(match targets(env, call.a0()) {
            Ok(set) => {
                ipi::send(env, set);
                0
            }
            Err(code) => code,
        }),
        eid::LEGACY_REMOTE_FENCE_I => fence(env, call.a0(), Fence::I),
        eid::LEGACY_REMOTE_SFENCE_VMA => fence(
            env,
            call.a0(),
            Fence::Vma {
                start: call.a1(),
                size: call.a2(),
            },
        ),
        eid::LEGACY_REMOTE_SFENCE_VMA_ASID => fence(
            env,
            call.a0(),
            Fence::VmaAsid {
                start: call.a1(),
                size: call.a2(),
                asid: call.a3(),
            },
        ),
        eid::LEGACY_SHUTDOWN => Outcome::Reset {
            kind: ResetType::Shutdown,
            reason: ResetReason::None,
        },
        // Not reachable through `dispatch`, but stay total.
        _ => Outcome::Ret(SbiRet::not_supported()),
    }
}

/// Reads and validates a legacy hart mask pointer.
fn targets<E: SbiEnv>(env: &mut E, mask_va: u64) -> Result<HartSet, i64> {
    let limit = hart_limit(env);
    if mask_va == 0 {
        return Ok(HartSet::all(limit));
    }
    let mask = env
        .read_legacy_hart_mask(mask_va)
        .ok_or(error::INVALID_ADDRESS)?;
    HartSet::from_mask(mask, 0, limit).map_err(|_| error::INVALID_PARAM)
}

fn fence<E: SbiEnv>(env: &mut E, mask_va: u64, fence: Fence) -> Outcome {
    let set = match targets(env, mask_va) {
        Ok(set) => set,
        Err(code) => return Outcome::Legacy(code),
    };
    if let Err(code) = rfence::validate(&fence) {
        return Outcome::Legacy(code);
    }
    rfence::send(env, set, fence);
    Outcome::Legacy(0)
}
