//! Random-garbage sweeps (deterministic xorshift): hostile register writes
//! of every width and offset, and hostile ring/descriptor/request contents
//! behind a correctly initialised device. Nothing may panic, loop forever
//! or break the transport's invariants.

mod common;

use common::*;
use rivet_guest_mem::{GuestMemory, VecMemory};
use rivet_virtio::blk::{Blk, RamDisk};
use rivet_virtio::console::{Console, ConsoleBackend};
use rivet_virtio::fs::{FsBackend, FsBackendError, FsDevice, InitInfo};
use rivet_virtio::fuse::{InHeader, OutHeader, RELAY_SUPPORTED_FLAGS};
use rivet_virtio::mmio::{reg, MMIO_SIZE};
use rivet_virtio::net::{FrameQueue, Net, NetBackend, MAX_FRAME_LEN, MIN_FRAME_LEN};
use rivet_virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use rivet_virtio::rng::{EntropySource, Rng};
use rivet_virtio::status::*;
use rivet_virtio::VirtioDevice;

struct Sink(usize);
impl ConsoleBackend for Sink {
    fn write(&mut self, data: &[u8]) {
        self.0 += data.len();
    }
}

/// Checks every frame the net device hands out; sometimes refuses more.
struct Outbox(FrameQueue);
impl NetBackend for Outbox {
    fn transmit(&mut self, frame: &[u8]) {
        assert!((MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()));
        if self.0.push(frame) && self.0.len() > 4 {
            self.0.clear();
        }
    }
    fn tx_ready(&self) -> bool {
        !self.0.is_full()
    }
}

fn net_device() -> Net<Outbox> {
    Net::new([0x02, 0, 0, 0, 0, 1], Outbox(FrameQueue::new(8)))
}

struct Flaky(XorShift);
impl EntropySource for Flaky {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = (self.0.next() % (buf.len() as u64 + 2)) as usize;
        buf.iter_mut().for_each(|b| *b = 0xa5);
        n // sometimes more than asked: must be clamped
    }
}

/// Answers every FUSE request with a random-length reply (sometimes
/// malformed, sometimes failing): the device must cope with all of them.
struct Echo(XorShift);
impl FsBackend for Echo {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, FsBackendError> {
        let h = InHeader::parse(request).expect("whole header");
        assert_eq!(h.len as usize, request.len());
        if self.0.chance(10) {
            return Err(FsBackendError::Timeout);
        }
        let n = (self.0.below(300) as usize).max(16);
        let len = if self.0.chance(90) {
            n as u32
        } else {
            self.0.next() as u32
        };
        let header = OutHeader {
            len,
            error: 0,
            unique: h.unique,
        }
        .to_bytes();
        let fit = reply.len().min(16);
        reply[..fit].copy_from_slice(&header[..fit]);
        Ok(n)
    }
    fn send_noreply(&mut self, request: &[u8]) -> Result<(), FsBackendError> {
        assert!(request.len() >= 40);
        Ok(())
    }
}

fn fs_device(seed: u64) -> FsDevice<Echo> {
    let info = InitInfo {
        major: 7,
        minor: 38,
        max_readahead: 1 << 17,
        flags: RELAY_SUPPORTED_FLAGS,
        max_background: 16,
        congestion_threshold: 12,
        max_write: 1 << 20,
        time_gran: 1,
        max_pages: 256,
    };
    FsDevice::new("fuzz", Echo(XorShift(seed)), info).unwrap()
}

const REGS: [u64; 24] = [
    reg::DEVICE_FEATURES_SEL,
    reg::DRIVER_FEATURES,
    reg::DRIVER_FEATURES_SEL,
    reg::QUEUE_SEL,
    reg::QUEUE_NUM,
    reg::QUEUE_READY,
    reg::QUEUE_NOTIFY,
    reg::INTERRUPT_ACK,
    reg::STATUS,
    reg::STATUS,
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
    0x0f0,
];

fn interesting_value(rng: &mut XorShift) -> u64 {
    match rng.below(10) {
        0 => rng.next(),
        1 => rng.below(4),
        2 => 1 << rng.below(64),
        3 => (RAM_BASE + rng.below(RAM_SIZE as u64 + 0x100)) & !rng.below(16),
        4 => (RAM_BASE + rng.below(RAM_SIZE as u64)) >> 32,
        5 => [0, 1, 3, 7, 11, 15, 0x8f, 0x40][rng.below(8) as usize],
        6 => 1 << rng.below(10),
        7 => u64::from(u32::MAX),
        8 => rng.below(0x1_0002),
        _ => rng.below(300),
    }
}

