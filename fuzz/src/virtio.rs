//! A hostile virtio driver for the `rivet-virtio` targets (`virtqueue`,
//! `virtio_net_fs`), and the checks it makes after every device call.
//!
//! [`Driver`] lays random and half-valid descriptor tables, indirect
//! tables, available rings and requests into guest RAM and drives an
//! [`MmioDevice`] through its virtio-mmio registers (status handshake,
//! queue setup, `QueueNotify`, interrupt acknowledgement, resets). Each
//! device model implements [`Model`]: its own requests (op 12), host-side
//! actions (op 14) and checks.
//!
//! # Checked after every device call (register write, poll, reset) and step
//!
//! * The register file keeps its invariants (as in
//!   `crates/virtio/tests/fuzz.rs`), reads are valid exactly where the
//!   transport says, ready rings lie inside RAM.
//! * Guest memory outside RAM is never touched (`VecMemory` refuses it).
//! * At most [`MAX_POPS_PER_CALL`] chains are taken from a queue per call.
//! * With an independent descriptor walker (the rules of §2.7.5 as
//!   `crates/virtio/src/queue.rs` documents them) over the chains the
//!   device took:
//!   - every chain the device took is valid;
//!   - every used element names a chain the device took and has not
//!     returned yet, and its length does not exceed that chain's
//!     device-writable length ("used-ring lengths never exceed what the
//!     driver gave");
//!   - the device wrote only into device-writable buffers of chains it
//!     holds, used elements, used `idx` and `avail_event`.
//!
//! The walker re-reads the chains after the call. That is only what the
//! device saw if the device's own writes did not change it (a hostile
//! driver may point a writable buffer at a descriptor table or a ring);
//! when a write overlaps anything the walker reads, when the used-ring
//! writes cannot be told apart from data writes, or when a used element
//! could return either of two different chains with the same head (the
//! driver made a head available again while the device held it), the
//! driver stops these checks until the next device reset instead of
//! guessing. [`CallReport::clean`] additionally tells the model when the
//! data it finds in the chains is exactly what the device wrote (no write
//! overlapped another or a request), for content checks.

use crate::Input;
use rivet_guest_mem::{GuestMemory, MemError, VecMemory};
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{reg, MMIO_SIZE};
use rivet_virtio::queue::{
    MAX_INDIRECT_DESCRIPTORS, QUEUE_SIZE_MAX, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
};
use rivet_virtio::status::*;
use rivet_virtio::{DeviceError, MmioDevice, Queue, VirtioDevice, WriteEffect};

pub const RAM_BASE: u64 = 0x8000_0000;
pub const RAM_SIZE: usize = 128 << 10;
pub const RAM_END: u64 = RAM_BASE + RAM_SIZE as u64;
/// Queue `q`: descriptor table at `+0`, available ring at `+0x1000`, used
/// ring at `+0x2000`.
pub const QUEUE_AREA: u64 = RAM_BASE;
pub const QUEUE_STRIDE: u64 = 0x3000;
/// Request headers, data buffers and (from `+0xf000`) indirect tables.
pub const HEAP: u64 = RAM_BASE + 0x1_0000;
pub const HEAP_SIZE: u64 = 0x1_0000;
/// Most queues a model may have.
const MAX_QUEUES: usize = 4;
/// Chains a device may take from one queue per notify or poll (every model
/// documents `2 * QUEUE_SIZE_MAX`).
pub const MAX_POPS_PER_CALL: u16 = 2 * QUEUE_SIZE_MAX;

pub const REGS: [u64; 22] = [
    reg::DEVICE_FEATURES_SEL,
    reg::DRIVER_FEATURES,
    reg::DRIVER_FEATURES_SEL,
    reg::QUEUE_SEL,
    reg::QUEUE_NUM,
    reg::QUEUE_READY,
    reg::QUEUE_NOTIFY,
    reg::INTERRUPT_ACK,
    reg::STATUS,
    reg::QUEUE_DESC_LOW,
    reg::QUEUE_DESC_HIGH,
    reg::QUEUE_DRIVER_LOW,
    reg::QUEUE_DRIVER_HIGH,
    reg::QUEUE_DEVICE_LOW,
    reg::QUEUE_DEVICE_HIGH,
    reg::SHM_SEL,
    reg::QUEUE_RESET,
    reg::MAGIC_VALUE,
    reg::CONFIG_GENERATION,
    reg::CONFIG,
    reg::CONFIG + 8,
    reg::CONFIG + 0x3c,
];

/// One device write to guest memory: where, how long, and its first
/// (up to) 8 bytes, little-endian.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    pub addr: u64,
    pub len: u64,
    pub value: u64,
}

