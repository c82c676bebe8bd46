//! Rivet: a Type-1 hypervisor for RISC-V (HS-mode, H extension).
//!
//! Boot path: OpenSBI enters `_start` (arch/entry.rs) on one hart; `rust_main`
//! sets up the heap and console, parses the host device tree, probes the H
//! extension, G-stage modes and Sstc, builds the frame allocator over free
//! RAM, reads the boot bundle (the VMs to run) that QEMU loaded as our
//! initrd, creates each VM and hands control to the scheduler in
//! `machine.rs`, which powers the machine off when the last VM stops.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
mod console;
mod exit;
mod fastpath;
mod hostplic;
mod logger;
mod machine;
mod mm;
mod outq;
mod physdev;
mod physfs;
mod port;
mod sbi_env;
mod seed;
mod sync;
mod vcpu;
mod vm;

use alloc::string::String;
use alloc::vec::Vec;
use arch::{csr::*, firmware};
use rivet_frame_alloc::{FrameAllocator, Range};
use rivet_gstage::Mode;

pub fn print_exit_stats(s: &vcpu::ExitStats) {
    use core::fmt::Write;
    let (mut exits, mut cost) = (String::new(), String::new());
    for (i, (name, n)) in s.counters().iter().enumerate() {
        // SBI kinds only when used; the rest always, so the line's shape
        // stays the same.
        if *n != 0 || i >= vcpu::ExitStats::SBI_KINDS {
            let _ = write!(exits, " {name}={n}");
        }
        let spent = s.hs_instret.get(i).copied().unwrap_or(0);
        if spent != 0 {
            let _ = write!(cost, " {name}={spent}");
        }
    }
    println!("[rivet]    exits: total={}{exits}", s.total());
    println!(
        "[rivet]    hs-instructions (full-path exits): total={}{cost}",
        s.hs_instret.iter().sum::<u64>()
    );
}

fn fail(msg: core::fmt::Arguments) -> ! {
    log::error!("{msg}");
    firmware::shutdown(true)
}

