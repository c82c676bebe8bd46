//! `rivet-config`: `parse` on arbitrary UTF-8 text.
//!
//! Checked: no panic; every error names a line of the file (or line 0/1
//! for file-wide problems) and a field; a configuration that parses obeys
//! the documented limits, writes back with `to_toml` to text that parses to
//! the same configuration (line numbers aside), and goes through
//! `check_images` and `host_memory_mb` without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rivet_config::{
    check_images, parse, ImageRef, MachineConfig, VmLines, MAX_BOOTARGS_LEN, MAX_HARTS,
    MAX_NAME_LEN, MAX_VCPUS, MAX_VMS,
};

/// The configuration without the line numbers, for comparisons.
fn lineless(cfg: &MachineConfig) -> MachineConfig {
    let mut c = cfg.clone();
    for vm in &mut c.vms {
        vm.line = 0;
        vm.lines = VmLines::default();
        for d in &mut vm.disks {
            d.line = 0;
        }
    }
    c
}

fn check_ok(cfg: &MachineConfig, path: &Path) {
    assert!((1..=MAX_HARTS).contains(&cfg.harts));
    assert!(!cfg.vms.is_empty() && cfg.vms.len() <= MAX_VMS);
    assert!(cfg.log <= 5);
    assert!(cfg.console_vm() < cfg.vms.len());
    let _ = cfg.host_memory_mb();
    for vm in &cfg.vms {
        assert!(!vm.name.is_empty() && vm.name.len() <= MAX_NAME_LEN);
        assert!(
            vm.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{:?}",
            vm.name
        );
        assert!((1..=MAX_VCPUS).contains(&vm.vcpus));
        assert!(vm.memory_mb >= 4 && vm.memory_mb % 2 == 0);
        assert!(vm.bootargs.len() <= MAX_BOOTARGS_LEN);
        if let Some(pin) = &vm.pin {
            assert_eq!(pin.len(), vm.vcpus as usize);
            assert!(pin.iter().all(|&h| h < cfg.harts));
        }
    }

    // Images: everything present and tiny, then everything missing, then
    // everything huge.
    for size in [Some(4096u64), None, Some(u64::MAX)] {
        let errs = check_images(cfg, |r: &ImageRef| {
            let _ = r.to_string();
            size
        });
        if size == Some(4096) && cfg.vms.iter().all(|v| v.disks.is_empty()) {
            assert!(errs.is_empty(), "tiny images rejected: {errs:?}");
        }
        for e in &errs {
            let _ = e.to_string();
        }
    }

    // Writing it back reads back the same.
    let text = cfg.to_toml();
    match parse(&text, path) {
        Ok(again) => assert_eq!(
            lineless(&again),
            lineless(cfg),
            "to_toml round trip changed it:\n{text}"
        ),
        Err(errs) => panic!("to_toml output does not parse:\n{text}\n{errs:#?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/rivet/machine.toml");
    match parse(text, path) {
        Ok(cfg) => {
            assert_eq!(cfg.path, path);
            check_ok(&cfg, path);
        }
        Err(errs) => {
            assert!(!errs.is_empty());
            // A line past the end is fine only for errors about the end
            // of the file; allow one extra line for the last newline.
            let lines = text.split('\n').count();
            for e in &errs {
                assert!(
                    e.line <= lines + 1,
                    "error on line {} of a {lines}-line file: {e}",
                    e.line
                );
                assert!(!e.field.is_empty());
                assert!(!e.message.is_empty());
                assert_eq!(e.file, path);
                let _ = e.to_string();
            }
            for w in errs.windows(2) {
                assert!(w[0].line <= w[1].line, "errors sorted by line");
            }
        }
    }
});
