//! virtio-fs end to end (fs.tex), through the MMIO transport with the test
//! driver and a fake backend that records what it is sent and answers from
//! a script.

mod common;

use common::*;
use rivet_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use rivet_virtio::fs::*;
use rivet_virtio::fuse::*;
use rivet_virtio::mmio::reg;
use rivet_virtio::{DeviceError, QueueError};
use std::collections::VecDeque;

const HI: u16 = HIPRIO_QUEUE;
const RQ: u16 = REQUEST_QUEUE;
/// Fill pattern of writable buffers, to see what the device wrote.
const UNTOUCHED: u8 = 0xee;

type ReplyFn = Box<dyn Fn(u64) -> Vec<u8>>;

enum Canned {
    /// A success reply with this body, echoing the request's unique.
    Ok(Vec<u8>),
    /// An error reply (positive errno) with this payload.
    Err(i32, Vec<u8>),
    /// Exactly these bytes, given the request's unique.
    Raw(ReplyFn),
    /// The backend fails.
    Fail(FsBackendError),
}

#[derive(Default)]
struct Fake {
    calls: Vec<Vec<u8>>,
    reply_caps: Vec<usize>,
    noreply: Vec<Vec<u8>>,
    script: VecDeque<Canned>,
    session_ends: usize,
    noreply_fails: bool,
}

fn out_bytes(len: usize, error: i32, unique: u64) -> Vec<u8> {
    OutHeader {
        len: len as u32,
        error,
        unique,
    }
    .to_bytes()
    .to_vec()
}

impl FsBackend for Fake {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, FsBackendError> {
        let h = InHeader::parse(request).expect("device sends whole headers");
        assert_eq!(h.len as usize, request.len(), "exactly len bytes");
        self.calls.push(request.to_vec());
        self.reply_caps.push(reply.len());
        let bytes = match self.script.pop_front().unwrap_or(Canned::Ok(Vec::new())) {
            Canned::Ok(body) => {
                let mut b = out_bytes(16 + body.len(), 0, h.unique);
                b.extend_from_slice(&body);
                b
            }
            Canned::Err(e, payload) => {
                let mut b = out_bytes(16 + payload.len(), -e, h.unique);
                b.extend_from_slice(&payload);
                b
            }
            Canned::Raw(f) => f(h.unique),
            Canned::Fail(e) => return Err(e),
        };
        let n = bytes.len().min(reply.len());
        reply[..n].copy_from_slice(&bytes[..n]);
        Ok(bytes.len())
    }
    fn send_noreply(&mut self, request: &[u8]) -> Result<(), FsBackendError> {
        self.noreply.push(request.to_vec());
        if self.noreply_fails {
            Err(FsBackendError::Io)
        } else {
            Ok(())
        }
    }
    fn session_end(&mut self) {
        self.session_ends += 1;
    }
}

type Dev = FsDevice<Fake>;

fn backend_info() -> InitInfo {
    InitInfo {
        major: 7,
        minor: 38,
        max_readahead: 0x2_0000,
        flags: FUSE_ASYNC_READ
            | FUSE_MAX_PAGES
            | FUSE_WRITEBACK_CACHE
            | FUSE_DO_READDIRPLUS
            | FUSE_SECURITY_CTX
            | FUSE_MAP_ALIGNMENT
            | FUSE_HAS_INODE_DAX
            | FUSE_POSIX_LOCKS,
        max_background: 64,
        congestion_threshold: 48,
        max_write: 0x10_0000,
        time_gran: 1,
        max_pages: 512,
    }
}

fn device() -> Dev {
    FsDevice::new("rivet-share", Fake::default(), backend_info()).unwrap()
}

/// Transport initialised, no FUSE session yet.
fn fs_with(dev: Dev) -> Harness<Dev> {
    Harness::init(dev, MODERN, 16)
}

fn fs() -> Harness<Dev> {
    fs_with(device())
}

/// Flags a Linux 6.x virtio-fs driver asks for (no DAX configured).
const LINUX_FLAGS: u64 = FUSE_ASYNC_READ
    | FUSE_POSIX_LOCKS
    | FUSE_ATOMIC_O_TRUNC
    | FUSE_EXPORT_SUPPORT
    | FUSE_BIG_WRITES
    | FUSE_DONT_MASK
    | FUSE_FLOCK_LOCKS
    | FUSE_AUTO_INVAL_DATA
    | FUSE_DO_READDIRPLUS
    | FUSE_READDIRPLUS_AUTO
    | FUSE_ASYNC_DIO
    | FUSE_WRITEBACK_CACHE
    | FUSE_PARALLEL_DIROPS
    | FUSE_MAX_PAGES
    | FUSE_SUBMOUNTS
    | FUSE_INIT_EXT
    | FUSE_SECURITY_CTX
    | FUSE_HAS_RESEND;

/// Transport initialised and the guest's FUSE_INIT answered.
fn fs_session() -> Harness<Dev> {
    let mut h = fs();
    let (used, out) = guest_init(&mut h, RQ, 7, 40, LINUX_FLAGS, 80);
    assert_eq!(used, 80);
    assert_eq!(reply_header(&out).error, 0);
    assert!(h.dev.device().session().is_some());
    h
}

fn in_header(len: usize, opcode: u32, unique: u64, nodeid: u64) -> Vec<u8> {
    InHeader {
        len: len as u32,
        opcode,
        unique,
        nodeid,
        uid: 1000,
        gid: 1000,
        pid: 77,
        ..InHeader::default()
    }
    .to_bytes()
    .to_vec()
}

fn reply_header(out: &[u8]) -> OutHeader {
    OutHeader::parse(out).unwrap()
}

