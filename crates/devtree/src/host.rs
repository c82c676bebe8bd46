//! Reading the host device tree that OpenSBI passes to the hypervisor.
//!
//! [`parse_host`] extracts what the hypervisor needs to size and place its
//! guests; everything is copied out, so [`HostInfo`] does not borrow the
//! blob. Disabled nodes (`status` other than `"okay"`/`"ok"`) are ignored,
//! except harts, which are reported with `enabled: false`. Addresses of
//! devices on a bus are translated to CPU physical addresses through the
//! ancestors' `ranges` (an empty or absent `ranges` is identity, as on QEMU
//! `virt`).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::isa::{extensions_from_isa, isa_string};
use crate::reader::{bad, node_label, Node, Tree};
use crate::{Device, Error, Region};

/// `irq` value of a PLIC context that is present in `interrupts-extended` but
/// not usable by S-mode: OpenSBI rewrites the M-mode contexts to
/// `<&cpuN_intc 0xffffffff>`, and an entry whose phandle is `0xffffffff` (or
/// 0) gets `(u64::MAX, PLIC_CONTEXT_ABSENT)`. The slot is kept so that a
/// context's index in [`Plic::contexts`] stays its PLIC context number.
pub const PLIC_CONTEXT_ABSENT: u32 = u32::MAX;

/// Local interrupt number of the supervisor external interrupt.
const IRQ_S_EXT: u32 = 9;

/// One `/cpus/cpu@N` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HartInfo {
    /// Hart id (`reg`).
    pub hartid: u64,
    /// `status` absent, `"okay"` or `"ok"`.
    pub enabled: bool,
    /// `riscv,isa` as written (built from `riscv,isa-extensions` when only
    /// that is present).
    pub isa: String,
    /// Lowercase extension names: `riscv,isa-extensions` when present (in
    /// its order), otherwise derived from `riscv,isa` (single letters, then
    /// the multi-letter ones).
    pub extensions: Vec<String>,
    /// `mmu-type`, e.g. `"riscv,sv57"`.
    pub mmu: Option<String>,
}

impl HartInfo {
    /// Whether the hart has extension `name` (`"h"`, `"sstc"`, ...; case
    /// insensitive).
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e.eq_ignore_ascii_case(name))
    }
}

/// The platform-level interrupt controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plic {
    /// Register window base.
    pub base: u64,
    /// Register window size.
    pub size: u64,
    /// `riscv,ndev`: number of interrupt sources (ids 1..=ndev).
    pub ndev: u32,
    /// Index = PLIC context number; value = (hart id, local interrupt:
    /// 9 = S-mode external, 11 = M-mode external, or
    /// [`PLIC_CONTEXT_ABSENT`] for a context that must not be used).
    pub contexts: Vec<(u64, u32)>,
}

impl Plic {
    /// The context number that delivers local interrupt `irq` to `hartid`.
    pub fn context(&self, hartid: u64, irq: u32) -> Option<usize> {
        self.contexts
            .iter()
            .position(|&(h, i)| h == hartid && i == irq && i != PLIC_CONTEXT_ABSENT)
    }

    /// The S-mode external-interrupt context of `hartid` (the one the
    /// hypervisor uses; on QEMU `virt` that is `2 * hartid + 1`).
    pub fn s_context(&self, hartid: u64) -> Option<usize> {
        self.context(hartid, IRQ_S_EXT)
    }
}

/// What the hypervisor learns from the host device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// `reg` entries of every enabled memory node, sorted by base, zero-sized
    /// entries dropped.
    pub memory: Vec<Region>,
    /// `/reserved-memory/*` `reg` entries plus the header's memory
    /// reservation block, sorted by base.
    pub reserved: Vec<Region>,
    /// Every `/cpus` cpu node, sorted by hart id.
    pub harts: Vec<HartInfo>,
    /// `/cpus/timebase-frequency` (or the first cpu node's), in Hz.
    pub timebase_frequency: u64,
    /// First enabled `ns16550a`-compatible node, in document order.
    pub uart: Option<Device>,
    /// First enabled `riscv,plic0` / `sifive,plic-1.0.0` node. `None` on an
    /// AIA machine (`-M virt,aia=aplic-imsic`).
    pub plic: Option<Plic>,
    /// Every enabled `virtio,mmio` node, sorted by base.
    pub virtio_mmio: Vec<Device>,
    /// `/chosen` `linux,initrd-start` .. `linux,initrd-end`.
    pub initrd: Option<Region>,
    /// `/chosen` `bootargs`.
    pub bootargs: Option<String>,
    /// `/chosen` `rng-seed`: entropy the firmware or machine handed over
    /// (QEMU `virt` puts 32 random bytes there), at most 256 bytes kept.
    pub rng_seed: Option<Vec<u8>>,
    /// The `sifive,test0` power/test finisher (QEMU `virt`), if any: the
    /// hypervisor uses it to report a failure exit status to the host.
    pub test_finisher: Option<Device>,
}

