#![allow(clippy::unwrap_used, clippy::expect_used)]

extern crate std;

use super::*;
use std::format;
use std::vec::Vec;

// ---------------------------------------------------------------------------
// Test-only assembler, written from the RV64GC encoding tables.
// ---------------------------------------------------------------------------

/// I-type: imm[11:0] | rs1 | funct3 | rd | opcode.
fn enc_i(opcode: u32, funct3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}

/// S-type: imm[11:5] | rs2 | rs1 | funct3 | imm[4:0] | opcode.
fn enc_s(opcode: u32, funct3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    let imm = imm as u32 & 0xfff;
    ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | ((imm & 0x1f) << 7) | opcode
}

/// R-type AMO: funct5 | aq | rl | rs2 | rs1 | funct3 | rd | 0101111.
fn enc_amo(funct5: u32, aq: u32, rl: u32, rs2: u32, rs1: u32, funct3: u32, rd: u32) -> u32 {
    (funct5 << 27)
        | (aq << 26)
        | (rl << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (funct3 << 12)
        | (rd << 7)
        | 0x2f
}

fn bit(v: u32, n: u32) -> u32 {
    (v >> n) & 1
}
fn bits(v: u32, hi: u32, lo: u32) -> u32 {
    (v >> lo) & ((1 << (hi - lo + 1)) - 1)
}

/// CL/CS format with a word offset: funct3 | uimm[5:3] | rs1' | uimm[2|6] | rd'/rs2' | 00.
fn enc_cl_w(funct3: u32, rdp: u32, rs1p: u32, uimm: u32) -> u32 {
    assert!(uimm.is_multiple_of(4) && uimm < 128 && rdp < 8 && rs1p < 8);
    (funct3 << 13)
        | (bits(uimm, 5, 3) << 10)
        | (rs1p << 7)
        | (bit(uimm, 2) << 6)
        | (bit(uimm, 6) << 5)
        | (rdp << 2)
}

/// CL/CS format with a doubleword offset: funct3 | uimm[5:3] | rs1' | uimm[7:6] | rd'/rs2' | 00.
fn enc_cl_d(funct3: u32, rdp: u32, rs1p: u32, uimm: u32) -> u32 {
    assert!(uimm.is_multiple_of(8) && uimm < 256 && rdp < 8 && rs1p < 8);
    (funct3 << 13) | (bits(uimm, 5, 3) << 10) | (rs1p << 7) | (bits(uimm, 7, 6) << 5) | (rdp << 2)
}

/// C.LWSP: 010 | uimm[5] | rd | uimm[4:2|7:6] | 10.
fn enc_lwsp(funct3: u32, rd: u32, uimm: u32) -> u32 {
    assert!(uimm.is_multiple_of(4) && uimm < 256 && rd < 32);
    (funct3 << 13)
        | (bit(uimm, 5) << 12)
        | (rd << 7)
        | (bits(uimm, 4, 2) << 4)
        | (bits(uimm, 7, 6) << 2)
        | 0b10
}

/// C.LDSP / C.FLDSP: funct3 | uimm[5] | rd | uimm[4:3|8:6] | 10.
fn enc_ldsp(funct3: u32, rd: u32, uimm: u32) -> u32 {
    assert!(uimm.is_multiple_of(8) && uimm < 512 && rd < 32);
    (funct3 << 13)
        | (bit(uimm, 5) << 12)
        | (rd << 7)
        | (bits(uimm, 4, 3) << 5)
        | (bits(uimm, 8, 6) << 2)
        | 0b10
}

/// C.SWSP: 110 | uimm[5:2|7:6] | rs2 | 10.
fn enc_swsp(funct3: u32, rs2: u32, uimm: u32) -> u32 {
    assert!(uimm.is_multiple_of(4) && uimm < 256 && rs2 < 32);
    (funct3 << 13) | (bits(uimm, 5, 2) << 9) | (bits(uimm, 7, 6) << 7) | (rs2 << 2) | 0b10
}

/// C.SDSP / C.FSDSP: funct3 | uimm[5:3|8:6] | rs2 | 10.
fn enc_sdsp(funct3: u32, rs2: u32, uimm: u32) -> u32 {
    assert!(uimm.is_multiple_of(8) && uimm < 512 && rs2 < 32);
    (funct3 << 13) | (bits(uimm, 5, 3) << 10) | (bits(uimm, 8, 6) << 7) | (rs2 << 2) | 0b10
}

/// Zcb C.LBU / C.SB: 100 | funct3b (12:10) | rs1' | uimm[0|1] | rd'/rs2' | 00.
fn enc_zcb_b(funct3b: u32, rdp: u32, rs1p: u32, uimm: u32) -> u32 {
    assert!(uimm < 4 && rdp < 8 && rs1p < 8);
    (0b100 << 13)
        | (funct3b << 10)
        | (rs1p << 7)
        | (bit(uimm, 0) << 6)
        | (bit(uimm, 1) << 5)
        | (rdp << 2)
}

/// Zcb C.LHU / C.LH / C.SH: 100 | funct3b | rs1' | b6 | uimm[1] | rd'/rs2' | 00.
fn enc_zcb_h(funct3b: u32, b6: u32, rdp: u32, rs1p: u32, uimm: u32) -> u32 {
    assert!(uimm == 0 || uimm == 2);
    (0b100 << 13) | (funct3b << 10) | (rs1p << 7) | (b6 << 6) | (bit(uimm, 1) << 5) | (rdp << 2)
}

/// The htinst transformation of a 32-bit load/store: immediate zeroed, rs1
/// replaced by the address offset `off`.
fn transform(insn: u32, is_store: bool, off: u32) -> u32 {
    let t = if is_store {
        insn & !(0x7f << 25) & !(0x1f << 7)
    } else {
        insn & !(0xfff << 20)
    };
    (t & !(0x1f << 15)) | ((off & 31) << 15)
}

// ---------------------------------------------------------------------------
// Form tables.
// ---------------------------------------------------------------------------

struct Form32 {
    name: &'static str,
    is_store: bool,
    funct3: u32,
    width: Width,
    sext: bool,
}

const fn f32(name: &'static str, is_store: bool, funct3: u32, width: Width, sext: bool) -> Form32 {
    Form32 {
        name,
        is_store,
        funct3,
        width,
        sext,
    }
}

const FORMS32: [Form32; 11] = [
    f32("lb", false, 0, Width::Byte, true),
    f32("lh", false, 1, Width::Half, true),
    f32("lw", false, 2, Width::Word, true),
    f32("ld", false, 3, Width::Double, false),
    f32("lbu", false, 4, Width::Byte, false),
    f32("lhu", false, 5, Width::Half, false),
    f32("lwu", false, 6, Width::Word, false),
    f32("sb", true, 0, Width::Byte, false),
    f32("sh", true, 1, Width::Half, false),
    f32("sw", true, 2, Width::Word, false),
    f32("sd", true, 3, Width::Double, false),
];

fn form32(name: &str) -> &'static Form32 {
    FORMS32.iter().find(|f| f.name == name).unwrap()
}

