//! The parts of the FUSE wire protocol (Linux `include/uapi/linux/fuse.h`,
//! protocol 7.x) that the virtio-fs device ([`crate::fs`]) needs to read,
//! check or produce itself: the request and reply headers, `FUSE_INIT`'s
//! arguments, the opcodes and the `FUSE_INIT` flags.
//!
//! Everything else in a request is relayed verbatim to the backend, so the
//! other argument structures are not modelled here (only the sizes the
//! device uses for its limits).
//!
//! All structures are encoded little-endian (a RISC-V guest's native order;
//! virtio-fs lets the driver pick the session's endianness with its
//! `FUSE_INIT`, see [`crate::fs`] for why only little-endian is served).
//! Encoding and decoding are explicit byte shuffles: no `unsafe`, no
//! transmutes, and decoding never reads outside the given slice.

/// The protocol major version this crate speaks (`FUSE_KERNEL_VERSION`).
pub const KERNEL_VERSION: u32 = 7;
/// The highest protocol minor version this crate speaks
/// (`FUSE_KERNEL_MINOR_VERSION` of the kernel headers it follows).
///
/// 7.36 introduced the 64-byte `fuse_init_in` with `flags2`; 7.38 turned
/// the header's padding into `total_extlen`; 7.39 added `FUSE_STATX`; 7.40
/// passthrough and resend (neither offered); 7.41 `FUSE_ALLOW_IDMAP`.
pub const KERNEL_MINOR_VERSION: u32 = 41;
/// The lowest minor version accepted from a guest or a backend. Requests are
/// relayed verbatim, so both ends must agree on every argument layout; the
/// layouts that depend on the minor version alone (not on a negotiated
/// flag) stopped changing well before 7.27, which is also the oldest minor
/// `virtiofsd` accepts. Every Linux virtio-fs driver speaks 7.31 or later.
pub const MIN_MINOR_VERSION: u32 = 27;

/// Linux errno values used in `fuse_out_header.error` (negated there).
pub mod errno {
    pub const EIO: i32 = 5;
    pub const EINVAL: i32 = 22;
    pub const ENOSYS: i32 = 38;
    pub const EPROTO: i32 = 71;
    /// Errors at or beyond this magnitude are kernel-internal
    /// (`ERESTARTSYS` = 512 and up); a reply carrying one is malformed.
    pub const MAX_ERRNO: i32 = 511;
}

// Opcodes (`enum fuse_opcode`). 7 and 19 are unused.
pub const FUSE_LOOKUP: u32 = 1;
pub const FUSE_FORGET: u32 = 2;
pub const FUSE_GETATTR: u32 = 3;
pub const FUSE_SETATTR: u32 = 4;
pub const FUSE_READLINK: u32 = 5;
pub const FUSE_SYMLINK: u32 = 6;
pub const FUSE_MKNOD: u32 = 8;
pub const FUSE_MKDIR: u32 = 9;
pub const FUSE_UNLINK: u32 = 10;
pub const FUSE_RMDIR: u32 = 11;
pub const FUSE_RENAME: u32 = 12;
pub const FUSE_LINK: u32 = 13;
pub const FUSE_OPEN: u32 = 14;
pub const FUSE_READ: u32 = 15;
pub const FUSE_WRITE: u32 = 16;
pub const FUSE_STATFS: u32 = 17;
pub const FUSE_RELEASE: u32 = 18;
pub const FUSE_FSYNC: u32 = 20;
pub const FUSE_SETXATTR: u32 = 21;
pub const FUSE_GETXATTR: u32 = 22;
pub const FUSE_LISTXATTR: u32 = 23;
pub const FUSE_REMOVEXATTR: u32 = 24;
pub const FUSE_FLUSH: u32 = 25;
pub const FUSE_INIT: u32 = 26;
pub const FUSE_OPENDIR: u32 = 27;
pub const FUSE_READDIR: u32 = 28;
pub const FUSE_RELEASEDIR: u32 = 29;
pub const FUSE_FSYNCDIR: u32 = 30;
pub const FUSE_GETLK: u32 = 31;
pub const FUSE_SETLK: u32 = 32;
pub const FUSE_SETLKW: u32 = 33;
pub const FUSE_ACCESS: u32 = 34;
pub const FUSE_CREATE: u32 = 35;
pub const FUSE_INTERRUPT: u32 = 36;
pub const FUSE_BMAP: u32 = 37;
pub const FUSE_DESTROY: u32 = 38;
pub const FUSE_IOCTL: u32 = 39;
pub const FUSE_POLL: u32 = 40;
pub const FUSE_NOTIFY_REPLY: u32 = 41;
pub const FUSE_BATCH_FORGET: u32 = 42;
pub const FUSE_FALLOCATE: u32 = 43;
pub const FUSE_READDIRPLUS: u32 = 44;
pub const FUSE_RENAME2: u32 = 45;
pub const FUSE_LSEEK: u32 = 46;
pub const FUSE_COPY_FILE_RANGE: u32 = 47;
pub const FUSE_SETUPMAPPING: u32 = 48;
pub const FUSE_REMOVEMAPPING: u32 = 49;
pub const FUSE_SYNCFS: u32 = 50;
pub const FUSE_TMPFILE: u32 = 51;
pub const FUSE_STATX: u32 = 52;
/// CUSE (character devices in user space) initialisation.
pub const CUSE_INIT: u32 = 4096;