/// Submits `readable` (as one segment) and a writable buffer of `out_len`
/// bytes (none if 0) on queue `q`; returns (used length, writable bytes).
fn submit(h: &mut Harness<Dev>, q: u16, readable: &[u8], out_len: u32) -> (u32, Vec<u8>) {
    let rd = h.buf(readable);
    let out = h.buf(&vec![UNTOUCHED; out_len as usize]);
    let mut segs = Vec::new();
    if !readable.is_empty() {
        segs.push(r(rd, readable.len() as u32));
    }
    if out_len > 0 {
        segs.push(w(out, out_len));
    }
    let head = h.add_chain(q, &segs);
    let e = h.kick(q);
    assert_eq!(e.error, None);
    let (id, len) = h.used(q).expect("request completed");
    assert_eq!(id, u32::from(head));
    assert_eq!(h.used(q), None);
    (len, h.read_bytes(out, out_len as usize))
}

/// A well-formed request: header with `len` = 40 + args.
fn request(
    h: &mut Harness<Dev>,
    q: u16,
    opcode: u32,
    unique: u64,
    nodeid: u64,
    args: &[u8],
    out_len: u32,
) -> (u32, Vec<u8>) {
    let mut b = in_header(40 + args.len(), opcode, unique, nodeid);
    b.extend_from_slice(args);
    submit(h, q, &b, out_len)
}

fn guest_init(
    h: &mut Harness<Dev>,
    q: u16,
    major: u32,
    minor: u32,
    flags: u64,
    out_len: u32,
) -> (u32, Vec<u8>) {
    let init = InitIn {
        major,
        minor,
        max_readahead: 0x8_0000,
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
    };
    request(h, q, FUSE_INIT, 0x10, 0, &init.to_bytes(), out_len)
}

fn init_out(out: &[u8]) -> InitOut {
    InitOut::parse(&out[16..80]).unwrap()
}

/// Asserts a header-only error reply to `unique`.
fn assert_error(used: u32, out: &[u8], unique: u64, errno: i32) {
    assert_eq!(used, 16);
    assert_eq!(
        reply_header(out),
        OutHeader {
            len: 16,
            error: -errno,
            unique
        }
    );
    assert!(
        out[16..].iter().all(|&b| b == UNTOUCHED),
        "only the header written"
    );
}

fn backend(h: &Harness<Dev>) -> &Fake {
    h.dev.device().backend()
}

fn script(h: &mut Harness<Dev>, c: Canned) {
    h.dev.device_mut().backend_mut().script.push_back(c);
}

fn unique_of(req: &[u8]) -> u64 {
    u64::from_le_bytes(req[8..16].try_into().unwrap())
}

#[test]
fn device_identity_and_config_space() {
    let mut h = Harness::new(device());
    assert_eq!(h.r(reg::DEVICE_ID), 26);
    // No device feature bits: no VIRTIO_FS_F_NOTIFICATION.
    assert_eq!(h.device_features(), VERSION_1 | INDIRECT_DESC | EVENT_IDX);
    for (q, max) in [(0u32, 256u32), (1, 256), (2, 0)] {
        h.w(reg::QUEUE_SEL, q);
        assert_eq!(h.r(reg::QUEUE_NUM_MAX), max, "queue {q}");
    }
    // No shared memory region (no DAX window): length reads as -1.
    h.w(reg::SHM_SEL, 0);
    assert_eq!(h.r(reg::SHM_LEN_LOW), u32::MAX);
    assert_eq!(h.r(reg::SHM_LEN_HIGH), u32::MAX);
    // Tag, NUL-padded, readable bytewise and wordwise.
    let mut tag = Vec::new();
    for i in 0..36 {
        tag.push(h.dev.read(0x100 + i, 1).unwrap() as u8);
    }
    assert_eq!(&tag[..11], b"rivet-share");
    assert!(tag[11..].iter().all(|&b| b == 0));
    assert_eq!(
        h.dev.read(0x100, 4),
        Some(u64::from(u32::from_le_bytes(*b"rive")))
    );
    assert_eq!(h.dev.read(0x100 + 36, 4), Some(1), "num_request_queues");
    assert_eq!(h.dev.read(0x100 + 40, 4), Some(0), "no notify_buf_size");
    // The driver must not write config; writes are ignored.
    h.dev.write(0x100, 4, 0, &mut h.mem).unwrap();
    assert_eq!(h.dev.read(0x100 + 36, 2), Some(1));
    assert_eq!(h.dev.read(0x100, 1), Some(u64::from(b'r')));
}

#[test]
fn full_init() {
    let mut h = fs();
    let (used, out) = guest_init(&mut h, RQ, 7, 40, LINUX_FLAGS, 80);
    assert_eq!(used, 80);
    assert_eq!(
        reply_header(&out),
        OutHeader {
            len: 80,
            error: 0,
            unique: 0x10
        }
    );
    let o = init_out(&out);
    assert_eq!((o.major, o.minor), (7, 38), "min(guest 40, backend 38)");
    assert_eq!(o.max_readahead, 0x2_0000, "min(guest, backend)");
    assert_eq!(o.max_background, 64);
    assert_eq!(o.congestion_threshold, 48);
    assert_eq!(o.time_gran, 1);
    assert_eq!(o.map_alignment, 0);
    assert!(backend(&h).calls.is_empty(), "INIT is never forwarded");
    let s = h.dev.device().session().unwrap();
    assert_eq!(s.minor, 38);
    assert_eq!(h.dev.device().stats().local, 1);
}

