//! From TOML text to a [`MachineConfig`]: each key is type- and
//! range-checked where it stands; the rules between keys and VMs are in
//! `validate`. Invalid values are remembered as invalid (not defaulted) so
//! the cross-checks skip them instead of piling up follow-on errors.

use std::path::{Path, PathBuf};

use toml_edit::{Document, TableLike};

use crate::size::parse_size_mb;
use crate::walk::{Ctx, Got, Node};
use crate::*;

pub(crate) const ROOT_KEYS: &[&str] = &["machine", "vm"];
pub(crate) const MACHINE_KEYS: &[&str] = &[
    "harts",
    "memory",
    "keep_running",
    "log",
    "uplink",
    "forward",
];
pub(crate) const VM_KEYS: &[&str] = &[
    "name", "vcpus", "memory", "kernel", "initrd", "bootargs", "pin", "console", "disk", "nic",
    "fs",
];
pub(crate) const DISK_KEYS: &[&str] = &["image", "start", "sectors", "read_only"];
pub(crate) const NIC_KEYS: &[&str] = &["network", "mac"];
pub(crate) const FS_KEYS: &[&str] = &["tag", "path"];
pub(crate) const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// `[machine]` as parsed: `None` where the value was invalid.
pub(crate) struct MachineDraft {
    pub harts: Option<u32>,
    pub harts_line: usize,
    /// `Some(None)`: absent; `None`: invalid.
    pub memory: Option<Option<(u64, usize)>>,
    pub keep_running: bool,
    pub log: u32,
    pub uplink: Option<String>,
    pub forwards: Vec<Forward>,
}

/// A `pin` array as parsed.
pub(crate) struct PinDraft {
    pub line: usize,
    /// Each entry: the hart and its line; `None` when invalid (reported).
    pub entries: Vec<Option<(u32, usize)>>,
}

/// A `[[vm]]` as parsed, with what the cross-checks need to know.
pub(crate) struct VmDraft {
    pub cfg: VmConfig,
    pub field: String,
    pub name_line: Option<usize>,
    pub vcpus_ok: bool,
    pub memory_ok: bool,
    pub pin: Option<PinDraft>,
    pub console_line: usize,
    /// The valid disks, each with its index in the file.
    pub disks: Vec<(usize, DiskConfig)>,
}

/// Network names: 1..=32 of `[A-Za-z0-9_-]`.
fn valid_net_name(net: &str) -> bool {
    !net.is_empty()
        && net.len() <= 32
        && net
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(crate) fn parse(text: &str, path: &Path) -> Result<MachineConfig, Vec<ConfigError>> {
    let mut ctx = Ctx::new(text, path);
    let doc = match Document::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let line = ctx.line(e.span()).unwrap_or(1);
            ctx.error(line, "syntax", e.message().trim_end().to_string());
            return Err(ctx.errors);
        }
    };
    let root = Node {
        t: doc.as_table() as &dyn TableLike,
        line: 1,
        path: String::new(),
    };
    ctx.unknown_keys(&root, ROOT_KEYS);
    let machine = match ctx.table(&root, "machine") {
        Got::Val(node, _) => parse_machine(&mut ctx, &node),
        Got::Absent => Some(MachineDraft::default()),
        Got::Bad => None,
    };
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let vms = match ctx.tables(&root, "vm", "[[vm]]") {
        Got::Val(nodes, _) => nodes.iter().map(|n| parse_vm(&mut ctx, n, &dir)).collect(),
        Got::Absent => Vec::new(),
        Got::Bad => return finish(ctx, None),
    };
    if vms.is_empty() {
        ctx.error(1, "vm", "no VM defined: add at least one [[vm]] section");
    }
    crate::validate::cross_check(&mut ctx, machine.as_ref(), &vms);
    let cfg = machine.map(|m| MachineConfig {
        harts: m.harts.unwrap_or(1),
        memory_mb: m.memory.flatten().map(|(mb, _)| mb),
        keep_running: m.keep_running,
        uplink: m.uplink.clone(),
        forwards: m.forwards.clone(),
        log: m.log,
        vms: vms
            .into_iter()
            .map(|mut v| {
                v.cfg.disks = v.disks.into_iter().map(|(_, d)| d).collect();
                v.cfg
            })
            .collect(),
        path: path.to_path_buf(),
    });
    finish(ctx, cfg)
}

fn finish(mut ctx: Ctx, cfg: Option<MachineConfig>) -> Result<MachineConfig, Vec<ConfigError>> {
    match cfg {
        Some(cfg) if ctx.errors.is_empty() => Ok(cfg),
        _ => {
            ctx.errors.sort_by_key(|e| e.line);
            Err(ctx.errors)
        }
    }
}

