//! virtio-net end to end through the MMIO transport with the test driver.
//! Section names refer to shared/specs/virtio/net.tex ("net: <title>").

mod common;

use common::*;
use rivet_guest_mem::{GuestMemory, MemError, VecMemory};
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{reg, INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER};
use rivet_virtio::net::*;
use rivet_virtio::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use rivet_virtio::{DeviceError, QueueError, VirtioDevice};

const MAC: [u8; 6] = [0x02, 0x52, 0x56, 0x00, 0x00, 0x07];
const BASE_FEATURES: u64 = MODERN | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS;
const MRG: u64 = BASE_FEATURES | VIRTIO_NET_F_MRG_RXBUF;

/// Records every frame the guest sends.
#[derive(Default)]
struct Wire(Vec<Vec<u8>>);

impl NetBackend for Wire {
    fn transmit(&mut self, frame: &[u8]) {
        assert!((MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()));
        self.0.push(frame.to_vec());
    }
}

type Dev = Net<Wire>;

fn net(features: u64) -> Harness<Dev> {
    Harness::init(Net::new(MAC, Wire::default()), features, 16)
}

/// An Ethernet frame of `len` bytes: dst, src, ethertype 0x88b5, pattern.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    while f.len() < len {
        f.push(seed.wrapping_add(f.len() as u8).wrapping_mul(31));
    }
    f.truncate(len);
    f
}

fn pkt(len: usize, seed: u8) -> Vec<u8> {
    frame([0xff; 6], [0x02, 0, 0, 0, 0, 9], len, seed)
}

fn tx_header(flags: u8, gso_type: u8) -> Vec<u8> {
    NetHeader {
        flags,
        gso_type,
        ..NetHeader::default()
    }
    .to_bytes()
    .to_vec()
}

/// Queues header + frame on the transmitq as one readable descriptor.
fn send<D: VirtioDevice, M: GuestMemory>(h: &mut Harness<D, M>, f: &[u8]) -> u16 {
    let mut b = tx_header(0, 0);
    b.extend_from_slice(f);
    let a = h.buf(&b);
    h.add_chain(TRANSMITQ, &[r(a, b.len() as u32)])
}

fn wire(h: &Harness<Dev>) -> &[Vec<u8>] {
    &h.dev.device().backend().0
}

fn stats(h: &Harness<Dev>) -> NetStats {
    h.dev.device().stats()
}

/// Posts one receive chain of a single writable buffer of `len` bytes.
fn post<D: VirtioDevice, M: GuestMemory>(h: &mut Harness<D, M>, len: u32) -> (u16, u64) {
    let b = h.alloc(u64::from(len));
    (h.add_chain(RECEIVEQ, &[w(b, len)]), b)
}

fn header_at<D: VirtioDevice, M: GuestMemory>(h: &Harness<D, M>, addr: u64) -> NetHeader {
    let b: [u8; HDR_LEN] = h.read_bytes(addr, HDR_LEN).try_into().unwrap();
    NetHeader::from_bytes(&b)
}

fn received_header(num_buffers: u16) -> NetHeader {
    NetHeader {
        num_buffers,
        ..NetHeader::default()
    }
}

#[test]
fn identity_features_and_config() {
    // net: Device ID = 1; Virtqueues: receiveq1, transmitq1, no controlq
    // without CTRL_VQ; Feature bits: MAC, STATUS, MRG_RXBUF only.
    let mut h = Harness::new(Net::new(MAC, Wire::default()));
    assert_eq!(h.r(reg::DEVICE_ID), 1);
    let f = h.device_features();
    assert_eq!(
        f,
        VERSION_1
            | INDIRECT_DESC
            | EVENT_IDX
            | VIRTIO_NET_F_MAC
            | VIRTIO_NET_F_STATUS
            | VIRTIO_NET_F_MRG_RXBUF
    );
    // No offloads of any kind (bits 0-4, 6-14), no control queue, no MQ.
    for bit in (0..=14).filter(|&b| b != 5) {
        assert_eq!(f & (1 << bit), 0, "bit {bit}");
    }
    assert_eq!(f & (VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_MQ), 0);
    for q in 0..2 {
        h.w(reg::QUEUE_SEL, q);
        assert_eq!(h.r(reg::QUEUE_NUM_MAX), 256);
    }
    h.w(reg::QUEUE_SEL, 2);
    assert_eq!(h.r(reg::QUEUE_NUM_MAX), 0, "no controlq");
    // net: Device configuration layout: mac[6] at 0, le16 status at 6.
    let mac: Vec<u8> = (0..6)
        .map(|i| h.dev.read(0x100 + i, 1).unwrap() as u8)
        .collect();
    assert_eq!(mac, MAC);
    assert_eq!(
        h.dev.read(0x100, 4),
        Some(u64::from(u32::from_le_bytes(MAC[..4].try_into().unwrap())))
    );
    assert_eq!(h.dev.read(0x106, 2), Some(u64::from(VIRTIO_NET_S_LINK_UP)));
    // max_virtqueue_pairs and later fields do not exist: 0.
    assert_eq!(h.dev.read(0x108, 2), Some(0));
    assert_eq!(h.dev.read(0x10c, 4), Some(0));
}

