//! `cargo xtask guest linux`: builds Rivet's Linux guest from Debian
//! packages on the host, with nothing downloaded but Debian's own:
//!
//! * the kernel: `linux-source-6.12` (bookworm-backports), `make tinyconfig`
//!   plus `guests/linux/config.fragment`, cross-compiled with
//!   `riscv64-linux-gnu-gcc` into `target/guests/linux-6.12-Image`;
//! * the initramfs: a static busybox from Debian's source package
//!   (`apt-get source busybox`), `/init` = `guests/linux/init.sh`, packed by
//!   the newc writer below (so `/dev/console` is a real device node without
//!   root or `cpio`) and gzipped into `target/guests/busybox-initramfs.cpio.gz`.
//!
//! Both are cached: each output has a stamp of its inputs beside it and is
//! rebuilt only when missing, when forced, or when its inputs changed. The
//! build trees and the logs of every step live in `target/guests/build/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::images;

/// What `build_linux` should do.
#[derive(Debug, Clone, Default)]
pub struct LinuxBuildOpts {
    /// A kernel source tree of one's own to build (with the same config
    /// fragment, out of tree) instead of Debian's `linux-source-6.12`.
    pub kernel_tree: Option<PathBuf>,
    /// Rebuild both images even when their stamps say they are up to date.
    pub force: bool,
    /// Parallel make jobs; 0 = the number of host CPUs.
    pub jobs: usize,
}

/// The built guest.
#[derive(Debug, Clone)]
pub struct LinuxImages {
    /// `arch/riscv/boot/Image` (boot with `console=ttyS0`).
    pub image: PathBuf,
    /// gzipped newc cpio archive with busybox and `/init`.
    pub initramfs: PathBuf,
}

/// File names in `target/guests/` (e2e's `linux_images()` looks for these).
pub const IMAGE_NAME: &str = "linux-6.12-Image";
pub const INITRAMFS_NAME: &str = "busybox-initramfs.cpio.gz";

const ARCH: &str = "riscv";
const CROSS_COMPILE: &str = "riscv64-linux-gnu-";
const LINUX_SOURCE_PKG: &str = "linux-source-6.12";
const LINUX_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
const BACKPORTS_LINE: &str = "deb http://deb.debian.org/debian bookworm-backports main";
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/rivet-bookworm-backports.list";
const DEB_SRC_LINE: &str = "deb-src http://deb.debian.org/debian bookworm main";
const DEB_SRC_LIST: &str = "/etc/apt/sources.list.d/rivet-bookworm-src.list";
/// Part of every stamp: bump it when the build steps below change in a way
/// that should rebuild cached images.
const RECIPE: &str = "rivet-linux-guest-1";

/// Kernel options without which the guest does not boot to its shell under
/// Rivet; the build fails if `olddefconfig` dropped any of them.
const REQUIRED_KCONFIG: &[&str] = &[
    "CONFIG_64BIT=y",
    "CONFIG_MMU=y",
    "CONFIG_SMP=y",
    "CONFIG_RISCV_SBI=y",
    "CONFIG_RISCV_TIMER=y",
    "CONFIG_SIFIVE_PLIC=y",
    "CONFIG_SERIAL_8250=y",
    "CONFIG_SERIAL_8250_CONSOLE=y",
    "CONFIG_SERIAL_OF_PLATFORM=y",
    "CONFIG_VIRTIO_MMIO=y",
    "CONFIG_BLK_DEV_INITRD=y",
    "CONFIG_RD_GZIP=y",
    "CONFIG_BINFMT_ELF=y",
    "CONFIG_BINFMT_SCRIPT=y",
    "CONFIG_DEVTMPFS=y",
    "CONFIG_PROC_FS=y",
    "CONFIG_SYSFS=y",
    "CONFIG_TMPFS=y",
];

/// Changes to busybox's `make defconfig`. `None` = not set.
const BUSYBOX_CONFIG: &[(&str, Option<&str>)] = &[
    // No shared libraries in the initramfs.
    ("CONFIG_STATIC", Some("y")),
    // tc uses the CBQ qdisc definitions that Linux 6.8 removed from its
    // uapi headers: it does not build against new kernel headers.
    ("CONFIG_TC", None),
    ("CONFIG_FEATURE_TC_INGRESS", None),
];

pub fn out_dir() -> PathBuf {
    images::root().join("target/guests")
}

fn build_dir() -> PathBuf {
    out_dir().join("build")
}

pub fn fragment_path() -> PathBuf {
    images::root().join("guests/linux/config.fragment")
}

pub fn init_path() -> PathBuf {
    images::root().join("guests/linux/init.sh")
}