impl HostInfo {
    /// The hart with id `hartid`.
    pub fn hart(&self, hartid: u64) -> Option<&HartInfo> {
        self.harts.iter().find(|h| h.hartid == hartid)
    }
}

/// Parses the host DTB.
///
/// Fails (never panics) on a malformed blob, on a missing `/cpus` node, cpu
/// node, timebase or memory node, and on a malformed property this function
/// reads. Unrelated nodes are not inspected beyond the structural check.
pub fn parse_host(dtb: &[u8]) -> Result<HostInfo, Error> {
    let tree = Tree::parse(dtb)?;
    let root = 0usize;

    let memory = parse_memory(&tree, root)?;
    let reserved = parse_reserved(&tree, root)?;

    let cpus = tree
        .child(root, "cpus")
        .ok_or(Error::MissingNode("/cpus"))?;
    let harts = parse_harts(&tree, cpus)?;
    let timebase_frequency = parse_timebase(&tree, cpus)?;

    let uart = tree
        .compatible("ns16550a")
        .find(|&i| tree.nodes.get(i).is_some_and(Node::is_enabled))
        .map(|i| device(&tree, i))
        .transpose()?;

    let plic = tree
        .nodes
        .iter()
        .position(|n| {
            n.is_enabled()
                && (n.is_compatible("riscv,plic0") || n.is_compatible("sifive,plic-1.0.0"))
        })
        .map(|i| parse_plic(&tree, i))
        .transpose()?;

    let mut virtio_mmio = tree
        .compatible("virtio,mmio")
        .filter(|&i| tree.nodes.get(i).is_some_and(Node::is_enabled))
        .map(|i| device(&tree, i))
        .collect::<Result<Vec<_>, _>>()?;
    virtio_mmio.sort_by_key(|d| (d.base, d.size));

    let test_finisher = tree
        .compatible("sifive,test0")
        .find(|&i| tree.nodes.get(i).is_some_and(Node::is_enabled))
        .map(|i| device(&tree, i))
        .transpose()?;

    let (initrd, bootargs, rng_seed) = match tree.child(root, "chosen") {
        Some(chosen) => parse_chosen(tree.node(chosen)?)?,
        None => (None, None, None),
    };

    Ok(HostInfo {
        memory,
        reserved,
        harts,
        timebase_frequency,
        uart,
        plic,
        virtio_mmio,
        initrd,
        bootargs,
        rng_seed,
        test_finisher,
    })
}

/// Rejects regions whose end does not fit in 64 bits.
fn checked_region(node: &Node<'_>, property: &'static str, r: Region) -> Result<Region, Error> {
    match r.end() {
        Some(_) => Ok(r),
        None => Err(bad(node, property, "range wraps around the address space")),
    }
}

fn parse_memory(tree: &Tree<'_>, root: usize) -> Result<Vec<Region>, Error> {
    let mut memory = Vec::new();
    for &c in &tree.node(root)?.children {
        let n = tree.node(c)?;
        let is_memory = matches!(n.prop("device_type"), Some(b"memory\0"))
            || (n.prop("device_type").is_none() && n.base_name() == "memory");
        if !is_memory || !n.is_enabled() {
            continue;
        }
        let regs = tree.reg(c)?.ok_or_else(|| Error::MissingProperty {
            node: node_label(n),
            property: "reg",
        })?;
        for r in regs.into_iter().filter(|r| r.size != 0) {
            memory.push(checked_region(n, "reg", r)?);
        }
    }
    if memory.is_empty() {
        return Err(Error::MissingNode("a memory node"));
    }
    memory.sort();
    Ok(memory)
}