// `FUSE_INIT` flags, as one 64-bit set: bits 32..63 travel in `flags2`
// (only when `FUSE_INIT_EXT` is set in `flags`).
pub const FUSE_ASYNC_READ: u64 = 1 << 0;
pub const FUSE_POSIX_LOCKS: u64 = 1 << 1;
pub const FUSE_FILE_OPS: u64 = 1 << 2;
pub const FUSE_ATOMIC_O_TRUNC: u64 = 1 << 3;
pub const FUSE_EXPORT_SUPPORT: u64 = 1 << 4;
pub const FUSE_BIG_WRITES: u64 = 1 << 5;
pub const FUSE_DONT_MASK: u64 = 1 << 6;
pub const FUSE_SPLICE_WRITE: u64 = 1 << 7;
pub const FUSE_SPLICE_MOVE: u64 = 1 << 8;
pub const FUSE_SPLICE_READ: u64 = 1 << 9;
pub const FUSE_FLOCK_LOCKS: u64 = 1 << 10;
pub const FUSE_HAS_IOCTL_DIR: u64 = 1 << 11;
pub const FUSE_AUTO_INVAL_DATA: u64 = 1 << 12;
pub const FUSE_DO_READDIRPLUS: u64 = 1 << 13;
pub const FUSE_READDIRPLUS_AUTO: u64 = 1 << 14;
pub const FUSE_ASYNC_DIO: u64 = 1 << 15;
pub const FUSE_WRITEBACK_CACHE: u64 = 1 << 16;
pub const FUSE_NO_OPEN_SUPPORT: u64 = 1 << 17;
pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
pub const FUSE_HANDLE_KILLPRIV: u64 = 1 << 19;
pub const FUSE_POSIX_ACL: u64 = 1 << 20;
pub const FUSE_ABORT_ERROR: u64 = 1 << 21;
pub const FUSE_MAX_PAGES: u64 = 1 << 22;
pub const FUSE_CACHE_SYMLINKS: u64 = 1 << 23;
pub const FUSE_NO_OPENDIR_SUPPORT: u64 = 1 << 24;
pub const FUSE_EXPLICIT_INVAL_DATA: u64 = 1 << 25;
pub const FUSE_MAP_ALIGNMENT: u64 = 1 << 26;
pub const FUSE_SUBMOUNTS: u64 = 1 << 27;
pub const FUSE_HANDLE_KILLPRIV_V2: u64 = 1 << 28;
pub const FUSE_SETXATTR_EXT: u64 = 1 << 29;
pub const FUSE_INIT_EXT: u64 = 1 << 30;
pub const FUSE_INIT_RESERVED: u64 = 1 << 31;
pub const FUSE_SECURITY_CTX: u64 = 1 << 32;
pub const FUSE_HAS_INODE_DAX: u64 = 1 << 33;
pub const FUSE_CREATE_SUPP_GROUP: u64 = 1 << 34;
pub const FUSE_HAS_EXPIRE_ONLY: u64 = 1 << 35;
pub const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
pub const FUSE_NO_EXPORT_SUPPORT: u64 = 1 << 38;
pub const FUSE_HAS_RESEND: u64 = 1 << 39;
pub const FUSE_ALLOW_IDMAP: u64 = 1 << 40;
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;