/// Checks what must hold after any access.
fn invariants<D: VirtioDevice, M: GuestMemory>(h: &Harness<D, M>) {
    let is = h.dev.read(reg::INTERRUPT_STATUS, 4).unwrap();
    assert_eq!(h.dev.irq_level(), is != 0);
    assert_eq!(is & !3, 0, "only defined interrupt bits");
    let st = h.dev.read(reg::STATUS, 4).unwrap() as u32;
    assert_eq!(
        st & !(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK | DEVICE_NEEDS_RESET | FAILED),
        0
    );
    if st & DRIVER_OK != 0 {
        assert_ne!(st & FEATURES_OK, 0);
        assert_ne!(
            h.dev.negotiated_features() & rivet_virtio::features::VERSION_1,
            0
        );
    }
    assert_eq!(h.dev.negotiated_features() & !h.dev.offered_features(), 0);
    for q in h.dev.queues() {
        if q.ready() {
            assert!(q.size().is_power_of_two() && q.size() <= q.max_size());
        }
    }
}

/// Random register traffic: valid and invalid widths, offsets, values,
/// interleaved with polls and garbage in memory.
fn register_sweep<D: VirtioDevice>(device: D, seed: u64, rounds: usize) {
    let mut rng = XorShift(seed);
    let mut h = Harness::new(device);
    let mut faults = 0usize;
    for _ in 0..rounds {
        match rng.below(20) {
            0..=11 => {
                let off = REGS[rng.below(REGS.len() as u64) as usize];
                let v = interesting_value(&mut rng);
                h.dev
                    .write(off, 4, v, &mut h.mem)
                    .expect("aligned 32-bit register write is valid");
            }
            12 => {
                let off = rng.below(MMIO_SIZE + 16);
                let size = [1u8, 2, 4, 8, 3][rng.below(5) as usize];
                if h.dev.write(off, size, rng.next(), &mut h.mem).is_none() {
                    faults += 1;
                }
            }
            13 | 14 => {
                let off = rng.below(MMIO_SIZE + 16);
                let size = [1u8, 2, 4, 8][rng.below(4) as usize];
                let valid_reg = off < 0x100 && size == 4 && off.is_multiple_of(4);
                let valid_cfg = (0x100..MMIO_SIZE).contains(&off)
                    && size <= 4
                    && off.is_multiple_of(u64::from(size));
                assert_eq!(
                    h.dev.read(off, size).is_some(),
                    valid_reg || valid_cfg,
                    "{off:#x}/{size}"
                );
            }
            15 => {
                // Garbage anywhere in the queue area.
                let at = QUEUE_AREA + rng.below(3 * QUEUE_STRIDE);
                let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                h.mem.write(at, &bytes).unwrap();
            }
            16 => {
                let _ = h.dev.poll(&mut h.mem);
            }
            17 => {
                // Known-good init, to reach deep states more often.
                if h.negotiate(MODERN) {
                    for q in 0..h.dev.queues().len() as u16 {
                        h.setup_queue(q, 1 << rng.below(4));
                    }
                    h.driver_ok();
                }
            }
            18 => {
                let q = rng.below(3) as u32;
                h.dev
                    .write(reg::QUEUE_NOTIFY, 4, u64::from(q), &mut h.mem)
                    .unwrap();
            }
            _ => h.dev.config_changed(),
        }
        invariants(&h);
    }
    assert!(faults > 0);
}

#[test]
fn register_garbage_blk() {
    register_sweep(
        Blk::new(RamDisk::new(vec![0; 8 * 512])),
        0x1234_5678_9abc_def1,
        30_000,
    );
}

#[test]
fn register_garbage_console() {
    let mut c = Console::new(Sink(0)).with_emergency_write(true);
    c.push_input(b"input");
    register_sweep(c, 0x0bad_cafe_f00d_0001, 30_000);
}

#[test]
fn register_garbage_net() {
    register_sweep(net_device(), 0x6e65_7466_757a_7a01, 30_000);
}

