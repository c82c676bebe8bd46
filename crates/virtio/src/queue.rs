//! Split virtqueues, device side (§2.7 "Split Virtqueues").
//!
//! This module owns one virtqueue's device state ([`Queue`]), the walk of a
//! descriptor chain out of guest memory into a validated [`Chain`]
//! ([`Queue::pop`]), returning chains through the used ring
//! ([`Queue::push_used`]) and the used-buffer notification decision
//! ([`Queue::needs_notification`]), including `VIRTIO_F_EVENT_IDX`.
//!
//! # Layout in guest memory (§2.7, all little-endian)
//!
//! | part                       | alignment | size (`n` = queue size)   |
//! |----------------------------|-----------|---------------------------|
//! | descriptor table           | 16        | `16 * n`                  |
//! | available ring (driver)    | 2         | `6 + 2 * n` (`used_event` last) |
//! | used ring (device)         | 4         | `6 + 8 * n` (`avail_event` last) |
//!
//! # Validation rules (decisions)
//!
//! * [`Queue::activate`] (the driver writing `QueueReady = 1`) checks the
//!   size (a power of two, 1..=`max_size`), the alignment of the three parts
//!   and that all three lie entirely inside guest RAM (the event-index words
//!   included, whether or not EVENT_IDX is negotiated).
//! * Chain walking ([`Queue::pop`]) fails with a [`QueueError`] — which the
//!   transport turns into `DEVICE_NEEDS_RESET` — when: the available index
//!   moved more than the queue size past the device's position; a head or
//!   `next` index is outside its table; a chain visits more descriptors than
//!   its table holds (this is how `next` loops are detected, in the main
//!   table and inside an indirect table); an INDIRECT descriptor appears
//!   without `VIRTIO_F_INDIRECT_DESC` negotiated, with NEXT also set, inside
//!   an indirect table (nesting), or with a table length that is zero, not a
//!   multiple of 16, longer than [`MAX_INDIRECT_DESCRIPTORS`] entries or not
//!   inside RAM; a buffer is not inside RAM; a device-readable buffer follows
//!   a device-writable one (§2.7.4.2); or the chain's total length exceeds
//!   `u32::MAX` bytes (§2.7.5.2 forbids more than 2^32; used lengths are 32
//!   bits).
//! * Zero-length descriptors are accepted and dropped: they describe no
//!   memory, so their address is not checked and they do not take part in
//!   the readable-before-writable rule.
//! * An indirect table may hold up to [`MAX_INDIRECT_DESCRIPTORS`] (256)
//!   entries even when the driver chose a smaller queue: Linux sizes
//!   indirect tables from `seg_max`, not from the queue size. A chain can
//!   therefore reach `queue size - 1 + 256` segments, which bounds both the
//!   walk and the segment list.
//!
//! # Ordering
//!
//! The device writes a used element before the used `idx` that publishes it,
//! and reads the available `idx` before the ring entries it covers, with
//! `fence`s in between (other vCPUs of the guest run concurrently with the
//! hypervisor emulating this device).

use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};
use rivet_guest_mem::{GuestMemory, MemError};

/// Largest queue size this crate offers in `QueueSizeMax`.
pub const QUEUE_SIZE_MAX: u16 = 256;
/// Largest indirect descriptor table accepted, in descriptors.
pub const MAX_INDIRECT_DESCRIPTORS: u32 = 256;

/// `VIRTQ_DESC_F_NEXT`: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the buffer is device write-only.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT` in the available ring's `flags`.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

const DESC_SIZE: u64 = 16;

/// Why a virtqueue operation failed. Every variant is a driver (or hostile
/// guest) bug that makes the device unusable until reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is not enabled (`QueueReady` = 0).
    NotReady,
    /// `QueueSize` is zero, not a power of two or above `QueueSizeMax`.
    InvalidSize(u16),
    /// A ring part is not aligned as §2.7 requires.
    Misaligned { addr: u64 },
    /// A ring part is not inside guest RAM.
    RingOutOfRange { addr: u64, len: u64 },
    /// A ring access failed although the ring had been validated.
    Memory(MemError),
    /// The available index is more than the queue size ahead of the device.
    AvailIndexJump { avail_idx: u16, next_avail: u16 },
    /// An available ring entry names a descriptor outside the table.
    HeadOutOfRange(u16),
    /// A `next` field names a descriptor outside its table.
    NextOutOfRange(u16),
    /// The chain visits more descriptors than its table holds (a loop).
    ChainTooLong,
    /// INDIRECT used without `VIRTIO_F_INDIRECT_DESC` negotiated.
    IndirectNotNegotiated,
    /// INDIRECT set inside an indirect table.
    NestedIndirect,
    /// INDIRECT and NEXT both set.
    IndirectWithNext,
    /// Indirect table length is 0, not a multiple of 16, or too long.
    BadIndirectLength(u32),
    /// A buffer or indirect table is not inside guest RAM.
    DescriptorOutOfRange { addr: u64, len: u32 },
    /// A device-readable descriptor follows a device-writable one.
    ReadableAfterWritable,
    /// The chain's total length exceeds `u32::MAX` bytes.
    TotalLengthOverflow,
    /// `push_used` was given a head outside the descriptor table.
    UsedHeadOutOfRange(u16),
}

impl From<MemError> for QueueError {
    fn from(e: MemError) -> Self {
        QueueError::Memory(e)
    }
}

/// One guest buffer of a chain, validated to lie inside guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes (never zero).
    pub len: u32,
    /// Device-writable (`VIRTQ_DESC_F_WRITE`), otherwise device-readable.
    pub writable: bool,
}