/// The `FUSE_INIT` flags a relaying virtio-fs device can let a session use:
/// every flag of protocol 7.41 except
///
/// * `FUSE_MAP_ALIGNMENT`, `FUSE_HAS_INODE_DAX`: DAX; the device has no DAX
///   window (no shared memory region);
/// * `FUSE_POSIX_LOCKS`, `FUSE_FLOCK_LOCKS`: remote locks. A blocking
///   `FUSE_SETLKW` would hold the (synchronous, time-bounded) relay until
///   it times out and leave a lock granted behind the guest's back. Without
///   these flags the guest kernel keeps locks local;
/// * `FUSE_EXPLICIT_INVAL_DATA`, `FUSE_HAS_RESEND`: they rely on FUSE
///   notify messages, which need the (absent) notification queue;
/// * `FUSE_PASSTHROUGH`, `FUSE_OVER_IO_URING`: /dev/fuse-only mechanisms;
/// * `FUSE_FILE_OPS`, `FUSE_INIT_RESERVED`: obsolete / reserved;
/// * `FUSE_INIT_EXT`: not a capability but the marker that `flags2` is
///   valid; the device sets it itself when it encodes 64-bit flags.
pub const RELAY_SUPPORTED_FLAGS: u64 = FUSE_ASYNC_READ
    | FUSE_ATOMIC_O_TRUNC
    | FUSE_EXPORT_SUPPORT
    | FUSE_BIG_WRITES
    | FUSE_DONT_MASK
    | FUSE_SPLICE_WRITE
    | FUSE_SPLICE_MOVE
    | FUSE_SPLICE_READ
    | FUSE_HAS_IOCTL_DIR
    | FUSE_AUTO_INVAL_DATA
    | FUSE_DO_READDIRPLUS
    | FUSE_READDIRPLUS_AUTO
    | FUSE_ASYNC_DIO
    | FUSE_WRITEBACK_CACHE
    | FUSE_NO_OPEN_SUPPORT
    | FUSE_PARALLEL_DIROPS
    | FUSE_HANDLE_KILLPRIV
    | FUSE_POSIX_ACL
    | FUSE_ABORT_ERROR
    | FUSE_MAX_PAGES
    | FUSE_CACHE_SYMLINKS
    | FUSE_NO_OPENDIR_SUPPORT
    | FUSE_SUBMOUNTS
    | FUSE_HANDLE_KILLPRIV_V2
    | FUSE_SETXATTR_EXT
    | FUSE_SECURITY_CTX
    | FUSE_CREATE_SUPP_GROUP
    | FUSE_HAS_EXPIRE_ONLY
    | FUSE_DIRECT_IO_ALLOW_MMAP
    | FUSE_NO_EXPORT_SUPPORT
    | FUSE_ALLOW_IDMAP;

/// Size of `struct fuse_forget_in` (`nlookup`).
pub const FORGET_IN_SIZE: usize = 8;
/// Size of `struct fuse_batch_forget_in` (`count`, `dummy`).
pub const BATCH_FORGET_IN_SIZE: usize = 8;
/// Size of `struct fuse_forget_one` (`nodeid`, `nlookup`).
pub const FORGET_ONE_SIZE: usize = 16;
/// Size of `struct fuse_write_in` (the arguments before a WRITE's data).
pub const WRITE_IN_SIZE: usize = 40;
/// Size of `struct fuse_read_in`.
pub const READ_IN_SIZE: usize = 40;
/// `fuse_init_out` size for minor versions 5..=22.
pub const COMPAT_22_INIT_OUT_SIZE: usize = 24;
/// Page size the `max_pages` limit counts in (Linux on RISC-V: 4 KiB).
pub const PAGE_SIZE: usize = 4096;