impl Default for MachineDraft {
    fn default() -> Self {
        Self {
            harts: Some(1),
            harts_line: 1,
            memory: Some(None),
            keep_running: false,
            log: 3,
            uplink: None,
            forwards: Vec::new(),
        }
    }
}

fn parse_machine(ctx: &mut Ctx, node: &Node<'_>) -> Option<MachineDraft> {
    ctx.unknown_keys(node, MACHINE_KEYS);
    let mut m = MachineDraft {
        harts_line: node.line,
        ..MachineDraft::default()
    };
    match ctx.int_in(node, "harts", 1, i64::from(MAX_HARTS)) {
        Got::Val(v, line) => {
            m.harts = Some(v as u32);
            m.harts_line = line;
        }
        Got::Bad => m.harts = None,
        Got::Absent => {}
    }
    m.memory = match ctx.string(node, "memory") {
        Got::Val(s, line) => match parse_size_mb(s) {
            Ok(mb) => Some(Some((mb, line))),
            Err(msg) => {
                ctx.error(line, node.field("memory"), msg);
                None
            }
        },
        Got::Absent => Some(None),
        Got::Bad => None,
    };
    if let Got::Val(v, _) = ctx.boolean(node, "keep_running") {
        m.keep_running = v;
    }
    match ctx.string(node, "uplink") {
        Got::Val(net, line) => {
            if !valid_net_name(net) {
                ctx.error(
                    line,
                    node.field("uplink"),
                    "network names are 1..=32 of [A-Za-z0-9_-]",
                );
            } else {
                m.uplink = Some(net.to_string());
            }
        }
        Got::Absent | Got::Bad => {}
    }
    if let Got::Val(items, _) = ctx.array(node, "forward") {
        for (item, line) in items {
            let parsed = item.as_str().and_then(Forward::parse);
            match parsed {
                Some(f) => m.forwards.push(f),
                None => ctx.error(
                    line,
                    node.field("forward"),
                    "expected \"HOSTPORT:GUESTIP:GUESTPORT\" (TCP, bound to 127.0.0.1 on the host)",
                ),
            }
        }
        if m.uplink.is_none() && !m.forwards.is_empty() {
            ctx.error(
                node.line,
                node.field("forward"),
                "forwards need `uplink` (the network they reach)",
            );
        }
    }
    if let Some(e) = ctx.get(node, "log") {
        let level = match (e.item.as_str(), e.item.as_integer()) {
            (Some(s), _) => LOG_LEVELS.iter().position(|&l| l == s).map(|p| p as u32),
            (None, Some(n)) => u32::try_from(n).ok().filter(|&n| n <= 5),
            (None, None) => None,
        };
        let found = match (e.item.as_str(), e.item.as_integer()) {
            (Some(s), _) => format!("{s:?}"),
            (None, Some(n)) => n.to_string(),
            (None, None) => e.item.type_name().to_string(),
        };
        match level {
            Some(l) => m.log = l,
            None => ctx.error(
                e.line,
                e.field,
                format!(
                    "expected one of {} (or 0..=5), found {}",
                    LOG_LEVELS.join(", "),
                    found
                ),
            ),
        }
    }
    Some(m)
}