/// Guest RAM (a `VecMemory`) that records the device's writes during a
/// call.
pub struct Watched {
    pub ram: VecMemory,
    logging: bool,
    writes: Vec<Write>,
}

impl Watched {
    pub fn new() -> Self {
        Watched {
            ram: VecMemory::new(RAM_BASE, RAM_SIZE),
            logging: false,
            writes: Vec::new(),
        }
    }
}

impl Default for Watched {
    fn default() -> Self {
        Watched::new()
    }
}

impl GuestMemory for Watched {
    fn base(&self) -> u64 {
        self.ram.base()
    }
    fn size(&self) -> u64 {
        self.ram.size()
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.ram.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        self.ram.write(gpa, buf)?;
        if self.logging && !buf.is_empty() {
            let mut v = [0u8; 8];
            let n = buf.len().min(8);
            v[..n].copy_from_slice(&buf[..n]);
            self.writes.push(Write {
                addr: gpa,
                len: buf.len() as u64,
                value: u64::from_le_bytes(v),
            });
        }
        Ok(())
    }
}

/// A chain as the independent walker sees it: segments `(addr, len,
/// writable)` (zero-length descriptors left out), readable ones first.
#[derive(Debug, Clone)]
pub struct Walked {
    pub head: u16,
    pub segs: Vec<(u64, u32, bool)>,
    pub readable: u32,
    pub writable: u32,
}

impl Walked {
    /// Copies bytes from the readable (`writable == false`) or writable
    /// part, starting `offset` bytes into it, into `buf`; returns how many.
    pub fn gather(
        &self,
        mem: &dyn GuestMemory,
        writable: bool,
        offset: u64,
        buf: &mut [u8],
    ) -> usize {
        let mut skip = offset;
        let mut done = 0usize;
        for &(addr, len, _) in self.segs.iter().filter(|s| s.2 == writable) {
            if done == buf.len() {
                break;
            }
            let len = u64::from(len);
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = ((len - skip) as usize).min(buf.len() - done);
            mem.read(addr + skip, &mut buf[done..done + n])
                .expect("segments were checked to lie in RAM");
            done += n;
            skip = 0;
        }
        done
    }
}

/// What the device did with the used rings in one call, as far as the
/// checker could tell.
#[derive(Debug, Default)]
pub struct CallReport {
    /// Used elements published together (one used `idx` update), per
    /// queue, in order. Empty when the checker is not tracking.
    pub batches: Vec<(u16, Vec<Used>)>,
    /// The chains' contents are what the device left there: no device
    /// write overlapped another, a request (readable part) or a ring, and
    /// no chain buffer overlaps a used ring.
    pub clean: bool,
}

/// One used element matched to the chain it returns.
#[derive(Debug, Clone)]
pub struct Used {
    pub head: u16,
    pub len: u32,
    pub chain: Walked,
}

/// A queue's state as the transport exposes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    ready: bool,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    indirect: bool,
    event_idx: bool,
    next_avail: u16,
    next_used: u16,
}

fn view(q: &Queue) -> View {
    View {
        ready: q.ready(),
        size: q.size(),
        desc: q.desc_table(),
        avail: q.avail_ring(),
        used: q.used_ring(),
        indirect: q.indirect(),
        event_idx: q.event_idx(),
        next_avail: q.next_avail(),
        next_used: q.next_used(),
    }
}

/// Ready before and after, with the same rings: the only case in which a
/// call can take or return chains.
fn same_rings(b: &View, a: &View) -> bool {
    b.ready && a.ready && (b.size, b.desc, b.avail, b.used) == (a.size, a.desc, a.avail, a.used)
}

/// The queue as the device used it during a call: positions from before,
/// feature flags from after (one `Status` write may accept the features,
/// applying `INDIRECT_DESC`/`EVENT_IDX` to queues enabled earlier, and then
/// go live and process them).
fn during(b: &View, a: &View) -> View {
    View {
        indirect: a.indirect,
        event_idx: a.event_idx,
        ..*b
    }
}

/// The slot of a used element write, if `w` has exactly that shape.
fn elem_slot(v: &View, w: &Write) -> Option<u16> {
    let start = v.used + 4;
    let end = start + 8 * u64::from(v.size);
    (w.len == 8 && w.addr >= start && w.addr < end && (w.addr - start).is_multiple_of(8))
        .then(|| ((w.addr - start) / 8) as u16)
}

fn is_idx_write(v: &View, w: &Write) -> bool {
    w.len == 2 && w.addr == v.used + 2
}

fn is_avail_event_write(v: &View, w: &Write) -> bool {
    v.event_idx && w.len == 2 && w.addr == v.used + 4 + 8 * u64::from(v.size)
}

