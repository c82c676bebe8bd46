//! `cargo xtask`: builds Rivet and its guests, runs QEMU, runs the tests.
//!
//! ```text
//! cargo xtask run   [--guest testkernel|linux] [--kernel PATH] [--initrd PATH]
//!                   [--append ARGS] [--vcpus N] [--memory SIZE] [--harts N]
//!                   [--no-sstc] [--log LEVEL]
//! cargo xtask test  [FILTER] [--unit-only] [--e2e-only]
//! cargo xtask build
//! cargo xtask setup
//! ```

mod bench;
mod e2e;
mod elf;
mod fuzz;
mod guest_build;
mod images;
mod prereq;
mod qemu;
mod soak;
mod virtiofs;

use std::path::PathBuf;
use std::process::ExitCode;

use images::VmSpec;

fn usage() -> &'static str {
    "usage: cargo xtask <command>\n\
     \n\
     commands:\n\
     \x20 run    build and boot one VM under Rivet on QEMU (the terminal is its console)\n\
     \x20        --guest testkernel|linux   what to boot (default: testkernel)\n\
     \x20        --kernel PATH              any RISC-V Linux Image-format kernel instead\n\
     \x20        --initrd PATH  --append ARGS  --vcpus N  --memory SIZE (e.g. 512M)\n\
     \x20        --config FILE              a machine with several VMs (see docs/CONFIG.md)\n\
     \x20        --disk IMAGE[:ro]          a virtio-blk disk for the VM (repeatable)\n\
     \x20        --harts N (physical harts)  --pin (vCPU i on hart i)  --icount  --no-sstc  --log 0..5\n\
     \x20 test   host unit tests, then the end-to-end suites on QEMU [FILTER] [--unit-only|--e2e-only]\n\
     \x20 guest linux [--force] [--kernel-tree PATH] [-j N]\n\
     \x20        build the Linux guest (Debian linux-source-6.12 + busybox initramfs) into target/guests\n\
     \x20 soak   [--minutes N]  Linux VMs doing checksummed disk I/O, oversubscribed\n\
     \x20 bench  measure the cost of virtualization (target/bench/results.md)\n\
     \x20 fuzz   [TARGET] [--seconds N] [--smoke]  libFuzzer on the guest-input parsers\n\
     \x20 build  build the hypervisor and test kernel\n\
     \x20 setup  check and install prerequisites (QEMU 10, OpenSBI, Rust target)\n"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match cmd.as_str() {
        "run" => run(rest),
        "test" => e2e::test(rest),
        "bench" => bench::bench(rest),
        "guest" => guest(rest),
        "soak" => soak::soak(rest),
        "fuzz" => fuzz::fuzz(rest),
        "build" => setup().and_then(|_| {
            images::build_all().map(|b| {
                println!(
                    "hypervisor: {}\ntest kernel: {}",
                    b.hypervisor.display(),
                    b.testkernel.display()
                );
                0
            })
        }),
        "setup" => setup().map(|_| {
            println!("xtask: all prerequisites present");
            0
        }),
        "-h" | "--help" | "help" => {
            print!("{}", usage());
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}\n{}", usage())),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn guest(args: &[String]) -> Result<u8, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("linux") => {}
        _ => {
            return Err(
                "usage: cargo xtask guest linux [--force] [--kernel-tree PATH] [-j N]".into(),
            )
        }
    }
    let mut o = guest_build::LinuxBuildOpts::default();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--force" => o.force = true,
            "--kernel-tree" => {
                o.kernel_tree = Some(PathBuf::from(
                    it.next().ok_or("--kernel-tree needs a path")?,
                ))
            }
            "-j" => {
                o.jobs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("-j needs a number")?
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let imgs = guest_build::build_linux(&o)?;
    println!(
        "kernel:    {}\ninitramfs: {}",
        imgs.image.display(),
        imgs.initramfs.display()
    );
    Ok(0)
}

pub fn setup() -> Result<(), String> {
    prereq::ensure_rust_target()?;
    prereq::ensure_qemu()
}

/// Options of `run` (and the e2e suites, which build the same machines).
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub guest: String,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub harts: u32,
    pub sstc: bool,
    pub log: u32,
    /// Pin vCPU i to physical hart i (static partitioning).
    pub pin: bool,
    /// Deterministic guest time (QEMU -icount shift=0,sleep=off).
    pub icount: bool,
    /// A machine configuration file (TOML) instead of the one-VM options.
    pub config: Option<PathBuf>,
    /// Disk images for the one VM: (path, read-only).
    pub disks: Vec<(PathBuf, bool)>,
}

impl Default for RunOpts {
    fn default() -> Self {
        Self {
            guest: "testkernel".into(),
            kernel: None,
            initrd: None,
            append: None,
            vcpus: 1,
            memory_mb: 256,
            harts: 1,
            sstc: true,
            log: 3,
            pin: false,
            icount: false,
            config: None,
            disks: Vec::new(),
        }
    }
}

