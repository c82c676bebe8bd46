//! Virtual NS16550A UART.
//!
//! This crate owns the guest-visible serial port of a VM: the eight one-byte
//! registers of a 16550A (register shift 0, `reg-io-width = 1`), its receive
//! FIFO, the interrupt identification logic and the level of its interrupt
//! output. It does no I/O itself: [`Uart16550::write`] hands transmitted bytes
//! back to the caller, the host feeds input in with [`Uart16550::push_input`],
//! and after every access/push the hypervisor forwards [`Uart16550::irq`] to
//! the interrupt controller (e.g. `Plic::set_level`). Linux's 8250 driver
//! (`compatible = "ns16550a"`) runs unmodified against it.
//!
//! # Registers
//!
//! | off | read                        | write                          |
//! |-----|-----------------------------|--------------------------------|
//! | 0   | RBR (DLL when LCR.DLAB)     | THR (DLL when LCR.DLAB)        |
//! | 1   | IER (DLM when LCR.DLAB)     | IER (DLM when LCR.DLAB)        |
//! | 2   | IIR                         | FCR                            |
//! | 3   | LCR                         | LCR                            |
//! | 4   | MCR                         | MCR                            |
//! | 5   | LSR                         | ignored                        |
//! | 6   | MSR                         | ignored                        |
//! | 7   | SCR                         | SCR                            |
//!
//! Offsets 8.. (up to [`MMIO_SIZE`] and beyond) read 0 and ignore writes.
//! The caller decides how to treat accesses wider than one byte.
//!
//! # Behaviour (decisions)
//!
//! * **Transmit is instantaneous**: a THR write returns the byte and the
//!   transmitter is empty again at once, so LSR.THRE and LSR.TEMT always read
//!   1. The TX FIFO does not exist (FCR bit 2 is a no-op).
//! * **THR-empty interrupt** as on a real 16550: the THRE condition is raised
//!   by every THR write (the transmitter empties immediately) and when
//!   IER.ETBEI goes from 0 to 1; it is reported in IIR only while ETBEI is
//!   set, and cleared by an IIR read that reports it (or by a THR write, which
//!   immediately raises it again). Writing IER with ETBEI already set does not
//!   re-raise it. This satisfies the 8250 driver's THRE re-assertion and
//!   TX-enable probes in `serial8250_do_startup`.
//! * **Receive FIFO** of [`RX_FIFO`] (64) bytes regardless of FCR.0 (the
//!   classic 16550A has 16; a deeper buffer only means fewer lost bytes, and
//!   the guest cannot tell — it drains while LSR.DR is set). LSR.DR is set
//!   while it is non-empty. Bytes pushed when it is full are dropped and set
//!   LSR.OE, which an LSR read clears. PE/FE/BI and LSR bit 7 are never set.
//!   Reading RBR on an empty FIFO returns 0.
//! * **Interrupt ids** (highest first): 0x6 receiver line status (OE, with
//!   ELSI), 0x4 received data available (FIFO non-empty, with ERBFI — trigger
//!   levels and the 0xC character-timeout id are not modelled), 0x2 THR empty
//!   (ETBEI), 0x0 modem status (delta bits, EDSSI). IIR bit 0 is 1 when none
//!   is pending; bits 7:6 read 0b11 while FCR.0 (FIFO enable) is set.
//! * **FCR**: bit 0 enables the FIFOs (only visible in IIR 7:6), bit 1 clears
//!   the RX FIFO (whatever bit 0 is), bit 2 is a no-op; trigger bits are
//!   ignored. Toggling bit 0 alone does not clear anything.
//! * **Interrupt line** = "IIR reports an interrupt". MCR.OUT2 does **not**
//!   gate it: that gating is board glue on PCs, not part of the 16550, and
//!   QEMU does not apply it either. (Linux sets OUT2 when the port has an IRQ
//!   in `serial8250_do_startup` anyway, so gating would also work with Linux,
//!   but not with simpler guests that never touch MCR.)
//! * **Loopback** (MCR.4): THR writes go into the RX FIFO (overrun if full)
//!   instead of out; MSR 7:4 = OUT2, OUT1, DTR, RTS as DCD, RI, DSR, CTS; MCR
//!   changes made while in loopback set the MSR delta bits (DCTS, DDSR, TERI
//!   on RI falling, DDCD), which raise the modem-status interrupt and are
//!   cleared by reading MSR. External input is disconnected in loopback:
//!   [`Uart16550::push_input`] accepts nothing and [`Uart16550::rx_space`] is
//!   0 (no overrun is flagged; the host keeps its bytes). Entering or leaving
//!   loopback does not produce delta bits; leaving it clears them.
//! * **Outside loopback** MSR reads 0xB0 (DCD, DSR, CTS asserted; RI and all
//!   deltas clear).
//! * IER keeps only bits 3:0 (upper bits read 0, which is what the 8250
//!   autoconfig expects of a plain 16550A); MCR keeps bits 4:0.
//! * Reset state: IER=0, LCR=0, MCR=0, FIFOs disabled and empty, SCR=0,
//!   divisor latch = 1 (DLL=1, DLM=0; only stored, it has no effect), no
//!   interrupt pending.
#![no_std]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![forbid(unsafe_code)]

