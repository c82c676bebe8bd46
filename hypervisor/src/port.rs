//! A VM's console port: its 16550 UART model, the line it is printing and
//! the console input waiting for it, behind a lock of its own.
//!
//! The port is the one piece of VM state that the exit fast path
//! (`fastpath.rs`) touches, so it does not live behind the machine lock:
//! a guest printing to its UART (the most common exit of a Linux boot)
//! never waits for, or holds up, the other harts. Lock order: the machine
//! lock may be held when taking a port lock, never the other way round.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use rivet_uart16550::Uart16550;
use spin::mutex::TicketMutex;

/// Console input queued beyond this is dropped (a paste flood).
const MAX_INPUT: usize = 4096;
/// A line longer than this is shown in pieces.
const MAX_LINE: usize = 512;

pub struct ConsolePort {
    pub uart: Uart16550,
    /// Console bytes waiting to enter the UART receive FIFO (or a DBCN read).
    input: VecDeque<u8>,
    /// `Some("[name] ")` when several VMs share the console: output is
    /// then collected into whole lines, each shown with the prefix.
    prefix: Option<String>,
    line: Vec<u8>,
}

/// What a UART register access did.
pub struct UartAccess {
    /// The value of a load (0 for a store).
    pub value: u64,
    /// The UART's interrupt line changed, or queued input could move into
    /// its FIFO: the vPLIC must be recomputed (under the machine lock).
    pub needs_sync: bool,
}

impl ConsolePort {
    pub fn new() -> Self {
        Self {
            uart: Uart16550::new(),
            input: VecDeque::new(),
            prefix: None,
            line: Vec::new(),
        }
    }

    /// Prefix every output line with `[name] ` (several VMs, one console).
    pub fn set_prefix(&mut self, name: &str) {
        self.prefix = Some(alloc::format!("[{name}] "));
    }

    /// A byte-wide load (`store == None`) or store at UART register `off`.
    #[inline]
    pub fn access(&mut self, off: u64, store: Option<u8>) -> UartAccess {
        let before = self.uart.irq();
        let value = match store {
            Some(v) => {
                if let Some(b) = self.uart.write(off, v) {
                    self.emit(&[b]);
                }
                0
            }
            None => u64::from(self.uart.read(off)),
        };
        UartAccess {
            value,
            needs_sync: self.uart.irq() != before || !self.input.is_empty(),
        }
    }

    /// Moves queued input into the receive FIFO; returns the UART's
    /// interrupt line.
    pub fn feed_rx(&mut self) -> bool {
        while self.uart.rx_space() > 0 {
            let Some(b) = self.input.pop_front() else {
                break;
            };
            self.uart.push_input(&[b]);
        }
        self.uart.irq()
    }

    /// Queues console input for the guest.
    pub fn push_input(&mut self, b: u8) {
        if self.input.len() < MAX_INPUT {
            self.input.push_back(b);
        }
    }

    /// Takes queued input (SBI DBCN read); returns how many bytes.
    pub fn read_input(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for slot in buf.iter_mut() {
            match self.input.pop_front() {
                Some(b) => {
                    *slot = b;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Guest console output (UART, DBCN, legacy putchar).
    pub fn emit(&mut self, bytes: &[u8]) {
        if self.prefix.is_none() {
            crate::outq::write(bytes);
            return;
        }
        for &b in bytes {
            if b == b'\r' {
                continue;
            }
            self.line.push(b);
            if b == b'\n' || self.line.len() >= MAX_LINE {
                self.flush();
            }
        }
    }

    /// At idle, shows a pending partial line only when it looks like a
    /// prompt waiting for input (`# `, `$ `, `> `, `: `); other partial
    /// lines wait for their newline, so lines are never split.
    pub fn flush_prompt(&mut self) {
        let tail = self.line.len().saturating_sub(2);
        if matches!(self.line.get(tail..), Some(b"# " | b"$ " | b"> " | b": ")) {
            self.flush();
        }
    }

    /// Shows the pending partial line, if any.
    pub fn flush(&mut self) {
        let Some(prefix) = &self.prefix else {
            return;
        };
        if self.line.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.line.len() + prefix.len() + 4);
        out.extend_from_slice(prefix.as_bytes());
        for &b in &self.line {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        if self.line.last() != Some(&b'\n') {
            out.extend_from_slice(b"\r\n");
        }
        crate::outq::write(&out);
        self.line.clear();
    }

    /// Back to power-on state; pending output is shown first.
    pub fn reset(&mut self) {
        self.flush();
        self.uart.reset();
    }
}

/// The parts of a VM that exits may use without the machine lock. Created
/// once per VM and never freed (VMs live as long as the machine), so harts
/// can hold a plain `&'static` to it.
pub struct VmShared {
    pub port: TicketMutex<ConsolePort>,
}

impl VmShared {
    pub fn leak() -> &'static VmShared {
        alloc::boxed::Box::leak(alloc::boxed::Box::new(VmShared {
            port: TicketMutex::new(ConsolePort::new()),
        }))
    }
}
