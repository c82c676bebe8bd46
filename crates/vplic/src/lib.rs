//! Virtual SiFive-compatible PLIC (Platform-Level Interrupt Controller).
//!
//! This crate owns the guest-visible interrupt controller of a VM: the MMIO
//! register file described by the RISC-V PLIC specification (and implemented by
//! SiFive's PLIC, which Linux's `irq-sifive-plic.c` drives), the per-source
//! level-triggered gateways, and the claim/complete protocol. It knows nothing
//! about vCPUs or trapping: the hypervisor forwards decoded MMIO accesses to
//! [`Plic::read`] / [`Plic::write`], feeds device interrupt lines in through
//! [`Plic::set_level`], and afterwards asks [`Plic::context_irq`] /
//! [`Plic::irq_lines`] which contexts (context *i* = vCPU *i*'s S-mode external
//! interrupt, i.e. `hvip.VSEIP`) must be asserted.
//!
//! # Register map (byte offsets, all registers 32 bits)
//!
//! | offset                        | register                                   |
//! |-------------------------------|--------------------------------------------|
//! | `0x000000 + 4*src`            | priority of source `src` (3 bits, 0..=7)   |
//! | `0x001000 + 4*word`           | pending bits (read-only), words 0..32      |
//! | `0x002000 + 0x80*ctx + 4*word`| enable bits of context `ctx`, words 0..32  |
//! | `0x200000 + 0x1000*ctx`       | priority threshold of `ctx` (3 bits)       |
//! | `0x200004 + 0x1000*ctx`       | claim (read) / complete (write) of `ctx`   |
//!
//! # Access rules (decisions)
//!
//! * Only naturally aligned 32-bit accesses are valid. Any other width, a
//!   misaligned offset, an offset `>= MMIO_SIZE`, or an enable/threshold/claim
//!   offset that belongs to a context `>= num_contexts` is **invalid**:
//!   [`Plic::read`] returns `None` and [`Plic::write`] returns `false`, and the
//!   hypervisor should inject an access fault.
//! * Aligned 32-bit accesses to *unimplemented but in-range* words read as 0
//!   and ignore writes. These are: the priority of source 0 and of sources
//!   above `num_sources` (up to 1023), the reserved area `0x1080..0x2000`,
//!   enable words/bits for sources that do not exist (source 0's enable bit
//!   is hard-wired to 0), pending bits of nonexistent sources, any write to
//!   the pending area, and the reserved words `0x8..0x1000` of each
//!   implemented context's threshold/claim page.
//! * Priority and threshold writes keep only the low 3 bits (a write of 8
//!   stores 0), so Linux's `PLIC_DISABLE_THRESHOLD` (7) masks everything.
//!
//! # Interrupt semantics (decisions)
//!
//! * Every source is level-triggered behind a PLIC gateway: while its level is
//!   high and it is neither pending nor in service (claimed, not completed),
//!   it becomes pending.
//! * The pending bit is *latched*: if the level drops before the interrupt is
//!   claimed, the source stays pending (as the spec's gateway model and QEMU
//!   do). The guest then claims it and its driver finds nothing to do, which
//!   Linux handles (virtio-mmio and 8250 handlers return `IRQ_NONE` quietly).
//! * Claim returns the enabled, pending source with the highest priority that
//!   is strictly greater than the context's threshold (ties: lowest id), clears
//!   its pending bit and marks it in service; 0 when there is none.
//! * Complete (writing an id to the claim register) clears in-service only if
//!   the id is in service and — per the spec, by default — enabled for the
//!   completing context; otherwise it is silently ignored. After a completion
//!   a still-high level re-pends immediately. See
//!   [`Plic::set_strict_completion`] for the Linux 6.12 affinity caveat.
//! * In-service state is per source (the gateway), not per context: the PLIC
//!   does not check that the completing context is the one that claimed.
//! * [`Plic::reset`] returns all registers to 0 (priorities, enables,
//!   thresholds, pending, in-service) but keeps the input levels, which belong
//!   to the devices; sources whose level is still high become pending again.
#![no_std]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

/// Size of the PLIC's MMIO window in bytes.
pub const MMIO_SIZE: u64 = 0x0400_0000;
/// Largest number of interrupt sources (ids 1..=1023) the register map holds.
pub const MAX_SOURCES: u32 = 1023;
/// Largest number of contexts the register map holds (threshold/claim pages
/// from `0x200000` up to `MMIO_SIZE`).
pub const MAX_CONTEXTS: usize = 15872;
/// Mask of implemented priority / threshold bits (3 bits: 0..=7).
pub const PRIORITY_MASK: u32 = 0x7;

const WORDS: usize = 32;

const PENDING_BASE: u64 = 0x1000;
const PENDING_END: u64 = PENDING_BASE + 4 * WORDS as u64;
const ENABLE_BASE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT_BASE: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;
const CONTEXT_THRESHOLD: u64 = 0x0;
const CONTEXT_CLAIM: u64 = 0x4;

