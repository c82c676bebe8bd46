//! The machine: all VMs, the physical hart's scheduling loop and the exit
//! handlers. Today every vCPU runs on the boot hart, time-sliced; the run
//! loop is written per hart (`Hart`) so secondary harts can join later.

use alloc::vec::Vec;

use crate::arch::{self, csr::*, hext, Caps};
use crate::exit::{self, Access, Exit};
use crate::vm::{Vm, VmState, PLIC_BASE, PLIC_SIZE, UART_BASE, UART_SIZE};
use crate::{csr_read, csr_write};
use rivet_frame_alloc::FrameAllocator;
use rivet_insn::MmioAccess;
use rivet_sbi::{HartState, Outcome, ResetReason, ResetType, SbiCall};

/// Time slice when several vCPUs share a hart, in timebase ticks (10 ms at 10 MHz).
const SLICE_TICKS: u64 = 100_000;

/// What the run loop does after an exit.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Re-enter the same vCPU.
    Resume,
    /// Give the hart to the scheduler (vCPU halted, stopped, or VM changed).
    Reschedule,
}

pub struct Machine {
    pub caps: Caps,
    pub vms: Vec<Vm>,
    pub frames: FrameAllocator,
    pub keep_running: bool,
    pub machine_ids: (u64, u64, u64),
    pub console: crate::console::Console,
    pub host_plic: Option<crate::hostplic::HostPlic>,
    /// (vm, vcpu) whose VS CSRs and FP registers are live on this hart.
    loaded: Option<(usize, usize)>,
    /// Round-robin cursor over (vm, vcpu).
    cursor: usize,
    /// Host timer deadline currently armed.
    armed: u64,
}

impl Machine {
    pub fn new(caps: Caps, frames: FrameAllocator, machine_ids: (u64, u64, u64)) -> Self {
        Self {
            caps,
            vms: Vec::new(),
            frames,
            keep_running: false,
            machine_ids,
            console: crate::console::Console::new(),
            host_plic: None,
            loaded: None,
            cursor: 0,
            armed: u64::MAX,
        }
    }

    fn slots(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for (i, vm) in self.vms.iter().enumerate() {
            for j in 0..vm.vcpus.len() {
                v.push((i, j));
            }
        }
        v
    }

    fn runnable(&self, (v, c): (usize, usize)) -> bool {
        self.vms[v].running() && self.vms[v].vcpus[c].runnable()
    }

    /// Next runnable vCPU after the cursor, round-robin.
    fn pick(&mut self) -> Option<(usize, usize)> {
        let slots = self.slots();
        let n = slots.len();
        for k in 1..=n {
            let idx = (self.cursor + k) % n;
            if self.runnable(slots[idx]) {
                self.cursor = idx;
                return Some(slots[idx]);
            }
        }
        None
    }

    fn others_runnable(&self, me: (usize, usize)) -> bool {
        self.slots().into_iter().any(|s| s != me && self.runnable(s))
    }

    /// The scheduler: runs until every VM has stopped, then returns whether
    /// any of them failed.
    pub fn run(&mut self) -> bool {
        loop {
            self.poll_host();
            if !self.vms.iter().any(|v| v.running()) && !self.keep_running {
                return self.vms.iter().any(|v| v.state == VmState::Stopped { failed: true });
            }
            match self.pick() {
                Some(slot) => self.run_vcpu(slot),
                None => self.idle(),
            }
        }
    }

    /// Nothing to run: sleep until the next wake-up deadline or interrupt.
    fn idle(&mut self) {
        for vm in &mut self.vms {
            vm.flush_output();
        }
        let deadline = self.wake_deadline(None);
        self.arm(deadline);
        hext::wfi();
    }

    /// Earliest time a vCPU other than `running` must be woken (or the
    /// running one's emulated SBI timer).
    fn wake_deadline(&self, running: Option<(usize, usize)>) -> u64 {
        let mut d = u64::MAX;
        for (i, vm) in self.vms.iter().enumerate() {
            if !vm.running() {
                continue;
            }
            for (j, v) in vm.vcpus.iter().enumerate() {
                if v.hsm != HartState::Started && v.hsm != HartState::Suspended {
                    continue;
                }
                if vm.sstc {
                    if Some((i, j)) != running && v.wfi {
                        d = d.min(v.csrs.vstimecmp);
                    }
                } else {
                    d = d.min(v.sbi_deadline);
                }
            }
        }
        d
    }

