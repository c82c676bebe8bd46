//! Malformed blobs: `parse_host` must return `Err` (or, for a mutation that
//! happens to stay well-formed, `Ok`) and never panic, loop or overflow the
//! stack.

use rivet_devtree::{build_guest, parse_host, total_size, Device, Error, GuestDt, Region};

const FIXTURES: &[(&str, &[u8])] = &[
    ("smp1", include_bytes!("fixtures/qemu-virt-smp1.dtb")),
    ("smp2", include_bytes!("fixtures/qemu-virt-smp2.dtb")),
    ("smp4", include_bytes!("fixtures/qemu-virt-smp4.dtb")),
    (
        "nosstc",
        include_bytes!("fixtures/qemu-virt-smp2-nosstc.dtb"),
    ),
    ("aia", include_bytes!("fixtures/qemu-virt-aia-smp2.dtb")),
    (
        "opensbi",
        include_bytes!("fixtures/opensbi-virt-smp2-initrd.dtb"),
    ),
];

/// xorshift64*: deterministic, dependency-free randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn be32_at(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn set_be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn guest_blob() -> Vec<u8> {
    let virtio = [Device {
        base: 0x1000_1000,
        size: 0x1000,
        irq: Some(1),
    }];
    build_guest(&GuestDt {
        vcpus: 2,
        isa_extensions: &["i", "m", "a", "c", "sstc"],
        cboz_block_size: None,
        rng_seed: None,
        mmu_type: "riscv,sv39",
        timebase_frequency: 10_000_000,
        memory: Region::new(0x8000_0000, 0x800_0000),
        bootargs: "console=ttyS0",
        initrd: Some(Region::new(0x8400_0000, 0x1000)),
        plic: Device {
            base: 0xc00_0000,
            size: 0x60_0000,
            irq: None,
        },
        plic_ndev: 31,
        uart: Some(Device {
            base: 0x1000_0000,
            size: 0x100,
            irq: Some(10),
        }),
        uart_clock: 3_686_400,
        virtio_mmio: &virtio,
    })
    .unwrap()
}

fn all_blobs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = FIXTURES
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    v.push(("guest".into(), guest_blob()));
    v
}

#[test]
fn fixtures_parse() {
    for (name, blob) in all_blobs() {
        assert!(parse_host(&blob).is_ok(), "{name}");
    }
}

#[test]
fn empty_short_and_garbage() {
    assert_eq!(parse_host(&[]), Err(Error::Truncated));
    assert_eq!(parse_host(&[0xd0, 0x0d, 0xfe, 0xed]), Err(Error::Truncated));
    assert_eq!(parse_host(&[0u8; 39]), Err(Error::Truncated));
    assert_eq!(parse_host(&[0u8; 4096]), Err(Error::BadMagic));
    assert_eq!(parse_host(&[0xffu8; 4096]), Err(Error::BadMagic));
    assert_eq!(
        parse_host(b"this is not a device tree blob, not even close......"),
        Err(Error::BadMagic)
    );
    // Little-endian magic.
    let mut le = FIXTURES[0].1.to_vec();
    le[..4].copy_from_slice(&0xd00d_feedu32.to_le_bytes());
    assert_eq!(parse_host(&le), Err(Error::BadMagic));

    let mut rng = Rng(0x1234_5678_9abc_def1);
    for len in 0..2048 {
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(parse_host(&b).is_err());
        if len >= 8 {
            // Valid magic and a plausible size, garbage after.
            set_be32(&mut b, 0, 0xd00d_feed);
            set_be32(&mut b, 4, len as u32);
            assert!(parse_host(&b).is_err());
        }
    }
}

