//! The virtio-mmio transport, version 2 (§4.2 "Virtio Over MMIO").
//!
//! This module owns the register file of one virtio-mmio device window, the
//! device status state machine, feature negotiation, the per-queue
//! configuration registers, `InterruptStatus` and `ConfigGeneration`. It
//! owns the device's [`Queue`]s and hands them to the [`VirtioDevice`] model
//! on notifications and polls.
//!
//! # Wiring (for the hypervisor's MMIO emulation)
//!
//! * Map a window of [`MMIO_SIZE`] bytes per device and describe it in the
//!   guest device tree as `compatible = "virtio,mmio"` with one interrupt.
//! * Guest loads: [`MmioDevice::read`]`(offset, width)`; guest stores:
//!   [`MmioDevice::write`]`(offset, width, value, mem)`. `None` means the
//!   access is invalid (bad width, misaligned, or outside the window): inject
//!   an access fault. Loads return the zero-extended value.
//! * After **every** write and every [`MmioDevice::poll`], forward
//!   [`MmioDevice::irq_level`] to the device's vPLIC source
//!   (`Plic::set_level`). The line is level-triggered: high while
//!   `InterruptStatus != 0`, low once the driver acknowledges everything.
//! * `QueueNotify` is handled synchronously inside `write` (the device
//!   processes the queue there), so `write` needs guest memory.
//! * Call [`MmioDevice::poll`] when host-side input arrives (after
//!   `Console::push_input`), when an entropy source may have new bytes, and
//!   periodically (e.g. on a timer tick): per-call budgets may leave work
//!   for a later poll, and a driver using EVENT_IDX will not re-notify it.
//! * Host-side configuration changes (e.g. a new blk capacity): call
//!   [`MmioDevice::config_changed`].
//!
//! # Register access rules (decisions)
//!
//! * Registers (`0x000..0x100`): only naturally aligned 32-bit accesses are
//!   valid (§4.2.2.2 "MUST only use 32 bit wide and aligned"); anything else
//!   is `None`. Valid accesses to write-only or unknown registers read 0;
//!   writes to read-only or unknown registers are ignored.
//! * Configuration space (`0x100..MMIO_SIZE`): naturally aligned 8-, 16- and
//!   32-bit accesses (§4.2.2.2; 64-bit fields are read as two 32-bit
//!   halves). Bytes past the device's layout read as 0.
//! * `SHMLen*` and `SHMBase*` read as all-ones: no shared memory regions
//!   exist (§4.2.2 "results in a length of -1" / "base address of
//!   0xffffffffffffffff"). `QueueReset` reads 0 (VIRTIO_F_RING_RESET is not
//!   offered) and ignores writes.
//! * `VendorID` is [`VENDOR_ID`], "RIVT" in little-endian byte order (the
//!   same convention as `MagicValue` = "virt").
//!
//! # Status state machine (§2.1, §3.1.1; decisions)
//!
//! * Writing 0 resets the device: status, features, selectors, every
//!   queue, `InterruptStatus`, the error state and the device model.
//!   `ConfigGeneration` keeps counting.
//! * Non-zero writes can only *add* bits (the driver MUST NOT clear bits;
//!   attempts are ignored). Bits are accepted in the order ACKNOWLEDGE →
//!   DRIVER → FEATURES_OK → DRIVER_OK, each requiring its predecessors
//!   (several may be set by one write); an out-of-order bit is dropped.
//!   FAILED is always accepted. SUSPEND (VIRTIO_F_SUSPEND not offered),
//!   DEVICE_NEEDS_RESET (device-owned) and the reserved bit 5 are ignored.
//! * FEATURES_OK is refused — reading status back shows it clear, as §3.1.1
//!   step 6 expects — if the driver accepted a feature that was not offered
//!   (including any bit of `DriverFeatures` selections 2 and up) or did not
//!   accept VIRTIO_F_VERSION_1 (a legacy-only driver; legacy is not
//!   supported). Since DRIVER_OK requires FEATURES_OK, such a driver never
//!   gets the device live.
//! * `DriverFeatures` writes are ignored once FEATURES_OK is set.
//! * DEVICE_NEEDS_RESET (0x40) reads back set after a [`DeviceError`]; if
//!   DRIVER_OK is set (or becomes set later) a configuration change
//!   interrupt is raised (§2.1.2). A failed device ignores notifications and
//!   polls until reset.
//! * Queues are processed only while "live": DRIVER_OK set, FAILED and
//!   DEVICE_NEEDS_RESET clear (§2.1.2 "MUST NOT consume buffers ... before
//!   DRIVER_OK"). Setting DRIVER_OK runs one poll (picks up buffers the
//!   driver queued during setup, e.g. console receive buffers).
//!
//! # Queue registers (decisions)
//!
//! * `QueueSel` may select any index; for indices `>= num_queues`
//!   `QueueSizeMax` and `QueueReady` read 0 and writes are ignored.
//! * `QueueSize` and the six address registers are writable only while the
//!   selected queue is disabled and DRIVER_OK is clear (§4.2.2.2: "When
//!   QueueReady is not zero, the driver MUST NOT access ..."). Other writes
//!   are ignored.
//! * `QueueReady = 1` (before DRIVER_OK) validates the queue
//!   ([`Queue::activate`]); an invalid size, misaligned ring or ring outside
//!   RAM leaves the queue disabled and fails the device (DEVICE_NEEDS_RESET).
//!   `QueueReady = 0` disables the queue at any time. Other values are
//!   ignored.
//! * `QueueNotify`: the value is the queue index (VIRTIO_F_NOTIFICATION_DATA
//!   is not offered); notifications for absent or disabled queues, or while
//!   the device is not live, are ignored.