    fn arm(&mut self, deadline: u64) {
        if deadline != self.armed {
            arch::set_host_timer(&self.caps, deadline);
            self.armed = deadline;
        }
    }

    /// Saves the loaded vCPU's hardware state and loads `slot`'s.
    fn switch_to(&mut self, slot: (usize, usize)) {
        if self.loaded == Some(slot) {
            return;
        }
        if let Some((v, c)) = self.loaded {
            let sstc = self.vms[v].sstc;
            let vcpu = &mut self.vms[v].vcpus[c];
            vcpu.csrs.save(sstc);
            hext::fp_save(&mut vcpu.fp);
        }
        let (v, c) = slot;
        let vm = &mut self.vms[v];
        csr_write!(HGATP, vm.hgatp);
        let vcpu = &mut vm.vcpus[c];
        vcpu.csrs.restore(vm.sstc);
        hext::fp_restore(&vcpu.fp);
        // Another vCPU used this hart's TLB under the same VMID (or
        // another VM did): start clean so no stale VS-stage entry leaks.
        hext::hfence_vvma_all();
        hext::fence_i();
        vcpu.needs_fence = false;
        self.loaded = Some(slot);
    }

    fn run_vcpu(&mut self, slot: (usize, usize)) {
        self.switch_to(slot);
        let (v, c) = slot;
        let mut slice_end = u64::MAX;
        loop {
            // Start (or keep) a time slice whenever another vCPU is waiting.
            if slice_end == u64::MAX && self.others_runnable(slot) {
                slice_end = arch::time().saturating_add(SLICE_TICKS);
            }
            {
                let vcpu = &mut self.vms[v].vcpus[c];
                if vcpu.needs_fence {
                    hext::hfence_vvma_all();
                    hext::fence_i();
                    vcpu.needs_fence = false;
                }
            }
            let deadline = self.wake_deadline(Some(slot)).min(slice_end);
            self.arm(deadline);
            let vcpu = &mut self.vms[v].vcpus[c];
            csr_write!(HVIP, vcpu.hvip);
            arch::trap::enter_guest(&mut vcpu.ctx);
            vcpu.hvip = csr_read!(HVIP);
            let next = self.handle_exit(slot, exit::decode());
            if next == Next::Reschedule || !self.runnable(slot) {
                return;
            }
            if arch::time() >= slice_end && self.others_runnable(slot) {
                return;
            }
        }
    }

    fn handle_exit(&mut self, slot: (usize, usize), e: Exit) -> Next {
        let (v, c) = slot;
        match e {
            Exit::Ecall => self.handle_sbi(slot),
            Exit::GuestPageFault { access, gpa, gva, htinst } => {
                self.handle_guest_fault(slot, access, gpa, gva, htinst)
            }
            Exit::VirtualInstruction { insn } => self.handle_virtual_insn(slot, insn),
            Exit::Interrupt(code) => {
                let st = &mut self.vms[v].vcpus[c].stats;
                match code {
                    IRQ_S_TIMER => st.irq_timer += 1,
                    IRQ_S_EXT => st.irq_external += 1,
                    _ => st.irq_software += 1,
                }
                self.poll_host();
                // Let a vCPU the interrupt woke run promptly (it may be the
                // one this vCPU is spinning on).
                if self.others_runnable(slot) {
                    return Next::Reschedule;
                }
                Next::Resume
            }
            Exit::Other { cause, tval, htval } => {
                self.vms[v].vcpus[c].stats.other += 1;
                self.crash(slot, cause, tval, htval);
                Next::Reschedule
            }
        }
    }

    /// Stops a VM whose guest did something it cannot recover from.
    fn crash(&mut self, (v, c): (usize, usize), cause: u64, tval: u64, htval: u64) {
        let vm = &mut self.vms[v];
        let pc = vm.vcpus[c].ctx.sepc;
        vm.stop(
            true,
            format_args!(
                "guest crashed: vcpu {c} pc={pc:#x} cause={cause} ({}) tval={tval:#x} htval={htval:#x}",
                exit::cause_name(cause)
            ),
        );
    }

