//! virtio-mmio transport behaviour (§4.2), device status (§2.1), feature
//! negotiation (§2.2, §3.1.1, §6) and notifications, driven through the
//! register file with a probe device model.

mod common;

use common::*;
use rivet_guest_mem::GuestMemory;
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::mmio::{
    reg, INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER, MMIO_SIZE, VENDOR_ID,
};
use rivet_virtio::status::*;
use rivet_virtio::{DeviceError, NotifyResult, Queue, QueueError, VirtioDevice};

/// A device model that records what the transport asks of it and completes
/// every chain with used length 0.
#[derive(Default)]
struct Probe {
    acked: Option<u64>,
    resets: u32,
    notifies: Vec<u16>,
    polls: u32,
    config: [u8; 8],
    fail_next: bool,
    change_config_next: bool,
}

const PROBE_ID: u32 = 0x42;
const PROBE_FEATURES: u64 = 1 | (1 << 41) | (1 << 30); // bit 30 is not device-specific

impl VirtioDevice for Probe {
    fn device_id(&self) -> u32 {
        PROBE_ID
    }
    fn features(&self) -> u64 {
        PROBE_FEATURES
    }
    fn num_queues(&self) -> u16 {
        2
    }
    fn queue_max(&self, q: u16) -> u16 {
        if q == 0 {
            16
        } else {
            100
        }
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        rivet_virtio::read_config_bytes(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = self.config.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
        true
    }
    fn ack_features(&mut self, features: u64) {
        self.acked = Some(features);
    }
    fn notify(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        self.notifies.push(queue);
        if self.fail_next {
            self.fail_next = false;
            return Err(DeviceError::Queue(QueueError::ChainTooLong));
        }
        let q = &mut queues[usize::from(queue)];
        let mut used = false;
        while let Some(c) = q.pop(mem)? {
            q.push_used(mem, c.head(), 0)?;
            used = true;
        }
        let config_changed = std::mem::take(&mut self.change_config_next);
        Ok(NotifyResult {
            used_buffers: used,
            config_changed,
        })
    }
    fn poll(
        &mut self,
        _queues: &mut [Queue],
        _mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        self.polls += 1;
        Ok(NotifyResult::default())
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
}

fn probe() -> Harness<Probe> {
    Harness::new(Probe::default())
}

#[test]
fn identification_registers() {
    // §4.2.2.1: MagicValue 0x74726976 ("virt"), Version 2, DeviceID,
    // VendorID.
    let h = probe();
    assert_eq!(h.r(reg::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(h.r(reg::VERSION), 2);
    assert_eq!(h.r(reg::DEVICE_ID), PROBE_ID);
    assert_eq!(h.r(reg::VENDOR_ID), VENDOR_ID);
    assert_eq!(&VENDOR_ID.to_le_bytes(), b"RIVT");
}

#[test]
fn register_access_widths() {
    // §4.2.2.2: registers are 32-bit aligned accesses only; config space
    // 8/16/32-bit naturally aligned.
    let mut h = probe();
    for size in [1u8, 2, 8, 3, 0] {
        assert_eq!(h.dev.read(reg::MAGIC_VALUE, size), None, "size {size}");
        assert_eq!(h.dev.write(reg::STATUS, size, 1, &mut h.mem), None);
    }
    assert_eq!(h.dev.read(reg::MAGIC_VALUE + 2, 4), None);
    assert_eq!(h.dev.write(reg::STATUS + 1, 4, 1, &mut h.mem), None);
    assert_eq!(h.status(), 0, "rejected writes have no effect");
    // Config space.
    h.dev.device_mut().config = [1, 2, 3, 4, 5, 6, 7, 8];
    assert_eq!(h.dev.read(0x100, 1), Some(1));
    assert_eq!(h.dev.read(0x101, 1), Some(2));
    assert_eq!(h.dev.read(0x102, 2), Some(0x0403));
    assert_eq!(h.dev.read(0x104, 4), Some(0x0807_0605));
    assert_eq!(h.dev.read(0x101, 2), None);
    assert_eq!(h.dev.read(0x102, 4), None);
    assert_eq!(h.dev.read(0x100, 8), None);
    assert_eq!(h.dev.read(0x108, 4), Some(0), "past the layout reads 0");
    assert_eq!(h.dev.read(MMIO_SIZE - 4, 4), Some(0));
    // Outside the window.
    assert_eq!(h.dev.read(MMIO_SIZE, 4), None);
    assert_eq!(h.dev.read(u64::MAX - 3, 4), None);
    assert_eq!(h.dev.write(MMIO_SIZE, 1, 0, &mut h.mem), None);
    // Write-only and reserved registers read 0; read-only ignore writes.
    for off in [
        reg::QUEUE_NOTIFY,
        reg::INTERRUPT_ACK,
        reg::DRIVER_FEATURES,
        0x028,
        0x0f8,
    ] {
        assert_eq!(h.dev.read(off, 4), Some(0), "{off:#x}");
    }
    h.w(reg::MAGIC_VALUE, 0);
    h.w(reg::INTERRUPT_STATUS, 3);
    assert_eq!(h.r(reg::MAGIC_VALUE), 0x7472_6976);
    assert!(!h.dev.irq_level());
}

#[test]
fn shared_memory_and_queue_reset_registers() {
    // §4.2.2: a non-existent shared memory region has length -1 and base
    // 0xffffffffffffffff. VIRTIO_F_RING_RESET is not offered: QueueReset 0.
    let mut h = probe();
    h.w(reg::SHM_SEL, 0);
    for off in [
        reg::SHM_LEN_LOW,
        reg::SHM_LEN_HIGH,
        reg::SHM_BASE_LOW,
        reg::SHM_BASE_HIGH,
    ] {
        assert_eq!(h.r(off), u32::MAX);
    }
    assert_eq!(h.r(reg::QUEUE_RESET), 0);
    h.w(reg::QUEUE_RESET, 1);
    assert_eq!(h.r(reg::QUEUE_RESET), 0);
}

#[test]
fn full_initialisation_sequence() {
    // §3.1.1 and §4.2.3.1/§4.2.3.2 step by step.
    let mut h = probe();
    assert!(h.negotiate(MODERN | 1 | (1 << 41)));
    let expected = VERSION_1 | INDIRECT_DESC | EVENT_IDX | 1 | (1 << 41);
    assert_eq!(h.dev.negotiated_features(), expected);
    assert_eq!(h.dev.device().acked, Some(expected));
    // Queue 0: max 16; queue 1: 100 rounded down to 64; queue 2 absent.
    h.w(reg::QUEUE_SEL, 0);
    assert_eq!(h.r(reg::QUEUE_NUM_MAX), 16);
    h.w(reg::QUEUE_SEL, 1);
    assert_eq!(h.r(reg::QUEUE_NUM_MAX), 64);
    h.w(reg::QUEUE_SEL, 2);
    assert_eq!(h.r(reg::QUEUE_NUM_MAX), 0);
    assert_eq!(h.r(reg::QUEUE_READY), 0);
    h.setup_queue(0, 16);
    h.setup_queue(1, 8);
    assert!(h
        .dev
        .queues()
        .iter()
        .all(|q| q.ready() && q.event_idx() && q.indirect()));
    let e = h.driver_ok();
    assert!(e.driver_ok);
    assert_eq!(h.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(h.dev.device().polls, 1, "DRIVER_OK runs one poll");
    // A request goes through and raises a used-buffer interrupt.
    let b = h.alloc(8);
    let head = h.add_chain(0, &[w(b, 8)]);
    let e = h.kick(0);
    assert_eq!(e.notified, Some(0));
    assert_eq!(h.used(0), Some((u32::from(head), 0)));
    assert!(h.dev.irq_level());
    assert_eq!(h.ack_irq(), INTERRUPT_USED_BUFFER);
}

#[test]
fn device_features_offered() {
    // §6: the device MUST offer VERSION_1; transport offers INDIRECT_DESC
    // and EVENT_IDX; the device's non-device-specific bit 30 is masked.
    let mut h = probe();
    let f = h.device_features();
    assert_eq!(f, VERSION_1 | INDIRECT_DESC | EVENT_IDX | 1 | (1 << 41));
    h.w(reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(h.r(reg::DEVICE_FEATURES), 0);
    h.w(reg::DEVICE_FEATURES_SEL, u32::MAX);
    assert_eq!(h.r(reg::DEVICE_FEATURES), 0);
}

#[test]
fn legacy_driver_is_refused() {
    // §3.1.1 step 6 + §2.2.3 (legacy note)/§6: a driver that does not accept VERSION_1 is
    // legacy; this device is not transitional, so FEATURES_OK does not
    // stick, and DRIVER_OK can never be set.
    let mut h = probe();
    assert!(!h.negotiate(INDIRECT_DESC | 1));
    assert_eq!(h.status(), ACKNOWLEDGE | DRIVER);
    assert_eq!(h.dev.device().acked, None);
    h.set_status(ACKNOWLEDGE | DRIVER | DRIVER_OK);
    assert_eq!(h.status() & DRIVER_OK, 0);
    // A legacy driver that skips FEATURES_OK entirely (§3.1.2) gets nowhere
    // either.
    let mut h = probe();
    h.set_status(ACKNOWLEDGE);
    h.set_status(ACKNOWLEDGE | DRIVER);
    h.write_driver_features(1);
    h.set_status(ACKNOWLEDGE | DRIVER | DRIVER_OK);
    assert_eq!(h.status(), ACKNOWLEDGE | DRIVER);
    assert!(!h.dev.is_live());
}

#[test]
fn features_not_offered_are_refused() {
    // §2.2.1: the driver MUST NOT accept a feature the device did not offer;
    // the device fails FEATURES_OK (§2.2.2 "otherwise it MUST fail").
    let mut h = probe();
    h.set_status(ACKNOWLEDGE | DRIVER);
    h.write_driver_features(VERSION_1 | (1 << 5));
    h.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(h.status() & FEATURES_OK, 0);
    // Bit 30 was offered by the model but masked by the transport.
    h.write_driver_features(VERSION_1 | (1 << 30));
    h.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(h.status() & FEATURES_OK, 0);
    // Anything in feature word 2 and up was never offered.
    h.write_driver_features(VERSION_1);
    h.w(reg::DRIVER_FEATURES_SEL, 2);
    h.w(reg::DRIVER_FEATURES, 1);
    h.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(h.status() & FEATURES_OK, 0);
    // A reset clears the bad selection; a valid subset is then accepted
    // (§2.2.2 SHOULD NOT fail re-negotiation after reset).
    assert!(h.negotiate(VERSION_1));
    assert_eq!(h.dev.negotiated_features(), VERSION_1);
}

#[test]
fn driver_features_frozen_after_features_ok() {
    // §3.1.1 step 5: no new feature bits after FEATURES_OK.
    let mut h = probe();
    assert!(h.negotiate(VERSION_1));
    h.write_driver_features(VERSION_1 | EVENT_IDX);
    assert_eq!(h.dev.negotiated_features(), VERSION_1);
    h.setup_queue(0, 4);
    assert!(!h.dev.queues()[0].event_idx());
}

#[test]
fn status_bits_follow_the_sequence() {
    // §2.1: bits are set in order; the driver MUST NOT clear bits.
    let mut h = probe();
    h.set_status(DRIVER);
    assert_eq!(h.status(), 0, "DRIVER without ACKNOWLEDGE");
    h.set_status(ACKNOWLEDGE | FEATURES_OK);
    assert_eq!(h.status(), ACKNOWLEDGE, "FEATURES_OK without DRIVER");
    h.write_driver_features(VERSION_1);
    h.set_status(ACKNOWLEDGE | DRIVER | DRIVER_OK);
    assert_eq!(
        h.status(),
        ACKNOWLEDGE | DRIVER,
        "DRIVER_OK without FEATURES_OK"
    );
    // One write may set several bits in order.
    h.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(h.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    // Clearing is ignored; device-owned and unsupported bits cannot be set.
    h.set_status(ACKNOWLEDGE);
    assert_eq!(h.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    h.set_status(ACKNOWLEDGE | DEVICE_NEEDS_RESET | SUSPEND | 32 | 0xffff_ff00);
    assert_eq!(h.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert!(h.dev.is_live());
    // FAILED is always accepted and stops queue processing.
    h.set_status(FAILED);
    assert_ne!(h.status() & FAILED, 0);
    assert!(!h.dev.is_live());
}

#[test]
fn failed_device_ignores_notifications() {
    let mut h = Harness::init(Probe::default(), MODERN, 4);
    let s = h.status();
    h.set_status(s | FAILED);
    let b = h.alloc(4);
    h.add_chain(0, &[w(b, 4)]);
    assert_eq!(h.kick(0).notified, None);
    assert!(h.dev.device().notifies.is_empty());
    assert_eq!(h.used(0), None);
}

#[test]
fn reset_clears_everything() {
    // §2.4.1 / §4.2.2.1: reset reinitialises status to 0 and clears
    // InterruptStatus and every QueueReady.
    let mut h = Harness::init(Probe::default(), MODERN, 4);
    let b = h.alloc(4);
    h.add_chain(0, &[w(b, 4)]);
    h.kick(0);
    assert!(h.dev.irq_level());
    h.w(reg::QUEUE_SEL, 1);
    let e = h.set_status(0);
    assert!(e.reset);
    assert_eq!(h.status(), 0);
    assert_eq!(h.r(reg::INTERRUPT_STATUS), 0);
    assert!(!h.dev.irq_level());
    assert_eq!(h.dev.negotiated_features(), 0);
    assert_eq!(
        h.dev.device().resets,
        2,
        "negotiate() reset once, then this one"
    );
    for q in 0..2 {
        h.w(reg::QUEUE_SEL, q);
        assert_eq!(h.r(reg::QUEUE_READY), 0);
    }
    assert!(h
        .dev
        .queues()
        .iter()
        .all(|q| !q.event_idx() && q.desc_table() == 0));
    // And the device can be brought up again.
    h.init_with(MODERN, 4);
    let b = h.alloc(4);
    let head = h.add_chain(0, &[w(b, 4)]);
    h.kick(0);
    assert_eq!(h.used(0), Some((u32::from(head), 0)));
}

#[test]
fn queue_registers_locked_while_ready_or_live() {
    // §4.2.2.2: when QueueReady is not zero the driver MUST NOT access
    // QueueSize or the address registers; the device ignores such writes.
    let mut h = probe();
    assert!(h.negotiate(MODERN));
    h.setup_queue(0, 8);
    h.w(reg::QUEUE_SEL, 0);
    h.w(reg::QUEUE_NUM, 4);
    h.w(reg::QUEUE_DESC_LOW, 0x1230);
    h.w(reg::QUEUE_DRIVER_HIGH, 1);
    h.w(reg::QUEUE_DEVICE_LOW, 0);
    let q = &h.dev.queues()[0];
    assert_eq!(
        (q.size(), q.desc_table()),
        (8, Harness::<Probe>::queue_base(0))
    );
    assert_eq!(q.avail_ring() >> 32, 0);
    assert_ne!(q.used_ring(), 0);
    // After DRIVER_OK a disabled queue cannot be (re)configured either.
    h.driver_ok();
    h.w(reg::QUEUE_SEL, 1);
    h.w(reg::QUEUE_NUM, 4);
    h.w(reg::QUEUE_DESC_LOW, 0x1230);
    h.w(reg::QUEUE_READY, 1);
    assert_eq!(h.r(reg::QUEUE_READY), 0);
    assert_eq!(h.dev.queues()[1].desc_table(), 0);
    // Writes to a non-existent queue are ignored, reads are 0.
    h.w(reg::QUEUE_SEL, 7);
    h.w(reg::QUEUE_READY, 1);
    assert_eq!(h.r(reg::QUEUE_READY), 0);
    assert!(!h.needs_reset());
}

#[test]
fn queue_ready_validates_the_rings() {
    // §2.7: queue size a power of 2 <= QueueSizeMax (§4.2.2.2), parts
    // aligned and inside RAM. An invalid queue fails the device.
    for (name, size, desc) in [
        ("size not power of two", 6u16, RAM_BASE + 0x1000),
        ("size above max", 32, RAM_BASE + 0x1000),
        ("size zero", 0, RAM_BASE + 0x1000),
        ("misaligned table", 8, RAM_BASE + 0x1008),
        ("table outside RAM", 8, 0x1000),
        ("table wraps", 8, u64::MAX - 15),
    ] {
        let mut h = probe();
        assert!(h.negotiate(MODERN));
        h.w(reg::QUEUE_SEL, 0);
        h.w(reg::QUEUE_NUM, u32::from(size));
        h.w(reg::QUEUE_DESC_LOW, desc as u32);
        h.w(reg::QUEUE_DESC_HIGH, (desc >> 32) as u32);
        h.w(reg::QUEUE_DRIVER_LOW, (RAM_BASE + 0x2000) as u32);
        h.w(reg::QUEUE_DEVICE_LOW, (RAM_BASE + 0x3000) as u32);
        let e = h.w(reg::QUEUE_READY, 1);
        assert!(matches!(e.error, Some(DeviceError::Queue(_))), "{name}");
        assert_eq!(h.r(reg::QUEUE_READY), 0, "{name}");
        assert!(h.needs_reset(), "{name}");
        // Not yet DRIVER_OK: no interrupt; setting DRIVER_OK raises the
        // configuration change notification (§2.1.2).
        assert!(!h.dev.irq_level());
        h.driver_ok();
        assert_eq!(
            h.r(reg::INTERRUPT_STATUS),
            INTERRUPT_CONFIG_CHANGE,
            "{name}"
        );
    }
    // A QueueSize write that does not fit 16 bits is invalid too.
    let mut h = probe();
    assert!(h.negotiate(MODERN));
    h.w(reg::QUEUE_SEL, 0);
    h.w(reg::QUEUE_NUM, 0x1_0008);
    h.w(reg::QUEUE_DESC_LOW, (RAM_BASE + 0x1000) as u32);
    h.w(reg::QUEUE_DRIVER_LOW, (RAM_BASE + 0x2000) as u32);
    h.w(reg::QUEUE_DEVICE_LOW, (RAM_BASE + 0x3000) as u32);
    assert!(h.w(reg::QUEUE_READY, 1).error.is_some());
}

#[test]
fn queue_ready_zero_stops_the_queue() {
    // §4.2.2.2 "To stop using the queue the driver MUST write zero".
    let mut h = Harness::init(Probe::default(), MODERN, 4);
    h.w(reg::QUEUE_SEL, 0);
    h.w(reg::QUEUE_READY, 0);
    assert_eq!(h.r(reg::QUEUE_READY), 0);
    let b = h.alloc(4);
    h.add_chain(0, &[w(b, 4)]);
    assert_eq!(
        h.kick(0).notified,
        None,
        "§4.2.2.1: no access when QueueReady is 0"
    );
    assert_eq!(h.used(0), None);
}

#[test]
fn notifications_before_driver_ok_are_ignored() {
    // §2.1.2: the device MUST NOT consume buffers before DRIVER_OK.
    let mut h = probe();
    assert!(h.negotiate(MODERN));
    h.setup_queue(0, 4);
    let b = h.alloc(4);
    h.add_chain(0, &[w(b, 4)]);
    assert_eq!(h.kick(0).notified, None);
    assert!(h.dev.device().notifies.is_empty());
    assert_eq!(h.dev.poll(&mut h.mem), Ok(()));
    assert_eq!(h.dev.device().polls, 0);
    // Bad queue indices are ignored once live.
    h.driver_ok();
    for v in [2u32, 0xffff, 0x1_0000, u32::MAX] {
        assert_eq!(h.kick_raw(v).notified, None);
    }
    assert!(h.dev.device().notifies.is_empty());
}

trait KickRaw {
    fn kick_raw(&mut self, v: u32) -> rivet_virtio::WriteEffect;
}
impl KickRaw for Harness<Probe> {
    fn kick_raw(&mut self, v: u32) -> rivet_virtio::WriteEffect {
        self.w(reg::QUEUE_NOTIFY, v)
    }
}

#[test]
fn device_error_sets_needs_reset_and_config_interrupt() {
    // §2.1.2: DEVICE_NEEDS_RESET, then (DRIVER_OK set) a configuration
    // change notification; §4.2.3.4 InterruptStatus bit 1.
    let mut h = Harness::init(Probe::default(), MODERN, 4);
    h.dev.device_mut().fail_next = true;
    let e = h.kick(0);
    assert_eq!(e.error, Some(DeviceError::Queue(QueueError::ChainTooLong)));
    assert!(h.needs_reset());
    assert_eq!(
        h.dev.last_error(),
        Some(DeviceError::Queue(QueueError::ChainTooLong))
    );
    assert_eq!(
        h.r(reg::INTERRUPT_STATUS) & INTERRUPT_CONFIG_CHANGE,
        INTERRUPT_CONFIG_CHANGE
    );
    // The failed device ignores further notifications and polls.
    h.ack_irq();
    h.kick(0);
    assert_eq!(h.dev.device().notifies.len(), 1);
    let polls = h.dev.device().polls;
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.dev.device().polls, polls);
    // The driver writing status back with 0x40 does not clear it, a reset
    // does.
    let s = h.status();
    h.set_status(s);
    assert!(h.needs_reset());
    h.set_status(0);
    assert!(!h.needs_reset());
    assert_eq!(h.dev.last_error(), None);
}

#[test]
fn interrupt_ack_clears_only_acked_bits() {
    // §4.2.2.1: bits stay set until acknowledged; the line is level.
    let mut h = Harness::init(Probe::default(), MODERN, 4);
    h.dev.device_mut().change_config_next = true;
    let b = h.alloc(4);
    h.add_chain(0, &[w(b, 4)]);
    h.kick(0);
    assert_eq!(
        h.r(reg::INTERRUPT_STATUS),
        INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE
    );
    h.w(reg::INTERRUPT_ACK, INTERRUPT_USED_BUFFER);
    assert!(h.dev.irq_level());
    assert_eq!(h.r(reg::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
    h.w(reg::INTERRUPT_ACK, 0xffff_fffc);
    assert!(h.dev.irq_level());
    h.w(reg::INTERRUPT_ACK, INTERRUPT_CONFIG_CHANGE);
    assert!(!h.dev.irq_level());
}

#[test]
fn config_generation_and_config_writes() {
    // §2.5 / §4.2.2: ConfigGeneration changes whenever the configuration
    // may have changed; a host change raises InterruptStatus bit 1 only
    // once DRIVER_OK is set.
    let mut h = probe();
    let g0 = h.r(reg::CONFIG_GENERATION);
    h.dev.config_changed();
    let g1 = h.r(reg::CONFIG_GENERATION);
    assert_ne!(g0, g1);
    assert!(!h.dev.irq_level(), "no notification before DRIVER_OK");
    // A driver write that changes the layout bumps the generation too.
    h.dev.write(0x102, 2, 0xbeef, &mut h.mem).unwrap();
    assert_eq!(h.dev.read(0x102, 2), Some(0xbeef));
    assert_eq!(h.dev.read(0x100, 4), Some(0xbeef_0000));
    let g2 = h.r(reg::CONFIG_GENERATION);
    assert_ne!(g1, g2);
    assert_eq!(h.dev.write(0x103, 2, 0, &mut h.mem), None, "misaligned");
    assert_eq!(h.dev.write(0x100, 8, 0, &mut h.mem), None);
    h.init_with(MODERN, 4);
    assert_eq!(
        h.r(reg::CONFIG_GENERATION),
        g2,
        "reset keeps the generation counting"
    );
    h.dev.config_changed();
    assert_eq!(h.r(reg::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
    assert_ne!(h.r(reg::CONFIG_GENERATION), g2);
    // Device-initiated changes (NotifyResult::config_changed) likewise.
    h.ack_irq();
    h.dev.device_mut().change_config_next = true;
    let g3 = h.r(reg::CONFIG_GENERATION);
    h.kick(0);
    assert_ne!(h.r(reg::CONFIG_GENERATION), g3);
    assert_eq!(h.r(reg::INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
}

#[test]
fn host_reset_and_box_dyn_device() {
    // The integrator may hold heterogeneous devices as Box<dyn VirtioDevice>.
    let dev: Box<dyn VirtioDevice> = Box::new(Probe::default());
    let mut h = Harness::init(dev, MODERN, 4);
    assert_eq!(h.r(reg::DEVICE_ID), PROBE_ID);
    let b = h.alloc(4);
    let head = h.add_chain(1, &[w(b, 4)]);
    h.kick(1);
    assert_eq!(h.used(1), Some((u32::from(head), 0)));
    h.dev.reset();
    assert_eq!(h.status(), 0);
    assert!(!h.dev.irq_level());
}
