//! The hypervisor's log: `log` records written to the physical UART as
//! `[rivet] LEVEL message`, plus a small once-per-kind limiter so a hostile
//! guest cannot flood the console with the same complaint.

use crate::arch::uart;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use log::{Level, LevelFilter, Metadata, Record};

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        uart::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Queued console output with \n -> \r\n, in order with guest output.
struct Queued;

impl Write for Queued {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for part in s.as_bytes().split_inclusive(|&b| b == b'\n') {
            match part.split_last() {
                Some((b'\n', head)) => {
                    crate::outq::write(head);
                    crate::outq::write(b"\r\n");
                }
                _ => crate::outq::write(part),
            }
        }
        Ok(())
    }
}

/// Formats to the console through the output queue and drains it.
pub fn print_fmt(args: core::fmt::Arguments) {
    let _ = Queued.write_fmt(args);
    crate::outq::drain();
}

/// Formats straight to the UART, bypassing the queue (panic path).
pub fn print_direct(args: core::fmt::Arguments) {
    let _ = Uart.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    () => { $crate::logger::print_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::logger::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let lvl = match r.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        print_fmt(format_args!("[rivet] {lvl} {}\n", r.args()));
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init(level: u32) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match level {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    });
}

pub fn set_level(level: u32) {
    init(level);
}

/// A set of "already reported" bits: `first(kind)` is true once per kind.
#[derive(Default)]
pub struct Once(AtomicU64);

impl Once {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    pub fn first(&self, kind: u32) -> bool {
        let bit = 1u64 << (kind % 64);
        self.0.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}
