//! virtio-console end to end (§5.3): transmitq output, receiveq input
//! delivery, buffering and emergency write.

mod common;

use common::*;
use rivet_virtio::console::*;
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{reg, INTERRUPT_USED_BUFFER};

#[derive(Default)]
struct Sink(Vec<u8>);

impl ConsoleBackend for Sink {
    fn write(&mut self, data: &[u8]) {
        assert!(data.len() <= TX_CHUNK);
        self.0.extend_from_slice(data);
    }
}

type Con = Console<Sink>;

fn console() -> Harness<Con> {
    Harness::init(Console::new(Sink::default()), MODERN, 8)
}

fn output(h: &Harness<Con>) -> &[u8] {
    &h.dev.device().backend().0
}

#[test]
fn identity_and_features() {
    // §5.3.1 id 3; §5.3.2 two queues for port 0; no device features
    // (§5.3.3) unless emergency write is enabled.
    let mut h = Harness::new(Console::new(Sink::default()));
    assert_eq!(h.r(reg::DEVICE_ID), 3);
    assert_eq!(h.device_features(), VERSION_1 | INDIRECT_DESC | EVENT_IDX);
    for q in 0..2 {
        h.w(reg::QUEUE_SEL, q);
        assert_eq!(h.r(reg::QUEUE_NUM_MAX), 256);
    }
    h.w(reg::QUEUE_SEL, 2);
    assert_eq!(
        h.r(reg::QUEUE_NUM_MAX),
        0,
        "no control queues without MULTIPORT"
    );
    // §5.3.4: cols, rows, max_nr_ports read 0.
    for off in [0x100u64, 0x104, 0x108] {
        assert_eq!(h.dev.read(off, 4), Some(0));
    }
}

#[test]
fn transmit_goes_to_backend() {
    // §5.3.6 step 1: output buffers are placed in the transmitq.
    let mut h = console();
    let a = h.buf(b"hello, ");
    let b = h.buf(b"world\n");
    let head = h.add_chain(TRANSMITQ, &[r(a, 7), r(b, 6)]);
    let e = h.kick(TRANSMITQ);
    assert_eq!(e.notified, Some(TRANSMITQ));
    assert_eq!(output(&h), b"hello, world\n");
    assert_eq!(
        h.used(TRANSMITQ),
        Some((u32::from(head), 0)),
        "nothing written by the device"
    );
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
    // A long buffer goes out in TX_CHUNK pieces, in order.
    let long: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let l = h.buf(&long);
    h.add_indirect(TRANSMITQ, &[r(l, 1000)]);
    h.kick(TRANSMITQ);
    assert_eq!(&output(&h)[13..], &long[..]);
}

#[test]
fn input_delivered_into_receive_buffers() {
    // §5.3.6 step 2: a used receiveq buffer carries input; used len is the
    // number of bytes written.
    let mut h = console();
    let b1 = h.alloc(4);
    let b2 = h.alloc(16);
    let h1 = h.add_chain(RECEIVEQ, &[w(b1, 4)]);
    let h2 = h.add_chain(RECEIVEQ, &[w(b2, 10), w(b2 + 10, 6)]);
    h.kick(RECEIVEQ);
    assert_eq!(
        h.used(RECEIVEQ),
        None,
        "no input yet: buffers stay available"
    );
    assert!(!h.dev.irq_level());
    assert_eq!(h.dev.device_mut().push_input(b"abcdefghij"), 10);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h1), 4)));
    assert_eq!(h.used(RECEIVEQ), Some((u32::from(h2), 6)));
    assert_eq!(h.read_bytes(b1, 4), b"abcd");
    assert_eq!(h.read_bytes(b2, 6), b"efghij");
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
    assert_eq!(h.dev.device().pending_input(), 0);
}

