//! Standard SBI error codes (binary-encoding.adoc, table_standard_sbi_errors).
//!
//! Returned in `sbiret.error` (`a0`). Values are exactly the spec's; names
//! drop the `SBI_ERR_` prefix.

/// `SBI_SUCCESS`: completed successfully.
pub const SUCCESS: i64 = 0;
/// `SBI_ERR_FAILED`: failed.
pub const FAILED: i64 = -1;
/// `SBI_ERR_NOT_SUPPORTED`: not supported (also: unknown EID or FID).
pub const NOT_SUPPORTED: i64 = -2;
/// `SBI_ERR_INVALID_PARAM`: invalid parameter(s).
pub const INVALID_PARAM: i64 = -3;
/// `SBI_ERR_DENIED`: denied or not allowed.
pub const DENIED: i64 = -4;
/// `SBI_ERR_INVALID_ADDRESS`: invalid address(es).
pub const INVALID_ADDRESS: i64 = -5;
/// `SBI_ERR_ALREADY_AVAILABLE`: already available.
pub const ALREADY_AVAILABLE: i64 = -6;
/// `SBI_ERR_ALREADY_STARTED`: already started.
pub const ALREADY_STARTED: i64 = -7;
/// `SBI_ERR_ALREADY_STOPPED`: already stopped.
pub const ALREADY_STOPPED: i64 = -8;
/// `SBI_ERR_NO_SHMEM`: shared memory not available.
pub const NO_SHMEM: i64 = -9;
/// `SBI_ERR_INVALID_STATE`: invalid state.
pub const INVALID_STATE: i64 = -10;
/// `SBI_ERR_BAD_RANGE`: bad (or invalid) range.
pub const BAD_RANGE: i64 = -11;
/// `SBI_ERR_TIMEOUT`: failed due to timeout.
pub const TIMEOUT: i64 = -12;
/// `SBI_ERR_IO`: input/output error.
pub const IO: i64 = -13;
/// `SBI_ERR_DENIED_LOCKED`: denied or not allowed due to lock status.
pub const DENIED_LOCKED: i64 = -14;

/// The most negative standard error code, for range checks.
pub const LOWEST: i64 = DENIED_LOCKED;
