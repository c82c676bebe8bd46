//! `rivet-vplic` + `rivet-uart16550`: random sequences of MMIO reads and
//! writes, interrupt levels, host input and resets, with the UART's
//! interrupt line wired into the PLIC as the hypervisor wires it.
//!
//! Both devices are compared with small reference models written from their
//! crate docs: the PLIC model is complete (every read value, every claim,
//! every context's line), the UART model covers the RX FIFO, the plain
//! registers, LSR and the two highest-priority interrupt ids.
//!
//! Input: PLIC geometry, then operations until the bytes run out.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use libfuzzer_sys::fuzz_target;
use rivet_fuzz::Input;
use rivet_uart16550::{reg as ureg, Uart16550, RX_FIFO};
use rivet_vplic::{Plic, MAX_CONTEXTS, MAX_SOURCES, MMIO_SIZE};

const NSRC: usize = 1024;

/// The PLIC as its crate docs describe it.
struct PlicModel {
    nsrc: u32,
    nctx: usize,
    strict: bool,
    prio: Vec<u8>,
    /// Enable bits per context, created on first write (all clear before).
    enable: BTreeMap<usize, Vec<bool>>,
    threshold: Vec<u8>,
    level: Vec<bool>,
    pending: BTreeSet<u32>,
    in_service: Vec<bool>,
}

impl PlicModel {
    fn new(nsrc: u32, nctx: usize) -> Self {
        let nsrc = nsrc.min(MAX_SOURCES);
        let nctx = nctx.min(MAX_CONTEXTS);
        PlicModel {
            nsrc,
            nctx,
            strict: true,
            prio: vec![0; NSRC],
            enable: BTreeMap::new(),
            threshold: vec![0; nctx],
            level: vec![false; NSRC],
            pending: BTreeSet::new(),
            in_service: vec![false; NSRC],
        }
    }

    fn exists(&self, src: u32) -> bool {
        src >= 1 && src <= self.nsrc
    }

    fn enabled(&self, ctx: usize, src: u32) -> bool {
        self.enable.get(&ctx).is_some_and(|e| e[src as usize])
    }

    fn best(&self, ctx: usize) -> Option<u32> {
        let mut best: Option<(u32, u8)> = None;
        for &src in &self.pending {
            let s = src as usize;
            if self.enabled(ctx, src) && self.prio[s] > self.threshold[ctx] {
                if best.is_none_or(|(_, p)| self.prio[s] > p) {
                    best = Some((src, self.prio[s]));
                }
            }
        }
        best.map(|(s, _)| s)
    }

    fn line(&self, ctx: usize) -> bool {
        ctx < self.nctx && self.best(ctx).is_some()
    }

    fn set_level(&mut self, src: u32, high: bool) {
        if !self.exists(src) {
            return;
        }
        self.level[src as usize] = high;
        if high && !self.in_service[src as usize] {
            self.pending.insert(src);
        }
    }

    fn reset(&mut self) {
        self.prio.fill(0);
        self.in_service.fill(false);
        self.enable.clear();
        self.threshold.fill(0);
        self.pending = (0..NSRC as u32)
            .filter(|&s| self.level[s as usize])
            .collect();
    }

    fn word(bits: &[bool], w: usize) -> u32 {
        (0..32).fold(0, |acc, b| acc | (u32::from(bits[w * 32 + b]) << b))
    }

    /// `None` for an invalid access, else `Some(value)` (0 for writes).
    fn access(&mut self, off: u64, size: u8, write: Option<u32>) -> Option<u32> {
        if size != 4 || off % 4 != 0 || off >= MMIO_SIZE {
            return None;
        }
        if off < 0x1000 {
            let src = (off / 4) as u32;
            return Some(match write {
                Some(v) => {
                    if self.exists(src) {
                        self.prio[src as usize] = (v & 7) as u8;
                    }
                    0
                }
                None => u32::from(self.prio[src as usize]),
            });
        }
        if off < 0x2000 {
            if write.is_some() || off >= 0x1080 {
                return Some(0);
            }
            let w = ((off - 0x1000) / 4) as u32;
            return Some((0..32).fold(0, |acc, b| {
                acc | (u32::from(self.pending.contains(&(w * 32 + b))) << b)
            }));
        }
        if off < 0x20_0000 {
            let ctx = ((off - 0x2000) / 0x80) as usize;
            if ctx >= self.nctx {
                return None;
            }
            let w = ((off % 0x80) / 4) as usize;
            return Some(match write {
                Some(v) => {
                    let nsrc = self.nsrc;
                    let e = self.enable.entry(ctx).or_insert_with(|| vec![false; NSRC]);
                    for b in 0..32 {
                        let src = (w * 32 + b) as u32;
                        e[src as usize] = src >= 1 && src <= nsrc && (v >> b) & 1 != 0;
                    }
                    0
                }
                None => self.enable.get(&ctx).map_or(0, |e| Self::word(e, w)),
            });
        }
        let ctx = ((off - 0x20_0000) / 0x1000) as usize;
        if ctx >= self.nctx {
            return None;
        }
        Some(match (off % 0x1000, write) {
            (0, Some(v)) => {
                self.threshold[ctx] = (v & 7) as u8;
                0
            }
            (0, None) => u32::from(self.threshold[ctx]),
            (4, None) => match self.best(ctx) {
                Some(src) => {
                    self.pending.remove(&src);
                    self.in_service[src as usize] = true;
                    src
                }
                None => 0,
            },
            (4, Some(id)) => {
                if self.exists(id)
                    && self.in_service[id as usize]
                    && (!self.strict || self.enabled(ctx, id))
                {
                    self.in_service[id as usize] = false;
                    if self.level[id as usize] {
                        self.pending.insert(id);
                    }
                }
                0
            }
            _ => 0,
        })
    }
}

