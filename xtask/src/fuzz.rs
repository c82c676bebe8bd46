//! `cargo xtask fuzz [TARGET] [--seconds N] [--smoke]`: runs the libFuzzer
//! targets of `fuzz/` (its own cargo workspace, built by `cargo fuzz` on the
//! nightly toolchain) one after the other, and reports per target how many
//! inputs ran, for how long, and whether it crashed.
//!
//! * Each target runs for `--seconds` (default 600) with `-rss_limit_mb=2048`,
//!   starting from its working corpus `fuzz/corpus/<target>/` (kept between
//!   runs, not in git) and the hand-made seeds in `fuzz/seeds/<target>/`.
//! * `--smoke`: 20 seconds per target.
//! * Every file in `fuzz/regressions/<target>/` (inputs that once crashed a
//!   crate, kept after the fix) is replayed too; one that crashes again
//!   fails the target.
//! * One job at a time: the machines have two cores shared with other work.
//!
//! Prints `N passed, M failed` (targets) last; exits 1 if any target
//! crashed or could not run.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_SECONDS: u64 = 600;
const SMOKE_SECONDS: u64 = 20;
/// An input running this long is reported as a hang (a crash).
const UNIT_TIMEOUT_SECONDS: u64 = 25;

fn usage() -> &'static str {
    "usage: cargo xtask fuzz [TARGET] [--seconds N] [--smoke]\n\
     \x20 TARGET       one of the targets in fuzz/fuzz_targets/ (default: all, one after the other)\n\
     \x20 --seconds N  fuzzing time per target (default 600)\n\
     \x20 --smoke      20 seconds per target\n\
     \x20 Files in fuzz/regressions/<target>/ are always replayed as well.\n"
}

struct Opts {
    target: Option<String>,
    seconds: u64,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut target = None;
    let mut seconds = None;
    let mut smoke = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("--seconds takes a number of seconds, not {v:?}"))?;
                if n == 0 {
                    return Err("--seconds must be at least 1".into());
                }
                seconds = Some(n);
            }
            "--smoke" => smoke = true,
            "-h" | "--help" => return Err(usage().into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s:?}\n{}", usage())),
            s if target.is_none() => target = Some(s.to_string()),
            s => {
                return Err(format!(
                    "only one target can be named (got {s:?} too)\n{}",
                    usage()
                ))
            }
        }
    }
    let seconds = match (seconds, smoke) {
        (Some(n), _) => n,
        (None, true) => SMOKE_SECONDS,
        (None, false) => DEFAULT_SECONDS,
    };
    Ok(Opts { target, seconds })
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The targets: `fuzz/fuzz_targets/*.rs`, sorted.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>, String> {
    let dir = fuzz_dir.join("fuzz_targets");
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no fuzz targets in {}", dir.display()));
    }
    Ok(names)
}

/// `cargo` for the fuzz workspace: nightly, without what the outer
/// `cargo xtask` (stable, pinned by rust-toolchain.toml) put in the
/// environment.
fn nightly_cargo(dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly").current_dir(dir);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        c.env_remove(var);
    }
    c
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The nightly toolchain and `cargo fuzz`, installed when missing.
fn ensure_tools(root: &Path) -> Result<(), String> {
    let mut probe = Command::new("rustup");
    probe
        .args(["run", "nightly", "rustc", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN");
    if !succeeds(&mut probe) {
        eprintln!("xtask: the nightly toolchain (needed by cargo fuzz) is missing; installing it with `rustup toolchain install nightly --profile minimal`...");
        let ok = Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("cannot install the nightly toolchain; run `rustup toolchain install nightly --profile minimal`".into());
        }
    }
    if !succeeds(nightly_cargo(root).args(["fuzz", "--version"])) {
        eprintln!("xtask: cargo-fuzz is not installed; installing it with `cargo install cargo-fuzz --locked` (this takes a few minutes)...");
        let ok = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .current_dir(root)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("`cargo install cargo-fuzz --locked` failed".into());
        }
        eprintln!("xtask: cargo-fuzz installed");
    }
    Ok(())
}

