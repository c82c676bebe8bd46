//! virtio-net, device id 1, one receive/transmit queue pair, no control
//! queue.
//!
//! This module owns the network device model [`Net`]: the receiveq (queue
//! 0, device → driver) and transmitq (queue 1, driver → device), the
//! configuration space (`mac`, `status`), the bounded queue of host frames
//! waiting for receive buffers, the [`NetBackend`] trait that takes guest
//! frames, a ready-made bounded backend ([`FrameQueue`]) and
//! [`mac_from_seed`].
//!
//! Spec references are to `shared/specs/virtio/net.tex`, by section title
//! (the file is a post-1.3 draft whose numbering differs from 1.3): e.g.
//! "net: Device Operation / Setting Up Receive Buffers".
//!
//! # Features offered (net: Feature bits)
//!
//! `VIRTIO_NET_F_MAC` (the `mac` is fixed at construction),
//! `VIRTIO_NET_F_STATUS` (`status` = `VIRTIO_NET_S_LINK_UP` unless the host
//! takes the link down with [`Net::set_link_up`]) and
//! `VIRTIO_NET_F_MRG_RXBUF`. Nothing else:
//!
//! * **No checksum or segmentation offloads** (`CSUM`, `GUEST_CSUM`,
//!   `HOST_*`/`GUEST_*` TSO/UFO/USO/ECN, `GUEST_HDRLEN`, UDP tunnels). Frames
//!   move between guests through a switch and out of an uplink: an offload
//!   would only be correct if *every* hop completed checksums or segmented
//!   oversized frames, and none does. Every frame is therefore a complete,
//!   checksummed Ethernet frame of at most [`MAX_FRAME_LEN`] bytes in both
//!   directions; the receive header always says "`flags` 0, `GSO_NONE`"
//!   (net: Processing of Incoming Packets, device requirements: without
//!   `GUEST_CSUM` the device MUST set `flags` to zero).
//! * No `CTRL_VQ` (hence no `CTRL_RX`, `CTRL_VLAN`, `GUEST_ANNOUNCE`,
//!   `CTRL_MAC_ADDR`, `MQ`, `RSS`, statistics or coalescing): the device
//!   has exactly two queues and `max_virtqueue_pairs` does not exist. No
//!   `MTU`, `SPEED_DUPLEX`, `HASH_REPORT`, `STANDBY`.
//!
//! With `VIRTIO_F_VERSION_1` (always negotiated: the transport refuses
//! legacy drivers) `struct virtio_net_hdr` is 12 bytes in both queues,
//! `num_buffers` included, whether or not `MRG_RXBUF` is negotiated
//! (net: Device Operation; the 10-byte header is legacy only).
//!
//! # Configuration space (net: Device configuration layout)
//!
//! `mac[6]` at 0, `status` (le16) at 6. Everything after reads 0 (the
//! optional fields do not exist without their features). Driver writes are
//! ignored ("The driver MUST NOT write to any of the device configuration
//! fields").
//!
//! # Transmit (net: Device Operation / Packet Transmission)
//!
//! Each transmitq chain's device-readable part is a 12-byte header followed
//! by one Ethernet frame (no assumption about descriptor boundaries,
//! §2.7.4). The header is stripped and the frame goes to
//! [`NetBackend::transmit`], unless it is dropped and counted in
//! [`NetStats::tx_dropped`] because:
//!
//! * the readable part is shorter than the header;
//! * the frame is shorter than [`MIN_FRAME_LEN`] (14, an Ethernet header)
//!   or longer than [`MAX_FRAME_LEN`] (1514 + a 4-byte 802.1Q tag; no FCS);
//! * the header asks for an offload that was not negotiated:
//!   `VIRTIO_NET_HDR_F_NEEDS_CSUM` in `flags` or a `gso_type` other than
//!   `GSO_NONE` (the driver MUST NOT do either without `CSUM` / `HOST_*`;
//!   the frame's checksum would be wrong). Other `flags` bits are ignored
//!   ("The device MUST ignore flag bits that it does not recognize");
//!   `hdr_len`, `gso_size`, `csum_*` and `num_buffers` are not used;
//! * the link is down ([`Net::set_link_up`]).
//!
//! Either way the chain is returned with used length 0 (nothing written);
//! writable descriptors in a transmit chain are ignored. Before taking a
//! chain the device asks [`NetBackend::tx_ready`]; while it says no, chains
//! stay in the ring (backpressure) and the host must poll the device once
//! the backend has room again. At most [`CHAINS_PER_CALL`] chains per call.
//!
//! # Receive (net: Setting Up Receive Buffers, Processing of Incoming Packets)
//!
//! The host hands frames to [`Net::receive`], which never touches guest
//! memory and never blocks: the frame is copied into a queue of at most
//! [`RX_QUEUE_FRAMES`] frames, or dropped and counted in
//! [`NetStats::rx_dropped`] (queue full, length outside
//! `MIN_FRAME_LEN..=MAX_FRAME_LEN`, link down, or no driver: frames are only
//! accepted between feature negotiation and the next device reset, so a
//! guest that has not started its driver yet does not receive stale
//! traffic). Queued frames are copied into receiveq buffers on a receiveq
//! notification and on every poll, in order; the host calls
//! `MmioDevice::poll` after `receive`.
//!
//! Each delivered frame is written as the 12-byte header (`flags` 0,
//! `gso_type` `GSO_NONE`, `hdr_len`/`gso_size`/`csum_*` 0, `num_buffers`)
//! followed by the frame, without gaps, across the writable parts of:
//!
//! * **without `MRG_RXBUF`**: exactly one chain (`num_buffers` = 1). A chain
//!   too small for the frame at hand keeps its place inside the device and
//!   the frame is dropped (like QEMU's "unpop"): the next, possibly smaller,
//!   frame gets it. A chain that cannot hold even a minimal frame (fewer
//!   than 12 + 14 writable bytes) is returned at once with length 0. Note
//!   that the spec's suggested 1526-byte buffer (12 + 1514) cannot hold a
//!   VLAN-tagged 1518-byte frame; Linux posts 12 + 1518 = 1530 bytes.
//! * **with `MRG_RXBUF`**: as many chains as needed, each filled completely
//!   before the next ("MUST use all buffers but the last ... completely"),
//!   `num_buffers` = the number of chains, and all their used elements
//!   published with a single used `idx` update so the driver sees them
//!   together. A chain with fewer than 12 writable bytes (the driver "MUST"
//!   make each buffer at least a header) is returned at once with length 0.
//!   Chains taken from the ring while waiting for more are held inside the
//!   device (at most the queue size); if even that many cannot hold the
//!   frame, the frame is dropped and the held chains serve the next one.
//!
//! The used length of each chain is the number of bytes written into it.
//! A receive chain is only taken from the ring when a frame is waiting.
//! Frames delivered are counted in [`NetStats::rx_frames`]/`rx_bytes`
//! (Ethernet bytes, header excluded).
//!
//! # Reset
//!
//! Device reset drops the held receive chains and the queued frames (counted
//! as `rx_dropped`), and stops accepting frames until features are
//! negotiated again. Counters are kept. If the driver disables the receiveq
//! (`QueueReady` = 0) held chains are forgotten at the next notify or poll.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use rivet_guest_mem::GuestMemory;

