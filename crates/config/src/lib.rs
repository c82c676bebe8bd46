//! Rivet's machine configuration file: parsing and validation.
//!
//! A configuration file (TOML, documented key by key in `docs/CONFIG.md`)
//! describes one QEMU machine running the hypervisor — its harts, host RAM,
//! log level — and the VMs the hypervisor starts on it. `xtask` turns a
//! [`MachineConfig`] into a boot bundle (`rivet-bundle`) and a QEMU command
//! line.
//!
//! Everything a user can get wrong is reported before anything is built:
//! [`parse`] and [`load`] check syntax, types, unknown keys, ranges and the
//! rules between VMs (unique names, hart pinning, one console, total memory,
//! disk windows), and [`check_images`] checks what needs the resolved images
//! (files exist, each VM's RAM holds its kernel and initrd). Every problem is
//! a [`ConfigError`] naming the file, the line, and the field, and all of
//! them are reported together rather than stopping at the first.
//!
//! ```
//! let text = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n";
//! let cfg = rivet_config::parse(text, std::path::Path::new("a.toml")).unwrap();
//! assert_eq!(cfg.vms[0].memory_mb, 64);
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod emit;
mod parse;
mod size;
mod validate;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};

pub use size::{format_mb, parse_size_mb};

/// Physical harts QEMU `virt` may give the hypervisor (`machine.harts`).
pub const MAX_HARTS: u32 = 8;
/// VMs in one configuration (the bundle's limit).
pub const MAX_VMS: usize = rivet_bundle::MAX_VMS;
/// vCPUs of one VM (the bundle's limit, the SBI hart-mask width).
pub const MAX_VCPUS: u32 = rivet_bundle::MAX_VCPUS;
/// Longest VM name in bytes (the bundle's name field).
pub const MAX_NAME_LEN: usize = rivet_bundle::NAME_LEN;
/// Smallest guest RAM in MiB.
pub const MIN_VM_MEMORY_MB: u64 = 4;
/// Guest RAM is a whole number of this many MiB (G-stage megapages).
pub const VM_MEMORY_ALIGN_MB: u64 = 2;
/// Largest memory size accepted anywhere in the file, in MiB (1 TiB).
pub const MAX_MEMORY_MB: u64 = 1 << 20;
/// Host RAM set aside for the hypervisor itself when checking `machine.memory`.
pub const HYPERVISOR_RESERVE_MB: u64 = 512;
/// Guest RAM set aside for the device tree when checking image sizes.
pub const DEVICE_TREE_RESERVE: u64 = 2 << 20;
/// Longest `bootargs` in bytes (Linux's RISC-V `COMMAND_LINE_SIZE` is 1024,
/// including the terminating NUL).
pub const MAX_BOOTARGS_LEN: usize = 1023;
/// Disk windows are counted in sectors of this many bytes.
pub const SECTOR_SIZE: u64 = 512;

/// A validated machine configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// Physical harts QEMU gives the hypervisor (`-smp`), `1..=MAX_HARTS`.
    pub harts: u32,
    /// Host RAM for QEMU in MiB, if the file sets it; see
    /// [`MachineConfig::host_memory_mb`] for the value to use.
    pub memory_mb: Option<u64>,
    /// Keep the hypervisor running when the last VM stops.
    pub keep_running: bool,
    /// Hypervisor log level: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace
    /// (the bundle's encoding).
    pub log: u32,
    /// The network bridged to QEMU's user-mode network (restricted: only
    /// host forwards on 127.0.0.1 reach it), if any.
    pub uplink: Option<String>,
    /// Host TCP ports on 127.0.0.1 forwarded into the uplink network.
    pub forwards: Vec<Forward>,
    /// The VMs, in file order (VM index `i` is `vms[i]` in the bundle).
    pub vms: Vec<VmConfig>,
    /// The configuration file as given to [`load`] / [`parse`].
    pub path: PathBuf,
}

/// One `[[vm]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Unique, 1..=32 bytes of `[A-Za-z0-9_-]`.
    pub name: String,
    /// `1..=MAX_VCPUS`.
    pub vcpus: u32,
    /// Guest RAM in MiB: at least 4, a multiple of 2.
    pub memory_mb: u64,
    pub kernel: ImageRef,
    pub initrd: Option<ImageRef>,
    /// Kernel command line (empty when not given).
    pub bootargs: String,
    /// `pin[v]` is the physical hart vCPU `v` runs on, exclusively; `None`:
    /// the VM's vCPUs are time-sliced on the harts no vCPU is pinned to.
    pub pin: Option<Vec<u32>>,
    /// This VM has console input at start (at most one VM sets it; see
    /// [`MachineConfig::console_vm`]).
    pub console: bool,
    pub disks: Vec<DiskConfig>,
    /// Network cards (virtio-net), each on a named network.
    pub nics: Vec<NicConfig>,
    /// Host directories shared through virtio-fs.
    pub fs: Vec<FsConfig>,
    /// Line of the `[[vm]]` header (of the inline table for `vm = [{..}]`).
    pub line: usize,
    /// Lines of the keys [`check_images`] reports on.
    pub lines: VmLines,
}

/// Where some of a VM's keys are, for errors found after parsing. A line is
/// 0 when the key is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmLines {
    pub memory: usize,
    pub kernel: usize,
    pub initrd: usize,
}

/// A kernel or initrd: one of the project's images, or a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// `"linux"`: the project's Linux kernel Image.
    Linux,
    /// `"busybox"`: the project's busybox initramfs.
    Busybox,
    /// `"testkernel"`: Rivet's test kernel (flat Image).
    TestKernel,
    /// A file, already resolved against the configuration file's directory.
    Path(PathBuf),
}

