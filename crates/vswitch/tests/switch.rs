//! The learning switch through its public API: learning, flooding,
//! isolation, no hairpin, bounded tables, moves, counters, and a random
//! sweep checking the invariants on every frame.

use rivet_vswitch::*;

const LAN: NetworkId = NetworkId(1);
const DMZ: NetworkId = NetworkId(2);

fn mac(n: u8) -> Mac {
    [0x02, 0, 0, 0, 0, n]
}

fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(len.max(14), 0xab);
    f
}

/// Runs one frame through the switch; returns the verdict and the ports
/// it went to.
fn send(sw: &mut Switch, port: PortId, f: &[u8]) -> (Verdict, Vec<PortId>) {
    let mut outs = Vec::new();
    let v = sw.input(port, f, &mut |p, g| {
        assert_eq!(g, f, "frames are passed through untouched");
        outs.push(p);
    });
    (v, outs)
}

fn lan3() -> (Switch, [PortId; 3]) {
    let mut sw = Switch::new();
    let ports = [
        sw.add_port(LAN).unwrap(),
        sw.add_port(LAN).unwrap(),
        sw.add_port(LAN).unwrap(),
    ];
    (sw, ports)
}

#[test]
fn ports_and_networks() {
    let mut sw = Switch::new();
    let a = sw.add_port(LAN).unwrap();
    let u = sw.add_uplink(DMZ).unwrap();
    let b = sw.add_port(LAN).unwrap();
    assert_eq!((a, u, b), (PortId(0), PortId(1), PortId(2)));
    assert_eq!(
        sw.port_info(u),
        Some(PortInfo {
            network: DMZ,
            uplink: true
        })
    );
    assert_eq!(sw.port_info(a).map(|i| i.uplink), Some(false));
    assert_eq!(sw.port_info(PortId(3)), None);
    assert_eq!(sw.port_stats(PortId(3)), None);
    assert_eq!(sw.network_ports(LAN), &[a, b]);
    assert_eq!(sw.network_ports(NetworkId(9)), &[]);
    assert_eq!(sw.ports().count(), 3);
    assert_eq!(sw.port_count(), 3);
}

#[test]
fn port_count_is_bounded() {
    let mut sw = Switch::new();
    for i in 0..MAX_PORTS {
        assert_eq!(
            sw.add_port(NetworkId((i % 7) as u16)),
            Some(PortId(i as u16))
        );
    }
    assert_eq!(sw.add_port(LAN), None);
    assert_eq!(sw.add_uplink(LAN), None);
}

#[test]
fn learning_then_unicast() {
    // A → B unknown: flooded to B and C; the reply B → A goes to A alone
    // (A was learned); then A → B goes to B alone.
    let (mut sw, [a, b, c]) = lan3();
    let (v, outs) = send(&mut sw, a, &frame(mac(2), mac(1), 60));
    assert_eq!(v, Verdict::Flooded { copies: 2 });
    assert_eq!(outs, [b, c]);
    assert_eq!(sw.lookup(LAN, &mac(1)), Some(a));
    let (v, outs) = send(&mut sw, b, &frame(mac(1), mac(2), 60));
    assert_eq!(v, Verdict::Forwarded(a));
    assert_eq!(outs, [a]);
    let (v, outs) = send(&mut sw, a, &frame(mac(2), mac(1), 60));
    assert_eq!(v, Verdict::Forwarded(b));
    assert_eq!(outs, [b]);
    assert_eq!(sw.table_len(LAN), 2);
    assert_eq!(sw.stats().learned, 2);
    let t: Vec<(Mac, PortId)> = sw.table(LAN).collect();
    assert_eq!(t, [(mac(1), a), (mac(2), b)]);
}

#[test]
fn broadcast_and_multicast_flood() {
    let (mut sw, [a, b, c]) = lan3();
    send(&mut sw, b, &frame(mac(2), mac(2), 60)); // learn B
    for dst in [
        BROADCAST,
        [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb],
        [0x33, 0x33, 0, 0, 0, 1],
    ] {
        let (v, outs) = send(&mut sw, a, &frame(dst, mac(1), 60));
        assert_eq!(v, Verdict::Flooded { copies: 2 });
        assert_eq!(outs, [b, c]);
    }
    // A group address is never learned (it cannot be a source).
    let (v, outs) = send(&mut sw, c, &frame(mac(1), BROADCAST, 60));
    assert_eq!(v, Verdict::Dropped(DropReason::MulticastSource));
    assert!(outs.is_empty());
    assert_eq!(sw.lookup(LAN, &BROADCAST), None);
}