/// Little-endian field reader over a byte slice. Reads past the end yield
/// `None`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.pos.checked_add(N)?;
        let bytes: [u8; N] = self.buf.get(self.pos..end)?.try_into().ok()?;
        self.pos = end;
        Some(bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

/// Little-endian field writer into a fixed buffer (writes that do not fit
/// are dropped; the callers size their buffers from the same constants).
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.put(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
}

/// Copies `src` into a zeroed `[u8; N]` (shorter input is zero-extended,
/// longer input truncated): the "missing fields read as zero" rule FUSE
/// uses for structures that grew over time.
fn zero_extended<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (d, s) in out.iter_mut().zip(src) {
        *d = *s;
    }
    out
}

/// `struct fuse_in_header`: starts every request; `len` counts the whole
/// request (header, arguments and extensions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// Length of the extensions after the arguments, in 8-byte units
    /// (7.38; zero padding before).
    pub total_extlen: u16,
    pub padding: u16,
}

impl InHeader {
    /// Encoded size.
    pub const SIZE: usize = 40;
    /// Offset of `unique` in the encoding.
    pub const UNIQUE_OFFSET: usize = 8;

    /// Decodes the first [`InHeader::SIZE`] bytes; `None` if shorter.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        Some(InHeader {
            len: r.u32()?,
            opcode: r.u32()?,
            unique: r.u64()?,
            nodeid: r.u64()?,
            uid: r.u32()?,
            gid: r.u32()?,
            pid: r.u32()?,
            total_extlen: r.u16()?,
            padding: r.u16()?,
        })
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer::new(&mut b);
        w.u32(self.len);
        w.u32(self.opcode);
        w.u64(self.unique);
        w.u64(self.nodeid);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u32(self.pid);
        w.u16(self.total_extlen);
        w.u16(self.padding);
        b
    }
}

/// `struct fuse_out_header`: starts every reply; `len` counts the whole
/// reply, `error` is 0 or a negated errno, `unique` is the request's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutHeader {
    pub len: u32,
    pub error: i32,
    pub unique: u64,
}

impl OutHeader {
    /// Encoded size.
    pub const SIZE: usize = 16;
    /// Offset of `unique` in the encoding.
    pub const UNIQUE_OFFSET: usize = 8;

    /// Decodes the first [`OutHeader::SIZE`] bytes; `None` if shorter.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        Some(OutHeader {
            len: r.u32()?,
            error: r.i32()?,
            unique: r.u64()?,
        })
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer::new(&mut b);
        w.u32(self.len);
        w.i32(self.error);
        w.u64(self.unique);
        b
    }
}

/// `struct fuse_init_in` (7.36 layout: 64 bytes, `flags2` and reserved
/// words after the original four fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    /// Flag bits 0..31.
    pub flags: u32,
    /// Flag bits 32..63, meaningful only with `FUSE_INIT_EXT` in `flags`.
    pub flags2: u32,
}

impl InitIn {
    /// Encoded size (7.36 and later).
    pub const SIZE: usize = 64;
    /// Size sent by protocol versions before 7.36.
    pub const COMPAT_SIZE: usize = 16;
    /// The least that identifies a version: `major` and `minor`.
    pub const MIN_SIZE: usize = 8;

    /// Decodes `buf`, of any length from [`InitIn::MIN_SIZE`] on (missing
    /// trailing fields read as zero, extra bytes are ignored); `None` if
    /// shorter.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        if buf.len() < Self::MIN_SIZE {
            return None;
        }
        let b: [u8; Self::SIZE] = zero_extended(buf);
        let mut r = Reader::new(&b);
        Some(InitIn {
            major: r.u32()?,
            minor: r.u32()?,
            max_readahead: r.u32()?,
            flags: r.u32()?,
            flags2: r.u32()?,
        })
    }

    /// Encodes the 64-byte form (reserved words zero).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer::new(&mut b);
        w.u32(self.major);
        w.u32(self.minor);
        w.u32(self.max_readahead);
        w.u32(self.flags);
        w.u32(self.flags2);
        b
    }

    /// The requested flags as one 64-bit set (`flags2` counted only with
    /// `FUSE_INIT_EXT`).
    pub fn flags64(&self) -> u64 {
        join_flags(self.flags, self.flags2)
    }
}