/// Size of the UART's MMIO window in bytes; registers live at 0..=7.
pub const MMIO_SIZE: u64 = 0x100;
/// Depth of the receive FIFO in bytes.
pub const RX_FIFO: usize = 64;

/// Register offsets.
pub mod reg {
    /// RBR (read) / THR (write); DLL when LCR.DLAB.
    pub const RBR_THR_DLL: u64 = 0;
    /// IER; DLM when LCR.DLAB.
    pub const IER_DLM: u64 = 1;
    /// IIR (read) / FCR (write).
    pub const IIR_FCR: u64 = 2;
    /// Line control.
    pub const LCR: u64 = 3;
    /// Modem control.
    pub const MCR: u64 = 4;
    /// Line status.
    pub const LSR: u64 = 5;
    /// Modem status.
    pub const MSR: u64 = 6;
    /// Scratch.
    pub const SCR: u64 = 7;
}

/// IER: received data available interrupt enable.
pub const IER_ERBFI: u8 = 0x01;
/// IER: THR empty interrupt enable.
pub const IER_ETBEI: u8 = 0x02;
/// IER: receiver line status interrupt enable.
pub const IER_ELSI: u8 = 0x04;
/// IER: modem status interrupt enable.
pub const IER_EDSSI: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

/// IIR: no interrupt pending.
pub const IIR_NO_INT: u8 = 0x01;
/// IIR id: modem status.
pub const IIR_MSI: u8 = 0x00;
/// IIR id: THR empty.
pub const IIR_THRI: u8 = 0x02;
/// IIR id: received data available.
pub const IIR_RDI: u8 = 0x04;
/// IIR id: receiver line status.
pub const IIR_RLSI: u8 = 0x06;
/// IIR bits 7:6 when the FIFOs are enabled.
pub const IIR_FIFO_ENABLED: u8 = 0xc0;

/// FCR: enable FIFOs.
pub const FCR_ENABLE_FIFO: u8 = 0x01;
/// FCR: clear receive FIFO.
pub const FCR_CLEAR_RCVR: u8 = 0x02;
/// FCR: clear transmit FIFO.
pub const FCR_CLEAR_XMIT: u8 = 0x04;

/// LCR: divisor latch access bit.
pub const LCR_DLAB: u8 = 0x80;

/// MCR: data terminal ready.
pub const MCR_DTR: u8 = 0x01;
/// MCR: request to send.
pub const MCR_RTS: u8 = 0x02;
/// MCR: OUT1.
pub const MCR_OUT1: u8 = 0x04;
/// MCR: OUT2.
pub const MCR_OUT2: u8 = 0x08;
/// MCR: loopback.
pub const MCR_LOOP: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

/// LSR: data ready.
pub const LSR_DR: u8 = 0x01;
/// LSR: overrun error.
pub const LSR_OE: u8 = 0x02;
/// LSR: THR empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty.
pub const LSR_TEMT: u8 = 0x40;

/// MSR: delta CTS.
pub const MSR_DCTS: u8 = 0x01;
/// MSR: delta DSR.
pub const MSR_DDSR: u8 = 0x02;
/// MSR: trailing edge of RI.
pub const MSR_TERI: u8 = 0x04;
/// MSR: delta DCD.
pub const MSR_DDCD: u8 = 0x08;
/// MSR: clear to send.
pub const MSR_CTS: u8 = 0x10;
/// MSR: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// MSR: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// MSR: data carrier detect.
pub const MSR_DCD: u8 = 0x80;

/// Fixed ring buffer for received bytes.
#[derive(Debug, Clone)]
struct RxFifo {
    buf: [u8; RX_FIFO],
    head: usize,
    len: usize,
}

