//! The machine: all VMs, the per-hart scheduling loop and the exit
//! handlers.
//!
//! Every physical hart runs [`hart_main`]. Shared state (VMs, devices,
//! vCPU scheduling state) lives in one [`Machine`] behind a ticket lock,
//! taken to handle an exit and released while a guest runs. A vCPU is owned
//! by the hart whose slot is in its `running_on`: only that hart touches its
//! registers. Harts tell each other about new work with SBI IPIs ("kicks"):
//! a kicked hart leaves its guest (or its WFI) and looks again.
//!
//! vCPUs pinned to a hart run only there (static partitioning, and they
//! keep their VS CSRs loaded across halts); unpinned vCPUs are time-sliced
//! round-robin over every hart, preempted by the host timer.

use alloc::vec::Vec;

use crate::arch::{self, csr::*, firmware, hext, Caps};
use crate::exit::{self, Access, Exit};
use crate::sync::{HartMutex, HartMutexGuard};
use crate::vm::{Vm, VmState, PLIC_BASE, PLIC_SIZE, UART_BASE, UART_SIZE, VIRTIO_BASE};
use crate::{csr_clear, csr_read, csr_write};
use rivet_frame_alloc::FrameAllocator;
use rivet_sbi::{HartState, Outcome, ResetReason, ResetType, SbiCall};

/// Time slice when several vCPUs share a hart, in timebase ticks (10 ms at 10 MHz).
const SLICE_TICKS: u64 = 100_000;

type Slot = (usize, usize);

/// What the run loop does after an exit.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Re-enter the same vCPU.
    Resume,
    /// Give the hart to the scheduler (vCPU halted, stopped, or VM changed).
    Reschedule,
    /// Re-enter once these vCPUs of the VM have run their remote fences.
    WaitFences(u64),
}

/// Per-physical-hart state shared with other harts.
pub struct HartSlot {
    pub hartid: u64,
    /// In the idle loop (a kick wakes it to look for work).
    pub idle: bool,
    /// Must run hfence.gvma before entering any guest again.
    pub gvma_flush: bool,
    /// Some vCPU is pinned here: the hart is dedicated to its pinned vCPUs
    /// and runs no time-sliced ones.
    pub dedicated: bool,
}

/// State private to one physical hart.
pub struct Hart {
    pub slot: usize,
    /// vCPU whose VS CSRs and FP registers are live in this hart.
    loaded: Option<Slot>,
    /// VM whose VMID this hart's G-stage TLB was last used with.
    last_vm: Option<usize>,
    /// Host timer deadline currently armed.
    armed: u64,
    cursor: usize,
    caps: Caps,
}

pub struct Machine {
    pub caps: Caps,
    pub vms: Vec<Vm>,
    pub frames: FrameAllocator,
    pub keep_running: bool,
    pub machine_ids: (u64, u64, u64),
    pub console: crate::console::Console,
    pub host_plic: Option<crate::hostplic::HostPlic>,
    pub harts: Vec<HartSlot>,
    /// Slot of the hart that owns the physical console (boot hart).
    pub console_hart: usize,
    /// The virtual Ethernet switch joining the VMs' NICs.
    pub switch: rivet_vswitch::Switch,
    /// (vm, nic) behind each switch port (`PortId.0`); `UPLINK` for the
    /// machine's NIC.
    pub port_owner: Vec<(usize, usize)>,
    /// The machine's NIC bridged into one network, and its switch port.
    pub uplink: Option<(crate::physdev::PhysNet, rivet_vswitch::PortId)>,
}

/// `port_owner` entry of the uplink port.
pub const UPLINK: (usize, usize) = (usize::MAX - 1, 0);

static MACHINE: spin::Once<HartMutex<Machine>> = spin::Once::new();

/// Publishes the machine; secondary harts may start after this.
pub fn install(m: Machine) {
    MACHINE.call_once(|| HartMutex::new(m));
}

fn lock() -> HartMutexGuard<'static, Machine> {
    match MACHINE.get() {
        Some(m) => m.lock(),
        None => panic!("machine used before install"),
    }
}

pub fn caps() -> Caps {
    lock().caps
}

