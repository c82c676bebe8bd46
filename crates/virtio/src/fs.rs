//! virtio-fs (§5.11 "File System Device", `shared/specs/virtio/fs.tex`),
//! device id 26, as a FUSE *relay*.
//!
//! This module owns the file system device model [`FsDevice`]: its
//! configuration space, its two virtqueues, the checks on every FUSE request
//! a guest sends, the local answers to `FUSE_INIT` and `FUSE_DESTROY`, and
//! the relaying of everything else to an [`FsBackend`]. The hypervisor's
//! backend forwards requests to the machine's physical virtio-fs device
//! (served by the host's `virtiofsd`), which several VMs may share. It also
//! provides the two helpers the hypervisor needs for its own, once-only
//! `FUSE_INIT` handshake with that device: [`build_init_request`] and
//! [`parse_init_reply`]. The FUSE structures live in [`crate::fuse`].
//!
//! # Device layout (decisions)
//!
//! * No feature bits: `VIRTIO_FS_F_NOTIFICATION` is not offered, so there
//!   is no notification queue and the configuration space ends after
//!   `num_request_queues` (`notify_buf_size` reads as 0).
//! * Two queues: 0 = hiprio, 1 = the only request queue
//!   (`num_request_queues` = 1).
//! * No DAX window: no shared memory region exists (the transport reads
//!   `SHMLen` as all-ones, §4.2.2), `FUSE_SETUPMAPPING` /
//!   `FUSE_REMOVEMAPPING` are refused with `-ENOSYS`, and the DAX `FUSE_INIT`
//!   flags (`FUSE_MAP_ALIGNMENT`, `FUSE_HAS_INODE_DAX`) are never granted.
//!   The Linux driver then falls back to FUSE_READ/FUSE_WRITE, as the spec
//!   requires drivers to be prepared to.
//! * `tag` is fixed at construction: 1 to 36 bytes of UTF-8 without NUL,
//!   NUL-padded.
//!
//! # Request handling (decisions)
//!
//! A chain is one FUSE request: the device-readable part holds the
//! `fuse_in_header` and the arguments, the device-writable part receives
//! the `fuse_out_header` and the reply arguments. Nothing is assumed about
//! descriptor boundaries. In order:
//!
//! 1. **Header**: a readable part shorter than the 40-byte
//!    `fuse_in_header` fails the request: `-EINVAL` carrying the guest's
//!    `unique` if at least its first 16 bytes (through `unique`) are
//!    readable, otherwise the chain is completed with 0 bytes written.
//! 2. **Room for a reply**: a request that has a reply needs a writable
//!    part of at least 16 bytes (`fuse_out_header`); otherwise the chain is
//!    completed with 0 bytes written, nothing else done. Requests with no
//!    reply (`FUSE_FORGET`, `FUSE_BATCH_FORGET`, `FUSE_INTERRUPT`,
//!    `FUSE_NOTIFY_REPLY`) never need one.
//! 3. **Length**: `len` must be at least 40, at most the readable length
//!    (extra readable bytes are ignored) and at most the maximum request
//!    size ([`DEFAULT_MAX_REQUEST`], see [`FsDevice::with_max_request`]),
//!    and `total_extlen * 8` must fit in `len - 40`. Otherwise `-EINVAL`
//!    (no-reply requests are dropped).
//! 4. **Dispatch** by opcode ([`fuse::classify`]):
//!    * `FUSE_FORGET`/`FUSE_BATCH_FORGET` (either queue; the hiprio queue is
//!      where the driver puts them): forwarded with
//!      [`FsBackend::send_noreply`] when a session is active and the
//!      arguments are consistent (a BATCH_FORGET's `count` entries must fit
//!      in `len`), otherwise dropped; completed with 0 bytes written.
//!    * `FUSE_INTERRUPT`: completed with 0 bytes written, not forwarded.
//!      Requests are relayed synchronously, so a request an INTERRUPT
//!      could name has always completed already.
//!    * `FUSE_NOTIFY_REPLY`: the device never sends notifications; completed
//!      with 0 bytes, not forwarded.
//!    * Anything else on the hiprio queue (a driver bug, §5.11.6.2): `-EINVAL`,
//!      not forwarded. The hiprio queue therefore never waits on
//!      [`FsBackend::call`].
//!    * `FUSE_INIT`: answered locally (below), never forwarded.
//!    * `FUSE_DESTROY`: ends the session, answered locally with success,
//!      never forwarded (the backend session is shared).
//!    * DAX mapping, remote locks (`GETLK`/`SETLK`/`SETLKW`: the lock flags
//!      are never granted), `CUSE_INIT`, unknown opcodes: `-ENOSYS`.
//!    * Every other request before a successful `FUSE_INIT` (or after
//!      `FUSE_DESTROY`): `-EIO`, as a FUSE server answers.
//!    * Otherwise the request is **relayed** (below).
//!
//! # Relaying
//!
//! The `len` bytes of the request are copied into a device buffer, the
//! header's `unique` is replaced by a fresh value from the device's own
//! counter (even numbers from 2 up, below 2^63, wrapping: bit 0 is the
//! kernel's interrupt marker and bit 63 its "resent" marker), and
//! [`FsBackend::call`] gets the request and a reply buffer as long as the
//! guest's writable part (capped at the maximum request size). The reply is
//! accepted only if the returned length `n` is at least 16 and fits the
//! buffer, the header's `len` equals `n`, its `unique` is the one sent and
//! its `error` is 0 or a negated errno below 512. An error reply is passed
//! on as its 16-byte header alone. The guest's `unique` is put back and the
//! reply copied into the writable part; the used length is the reply
//! length. A backend error (timeout, I/O) or a rejected reply gives the
//! guest `-EIO` with its own `unique`. Nodeids, file handles and
//! credentials are relayed unchanged (see "Sharing" below).
//!
//! # FUSE_INIT (local)
//!
//! The backend's session was negotiated once by the hypervisor
//! ([`build_init_request`] / [`parse_init_reply`]) and handed to
//! [`FsDevice::new`] as an [`InitInfo`]. The guest's INIT (arguments of 8
//! to 64 bytes, missing fields read as zero) is answered from it following
//! the FUSE version rules:
//!
//! * guest major < 7: `-EPROTO`;
//! * guest major > 7: a reply holding only major 7 and our minor, so the
//!   guest can retry with major 7; the session is unchanged;
//! * guest minor below [`fuse::MIN_MINOR_VERSION`]: `-EPROTO` (relayed
//!   requests must use the backend's argument layouts);
//! * otherwise: minor = min(guest, backend); flags = guest-requested ∩
//!   backend-granted ∩ [`fuse::RELAY_SUPPORTED_FLAGS`] (no DAX, no remote
//!   locks, nothing needing notifications), with `FUSE_INIT_EXT` echoed so
//!   `flags2` is read; `max_readahead` = min(guest, backend); `max_write`
//!   and (with `FUSE_MAX_PAGES`) `max_pages` capped so a full WRITE request
//!   and a full READ reply fit the maximum request size; `max_background`,
//!   `congestion_threshold`, `time_gran` from the backend; `map_alignment`
//!   0. The reply needs 80 writable bytes (`-EIO` otherwise).
//!
//! A successful INIT starts a session; a second one replaces it (the spec's
//! "next FUSE_INIT terminates the current session"). Whenever an active
//! session ends — a new INIT, DESTROY, or a device reset — the device calls
//! [`FsBackend::session_end`]. Only little-endian sessions are served: a
//! big-endian driver's INIT opcode reads as an unknown opcode (`-ENOSYS`).
//!
//! # Sharing (what the device does not do)
//!
//! The device does not isolate guests that share one backend session: a
//! guest may name any nodeid or file handle and choose its uid/gid/pid
//! (the spec's "Security Considerations"). Per-VM nodeid translation,
//! lookup-count bookkeeping (forgets owed when a guest's session ends) and
//! credential policy belong to the hypervisor's backend.
//!
//! # Bounds
//!
//! At most [`REQUESTS_PER_CALL`] chains per queue per notify/poll, and none
//! after a backend call timed out (the rest wait for the next poll, so a
//! stuck backend costs one timeout per poll, not one per queued request).
//! Request and reply buffers grow on demand up to the maximum request size
//! and are reused. Each backend call is bounded by the backend's own
//! timeout. The request the backend gets carries the header the device
//! validated, even if the guest rewrites its buffer meanwhile.

