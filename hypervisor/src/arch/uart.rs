//! Driver for the machine's 16550 UART, the hypervisor's console.
//! Polled transmit; receive is drained from the host PLIC interrupt path or
//! by polling.

use core::sync::atomic::{AtomicUsize, Ordering};

static BASE: AtomicUsize = AtomicUsize::new(0x1000_0000);

const THR: usize = 0;
const IER: usize = 1;
const FCR: usize = 2;
const LCR: usize = 3;
const MCR: usize = 4;
const LSR: usize = 5;
const LSR_DR: u8 = 1;
const LSR_THRE: u8 = 1 << 5;

fn reg(off: usize) -> *mut u8 {
    (BASE.load(Ordering::Relaxed) + off) as *mut u8
}

fn rd(off: usize) -> u8 {
    // SAFETY: BASE is the UART MMIO block from the host device tree, mapped
    // 1:1 (the hypervisor runs with satp = Bare); byte registers.
    unsafe { reg(off).read_volatile() }
}

fn wr(off: usize, v: u8) {
    // SAFETY: as in rd().
    unsafe { reg(off).write_volatile(v) }
}

/// Points the driver at the UART found in the device tree and enables the
/// receive interrupt and FIFOs (8N1; QEMU ignores the divisor).
pub fn init(base: usize) {
    BASE.store(base, Ordering::Relaxed);
    wr(LCR, 0x03);
    wr(FCR, 0x07);
    wr(MCR, 0x08); // OUT2: interrupt line enabled
    wr(IER, 0x01); // received data available
}

pub fn putc(c: u8) {
    while rd(LSR) & LSR_THRE == 0 {
        core::hint::spin_loop();
    }
    wr(THR, c);
}

/// Like [`putc`] but gives up (returns false) when the transmitter stays
/// busy, so a console that stops draining cannot hold a hart forever.
pub fn try_putc(c: u8) -> bool {
    for _ in 0..100_000 {
        if rd(LSR) & LSR_THRE != 0 {
            wr(THR, c);
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            putc(b'\r');
        }
        putc(b);
    }
}

pub fn getc() -> Option<u8> {
    if rd(LSR) & LSR_DR != 0 {
        Some(rd(THR))
    } else {
        None
    }
}