#[no_mangle]
extern "C" fn rust_main(hartid: u64, dtb_pa: u64) -> ! {
    let t_start = arch::time();
    arch::trap::install_vector();
    mm::init_heap();
    logger::init(3);

    // The device tree header gives its own size (big-endian at offset 4).
    // SAFETY: OpenSBI passes a valid FDT address in a1; the first 8 bytes
    // are the header, and the blob stays untouched for the hypervisor's life.
    let dtb_len = u32::from_be_bytes(
        unsafe { mm::static_bytes(dtb_pa + 4, 4) }
            .try_into()
            .unwrap_or([0; 4]),
    );
    // SAFETY: as above, for the whole blob.
    let dtb = unsafe { mm::static_bytes(dtb_pa, dtb_len as usize) };
    let host = match rivet_devtree::parse_host(dtb) {
        Ok(h) => h,
        Err(e) => fail(format_args!("cannot parse the host device tree: {e:?}")),
    };
    if let Some(u) = &host.uart {
        arch::uart::init(u.base as usize);
    }
    if let Some(f) = &host.test_finisher {
        firmware::set_test_finisher(f.base);
    }
    println!();
    log::info!(
        "Rivet {} starting on hart {hartid}",
        env!("CARGO_PKG_VERSION")
    );

    if !arch::hext::probe_h() {
        fail(format_args!(
            "this CPU has no H extension (hypervisor support); run QEMU with -cpu rv64,h=true"
        ));
    }
    let mut caps = arch::probe_caps();
    // Before init_hart, which passes Zicboz on to guests when it works here.
    caps.cboz_block = arch::hext::probe_cbo_zero();
    mm::set_cbo_block(caps.cboz_block);
    if caps.cboz_block != 0 {
        log::info!(
            "Zicboz: cbo.zero ({}-byte blocks) zeroes guest RAM and is passed to guests",
            caps.cboz_block
        );
    }
    let mode = if caps.sv39x4 {
        Mode::Sv39x4
    } else if caps.sv48x4 {
        Mode::Sv48x4
    } else if caps.sv57x4 {
        Mode::Sv57x4
    } else {
        fail(format_args!(
            "no G-stage translation mode (Sv39x4/Sv48x4/Sv57x4) is supported"
        ))
    };
    log::info!(
        "H extension present; G-stage modes: Sv39x4={} Sv48x4={} Sv57x4={}, VMID bits {}; Sstc {}",
        caps.sv39x4,
        caps.sv48x4,
        caps.sv57x4,
        caps.vmid_bits,
        if caps.sstc {
            "present"
        } else {
            "absent (timer via SBI emulation)"
        }
    );
    log::info!(
        "host: {} hart(s), timebase {} Hz, {} MiB RAM, SBI {}.{} (impl {})",
        host.harts.len(),
        host.timebase_frequency,
        host.memory.iter().map(|r| r.size).sum::<u64>() >> 20,
        firmware::spec_version() >> 24,
        firmware::spec_version() & 0xff_ffff,
        firmware::impl_id()
    );
    arch::init_hart(&caps);

    // Free RAM: everything but our image, firmware, the DTB and the bundle.
    let (img_start, img_end) = arch::entry::image_range();
    let mut holes: Vec<Range> = host
        .reserved
        .iter()
        .map(|r| Range {
            base: r.base,
            size: r.size,
        })
        .collect();
    holes.push(Range {
        base: img_start,
        size: img_end - img_start,
    });
    holes.push(Range {
        base: dtb_pa,
        size: dtb_len as u64,
    });
    // OpenSBI lives below us; never hand that out even if it is not listed.
    holes.push(Range {
        base: 0x8000_0000,
        size: img_start.saturating_sub(0x8000_0000),
    });
    let Some(bundle_range) = host.initrd else {
        fail(format_args!(
            "no boot bundle: start QEMU with -initrd <bundle> (cargo xtask run does this)"
        ))
    };
    holes.push(Range {
        base: bundle_range.base,
        size: bundle_range.size,
    });
    let mut frames = FrameAllocator::new();
    for m in &host.memory {
        frames.add_region(m.base, m.size, &holes);
    }
    log::info!("{} MiB free for guests", frames.free_bytes() >> 20);
    for r in frames.regions() {
        log::debug!("  free {:#x}..{:#x}", r.base, r.end());
    }
    for h in &holes {
        log::debug!("  hole {:#x}..{:#x}", h.base, h.end());
    }

    // SAFETY: QEMU loaded the bundle at this range (from /chosen) and it is
    // excluded from the allocator, so it stays intact.
    let bundle_bytes = unsafe { mm::static_bytes(bundle_range.base, bundle_range.size as usize) };
    let bundle = match rivet_bundle::parse(bundle_bytes) {
        Ok(b) => b,
        Err(e) => fail(format_args!("boot bundle rejected: {e}")),
    };
    logger::set_level(bundle.log_level);

    // Physical harts we schedule on: the enabled ones, up to our stacks.
    let mut hart_ids: Vec<u64> = host
        .harts
        .iter()
        .filter(|h| h.enabled)
        .map(|h| h.hartid)
        .collect();
    if hart_ids.len() > arch::entry::MAX_HARTS {
        log::warn!(
            "{} harts present; using the first {}",
            hart_ids.len(),
            arch::entry::MAX_HARTS
        );
        hart_ids.truncate(arch::entry::MAX_HARTS);
    }
    let Some(boot_slot) = hart_ids.iter().position(|&h| h == hartid) else {
        fail(format_args!(
            "boot hart {hartid} is not among the usable harts"
        ))
    };
    let mut machine = machine::Machine::new(caps, frames, firmware::machine_ids());
    machine.console_hart = boot_slot;
    machine.harts = hart_ids
        .iter()
        .map(|&h| machine::HartSlot {
            hartid: h,
            idle: false,
            gvma_flush: false,
            dedicated: false,
        })
        .collect();
    machine.keep_running = bundle.flags & rivet_bundle::FLAG_KEEP_RUNNING != 0;
    let mmu = host
        .harts
        .first()
        .and_then(|h| h.mmu.clone())
        .unwrap_or_else(|| String::from("riscv,sv39"));
    let exts = guest_extensions(host.harts.first(), &caps);
    let view = vm::HostView {
        timebase: host.timebase_frequency,
        mmu_type: &mmu,
        extensions: &exts,
        sstc: caps.sstc,
        cboz_block: u32::try_from(caps.cboz_block).ok().filter(|&b| b != 0),
        gstage_mode: mode,
        harts: hart_ids.len(),
    };
    // The machine's own virtio devices (disks, entropy) for the backends.
    let dma = 4 << 20;
    match machine.frames.alloc(dma, 4096) {
        Some(pa) => physdev::init_dma_pool(pa, dma),
        None => fail(format_args!("no memory for virtio DMA")),
    }
    let mut phys = physdev::probe(&host.virtio_mmio, host.timebase_frequency);
    {
        let mut rng = phys.rng.clone().map(physdev::Entropy);
        seed::init(
            host.rng_seed.as_deref(),
            rng.as_mut()
                .map(|r| r as &mut dyn rivet_virtio::rng::EntropySource),
        );
    }
    let multi = bundle.vm_count() > 1;
    // VMIDs 1..=max; when VMs outnumber them they are shared and a hart
    // flushes the VMID when it switches between VMs that share it.
    let max_vmid = (1u64 << caps.vmid_bits).saturating_sub(1);
    let t_vms_start = arch::time();
    for (i, desc) in bundle.vms().enumerate() {
        let vmid = if max_vmid == 0 {
            0
        } else {
            (i as u64 % max_vmid + 1) as u16
        };
        let ports_before = machine.port_owner.len();
        let next_index = machine.vms.len();
        let devices = match vm_devices(&desc, &phys, &mut machine, next_index) {
            Ok(d) => d,
            Err(e) => {
                log::error!("VM {i} '{}' not started: {e}", desc.name);
                continue;
            }
        };
        match vm::Vm::new(i, &desc, vmid, &view, &mut machine.frames, devices) {
            Ok(mut vm) => {
                if multi {
                    vm.shared.port.lock().set_prefix(&vm.name);
                }
                if let Some(h) = vm.hvc.as_mut() {
                    h.dev.device_mut().backend_mut().prefix = multi;
                }
                log::info!(
                    "VM {i} '{}': {} vCPU(s), {} MiB at {:#x} (host {:#x}), entry {:#x}, vmid {vmid}",
                    vm.name, vm.vcpus.len(), vm.ram.size >> 20, vm.ram.gpa, vm.ram.hpa, vm.entry
                );
                if desc.flags & rivet_bundle::VM_FLAG_FOCUS != 0 {
                    machine.console.focus = i;
                }
                machine.vms.push(vm);
            }
            Err(e) => {
                log::error!("VM {i} '{}' not started: {e}", desc.name);
                // Its switch ports lead nowhere.
                for owner in machine.port_owner.iter_mut().skip(ports_before) {
                    *owner = (usize::MAX, 0);
                }
            }
        }
    }
    if machine.vms.is_empty() {
        fail(format_args!("no VM could be started"));
    }
    let t_vms = arch::time();
    for vm in &machine.vms {
        for v in &vm.vcpus {
            if let Some(p) = v.pin {
                machine.harts[p].dedicated = true;
            }
        }
    }
    let mut uplink_irq = None;
    if let Some(net) = bundle.uplink {
        match (phys.net.take(), u16::try_from(net)) {
            (Some((mut dev, irq)), Ok(net)) => {
                match machine.switch.add_uplink(rivet_vswitch::NetworkId(net)) {
                    Some(port) => {
                        dev.enable_interrupts();
                        machine.port_owner.push(machine::UPLINK);
                        machine.uplink = Some((dev, port));
                        uplink_irq = irq;
                        log::info!("network {net}: uplink through the machine's virtio-net");
                    }
                    None => log::warn!("uplink: the virtual switch is full"),
                }
            }
            _ => log::warn!("uplink requested but the machine has no usable virtio-net"),
        }
    }
    if let Some(p) = &host.plic {
        if let Some((ctx, _)) = p
            .contexts
            .iter()
            .enumerate()
            .find(|(_, (h, irq))| *h == hartid && *irq == 9)
        {
            let hp =
                hostplic::HostPlic::new(p.base, ctx as u64, host.uart.as_ref().and_then(|u| u.irq));
            if let Some(irq) = uplink_irq {
                hp.enable(irq);
            }
            machine.host_plic = Some(hp);
        }
    }

    sync::set_current_hart(boot_slot, hartid);
    for (slot, &id) in hart_ids.iter().enumerate() {
        sync::set_current_hart(slot, id);
    }
    // Guest time spent here (under -icount, 1 instruction = 1 ns): the
    // bench compares it with the guests' own boot.
    let us = |t: u64| t.saturating_mul(1_000_000) / host.timebase_frequency.max(1);
    log::info!(
        "boot: hypervisor set-up {} us, of which VM set-up {} us",
        us(arch::time().saturating_sub(t_start)),
        us(t_vms.saturating_sub(t_vms_start))
    );
    sync::set_current_hart(boot_slot, hartid);
    machine::install(machine);
    for (slot, hartid) in hart_ids.iter().enumerate() {
        if slot == boot_slot {
            continue;
        }
        let r = firmware::hart_start(*hartid, arch::entry::secondary_entry(), slot as u64);
        if r.error != 0 {
            log::warn!(
                "hart {hartid} did not start (SBI error {}); continuing without it",
                r.error
            );
        }
    }
    machine::hart_main(boot_slot)
}