#[test]
fn networks_are_isolated() {
    // Two networks on one switch: broadcasts, unknown unicast and learned
    // unicast stay inside their network; the same MAC may exist in both.
    let mut sw = Switch::new();
    let l1 = sw.add_port(LAN).unwrap();
    let d1 = sw.add_port(DMZ).unwrap();
    let l2 = sw.add_port(LAN).unwrap();
    let d2 = sw.add_uplink(DMZ).unwrap();
    let (_, outs) = send(&mut sw, l1, &frame(BROADCAST, mac(1), 60));
    assert_eq!(outs, [l2]);
    let (_, outs) = send(&mut sw, d1, &frame(BROADCAST, mac(3), 60));
    assert_eq!(outs, [d2]);
    // mac(3) is known in DMZ only: from the LAN it is unknown → LAN flood.
    let (v, outs) = send(&mut sw, l2, &frame(mac(3), mac(2), 60));
    assert_eq!(v, Verdict::Flooded { copies: 1 });
    assert_eq!(outs, [l1]);
    // The same address in both networks, learned independently.
    send(&mut sw, d2, &frame(BROADCAST, mac(1), 60));
    assert_eq!(sw.lookup(LAN, &mac(1)), Some(l1));
    assert_eq!(sw.lookup(DMZ, &mac(1)), Some(d2));
    let (_, outs) = send(&mut sw, l2, &frame(mac(1), mac(2), 60));
    assert_eq!(outs, [l1]);
    let (_, outs) = send(&mut sw, d1, &frame(mac(1), mac(3), 60));
    assert_eq!(outs, [d2]);
    // A network with a single port floods to nobody.
    let lone = sw.add_port(NetworkId(7)).unwrap();
    assert_eq!(
        send(&mut sw, lone, &frame(BROADCAST, mac(9), 60)),
        (Verdict::Flooded { copies: 0 }, vec![])
    );
}

#[test]
fn never_back_out_of_the_input_port() {
    // Two hosts behind the uplink (a segment): traffic between them is
    // filtered; floods exclude the input port.
    let mut sw = Switch::new();
    let vm = sw.add_port(LAN).unwrap();
    let up = sw.add_uplink(LAN).unwrap();
    send(&mut sw, up, &frame(BROADCAST, mac(10), 60));
    send(&mut sw, up, &frame(BROADCAST, mac(11), 60));
    let (v, outs) = send(&mut sw, up, &frame(mac(10), mac(11), 60));
    assert_eq!(v, Verdict::Filtered);
    assert!(outs.is_empty());
    let (_, outs) = send(&mut sw, vm, &frame(BROADCAST, mac(1), 60));
    assert_eq!(outs, [up]);
    // A guest addressing itself: filtered too.
    let (v, outs) = send(&mut sw, vm, &frame(mac(1), mac(1), 60));
    assert_eq!((v, outs.len()), (Verdict::Filtered, 0));
    assert_eq!(sw.port_stats(up).unwrap().filtered, 1);
    assert_eq!(sw.port_stats(vm).unwrap().filtered, 1);
}