fn enc32(f: &Form32, reg: u32, rs1: u32, imm: i32) -> u32 {
    if f.is_store {
        enc_s(0x23, f.funct3, rs1, reg, imm)
    } else {
        enc_i(0x03, f.funct3, reg, rs1, imm)
    }
}

const IMMS: [i32; 9] = [0, 1, -1, 7, -8, 0x555, -0x556, 2047, -2048];

#[derive(Clone, Copy)]
enum CRegs {
    /// rd'/rs2' and rs1' in x8..x15.
    Prime,
    /// Full 5-bit rd/rs2, base sp.
    Sp,
}

struct FormC {
    name: &'static str,
    /// The 32-bit equivalent.
    base: &'static str,
    regs: CRegs,
    imm_step: u32,
    imm_end: u32,
    /// (register field value, rs1' field value, uimm) -> encoding.
    enc: fn(u32, u32, u32) -> u32,
}

const FORMSC: [FormC; 13] = [
    FormC {
        name: "c.lw",
        base: "lw",
        regs: CRegs::Prime,
        imm_step: 4,
        imm_end: 128,
        enc: |r, s, i| enc_cl_w(0b010, r, s, i),
    },
    FormC {
        name: "c.ld",
        base: "ld",
        regs: CRegs::Prime,
        imm_step: 8,
        imm_end: 256,
        enc: |r, s, i| enc_cl_d(0b011, r, s, i),
    },
    FormC {
        name: "c.sw",
        base: "sw",
        regs: CRegs::Prime,
        imm_step: 4,
        imm_end: 128,
        enc: |r, s, i| enc_cl_w(0b110, r, s, i),
    },
    FormC {
        name: "c.sd",
        base: "sd",
        regs: CRegs::Prime,
        imm_step: 8,
        imm_end: 256,
        enc: |r, s, i| enc_cl_d(0b111, r, s, i),
    },
    FormC {
        name: "c.lwsp",
        base: "lw",
        regs: CRegs::Sp,
        imm_step: 4,
        imm_end: 256,
        enc: |r, _, i| enc_lwsp(0b010, r, i),
    },
    FormC {
        name: "c.ldsp",
        base: "ld",
        regs: CRegs::Sp,
        imm_step: 8,
        imm_end: 512,
        enc: |r, _, i| enc_ldsp(0b011, r, i),
    },
    FormC {
        name: "c.swsp",
        base: "sw",
        regs: CRegs::Sp,
        imm_step: 4,
        imm_end: 256,
        enc: |r, _, i| enc_swsp(0b110, r, i),
    },
    FormC {
        name: "c.sdsp",
        base: "sd",
        regs: CRegs::Sp,
        imm_step: 8,
        imm_end: 512,
        enc: |r, _, i| enc_sdsp(0b111, r, i),
    },
    FormC {
        name: "c.lbu",
        base: "lbu",
        regs: CRegs::Prime,
        imm_step: 1,
        imm_end: 4,
        enc: |r, s, i| enc_zcb_b(0b000, r, s, i),
    },
    FormC {
        name: "c.lhu",
        base: "lhu",
        regs: CRegs::Prime,
        imm_step: 2,
        imm_end: 4,
        enc: |r, s, i| enc_zcb_h(0b001, 0, r, s, i),
    },
    FormC {
        name: "c.lh",
        base: "lh",
        regs: CRegs::Prime,
        imm_step: 2,
        imm_end: 4,
        enc: |r, s, i| enc_zcb_h(0b001, 1, r, s, i),
    },
    FormC {
        name: "c.sb",
        base: "sb",
        regs: CRegs::Prime,
        imm_step: 1,
        imm_end: 4,
        enc: |r, s, i| enc_zcb_b(0b010, r, s, i),
    },
    FormC {
        name: "c.sh",
        base: "sh",
        regs: CRegs::Prime,
        imm_step: 2,
        imm_end: 4,
        enc: |r, s, i| enc_zcb_h(0b011, 0, r, s, i),
    },
];