/// Sorted intervals `[start, end)` with a running maximum of the ends, for
/// containment and overlap queries.
struct Intervals {
    v: Vec<(u64, u64)>,
    max_end: Vec<u64>,
}

impl Intervals {
    fn new(it: impl Iterator<Item = (u64, u64)>) -> Self {
        let mut v: Vec<(u64, u64)> = it
            .filter(|&(_, l)| l > 0)
            .map(|(a, l)| (a, a.saturating_add(l)))
            .collect();
        v.sort_unstable();
        let mut m = 0;
        let max_end = v
            .iter()
            .map(|&(_, e)| {
                m = m.max(e);
                m
            })
            .collect();
        Intervals { v, max_end }
    }
    /// Whether one interval holds all of `[a, a + len)`.
    fn contains(&self, a: u64, len: u64) -> bool {
        let i = self.v.partition_point(|&(s, _)| s <= a);
        i > 0 && self.max_end[i - 1] >= a.saturating_add(len)
    }
    /// Whether some interval shares a byte with `[a, a + len)`.
    fn overlaps(&self, a: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let i = self.v.partition_point(|&(s, _)| s < a.saturating_add(len));
        i > 0 && self.max_end[i - 1] > a
    }
    /// Whether no two intervals share a byte.
    fn disjoint(&self) -> bool {
        self.v.windows(2).all(|p| p[0].1 <= p[1].0)
    }
}

/// Walks the chain at `head` the way §2.7.5 (and `queue.rs`) define a
/// valid chain; `None` if it is not one. Records every byte range read.
fn walk(mem: &VecMemory, v: &View, head: u16, reads: &mut Vec<(u64, u64)>) -> Option<Walked> {
    if head >= v.size {
        return None;
    }
    let mut c = Walked {
        head,
        segs: Vec::new(),
        readable: 0,
        writable: 0,
    };
    let mut table = v.desc;
    let mut table_len = u32::from(v.size);
    let mut in_indirect = false;
    let mut index = head;
    let mut visited = 0u32;
    loop {
        visited += 1;
        if visited > table_len {
            return None;
        }
        let at = table.checked_add(16 * u64::from(index))?;
        let mut d = [0u8; 16];
        reads.push((at, 16));
        mem.read(at, &mut d).ok()?;
        let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
        let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
        let flags = u16::from_le_bytes(d[12..14].try_into().unwrap());
        let next = u16::from_le_bytes(d[14..].try_into().unwrap());
        if flags & VIRTQ_DESC_F_INDIRECT != 0 {
            if in_indirect || !v.indirect || flags & VIRTQ_DESC_F_NEXT != 0 {
                return None;
            }
            if len == 0 || !len.is_multiple_of(16) || len / 16 > MAX_INDIRECT_DESCRIPTORS {
                return None;
            }
            mem.check_range(addr, u64::from(len)).ok()?;
            table = addr;
            table_len = len / 16;
            in_indirect = true;
            index = 0;
            visited = 0;
            continue;
        }
        if len != 0 {
            mem.check_range(addr, u64::from(len)).ok()?;
            let writable = flags & VIRTQ_DESC_F_WRITE != 0;
            if !writable && c.writable != 0 {
                return None;
            }
            if u64::from(c.readable) + u64::from(c.writable) + u64::from(len) > u64::from(u32::MAX)
            {
                return None;
            }
            if writable {
                c.writable += len;
            } else {
                c.readable += len;
            }
            c.segs.push((addr, len, writable));
        }
        if flags & VIRTQ_DESC_F_NEXT == 0 {
            return Some(c);
        }
        if u32::from(next) >= table_len {
            return None;
        }
        index = next;
    }
}

/// Splits the writes of one call on queue `v` into used-element batches
/// `(id, len)`, each ended by its used `idx` write; `None` when they do not
/// form exactly `n` elements published in order (a data write that looks
/// like a ring write, or rings shared between queues).
fn used_batches(v: &View, writes: &[Write], n: u16) -> Option<Vec<Vec<(u32, u32)>>> {
    let mut cur = v.next_used;
    let mut pending: Vec<(u32, u32)> = Vec::new();
    let mut batches = Vec::new();
    let mask = v.size - 1;
    for w in writes {
        if let Some(slot) = elem_slot(v, w) {
            if slot != cur.wrapping_add(pending.len() as u16) & mask {
                return None;
            }
            pending.push((w.value as u32, (w.value >> 32) as u32));
        } else if is_idx_write(v, w) {
            let value = w.value as u16;
            if pending.is_empty() || value != cur.wrapping_add(pending.len() as u16) {
                return None;
            }
            cur = value;
            batches.push(std::mem::take(&mut pending));
        }
    }
    (pending.is_empty() && cur == v.next_used.wrapping_add(n)).then_some(batches)
}