#[test]
fn driver_cannot_write_config() {
    // net: Device configuration layout, driver requirements: "The driver
    // MUST NOT write to any of the device configuration fields"; the
    // device ignores such writes.
    let mut h = net(MRG);
    let gen = h.r(reg::CONFIG_GENERATION);
    h.dev.write(0x100, 4, 0xdead_beef, &mut h.mem).unwrap();
    h.dev.write(0x106, 2, 0, &mut h.mem).unwrap();
    assert_eq!(h.dev.device().mac(), MAC);
    assert_eq!(h.dev.read(0x106, 2), Some(1));
    assert_eq!(h.r(reg::CONFIG_GENERATION), gen);
}

#[test]
fn link_status_change() {
    // net: Device configuration layout — status bit VIRTIO_NET_S_LINK_UP;
    // a change is announced with a configuration change notification.
    let mut h = net(MRG);
    assert!(h.dev.device_mut().set_link_up(false));
    h.dev.config_changed();
    assert_eq!(h.dev.read(0x106, 2), Some(0));
    assert_eq!(h.ack_irq(), INTERRUPT_CONFIG_CHANGE);
    // Link down: nothing moves, both ways counted as dropped.
    assert!(!h.dev.device_mut().receive(&pkt(60, 1)));
    let head = send(&mut h, &pkt(60, 2));
    h.kick(TRANSMITQ);
    assert_eq!(h.used(TRANSMITQ), Some((u32::from(head), 0)));
    assert!(wire(&h).is_empty());
    assert_eq!((stats(&h).rx_dropped, stats(&h).tx_dropped), (1, 1));
    assert!(h.dev.device_mut().set_link_up(true));
    assert!(h.dev.device_mut().receive(&pkt(60, 1)));
}

#[test]
fn transmit_strips_header() {
    // net: Packet Transmission — each transmitq buffer is a virtio_net_hdr
    // followed by the packet; the device sends the packet. The layout of
    // descriptors is arbitrary (§2.7.4): header split over two descriptors,
    // frame shared with the header's tail, indirect tables.
    let mut h = net(MRG);
    let f = pkt(60, 7);
    let head = send(&mut h, &f);
    let e = h.kick(TRANSMITQ);
    assert_eq!(e.notified, Some(TRANSMITQ));
    assert_eq!(wire(&h), std::slice::from_ref(&f));
    assert_eq!(h.used(TRANSMITQ), Some((u32::from(head), 0)));
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);

    let mut b = tx_header(0, 0);
    let g = pkt(1514, 9);
    b.extend_from_slice(&g);
    let a = h.buf(&b);
    h.add_chain(
        TRANSMITQ,
        &[r(a, 5), r(a + 5, 10), r(a + 15, 1000), r(a + 1015, 511)],
    );
    h.add_indirect(TRANSMITQ, &[r(a, 12), r(a + 12, 1514)]);
    h.kick(TRANSMITQ);
    assert_eq!(wire(&h).len(), 3);
    assert_eq!(wire(&h)[1], g);
    assert_eq!(wire(&h)[2], g);
    let s = stats(&h);
    assert_eq!(
        (s.tx_frames, s.tx_bytes, s.tx_dropped),
        (3, 60 + 2 * 1514, 0)
    );
    // The driver fills num_buffers with zero (it is ignored anyway), and
    // unknown flag bits are ignored ("MUST ignore flag bits that it does
    // not recognize").
    let mut b = NetHeader {
        flags: 0x40,
        num_buffers: 77,
        hdr_len: 14,
        ..NetHeader::default()
    }
    .to_bytes()
    .to_vec();
    b.extend_from_slice(&pkt(64, 3));
    let a = h.buf(&b);
    h.add_chain(TRANSMITQ, &[r(a, b.len() as u32)]);
    h.kick(TRANSMITQ);
    assert_eq!(wire(&h).len(), 4);
}

#[test]
fn transmit_writable_parts_are_ignored() {
    // A writable descriptor after the frame is a driver bug; the frame goes
    // out, nothing is written, used length is 0.
    let mut h = net(MRG);
    let mut b = tx_header(0, 0);
    b.extend_from_slice(&pkt(60, 1));
    let a = h.buf(&b);
    let junk = h.buf(&[0xee; 8]);
    let head = h.add_chain(TRANSMITQ, &[r(a, 72), w(junk, 8)]);
    h.kick(TRANSMITQ);
    assert_eq!(h.used(TRANSMITQ), Some((u32::from(head), 0)));
    assert_eq!(h.read_bytes(junk, 8), [0xee; 8]);
    assert_eq!(wire(&h).len(), 1);
    // Only writable: no header at all -> dropped.
    let head = h.add_chain(TRANSMITQ, &[w(junk, 8)]);
    h.kick(TRANSMITQ);
    assert_eq!(h.used(TRANSMITQ), Some((u32::from(head), 0)));
    assert_eq!(stats(&h).tx_dropped, 1);
}