/// One bit per source id 0..1024.
type Bits = [u32; WORDS];

fn bit(bits: &Bits, src: u32) -> bool {
    bits.get((src / 32) as usize)
        .is_some_and(|w| (w >> (src % 32)) & 1 != 0)
}

fn set_bit(bits: &mut Bits, src: u32, value: bool) {
    if let Some(w) = bits.get_mut((src / 32) as usize) {
        let m = 1u32 << (src % 32);
        if value {
            *w |= m;
        } else {
            *w &= !m;
        }
    }
}

#[derive(Debug, Clone)]
struct Context {
    enable: Bits,
    threshold: u8,
}

impl Context {
    const fn new() -> Self {
        Self {
            enable: [0; WORDS],
            threshold: 0,
        }
    }
}

/// A decoded, valid register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    /// Priority register of source id (may be 0 or > num_sources: reads 0).
    Priority(u32),
    Pending(usize),
    Enable {
        ctx: usize,
        word: usize,
    },
    Threshold(usize),
    Claim(usize),
    /// In-range but unimplemented: reads 0, writes ignored.
    Reserved,
}

/// A virtual PLIC: `num_sources` level-triggered sources, `num_contexts`
/// targets.
#[derive(Debug, Clone)]
pub struct Plic {
    num_sources: u32,
    /// Mask of existing sources (bits 1..=num_sources).
    valid: Bits,
    /// Priority per source id; index 0 exists and stays 0.
    priority: Vec<u8>,
    level: Bits,
    pending: Bits,
    in_service: Bits,
    contexts: Vec<Context>,
    strict_completion: bool,
}

impl Plic {
    /// A PLIC with sources `1..=num_sources` and contexts `0..num_contexts`,
    /// all registers zero. `num_sources` is clamped to [`MAX_SOURCES`] and
    /// `num_contexts` to [`MAX_CONTEXTS`] (the register map has no room for
    /// more). The guest device tree's `riscv,ndev` must equal
    /// [`Plic::num_sources`].
    pub fn new(num_sources: u32, num_contexts: usize) -> Self {
        let num_sources = num_sources.min(MAX_SOURCES);
        let num_contexts = num_contexts.min(MAX_CONTEXTS);
        let mut valid = [0; WORDS];
        for src in 1..=num_sources {
            set_bit(&mut valid, src, true);
        }
        let priority = vec![0u8; num_sources as usize + 1];
        let mut contexts = Vec::new();
        contexts.resize(num_contexts, Context::new());
        Self {
            num_sources,
            valid,
            priority,
            level: [0; WORDS],
            pending: [0; WORDS],
            in_service: [0; WORDS],
            contexts,
            strict_completion: true,
        }
    }

    /// Number of interrupt sources (ids `1..=num_sources`).
    pub fn num_sources(&self) -> u32 {
        self.num_sources
    }

    /// Number of contexts (context *i* = vCPU *i*'s S-mode external interrupt).
    pub fn num_contexts(&self) -> usize {
        self.contexts.len()
    }

    /// Choose how completions of sources that are not enabled for the
    /// completing context are handled.
    ///
    /// `true` (the default) follows the PLIC spec: such a completion is
    /// silently ignored and the source stays in service. Linux copes with
    /// that for *disabled* interrupts (`plic_irq_eoi` re-enables around the
    /// completion), but Linux 6.12 before the stable fix "irqchip/sifive-plic:
    /// Fix frozen interrupt due to affinity setting" can complete on a hart
    /// whose enable bit was just moved away by an affinity change, leaving the
    /// source in service forever (same as on real SiFive hardware). `false`
    /// accepts any completion of an in-service source (QEMU's behaviour),
    /// which avoids that freeze for SMP guests.
    pub fn set_strict_completion(&mut self, strict: bool) {
        self.strict_completion = strict;
    }

    /// Whether completions are checked against the context's enable bits.
    pub fn strict_completion(&self) -> bool {
        self.strict_completion
    }

    fn decode(&self, offset: u64, size: u8) -> Option<Reg> {
        if size != 4 || !offset.is_multiple_of(4) || offset >= MMIO_SIZE {
            return None;
        }
        if offset < PENDING_BASE {
            // offset < 0x1000, so the id fits in u32 (< 1024).
            return Some(Reg::Priority((offset / 4) as u32));
        }
        if offset < ENABLE_BASE {
            if offset < PENDING_END {
                return Some(Reg::Pending(((offset - PENDING_BASE) / 4) as usize));
            }
            return Some(Reg::Reserved);
        }
        if offset < CONTEXT_BASE {
            let rel = offset - ENABLE_BASE;
            let ctx = usize::try_from(rel / ENABLE_STRIDE).ok()?;
            if ctx >= self.contexts.len() {
                return None;
            }
            let word = ((rel % ENABLE_STRIDE) / 4) as usize;
            return Some(Reg::Enable { ctx, word });
        }
        let rel = offset - CONTEXT_BASE;
        let ctx = usize::try_from(rel / CONTEXT_STRIDE).ok()?;
        if ctx >= self.contexts.len() {
            return None;
        }
        Some(match rel % CONTEXT_STRIDE {
            CONTEXT_THRESHOLD => Reg::Threshold(ctx),
            CONTEXT_CLAIM => Reg::Claim(ctx),
            _ => Reg::Reserved,
        })
    }