#[test]
fn init_answered_locally_with_intersected_flags() {
    let mut h = fs();
    let asked = LINUX_FLAGS | FUSE_MAP_ALIGNMENT | FUSE_HAS_INODE_DAX;
    let (_, out) = guest_init(&mut h, RQ, 7, 41, asked, 80);
    let o = init_out(&out);
    // Backend grants ASYNC_READ, MAX_PAGES, WRITEBACK_CACHE, READDIRPLUS,
    // SECURITY_CTX, MAP_ALIGNMENT, HAS_INODE_DAX, POSIX_LOCKS; DAX and
    // locks are never relayed.
    let granted = FUSE_ASYNC_READ
        | FUSE_MAX_PAGES
        | FUSE_WRITEBACK_CACHE
        | FUSE_DO_READDIRPLUS
        | FUSE_SECURITY_CTX;
    assert_eq!(o.flags64(), granted | FUSE_INIT_EXT);
    assert_eq!(u64::from(o.flags2), FUSE_SECURITY_CTX >> 32);
    assert_eq!(o.map_alignment, 0);
    assert_eq!(
        o.max_pages, 256,
        "min(backend 512, what 1 MiB + 4 KiB holds)"
    );
    assert_eq!(o.max_write, 0x10_0000);
    assert_eq!(h.dev.device().session().unwrap().flags, granted);

    // A guest without FUSE_INIT_EXT gets no high flags and no flags2.
    let (_, out) = guest_init(&mut h, RQ, 7, 41, FUSE_ASYNC_READ | FUSE_SECURITY_CTX, 80);
    let o = init_out(&out);
    assert_eq!(u64::from(o.flags), FUSE_ASYNC_READ);
    assert_eq!(o.flags2, 0);
    assert_eq!(o.max_pages, 0, "MAX_PAGES not asked");
    assert_eq!(backend(&h).session_ends, 1, "second INIT ended the first");

    // A smaller maximum request shrinks max_write and max_pages.
    let mut h = fs_with(device().with_max_request(MIN_MAX_REQUEST));
    let (_, out) = guest_init(&mut h, RQ, 7, 41, LINUX_FLAGS, 80);
    let o = init_out(&out);
    assert_eq!(o.max_write as usize, MIN_MAX_REQUEST - 80);
    assert_eq!(o.max_pages as usize, (MIN_MAX_REQUEST - 80) / 4096);
}

#[test]
fn init_version_handshake() {
    let mut h = fs();
    // Guest major above ours: reply with our version only, no session.
    let (used, out) = guest_init(&mut h, RQ, 8, 0, LINUX_FLAGS, 80);
    assert_eq!(used, 80);
    assert_eq!(reply_header(&out).error, 0);
    let o = init_out(&out);
    assert_eq!((o.major, o.minor), (7, KERNEL_MINOR_VERSION));
    assert_eq!((o.flags, o.max_write, o.max_pages), (0, 0, 0));
    assert!(h.dev.device().session().is_none());
    // Major below 7, or a minor too old to relay: EPROTO.
    let (used, out) = guest_init(&mut h, RQ, 6, 99, 0, 80);
    assert_error(used, &out, 0x10, 71);
    let (used, out) = guest_init(&mut h, RQ, 7, MIN_MINOR_VERSION - 1, 0, 80);
    assert_error(used, &out, 0x10, 71);
    assert!(h.dev.device().session().is_none());
    // Old 8-byte INIT (major, minor only): accepted, no flags.
    let mut args = 7u32.to_le_bytes().to_vec();
    args.extend_from_slice(&31u32.to_le_bytes());
    let (used, out) = request(&mut h, RQ, FUSE_INIT, 5, 0, &args, 80);
    assert_eq!(used, 80);
    let o = init_out(&out);
    assert_eq!((o.minor, o.flags, o.max_readahead), (31, 0, 0));
    assert_eq!(h.dev.device().session().unwrap().minor, 31);
    // Fewer than 8 bytes of arguments: EINVAL.
    let (used, out) = request(&mut h, RQ, FUSE_INIT, 6, 0, &[7, 0, 0, 0], 80);
    assert_error(used, &out, 6, 22);
    // No room for fuse_init_out: EIO, session unchanged.
    let ends = backend(&h).session_ends;
    let (used, out) = guest_init(&mut h, RQ, 7, 38, LINUX_FLAGS, 79);
    assert_error(used, &out, 0x10, 5);
    assert_eq!(backend(&h).session_ends, ends);
    assert_eq!(h.dev.device().session().unwrap().minor, 31);
    // INIT on the hiprio queue is a driver bug: EINVAL.
    let (used, out) = guest_init(&mut h, HI, 7, 38, LINUX_FLAGS, 80);
    assert_error(used, &out, 0x10, 22);
    assert!(backend(&h).calls.is_empty());
}

#[test]
fn requests_before_init_get_eio() {
    let mut h = fs();
    let (used, out) = request(&mut h, RQ, FUSE_GETATTR, 0x42, 1, &[0; 16], 200);
    assert_error(used, &out, 0x42, 5);
    // Forgets before a session are dropped.
    let (used, _) = request(&mut h, HI, FUSE_FORGET, 0x44, 9, &3u64.to_le_bytes(), 0);
    assert_eq!(used, 0);
    assert!(backend(&h).calls.is_empty());
    assert!(backend(&h).noreply.is_empty());
}

