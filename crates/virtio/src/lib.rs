//! The device side of virtio that Rivet emulates for its guests.
//!
//! This crate owns everything a guest driver talks to when it drives a virtio
//! device over the virtio-mmio transport (virtio 1.x, "modern", MMIO
//! `Version` 2): the register file ([`mmio::MmioDevice`]), split virtqueues
//! ([`queue::Queue`]) and five device models, each talking to the host
//! through a small backend trait:
//!
//! | module      | device         | id | backend trait                      |
//! |-------------|----------------|----|------------------------------------|
//! | [`net`]     | virtio-net     | 1  | [`net::NetBackend`]                |
//! | [`blk`]     | virtio-blk     | 2  | [`blk::BlockBackend`]              |
//! | [`console`] | virtio-console | 3  | [`console::ConsoleBackend`]        |
//! | [`rng`]     | virtio-rng     | 4  | [`rng::EntropySource`]             |
//! | [`fs`]      | virtio-fs      | 26 | [`fs::FsBackend`] (FUSE relay)     |
//!
//! [`fuse`] holds the FUSE wire structures virtio-fs reads and writes.
//!
//! Section numbers in comments refer to the virtio 1.3 specification text in
//! `shared/specs/virtio` (e.g. "§2.7.5" = "The Virtqueue Descriptor Table").
//!
//! # Trust model
//!
//! Every register write and every byte of guest memory is hostile. Guest
//! memory is reached only through [`rivet_guest_mem::GuestMemory`], every
//! guest-supplied number is range checked, all arithmetic is checked or
//! explicitly wrapping, every loop has a bound derived from constants (queue
//! size, indirect table size, per-call budgets, chain byte length), and the
//! crate never panics on guest input (`unwrap`/`expect`/indexing/unchecked
//! arithmetic are denied by lint outside tests, `unsafe` is forbidden).
//!
//! # Errors: failing a request versus failing the device
//!
//! * A malformed *ring* — a descriptor outside RAM, a `next` loop, a bad or
//!   nested indirect table, a readable descriptor after a writable one, a
//!   chain longer than 2^32 - 1 bytes, an available index that jumps by more
//!   than the queue size, a ring outside RAM — is a [`queue::QueueError`].
//!   It fails the **device**: the transport sets `DEVICE_NEEDS_RESET`
//!   (status bit 0x40), raises a configuration change interrupt if
//!   `DRIVER_OK` is set (§2.1.2), and stops touching the queues until the
//!   driver resets the device.
//! * A well-formed chain carrying a bad *request* (blk: header too short,
//!   sector out of range, data length not a multiple of 512, write to a
//!   read-only disk, unknown type) fails only that **request**, through the
//!   device-specific status (blk `IOERR`/`UNSUPP`).
//! * A request that cannot even report its failure (a blk chain with no
//!   device-writable byte for the status) fails the device, as above, with
//!   [`DeviceError::NoStatusByte`].
#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

extern crate alloc;

pub mod blk;
pub mod console;
pub mod fs;
pub mod fuse;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;

use alloc::boxed::Box;
use rivet_guest_mem::{GuestMemory, MemError};

pub use mmio::{MmioDevice, WriteEffect};
pub use queue::{Chain, Queue, QueueError, Segment};

/// Device-independent feature bits (§6 "Reserved Feature Bits").
pub mod features {
    /// `VIRTIO_F_INDIRECT_DESC` (28): indirect descriptor tables.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// `VIRTIO_F_EVENT_IDX` (29): `used_event` / `avail_event`.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// `VIRTIO_F_VERSION_1` (32): a modern (non-legacy) device/driver.
    pub const VERSION_1: u64 = 1 << 32;
    /// Feature bits a device model may offer itself: bits 0..=23, 41, 42 and
    /// 50..=63 are device-type specific (§2.2). Everything else belongs to
    /// the transport/queue layer and is decided by [`crate::MmioDevice`].
    pub const DEVICE_SPECIFIC_MASK: u64 = ((1 << 24) - 1) | (0b11 << 41) | !((1 << 50) - 1);
    /// What the transport itself offers on top of the device's bits.
    pub const TRANSPORT_OFFERED: u64 = INDIRECT_DESC | EVENT_IDX | VERSION_1;
}

/// Device status bits (§2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const SUSPEND: u32 = 16;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// Why a device stopped working and now needs a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// The driver's rings or descriptors are malformed (see [`QueueError`]).
    Queue(QueueError),
    /// Guest memory refused an access to a range that had been validated
    /// (only possible if the memory map changed under the device).
    Memory(MemError),
    /// A request chain had no device-writable byte, so its status cannot be
    /// reported (blk). `head` is the chain's head descriptor.
    NoStatusByte { head: u16 },
}

impl From<QueueError> for DeviceError {
    fn from(e: QueueError) -> Self {
        DeviceError::Queue(e)
    }
}

impl From<MemError> for DeviceError {
    fn from(e: MemError) -> Self {
        DeviceError::Memory(e)
    }
}