use alloc::vec::Vec;
use rivet_guest_mem::GuestMemory;

use crate::fuse::{
    self, classify, errno, split_flags, InHeader, InitIn, InitOut, OpClass, OutHeader,
    BATCH_FORGET_IN_SIZE, FORGET_IN_SIZE, FORGET_ONE_SIZE, FUSE_BATCH_FORGET, FUSE_INIT,
    FUSE_INIT_EXT, FUSE_MAX_PAGES, KERNEL_MINOR_VERSION, KERNEL_VERSION, MIN_MINOR_VERSION,
    PAGE_SIZE, RELAY_SUPPORTED_FLAGS, WRITE_IN_SIZE,
};
use crate::queue::{Chain, Queue, QUEUE_SIZE_MAX};
use crate::{read_config_bytes, DeviceError, NotifyResult, VirtioDevice};

/// Virtio device id of a file system device.
pub const DEVICE_ID: u32 = 26;
/// `VIRTIO_FS_F_NOTIFICATION` (not offered).
pub const VIRTIO_FS_F_NOTIFICATION: u64 = 1 << 0;
/// Index of the hiprio queue.
pub const HIPRIO_QUEUE: u16 = 0;
/// Index of the (only) request queue.
pub const REQUEST_QUEUE: u16 = 1;
/// Number of virtqueues.
pub const NUM_QUEUES: u16 = 2;
/// Size of the `tag` field.
pub const TAG_LEN: usize = 36;
/// Size of the configuration layout exposed (`tag`, `num_request_queues`).
pub const CONFIG_LEN: usize = 40;
/// Default maximum request (and reply) size: 1 MiB of data (256 pages, the
/// Linux maximum `max_pages`) plus room for headers and arguments.
pub const DEFAULT_MAX_REQUEST: usize = (1 << 20) + 4096;
/// Smallest configurable maximum: the 32 pages a Linux guest may read or
/// write per request when `FUSE_MAX_PAGES` is not negotiated, plus headers.
pub const MIN_MAX_REQUEST: usize = 32 * PAGE_SIZE + 4096;
/// Largest configurable maximum.
pub const MAX_MAX_REQUEST: usize = 64 << 20;
/// Chains handled per queue per notify or poll.
pub const REQUESTS_PER_CALL: usize = 2 * QUEUE_SIZE_MAX as usize;
/// `max_readahead` the hypervisor's own `FUSE_INIT` asks for.
pub const DEFAULT_MAX_READAHEAD: u32 = 1 << 20;
/// Length of the request [`build_init_request`] produces.
pub const INIT_REQUEST_LEN: usize = InHeader::SIZE + InitIn::SIZE;
/// Length of a full `FUSE_INIT` reply (header and `fuse_init_out`): the
/// reply buffer the hypervisor should offer the backend for its INIT.
pub const INIT_REPLY_LEN: usize = OutHeader::SIZE + InitOut::SIZE;

