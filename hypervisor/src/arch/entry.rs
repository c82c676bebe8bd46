//! Boot entry: OpenSBI jumps to `_start` in S-mode (HS when H is present)
//! with a0 = hartid and a1 = the host device tree.

use core::arch::global_asm;

/// Per-hart stack size.
pub const STACK_SIZE: usize = 64 * 1024;
/// Harts the hypervisor has stacks for.
pub const MAX_HARTS: usize = 8;

#[repr(C, align(4096))]
pub struct Stacks(pub [[u8; STACK_SIZE]; MAX_HARTS]);

#[link_section = ".stacks"]
#[no_mangle]
pub static mut RIVET_STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_HARTS]);

global_asm!(
    r#"
    .section .text.entry
    .globl _start
_start:
    csrw sie, zero
    csrw sscratch, zero
    /* boot hart: stack slot 0 */
    la sp, RIVET_STACKS
    li t0, {stack_size}
    add sp, sp, t0
    /* clear .bss */
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call {main}
3:  wfi
    j 3b

    /* secondary harts, started through SBI HSM: a0 = hartid, a1 = slot */
    .globl _secondary_start
_secondary_start:
    csrw sie, zero
    csrw sscratch, zero
    la sp, RIVET_STACKS
    addi t0, a1, 1
    li t1, {stack_size}
    mul t0, t0, t1
    add sp, sp, t0
    call {secondary}
4:  wfi
    j 4b
"#,
    stack_size = const STACK_SIZE,
    main = sym crate::rust_main,
    secondary = sym crate::rust_secondary,
);

extern "C" {
    fn _secondary_start();
}

/// Physical entry point for secondary harts.
pub fn secondary_entry() -> u64 {
    _secondary_start as *const () as u64
}

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical range of the hypervisor image (code, data, bss, stacks).
pub fn image_range() -> (u64, u64) {
    // SAFETY: only the addresses of linker-provided symbols are taken.
    unsafe {
        (
            &__image_start as *const u8 as u64,
            &__image_end as *const u8 as u64,
        )
    }
}
