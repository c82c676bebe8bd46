//! `mode=hostile`: the guest attacks the hypervisor ("Isolation under
//! attack") and checks every answer. Each attack prints one `ok`/`not ok`
//! line; main.rs prints the `N passed, M failed` summary and shuts down.
//!
//! What a well-behaved hypervisor must answer:
//! * loads/stores outside RAM and the emulated devices (including where the
//!   host has devices: boot ROM, test finisher, CLINT, flash, PCIe, its own
//!   virtio-mmio): an access fault (scause 5 / 7, stval = the address)
//!   injected into this guest, never a hang, a crash of the VM or an effect
//!   on the host's devices;
//! * MMIO the devices do not define (AMOs, LR/SC, FP loads/stores, wrong
//!   widths, misaligned offsets, nonexistent vPLIC contexts, past a
//!   window's end): access faults, with the device state unchanged; page
//!   tables placed in MMIO or unmapped memory: access faults (the implicit
//!   page-table read is not the guest's load/store);
//! * virtio (the windows the DT lists): rings and buffers outside RAM, in
//!   MMIO or wrapping, descriptor loops and bad indices fail the device
//!   (DEVICE_NEEDS_RESET) without touching anything else; it works again
//!   after a reset;
//! * H-extension instructions, HS/VS/M CSRs, mret/dret: illegal
//!   instruction (2); from VU-mode too, where an ecall is the guest's (8);
//! * SBI: the documented error codes of crates/sbi for every bad argument,
//!   `NOT_SUPPORTED` (value 0) for every extension `probe` does not report
//!   and every function past the last defined one (~2500 fuzzed calls,
//!   fixed xorshift seed), nothing sent/done by a refused call, and all
//!   registers but a0/a1 (a0 alone for legacy calls) preserved.
//!
//! Instruction fetches outside RAM stop the VM by design, so they run only
//! with `fetch=1` on the command line, as the very last step (after the
//! summary line).

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sbi::{
    BASE, DBCN, ERR_ALREADY_AVAILABLE, ERR_INVALID_ADDRESS, ERR_INVALID_PARAM, ERR_NOT_SUPPORTED,
    HSM, IPI, RFENCE, SRST, TIME,
};
use crate::trap::{expect_trap, LAST_TVAL};
use crate::{check, println, BootInfo};

const RAM_BASE: usize = 0x8000_0000;
const PLIC: usize = 0x0c00_0000;
const PLIC_SIZE: usize = 0x0400_0000;
const UART: usize = 0x1000_0000;
const UART_SCR: usize = UART + 7;
const SIP_SSIP: usize = 1 << 1;

const HART_STARTED: usize = 0;
const HART_STOPPED: usize = 1;

/// What the attacks need to know about this VM.
struct Vm {
    hartid: usize,
    vcpus: usize,
    ram_end: usize,
    /// virtio-mmio windows from the DT (base, size); the rest are 0.
    virtio: [(usize, usize); 8],
}

impl Vm {
    fn virtio(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.virtio.iter().copied().filter(|&(_, s)| s != 0)
    }
    fn in_virtio(&self, a: usize) -> bool {
        self.virtio().any(|(b, s)| a >= b && a < b + s)
    }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// The first failure of an aggregated attack, for its `not ok` line.
struct Detail {
    buf: [u8; 200],
    len: usize,
    failures: usize,
}

impl Detail {
    const fn new() -> Self {
        Self {
            buf: [0; 200],
            len: 0,
            failures: 0,
        }
    }
    /// Records a failure (only the first one's text is kept).
    fn fail(&mut self, args: core::fmt::Arguments) {
        self.failures += 1;
        if self.failures == 1 {
            let _ = self.write_fmt(args);
        }
    }
    /// `cond` must hold; otherwise records `args`.
    fn expect(&mut self, cond: bool, args: core::fmt::Arguments) {
        if !cond {
            self.fail(args);
        }
    }
    fn ok(&self) -> bool {
        self.failures == 0
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
    fn report(&self, name: &str) {
        check(
            name,
            self.ok(),
            format_args!("{} ({} failure(s))", self.as_str(), self.failures),
        );
    }
}

impl Write for Detail {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// xorshift64: deterministic, so a failure can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x as usize
    }
}

fn time() -> u64 {
    let t: u64;
    // SAFETY: reading the time CSR (allowed by hcounteren.TM).
    unsafe { asm!("rdtime {0}", out(reg) t) };
    t
}

fn sip() -> usize {
    let v: usize;
    // SAFETY: reading our own pending interrupts.
    unsafe { asm!("csrr {0}, sip", out(reg) v) };
    v
}

fn clear_ssip() {
    // SAFETY: clearing our own pending software interrupt (SIE is off).
    unsafe { asm!("csrc sip, {0}", in(reg) SIP_SSIP) };
}

fn tval() -> usize {
    LAST_TVAL.load(Ordering::SeqCst)
}

/// One SBI call with all six argument registers; also returns a2..a7 as
/// they came back (the callee must preserve them).
#[derive(Debug, Clone, Copy)]
struct Full {
    error: isize,
    value: usize,
    after: [usize; 6],
}

fn call6(eid: usize, fid: usize, a: [usize; 6]) -> Full {
    let (error, value, a2, a3, a4, a5, a6, a7);
    // SAFETY: an SBI call; every register the callee may touch is an output.
    unsafe {
        asm!("ecall",
            inlateout("a0") a[0] => error, inlateout("a1") a[1] => value,
            inlateout("a2") a[2] => a2, inlateout("a3") a[3] => a3,
            inlateout("a4") a[4] => a4, inlateout("a5") a[5] => a5,
            inlateout("a6") fid => a6, inlateout("a7") eid => a7,
            options(nostack));
    }
    Full {
        error,
        value,
        after: [a2, a3, a4, a5, a6, a7],
    }
}

impl Full {
    fn preserved(&self, eid: usize, fid: usize, a: &[usize; 6]) -> bool {
        self.after == [a[2], a[3], a[4], a[5], fid, eid]
    }
}

fn call(eid: usize, fid: usize, a0: usize, a1: usize, a2: usize) -> Full {
    call6(eid, fid, [a0, a1, a2, 0, 0, 0])
}

/// Legacy call: returns (a0, a1 after the call); a1 must be untouched.
fn legacy(eid: usize, a: [usize; 4]) -> (isize, usize) {
    let (r, a1);
    // SAFETY: legacy SBI calling convention.
    unsafe {
        asm!("ecall", inlateout("a0") a[0] => r, inlateout("a1") a[1] => a1,
            in("a2") a[2], in("a3") a[3], in("a7") eid, options(nostack));
    }
    (r, a1)
}

// ---------------------------------------------------------------------------
// Loads and stores
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lb,
    Lbu,
    Lh,
    Lhu,
    Lw,
    Lwu,
    Ld,
    Sb,
    Sh,
    Sw,
    Sd,
}

impl Op {
    fn is_store(self) -> bool {
        matches!(self, Op::Sb | Op::Sh | Op::Sw | Op::Sd)
    }
    /// The access fault a hypervisor must inject for it.
    fn fault(self) -> usize {
        if self.is_store() {
            7
        } else {
            5
        }
    }
}

const LOADS: [Op; 7] = [Op::Lb, Op::Lbu, Op::Lh, Op::Lhu, Op::Lw, Op::Lwu, Op::Ld];
const STORES: [Op; 4] = [Op::Sb, Op::Sh, Op::Sw, Op::Sd];

