//! `rivet-bundle` + `rivet-loader`: the boot bundle the hypervisor reads
//! from its initrd, and the Linux `Image` header of each VM's kernel with
//! the RAM layout planned from it.
//!
//! Checked: no panic; a parsed bundle's fields obey the documented limits
//! and survive a round trip through `Writer`; every successful `plan`
//! places kernel, initrd and device tree inside RAM without overlap.
//!
//! Input: the bundle bytes. The same bytes are also tried directly as a
//! kernel image, with RAM placements taken from the bundle header bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivet_bundle::{OwnedVm, Writer, MAX_DISKS, MAX_NICS, MAX_VCPUS, MAX_VMS, NAME_LEN, UNPINNED};
use rivet_loader::{parse_header, plan, ImageHeader, Layout, LoadError, DTB_MAX, HEADER_SIZE};

const MIB2: u64 = 2 << 20;

fn check_plan(h: &ImageHeader, kernel_len: u64, initrd: Option<u64>, ram_base: u64, ram_size: u64) {
    let Ok(l) = plan(h, kernel_len, initrd, ram_base, ram_size) else {
        return;
    };
    let Layout {
        kernel,
        kernel_footprint,
        initrd: placed,
        dtb,
    } = l;
    // In u128: RAM may end exactly at 2^64.
    let w = u128::from;
    let ram_end = w(ram_base) + w(ram_size);
    assert!(ram_end <= 1u128 << 64, "planned into RAM that wraps: {l:?}");
    assert_eq!(
        w(kernel),
        w(ram_base) + w(h.text_offset),
        "kernel at base + text_offset"
    );
    assert_eq!(kernel_footprint, kernel_len.max(h.image_size));
    let kernel_end = w(kernel) + w(kernel_footprint);
    // The device tree owns the last 2 MiB block.
    assert_eq!(w(dtb) + w(MIB2), ram_end);
    assert!(DTB_MAX <= MIB2);
    let mut top = w(dtb);
    match (initrd, placed) {
        (None, None) => {}
        (Some(len), Some((start, plen))) => {
            assert_eq!(plen, len);
            assert_eq!(
                start % 4096,
                ram_base % 4096,
                "initrd page aligned within RAM"
            );
            assert!(start >= ram_base);
            assert!(w(start) + w(len) <= w(dtb), "initrd below the DTB");
            top = w(start);
        }
        other => panic!("initrd placement mismatch: {other:?}"),
    }
    assert!(
        kernel >= ram_base && kernel_end <= top,
        "kernel overlaps initrd/DTB: {l:?}"
    );
}

