//! Every example under `configs/` loads, validates, and passes the image
//! checks with images the size of the project's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rivet_config::{check_images, load, ImageRef, MachineConfig};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// Sizes a little above the project's images (Linux 6.12 tinyconfig
/// `image_size` is about 6 MiB, the busybox initramfs about 1.1 MiB).
fn project_sizes(r: &ImageRef) -> Option<u64> {
    match r {
        ImageRef::Linux => Some(8 << 20),
        ImageRef::Busybox => Some(2 << 20),
        ImageRef::TestKernel => Some(1 << 20),
        ImageRef::Path(p) => std::fs::metadata(p).ok().map(|m| m.len()),
    }
}

fn load_ok(name: &str) -> MachineConfig {
    let path = configs_dir().join(name);
    let cfg = load(&path).unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()));
    let e = check_images(&cfg, project_sizes);
    assert!(e.is_empty(), "{}: {e:#?}", path.display());
    cfg
}

#[test]
fn every_example_config_is_valid() {
    let mut names: Vec<String> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for n in &names {
        load_ok(n);
    }
}

#[test]
fn example_shapes() {
    let two = load_ok("two-linux.toml");
    assert_eq!(two.vms.len(), 2);
    assert!(two
        .vms
        .iter()
        .all(|v| v.vcpus == 1 && v.kernel == ImageRef::Linux && v.pin.is_none()));

    let smp = load_ok("linux-smp4.toml");
    assert_eq!((smp.harts, smp.vms.len(), smp.vms[0].vcpus), (4, 1, 4));
    assert_eq!(smp.vms[0].pin, Some(vec![0, 1, 2, 3]));

    let mixed = load_ok("mixed.toml");
    let kernels: Vec<&ImageRef> = mixed.vms.iter().map(|v| &v.kernel).collect();
    assert_eq!(
        kernels,
        [&ImageRef::Linux, &ImageRef::Linux, &ImageRef::TestKernel]
    );

    let over = load_ok("linux-oversubscribed.toml");
    assert_eq!(
        (over.harts, over.vms[0].vcpus, over.vms[0].pin.clone()),
        (2, 4, None)
    );
}