/// A validated descriptor chain popped from the available ring: all
/// device-readable segments first, then all device-writable ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    head: u16,
    segments: Vec<Segment>,
    readable_len: u32,
    writable_len: u32,
}

impl Chain {
    fn new(head: u16) -> Self {
        Chain {
            head,
            segments: Vec::new(),
            readable_len: 0,
            writable_len: 0,
        }
    }

    /// Index of the head descriptor: the `id` to put in the used ring.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The segments in chain order (readable ones first).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Total length of the device-readable part.
    pub fn readable_len(&self) -> u32 {
        self.readable_len
    }

    /// Total length of the device-writable part.
    pub fn writable_len(&self) -> u32 {
        self.writable_len
    }

    fn add(
        &mut self,
        mem: &dyn GuestMemory,
        addr: u64,
        len: u32,
        writable: bool,
    ) -> Result<(), QueueError> {
        if len == 0 {
            return Ok(());
        }
        mem.check_range(addr, u64::from(len))
            .map_err(|_| QueueError::DescriptorOutOfRange { addr, len })?;
        if !writable && self.writable_len != 0 {
            return Err(QueueError::ReadableAfterWritable);
        }
        // The total must fit in u32; then each part does too.
        self.readable_len
            .checked_add(self.writable_len)
            .and_then(|t| t.checked_add(len))
            .ok_or(QueueError::TotalLengthOverflow)?;
        if writable {
            self.writable_len = self.writable_len.saturating_add(len);
        } else {
            self.readable_len = self.readable_len.saturating_add(len);
        }
        self.segments.push(Segment {
            addr,
            len,
            writable,
        });
        Ok(())
    }

    /// Visits the parts of the readable (`writable == false`) or writable
    /// part covering `[offset, offset + max)`: calls `f(gpa, at, n)` for `n`
    /// bytes at guest address `gpa`, `at` bytes into the window. Returns the
    /// number of bytes visited (short when the part ends first).
    fn visit<F>(&self, writable: bool, offset: u64, max: usize, mut f: F) -> Result<usize, MemError>
    where
        F: FnMut(u64, usize, usize) -> Result<(), MemError>,
    {
        let mut skip = offset;
        let mut done = 0usize;
        for seg in self.segments.iter().filter(|s| s.writable == writable) {
            let left = max.saturating_sub(done);
            if left == 0 {
                break;
            }
            let len = u64::from(seg.len);
            if skip >= len {
                skip = skip.saturating_sub(len);
                continue;
            }
            let here = len.saturating_sub(skip);
            let n = usize::try_from(here).map_or(left, |h| h.min(left));
            let gpa = seg.addr.checked_add(skip).ok_or(MemError::OutOfRange {
                gpa: seg.addr,
                len: u64::from(seg.len),
            })?;
            f(gpa, done, n)?;
            done = done.saturating_add(n);
            skip = 0;
        }
        Ok(done)
    }

