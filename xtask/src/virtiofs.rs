//! The host side of shared directories: `virtiofsd` (from crates.io, built
//! once into target/tools), one daemon per distinct directory, each served
//! to QEMU as a `vhost-user-fs-device` with tag `rivetfs<N>`; the hypervisor
//! drives those devices and relays its guests' FUSE requests to them.
//! vhost-user needs guest RAM QEMU can share with the daemon, so machines
//! with shared directories use a memfd memory backend.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::images;

#[derive(Debug, Clone, Default)]
pub struct FsSet {
    pub dirs: Vec<PathBuf>,
}

impl FsSet {
    pub fn index(&mut self, dir: &Path) -> u32 {
        let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if let Some(i) = self.dirs.iter().position(|d| *d == canon) {
            return i as u32;
        }
        self.dirs.push(canon);
        (self.dirs.len() - 1) as u32
    }
}

/// Path of virtiofsd, building it (cargo install into target/tools) if needed.
pub fn virtiofsd() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("RIVET_VIRTIOFSD") {
        return Ok(PathBuf::from(p));
    }
    let tools = images::root().join("target/tools");
    let bin = tools.join("bin/virtiofsd");
    if bin.exists() {
        return Ok(bin);
    }
    crate::prereq::ensure_packages(&[("pkg-config", "pkg-config")])?;
    crate::prereq::ensure_dev_libs(&["libcap-ng-dev", "libseccomp-dev"])?;
    eprintln!(
        "xtask: building virtiofsd from crates.io into target/tools (a few minutes, once)..."
    );
    let ok = Command::new(env!("CARGO"))
        .args(["install", "virtiofsd", "--locked", "--root"])
        .arg(&tools)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok || !bin.exists() {
        return Err("building virtiofsd failed (cargo install virtiofsd --locked)".into());
    }
    Ok(bin)
}

/// Starts one daemon per directory and returns QEMU's options for them.
/// Each daemon exits by itself when QEMU disconnects.
pub fn start(set: &FsSet, tag: &str, memory_mb: u64) -> Result<Vec<String>, String> {
    if set.dirs.is_empty() {
        return Ok(Vec::new());
    }
    let bin = virtiofsd()?;
    let run = images::out_dir().join(format!("vfs-{tag}"));
    std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
    let mut args = vec![
        "-object".to_string(),
        format!("memory-backend-memfd,id=mem0,size={memory_mb}M,share=on"),
        "-machine".into(),
        "memory-backend=mem0".into(),
    ];
    for (i, dir) in set.dirs.iter().enumerate() {
        let sock = run.join(format!("fs{i}.sock"));
        let _ = std::fs::remove_file(&sock);
        let log = std::fs::File::create(run.join(format!("virtiofsd{i}.log")))
            .map_err(|e| e.to_string())?;
        Command::new(&bin)
            .arg("--socket-path")
            .arg(&sock)
            .arg("--shared-dir")
            .arg(dir)
            .args(["--sandbox", "none", "--cache", "auto"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start virtiofsd: {e}"))?;
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !sock.exists() {
            return Err(format!("virtiofsd did not create {}", sock.display()));
        }
        args.push("-chardev".into());
        args.push(format!("socket,id=vfs{i},path={}", sock.display()));
        args.push("-device".into());
        args.push(format!(
            "vhost-user-fs-device,chardev=vfs{i},tag=rivetfs{i}"
        ));
    }
    Ok(args)
}
