//! Writing a guest's device tree with `vm-fdt`.
//!
//! The tree [`build_guest`] writes (addresses from the config; `N` runs over
//! the vCPUs):
//!
//! ```text
//! / {
//!     #address-cells = <2>; #size-cells = <2>;
//!     compatible = "rivet,vm"; model = "Rivet VM";
//!     aliases { serial0 = "/soc/serial@<uart>"; }            // with a UART
//!     chosen {
//!         bootargs = "...";
//!         stdout-path = "/soc/serial@<uart>";                // with a UART
//!         linux,initrd-start = /bits/ 64 <...>;              // with an initrd
//!         linux,initrd-end = /bits/ 64 <...>;
//!     };
//!     memory@<base> { device_type = "memory"; reg = <base size>; };
//!     cpus {
//!         #address-cells = <1>; #size-cells = <0>;
//!         timebase-frequency = <...>;                        // u32 when it fits
//!         cpu@N {
//!             device_type = "cpu"; reg = <N>; status = "okay";
//!             compatible = "riscv"; riscv,isa = "rv64imafdc_...";
//!             riscv,isa-base = "rv64i"; riscv,isa-extensions = "i", "m", ...;
//!             mmu-type = "riscv,sv39"; phandle = <cpu_phandle(N)>;
//!             interrupt-controller {
//!                 #interrupt-cells = <1>; interrupt-controller;
//!                 compatible = "riscv,cpu-intc"; phandle = <intc_phandle(N)>;
//!             };
//!         };
//!         cpu-map { cluster0 { coreN { cpu = <cpu_phandle(N)>; }; }; };
//!     };
//!     soc {
//!         #address-cells = <2>; #size-cells = <2>;
//!         compatible = "simple-bus"; ranges;
//!         plic@<base> {
//!             compatible = "sifive,plic-1.0.0", "riscv,plic0"; reg = <...>;
//!             #address-cells = <0>; #interrupt-cells = <1>; interrupt-controller;
//!             riscv,ndev = <...>; phandle = <PLIC_PHANDLE>;
//!             interrupts-extended = <intc_phandle(0) 9 intc_phandle(1) 9 ...>;
//!         };
//!         serial@<base> {                                    // with a UART
//!             compatible = "ns16550a"; reg = <...>; clock-frequency = <...>;
//!             interrupts = <irq>; interrupt-parent = <PLIC_PHANDLE>;
//!         };
//!         virtio_mmio@<base> {                               // per device
//!             compatible = "virtio,mmio"; reg = <...>;
//!             interrupts = <irq>; interrupt-parent = <PLIC_PHANDLE>;
//!         };
//!     };
//! };
//! ```
//!
//! PLIC context `i` is vCPU `i`'s S-mode external interrupt, so a virtual
//! PLIC needs exactly `vcpus` contexts. Phandles: PLIC = 1, cpu N = 2 + 2N,
//! its interrupt controller = 3 + 2N.
//!
//! vm-fdt accepts a node's properties only before its first child node and
//! does not detect duplicate property names, so the writer emits every
//! property exactly once, before any child.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use vm_fdt::FdtWriter;

use crate::isa::{canonical_extensions, isa_from_canonical};
use crate::{Device, Error, Region};

/// Largest number of vCPUs a guest DT may describe.
pub const MAX_VCPUS: u32 = 64;

/// Largest `riscv,ndev` a PLIC can have (sources 1..=1023).
const PLIC_MAX_NDEV: u32 = 1023;

const PLIC_PHANDLE: u32 = 1;

/// Local interrupt number of the supervisor external interrupt.
const IRQ_S_EXT: u32 = 9;

fn cpu_phandle(i: u32) -> u32 {
    2 + 2 * i
}

fn intc_phandle(i: u32) -> u32 {
    3 + 2 * i
}