const UNIQUE_FIRST: u64 = 2;
/// Relayed uniques: even, below 2^63.
const UNIQUE_MASK: u64 = (u64::MAX >> 1) & !1;

/// Why a backend could not complete a request. Both become `-EIO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsBackendError {
    /// No answer within the backend's time bound.
    Timeout,
    /// The transport to the file server failed.
    Io,
}

/// Where [`FsDevice`] sends the FUSE requests it relays.
pub trait FsBackend {
    /// Sends one FUSE request (in-header + args, exactly `fuse_in_header.len`
    /// bytes) and waits (bounded) for its reply, written into `reply`
    /// (out-header + args); returns the reply length.
    /// `Err(FsBackendError::Timeout | Io)` when the backend does not answer
    /// in time or fails.
    ///
    /// `reply` is as long as the guest's writable part allows (capped at the
    /// maximum request size). A reply longer than `reply` must not be
    /// written past its end: return its full length (or `Err(Io)`); the
    /// device answers the guest `-EIO`. The request's `unique` is the
    /// device's own; the reply must carry it back.
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, FsBackendError>;
    /// Requests with no reply (FORGET, BATCH_FORGET).
    fn send_noreply(&mut self, request: &[u8]) -> Result<(), FsBackendError>;
    /// The guest's FUSE session ended (a new `FUSE_INIT`, `FUSE_DESTROY`, or
    /// a device reset while a session was active). A backend that keeps
    /// per-guest state (nodeid maps, lookup counts to forget) releases it
    /// here. The default does nothing.
    fn session_end(&mut self) {}
}

impl<B: FsBackend + ?Sized> FsBackend for &mut B {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, FsBackendError> {
        (**self).call(request, reply)
    }
    fn send_noreply(&mut self, request: &[u8]) -> Result<(), FsBackendError> {
        (**self).send_noreply(request)
    }
    fn session_end(&mut self) {
        (**self).session_end()
    }
}

/// The result of the hypervisor's `FUSE_INIT` with the backend: what the
/// backend session allows, as [`parse_init_reply`] extracts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitInfo {
    /// Protocol major version (must be 7).
    pub major: u32,
    /// Negotiated minor version (at most [`KERNEL_MINOR_VERSION`]).
    pub minor: u32,
    pub max_readahead: u32,
    /// Granted flags, 64-bit (`flags2` included).
    pub flags: u64,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub time_gran: u32,
    /// Valid when `flags` has `FUSE_MAX_PAGES`.
    pub max_pages: u16,
}

/// Why [`parse_init_reply`] refused a backend's `FUSE_INIT` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitReplyError {
    /// Shorter than a `fuse_out_header`, or the `fuse_init_out` is shorter
    /// than its 7.23 form (24 bytes).
    TooShort,
    /// The header's `len` is not the reply's length.
    BadLength { header_len: u32, actual: usize },
    /// The backend refused the INIT with this errno.
    Error(i32),
    /// The backend speaks an unusable protocol version.
    Version { major: u32, minor: u32 },
}

/// A `FUSE_INIT` request for the hypervisor's own handshake with the
/// backend: protocol 7.[`KERNEL_MINOR_VERSION`], `max_readahead`
/// [`DEFAULT_MAX_READAHEAD`], every flag a relay can use
/// ([`fuse::RELAY_SUPPORTED_FLAGS`], with `FUSE_INIT_EXT`), nodeid and
/// credentials 0. [`INIT_REQUEST_LEN`] bytes.
pub fn build_init_request(unique: u64) -> Vec<u8> {
    let (flags, flags2) = split_flags(RELAY_SUPPORTED_FLAGS, true);
    let init = InitIn {
        major: KERNEL_VERSION,
        minor: KERNEL_MINOR_VERSION,
        max_readahead: DEFAULT_MAX_READAHEAD,
        flags,
        flags2,
    };
    let header = InHeader {
        len: INIT_REQUEST_LEN as u32,
        opcode: FUSE_INIT,
        unique,
        ..InHeader::default()
    };
    let mut v = Vec::with_capacity(INIT_REQUEST_LEN);
    v.extend_from_slice(&header.to_bytes());
    v.extend_from_slice(&init.to_bytes());
    v
}

