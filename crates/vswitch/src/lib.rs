//! A learning layer-2 Ethernet switch for Rivet's virtual networks.
//!
//! This crate owns [`Switch`]: a set of ports (a guest NIC, or an uplink to
//! the outside world), each attached to one *network*; per network, a
//! bounded table of learned MAC addresses; and the forwarding decision for
//! each frame. It does not own frames or queues: [`Switch::input`] hands
//! every copy to a caller-supplied `out(port, frame)` callback, so the
//! hypervisor decides how a frame reaches a port (e.g. `Net::receive` of
//! the VM's virtio-net device, which queues it without blocking).
//!
//! # Forwarding rules
//!
//! For a frame entering on port `p` of network `n`:
//!
//! 1. Unknown `p`: dropped ([`DropReason::UnknownPort`], counted in
//!    [`SwitchStats::unknown_port`]). Every other outcome is counted in
//!    `p`'s [`PortStats`]: `rx_frames`/`rx_bytes` for every frame, then one
//!    of `dropped`, `filtered`, `flooded`, or a forward.
//! 2. Shorter than [`ETH_HLEN`] (14) bytes: dropped ([`DropReason::Runt`]).
//!    No upper length limit is applied here (the NICs enforce theirs).
//! 3. Source address with the group bit (bit 0 of byte 0) set: invalid,
//!    dropped ([`DropReason::MulticastSource`]).
//! 4. The source address is learned as "behind `p`" in `n`'s table (unless
//!    it is all zeros). A known address seen on another port moves there
//!    ([`SwitchStats::moves`]).
//! 5. Destination with the group bit set (broadcast, multicast), or not in
//!    `n`'s table: **flooded** to every other port of `n`, in the order the
//!    ports were added.
//! 6. Destination learned behind another port: forwarded there only.
//! 7. Destination learned behind `p` itself: **filtered** (nothing sent;
//!    both ends are on the same segment).
//!
//! A frame is never sent back out of the port it came in on, and never
//! leaves its network: each network has its own table, so the same MAC may
//! live in two networks without interference.
//!
//! # Learning table (decisions)
//!
//! At most `table_size` entries per network ([`DEFAULT_TABLE_SIZE`] = 256).
//! Each network counts its input frames; an entry records the count at
//! which its address was last seen as a source. Learning a new address into
//! a full table evicts the least recently seen entry (LRU,
//! [`SwitchStats::evictions`]); evicted destinations are flooded until
//! learned again. A guest spraying random source addresses can therefore
//! degrade its own network to flooding, but never another network, and
//! memory stays bounded. There is no time-based aging (the switch has no
//! clock): call [`Switch::forget_port`] when a port's VM reboots or its link
//! goes down.
//!
//! No port security: a guest may send with another guest's source address
//! and attract its traffic, as on a plain hardware switch.
//!
//! Every operation is bounded by the number of ports of a network and
//! `log(table_size)`; nothing allocates per frame except when learning a new
//! address. No `unsafe`, no panics (`unwrap`/`expect`/indexing/unchecked
//! arithmetic are denied by lint outside tests).
#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// An Ethernet (MAC-48) address.
pub type Mac = [u8; 6];

/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];
/// Length of an Ethernet header (destination, source, EtherType).
pub const ETH_HLEN: usize = 14;
/// Learned addresses per network unless [`Switch::with_table_size`] says
/// otherwise.
pub const DEFAULT_TABLE_SIZE: usize = 256;
/// Most ports a switch takes.
pub const MAX_PORTS: usize = 4096;

/// A port of the switch (dense, in order of creation from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// A network: ports of different networks never exchange frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetworkId(pub u16);

