//! `rivet-virtio` virtio-net and virtio-fs: the hostile driver of
//! `virtqueue` (`rivet_fuzz::virtio::Driver`: feature negotiation, queue
//! setup, raw and garbage descriptors, loops, out-of-range addresses, huge
//! lengths, indirect tables, notifications, resets), plus per device:
//!
//! * **net**: transmit chains (12-byte header with or without offload
//!   requests, frames of every length, split anywhere, stray writable
//!   parts) and receive buffers of every size, with and without
//!   `MRG_RXBUF`; from the switch side, frames of random sizes through
//!   `Net::receive` (single, bursts past the queue limit, the guest's own
//!   frames looped back), a backend that stops taking frames, a link that
//!   flaps.
//! * **fs**: FUSE requests with bad headers, `len` fields that lie,
//!   extension lengths, every opcode class (relayed, local INIT/DESTROY,
//!   FORGET/BATCH_FORGET with lying counts, INTERRUPT, unsupported,
//!   unknown), truncated bodies and reply buffers, on both queues; and an
//!   `FsBackend` (the host's virtiofsd) whose replies come from the input:
//!   short, oversize, lying lengths, wrong uniques, errors in and out of
//!   range, replies shorter than they claim, I/O errors and timeouts (the
//!   trait is synchronous: a virtiofsd that never answers is a timeout).
//!   The backend session itself comes from the input too, sometimes
//!   through `parse_init_reply` of a fuzzed `FUSE_INIT` reply.
//!
//! Checked, beyond the driver's checks (transport invariants, nothing
//! outside RAM touched, chains valid, device writes only into writable
//! buffers it holds, used lengths within what the driver gave):
//!
//! * net: only 14..=1518-byte frames reach the backend, and only while it
//!   is ready and the link is up; transmit chains are returned with length
//!   0; a receive buffer returned empty is one too small for any frame; a
//!   frame's buffers are returned together, all but the last filled
//!   completely, with the header's `num_buffers`, and carry a frame that
//!   was queued, in order; counters add up (frames offered = delivered +
//!   dropped + pending; transmit chains returned = sent + dropped).
//! * fs: the backend only gets whole, validated, relayable requests
//!   (`len` = request length, within the maximum, fresh even uniques below
//!   2^63), never INIT/DESTROY, a zeroed reply buffer, and no call after a
//!   timeout in the same notify/poll; every reply the guest sees has a
//!   header whose `len` is the used length, an error in -511..=0 and the
//!   guest's own `unique`; the hiprio queue never gets a success reply;
//!   the INIT reply grants only relayable flags and limits that fit;
//!   counters match what the backend saw (relayed, forgets, errors, and
//!   the replies it knows to be malformed).
//!
//! Input: one byte picks the device, then its setup, then operations
//! until the bytes run out (see `rivet_fuzz::virtio::Driver::step`; op 12
//! is a device request, op 14 a host action).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivet_fuzz::virtio::{run, split, CallReport, Driver, Model, HEAP};
use rivet_fuzz::Input;
use rivet_guest_mem::GuestMemory;
use rivet_virtio::fs::{
    build_init_request, parse_init_reply, FsBackend, FsBackendError, FsDevice, FsError, FsStats,
    InitInfo, HIPRIO_QUEUE, INIT_REQUEST_LEN, MIN_MAX_REQUEST, REQUEST_QUEUE,
};
use rivet_virtio::fuse::{self, classify, InHeader, InitIn, InitOut, OpClass, OutHeader};
use rivet_virtio::net::{
    FrameQueue, Net, NetBackend, NetHeader, HDR_LEN, MAX_FRAME_LEN, MIN_FRAME_LEN, RECEIVEQ,
    RX_QUEUE_FRAMES, TRANSMITQ, VIRTIO_NET_HDR_F_NEEDS_CSUM,
};
use rivet_virtio::VirtioDevice;
use std::collections::VecDeque;

// ------------------------------------------------------------------ net

/// The device's outbox (as in the hypervisor, a bounded `FrameQueue` the
/// switch drains), with a gate that stops it taking frames.
struct Wire {
    out: FrameQueue,
    open: bool,
    sent: u64,
    sent_bytes: u64,
}

impl NetBackend for Wire {
    fn transmit(&mut self, frame: &[u8]) {
        assert!(
            (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()),
            "{}-byte frame transmitted",
            frame.len()
        );
        assert!(
            self.tx_ready(),
            "frame transmitted while the backend refuses"
        );
        self.sent += 1;
        self.sent_bytes += frame.len() as u64;
        assert!(self.out.push(frame));
    }
    fn tx_ready(&self) -> bool {
        self.open && !self.out.is_full()
    }
}