#[test]
fn lookup_relayed_with_fresh_unique_and_guest_unique_restored() {
    let mut h = fs_session();
    let entry: Vec<u8> = (0..128u8).collect(); // fuse_entry_out-sized body
    script(&mut h, Canned::Ok(entry.clone()));
    let (used, out) = request(&mut h, RQ, FUSE_LOOKUP, 0xabc0, 1, b"hello\0", 256);
    assert_eq!(used, 144);
    assert_eq!(
        reply_header(&out),
        OutHeader {
            len: 144,
            error: 0,
            unique: 0xabc0
        }
    );
    assert_eq!(&out[16..144], &entry[..]);
    assert!(out[144..].iter().all(|&b| b == UNTOUCHED));
    // The backend saw the same request with the device's own unique.
    let sent = &backend(&h).calls[0];
    let mut expected = in_header(46, FUSE_LOOKUP, 0xabc0, 1);
    expected.extend_from_slice(b"hello\0");
    let relayed_unique = unique_of(sent);
    assert_ne!(relayed_unique, 0xabc0);
    assert_ne!(relayed_unique, 0);
    assert_eq!(relayed_unique & 1, 0, "bit 0 is the interrupt marker");
    expected[8..16].copy_from_slice(&relayed_unique.to_le_bytes());
    assert_eq!(sent, &expected);
    assert_eq!(
        backend(&h).reply_caps[0],
        256,
        "reply buffer = writable part"
    );
    // The same guest unique again gets a different relayed unique.
    let (used, out) = request(&mut h, RQ, FUSE_LOOKUP, 0xabc0, 1, b"hello\0", 256);
    assert_eq!((used, reply_header(&out).unique), (16, 0xabc0));
    assert_ne!(unique_of(&backend(&h).calls[1]), relayed_unique);
    let s = h.dev.device().stats();
    assert_eq!((s.relayed, s.backend_errors, s.bad_replies), (2, 0, 0));
}

#[test]
fn header_split_over_many_descriptors() {
    // No assumption about descriptor boundaries: header and arguments in
    // 1..7-byte pieces, the reply over three writable segments.
    let mut h = fs_session();
    let mut req = in_header(40 + 8, FUSE_GETATTR, 0x99, 3);
    req.extend_from_slice(&[1; 8]);
    let mut segs = Vec::new();
    let mut at = 0;
    let mut k = 1;
    while at < req.len() {
        let n = k.min(req.len() - at);
        let a = h.buf(&req[at..at + n]);
        segs.push(r(a, n as u32));
        at += n;
        k = k % 7 + 1;
    }
    let outs: Vec<u64> = (0..3).map(|_| h.buf(&[UNTOUCHED; 10])).collect();
    for &o in &outs {
        segs.push(w(o, 10));
    }
    script(&mut h, Canned::Ok(vec![0x5a; 8]));
    assert_eq!(segs.len(), 16);
    h.add_indirect(RQ, &segs);
    h.kick(RQ);
    assert_eq!(h.used(RQ).unwrap().1, 24);
    let got: Vec<u8> = outs.iter().flat_map(|&o| h.read_bytes(o, 10)).collect();
    assert_eq!(reply_header(&got).unique, 0x99);
    assert_eq!(&got[16..24], &[0x5a; 8]);
    assert_eq!(&got[24..], &[UNTOUCHED; 6]);
    assert_eq!(&backend(&h).calls[0][16..], &req[16..]);
}

#[test]
fn truncated_in_header() {
    let mut h = fs_session();
    let full = in_header(40, FUSE_GETATTR, 0x77, 1);
    // Unique readable (first 16 bytes): EINVAL with it.
    let (used, out) = submit(&mut h, RQ, &full[..20], 64);
    assert_error(used, &out, 0x77, 22);
    // Not even the unique: completed with nothing written.
    let (used, out) = submit(&mut h, RQ, &full[..10], 64);
    assert_eq!(used, 0);
    assert!(out.iter().all(|&b| b == UNTOUCHED));
    // No readable part at all.
    let (used, _) = submit(&mut h, RQ, &[], 64);
    assert_eq!(used, 0);
    assert!(backend(&h).calls.is_empty());
    assert_eq!(h.dev.device().stats().rejected, 3);
}

#[test]
fn len_larger_than_readable_part() {
    let mut h = fs_session();
    let mut b = in_header(40 + 7, FUSE_LOOKUP, 0x51, 1);
    b.extend_from_slice(b"abc\0\0\0");
    let (used, out) = submit(&mut h, RQ, &b, 64);
    assert_error(used, &out, 0x51, 22);
    // A longer readable part than len is fine: only len bytes go out.
    let mut b = in_header(40 + 4, FUSE_LOOKUP, 0x52, 1);
    b.extend_from_slice(b"abc\0garbage");
    let (used, _) = submit(&mut h, RQ, &b, 64);
    assert_eq!(used, 16);
    assert_eq!(backend(&h).calls.len(), 1);
    assert_eq!(&backend(&h).calls[0][40..], b"abc\0");
}

#[test]
fn len_smaller_than_header() {
    let mut h = fs_session();
    for len in [0usize, 1, 16, 39] {
        let mut b = in_header(len, FUSE_GETATTR, 0x60 + len as u64, 1);
        b.extend_from_slice(&[0; 16]);
        let (used, out) = submit(&mut h, RQ, &b, 64);
        assert_error(used, &out, 0x60 + len as u64, 22);
    }
    assert!(backend(&h).calls.is_empty());
}

#[test]
fn len_beyond_maximum_request() {
    let mut h = fs_with(device().with_max_request(MIN_MAX_REQUEST));
    guest_init(&mut h, RQ, 7, 38, LINUX_FLAGS, 80);
    let write_in = [0u8; WRITE_IN_SIZE];
    let data = vec![0x33u8; MIN_MAX_REQUEST - 80 + 1];
    let mut args = write_in.to_vec();
    args.extend_from_slice(&data);
    let (used, out) = request(&mut h, RQ, FUSE_WRITE, 0x70, 2, &args, 64);
    assert_error(used, &out, 0x70, 22);
    assert!(backend(&h).calls.is_empty());
    // Exactly the maximum is relayed intact.
    args.pop();
    let (used, _) = request(&mut h, RQ, FUSE_WRITE, 0x71, 2, &args, 64);
    assert_eq!(used, 16);
    let sent = &backend(&h).calls[0];
    assert_eq!(sent.len(), MIN_MAX_REQUEST);
    assert_eq!(&sent[80..], &data[..data.len() - 1]);
}

