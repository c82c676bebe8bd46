//! Calls from the hypervisor (HS-mode) down to the SBI firmware (OpenSBI).
//! Guests' calls are never forwarded here; these serve the hypervisor itself.

#[derive(Debug, Clone, Copy)]
pub struct Ret {
    pub error: i64,
    pub value: u64,
}

#[inline(always)]
fn ecall(eid: u64, fid: u64, a0: u64, a1: u64, a2: u64) -> Ret {
    let (error, value);
    // SAFETY: an SBI call traps to M-mode firmware, which follows the SBI
    // calling convention: only a0/a1 are written back.
    unsafe {
        core::arch::asm!("ecall",
            inlateout("a0") a0 => error, inlateout("a1") a1 => value,
            in("a2") a2, in("a6") fid, in("a7") eid, options(nostack));
    }
    Ret { error, value }
}

const BASE: u64 = 0x10;
const TIME: u64 = 0x5449_4D45;
const IPI: u64 = 0x73_5049;
const HSM: u64 = 0x48_534D;
const SRST: u64 = 0x5352_5354;

pub fn spec_version() -> u64 {
    ecall(BASE, 0, 0, 0, 0).value
}

pub fn impl_id() -> u64 {
    ecall(BASE, 1, 0, 0, 0).value
}

/// mvendorid, marchid, mimpid of the machine (reported to guests as-is).
pub fn machine_ids() -> (u64, u64, u64) {
    (
        ecall(BASE, 4, 0, 0, 0).value,
        ecall(BASE, 5, 0, 0, 0).value,
        ecall(BASE, 6, 0, 0, 0).value,
    )
}

pub fn set_timer(t: u64) {
    ecall(TIME, 0, t, 0, 0);
}

/// Sends a supervisor software interrupt to the harts in `mask << base`.
pub fn send_ipi(mask: u64, base: u64) -> Ret {
    ecall(IPI, 0, mask, base, 0)
}

pub fn hart_start(hartid: u64, addr: u64, opaque: u64) -> Ret {
    ecall(HSM, 0, hartid, addr, opaque)
}

static FINISHER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Remembers the platform's `sifive,test0` finisher (QEMU `virt`).
pub fn set_test_finisher(base: u64) {
    FINISHER.store(base, core::sync::atomic::Ordering::Relaxed);
}

/// Powers the machine off through SBI SRST. A failure shutdown also carries
/// the "system failure" reason; because firmware may power off the same
/// way for both, a failure is first reported through the test finisher when
/// the platform has one (QEMU then exits with status 1).
pub fn shutdown(failure: bool) -> ! {
    let finisher = FINISHER.load(core::sync::atomic::Ordering::Relaxed);
    if failure && finisher != 0 {
        // SAFETY: the finisher register from the host device tree; writing
        // FAIL (0x3333) with code 1 ends the emulation.
        unsafe { (finisher as *mut u32).write_volatile(0x3333 | (1 << 16)) };
        // Do not follow with SRST: the firmware's power-off would race the
        // failure status to QEMU's main loop and could win with status 0.
        loop {
            // SAFETY: wfi only pauses the hart while QEMU exits.
            unsafe { core::arch::asm!("wfi") };
        }
    }
    ecall(SRST, 0, 0, failure as u64, 0);
    // Fallback: legacy shutdown, then spin.
    ecall(0x08, 0, 0, 0, 0);
    loop {
        // SAFETY: wfi only pauses the hart.
        unsafe { core::arch::asm!("wfi") };
    }
}