#[derive(Default)]
struct NetModel {
    /// `Net::receive` calls.
    offered: u64,
    /// Copies of the frames the device accepted and still queues, in order.
    queued: VecDeque<Vec<u8>>,
    /// At the start of the current call: frames sent, frames queued.
    mark: (u64, usize),
}

fn frame_len(input: &mut Input) -> usize {
    match input.u8() % 12 {
        0 => 0,
        1 => 13,
        2 => 14,
        3 => 15,
        4 => 1514,
        5 => 1518,
        6 => 1519,
        7 => input.below(2100) as usize,
        8 => 64,
        _ => 14 + input.below(200) as usize,
    }
}

/// One of `from`, or (one time in `from.len() + 1`) `other`'s value.
fn pick_or<T: Copy>(input: &mut Input, from: &[T], other: impl FnOnce(&mut Input) -> T) -> T {
    match from.get(input.below(from.len() as u64 + 1) as usize) {
        Some(&v) => v,
        None => other(input),
    }
}

/// `n` bytes: from the input while it lasts, then a pattern.
fn bytes(input: &mut Input, n: usize, seed: u8) -> Vec<u8> {
    let mut v = input.bytes(n.min(64)).to_vec();
    let k = v.len();
    v.extend((k..n).map(|i| (i as u8).wrapping_mul(31) ^ seed));
    v
}

impl NetModel {
    fn receive(d: &mut Driver<Self>, frame: &[u8]) {
        let net = d.dev.device_mut();
        let link = net.link_up();
        let ok = net.receive(frame);
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()) || !link {
            assert!(!ok, "{}-byte frame accepted (link up: {link})", frame.len());
        }
        d.model.offered += 1;
        if ok {
            d.model.queued.push_back(frame.to_vec());
        }
    }
}

impl Model for NetModel {
    type Device = Net<Wire>;

    fn request(d: &mut Driver<Self>, input: &mut Input) {
        if input.u8() & 1 == 0 {
            // Transmit: header + frame, cut anywhere.
            let flags = input.pick(&[0u8, 0, 0, 2, VIRTIO_NET_HDR_F_NEEDS_CSUM, 0x80, 0xff]);
            let gso = input.pick(&[0u8, 0, 0, 0, 1, 3, 4, 0x80]);
            let hdr = NetHeader {
                flags,
                gso_type: gso,
                hdr_len: input.u16(),
                num_buffers: input.u16(),
                ..NetHeader::default()
            };
            let n = frame_len(input);
            let mut b = hdr.to_bytes().to_vec();
            b.extend(bytes(input, n, 0x11));
            let at = HEAP + 0x40 * input.below(0x3c0);
            let _ = d.mem.write(at, &b);
            let pieces = 1 + input.below(3) as usize;
            let mut segs = split(input, at, b.len() as u32, pieces, false);
            if input.u8() < 0x20 {
                segs.push((HEAP + 0xe000, 8, true));
            }
            let q = if input.u8() < 0xf0 {
                TRANSMITQ
            } else {
                RECEIVEQ
            };
            d.chain_to(q, input, &segs);
        } else {
            // Receive buffers of every size.
            let total = match input.u8() % 10 {
                0 => 1530,
                1 => 1526,
                2 => 26,
                3 => 25,
                4 => 12,
                5 => 11,
                6 => 100,
                7 => 64,
                8 => 4096,
                _ => input.below(0x2000) as u32,
            };
            let at = HEAP + 0x800 * input.below(0x1e);
            let pieces = 1 + input.below(4) as usize;
            let mut segs = Vec::new();
            if input.u8() < 0x20 {
                segs.push((HEAP + 0xe800, 16, false));
            }
            segs.extend(split(input, at, total, pieces, true));
            let q = if input.u8() < 0xf0 {
                RECEIVEQ
            } else {
                TRANSMITQ
            };
            d.chain_to(q, input, &segs);
        }
    }

