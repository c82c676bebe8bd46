//! A virtual machine: its RAM and G-stage table, vCPUs, emulated devices
//! (vPLIC, 16550 UART), console queues and lifecycle (run, stop, reboot).
//!
//! Guest physical map (mirrors QEMU `virt`, so Linux feels at home):
//! PLIC at 0x0c00_0000, UART at 0x1000_0000 (irq 10), RAM at 0x8000_0000.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::csr::*;
use crate::mm::{self, ChunkMap, GuestRam, TableFrames};
use crate::port::VmShared;
use crate::vcpu::Vcpu;
use rivet_devtree::{Device, GuestDt, Region};
use rivet_frame_alloc::FrameAllocator;
use rivet_gstage::{GStage, Mode, Perms};
use rivet_sbi::HartState;
use rivet_virtio::blk::Blk;
use rivet_virtio::console::{Console, ConsoleBackend};
use rivet_virtio::mmio::MmioDevice;
use rivet_virtio::net::{FrameQueue, Net};
use rivet_virtio::rng::Rng;
use rivet_vplic::Plic;

use crate::physdev::{DiskWindow, Entropy, FsRelay};
use rivet_virtio::fs::{FsDevice, InitInfo};

pub const RAM_BASE: u64 = 0x8000_0000;
pub const PLIC_BASE: u64 = 0x0c00_0000;
pub const PLIC_SIZE: u64 = rivet_vplic::MMIO_SIZE;
pub const UART_BASE: u64 = 0x1000_0000;
pub const UART_SIZE: u64 = 0x100;
pub const UART_IRQ: u32 = 10;
pub const PLIC_NDEV: u32 = 31;
pub const UART_CLOCK: u32 = 3_686_400;
/// virtio-mmio windows: slot i at VIRTIO_BASE + i * VIRTIO_STRIDE.
pub const VIRTIO_BASE: u64 = 0x1000_1000;
pub const VIRTIO_STRIDE: u64 = 0x1000;
pub const VIRTIO_SIZE: u64 = rivet_virtio::mmio::MMIO_SIZE;

/// Interrupt of virtio slot `i` (1.., skipping the UART's 10).
fn virtio_irq(i: usize) -> u32 {
    let n = i as u32 + 1;
    if n >= UART_IRQ {
        n + 1
    } else {
        n
    }
}

/// One emulated virtio-mmio device of a VM.
pub struct VirtioSlot<D: rivet_virtio::VirtioDevice> {
    pub base: u64,
    pub irq: u32,
    pub dev: MmioDevice<D>,
}

/// The hvc console's output: the physical console, marked as hvc.
pub struct HvcOut {
    pub name: String,
    pub prefix: bool,
}

impl ConsoleBackend for HvcOut {
    fn write(&mut self, data: &[u8]) {
        if self.prefix {
            crate::outq::write(alloc::format!("[{} hvc0] ", self.name).as_bytes());
        }
        crate::outq::write(data);
    }
}

/// What a VM gets besides its UART and PLIC.
pub struct VmDevices {
    pub disks: Vec<DiskWindow>,
    pub hvc: bool,
    pub rng: Option<Entropy>,
    /// One switch port per NIC.
    pub nics: Vec<rivet_vswitch::PortId>,
    /// Shared directories: backend, its FUSE session, guest tag.
    pub fs: Vec<(FsRelay, InitInfo, String)>,
}

/// A virtio-net card and its port on the virtual switch. Transmitted
/// frames wait in the device's outbox until the machine moves them.
pub struct NetSlot {
    pub slot: VirtioSlot<Net<FrameQueue>>,
    pub port: rivet_vswitch::PortId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Running,
    /// Restart requested: the first hart to see no vCPU of it running
    /// reloads it.
    Rebooting,
    /// Shut down; `failed` when it asked for a failure shutdown or crashed.
    Stopped {
        failed: bool,
    },
}

/// The images a VM boots from (borrowed from the boot bundle, which stays
/// in memory, so a reboot starts from pristine copies).
#[derive(Clone, Copy)]
pub struct Images {
    pub kernel: &'static [u8],
    pub initrd: Option<&'static [u8]>,
    pub bootargs: &'static str,
}

