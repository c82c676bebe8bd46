//! Guest exits: the trap cause read after `enter_guest` returns, turned
//! into a typed [`Exit`] that the run loop dispatches on.

use crate::arch::csr::*;
use crate::arch::hext;
use crate::csr_read;
use rivet_insn::MmioAccess;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Fetch,
    Load,
    Store,
}

#[derive(Debug, Clone, Copy)]
pub enum Exit {
    /// ecall from VS-mode: an SBI call.
    Ecall,
    /// G-stage translation failed: MMIO to an emulated device, or a stray access.
    GuestPageFault {
        access: Access,
        gpa: u64,
        gva: u64,
        htinst: u64,
    },
    /// WFI, or an H/HS instruction or CSR the guest may not use.
    VirtualInstruction { insn: u64 },
    /// An interrupt for the hypervisor (timer, external, software).
    Interrupt(u64),
    /// An exception that should have been delegated: the guest is broken.
    Other { cause: u64, tval: u64, htval: u64 },
}

pub const CAUSE_ILLEGAL_INSN: u64 = 2;
pub const CAUSE_LOAD_ACCESS: u64 = 5;
pub const CAUSE_STORE_ACCESS: u64 = 7;

/// Reads the trap CSRs of the exit that just happened.
pub fn decode() -> Exit {
    let scause = csr_read!(SCAUSE);
    if scause >> 63 != 0 {
        return Exit::Interrupt(scause & !(1 << 63));
    }
    match scause {
        10 => Exit::Ecall,
        20 | 21 | 23 => {
            let access = match scause {
                20 => Access::Fetch,
                21 => Access::Load,
                _ => Access::Store,
            };
            let stval = csr_read!(STVAL);
            // The spec splits the faulting guest physical address: htval
            // holds bits 63:2, stval supplies the low two bits.
            let gpa = (csr_read!(HTVAL) << 2) | (stval & 3);
            Exit::GuestPageFault {
                access,
                gpa,
                gva: stval,
                htinst: csr_read!(HTINST),
            }
        }
        22 => Exit::VirtualInstruction {
            insn: csr_read!(STVAL),
        },
        cause => Exit::Other {
            cause,
            tval: csr_read!(STVAL),
            htval: csr_read!(HTVAL),
        },
    }
}

/// The trapping load/store: from htinst when it holds a transformed
/// instruction, else fetched from guest memory with HLVX. None when the
/// fetch itself faults.
pub fn decode_mmio(
    htinst: u64,
    pc: u64,
    gpa: u64,
    gva: u64,
) -> Option<Result<MmioAccess, rivet_insn::DecodeError>> {
    if htinst & 1 == 1 {
        return Some(rivet_insn::decode_transformed(htinst as u32));
    }
    if htinst != 0 {
        // A pseudoinstruction: the fault came from an implicit VS-stage
        // page-table access, i.e. the guest put its page tables in MMIO.
        return Some(Err(rivet_insn::DecodeError::NotLoadStore));
    }
    // Without htinst the fault may have come from the guest's own page-table
    // walk rather than from the instruction at pc; an explicit access keeps
    // the page offset of its virtual address, a PTE fetch generally does not.
    if gpa & 0xfff != gva & 0xfff {
        return Some(Err(rivet_insn::DecodeError::NotLoadStore));
    }
    let lo = hext::hlvx_hu(pc)? as u32;
    let insn = if lo & 3 == 3 {
        lo | ((hext::hlvx_hu(pc.wrapping_add(2))? as u32) << 16)
    } else {
        lo
    };
    Some(rivet_insn::decode(insn))
}

pub fn cause_name(cause: u64) -> &'static str {
    match cause {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load address misaligned",
        5 => "load access fault",
        6 => "store address misaligned",
        7 => "store access fault",
        8 => "ecall from U",
        10 => "ecall from VS",
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store page fault",
        20 => "instruction guest-page fault",
        21 => "load guest-page fault",
        22 => "virtual instruction",
        23 => "store guest-page fault",
        _ => "unknown",
    }
}
