//! virtio-blk end to end (§5.2), through the MMIO transport with the test
//! driver, plus used-buffer notification suppression (§2.7.7, §2.7.10).

mod common;

use common::*;
use rivet_virtio::blk::*;
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{reg, INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER};
use rivet_virtio::queue::VIRTQ_AVAIL_F_NO_INTERRUPT;
use rivet_virtio::DeviceError;

const SECTORS: usize = 64;

fn pattern_disk() -> RamDisk {
    let mut v = vec![0u8; SECTORS * 512];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (i / 512) as u8 ^ (i as u8).wrapping_mul(7);
    }
    RamDisk::new(v).with_id(*b"rivet-test-disk-0001")
}

fn expected(sector: usize, len: usize) -> Vec<u8> {
    pattern_disk().data()[sector * 512..sector * 512 + len].to_vec()
}

type Blk = rivet_virtio::blk::Blk<RamDisk>;
type Dev<B> = Harness<rivet_virtio::blk::Blk<B>>;

fn blk_with(disk: RamDisk) -> Harness<Blk> {
    Harness::init(Blk::new(disk), MODERN, 16)
}

fn blk() -> Harness<Blk> {
    blk_with(pattern_disk())
}

fn header<B: BlockBackend>(h: &mut Dev<B>, kind: u32, sector: u64) -> u64 {
    let mut b = Vec::new();
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&sector.to_le_bytes());
    h.buf(&b)
}

/// Submits `segs` on queue 0, notifies, returns (used len, status byte at
/// `status_addr`).
fn run<B: BlockBackend>(h: &mut Dev<B>, segs: &[Seg], status_addr: u64) -> (u32, u8) {
    let head = h.add_chain(0, segs);
    h.kick(0);
    let (id, len) = h.used(0).expect("request completed");
    assert_eq!(id, u32::from(head));
    (len, h.read_bytes(status_addr, 1)[0])
}

fn read_req<B: BlockBackend>(h: &mut Dev<B>, sector: u64, len: u32) -> (u32, u8, u64) {
    let hdr = header(h, VIRTIO_BLK_T_IN, sector);
    let data = h.alloc(u64::from(len));
    let st = h.buf(&[0xff]);
    let (used, status) = run(h, &[r(hdr, 16), w(data, len), w(st, 1)], st);
    (used, status, data)
}

fn write_req<B: BlockBackend>(h: &mut Dev<B>, sector: u64, payload: &[u8]) -> (u32, u8) {
    let hdr = header(h, VIRTIO_BLK_T_OUT, sector);
    let data = h.buf(payload);
    let st = h.buf(&[0xff]);
    run(
        h,
        &[r(hdr, 16), r(data, payload.len() as u32), w(st, 1)],
        st,
    )
}

#[test]
fn device_id_features_and_config() {
    // §5.2.1 id 2; §5.2.3 features; §5.2.4 capacity in 512-byte sectors.
    let mut h = Harness::new(Blk::new(pattern_disk()));
    assert_eq!(h.r(reg::DEVICE_ID), 2);
    let f = h.device_features();
    assert_eq!(
        f,
        VERSION_1
            | INDIRECT_DESC
            | EVENT_IDX
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_BLK_SIZE
            | VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_DISCARD
            | VIRTIO_BLK_F_WRITE_ZEROES
    );
    // §2.5.2: config readable before FEATURES_OK; 64-bit fields as two
    // 32-bit reads.
    let lo = h.dev.read(0x100, 4).unwrap();
    let hi = h.dev.read(0x104, 4).unwrap();
    assert_eq!(lo | (hi << 32), SECTORS as u64);
    assert_eq!(h.dev.read(0x100 + 12, 4), Some(u64::from(SEG_MAX)));
    assert_eq!(h.dev.read(0x100 + 20, 4), Some(512));
    assert_eq!(
        h.dev.read(0x100 + 33, 1),
        Some(0),
        "unused0 is 0 (§5.2.5.2)"
    );
    assert_eq!(h.dev.read(0x100 + 57, 1), Some(0), "unused1 is 0");
    // Config writes are ignored (no CONFIG_WCE).
    h.dev.write(0x100, 4, 0xffff_ffff, &mut h.mem).unwrap();
    assert_eq!(h.dev.read(0x100, 4), Some(SECTORS as u64));
}