/// Everything a guest device tree describes.
#[derive(Debug, Clone, Copy)]
pub struct GuestDt<'a> {
    /// Number of vCPUs, 1..=[`MAX_VCPUS`]; hart ids are `0..vcpus`.
    pub vcpus: u32,
    /// The ISA extensions the guest really gets, lowercase, e.g.
    /// `["i","m","a","f","d","c","zicntr","zicsr","zifencei","zihpm","sstc"]`.
    /// Must contain `"i"`; any order (written in canonical order).
    /// Linux 6.12 refuses harts without `i`, `m` and `a`.
    pub isa_extensions: &'a [&'a str],
    /// `"riscv,sv39"`, `"riscv,sv48"` or `"riscv,sv57"`. Linux caps its
    /// paging mode to this, so it must not exceed what the guest's `vsatp`
    /// supports.
    pub mmu_type: &'a str,
    /// `riscv,cboz-block-size` of every hart: the `cbo.zero` block size,
    /// required with `"zicboz"` in `isa_extensions` (a power of two).
    pub cboz_block_size: Option<u32>,
    /// Timer frequency in Hz (non-zero).
    pub timebase_frequency: u64,
    /// Guest RAM (non-empty).
    pub memory: Region,
    /// Kernel command line (no NUL bytes).
    pub bootargs: &'a str,
    /// `/chosen/rng-seed`: entropy for the guest's RNG at boot (Linux
    /// credits it and starts with a seeded CRNG). 1..=256 bytes. Use
    /// [`rng_seed_offset`] to put a fresh seed into the built blob.
    pub rng_seed: Option<&'a [u8]>,
    /// Initrd location; must lie inside `memory`.
    pub initrd: Option<Region>,
    /// PLIC register window (`irq` is ignored).
    pub plic: Device,
    /// `riscv,ndev`, 1..=1023.
    pub plic_ndev: u32,
    /// ns16550a UART; its `irq` is required.
    pub uart: Option<Device>,
    /// UART input clock in Hz, e.g. 3686400.
    pub uart_clock: u32,
    /// virtio-mmio devices; each `irq` is required.
    pub virtio_mmio: &'a [Device],
}

/// Builds the guest DTB described by `cfg`.
///
/// Fails with [`Error::InvalidConfig`] when `cfg` is inconsistent: vCPU count
/// out of range, no `"i"` or a malformed extension name, unknown MMU type,
/// zero timebase, empty/wrapping regions, overlapping device windows or RAM,
/// initrd outside RAM, an interrupt missing, outside `1..=plic_ndev` or
/// shared by two devices.
pub fn build_guest(cfg: &GuestDt<'_>) -> Result<Vec<u8>, Error> {
    validate(cfg)?;
    let exts = canonical_extensions(cfg.isa_extensions);
    let isa = isa_from_canonical(&exts);

    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string("compatible", "rivet,vm")?;
    w.property_string("model", "Rivet VM")?;

    let uart_path = cfg.uart.map(|u| format!("/soc/serial@{:x}", u.base));

    if let Some(path) = &uart_path {
        let aliases = w.begin_node("aliases")?;
        w.property_string("serial0", path)?;
        w.end_node(aliases)?;
    }

    let chosen = w.begin_node("chosen")?;
    w.property_string("bootargs", cfg.bootargs)?;
    if let Some(path) = &uart_path {
        w.property_string("stdout-path", path)?;
    }
    if let Some(initrd) = cfg.initrd {
        let end = initrd
            .end()
            .ok_or(Error::InvalidConfig("initrd wraps around"))?;
        w.property_u64("linux,initrd-start", initrd.base)?;
        w.property_u64("linux,initrd-end", end)?;
    }
    if let Some(seed) = cfg.rng_seed {
        w.property("rng-seed", seed)?;
    }
    w.end_node(chosen)?;

    let memory = w.begin_node(&format!("memory@{:x}", cfg.memory.base))?;
    w.property_string("device_type", "memory")?;
    w.property_array_u64("reg", &[cfg.memory.base, cfg.memory.size])?;
    w.end_node(memory)?;

    write_cpus(&mut w, cfg, &isa, &exts)?;
    write_soc(&mut w, cfg)?;

    w.end_node(root)?;
    Ok(w.finish()?)
}

