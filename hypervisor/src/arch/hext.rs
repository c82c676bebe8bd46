//! H-extension instructions the assembler may not know (emitted as raw
//! words), guest-virtual loads with fault recovery, capability probes and
//! floating-point context save/restore.
//!
//! Functions in `.rivet_fixup` may fault on purpose: each puts its recovery
//! label in t6 first, and the HS trap handler resumes there.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .rivet_fixup, "ax"
    .p2align 2
    /* u64 rivet_probe_h(): 1 if hgatp is accessible (H present) */
    .globl rivet_probe_h
rivet_probe_h:
    la t6, 1f
    csrr t0, 0x680
    li a0, 1
    ret
1:  li a0, 0
    ret

    /* (u64 value, u64 ok) rivet_hlvx_hu(u64 gva): instruction-fetch-permission load through VS-stage + G-stage */
    .globl rivet_hlvx_hu
rivet_hlvx_hu:
    la t6, 1f
    mv t0, a0
    .word 0x6432c573       /* hlvx.hu a0, (t0) : funct7=0x32 rs2=3 rs1=t0(5) funct3=4 rd=a0(10) */
    li a1, 1
    ret
1:  li a0, 0
    li a1, 0
    ret

    /* (u64 value, u64 ok) rivet_hlv_d(u64 gva) */
    .globl rivet_hlv_d
rivet_hlv_d:
    la t6, 1f
    mv t0, a0
    .word 0x6c02c573       /* hlv.d a0, (t0) */
    li a1, 1
    ret
1:  li a0, 0
    li a1, 0
    ret

    /* u64 rivet_try_cbo_zero(u64 pa): 1 if cbo.zero worked (Zicboz enabled for S) */
    .globl rivet_try_cbo_zero
rivet_try_cbo_zero:
    la t6, 1f
    .word 0x0045200f       /* cbo.zero (a0) */
    li a0, 1
    ret
1:  li a0, 0
    ret

    .section .text
    .p2align 2
    /* rivet_cbo_zero_range(u64 pa, u64 end, u64 block): cbo.zero each
       block; eight blocks per iteration while eight fit, then one. */
    .globl rivet_cbo_zero_range
rivet_cbo_zero_range:
    slli t0, a2, 3         # t0 = 8 blocks
    sub t1, a1, t0         # last start of a full group of eight
1:  bltu t1, a0, 3f
    bltu a1, t1, 3f        # end < 8 blocks: t1 wrapped
    .word 0x0045200f       /* cbo.zero (a0) */
    add a0, a0, a2
    .word 0x0045200f
    add a0, a0, a2
    .word 0x0045200f
    add a0, a0, a2
    .word 0x0045200f
    add a0, a0, a2
    .word 0x0045200f
    add a0, a0, a2
    .word 0x0045200f
    add a0, a0, a2
    .word 0x0045200f
    add a0, a0, a2
    .word 0x0045200f
    add a0, a0, a2
    j 1b
3:  bgeu a0, a1, 2f
    .word 0x0045200f
    add a0, a0, a2
    j 3b
2:  ret

    .globl rivet_hfence_gvma_all
rivet_hfence_gvma_all:
    .word 0x62000073       /* hfence.gvma zero, zero */
    ret
    .globl rivet_hfence_gvma_vmid
rivet_hfence_gvma_vmid:
    .word 0x62b00073       /* hfence.gvma zero, a1 */
    ret
    .globl rivet_hfence_vvma_all
rivet_hfence_vvma_all:
    .word 0x22000073       /* hfence.vvma zero, zero (current hgatp.VMID) */
    ret
    .globl rivet_hfence_vvma_addr
rivet_hfence_vvma_addr:
    .word 0x22050073       /* hfence.vvma a0, zero */
    ret
    .globl rivet_hfence_vvma_addr_asid
rivet_hfence_vvma_addr_asid:
    .word 0x22b50073       /* hfence.vvma a0, a1 */
    ret
    .globl rivet_hfence_vvma_asid
rivet_hfence_vvma_asid:
    .word 0x22b00073       /* hfence.vvma zero, a1 */
    ret

    .globl rivet_fp_save
rivet_fp_save:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    fsd f\n, \n*8(a0)
    .endr
    frcsr t0
    sd t0, 32*8(a0)
    ret
    .globl rivet_fp_restore
rivet_fp_restore:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    fld f\n, \n*8(a0)
    .endr
    ld t0, 32*8(a0)
    fscsr t0
    ret
"#
);

#[repr(C)]
struct Pair {
    value: u64,
    ok: u64,
}

