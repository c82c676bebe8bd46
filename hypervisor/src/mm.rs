//! Hypervisor memory: the heap (a static block in .bss), the physical frame
//! allocator over the rest of RAM, and guest RAM blocks seen through the
//! bounds-checked `GuestMemory` trait, zeroed lazily chunk by chunk. The
//! hypervisor runs with satp = Bare, so a host-physical address is also a
//! hypervisor pointer.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use linked_list_allocator::LockedHeap;
use rivet_frame_alloc::FrameAllocator;
use rivet_guest_mem::{GuestMemory, MemError};

const HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct HeapBlock([u8; HEAP_SIZE]);

static mut HEAP: HeapBlock = HeapBlock([0; HEAP_SIZE]);

#[global_allocator]
static ALLOC: LockedHeap = LockedHeap::empty();

pub fn init_heap() {
    // SAFETY: HEAP is used only here, once, to hand its memory to the
    // allocator; nothing else references it.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP) as *mut u8;
        ALLOC.lock().init(start, HEAP_SIZE);
    }
}

/// `cbo.zero` block size when usable (see `hext::probe_cbo_zero`), else 0.
static CBO_BLOCK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub fn set_cbo_block(block: u64) {
    CBO_BLOCK.store(block, core::sync::atomic::Ordering::Relaxed);
}

/// Zeroes `[pa, pa+len)` of host memory owned by the caller. Large aligned
/// ranges (guest RAM) use `cbo.zero`, one instruction per cache block.
pub fn zero(pa: u64, len: u64) {
    let block = CBO_BLOCK.load(core::sync::atomic::Ordering::Relaxed);
    if block != 0 && pa % block == 0 && len % block == 0 {
        // SAFETY: callers pass ranges they own; alignment checked above.
        unsafe { crate::arch::hext::cbo_zero_range(pa, pa + len, block) };
        return;
    }
    // SAFETY: callers pass ranges they own from the frame allocator.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, len as usize) }
}

/// Copies `src` to host memory at `pa`.
///
/// Guest images (megabytes of kernel and initrd, at every VM boot) go
/// 64 bytes per step when both sides are 8-byte aligned: the library
/// memcpy moves one word per loop, more than twice the instructions.
/// Volatile accesses keep the compiler from turning the loop back into a
/// memcpy call.
pub fn copy_to(pa: u64, src: &[u8]) {
    let mut done = 0;
    if pa % 8 == 0 && (src.as_ptr() as usize) % 8 == 0 {
        let blocks = src.len() / 64;
        let s = src.as_ptr() as *const u64;
        let d = pa as *mut u64;
        for b in 0..blocks {
            for w in 0..8 {
                let i = b * 8 + w;
                // SAFETY: i < blocks * 8 words lie inside `src` and inside
                // the destination the caller owns; both are 8-byte aligned.
                unsafe { d.add(i).write_volatile(s.add(i).read_volatile()) };
            }
        }
        done = blocks * 64;
    }
    let rest = &src[done..];
    // SAFETY: callers pass a destination they own (guest RAM checked by
    // GuestRam, or freshly allocated frames) that cannot overlap `src`.
    unsafe {
        core::ptr::copy_nonoverlapping(rest.as_ptr(), (pa + done as u64) as *mut u8, rest.len())
    }
}

/// Borrows host memory `[pa, pa+len)` as a byte slice (the boot DTB and
/// bundle, which firmware and QEMU placed and nobody writes).
///
/// # Safety
/// The range must be mapped RAM that stays unmodified for `'static`.
pub unsafe fn static_bytes(pa: u64, len: usize) -> &'static [u8] {
    // SAFETY: per the function contract.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

/// Frames for G-stage tables come from the global frame allocator.
pub struct TableFrames<'a>(pub &'a mut FrameAllocator);