impl ImageRef {
    /// The file, for [`ImageRef::Path`].
    pub fn path(&self) -> Option<&Path> {
        match self {
            ImageRef::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The keyword as written in the file (`None` for a path).
    pub fn keyword(&self) -> Option<&'static str> {
        match self {
            ImageRef::Linux => Some("linux"),
            ImageRef::Busybox => Some("busybox"),
            ImageRef::TestKernel => Some("testkernel"),
            ImageRef::Path(_) => None,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Path(p) => write!(f, "{}", p.display()),
            other => f.write_str(other.keyword().unwrap_or_default()),
        }
    }
}

/// One `[[vm.disk]]`: a window of sectors of a host image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// The image file, resolved against the configuration file's directory.
    pub image: PathBuf,
    /// First sector of the window (512-byte sectors).
    pub start: u64,
    /// Length of the window in sectors; `None`: up to the end of the image.
    pub sectors: Option<u64>,
    pub read_only: bool,
    /// Line of the `[[vm.disk]]` header.
    pub line: usize,
}

/// One `[[vm.nic]]`: a virtio-net card on the virtual switch's network
/// `network` (VMs on different networks cannot reach each other).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    pub network: String,
    /// `mac = "52:54:00:12:34:56"`; absent: a stable one derived from the
    /// VM name and NIC index.
    pub mac: Option<[u8; 6]>,
    /// Line of the `[[vm.nic]]` header.
    pub line: usize,
}

/// One `[[vm.fs]]`: host directory `path` mounted by the guest as `tag`
/// (`mount -t virtiofs TAG /mnt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    pub tag: String,
    /// Resolved against the configuration file's directory.
    pub path: PathBuf,
    pub line: usize,
}

/// At most this many shared directories per VM.
pub const MAX_FS: usize = 2;

/// A host forward: 127.0.0.1:`host_port` on the host reaches
/// `guest_ip`:`guest_port` on the uplink network (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub host_port: u16,
    pub guest_ip: [u8; 4],
    pub guest_port: u16,
}

impl Forward {
    /// Parses `"HOSTPORT:A.B.C.D:GUESTPORT"`.
    pub fn parse(s: &str) -> Option<Forward> {
        let mut it = s.split(':');
        let host_port = it.next()?.parse().ok()?;
        let ip = it.next()?;
        let guest_port = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        let octets: Vec<u8> = ip
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<Vec<u8>>>()?;
        let guest_ip: [u8; 4] = octets.try_into().ok()?;
        Some(Forward {
            host_port,
            guest_ip,
            guest_port,
        })
    }
}

/// At most this many disks and NICs per VM (the boot bundle's limit).
pub const MAX_DISKS: usize = 4;
pub const MAX_NICS: usize = 4;

/// One problem with a configuration file.
///
/// Displays as `{file}:{line}: {field}: {message}`, or `{file}: {field}:
/// {message}` when `line` is 0 (the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, 0 when no line applies.
    pub line: usize,
    /// Dotted path of the key, e.g. `vm[0].vcpus` or `vm[1].disk[0]`;
    /// `syntax` for TOML syntax errors, `file` when the file cannot be read.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.field,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates the configuration file at `path`. Relative
/// image paths in it are resolved against `path`'s directory.
pub fn load(path: &Path) -> Result<MachineConfig, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            field: "file".into(),
            message: format!("cannot read: {e}"),
        }]),
    }
}

/// Parses and validates `text` as if read from `path` (which is only used to
/// resolve relative paths and to name the file in errors). Errors come back
/// all together, sorted by line.
pub fn parse(text: &str, path: &Path) -> Result<MachineConfig, Vec<ConfigError>> {
    parse::parse(text, path)
}

/// Checks that need the images themselves; call after [`load`]/[`parse`].
///
/// `size_of` resolves an image to its size in bytes, or `None` when it is
/// not available (missing file, project image not built). It is asked about
/// every VM's kernel and initrd, and about every disk image (as
/// [`ImageRef::Path`]). For the kernel it should return the guest memory the
/// image occupies — for a Linux `Image`, the larger of the file size and the
/// header's `image_size` — so that bss is counted.
///
/// Reports: a missing kernel, initrd or disk image; a VM whose RAM is smaller
/// than kernel + initrd + 2 MiB for the device tree; a disk window that ends
/// past the end of its image.
pub fn check_images(
    cfg: &MachineConfig,
    size_of: impl Fn(&ImageRef) -> Option<u64>,
) -> Vec<ConfigError> {
    validate::check_images(cfg, &size_of)
}

impl MachineConfig {
    /// Host RAM to give QEMU in MiB: `machine.memory` if set, else twice the
    /// VMs' RAM plus [`HYPERVISOR_RESERVE_MB`], at least 1 GiB. (Twice,
    /// because QEMU loads the bundle 256 MiB into RAM and splits it; the
    /// same rule `cargo xtask run` uses for one VM.)
    pub fn host_memory_mb(&self) -> u64 {
        self.memory_mb.unwrap_or_else(|| {
            let vms: u64 = self.vms.iter().map(|v| v.memory_mb).sum();
            (vms * 2 + HYPERVISOR_RESERVE_MB).max(1024)
        })
    }

    /// Index of the VM with console input at start: the one with
    /// `console = true`, else the first VM.
    pub fn console_vm(&self) -> usize {
        self.vms.iter().position(|v| v.console).unwrap_or(0)
    }

    /// Writes the configuration back as TOML. Paths under the file's
    /// directory are written relative to it, so `parse(&cfg.to_toml(),
    /// &cfg.path)` gives `cfg` back (except for line numbers).
    pub fn to_toml(&self) -> String {
        emit::to_toml(self)
    }
}