extern "C" {
    fn rivet_probe_h() -> u64;
    fn rivet_hlvx_hu(gva: u64) -> Pair;
    fn rivet_hlv_d(gva: u64) -> Pair;
    fn rivet_hfence_gvma_all();
    fn rivet_hfence_gvma_vmid(_unused: u64, vmid: u64);
    fn rivet_hfence_vvma_all();
    fn rivet_hfence_vvma_addr(gva: u64);
    fn rivet_hfence_vvma_addr_asid(gva: u64, asid: u64);
    fn rivet_hfence_vvma_asid(_unused: u64, asid: u64);
    fn rivet_try_cbo_zero(pa: u64) -> u64;
    fn rivet_cbo_zero_range(pa: u64, end: u64, block: u64);
    fn rivet_fp_save(area: *mut FpState);
    fn rivet_fp_restore(area: *const FpState);
}

/// Guest floating-point registers and fcsr.
#[repr(C)]
#[derive(Debug, Clone, Default)]
pub struct FpState {
    pub f: [u64; 32],
    pub fcsr: u64,
}

/// True when the CPU implements the H extension.
pub fn probe_h() -> bool {
    // SAFETY: the probe may fault with an illegal instruction, which the
    // trap handler recovers via the t6 label; it has no other effect.
    unsafe { rivet_probe_h() != 0 }
}

/// Reads 16 bits of guest code at guest-virtual `gva` with the guest's
/// current translation (vsatp, hgatp) and execute permission. None on fault.
pub fn hlvx_hu(gva: u64) -> Option<u16> {
    // SAFETY: a faulting access is recovered by the HS trap handler; the
    // load goes through the guest's translation, never hypervisor memory.
    let r = unsafe { rivet_hlvx_hu(gva) };
    (r.ok != 0).then_some(r.value as u16)
}

/// Reads a doubleword at guest-virtual `gva` as the guest would. None on fault.
pub fn hlv_d(gva: u64) -> Option<u64> {
    // SAFETY: as for hlvx_hu.
    let r = unsafe { rivet_hlv_d(gva) };
    (r.ok != 0).then_some(r.value)
}

/// Block size of `cbo.zero` if HS-mode may use it (Zicboz, enabled by
/// M-mode), found by zeroing one block of a scratch page; 0 otherwise.
pub fn probe_cbo_zero() -> u64 {
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    static mut SCRATCH: Page = Page([0; 4096]);
    let p = core::ptr::addr_of_mut!(SCRATCH) as *mut u8;
    // SAFETY: SCRATCH is used only here, on the boot hart, before any
    // other hart runs; the probe may fault (recovered via t6).
    unsafe {
        core::ptr::write_bytes(p, 0xff, 4096);
        if rivet_try_cbo_zero(p as u64) == 0 {
            return 0;
        }
        let zeroed = (0..4096)
            .take_while(|&i| p.add(i).read_volatile() == 0)
            .count() as u64;
        if zeroed.is_power_of_two() && zeroed >= 16 {
            zeroed
        } else {
            0
        }
    }
}

/// Zeroes `[pa, end)` with cbo.zero; both must be `block`-aligned.
///
/// # Safety
/// The range must be memory the caller owns and `block` the probed size.
pub unsafe fn cbo_zero_range(pa: u64, end: u64, block: u64) {
    // SAFETY: per the function contract.
    unsafe { rivet_cbo_zero_range(pa, end, block) }
}

pub fn hfence_gvma_all() {
    // SAFETY: a TLB fence has no memory effects beyond invalidation.
    unsafe { rivet_hfence_gvma_all() }
}

pub fn hfence_gvma_vmid(vmid: u16) {
    // SAFETY: as above.
    unsafe { rivet_hfence_gvma_vmid(0, vmid as u64) }
}

/// Fences the VS-stage translations of the VMID currently in hgatp.
pub fn hfence_vvma_all() {
    // SAFETY: as above.
    unsafe { rivet_hfence_vvma_all() }
}

pub fn hfence_vvma_addr(gva: u64) {
    // SAFETY: as above.
    unsafe { rivet_hfence_vvma_addr(gva) }
}

pub fn hfence_vvma_addr_asid(gva: u64, asid: u64) {
    // SAFETY: as above.
    unsafe { rivet_hfence_vvma_addr_asid(gva, asid) }
}

pub fn hfence_vvma_asid(asid: u64) {
    // SAFETY: as above.
    unsafe { rivet_hfence_vvma_asid(0, asid) }
}

pub fn fence_i() {
    // SAFETY: instruction-stream fence only.
    unsafe { core::arch::asm!("fence.i") }
}

pub fn fp_save(area: &mut FpState) {
    // SAFETY: area is a valid, writable FpState; sstatus.FS is kept non-Off.
    unsafe { rivet_fp_save(area) }
}

pub fn fp_restore(area: &FpState) {
    // SAFETY: area is a valid FpState.
    unsafe { rivet_fp_restore(area) }
}

pub fn wfi() {
    // SAFETY: wfi only pauses the hart until an interrupt is pending.
    unsafe { core::arch::asm!("wfi") }
}