impl RxFifo {
    const fn new() -> Self {
        Self {
            buf: [0; RX_FIFO],
            head: 0,
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len >= RX_FIFO
    }

    fn push(&mut self, byte: u8) -> bool {
        if self.is_full() {
            return false;
        }
        let tail = (self.head + self.len) % RX_FIFO;
        match self.buf.get_mut(tail) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.buf.get(self.head).copied();
        self.head = (self.head + 1) % RX_FIFO;
        self.len -= 1;
        byte
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// Interrupt sources in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intr {
    LineStatus,
    RxData,
    Thre,
    ModemStatus,
}

/// A virtual 16550A UART.
#[derive(Debug, Clone)]
pub struct Uart16550 {
    rx: RxFifo,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo_enabled: bool,
    overrun: bool,
    /// THR-empty interrupt condition (reported only while IER.ETBEI).
    thre_pending: bool,
    /// MSR delta bits 3:0.
    msr_delta: u8,
}

impl Default for Uart16550 {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart16550 {
    /// A UART in its reset state.
    pub const fn new() -> Self {
        Self {
            rx: RxFifo::new(),
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 1,
            dlm: 0,
            fifo_enabled: false,
            overrun: false,
            thre_pending: false,
            msr_delta: 0,
        }
    }

    /// Back to the reset state (everything, including the RX FIFO).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    /// MSR bits 7:4 for a given MCR value.
    fn modem_lines(mcr: u8) -> u8 {
        if mcr & MCR_LOOP == 0 {
            return MSR_DCD | MSR_DSR | MSR_CTS;
        }
        let mut s = 0;
        if mcr & MCR_OUT2 != 0 {
            s |= MSR_DCD;
        }
        if mcr & MCR_OUT1 != 0 {
            s |= MSR_RI;
        }
        if mcr & MCR_DTR != 0 {
            s |= MSR_DSR;
        }
        if mcr & MCR_RTS != 0 {
            s |= MSR_CTS;
        }
        s
    }

    fn pending_interrupt(&self) -> Option<Intr> {
        if self.ier & IER_ELSI != 0 && self.overrun {
            Some(Intr::LineStatus)
        } else if self.ier & IER_ERBFI != 0 && self.rx.len > 0 {
            Some(Intr::RxData)
        } else if self.ier & IER_ETBEI != 0 && self.thre_pending {
            Some(Intr::Thre)
        } else if self.ier & IER_EDSSI != 0 && self.msr_delta != 0 {
            Some(Intr::ModemStatus)
        } else {
            None
        }
    }

    fn iir(&self) -> u8 {
        let id = match self.pending_interrupt() {
            None => IIR_NO_INT,
            Some(Intr::LineStatus) => IIR_RLSI,
            Some(Intr::RxData) => IIR_RDI,
            Some(Intr::Thre) => IIR_THRI,
            Some(Intr::ModemStatus) => IIR_MSI,
        };
        if self.fifo_enabled {
            id | IIR_FIFO_ENABLED
        } else {
            id
        }
    }

    fn lsr(&self) -> u8 {
        let mut lsr = LSR_THRE | LSR_TEMT;
        if self.rx.len > 0 {
            lsr |= LSR_DR;
        }
        if self.overrun {
            lsr |= LSR_OE;
        }
        lsr
    }

    /// A guest read of register `offset` (0..=7; others read 0). Reading has
    /// side effects: RBR pops a byte, IIR clears a THRE interrupt it reports,
    /// LSR clears OE, MSR clears the delta bits.
    pub fn read(&mut self, offset: u64) -> u8 {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => self.dll,
            reg::RBR_THR_DLL => self.rx.pop().unwrap_or(0),
            reg::IER_DLM if self.dlab() => self.dlm,
            reg::IER_DLM => self.ier,
            reg::IIR_FCR => {
                let iir = self.iir();
                if self.pending_interrupt() == Some(Intr::Thre) {
                    self.thre_pending = false;
                }
                iir
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let lsr = self.lsr();
                self.overrun = false;
                lsr
            }
            reg::MSR => {
                let msr = Self::modem_lines(self.mcr) | self.msr_delta;
                self.msr_delta = 0;
                msr
            }
            reg::SCR => self.scr,
            _ => 0,
        }
    }

    /// A guest write; returns `Some(byte)` when a byte is transmitted to the
    /// outside world (THR write outside loopback).
    pub fn write(&mut self, offset: u64, value: u8) -> Option<u8> {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => self.dll = value,
            reg::RBR_THR_DLL => return self.transmit(value),
            reg::IER_DLM if self.dlab() => self.dlm = value,
            reg::IER_DLM => {
                let new = value & IER_MASK;
                if new & IER_ETBEI != 0 && self.ier & IER_ETBEI == 0 {
                    // The transmitter is always empty: enabling ETBEI
                    // raises the THRE interrupt at once.
                    self.thre_pending = true;
                }
                self.ier = new;
            }
            reg::IIR_FCR => {
                self.fifo_enabled = value & FCR_ENABLE_FIFO != 0;
                if value & FCR_CLEAR_RCVR != 0 {
                    self.rx.clear();
                }
                // FCR_CLEAR_XMIT: there is no TX FIFO.
            }
            reg::LCR => self.lcr = value,
            reg::MCR => self.write_mcr(value),
            reg::SCR => self.scr = value,
            // LSR, MSR (factory test registers on real parts) and anything
            // outside 0..=7.
            _ => {}
        }
        None
    }

    fn transmit(&mut self, byte: u8) -> Option<u8> {
        // Writing THR clears THRE; the byte leaves at once and the
        // transmitter is empty again, which raises THRE anew.
        self.thre_pending = true;
        if self.loopback() {
            if !self.rx.push(byte) {
                self.overrun = true;
            }
            None
        } else {
            Some(byte)
        }
    }

    fn write_mcr(&mut self, value: u8) {
        let old = self.mcr;
        let new = value & MCR_MASK;
        self.mcr = new;
        let was_loop = old & MCR_LOOP != 0;
        let is_loop = new & MCR_LOOP != 0;
        if !is_loop {
            self.msr_delta = 0;
            return;
        }
        if !was_loop {
            return;
        }
        let before = Self::modem_lines(old);
        let after = Self::modem_lines(new);
        let changed = before ^ after;
        if changed & MSR_CTS != 0 {
            self.msr_delta |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            self.msr_delta |= MSR_DDSR;
        }
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            self.msr_delta |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            self.msr_delta |= MSR_DDCD;
        }
    }