/// Parses the backend's reply (exactly the bytes it returned) to a
/// [`build_init_request`] request. The result is clamped to what this
/// crate speaks: minor at most [`KERNEL_MINOR_VERSION`], flags within
/// [`fuse::RELAY_SUPPORTED_FLAGS`]. The caller checks `unique` itself.
pub fn parse_init_reply(reply: &[u8]) -> Result<InitInfo, InitReplyError> {
    let header = OutHeader::parse(reply).ok_or(InitReplyError::TooShort)?;
    if header.len as usize != reply.len() {
        return Err(InitReplyError::BadLength {
            header_len: header.len,
            actual: reply.len(),
        });
    }
    if header.error != 0 {
        return Err(InitReplyError::Error(header.error.saturating_neg()));
    }
    let body = reply.get(OutHeader::SIZE..).unwrap_or(&[]);
    let out = InitOut::parse(body).ok_or(InitReplyError::TooShort)?;
    if out.major != KERNEL_VERSION || out.minor < MIN_MINOR_VERSION {
        return Err(InitReplyError::Version {
            major: out.major,
            minor: out.minor,
        });
    }
    if body.len() < fuse::COMPAT_22_INIT_OUT_SIZE {
        return Err(InitReplyError::TooShort);
    }
    let flags = out.flags64() & RELAY_SUPPORTED_FLAGS;
    Ok(InitInfo {
        major: out.major,
        minor: out.minor.min(KERNEL_MINOR_VERSION),
        max_readahead: out.max_readahead,
        flags,
        max_background: out.max_background,
        congestion_threshold: out.congestion_threshold,
        max_write: out.max_write,
        time_gran: out.time_gran,
        max_pages: if flags & FUSE_MAX_PAGES != 0 {
            out.max_pages
        } else {
            0
        },
    })
}

/// Why [`FsDevice::new`] refused its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    /// The tag is empty.
    EmptyTag,
    /// The tag is longer than [`TAG_LEN`] bytes (its length).
    TagTooLong(usize),
    /// The tag contains a NUL byte (the driver would cut it there).
    TagHasNul,
    /// The backend session's version is not 7.[`MIN_MINOR_VERSION`] or
    /// later.
    BackendVersion { major: u32, minor: u32 },
}

/// Request counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Chains completed (any outcome).
    pub requests: u64,
    /// Requests passed to [`FsBackend::call`].
    pub relayed: u64,
    /// FORGET/BATCH_FORGET passed to [`FsBackend::send_noreply`].
    pub forgets: u64,
    /// INIT/DESTROY answered by the device.
    pub local: u64,
    /// Requests failed or dropped by the device's own checks (malformed,
    /// no session, unsupported, wrong queue, no room for the reply).
    pub rejected: u64,
    /// Backend calls that failed (timeout, I/O).
    pub backend_errors: u64,
    /// Backend replies refused (malformed, wrong unique, too long for the
    /// guest's buffer).
    pub bad_replies: u64,
}

/// What the guest's `FUSE_INIT` was answered (the session in effect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Negotiated minor version.
    pub minor: u32,
    /// Granted flags (64-bit, without `FUSE_INIT_EXT`).
    pub flags: u64,
    pub max_readahead: u32,
    pub max_write: u32,
    /// 0 unless `FUSE_MAX_PAGES` was granted.
    pub max_pages: u16,
}

/// The virtio-fs device model.
pub struct FsDevice<B: FsBackend> {
    backend: B,
    tag: [u8; TAG_LEN],
    backend_init: InitInfo,
    max_request: usize,
    request_buf: Vec<u8>,
    reply_buf: Vec<u8>,
    next_unique: u64,
    session: Option<Session>,
    stats: FsStats,
    /// A backend call timed out during the current notify/poll.
    stalled: bool,
}

fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

fn len_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn set_unique(buf: &mut [u8], offset: usize, unique: u64) {
    if let Some(dst) = buf.get_mut(offset..offset.saturating_add(8)) {
        dst.copy_from_slice(&unique.to_le_bytes());
    }
}

/// Writes a header-only reply carrying `-err` (0: success); used length 16,
/// or 0 (and nothing written) when the writable part cannot hold a header.
fn reply_status(
    chain: &Chain,
    mem: &mut dyn GuestMemory,
    unique: u64,
    err: i32,
) -> Result<u32, DeviceError> {
    if len_usize(chain.writable_len()) < OutHeader::SIZE {
        return Ok(0);
    }
    let h = OutHeader {
        len: OutHeader::SIZE as u32,
        error: err.saturating_neg(),
        unique,
    };
    let n = chain.write_at(mem, 0, &h.to_bytes())?;
    Ok(n as u32)
}

/// Validates a backend reply of `n` bytes in `reply` to a request sent with
/// `unique`; returns the length to pass on (16 for an error reply).
fn check_reply(reply: &mut [u8], n: usize, unique: u64) -> Option<usize> {
    if n < OutHeader::SIZE || n > reply.len() {
        return None;
    }
    let h = OutHeader::parse(reply)?;
    if len_usize(h.len) != n || h.unique != unique {
        return None;
    }
    if h.error > 0 || h.error < errno::MAX_ERRNO.saturating_neg() {
        return None;
    }
    if h.error != 0 {
        let short = OutHeader {
            len: OutHeader::SIZE as u32,
            ..h
        };
        reply
            .get_mut(..OutHeader::SIZE)?
            .copy_from_slice(&short.to_bytes());
        return Some(OutHeader::SIZE);
    }
    Some(n)
}