#[test]
fn truncation_sweep() {
    for (name, blob) in all_blobs() {
        let total = blob.len();
        assert_eq!(total_size(&blob), Ok(total));
        // Cut everywhere in the first 512 bytes and the last 512 bytes (and
        // every 7th length in between): always Truncated, since the header's
        // totalsize no longer fits.
        let lens = (0..total)
            .filter(|&l| l < 512 || l + 512 > total || l % 7 == 0)
            .collect::<Vec<_>>();
        for &len in &lens {
            let r = parse_host(&blob[..len]);
            assert!(r.is_err(), "{name}: cut at {len} parsed");
        }
        // Cut *and* fix up totalsize, so the reader walks into the missing
        // tail: still never a panic; some cuts land past the struct and
        // strings blocks only if nothing is missing.
        for &len in &lens {
            if len < 40 {
                continue;
            }
            let mut b = blob[..len].to_vec();
            set_be32(&mut b, 4, len as u32);
            let _ = parse_host(&b);
            // And shrink the blocks to what is left.
            let off_struct = be32_at(&b, 8) as usize;
            let off_strings = be32_at(&b, 12) as usize;
            if off_struct < len {
                set_be32(&mut b, 36, (len.min(off_strings) - off_struct) as u32);
            }
            if off_strings < len {
                set_be32(&mut b, 32, (len - off_strings) as u32);
            }
            let _ = parse_host(&b);
        }
    }
}

#[test]
fn random_byte_flips() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for (name, blob) in all_blobs() {
        let mut errs = 0;
        let rounds = 20_000;
        for round in 0..rounds {
            let mut b = blob.clone();
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            match std::panic::catch_unwind(|| parse_host(&b)) {
                Ok(r) => errs += r.is_err() as u32,
                Err(_) => panic!("{name}: panic in round {round}"),
            }
        }
        // Sanity: the mutations are not all harmless.
        assert!(errs > 0, "{name}: no mutation was rejected");
    }
}