/// Builds (or finds up to date in `target/guests/`) the kernel Image and
/// the busybox initramfs.
pub fn build_linux(opts: &LinuxBuildOpts) -> Result<LinuxImages, String> {
    let out = out_dir();
    let build = build_dir();
    fs::create_dir_all(&build).map_err(|e| format!("cannot create {}: {e}", build.display()))?;
    let fragment_file = fragment_path();
    let fragment = fs::read(&fragment_file)
        .map_err(|e| format!("kernel config fragment {}: {e}", fragment_file.display()))?;
    let init_file = init_path();
    let init =
        fs::read(&init_file).map_err(|e| format!("init script {}: {e}", init_file.display()))?;
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.jobs
    };
    let images = LinuxImages {
        image: out.join(IMAGE_NAME),
        initramfs: out.join(INITRAMFS_NAME),
    };
    let started = Instant::now();
    let mut tools_checked = false;

    // Kernel.
    let tree = match &opts.kernel_tree {
        Some(t) => Some(check_kernel_tree(t)?),
        None => None,
    };
    let source_id = match &tree {
        Some(t) => format!("tree:{}", t.display()),
        None => format!("debian:{LINUX_SOURCE_PKG}"),
    };
    let kernel_key = input_key(&[
        RECIPE.as_bytes(),
        b"kernel",
        source_id.as_bytes(),
        &fragment,
    ]);
    let kernel_stamp = stamp_path(&images.image);
    // A tree of one's own always goes through make (an incremental build):
    // its sources may have changed since the last build.
    if opts.force || tree.is_some() || !up_to_date(&images.image, &kernel_stamp, &kernel_key) {
        ensure_tools()?;
        tools_checked = true;
        let t = Instant::now();
        let built = match &tree {
            Some(src) => {
                let obj = build.join(format!(
                    "linux-tree-{}",
                    &input_key(&[src.to_string_lossy().as_bytes()])[..8]
                ));
                eprintln!(
                    "xtask: [linux] building your kernel tree {} (out of tree, in {})",
                    src.display(),
                    obj.display()
                );
                build_kernel(src, &obj, &fragment_file, jobs)?
            }
            None => {
                let tarball = ensure_linux_source()?;
                let src = extract_linux(&tarball)?;
                build_kernel(&src, &build.join("linux-obj"), &fragment_file, jobs)?
            }
        };
        install(&built, &images.image)?;
        write_stamp(&kernel_stamp, &kernel_key)?;
        eprintln!(
            "xtask: [linux] kernel ready: {} (in {})",
            images.image.display(),
            fmt_duration(t.elapsed())
        );
    } else {
        eprintln!(
            "xtask: [linux] kernel up to date: {}",
            images.image.display()
        );
    }

    // Initramfs.
    let busybox_desc = format!("{BUSYBOX_CONFIG:?}");
    let initramfs_key = input_key(&[
        RECIPE.as_bytes(),
        b"initramfs",
        busybox_desc.as_bytes(),
        &init,
    ]);
    let initramfs_stamp = stamp_path(&images.initramfs);
    if opts.force || !up_to_date(&images.initramfs, &initramfs_stamp, &initramfs_key) {
        if !tools_checked {
            ensure_tools()?;
        }
        let t = Instant::now();
        let src = busybox_source()?;
        build_busybox(&src, jobs, opts.force)?;
        let rootfs = install_busybox(&src)?;
        pack_initramfs(&rootfs, &init, &images.initramfs)?;
        write_stamp(&initramfs_stamp, &initramfs_key)?;
        eprintln!(
            "xtask: [busybox] initramfs ready: {} (in {})",
            images.initramfs.display(),
            fmt_duration(t.elapsed())
        );
    } else {
        eprintln!(
            "xtask: [busybox] initramfs up to date: {}",
            images.initramfs.display()
        );
    }
    if started.elapsed() > Duration::from_secs(5) {
        eprintln!(
            "xtask: Linux guest built in {}",
            fmt_duration(started.elapsed())
        );
    }
    Ok(images)
}

// ---------------------------------------------------------------------------
// Host prerequisites (same policy as prereq.rs: install from Debian when
// root, otherwise stop with the exact command to run).

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The cross compiler, kernel build tools and Debian source tooling.
fn ensure_tools() -> Result<(), String> {
    crate::prereq::ensure_packages(&[
        ("riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu"),
        ("gcc", "gcc"),
        ("make", "make"),
        ("bc", "bc"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("xz", "xz-utils"),
        ("gzip", "gzip"),
        ("dpkg-source", "dpkg-dev"),
    ])?;
    // Packages without a command of their own: known by a file they ship.
    let by_file = [
        (
            "/usr/riscv64-linux-gnu/include/stdio.h",
            "libc6-dev-riscv64-cross",
        ),
        ("/usr/include/stdio.h", "libc6-dev"),
    ];
    let missing: Vec<&str> = by_file
        .iter()
        .filter(|(f, _)| !Path::new(f).exists())
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() {
        apt_install(&missing, false)?;
    }
    Ok(())
}

/// `apt-get install --no-install-recommends` as root, saying what it does
/// (with `backports`, the packages themselves come from bookworm-backports,
/// their dependencies from wherever apt prefers); otherwise an error with
/// the commands to run by hand.
fn apt_install(packages: &[&str], backports: bool) -> Result<(), String> {
    let names: Vec<String> = packages
        .iter()
        .map(|p| {
            if backports {
                format!("{p}/bookworm-backports")
            } else {
                p.to_string()
            }
        })
        .collect();
    let manual = format!(
        "{}apt-get update && apt-get install -y --no-install-recommends {}",
        if backports && !backports_configured() {
            format!("echo '{BACKPORTS_LINE}' > {BACKPORTS_LIST} && ")
        } else {
            String::new()
        },
        names.join(" ")
    );
    if !is_root() || !have("apt-get") {
        return Err(format!(
            "missing host packages {packages:?}; install them as root with:\n    {manual}"
        ));
    }
    if backports && !backports_configured() {
        fs::write(BACKPORTS_LIST, format!("{BACKPORTS_LINE}\n"))
            .map_err(|e| format!("cannot write {BACKPORTS_LIST}: {e}; run:\n    {manual}"))?;
        eprintln!("xtask: added the bookworm-backports apt source ({BACKPORTS_LIST})");
    }
    let log = build_dir().join("apt.log");
    apt_update(&log).map_err(|e| format!("{e}\nor run:\n    {manual}"))?;
    eprintln!(
        "xtask: installing {} (apt-get install --no-install-recommends {})",
        packages.join(" "),
        names.join(" ")
    );
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&names);
    run_logged("apt-get install", c, &log, None).map_err(|e| format!("{e}\nor run:\n    {manual}"))
}

