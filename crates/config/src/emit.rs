//! Writing a [`MachineConfig`] back as TOML (see [`MachineConfig::to_toml`]).

use std::fmt::Write;
use std::path::Path;

use crate::parse::LOG_LEVELS;
use crate::size::format_mb;
use crate::{ImageRef, MachineConfig};

pub(crate) fn to_toml(cfg: &MachineConfig) -> String {
    let dir = cfg.path.parent().unwrap_or(Path::new(""));
    let mut s = String::new();
    let log = LOG_LEVELS.get(cfg.log as usize).copied().unwrap_or("info");
    // Writing to a String cannot fail.
    let _ = writeln!(s, "[machine]\nharts = {}", cfg.harts);
    if let Some(u) = &cfg.uplink {
        let _ = writeln!(s, "uplink = {}", quote(u));
    }
    if !cfg.forwards.is_empty() {
        let items: Vec<String> = cfg
            .forwards
            .iter()
            .map(|f| {
                let [a, b, c, d] = f.guest_ip;
                quote(&format!("{}:{a}.{b}.{c}.{d}:{}", f.host_port, f.guest_port))
            })
            .collect();
        let _ = writeln!(s, "forward = [{}]", items.join(", "));
    }
    if let Some(mb) = cfg.memory_mb {
        let _ = writeln!(s, "memory = {}", quote(&format_mb(mb)));
    }
    let _ = writeln!(
        s,
        "keep_running = {}\nlog = {}",
        cfg.keep_running,
        quote(log)
    );
    for vm in &cfg.vms {
        let _ = writeln!(
            s,
            "\n[[vm]]\nname = {}\nvcpus = {}",
            quote(&vm.name),
            vm.vcpus
        );
        let _ = writeln!(s, "memory = {}", quote(&format_mb(vm.memory_mb)));
        let _ = writeln!(s, "kernel = {}", image(&vm.kernel, dir));
        if let Some(i) = &vm.initrd {
            let _ = writeln!(s, "initrd = {}", image(i, dir));
        }
        if !vm.bootargs.is_empty() {
            let _ = writeln!(s, "bootargs = {}", quote(&vm.bootargs));
        }
        if let Some(pin) = &vm.pin {
            let harts: Vec<String> = pin.iter().map(u32::to_string).collect();
            let _ = writeln!(s, "pin = [{}]", harts.join(", "));
        }
        if vm.console {
            let _ = writeln!(s, "console = true");
        }
        for d in &vm.disks {
            let _ = writeln!(
                s,
                "\n[[vm.disk]]\nimage = {}",
                quote(&relative(&d.image, dir))
            );
            let _ = writeln!(s, "start = {}", d.start);
            if let Some(n) = d.sectors {
                let _ = writeln!(s, "sectors = {n}");
            }
            let _ = writeln!(s, "read_only = {}", d.read_only);
        }
        for f in &vm.fs {
            let _ = writeln!(
                s,
                "\n[[vm.fs]]\ntag = {}\npath = {}",
                quote(&f.tag),
                quote(&relative(&f.path, dir))
            );
        }
        for n in &vm.nics {
            let _ = writeln!(s, "\n[[vm.nic]]\nnetwork = {}", quote(&n.network));
            if let Some(m) = n.mac {
                let _ = writeln!(
                    s,
                    "mac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                );
            }
        }
    }
    s
}

fn image(r: &ImageRef, dir: &Path) -> String {
    match r {
        ImageRef::Path(p) => {
            let rel = relative(p, dir);
            // A file named like a keyword must not read back as the keyword.
            if ["linux", "busybox", "testkernel"].contains(&rel.as_str()) {
                quote(&format!("./{rel}"))
            } else {
                quote(&rel)
            }
        }
        other => quote(other.keyword().unwrap_or_default()),
    }
}

/// `p` relative to `dir` when under it, else as is.
fn relative(p: &Path, dir: &Path) -> String {
    p.strip_prefix(dir)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