pub struct Vm {
    pub index: usize,
    pub name: String,
    pub vmid: u16,
    pub ram: GuestRam,
    /// The VM's G-stage table (VMs live as long as the machine).
    pub gstage: GStage,
    /// RAM chunks mapped in `gstage` (see [`Vm::populate`]).
    mapped: &'static ChunkMap,
    pub hgatp: u64,
    pub vcpus: Vec<Vcpu>,
    pub plic: Plic,
    /// The UART and console queues, usable without the machine lock.
    pub shared: &'static VmShared,
    pub state: VmState,
    pub sstc: bool,
    pub images: Images,
    pub dtb: Vec<u8>,
    pub entry: u64,
    pub dtb_addr: u64,
    pub boots: u32,
    /// Offset and length of `/chosen/rng-seed` in `dtb`.
    seed_at: Option<(usize, usize)>,
    /// Kinds of guest misbehaviour already logged (once per kind).
    pub reported: crate::logger::Once,
    pub blks: Vec<VirtioSlot<Blk<DiskWindow>>>,
    pub hvc: Option<VirtioSlot<Console<HvcOut>>>,
    pub rng: Option<VirtioSlot<Rng<Entropy>>>,
    pub nets: Vec<NetSlot>,
    pub fs: Vec<VirtioSlot<FsDevice<FsRelay>>>,
}

#[derive(Debug)]
pub enum VmError {
    NoMemory(u64),
    Load(rivet_loader::LoadError),
    Dt,
    GStage(rivet_gstage::Error),
    /// vCPU pinned to a physical hart the machine does not have.
    BadPin {
        vcpu: usize,
        hart: u8,
        harts: usize,
    },
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmError::NoMemory(n) => {
                write!(f, "not enough host memory for {n:#x} bytes of guest RAM")
            }
            VmError::Load(e) => write!(f, "{e}"),
            VmError::Dt => write!(f, "could not build the guest device tree"),
            VmError::GStage(e) => write!(f, "G-stage mapping failed: {e:?}"),
            VmError::BadPin { vcpu, hart, harts } => {
                write!(
                    f,
                    "vCPU {vcpu} is pinned to hart {hart}, but the machine has {harts} hart(s)"
                )
            }
        }
    }
}

/// Everything the guest device tree and loader need from the host.
pub struct HostView<'a> {
    pub timebase: u64,
    pub mmu_type: &'a str,
    pub extensions: &'a [&'a str],
    pub sstc: bool,
    /// `cbo.zero` block size when guests get Zicboz.
    pub cboz_block: Option<u32>,
    pub gstage_mode: Mode,
    /// Physical harts the hypervisor runs on (pins must be below this).
    pub harts: usize,
}