    fn host_op(d: &mut Driver<Self>, input: &mut Input) {
        match input.u8() % 8 {
            0 | 1 => {
                let n = frame_len(input);
                let f = bytes(input, n, 0x22);
                Self::receive(d, &f);
            }
            2 => {
                // A burst, past the device's queue limit.
                let k = input.below(80);
                let seed = input.u8();
                for i in 0..k {
                    let n = 14 + ((i * 97 + u64::from(seed)) % 1505) as usize;
                    let f: Vec<u8> = (0..n).map(|j| (j as u8) ^ (i as u8) ^ seed).collect();
                    Self::receive(d, &f);
                }
            }
            3 => {
                // The switch loops the guest's frames back.
                while let Some(f) = d.dev.device_mut().backend_mut().out.pop() {
                    Self::receive(d, &f);
                }
            }
            4 => {
                d.dev.device_mut().backend_mut().out.clear();
            }
            5 => {
                let w = d.dev.device_mut().backend_mut();
                w.open = !w.open;
            }
            6 => {
                let up = input.u8() < 0xa0;
                if d.dev.device_mut().set_link_up(up) {
                    d.dev.config_changed();
                }
            }
            _ => {
                let n = frame_len(input);
                let f = bytes(input, n, 0x33);
                Self::receive(d, &f);
                let _ = d.poll();
            }
        }
    }

    fn before_call(d: &mut Driver<Self>) {
        d.model.mark = (d.dev.device().backend().sent, d.dev.device().pending_rx());
    }

    fn after_reset(d: &mut Driver<Self>) {
        assert_eq!(d.dev.device().pending_rx(), 0);
        assert_eq!(d.dev.device().held_rx_buffers(), 0);
        d.model.queued.clear();
    }

    fn after_call(d: &mut Driver<Self>, report: &CallReport) {
        let net = d.dev.device();
        let (sent, pending) = d.model.mark;
        if !net.link_up() {
            assert_eq!(
                net.backend().sent,
                sent,
                "frame sent while the link is down"
            );
        }
        // Frames leave the device's queue from the front (delivered or
        // dropped); delivered ones must be among them, in order.
        let gone = pending
            .checked_sub(net.pending_rx())
            .expect("frames appeared in the receive queue during a call");
        let mut candidates: VecDeque<Vec<u8>> = d.model.queued.drain(..gone).collect();
        let mrg = net.mergeable_rx();
        for (q, batch) in &report.batches {
            match *q {
                TRANSMITQ => {
                    for u in batch {
                        assert_eq!(u.len, 0, "transmit chain returned with a length");
                    }
                }
                RECEIVEQ => {
                    let min = if mrg {
                        HDR_LEN
                    } else {
                        HDR_LEN + MIN_FRAME_LEN
                    } as u32;
                    if batch.iter().any(|u| u.len == 0) {
                        assert_eq!(batch.len(), 1, "an empty buffer returned with others");
                        assert!(
                            batch[0].chain.writable < min,
                            "a {}-byte receive buffer returned empty",
                            batch[0].chain.writable
                        );
                        continue;
                    }
                    if !mrg {
                        assert_eq!(
                            batch.len(),
                            1,
                            "a frame in several buffers without MRG_RXBUF"
                        );
                    }
                    for u in &batch[..batch.len() - 1] {
                        assert_eq!(
                            u.len, u.chain.writable,
                            "a frame's buffer left partly unused"
                        );
                    }
                    let total: u32 = batch.iter().map(|u| u.len).sum();
                    let flen = total as usize - HDR_LEN;
                    assert!((MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&flen));
                    if report.clean {
                        let mut all = Vec::new();
                        for u in batch {
                            let mut b = vec![0u8; u.len as usize];
                            assert_eq!(u.chain.gather(&d.mem, true, 0, &mut b), b.len());
                            all.extend(b);
                        }
                        let h = NetHeader::from_bytes(all[..HDR_LEN].try_into().unwrap());
                        assert_eq!(
                            h,
                            NetHeader {
                                num_buffers: batch.len() as u16,
                                ..NetHeader::default()
                            },
                            "receive header"
                        );
                        let frame = &all[HDR_LEN..];
                        loop {
                            let c = candidates
                                .pop_front()
                                .expect("delivered a frame that was not queued (or out of order)");
                            if c == frame {
                                break;
                            }
                        }
                    }
                }
                _ => panic!("used element on queue {q}"),
            }
        }
    }

    fn writes_into(queue: u16) -> bool {
        queue == RECEIVEQ
    }

