//! `rivet-insn`: `decode` and `decode_transformed` on arbitrary 32-bit
//! values, cross-checked against an independent expansion of the
//! compressed forms, plus the `extend`/`truncate` arithmetic.
//!
//! Input: a sequence of 12-byte records `insn: u32, raw: u64`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivet_fuzz::Input;
use rivet_insn::{decode, decode_transformed, DecodeError, MmioAccess, Width};

/// The 32-bit equivalent of a compressed load/store (RVC + Zcb), written
/// from the ISA manual independently of the crate: `Ok(expanded)` for a
/// load/store, else the error the crate must report.
fn expand(c: u32) -> Result<u32, DecodeError> {
    let op = c & 3;
    let f3 = (c >> 13) & 7;
    let rdp = 8 + ((c >> 2) & 7); // rd' / rs2' at 4:2
    let rs1p = 8 + ((c >> 7) & 7); // rs1' at 9:7
    let rd = (c >> 7) & 31;
    let rs2 = (c >> 2) & 31;
    let load = |f3: u32, rd: u32, rs1: u32| (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x03;
    let store = |f3: u32, rs2: u32, rs1: u32| (rs2 << 20) | (rs1 << 15) | (f3 << 12) | 0x23;
    match (op, f3) {
        (0, 0b010) => Ok(load(2, rdp, rs1p)),  // c.lw
        (0, 0b011) => Ok(load(3, rdp, rs1p)),  // c.ld
        (0, 0b110) => Ok(store(2, rdp, rs1p)), // c.sw
        (0, 0b111) => Ok(store(3, rdp, rs1p)), // c.sd
        (0, 0b001) | (0, 0b101) | (2, 0b001) | (2, 0b101) => Err(DecodeError::FloatingPoint),
        (0, 0b100) => {
            // Zcb: funct6 = 100 followed by bits 12:10.
            let bit6 = (c >> 6) & 1;
            match (c >> 10) & 7 {
                0b000 => Ok(load(4, rdp, rs1p)),               // c.lbu
                0b001 if bit6 == 0 => Ok(load(5, rdp, rs1p)),  // c.lhu
                0b001 => Ok(load(1, rdp, rs1p)),               // c.lh
                0b010 => Ok(store(0, rdp, rs1p)),              // c.sb
                0b011 if bit6 == 0 => Ok(store(1, rdp, rs1p)), // c.sh
                0b011 => Err(DecodeError::Reserved),
                _ => Err(DecodeError::NotLoadStore),
            }
        }
        (2, 0b010) | (2, 0b011) if rd == 0 => Err(DecodeError::Reserved),
        (2, 0b010) => Ok(load(2, rd, 2)),   // c.lwsp
        (2, 0b011) => Ok(load(3, rd, 2)),   // c.ldsp
        (2, 0b110) => Ok(store(2, rs2, 2)), // c.swsp
        (2, 0b111) => Ok(store(3, rs2, 2)), // c.sdsp
        _ => Err(DecodeError::NotLoadStore),
    }
}

/// What a 32-bit LOAD/STORE must decode to, from the manual's tables.
fn reference_32(insn: u32) -> Result<(bool, Width, bool, u8), DecodeError> {
    let f3 = (insn >> 12) & 7;
    let rd = ((insn >> 7) & 31) as u8;
    let rs2 = ((insn >> 20) & 31) as u8;
    let widths = [Width::Byte, Width::Half, Width::Word, Width::Double];
    match insn & 0x7f {
        0x03 => match f3 {
            0..=2 => Ok((false, widths[f3 as usize], true, rd)), // lb lh lw
            3 => Ok((false, Width::Double, false, rd)),          // ld
            4..=6 => Ok((false, widths[(f3 - 4) as usize], false, rd)), // lbu lhu lwu
            _ => Err(DecodeError::Reserved),
        },
        0x23 => match f3 {
            0..=3 => Ok((true, widths[f3 as usize], false, rs2)),
            _ => Err(DecodeError::Reserved),
        },
        0x07 | 0x27 => Err(DecodeError::FloatingPoint),
        0x2f => Err(DecodeError::Atomic),
        _ => Err(DecodeError::NotLoadStore),
    }
}

fn check_access(a: &MmioAccess, raw: u64) {
    assert!(a.reg < 32);
    assert!(a.len == 2 || a.len == 4);
    assert!(!(a.is_store && a.sign_extend), "stores never extend");
    assert!(
        !(a.width == Width::Double && a.sign_extend),
        "nothing to extend in LD"
    );
    let mask = a.width.mask();
    assert_eq!(mask, u64::MAX >> (64 - 8 * u32::from(a.width.bytes())));

    let v = a.extend(raw);
    assert_eq!(v & mask, raw & mask, "extend keeps the low bytes");
    if a.sign_extend {
        let sign = (raw >> (8 * u32::from(a.width.bytes()) - 1)) & 1;
        let upper = v & !mask;
        assert_eq!(upper, if sign == 1 { !mask } else { 0 }, "sign extension");
    } else {
        assert_eq!(v, raw & mask, "zero extension");
    }
    assert_eq!(a.truncate(raw), raw & mask);
    assert_eq!(a.truncate(v), raw & mask);
    assert_eq!(a.extend(a.truncate(raw)), v);
}

fn check(insn: u32, raw: u64) {
    let d = decode(insn);
    if let Ok(a) = &d {
        check_access(a, raw);
    }
    if insn & 3 != 3 {
        // Compressed: only the low half counts.
        assert_eq!(d, decode(insn & 0xffff));
        let expected = expand(insn & 0xffff).map(|e| {
            let r = reference_32(e).expect("expansions are loads/stores");
            (r, 2u8)
        });
        assert_eq!(
            d.map(|a| ((a.is_store, a.width, a.sign_extend, a.reg), a.len)),
            expected,
            "{insn:#06x}"
        );
        // The same instruction as htinst reports it: expanded, bit 1 clear.
        if let Ok(e) = expand(insn & 0xffff) {
            assert_eq!(decode_transformed(e & !2), d, "transformed {insn:#06x}");
        }
    } else {
        assert_eq!(
            d.map(|a| (a.is_store, a.width, a.sign_extend, a.reg)),
            reference_32(insn),
            "{insn:#010x}"
        );
        if let Ok(a) = d {
            assert_eq!(a.len, 4);
        }
        // A 32-bit instruction reported in htinst is itself (offset
        // fields aside, which the decoder ignores).
        assert_eq!(decode_transformed(insn), d);
        // The offset fields (rs1 and the immediates) must not matter.
        let imm_bits = if insn & 0x7f == 0x23 {
            (0x7f << 25) | (31 << 7)
        } else {
            0xfff << 20
        };
        assert_eq!(decode(insn & !((31 << 15) | imm_bits)), d);
    }

    // Arbitrary htinst values.
    let t = decode_transformed(insn);
    if insn & 1 == 0 {
        assert_eq!(t, Err(DecodeError::NotLoadStore));
    } else {
        let as32 = decode(insn | 3);
        let want_len = if insn & 2 != 0 { 4 } else { 2 };
        assert_eq!(t, as32.map(|a| MmioAccess { len: want_len, ..a }));
        if let Ok(a) = t {
            check_access(&a, raw);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    while !input.is_empty() {
        let insn = input.u32();
        let raw = input.u64();
        check(insn, raw);
    }
});