    /// MMIO read at byte `offset`; `size` in bytes. `None` = invalid access
    /// (the hypervisor injects an access fault). Reading a claim register
    /// claims an interrupt (side effect).
    pub fn read(&mut self, offset: u64, size: u8) -> Option<u32> {
        let value = match self.decode(offset, size)? {
            Reg::Priority(src) => u32::from(self.priority_of(src)),
            Reg::Pending(word) => self.pending.get(word).copied().unwrap_or(0),
            Reg::Enable { ctx, word } => self
                .contexts
                .get(ctx)
                .and_then(|c| c.enable.get(word))
                .copied()
                .unwrap_or(0),
            Reg::Threshold(ctx) => self.contexts.get(ctx).map_or(0, |c| u32::from(c.threshold)),
            Reg::Claim(ctx) => self.claim(ctx),
            Reg::Reserved => 0,
        };
        Some(value)
    }

    /// MMIO write of `value` at byte `offset`; `size` in bytes. `false` =
    /// invalid access (the hypervisor injects an access fault). Writing a
    /// claim register completes an interrupt.
    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> bool {
        let Some(reg) = self.decode(offset, size) else {
            return false;
        };
        match reg {
            Reg::Priority(src) => {
                if src != 0 {
                    if let Some(p) = self.priority.get_mut(src as usize) {
                        // Masked to 3 bits, so the cast is lossless.
                        *p = (value & PRIORITY_MASK) as u8;
                    }
                }
            }
            Reg::Pending(_) | Reg::Reserved => {}
            Reg::Enable { ctx, word } => {
                let mask = self.valid.get(word).copied().unwrap_or(0);
                if let Some(w) = self
                    .contexts
                    .get_mut(ctx)
                    .and_then(|c| c.enable.get_mut(word))
                {
                    *w = value & mask;
                }
            }
            Reg::Threshold(ctx) => {
                if let Some(c) = self.contexts.get_mut(ctx) {
                    c.threshold = (value & PRIORITY_MASK) as u8;
                }
            }
            Reg::Claim(ctx) => self.complete(ctx, value),
        }
        true
    }

    fn priority_of(&self, src: u32) -> u8 {
        if src == 0 {
            return 0;
        }
        self.priority.get(src as usize).copied().unwrap_or(0)
    }

    fn exists(&self, src: u32) -> bool {
        bit(&self.valid, src)
    }

    /// The source context `ctx` would claim now, if any.
    fn best(&self, ctx: &Context) -> Option<u32> {
        let mut best: Option<(u32, u8)> = None;
        for (word, (&p, &e)) in (0u32..).zip(self.pending.iter().zip(ctx.enable.iter())) {
            let mut bits = p & e;
            while bits != 0 {
                let src = word * 32 + bits.trailing_zeros();
                bits &= bits - 1;
                let prio = self.priority_of(src);
                // Ascending id order with a strict comparison keeps the
                // lowest id on ties.
                if prio > ctx.threshold && best.is_none_or(|(_, bp)| prio > bp) {
                    best = Some((src, prio));
                }
            }
        }
        best.map(|(src, _)| src)
    }

    fn claim(&mut self, ctx: usize) -> u32 {
        let Some(src) = self.contexts.get(ctx).and_then(|c| self.best(c)) else {
            return 0;
        };
        set_bit(&mut self.pending, src, false);
        set_bit(&mut self.in_service, src, true);
        src
    }

    fn complete(&mut self, ctx: usize, id: u32) {
        if !self.exists(id) || !bit(&self.in_service, id) {
            return;
        }
        if self.strict_completion {
            let enabled = self.contexts.get(ctx).is_some_and(|c| bit(&c.enable, id));
            if !enabled {
                return;
            }
        }
        set_bit(&mut self.in_service, id, false);
        self.gateway(id);
    }

    /// The gateway: a high level that is neither pending nor in service
    /// becomes pending.
    fn gateway(&mut self, src: u32) {
        if bit(&self.level, src) && !bit(&self.in_service, src) {
            set_bit(&mut self.pending, src, true);
        }
    }

    /// Level of interrupt source line `source` (driven by a device model).
    /// Out-of-range sources (0, > `num_sources`) are ignored. A level going
    /// low does not clear an already latched pending bit.
    pub fn set_level(&mut self, source: u32, high: bool) {
        if !self.exists(source) {
            return;
        }
        set_bit(&mut self.level, source, high);
        if high {
            self.gateway(source);
        }
    }