/// Device-specific requests, host actions and checks, and whatever state
/// they keep (`Driver::model`).
pub trait Model: Sized {
    type Device: VirtioDevice;
    /// Op 12: a device-specific request laid into memory and kicked.
    fn request(d: &mut Driver<Self>, input: &mut Input);
    /// Op 14: something the host side does (input, backend state...).
    fn host_op(d: &mut Driver<Self>, input: &mut Input);
    /// Before every device call.
    fn before_call(_d: &mut Driver<Self>) {}
    /// After every device call that was not a reset.
    fn after_call(_d: &mut Driver<Self>, _report: &CallReport) {}
    /// After a device reset.
    fn after_reset(_d: &mut Driver<Self>) {}
    /// After every step.
    fn check(_d: &Driver<Self>) {}
    /// Whether the device may write into the chains of `queue` (e.g. not
    /// into a network card's transmit chains).
    fn writes_into(_queue: u16) -> bool {
        true
    }
}

pub struct Driver<D: Model> {
    pub dev: MmioDevice<D::Device>,
    pub model: D,
    pub mem: Watched,
    /// Next descriptor index the chain builder uses, per queue.
    pub next_desc: [u16; 4],
    /// Used elements each queue published so far (all calls, resets
    /// included).
    pub used_count: Vec<u64>,
    /// Whether the chain checks are on (see the module documentation).
    tracking: bool,
    /// Chains the device took and has not returned: `(queue, chain)`.
    held: Vec<(u16, Walked)>,
}

impl<D: Model> Driver<D> {
    pub fn new(device: D::Device, model: D) -> Self {
        let dev = MmioDevice::new(device);
        let n = dev.queues().len();
        Driver {
            dev,
            model,
            mem: Watched::new(),
            next_desc: [0; 4],
            used_count: vec![0; n],
            tracking: true,
            held: Vec::new(),
        }
    }

    /// One call into the device (`reset`: it resets the device), with the
    /// checks of the module documentation around it.
    pub fn call<R>(
        &mut self,
        reset: bool,
        f: impl FnOnce(&mut MmioDevice<D::Device>, &mut Watched) -> R,
    ) -> R {
        let before = self.views();
        let before = &before[..self.dev.queues().len()];
        // A disabled queue's chains are never returned.
        self.held
            .retain(|(q, _)| before.get(usize::from(*q)).is_some_and(|v| v.ready));
        D::before_call(self);
        self.mem.writes.clear();
        self.mem.logging = true;
        let r = f(&mut self.dev, &mut self.mem);
        self.mem.logging = false;
        if reset {
            assert!(self.mem.writes.is_empty(), "a reset wrote guest memory");
            self.held.clear();
            self.tracking = true;
            D::after_reset(self);
            return r;
        }
        let after = self.views();
        let after = &after[..before.len()];
        let mut moved = !self.mem.writes.is_empty();
        for (i, (b, a)) in before.iter().zip(after).enumerate() {
            moved |= (a.next_avail, a.next_used) != (b.next_avail, b.next_used);
            if same_rings(b, a) {
                let popped = a.next_avail.wrapping_sub(b.next_avail);
                assert!(
                    popped <= MAX_POPS_PER_CALL,
                    "queue {i}: {popped} chains taken in one call"
                );
                self.used_count[i] += u64::from(a.next_used.wrapping_sub(b.next_used));
            } else {
                assert_eq!(
                    (a.next_avail, a.next_used),
                    if a.ready && !b.ready {
                        (0, 0)
                    } else {
                        (b.next_avail, b.next_used)
                    },
                    "queue {i}: rings moved while being reconfigured"
                );
            }
        }
        // Most calls (register traffic) neither take chains nor write.
        let report = if moved {
            self.analyze(before, after)
        } else {
            CallReport::default()
        };
        D::after_call(self, &report);
        r
    }

    fn views(&self) -> [View; MAX_QUEUES] {
        let mut v = [view(&Queue::new(0)); MAX_QUEUES];
        assert!(self.dev.queues().len() <= MAX_QUEUES);
        for (d, q) in v.iter_mut().zip(self.dev.queues()) {
            *d = view(q);
        }
        v
    }