fn expect(f: &Form32, reg: u32, len: u8) -> MmioAccess {
    MmioAccess {
        is_store: f.is_store,
        width: f.width,
        sign_extend: f.sext,
        reg: reg as u8,
        len,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
}

// ---------------------------------------------------------------------------
// 32-bit loads and stores.
// ---------------------------------------------------------------------------

#[test]
fn all_32bit_forms_registers_immediates() {
    let mut n = 0;
    for f in &FORMS32 {
        for reg in 0..32 {
            for rs1 in [0, 1, 2, 10, 31] {
                for imm in IMMS {
                    let insn = enc32(f, reg, rs1, imm);
                    let want = expect(f, reg, 4);
                    assert_eq!(
                        decode(insn),
                        Ok(want),
                        "{} x{reg}, {imm}(x{rs1}) = {insn:#010x}",
                        f.name
                    );
                    // htinst: rs1 becomes the address offset, imm zero.
                    for off in [0, 1, 3, 7] {
                        let t = transform(insn, f.is_store, off);
                        assert_eq!(t & 3, 3);
                        assert_eq!(
                            decode_transformed(t),
                            Ok(want),
                            "{} transformed {t:#010x}",
                            f.name
                        );
                    }
                    // A value reported untransformed still decodes.
                    assert_eq!(decode_transformed(insn), Ok(want));
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 11 * 32 * 5 * IMMS.len());
}

#[test]
fn known_encodings() {
    // Encodings as produced by the GNU assembler (binutils 2.40).
    let cases: [(u32, &str, u8); 8] = [
        (0x0005_2503, "lw", 10),  // lw a0, 0(a0)
        (0x0085_b583, "ld", 11),  // ld a1, 8(a1)
        (0xfff6_4603, "lbu", 12), // lbu a2, -1(a2)
        (0x0047_d683, "lhu", 13), // lhu a3, 4(a5)
        (0x00b5_2023, "sw", 11),  // sw a1, 0(a0)
        (0x00c5_b423, "sd", 12),  // sd a2, 8(a1)
        (0xfe06_8fa3, "sb", 0),   // sb zero, -1(a3)
        (0x0010_1123, "sh", 1),   // sh ra, 2(zero)
    ];
    for (insn, name, reg) in cases {
        assert_eq!(
            decode(insn),
            Ok(expect(form32(name), u32::from(reg), 4)),
            "{name} {insn:#x}"
        );
    }
    assert_eq!(enc_i(0x03, 2, 10, 10, 0), 0x0005_2503);
    assert_eq!(enc_s(0x23, 3, 11, 12, 8), 0x00c5_b423);
    // Compressed: c.lw a0, 0(a0) = 0x4108; c.sd a2, 8(a1) = 0xe590;
    // c.lwsp a0, 12(sp) = 0x4532; c.sdsp ra, 8(sp) = 0xe406.
    assert_eq!(enc_cl_w(0b010, 2, 2, 0), 0x4108);
    assert_eq!(enc_cl_d(0b111, 4, 3, 8), 0xe590);
    assert_eq!(enc_lwsp(0b010, 10, 12), 0x4532);
    assert_eq!(enc_sdsp(0b111, 1, 8), 0xe406);
    assert_eq!(decode(0x4108), Ok(expect(form32("lw"), 10, 2)));
    assert_eq!(decode(0xe590), Ok(expect(form32("sd"), 12, 2)));
    assert_eq!(decode(0x4532), Ok(expect(form32("lw"), 10, 2)));
    assert_eq!(decode(0xe406), Ok(expect(form32("sd"), 1, 2)));
    // More from binutils: c.ldsp s1,504(sp); c.swsp t6,252(sp);
    // c.lw s1,124(a5); c.ld s1,248(a5); c.ld a1,8(a1); c.sw a1,0(a0).
    assert_eq!(enc_ldsp(0b011, 9, 504), 0x74fe);
    assert_eq!(enc_swsp(0b110, 31, 252), 0xdffe);
    assert_eq!(enc_cl_w(0b010, 1, 7, 124), 0x5fe4);
    assert_eq!(enc_cl_d(0b011, 1, 7, 248), 0x7fe4);
    assert_eq!(enc_cl_d(0b011, 3, 3, 8), 0x658c);
    assert_eq!(enc_cl_w(0b110, 3, 2, 0), 0xc10c);
    assert_eq!(decode(0x74fe), Ok(expect(form32("ld"), 9, 2)));
    assert_eq!(decode(0xdffe), Ok(expect(form32("sw"), 31, 2)));
    assert_eq!(decode(0x5fe4), Ok(expect(form32("lw"), 9, 2)));
    assert_eq!(decode(0x7fe4), Ok(expect(form32("ld"), 9, 2)));
    assert_eq!(decode(0x658c), Ok(expect(form32("ld"), 11, 2)));
    assert_eq!(decode(0xc10c), Ok(expect(form32("sw"), 11, 2)));
    // Zcb match values (riscv-opcodes): c.lbu 0x8000, c.lhu 0x8400,
    // c.lh 0x8440, c.sb 0x8800, c.sh 0x8c00.
    assert_eq!(enc_zcb_b(0b000, 0, 0, 0), 0x8000);
    assert_eq!(enc_zcb_h(0b001, 0, 0, 0, 0), 0x8400);
    assert_eq!(enc_zcb_h(0b001, 1, 0, 0, 0), 0x8440);
    assert_eq!(enc_zcb_b(0b010, 0, 0, 0), 0x8800);
    assert_eq!(enc_zcb_h(0b011, 0, 0, 0, 0), 0x8c00);
}

// ---------------------------------------------------------------------------
// Compressed loads and stores.
// ---------------------------------------------------------------------------

#[test]
fn all_compressed_forms_registers_immediates() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut n = 0;
    for c in &FORMSC {
        let base = form32(c.base);
        let (reg_fields, rs1_fields): (Vec<u32>, Vec<u32>) = match c.regs {
            CRegs::Prime => ((0..8).collect(), (0..8).collect()),
            CRegs::Sp => ((0..32).collect(), std::vec![0]),
        };
        for &rf in &reg_fields {
            for &sf in &rs1_fields {
                for uimm in (0..c.imm_end).step_by(c.imm_step as usize) {
                    let insn = (c.enc)(rf, sf, uimm);
                    assert!(insn < 0x1_0000 && insn & 3 != 3, "{} {insn:#x}", c.name);
                    let (reg, rs1) = match c.regs {
                        CRegs::Prime => (rf + 8, sf + 8),
                        CRegs::Sp => (rf, 2),
                    };
                    let ctx = format!("{} x{reg}, {uimm}(x{rs1}) = {insn:#06x}", c.name);
                    if matches!(c.regs, CRegs::Sp) && !base.is_store && reg == 0 {
                        assert_eq!(decode(insn), Err(DecodeError::Reserved), "{ctx}");
                        continue;
                    }
                    let want = expect(base, reg, 2);
                    assert_eq!(decode(insn), Ok(want), "{ctx}");
                    // The upper half is ignored.
                    assert_eq!(decode(insn | (rng.u32() << 16)), Ok(want), "{ctx}");
                    // htinst: expand, transform, clear bit 1.
                    let full = enc32(base, reg, rs1, uimm as i32);
                    let t = transform(full, base.is_store, uimm & 7) & !2;
                    assert_eq!(t & 3, 1);
                    assert_eq!(
                        decode_transformed(t),
                        Ok(want),
                        "{ctx}: transformed {t:#010x}"
                    );
                    n += 1;
                }
            }
        }
    }
    // c.lw/c.sw: 8*8*32 each; c.ld/c.sd: 8*8*32 each; *sp: 31 or 32 regs * 64;
    // Zcb: 8*8*4 (byte) or 8*8*2 (half).
    assert_eq!(n, 4 * 2048 + (31 + 31 + 32 + 32) * 64 + 2 * 256 + 3 * 128);
}

#[test]
fn compressed_sp_loads_into_x0_reserved() {
    for uimm in (0..256).step_by(4) {
        assert_eq!(decode(enc_lwsp(0b010, 0, uimm)), Err(DecodeError::Reserved));
    }
    for uimm in (0..512).step_by(8) {
        assert_eq!(decode(enc_ldsp(0b011, 0, uimm)), Err(DecodeError::Reserved));
    }
    // Stores of x0 through sp are fine.
    assert_eq!(
        decode(enc_swsp(0b110, 0, 4)),
        Ok(expect(form32("sw"), 0, 2))
    );
    assert_eq!(
        decode(enc_sdsp(0b111, 0, 8)),
        Ok(expect(form32("sd"), 0, 2))
    );
}

#[test]
fn zcb_reserved_slot() {
    for r in 0..8 {
        for s in 0..8 {
            for uimm in [0, 2] {
                assert_eq!(
                    decode(enc_zcb_h(0b011, 1, r, s, uimm)),
                    Err(DecodeError::Reserved)
                );
            }
        }
    }
    // Quadrant 0, funct3 100, bits 12:10 = 1xx: not a load/store.
    for f in 4..8 {
        assert_eq!(
            decode((0b100 << 13) | (f << 10)),
            Err(DecodeError::NotLoadStore)
        );
    }
}

// ---------------------------------------------------------------------------
// Rejections.
// ---------------------------------------------------------------------------

#[test]
fn floating_point_rejected() {
    // FLH FLW FLD FLQ / FSH FSW FSD FSQ, and the vector forms sharing the
    // major opcodes.
    for funct3 in 0..8 {
        for reg in 0..32 {
            for imm in IMMS {
                let l = enc_i(0x07, funct3, reg, 5, imm);
                let s = enc_s(0x27, funct3, 5, reg, imm);
                assert_eq!(decode(l), Err(DecodeError::FloatingPoint), "{l:#x}");
                assert_eq!(decode(s), Err(DecodeError::FloatingPoint), "{s:#x}");
                assert_eq!(
                    decode_transformed(transform(l, false, 0)),
                    Err(DecodeError::FloatingPoint)
                );
                assert_eq!(
                    decode_transformed(transform(s, true, 0)),
                    Err(DecodeError::FloatingPoint)
                );
            }
        }
    }
    // C.FLD / C.FSD (quadrant 0) and C.FLDSP / C.FSDSP (quadrant 2).
    for r in 0..8 {
        for s in 0..8 {
            for uimm in (0..256).step_by(8) {
                assert_eq!(
                    decode(enc_cl_d(0b001, r, s, uimm)),
                    Err(DecodeError::FloatingPoint)
                );
                assert_eq!(
                    decode(enc_cl_d(0b101, r, s, uimm)),
                    Err(DecodeError::FloatingPoint)
                );
            }
        }
    }
    for r in 0..32 {
        for uimm in (0..512).step_by(8) {
            assert_eq!(
                decode(enc_ldsp(0b001, r, uimm)),
                Err(DecodeError::FloatingPoint)
            );
            assert_eq!(
                decode(enc_sdsp(0b101, r, uimm)),
                Err(DecodeError::FloatingPoint)
            );
        }
    }
    // Transformed from a compressed FP original: fld/fsd with bit 1 clear.
    let t = transform(enc_i(0x07, 3, 8, 0, 0), false, 0) & !2;
    assert_eq!(decode_transformed(t), Err(DecodeError::FloatingPoint));
    let t = transform(enc_s(0x27, 3, 0, 9, 0), true, 0) & !2;
    assert_eq!(decode_transformed(t), Err(DecodeError::FloatingPoint));
}

#[test]
fn atomics_rejected() {
    // LR SC AMOSWAP AMOADD AMOXOR AMOAND AMOOR AMOMIN AMOMAX AMOMINU AMOMAXU
    // AMOCAS, .W/.D (and .B/.H/.Q funct3 of Zabha/Zacas).
    let funct5s = [
        0b00010, 0b00011, 0b00001, 0b00000, 0b00100, 0b01100, 0b01000, 0b10000, 0b10100, 0b11000,
        0b11100, 0b00101,
    ];
    for funct5 in funct5s {
        for funct3 in 0..5 {
            for reg in 0..32 {
                for (aq, rl) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let insn = enc_amo(funct5, aq, rl, reg, 10, funct3, 31 - reg);
                    assert_eq!(decode(insn), Err(DecodeError::Atomic), "{insn:#x}");
                    let t = insn & !(0x1f << 15);
                    assert_eq!(decode_transformed(t), Err(DecodeError::Atomic));
                }
            }
        }
    }
}

#[test]
fn reserved_load_store_funct3() {
    for reg in 0..32 {
        assert_eq!(
            decode(enc_i(0x03, 7, reg, 1, 0)),
            Err(DecodeError::Reserved)
        );
        for funct3 in 4..8 {
            assert_eq!(
                decode(enc_s(0x23, funct3, 1, reg, 0)),
                Err(DecodeError::Reserved)
            );
        }
    }
}

#[test]
fn other_instructions_rejected() {
    let others: [(u32, &str); 24] = [
        (0x0000_0013, "nop"),
        (0x0015_0513, "addi a0, a0, 1"),
        (0x00b5_0533, "add a0, a0, a1"),
        (0x1234_5537, "lui a0, 0x12345"),
        (0x0000_0517, "auipc a0, 0"),
        (0x0080_006f, "j +8"),
        (0x0000_8067, "ret"),
        (0x00b5_0463, "beq a0, a1, +8"),
        (0x0000_0073, "ecall"),
        (0x0010_0073, "ebreak"),
        (0x1050_0073, "wfi"),
        (0x1020_0073, "sret"),
        (0x3400_1573, "csrrw a0, mscratch, zero"),
        (0x0ff0_000f, "fence"),
        (0x0000_100f, "fence.i"),
        (0x02b5_0533, "mul a0, a0, a1"),
        (0x0000_0001, "c.nop"),
        (0x0505, "c.addi a0, 1"),
        (0xa001, "c.j 0"),
        (0x852e, "c.mv a0, a1"),
        (0x952e, "c.add a0, a1"),
        (0x9002, "c.ebreak"),
        (0x8082, "c.jr ra (ret)"),
        (0x0040, "c.addi4spn s0, sp, 4"),
    ];
    for (insn, what) in others {
        assert_eq!(decode(insn), Err(DecodeError::NotLoadStore), "{what}");
    }
    assert_eq!(
        decode(0),
        Err(DecodeError::NotLoadStore),
        "all-zero illegal"
    );
    assert_eq!(decode(u32::MAX), Err(DecodeError::NotLoadStore));
    // htinst: zero (no information) and the pseudoinstructions for implicit
    // VS-stage page-table accesses.
    for v in [0, 0x2000, 0x3000, 0x2020, 0x3020] {
        assert_eq!(
            decode_transformed(v),
            Err(DecodeError::NotLoadStore),
            "{v:#x}"
        );
    }
    // Even bit-0-clear values that look like loads are refused.
    assert_eq!(
        decode_transformed(0x0000_2002),
        Err(DecodeError::NotLoadStore)
    );
    // System instructions as transformed values.
    assert_eq!(
        decode_transformed(0x1050_0073),
        Err(DecodeError::NotLoadStore)
    );
}

// ---------------------------------------------------------------------------
// extend / truncate.
// ---------------------------------------------------------------------------

#[test]
fn width_bytes_and_mask() {
    for (w, b) in [
        (Width::Byte, 1),
        (Width::Half, 2),
        (Width::Word, 4),
        (Width::Double, 8),
    ] {
        assert_eq!(w.bytes(), b);
        let m = if b == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * b)) - 1
        };
        assert_eq!(w.mask(), m);
    }
}

