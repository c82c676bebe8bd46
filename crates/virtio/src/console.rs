//! virtio-console (§5.3 "Console Device"), device id 3, single port.
//!
//! This module owns the console device model [`Console`]: port 0's
//! receiveq (queue 0, device → driver) and transmitq (queue 1, driver →
//! device), the bounded host-input buffer, and the [`ConsoleBackend`] trait
//! that receives guest output.
//!
//! # Decisions
//!
//! * No `VIRTIO_CONSOLE_F_MULTIPORT` and no `VIRTIO_CONSOLE_F_SIZE`:
//!   `cols`, `rows` and `max_nr_ports` read 0. `VIRTIO_CONSOLE_F_EMERG_WRITE`
//!   is offered only when enabled with [`Console::with_emergency_write`]; a
//!   configuration write covering `emerg_wr` (offset 8) then sends its low
//!   byte to the backend at any time, even before initialisation (§5.3.5.1).
//! * Transmit: every chain's device-readable part goes to
//!   [`ConsoleBackend::write`], in chunks of at most [`TX_CHUNK`] bytes, up
//!   to [`TX_MAX_PER_CHAIN`] bytes per chain (the rest is dropped and
//!   counted in [`Console::dropped_output`]; Linux never sends more than a
//!   page per buffer); the chain is returned with used length 0 (nothing
//!   written). Writable buffers in the transmitq (a driver bug, §5.3.6.1)
//!   are ignored.
//! * Receive: host input is queued with [`Console::push_input`] in a buffer
//!   of [`INPUT_CAPACITY`] bytes; bytes that do not fit are dropped and
//!   counted ([`Console::dropped_input`]). Input is copied into receiveq
//!   buffers on a receiveq notification and on every poll — the host must
//!   call `MmioDevice::poll` after pushing input. A receive chain is only
//!   taken from the ring when there is input for it. A chain without
//!   writable bytes is returned with length 0.
//! * Reset drops nothing from the input buffer: bytes typed before the
//!   driver (re)starts are delivered once it posts buffers.
//! * At most [`CHAINS_PER_CALL`] chains per queue per call.

use alloc::collections::VecDeque;
use rivet_guest_mem::GuestMemory;

use crate::queue::{Queue, QUEUE_SIZE_MAX};
use crate::{read_config_bytes, DeviceError, NotifyResult, VirtioDevice};

/// Virtio device id of a console.
pub const DEVICE_ID: u32 = 3;
/// `VIRTIO_CONSOLE_F_SIZE`.
pub const VIRTIO_CONSOLE_F_SIZE: u64 = 1 << 0;
/// `VIRTIO_CONSOLE_F_MULTIPORT`.
pub const VIRTIO_CONSOLE_F_MULTIPORT: u64 = 1 << 1;
/// `VIRTIO_CONSOLE_F_EMERG_WRITE`.
pub const VIRTIO_CONSOLE_F_EMERG_WRITE: u64 = 1 << 2;
/// receiveq(port0).
pub const RECEIVEQ: u16 = 0;
/// transmitq(port0).
pub const TRANSMITQ: u16 = 1;
/// Host input buffered while the guest has no receive buffers.
pub const INPUT_CAPACITY: usize = 4096;
/// Largest slice handed to the backend at once.
pub const TX_CHUNK: usize = 256;
/// Bytes of one transmit chain passed to the backend; the rest is dropped.
pub const TX_MAX_PER_CHAIN: u32 = 64 * 1024;
/// Chains handled per queue per notify or poll.
pub const CHAINS_PER_CALL: usize = 2 * QUEUE_SIZE_MAX as usize;
/// Offset of `emerg_wr` in the configuration space.
pub const EMERG_WR_OFFSET: u64 = 8;
const CONFIG_LEN: usize = 12;

/// Where guest console output goes.
pub trait ConsoleBackend {
    /// Guest output bytes, in order.
    fn write(&mut self, data: &[u8]);
}

impl<B: ConsoleBackend + ?Sized> ConsoleBackend for &mut B {
    fn write(&mut self, data: &[u8]) {
        (**self).write(data)
    }
}

/// The virtio-console device model.
pub struct Console<B: ConsoleBackend> {
    backend: B,
    input: VecDeque<u8>,
    dropped: u64,
    dropped_output: u64,
    emergency_write: bool,
}

