//! `parse_host` against real QEMU 10 `virt` blobs (see `fixtures/README.md`)
//! and hand-built ones for what QEMU's dump lacks.

use rivet_devtree::{parse_host, total_size, Device, Error, HostInfo, Region, PLIC_CONTEXT_ABSENT};
use vm_fdt::{FdtReserveEntry, FdtWriter};

const SMP1: &[u8] = include_bytes!("fixtures/qemu-virt-smp1.dtb");
const SMP2: &[u8] = include_bytes!("fixtures/qemu-virt-smp2.dtb");
const SMP4: &[u8] = include_bytes!("fixtures/qemu-virt-smp4.dtb");
const SMP2_NOSSTC: &[u8] = include_bytes!("fixtures/qemu-virt-smp2-nosstc.dtb");
const AIA_SMP2: &[u8] = include_bytes!("fixtures/qemu-virt-aia-smp2.dtb");
const OPENSBI: &[u8] = include_bytes!("fixtures/opensbi-virt-smp2-initrd.dtb");

const GIB: u64 = 1 << 30;

fn parse(blob: &[u8]) -> HostInfo {
    parse_host(blob).unwrap_or_else(|e| panic!("parse_host failed: {e}"))
}

/// What every QEMU `virt` (PLIC flavour) fixture has in common.
fn check_qemu_virt(info: &HostInfo, harts: u64) {
    assert_eq!(info.memory, vec![Region::new(0x8000_0000, GIB)]);
    assert_eq!(info.timebase_frequency, 10_000_000);
    assert_eq!(
        info.uart,
        Some(Device {
            base: 0x1000_0000,
            size: 0x100,
            irq: Some(10)
        })
    );

    // QEMU's test finisher (used to report a failure exit status).
    assert_eq!(
        info.test_finisher.map(|d| (d.base, d.size)),
        Some((0x10_0000, 0x1000))
    );

    assert_eq!(info.virtio_mmio.len(), 8);
    for (i, d) in info.virtio_mmio.iter().enumerate() {
        let i = i as u64;
        assert_eq!(d.base, 0x1000_1000 + i * 0x1000, "virtio #{i}");
        assert_eq!(d.size, 0x1000);
        assert_eq!(d.irq, Some(i as u32 + 1));
    }

    assert_eq!(info.harts.len() as u64, harts);
    for (i, h) in info.harts.iter().enumerate() {
        assert_eq!(h.hartid, i as u64);
        assert!(h.enabled);
        assert!(h.isa.starts_with("rv64imafdch_"), "{}", h.isa);
        assert_eq!(h.mmu.as_deref(), Some("riscv,sv57"));
        for e in [
            "i", "m", "a", "f", "d", "c", "h", "zicsr", "zifencei", "zicntr", "svadu",
        ] {
            assert!(h.has_extension(e), "hart {i} lacks {e}");
        }
        assert!(h.has_extension("H"), "case-insensitive lookup");
        assert!(!h.has_extension("v"));
        assert!(!h.has_extension("smaia"));
    }
}

#[test]
fn qemu_smp1() {
    let info = parse(SMP1);
    check_qemu_virt(&info, 1);
    let plic = info.plic.as_ref().unwrap();
    assert_eq!(
        (plic.base, plic.size, plic.ndev),
        (0x0c00_0000, 0x60_0000, 0x5f)
    );
    assert_eq!(plic.contexts, vec![(0, 11), (0, 9)]);
    assert_eq!(plic.s_context(0), Some(1));
    assert_eq!(plic.context(0, 11), Some(0));
    assert_eq!(info.initrd, None);
    assert_eq!(info.bootargs, None);
    assert!(info.reserved.is_empty());
}

#[test]
fn qemu_smp2() {
    let info = parse(SMP2);
    check_qemu_virt(&info, 2);
    let plic = info.plic.as_ref().unwrap();
    assert_eq!(plic.contexts, vec![(0, 11), (0, 9), (1, 11), (1, 9)]);
    assert_eq!(plic.s_context(0), Some(1));
    assert_eq!(plic.s_context(1), Some(3));
    assert_eq!(plic.s_context(2), None);
    assert!(info.harts.iter().all(|h| h.has_extension("sstc")));
}

