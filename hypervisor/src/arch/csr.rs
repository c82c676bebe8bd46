//! CSR numbers and access macros for the S-mode and H-extension registers.
//! Numbers are used instead of names so the assembler needs no H support.
#![allow(dead_code)]

pub const SSTATUS: u16 = 0x100;
pub const SIE: u16 = 0x104;
pub const STVEC: u16 = 0x105;
pub const SSCRATCH: u16 = 0x140;
pub const SEPC: u16 = 0x141;
pub const SCAUSE: u16 = 0x142;
pub const STVAL: u16 = 0x143;
pub const SIP: u16 = 0x144;
pub const STIMECMP: u16 = 0x14D;
pub const SATP: u16 = 0x180;
pub const TIME: u16 = 0xC01;
pub const INSTRET: u16 = 0xC02;

pub const VSSTATUS: u16 = 0x200;
pub const VSIE: u16 = 0x204;
pub const VSTVEC: u16 = 0x205;
pub const VSSCRATCH: u16 = 0x240;
pub const VSEPC: u16 = 0x241;
pub const VSCAUSE: u16 = 0x242;
pub const VSTVAL: u16 = 0x243;
pub const VSTIMECMP: u16 = 0x24D;
pub const VSATP: u16 = 0x280;

pub const HSTATUS: u16 = 0x600;
pub const HEDELEG: u16 = 0x602;
pub const HIDELEG: u16 = 0x603;
pub const HIE: u16 = 0x604;
pub const HTIMEDELTA: u16 = 0x605;
pub const HCOUNTEREN: u16 = 0x606;
pub const HGEIE: u16 = 0x607;
pub const HENVCFG: u16 = 0x60A;
pub const HTVAL: u16 = 0x643;
pub const HIP: u16 = 0x644;
pub const HVIP: u16 = 0x645;
pub const HTINST: u16 = 0x64A;
pub const HGATP: u16 = 0x680;

// sstatus bits
pub const SSTATUS_SIE: u64 = 1 << 1;
pub const SSTATUS_SPIE: u64 = 1 << 5;
pub const SSTATUS_SPP: u64 = 1 << 8;
pub const SSTATUS_FS: u64 = 3 << 13;
pub const SSTATUS_FS_INITIAL: u64 = 1 << 13;
pub const SSTATUS_FS_DIRTY: u64 = 3 << 13;
pub const SSTATUS_VS: u64 = 3 << 9;
pub const SSTATUS_SUM: u64 = 1 << 18;

// hstatus bits
pub const HSTATUS_GVA: u64 = 1 << 6;
pub const HSTATUS_SPV: u64 = 1 << 7;
pub const HSTATUS_SPVP: u64 = 1 << 8;
pub const HSTATUS_HU: u64 = 1 << 9;
pub const HSTATUS_VTVM: u64 = 1 << 20;
pub const HSTATUS_VTW: u64 = 1 << 21;
pub const HSTATUS_VTSR: u64 = 1 << 22;

// interrupt numbers / bits
pub const IRQ_S_SOFT: u64 = 1;
pub const IRQ_VS_SOFT: u64 = 2;
pub const IRQ_S_TIMER: u64 = 5;
pub const IRQ_VS_TIMER: u64 = 6;
pub const IRQ_S_EXT: u64 = 9;
pub const IRQ_VS_EXT: u64 = 10;
pub const IRQ_SG_EXT: u64 = 12;

// henvcfg
pub const HENVCFG_STCE: u64 = 1 << 63;
pub const HENVCFG_FIOM: u64 = 1;
pub const HENVCFG_CBZE: u64 = 1 << 7;

/// Reads a CSR given as a constant expression.
#[macro_export]
macro_rules! csr_read {
    ($csr:expr) => {{
        let v: u64;
        // SAFETY: reading a CSR has no memory effects; the caller picked a CSR
        // that exists in HS-mode (all are probed or required at boot).
        unsafe { core::arch::asm!("csrr {0}, {csr}", out(reg) v, csr = const $csr, options(nomem, nostack)) };
        v
    }};
}

/// Writes a CSR given as a constant expression.
#[macro_export]
macro_rules! csr_write {
    ($csr:expr, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: HS-mode CSR writes only change hart state that the
        // hypervisor owns; callers document the invariant they maintain.
        unsafe { core::arch::asm!("csrw {csr}, {0}", in(reg) v, csr = const $csr, options(nostack)) };
    }};
}

#[macro_export]
macro_rules! csr_set {
    ($csr:expr, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: as for csr_write!.
        unsafe { core::arch::asm!("csrs {csr}, {0}", in(reg) v, csr = const $csr, options(nostack)) };
    }};
}

#[macro_export]
macro_rules! csr_clear {
    ($csr:expr, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: as for csr_write!.
        unsafe { core::arch::asm!("csrc {csr}, {0}", in(reg) v, csr = const $csr, options(nostack)) };
    }};
}