/// Whether an address is a group (multicast or broadcast) address: bit 0
/// of the first byte.
pub fn is_multicast(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// Destination and source addresses of a frame, if it has an Ethernet
/// header.
pub fn addresses(frame: &[u8]) -> Option<(Mac, Mac)> {
    let dst: Mac = frame.get(0..6)?.try_into().ok()?;
    let src: Mac = frame.get(6..12)?.try_into().ok()?;
    frame.get(..ETH_HLEN)?;
    Some((dst, src))
}

/// Per-port counters, from the switch's point of view: `rx` = frames that
/// came in on the port (its guest sent them), `tx` = frames sent out of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Input frames dropped (runt, multicast source address).
    pub dropped: u64,
    /// Input frames for an address behind this same port (not sent).
    pub filtered: u64,
    /// Input frames flooded (broadcast, multicast, unknown destination).
    pub flooded: u64,
}

/// Switch-wide counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SwitchStats {
    /// Frames given to [`Switch::input`] with a port that does not exist.
    pub unknown_port: u64,
    /// Addresses added to a table.
    pub learned: u64,
    /// Learned addresses that showed up behind another port.
    pub moves: u64,
    /// Entries evicted from a full table.
    pub evictions: u64,
}

/// What a port is (for display and lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub network: NetworkId,
    /// An uplink to the outside world rather than a guest NIC. Forwarding
    /// treats both alike.
    pub uplink: bool,
}

/// Why [`Switch::input`] dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    UnknownPort,
    /// Shorter than an Ethernet header.
    Runt,
    /// The source address is a group address.
    MulticastSource,
}

/// What [`Switch::input`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Sent to exactly this port.
    Forwarded(PortId),
    /// Sent to every other port of the network (`copies` of them).
    Flooded { copies: usize },
    /// The destination is behind the input port: not sent.
    Filtered,
    /// Not sent.
    Dropped(DropReason),
}

#[derive(Debug, Clone)]
struct Port {
    info: PortInfo,
    stats: PortStats,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    /// The network's input count when the address was last a source.
    last_seen: u64,
}

#[derive(Debug, Clone, Default)]
struct Network {
    /// Ports in order of creation.
    members: Vec<PortId>,
    table: BTreeMap<Mac, Entry>,
    /// `last_seen` → address: the LRU order of `table` (same entries).
    lru: BTreeMap<u64, Mac>,
    /// Input frames seen so far (the LRU clock; unique per frame).
    clock: u64,
}

impl Network {
    /// Records `src` as behind `port`. Returns (new entry, moved, evicted).
    fn learn(&mut self, src: Mac, port: PortId, table_size: usize) -> (bool, bool, bool) {
        let now = self.clock;
        if let Some(e) = self.table.get_mut(&src) {
            let moved = e.port != port;
            self.lru.remove(&e.last_seen);
            e.port = port;
            e.last_seen = now;
            self.lru.insert(now, src);
            return (false, moved, false);
        }
        if table_size == 0 {
            return (false, false, false);
        }
        let mut evicted = false;
        while self.table.len() >= table_size {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            self.table.remove(&oldest);
            evicted = true;
        }
        self.table.insert(
            src,
            Entry {
                port,
                last_seen: now,
            },
        );
        self.lru.insert(now, src);
        (true, false, evicted)
    }

    fn forget(&mut self, port: PortId) {
        let lru = &mut self.lru;
        self.table.retain(|_, e| {
            let keep = e.port != port;
            if !keep {
                lru.remove(&e.last_seen);
            }
            keep
        });
    }
}

/// The switch: ports, networks and their learning tables.
#[derive(Debug, Clone)]
pub struct Switch {
    ports: Vec<Port>,
    networks: BTreeMap<NetworkId, Network>,
    table_size: usize,
    stats: SwitchStats,
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new()
    }
}

fn bump(counter: &mut u64, by: u64) {
    *counter = counter.saturating_add(by);
}

impl Switch {
    /// A switch without ports, [`DEFAULT_TABLE_SIZE`] entries per network.
    pub fn new() -> Self {
        Switch::with_table_size(DEFAULT_TABLE_SIZE)
    }

    /// A switch learning at most `table_size` addresses per network (0:
    /// learn nothing, flood every unicast frame).
    pub fn with_table_size(table_size: usize) -> Self {
        Switch {
            ports: Vec::new(),
            networks: BTreeMap::new(),
            table_size,
            stats: SwitchStats::default(),
        }
    }