/// What a device did while handling a notification or a poll.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NotifyResult {
    /// At least one buffer was added to a used ring. The transport then asks
    /// each queue whether the driver wants a used buffer notification
    /// ([`Queue::needs_notification`]) and sets `InterruptStatus` bit 0.
    pub used_buffers: bool,
    /// The device changed its configuration space: the transport bumps
    /// `ConfigGeneration` and sets `InterruptStatus` bit 1.
    pub config_changed: bool,
}

impl NotifyResult {
    /// Combines two results (logical or of each flag).
    pub fn merge(self, other: NotifyResult) -> NotifyResult {
        NotifyResult {
            used_buffers: self.used_buffers || other.used_buffers,
            config_changed: self.config_changed || other.config_changed,
        }
    }
}

/// A virtio device model, independent of the transport.
///
/// [`MmioDevice`] owns the queues and calls into the model; the model never
/// sees registers. `notify` and `poll` are only called while the device is
/// live (`DRIVER_OK` set, neither `FAILED` nor `DEVICE_NEEDS_RESET`), and
/// only with queues the driver enabled (`Queue::ready`) doing anything.
pub trait VirtioDevice {
    /// Virtio device id (§5: 1 = network, 2 = block, 3 = console,
    /// 4 = entropy, 26 = file system).
    fn device_id(&self) -> u32;
    /// Device-type feature bits offered (the transport masks this with
    /// [`features::DEVICE_SPECIFIC_MASK`] and adds its own). Read once, when
    /// the [`MmioDevice`] is created.
    fn features(&self) -> u64;
    /// Number of virtqueues.
    fn num_queues(&self) -> u16;
    /// Maximum size of queue `queue` (`QueueSizeMax`). The transport rounds
    /// it down to a power of two no larger than [`queue::QUEUE_SIZE_MAX`].
    fn queue_max(&self, queue: u16) -> u16;
    /// Fills `data` with configuration space bytes starting at `offset`
    /// (relative to the start of the device configuration space). Bytes past
    /// the end of the device's layout read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// A driver write to configuration space. Returns whether the
    /// configuration changed (the transport then bumps `ConfigGeneration`).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) -> bool {
        false
    }
    /// Called once `FEATURES_OK` has been accepted, with the full negotiated
    /// feature set (transport bits included).
    fn ack_features(&mut self, _features: u64) {}
    /// An available buffer notification for `queue` (§4.2.3.3).
    fn notify(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError>;
    /// Makes progress without a notification: delivers asynchronous input
    /// (console receive, entropy that was not ready) and finishes work a
    /// per-call budget left over. The default does nothing.
    fn poll(
        &mut self,
        _queues: &mut [Queue],
        _mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        Ok(NotifyResult::default())
    }
    /// Device reset (§2.4): drop all in-flight state tied to the queues.
    fn reset(&mut self);
}

impl<D: VirtioDevice + ?Sized> VirtioDevice for Box<D> {
    fn device_id(&self) -> u32 {
        (**self).device_id()
    }
    fn features(&self) -> u64 {
        (**self).features()
    }
    fn num_queues(&self) -> u16 {
        (**self).num_queues()
    }
    fn queue_max(&self, queue: u16) -> u16 {
        (**self).queue_max(queue)
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        (**self).read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        (**self).write_config(offset, data)
    }
    fn ack_features(&mut self, features: u64) {
        (**self).ack_features(features)
    }
    fn notify(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        (**self).notify(queue, queues, mem)
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        (**self).poll(queues, mem)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
}

/// Copies the part of `layout` (a device's configuration space image) that
/// overlaps `[offset, offset + data.len())` into `data`; bytes outside the
/// layout read as zero. Helper for [`VirtioDevice::read_config`].
pub fn read_config_bytes(layout: &[u8], offset: u64, data: &mut [u8]) {
    for (i, out) in data.iter_mut().enumerate() {
        *out = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|at| layout.get(at))
            .copied()
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_window_and_tail() {
        let layout = [1u8, 2, 3, 4];
        let mut out = [0xffu8; 4];
        read_config_bytes(&layout, 2, &mut out);
        assert_eq!(out, [3, 4, 0, 0]);
        read_config_bytes(&layout, u64::MAX, &mut out);
        assert_eq!(out, [0; 4]);
    }

    #[test]
    fn device_specific_mask_excludes_transport_bits() {
        // §2.2: bits 24..=40, 43 are queue/negotiation extensions, 44..=49
        // reserved.
        for bit in 24..50 {
            let reserved_for_device = bit == 41 || bit == 42;
            assert_eq!(
                features::DEVICE_SPECIFIC_MASK & (1 << bit) != 0,
                reserved_for_device,
                "{bit}"
            );
        }
        assert_ne!(features::DEVICE_SPECIFIC_MASK & (1 << 0), 0);
        assert_ne!(features::DEVICE_SPECIFIC_MASK & (1 << 63), 0);
    }
}
