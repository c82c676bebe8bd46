//! `mode=bench`: micro-benchmarks of the paths that virtualization makes
//! expensive, run the same way natively (OpenSBI + this kernel) and under
//! Rivet, so `cargo xtask bench` can put the two side by side.
//!
//! Each benchmark prints one machine-parseable line:
//!
//! ```text
//! bench <name> iters=<K> instret_per_iter=<x> ns_per_iter=<y>
//! bench <name> n/a reason=<word>
//! ```
//!
//! `instret` is the `instret` CSR and `ns` the `time` CSR scaled by the
//! DT's timebase. Under QEMU `-icount shift=0` both count every
//! instruction the CPU retires in any privilege mode (M: OpenSBI, HS:
//! Rivet, VS/S: this kernel), so the figures include the firmware's and
//! the hypervisor's work; per-iteration values include the loop's own few
//! instructions (see `loop.empty`).
//!
//! Loop benchmarks: K iterations between two (instret, time) readings.
//! Timer latency: the deadline is `now + D`; `instret_per_iter` is the
//! number of instructions retired between the last spin-loop iteration
//! before the interrupt and the handler's first instruction, `ns_per_iter`
//! is (time at the handler − deadline), 100 ns resolution at 10 MHz.
//! SMP benchmarks use `time` only (per-hart counters are not comparable
//! across harts): `ipi.pingpong` is the round trip vCPU0 → vCPU1 → vCPU0
//! through handler-taken IPIs; `hsm.start` is HSM hart_start → the first
//! instruction of the started hart.
//!
//! A `bench=a,b` word on the command line runs only benchmarks whose
//! names start with one of the given prefixes (`bench=none` runs none: an
//! exit-count baseline).

use crate::sbi::{self, BASE, HSM, IPI};
use crate::trap;
use crate::{println, BootInfo};
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicUsize, Ordering};

const UART_SCR: usize = 0x1000_0007;
const LOOP_ITERS: u64 = 1000;
const LAT_ITERS: u64 = 100;
const SMP_ITERS: u64 = 100;
/// Timer deadline distance in timebase ticks (20 µs at 10 MHz): far enough
/// that programming it (an SBI call through one or two privilege levels)
/// is over well before it fires.
const TIMER_DELTA: u64 = 200;

/// Per-hart trap record written by the benchmark vector before anything
/// else: the instret and time at the handler's first instructions and a
/// trap count. `tp` points at the current hart's record.
#[repr(C)]
struct HartRec {
    instret: u64,
    time: u64,
    traps: u64,
}

static mut RECS: [HartRec; 2] = [const {
    HartRec {
        instret: 0,
        time: 0,
        traps: 0,
    }
}; 2];
/// time at the started hart's first instruction (hsm.start).
static mut ENTRY_TIME: u64 = 0;

const STACK2_SIZE: usize = 16384;
#[repr(C, align(16))]
struct Stack2([u8; STACK2_SIZE]);
static mut STACK2: Stack2 = Stack2([0; STACK2_SIZE]);

global_asm!(
    r#"
    .section .text
    .p2align 2
    .globl tk_bench_vector
tk_bench_vector:
    csrw sscratch, t0
    rdinstret t0
    sd t0, 0(tp)
    rdtime t0
    sd t0, 8(tp)
    ld t0, 16(tp)
    addi t0, t0, 1
    sd t0, 16(tp)
    csrr t0, sscratch
    j tk_trap_vector

    .globl tk_bench_secondary
    .p2align 2
tk_bench_secondary:
    /* a0 = hartid, a1 = opaque = top of stack */
    rdtime t0
    la t1, {entry_time}
    sd t0, 0(t1)
    mv sp, a1
    call {secondary}
1:  j 1b
"#,
    entry_time = sym ENTRY_TIME,
    secondary = sym secondary_main,
);

extern "C" {
    fn tk_bench_vector();
    fn tk_bench_secondary();
}

