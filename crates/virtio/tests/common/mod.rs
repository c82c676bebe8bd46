//! Test-side virtio *driver*: lays out descriptor tables and rings in a
//! `VecMemory` the way a real driver does (§2.7) and drives an
//! `MmioDevice` through its registers (§4.2.3), so the integration tests
//! exercise the device exactly as a guest would.
#![allow(dead_code)]

use rivet_guest_mem::{GuestMemory, MemError, VecMemory};
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{reg, WriteEffect};
use rivet_virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use rivet_virtio::status::*;
use rivet_virtio::{MmioDevice, VirtioDevice};
use std::collections::BTreeMap;

pub const RAM_BASE: u64 = 0x8000_0000;
pub const RAM_SIZE: usize = 4 << 20;
/// Queue `i` lives at `QUEUE_AREA + i * QUEUE_STRIDE`: descriptor table,
/// then the available ring at +0x1000, the used ring at +0x2000.
pub const QUEUE_AREA: u64 = RAM_BASE + 0x1000;
pub const QUEUE_STRIDE: u64 = 0x4000;
/// Indirect tables and data buffers are bump-allocated from here.
pub const HEAP: u64 = RAM_BASE + 0x10_0000;

pub const MODERN: u64 = VERSION_1 | INDIRECT_DESC | EVENT_IDX;

#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

pub fn r(addr: u64, len: u32) -> Seg {
    Seg {
        addr,
        len,
        writable: false,
    }
}

pub fn w(addr: u64, len: u32) -> Seg {
    Seg {
        addr,
        len,
        writable: true,
    }
}

#[derive(Debug, Clone)]
pub struct DriverQueue {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub next_desc: u16,
    pub avail_idx: u16,
    pub last_used: u16,
}

/// Guest RAM that claims a huge size but only stores touched pages (for
/// chains whose lengths add up past 4 GiB).
pub struct SparseMemory {
    pub base: u64,
    pub size: u64,
    pages: BTreeMap<u64, Box<[u8; 4096]>>,
}

impl SparseMemory {
    pub fn new(base: u64, size: u64) -> Self {
        SparseMemory {
            base,
            size,
            pages: BTreeMap::new(),
        }
    }
}

impl GuestMemory for SparseMemory {
    fn base(&self) -> u64 {
        self.base
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check_range(gpa, buf.len() as u64)?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gpa + i as u64;
            *b = self
                .pages
                .get(&(a >> 12))
                .map_or(0, |p| p[(a & 0xfff) as usize]);
        }
        Ok(())
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        self.check_range(gpa, buf.len() as u64)?;
        for (i, b) in buf.iter().enumerate() {
            let a = gpa + i as u64;
            self.pages
                .entry(a >> 12)
                .or_insert_with(|| Box::new([0; 4096]))[(a & 0xfff) as usize] = *b;
        }
        Ok(())
    }
}

pub struct Harness<D: VirtioDevice, M: GuestMemory = VecMemory> {
    pub dev: MmioDevice<D>,
    pub mem: M,
    pub queues: Vec<DriverQueue>,
    pub heap: u64,
}

impl<D: VirtioDevice> Harness<D, VecMemory> {
    pub fn new(device: D) -> Self {
        Harness::with_memory(device, VecMemory::new(RAM_BASE, RAM_SIZE))
    }

    /// Full §3.1.1 initialisation: reset, ACKNOWLEDGE, DRIVER, features,
    /// FEATURES_OK (checked), every queue at `size`, DRIVER_OK.
    pub fn init(device: D, features: u64, size: u16) -> Self {
        let mut h = Harness::new(device);
        h.init_with(features, size);
        h
    }
}

impl<D: VirtioDevice, M: GuestMemory> Harness<D, M> {
    pub fn with_memory(device: D, mem: M) -> Self {
        Harness {
            dev: MmioDevice::new(device),
            mem,
            queues: Vec::new(),
            heap: HEAP,
        }
    }

    pub fn init_with(&mut self, features: u64, size: u16) {
        assert!(self.negotiate(features), "FEATURES_OK refused");
        let n = self.r(reg::QUEUE_NUM_MAX);
        assert!(n > 0);
        for q in 0..self.dev.queues().len() as u16 {
            self.setup_queue(q, size);
        }
        self.driver_ok();
        assert_eq!(
            self.status(),
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
        );
    }

    pub fn r(&self, off: u64) -> u32 {
        self.dev.read(off, 4).expect("valid register read") as u32
    }