impl<B: FsBackend> FsDevice<B> {
    /// A file system device named `tag`, relaying to `backend`, whose
    /// session with the file server was set up as `backend_init` describes
    /// (see [`parse_init_reply`]; its minor and flags are clamped to what
    /// this crate supports).
    pub fn new(tag: &str, backend: B, backend_init: InitInfo) -> Result<Self, FsError> {
        let bytes = tag.as_bytes();
        if bytes.is_empty() {
            return Err(FsError::EmptyTag);
        }
        if bytes.len() > TAG_LEN {
            return Err(FsError::TagTooLong(bytes.len()));
        }
        if bytes.contains(&0) {
            return Err(FsError::TagHasNul);
        }
        if backend_init.major != KERNEL_VERSION || backend_init.minor < MIN_MINOR_VERSION {
            return Err(FsError::BackendVersion {
                major: backend_init.major,
                minor: backend_init.minor,
            });
        }
        let mut t = [0u8; TAG_LEN];
        for (d, s) in t.iter_mut().zip(bytes) {
            *d = *s;
        }
        let flags = backend_init.flags & RELAY_SUPPORTED_FLAGS;
        Ok(FsDevice {
            backend,
            tag: t,
            backend_init: InitInfo {
                minor: backend_init.minor.min(KERNEL_MINOR_VERSION),
                flags,
                max_pages: if flags & FUSE_MAX_PAGES != 0 {
                    backend_init.max_pages
                } else {
                    0
                },
                ..backend_init
            },
            max_request: DEFAULT_MAX_REQUEST,
            request_buf: Vec::new(),
            reply_buf: Vec::new(),
            next_unique: UNIQUE_FIRST,
            session: None,
            stats: FsStats::default(),
            stalled: false,
        })
    }

    /// Sets the maximum request (and reply) size in bytes, clamped to
    /// [`MIN_MAX_REQUEST`]..=[`MAX_MAX_REQUEST`]. The guest is told a
    /// `max_write` and `max_pages` that fit. Set it before the guest's
    /// `FUSE_INIT`.
    pub fn with_max_request(mut self, bytes: usize) -> Self {
        self.max_request = bytes.clamp(MIN_MAX_REQUEST, MAX_MAX_REQUEST);
        self
    }

