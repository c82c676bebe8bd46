//! `build_guest`: round-trips through the independent `fdt` crate, through
//! our own `parse_host`, and (when installed) through `dtc`.

use fdt::node::FdtNode;
use fdt::Fdt;
use rivet_devtree::{build_guest, isa_string, parse_host, Device, Error, GuestDt, Region};

const EXTS: &[&str] = &[
    "i", "m", "a", "f", "d", "c", "zicntr", "zicsr", "zifencei", "zihpm", "sstc",
];
const ISA: &str = "rv64imafdc_zicntr_zicsr_zifencei_zihpm_sstc";

fn virtio() -> Vec<Device> {
    (0..4u64)
        .map(|i| Device {
            base: 0x1000_1000 + i * 0x1000,
            size: 0x1000,
            irq: Some(i as u32 + 1),
        })
        .collect()
}

fn cfg<'a>(vcpus: u32, virtio: &'a [Device]) -> GuestDt<'a> {
    GuestDt {
        vcpus,
        isa_extensions: EXTS,
        cboz_block_size: None,
        rng_seed: None,
        mmu_type: "riscv,sv48",
        timebase_frequency: 10_000_000,
        memory: Region::new(0x8000_0000, 0x1000_0000),
        bootargs: "console=ttyS0 earlycon root=/dev/vda",
        initrd: Some(Region::new(0x8800_0000, 0x12_3456)),
        plic: Device {
            base: 0x0c00_0000,
            size: 0x60_0000,
            irq: None,
        },
        plic_ndev: 0x5f,
        uart: Some(Device {
            base: 0x1000_0000,
            size: 0x100,
            irq: Some(10),
        }),
        uart_clock: 3_686_400,
        virtio_mmio: virtio,
    }
}

fn node<'b, 'a>(fdt: &'b Fdt<'a>, path: &str) -> FdtNode<'b, 'a> {
    fdt.find_node(path)
        .unwrap_or_else(|| panic!("no node {path}"))
}

fn prop<'a>(n: FdtNode<'_, 'a>, name: &str) -> &'a [u8] {
    n.property(name)
        .unwrap_or_else(|| panic!("{} lacks {name}", n.name))
        .value
}

fn u32s(v: &[u8]) -> Vec<u32> {
    assert_eq!(v.len() % 4, 0);
    v.chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn u64s(v: &[u8]) -> Vec<u64> {
    assert_eq!(v.len() % 8, 0);
    v.chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn str_prop<'a>(n: FdtNode<'_, 'a>, name: &str) -> &'a str {
    let v = prop(n, name);
    assert_eq!(v.last(), Some(&0), "{name} not NUL-terminated");
    std::str::from_utf8(&v[..v.len() - 1]).unwrap()
}

fn strings<'a>(n: FdtNode<'_, 'a>, name: &str) -> Vec<&'a str> {
    let v = prop(n, name);
    assert_eq!(v.last(), Some(&0));
    std::str::from_utf8(&v[..v.len() - 1])
        .unwrap()
        .split('\0')
        .collect()
}

fn phandle_of(n: FdtNode<'_, '_>) -> u32 {
    u32s(prop(n, "phandle"))[0]
}

#[test]
fn root_and_chosen() {
    let v = virtio();
    let dtb = build_guest(&cfg(2, &v)).unwrap();
    let fdt = Fdt::new(&dtb).unwrap();

    let root = node(&fdt, "/");
    assert_eq!(u32s(prop(root, "#address-cells")), [2]);
    assert_eq!(u32s(prop(root, "#size-cells")), [2]);
    assert_eq!(str_prop(root, "compatible"), "rivet,vm");
    assert_eq!(str_prop(root, "model"), "Rivet VM");
    assert_eq!(fdt.root().model(), "Rivet VM");

    let chosen = fdt.chosen();
    assert_eq!(
        chosen.bootargs(),
        Some("console=ttyS0 earlycon root=/dev/vda")
    );
    assert_eq!(chosen.stdout().map(|n| n.name), Some("serial@10000000"));
    let chosen = node(&fdt, "/chosen");
    assert_eq!(str_prop(chosen, "stdout-path"), "/soc/serial@10000000");
    // u64 cells even though the values fit in 32 bits.
    assert_eq!(prop(chosen, "linux,initrd-start").len(), 8);
    assert_eq!(u64s(prop(chosen, "linux,initrd-start")), [0x8800_0000]);
    assert_eq!(u64s(prop(chosen, "linux,initrd-end")), [0x8812_3456]);

    let aliases = node(&fdt, "/aliases");
    assert_eq!(str_prop(aliases, "serial0"), "/soc/serial@10000000");

    let mem = node(&fdt, "/memory@80000000");
    assert_eq!(str_prop(mem, "device_type"), "memory");
    assert_eq!(u64s(prop(mem, "reg")), [0x8000_0000, 0x1000_0000]);
    let regions: Vec<_> = fdt.memory().regions().collect();
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].starting_address as usize, 0x8000_0000);
    assert_eq!(regions[0].size, Some(0x1000_0000));
}