    pub fn w(&mut self, off: u64, v: u32) -> WriteEffect {
        self.dev
            .write(off, 4, u64::from(v), &mut self.mem)
            .expect("valid register write")
    }

    pub fn status(&self) -> u32 {
        self.r(reg::STATUS)
    }

    pub fn set_status(&mut self, v: u32) -> WriteEffect {
        self.w(reg::STATUS, v)
    }

    pub fn device_features(&mut self) -> u64 {
        self.w(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r(reg::DEVICE_FEATURES);
        self.w(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.r(reg::DEVICE_FEATURES);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    pub fn write_driver_features(&mut self, f: u64) {
        self.w(reg::DRIVER_FEATURES_SEL, 0);
        self.w(reg::DRIVER_FEATURES, f as u32);
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, (f >> 32) as u32);
    }

    /// §3.1.1 steps 1-6. Returns whether FEATURES_OK stuck.
    pub fn negotiate(&mut self, wanted: u64) -> bool {
        assert_eq!(self.r(reg::MAGIC_VALUE), 0x7472_6976);
        assert_eq!(self.r(reg::VERSION), 2);
        assert_ne!(self.r(reg::DEVICE_ID), 0);
        self.set_status(0);
        assert_eq!(self.status(), 0);
        self.set_status(ACKNOWLEDGE);
        self.set_status(ACKNOWLEDGE | DRIVER);
        let offered = self.device_features();
        self.write_driver_features(offered & wanted);
        self.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
        self.status() & FEATURES_OK != 0
    }

    pub fn queue_base(q: u16) -> u64 {
        QUEUE_AREA + u64::from(q) * QUEUE_STRIDE
    }

    /// §4.2.3.2 virtqueue configuration, zeroing the rings first.
    pub fn setup_queue(&mut self, q: u16, size: u16) {
        let base = Self::queue_base(q);
        let dq = DriverQueue {
            size,
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
        };
        self.mem
            .write(base, &vec![0u8; QUEUE_STRIDE as usize])
            .unwrap();
        self.w(reg::QUEUE_SEL, u32::from(q));
        assert_eq!(self.r(reg::QUEUE_READY), 0);
        assert!(u32::from(size) <= self.r(reg::QUEUE_NUM_MAX));
        self.w(reg::QUEUE_NUM, u32::from(size));
        self.w(reg::QUEUE_DESC_LOW, dq.desc as u32);
        self.w(reg::QUEUE_DESC_HIGH, (dq.desc >> 32) as u32);
        self.w(reg::QUEUE_DRIVER_LOW, dq.avail as u32);
        self.w(reg::QUEUE_DRIVER_HIGH, (dq.avail >> 32) as u32);
        self.w(reg::QUEUE_DEVICE_LOW, dq.used as u32);
        self.w(reg::QUEUE_DEVICE_HIGH, (dq.used >> 32) as u32);
        self.w(reg::QUEUE_READY, 1);
        assert_eq!(self.r(reg::QUEUE_READY), 1);
        let i = usize::from(q);
        if self.queues.len() <= i {
            self.queues.resize(i + 1, dq.clone());
        }
        self.queues[i] = dq;
    }

    pub fn driver_ok(&mut self) -> WriteEffect {
        let s = self.status();
        self.set_status(s | DRIVER_OK)
    }

    /// Allocates `len` bytes (16-aligned) of zeroed guest memory.
    pub fn alloc(&mut self, len: u64) -> u64 {
        let at = self.heap;
        self.heap = (self.heap + len.max(1) + 15) & !15;
        assert!(
            self.heap <= RAM_BASE + RAM_SIZE as u64,
            "test heap exhausted"
        );
        self.mem.write(at, &vec![0u8; len as usize]).unwrap();
        at
    }

    /// Allocates and fills a buffer.
    pub fn buf(&mut self, data: &[u8]) -> u64 {
        let at = self.alloc(data.len() as u64);
        self.mem.write(at, data).unwrap();
        at
    }

    pub fn read_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read(addr, &mut v).unwrap();
        v
    }

    /// Writes raw descriptor `i` of queue `q`'s table.
    pub fn write_desc(&mut self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table + 16 * u64::from(i);
        self.mem.write_u64(at, addr).unwrap();
        self.mem.write_u32(at + 8, len).unwrap();
        self.mem.write_u16(at + 12, flags).unwrap();
        self.mem.write_u16(at + 14, next).unwrap();
    }

    /// Puts `head` in the next available ring slot and publishes it.
    pub fn publish(&mut self, q: u16, head: u16) {
        let dq = self.queues[usize::from(q)].clone();
        let slot = u64::from(dq.avail_idx % dq.size);
        self.mem.write_u16(dq.avail + 4 + 2 * slot, head).unwrap();
        let idx = dq.avail_idx.wrapping_add(1);
        self.mem.write_u16(dq.avail + 2, idx).unwrap();
        self.queues[usize::from(q)].avail_idx = idx;
    }

    fn take_descs(&mut self, q: u16, n: usize) -> Vec<u16> {
        let dq = &mut self.queues[usize::from(q)];
        assert!(n <= usize::from(dq.size));
        (0..n)
            .map(|_| {
                let d = dq.next_desc;
                dq.next_desc = (dq.next_desc + 1) % dq.size;
                d
            })
            .collect()
    }

    /// Builds a direct chain in the descriptor table (not published).
    pub fn build_chain(&mut self, q: u16, segs: &[Seg]) -> u16 {
        let ids = self.take_descs(q, segs.len());
        let table = self.queues[usize::from(q)].desc;
        for (k, s) in segs.iter().enumerate() {
            let mut flags = if s.writable { VIRTQ_DESC_F_WRITE } else { 0 };
            let next = ids.get(k + 1).copied();
            if next.is_some() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.write_desc(table, ids[k], s.addr, s.len, flags, next.unwrap_or(0));
        }
        ids[0]
    }

    /// Adds a direct chain and publishes it; returns the head.
    pub fn add_chain(&mut self, q: u16, segs: &[Seg]) -> u16 {
        let head = self.build_chain(q, segs);
        self.publish(q, head);
        head
    }

    /// Adds a chain made of a single INDIRECT descriptor whose table holds
    /// `segs`; returns the head.
    pub fn add_indirect(&mut self, q: u16, segs: &[Seg]) -> u16 {
        let table = self.alloc(16 * segs.len() as u64);
        for (k, s) in segs.iter().enumerate() {
            let mut flags = if s.writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if k + 1 < segs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.write_desc(table, k as u16, s.addr, s.len, flags, (k + 1) as u16);
        }
        let head = self.take_descs(q, 1)[0];
        let desc = self.queues[usize::from(q)].desc;
        self.write_desc(
            desc,
            head,
            table,
            16 * segs.len() as u32,
            VIRTQ_DESC_F_INDIRECT,
            0,
        );
        self.publish(q, head);
        head
    }

    /// Available buffer notification (§4.2.3.3).
    pub fn kick(&mut self, q: u16) -> WriteEffect {
        self.w(reg::QUEUE_NOTIFY, u32::from(q))
    }

    /// Next used element `(id, len)` the driver has not seen yet.
    pub fn used(&mut self, q: u16) -> Option<(u32, u32)> {
        let dq = self.queues[usize::from(q)].clone();
        let idx = self.mem.read_u16(dq.used + 2).unwrap();
        if idx == dq.last_used {
            return None;
        }
        let slot = u64::from(dq.last_used % dq.size);
        let id = self.mem.read_u32(dq.used + 4 + 8 * slot).unwrap();
        let len = self.mem.read_u32(dq.used + 8 + 8 * slot).unwrap();
        self.queues[usize::from(q)].last_used = dq.last_used.wrapping_add(1);
        Some((id, len))
    }

    pub fn used_idx(&self, q: u16) -> u16 {
        let dq = &self.queues[usize::from(q)];
        self.mem.read_u16(dq.used + 2).unwrap()
    }

    /// Reads InterruptStatus and acknowledges it (§4.2.3.4); returns it.
    pub fn ack_irq(&mut self) -> u32 {
        let s = self.r(reg::INTERRUPT_STATUS);
        self.w(reg::INTERRUPT_ACK, s);
        assert!(!self.dev.irq_level());
        s
    }

    pub fn set_avail_flags(&mut self, q: u16, flags: u16) {
        let a = self.queues[usize::from(q)].avail;
        self.mem.write_u16(a, flags).unwrap();
    }

    pub fn set_used_event(&mut self, q: u16, v: u16) {
        let dq = &self.queues[usize::from(q)];
        let at = dq.avail + 4 + 2 * u64::from(dq.size);
        self.mem.write_u16(at, v).unwrap();
    }

    pub fn avail_event(&self, q: u16) -> u16 {
        let dq = &self.queues[usize::from(q)];
        self.mem
            .read_u16(dq.used + 4 + 8 * u64::from(dq.size))
            .unwrap()
    }

    pub fn needs_reset(&self) -> bool {
        self.status() & DEVICE_NEEDS_RESET != 0
    }
}

/// Deterministic xorshift64* PRNG for the garbage sweeps.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
