//! The checks. Each one exercises a path through the hypervisor (SBI
//! dispatch, exception delegation and injection, MMIO emulation, timers,
//! IPIs, HSM) and states what the spec requires.

use crate::sbi::{self, *};
use crate::trap::{self, expect_trap};
use crate::{check, BootInfo};
use core::sync::atomic::{AtomicUsize, Ordering};

const UART_SCR: usize = 0x1000_0007;
const UNMAPPED: usize = 0x2000_0000;

fn time() -> u64 {
    let t: u64;
    // SAFETY: reading the time CSR (allowed by hcounteren.TM).
    unsafe { core::arch::asm!("rdtime {0}", out(reg) t) };
    t
}

fn enable_irqs(mask: usize) {
    // SAFETY: enabling our own interrupts; the trap vector is installed.
    unsafe {
        core::arch::asm!("csrs sie, {0}", in(reg) mask);
        core::arch::asm!("csrsi sstatus, 2");
    }
}

fn disable_irqs() {
    // SAFETY: as above.
    unsafe { core::arch::asm!("csrci sstatus, 2") };
}

/// Waits (with WFI, so the hypervisor's halt path is used) until `flag`
/// reaches `want` or `ticks` of time pass.
fn wait_for(flag: &AtomicUsize, want: usize, ticks: u64) -> bool {
    let end = time() + ticks;
    while flag.load(Ordering::SeqCst) < want {
        if time() > end {
            return false;
        }
        // SAFETY: wfi only waits.
        unsafe { core::arch::asm!("wfi") };
    }
    true
}

#[repr(C, align(4096))]
struct TwoPages([u8; 8192]);
static mut CROSS: TwoPages = TwoPages([0; 8192]);

pub fn run_suite(info: &BootInfo) {
    let seed = info.rng_seed.unwrap_or(&[]);
    check(
        "dt: /chosen/rng-seed holds 64 bytes, not all zero",
        seed.len() == 64 && seed.iter().any(|&b| b != 0),
        format_args!("{} bytes", seed.len()),
    );
    base();
    dbcn();
    exceptions();
    hsm_errors(info);
    srst_errors();
    timer_sbi();
    timer_sstc(info);
    ipi(info);
    rfence(info);
    mmio();
    if info.vcpus >= 2 {
        smp(info);
    }
}

fn base() {
    let v = sbi::call(BASE, 0, 0, 0, 0);
    check(
        "base: spec version is 2.0 or later",
        v.error == 0 && v.value >= 0x0200_0000,
        format_args!("{v:?}"),
    );
    let id = sbi::call(BASE, 1, 0, 0, 0);
    check(
        "base: impl id is Rivet's",
        id.error == 0 && id.value == 0x5249_5654,
        format_args!("{id:?}"),
    );
    let iv = sbi::call(BASE, 2, 0, 0, 0);
    check(
        "base: impl version call succeeds",
        iv.error == 0,
        format_args!("{iv:?}"),
    );
    for (name, eid) in [
        ("BASE", BASE),
        ("TIME", TIME),
        ("IPI", IPI),
        ("RFENCE", RFENCE),
        ("HSM", HSM),
        ("SRST", SRST),
        ("DBCN", DBCN),
    ] {
        let r = sbi::call(BASE, 3, eid, 0, 0);
        check(
            "base: probe reports implemented extension",
            r.error == 0 && r.value != 0,
            format_args!("{name}: {r:?}"),
        );
    }
    for (name, eid) in [
        ("PMU", PMU),
        ("unknown 0x0A000000", 0x0A00_0000),
        ("SUSP", 0x5355_5350),
    ] {
        let r = sbi::call(BASE, 3, eid, 0, 0);
        check(
            "base: probe reports absent extension as 0",
            r.error == 0 && r.value == 0,
            format_args!("{name}: {r:?}"),
        );
    }
    let ok = (4..=6).all(|fid| sbi::call(BASE, fid, 0, 0, 0).error == 0);
    check(
        "base: mvendorid/marchid/mimpid succeed",
        ok,
        format_args!(""),
    );
    let r = sbi::call(BASE, 99, 0, 0, 0);
    check(
        "base: unknown function is NOT_SUPPORTED",
        r.error == ERR_NOT_SUPPORTED,
        format_args!("{r:?}"),
    );
    let r = sbi::call(0x0A00_0000, 0, 0, 0, 0);
    check(
        "unknown extension is NOT_SUPPORTED",
        r.error == ERR_NOT_SUPPORTED,
        format_args!("{r:?}"),
    );
    let r = sbi::call(PMU, 0, 0, 0, 0);
    check(
        "PMU calls are NOT_SUPPORTED",
        r.error == ERR_NOT_SUPPORTED,
        format_args!("{r:?}"),
    );
}

