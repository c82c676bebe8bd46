//! The architecture layer: everything that touches CSRs, runs assembly or
//! talks to firmware lives here, behind plain functions the rest uses.

pub mod csr;
pub mod entry;
pub mod firmware;
pub mod hext;
pub mod trap;
pub mod uart;

use crate::{csr_clear, csr_read, csr_set, csr_write};
use csr::*;

/// What the CPU offers, probed at boot.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub sstc: bool,
    pub sv39x4: bool,
    pub sv48x4: bool,
    pub sv57x4: bool,
    pub vmid_bits: u32,
    /// `cbo.zero` block size when HS-mode (and so VS-mode, through
    /// henvcfg.CBZE) may use Zicboz; 0 otherwise. Set after probing.
    pub cboz_block: u64,
}

/// Probes G-stage modes by writing hgatp (an unsupported MODE leaves the
/// register unchanged), VMID width, and Sstc via henvcfg.STCE (read-only
/// zero unless M-mode enabled Sstc in menvcfg).
pub fn probe_caps() -> Caps {
    let mut modes = [false; 3];
    for (i, mode) in [8u64, 9, 10].iter().enumerate() {
        csr_write!(HGATP, mode << 60);
        modes[i] = csr_read!(HGATP) >> 60 == *mode;
        csr_write!(HGATP, 0);
    }
    csr_write!(HGATP, (8u64 << 60) | (0x3fff << 44));
    let vmid = (csr_read!(HGATP) >> 44) & 0x3fff;
    csr_write!(HGATP, 0);
    csr_set!(HENVCFG, HENVCFG_STCE);
    let sstc = csr_read!(HENVCFG) & HENVCFG_STCE != 0;
    csr_clear!(HENVCFG, HENVCFG_STCE);
    hext::hfence_gvma_all();
    Caps {
        sstc,
        sv39x4: modes[0],
        sv48x4: modes[1],
        sv57x4: modes[2],
        vmid_bits: 64 - vmid.leading_zeros(),
        cboz_block: 0,
    }
}

/// Exceptions the guest handles itself (hedeleg): misaligned and access
/// faults, illegal instruction, breakpoint, ecall from VU, page faults.
pub const HEDELEG_BITS: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 12)
    | (1 << 13)
    | (1 << 15);

/// Per-hart H-extension set-up.
pub fn init_hart(caps: &Caps) {
    trap::install_vector();
    csr_write!(HEDELEG, HEDELEG_BITS);
    csr_write!(
        HIDELEG,
        (1 << IRQ_VS_SOFT) | (1 << IRQ_VS_TIMER) | (1 << IRQ_VS_EXT)
    );
    csr_write!(HVIP, 0);
    csr_write!(HIE, 0);
    csr_write!(HGEIE, 0);
    // Guests may read cycle, time and instret directly.
    csr_write!(HCOUNTEREN, 0b111);
    csr_write!(HTIMEDELTA, 0);
    // Sstc and cbo.zero go straight to the guest: neither exits. (cbo.zero
    // only writes zeros to memory the guest may write anyway.)
    let mut envcfg = 0;
    if caps.sstc {
        envcfg |= HENVCFG_STCE;
    }
    if caps.cboz_block != 0 {
        envcfg |= HENVCFG_CBZE;
    }
    csr_write!(HENVCFG, envcfg);
    // Interrupts reach HS-mode while a guest runs (they are always enabled
    // below HS); in HS-mode itself sstatus.SIE stays 0 and we poll sip.
    csr_clear!(SSTATUS, SSTATUS_SIE);
    csr_write!(
        SIE,
        (1 << IRQ_S_SOFT) | (1 << IRQ_S_TIMER) | (1 << IRQ_S_EXT)
    );
    // FP on for guests (sstatus.FS gates V=1 FP use too); vector stays off.
    csr_clear!(SSTATUS, SSTATUS_VS);
    csr_set!(SSTATUS, SSTATUS_FS_INITIAL);
    if caps.sstc {
        csr_write!(STIMECMP, u64::MAX);
    }
}

pub fn time() -> u64 {
    csr_read!(TIME)
}

/// Retired instructions (M-mode lets HS read it; under QEMU -icount it
/// counts every hart's instructions).
pub fn instret() -> u64 {
    csr_read!(INSTRET)
}

/// Arms this hart's supervisor timer (u64::MAX disarms).
pub fn set_host_timer(caps: &Caps, deadline: u64) {
    if caps.sstc {
        csr_write!(STIMECMP, deadline);
    } else {
        firmware::set_timer(deadline);
    }
}
