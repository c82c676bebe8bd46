//! Rivet's test guest: a bare-metal kernel with a RISC-V Linux Image header
//! that checks the SBI and H-extension behaviour a guest sees, like
//! kvm-unit-tests. It prints one `ok`/`not ok` line per check, then
//! `N passed, M failed`, and shuts down through SRST (a failure reset when
//! something failed).
//!
//! Modes, chosen by the kernel command line (`/chosen/bootargs`):
//! `mode=suite` (default) the checks; `mode=crash` jumps to unmapped memory
//! to prove the hypervisor reports and stops a crashing VM; `mode=bench`
//! micro-benchmarks (bench.rs) for `cargo xtask bench`, natively or under Rivet;
//! `mode=hostile` attacks the hypervisor (hostile.rs); `mode=rezero` checks
//! that a reboot clears the VM's memory (rezero.rs).
#![no_std]
#![no_main]

mod bench;
mod hostile;
mod rezero;
mod sbi;
mod tests;
mod trap;

use core::arch::global_asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

global_asm!(
    r#"
    .section .text.head, "ax"
    .option push
    .option norvc
    .globl _head
_head:
    j _tk_start            /* code0 */
    .word 0                /* code1 */
    .dword 0x200000        /* text_offset */
    .dword __image_size    /* image_size */
    .dword 0               /* flags */
    .word 2                /* version 0.2 */
    .word 0
    .dword 0
    .ascii "RISCV\0\0\0"
    .ascii "RSC\x05"
    .word 0
    .option pop

    .section .text
_tk_start:
    la sp, {stack} + {stack_size}
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call {main}
3:  j 3b

    .globl tk_secondary_entry
    .p2align 2
tk_secondary_entry:
    /* a0 = hartid, a1 = opaque = top of this hart's stack */
    mv sp, a1
    call {secondary}
4:  j 4b
"#,
    stack = sym STACK,
    stack_size = const STACK_SIZE,
    main = sym main,
    secondary = sym tests::secondary_main,
);

const STACK_SIZE: usize = 64 * 1024;
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
static mut STACK: Stack = Stack([0; STACK_SIZE]);

/// Console output through SBI DBCN (one call per formatted chunk).
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            let r = sbi::console_write(b);
            if r.error != 0 || r.value == 0 {
                return Err(core::fmt::Error);
            }
            b = &b[r.value.min(b.len())..];
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write;
        let _ = writeln!($crate::Console, $($arg)*);
    }};
}

pub static PASSED: AtomicUsize = AtomicUsize::new(0);
pub static FAILED: AtomicUsize = AtomicUsize::new(0);

/// Records one check.
pub fn check(name: &str, ok: bool, detail: core::fmt::Arguments) {
    let n = PASSED.load(Ordering::SeqCst) + FAILED.load(Ordering::SeqCst) + 1;
    if ok {
        PASSED.fetch_add(1, Ordering::SeqCst);
        println!("ok {n} - {name}");
    } else {
        FAILED.fetch_add(1, Ordering::SeqCst);
        println!("not ok {n} - {name}: {detail}");
    }
}

pub struct BootInfo {
    pub hartid: usize,
    pub vcpus: usize,
    pub mode: &'static str,
    pub sstc_in_dt: bool,
    /// The whole command line (`bench=...` filters benchmarks).
    pub args: &'static str,
    /// `/cpus/timebase-frequency` (Hz) for turning time ticks into ns.
    pub timebase: u64,
    /// `/chosen/rng-seed`, when the hypervisor gave one.
    pub rng_seed: Option<&'static [u8]>,
    /// First `/memory` region: (base, size).
    pub ram: (usize, usize),
}

fn boot_info(hartid: usize, dtb: usize) -> BootInfo {
    let mut info = BootInfo {
        hartid,
        vcpus: 1,
        mode: "suite",
        sstc_in_dt: false,
        args: "",
        timebase: 10_000_000,
        rng_seed: None,
        ram: (0x8000_0000, 0),
    };
    // SAFETY: the hypervisor passes a valid device tree in a1, in our RAM.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }) else {
        println!("warning: no usable device tree at {dtb:#x}");
        return info;
    };
    info.vcpus = fdt.cpus().count().max(1);
    if let Some(tb) = fdt
        .find_node("/cpus")
        .and_then(|n| n.property("timebase-frequency"))
        .and_then(|p| p.as_usize())
    {
        info.timebase = tb as u64;
    }
    if let Some(args) = fdt.chosen().bootargs() {
        // SAFETY of 'static: the DTB stays in RAM untouched for our lifetime.
        let args: &'static str = unsafe { core::mem::transmute::<&str, &'static str>(args) };
        info.args = args;
        for word in args.split_whitespace() {
            if let Some(m) = word.strip_prefix("mode=") {
                info.mode = m;
            }
        }
    }
    if let Some(r) = fdt
        .all_nodes()
        .find(|n| n.name.starts_with("memory@"))
        .and_then(|n| n.reg())
        .and_then(|mut r| r.next())
    {
        info.ram = (r.starting_address as usize, r.size.unwrap_or(0));
    }
    if let Some(p) = fdt
        .find_node("/chosen")
        .and_then(|n| n.property("rng-seed"))
    {
        // SAFETY of 'static: as for the bootargs.
        info.rng_seed = Some(unsafe { core::mem::transmute::<&[u8], &'static [u8]>(p.value) });
    }
    if let Some(cpu) = fdt.cpus().next() {
        if let Some(p) = cpu.properties().find(|p| p.name == "riscv,isa-extensions") {
            info.sstc_in_dt = p.value.split(|&b| b == 0).any(|e| e == b"sstc");
        }
    }
    info
}

extern "C" fn main(hartid: usize, dtb: usize) -> ! {
    println!("Hi!");
    trap::install();
    let info = boot_info(hartid, dtb);
    println!(
        "testkernel: hart {} of {} vCPU(s), mode={}, sstc in DT: {}",
        info.hartid, info.vcpus, info.mode, info.sstc_in_dt
    );
    if let Some(seed) = info.rng_seed {
        let b = |i: usize| seed.get(i).copied().unwrap_or(0);
        println!(
            "testkernel: rng-seed of {} bytes: {:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            seed.len(),
            b(0),
            b(1),
            b(2),
            b(3),
            b(4),
            b(5),
            b(6),
            b(7)
        );
    }
    match info.mode {
        "crash" => {
            println!("crash test: jumping to unmapped guest-physical address 0x4000_0000");
            // SAFETY: deliberately not safe: this is the crash test.
            unsafe { core::arch::asm!("jr {0}", in(reg) 0x4000_0000usize, options(noreturn)) };
        }
        "bench" => bench::run(&info),
        "hostile" => hostile::run(&info),
        "rezero" => rezero::run(info.ram, dtb),
        _ => tests::run_suite(&info),
    }
    let (p, f) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    println!("{p} passed, {f} failed");
    sbi::shutdown(f != 0 || p == 0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("testkernel panic: {info}");
    sbi::shutdown(true)
}
