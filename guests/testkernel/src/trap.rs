//! The guest's own trap vector: it records what arrived so tests can check
//! that the hypervisor delivered (or injected) the right thing.

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

#[repr(C)]
pub struct Frame {
    pub x: [usize; 32],
    pub sepc: usize,
    pub scause: usize,
    pub stval: usize,
}

global_asm!(
    r#"
    .section .text
    .p2align 2
    .globl tk_trap_vector
tk_trap_vector:
    addi sp, sp, -{frame}
    .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd x\n, \n*8(sp)
    .endr
    csrr t0, sepc
    sd t0, 32*8(sp)
    csrr t0, scause
    sd t0, 33*8(sp)
    csrr t0, stval
    sd t0, 34*8(sp)
    mv a0, sp
    call {handler}
    ld t0, 32*8(sp)
    csrw sepc, t0
    .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld x\n, \n*8(sp)
    .endr
    addi sp, sp, {frame}
    sret
"#,
    frame = const (core::mem::size_of::<Frame>() + 15) & !15,
    handler = sym handler,
);

extern "C" {
    fn tk_trap_vector();
}

/// When set, the next synchronous exception is expected: it is recorded and
/// the faulting instruction skipped.
pub static EXPECT: AtomicUsize = AtomicUsize::new(0);
pub static LAST_CAUSE: AtomicUsize = AtomicUsize::new(usize::MAX);
pub static LAST_TVAL: AtomicUsize = AtomicUsize::new(0);
pub static TIMER_IRQS: AtomicUsize = AtomicUsize::new(0);
pub static SOFT_IRQS: AtomicUsize = AtomicUsize::new(0);
pub static EXT_IRQS: AtomicUsize = AtomicUsize::new(0);
/// Set by the timer handler: whether it disarmed via stimecmp (Sstc) or SBI.
pub static TIMER_VIA_STIMECMP: AtomicUsize = AtomicUsize::new(0);

pub fn install() {
    // SAFETY: points stvec at our vector (direct mode).
    unsafe { core::arch::asm!("csrw stvec, {0}", in(reg) tk_trap_vector as *const () as usize) };
}

extern "C" fn handler(f: &mut Frame) {
    let interrupt = f.scause >> 63 != 0;
    let code = f.scause & !(1 << 63);
    if interrupt {
        match code {
            1 => {
                // SAFETY: clearing our own pending software interrupt.
                unsafe { core::arch::asm!("csrc sip, {0}", in(reg) 1usize << 1) };
                SOFT_IRQS.fetch_add(1, Ordering::SeqCst);
            }
            5 => {
                if TIMER_VIA_STIMECMP.load(Ordering::SeqCst) != 0 {
                    // SAFETY: stimecmp exists (the test only sets the flag when it does).
                    unsafe { core::arch::asm!("csrw 0x14d, {0}", in(reg) usize::MAX) };
                } else {
                    crate::sbi::set_timer(u64::MAX);
                }
                TIMER_IRQS.fetch_add(1, Ordering::SeqCst);
            }
            9 => {
                EXT_IRQS.fetch_add(1, Ordering::SeqCst);
                // Mask external interrupts; the test only counts arrival.
                // SAFETY: sie is ours.
                unsafe { core::arch::asm!("csrc sie, {0}", in(reg) 1usize << 9) };
            }
            _ => {
                crate::println!("unexpected interrupt {code}");
                crate::sbi::shutdown(true);
            }
        }
        return;
    }
    if EXPECT.swap(0, Ordering::SeqCst) == 0 {
        crate::println!(
            "not ok - unexpected exception cause={} sepc={:#x} stval={:#x}",
            code,
            f.sepc,
            f.stval
        );
        crate::sbi::shutdown(true);
    }
    LAST_CAUSE.store(code, Ordering::SeqCst);
    LAST_TVAL.store(f.stval, Ordering::SeqCst);
    // An instruction fetch fault (misaligned, access, page): sepc is the
    // unreachable target itself, so there is nothing to skip. The attack
    // jumped there with `jalr ra, ...`: resume at its return address.
    if matches!(code, 0 | 1 | 12) {
        f.sepc = f.x[1];
        return;
    }
    // A trap from U-mode (an attack ran code there): back to S-mode at the
    // attack's return address.
    let sstatus: usize;
    // SAFETY: reading our own sstatus.
    unsafe { core::arch::asm!("csrr {0}, sstatus", out(reg) sstatus) };
    if sstatus & (1 << 8) == 0 {
        // SAFETY: sret will return to S-mode.
        unsafe { core::arch::asm!("csrs sstatus, {0}", in(reg) 1usize << 8) };
        f.sepc = f.x[1];
        return;
    }
    // Skip the faulting instruction: 2 or 4 bytes by its low bits.
    // SAFETY: sepc points at code we are executing (identity-mapped RAM).
    let low = unsafe { (f.sepc as *const u16).read_volatile() };
    f.sepc += if low & 3 == 3 { 4 } else { 2 };
}

/// Runs `f` expecting exactly one exception; returns its cause (or None).
pub fn expect_trap(f: impl FnOnce()) -> Option<usize> {
    LAST_CAUSE.store(usize::MAX, Ordering::SeqCst);
    EXPECT.store(1, Ordering::SeqCst);
    f();
    let armed = EXPECT.swap(0, Ordering::SeqCst);
    let c = LAST_CAUSE.load(Ordering::SeqCst);
    if armed == 0 && c != usize::MAX {
        Some(c)
    } else {
        None
    }
}