fn parse_vm(ctx: &mut Ctx, node: &Node<'_>, dir: &Path) -> VmDraft {
    ctx.unknown_keys(node, VM_KEYS);
    let mut missing = Vec::new();
    let mut v = VmDraft {
        cfg: VmConfig {
            name: String::new(),
            vcpus: 1,
            memory_mb: 0,
            kernel: ImageRef::TestKernel,
            initrd: None,
            bootargs: String::new(),
            pin: None,
            console: false,
            disks: Vec::new(),
            nics: Vec::new(),
            fs: Vec::new(),
            line: node.line,
            lines: VmLines::default(),
        },
        field: node.path.clone(),
        name_line: None,
        vcpus_ok: false,
        memory_ok: false,
        pin: None,
        console_line: 0,
        disks: Vec::new(),
    };

    match ctx.string(node, "name") {
        Got::Val(name, line) => {
            if let Err(msg) = check_name(name) {
                ctx.error(line, node.field("name"), msg);
            } else {
                v.name_line = Some(line);
            }
            v.cfg.name = name.to_string();
        }
        Got::Absent => missing.push("name"),
        Got::Bad => {}
    }
    match ctx.int_in(node, "vcpus", 1, i64::from(MAX_VCPUS)) {
        Got::Val(n, _) => {
            v.cfg.vcpus = n as u32;
            v.vcpus_ok = true;
        }
        Got::Absent => missing.push("vcpus"),
        Got::Bad => {}
    }
    match ctx.string(node, "memory") {
        Got::Val(s, line) => {
            v.cfg.lines.memory = line;
            match parse_size_mb(s).and_then(check_vm_memory) {
                Ok(mb) => {
                    v.cfg.memory_mb = mb;
                    v.memory_ok = true;
                }
                Err(msg) => ctx.error(line, node.field("memory"), msg),
            }
        }
        Got::Absent => missing.push("memory"),
        Got::Bad => {}
    }
    match ctx.string(node, "kernel") {
        Got::Val(s, line) => {
            v.cfg.lines.kernel = line;
            match image_ref(s, dir, true) {
                Ok(r) => v.cfg.kernel = r,
                Err(msg) => ctx.error(line, node.field("kernel"), msg),
            }
        }
        Got::Absent => missing.push("kernel"),
        Got::Bad => {}
    }
    if let Got::Val(s, line) = ctx.string(node, "initrd") {
        v.cfg.lines.initrd = line;
        match image_ref(s, dir, false) {
            Ok(r) => v.cfg.initrd = Some(r),
            Err(msg) => ctx.error(line, node.field("initrd"), msg),
        }
    }
    if let Got::Val(s, line) = ctx.string(node, "bootargs") {
        if s.len() > MAX_BOOTARGS_LEN {
            let msg = format!(
                "{} bytes long; Linux takes at most {MAX_BOOTARGS_LEN}",
                s.len()
            );
            ctx.error(line, node.field("bootargs"), msg);
        } else if s.contains('\0') {
            ctx.error(line, node.field("bootargs"), "contains a NUL character");
        }
        v.cfg.bootargs = s.to_string();
    }
    if let Got::Val(entries, line) = ctx.array(node, "pin") {
        let mut harts = Vec::new();
        for (i, (val, vline)) in entries.iter().enumerate() {
            let field = format!("{}[{i}]", node.field("pin"));
            match val.as_integer() {
                Some(h) if (0..=i64::from(u32::MAX)).contains(&h) => {
                    harts.push(Some((h as u32, *vline)))
                }
                Some(h) => {
                    ctx.error(*vline, field, format!("{h} is not a hart number"));
                    harts.push(None);
                }
                None => {
                    ctx.error(
                        *vline,
                        field,
                        format!("expected a hart number, found {}", val.type_name()),
                    );
                    harts.push(None);
                }
            }
        }
        v.cfg.pin = Some(harts.iter().map(|h| h.map_or(0, |(h, _)| h)).collect());
        v.pin = Some(PinDraft {
            line,
            entries: harts,
        });
    }
    if let Got::Val(c, line) = ctx.boolean(node, "console") {
        v.cfg.console = c;
        v.console_line = line;
    }
    if let Got::Val(nodes, _) = ctx.tables(node, "disk", "[[vm.disk]]") {
        v.disks = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, parse_disk(ctx, n, dir)?)))
            .collect();
        if nodes.len() > crate::MAX_DISKS {
            if let Some(n) = nodes.get(crate::MAX_DISKS) {
                ctx.error(
                    n.line,
                    n.field("image"),
                    format!("at most {} disks per VM", crate::MAX_DISKS),
                );
            }
        }
    }
    if let Got::Val(nodes, _) = ctx.tables(node, "nic", "[[vm.nic]]") {
        for n in &nodes {
            ctx.unknown_keys(n, NIC_KEYS);
            match ctx.string(n, "network") {
                Got::Val(net, line) => {
                    if !valid_net_name(net) {
                        ctx.error(
                            line,
                            n.field("network"),
                            "network names are 1..=32 of [A-Za-z0-9_-]",
                        );
                    } else {
                        let mac = match ctx.string(n, "mac") {
                            Got::Val(m, line) => {
                                let parsed: Option<Vec<u8>> = m
                                    .split(':')
                                    .map(|o| u8::from_str_radix(o, 16).ok())
                                    .collect();
                                match parsed.and_then(|v| <[u8; 6]>::try_from(v).ok()) {
                                    Some(mac) if mac[0] & 1 == 0 => Some(mac),
                                    _ => {
                                        ctx.error(
                                            line,
                                            n.field("mac"),
                                            "expected a unicast MAC like \"52:54:00:12:34:56\"",
                                        );
                                        None
                                    }
                                }
                            }
                            _ => None,
                        };
                        v.cfg.nics.push(NicConfig {
                            network: net.to_string(),
                            mac,
                            line: n.line,
                        });
                    }
                }
                Got::Absent => ctx.error(
                    n.line,
                    n.field("network"),
                    "missing; every [[vm.nic]] names its network",
                ),
                Got::Bad => {}
            }
        }
        if nodes.len() > crate::MAX_NICS {
            if let Some(n) = nodes.get(crate::MAX_NICS) {
                ctx.error(
                    n.line,
                    n.field("network"),
                    format!("at most {} NICs per VM", crate::MAX_NICS),
                );
            }
        }
    }
    if let Got::Val(nodes, _) = ctx.tables(node, "fs", "[[vm.fs]]") {
        for n in &nodes {
            ctx.unknown_keys(n, FS_KEYS);
            let tag = match ctx.string(n, "tag") {
                Got::Val(t, line) => {
                    if t.is_empty() || t.len() > 36 || t.contains('\0') {
                        ctx.error(line, n.field("tag"), "a tag is 1..=36 bytes");
                        None
                    } else {
                        Some(t.to_string())
                    }
                }
                Got::Absent => {
                    ctx.error(
                        n.line,
                        n.field("tag"),
                        "missing; every [[vm.fs]] needs a tag",
                    );
                    None
                }
                Got::Bad => None,
            };
            let path = match ctx.string(n, "path") {
                Got::Val(p, line) => {
                    let full = dir.join(p);
                    if !full.is_dir() {
                        ctx.error(
                            line,
                            n.field("path"),
                            format!("{} is not a directory", full.display()),
                        );
                        None
                    } else {
                        Some(full)
                    }
                }
                Got::Absent => {
                    ctx.error(
                        n.line,
                        n.field("path"),
                        "missing; every [[vm.fs]] needs a host directory",
                    );
                    None
                }
                Got::Bad => None,
            };
            if let (Some(tag), Some(path)) = (tag, path) {
                v.cfg.fs.push(FsConfig {
                    tag,
                    path,
                    line: n.line,
                });
            }
        }
        if nodes.len() > crate::MAX_FS {
            if let Some(n) = nodes.get(crate::MAX_FS) {
                ctx.error(
                    n.line,
                    n.field("tag"),
                    format!("at most {} shared directories per VM", crate::MAX_FS),
                );
            }
        }
    }
    for key in missing {
        ctx.error(
            node.line,
            node.field(key),
            "missing; every [[vm]] needs name, vcpus, memory and kernel",
        );
    }
    v
}

