//! The world switch and the HS-mode trap vector.
//!
//! `enter_guest` saves the hypervisor's callee-saved registers in the
//! [`GuestContext`], loads the guest's registers and `sret`s into VS-mode.
//! Every trap lands in `rivet_trap_vector`: `sscratch` holds the context
//! pointer while a guest runs and 0 while the hypervisor runs, which tells the
//! two cases apart. A guest trap saves the guest's registers and calls the
//! exit fast path (`fastpath::fast_exit`) on the hypervisor's stack; when
//! that served the exit, the guest is re-entered at once (the hypervisor's
//! callee-saved registers stay where `enter_guest` put them), otherwise
//! `enter_guest` returns to Rust with the decoded exit in the context. A
//! hypervisor trap (only expected inside the fault-tolerant helpers of the
//! `.rivet_fixup` section) goes to [`host_trap`]. All offsets below come
//! from `offset_of!` on the Rust struct.

use core::arch::global_asm;
use core::mem::offset_of;

/// Guest register state the assembly touches.
#[repr(C)]
#[derive(Debug, Default, Clone)]
pub struct GuestContext {
    /// x0..x31; x[0] is never loaded.
    pub x: [u64; 32],
    /// Guest pc to resume at; updated on every exit.
    pub sepc: u64,
    /// sstatus to load before sret (SPP selects VS vs VU); saved at exit.
    pub sstatus: u64,
    /// hstatus to load before sret (SPV=1, SPVP, VTW...); saved at exit.
    pub hstatus: u64,
    /// Hypervisor ra, sp, gp, tp, s0..s11 while the guest runs.
    pub host: [u64; 16],
    /// The exit fast path's state (never touched by the assembly).
    pub fast: crate::fastpath::FastState,
}

/// Registers saved on a trap taken in HS-mode.
#[repr(C)]
#[derive(Debug)]
pub struct HostFrame {
    pub x: [u64; 32],
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
}

global_asm!(
    r#"
    .section .text
    .globl rivet_enter_guest
    .p2align 2
rivet_enter_guest:
    sd ra,  {host}+0*8(a0)
    sd sp,  {host}+1*8(a0)
    sd gp,  {host}+2*8(a0)
    sd tp,  {host}+3*8(a0)
    sd s0,  {host}+4*8(a0)
    sd s1,  {host}+5*8(a0)
    sd s2,  {host}+6*8(a0)
    sd s3,  {host}+7*8(a0)
    sd s4,  {host}+8*8(a0)
    sd s5,  {host}+9*8(a0)
    sd s6,  {host}+10*8(a0)
    sd s7,  {host}+11*8(a0)
    sd s8,  {host}+12*8(a0)
    sd s9,  {host}+13*8(a0)
    sd s10, {host}+14*8(a0)
    sd s11, {host}+15*8(a0)
.Lload_guest:
    /* a0 = context: load the guest's state and enter it */
    ld t0, {sstatus}(a0)
    csrw sstatus, t0
    ld t0, {hstatus}(a0)
    csrw hstatus, t0
    ld t0, {sepc}(a0)
    csrw sepc, t0
    csrw sscratch, a0
    .irp n, 1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld x\n, \n*8(a0)
    .endr
    ld a0, 10*8(a0)
    sret

    .globl rivet_trap_vector
    .p2align 2
rivet_trap_vector:
    csrrw a0, sscratch, a0
    beqz a0, 1f
    /* trap from the guest: a0 = context, sscratch = guest a0 */
    .irp n, 1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd x\n, \n*8(a0)
    .endr
    csrr t0, sscratch
    sd t0, 10*8(a0)
    csrw sscratch, zero
    csrr t0, sepc
    sd t0, {sepc}(a0)
    /* saved before any Rust runs: a trap inside the fast path (an HLVX
       fault) would overwrite both */
    csrr t0, sstatus
    sd t0, {sstatus}(a0)
    csrr t0, hstatus
    sd t0, {hstatus}(a0)
    /* the fast path runs on the hypervisor's stack, gp and tp */
    ld sp,  {host}+1*8(a0)
    ld gp,  {host}+2*8(a0)
    ld tp,  {host}+3*8(a0)
    mv s0, a0
    call {fast_exit}
    bnez a0, 2f
    /* a full exit: back to enter_guest's caller */
    mv a0, s0
    ld ra,  {host}+0*8(a0)
    ld sp,  {host}+1*8(a0)
    ld gp,  {host}+2*8(a0)
    ld tp,  {host}+3*8(a0)
    ld s0,  {host}+4*8(a0)
    ld s1,  {host}+5*8(a0)
    ld s2,  {host}+6*8(a0)
    ld s3,  {host}+7*8(a0)
    ld s4,  {host}+8*8(a0)
    ld s5,  {host}+9*8(a0)
    ld s6,  {host}+10*8(a0)
    ld s7,  {host}+11*8(a0)
    ld s8,  {host}+12*8(a0)
    ld s9,  {host}+13*8(a0)
    ld s10, {host}+14*8(a0)
    ld s11, {host}+15*8(a0)
    ret

2:  /* served: straight back into the guest (host registers stay saved) */
    mv a0, s0
    j .Lload_guest

1:  /* trap from HS-mode itself */
    csrrw a0, sscratch, a0
    addi sp, sp, -{frame}
    .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd x\n, \n*8(sp)
    .endr
    addi t0, sp, {frame}
    sd t0, 2*8(sp)
    csrr t0, sepc
    sd t0, {f_sepc}(sp)
    csrr t0, scause
    sd t0, {f_scause}(sp)
    csrr t0, stval
    sd t0, {f_stval}(sp)
    mv a0, sp
    call {host_trap}
    ld t0, {f_sepc}(sp)
    csrw sepc, t0
    .irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld x\n, \n*8(sp)
    .endr
    addi sp, sp, {frame}
    sret
"#,
    host = const offset_of!(GuestContext, host),
    sstatus = const offset_of!(GuestContext, sstatus),
    hstatus = const offset_of!(GuestContext, hstatus),
    sepc = const offset_of!(GuestContext, sepc),
    frame = const (core::mem::size_of::<HostFrame>() + 15) & !15,
    f_sepc = const offset_of!(HostFrame, sepc),
    f_scause = const offset_of!(HostFrame, scause),
    f_stval = const offset_of!(HostFrame, stval),
    host_trap = sym host_trap,
    fast_exit = sym crate::fastpath::fast_exit,
);