    fn analyze(&mut self, before: &[View], after: &[View]) -> CallReport {
        let mut report = CallReport::default();
        if !self.tracking {
            return report;
        }
        let writes = std::mem::take(&mut self.mem.writes);
        let before: Vec<View> = before
            .iter()
            .zip(after)
            .map(|(b, a)| during(b, a))
            .collect();
        let before = &before[..];
        let ring_write = |w: &Write| {
            before.iter().any(|v| {
                v.ready
                    && (elem_slot(v, w).is_some()
                        || is_idx_write(v, w)
                        || is_avail_event_write(v, w))
            })
        };
        // 1. The chains taken in this call, walked independently.
        let mut reads = Vec::new();
        let mut popped = Vec::new();
        for (q, (b, a)) in before.iter().zip(after).enumerate() {
            if !same_rings(b, a) {
                continue;
            }
            for k in 0..a.next_avail.wrapping_sub(b.next_avail) {
                let idx = b.next_avail.wrapping_add(k);
                let entry = b.avail + 4 + 2 * u64::from(idx & (b.size - 1));
                reads.push((entry, 2));
                let head = self.mem.ram.read_u16(entry).expect("ready ring in RAM");
                popped.push((q as u16, walk(&self.mem.ram, b, head, &mut reads)));
            }
        }
        let all_writes = Intervals::new(writes.iter().map(|w| (w.addr, w.len)));
        if reads.iter().any(|&(a, l)| all_writes.overlaps(a, l)) {
            // The device may have seen other descriptors than the walker.
            self.tracking = false;
            self.mem.writes = writes;
            return report;
        }
        let mut pool = std::mem::take(&mut self.held);
        for (q, c) in popped {
            let c = c.unwrap_or_else(|| {
                panic!("queue {q}: the device took a chain that is not valid (§2.7.5)")
            });
            pool.push((q, c));
        }
        // 2. Every write lands in a device-writable buffer the device holds
        // or in a used ring.
        let writable = Intervals::new(
            pool.iter()
                .filter(|(q, _)| D::writes_into(*q))
                .flat_map(|(_, c)| c.segs.iter().filter(|s| s.2).map(|s| (s.0, u64::from(s.1)))),
        );
        for w in &writes {
            assert!(
                ring_write(w) || writable.contains(w.addr, w.len),
                "device wrote {w:x?} outside the device-writable buffers it holds and the used rings"
            );
        }
        // 3. Used elements: a chain the device holds, no longer than its
        // writable part.
        for (q, (b, a)) in before.iter().zip(after).enumerate() {
            if !same_rings(b, a) {
                continue;
            }
            let Some(batches) = used_batches(b, &writes, a.next_used.wrapping_sub(b.next_used))
            else {
                self.tracking = false;
                self.mem.writes = writes;
                return CallReport::default();
            };
            for batch in batches {
                let mut out = Vec::new();
                for (id, len) in batch {
                    let same: Vec<usize> = (0..pool.len())
                        .filter(|&i| usize::from(pool[i].0) == q && u32::from(pool[i].1.head) == id)
                        .collect();
                    let fit: Vec<usize> = same
                        .iter()
                        .copied()
                        .filter(|&i| pool[i].1.writable >= len)
                        .collect();
                    let Some(&i) = fit.first() else {
                        match same.iter().map(|&i| pool[i].1.writable).max() {
                            None => panic!(
                                "queue {q}: used element names descriptor {id}, not the head of a chain the device holds"
                            ),
                            Some(w) => panic!(
                                "queue {q}: used length {len} for head {id} exceeds the {w} device-writable bytes the driver gave"
                            ),
                        }
                    };
                    if fit.iter().any(|&j| pool[j].1.segs != pool[i].1.segs) {
                        // The driver made the same head available again,
                        // with other buffers, while the device held it:
                        // which one came back is the device's business.
                        self.tracking = false;
                        self.mem.writes = writes;
                        return CallReport::default();
                    }
                    let (_, chain) = pool.remove(i);
                    out.push(Used {
                        head: chain.head,
                        len,
                        chain,
                    });
                }
                report.batches.push((q as u16, out));
            }
        }
        // 4. Whether the contents are the device's own.
        let rings = Intervals::new(
            before
                .iter()
                .filter(|v| v.ready)
                .map(|v| (v.used, 6 + 8 * u64::from(v.size))),
        );
        let touched = |c: &Walked| c.segs.iter().any(|s| rings.overlaps(s.0, u64::from(s.1)));
        let data = Intervals::new(
            writes
                .iter()
                .filter(|w| !ring_write(w))
                .map(|w| (w.addr, w.len)),
        );
        let requests = report
            .batches
            .iter()
            .flat_map(|(_, b)| b.iter().map(|u| &u.chain))
            .chain(pool.iter().map(|(_, c)| c));
        let mut clean = data.disjoint();
        for c in requests {
            clean &= !touched(c)
                && !c
                    .segs
                    .iter()
                    .any(|s| !s.2 && data.overlaps(s.0, u64::from(s.1)));
        }
        report.clean = clean;
        self.held = pool;
        self.mem.writes = writes;
        report
    }

    /// A register write (`None`: the transport refused the access).
    pub fn mmio(&mut self, off: u64, size: u8, v: u64) -> Option<WriteEffect> {
        let reset = off == reg::STATUS && size == 4 && v as u32 == 0;
        self.call(reset, |dev, mem| dev.write(off, size, v, mem))
    }