/// What one libFuzzer invocation did.
#[derive(Default)]
struct RunStats {
    runs: Option<u64>,
    crashes: u32,
    artifacts: Vec<String>,
    success: bool,
    /// Regression files executed.
    replayed: u32,
    tail: VecDeque<String>,
}

/// Runs `cmd`, echoing libFuzzer's progress lines (not every new input),
/// and collects the numbers it prints.
fn run_libfuzzer(cmd: &mut Command, label: &str) -> Result<RunStats, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let echo_out = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.push(line);
        }
        lines
    });
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let mut st = RunStats::default();
    let mut last_echo = Instant::now();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let t = line.trim_start();
        if let Some(v) = t.strip_prefix("stat::number_of_executed_units:") {
            st.runs = v.trim().parse().ok();
        } else if let Some(rest) = t.strip_prefix("Done ") {
            // "Done 123456 runs in 60 second(s)"
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                st.runs.get_or_insert(n);
            }
        }
        if t.starts_with("Executed ") {
            st.replayed += 1;
        }
        if let Some(pos) = t.find("Test unit written to ") {
            st.crashes += 1;
            st.artifacts
                .push(t[pos + "Test unit written to ".len()..].trim().to_string());
        }
        let progress = t.contains("INITED")
            || (t.starts_with('#') && last_echo.elapsed() >= Duration::from_secs(30));
        let important = t.contains("ERROR:")
            || t.contains("panicked at")
            || t.starts_with("SUMMARY")
            || t.contains("Test unit written")
            || t.starts_with("error");
        if progress || important {
            eprintln!("xtask: [{label}] {t}");
            if progress {
                last_echo = Instant::now();
            }
        }
        st.tail.push_back(line);
        if st.tail.len() > 80 {
            st.tail.pop_front();
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cargo fuzz did not finish: {e}"))?;
    for line in echo_out.join().unwrap_or_default() {
        st.tail.push_back(line);
    }
    st.success = status.success();
    Ok(st)
}

struct Report {
    target: String,
    runs: Option<u64>,
    seconds: f64,
    crashes: u32,
    replayed: usize,
    ok: bool,
    note: String,
}

fn regression_files(fuzz_dir: &Path, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir.join("regressions").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn print_tail(st: &RunStats) {
    eprintln!("xtask: ---- last lines of the run ----");
    for l in &st.tail {
        eprintln!("{l}");
    }
    eprintln!("xtask: --------------------------------");
}

fn fuzz_one(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Report, String> {
    let mut report = Report {
        target: target.to_string(),
        runs: None,
        seconds: 0.0,
        crashes: 0,
        replayed: 0,
        ok: true,
        note: String::new(),
    };

    // 1. Known crashers stay fixed.
    let files = regression_files(fuzz_dir, target);
    if !files.is_empty() {
        eprintln!(
            "xtask: [{target}] replaying {} regression input(s) from fuzz/regressions/{target}/",
            files.len()
        );
        let mut cmd = nightly_cargo(fuzz_dir);
        cmd.args(["fuzz", "run", target])
            .args(&files)
            .arg("--")
            .arg("-rss_limit_mb=2048");
        let st = run_libfuzzer(&mut cmd, target)?;
        report.replayed = st.replayed as usize;
        if !st.success || st.crashes > 0 {
            print_tail(&st);
            report.ok = false;
            report.crashes += st.crashes.max(1);
            report.note = "a regression input crashes again".into();
            return Ok(report);
        }
    }

    // 2. Fuzz.
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
    let seeds = fuzz_dir.join("seeds").join(target);
    let mut cmd = nightly_cargo(fuzz_dir);
    cmd.args(["fuzz", "run", target]).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--").args([
        format!("-max_total_time={seconds}"),
        "-rss_limit_mb=2048".to_string(),
        format!("-timeout={UNIT_TIMEOUT_SECONDS}"),
        "-print_final_stats=1".to_string(),
    ]);
    eprintln!("xtask: [{target}] fuzzing for {seconds} s");
    let start = Instant::now();
    let st = run_libfuzzer(&mut cmd, target)?;
    report.seconds = start.elapsed().as_secs_f64();
    report.runs = st.runs;
    report.crashes += st.crashes;
    if st.crashes > 0 {
        print_tail(&st);
        report.ok = false;
        report.note = format!(
            "crash input: {} (reproduce: cd fuzz && cargo +nightly fuzz run {target} <file>)",
            st.artifacts.join(", ")
        );
    } else if !st.success {
        print_tail(&st);
        report.ok = false;
        report.note = "cargo fuzz failed (see above)".into();
    }
    Ok(report)
}