fn parse_reserved(tree: &Tree<'_>, root: usize) -> Result<Vec<Region>, Error> {
    let mut reserved: Vec<Region> = tree.reservations.clone();
    if let Some(rm) = tree.child(root, "reserved-memory") {
        for &c in &tree.node(rm)?.children {
            let n = tree.node(c)?;
            if !n.is_enabled() {
                continue;
            }
            // Nodes with only `size`/`alloc-ranges` ask the OS to allocate;
            // they reserve nothing yet.
            if let Some(regs) = tree.reg(c)? {
                for r in regs.into_iter().filter(|r| r.size != 0) {
                    reserved.push(checked_region(n, "reg", r)?);
                }
            }
        }
    }
    reserved.sort();
    Ok(reserved)
}

/// Whether `n` is a cpu node (`device_type = "cpu"`, or named `cpu@...`
/// without a `device_type`).
fn is_cpu(n: &Node<'_>) -> bool {
    match n.prop("device_type") {
        Some(v) => v == b"cpu\0",
        None => n.base_name() == "cpu",
    }
}

/// Hart id of a cpu node: the first address in its `reg`.
fn hartid(tree: &Tree<'_>, cpu: usize) -> Result<u64, Error> {
    let n = tree.node(cpu)?;
    let regs = tree.reg(cpu)?.ok_or_else(|| Error::MissingProperty {
        node: node_label(n),
        property: "reg",
    })?;
    regs.first()
        .map(|r| r.base)
        .ok_or_else(|| bad(n, "reg", "empty"))
}

fn parse_harts(tree: &Tree<'_>, cpus: usize) -> Result<Vec<HartInfo>, Error> {
    let mut harts: Vec<HartInfo> = Vec::new();
    for &c in &tree.node(cpus)?.children {
        let n = tree.node(c)?;
        if !is_cpu(n) {
            continue;
        }
        let hartid = hartid(tree, c)?;
        let list = n.prop_strings("riscv,isa-extensions")?;
        let isa = n.prop_str("riscv,isa")?;
        let (isa, extensions) = match (isa, list) {
            (Some(isa), Some(list)) => (isa.to_string(), lower_all(&list)),
            (Some(isa), None) => (isa.to_string(), extensions_from_isa(isa)),
            (None, Some(list)) => (isa_string(&list), lower_all(&list)),
            (None, None) => {
                return Err(Error::MissingProperty {
                    node: node_label(n),
                    property: "riscv,isa",
                })
            }
        };
        let mmu = n.prop_str("mmu-type")?.map(str::to_string);
        if harts.iter().any(|h| h.hartid == hartid) {
            return Err(bad(n, "reg", "duplicate hart id"));
        }
        harts.push(HartInfo {
            hartid,
            enabled: n.is_enabled(),
            isa,
            extensions,
            mmu,
        });
    }
    if harts.is_empty() {
        return Err(Error::MissingNode("a /cpus/cpu node"));
    }
    harts.sort_by_key(|h| h.hartid);
    Ok(harts)
}