use alloc::vec::Vec;
use rivet_guest_mem::GuestMemory;

use crate::features::{
    DEVICE_SPECIFIC_MASK, EVENT_IDX, INDIRECT_DESC, TRANSPORT_OFFERED, VERSION_1,
};
use crate::queue::Queue;
use crate::status::{ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK};
use crate::{DeviceError, NotifyResult, VirtioDevice};

/// Size of one virtio-mmio window: registers plus 0x100 bytes of
/// configuration space (the size used in device tree examples, §4.2.1).
pub const MMIO_SIZE: u64 = 0x200;
/// `MagicValue`: "virt" little-endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// `Version` of the modern (non-legacy) transport.
pub const VERSION: u32 = 2;
/// `VendorID`: "RIVT" little-endian.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"RIVT");

/// `InterruptStatus` bit 0: used buffer notification.
pub const INTERRUPT_USED_BUFFER: u32 = 1;
/// `InterruptStatus` bit 1: configuration change notification.
pub const INTERRUPT_CONFIG_CHANGE: u32 = 2;

/// Register offsets (§4.2.2, table "MMIO Device Register Layout").
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const QUEUE_RESET: u64 = 0x0c0;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// What a register write did, for the hypervisor's bookkeeping and logs.
/// Whatever it says, re-read [`MmioDevice::irq_level`] after every write.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteEffect {
    /// The driver reset the device (status 0).
    pub reset: bool,
    /// The device became live (DRIVER_OK accepted).
    pub driver_ok: bool,
    /// A notification for this queue was processed.
    pub notified: Option<u16>,
    /// The device failed during this write and now shows DEVICE_NEEDS_RESET.
    pub error: Option<DeviceError>,
}

/// One virtio-mmio device: the transport state around a device model `D`.
pub struct MmioDevice<D: VirtioDevice> {
    device: D,
    queues: Vec<Queue>,
    offered: u64,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    /// The driver wrote a non-zero word to a `DriverFeaturesSel >= 2`.
    driver_features_unknown: bool,
    negotiated: u64,
    queue_sel: u32,
    /// Driver-visible status bits, without DEVICE_NEEDS_RESET.
    status: u32,
    needs_reset: bool,
    interrupt_status: u32,
    config_generation: u32,
    last_error: Option<DeviceError>,
}