/// The scheduling loop of one physical hart (whose slot is already set
/// with `sync::set_current_hart`); never returns (the machine
/// powers off from here when the last VM stops).
pub fn hart_main(slot: usize) -> ! {
    let caps = lock().caps;
    let mut h = Hart {
        slot,
        loaded: None,
        last_vm: None,
        armed: u64::MAX,
        cursor: 0,
        caps,
    };
    loop {
        let mut m = lock();
        m.service(&mut h);
        if !m.vms.iter().any(|v| {
            v.state != VmState::Stopped { failed: false }
                && v.state != VmState::Stopped { failed: true }
        }) && !m.keep_running
        {
            let failed = m
                .vms
                .iter()
                .any(|v| v.state == VmState::Stopped { failed: true });
            m.power_off(failed);
        }
        match m.pick(&mut h) {
            Some(s) => run_vcpu(&mut h, s, m),
            None => {
                let d = m.wake_deadline(&h, None);
                m.harts[h.slot].idle = true;
                if h.slot == m.console_hart {
                    for vm in &mut m.vms {
                        vm.flush_prompt();
                    }
                }
                drop(m);
                crate::outq::drain();
                h.arm(d);
                hext::wfi();
                lock().harts[h.slot].idle = false;
            }
        }
    }
}

/// Runs vCPU `s` on this hart until it halts, stops, or its slice ends.
fn run_vcpu(h: &mut Hart, s: Slot, mut m: HartMutexGuard<'static, Machine>) {
    let (v, c) = s;
    m.vms[v].vcpus[c].running_on = Some(h.slot);
    m.vms[v].vcpus[c].last_hart = Some(h.slot);
    m.switch_to(h, s);
    let ids = m.machine_ids;
    let vm = &mut m.vms[v];
    vm.vcpus[c].ctx.fast.shared = Some(vm.shared);
    vm.vcpus[c].ctx.fast.machine_ids = ids;
    let mut slice_end = u64::MAX;
    loop {
        // A time slice runs while another vCPU waits for this hart; with
        // nobody waiting (any more) there is no slice to enforce.
        if m.others_runnable(h, s) {
            if slice_end == u64::MAX {
                slice_end = arch::time().saturating_add(SLICE_TICKS);
            }
        } else {
            slice_end = u64::MAX;
        }
        if m.harts[h.slot].gvma_flush {
            m.harts[h.slot].gvma_flush = false;
            hext::hfence_gvma_all();
        }
        let deadline = m.wake_deadline(h, Some(s)).min(slice_end);
        let vcpu = &mut m.vms[v].vcpus[c];
        if vcpu.needs_fence {
            hext::hfence_vvma_all();
            hext::fence_i();
            vcpu.needs_fence = false;
        }
        vcpu.irq_set = 0;
        vcpu.irq_clear = 0;
        csr_write!(HVIP, vcpu.hvip);
        let ctx: *mut arch::trap::GuestContext = &mut vcpu.ctx;
        drop(m);
        crate::outq::drain();
        h.arm(deadline);
        // SAFETY: `running_on` marks this hart as the vCPU's owner, so no
        // other hart reads or writes its context until we clear it; the VM
        // and vCPU vectors are never resized after boot, so the pointer
        // stays valid.
        arch::trap::enter_guest(unsafe { &mut *ctx });
        let t_exit = arch::instret();
        let hw_hvip = csr_read!(HVIP);
        m = lock();
        let vcpu = &mut m.vms[v].vcpus[c];
        vcpu.merge_hvip(hw_hvip);
        let fast = &mut vcpu.ctx.fast;
        fast.counts.drain_into(&mut vcpu.stats);
        let (exit, sync_irqs) = (fast.exit.take(), core::mem::take(&mut fast.sync_irqs));
        let ram_size = m.vms[v].ram.size;
        let reason = exit
            .as_ref()
            .map(|e| exit_reason(e, &m.vms[v].vcpus[c].ctx, ram_size));
        let mut next = match exit {
            _ if sync_irqs => {
                // The fast path did a UART access that moved its
                // interrupt line: recompute the VM's interrupts.
                let woken = m.vms[v].sync_irqs();
                m.kick_mask(h, v, woken & !(1 << c));
                Next::Resume
            }
            Some(e) => m.handle_exit(h, s, e),
            None => Next::Resume,
        };
        if let Some(slot) = reason.and_then(|r| m.vms[v].vcpus[c].stats.hs_instret.get_mut(r)) {
            *slot += arch::instret().wrapping_sub(t_exit);
        }
        if let Next::WaitFences(targets) = next {
            drop(m);
            wait_fences(s, targets);
            m = lock();
            next = Next::Resume;
        }
        let runnable = m.runnable(s);
        if next == Next::Reschedule
            || !runnable
            || (arch::time() >= slice_end && m.others_runnable(h, s))
        {
            m.deschedule(h, s);
            return;
        }
    }
}

/// Spins (lock released) until every target vCPU has run its fence or left
/// its hart, doing our own owed fence meanwhile so two vCPUs fencing each
/// other cannot deadlock.
fn wait_fences((v, c): Slot, targets: u64) {
    loop {
        {
            let mut m = lock();
            if m.vms[v].vcpus[c].needs_fence {
                hext::hfence_vvma_all();
                hext::fence_i();
                m.vms[v].vcpus[c].needs_fence = false;
            }
            let vm = &m.vms[v];
            let pending = vm.vcpus.iter().enumerate().any(|(i, t)| {
                i < 64 && targets & (1 << i) != 0 && t.needs_fence && t.running_on.is_some()
            });
            if !pending || !vm.running() {
                return;
            }
        }
        for _ in 0..64 {
            core::hint::spin_loop();
        }
    }
}

