//! Malformed rings from a hostile driver, through the whole stack (blk over
//! MMIO): each must put the device into DEVICE_NEEDS_RESET with a
//! configuration change interrupt (§2.1.2), never panic, leave the device
//! inert until reset, and recover after a reset.

mod common;

use common::*;
use rivet_guest_mem::GuestMemory;
use rivet_virtio::blk::{Blk, RamDisk, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN};
use rivet_virtio::mmio::{reg, INTERRUPT_CONFIG_CHANGE};
use rivet_virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use rivet_virtio::{DeviceError, QueueError};

const N: u16 = 8;
const NEXT: u16 = VIRTQ_DESC_F_NEXT;
const WRITE: u16 = VIRTQ_DESC_F_WRITE;
const INDIRECT: u16 = VIRTQ_DESC_F_INDIRECT;

type Dev = Blk<RamDisk>;

fn blk() -> Harness<Dev> {
    Harness::init(Blk::new(RamDisk::new(vec![0; 64 * 512])), MODERN, N)
}

fn header(h: &mut Harness<Dev>) -> u64 {
    let mut b = VIRTIO_BLK_T_IN.to_le_bytes().to_vec();
    b.extend_from_slice(&[0; 12]);
    h.buf(&b)
}

fn desc_table(h: &Harness<Dev>) -> u64 {
    h.queues[0].desc
}

/// Publishes `head`, kicks, and checks the device failed with `want`.
fn expect_failure(h: &mut Harness<Dev>, head: u16, want: QueueError) {
    h.publish(0, head);
    let e = h.kick(0);
    assert_eq!(e.error, Some(DeviceError::Queue(want)));
    assert!(h.needs_reset());
    assert_eq!(
        h.r(reg::INTERRUPT_STATUS) & INTERRUPT_CONFIG_CHANGE,
        INTERRUPT_CONFIG_CHANGE
    );
    assert_eq!(h.used(0), None);
    // Inert until reset.
    h.ack_irq();
    assert_eq!(h.kick(0).notified, None);
    h.dev.poll(&mut h.mem).unwrap();
    assert!(!h.dev.irq_level());
    // A reset and a fresh initialisation bring it back.
    h.init_with(MODERN, N);
    let hdr = header(h);
    let st = h.buf(&[0xff]);
    h.add_chain(0, &[r(hdr, 16), w(st, 1)]);
    h.kick(0);
    assert_eq!(h.used(0).map(|u| u.1), Some(1));
    assert_eq!(h.read_bytes(st, 1), [VIRTIO_BLK_S_OK]);
}

#[test]
fn descriptor_outside_ram() {
    let mut h = blk();
    let t = desc_table(&h);
    let end = RAM_BASE + RAM_SIZE as u64;
    h.write_desc(t, 0, end - 8, 16, WRITE, 0);
    expect_failure(
        &mut h,
        0,
        QueueError::DescriptorOutOfRange {
            addr: end - 8,
            len: 16,
        },
    );
    let mut h = blk();
    h.write_desc(t, 0, 0x1000, 1, WRITE, 0);
    expect_failure(
        &mut h,
        0,
        QueueError::DescriptorOutOfRange {
            addr: 0x1000,
            len: 1,
        },
    );
    let mut h = blk();
    h.write_desc(t, 0, u64::MAX - 1, 4, WRITE, 0);
    expect_failure(
        &mut h,
        0,
        QueueError::DescriptorOutOfRange {
            addr: u64::MAX - 1,
            len: 4,
        },
    );
}

#[test]
fn loop_via_next() {
    // §2.7.5.2: loops are forbidden; detected by visiting more descriptors
    // than the table holds.
    let mut h = blk();
    let t = desc_table(&h);
    let hdr = header(&mut h);
    h.write_desc(t, 0, hdr, 16, NEXT, 1);
    h.write_desc(t, 1, hdr, 16, NEXT, 2);
    h.write_desc(t, 2, hdr, 16, NEXT, 0);
    expect_failure(&mut h, 0, QueueError::ChainTooLong);
}

