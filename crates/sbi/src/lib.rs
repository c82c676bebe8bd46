//! The Supervisor Binary Interface (SBI) as Rivet implements it for guests.
//!
//! A guest in VS-mode executes `ECALL`; the hypervisor captures `a0..a7` into
//! an [`SbiCall`] and hands it to [`dispatch`], together with an [`SbiEnv`]
//! that gives access to the calling vCPU's VM. `dispatch` validates every
//! argument (the guest controls all of them), performs side effects only
//! through the environment, and returns an [`Outcome`] telling the hypervisor
//! how to finish the trap.
//!
//! The rules come from the RISC-V SBI specification v3.0 (the `*.adoc` files
//! of the spec; tests cite file and heading). Rivet reports SBI **2.0** as its
//! spec version ([`SPEC_VERSION`]) and implements exactly these extensions
//! ([`probe`] is truthful):
//!
//! | Extension | EID | Module |
//! |---|---|---|
//! | Base | `0x10` | `base` |
//! | Legacy v0.1 | `0x00..=0x08` | `legacy` |
//! | TIME | `0x54494D45` | `time` |
//! | IPI | `0x735049` | `ipi` |
//! | RFENCE (no `hfence.*`) | `0x52464E43` | `rfence` |
//! | HSM | `0x48534D` | `hsm` |
//! | SRST | `0x53525354` | `srst` |
//! | DBCN | `0x4442434E` | `dbcn` |
//!
//! Everything else (PMU, SUSP, vendor, firmware, experimental, ...) answers
//! `SBI_ERR_NOT_SUPPORTED`.
//!
//! Conventions: Rivet is RV64 only, so `XLEN = 64`, `unsigned long` is `u64`
//! and `long` is `i64`. EIDs and FIDs are compared as whole 64-bit register
//! values (a register that is not the sign-extension of a valid 32-bit ID
//! matches nothing and gets `NOT_SUPPORTED`). When an SBI call fails, `a1` is
//! unspecified by the spec; Rivet always returns `value = 0` then.
#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

#[cfg(test)]
extern crate std;

mod base;
mod dbcn;
pub mod eid;
pub mod error;
pub mod fid;
mod hartmask;
mod hsm;
mod ipi;
mod legacy;
mod rfence;
mod srst;
mod time;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]
mod tests;

pub use base::base_call;
pub use dbcn::{DBCN_CHUNK, DBCN_MAX_BYTES_PER_CALL};
pub use hartmask::{HartIter, HartSet, InvalidHartMask, HART_MASK_BASE_ALL, MAX_HARTS};

/// SBI specification version Rivet implements: 2.0.
///
/// Encoding (ext-base.adoc, "Get SBI specification version"): minor in bits
/// 0..24, major in bits 24..31, bit 31 and bits 32.. zero.
#[allow(clippy::identity_op)] // spelled out as (major << 24) | minor
pub const SPEC_VERSION: u64 = (2 << 24) | 0;

/// SBI implementation ID reported by `sbi_get_impl_id`: ASCII `"RIVT"`.
///
/// This is **not** a registered ID: the spec's table of implementation IDs
/// (ext-base.adoc, "SBI Implementation IDs") is assigned sequentially from 0
/// (0 = BBL ... 11 = bhyve at v3.0), so a 32-bit ASCII tag cannot collide with
/// it in practice. Guests must not rely on it for anything but quirk probing.
pub const IMPL_ID: u64 = 0x5249_5654;

/// SBI implementation version reported by `sbi_get_impl_version`.
///
/// The encoding is implementation specific (ext-base.adoc); Rivet uses
/// `(major << 16) | (minor << 8) | patch`, so 0.1.0 is `0x0000_0100`.
#[allow(clippy::identity_op)] // spelled out as (major << 16) | (minor << 8) | patch
pub const IMPL_VERSION: u64 = (0 << 16) | (1 << 8) | 0;

/// One SBI call as captured from the trapping vCPU's registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbiCall {
    /// Extension ID, from `a7`.
    pub eid: u64,
    /// Function ID, from `a6` (ignored by legacy extensions).
    pub fid: u64,
    /// Arguments `a0..=a5`.
    pub args: [u64; 6],
}