#[test]
fn table_is_bounded_with_lru_eviction() {
    let mut sw = Switch::with_table_size(4);
    assert_eq!(sw.table_size(), 4);
    let a = sw.add_port(LAN).unwrap();
    let b = sw.add_port(LAN).unwrap();
    for n in 1..=4 {
        send(&mut sw, a, &frame(BROADCAST, mac(n), 60));
    }
    assert_eq!(sw.table_len(LAN), 4);
    // Refresh mac(1): mac(2) is now the least recently seen.
    send(&mut sw, a, &frame(BROADCAST, mac(1), 60));
    send(&mut sw, a, &frame(BROADCAST, mac(5), 60));
    assert_eq!(sw.table_len(LAN), 4);
    assert_eq!(sw.lookup(LAN, &mac(2)), None);
    for n in [1, 3, 4, 5] {
        assert_eq!(sw.lookup(LAN, &mac(n)), Some(a), "{n}");
    }
    assert_eq!(sw.stats().evictions, 1);
    // The evicted address is flooded again until relearned.
    let (v, _) = send(&mut sw, b, &frame(mac(2), mac(20), 60));
    assert_eq!(v, Verdict::Flooded { copies: 1 });
    // A spray of random sources stays bounded, and only in its network.
    let other = sw.add_port(DMZ).unwrap();
    send(&mut sw, other, &frame(BROADCAST, mac(1), 60));
    for n in 0..1000u32 {
        let src = [0x02, 0xee, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        send(&mut sw, b, &frame(BROADCAST, src, 60));
        assert!(sw.table_len(LAN) <= 4);
    }
    assert_eq!(sw.lookup(DMZ, &mac(1)), Some(other));
    // Learning disabled: every unicast floods.
    let mut sw = Switch::with_table_size(0);
    let a = sw.add_port(LAN).unwrap();
    let b = sw.add_port(LAN).unwrap();
    send(&mut sw, b, &frame(BROADCAST, mac(2), 60));
    assert_eq!(sw.table_len(LAN), 0);
    assert_eq!(
        send(&mut sw, a, &frame(mac(2), mac(1), 60)).0,
        Verdict::Flooded { copies: 1 }
    );
}

#[test]
fn default_table_size_is_256() {
    let mut sw = Switch::default();
    let a = sw.add_port(LAN).unwrap();
    for n in 0..300u32 {
        let src = [0x02, 0, 0, 0, (n >> 8) as u8, n as u8];
        send(&mut sw, a, &frame(BROADCAST, src, 60));
    }
    assert_eq!(sw.table_len(LAN), DEFAULT_TABLE_SIZE);
    assert_eq!(sw.stats().evictions, 300 - 256);
    // The 44 oldest went.
    assert_eq!(sw.lookup(LAN, &[0x02, 0, 0, 0, 0, 43]), None);
    assert_eq!(sw.lookup(LAN, &[0x02, 0, 0, 0, 0, 44]), Some(a));
}

#[test]
fn mac_moves_between_ports() {
    // A VM migrates (or a host moves behind the uplink): its address is
    // relearned on the new port and traffic follows.
    let (mut sw, [a, b, c]) = lan3();
    send(&mut sw, a, &frame(BROADCAST, mac(1), 60));
    assert_eq!(send(&mut sw, c, &frame(mac(1), mac(3), 60)).1, [a]);
    send(&mut sw, b, &frame(BROADCAST, mac(1), 60));
    assert_eq!(sw.lookup(LAN, &mac(1)), Some(b));
    assert_eq!(sw.stats().moves, 1);
    assert_eq!(send(&mut sw, c, &frame(mac(1), mac(3), 60)).1, [b]);
    // Now frames from b to mac(1) are filtered (same port).
    assert_eq!(
        send(&mut sw, b, &frame(mac(1), mac(2), 60)).0,
        Verdict::Filtered
    );
}

#[test]
fn forget_port_floods_again() {
    let (mut sw, [a, b, c]) = lan3();
    send(&mut sw, a, &frame(BROADCAST, mac(1), 60));
    send(&mut sw, b, &frame(BROADCAST, mac(2), 60));
    sw.forget_port(a);
    sw.forget_port(PortId(99));
    assert_eq!(sw.lookup(LAN, &mac(1)), None);
    assert_eq!(sw.lookup(LAN, &mac(2)), Some(b));
    assert_eq!(send(&mut sw, c, &frame(mac(1), mac(3), 60)).1, [a, b]);
}

#[test]
fn runts_and_unknown_ports_dropped() {
    let (mut sw, [a, _, _]) = lan3();
    for len in 0..14 {
        let f = vec![0xffu8; len];
        let (v, outs) = send(&mut sw, a, &f);
        assert_eq!(v, Verdict::Dropped(DropReason::Runt));
        assert!(outs.is_empty());
    }
    let (v, outs) = send(&mut sw, PortId(3), &frame(BROADCAST, mac(1), 60));
    assert_eq!(v, Verdict::Dropped(DropReason::UnknownPort));
    assert!(outs.is_empty());
    assert_eq!(sw.stats().unknown_port, 1);
    let s = sw.port_stats(a).unwrap();
    assert_eq!(
        (s.rx_frames, s.rx_bytes, s.dropped),
        (14, (0..14).sum(), 14)
    );
    assert_eq!(sw.table_len(LAN), 0, "nothing learned from runts");
    // Exactly a header is fine; an all-zero source is forwarded but not
    // learned.
    let (v, _) = send(&mut sw, a, &frame(BROADCAST, [0; 6], 14));
    assert_eq!(v, Verdict::Flooded { copies: 2 });
    assert_eq!(sw.table_len(LAN), 0);
}

#[test]
fn counters() {
    let (mut sw, [a, b, c]) = lan3();
    send(&mut sw, a, &frame(BROADCAST, mac(1), 100)); // flood to b, c
    send(&mut sw, b, &frame(mac(1), mac(2), 200)); // to a
    send(&mut sw, a, &frame(mac(2), mac(1), 300)); // to b
    send(&mut sw, a, &frame(mac(1), mac(1), 50)); // filtered
    send(&mut sw, c, &[0u8; 5]); // runt
    send(&mut sw, c, &frame(mac(9), mac(3), 70)); // unknown: flood to a, b
    let sa = sw.port_stats(a).unwrap();
    let sb = sw.port_stats(b).unwrap();
    let sc = sw.port_stats(c).unwrap();
    assert_eq!(
        sa,
        PortStats {
            rx_frames: 3,
            rx_bytes: 450,
            tx_frames: 2,
            tx_bytes: 270,
            dropped: 0,
            filtered: 1,
            flooded: 1,
        }
    );
    assert_eq!(
        sb,
        PortStats {
            rx_frames: 1,
            rx_bytes: 200,
            tx_frames: 3,
            tx_bytes: 470,
            dropped: 0,
            filtered: 0,
            flooded: 0,
        }
    );
    assert_eq!(
        sc,
        PortStats {
            rx_frames: 2,
            rx_bytes: 75,
            tx_frames: 1,
            tx_bytes: 100,
            dropped: 1,
            filtered: 0,
            flooded: 1,
        }
    );
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_sweep_invariants() {
    // Random ports (some nonexistent), random lengths (runts included),
    // addresses from a small pool (so learning, moves and eviction all
    // happen), group addresses. After every frame: no copy to the input
    // port or to another network, a unicast goes where the table said,
    // tables bounded, and the counters add up.
    let mut rng = XorShift(0x5717_c400_0001);
    let mut sw = Switch::with_table_size(8);
    let nets = [NetworkId(0), NetworkId(1), NetworkId(2)];
    for i in 0..12u16 {
        let n = nets[usize::from(i % 3)];
        if i % 5 == 4 {
            sw.add_uplink(n).unwrap();
        } else {
            sw.add_port(n).unwrap();
        }
    }
    let mut total_out = 0u64;
    let mut valid_in = 0u64;
    for round in 0..50_000u32 {
        let port = PortId(rng.below(13) as u16);
        let pick = |rng: &mut XorShift| -> Mac {
            match rng.below(10) {
                0 => BROADCAST,
                1 => [0x01, 0, 0x5e, 0, 0, rng.below(4) as u8],
                2 => [0; 6],
                _ => [0x02, 0, 0, 0, 0, rng.below(20) as u8],
            }
        };
        let (dst, src) = (pick(&mut rng), pick(&mut rng));
        let len = match rng.below(10) {
            0 => rng.below(14) as usize,
            _ => 14 + rng.below(1600) as usize,
        };
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.resize(len.max(12), 0x11);
        f.truncate(len);
        let info = sw.port_info(port);
        let before = info.and_then(|i| sw.lookup(i.network, &dst));
        let mut outs = Vec::new();
        let v = sw.input(port, &f, &mut |p, _| outs.push(p));
        total_out += outs.len() as u64;
        let Some(info) = info else {
            assert_eq!(v, Verdict::Dropped(DropReason::UnknownPort));
            assert!(outs.is_empty());
            continue;
        };
        valid_in += 1;
        for &p in &outs {
            assert_ne!(p, port, "round {round}: hairpin");
            assert_eq!(sw.port_info(p).unwrap().network, info.network, "leak");
        }
        let mut uniq = outs.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), outs.len(), "one copy per port");
        match v {
            Verdict::Forwarded(p) => {
                assert_eq!(outs, [p]);
                assert!(!is_multicast(&dst));
                // Learned before, or just now from this frame's source.
                assert!(before == Some(p) || (dst == src && p == port));
            }
            Verdict::Flooded { copies } => {
                assert_eq!(copies, outs.len());
                assert_eq!(copies, sw.network_ports(info.network).len() - 1);
            }
            Verdict::Filtered => assert!(outs.is_empty()),
            Verdict::Dropped(r) => {
                assert!(outs.is_empty());
                assert!(r == DropReason::Runt || is_multicast(&src));
            }
        }
        for n in nets {
            assert!(sw.table_len(n) <= 8);
            for (_, p) in sw.table(n) {
                assert_eq!(sw.port_info(p).unwrap().network, n);
            }
        }
        if round % 10_000 == 9_999 {
            sw.forget_port(PortId(rng.below(12) as u16));
        }
    }
    let (mut rx, mut tx, mut accounted) = (0, 0, 0);
    for (p, _) in sw.ports() {
        let s = sw.port_stats(p).unwrap();
        rx += s.rx_frames;
        tx += s.tx_frames;
        accounted += s.dropped + s.filtered + s.flooded;
    }
    assert_eq!(rx, valid_in);
    assert_eq!(tx, total_out);
    let st = sw.stats();
    assert!(st.evictions > 100 && st.moves > 100, "{st:?}");
    assert!(accounted < rx, "some frames were forwarded");
}