#[test]
fn extensions_must_fit_in_len() {
    let mut h = fs_session();
    let mut b = in_header(40 + 16, FUSE_CREATE, 0x72, 1);
    b[36..38].copy_from_slice(&3u16.to_le_bytes()); // 24 bytes > 16
    b.extend_from_slice(&[0; 16]);
    let (used, out) = submit(&mut h, RQ, &b, 64);
    assert_error(used, &out, 0x72, 22);
    b[36..38].copy_from_slice(&2u16.to_le_bytes()); // 16 bytes: fits
    let (used, _) = submit(&mut h, RQ, &b, 64);
    assert_eq!(used, 16);
    assert_eq!(backend(&h).calls.len(), 1);
}

#[test]
fn writable_part_too_small() {
    let mut h = fs_session();
    // Room for less than a fuse_out_header: completed with 0 bytes.
    let (used, out) = request(&mut h, RQ, FUSE_GETATTR, 0x80, 1, &[0; 16], 15);
    assert_eq!(used, 0);
    assert!(out.iter().all(|&b| b == UNTOUCHED));
    // No writable part at all.
    let (used, _) = request(&mut h, RQ, FUSE_GETATTR, 0x81, 1, &[0; 16], 0);
    assert_eq!(used, 0);
    assert!(backend(&h).calls.is_empty());
    // A header-only buffer is enough for a header-only reply...
    let (used, out) = request(&mut h, RQ, FUSE_FLUSH, 0x82, 1, &[0; 24], 16);
    assert_eq!((used, reply_header(&out).unique), (16, 0x82));
    // ...but not for a reply with data: EIO.
    script(&mut h, Canned::Ok(vec![1; 8]));
    let (used, out) = request(&mut h, RQ, FUSE_GETATTR, 0x83, 1, &[0; 16], 16);
    assert_error(used, &out, 0x83, 5);
}

#[test]
fn backend_timeout_and_io_errors_give_eio() {
    let mut h = fs_session();
    script(&mut h, Canned::Fail(FsBackendError::Timeout));
    let (used, out) = request(&mut h, RQ, FUSE_READ, 0x90, 4, &[0; READ_IN_SIZE], 4096);
    assert_error(used, &out, 0x90, 5);
    script(&mut h, Canned::Fail(FsBackendError::Io));
    let (used, out) = request(&mut h, RQ, FUSE_READ, 0x91, 4, &[0; READ_IN_SIZE], 4096);
    assert_error(used, &out, 0x91, 5);
    assert_eq!(h.dev.device().stats().backend_errors, 2);
    // The device keeps working.
    script(&mut h, Canned::Ok(vec![7; 100]));
    let (used, out) = request(&mut h, RQ, FUSE_READ, 0x92, 4, &[0; READ_IN_SIZE], 4096);
    assert_eq!(used, 116);
    assert_eq!(&out[16..116], &[7; 100]);
}

#[test]
fn backend_timeout_defers_the_rest_to_a_poll() {
    // One timeout per notify, not one per queued request.
    let mut h = fs_session();
    script(&mut h, Canned::Fail(FsBackendError::Timeout));
    let mut outs = Vec::new();
    for i in 0..3u64 {
        let mut b = in_header(56, FUSE_GETATTR, 0x300 + i, 1);
        b.extend_from_slice(&[0; 16]);
        let a = h.buf(&b);
        let o = h.buf(&[UNTOUCHED; 64]);
        h.add_chain(RQ, &[r(a, 56), w(o, 64)]);
        outs.push(o);
    }
    h.kick(RQ);
    assert_eq!(h.used(RQ).map(|u| u.1), Some(16));
    assert_eq!(h.used(RQ), None, "the rest waits");
    assert_eq!(reply_header(&h.read_bytes(outs[0], 16)).error, -5);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(RQ).map(|u| u.1), Some(16));
    assert_eq!(h.used(RQ).map(|u| u.1), Some(16));
    assert_eq!(reply_header(&h.read_bytes(outs[2], 16)).unique, 0x302);
    assert_eq!(reply_header(&h.read_bytes(outs[2], 16)).error, 0);
}

#[test]
fn backend_reply_too_long_for_guest_buffer() {
    let mut h = fs_session();
    script(&mut h, Canned::Ok(vec![9; 100]));
    let (used, out) = request(&mut h, RQ, FUSE_READ, 0xa0, 4, &[0; READ_IN_SIZE], 64);
    assert_error(used, &out, 0xa0, 5);
    assert_eq!(backend(&h).reply_caps[0], 64);
    assert_eq!(h.dev.device().stats().bad_replies, 1);
}

