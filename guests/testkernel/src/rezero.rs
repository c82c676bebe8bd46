//! `mode=rezero`: does the hypervisor clear a VM's memory when it reboots?
//!
//! Each boot scans a sample of its RAM (one word per MiB, away from its own
//! image and the device tree) for a marker. Finding one means memory from
//! the previous boot survived the reboot: it says so and fails. Otherwise
//! it writes the marker everywhere in the sample and asks for a warm
//! reboot, so the next boot checks again. The end-to-end test watches two
//! clean boots in a row and stops QEMU.

use crate::{println, sbi};

const MARKER: u64 = 0x5249_5645_5444_5254;
const STEP: usize = 1 << 20;

pub fn run(ram: (usize, usize), dtb: usize) -> ! {
    let (base, size) = ram;
    // Our image sits at the bottom of RAM and the device tree near the top.
    let lo = base + 8 * STEP;
    let hi = (base + size).saturating_sub(4 * STEP);
    let probes = (lo..hi)
        .step_by(STEP)
        .filter(|a| a.abs_diff(dtb) > 2 * STEP);
    for a in probes.clone() {
        // SAFETY: inside our RAM, away from our image, stack and DTB.
        if unsafe { (a as *const u64).read_volatile() } == MARKER {
            println!("rezero: FOUND data from the previous boot at {a:#x}");
            sbi::shutdown(true);
        }
    }
    let mut n = 0;
    for a in probes {
        // SAFETY: as above.
        unsafe { (a as *mut u64).write_volatile(MARKER) };
        n += 1;
    }
    println!("rezero: clean; marked {n} places, rebooting");
    // SRST: warm reboot (type 2), no reason.
    sbi::call(sbi::SRST, 0, 2, 0, 0);
    println!("rezero: reboot did not happen");
    sbi::shutdown(true);
}
