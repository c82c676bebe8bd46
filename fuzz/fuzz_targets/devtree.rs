//! `rivet-devtree`: `parse_host` on arbitrary blobs (firmware input), and
//! `build_guest` on arbitrary but bounded configurations, whose output must
//! parse back (with `parse_host`) to what was asked for.
//!
//! Input: one mode byte, then
//! * mode 0: the blob itself (seeds: the QEMU/OpenSBI fixtures),
//! * mode 1: a guest configuration (`arbitrary`),
//! * mode 2: a guest configuration, then byte patches applied to the blob
//!   it builds before `parse_host` reads it (near-valid blobs).
#![no_main]

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rivet_devtree::{
    build_guest, isa_string, parse_host, total_size, Device, Error, GuestDt, Region,
};

const EXTS: [&str; 16] = [
    "i", "m", "a", "f", "d", "c", "h", "v", "zicsr", "zifencei", "zicntr", "zihpm", "sstc",
    "svpbmt", "zba", "xfoo",
];
const MMUS: [&str; 4] = ["riscv,sv39", "riscv,sv48", "riscv,sv57", "riscv,sv32"];

/// An address or size, usually page-granular and small enough for
/// windows not to wrap, sometimes raw.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Pages(u16),
    Gib(u8),
    Raw(u64),
}