/// `struct fuse_init_out` (64 bytes since 7.23 grew it to its final size;
/// later versions only used its reserved space).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    /// Flag bits 0..31.
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    /// Timestamp granularity in nanoseconds (7.6).
    pub time_gran: u32,
    /// Largest request in pages, with `FUSE_MAX_PAGES` (7.28).
    pub max_pages: u16,
    /// DAX mapping alignment, with `FUSE_MAP_ALIGNMENT` (7.31).
    pub map_alignment: u16,
    /// Flag bits 32..63, with `FUSE_INIT_EXT` (7.36).
    pub flags2: u32,
    /// Passthrough stacking depth, with `FUSE_PASSTHROUGH` (7.40).
    pub max_stack_depth: u32,
}

impl InitOut {
    /// Encoded size.
    pub const SIZE: usize = 64;

    /// Decodes `buf` (missing trailing fields read as zero, as for a
    /// daemon answering with an older, shorter layout); `None` if shorter
    /// than the 8-byte version-only form.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        if buf.len() < 8 {
            return None;
        }
        let b: [u8; Self::SIZE] = zero_extended(buf);
        let mut r = Reader::new(&b);
        Some(InitOut {
            major: r.u32()?,
            minor: r.u32()?,
            max_readahead: r.u32()?,
            flags: r.u32()?,
            max_background: r.u16()?,
            congestion_threshold: r.u16()?,
            max_write: r.u32()?,
            time_gran: r.u32()?,
            max_pages: r.u16()?,
            map_alignment: r.u16()?,
            flags2: r.u32()?,
            max_stack_depth: r.u32()?,
        })
    }

    /// Encodes the 64-byte form (reserved words zero).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer::new(&mut b);
        w.u32(self.major);
        w.u32(self.minor);
        w.u32(self.max_readahead);
        w.u32(self.flags);
        w.u16(self.max_background);
        w.u16(self.congestion_threshold);
        w.u32(self.max_write);
        w.u32(self.time_gran);
        w.u16(self.max_pages);
        w.u16(self.map_alignment);
        w.u32(self.flags2);
        w.u32(self.max_stack_depth);
        b
    }

    /// The granted flags as one 64-bit set (`flags2` counted only with
    /// `FUSE_INIT_EXT`).
    pub fn flags64(&self) -> u64 {
        join_flags(self.flags, self.flags2)
    }
}

/// `flags | flags2 << 32` when `FUSE_INIT_EXT` is set, else `flags`.
pub fn join_flags(flags: u32, flags2: u32) -> u64 {
    let lo = u64::from(flags);
    if lo & FUSE_INIT_EXT != 0 {
        lo | (u64::from(flags2) << 32)
    } else {
        lo
    }
}

/// Splits a 64-bit flag set into `(flags, flags2)`, setting `FUSE_INIT_EXT`
/// when any high bit is present or `ext` asks for it.
pub fn split_flags(flags: u64, ext: bool) -> (u32, u32) {
    let hi = (flags >> 32) as u32;
    let mut lo = flags & 0xffff_ffff;
    if ext || hi != 0 {
        lo |= FUSE_INIT_EXT;
    }
    (lo as u32, hi)
}

/// How the device treats an opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    /// `FUSE_FORGET`, `FUSE_BATCH_FORGET`: relayed, no reply.
    Forget,
    /// `FUSE_INTERRUPT`: completed without a reply (see [`crate::fs`]).
    Interrupt,
    /// `FUSE_NOTIFY_REPLY`: an answer to a notification; never expected,
    /// completed without a reply.
    NotifyReply,
    /// `FUSE_INIT`: answered by the device.
    Init,
    /// `FUSE_DESTROY`: answered by the device.
    Destroy,
    /// Refused by the device with `-ENOSYS`: DAX mapping requests, remote
    /// locks, CUSE, unknown opcodes.
    Unsupported,
    /// Everything else: relayed to the backend.
    Relay,
}

impl OpClass {
    /// Whether requests of this class get no reply (the writable part may
    /// be empty).
    pub fn no_reply(self) -> bool {
        matches!(
            self,
            OpClass::Forget | OpClass::Interrupt | OpClass::NotifyReply
        )
    }
}

