//! virtio-blk (§5.2 "Block Device"), device id 2.
//!
//! This module owns the block device model [`Blk`] (one request queue,
//! request parsing and execution, configuration space), the host-side
//! [`BlockBackend`] trait, and two backends: [`RamDisk`] (a byte vector) and
//! [`WindowBackend`] (a sector range of another backend, e.g. so two VMs can
//! share one physical disk, each confined to its own range).
//!
//! # Features offered (§5.2.3)
//!
//! `SEG_MAX` (`seg_max` = [`SEG_MAX`]), `BLK_SIZE` (`blk_size` = 512),
//! `FLUSH` (always, §5.2.5.2 "SHOULD always offer"), `RO` when the backend
//! is read-only, and `DISCARD` / `WRITE_ZEROES` only when the backend
//! supports them and is writable. No `CONFIG_WCE`, `MQ`, `TOPOLOGY`,
//! `GEOMETRY`, `SIZE_MAX`, `ZONED`, `LIFETIME` or `SECURE_ERASE`.
//!
//! # Request handling (decisions)
//!
//! A request is a chain whose readable part starts with the 16-byte header
//! `{type: le32, reserved: le32, sector: le64}` and whose **last writable
//! byte** is the status; no assumption is made about descriptor boundaries
//! (§2.7.4.1). For `IN` and `GET_ID` the data is the writable part minus
//! the status byte; for `OUT`, `DISCARD` and `WRITE_ZEROES` it is the
//! readable part after the header.
//!
//! * No writable byte at all: the status cannot be reported, so the device
//!   fails ([`DeviceError::NoStatusByte`], DEVICE_NEEDS_RESET).
//! * Readable part shorter than the header: `IOERR`.
//! * `IN`/`OUT`: data length not a multiple of 512, `sector + len/512`
//!   overflowing or beyond `capacity`: `IOERR`. `OUT` (and every other
//!   write) to a read-only disk: `IOERR` without writing (§5.2.6.2).
//! * `FLUSH`: `backend.flush()`; the sector is ignored.
//! * `GET_ID`: the 20-byte id; a data area shorter than 20 bytes: `IOERR`.
//! * `DISCARD`/`WRITE_ZEROES` (when offered): the data must be 1 to
//!   [`MAX_DISCARD_SEG`] 16-byte segments (else `IOERR`); a segment with an
//!   unknown flag, or `unmap` on a discard, gives `UNSUPP` (§5.2.6.2); more
//!   than [`MAX_DISCARD_SECTORS`] sectors or a range beyond `capacity`
//!   gives `IOERR`. All segments are validated before any is executed.
//! * Any other type (including legacy `FLUSH_OUT`, SCSI and the zoned
//!   commands), or DISCARD/WRITE_ZEROES when not offered: `UNSUPP`.
//! * A backend error: `IOERR`.
//! * The used length is always the whole writable length (data + status),
//!   like QEMU: the status byte is last, so only that length lets a driver
//!   find it within `len` (§2.7.8). On errors the untouched data bytes keep
//!   the driver's own previous contents; nothing from the host leaks.
//!
//! Data moves through one [`BOUNCE_SIZE`]-byte bounce buffer, allocated once
//! per device, a chunk at a time. At most [`REQUESTS_PER_CALL`] requests are
//! handled per notify/poll.

use alloc::vec;
use alloc::vec::Vec;
use rivet_guest_mem::GuestMemory;

use crate::queue::{Chain, Queue, QUEUE_SIZE_MAX};
use crate::{read_config_bytes, DeviceError, NotifyResult, VirtioDevice};

/// Virtio device id of a block device.
pub const DEVICE_ID: u32 = 2;

