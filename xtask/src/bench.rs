//! `cargo xtask bench`: what virtualization costs, native vs Rivet.
//!
//! Everything runs on QEMU `virt` with `-icount shift=0,sleep=off`: guest
//! time is deterministic and one retired instruction is one nanosecond of
//! virtual time (idle time in WFI jumps straight to the next timer
//! deadline). "Native" is the same guest directly on QEMU's OpenSBI (no
//! hypervisor); "Rivet" is the guest in a VM under Rivet on a CPU with the
//! H extension.
//!
//! 1. Micro-benchmarks: the test kernel's `mode=bench` (see
//!    guests/testkernel/src/bench.rs), natively and under Rivet: on one hart
//!    (Rivet: 1 vCPU on 1 hart), the IPI and HSM ones on two (2 vCPUs on 2
//!    harts), and the SBI timer again on a CPU without Sstc. Under Rivet each
//!    benchmark is also run alone at log level 4 and its exit profile
//!    compared with an empty run's: hypervisor exits per iteration.
//! 2. Linux boot to init: the shared Linux Image and busybox initramfs with a
//!    small overlay (a second cpio appended to the initramfs) that adds
//!    `/rdtime`, a 20-instruction static program printing the `time` CSR,
//!    and an /init that runs it first thing and right before it prints
//!    `guest: init ready`. The `time` CSR counts from machine reset (Rivet
//!    sets htimedelta = 0), so these are honest reset→init times; the
//!    kernel's printk stamp of `Run /init` is also reported, but it only
//!    counts from when the kernel registered its sched_clock (firmware,
//!    hypervisor and early kernel boot are not in it).
//! 3. The exit profile of a Linux boot under Rivet (`--log 4` prints it at
//!    power-off).
//! 4. I/O (skipped with `--no-io`; `--io-only` runs nothing else):
//!    virtio-blk sequential read and write throughput of the same Linux
//!    guest on a 64 MiB raw image, natively on QEMU's own virtio-blk and
//!    under Rivet (its emulated virtio-blk backed by QEMU's), timed with
//!    /rdtime around `dd` (see [`BLK_BOOTARGS`] for why both sides boot
//!    with `nohlt`); and, Rivet only, virtio-net between two Linux VMs on
//!    one network of Rivet's switch: ping round trip and a 4 MiB TCP
//!    transfer with busybox nc.
//!
//! Each figure is the median of `--runs` runs (default 3) with min/max.
//! Results: target/bench/results.{json,md,svg}; the Markdown is printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::images;
use crate::qemu::Session;
use crate::RunOpts;

const T_MICRO: Duration = Duration::from_secs(60);
/// A Linux boot takes a few seconds of wall time; a hung one must not eat
/// the benchmark's 10-minute budget.
const T_LINUX: Duration = Duration::from_secs(90);
/// QEMU virt's timebase; replaced by what the test kernel reads from the DT.
const DEFAULT_TIMEBASE: f64 = 10_000_000.0;

// ---------------------------------------------------------------- parsing

/// One `bench <name> ...` line from the test kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchLine {
    pub name: String,
    pub iters: u64,
    pub instret: Option<f64>,
    pub ns: Option<f64>,
    /// Set for `bench <name> n/a reason=<why>`.
    pub na: Option<String>,
}

/// Parses `bench <name> iters=K instret_per_iter=X ns_per_iter=Y` or
/// `bench <name> n/a reason=R` (anywhere in the line: consoles may prefix).
pub fn parse_bench_line(line: &str) -> Option<BenchLine> {
    let rest = &line[line.find("bench ")? + "bench ".len()..];
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    if name.ends_with(':') {
        return None; // "bench: ..." status lines
    }
    let mut b = BenchLine {
        name: name.to_string(),
        iters: 0,
        instret: None,
        ns: None,
        na: None,
    };
    let mut saw_value = false;
    for w in words {
        if w == "n/a" {
            b.na = Some(String::new());
            continue;
        }
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        match k {
            "iters" => b.iters = v.parse().ok()?,
            "instret_per_iter" => {
                b.instret = v.parse().ok();
                saw_value = true;
            }
            "ns_per_iter" => {
                b.ns = v.parse().ok();
                saw_value = true;
            }
            "reason" => b.na = Some(v.to_string()),
            _ => {}
        }
    }
    if b.na.is_some() || (saw_value && b.iters > 0) {
        Some(b)
    } else {
        None
    }
}

/// The printk timestamp (seconds) of a `[    0.094045] text` line.
pub fn parse_printk_stamp(line: &str) -> Option<f64> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let inner = line[open + 1..close].trim();
    if !inner.contains('.') {
        return None;
    }
    inner.parse().ok()
}

/// The printk stamp of the first line containing `needle`.
pub fn printk_stamp_of(output: &str, needle: &str) -> Option<f64> {
    output
        .lines()
        .find(|l| l.contains(needle))
        .and_then(parse_printk_stamp)
}

/// `[rivet]    exits: total=N sbi.base=.. mmio.uart=..` → name → count.
pub fn parse_exit_profile(line: &str) -> Option<BTreeMap<String, u64>> {
    let rest = &line[line.find("exits:")? + "exits:".len()..];
    let mut m = BTreeMap::new();
    for w in rest.split_whitespace() {
        let (k, v) = w.split_once('=')?;
        m.insert(k.to_string(), v.parse().ok()?);
    }
    if m.contains_key("total") {
        Some(m)
    } else {
        None
    }
}

/// Key prefix, in an exit profile, of the instructions the hypervisor
/// spent per reason (full-path exits only).
const HS: &str = "hs:";

/// `[rivet]    hs-instructions (full-path exits): total=N mmio.plic=..`
/// → name → instructions.
pub fn parse_hs_profile(line: &str) -> Option<BTreeMap<String, u64>> {
    let rest = &line[line.find("hs-instructions")?..];
    let rest = &rest[rest.find("total=")?..];
    let mut m = BTreeMap::new();
    for w in rest.split_whitespace() {
        let (k, v) = w.split_once('=')?;
        m.insert(k.to_string(), v.parse().ok()?);
    }
    Some(m)
}

/// The last HS-instruction profile printed in `output`.
pub fn hs_profile_of(output: &str) -> Option<BTreeMap<String, u64>> {
    output.lines().rev().find_map(parse_hs_profile)
}

/// The last exit profile printed in `output`.
pub fn exit_profile_of(output: &str) -> Option<BTreeMap<String, u64>> {
    output.lines().rev().find_map(parse_exit_profile)
}

/// `<prefix>rdtime=<ticks>` printed by the Linux overlay's /rdtime.
pub fn parse_rdtime(output: &str, label: &str) -> Option<u64> {
    let pat = format!("bench: {label} rdtime=");
    let line = output.lines().find(|l| l.contains(&pat))?;
    let v = &line[line.find(&pat)? + pat.len()..];
    v.trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------- statistics

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

/// Median (mean of the middle two for an even count), min and max.
pub fn stats(values: &[f64]) -> Option<Stats> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
        values: values.to_vec(),
    })
}

impl Stats {
    /// Relative spread (max − min) / median.
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median.abs()
        }
    }
}

/// Formats a figure with a precision that suits its size.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 || (a >= 100.0 && x.fract() == 0.0) {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_stats(s: &Option<Stats>) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if fmt_num(s.min) == fmt_num(s.max) => fmt_num(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
    }
}

// ---------------------------------------------------------------- results

/// Samples per metric key and side.
#[derive(Default, Debug)]
struct Samples {
    native: BTreeMap<String, Vec<f64>>,
    rivet: BTreeMap<String, Vec<f64>>,
    native_na: BTreeMap<String, String>,
    rivet_na: BTreeMap<String, String>,
}

impl Samples {
    fn push(&mut self, rivet: bool, key: &str, v: f64) {
        let m = if rivet {
            &mut self.rivet
        } else {
            &mut self.native
        };
        m.entry(key.to_string()).or_default().push(v);
    }
    fn na(&mut self, rivet: bool, key: &str, why: &str) {
        let m = if rivet {
            &mut self.rivet_na
        } else {
            &mut self.native_na
        };
        m.insert(key.to_string(), why.to_string());
    }
    fn get(&self, rivet: bool, key: &str) -> Option<Stats> {
        let m = if rivet { &self.rivet } else { &self.native };
        m.get(key).and_then(|v| stats(v))
    }
}