use crate::queue::{Chain, Queue, QUEUE_SIZE_MAX};
use crate::{read_config_bytes, DeviceError, NotifyResult, VirtioDevice};

/// Virtio device id of a network card.
pub const DEVICE_ID: u32 = 1;

/// `VIRTIO_NET_F_CSUM`: device completes partial checksums (not offered).
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// `VIRTIO_NET_F_GUEST_CSUM`: driver accepts partial checksums (not offered).
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
/// `VIRTIO_NET_F_CTRL_GUEST_OFFLOADS` (not offered).
pub const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: u64 = 1 << 2;
/// `VIRTIO_NET_F_MTU` (not offered).
pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
/// `VIRTIO_NET_F_MAC`: `mac` is valid.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// `VIRTIO_NET_F_GUEST_TSO4` (not offered).
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
/// `VIRTIO_NET_F_GUEST_TSO6` (not offered).
pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
/// `VIRTIO_NET_F_GUEST_ECN` (not offered).
pub const VIRTIO_NET_F_GUEST_ECN: u64 = 1 << 9;
/// `VIRTIO_NET_F_GUEST_UFO` (not offered).
pub const VIRTIO_NET_F_GUEST_UFO: u64 = 1 << 10;
/// `VIRTIO_NET_F_HOST_TSO4` (not offered).
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
/// `VIRTIO_NET_F_HOST_TSO6` (not offered).
pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
/// `VIRTIO_NET_F_HOST_ECN` (not offered).
pub const VIRTIO_NET_F_HOST_ECN: u64 = 1 << 13;
/// `VIRTIO_NET_F_HOST_UFO` (not offered).
pub const VIRTIO_NET_F_HOST_UFO: u64 = 1 << 14;
/// `VIRTIO_NET_F_MRG_RXBUF`: a packet may span several receive buffers.
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// `VIRTIO_NET_F_STATUS`: `status` is valid.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// `VIRTIO_NET_F_CTRL_VQ` (not offered).
pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
/// `VIRTIO_NET_F_MQ` (not offered).
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
/// Everything this device offers.
pub const OFFERED_FEATURES: u64 = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MRG_RXBUF;

