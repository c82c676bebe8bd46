//! The hypervisor side of SBI: `rivet_sbi` decides every call, this file
//! carries out its requests on the calling VM (timers, IPIs, fences, HSM,
//! console), never forwarding anything to the firmware.

use crate::arch::{self, csr::*, hext};
use crate::csr_write;
use crate::mm::GuestRam;
use crate::vm::Vm;
use rivet_sbi::{Fence, HartSet, HartState, SbiEnv};

pub struct Env<'a> {
    pub vm: &'a mut Vm,
    /// The calling vCPU (loaded on this hart: its VS CSRs are live).
    pub cur: usize,
    pub machine_ids: (u64, u64, u64),
    /// vCPUs (bitmask) whose harts must be kicked after the call.
    pub kicks: u64,
    /// vCPUs (bitmask) running elsewhere that owe a fence before the call
    /// may return.
    pub fence_wait: u64,
}

impl Env<'_> {
    /// Applies a fence to the calling vCPU now (hgatp holds this VM's VMID).
    fn local_fence(fence: Fence) {
        match fence {
            Fence::I => hext::fence_i(),
            Fence::Vma { start, size } => fence_range(start, size, None),
            Fence::VmaAsid { start, size, asid } => fence_range(start, size, Some(asid)),
        }
    }
}

fn bit(hart: usize) -> u64 {
    if hart < 64 {
        1 << hart
    } else {
        0
    }
}

/// Page-by-page hfence.vvma for small ranges, one full fence otherwise
/// (SBI: size 0 or all-ones, or an overflowing range, means everything).
fn fence_range(start: u64, size: u64, asid: Option<u64>) {
    const MAX_PAGES: u64 = 64;
    let pages = size.div_ceil(4096);
    let fits = start.checked_add(size).is_some();
    if size == 0 || size == u64::MAX || pages > MAX_PAGES || !fits {
        match asid {
            Some(a) => hext::hfence_vvma_asid(a),
            None => hext::hfence_vvma_all(),
        }
        return;
    }
    let mut va = start & !4095;
    for _ in 0..=pages {
        match asid {
            Some(a) => hext::hfence_vvma_addr_asid(va, a),
            None => hext::hfence_vvma_addr(va),
        }
        va = va.wrapping_add(4096);
    }
}

impl SbiEnv for Env<'_> {
    type Mem = GuestRam;

    fn mem(&mut self) -> &mut GuestRam {
        &mut self.vm.ram
    }

    fn console_write(&mut self, bytes: &[u8]) {
        self.vm.emit(bytes);
    }

    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        self.vm.shared.port.lock().read_input(buf)
    }

    fn vcpu_count(&self) -> usize {
        self.vm.vcpus.len()
    }

    fn current_hart(&self) -> usize {
        self.cur
    }

    fn hart_state(&self, hart: usize) -> HartState {
        self.vm
            .vcpus
            .get(hart)
            .map(|v| v.hsm)
            .unwrap_or(HartState::Stopped)
    }

    fn hart_start(&mut self, hart: usize, start_addr: u64, opaque: u64) {
        if let Some(v) = self.vm.vcpus.get_mut(hart) {
            v.reset_to(start_addr, opaque);
            self.kicks |= bit(hart);
        }
    }

    fn set_timer(&mut self, stime: u64) {
        let sstc = self.vm.sstc;
        let Some(v) = self.vm.vcpus.get_mut(self.cur) else {
            return;
        };
        if sstc {
            // The hardware comparator drives VSTIP from vstimecmp.
            v.csrs.vstimecmp = stime;
            csr_write!(VSTIMECMP, stime);
        } else {
            v.lower(1 << IRQ_VS_TIMER);
            if stime <= arch::time() {
                v.raise(1 << IRQ_VS_TIMER);
                v.sbi_deadline = u64::MAX;
            } else {
                v.sbi_deadline = stime;
            }
        }
    }

    fn send_ipi(&mut self, targets: HartSet) {
        for h in targets.iter() {
            if let Some(v) = self.vm.vcpus.get_mut(h) {
                v.raise(1 << IRQ_VS_SOFT);
                v.wfi = false;
                self.kicks |= bit(h);
            }
        }
    }

    fn remote_fence(&mut self, targets: HartSet, fence: Fence) {
        for h in targets.iter() {
            if h == self.cur {
                Self::local_fence(fence);
            } else if let Some(v) = self.vm.vcpus.get_mut(h) {
                // It fences before it next enters the guest; if it is in the
                // guest on another hart now, kick it and wait for that.
                v.needs_fence = true;
                if v.running_on.is_some() {
                    self.kicks |= bit(h);
                    self.fence_wait |= bit(h);
                }
            }
        }
    }

    fn clear_ipi(&mut self) -> bool {
        let Some(v) = self.vm.vcpus.get_mut(self.cur) else {
            return false;
        };
        let was = v.hvip & (1 << IRQ_VS_SOFT) != 0;
        v.lower(1 << IRQ_VS_SOFT);
        was
    }

    fn read_legacy_hart_mask(&mut self, va: u64) -> Option<u64> {
        hext::hlv_d(va)
    }

    fn machine_ids(&self) -> (u64, u64, u64) {
        self.machine_ids
    }
}
