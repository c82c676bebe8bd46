//! Base extension tests (ext-base.adoc) and dispatch-wide rules
//! (binary-encoding.adoc).

use super::*;
use crate::{eid, error, fid::base as f, probe, IMPL_ID, IMPL_VERSION, SPEC_VERSION};

const ALL_EIDS_IMPLEMENTED: &[u64] = &[
    eid::BASE,
    eid::TIME,
    eid::IPI,
    eid::RFENCE,
    eid::HSM,
    eid::SRST,
    eid::DBCN,
    0x00,
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
    0x08,
];

const NOT_IMPLEMENTED: &[u64] = &[
    eid::PMU,
    eid::SUSP,
    eid::CPPC,
    eid::NACL,
    eid::STA,
    eid::SSE,
    eid::FWFT,
    eid::DBTR,
    eid::MPXY,
    // Reserved legacy EIDs (ext-legacy.adoc, table_legacy_function_list).
    0x09,
    0x0A,
    0x0F,
    0x11,
    // Experimental / vendor / firmware spaces (ext-experimental.adoc,
    // ext-vendor.adoc, ext-firmware.adoc).
    0x0800_0000,
    0x08FF_FFFF,
    0x0900_0000,
    0x0A00_0000,
    0x0A00_0000 | 0x5654,
    // Implemented IDs with junk above bit 31 are different register values.
    eid::BASE | 1 << 32,
    0xFFFF_FFFF_0000_0010,
    eid::HSM | 1 << 63,
    u64::MAX,
];

/// ext-base.adoc § Get SBI specification version (FID #0): minor in bits
/// 0..24, major in bits 24..31, bit 31 and bits >= 32 zero. Rivet reports 2.0.
#[test]
fn spec_version_is_2_0_and_well_formed() {
    let mut env = MockEnv::new(1);
    let r = env.ret(eid::BASE, f::GET_SPEC_VERSION, &[]);
    assert_eq!(r, ok(0x0200_0000));
    assert_eq!(r.value >> 24, 2, "major");
    assert_eq!(r.value & 0xFF_FFFF, 0, "minor");
    assert_eq!(r.value >> 31, 0, "bit 31 and above must be 0");
    assert_eq!(SPEC_VERSION, 2 << 24);
}

/// ext-base.adoc § Get SBI implementation ID (FID #1) and § Get SBI
/// implementation version (FID #2): always succeed.
#[test]
fn impl_id_and_version() {
    let mut env = MockEnv::new(1);
    assert_eq!(env.ret(eid::BASE, f::GET_IMPL_ID, &[]), ok(IMPL_ID));
    assert_eq!(IMPL_ID, u64::from(u32::from_be_bytes(*b"RIVT")));
    // Not one of the registered IDs (table_sbi_implementation_ids: 0..=11).
    const { assert!(IMPL_ID > 11) };
    assert_eq!(
        env.ret(eid::BASE, f::GET_IMPL_VERSION, &[]),
        ok(IMPL_VERSION)
    );
    assert_eq!(
        IMPL_VERSION, 0x0000_0100,
        "0.1.0 as major<<16 | minor<<8 | patch"
    );
}

/// ext-base.adoc § Get machine vendor/architecture/implementation ID
/// (FID #4, #5, #6): the environment's values, returned unchanged.
#[test]
fn machine_ids_come_from_env() {
    let mut env = MockEnv::new(1);
    assert_eq!(env.ret(eid::BASE, f::GET_MVENDORID, &[]), ok(0x489));
    assert_eq!(
        env.ret(eid::BASE, f::GET_MARCHID, &[]),
        ok(0x8000_0000_0000_0007)
    );
    assert_eq!(env.ret(eid::BASE, f::GET_MIMPID, &[]), ok(0x2024));
    env.ids = (0, 0, 0);
    assert_eq!(env.ret(eid::BASE, f::GET_MARCHID, &[]), ok(0));
}

/// ext-base.adoc: "All functions in the base extension must be supported ...
/// there are no error returns defined": arguments are ignored.
#[test]
fn base_functions_ignore_arguments() {
    let mut env = MockEnv::new(1);
    let junk = [u64::MAX, 1, 2, 3, 4, 5];
    for fid in [0, 1, 2, 4, 5, 6] {
        let plain = env.ret(eid::BASE, fid, &[]);
        assert_eq!(env.ret(eid::BASE, fid, &junk), plain, "fid {fid}");
        assert_eq!(plain.error, error::SUCCESS);
    }
}