// The .irp loops above address x[n] as n*8 from the start of the struct.
const _: () = assert!(offset_of!(GuestContext, x) == 0);
const _: () = assert!(offset_of!(HostFrame, x) == 0);

extern "C" {
    fn rivet_enter_guest(ctx: *mut core::ffi::c_void);
    fn rivet_trap_vector();
    static __fixup_start: u8;
    static __fixup_end: u8;
}

/// Installs the trap vector on this hart.
pub fn install_vector() {
    crate::csr_write!(super::csr::STVEC, rivet_trap_vector as *const () as u64);
    crate::csr_write!(super::csr::SSCRATCH, 0);
}

/// Runs the guest until its next exit the fast path does not serve; `ctx`
/// then holds the guest's state and `ctx.fast.exit` that exit.
pub fn enter_guest(ctx: &mut GuestContext) {
    // SAFETY: ctx is a valid, exclusively borrowed context; the assembly
    // saves and restores every callee-saved register of the caller and
    // returns here on the guest's next trap (sscratch points at ctx only
    // while the guest runs).
    unsafe { rivet_enter_guest((ctx as *mut GuestContext).cast()) }
}

/// A trap taken while the hypervisor itself runs. Faults inside the
/// `.rivet_fixup` helpers resume at the recovery address they left in t6;
/// anything else is a hypervisor bug and panics with the trap details.
extern "C" fn host_trap(frame: &mut HostFrame) {
    // SAFETY: only the addresses of linker symbols are taken.
    let (start, end) = unsafe {
        (
            &__fixup_start as *const u8 as u64,
            &__fixup_end as *const u8 as u64,
        )
    };
    let is_interrupt = frame.scause >> 63 != 0;
    if !is_interrupt && (start..end).contains(&frame.sepc) {
        frame.sepc = frame.x[31];
        return;
    }
    panic!(
        "unexpected trap in the hypervisor: scause={:#x} sepc={:#x} stval={:#x}",
        frame.scause, frame.sepc, frame.stval
    );
}