/// One row of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub unit: String,
    pub native: Option<Stats>,
    pub rivet: Option<Stats>,
    pub exits_per_iter: Option<f64>,
    pub note: String,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        match (&self.native, &self.rivet) {
            (Some(n), Some(r)) if n.median > 0.0 => Some(r.median / n.median),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- machines

/// A native QEMU command line: the guest straight on OpenSBI.
fn native_command(
    kernel: &Path,
    initrd: Option<&Path>,
    append: &str,
    smp: u32,
    sstc: bool,
) -> Command {
    let mut c = Command::new("qemu-system-riscv64");
    let cpu = if sstc {
        "rv64".to_string()
    } else {
        "rv64,sstc=false".to_string()
    };
    c.args([
        "-M",
        "virt",
        "-cpu",
        &cpu,
        "-smp",
        &smp.to_string(),
        "-m",
        "512M",
    ]);
    c.args([
        "-bios",
        "default",
        "-no-reboot",
        "-display",
        "none",
        "-monitor",
        "none",
    ]);
    c.args(["-chardev", "stdio,id=con0", "-serial", "chardev:con0"]);
    c.arg("-kernel").arg(kernel);
    if let Some(i) = initrd {
        c.arg("-initrd").arg(i);
    }
    c.args(["-append", append]);
    c.args(["-icount", "shift=0,sleep=off"]);
    c
}

/// Rivet machines, prepared once per configuration (through
/// [`crate::prepare`], which builds and packs the boot bundle) and all run
/// with one frozen copy of the hypervisor binary, so that a rebuild of the
/// tree while the benchmark runs cannot mix binaries into the results.
struct Rivets {
    hypervisor: PathBuf,
    machines: BTreeMap<String, crate::qemu::Machine>,
}

impl Rivets {
    fn command(&mut self, opts: &RunOpts) -> Result<Command, String> {
        let key = format!("{opts:?}");
        if !self.machines.contains_key(&key) {
            let tag = format!("bench-{}", self.machines.len());
            let mut m = crate::prepare(opts, &tag)?;
            m.icount = true;
            m.hypervisor = self.hypervisor.clone();
            self.machines.insert(key.clone(), m);
        }
        Ok(self.machines[&key].command())
    }
}

fn micro_opts(append: &str, harts: u32, sstc: bool) -> RunOpts {
    RunOpts {
        append: Some(append.into()),
        vcpus: harts,
        harts,
        sstc,
        ..RunOpts::default()
    }
}

fn exits_opts(filter: &str, vcpus: u32, sstc: bool) -> RunOpts {
    RunOpts {
        append: Some(format!("mode=bench bench={filter}")),
        vcpus,
        harts: vcpus,
        sstc,
        log: 4,
        ..RunOpts::default()
    }
}

/// Linux under Rivet: the frozen kernel copy (so `kernel` is set; the VM
/// is still the "linux" one with `console=ttyS0`) and the bench initramfs.
fn linux_opts(kernel: &Path, initramfs: &Path, vcpus: u32, harts: u32, log: u32) -> RunOpts {
    RunOpts {
        guest: "linux".into(),
        kernel: Some(kernel.to_path_buf()),
        initrd: Some(initramfs.to_path_buf()),
        vcpus,
        harts,
        memory_mb: 512,
        log,
        ..RunOpts::default()
    }
}

/// The kernel command line of the disk boots, on both sides. `nohlt`:
/// the idle loop polls instead of executing WFI. Under `-icount
/// sleep=off` an idle machine's clock jumps straight to the next timer
/// deadline, and QEMU completes virtio-blk requests asynchronously (host
/// thread pool), so a native guest that halts while its request is in
/// flight is billed "until the next timer" per request, not the device's
/// time. Rivet completes a request synchronously inside the trapping MMIO
/// write (it polls its own virtio-blk driver), so its guest never halts on
/// I/O. With `nohlt` the native guest also polls while it waits: on both
/// sides the wait is then instructions executed while QEMU's backend works.
const BLK_BOOTARGS: &str = "console=ttyS0 nohlt";

/// Linux with the benchmark's disk (1 vCPU on 1 hart, like `linux.1`).
fn blk_opts(kernel: &Path, initramfs: &Path, img: &Path) -> RunOpts {
    RunOpts {
        disks: vec![(img.to_path_buf(), false)],
        append: Some(BLK_BOOTARGS.into()),
        ..linux_opts(kernel, initramfs, 1, 1, 3)
    }
}

/// The two-VM network machine of `net.toml`.
fn net_opts(cfg: &Path) -> RunOpts {
    RunOpts {
        config: Some(cfg.to_path_buf()),
        icount: true,
        ..RunOpts::default()
    }
}

/// Native QEMU with the same image on QEMU's own virtio-blk (the options
/// Rivet's machine uses for its disk, less the serial).
fn native_blk_command(kernel: &Path, initramfs: &Path, img: &Path, append: &str) -> Command {
    let mut c = native_command(kernel, Some(initramfs), append, 1, true);
    c.arg("-drive").arg(format!(
        "file={},if=none,format=raw,id=d0,cache=writeback",
        img.display()
    ));
    c.args(["-device", "virtio-blk-device,drive=d0"]);
    c
}

/// (key, vCPUs, Sstc): each benchmark run alone for its exit count.
const EXIT_PLAN: &[(&str, u32, bool)] = &[
    ("sbi.null", 1, true),
    ("mmio.load", 1, true),
    ("mmio.store", 1, true),
    ("trap.illegal", 1, true),
    ("trap.virtual", 1, true),
    ("timer.sbi", 1, true),
    ("timer.sstc", 1, true),
    ("timer.sbi@nosstc", 1, false),
    ("ipi.pingpong", 2, true),
    ("hsm.start", 2, true),
];

/// Single-hart benchmarks run on one hart (native -smp 1, Rivet 1 vCPU on 1
/// hart); the SMP ones on two. Under -icount every hart's instructions
/// advance the one virtual clock (and instret, which QEMU derives from the
/// global instruction count), so an idle-but-awake second hart is billed
/// to the benchmark: the @2harts rows show that effect.
const SMP_FILTER: &str = "mode=bench bench=ipi,hsm,sbi.null,mmio.load";
const NOSSTC_FILTER: &str = "mode=bench bench=timer.sbi";
/// (tag, Rivet?, harts, Sstc, command line).
const MICRO_PLAN: &[(&str, bool, u32, bool, &str)] = &[
    ("native-1", false, 1, true, "mode=bench"),
    ("rivet-1", true, 1, true, "mode=bench"),
    ("native-2", false, 2, true, SMP_FILTER),
    ("rivet-2", true, 2, true, SMP_FILTER),
    // The SBI timer again on a CPU without Sstc (emulated with the M-mode
    // timer natively, with the host timer under Rivet).
    ("native-nosstc", false, 1, false, NOSSTC_FILTER),
    ("rivet-nosstc", true, 1, false, NOSSTC_FILTER),
];

/// The metric key a benchmark line of run `tag` is recorded under.
fn micro_key(tag: &str, name: &str) -> String {
    if tag.ends_with("-2") && !(name.starts_with("ipi.") || name.starts_with("hsm.")) {
        format!("{name}@2harts")
    } else if tag.ends_with("-nosstc") {
        format!("{name}@nosstc")
    } else {
        name.to_string()
    }
}

/// Copies `src` into `dir` (a frozen input for the whole benchmark).
fn freeze(src: &Path, dir: &Path) -> Result<PathBuf, String> {
    let name = src.file_name().ok_or("no file name")?;
    let dst = dir.join(name);
    std::fs::copy(src, &dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
    Ok(dst)
}

fn command_line(c: &Command) -> String {
    std::iter::once(c.get_program().to_string_lossy().into_owned())
        .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Out {
    dir: PathBuf,
}

impl Out {
    fn log(&self, name: &str, s: &Session) {
        let _ = std::fs::write(self.dir.join(format!("{name}.log")), s.output());
    }
}

/// Runs a test-kernel bench to completion; returns its output and wall time.
fn run_testkernel(cmd: Command, out: &Out, name: &str) -> Result<(String, f64), String> {
    let mut s = Session::spawn(cmd)?;
    let t = Instant::now();
    let r = s
        .expect("bench: done", T_MICRO)
        .and_then(|_| s.wait_exit(T_MICRO).map(|_| ()));
    let wall = t.elapsed().as_secs_f64();
    let ((), text) = finished(out, name, &s, r)?;
    Ok((text, wall))
}

/// Logs a finished run and returns the run's result with its output; an
/// error of the run, or a panic in the output (hypervisor or test kernel),
/// becomes an error carrying the output's last lines.
fn finished<T>(
    out: &Out,
    name: &str,
    s: &Session,
    r: Result<T, String>,
) -> Result<(T, String), String> {
    out.log(name, s);
    let text = s.output();
    let v = r.map_err(|e| format!("{name}: {e}\n{}", tail(&text, 25)))?;
    if text.contains("PANIC") || text.contains("testkernel panic") {
        return Err(format!("{name}: panic\n{}", tail(&text, 25)));
    }
    Ok((v, text))
}

fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

fn collect_bench_lines(out: &str) -> Vec<BenchLine> {
    out.lines().filter_map(parse_bench_line).collect()
}

fn timebase_of(out: &str) -> Option<f64> {
    let l = out.lines().find(|l| l.contains("bench: start timebase="))?;
    let v = &l[l.find("timebase=")? + "timebase=".len()..];
    v.split_whitespace().next()?.parse().ok()
}

fn record_micro(samples: &mut Samples, rivet: bool, suffix: &str, lines: &[BenchLine]) {
    for b in lines {
        let key = format!("{}{suffix}", b.name);
        if let Some(why) = &b.na {
            samples.na(rivet, &format!("{key}.instret"), why);
            samples.na(rivet, &format!("{key}.ns"), why);
            continue;
        }
        if let Some(i) = b.instret {
            samples.push(rivet, &format!("{key}.instret"), i);
        }
        if let Some(n) = b.ns {
            if b.iters == 1 && b.instret.is_none() {
                // One-shot figures (boot times) are large: keep them in ms.
                samples.push(rivet, &format!("{key}.ms"), n / 1e6);
            } else {
                samples.push(rivet, &format!("{key}.ns"), n);
            }
        }
    }
}

// ---------------------------------------------------------------- Linux overlay

/// /rdtime: prints the `time` CSR in decimal and a newline, then exits.
/// Position-independent RV64IM code (assembled once with binutils; the
/// source is in the comment), loaded by [`rdtime_elf`].
const RDTIME_CODE: [u32; 20] = [
    0xc01027f3, // rdtime a5
    0xfc010113, // addi sp, sp, -64
    0x04010593, // addi a1, sp, 64        (end of buffer)
    0x00a00313, // li t1, 10
    0xfff58593, // addi a1, a1, -1
    0x00658023, // sb t1, 0(a1)           ('\n')
    0x0267f2b3, // 1: remu t0, a5, t1
    0x0267d7b3, // divu a5, a5, t1
    0x03028293, // addi t0, t0, '0'
    0xfff58593, // addi a1, a1, -1
    0x00558023, // sb t0, 0(a1)
    0xfe0796e3, // bnez a5, 1b
    0x00100513, // li a0, 1               (stdout)
    0x04010613, // addi a2, sp, 64
    0x40b60633, // sub a2, a2, a1         (length)
    0x04000893, // li a7, 64              (write)
    0x00000073, // ecall
    0x00000513, // li a0, 0
    0x05d00893, // li a7, 93              (exit)
    0x00000073, // ecall
];

/// A static RISC-V ELF64 executable: header, one PT_LOAD, the code.
pub fn rdtime_elf() -> Vec<u8> {
    const BASE: u64 = 0x10000;
    const HDR: u64 = 64 + 56;
    let code: Vec<u8> = RDTIME_CODE.iter().flat_map(|w| w.to_le_bytes()).collect();
    let total = HDR + code.len() as u64;
    let mut e = Vec::new();
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, LE, v1, SysV
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&243u16.to_le_bytes()); // EM_RISCV
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + HDR).to_le_bytes()); // e_entry
    e.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags (no RVC, soft-float ABI: no FP used)
    e.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    e.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    e.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
                                              // PT_LOAD, R+X, the whole file at BASE.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    e.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    e.extend_from_slice(&total.to_le_bytes()); // p_filesz
    e.extend_from_slice(&total.to_le_bytes()); // p_memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    e.extend_from_slice(&code);
    e
}

/// A newc ("070701") cpio archive of regular files (path, mode, data).
pub fn cpio_newc(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn pad4(v: &mut Vec<u8>) {
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
    }
    let mut v = Vec::new();
    let entry = |v: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]| {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        v.extend_from_slice(b"070701");
        for f in fields {
            v.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        pad4(v);
        v.extend_from_slice(data);
        pad4(v);
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(&mut v, 1000 + i as u32, name, *mode, data);
    }
    entry(&mut v, 0, "TRAILER!!!", 0, &[]);
    v
}

