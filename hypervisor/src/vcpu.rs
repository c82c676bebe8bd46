//! A virtual hart: guest registers, VS-level CSRs, FP state, HSM state and
//! per-exit statistics. Loading/saving the VS CSRs happens only when a
//! different vCPU is switched onto the physical hart.

use crate::arch::csr::*;
use crate::arch::hext::FpState;
use crate::arch::trap::GuestContext;
use crate::{csr_read, csr_write};
use rivet_sbi::HartState;

/// VS CSRs that live in hardware while the vCPU is loaded.
#[derive(Debug, Clone, Default)]
pub struct VsCsrs {
    pub vsstatus: u64,
    pub vsie: u64,
    pub vstvec: u64,
    pub vsscratch: u64,
    pub vsepc: u64,
    pub vscause: u64,
    pub vstval: u64,
    pub vsatp: u64,
    pub vstimecmp: u64,
}

impl VsCsrs {
    pub fn save(&mut self, sstc: bool) {
        self.vsstatus = csr_read!(VSSTATUS);
        self.vsie = csr_read!(VSIE);
        self.vstvec = csr_read!(VSTVEC);
        self.vsscratch = csr_read!(VSSCRATCH);
        self.vsepc = csr_read!(VSEPC);
        self.vscause = csr_read!(VSCAUSE);
        self.vstval = csr_read!(VSTVAL);
        self.vsatp = csr_read!(VSATP);
        if sstc {
            self.vstimecmp = csr_read!(VSTIMECMP);
        }
    }

    pub fn restore(&self, sstc: bool) {
        csr_write!(VSSTATUS, self.vsstatus);
        csr_write!(VSIE, self.vsie);
        csr_write!(VSTVEC, self.vstvec);
        csr_write!(VSSCRATCH, self.vsscratch);
        csr_write!(VSEPC, self.vsepc);
        csr_write!(VSCAUSE, self.vscause);
        csr_write!(VSTVAL, self.vstval);
        csr_write!(VSATP, self.vsatp);
        if sstc {
            csr_write!(VSTIMECMP, self.vstimecmp);
        }
    }
}

/// Why the vCPU left the guest, counted per reason.
#[derive(Debug, Clone, Default)]
pub struct ExitStats {
    pub sbi: [u64; ExitStats::SBI_KINDS],
    pub mmio_uart: u64,
    pub mmio_plic: u64,
    pub mmio_virtio: u64,
    pub mmio_unclaimed: u64,
    /// First touches of a RAM chunk (zeroed and mapped on demand).
    pub ram_populate: u64,
    pub wfi: u64,
    pub virtual_insn: u64,
    pub irq_timer: u64,
    pub irq_external: u64,
    pub irq_software: u64,
    pub other: u64,
    /// Instructions the hypervisor spent on full-path exits, per reason
    /// (indexed like [`ExitStats::counters`]); fast-path exits are not
    /// timed (the micro-benchmarks give their cost).
    pub hs_instret: [u64; ExitStats::KINDS],
}

impl ExitStats {
    pub const SBI_KINDS: usize = 9;
    /// Number of exit reasons (SBI kinds, then the rest).
    pub const KINDS: usize = Self::SBI_KINDS + 11;

    /// Indices of the non-SBI reasons in [`ExitStats::counters`] and
    /// [`ExitStats::hs_instret`] (the SBI kinds come first, by `sbi_kind`).
    pub const MMIO_UART: usize = Self::SBI_KINDS;
    pub const MMIO_PLIC: usize = Self::SBI_KINDS + 1;
    pub const MMIO_VIRTIO: usize = Self::SBI_KINDS + 2;
    pub const MMIO_UNCLAIMED: usize = Self::SBI_KINDS + 3;
    pub const RAM_POPULATE: usize = Self::SBI_KINDS + 4;
    pub const WFI: usize = Self::SBI_KINDS + 5;
    pub const VIRTUAL_INSN: usize = Self::SBI_KINDS + 6;
    pub const IRQ_TIMER: usize = Self::SBI_KINDS + 7;
    pub const IRQ_EXT: usize = Self::SBI_KINDS + 8;
    pub const IRQ_SOFT: usize = Self::SBI_KINDS + 9;
    pub const OTHER: usize = Self::SBI_KINDS + 10;