impl<B: ConsoleBackend> Console<B> {
    /// A console writing guest output to `backend`.
    pub fn new(backend: B) -> Self {
        Console {
            backend,
            input: VecDeque::new(),
            dropped: 0,
            dropped_output: 0,
            emergency_write: false,
        }
    }
    /// Offers `VIRTIO_CONSOLE_F_EMERG_WRITE` (must be chosen before the
    /// device is wrapped in an `MmioDevice`, which reads features once).
    pub fn with_emergency_write(mut self, on: bool) -> Self {
        self.emergency_write = on;
        self
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The backend, mutable.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
    /// Queues host input for the guest; returns how many bytes were
    /// accepted (the rest are dropped and counted). Call
    /// `MmioDevice::poll` afterwards to deliver.
    pub fn push_input(&mut self, data: &[u8]) -> usize {
        let room = INPUT_CAPACITY.saturating_sub(self.input.len());
        let n = data.len().min(room);
        self.input.extend(data.iter().take(n));
        self.dropped = self
            .dropped
            .saturating_add(data.len().saturating_sub(n) as u64);
        n
    }
    /// Bytes waiting for receive buffers.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }
    /// Input bytes dropped because the buffer was full.
    pub fn dropped_input(&self) -> u64 {
        self.dropped
    }
    /// Output bytes dropped beyond [`TX_MAX_PER_CHAIN`].
    pub fn dropped_output(&self) -> u64 {
        self.dropped_output
    }

    fn transmit(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, DeviceError> {
        let Some(q) = queues.get_mut(usize::from(TRANSMITQ)) else {
            return Ok(false);
        };
        let mut used = false;
        let mut buf = [0u8; TX_CHUNK];
        for _ in 0..CHAINS_PER_CALL {
            let Some(chain) = q.pop(mem)? else { break };
            let limit = chain.readable_len().min(TX_MAX_PER_CHAIN);
            let mut off: u32 = 0;
            while off < limit {
                let want = (limit.saturating_sub(off) as usize).min(TX_CHUNK);
                let Some(part) = buf.get_mut(..want) else {
                    break;
                };
                let n = chain.read_at(mem, u64::from(off), part)?;
                if n == 0 {
                    break;
                }
                if let Some(part) = buf.get(..n) {
                    self.backend.write(part);
                }
                off = off.saturating_add(n as u32);
            }
            let dropped = chain.readable_len().saturating_sub(off);
            self.dropped_output = self.dropped_output.saturating_add(u64::from(dropped));
            q.push_used(mem, chain.head(), 0)?;
            used = true;
        }
        Ok(used)
    }

    fn receive(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, DeviceError> {
        let Some(q) = queues.get_mut(usize::from(RECEIVEQ)) else {
            return Ok(false);
        };
        let mut used = false;
        for _ in 0..CHAINS_PER_CALL {
            if self.input.is_empty() {
                break;
            }
            let Some(chain) = q.pop(mem)? else { break };
            let room = chain.writable_len() as usize;
            let n = room.min(self.input.len());
            let (a, b) = self.input.as_slices();
            let a_n = n.min(a.len());
            let b_n = n.saturating_sub(a_n);
            let mut written = 0usize;
            if let Some(part) = a.get(..a_n) {
                written = written.saturating_add(chain.write_at(mem, 0, part)?);
            }
            if let Some(part) = b.get(..b_n) {
                written = written.saturating_add(chain.write_at(mem, a_n as u64, part)?);
            }
            let written = written.min(n);
            self.input.drain(..written);
            q.push_used(mem, chain.head(), written as u32)?;
            used = true;
        }
        Ok(used)
    }

    fn run(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        let tx = self.transmit(queues, mem)?;
        let rx = self.receive(queues, mem)?;
        Ok(NotifyResult {
            used_buffers: tx || rx,
            config_changed: false,
        })
    }
}

impl<B: ConsoleBackend> VirtioDevice for Console<B> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        if self.emergency_write {
            VIRTIO_CONSOLE_F_EMERG_WRITE
        } else {
            0
        }
    }
    fn num_queues(&self) -> u16 {
        2
    }
    fn queue_max(&self, _queue: u16) -> u16 {
        QUEUE_SIZE_MAX
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr: all 0.
        read_config_bytes(&[0u8; CONFIG_LEN], offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        if self.emergency_write {
            if let Some(&byte) = EMERG_WR_OFFSET
                .checked_sub(offset)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| data.get(i))
            {
                self.backend.write(&[byte]);
            }
        }
        false
    }
    fn notify(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        match queue {
            TRANSMITQ => {
                let tx = self.transmit(queues, mem)?;
                Ok(NotifyResult {
                    used_buffers: tx,
                    config_changed: false,
                })
            }
            RECEIVEQ => {
                let rx = self.receive(queues, mem)?;
                Ok(NotifyResult {
                    used_buffers: rx,
                    config_changed: false,
                })
            }
            _ => Ok(NotifyResult::default()),
        }
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        self.run(queues, mem)
    }
    fn reset(&mut self) {}
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[derive(Default)]
    struct Sink(Vec<u8>);
    impl ConsoleBackend for Sink {
        fn write(&mut self, data: &[u8]) {
            self.0.extend_from_slice(data);
        }
    }

    #[test]
    fn input_is_bounded_and_counted() {
        let mut c = Console::new(Sink::default());
        assert_eq!(c.push_input(&[1; 4000]), 4000);
        assert_eq!(c.push_input(&[2; 200]), 96);
        assert_eq!(c.pending_input(), INPUT_CAPACITY);
        assert_eq!(c.dropped_input(), 104);
        assert_eq!(c.push_input(&[3]), 0);
        assert_eq!(c.dropped_input(), 105);
    }

    #[test]
    fn emergency_write_only_when_offered() {
        // §5.3.5.1: emerg_wr low byte goes to the output, at any time.
        let mut c = Console::new(Sink::default());
        assert_eq!(c.features(), 0);
        c.write_config(8, &[b'x', 0, 0, 0]);
        assert!(c.backend().0.is_empty());
        let mut c = Console::new(Sink::default()).with_emergency_write(true);
        assert_eq!(c.features(), VIRTIO_CONSOLE_F_EMERG_WRITE);
        c.write_config(8, &[b'x', b'y', 0, 0]);
        c.write_config(8, b"z");
        c.write_config(9, b"!");
        c.write_config(4, &[b'!'; 4]);
        assert_eq!(c.backend().0, b"xz");
    }
}