pub fn fuzz(args: &[String]) -> Result<u8, String> {
    let opts = parse_args(args)?;
    let root = root();
    let fuzz_dir = root.join("fuzz");
    let all = targets(&fuzz_dir)?;
    let chosen: Vec<String> = match &opts.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => {
            return Err(format!(
                "unknown fuzz target {t:?}; targets: {}",
                all.join(", ")
            ))
        }
        None => all,
    };
    ensure_tools(&root)?;

    // Build everything first, so the time budget goes to fuzzing.
    eprintln!("xtask: building fuzz targets (cargo +nightly fuzz build)");
    let mut build = nightly_cargo(&fuzz_dir);
    build.args(["fuzz", "build"]);
    if let [one] = chosen.as_slice() {
        build.arg(one);
    }
    let ok = build.status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        println!("0 passed, {} failed", chosen.len());
        return Err("building the fuzz targets failed".into());
    }

    let mut reports = Vec::new();
    for t in &chosen {
        let r = fuzz_one(&fuzz_dir, t, opts.seconds)?;
        eprintln!(
            "xtask: [{t}] {} runs in {:.0} s, {} crash(es){}",
            r.runs.map_or("?".to_string(), |n| n.to_string()),
            r.seconds,
            r.crashes,
            if r.ok {
                String::new()
            } else {
                format!(": {}", r.note)
            }
        );
        reports.push(r);
    }

    println!();
    println!(
        "{:<16} {:>12} {:>8} {:>8} {:>11}  result",
        "target", "runs", "time", "crashes", "regressions"
    );
    for r in &reports {
        println!(
            "{:<16} {:>12} {:>7.0}s {:>8} {:>11}  {}",
            r.target,
            r.runs.map_or("?".to_string(), |n| n.to_string()),
            r.seconds,
            r.crashes,
            r.replayed,
            if r.ok {
                "ok".to_string()
            } else {
                format!("FAILED: {}", r.note)
            }
        );
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    println!("{} passed, {} failed", reports.len() - failed, failed);
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse_args(&args(&[])).unwrap();
        assert_eq!((o.target, o.seconds), (None, DEFAULT_SECONDS));
        let o = parse_args(&args(&["--smoke"])).unwrap();
        assert_eq!(o.seconds, SMOKE_SECONDS);
        let o = parse_args(&args(&["gstage", "--seconds", "7"])).unwrap();
        assert_eq!((o.target.as_deref(), o.seconds), (Some("gstage"), 7));
        let o = parse_args(&args(&["--smoke", "--seconds", "3"])).unwrap();
        assert_eq!(o.seconds, 3);
        assert!(parse_args(&args(&["--seconds"])).is_err());
        assert!(parse_args(&args(&["--seconds", "0"])).is_err());
        assert!(parse_args(&args(&["--seconds", "x"])).is_err());
        assert!(parse_args(&args(&["a", "b"])).is_err());
        assert!(parse_args(&args(&["--jobs"])).is_err());
    }

    #[test]
    fn targets_are_the_fuzz_target_files() {
        let t = targets(&root().join("fuzz")).unwrap();
        for name in [
            "config",
            "devtree",
            "gstage",
            "insn_decode",
            "sbi_dispatch",
            "virtqueue",
            "vplic_uart",
            "bundle_loader",
        ] {
            assert!(t.iter().any(|x| x == name), "{name} missing from {t:?}");
        }
    }
}