    fn check(d: &Driver<Self>) {
        let net = d.dev.device();
        let s = net.stats();
        let w = net.backend();
        assert_eq!((s.tx_frames, s.tx_bytes), (w.sent, w.sent_bytes));
        assert_eq!(
            s.tx_frames + s.tx_dropped,
            d.used_count[usize::from(TRANSMITQ)],
            "transmit chains returned vs counted"
        );
        assert_eq!(
            d.model.offered,
            s.rx_frames + s.rx_dropped + net.pending_rx() as u64,
            "frames offered vs delivered + dropped + pending"
        );
        assert!(net.pending_rx() <= RX_QUEUE_FRAMES);
        assert_eq!(d.model.queued.len(), net.pending_rx());
        let rxq = &d.dev.queues()[usize::from(RECEIVEQ)];
        if rxq.ready() {
            assert!(net.held_rx_buffers() <= usize::from(rxq.size()));
        }
        let mut c = [0u8; 12];
        net.read_config(0, &mut c);
        assert_eq!(c[..6], net.mac());
        assert_eq!(
            u16::from_le_bytes([c[6], c[7]]),
            u16::from(net.link_up()),
            "status"
        );
        assert_eq!(c[8..], [0; 4]);
    }
}

// ------------------------------------------------------------------- fs

/// One scripted backend answer (see `Server::answer`).
#[derive(Debug, Clone, Copy)]
struct Spec {
    kind: u8,
    body: u32,
    error: i32,
    lie: i64,
    xor: u64,
}

impl Spec {
    fn from(input: &mut Input) -> Spec {
        Spec {
            kind: input.u8() % 10,
            body: match input.u8() % 4 {
                0 => input.u32(),
                _ => input.below(300) as u32,
            },
            error: pick_or(input, &[-2, -5, -22, 0, 1, -511, -512, i32::MIN], |i| {
                i.u32() as i32
            }),
            lie: pick_or(input, &[1, -1, 16, -16], |i| i64::from(i.u32())),
            xor: pick_or(input, &[1, 2, 1 << 63], |i| i.u64()),
        }
    }
}

/// The host's virtiofsd as the device sees it, answering from a script.
struct Server {
    script: VecDeque<Spec>,
    max_request: usize,
    noreply_fails: bool,
    /// A call timed out during the current notify/poll.
    stalled: bool,
    last_unique: u64,
    calls: u64,
    forgets: u64,
    errors: u64,
    /// Replies that break the rules (the device must refuse them).
    bad: u64,
    session_ends: u64,
}

impl Server {
    fn new() -> Self {
        Server {
            script: VecDeque::new(),
            max_request: 0,
            noreply_fails: false,
            stalled: false,
            last_unique: 0,
            calls: 0,
            forgets: 0,
            errors: 0,
            bad: 0,
            session_ends: 0,
        }
    }

    /// Checks what every request the device sends must satisfy.
    fn request(&mut self, request: &[u8]) -> InHeader {
        assert!(
            !self.stalled,
            "backend used again after a timeout in the same call"
        );
        let h = InHeader::parse(request).expect("a whole fuse_in_header");
        assert_eq!(
            h.len as usize,
            request.len(),
            "request length vs header len"
        );
        assert!(request.len() <= self.max_request);
        assert!(usize::from(h.total_extlen) * 8 <= request.len() - InHeader::SIZE);
        assert!(
            h.unique != 0 && h.unique & 1 == 0 && h.unique < 1 << 63,
            "unique {:#x} (bit 0 and bit 63 belong to the kernel)",
            h.unique
        );
        assert!(h.unique > self.last_unique, "unique reused");
        self.last_unique = h.unique;
        h
    }

    /// Writes the reply `spec` describes; returns the length claimed.
    fn answer(
        &mut self,
        spec: Spec,
        unique: u64,
        reply: &mut [u8],
    ) -> Result<usize, FsBackendError> {
        let cap = reply.len();
        let body = spec.body as usize % 512;
        let put = |reply: &mut [u8], len: u32, error: i32, unique: u64, body: usize| {
            let h = OutHeader { len, error, unique }.to_bytes();
            let n = (OutHeader::SIZE + body).min(reply.len());
            for (i, b) in reply[..n].iter_mut().enumerate() {
                *b = if i < OutHeader::SIZE {
                    h[i]
                } else {
                    (i as u8) ^ 0xa5
                };
            }
        };
        let n = match spec.kind {
            0 => {
                let n = OutHeader::SIZE + body;
                put(reply, n as u32, 0, unique, body);
                n
            }
            1 => {
                put(reply, cap as u32, 0, unique, cap - OutHeader::SIZE);
                cap
            }
            2 => {
                let n = OutHeader::SIZE + body % 64;
                put(reply, n as u32, spec.error, unique, body % 64);
                n
            }
            3 => {
                let n = OutHeader::SIZE + body % 256;
                put(reply, (n as i64 + spec.lie) as u32, 0, unique, body % 256);
                n
            }
            4 => {
                let n = OutHeader::SIZE + body % 256;
                put(reply, n as u32, 0, unique ^ spec.xor, body % 256);
                n
            }
            5 => {
                let n = body % OutHeader::SIZE;
                let h = OutHeader {
                    len: n as u32,
                    error: 0,
                    unique,
                }
                .to_bytes();
                reply[..n].copy_from_slice(&h[..n]);
                n
            }
            6 => {
                let n = if spec.body == u32::MAX {
                    usize::MAX
                } else {
                    cap + 1 + spec.body as usize
                };
                put(reply, n as u32, 0, unique, cap);
                n
            }
            7 => {
                self.errors += 1;
                self.stalled = true;
                return Err(FsBackendError::Timeout);
            }
            8 => {
                self.errors += 1;
                return Err(FsBackendError::Io);
            }
            _ => {
                // Claims a body it never wrote.
                let n = OutHeader::SIZE + body;
                put(reply, n as u32, 0, unique, 0);
                n
            }
        };
        // The rule of `fs.rs` ("Relaying"), checked independently.
        let good = n >= OutHeader::SIZE
            && n <= cap
            && OutHeader::parse(reply).is_some_and(|h| {
                h.len as usize == n && h.unique == unique && (-511..=0).contains(&h.error)
            });
        if !good {
            self.bad += 1;
        }
        Ok(n)
    }
}