/// ext-base.adoc § Probe SBI extension (FID #3): 1 for available, 0 for not.
#[test]
fn probe_extension_implemented() {
    let mut env = MockEnv::new(1);
    for &e in ALL_EIDS_IMPLEMENTED {
        assert!(probe(e), "probe({e:#x})");
        assert_eq!(
            env.ret(eid::BASE, f::PROBE_EXTENSION, &[e]),
            ok(1),
            "eid {e:#x}"
        );
    }
}

/// ext-base.adoc § Probe SBI extension (FID #3): 0 for everything Rivet does
/// not implement, including PMU and SUSP.
#[test]
fn probe_extension_not_implemented() {
    let mut env = MockEnv::new(1);
    for &e in NOT_IMPLEMENTED {
        assert!(!probe(e), "probe({e:#x})");
        assert_eq!(
            env.ret(eid::BASE, f::PROBE_EXTENSION, &[e]),
            ok(0),
            "eid {e:#x}"
        );
    }
}

/// intro.adoc: extensions "cannot be partially implemented" and
/// binary-encoding.adoc: an unsupported EID "must return
/// SBI_ERR_NOT_SUPPORTED". So probe is truthful both ways: every probed-0 EID
/// answers NOT_SUPPORTED to every FID, and every probed-1 EID answers
/// something else to FID 0.
#[test]
fn probe_is_truthful() {
    let mut env = MockEnv::new(2);
    env.legacy_masks.push((0x1000, 1));
    for &e in NOT_IMPLEMENTED {
        for fid in (0..20).chain([u64::MAX, 1 << 32]) {
            assert_eq!(
                env.call(e, fid, &[0, 0, 0, 0, 0, 0]),
                Outcome::Ret(err(error::NOT_SUPPORTED)),
                "eid {e:#x} fid {fid}"
            );
        }
    }
    for &e in ALL_EIDS_IMPLEMENTED {
        let out = env.call(e, 0, &[0, 0, 0, 0, 0, 0]);
        assert_ne!(out, Outcome::Ret(err(error::NOT_SUPPORTED)), "eid {e:#x}");
    }
}

/// binary-encoding.adoc: "An ECALL with ... an unsupported SBI function ID
/// (FID) must return the error code SBI_ERR_NOT_SUPPORTED."
#[test]
fn unknown_base_fid() {
    let mut env = MockEnv::new(1);
    for fid in [7, 8, 0x100, 1 << 32, u64::MAX] {
        assert_eq!(
            env.ret(eid::BASE, fid, &[]),
            err(error::NOT_SUPPORTED),
            "fid {fid:#x}"
        );
    }
}

/// binary-encoding.adoc, table_standard_sbi_errors: the exact codes.
#[test]
fn error_code_values() {
    use crate::error::*;
    let table = [
        (SUCCESS, 0),
        (FAILED, -1),
        (NOT_SUPPORTED, -2),
        (INVALID_PARAM, -3),
        (DENIED, -4),
        (INVALID_ADDRESS, -5),
        (ALREADY_AVAILABLE, -6),
        (ALREADY_STARTED, -7),
        (ALREADY_STOPPED, -8),
        (NO_SHMEM, -9),
        (INVALID_STATE, -10),
        (BAD_RANGE, -11),
        (TIMEOUT, -12),
        (IO, -13),
        (DENIED_LOCKED, -14),
    ];
    for (c, v) in table {
        assert_eq!(c, v);
    }
    assert_eq!(LOWEST, -14);
}

/// Each chapter heading's EID value.
#[test]
fn eid_values() {
    assert_eq!(eid::BASE, 0x10);
    assert_eq!(eid::TIME, u64::from(u32::from_be_bytes(*b"TIME")));
    assert_eq!(eid::IPI, 0x735049);
    assert_eq!(eid::RFENCE, u64::from(u32::from_be_bytes(*b"RFNC")));
    assert_eq!(eid::HSM, 0x48534D);
    assert_eq!(eid::SRST, u64::from(u32::from_be_bytes(*b"SRST")));
    assert_eq!(eid::PMU, 0x504D55);
    assert_eq!(eid::DBCN, u64::from(u32::from_be_bytes(*b"DBCN")));
    assert_eq!(eid::SUSP, u64::from(u32::from_be_bytes(*b"SUSP")));
}

/// binary-encoding.adoc: `a0` carries `sbiret.error`, `a1` `sbiret.value`.
#[test]
fn sbiret_register_images() {
    let r = err(error::INVALID_PARAM);
    assert_eq!(r.a0(), 0xFFFF_FFFF_FFFF_FFFD);
    assert_eq!(r.a1(), 0);
    let r = ok(42);
    assert_eq!((r.a0(), r.a1()), (0, 42));
}
