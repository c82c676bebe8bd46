//! Debug Console extension, EID `0x4442434E` "DBCN" (ext-debug-console.adoc).
//!
//! * `console_write(num_bytes, base_addr_lo, base_addr_hi)` and
//!   `console_read(...)`: the buffer's physical address is the 2×XLEN value
//!   `base_addr_hi:base_addr_lo`. On RV64 that is `lo | hi << 64`, so any
//!   `base_addr_hi != 0` names memory above `2^64`, which cannot be guest RAM:
//!   `SBI_ERR_INVALID_PARAM`. Otherwise the whole range
//!   `[lo, lo + num_bytes)` must lie inside guest RAM (no wrap-around), else
//!   `SBI_ERR_INVALID_PARAM` (the DBCN error tables use INVALID_PARAM for a
//!   buffer that breaks the shared-memory rules). A zero-length buffer
//!   contains no address, so it is valid anywhere (with `hi == 0`) and
//!   transfers nothing.
//! * Both calls are non-blocking and may transfer fewer bytes than asked
//!   (the spec allows partial writes; a read returns what is available). Rivet
//!   moves at most [`DBCN_MAX_BYTES_PER_CALL`] bytes per call, through a
//!   [`DBCN_CHUNK`]-byte stack buffer, and returns the count in
//!   `sbiret.value`.
//! * `console_write_byte(byte)`: the low 8 bits of `a0`; returns 0.
//!
//! `SBI_ERR_DENIED` is never returned: every guest may use its console.

use crate::{error, fid::dbcn as f, SbiCall, SbiEnv, SbiRet};
use rivet_guest_mem::GuestMemory;

/// Most bytes one `console_write` / `console_read` call transfers.
pub const DBCN_MAX_BYTES_PER_CALL: u64 = 4096;

/// Size of the stack bounce buffer; also the most bytes passed to one
/// [`SbiEnv::console_write`] / [`SbiEnv::console_read`] call.
pub const DBCN_CHUNK: usize = 256;

pub(crate) fn handle<E: SbiEnv>(env: &mut E, call: &SbiCall) -> SbiRet {
    match call.fid {
        f::CONSOLE_WRITE => match buffer(env, call.a0(), call.a1(), call.a2()) {
            Ok(len) => write(env, call.a1(), len),
            Err(code) => SbiRet::err(code),
        },
        f::CONSOLE_READ => match buffer(env, call.a0(), call.a1(), call.a2()) {
            Ok(len) => read(env, call.a1(), len),
            Err(code) => SbiRet::err(code),
        },
        f::CONSOLE_WRITE_BYTE => {
            // uint8_t: deliberate truncation to the low 8 bits.
            let byte = (call.a0() & 0xFF) as u8;
            env.console_write(&[byte]);
            SbiRet::success(0)
        }
        _ => SbiRet::not_supported(),
    }
}

/// Validates the buffer; returns how many bytes this call will transfer.
fn buffer<E: SbiEnv>(env: &mut E, num_bytes: u64, lo: u64, hi: u64) -> Result<u64, i64> {
    if hi != 0 {
        return Err(error::INVALID_PARAM);
    }
    if num_bytes == 0 {
        return Ok(0);
    }
    env.mem()
        .check_range(lo, num_bytes)
        .map_err(|_| error::INVALID_PARAM)?;
    Ok(num_bytes.min(DBCN_MAX_BYTES_PER_CALL))
}

/// Next chunk length: `min(remaining, DBCN_CHUNK)`.
fn chunk_len(remaining: u64) -> usize {
    usize::try_from(remaining).map_or(DBCN_CHUNK, |r| r.min(DBCN_CHUNK))
}

fn write<E: SbiEnv>(env: &mut E, base: u64, len: u64) -> SbiRet {
    let mut chunk = [0u8; DBCN_CHUNK];
    let mut done: u64 = 0;
    while done < len {
        let n = chunk_len(len.saturating_sub(done));
        let (Some(gpa), Some(buf)) = (base.checked_add(done), chunk.get_mut(..n)) else {
            return SbiRet {
                error: error::FAILED,
                value: done,
            };
        };
        if env.mem().read(gpa, buf).is_err() {
            // Cannot happen after `buffer()`; report what was written.
            return SbiRet {
                error: error::FAILED,
                value: done,
            };
        }
        env.console_write(buf);
        done = done.saturating_add(n as u64);
    }
    SbiRet::success(done)
}

fn read<E: SbiEnv>(env: &mut E, base: u64, len: u64) -> SbiRet {
    let mut chunk = [0u8; DBCN_CHUNK];
    let mut done: u64 = 0;
    while done < len {
        let want = chunk_len(len.saturating_sub(done));
        let Some(buf) = chunk.get_mut(..want) else {
            return SbiRet {
                error: error::FAILED,
                value: done,
            };
        };
        let got = env.console_read(buf).min(want);
        if got == 0 {
            break;
        }
        let (Some(gpa), Some(data)) = (base.checked_add(done), chunk.get(..got)) else {
            return SbiRet {
                error: error::FAILED,
                value: done,
            };
        };
        if env.mem().write(gpa, data).is_err() {
            // Cannot happen after `buffer()`.
            return SbiRet {
                error: error::FAILED,
                value: done,
            };
        }
        done = done.saturating_add(got as u64);
        if got < want {
            break;
        }
    }
    SbiRet::success(done)
}