#[test]
fn transmit_bad_lengths_dropped_and_counted() {
    // Decision: 14..=1518 bytes of frame; shorter than a header or an
    // Ethernet header, or longer than 1514 + VLAN tag: dropped, counted,
    // chain completed with length 0.
    let mut h = net(BASE_FEATURES);
    let cases: &[(usize, bool)] = &[
        (0, false),
        (13, false),
        (14, true),
        (1518, true),
        (1519, false),
        (9000, false),
    ];
    for &(len, ok) in cases {
        let before = wire(&h).len();
        let head = send(&mut h, &pkt(len.max(14), 1)[..len.min(len.max(14))]);
        h.kick(TRANSMITQ);
        assert_eq!(h.used(TRANSMITQ), Some((u32::from(head), 0)), "{len}");
        assert_eq!(wire(&h).len(), before + usize::from(ok), "{len}");
    }
    // Readable part shorter than the 12-byte header.
    let a = h.buf(&[0; 11]);
    h.add_chain(TRANSMITQ, &[r(a, 11)]);
    h.kick(TRANSMITQ);
    let s = stats(&h);
    assert_eq!((s.tx_frames, s.tx_dropped), (2, 5));
    assert_eq!(s.tx_bytes, 14 + 1518);
}

#[test]
fn transmit_offload_requests_dropped() {
    // net: Packet Transmission, driver requirements: without CSUM the
    // driver MUST set flags to zero; without HOST_TSO*/UFO/USO gso_type
    // MUST be GSO_NONE. Such a frame cannot be sent correctly: dropped.
    let mut h = net(MRG);
    for (flags, gso) in [
        (VIRTIO_NET_HDR_F_NEEDS_CSUM, 0u8),
        (0, 1),
        (0, 0x80),
        (VIRTIO_NET_HDR_F_NEEDS_CSUM, 4),
    ] {
        let mut b = tx_header(flags, gso);
        b.extend_from_slice(&pkt(100, 0));
        let a = h.buf(&b);
        let head = h.add_chain(TRANSMITQ, &[r(a, b.len() as u32)]);
        h.kick(TRANSMITQ);
        assert_eq!(h.used(TRANSMITQ), Some((u32::from(head), 0)));
    }
    assert!(wire(&h).is_empty());
    assert_eq!(stats(&h).tx_dropped, 4);
}

#[test]
fn receive_into_single_buffer_without_mrg() {
    // net: Setting Up Receive Buffers — without MRG_RXBUF a packet uses a
    // single buffer and num_buffers is 1 (Processing of Incoming Packets,
    // device requirements); flags 0 and GSO_NONE without GUEST_CSUM.
    let mut h = net(BASE_FEATURES);
    assert!(!h.dev.device().mergeable_rx());
    let (head, b) = post(&mut h, 1526);
    let f = pkt(100, 4);
    assert!(h.dev.device_mut().receive(&f));
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 112)));
    assert_eq!(header_at(&h, b), received_header(1));
    assert_eq!(h.read_bytes(b + 12, 100), f);
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
    // A buffer split over descriptors is one buffer. The spec's 1526-byte
    // buffer holds a 1514-byte frame ...
    let b2 = h.alloc(1526);
    let head = h.add_chain(RECEIVEQ, &[w(b2, 7), w(b2 + 7, 1519)]);
    let g = pkt(1514, 5);
    h.dev.device_mut().receive(&g);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 1526)));
    assert_eq!(header_at(&h, b2), received_header(1));
    assert_eq!(h.read_bytes(b2 + 12, 1514), g);
    // ... but not a VLAN-tagged 1518-byte one: dropped, the buffer kept
    // for the next frame. Linux posts 12 + 1518 = 1530 bytes.
    let (head, b3) = post(&mut h, 1526);
    h.dev.device_mut().receive(&pkt(1518, 6));
    h.dev.device_mut().receive(&pkt(64, 6));
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 76)));
    assert_eq!(h.read_bytes(b3 + 12, 64), pkt(64, 6));
    let (head, b4) = post(&mut h, 1530);
    let g = pkt(1518, 7);
    h.dev.device_mut().receive(&g);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 1530)));
    assert_eq!(h.read_bytes(b4 + 12, 1518), g);
    let s = stats(&h);
    assert_eq!(
        (s.rx_frames, s.rx_bytes, s.rx_dropped),
        (4, 100 + 1514 + 64 + 1518, 1)
    );
}

#[test]
fn receive_into_single_buffer_with_mrg() {
    let mut h = net(MRG);
    assert!(h.dev.device().mergeable_rx());
    let (head, b) = post(&mut h, 2048);
    let f = pkt(1000, 8);
    h.dev.device_mut().receive(&f);
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 1012)));
    assert_eq!(header_at(&h, b), received_header(1));
    assert_eq!(h.read_bytes(b + 12, 1000), f);
    assert_eq!(h.used(RECEIVEQ), None);
}