/// What the secondary hart does when started.
static SECONDARY_MODE: AtomicUsize = AtomicUsize::new(0);
const MODE_HSM: usize = 1;
const MODE_PONG: usize = 2;
static PONG_STOP: AtomicUsize = AtomicUsize::new(0);
static BOOT_HART: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
fn instret() -> u64 {
    let v: u64;
    // SAFETY: reading a counter CSR (hcounteren.IR under Rivet, mcounteren natively).
    unsafe { asm!("rdinstret {0}", out(reg) v) };
    v
}

#[inline(always)]
fn time() -> u64 {
    let v: u64;
    // SAFETY: reading the time CSR.
    unsafe { asm!("rdtime {0}", out(reg) v) };
    v
}

fn set_tp(slot: usize) {
    // SAFETY: points tp at this hart's record; nothing else in this kernel
    // uses tp (no thread-locals).
    unsafe {
        let p = core::ptr::addr_of_mut!(RECS[slot]) as usize;
        asm!("mv tp, {0}", in(reg) p);
    }
}

fn rec(slot: usize) -> (u64, u64, u64) {
    // SAFETY: plain reads of a record the trap vector writes; volatile so
    // the loops below see updates made by traps.
    unsafe {
        let r = core::ptr::addr_of!(RECS[slot]);
        (
            core::ptr::addr_of!((*r).instret).read_volatile(),
            core::ptr::addr_of!((*r).time).read_volatile(),
            core::ptr::addr_of!((*r).traps).read_volatile(),
        )
    }
}

fn install_bench_vector() {
    // SAFETY: our vector records, then continues into the normal one.
    unsafe { asm!("csrw stvec, {0}", in(reg) tk_bench_vector as *const () as usize) };
}

fn sie_set(mask: usize) {
    // SAFETY: enabling our own interrupt sources.
    unsafe { asm!("csrs sie, {0}", in(reg) mask) };
}

fn sie_clear(mask: usize) {
    // SAFETY: as above.
    unsafe { asm!("csrc sie, {0}", in(reg) mask) };
}

fn irq_on() {
    // SAFETY: the vector is installed.
    unsafe { asm!("csrsi sstatus, 2") };
}

fn irq_off() {
    // SAFETY: as above.
    unsafe { asm!("csrci sstatus, 2") };
}

/// Sleeps in WFI until this hart's trap count differs from `seen` (no
/// lost wake-up: the check runs with interrupts masked, WFI wakes on a
/// pending interrupt regardless, and the trap is then taken). Waiting with
/// WFI rather than spinning matters: under `-icount` QEMU runs the harts
/// round-robin, and a spinning hart holds the host thread.
fn wait_trap(slot: usize, seen: u64) {
    loop {
        irq_off();
        if rec(slot).2 != seen {
            return;
        }
        // SAFETY: wfi only waits.
        unsafe { asm!("wfi") };
        irq_on();
    }
}

struct Fmt1(u64, u64);

impl core::fmt::Display for Fmt1 {
    /// `num / den` with one decimal, rounded.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (n, d) = (self.0 as u128, self.1.max(1) as u128);
        let tenths = (n * 10 + d / 2) / d;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

struct Ctx {
    timebase: u64,
    filter: &'static str,
    /// stimecmp is usable (Sstc).
    sstc: bool,
}

impl Ctx {
    fn wanted(&self, name: &str) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        self.filter
            .split(',')
            .any(|p| !p.is_empty() && name.starts_with(p))
    }

    fn ticks_ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000_000 / self.timebase.max(1) as u128) as u64
    }

    fn report(&self, name: &str, iters: u64, instret: Option<u64>, ticks: u64) {
        let ns = self.ticks_ns(ticks);
        match instret {
            Some(i) => println!(
                "bench {name} iters={iters} instret_per_iter={} ns_per_iter={}",
                Fmt1(i, iters),
                Fmt1(ns, iters)
            ),
            None => println!(
                "bench {name} iters={iters} instret_per_iter=n/a ns_per_iter={}",
                Fmt1(ns, iters)
            ),
        }
    }

    fn na(&self, name: &str, reason: &str) {
        println!("bench {name} n/a reason={reason}");
    }
}