    pub fn poll(&mut self) -> Result<(), DeviceError> {
        self.call(false, |dev, mem| dev.poll(mem))
    }

    /// The hypervisor resets the device (e.g. VM reboot).
    pub fn host_reset(&mut self) {
        self.call(true, |dev, _| dev.reset())
    }

    pub fn notify(&mut self, q: u16) {
        let _ = self.mmio(reg::QUEUE_NOTIFY, 4, u64::from(q));
    }

    pub fn w(&mut self, off: u64, v: u32) {
        self.mmio(off, 4, u64::from(v))
            .expect("aligned 32-bit register write must be valid");
    }

    pub fn r(&self, off: u64) -> u32 {
        self.dev
            .read(off, 4)
            .expect("aligned 32-bit register read must be valid") as u32
    }

    /// The §3.1.1 handshake and §4.2.3.2 queue setup, with fuzzer-chosen
    /// features, sizes and (sometimes) ring addresses.
    fn init(&mut self, input: &mut Input) {
        self.w(reg::STATUS, 0);
        self.w(reg::STATUS, ACKNOWLEDGE);
        self.w(reg::STATUS, ACKNOWLEDGE | DRIVER);
        self.w(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r(reg::DEVICE_FEATURES);
        self.w(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.r(reg::DEVICE_FEATURES);
        let offered = u64::from(lo) | (u64::from(hi) << 32);
        let wanted = match input.u8() % 4 {
            0 => VERSION_1,
            1 => VERSION_1 | INDIRECT_DESC,
            2 => VERSION_1 | INDIRECT_DESC | EVENT_IDX | 0xff_ffff,
            _ => input.u64(),
        };
        let f = offered & wanted;
        self.w(reg::DRIVER_FEATURES_SEL, 0);
        self.w(reg::DRIVER_FEATURES, f as u32);
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, (f >> 32) as u32);
        self.w(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        for q in 0..self.dev.queues().len() as u16 {
            let base = QUEUE_AREA + u64::from(q) * QUEUE_STRIDE;
            let size = 1u32 << input.below(10); // up to 512: too big is refused
            let (desc, avail, used) = if input.u8() < 0xe0 {
                (base, base + 0x1000, base + 0x2000)
            } else {
                let specials = [RAM_BASE, RAM_END, base, RAM_END - 0x800, u64::MAX - 0xf];
                (
                    input.interesting(&specials),
                    input.interesting(&specials),
                    input.interesting(&specials),
                )
            };
            // Clean rings, as a driver would allocate them.
            for (addr, len) in [(desc, 0x1000usize), (avail, 0x1000), (used, 0x1000)] {
                let _ = self.mem.write(addr, &vec![0u8; len]);
            }
            self.w(reg::QUEUE_SEL, u32::from(q));
            self.w(reg::QUEUE_NUM, size);
            self.w(reg::QUEUE_DESC_LOW, desc as u32);
            self.w(reg::QUEUE_DESC_HIGH, (desc >> 32) as u32);
            self.w(reg::QUEUE_DRIVER_LOW, avail as u32);
            self.w(reg::QUEUE_DRIVER_HIGH, (avail >> 32) as u32);
            self.w(reg::QUEUE_DEVICE_LOW, used as u32);
            self.w(reg::QUEUE_DEVICE_HIGH, (used >> 32) as u32);
            self.w(reg::QUEUE_READY, 1);
            if let Some(n) = self.next_desc.get_mut(usize::from(q)) {
                *n = 0;
            }
        }
        let s = self.r(reg::STATUS);
        self.w(reg::STATUS, s | DRIVER_OK);
    }

    pub fn queue_index(&self, input: &mut Input) -> u16 {
        let n = self.dev.queues().len() as u64;
        input.below(n + 1) as u16 // one past the end now and then
    }

    pub fn addr(input: &mut Input) -> u64 {
        match input.u8() % 10 {
            0 => input.u64(),
            1 => RAM_END - input.below(64),
            2 => RAM_BASE - 1 - input.below(64),
            3 => u64::MAX - input.below(64),
            4 => QUEUE_AREA + input.below(3 * QUEUE_STRIDE),
            _ => HEAP + input.below(HEAP_SIZE),
        }
    }

    pub fn len(input: &mut Input) -> u32 {
        match input.u8() % 10 {
            0 => input.u32(),
            1 => 0,
            2 => 1,
            3 => 16,
            4 => 512,
            5 => 4096,
            6 => u32::MAX,
            _ => input.below(0x2000) as u32,
        }
    }

    pub fn write_desc(&mut self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table.wrapping_add(16 * u64::from(i));
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        let _ = self.mem.write(at, &d);
    }

    /// Puts `head` into the next available slot and bumps `idx`, reading
    /// the ring position from the device's view of the queue.
    pub fn publish(&mut self, q: u16, head: u16, bump: u16) {
        let Some(queue) = self.dev.queues().get(usize::from(q)) else {
            return;
        };
        let avail = queue.avail_ring();
        let size = u64::from(queue.size().max(1));
        let Ok(idx) = self.mem.read_u16(avail.wrapping_add(2)) else {
            return;
        };
        let slot = u64::from(idx) % size;
        let _ = self.mem.write_u16(avail.wrapping_add(4 + 2 * slot), head);
        let _ = self
            .mem
            .write_u16(avail.wrapping_add(2), idx.wrapping_add(bump));
    }

    /// A chain of segments `(addr, len, device-writable)` on a queue the
    /// input picks (see [`Driver::chain_to`]).
    pub fn chain(&mut self, input: &mut Input, segs: &[(u64, u32, bool)]) {
        let q = self.queue_index(input);
        self.chain_to(q, input, segs);
    }

    /// A chain of segments on queue `q`, direct or (input's choice)
    /// through an indirect table, published and (usually) kicked.
    pub fn chain_to(&mut self, q: u16, input: &mut Input, segs: &[(u64, u32, bool)]) {
        let indirect = input.u8() < 0x40;
        let Some(queue) = self.dev.queues().get(usize::from(q)) else {
            return;
        };
        let table = queue.desc_table();
        let size = queue.size().max(1);
        let slot = usize::from(q).min(3);
        let first = self.next_desc[slot] % size;
        let head;
        if indirect {
            let itable = HEAP + 0xf000 + 16 * input.below(128);
            for (k, &(addr, len, wr)) in segs.iter().enumerate() {
                let mut flags = if wr { VIRTQ_DESC_F_WRITE } else { 0 };
                if k + 1 < segs.len() {
                    flags |= VIRTQ_DESC_F_NEXT;
                }
                self.write_desc(itable, k as u16, addr, len, flags, (k + 1) as u16);
            }
            self.write_desc(
                table,
                first,
                itable,
                16 * segs.len() as u32,
                VIRTQ_DESC_F_INDIRECT,
                0,
            );
            head = first;
            self.next_desc[slot] = first.wrapping_add(1);
        } else {
            let mut i = first;
            for (k, &(addr, len, wr)) in segs.iter().enumerate() {
                let next = (i + 1) % size;
                let mut flags = if wr { VIRTQ_DESC_F_WRITE } else { 0 };
                if k + 1 < segs.len() {
                    flags |= VIRTQ_DESC_F_NEXT;
                }
                self.write_desc(table, i, addr, len, flags, next);
                i = next;
            }
            head = first;
            self.next_desc[slot] = i;
        }
        self.publish(q, head, 1);
        if input.u8() < 0xc0 {
            self.notify(q);
        }
    }

    pub fn step(&mut self, input: &mut Input) {
        match input.u8() % 16 {
            0 => self.init(input),
            1 | 2 => {
                let off = input.pick(&REGS);
                let v = input.interesting(&[
                    0,
                    1,
                    RAM_BASE,
                    RAM_BASE >> 32,
                    RAM_END,
                    0x8f,
                    0x40,
                    0xffff_ffff,
                ]);
                self.mmio(off, 4, v).expect("aligned 32-bit write is valid");
            }
            3 => {
                let off = input.below(MMIO_SIZE + 16);
                let size = input.pick(&[1u8, 2, 4, 8, 3, 0]);
                let v = input.u64();
                let valid = self.mmio(off, size, v).is_some();
                assert_eq!(valid, access_ok(off, size), "write {off:#x}/{size}");
            }
            4 => {
                let off = input.below(MMIO_SIZE + 16);
                let size = input.pick(&[1u8, 2, 4, 8, 3, 0]);
                assert_eq!(
                    self.dev.read(off, size).is_some(),
                    access_ok(off, size),
                    "read {off:#x}/{size}"
                );
            }
            5 => {
                // Raw descriptor.
                let q = self.queue_index(input);
                let table = self
                    .dev
                    .queues()
                    .get(usize::from(q))
                    .map_or(QUEUE_AREA, |q| q.desc_table());
                let i = input.u16() % 300;
                let addr = Self::addr(input);
                let len = Self::len(input);
                let flags = if input.u8() < 0xe0 {
                    input.u16() & 7
                } else {
                    input.u16()
                };
                let next = if input.u8() < 0xe0 {
                    input.u16() % 300
                } else {
                    input.u16()
                };
                self.write_desc(table, i, addr, len, flags, next);
            }
            6 => {
                let q = self.queue_index(input);
                let head = input.u16() % 300;
                let bump = if input.u8() < 0xf0 { 1 } else { input.u16() };
                self.publish(q, head, bump);
            }
            7 | 8 => {
                let q = self.queue_index(input);
                self.notify(q);
            }
            9 => {
                let _ = self.poll();
            }
            10 => {
                // Garbage anywhere in RAM (rings, tables, buffers).
                let at = RAM_BASE + input.below(RAM_SIZE as u64);
                let n = input.below(64) as usize;
                let bytes = input.bytes(n);
                let _ = self.mem.write(at, bytes);
            }
            11 => {
                let n = 1 + input.below(5) as usize;
                let segs: Vec<(u64, u32, bool)> = (0..n)
                    .map(|_| (Self::addr(input), Self::len(input), input.bool()))
                    .collect();
                self.chain(input, &segs);
            }
            12 => D::request(self, input),
            13 => {
                // Ring flags / used_event / interrupt acknowledgement.
                match input.u8() % 3 {
                    0 => {
                        let q = self.queue_index(input);
                        if let Some(queue) = self.dev.queues().get(usize::from(q)) {
                            let at = if input.bool() {
                                queue.avail_ring()
                            } else {
                                queue
                                    .avail_ring()
                                    .wrapping_add(4 + 2 * u64::from(queue.size()))
                            };
                            let v = input.u16();
                            let _ = self.mem.write_u16(at, v);
                        }
                    }
                    1 => {
                        let s = self.r(reg::INTERRUPT_STATUS);
                        self.w(reg::INTERRUPT_ACK, s);
                        assert!(!self.dev.irq_level());
                    }
                    _ => self.dev.config_changed(),
                }
            }
            14 => D::host_op(self, input),
            _ => {
                if input.u8() < 0x10 {
                    self.host_reset();
                } else {
                    let _ = self.poll();
                }
            }
        }
    }

    pub fn invariants(&self) {
        let is = self.r(reg::INTERRUPT_STATUS);
        assert_eq!(self.dev.irq_level(), is != 0);
        assert_eq!(is & !3, 0, "only defined interrupt bits");
        let st = self.r(reg::STATUS);
        assert_eq!(
            st & !(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK | DEVICE_NEEDS_RESET | FAILED),
            0
        );
        if st & DRIVER_OK != 0 {
            assert_ne!(st & FEATURES_OK, 0);
            assert_ne!(self.dev.negotiated_features() & VERSION_1, 0);
        }
        if st & DEVICE_NEEDS_RESET != 0 {
            assert!(self.dev.last_error().is_some());
        }
        assert_eq!(
            self.dev.negotiated_features() & !self.dev.offered_features(),
            0
        );
        for q in self.dev.queues() {
            if q.ready() {
                assert!(q.size().is_power_of_two() && q.size() <= q.max_size());
                // The rings of a ready queue are inside RAM.
                let n = u64::from(q.size());
                assert!(self.mem.check_range(q.desc_table(), 16 * n).is_ok());
                assert!(self.mem.check_range(q.avail_ring(), 6 + 2 * n).is_ok());
                assert!(self.mem.check_range(q.used_ring(), 6 + 8 * n).is_ok());
            }
        }
        D::check(self);
    }
}

/// Whether the transport must accept an access (see `MmioDevice::read`).
pub fn access_ok(off: u64, size: u8) -> bool {
    let reg_ok = off < reg::CONFIG && size == 4 && off.is_multiple_of(4);
    let cfg_ok = (reg::CONFIG..MMIO_SIZE).contains(&off)
        && matches!(size, 1 | 2 | 4)
        && off.is_multiple_of(u64::from(size));
    reg_ok || cfg_ok
}

/// Runs the input as up to 200 driver steps against `device`, checking the
/// invariants after each.
pub fn run<D: Model>(device: D::Device, model: D, input: &mut Input) {
    let mut d = Driver::new(device, model);
    let mut steps = 0;
    while !input.is_empty() && steps < 200 {
        steps += 1;
        d.step(input);
        d.invariants();
    }
}

/// `total` bytes at `at` cut into `pieces` contiguous segments of
/// input-chosen lengths (some possibly empty).
pub fn split(
    input: &mut Input,
    at: u64,
    total: u32,
    pieces: usize,
    writable: bool,
) -> Vec<(u64, u32, bool)> {
    let mut segs = Vec::new();
    let mut left = total;
    let mut addr = at;
    for k in 0..pieces {
        let n = if k + 1 == pieces {
            left
        } else {
            input.below(u64::from(left) + 1) as u32
        };
        segs.push((addr, n, writable));
        addr = addr.wrapping_add(u64::from(n));
        left -= n;
    }
    segs
}
