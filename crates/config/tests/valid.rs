//! Valid configurations: every field parsed, defaults, path resolution, the
//! TOML round trip, and the image checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rivet_config::*;

const FULL: &str = r#"# machine-wide
[machine]
harts = 4
memory = "2G"
keep_running = true
log = "debug"

[[vm]]
name = "web"
vcpus = 2
memory = "512M"
kernel = "linux"
initrd = "busybox"
bootargs = "console=ttyS0 quiet \"x\""
pin = [0, 1]
console = true

[[vm.disk]]
image = "disk.img"
start = 0
sectors = 2048
read_only = false

[[vm.disk]]
image = "../shared/ro.img"
read_only = true

[[vm]]
name = "tk"
vcpus = 3
memory = "64M"
kernel = "kernels/my-image"
initrd = "/abs/initrd.cpio"
"#;

fn full() -> MachineConfig {
    parse(FULL, Path::new("cfgdir/full.toml")).unwrap_or_else(|e| panic!("{e:#?}"))
}

#[test]
fn full_config_every_field() {
    let cfg = full();
    assert_eq!(cfg.harts, 4);
    assert_eq!(cfg.memory_mb, Some(2048));
    assert!(cfg.keep_running);
    assert_eq!(cfg.log, 4);
    assert_eq!(cfg.path, PathBuf::from("cfgdir/full.toml"));
    assert_eq!(cfg.vms.len(), 2);

    let web = &cfg.vms[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.vcpus, 2);
    assert_eq!(web.memory_mb, 512);
    assert_eq!(web.kernel, ImageRef::Linux);
    assert_eq!(web.initrd, Some(ImageRef::Busybox));
    assert_eq!(web.bootargs, "console=ttyS0 quiet \"x\"");
    assert_eq!(web.pin, Some(vec![0, 1]));
    assert!(web.console);
    assert_eq!(web.line, 8);
    assert_eq!(
        web.lines,
        VmLines {
            memory: 11,
            kernel: 12,
            initrd: 13
        }
    );
    assert_eq!(
        web.disks,
        [
            DiskConfig {
                image: "cfgdir/disk.img".into(),
                start: 0,
                sectors: Some(2048),
                read_only: false,
                line: 18
            },
            DiskConfig {
                image: "cfgdir/../shared/ro.img".into(),
                start: 0,
                sectors: None,
                read_only: true,
                line: 24
            },
        ]
    );

    let tk = &cfg.vms[1];
    assert_eq!(tk.name, "tk");
    assert_eq!(tk.vcpus, 3);
    assert_eq!(tk.kernel, ImageRef::Path("cfgdir/kernels/my-image".into()));
    assert_eq!(tk.initrd, Some(ImageRef::Path("/abs/initrd.cpio".into())));
    assert_eq!(tk.bootargs, "");
    assert_eq!(tk.pin, None);
    assert!(!tk.console);
    assert!(tk.disks.is_empty());
    assert_eq!(tk.line, 28);
    assert_eq!(tk.lines.initrd, 33);

    assert_eq!(cfg.console_vm(), 0);
    assert_eq!(cfg.host_memory_mb(), 2048);
}

fn without_lines(mut cfg: MachineConfig) -> MachineConfig {
    for vm in &mut cfg.vms {
        vm.line = 0;
        vm.lines = VmLines::default();
        for d in &mut vm.disks {
            d.line = 0;
        }
    }
    cfg
}

#[test]
fn round_trip_through_toml() {
    let cfg = full();
    let text = cfg.to_toml();
    let again = parse(&text, &cfg.path).unwrap_or_else(|e| panic!("{e:#?}\n{text}"));
    assert_eq!(without_lines(again.clone()), without_lines(cfg));
    // And it is stable from then on.
    assert_eq!(again.to_toml(), text);
    assert!(text.contains("kernel = \"kernels/my-image\""), "{text}");
    assert!(text.contains("image = \"../shared/ro.img\""), "{text}");
}

