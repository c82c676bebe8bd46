//! The machine's own virtio devices, driven by the hypervisor (as a driver,
//! with the `virtio-drivers` crate) and reserved for it: guests never see
//! them, they only reach them through the emulated devices' backends here.
//!
//! Disks are told apart by their virtio-blk serial (`GET_ID`): xtask names
//! them `rivet-disk<N>` on the QEMU command line and the boot bundle refers
//! to disk N. virtio-drivers is used as-is: it covers blk (read, write,
//! flush, GET_ID) and rng; it lacks DISCARD/WRITE_ZEROES, so guests are not
//! offered those.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use spin::Mutex;

use rivet_virtio::blk::{BackendError, BlockBackend};
use rivet_virtio::rng::EntropySource;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// DMA memory for the drivers' queues: a block carved from RAM at boot
/// (queues are allocated once and live as long as the machine).
static DMA: Mutex<(u64, u64)> = Mutex::new((0, 0));

pub fn init_dma_pool(base: u64, size: u64) {
    *DMA.lock() = (base, base + size);
}

pub struct HalImpl;

// SAFETY: DMA buffers come from a pool of identity-mapped RAM owned by the
// hypervisor and never handed out twice; physical and virtual addresses
// are equal (satp = Bare), so sharing a buffer is passing its address.
unsafe impl Hal for HalImpl {
    fn dma_alloc(pages: usize, _dir: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let mut pool = DMA.lock();
        // The pool is sized in main.rs for every device's queues and buffers.
        let bytes = pages as u64 * 4096;
        let pa = pool.0;
        if pa + bytes > pool.1 {
            panic!("virtio DMA pool exhausted");
        }
        pool.0 += bytes;
        crate::mm::zero(pa, bytes);
        (
            pa as PhysAddr,
            NonNull::new(pa as *mut u8).unwrap_or(NonNull::dangling()),
        )
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _dir: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _dir: BufferDirection) {}
}

pub type PhysBlk = VirtIOBlk<HalImpl, MmioTransport<'static>>;
pub type PhysRng = VirtIORng<HalImpl, MmioTransport<'static>>;
pub type PhysNet = VirtIONet<HalImpl, MmioTransport<'static>, 16>;

/// Receive buffer size for the machine's NIC (a full Ethernet frame plus
/// the virtio-net header).
const NET_BUF: usize = 2048;

pub struct PhysDisk {
    /// N of the serial `rivet-disk<N>`.
    pub index: u32,
    pub sectors: u64,
    pub read_only: bool,
    pub dev: Arc<Mutex<PhysBlk>>,
}

#[derive(Default)]
pub struct PhysDevices {
    pub disks: Vec<PhysDisk>,
    pub rng: Option<Arc<Mutex<PhysRng>>>,
    /// The machine's NIC (for a network's uplink) and its interrupt.
    pub net: Option<(PhysNet, Option<u32>)>,
    /// Shared directories (virtio-fs) and their FUSE session parameters.
    pub fs: Vec<(
        Arc<Mutex<crate::physfs::PhysFs>>,
        rivet_virtio::fs::InitInfo,
    )>,
}

/// Probes the host's virtio-mmio slots and starts drivers for the disks
/// and the entropy device found there.
pub fn probe(slots: &[rivet_devtree::Device], timebase: u64) -> PhysDevices {
    let mut found = PhysDevices::default();
    for d in slots {
        // virtio-drivers' transport does not know virtio-fs: ours drives it.
        if let Some(fs) = crate::physfs::PhysFs::probe(d.base, timebase) {
            let fs = Arc::new(Mutex::new(fs));
            match fs_init(&fs) {
                Some(info) => found.fs.push((fs, info)),
                None => log::warn!("virtio-fs at {:#x}: unusable (no FUSE session)", d.base),
            }
            continue;
        }
        let Some(header) = NonNull::new(d.base as *mut VirtIOHeader) else {
            continue;
        };
        // SAFETY: the slot is a virtio-mmio register block from the host
        // device tree, identity-mapped, used by nobody else.
        let transport = match unsafe { MmioTransport::new(header, d.size as usize) } {
            Ok(t) => t,
            Err(_) => continue,
        };
        match transport.device_type() {
            DeviceType::Block => {
                match PhysBlk::new(transport) {
                    Ok(mut blk) => {
                        let mut id = [0u8; 20];
                        let n = blk.device_id(&mut id).unwrap_or(0);
                        let serial = core::str::from_utf8(&id[..n.min(20)]).unwrap_or("");
                        let index = serial
                            .strip_prefix("rivet-disk")
                            .and_then(|s| s.parse::<u32>().ok());
                        let sectors = blk.capacity();
                        let ro = blk.readonly();
                        match index {
                        Some(index) => {
                            log::info!("disk {index}: virtio-blk at {:#x}, {} MiB{}", d.base, sectors >> 11, if ro { ", read-only" } else { "" });
                            found.disks.push(PhysDisk { index, sectors, read_only: ro, dev: Arc::new(Mutex::new(blk)) });
                        }
                        None => log::warn!("virtio-blk at {:#x} has serial {serial:?}, not rivet-disk<N>: unused", d.base),
                    }
                    }
                    Err(e) => log::warn!("virtio-blk at {:#x}: driver init failed: {e:?}", d.base),
                }
            }
            DeviceType::Network => match PhysNet::new(transport, NET_BUF) {
                Ok(net) => {
                    log::info!("network: virtio-net at {:#x} (uplink candidate)", d.base);
                    found.net = Some((net, d.irq));
                }
                Err(e) => log::warn!("virtio-net at {:#x}: driver init failed: {e:?}", d.base),
            },
            DeviceType::EntropySource => match PhysRng::new(transport) {
                Ok(rng) => {
                    log::info!("entropy: virtio-rng at {:#x}", d.base);
                    found.rng = Some(Arc::new(Mutex::new(rng)));
                }
                Err(e) => log::warn!("virtio-rng at {:#x}: driver init failed: {e:?}", d.base),
            },
            _ => {}
        }
    }
    found
}