    /// Delivers pending host interrupts: timer deadlines, console input, IPIs.
    fn poll_host(&mut self) {
        let sip = csr_read!(SIP);
        if sip & (1 << IRQ_S_TIMER) != 0 || arch::time() >= self.armed {
            self.armed = u64::MAX;
            arch::set_host_timer(&self.caps, u64::MAX);
            self.expire_timers();
        }
        if sip & (1 << IRQ_S_EXT) != 0 {
            if let Some(p) = self.host_plic.take() {
                while let Some(irq) = p.claim() {
                    if Some(irq) == p.uart_irq {
                        self.drain_uart();
                    }
                    p.complete(irq);
                }
                self.host_plic = Some(p);
            } else {
                self.drain_uart();
            }
        } else if self.host_plic.is_none() {
            self.drain_uart();
        }
        if sip & (1 << IRQ_S_SOFT) != 0 {
            crate::csr_clear!(SIP, 1 << IRQ_S_SOFT);
        }
    }

    fn expire_timers(&mut self) {
        let now = arch::time();
        for vm in &mut self.vms {
            let sstc = vm.sstc;
            for v in &mut vm.vcpus {
                if sstc {
                    if v.wfi && v.csrs.vstimecmp <= now {
                        v.wfi = false;
                    }
                } else if v.sbi_deadline <= now {
                    v.hvip |= 1 << IRQ_VS_TIMER;
                    v.sbi_deadline = u64::MAX;
                    v.wfi = false;
                }
            }
        }
    }

    fn drain_uart(&mut self) {
        while let Some(b) = arch::uart::getc() {
            let action = self.console.input(b, self.vms.len());
            self.console_action(action);
        }
    }

    fn console_action(&mut self, a: crate::console::Action) {
        use crate::console::Action;
        match a {
            Action::None => {}
            Action::Byte(b) => {
                let f = self.console.focus;
                if let Some(vm) = self.vms.get_mut(f) {
                    if vm.input.len() < 4096 {
                        vm.input.push_back(b);
                    }
                    vm.sync_irqs();
                }
            }
            Action::Report => crate::console::report(&self.vms),
            Action::Stop(i) => {
                if let Some(vm) = self.vms.get_mut(i) {
                    vm.stop(false, format_args!("stopped from the console"));
                }
            }
            Action::Restart(i) => {
                if let Some(vm) = self.vms.get_mut(i) {
                    vm.reboot();
                }
                if self.loaded.map(|l| l.0) == Some(i) {
                    self.loaded = None;
                }
            }
            Action::PowerOff => {
                for vm in &mut self.vms {
                    if vm.running() {
                        vm.stop(false, format_args!("machine powered off from the console"));
                    }
                }
                self.keep_running = false;
            }
        }
    }

    fn handle_sbi(&mut self, slot: (usize, usize)) -> Next {
        let (v, c) = slot;
        let ids = self.machine_ids;
        let vm = &mut self.vms[v];
        let x = &vm.vcpus[c].ctx.x;
        let call = SbiCall { eid: x[17], fid: x[16], args: [x[10], x[11], x[12], x[13], x[14], x[15]] };
        vm.vcpus[c].stats.sbi[crate::vcpu::ExitStats::sbi_kind(call.eid)] += 1;
        let outcome = {
            let mut env = crate::sbi_env::Env { vm, cur: c, machine_ids: ids };
            rivet_sbi::dispatch(&mut env, &call)
        };
        let vm = &mut self.vms[v];
        match outcome {
            Outcome::Ret(r) => {
                let ctx = &mut vm.vcpus[c].ctx;
                ctx.x[10] = r.error as u64;
                ctx.x[11] = r.value;
                ctx.sepc += 4;
                // An IPI or hart start may have made another vCPU runnable.
                if call.eid == rivet_sbi::eid::HSM || call.eid == rivet_sbi::eid::IPI {
                    return Next::Reschedule;
                }
                Next::Resume
            }
            Outcome::Legacy(a0) => {
                let ctx = &mut vm.vcpus[c].ctx;
                ctx.x[10] = a0 as u64;
                ctx.sepc += 4;
                // Legacy send_ipi may have woken another vCPU.
                if call.eid == 0x04 {
                    return Next::Reschedule;
                }
                Next::Resume
            }
            Outcome::Reset { kind, reason } => {
                match kind {
                    ResetType::Shutdown => {
                        let failed = reason == ResetReason::SystemFailure;
                        vm.stop(failed, format_args!("guest requested shutdown ({reason:?})"));
                    }
                    ResetType::ColdReboot | ResetType::WarmReboot => {
                        vm.flush_output();
                        vm.reboot();
                        self.loaded = None;
                    }
                }
                Next::Reschedule
            }
            Outcome::HartStop => {
                vm.vcpus[c].hsm = HartState::Stopped;
                Next::Reschedule
            }
            Outcome::Suspend { retentive, resume_addr, opaque } => {
                let vcpu = &mut vm.vcpus[c];
                vcpu.ctx.sepc += 4;
                vcpu.ctx.x[10] = 0;
                vcpu.hsm = HartState::Suspended;
                vcpu.resume = (!retentive).then_some((resume_addr, opaque));
                vcpu.wfi = true;
                sync_wake_state(vcpu, vm.sstc);
                self.try_wake(slot);
                Next::Reschedule
            }
        }
    }