    /// Copies device-readable bytes starting `offset` bytes into the
    /// readable part into `buf`. Returns how many bytes were copied: fewer
    /// than `buf.len()` when the readable part ends first.
    pub fn read_at(
        &self,
        mem: &dyn GuestMemory,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, MemError> {
        let max = buf.len();
        self.visit(false, offset, max, |gpa, at, n| {
            let end = at
                .checked_add(n)
                .ok_or(MemError::OutOfRange { gpa, len: n as u64 })?;
            let dst = buf
                .get_mut(at..end)
                .ok_or(MemError::OutOfRange { gpa, len: n as u64 })?;
            mem.read(gpa, dst)
        })
    }

    /// Alias of [`Chain::read_at`]: copies from the chain's readable part.
    pub fn copy_from(
        &self,
        mem: &dyn GuestMemory,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, MemError> {
        self.read_at(mem, offset, buf)
    }

    /// Copies `buf` into the device-writable part starting `offset` bytes
    /// into it. Returns how many bytes were written: fewer than `buf.len()`
    /// when the writable part ends first.
    pub fn write_at(
        &self,
        mem: &mut dyn GuestMemory,
        offset: u64,
        buf: &[u8],
    ) -> Result<usize, MemError> {
        self.visit(true, offset, buf.len(), |gpa, at, n| {
            let end = at
                .checked_add(n)
                .ok_or(MemError::OutOfRange { gpa, len: n as u64 })?;
            let src = buf
                .get(at..end)
                .ok_or(MemError::OutOfRange { gpa, len: n as u64 })?;
            mem.write(gpa, src)
        })
    }

    /// Reads the whole readable part, but at most `limit` bytes (the caller
    /// bounds the allocation; guest lengths go up to 4 GiB).
    pub fn read_all(&self, mem: &dyn GuestMemory, limit: usize) -> Result<Vec<u8>, MemError> {
        let want = usize::try_from(self.readable_len).map_or(limit, |r| r.min(limit));
        let mut out = alloc::vec![0u8; want];
        let n = self.read_at(mem, 0, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

/// A raw descriptor as found in a table.
#[derive(Debug, Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn read_desc(mem: &dyn GuestMemory, table: u64, index: u16) -> Result<Desc, QueueError> {
    let at = u64::from(index)
        .checked_mul(DESC_SIZE)
        .and_then(|o| table.checked_add(o))
        .ok_or(QueueError::DescriptorOutOfRange {
            addr: table,
            len: 0,
        })?;
    let mut b = [0u8; 16];
    mem.read(at, &mut b)?;
    let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = b;
    Ok(Desc {
        addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        flags: u16::from_le_bytes([f0, f1]),
        next: u16::from_le_bytes([n0, n1]),
    })
}

fn add(base: u64, off: u64) -> Result<u64, QueueError> {
    base.checked_add(off).ok_or(QueueError::RingOutOfRange {
        addr: base,
        len: off,
    })
}

/// One split virtqueue as seen by the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    /// Next available ring index the device will consume (`last_avail_idx`).
    next_avail: u16,
    /// Next used ring index the device will fill (the used `idx`).
    next_used: u16,
    /// Used `idx` at the last notification decision.
    signalled_used: u16,
    event_idx: bool,
    indirect: bool,
}

impl Queue {
    /// A disabled queue offering `max_size` entries (rounded down to a
    /// power of two no larger than [`QUEUE_SIZE_MAX`]; 0 = queue absent).
    pub fn new(max_size: u16) -> Self {
        let capped = max_size.min(QUEUE_SIZE_MAX);
        let max_size = if capped == 0 {
            0
        } else {
            1u16 << (15u32.saturating_sub(capped.leading_zeros()))
        };
        Queue {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
            event_idx: false,
            indirect: false,
        }
    }

    /// Back to the post-reset state (disabled, addresses 0, size = max,
    /// features off).
    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// `QueueSizeMax`.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }
    /// The size the driver chose (`QueueSize`; defaults to the maximum).
    pub fn size(&self) -> u16 {
        self.size
    }
    /// `QueueReady`.
    pub fn ready(&self) -> bool {
        self.ready
    }
    /// Descriptor area GPA.
    pub fn desc_table(&self) -> u64 {
        self.desc_table
    }
    /// Driver area (available ring) GPA.
    pub fn avail_ring(&self) -> u64 {
        self.avail_ring
    }
    /// Device area (used ring) GPA.
    pub fn used_ring(&self) -> u64 {
        self.used_ring
    }
    /// The device's position in the available ring (`last_avail_idx`).
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }
    /// The used `idx` the device last published.
    pub fn next_used(&self) -> u16 {
        self.next_used
    }
    /// Whether `VIRTIO_F_EVENT_IDX` is in effect.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }
    /// Whether `VIRTIO_F_INDIRECT_DESC` is in effect.
    pub fn indirect(&self) -> bool {
        self.indirect
    }

    /// `QueueSize` write; validated by [`Queue::activate`].
    pub fn set_size(&mut self, size: u16) {
        self.size = size;
    }
    /// `QueueDesc{Low,High}`.
    pub fn set_desc_table(&mut self, gpa: u64) {
        self.desc_table = gpa;
    }
    /// `QueueDriver{Low,High}`.
    pub fn set_avail_ring(&mut self, gpa: u64) {
        self.avail_ring = gpa;
    }
    /// `QueueDevice{Low,High}`.
    pub fn set_used_ring(&mut self, gpa: u64) {
        self.used_ring = gpa;
    }
    /// Applies the negotiated `VIRTIO_F_EVENT_IDX`.
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }
    /// Applies the negotiated `VIRTIO_F_INDIRECT_DESC`.
    pub fn set_indirect(&mut self, on: bool) {
        self.indirect = on;
    }

    /// Validates the configuration and enables the queue (`QueueReady = 1`),
    /// starting both rings at index 0. On error the queue stays disabled.
    pub fn activate(&mut self, mem: &dyn GuestMemory) -> Result<(), QueueError> {
        let n = self.size;
        if n == 0 || !n.is_power_of_two() || n > self.max_size {
            return Err(QueueError::InvalidSize(n));
        }
        let n64 = u64::from(n);
        // Sizes cannot overflow: n <= 256.
        let parts = [
            (self.desc_table, 16u64, n64.saturating_mul(16)),
            (self.avail_ring, 2, n64.saturating_mul(2).saturating_add(6)),
            (self.used_ring, 4, n64.saturating_mul(8).saturating_add(6)),
        ];
        for (addr, align, len) in parts {
            if addr & (align.saturating_sub(1)) != 0 {
                return Err(QueueError::Misaligned { addr });
            }
            mem.check_range(addr, len)
                .map_err(|_| QueueError::RingOutOfRange { addr, len })?;
        }
        self.ready = true;
        self.next_avail = 0;
        self.next_used = 0;
        self.signalled_used = 0;
        Ok(())
    }

    /// Disables the queue (`QueueReady = 0`); configuration is kept.
    pub fn deactivate(&mut self) {
        self.ready = false;
    }

    fn slot(&self, idx: u16) -> u64 {
        // size is a non-zero power of two while ready.
        u64::from(idx & self.size.wrapping_sub(1))
    }

    fn read_avail_idx(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        Ok(mem.read_u16(add(self.avail_ring, 2)?)?)
    }

    fn used_event_addr(&self) -> Result<u64, QueueError> {
        add(
            self.avail_ring,
            u64::from(self.size).saturating_mul(2).saturating_add(4),
        )
    }

    fn avail_event_addr(&self) -> Result<u64, QueueError> {
        add(
            self.used_ring,
            u64::from(self.size).saturating_mul(8).saturating_add(4),
        )
    }

    /// Number of chains the driver made available that the device has not
    /// consumed yet.
    pub fn pending(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        if !self.ready {
            return Ok(0);
        }
        let avail_idx = self.read_avail_idx(mem)?;
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIndexJump {
                avail_idx,
                next_avail: self.next_avail,
            });
        }
        Ok(pending)
    }

    /// Takes the next available descriptor chain, validated (see the module
    /// documentation). `Ok(None)` when the ring is empty or the queue is not
    /// enabled. With EVENT_IDX, an empty ring also publishes `avail_event =
    /// next_avail` ("notify me when you add the next one", §2.7.10) and
    /// re-checks the ring to close the race with a concurrent driver.
    pub fn pop(&mut self, mem: &mut dyn GuestMemory) -> Result<Option<Chain>, QueueError> {
        if !self.ready {
            return Ok(None);
        }
        let mut pending = self.pending(mem)?;
        if pending == 0 && self.event_idx {
            mem.write_u16(self.avail_event_addr()?, self.next_avail)?;
            fence(Ordering::SeqCst);
            pending = self.pending(mem)?;
        }
        if pending == 0 {
            return Ok(None);
        }
        // Read the ring entry only after the index that covers it.
        fence(Ordering::Acquire);
        let entry = add(
            self.avail_ring,
            self.slot(self.next_avail)
                .saturating_mul(2)
                .saturating_add(4),
        )?;
        let head = mem.read_u16(entry)?;
        let chain = self.walk(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    fn walk(&self, mem: &dyn GuestMemory, head: u16) -> Result<Chain, QueueError> {
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange(head));
        }
        let mut chain = Chain::new(head);
        let mut table = self.desc_table;
        let mut table_len = u32::from(self.size);
        let mut in_indirect = false;
        let mut index = head;
        let mut visited: u32 = 0;
        loop {
            // A loop-free chain visits each table entry at most once.
            visited = visited.saturating_add(1);
            if visited > table_len {
                return Err(QueueError::ChainTooLong);
            }
            let d = read_desc(mem, table, index)?;
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                if in_indirect {
                    return Err(QueueError::NestedIndirect);
                }
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated);
                }
                if d.flags & VIRTQ_DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext);
                }
                let entries = d.len / 16;
                if d.len == 0 || !d.len.is_multiple_of(16) || entries > MAX_INDIRECT_DESCRIPTORS {
                    return Err(QueueError::BadIndirectLength(d.len));
                }
                mem.check_range(d.addr, u64::from(d.len)).map_err(|_| {
                    QueueError::DescriptorOutOfRange {
                        addr: d.addr,
                        len: d.len,
                    }
                })?;
                // §2.7.5.3.2: the WRITE flag of the table descriptor is
                // ignored; the table starts at index 0.
                table = d.addr;
                table_len = entries;
                in_indirect = true;
                index = 0;
                visited = 0;
                continue;
            }
            chain.add(mem, d.addr, d.len, d.flags & VIRTQ_DESC_F_WRITE != 0)?;
            if d.flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            if u32::from(d.next) >= table_len {
                return Err(QueueError::NextOutOfRange(d.next));
            }
            index = d.next;
        }
    }

    /// Returns the chain with head `head` to the driver, reporting `len`
    /// bytes written into its device-writable part: writes the used element,
    /// then (after a fence) the new used `idx` (§2.7.8: `len` before `idx`).
    pub fn push_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        self.push_used_batch(mem, &[(head, len)])
    }

    /// Returns several chains at once, as `(head, len)` pairs in order:
    /// writes every used element, then (after one fence) the used `idx`
    /// once, so the driver observes all of them together. virtio-net needs
    /// this for a packet spread over several buffers (net.tex "Processing
    /// of Incoming Packets": the device MUST use all buffers of one packet
    /// together). Every head is checked before anything is written. The
    /// caller passes at most the queue size entries (more would overwrite
    /// each other's slots; still memory safe).
    pub fn push_used_batch(
        &mut self,
        mem: &mut dyn GuestMemory,
        used: &[(u16, u32)],
    ) -> Result<(), QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        if let Some(&(head, _)) = used.iter().find(|&&(head, _)| head >= self.size) {
            return Err(QueueError::UsedHeadOutOfRange(head));
        }
        if used.is_empty() {
            return Ok(());
        }
        let mut idx = self.next_used;
        for &(head, len) in used {
            let elem = add(
                self.used_ring,
                self.slot(idx).saturating_mul(8).saturating_add(4),
            )?;
            let mut b = [0u8; 8];
            let (id_bytes, len_bytes) = b.split_at_mut(4);
            id_bytes.copy_from_slice(&u32::from(head).to_le_bytes());
            len_bytes.copy_from_slice(&len.to_le_bytes());
            mem.write(elem, &b)?;
            idx = idx.wrapping_add(1);
        }
        fence(Ordering::Release);
        self.next_used = idx;
        mem.write_u16(add(self.used_ring, 2)?, self.next_used)?;
        Ok(())
    }

    /// Whether the driver wants a used buffer notification for the entries
    /// added since the previous call (§2.7.7.2):
    ///
    /// * without EVENT_IDX: unless the available ring's `flags` has
    ///   `VIRTQ_AVAIL_F_NO_INTERRUPT`;
    /// * with EVENT_IDX: if one of the entries was written at used index
    ///   `used_event`, i.e. `used_event` lies in `[old, new)` modulo 2^16,
    ///   where `old` is the used `idx` at the previous call and `new` the
    ///   current one: `(used_event - old) mod 2^16 < (new - old) mod 2^16`.
    ///
    /// Returns `false` when nothing was added since the previous call, and
    /// `true` (a spurious notification, which drivers must tolerate) if the
    /// driver's ring cannot be read.
    pub fn needs_notification(&mut self, mem: &dyn GuestMemory) -> bool {
        let old = self.signalled_used;
        let new = self.next_used;
        self.signalled_used = new;
        if !self.ready || old == new {
            return false;
        }
        // The used idx store must be visible before we sample the driver's
        // suppression state.
        fence(Ordering::SeqCst);
        if self.event_idx {
            match self.used_event_addr().and_then(|a| Ok(mem.read_u16(a)?)) {
                Ok(used_event) => used_event.wrapping_sub(old) < new.wrapping_sub(old),
                Err(_) => true,
            }
        } else {
            match mem.read_u16(self.avail_ring) {
                Ok(flags) => flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0,
                Err(_) => true,
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use rivet_guest_mem::VecMemory;

    const BASE: u64 = 0x8000_0000;
    const DESC: u64 = BASE;
    const AVAIL: u64 = BASE + 0x1000;
    const USED: u64 = BASE + 0x2000;

    fn mem() -> VecMemory {
        VecMemory::new(BASE, 0x10000)
    }

    fn queue(size: u16, m: &VecMemory) -> Queue {
        let mut q = Queue::new(QUEUE_SIZE_MAX);
        q.set_size(size);
        q.set_desc_table(DESC);
        q.set_avail_ring(AVAIL);
        q.set_used_ring(USED);
        q.activate(m).unwrap();
        q
    }

    fn desc(m: &mut VecMemory, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table + 16 * u64::from(i);
        m.write_u64(at, addr).unwrap();
        m.write_u32(at + 8, len).unwrap();
        m.write_u16(at + 12, flags).unwrap();
        m.write_u16(at + 14, next).unwrap();
    }

    fn publish(m: &mut VecMemory, size: u16, heads: &[u16]) {
        let mut idx = m.read_u16(AVAIL + 2).unwrap();
        for &h in heads {
            m.write_u16(AVAIL + 4 + 2 * u64::from(idx % size), h)
                .unwrap();
            idx = idx.wrapping_add(1);
        }
        m.write_u16(AVAIL + 2, idx).unwrap();
    }

    #[test]
    fn new_rounds_max_down_to_power_of_two() {
        assert_eq!(Queue::new(300).max_size(), 256);
        assert_eq!(Queue::new(200).max_size(), 128);
        assert_eq!(Queue::new(1).max_size(), 1);
        assert_eq!(Queue::new(0).max_size(), 0);
    }

    #[test]
    fn activate_checks_size_alignment_and_range() {
        // §2.7: queue size is a power of 2; descriptor table 16-aligned,
        // available ring 2-aligned, used ring 4-aligned.
        let m = mem();
        let mut q = Queue::new(8);
        q.set_desc_table(DESC);
        q.set_avail_ring(AVAIL);
        q.set_used_ring(USED);
        for bad in [0u16, 3, 16] {
            q.set_size(bad);
            assert_eq!(q.activate(&m), Err(QueueError::InvalidSize(bad)));
            assert!(!q.ready());
        }
        q.set_size(8);
        q.set_desc_table(DESC + 8);
        assert_eq!(
            q.activate(&m),
            Err(QueueError::Misaligned { addr: DESC + 8 })
        );
        q.set_desc_table(DESC);
        q.set_avail_ring(AVAIL + 1);
        assert!(matches!(q.activate(&m), Err(QueueError::Misaligned { .. })));
        q.set_avail_ring(AVAIL);
        q.set_used_ring(USED + 2);
        assert!(matches!(q.activate(&m), Err(QueueError::Misaligned { .. })));
        // The used ring is 6 + 8 * 8 = 70 bytes; its tail (avail_event)
        // must be inside RAM too.
        q.set_used_ring(BASE + 0x10000 - 68);
        assert!(matches!(
            q.activate(&m),
            Err(QueueError::RingOutOfRange { .. })
        ));
        q.set_used_ring(BASE + 0x10000 - 72);
        assert_eq!(q.activate(&m), Ok(()));
    }

    #[test]
    fn pop_simple_chain_and_segments() {
        let mut m = mem();
        let mut q = queue(4, &m);
        desc(&mut m, DESC, 0, BASE + 0x4000, 16, VIRTQ_DESC_F_NEXT, 2);
        desc(
            &mut m,
            DESC,
            2,
            BASE + 0x5000,
            100,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            3,
        );
        desc(&mut m, DESC, 3, BASE + 0x6000, 1, VIRTQ_DESC_F_WRITE, 0);
        assert_eq!(q.pop(&mut m).unwrap(), None);
        publish(&mut m, 4, &[0]);
        let c = q.pop(&mut m).unwrap().unwrap();
        assert_eq!(c.head(), 0);
        assert_eq!(c.readable_len(), 16);
        assert_eq!(c.writable_len(), 101);
        assert_eq!(c.segments().len(), 3);
        assert!(c.segments()[1].writable);
        assert_eq!(q.pop(&mut m).unwrap(), None);
        assert_eq!(q.next_avail(), 1);
    }

    #[test]
    fn read_and_write_at_cross_segments() {
        let mut m = mem();
        let mut q = queue(4, &m);
        desc(&mut m, DESC, 0, BASE + 0x4000, 3, VIRTQ_DESC_F_NEXT, 1);
        desc(&mut m, DESC, 1, BASE + 0x4100, 5, VIRTQ_DESC_F_NEXT, 2);
        desc(
            &mut m,
            DESC,
            2,
            BASE + 0x5000,
            2,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            3,
        );
        desc(&mut m, DESC, 3, BASE + 0x5100, 4, VIRTQ_DESC_F_WRITE, 0);
        m.write(BASE + 0x4000, b"abc").unwrap();
        m.write(BASE + 0x4100, b"defgh").unwrap();
        publish(&mut m, 4, &[0]);
        let c = q.pop(&mut m).unwrap().unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(c.read_at(&m, 0, &mut buf).unwrap(), 8);
        assert_eq!(&buf[..8], b"abcdefgh");
        let mut buf = [0u8; 4];
        assert_eq!(c.read_at(&m, 2, &mut buf).unwrap(), 4);
        assert_eq!(&buf, b"cdef");
        assert_eq!(c.read_at(&m, 8, &mut buf).unwrap(), 0);
        assert_eq!(c.read_at(&m, u64::MAX, &mut buf).unwrap(), 0);
        assert_eq!(c.read_all(&m, 5).unwrap(), b"abcde");
        assert_eq!(c.read_all(&m, 100).unwrap(), b"abcdefgh");
        // Writes never touch the readable part.
        assert_eq!(c.write_at(&mut m, 1, b"XYZWVU").unwrap(), 5);
        assert_eq!(m.read_u16(BASE + 0x5000).unwrap().to_le_bytes(), [0, b'X']);
        let mut out = [0u8; 4];
        m.read(BASE + 0x5100, &mut out).unwrap();
        assert_eq!(&out, b"YZWV");
        let mut r = [0u8; 8];
        m.read(BASE + 0x4100, &mut r[..5]).unwrap();
        assert_eq!(&r[..5], b"defgh");
    }

    #[test]
    fn push_used_writes_element_then_idx() {
        // §2.7.8: id = head, len = bytes written; idx increments and wraps.
        let mut m = mem();
        let mut q = queue(2, &m);
        for round in 0u32..5 {
            q.push_used(&mut m, 1, 7 + round).unwrap();
            let slot = u64::from(round % 2);
            assert_eq!(m.read_u32(USED + 4 + 8 * slot).unwrap(), 1);
            assert_eq!(m.read_u32(USED + 8 + 8 * slot).unwrap(), 7 + round);
            assert_eq!(m.read_u16(USED + 2).unwrap(), round as u16 + 1);
        }
        assert_eq!(
            q.push_used(&mut m, 2, 0),
            Err(QueueError::UsedHeadOutOfRange(2))
        );
    }

    #[test]
    fn push_used_batch_publishes_idx_once() {
        // §2.7.8: elements first, then idx; a batch moves idx by its length
        // in one store, and a bad head anywhere rejects the whole batch.
        let mut m = mem();
        let mut q = queue(4, &m);
        q.push_used(&mut m, 3, 1).unwrap();
        assert_eq!(
            q.push_used_batch(&mut m, &[(0, 5), (4, 6)]),
            Err(QueueError::UsedHeadOutOfRange(4))
        );
        assert_eq!(m.read_u16(USED + 2).unwrap(), 1, "nothing published");
        q.push_used_batch(&mut m, &[(0, 5), (1, 6), (2, 7)])
            .unwrap();
        assert_eq!(m.read_u16(USED + 2).unwrap(), 4);
        for (slot, (id, len)) in [(1u64, (0u32, 5u32)), (2, (1, 6)), (3, (2, 7))] {
            assert_eq!(m.read_u32(USED + 4 + 8 * slot).unwrap(), id);
            assert_eq!(m.read_u32(USED + 8 + 8 * slot).unwrap(), len);
        }
        // Wraps around the ring.
        q.push_used_batch(&mut m, &[(3, 8), (2, 9)]).unwrap();
        assert_eq!(m.read_u16(USED + 2).unwrap(), 6);
        assert_eq!(m.read_u32(USED + 4 + 8).unwrap(), 2);
        q.push_used_batch(&mut m, &[]).unwrap();
        assert_eq!(q.next_used(), 6);
        q.deactivate();
        assert_eq!(
            q.push_used_batch(&mut m, &[(0, 0)]),
            Err(QueueError::NotReady)
        );
    }

    #[test]
    fn no_interrupt_flag_suppresses() {
        // §2.7.7.2 without EVENT_IDX: flags 1 => SHOULD NOT notify.
        let mut m = mem();
        let mut q = queue(4, &m);
        assert!(!q.needs_notification(&m), "nothing used yet");
        q.push_used(&mut m, 0, 0).unwrap();
        assert!(q.needs_notification(&m));
        assert!(!q.needs_notification(&m), "already decided for that entry");
        m.write_u16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
        q.push_used(&mut m, 0, 0).unwrap();
        assert!(!q.needs_notification(&m));
    }

    #[test]
    fn used_event_formula() {
        // §2.7.7.2 with EVENT_IDX: notify iff an entry was written at index
        // used_event; flags are ignored.
        let mut m = mem();
        let mut q = queue(4, &m);
        q.set_event_idx(true);
        m.write_u16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
        let used_event = AVAIL + 4 + 2 * 4;
        m.write_u16(used_event, 2).unwrap();
        q.push_used(&mut m, 0, 0).unwrap(); // at idx 0
        assert!(!q.needs_notification(&m));
        q.push_used(&mut m, 0, 0).unwrap(); // at idx 1
        q.push_used(&mut m, 0, 0).unwrap(); // at idx 2 == used_event
        assert!(q.needs_notification(&m));
        q.push_used(&mut m, 0, 0).unwrap(); // at idx 3
        assert!(!q.needs_notification(&m));
        // Wrap-around: a used_event just behind 0.
        let mut q = queue(4, &m);
        q.set_event_idx(true);
        q.next_used = 0xfffe;
        q.signalled_used = 0xfffe;
        m.write_u16(used_event, 0xffff).unwrap();
        q.push_used(&mut m, 0, 0).unwrap(); // at 0xfffe
        q.push_used(&mut m, 0, 0).unwrap(); // at 0xffff
        q.push_used(&mut m, 0, 0).unwrap(); // at 0x0000
        assert!(q.needs_notification(&m));
    }

    #[test]
    fn avail_event_written_when_empty() {
        // §2.7.10: the device publishes avail_event so the driver notifies
        // when it adds entry `next_avail`.
        let mut m = mem();
        let mut q = queue(4, &m);
        q.set_event_idx(true);
        let avail_event = USED + 4 + 8 * 4;
        desc(&mut m, DESC, 0, BASE + 0x4000, 1, 0, 0);
        publish(&mut m, 4, &[0, 0]);
        assert!(q.pop(&mut m).unwrap().is_some());
        assert!(q.pop(&mut m).unwrap().is_some());
        assert!(q.pop(&mut m).unwrap().is_none());
        assert_eq!(m.read_u16(avail_event).unwrap(), 2);
    }

    #[test]
    fn avail_index_jump_is_an_error() {
        let mut m = mem();
        let mut q = queue(4, &m);
        m.write_u16(AVAIL + 2, 5).unwrap();
        assert_eq!(
            q.pop(&mut m),
            Err(QueueError::AvailIndexJump {
                avail_idx: 5,
                next_avail: 0
            })
        );
        m.write_u16(AVAIL + 2, 0xffff).unwrap();
        assert!(q.pop(&mut m).is_err());
    }

    #[test]
    fn disabled_queue_is_inert() {
        let mut m = mem();
        let mut q = queue(4, &m);
        q.deactivate();
        publish(&mut m, 4, &[0]);
        assert_eq!(q.pop(&mut m), Ok(None));
        assert_eq!(q.push_used(&mut m, 0, 0), Err(QueueError::NotReady));
        assert!(!q.needs_notification(&m));
    }

    #[test]
    fn malformed_chains() {
        type Setup = fn(&mut VecMemory);
        let cases: &[(&str, Setup, bool, QueueError)] = &[
            (
                "head out of range",
                |_m| {},
                false,
                QueueError::HeadOutOfRange(9),
            ),
            (
                "next out of range",
                |m| desc(m, DESC, 9 % 4, BASE + 0x4000, 1, VIRTQ_DESC_F_NEXT, 4),
                false,
                QueueError::NextOutOfRange(4),
            ),
            (
                "self loop",
                |m| desc(m, DESC, 1, BASE + 0x4000, 1, VIRTQ_DESC_F_NEXT, 1),
                false,
                QueueError::ChainTooLong,
            ),
            (
                "buffer outside RAM",
                |m| desc(m, DESC, 1, BASE + 0xffff, 2, 0, 0),
                false,
                QueueError::DescriptorOutOfRange {
                    addr: BASE + 0xffff,
                    len: 2,
                },
            ),
            (
                "buffer address wraps",
                |m| desc(m, DESC, 1, u64::MAX, 2, 0, 0),
                false,
                QueueError::DescriptorOutOfRange {
                    addr: u64::MAX,
                    len: 2,
                },
            ),
            (
                "readable after writable",
                |m| {
                    desc(
                        m,
                        DESC,
                        1,
                        BASE + 0x4000,
                        1,
                        VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                        2,
                    );
                    desc(m, DESC, 2, BASE + 0x4000, 1, 0, 0);
                },
                false,
                QueueError::ReadableAfterWritable,
            ),
            (
                "indirect not negotiated",
                |m| desc(m, DESC, 1, BASE + 0x4000, 16, VIRTQ_DESC_F_INDIRECT, 0),
                false,
                QueueError::IndirectNotNegotiated,
            ),
            (
                "indirect with next",
                |m| {
                    desc(
                        m,
                        DESC,
                        1,
                        BASE + 0x4000,
                        16,
                        VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
                        0,
                    )
                },
                true,
                QueueError::IndirectWithNext,
            ),
            (
                "indirect length not multiple of 16",
                |m| desc(m, DESC, 1, BASE + 0x4000, 24, VIRTQ_DESC_F_INDIRECT, 0),
                true,
                QueueError::BadIndirectLength(24),
            ),
            (
                "indirect empty",
                |m| desc(m, DESC, 1, BASE + 0x4000, 0, VIRTQ_DESC_F_INDIRECT, 0),
                true,
                QueueError::BadIndirectLength(0),
            ),
            (
                "indirect too long",
                |m| {
                    desc(
                        m,
                        DESC,
                        1,
                        BASE + 0x4000,
                        16 * 257,
                        VIRTQ_DESC_F_INDIRECT,
                        0,
                    )
                },
                true,
                QueueError::BadIndirectLength(16 * 257),
            ),
            (
                "indirect table outside RAM",
                |m| desc(m, DESC, 1, BASE + 0xfff0, 32, VIRTQ_DESC_F_INDIRECT, 0),
                true,
                QueueError::DescriptorOutOfRange {
                    addr: BASE + 0xfff0,
                    len: 32,
                },
            ),
            (
                "nested indirect",
                |m| {
                    desc(m, DESC, 1, BASE + 0x4000, 32, VIRTQ_DESC_F_INDIRECT, 0);
                    desc(
                        m,
                        BASE + 0x4000,
                        0,
                        BASE + 0x4800,
                        16,
                        VIRTQ_DESC_F_INDIRECT,
                        0,
                    );
                },
                true,
                QueueError::NestedIndirect,
            ),
            (
                "loop inside indirect",
                |m| {
                    desc(m, DESC, 1, BASE + 0x4000, 32, VIRTQ_DESC_F_INDIRECT, 0);
                    desc(m, BASE + 0x4000, 0, BASE + 0x4800, 1, VIRTQ_DESC_F_NEXT, 1);
                    desc(m, BASE + 0x4000, 1, BASE + 0x4800, 1, VIRTQ_DESC_F_NEXT, 0);
                },
                true,
                QueueError::ChainTooLong,
            ),
            (
                "next outside indirect table",
                |m| {
                    desc(m, DESC, 1, BASE + 0x4000, 32, VIRTQ_DESC_F_INDIRECT, 0);
                    desc(m, BASE + 0x4000, 0, BASE + 0x4800, 1, VIRTQ_DESC_F_NEXT, 2);
                },
                true,
                QueueError::NextOutOfRange(2),
            ),
            (
                "total length overflows",
                |m| {
                    desc(m, DESC, 1, BASE, 0x8000_0000, VIRTQ_DESC_F_NEXT, 2);
                    desc(m, DESC, 2, BASE, 0x8000_0000, 0, 0);
                },
                false,
                // The first descriptor alone is outside the 64 KiB RAM.
                QueueError::DescriptorOutOfRange {
                    addr: BASE,
                    len: 0x8000_0000,
                },
            ),
        ];
        for (name, setup, indirect, want) in cases {
            let mut m = mem();
            let mut q = queue(4, &m);
            q.set_indirect(*indirect);
            setup(&mut m);
            let head = if *name == "head out of range" { 9 } else { 1 };
            publish(&mut m, 4, &[head]);
            assert_eq!(q.pop(&mut m), Err(*want), "{name}");
        }
    }

    #[test]
    fn total_length_overflow_with_large_ram() {
        // §2.7.5.2: a chain longer than 2^32 bytes is forbidden. Make RAM
        // "large" by using a memory that accepts any range.
        struct Big;
        impl GuestMemory for Big {
            fn base(&self) -> u64 {
                0
            }
            fn size(&self) -> u64 {
                u64::MAX
            }
            fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
                // Descriptor table at 0: entry 0 -> entry 1, both 3 GiB.
                let mut table = [0u8; 48];
                table[0..8].copy_from_slice(&0x1000u64.to_le_bytes());
                table[8..12].copy_from_slice(&0xc000_0000u32.to_le_bytes());
                table[12..14].copy_from_slice(&VIRTQ_DESC_F_NEXT.to_le_bytes());
                table[14..16].copy_from_slice(&1u16.to_le_bytes());
                table[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
                table[24..28].copy_from_slice(&0xc000_0000u32.to_le_bytes());
                buf.fill(0);
                if gpa < 48 {
                    let n = buf.len().min(48 - gpa as usize);
                    buf[..n].copy_from_slice(&table[gpa as usize..gpa as usize + n]);
                }
                if gpa == 0x1002 {
                    buf.copy_from_slice(&1u16.to_le_bytes()); // avail idx = 1
                }
                Ok(())
            }
            fn write(&mut self, _gpa: u64, _buf: &[u8]) -> Result<(), MemError> {
                Ok(())
            }
        }
        let mut big = Big;
        let mut q = Queue::new(4);
        q.set_size(4);
        q.set_desc_table(0);
        q.set_avail_ring(0x1000);
        q.set_used_ring(0x2000);
        q.activate(&big).unwrap();
        assert_eq!(q.pop(&mut big), Err(QueueError::TotalLengthOverflow));
    }

    #[test]
    fn mixed_direct_then_indirect_chain() {
        // §2.7.5.3.2: zero or more chained descriptors followed by one
        // indirect descriptor are valid; table descriptor's WRITE ignored.
        let mut m = mem();
        let mut q = queue(4, &m);
        q.set_indirect(true);
        desc(&mut m, DESC, 0, BASE + 0x4000, 16, VIRTQ_DESC_F_NEXT, 3);
        desc(
            &mut m,
            DESC,
            3,
            BASE + 0x6000,
            32,
            VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE,
            0,
        );
        desc(
            &mut m,
            BASE + 0x6000,
            0,
            BASE + 0x4100,
            8,
            VIRTQ_DESC_F_NEXT,
            1,
        );
        desc(
            &mut m,
            BASE + 0x6000,
            1,
            BASE + 0x5000,
            1,
            VIRTQ_DESC_F_WRITE,
            0,
        );
        publish(&mut m, 4, &[0]);
        let c = q.pop(&mut m).unwrap().unwrap();
        assert_eq!(c.readable_len(), 24);
        assert_eq!(c.writable_len(), 1);
        assert_eq!(c.segments().len(), 3);
    }

    #[test]
    fn zero_length_descriptors_are_dropped() {
        let mut m = mem();
        let mut q = queue(4, &m);
        desc(
            &mut m,
            DESC,
            0,
            BASE + 0x4000,
            4,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            1,
        );
        desc(&mut m, DESC, 1, u64::MAX, 0, VIRTQ_DESC_F_NEXT, 2);
        desc(&mut m, DESC, 2, BASE + 0x5000, 4, VIRTQ_DESC_F_WRITE, 0);
        publish(&mut m, 4, &[0]);
        let c = q.pop(&mut m).unwrap().unwrap();
        assert_eq!(c.segments().len(), 2);
        assert_eq!(c.writable_len(), 8);
    }

    #[test]
    fn full_ring_of_chains_then_wrap() {
        let mut m = mem();
        let mut q = queue(4, &m);
        for i in 0..4u16 {
            desc(&mut m, DESC, i, BASE + 0x4000 + u64::from(i), 1, 0, 0);
        }
        for round in 0..10u16 {
            publish(&mut m, 4, &[0, 1, 2, 3]);
            for i in 0..4u16 {
                let c = q.pop(&mut m).unwrap().unwrap();
                assert_eq!(c.head(), i, "round {round}");
                q.push_used(&mut m, c.head(), 0).unwrap();
            }
            assert!(q.pop(&mut m).unwrap().is_none());
        }
        assert_eq!(q.next_avail(), 40);
        assert_eq!(q.next_used(), 40);
    }
}