fn apt_update(log: &Path) -> Result<(), String> {
    eprintln!("xtask: updating package lists (apt-get update)");
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["update", "-q"]);
    run_logged("apt-get update", c, log, None)
}

/// The apt source files apt reads (not *.disabled and the like).
fn apt_source_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files.into_iter().filter(|p| p.is_file()).collect()
}

fn backports_configured() -> bool {
    apt_source_files()
        .iter()
        .any(|f| fs::read_to_string(f).is_ok_and(|t| t.contains("bookworm-backports")))
}

/// Whether an apt source text (one-line `.list` or deb822 `.sources`) has
/// source-package entries.
fn has_deb_src(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        l.starts_with("deb-src ")
            || l.starts_with("deb-src\t")
            || (l.starts_with("Types:")
                && l["Types:".len()..]
                    .split_whitespace()
                    .any(|t| t == "deb-src"))
    })
}

/// The mirror URI and `Signed-By` keyring of the configured `deb` entry
/// for bookworm main, from a one-line `.list` or a deb822 `.sources` text.
/// A deb-src entry for the same mirror and suite must name the same
/// keyring, or apt refuses to read its sources at all.
fn bookworm_entry(text: &str) -> Option<(String, Option<String>)> {
    // One-line entries: deb [opt=value ...] URI SUITE COMPONENT...
    for l in text.lines().map(str::trim) {
        let Some(rest) = l.strip_prefix("deb ").or_else(|| l.strip_prefix("deb\t")) else {
            continue;
        };
        let rest = rest.trim_start();
        let (opts, rest) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((o, r)) => (o, r),
            None => ("", rest),
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() >= 3 && words[1] == "bookworm" && words[2..].contains(&"main") {
            let signed_by = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_string);
            return Some((words[0].to_string(), signed_by));
        }
    }
    // deb822 stanzas, separated by blank lines.
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (!l.starts_with([' ', '\t', '#']) && k.trim().eq_ignore_ascii_case(name))
                    .then(|| v.trim().to_string())
            })
        };
        let has = |name: &str, word: &str| {
            field(name).is_some_and(|v| v.split_whitespace().any(|w| w == word))
        };
        if has("Types", "deb") && has("Suites", "bookworm") && has("Components", "main") {
            let uri = field("URIs")?.split_whitespace().next()?.to_string();
            // A path, not an inline key block.
            let signed_by = field("Signed-By").filter(|v| v.starts_with('/'));
            return Some((uri, signed_by));
        }
    }
    None
}

fn deb_src_line(entry: Option<(String, Option<String>)>) -> String {
    match entry {
        Some((uri, Some(key))) => format!("deb-src [signed-by={key}] {uri} bookworm main"),
        Some((uri, None)) => format!("deb-src {uri} bookworm main"),
        None => DEB_SRC_LINE.to_string(),
    }
}

/// `apt-get source` needs a deb-src entry; adds one for bookworm main (same
/// mirror and keyring as the configured `deb` entry) when there is none.
fn ensure_deb_src() -> Result<(), String> {
    let files = apt_source_files();
    if files
        .iter()
        .any(|f| fs::read_to_string(f).is_ok_and(|t| has_deb_src(&t)))
    {
        return Ok(());
    }
    let line = deb_src_line(
        files
            .iter()
            .find_map(|f| bookworm_entry(&fs::read_to_string(f).ok()?)),
    );
    let manual = format!("echo '{line}' > {DEB_SRC_LIST} && apt-get update");
    if !is_root() || !have("apt-get") {
        return Err(format!("apt has no deb-src source, needed for `apt-get source busybox`; as root run:\n    {manual}"));
    }
    fs::write(DEB_SRC_LIST, format!("{line}\n"))
        .map_err(|e| format!("cannot write {DEB_SRC_LIST}: {e}; run:\n    {manual}"))?;
    eprintln!(
        "xtask: added a deb-src apt source for Debian's source packages ({DEB_SRC_LIST}: {line})"
    );
    if let Err(e) = apt_update(&build_dir().join("apt.log")) {
        // Never leave apt unable to read its sources.
        let _ = fs::remove_file(DEB_SRC_LIST);
        return Err(format!("{e}\n(removed {DEB_SRC_LIST} again; add a deb-src entry for bookworm main by hand, e.g.:\n    {manual})"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Running the build's commands.

/// Runs `cmd` with its output appended to `log`. With `progress`, says
/// every minute that the step is still running. On failure the error names
/// the log and quotes its last lines.
fn run_logged(
    what: &str,
    mut cmd: Command,
    log: &Path,
    progress: Option<&str>,
) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let _ = writeln!(f, "\n$ {}", command_line(&cmd));
    let out = f.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(f);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run `{}`: {e}", command_line(&cmd)))?;
    let started = Instant::now();
    let mut next_note = Duration::from_secs(60);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(format!("{what}: {e}")),
        }
        if let Some(p) = progress {
            if started.elapsed() >= next_note {
                eprintln!(
                    "xtask: {p}: still running, {} so far (output in {})",
                    fmt_duration(started.elapsed()),
                    log.display()
                );
                next_note += Duration::from_secs(60);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({status}); the full output is in {}; its last lines:\n{}",
        log.display(),
        log_tail(log, 30)
    ))
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn log_tail(log: &Path, n: usize) -> String {
    let text = fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts a step's log afresh, so its tail is about this build.
fn fresh_log(name: &str) -> Result<PathBuf, String> {
    let log = build_dir().join(name);
    fs::write(&log, "").map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    Ok(log)
}

/// `make` without whatever make or cargo put in our environment.
fn make_command(dir: &Path) -> Command {
    let mut c = Command::new("make");
    c.current_dir(dir);
    for v in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
        "ARCH",
        "CROSS_COMPILE",
        "KCONFIG_CONFIG",
        "KBUILD_OUTPUT",
        "O",
    ] {
        c.env_remove(v);
    }
    c.env("KBUILD_BUILD_USER", "rivet")
        .env("KBUILD_BUILD_HOST", "rivet")
        .env("LC_ALL", "C");
    c
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

/// Copies `from` to `to` through a temporary name, so `to` is never half
/// written.
fn install(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("tmp");
    fs::copy(from, &tmp)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), tmp.display()))?;
    fs::rename(&tmp, to)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), to.display()))
}