fn parse_disk(ctx: &mut Ctx, node: &Node<'_>, dir: &Path) -> Option<DiskConfig> {
    ctx.unknown_keys(node, DISK_KEYS);
    let mut ok = true;
    let image = match ctx.string(node, "image") {
        Got::Val("", line) => {
            ctx.error(line, node.field("image"), "empty path");
            None
        }
        Got::Val(s, _) => Some(dir.join(s)),
        Got::Absent => {
            ctx.error(
                node.line,
                node.field("image"),
                "missing; every [[vm.disk]] needs an image file",
            );
            None
        }
        Got::Bad => None,
    };
    let start = match ctx.int_in(node, "start", 0, i64::MAX) {
        Got::Val(s, _) => s as u64,
        Got::Absent => 0,
        Got::Bad => {
            ok = false;
            0
        }
    };
    let sectors = match ctx.int_in(node, "sectors", 1, i64::MAX) {
        Got::Val(n, line) => {
            if start
                .checked_add(n as u64)
                .is_none_or(|end| end > i64::MAX as u64)
            {
                ctx.error(
                    line,
                    node.field("sectors"),
                    "window ends past the largest sector number",
                );
                ok = false;
            }
            Some(n as u64)
        }
        Got::Absent => None,
        Got::Bad => {
            ok = false;
            None
        }
    };
    let read_only = match ctx.boolean(node, "read_only") {
        Got::Val(b, _) => b,
        _ => false,
    };
    let image = image?;
    ok.then_some(DiskConfig {
        image,
        start,
        sectors,
        read_only,
        line: node.line,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty; a VM needs a name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("{} bytes long; at most {MAX_NAME_LEN}", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{name:?} contains {c:?}; use only letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

fn check_vm_memory(mb: u64) -> Result<u64, String> {
    if mb < MIN_VM_MEMORY_MB {
        Err(format!("{mb}M is too little: at least {MIN_VM_MEMORY_MB}M"))
    } else if !mb.is_multiple_of(VM_MEMORY_ALIGN_MB) {
        Err(format!("{mb}M is not a multiple of {VM_MEMORY_ALIGN_MB}M"))
    } else {
        Ok(mb)
    }
}

/// A kernel (`kernel == true`) or initrd reference.
fn image_ref(s: &str, dir: &Path, kernel: bool) -> Result<ImageRef, String> {
    match (s, kernel) {
        ("", _) => Err("empty; give \"linux\", \"testkernel\", \"busybox\" or a file path".into()),
        ("linux", true) => Ok(ImageRef::Linux),
        ("testkernel", true) => Ok(ImageRef::TestKernel),
        ("busybox", true) => {
            Err("\"busybox\" is an initramfs, not a kernel (use it as initrd)".into())
        }
        ("busybox", false) => Ok(ImageRef::Busybox),
        ("linux" | "testkernel", false) => Err(format!(
            "{s:?} is a kernel, not an initramfs (write \"./{s}\" for a file of that name)"
        )),
        (path, _) => Ok(ImageRef::Path(resolve(dir, path))),
    }
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    dir.join(p)
}