#[test]
fn register_garbage_fs() {
    register_sweep(fs_device(3), 0xf5f5_0001_2345_6789, 30_000);
}

#[test]
fn register_garbage_rng() {
    register_sweep(Rng::new(Flaky(XorShift(77))), 0xfeed_face_dead_beef, 30_000);
}

/// A plausible-but-hostile descriptor address.
fn addr(rng: &mut XorShift, data: u64) -> u64 {
    let end = RAM_BASE + RAM_SIZE as u64;
    match rng.below(12) {
        0 => rng.next(),
        1 => end - rng.below(64),
        2 => RAM_BASE - 1 - rng.below(64),
        3 => u64::MAX - rng.below(64),
        4 => 0,
        5 => QUEUE_AREA + rng.below(QUEUE_STRIDE), // the rings themselves
        _ => data + rng.below(0x8000),
    }
}

fn len(rng: &mut XorShift) -> u32 {
    match rng.below(10) {
        0 => rng.next() as u32,
        1 => u32::MAX - rng.below(4) as u32,
        2 => 0,
        3 => 16 * (1 + rng.below(20) as u32),
        4 => 512 * (1 + rng.below(16) as u32),
        5 => 16,
        6 => 1,
        _ => rng.below(1100) as u32,
    }
}

fn flags(rng: &mut XorShift) -> u16 {
    match rng.below(8) {
        0 => rng.next() as u16,
        1 => VIRTQ_DESC_F_INDIRECT,
        2 => VIRTQ_DESC_F_NEXT,
        3 => VIRTQ_DESC_F_WRITE,
        4 => VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
        _ => rng.below(8) as u16,
    }
}

struct Outcome {
    completed: usize,
    resets: usize,
    kinds: std::collections::BTreeSet<String>,
}

/// Random descriptor tables, indirect tables, request bodies and ring
/// indices behind a correctly initialised device.
fn ring_sweep<D: VirtioDevice, F: FnMut(&mut Harness<D>, &mut XorShift)>(
    device: D,
    seed: u64,
    rounds: usize,
    mut host: F,
) -> Outcome {
    let mut rng = XorShift(seed);
    let size = 8u16;
    let mut h = Harness::init(device, MODERN, size);
    let data = HEAP;
    let mut out = Outcome {
        completed: 0,
        resets: 0,
        kinds: Default::default(),
    };
    for _ in 0..rounds {
        let nq = h.dev.queues().len() as u16;
        let q = rng.below(u64::from(nq)) as u16;
        // Rewrite some descriptors (main table and a scratch indirect area).
        let table = h.queues[usize::from(q)].desc;
        for _ in 0..rng.below(6) {
            let i = rng.below(u64::from(size)) as u16;
            let (a, l, f, n) = (
                addr(&mut rng, data),
                len(&mut rng),
                flags(&mut rng),
                rng.below(u64::from(size) + 2) as u16,
            );
            h.write_desc(table, i, a, l, f, n);
        }
        for _ in 0..rng.below(6) {
            let i = rng.below(64) as u16;
            let (a, l, f, n) = (
                addr(&mut rng, data),
                len(&mut rng),
                flags(&mut rng),
                rng.below(24) as u16,
            );
            h.write_desc(data + 0x4000, i, a, l, f, n);
        }
        // Sometimes point a descriptor at the indirect scratch table.
        if rng.chance(20) {
            let i = rng.below(u64::from(size)) as u16;
            let l = 16 * (1 + rng.below(24) as u32);
            h.write_desc(table, i, data + 0x4000, l, VIRTQ_DESC_F_INDIRECT, 0);
        }
        // Request bodies: plausible blk headers and random bytes.
        for _ in 0..rng.below(4) {
            let at = data + rng.below(0x4000);
            let kind = [0u32, 1, 4, 8, 11, 13, 2, rng.next() as u32][rng.below(8) as usize];
            let sector = if rng.chance(50) {
                rng.below(16)
            } else {
                rng.next()
            };
            let mut b = kind.to_le_bytes().to_vec();
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&sector.to_le_bytes());
            if rng.chance(30) {
                b.extend_from_slice(&rng.next().to_le_bytes());
                b.extend_from_slice(&(rng.below(20) as u32).to_le_bytes());
                b.extend_from_slice(&(rng.below(3) as u32).to_le_bytes());
            }
            let _ = h.mem.write(at, &b);
        }
        // Publish a few heads (possibly out of range), sometimes garble idx
        // or flags / used_event.
        for _ in 0..rng.below(4) {
            let head = if rng.chance(90) {
                rng.below(u64::from(size)) as u16
            } else {
                rng.next() as u16
            };
            h.publish(q, head);
        }
        if rng.chance(3) {
            let a = h.queues[usize::from(q)].avail;
            h.mem.write_u16(a + 2, rng.next() as u16).unwrap();
        }
        if rng.chance(10) {
            h.set_avail_flags(q, rng.next() as u16);
            h.set_used_event(q, rng.next() as u16);
        }
        host(&mut h, &mut rng);
        if rng.chance(80) {
            h.kick(q);
        } else {
            let _ = h.dev.poll(&mut h.mem);
        }
        invariants(&h);
        // Bounded: a hostile descriptor may have pointed the device's data
        // writes at the used ring itself.
        for _ in 0..2 * size {
            if h.used(q).is_none() {
                break;
            }
            out.completed += 1;
        }
        if rng.chance(30) {
            h.ack_irq();
        }
        if h.needs_reset() {
            let e = format!("{:?}", h.dev.last_error().expect("error recorded"));
            out.kinds.insert(
                e.split(['(', ')', ' ', '{'])
                    .filter(|s| !s.is_empty())
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            out.resets += 1;
            h.init_with(MODERN, size);
        }
    }
    eprintln!(
        "completed {} resets {} kinds {:?}",
        out.completed, out.resets, out.kinds
    );
    out
}