/// The parts of the 16550 that can be modelled without copying it.
#[derive(Default)]
struct UartModel {
    rx: VecDeque<u8>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo: bool,
    overrun: bool,
}

impl UartModel {
    fn new() -> Self {
        UartModel {
            dll: 1,
            ..Default::default()
        }
    }
    fn dlab(&self) -> bool {
        self.lcr & 0x80 != 0
    }
    fn loopback(&self) -> bool {
        self.mcr & 0x10 != 0
    }
    fn push(&mut self, b: u8) -> bool {
        if self.rx.len() >= RX_FIFO {
            self.overrun = true;
            false
        } else {
            self.rx.push_back(b);
            true
        }
    }
}

struct World {
    plic: Plic,
    pm: PlicModel,
    uart: Uart16550,
    um: UartModel,
    uart_src: u32,
}

impl World {
    fn wire_uart(&mut self) {
        let level = self.uart.irq();
        self.plic.set_level(self.uart_src, level);
        self.pm.set_level(self.uart_src, level);
    }

    fn plic_offset(&self, input: &mut Input) -> u64 {
        let c = |input: &mut Input| input.below(self.pm.nctx as u64 + 2);
        match input.u8() % 10 {
            0 => 4 * input.below(1030),
            1 => 0x1000 + 4 * input.below(40),
            2 => 0x2000 + 0x80 * c(input) + 4 * input.below(33),
            3 | 4 => 0x20_0000 + 0x1000 * c(input),
            5 | 6 => 0x20_0004 + 0x1000 * c(input),
            7 => 0x20_0008 + 0x1000 * c(input) + 4 * input.below(4),
            8 => input.below(MMIO_SIZE + 0x10),
            _ => input.u64(),
        }
    }

    fn uart_read(&mut self, off: u64) {
        let got = self.uart.read(off);
        let m = &mut self.um;
        match off {
            ureg::RBR_THR_DLL if m.dlab() => assert_eq!(got, m.dll),
            ureg::RBR_THR_DLL => assert_eq!(got, m.rx.pop_front().unwrap_or(0), "RBR"),
            ureg::IER_DLM if m.dlab() => assert_eq!(got, m.dlm),
            ureg::IER_DLM => assert_eq!(got, m.ier),
            ureg::IIR_FCR => {
                assert_eq!(got & 0xc0 == 0xc0, m.fifo, "IIR FIFO bits");
                assert_eq!(got & 0x30, 0);
                let id = got & 0x0f;
                if m.ier & 0x04 != 0 && m.overrun {
                    assert_eq!(id, 0x06, "receiver line status first");
                } else if m.ier & 0x01 != 0 && !m.rx.is_empty() {
                    assert_eq!(id, 0x04, "received data");
                } else {
                    assert!(matches!(id, 0x01 | 0x02 | 0x00), "IIR id {id:#x}");
                    if m.ier & 0x0a == 0 {
                        assert_eq!(id, 0x01, "no interrupt enabled");
                    }
                }
            }
            ureg::LCR => assert_eq!(got, m.lcr),
            ureg::MCR => assert_eq!(got, m.mcr),
            ureg::LSR => {
                let mut want = 0x60;
                if !m.rx.is_empty() {
                    want |= 0x01;
                }
                if m.overrun {
                    want |= 0x02;
                }
                assert_eq!(got, want, "LSR");
                m.overrun = false;
            }
            ureg::MSR => {
                if !m.loopback() {
                    assert_eq!(got, 0xb0);
                }
            }
            ureg::SCR => assert_eq!(got, m.scr),
            _ => assert_eq!(got, 0, "offset {off} reads 0"),
        }
    }

    fn uart_write(&mut self, off: u64, v: u8) {
        let out = self.uart.write(off, v);
        let m = &mut self.um;
        let mut want = None;
        match off {
            ureg::RBR_THR_DLL if m.dlab() => m.dll = v,
            ureg::RBR_THR_DLL => {
                if m.loopback() {
                    m.push(v);
                } else {
                    want = Some(v);
                }
            }
            ureg::IER_DLM if m.dlab() => m.dlm = v,
            ureg::IER_DLM => m.ier = v & 0x0f,
            ureg::IIR_FCR => {
                m.fifo = v & 1 != 0;
                if v & 2 != 0 {
                    m.rx.clear();
                }
            }
            ureg::LCR => m.lcr = v,
            ureg::MCR => m.mcr = v & 0x1f,
            ureg::SCR => m.scr = v,
            _ => {}
        }
        assert_eq!(out, want, "transmitted byte");
    }