#[test]
fn read_write_flush_get_id_round_trip() {
    let mut h = blk();
    // §5.2.6 VIRTIO_BLK_T_IN: data is filled with the sectors.
    let (used, status, data) = read_req(&mut h, 3, 1024);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(used, 1025, "whole writable part: data + status");
    assert_eq!(h.read_bytes(data, 1024), expected(3, 1024));
    // VIRTIO_BLK_T_OUT then read back.
    let payload: Vec<u8> = (0..1536u32).map(|i| (i * 13) as u8).collect();
    assert_eq!(write_req(&mut h, 10, &payload), (1, VIRTIO_BLK_S_OK));
    let (_, status, data) = read_req(&mut h, 10, 1536);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(h.read_bytes(data, 1536), payload);
    assert_eq!(
        &h.dev.device().backend().data()[10 * 512..13 * 512],
        &payload[..]
    );
    // VIRTIO_BLK_T_FLUSH.
    let hdr = header(&mut h, VIRTIO_BLK_T_FLUSH, 0);
    let st = h.buf(&[0xff]);
    assert_eq!(
        run(&mut h, &[r(hdr, 16), w(st, 1)], st),
        (1, VIRTIO_BLK_S_OK)
    );
    assert_eq!(h.dev.device().backend().flushes(), 1);
    // VIRTIO_BLK_T_GET_ID: 20 bytes, no NUL when 20 long.
    let hdr = header(&mut h, VIRTIO_BLK_T_GET_ID, 0);
    let id = h.alloc(20);
    let st = h.buf(&[0xff]);
    assert_eq!(
        run(&mut h, &[r(hdr, 16), w(id, 20), w(st, 1)], st),
        (21, VIRTIO_BLK_S_OK)
    );
    assert_eq!(h.read_bytes(id, 20), b"rivet-test-disk-0001");
    assert_eq!(h.dev.device().stats().requests, 5);
}

#[test]
fn large_transfer_through_bounce_buffer() {
    // Data larger than the bounce buffer, split over several descriptors
    // with odd boundaries (§2.7.4.1: no assumptions about framing).
    let mut h = blk();
    let payload: Vec<u8> = (0..(20 * 512u32)).map(|i| (i ^ (i >> 8)) as u8).collect();
    let hdr = header(&mut h, VIRTIO_BLK_T_OUT, 5);
    let d = h.buf(&payload);
    let st = h.buf(&[0xff]);
    let segs = [
        r(hdr, 16),
        r(d, 100),
        r(d + 100, 5000),
        r(d + 5100, 20 * 512 - 5100),
        w(st, 1),
    ];
    assert_eq!(run(&mut h, &segs, st), (1, VIRTIO_BLK_S_OK));
    let hdr = header(&mut h, VIRTIO_BLK_T_IN, 5);
    let out = h.alloc(20 * 512 + 1);
    let segs = [
        r(hdr, 16),
        w(out, 7),
        w(out + 7, 9000),
        w(out + 9007, 20 * 512 + 1 - 9007),
    ];
    let (used, status) = run(&mut h, &segs, out + 20 * 512);
    assert_eq!((used, status), (20 * 512 + 1, VIRTIO_BLK_S_OK));
    assert_eq!(h.read_bytes(out, 20 * 512), payload);
}

#[test]
fn header_and_status_framing_is_free() {
    // §2.7.4.1: header split across descriptors; status sharing a
    // descriptor with the read data.
    let mut h = blk();
    let hdr = header(&mut h, VIRTIO_BLK_T_IN, 1);
    let out = h.alloc(513);
    let segs = [r(hdr, 3), r(hdr + 3, 9), r(hdr + 12, 4), w(out, 513)];
    let (used, status) = run(&mut h, &segs, out + 512);
    assert_eq!((used, status), (513, VIRTIO_BLK_S_OK));
    assert_eq!(h.read_bytes(out, 512), expected(1, 512));
}

