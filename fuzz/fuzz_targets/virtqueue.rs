//! `rivet-virtio`: a hostile driver. Random bytes and half-valid
//! structures are laid into guest memory as descriptor tables, indirect
//! tables, available rings and requests, and the device is driven through
//! its virtio-mmio registers (status handshake, queue setup, `QueueNotify`,
//! interrupt acknowledgement) for the blk, console and rng models.
//!
//! Checked after every step: nothing panics or loops, the register file
//! keeps its invariants (as in `crates/virtio/tests/fuzz.rs`), reads are
//! valid exactly where the transport says, a read-only disk is never
//! written, and guest memory outside RAM is never touched (`VecMemory`
//! refuses it).
//!
//! Input: device header, then operations until the bytes run out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivet_fuzz::Input;
use rivet_guest_mem::{GuestMemory, VecMemory};
use rivet_virtio::blk::{self, Blk, RamDisk};
use rivet_virtio::console::{Console, ConsoleBackend};
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{reg, MMIO_SIZE};
use rivet_virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use rivet_virtio::rng::{EntropySource, Rng};
use rivet_virtio::status::*;
use rivet_virtio::{MmioDevice, VirtioDevice};

const RAM_BASE: u64 = 0x8000_0000;
const RAM_SIZE: usize = 128 << 10;
const RAM_END: u64 = RAM_BASE + RAM_SIZE as u64;
/// Queue `q`: descriptor table at `+0`, available ring at `+0x1000`, used
/// ring at `+0x2000`.
const QUEUE_AREA: u64 = RAM_BASE;
const QUEUE_STRIDE: u64 = 0x3000;
/// Request headers, data buffers and indirect tables.
const HEAP: u64 = RAM_BASE + 0x1_0000;
const HEAP_SIZE: u64 = 0x1_0000;

const REGS: [u64; 22] = [
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

struct Sink(u64);
impl ConsoleBackend for Sink {
    fn write(&mut self, data: &[u8]) {
        assert!(!data.is_empty());
        self.0 += data.len() as u64;
    }
}

/// Entropy that sometimes has nothing and sometimes claims too much.
struct Source(u64);
impl EntropySource for Source {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        buf.fill(0x5a);
        (x % (buf.len() as u64 + 3)) as usize
    }
}

/// Device-specific host actions and checks.
trait Model: VirtioDevice + Sized {
    fn host_op(dev: &mut MmioDevice<Self>, input: &mut Input);
    fn check(_dev: &MmioDevice<Self>) {}
}

impl Model for Blk<RamDisk> {
    fn host_op(_dev: &mut MmioDevice<Self>, _input: &mut Input) {}
    fn check(dev: &MmioDevice<Self>) {
        let disk = dev.device().backend();
        if disk.read_only() {
            assert!(
                disk.data()
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern(i)),
                "read-only disk written"
            );
        }
    }
}
impl Model for Console<Sink> {
    fn host_op(dev: &mut MmioDevice<Self>, input: &mut Input) {
        let n = input.below(80) as usize;
        let bytes = input.bytes(n);
        dev.device_mut().push_input(bytes);
    }
}
impl Model for Rng<Source> {
    fn host_op(dev: &mut MmioDevice<Self>, input: &mut Input) {
        dev.device_mut().source_mut().0 = input.u64() | 1;
    }
}

use rivet_virtio::blk::BlockBackend;

fn pattern(i: usize) -> u8 {
    (i as u8) ^ ((i >> 9) as u8).wrapping_mul(13)
}

struct Driver<D: Model> {
    dev: MmioDevice<D>,
    mem: VecMemory,
    /// Next descriptor index the chain builder uses, per queue.
    next_desc: [u16; 4],
}