#[test]
fn round_trip_keeps_files_named_like_keywords() {
    let text = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"4M\"\nkernel = \"./linux\"\ninitrd = \"busybox/initrd\"\n";
    let cfg = parse(text, Path::new("d/c.toml")).unwrap();
    assert_eq!(cfg.vms[0].kernel, ImageRef::Path("d/linux".into()));
    let out = cfg.to_toml();
    assert!(out.contains("kernel = \"./linux\""), "{out}");
    assert_eq!(
        without_lines(parse(&out, &cfg.path).unwrap()),
        without_lines(cfg)
    );
}

#[test]
fn defaults() {
    let cfg = parse(
        "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"300M\"\nkernel = \"linux\"\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(cfg.harts, 1);
    assert_eq!(cfg.memory_mb, None);
    assert!(!cfg.keep_running);
    assert_eq!(cfg.log, 3);
    let vm = &cfg.vms[0];
    assert_eq!(
        (
            vm.initrd.clone(),
            vm.bootargs.as_str(),
            vm.pin.clone(),
            vm.console
        ),
        (None, "", None, false)
    );
    // No console = true anywhere: the first VM has the console.
    assert_eq!(cfg.console_vm(), 0);
    // Default host RAM: twice the VMs plus 512M, at least 1G.
    assert_eq!(cfg.host_memory_mb(), 1112);
    let small = parse(
        "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"4M\"\nkernel = \"linux\"\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(small.host_memory_mb(), 1024);
}

#[test]
fn console_vm_is_the_marked_one() {
    let text = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"4M\"\nkernel = \"linux\"\n\
                [[vm]]\nname = \"b\"\nvcpus = 1\nmemory = \"4M\"\nkernel = \"linux\"\nconsole = true\n";
    assert_eq!(parse(text, Path::new("c.toml")).unwrap().console_vm(), 1);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"4M\"\nkernel = \"k/Image\"\ninitrd = \"../i.cpio\"\n\
                [[vm.disk]]\nimage = \"d.img\"\n";
    let cfg = parse(text, Path::new("/etc/rivet/m.toml")).unwrap();
    let vm = &cfg.vms[0];
    assert_eq!(vm.kernel.path(), Some(Path::new("/etc/rivet/k/Image")));
    assert_eq!(
        vm.initrd.as_ref().and_then(ImageRef::path),
        Some(Path::new("/etc/rivet/../i.cpio"))
    );
    assert_eq!(vm.disks[0].image, Path::new("/etc/rivet/d.img"));
    // A config in the current directory keeps paths as written.
    let cfg = parse(text, Path::new("m.toml")).unwrap();
    assert_eq!(cfg.vms[0].kernel.path(), Some(Path::new("k/Image")));
    // Absolute paths stay absolute.
    let abs = text.replace("k/Image", "/boot/Image");
    let cfg = parse(&abs, Path::new("/etc/rivet/m.toml")).unwrap();
    assert_eq!(cfg.vms[0].kernel.path(), Some(Path::new("/boot/Image")));
}

/// A scratch directory of our own under the system temp dir.
fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rivet-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What xtask would pass: project images have fixed sizes here, paths are
/// looked up on disk.
fn sizes(linux: Option<u64>) -> impl Fn(&ImageRef) -> Option<u64> {
    move |r| match r {
        ImageRef::Linux => linux,
        ImageRef::Busybox => Some(3 << 20),
        ImageRef::TestKernel => Some(100 << 10),
        ImageRef::Path(p) => std::fs::metadata(p).ok().map(|m| m.len()),
    }
}

#[test]
fn load_reads_and_resolves_against_the_file() {
    let d = scratch_dir("load");
    std::fs::write(d.join("Image"), vec![0u8; 4096]).unwrap();
    std::fs::write(d.join("disk.img"), vec![0u8; 512 * 16]).unwrap();
    let conf = d.join("m.toml");
    let text = "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"4M\"\nkernel = \"Image\"\n\
                [[vm.disk]]\nimage = \"disk.img\"\nsectors = 16\n";
    std::fs::write(&conf, text).unwrap();
    let cfg = load(&conf).unwrap();
    assert_eq!(cfg.vms[0].kernel, ImageRef::Path(d.join("Image")));
    assert_eq!(cfg.vms[0].disks[0].image, d.join("disk.img"));
    assert_eq!(check_images(&cfg, sizes(None)), []);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn check_images_reports_missing_files_and_small_memory() {
    let d = scratch_dir("images");
    std::fs::write(d.join("small.img"), vec![0u8; 512 * 8]).unwrap();
    let text = [
        "[[vm]]",                  // 1
        "name = \"a\"",            // 2
        "vcpus = 1",               // 3
        "memory = \"24M\"",        // 4
        "kernel = \"linux\"",      // 5
        "initrd = \"busybox\"",    // 6
        "[[vm]]",                  // 7
        "name = \"b\"",            // 8
        "vcpus = 1",               // 9
        "memory = \"4M\"",         // 10
        "kernel = \"nope/Image\"", // 11
        "initrd = \"nope.cpio\"",  // 12
        "[[vm.disk]]",             // 13
        "image = \"missing.img\"", // 14
        "[[vm.disk]]",             // 15
        "image = \"small.img\"",   // 16
        "start = 4",               // 17
        "sectors = 8",             // 18
        "[[vm.disk]]",             // 19
        "image = \"small.img\"",   // 20
        "start = 12",              // 21
        "[[vm]]",                  // 22
        "name = \"c\"",            // 23
        "vcpus = 1",               // 24
        "memory = \"64M\"",        // 25
        "kernel = \"linux\"",      // 26
    ]
    .join("\n");
    let cfg = parse(&text, &d.join("m.toml")).unwrap();
    // Linux 20 MiB + busybox 3 MiB + 2 MiB device tree = 25 MiB > 24 MiB.
    let e = check_images(&cfg, sizes(Some(20 << 20)));
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (4, "vm[0].memory"),
            (11, "vm[1].kernel"),
            (12, "vm[1].initrd"),
            (13, "vm[1].disk[0].image"),
            (15, "vm[1].disk[1]"),
            (19, "vm[1].disk[2]"),
        ],
        "{e:#?}"
    );
    assert_eq!(
        e[0].message,
        "too small for its images: kernel 20M + initrd 3M + 2M for the device tree = 25M, but memory is 24M"
    );
    assert!(
        e[1].message.starts_with("file not found: ") && e[1].message.ends_with("nope/Image"),
        "{}",
        e[1].message
    );
    assert!(
        e[4].message.contains("sectors 4..12 ends past the end of"),
        "{}",
        e[4].message
    );
    assert!(
        e[4].message.ends_with("(8 sectors of 512 bytes)"),
        "{}",
        e[4].message
    );
    assert!(
        e[5].message.contains("sectors 12..end ends past the end"),
        "{}",
        e[5].message
    );
    assert_eq!(
        e[0].to_string(),
        format!(
            "{}:4: vm[0].memory: {}",
            d.join("m.toml").display(),
            e[0].message
        )
    );

    // The project's Linux image not built: reported at each `kernel = "linux"`.
    let e = check_images(&cfg, sizes(None));
    let linux: Vec<(usize, &str)> = e
        .iter()
        .filter(|e| e.message.contains("linux image"))
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    assert_eq!(linux, [(5, "vm[0].kernel"), (26, "vm[2].kernel")], "{e:#?}");
    // An empty image.
    let e = check_images(&cfg, |r| {
        if *r == ImageRef::Busybox {
            Some(0)
        } else {
            sizes(Some(1 << 20))(r)
        }
    });
    assert!(
        e.iter()
            .any(|e| e.line == 6 && e.message == "busybox is empty"),
        "{e:#?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn fractional_image_sizes_are_shown_in_mib() {
    let cfg = parse(
        "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"4M\"\nkernel = \"testkernel\"\n",
        Path::new("c.toml"),
    )
    .unwrap();
    let e = check_images(&cfg, |_| Some(5 << 19));
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].message,
        "too small for its images: kernel 2.5M + 2M for the device tree = 4.5M, but memory is 4M"
    );
    // Exactly full is fine: 2M kernel + 2M device tree in 4M.
    assert_eq!(check_images(&cfg, |_| Some(2 << 20)), []);
}