#[test]
fn malformed_backend_replies_give_eio() {
    let mut h = fs_session();
    let cases: Vec<(&str, ReplyFn)> = vec![
        (
            "len field larger than returned",
            Box::new(|u| {
                let mut b = out_bytes(40, 0, u);
                b.extend_from_slice(&[0; 8]);
                b
            }),
        ),
        (
            "len field smaller than returned",
            Box::new(|u| {
                let mut b = out_bytes(16, 0, u);
                b.extend_from_slice(&[0; 8]);
                b
            }),
        ),
        (
            "shorter than a header",
            Box::new(|u| out_bytes(12, 0, u)[..12].to_vec()),
        ),
        ("empty", Box::new(|_| Vec::new())),
        ("wrong unique", Box::new(|u| out_bytes(16, 0, u + 2))),
        ("guest's unique", Box::new(|_| out_bytes(16, 0, 0xb0))),
        ("positive error", Box::new(|u| out_bytes(16, 5, u))),
        (
            "kernel-internal error",
            Box::new(|u| out_bytes(16, -512, u)),
        ),
    ];
    for (name, f) in cases {
        script(&mut h, Canned::Raw(f));
        let (used, out) = request(&mut h, RQ, FUSE_GETATTR, 0xb0, 1, &[0; 16], 256);
        assert_eq!(used, 16, "{name}");
        assert_eq!(reply_header(&out).error, -5, "{name}");
        assert_eq!(reply_header(&out).unique, 0xb0, "{name}");
    }
    // An error reply is passed on as its header alone.
    script(&mut h, Canned::Err(2, vec![0xcc; 32]));
    let (used, out) = request(&mut h, RQ, FUSE_LOOKUP, 0xb1, 1, b"nope\0", 256);
    assert_error(used, &out, 0xb1, 2);
}

#[test]
fn forget_on_hiprio_forwarded_without_reply() {
    let mut h = fs_session();
    let (used, _) = request(&mut h, HI, FUSE_FORGET, 0xc0, 5, &3u64.to_le_bytes(), 0);
    assert_eq!(used, 0);
    let b = backend(&h);
    assert!(b.calls.is_empty());
    assert_eq!(b.noreply.len(), 1);
    let sent = &b.noreply[0];
    assert_eq!(sent.len(), 48);
    assert_ne!(unique_of(sent), 0xc0, "unique rewritten for forgets too");
    assert_eq!(InHeader::parse(sent).unwrap().nodeid, 5);
    assert_eq!(&sent[40..48], &3u64.to_le_bytes());

    // BATCH_FORGET with two entries.
    let mut args = 2u32.to_le_bytes().to_vec();
    args.extend_from_slice(&[0; 4]);
    for (node, n) in [(5u64, 1u64), (6, 2)] {
        args.extend_from_slice(&node.to_le_bytes());
        args.extend_from_slice(&n.to_le_bytes());
    }
    let (used, _) = request(&mut h, HI, FUSE_BATCH_FORGET, 0xc1, 0, &args, 0);
    assert_eq!(used, 0);
    assert_eq!(backend(&h).noreply.len(), 2);
    assert_eq!(&backend(&h).noreply[1][40..], &args[..]);
    // A count that does not fit in len is dropped; so is a short FORGET.
    args[0] = 3;
    request(&mut h, HI, FUSE_BATCH_FORGET, 0xc2, 0, &args, 0);
    request(&mut h, HI, FUSE_FORGET, 0xc3, 5, &[0; 4], 0);
    assert_eq!(backend(&h).noreply.len(), 2);
    // A writable part on a forget is left alone.
    let (used, out) = request(&mut h, HI, FUSE_FORGET, 0xc4, 5, &1u64.to_le_bytes(), 32);
    assert_eq!(used, 0);
    assert!(out.iter().all(|&b| b == UNTOUCHED));
    assert_eq!(backend(&h).noreply.len(), 3);
    // A backend failure on a forget is only counted.
    h.dev.device_mut().backend_mut().noreply_fails = true;
    request(&mut h, HI, FUSE_FORGET, 0xc5, 5, &1u64.to_le_bytes(), 0);
    assert_eq!(h.dev.device().stats().backend_errors, 1);
    assert_eq!(h.dev.device().stats().forgets, 3);
}

#[test]
fn hiprio_queue_rules() {
    let mut h = fs_session();
    // INTERRUPT: completed, nothing written, nothing forwarded.
    let (used, out) = request(
        &mut h,
        HI,
        FUSE_INTERRUPT,
        0xd1,
        0,
        &0xd0u64.to_le_bytes(),
        16,
    );
    assert_eq!(used, 0);
    assert!(out.iter().all(|&b| b == UNTOUCHED));
    // A normal request on hiprio is refused, never forwarded.
    let (used, out) = request(&mut h, HI, FUSE_LOOKUP, 0xd2, 1, b"x\0", 64);
    assert_error(used, &out, 0xd2, 22);
    assert!(backend(&h).calls.is_empty());
    assert!(backend(&h).noreply.is_empty());
    // FORGET on the request queue (a driver bug) is still forwarded.
    request(&mut h, RQ, FUSE_FORGET, 0xd3, 5, &1u64.to_le_bytes(), 0);
    assert_eq!(backend(&h).noreply.len(), 1);
    // NOTIFY_REPLY is never expected: completed, not forwarded.
    let (used, _) = request(&mut h, RQ, FUSE_NOTIFY_REPLY, 0, 0, &[0; 24], 0);
    assert_eq!(used, 0);
    assert!(backend(&h).calls.is_empty());
}

#[test]
fn destroy_is_local_and_ends_the_session() {
    let mut h = fs_session();
    let (used, out) = request(&mut h, RQ, FUSE_DESTROY, 0xe0, 0, &[], 16);
    assert_eq!(used, 16);
    assert_eq!(
        reply_header(&out),
        OutHeader {
            len: 16,
            error: 0,
            unique: 0xe0
        }
    );
    assert!(backend(&h).calls.is_empty(), "DESTROY is never forwarded");
    assert_eq!(backend(&h).session_ends, 1);
    assert!(h.dev.device().session().is_none());
    let (used, out) = request(&mut h, RQ, FUSE_GETATTR, 0xe1, 1, &[0; 16], 64);
    assert_error(used, &out, 0xe1, 5);
    // A second DESTROY is harmless; session_end is only for live sessions.
    request(&mut h, RQ, FUSE_DESTROY, 0xe2, 0, &[], 16);
    assert_eq!(backend(&h).session_ends, 1);
    // A device reset ends a live session.
    guest_init(&mut h, RQ, 7, 38, LINUX_FLAGS, 80);
    h.set_status(0);
    assert_eq!(backend(&h).session_ends, 2);
    assert!(h.dev.device().session().is_none());
    h.init_with(MODERN, 16);
    let (used, out) = request(&mut h, RQ, FUSE_GETATTR, 0xe3, 1, &[0; 16], 64);
    assert_error(used, &out, 0xe3, 5);
}