    /// Every counter with the name it is printed under, at the index above.
    pub fn counters(&self) -> [(&'static str, u64); Self::KINDS] {
        const SBI: [&str; ExitStats::SBI_KINDS] = [
            "sbi.base",
            "sbi.time",
            "sbi.ipi",
            "sbi.rfence",
            "sbi.hsm",
            "sbi.srst",
            "sbi.dbcn",
            "sbi.legacy",
            "sbi.other",
        ];
        let mut out = [("", 0); Self::KINDS];
        for (slot, (name, n)) in out.iter_mut().zip(SBI.iter().zip(self.sbi.iter())) {
            *slot = (name, *n);
        }
        out[Self::MMIO_UART] = ("mmio.uart", self.mmio_uart);
        out[Self::MMIO_PLIC] = ("mmio.plic", self.mmio_plic);
        out[Self::MMIO_VIRTIO] = ("mmio.virtio", self.mmio_virtio);
        out[Self::MMIO_UNCLAIMED] = ("mmio.unclaimed", self.mmio_unclaimed);
        out[Self::RAM_POPULATE] = ("ram.populate", self.ram_populate);
        out[Self::WFI] = ("wfi", self.wfi);
        out[Self::VIRTUAL_INSN] = ("virtual_insn", self.virtual_insn);
        out[Self::IRQ_TIMER] = ("irq.timer", self.irq_timer);
        out[Self::IRQ_EXT] = ("irq.ext", self.irq_external);
        out[Self::IRQ_SOFT] = ("irq.soft", self.irq_software);
        out[Self::OTHER] = ("other", self.other);
        out
    }

    pub fn sbi_kind(eid: u64) -> usize {
        use rivet_sbi::eid;
        match eid {
            eid::BASE => 0,
            eid::TIME => 1,
            eid::IPI => 2,
            eid::RFENCE => 3,
            eid::HSM => 4,
            eid::SRST => 5,
            eid::DBCN => 6,
            0..=8 => 7,
            _ => 8,
        }
    }

    pub fn total(&self) -> u64 {
        self.counters().iter().map(|c| c.1).sum()
    }

    pub fn add(&mut self, o: &ExitStats) {
        for (a, b) in self.sbi.iter_mut().zip(o.sbi.iter()) {
            *a += b;
        }
        self.mmio_uart += o.mmio_uart;
        self.mmio_plic += o.mmio_plic;
        self.mmio_virtio += o.mmio_virtio;
        self.mmio_unclaimed += o.mmio_unclaimed;
        self.ram_populate += o.ram_populate;
        self.wfi += o.wfi;
        self.virtual_insn += o.virtual_insn;
        self.irq_timer += o.irq_timer;
        self.irq_external += o.irq_external;
        self.irq_software += o.irq_software;
        self.other += o.other;
        for (a, b) in self.hs_instret.iter_mut().zip(o.hs_instret.iter()) {
            *a += b;
        }
    }
}

pub struct Vcpu {
    pub id: usize,
    pub ctx: GuestContext,
    pub csrs: VsCsrs,
    /// hvip image: VSSIP/VSTIP/VSEIP injected by the hypervisor. Read back
    /// at every exit (the guest may clear VSSIP) and written at every entry.
    pub hvip: u64,
    pub fp: FpState,
    pub hsm: HartState,
    /// Non-retentive suspend: where to resume and the opaque value.
    pub resume: Option<(u64, u64)>,
    /// Halted in WFI (or HSM suspend) until an interrupt is pending.
    pub wfi: bool,
    /// SBI set_timer deadline when the VM has no Sstc (u64::MAX = none).
    pub sbi_deadline: u64,
    /// A remote fence is owed before this vCPU runs again.
    pub needs_fence: bool,
    pub stats: ExitStats,
    /// Physical hart slot this vCPU is pinned to (static partitioning).
    pub pin: Option<usize>,
    /// Physical hart slot running it right now (it owns ctx/csrs/fp then).
    pub running_on: Option<usize>,
    /// Hart slot it last ran on (soft affinity for unpinned vCPUs).
    pub last_hart: Option<usize>,
    /// hvip bits raised / lowered by others since it last entered the
    /// guest; merged into the hardware value at exit so none is lost.
    pub irq_set: u64,
    pub irq_clear: u64,
    /// Its saved state was rewritten (HSM start, reboot): a hart that still
    /// holds it loaded must load it again.
    pub reload: bool,
}

/// hstatus for entering a guest: SPV (enter V=1), SPVP (HLV as VS), VTW (trap WFI).
pub fn guest_hstatus() -> u64 {
    let base = csr_read!(HSTATUS) & (3 << 32); // keep VSXL
    base | HSTATUS_SPV | HSTATUS_SPVP | HSTATUS_VTW
}

/// sstatus for entering a guest in VS-mode with FP usable.
pub fn guest_sstatus() -> u64 {
    let s = csr_read!(SSTATUS);
    (s & !(SSTATUS_SIE | SSTATUS_SPIE)) | SSTATUS_SPP | SSTATUS_FS_INITIAL
}

impl Vcpu {
    pub fn new(id: usize) -> Self {
        Self {
            id,
            ctx: GuestContext::default(),
            csrs: VsCsrs::default(),
            hvip: 0,
            fp: FpState::default(),
            hsm: HartState::Stopped,
            resume: None,
            wfi: false,
            sbi_deadline: u64::MAX,
            needs_fence: true,
            stats: ExitStats::default(),
            pin: None,
            running_on: None,
            last_hart: None,
            irq_set: 0,
            irq_clear: 0,
            reload: true,
        }
    }