/// `VIRTIO_BLK_F_SIZE_MAX`.
pub const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
/// `VIRTIO_BLK_F_SEG_MAX`.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// `VIRTIO_BLK_F_GEOMETRY`.
pub const VIRTIO_BLK_F_GEOMETRY: u64 = 1 << 4;
/// `VIRTIO_BLK_F_RO`.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_BLK_SIZE`.
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// `VIRTIO_BLK_F_FLUSH`.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// `VIRTIO_BLK_F_TOPOLOGY`.
pub const VIRTIO_BLK_F_TOPOLOGY: u64 = 1 << 10;
/// `VIRTIO_BLK_F_CONFIG_WCE`.
pub const VIRTIO_BLK_F_CONFIG_WCE: u64 = 1 << 11;
/// `VIRTIO_BLK_F_MQ`.
pub const VIRTIO_BLK_F_MQ: u64 = 1 << 12;
/// `VIRTIO_BLK_F_DISCARD`.
pub const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
/// `VIRTIO_BLK_F_WRITE_ZEROES`.
pub const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;

/// Request types (§5.2.6).
pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_GET_LIFETIME: u32 = 10;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
pub const VIRTIO_BLK_T_SECURE_ERASE: u32 = 14;

/// Request status values (§5.2.6).
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// The protocol's sector size (always 512, whatever `blk_size` says).
pub const SECTOR_SIZE: u64 = 512;
/// Length of the `GET_ID` string.
pub const ID_LEN: usize = 20;
/// `seg_max`: a request's data may use this many segments, so that header
/// and status still fit in a 256-entry chain or indirect table.
pub const SEG_MAX: u32 = (QUEUE_SIZE_MAX as u32) - 2;
/// `max_discard_seg` and `max_write_zeroes_seg`.
pub const MAX_DISCARD_SEG: u32 = 16;
/// `max_discard_sectors` and `max_write_zeroes_sectors` (per segment).
pub const MAX_DISCARD_SECTORS: u32 = 0x0040_0000;
/// Bytes moved between guest memory and the backend per backend call.
pub const BOUNCE_SIZE: usize = 4096;
/// Requests handled per notify or poll.
pub const REQUESTS_PER_CALL: usize = 2 * QUEUE_SIZE_MAX as usize;
/// Size of the configuration layout exposed (through `unused1`).
pub const CONFIG_LEN: usize = 60;
/// Id reported by backends that do not provide one.
pub const DEFAULT_ID: [u8; ID_LEN] = *b"rivet-virtio-blk\0\0\0\0";

const HEADER_LEN: u64 = 16;
const SEGMENT_LEN: u32 = 16;
const SEGMENT_FLAG_UNMAP: u32 = 1;

/// Why a backend operation failed. Every variant becomes `IOERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// The range is outside the backend (or not whole sectors).
    OutOfRange,
    /// The backend is read-only.
    ReadOnly,
    /// The operation is not supported.
    Unsupported,
    /// The storage failed.
    Io,
}

/// Host-side storage behind a [`Blk`].
///
/// [`Blk`] only calls `read`/`write` with whole sectors (buffer length a
/// non-zero multiple of 512, at most [`BOUNCE_SIZE`]) inside
/// `capacity_sectors()`, and `discard`/`write_zeroes` with in-range
/// counts; implementations should still check (a window must not trust its
/// caller).
pub trait BlockBackend {
    /// Size in 512-byte sectors.
    fn capacity_sectors(&self) -> u64;
    /// Whether writes are refused (offered as `VIRTIO_BLK_F_RO`).
    fn read_only(&self) -> bool;
    /// Reads `buf.len() / 512` sectors starting at `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError>;
    /// Writes `buf.len() / 512` sectors starting at `sector`.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError>;
    /// Makes completed writes stable.
    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
    /// Whether [`BlockBackend::discard`] is implemented.
    fn supports_discard(&self) -> bool {
        false
    }
    /// Discards `count` sectors (contents afterwards unspecified).
    fn discard(&mut self, _sector: u64, _count: u64) -> Result<(), BackendError> {
        Err(BackendError::Unsupported)
    }
    /// Whether [`BlockBackend::write_zeroes`] is implemented.
    fn supports_write_zeroes(&self) -> bool {
        false
    }
    /// Zeroes `count` sectors.
    fn write_zeroes(&mut self, _sector: u64, _count: u64) -> Result<(), BackendError> {
        Err(BackendError::Unsupported)
    }
    /// The `GET_ID` string (NUL-padded ASCII).
    fn id(&self) -> [u8; ID_LEN] {
        DEFAULT_ID
    }
}