impl Num {
    fn get(self) -> u64 {
        match self {
            Num::Pages(p) => u64::from(p) * 0x1000,
            Num::Gib(g) => u64::from(g) << 30,
            Num::Raw(r) => r,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Dev {
    base: Num,
    size: Num,
    irq: Option<u16>,
}

impl Dev {
    fn device(&self) -> Device {
        Device {
            base: self.base.get(),
            size: self.size.get(),
            irq: self.irq.map(u32::from),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    vcpus: u8,
    exts: Vec<u8>,
    /// A name of the fuzzer's own (may be invalid).
    own_ext: Option<String>,
    cboz_block: Option<u32>,
    rng_seed: Option<Vec<u8>>,
    mmu: u8,
    timebase: u64,
    memory: (Num, Num),
    bootargs: String,
    initrd: Option<(Num, Num)>,
    plic: Dev,
    ndev: u16,
    uart: Option<Dev>,
    uart_clock: u32,
    virtio: Vec<Dev>,
}

fn check_host_info(blob: &[u8]) {
    let _ = total_size(blob);
    let Ok(info) = parse_host(blob) else { return };
    // Only the first `totalsize` bytes count.
    let total = total_size(blob).expect("a parsed blob has a valid header");
    assert!(total <= blob.len());
    assert_eq!(parse_host(&blob[..total]).as_ref(), Ok(&info));
    assert!(!info.harts.is_empty());
    for w in info.harts.windows(2) {
        assert!(w[0].hartid < w[1].hartid, "harts sorted and unique");
    }
    for r in info.memory.iter().chain(&info.reserved) {
        assert!(r.end().is_some(), "region wraps: {r:?}");
    }
    for d in info
        .uart
        .iter()
        .chain(&info.virtio_mmio)
        .chain(&info.test_finisher)
    {
        assert!(d.region().end().is_some(), "device window wraps: {d:?}");
    }
    if let Some(i) = info.initrd {
        assert!(i.end().is_some());
    }
    if let Some(p) = &info.plic {
        for h in &info.harts {
            if let Some(c) = p.s_context(h.hartid) {
                assert!(c < p.contexts.len());
            }
        }
    }
}

fn build(cfg: &Cfg) -> Option<Vec<u8>> {
    let mut exts: Vec<&str> = cfg
        .exts
        .iter()
        .take(24)
        .map(|&i| EXTS[usize::from(i) % EXTS.len()])
        .collect();
    let own: Option<String> = cfg.own_ext.as_ref().map(|s| s.chars().take(16).collect());
    if let Some(o) = &own {
        exts.push(o.as_str());
    }
    let bootargs: String = cfg.bootargs.chars().take(300).collect();
    let virtio: Vec<Device> = cfg.virtio.iter().take(8).map(Dev::device).collect();
    let gdt = GuestDt {
        vcpus: u32::from(cfg.vcpus % 72),
        isa_extensions: &exts,
        cboz_block_size: cfg.cboz_block,
        rng_seed: cfg.rng_seed.as_deref(),
        mmu_type: MMUS[usize::from(cfg.mmu) % MMUS.len()],
        timebase_frequency: cfg.timebase,
        memory: Region::new(cfg.memory.0.get(), cfg.memory.1.get()),
        bootargs: &bootargs,
        initrd: cfg.initrd.map(|(b, s)| Region::new(b.get(), s.get())),
        plic: cfg.plic.device(),
        plic_ndev: u32::from(cfg.ndev % 1100),
        uart: cfg.uart.as_ref().map(Dev::device),
        uart_clock: cfg.uart_clock,
        virtio_mmio: &virtio,
    };
    let dtb = match build_guest(&gdt) {
        Ok(d) => d,
        Err(Error::InvalidConfig(_)) => return None,
        Err(e) => panic!("build_guest failed after validation: {e:?}"),
    };

    // It must read back as what was described.
    let info = parse_host(&dtb).unwrap_or_else(|e| panic!("guest DT does not parse back: {e}"));
    assert_eq!(info.memory, vec![gdt.memory]);
    assert!(info.reserved.is_empty());
    assert_eq!(info.timebase_frequency, gdt.timebase_frequency);
    assert_eq!(info.uart, gdt.uart);
    let mut want_virtio = virtio.clone();
    want_virtio.sort_by_key(|d| (d.base, d.size));
    assert_eq!(info.virtio_mmio, want_virtio);
    assert_eq!(info.initrd, gdt.initrd);
    assert_eq!(info.bootargs.as_deref(), Some(gdt.bootargs));
    assert_eq!(info.harts.len(), gdt.vcpus as usize);
    let want_exts: BTreeSet<&str> = exts.iter().copied().collect();
    for (i, h) in info.harts.iter().enumerate() {
        assert_eq!(h.hartid, i as u64);
        assert!(h.enabled);
        assert_eq!(h.isa, isa_string(&exts));
        assert_eq!(
            h.extensions
                .iter()
                .map(String::as_str)
                .collect::<BTreeSet<_>>(),
            want_exts
        );
        assert_eq!(h.extensions.len(), want_exts.len());
        assert_eq!(h.mmu.as_deref(), Some(gdt.mmu_type));
    }
    let plic = info.plic.expect("guest DT has a PLIC");
    assert_eq!(
        (plic.base, plic.size, plic.ndev),
        (gdt.plic.base, gdt.plic.size, gdt.plic_ndev)
    );
    for h in 0..u64::from(gdt.vcpus) {
        assert_eq!(plic.s_context(h), Some(h as usize));
    }
    Some(dtb)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check_host_info(rest),
        1 => {
            let mut u = Unstructured::new(rest);
            if let Ok(cfg) = Cfg::arbitrary(&mut u) {
                let _ = build(&cfg);
            }
        }
        _ => {
            let mut u = Unstructured::new(rest);
            let Ok(cfg) = Cfg::arbitrary(&mut u) else {
                return;
            };
            let Some(mut dtb) = build(&cfg) else { return };
            // Patches: (position, byte) pairs; a few structural fields
            // (header words, lengths, tokens) are hit by chance.
            let patches = u.arbitrary_len::<(u16, u8)>().unwrap_or(0).min(16);
            for _ in 0..patches {
                let Ok((pos, byte)) = <(u16, u8)>::arbitrary(&mut u) else {
                    break;
                };
                if !dtb.is_empty() {
                    let p = usize::from(pos) % dtb.len();
                    dtb[p] = byte;
                }
            }
            if let Ok(n) = u.int_in_range(0..=dtb.len()) {
                if u.arbitrary::<bool>().unwrap_or(false) {
                    dtb.truncate(n);
                }
            }
            check_host_info(&dtb);
        }
    }
});
