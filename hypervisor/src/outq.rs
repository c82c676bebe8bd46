//! The physical console's output queue. Guest output is produced while the
//! machine lock is held (UART and SBI console exits); writing it to the slow
//! physical UART there would stall every other hart. Instead bytes are
//! queued here (a short critical section of its own) and written out by
//! whichever hart calls [`drain`] after releasing the machine lock; one hart
//! drains at a time, the others just queue and go back to their guests.

use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::mutex::TicketMutex;

/// Beyond this many queued bytes a writer drains synchronously rather than
/// grow the queue without bound.
const MAX_QUEUED: usize = 64 * 1024;

static QUEUE: TicketMutex<VecDeque<u8>> = TicketMutex::new(VecDeque::new());
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Bytes may be queued; set and cleared only with QUEUE locked, read
/// without it so the common "nothing to print" drain costs one load.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Queues bytes for the console (raw, no newline translation).
pub fn write(bytes: &[u8]) {
    let full = {
        let mut q = QUEUE.lock();
        q.extend(bytes.iter().copied());
        PENDING.store(true, Ordering::Release);
        q.len() > MAX_QUEUED
    };
    if full {
        drain();
    }
}

/// Writes queued bytes to the UART unless another hart already does.
/// Costs one load when nothing is queued (called on every guest entry).
#[inline]
pub fn drain() {
    if PENDING.load(Ordering::Acquire) {
        drain_queued();
    }
}

#[inline(never)]
fn drain_queued() {
    if DRAINING.swap(true, Ordering::Acquire) {
        return;
    }
    loop {
        let mut chunk = [0u8; 64];
        let n = {
            let mut q = QUEUE.lock();
            let n = q.len().min(chunk.len());
            if n == 0 {
                PENDING.store(false, Ordering::Release);
            }
            for slot in chunk.iter_mut().take(n) {
                *slot = q.pop_front().unwrap_or(0);
            }
            n
        };
        if n == 0 {
            break;
        }
        for (i, &b) in chunk[..n].iter().enumerate() {
            if !crate::arch::uart::try_putc(b) {
                // The UART is stuck: put the rest back and let a later
                // drain retry, instead of holding this hart.
                let mut q = QUEUE.lock();
                for &r in chunk[i..n].iter().rev() {
                    q.push_front(r);
                }
                PENDING.store(true, Ordering::Release);
                drop(q);
                DRAINING.store(false, Ordering::Release);
                return;
            }
        }
    }
    DRAINING.store(false, Ordering::Release);
    // Bytes queued after our last look but before we released the flag
    // would otherwise wait for the next drain.
    if PENDING.load(Ordering::Acquire) {
        drain();
    }
}