#[test]
fn input_waits_for_buffers() {
    let mut h = console();
    h.dev.device_mut().push_input(b"early");
    h.dev.poll(&mut h.mem).unwrap();
    assert!(!h.dev.irq_level());
    let b = h.alloc(3);
    h.add_chain(RECEIVEQ, &[w(b, 3)]);
    // The receiveq notification itself delivers.
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ).map(|u| u.1), Some(3));
    assert_eq!(h.read_bytes(b, 3), b"ear");
    assert_eq!(h.dev.device().pending_input(), 2);
    let b = h.alloc(8);
    h.add_chain(RECEIVEQ, &[w(b, 8)]);
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ).map(|u| u.1), Some(2));
    assert_eq!(h.read_bytes(b, 2), b"ly");
}

#[test]
fn input_queued_during_setup_delivered_at_driver_ok() {
    // Buffers posted before DRIVER_OK (§3.1.1 step 7 "population of
    // virtqueues") get pending input once the device is live.
    let mut h = Harness::new(Console::new(Sink::default()));
    assert!(h.negotiate(MODERN));
    h.setup_queue(0, 8);
    h.setup_queue(1, 8);
    h.dev.device_mut().push_input(b"hi");
    let b = h.alloc(8);
    h.add_chain(RECEIVEQ, &[w(b, 8)]);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RECEIVEQ), None, "not live yet (§2.1.2)");
    h.driver_ok();
    assert_eq!(h.used(RECEIVEQ).map(|u| u.1), Some(2));
    assert!(h.dev.irq_level());
}

#[test]
fn input_overflow_is_dropped_and_counted() {
    let mut h = console();
    let big = vec![b'x'; INPUT_CAPACITY + 100];
    assert_eq!(h.dev.device_mut().push_input(&big), INPUT_CAPACITY);
    assert_eq!(h.dev.device().dropped_input(), 100);
    // Drain it all through 8 buffers of 512.
    for _ in 0..8 {
        let b = h.alloc(512);
        h.add_chain(RECEIVEQ, &[w(b, 512)]);
    }
    h.kick(RECEIVEQ);
    let mut total = 0;
    while let Some((_, len)) = h.used(RECEIVEQ) {
        total += len;
    }
    assert_eq!(total as usize, INPUT_CAPACITY);
}

#[test]
fn receive_buffer_without_writable_part() {
    // §5.3.6.1: the driver MUST NOT put device-readable buffers in a
    // receiveq; such a chain is returned with length 0 and input stays.
    let mut h = console();
    h.dev.device_mut().push_input(b"z");
    let b = h.alloc(4);
    h.add_chain(RECEIVEQ, &[r(b, 4)]);
    h.kick(RECEIVEQ);
    assert_eq!(h.used(RECEIVEQ).map(|u| u.1), Some(0));
    assert_eq!(h.dev.device().pending_input(), 1);
    assert!(!h.needs_reset());
}

#[test]
fn emergency_write() {
    // §5.3.5.1: emerg_wr may be written at any time, even unconfigured.
    let mut h = Harness::new(Console::new(Sink::default()).with_emergency_write(true));
    assert_ne!(h.device_features() & VIRTIO_CONSOLE_F_EMERG_WRITE, 0);
    h.dev
        .write(0x108, 4, u64::from(b'!') | 0x4100, &mut h.mem)
        .unwrap();
    h.dev.write(0x108, 1, u64::from(b'?'), &mut h.mem).unwrap();
    assert_eq!(output(&h), b"!?");
}

#[test]
fn huge_transmit_buffer_is_truncated() {
    // Decision: at most TX_MAX_PER_CHAIN bytes of one chain reach the
    // backend; the rest is counted as dropped and the chain still completes.
    let mut h = console();
    let n = TX_MAX_PER_CHAIN + 1000;
    let b = h.buf(&vec![b'q'; n as usize]);
    let head = h.add_chain(TRANSMITQ, &[r(b, 1000), r(b + 1000, n - 1000)]);
    h.kick(TRANSMITQ);
    assert_eq!(h.used(TRANSMITQ), Some((u32::from(head), 0)));
    assert_eq!(output(&h).len(), TX_MAX_PER_CHAIN as usize);
    assert_eq!(h.dev.device().dropped_output(), 1000);
}