    /// True when context `ctx` has an interrupt to take: some pending, enabled
    /// source with priority > its threshold. False for nonexistent contexts.
    pub fn context_irq(&self, ctx: usize) -> bool {
        self.contexts
            .get(ctx)
            .is_some_and(|c| self.best(c).is_some())
    }

    /// Bitmask of contexts whose external-interrupt line is asserted (bit *i*
    /// = context *i*; only contexts 0..64 are reported).
    pub fn irq_lines(&self) -> u64 {
        let mut lines = 0u64;
        for (i, c) in self.contexts.iter().take(64).enumerate() {
            if self.best(c).is_some() {
                lines |= 1 << i;
            }
        }
        lines
    }

    /// Reset every register (priorities, enables, thresholds, pending,
    /// in-service) to 0. Source levels are device inputs and are kept: a
    /// source still high becomes pending again. The completion policy is kept.
    pub fn reset(&mut self) {
        self.priority.fill(0);
        self.in_service = [0; WORDS];
        for c in &mut self.contexts {
            *c = Context::new();
        }
        // Nothing is in service, so every high level passes its gateway.
        self.pending = self.level;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const PRIO: u64 = 0;
    const PEND: u64 = 0x1000;

    fn enable_off(ctx: usize, word: u64) -> u64 {
        ENABLE_BASE + ENABLE_STRIDE * ctx as u64 + 4 * word
    }
    fn thresh_off(ctx: usize) -> u64 {
        CONTEXT_BASE + CONTEXT_STRIDE * ctx as u64
    }
    fn claim_off(ctx: usize) -> u64 {
        thresh_off(ctx) + 4
    }

    fn w(p: &mut Plic, off: u64, v: u32) {
        assert!(p.write(off, 4, v), "write {off:#x} rejected");
    }
    fn r(p: &mut Plic, off: u64) -> u32 {
        p.read(off, 4).expect("read rejected")
    }
    fn set_prio(p: &mut Plic, src: u32, prio: u32) {
        w(p, PRIO + 4 * u64::from(src), prio);
    }
    fn enable(p: &mut Plic, ctx: usize, src: u32) {
        let off = enable_off(ctx, u64::from(src / 32));
        let v = r(p, off) | 1 << (src % 32);
        w(p, off, v);
    }
    fn disable(p: &mut Plic, ctx: usize, src: u32) {
        let off = enable_off(ctx, u64::from(src / 32));
        let v = r(p, off) & !(1 << (src % 32));
        w(p, off, v);
    }
    fn claim(p: &mut Plic, ctx: usize) -> u32 {
        r(p, claim_off(ctx))
    }
    fn complete(p: &mut Plic, ctx: usize, id: u32) {
        w(p, claim_off(ctx), id);
    }
    fn pending(p: &mut Plic, src: u32) -> bool {
        r(p, PEND + 4 * u64::from(src / 32)) >> (src % 32) & 1 != 0
    }
    /// Source with priority 1 enabled on ctx.
    fn setup(p: &mut Plic, ctx: usize, src: u32) {
        set_prio(p, src, 1);
        enable(p, ctx, src);
    }

    #[test]
    fn construction_and_clamping() {
        let p = Plic::new(64, 4);
        assert_eq!(p.num_sources(), 64);
        assert_eq!(p.num_contexts(), 4);
        assert!(p.strict_completion());
        let p = Plic::new(5000, 100_000);
        assert_eq!(p.num_sources(), MAX_SOURCES);
        assert_eq!(p.num_contexts(), MAX_CONTEXTS);
        let mut p = Plic::new(0, 0);
        assert_eq!(p.read(0, 4), Some(0));
        assert_eq!(p.read(claim_off(0), 4), None);
        assert_eq!(p.irq_lines(), 0);
    }

    #[test]
    fn claim_of_nothing_returns_zero() {
        let mut p = Plic::new(32, 2);
        assert_eq!(claim(&mut p, 0), 0);
        assert_eq!(claim(&mut p, 1), 0);
        assert!(!p.context_irq(0));
        // Pending but not enabled / priority 0: still nothing.
        p.set_level(3, true);
        assert_eq!(claim(&mut p, 0), 0);
        enable(&mut p, 0, 3);
        assert_eq!(claim(&mut p, 0), 0, "priority 0 never interrupts");
        assert!(!p.context_irq(0));
        set_prio(&mut p, 3, 1);
        assert!(p.context_irq(0));
        assert_eq!(claim(&mut p, 0), 3);
        assert_eq!(claim(&mut p, 0), 0);
    }

    #[test]
    fn priority_registers_masked_and_source_zero() {
        let mut p = Plic::new(10, 1);
        set_prio(&mut p, 1, 0xffff_ffff);
        assert_eq!(r(&mut p, 4), 7);
        set_prio(&mut p, 2, 8);
        assert_eq!(r(&mut p, 8), 0);
        set_prio(&mut p, 3, 5);
        assert_eq!(r(&mut p, 12), 5);
        // Source 0 does not exist: reads 0, writes ignored (valid access).
        w(&mut p, 0, 7);
        assert_eq!(r(&mut p, 0), 0);
        // Sources above num_sources: in range, read 0.
        w(&mut p, 4 * 11, 7);
        assert_eq!(r(&mut p, 4 * 11), 0);
        w(&mut p, 4 * 1023, 7);
        assert_eq!(r(&mut p, 4 * 1023), 0);
        // Threshold masked too.
        w(&mut p, thresh_off(0), 0xff);
        assert_eq!(r(&mut p, thresh_off(0)), 7);
        w(&mut p, thresh_off(0), 9);
        assert_eq!(r(&mut p, thresh_off(0)), 1);
    }

    #[test]
    fn priority_ordering_and_tie_break() {
        let mut p = Plic::new(64, 1);
        for (src, prio) in [(5, 2), (9, 6), (40, 6), (7, 1), (33, 3)] {
            setup(&mut p, 0, src);
            set_prio(&mut p, src, prio);
            p.set_level(src, true);
        }
        // 9 and 40 both priority 6 → lowest id first.
        assert_eq!(claim(&mut p, 0), 9);
        assert_eq!(claim(&mut p, 0), 40);
        assert_eq!(claim(&mut p, 0), 33);
        assert_eq!(claim(&mut p, 0), 5);
        assert_eq!(claim(&mut p, 0), 7);
        assert_eq!(claim(&mut p, 0), 0);
    }

    #[test]
    fn tie_break_within_equal_priority_spanning_words() {
        let mut p = Plic::new(100, 1);
        for src in [99, 64, 31, 32] {
            setup(&mut p, 0, src);
            p.set_level(src, true);
        }
        assert_eq!(claim(&mut p, 0), 31);
        assert_eq!(claim(&mut p, 0), 32);
        assert_eq!(claim(&mut p, 0), 64);
        assert_eq!(claim(&mut p, 0), 99);
    }

    #[test]
    fn threshold_masking() {
        let mut p = Plic::new(8, 1);
        setup(&mut p, 0, 1);
        setup(&mut p, 0, 2);
        set_prio(&mut p, 1, 3);
        set_prio(&mut p, 2, 4);
        p.set_level(1, true);
        p.set_level(2, true);
        w(&mut p, thresh_off(0), 4);
        assert!(!p.context_irq(0), "priority == threshold is not delivered");
        assert_eq!(claim(&mut p, 0), 0);
        w(&mut p, thresh_off(0), 3);
        assert!(p.context_irq(0));
        assert_eq!(claim(&mut p, 0), 2);
        assert!(!p.context_irq(0), "source 1 has priority 3 <= threshold 3");
        assert_eq!(claim(&mut p, 0), 0);
        // Linux's PLIC_DISABLE_THRESHOLD (7) masks even priority 7.
        set_prio(&mut p, 1, 7);
        w(&mut p, thresh_off(0), 7);
        assert!(!p.context_irq(0));
        w(&mut p, thresh_off(0), 0);
        assert!(p.context_irq(0));
        assert_eq!(claim(&mut p, 0), 1);
    }

    #[test]
    fn enable_is_per_context() {
        let mut p = Plic::new(32, 2);
        set_prio(&mut p, 4, 1);
        enable(&mut p, 1, 4);
        p.set_level(4, true);
        assert!(!p.context_irq(0));
        assert!(p.context_irq(1));
        assert_eq!(p.irq_lines(), 0b10);
        assert_eq!(claim(&mut p, 0), 0);
        assert_eq!(claim(&mut p, 1), 4);
        assert_eq!(p.irq_lines(), 0);
    }

    #[test]
    fn enable_bits_only_for_existing_sources() {
        let mut p = Plic::new(40, 1);
        w(&mut p, enable_off(0, 0), 0xffff_ffff);
        assert_eq!(
            r(&mut p, enable_off(0, 0)),
            0xffff_fffe,
            "source 0 bit hard-wired 0"
        );
        w(&mut p, enable_off(0, 1), 0xffff_ffff);
        assert_eq!(r(&mut p, enable_off(0, 1)), 0x1ff, "sources 32..=40");
        w(&mut p, enable_off(0, 2), 0xffff_ffff);
        assert_eq!(r(&mut p, enable_off(0, 2)), 0);
        w(&mut p, enable_off(0, 31), 0xffff_ffff);
        assert_eq!(r(&mut p, enable_off(0, 31)), 0);
    }

    #[test]
    fn level_gateway_no_duplicate_while_in_service() {
        let mut p = Plic::new(16, 1);
        setup(&mut p, 0, 5);
        p.set_level(5, true);
        assert!(pending(&mut p, 5));
        assert_eq!(claim(&mut p, 0), 5);
        assert!(!pending(&mut p, 5));
        // Level still high (and re-asserted) while in service: no new pending.
        p.set_level(5, true);
        assert!(!pending(&mut p, 5));
        assert!(!p.context_irq(0));
        assert_eq!(claim(&mut p, 0), 0);
        // Complete with level still high → pending again immediately.
        complete(&mut p, 0, 5);
        assert!(pending(&mut p, 5));
        assert!(p.context_irq(0));
        assert_eq!(claim(&mut p, 0), 5);
        // Level drops during service, complete → nothing more.
        p.set_level(5, false);
        complete(&mut p, 0, 5);
        assert!(!pending(&mut p, 5));
        assert!(!p.context_irq(0));
        // A new rising level pends again.
        p.set_level(5, true);
        assert!(pending(&mut p, 5));
    }

    #[test]
    fn level_dropped_before_claim_stays_pending() {
        let mut p = Plic::new(16, 1);
        setup(&mut p, 0, 2);
        p.set_level(2, true);
        p.set_level(2, false);
        assert!(pending(&mut p, 2), "pending is latched");
        assert!(p.context_irq(0));
        assert_eq!(claim(&mut p, 0), 2);
        complete(&mut p, 0, 2);
        assert!(!pending(&mut p, 2));
        assert_eq!(claim(&mut p, 0), 0);
    }

    #[test]
    fn completion_of_unclaimed_or_bogus_id_ignored() {
        let mut p = Plic::new(16, 1);
        setup(&mut p, 0, 3);
        setup(&mut p, 0, 4);
        p.set_level(3, true);
        p.set_level(4, true);
        assert_eq!(claim(&mut p, 0), 3);
        // Completing 4 (pending, not claimed) does nothing.
        complete(&mut p, 0, 4);
        assert!(pending(&mut p, 4));
        // Completing nonexistent ids does nothing and is a valid access.
        for id in [0, 17, 1023, 1024, u32::MAX] {
            complete(&mut p, 0, id);
        }
        // 3 is still in service: level high but not re-pended.
        assert!(!pending(&mut p, 3));
        assert_eq!(claim(&mut p, 0), 4);
        assert_eq!(claim(&mut p, 0), 0);
        complete(&mut p, 0, 3);
        assert!(pending(&mut p, 3));
        // Double completion is harmless.
        complete(&mut p, 0, 3);
        assert!(pending(&mut p, 3));
        assert_eq!(claim(&mut p, 0), 3);
    }

    #[test]
    fn completion_requires_enable_when_strict() {
        let mut p = Plic::new(16, 2);
        setup(&mut p, 0, 6);
        p.set_level(6, true);
        assert_eq!(claim(&mut p, 0), 6);
        // Context 1 does not have 6 enabled: ignored.
        complete(&mut p, 1, 6);
        assert!(!pending(&mut p, 6));
        // Disabled on ctx 0 now: ignored too (Linux re-enables around EOI).
        disable(&mut p, 0, 6);
        complete(&mut p, 0, 6);
        assert!(!pending(&mut p, 6));
        enable(&mut p, 0, 6);
        complete(&mut p, 0, 6);
        assert!(pending(&mut p, 6));
        // Another context with the source enabled may complete it.
        assert_eq!(claim(&mut p, 0), 6);
        enable(&mut p, 1, 6);
        complete(&mut p, 1, 6);
        assert!(pending(&mut p, 6));
    }

    #[test]
    fn lenient_completion_ignores_enable() {
        let mut p = Plic::new(16, 2);
        p.set_strict_completion(false);
        assert!(!p.strict_completion());
        setup(&mut p, 0, 6);
        p.set_level(6, true);
        assert_eq!(claim(&mut p, 0), 6);
        // Affinity moved to ctx 1 while ctx 0 was handling it.
        disable(&mut p, 0, 6);
        enable(&mut p, 1, 6);
        complete(&mut p, 0, 6);
        assert!(pending(&mut p, 6));
        assert_eq!(claim(&mut p, 1), 6);
        // Still ignores ids that are not in service.
        complete(&mut p, 0, 7);
        complete(&mut p, 0, 0);
    }

    #[test]
    fn linux_eoi_of_disabled_irq() {
        // plic_irq_eoi for a disabled irq: enable, complete, disable.
        let mut p = Plic::new(16, 1);
        setup(&mut p, 0, 9);
        p.set_level(9, true);
        assert_eq!(claim(&mut p, 0), 9);
        disable(&mut p, 0, 9);
        enable(&mut p, 0, 9);
        complete(&mut p, 0, 9);
        disable(&mut p, 0, 9);
        assert!(pending(&mut p, 9));
        assert!(!p.context_irq(0));
    }

    #[test]
    fn pending_region_read_only() {
        let mut p = Plic::new(64, 1);
        p.set_level(1, true);
        p.set_level(33, true);
        assert_eq!(r(&mut p, PEND), 0b10);
        assert_eq!(r(&mut p, PEND + 4), 0b10);
        w(&mut p, PEND, 0);
        w(&mut p, PEND + 4, 0xffff_ffff);
        w(&mut p, PEND + 8, 0xffff_ffff);
        assert_eq!(r(&mut p, PEND), 0b10);
        assert_eq!(r(&mut p, PEND + 4), 0b10);
        assert_eq!(r(&mut p, PEND + 8), 0);
        assert_eq!(r(&mut p, PEND + 4 * 31), 0);
    }

    #[test]
    fn out_of_range_sources_ignored() {
        let mut p = Plic::new(8, 1);
        p.set_level(0, true);
        p.set_level(9, true);
        p.set_level(1023, true);
        p.set_level(u32::MAX, true);
        for word in 0..32 {
            assert_eq!(r(&mut p, PEND + 4 * word), 0);
        }
    }

    #[test]
    fn invalid_widths_and_offsets() {
        let mut p = Plic::new(32, 2);
        for size in [0u8, 1, 2, 3, 5, 8, 16, 255] {
            assert_eq!(p.read(4, size), None);
            assert!(!p.write(4, size, 1));
            assert_eq!(p.read(claim_off(0), size), None);
        }
        for off in [1u64, 2, 3, 0x1001, 0x2002, 0x20_0005, 0x20_0006] {
            assert_eq!(p.read(off, 4), None, "{off:#x}");
            assert!(!p.write(off, 4, 1), "{off:#x}");
        }
        // Beyond the window.
        for off in [MMIO_SIZE, MMIO_SIZE + 4, u64::MAX - 3, !3u64] {
            assert_eq!(p.read(off, 4), None);
            assert!(!p.write(off, 4, 1));
        }
        // Contexts that do not exist.
        assert_eq!(p.read(enable_off(2, 0), 4), None);
        assert!(!p.write(enable_off(2, 0), 4, 1));
        assert_eq!(p.read(thresh_off(2), 4), None);
        assert_eq!(p.read(claim_off(2), 4), None);
        assert!(!p.write(claim_off(2), 4, 1));
        assert_eq!(p.read(0x1F_FFFC, 4), None);
        assert_eq!(p.read(MMIO_SIZE - 4, 4), None);
        // In-range reserved words read 0 and ignore writes.
        for off in [0x1080u64, 0x1FFC, thresh_off(1) + 8, thresh_off(1) + 0xFFC] {
            w(&mut p, off, 0xdead_beef);
            assert_eq!(r(&mut p, off), 0, "{off:#x}");
        }
        // Last enable word of the last context is valid.
        w(&mut p, enable_off(1, 31), 0);
        assert_eq!(r(&mut p, enable_off(1, 31)), 0);
    }

    #[test]
    fn full_size_plic_edges() {
        let mut p = Plic::new(MAX_SOURCES, MAX_CONTEXTS);
        let last = MAX_CONTEXTS - 1;
        setup(&mut p, last, MAX_SOURCES);
        set_prio(&mut p, MAX_SOURCES, 7);
        p.set_level(MAX_SOURCES, true);
        assert!(p.context_irq(last));
        assert_eq!(p.irq_lines(), 0, "only contexts < 64 reported");
        assert_eq!(claim(&mut p, last), MAX_SOURCES);
        complete(&mut p, last, MAX_SOURCES);
        assert!(pending(&mut p, MAX_SOURCES));
        assert_eq!(p.read(claim_off(last), 4), Some(MAX_SOURCES));
        assert_eq!(r(&mut p, enable_off(last, 31)), 0x8000_0000);
        assert_eq!(
            p.read(MMIO_SIZE - 4, 4),
            Some(0),
            "reserved word of last context page"
        );
        // Last enable word of the last context; beyond it the enable area
        // would belong to contexts >= MAX_CONTEXTS: invalid.
        assert_eq!(enable_off(last, 31), 0x1F_1FFC);
        assert_eq!(p.read(0x1F_2000, 4), None);
        assert_eq!(p.read(0x1F_FFFC, 4), None);
    }

    #[test]
    fn irq_lines_bitmask() {
        let mut p = Plic::new(32, 4);
        for ctx in 0..4 {
            setup(&mut p, ctx, 10 + ctx as u32);
        }
        assert_eq!(p.irq_lines(), 0);
        p.set_level(10, true);
        p.set_level(12, true);
        assert_eq!(p.irq_lines(), 0b0101);
        enable(&mut p, 3, 12);
        assert_eq!(p.irq_lines(), 0b1101);
        assert_eq!(claim(&mut p, 3), 12);
        assert_eq!(p.irq_lines(), 0b0001);
        w(&mut p, thresh_off(0), 1);
        assert_eq!(p.irq_lines(), 0);
        assert!(!p.context_irq(4));
        assert!(!p.context_irq(usize::MAX));
    }

    #[test]
    fn irq_lines_with_more_than_64_contexts() {
        let mut p = Plic::new(8, 70);
        setup(&mut p, 63, 1);
        setup(&mut p, 69, 1);
        p.set_level(1, true);
        assert_eq!(p.irq_lines(), 1 << 63);
        assert!(p.context_irq(69));
    }

    #[test]
    fn priority_change_while_pending() {
        let mut p = Plic::new(8, 1);
        setup(&mut p, 0, 1);
        p.set_level(1, true);
        // Linux masks by writing priority 0; the pending bit survives.
        set_prio(&mut p, 1, 0);
        assert!(!p.context_irq(0));
        assert!(pending(&mut p, 1));
        set_prio(&mut p, 1, 1);
        assert!(p.context_irq(0));
    }

    #[test]
    fn reset_clears_registers_keeps_levels() {
        let mut p = Plic::new(8, 2);
        p.set_strict_completion(false);
        setup(&mut p, 0, 1);
        setup(&mut p, 1, 2);
        w(&mut p, thresh_off(1), 3);
        p.set_level(1, true);
        p.set_level(2, true);
        p.set_level(3, true);
        p.set_level(3, false);
        assert_eq!(claim(&mut p, 0), 1);
        p.reset();
        assert!(!p.strict_completion());
        assert_eq!(r(&mut p, 4), 0);
        assert_eq!(r(&mut p, enable_off(0, 0)), 0);
        assert_eq!(r(&mut p, thresh_off(1)), 0);
        assert_eq!(p.irq_lines(), 0);
        // Levels 1 and 2 are still high → pending; 3 was latched but is low.
        assert_eq!(r(&mut p, PEND), 0b110);
        setup(&mut p, 0, 1);
        assert_eq!(claim(&mut p, 0), 1);
    }

    #[test]
    fn linux_probe_and_handle_sequence() {
        // What irq-sifive-plic.c does: threshold 7, disable all + priority 1,
        // threshold 0 on cpu start, enable a hwirq, then claim/handle/EOI.
        let n = 96;
        let mut p = Plic::new(n, 2);
        for ctx in 0..2 {
            w(&mut p, thresh_off(ctx), 7);
            for hwirq in 1..=n {
                disable(&mut p, ctx, hwirq);
                set_prio(&mut p, hwirq, 1);
            }
        }
        // Suspend path reads priorities of 0..nr_irqs, including source 0.
        for hwirq in 0..n {
            assert!(p.read(4 * u64::from(hwirq), 4).is_some());
        }
        for ctx in 0..2 {
            w(&mut p, thresh_off(ctx), 0);
        }
        enable(&mut p, 1, 10);
        p.set_level(10, true);
        assert_eq!(p.irq_lines(), 0b10);
        let id = claim(&mut p, 1);
        assert_eq!(id, 10);
        assert_eq!(claim(&mut p, 1), 0);
        p.set_level(10, false); // device acked
        complete(&mut p, 1, id);
        assert_eq!(p.irq_lines(), 0);
    }

    /// xorshift64 for deterministic pseudo-random sweeps.
    fn rng(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn read_sweep_never_panics() {
        for (ns, nc) in [(0, 0), (31, 1), (64, 3), (MAX_SOURCES, MAX_CONTEXTS)] {
            let mut p = Plic::new(ns, nc);
            for src in 1..=ns {
                p.set_level(src, true);
            }
            let mut off = 0u64;
            while off < MMIO_SIZE {
                let v = p.read(off, 4);
                assert!(v.is_some() || off >= ENABLE_BASE, "{off:#x}");
                off += 4;
            }
            for off in (0..0x3000u64).chain(0x20_0000..0x20_2010) {
                for size in [0u8, 1, 2, 3, 4, 8, 255] {
                    let _ = p.read(off, size);
                }
            }
            for off in [u64::MAX, u64::MAX - 3, 1 << 63, MMIO_SIZE - 1, MMIO_SIZE] {
                for size in 0..=255u8 {
                    let _ = p.read(off, size);
                }
            }
        }
    }

    #[test]
    fn write_sweep_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for (ns, nc) in [(0, 0), (31, 1), (64, 3), (MAX_SOURCES, 65)] {
            let mut p = Plic::new(ns, nc);
            let mut off = 0u64;
            while off < MMIO_SIZE {
                let v = rng(&mut seed) as u32;
                let _ = p.write(off, 4, v);
                if off % 0x1000 == 4 {
                    let _ = p.read(off, 4);
                }
                off += 4;
            }
            for i in 0..200_000u32 {
                let x = rng(&mut seed);
                let off = match x % 4 {
                    0 => x >> 8,
                    1 => (x >> 8) % MMIO_SIZE,
                    2 => (x >> 8) % 0x3000,
                    _ => CONTEXT_BASE + (x >> 8) % (0x1000 * 70),
                };
                let size = (x >> 2) as u8 % 9;
                let v = rng(&mut seed) as u32;
                let _ = p.write(off, size, v);
                let _ = p.read(off, size);
                p.set_level((v >> 8) % 1100, v & 1 != 0);
                let _ = p.context_irq((v % 80) as usize);
                if i % 256 == 0 {
                    let _ = p.irq_lines();
                }
            }
            p.reset();
        }
    }
}