#[test]
fn random_word_overwrites() {
    // Overwrite aligned words with values that are likely to be tokens,
    // lengths or offsets, which single bit flips rarely produce.
    const INTERESTING: &[u32] = &[
        0,
        1,
        2,
        3,
        4,
        5,
        8,
        9,
        0x10,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x1000,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffc,
        0xffff_fffe,
        0xffff_ffff,
    ];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for (name, blob) in all_blobs() {
        for round in 0..20_000 {
            let mut b = blob.clone();
            for _ in 0..1 + rng.below(4) {
                let off = rng.below(b.len() / 4) * 4;
                let v = if rng.below(4) == 0 {
                    rng.next() as u32
                } else {
                    INTERESTING[rng.below(INTERESTING.len())]
                };
                set_be32(&mut b, off, v);
            }
            if std::panic::catch_unwind(|| parse_host(&b)).is_err() {
                panic!("{name}: panic in round {round}");
            }
        }
        // Every header field, every interesting value.
        for field in 1..10 {
            for &v in INTERESTING {
                let mut b = blob.clone();
                set_be32(&mut b, field * 4, v);
                if std::panic::catch_unwind(|| parse_host(&b)).is_err() {
                    panic!("{name}: panic with header word {field} = {v:#x}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hand-assembled structure blocks.

const BEGIN: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// Token stream builder.
#[derive(Default)]
struct S {
    structs: Vec<u8>,
    strings: Vec<u8>,
}

impl S {
    fn tok(&mut self, t: u32) -> &mut Self {
        self.structs.extend_from_slice(&t.to_be_bytes());
        self
    }
    fn begin(&mut self, name: &str) -> &mut Self {
        self.tok(BEGIN);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
        self
    }
    fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.prop_raw(value.len() as u32, off, value)
    }
    fn prop_raw(&mut self, len: u32, nameoff: u32, value: &[u8]) -> &mut Self {
        self.tok(PROP).tok(len).tok(nameoff);
        self.structs.extend_from_slice(value);
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
        self
    }
    fn end(&mut self) -> &mut Self {
        self.tok(END_NODE)
    }
    /// A valid minimal host tree body (root still open).
    fn host_body(&mut self) -> &mut Self {
        self.begin("")
            .prop("#address-cells", &2u32.to_be_bytes())
            .prop("#size-cells", &2u32.to_be_bytes())
            .begin("memory@80000000")
            .prop("device_type", b"memory\0")
            .prop(
                "reg",
                &[0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
            )
            .end()
            .begin("cpus")
            .prop("#address-cells", &1u32.to_be_bytes())
            .prop("#size-cells", &0u32.to_be_bytes())
            .prop("timebase-frequency", &1000u32.to_be_bytes())
            .begin("cpu@0")
            .prop("device_type", b"cpu\0")
            .prop("reg", &0u32.to_be_bytes())
            .prop("riscv,isa", b"rv64imac\0")
            .end()
            .end()
    }
    fn blob(&self) -> Vec<u8> {
        assemble(&[], &self.structs, &self.strings)
    }
}

/// Lays out header, reservation map, structure and strings blocks.
fn assemble(rsv: &[(u64, u64)], structs: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    for &(a, s) in rsv.iter().chain(&[(0, 0)]) {
        b.extend_from_slice(&a.to_be_bytes());
        b.extend_from_slice(&s.to_be_bytes());
    }
    let off_struct = b.len();
    b.extend_from_slice(structs);
    let off_strings = b.len();
    b.extend_from_slice(strings);
    let total = b.len();
    for (i, v) in [
        0xd00d_feed,
        total as u32,
        off_struct as u32,
        off_strings as u32,
        40,
        17,
        16,
        0,
        strings.len() as u32,
        structs.len() as u32,
    ]
    .into_iter()
    .enumerate()
    {
        set_be32(&mut b, i * 4, v);
    }
    b
}

#[test]
fn assembled_valid_tree_parses() {
    let mut s = S::default();
    s.host_body().end().tok(END);
    let info = parse_host(&s.blob()).unwrap();
    assert_eq!(info.memory, vec![Region::new(0x8000_0000, 0x1000_0000)]);
    assert_eq!(info.harts[0].extensions, vec!["i", "m", "a", "c"]);

    // NOPs anywhere between tokens are fine.
    let mut s = S::default();
    s.tok(NOP)
        .begin("")
        .tok(NOP)
        .prop("#address-cells", &2u32.to_be_bytes())
        .tok(NOP);
    s.begin("memory@0")
        .prop("device_type", b"memory\0")
        .tok(NOP)
        .prop("reg", &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0])
        .end()
        .tok(NOP);
    s.begin("cpus")
        .prop("#address-cells", &1u32.to_be_bytes())
        .prop("#size-cells", &0u32.to_be_bytes())
        .begin("cpu@0")
        .prop("device_type", b"cpu\0")
        .prop("reg", &0u32.to_be_bytes())
        .prop("riscv,isa", b"rv64i\0")
        .end()
        .tok(NOP)
        // Property after a child node: tolerated.
        .prop("timebase-frequency", &1000u32.to_be_bytes())
        .end();
    s.end().tok(NOP).tok(END);
    let info = parse_host(&s.blob()).unwrap();
    assert_eq!(info.memory, vec![Region::new(0, 0x1000)]);
    assert_eq!(info.timebase_frequency, 1000);
}

fn assert_structure_error(s: &S, what: &str) {
    match parse_host(&s.blob()) {
        Err(Error::BadStructure(_)) => {}
        other => panic!("{what}: expected BadStructure, got {other:?}"),
    }
}

#[test]
fn assembled_structure_errors() {
    let mut s = S::default();
    s.host_body().end();
    assert_structure_error(&s, "missing FDT_END");

    let mut s = S::default();
    s.host_body().tok(END);
    assert_structure_error(&s, "FDT_END inside root");

    let mut s = S::default();
    s.host_body().end().end().tok(END);
    assert_structure_error(&s, "extra FDT_END_NODE");

    let mut s = S::default();
    s.host_body().end().begin("").end().tok(END);
    assert_structure_error(&s, "second root");

    let mut s = S::default();
    s.tok(END);
    assert_structure_error(&s, "no root");

    let mut s = S::default();
    s.prop("x", b"\0").host_body().end().tok(END);
    assert_structure_error(&s, "property before the root");

    let mut s = S::default();
    s.host_body().tok(7).end().tok(END);
    assert_structure_error(&s, "unknown token");

    let mut s = S::default();
    s.host_body().prop_raw(0xffff_fff0, 0, &[]).end().tok(END);
    assert_structure_error(&s, "huge property length");

    let mut s = S::default();
    s.host_body()
        .prop_raw(4, 0xffff_ff00, &[0, 0, 0, 0])
        .end()
        .tok(END);
    assert_structure_error(&s, "name offset outside strings");

    let mut s = S::default();
    s.host_body();
    s.strings.extend_from_slice(b"unterminated");
    let off = s.strings.len() as u32 - 12;
    s.prop_raw(0, off, &[]).end().tok(END);
    assert_structure_error(&s, "unterminated property name");

    let mut s = S::default();
    s.host_body();
    let off = s.strings.len() as u32;
    s.strings.extend_from_slice(b"\xff\xfe\0");
    s.prop_raw(0, off, &[]).end().tok(END);
    assert_structure_error(&s, "non-UTF-8 property name");

    let mut s = S::default();
    s.host_body().tok(BEGIN);
    s.structs.extend_from_slice(b"bad\xffname\0\0\0");
    s.end().end().tok(END);
    assert_structure_error(&s, "non-UTF-8 node name");

    let mut s = S::default();
    s.host_body().tok(BEGIN);
    s.structs.extend_from_slice(b"noterminator");
    assert_structure_error(&s, "unterminated node name");

    let mut s = S::default();
    s.host_body().begin("a/b").end().end().tok(END);
    assert_structure_error(&s, "slash in node name");
}

#[test]
fn nesting_depth_is_bounded() {
    // 63 levels below the root are fine, 64 are not; 100 000 are rejected
    // without recursion.
    for (depth, ok) in [(63usize, true), (64, false), (100_000, false)] {
        let mut s = S::default();
        s.host_body();
        for i in 0..depth {
            s.begin(&format!("n{i}"));
        }
        for _ in 0..depth {
            s.end();
        }
        s.end().tok(END);
        let r = parse_host(&s.blob());
        assert_eq!(r.is_ok(), ok, "depth {depth}: {r:?}");
    }
}

#[test]
fn header_errors() {
    let mut s = S::default();
    s.host_body().end().tok(END);
    let good = s.blob();
    assert!(parse_host(&good).is_ok());

    let patch = |field: usize, v: u32| {
        let mut b = good.clone();
        set_be32(&mut b, field * 4, v);
        parse_host(&b)
    };
    assert_eq!(
        patch(1, 8),
        Err(Error::BadHeader("totalsize smaller than the header"))
    );
    assert_eq!(patch(1, good.len() as u32 + 1), Err(Error::Truncated));
    assert!(matches!(patch(2, 0), Err(Error::BadHeader(_))));
    assert!(matches!(patch(2, 0xffff_fff0), Err(Error::BadHeader(_))));
    assert!(matches!(patch(3, 0xffff_fff0), Err(Error::BadHeader(_))));
    assert!(matches!(patch(4, 0), Err(Error::BadHeader(_))));
    assert!(matches!(
        patch(4, good.len() as u32),
        Err(Error::BadHeader(_))
    ));
    assert!(matches!(
        patch(5, 16),
        Err(Error::BadVersion { version: 16, .. })
    ));
    assert!(matches!(patch(6, 18), Err(Error::BadVersion { .. })));
    assert!(patch(7, 5).is_ok(), "boot_cpuid_phys is not checked");
    assert!(matches!(patch(8, 0xffff_ffff), Err(Error::BadHeader(_))));
    assert!(matches!(patch(9, 0xffff_ffff), Err(Error::BadHeader(_))));
    // A struct block that ends before FDT_END.
    assert!(matches!(patch(9, 8), Err(Error::BadStructure(_))));
}

#[test]
fn reservation_map_errors_and_entries() {
    let mut s = S::default();
    s.host_body().end().tok(END);
    let b = assemble(
        &[(0x8000_0000, 0x4_0000), (0x9000_0000, 0)],
        &s.structs,
        &s.strings,
    );
    // Zero-sized entries carry nothing and are dropped.
    assert_eq!(
        parse_host(&b).unwrap().reserved,
        vec![Region::new(0x8000_0000, 0x4_0000)]
    );

    // Reservation map with no terminator before the end of the blob.
    let mut b = vec![0u8; 40];
    b.extend_from_slice(&[0xaa; 16]);
    b.extend_from_slice(&[0xbb; 8]);
    for (i, v) in [0xd00d_feed, b.len() as u32, 40, 40, 40, 17, 16, 0, 0, 0]
        .into_iter()
        .enumerate()
    {
        set_be32(&mut b, i * 4, v);
    }
    assert!(matches!(parse_host(&b), Err(Error::BadHeader(_))));
}

/// Found by `cargo xtask fuzz` (target `devtree`, input kept in
/// `fuzz/regressions/devtree/reservation-entry-wraps`): a header
/// reservation entry whose end does not fit in 64 bits was passed on in
/// `HostInfo::reserved`, although the same range in `/reserved-memory` is
/// refused.
#[test]
fn reservation_entry_that_wraps_is_refused() {
    let mut s = S::default();
    s.host_body().end().tok(END);
    let b = assemble(&[(0xa_0000_0006, u64::MAX - 235)], &s.structs, &s.strings);
    assert!(matches!(parse_host(&b), Err(Error::BadHeader(_))));
    // High but representable (`Region::end` fits) is still fine.
    let b = assemble(&[(u64::MAX - 0x1fff, 0x1000)], &s.structs, &s.strings);
    assert_eq!(
        parse_host(&b).unwrap().reserved,
        vec![Region::new(u64::MAX - 0x1fff, 0x1000)]
    );
}

#[test]
fn property_shape_errors() {
    let tree = |f: &dyn Fn(&mut S)| {
        let mut s = S::default();
        s.host_body();
        f(&mut s);
        s.end().tok(END);
        parse_host(&s.blob())
    };
    let is_bad = |r: Result<_, Error>| matches!(r, Err(Error::BadProperty { .. }));

    // Duplicate or reserved phandles.
    assert!(is_bad(tree(&|s| {
        s.begin("a").prop("phandle", &5u32.to_be_bytes()).end();
        s.begin("b").prop("phandle", &5u32.to_be_bytes()).end();
    })));
    assert!(is_bad(tree(&|s| {
        s.begin("a").prop("phandle", &0u32.to_be_bytes()).end();
    })));
    assert!(is_bad(tree(&|s| {
        s.begin("a").prop("phandle", &[0, 0, 5]).end();
    })));
    // A uart whose reg does not match the cells.
    assert!(is_bad(tree(&|s| {
        s.begin("serial@0")
            .prop("compatible", b"ns16550a\0")
            .prop("reg", &[0; 12])
            .end();
    })));
    // #address-cells too large for reg.
    assert!(is_bad(tree(&|s| {
        s.begin("bus")
            .prop("#address-cells", &3u32.to_be_bytes())
            .begin("serial@0")
            .prop("compatible", b"ns16550a\0")
            .prop("reg", &[0; 20])
            .end()
            .end();
    })));
    // Unterminated string where one is needed.
    assert!(is_bad(tree(&|s| {
        s.begin("chosen").prop("bootargs", b"console=ttyS0").end();
    })));
    // interrupts with a partial cell.
    assert!(is_bad(tree(&|s| {
        s.begin("serial@0")
            .prop("compatible", b"ns16550a\0")
            .prop("reg", &[0; 16])
            .prop("interrupts", &[0, 0, 10])
            .end();
    })));
    // PLIC without riscv,ndev, and with a truncated interrupts-extended.
    assert!(matches!(
        tree(&|s| {
            s.begin("plic@0")
                .prop("compatible", b"riscv,plic0\0")
                .prop("reg", &[0; 16])
                .end();
        }),
        Err(Error::MissingProperty {
            property: "riscv,ndev",
            ..
        })
    ));
    assert!(is_bad(tree(&|s| {
        s.begin("plic@0")
            .prop("compatible", b"riscv,plic0\0")
            .prop("reg", &[0; 16])
            .prop("riscv,ndev", &1u32.to_be_bytes())
            .prop("interrupts-extended", &0xffff_ffffu32.to_be_bytes())
            .end();
    })));
    // Disabled nodes are not inspected at all.
    assert!(tree(&|s| {
        s.begin("serial@0")
            .prop("compatible", b"ns16550a\0")
            .prop("status", b"disabled\0")
            .prop("reg", &[1, 2, 3])
            .end();
    })
    .is_ok());
}