#[test]
fn receive_across_mergeable_buffers() {
    // net: Processing of Incoming Packets — with MRG_RXBUF num_buffers is
    // the number of buffers the packet (header included) is spread over;
    // all but the last are used completely; only the first starts with a
    // header.
    let mut h = net(MRG);
    let (h1, b1) = post(&mut h, 112);
    let (h2, b2) = post(&mut h, 100);
    let (h3, b3) = post(&mut h, 2000);
    let (h4, _) = post(&mut h, 2000);
    let f = pkt(300, 6);
    h.dev.device_mut().receive(&f);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h1), 112)));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h2), 100)));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h3), 100)));
    assert_eq!(h.used(RECEIVEQ), None);
    assert_eq!(header_at(&h, b1), received_header(3));
    let mut got = h.read_bytes(b1 + 12, 100);
    got.extend(h.read_bytes(b2, 100));
    got.extend(h.read_bytes(b3, 100));
    assert_eq!(got, f);
    // The fourth buffer was never taken: no frame was waiting.
    assert_eq!(h.dev.device().held_rx_buffers(), 0);
    let g = pkt(60, 1);
    h.dev.device_mut().receive(&g);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h4), 72)));

    // Header exactly filling the first buffer; tiny (header-sized) buffers.
    let bufs: Vec<(u16, u64)> = (0..8).map(|_| post(&mut h, 12)).collect();
    let (hl, bl) = post(&mut h, 64);
    let f = pkt(100, 2);
    h.dev.device_mut().receive(&f);
    h.kick(RECEIVEQ);
    for &(head, _) in &bufs {
        assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 12)));
    }
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(hl), 16)));
    assert_eq!(header_at(&h, bufs[0].1), received_header(9));
    let mut got: Vec<u8> = bufs[1..]
        .iter()
        .flat_map(|&(_, b)| h.read_bytes(b, 12))
        .collect();
    got.extend(h.read_bytes(bl, 16));
    assert_eq!(got, f);
}

/// Guest memory that logs every 16-bit store to one address.
struct IdxSpy {
    inner: VecMemory,
    watch: u64,
    log: Vec<u16>,
}

impl GuestMemory for IdxSpy {
    fn base(&self) -> u64 {
        self.inner.base()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        if gpa == self.watch && buf.len() == 2 {
            self.log.push(u16::from_le_bytes([buf[0], buf[1]]));
        }
        self.inner.write(gpa, buf)
    }
}

#[test]
fn mergeable_buffers_published_together() {
    // net: Processing of Incoming Packets, device requirements: "The device
    // MUST use all buffers used by a single receive packet together, such
    // that at least num_buffers are observed by driver as used." The used
    // idx moves once per packet, after all its elements are written.
    let used_idx = Harness::<Dev>::queue_base(RECEIVEQ) + 0x2000 + 2;
    let mem = IdxSpy {
        inner: VecMemory::new(RAM_BASE, RAM_SIZE),
        watch: used_idx,
        log: Vec::new(),
    };
    let mut h = Harness::with_memory(Net::new(MAC, Wire::default()), mem);
    h.init_with(MRG, 16);
    h.mem.log.clear();
    for _ in 0..6 {
        post(&mut h, 200);
    }
    h.dev.device_mut().receive(&pkt(500, 1)); // 3 buffers
    h.dev.device_mut().receive(&pkt(300, 2)); // 2 buffers
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.mem.log, [3, 5]);
}

#[test]
fn receive_waits_for_buffers() {
    // net: Setting Up Receive Buffers — without buffers the frame waits in
    // the device; a receiveq notification (or a poll) delivers it.
    let mut h = net(MRG);
    let f = pkt(80, 3);
    assert!(h.dev.device_mut().receive(&f));
    h.dev.poll(&mut h.mem).unwrap();
    assert!(!h.dev.irq_level());
    assert_eq!(h.dev.device().pending_rx(), 1);
    let (head, b) = post(&mut h, 1536);
    let e = h.kick(RECEIVEQ);
    assert_eq!(e.notified, Some(RECEIVEQ));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 92)));
    assert_eq!(h.read_bytes(b + 12, 80), f);
    assert_eq!(h.dev.device().pending_rx(), 0);
    assert!(h.dev.irq_level());
}

#[test]
fn receive_waits_for_enough_mergeable_buffers() {
    // A packet needing more buffers than posted: the posted ones are held,
    // the packet waits, and completes when the driver adds more.
    let mut h = net(MRG);
    let (h1, b1) = post(&mut h, 100);
    let f = pkt(150, 5);
    h.dev.device_mut().receive(&f);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), None);
    assert_eq!(h.dev.device().held_rx_buffers(), 1);
    let (h2, b2) = post(&mut h, 100);
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h1), 100)));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h2), 62)));
    assert_eq!(header_at(&h, b1), received_header(2));
    let mut got = h.read_bytes(b1 + 12, 88);
    got.extend(h.read_bytes(b2, 62));
    assert_eq!(got, f);
    assert_eq!(h.dev.device().held_rx_buffers(), 0);
}