impl FsBackend for Server {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, FsBackendError> {
        let h = self.request(request);
        assert_eq!(
            classify(h.opcode),
            OpClass::Relay,
            "opcode {} relayed",
            h.opcode
        );
        assert!(reply.len() >= OutHeader::SIZE && reply.len() <= self.max_request);
        assert!(
            reply.iter().all(|&b| b == 0),
            "reply buffer holds stale bytes"
        );
        self.calls += 1;
        let spec = self.script.pop_front().unwrap_or(Spec {
            kind: 0,
            body: (self.calls * 7 % 48) as u32,
            error: 0,
            lie: 0,
            xor: 0,
        });
        self.answer(spec, h.unique, reply)
    }

    fn send_noreply(&mut self, request: &[u8]) -> Result<(), FsBackendError> {
        let h = self.request(request);
        let args = request.len() - InHeader::SIZE;
        match h.opcode {
            fuse::FUSE_FORGET => assert!(args >= fuse::FORGET_IN_SIZE),
            fuse::FUSE_BATCH_FORGET => {
                assert!(args >= fuse::BATCH_FORGET_IN_SIZE);
                let count = u32::from_le_bytes(request[40..44].try_into().unwrap()) as usize;
                assert!(count * fuse::FORGET_ONE_SIZE <= args - fuse::BATCH_FORGET_IN_SIZE);
            }
            op => panic!("opcode {op} sent without a reply"),
        }
        if self.noreply_fails {
            self.errors += 1;
            Err(FsBackendError::Io)
        } else {
            self.forgets += 1;
            Ok(())
        }
    }

    fn session_end(&mut self) {
        self.session_ends += 1;
    }
}

#[derive(Default)]
struct FsModel {
    /// At the start of the current call: stats, session, session ends.
    mark: (FsStats, bool, u64),
}

const OPS: [u32; 16] = [
    fuse::FUSE_INIT,
    fuse::FUSE_LOOKUP,
    fuse::FUSE_GETATTR,
    fuse::FUSE_READ,
    fuse::FUSE_WRITE,
    fuse::FUSE_FORGET,
    fuse::FUSE_BATCH_FORGET,
    fuse::FUSE_DESTROY,
    fuse::FUSE_INTERRUPT,
    fuse::FUSE_NOTIFY_REPLY,
    fuse::FUSE_SETLKW,
    fuse::FUSE_SETUPMAPPING,
    fuse::CUSE_INIT,
    fuse::FUSE_STATFS,
    fuse::FUSE_OPEN,
    fuse::FUSE_RELEASE,
];

impl Model for FsModel {
    type Device = FsDevice<Server>;

