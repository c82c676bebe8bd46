//! virtio-rng end to end (§5.4): filling requests, partial fills, and
//! requests left pending while the entropy source is empty.

mod common;

use common::*;
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{reg, INTERRUPT_USED_BUFFER};
use rivet_virtio::rng::*;

/// Hands out `budget` bytes of a counter sequence, then nothing.
struct Counter {
    next: u8,
    budget: usize,
}

impl EntropySource for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.budget);
        for b in &mut buf[..n] {
            *b = self.next;
            self.next = self.next.wrapping_add(1);
        }
        self.budget -= n;
        n
    }
}

/// Claims more than it was asked for: must not be trusted.
struct Liar;

impl EntropySource for Liar {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        buf.fill(0x5a);
        usize::MAX
    }
}

fn rng(budget: usize) -> Harness<Rng<Counter>> {
    Harness::init(Rng::new(Counter { next: 1, budget }), MODERN, 8)
}

#[test]
fn identity() {
    // §5.4.1 id 4, §5.4.3 no features, §5.4.4 no config.
    let mut h = Harness::new(Rng::new(Counter { next: 0, budget: 0 }));
    assert_eq!(h.r(reg::DEVICE_ID), 4);
    assert_eq!(h.device_features(), VERSION_1 | INDIRECT_DESC | EVENT_IDX);
    assert_eq!(h.dev.read(0x100, 4), Some(0));
}

#[test]
fn fills_request() {
    // §5.4.6: the buffer is filled; used len = bytes written.
    let mut h = rng(1000);
    let b = h.alloc(32);
    let head = h.add_chain(0, &[w(b, 20), w(b + 20, 12)]);
    h.kick(0);
    assert_eq!(h.used(0), Some((u32::from(head), 32)));
    assert_eq!(h.read_bytes(b, 32), (1..=32).collect::<Vec<u8>>());
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
    assert_eq!(h.dev.device().supplied(), 32);
}

#[test]
fn large_request_is_capped() {
    let mut h = rng(usize::MAX);
    let b = h.alloc(3 * MAX_BYTES_PER_REQUEST as u64);
    h.add_chain(0, &[w(b, 3 * MAX_BYTES_PER_REQUEST)]);
    h.kick(0);
    assert_eq!(h.used(0).map(|u| u.1), Some(MAX_BYTES_PER_REQUEST));
}

#[test]
fn partial_fill_completes_with_fewer_bytes() {
    // §5.4.6.2: the device MAY use less than the entire buffer, but at
    // least one byte.
    let mut h = rng(5);
    let b = h.alloc(64);
    h.add_chain(0, &[w(b, 64)]);
    h.kick(0);
    assert_eq!(h.used(0).map(|u| u.1), Some(5));
    assert_eq!(h.read_bytes(b, 6), [1, 2, 3, 4, 5, 0]);
}

#[test]
fn empty_source_leaves_request_pending_until_poll() {
    let mut h = rng(0);
    let b1 = h.alloc(8);
    let b2 = h.alloc(8);
    let h1 = h.add_chain(0, &[w(b1, 8)]);
    let h2 = h.add_chain(0, &[w(b2, 8)]);
    h.kick(0);
    assert_eq!(h.used(0), None);
    assert!(!h.dev.irq_level());
    assert!(h.dev.device().has_pending());
    assert_eq!(
        h.dev.queues()[0].next_avail(),
        1,
        "only one chain taken while starved"
    );
    // Nothing yet: polling changes nothing.
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(0), None);
    // Entropy arrives: the next poll completes both, in order.
    h.dev.device_mut().source_mut().budget = 12;
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(0), Some((u32::from(h1), 8)));
    assert_eq!(h.used(0), Some((u32::from(h2), 4)));
    assert!(h.dev.irq_level());
    assert!(!h.dev.device().has_pending());
}

#[test]
fn reset_drops_pending_request() {
    let mut h = rng(0);
    let b = h.alloc(8);
    h.add_chain(0, &[w(b, 8)]);
    h.kick(0);
    assert!(h.dev.device().has_pending());
    h.set_status(0);
    assert!(!h.dev.device().has_pending());
    h.dev.device_mut().source_mut().budget = 100;
    h.init_with(MODERN, 8);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(
        h.used(0),
        None,
        "the old chain is not completed after reset"
    );
}

#[test]
fn queue_disabled_while_pending() {
    let mut h = rng(0);
    let b = h.alloc(8);
    h.add_chain(0, &[w(b, 8)]);
    h.kick(0);
    h.w(reg::QUEUE_SEL, 0);
    h.w(reg::QUEUE_READY, 0);
    h.dev.device_mut().source_mut().budget = 100;
    h.dev.poll(&mut h.mem).unwrap();
    assert!(!h.dev.device().has_pending());
    assert!(!h.needs_reset());
}

#[test]
fn readable_only_request_returns_zero() {
    // §5.4.6.1: the driver MUST NOT place device-readable buffers.
    let mut h = rng(100);
    let b = h.buf(&[9; 8]);
    h.add_chain(0, &[r(b, 8)]);
    h.kick(0);
    assert_eq!(h.used(0).map(|u| u.1), Some(0));
    assert_eq!(h.read_bytes(b, 8), [9; 8]);
}

#[test]
fn lying_source_is_clamped() {
    let mut h = Harness::init(Rng::new(Liar), MODERN, 8);
    let b = h.alloc(300);
    let guard = h.alloc(16);
    h.mem_fill(guard, 16, 0xee);
    h.add_chain(0, &[w(b, 300)]);
    h.kick(0);
    assert_eq!(h.used(0).map(|u| u.1), Some(300));
    assert_eq!(h.read_bytes(guard, 16), [0xee; 16]);
}

trait Fill {
    fn mem_fill(&mut self, at: u64, len: usize, v: u8);
}
impl<D: rivet_virtio::VirtioDevice> Fill for Harness<D> {
    fn mem_fill(&mut self, at: u64, len: usize, v: u8) {
        use rivet_guest_mem::GuestMemory;
        self.mem.write(at, &vec![v; len]).unwrap();
    }
}