#[test]
fn frames_queued_before_driver_ok_delivered_when_live() {
    // Buffers posted during initialisation (net: Device Initialization,
    // "Fill the receive queues with buffers") get frames once DRIVER_OK
    // makes the device live; nothing is consumed before (§2.1.2).
    let mut h = Harness::new(Net::new(MAC, Wire::default()));
    assert!(!h.dev.device_mut().receive(&pkt(60, 0)), "no driver yet");
    assert!(h.negotiate(MRG));
    h.setup_queue(RECEIVEQ, 8);
    h.setup_queue(TRANSMITQ, 8);
    let (head, _) = post(&mut h, 1536);
    assert!(h.dev.device_mut().receive(&pkt(60, 0)));
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), None);
    h.driver_ok();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 72)));
    assert_eq!(stats(&h).rx_dropped, 1);
}

#[test]
fn receive_queue_overflow_drops_and_counts() {
    // Decision: at most RX_QUEUE_FRAMES frames wait; more are dropped at
    // once (never blocking the switch) and counted; order is kept.
    let mut h = net(MRG);
    for i in 0..RX_QUEUE_FRAMES {
        assert!(h.dev.device_mut().receive(&pkt(60 + i, i as u8)), "{i}");
    }
    for _ in 0..10 {
        assert!(!h.dev.device_mut().receive(&pkt(60, 0)));
    }
    assert_eq!(stats(&h).rx_dropped, 10);
    let mut delivered = 0;
    while delivered < RX_QUEUE_FRAMES {
        let posted: Vec<(u16, u64)> = (0..16).map(|_| post(&mut h, 1536)).collect();
        h.kick(RECEIVEQ);
        for (head, b) in posted {
            assert_eq!(
                h.used(RECEIVEQ),
                Some((u32::from(head), (72 + delivered) as u32))
            );
            assert_eq!(
                h.read_bytes(b + 12, 60 + delivered),
                pkt(60 + delivered, delivered as u8)
            );
            delivered += 1;
        }
    }
    let s = stats(&h);
    assert_eq!((s.rx_frames, s.rx_dropped), (64, 10));
    assert_eq!(h.dev.device().pending_rx(), 0);
}

#[test]
fn receive_buffer_too_small_without_mrg() {
    // Without MRG_RXBUF the device MUST use a single buffer (net: Setting
    // Up Receive Buffers, device requirements). Decision: a frame that does
    // not fit the next buffer is dropped and the buffer kept for the next
    // frame; a buffer too small for any frame is returned with length 0.
    let mut h = net(BASE_FEATURES);
    let (tiny, _) = post(&mut h, 25);
    let (small, b) = post(&mut h, 100);
    h.dev.device_mut().receive(&pkt(200, 1));
    h.dev.device_mut().receive(&pkt(60, 2));
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(tiny), 0)));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(small), 72)));
    assert_eq!(h.read_bytes(b + 12, 60), pkt(60, 2));
    assert_eq!(h.used(RECEIVEQ), None);
    let s = stats(&h);
    assert_eq!((s.rx_frames, s.rx_dropped), (1, 1));
    assert!(!h.needs_reset());
}

#[test]
fn mergeable_buffers_that_can_never_fit() {
    // With MRG_RXBUF: buffers shorter than a header are returned with
    // length 0 (the driver MUST make them at least that big); a frame that
    // even a full ring of buffers cannot hold is dropped and the held
    // buffers serve the next frame.
    let mut h = Harness::init(Net::new(MAC, Wire::default()), MRG, 2);
    let b = h.alloc(4);
    let head = h.add_chain(RECEIVEQ, &[w(b, 4)]);
    let ro = h.alloc(64);
    let head_ro = h.add_chain(RECEIVEQ, &[r(ro, 64)]);
    h.dev.device_mut().receive(&pkt(60, 0));
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 0)));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head_ro), 0)));
    assert_eq!(h.dev.device().pending_rx(), 1, "still waiting");
    let (hb, _) = post(&mut h, 1536);
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(hb), 72)));
    // Two buffers of 40 bytes (the whole 2-entry ring) cannot hold
    // 12 + 100: that frame is dropped, the next one uses the same buffers.
    let (h1, b1) = post(&mut h, 40);
    let (h2, b2) = post(&mut h, 40);
    h.dev.device_mut().receive(&pkt(100, 1));
    h.dev.device_mut().receive(&pkt(50, 2));
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h1), 40)));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h2), 22)));
    assert_eq!(header_at(&h, b1), received_header(2));
    let mut got = h.read_bytes(b1 + 12, 28);
    got.extend(h.read_bytes(b2, 22));
    assert_eq!(got, pkt(50, 2));
    let s = stats(&h);
    assert_eq!((s.rx_frames, s.rx_dropped), (2, 1));
    assert!(!h.needs_reset());
}

