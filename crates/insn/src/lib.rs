//! Decoding of the guest load/store that trapped on an emulated MMIO region.
//!
//! This crate owns one question: given the instruction behind a guest-page
//! fault (or access fault) on a load or store, what does the hypervisor have
//! to emulate? Which direction, how many bytes, sign- or zero-extension, which
//! guest register, and by how much to advance `sepc`. The faulting address is
//! not decoded here: it comes from `htval`/`stval`.
//!
//! Two sources of the instruction are supported:
//!
//! * [`decode`]: the raw instruction read from guest memory at `sepc`: 32 bits,
//!   or a 16-bit compressed instruction in the low half when bits 1:0 != 11.
//! * [`decode_transformed`]: a nonzero value from `htinst`. Per the privileged
//!   specification (hypervisor chapter, "Transformed Instruction or
//!   Pseudoinstruction for mtinst or htinst"), a load/store is reported with
//!   its address-offset fields replaced (rs1 at 19:15 holds the offset of the
//!   faulting address from the original access address, the immediate is
//!   zero); a compressed instruction is first expanded to its 32-bit
//!   equivalent and then has bit 1 cleared, so bits 1:0 give the original
//!   length. Values with bit 0 clear are pseudoinstructions (implicit VS-stage
//!   page-table accesses) or "no information" (0), not loads/stores.
//!
//! Supported: RV64 `LB LH LW LD LBU LHU LWU SB SH SW SD`, the RV64C forms
//! `C.LW C.LD C.SW C.SD C.LWSP C.LDSP C.SWSP C.SDSP`, and the Zcb forms
//! `C.LBU C.LHU C.LH C.SB C.SH` (mandatory in RVA23; on a hart without Zcb
//! those encodings trap as illegal instructions and never reach MMIO
//! emulation, so accepting them is harmless).
#![no_std]
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

/// Access width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Byte,
    Half,
    Word,
    Double,
}

impl Width {
    /// Number of bytes accessed: 1, 2, 4 or 8.
    pub fn bytes(self) -> u8 {
        match self {
            Width::Byte => 1,
            Width::Half => 2,
            Width::Word => 4,
            Width::Double => 8,
        }
    }

    /// Mask of the low `bytes()` bytes.
    pub fn mask(self) -> u64 {
        match self {
            Width::Byte => 0xff,
            Width::Half => 0xffff,
            Width::Word => 0xffff_ffff,
            Width::Double => u64::MAX,
        }
    }

    /// Width from the `funct3` low two bits of LOAD/STORE (0 = byte ... 3 = double).
    fn from_size_bits(bits: u32) -> Width {
        match bits & 3 {
            0 => Width::Byte,
            1 => Width::Half,
            2 => Width::Word,
            _ => Width::Double,
        }
    }
}

/// What a trapped load or store asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Store (device write) rather than load.
    pub is_store: bool,
    /// Number of bytes accessed.
    pub width: Width,
    /// Loads: LB/LH/LW (and their compressed forms) sign-extend; LBU/LHU/LWU
    /// zero-extend; false for LD (nothing to extend) and for every store.
    pub sign_extend: bool,
    /// Destination register of a load (x0 is legal: the value is
    /// discarded), or source register of a store (x0 stores zero).
    pub reg: u8,
    /// Length of the instruction in bytes (2 or 4): how far `sepc` moves.
    pub len: u8,
}

impl MmioAccess {
    /// The register value for a load: the low `width` bytes of `raw` (a
    /// little-endian device value), sign- or zero-extended to 64 bits.
    pub fn extend(&self, raw: u64) -> u64 {
        let value = raw & self.width.mask();
        if !self.sign_extend {
            return value;
        }
        let unused = 64 - 8 * u32::from(self.width.bytes());
        (((value << unused) as i64) >> unused) as u64
    }

    /// The value a store writes: the low `width` bytes of the source register.
    pub fn truncate(&self, reg_value: u64) -> u64 {
        reg_value & self.width.mask()
    }
}

/// Why an instruction is not an emulatable MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a load or store (includes `htinst` values with bit 0 clear).
    NotLoadStore,
    /// A floating-point load/store: the LOAD-FP/STORE-FP major opcodes (which
    /// also hold the vector loads/stores) and C.FLD, C.FSD, C.FLDSP, C.FSDSP.
    FloatingPoint,
    /// An AMO, LR or SC (AMO major opcode).
    Atomic,
    /// A load/store encoding that is reserved: C.LWSP/C.LDSP with rd = x0,
    /// LOAD with funct3 = 7, STORE with funct3 >= 4, Zcb's reserved
    /// C.SH slot (bit 6 set).
    Reserved,
}

const OP_LOAD: u32 = 0x03;
const OP_LOAD_FP: u32 = 0x07;
const OP_STORE: u32 = 0x23;
const OP_STORE_FP: u32 = 0x27;
const OP_AMO: u32 = 0x2f;

/// Decodes a raw instruction. When `insn & 3 != 3` it is a 16-bit compressed
/// instruction in the low half (the upper half is ignored); otherwise a
/// 32-bit instruction.
pub fn decode(insn: u32) -> Result<MmioAccess, DecodeError> {
    if insn & 3 != 3 {
        decode_compressed(insn as u16)
    } else {
        decode_32(insn, 4)
    }
}