impl rivet_gstage::Frames for TableFrames<'_> {
    fn alloc(&mut self, count: usize, align: u64) -> Option<u64> {
        let bytes = (count as u64) * 4096;
        let pa = self.0.alloc(bytes, align)?;
        zero(pa, bytes);
        Some(pa)
    }
    fn free(&mut self, pa: u64, count: usize) {
        self.0.free(pa, count as u64 * 4096);
    }
    fn read_pte(&self, pa: u64) -> u64 {
        // SAFETY: pa lies in a table frame this allocator handed out.
        unsafe { (pa as *const u64).read_volatile() }
    }
    fn write_pte(&mut self, pa: u64, pte: u64) {
        // SAFETY: as above; the hardware walker reads it after an hfence.
        unsafe { (pa as *mut u64).write_volatile(pte) }
    }
}

/// Granule of lazy RAM zeroing and mapping.
pub const CHUNK: u64 = 2 << 20;

/// One bit per [`CHUNK`] of a VM's RAM: "zeroed since the VM got it".
///
/// Guest RAM is zeroed lazily: a chunk is cleared the first time anything
/// can see it (the guest faults on it, or the hypervisor reads or writes it
/// for the guest), never before. Atomic so `GuestRam` stays `Copy`; in
/// practice every user holds the machine lock.
pub struct ChunkMap {
    words: Vec<AtomicU64>,
}

impl ChunkMap {
    /// A map for `size` bytes of RAM, nothing zeroed; lives as long as the
    /// machine (like the VM).
    pub fn leak(size: u64) -> &'static ChunkMap {
        let chunks = size.div_ceil(CHUNK);
        let words = (0..chunks.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        alloc::boxed::Box::leak(alloc::boxed::Box::new(ChunkMap { words }))
    }

    pub fn get(&self, chunk: u64) -> bool {
        self.words
            .get((chunk / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (chunk % 64)) != 0)
    }

    pub fn set(&self, chunk: u64) {
        if let Some(w) = self.words.get((chunk / 64) as usize) {
            w.fetch_or(1 << (chunk % 64), Ordering::AcqRel);
        }
    }
}

/// A VM's RAM: `size` bytes at guest-physical `gpa`, backed by the
/// contiguous host block at `hpa` that this VM owns exclusively.
#[derive(Clone, Copy)]
pub struct GuestRam {
    pub gpa: u64,
    pub hpa: u64,
    pub size: u64,
    /// Chunks already zeroed (see [`ChunkMap`]).
    pub zeroed: &'static ChunkMap,
}

impl GuestRam {
    /// Host range of chunk `i`: (hpa, len); the last chunk may be short.
    pub fn chunk_range(&self, i: u64) -> (u64, u64) {
        let start = i * CHUNK;
        (self.hpa + start, CHUNK.min(self.size.saturating_sub(start)))
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(CHUNK)
    }

    /// Zeroes every chunk of `[off, off + len)` (offsets into the RAM) not
    /// zeroed yet, so nothing left in memory from before the VM got it can
    /// ever be read through it.
    pub fn ensure_zeroed(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let last = off.saturating_add(len - 1) / CHUNK;
        for i in off / CHUNK..=last.min(self.chunks().saturating_sub(1)) {
            if !self.zeroed.get(i) {
                let (pa, n) = self.chunk_range(i);
                zero(pa, n);
                self.zeroed.set(i);
            }
        }
    }

    /// Zeroes again every chunk zeroed so far (a reboot: the new boot must
    /// not see the old one's memory).
    pub fn rezero(&self) {
        for i in 0..self.chunks() {
            if self.zeroed.get(i) {
                let (pa, n) = self.chunk_range(i);
                zero(pa, n);
            }
        }
    }
}

impl core::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "GuestRam {{ gpa: {:#x}, hpa: {:#x}, size: {:#x} }}",
            self.gpa, self.hpa, self.size
        )
    }
}

impl GuestMemory for GuestRam {
    fn base(&self) -> u64 {
        self.gpa
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = self.check_range(gpa, buf.len() as u64)?;
        self.ensure_zeroed(off, buf.len() as u64);
        // SAFETY: check_range proved [off, off+len) lies inside this VM's
        // block, which is mapped and owned by the VM.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (self.hpa + off) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        let off = self.check_range(gpa, buf.len() as u64)?;
        self.ensure_zeroed(off, buf.len() as u64);
        // SAFETY: as in read().
        unsafe {
            core::ptr::copy_nonoverlapping(buf.as_ptr(), (self.hpa + off) as *mut u8, buf.len())
        };
        Ok(())
    }
}