/// Secondary harts land here (arch/entry.rs) once the machine is ready.
#[no_mangle]
extern "C" fn rust_secondary(hartid: u64, slot: u64) -> ! {
    sync::set_current_hart(slot as usize, hartid);
    let caps = machine::caps();
    arch::init_hart(&caps);
    log::info!("hart {hartid} online (slot {slot})");
    machine::hart_main(slot as usize)
}

/// Resolves a VM's devices against the machine's (re-validating the
/// bundle: disks must exist and windows must fit).
fn vm_devices(
    desc: &rivet_bundle::VmDesc,
    phys: &physdev::PhysDevices,
    machine: &mut machine::Machine,
    vm_index: usize,
) -> Result<vm::VmDevices, String> {
    let mut disks = Vec::new();
    for (n, d) in desc.disks.iter().take(desc.disk_count).enumerate() {
        let Some(p) = phys.disks.iter().find(|p| p.index == d.disk) else {
            return Err(alloc::format!(
                "disk {n}: physical disk {} (serial rivet-disk{}) not found",
                d.disk,
                d.disk
            ));
        };
        let sectors = if d.sectors == 0 {
            p.sectors.saturating_sub(d.start)
        } else {
            d.sectors
        };
        let end = d.start.checked_add(sectors);
        if sectors == 0 || end.is_none_or(|e| e > p.sectors) {
            return Err(alloc::format!(
                "disk {n}: window {}+{} does not fit physical disk {} ({} sectors)",
                d.start,
                sectors,
                d.disk,
                p.sectors
            ));
        }
        let mut id = [0u8; 20];
        let s = alloc::format!("{}-vd{}", desc.name, n);
        let len = s.len().min(20);
        id[..len].copy_from_slice(&s.as_bytes()[..len]);
        disks.push(physdev::DiskWindow {
            dev: p.dev.clone(),
            start: d.start,
            sectors,
            read_only: d.read_only || p.read_only,
            id,
        });
    }
    let rng = if desc.devices & rivet_bundle::DEV_RNG != 0 {
        match &phys.rng {
            Some(r) => Some(physdev::Entropy(r.clone())),
            None => {
                log::warn!(
                    "VM {}: no virtio-rng on this machine; the VM gets none",
                    desc.name
                );
                None
            }
        }
    } else {
        None
    };
    let mut nics = Vec::new();
    for (k, &net) in desc.nics.iter().take(desc.nic_count).enumerate() {
        let network = u16::try_from(net)
            .map_err(|_| alloc::format!("NIC {k}: network id {net} out of range"))?;
        let port = machine
            .switch
            .add_port(rivet_vswitch::NetworkId(network))
            .ok_or_else(|| alloc::format!("NIC {k}: the virtual switch is full"))?;
        machine.port_owner.push((vm_index, k));
        nics.push(port);
    }
    let mut fs = Vec::new();
    for (k, f) in desc.fs.iter().take(desc.fs_count).enumerate() {
        let Some((dev, info)) = phys.fs.iter().find(|(d, _)| d.lock().index == f.fs) else {
            return Err(alloc::format!(
                "shared directory {k}: virtio-fs rivetfs{} not found",
                f.fs
            ));
        };
        let len = f.tag.iter().position(|&b| b == 0).unwrap_or(f.tag.len());
        let tag = core::str::from_utf8(&f.tag[..len])
            .map_err(|_| alloc::format!("shared directory {k}: bad tag"))?;
        fs.push((physdev::FsRelay(dev.clone()), *info, String::from(tag)));
    }
    Ok(vm::VmDevices {
        disks,
        hvc: desc.devices & rivet_bundle::DEV_HVC != 0,
        rng,
        nics,
        fs,
    })
}

