//! Driver for the machine's virtio-fs devices (QEMU `vhost-user-fs-device`,
//! served by the host's virtiofsd). Written here because `virtio-drivers`
//! has no virtio-fs driver and its MMIO transport refuses device id 26: a
//! minimal modern virtio-mmio driver with one request queue and the hiprio
//! queue, one request in flight at a time (requests are relayed under the
//! machine lock), through bounce buffers the hypervisor owns — the device
//! never sees guest memory, and guests never see the device.

use core::sync::atomic::{fence, Ordering};

pub const DEVICE_ID: u32 = 26;
const MAGIC: u32 = 0x7472_6976;
/// Largest request or reply relayed (FUSE max_write 256 KiB + headers).
pub const BUF_LEN: usize = 264 * 1024;
const QUEUE_NUM: u16 = 128;
const TAG_LEN: usize = 36;

const R_MAGIC: u64 = 0x000;
const R_VERSION: u64 = 0x004;
const R_DEVICE_ID: u64 = 0x008;
const R_DEV_FEATURES: u64 = 0x010;
const R_DEV_FEATURES_SEL: u64 = 0x014;
const R_DRV_FEATURES: u64 = 0x020;
const R_DRV_FEATURES_SEL: u64 = 0x024;
const R_QUEUE_SEL: u64 = 0x030;
const R_QUEUE_NUM_MAX: u64 = 0x034;
const R_QUEUE_NUM: u64 = 0x038;
const R_QUEUE_READY: u64 = 0x044;
const R_QUEUE_NOTIFY: u64 = 0x050;
const R_INT_STATUS: u64 = 0x060;
const R_INT_ACK: u64 = 0x064;
const R_STATUS: u64 = 0x070;
const R_DESC: u64 = 0x080;
const R_DRIVER: u64 = 0x090;
const R_DEVICE: u64 = 0x0a0;
const R_CONFIG: u64 = 0x100;

const S_ACK: u32 = 1;
const S_DRIVER: u32 = 2;
const S_DRIVER_OK: u32 = 4;
const S_FEATURES_OK: u32 = 8;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    /// No answer before the deadline; the device is no longer used.
    Timeout,
    /// Request larger than the bounce buffer, or the device is broken.
    Io,
}

fn rd32(a: u64) -> u32 {
    // SAFETY: `a` is a register of the probed virtio-mmio block or a ring
    // field in DMA memory this driver owns (identity-mapped).
    unsafe { (a as *const u32).read_volatile() }
}
fn wr32(a: u64, v: u32) {
    // SAFETY: as in rd32.
    unsafe { (a as *mut u32).write_volatile(v) }
}
fn rd16(a: u64) -> u16 {
    // SAFETY: as in rd32.
    unsafe { (a as *const u16).read_volatile() }
}
fn wr16(a: u64, v: u16) {
    // SAFETY: as in rd32.
    unsafe { (a as *mut u16).write_volatile(v) }
}
fn wr64(a: u64, v: u64) {
    // SAFETY: as in rd32.
    unsafe { (a as *mut u64).write_volatile(v) }
}

struct Ring {
    index: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_avail: u16,
    last_used: u16,
}

pub struct PhysFs {
    base: u64,
    /// N of the QEMU tag `rivetfs<N>`.
    pub index: u32,
    hiprio: Ring,
    request: Ring,
    buf_in: u64,
    buf_out: u64,
    broken: bool,
    next_unique: u64,
    /// Ticks a request may take (timebase units).
    pub timeout: u64,
}

fn page(pages: usize) -> u64 {
    use virtio_drivers::Hal;
    let (pa, _) = crate::physdev::HalImpl::dma_alloc(pages, virtio_drivers::BufferDirection::Both);
    pa as u64
}