/// Runs `body` K times between two (instret, time) readings.
#[inline(always)]
fn measure(k: u64, mut body: impl FnMut()) -> (u64, u64) {
    let (i0, t0) = (instret(), time());
    for _ in 0..k {
        body();
    }
    let (i1, t1) = (instret(), time());
    (i1 - i0, t1 - t0)
}

pub fn run(info: &BootInfo) -> ! {
    // The time CSR counts from machine reset (Rivet: htimedelta = 0), so
    // this is reset → here: firmware, hypervisor boot and VM set-up, and
    // this kernel's own start-up (a few console lines).
    let t_start = time();
    let mut filter = "";
    for w in info.args.split_whitespace() {
        if let Some(f) = w.strip_prefix("bench=") {
            filter = f;
        }
    }
    BOOT_HART.store(info.hartid, Ordering::SeqCst);
    set_tp(0);
    install_bench_vector();
    let sstc = trap::expect_trap(|| {
        // SAFETY: a probe; the handler skips the write if it traps.
        unsafe { asm!("csrw 0x14d, {0}", in(reg) usize::MAX) };
    })
    .is_none();
    let cx = Ctx {
        timebase: info.timebase,
        filter,
        sstc,
    };
    println!(
        "bench: start timebase={} vcpus={} hart={} sstc={}",
        info.timebase, info.vcpus, info.hartid, sstc
    );
    if cx.wanted("boot.reset_to_main") {
        cx.report("boot.reset_to_main", 1, None, t_start);
    }

    if cx.wanted("loop.empty") {
        let (i, t) = measure(LOOP_ITERS, || {
            // SAFETY: an empty asm block: only keeps the loop alive.
            unsafe { asm!("", options(nomem, nostack)) }
        });
        cx.report("loop.empty", LOOP_ITERS, Some(i), t);
    }
    if cx.wanted("sbi.null") {
        let (i, t) = measure(LOOP_ITERS, || {
            sbi::call(BASE, 0, 0, 0, 0);
        });
        cx.report("sbi.null", LOOP_ITERS, Some(i), t);
    }
    if cx.wanted("mmio.load") {
        let (i, t) = measure(LOOP_ITERS, || {
            // SAFETY: the (emulated or real) 16550 scratch register.
            unsafe { (UART_SCR as *const u8).read_volatile() };
        });
        cx.report("mmio.load", LOOP_ITERS, Some(i), t);
    }
    if cx.wanted("mmio.store") {
        let (i, t) = measure(LOOP_ITERS, || {
            // SAFETY: as above.
            unsafe { (UART_SCR as *mut u8).write_volatile(0x5a) };
        });
        cx.report("mmio.store", LOOP_ITERS, Some(i), t);
    }
    if cx.wanted("trap.illegal") {
        // `unimp`: an illegal instruction everywhere; delegated straight to
        // this kernel's handler (medeleg natively, hedeleg under Rivet).
        let (i, t) = measure(LOOP_ITERS, || {
            trap::expect_trap(|| {
                // SAFETY: deliberately illegal; the handler skips it.
                unsafe { asm!("unimp") }
            });
        });
        cx.report("trap.illegal", LOOP_ITERS, Some(i), t);
    }
    if cx.wanted("trap.virtual") {
        // Reading hstatus: under Rivet a virtual-instruction exit that the
        // hypervisor injects back as an illegal instruction; natively (an
        // HS-mode CPU) the read simply succeeds.
        let probe = trap::expect_trap(|| {
            // SAFETY: may trap; the handler skips it.
            unsafe { asm!("csrr {0}, 0x600", out(reg) _) }
        });
        if probe == Some(2) {
            let (i, t) = measure(LOOP_ITERS, || {
                trap::expect_trap(|| {
                    // SAFETY: as above.
                    unsafe { asm!("csrr {0}, 0x600", out(reg) _) }
                });
            });
            cx.report("trap.virtual", LOOP_ITERS, Some(i), t);
        } else {
            cx.na(
                "trap.virtual",
                if probe.is_none() {
                    "hstatus-readable"
                } else {
                    "unexpected-cause"
                },
            );
        }
    }
    if cx.wanted("timer.sbi") {
        timer(&cx, "timer.sbi", false);
    }
    if cx.wanted("timer.sstc") {
        if cx.sstc {
            timer(&cx, "timer.sstc", true);
        } else {
            cx.na("timer.sstc", "no-sstc");
        }
    }
    let other = (0..info.vcpus).find(|&h| h != info.hartid);
    if cx.wanted("ipi.pingpong") {
        match other {
            Some(o) => ipi_pingpong(&cx, o),
            None => cx.na("ipi.pingpong", "one-hart"),
        }
    }
    if cx.wanted("hsm.start") {
        match other {
            Some(o) => hsm_start(&cx, o),
            None => cx.na("hsm.start", "one-hart"),
        }
    }
    println!("bench: done");
    sbi::shutdown(false)
}

