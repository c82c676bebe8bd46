//! DBCN extension tests (ext-debug-console.adoc, binary-encoding.adoc §
//! Shared memory physical address range parameter).

use super::*;
use crate::{eid, error, fid::dbcn as f, DBCN_MAX_BYTES_PER_CALL};

fn write(env: &mut MockEnv, n: u64, lo: u64, hi: u64) -> SbiRet {
    env.ret(eid::DBCN, f::CONSOLE_WRITE, &[n, lo, hi])
}

fn read(env: &mut MockEnv, n: u64, lo: u64, hi: u64) -> SbiRet {
    env.ret(eid::DBCN, f::CONSOLE_READ, &[n, lo, hi])
}

/// ext-debug-console.adoc § Console Write (FID #0): bytes from guest memory
/// go to the console; "The number of bytes written is returned in
/// sbiret.uvalue".
#[test]
fn write_small() {
    let mut env = MockEnv::new(1);
    env.ram_mut(RAM_BASE + 0x100, 5).copy_from_slice(b"hello");
    assert_eq!(write(&mut env, 5, RAM_BASE + 0x100, 0), ok(5));
    assert_eq!(env.console_out, b"hello");
}

/// Console Write across the bounce-buffer boundary keeps every byte in order.
#[test]
fn write_multiple_chunks() {
    let mut env = MockEnv::new(1);
    let data: std::vec::Vec<u8> = (0..700u32).map(|i| (i * 7 % 251) as u8).collect();
    env.ram_mut(RAM_BASE + 3, 700).copy_from_slice(&data);
    assert_eq!(write(&mut env, 700, RAM_BASE + 3, 0), ok(700));
    assert_eq!(env.console_out, data);
}

/// ext-debug-console.adoc § Console Write: "it may do partial/no writes";
/// Rivet caps a call at DBCN_MAX_BYTES_PER_CALL and reports that count. The
/// whole buffer must still be valid.
#[test]
fn write_is_capped() {
    let mut env = MockEnv::new(1);
    for (i, b) in env.mem.bytes_mut().iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(
        write(&mut env, RAM_SIZE, RAM_BASE, 0),
        ok(DBCN_MAX_BYTES_PER_CALL)
    );
    assert_eq!(env.console_out, env.ram(RAM_BASE, 4096));
}

/// ext-debug-console.adoc, table_debug_console_write_errors: INVALID_PARAM
/// when the buffer breaks the shared-memory rules (binary-encoding.adoc § Shared
/// memory physical address range parameter: every byte must be accessible).
/// Covers: crossing the end of RAM, starting below RAM, wrapping around
/// 2^64, and an enormous num_bytes. Nothing is written.
#[test]
fn write_bad_buffers() {
    let mut env = MockEnv::new(1);
    let cases = [
        (20, RAM_END - 10),
        (1, RAM_END),
        (8, RAM_BASE - 4),
        (16, u64::MAX - 3),
        (2, u64::MAX),
        (u64::MAX, RAM_BASE),
        (RAM_SIZE + 1, RAM_BASE),
        (u64::MAX, u64::MAX),
    ];
    for (n, lo) in cases {
        assert_eq!(
            write(&mut env, n, lo, 0),
            err(error::INVALID_PARAM),
            "{n:#x}@{lo:#x}"
        );
    }
    assert!(env.console_out.is_empty());
    // The last byte of RAM alone is fine.
    env.ram_mut(RAM_END - 1, 1)[0] = b'!';
    assert_eq!(write(&mut env, 1, RAM_END - 1, 0), ok(1));
    assert_eq!(env.console_out, b"!");
}

/// ext-debug-console.adoc § Console Write: the address is
/// `base_addr_hi:base_addr_lo` (hi = upper XLEN bits). On RV64 a non-zero
/// `hi` is an address >= 2^64, never guest RAM → INVALID_PARAM.
#[test]
fn write_high_address_half() {
    let mut env = MockEnv::new(1);
    for hi in [1, 0x8000_0000, u64::MAX] {
        assert_eq!(write(&mut env, 4, RAM_BASE, hi), err(error::INVALID_PARAM));
        assert_eq!(write(&mut env, 0, RAM_BASE, hi), err(error::INVALID_PARAM));
        assert_eq!(read(&mut env, 4, RAM_BASE, hi), err(error::INVALID_PARAM));
    }
    assert!(env.console_out.is_empty());
}