// ---------------------------------------------------------------------------
// Stamps: a hash of everything that went into an output, stored beside it.

/// FNV-1a (64-bit) over length-prefixed parts, in hex. Stable across Rust
/// versions (unlike `DefaultHasher`), and parts cannot run into each other.
fn input_key(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for p in parts {
        eat(&(p.len() as u64).to_le_bytes());
        eat(p);
    }
    format!("{h:016x}")
}

fn stamp_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.stamp"))
}

/// The output exists (and is not empty) and was built from inputs with `key`.
fn up_to_date(output: &Path, stamp: &Path, key: &str) -> bool {
    let built = fs::metadata(output).is_ok_and(|m| m.is_file() && m.len() > 0);
    built && fs::read_to_string(stamp).is_ok_and(|s| s.trim() == key)
}

fn write_stamp(stamp: &Path, key: &str) -> Result<(), String> {
    fs::write(stamp, format!("{key}\n"))
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

// ---------------------------------------------------------------------------
// Kernel.

fn check_kernel_tree(tree: &Path) -> Result<PathBuf, String> {
    let t = tree
        .canonicalize()
        .map_err(|e| format!("kernel tree {}: {e}", tree.display()))?;
    if !t.join("Makefile").is_file()
        || !t.join("arch/riscv").is_dir()
        || !t.join("scripts/kconfig/merge_config.sh").is_file()
    {
        return Err(format!("{} is not a Linux source tree with RISC-V support (no Makefile, arch/riscv or scripts/kconfig)", t.display()));
    }
    Ok(t)
}

/// Debian's kernel source tarball, installed from bookworm-backports if
/// missing.
fn ensure_linux_source() -> Result<PathBuf, String> {
    let tarball = PathBuf::from(LINUX_TARBALL);
    if !tarball.is_file() {
        eprintln!("xtask: [linux] installing the kernel source ({LINUX_SOURCE_PKG} from bookworm-backports, ~140 MB)...");
        if let Err(e) = apt_install(&[LINUX_SOURCE_PKG], true) {
            if !is_root() {
                return Err(e);
            }
            // bookworm-backports may have dropped it; bookworm-security
            // carries the same 6.12 series.
            eprintln!("xtask: [linux] not installable from bookworm-backports, trying the default release:\n{e}");
            apt_install(&[LINUX_SOURCE_PKG], false)?;
        }
        if !tarball.is_file() {
            return Err(format!(
                "{LINUX_SOURCE_PKG} is installed but {LINUX_TARBALL} is missing"
            ));
        }
    }
    Ok(tarball)
}

/// Unpacks the tarball into build/linux-6.12/ unless that tree came from
/// this very tarball already.
fn extract_linux(tarball: &Path) -> Result<PathBuf, String> {
    let build = build_dir();
    let dir = build.join("linux-6.12");
    let meta = fs::metadata(tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ident = format!("{} {} {}\n", tarball.display(), meta.len(), mtime);
    let marker = ".rivet-source";
    if dir.join("Makefile").is_file()
        && fs::read_to_string(dir.join(marker)).is_ok_and(|m| m == ident)
    {
        return Ok(dir);
    }
    eprintln!("xtask: [linux] extracting {} ...", tarball.display());
    let t = Instant::now();
    let tmp = build.join("linux-6.12.tmp");
    remove_dir(&tmp)?;
    remove_dir(&dir)?;
    // Objects built from another source tree would look newer than the
    // fresh sources: start the object tree over too.
    remove_dir(&build.join("linux-obj"))?;
    fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let log = fresh_log("linux-extract.log")?;
    let mut c = Command::new("tar");
    c.arg("-xJf")
        .arg(tarball)
        .arg("-C")
        .arg(&tmp)
        .args(["--strip-components=1", "--no-same-owner"]);
    run_logged(
        "[linux] extracting the kernel source",
        c,
        &log,
        Some("[linux] extracting"),
    )?;
    fs::write(tmp.join(marker), &ident).map_err(|e| e.to_string())?;
    fs::rename(&tmp, &dir)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), dir.display()))?;
    eprintln!(
        "xtask: [linux]   extracted in {}",
        fmt_duration(t.elapsed())
    );
    Ok(dir)
}