#[test]
fn qemu_smp4() {
    let info = parse(SMP4);
    check_qemu_virt(&info, 4);
    let plic = info.plic.as_ref().unwrap();
    assert_eq!(plic.contexts.len(), 8);
    for h in 0..4u64 {
        assert_eq!(plic.s_context(h), Some(2 * h as usize + 1));
        assert_eq!(plic.context(h, 11), Some(2 * h as usize));
    }
    assert_eq!(info.hart(3).map(|h| h.hartid), Some(3));
    assert!(info.hart(4).is_none());
}

#[test]
fn qemu_sstc_off() {
    let with = parse(SMP2);
    let without = parse(SMP2_NOSSTC);
    check_qemu_virt(&without, 2);
    for h in &without.harts {
        assert!(!h.has_extension("sstc"));
        assert!(!h.isa.contains("sstc"));
        assert!(h.has_extension("h"));
    }
    // Nothing else about the harts changed.
    for (a, b) in with.harts.iter().zip(&without.harts) {
        let a_rest: Vec<_> = a.extensions.iter().filter(|e| *e != "sstc").collect();
        let b_rest: Vec<_> = b.extensions.iter().collect();
        assert_eq!(a_rest, b_rest);
    }
}

#[test]
fn qemu_aia_has_no_plic() {
    let info = parse(AIA_SMP2);
    assert!(info.plic.is_none());
    assert_eq!(info.harts.len(), 2);
    assert!(info.harts[0].has_extension("smaia"));
    assert!(info.harts[0].has_extension("ssaia"));
    // APLIC uses two interrupt cells; the first is the source number.
    assert_eq!(info.uart.unwrap().irq, Some(10));
    assert_eq!(info.virtio_mmio.len(), 8);
    assert_eq!(info.virtio_mmio[0].irq, Some(1));
    assert_eq!(info.memory, vec![Region::new(0x8000_0000, GIB)]);
}

#[test]
fn extensions_list_matches_isa_string() {
    // The fixtures carry both riscv,isa and riscv,isa-extensions: deriving
    // the list from the string must give the same set.
    for blob in [SMP1, SMP2, SMP4, SMP2_NOSSTC, AIA_SMP2] {
        let info = parse(blob);
        for h in &info.harts {
            // isa_string puts them in canonical order, which QEMU also uses.
            let exts: Vec<&str> = h.extensions.iter().map(String::as_str).collect();
            assert_eq!(rivet_devtree::isa_string(&exts), h.isa);
        }
    }
}

#[test]
fn opensbi_fixed_blob() {
    // Dumped from guest RAM after OpenSBI handed over (fixtures/README.md):
    // reserved-memory for its own image, M-mode PLIC contexts masked off,
    // initrd and bootargs in /chosen.
    let info = parse(OPENSBI);
    check_qemu_virt(&info, 2);
    assert_eq!(
        info.reserved,
        vec![
            Region::new(0x8000_0000, 0x4_0000),
            Region::new(0x8004_0000, 0x2_0000)
        ]
    );
    assert_eq!(info.initrd, Some(Region::new(0xa020_0000, 0x1000)));
    assert_eq!(info.bootargs.as_deref(), Some("console=ttyS0 earlycon"));
    let plic = info.plic.as_ref().unwrap();
    assert_eq!(
        plic.contexts,
        vec![
            (0, PLIC_CONTEXT_ABSENT),
            (0, 9),
            (1, PLIC_CONTEXT_ABSENT),
            (1, 9)
        ]
    );
    assert_eq!(plic.s_context(0), Some(1));
    assert_eq!(plic.s_context(1), Some(3));
    assert_eq!(plic.context(0, 11), None);
    assert_eq!(plic.context(0, PLIC_CONTEXT_ABSENT), None);
}

#[test]
fn total_size_of_fixtures() {
    for blob in [SMP1, SMP2, SMP4, SMP2_NOSSTC, AIA_SMP2, OPENSBI] {
        assert_eq!(total_size(&blob[..40]), Ok(blob.len()));
    }
}

#[test]
fn trailing_bytes_after_totalsize_are_ignored() {
    let mut blob = SMP2.to_vec();
    blob.extend_from_slice(&[0xff; 100]);
    assert_eq!(parse(&blob), parse(SMP2));
}