    /// Raises a VS interrupt (hvip bit) from anywhere.
    pub fn raise(&mut self, bit: u64) {
        self.hvip |= bit;
        self.irq_set |= bit;
        self.irq_clear &= !bit;
    }

    /// Lowers a VS interrupt (hvip bit) from anywhere.
    pub fn lower(&mut self, bit: u64) {
        self.hvip &= !bit;
        self.irq_clear |= bit;
        self.irq_set &= !bit;
    }

    /// At exit: the hardware hvip (the guest may have cleared VSSIP) with
    /// every change others made while it ran.
    pub fn merge_hvip(&mut self, hw: u64) {
        self.hvip = (hw & !self.irq_clear) | self.irq_set;
        self.irq_set = 0;
        self.irq_clear = 0;
    }

    /// Puts the vCPU at `pc` in VS-mode with a0 = hartid, a1 = `a1`, MMU
    /// off and interrupts disabled, as SBI HSM start and the Linux boot
    /// protocol require.
    pub fn reset_to(&mut self, pc: u64, a1: u64) {
        self.ctx = GuestContext::default();
        self.ctx.x[10] = self.id as u64;
        self.ctx.x[11] = a1;
        self.ctx.sepc = pc;
        self.ctx.sstatus = guest_sstatus();
        self.ctx.hstatus = guest_hstatus();
        // UXL = 64 bits; everything else off.
        self.csrs = VsCsrs {
            vsstatus: 2 << 32,
            vstimecmp: u64::MAX,
            ..VsCsrs::default()
        };
        self.hvip = 0;
        self.fp = FpState::default();
        self.resume = None;
        self.wfi = false;
        self.sbi_deadline = u64::MAX;
        self.needs_fence = true;
        self.reload = true;
        self.irq_set = 0;
        self.irq_clear = 0;
        self.hsm = HartState::Started;
    }

    pub fn runnable(&self) -> bool {
        matches!(self.hsm, HartState::Started) && !self.wfi
    }

    /// Whether an interrupt the guest enabled in vsie is pending.
    pub fn interrupt_pending(&self, vsie: u64, vstimecmp: u64, sstc: bool, now: u64) -> bool {
        let mut pending = self.hvip;
        if sstc && now >= vstimecmp {
            pending |= 1 << IRQ_VS_TIMER;
        }
        pending & (vsie << 1) != 0
    }
}