impl<D: Model> Driver<D> {
    fn w(&mut self, off: u64, v: u32) {
        self.dev
            .write(off, 4, u64::from(v), &mut self.mem)
            .expect("aligned 32-bit register write must be valid");
    }
    fn r(&self, off: u64) -> u32 {
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

    fn queue_index(&self, input: &mut Input) -> u16 {
        let n = self.dev.queues().len() as u64;
        input.below(n + 1) as u16 // one past the end now and then
    }

    fn addr(input: &mut Input) -> u64 {
        match input.u8() % 10 {
            0 => input.u64(),
            1 => RAM_END - input.below(64),
            2 => RAM_BASE - 1 - input.below(64),
            3 => u64::MAX - input.below(64),
            4 => QUEUE_AREA + input.below(3 * QUEUE_STRIDE),
            _ => HEAP + input.below(HEAP_SIZE),
        }
    }

    fn len(input: &mut Input) -> u32 {
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

    fn write_desc(&mut self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
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
    fn publish(&mut self, q: u16, head: u16, bump: u16) {
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

    /// A chain of 1..=5 segments (direct or through an indirect table),
    /// published and kicked.
    fn chain(&mut self, input: &mut Input, segs: &[(u64, u32, bool)]) {
        let q = self.queue_index(input);
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
            let _ = self
                .dev
                .write(reg::QUEUE_NOTIFY, 4, u64::from(q), &mut self.mem);
        }
    }

    /// A virtio-blk request: header, optional data, status byte.
    fn blk_request(&mut self, input: &mut Input) {
        let types = [
            blk::VIRTIO_BLK_T_IN,
            blk::VIRTIO_BLK_T_OUT,
            blk::VIRTIO_BLK_T_FLUSH,
            blk::VIRTIO_BLK_T_GET_ID,
            blk::VIRTIO_BLK_T_DISCARD,
            blk::VIRTIO_BLK_T_WRITE_ZEROES,
            blk::VIRTIO_BLK_T_GET_LIFETIME,
            blk::VIRTIO_BLK_T_SECURE_ERASE,
        ];
        let t = if input.u8() < 0xf0 {
            input.pick(&types)
        } else {
            input.u32()
        };
        let sector = match input.u8() % 4 {
            0 => input.u64(),
            _ => input.below(40),
        };
        let hdr = HEAP + 0x100 * input.below(0x20);
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&t.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        let _ = self.mem.write(hdr, &h);
        let data = HEAP + 0x2000 + 0x200 * input.below(0x40);
        let dlen = [0u32, 512, 1024, 511, 4608, 20, 16, 32][input.below(8) as usize];
        let writable = matches!(
            t,
            blk::VIRTIO_BLK_T_IN | blk::VIRTIO_BLK_T_GET_ID | blk::VIRTIO_BLK_T_GET_LIFETIME
        );
        if matches!(
            t,
            blk::VIRTIO_BLK_T_DISCARD
                | blk::VIRTIO_BLK_T_WRITE_ZEROES
                | blk::VIRTIO_BLK_T_SECURE_ERASE
        ) {
            // One or two discard segments: sector, num_sectors, flags.
            for k in 0..2u64 {
                let mut s = [0u8; 16];
                s[..8].copy_from_slice(&input.below(40).to_le_bytes());
                s[8..12].copy_from_slice(&(input.below(20) as u32).to_le_bytes());
                s[12..].copy_from_slice(&(input.below(4) as u32).to_le_bytes());
                let _ = self.mem.write(data + 16 * k, &s);
            }
        }
        let status = HEAP + 0xe000 + input.below(0x100);
        let mut segs = vec![(hdr, 16, false)];
        if dlen > 0 {
            segs.push((data, dlen, writable ^ (input.u8() == 0xff)));
        }
        segs.push((status, 1, true));
        self.chain(input, &segs);
    }

    fn step(&mut self, input: &mut Input) {
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
                self.dev
                    .write(off, 4, v, &mut self.mem)
                    .expect("aligned 32-bit write is valid");
            }
            3 => {
                let off = input.below(MMIO_SIZE + 16);
                let size = input.pick(&[1u8, 2, 4, 8, 3, 0]);
                let v = input.u64();
                let valid = self.dev.write(off, size, v, &mut self.mem).is_some();
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
                let _ = self
                    .dev
                    .write(reg::QUEUE_NOTIFY, 4, u64::from(q), &mut self.mem);
            }
            9 => {
                let _ = self.dev.poll(&mut self.mem);
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
            12 => self.blk_request(input),
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
            14 => D::host_op(&mut self.dev, input),
            _ => {
                if input.u8() < 0x10 {
                    self.dev.reset();
                } else {
                    let _ = self.dev.poll(&mut self.mem);
                }
            }
        }
    }

    fn invariants(&self) {
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
        D::check(&self.dev);
    }
}

/// Whether the transport must accept an access (see `MmioDevice::read`).
fn access_ok(off: u64, size: u8) -> bool {
    let reg_ok = off < reg::CONFIG && size == 4 && off % 4 == 0;
    let cfg_ok = (reg::CONFIG..MMIO_SIZE).contains(&off)
        && matches!(size, 1 | 2 | 4)
        && off % u64::from(size) == 0;
    reg_ok || cfg_ok
}

fn run<D: Model>(device: D, input: &mut Input) {
    let mut d = Driver {
        dev: MmioDevice::new(device),
        mem: VecMemory::new(RAM_BASE, RAM_SIZE),
        next_desc: [0; 4],
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 200 {
        steps += 1;
        d.step(input);
        d.invariants();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => {
            let sectors = 1 + input.below(32) as usize;
            let bytes: Vec<u8> = (0..sectors * 512 + input.below(3) as usize)
                .map(pattern)
                .collect();
            let flags = input.u8();
            let disk = RamDisk::new(bytes)
                .with_read_only(flags & 1 != 0)
                .with_discard(flags & 2 != 0);
            run(Blk::new(disk), &mut input);
        }
        1 => {
            let mut c = Console::new(Sink(0)).with_emergency_write(input.bool());
            c.push_input(b"hello");
            run(c, &mut input);
        }
        _ => {
            let seed = input.u64() | 1;
            run(Rng::new(Source(seed)), &mut input);
        }
    }
});