impl<B: BlockBackend + ?Sized> BlockBackend for &mut B {
    fn capacity_sectors(&self) -> u64 {
        (**self).capacity_sectors()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        (**self).read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError> {
        (**self).write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        (**self).flush()
    }
    fn supports_discard(&self) -> bool {
        (**self).supports_discard()
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), BackendError> {
        (**self).discard(sector, count)
    }
    fn supports_write_zeroes(&self) -> bool {
        (**self).supports_write_zeroes()
    }
    fn write_zeroes(&mut self, sector: u64, count: u64) -> Result<(), BackendError> {
        (**self).write_zeroes(sector, count)
    }
    fn id(&self) -> [u8; ID_LEN] {
        (**self).id()
    }
}

/// `[sector, sector + count)` as a byte range inside `capacity` sectors.
fn byte_range(capacity: u64, sector: u64, count: u64) -> Result<(usize, usize), BackendError> {
    let end = sector.checked_add(count).ok_or(BackendError::OutOfRange)?;
    if end > capacity {
        return Err(BackendError::OutOfRange);
    }
    let start = sector
        .checked_mul(SECTOR_SIZE)
        .ok_or(BackendError::OutOfRange)?;
    let end = end
        .checked_mul(SECTOR_SIZE)
        .ok_or(BackendError::OutOfRange)?;
    Ok((
        usize::try_from(start).map_err(|_| BackendError::OutOfRange)?,
        usize::try_from(end).map_err(|_| BackendError::OutOfRange)?,
    ))
}

/// Number of whole sectors in `len` bytes; error unless `len` is a multiple
/// of 512.
fn whole_sectors(len: usize) -> Result<u64, BackendError> {
    let len = len as u64;
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(BackendError::OutOfRange);
    }
    Ok(len / SECTOR_SIZE)
}

/// A disk held in memory (a RAM disk, or a test backend).
#[derive(Debug, Clone)]
pub struct RamDisk {
    data: Vec<u8>,
    read_only: bool,
    discard: bool,
    id: [u8; ID_LEN],
    flushes: u64,
}

impl RamDisk {
    /// A disk over `data`; a partial trailing sector is not addressable.
    pub fn new(data: Vec<u8>) -> Self {
        RamDisk {
            data,
            read_only: false,
            discard: true,
            id: DEFAULT_ID,
            flushes: 0,
        }
    }
    /// Refuses writes.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// Whether discard and write-zeroes are offered (default: yes).
    pub fn with_discard(mut self, on: bool) -> Self {
        self.discard = on;
        self
    }
    /// Sets the `GET_ID` string.
    pub fn with_id(mut self, id: [u8; ID_LEN]) -> Self {
        self.id = id;
        self
    }
    /// The disk contents.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// The disk contents, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    /// How many flushes were requested.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }
    fn range(&self, sector: u64, count: u64) -> Result<(usize, usize), BackendError> {
        byte_range(self.capacity_sectors(), sector, count)
    }
    fn zero(&mut self, sector: u64, count: u64) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        let (a, b) = self.range(sector, count)?;
        self.data
            .get_mut(a..b)
            .ok_or(BackendError::OutOfRange)?
            .fill(0);
        Ok(())
    }
}