impl Hart {
    fn arm(&mut self, deadline: u64) {
        if deadline != self.armed {
            arch::set_host_timer(&self.caps, deadline);
            self.armed = deadline;
        }
    }
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
            harts: Vec::new(),
            console_hart: 0,
            switch: rivet_vswitch::Switch::new(),
            port_owner: Vec::new(),
            uplink: None,
        }
    }

    fn power_off(&mut self, failed: bool) -> ! {
        crate::outq::drain();
        for vm in &mut self.vms {
            vm.flush_output();
            if log::max_level() >= log::LevelFilter::Debug {
                log::debug!("VM {} exit profile:", vm.name);
                let mut t = crate::vcpu::ExitStats::default();
                vm.vcpus.iter().for_each(|v| t.add(&v.stats));
                crate::print_exit_stats(&t);
            }
        }
        log::info!(
            "all VMs stopped; powering off{}",
            if failed { " (a VM failed)" } else { "" }
        );
        crate::outq::drain();
        firmware::shutdown(failed)
    }

    fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.vms
            .iter()
            .enumerate()
            .flat_map(|(i, vm)| (0..vm.vcpus.len()).map(move |j| (i, j)))
    }

    fn runnable(&self, (v, c): Slot) -> bool {
        self.vms[v].running() && self.vms[v].vcpus[c].runnable()
    }

    /// Whether hart `h` may run vCPU `s` now.
    ///
    /// Unpinned vCPUs have a soft affinity: one whose last hart is idle is
    /// left to that hart (whoever made it runnable kicked every idle hart),
    /// so vCPUs do not bounce between harts, losing their loaded state,
    /// while there are harts enough for all of them. A busy last hart lets
    /// any other hart take it.
    fn candidate(&self, h: &Hart, s: Slot) -> bool {
        let vc = &self.vms[s.0].vcpus[s.1];
        let allowed = match vc.pin {
            Some(p) => p == h.slot,
            None => {
                !self.harts[h.slot].dedicated
                    && !vc.last_hart.is_some_and(|l| {
                        l != h.slot && self.harts.get(l).is_some_and(|o| o.idle && !o.dedicated)
                    })
            }
        };
        self.runnable(s) && vc.running_on.is_none() && allowed
    }

    /// Next vCPU for this hart, round-robin.
    fn pick(&mut self, h: &mut Hart) -> Option<Slot> {
        let all: Vec<Slot> = self.slots().collect();
        let n = all.len();
        for k in 1..=n {
            let idx = (h.cursor + k) % n;
            if self.candidate(h, all[idx]) {
                h.cursor = idx;
                return Some(all[idx]);
            }
        }
        None
    }

    fn others_runnable(&self, h: &Hart, me: Slot) -> bool {
        self.slots().any(|s| s != me && self.candidate(h, s))
    }

    /// Earliest time this hart must wake to deliver a timer to a vCPU it
    /// may run (its emulated SBI timer, or an Sstc timer of a halted one).
    fn wake_deadline(&self, h: &Hart, running: Option<Slot>) -> u64 {
        let mut d = u64::MAX;
        for (i, vm) in self.vms.iter().enumerate() {
            if !vm.running() {
                continue;
            }
            for (j, v) in vm.vcpus.iter().enumerate() {
                let mine = match v.pin {
                    Some(p) => p == h.slot,
                    None => !self.harts[h.slot].dedicated,
                };
                if !mine || !matches!(v.hsm, HartState::Started | HartState::Suspended) {
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

    /// Loads vCPU `s`'s VS CSRs and FP state into this hart.
    fn switch_to(&mut self, h: &mut Hart, s: Slot) {
        let (v, c) = s;
        if h.loaded == Some(s) && !self.vms[v].vcpus[c].reload {
            return;
        }
        if let Some((pv, pc)) = h.loaded.take() {
            if (pv, pc) != s {
                let sstc = self.vms[pv].sstc;
                let prev = &mut self.vms[pv].vcpus[pc];
                prev.csrs.save(sstc);
                hext::fp_save(&mut prev.fp);
            }
        }
        let shared_vmid = h
            .last_vm
            .is_some_and(|l| l != v && self.vms[l].vmid == self.vms[v].vmid);
        let vm = &mut self.vms[v];
        csr_write!(HGATP, vm.hgatp);
        if shared_vmid {
            // VMIDs ran out and two VMs share this one: flush it.
            hext::hfence_gvma_vmid(vm.vmid);
        }
        let vcpu = &mut vm.vcpus[c];
        vcpu.csrs.restore(vm.sstc);
        hext::fp_restore(&vcpu.fp);
        vcpu.reload = false;
        // Another vCPU used this hart's TLB under the same VMID: start
        // clean so no stale VS-stage entry leaks between vCPUs.
        hext::hfence_vvma_all();
        hext::fence_i();
        vcpu.needs_fence = false;
        h.loaded = Some(s);
        h.last_vm = Some(v);
    }

    /// Takes vCPU `s` off this hart. Pinned vCPUs stay loaded here (nobody
    /// else may run them); others are saved so any hart can pick them up.
    fn deschedule(&mut self, h: &mut Hart, s: Slot) {
        let sstc = self.vms[s.0].sstc;
        let vcpu = &mut self.vms[s.0].vcpus[s.1];
        vcpu.running_on = None;
        if vcpu.pin != Some(h.slot) && h.loaded == Some(s) {
            vcpu.csrs.save(sstc);
            hext::fp_save(&mut vcpu.fp);
            h.loaded = None;
        }
    }

    /// Tells the hart that runs (or should run) vCPU `s` to look again.
    fn kick(&self, h: &Hart, (v, c): Slot) {
        let vc = &self.vms[v].vcpus[c];
        match vc.running_on.or(vc.pin) {
            Some(t) if t != h.slot => self.ipi(t),
            Some(_) => {}
            None => {
                for (i, hs) in self.harts.iter().enumerate() {
                    if i != h.slot && hs.idle && !hs.dedicated {
                        self.ipi(i);
                    }
                }
            }
        }
    }

    fn kick_mask(&self, h: &Hart, v: usize, mask: u64) {
        for c in 0..self.vms[v].vcpus.len().min(64) {
            if mask & (1 << c) != 0 {
                self.kick(h, (v, c));
            }
        }
    }

    /// Makes every hart running a vCPU of VM `v` leave it.
    fn kick_vm(&self, h: &Hart, v: usize) {
        for c in 0..self.vms[v].vcpus.len() {
            if self.vms[v].vcpus[c].running_on.is_some() {
                self.kick(h, (v, c));
            }
        }
    }

    fn ipi(&self, slot: usize) {
        if let Some(hs) = self.harts.get(slot) {
            firmware::send_ipi(1, hs.hartid);
        }
    }

    /// Requests hfence.gvma on every hart (G-stage mappings changed or a
    /// VMID is being reused).
    #[allow(dead_code)]
    pub fn gstage_shootdown(&mut self, h: &Hart) {
        for i in 0..self.harts.len() {
            self.harts[i].gvma_flush = true;
            if i != h.slot {
                self.ipi(i);
            }
        }
    }

    /// Host-side work: kicks, timers, console input, deferred reboots.
    fn service(&mut self, h: &mut Hart) {
        let sip = csr_read!(SIP);
        if sip & (1 << IRQ_S_SOFT) != 0 {
            csr_clear!(SIP, 1 << IRQ_S_SOFT);
        }
        if self.harts[h.slot].gvma_flush {
            self.harts[h.slot].gvma_flush = false;
            hext::hfence_gvma_all();
        }
        if sip & (1 << IRQ_S_TIMER) != 0 || arch::time() >= h.armed {
            h.armed = u64::MAX;
            arch::set_host_timer(&self.caps, u64::MAX);
            self.expire_timers(h);
        }
        if h.slot == self.console_hart {
            if let Some(p) = self.host_plic.take() {
                if sip & (1 << IRQ_S_EXT) != 0 {
                    while let Some(irq) = p.claim() {
                        if Some(irq) == p.uart_irq {
                            self.drain_uart(h);
                        } else if let Some((dev, _)) = self.uplink.as_mut() {
                            // The machine's NIC: frames are taken in pump_net below.
                            dev.ack_interrupt();
                        }
                        p.complete(irq);
                    }
                }
                self.host_plic = Some(p);
            } else {
                self.drain_uart(h);
            }
        }
        if !self.port_owner.is_empty() {
            self.pump_net(h);
        }
        for v in 0..self.vms.len() {
            if self.vms[v].running()
                && (self.vms[v].hvc.is_some()
                    || self.vms[v].rng.is_some()
                    || !self.vms[v].fs.is_empty())
            {
                self.vms[v].poll_devices();
                let woken = self.vms[v].sync_irqs();
                self.kick_mask(h, v, woken);
            }
            if self.vms[v].state == VmState::Rebooting && !self.vms[v].any_running() {
                self.vms[v].reboot(&mut self.frames);
                if h.loaded.is_some_and(|l| l.0 == v) {
                    h.loaded = None;
                }
                self.kick_vm_all(h, v);
            }
        }
    }

    /// After a reboot: wake the harts vCPU 0 may run on.
    fn kick_vm_all(&self, h: &Hart, v: usize) {
        if !self.vms[v].vcpus.is_empty() {
            self.kick(h, (v, 0));
        }
    }

    fn expire_timers(&mut self, h: &Hart) {
        let now = arch::time();
        let mut woken: Vec<Slot> = Vec::new();
        for (i, vm) in self.vms.iter_mut().enumerate() {
            let sstc = vm.sstc;
            for (j, v) in vm.vcpus.iter_mut().enumerate() {
                if sstc {
                    if v.wfi && v.csrs.vstimecmp <= now {
                        v.wfi = false;
                        woken.push((i, j));
                    }
                } else if v.sbi_deadline <= now {
                    v.raise(1 << IRQ_VS_TIMER);
                    v.sbi_deadline = u64::MAX;
                    v.wfi = false;
                    woken.push((i, j));
                }
            }
        }
        for s in woken {
            self.kick(h, s);
        }
    }

    fn drain_uart(&mut self, h: &Hart) {
        while let Some(b) = arch::uart::getc() {
            let action = self.console.input(b, self.vms.len());
            self.console_action(h, action);
        }
    }

    fn console_action(&mut self, h: &Hart, a: crate::console::Action) {
        use crate::console::Action;
        match a {
            Action::None => {}
            Action::Byte(b) => {
                let f = self.console.focus;
                let to_hvc = self.console.to_hvc;
                if let Some(vm) = self.vms.get_mut(f) {
                    match vm.hvc.as_mut() {
                        Some(hvc) if to_hvc => {
                            hvc.dev.device_mut().push_input(&[b]);
                            vm.poll_devices();
                        }
                        _ => vm.shared.port.lock().push_input(b),
                    }
                    let woken = vm.sync_irqs();
                    self.kick_mask(h, f, woken);
                }
            }
            Action::Report => {
                crate::console::report(&self.vms, &self.harts);
                crate::console::report_switch(&self.switch, &self.port_owner, &self.vms);
            }
            Action::Stop(i) => {
                if let Some(vm) = self.vms.get_mut(i) {
                    vm.stop(false, format_args!("stopped from the console"));
                    self.kick_vm(h, i);
                }
            }
            Action::Restart(i) => {
                if let Some(vm) = self.vms.get_mut(i) {
                    log::info!("VM {}: restart requested from the console", vm.name);
                    vm.state = VmState::Rebooting;
                    self.kick_vm(h, i);
                }
            }
            Action::PowerOff => {
                for (i, vm) in self.vms.iter_mut().enumerate() {
                    if vm.running() {
                        vm.stop(false, format_args!("machine powered off from the console"));
                    }
                    let _ = i;
                }
                self.keep_running = false;
            }
        }
    }

    fn handle_exit(&mut self, h: &mut Hart, s: Slot, e: Exit) -> Next {
        let (v, c) = s;
        match e {
            Exit::Ecall => self.handle_sbi(h, s),
            Exit::GuestPageFault {
                access,
                gpa,
                gva,
                htinst,
            } => self.handle_guest_fault(h, s, access, gpa, gva, htinst),
            Exit::VirtualInstruction { insn } => self.handle_virtual_insn(h, s, insn),
            Exit::Interrupt(code) => {
                let st = &mut self.vms[v].vcpus[c].stats;
                match code {
                    IRQ_S_TIMER => st.irq_timer += 1,
                    IRQ_S_EXT => st.irq_external += 1,
                    _ => st.irq_software += 1,
                }
                self.service(h);
                // Let a vCPU the interrupt woke run promptly (it may be the
                // one this vCPU is spinning on).
                if self.others_runnable(h, s) {
                    return Next::Reschedule;
                }
                Next::Resume
            }
            Exit::Other { cause, tval, htval } => {
                self.vms[v].vcpus[c].stats.other += 1;
                self.crash(h, s, cause, tval, htval);
                Next::Reschedule
            }
        }
    }

    /// Stops a VM whose guest did something it cannot recover from.
    fn crash(&mut self, h: &Hart, (v, c): Slot, cause: u64, tval: u64, htval: u64) {
        let vm = &mut self.vms[v];
        let pc = vm.vcpus[c].ctx.sepc;
        vm.stop(
            true,
            format_args!(
                "guest crashed: vcpu {c} pc={pc:#x} cause={cause} ({}) tval={tval:#x} htval={htval:#x}",
                exit::cause_name(cause)
            ),
        );
        self.kick_vm(h, v);
    }

    fn handle_sbi(&mut self, h: &mut Hart, s: Slot) -> Next {
        let (v, c) = s;
        let ids = self.machine_ids;
        let vm = &mut self.vms[v];
        let x = &vm.vcpus[c].ctx.x;
        let call = SbiCall {
            eid: x[17],
            fid: x[16],
            args: [x[10], x[11], x[12], x[13], x[14], x[15]],
        };
        vm.vcpus[c].stats.sbi[crate::vcpu::ExitStats::sbi_kind(call.eid)] += 1;
        let (outcome, kicks, fence_wait) = {
            let mut env = crate::sbi_env::Env {
                vm,
                cur: c,
                machine_ids: ids,
                kicks: 0,
                fence_wait: 0,
            };
            let o = rivet_sbi::dispatch(&mut env, &call);
            (o, env.kicks, env.fence_wait)
        };
        self.kick_mask(h, v, kicks);
        let vm = &mut self.vms[v];
        match outcome {
            Outcome::Ret(r) => {
                let ctx = &mut vm.vcpus[c].ctx;
                ctx.x[10] = r.error as u64;
                ctx.x[11] = r.value;
                ctx.sepc = ctx.sepc.wrapping_add(4);
                if fence_wait != 0 {
                    return Next::WaitFences(fence_wait);
                }
                Next::Resume
            }
            Outcome::Legacy(a0) => {
                let ctx = &mut vm.vcpus[c].ctx;
                ctx.x[10] = a0 as u64;
                ctx.sepc = ctx.sepc.wrapping_add(4);
                if fence_wait != 0 {
                    return Next::WaitFences(fence_wait);
                }
                Next::Resume
            }
            Outcome::Reset { kind, reason } => {
                match kind {
                    ResetType::Shutdown => {
                        let failed = reason == ResetReason::SystemFailure;
                        vm.stop(
                            failed,
                            format_args!("guest requested shutdown ({reason:?})"),
                        );
                    }
                    ResetType::ColdReboot | ResetType::WarmReboot => {
                        vm.flush_output();
                        vm.state = VmState::Rebooting;
                    }
                }
                self.kick_vm(h, v);
                Next::Reschedule
            }
            Outcome::HartStop => {
                vm.vcpus[c].hsm = HartState::Stopped;
                Next::Reschedule
            }
            Outcome::Suspend {
                retentive,
                resume_addr,
                opaque,
            } => {
                let sstc = vm.sstc;
                let vcpu = &mut vm.vcpus[c];
                vcpu.ctx.sepc = vcpu.ctx.sepc.wrapping_add(4);
                vcpu.ctx.x[10] = 0;
                vcpu.hsm = HartState::Suspended;
                vcpu.resume = (!retentive).then_some((resume_addr, opaque));
                vcpu.wfi = true;
                sync_wake_state(vcpu, sstc);
                self.try_wake(h, s);
                Next::Reschedule
            }
        }
    }

    /// A halted vCPU (WFI or suspend) with an enabled interrupt pending
    /// runs again.
    fn try_wake(&mut self, h: &Hart, (v, c): Slot) {
        let loaded = h.loaded == Some((v, c));
        let vm = &mut self.vms[v];
        let sstc = vm.sstc;
        let vcpu = &mut vm.vcpus[c];
        let (vsie, vstimecmp) = if loaded {
            (
                csr_read!(VSIE),
                if sstc { csr_read!(VSTIMECMP) } else { u64::MAX },
            )
        } else {
            (vcpu.csrs.vsie, vcpu.csrs.vstimecmp)
        };
        if vcpu.interrupt_pending(vsie, vstimecmp, sstc, arch::time()) {
            vcpu.wfi = false;
        }
    }

    fn handle_virtual_insn(&mut self, h: &mut Hart, s: Slot, insn: u64) -> Next {
        let (v, c) = s;
        const WFI: u64 = 0x1050_0073;
        let sstc = self.vms[v].sstc;
        let vcpu = &mut self.vms[v].vcpus[c];
        // WFI from VU-mode (guest user space): an illegal instruction, as a
        // U-mode WFI is on a real machine; a guest process must not be able
        // to park its vCPU.
        let from_vu = vcpu.ctx.sstatus & SSTATUS_SPP == 0;
        if insn == WFI && !from_vu {
            vcpu.stats.wfi += 1;
            vcpu.ctx.sepc = vcpu.ctx.sepc.wrapping_add(4);
            vcpu.wfi = true;
            sync_wake_state(vcpu, sstc);
            self.try_wake(h, s);
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
            log::warn!("VM {}: vcpu {c} used a privileged instruction {insn:#x}; injecting illegal instruction (reported once)", vm.name);
        }
        inject(&mut vm.vcpus[c], exit::CAUSE_ILLEGAL_INSN, insn);
        Next::Resume
    }

    fn handle_guest_fault(
        &mut self,
        h: &mut Hart,
        s: Slot,
        access: Access,
        gpa: u64,
        gva: u64,
        htinst: u64,
    ) -> Next {
        let (v, c) = s;
        // First touch of a RAM chunk: zero and map it, and retry.
        let vm = &mut self.vms[v];
        if let Some(off) = gpa.checked_sub(vm.ram.gpa).filter(|&o| o < vm.ram.size) {
            vm.vcpus[c].stats.ram_populate += 1;
            if vm.populate(&mut self.frames, off / crate::mm::CHUNK) {
                // Drop any stale invalid translation this hart may hold.
                hext::hfence_gvma_vmid(vm.vmid);
                return Next::Resume;
            }
            vm.stop(true, format_args!("no memory to map its RAM at {gpa:#x}"));
            self.kick_vm(h, v);
            return Next::Reschedule;
        }
        if access == Access::Fetch {
            self.vms[v].vcpus[c].stats.other += 1;
            self.crash(h, s, 20, gva, gpa >> 2);
            return Next::Reschedule;
        }
        let fault_cause = if access == Access::Load {
            exit::CAUSE_LOAD_ACCESS
        } else {
            exit::CAUSE_STORE_ACCESS
        };
        let vm = &mut self.vms[v];
        let pc = vm.vcpus[c].ctx.sepc;
        let op = match exit::decode_mmio(htinst, pc, gpa, gva) {
            Some(Ok(op)) if op.is_store == (access == Access::Store) => op,
            other => {
                vm.vcpus[c].stats.mmio_unclaimed += 1;
                if vm.reported.first(2) {
                    log::warn!(
                        "VM {}: vcpu {c} pc={pc:#x}: access to {gpa:#x} not emulated ({other:?}); injecting access fault (reported once)",
                        vm.name
                    );
                }
                inject(&mut vm.vcpus[c], fault_cause, gva);
                return Next::Resume;
            }
        };
        let store_val = op.truncate(vm.vcpus[c].ctx.x[op.reg as usize]);
        let width = op.width.bytes();
        let mut woken = 0;
        let mut pump = false;
        let result: Option<u64> = if (PLIC_BASE..PLIC_BASE + PLIC_SIZE).contains(&gpa) {
            vm.vcpus[c].stats.mmio_plic += 1;
            let off = gpa - PLIC_BASE;
            let r = if op.is_store {
                vm.plic.write(off, width, store_val as u32).then_some(0)
            } else {
                vm.plic.read(off, width).map(u64::from)
            };
            woken = vm.sync_irqs();
            r
        } else if (UART_BASE..UART_BASE + UART_SIZE).contains(&gpa) && width == 1 {
            // The fast path serves these (fastpath.rs); this copy of the
            // call only runs if it was bypassed.
            vm.vcpus[c].stats.mmio_uart += 1;
            let a = vm
                .shared
                .port
                .lock()
                .access(gpa - UART_BASE, op.is_store.then_some(store_val as u8));
            if a.needs_sync {
                woken = vm.sync_irqs();
            }
            Some(a.value)
        } else if gpa >= VIRTIO_BASE {
            match vm.virtio_access(gpa, op.is_store, width, store_val) {
                Some(r) => {
                    vm.vcpus[c].stats.mmio_virtio += 1;
                    woken = vm.sync_irqs();
                    if !vm.nets.is_empty() {
                        pump = true;
                    }
                    r
                }
                None => None,
            }
        } else {
            None
        };
        let vcpu = &mut vm.vcpus[c];
        match result {
            Some(val) => {
                if !op.is_store && op.reg != 0 {
                    vcpu.ctx.x[op.reg as usize] = op.extend(val);
                }
                vcpu.ctx.sepc = vcpu.ctx.sepc.wrapping_add(op.len as u64);
            }
            None => {
                vcpu.stats.mmio_unclaimed += 1;
                if vm.reported.first(3) {
                    log::warn!(
                        "VM {}: vcpu {c} pc={pc:#x}: {} of {width} bytes at unclaimed address {gpa:#x}; injecting access fault (reported once)",
                        vm.name,
                        if op.is_store { "store" } else { "load" }
                    );
                }
                inject(&mut vm.vcpus[c], fault_cause, gva);
            }
        }
        self.kick_mask(h, v, woken & !(1 << c));
        if pump {
            self.pump_net(h);
        }
        Next::Resume
    }

    /// Moves frames from every NIC's outbox through the switch into the
    /// receiving NICs, lets the devices fill guest buffers, and raises their
    /// interrupts. Bounded: a few rounds, each limited by the outboxes.
    fn pump_net(&mut self, h: &Hart) {
        let mut touched = 0u64;
        for _round in 0..4 {
            let mut moved = false;
            let Machine {
                switch,
                vms,
                port_owner,
                uplink,
                ..
            } = self;
            // Frames from the outside world, at most a queue's worth.
            let mut inbound: Vec<Vec<u8>> = Vec::new();
            if let Some((dev, _)) = uplink.as_mut() {
                while inbound.len() < 16 && dev.can_recv() {
                    match dev.receive() {
                        Ok(rx) => {
                            inbound.push(rx.packet().to_vec());
                            let _ = dev.recycle_rx_buffer(rx);
                        }
                        Err(_) => break,
                    }
                }
            }
            let mut deliver =
                |to: rivet_vswitch::PortId, fr: &[u8], vms: &mut Vec<Vm>, touched: &mut u64| {
                    match port_owner.get(to.0 as usize) {
                        Some(&UPLINK) => {
                            if let Some((dev, _)) = uplink.as_mut() {
                                let _ = dev.send(virtio_drivers::device::net::TxBuffer::from(fr));
                            }
                        }
                        Some(&(dv, dk)) => {
                            if let Some(vm) = vms.get_mut(dv) {
                                if vm.running() {
                                    if let Some(n) = vm.nets.get_mut(dk) {
                                        n.slot.dev.device_mut().receive(fr);
                                    }
                                    if dv < 64 {
                                        *touched |= 1 << dv;
                                    }
                                }
                            }
                        }
                        None => {}
                    }
                };
            if let Some(up) = port_owner.iter().position(|&o| o == UPLINK) {
                for frame in &inbound {
                    moved = true;
                    switch.input(rivet_vswitch::PortId(up as u16), frame, &mut |to, fr| {
                        deliver(to, fr, vms, &mut touched)
                    });
                }
            }
            for v in 0..vms.len() {
                for k in 0..vms[v].nets.len() {
                    let port = vms[v].nets[k].port;
                    while let Some(frame) = vms[v].nets[k].slot.dev.device_mut().backend_mut().pop()
                    {
                        moved = true;
                        if v < 64 {
                            touched |= 1 << v;
                        }
                        switch.input(port, &frame, &mut |to, fr| {
                            deliver(to, fr, vms, &mut touched)
                        });
                    }
                }
            }
            for v in 0..vms.len() {
                if touched & (1 << v.min(63)) != 0 && vms[v].running() {
                    vms[v].poll_devices();
                }
            }
            if !moved {
                break;
            }
        }
        for v in 0..self.vms.len().min(64) {
            if touched & (1 << v) != 0 {
                let woken = self.vms[v].sync_irqs();
                self.kick_mask(h, v, woken);
            }
        }
    }
}

/// The exit-profile reason (an [`ExitStats`](crate::vcpu::ExitStats)
/// counter index) an exit will be counted under, for the HS-instruction
/// profile; judged from the exit alone, before it is handled.
fn exit_reason(e: &Exit, ctx: &arch::trap::GuestContext, ram_size: u64) -> usize {
    use crate::vcpu::ExitStats as S;
    const WFI: u64 = 0x1050_0073;
    match *e {
        Exit::Ecall => S::sbi_kind(ctx.x[17]),
        Exit::GuestPageFault { gpa, .. } => {
            if gpa.wrapping_sub(crate::vm::RAM_BASE) < ram_size {
                S::RAM_POPULATE
            } else if gpa.wrapping_sub(PLIC_BASE) < PLIC_SIZE {
                S::MMIO_PLIC
            } else if gpa.wrapping_sub(UART_BASE) < UART_SIZE {
                S::MMIO_UART
            } else if gpa >= VIRTIO_BASE {
                S::MMIO_VIRTIO
            } else {
                S::MMIO_UNCLAIMED
            }
        }
        Exit::VirtualInstruction { insn } if insn == WFI => S::WFI,
        Exit::VirtualInstruction { .. } => S::VIRTUAL_INSN,
        Exit::Interrupt(IRQ_S_TIMER) => S::IRQ_TIMER,
        Exit::Interrupt(IRQ_S_EXT) => S::IRQ_EXT,
        Exit::Interrupt(_) => S::IRQ_SOFT,
        Exit::Other { .. } => S::OTHER,
    }
}

/// A loaded vCPU going to sleep: copy the live wake-up state (vsie,
/// vstimecmp) to its saved image, which other harts and the idle loop read.
fn sync_wake_state(vcpu: &mut crate::vcpu::Vcpu, sstc: bool) {
    vcpu.csrs.vsie = csr_read!(VSIE);
    if sstc {
        vcpu.csrs.vstimecmp = csr_read!(VSTIMECMP);
    }
}

/// Delivers an exception to the guest as the hardware would have if it had
/// been delegated: VS CSRs updated, pc at vstvec, VS-mode. Only for the
/// vCPU loaded on this hart.
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