/// A guest disk: a window of sectors of one physical disk.
pub struct DiskWindow {
    pub dev: Arc<Mutex<PhysBlk>>,
    pub start: u64,
    pub sectors: u64,
    pub read_only: bool,
    pub id: [u8; 20],
}

impl DiskWindow {
    /// Checked sector range of the physical disk for `[sector, sector+n)`.
    fn range(&self, sector: u64, bytes: usize) -> Result<usize, BackendError> {
        let n = (bytes as u64).div_ceil(512);
        let end = sector.checked_add(n).ok_or(BackendError::OutOfRange)?;
        if end > self.sectors || bytes % 512 != 0 {
            return Err(BackendError::OutOfRange);
        }
        let phys = self
            .start
            .checked_add(sector)
            .ok_or(BackendError::OutOfRange)?;
        usize::try_from(phys).map_err(|_| BackendError::OutOfRange)
    }
}

impl BlockBackend for DiskWindow {
    fn capacity_sectors(&self) -> u64 {
        self.sectors
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let at = self.range(sector, buf.len())?;
        self.dev
            .lock()
            .read_blocks(at, buf)
            .map_err(|_| BackendError::Io)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BackendError> {
        if self.read_only {
            return Err(BackendError::ReadOnly);
        }
        let at = self.range(sector, buf.len())?;
        self.dev
            .lock()
            .write_blocks(at, buf)
            .map_err(|_| BackendError::Io)
    }
    fn flush(&mut self) -> Result<(), BackendError> {
        self.dev.lock().flush().map_err(|_| BackendError::Io)
    }
    fn id(&self) -> [u8; 20] {
        self.id
    }
}

/// Guest entropy from the machine's virtio-rng.
pub struct Entropy(pub Arc<Mutex<PhysRng>>);

impl EntropySource for Entropy {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut total = 0;
        while total < buf.len() {
            let chunk = &mut buf[total..];
            match self.0.lock().request_entropy(chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n.min(chunk.len()),
            }
        }
        total
    }
}

/// A guest's virtio-fs backend: the machine's virtio-fs device, shared by
/// the VMs that mount the same directory (one request in flight at a time,
/// under the machine lock).
pub struct FsRelay(pub Arc<Mutex<crate::physfs::PhysFs>>);

impl rivet_virtio::fs::FsBackend for FsRelay {
    fn call(
        &mut self,
        request: &[u8],
        reply: &mut [u8],
    ) -> Result<usize, rivet_virtio::fs::FsBackendError> {
        self.0.lock().call(request, reply).map_err(|e| match e {
            crate::physfs::FsError::Timeout => rivet_virtio::fs::FsBackendError::Timeout,
            crate::physfs::FsError::Io => rivet_virtio::fs::FsBackendError::Io,
        })
    }
    fn send_noreply(&mut self, request: &[u8]) -> Result<(), rivet_virtio::fs::FsBackendError> {
        self.0
            .lock()
            .send_noreply(request)
            .map_err(|_| rivet_virtio::fs::FsBackendError::Io)
    }
}

/// Negotiates FUSE once with a machine virtio-fs device; every guest's INIT
/// is answered from this.
pub fn fs_init(dev: &Arc<Mutex<crate::physfs::PhysFs>>) -> Option<rivet_virtio::fs::InitInfo> {
    let req = rivet_virtio::fs::build_init_request(2);
    let mut reply = [0u8; rivet_virtio::fs::INIT_REPLY_LEN];
    let n = dev.lock().call(&req, &mut reply).ok()?;
    match rivet_virtio::fs::parse_init_reply(reply.get(..n.min(reply.len()))?) {
        Ok(info) => Some(info),
        Err(e) => {
            log::warn!("virtio-fs: FUSE_INIT with the host failed: {e:?}");
            None
        }
    }
}