/// tinyconfig + fragment, checked, then `make Image` out of tree in `obj`.
/// Returns the path of the built Image.
fn build_kernel(src: &Path, obj: &Path, fragment: &Path, jobs: usize) -> Result<PathBuf, String> {
    fs::create_dir_all(obj).map_err(|e| format!("cannot create {}: {e}", obj.display()))?;
    let kmake = |args: &[&str]| {
        let mut c = make_command(src);
        c.arg(format!("O={}", obj.display()))
            .arg(format!("ARCH={ARCH}"))
            .arg(format!("CROSS_COMPILE={CROSS_COMPILE}"))
            .args(args);
        c
    };

    eprintln!(
        "xtask: [linux] configuring (tinyconfig + {})...",
        fragment.display()
    );
    let t = Instant::now();
    let log = fresh_log("linux-config.log")?;
    run_logged(
        "[linux] make tinyconfig",
        kmake(&["tinyconfig"]),
        &log,
        None,
    )?;
    let mut merge = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(src)
        .env_remove("KCONFIG_CONFIG")
        .arg("-m")
        .arg("-O")
        .arg(obj)
        .arg(obj.join(".config"))
        .arg(fragment);
    run_logged("[linux] merging the config fragment", merge, &log, None)?;
    run_logged(
        "[linux] make olddefconfig",
        kmake(&["olddefconfig"]),
        &log,
        None,
    )?;
    let config_file = obj.join(".config");
    let config =
        fs::read_to_string(&config_file).map_err(|e| format!("{}: {e}", config_file.display()))?;
    let lost: Vec<&str> = REQUIRED_KCONFIG
        .iter()
        .copied()
        .filter(|opt| !config.lines().any(|l| l.trim() == *opt))
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "the kernel config lacks options the guest needs: {}\n(their dependencies are probably not met; see {} and {})",
            lost.join(" "),
            config_file.display(),
            log.display()
        ));
    }
    let fragment_text =
        fs::read_to_string(fragment).map_err(|e| format!("{}: {e}", fragment.display()))?;
    let changed = fragment_mismatches(&fragment_text, &config);
    if !changed.is_empty() {
        eprintln!("xtask: [linux] note: olddefconfig did not keep these fragment options (missing dependencies?): {}", changed.join(", "));
    }
    eprintln!(
        "xtask: [linux]   configured in {}",
        fmt_duration(t.elapsed())
    );

    eprintln!("xtask: [linux] compiling with -j{jobs} (this takes ~4 minutes on 2 idle cores, longer on a busy machine)...");
    let t = Instant::now();
    let log = fresh_log("linux-compile.log")?;
    run_logged(
        "[linux] make Image",
        kmake(&[&format!("-j{jobs}"), "Image"]),
        &log,
        Some("[linux] compiling"),
    )?;
    let image = obj.join("arch/riscv/boot/Image");
    let head = fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    // The RISC-V Image header: magic2 "RSC\x05" at offset 56.
    if head.get(56..60) != Some(b"RSC\x05".as_slice()) {
        return Err(format!(
            "{} is not a RISC-V Linux Image (no RSC\\x05 magic)",
            image.display()
        ));
    }
    eprintln!(
        "xtask: [linux]   compiled in {} ({} KiB)",
        fmt_duration(t.elapsed()),
        head.len() / 1024
    );
    Ok(image)
}

/// The value of `sym` in a .config text: `Some("n")` for "is not set",
/// `None` when the symbol does not appear.
fn kconfig_value<'a>(config: &'a str, sym: &str) -> Option<&'a str> {
    for l in config.lines().map(str::trim) {
        if let Some(v) = l.strip_prefix(sym).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
        if l.strip_prefix("# ").and_then(|r| r.strip_prefix(sym)) == Some(" is not set") {
            return Some("n");
        }
    }
    None
}

