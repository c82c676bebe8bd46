//! `cargo xtask soak --minutes N`: Linux VMs doing checksummed disk I/O
//! under vCPU oversubscription (two 2-vCPU VMs on 2 harts) for N minutes.
//! Each round writes a random file to an ext4 disk, checksums it, remounts
//! (so the read really comes from the disk) and checksums it again. Reports
//! rounds, data mismatches, guest errors and hypervisor exits per second;
//! fails on any mismatch or error.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::images;
use crate::qemu::Session;
use crate::RunOpts;

pub struct SoakResult {
    pub rounds: u64,
    pub mismatches: u64,
    pub errors: Vec<String>,
    pub exits: u64,
    pub seconds: f64,
}

const VMS: [&str; 2] = ["soak-a", "soak-b"];

fn script(vm: &str) -> String {
    // One line for the busybox shell; markers are built by the shell so the
    // echoed command line never matches them.
    format!(
        "mkdir -p /mnt; mount -t ext4 /dev/vda /mnt || echo SOAK_\"\"ERROR mount; i=0; while true; do i=$((i+1)); \
         dd if=/dev/urandom of=/mnt/f bs=64k count=8 2>/dev/null; a=$(md5sum /mnt/f | cut -c1-32); \
         sync; umount /mnt; mount -t ext4 /dev/vda /mnt || echo SOAK_\"\"ERROR remount; \
         b=$(md5sum /mnt/f | cut -c1-32); if [ \"$a\" = \"$b\" ]; then echo SOAK_\"\"OK {vm} $i; \
         else echo SOAK_\"\"MISMATCH {vm} $i $a $b; fi; done\n"
    )
}

pub fn run_soak(minutes: f64, tag: &str) -> Result<SoakResult, String> {
    let dir = images::root().join("target/soak");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cfg = String::from("[machine]\nharts = 2\nlog = \"info\"\n");
    for (i, vm) in VMS.iter().enumerate() {
        let img = dir.join(format!("{vm}.img"));
        std::fs::write(&img, vec![0u8; 48 << 20]).map_err(|e| e.to_string())?;
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("mkfs.ext4 failed (install e2fsprogs)".into());
        }
        cfg.push_str(&format!(
            "\n[[vm]]\nname = \"{vm}\"\nvcpus = 2\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\n{}[[vm.disk]]\nimage = \"{}\"\n",
            if i == 0 { "console = true\n" } else { "" },
            img.display()
        ));
    }
    let cfg_path = dir.join("soak.toml");
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    // Deterministic guest time: the soak's progress does not depend on how
    // busy the host is.
    let opts = RunOpts {
        config: Some(cfg_path),
        icount: true,
        ..RunOpts::default()
    };
    let m = crate::prepare(&opts, tag)?;
    let mut s = Session::spawn(m.command())?;
    let boot = Duration::from_secs(300);
    for vm in VMS {
        if let Err(e) = s.expect(&format!("[{vm}] guest: init ready"), boot) {
            let _ = std::fs::write(dir.join(format!("{tag}.log")), s.output());
            return Err(e);
        }
    }
    s.send(&script(VMS[0]))?;
    s.send("\x01n")?;
    s.expect("console input -> VM 1", Duration::from_secs(30))?;
    s.send(&script(VMS[1]))?;
    let start = Instant::now();
    let total = Duration::from_secs_f64(minutes * 60.0);
    eprintln!("xtask: soak running for {minutes} minute(s)...");
    let mut next_report = Duration::from_secs(60);
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_millis(500));
        if start.elapsed() >= next_report {
            let out = s.output();
            eprintln!(
                "xtask: soak {:.0}s: {} rounds",
                start.elapsed().as_secs_f64(),
                out.matches("SOAK_OK").count()
            );
            next_report += Duration::from_secs(60);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    s.send("\x01l")?;
    s.expect("exits: total=", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(500));
    s.send("\x01x")?;
    let _ = s.wait_exit(Duration::from_secs(60));
    let out = s.output();
    let _ = std::fs::write(dir.join(format!("{tag}.log")), &out);
    let rounds = out.matches("SOAK_OK").count() as u64;
    let mismatches = out.matches("SOAK_MISMATCH").count() as u64;
    let mut errors: Vec<String> = out
        .lines()
        .filter(|l| {
            l.contains("SOAK_ERROR")
                || l.contains("EXT4-fs error")
                || l.contains("I/O error")
                || l.contains("PANIC")
                || l.contains("Kernel panic")
        })
        .map(str::to_string)
        .collect();
    errors.dedup();
    let exits = out
        .lines()
        .filter(|l| l.contains("exits: total="))
        .filter_map(|l| {
            l.split("total=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    Ok(SoakResult {
        rounds,
        mismatches,
        errors,
        exits,
        seconds,
    })
}

pub fn soak(args: &[String]) -> Result<u8, String> {
    let mut minutes = 10.0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                minutes = it
                    .next()
                    .and_then(|m| m.parse().ok())
                    .ok_or("--minutes takes a number")?
            }
            other => {
                return Err(format!(
                    "unknown option {other:?} (cargo xtask soak --minutes N)"
                ))
            }
        }
    }
    let r = run_soak(minutes, "soak")?;
    report(&r);
    let failed = r.mismatches != 0 || !r.errors.is_empty() || r.rounds == 0;
    println!(
        "{} passed, {} failed",
        u64::from(!failed),
        u64::from(failed)
    );
    Ok(u8::from(failed))
}

pub fn report(r: &SoakResult) {
    println!(
        "soak: {:.0} s, {} checksummed disk rounds, {} data mismatches, {} errors",
        r.seconds,
        r.rounds,
        r.mismatches,
        r.errors.len()
    );
    println!(
        "soak: {} hypervisor exits, {:.0} exits/s",
        r.exits,
        r.exits as f64 / r.seconds.max(1.0)
    );
    for e in &r.errors {
        println!("soak: error: {e}");
    }
}