impl PhysFs {
    /// Starts the driver for the virtio-fs device at `base`, if it is one
    /// with a `rivetfs<N>` tag.
    pub fn probe(base: u64, timebase: u64) -> Option<PhysFs> {
        if rd32(base + R_MAGIC) != MAGIC || rd32(base + R_DEVICE_ID) != DEVICE_ID {
            return None;
        }
        if rd32(base + R_VERSION) != 2 {
            log::warn!(
                "virtio-fs at {base:#x}: legacy virtio-mmio (version {}) is not supported",
                rd32(base + R_VERSION)
            );
            return None;
        }
        let mut tag = [0u8; TAG_LEN];
        for (i, t) in tag.iter_mut().enumerate() {
            // SAFETY: config space bytes of the probed device.
            *t = unsafe { ((base + R_CONFIG + i as u64) as *const u8).read_volatile() };
        }
        let len = tag.iter().position(|&b| b == 0).unwrap_or(TAG_LEN);
        let tag = core::str::from_utf8(&tag[..len]).unwrap_or("");
        let Some(index) = tag
            .strip_prefix("rivetfs")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            log::warn!("virtio-fs at {base:#x} has tag {tag:?}, not rivetfs<N>: unused");
            return None;
        };
        wr32(base + R_STATUS, 0);
        wr32(base + R_STATUS, S_ACK | S_DRIVER);
        wr32(base + R_DEV_FEATURES_SEL, 1);
        if rd32(base + R_DEV_FEATURES) & 1 == 0 {
            log::warn!("virtio-fs at {base:#x} does not offer VERSION_1");
            return None;
        }
        wr32(base + R_DRV_FEATURES_SEL, 0);
        wr32(base + R_DRV_FEATURES, 0);
        wr32(base + R_DRV_FEATURES_SEL, 1);
        wr32(base + R_DRV_FEATURES, 1);
        wr32(base + R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
        if rd32(base + R_STATUS) & S_FEATURES_OK == 0 {
            log::warn!("virtio-fs at {base:#x} refused our features");
            return None;
        }
        let hiprio = Self::setup_queue(base, 0)?;
        let request = Self::setup_queue(base, 1)?;
        let pages = BUF_LEN.div_ceil(4096);
        let fs = PhysFs {
            base,
            index,
            hiprio,
            request,
            buf_in: page(pages),
            buf_out: page(pages),
            broken: false,
            next_unique: 1 << 40,
            timeout: timebase.saturating_mul(5),
        };
        wr32(
            base + R_STATUS,
            S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
        );
        log::info!("shared directory {index}: virtio-fs at {base:#x}");
        Some(fs)
    }

    fn setup_queue(base: u64, index: u16) -> Option<Ring> {
        wr32(base + R_QUEUE_SEL, index as u32);
        let max = rd32(base + R_QUEUE_NUM_MAX);
        if max < QUEUE_NUM as u32 {
            return None;
        }
        let (desc, avail, used) = (page(1), page(1), page(1));
        wr32(base + R_QUEUE_NUM, QUEUE_NUM as u32);
        for (reg, pa) in [(R_DESC, desc), (R_DRIVER, avail), (R_DEVICE, used)] {
            wr32(base + reg, pa as u32);
            wr32(base + reg + 4, (pa >> 32) as u32);
        }
        wr32(base + R_QUEUE_READY, 1);
        Some(Ring {
            index,
            desc,
            avail,
            used,
            next_avail: 0,
            last_used: 0,
        })
    }

    fn set_desc(ring: &Ring, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = ring.desc + 16 * i as u64;
        wr64(d, addr);
        wr32(d + 8, len);
        wr16(d + 12, flags);
        wr16(d + 14, next);
    }

    /// Publishes descriptor 0 and waits for the device to return it.
    fn submit(&mut self, which: u16) -> Result<u32, FsError> {
        let base = self.base;
        let timeout = self.timeout;
        let ring = if which == 0 {
            &mut self.hiprio
        } else {
            &mut self.request
        };
        let slot = ring.next_avail % QUEUE_NUM;
        wr16(ring.avail + 4 + 2 * slot as u64, 0);
        fence(Ordering::SeqCst);
        ring.next_avail = ring.next_avail.wrapping_add(1);
        wr16(ring.avail + 2, ring.next_avail);
        fence(Ordering::SeqCst);
        wr32(base + R_QUEUE_NOTIFY, ring.index as u32);
        let deadline = crate::arch::time().saturating_add(timeout);
        while rd16(ring.used + 2) == ring.last_used {
            if crate::arch::time() > deadline {
                return Err(FsError::Timeout);
            }
            core::hint::spin_loop();
        }
        fence(Ordering::SeqCst);
        let elem = ring.used + 4 + 8 * (ring.last_used % QUEUE_NUM) as u64;
        let len = rd32(elem + 4);
        ring.last_used = ring.last_used.wrapping_add(1);
        let st = rd32(base + R_INT_STATUS);
        wr32(base + R_INT_ACK, st);
        Ok(len)
    }

