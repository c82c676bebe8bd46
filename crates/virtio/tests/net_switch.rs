//! virtio-net devices of three guests wired through the learning switch,
//! the way the hypervisor does it: each device's backend is a bounded
//! outbox (`FrameQueue`); the host drains outboxes into `Switch::input`,
//! whose `out` callback calls the destination device's `Net::receive`, and
//! then polls the devices.

mod common;

use common::*;
use rivet_virtio::net::*;
use rivet_vswitch::{NetworkId, PortId, Switch, Verdict};

const LAN: NetworkId = NetworkId(0);
const DMZ: NetworkId = NetworkId(1);

struct Guest {
    h: Harness<Net<FrameQueue>>,
    port: PortId,
    /// Receive buffers posted: (head, address).
    rx: Vec<(u16, u64)>,
}

impl Guest {
    fn new(sw: &mut Switch, name: &str, net: NetworkId, features: u64) -> Guest {
        let dev = Net::new(mac_for_nic(name, 0), FrameQueue::new(32));
        let mut h = Harness::init(dev, features, 16);
        let rx = (0..8)
            .map(|_| {
                let b = h.alloc(1530);
                (h.add_chain(RECEIVEQ, &[w(b, 1530)]), b)
            })
            .collect();
        h.kick(RECEIVEQ);
        Guest {
            h,
            port: sw.add_port(net).unwrap(),
            rx,
        }
    }

    fn mac(&self) -> [u8; 6] {
        self.h.dev.device().mac()
    }

    fn send(&mut self, frame: &[u8]) {
        let mut b = NetHeader::default().to_bytes().to_vec();
        b.extend_from_slice(frame);
        let a = self.h.buf(&b);
        self.h.add_chain(TRANSMITQ, &[r(a, b.len() as u32)]);
        self.h.kick(TRANSMITQ);
    }

    /// Frames the driver finds in its used receive ring.
    fn inbox(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((id, len)) = self.h.used(RECEIVEQ) {
            let b = self.rx.iter().find(|r| u32::from(r.0) == id).unwrap().1;
            let hdr: [u8; HDR_LEN] = self.h.read_bytes(b, HDR_LEN).try_into().unwrap();
            assert_eq!(NetHeader::from_bytes(&hdr).num_buffers, 1);
            out.push(
                self.h
                    .read_bytes(b + HDR_LEN as u64, len as usize - HDR_LEN),
            );
        }
        out
    }
}

/// Moves frames until no outbox has any (bounded: each round empties every
/// outbox; devices refill them only from their transmit rings).
fn pump(sw: &mut Switch, guests: &mut [Guest]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for _ in 0..16 {
        let mut moved = false;
        for i in 0..guests.len() {
            while let Some(frame) = guests[i].h.dev.device_mut().backend_mut().pop() {
                moved = true;
                let from = guests[i].port;
                let v = sw.input(from, &frame, &mut |to, f| {
                    if let Some(g) = guests.iter_mut().find(|g| g.port == to) {
                        // false = dropped by the device (counted there).
                        g.h.dev.device_mut().receive(f);
                    }
                });
                verdicts.push(v);
            }
        }
        // Deliver received frames, and let devices whose outbox was full
        // take more transmit chains.
        for g in guests.iter_mut() {
            g.h.dev.poll(&mut g.h.mem).unwrap();
        }
        if !moved {
            break;
        }
    }
    verdicts
}

fn eth(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn guests_talk_through_the_switch() {
    let mut sw = Switch::new();
    let mrg = MODERN | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MRG_RXBUF;
    let plain = MODERN | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS;
    let mut g = vec![
        Guest::new(&mut sw, "alpha", LAN, mrg),
        Guest::new(&mut sw, "beta", LAN, plain),
        Guest::new(&mut sw, "gamma", DMZ, mrg),
    ];
    let (a, b) = (g[0].mac(), g[1].mac());
    assert_ne!(a, b);
    // alpha broadcasts (ARP who-has): beta gets it, gamma (other network)
    // does not.
    let who_has = eth([0xff; 6], a, &[1; 46]);
    g[0].send(&who_has);
    let v = pump(&mut sw, &mut g);
    assert_eq!(v, [Verdict::Flooded { copies: 1 }]);
    assert_eq!(g[1].inbox(), [who_has]);
    assert!(g[2].inbox().is_empty());
    assert!(g[0].inbox().is_empty(), "no hairpin");
    // beta answers alpha directly (alpha was learned).
    let is_at = eth(a, b, &[2; 46]);
    g[1].send(&is_at);
    assert_eq!(pump(&mut sw, &mut g), [Verdict::Forwarded(g[0].port)]);
    assert_eq!(g[0].inbox(), [is_at]);
    // A burst larger than the receiver's posted buffers: the rest waits in
    // the device (bounded) and arrives once buffers are reposted.
    for i in 0..12u8 {
        g[0].send(&eth(b, a, &[i; 100]));
    }
    let v = pump(&mut sw, &mut g);
    assert_eq!(v.len(), 12);
    assert!(v.iter().all(|v| *v == Verdict::Forwarded(g[1].port)));
    let first = g[1].inbox();
    assert_eq!(first.len(), 7, "8 buffers, one used by who-has");
    assert_eq!(g[1].h.dev.device().pending_rx(), 5);
    let b1 = g[1].h.alloc(1530 * 5);
    for k in 0..5 {
        let head = g[1].h.add_chain(RECEIVEQ, &[w(b1 + 1530 * k, 1530)]);
        g[1].rx.retain(|r| r.0 != head);
        g[1].rx.push((head, b1 + 1530 * k));
    }
    g[1].h.kick(RECEIVEQ);
    let rest = g[1].inbox();
    assert_eq!(rest.len(), 5);
    let all: Vec<u8> = first.iter().chain(&rest).map(|f| f[14]).collect();
    assert_eq!(all, (0..12).collect::<Vec<u8>>(), "in order");
    // Counters on both sides agree.
    let sa = g[0].h.dev.device().stats();
    let sb = g[1].h.dev.device().stats();
    assert_eq!((sa.tx_frames, sa.rx_frames), (13, 1));
    assert_eq!((sb.tx_frames, sb.rx_frames), (1, 13));
    let pa = sw.port_stats(g[0].port).unwrap();
    assert_eq!((pa.rx_frames, pa.tx_frames, pa.flooded), (13, 1, 1));
    assert_eq!(sw.port_stats(g[2].port).unwrap().tx_frames, 0);
}