/// A zero-length buffer contains no inaccessible address (binary-encoding.adoc
/// § Shared memory ...: the check is on addresses *in the range*): success,
/// 0 bytes, wherever it points.
#[test]
fn zero_length_buffers() {
    let mut env = MockEnv::new(1);
    env.console_in.extend(b"x");
    for lo in [0, RAM_BASE, RAM_END, u64::MAX] {
        assert_eq!(write(&mut env, 0, lo, 0), ok(0));
        assert_eq!(read(&mut env, 0, lo, 0), ok(0));
    }
    assert!(env.console_out.is_empty());
    assert_eq!(env.console_in.len(), 1, "nothing consumed");
}

/// ext-debug-console.adoc § Console Read (FID #1): reads what is available,
/// up to num_bytes, and returns the count; memory beyond it is untouched.
#[test]
fn read_available_bytes() {
    let mut env = MockEnv::new(1);
    env.ram_mut(RAM_BASE, 10).fill(0xEE);
    env.console_in.extend(b"abc");
    assert_eq!(read(&mut env, 10, RAM_BASE, 0), ok(3));
    assert_eq!(env.ram(RAM_BASE, 4), b"abc\xEE");
    env.console_in.extend(b"defgh");
    assert_eq!(read(&mut env, 2, RAM_BASE, 0), ok(2));
    assert_eq!(env.ram(RAM_BASE, 3), b"dec");
    assert_eq!(env.console_in.len(), 3);
}

/// § Console Read: "it will not write anything into the output memory if
/// there are no bytes to be read".
#[test]
fn read_nothing_available() {
    let mut env = MockEnv::new(1);
    env.ram_mut(RAM_BASE, 4).fill(0x55);
    assert_eq!(read(&mut env, 4, RAM_BASE, 0), ok(0));
    assert_eq!(env.ram(RAM_BASE, 4), [0x55; 4]);
}

/// Console Read spanning several chunks, and the per-call cap.
#[test]
fn read_large_and_capped() {
    let mut env = MockEnv::new(1);
    let data: std::vec::Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    env.console_in.extend(&data);
    assert_eq!(read(&mut env, 600, RAM_BASE + 1, 0), ok(600));
    assert_eq!(env.ram(RAM_BASE + 1, 600), &data[..600]);
    assert_eq!(
        read(&mut env, RAM_SIZE, RAM_BASE, 0),
        ok(DBCN_MAX_BYTES_PER_CALL)
    );
    assert_eq!(env.ram(RAM_BASE, 4096), &data[600..4696]);
    assert_eq!(env.console_in.len(), 5000 - 600 - 4096);
}

/// table_debug_console_read_errors: INVALID_PARAM for a bad buffer; no input
/// is consumed.
#[test]
fn read_bad_buffers() {
    let mut env = MockEnv::new(1);
    env.console_in.extend(b"keep");
    for (n, lo) in [
        (8, RAM_END - 4),
        (4, RAM_BASE - 1),
        (16, u64::MAX - 7),
        (u64::MAX, RAM_BASE),
    ] {
        assert_eq!(
            read(&mut env, n, lo, 0),
            err(error::INVALID_PARAM),
            "{n:#x}@{lo:#x}"
        );
    }
    assert_eq!(env.console_in.len(), 4);
}

/// A misbehaving environment that reports more bytes than the buffer holds
/// is clamped, never trusted (no panic, no overrun).
#[test]
fn read_clamps_lying_console() {
    let mut env = MockEnv::new(1);
    env.lying_reader = true;
    assert_eq!(read(&mut env, 10, RAM_BASE, 0), ok(10));
    assert_eq!(read(&mut env, 1000, RAM_BASE, 0), ok(1000));
    assert_eq!(env.legacy(0x02, &[]), 0);
}

/// ext-debug-console.adoc § Console Write Byte (FID #2): `uint8_t byte` (low
/// 8 bits of a0), "sbiret.uvalue is set to zero".
#[test]
fn write_byte() {
    let mut env = MockEnv::new(1);
    assert_eq!(
        env.ret(eid::DBCN, f::CONSOLE_WRITE_BYTE, &[b'A' as u64]),
        ok(0)
    );
    assert_eq!(
        env.ret(eid::DBCN, f::CONSOLE_WRITE_BYTE, &[0xFFFF_FFFF_FFFF_FF42]),
        ok(0)
    );
    assert_eq!(env.console_out, b"AB");
}

/// binary-encoding.adoc: unsupported FID → NOT_SUPPORTED.
#[test]
fn unknown_dbcn_fid() {
    let mut env = MockEnv::new(1);
    for fid in [3, u64::MAX] {
        assert_eq!(
            env.ret(eid::DBCN, fid, &[1, RAM_BASE, 0]),
            err(error::NOT_SUPPORTED)
        );
    }
    assert!(env.console_out.is_empty());
}
