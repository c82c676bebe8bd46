//! The exit fast path: exits that touch only the running vCPU's registers
//! and its VM's console port, served without the machine lock and without
//! the scheduler's bookkeeping, straight back into the guest.
//!
//! The trap vector (`arch/trap.rs`) calls [`fast_exit`] for every guest
//! trap, on the hypervisor's stack but without restoring the rest of the
//! hypervisor's registers; when it serves the exit, the vector re-enters
//! the guest directly, so a served exit costs the register save and
//! restore plus the handler and nothing else.
//!
//! Served here:
//! * SBI Base calls (spec/impl version, probe, machine ids): pure answers
//!   (the null SBI call of the benchmarks);
//! * byte loads and stores to the UART (THR, LSR polls, scratch, ...), the
//!   most common exit of a Linux boot, under the VM's port lock only.
//!
//! Why skipping the run loop's per-exit work is safe: everything another
//! hart may ask of this vCPU (an interrupt to inject, a fence, a stop, the
//! end of a time slice) arrives with a kick (an IPI) or the host timer,
//! both HS interrupts that are pending when the guest is re-entered, so
//! the very next exit is an interrupt and takes the full path. `hvip` is
//! left as the hardware holds it, and the saved copy is refreshed at the
//! next full exit.
//!
//! Anything else, or an access whose decoding fails (the full path then
//! injects the fault), goes to the full path untouched. A UART access that
//! changes the UART's interrupt line is done here, then handed over so the
//! full path recomputes the vPLIC under the machine lock.

use crate::arch::csr::{HTINST, HTVAL, SCAUSE, STVAL};
use crate::arch::trap::GuestContext;
use crate::csr_read;
use crate::exit::{self, Access, Exit};
use crate::port::VmShared;
use crate::vcpu::ExitStats;
use crate::vm::{UART_BASE, UART_SIZE};
use rivet_sbi::SbiCall;

/// Exits served here since the vCPU's statistics were last updated (they
/// live behind the machine lock; the run loop adds these in when it next
/// holds it).
#[derive(Default, Clone, Debug)]
pub struct FastCounts {
    pub sbi_base: u64,
    pub mmio_uart: u64,
}

impl FastCounts {
    pub fn drain_into(&mut self, s: &mut ExitStats) {
        s.sbi[ExitStats::sbi_kind(rivet_sbi::eid::BASE)] += self.sbi_base;
        s.mmio_uart += self.mmio_uart;
        *self = FastCounts::default();
    }
}

/// What the fast path needs and leaves behind; part of the vCPU's
/// [`GuestContext`], owned by the hart running the vCPU like the rest of it.
#[derive(Default, Clone)]
pub struct FastState {
    /// The VM's lock-free part; set by the run loop before entering.
    pub shared: Option<&'static VmShared>,
    /// mvendorid, marchid, mimpid (SBI Base).
    pub machine_ids: (u64, u64, u64),
    pub counts: FastCounts,
    /// The exit the fast path handed over (decoded before anything in the
    /// fast path could trap and overwrite the trap CSRs).
    pub exit: Option<Exit>,
    /// The exit was a UART access done here whose interrupt line changed.
    pub sync_irqs: bool,
}

impl core::fmt::Debug for FastState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FastState")
            .field("counts", &self.counts)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

/// Called by the trap vector after every guest trap, with the guest's
/// registers saved in `ctx`. Returns 1 when the exit was served (re-enter
/// the guest), 0 to hand it to the run loop.
///
/// The SBI Base case is written out here and everything else is out of
/// line, so the common call needs no callee-saved registers (no prologue).
pub extern "C" fn fast_exit(ctx: &mut GuestContext) -> u64 {
    const ECALL_FROM_VS: u64 = 10;
    const LOAD_GUEST_PAGE_FAULT: u64 = 21;
    const STORE_GUEST_PAGE_FAULT: u64 = 23;
    match csr_read!(SCAUSE) {
        ECALL_FROM_VS if ctx.x[17] == rivet_sbi::eid::BASE => {
            let call = SbiCall {
                eid: ctx.x[17],
                fid: ctx.x[16],
                args: [
                    ctx.x[10], ctx.x[11], ctx.x[12], ctx.x[13], ctx.x[14], ctx.x[15],
                ],
            };
            let r = rivet_sbi::base_call(&call, ctx.fast.machine_ids);
            ctx.x[10] = r.error as u64;
            ctx.x[11] = r.value;
            ctx.sepc = ctx.sepc.wrapping_add(4);
            ctx.fast.counts.sbi_base += 1;
            1
        }
        LOAD_GUEST_PAGE_FAULT => mmio_exit(ctx, Access::Load),
        STORE_GUEST_PAGE_FAULT => mmio_exit(ctx, Access::Store),
        _ => hand_over(ctx, exit::decode(), false),
    }
}

/// The run loop takes exit `e` (the trap CSRs were read before anything
/// here could trap and overwrite them).
#[cold]
#[inline(never)]
fn hand_over(ctx: &mut GuestContext, e: Exit, sync_irqs: bool) -> u64 {
    ctx.fast.exit = Some(e);
    ctx.fast.sync_irqs = sync_irqs;
    0
}

/// A load or store guest-page fault: a byte access to the UART is served
/// here under the VM's port lock.
#[inline(never)]
fn mmio_exit(ctx: &mut GuestContext, access: Access) -> u64 {
    let gva = csr_read!(STVAL);
    // htval holds bits 63:2 of the guest physical address.
    let gpa = (csr_read!(HTVAL) << 2) | (gva & 3);
    let htinst = csr_read!(HTINST);
    let e = Exit::GuestPageFault {
        access,
        gpa,
        gva,
        htinst,
    };
    let (Some(vm), true) = (ctx.fast.shared, gpa.wrapping_sub(UART_BASE) < UART_SIZE) else {
        return hand_over(ctx, e, false);
    };
    let op = match exit::decode_mmio(htinst, ctx.sepc, gpa, gva) {
        Some(Ok(op)) if op.is_store == (access == Access::Store) && op.width.bytes() == 1 => op,
        _ => return hand_over(ctx, e, false),
    };
    // Register numbers from the decoder are below 32.
    let reg = usize::from(op.reg) & 31;
    let store = op.is_store.then(|| op.truncate(ctx.x[reg]) as u8);
    let a = vm.port.lock().access(gpa - UART_BASE, store);
    if !op.is_store && reg != 0 {
        ctx.x[reg] = op.extend(a.value);
    }
    ctx.sepc = ctx.sepc.wrapping_add(u64::from(op.len));
    ctx.fast.counts.mmio_uart += 1;
    if a.needs_sync {
        // Done, but the vPLIC must follow the UART's new interrupt line.
        return hand_over(ctx, e, true);
    }
    crate::outq::drain();
    1
}