#[test]
fn ring_garbage_blk() {
    let disk = RamDisk::new((0..16 * 512).map(|i| i as u8).collect());
    let out = ring_sweep(Blk::new(disk), 0x5eed_0001, 20_000, |_, _| {});
    assert!(
        out.completed > 100,
        "sweep reached request handling: {}",
        out.completed
    );
    assert!(
        out.resets > 100,
        "sweep reached error handling: {}",
        out.resets
    );
}

#[test]
fn ring_garbage_console() {
    let out = ring_sweep(Console::new(Sink(0)), 0x5eed_0002, 20_000, |h, rng| {
        if rng.chance(40) {
            let n = rng.below(300) as usize;
            h.dev.device_mut().push_input(&vec![b'k'; n]);
        }
    });
    assert!(out.completed > 100, "{}", out.completed);
    assert!(out.resets > 100, "{}", out.resets);
}

#[test]
fn ring_garbage_net() {
    // Host frames of every length (valid or not) pushed between hostile
    // rings, link flaps, a backend that fills up. The sweep negotiates
    // MODERN only, so this covers single-buffer receive; the next test
    // covers MRG_RXBUF.
    let out = ring_sweep(net_device(), 0x5eed_0004, 20_000, |h, rng| {
        for _ in 0..rng.below(4) {
            let n = match rng.below(4) {
                0 => rng.below(2000) as usize,
                1 => MAX_FRAME_LEN,
                _ => MIN_FRAME_LEN + rng.below(200) as usize,
            };
            h.dev.device_mut().receive(&vec![0x5a; n]);
        }
        if rng.chance(20) {
            h.dev.device_mut().backend_mut().0.clear();
        }
        if rng.chance(5) {
            let up = rng.chance(70);
            if h.dev.device_mut().set_link_up(up) {
                h.dev.config_changed();
            }
        }
    });
    assert!(out.completed > 100, "{}", out.completed);
    assert!(out.resets > 100, "{}", out.resets);
}