/// Performs one access expecting a trap; returns (cause, register value).
fn access(op: Op, addr: usize, val: usize) -> (Option<usize>, usize) {
    let mut v = val;
    let c = expect_trap(|| {
        // SAFETY: a deliberately hostile access; a fault is caught by our
        // handler, which skips the instruction.
        unsafe {
            match op {
                Op::Lb => {
                    asm!("lb {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                Op::Lbu => {
                    asm!("lbu {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                Op::Lh => {
                    asm!("lh {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                Op::Lhu => {
                    asm!("lhu {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                Op::Lw => {
                    asm!("lw {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                Op::Lwu => {
                    asm!("lwu {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                Op::Ld => {
                    asm!("ld {v}, 0({a})", a = in(reg) addr, v = inout(reg) v, options(nostack))
                }
                Op::Sb => asm!("sb {v}, 0({a})", a = in(reg) addr, v = in(reg) v, options(nostack)),
                Op::Sh => asm!("sh {v}, 0({a})", a = in(reg) addr, v = in(reg) v, options(nostack)),
                Op::Sw => asm!("sw {v}, 0({a})", a = in(reg) addr, v = in(reg) v, options(nostack)),
                Op::Sd => asm!("sd {v}, 0({a})", a = in(reg) addr, v = in(reg) v, options(nostack)),
            }
        }
    });
    (c, v)
}

/// The access must fault with the right cause and stval = `addr`.
fn expect_fault(d: &mut Detail, op: Op, addr: usize, val: usize) {
    let (c, _) = access(op, addr, val);
    let t = tval();
    d.expect(
        c == Some(op.fault()) && t == addr,
        format_args!(
            "{op:?} {addr:#x}: cause {c:?} stval {t:#x}, want {}",
            op.fault()
        ),
    );
}

/// The access must not fault; returns the loaded value.
fn expect_no_fault(d: &mut Detail, op: Op, addr: usize, val: usize) -> usize {
    let (c, v) = access(op, addr, val);
    d.expect(
        c.is_none(),
        format_args!("{op:?} {addr:#x}: unexpected cause {c:?}"),
    );
    v
}

fn plic_r(off: usize) -> u32 {
    // SAFETY: a valid 32-bit vPLIC register.
    unsafe { ((PLIC + off) as *const u32).read_volatile() }
}

fn plic_w(off: usize, v: u32) {
    // SAFETY: a valid 32-bit vPLIC register.
    unsafe { ((PLIC + off) as *mut u32).write_volatile(v) }
}

fn scr_r() -> u8 {
    // SAFETY: the emulated UART's scratch register.
    unsafe { (UART_SCR as *const u8).read_volatile() }
}

fn scr_w(v: u8) {
    // SAFETY: as above.
    unsafe { (UART_SCR as *mut u8).write_volatile(v) }
}

// ---------------------------------------------------------------------------
// The attacks
// ---------------------------------------------------------------------------

pub fn run(info: &BootInfo) {
    let mut vm = Vm {
        hartid: info.hartid,
        vcpus: info.vcpus,
        ram_end: 0,
        virtio: [(0, 0); 8],
    };
    discover(info, &mut vm);
    println!(
        "# hostile: RAM {RAM_BASE:#x}..{:#x}, {} vCPU(s), hart {}",
        vm.ram_end, vm.vcpus, vm.hartid
    );
    for (b, sz) in vm.virtio() {
        // SAFETY: a virtio-mmio window the DT gave us; DeviceID is 32-bit.
        let id = unsafe { ((b + 8) as *const u32).read_volatile() };
        println!("# hostile: virtio-mmio device id {id} at {b:#x} (+{sz:#x})");
    }
    clear_ssip();

    unmapped_accesses(&vm);
    mmio(&vm);
    virtio(&vm);
    h_instructions();
    user_mode();
    sbi_fuzz();
    sbi_registers();
    hsm(&vm);
    ipi(&vm);
    rfence(&vm);
    legacy_calls(&vm);
    dbcn(&vm);
    srst();
    paging(&vm);

    let r = call(BASE, 0, 0, 0, 0);
    let alive = r.error == 0 && r.value >= 0x0200_0000;
    check(
        "hostile: BASE get_spec_version still answers after all attacks",
        alive,
        format_args!("{r:?}"),
    );
    if alive {
        println!("hostile: hypervisor still answering");
    }

    if info.args.split_whitespace().any(|w| w == "fetch=1") {
        fetch_outside_ram();
    }
}

/// RAM end and virtio-mmio windows from the device tree. The DTB holds
/// our bootargs, so it is found by scanning back from them for its
/// (8-byte aligned) header.
fn discover(info: &BootInfo, vm: &mut Vm) {
    let args = info.args.as_ptr() as usize;
    let mut p = args & !7;
    let stop = p.saturating_sub(64 * 1024).max(RAM_BASE);
    while p >= stop {
        // SAFETY: scanning our own RAM below the bootargs string.
        let magic = unsafe { (p as *const u32).read_volatile() };
        if u32::from_be(magic) == 0xd00d_feed {
            // SAFETY: a DTB header (the fdt crate validates the rest).
            if let Ok(fdt) = unsafe { fdt::Fdt::from_ptr(p as *const u8) } {
                let region = fdt
                    .find_node("/memory")
                    .and_then(|n| n.reg())
                    .and_then(|mut r| r.next());
                if let Some(r) = region {
                    if let (RAM_BASE, Some(size)) = (r.starting_address as usize, r.size) {
                        vm.ram_end = RAM_BASE + size;
                    }
                }
                let mut n = 0;
                for node in fdt.all_nodes() {
                    let virtio = node
                        .compatible()
                        .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"));
                    if !virtio || n == vm.virtio.len() {
                        continue;
                    }
                    if let Some(r) = node.reg().and_then(|mut r| r.next()) {
                        vm.virtio[n] = (r.starting_address as usize, r.size.unwrap_or(0));
                        n += 1;
                    }
                }
                if vm.ram_end != 0 {
                    return;
                }
            }
        }
        p -= 8;
    }
    // Fallback: DBCN accepts exactly the buffers inside RAM; binary search
    // for the first byte it refuses (a 1-byte read with no input is a no-op).
    println!("# hostile: no /memory in the DT, probing RAM size through DBCN");
    let (mut lo, mut hi) = (RAM_BASE, RAM_BASE + (1 << 36));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if call(DBCN, 1, 1, mid, 0).error == 0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    vm.ram_end = hi;
}

/// Attack 1: loads and stores of every width at guest-physical addresses
/// outside RAM: the holes of the QEMU `virt` map where the host has
/// devices (boot ROM, test finisher, RTC, CLINT, virtio, flash, PCIe),
/// around RAM, and far out of range.
fn unmapped_accesses(vm: &Vm) {
    let e = vm.ram_end;
    let past_virtio = vm
        .virtio()
        .map(|(b, _)| (b & !0xfff) + 0x1000)
        .max()
        .unwrap_or(0x1000_1000);
    let targets: [(usize, &str); 21] = [
        (0x0, "null"),
        (0x1000, "host boot ROM"),
        (0x10_0000, "host test finisher (poweroff)"),
        (0x10_1000, "host RTC"),
        (0x100_0000, "0x100_0000"),
        (0x200_0000, "host CLINT"),
        (0x300_0000, "host PCIe PIO"),
        (past_virtio, "past the guest's virtio-mmio windows"),
        (0x1000_8000, "host virtio-mmio (rng)"),
        (0x2000_0000, "host flash"),
        (0x3000_0000, "host PCIe ECAM"),
        (0x4000_0000, "host PCIe MMIO"),
        (RAM_BASE - 8, "just below RAM"),
        (e, "RAM end"),
        (e + (8 << 20), "RAM end + 8 MiB"),
        (e + (16 << 20) - 8, "RAM end + 16 MiB - 8"),
        (0x1_0000_0000, "0x1_0000_0000"),
        (1 << 40, "2^40"),
        (1 << 41, "2^41 (past Sv39x4)"),
        (0xffff_ffff_ffff_f000, "0xffff_ffff_ffff_f000"),
        (
            0xffff_ffff_ffff_fff8,
            "last doubleword of the address space",
        ),
    ];
    for (addr, what) in targets {
        if vm.in_virtio(addr) {
            println!("# unmapped: {addr:#x} ({what}) is a guest virtio window, skipped");
            continue;
        }
        let mut d = Detail::new();
        for op in LOADS {
            expect_fault(&mut d, op, addr, 0);
        }
        for op in STORES {
            // 0x5555 is the test finisher's "pass/poweroff" command.
            expect_fault(&mut d, op, addr, 0x5555);
        }
        let mut name = Detail::new();
        let _ = write!(
            name,
            "unmapped: lb..ld / sb..sd at {addr:#x} ({what}) are access faults"
        );
        d.report(name.as_str());
    }

    // Misaligned accesses straddling the end of RAM: the half outside RAM
    // must fault. The store writes back what is there, so a partial store
    // changes nothing.
    let mut d = Detail::new();
    let last = e - 4;
    // SAFETY: the last word of our RAM.
    let old = unsafe { (last as *const u32).read_volatile() } as usize;
    let (c, _) = access(Op::Ld, last, 0);
    d.expect(c == Some(5), format_args!("ld {last:#x}: {c:?}"));
    let (c, _) = access(Op::Sd, last, old | (0x5555 << 32));
    d.expect(c == Some(7), format_args!("sd {last:#x}: {c:?}"));
    let (c, _) = access(Op::Lw, e - 2, 0);
    d.expect(c == Some(5), format_args!("lw {:#x}: {c:?}", e - 2));
    // SAFETY: the first word of our RAM.
    let first = unsafe { (RAM_BASE as *const u32).read_volatile() } as usize;
    let (c, _) = access(Op::Ld, RAM_BASE - 4, 0);
    d.expect(c == Some(5), format_args!("ld {:#x}: {c:?}", RAM_BASE - 4));
    let (c, _) = access(Op::Sd, RAM_BASE - 4, (first << 32) | 0x5555);
    d.expect(c == Some(7), format_args!("sd {:#x}: {c:?}", RAM_BASE - 4));
    d.report("unmapped: misaligned ld/sd/lw straddling the ends of RAM fault");
}

/// Attack 6: MMIO the emulated devices do not define.
fn mmio(vm: &Vm) {
    let n = vm.vcpus;
    plic_w(4, 3); // source 1 priority
    plic_w(8, 5); // source 2 priority
    scr_w(0x5a);

    // AMOs and LR/SC.
    let mut d = Detail::new();
    for (name, addr) in [("vPLIC", PLIC + 4), ("UART", UART), ("UART MCR", UART + 4)] {
        let c = expect_trap(|| {
            // SAFETY: a hostile AMO; the fault is caught and skipped.
            unsafe {
                asm!("amoswap.w {0}, {1}, ({2})", out(reg) _, in(reg) 7, in(reg) addr, options(nostack))
            }
        });
        d.expect(
            c == Some(7) && tval() == addr,
            format_args!("amoswap.w {name}: {c:?} stval {:#x}", tval()),
        );
        let c = expect_trap(|| {
            // SAFETY: as above.
            unsafe {
                asm!("amoor.w {0}, {1}, ({2})", out(reg) _, in(reg) 0x41, in(reg) addr, options(nostack))
            }
        });
        d.expect(c == Some(7), format_args!("amoor.w {name}: {c:?}"));
    }
    for (name, addr) in [("vPLIC", PLIC + 8), ("UART", UART)] {
        let c = expect_trap(|| {
            // SAFETY: as above.
            unsafe {
                asm!("amoadd.d {0}, {1}, ({2})", out(reg) _, in(reg) 1, in(reg) addr, options(nostack))
            }
        });
        d.expect(c == Some(7), format_args!("amoadd.d {name}: {c:?}"));
    }
    d.expect(
        plic_r(4) == 3 && plic_r(8) == 5,
        format_args!("vPLIC priorities changed: {} {}", plic_r(4), plic_r(8)),
    );
    d.report("mmio: AMOs on the vPLIC and UART are store/AMO access faults");

    let mut d = Detail::new();
    for (name, addr) in [("vPLIC", PLIC + 4), ("UART", UART)] {
        let c = expect_trap(|| {
            // SAFETY: as above.
            unsafe { asm!("lr.w {0}, ({1})", out(reg) _, in(reg) addr, options(nostack)) }
        });
        d.expect(c == Some(5), format_args!("lr.w {name}: {c:?}"));
        let c = expect_trap(|| {
            // SAFETY: as above.
            unsafe { asm!("lr.d {0}, ({1})", out(reg) _, in(reg) addr & !7, options(nostack)) }
        });
        d.expect(c == Some(5), format_args!("lr.d {name}: {c:?}"));
        // With no reservation SC may fail without accessing memory (rd != 0,
        // no trap); if it does access the device it must fault.
        let mut rd: usize = 0;
        let c = expect_trap(|| {
            // SAFETY: as above.
            unsafe {
                asm!("sc.w {0}, {1}, ({2})", inout(reg) rd, in(reg) 1, in(reg) addr, options(nostack))
            }
        });
        d.expect(
            c == Some(7) || (c.is_none() && rd != 0),
            format_args!("sc.w {name}: {c:?} rd={rd}"),
        );
    }
    d.expect(
        plic_r(4) == 3,
        format_args!("vPLIC priority 1 changed: {}", plic_r(4)),
    );
    d.report("mmio: LR is a load access fault, SC faults or fails, on the vPLIC and UART");

    // Widths and alignment on the vPLIC (32-bit registers only).
    let mut d = Detail::new();
    for off in [1, 2, 3, 6] {
        expect_fault(&mut d, Op::Lw, PLIC + off, 0);
        expect_fault(&mut d, Op::Sw, PLIC + off, 7);
    }
    for op in [Op::Lb, Op::Lbu, Op::Lh, Op::Lhu, Op::Ld] {
        expect_fault(&mut d, op, PLIC + 8, 0);
    }
    expect_fault(&mut d, Op::Ld, PLIC + 4, 0);
    for op in [Op::Sb, Op::Sh, Op::Sd] {
        expect_fault(&mut d, op, PLIC + 8, 7);
    }
    d.expect(
        plic_r(4) == 3 && plic_r(8) == 5,
        format_args!("vPLIC priorities changed: {} {}", plic_r(4), plic_r(8)),
    );
    d.report(
        "mmio: vPLIC byte/half/double and misaligned word accesses fault, registers unchanged",
    );

    // Widths on the UART (byte registers only); the scratch register keeps
    // its value.
    let mut d = Detail::new();
    for op in [Op::Lh, Op::Lhu, Op::Lw, Op::Lwu, Op::Ld] {
        expect_fault(&mut d, op, UART, 0);
    }
    expect_fault(&mut d, Op::Sh, UART + 6, 0xffff);
    expect_fault(&mut d, Op::Sw, UART + 4, 0xffff_ffff);
    expect_fault(&mut d, Op::Sd, UART, 0x4141_4141_4141_4141);
    expect_fault(&mut d, Op::Lh, UART + 7, 0);
    d.expect(
        scr_r() == 0x5a,
        format_args!("UART scratch changed to {:#x}", scr_r()),
    );
    d.report("mmio: UART half/word/double accesses fault, scratch register unchanged");

    // Floating-point loads/stores on MMIO (FS must be on, or they are
    // illegal instructions before they access anything).
    // SAFETY: turns on our own FPU (sstatus.FS = Initial).
    unsafe { asm!("csrs sstatus, {0}", in(reg) 1usize << 13) };
    let mut d = Detail::new();
    let c = expect_trap(|| {
        // SAFETY: a hostile FP load from MMIO.
        unsafe { asm!("fld ft0, 0({0})", in(reg) PLIC + 8, out("ft0") _, options(nostack)) }
    });
    d.expect(c == Some(5), format_args!("fld vPLIC: {c:?}"));
    let c = expect_trap(|| {
        // SAFETY: as above.
        unsafe { asm!("flw ft0, 0({0})", in(reg) PLIC + 4, out("ft0") _, options(nostack)) }
    });
    d.expect(c == Some(5), format_args!("flw vPLIC: {c:?}"));
    let c = expect_trap(|| {
        // SAFETY: as above.
        unsafe { asm!("fsw ft0, 0({0})", in(reg) PLIC + 4, out("ft0") _, options(nostack)) }
    });
    d.expect(c == Some(7), format_args!("fsw vPLIC: {c:?}"));
    let c = expect_trap(|| {
        // SAFETY: as above.
        unsafe { asm!("fsd ft0, 0({0})", in(reg) UART, out("ft0") _, options(nostack)) }
    });
    d.expect(c == Some(7), format_args!("fsd UART: {c:?}"));
    d.expect(
        plic_r(4) == 3 && scr_r() == 0x5a,
        format_args!("device state changed"),
    );
    d.report("mmio: FP loads/stores (flw/fld/fsw/fsd) on the vPLIC and UART fault");

    // vPLIC registers of contexts this VM does not have, and the window's
    // last word: faults. In-range reserved words: read 0, writes ignored.
    let mut d = Detail::new();
    let bad = [
        0x2000 + 0x80 * n,          // enable word 0 of context n
        0x2000 + 0x80 * n + 4,      // enable word 1 of context n
        0x1f_fffc,                  // last enable word of the map
        0x20_0000 + 0x1000 * n,     // threshold of context n
        0x20_0004 + 0x1000 * n,     // claim of context n
        0x20_0000 + 0x1000 * 15871, // threshold of the last context
        PLIC_SIZE - 4,              // last word of the window
    ];
    for off in bad {
        expect_fault(&mut d, Op::Lw, PLIC + off, 0);
        expect_fault(&mut d, Op::Sw, PLIC + off, 0xffff_ffff);
    }
    d.report("mmio: vPLIC enable/threshold/claim of nonexistent contexts fault");

    let mut d = Detail::new();
    for off in [0x0, 0xffc, 0x1080, 0x1ffc, 0x20_0008, 0x20_0ffc] {
        let v = expect_no_fault(&mut d, Op::Lw, PLIC + off, 0x1234);
        d.expect(v == 0, format_args!("lw vPLIC+{off:#x} = {v:#x}, want 0"));
    }
    expect_no_fault(&mut d, Op::Sw, PLIC + 0x1000, 0xffff_ffff); // pending: read-only
    expect_no_fault(&mut d, Op::Sw, PLIC + 0x80, 7); // priority of source 32 (absent)
    let v = expect_no_fault(&mut d, Op::Lw, PLIC + 0x80, 0x1234);
    d.expect(
        v == 0,
        format_args!("absent source 32 priority reads {v:#x}"),
    );
    let v = expect_no_fault(&mut d, Op::Lw, PLIC + 0x1000, 0x1234);
    d.expect(
        v & 0x6 == 0,
        format_args!("pending word 0 = {v:#x} after a write of all ones"),
    );
    d.report("mmio: reserved in-range vPLIC words read 0 and ignore writes");

    // The UART window: offsets past the 8 registers read 0; past the
    // window's 0x100 bytes nothing is mapped.
    let mut d = Detail::new();
    for off in [8, 0x10, 0xff] {
        let v = expect_no_fault(&mut d, Op::Lbu, UART + off, 0x1234);
        d.expect(v == 0, format_args!("lbu UART+{off:#x} = {v:#x}"));
        expect_no_fault(&mut d, Op::Sb, UART + off, 0x41);
    }
    expect_fault(&mut d, Op::Lb, UART + 0x100, 0);
    expect_fault(&mut d, Op::Sb, UART + 0x100, 0x41);
    expect_fault(&mut d, Op::Lw, PLIC - 4, 0);
    expect_fault(&mut d, Op::Sw, PLIC - 4, 0);
    d.expect(
        scr_r() == 0x5a,
        format_args!("UART scratch changed to {:#x}", scr_r()),
    );
    d.report("mmio: UART window edges (0x08..0xff read 0, 0x100 faults) and below the vPLIC");
    plic_w(4, 0);
    plic_w(8, 0);
}

fn vr(base: usize, off: usize) -> u32 {
    // SAFETY: a 32-bit register of a virtio-mmio window from the DT.
    unsafe { ((base + off) as *const u32).read_volatile() }
}

fn vw(base: usize, off: usize, v: u32) {
    // SAFETY: as above.
    unsafe { ((base + off) as *mut u32).write_volatile(v) }
}

const VIRTIO_STATUS: usize = 0x70;
const VIRTIO_NEEDS_RESET: u32 = 0x40;
const VQ_SIZE: usize = 8;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;
const DESC_INDIRECT: u16 = 4;

/// One split virtqueue: descriptor table, available ring, used ring.
#[repr(C, align(4096))]
struct Vq {
    desc: [(u64, u32, u16, u16); VQ_SIZE],
    _pad: [u8; 0x200 - 16 * VQ_SIZE],
    avail: [u16; 3 + VQ_SIZE],
    _pad2: [u8; 0x200 - 2 * (3 + VQ_SIZE)],
    used_hdr: [u16; 2],
    used: [(u32, u32); VQ_SIZE],
    used_event: u16,
}

static mut VQ: Vq = Vq {
    desc: [(0, 0, 0, 0); VQ_SIZE],
    _pad: [0; 0x200 - 16 * VQ_SIZE],
    avail: [0; 3 + VQ_SIZE],
    _pad2: [0; 0x200 - 2 * (3 + VQ_SIZE)],
    used_hdr: [0; 2],
    used: [(0, 0); VQ_SIZE],
    used_event: 0,
};

/// Resets the device and drives it to DRIVER_OK with queue 0 at the given
/// ring addresses; returns the status it ends in (or why it stopped).
fn virtio_setup(base: usize, desc: usize, avail: usize, used: usize) -> Result<u32, &'static str> {
    vw(base, VIRTIO_STATUS, 0);
    vw(base, VIRTIO_STATUS, 1 | 2);
    vw(base, 0x14, 1);
    if vr(base, 0x10) & 1 == 0 {
        return Err("VERSION_1 not offered");
    }
    vw(base, 0x24, 1);
    vw(base, 0x20, 1);
    vw(base, 0x24, 0);
    vw(base, 0x20, 0);
    vw(base, VIRTIO_STATUS, 1 | 2 | 8);
    if vr(base, VIRTIO_STATUS) & 8 == 0 {
        return Err("FEATURES_OK refused");
    }
    vw(base, 0x30, 0);
    if (vr(base, 0x34) as usize) < VQ_SIZE {
        return Err("queue 0 too small");
    }
    vw(base, 0x38, VQ_SIZE as u32);
    for (off, a) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
        vw(base, off, a as u32);
        vw(base, off + 4, (a >> 32) as u32);
    }
    vw(base, 0x44, 1);
    if vr(base, 0x44) != 1 {
        return Ok(vr(base, VIRTIO_STATUS));
    }
    vw(base, VIRTIO_STATUS, 1 | 2 | 8 | 4);
    Ok(vr(base, VIRTIO_STATUS))
}

/// virtio-mmio: register widths and window edges on every device, then
/// DMA attacks on a virtio-rng (rings and buffers outside RAM, in MMIO,
/// wrapping, descriptor loops, bad indices) that must fail the device
/// (DEVICE_NEEDS_RESET), never touch anything outside our RAM, and leave
/// it usable after a reset.
fn virtio(vm: &Vm) {
    let mut rng_base = None;
    for (base, size) in vm.virtio() {
        let id = vr(base, 8);
        if id == 4 && rng_base.is_none() {
            rng_base = Some(base);
        }
        let mut d = Detail::new();
        vw(base, VIRTIO_STATUS, 0);
        for op in [Op::Lb, Op::Lbu, Op::Lh, Op::Lhu, Op::Ld] {
            expect_fault(&mut d, op, base, 0);
        }
        for op in [Op::Sb, Op::Sh, Op::Sd] {
            expect_fault(&mut d, op, base + VIRTIO_STATUS, 0xff);
        }
        expect_fault(&mut d, Op::Lw, base + 2, 0);
        expect_fault(&mut d, Op::Sw, base + VIRTIO_STATUS + 2, 0xffff_ffff);
        expect_fault(&mut d, Op::Ld, base + 0x100, 0);
        let c = expect_trap(|| {
            // SAFETY: a hostile AMO on a device register.
            unsafe {
                asm!("amoor.w {0}, {1}, ({2})", out(reg) _, in(reg) 0xff, in(reg) base + VIRTIO_STATUS, options(nostack))
            }
        });
        d.expect(c == Some(7), format_args!("amoor.w status: {c:?}"));
        let c = expect_trap(|| {
            // SAFETY: as above.
            unsafe { asm!("lr.w {0}, ({1})", out(reg) _, in(reg) base, options(nostack)) }
        });
        d.expect(c == Some(5), format_args!("lr.w magic: {c:?}"));
        for a in [base + size, base + size + 0x100, (base | 0xfff) - 3] {
            if !vm.in_virtio(a) {
                expect_fault(&mut d, Op::Lw, a, 0);
                expect_fault(&mut d, Op::Sw, a, 0xffff_ffff);
            }
        }
        let magic = vr(base, 0);
        d.expect(
            magic == 0x7472_6976 && vr(base, VIRTIO_STATUS) == 0,
            format_args!(
                "magic {magic:#x} status {:#x} after the attacks",
                vr(base, VIRTIO_STATUS)
            ),
        );
        let mut name = Detail::new();
        let _ = write!(name, "virtio: device {id} at {base:#x}: non-32-bit, misaligned, AMO/LR and out-of-window accesses fault");
        d.report(name.as_str());
    }
    let Some(base) = rng_base else {
        println!("# virtio: no virtio-rng in this VM, DMA attacks skipped");
        return;
    };

    // SAFETY: only this hart uses VQ, only here; the device writes it only
    // while we wait for it.
    let vq = unsafe { &mut *core::ptr::addr_of_mut!(VQ) };
    let desc = vq.desc.as_ptr() as usize;
    let avail = vq.avail.as_ptr() as usize;
    let used = vq.used_hdr.as_ptr() as usize;
    let e = vm.ram_end;
    plic_w(4, 3);
    scr_w(0x5a);

    // Rings outside RAM: QueueReady must not stick, the device fails.
    let mut d = Detail::new();
    for (what, dsc, av, us) in [
        ("desc crossing RAM end", e - 64, avail, used),
        ("desc in the vPLIC", PLIC, avail, used),
        ("avail in the UART", desc, UART, used),
        (
            "used at the top of the address space",
            desc,
            avail,
            usize::MAX - 0x3f,
        ),
        ("used below RAM", desc, avail, RAM_BASE - 0x40),
        ("misaligned desc", desc + 8, avail, used),
    ] {
        match virtio_setup(base, dsc, av, us) {
            Ok(st) => {
                let ready = vr(base, 0x44);
                d.expect(
                    ready == 0 && st & 4 == 0,
                    format_args!("{what}: QueueReady {ready} status {st:#x}"),
                );
            }
            Err(why) => d.fail(format_args!("{what}: set-up failed: {why}")),
        }
    }
    vw(base, VIRTIO_STATUS, 0);
    d.report("virtio: rings outside RAM or misaligned are refused (QueueReady stays 0)");

    // Buffers and chains the device must refuse.
    static mut SCRATCH: [u8; 64] = [0; 64];
    let scratch = core::ptr::addr_of_mut!(SCRATCH) as usize;
    type Case = (&'static str, [(u64, u32, u16, u16); 2], u16, u16);
    let cases: [Case; 10] = [
        (
            "buffer crossing RAM end",
            [((e - 8) as u64, 64, DESC_WRITE, 0), (0, 0, 0, 0)],
            0,
            1,
        ),
        (
            "buffer below RAM",
            [((RAM_BASE - 16) as u64, 32, DESC_WRITE, 0), (0, 0, 0, 0)],
            0,
            1,
        ),
        (
            "buffer on the vPLIC",
            [((PLIC + 4) as u64, 4, DESC_WRITE, 0), (0, 0, 0, 0)],
            0,
            1,
        ),
        (
            "buffer on the UART",
            [(UART as u64, 8, DESC_WRITE, 0), (0, 0, 0, 0)],
            0,
            1,
        ),
        (
            "buffer on the test finisher",
            [(0x10_0000, 4, DESC_WRITE, 0), (0, 0, 0, 0)],
            0,
            1,
        ),
        (
            "wrapping buffer",
            [(u64::MAX - 15, 32, DESC_WRITE, 0), (0, 0, 0, 0)],
            0,
            1,
        ),
        (
            "descriptor loop",
            [
                (scratch as u64, 16, DESC_WRITE | DESC_NEXT, 1),
                (scratch as u64, 16, DESC_WRITE | DESC_NEXT, 0),
            ],
            0,
            1,
        ),
        (
            "head index past the table",
            [(scratch as u64, 16, DESC_WRITE, 0), (0, 0, 0, 0)],
            200,
            1,
        ),
        (
            "avail idx far ahead",
            [(scratch as u64, 16, DESC_WRITE, 0), (0, 0, 0, 0)],
            0,
            1000,
        ),
        (
            "indirect not negotiated",
            [(scratch as u64, 32, DESC_INDIRECT, 0), (0, 0, 0, 0)],
            0,
            1,
        ),
    ];
    let mut d = Detail::new();
    for (what, descs, head, idx) in cases {
        *vq = Vq {
            desc: [(0, 0, 0, 0); VQ_SIZE],
            _pad: [0; 0x200 - 16 * VQ_SIZE],
            avail: [0; 3 + VQ_SIZE],
            _pad2: [0; 0x200 - 2 * (3 + VQ_SIZE)],
            used_hdr: [0; 2],
            used: [(0, 0); VQ_SIZE],
            used_event: 0,
        };
        vq.desc[0] = descs[0];
        vq.desc[1] = descs[1];
        vq.avail[2] = head;
        match virtio_setup(base, desc, avail, used) {
            Ok(st) if st & 4 != 0 => {
                vq.avail[1] = idx; // publish
                core::sync::atomic::fence(Ordering::SeqCst);
                vw(base, 0x50, 0); // QueueNotify
                let st = vr(base, VIRTIO_STATUS);
                let used_idx = vq.used_hdr[1];
                d.expect(
                    st & VIRTIO_NEEDS_RESET != 0 && used_idx == 0,
                    format_args!("{what}: status {st:#x} used idx {used_idx}"),
                );
            }
            Ok(st) => d.fail(format_args!("{what}: device not live, status {st:#x}")),
            Err(why) => d.fail(format_args!("{what}: set-up failed: {why}")),
        }
        vw(base, VIRTIO_STATUS, 0);
    }
    d.expect(
        plic_r(4) == 3 && scr_r() == 0x5a,
        format_args!(
            "device state changed: prio {} scr {:#x}",
            plic_r(4),
            scr_r()
        ),
    );
    d.report("virtio-rng: buffers outside RAM/in MMIO/wrapping, loops, bad indices fail the device (NEEDS_RESET)");

    // After all that, a reset device still serves a good request.
    *vq = Vq {
        desc: [(0, 0, 0, 0); VQ_SIZE],
        _pad: [0; 0x200 - 16 * VQ_SIZE],
        avail: [0; 3 + VQ_SIZE],
        _pad2: [0; 0x200 - 2 * (3 + VQ_SIZE)],
        used_hdr: [0; 2],
        used: [(0, 0); VQ_SIZE],
        used_event: 0,
    };
    vq.desc[0] = (scratch as u64, 64, DESC_WRITE, 0);
    let r = virtio_setup(base, desc, avail, used);
    vq.avail[1] = 1;
    core::sync::atomic::fence(Ordering::SeqCst);
    vw(base, 0x50, 0);
    let end = time() + 20_000_000;
    // SAFETY: the device writes the used ring (DMA); read it volatile.
    let used_idx = || unsafe { core::ptr::addr_of!(vq.used_hdr[1]).read_volatile() };
    while used_idx() == 0 && time() < end {
        core::hint::spin_loop();
    }
    // SAFETY: as above.
    let (id, len) = unsafe { core::ptr::addr_of!(vq.used[0]).read_volatile() };
    check(
        "virtio-rng: after a reset the device serves a request in RAM",
        r.is_ok_and(|s| s & 4 != 0) && used_idx() == 1 && id == 0 && (1..=64).contains(&len),
        format_args!("setup {r:?} used idx {} id {id} len {len}", used_idx()),
    );
    vw(base, VIRTIO_STATUS, 0);
    plic_w(4, 0);
}

/// Attack 7: H-extension instructions, HS/VS/M CSRs and M-mode returns
/// from VS-mode: illegal instruction, delivered to our own handler.
fn h_instructions() {
    static TARGET: AtomicUsize = AtomicUsize::new(0x1111);
    let t = &TARGET as *const AtomicUsize as usize;

    macro_rules! word {
        ($d:expr, $name:literal, $w:literal) => {{
            let c = expect_trap(|| {
                // SAFETY: a hypervisor instruction from VS-mode must trap;
                // a0 points at a harmless static if it does not.
                unsafe { asm!(concat!(".word ", $w), inout("a0") t => _, options(nostack)) }
            });
            $d.expect(c == Some(2), format_args!("{}: {c:?}", $name));
        }};
    }
    let mut d = Detail::new();
    word!(d, "hfence.gvma", "0x62000073");
    word!(d, "hfence.vvma", "0x22000073");
    word!(d, "hfence.vvma a0", "0x22050073");
    word!(d, "hinval.gvma", "0x66000073");
    word!(d, "hinval.vvma", "0x26000073");
    d.report("h-ext: hfence.gvma/vvma, hinval.gvma/vvma are illegal instructions");

    let mut d = Detail::new();
    word!(d, "hlv.b", "0x60054573");
    word!(d, "hlv.bu", "0x60154573");
    word!(d, "hlv.h", "0x64054573");
    word!(d, "hlv.hu", "0x64154573");
    word!(d, "hlvx.hu", "0x64354573");
    word!(d, "hlv.w", "0x68054573");
    word!(d, "hlv.wu", "0x68154573");
    word!(d, "hlvx.wu", "0x68354573");
    word!(d, "hlv.d", "0x6c054573");
    word!(d, "hsv.b", "0x62a54073");
    word!(d, "hsv.h", "0x66a54073");
    word!(d, "hsv.w", "0x6aa54073");
    word!(d, "hsv.d", "0x6ea54073");
    d.expect(
        TARGET.load(Ordering::SeqCst) == 0x1111,
        format_args!("hsv changed memory"),
    );
    d.report("h-ext: hlv.*, hlvx.*, hsv.* are illegal instructions");

    let mut d = Detail::new();
    word!(d, "mret", "0x30200073");
    word!(d, "dret", "0x7b200073");
    d.report("h-ext: mret and dret are illegal instructions");

    macro_rules! csrs {
        ($d:expr, $($csr:literal),*) => {$(
            let c = expect_trap(|| {
                // SAFETY: a CSR VS-mode may not access must trap.
                unsafe { asm!(concat!("csrr {0}, ", $csr), out(reg) _) }
            });
            $d.expect(c == Some(2), format_args!("csrr {}: {c:?}", $csr));
            let c = expect_trap(|| {
                // SAFETY: as above; all ones would wreck the hypervisor if
                // the write took effect.
                unsafe { asm!(concat!("csrw ", $csr, ", {0}"), in(reg) usize::MAX) }
            });
            $d.expect(c == Some(2), format_args!("csrw {}: {c:?}", $csr));
            let c = expect_trap(|| {
                // SAFETY: as above.
                unsafe { asm!(concat!("csrrs {0}, ", $csr, ", {1}"), out(reg) _, in(reg) 1usize) }
            });
            $d.expect(c == Some(2), format_args!("csrrs {}: {c:?}", $csr));
        )*};
    }
    let mut d = Detail::new();
    // hstatus hedeleg hideleg hie htimedelta hcounteren hgeie henvcfg
    // htval hip hvip htinst hgatp hgeip
    csrs!(
        d, "0x600", "0x602", "0x603", "0x604", "0x605", "0x606", "0x607", "0x60a", "0x643",
        "0x644", "0x645", "0x64a", "0x680", "0xe12"
    );
    d.report("h-ext: HS CSRs (hstatus..hgatp, hgeip) read/write/set are illegal instructions");

    let mut d = Detail::new();
    // vsstatus vsie vstvec vsscratch vsepc vscause vstval vsip vsatp
    csrs!(d, "0x200", "0x204", "0x205", "0x240", "0x241", "0x242", "0x243", "0x244", "0x280");
    d.report("h-ext: VS CSRs by number (0x200..0x280) are illegal instructions");

    let mut d = Detail::new();
    // mstatus misa medeleg mideleg mie mtvec mscratch mepc mcause mip
    // pmpcfg0 pmpaddr0 mcycle mhartid mvendorid
    csrs!(
        d, "0x300", "0x301", "0x302", "0x303", "0x304", "0x305", "0x340", "0x341", "0x342",
        "0x344", "0x3a0", "0x3b0", "0xb00", "0xf14", "0xf11"
    );
    d.report("h-ext: M CSRs are illegal instructions");

    // hpmcounter3 is not enabled in hcounteren; time is.
    let mut d = Detail::new();
    let c = expect_trap(|| {
        // SAFETY: may trap; the handler skips it.
        unsafe { asm!("csrr {0}, 0xc03", out(reg) _) }
    });
    d.expect(c == Some(2), format_args!("hpmcounter3: {c:?}"));
    let c = expect_trap(|| {
        // SAFETY: as above.
        unsafe { asm!("csrr {0}, time", out(reg) _) }
    });
    d.expect(c.is_none(), format_args!("time: {c:?}"));
    d.report("h-ext: hpmcounter3 is illegal, time stays readable");
}

/// Runs `$body` (asm text) in VU-mode: sret to it with SPP=0; the trap it
/// causes comes back to S-mode at ra (see trap.rs). If the body does not
/// trap, the ebreak after it does (cause 3).
macro_rules! in_user {
    ($($body:literal),*) => {
        expect_trap(|| {
            // SAFETY: drops to U-mode for a few instructions that must trap;
            // the handler resumes at label 9 in S-mode. Bare addressing lets
            // U-mode fetch our code.
            unsafe {
                asm!(
                    "la ra, 9f",
                    "la t0, 8f",
                    "csrw sepc, t0",
                    "li t1, 0x100",
                    "csrc sstatus, t1",
                    "sret",
                    ".p2align 2",
                    "8:",
                    $($body,)*
                    "ebreak",
                    "9:",
                    out("ra") _, out("t0") _, out("t1") _,
                    inout("a0") 0usize => _, inout("a1") 0usize => _,
                    in("a6") 0usize, in("a7") BASE,
                )
            }
        })
    };
}

/// VU-mode attacks: an ecall from U must reach the guest kernel, not the
/// SBI; S-mode CSRs, sret and H instructions are illegal; a U-mode WFI
/// (a virtual-instruction exception for the hypervisor) must not hang.
fn user_mode() {
    let mut d = Detail::new();
    let c = in_user!("ecall");
    d.expect(
        c == Some(8),
        format_args!("ecall from U: {c:?}, want 8 (a U-mode ecall is the guest's)"),
    );
    let c = in_user!("csrr t0, sstatus");
    d.expect(c == Some(2), format_args!("csrr sstatus from U: {c:?}"));
    let c = in_user!("csrw satp, zero");
    d.expect(c == Some(2), format_args!("csrw satp from U: {c:?}"));
    let c = in_user!("sret");
    d.expect(c == Some(2), format_args!("sret from U: {c:?}"));
    let c = in_user!(".word 0x62000073");
    d.expect(c == Some(2), format_args!("hfence.gvma from U: {c:?}"));
    let c = in_user!(".word 0x68054573");
    d.expect(c == Some(2), format_args!("hlv.w from U: {c:?}"));
    d.report("vu-mode: ecall goes to the guest (8); sret, S CSRs, H instructions are illegal");

    // WFI: arm a timer (STIE on, SIE off) so a wrongly halted vCPU wakes up
    // and the ebreak after the wfi reports it (cause 3).
    // SAFETY: enabling the timer interrupt source only (SIE stays 0).
    unsafe { asm!("csrs sie, {0}", in(reg) 1usize << 5) };
    call(TIME, 0, (time() + 200_000) as usize, 0, 0);
    let c = in_user!("wfi");
    let t = tval();
    call(TIME, 0, usize::MAX, 0, 0);
    // SAFETY: as above.
    unsafe { asm!("csrc sie, {0}", in(reg) 1usize << 5) };
    // The spec lets a U-mode WFI either raise an illegal instruction or
    // complete in bounded time (QEMU without virtualization halts until an
    // interrupt, as Rivet does for VU-mode); what must not happen is a hang
    // or anything but those two.
    println!(
        "# vu-mode: wfi answered cause {c:?} ({})",
        if c == Some(2) {
            "illegal instruction"
        } else {
            "completed like a halt"
        }
    );
    check(
        "vu-mode: wfi with a timer armed is illegal or completes, no hang",
        c == Some(2) || c == Some(3),
        format_args!("cause {c:?} stval {t:#x}"),
    );
}

/// Attack 2: every SBI extension `probe` does not report, with random
/// function IDs and arguments; and functions past the last defined one of
/// each implemented extension.
fn sbi_fuzz() {
    const IMPLEMENTED: [usize; 7] = [BASE, TIME, IPI, RFENCE, HSM, SRST, DBCN];
    let unknown_ok = |eid: usize| eid > 0x08 && !IMPLEMENTED.contains(&eid);
    let mut rng = Rng(0x5249_5654_2024_0001);
    println!("# sbi fuzz: xorshift64 seed {:#x}", rng.0);

    // (category, how many, generator)
    type Gen = fn(&mut Rng, usize) -> usize;
    let cats: [(&str, usize, Gen); 10] = [
        ("reserved legacy 0x09..0x0f", 140, |_, i| 0x09 + i % 7),
        ("small 0x11..0xff", 100, |r, _| 0x11 + r.next() % 0xef),
        ("experimental 0x08000000..", 200, |r, _| {
            0x0800_0000 | (r.next() & 0xff_ffff)
        }),
        ("vendor 0x09000000..", 300, |r, _| {
            0x0900_0000 | (r.next() & 0xff_ffff)
        }),
        ("firmware 0x0a000000..", 300, |r, _| {
            0x0a00_0000 | (r.next() & 0xff_ffff)
        }),
        ("random 32-bit", 300, |r, _| r.next() & 0xffff_ffff),
        ("random sign-extended 32-bit", 200, |r, _| {
            (r.next() as u32 | 0x8000_0000) as i32 as isize as usize
        }),
        ("random 64-bit", 200, |r, _| r.next()),
        ("implemented eid with upper bits set", 140, |r, i| {
            [BASE, TIME, IPI, RFENCE, HSM, SRST, DBCN][i % 7] | ((r.next() | 1) << 32)
        }),
        (
            "unimplemented standard (PMU SUSP CPPC NACL STA SSE FWFT DBTR MPXY)",
            90,
            |_, i| {
                [
                    0x50_4D55,
                    0x5355_5350,
                    0x4350_5043,
                    0x4E41_434C,
                    0x53_5441,
                    0x53_5345,
                    0x4657_4654,
                    0x4442_5452,
                    0x4D50_5859,
                ][i % 9]
            },
        ),
    ];
    let mut total = 0;
    for (name, count, gen) in cats {
        let mut d = Detail::new();
        let mut done = 0;
        let mut i = 0;
        while done < count {
            let eid = gen(&mut rng, i);
            i += 1;
            if !unknown_ok(eid) {
                continue;
            }
            let p = call(BASE, 3, eid, 0, 0);
            d.expect(
                p.error == 0 && p.value == 0,
                format_args!("probe {eid:#x}: {p:?}"),
            );
            let fid = if rng.next() & 1 == 0 {
                rng.next() & 0xff
            } else {
                rng.next()
            };
            let a = [
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next(),
            ];
            let r = call6(eid, fid, a);
            d.expect(
                r.error == ERR_NOT_SUPPORTED && r.value == 0,
                format_args!(
                    "eid {eid:#x} fid {fid:#x}: error {} value {:#x}",
                    r.error, r.value
                ),
            );
            d.expect(
                r.preserved(eid, fid, &a),
                format_args!("eid {eid:#x}: a2..a7 clobbered {:x?}", r.after),
            );
            done += 1;
        }
        total += done;
        let mut title = Detail::new();
        let _ = write!(
            title,
            "sbi fuzz: {count} calls to {name} eids: NOT_SUPPORTED, value 0, probe 0"
        );
        d.report(title.as_str());
    }

    // Implemented extensions, fids past the last defined one (RFENCE 3..=6
    // are the hfence functions Rivet does not offer).
    let mut d = Detail::new();
    let mut n = 0;
    for (eid, first_bad) in [
        (BASE, 7),
        (TIME, 1),
        (IPI, 1),
        (RFENCE, 3),
        (HSM, 4),
        (SRST, 1),
        (DBCN, 3),
    ] {
        for k in 0..40 {
            let fid = match k {
                0..=3 => first_bad + k,
                4 => usize::MAX,
                5 => 1 << 32,
                6 => first_bad | (1 << 32),
                _ => {
                    (first_bad + rng.next() % 0x1_0000_0000).wrapping_add(if rng.next() & 1 == 0 {
                        0
                    } else {
                        rng.next() & !0xffff_ffff
                    })
                }
            };
            let fid = if fid < first_bad { first_bad } else { fid };
            let a = [
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next(),
            ];
            let r = call6(eid, fid, a);
            d.expect(
                r.error == ERR_NOT_SUPPORTED && r.value == 0,
                format_args!("eid {eid:#x} fid {fid:#x}: {} {:#x}", r.error, r.value),
            );
            d.expect(
                r.preserved(eid, fid, &a),
                format_args!("eid {eid:#x} fid {fid:#x}: a2..a7 clobbered"),
            );
            n += 1;
        }
    }
    total += n;
    d.report("sbi fuzz: 280 calls to implemented extensions with fids past the last defined: NOT_SUPPORTED");
    println!("# sbi fuzz: {total} unsupported calls made");
}

/// SBI calls must preserve every register but a0/a1.
fn sbi_registers() {
    let mut d = Detail::new();
    let a = [0, 0, 0x2222, 0x3333, 0x4444, 0x5555];
    for (eid, fid, a0) in [
        (BASE, 0, 0),
        (BASE, 3, TIME),
        (TIME, 0, usize::MAX),
        (HSM, 2, 0),
        (DBCN, 2, b'\n' as usize),
    ] {
        let mut args = a;
        args[0] = a0;
        let r = call6(eid, fid, args);
        d.expect(
            r.error == 0 && r.preserved(eid, fid, &args),
            format_args!("eid {eid:#x} fid {fid}: {r:?}"),
        );
    }
    d.report("sbi: successful calls preserve a2..a7");
}

extern "C" {
    fn tk_hostile_secondary();
}

/// Set by the secondary stub to its a1 (opaque); it stops once we clear it.
static SECONDARY_FLAG: AtomicUsize = AtomicUsize::new(0);
const OPAQUE: usize = 0x0bad_cafe_f00d_0001;

global_asm!(
    r#"
    .section .text
    .globl tk_hostile_secondary
    .p2align 2
tk_hostile_secondary:
    la t0, {flag}
    sd a1, 0(t0)
1:  ld t1, 0(t0)
    bnez t1, 1b
    li a7, 0x48534D
    li a6, 1
    ecall
2:  j 2b
"#,
    flag = sym SECONDARY_FLAG,
);

fn wait_status(hart: usize, want: usize, ticks: u64) -> Full {
    let end = time() + ticks;
    loop {
        let r = call(HSM, 2, hart, 0, 0);
        if (r.error == 0 && r.value == want) || time() > end {
            return r;
        }
        core::hint::spin_loop();
    }
}

/// Attack 3: HSM with nonexistent harts, bad addresses, reserved suspend
/// types, and a double start.
fn hsm(vm: &Vm) {
    let good = tk_hostile_secondary as *const () as usize;
    let e = vm.ram_end;
    let n = vm.vcpus;

    let mut d = Detail::new();
    for h in [n, 64, 65, 1 << 32, 1 << 40, 1 << 63, usize::MAX] {
        let r = call(HSM, 0, h, good, 0);
        d.expect(
            r.error == ERR_INVALID_PARAM,
            format_args!("start({h:#x}): {r:?}"),
        );
    }
    d.report("hsm: hart_start of nonexistent harts is INVALID_PARAM");

    let r = call(HSM, 0, vm.hartid, good, 0);
    check(
        "hsm: hart_start of itself is ALREADY_AVAILABLE",
        r.error == ERR_ALREADY_AVAILABLE,
        format_args!("{r:?}"),
    );

    let mut d = Detail::new();
    for h in [n, 64, 1 << 32, 1 << 63, usize::MAX] {
        let r = call(HSM, 2, h, 0, 0);
        d.expect(
            r.error == ERR_INVALID_PARAM,
            format_args!("status({h:#x}): {r:?}"),
        );
    }
    d.report("hsm: hart_get_status of nonexistent harts is INVALID_PARAM");

    let mut d = Detail::new();
    for t in [
        1usize,
        2,
        0x0fff_ffff,
        0x1000_0000,
        0x7fff_ffff,
        0x8000_0001,
        0x8fff_ffff,
        0x9000_0000,
        0xffff_ffff,
        0xffff_ffff_0000_0001,
    ] {
        let r = call(HSM, 3, t, good, 0);
        d.expect(
            r.error == ERR_INVALID_PARAM,
            format_args!("suspend({t:#x}): {r:?}"),
        );
    }
    d.report("hsm: hart_suspend with reserved/platform types is INVALID_PARAM");

    let bad_addrs = [
        0,
        0x1000,
        UART,
        PLIC,
        RAM_BASE - 4,
        RAM_BASE - 2,
        e,
        e - 3,
        e - 2,
        e + 4096,
        usize::MAX,
        usize::MAX - 3,
        1 << 40,
    ];
    let mut d = Detail::new();
    for a in bad_addrs {
        let r = call(HSM, 3, 0x8000_0000, a, 0);
        d.expect(
            r.error == ERR_INVALID_ADDRESS,
            format_args!("suspend(non-retentive, {a:#x}): {r:?}"),
        );
    }
    d.report(
        "hsm: non-retentive hart_suspend with a resume address outside RAM is INVALID_ADDRESS",
    );

    if n < 2 {
        // No stopped hart: the address check applies to ourselves, where
        // ALREADY_AVAILABLE is an equally valid answer.
        let mut d = Detail::new();
        for a in bad_addrs {
            let r = call(HSM, 0, vm.hartid, a, 0);
            d.expect(
                r.error == ERR_INVALID_ADDRESS || r.error == ERR_ALREADY_AVAILABLE,
                format_args!("start(self, {a:#x}): {r:?}"),
            );
        }
        d.report("hsm: hart_start of itself at bad addresses is refused");
        println!("# hsm: 1 vCPU, stopped-hart attacks skipped");
        return;
    }
    let other = if vm.hartid == 0 { 1 } else { 0 };

    // Double start while the first is under way: hart `other` spins until
    // we release it, so it cannot have stopped in between.
    SECONDARY_FLAG.store(0, Ordering::SeqCst);
    let r1 = call(HSM, 0, other, good, OPAQUE);
    let r2 = call(HSM, 0, other, good, 0x1234);
    let end = time() + 50_000_000;
    while SECONDARY_FLAG.load(Ordering::SeqCst) == 0 && time() < end {
        core::hint::spin_loop();
    }
    let seen = SECONDARY_FLAG.load(Ordering::SeqCst);
    let st = call(HSM, 2, other, 0, 0);
    check(
        "hsm: a second hart_start while starting/started is ALREADY_AVAILABLE",
        r1.error == 0
            && r2.error == ERR_ALREADY_AVAILABLE
            && seen == OPAQUE
            && st.error == 0
            && st.value == HART_STARTED,
        format_args!("first {r1:?} second {r2:?} opaque {seen:#x} status {st:?}"),
    );
    SECONDARY_FLAG.store(0, Ordering::SeqCst);
    let st = wait_status(other, HART_STOPPED, 50_000_000);
    check(
        "hsm: the started hart stops again",
        st.error == 0 && st.value == HART_STOPPED,
        format_args!("{st:?}"),
    );

    let mut d = Detail::new();
    for a in bad_addrs {
        let r = call(HSM, 0, other, a, 0);
        d.expect(
            r.error == ERR_INVALID_ADDRESS,
            format_args!("start({other}, {a:#x}): {r:?}"),
        );
    }
    let st = call(HSM, 2, other, 0, 0);
    d.expect(
        st.error == 0 && st.value == HART_STOPPED,
        format_args!("status after: {st:?}"),
    );
    d.report("hsm: hart_start of a stopped hart at addresses outside RAM is INVALID_ADDRESS, hart stays STOPPED");
}

/// Attack 4a: IPIs with huge masks and bases. A refused call must send
/// nothing (our own SSIP stays clear).
fn ipi(vm: &Vm) {
    let n = vm.vcpus;
    let me = vm.hartid;
    clear_ssip();
    let mut d = Detail::new();
    let invalid: [(usize, usize); 11] = [
        (usize::MAX, 0),
        (1 | (1 << n.min(63)), 0),
        ((1 << me) | (1 << 63), 0),
        (1, n),
        (1, 64),
        (1, 1 << 32),
        (1, usize::MAX - 1),
        (2, usize::MAX - 1),
        (4, usize::MAX - 1),
        (1 << 63, usize::MAX - 63),
        (usize::MAX, usize::MAX - 63),
    ];
    for (mask, base) in invalid {
        let r = call(IPI, 0, mask, base, 0);
        d.expect(
            r.error == ERR_INVALID_PARAM,
            format_args!("send_ipi({mask:#x}, {base:#x}): {r:?}"),
        );
        let s = sip();
        d.expect(
            s & SIP_SSIP == 0,
            format_args!("send_ipi({mask:#x}, {base:#x}) was refused but sent (sip {s:#x})"),
        );
        clear_ssip();
    }
    d.report("ipi: invalid/wrapping hart masks and bases are INVALID_PARAM and send nothing");

    let mut d = Detail::new();
    for base in [0, 12345, 1 << 40, usize::MAX - 1] {
        let r = call(IPI, 0, 0, base, 0);
        d.expect(
            r.error == 0 && sip() & SIP_SSIP == 0,
            format_args!("send_ipi(0, {base:#x}): {r:?} sip {:#x}", sip()),
        );
    }
    d.report("ipi: an empty mask with any base succeeds and sends nothing");

    let mut d = Detail::new();
    for mask in [0, 1, usize::MAX] {
        let r = call(IPI, 0, mask, usize::MAX, 0);
        let s = sip();
        d.expect(
            r.error == 0 && s & SIP_SSIP != 0,
            format_args!("send_ipi({mask:#x}, -1): {r:?} sip {s:#x}"),
        );
        clear_ssip();
    }
    let r = call(IPI, 0, usize::MAX >> (64 - n), 0, 0);
    d.expect(
        r.error == 0 && sip() & SIP_SSIP != 0,
        format_args!("send_ipi(all {n} bits, 0): {r:?}"),
    );
    clear_ssip();
    d.report("ipi: base -1 (all harts) with any mask, and the exact all-harts mask, succeed");
}

/// Attack 4b: remote fences with bad masks, wrapping ranges, huge ASIDs.
fn rfence(vm: &Vm) {
    let n = vm.vcpus;
    let all = usize::MAX;
    let mut d = Detail::new();
    for (mask, base) in [(usize::MAX, 0), (1, n), (1, usize::MAX - 1), (1 << 63, 1)] {
        for fid in 0..3 {
            let r = call6(RFENCE, fid, [mask, base, 0, 0, 0, 0]);
            d.expect(
                r.error == ERR_INVALID_PARAM,
                format_args!("fid {fid} mask {mask:#x} base {base:#x}: {r:?}"),
            );
        }
    }
    // The hart list is checked before the range and the ASID.
    let r = call6(
        RFENCE,
        2,
        [usize::MAX, 0, usize::MAX - 4095, 8192, 1 << 20, 0],
    );
    d.expect(
        r.error == ERR_INVALID_PARAM,
        format_args!("bad mask + bad range + bad asid: {r:?}"),
    );
    d.report("rfence: invalid hart masks are INVALID_PARAM");

    let mut d = Detail::new();
    for (start, size) in [
        (usize::MAX - 4095, 8192),
        (usize::MAX, 2),
        (3, usize::MAX - 1),
        (1 << 63, 1 << 63 | 1),
        (usize::MAX - 4095, usize::MAX - 1),
    ] {
        for fid in [1, 2] {
            let r = call6(RFENCE, fid, [0, all, start, size, 1, 0]);
            d.expect(
                r.error == ERR_INVALID_ADDRESS,
                format_args!("fid {fid} [{start:#x} +{size:#x}): {r:?}"),
            );
        }
    }
    d.report("rfence: ranges wrapping past 2^64 are INVALID_ADDRESS");

    let mut d = Detail::new();
    for (start, size) in [
        (0, 0),
        (5, 0),
        (0, usize::MAX),
        (0x1234, usize::MAX),
        (usize::MAX - 4095, 4096),
        (usize::MAX, 1),
        (1, usize::MAX - 1),
        (RAM_BASE, 64 * 4096),
        (RAM_BASE + 1, 65 * 4096),
        (0, 1 << 62),
    ] {
        for fid in [1, 2] {
            let r = call6(RFENCE, fid, [0, all, start, size, 0xffff, 0]);
            d.expect(
                r.error == 0,
                format_args!("fid {fid} [{start:#x} +{size:#x}): {r:?}"),
            );
        }
    }
    let r = call6(RFENCE, 0, [0, all, 0, 0, 0, 0]);
    d.expect(r.error == 0, format_args!("fence.i all: {r:?}"));
    d.report("rfence: full flushes (size -1, 0/0) and ranges ending at 2^64 succeed");

    let mut d = Detail::new();
    for asid in [0x1_0000, 0x1_ffff, 1 << 32, 1 << 63, usize::MAX] {
        let r = call6(RFENCE, 2, [0, all, 0, 0, asid, 0]);
        d.expect(
            r.error == ERR_INVALID_PARAM,
            format_args!("asid {asid:#x}: {r:?}"),
        );
    }
    // ASID is checked before the range.
    let r = call6(RFENCE, 2, [0, all, usize::MAX - 4095, 8192, 1 << 16, 0]);
    d.expect(
        r.error == ERR_INVALID_PARAM,
        format_args!("bad asid + bad range: {r:?}"),
    );
    d.report("rfence: ASIDs above 0xFFFF are INVALID_PARAM");

    let mut d = Detail::new();
    for fid in 3..=6 {
        let r = call6(RFENCE, fid, [0, all, 0, 0, 0, 0]);
        d.expect(
            r.error == ERR_NOT_SUPPORTED,
            format_args!("fid {fid}: {r:?}"),
        );
    }
    d.report("rfence: remote_hfence_* (fids 3..6) are NOT_SUPPORTED");

    if n >= 2 {
        // Fences aimed at a stopped vCPU must not wait for it.
        let other = if vm.hartid == 0 { 1 } else { 0 };
        let mut d = Detail::new();
        for fid in 0..3 {
            let r = call6(RFENCE, fid, [1 << other, 0, 0, 0, 0, 0]);
            d.expect(
                r.error == 0,
                format_args!("fid {fid} to stopped hart {other}: {r:?}"),
            );
        }
        d.report("rfence: fences to a stopped vCPU return");
    }
}

/// Legacy v0.1 calls with hostile hart-mask pointers: the hypervisor
/// reads them with HLV, which must not take it down.
fn legacy_calls(vm: &Vm) {
    static MASKS: [AtomicUsize; 4] = [
        AtomicUsize::new(usize::MAX),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let e = vm.ram_end;
    clear_ssip();
    let mut d = Detail::new();
    for p in [
        0x2000_0000,
        UART,
        PLIC + 4,
        0x10_0000,
        e,
        e - 4,
        RAM_BASE - 8,
        1 << 41,
        usize::MAX - 7,
        usize::MAX - 3,
    ] {
        for eid in [4, 5, 6, 7] {
            let (r, a1) = legacy(eid, [p, 0x7777, 0, 0]);
            d.expect(
                r == ERR_INVALID_ADDRESS && a1 == 0x7777,
                format_args!("legacy {eid:#x} mask@{p:#x}: {r} a1 {a1:#x}"),
            );
        }
    }
    d.expect(sip() & SIP_SSIP == 0, format_args!("an IPI was sent"));
    d.report("legacy: hart-mask pointers outside RAM (and into MMIO) are INVALID_ADDRESS");

    let mut d = Detail::new();
    let too_big = &MASKS[0] as *const AtomicUsize as usize;
    MASKS[1].store(1 << vm.vcpus.min(63), Ordering::SeqCst);
    let beyond = &MASKS[1] as *const AtomicUsize as usize;
    for p in [too_big, beyond] {
        let (r, a1) = legacy(4, [p, 0x7777, 0, 0]);
        d.expect(
            r == ERR_INVALID_PARAM && a1 == 0x7777,
            format_args!(
                "send_ipi mask {:#x}: {r}",
                // SAFETY: reading back our own static.
                unsafe { (p as *const usize).read_volatile() }
            ),
        );
    }
    d.expect(sip() & SIP_SSIP == 0, format_args!("an IPI was sent"));
    // Misaligned pointer: either read (mask 0: nothing to do) or refused.
    MASKS[2].store(0, Ordering::SeqCst);
    MASKS[3].store(0, Ordering::SeqCst);
    let mis = &MASKS[2] as *const AtomicUsize as usize + 3;
    let (r, a1) = legacy(4, [mis, 0x7777, 0, 0]);
    d.expect(
        (r == 0 || r == ERR_INVALID_ADDRESS) && a1 == 0x7777,
        format_args!("misaligned mask pointer: {r}"),
    );
    println!("# legacy: misaligned hart-mask pointer answered {r}");
    d.report(
        "legacy: masks naming nonexistent harts are INVALID_PARAM; misaligned pointers survive",
    );

    let mut d = Detail::new();
    let (r, a1) = legacy(6, [0, 0x7777, usize::MAX - 4095, 8192]);
    d.expect(
        r == ERR_INVALID_ADDRESS && a1 == 0x7777,
        format_args!("sfence_vma wrapping: {r}"),
    );
    let (r, _) = legacy(6, [0, usize::MAX - 4095, 8192, 0]);
    d.expect(
        r == ERR_INVALID_ADDRESS,
        format_args!("sfence_vma wrapping (start in a1): {r}"),
    );
    let (r, _) = legacy(7, [0, 0, 0, 0x1_0000]);
    d.expect(
        r == ERR_INVALID_PARAM,
        format_args!("sfence_vma_asid asid 0x10000: {r}"),
    );
    let (r, _) = legacy(7, [0, 0, 0, usize::MAX]);
    d.expect(
        r == ERR_INVALID_PARAM,
        format_args!("sfence_vma_asid asid -1: {r}"),
    );
    let (r, a1) = legacy(5, [0, 0x7777, 0, 0]);
    d.expect(
        r == 0 && a1 == 0x7777,
        format_args!("remote_fence_i all: {r} a1 {a1:#x}"),
    );
    let (r, a1) = legacy(3, [0, 0x7777, 0, 0]);
    d.expect(
        (r == 0 || r == 1) && a1 == 0x7777,
        format_args!("clear_ipi: {r} a1 {a1:#x}"),
    );
    let (r, a1) = legacy(0, [usize::MAX, 0x7777, 0, 0]);
    d.expect(
        r == 0 && a1 == 0x7777,
        format_args!("set_timer(-1): {r} a1 {a1:#x}"),
    );
    d.report("legacy: bad fence ranges/ASIDs refused; a1 is never written");
}

/// Attack 5: DBCN with buffers that wrap, leave RAM or lie in MMIO.
fn dbcn(vm: &Vm) {
    #[repr(C, align(64))]
    struct Buf([u8; 5000]);
    static mut BUF: Buf = Buf([0; 5000]);
    // SAFETY: only this hart uses BUF, only here.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(BUF) };
    let p = buf.0.as_ptr() as usize;
    let e = vm.ram_end;
    let size = e - RAM_BASE;

    let mut d = Detail::new();
    let bad: [(usize, usize, usize); 17] = [
        (16, usize::MAX - 7, 0),
        (8, usize::MAX, 0),
        (24, e - 8, 0),
        (1, e, 0),
        (2, RAM_BASE - 1, 0),
        (usize::MAX, RAM_BASE, 0),
        (1 << 63, RAM_BASE, 0),
        (size + 1, RAM_BASE, 0),
        (usize::MAX, p, 0),
        (4, p, 1),
        (4, p, usize::MAX),
        (0, p, 1),
        (1, UART, 0),
        (4, PLIC + 4, 0),
        (16, 0x10_0000, 0),
        (8, 0x2000_0000, 0),
        (usize::MAX - p + 1, p, 0),
    ];
    for (n, lo, hi) in bad {
        for fid in [0, 1] {
            let r = call(DBCN, fid, n, lo, hi);
            d.expect(
                r.error == ERR_INVALID_PARAM && r.value == 0,
                format_args!("fid {fid} ({n:#x}, {lo:#x}, {hi:#x}): {r:?}"),
            );
        }
    }
    d.report("dbcn: wrapping, out-of-RAM, MMIO, enormous and base_addr_hi != 0 buffers are INVALID_PARAM");

    let mut d = Detail::new();
    for lo in [0, 0x2000_0000, usize::MAX] {
        let r = call(DBCN, 0, 0, lo, 0);
        d.expect(
            r.error == 0 && r.value == 0,
            format_args!("write(0, {lo:#x}): {r:?}"),
        );
    }
    buf.0[..16].fill(0xaa);
    let r = call(DBCN, 1, 16, p, 0);
    d.expect(
        r.error == 0 && r.value == 0 && buf.0[..16].iter().all(|&b| b == 0xaa),
        format_args!("read into RAM: {r:?}"),
    );
    let r = call(DBCN, 1, 1, e - 1, 0);
    d.expect(
        r.error == 0 && r.value == 0,
        format_args!("read(1, last RAM byte): {r:?}"),
    );
    let r = call(DBCN, 2, 0xffff_ff0a, 0, 0);
    d.expect(r.error == 0, format_args!("write_byte(0xffffff0a): {r:?}"));
    d.report("dbcn: zero-length buffers anywhere, a read into RAM, the last RAM byte are fine");

    // A valid buffer larger than one call moves: a partial write, not an
    // error. It prints lines of `#` comments.
    for (i, b) in buf.0.iter_mut().enumerate() {
        *b = match i % 128 {
            0 => b'#',
            127 => b'\n',
            _ => b' ',
        };
    }
    let r = call(DBCN, 0, buf.0.len(), p, 0);
    if !r.value.is_multiple_of(128) {
        println!();
    }
    check(
        "dbcn: an oversized valid write is partial (1..len bytes), not an error",
        r.error == 0 && r.value >= 1 && r.value <= buf.0.len(),
        format_args!("{r:?}"),
    );
}

/// SRST with reserved types/reasons: refused, and never a partial reset.
fn srst() {
    let mut d = Detail::new();
    for (t, reason) in [
        (3, 0),
        (0xefff_ffff, 0),
        (0xf000_0000, 0),
        (0xffff_ffff, 0),
        (0, 2),
        (0, 0xdfff_ffff),
        (1, 0x1000),
        (2, 0xdfff_ffff),
        (3, 0xe000_0000),
    ] {
        let r = call(SRST, 0, t, reason, 0);
        d.expect(
            r.error == ERR_INVALID_PARAM,
            format_args!("reset({t:#x}, {reason:#x}): {r:?}"),
        );
    }
    d.report(
        "srst: reserved/vendor types and reserved reasons are INVALID_PARAM (VM keeps running)",
    );
}

/// Sv39 page tables whose walks hit memory the hypervisor must not
/// emulate: the implicit page-table read of a load/store is not the
/// load/store itself, so it must fault (not read the vPLIC for us).
fn paging(vm: &Vm) {
    #[repr(C, align(4096))]
    struct Pt([usize; 512]);
    static mut ROOT: Pt = Pt([0; 512]);
    // SAFETY: only this hart uses ROOT, only here.
    let root = unsafe { &mut *core::ptr::addr_of_mut!(ROOT) };
    const V: usize = 1;
    const RWX_AD: usize = 0b1100_1110; // R W X, A D
    let leaf = |pa: usize| ((pa >> 12) << 10) | V | RWX_AD;
    let table = |pa: usize| ((pa >> 12) << 10) | V;
    // VA 0..1 GiB: a next-level table "inside" the vPLIC; VA 1..2 GiB: a
    // table in unmapped guest-physical memory; RAM identity mapped with
    // gigapages.
    root.0[0] = table(PLIC);
    root.0[1] = table(0x2000_0000);
    let mut gb = RAM_BASE;
    while gb < vm.ram_end && gb >> 30 < 512 {
        root.0[gb >> 30] = leaf(gb);
        gb += 1 << 30;
    }
    plic_w(8, 5); // source 2 priority: what a wrong emulation would return
    let satp = (8usize << 60) | (root.0.as_ptr() as usize >> 12);
    // VA 0x20_0000: VPN[2]=0, VPN[1]=1, so its level-1 PTE is at vPLIC+8.
    let va_plic = 0x20_0000usize;
    let va_unmapped = 0x4000_0000usize;

    let mut res: [(Option<usize>, usize, usize); 4] = [(None, 0, 0); 4];
    // SAFETY: the tables identity-map all of RAM (code, data, stack), so
    // nothing but the attacked accesses changes meaning; satp is restored.
    unsafe {
        asm!("csrw satp, {0}", "sfence.vma", in(reg) satp);
    }
    for (i, (op, va)) in [
        (Op::Lw, va_plic),
        (Op::Sw, va_plic),
        (Op::Ld, va_unmapped),
        (Op::Sd, va_unmapped),
    ]
    .into_iter()
    .enumerate()
    {
        let (c, v) = access(op, va, 0x6);
        res[i] = (c, v, tval());
    }
    // SAFETY: back to bare addressing.
    unsafe {
        asm!("csrw satp, zero", "sfence.vma");
    }
    let mut d = Detail::new();
    let want = [5, 7, 5, 7];
    let names = [
        "lw via PTE in vPLIC",
        "sw via PTE in vPLIC",
        "ld via PTE in unmapped GPA",
        "sd via PTE in unmapped GPA",
    ];
    let vas = [va_plic, va_plic, va_unmapped, va_unmapped];
    for i in 0..4 {
        let (c, v, t) = res[i];
        d.expect(
            c == Some(want[i]) && t == vas[i],
            format_args!(
                "{}: cause {c:?} stval {t:#x} value {v:#x}, want {}",
                names[i], want[i]
            ),
        );
    }
    d.expect(
        plic_r(8) == 5,
        format_args!("vPLIC source 2 priority changed to {}", plic_r(8)),
    );
    d.report("paging: loads/stores whose page-table walk hits the vPLIC or unmapped memory are access faults");
    plic_w(8, 0);
}

/// Optional (`fetch=1`), last: jump outside RAM. By design the hypervisor
/// stops the VM here (an instruction guest-page fault), so the summary is
/// printed first; if we get control back instead, that is reported.
fn fetch_outside_ram() {
    let (p, f) = (
        crate::PASSED.load(Ordering::SeqCst),
        crate::FAILED.load(Ordering::SeqCst),
    );
    println!("{p} passed, {f} failed");
    println!(
        "# fetch=1: jumping to guest-physical 0x4000_0000; the hypervisor should stop this VM now"
    );
    let c = expect_trap(|| {
        // SAFETY: deliberately jumps to unmapped memory; if a fault comes back
        // to us, the handler resumes at ra (the instruction after the jalr).
        unsafe { asm!("jalr ra, 0({0})", in(reg) 0x4000_0000usize, out("ra") _) }
    });
    check(
        "fetch: jumping outside RAM stops the VM (control came back instead)",
        false,
        format_args!("cause {c:?}"),
    );
}