fn timer(cx: &Ctx, name: &str, sstc: bool) {
    trap::TIMER_VIA_STIMECMP.store(sstc as usize, Ordering::SeqCst);
    sie_set(1 << 5);
    let (mut sum_insn, mut sum_ticks, mut bad) = (0u64, 0u64, 0u64);
    for _ in 0..LAT_ITERS {
        irq_off();
        let seen = rec(0).2;
        let deadline = time() + TIMER_DELTA;
        if sstc {
            // SAFETY: stimecmp exists (probed by the caller).
            unsafe { asm!("csrw 0x14d, {0}", in(reg) deadline) };
        } else {
            sbi::set_timer(deadline);
        }
        irq_on();
        let (prev, last): (u64, u64);
        // SAFETY: spins reading instret until the trap count moves; `tp`
        // points at RECS[0], whose third word is the trap count.
        unsafe {
            asm!(
                "li {last}, 0",
                "2:",
                "mv {prev}, {last}",
                "rdinstret {last}",
                "ld {t}, 16(tp)",
                "beq {t}, {seen}, 2b",
                prev = out(reg) prev, last = out(reg) last, t = out(reg) _, seen = in(reg) seen,
                options(nostack)
            )
        };
        irq_off();
        let (hi, ht, _) = rec(0);
        // The interrupt landed after the last `rdinstret` that precedes the
        // handler's: the loop may have read instret once more after return.
        let before = if last < hi { last } else { prev };
        if before == 0 || hi < before || ht < deadline {
            bad += 1;
            continue;
        }
        sum_insn += hi - before;
        sum_ticks += ht - deadline;
    }
    sie_clear(1 << 5);
    trap::TIMER_VIA_STIMECMP.store(0, Ordering::SeqCst);
    let good = LAT_ITERS - bad;
    if good == 0 {
        cx.na(name, "no-valid-sample");
    } else {
        cx.report(name, good, Some(sum_insn), sum_ticks);
    }
    if bad != 0 {
        println!("bench: {name}: {bad} sample(s) discarded (fired early)");
    }
}

fn stack2_top() -> usize {
    core::ptr::addr_of!(STACK2) as usize + STACK2_SIZE
}

/// Sleeps about `ticks` with WFI on a timer (interrupts masked: WFI wakes on
/// the pending timer, no trap is taken). Used instead of spinning while
/// another hart has work to do: under `-icount` QEMU runs the harts
/// round-robin on one host thread, so a spinning hart delays the others.
fn sleep(cx: &Ctx, ticks: u64) {
    irq_off();
    let sie: usize;
    // SAFETY: only the timer may wake us here; the old mask comes back below.
    unsafe { asm!("csrrw {0}, sie, {1}", out(reg) sie, in(reg) 1usize << 5) };
    let deadline = time() + ticks;
    if cx.sstc {
        // SAFETY: stimecmp exists (probed at start).
        unsafe { asm!("csrw 0x14d, {0}", in(reg) deadline) };
    } else {
        sbi::set_timer(deadline);
    }
    while time() < deadline {
        // SAFETY: wfi only waits.
        unsafe { asm!("wfi") };
    }
    if cx.sstc {
        // SAFETY: as above.
        unsafe { asm!("csrw 0x14d, {0}", in(reg) usize::MAX) };
    } else {
        sbi::set_timer(u64::MAX);
    }
    // SAFETY: restores the mask saved above.
    unsafe { asm!("csrw sie, {0}", in(reg) sie) };
}