    /// Host → guest input; returns how many bytes were accepted (a prefix of
    /// `bytes`). When the FIFO fills up, the remaining bytes are dropped and
    /// LSR.OE is set — push at most [`Uart16550::rx_space`] bytes to avoid
    /// that. In loopback mode the receiver is disconnected from the outside:
    /// nothing is accepted and no overrun is flagged.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        if self.loopback() {
            return 0;
        }
        let mut accepted = 0;
        for &b in bytes {
            if !self.rx.push(b) {
                self.overrun = true;
                break;
            }
            accepted += 1;
        }
        accepted
    }

    /// How many bytes [`Uart16550::push_input`] can take without overrun
    /// (0 in loopback mode).
    pub fn rx_space(&self) -> usize {
        if self.loopback() {
            0
        } else {
            RX_FIFO - self.rx.len
        }
    }

    /// Level of the interrupt line: high while IIR reports an interrupt.
    /// Not gated by MCR.OUT2.
    pub fn irq(&self) -> bool {
        self.pending_interrupt().is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    extern crate std;
    use super::reg::*;
    use super::*;
    use std::vec::Vec;

    fn iir_id(u: &mut Uart16550) -> u8 {
        u.read(IIR_FCR) & 0x0f
    }

    #[test]
    fn reset_state() {
        let mut u = Uart16550::new();
        assert!(!u.irq());
        assert_eq!(u.read(IER_DLM), 0);
        assert_eq!(u.read(IIR_FCR), 0x01);
        assert_eq!(u.read(LCR), 0);
        assert_eq!(u.read(MCR), 0);
        assert_eq!(u.read(LSR), 0x60);
        assert_eq!(u.read(MSR), 0xb0);
        assert_eq!(u.read(SCR), 0);
        assert_eq!(u.read(RBR_THR_DLL), 0, "empty RBR reads 0");
        assert_eq!(u.rx_space(), RX_FIFO);
        u.write(LCR, LCR_DLAB);
        assert_eq!(u.read(RBR_THR_DLL), 1);
        assert_eq!(u.read(IER_DLM), 0);
        let d = Uart16550::default();
        assert!(!d.irq());
    }

    #[test]
    fn thr_writes_are_transmitted() {
        let mut u = Uart16550::new();
        let out: Vec<u8> = b"hello\n"
            .iter()
            .filter_map(|&b| u.write(RBR_THR_DLL, b))
            .collect();
        assert_eq!(out, b"hello\n");
        for v in 0..=255u8 {
            assert_eq!(u.write(RBR_THR_DLL, v), Some(v));
            assert_eq!(u.read(LSR) & (LSR_THRE | LSR_TEMT), 0x60);
        }
        // Nothing else transmits.
        for off in 1..=300u64 {
            assert_eq!(u.write(off, 0x41), None, "offset {off}");
        }
    }

    #[test]
    fn divisor_latch_round_trip() {
        let mut u = Uart16550::new();
        u.write(IER_DLM, IER_ERBFI);
        u.write(LCR, LCR_DLAB | 0x03);
        assert_eq!(u.write(RBR_THR_DLL, 0x0c), None);
        assert_eq!(u.write(IER_DLM, 0xab), None);
        assert_eq!(u.read(RBR_THR_DLL), 0x0c);
        assert_eq!(u.read(IER_DLM), 0xab);
        assert_eq!(u.read(LCR), 0x83);
        u.write(LCR, 0x03);
        // IER untouched by DLM write, divisor preserved.
        assert_eq!(u.read(IER_DLM), IER_ERBFI);
        u.write(LCR, 0x83);
        assert_eq!(u.read(RBR_THR_DLL), 0x0c);
        assert_eq!(u.read(IER_DLM), 0xab);
        // DLAB read of offset 0 doesn't pop the FIFO.
        u.push_input(b"x");
        assert_eq!(u.read(RBR_THR_DLL), 0x0c);
        u.write(LCR, 0x03);
        assert_eq!(u.read(RBR_THR_DLL), b'x');
    }

    #[test]
    fn rx_fifo_order_and_dr() {
        let mut u = Uart16550::new();
        assert_eq!(u.read(LSR) & LSR_DR, 0);
        assert_eq!(u.push_input(b"abc"), 3);
        assert_eq!(u.rx_space(), RX_FIFO - 3);
        assert_eq!(u.read(LSR) & LSR_DR, LSR_DR);
        assert_eq!(u.read(RBR_THR_DLL), b'a');
        assert_eq!(u.read(RBR_THR_DLL), b'b');
        assert_eq!(u.push_input(b"de"), 2);
        assert_eq!(u.read(RBR_THR_DLL), b'c');
        assert_eq!(u.read(RBR_THR_DLL), b'd');
        assert_eq!(u.read(LSR) & LSR_DR, LSR_DR);
        assert_eq!(u.read(RBR_THR_DLL), b'e');
        assert_eq!(u.read(LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(u.rx_space(), RX_FIFO);
        // Wrap-around many times.
        for round in 0..10u8 {
            let data: Vec<u8> = (0..50).map(|i| i ^ round).collect();
            assert_eq!(u.push_input(&data), 50);
            let got: Vec<u8> = (0..50).map(|_| u.read(RBR_THR_DLL)).collect();
            assert_eq!(got, data);
        }
    }

    #[test]
    fn overrun() {
        let mut u = Uart16550::new();
        let data: Vec<u8> = (0..RX_FIFO as u8 + 5).collect();
        assert_eq!(u.push_input(&data), RX_FIFO);
        assert_eq!(u.rx_space(), 0);
        let lsr = u.read(LSR);
        assert_eq!(lsr, LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT);
        assert_eq!(u.read(LSR) & LSR_OE, 0, "reading LSR clears OE");
        // A push into a full FIFO accepts nothing and sets OE.
        assert_eq!(u.push_input(b"z"), 0);
        assert_eq!(u.read(LSR) & LSR_OE, LSR_OE);
        // The FIFO keeps the first 64 bytes.
        for i in 0..RX_FIFO as u8 {
            assert_eq!(u.read(RBR_THR_DLL), i);
        }
        assert_eq!(u.read(LSR) & LSR_DR, 0);
        // Filling exactly is no overrun.
        assert_eq!(u.push_input(&data[..RX_FIFO]), RX_FIFO);
        assert_eq!(u.read(LSR) & LSR_OE, 0);
        // An empty push changes nothing.
        assert_eq!(u.push_input(&[]), 0);
        assert_eq!(u.read(LSR) & LSR_OE, 0);
    }

    #[test]
    fn linux_thre_startup_test() {
        let mut u = Uart16550::new();
        // serial8250_do_startup THRE re-assertion test.
        u.write(IER_DLM, IER_ETBEI);
        let iir1 = u.read(IIR_FCR);
        assert_eq!(iir1, 0x02);
        assert_eq!(u.read(IIR_FCR), 0x01, "IIR read cleared THRE");
        assert!(!u.irq());
        u.write(IER_DLM, 0);
        u.write(IER_DLM, IER_ETBEI);
        let iir = u.read(IIR_FCR);
        assert_eq!(iir & IIR_NO_INT, 0, "THRE re-asserted (no UART_BUG_THRE)");
        u.write(IER_DLM, 0);
        // TX-enable test: IER=THRI, read LSR, read IIR.
        u.write(IER_DLM, IER_ETBEI);
        let lsr = u.read(LSR);
        let iir = u.read(IIR_FCR);
        assert_ne!(lsr & LSR_TEMT, 0);
        assert_eq!(iir & IIR_NO_INT, 0, "no UART_BUG_TXEN");
        u.write(IER_DLM, 0);
        assert!(!u.irq());
    }

    #[test]
    fn thre_set_and_clear_rules() {
        let mut u = Uart16550::new();
        // Not enabled: never reported.
        u.write(RBR_THR_DLL, b'a');
        assert_eq!(u.read(IIR_FCR), 0x01);
        assert!(!u.irq());
        // 0 -> 1 raises it.
        u.write(IER_DLM, IER_ETBEI);
        assert!(u.irq());
        // Rewriting IER with ETBEI still set does not re-raise.
        assert_eq!(u.read(IIR_FCR), 0x02);
        assert!(!u.irq());
        u.write(IER_DLM, IER_ETBEI | IER_ERBFI);
        assert!(!u.irq());
        assert_eq!(u.read(IIR_FCR), 0x01);
        // Each THR write raises it again.
        assert_eq!(u.write(RBR_THR_DLL, b'b'), Some(b'b'));
        assert!(u.irq());
        assert_eq!(u.read(IIR_FCR), 0x02);
        assert_eq!(u.read(IIR_FCR), 0x01);
        // Disabling ETBEI hides the condition; re-enabling raises it.
        u.write(RBR_THR_DLL, b'c');
        u.write(IER_DLM, 0);
        assert!(!u.irq());
        assert_eq!(u.read(IIR_FCR), 0x01);
        u.write(IER_DLM, IER_ETBEI);
        assert_eq!(u.read(IIR_FCR), 0x02);
        // An IIR read reporting a higher-priority source does not clear THRE.
        u.write(RBR_THR_DLL, b'd');
        u.write(IER_DLM, IER_ETBEI | IER_ERBFI);
        u.push_input(b"x");
        assert_eq!(u.read(IIR_FCR), 0x04);
        assert_eq!(u.read(IIR_FCR), 0x04);
        assert_eq!(u.read(RBR_THR_DLL), b'x');
        assert_eq!(u.read(IIR_FCR), 0x02);
        assert_eq!(u.read(IIR_FCR), 0x01);
    }

    #[test]
    fn linux_tx_interrupt_flow_has_no_storm() {
        // start_tx: set ETBEI; irq: read IIR, read LSR, write bytes; when
        // done, stop_tx clears ETBEI → line drops.
        let mut u = Uart16550::new();
        u.write(IER_DLM, IER_ERBFI | IER_ELSI);
        assert!(!u.irq());
        u.write(IER_DLM, IER_ERBFI | IER_ELSI | IER_ETBEI);
        let mut sent = Vec::new();
        let mut to_send: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut rounds = 0;
        while u.irq() {
            rounds += 1;
            assert!(rounds < 10);
            let iir = u.read(IIR_FCR);
            assert_eq!(iir & 0x0f, IIR_THRI);
            let lsr = u.read(LSR);
            assert_ne!(lsr & LSR_THRE, 0);
            let n = to_send.len().min(16);
            for &b in &to_send[..n] {
                sent.extend(u.write(RBR_THR_DLL, b));
            }
            to_send = &to_send[n..];
            if to_send.is_empty() {
                u.write(IER_DLM, IER_ERBFI | IER_ELSI);
            }
        }
        assert_eq!(sent, b"0123456789abcdefghijklmnopqrstuvwxyz");
        assert_eq!(rounds, 3);
    }

    #[test]
    fn iir_priorities() {
        let mut u = Uart16550::new();
        u.write(IER_DLM, 0x0f);
        // Modem status delta via loopback MCR change.
        u.write(MCR, MCR_LOOP);
        u.write(MCR, MCR_LOOP | MCR_RTS);
        // THRE (raised by enabling ETBEI) outranks modem status.
        assert_eq!(iir_id(&mut u), IIR_THRI);
        assert_eq!(iir_id(&mut u), IIR_MSI);
        assert!(u.irq());
        // Data outranks modem status.
        u.write(RBR_THR_DLL, b'q'); // loopback: into RX, raises THRE
        assert_eq!(iir_id(&mut u), IIR_RDI);
        // Overrun outranks everything.
        for _ in 0..RX_FIFO {
            u.write(RBR_THR_DLL, 0);
        }
        assert_eq!(iir_id(&mut u), IIR_RLSI);
        assert_eq!(iir_id(&mut u), IIR_RLSI, "IIR read does not clear OE");
        assert_ne!(u.read(LSR) & LSR_OE, 0);
        assert_eq!(iir_id(&mut u), IIR_RDI);
        u.write(IIR_FCR, FCR_CLEAR_RCVR);
        assert_eq!(iir_id(&mut u), IIR_THRI);
        assert_eq!(iir_id(&mut u), IIR_MSI);
        assert_eq!(u.read(MSR) & 0x0f, MSR_DCTS);
        assert_eq!(iir_id(&mut u), 0x01);
        assert!(!u.irq());
    }

    #[test]
    fn iir_fifo_bits() {
        let mut u = Uart16550::new();
        assert_eq!(u.read(IIR_FCR), 0x01);
        u.write(IIR_FCR, FCR_ENABLE_FIFO);
        assert_eq!(u.read(IIR_FCR), 0xc1);
        u.write(IER_DLM, IER_ETBEI);
        assert_eq!(u.read(IIR_FCR), 0xc2);
        u.write(IIR_FCR, 0);
        assert_eq!(u.read(IIR_FCR), 0x01);
        // Bits 5:4 never set (8250 autoconfig checks for 16750/SuperIO).
        u.write(IIR_FCR, 0x21 | 0xc0);
        assert_eq!(u.read(IIR_FCR) & 0x30, 0);
    }

    #[test]
    fn irq_follows_ier_and_state() {
        let mut u = Uart16550::new();
        u.push_input(b"a");
        assert!(!u.irq(), "ERBFI off");
        u.write(IER_DLM, IER_ERBFI);
        assert!(u.irq());
        u.read(RBR_THR_DLL);
        assert!(!u.irq());
        // Line status.
        u.push_input(&[0; RX_FIFO + 1]);
        u.write(IER_DLM, IER_ELSI);
        assert!(u.irq());
        u.read(LSR);
        assert!(!u.irq(), "OE cleared; data present but ERBFI off");
        u.write(IER_DLM, IER_ERBFI);
        assert!(u.irq());
        u.write(IIR_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR);
        assert!(!u.irq());
        // OUT2 does not gate the line.
        u.push_input(b"b");
        assert!(u.irq());
        u.write(MCR, MCR_OUT2 | MCR_DTR | MCR_RTS);
        assert!(u.irq());
        u.write(MCR, 0);
        assert!(u.irq());
        u.write(IER_DLM, 0);
        assert!(!u.irq());
    }

    #[test]
    fn fcr_clear() {
        let mut u = Uart16550::new();
        u.push_input(b"hello");
        u.write(IIR_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_XMIT);
        assert_eq!(u.read(LSR) & LSR_DR, LSR_DR, "TX clear leaves RX");
        u.write(IIR_FCR, 0);
        assert_eq!(u.read(LSR) & LSR_DR, LSR_DR, "disabling FIFOs keeps data");
        u.write(IIR_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT);
        assert_eq!(u.read(LSR) & LSR_DR, 0);
        assert_eq!(u.rx_space(), RX_FIFO);
        assert_eq!(u.read(IIR_FCR), 0xc1);
        // Clear also works with FIFOs disabled.
        u.push_input(b"x");
        u.write(IIR_FCR, FCR_CLEAR_RCVR);
        assert_eq!(u.read(LSR) & LSR_DR, 0);
        assert_eq!(u.read(IIR_FCR), 0x01);
        // FIFO order still fine after clear.
        u.push_input(b"12");
        assert_eq!(u.read(RBR_THR_DLL), b'1');
        assert_eq!(u.read(RBR_THR_DLL), b'2');
    }

    #[test]
    fn loopback() {
        let mut u = Uart16550::new();
        u.write(MCR, MCR_LOOP);
        assert_eq!(u.read(MCR), MCR_LOOP);
        assert_eq!(u.read(MSR), 0x00);
        assert_eq!(u.write(RBR_THR_DLL, b'L'), None);
        assert_eq!(u.read(LSR), LSR_DR | LSR_THRE | LSR_TEMT);
        assert_eq!(u.read(RBR_THR_DLL), b'L');
        // External input disconnected.
        assert_eq!(u.rx_space(), 0);
        assert_eq!(u.push_input(b"ext"), 0);
        assert_eq!(u.read(LSR), LSR_THRE | LSR_TEMT, "no data, no OE");
        // MSR mapping: DCD<-OUT2, RI<-OUT1, DSR<-DTR, CTS<-RTS.
        for (mcr, lines) in [
            (MCR_OUT2, MSR_DCD),
            (MCR_OUT1, MSR_RI),
            (MCR_DTR, MSR_DSR),
            (MCR_RTS, MSR_CTS),
            (0x0f, 0xf0),
        ] {
            u.write(MCR, MCR_LOOP | mcr);
            assert_eq!(u.read(MSR) & 0xf0, lines, "mcr {mcr:#x}");
        }
        // 8250 autoconfig loopback test: LOOP|OUT2|RTS → DCD|CTS.
        u.write(MCR, 0);
        u.write(MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
        assert_eq!(u.read(MSR) & 0xf0, MSR_DCD | MSR_CTS);
        // Loopback overrun.
        u.write(MCR, MCR_LOOP);
        for i in 0..RX_FIFO as u8 + 1 {
            assert_eq!(u.write(RBR_THR_DLL, i), None);
        }
        assert_eq!(u.read(LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(u.read(RBR_THR_DLL), 0);
        // Leaving loopback transmits again and reconnects input.
        u.write(MCR, MCR_OUT2);
        assert_eq!(u.read(MSR), 0xb0);
        assert_eq!(u.write(RBR_THR_DLL, b'o'), Some(b'o'));
        assert_eq!(u.rx_space(), RX_FIFO - (RX_FIFO - 1));
    }

    #[test]
    fn loopback_msr_deltas() {
        let mut u = Uart16550::new();
        u.write(MCR, MCR_LOOP);
        assert_eq!(u.read(MSR), 0, "entering loopback makes no deltas");
        u.write(MCR, MCR_LOOP | 0x0f);
        assert_eq!(u.read(MSR), 0xf0 | MSR_DCTS | MSR_DDSR | MSR_DDCD);
        assert_eq!(u.read(MSR), 0xf0, "MSR read clears deltas");
        u.write(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2);
        assert_eq!(u.read(MSR), 0xb0 | MSR_TERI, "RI trailing edge");
        u.write(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2 | MCR_OUT1);
        assert_eq!(u.read(MSR), 0xf0, "RI rising edge: no delta");
        // Modem status interrupt.
        u.write(IER_DLM, IER_EDSSI);
        assert!(!u.irq());
        u.write(MCR, MCR_LOOP);
        assert!(u.irq());
        assert_eq!(u.read(IIR_FCR), 0x00);
        assert!(u.irq(), "IIR read doesn't clear modem status");
        u.read(MSR);
        assert!(!u.irq());
        // Leaving loopback clears pending deltas.
        u.write(MCR, MCR_LOOP | MCR_RTS);
        assert!(u.irq());
        u.write(MCR, 0);
        assert!(!u.irq());
        assert_eq!(u.read(MSR), 0xb0);
    }

    #[test]
    fn ier_and_mcr_masks() {
        let mut u = Uart16550::new();
        u.write(IER_DLM, 0xff);
        assert_eq!(u.read(IER_DLM), 0x0f);
        // Xscale UUE test: bit 6 must not stick.
        u.write(IER_DLM, 0x40);
        assert_eq!(u.read(IER_DLM), 0);
        u.write(MCR, !MCR_LOOP);
        assert_eq!(u.read(MCR), 0x0f);
    }

    #[test]
    fn scr_round_trip() {
        let mut u = Uart16550::new();
        for v in 0..=255u8 {
            assert_eq!(u.write(SCR, v), None);
            assert_eq!(u.read(SCR), v);
        }
        u.write(LCR, LCR_DLAB);
        u.write(SCR, 0x5a);
        assert_eq!(u.read(SCR), 0x5a);
    }

    #[test]
    fn lcr_round_trip_and_readonly_regs() {
        let mut u = Uart16550::new();
        for v in 0..=255u8 {
            u.write(LCR, v);
            assert_eq!(u.read(LCR), v);
        }
        u.write(LCR, 0x03);
        u.write(LSR, 0xff);
        u.write(MSR, 0xff);
        assert_eq!(u.read(LSR), 0x60);
        assert_eq!(u.read(MSR), 0xb0);
    }

    #[test]
    fn out_of_range_offsets() {
        let mut u = Uart16550::new();
        u.write(SCR, 0x77);
        for off in [8u64, 9, 0xff, MMIO_SIZE, u64::MAX] {
            assert_eq!(u.write(off, 0xff), None);
            assert_eq!(u.read(off), 0);
        }
        assert_eq!(u.read(SCR), 0x77);
        assert_eq!(u.read(IER_DLM), 0);
    }

    #[test]
    fn linux_autoconfig_sequence() {
        // The probe sequence of 8250 autoconfig() must identify a 16550A.
        let mut u = Uart16550::new();
        let scratch = u.read(IER_DLM);
        u.write(IER_DLM, 0);
        let scratch2 = u.read(IER_DLM) & 0x0f;
        u.write(IER_DLM, 0x0f);
        let scratch3 = u.read(IER_DLM) & 0x0f;
        u.write(IER_DLM, scratch);
        assert_eq!((scratch2, scratch3), (0, 0x0f));
        let save_mcr = u.read(MCR);
        let save_lcr = u.read(LCR);
        u.write(MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
        let status1 = u.read(MSR) & 0xf0;
        u.write(MCR, save_mcr);
        assert_eq!(status1, MSR_DCD | MSR_CTS);
        u.write(LCR, 0xbf);
        u.write(IIR_FCR, 0); // EFR
        u.write(LCR, 0);
        u.write(IIR_FCR, FCR_ENABLE_FIFO);
        assert_eq!(u.read(IIR_FCR) & 0xc0, 0xc0, "16550A");
        // autoconfig_16550a: EFR probes at LCR 0x80 / 0xbf must read non-zero.
        u.write(LCR, 0x80);
        assert_ne!(u.read(IIR_FCR), 0);
        u.write(LCR, 0xbf);
        assert_ne!(u.read(IIR_FCR), 0);
        // SuperIO probe: EXCR1 (offset 2 at LCR 0xe0) must not track MCR.LOOP.
        u.write(LCR, 0);
        let s1 = u.read(MCR);
        u.write(LCR, 0xe0);
        let s2 = u.read(IIR_FCR);
        assert_eq!((s1 ^ s2) & MCR_LOOP, 0);
        u.write(LCR, 0);
        u.write(MCR, s1 ^ MCR_LOOP);
        u.write(LCR, 0xe0);
        let s2 = u.read(IIR_FCR);
        u.write(LCR, 0);
        u.write(MCR, s1);
        assert_eq!((s2 ^ s1) & MCR_LOOP, 0, "not a SuperIO");
        // 16750 probe: bit 5 never set.
        u.write(IIR_FCR, FCR_ENABLE_FIFO | 0x20);
        assert_eq!(u.read(IIR_FCR) & 0xe0, 0xc0);
        u.write(LCR, save_lcr);
        u.write(MCR, save_mcr);
        u.write(IIR_FCR, FCR_ENABLE_FIFO | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT);
        u.write(IIR_FCR, 0);
        u.read(RBR_THR_DLL);
        u.write(IER_DLM, 0);
        assert!(!u.irq());
        // Startup's LSR safety check.
        assert_ne!(u.read(LSR), 0xff);
    }

    #[test]
    fn reset_restores_everything() {
        let mut u = Uart16550::new();
        u.write(IER_DLM, 0x0f);
        u.write(LCR, 0x83);
        u.write(RBR_THR_DLL, 9);
        u.write(LCR, 0x03);
        u.write(MCR, 0x1f);
        u.write(SCR, 5);
        u.write(IIR_FCR, 1);
        u.write(RBR_THR_DLL, 1);
        u.reset();
        let mut fresh = Uart16550::new();
        for off in 0..8 {
            assert_eq!(u.read(off), fresh.read(off), "offset {off}");
        }
        assert!(!u.irq());
        assert_eq!(u.rx_space(), RX_FIFO);
    }

    fn rng(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn sweep_every_offset_and_value() {
        let mut u = Uart16550::new();
        for off in 0..MMIO_SIZE + 8 {
            for v in 0..=255u8 {
                let _ = u.write(off, v);
                let _ = u.read(off);
                let _ = u.irq();
                let _ = u.rx_space();
            }
            u.push_input(&[off as u8; 3]);
        }
        for off in [u64::MAX, 1 << 63, u64::MAX - 7] {
            for v in 0..=255u8 {
                let _ = u.write(off, v);
                let _ = u.read(off);
            }
        }
        // Random interleavings, checking invariants.
        let mut seed = 0xdead_beef_cafe_f00du64;
        for _ in 0..500_000 {
            let x = rng(&mut seed);
            let off = (x >> 8) % 10;
            let v = (x >> 20) as u8;
            match x % 4 {
                0 => {
                    let _ = u.write(off, v);
                }
                1 => {
                    let _ = u.read(off);
                }
                2 => {
                    let n = (v as usize) % 80;
                    let buf = [v; 80];
                    let space = u.rx_space();
                    let got = u.push_input(&buf[..n]);
                    assert!(got <= n && got <= space);
                }
                _ => u.reset(),
            }
            assert!(u.rx_space() <= RX_FIFO);
            let lsr = u.read(LSR);
            assert_eq!(lsr & 0x60, 0x60);
            let iir = u.read(IIR_FCR);
            assert_eq!(iir & 0x30, 0);
        }
    }
}
