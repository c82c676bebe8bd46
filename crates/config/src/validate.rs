//! The rules between keys and between VMs (unique names, one console, hart
//! pinning, total memory, disk windows), and the checks that need the
//! images ([`crate::check_images`]).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::parse::{MachineDraft, PinDraft, VmDraft};
use crate::size::format_mb;
use crate::walk::Ctx;
use crate::*;

pub(crate) fn cross_check(ctx: &mut Ctx, machine: Option<&MachineDraft>, vms: &[VmDraft]) {
    if let Some(extra) = vms.get(MAX_VMS) {
        let msg = format!("too many VMs: {} defined, at most {MAX_VMS}", vms.len());
        ctx.error(extra.cfg.line, "vm", msg);
    }
    unique_names(ctx, vms);
    one_console(ctx, vms);
    pins(ctx, machine.and_then(|m| m.harts), vms);
    if let Some(Some(Some((mb, line)))) = machine.map(|m| m.memory) {
        total_memory(ctx, mb, line, vms);
    }
    disk_windows(ctx, vms);
}

fn unique_names(ctx: &mut Ctx, vms: &[VmDraft]) {
    let mut seen: HashMap<&str, (&str, usize)> = HashMap::new();
    for v in vms {
        let Some(line) = v.name_line else { continue };
        if let Some((field, first)) = seen.get(v.cfg.name.as_str()) {
            let msg = format!(
                "duplicate VM name {:?}: {field} at line {first} has it too",
                v.cfg.name
            );
            ctx.error(line, format!("{}.name", v.field), msg);
        } else {
            seen.insert(&v.cfg.name, (&v.field, line));
        }
    }
}

fn one_console(ctx: &mut Ctx, vms: &[VmDraft]) {
    let mut first: Option<&VmDraft> = None;
    for v in vms.iter().filter(|v| v.cfg.console) {
        match first {
            None => first = Some(v),
            Some(f) => {
                let msg = format!(
                    "console = true on more than one VM ({} at line {} too); at most one VM has console input at start",
                    f.field, f.console_line
                );
                ctx.error(v.console_line, format!("{}.console", v.field), msg);
            }
        }
    }
}

fn pins(ctx: &mut Ctx, harts: Option<u32>, vms: &[VmDraft]) {
    // hart -> (vm field, vCPU, line) of its first pin.
    let mut used: HashMap<u32, (&str, usize, usize)> = HashMap::new();
    let mut pinned_total = 0usize;
    let mut reported_total = false;
    for v in vms {
        let Some(PinDraft {
            line: pin_line,
            entries,
        }) = &v.pin
        else {
            continue;
        };
        let field = format!("{}.pin", v.field);
        if v.vcpus_ok && entries.len() != v.cfg.vcpus as usize {
            let msg = format!(
                "{} entries for {} vCPUs; pin needs exactly one hart per vCPU",
                entries.len(),
                v.cfg.vcpus
            );
            ctx.error(*pin_line, field.clone(), msg);
        }
        pinned_total += entries.len();
        if let Some(h) = harts {
            if pinned_total > h as usize && !reported_total {
                reported_total = true;
                let msg = format!(
                    "more pinned vCPUs than harts: {pinned_total} vCPUs pinned up to here, machine.harts = {h}"
                );
                ctx.error(*pin_line, field.clone(), msg);
            }
        }
        for (k, (hart, line)) in entries
            .iter()
            .enumerate()
            .filter_map(|(k, e)| Some((k, (*e)?)))
        {
            let efield = format!("{field}[{k}]");
            if let Some(h) = harts.filter(|&h| hart >= h) {
                let msg = format!(
                    "hart {hart} does not exist: machine.harts = {h} (harts 0..={})",
                    h - 1
                );
                ctx.error(line, efield, msg);
            } else if let Some((f, vcpu, l)) = used.get(&hart) {
                let msg =
                    format!("hart {hart} pinned twice: vCPU {vcpu} of {f} at line {l} is pinned to it already");
                ctx.error(line, efield, msg);
            } else {
                used.insert(hart, (&v.field, k, line));
            }
        }
    }
    let Some(h) = harts else { return };
    if used.len() as u32 >= h {
        for v in vms.iter().filter(|v| v.pin.is_none()) {
            let msg = format!(
                "not pinned, but all {h} harts are pinned to vCPUs of other VMs; \
                 unpinned vCPUs run only on harts no vCPU is pinned to"
            );
            ctx.error(v.cfg.line, v.field.clone(), msg);
        }
    }
}

fn total_memory(ctx: &mut Ctx, machine_mb: u64, line: usize, vms: &[VmDraft]) {
    let counted: Vec<&VmDraft> = vms.iter().filter(|v| v.memory_ok).collect();
    let sum: u64 = counted.iter().map(|v| v.cfg.memory_mb).sum();
    let need = sum + HYPERVISOR_RESERVE_MB;
    if need <= machine_mb {
        return;
    }
    let parts: Vec<String> = counted
        .iter()
        .map(|v| format!("{} ({})", display_name(v), format_mb(v.cfg.memory_mb)))
        .collect();
    let msg = format!(
        "too little memory: VMs {} = {}, plus {} for the hypervisor = {}, but machine.memory is {}",
        parts.join(" + "),
        format_mb(sum),
        format_mb(HYPERVISOR_RESERVE_MB),
        format_mb(need),
        format_mb(machine_mb),
    );
    ctx.error(line, "machine.memory", msg);
}