/// The guest's /init with the two /rdtime probes added.
pub fn bench_init(original: &str) -> String {
    let mut out = String::new();
    let mut lines = original.lines();
    // Keep the interpreter line first.
    if let Some(first) = lines.next() {
        out.push_str(first);
        out.push('\n');
    }
    out.push_str("echo -n 'bench: init-start rdtime='; /rdtime\n");
    for l in lines {
        if l.trim_start().starts_with("echo \"guest: init ready") {
            out.push_str("echo -n 'bench: init-ready rdtime='; /rdtime\n");
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The shared guest's init (initramfs-init.sh), used when the script is
/// not next to the images.
const DEFAULT_INIT: &str = "#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
echo \"guest: init ready, $(nproc) cpu(s), $(uname -r)\"
exec setsid cttyhack sh
";

/// Writes the benchmark initramfs: the original (gzip) archive followed by
/// an uncompressed cpio with /rdtime and the probed /init (Linux unpacks
/// concatenated archives in order; later files replace earlier ones).
fn bench_initramfs(kernel: &Path, initrd: &Path, dir: &Path) -> Result<PathBuf, String> {
    let mut bytes = std::fs::read(initrd).map_err(|e| format!("{}: {e}", initrd.display()))?;
    let script = kernel
        .parent()
        .map(|d| d.join("initramfs-init.sh"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| DEFAULT_INIT.to_string());
    if !script.contains("guest: init ready") {
        return Err("initramfs-init.sh does not print `guest: init ready`".into());
    }
    let init = bench_init(&script);
    let elf = rdtime_elf();
    // The kernel looks for a cpio header only at 4-byte aligned offsets
    // and skips zero padding between archives.
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    bytes.extend_from_slice(&cpio_newc(&[
        ("init", 0o100755, init.as_bytes()),
        ("rdtime", 0o100755, &elf),
    ]));
    let p = dir.join("bench-initramfs.cpio");
    std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// One Linux boot: guest-time figures (ms) and wall seconds to init ready.
#[derive(Debug, Default, Clone)]
struct Boot {
    printk_run_init_ms: Option<f64>,
    init_start_ms: Option<f64>,
    init_ready_ms: Option<f64>,
    wall_s: f64,
    exits: Option<BTreeMap<String, u64>>,
}

fn linux_boot(
    cmd: Command,
    out: &Out,
    name: &str,
    vcpus: u32,
    timebase: f64,
) -> Result<Boot, String> {
    let mut s = Session::spawn(cmd)?;
    let t = Instant::now();
    let r = (|| {
        s.expect(&format!("guest: init ready, {vcpus} cpu(s)"), T_LINUX)?;
        let wall = t.elapsed().as_secs_f64();
        s.send("poweroff -f\n")?;
        s.wait_exit(T_LINUX)?;
        Ok::<f64, String>(wall)
    })();
    let (wall, text) = finished(out, name, &s, r)?;
    let ms = |ticks: u64| ticks as f64 * 1e3 / timebase;
    Ok(Boot {
        printk_run_init_ms: printk_stamp_of(&text, "Run /init as init process").map(|s| s * 1e3),
        init_start_ms: parse_rdtime(&text, "init-start").map(ms),
        init_ready_ms: parse_rdtime(&text, "init-ready").map(ms),
        wall_s: wall,
        exits: exit_profile_of(&text).map(|mut p| {
            p.extend(
                hs_profile_of(&text)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (format!("{HS}{k}"), v)),
            );
            p
        }),
    })
}

fn report_boot(side: &str, vcpus: u32, run: usize, b: &Boot) {
    println!(
        "bench: linux {side} {vcpus} cpu run {}: init ready at {} ms guest time ({:.1} s wall)",
        run + 1,
        b.init_ready_ms.map(fmt_num).unwrap_or("?".into()),
        b.wall_s
    );
}

/// Records a failed run: printed now, and its first line kept as a note.
fn failure(notes: &mut Vec<String>, what: &str, err: &str) {
    println!("bench: FAILED: {what}: {err}");
    notes.push(format!(
        "FAILED: {what}: {}",
        err.lines().next().unwrap_or("")
    ));
}

fn record_boot(samples: &mut Samples, rivet: bool, vcpus: u32, b: &Boot) {
    let k = |what: &str| format!("linux.{vcpus}.{what}");
    if let Some(v) = b.printk_run_init_ms {
        samples.push(rivet, &k("printk_run_init"), v);
    }
    if let Some(v) = b.init_start_ms {
        samples.push(rivet, &k("init_start"), v);
    }
    if let Some(v) = b.init_ready_ms {
        samples.push(rivet, &k("init_ready"), v);
    }
    if let (Some(st), Some(p)) = (b.init_start_ms, b.printk_run_init_ms) {
        samples.push(rivet, &k("pre_printk"), st - p);
        if let Some(r) = b.init_ready_ms {
            samples.push(rivet, &k("kernel_to_ready"), r - (st - p));
        }
    }
    samples.push(rivet, &k("wall"), b.wall_s);
}

// ---------------------------------------------------------------- I/O

/// One guest command can take a while of wall time (TCG copies megabytes).
const T_IO: Duration = Duration::from_secs(120);
/// The virtio-blk image: 64 MiB of zeros, written anew before every boot
/// (fully allocated on the host, and in the host's page cache on both
/// sides alike).
const BLK_IMAGE_BYTES: usize = 64 << 20;
/// Every disk transfer: 512 blocks of 64 KiB = 32 MiB.
const BLK_BS_KIB: u64 = 64;
const BLK_COUNT: u64 = 512;
/// The TCP transfer: 64 blocks of 64 KiB = 4 MiB from a tmpfs file.
const TCP_COUNT: u64 = 64;
const PING_COUNT: usize = 10;

/// `bench-io <label> <n> [<n> ...]` printed by the guest scripts: the
/// numbers after the label. (The typed command line reads `bench""-io`,
/// so its echo never matches.)
pub fn parse_io(output: &str, label: &str) -> Option<Vec<u64>> {
    let pat = format!("bench-io {label} ");
    output.lines().find_map(|l| {
        let rest = &l[l.find(&pat)? + pat.len()..];
        let v: Vec<u64> = rest
            .split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        (!v.is_empty()).then_some(v)
    })
}

/// `<label> <before> <after>` → after − before (ticks).
pub fn io_interval(output: &str, label: &str) -> Option<u64> {
    match parse_io(output, label)?.as_slice() {
        [a, b, ..] if b >= a => Some(b - a),
        _ => None,
    }
}

/// A shell line that runs `cmd` between two /rdtime probes and prints
/// `bench-io <label> <before> <after>`.
pub fn timed(label: &str, cmd: &str) -> String {
    format!("a=$(/rdtime); {cmd}; b=$(/rdtime); echo \"bench\"\"-io {label} $a $b\"\n")
}

/// The round-trip times (ms) of busybox ping's reply lines
/// (`64 bytes from 10.0.0.1: seq=0 ttl=64 time=0.812 ms`).
pub fn parse_ping_rtts(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            let t = &l[l.find("time=")? + "time=".len()..];
            t.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// MiB/s for `bytes` moved in `ticks` of the time CSR.
pub fn mib_per_s(bytes: u64, ticks: f64, timebase: f64) -> Option<f64> {
    (ticks > 0.0).then(|| bytes as f64 / (1u64 << 20) as f64 / (ticks / timebase))
}

/// The disk steps, in one boot, in this order: (label, command). Each is
/// timed with [`timed`]; `probe` times nothing (two probes back to back)
/// and is subtracted from the others. Before `read-cold` the guest drops
/// its page cache (untimed).
const BLK_STEPS: &[(&str, &str)] = &[
    ("probe", ":"),
    (
        "write-direct",
        "dd if=/dev/zero of=/dev/vda bs=64k count=512 oflag=direct 2>>/tmp/dd.log",
    ),
    (
        "read-direct",
        "dd if=/dev/vda of=/dev/null bs=64k count=512 iflag=direct 2>>/tmp/dd.log",
    ),
    (
        "write-fsync",
        "dd if=/dev/zero of=/dev/vda bs=64k count=512 conv=fsync 2>>/tmp/dd.log",
    ),
    (
        "read-cold",
        "dd if=/dev/vda of=/dev/null bs=64k count=512 2>>/tmp/dd.log",
    ),
];

/// (step label, metric key, row label, note) of the disk rows.
const BLK_ROWS: &[(&str, &str, &str, &str)] = &[
    (
        "read-direct",
        "blk.read_direct.mibs",
        "virtio-blk seq. read, O_DIRECT, 64 KiB × 512",
        "dd iflag=direct: one 64 KiB request at a time, no page cache",
    ),
    (
        "write-direct",
        "blk.write_direct.mibs",
        "virtio-blk seq. write, O_DIRECT, 64 KiB × 512",
        "dd oflag=direct: one 64 KiB request at a time, no page cache",
    ),
    (
        "read-cold",
        "blk.read_cold.mibs",
        "virtio-blk seq. read, buffered, after drop_caches",
        "dd through the page cache with readahead, cache dropped first",
    ),
    (
        "write-fsync",
        "blk.write_fsync.mibs",
        "virtio-blk seq. write, buffered + fsync",
        "dd conv=fsync: page cache, writeback and a flush, all in the interval",
    ),
];

/// The disk figures of one boot, by metric key.
fn blk_run(
    cmd: Command,
    out: &Out,
    name: &str,
    timebase: f64,
) -> Result<BTreeMap<String, f64>, String> {
    let mut s = Session::spawn(cmd)?;
    let r = (|| {
        s.expect("guest: init ready, 1 cpu(s)", T_LINUX)?;
        s.send("echo SIZE=$(cat /sys/block/vda/size) size\"\"-read\n")?;
        s.expect("size-read", T_IO)?;
        for &(label, step) in BLK_STEPS {
            if label == "read-cold" {
                s.send("sync; echo 3 > /proc/sys/vm/drop_caches; echo dropped\"\"-caches\n")?;
                s.expect("dropped-caches", T_IO)?;
            }
            s.send(&timed(label, step))?;
            s.expect(&format!("bench-io {label} "), T_IO)?;
        }
        s.send("cat /tmp/dd.log; poweroff -f\n")?;
        s.wait_exit(T_LINUX)?;
        Ok::<(), String>(())
    })();
    let ((), text) = finished(out, name, &s, r)?;
    let want = format!("SIZE={}", BLK_IMAGE_BYTES / 512);
    if !text.contains(&want) {
        return Err(format!(
            "{name}: the guest's /dev/vda is not {} MiB ({want} expected)",
            BLK_IMAGE_BYTES >> 20
        ));
    }
    let probe = io_interval(&text, "probe").ok_or(format!("{name}: no probe interval"))?;
    let mut m = BTreeMap::new();
    m.insert("io.probe.us".to_string(), probe as f64 * 1e6 / timebase);
    let bytes = BLK_BS_KIB * 1024 * BLK_COUNT;
    for &(label, key, _, _) in BLK_ROWS {
        let t = io_interval(&text, label).ok_or(format!("{name}: no {label} interval"))?;
        let v = mib_per_s(bytes, t.saturating_sub(probe) as f64, timebase)
            .ok_or(format!("{name}: empty {label} interval"))?;
        m.insert(key.to_string(), v);
    }
    Ok(m)
}

/// The two-VM network machine: alpha (10.0.0.1, console) and beta
/// (10.0.0.2), one vCPU each, each pinned to its own hart, on network "lan".
fn net_config(kernel: &Path, initramfs: &Path) -> String {
    let vm = |name: &str, hart: u32, console: bool| {
        format!(
            "\n[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"{}\"\ninitrd = \"{}\"\n\
             bootargs = \"console=ttyS0\"\npin = [{hart}]\n{}[[vm.nic]]\nnetwork = \"lan\"\n",
            kernel.display(),
            initramfs.display(),
            if console { "console = true\n" } else { "" }
        )
    };
    format!(
        "[machine]\nharts = 2\n{}{}",
        vm("alpha", 0, true),
        vm("beta", 1, false)
    )
}

/// Size of the file read over virtio-fs.
const FS_FILE_BYTES: usize = 16 << 20;

/// One Linux VM with the bench share as virtio-fs tag "host".
fn fs_config(kernel: &Path, initramfs: &Path, share: &Path) -> String {
    format!(
        "[machine]\nharts = 1\n\n[[vm]]\nname = \"fs\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"{}\"\ninitrd = \"{}\"\n\
         bootargs = \"console=ttyS0\"\n[[vm.fs]]\ntag = \"host\"\npath = \"{}\"\n",
        kernel.display(),
        initramfs.display(),
        share.display()
    )
}

/// Guest read throughput of a 16 MiB host file over virtio-fs (MiB/s of
/// guest time), first read after mount (not in the guest's page cache).
fn fs_run(cmd: Command, out: &Out, name: &str, timebase: f64) -> Result<f64, String> {
    let mut s = Session::spawn(cmd)?;
    let r = (|| {
        s.expect("guest: init ready", T_LINUX)?;
        s.send("mkdir -p /mnt && mount -t virtiofs host /mnt && echo mount\"\"-ok\n")?;
        s.expect("mount-ok", T_IO)?;
        s.send(&timed("fs-probe", ":"))?;
        s.expect("bench-io fs-probe ", T_IO)?;
        s.send(&timed("fs-read", "cat /mnt/big.bin > /dev/null"))?;
        s.expect("bench-io fs-read ", T_IO)?;
        s.send("poweroff -f\n")?;
        s.wait_exit(T_LINUX)?;
        Ok::<(), String>(())
    })();
    let ((), text) = finished(out, name, &s, r)?;
    let probe = io_interval(&text, "fs-probe").ok_or(format!("{name}: no probe interval"))?;
    let t = io_interval(&text, "fs-read").ok_or(format!("{name}: no read interval"))?;
    mib_per_s(
        FS_FILE_BYTES as u64,
        t.saturating_sub(probe) as f64,
        timebase,
    )
    .ok_or(format!("{name}: empty interval"))
}

/// The network figures of one run: ping RTTs (µs), TCP MiB/s, by key.
fn net_run(
    cmd: Command,
    out: &Out,
    name: &str,
    timebase: f64,
) -> Result<BTreeMap<String, f64>, String> {
    let mut s = Session::spawn(cmd)?;
    let r = (|| {
        s.wait_all(
            &["[alpha] guest: init ready", "[beta] guest: init ready"],
            T_LINUX,
        )?;
        s.send("ip addr add 10.0.0.1/24 dev eth0 && ip link set eth0 up && echo alpha\"\"-up\n")?;
        s.expect("[alpha] alpha-up", T_IO)?;
        // The receiver stamps the time once its nc has seen the sender's
        // FIN, i.e. every byte has arrived.
        s.send("(nc -l -p 5000 < /dev/null > /dev/null; echo \"bench\"\"-io tcp-recv-end $(/rdtime)\") &\n")?;
        s.send("echo listen\"\"-started\n")?;
        s.expect("[alpha] listen-started", T_IO)?;
        s.send("\x01n")?;
        s.expect("console input -> VM 1", T_IO)?;
        s.send("ip addr add 10.0.0.2/24 dev eth0 && ip link set eth0 up && echo beta\"\"-up\n")?;
        s.expect("[beta] beta-up", T_IO)?;
        // Warm-up: ARP resolved and both stacks awake before measuring.
        s.send("ping -c 2 10.0.0.1 > /dev/null; echo warm\"\"-done\n")?;
        s.expect("[beta] warm-done", T_IO)?;
        s.send(&format!(
            "ping -c {PING_COUNT} 10.0.0.1 > /tmp/ping; echo \"bench\"\"-io ping-done 1\"\n"
        ))?;
        s.expect("bench-io ping-done ", T_IO)?;
        s.send("cat /tmp/ping; echo ping\"\"-shown\n")?;
        s.expect("[beta] ping-shown", T_IO)?;
        s.send(&format!(
            "dd if=/dev/zero of=/tmp/f bs=64k count={TCP_COUNT} 2>/dev/null; echo file\"\"-made\n"
        ))?;
        s.expect("[beta] file-made", T_IO)?;
        s.send(&timed("probe", ":"))?;
        s.expect("bench-io probe ", T_IO)?;
        s.send(&timed("tcp-send", "nc -w 3 10.0.0.1 5000 < /tmp/f"))?;
        s.wait_all(&["bench-io tcp-send ", "bench-io tcp-recv-end "], T_IO)?;
        s.send("\x01x")?;
        s.wait_exit(T_IO)?;
        Ok::<(), String>(())
    })();
    let ((), text) = finished(out, name, &s, r)?;
    let mut m = BTreeMap::new();
    let rtts = parse_ping_rtts(&text);
    if rtts.len() != PING_COUNT {
        return Err(format!(
            "{name}: {} of {PING_COUNT} ping replies",
            rtts.len()
        ));
    }
    let rtt = stats(&rtts).ok_or(format!("{name}: no ping times"))?;
    m.insert("net.ping.us".to_string(), rtt.median * 1e3);
    let start = parse_io(&text, "tcp-send")
        .and_then(|v| v.first().copied())
        .ok_or(format!("{name}: no send stamp"))?;
    let end = parse_io(&text, "tcp-recv-end")
        .and_then(|v| v.first().copied())
        .ok_or(format!("{name}: no receive stamp"))?;
    let probe = io_interval(&text, "probe").unwrap_or(0);
    let ticks = end.checked_sub(start).ok_or(format!(
        "{name}: receiver finished before the sender started"
    ))?;
    let bytes = BLK_BS_KIB * 1024 * TCP_COUNT;
    let v = mib_per_s(bytes, ticks.saturating_sub(probe) as f64, timebase)
        .ok_or(format!("{name}: empty TCP interval"))?;
    m.insert("net.tcp.mibs".to_string(), v);
    if let Some(send) = io_interval(&text, "tcp-send") {
        m.insert(
            "net.tcp_sender.ms".to_string(),
            send as f64 * 1e3 / timebase,
        );
    }
    Ok(m)
}

// ---------------------------------------------------------------- SVG

/// One group of bars: a label and native / Rivet values (same unit).
#[derive(Debug, Clone)]
pub struct ChartRow {
    pub label: String,
    pub native: Option<f64>,
    pub rivet: Option<f64>,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal grouped bar chart on a log10 axis (the figures span six
/// decades), native and Rivet per row, each bar labelled with its value.
pub fn svg_chart(title: &str, rows: &[ChartRow]) -> String {
    let (left, bar_w, right) = (300.0, 520.0, 110.0);
    let (row_h, top) = (40.0, 60.0);
    let width = left + bar_w + right;
    let height = top + rows.len() as f64 * row_h + 50.0;
    let vals: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.native, r.rivet])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().cloned().fold(0.0, f64::max);
    let (lo_d, hi_d) = if vals.is_empty() {
        (0.0, 1.0)
    } else {
        (lo.log10().floor().min(0.0), hi.log10().ceil().max(1.0))
    };
    let x = |v: f64| -> f64 {
        if v <= 0.0 {
            0.0
        } else {
            ((v.log10() - lo_d) / (hi_d - lo_d) * bar_w).clamp(1.0, bar_w)
        }
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="32" width="12" height="12" fill="#4c78a8"/><text x="{}" y="43">native (OpenSBI)</text>"##,
        left + 16.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="32" width="12" height="12" fill="#e45756"/><text x="{}" y="43">Rivet</text>"##,
        left + 150.0,
        left + 166.0
    );
    // Decade grid lines.
    let mut d = lo_d;
    while d <= hi_d + 1e-9 {
        let gx = left + (d - lo_d) / (hi_d - lo_d) * bar_w;
        let gy1 = top + rows.len() as f64 * row_h;
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{gy1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="gray">1e{d}</text>"#,
            gy1 + 15.0
        );
        d += 1.0;
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + 22.0,
            xml_escape(&r.label)
        );
        for (j, (v, color)) in [(r.native, "#4c78a8"), (r.rivet, "#e45756")]
            .into_iter()
            .enumerate()
        {
            let by = y + 4.0 + j as f64 * 16.0;
            match v {
                Some(v) => {
                    let w = x(v);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{left}" y="{by:.1}" width="{w:.1}" height="14" fill="{color}"/>"#
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                        left + w + 4.0,
                        by + 11.0,
                        xml_escape(&fmt_num(v))
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" fill="gray">n/a</text>"#,
                        left + 4.0,
                        by + 11.0
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="10" y="{:.1}" fill="gray">log scale; units per row as in results.md (instructions, ns, µs, ms or MiB/s of icount guest time)</text>"#,
        height - 12.0
    );
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------- JSON

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        let s = format!("{x}");
        s
    } else {
        "null".into()
    }
}

fn json_stats(s: &Option<Stats>) -> String {
    match s {
        None => "null".into(),
        Some(s) => format!(
            "{{\"median\": {}, \"min\": {}, \"max\": {}, \"spread\": {}, \"n\": {}, \"values\": [{}]}}",
            json_num(s.median),
            json_num(s.min),
            json_num(s.max),
            json_num(s.spread()),
            s.values.len(),
            s.values.iter().map(|v| json_num(*v)).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn json_map(m: &BTreeMap<String, u64>) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}: {v}", json_str(k)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

// ---------------------------------------------------------------- the command

struct Opts {
    runs: usize,
    micro: bool,
    linux: bool,
    linux_boot: bool,
    linux_smp: bool,
    exits: bool,
    io: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        runs: 3,
        micro: true,
        linux: true,
        linux_boot: true,
        linux_smp: true,
        exits: true,
        io: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                o.runs = it.next().and_then(|v| v.parse().ok()).filter(|n| *n >= 1).ok_or("--runs takes a number >= 1")?
            }
            "--quick" => {
                o.runs = 1;
                o.linux_smp = false;
            }
            "--no-linux" => o.linux = false,
            "--no-exits" => o.exits = false,
            "--no-io" => o.io = false,
            "--io-only" => {
                o.micro = false;
                o.exits = false;
                o.linux_boot = false;
                o.io = true;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: cargo xtask bench [--runs N] [--quick] [--no-linux] [--no-exits] [--no-io] [--io-only]\n\
                     \x20 --no-linux  no Linux at all (boots, disk, network)\n\
                     \x20 --no-io     skip the virtio-blk and virtio-net benchmarks\n\
                     \x20 --io-only   only the virtio-blk and virtio-net benchmarks"
                        .into(),
                )
            }
            other => return Err(format!("unknown bench option {other:?}")),
        }
    }
    Ok(o)
}

const MICRO_ROWS: &[(&str, &str, &str, &str)] = &[
    ("sbi.null.instret", "null SBI call (get_spec_version)", "instructions/call", ""),
    ("mmio.load.instret", "MMIO load, UART scratch (lbu)", "instructions/load", "native: real device, no trap"),
    ("mmio.store.instret", "MMIO store, UART scratch (sb)", "instructions/store", "native: real device, no trap"),
    (
        "trap.illegal.instret",
        "illegal insn trap to guest handler (unimp)",
        "instructions/round trip",
        "OpenSBI keeps illegal-insn traps (medeleg bit 2 clear) and redirects them to (V)S: no Rivet exit",
    ),
    (
        "trap.virtual.instret",
        "virtual-insn trap: csrr hstatus, injected as illegal",
        "instructions/round trip",
        "native: no trap (hstatus is readable in HS-mode); compare with the unimp row",
    ),
    ("timer.sbi.instret", "timer IRQ latency, SBI set_timer", "instructions deadline→handler", "spin-wait; ±4 insns of loop slack"),
    ("timer.sbi.ns", "timer IRQ latency, SBI set_timer", "ns deadline→handler", "time CSR: 100 ns steps, values < 100 are noise; see the row above"),
    ("timer.sstc.instret", "timer IRQ latency, stimecmp (Sstc)", "instructions deadline→handler", "spin-wait; ±4 insns of loop slack"),
    ("timer.sstc.ns", "timer IRQ latency, stimecmp (Sstc)", "ns deadline→handler", "time CSR: 100 ns steps, values < 100 are noise"),
    ("timer.sbi@nosstc.instret", "timer IRQ latency, SBI set_timer, no Sstc", "instructions deadline→handler", "-cpu ...,sstc=false"),
    ("timer.sbi@nosstc.ns", "timer IRQ latency, SBI set_timer, no Sstc", "ns deadline→handler", "-cpu ...,sstc=false"),
    ("sbi.null@2harts.instret", "null SBI call, 2 harts (one idle)", "instructions/call", "idle host hart's work is billed under -icount"),
    ("mmio.load@2harts.instret", "MMIO load, 2 harts (one idle)", "instructions/load", "idle host hart's work is billed under -icount"),
    ("ipi.pingpong.ns", "IPI ping-pong vCPU0→vCPU1→vCPU0", "ns/round trip", "handlers taken on both sides; WFI waits"),
    ("hsm.start.ns", "HSM hart_start → first instruction", "ns", "time CSR, 100 ns resolution per sample"),
    (
        "boot.reset_to_main.ms",
        "test kernel: reset → bench start (256 MiB VM)",
        "ms guest time",
        "firmware + hypervisor boot and VM set-up + kernel start-up",
    ),
    ("loop.empty.instret", "empty loop (overhead per iteration)", "instructions/iter", "included in every loop row"),
];

pub fn bench(args: &[String]) -> Result<u8, String> {
    let o = parse_opts(args)?;
    let t_all = Instant::now();
    let mut notes: Vec<String> = Vec::new();
    crate::setup()?;
    let built = images::build_all()?;
    let dir = images::root().join("target/bench");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    // Logs of an earlier benchmark would be mistaken for this one's.
    for e in std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "log") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let out = Out { dir: dir.clone() };
    let testkernel = freeze(&built.testkernel, &bin)?;
    let mut rivets = Rivets {
        hypervisor: freeze(&built.hypervisor, &bin)?,
        machines: BTreeMap::new(),
    };
    let linux = if o.linux {
        let (kernel, initrd) = crate::e2e::linux_images()?;
        let initramfs = bench_initramfs(&kernel, &initrd, &bin)?;
        notes.push(format!(
            "Linux guest: {} + {} with the /rdtime overlay (copies in target/bench/bin)",
            kernel.display(),
            initrd.display()
        ));
        Some((freeze(&kernel, &bin)?, initramfs))
    } else {
        None
    };
    let linux_cfgs: Vec<u32> = match (&linux, o.linux_boot, o.linux_smp) {
        (None, _, _) | (_, false, _) => vec![],
        (Some(_), true, false) => vec![1],
        (Some(_), true, true) => vec![1, 2],
    };
    // The I/O benchmarks' disk image and two-VM network configuration.
    let io = match &linux {
        Some((kernel, initramfs)) if o.io => {
            let img = bin.join("blk.img");
            std::fs::write(&img, vec![0u8; BLK_IMAGE_BYTES])
                .map_err(|e| format!("{}: {e}", img.display()))?;
            let cfg = bin.join("net.toml");
            std::fs::write(&cfg, net_config(kernel, initramfs))
                .map_err(|e| format!("{}: {e}", cfg.display()))?;
            let share = bin.join("share");
            std::fs::create_dir_all(&share).map_err(|e| e.to_string())?;
            let mut data = Vec::with_capacity(FS_FILE_BYTES);
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            while data.len() < FS_FILE_BYTES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.extend_from_slice(&x.to_le_bytes());
            }
            std::fs::write(share.join("big.bin"), &data).map_err(|e| e.to_string())?;
            std::fs::write(bin.join("fs.toml"), fs_config(kernel, initramfs, &share))
                .map_err(|e| e.to_string())?;
            Some((img, cfg))
        }
        _ => None,
    };
    // Prepare every Rivet machine now (one build, one short window in which
    // the tree must compile), then run them all from the frozen copies.
    println!("== preparing Rivet boot bundles");
    for &(_, rivet, harts, sstc, append) in MICRO_PLAN {
        if rivet && o.micro {
            rivets.command(&micro_opts(append, harts, sstc))?;
        }
    }
    if o.exits {
        for &(key, vcpus, sstc) in EXIT_PLAN {
            rivets.command(&exits_opts("none", vcpus, sstc))?;
            rivets.command(&exits_opts(
                key.split('@').next().unwrap_or(key),
                vcpus,
                sstc,
            ))?;
        }
    }
    if let Some((kernel, initramfs)) = &linux {
        for &v in &linux_cfgs {
            for harts in if v > 1 { vec![v, 1] } else { vec![1] } {
                rivets.command(&linux_opts(kernel, initramfs, v, harts, 3))?;
                rivets.command(&linux_opts(kernel, initramfs, v, harts, 4))?;
            }
        }
    }
    if let (Some((kernel, initramfs)), Some((img, cfg))) = (&linux, &io) {
        rivets.command(&blk_opts(kernel, initramfs, img))?;
        rivets.command(&net_opts(cfg))?;
    }
    let mut samples = Samples::default();
    let mut timebase = DEFAULT_TIMEBASE;
    let mut micro_wall: (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());

    // 1. Micro-benchmarks.
    let micro_runs = if o.micro { o.runs } else { 0 };
    if o.micro {
        println!(
            "== micro-benchmarks ({} run(s) each, native and Rivet)",
            o.runs
        );
    }
    let mut failed_tags: Vec<&str> = Vec::new();
    for run in 0..micro_runs {
        for &(tag, rivet, harts, sstc, append) in MICRO_PLAN {
            if failed_tags.contains(&tag) {
                continue;
            }
            let cmd = if rivet {
                rivets.command(&micro_opts(append, harts, sstc))?
            } else {
                native_command(&testkernel, None, append, harts, sstc)
            };
            if run == 0 {
                println!("bench: {tag}: {}", command_line(&cmd));
            }
            let (text, wall) = match run_testkernel(cmd, &out, &format!("micro-{tag}-{run}")) {
                Ok(r) => r,
                Err(e) => {
                    failure(
                        &mut notes,
                        &format!("micro-benchmarks {tag} run {}", run + 1),
                        &e,
                    );
                    failed_tags.push(tag);
                    continue;
                }
            };
            if let Some(tb) = timebase_of(&text) {
                timebase = tb;
            }
            let lines: Vec<BenchLine> = collect_bench_lines(&text)
                .into_iter()
                .filter(|b| b.na.as_deref() != Some("one-hart"))
                .map(|mut b| {
                    b.name = micro_key(tag, &b.name);
                    b
                })
                .collect();
            record_micro(&mut samples, rivet, "", &lines);
            if tag.ends_with("-1") {
                if rivet {
                    micro_wall.1.push(wall);
                } else {
                    micro_wall.0.push(wall);
                }
            }
        }
        println!(
            "bench: micro-benchmark round {} of {} done",
            run + 1,
            o.runs
        );
    }

    // Is instret counting everything (M, HS and VS/S)? Under icount the
    // time CSR does, so the two must agree on busy loops.
    let agree = ["sbi.null", "mmio.load", "trap.illegal"].iter().all(|b| {
        match (
            samples.get(true, &format!("{b}.instret")),
            samples.get(true, &format!("{b}.ns")),
        ) {
            (Some(i), Some(n)) => (i.median - n.median).abs() <= 0.02 * n.median.max(1.0) + 0.5,
            _ => false,
        }
    });
    let instret_note = if agree {
        "instret under -icount is QEMU's global retired-instruction count (every hart, every privilege mode: OpenSBI, \
         Rivet and the guest; target/riscv/csr.c returns icount_get_raw() while minstretcfg is 0): it equals icount \
         guest time on these busy loops, so the Rivet figures include the hypervisor's instructions"
            .to_string()
    } else {
        "WARNING: instret and icount time disagree on busy loops; instret may not count the hypervisor's instructions".to_string()
    };
    if o.micro {
        println!("bench: {instret_note}");
        notes.push(instret_note);
    }

    // Exits per iteration: each benchmark alone at log level 4, minus an
    // empty run (console output through DBCN is left out of both).
    let mut exits_per_iter: BTreeMap<String, f64> = BTreeMap::new();
    let mut exit_detail: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    if o.exits {
        println!("== hypervisor exits per benchmark iteration (Rivet, log level 4)");
        let mut baseline: BTreeMap<(u32, bool), BTreeMap<String, u64>> = BTreeMap::new();
        for &(key, vcpus, sstc) in EXIT_PLAN {
            let name = key.split('@').next().unwrap_or(key);
            let base = match baseline.get(&(vcpus, sstc)) {
                Some(b) => b.clone(),
                None => {
                    let cmd = rivets.command(&exits_opts("none", vcpus, sstc))?;
                    let r = run_testkernel(cmd, &out, &format!("exits-baseline-{vcpus}-{sstc}"));
                    let Some(p) = r.as_ref().ok().and_then(|(text, _)| exit_profile_of(text))
                    else {
                        let e = r
                            .err()
                            .unwrap_or_else(|| "no exit profile printed (log level 4)".into());
                        failure(&mut notes, &format!("exit baseline ({vcpus} vCPU(s))"), &e);
                        continue;
                    };
                    baseline.insert((vcpus, sstc), p.clone());
                    p
                }
            };
            let cmd = rivets.command(&exits_opts(name, vcpus, sstc))?;
            let text = match run_testkernel(cmd, &out, &format!("exits-{key}")) {
                Ok((t, _)) => t,
                Err(e) => {
                    failure(&mut notes, &format!("exit count of {key}"), &e);
                    continue;
                }
            };
            let Some(p) = exit_profile_of(&text) else {
                failure(
                    &mut notes,
                    &format!("exit count of {key}"),
                    "no exit profile printed (log level 4)",
                );
                continue;
            };
            let Some(b) = collect_bench_lines(&text)
                .into_iter()
                .find(|b| b.name == name && b.na.is_none())
            else {
                continue;
            };
            let diff = profile_diff(&p, &base);
            let per = exits_excluding_console(&diff) as f64 / b.iters.max(1) as f64;
            println!("bench: exits {key}: {per:.2}/iter ({})", fmt_diff(&diff));
            exits_per_iter.insert(key.to_string(), per);
            exit_detail.insert(key.to_string(), diff);
        }
    }

    // 2. + 3. Linux boots.
    let mut exit_profiles: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut linux_harts: BTreeMap<u32, u32> = linux_cfgs.iter().map(|&v| (v, v)).collect();
    if let Some((kernel, initramfs)) = &linux {
        for &vcpus in &linux_cfgs {
            println!(
                "== Linux boot, {vcpus} CPU(s) ({} run(s) each, native and Rivet)",
                o.runs
            );
            let mut native_ok = true;
            let mut rivet_ok = true;
            for run in 0..o.runs {
                if native_ok {
                    let cmd = native_command(kernel, Some(initramfs), "console=ttyS0", vcpus, true);
                    if run == 0 {
                        println!("bench: native: {}", command_line(&cmd));
                    }
                    match linux_boot(
                        cmd,
                        &out,
                        &format!("linux-native-{vcpus}-{run}"),
                        vcpus,
                        timebase,
                    ) {
                        Ok(b) => {
                            record_boot(&mut samples, false, vcpus, &b);
                            report_boot("native", vcpus, run, &b);
                        }
                        Err(e) => {
                            native_ok = false;
                            failure(&mut notes, &format!("native Linux {vcpus} CPU(s)"), &e);
                        }
                    }
                }
                if !rivet_ok {
                    continue;
                }
                // Rivet runs its vCPUs on as many harts as there are; should
                // that fail (SMP hypervisor still young), the figures come
                // from the vCPUs time-sliced on one hart, and a note says so.
                loop {
                    let harts = linux_harts[&vcpus];
                    let cmd = rivets.command(&linux_opts(kernel, initramfs, vcpus, harts, 3))?;
                    if run == 0 {
                        println!("bench: rivet:  {}", command_line(&cmd));
                    }
                    match linux_boot(
                        cmd,
                        &out,
                        &format!("linux-rivet-{vcpus}-{run}"),
                        vcpus,
                        timebase,
                    ) {
                        Ok(b) => {
                            record_boot(&mut samples, true, vcpus, &b);
                            report_boot("rivet ", vcpus, run, &b);
                        }
                        Err(e) if harts > 1 => {
                            failure(
                                &mut notes,
                                &format!("Rivet Linux {vcpus} vCPUs on {harts} harts"),
                                &e,
                            );
                            notes.push(format!(
                                "Rivet Linux {vcpus}-vCPU figures are from {vcpus} vCPUs time-sliced on 1 hart (the {harts}-hart run failed)"
                            ));
                            linux_harts.insert(vcpus, 1);
                            continue;
                        }
                        Err(e) => {
                            rivet_ok = false;
                            failure(
                                &mut notes,
                                &format!("Rivet Linux {vcpus} vCPU(s) on {harts} hart(s)"),
                                &e,
                            );
                        }
                    }
                    break;
                }
            }
        }
        println!("== exit profile of a Linux boot under Rivet (log level 4)");
        for &vcpus in &linux_cfgs {
            let cmd = rivets.command(&linux_opts(
                kernel,
                initramfs,
                vcpus,
                linux_harts[&vcpus],
                4,
            ))?;
            let name = format!("linux-exits-{vcpus}");
            match linux_boot(cmd, &out, &name, vcpus, timebase) {
                Ok(Boot { exits: Some(p), .. }) => {
                    println!("bench: linux {vcpus} vCPU exits: {}", fmt_profile(&p));
                    let h = linux_harts[&vcpus];
                    exit_profiles.insert(format!("Linux, {vcpus} vCPU(s) on {h} hart(s)"), p);
                }
                Ok(_) => notes.push(format!(
                    "no exit profile printed by the {vcpus}-vCPU Linux run"
                )),
                Err(e) => failure(
                    &mut notes,
                    &format!("Rivet Linux {vcpus} vCPU(s) at log level 4"),
                    &e,
                ),
            }
        }
    }

    // 4. Disk and network I/O.
    if let (Some((kernel, initramfs)), Some((img, cfg))) = (&linux, &io) {
        println!(
            "== virtio-blk (native and Rivet) and virtio-net (Rivet, two VMs), {} run(s) each",
            o.runs
        );
        notes.push(format!(
            "virtio-blk rows: Linux, 1 CPU (Rivet: 1 vCPU on 1 hart), booted with `{BLK_BOOTARGS}` on both sides (see the \
             note on `nohlt`); each transfer is 32 MiB (dd bs=64k count=512) on a fresh, fully written 64 MiB raw image \
             (QEMU virtio-blk, cache=writeback, so the host serves it from its page cache), timed in guest time with \
             /rdtime around the dd command, minus the probe pair's own cost; dd's own rates (in the logs) agree. \
             Waiting for QEMU's backend is billed as the instructions executed meanwhile (the guest's idle loop natively, \
             Rivet's polling loop under Rivet), so these rows follow host speed and load and vary more between runs \
             than the rest."
        ));
        notes.push(
            "virtio-net rows (Rivet only): two Linux VMs (1 vCPU and 256 MiB each, pinned to harts 0 and 1) on one \
             network of Rivet's switch. Ping: `ping -c 10` after a 2-ping warm-up, median of busybox's round-trip times \
             (guest clock). TCP: 4 MiB of zeros from tmpfs with busybox nc, from before the sender's nc starts (connect \
             included) to the receiver's /rdtime after its nc saw EOF, i.e. every byte arrived (Rivet sets htimedelta = 0, \
             so both VMs read one clock), minus the probe pair (nc's -w 3 idle wait is not in it). Under -icount both harts' \
             instructions advance the one clock, so sender, receiver and hypervisor work count back to back."
                .into(),
        );
        let (mut native_ok, mut rivet_ok, mut net_ok) = (true, true, true);
        for run in 0..o.runs {
            // Sides: native and Rivet with `nohlt`; once, for reference,
            // native as it boots elsewhere (idle = WFI), see BLK_BOOTARGS.
            let sides: &[(&str, bool)] = if run == 0 {
                &[("native", false), ("rivet", true), ("native-wfi", false)]
            } else {
                &[("native", false), ("rivet", true)]
            };
            for &(side, rivet) in sides {
                if !(if rivet { rivet_ok } else { native_ok }) {
                    continue;
                }
                // A fresh, fully written image for every boot.
                std::fs::write(img, vec![0u8; BLK_IMAGE_BYTES])
                    .map_err(|e| format!("{}: {e}", img.display()))?;
                let cmd = match side {
                    "rivet" => rivets.command(&blk_opts(kernel, initramfs, img))?,
                    "native" => native_blk_command(kernel, initramfs, img, BLK_BOOTARGS),
                    _ => native_blk_command(kernel, initramfs, img, "console=ttyS0"),
                };
                if run == 0 {
                    println!("bench: blk {side}: {}", command_line(&cmd));
                }
                let t = Instant::now();
                match blk_run(cmd, &out, &format!("blk-{side}-{run}"), timebase) {
                    Ok(m) if side == "native-wfi" => {
                        let show: Vec<String> = BLK_ROWS
                            .iter()
                            .filter_map(|(_, k, _, _)| {
                                m.get(*k).map(|v| {
                                    format!("{} {}", k.trim_end_matches(".mibs"), fmt_num(*v))
                                })
                            })
                            .collect();
                        println!(
                            "bench: blk native without nohlt (reference): {} MiB/s",
                            show.join(", ")
                        );
                        notes.push(format!(
                            "virtio-blk natively without `nohlt` (idle = WFI; one run, not in the table): {} MiB/s. \
                             Under -icount sleep=off a halted machine's clock jumps to the next timer deadline while QEMU \
                             completes the request on a host thread, so these figures count timer ticks per request, not the \
                             device; the table's disk rows use `nohlt` on both sides (the guest polls while it waits; Rivet \
                             polls the host device inside the guest's notify trap and so never halts on I/O anyway).",
                            show.join(", ")
                        ));
                    }
                    Ok(m) => {
                        let show: Vec<String> = BLK_ROWS
                            .iter()
                            .filter_map(|(_, k, _, _)| {
                                m.get(*k).map(|v| {
                                    format!("{} {}", k.trim_end_matches(".mibs"), fmt_num(*v))
                                })
                            })
                            .collect();
                        println!(
                            "bench: blk {side} run {}: {} MiB/s ({:.1} s wall)",
                            run + 1,
                            show.join(", "),
                            t.elapsed().as_secs_f64()
                        );
                        for (k, v) in &m {
                            samples.push(rivet, k, *v);
                        }
                    }
                    Err(e) if side == "native-wfi" => failure(
                        &mut notes,
                        "native virtio-blk without nohlt (reference)",
                        &e,
                    ),
                    Err(e) => {
                        if rivet {
                            rivet_ok = false;
                        } else {
                            native_ok = false;
                        }
                        failure(&mut notes, &format!("{side} virtio-blk"), &e);
                    }
                }
            }
            if net_ok {
                let cmd = rivets.command(&net_opts(cfg))?;
                if run == 0 {
                    println!("bench: net rivet: {}", command_line(&cmd));
                }
                let t = Instant::now();
                match net_run(cmd, &out, &format!("net-rivet-{run}"), timebase) {
                    Ok(m) => {
                        println!(
                            "bench: net rivet run {}: ping rtt median {} µs, TCP {} MiB/s ({:.1} s wall)",
                            run + 1,
                            m.get("net.ping.us").map(|v| fmt_num(*v)).unwrap_or("?".into()),
                            m.get("net.tcp.mibs").map(|v| fmt_num(*v)).unwrap_or("?".into()),
                            t.elapsed().as_secs_f64()
                        );
                        for (k, v) in &m {
                            samples.push(true, k, *v);
                        }
                    }
                    Err(e) => {
                        net_ok = false;
                        failure(&mut notes, "Rivet virtio-net (two VMs)", &e);
                    }
                }
            }
            // virtio-fs: a fresh machine per run (virtiofsd exits with QEMU).
            let fs_cfg = cfg.with_file_name("fs.toml");
            let fs_opts = RunOpts {
                config: Some(fs_cfg),
                icount: true,
                ..RunOpts::default()
            };
            let fs_result = crate::prepare(&fs_opts, "bench-fs").and_then(|mut m| {
                m.icount = true;
                m.hypervisor = rivets.hypervisor.clone();
                fs_run(m.command(), &out, &format!("fs-rivet-{run}"), timebase)
            });
            match fs_result {
                Ok(v) => {
                    println!(
                        "bench: virtio-fs rivet run {}: read {} MiB/s",
                        run + 1,
                        fmt_num(v)
                    );
                    samples.push(true, "fs.read.mibs", v);
                }
                Err(e) => failure(&mut notes, "Rivet virtio-fs read", &e),
            }
        }
    }

    // Results.
    let mut rows: Vec<Row> = Vec::new();
    for &(key, label, unit, note) in MICRO_ROWS.iter().filter(|_| o.micro) {
        let native = samples.get(false, key);
        let rivet = samples.get(true, key);
        let mut note = note.to_string();
        if native.is_none() {
            if let Some(why) = samples.native_na.get(key) {
                if note.is_empty() {
                    note = format!("native n/a ({why})");
                }
            }
        }
        let ex_key = key.rsplit_once('.').map(|(b, _)| b).unwrap_or(key);
        rows.push(Row {
            key: key.into(),
            label: label.into(),
            unit: unit.into(),
            native,
            rivet,
            exits_per_iter: exits_per_iter.get(ex_key).copied(),
            note,
        });
    }
    for &v in &linux_cfgs {
        let l = |what: &str| format!("linux.{v}.{what}");
        let cpus = if v == 1 {
            "1 CPU".to_string()
        } else {
            format!("{v} CPUs")
        };
        let h = linux_harts.get(&v).copied().unwrap_or(v);
        let ready_note =
            format!("time CSR read by /rdtime in init; Rivet: {v} vCPU(s) on {h} hart(s)");
        for (what, label, unit, note) in [
            (
                "init_ready",
                format!("Linux {cpus}: reset → init ready"),
                "ms guest time",
                ready_note.as_str(),
            ),
            (
                "init_start",
                format!("Linux {cpus}: reset → /init starts"),
                "ms guest time",
                "time CSR, first command of /init",
            ),
            (
                "printk_run_init",
                format!("Linux {cpus}: printk stamp of `Run /init`"),
                "ms guest time",
                "from the kernel's sched_clock start, not reset",
            ),
            (
                "pre_printk",
                format!("Linux {cpus}: reset → kernel clock start (approx.)"),
                "ms guest time",
                "init-start minus printk stamp: firmware, hypervisor, early kernel",
            ),
            (
                "kernel_to_ready",
                format!("Linux {cpus}: kernel clock start → init ready"),
                "ms guest time",
                "the guest's own share: init ready minus the row above",
            ),
            (
                "wall",
                format!("Linux {cpus}: wall clock to init ready"),
                "s (host, reference only)",
                "TCG speed, not guest time",
            ),
        ] {
            rows.push(Row {
                key: l(what),
                label,
                unit: unit.into(),
                native: samples.get(false, &l(what)),
                rivet: samples.get(true, &l(what)),
                exits_per_iter: None,
                note: note.into(),
            });
        }
    }
    if io.is_some() {
        let row = |key: &str, label: &str, unit: &str, note: &str| Row {
            key: key.into(),
            label: label.into(),
            unit: unit.into(),
            native: samples.get(false, key),
            rivet: samples.get(true, key),
            exits_per_iter: None,
            note: note.into(),
        };
        for &(_, key, label, note) in BLK_ROWS {
            rows.push(row(
                key,
                label,
                "MiB/s guest time",
                &format!("{note}; ratio < 1: slower under Rivet"),
            ));
        }
        rows.push(row(
            "io.probe.us",
            "Linux: `a=$(/rdtime); b=$(/rdtime)` (2 fork+exec)",
            "µs guest time",
            "the probes' own cost (disk boots), subtracted from every I/O interval",
        ));
        rows.push(row(
            "net.ping.us",
            "virtio-net ping RTT, VM → VM (median of 10)",
            "µs guest time",
            "Rivet only (native QEMU has no VM-to-VM path); busybox's RTTs, guest clock",
        ));
        rows.push(row(
            "net.tcp.mibs",
            "virtio-net TCP, 4 MiB VM → VM (busybox nc)",
            "MiB/s guest time",
            "Rivet only; sender's nc start → receiver's nc saw EOF (all bytes in)",
        ));
        rows.push(row(
            "fs.read.mibs",
            "virtio-fs read of a 16 MiB host file (cat, first read after mount)",
            "MiB/s guest time",
            "Rivet only: relayed to the host's virtiofsd; /rdtime around `cat > /dev/null`, minus a probe pair",
        ));
        rows.push(row(
            "net.tcp_sender.ms",
            "virtio-net TCP, sender's nc start → exit",
            "ms guest time",
            "reference: the sender's own interval (nc closes without waiting for the peer)",
        ));
    }
    if o.micro {
        rows.push(Row {
            key: "micro.wall".into(),
            label: "micro-benchmark run (1 hart), wall clock".into(),
            unit: "s (host, reference only)".into(),
            native: stats(&micro_wall.0),
            rivet: stats(&micro_wall.1),
            exits_per_iter: None,
            note: "whole test-kernel run incl. QEMU start".into(),
        });
    }

    let goals = goals(&rows, &exits_per_iter, &exit_detail);
    let total_wall = t_all.elapsed().as_secs_f64();
    let qemu = qemu_version();
    let md = markdown(
        &rows,
        &exit_profiles,
        &goals,
        &notes,
        o.runs,
        total_wall,
        &qemu,
    );
    let json = json(
        &rows,
        &exit_profiles,
        &exit_detail,
        &goals,
        &notes,
        o.runs,
        total_wall,
        &qemu,
    );
    let chart_rows: Vec<ChartRow> = rows
        .iter()
        .filter(|r| {
            !r.key.ends_with(".wall")
                && !r.key.starts_with("loop.")
                && (r.native.is_some() || r.rivet.is_some())
        })
        .map(|r| ChartRow {
            label: format!("{} [{}]", short_label(r), short_unit(&r.unit)),
            native: r.native.as_ref().map(|s| s.median),
            rivet: r.rivet.as_ref().map(|s| s.median),
        })
        .collect();
    let svg = svg_chart(
        "Rivet vs native (QEMU virt, -icount shift=0): medians",
        &chart_rows,
    );
    for (name, body) in [
        ("results.md", &md),
        ("results.json", &json),
        ("results.svg", &svg),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!();
    print!("{md}");
    println!(
        "\nbench: wrote {0}/results.md, {0}/results.json, {0}/results.svg ({total_wall:.0} s)",
        dir.display()
    );
    Ok(0)
}

fn short_label(r: &Row) -> String {
    let k = r.key.as_str();
    if let Some((v, what)) = k
        .strip_prefix("linux.")
        .and_then(|rest| rest.split_once('.'))
    {
        return format!("linux {v} cpu: {}", what.replace('_', " "));
    }
    let base = k.rsplit_once('.').map(|(b, _)| b).unwrap_or(k);
    let base = base
        .replace("@nosstc", " (no Sstc)")
        .replace("@2harts", " (2 harts)");
    if k.starts_with("net.") {
        format!("{base} (Rivet only)")
    } else {
        base
    }
}

/// "instructions/call" → "instructions", "ms guest time" → "ms",
/// "MiB/s guest time" → "MiB/s".
fn short_unit(u: &str) -> String {
    if u.starts_with("MiB/s") {
        return "MiB/s".into();
    }
    u.split(['/', ' ']).next().unwrap_or("").to_string()
}

fn qemu_version() -> String {
    Command::new("qemu-system-riscv64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// `a − b` per key (keys of either), as signed counts.
pub fn profile_diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, i64> {
    let mut d = BTreeMap::new();
    for k in a.keys().chain(b.keys()) {
        let v = *a.get(k).unwrap_or(&0) as i64 - *b.get(k).unwrap_or(&0) as i64;
        d.insert(k.clone(), v);
    }
    d
}

/// Total exits in a profile difference, without the benchmark's own
/// console output (SBI DBCN writes).
pub fn exits_excluding_console(d: &BTreeMap<String, i64>) -> i64 {
    d.get("total").copied().unwrap_or(0) - d.get("sbi.dbcn").copied().unwrap_or(0)
}

fn fmt_diff(d: &BTreeMap<String, i64>) -> String {
    let v: Vec<String> = d
        .iter()
        .filter(|(k, v)| **v != 0 && k.as_str() != "total")
        .map(|(k, v)| format!("{k}{v:+}"))
        .collect();
    if v.is_empty() {
        "no change".into()
    } else {
        v.join(" ")
    }
}

fn fmt_profile(p: &BTreeMap<String, u64>) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone)]
struct Goal {
    goal: String,
    value: String,
    met: Option<bool>,
}

fn goals(
    rows: &[Row],
    exits: &BTreeMap<String, f64>,
    detail: &BTreeMap<String, BTreeMap<String, i64>>,
) -> Vec<Goal> {
    let rivet = |key: &str| {
        rows.iter()
            .find(|r| r.key == key)
            .and_then(|r| r.rivet.as_ref())
            .map(|s| s.median)
    };
    let ratio = |key: &str| rows.iter().find(|r| r.key == key).and_then(Row::ratio);
    let mut g = Vec::new();
    let v = rivet("sbi.null.instret");
    g.push(Goal {
        goal: "null SBI call ≤ 150 retired instructions (stretch 100)".into(),
        value: v
            .map(|v| {
                format!(
                    "{} instructions{}",
                    fmt_num(v),
                    if v <= 100.0 { " (stretch met)" } else { "" }
                )
            })
            .unwrap_or("n/a".into()),
        met: v.map(|v| v <= 150.0),
    });
    let v = rivet("mmio.load.instret");
    g.push(Goal {
        goal: "emulated MMIO load ≤ 300 retired instructions".into(),
        value: v
            .map(|v| format!("{} instructions", fmt_num(v)))
            .unwrap_or("n/a".into()),
        met: v.map(|v| v <= 300.0),
    });
    let e = exits.get("timer.sstc").copied();
    let d = detail.get("timer.sstc").map(fmt_diff).unwrap_or_default();
    g.push(Goal {
        goal: "Sstc timer interrupt with zero hypervisor exits".into(),
        value: e
            .map(|e| format!("{e:.2} exits/interrupt ({d})"))
            .unwrap_or("n/a (exit counting skipped)".into()),
        met: e.map(|e| e == 0.0),
    });
    for v in [1, 2] {
        if let Some(r) = ratio(&format!("linux.{v}.init_ready")) {
            let row = |what: &str| rows.iter().find(|r| r.key == format!("linux.{v}.{what}"));
            let mut value = format!("{r:.3}x");
            if let Some(k) = row("kernel_to_ready").and_then(Row::ratio) {
                let _ = write!(value, "; kernel clock start → init ready alone: {k:.3}x");
            }
            if let Some(p) = row("pre_printk") {
                if let (Some(n), Some(rv)) = (&p.native, &p.rivet) {
                    let _ = write!(
                        value,
                        "; reset → kernel clock start: +{} ms",
                        fmt_num(rv.median - n.median)
                    );
                }
            }
            g.push(Goal {
                goal: format!(
                    "Linux boot to init ready ({v} CPU{}) within 1.10x native",
                    if v > 1 { "s" } else { "" }
                ),
                value,
                met: Some(r <= 1.10),
            });
        }
    }
    g
}

fn markdown(
    rows: &[Row],
    profiles: &BTreeMap<String, BTreeMap<String, u64>>,
    goals: &[Goal],
    notes: &[String],
    runs: usize,
    wall: f64,
    qemu: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Rivet benchmark results\n");
    let _ = writeln!(
        s,
        "{qemu}, `-M virt -icount shift=0,sleep=off` (1 instruction = 1 ns of guest time). Median of {runs} run(s), \
         (min–max) when runs differ. Native = the same guest on OpenSBI without a hypervisor. Micro-benchmarks \
         run on 1 hart (Rivet: 1 vCPU on 1 hart) except the IPI, HSM and `2 harts` rows (2 vCPUs on 2 harts); Linux \
         runs with as many harts as vCPUs. Ratio = Rivet / native.\n"
    );
    let _ = writeln!(
        s,
        "| benchmark | native | Rivet | ratio | unit | Rivet exits/iter | notes |"
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- | ---: | --- |");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            fmt_stats(&r.native),
            fmt_stats(&r.rivet),
            r.ratio().map(|x| format!("{x:.2}x")).unwrap_or("–".into()),
            r.unit,
            r.exits_per_iter
                .map(|e| format!("{e:.2}"))
                .unwrap_or("".into()),
            r.note
        );
    }
    for (name, p) in profiles {
        let total = *p.get("total").unwrap_or(&0);
        let _ = writeln!(
            s,
            "\n## Exit profile: {name} under Rivet, reset → `poweroff -f` (log level 4 run)\n"
        );
        let _ = writeln!(
            s,
            "| exit reason | count | share | HS instructions (full path) | per exit |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
        let mut v: Vec<(&String, &u64)> = p
            .iter()
            .filter(|(k, _)| k.as_str() != "total" && !k.starts_with(HS))
            .collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        let cost = |k: &str, c: u64| match p.get(&format!("{HS}{k}")) {
            Some(&n) if c > 0 => format!("{n} | {:.0}", n as f64 / c as f64),
            _ => "– | –".to_string(),
        };
        for (k, c) in v {
            let _ = writeln!(
                s,
                "| {k} | {c} | {:.1}% | {} |",
                if total > 0 {
                    *c as f64 * 100.0 / total as f64
                } else {
                    0.0
                },
                cost(k, *c)
            );
        }
        let _ = writeln!(s, "| **total** | {total} | | {} |", cost("total", total));
        let _ = writeln!(
            s,
            "\nHS instructions: retired instructions from a full-path exit to the guest's re-entry \
             (fast-path exits, i.e. SBI Base and UART byte accesses, are not timed: see the \
             micro-benchmark rows; \"per exit\" divides by every exit of the reason, fast-path \
             ones included, so it understates mmio.uart and sbi.base); under -icount `instret` \
             counts every hart, so multi-hart figures include the other harts' work meanwhile."
        );
    }
    let _ = writeln!(s, "\n## Goals (reported, not asserted)\n");
    let _ = writeln!(s, "| goal | measured | met |");
    let _ = writeln!(s, "| --- | --- | --- |");
    for g in goals {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "–",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", g.goal, g.value);
    }
    let _ = writeln!(s, "\n## Notes\n");
    for n in notes {
        let _ = writeln!(s, "- {n}");
    }
    let _ = writeln!(s, "- Whole benchmark: {wall:.0} s wall clock.");
    s
}

#[allow(clippy::too_many_arguments)]
fn json(
    rows: &[Row],
    profiles: &BTreeMap<String, BTreeMap<String, u64>>,
    detail: &BTreeMap<String, BTreeMap<String, i64>>,
    goals: &[Goal],
    notes: &[String],
    runs: usize,
    wall: f64,
    qemu: &str,
) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(s, "  \"generator\": \"cargo xtask bench\",");
    let _ = writeln!(s, "  \"qemu\": {},", json_str(qemu));
    let _ = writeln!(s, "  \"icount\": \"shift=0,sleep=off\",");
    let _ = writeln!(s, "  \"runs\": {runs},");
    let _ = writeln!(s, "  \"wall_clock_s\": {},", json_num(wall));
    s.push_str("  \"metrics\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"key\": {}, \"label\": {}, \"unit\": {}, \"native\": {}, \"rivet\": {}, \"ratio\": {}, \"rivet_exits_per_iter\": {}, \"note\": {}}}",
            json_str(&r.key),
            json_str(&r.label),
            json_str(&r.unit),
            json_stats(&r.native),
            json_stats(&r.rivet),
            r.ratio().map(json_num).unwrap_or("null".into()),
            r.exits_per_iter.map(json_num).unwrap_or("null".into()),
            json_str(&r.note)
        );
        s.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ],\n  \"exit_profiles\": {");
    let items: Vec<String> = profiles
        .iter()
        .map(|(k, p)| format!("\n    {}: {}", json_str(k), json_map(p)))
        .collect();
    s.push_str(&items.join(","));
    s.push_str("\n  },\n  \"exits_by_benchmark\": {");
    let items: Vec<String> = detail
        .iter()
        .map(|(k, d)| {
            let inner: Vec<String> = d
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(a, v)| format!("{}: {v}", json_str(a)))
                .collect();
            format!("\n    {}: {{{}}}", json_str(k), inner.join(", "))
        })
        .collect();
    s.push_str(&items.join(","));
    s.push_str("\n  },\n  \"goals\": [");
    let items: Vec<String> = goals
        .iter()
        .map(|g| {
            format!(
                "\n    {{\"goal\": {}, \"value\": {}, \"met\": {}}}",
                json_str(&g.goal),
                json_str(&g.value),
                g.met.map(|m| m.to_string()).unwrap_or("null".into())
            )
        })
        .collect();
    s.push_str(&items.join(","));
    s.push_str("\n  ],\n  \"notes\": [");
    let items: Vec<String> = notes
        .iter()
        .map(|n| format!("\n    {}", json_str(n)))
        .collect();
    s.push_str(&items.join(","));
    s.push_str("\n  ]\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines() {
        let b =
            parse_bench_line("bench sbi.null iters=1000 instret_per_iter=308.0 ns_per_iter=308.5")
                .unwrap();
        assert_eq!(b.name, "sbi.null");
        assert_eq!(b.iters, 1000);
        assert_eq!(b.instret, Some(308.0));
        assert_eq!(b.ns, Some(308.5));
        assert_eq!(b.na, None);
        let b = parse_bench_line(
            "[vm0] bench hsm.start iters=100 instret_per_iter=n/a ns_per_iter=505038.0",
        )
        .unwrap();
        assert_eq!(
            (b.name.as_str(), b.instret, b.ns),
            ("hsm.start", None, Some(505038.0))
        );
        let b = parse_bench_line("bench trap.virtual n/a reason=hstatus-readable").unwrap();
        assert_eq!(b.na.as_deref(), Some("hstatus-readable"));
        assert!(parse_bench_line("bench: start timebase=10000000 vcpus=2 hart=0").is_none());
        assert!(parse_bench_line("bench: done").is_none());
        assert!(parse_bench_line("no benchmark here").is_none());
        assert!(parse_bench_line("bench x iters=abc instret_per_iter=1 ns_per_iter=1").is_none());
    }

    #[test]
    fn printk_stamps() {
        assert_eq!(
            parse_printk_stamp("[    0.094045] Run /init as init process"),
            Some(0.094045)
        );
        assert_eq!(parse_printk_stamp("[   12.500000] x"), Some(12.5));
        assert_eq!(parse_printk_stamp("[rivet] INFO starting"), None);
        assert_eq!(parse_printk_stamp("no stamp"), None);
        let out = "[    0.000000] Linux version\n[    0.120000] Run /init as init process\nguest: init ready\n";
        assert_eq!(printk_stamp_of(out, "Run /init"), Some(0.12));
        assert_eq!(printk_stamp_of(out, "missing"), None);
    }

    #[test]
    fn rdtime_lines() {
        let out = "bench: init-start rdtime=1234567\r\nx\nbench: init-ready rdtime=2345678\n";
        assert_eq!(parse_rdtime(out, "init-start"), Some(1234567));
        assert_eq!(parse_rdtime(out, "init-ready"), Some(2345678));
        assert_eq!(parse_rdtime(out, "other"), None);
    }

    #[test]
    fn hs_profile_lines() {
        let out = "[rivet]    exits: total=3 wfi=2 mmio.plic=1\n\
                   [rivet]    hs-instructions (full-path exits): total=1500 wfi=900 mmio.plic=600\n";
        let hs = hs_profile_of(out).unwrap();
        assert_eq!((hs["total"], hs["wfi"], hs["mmio.plic"]), (1500, 900, 600));
        // The exits line is still the exit profile; the HS line is not one.
        assert_eq!(exit_profile_of(out).unwrap()["total"], 3);
        assert!(parse_hs_profile("[rivet]    exits: total=3").is_none());
    }

    #[test]
    fn exit_profile_lines() {
        let l = "[rivet]    exits: total=1234 sbi.time=10 sbi.dbcn=4 mmio.uart=1000 mmio.plic=3 mmio.unclaimed=0 wfi=200 \
                 virtual_insn=1 irq.timer=16 irq.ext=0 irq.soft=0 other=0";
        let p = parse_exit_profile(l).unwrap();
        assert_eq!(p["total"], 1234);
        assert_eq!(p["sbi.time"], 10);
        assert_eq!(p["mmio.uart"], 1000);
        assert_eq!(p["irq.timer"], 16);
        assert!(parse_exit_profile("[rivet] INFO all VMs stopped").is_none());
        assert!(parse_exit_profile("exits: total=x").is_none());
        let out = format!("{l}\n[rivet]    exits: total=5 wfi=5\n");
        assert_eq!(exit_profile_of(&out).unwrap()["total"], 5);
        let a = parse_exit_profile("exits: total=1010 sbi.base=1000 sbi.dbcn=10").unwrap();
        let b = parse_exit_profile("exits: total=8 sbi.dbcn=8").unwrap();
        let d = profile_diff(&a, &b);
        assert_eq!(d["sbi.base"], 1000);
        assert_eq!(exits_excluding_console(&d), 1000);
    }

    #[test]
    fn median_and_spread() {
        let s = stats(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.values, vec![3.0, 1.0, 2.0]);
        let s = stats(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert!((s.spread() - 3.0).abs() < 1e-12);
        let s = stats(&[7.0, 7.0, 7.0]).unwrap();
        assert_eq!((s.median, s.spread()), (7.0, 0.0));
        assert!(stats(&[]).is_none());
        assert!(stats(&[f64::NAN]).is_none());
        assert_eq!(fmt_stats(&Some(stats(&[5.0, 5.0]).unwrap())), "5.00");
        assert_eq!(
            fmt_stats(&Some(stats(&[100.0, 120.0, 110.0]).unwrap())),
            "110 (100–120)"
        );
        assert_eq!(fmt_stats(&None), "n/a");
    }

    /// A minimal XML well-formedness check: balanced, properly nested tags,
    /// quoted attributes, no stray `<` or `&`.
    fn well_formed(x: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = x;
        let mut roots = 0;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            if let Some(a) = text.find('&') {
                let ent = &text[a..];
                if !["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| ent.starts_with(e))
                {
                    return Err(format!("bad entity in {text:?}"));
                }
            }
            let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
            let tag = &rest[i + 1..end];
            if tag.contains('<') {
                return Err(format!("'<' inside tag {tag:?}"));
            }
            if tag.matches('"').count() % 2 != 0 {
                return Err(format!("unbalanced quotes in {tag:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("close without open: {name}"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap_or("").to_string();
                if stack.is_empty() {
                    roots += 1;
                }
                stack.push(name);
            } else if stack.is_empty() {
                roots += 1;
            }
            rest = &rest[end + 1..];
        }
        if !stack.is_empty() {
            return Err(format!("unclosed: {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    #[test]
    fn svg_is_well_formed() {
        let rows = vec![
            ChartRow {
                label: "sbi.null [instructions]".into(),
                native: Some(308.0),
                rivet: Some(120.0),
            },
            ChartRow {
                label: "a <b> & \"c\"".into(),
                native: None,
                rivet: Some(5.0),
            },
            ChartRow {
                label: "zero".into(),
                native: Some(0.0),
                rivet: Some(505038.0),
            },
        ];
        let svg = svg_chart("title & <more>", &rows);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        well_formed(&svg).unwrap();
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(svg.contains("n/a"));
        // The checker itself rejects broken documents.
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        well_formed(&svg_chart("empty", &[])).unwrap();
    }

    #[test]
    fn chart_labels() {
        let row = |key: &str, unit: &str| Row {
            key: key.into(),
            label: String::new(),
            unit: unit.into(),
            native: None,
            rivet: None,
            exits_per_iter: None,
            note: String::new(),
        };
        let r = row("linux.2.init_ready", "ms guest time");
        assert_eq!(
            (short_label(&r), short_unit(&r.unit)),
            ("linux 2 cpu: init ready".into(), "ms".into())
        );
        let r = row("timer.sbi@nosstc.instret", "instructions deadline→handler");
        assert_eq!(
            (short_label(&r), short_unit(&r.unit)),
            ("timer.sbi (no Sstc)".into(), "instructions".into())
        );
        assert_eq!(short_unit("instructions/round trip"), "instructions");
        let r = row("net.tcp.mibs", "MiB/s guest time");
        assert_eq!(
            (short_label(&r), short_unit(&r.unit)),
            ("net.tcp (Rivet only)".into(), "MiB/s".into())
        );
        assert_eq!(
            short_label(&row("io.probe.us", "µs guest time")),
            "io.probe"
        );
    }

    #[test]
    fn micro_keys() {
        assert_eq!(micro_key("rivet-1", "sbi.null"), "sbi.null");
        assert_eq!(micro_key("native-2", "sbi.null"), "sbi.null@2harts");
        assert_eq!(micro_key("rivet-2", "ipi.pingpong"), "ipi.pingpong");
        assert_eq!(micro_key("native-nosstc", "timer.sbi"), "timer.sbi@nosstc");
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(json_num(f64::NAN), "null");
        assert_eq!(json_num(1.5), "1.5");
    }

    #[test]
    fn io_lines() {
        // The typed command line (`bench""-io`) never matches; the output does.
        let out = "/ # a=$(/rdtime); dd if=/dev/zero of=/dev/vda; b=$(/rdtime); echo \"bench\"\"-io write-direct $a $b\"\r\n\
                   bench-io write-direct 1716938 2053672\r\n\
                   [alpha] bench-io tcp-recv-end 99\n\
                   bench-io broken x y\n";
        assert_eq!(parse_io(out, "write-direct"), Some(vec![1716938, 2053672]));
        assert_eq!(io_interval(out, "write-direct"), Some(2053672 - 1716938));
        assert_eq!(parse_io(out, "tcp-recv-end"), Some(vec![99]));
        assert_eq!(io_interval(out, "tcp-recv-end"), None);
        assert_eq!(parse_io(out, "broken"), None);
        assert_eq!(parse_io(out, "write"), None);
        assert_eq!(io_interval("bench-io back 5 3\n", "back"), None);
        let t = timed("probe", ":");
        assert!(t.ends_with('\n'));
        assert!(t.contains("bench\"\"-io probe $a $b") && !t.contains("bench-io"));
    }

    #[test]
    fn ping_and_rates() {
        let out = "[beta] PING 10.0.0.1 (10.0.0.1): 56 data bytes\n\
                   [beta] 64 bytes from 10.0.0.1: seq=0 ttl=64 time=0.812 ms\n\
                   [beta] 64 bytes from 10.0.0.1: seq=1 ttl=64 time=0.126 ms\n\
                   [beta] round-trip min/avg/max = 0.126/0.469/0.812 ms\n";
        assert_eq!(parse_ping_rtts(out), vec![0.812, 0.126]);
        assert!(parse_ping_rtts("64 bytes from x: seq=0 ttl=64\n").is_empty());
        // 32 MiB in 0.1 s of a 10 MHz time CSR.
        let r = mib_per_s(32 << 20, 1_000_000.0, 10_000_000.0).unwrap();
        assert!((r - 320.0).abs() < 1e-9);
        assert_eq!(mib_per_s(1, 0.0, 1.0), None);
        assert_eq!(short_unit("MiB/s guest time"), "MiB/s");
        assert_eq!(short_unit("µs guest time"), "µs");
    }

    #[test]
    fn net_config_is_valid() {
        let dir = std::env::temp_dir();
        let text = net_config(&dir.join("Image"), &dir.join("initramfs.cpio"));
        let cfg = rivet_config::parse(&text, &dir.join("net.toml"))
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        assert_eq!(cfg.harts, 2);
        assert_eq!(cfg.vms.len(), 2);
        assert_eq!(cfg.vms[0].name, "alpha");
        assert!(cfg.vms[0].console && !cfg.vms[1].console);
        assert_eq!(cfg.vms[1].pin.as_deref(), Some(&[1u32][..]));
        assert!(cfg
            .vms
            .iter()
            .all(|v| v.nics.len() == 1 && v.nics[0].network == "lan"));
    }

    #[test]
    fn options() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_opts(&[]).unwrap();
        assert!(o.micro && o.linux_boot && o.io && o.runs == 3);
        let o = parse_opts(&args(&["--no-io"])).unwrap();
        assert!(o.micro && o.linux_boot && !o.io);
        let o = parse_opts(&args(&["--io-only", "--runs", "2"])).unwrap();
        assert!(!o.micro && !o.exits && !o.linux_boot && o.io && o.runs == 2);
        assert!(parse_opts(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn init_overlay() {
        let init = bench_init(DEFAULT_INIT);
        let lines: Vec<&str> = init.lines().collect();
        assert_eq!(lines[0], "#!/bin/busybox sh");
        assert!(lines[1].contains("init-start") && lines[1].contains("/rdtime"));
        let ready = lines
            .iter()
            .position(|l| l.starts_with("echo \"guest: init ready"))
            .unwrap();
        assert!(lines[ready - 1].contains("init-ready") && lines[ready - 1].contains("/rdtime"));
        let c = cpio_newc(&[("init", 0o100755, init.as_bytes())]);
        assert!(c.starts_with(b"070701"));
        assert_eq!(c.len() % 4, 0);
        let trailer = b"TRAILER!!!\0";
        assert!(c.windows(trailer.len()).any(|w| w == trailer));
        let elf = rdtime_elf();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf.len(), 120 + 4 * RDTIME_CODE.len());
        assert_eq!(
            u64::from_le_bytes(elf[24..32].try_into().unwrap()),
            0x10000 + 120
        );
    }
}