    fn check(&mut self) {
        for ctx in 0..(self.pm.nctx + 2).min(70) {
            assert_eq!(
                self.plic.context_irq(ctx),
                self.pm.line(ctx),
                "context {ctx} line"
            );
        }
        let lines = (0..64).fold(0u64, |acc, c| acc | (u64::from(self.pm.line(c)) << c));
        assert_eq!(self.plic.irq_lines(), lines);
        let space = if self.um.loopback() {
            0
        } else {
            RX_FIFO - self.um.rx.len()
        };
        assert_eq!(self.uart.rx_space(), space);
        if self.um.ier == 0 {
            assert!(!self.uart.irq(), "interrupt with IER = 0");
        }
    }

    fn step(&mut self, input: &mut Input) {
        match input.u8() % 12 {
            0 | 1 => {
                let off = self.plic_offset(input);
                let size = if input.u8() < 0xf0 {
                    4
                } else {
                    input.pick(&[1u8, 2, 8, 0])
                };
                let got = self.plic.read(off, size);
                let want = self.pm.access(off, size, None);
                assert_eq!(got, want, "PLIC read {off:#x}/{size}");
            }
            2 | 3 => {
                let off = self.plic_offset(input);
                let size = if input.u8() < 0xf0 {
                    4
                } else {
                    input.pick(&[1u8, 2, 8, 0])
                };
                let v = match input.u8() % 4 {
                    0 => input.u32(),
                    1 => input.below(8) as u32,
                    _ => input.below(u64::from(self.pm.nsrc) + 3) as u32,
                };
                let ok = self.plic.write(off, size, v);
                let want = self.pm.access(off, size, Some(v));
                assert_eq!(ok, want.is_some(), "PLIC write {off:#x}/{size}");
            }
            4 => {
                let src = match input.u8() % 4 {
                    0 => input.u32(),
                    _ => input.below(u64::from(self.pm.nsrc) + 2) as u32,
                };
                let high = input.bool();
                self.plic.set_level(src, high);
                self.pm.set_level(src, high);
            }
            5 => {
                // Claim and complete, as a handler does.
                let ctx = input.below(self.pm.nctx as u64 + 1) as usize;
                let off = 0x20_0004 + 0x1000 * ctx as u64;
                let id = self.plic.read(off, 4);
                assert_eq!(id, self.pm.access(off, 4, None), "claim");
                if let Some(id) = id {
                    let done_ctx = if input.u8() < 0xe0 {
                        ctx
                    } else {
                        input.below(self.pm.nctx as u64 + 1) as usize
                    };
                    let off = 0x20_0004 + 0x1000 * done_ctx as u64;
                    assert_eq!(
                        self.plic.write(off, 4, id),
                        self.pm.access(off, 4, Some(id)).is_some()
                    );
                }
            }
            6 | 7 => {
                let off = input.below(10);
                self.uart_read(off);
                self.wire_uart();
            }
            8 | 9 => {
                let off = input.below(10);
                let v = input.u8();
                self.uart_write(off, v);
                self.wire_uart();
            }
            10 => {
                let n = input.below(80) as usize;
                let bytes = input.bytes(n);
                let accepted = self.uart.push_input(bytes);
                let want = if self.um.loopback() {
                    0
                } else {
                    let mut k = 0;
                    for &b in bytes {
                        if !self.um.push(b) {
                            break;
                        }
                        k += 1;
                    }
                    k
                };
                assert_eq!(accepted, want, "push_input");
                self.wire_uart();
            }
            _ => match input.u8() % 4 {
                0 => {
                    self.plic.reset();
                    self.pm.reset();
                }
                1 => {
                    self.uart.reset();
                    self.um = UartModel::new();
                    self.wire_uart();
                }
                _ => {
                    let strict = input.bool();
                    self.plic.set_strict_completion(strict);
                    self.pm.strict = strict;
                }
            },
        }
        self.check();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let nsrc = match input.u8() % 8 {
        0 => input.u32(),
        1 => 0,
        _ => input.below(96) as u32,
    };
    let nctx = match input.u8() % 16 {
        0 => MAX_CONTEXTS + input.below(4) as usize,
        _ => input.below(20) as usize,
    };
    let plic = Plic::new(nsrc, nctx);
    let pm = PlicModel::new(nsrc, nctx);
    assert_eq!(plic.num_sources(), pm.nsrc);
    assert_eq!(plic.num_contexts(), pm.nctx);
    assert!(plic.strict_completion());
    let uart_src = if pm.nsrc >= 10 { 10 } else { 1 };
    let mut w = World {
        plic,
        pm,
        uart: Uart16550::new(),
        um: UartModel::new(),
        uart_src,
    };
    let mut steps = 0;
    while !input.is_empty() && steps < 300 {
        steps += 1;
        w.step(&mut input);
    }
});