#[test]
fn loop_within_indirect_table() {
    let mut h = blk();
    let t = desc_table(&h);
    let hdr = header(&mut h);
    let table = h.alloc(64);
    h.write_desc(table, 0, hdr, 16, NEXT, 1);
    h.write_desc(table, 1, hdr, 16, NEXT, 3);
    h.write_desc(table, 3, hdr, 16, NEXT, 1);
    h.write_desc(t, 0, table, 64, INDIRECT, 0);
    expect_failure(&mut h, 0, QueueError::ChainTooLong);
}

#[test]
fn nested_indirect() {
    // §2.7.5.3.1: the driver MUST NOT set INDIRECT within an indirect table.
    let mut h = blk();
    let t = desc_table(&h);
    let inner = h.alloc(16);
    let outer = h.alloc(16);
    h.write_desc(outer, 0, inner, 16, INDIRECT, 0);
    h.write_desc(t, 0, outer, 16, INDIRECT, 0);
    expect_failure(&mut h, 0, QueueError::NestedIndirect);
}

#[test]
fn indirect_with_next_and_bad_lengths() {
    // §2.7.5.3.1: INDIRECT and NEXT both set is forbidden; the table length
    // is a whole number of descriptors.
    let mut h = blk();
    let t = desc_table(&h);
    let table = h.alloc(32);
    h.write_desc(t, 0, table, 32, INDIRECT | NEXT, 1);
    expect_failure(&mut h, 0, QueueError::IndirectWithNext);
    for len in [0u32, 8, 17, 16 * 257, u32::MAX] {
        let mut h = blk();
        let table = h.alloc(32);
        h.write_desc(t, 0, table, len, INDIRECT, 0);
        expect_failure(&mut h, 0, QueueError::BadIndirectLength(len));
    }
    let mut h = blk();
    let end = RAM_BASE + RAM_SIZE as u64;
    h.write_desc(t, 0, end - 16, 32, INDIRECT, 0);
    expect_failure(
        &mut h,
        0,
        QueueError::DescriptorOutOfRange {
            addr: end - 16,
            len: 32,
        },
    );
}

#[test]
fn next_and_head_out_of_range() {
    let mut h = blk();
    let t = desc_table(&h);
    let hdr = header(&mut h);
    h.write_desc(t, 0, hdr, 16, NEXT, N);
    expect_failure(&mut h, 0, QueueError::NextOutOfRange(N));
    let mut h = blk();
    expect_failure(&mut h, N, QueueError::HeadOutOfRange(N));
    let mut h = blk();
    expect_failure(&mut h, u16::MAX, QueueError::HeadOutOfRange(u16::MAX));
}

#[test]
fn readable_after_writable() {
    // §2.7.4.2: device-writable elements come after device-readable ones.
    let mut h = blk();
    let t = desc_table(&h);
    let hdr = header(&mut h);
    let st = h.alloc(1);
    h.write_desc(t, 0, st, 1, WRITE | NEXT, 1);
    h.write_desc(t, 1, hdr, 16, 0, 0);
    expect_failure(&mut h, 0, QueueError::ReadableAfterWritable);
}

#[test]
fn available_index_jump() {
    // The driver exposes more chains than the ring holds (§2.7.13: the
    // ring cannot legitimately hold more than the queue size).
    let mut h = blk();
    let a = h.queues[0].avail;
    h.mem.write_u16(a + 2, N + 1).unwrap();
    let e = h.kick(0);
    assert!(matches!(
        e.error,
        Some(DeviceError::Queue(QueueError::AvailIndexJump { .. }))
    ));
    assert!(h.needs_reset());
}