#[test]
fn cpus_and_intcs() {
    for vcpus in [1u32, 2, 3, 8, 64] {
        let v = virtio();
        let dtb = build_guest(&cfg(vcpus, &v)).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();

        let cpus = node(&fdt, "/cpus");
        assert_eq!(u32s(prop(cpus, "#address-cells")), [1]);
        assert_eq!(u32s(prop(cpus, "#size-cells")), [0]);
        assert_eq!(u32s(prop(cpus, "timebase-frequency")), [10_000_000]);
        assert_eq!(fdt.cpus().count(), vcpus as usize);

        let mut cpu_phandles = Vec::new();
        let mut intc_phandles = Vec::new();
        for i in 0..vcpus {
            let cpu = node(&fdt, &format!("/cpus/cpu@{i:x}"));
            assert_eq!(str_prop(cpu, "device_type"), "cpu");
            assert_eq!(u32s(prop(cpu, "reg")), [i]);
            assert_eq!(str_prop(cpu, "status"), "okay");
            assert_eq!(str_prop(cpu, "compatible"), "riscv");
            assert_eq!(str_prop(cpu, "riscv,isa"), ISA);
            assert_eq!(str_prop(cpu, "riscv,isa-base"), "rv64i");
            assert_eq!(strings(cpu, "riscv,isa-extensions"), EXTS);
            assert_eq!(str_prop(cpu, "mmu-type"), "riscv,sv48");
            cpu_phandles.push(phandle_of(cpu));

            let intc = node(&fdt, &format!("/cpus/cpu@{i:x}/interrupt-controller"));
            assert_eq!(str_prop(intc, "compatible"), "riscv,cpu-intc");
            assert_eq!(u32s(prop(intc, "#interrupt-cells")), [1]);
            assert!(prop(intc, "interrupt-controller").is_empty());
            intc_phandles.push(phandle_of(intc));
        }
        for (i, c) in fdt.cpus().enumerate() {
            assert_eq!(c.ids().first(), i);
        }

        // cpu-map/cluster0/coreN points at cpu N.
        for i in 0..vcpus {
            let core = node(&fdt, &format!("/cpus/cpu-map/cluster0/core{i}"));
            let ph = u32s(prop(core, "cpu"))[0];
            assert_eq!(ph, cpu_phandles[i as usize]);
            let target = fdt.find_phandle(ph).unwrap();
            assert_eq!(target.name, format!("cpu@{i:x}"));
        }

        // PLIC: one S-mode context per vCPU, context i = vCPU i.
        let plic = node(&fdt, "/soc/plic@c000000");
        let ie = u32s(prop(plic, "interrupts-extended"));
        assert_eq!(ie.len(), 2 * vcpus as usize);
        for (i, pair) in ie.chunks(2).enumerate() {
            assert_eq!(pair[0], intc_phandles[i], "context {i}");
            assert_eq!(pair[1], 9, "context {i}");
            let intc = fdt.find_phandle(pair[0]).unwrap();
            assert_eq!(intc.name, "interrupt-controller");
        }

        // All phandles distinct.
        let mut all: Vec<u32> = cpu_phandles.iter().chain(&intc_phandles).copied().collect();
        all.push(phandle_of(plic));
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}

#[test]
fn soc_devices() {
    let v = virtio();
    let dtb = build_guest(&cfg(2, &v)).unwrap();
    let fdt = Fdt::new(&dtb).unwrap();

    let soc = node(&fdt, "/soc");
    assert_eq!(str_prop(soc, "compatible"), "simple-bus");
    assert!(prop(soc, "ranges").is_empty());
    assert_eq!(u32s(prop(soc, "#address-cells")), [2]);
    assert_eq!(u32s(prop(soc, "#size-cells")), [2]);

    let plic = node(&fdt, "/soc/plic@c000000");
    assert_eq!(
        strings(plic, "compatible"),
        ["sifive,plic-1.0.0", "riscv,plic0"]
    );
    assert_eq!(u64s(prop(plic, "reg")), [0x0c00_0000, 0x60_0000]);
    assert_eq!(u32s(prop(plic, "#address-cells")), [0]);
    assert_eq!(u32s(prop(plic, "#interrupt-cells")), [1]);
    assert!(prop(plic, "interrupt-controller").is_empty());
    assert_eq!(u32s(prop(plic, "riscv,ndev")), [0x5f]);
    let plic_ph = phandle_of(plic);
    assert!(fdt.find_compatible(&["riscv,plic0"]).is_some());

    let uart = node(&fdt, "/soc/serial@10000000");
    assert_eq!(str_prop(uart, "compatible"), "ns16550a");
    assert_eq!(u64s(prop(uart, "reg")), [0x1000_0000, 0x100]);
    assert_eq!(u32s(prop(uart, "clock-frequency")), [3_686_400]);
    assert_eq!(u32s(prop(uart, "interrupts")), [10]);
    assert_eq!(u32s(prop(uart, "interrupt-parent")), [plic_ph]);
    assert_eq!(uart.interrupts().unwrap().collect::<Vec<_>>(), [10]);
    assert_eq!(uart.interrupt_parent().unwrap().name, "plic@c000000");
    let r = uart.reg().unwrap().next().unwrap();
    assert_eq!(
        (r.starting_address as usize, r.size),
        (0x1000_0000, Some(0x100))
    );

    let mut names = Vec::new();
    for d in &v {
        let n = node(&fdt, &format!("/soc/virtio_mmio@{:x}", d.base));
        names.push(n.name);
        assert_eq!(str_prop(n, "compatible"), "virtio,mmio");
        assert_eq!(u64s(prop(n, "reg")), [d.base, d.size]);
        assert_eq!(u32s(prop(n, "interrupts")), [d.irq.unwrap()]);
        assert_eq!(u32s(prop(n, "interrupt-parent")), [plic_ph]);
    }
    assert_eq!(
        names,
        [
            "virtio_mmio@10001000",
            "virtio_mmio@10002000",
            "virtio_mmio@10003000",
            "virtio_mmio@10004000"
        ]
    );
    assert_eq!(fdt.find_all_nodes("/soc/virtio_mmio").count(), 4);

    // Bus children in address order: plic, serial, virtio...
    let order: Vec<_> = soc.children().map(|c| c.name).collect();
    assert_eq!(
        order,
        [
            "plic@c000000",
            "serial@10000000",
            "virtio_mmio@10001000",
            "virtio_mmio@10002000",
            "virtio_mmio@10003000",
            "virtio_mmio@10004000"
        ]
    );
}

#[test]
fn no_uart_no_initrd_no_virtio() {
    let mut c = cfg(1, &[]);
    c.uart = None;
    c.initrd = None;
    c.bootargs = "";
    let dtb = build_guest(&c).unwrap();
    let fdt = Fdt::new(&dtb).unwrap();
    let chosen = node(&fdt, "/chosen");
    assert!(chosen.property("stdout-path").is_none());
    assert!(chosen.property("linux,initrd-start").is_none());
    assert!(chosen.property("linux,initrd-end").is_none());
    assert_eq!(str_prop(chosen, "bootargs"), "");
    assert!(fdt.find_node("/aliases").is_none());
    assert!(fdt.find_compatible(&["ns16550a"]).is_none());
    assert!(fdt.find_compatible(&["virtio,mmio"]).is_none());

    let info = parse_host(&dtb).unwrap();
    assert_eq!(info.uart, None);
    assert_eq!(info.initrd, None);
    assert_eq!(info.bootargs.as_deref(), Some(""));
    assert!(info.virtio_mmio.is_empty());
}

#[test]
fn unit_addresses_are_lowercase_hex_without_leading_zeros() {
    let v = [Device {
        base: 0xABC_D000,
        size: 0x200,
        irq: Some(3),
    }];
    let mut c = cfg(1, &v);
    c.memory = Region::new(0x1_0000_0000, 0x100_0000);
    c.initrd = None;
    c.uart = Some(Device {
        base: 0x0900_0000,
        size: 0x8,
        irq: Some(1),
    });
    c.plic = Device {
        base: 0x0200_0000,
        size: 0x40_0000,
        irq: None,
    };
    let dtb = build_guest(&c).unwrap();
    let fdt = Fdt::new(&dtb).unwrap();
    for path in [
        "/memory@100000000",
        "/soc/plic@2000000",
        "/soc/serial@9000000",
        "/soc/virtio_mmio@abcd000",
    ] {
        assert_eq!(
            fdt.find_node(path).map(|n| n.name),
            path.rsplit('/').next(),
            "{path}"
        );
    }
    assert_eq!(
        str_prop(node(&fdt, "/chosen"), "stdout-path"),
        "/soc/serial@9000000"
    );
}

#[test]
fn large_timebase_uses_u64() {
    let mut c = cfg(1, &[]);
    c.timebase_frequency = 0x1_0000_0001;
    let dtb = build_guest(&c).unwrap();
    let fdt = Fdt::new(&dtb).unwrap();
    assert_eq!(
        u64s(prop(node(&fdt, "/cpus"), "timebase-frequency")),
        [0x1_0000_0001]
    );
    assert_eq!(parse_host(&dtb).unwrap().timebase_frequency, 0x1_0000_0001);
    c.timebase_frequency = u64::from(u32::MAX);
    let dtb = build_guest(&c).unwrap();
    let fdt = Fdt::new(&dtb).unwrap();
    assert_eq!(
        u32s(prop(node(&fdt, "/cpus"), "timebase-frequency")),
        [u32::MAX]
    );
}

#[test]
fn isa_written_in_canonical_order() {
    let exts = ["sstc", "zifencei", "c", "a", "m", "i", "zicsr", "h", "a"];
    let mut c = cfg(1, &[]);
    c.isa_extensions = &exts;
    let dtb = build_guest(&c).unwrap();
    let fdt = Fdt::new(&dtb).unwrap();
    let cpu = node(&fdt, "/cpus/cpu@0");
    assert_eq!(str_prop(cpu, "riscv,isa"), "rv64imach_zicsr_zifencei_sstc");
    assert_eq!(str_prop(cpu, "riscv,isa"), isa_string(&exts));
    assert_eq!(
        strings(cpu, "riscv,isa-extensions"),
        ["i", "m", "a", "c", "h", "zicsr", "zifencei", "sstc"]
    );
}

#[test]
fn guest_parses_back_with_parse_host() {
    let v = virtio();
    for vcpus in [1u32, 4, 64] {
        let c = cfg(vcpus, &v);
        let dtb = build_guest(&c).unwrap();
        let info = parse_host(&dtb).unwrap();

        assert_eq!(info.memory, vec![c.memory]);
        assert!(info.reserved.is_empty());
        assert_eq!(info.timebase_frequency, c.timebase_frequency);
        assert_eq!(info.uart, c.uart);
        assert_eq!(info.virtio_mmio, v);
        assert_eq!(info.initrd, c.initrd);
        assert_eq!(info.bootargs.as_deref(), Some(c.bootargs));

        assert_eq!(info.harts.len(), vcpus as usize);
        for (i, h) in info.harts.iter().enumerate() {
            assert_eq!(h.hartid, i as u64);
            assert!(h.enabled);
            assert_eq!(h.isa, ISA);
            assert_eq!(h.extensions, EXTS);
            assert_eq!(h.mmu.as_deref(), Some("riscv,sv48"));
            assert!(h.has_extension("sstc"));
            assert!(!h.has_extension("h"));
        }

        let plic = info.plic.unwrap();
        assert_eq!(
            (plic.base, plic.size, plic.ndev),
            (c.plic.base, c.plic.size, c.plic_ndev)
        );
        let expect: Vec<(u64, u32)> = (0..u64::from(vcpus)).map(|h| (h, 9)).collect();
        assert_eq!(plic.contexts, expect);
        for h in 0..u64::from(vcpus) {
            assert_eq!(plic.s_context(h), Some(h as usize));
        }
    }
}

#[test]
fn build_is_deterministic() {
    let v = virtio();
    assert_eq!(
        build_guest(&cfg(3, &v)).unwrap(),
        build_guest(&cfg(3, &v)).unwrap()
    );
}

#[test]
fn invalid_configs() {
    let v = virtio();
    let check = |f: &dyn Fn(&mut GuestDt<'_>)| {
        let mut c = cfg(2, &v);
        f(&mut c);
        match build_guest(&c) {
            Err(Error::InvalidConfig(_)) => {}
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    };
    check(&|c| c.vcpus = 0);
    check(&|c| c.vcpus = 65);
    check(&|c| c.isa_extensions = &["m", "a"]);
    check(&|c| c.isa_extensions = &["i", "Zicsr"]);
    check(&|c| c.isa_extensions = &["i", ""]);
    check(&|c| c.isa_extensions = &["i", "z_a"]);
    check(&|c| c.isa_extensions = &["i", "1z"]);
    check(&|c| c.mmu_type = "riscv,sv32");
    check(&|c| c.mmu_type = "sv39");
    check(&|c| c.timebase_frequency = 0);
    check(&|c| c.bootargs = "a\0b");
    check(&|c| c.plic_ndev = 0);
    check(&|c| c.plic_ndev = 1024);
    check(&|c| c.memory = Region::new(0x8000_0000, 0));
    check(&|c| c.memory = Region::new(u64::MAX - 0xfff, 0x2000));
    check(&|c| c.initrd = Some(Region::new(0x7fff_f000, 0x2000)));
    check(&|c| c.initrd = Some(Region::new(0x8fff_f000, 0x2000)));
    check(&|c| c.initrd = Some(Region::new(u64::MAX, 2)));
    check(&|c| {
        c.uart = Some(Device {
            base: 0x1000_0000,
            size: 0x100,
            irq: None,
        })
    });
    check(&|c| {
        c.uart = Some(Device {
            base: 0x1000_0000,
            size: 0x100,
            irq: Some(0),
        })
    });
    check(&|c| {
        c.uart = Some(Device {
            base: 0x1000_0000,
            size: 0x100,
            irq: Some(0x60),
        })
    });
    check(&|c| {
        c.uart = Some(Device {
            base: 0x1000_0000,
            size: 0,
            irq: Some(10),
        })
    });
    // UART shares an interrupt with virtio #0.
    check(&|c| {
        c.uart = Some(Device {
            base: 0x1000_0000,
            size: 0x100,
            irq: Some(1),
        })
    });
    // UART overlaps virtio #0; PLIC overlaps RAM; virtio overlaps PLIC.
    check(&|c| {
        c.uart = Some(Device {
            base: 0x1000_0800,
            size: 0x1000,
            irq: Some(10),
        })
    });
    check(&|c| {
        c.plic = Device {
            base: 0x8000_0000,
            size: 0x1000,
            irq: None,
        }
    });
    check(&|c| {
        c.plic = Device {
            base: 0x1000_0000,
            size: 0x60_0000,
            irq: None,
        }
    });
    check(&|c| {
        c.plic = Device {
            base: 0x0c00_0000,
            size: 0,
            irq: None,
        }
    });
}

#[test]
fn initrd_edges() {
    let v = virtio();
    let mut c = cfg(1, &v);
    // Exactly the last bytes of RAM, and an empty initrd at the start.
    c.initrd = Some(Region::new(0x8fff_f000, 0x1000));
    assert!(build_guest(&c).is_ok());
    c.initrd = Some(Region::new(0x8000_0000, 0));
    let info = parse_host(&build_guest(&c).unwrap()).unwrap();
    assert_eq!(info.initrd, Some(Region::new(0x8000_0000, 0)));
}

/// Decompiles the guest DT with `dtc` when it is installed: it must accept
/// the blob, and its checks must not warn about anything.
#[test]
fn dtc_accepts_guest_dt() {
    use std::process::Command;
    if Command::new("dtc").arg("--version").output().is_err() {
        eprintln!("dtc not installed; skipping");
        return;
    }
    let v = virtio();
    let dtb = build_guest(&cfg(12, &v)).unwrap();
    let dir = std::env::temp_dir().join(format!("rivet-devtree-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guest.dtb");
    std::fs::write(&path, &dtb).unwrap();
    let out = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dts = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dtc failed: {stderr}");
    // The one warning QEMU's own tree also gets: the riscv,cpu-intc binding
    // has no #address-cells (and forbids extra properties), so that is
    // tolerated; anything else is not.
    for line in stderr.lines() {
        assert!(
            line.contains("Warning (interrupt_provider): /cpus/cpu@")
                && line.ends_with(
                    "/interrupt-controller: Missing #address-cells in interrupt provider"
                ),
            "unexpected dtc output: {line}\n{dts}"
        );
    }
    for needle in [
        "compatible = \"rivet,vm\";",
        "riscv,isa = \"rv64imafdc_zicntr_zicsr_zifencei_zihpm_sstc\";",
        "stdout-path = \"/soc/serial@10000000\";",
        "cpu@3 {",
        "cpu@b {",
        "reg = <0x0b>;",
        "virtio_mmio@10004000 {",
        "compatible = \"sifive,plic-1.0.0\\0riscv,plic0\";",
    ] {
        assert!(dts.contains(needle), "dts lacks {needle}:\n{dts}");
    }
}

#[test]
fn rng_seed_and_cbo_block_size_reach_the_guest() {
    let v = virtio();
    let seed: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    let exts: Vec<&str> = EXTS.iter().copied().chain(["zicboz"]).collect();
    let mut c = cfg(2, &v);
    c.rng_seed = Some(&seed);
    c.isa_extensions = &exts;
    c.cboz_block_size = Some(64);
    let mut dtb = build_guest(&c).expect("valid config");
    let fdt = Fdt::new(&dtb).expect("fdt parses");
    assert_eq!(prop(node(&fdt, "/chosen"), "rng-seed"), &seed[..]);
    assert_eq!(
        prop(node(&fdt, "/cpus/cpu@1"), "riscv,cboz-block-size"),
        &64u32.to_be_bytes()
    );
    // Our own parser reads it back; the offset lets a fresh seed go in.
    assert_eq!(
        parse_host(&dtb).expect("parses").rng_seed.as_deref(),
        Some(&seed[..])
    );
    let (off, len) = rivet_devtree::rng_seed_offset(&dtb).expect("seed found");
    assert_eq!(len, 64);
    dtb[off..off + len].fill(0xee);
    assert_eq!(
        parse_host(&dtb).expect("parses").rng_seed,
        Some(vec![0xee; 64])
    );
    // Out-of-range seeds and a block size without zicboz are refused.
    c.rng_seed = Some(&[]);
    assert!(matches!(build_guest(&c), Err(Error::InvalidConfig(_))));
    let long = vec![1u8; 257];
    c.rng_seed = Some(&long);
    assert!(matches!(build_guest(&c), Err(Error::InvalidConfig(_))));
    c.rng_seed = None;
    c.isa_extensions = EXTS;
    assert!(matches!(build_guest(&c), Err(Error::InvalidConfig(_))));
}