    fn request(d: &mut Driver<Self>, input: &mut Input) {
        let opcode = if input.u8() < 0xf0 {
            input.pick(&OPS)
        } else {
            input.u32()
        };
        let body: Vec<u8> = match opcode {
            fuse::FUSE_INIT => {
                let init = InitIn {
                    major: input.pick(&[7, 7, 7, 8, 6, 0, u32::MAX]),
                    minor: pick_or(input, &[31, 38, 41, 27, 26, 99, 0], |i| i.u32()),
                    max_readahead: input.u32(),
                    flags: input.u32(),
                    flags2: input.u32(),
                };
                let n = input.pick(&[64usize, 64, 16, 8, 7, 0, 100]);
                let mut b = init.to_bytes().to_vec();
                b.resize(n, 0);
                b
            }
            fuse::FUSE_FORGET => {
                let n = input.pick(&[8usize, 8, 4, 0, 16]);
                bytes(input, n, 1)
            }
            fuse::FUSE_BATCH_FORGET => {
                let k = input.below(4) as u32;
                let count = if input.bool() { k } else { input.u32() };
                let mut b = count.to_le_bytes().to_vec();
                b.extend([0; 4]);
                b.extend(bytes(input, 16 * k as usize, 2));
                b
            }
            fuse::FUSE_WRITE => {
                let n = input.below(300) as usize;
                let mut b = vec![0u8; fuse::WRITE_IN_SIZE];
                b[16..20].copy_from_slice(&(n as u32).to_le_bytes());
                b.extend(bytes(input, n, 3));
                b
            }
            _ => {
                let n = pick_or(input, &[0usize, 8, 16, 40, 64], |i| i.below(256) as usize);
                bytes(input, n, 4)
            }
        };
        let honest = InHeader::SIZE + body.len();
        let len = match input.u8() % 8 {
            0..=3 => honest as u32,
            4 => (honest + 1 + input.below(16) as usize) as u32,
            5 => input.below(InHeader::SIZE as u64) as u32,
            6 => input.u32(),
            _ => honest.saturating_sub(1 + input.below(48) as usize) as u32,
        };
        let h = InHeader {
            len,
            opcode,
            unique: match input.u8() % 4 {
                0 => input.u64(),
                _ => input.below(64),
            },
            nodeid: input.below(4),
            uid: 1000,
            gid: 1000,
            pid: 42,
            total_extlen: if input.u8() < 0xe0 { 0 } else { input.u16() },
            padding: 0,
        };
        let mut req = h.to_bytes().to_vec();
        req.extend(body);
        // Sometimes the readable part ends early (a truncated header or
        // body).
        let readable = if input.u8() < 0xe0 {
            req.len()
        } else {
            input.below(req.len() as u64 + 1) as usize
        };
        let at = HEAP + 0x200 * input.below(0x40);
        let _ = d.mem.write(at, &req[..readable]);
        let pieces = 1 + input.below(3) as usize;
        let mut segs = split(input, at, readable as u32, pieces, false);
        let out = match input.u8() % 10 {
            0 => 0,
            1 => 15,
            2 => 16,
            3 => 79,
            4 => 100,
            5 => 0x1000,
            6 => 0x2200,
            7 => input.below(0x4000) as u32,
            _ => 80,
        };
        let out_at = HEAP + 0x8000 + 0x100 * input.below(0x40);
        let pieces = 1 + input.below(3) as usize;
        segs.extend(split(input, out_at, out, pieces, true));
        let forget = matches!(opcode, fuse::FUSE_FORGET | fuse::FUSE_BATCH_FORGET);
        let q = match (input.u8() < 0xe0, forget) {
            (true, true) | (false, false) => HIPRIO_QUEUE,
            _ => REQUEST_QUEUE,
        };
        d.chain_to(q, input, &segs);
    }

    fn host_op(d: &mut Driver<Self>, input: &mut Input) {
        match input.u8() % 4 {
            0 | 1 => {
                for _ in 0..1 + input.below(4) {
                    let s = Spec::from(input);
                    d.dev.device_mut().backend_mut().script.push_back(s);
                }
            }
            2 => {
                let b = d.dev.device_mut().backend_mut();
                b.noreply_fails = !b.noreply_fails;
            }
            _ => {
                let s = Spec::from(input);
                d.dev.device_mut().backend_mut().script.push_back(s);
                let _ = d.poll();
            }
        }
    }

    fn before_call(d: &mut Driver<Self>) {
        let fs = d.dev.device_mut();
        fs.backend_mut().stalled = false;
        d.model.mark = (
            fs.stats(),
            fs.session().is_some(),
            fs.backend().session_ends,
        );
    }

    fn after_reset(d: &mut Driver<Self>) {
        let fs = d.dev.device();
        let (_, had, ends) = d.model.mark;
        assert!(fs.session().is_none());
        assert_eq!(fs.backend().session_ends, ends + u64::from(had));
    }