    /// The maximum request size.
    pub fn max_request(&self) -> usize {
        self.max_request
    }
    /// The tag, NUL-padded.
    pub fn tag(&self) -> &[u8; TAG_LEN] {
        &self.tag
    }
    /// The backend session's parameters (clamped).
    pub fn backend_init(&self) -> InitInfo {
        self.backend_init
    }
    /// The guest's session, if its `FUSE_INIT` succeeded.
    pub fn session(&self) -> Option<Session> {
        self.session
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The backend, mutable.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
    /// Request counters.
    pub fn stats(&self) -> FsStats {
        self.stats
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        for (d, s) in c.iter_mut().zip(self.tag.iter()) {
            *d = *s;
        }
        if let Some(d) = c.get_mut(TAG_LEN..CONFIG_LEN) {
            d.copy_from_slice(&1u32.to_le_bytes());
        }
        c
    }

    fn fresh_unique(&mut self) -> u64 {
        let u = self.next_unique;
        let next = u.wrapping_add(2) & UNIQUE_MASK;
        self.next_unique = if next == 0 { UNIQUE_FIRST } else { next };
        u
    }

    fn end_session(&mut self) {
        if self.session.take().is_some() {
            self.backend.session_end();
        }
    }

    fn reject(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        unique: u64,
        err: i32,
    ) -> Result<u32, DeviceError> {
        self.stats.rejected = self.stats.rejected.saturating_add(1);
        reply_status(chain, mem, unique, err)
    }

    /// Handles every available chain of `queue` (up to the budget).
    fn process(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        let mut result = NotifyResult::default();
        let Some(q) = queues.get_mut(usize::from(queue)) else {
            return Ok(result);
        };
        let hiprio = queue == HIPRIO_QUEUE;
        self.stalled = false;
        for _ in 0..REQUESTS_PER_CALL {
            let Some(chain) = q.pop(mem)? else { break };
            let used = self.handle(&chain, mem, hiprio)?;
            self.stats.requests = self.stats.requests.saturating_add(1);
            q.push_used(mem, chain.head(), used)?;
            result.used_buffers = true;
            if self.stalled {
                // The backend is not answering: leave the rest for a later
                // poll rather than wait out one timeout per request.
                break;
            }
        }
        Ok(result)
    }

    /// Handles one chain; returns the used length (bytes written).
    fn handle(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        hiprio: bool,
    ) -> Result<u32, DeviceError> {
        let mut hb = [0u8; InHeader::SIZE];
        let got = chain.read_at(mem, 0, &mut hb)?;
        let Some(h) = hb.get(..got).and_then(InHeader::parse) else {
            // Truncated header: answer only if the unique is known.
            let unique = hb
                .get(InHeader::UNIQUE_OFFSET..16)
                .filter(|_| got >= 16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            return match unique {
                Some(u) => self.reject(chain, mem, u, errno::EINVAL),
                None => {
                    self.stats.rejected = self.stats.rejected.saturating_add(1);
                    Ok(0)
                }
            };
        };
        let class = classify(h.opcode);
        if !class.no_reply() && len_usize(chain.writable_len()) < OutHeader::SIZE {
            self.stats.rejected = self.stats.rejected.saturating_add(1);
            return Ok(0);
        }
        if !self.header_ok(&h, chain) {
            return self.reject(chain, mem, h.unique, errno::EINVAL);
        }
        match class {
            OpClass::Forget => {
                self.forget(chain, mem, &h)?;
                Ok(0)
            }
            OpClass::Interrupt | OpClass::NotifyReply => Ok(0),
            _ if hiprio => self.reject(chain, mem, h.unique, errno::EINVAL),
            OpClass::Init => self.init(chain, mem, &h),
            OpClass::Destroy => {
                self.end_session();
                self.stats.local = self.stats.local.saturating_add(1);
                reply_status(chain, mem, h.unique, 0)
            }
            OpClass::Unsupported => self.reject(chain, mem, h.unique, errno::ENOSYS),
            OpClass::Relay if self.session.is_none() => {
                self.reject(chain, mem, h.unique, errno::EIO)
            }
            OpClass::Relay => self.relay(chain, mem, &h),
        }
    }

    /// Rule 3 of the module documentation.
    fn header_ok(&self, h: &InHeader, chain: &Chain) -> bool {
        let len = len_usize(h.len);
        let ext = usize::from(h.total_extlen).saturating_mul(8);
        len >= InHeader::SIZE
            && len <= len_usize(chain.readable_len())
            && len <= self.max_request
            && ext <= len.saturating_sub(InHeader::SIZE)
    }

    /// Copies the request described by the validated header `h` into the
    /// request buffer (`h.len` bytes) and puts `h` back over the copied
    /// header with a fresh unique: the guest may have changed its memory
    /// since `h` was read (another vCPU), and the backend must see the
    /// header that was checked. Returns the fresh unique, or `None` if the
    /// readable part came up short.
    fn load_request(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        h: &InHeader,
    ) -> Result<Option<u64>, DeviceError> {
        let len = len_usize(h.len);
        grow(&mut self.request_buf, len);
        let Some(req) = self.request_buf.get_mut(..len) else {
            return Ok(None);
        };
        if chain.read_at(mem, 0, req)? != len {
            return Ok(None);
        }
        let unique = self.fresh_unique();
        let header = InHeader { unique, ..*h }.to_bytes();
        match self.request_buf.get_mut(..InHeader::SIZE) {
            Some(dst) => dst.copy_from_slice(&header),
            None => return Ok(None),
        }
        Ok(Some(unique))
    }

    fn forget(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        h: &InHeader,
    ) -> Result<(), DeviceError> {
        let len = len_usize(h.len);
        let args = len.saturating_sub(InHeader::SIZE);
        let min_args = if h.opcode == FUSE_BATCH_FORGET {
            BATCH_FORGET_IN_SIZE
        } else {
            FORGET_IN_SIZE
        };
        let mut ok = self.session.is_some() && args >= min_args;
        ok = ok && self.load_request(chain, mem, h)?.is_some();
        let req = self.request_buf.get(..len).unwrap_or(&[]);
        if ok && h.opcode == FUSE_BATCH_FORGET {
            // `count` from the copy the backend will get.
            let count = req
                .get(InHeader::SIZE..InHeader::SIZE.saturating_add(4))
                .and_then(|b| b.try_into().ok())
                .map_or(usize::MAX, |b| len_usize(u32::from_le_bytes(b)));
            ok = count.saturating_mul(FORGET_ONE_SIZE) <= args.saturating_sub(BATCH_FORGET_IN_SIZE);
        }
        if !ok {
            self.stats.rejected = self.stats.rejected.saturating_add(1);
            return Ok(());
        }
        match self.backend.send_noreply(req) {
            Ok(()) => self.stats.forgets = self.stats.forgets.saturating_add(1),
            Err(_) => self.stats.backend_errors = self.stats.backend_errors.saturating_add(1),
        }
        Ok(())
    }

    fn relay(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        h: &InHeader,
    ) -> Result<u32, DeviceError> {
        let len = len_usize(h.len);
        let Some(unique) = self.load_request(chain, mem, h)? else {
            return self.reject(chain, mem, h.unique, errno::EINVAL);
        };
        let cap = len_usize(chain.writable_len()).min(self.max_request);
        grow(&mut self.reply_buf, cap);
        let (Some(req), Some(reply)) = (self.request_buf.get(..len), self.reply_buf.get_mut(..cap))
        else {
            return self.reject(chain, mem, h.unique, errno::EIO);
        };
        // Whatever the backend leaves unwritten must not show stale bytes.
        reply.fill(0);
        self.stats.relayed = self.stats.relayed.saturating_add(1);
        let n = match self.backend.call(req, reply) {
            Ok(n) => n,
            Err(e) => {
                self.stats.backend_errors = self.stats.backend_errors.saturating_add(1);
                self.stalled |= e == FsBackendError::Timeout;
                return reply_status(chain, mem, h.unique, errno::EIO);
            }
        };
        let Some(n) = check_reply(reply, n, unique) else {
            self.stats.bad_replies = self.stats.bad_replies.saturating_add(1);
            return reply_status(chain, mem, h.unique, errno::EIO);
        };
        set_unique(reply, OutHeader::UNIQUE_OFFSET, h.unique);
        let out = reply.get(..n).unwrap_or(&[]);
        let written = chain.write_at(mem, 0, out)?;
        Ok(written as u32)
    }

    /// The `fuse_init_out` for a guest INIT of major 7 and an acceptable
    /// minor.
    fn negotiate(&self, guest: &InitIn) -> (InitOut, Session) {
        let b = &self.backend_init;
        let wanted = guest.flags64();
        let granted = wanted & b.flags & RELAY_SUPPORTED_FLAGS;
        let (flags, flags2) = split_flags(granted, wanted & FUSE_INIT_EXT != 0);
        // A full WRITE (header, fuse_write_in, data) must fit a request,
        // a full READ reply (header, data) a reply.
        let data_room = self
            .max_request
            .saturating_sub(InHeader::SIZE)
            .saturating_sub(WRITE_IN_SIZE);
        let max_write = b
            .max_write
            .min(u32::try_from(data_room).unwrap_or(u32::MAX));
        let max_pages = if granted & FUSE_MAX_PAGES != 0 {
            let limit = u16::try_from(data_room / PAGE_SIZE).unwrap_or(u16::MAX);
            b.max_pages.max(1).min(limit)
        } else {
            0
        };
        let out = InitOut {
            major: KERNEL_VERSION,
            minor: guest.minor.min(b.minor),
            max_readahead: guest.max_readahead.min(b.max_readahead),
            flags,
            max_background: b.max_background,
            congestion_threshold: b.congestion_threshold,
            max_write,
            time_gran: b.time_gran,
            max_pages,
            map_alignment: 0,
            flags2,
            max_stack_depth: 0,
        };
        let session = Session {
            minor: out.minor,
            flags: granted,
            max_readahead: out.max_readahead,
            max_write,
            max_pages,
        };
        (out, session)
    }

    fn init(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        h: &InHeader,
    ) -> Result<u32, DeviceError> {
        let args = len_usize(h.len)
            .saturating_sub(InHeader::SIZE)
            .min(InitIn::SIZE);
        let mut b = [0u8; InitIn::SIZE];
        let got = match b.get_mut(..args) {
            Some(dst) => chain.read_at(mem, InHeader::SIZE as u64, dst)?,
            None => 0,
        };
        let Some(guest) = b.get(..got).and_then(InitIn::parse) else {
            return self.reject(chain, mem, h.unique, errno::EINVAL);
        };
        let (out, session) = if guest.major > KERNEL_VERSION {
            // Tell the driver our major; it retries with it.
            let out = InitOut {
                major: KERNEL_VERSION,
                minor: KERNEL_MINOR_VERSION,
                ..InitOut::default()
            };
            (out, None)
        } else if guest.major < KERNEL_VERSION || guest.minor < MIN_MINOR_VERSION {
            return self.reject(chain, mem, h.unique, errno::EPROTO);
        } else {
            let (out, s) = self.negotiate(&guest);
            (out, Some(s))
        };
        if len_usize(chain.writable_len()) < INIT_REPLY_LEN {
            return self.reject(chain, mem, h.unique, errno::EIO);
        }
        let mut reply = [0u8; INIT_REPLY_LEN];
        let header = OutHeader {
            len: INIT_REPLY_LEN as u32,
            error: 0,
            unique: h.unique,
        };
        for (d, s) in reply
            .iter_mut()
            .zip(header.to_bytes().iter().chain(out.to_bytes().iter()))
        {
            *d = *s;
        }
        let written = chain.write_at(mem, 0, &reply)?;
        self.stats.local = self.stats.local.saturating_add(1);
        if let Some(s) = session {
            self.end_session();
            self.session = Some(s);
        }
        Ok(written as u32)
    }
}

impl<B: FsBackend> VirtioDevice for FsDevice<B> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        0
    }
    fn num_queues(&self) -> u16 {
        NUM_QUEUES
    }
    fn queue_max(&self, _queue: u16) -> u16 {
        QUEUE_SIZE_MAX
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }
    fn notify(
        &mut self,
        queue: u16,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        match queue {
            HIPRIO_QUEUE | REQUEST_QUEUE => self.process(queue, queues, mem),
            _ => Ok(NotifyResult::default()),
        }
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        let a = self.process(HIPRIO_QUEUE, queues, mem)?;
        let b = self.process(REQUEST_QUEUE, queues, mem)?;
        Ok(a.merge(b))
    }
    fn reset(&mut self) {
        self.end_session();
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
    use crate::fuse::*;

    struct Null;
    impl FsBackend for Null {
        fn call(&mut self, _: &[u8], _: &mut [u8]) -> Result<usize, FsBackendError> {
            Err(FsBackendError::Io)
        }
        fn send_noreply(&mut self, _: &[u8]) -> Result<(), FsBackendError> {
            Ok(())
        }
    }

    fn info() -> InitInfo {
        InitInfo {
            major: 7,
            minor: 38,
            max_readahead: 0x2_0000,
            flags: RELAY_SUPPORTED_FLAGS,
            max_background: 12,
            congestion_threshold: 9,
            max_write: 1 << 20,
            time_gran: 1,
            max_pages: 256,
        }
    }

    #[test]
    fn tag_rules() {
        assert_eq!(
            FsDevice::new("", Null, info()).err(),
            Some(FsError::EmptyTag)
        );
        assert_eq!(
            FsDevice::new(&"x".repeat(37), Null, info()).err(),
            Some(FsError::TagTooLong(37))
        );
        assert_eq!(
            FsDevice::new("a\0b", Null, info()).err(),
            Some(FsError::TagHasNul)
        );
        let d = FsDevice::new(&"y".repeat(36), Null, info()).unwrap();
        assert_eq!(d.tag(), &[b'y'; 36]);
        let old = InitInfo {
            minor: 26,
            ..info()
        };
        assert_eq!(
            FsDevice::new("t", Null, old).err(),
            Some(FsError::BackendVersion {
                major: 7,
                minor: 26
            })
        );
    }

    #[test]
    fn backend_init_is_clamped() {
        let wild = InitInfo {
            minor: 99,
            flags: u64::MAX,
            ..info()
        };
        let d = FsDevice::new("t", Null, wild).unwrap();
        assert_eq!(d.backend_init().minor, KERNEL_MINOR_VERSION);
        assert_eq!(d.backend_init().flags, RELAY_SUPPORTED_FLAGS);
        let no_pages = InitInfo {
            flags: FUSE_ASYNC_READ,
            ..info()
        };
        let d = FsDevice::new("t", Null, no_pages).unwrap();
        assert_eq!(d.backend_init().max_pages, 0);
    }

    #[test]
    fn unique_counter_is_even_and_skips_zero() {
        let mut d = FsDevice::new("t", Null, info()).unwrap();
        assert_eq!(d.fresh_unique(), 2);
        assert_eq!(d.fresh_unique(), 4);
        d.next_unique = UNIQUE_MASK;
        assert_eq!(d.fresh_unique(), UNIQUE_MASK);
        assert_eq!(d.fresh_unique(), 2, "wraps past 2^63 to the start");
    }

    #[test]
    fn init_request_and_reply_round_trip() {
        let req = build_init_request(0x42);
        assert_eq!(req.len(), INIT_REQUEST_LEN);
        let h = InHeader::parse(&req).unwrap();
        assert_eq!(
            (h.len, h.opcode, h.unique, h.nodeid),
            (104, FUSE_INIT, 0x42, 0)
        );
        let i = InitIn::parse(&req[40..]).unwrap();
        assert_eq!((i.major, i.minor), (7, KERNEL_MINOR_VERSION));
        assert_eq!(i.flags64(), RELAY_SUPPORTED_FLAGS | FUSE_INIT_EXT);

        let out = InitOut {
            major: 7,
            minor: 40,
            max_readahead: 0x2_0000,
            flags: (FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS | FUSE_INIT_EXT) as u32,
            flags2: ((FUSE_HAS_INODE_DAX | FUSE_SECURITY_CTX) >> 32) as u32,
            max_background: 16,
            congestion_threshold: 12,
            max_write: 0x10_0000,
            time_gran: 1,
            max_pages: 256,
            map_alignment: 12,
            ..InitOut::default()
        };
        let mut reply = OutHeader {
            len: 80,
            error: 0,
            unique: 0x42,
        }
        .to_bytes()
        .to_vec();
        reply.extend_from_slice(&out.to_bytes());
        let info = parse_init_reply(&reply).unwrap();
        assert_eq!(info.minor, 40);
        assert_eq!(
            info.flags,
            FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_SECURITY_CTX
        );
        assert_eq!(info.max_pages, 256);
        assert_eq!(info.max_write, 0x10_0000);

        assert_eq!(
            parse_init_reply(&reply[..79]),
            Err(InitReplyError::BadLength {
                header_len: 80,
                actual: 79
            })
        );
        assert_eq!(
            parse_init_reply(&reply[..10]),
            Err(InitReplyError::TooShort)
        );
        let err = OutHeader {
            len: 16,
            error: -71,
            unique: 0x42,
        }
        .to_bytes();
        assert_eq!(parse_init_reply(&err), Err(InitReplyError::Error(71)));
        let mut v8 = reply.clone();
        v8[16..20].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(
            parse_init_reply(&v8),
            Err(InitReplyError::Version {
                major: 8,
                minor: 40
            })
        );
        let mut short = reply[..16 + 16].to_vec();
        short[0..4].copy_from_slice(&32u32.to_le_bytes());
        assert_eq!(parse_init_reply(&short), Err(InitReplyError::TooShort));
    }

    #[test]
    fn check_reply_rules() {
        let mut r = OutHeader {
            len: 20,
            error: 0,
            unique: 8,
        }
        .to_bytes()
        .to_vec();
        r.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(check_reply(&mut r.clone(), 20, 8), Some(20));
        assert_eq!(check_reply(&mut r.clone(), 20, 10), None, "unique");
        assert_eq!(check_reply(&mut r.clone(), 19, 8), None, "len field");
        assert_eq!(check_reply(&mut r.clone(), 21, 8), None, "beyond buffer");
        assert_eq!(check_reply(&mut r.clone(), 15, 8), None, "short");
        let mut e = r.clone();
        e[4..8].copy_from_slice(&(-2i32).to_le_bytes());
        assert_eq!(check_reply(&mut e, 20, 8), Some(16));
        assert_eq!(u32::from_le_bytes(e[0..4].try_into().unwrap()), 16);
        for bad in [1i32, -512, i32::MIN] {
            let mut e = r.clone();
            e[4..8].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(check_reply(&mut e, 20, 8), None, "{bad}");
        }
    }

    #[test]
    fn max_request_is_clamped() {
        let d = FsDevice::new("t", Null, info())
            .unwrap()
            .with_max_request(0);
        assert_eq!(d.max_request(), MIN_MAX_REQUEST);
        let d = FsDevice::new("t", Null, info())
            .unwrap()
            .with_max_request(usize::MAX);
        assert_eq!(d.max_request(), MAX_MAX_REQUEST);
    }
}