fn write_cpus(
    w: &mut FdtWriter,
    cfg: &GuestDt<'_>,
    isa: &str,
    exts: &[String],
) -> Result<(), Error> {
    let cpus = w.begin_node("cpus")?;
    w.property_u32("#address-cells", 1)?;
    w.property_u32("#size-cells", 0)?;
    match u32::try_from(cfg.timebase_frequency) {
        Ok(f) => w.property_u32("timebase-frequency", f)?,
        Err(_) => w.property_u64("timebase-frequency", cfg.timebase_frequency)?,
    }

    for i in 0..cfg.vcpus {
        let cpu = w.begin_node(&format!("cpu@{i:x}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_u32("reg", i)?;
        w.property_string("status", "okay")?;
        w.property_string("compatible", "riscv")?;
        w.property_string("riscv,isa", isa)?;
        w.property_string("riscv,isa-base", "rv64i")?;
        w.property_string_list("riscv,isa-extensions", exts.to_vec())?;
        w.property_string("mmu-type", cfg.mmu_type)?;
        if let Some(b) = cfg.cboz_block_size {
            w.property_u32("riscv,cboz-block-size", b)?;
        }
        w.property_phandle(cpu_phandle(i))?;

        let intc = w.begin_node("interrupt-controller")?;
        w.property_u32("#interrupt-cells", 1)?;
        w.property_null("interrupt-controller")?;
        w.property_string("compatible", "riscv,cpu-intc")?;
        w.property_phandle(intc_phandle(i))?;
        w.end_node(intc)?;

        w.end_node(cpu)?;
    }

    let map = w.begin_node("cpu-map")?;
    let cluster = w.begin_node("cluster0")?;
    for i in 0..cfg.vcpus {
        let core = w.begin_node(&format!("core{i}"))?;
        w.property_u32("cpu", cpu_phandle(i))?;
        w.end_node(core)?;
    }
    w.end_node(cluster)?;
    w.end_node(map)?;

    w.end_node(cpus)?;
    Ok(())
}

fn write_soc(w: &mut FdtWriter, cfg: &GuestDt<'_>) -> Result<(), Error> {
    let soc = w.begin_node("soc")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_string("compatible", "simple-bus")?;
    w.property_null("ranges")?;

    let plic = w.begin_node(&format!("plic@{:x}", cfg.plic.base))?;
    w.property_string_list(
        "compatible",
        ["sifive,plic-1.0.0", "riscv,plic0"]
            .map(String::from)
            .to_vec(),
    )?;
    w.property_array_u64("reg", &[cfg.plic.base, cfg.plic.size])?;
    w.property_u32("#address-cells", 0)?;
    w.property_u32("#interrupt-cells", 1)?;
    w.property_null("interrupt-controller")?;
    w.property_u32("riscv,ndev", cfg.plic_ndev)?;
    let contexts: Vec<u32> = (0..cfg.vcpus)
        .flat_map(|i| [intc_phandle(i), IRQ_S_EXT])
        .collect();
    w.property_array_u32("interrupts-extended", &contexts)?;
    w.property_phandle(PLIC_PHANDLE)?;
    w.end_node(plic)?;

    // Children of a bus in ascending address order, like dtc sorts them.
    let mut devices: Vec<(&str, &str, Device, Option<u32>)> = Vec::new();
    if let Some(u) = cfg.uart {
        devices.push(("serial", "ns16550a", u, Some(cfg.uart_clock)));
    }
    for d in cfg.virtio_mmio {
        devices.push(("virtio_mmio", "virtio,mmio", *d, None));
    }
    devices.sort_by_key(|(_, _, d, _)| d.base);

    for (name, compat, dev, clock) in devices {
        let irq = dev
            .irq
            .ok_or(Error::InvalidConfig("device without an interrupt"))?;
        let node = w.begin_node(&format!("{name}@{:x}", dev.base))?;
        w.property_string("compatible", compat)?;
        w.property_array_u64("reg", &[dev.base, dev.size])?;
        if let Some(clock) = clock {
            w.property_u32("clock-frequency", clock)?;
        }
        w.property_u32("interrupts", irq)?;
        w.property_u32("interrupt-parent", PLIC_PHANDLE)?;
        w.end_node(node)?;
    }

    w.end_node(soc)?;
    Ok(())
}

/// A valid extension name: lowercase ASCII letters and digits, starting with
/// a letter.
fn valid_ext(e: &str) -> bool {
    let mut chars = e.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn validate(cfg: &GuestDt<'_>) -> Result<(), Error> {
    use Error::InvalidConfig as Bad;

    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(Bad("vcpus must be 1..=64"));
    }
    if !cfg.isa_extensions.iter().all(|e| valid_ext(e)) {
        return Err(Bad("extension names must be lowercase [a-z][a-z0-9]*"));
    }
    if !cfg.isa_extensions.contains(&"i") {
        return Err(Bad("isa_extensions must contain \"i\""));
    }
    match (cfg.isa_extensions.contains(&"zicboz"), cfg.cboz_block_size) {
        (true, Some(b)) if b.is_power_of_two() => {}
        (true, _) => return Err(Bad("zicboz needs a power-of-two cboz_block_size")),
        (false, Some(_)) => return Err(Bad("cboz_block_size without zicboz")),
        (false, None) => {}
    }
    if cfg.rng_seed.is_some_and(|s| s.is_empty() || s.len() > 256) {
        return Err(Bad("rng_seed must be 1..=256 bytes"));
    }
    if !matches!(cfg.mmu_type, "riscv,sv39" | "riscv,sv48" | "riscv,sv57") {
        return Err(Bad("mmu_type must be riscv,sv39, riscv,sv48 or riscv,sv57"));
    }
    if cfg.timebase_frequency == 0 {
        return Err(Bad("timebase_frequency is zero"));
    }
    if cfg.bootargs.contains('\0') {
        return Err(Bad("bootargs contain NUL"));
    }
    if cfg.plic_ndev == 0 || cfg.plic_ndev > PLIC_MAX_NDEV {
        return Err(Bad("plic_ndev must be 1..=1023"));
    }

    let region_ok = |r: &Region| r.size != 0 && r.end().is_some();
    if !region_ok(&cfg.memory) {
        return Err(Bad("memory is empty or wraps around"));
    }
    if let Some(initrd) = cfg.initrd {
        if initrd.end().is_none() || !cfg.memory.contains(&initrd) {
            return Err(Bad("initrd is not inside memory"));
        }
    }

    // Every window: RAM, PLIC, UART, virtio; none may be empty, wrap, or
    // overlap another (which also makes the node names unique).
    let mut windows: Vec<Region> = Vec::new();
    windows.push(cfg.memory);
    windows.push(cfg.plic.region());
    let irq_ok = |d: &Device| d.irq.is_some_and(|i| i >= 1 && i <= cfg.plic_ndev);
    if let Some(u) = &cfg.uart {
        if !irq_ok(u) {
            return Err(Bad("uart irq missing or outside 1..=plic_ndev"));
        }
        windows.push(u.region());
    }
    for d in cfg.virtio_mmio {
        if !irq_ok(d) {
            return Err(Bad("virtio-mmio irq missing or outside 1..=plic_ndev"));
        }
        windows.push(d.region());
    }
    let mut irqs: Vec<u32> = cfg
        .uart
        .iter()
        .chain(cfg.virtio_mmio)
        .filter_map(|d| d.irq)
        .collect();
    irqs.sort_unstable();
    if irqs.windows(2).any(|p| p.first() == p.last()) {
        return Err(Bad("two devices share an interrupt"));
    }
    if !windows.iter().all(region_ok) {
        return Err(Bad("device window is empty or wraps around"));
    }
    for (i, a) in windows.iter().enumerate() {
        if windows.iter().skip(i + 1).any(|b| a.overlaps(b)) {
            return Err(Bad("memory and device windows overlap"));
        }
    }
    Ok(())
}

/// Where the value of `/chosen/rng-seed` lies in a device tree blob, and
/// its length: a hypervisor rewrites it in place with a fresh seed each
/// time the same blob boots a VM again.
pub fn rng_seed_offset(dtb: &[u8]) -> Option<(usize, usize)> {
    let tree = crate::reader::Tree::parse(dtb).ok()?;
    let chosen = tree.child(0, "chosen")?;
    let value = tree.node(chosen).ok()?.prop("rng-seed")?;
    let off = (value.as_ptr() as usize).checked_sub(dtb.as_ptr() as usize)?;
    (off.checked_add(value.len())? <= dtb.len()).then_some((off, value.len()))
}