    /// Relays one FUSE request and copies its reply into `reply`; returns
    /// the reply's length. The FUSE `unique` is replaced by the driver's
    /// own on the way out (several VMs share one daemon) and restored in
    /// the reply.
    pub fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, FsError> {
        if self.broken || request.len() > BUF_LEN || request.len() < 16 {
            return Err(FsError::Io);
        }
        crate::mm::copy_to(self.buf_in, request);
        let theirs = request
            .get(8..16)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        self.next_unique = self.next_unique.wrapping_add(2);
        wr64(self.buf_in + 8, self.next_unique);
        // The reply as header + payload descriptors, the way Linux's
        // virtio-fs driver lays it out (virtiofsd writes READ data into the
        // part after the header).
        // The reply as a header descriptor plus one descriptor per page of
        // a page-aligned payload area, the way Linux's virtio-fs driver lays
        // it out: virtiofsd's READ path fails with EIO when it has to fill
        // a payload that starts mid-page (found the hard way).
        Self::set_desc(
            &self.request,
            0,
            self.buf_in,
            request.len() as u32,
            DESC_NEXT,
            1,
        );
        Self::set_desc(
            &self.request,
            1,
            self.buf_out,
            16,
            DESC_WRITE | DESC_NEXT,
            2,
        );
        let mut at = self.buf_out + 4096;
        let end = self.buf_out + BUF_LEN as u64;
        let mut i = 2u16;
        while at < end {
            let next_page = (at & !4095) + 4096;
            let len = next_page.min(end) - at;
            let last = next_page >= end;
            Self::set_desc(
                &self.request,
                i,
                at,
                len as u32,
                if last {
                    DESC_WRITE
                } else {
                    DESC_WRITE | DESC_NEXT
                },
                i + 1,
            );
            at += len;
            i += 1;
        }
        let len = match self.submit(1) {
            Ok(l) => l as usize,
            Err(e) => {
                self.broken = true;
                log::error!("shared directory {}: virtio-fs did not answer; failing its requests from now on", self.index);
                return Err(e);
            }
        };
        if len > reply.len() {
            log::warn!(
                "shared directory {}: reply of {len} bytes for a {}-byte buffer (opcode {})",
                self.index,
                reply.len(),
                request
                    .get(4..8)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
                    .unwrap_or(0)
            );
        }
        // Header in the first 16 bytes, payload from the second page on.
        let n = len.min(reply.len()).min(16 + BUF_LEN - 4096);
        let head = n.min(16);
        // SAFETY: buf_out is our DMA buffer of BUF_LEN bytes: the header
        // lies in its first page, the payload (n - 16 <= BUF_LEN - 4096
        // bytes) from its second page on.
        let (h, p) = unsafe {
            (
                core::slice::from_raw_parts(self.buf_out as *const u8, head),
                core::slice::from_raw_parts((self.buf_out + 4096) as *const u8, n - head),
            )
        };
        reply[..head].copy_from_slice(h);
        reply[head..n].copy_from_slice(p);
        if n >= 16 {
            reply[8..16].copy_from_slice(&theirs.to_le_bytes());
        }
        Ok(len)
    }

    /// Sends a request that has no reply (FORGET) on the hiprio queue.
    pub fn send_noreply(&mut self, request: &[u8]) -> Result<(), FsError> {
        if self.broken || request.len() > BUF_LEN {
            return Err(FsError::Io);
        }
        crate::mm::copy_to(self.buf_in, request);
        Self::set_desc(&self.hiprio, 0, self.buf_in, request.len() as u32, 0, 0);
        match self.submit(0) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }
}