impl BlockBackend for RamDisk {
    fn capacity_sectors(&self) -> u64 {
        self.data.len() as u64 / SECTOR_SIZE
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let (a, b) = self.range(sector, whole_sectors(buf.len())?)?;
        buf.copy_from_slice(self.data.get(a..b).ok_or(BackendError::OutOfRange)?);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        let (a, b) = self.range(sector, whole_sectors(buf.len())?)?;
        self.data
            .get_mut(a..b)
            .ok_or(BackendError::OutOfRange)?
            .copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.flushes = self.flushes.saturating_add(1);
        Ok(())
    }
    fn supports_discard(&self) -> bool {
        self.discard
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), BackendError> {
        self.zero(sector, count)
    }
    fn supports_write_zeroes(&self) -> bool {
        self.discard
    }
    fn write_zeroes(&mut self, sector: u64, count: u64) -> Result<(), BackendError> {
        self.zero(sector, count)
    }
    fn id(&self) -> [u8; ID_LEN] {
        self.id
    }
}

/// The sectors `[start, start + len)` of `inner`, presented as a disk of
/// `len` sectors starting at 0. Every access is checked against the window
/// (overflow-safe) before it is translated, so nothing outside the window is
/// reachable whatever the caller passes.
#[derive(Debug, Clone)]
pub struct WindowBackend<B> {
    inner: B,
    start: u64,
    len: u64,
    read_only: bool,
    id: Option<[u8; ID_LEN]>,
}