    fn after_call(d: &mut Driver<Self>, report: &CallReport) {
        let fs = d.dev.device();
        let s = fs.stats();
        let (s0, had, ends) = d.model.mark;
        if s.relayed > s0.relayed && !had {
            assert!(s.local > s0.local, "relayed without a FUSE_INIT");
        }
        assert!(
            fs.backend().session_ends - ends <= s.local - s0.local,
            "session ended without INIT/DESTROY"
        );
        for (q, batch) in &report.batches {
            assert!(*q == HIPRIO_QUEUE || *q == REQUEST_QUEUE);
            assert_eq!(batch.len(), 1, "fs returns chains one by one");
            let u = &batch[0];
            assert!(
                u.len == 0 || u.len >= OutHeader::SIZE as u32,
                "used length {}",
                u.len
            );
            if *q == HIPRIO_QUEUE {
                assert!(u.len == 0 || u.len == OutHeader::SIZE as u32);
            }
            if !report.clean || u.len == 0 {
                continue;
            }
            let mut out = vec![0u8; u.len as usize];
            assert_eq!(u.chain.gather(&d.mem, true, 0, &mut out), out.len());
            let oh = OutHeader::parse(&out).unwrap();
            assert_eq!(oh.len, u.len, "reply header len vs used length");
            assert!((-511..=0).contains(&oh.error), "reply error {}", oh.error);
            if *q == HIPRIO_QUEUE {
                assert!(oh.error < 0, "hiprio request answered with success");
            }
            let mut req = [0u8; InHeader::SIZE + InitIn::SIZE];
            let got = u.chain.gather(&d.mem, false, 0, &mut req);
            assert!(got >= 16, "a reply to a request with no unique");
            let unique = u64::from_le_bytes(req[8..16].try_into().unwrap());
            assert_eq!(oh.unique, unique, "reply carries another unique");
            let ih = InHeader::parse(&req[..got]);
            if ih.is_some_and(|h| h.opcode == fuse::FUSE_INIT) && oh.error == 0 {
                assert_eq!(u.len as usize, OutHeader::SIZE + InitOut::SIZE);
                let o = InitOut::parse(&out[OutHeader::SIZE..]).unwrap();
                assert_eq!(o.major, fuse::KERNEL_VERSION);
                assert_eq!(o.map_alignment, 0);
                let major = u32::from_le_bytes(req[40..44].try_into().unwrap());
                if major > fuse::KERNEL_VERSION {
                    assert_eq!((o.flags, o.flags2, o.max_write), (0, 0, 0));
                } else {
                    let b = fs.backend_init();
                    assert!(o.minor >= fuse::MIN_MINOR_VERSION && o.minor <= b.minor);
                    assert_eq!(
                        o.flags64() & !(fuse::RELAY_SUPPORTED_FLAGS | fuse::FUSE_INIT_EXT),
                        0,
                        "INIT grants {:#x}",
                        o.flags64()
                    );
                    assert_eq!(o.flags64() & !b.flags & !fuse::FUSE_INIT_EXT, 0);
                    let room = fs.max_request() - InHeader::SIZE - fuse::WRITE_IN_SIZE;
                    assert!(o.max_write as usize <= room);
                    assert!(usize::from(o.max_pages) * fuse::PAGE_SIZE <= room);
                }
            }
        }
    }

    fn check(d: &Driver<Self>) {
        let fs = d.dev.device();
        let s = fs.stats();
        let b = fs.backend();
        assert_eq!(s.relayed, b.calls, "relayed");
        assert_eq!(s.forgets, b.forgets, "forgets");
        assert_eq!(s.backend_errors, b.errors, "backend errors");
        assert_eq!(s.bad_replies, b.bad, "malformed replies refused");
        assert_eq!(
            s.requests,
            d.used_count[usize::from(HIPRIO_QUEUE)] + d.used_count[usize::from(REQUEST_QUEUE)],
            "requests vs chains returned"
        );
        if let Some(sess) = fs.session() {
            let bi = fs.backend_init();
            assert_eq!(sess.flags & !(fuse::RELAY_SUPPORTED_FLAGS & bi.flags), 0);
            assert!(sess.minor >= fuse::MIN_MINOR_VERSION && sess.minor <= bi.minor);
            let room = fs.max_request() - InHeader::SIZE - fuse::WRITE_IN_SIZE;
            assert!(sess.max_write as usize <= room);
            assert!(usize::from(sess.max_pages) * fuse::PAGE_SIZE <= room);
        }
        let mut c = [0u8; 44];
        fs.read_config(0, &mut c);
        assert_eq!(c[..36], fs.tag()[..]);
        assert_eq!(c[36..], [1, 0, 0, 0, 0, 0, 0, 0]);
    }
}

