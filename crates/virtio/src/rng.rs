//! virtio-rng (§5.4 "Entropy Device"), device id 4.
//!
//! This module owns the entropy device model [`Rng`] (one requestq, no
//! features, no configuration space) and the [`EntropySource`] trait it
//! draws bytes from.
//!
//! # Decisions
//!
//! * Each request chain gets up to [`MAX_BYTES_PER_REQUEST`] bytes written
//!   into its device-writable part, from the start; the used length is the
//!   number of bytes written. §5.4.6.2 lets the device use less than the
//!   whole buffer but requires at least one byte, so:
//! * if the source has nothing right now ([`EntropySource::fill`] returns
//!   0 for the first chunk), the chain is kept *pending* inside the device
//!   (no further chains are taken from the ring) and completed by a later
//!   notify or poll. The host should poll when its source refills.
//! * A chain with no writable bytes (a driver bug, §5.4.6.1) is returned
//!   with length 0; readable bytes are ignored.
//! * A pending chain is dropped on reset, or if the driver disables the
//!   queue.
//! * At most [`CHAINS_PER_CALL`] chains per notify or poll.

use rivet_guest_mem::GuestMemory;

use crate::queue::{Chain, Queue, QUEUE_SIZE_MAX};
use crate::{DeviceError, NotifyResult, VirtioDevice};

/// Virtio device id of an entropy device.
pub const DEVICE_ID: u32 = 4;
/// Upper bound of bytes supplied to one request.
pub const MAX_BYTES_PER_REQUEST: u32 = 4096;
/// Bytes asked of the source per `fill` call.
pub const FILL_CHUNK: usize = 256;
/// Chains handled per notify or poll.
pub const CHAINS_PER_CALL: usize = 2 * QUEUE_SIZE_MAX as usize;

/// A source of random bytes.
pub trait EntropySource {
    /// Fills a prefix of `buf` with random bytes and returns its length
    /// (anything from 0 — nothing available now — to `buf.len()`; larger
    /// values are treated as `buf.len()`).
    fn fill(&mut self, buf: &mut [u8]) -> usize;
}

impl<E: EntropySource + ?Sized> EntropySource for &mut E {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        (**self).fill(buf)
    }
}

/// The virtio-rng device model.
pub struct Rng<E: EntropySource> {
    source: E,
    pending: Option<Chain>,
    supplied: u64,
}

impl<E: EntropySource> Rng<E> {
    /// An entropy device drawing from `source`.
    pub fn new(source: E) -> Self {
        Rng {
            source,
            pending: None,
            supplied: 0,
        }
    }
    /// The source.
    pub fn source(&self) -> &E {
        &self.source
    }
    /// The source, mutable.
    pub fn source_mut(&mut self) -> &mut E {
        &mut self.source
    }
    /// Whether a request is waiting for entropy.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
    /// Total random bytes given to the guest.
    pub fn supplied(&self) -> u64 {
        self.supplied
    }

    /// Writes as many random bytes as the source gives (bounded) into the
    /// chain; returns the count.
    fn fill_chain(&mut self, chain: &Chain, mem: &mut dyn GuestMemory) -> Result<u32, DeviceError> {
        let want = chain.writable_len().min(MAX_BYTES_PER_REQUEST);
        let mut buf = [0u8; FILL_CHUNK];
        let mut done: u32 = 0;
        while done < want {
            let ask = (want.saturating_sub(done) as usize).min(FILL_CHUNK);
            let Some(part) = buf.get_mut(..ask) else {
                break;
            };
            let got = self.source.fill(part).min(ask);
            if got == 0 {
                break;
            }
            let Some(bytes) = buf.get(..got) else { break };
            let n = chain.write_at(mem, u64::from(done), bytes)?;
            done = done.saturating_add(n as u32);
            if got < ask || n < got {
                break;
            }
        }
        buf.fill(0);
        self.supplied = self.supplied.saturating_add(u64::from(done));
        Ok(done)
    }

    fn serve(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        let mut result = NotifyResult::default();
        let Some(q) = queues.get_mut(0) else {
            return Ok(result);
        };
        if !q.ready() {
            self.pending = None;
            return Ok(result);
        }
        for _ in 0..CHAINS_PER_CALL {
            let chain = match self.pending.take() {
                Some(c) => c,
                None => match q.pop(mem)? {
                    Some(c) => c,
                    None => break,
                },
            };
            let n = if chain.writable_len() == 0 {
                0
            } else {
                self.fill_chain(&chain, mem)?
            };
            if n == 0 && chain.writable_len() != 0 {
                self.pending = Some(chain);
                break;
            }
            q.push_used(mem, chain.head(), n)?;
            result.used_buffers = true;
        }
        Ok(result)
    }
}

impl<E: EntropySource> VirtioDevice for Rng<E> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn queue_max(&self, _queue: u16) -> u16 {
        QUEUE_SIZE_MAX
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn notify(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        if queue != 0 {
            return Ok(NotifyResult::default());
        }
        self.serve(queues, mem)
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        self.serve(queues, mem)
    }
    fn reset(&mut self) {
        self.pending = None;
    }
}