impl<B: BlockBackend> WindowBackend<B> {
    /// A window of `len` sectors at `start`; fails if it does not fit inside
    /// `inner`'s capacity.
    pub fn new(inner: B, start: u64, len: u64) -> Result<Self, BackendError> {
        let end = start.checked_add(len).ok_or(BackendError::OutOfRange)?;
        if end > inner.capacity_sectors() {
            return Err(BackendError::OutOfRange);
        }
        Ok(WindowBackend {
            inner,
            start,
            len,
            read_only: false,
            id: None,
        })
    }
    /// Makes the window read-only (whatever the inner backend allows).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// Overrides the `GET_ID` string (windows of one disk should differ).
    pub fn with_id(mut self, id: [u8; ID_LEN]) -> Self {
        self.id = Some(id);
        self
    }
    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }
    /// Unwraps the backend.
    pub fn into_inner(self) -> B {
        self.inner
    }
    /// Translates `[sector, sector + count)` to the inner backend.
    fn map(&self, sector: u64, count: u64) -> Result<u64, BackendError> {
        let end = sector.checked_add(count).ok_or(BackendError::OutOfRange)?;
        if end > self.len {
            return Err(BackendError::OutOfRange);
        }
        self.start
            .checked_add(sector)
            .ok_or(BackendError::OutOfRange)
    }
    fn writable(&self) -> Result<(), BackendError> {
        if self.read_only() {
            Err(BackendError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

impl<B: BlockBackend> BlockBackend for WindowBackend<B> {
    fn capacity_sectors(&self) -> u64 {
        self.len
    }
    fn read_only(&self) -> bool {
        self.read_only || self.inner.read_only()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let at = self.map(sector, whole_sectors(buf.len())?)?;
        self.inner.read(at, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError> {
        self.writable()?;
        let at = self.map(sector, whole_sectors(buf.len())?)?;
        self.inner.write(at, buf)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.inner.flush()
    }
    fn supports_discard(&self) -> bool {
        self.inner.supports_discard()
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), BackendError> {
        self.writable()?;
        let at = self.map(sector, count)?;
        self.inner.discard(at, count)
    }
    fn supports_write_zeroes(&self) -> bool {
        self.inner.supports_write_zeroes()
    }
    fn write_zeroes(&mut self, sector: u64, count: u64) -> Result<(), BackendError> {
        self.writable()?;
        let at = self.map(sector, count)?;
        self.inner.write_zeroes(at, count)
    }
    fn id(&self) -> [u8; ID_LEN] {
        self.id.unwrap_or_else(|| self.inner.id())
    }
}

/// Request counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlkStats {
    /// Requests completed (any status).
    pub requests: u64,
    /// Requests completed with `IOERR`.
    pub ioerr: u64,
    /// Requests completed with `UNSUPP`.
    pub unsupp: u64,
}

/// The virtio-blk device model.
pub struct Blk<B: BlockBackend> {
    backend: B,
    features: u64,
    bounce: Vec<u8>,
    stats: BlkStats,
}

impl<B: BlockBackend> Blk<B> {
    /// A block device over `backend`. The offered features are fixed here
    /// from the backend's `read_only` and `supports_*` answers.
    pub fn new(backend: B) -> Self {
        let mut features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH;
        if backend.read_only() {
            features |= VIRTIO_BLK_F_RO;
        } else {
            if backend.supports_discard() {
                features |= VIRTIO_BLK_F_DISCARD;
            }
            if backend.supports_write_zeroes() {
                features |= VIRTIO_BLK_F_WRITE_ZEROES;
            }
        }
        Blk {
            backend,
            features,
            bounce: vec![0; BOUNCE_SIZE],
            stats: BlkStats::default(),
        }
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
    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    fn offered(&self, f: u64) -> bool {
        self.features & f != 0
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let fields: [(usize, &[u8]); 9] = [
            (0, &self.backend.capacity_sectors().to_le_bytes()),
            (12, &SEG_MAX.to_le_bytes()),
            (20, &(SECTOR_SIZE as u32).to_le_bytes()),
            (36, &MAX_DISCARD_SECTORS.to_le_bytes()),
            (40, &MAX_DISCARD_SEG.to_le_bytes()),
            (44, &1u32.to_le_bytes()),
            (48, &MAX_DISCARD_SECTORS.to_le_bytes()),
            (52, &MAX_DISCARD_SEG.to_le_bytes()),
            (56, &[0u8]),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = c.get_mut(at..at.saturating_add(bytes.len())) {
                dst.copy_from_slice(bytes);
            }
        }
        c
    }

    /// Handles every available request (up to the budget).
    fn process(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        let mut result = NotifyResult::default();
        let Some(q) = queues.get_mut(0) else {
            return Ok(result);
        };
        for _ in 0..REQUESTS_PER_CALL {
            let Some(chain) = q.pop(mem)? else { break };
            let len = self.handle(&chain, mem)?;
            q.push_used(mem, chain.head(), len)?;
            result.used_buffers = true;
        }
        Ok(result)
    }

    /// Executes one request and writes its status; returns the used length.
    fn handle(&mut self, chain: &Chain, mem: &mut dyn GuestMemory) -> Result<u32, DeviceError> {
        let writable = chain.writable_len();
        let Some(data_in) = writable.checked_sub(1) else {
            return Err(DeviceError::NoStatusByte { head: chain.head() });
        };
        let status = self.execute(chain, mem, data_in);
        self.stats.requests = self.stats.requests.saturating_add(1);
        match status {
            VIRTIO_BLK_S_IOERR => self.stats.ioerr = self.stats.ioerr.saturating_add(1),
            VIRTIO_BLK_S_UNSUPP => self.stats.unsupp = self.stats.unsupp.saturating_add(1),
            _ => {}
        }
        if chain.write_at(mem, u64::from(data_in), &[status])? != 1 {
            return Err(DeviceError::NoStatusByte { head: chain.head() });
        }
        Ok(writable)
    }

    fn execute(&mut self, chain: &Chain, mem: &mut dyn GuestMemory, data_in: u32) -> u8 {
        let mut h = [0u8; HEADER_LEN as usize];
        if chain.read_at(mem, 0, &mut h) != Ok(h.len()) {
            return VIRTIO_BLK_S_IOERR;
        }
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = h;
        let kind = u32::from_le_bytes([t0, t1, t2, t3]);
        let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        let data_out = chain.readable_len().saturating_sub(HEADER_LEN as u32);
        let r = match kind {
            VIRTIO_BLK_T_IN => self.read(chain, mem, sector, data_in),
            VIRTIO_BLK_T_OUT => self.write(chain, mem, sector, data_out),
            VIRTIO_BLK_T_FLUSH => self.backend.flush().map_err(|_| VIRTIO_BLK_S_IOERR),
            VIRTIO_BLK_T_GET_ID => self.get_id(chain, mem, data_in),
            VIRTIO_BLK_T_DISCARD if self.offered(VIRTIO_BLK_F_DISCARD) => {
                self.discard_or_zero(chain, mem, data_out, false)
            }
            VIRTIO_BLK_T_WRITE_ZEROES if self.offered(VIRTIO_BLK_F_WRITE_ZEROES) => {
                self.discard_or_zero(chain, mem, data_out, true)
            }
            _ => Err(VIRTIO_BLK_S_UNSUPP),
        };
        match r {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(s) => s,
        }
    }

    /// Validates an IN/OUT transfer: whole sectors, inside the disk.
    fn check_transfer(&self, sector: u64, len: u32) -> Result<(), u8> {
        if !u64::from(len).is_multiple_of(SECTOR_SIZE) {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        let end = sector
            .checked_add(u64::from(len) / SECTOR_SIZE)
            .ok_or(VIRTIO_BLK_S_IOERR)?;
        if end > self.backend.capacity_sectors() {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        Ok(())
    }

    fn read(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        sector: u64,
        len: u32,
    ) -> Result<(), u8> {
        self.check_transfer(sector, len)?;
        let mut done: u32 = 0;
        while done < len {
            let n = len.saturating_sub(done).min(BOUNCE_SIZE as u32);
            let buf = self
                .bounce
                .get_mut(..n as usize)
                .ok_or(VIRTIO_BLK_S_IOERR)?;
            let at = sector.saturating_add(u64::from(done) / SECTOR_SIZE);
            self.backend.read(at, buf).map_err(|_| VIRTIO_BLK_S_IOERR)?;
            if chain.write_at(mem, u64::from(done), buf) != Ok(n as usize) {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            done = done.saturating_add(n);
        }
        Ok(())
    }

    fn write(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        sector: u64,
        len: u32,
    ) -> Result<(), u8> {
        if self.offered(VIRTIO_BLK_F_RO) {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        self.check_transfer(sector, len)?;
        let mut done: u32 = 0;
        while done < len {
            let n = len.saturating_sub(done).min(BOUNCE_SIZE as u32);
            let buf = self
                .bounce
                .get_mut(..n as usize)
                .ok_or(VIRTIO_BLK_S_IOERR)?;
            let from = HEADER_LEN.saturating_add(u64::from(done));
            if chain.read_at(mem, from, buf) != Ok(n as usize) {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            let at = sector.saturating_add(u64::from(done) / SECTOR_SIZE);
            self.backend
                .write(at, buf)
                .map_err(|_| VIRTIO_BLK_S_IOERR)?;
            done = done.saturating_add(n);
        }
        Ok(())
    }

    fn get_id(&mut self, chain: &Chain, mem: &mut dyn GuestMemory, len: u32) -> Result<(), u8> {
        if (len as usize) < ID_LEN {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        let id = self.backend.id();
        match chain.write_at(mem, 0, &id) {
            Ok(ID_LEN) => Ok(()),
            _ => Err(VIRTIO_BLK_S_IOERR),
        }
    }

    fn discard_or_zero(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestMemory,
        len: u32,
        zero: bool,
    ) -> Result<(), u8> {
        if self.offered(VIRTIO_BLK_F_RO) {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        if len == 0 || !len.is_multiple_of(SEGMENT_LEN) || len / SEGMENT_LEN > MAX_DISCARD_SEG {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        let count = (len / SEGMENT_LEN) as usize;
        let capacity = self.backend.capacity_sectors();
        // Validate every segment first; keep the validated copies (the
        // guest may change its memory meanwhile).
        let mut segs = [(0u64, 0u64); MAX_DISCARD_SEG as usize];
        for (i, slot) in segs.iter_mut().take(count).enumerate() {
            let mut b = [0u8; SEGMENT_LEN as usize];
            let from = HEADER_LEN.saturating_add((i as u64).saturating_mul(u64::from(SEGMENT_LEN)));
            if chain.read_at(mem, from, &mut b) != Ok(b.len()) {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            let [s0, s1, s2, s3, s4, s5, s6, s7, n0, n1, n2, n3, f0, f1, f2, f3] = b;
            let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
            let num = u32::from_le_bytes([n0, n1, n2, n3]);
            let flags = u32::from_le_bytes([f0, f1, f2, f3]);
            if flags & !SEGMENT_FLAG_UNMAP != 0 || (!zero && flags & SEGMENT_FLAG_UNMAP != 0) {
                return Err(VIRTIO_BLK_S_UNSUPP);
            }
            if num > MAX_DISCARD_SECTORS {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            let end = sector
                .checked_add(u64::from(num))
                .ok_or(VIRTIO_BLK_S_IOERR)?;
            if end > capacity {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            *slot = (sector, u64::from(num));
        }
        for &(sector, num) in segs.iter().take(count) {
            if num == 0 {
                continue;
            }
            let r = if zero {
                self.backend.write_zeroes(sector, num)
            } else {
                self.backend.discard(sector, num)
            };
            r.map_err(|_| VIRTIO_BLK_S_IOERR)?;
        }
        Ok(())
    }
}

impl<B: BlockBackend> VirtioDevice for Blk<B> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn num_queues(&self) -> u16 {
        1
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
        if queue != 0 {
            return Ok(NotifyResult::default());
        }
        self.process(queues, mem)
    }
    fn poll(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<NotifyResult, DeviceError> {
        self.process(queues, mem)
    }
    fn reset(&mut self) {}
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn disk(sectors: usize) -> RamDisk {
        let mut v = vec![0u8; sectors * 512];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i / 512) as u8;
        }
        RamDisk::new(v)
    }

    #[test]
    fn ram_disk_bounds() {
        let mut d = disk(4);
        let mut buf = [0u8; 512];
        assert_eq!(d.read(3, &mut buf), Ok(()));
        assert_eq!(buf[0], 3);
        assert_eq!(d.read(4, &mut buf), Err(BackendError::OutOfRange));
        assert_eq!(d.read(u64::MAX, &mut buf), Err(BackendError::OutOfRange));
        assert_eq!(d.read(0, &mut buf[..100]), Err(BackendError::OutOfRange));
        assert_eq!(d.write_zeroes(u64::MAX, 2), Err(BackendError::OutOfRange));
        assert_eq!(d.write_zeroes(2, 2), Ok(()));
        assert_eq!(d.data()[3 * 512], 0);
        let mut ro = disk(1).with_read_only(true);
        assert_eq!(ro.write(0, &buf), Err(BackendError::ReadOnly));
        assert_eq!(ro.discard(0, 1), Err(BackendError::ReadOnly));
    }

    #[test]
    fn window_cannot_reach_outside() {
        // Sector-range windows: two VMs share one disk, each confined.
        let mut inner = disk(16);
        assert!(WindowBackend::new(&mut inner, 10, 7).is_err());
        assert!(WindowBackend::new(&mut inner, u64::MAX, 2).is_err());
        let mut w = WindowBackend::new(&mut inner, 4, 4).unwrap();
        assert_eq!(w.capacity_sectors(), 4);
        let mut buf = [0u8; 1024];
        w.read(0, &mut buf).unwrap();
        assert_eq!((buf[0], buf[512]), (4, 5));
        assert_eq!(w.read(3, &mut buf), Err(BackendError::OutOfRange));
        assert_eq!(w.read(4, &mut buf[..512]), Err(BackendError::OutOfRange));
        assert_eq!(
            w.read(u64::MAX, &mut buf[..512]),
            Err(BackendError::OutOfRange)
        );
        assert_eq!(
            w.read(u64::MAX - 3, &mut buf[..512]),
            Err(BackendError::OutOfRange)
        );
        assert_eq!(w.write(3, &[0xaa; 1024]), Err(BackendError::OutOfRange));
        assert_eq!(w.discard(2, 3), Err(BackendError::OutOfRange));
        assert_eq!(w.write_zeroes(0, u64::MAX), Err(BackendError::OutOfRange));
        assert_eq!(w.write_zeroes(u64::MAX, 1), Err(BackendError::OutOfRange));
        w.write(3, &[0xaa; 512]).unwrap();
        w.write_zeroes(0, 1).unwrap();
        let d = inner.data();
        // Sector 7 (window 3) written, sector 4 (window 0) zeroed, the
        // neighbours untouched.
        assert!(d[7 * 512..8 * 512].iter().all(|&b| b == 0xaa));
        assert!(d[4 * 512..5 * 512].iter().all(|&b| b == 0));
        assert!(d[3 * 512..4 * 512].iter().all(|&b| b == 3));
        assert!(d[8 * 512..9 * 512].iter().all(|&b| b == 8));
    }

    #[test]
    fn window_exhaustive_small_ranges_stay_inside() {
        // Every (sector, count) pair around the edges maps inside the
        // window or is refused.
        let mut inner = disk(8);
        let mut w = WindowBackend::new(&mut inner, 2, 3).unwrap();
        let probes = [0u64, 1, 2, 3, 4, 5, u64::MAX - 1, u64::MAX];
        for &s in &probes {
            for &c in &probes {
                if let Ok(at) = w.map(s, c) {
                    assert!(at >= 2 && at.checked_add(c).unwrap() <= 5, "{s} {c}");
                }
                let _ = w.write_zeroes(s, c);
            }
        }
        let d = inner.data();
        assert!(d[..2 * 512]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i / 512) as u8));
        assert!(d[5 * 512..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (5 + i / 512) as u8));
    }

    #[test]
    fn window_read_only_and_id() {
        let inner = disk(4);
        let mut w = WindowBackend::new(inner, 0, 4)
            .unwrap()
            .with_read_only(true)
            .with_id(*b"window-one\0\0\0\0\0\0\0\0\0\0");
        assert!(w.read_only());
        assert_eq!(w.write(0, &[0; 512]), Err(BackendError::ReadOnly));
        assert_eq!(&w.id()[..10], b"window-one");
        assert_eq!(w.into_inner().data()[0], 0);
    }

    #[test]
    fn features_follow_backend() {
        let rw = Blk::new(disk(1));
        assert_eq!(
            rw.features(),
            VIRTIO_BLK_F_SEG_MAX
                | VIRTIO_BLK_F_BLK_SIZE
                | VIRTIO_BLK_F_FLUSH
                | VIRTIO_BLK_F_DISCARD
                | VIRTIO_BLK_F_WRITE_ZEROES
        );
        let ro = Blk::new(disk(1).with_read_only(true));
        assert_eq!(
            ro.features(),
            VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO
        );
        let plain = Blk::new(disk(1).with_discard(false));
        assert_eq!(
            plain.features() & (VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES),
            0
        );
    }

    #[test]
    fn config_layout() {
        // §5.2.4: capacity @0, seg_max @12, blk_size @20, discard fields
        // @36..48, write zeroes @48..57.
        let b = Blk::new(disk(9));
        let mut c = [0u8; 64];
        b.read_config(0, &mut c);
        assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 9);
        assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), SEG_MAX);
        assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512);
        assert_eq!(
            u32::from_le_bytes(c[36..40].try_into().unwrap()),
            MAX_DISCARD_SECTORS
        );
        assert_eq!(
            u32::from_le_bytes(c[40..44].try_into().unwrap()),
            MAX_DISCARD_SEG
        );
        assert_eq!(
            u32::from_le_bytes(c[52..56].try_into().unwrap()),
            MAX_DISCARD_SEG
        );
        assert_eq!(&c[60..], &[0; 4]);
    }
}