#[test]
fn extend_and_truncate_every_width() {
    let mut rng = Rng(42);
    let mut values: Vec<u64> = std::vec![
        0,
        1,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
        0x0123_4567_89ab_cdef,
        0xfedc_ba98_7654_3210,
    ];
    values.extend((0..1000).map(|_| rng.next()));
    let acc = |width, sign_extend, is_store| MmioAccess {
        is_store,
        width,
        sign_extend,
        reg: 5,
        len: 4,
    };
    for &v in &values {
        assert_eq!(
            acc(Width::Byte, true, false).extend(v),
            v as u8 as i8 as i64 as u64
        );
        assert_eq!(
            acc(Width::Half, true, false).extend(v),
            v as u16 as i16 as i64 as u64
        );
        assert_eq!(
            acc(Width::Word, true, false).extend(v),
            v as u32 as i32 as i64 as u64
        );
        assert_eq!(acc(Width::Double, true, false).extend(v), v);
        assert_eq!(acc(Width::Byte, false, false).extend(v), u64::from(v as u8));
        assert_eq!(
            acc(Width::Half, false, false).extend(v),
            u64::from(v as u16)
        );
        assert_eq!(
            acc(Width::Word, false, false).extend(v),
            u64::from(v as u32)
        );
        assert_eq!(acc(Width::Double, false, false).extend(v), v);
        assert_eq!(
            acc(Width::Byte, false, true).truncate(v),
            u64::from(v as u8)
        );
        assert_eq!(
            acc(Width::Half, false, true).truncate(v),
            u64::from(v as u16)
        );
        assert_eq!(
            acc(Width::Word, false, true).truncate(v),
            u64::from(v as u32)
        );
        assert_eq!(acc(Width::Double, false, true).truncate(v), v);
    }
    // Through real decodes.
    let lb = decode(enc_i(0x03, 0, 1, 2, 0)).unwrap();
    assert_eq!(lb.extend(0xffff_ff80), 0xffff_ffff_ffff_ff80);
    let lbu = decode(enc_i(0x03, 4, 1, 2, 0)).unwrap();
    assert_eq!(lbu.extend(0xffff_ff80), 0x80);
    let lw = decode(enc_cl_w(0b010, 0, 0, 0)).unwrap();
    assert_eq!(lw.extend(0x8000_0000), 0xffff_ffff_8000_0000);
    let lwu = decode(enc_i(0x03, 6, 1, 2, 0)).unwrap();
    assert_eq!(lwu.extend(0xdead_beef_8000_0000), 0x8000_0000);
    let lh = decode(enc_zcb_h(0b001, 1, 0, 0, 0)).unwrap();
    assert_eq!(lh.extend(0x1234_8001), 0xffff_ffff_ffff_8001);
    let sh = decode(enc_s(0x23, 1, 1, 2, 0)).unwrap();
    assert_eq!(sh.truncate(0x1234_5678_9abc_def0), 0xdef0);
}