fn display_name(v: &VmDraft) -> String {
    if v.cfg.name.is_empty() {
        v.field.clone()
    } else {
        v.cfg.name.clone()
    }
}

fn disk_windows(ctx: &mut Ctx, vms: &[VmDraft]) {
    struct W<'a> {
        field: String,
        disk: &'a DiskConfig,
        key: PathBuf,
    }
    let windows: Vec<W<'_>> = vms
        .iter()
        .flat_map(|v| {
            v.disks.iter().map(|(k, d)| W {
                field: format!("{}.disk[{k}]", v.field),
                disk: d,
                key: normalize(&d.image),
            })
        })
        .collect();
    for (b, wb) in windows.iter().enumerate() {
        for wa in windows.iter().take(b) {
            let (da, db) = (wa.disk, wb.disk);
            if wa.key != wb.key || (da.read_only && db.read_only) {
                continue;
            }
            let (a0, a1) = range(da);
            let (b0, b1) = range(db);
            if a0 < b1 && b0 < a1 {
                let msg = format!(
                    "memory overlap: {} of {} intersects {} of {} at line {}; \
                     windows on one image may intersect only when both are read_only",
                    window(db),
                    db.image.display(),
                    window(da),
                    wa.field,
                    da.line
                );
                ctx.error(db.line, wb.field.clone(), msg);
            }
        }
    }
}

/// `[start, end)` in sectors; no `sectors`: to the end of the image.
fn range(d: &DiskConfig) -> (u64, u64) {
    (
        d.start,
        d.sectors.map_or(u64::MAX, |n| d.start.saturating_add(n)),
    )
}

fn window(d: &DiskConfig) -> String {
    match d.sectors {
        Some(n) => format!("sectors {}..{}", d.start, d.start.saturating_add(n)),
        None => format!("sectors {}..end", d.start),
    }
}

/// Lexical normalization (`.` dropped, `a/..` folded), so that two spellings
/// of one file compare equal without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn check_images(
    cfg: &MachineConfig,
    size_of: &dyn Fn(&ImageRef) -> Option<u64>,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |line: usize, field: String, message: String| {
        errors.push(ConfigError {
            file: cfg.path.clone(),
            line,
            field,
            message,
        });
    };
    let at = |line: usize, vm: &VmConfig| if line == 0 { vm.line } else { line };
    for (i, vm) in cfg.vms.iter().enumerate() {
        let mut image = |r: &ImageRef, key: &str, line: usize| -> Option<u64> {
            let field = format!("vm[{i}].{key}");
            match size_of(r) {
                None => {
                    let msg = match r {
                        ImageRef::Path(p) => format!("file not found: {}", p.display()),
                        other => {
                            format!("the project's {other} image is not available (not built?)")
                        }
                    };
                    err(at(line, vm), field, msg);
                    None
                }
                Some(0) => {
                    err(at(line, vm), field, format!("{r} is empty"));
                    None
                }
                Some(n) => Some(n),
            }
        };
        let kernel = image(&vm.kernel, "kernel", vm.lines.kernel);
        let initrd = match &vm.initrd {
            Some(r) => image(r, "initrd", vm.lines.initrd).map(Some),
            None => Some(None),
        };
        if let (Some(k), Some(ird)) = (kernel, initrd) {
            let have = vm.memory_mb << 20;
            let need = k
                .saturating_add(ird.unwrap_or(0))
                .saturating_add(DEVICE_TREE_RESERVE);
            if need > have {
                let initrd = ird
                    .map(|n| format!(" + initrd {}", bytes(n)))
                    .unwrap_or_default();
                let msg = format!(
                    "too small for its images: kernel {}{initrd} + {} for the device tree = {}, but memory is {}",
                    bytes(k),
                    bytes(DEVICE_TREE_RESERVE),
                    bytes(need),
                    format_mb(vm.memory_mb)
                );
                err(at(vm.lines.memory, vm), format!("vm[{i}].memory"), msg);
            }
        }
        for (k, d) in vm.disks.iter().enumerate() {
            let field = format!("vm[{i}].disk[{k}]");
            let Some(size) = size_of(&ImageRef::Path(d.image.clone())) else {
                err(
                    d.line,
                    format!("{field}.image"),
                    format!("file not found: {}", d.image.display()),
                );
                continue;
            };
            let total = size / SECTOR_SIZE;
            let past = match d.sectors {
                Some(n) => d.start.saturating_add(n) > total,
                None => d.start >= total,
            };
            if past {
                let msg = format!(
                    "{} ends past the end of {} ({total} sectors of {SECTOR_SIZE} bytes)",
                    window(d),
                    d.image.display()
                );
                err(d.line, field, msg);
            }
        }
    }
    errors.sort_by_key(|e| e.line);
    errors
}

/// Bytes as MiB, with one decimal when not whole.
fn bytes(n: u64) -> String {
    if n.is_multiple_of(1 << 20) {
        format_mb(n >> 20)
    } else {
        format!("{:.1}M", n as f64 / f64::from(1 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize(Path::new("a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("./x")), PathBuf::from("x"));
        assert_eq!(normalize(Path::new("/a/b/..")), PathBuf::from("/a"));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(2 << 20), "2M");
        assert_eq!(bytes(3 << 19), "1.5M");
        assert_eq!(bytes(1 << 30), "1G");
    }
}