/// Decodes a nonzero `htinst` transformed instruction. Bit 1 set means the
/// original was 32 bits, clear means it was compressed (length 2). The
/// address-offset fields (rs1 position and immediate) are ignored, whatever
/// they hold. Bit 0 clear (0, or a pseudoinstruction) gives `NotLoadStore`.
pub fn decode_transformed(htinst: u32) -> Result<MmioAccess, DecodeError> {
    if htinst & 1 == 0 {
        return Err(DecodeError::NotLoadStore);
    }
    let len = if htinst & 2 != 0 { 4 } else { 2 };
    decode_32(htinst | 2, len)
}

/// Decodes a 32-bit (possibly expanded) instruction; `len` is reported as is.
fn decode_32(insn: u32, len: u8) -> Result<MmioAccess, DecodeError> {
    let funct3 = (insn >> 12) & 7;
    let rd = ((insn >> 7) & 31) as u8;
    let rs2 = ((insn >> 20) & 31) as u8;
    match insn & 0x7f {
        OP_LOAD => {
            if funct3 == 7 {
                return Err(DecodeError::Reserved);
            }
            let width = Width::from_size_bits(funct3);
            Ok(MmioAccess {
                is_store: false,
                width,
                // funct3 bit 2 = unsigned; LD has nothing to extend.
                sign_extend: funct3 & 4 == 0 && width != Width::Double,
                reg: rd,
                len,
            })
        }
        OP_STORE => {
            if funct3 >= 4 {
                return Err(DecodeError::Reserved);
            }
            Ok(store(Width::from_size_bits(funct3), rs2, len))
        }
        OP_LOAD_FP | OP_STORE_FP => Err(DecodeError::FloatingPoint),
        OP_AMO => Err(DecodeError::Atomic),
        _ => Err(DecodeError::NotLoadStore),
    }
}

fn load(width: Width, sign_extend: bool, reg: u8, len: u8) -> MmioAccess {
    MmioAccess {
        is_store: false,
        width,
        sign_extend,
        reg,
        len,
    }
}

fn store(width: Width, reg: u8, len: u8) -> MmioAccess {
    MmioAccess {
        is_store: true,
        width,
        sign_extend: false,
        reg,
        len,
    }
}

/// Decodes a 16-bit compressed instruction (RV64C plus Zcb loads/stores).
fn decode_compressed(c: u16) -> Result<MmioAccess, DecodeError> {
    let c = u32::from(c);
    let funct3 = c >> 13;
    // rd' / rs2' (bits 4:2) name x8..x15.
    let reg_p = 8 + ((c >> 2) & 7) as u8;
    // Full register fields of the stack-pointer forms.
    let rd = ((c >> 7) & 31) as u8;
    let rs2 = ((c >> 2) & 31) as u8;
    match (c & 3, funct3) {
        // Quadrant 0.
        (0, 0b010) => Ok(load(Width::Word, true, reg_p, 2)), // C.LW
        (0, 0b011) => Ok(load(Width::Double, false, reg_p, 2)), // C.LD
        (0, 0b110) => Ok(store(Width::Word, reg_p, 2)),      // C.SW
        (0, 0b111) => Ok(store(Width::Double, reg_p, 2)),    // C.SD
        (0, 0b001) | (0, 0b101) => Err(DecodeError::FloatingPoint), // C.FLD, C.FSD
        (0, 0b100) => decode_zcb(c, reg_p),
        // Quadrant 2.
        (2, 0b010) | (2, 0b011) if rd == 0 => Err(DecodeError::Reserved),
        (2, 0b010) => Ok(load(Width::Word, true, rd, 2)), // C.LWSP
        (2, 0b011) => Ok(load(Width::Double, false, rd, 2)), // C.LDSP
        (2, 0b110) => Ok(store(Width::Word, rs2, 2)),     // C.SWSP
        (2, 0b111) => Ok(store(Width::Double, rs2, 2)),   // C.SDSP
        (2, 0b001) | (2, 0b101) => Err(DecodeError::FloatingPoint), // C.FLDSP, C.FSDSP
        _ => Err(DecodeError::NotLoadStore),
    }
}

/// Quadrant 0, funct3 = 100: the Zcb byte/halfword loads and stores, which
/// are told apart by bits 12:10 and, for the halfword forms, bit 6.
fn decode_zcb(c: u32, reg_p: u8) -> Result<MmioAccess, DecodeError> {
    let bit6 = (c >> 6) & 1 != 0;
    match (c >> 10) & 7 {
        0b000 => Ok(load(Width::Byte, false, reg_p, 2)), // C.LBU
        0b001 if bit6 => Ok(load(Width::Half, true, reg_p, 2)), // C.LH
        0b001 => Ok(load(Width::Half, false, reg_p, 2)), // C.LHU
        0b010 => Ok(store(Width::Byte, reg_p, 2)),       // C.SB
        0b011 if bit6 => Err(DecodeError::Reserved),
        0b011 => Ok(store(Width::Half, reg_p, 2)), // C.SH
        _ => Err(DecodeError::NotLoadStore),
    }
}

#[cfg(test)]
mod tests;