/// The fragment's settings that the final .config does not have (`n` is
/// kept when the symbol is unset or gone).
fn fragment_mismatches(fragment: &str, config: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in fragment.lines().map(str::trim) {
        let (sym, want) =
            if let Some((s, v)) = l.split_once('=').filter(|_| l.starts_with("CONFIG_")) {
                (s, v)
            } else if let Some(s) = l
                .strip_prefix("# ")
                .and_then(|r| r.strip_suffix(" is not set"))
                .filter(|s| s.starts_with("CONFIG_"))
            {
                (s, "n")
            } else {
                continue;
            };
        let have = kconfig_value(config, sym).unwrap_or("n");
        if have != want {
            out.push(format!("{sym}={want} (got {have})"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// busybox and the initramfs.

/// Debian's busybox source (with Debian's patches), fetched once into
/// build/busybox-src/ by `apt-get source busybox`.
fn busybox_source() -> Result<PathBuf, String> {
    let root = build_dir().join("busybox-src");
    let marker = root.join(".rivet-fetched");
    if marker.exists() {
        if let Some(d) = find_busybox_dir(&root) {
            return Ok(d);
        }
    }
    ensure_deb_src()?;
    eprintln!("xtask: [busybox] fetching Debian's source package (apt-get source busybox)...");
    let t = Instant::now();
    remove_dir(&root)?;
    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let log = fresh_log("busybox-fetch.log")?;
    let fetch = || {
        let mut c = Command::new("apt-get");
        c.current_dir(&root).args(["source", "-q", "busybox"]);
        c
    };
    if let Err(e) = run_logged("[busybox] apt-get source busybox", fetch(), &log, None) {
        // Perhaps stale package lists: update them once and try again.
        if !is_root() {
            return Err(format!("{e}\n(as root, `apt-get update` may help)"));
        }
        apt_update(&log)?;
        run_logged("[busybox] apt-get source busybox", fetch(), &log, None)?;
    }
    let dir = find_busybox_dir(&root).ok_or(format!(
        "apt-get source busybox left no busybox-*/ tree in {}",
        root.display()
    ))?;
    fs::write(&marker, "").map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: [busybox]   fetched {} in {}",
        dir.display(),
        fmt_duration(t.elapsed())
    );
    Ok(dir)
}

fn find_busybox_dir(root: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("busybox-"))
                && p.join("Makefile").is_file()
        })
        .collect();
    dirs.sort();
    dirs.pop()
}

/// `make defconfig` + BUSYBOX_CONFIG, then a static cross build, unless
/// the binary was already built that way.
fn build_busybox(src: &Path, jobs: usize, force: bool) -> Result<(), String> {
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = input_key(&[
        RECIPE.as_bytes(),
        b"busybox",
        name.as_bytes(),
        format!("{BUSYBOX_CONFIG:?}").as_bytes(),
    ]);
    let stamp = build_dir().join(".busybox.stamp");
    let binary = src.join("busybox");
    if !force && up_to_date(&binary, &stamp, &key) {
        return Ok(());
    }
    let bmake = |args: &[&str]| {
        let mut c = make_command(src);
        c.arg(format!("CROSS_COMPILE={CROSS_COMPILE}")).args(args);
        c
    };

    eprintln!("xtask: [busybox] configuring (defconfig, static, no tc)...");
    let log = fresh_log("busybox-config.log")?;
    run_logged(
        "[busybox] make defconfig",
        bmake(&["defconfig"]),
        &log,
        None,
    )?;
    let config_file = src.join(".config");
    let config =
        fs::read_to_string(&config_file).map_err(|e| format!("{}: {e}", config_file.display()))?;
    fs::write(&config_file, set_kconfig(&config, BUSYBOX_CONFIG))
        .map_err(|e| format!("{}: {e}", config_file.display()))?;
    // Settle dependent options; answers any question with its default.
    let mut old = Command::new("sh");
    old.current_dir(src).arg("-c").arg(format!(
        "yes '' | make CROSS_COMPILE={CROSS_COMPILE} oldconfig"
    ));
    for v in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL"] {
        old.env_remove(v);
    }
    run_logged("[busybox] make oldconfig", old, &log, None)?;
    let config =
        fs::read_to_string(&config_file).map_err(|e| format!("{}: {e}", config_file.display()))?;
    for (sym, want) in BUSYBOX_CONFIG {
        let have = kconfig_value(&config, sym).unwrap_or("n");
        if have != want.unwrap_or("n") {
            return Err(format!(
                "busybox config: {sym} is {have}, want {} (see {})",
                want.unwrap_or("n"),
                config_file.display()
            ));
        }
    }

    eprintln!("xtask: [busybox] compiling with -j{jobs} (about 1 minute on 2 idle cores)...");
    let t = Instant::now();
    let log = fresh_log("busybox-compile.log")?;
    run_logged(
        "[busybox] make",
        bmake(&[&format!("-j{jobs}")]),
        &log,
        Some("[busybox] compiling"),
    )?;
    let elf = fs::read(&binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    check_static_riscv64(&elf).map_err(|e| format!("{}: {e}", binary.display()))?;
    write_stamp(&stamp, &key)?;
    eprintln!(
        "xtask: [busybox]   compiled in {}",
        fmt_duration(t.elapsed())
    );
    Ok(())
}

/// Applies `changes` to a .config text (`None` = "is not set"); symbols not
/// in the text are appended.
fn set_kconfig(config: &str, changes: &[(&str, Option<&str>)]) -> String {
    let line_for = |sym: &str, v: Option<&str>| match v {
        Some(v) => format!("{sym}={v}"),
        None => format!("# {sym} is not set"),
    };
    let mut done = vec![false; changes.len()];
    let mut out = String::new();
    for l in config.lines() {
        let t = l.trim();
        let hit = changes.iter().position(|(sym, _)| {
            t.strip_prefix(sym).is_some_and(|r| r.starts_with('='))
                || t.strip_prefix("# ").and_then(|r| r.strip_prefix(sym)) == Some(" is not set")
        });
        match hit {
            Some(i) => {
                out.push_str(&line_for(changes[i].0, changes[i].1));
                done[i] = true;
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    for (i, (sym, v)) in changes.iter().enumerate() {
        if !done[i] {
            out.push_str(&line_for(sym, *v));
            out.push('\n');
        }
    }
    out
}

/// An ELF64 little-endian RISC-V executable without a program interpreter.
fn check_static_riscv64(elf: &[u8]) -> Result<(), String> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if elf.get(0..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a little-endian ELF64 file".into());
    }
    if u16_at(18) != Some(243) {
        return Err(format!("not a RISC-V binary (e_machine {:?})", u16_at(18)));
    }
    let (phoff, phentsize, phnum) = match (u64_at(32), u16_at(54), u16_at(56)) {
        (Some(o), Some(s), Some(n)) => (o as usize, s as usize, n as usize),
        _ => return Err("truncated ELF header".into()),
    };
    for i in 0..phnum {
        match u32_at(phoff + i * phentsize) {
            Some(3) => {
                return Err("dynamically linked (has PT_INTERP); CONFIG_STATIC did not take".into())
            }
            Some(_) => {}
            None => return Err("truncated program headers".into()),
        }
    }
    Ok(())
}

/// `make install` into a fresh build/busybox-rootfs/ (bin, sbin, usr with
/// the applet links).
fn install_busybox(src: &Path) -> Result<PathBuf, String> {
    let rootfs = build_dir().join("busybox-rootfs");
    remove_dir(&rootfs)?;
    fs::create_dir_all(&rootfs).map_err(|e| format!("cannot create {}: {e}", rootfs.display()))?;
    let log = fresh_log("busybox-install.log")?;
    let mut c = make_command(src);
    c.arg(format!("CROSS_COMPILE={CROSS_COMPILE}"))
        .arg(format!("CONFIG_PREFIX={}", rootfs.display()))
        .arg("install");
    run_logged("[busybox] make install", c, &log, None)?;
    if !rootfs.join("bin/busybox").is_file() {
        return Err(format!(
            "make install left no bin/busybox in {}; see {}",
            rootfs.display(),
            log.display()
        ));
    }
    Ok(rootfs)
}

/// The initramfs: the busybox tree, the mount points, /dev/console and
/// /init, as a newc archive compressed by `gzip -9 -n`.
fn pack_initramfs(rootfs: &Path, init: &[u8], out: &Path) -> Result<(), String> {
    eprintln!("xtask: [busybox] packing the initramfs...");
    let mut a = Newc::new();
    for (dir, perm) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("root", 0o700),
    ] {
        a.dir(dir, perm);
    }
    // The kernel opens /dev/console for init before anything can mount
    // devtmpfs: it has to be in the archive.
    a.char_dev("dev/console", 0o600, 5, 1);
    add_tree(&mut a, rootfs, "")?;
    a.file("init", 0o755, init);
    let cpio = build_dir().join("initramfs.cpio");
    fs::write(&cpio, a.finish()).map_err(|e| format!("cannot write {}: {e}", cpio.display()))?;
    let tmp = out.with_extension("tmp");
    let input = fs::File::open(&cpio).map_err(|e| format!("{}: {e}", cpio.display()))?;
    let output = fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let st = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(input)
        .stdout(output)
        .status()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !st.success() {
        return Err(format!("gzip {} failed ({st})", cpio.display()));
    }
    fs::rename(&tmp, out)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), out.display()))
}