#[test]
fn reset_drops_held_and_queued() {
    let mut h = net(MRG);
    post(&mut h, 50);
    h.dev.device_mut().receive(&pkt(200, 0));
    h.dev.device_mut().receive(&pkt(60, 0));
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.dev.device().held_rx_buffers(), 1);
    h.set_status(0);
    assert_eq!(h.dev.device().held_rx_buffers(), 0);
    assert_eq!(h.dev.device().pending_rx(), 0);
    assert_eq!(stats(&h).rx_dropped, 2);
    // Fresh start works, now without MRG.
    h.init_with(BASE_FEATURES, 8);
    let (head, _) = post(&mut h, 1526);
    h.dev.device_mut().receive(&pkt(60, 0));
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(head), 72)));
}

#[test]
fn disabled_receiveq_forgets_held_buffers() {
    let mut h = net(MRG);
    post(&mut h, 50);
    h.dev.device_mut().receive(&pkt(200, 0));
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.dev.device().held_rx_buffers(), 1);
    h.w(reg::QUEUE_SEL, u32::from(RECEIVEQ));
    h.w(reg::QUEUE_READY, 0);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.dev.device().held_rx_buffers(), 0);
    assert_eq!(h.dev.device().pending_rx(), 1);
}

#[test]
fn transmit_backpressure_with_frame_queue() {
    // A full outbox stops the device taking transmit chains; they stay in
    // the ring until a poll after the host drained the outbox.
    let mut h = Harness::init(Net::new(MAC, FrameQueue::new(2)), MRG, 8);
    for i in 0..5 {
        send(&mut h, &pkt(60, i));
    }
    h.kick(TRANSMITQ);
    let mut n = 0;
    while h.used(TRANSMITQ).is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
    assert_eq!(h.dev.device().backend().len(), 2);
    let mut out = Vec::new();
    while let Some(f) = h.dev.device_mut().backend_mut().pop() {
        out.push(f);
    }
    h.dev.poll(&mut h.mem).unwrap();
    while let Some(f) = h.dev.device_mut().backend_mut().pop() {
        out.push(f);
    }
    h.dev.poll(&mut h.mem).unwrap();
    while let Some(f) = h.dev.device_mut().backend_mut().pop() {
        out.push(f);
    }
    assert_eq!(out, (0..5).map(|i| pkt(60, i)).collect::<Vec<_>>());
    assert_eq!(h.dev.device().backend().dropped(), 0);
    assert_eq!(h.dev.device().stats().tx_dropped, 0);
}

#[test]
fn malformed_transmit_chain_needs_reset() {
    // Like the other devices: a malformed ring (here a `next` loop) fails
    // the device (DEVICE_NEEDS_RESET + config interrupt, §2.1.2); a reset
    // and re-initialisation bring it back.
    let mut h = net(MRG);
    let t = h.queues[usize::from(TRANSMITQ)].desc;
    let a = h.buf(&[0; 80]);
    h.write_desc(t, 0, a, 40, VIRTQ_DESC_F_NEXT, 1);
    h.write_desc(t, 1, a, 40, VIRTQ_DESC_F_NEXT, 0);
    h.publish(TRANSMITQ, 0);
    let e = h.kick(TRANSMITQ);
    assert_eq!(e.error, Some(DeviceError::Queue(QueueError::ChainTooLong)));
    assert!(h.needs_reset());
    assert_ne!(h.r(reg::INTERRUPT_STATUS) & INTERRUPT_CONFIG_CHANGE, 0);
    assert!(wire(&h).is_empty());
    h.init_with(MRG, 16);
    send(&mut h, &pkt(60, 0));
    h.kick(TRANSMITQ);
    assert_eq!(wire(&h).len(), 1);
}

#[test]
fn malformed_receive_chain_needs_reset() {
    let mut h = net(MRG);
    let t = h.queues[usize::from(RECEIVEQ)].desc;
    let end = RAM_BASE + RAM_SIZE as u64;
    h.write_desc(t, 0, end - 8, 64, VIRTQ_DESC_F_WRITE, 0);
    h.publish(RECEIVEQ, 0);
    // No frame waiting: the chain is not even looked at.
    h.kick(RECEIVEQ);
    assert!(!h.needs_reset());
    h.dev.device_mut().receive(&pkt(60, 0));
    h.dev.poll(&mut h.mem).unwrap_err();
    assert!(h.needs_reset());
    assert!(matches!(
        h.dev.last_error(),
        Some(DeviceError::Queue(QueueError::DescriptorOutOfRange { .. }))
    ));
    // Inert until reset.
    h.ack_irq();
    h.dev.poll(&mut h.mem).unwrap();
    assert!(!h.dev.irq_level());
    // A readable-after-writable receive chain also fails the device.
    h.init_with(MRG, 16);
    let b = h.alloc(64);
    h.write_desc(t, 0, b, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    h.write_desc(t, 1, b + 32, 32, 0, 0);
    h.publish(RECEIVEQ, 0);
    h.dev.device_mut().receive(&pkt(60, 0));
    let e = h.kick(RECEIVEQ);
    assert_eq!(
        e.error,
        Some(DeviceError::Queue(QueueError::ReadableAfterWritable))
    );
}

#[test]
fn event_idx_suppresses_receive_interrupts() {
    // §2.7.10 with a net device: used_event far ahead, no interrupt for
    // delivered frames; avail_event published when the ring runs dry.
    let mut h = net(MRG);
    h.set_used_event(RECEIVEQ, 100);
    post(&mut h, 1536);
    h.dev.device_mut().receive(&pkt(60, 0));
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ).map(|u| u.1), Some(72));
    assert!(!h.dev.irq_level());
    h.set_used_event(RECEIVEQ, 1);
    post(&mut h, 1536);
    h.dev.device_mut().receive(&pkt(60, 0));
    h.dev.device_mut().receive(&pkt(60, 0));
    h.dev.poll(&mut h.mem).unwrap();
    assert!(h.dev.irq_level());
    assert_eq!(h.avail_event(RECEIVEQ), 2);
}