    /// Adds a guest port to `network`. `None` once [`MAX_PORTS`] exist.
    pub fn add_port(&mut self, network: NetworkId) -> Option<PortId> {
        self.add(network, false)
    }

    /// Adds an uplink port to `network` (forwarded like any port; flagged
    /// for display). `None` once [`MAX_PORTS`] exist.
    pub fn add_uplink(&mut self, network: NetworkId) -> Option<PortId> {
        self.add(network, true)
    }

    fn add(&mut self, network: NetworkId, uplink: bool) -> Option<PortId> {
        if self.ports.len() >= MAX_PORTS {
            return None;
        }
        let id = PortId(u16::try_from(self.ports.len()).ok()?);
        self.ports.push(Port {
            info: PortInfo { network, uplink },
            stats: PortStats::default(),
        });
        self.networks.entry(network).or_default().members.push(id);
        Some(id)
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.ports.len()
    }

    /// What `port` is, if it exists.
    pub fn port_info(&self, port: PortId) -> Option<PortInfo> {
        self.ports.get(usize::from(port.0)).map(|p| p.info)
    }

    /// `port`'s counters, if it exists.
    pub fn port_stats(&self, port: PortId) -> Option<PortStats> {
        self.ports.get(usize::from(port.0)).map(|p| p.stats)
    }