impl Vm {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        desc: &rivet_bundle::VmDesc<'static>,
        vmid: u16,
        host: &HostView,
        frames: &mut FrameAllocator,
        devices: VmDevices,
    ) -> Result<Vm, VmError> {
        for (i, p) in desc.pins.iter().enumerate() {
            if let Some(h) = *p {
                if h as usize >= host.harts {
                    return Err(VmError::BadPin {
                        vcpu: i,
                        hart: h,
                        harts: host.harts,
                    });
                }
            }
        }
        let size = desc.memory_size;
        let hpa = frames.alloc(size, 2 << 20).ok_or(VmError::NoMemory(size))?;
        let ram = GuestRam {
            gpa: RAM_BASE,
            hpa,
            size,
            zeroed: ChunkMap::leak(size),
        };
        // RAM is mapped chunk by chunk as the guest first touches it
        // (`populate`), each chunk zeroed just before.
        let gstage =
            GStage::new(host.gstage_mode, &mut TableFrames(frames)).map_err(VmError::GStage)?;
        crate::arch::hext::hfence_gvma_vmid(vmid);
        let hgatp = gstage.hgatp(vmid);
        let images = Images {
            kernel: desc.kernel,
            initrd: desc.initrd,
            bootargs: desc.bootargs,
        };

        let header = rivet_loader::parse_header(images.kernel).map_err(VmError::Load)?;
        let layout = rivet_loader::plan(
            &header,
            images.kernel.len() as u64,
            images.initrd.map(|i| i.len() as u64),
            RAM_BASE,
            size,
        )
        .map_err(VmError::Load)?;
        let mut slot = 0usize;
        let mut next_slot = || {
            let i = slot;
            slot += 1;
            (VIRTIO_BASE + i as u64 * VIRTIO_STRIDE, virtio_irq(i))
        };
        let blks: Vec<_> = devices
            .disks
            .into_iter()
            .map(|d| {
                let (base, irq) = next_slot();
                VirtioSlot {
                    base,
                    irq,
                    dev: MmioDevice::new(Blk::new(d)),
                }
            })
            .collect();
        let hvc = devices.hvc.then(|| {
            let (base, irq) = next_slot();
            let out = HvcOut {
                name: String::from(desc.name),
                prefix: false,
            };
            VirtioSlot {
                base,
                irq,
                dev: MmioDevice::new(Console::new(out)),
            }
        });
        let rng = devices.rng.map(|e| {
            let (base, irq) = next_slot();
            VirtioSlot {
                base,
                irq,
                dev: MmioDevice::new(Rng::new(e)),
            }
        });
        let nets: Vec<NetSlot> = devices
            .nics
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let (base, irq) = next_slot();
                let mac = desc
                    .macs
                    .get(i)
                    .copied()
                    .flatten()
                    .unwrap_or_else(|| rivet_virtio::net::mac_for_nic(desc.name, i as u16));
                NetSlot {
                    slot: VirtioSlot {
                        base,
                        irq,
                        dev: MmioDevice::new(Net::new(mac, FrameQueue::new(32))),
                    },
                    port,
                }
            })
            .collect();
        let mut fs_slots = Vec::new();
        for (relay, info, tag) in devices.fs {
            let (base, irq) = next_slot();
            match FsDevice::new(&tag, relay, info) {
                Ok(d) => fs_slots.push(VirtioSlot {
                    base,
                    irq,
                    dev: MmioDevice::new(d.with_max_request(crate::physfs::BUF_LEN - 4096)),
                }),
                Err(e) => log::warn!(
                    "VM {}: shared directory {tag:?} not offered: {e:?}",
                    desc.name
                ),
            }
        }
        let mut virtio_dt: Vec<Device> = blks
            .iter()
            .map(|b| Device {
                base: b.base,
                size: VIRTIO_SIZE,
                irq: Some(b.irq),
            })
            .collect();
        virtio_dt.extend(hvc.iter().map(|b| Device {
            base: b.base,
            size: VIRTIO_SIZE,
            irq: Some(b.irq),
        }));
        virtio_dt.extend(rng.iter().map(|b| Device {
            base: b.base,
            size: VIRTIO_SIZE,
            irq: Some(b.irq),
        }));
        virtio_dt.extend(nets.iter().map(|n| Device {
            base: n.slot.base,
            size: VIRTIO_SIZE,
            irq: Some(n.slot.irq),
        }));
        virtio_dt.extend(fs_slots.iter().map(|f| Device {
            base: f.base,
            size: VIRTIO_SIZE,
            irq: Some(f.irq),
        }));
        // A placeholder: every boot writes a fresh seed over it.
        let seed = [0u8; crate::seed::SEED_LEN];
        let dt = GuestDt {
            vcpus: desc.vcpus,
            isa_extensions: host.extensions,
            cboz_block_size: host.cboz_block,
            rng_seed: crate::seed::available().then_some(&seed[..]),
            mmu_type: host.mmu_type,
            timebase_frequency: host.timebase,
            memory: Region {
                base: RAM_BASE,
                size,
            },
            bootargs: images.bootargs,
            initrd: layout.initrd.map(|(base, size)| Region { base, size }),
            plic: Device {
                base: PLIC_BASE,
                size: PLIC_SIZE,
                irq: None,
            },
            plic_ndev: PLIC_NDEV,
            uart: Some(Device {
                base: UART_BASE,
                size: UART_SIZE,
                irq: Some(UART_IRQ),
            }),
            uart_clock: UART_CLOCK,
            virtio_mmio: &virtio_dt,
        };
        let dtb = rivet_devtree::build_guest(&dt).map_err(|_| VmError::Dt)?;
        if dtb.len() as u64 > rivet_loader::DTB_MAX {
            return Err(VmError::Dt);
        }
        let seed_at = rivet_devtree::rng_seed_offset(&dtb);
        let mut vm = Vm {
            index,
            name: String::from(desc.name),
            vmid,
            ram,
            gstage,
            mapped: ChunkMap::leak(size),
            hgatp,
            vcpus: (0..desc.vcpus as usize)
                .map(|i| {
                    let mut v = Vcpu::new(i);
                    v.pin = desc.pins.get(i).copied().flatten().map(usize::from);
                    v
                })
                .collect(),
            plic: Plic::new(PLIC_NDEV, desc.vcpus as usize),
            shared: VmShared::leak(),
            state: VmState::Running,
            sstc: host.sstc,
            images,
            dtb,
            entry: layout.kernel,
            dtb_addr: layout.dtb,
            boots: 0,
            seed_at,
            reported: crate::logger::Once::new(),
            blks,
            hvc,
            rng,
            nets,
            fs: fs_slots,
        };
        vm.boot(&layout, frames);
        Ok(vm)
    }

    /// (Re)loads pristine images into zeroed RAM and starts vCPU 0.
    fn boot(&mut self, layout: &rivet_loader::Layout, frames: &mut FrameAllocator) {
        let t0 = crate::arch::time();
        // A reboot clears what the last boot could see; chunks never seen
        // stay for the first touch to zero.
        self.ram.rezero();
        let mut images = alloc::vec![(layout.kernel, self.images.kernel.len() as u64)];
        if let (Some((start, _)), Some(initrd)) = (layout.initrd, self.images.initrd) {
            images.push((start, initrd.len() as u64));
        }
        images.push((layout.dtb, self.dtb.len() as u64));
        for (gpa, len) in images {
            let first = (gpa - RAM_BASE) / mm::CHUNK;
            let last = (gpa - RAM_BASE + len.max(1) - 1) / mm::CHUNK;
            for c in first..=last {
                self.populate(frames, c);
            }
        }
        let t1 = crate::arch::time();
        let off = |gpa: u64| self.ram.hpa + (gpa - RAM_BASE);
        mm::copy_to(off(layout.kernel), self.images.kernel);
        if let (Some((start, _)), Some(initrd)) = (layout.initrd, self.images.initrd) {
            mm::copy_to(off(start), initrd);
        }
        mm::copy_to(off(layout.dtb), &self.dtb);
        if let (Some((at, len)), Some(seed)) = (
            self.seed_at,
            crate::seed::for_vm(self.index, u64::from(self.boots)),
        ) {
            if let Some(seed) = seed.get(..len) {
                mm::copy_to(off(layout.dtb) + at as u64, seed);
            }
        }
        log::debug!(
            "VM {}: RAM zeroed in {} timebase ticks, images loaded in {}",
            self.name,
            t1 - t0,
            crate::arch::time() - t1
        );
        for v in &mut self.vcpus {
            let pin = v.pin;
            *v = Vcpu::new(v.id);
            v.pin = pin;
        }
        self.vcpus[0].reset_to(self.entry, self.dtb_addr);
        self.plic.reset();
        self.shared.port.lock().reset();
        for b in &mut self.blks {
            b.dev.reset();
        }
        if let Some(h) = &mut self.hvc {
            h.dev.reset();
        }
        if let Some(r) = &mut self.rng {
            r.dev.reset();
        }
        for n in &mut self.nets {
            n.slot.dev.reset();
        }
        for f in &mut self.fs {
            f.dev.reset();
        }
        self.state = VmState::Running;
        self.boots += 1;
    }

    /// Makes RAM chunk `chunk` usable by the guest: zeroed (if it was not
    /// yet) and mapped in the G-stage table. False when the chunk is
    /// outside RAM or a table frame could not be allocated.
    pub fn populate(&mut self, frames: &mut FrameAllocator, chunk: u64) -> bool {
        if chunk >= self.ram.chunks() {
            return false;
        }
        if self.mapped.get(chunk) {
            return true;
        }
        let (hpa, len) = self.ram.chunk_range(chunk);
        self.ram.ensure_zeroed(chunk * mm::CHUNK, len);
        let rwx = Perms {
            r: true,
            w: true,
            x: true,
        };
        let gpa = RAM_BASE + chunk * mm::CHUNK;
        if let Err(e) = self
            .gstage
            .map(&mut TableFrames(frames), gpa, hpa, len, rwx)
        {
            log::error!("VM {}: cannot map RAM at {gpa:#x}: {e:?}", self.name);
            return false;
        }
        self.mapped.set(chunk);
        true
    }

    pub fn reboot(&mut self, frames: &mut FrameAllocator) {
        let header = rivet_loader::parse_header(self.images.kernel);
        let layout = header.and_then(|h| {
            rivet_loader::plan(
                &h,
                self.images.kernel.len() as u64,
                self.images.initrd.map(|i| i.len() as u64),
                RAM_BASE,
                self.ram.size,
            )
        });
        match layout {
            Ok(l) => {
                log::info!("VM {}: rebooting", self.name);
                self.boot(&l, frames);
            }
            Err(e) => self.stop(true, format_args!("reboot failed: {e}")),
        }
    }

    pub fn stop(&mut self, failed: bool, why: core::fmt::Arguments) {
        if !matches!(self.state, VmState::Running | VmState::Rebooting) {
            return;
        }
        self.flush_output();
        if failed {
            log::error!("VM {} stopped: {}", self.name, why);
        } else {
            log::info!("VM {} stopped: {}", self.name, why);
        }
        self.state = VmState::Stopped { failed };
        for v in &mut self.vcpus {
            v.hsm = HartState::Stopped;
        }
    }

    pub fn running(&self) -> bool {
        self.state == VmState::Running
    }

    /// Guest console output (DBCN, legacy putchar).
    pub fn emit(&mut self, bytes: &[u8]) {
        self.shared.port.lock().emit(bytes);
    }

    /// See [`crate::port::ConsolePort::flush_prompt`].
    pub fn flush_prompt(&mut self) {
        self.shared.port.lock().flush_prompt();
    }

    pub fn flush_output(&mut self) {
        self.shared.port.lock().flush();
    }

    /// Moves queued console input into the UART FIFO and recomputes every
    /// interrupt line; wakes vCPUs that now have an external interrupt and
    /// returns them as a bitmask (their harts need a kick).
    pub fn sync_irqs(&mut self) -> u64 {
        let uart_irq = self.shared.port.lock().feed_rx();
        self.plic.set_level(UART_IRQ, uart_irq);
        for b in &self.blks {
            self.plic.set_level(b.irq, b.dev.irq_level());
        }
        if let Some(h) = &self.hvc {
            self.plic.set_level(h.irq, h.dev.irq_level());
        }
        if let Some(r) = &self.rng {
            self.plic.set_level(r.irq, r.dev.irq_level());
        }
        for n in &self.nets {
            self.plic.set_level(n.slot.irq, n.slot.dev.irq_level());
        }
        for f in &self.fs {
            self.plic.set_level(f.irq, f.dev.irq_level());
        }
        let lines = self.plic.irq_lines();
        let mut woken = 0;
        for (i, v) in self.vcpus.iter_mut().enumerate() {
            let bit = 1u64 << IRQ_VS_EXT;
            if i < 64 && lines & (1 << i) != 0 {
                if v.hvip & bit == 0 {
                    v.raise(bit);
                    v.wfi = false;
                    woken |= 1 << i;
                }
            } else if v.hvip & bit != 0 {
                v.lower(bit);
                woken |= 1 << i;
            }
        }
        woken
    }

    /// An access to a virtio-mmio window: None when no device is there;
    /// Some(None) for an access the device refuses (width, offset).
    pub fn virtio_access(
        &mut self,
        gpa: u64,
        is_store: bool,
        width: u8,
        value: u64,
    ) -> Option<Option<u64>> {
        let ram = &mut self.ram;
        macro_rules! try_slot {
            ($slot:expr) => {
                if ($slot.base..$slot.base + VIRTIO_SIZE).contains(&gpa) {
                    let off = gpa - $slot.base;
                    return Some(if is_store {
                        let effect = $slot.dev.write(off, width, value, ram);
                        if let Some(e) = &effect {
                            if e.error.is_some() && self.reported.first(8) {
                                log::warn!("VM {}: virtio device at {:#x} needs reset: {:?} (reported once)", self.name, $slot.base, e.error);
                            }
                        }
                        effect.map(|_| 0)
                    } else {
                        $slot.dev.read(off, width)
                    });
                }
            };
        }
        for b in self.blks.iter_mut() {
            try_slot!(b);
        }
        if let Some(h) = self.hvc.as_mut() {
            try_slot!(h);
        }
        if let Some(r) = self.rng.as_mut() {
            try_slot!(r);
        }
        for n in self.nets.iter_mut() {
            try_slot!(n.slot);
        }
        for f in self.fs.iter_mut() {
            try_slot!(f);
        }
        None
    }

    /// Lets devices with asynchronous input (hvc, rng) make progress.
    pub fn poll_devices(&mut self) {
        let ram = &mut self.ram;
        if let Some(h) = self.hvc.as_mut() {
            let _ = h.dev.poll(ram);
        }
        if let Some(r) = self.rng.as_mut() {
            if r.dev.device().has_pending() {
                let _ = r.dev.poll(ram);
            }
        }
        for n in self.nets.iter_mut() {
            let _ = n.slot.dev.poll(ram);
        }
        for f in self.fs.iter_mut() {
            let _ = f.dev.poll(ram);
        }
    }

    /// Whether any vCPU of this VM is on a hart right now.
    pub fn any_running(&self) -> bool {
        self.vcpus.iter().any(|v| v.running_on.is_some())
    }
}