/// Classifies `opcode` (see [`OpClass`]).
pub fn classify(opcode: u32) -> OpClass {
    match opcode {
        FUSE_FORGET | FUSE_BATCH_FORGET => OpClass::Forget,
        FUSE_INTERRUPT => OpClass::Interrupt,
        FUSE_NOTIFY_REPLY => OpClass::NotifyReply,
        FUSE_INIT => OpClass::Init,
        FUSE_DESTROY => OpClass::Destroy,
        FUSE_SETUPMAPPING | FUSE_REMOVEMAPPING | FUSE_GETLK | FUSE_SETLK | FUSE_SETLKW
        | CUSE_INIT => OpClass::Unsupported,
        FUSE_LOOKUP..=FUSE_SYMLINK
        | FUSE_MKNOD..=FUSE_RELEASE
        | FUSE_FSYNC..=FUSE_FLUSH
        | FUSE_OPENDIR..=FUSE_FSYNCDIR
        | FUSE_ACCESS..=FUSE_BMAP
        | FUSE_IOCTL..=FUSE_POLL
        | FUSE_FALLOCATE..=FUSE_COPY_FILE_RANGE
        | FUSE_SYNCFS..=FUSE_STATX => OpClass::Relay,
        _ => OpClass::Unsupported,
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
    fn in_header_layout() {
        let h = InHeader {
            len: 0x0102_0304,
            opcode: FUSE_LOOKUP,
            unique: 0x1122_3344_5566_7788,
            nodeid: 0x99aa_bbcc_ddee_ff00,
            uid: 1000,
            gid: 1001,
            pid: 42,
            total_extlen: 3,
            padding: 0xbeef,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &0x0102_0304u32.to_le_bytes());
        assert_eq!(&b[4..8], &1u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[16..24], &0x99aa_bbcc_ddee_ff00u64.to_le_bytes());
        assert_eq!(&b[24..28], &1000u32.to_le_bytes());
        assert_eq!(&b[28..32], &1001u32.to_le_bytes());
        assert_eq!(&b[32..36], &42u32.to_le_bytes());
        assert_eq!(&b[36..38], &3u16.to_le_bytes());
        assert_eq!(&b[38..40], &0xbeefu16.to_le_bytes());
        assert_eq!(InHeader::parse(&b), Some(h));
        assert_eq!(InHeader::parse(&b[..39]), None);
    }

    #[test]
    fn out_header_layout() {
        let h = OutHeader {
            len: 16,
            error: -errno::EIO,
            unique: 7,
        };
        let b = h.to_bytes();
        assert_eq!(&b[4..8], &(-5i32).to_le_bytes());
        assert_eq!(OutHeader::parse(&b), Some(h));
        assert_eq!(OutHeader::parse(&b[..15]), None);
    }

    #[test]
    fn init_layouts() {
        let i = InitIn {
            major: 7,
            minor: 38,
            max_readahead: 0x2_0000,
            flags: (FUSE_ASYNC_READ | FUSE_INIT_EXT) as u32,
            flags2: 0b101,
        };
        let b = i.to_bytes();
        assert_eq!(&b[16..20], &0b101u32.to_le_bytes());
        assert!(b[20..].iter().all(|&x| x == 0));
        assert_eq!(InitIn::parse(&b), Some(i));
        assert_eq!(
            i.flags64(),
            FUSE_ASYNC_READ | FUSE_INIT_EXT | FUSE_SECURITY_CTX | FUSE_CREATE_SUPP_GROUP
        );
        // Old 16-byte form: flags2 reads as zero.
        let old = InitIn::parse(&b[..16]).unwrap();
        assert_eq!(old.flags2, 0);
        assert_eq!(InitIn::parse(&b[..7]), None);
        // Without INIT_EXT, flags2 is ignored.
        let no_ext = InitIn { flags: 1, ..i };
        assert_eq!(no_ext.flags64(), 1);

        let o = InitOut {
            major: 7,
            minor: 31,
            max_readahead: 1,
            flags: 2,
            max_background: 3,
            congestion_threshold: 4,
            max_write: 5,
            time_gran: 6,
            max_pages: 7,
            map_alignment: 8,
            flags2: 9,
            max_stack_depth: 10,
        };
        let b = o.to_bytes();
        // Offsets of fuse_init_out.
        assert_eq!(&b[16..18], &3u16.to_le_bytes());
        assert_eq!(&b[18..20], &4u16.to_le_bytes());
        assert_eq!(&b[20..24], &5u32.to_le_bytes());
        assert_eq!(&b[24..28], &6u32.to_le_bytes());
        assert_eq!(&b[28..30], &7u16.to_le_bytes());
        assert_eq!(&b[30..32], &8u16.to_le_bytes());
        assert_eq!(&b[32..36], &9u32.to_le_bytes());
        assert_eq!(&b[36..40], &10u32.to_le_bytes());
        assert!(b[40..].iter().all(|&x| x == 0));
        assert_eq!(InitOut::parse(&b), Some(o));
        assert_eq!(InitOut::parse(&b[..24]).unwrap().time_gran, 0);
    }

    #[test]
    fn flag_split_and_join() {
        let f = FUSE_ASYNC_READ | FUSE_SECURITY_CTX;
        let (lo, hi) = split_flags(f, false);
        assert_eq!(u64::from(lo), FUSE_ASYNC_READ | FUSE_INIT_EXT);
        assert_eq!(hi, 1);
        assert_eq!(join_flags(lo, hi), f | FUSE_INIT_EXT);
        assert_eq!(split_flags(FUSE_ASYNC_READ, false), (1, 0));
        assert_eq!(
            split_flags(FUSE_ASYNC_READ, true),
            ((FUSE_ASYNC_READ | FUSE_INIT_EXT) as u32, 0)
        );
    }

    #[test]
    fn relay_flags_exclude_dax_locks_and_notify() {
        for f in [
            FUSE_MAP_ALIGNMENT,
            FUSE_HAS_INODE_DAX,
            FUSE_POSIX_LOCKS,
            FUSE_FLOCK_LOCKS,
            FUSE_EXPLICIT_INVAL_DATA,
            FUSE_HAS_RESEND,
            FUSE_PASSTHROUGH,
            FUSE_OVER_IO_URING,
            FUSE_INIT_EXT,
            FUSE_INIT_RESERVED,
            FUSE_FILE_OPS,
        ] {
            assert_eq!(RELAY_SUPPORTED_FLAGS & f, 0, "{f:#x}");
        }
        assert_ne!(RELAY_SUPPORTED_FLAGS & FUSE_MAX_PAGES, 0);
        assert_eq!(RELAY_SUPPORTED_FLAGS >> 41, 0);
    }

    #[test]
    fn opcode_classes() {
        assert_eq!(classify(FUSE_LOOKUP), OpClass::Relay);
        assert_eq!(classify(FUSE_STATX), OpClass::Relay);
        assert_eq!(classify(FUSE_READDIRPLUS), OpClass::Relay);
        assert_eq!(classify(FUSE_FORGET), OpClass::Forget);
        assert_eq!(classify(FUSE_BATCH_FORGET), OpClass::Forget);
        assert_eq!(classify(FUSE_INTERRUPT), OpClass::Interrupt);
        assert_eq!(classify(FUSE_INIT), OpClass::Init);
        assert_eq!(classify(FUSE_DESTROY), OpClass::Destroy);
        assert_eq!(classify(FUSE_NOTIFY_REPLY), OpClass::NotifyReply);
        for op in [
            0,
            7,
            19,
            FUSE_SETUPMAPPING,
            FUSE_REMOVEMAPPING,
            FUSE_GETLK,
            FUSE_SETLK,
            FUSE_SETLKW,
            53,
            CUSE_INIT,
            u32::MAX,
            26 << 24, // a big-endian FUSE_INIT
        ] {
            assert_eq!(classify(op), OpClass::Unsupported, "{op}");
        }
        let relayed = (0..=60)
            .filter(|&op| classify(op) == OpClass::Relay)
            .count();
        // 1..=52 minus 7, 19, the 5 special classes (2 forgets, interrupt,
        // notify reply, init, destroy = 6 opcodes) and 5 unsupported.
        assert_eq!(relayed, 52 - 2 - 6 - 5);
    }
}