/// The backend session: a valid default, fuzzed fields, or whatever
/// `parse_init_reply` makes of a fuzzed reply.
fn backend_info(input: &mut Input) -> InitInfo {
    let good = InitInfo {
        major: 7,
        minor: 38,
        max_readahead: 1 << 17,
        flags: fuse::RELAY_SUPPORTED_FLAGS,
        max_background: 16,
        congestion_threshold: 12,
        max_write: 1 << 20,
        time_gran: 1,
        max_pages: 256,
    };
    let parsed = |reply: &[u8]| match parse_init_reply(reply) {
        Ok(i) => {
            let h = OutHeader::parse(reply).unwrap();
            assert_eq!(h.len as usize, reply.len());
            assert_eq!(h.error, 0);
            assert_eq!(i.major, fuse::KERNEL_VERSION);
            assert!(i.minor >= fuse::MIN_MINOR_VERSION && i.minor <= fuse::KERNEL_MINOR_VERSION);
            assert_eq!(i.flags & !fuse::RELAY_SUPPORTED_FLAGS, 0);
            if i.flags & fuse::FUSE_MAX_PAGES == 0 {
                assert_eq!(i.max_pages, 0);
            }
            i
        }
        Err(_) => good,
    };
    match input.u8() % 4 {
        0 => good,
        1 => InitInfo {
            major: input.pick(&[7, 7, 7, 8]),
            minor: input.below(50) as u32,
            max_readahead: input.u32(),
            flags: input.u64(),
            max_background: input.u16(),
            congestion_threshold: input.u16(),
            max_write: input.u32(),
            time_gran: input.u32(),
            max_pages: input.u16(),
        },
        2 => {
            let n = input.below(100) as usize;
            let raw = input.bytes(n).to_vec();
            parsed(&raw)
        }
        _ => {
            let out = InitOut {
                major: input.pick(&[7, 7, 8]),
                minor: input.pick(&[38, 41, 27, 26, 99]),
                max_readahead: input.u32(),
                flags: input.u32(),
                max_background: input.u16(),
                congestion_threshold: input.u16(),
                max_write: input.u32(),
                time_gran: 1,
                max_pages: input.u16(),
                map_alignment: input.u16(),
                flags2: input.u32(),
                max_stack_depth: 0,
            };
            let body = input.pick(&[64usize, 24, 23, 8, 40]);
            let mut r = OutHeader {
                len: (OutHeader::SIZE + body) as u32,
                error: input.pick(&[0, 0, 0, -38, 5]),
                unique: 2,
            }
            .to_bytes()
            .to_vec();
            r.extend(&out.to_bytes()[..body]);
            if input.u8() < 0x20 {
                r.pop();
            }
            parsed(&r)
        }
    }
}

fn fs_device(input: &mut Input) -> FsDevice<Server> {
    let unique = input.u64();
    let req = build_init_request(unique);
    let h = InHeader::parse(&req).unwrap();
    assert_eq!(
        (h.len as usize, h.opcode, h.unique),
        (INIT_REQUEST_LEN, fuse::FUSE_INIT, unique)
    );
    let tag = input.pick(&["fuzz", "t", "0123456789abcdef0123456789abcdef0123"]);
    let info = backend_info(input);
    let max = MIN_MAX_REQUEST + input.below(0x2_0000) as usize;
    let dev = match FsDevice::new(tag, Server::new(), info) {
        Ok(dev) => dev,
        Err(e) => {
            assert!(
                info.major != 7 || info.minor < fuse::MIN_MINOR_VERSION,
                "refused {info:?}: {e:?}"
            );
            assert!(matches!(e, FsError::BackendVersion { .. }));
            FsDevice::new(
                tag,
                Server::new(),
                InitInfo {
                    major: 7,
                    minor: fuse::MIN_MINOR_VERSION,
                    ..info
                },
            )
            .unwrap()
        }
    }
    .with_max_request(max);
    let mut dev = dev;
    dev.backend_mut().max_request = dev.max_request();
    dev
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 2 {
        0 => {
            let mac = [
                0x02,
                input.u8(),
                input.u8(),
                input.u8(),
                input.u8(),
                input.u8(),
            ];
            let capacity = input.below(9) as usize;
            let wire = Wire {
                out: FrameQueue::new(capacity),
                open: true,
                sent: 0,
                sent_bytes: 0,
            };
            run(Net::new(mac, wire), NetModel::default(), &mut input);
        }
        _ => {
            let dev = fs_device(&mut input);
            run(dev, FsModel::default(), &mut input);
        }
    }
});