impl SbiCall {
    /// Builds a call from its registers.
    pub const fn new(eid: u64, fid: u64, args: [u64; 6]) -> Self {
        Self { eid, fid, args }
    }

    /// Argument register `a0`.
    pub const fn a0(&self) -> u64 {
        self.args[0]
    }
    /// Argument register `a1`.
    pub const fn a1(&self) -> u64 {
        self.args[1]
    }
    /// Argument register `a2`.
    pub const fn a2(&self) -> u64 {
        self.args[2]
    }
    /// Argument register `a3`.
    pub const fn a3(&self) -> u64 {
        self.args[3]
    }
    /// Argument register `a4`.
    pub const fn a4(&self) -> u64 {
        self.args[4]
    }
}

/// The `struct sbiret` pair: `a0 = error`, `a1 = value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbiRet {
    /// One of the [`error`] codes.
    pub error: i64,
    /// The returned value (unspecified by the spec on error; Rivet uses 0).
    pub value: u64,
}

impl SbiRet {
    /// `SBI_SUCCESS` with a value.
    pub const fn success(value: u64) -> Self {
        Self {
            error: error::SUCCESS,
            value,
        }
    }

    /// An error code, with `value = 0`.
    pub const fn err(code: i64) -> Self {
        Self {
            error: code,
            value: 0,
        }
    }

    /// Shorthand for `SBI_ERR_NOT_SUPPORTED`.
    pub const fn not_supported() -> Self {
        Self::err(error::NOT_SUPPORTED)
    }

    /// The value to write to `a0` (two's complement of `error`).
    pub const fn a0(&self) -> u64 {
        self.error as u64
    }

    /// The value to write to `a1`.
    pub const fn a1(&self) -> u64 {
        self.value
    }
}

/// HSM hart states, with the spec's state IDs (ext-hsm.adoc, table_hsm_states).
#[repr(u64)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HartState {
    /// `STARTED`: executing normally.
    Started = 0,
    /// `STOPPED`: not executing in S-mode or below.
    Stopped = 1,
    /// `START_PENDING`: a start was requested and is in progress.
    StartPending = 2,
    /// `STOP_PENDING`: the hart asked to stop and that is in progress.
    StopPending = 3,
    /// `SUSPENDED`: in a (virtual) low-power state.
    Suspended = 4,
    /// `SUSPEND_PENDING`: a suspend was requested and is in progress.
    SuspendPending = 5,
    /// `RESUME_PENDING`: waking up from `SUSPENDED`.
    ResumePending = 6,
}

impl HartState {
    /// The HSM state ID returned by `sbi_hart_get_status`.
    pub const fn id(self) -> u64 {
        self as u64
    }
}

/// A remote fence a guest asked for.
///
/// For `Vma`/`VmaAsid`, the range is passed through as the guest gave it
/// after validation (see [`Fence::is_full`]): `[start, start + size)` never
/// extends past `2^64` unless it denotes the whole address space. The
/// hypervisor may always over-flush (e.g. flush the whole guest address space
/// for any range, or for large ranges); it must never under-flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// `FENCE.I` on the targets.
    I,
    /// `SFENCE.VMA` (executed as `HFENCE.VVMA` for the guest) over a range.
    Vma {
        /// First guest virtual address.
        start: u64,
        /// Length in bytes.
        size: u64,
    },
    /// `SFENCE.VMA` over a range for one ASID (`asid <= 0xFFFF`).
    VmaAsid {
        /// First guest virtual address.
        start: u64,
        /// Length in bytes.
        size: u64,
        /// Address-space ID, at most 16 bits (RV64 `satp.ASID` width).
        asid: u64,
    },
}

impl Fence {
    /// True when the fence covers the entire virtual address space:
    /// `start == 0 && size == 0`, or `size == 2^XLEN - 1`
    /// (ext-rfence.adoc, introduction). Always false for [`Fence::I`].
    pub const fn is_full(&self) -> bool {
        match *self {
            Fence::I => false,
            Fence::Vma { start, size } | Fence::VmaAsid { start, size, .. } => {
                rfence::range_is_full(start, size)
            }
        }
    }
}