// ---------------------------------------------------------------------------
// Hand-built blobs.

/// A minimal host tree; `extra` adds nodes/properties to it.
fn minimal(
    reservations: &[FdtReserveEntry],
    chosen: impl FnOnce(&mut FdtWriter),
    extra: impl FnOnce(&mut FdtWriter),
) -> Vec<u8> {
    let mut w = FdtWriter::new_with_mem_reserv(reservations).unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();

    let c = w.begin_node("chosen").unwrap();
    chosen(&mut w);
    w.end_node(c).unwrap();

    let m = w.begin_node("memory@80000000").unwrap();
    w.property_string("device_type", "memory").unwrap();
    w.property_array_u64("reg", &[0x8000_0000, 0x1000_0000])
        .unwrap();
    w.end_node(m).unwrap();

    let cpus = w.begin_node("cpus").unwrap();
    w.property_u32("#address-cells", 1).unwrap();
    w.property_u32("#size-cells", 0).unwrap();
    w.property_u32("timebase-frequency", 1_000_000).unwrap();
    let cpu = w.begin_node("cpu@0").unwrap();
    w.property_string("device_type", "cpu").unwrap();
    w.property_u32("reg", 0).unwrap();
    w.property_string("riscv,isa", "rv64imac_zicsr").unwrap();
    w.end_node(cpu).unwrap();
    w.end_node(cpus).unwrap();

    extra(&mut w);
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

#[test]
fn minimal_tree_defaults() {
    let info = parse(&minimal(&[], |_| {}, |_| {}));
    assert_eq!(info.memory, vec![Region::new(0x8000_0000, 0x1000_0000)]);
    assert_eq!(info.harts.len(), 1);
    let h = &info.harts[0];
    assert_eq!(h.isa, "rv64imac_zicsr");
    assert_eq!(h.extensions, vec!["i", "m", "a", "c", "zicsr"]);
    assert!(!h.has_extension("h"));
    assert_eq!(h.mmu, None);
    assert!(info.uart.is_none() && info.plic.is_none() && info.virtio_mmio.is_empty());
    assert!(info.reserved.is_empty());
}

#[test]
fn initrd_with_32bit_cells() {
    let blob = minimal(
        &[],
        |w| {
            w.property_u32("linux,initrd-start", 0x8400_0000).unwrap();
            w.property_u32("linux,initrd-end", 0x8480_0000).unwrap();
            w.property_string("bootargs", "root=/dev/ram0").unwrap();
        },
        |_| {},
    );
    let info = parse(&blob);
    assert_eq!(info.initrd, Some(Region::new(0x8400_0000, 0x80_0000)));
    assert_eq!(info.bootargs.as_deref(), Some("root=/dev/ram0"));
}

#[test]
fn initrd_with_64bit_cells_and_mixed() {
    let blob = minimal(
        &[],
        |w| {
            w.property_u64("linux,initrd-start", 0x1_2000_0000).unwrap();
            w.property_u64("linux,initrd-end", 0x1_2000_1000).unwrap();
        },
        |_| {},
    );
    assert_eq!(
        parse(&blob).initrd,
        Some(Region::new(0x1_2000_0000, 0x1000))
    );

    let blob = minimal(
        &[],
        |w| {
            w.property_u32("linux,initrd-start", 0x9000_0000).unwrap();
            w.property_u64("linux,initrd-end", 0x9000_2000).unwrap();
        },
        |_| {},
    );
    assert_eq!(parse(&blob).initrd, Some(Region::new(0x9000_0000, 0x2000)));
}

#[test]
fn initrd_errors() {
    let half = minimal(
        &[],
        |w| w.property_u64("linux,initrd-start", 0x9000_0000).unwrap(),
        |_| {},
    );
    assert!(matches!(
        parse_host(&half),
        Err(Error::MissingProperty {
            property: "linux,initrd-end",
            ..
        })
    ));
    let backwards = minimal(
        &[],
        |w| {
            w.property_u64("linux,initrd-start", 0x9000_0000).unwrap();
            w.property_u64("linux,initrd-end", 0x8000_0000).unwrap();
        },
        |_| {},
    );
    assert!(matches!(
        parse_host(&backwards),
        Err(Error::BadProperty { .. })
    ));
    let odd = minimal(
        &[],
        |w| {
            w.property("linux,initrd-start", &[0, 0, 1]).unwrap();
            w.property_u32("linux,initrd-end", 0).unwrap();
        },
        |_| {},
    );
    assert!(matches!(parse_host(&odd), Err(Error::BadProperty { .. })));
}

#[test]
fn reserved_memory_and_header_reservations() {
    let rsv = [
        FdtReserveEntry::new(0xbfe0_0000, 0x1_0000).unwrap(),
        FdtReserveEntry::new(0x8800_0000, 0x1000).unwrap(),
    ];
    let blob = minimal(
        &rsv,
        |_| {},
        |w| {
            let rm = w.begin_node("reserved-memory").unwrap();
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            w.property_null("ranges").unwrap();
            let a = w.begin_node("mmode_resv0@80040000").unwrap();
            w.property_array_u64("reg", &[0x8004_0000, 0x2_0000])
                .unwrap();
            w.property_null("no-map").unwrap();
            w.end_node(a).unwrap();
            let b = w.begin_node("mmode_resv1@80000000").unwrap();
            w.property_array_u64("reg", &[0x8000_0000, 0x4_0000])
                .unwrap();
            w.property_null("no-map").unwrap();
            w.end_node(b).unwrap();
            // Dynamic allocation request: reserves nothing yet.
            let c = w.begin_node("linux,cma").unwrap();
            w.property_u64("size", 0x100_0000).unwrap();
            w.end_node(c).unwrap();
            // Disabled: ignored.
            let d = w.begin_node("off@90000000").unwrap();
            w.property_array_u64("reg", &[0x9000_0000, 0x1000]).unwrap();
            w.property_string("status", "disabled").unwrap();
            w.end_node(d).unwrap();
            w.end_node(rm).unwrap();
        },
    );
    let info = parse(&blob);
    assert_eq!(
        info.reserved,
        vec![
            Region::new(0x8000_0000, 0x4_0000),
            Region::new(0x8004_0000, 0x2_0000),
            Region::new(0x8800_0000, 0x1000),
            Region::new(0xbfe0_0000, 0x1_0000),
        ]
    );
}

#[test]
fn reserved_memory_with_one_cell_addresses() {
    let blob = minimal(
        &[],
        |_| {},
        |w| {
            let rm = w.begin_node("reserved-memory").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            w.property_null("ranges").unwrap();
            let a = w.begin_node("fw@80000000").unwrap();
            w.property_array_u32("reg", &[0x8000_0000, 0x8_0000, 0x8010_0000, 0x1000])
                .unwrap();
            w.end_node(a).unwrap();
            w.end_node(rm).unwrap();
        },
    );
    assert_eq!(
        parse(&blob).reserved,
        vec![
            Region::new(0x8000_0000, 0x8_0000),
            Region::new(0x8010_0000, 0x1000)
        ]
    );
}

/// A `/soc` with the given cells/ranges holding a UART, a PLIC and virtio
/// nodes; a second, disabled UART comes first in document order.
fn soc_blob(ac: u32, sc: u32, ranges: &[u32], addr: impl Fn(u64, u64) -> Vec<u32>) -> Vec<u8> {
    minimal(
        &[],
        |_| {},
        |w| {
            let soc = w.begin_node("soc").unwrap();
            w.property_u32("#address-cells", ac).unwrap();
            w.property_u32("#size-cells", sc).unwrap();
            w.property_string("compatible", "simple-bus").unwrap();
            w.property_array_u32("ranges", ranges).unwrap();

            let off = w.begin_node("serial@0").unwrap();
            w.property_string("compatible", "ns16550a").unwrap();
            w.property_array_u32("reg", &addr(0, 0x100)).unwrap();
            w.property_string("status", "disabled").unwrap();
            w.end_node(off).unwrap();

            let virtio2 = w.begin_node("virtio_mmio@2000").unwrap();
            w.property_string("compatible", "virtio,mmio").unwrap();
            w.property_array_u32("reg", &addr(0x2000, 0x1000)).unwrap();
            w.property_u32("interrupts", 2).unwrap();
            w.end_node(virtio2).unwrap();

            let virtio1 = w.begin_node("virtio_mmio@1000").unwrap();
            w.property_string("compatible", "virtio,mmio").unwrap();
            w.property_array_u32("reg", &addr(0x1000, 0x1000)).unwrap();
            w.property_array_u32("interrupts-extended", &[7, 1])
                .unwrap();
            w.end_node(virtio1).unwrap();

            let uart = w.begin_node("serial@3000").unwrap();
            w.property_string_list(
                "compatible",
                vec!["snps,dw-apb-uart".into(), "ns16550a".into()],
            )
            .unwrap();
            w.property_array_u32("reg", &addr(0x3000, 0x100)).unwrap();
            w.property_string("status", "okay").unwrap();
            w.end_node(uart).unwrap();

            let plic = w.begin_node("interrupt-controller@100000").unwrap();
            w.property_string("compatible", "riscv,plic0").unwrap();
            w.property_array_u32("reg", &addr(0x10_0000, 0x40_0000))
                .unwrap();
            w.property_u32("riscv,ndev", 31).unwrap();
            w.property_u32("#interrupt-cells", 1).unwrap();
            w.property_null("interrupt-controller").unwrap();
            // 0xffffffff phandle: skipped but counted; then hart 0 S-mode.
            w.property_array_u32("interrupts-extended", &[0xffff_ffff, 0xffff_ffff, 0x42, 9])
                .unwrap();
            w.property_phandle(7).unwrap();
            w.end_node(plic).unwrap();

            w.end_node(soc).unwrap();
        },
    )
}

#[test]
fn soc_one_cell_with_ranges_translation() {
    // Bus addresses 0.. map to CPU physical 0x1000_0000.. (one window).
    let blob = soc_blob_with_intc(1, 1, &[0, 0, 0x1000_0000, 0x1000_0000], |a, s| {
        vec![a as u32, s as u32]
    });
    let info = parse(&blob);
    assert_eq!(
        info.uart,
        Some(Device {
            base: 0x1000_3000,
            size: 0x100,
            irq: None
        })
    );
    assert_eq!(
        info.virtio_mmio,
        vec![
            Device {
                base: 0x1000_1000,
                size: 0x1000,
                irq: Some(1)
            },
            Device {
                base: 0x1000_2000,
                size: 0x1000,
                irq: Some(2)
            },
        ]
    );
    let plic = info.plic.unwrap();
    assert_eq!(
        (plic.base, plic.size, plic.ndev),
        (0x1010_0000, 0x40_0000, 31)
    );
    assert_eq!(plic.contexts, vec![(u64::MAX, PLIC_CONTEXT_ABSENT), (0, 9)]);
    assert_eq!(plic.s_context(0), Some(1));
}

#[test]
fn soc_two_cells_empty_ranges() {
    let blob = soc_blob_with_intc(2, 2, &[], |a, s| {
        vec![0, (a + 0x1000_0000) as u32, 0, s as u32]
    });
    let info = parse(&blob);
    assert_eq!(info.uart.unwrap().base, 0x1000_3000);
    assert_eq!(info.virtio_mmio[0].base, 0x1000_1000);
}

#[test]
fn soc_address_outside_ranges_is_an_error() {
    let blob = soc_blob_with_intc(1, 1, &[0, 0, 0x1000_0000, 0x1000], |a, s| {
        vec![a as u32, s as u32]
    });
    assert!(matches!(
        parse_host(&blob),
        Err(Error::BadProperty {
            property: "ranges",
            ..
        })
    ));
}

/// [`soc_blob`] plus a cpu interrupt controller with phandle 0x42.
fn soc_blob_with_intc(
    ac: u32,
    sc: u32,
    ranges: &[u32],
    addr: impl Fn(u64, u64) -> Vec<u32>,
) -> Vec<u8> {
    rebuild_with_intc(&soc_blob(ac, sc, ranges, addr))
}

/// Re-emits `blob` with an `interrupt-controller` (phandle 0x42) under
/// `/cpus/cpu@0`, using the `fdt` crate to walk the original.
fn rebuild_with_intc(blob: &[u8]) -> Vec<u8> {
    let fdt = fdt::Fdt::new(blob).unwrap();
    let mut w = FdtWriter::new().unwrap();
    fn copy(w: &mut FdtWriter, node: fdt::node::FdtNode<'_, '_>, name: &str, path: &str) {
        let n = w.begin_node(name).unwrap();
        for p in node.properties() {
            w.property(p.name, p.value).unwrap();
        }
        for c in node.children() {
            let child_path = format!("{path}/{}", c.name);
            copy(w, c, c.name, &child_path);
        }
        if path == "/cpus/cpu@0" {
            let i = w.begin_node("interrupt-controller").unwrap();
            w.property_u32("#interrupt-cells", 1).unwrap();
            w.property_null("interrupt-controller").unwrap();
            w.property_string("compatible", "riscv,cpu-intc").unwrap();
            w.property_phandle(0x42).unwrap();
            w.end_node(i).unwrap();
        }
        w.end_node(n).unwrap();
    }
    copy(&mut w, fdt.find_node("/").unwrap(), "", "");
    w.finish().unwrap()
}

#[test]
fn plic_phandle_not_a_cpu_intc_is_an_error() {
    // The PLIC refers to phandle 0x42, which nothing carries.
    let blob = soc_blob(1, 1, &[], |a, s| vec![a as u32, s as u32]);
    assert!(matches!(
        parse_host(&blob),
        Err(Error::BadProperty {
            property: "interrupts-extended",
            ..
        })
    ));
}

#[test]
fn missing_pieces_are_errors() {
    // No memory node.
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    let cpus = w.begin_node("cpus").unwrap();
    w.property_u32("timebase-frequency", 1).unwrap();
    w.end_node(cpus).unwrap();
    w.end_node(root).unwrap();
    let blob = w.finish().unwrap();
    assert!(matches!(parse_host(&blob), Err(Error::MissingNode(_))));

    // No /cpus.
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    let m = w.begin_node("memory@0").unwrap();
    w.property_string("device_type", "memory").unwrap();
    w.property_array_u32("reg", &[0, 0, 0x1000]).unwrap();
    w.end_node(m).unwrap();
    w.end_node(root).unwrap();
    let blob = w.finish().unwrap();
    assert_eq!(parse_host(&blob), Err(Error::MissingNode("/cpus")));
}

#[test]
fn timebase_u64_and_per_cpu() {
    let build = |on_cpus: bool, value: &[u8]| {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        let m = w.begin_node("memory@0").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u32("reg", &[0, 0, 0x1000]).unwrap();
        w.end_node(m).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        if on_cpus {
            w.property("timebase-frequency", value).unwrap();
        }
        for (i, status) in [(1u32, "okay"), (0, "disabled")] {
            let cpu = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", i).unwrap();
            w.property_string("status", status).unwrap();
            w.property_string_list(
                "riscv,isa-extensions",
                vec!["i".into(), "M".into(), "sstc".into()],
            )
            .unwrap();
            if !on_cpus {
                w.property("timebase-frequency", value).unwrap();
            }
            w.end_node(cpu).unwrap();
        }
        w.end_node(cpus).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    };
    let info = parse(&build(true, &0x1_0000_0000u64.to_be_bytes()));
    assert_eq!(info.timebase_frequency, 0x1_0000_0000);
    // Harts sorted by id, disabled one reported as such; isa built from the
    // extension list when riscv,isa is absent.
    assert_eq!(
        info.harts
            .iter()
            .map(|h| (h.hartid, h.enabled))
            .collect::<Vec<_>>(),
        vec![(0, false), (1, true)]
    );
    assert_eq!(info.harts[0].isa, "rv64im_sstc");
    assert_eq!(info.harts[0].extensions, vec!["i", "m", "sstc"]);

    let info = parse(&build(false, &12_345u32.to_be_bytes()));
    assert_eq!(info.timebase_frequency, 12_345);

    assert!(matches!(
        parse_host(&build(true, &[0, 0, 1])),
        Err(Error::BadProperty { .. })
    ));
    assert!(matches!(
        parse_host(&build(true, &[0, 0, 0, 0])),
        Err(Error::BadProperty { .. })
    ));
}