#[test]
fn out_of_range_and_misaligned_requests_get_ioerr() {
    // §5.2.6.1: a driver MUST NOT read/write beyond capacity; data length a
    // multiple of 512. The device answers IOERR.
    let mut h = blk();
    for (sector, len) in [
        (SECTORS as u64, 512u32),
        (SECTORS as u64 - 1, 1024),
        (u64::MAX, 512),
        (u64::MAX - 1, 1536),
    ] {
        let (used, status, _) = read_req(&mut h, sector, len);
        assert_eq!(
            (used, status),
            (len + 1, VIRTIO_BLK_S_IOERR),
            "read {sector} {len}"
        );
        assert_eq!(
            write_req(&mut h, sector, &vec![0xaa; len as usize]).1,
            VIRTIO_BLK_S_IOERR
        );
    }
    let (_, status, _) = read_req(&mut h, 0, 100);
    assert_eq!(status, VIRTIO_BLK_S_IOERR);
    assert_eq!(write_req(&mut h, 0, &[1; 513]).1, VIRTIO_BLK_S_IOERR);
    assert_eq!(
        h.dev.device().backend().data(),
        pattern_disk().data(),
        "nothing written"
    );
    // The last sector itself is fine, and a zero-length read at capacity.
    assert_eq!(read_req(&mut h, SECTORS as u64 - 1, 512).1, VIRTIO_BLK_S_OK);
    assert_eq!(read_req(&mut h, SECTORS as u64, 0).1, VIRTIO_BLK_S_OK);
    assert_eq!(h.dev.device().stats().ioerr, 10);
    assert!(!h.needs_reset(), "request errors do not fail the device");
}