#[test]
fn ring_garbage_net_mergeable() {
    // Hostile rings with MRG_RXBUF negotiated: held buffers stay bounded
    // by the queue size whatever heads the driver republishes.
    let mut rng = XorShift(0x6d72_6701);
    let mut h = Harness::init(
        net_device(),
        MODERN | rivet_virtio::net::VIRTIO_NET_F_MRG_RXBUF,
        8,
    );
    assert!(h.dev.device().mergeable_rx());
    let data = HEAP;
    let mut completed = 0usize;
    for _ in 0..20_000 {
        let q = rng.below(2) as u16;
        let table = h.queues[usize::from(q)].desc;
        for _ in 0..rng.below(6) {
            let i = rng.below(8) as u16;
            let (a, l, f, n) = (
                addr(&mut rng, data),
                len(&mut rng),
                flags(&mut rng),
                rng.below(10) as u16,
            );
            h.write_desc(table, i, a, l, f, n);
        }
        for _ in 0..rng.below(4) {
            h.publish(q, rng.below(8) as u16);
        }
        for _ in 0..rng.below(3) {
            let n = MIN_FRAME_LEN + rng.below(1600) as usize;
            h.dev.device_mut().receive(&vec![0xa5; n]);
        }
        h.kick(q);
        let _ = h.dev.poll(&mut h.mem);
        h.dev.device_mut().backend_mut().0.clear();
        invariants(&h);
        for _ in 0..16 {
            if h.used(q).is_none() {
                break;
            }
            completed += 1;
        }
        if h.needs_reset() {
            h.init_with(MODERN | rivet_virtio::net::VIRTIO_NET_F_MRG_RXBUF, 8);
        }
        assert!(h.dev.device().held_rx_buffers() <= 8);
    }
    assert!(completed > 100, "{completed}");
}

#[test]
fn ring_garbage_rng() {
    let out = ring_sweep(Rng::new(Flaky(XorShift(5))), 0x5eed_0003, 20_000, |_, _| {});
    assert!(out.completed > 100, "{}", out.completed);
    assert!(out.resets > 100, "{}", out.resets);
}

#[test]
fn ring_garbage_fs() {
    // Hostile rings around well-formed FUSE requests (an INIT when there is
    // no session, then relayed and forgotten requests), so the sweep also
    // reaches the relay path.
    let mut stats = Default::default();
    let out = ring_sweep(fs_device(9), 0x5eed_0005, 20_000, |h, rng| {
        stats = h.dev.device().stats();
        if !rng.chance(30) {
            return;
        }
        let session = h.dev.device().session().is_some();
        let (opcode, q, out_len) = match (session, rng.below(3)) {
            (false, _) => (26, 1, 80),
            (true, 0) => (2, 0, 0),
            (true, _) => (3, 1, rng.below(400) as u32),
        };
        let mut b = InHeader {
            len: 104,
            opcode,
            unique: rng.next(),
            ..InHeader::default()
        }
        .to_bytes()
        .to_vec();
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&38u32.to_le_bytes());
        b.extend_from_slice(&[0xff; 56]);
        let a = h.buf(&b);
        let mut segs = vec![r(a, 104)];
        if out_len > 0 {
            let o = h.alloc(u64::from(out_len));
            segs.push(w(o, out_len));
        }
        h.add_chain(q, &segs);
        if h.heap > RAM_BASE + RAM_SIZE as u64 - 0x10000 {
            h.heap = HEAP + 0x10000;
        }
    });
    eprintln!("{stats:?}");
    assert!(out.completed > 100, "{}", out.completed);
    assert!(out.resets > 100, "{}", out.resets);
    assert!(stats.local > 10 && stats.relayed > 10 && stats.forgets > 10);
}

#[test]
fn wild_memory_everywhere() {
    // Totally random RAM contents (rings included) with a live device.
    let mut rng = XorShift(0xabcdef);
    for round in 0..200 {
        let mut h = Harness::init(
            Blk::new(RamDisk::new(vec![0; 4 * 512])),
            MODERN,
            1 << (round % 9),
        );
        let bytes: Vec<u8> = (0..3 * QUEUE_STRIDE).map(|_| rng.next() as u8).collect();
        h.mem.write(QUEUE_AREA, &bytes).unwrap();
        for _ in 0..4 {
            h.kick(0);
            let _ = h.dev.poll(&mut h.mem);
            invariants(&h);
        }
    }
    // And the same for a memory window that is tiny.
    let mut h = Harness::with_memory(
        Blk::new(RamDisk::new(vec![0; 512])),
        VecMemory::new(RAM_BASE, 0x1000),
    );
    for _ in 0..2000 {
        let off = REGS[rng.below(REGS.len() as u64) as usize];
        let v = interesting_value(&mut rng);
        h.dev.write(off, 4, v, &mut h.mem).unwrap();
        invariants(&h);
    }
}