fn lo(v: u64) -> u32 {
    v as u32
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

fn set_lo(v: u64, x: u32) -> u64 {
    (v & !0xffff_ffff) | u64::from(x)
}

fn set_hi(v: u64, x: u32) -> u64 {
    (v & 0xffff_ffff) | (u64::from(x) << 32)
}

impl<D: VirtioDevice> MmioDevice<D> {
    /// Wraps a device model; the device starts in the reset state.
    pub fn new(device: D) -> Self {
        let offered = (device.features() & DEVICE_SPECIFIC_MASK) | TRANSPORT_OFFERED;
        let queues = (0..device.num_queues())
            .map(|i| Queue::new(device.queue_max(i)))
            .collect();
        MmioDevice {
            device,
            queues,
            offered,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            driver_features_unknown: false,
            negotiated: 0,
            queue_sel: 0,
            status: 0,
            needs_reset: false,
            interrupt_status: 0,
            config_generation: 0,
            last_error: None,
        }
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }
    /// The device model, e.g. to push console input (then call `poll`).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }
    /// The virtqueues.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }
    /// All feature bits offered in `DeviceFeatures`.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }
    /// Features accepted with FEATURES_OK (0 before that).
    pub fn negotiated_features(&self) -> u64 {
        self.negotiated
    }
    /// The `Status` register as the driver reads it.
    pub fn status(&self) -> u32 {
        if self.needs_reset {
            self.status | DEVICE_NEEDS_RESET
        } else {
            self.status
        }
    }
    /// `InterruptStatus`.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }
    /// `ConfigGeneration`.
    pub fn config_generation(&self) -> u32 {
        self.config_generation
    }
    /// The error that put the device into DEVICE_NEEDS_RESET, if any.
    pub fn last_error(&self) -> Option<DeviceError> {
        if self.needs_reset {
            self.last_error
        } else {
            None
        }
    }
    /// Level of the device's interrupt line: `InterruptStatus != 0`.
    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }
    /// Whether queues are processed: DRIVER_OK set, FAILED and
    /// DEVICE_NEEDS_RESET clear.
    pub fn is_live(&self) -> bool {
        self.status & (DRIVER_OK | FAILED) == DRIVER_OK && !self.needs_reset
    }

    /// Device reset, as if the driver wrote 0 to `Status` (also for the
    /// hypervisor, e.g. when the VM reboots).
    pub fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_unknown = false;
        self.negotiated = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.needs_reset = false;
        self.interrupt_status = 0;
        self.last_error = None;
    }

    /// Host-side configuration change (§4.2.3.4 / §3.2.1): bumps
    /// `ConfigGeneration` and, if DRIVER_OK is set, raises a configuration
    /// change interrupt.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & DRIVER_OK != 0 {
            self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
        }
    }

    fn fail(&mut self, e: DeviceError) {
        if !self.needs_reset {
            self.last_error = Some(e);
        }
        self.needs_reset = true;
        // §2.1.2: after setting DEVICE_NEEDS_RESET with DRIVER_OK set, the
        // device MUST send a configuration change notification.
        if self.status & DRIVER_OK != 0 {
            self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
        }
    }

    fn selected(&self) -> Option<&Queue> {
        usize::try_from(self.queue_sel)
            .ok()
            .and_then(|i| self.queues.get(i))
    }

    /// The selected queue if its configuration registers are writable.
    fn selected_configurable(&mut self) -> Option<&mut Queue> {
        if self.status & DRIVER_OK != 0 {
            return None;
        }
        let q = usize::try_from(self.queue_sel)
            .ok()
            .and_then(|i| self.queues.get_mut(i))?;
        (!q.ready()).then_some(q)
    }

    /// A guest load of `size` bytes at `offset` into the window. `None`:
    /// invalid access (inject an access fault).
    pub fn read(&self, offset: u64, size: u8) -> Option<u64> {
        if offset >= reg::CONFIG {
            return self.read_config(offset, size);
        }
        if size != 4 || offset & 3 != 0 {
            return None;
        }
        let v: u32 = match offset {
            reg::MAGIC_VALUE => MAGIC_VALUE,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => lo(self.offered),
                1 => hi(self.offered),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status(),
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        Some(u64::from(v))
    }

    fn config_access_ok(offset: u64, size: u8) -> Option<(u64, usize)> {
        if !(reg::CONFIG..MMIO_SIZE).contains(&offset) {
            return None;
        }
        let n: usize = match size {
            1 => 1,
            2 => 2,
            4 => 4,
            _ => return None,
        };
        if offset & u64::from(size.wrapping_sub(1)) != 0 {
            return None;
        }
        Some((offset.wrapping_sub(reg::CONFIG), n))
    }

    fn read_config(&self, offset: u64, size: u8) -> Option<u64> {
        let (off, n) = Self::config_access_ok(offset, size)?;
        let mut b = [0u8; 4];
        self.device.read_config(off, b.get_mut(..n)?);
        Some(u64::from(u32::from_le_bytes(b)))
    }

    /// A guest store of `size` bytes of `value` at `offset` into the window.
    /// `None`: invalid access (inject an access fault). May process a queue
    /// (`QueueNotify`) or validate one (`QueueReady`), hence `mem`.
    pub fn write(
        &mut self,
        offset: u64,
        size: u8,
        value: u64,
        mem: &mut dyn GuestMemory,
    ) -> Option<WriteEffect> {
        let mut effect = WriteEffect::default();
        if offset >= reg::CONFIG {
            let (off, n) = Self::config_access_ok(offset, size)?;
            let bytes = (value as u32).to_le_bytes();
            if self.device.write_config(off, bytes.get(..n)?) {
                self.config_generation = self.config_generation.wrapping_add(1);
            }
            return Some(effect);
        }
        if size != 4 || offset & 3 != 0 {
            return None;
        }
        let v = value as u32;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            // Ignored once FEATURES_OK is set.
            reg::DRIVER_FEATURES if self.status & FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => self.driver_features = set_lo(self.driver_features, v),
                    1 => self.driver_features = set_hi(self.driver_features, v),
                    _ => self.driver_features_unknown |= v != 0,
                }
            }
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_configurable() {
                    // Out-of-range sizes become 0, refused by `activate`.
                    q.set_size(u16::try_from(v).unwrap_or(0));
                }
            }
            reg::QUEUE_READY => self.write_queue_ready(v, mem, &mut effect),
            reg::QUEUE_NOTIFY => self.notify(v, mem, &mut effect),
            reg::INTERRUPT_ACK => self.interrupt_status &= !v,
            reg::STATUS => self.write_status(v, mem, &mut effect),
            reg::QUEUE_DESC_LOW => {
                self.set_queue_addr(|q| q.set_desc_table(set_lo(q.desc_table(), v)))
            }
            reg::QUEUE_DESC_HIGH => {
                self.set_queue_addr(|q| q.set_desc_table(set_hi(q.desc_table(), v)))
            }
            reg::QUEUE_DRIVER_LOW => {
                self.set_queue_addr(|q| q.set_avail_ring(set_lo(q.avail_ring(), v)))
            }
            reg::QUEUE_DRIVER_HIGH => {
                self.set_queue_addr(|q| q.set_avail_ring(set_hi(q.avail_ring(), v)))
            }
            reg::QUEUE_DEVICE_LOW => {
                self.set_queue_addr(|q| q.set_used_ring(set_lo(q.used_ring(), v)))
            }
            reg::QUEUE_DEVICE_HIGH => {
                self.set_queue_addr(|q| q.set_used_ring(set_hi(q.used_ring(), v)))
            }
            // SHMSel selects among zero regions; QueueReset needs
            // VIRTIO_F_RING_RESET (not offered); everything else is
            // read-only or reserved.
            _ => {}
        }
        Some(effect)
    }

    fn set_queue_addr<F: FnOnce(&mut Queue)>(&mut self, f: F) {
        if let Some(q) = self.selected_configurable() {
            f(q);
        }
    }

    fn write_queue_ready(&mut self, v: u32, mem: &mut dyn GuestMemory, effect: &mut WriteEffect) {
        match v {
            0 => {
                if let Some(q) = usize::try_from(self.queue_sel)
                    .ok()
                    .and_then(|i| self.queues.get_mut(i))
                {
                    q.deactivate();
                }
            }
            1 => {
                let result = match self.selected_configurable() {
                    Some(q) => q.activate(mem),
                    None => return,
                };
                if let Err(e) = result {
                    let e = DeviceError::Queue(e);
                    self.fail(e);
                    effect.error = Some(e);
                }
            }
            _ => {}
        }
    }

    fn features_acceptable(&self) -> bool {
        !self.driver_features_unknown
            && self.driver_features & !self.offered == 0
            && self.driver_features & VERSION_1 != 0
    }

    fn write_status(&mut self, v: u32, mem: &mut dyn GuestMemory, effect: &mut WriteEffect) {
        if v == 0 {
            self.reset();
            effect.reset = true;
            return;
        }
        let mut s = self.status;
        if v & ACKNOWLEDGE != 0 {
            s |= ACKNOWLEDGE;
        }
        if v & DRIVER != 0 && s & ACKNOWLEDGE != 0 {
            s |= DRIVER;
        }
        if v & FEATURES_OK != 0
            && s & (DRIVER | FEATURES_OK) == DRIVER
            && self.features_acceptable()
        {
            s |= FEATURES_OK;
            self.negotiated = self.driver_features;
            for q in &mut self.queues {
                q.set_event_idx(self.negotiated & EVENT_IDX != 0);
                q.set_indirect(self.negotiated & INDIRECT_DESC != 0);
            }
            self.device.ack_features(self.negotiated);
        }
        let becomes_live = v & DRIVER_OK != 0 && s & (FEATURES_OK | DRIVER_OK) == FEATURES_OK;
        if becomes_live {
            s |= DRIVER_OK;
        }
        if v & FAILED != 0 {
            s |= FAILED;
        }
        self.status = s;
        if becomes_live {
            effect.driver_ok = true;
            if self.needs_reset {
                self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
            } else if let Err(e) = self.poll(mem) {
                effect.error = Some(e);
            }
        }
    }

    fn notify(&mut self, v: u32, mem: &mut dyn GuestMemory, effect: &mut WriteEffect) {
        if !self.is_live() {
            return;
        }
        let Ok(index) = u16::try_from(v) else { return };
        if !self
            .queues
            .get(usize::from(index))
            .is_some_and(Queue::ready)
        {
            return;
        }
        effect.notified = Some(index);
        let r = self.device.notify(index, &mut self.queues, mem);
        if let Err(e) = self.finish(r, mem) {
            effect.error = Some(e);
        }
    }

    /// Lets the device make progress without a notification (console input,
    /// late entropy, leftover work). Does nothing unless the device is live.
    /// `Err` reports that the device failed during this poll (it now shows
    /// DEVICE_NEEDS_RESET and has raised its interrupt); it is informational.
    pub fn poll(&mut self, mem: &mut dyn GuestMemory) -> Result<(), DeviceError> {
        if !self.is_live() {
            return Ok(());
        }
        let r = self.device.poll(&mut self.queues, mem);
        self.finish(r, mem)
    }

    fn finish(
        &mut self,
        r: Result<NotifyResult, DeviceError>,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let (used, config, err) = match r {
            Ok(n) => (n.used_buffers, n.config_changed, None),
            // Buffers used before the failure still deserve their
            // notification.
            Err(e) => (true, false, Some(e)),
        };
        if used {
            let mut notify = false;
            for q in &mut self.queues {
                notify |= q.needs_notification(mem);
            }
            if notify {
                self.interrupt_status |= INTERRUPT_USED_BUFFER;
            }
        }
        if config {
            self.config_changed();
        }
        match err {
            Some(e) => {
                self.fail(e);
                Err(e)
            }
            None => Ok(()),
        }
    }
}