fn roundtrip(data: &[u8]) {
    let Ok(b) = rivet_bundle::parse(data) else {
        return;
    };
    assert!(b.vm_count() >= 1 && b.vm_count() <= MAX_VMS);
    let mut w = Writer::new(b.flags, b.log_level);
    w.uplink = b.uplink;
    let mut descs = Vec::new();
    for i in 0..b.vm_count() {
        let vm = b.vm(i).expect("a parsed bundle has valid records");
        assert!(!vm.name.is_empty() && vm.name.len() <= NAME_LEN && !vm.name.contains('\0'));
        assert!(vm.vcpus >= 1 && vm.vcpus <= MAX_VCPUS);
        assert!(vm.memory_size >= 4 << 20 && vm.memory_size % MIB2 == 0);
        assert!(!vm.kernel.is_empty());
        assert!(vm.disk_count <= MAX_DISKS);
        assert!(vm.nic_count <= MAX_NICS);
        assert!(vm.initrd.is_none_or(|i| !i.is_empty()));
        for (v, p) in vm.pins.iter().enumerate() {
            if p.is_some() {
                assert!(v < vm.vcpus as usize, "pin for a vCPU the VM does not have");
                assert_ne!(*p, Some(UNPINNED));
            }
        }
        // Every slice lies inside the blob.
        for s in [vm.kernel, vm.initrd.unwrap_or(&[]), vm.bootargs.as_bytes()] {
            if !s.is_empty() {
                let start = s.as_ptr() as usize - data.as_ptr() as usize;
                assert!(start + s.len() <= data.len());
            }
        }

        // The hypervisor's next step: the kernel header and the layout.
        if let Ok(h) = parse_header(vm.kernel) {
            assert!(vm.kernel.len() >= HEADER_SIZE);
            assert_eq!(h.text_offset % 4096, 0);
            check_plan(
                &h,
                vm.kernel.len() as u64,
                vm.initrd.map(|i| i.len() as u64),
                0x8000_0000,
                vm.memory_size,
            );
        }

        descs.push(vm);
        w.add_vm(OwnedVm {
            name: vm.name.to_string(),
            vcpus: vm.vcpus,
            flags: vm.flags,
            memory_size: vm.memory_size,
            kernel: vm.kernel.to_vec(),
            initrd: vm.initrd.map(<[u8]>::to_vec).unwrap_or_default(),
            bootargs: vm.bootargs.to_string(),
            pins: vm.pins[..vm.vcpus as usize].to_vec(),
            disks: vm.disks[..vm.disk_count].to_vec(),
            devices: vm.devices,
            nics: vm.nics[..vm.nic_count].to_vec(),
            macs: vm.macs[..vm.nic_count].to_vec(),
            fs: vm.fs[..vm.fs_count]
                .iter()
                .map(|f| {
                    let len = f.tag.iter().position(|&b| b == 0).unwrap_or(f.tag.len());
                    (f.fs, String::from_utf8_lossy(&f.tag[..len]).into_owned())
                })
                .collect(),
        });
    }
    assert_eq!(b.vms().count(), b.vm_count());

    // Writing the parsed bundle again gives the same bundle.
    let again = w.finish();
    let b2 = rivet_bundle::parse(&again).expect("a rewritten bundle parses");
    assert_eq!(
        (b2.flags, b2.log_level, b2.vm_count()),
        (b.flags, b.log_level, b.vm_count())
    );
    for (i, d) in descs.iter().enumerate() {
        let e = b2.vm(i).expect("rewritten record");
        assert_eq!(
            (
                e.name,
                e.vcpus,
                e.flags,
                e.memory_size,
                e.kernel,
                e.initrd,
                e.bootargs,
                e.pins
            ),
            (
                d.name,
                d.vcpus,
                d.flags,
                d.memory_size,
                d.kernel,
                d.initrd,
                d.bootargs,
                d.pins
            )
        );
        assert_eq!(
            (&e.disks[..e.disk_count], e.devices, &e.nics[..e.nic_count]),
            (&d.disks[..d.disk_count], d.devices, &d.nics[..d.nic_count])
        );
    }
}

fn le64(d: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = d.get(off..off + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    roundtrip(data);

    // The bytes as a kernel image, planned into RAM described by the bytes
    // at 0..16 (base) and 16..24 (size) and 24..32 (initrd length).
    match parse_header(data) {
        Ok(h) => {
            let bases = [0x8000_0000u64, le64(data, 0) & !(MIB2 - 1), le64(data, 0)];
            let base = bases[usize::from(data.get(40).copied().unwrap_or(0)) % 3];
            let size = match data.get(41).copied().unwrap_or(0) % 3 {
                0 => le64(data, 16) & 0xff_ffff_ffff,
                1 => le64(data, 16),
                _ => (u64::from(data.get(42).copied().unwrap_or(0)) + 1) * MIB2,
            };
            let initrd = match le64(data, 24) {
                0 => None,
                n if n & 1 == 0 => Some(n >> 1),
                n => Some(n & 0xfff_ffff),
            };
            check_plan(&h, data.len() as u64, initrd, base, size);
            check_plan(&h, le64(data, 32), initrd, base, size);
        }
        Err(LoadError::TooSmall) => assert!(data.len() < HEADER_SIZE),
        Err(_) => {}
    }
});