/// The ISA extensions a guest gets: what the host hart has, limited to
/// what runs unmodified in VS-mode without hypervisor help.
fn guest_extensions(
    hart: Option<&rivet_devtree::HartInfo>,
    caps: &arch::Caps,
) -> Vec<&'static str> {
    const PASS: &[&str] = &[
        "i",
        "m",
        "a",
        "f",
        "d",
        "c",
        "zicntr",
        "zicsr",
        "zifencei",
        "zihintpause",
        "zba",
        "zbb",
        "zbc",
        "zbs",
    ];
    let mut v: Vec<&'static str> = PASS
        .iter()
        .copied()
        .filter(|e| {
            hart.map(|h| h.has_extension(e)).unwrap_or(false)
                || matches!(*e, "zicntr" | "zicsr" | "zifencei")
        })
        .collect();
    if caps.sstc {
        v.push("sstc");
    }
    if caps.cboz_block != 0 && u32::try_from(caps.cboz_block).is_ok() {
        v.push("zicboz");
    }
    v
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    csr_clear!(SSTATUS, SSTATUS_SIE);
    logger::print_direct(format_args!("\r\n[rivet] PANIC: {}\r\n", info.message()));
    if let Some(loc) = info.location() {
        logger::print_direct(format_args!(
            "[rivet]   at {}:{}:{}\r\n",
            loc.file(),
            loc.line(),
            loc.column()
        ));
    }
    firmware::shutdown(true)
}
