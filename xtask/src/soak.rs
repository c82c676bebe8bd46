//! `cargo xtask soak --minutes N`: Linux VMs doing checksummed disk and
//! network I/O under vCPU oversubscription (two 2-vCPU VMs on 2 harts,
//! joined by a virtual switch) for N minutes.
//!
//! Each round in each VM:
//! * disk: writes a random file to its own ext4 disk, checksums it,
//!   remounts (so the read really comes from the disk) and checksums it
//!   again; the two sums must match;
//! * network: sends a random file to the other VM over TCP and prints its
//!   checksum; the other VM's listener prints the checksum of what it
//!   received. Every received checksum must be one the peer sent.
//!
//! Reports disk and network rounds, data mismatches, guest errors and
//! hypervisor exits per second; fails on any mismatch or error, or when
//! either kind of round never completed.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::images;
use crate::qemu::Session;
use crate::RunOpts;

pub struct SoakResult {
    pub rounds: u64,
    pub net_rounds: u64,
    pub mismatches: u64,
    pub errors: Vec<String>,
    pub exits: u64,
    pub seconds: f64,
}

const VMS: [&str; 2] = ["soak-a", "soak-b"];
const PORT: u16 = 5000;

fn addr(i: usize) -> String {
    format!("10.0.9.{}", i + 1)
}

/// The shell lines VM `i` runs. Markers are built by the shell (`""`
/// splits them in the echoed command line), so an echo never matches.
fn script(i: usize) -> Vec<String> {
    let vm = VMS[i];
    let me = addr(i);
    let peer = addr(1 - i);
    vec![
        format!("ip addr add {me}/24 dev eth0; ip link set eth0 up; echo net\"\"-up\n"),
        // The listener: one connection at a time, each received file's sum.
        format!(
            "(while true; do nc -l -p {PORT} < /dev/null > /tmp/rx; \
             echo SOAK_\"\"NET_RX {vm} $(md5sum /tmp/rx | cut -c1-32); done) &\n"
        ),
        format!(
            "mkdir -p /mnt; mount -t ext4 /dev/vda /mnt || echo SOAK_\"\"ERROR mount; i=0; while true; do i=$((i+1)); \
             dd if=/dev/urandom of=/mnt/f bs=64k count=8 2>/dev/null; a=$(md5sum /mnt/f | cut -c1-32); \
             sync; umount /mnt; mount -t ext4 /dev/vda /mnt || echo SOAK_\"\"ERROR remount; \
             b=$(md5sum /mnt/f | cut -c1-32); if [ \"$a\" = \"$b\" ]; then echo SOAK_\"\"OK {vm} $i; \
             else echo SOAK_\"\"MISMATCH {vm} $i $a $b; fi; \
             dd if=/dev/urandom of=/tmp/tx bs=64k count=4 2>/dev/null; t=$(md5sum /tmp/tx | cut -c1-32); n=0; \
             until nc -w 5 {peer} {PORT} < /tmp/tx; do n=$((n+1)); \
             if [ $n -gt 60 ]; then echo SOAK_\"\"ERROR cannot reach {peer}; break; fi; sleep 1; done; \
             echo SOAK_\"\"NET_TX {vm} $i $t; done\n"
        ),
    ]
}

/// Network checks over the complete lines of the output: how many files
/// arrived, and how many of them arrived with a checksum no VM sent.
fn net_tally(out: &str) -> (u64, u64) {
    let complete = &out[..out.rfind('\n').unwrap_or(0)];
    let field = |l: &str, marker: &str, n: usize| {
        l.split(marker)
            .nth(1)
            .and_then(|t| t.split_whitespace().nth(n))
            .map(str::to_string)
    };
    let sent: HashSet<String> = complete
        .lines()
        .filter_map(|l| field(l, "SOAK_NET_TX", 2))
        .collect();
    let received: Vec<String> = complete
        .lines()
        .filter_map(|l| field(l, "SOAK_NET_RX", 1))
        .collect();
    let bad = received.iter().filter(|m| !sent.contains(*m)).count();
    (received.len() as u64, bad as u64)
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
            "\n[[vm]]\nname = \"{vm}\"\nvcpus = 2\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\n{}[[vm.disk]]\nimage = \"{}\"\n[[vm.nic]]\nnetwork = \"soak\"\n",
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
    if let Err(e) = s.wait_all_ready(&VMS, boot) {
        let _ = std::fs::write(dir.join(format!("{tag}.log")), s.output());
        return Err(e);
    }
    let cmd_time = Duration::from_secs(60);
    for i in 0..VMS.len() {
        if i > 0 {
            s.send("\x01n")?;
            s.expect(&format!("console input -> VM {i}"), cmd_time)?;
        }
        let lines = script(i);
        s.send(&lines[0])?;
        s.expect(&format!("[{}] net-up", VMS[i]), cmd_time)?;
        for line in &lines[1..] {
            s.send(line)?;
        }
    }
    let start = Instant::now();
    let total = Duration::from_secs_f64(minutes * 60.0);
    eprintln!("xtask: soak running for {minutes} minute(s)...");
    let mut next_report = Duration::from_secs(60);
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_millis(500));
        if start.elapsed() >= next_report {
            let out = s.output();
            eprintln!(
                "xtask: soak {:.0}s: {} disk rounds, {} network transfers",
                start.elapsed().as_secs_f64(),
                out.matches("SOAK_OK").count(),
                net_tally(&out).0
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
    let (net_rounds, net_bad) = net_tally(&out);
    let mismatches = out.matches("SOAK_MISMATCH").count() as u64 + net_bad;
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
        net_rounds,
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
    let failed = r.failed();
    println!(
        "{} passed, {} failed",
        u64::from(!failed),
        u64::from(failed)
    );
    Ok(u8::from(failed))
}

impl SoakResult {
    /// Any mismatch or error, or a kind of I/O that never completed.
    pub fn failed(&self) -> bool {
        self.mismatches != 0 || !self.errors.is_empty() || self.rounds == 0 || self.net_rounds == 0
    }
}

pub fn report(r: &SoakResult) {
    println!(
        "soak: {:.0} s, {} checksummed disk rounds, {} checksummed network transfers, {} data mismatches, {} errors",
        r.seconds,
        r.rounds,
        r.net_rounds,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_tally_matches_received_against_sent() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        let out = format!(
            "[soak-a] SOAK_NET_TX soak-a 1 {a}\r\n[soak-b] SOAK_NET_RX soak-b {a}\r\n\
             [soak-b] SOAK_NET_RX soak-b {b}\r\n[soak-a] SOAK_NET_RX soak-a 0123"
        );
        // The unfinished last line is not counted; b was never sent.
        assert_eq!(net_tally(&out), (2, 1));
        assert_eq!(net_tally(""), (0, 0));
    }
}