/// Type argument of an accepted `sbi_system_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetType {
    /// Reset type 0: power the VM off.
    Shutdown,
    /// Reset type 1: cold reboot (full re-creation of the VM).
    ColdReboot,
    /// Reset type 2: warm reboot (may keep parts of the VM's platform state).
    WarmReboot,
}

/// Reason argument of an accepted `sbi_system_reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// Reason 0: no reason given.
    None,
    /// Reason 1: system failure.
    SystemFailure,
    /// SBI-implementation specific (`0xE000_0000..=0xEFFF_FFFF`) or vendor /
    /// platform specific (`0xF000_0000..=0xFFFF_FFFF`) reason, raw. Rivet
    /// gives these no meaning beyond logging.
    Other(u32),
}

/// What the hypervisor must do after [`dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Write `a0 = error`, `a1 = value`, advance `sepc` by 4.
    Ret(SbiRet),
    /// Legacy v0.1 calls: write only `a0` (`a1` untouched), advance `sepc`.
    Legacy(i64),
    /// SRST `system_reset` (or legacy shutdown) accepted: stop/reboot the VM
    /// (no return to the guest).
    Reset {
        /// Shutdown, cold or warm reboot.
        kind: ResetType,
        /// Why, as the guest said.
        reason: ResetReason,
    },
    /// HSM `hart_stop` accepted: this vCPU becomes `Stopped` (no return).
    HartStop,
    /// HSM `hart_suspend` accepted.
    ///
    /// Retentive: when resumed (any interrupt that would wake a `WFI`,
    /// regardless of `sstatus.SIE`), the call returns `SBI_SUCCESS`
    /// (`a0 = 0`; `a1` should be written 0) at `sepc + 4`; `resume_addr` and
    /// `opaque` are then meaningless and are passed through as given.
    ///
    /// Non-retentive: resumes in VS-mode at `resume_addr` with `a0 = hartid`,
    /// `a1 = opaque`, `vsatp = 0`, `vsstatus.SIE = 0`. `resume_addr` has been
    /// checked to lie inside guest RAM.
    Suspend {
        /// Retentive (true) or non-retentive (false).
        retentive: bool,
        /// Where to resume after a non-retentive suspend.
        resume_addr: u64,
        /// Value for `a1` on non-retentive resume.
        opaque: u64,
    },
}

/// What [`dispatch`] needs from the hypervisor for the calling vCPU's VM.
///
/// `dispatch` validates every guest-supplied value before calling a method
/// that acts on it; the per-method docs say what has been checked.
pub trait SbiEnv {
    /// The VM's guest-physical memory.
    type Mem: rivet_guest_mem::GuestMemory;

    /// This VM's RAM: used for DBCN buffers, and as the definition of a valid
    /// HSM start / resume address (the address must be inside RAM).
    fn mem(&mut self) -> &mut Self::Mem;

    /// Writes bytes to the VM's console. Called with at most
    /// [`DBCN_CHUNK`] bytes at a time.
    fn console_write(&mut self, bytes: &[u8]);

    /// Non-blocking read from the VM's console into `buf`; returns how many
    /// bytes were stored (0 if nothing is available). Values larger than
    /// `buf.len()` are clamped by the caller.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;

    /// Number of vCPUs; valid hart IDs are `0..vcpu_count`. Values above
    /// [`MAX_HARTS`] (64) are treated as 64.
    fn vcpu_count(&self) -> usize;

    /// Hart ID of the calling vCPU.
    fn current_hart(&self) -> usize;

    /// HSM state of a vCPU. Only called with `hart < min(vcpu_count, 64)`.
    fn hart_state(&self, hart: usize) -> HartState;

    /// Starts a vCPU at `start_addr` in VS-mode with `a0 = hart`,
    /// `a1 = opaque`, `vsatp = 0`, `vsstatus.SIE = 0`. Only called after
    /// validation: the hart exists, `hart_state(hart)` returned `Stopped`,
    /// and `[start_addr, start_addr + 4)` is inside guest RAM. The
    /// environment should move the hart to `StartPending` (or `Started`)
    /// before any other vCPU can observe it.
    fn hart_start(&mut self, hart: usize, start_addr: u64, opaque: u64);