fn parse_run(args: &[String]) -> Result<RunOpts, String> {
    let mut o = RunOpts::default();
    let mut memory_set = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--guest" => o.guest = val("--guest")?,
            "--kernel" => o.kernel = Some(PathBuf::from(val("--kernel")?)),
            "--initrd" => o.initrd = Some(PathBuf::from(val("--initrd")?)),
            "--append" => o.append = Some(val("--append")?),
            "--vcpus" => {
                o.vcpus = val("--vcpus")?
                    .parse()
                    .map_err(|_| "--vcpus takes a number")?
            }
            "--harts" => {
                o.harts = val("--harts")?
                    .parse()
                    .map_err(|_| "--harts takes a number")?
            }
            "--memory" => {
                o.memory_mb = images::parse_size_mb(&val("--memory")?)?;
                memory_set = true;
            }
            "--no-sstc" => o.sstc = false,
            "--pin" => o.pin = true,
            "--icount" => o.icount = true,
            "--config" => o.config = Some(PathBuf::from(val("--config")?)),
            "--disk" => {
                let v = val("--disk")?;
                match v.strip_suffix(":ro") {
                    Some(p) => o.disks.push((PathBuf::from(p), true)),
                    None => o.disks.push((PathBuf::from(v), false)),
                }
            }
            "--log" => o.log = val("--log")?.parse().map_err(|_| "--log takes 0..5")?,
            other => return Err(format!("unknown option {other:?}\n{}", usage())),
        }
    }
    if !(1..=rivet_bundle::MAX_VCPUS).contains(&o.vcpus) {
        return Err(format!("--vcpus must be 1..={}", rivet_bundle::MAX_VCPUS));
    }
    if !(1..=8).contains(&o.harts) {
        return Err("--harts must be 1..=8 (QEMU virt with Rivet's stacks)".into());
    }
    if o.pin && o.vcpus > o.harts {
        return Err(format!(
            "--pin gives each vCPU its own hart: {} vCPUs need --harts {}",
            o.vcpus, o.vcpus
        ));
    }
    if !memory_set && (o.guest == "linux" || o.kernel.is_some()) {
        o.memory_mb = 512;
    }
    Ok(o)
}

/// Size a kernel or initrd occupies in guest RAM (a Linux Image's
/// image_size counts its bss).
fn image_footprint(path: &std::path::Path) -> Option<u64> {
    let data = std::fs::read(path).ok()?;
    let file = data.len() as u64;
    Some(
        rivet_loader::parse_header(&data)
            .map(|h| h.image_size.max(file))
            .unwrap_or(file),
    )
}

/// Loads and validates a machine configuration; every error is printed
/// with its file, line and field.
pub fn prepare_config(
    path: &std::path::Path,
    opts: &RunOpts,
    tag: &str,
) -> Result<qemu::Machine, String> {
    use rivet_config::ImageRef;
    let report = |errs: Vec<rivet_config::ConfigError>| {
        let mut msg = String::new();
        for e in &errs {
            msg.push_str(&format!("{e}\n"));
        }
        msg.push_str(&format!("{} has {} error(s)", path.display(), errs.len()));
        msg
    };
    let cfg = rivet_config::load(path).map_err(report)?;
    setup()?;
    let built = images::build_all()?;
    let linux =
        if cfg.vms.iter().any(|v| {
            matches!(v.kernel, ImageRef::Linux) || matches!(v.initrd, Some(ImageRef::Busybox))
        }) {
            Some(e2e::linux_images()?)
        } else {
            None
        };
    let resolve = |r: &ImageRef| -> Option<PathBuf> {
        match r {
            ImageRef::Linux => linux.as_ref().map(|l| l.0.clone()),
            ImageRef::Busybox => linux.as_ref().map(|l| l.1.clone()),
            ImageRef::TestKernel => Some(built.testkernel.clone()),
            ImageRef::Path(p) => Some(p.clone()),
        }
    };
    let errs = rivet_config::check_images(&cfg, |r| resolve(r).and_then(|p| image_footprint(&p)));
    if !errs.is_empty() {
        return Err(report(errs));
    }
    let focus = cfg.console_vm();
    let mut vms = Vec::new();
    let mut disks = images::DiskSet::default();
    let mut shared = virtiofs::FsSet::default();
    let mut networks: Vec<String> = Vec::new();
    for (i, v) in cfg.vms.iter().enumerate() {
        let nics = v
            .nics
            .iter()
            .map(|n| match networks.iter().position(|x| *x == n.network) {
                Some(p) => p as u32,
                None => {
                    networks.push(n.network.clone());
                    (networks.len() - 1) as u32
                }
            })
            .collect();
        let vm_disks = v
            .disks
            .iter()
            .map(|d| rivet_bundle::DiskDesc {
                disk: disks.index(&d.image, d.read_only),
                read_only: d.read_only,
                start: d.start,
                sectors: d.sectors.unwrap_or(0),
            })
            .collect();
        let fs =
            v.fs.iter()
                .map(|f| (shared.index(&f.path), f.tag.clone()))
                .collect();
        vms.push(VmSpec {
            macs: v.nics.iter().map(|n| n.mac).collect(),
            fs,
            nics,
            disks: vm_disks,
            name: v.name.clone(),
            kernel: resolve(&v.kernel).ok_or("kernel image unavailable")?,
            initrd: match &v.initrd {
                Some(r) => Some(resolve(r).ok_or("initrd image unavailable")?),
                None => None,
            },
            bootargs: v.bootargs.clone(),
            vcpus: v.vcpus,
            memory_mb: v.memory_mb,
            focus: i == focus,
            pins: v
                .pin
                .as_ref()
                .map(|p| p.iter().map(|&h| Some(h as u8)).collect())
                .unwrap_or_default(),
        });
    }
    let uplink = match &cfg.uplink {
        Some(net) => match networks.iter().position(|x| x == net) {
            Some(p) => Some(p as u32),
            None => {
                networks.push(net.clone());
                Some((networks.len() - 1) as u32)
            }
        },
        None => None,
    };
    let bundle = images::out_dir().join(format!("bundle-{tag}.bin"));
    images::pack(&vms, cfg.log, cfg.keep_running, uplink, &bundle)?;
    let mut m = qemu::Machine::new(&built.hypervisor, &bundle);
    m.harts = cfg.harts;
    m.memory_mb = cfg.host_memory_mb();
    m.sstc = opts.sstc;
    m.icount = opts.icount;
    m.extra.extend(disks.qemu_args());
    if uplink.is_some() {
        m.extra.extend(images::uplink_qemu_args(&cfg.forwards));
    }
    m.extra.extend(virtiofs::start(&shared, tag, m.memory_mb)?);
    Ok(m)
}