/// Frame `seq` of `len` bytes (`len` may be out of range): the sequence
/// number sits in the destination address so even 14-byte frames differ.
fn numbered(seq: u32, len: usize) -> Vec<u8> {
    let s = seq.to_le_bytes();
    let mut f = vec![0x02, s[0], s[1], s[2], s[3], 0x00];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    let mut x = seq.wrapping_mul(2_654_435_761);
    while f.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        f.push(x as u8);
    }
    f.truncate(len);
    f
}

/// A posted receive buffer: its descriptor ids and its segments.
type Posted = (Vec<u16>, Vec<(u64, u32)>);

/// Random well-formed traffic in both directions against a reference
/// model: every frame the guest sees is one the host queued, in order,
/// intact, with a correct header; every frame the guest sends arrives
/// intact; the counters add up. Receive buffers are random sizes, split
/// over 1-3 descriptors (direct or indirect), recycled out of order.
fn random_traffic(features: u64, seed: u64, rounds: usize) {
    const SIZE: u16 = 16;
    const SLOT: u64 = 2048;
    let mrg = features & VIRTIO_NET_F_MRG_RXBUF != 0;
    let mut rng = XorShift(seed);
    let mut h = Harness::init(Net::new(MAC, Wire::default()), features, SIZE);
    let rx_pool = h.alloc(SLOT * u64::from(SIZE) * 3);
    let tables = h.alloc(64 * u64::from(SIZE));
    let tx_pool = h.alloc(SLOT * u64::from(SIZE));
    // Receive descriptors: free list, and what each posted head covers.
    let mut free: Vec<u16> = (0..SIZE).collect();
    let mut posted: std::collections::BTreeMap<u16, Posted> = Default::default();
    let mut expected: std::collections::VecDeque<Vec<u8>> = Default::default();
    let (mut seq, mut offered, mut delivered, mut skipped) = (0u32, 0u64, 0u64, 0u64);
    // A packet being reassembled: bytes so far, buffers still to come.
    let mut partial: Option<(Vec<u8>, u16)> = None;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut tx_slot = 0u64;
    for _ in 0..rounds {
        match rng.below(10) {
            0..=3 => {
                // Host frames, sometimes invalid lengths.
                for _ in 0..rng.below(4) {
                    let len = match rng.below(10) {
                        0 => rng.below(14) as usize,
                        1 => 1519 + rng.below(100) as usize,
                        2 => 1518,
                        3 => 14,
                        _ => 14 + rng.below(1505) as usize,
                    };
                    let f = numbered(seq, len);
                    seq += 1;
                    offered += 1;
                    let ok = h.dev.device_mut().receive(&f);
                    let valid = (14..=1518).contains(&len);
                    if ok {
                        assert!(valid);
                        expected.push_back(f);
                    }
                }
            }
            4..=6 => {
                // Post receive buffers while descriptors are free.
                for _ in 0..rng.below(6) {
                    let nd = 1 + rng.below(3) as usize;
                    let indirect = rng.chance(25);
                    let need = if indirect { 1 } else { nd };
                    if free.len() < need {
                        break;
                    }
                    let ids: Vec<u16> = free.drain(..need).collect();
                    let total = match rng.below(6) {
                        0 => 1 + rng.below(40) as u32,
                        1 => 1530,
                        2 => 1526,
                        _ => 12 + rng.below(2000) as u32,
                    };
                    // Split `total` over nd segments inside this head's area.
                    let area = rx_pool + u64::from(ids[0]) * SLOT * 3;
                    let mut segs = Vec::new();
                    let mut left = total;
                    for k in 0..nd {
                        let len = if k + 1 == nd {
                            left
                        } else {
                            (rng.below(u64::from(left) + 1) as u32).max(1).min(left)
                        };
                        if len == 0 {
                            continue;
                        }
                        let at = area + SLOT * k as u64;
                        segs.push((at, len.min(SLOT as u32)));
                        left -= len;
                    }
                    let table = tables + 64 * u64::from(ids[0]);
                    let head = ids[0];
                    let dq = h.queues[usize::from(RECEIVEQ)].desc;
                    if indirect {
                        for (k, &(a, l)) in segs.iter().enumerate() {
                            let next = k + 1 < segs.len();
                            let flags =
                                VIRTQ_DESC_F_WRITE | if next { VIRTQ_DESC_F_NEXT } else { 0 };
                            h.write_desc(table, k as u16, a, l, flags, (k + 1) as u16);
                        }
                        h.write_desc(
                            dq,
                            head,
                            table,
                            16 * segs.len() as u32,
                            rivet_virtio::queue::VIRTQ_DESC_F_INDIRECT,
                            0,
                        );
                    } else {
                        // Direct: use as many of the ids as segments (a
                        // segment list shorter than the ids returns the
                        // rest to the free list).
                        let used_ids = &ids[..segs.len().max(1)];
                        free.extend_from_slice(&ids[segs.len().max(1)..]);
                        for (k, &(a, l)) in segs.iter().enumerate() {
                            let next = used_ids.get(k + 1).copied();
                            let flags = VIRTQ_DESC_F_WRITE
                                | if next.is_some() { VIRTQ_DESC_F_NEXT } else { 0 };
                            h.write_desc(dq, used_ids[k], a, l, flags, next.unwrap_or(0));
                        }
                        posted.insert(head, (used_ids.to_vec(), segs));
                        h.publish(RECEIVEQ, head);
                        continue;
                    }
                    posted.insert(head, (ids, segs));
                    h.publish(RECEIVEQ, head);
                }
            }
            7 => {
                // Guest frames.
                let n = rng.below(4);
                for _ in 0..n {
                    let len = 14 + rng.below(1505) as usize;
                    let f = numbered(0x8000_0000 | seq, len);
                    seq += 1;
                    let mut b = tx_header(0, 0);
                    b.extend_from_slice(&f);
                    let at = tx_pool + SLOT * (tx_slot % u64::from(SIZE));
                    tx_slot += 1;
                    h.mem.write(at, &b).unwrap();
                    h.add_chain(TRANSMITQ, &[r(at, b.len() as u32)]);
                    sent.push(f);
                }
                h.kick(TRANSMITQ);
            }
            8 => {
                h.kick(RECEIVEQ);
            }
            _ => {
                h.dev.poll(&mut h.mem).unwrap();
            }
        }
        assert!(!h.needs_reset());
        // Driver side: reap used receive buffers.
        while let Some((id, len)) = h.used(RECEIVEQ) {
            let head = id as u16;
            let (ids, segs) = posted.remove(&head).expect("used head was posted");
            free.extend(ids);
            let mut bytes = Vec::new();
            for &(a, l) in &segs {
                bytes.extend(h.read_bytes(a, l as usize));
            }
            assert!(len as usize <= bytes.len());
            bytes.truncate(len as usize);
            let (mut data, more) = match partial.take() {
                Some((mut data, more)) => {
                    assert!(len > 0);
                    data.extend_from_slice(&bytes);
                    (data, more - 1)
                }
                None => {
                    if len == 0 {
                        // A buffer too small to use.
                        continue;
                    }
                    assert!(bytes.len() >= HDR_LEN);
                    let hdr = NetHeader::from_bytes(bytes[..HDR_LEN].try_into().unwrap());
                    assert_eq!((hdr.flags, hdr.gso_type, hdr.hdr_len), (0, 0, 0));
                    assert_eq!((hdr.gso_size, hdr.csum_start, hdr.csum_offset), (0, 0, 0));
                    assert!(hdr.num_buffers >= 1);
                    if !mrg {
                        assert_eq!(hdr.num_buffers, 1);
                    }
                    (bytes[HDR_LEN..].to_vec(), hdr.num_buffers - 1)
                }
            };
            if more > 0 {
                // All but the last buffer are used completely.
                assert_eq!(len as usize, segs.iter().map(|s| s.1 as usize).sum());
                partial = Some((std::mem::take(&mut data), more));
                continue;
            }
            // A complete packet: the next expected frame, possibly after
            // frames the device had to drop.
            loop {
                let e = expected.pop_front().expect("delivered frame was queued");
                if e == data {
                    break;
                }
                skipped += 1;
            }
            delivered += 1;
        }
        if rng.chance(30) {
            h.ack_irq();
        }
    }
    assert!(
        partial.is_none(),
        "a packet's buffers are published together"
    );
    let s = stats(&h);
    assert_eq!(s.rx_frames, delivered);
    let pending = h.dev.device().pending_rx() as u64;
    assert_eq!(s.rx_frames + s.rx_dropped + pending, offered);
    assert!(skipped <= s.rx_dropped);
    assert_eq!(wire(&h), &sent[..]);
    assert_eq!(s.tx_frames, sent.len() as u64);
    assert_eq!(s.tx_dropped, 0);
    eprintln!(
        "mrg={mrg} offered {offered} delivered {delivered} dropped {} (in device {skipped}) sent {}",
        s.rx_dropped,
        sent.len()
    );
    assert!(delivered > 200, "sweep delivered frames: {delivered}");
    if mrg {
        assert!(skipped < delivered, "most frames fit");
    }
}

#[test]
fn random_traffic_mergeable() {
    random_traffic(MRG, 0x6e65_7401, 6000);
}

#[test]
fn random_traffic_single_buffers() {
    random_traffic(BASE_FEATURES, 0x6e65_7402, 6000);
}