#[test]
fn dax_lock_and_unknown_opcodes_are_refused() {
    let mut h = fs_session();
    for op in [
        FUSE_SETUPMAPPING,
        FUSE_REMOVEMAPPING,
        FUSE_GETLK,
        FUSE_SETLK,
        FUSE_SETLKW,
        CUSE_INIT,
        0,
        7,
        19,
        53,
        u32::MAX,
    ] {
        let (used, out) = request(&mut h, RQ, op, 0xf0, 1, &[0; 40], 64);
        assert_error(used, &out, 0xf0, 38);
    }
    assert!(backend(&h).calls.is_empty());
}

#[test]
fn large_write_and_read_through_indirect_tables() {
    let mut h = fs_session();
    // WRITE: header + write_in in one buffer, 64 KiB of data in 16 pages.
    let data: Vec<u8> = (0..65536u32).map(|i| ((i * 31) >> 3) as u8).collect();
    let mut head = in_header(80 + data.len(), FUSE_WRITE, 0x100, 7);
    head.extend_from_slice(&[0; WRITE_IN_SIZE]);
    let ha = h.buf(&head);
    let mut segs = vec![r(ha, 80)];
    for chunk in data.chunks(4096) {
        let a = h.buf(chunk);
        segs.push(r(a, 4096));
    }
    let out = h.buf(&[UNTOUCHED; 24]);
    segs.push(w(out, 24));
    let mut write_out = 65536u32.to_le_bytes().to_vec();
    write_out.extend_from_slice(&[0; 4]);
    script(&mut h, Canned::Ok(write_out.clone()));
    h.add_indirect(RQ, &segs);
    h.kick(RQ);
    assert_eq!(h.used(RQ).unwrap().1, 24);
    assert_eq!(&backend(&h).calls[0][80..], &data[..]);
    assert_eq!(&h.read_bytes(out + 16, 8), &write_out[..]);

    // READ: the reply lands across a header buffer and 16 data pages.
    let mut rd = in_header(80, FUSE_READ, 0x101, 7);
    rd.extend_from_slice(&[0; READ_IN_SIZE]);
    let ra = h.buf(&rd);
    let hdr = h.buf(&[UNTOUCHED; 16]);
    let mut segs = vec![r(ra, 80), w(hdr, 16)];
    let pages: Vec<u64> = (0..16).map(|_| h.alloc(4096)).collect();
    for &p in &pages {
        segs.push(w(p, 4096));
    }
    script(&mut h, Canned::Ok(data.clone()));
    h.add_indirect(RQ, &segs);
    h.kick(RQ);
    assert_eq!(h.used(RQ).unwrap().1, 16 + 65536);
    assert_eq!(backend(&h).reply_caps[1], 16 + 65536);
    assert_eq!(reply_header(&h.read_bytes(hdr, 16)).unique, 0x101);
    let got: Vec<u8> = pages.iter().flat_map(|&p| h.read_bytes(p, 4096)).collect();
    assert_eq!(got, data);
}

#[test]
fn descriptor_outside_ram_fails_the_device() {
    let mut h = fs_session();
    let req = in_header(40, FUSE_GETATTR, 1, 1);
    let a = h.buf(&req);
    h.add_chain(RQ, &[r(a, 40), w(RAM_BASE + RAM_SIZE as u64 - 8, 16)]);
    let e = h.kick(RQ);
    assert!(matches!(
        e.error,
        Some(DeviceError::Queue(QueueError::DescriptorOutOfRange { .. }))
    ));
    assert!(h.needs_reset());
    assert!(backend(&h).calls.is_empty());
    // Recovery: reset, re-init; the FUSE session ended with the reset.
    h.init_with(MODERN, 16);
    assert!(h.dev.device().session().is_none());
    let (used, _) = guest_init(&mut h, RQ, 7, 38, LINUX_FLAGS, 80);
    assert_eq!(used, 80);
}

#[test]
fn poll_serves_both_queues() {
    let mut h = fs_session();
    let mut b = in_header(48, FUSE_FORGET, 1, 5);
    b.extend_from_slice(&1u64.to_le_bytes());
    let a = h.buf(&b);
    h.add_chain(HI, &[r(a, 48)]);
    let g = in_header(56, FUSE_GETATTR, 2, 1);
    let mut g2 = g.clone();
    g2.extend_from_slice(&[0; 16]);
    let ga = h.buf(&g2);
    let out = h.alloc(64);
    h.add_chain(RQ, &[r(ga, 56), w(out, 64)]);
    h.dev.poll(&mut h.mem).unwrap();
    assert_eq!(h.used(HI), Some((0, 0)));
    assert_eq!(h.used(RQ).map(|u| u.1), Some(16));
    assert!(h.dev.irq_level());
}