/// Waits (sleeping 10 µs between HSM status polls, 1 s at most) until
/// `hart` is STOPPED.
fn hart_stopped(cx: &Ctx, hart: usize) -> bool {
    let end = time() + cx.timebase;
    loop {
        let st = sbi::call(HSM, 2, hart, 0, 0);
        if st.error == 0 && st.value == 1 {
            return true;
        }
        if time() > end {
            return false;
        }
        sleep(cx, cx.timebase / 100_000);
    }
}

fn ipi_pingpong(cx: &Ctx, other: usize) {
    SECONDARY_MODE.store(MODE_PONG, Ordering::SeqCst);
    PONG_STOP.store(0, Ordering::SeqCst);
    sie_set(1 << 1);
    let seen = rec(0).2;
    let r = sbi::call(
        HSM,
        0,
        other,
        tk_bench_secondary as *const () as usize,
        stack2_top(),
    );
    if r.error != 0 {
        sie_clear(1 << 1);
        return cx.na("ipi.pingpong", "hart_start-failed");
    }
    // The partner sends one IPI once it is listening.
    wait_trap(0, seen);
    let (i0, t0) = (instret(), time());
    for _ in 0..SMP_ITERS {
        let seen = rec(0).2;
        sbi::call(IPI, 0, 1, other, 0);
        wait_trap(0, seen);
    }
    let (i1, t1) = (instret(), time());
    PONG_STOP.store(1, Ordering::SeqCst);
    sbi::call(IPI, 0, 1, other, 0);
    irq_off();
    sie_clear(1 << 1);
    cx.report("ipi.pingpong", SMP_ITERS, Some(i1 - i0), t1 - t0);
    if !hart_stopped(cx, other) {
        println!("bench: ipi.pingpong: partner hart did not stop");
    }
}

fn hsm_start(cx: &Ctx, other: usize) {
    SECONDARY_MODE.store(MODE_HSM, Ordering::SeqCst);
    sie_set(1 << 1);
    let mut sum = 0u64;
    let mut n = 0u64;
    for _ in 0..SMP_ITERS {
        let seen = rec(0).2;
        let t0 = time();
        let r = sbi::call(
            HSM,
            0,
            other,
            tk_bench_secondary as *const () as usize,
            stack2_top(),
        );
        if r.error != 0 {
            break;
        }
        wait_trap(0, seen);
        irq_off();
        // SAFETY: written by the started hart before it signalled us.
        let te = unsafe { core::ptr::addr_of!(ENTRY_TIME).read_volatile() };
        sum += te.saturating_sub(t0);
        n += 1;
        if !hart_stopped(cx, other) {
            println!("bench: hsm.start: hart {other} did not stop");
            break;
        }
    }
    sie_clear(1 << 1);
    if n == 0 {
        cx.na("hsm.start", "hart_start-failed");
    } else {
        cx.report("hsm.start", n, None, sum);
    }
}

extern "C" fn secondary_main(_hartid: usize) -> ! {
    set_tp(1);
    install_bench_vector();
    let boot = BOOT_HART.load(Ordering::SeqCst);
    match SECONDARY_MODE.load(Ordering::SeqCst) {
        MODE_PONG => {
            sie_set(1 << 1);
            let mut seen = rec(1).2;
            sbi::call(IPI, 0, 1, boot, 0);
            loop {
                wait_trap(1, seen);
                seen = rec(1).2;
                if PONG_STOP.load(Ordering::SeqCst) != 0 {
                    break;
                }
                sbi::call(IPI, 0, 1, boot, 0);
            }
            irq_off();
            sie_clear(1 << 1);
        }
        _ => {
            sbi::call(IPI, 0, 1, boot, 0);
        }
    }
    sbi::call(HSM, 1, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}