    /// Every port with its description, in order.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, PortInfo)> + '_ {
        self.ports
            .iter()
            .zip(0u16..)
            .map(|(p, i)| (PortId(i), p.info))
    }

    /// The ports of `network`, in order of creation.
    pub fn network_ports(&self, network: NetworkId) -> &[PortId] {
        self.networks
            .get(&network)
            .map_or(&[][..], |n| n.members.as_slice())
    }

    /// Switch-wide counters.
    pub fn stats(&self) -> SwitchStats {
        self.stats
    }

    /// The table size limit per network.
    pub fn table_size(&self) -> usize {
        self.table_size
    }

    /// Where `mac` was learned in `network`.
    pub fn lookup(&self, network: NetworkId, mac: &Mac) -> Option<PortId> {
        self.networks.get(&network)?.table.get(mac).map(|e| e.port)
    }

    /// Number of addresses learned in `network`.
    pub fn table_len(&self, network: NetworkId) -> usize {
        self.networks.get(&network).map_or(0, |n| n.table.len())
    }

    /// The learned addresses of `network` with their ports, by address.
    pub fn table(&self, network: NetworkId) -> impl Iterator<Item = (Mac, PortId)> + '_ {
        self.networks
            .get(&network)
            .into_iter()
            .flat_map(|n| n.table.iter().map(|(m, e)| (*m, e.port)))
    }

    /// Forgets every address learned behind `port` (its VM rebooted, its
    /// link went down): frames for them are flooded until relearned.
    pub fn forget_port(&mut self, port: PortId) {
        if let Some(info) = self.port_info(port) {
            if let Some(n) = self.networks.get_mut(&info.network) {
                n.forget(port);
            }
        }
    }

    /// Switches one frame that came in on `port`: calls `out(p, frame)` for
    /// each port `p` it goes to (never `port` itself, only ports of the same
    /// network) and says what happened. `out` must not block; a port that
    /// cannot take the frame drops it on its side.
    pub fn input<F: FnMut(PortId, &[u8])>(
        &mut self,
        port: PortId,
        frame: &[u8],
        out: &mut F,
    ) -> Verdict {
        let Some(info) = self.port_info(port) else {
            bump(&mut self.stats.unknown_port, 1);
            return Verdict::Dropped(DropReason::UnknownPort);
        };
        let len = frame.len() as u64;
        let table_size = self.table_size;
        let Switch {
            ports,
            networks,
            stats,
            ..
        } = self;
        let Some(net) = networks.get_mut(&info.network) else {
            // Every port's network exists; unreachable in practice.
            bump(&mut stats.unknown_port, 1);
            return Verdict::Dropped(DropReason::UnknownPort);
        };
        let Some(input) = ports.get_mut(usize::from(port.0)) else {
            bump(&mut stats.unknown_port, 1);
            return Verdict::Dropped(DropReason::UnknownPort);
        };
        bump(&mut input.stats.rx_frames, 1);
        bump(&mut input.stats.rx_bytes, len);
        let Some((dst, src)) = addresses(frame) else {
            bump(&mut input.stats.dropped, 1);
            return Verdict::Dropped(DropReason::Runt);
        };
        if is_multicast(&src) {
            bump(&mut input.stats.dropped, 1);
            return Verdict::Dropped(DropReason::MulticastSource);
        }
        net.clock = net.clock.wrapping_add(1);
        if src != [0; 6] {
            let (new, moved, evicted) = net.learn(src, port, table_size);
            bump(&mut stats.learned, u64::from(new));
            bump(&mut stats.moves, u64::from(moved));
            bump(&mut stats.evictions, u64::from(evicted));
        }
        let target = if is_multicast(&dst) {
            None
        } else {
            net.table.get(&dst).map(|e| e.port)
        };
        match target {
            Some(p) if p == port => {
                bump(&mut input.stats.filtered, 1);
                Verdict::Filtered
            }
            Some(p) => {
                if let Some(o) = ports.get_mut(usize::from(p.0)) {
                    bump(&mut o.stats.tx_frames, 1);
                    bump(&mut o.stats.tx_bytes, len);
                }
                out(p, frame);
                Verdict::Forwarded(p)
            }
            None => {
                bump(&mut input.stats.flooded, 1);
                let mut copies = 0usize;
                for &p in net.members.iter().filter(|&&p| p != port) {
                    if let Some(o) = ports.get_mut(usize::from(p.0)) {
                        bump(&mut o.stats.tx_frames, 1);
                        bump(&mut o.stats.tx_bytes, len);
                    }
                    out(p, frame);
                    copies = copies.saturating_add(1);
                }
                Verdict::Flooded { copies }
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn check_lru(n: &Network) {
        assert_eq!(n.table.len(), n.lru.len());
        for (mac, e) in &n.table {
            assert_eq!(n.lru.get(&e.last_seen), Some(mac));
        }
    }

    #[test]
    fn lru_index_stays_consistent() {
        let mut n = Network::default();
        for round in 0u64..300 {
            n.clock = round + 1;
            let mac = [2, 0, 0, 0, (round % 7) as u8, (round % 11) as u8];
            n.learn(mac, PortId((round % 3) as u16), 8);
            check_lru(&n);
            assert!(n.table.len() <= 8);
            if round % 50 == 0 {
                n.forget(PortId(1));
                check_lru(&n);
                assert!(n.table.values().all(|e| e.port != PortId(1)));
            }
        }
    }

    #[test]
    fn learn_reports_new_move_evict() {
        let mut n = Network::default();
        let a = [2, 0, 0, 0, 0, 1];
        let b = [2, 0, 0, 0, 0, 2];
        n.clock = 1;
        assert_eq!(n.learn(a, PortId(0), 1), (true, false, false));
        n.clock = 2;
        assert_eq!(n.learn(a, PortId(1), 1), (false, true, false));
        n.clock = 3;
        assert_eq!(n.learn(b, PortId(0), 1), (true, false, true));
        assert_eq!(n.table.len(), 1);
        assert_eq!(n.learn(a, PortId(0), 0), (false, false, false));
        check_lru(&n);
    }

    #[test]
    fn addresses_need_a_full_header() {
        assert_eq!(addresses(&[0; 13]), None);
        let mut f = [0u8; 14];
        f[0] = 1;
        f[11] = 9;
        assert_eq!(
            addresses(&f),
            Some(([1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 9]))
        );
        assert!(is_multicast(&BROADCAST));
        assert!(is_multicast(&[0x01, 0x00, 0x5e, 0, 0, 1]));
        assert!(!is_multicast(&[0x02, 0, 0, 0, 0, 1]));
    }
}