/// Random requests (plausible and hostile headers, random splits, random
/// backend behaviour) into a live session: nothing panics, every chain
/// completes, and every reply the guest sees is well-formed and carries
/// its own unique.
#[test]
fn random_garbage_sweep() {
    let mut rng = XorShift(0x00f5_5eed_1234_5678);
    let mut h = fs_session();
    let ops = [
        FUSE_LOOKUP,
        FUSE_FORGET,
        FUSE_GETATTR,
        FUSE_READ,
        FUSE_WRITE,
        FUSE_INIT,
        FUSE_DESTROY,
        FUSE_BATCH_FORGET,
        FUSE_INTERRUPT,
        FUSE_SETUPMAPPING,
        FUSE_NOTIFY_REPLY,
        FUSE_READDIRPLUS,
    ];
    let mut replies = 0;
    let mut zero = 0;
    for round in 0..6000 {
        if h.heap > RAM_BASE + RAM_SIZE as u64 - 0x40000 {
            h.heap = HEAP;
        }
        let q = if rng.chance(25) { HI } else { RQ };
        let opcode = if rng.chance(85) {
            ops[rng.below(ops.len() as u64) as usize]
        } else {
            rng.next() as u32
        };
        let args_len = match rng.below(4) {
            0 => rng.below(8) as usize,
            1 => 64,
            2 => rng.below(300) as usize,
            _ => 8 + 16 * rng.below(5) as usize,
        };
        let mut args: Vec<u8> = (0..args_len).map(|_| rng.next() as u8).collect();
        if opcode == FUSE_INIT && rng.chance(70) && args.len() >= 8 {
            args[0..4].copy_from_slice(&[6u32, 7, 7, 7, 8][rng.below(5) as usize].to_le_bytes());
            args[4..8].copy_from_slice(&(rng.below(50) as u32).to_le_bytes());
        }
        if opcode == FUSE_BATCH_FORGET && args.len() >= 4 {
            args[0..4].copy_from_slice(&(rng.below(8) as u32).to_le_bytes());
        }
        let len = match rng.below(8) {
            0 => rng.next() as u32,
            1 => rng.below(48) as u32,
            2 => (40 + args_len as u32).wrapping_add(rng.below(16) as u32),
            _ => 40 + args_len as u32,
        };
        let unique = rng.next();
        let mut req = InHeader {
            len,
            opcode,
            unique,
            nodeid: rng.below(10),
            total_extlen: if rng.chance(10) { rng.next() as u16 } else { 0 },
            ..InHeader::default()
        }
        .to_bytes()
        .to_vec();
        req.extend_from_slice(&args);
        if rng.chance(10) {
            let cut = rng.below(req.len() as u64 + 1) as usize;
            req.truncate(cut);
        }
        // Backend behaviour for this request.
        let canned = match rng.below(8) {
            0 => Canned::Fail(FsBackendError::Timeout),
            1 => Canned::Err(rng.below(600) as i32 - 50, vec![1; rng.below(20) as usize]),
            2 => {
                let junk: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                Canned::Raw(Box::new(move |_| junk.clone()))
            }
            3 => {
                let claim = rng.below(200) as usize;
                let body = rng.below(200) as usize;
                Canned::Raw(Box::new(move |u| {
                    let mut b = out_bytes(claim, 0, u);
                    b.resize(16 + body, 0xab);
                    b
                }))
            }
            _ => Canned::Ok(vec![0x3c; rng.below(300) as usize]),
        };
        h.dev.device_mut().backend_mut().script.clear();
        h.dev.device_mut().backend_mut().script.push_back(canned);
        // Split readable and writable parts at random.
        let mut segs = Vec::new();
        let mut at = 0;
        while at < req.len() && segs.len() < 6 {
            let n = if segs.len() == 5 {
                req.len() - at
            } else {
                (1 + rng.below(64) as usize).min(req.len() - at)
            };
            let a = h.buf(&req[at..at + n]);
            segs.push(r(a, n as u32));
            at += n;
        }
        let out_len = match rng.below(5) {
            0 => 0,
            1 => rng.below(20) as u32,
            2 => 80,
            _ => rng.below(600) as u32,
        };
        let mut outs = Vec::new();
        let mut left = out_len;
        while left > 0 && outs.len() < 4 {
            let n = if outs.len() == 3 {
                left
            } else {
                (1 + rng.below(200) as u32).min(left)
            };
            let a = h.buf(&vec![UNTOUCHED; n as usize]);
            outs.push((a, n));
            segs.push(w(a, n));
            left -= n;
        }
        if segs.is_empty() {
            continue;
        }
        if segs.len() > 8 || rng.chance(30) {
            h.add_indirect(q, &segs);
        } else {
            h.add_chain(q, &segs);
        }
        let e = h.kick(q);
        assert_eq!(e.error, None, "round {round}");
        let (_, used) = h.used(q).expect("every chain completes");
        assert!(used <= out_len, "round {round}");
        if used == 0 {
            zero += 1;
            continue;
        }
        replies += 1;
        let got: Vec<u8> = outs
            .iter()
            .flat_map(|&(a, n)| h.read_bytes(a, n as usize))
            .collect();
        let oh = reply_header(&got);
        assert_eq!(oh.unique, unique, "round {round}");
        assert_eq!(oh.len, used, "round {round}");
        assert!(oh.error <= 0 && oh.error > -512, "round {round}");
        if oh.error != 0 {
            assert_eq!(used, 16, "round {round}");
        }
        if rng.chance(20) {
            h.ack_irq();
        }
        if rng.chance(1) {
            // Occasionally start over with a fresh device.
            h.init_with(MODERN, 16);
        }
        if h.dev.device().session().is_none() && rng.chance(50) {
            guest_init(&mut h, RQ, 7, 38, LINUX_FLAGS, 80);
        }
    }
    let s = h.dev.device().stats();
    eprintln!("replies {replies} zero {zero} stats {s:?}");
    assert!(replies > 1000 && zero > 500);
    assert!(s.relayed > 300 && s.forgets > 20 && s.bad_replies > 50 && s.rejected > 500);
}