/// `VIRTIO_NET_S_LINK_UP` in `status`.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// `VIRTIO_NET_S_ANNOUNCE` in `status` (never set: no `GUEST_ANNOUNCE`).
pub const VIRTIO_NET_S_ANNOUNCE: u16 = 2;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM` in the header's `flags`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID` in the header's `flags`.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// receiveq1.
pub const RECEIVEQ: u16 = 0;
/// transmitq1.
pub const TRANSMITQ: u16 = 1;

/// Size of `struct virtio_net_hdr` with `VIRTIO_F_VERSION_1` (no hash
/// report, no tunnel fields).
pub const HDR_LEN: usize = 12;
/// Smallest frame accepted in either direction: an Ethernet header.
pub const MIN_FRAME_LEN: usize = 14;
/// Largest frame accepted in either direction: 1514 bytes (header + 1500
/// bytes of payload) plus one 802.1Q tag, without FCS.
pub const MAX_FRAME_LEN: usize = 1518;
/// Host frames queued while the guest has no receive buffers.
pub const RX_QUEUE_FRAMES: usize = 64;
/// Chains taken from one queue per notify or poll.
pub const CHAINS_PER_CALL: usize = 2 * QUEUE_SIZE_MAX as usize;

const CONFIG_LEN: usize = 8;
/// Smallest receive chain that can hold anything without `MRG_RXBUF`.
const MIN_SINGLE_BUFFER: usize = HDR_LEN + MIN_FRAME_LEN;

/// `struct virtio_net_hdr` (12 bytes, little-endian).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl NetHeader {
    /// Parses the wire layout.
    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Self {
        let [flags, gso_type, h0, h1, g0, g1, s0, s1, o0, o1, n0, n1] = *b;
        NetHeader {
            flags,
            gso_type,
            hdr_len: u16::from_le_bytes([h0, h1]),
            gso_size: u16::from_le_bytes([g0, g1]),
            csum_start: u16::from_le_bytes([s0, s1]),
            csum_offset: u16::from_le_bytes([o0, o1]),
            num_buffers: u16::from_le_bytes([n0, n1]),
        }
    }

    /// The wire layout.
    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let [h0, h1] = self.hdr_len.to_le_bytes();
        let [g0, g1] = self.gso_size.to_le_bytes();
        let [s0, s1] = self.csum_start.to_le_bytes();
        let [o0, o1] = self.csum_offset.to_le_bytes();
        let [n0, n1] = self.num_buffers.to_le_bytes();
        [
            self.flags,
            self.gso_type,
            h0,
            h1,
            g0,
            g1,
            s0,
            s1,
            o0,
            o1,
            n0,
            n1,
        ]
    }
}

/// Where the guest's frames go (guest → world).
pub trait NetBackend {
    /// One Ethernet frame from the guest, header stripped,
    /// `MIN_FRAME_LEN..=MAX_FRAME_LEN` bytes. Must not block.
    fn transmit(&mut self, frame: &[u8]);
    /// Whether the backend takes a frame now. While `false` the device
    /// leaves transmit chains in the ring; poll the device once it turns
    /// `true` again. Default: always.
    fn tx_ready(&self) -> bool {
        true
    }
}

impl<B: NetBackend + ?Sized> NetBackend for &mut B {
    fn transmit(&mut self, frame: &[u8]) {
        (**self).transmit(frame)
    }
    fn tx_ready(&self) -> bool {
        (**self).tx_ready()
    }
}