fn dbcn() {
    let msg = b"[dbcn buffer crossing a page]\n";
    // SAFETY: exclusive use of our static buffer, single hart here.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(CROSS) };
    let start = 4096 - 10;
    buf.0[start..start + msg.len()].copy_from_slice(msg);
    let p = buf.0[start..].as_ptr() as usize;
    let r = sbi::call(DBCN, 0, msg.len(), p, 0);
    check(
        "dbcn: write of a buffer crossing a page",
        r.error == 0 && r.value == msg.len(),
        format_args!("{r:?}"),
    );
    let r = sbi::call(DBCN, 0, 16, 0x1000, 0);
    check(
        "dbcn: buffer outside RAM is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
    let r = sbi::call(DBCN, 0, usize::MAX, p, 0);
    check(
        "dbcn: enormous length is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
    let r = sbi::call(DBCN, 0, 4, usize::MAX - 1, 0);
    check(
        "dbcn: wrapping buffer is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
    let r = sbi::call(DBCN, 2, b'\n' as usize, 0, 0);
    check("dbcn: write_byte", r.error == 0, format_args!("{r:?}"));
    let r = sbi::call(DBCN, 1, 8, p, 0);
    check(
        "dbcn: read with no input returns 0 bytes",
        r.error == 0 && r.value == 0,
        format_args!("{r:?}"),
    );
    let r = sbi::legacy(0x01, b'\n' as usize);
    check("legacy console_putchar", r == 0, format_args!("{r}"));
}

fn exceptions() {
    let c = expect_trap(|| {
        // SAFETY: deliberately illegal: our own handler catches and skips it.
        unsafe { core::arch::asm!("unimp") }
    });
    check(
        "unimp is caught by the guest's own handler (illegal instruction)",
        c == Some(2),
        format_args!("{c:?}"),
    );
    let c = expect_trap(|| {
        // SAFETY: reading hstatus from VS-mode must trap; the handler skips it.
        unsafe { core::arch::asm!("csrr {0}, 0x600", out(reg) _) }
    });
    check(
        "HS CSR read from VS-mode is injected as illegal instruction",
        c == Some(2),
        format_args!("{c:?}"),
    );
    let c = expect_trap(|| {
        // SAFETY: hfence.gvma from VS-mode must trap.
        unsafe { core::arch::asm!(".word 0x62000073") }
    });
    check(
        "hfence.gvma from VS-mode is injected as illegal instruction",
        c == Some(2),
        format_args!("{c:?}"),
    );
    let c = expect_trap(|| {
        // SAFETY: a load from unmapped guest-physical memory must fault.
        unsafe { (UNMAPPED as *const u32).read_volatile() };
    });
    check(
        "load from unmapped guest memory is an access fault",
        c == Some(5),
        format_args!("{c:?}"),
    );
    let c = expect_trap(|| {
        // SAFETY: a store to unmapped guest-physical memory must fault.
        unsafe { (UNMAPPED as *mut u64).write_volatile(1) };
    });
    check(
        "store to unmapped guest memory is an access fault",
        c == Some(7),
        format_args!("{c:?}"),
    );
}

fn hsm_errors(info: &BootInfo) {
    let r = sbi::call(HSM, 2, info.hartid, 0, 0);
    check(
        "hsm: own status is STARTED",
        r.error == 0 && r.value == 0,
        format_args!("{r:?}"),
    );
    let r = sbi::call(HSM, 2, info.vcpus, 0, 0);
    check(
        "hsm: status of a nonexistent hart is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
    let r = sbi::call(HSM, 0, info.hartid, 0x8020_0000, 0);
    check(
        "hsm: starting itself is ALREADY_AVAILABLE",
        r.error == ERR_ALREADY_AVAILABLE,
        format_args!("{r:?}"),
    );
    let r = sbi::call(HSM, 0, 4096, 0x8020_0000, 0);
    check(
        "hsm: starting a nonexistent hart is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
    if info.vcpus >= 2 {
        let r = sbi::call(HSM, 0, 1, 0x1000, 0);
        check(
            "hsm: start address outside RAM is INVALID_ADDRESS",
            r.error == ERR_INVALID_ADDRESS,
            format_args!("{r:?}"),
        );
    }
}

fn srst_errors() {
    let r = sbi::call(SRST, 0, 0x10, 0, 0);
    check(
        "srst: reserved reset type is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
    let r = sbi::call(SRST, 0, 0, 0x100, 0);
    check(
        "srst: reserved reset reason is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
}

fn timer_sbi() {
    trap::TIMER_VIA_STIMECMP.store(0, Ordering::SeqCst);
    let before = trap::TIMER_IRQS.load(Ordering::SeqCst);
    let deadline = time() + 20_000;
    enable_irqs(1 << 5);
    let r = sbi::set_timer(deadline);
    let ok = wait_for(&trap::TIMER_IRQS, before + 1, 50_000_000);
    disable_irqs();
    let late = time() >= deadline;
    check(
        "time: SBI set_timer interrupt arrives after its deadline (WFI wakes)",
        r.error == 0 && ok && late,
        format_args!("{r:?} fired={ok} late={late}"),
    );
}

fn timer_sstc(info: &BootInfo) {
    // Probe: writing stimecmp traps (illegal instruction) without Sstc.
    let c = expect_trap(|| {
        // SAFETY: a probe; the handler skips the write if it traps.
        unsafe { core::arch::asm!("csrw 0x14d, {0}", in(reg) usize::MAX) };
    });
    let have = c.is_none();
    check(
        "sstc: stimecmp is accessible exactly when the DT lists sstc",
        have == info.sstc_in_dt,
        format_args!("accessible={have} dt={}", info.sstc_in_dt),
    );
    if !have {
        crate::println!("# sstc: not available in this VM, direct stimecmp test skipped");
        return;
    }
    trap::TIMER_VIA_STIMECMP.store(1, Ordering::SeqCst);
    let before = trap::TIMER_IRQS.load(Ordering::SeqCst);
    let deadline = time() + 20_000;
    enable_irqs(1 << 5);
    // SAFETY: stimecmp exists (probed above).
    unsafe { core::arch::asm!("csrw 0x14d, {0}", in(reg) deadline) };
    let ok = wait_for(&trap::TIMER_IRQS, before + 1, 50_000_000);
    disable_irqs();
    trap::TIMER_VIA_STIMECMP.store(0, Ordering::SeqCst);
    check(
        "sstc: stimecmp interrupt arrives after its deadline",
        ok && time() >= deadline,
        format_args!("fired={ok}"),
    );
}

fn ipi(info: &BootInfo) {
    let before = trap::SOFT_IRQS.load(Ordering::SeqCst);
    enable_irqs(1 << 1);
    let r = sbi::call(IPI, 0, 1, info.hartid, 0);
    let ok = wait_for(&trap::SOFT_IRQS, before + 1, 10_000_000);
    disable_irqs();
    check(
        "ipi: self IPI arrives as a supervisor software interrupt",
        r.error == 0 && ok,
        format_args!("{r:?} {ok}"),
    );
    let r = sbi::call(IPI, 0, 1 << 40, 0, 0);
    check(
        "ipi: invalid hart in mask is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
    let r = sbi::call(IPI, 0, 3, usize::MAX - 1, 0);
    check(
        "ipi: wrapping hart_mask_base is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
}

fn rfence(info: &BootInfo) {
    let r = sbi::call(RFENCE, 0, 0, usize::MAX, 0);
    check(
        "rfence: remote_fence_i to all harts",
        r.error == 0,
        format_args!("{r:?}"),
    );
    let r = sbi::call(RFENCE, 1, 1, info.hartid, 0);
    check(
        "rfence: remote_sfence_vma (full) to self",
        r.error == 0,
        format_args!("{r:?}"),
    );
    let r = sbi::call(RFENCE, 1, 1 << 50, 0, 0);
    check(
        "rfence: invalid hart in mask is INVALID_PARAM",
        r.error == ERR_INVALID_PARAM,
        format_args!("{r:?}"),
    );
}

fn mmio() {
    let scr = UART_SCR as *mut u8;
    // SAFETY: the VM's emulated 16550 scratch register.
    let back = unsafe {
        scr.write_volatile(0xa5);
        scr.read_volatile()
    };
    check(
        "mmio: UART scratch register store then load (emulated)",
        back == 0xa5,
        format_args!("{back:#x}"),
    );
    // A signed byte load must sign-extend.
    let v: isize;
    // SAFETY: as above.
    unsafe { core::arch::asm!("lb {0}, 0({1})", out(reg) v, in(reg) UART_SCR) };
    check(
        "mmio: lb sign-extends the device value",
        v == -0x5b,
        format_args!("{v}"),
    );
    // Compressed forms: c.sw / c.lw need x8..x15 registers; the PLIC
    // priority register is 32-bit.
    let out: u32;
    // SAFETY: PLIC source 1 priority register of the VM's vPLIC.
    unsafe {
        core::arch::asm!(
            "li {t}, 3",
            "c.sw {t}, 4(a2)",
            "c.lw {o}, 4(a2)",
            t = out(reg) _, o = out(reg) out,
            in("a2") 0x0c00_0000usize, options(nostack)
        )
    };
    check(
        "mmio: compressed c.sw/c.lw on the vPLIC",
        out == 3,
        format_args!("{out}"),
    );
    let c = expect_trap(|| {
        // SAFETY: an AMO on MMIO must be refused with an access fault.
        unsafe {
            core::arch::asm!("amoadd.w zero, {0}, ({1})", in(reg) 1, in(reg) 0x0c00_0004usize)
        };
    });
    check(
        "mmio: AMO on an emulated device is a store access fault",
        c == Some(7),
        format_args!("{c:?}"),
    );
}

static SECONDARY_UP: AtomicUsize = AtomicUsize::new(0);
#[repr(C, align(16))]
struct Stack2([u8; 16384]);
static mut STACK2: Stack2 = Stack2([0; 16384]);

extern "C" {
    fn tk_secondary_entry();
}

pub extern "C" fn secondary_main(hartid: usize) -> ! {
    SECONDARY_UP.store(hartid + 100, Ordering::SeqCst);
    // Tell hart 0 through an IPI, then stop.
    sbi::call(IPI, 0, 1, 0, 0);
    sbi::call(HSM, 1, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

fn smp(info: &BootInfo) {
    let top = core::ptr::addr_of!(STACK2) as usize + 16384;
    let before = trap::SOFT_IRQS.load(Ordering::SeqCst);
    enable_irqs(1 << 1);
    let r = sbi::call(HSM, 0, 1, tk_secondary_entry as *const () as usize, top);
    let ok = wait_for(&SECONDARY_UP, 101, 50_000_000);
    let ipi = wait_for(&trap::SOFT_IRQS, before + 1, 50_000_000);
    disable_irqs();
    check(
        "hsm: hart_start runs vCPU 1 with a0=hartid, a1=opaque",
        r.error == 0 && ok,
        format_args!("{r:?} up={}", SECONDARY_UP.load(Ordering::SeqCst)),
    );
    check("ipi: vCPU 1 interrupts vCPU 0", ipi, format_args!(""));
    let end = time() + 50_000_000;
    let mut st = sbi::call(HSM, 2, 1, 0, 0);
    while st.value != 1 && time() < end {
        st = sbi::call(HSM, 2, 1, 0, 0);
    }
    check(
        "hsm: vCPU 1 reaches STOPPED after hart_stop",
        st.error == 0 && st.value == 1,
        format_args!("{st:?}"),
    );
    let r = sbi::call(HSM, 0, 1, 0x1000, 0);
    check(
        "hsm: start address outside RAM is INVALID_ADDRESS (stopped hart)",
        r.error == ERR_INVALID_ADDRESS || info.vcpus < 2,
        format_args!("{r:?}"),
    );
}