    /// Programs the calling vCPU's timer to `stime_value` (absolute time) and
    /// clears its pending timer interrupt (`VSTIP`) when `stime_value` is in
    /// the future.
    fn set_timer(&mut self, stime_value: u64);

    /// Makes a supervisor software interrupt (`VSSIP`) pending on every hart
    /// in `targets`. `targets` is never empty and contains only valid hart
    /// IDs, in any HSM state (the spec's validity rule is about existence,
    /// not state). Rivet's intended behaviour: latch `VSSIP` on the target
    /// whatever its state, so a stopped hart sees it once started (an OS
    /// clears `sip` during bring-up anyway).
    fn send_ipi(&mut self, targets: HartSet);

    /// Executes `fence` on every hart in `targets` (never empty, only valid
    /// IDs, any HSM state) before the caller resumes. Harts that are not
    /// running guest code may be skipped as long as they flush (`hfence.vvma`
    /// for this VMID plus `fence.i`) before they next run.
    fn remote_fence(&mut self, targets: HartSet, fence: Fence);

    /// Clears the calling vCPU's pending supervisor software interrupt
    /// (`hvip.VSSIP`, legacy `sbi_clear_ipi`); returns whether one was
    /// pending.
    ///
    /// **Override this.** The provided default clears nothing and reports
    /// "nothing was pending" (legacy return 0). That is harmless for guests
    /// that clear `sip.SSIP` themselves (as Linux does), but a v0.1-era guest
    /// that relies on `sbi_clear_ipi` would see its IPI re-fire. The default
    /// exists only so environments written before this method keep building.
    fn clear_ipi(&mut self) -> bool {
        false
    }

    /// Legacy calls pass `hart_mask` as a guest **virtual** address of an
    /// `unsigned long`; translate it through the vCPU's current `vsatp` and
    /// read 8 bytes. `None` if it cannot be read. Never called with `va = 0`
    /// (a null pointer means "all harts").
    fn read_legacy_hart_mask(&mut self, va: u64) -> Option<u64>;

    /// `(mvendorid, marchid, mimpid)` to report; 0 is always legal.
    fn machine_ids(&self) -> (u64, u64, u64);
}

/// Decides one SBI call. Never panics, whatever the input.
pub fn dispatch<E: SbiEnv>(env: &mut E, call: &SbiCall) -> Outcome {
    match call.eid {
        eid::BASE => Outcome::Ret(base::handle(env, call)),
        eid::TIME => Outcome::Ret(time::handle(env, call)),
        eid::IPI => Outcome::Ret(ipi::handle(env, call)),
        eid::RFENCE => Outcome::Ret(rfence::handle(env, call)),
        eid::HSM => hsm::handle(env, call),
        eid::SRST => srst::handle(call),
        eid::DBCN => Outcome::Ret(dbcn::handle(env, call)),
        eid::LEGACY_SET_TIMER..=eid::LEGACY_SHUTDOWN => legacy::handle(env, call),
        _ => Outcome::Ret(SbiRet::not_supported()),
    }
}

/// What `sbi_probe_extension` answers: true exactly for the extensions
/// [`dispatch`] implements (see the crate docs), including the legacy EIDs
/// `0x00..=0x08`; false for everything else, including PMU and SUSP and the
/// reserved legacy EIDs `0x09..=0x0F`.
pub const fn probe(eid: u64) -> bool {
    matches!(
        eid,
        eid::BASE
            | eid::TIME
            | eid::IPI
            | eid::RFENCE
            | eid::HSM
            | eid::SRST
            | eid::DBCN
            | eid::LEGACY_SET_TIMER..=eid::LEGACY_SHUTDOWN
    )
}

/// The number of valid hart IDs for this VM, capped at [`MAX_HARTS`].
pub(crate) fn hart_limit<E: SbiEnv>(env: &E) -> u64 {
    let n = u64::try_from(env.vcpu_count()).unwrap_or(u64::MAX);
    n.min(MAX_HARTS)
}

/// `Some(hart)` when `hartid` names one of this VM's vCPUs.
pub(crate) fn valid_hart<E: SbiEnv>(env: &E, hartid: u64) -> Option<usize> {
    if hartid < hart_limit(env) {
        usize::try_from(hartid).ok()
    } else {
        None
    }
}