/// A bounded FIFO of frames. As a [`NetBackend`] it is the device's outbox:
/// the hypervisor drains it (into a switch) after each MMIO write or poll,
/// and `tx_ready` turns false while it is full, so the guest's transmit ring
/// waits instead of losing frames.
#[derive(Debug, Clone)]
pub struct FrameQueue {
    frames: VecDeque<Vec<u8>>,
    capacity: usize,
    dropped: u64,
}

impl FrameQueue {
    /// A queue of at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        FrameQueue {
            frames: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }
    /// Appends a copy of `frame`; `false` (and counted) when full.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if self.is_full() {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.frames.push_back(frame.to_vec());
        true
    }
    /// Takes the oldest frame.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }
    /// The oldest frame, left in place.
    pub fn front(&self) -> Option<&[u8]> {
        self.frames.front().map(Vec::as_slice)
    }
    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    /// Whether `push` would drop.
    pub fn is_full(&self) -> bool {
        self.frames.len() >= self.capacity
    }
    /// Maximum number of frames.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Frames refused by `push` because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    /// Drops every queued frame; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.frames.len();
        self.frames.clear();
        n
    }
}

impl NetBackend for FrameQueue {
    fn transmit(&mut self, frame: &[u8]) {
        self.push(frame);
    }
    fn tx_ready(&self) -> bool {
        !self.is_full()
    }
}

/// Frame counters. Bytes are Ethernet bytes (the virtio header excluded).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Guest frames handed to the backend.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Guest frames dropped (bad length, offload requested, link down).
    pub tx_dropped: u64,
    /// Host frames written into guest receive buffers.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Host frames dropped (bad length, queue full, no driver, link down,
    /// no buffer large enough, discarded by reset).
    pub rx_dropped: u64,
}

/// A stable, locally administered, unicast MAC address derived from `seed`
/// (e.g. the VM name and the NIC index; see [`mac_for_nic`]): a 64-bit
/// FNV-1a hash of the bytes, finalised with a multiply-xorshift mix; byte 0
/// has bit 1 (locally administered) set and bit 0 (group) clear.
pub fn mac_from_seed(seed: &[u8]) -> [u8; 6] {
    mac_from_hash(fnv1a(FNV_OFFSET, seed))
}

