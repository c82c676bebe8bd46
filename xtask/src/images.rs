//! Building Rivet's binaries and packing boot bundles.

use std::path::{Path, PathBuf};
use std::process::Command;

use rivet_bundle::{OwnedVm, Writer};

pub const TARGET: &str = "riscv64gc-unknown-none-elf";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn out_dir() -> PathBuf {
    let d = root().join("target/rivet");
    let _ = std::fs::create_dir_all(&d);
    d
}

pub struct Built {
    pub hypervisor: PathBuf,
    pub testkernel: PathBuf,
}

/// Builds the hypervisor (ELF, loaded by QEMU as -kernel) and the test
/// kernel (flat Image with a Linux header).
pub fn build_all() -> Result<Built, String> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            "rivet-hv",
            "-p",
            "rivet-testkernel",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building the hypervisor or test kernel failed".into());
    }
    let rel = root().join("target").join(TARGET).join("release");
    let hv = rel.join("rivet");
    let tk_elf = rel.join("testkernel");
    let elf = std::fs::read(&tk_elf).map_err(|e| format!("{}: {e}", tk_elf.display()))?;
    let bin = crate::elf::to_flat_binary(&elf)?;
    let tk = out_dir().join("testkernel.bin");
    std::fs::write(&tk, bin).map_err(|e| e.to_string())?;
    Ok(Built {
        hypervisor: hv,
        testkernel: tk,
    })
}

/// One VM to put in a bundle.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub bootargs: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub focus: bool,
    /// Physical hart per vCPU (empty: time-sliced).
    pub pins: Vec<Option<u8>>,
    /// Disks: (index into the machine's disk images, window).
    pub disks: Vec<rivet_bundle::DiskDesc>,
    /// Network id of each NIC.
    pub nics: Vec<u32>,
    /// Configured MAC of each NIC.
    pub macs: Vec<Option<[u8; 6]>>,
    /// Shared directories: (index into the machine's virtio-fs devices, guest tag).
    pub fs: Vec<(u32, String)>,
}

/// The machine's disk images, each becoming one QEMU virtio-blk device
/// with serial `rivet-disk<N>` (N = its index here).
#[derive(Debug, Clone, Default)]
pub struct DiskSet {
    pub images: Vec<(PathBuf, bool)>,
}

impl DiskSet {
    /// Index of `image` (added if new); `read_only` when every user is.
    pub fn index(&mut self, image: &Path, read_only: bool) -> u32 {
        let canon = std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
        if let Some(i) = self.images.iter().position(|(p, _)| *p == canon) {
            self.images[i].1 &= read_only;
            return i as u32;
        }
        self.images.push((canon, read_only));
        (self.images.len() - 1) as u32
    }

    /// QEMU options for the disks and the entropy device.
    pub fn qemu_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (i, (p, ro)) in self.images.iter().enumerate() {
            a.push("-drive".into());
            a.push(format!(
                "file={},if=none,format=raw,id=rd{i},cache=writeback{}",
                p.display(),
                if *ro { ",readonly=on" } else { "" }
            ));
            a.push("-device".into());
            a.push(format!(
                "virtio-blk-device,drive=rd{i},serial=rivet-disk{i}"
            ));
        }
        a.extend(
            [
                "-object",
                "rng-random,filename=/dev/urandom,id=rng0",
                "-device",
                "virtio-rng-device,rng=rng0",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        a
    }
}

/// Writes a boot bundle for `vms` to `out`.
pub fn pack(
    vms: &[VmSpec],
    log_level: u32,
    keep_running: bool,
    uplink: Option<u32>,
    out: &Path,
) -> Result<(), String> {
    let mut w = Writer::new(
        if keep_running {
            rivet_bundle::FLAG_KEEP_RUNNING
        } else {
            0
        },
        log_level,
    );
    w.uplink = uplink;
    for vm in vms {
        let kernel = std::fs::read(&vm.kernel)
            .map_err(|e| format!("kernel {}: {e}", vm.kernel.display()))?;
        let initrd = match &vm.initrd {
            Some(p) => std::fs::read(p).map_err(|e| format!("initrd {}: {e}", p.display()))?,
            None => Vec::new(),
        };
        if vm.name.len() > rivet_bundle::NAME_LEN {
            return Err(format!(
                "VM name {:?} is longer than {} bytes",
                vm.name,
                rivet_bundle::NAME_LEN
            ));
        }
        w.add_vm(OwnedVm {
            name: vm.name.clone(),
            vcpus: vm.vcpus,
            flags: if vm.focus {
                rivet_bundle::VM_FLAG_FOCUS
            } else {
                0
            },
            memory_size: vm.memory_mb << 20,
            kernel,
            initrd,
            bootargs: vm.bootargs.clone(),
            pins: vm.pins.clone(),
            disks: vm.disks.clone(),
            devices: rivet_bundle::DEV_HVC | rivet_bundle::DEV_RNG,
            nics: vm.nics.clone(),
            macs: vm.macs.clone(),
            fs: vm.fs.clone(),
        });
    }
    std::fs::write(out, w.finish()).map_err(|e| format!("{}: {e}", out.display()))
}

/// QEMU options for the machine's NIC on QEMU's user-mode network, used as
/// the uplink: `restrict=on` (nothing leaves the host) and TCP forwards
/// bound to 127.0.0.1 only.
pub fn uplink_qemu_args(forwards: &[rivet_config::Forward]) -> Vec<String> {
    let mut netdev = String::from("user,id=up0,restrict=on,net=10.0.2.0/24");
    for f in forwards {
        let [a, b, c, d] = f.guest_ip;
        netdev.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{}-{a}.{b}.{c}.{d}:{}",
            f.host_port, f.guest_port
        ));
    }
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-device,netdev=up0".into(),
    ]
}

/// "512M", "2G", "256" (MiB) → MiB.
pub fn parse_size_mb(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('G' | 'g') => (&s[..s.len() - 1], 1024),
        Some('M' | 'm') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("bad size {s:?} (use e.g. 512M or 2G)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mb("512M").unwrap(), 512);
        assert_eq!(parse_size_mb("2G").unwrap(), 2048);
        assert_eq!(parse_size_mb("64").unwrap(), 64);
        assert!(parse_size_mb("lots").is_err());
    }
}