// ---------------------------------------------------------------------------
// Sweeps: no panics, and agreement with an independent mask/match table.
// ---------------------------------------------------------------------------

/// Base mnemonic and register, or the decode error.
type Ref16 = Result<(&'static str, u32), DecodeError>;

/// Reference classification of a 16-bit instruction from (mask, match)
/// patterns in the style of riscv-opcodes. Returns the 32-bit base mnemonic
/// and the register, or the error.
fn reference16(c: u32) -> Ref16 {
    let prime = 8 + bits(c, 4, 2);
    let rd = bits(c, 11, 7);
    let rs2 = bits(c, 6, 2);
    let table: [(u32, u32, Ref16); 20] = [
        // Quadrant 0.
        (0xfc43, 0x8c40, Err(DecodeError::Reserved)), // Zcb reserved
        (0xfc03, 0x8000, Ok(("lbu", prime))),         // c.lbu
        (0xfc43, 0x8400, Ok(("lhu", prime))),         // c.lhu
        (0xfc43, 0x8440, Ok(("lh", prime))),          // c.lh
        (0xfc03, 0x8800, Ok(("sb", prime))),          // c.sb
        (0xfc43, 0x8c00, Ok(("sh", prime))),          // c.sh
        (0xe003, 0x4000, Ok(("lw", prime))),          // c.lw
        (0xe003, 0x6000, Ok(("ld", prime))),          // c.ld
        (0xe003, 0xc000, Ok(("sw", prime))),          // c.sw
        (0xe003, 0xe000, Ok(("sd", prime))),          // c.sd
        (0xe003, 0x2000, Err(DecodeError::FloatingPoint)), // c.fld
        (0xe003, 0xa000, Err(DecodeError::FloatingPoint)), // c.fsd
        // Quadrant 2.
        (0xef83, 0x4002, Err(DecodeError::Reserved)), // c.lwsp rd=0
        (0xef83, 0x6002, Err(DecodeError::Reserved)), // c.ldsp rd=0
        (0xe003, 0x4002, Ok(("lw", rd))),             // c.lwsp
        (0xe003, 0x6002, Ok(("ld", rd))),             // c.ldsp
        (0xe003, 0xc002, Ok(("sw", rs2))),            // c.swsp
        (0xe003, 0xe002, Ok(("sd", rs2))),            // c.sdsp
        (0xe003, 0x2002, Err(DecodeError::FloatingPoint)), // c.fldsp
        (0xe003, 0xa002, Err(DecodeError::FloatingPoint)), // c.fsdsp
    ];
    table
        .iter()
        .find(|(mask, m, _)| c & mask == *m)
        .map_or(Err(DecodeError::NotLoadStore), |(_, _, r)| *r)
}

fn check16(c: u32) -> Result<MmioAccess, DecodeError> {
    reference16(c).map(|(name, reg)| expect(form32(name), reg, 2))
}

#[test]
fn sweep_all_16bit() {
    let mut rng = Rng(7);
    let mut ok = 0;
    for c in 0..=0xffffu32 {
        let got = decode(c);
        if c & 3 == 3 {
            // Low half of a 32-bit instruction: never panics.
            let _ = got;
            continue;
        }
        assert_eq!(got, check16(c), "{c:#06x}");
        assert_eq!(
            decode(c | (rng.u32() << 16)),
            got,
            "{c:#06x} upper half ignored"
        );
        if let Ok(a) = got {
            ok += 1;
            assert_eq!(a.len, 2);
            assert!(a.reg < 32);
            assert!(!(a.is_store && a.sign_extend));
        }
    }
    // Q0: c.lw, c.ld, c.sw, c.sd (2^11 each) + Zcb (4 byte-form slots of
    // 2^8... see below); Q2: c.lwsp, c.ldsp minus rd=0, c.swsp, c.sdsp.
    let q0 = 4 * 2048;
    let zcb = 2 * 256 + 3 * 128; // lbu, sb: 8 bits free; lhu, lh, sh: 7
    let q2 = 2 * (2048 - 64) + 2 * 2048;
    assert_eq!(ok, q0 + zcb + q2);
}

/// Reference classification of a 32-bit instruction.
fn reference32(insn: u32) -> Result<MmioAccess, DecodeError> {
    let funct3 = bits(insn, 14, 12);
    match insn & 0x7f {
        0x03 => FORMS32
            .iter()
            .find(|f| !f.is_store && f.funct3 == funct3)
            .map(|f| expect(f, bits(insn, 11, 7), 4))
            .ok_or(DecodeError::Reserved),
        0x23 => FORMS32
            .iter()
            .find(|f| f.is_store && f.funct3 == funct3)
            .map(|f| expect(f, bits(insn, 24, 20), 4))
            .ok_or(DecodeError::Reserved),
        0x07 | 0x27 => Err(DecodeError::FloatingPoint),
        0x2f => Err(DecodeError::Atomic),
        _ => Err(DecodeError::NotLoadStore),
    }
}

#[test]
fn sweep_random_32bit() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let interesting = [
        0x03, 0x07, 0x23, 0x27, 0x2f, 0x13, 0x33, 0x73, 0x0f, 0x3b, 0x7f, 0x5f,
    ];
    for i in 0..(1 << 20) {
        let mut insn = rng.u32();
        if i % 2 == 0 {
            insn = (insn & !0x7f) | interesting[(i / 2) % interesting.len()];
        }
        let got = decode(insn);
        if insn & 3 == 3 {
            assert_eq!(got, reference32(insn), "{insn:#010x}");
            // rs1 and immediate bits never matter.
            let noise = rng.u32();
            let fields = if insn & 0x7f == 0x23 {
                0xfe0f_8f80
            } else {
                0xfff0_8000
            };
            if matches!(insn & 0x7f, 0x03 | 0x23) {
                assert_eq!(decode(insn ^ (noise & fields)), got, "{insn:#010x}");
            }
            // The transformed view of a 32-bit instruction agrees.
            assert_eq!(
                decode_transformed(insn),
                got.map(|a| MmioAccess { len: 4, ..a })
            );
            // Bit 1 clear in htinst only changes the length.
            assert_eq!(
                decode_transformed(insn & !2),
                got.map(|a| MmioAccess { len: 2, ..a })
            );
        } else {
            assert_eq!(got, check16(insn & 0xffff), "{insn:#010x}");
        }
        // Never panics, whatever the value.
        let _ = decode_transformed(insn);
    }
}

#[test]
fn sweep_transformed_never_panics() {
    let mut rng = Rng(99);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..(1 << 18) {
        let v = rng.u32();
        match decode_transformed(v) {
            Ok(a) => {
                ok += 1;
                assert_eq!(a.len == 4, v & 2 != 0);
                assert!(a.len == 2 || a.len == 4);
                assert!(a.reg < 32);
            }
            Err(_) => err += 1,
        }
    }
    assert!(ok > 0 && err > 0);
}