/// [`mac_from_seed`] of the VM name, a 0 byte, and the NIC index
/// (little-endian u16): the convention for NIC `nic` of VM `vm_name`.
pub fn mac_for_nic(vm_name: &str, nic: u16) -> [u8; 6] {
    let h = fnv1a(FNV_OFFSET, vm_name.as_bytes());
    let h = fnv1a(h, &[0]);
    mac_from_hash(fnv1a(h, &nic.to_le_bytes()))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn mac_from_hash(mut h: u64) -> [u8; 6] {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    let [b0, b1, b2, b3, b4, b5, _, _] = h.to_le_bytes();
    [(b0 | 0x02) & !0x01, b1, b2, b3, b4, b5]
}

/// The virtio-net device model.
pub struct Net<B: NetBackend> {
    backend: B,
    mac: [u8; 6],
    link_up: bool,
    /// Features negotiated and no reset since: frames are accepted.
    driver_active: bool,
    /// `VIRTIO_NET_F_MRG_RXBUF` negotiated.
    mrg: bool,
    rx: FrameQueue,
    /// Receive chains taken from the ring, not yet returned.
    held: VecDeque<Chain>,
    /// One transmit frame.
    bounce: Vec<u8>,
    /// Scratch list of used elements for one received frame.
    used: Vec<(u16, u32)>,
    stats: NetStats,
}

impl<B: NetBackend> Net<B> {
    /// A network card with address `mac`, link up, sending guest frames to
    /// `backend`.
    pub fn new(mac: [u8; 6], backend: B) -> Self {
        Net {
            backend,
            mac,
            link_up: true,
            driver_active: false,
            mrg: false,
            rx: FrameQueue::new(RX_QUEUE_FRAMES),
            held: VecDeque::new(),
            bounce: vec![0; MAX_FRAME_LEN],
            used: Vec::new(),
            stats: NetStats::default(),
        }
    }
    /// The MAC address in the configuration space.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    /// Frame counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The backend, mutable (e.g. to drain a [`FrameQueue`]; then poll).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
    /// Whether the link is up (`VIRTIO_NET_S_LINK_UP`).
    pub fn link_up(&self) -> bool {
        self.link_up
    }
    /// Takes the link up or down. Returns whether `status` changed: if so,
    /// call `MmioDevice::config_changed` so the driver re-reads it. While
    /// down, frames are dropped in both directions.
    pub fn set_link_up(&mut self, up: bool) -> bool {
        let changed = self.link_up != up;
        self.link_up = up;
        changed
    }
    /// Whether the driver negotiated `VIRTIO_NET_F_MRG_RXBUF`.
    pub fn mergeable_rx(&self) -> bool {
        self.mrg
    }
    /// Frames waiting for receive buffers.
    pub fn pending_rx(&self) -> usize {
        self.rx.len()
    }
    /// Receive chains taken from the ring and held for the next frame.
    pub fn held_rx_buffers(&self) -> usize {
        self.held.len()
    }

    /// Queues a frame for the guest (host → guest). Never blocks and never
    /// touches guest memory: `false` means the frame was dropped (and
    /// counted). Call `MmioDevice::poll` afterwards to deliver.
    pub fn receive(&mut self, frame: &[u8]) -> bool {
        let ok = (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len())
            && self.link_up
            && self.driver_active
            && self.rx.push(frame);
        if !ok {
            self.stats.rx_dropped = self.stats.rx_dropped.saturating_add(1);
        }
        ok
    }

    fn count_tx_drop(&mut self) {
        self.stats.tx_dropped = self.stats.tx_dropped.saturating_add(1);
    }

    fn count_rx_drop(&mut self) {
        self.stats.rx_dropped = self.stats.rx_dropped.saturating_add(1);
    }

    fn transmit(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, DeviceError> {
        let Some(q) = queues.get_mut(usize::from(TRANSMITQ)) else {
            return Ok(false);
        };
        let mut used = false;
        for _ in 0..CHAINS_PER_CALL {
            if !self.backend.tx_ready() {
                break;
            }
            let Some(chain) = q.pop(mem)? else { break };
            if self.transmit_chain(&chain, mem)? {
                self.stats.tx_frames = self.stats.tx_frames.saturating_add(1);
            } else {
                self.count_tx_drop();
            }
            q.push_used(mem, chain.head(), 0)?;
            used = true;
        }
        Ok(used)
    }

    /// Sends one transmit chain's frame; `false`: dropped.
    fn transmit_chain(
        &mut self,
        chain: &Chain,
        mem: &dyn GuestMemory,
    ) -> Result<bool, DeviceError> {
        let Some(len) = (chain.readable_len() as usize).checked_sub(HDR_LEN) else {
            return Ok(false);
        };
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) || !self.link_up {
            return Ok(false);
        }
        let mut h = [0u8; HDR_LEN];
        if chain.read_at(mem, 0, &mut h)? != HDR_LEN {
            return Ok(false);
        }
        let h = NetHeader::from_bytes(&h);
        if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 || h.gso_type != VIRTIO_NET_HDR_GSO_NONE {
            return Ok(false);
        }
        let Some(frame) = self.bounce.get_mut(..len) else {
            return Ok(false);
        };
        if chain.read_at(mem, HDR_LEN as u64, frame)? != len {
            return Ok(false);
        }
        self.backend.transmit(frame);
        self.stats.tx_bytes = self.stats.tx_bytes.saturating_add(len as u64);
        Ok(true)
    }

    /// How many of the held chains (from the front) hold `need` bytes, if
    /// they can: only the first one without `MRG_RXBUF`.
    fn chains_for(&self, need: u64) -> Option<usize> {
        let usable = if self.mrg { self.held.len() } else { 1 };
        let mut have: u64 = 0;
        for (i, c) in self.held.iter().take(usable).enumerate() {
            have = have.saturating_add(u64::from(c.writable_len()));
            if have >= need {
                return Some(i.saturating_add(1));
            }
        }
        None
    }

    /// Copies queued frames into receive buffers.
    fn deliver(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, DeviceError> {
        let Some(q) = queues.get_mut(usize::from(RECEIVEQ)) else {
            return Ok(false);
        };
        if !q.ready() {
            self.held.clear();
            return Ok(false);
        }
        let max_held = usize::from(q.size());
        let min_chain = if self.mrg { HDR_LEN } else { MIN_SINGLE_BUFFER };
        let mut used = false;
        let mut pops = 0usize;
        // Each round delivers or drops one frame, or returns.
        for _ in 0..RX_QUEUE_FRAMES {
            let Some(len) = self.rx.front().map(<[u8]>::len) else {
                break;
            };
            let need = (len as u64).saturating_add(HDR_LEN as u64);
            let chains = loop {
                if let Some(k) = self.chains_for(need) {
                    break Some(k);
                }
                let hopeless = if self.mrg {
                    self.held.len() >= max_held
                } else {
                    !self.held.is_empty()
                };
                if hopeless {
                    break None;
                }
                if pops >= CHAINS_PER_CALL {
                    return Ok(used);
                }
                pops = pops.saturating_add(1);
                let Some(chain) = q.pop(mem)? else {
                    return Ok(used);
                };
                if (chain.writable_len() as usize) < min_chain {
                    q.push_used(mem, chain.head(), 0)?;
                    used = true;
                    continue;
                }
                self.held.push_back(chain);
            };
            match chains {
                Some(k) => {
                    self.fill(k, q, mem)?;
                    used = true;
                }
                None => {
                    self.rx.pop();
                    self.count_rx_drop();
                }
            }
        }
        Ok(used)
    }

    /// Writes the front frame into the first `k` held chains and returns
    /// them together.
    fn fill(
        &mut self,
        k: usize,
        q: &mut Queue,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let Some(frame) = self.rx.pop() else {
            return Ok(());
        };
        let header = NetHeader {
            num_buffers: u16::try_from(k).unwrap_or(u16::MAX),
            ..NetHeader::default()
        }
        .to_bytes();
        self.used.clear();
        let mut done = 0usize;
        for (i, chain) in self.held.iter().take(k).enumerate() {
            let mut written = 0usize;
            if i == 0 {
                written = chain.write_at(mem, 0, &header)?;
            }
            let rest = frame.get(done..).unwrap_or(&[]);
            let n = chain.write_at(mem, written as u64, rest)?;
            done = done.saturating_add(n);
            written = written.saturating_add(n);
            self.used.push((chain.head(), written as u32));
        }
        q.push_used_batch(mem, &self.used)?;
        self.held.drain(..k.min(self.held.len()));
        self.stats.rx_frames = self.stats.rx_frames.saturating_add(1);
        self.stats.rx_bytes = self.stats.rx_bytes.saturating_add(frame.len() as u64);
        Ok(())
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let status = if self.link_up {
            VIRTIO_NET_S_LINK_UP
        } else {
            0
        };
        let [m0, m1, m2, m3, m4, m5] = self.mac;
        let [s0, s1] = status.to_le_bytes();
        [m0, m1, m2, m3, m4, m5, s0, s1]
    }
}

impl<B: NetBackend> VirtioDevice for Net<B> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        OFFERED_FEATURES
    }
    fn num_queues(&self) -> u16 {
        2
    }
    fn queue_max(&self, _queue: u16) -> u16 {
        QUEUE_SIZE_MAX
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }
    fn ack_features(&mut self, features: u64) {
        self.mrg = features & VIRTIO_NET_F_MRG_RXBUF != 0;
        self.driver_active = true;
    }
    fn notify(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        let used = match queue {
            RECEIVEQ => self.deliver(queues, mem)?,
            TRANSMITQ => self.transmit(queues, mem)?,
            _ => false,
        };
        Ok(NotifyResult {
            used_buffers: used,
            config_changed: false,
        })
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        let tx = self.transmit(queues, mem)?;
        let rx = self.deliver(queues, mem)?;
        Ok(NotifyResult {
            used_buffers: tx || rx,
            config_changed: false,
        })
    }
    fn reset(&mut self) {
        self.held.clear();
        let dropped = self.rx.clear() as u64;
        self.stats.rx_dropped = self.stats.rx_dropped.saturating_add(dropped);
        self.driver_active = false;
        self.mrg = false;
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

    #[test]
    fn header_round_trip_and_layout() {
        // net: Device Operation — struct virtio_net_hdr field order, all
        // little-endian, 12 bytes with num_buffers.
        let h = NetHeader {
            flags: 1,
            gso_type: 4,
            hdr_len: 0x0302,
            gso_size: 0x0504,
            csum_start: 0x0706,
            csum_offset: 0x0908,
            num_buffers: 0x0b0a,
        };
        let b = h.to_bytes();
        assert_eq!(b, [1, 4, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(NetHeader::from_bytes(&b), h);
    }

    #[test]
    fn mac_from_seed_is_local_unicast_and_stable() {
        // net: Device configuration layout, driver requirements — a
        // locally administered address (IEEE 802 bit 1 of byte 0 set),
        // unicast (bit 0 clear).
        let mut seen = alloc::collections::BTreeSet::new();
        for i in 0..2000u32 {
            let m = mac_from_seed(&i.to_le_bytes());
            assert_eq!(m[0] & 0x03, 0x02, "{m:02x?}");
            seen.insert(m);
        }
        assert_eq!(seen.len(), 2000, "no collisions in a small sample");
        assert_eq!(mac_from_seed(b"web\0\x01\x00"), mac_for_nic("web", 1));
        assert_ne!(mac_for_nic("web", 0), mac_for_nic("web", 1));
        assert_ne!(mac_for_nic("web", 0), mac_for_nic("db", 0));
        assert_eq!(mac_from_seed(b""), mac_from_seed(b""));
        // Pinned: the address of a VM must not change between builds.
        assert_eq!(mac_for_nic("vm0", 0), PINNED_VM0_NIC0);
    }

    const PINNED_VM0_NIC0: [u8; 6] = [0xbe, 0x9f, 0x98, 0x79, 0xc8, 0x7c];

    #[test]
    fn frame_queue_is_bounded() {
        let mut q = FrameQueue::new(2);
        assert!(q.tx_ready());
        assert!(q.push(b"a"));
        q.transmit(b"b");
        assert!(q.is_full() && !q.tx_ready());
        assert!(!q.push(b"c"));
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.front(), Some(&b"a"[..]));
        assert_eq!(q.pop().as_deref(), Some(&b"a"[..]));
        assert_eq!(q.len(), 1);
        assert_eq!(q.clear(), 1);
        assert!(q.is_empty());
        let mut zero = FrameQueue::new(0);
        assert!(!zero.tx_ready());
        assert!(!zero.push(b"x"));
    }

    struct Null;
    impl NetBackend for Null {
        fn transmit(&mut self, _frame: &[u8]) {}
    }

    #[test]
    fn receive_validates_and_bounds() {
        let mut n = Net::new([2, 0, 0, 0, 0, 1], Null);
        // No driver yet: dropped.
        assert!(!n.receive(&[0; 60]));
        n.ack_features(VIRTIO_NET_F_MRG_RXBUF);
        assert!(n.mergeable_rx());
        assert!(!n.receive(&[0; MIN_FRAME_LEN - 1]));
        assert!(!n.receive(&[0; MAX_FRAME_LEN + 1]));
        assert!(n.receive(&[0; MIN_FRAME_LEN]));
        assert!(n.receive(&[0; MAX_FRAME_LEN]));
        for _ in 2..RX_QUEUE_FRAMES {
            assert!(n.receive(&[0; 60]));
        }
        assert!(!n.receive(&[0; 60]));
        assert_eq!(n.pending_rx(), RX_QUEUE_FRAMES);
        assert_eq!(n.stats().rx_dropped, 4);
        n.reset();
        assert_eq!(n.pending_rx(), 0);
        assert_eq!(n.stats().rx_dropped, 4 + RX_QUEUE_FRAMES as u64);
        assert!(!n.mergeable_rx());
        assert!(!n.receive(&[0; 60]));
    }

    #[test]
    fn config_space() {
        // net: Device configuration layout — mac[6] then le16 status.
        let mut n = Net::new([0x02, 0x11, 0x22, 0x33, 0x44, 0x55], Null);
        let mut c = [0xffu8; 12];
        n.read_config(0, &mut c);
        assert_eq!(c, [0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 1, 0, 0, 0, 0, 0]);
        assert!(!n.set_link_up(true));
        assert!(n.set_link_up(false));
        n.read_config(6, &mut c[..2]);
        assert_eq!(&c[..2], &[0, 0]);
        assert!(!n.write_config(0, &[0; 4]));
        assert_eq!(n.mac(), [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    }
}