    /// A halted vCPU (WFI or suspend) with an enabled interrupt pending
    /// runs again; a non-retentive suspend resumes at its resume address.
    fn try_wake(&mut self, (v, c): (usize, usize)) {
        let loaded = self.loaded == Some((v, c));
        let vm = &mut self.vms[v];
        let sstc = vm.sstc;
        let vcpu = &mut vm.vcpus[c];
        let (vsie, vstimecmp) = if loaded {
            (csr_read!(VSIE), if sstc { csr_read!(VSTIMECMP) } else { u64::MAX })
        } else {
            (vcpu.csrs.vsie, vcpu.csrs.vstimecmp)
        };
        if vcpu.interrupt_pending(vsie, vstimecmp, sstc, arch::time()) {
            vcpu.wfi = false;
        }
    }

    fn handle_virtual_insn(&mut self, slot: (usize, usize), insn: u64) -> Next {
        let (v, c) = slot;
        const WFI: u64 = 0x1050_0073;
        let sstc = self.vms[v].sstc;
        let vcpu = &mut self.vms[v].vcpus[c];
        if insn == WFI {
            vcpu.stats.wfi += 1;
            vcpu.ctx.sepc += 4;
            vcpu.wfi = true;
            sync_wake_state(vcpu, sstc);
            self.try_wake(slot);
            if self.vms[v].vcpus[c].wfi {
                return Next::Reschedule;
            }
            return Next::Resume;
        }
        vcpu.stats.virtual_insn += 1;
        // H-extension instructions, HS CSRs and friends: to the guest they
        // are illegal instructions.
        let vm = &mut self.vms[v];
        if vm.reported.first(1) {
            log::warn!("VM {}: vcpu {c} used a privileged instruction {insn:#x}; injecting illegal instruction", vm.name);
        }
        inject(&mut vm.vcpus[c], exit::CAUSE_ILLEGAL_INSN, insn);
        Next::Resume
    }