/// Adds everything under `dir` (as `prefix/...`), parents before children,
/// in name order so the archive is reproducible.
fn add_tree(a: &mut Newc, dir: &Path, prefix: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let perm = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            a.symlink(&name, &target.to_string_lossy());
        } else if meta.is_dir() {
            a.dir(&name, perm);
            add_tree(a, &path, &format!("{name}/"))?;
        } else if meta.is_file() {
            let data = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            a.file(&name, perm, &data);
        } else {
            return Err(format!(
                "{}: unexpected file type in the initramfs tree",
                path.display()
            ));
        }
    }
    Ok(())
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// A writer of "newc" (SVR4, no CRC) cpio archives, the format the kernel
/// unpacks as an initramfs. Everything is owned by root with mtime 0.
pub struct Newc {
    buf: Vec<u8>,
    next_ino: u32,
}

impl Default for Newc {
    fn default() -> Self {
        Self::new()
    }
}

impl Newc {
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            next_ino: 1,
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.raw(ino, mode, nlink, rdev, name.trim_start_matches('/'), data);
    }

    fn raw(&mut self, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), name: &str, data: &[u8]) {
        let size = u32::try_from(data.len()).expect("cpio member over 4 GiB");
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// The archive, closed by its TRAILER!!! entry.
    pub fn finish(mut self) -> Vec<u8> {
        self.raw(0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed newc member: the 13 header fields, name, data.
    struct Member {
        f: [u32; 13],
        name: String,
        data: Vec<u8>,
    }

    /// A strict reader: checks magic and the 4-byte alignment of every part.
    fn parse(mut a: &[u8]) -> Vec<Member> {
        let total = a.len();
        let mut out = Vec::new();
        loop {
            let at = total - a.len();
            assert_eq!(at % 4, 0, "header at {at} not aligned");
            assert_eq!(&a[..6], b"070701");
            let mut f = [0u32; 13];
            for (i, v) in f.iter_mut().enumerate() {
                let s = std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap();
                assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
                *v = u32::from_str_radix(s, 16).unwrap();
            }
            let namesize = f[11] as usize;
            let name = &a[110..110 + namesize];
            assert_eq!(name.last(), Some(&0), "name not NUL-terminated");
            let name = String::from_utf8(name[..namesize - 1].to_vec()).unwrap();
            let data_at = (110 + namesize).next_multiple_of(4);
            assert!(a[110 + namesize..data_at].iter().all(|b| *b == 0));
            let size = f[6] as usize;
            let data = a[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            assert!(a[data_at + size..next].iter().all(|b| *b == 0));
            a = &a[next..];
            let last = name == "TRAILER!!!";
            out.push(Member { f, name, data });
            if last {
                assert!(a.is_empty(), "bytes after the trailer");
                return out;
            }
        }
    }

    #[test]
    fn newc_header_fields_and_alignment() {
        let mut a = Newc::new();
        a.file("/init", 0o755, b"hello");
        a.dir("proc", 0o555);
        let bytes = a.finish();
        assert_eq!(&bytes[..6], b"070701");
        // 110-byte header + "init\0" = 115, padded to 116; 5 data bytes
        // padded to 124, where the next header starts.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(bytes[115], 0);
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(&bytes[121..124], &[0, 0, 0]);
        assert_eq!(&bytes[124..130], b"070701");
        let m = parse(&bytes);
        assert_eq!(m.len(), 3);
        let init = &m[0];
        assert_eq!(init.name, "init");
        assert_eq!(init.f[1], 0o100755, "mode");
        assert_eq!((init.f[2], init.f[3]), (0, 0), "uid, gid");
        assert_eq!(init.f[4], 1, "nlink");
        assert_eq!(init.f[6], 5, "filesize");
        assert_eq!(init.f[11], 5, "namesize includes the NUL");
        assert_eq!(init.data, b"hello");
        assert_eq!(m[1].name, "proc");
        assert_eq!(m[1].f[1], 0o040555);
        assert_ne!(m[0].f[0], m[1].f[0], "distinct inode numbers");
    }

    #[test]
    fn newc_trailer() {
        let bytes = Newc::new().finish();
        assert_eq!(bytes.len() % 4, 0);
        let m = parse(&bytes);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "TRAILER!!!");
        assert_eq!(m[0].f[11], 11);
        assert_eq!(m[0].f[6], 0);
        assert!(bytes.ends_with(b"TRAILER!!!\0\0\0\0") || bytes.ends_with(b"TRAILER!!!\0"));
    }

    #[test]
    fn newc_device_node_and_symlink() {
        let mut a = Newc::new();
        a.dir("dev", 0o755);
        a.char_dev("dev/console", 0o600, 5, 1);
        a.symlink("bin/sh", "busybox");
        let m = parse(&a.finish());
        let con = &m[1];
        assert_eq!(con.name, "dev/console");
        assert_eq!(con.f[1], 0o020600, "S_IFCHR | 0600");
        assert_eq!((con.f[9], con.f[10]), (5, 1), "rdevmajor, rdevminor");
        assert_eq!((con.f[7], con.f[8]), (0, 0), "devmajor, devminor");
        assert_eq!(con.f[6], 0, "no data");
        let sh = &m[2];
        assert_eq!(sh.f[1], 0o120777);
        assert_eq!(sh.data, b"busybox");
        for len in 1..9 {
            // every name length keeps the archive aligned
            let mut a = Newc::new();
            a.file(&"x".repeat(len), 0o644, &vec![7u8; len]);
            assert_eq!(parse(&a.finish())[0].data.len(), len);
        }
    }

    #[test]
    fn input_keys() {
        let k = input_key(&[b"kernel", b"CONFIG_SMP=y\n"]);
        assert_eq!(k.len(), 16);
        assert_eq!(
            k,
            input_key(&[b"kernel", b"CONFIG_SMP=y\n"]),
            "deterministic"
        );
        assert_ne!(k, input_key(&[b"kernel", b"CONFIG_SMP=n\n"]));
        assert_ne!(
            input_key(&[b"ab", b"c"]),
            input_key(&[b"a", b"bc"]),
            "parts are length-prefixed"
        );
        assert_ne!(input_key(&[b""]), input_key(&[]));
        // FNV-1a of nothing at all is its offset basis.
        assert_eq!(input_key(&[]), "cbf29ce484222325");
    }

    #[test]
    fn stamps() {
        let dir = std::env::temp_dir().join(format!("rivet-guest-stamp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("linux-6.12-Image");
        let stamp = stamp_path(&out);
        assert_eq!(stamp, dir.join(".linux-6.12-Image.stamp"));
        assert!(!up_to_date(&out, &stamp, "k1"), "no output");
        fs::write(&out, b"").unwrap();
        write_stamp(&stamp, "k1").unwrap();
        assert!(!up_to_date(&out, &stamp, "k1"), "empty output");
        fs::write(&out, b"image").unwrap();
        assert!(up_to_date(&out, &stamp, "k1"));
        assert!(!up_to_date(&out, &stamp, "k2"), "inputs changed");
        fs::remove_file(&stamp).unwrap();
        assert!(!up_to_date(&out, &stamp, "k1"), "no stamp");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kconfig_values_and_fragment_check() {
        let config = "CONFIG_SMP=y\n# CONFIG_PCI is not set\nCONFIG_NR_CPUS=8\nCONFIG_SMPX=y\n";
        assert_eq!(kconfig_value(config, "CONFIG_SMP"), Some("y"));
        assert_eq!(kconfig_value(config, "CONFIG_PCI"), Some("n"));
        assert_eq!(kconfig_value(config, "CONFIG_NR_CPUS"), Some("8"));
        assert_eq!(kconfig_value(config, "CONFIG_MODULES"), None);
        let fragment = "# comment\nCONFIG_SMP=y\nCONFIG_PCI=n\nCONFIG_MODULES=n\n# CONFIG_NR_CPUS is not set\nCONFIG_FOO=y\n";
        assert_eq!(
            fragment_mismatches(fragment, config),
            vec!["CONFIG_NR_CPUS=n (got 8)", "CONFIG_FOO=y (got n)"]
        );
    }

    #[test]
    fn busybox_config_edits() {
        let config =
            "CONFIG_STATIC=n\n# CONFIG_STATIC_LIBGCC is not set\nCONFIG_TC=y\nCONFIG_TCP=y\n";
        let out = set_kconfig(
            config,
            &[
                ("CONFIG_STATIC", Some("y")),
                ("CONFIG_TC", None),
                ("CONFIG_NEW", Some("y")),
            ],
        );
        assert_eq!(out, "CONFIG_STATIC=y\n# CONFIG_STATIC_LIBGCC is not set\n# CONFIG_TC is not set\nCONFIG_TCP=y\nCONFIG_NEW=y\n");
        let out = set_kconfig(
            "# CONFIG_STATIC is not set\n",
            &[("CONFIG_STATIC", Some("y"))],
        );
        assert_eq!(kconfig_value(&out, "CONFIG_STATIC"), Some("y"));
    }

    #[test]
    fn deb_src_detection() {
        assert!(has_deb_src(
            "deb-src http://deb.debian.org/debian bookworm main\n"
        ));
        assert!(has_deb_src(
            "Types: deb deb-src\nURIs: http://deb.debian.org/debian\n"
        ));
        assert!(!has_deb_src(
            "Types: deb\nURIs: http://deb.debian.org/debian\n"
        ));
        assert!(!has_deb_src(
            "# deb-src http://deb.debian.org/debian bookworm main\ndeb http://x bookworm main\n"
        ));
    }

    #[test]
    fn deb_src_entry_matches_the_deb_entry() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(
            deb_src_line(bookworm_entry(deb822)),
            "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main"
        );
        let list = "deb http://deb.debian.org/debian bookworm-backports main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror/debian bookworm main contrib\n";
        assert_eq!(
            deb_src_line(bookworm_entry(list)),
            "deb-src [signed-by=/k.gpg] http://mirror/debian bookworm main"
        );
        assert_eq!(
            deb_src_line(bookworm_entry("deb http://m/debian bookworm main\n")),
            "deb-src http://m/debian bookworm main"
        );
        assert_eq!(
            deb_src_line(bookworm_entry(
                "deb http://m/debian bookworm-backports main\n"
            )),
            DEB_SRC_LINE
        );
    }

    #[test]
    fn static_riscv_check() {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18..20].copy_from_slice(&243u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        assert!(check_static_riscv64(&elf).is_ok());
        elf[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert!(check_static_riscv64(&elf)
            .unwrap_err()
            .contains("dynamically linked"));
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        assert!(check_static_riscv64(&elf).is_err());
    }
}
