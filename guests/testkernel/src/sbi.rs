//! SBI calls from the guest (S-mode as far as it knows).

pub const BASE: usize = 0x10;
pub const TIME: usize = 0x5449_4D45;
pub const IPI: usize = 0x73_5049;
pub const RFENCE: usize = 0x5246_4E43;
pub const HSM: usize = 0x48_534D;
pub const SRST: usize = 0x5352_5354;
pub const DBCN: usize = 0x4442_434E;
pub const PMU: usize = 0x50_4D55;

pub const ERR_NOT_SUPPORTED: isize = -2;
pub const ERR_INVALID_PARAM: isize = -3;
pub const ERR_INVALID_ADDRESS: isize = -5;
pub const ERR_ALREADY_AVAILABLE: isize = -6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ret {
    pub error: isize,
    pub value: usize,
}

#[inline(always)]
pub fn call(eid: usize, fid: usize, a0: usize, a1: usize, a2: usize) -> Ret {
    let (error, value);
    // SAFETY: an SBI call per the calling convention; only a0/a1 change.
    unsafe {
        core::arch::asm!("ecall", inlateout("a0") a0 => error, inlateout("a1") a1 => value,
            in("a2") a2, in("a6") fid, in("a7") eid, options(nostack));
    }
    Ret { error, value }
}

/// Legacy v0.1 call: only a0 comes back.
pub fn legacy(eid: usize, a0: usize) -> isize {
    let r: isize;
    // SAFETY: legacy SBI call convention.
    unsafe {
        core::arch::asm!("ecall", inlateout("a0") a0 => r, in("a7") eid, out("a1") _, options(nostack));
    }
    r
}

pub fn console_write(bytes: &[u8]) -> Ret {
    call(DBCN, 0, bytes.len(), bytes.as_ptr() as usize, 0)
}

pub fn set_timer(t: u64) -> Ret {
    call(TIME, 0, t as usize, 0, 0)
}

pub fn shutdown(failure: bool) -> ! {
    call(SRST, 0, 0, failure as usize, 0);
    loop {
        core::hint::spin_loop();
    }
}