fn lower_all(list: &[&str]) -> Vec<String> {
    list.iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

fn parse_timebase(tree: &Tree<'_>, cpus: usize) -> Result<u64, Error> {
    let cpus_node = tree.node(cpus)?;
    let mut freq = cpus_node.prop_u64("timebase-frequency")?;
    if freq.is_none() {
        for &c in &cpus_node.children {
            let n = tree.node(c)?;
            if is_cpu(n) {
                if let Some(f) = n.prop_u64("timebase-frequency")? {
                    freq = Some(f);
                    break;
                }
            }
        }
    }
    match freq {
        None => Err(Error::MissingProperty {
            node: node_label(cpus_node),
            property: "timebase-frequency",
        }),
        Some(0) => Err(bad(cpus_node, "timebase-frequency", "zero")),
        Some(f) => Ok(f),
    }
}

/// Register window (first `reg` entry) and first interrupt of a device node.
fn device(tree: &Tree<'_>, idx: usize) -> Result<Device, Error> {
    let n = tree.node(idx)?;
    let regs = tree.reg(idx)?.ok_or_else(|| Error::MissingProperty {
        node: node_label(n),
        property: "reg",
    })?;
    let r = regs
        .first()
        .copied()
        .ok_or_else(|| bad(n, "reg", "empty"))?;
    let r = checked_region(n, "reg", r)?;
    let irq = match n.prop_cells("interrupts")? {
        Some(cells) => Some(
            cells
                .first()
                .copied()
                .ok_or_else(|| bad(n, "interrupts", "empty"))?,
        ),
        None => match n.prop_cells("interrupts-extended")? {
            Some(cells) => Some(
                cells
                    .get(1)
                    .copied()
                    .ok_or_else(|| bad(n, "interrupts-extended", "too short"))?,
            ),
            None => None,
        },
    };
    Ok(Device {
        base: r.base,
        size: r.size,
        irq,
    })
}

fn parse_plic(tree: &Tree<'_>, idx: usize) -> Result<Plic, Error> {
    let n = tree.node(idx)?;
    let dev = device(tree, idx)?;
    let ndev = n
        .prop_u32("riscv,ndev")?
        .ok_or_else(|| Error::MissingProperty {
            node: node_label(n),
            property: "riscv,ndev",
        })?;
    let cells = n
        .prop_cells("interrupts-extended")?
        .ok_or_else(|| Error::MissingProperty {
            node: node_label(n),
            property: "interrupts-extended",
        })?;

    const PROP: &str = "interrupts-extended";
    let mut contexts = Vec::new();
    let mut i = 0usize;
    while let Some(&phandle) = cells.get(i) {
        i += 1;
        if phandle == 0 || phandle == u32::MAX {
            // No controller to ask for #interrupt-cells: assume a cpu-intc
            // (one cell) and keep the slot.
            cells
                .get(i)
                .ok_or_else(|| bad(n, PROP, "truncated entry"))?;
            i += 1;
            contexts.push((u64::MAX, PLIC_CONTEXT_ABSENT));
            continue;
        }
        let intc = tree
            .by_phandle(phandle)
            .ok_or_else(|| bad(n, PROP, "phandle does not resolve"))?;
        let intc_node = tree.node(intc)?;
        let ncells = intc_node
            .prop_u32("#interrupt-cells")?
            .ok_or_else(|| bad(n, PROP, "parent lacks #interrupt-cells"))?
            as usize;
        if ncells == 0 {
            return Err(bad(n, PROP, "parent has #interrupt-cells = 0"));
        }
        let irq = *cells
            .get(i)
            .ok_or_else(|| bad(n, PROP, "truncated entry"))?;
        i = i
            .checked_add(ncells)
            .filter(|&end| end <= cells.len())
            .ok_or_else(|| bad(n, PROP, "truncated entry"))?;
        let cpu = intc_node
            .parent
            .filter(|&p| tree.nodes.get(p).is_some_and(is_cpu))
            .ok_or_else(|| bad(n, PROP, "parent is not a cpu interrupt controller"))?;
        contexts.push((hartid(tree, cpu)?, irq));
    }

    Ok(Plic {
        base: dev.base,
        size: dev.size,
        ndev,
        contexts,
    })
}

type Chosen = (Option<Region>, Option<String>, Option<Vec<u8>>);

fn parse_chosen(chosen: &Node<'_>) -> Result<Chosen, Error> {
    let start = chosen.prop_u64("linux,initrd-start")?;
    let end = chosen.prop_u64("linux,initrd-end")?;
    let initrd = match (start, end) {
        (None, None) => None,
        (Some(s), Some(e)) if e >= s => Some(Region::new(s, e - s)),
        (Some(_), Some(_)) => {
            return Err(bad(chosen, "linux,initrd-end", "before linux,initrd-start"))
        }
        (Some(_), None) => {
            return Err(Error::MissingProperty {
                node: node_label(chosen),
                property: "linux,initrd-end",
            })
        }
        (None, Some(_)) => {
            return Err(Error::MissingProperty {
                node: node_label(chosen),
                property: "linux,initrd-start",
            })
        }
    };
    let bootargs = chosen.prop_str("bootargs")?.map(str::to_string);
    let rng_seed = chosen
        .prop("rng-seed")
        .filter(|s| !s.is_empty())
        .map(|s| s.iter().copied().take(256).collect());
    Ok((initrd, bootargs, rng_seed))
}