#[test]
fn read_only_disk_refuses_writes() {
    // §5.2.5 / §5.2.6.2: RO offered => write requests get IOERR and no
    // data is written.
    let mut h = Harness::new(Blk::new(pattern_disk().with_read_only(true)));
    let f = h.device_features();
    assert_ne!(f & VIRTIO_BLK_F_RO, 0);
    assert_eq!(f & (VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES), 0);
    h.init_with(MODERN | VIRTIO_BLK_F_RO, 8);
    assert_eq!(write_req(&mut h, 0, &[0x55; 512]), (1, VIRTIO_BLK_S_IOERR));
    assert_eq!(h.dev.device().backend().data(), pattern_disk().data());
    let (_, status, data) = read_req(&mut h, 0, 512);
    assert_eq!(status, VIRTIO_BLK_S_OK);
    assert_eq!(h.read_bytes(data, 512), expected(0, 512));
    // Discard/write-zeroes were not offered: UNSUPP.
    let hdr = header(&mut h, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    let seg = h.buf(&[0; 16]);
    let st = h.buf(&[0xff]);
    assert_eq!(
        run(&mut h, &[r(hdr, 16), r(seg, 16), w(st, 1)], st).1,
        VIRTIO_BLK_S_UNSUPP
    );
}

#[test]
fn unsupported_types_get_unsupp() {
    // §5.2.6: legacy FLUSH_OUT (5), SCSI (2, 3), GET_LIFETIME (10), secure
    // erase (14), zoned commands (15..26), barrier bit: not supported.
    let mut h = blk();
    for kind in [
        2u32,
        3,
        5,
        10,
        14,
        15,
        16,
        26,
        0x8000_0000,
        0x8000_0001,
        u32::MAX,
    ] {
        let hdr = header(&mut h, kind, 0);
        let st = h.buf(&[0xff]);
        assert_eq!(
            run(&mut h, &[r(hdr, 16), w(st, 1)], st),
            (1, VIRTIO_BLK_S_UNSUPP),
            "type {kind:#x}"
        );
    }
    assert_eq!(h.dev.device().stats().unsupp, 11);
}

#[test]
fn short_header_gets_ioerr_missing_status_fails_device() {
    // Decision: a readable status byte but a header shorter than 16 bytes
    // fails the request; no writable byte at all fails the device.
    let mut h = blk();
    let hdr = header(&mut h, VIRTIO_BLK_T_IN, 0);
    let st = h.buf(&[0xff]);
    assert_eq!(
        run(&mut h, &[r(hdr, 15), w(st, 1)], st),
        (1, VIRTIO_BLK_S_IOERR)
    );
    assert_eq!(run(&mut h, &[w(st, 1)], st), (1, VIRTIO_BLK_S_IOERR));
    assert!(!h.needs_reset());
    let head = h.add_chain(0, &[r(hdr, 16)]);
    let e = h.kick(0);
    assert_eq!(e.error, Some(DeviceError::NoStatusByte { head }));
    assert!(h.needs_reset());
    assert_ne!(h.r(reg::INTERRUPT_STATUS) & INTERRUPT_CONFIG_CHANGE, 0);
}

#[test]
fn get_id_needs_twenty_bytes() {
    let mut h = blk();
    let hdr = header(&mut h, VIRTIO_BLK_T_GET_ID, 0);
    let id = h.alloc(19);
    let st = h.buf(&[0xff]);
    assert_eq!(
        run(&mut h, &[r(hdr, 16), w(id, 19), w(st, 1)], st).1,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(h.read_bytes(id, 19), vec![0; 19]);
}

fn dwz_segment(sector: u64, num: u32, flags: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sector.to_le_bytes());
    v.extend_from_slice(&num.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v
}

fn dwz<B: BlockBackend>(h: &mut Dev<B>, kind: u32, segs: &[Vec<u8>]) -> u8 {
    let hdr = header(h, kind, 0);
    let body: Vec<u8> = segs.concat();
    let d = h.buf(&body);
    let st = h.buf(&[0xff]);
    let mut chain = vec![r(hdr, 16)];
    if !body.is_empty() {
        chain.push(r(d, body.len() as u32));
    }
    chain.push(w(st, 1));
    run(h, &chain, st).1
}

#[test]
fn discard_and_write_zeroes() {
    // §5.2.6: segments {sector, num_sectors, flags}; §5.2.6.2: unknown flag
    // or unmap on discard => UNSUPP; write zeroes reads back zeroes.
    let mut h = blk();
    assert_eq!(
        dwz(
            &mut h,
            VIRTIO_BLK_T_WRITE_ZEROES,
            &[dwz_segment(2, 2, 0), dwz_segment(8, 1, 1)]
        ),
        VIRTIO_BLK_S_OK
    );
    let d = h.dev.device().backend().data();
    assert!(d[2 * 512..4 * 512].iter().all(|&b| b == 0));
    assert!(d[8 * 512..9 * 512].iter().all(|&b| b == 0));
    assert_eq!(&d[4 * 512..8 * 512], &expected(4, 4 * 512)[..]);
    assert_eq!(
        dwz(&mut h, VIRTIO_BLK_T_DISCARD, &[dwz_segment(20, 4, 0)]),
        VIRTIO_BLK_S_OK
    );
    assert_eq!(
        dwz(&mut h, VIRTIO_BLK_T_DISCARD, &[dwz_segment(20, 4, 1)]),
        VIRTIO_BLK_S_UNSUPP
    );
    assert_eq!(
        dwz(&mut h, VIRTIO_BLK_T_WRITE_ZEROES, &[dwz_segment(20, 4, 2)]),
        VIRTIO_BLK_S_UNSUPP
    );
    // Validation before execution: a bad second segment leaves the first
    // untouched.
    let before = h.dev.device().backend().data().to_vec();
    assert_eq!(
        dwz(
            &mut h,
            VIRTIO_BLK_T_WRITE_ZEROES,
            &[dwz_segment(30, 1, 0), dwz_segment(u64::MAX, 2, 0)]
        ),
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        dwz(
            &mut h,
            VIRTIO_BLK_T_WRITE_ZEROES,
            &[dwz_segment(30, 1, 0), dwz_segment(63, 2, 0)]
        ),
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(h.dev.device().backend().data(), &before[..]);
    // Malformed bodies.
    assert_eq!(dwz(&mut h, VIRTIO_BLK_T_DISCARD, &[]), VIRTIO_BLK_S_IOERR);
    assert_eq!(
        dwz(&mut h, VIRTIO_BLK_T_DISCARD, &[vec![0; 15]]),
        VIRTIO_BLK_S_IOERR
    );
    let too_many = vec![dwz_segment(0, 1, 0); MAX_DISCARD_SEG as usize + 1];
    assert_eq!(
        dwz(&mut h, VIRTIO_BLK_T_DISCARD, &too_many),
        VIRTIO_BLK_S_IOERR
    );
    let max = vec![dwz_segment(0, 1, 0); MAX_DISCARD_SEG as usize];
    assert_eq!(dwz(&mut h, VIRTIO_BLK_T_DISCARD, &max), VIRTIO_BLK_S_OK);
    assert_eq!(
        dwz(
            &mut h,
            VIRTIO_BLK_T_DISCARD,
            &[dwz_segment(0, MAX_DISCARD_SECTORS + 1, 0)]
        ),
        VIRTIO_BLK_S_IOERR
    );
    // Not offered by the backend: UNSUPP.
    let mut h = blk_with(pattern_disk().with_discard(false));
    assert_eq!(
        dwz(&mut h, VIRTIO_BLK_T_DISCARD, &[dwz_segment(0, 1, 0)]),
        VIRTIO_BLK_S_UNSUPP
    );
    assert_eq!(
        dwz(&mut h, VIRTIO_BLK_T_WRITE_ZEROES, &[dwz_segment(0, 1, 0)]),
        VIRTIO_BLK_S_UNSUPP
    );
}

#[test]
fn indirect_descriptors() {
    // §2.7.5.3: a single INDIRECT descriptor whose table holds the request.
    let mut h = blk();
    let hdr = header(&mut h, VIRTIO_BLK_T_IN, 7);
    let data = h.alloc(2048);
    let st = h.buf(&[0xff]);
    let head = h.add_indirect(
        0,
        &[r(hdr, 16), w(data, 1000), w(data + 1000, 1048), w(st, 1)],
    );
    h.kick(0);
    assert_eq!(h.used(0), Some((u32::from(head), 2049)));
    assert_eq!(h.read_bytes(st, 1), [VIRTIO_BLK_S_OK]);
    assert_eq!(h.read_bytes(data, 2048), expected(7, 2048));
    // Without INDIRECT_DESC negotiated the same chain fails the device.
    let mut h = Harness::init(Blk::new(pattern_disk()), VERSION_1, 16);
    let hdr = header(&mut h, VIRTIO_BLK_T_IN, 7);
    let st = h.buf(&[0xff]);
    h.add_indirect(0, &[r(hdr, 16), w(st, 1)]);
    assert!(h.kick(0).error.is_some());
    assert!(h.needs_reset());
}

#[test]
fn many_requests_batch_and_ring_wrap() {
    // Several chains per notification; the rings wrap many times.
    let mut h = blk();
    for round in 0..40u64 {
        let mut sts = Vec::new();
        for k in 0..3u64 {
            let hdr = header(&mut h, VIRTIO_BLK_T_IN, (round + k) % SECTORS as u64);
            let st = h.buf(&[0xff]);
            let data = h.alloc(512);
            h.add_chain(0, &[r(hdr, 16), w(data, 512), w(st, 1)]);
            sts.push((st, data, (round + k) as usize % SECTORS));
        }
        h.kick(0);
        for (st, data, sector) in sts {
            assert_eq!(h.used(0).map(|u| u.1), Some(513));
            assert_eq!(h.read_bytes(st, 1), [0]);
            assert_eq!(h.read_bytes(data, 512), expected(sector, 512));
        }
        h.ack_irq();
        if h.heap > RAM_BASE + (RAM_SIZE as u64) - 0x10000 {
            h.heap = HEAP;
        }
    }
    assert_eq!(h.dev.queues()[0].next_used(), 120);
}

#[test]
fn no_interrupt_flag_suppresses_used_notifications() {
    // §2.7.7.2 without EVENT_IDX: flags == 1 => SHOULD NOT notify; 0 =>
    // MUST notify.
    let mut h = Harness::init(Blk::new(pattern_disk()), VERSION_1, 8);
    h.set_avail_flags(0, VIRTQ_AVAIL_F_NO_INTERRUPT);
    read_req(&mut h, 0, 512);
    assert!(!h.dev.irq_level());
    h.set_avail_flags(0, 0);
    read_req(&mut h, 0, 512);
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
}

#[test]
fn event_idx_used_event_suppression() {
    // §2.7.7.2 with EVENT_IDX: notify only when the entry written at used
    // index `used_event` was added; flags' low bit ignored.
    let mut h = blk();
    h.set_avail_flags(0, VIRTQ_AVAIL_F_NO_INTERRUPT);
    h.set_used_event(0, 2);
    read_req(&mut h, 0, 512); // used idx 0 -> 1
    assert!(!h.dev.irq_level());
    read_req(&mut h, 0, 512); // 1 -> 2
    assert!(!h.dev.irq_level());
    read_req(&mut h, 0, 512); // entry at index 2 == used_event
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
    read_req(&mut h, 0, 512);
    assert!(!h.dev.irq_level());
    // A batch that steps over used_event notifies once.
    h.set_used_event(0, 5);
    for _ in 0..3 {
        let hdr = header(&mut h, VIRTIO_BLK_T_FLUSH, 0);
        let st = h.buf(&[0xff]);
        h.add_chain(0, &[r(hdr, 16), w(st, 1)]);
    }
    h.kick(0); // entries at 4, 5, 6
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
}

#[test]
fn event_idx_avail_event_published() {
    // §2.7.10: with EVENT_IDX the device sets avail_event so the driver
    // knows when to notify: after draining, avail_event == avail idx.
    let mut h = blk();
    for n in 1..5u16 {
        read_req(&mut h, 0, 512);
        assert_eq!(h.avail_event(0), n);
    }
}

#[test]
fn polling_picks_up_unnotified_requests() {
    // The device MAY process buffers as soon as idx is updated (§2.7.13.3);
    // poll does so without a notification.
    let mut h = blk();
    let hdr = header(&mut h, VIRTIO_BLK_T_IN, 0);
    let st = h.buf(&[0xff]);
    h.add_chain(0, &[r(hdr, 16), w(st, 1)]);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(0), Some((0, 1)));
    assert!(h.dev.irq_level());
}

#[test]
fn two_windows_of_one_disk_are_isolated() {
    // Two guests share one disk; each device only ever sees its window.
    let mut shared = pattern_disk();
    {
        let win_a = WindowBackend::new(&mut shared, 0, 16)
            .unwrap()
            .with_id(*b"window-a\0\0\0\0\0\0\0\0\0\0\0\0");
        let mut a = Harness::init(rivet_virtio::blk::Blk::new(win_a), MODERN, 8);
        assert_eq!(a.dev.read(0x100, 4), Some(16));
        // Writes beyond the window are refused, within it land at 0..16.
        assert_eq!(write_req(&mut a, 16, &[0xaa; 512]).1, VIRTIO_BLK_S_IOERR);
        assert_eq!(write_req(&mut a, 15, &[0xaa; 1024]).1, VIRTIO_BLK_S_IOERR);
        assert_eq!(write_req(&mut a, 15, &[0xaa; 512]).1, VIRTIO_BLK_S_OK);
        assert_eq!(
            dwz(&mut a, VIRTIO_BLK_T_WRITE_ZEROES, &[dwz_segment(15, 2, 0)]),
            VIRTIO_BLK_S_IOERR
        );
    }
    {
        let win_b = WindowBackend::new(&mut shared, 16, 16).unwrap();
        let mut b = Harness::init(rivet_virtio::blk::Blk::new(win_b), MODERN, 8);
        let (_, status, data) = read_req(&mut b, 0, 512);
        assert_eq!(status, VIRTIO_BLK_S_OK);
        assert_eq!(b.read_bytes(data, 512), expected(16, 512));
        assert_eq!(read_req(&mut b, 16, 512).1, VIRTIO_BLK_S_IOERR);
        assert_eq!(write_req(&mut b, 0, &[0xbb; 512]).1, VIRTIO_BLK_S_OK);
        assert_eq!(
            dwz(&mut b, VIRTIO_BLK_T_WRITE_ZEROES, &[dwz_segment(1, 15, 0)]),
            VIRTIO_BLK_S_OK
        );
    }
    let d = shared.data();
    assert!(d[15 * 512..16 * 512].iter().all(|&x| x == 0xaa));
    assert!(d[16 * 512..17 * 512].iter().all(|&x| x == 0xbb));
    assert!(d[17 * 512..32 * 512].iter().all(|&x| x == 0));
    assert_eq!(&d[..15 * 512], &pattern_disk().data()[..15 * 512]);
    assert_eq!(&d[32 * 512..], &pattern_disk().data()[32 * 512..]);
}

#[test]
fn host_capacity_change_notifies_driver() {
    // §5.2.6.2: the device MAY change capacity and SHOULD then trigger a
    // configuration change notification.
    let mut h = blk();
    let g = h.r(reg::CONFIG_GENERATION);
    h.dev.device_mut().backend_mut().data_mut();
    h.dev.config_changed();
    assert_eq!(h.r(reg::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
    assert_ne!(h.r(reg::CONFIG_GENERATION), g);
}
