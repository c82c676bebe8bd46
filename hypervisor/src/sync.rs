//! The lock that serializes the harts' access to the machine.
//!
//! A ticket lock whose waiters stop spinning after a short while and sleep
//! in WFI; the unlocker wakes sleepers with an SBI IPI. Spinning alone
//! collapses when a hart is descheduled while holding the lock, which is
//! the normal case on QEMU (TCG round-robin, or more vCPU threads than host
//! cores): the waiters would burn the holder's time. Each hart's slot
//! number lives in `tp` (set once per hart, saved across guest runs).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::arch::{csr::*, firmware, hext};
use crate::{csr_clear, csr_read};

/// Spins before a waiter goes to sleep.
const SPINS: u32 = 200;

/// hartid of each slot, for wake-up IPIs.
static HART_IDS: [AtomicU64; crate::arch::entry::MAX_HARTS] =
    [const { AtomicU64::new(u64::MAX) }; crate::arch::entry::MAX_HARTS];

/// Records this hart's slot (in `tp`) and hartid.
pub fn set_current_hart(slot: usize, hartid: u64) {
    if let Some(h) = HART_IDS.get(slot) {
        h.store(hartid, Ordering::Relaxed);
    }
    // SAFETY: tp is reserved for this purpose: the hypervisor has no TLS
    // and the world switch saves and restores it around guest runs.
    unsafe { core::arch::asm!("mv tp, {0}", in(reg) slot) };
}

pub fn current_slot() -> usize {
    let s: usize;
    // SAFETY: reads tp (see set_current_hart).
    unsafe { core::arch::asm!("mv {0}, tp", out(reg) s) };
    s
}

pub struct HartMutex<T> {
    next_ticket: AtomicUsize,
    serving: AtomicUsize,
    /// Slots sleeping in WFI waiting for the lock.
    sleepers: AtomicU64,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialized by the ticket protocol.
unsafe impl<T: Send> Sync for HartMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for HartMutex<T> {}

pub struct HartMutexGuard<'a, T> {
    lock: &'a HartMutex<T>,
}

impl<T> HartMutex<T> {
    pub const fn new(v: T) -> Self {
        Self {
            next_ticket: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
            sleepers: AtomicU64::new(0),
            data: UnsafeCell::new(v),
        }
    }

    pub fn lock(&self) -> HartMutexGuard<'_, T> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let mut spins = 0u32;
        while self.serving.load(Ordering::Acquire) != ticket {
            if spins < SPINS {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            let slot = current_slot();
            let bit = if slot < 64 { 1u64 << slot } else { 0 };
            self.sleepers.fetch_or(bit, Ordering::SeqCst);
            // Re-check after announcing ourselves: an unlock in between
            // either sees our bit (and IPIs us) or already let us in.
            if self.serving.load(Ordering::SeqCst) != ticket {
                // A pending software interrupt would make WFI return at
                // once; it is only ever a "look again" hint, which taking
                // the lock fulfils, so it can be dropped here.
                if csr_read!(SIP) & (1 << IRQ_S_SOFT) != 0 {
                    csr_clear!(SIP, 1 << IRQ_S_SOFT);
                    if self.serving.load(Ordering::SeqCst) == ticket {
                        self.sleepers.fetch_and(!bit, Ordering::SeqCst);
                        break;
                    }
                }
                hext::wfi();
            }
            self.sleepers.fetch_and(!bit, Ordering::SeqCst);
        }
        HartMutexGuard { lock: self }
    }

    fn unlock(&self) {
        self.serving.fetch_add(1, Ordering::SeqCst);
        let sleepers = self.sleepers.load(Ordering::SeqCst);
        if sleepers != 0 {
            for (slot, id) in HART_IDS.iter().enumerate() {
                if slot < 64 && sleepers & (1 << slot) != 0 {
                    let hartid = id.load(Ordering::Relaxed);
                    if hartid != u64::MAX {
                        firmware::send_ipi(1, hartid);
                    }
                }
            }
        }
    }
}

impl<T> Deref for HartMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for HartMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves exclusive access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for HartMutexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}