    fn handle_guest_fault(&mut self, slot: (usize, usize), access: Access, gpa: u64, gva: u64, htinst: u64) -> Next {
        let (v, c) = slot;
        if access == Access::Fetch {
            self.vms[v].vcpus[c].stats.other += 1;
            self.crash(slot, 20, gva, gpa >> 2);
            return Next::Reschedule;
        }
        let fault_cause = if access == Access::Load { exit::CAUSE_LOAD_ACCESS } else { exit::CAUSE_STORE_ACCESS };
        let vm = &mut self.vms[v];
        let pc = vm.vcpus[c].ctx.sepc;
        let decoded = decode_mmio(htinst, pc);
        let op = match decoded {
            Some(Ok(op)) if op.is_store == (access == Access::Store) => op,
            other => {
                vm.vcpus[c].stats.mmio_unclaimed += 1;
                if vm.reported.first(2) {
                    log::warn!(
                        "VM {}: vcpu {c} pc={pc:#x}: access to {gpa:#x} not emulated ({other:?}); injecting access fault",
                        vm.name
                    );
                }
                inject(&mut vm.vcpus[c], fault_cause, gva);
                return Next::Resume;
            }
        };
        let store_val = op.truncate(vm.vcpus[c].ctx.x[op.reg as usize]);
        let width = op.width.bytes();
        let result: Option<u64> = if (PLIC_BASE..PLIC_BASE + PLIC_SIZE).contains(&gpa) {
            vm.vcpus[c].stats.mmio_plic += 1;
            let off = gpa - PLIC_BASE;
            let r = if op.is_store {
                vm.plic.write(off, width, store_val as u32).then_some(0)
            } else {
                vm.plic.read(off, width).map(u64::from)
            };
            vm.sync_irqs();
            r
        } else if (UART_BASE..UART_BASE + UART_SIZE).contains(&gpa) && width == 1 {
            vm.vcpus[c].stats.mmio_uart += 1;
            let off = gpa - UART_BASE;
            let r = if op.is_store {
                if let Some(b) = vm.uart.write(off, store_val as u8) {
                    vm.emit(&[b]);
                }
                Some(0)
            } else {
                Some(vm.uart.read(off) as u64)
            };
            vm.sync_irqs();
            r
        } else {
            None
        };
        let vcpu = &mut vm.vcpus[c];
        match result {
            Some(val) => {
                if !op.is_store && op.reg != 0 {
                    vcpu.ctx.x[op.reg as usize] = op.extend(val);
                }
                vcpu.ctx.sepc += op.len as u64;
            }
            None => {
                vcpu.stats.mmio_unclaimed += 1;
                if vm.reported.first(3) {
                    log::warn!(
                        "VM {}: vcpu {c} pc={pc:#x}: {} of {width} bytes at unclaimed address {gpa:#x}; injecting access fault",
                        vm.name,
                        if op.is_store { "store" } else { "load" }
                    );
                }
                inject(&mut vm.vcpus[c], fault_cause, gva);
            }
        }
        Next::Resume
    }
}

/// A loaded vCPU going to sleep: copy the live wake-up state (vsie,
/// vstimecmp) to its saved image, which the idle loop reads.
fn sync_wake_state(vcpu: &mut crate::vcpu::Vcpu, sstc: bool) {
    vcpu.csrs.vsie = csr_read!(VSIE);
    if sstc {
        vcpu.csrs.vstimecmp = csr_read!(VSTIMECMP);
    }
}

/// The trapping load/store: from htinst when it holds a transformed
/// instruction, else fetched from guest memory with HLVX. None when the
/// fetch itself faults.
fn decode_mmio(htinst: u64, pc: u64) -> Option<Result<MmioAccess, rivet_insn::DecodeError>> {
    if htinst & 1 == 1 {
        return Some(rivet_insn::decode_transformed(htinst as u32));
    }
    if htinst != 0 {
        // A pseudoinstruction: the fault came from an implicit VS-stage
        // page-table access, i.e. the guest put its page tables in MMIO.
        return Some(Err(rivet_insn::DecodeError::NotLoadStore));
    }
    let lo = hext::hlvx_hu(pc)? as u32;
    let insn = if lo & 3 == 3 { lo | ((hext::hlvx_hu(pc.wrapping_add(2))? as u32) << 16) } else { lo };
    Some(rivet_insn::decode(insn))
}

/// Delivers an exception to the guest as the hardware would have if it had
/// been delegated: VS CSRs updated, pc at vstvec, VS-mode.
pub fn inject(vcpu: &mut crate::vcpu::Vcpu, cause: u64, tval: u64) {
    let ctx = &mut vcpu.ctx;
    let mut vsstatus = csr_read!(VSSTATUS);
    let was_s = ctx.sstatus & SSTATUS_SPP != 0;
    vsstatus &= !(SSTATUS_SPP | SSTATUS_SPIE);
    if was_s {
        vsstatus |= SSTATUS_SPP;
    }
    if vsstatus & SSTATUS_SIE != 0 {
        vsstatus |= SSTATUS_SPIE;
    }
    vsstatus &= !SSTATUS_SIE;
    csr_write!(VSSTATUS, vsstatus);
    csr_write!(VSEPC, ctx.sepc);
    csr_write!(VSCAUSE, cause);
    csr_write!(VSTVAL, tval);
    ctx.sepc = csr_read!(VSTVEC) & !3;
    ctx.sstatus |= SSTATUS_SPP;
    ctx.hstatus |= HSTATUS_SPVP;
}