#[test]
fn lengths_summing_past_4_gib() {
    // §2.7.5.2: a chain MUST NOT exceed 2^32 bytes in total. With 16 GiB of
    // (sparse) RAM every descriptor is individually valid.
    let mem = SparseMemory::new(RAM_BASE, 16 << 30);
    let mut h = Harness::with_memory(Blk::new(RamDisk::new(vec![0; 512])), mem);
    h.init_with(MODERN, N);
    let t = h.queues[0].desc;
    h.write_desc(t, 0, RAM_BASE + (1 << 30), 0xc000_0000, NEXT, 1);
    h.write_desc(t, 1, RAM_BASE + (8 << 30), 0x4000_0000, WRITE, 0);
    h.publish(0, 0);
    let e = h.kick(0);
    assert_eq!(
        e.error,
        Some(DeviceError::Queue(QueueError::TotalLengthOverflow))
    );
    assert!(h.status() & rivet_virtio::status::DEVICE_NEEDS_RESET != 0);
}

#[test]
fn max_length_chain_is_not_an_overflow() {
    // Exactly u32::MAX bytes is accepted (then the blk request itself gets
    // IOERR: 0xffff_fffe data bytes are not a multiple of 512).
    let mem = SparseMemory::new(RAM_BASE, 16 << 30);
    let mut h = Harness::with_memory(Blk::new(RamDisk::new(vec![0; 512])), mem);
    h.init_with(MODERN, N);
    let t = h.queues[0].desc;
    let hdr = h.buf(&[0; 16]);
    h.write_desc(t, 0, hdr, 16, NEXT, 1);
    h.write_desc(t, 1, RAM_BASE + (4 << 30), u32::MAX - 16, WRITE, 0);
    h.publish(0, 0);
    let e = h.kick(0);
    assert_eq!(e.error, None);
    assert_eq!(h.used(0), Some((0, u32::MAX - 16)));
    let st = h.read_bytes(RAM_BASE + (4 << 30) + u64::from(u32::MAX - 17), 1);
    assert_eq!(st, [rivet_virtio::blk::VIRTIO_BLK_S_IOERR]);
}

#[test]
fn indirect_table_longer_than_small_queue_is_accepted() {
    // Decision: indirect tables up to 256 entries even in a 2-entry queue
    // (Linux sizes them from seg_max).
    let mut h = Harness::init(Blk::new(RamDisk::new(vec![0; 256 * 512])), MODERN, 2);
    let hdr = header(&mut h);
    let data = h.alloc(512 * 254);
    let st = h.buf(&[0xff]);
    let mut segs = vec![r(hdr, 16)];
    segs.extend((0..254).map(|i| w(data + 512 * i, 512)));
    segs.push(w(st, 1));
    assert_eq!(segs.len(), 256);
    h.add_indirect(0, &segs);
    h.kick(0);
    assert_eq!(h.used(0).map(|u| u.1), Some(254 * 512 + 1));
    assert_eq!(h.read_bytes(st, 1), [VIRTIO_BLK_S_OK]);
}

#[test]
fn rings_moved_out_of_ram_after_setup() {
    // A memory that shrinks under the device (impossible for a real VM,
    // but the error path must hold): ring accesses fail, device resets.
    struct Shrinking {
        inner: rivet_guest_mem::VecMemory,
        limit: Option<u64>,
    }
    impl GuestMemory for Shrinking {
        fn base(&self) -> u64 {
            self.inner.base()
        }
        fn size(&self) -> u64 {
            self.limit.unwrap_or(self.inner.size())
        }
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), rivet_guest_mem::MemError> {
            self.check_range(gpa, buf.len() as u64)?;
            self.inner.read(gpa, buf)
        }
        fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), rivet_guest_mem::MemError> {
            self.check_range(gpa, buf.len() as u64)?;
            self.inner.write(gpa, buf)
        }
    }
    let mem = Shrinking {
        inner: rivet_guest_mem::VecMemory::new(RAM_BASE, RAM_SIZE),
        limit: None,
    };
    let mut h = Harness::with_memory(Blk::new(RamDisk::new(vec![0; 512])), mem);
    h.init_with(MODERN, N);
    h.mem.limit = Some(0x100);
    let e = h.kick(0);
    assert!(matches!(
        e.error,
        Some(DeviceError::Queue(QueueError::Memory(_)))
    ));
    assert!(h.status() & rivet_virtio::status::DEVICE_NEEDS_RESET != 0);
}