/// Resolves the VM and QEMU machine for `opts` (building what is needed).
pub fn prepare(opts: &RunOpts, tag: &str) -> Result<qemu::Machine, String> {
    if let Some(c) = &opts.config {
        return prepare_config(c, opts, tag);
    }
    setup()?;
    let built = images::build_all()?;
    let (kernel, mut initrd, mut bootargs) = match (&opts.kernel, opts.guest.as_str()) {
        (Some(k), _) => (k.clone(), None, String::from("console=ttyS0")),
        (None, "testkernel") => (built.testkernel.clone(), None, String::from("mode=suite")),
        (None, "linux") => {
            let g = e2e::linux_images()?;
            (g.0, Some(g.1), String::from("console=ttyS0"))
        }
        (None, other) => return Err(format!("unknown guest {other:?} (testkernel or linux)")),
    };
    if let Some(i) = &opts.initrd {
        initrd = Some(i.clone());
    }
    if let Some(a) = &opts.append {
        bootargs = a.clone();
    }
    let mut disks = images::DiskSet::default();
    let vm_disks = opts
        .disks
        .iter()
        .map(|(p, ro)| rivet_bundle::DiskDesc {
            disk: disks.index(p, *ro),
            read_only: *ro,
            start: 0,
            sectors: 0,
        })
        .collect();
    let vm = VmSpec {
        macs: Vec::new(),
        fs: Vec::new(),
        nics: Vec::new(),
        disks: vm_disks,
        name: if opts.guest == "linux" || opts.kernel.is_some() {
            "linux".into()
        } else {
            "testkernel".into()
        },
        kernel,
        initrd,
        bootargs,
        vcpus: opts.vcpus,
        memory_mb: opts.memory_mb,
        focus: true,
        pins: if opts.pin {
            (0..opts.vcpus).map(|i| Some(i as u8)).collect()
        } else {
            Vec::new()
        },
    };
    let bundle = images::out_dir().join(format!("bundle-{tag}.bin"));
    images::pack(&[vm], opts.log, false, None, &bundle)?;
    let mut m = qemu::Machine::new(&built.hypervisor, &bundle);
    m.harts = opts.harts;
    m.sstc = opts.sstc;
    m.icount = opts.icount;
    m.extra.extend(disks.qemu_args());
    // Host RAM: QEMU puts the bundle (our initrd) 256 MiB above the
    // hypervisor, splitting RAM; guest RAM must fit in one piece above it.
    m.memory_mb = (opts.memory_mb * 2 + 512).max(1024);
    Ok(m)
}

fn run(args: &[String]) -> Result<u8, String> {
    let opts = parse_run(args)?;
    let m = prepare(&opts, "run")?;
    eprintln!("xtask: {}", m.command_line());
    eprintln!("xtask: Ctrl-A h for Rivet's console help; Ctrl-C quits QEMU");
    let status = m
        .command()
        .status()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    Ok(status.code().unwrap_or(1).clamp(0, 255) as u8)
}
