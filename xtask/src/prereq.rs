//! Checks what Rivet needs on the host and installs what is missing from
//! Debian packages (QEMU 10 and OpenSBI from bookworm-backports, the
//! riscv64 Rust target through rustup), saying what it does. Where it
//! cannot install (not root, no apt), it stops with the exact commands.

use std::path::Path;
use std::process::Command;

const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/rivet-bookworm-backports.list";
const MIN_QEMU: (u32, u32) = (8, 2);

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn qemu_version() -> Option<(u32, u32)> {
    let out = Command::new("qemu-system-riscv64")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run_step(what: &str, cmd: &str) -> Result<(), String> {
    eprintln!("xtask: {what}: {cmd}");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!("`{cmd}` failed"))
    }
}

fn apt_install(packages: &[&str], backports: bool) -> Result<(), String> {
    let manual = format!(
        "{}apt-get update && apt-get install -y {}{}",
        if backports {
            "echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list && "
        } else {
            ""
        },
        if backports {
            "-t bookworm-backports "
        } else {
            ""
        },
        packages.join(" ")
    );
    if !is_root() || !have("apt-get") {
        return Err(format!(
            "missing host packages {packages:?}; install them as root with:\n    {manual}"
        ));
    }
    if backports && !Path::new(BACKPORTS_LIST).exists() && !backports_configured() {
        std::fs::write(
            BACKPORTS_LIST,
            "deb http://deb.debian.org/debian bookworm-backports main\n",
        )
        .map_err(|e| format!("cannot write {BACKPORTS_LIST}: {e}; run:\n    {manual}"))?;
        eprintln!("xtask: added the bookworm-backports apt source ({BACKPORTS_LIST})");
    }
    run_step(
        "updating package lists",
        "DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null",
    )
    .map_err(|e| format!("{e}; run:\n    {manual}"))?;
    run_step(
        "installing",
        &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q {}{} >/dev/null",
            if backports {
                "-t bookworm-backports "
            } else {
                ""
            },
            packages.join(" ")
        ),
    )
    .map_err(|e| format!("{e}; run:\n    {manual}"))
}

fn backports_configured() -> bool {
    Command::new("sh")
        .arg("-c")
        .arg("grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// QEMU (riscv64 system emulator, new enough) and OpenSBI firmware.
pub fn ensure_qemu() -> Result<(), String> {
    match qemu_version() {
        Some(v) if v >= MIN_QEMU => return Ok(()),
        Some(v) => eprintln!(
            "xtask: QEMU {}.{} is too old (need {}.{}+, e.g. 10 from bookworm-backports)",
            v.0, v.1, MIN_QEMU.0, MIN_QEMU.1
        ),
        None => eprintln!("xtask: qemu-system-riscv64 not found"),
    }
    apt_install(&["qemu-system-riscv", "opensbi"], true)?;
    match qemu_version() {
        Some(v) if v >= MIN_QEMU => Ok(()),
        _ => Err("QEMU still missing or too old after installing qemu-system-riscv from bookworm-backports".into()),
    }
}

/// The bare-metal Rust target.
pub fn ensure_rust_target() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("riscv64gc-unknown-none-elf") => Ok(()),
        Ok(_) => run_step("adding the Rust target", "rustup target add riscv64gc-unknown-none-elf")
            .map_err(|e| format!("{e}; run: rustup target add riscv64gc-unknown-none-elf")),
        Err(_) => Err("rustup not found: install Rust with rustup, then run: rustup target add riscv64gc-unknown-none-elf".into()),
    }
}

/// Host tools for building guests and disk images (cross gcc, dtc...).
pub fn ensure_packages(cmds_and_pkgs: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<&str> = cmds_and_pkgs
        .iter()
        .filter(|(c, _)| !have(c))
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, false)
}

/// Development libraries (checked with dpkg) for crates that link C code.
pub fn ensure_dev_libs(pkgs: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, false)
}
