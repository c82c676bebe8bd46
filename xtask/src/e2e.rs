//! `cargo xtask test`: host unit tests, then end-to-end suites that boot
//! QEMU and assert on what the guests print and on how QEMU exits.
//! Logs of every run go to target/e2e/<name>.log.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::images;
use crate::qemu::Session;
use crate::RunOpts;

const T_BOOT: Duration = Duration::from_secs(60);

/// The Linux Image and busybox initramfs: the project's own build
/// (target/guests) if there is one, else the known-good prebuilt copies in
/// ../shared/guests when present, else built now (`cargo xtask guest linux`).
pub fn linux_images() -> Result<(PathBuf, PathBuf), String> {
    let shared = images::root().join("../shared/guests");
    let own = crate::guest_build::out_dir();
    for dir in [own, shared] {
        let k = dir.join(crate::guest_build::IMAGE_NAME);
        let i = dir.join(crate::guest_build::INITRAMFS_NAME);
        if k.exists() && i.exists() {
            return Ok((k, i));
        }
    }
    eprintln!("xtask: no Linux guest images yet; building them (cargo xtask guest linux)");
    let imgs = crate::guest_build::build_linux(&Default::default())?;
    Ok((imgs.image, imgs.initramfs))
}

struct Case {
    name: &'static str,
    run: fn(&str) -> Result<(), String>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "testkernel-suite",
            run: |n| testkernel_suite(n, RunOpts::default(), None),
        },
        Case {
            name: "testkernel-suite-smp2-hosts",
            run: |n| {
                testkernel_suite(
                    n,
                    RunOpts {
                        harts: 2,
                        ..RunOpts::default()
                    },
                    None,
                )
            },
        },
        Case {
            name: "testkernel-suite-no-sstc",
            run: |n| {
                testkernel_suite(
                    n,
                    RunOpts {
                        sstc: false,
                        ..RunOpts::default()
                    },
                    None,
                )
            },
        },
        Case {
            name: "testkernel-suite-2vcpus",
            run: |n| {
                testkernel_suite(
                    n,
                    RunOpts {
                        vcpus: 2,
                        ..RunOpts::default()
                    },
                    Some("hsm: hart_start runs vCPU 1"),
                )
            },
        },
        Case {
            name: "testkernel-suite-2vcpus-no-sstc",
            run: |n| {
                testkernel_suite(
                    n,
                    RunOpts {
                        vcpus: 2,
                        sstc: false,
                        harts: 2,
                        ..RunOpts::default()
                    },
                    Some("ipi: vCPU 1 interrupts vCPU 0"),
                )
            },
        },
        Case {
            name: "linux-shell",
            run: |n| {
                linux_shell(
                    n,
                    RunOpts {
                        guest: "linux".into(),
                        ..RunOpts::default()
                    },
                )
            },
        },
        Case {
            name: "linux-shell-no-sstc",
            run: |n| {
                linux_shell(
                    n,
                    RunOpts {
                        guest: "linux".into(),
                        sstc: false,
                        ..RunOpts::default()
                    },
                )
            },
        },
        Case {
            name: "linux-shell-2vcpus",
            run: |n| {
                linux_shell(
                    n,
                    RunOpts {
                        guest: "linux".into(),
                        vcpus: 2,
                        ..RunOpts::default()
                    },
                )
            },
        },
        Case {
            name: "linux-shell-2vcpus-no-sstc",
            run: |n| {
                linux_shell(
                    n,
                    RunOpts {
                        guest: "linux".into(),
                        vcpus: 2,
                        sstc: false,
                        ..RunOpts::default()
                    },
                )
            },
        },
        Case {
            name: "linux-reboot",
            run: linux_reboot,
        },
        Case {
            name: "linux-smp4-pinned",
            run: linux_smp4_pinned,
        },
        Case {
            name: "linux-4vcpus-on-2-harts",
            run: linux_oversubscribed,
        },
        Case {
            name: "multi-vm-consoles",
            run: multi_vm_consoles,
        },
        Case {
            name: "vm-crash-isolated",
            run: vm_crash_isolated,
        },
        Case {
            name: "hostile-guest-isolated",
            run: hostile_guest,
        },
        Case {
            name: "hostile-guest-2vcpus-no-sstc",
            run: |n| {
                testkernel_suite(
                    n,
                    RunOpts {
                        vcpus: 2,
                        harts: 2,
                        sstc: false,
                        append: Some("mode=hostile".into()),
                        ..RunOpts::default()
                    },
                    None,
                )
            },
        },
        Case {
            name: "config-errors-name-lines",
            run: config_errors,
        },
        Case {
            name: "virtio-blk-ext4-persists",
            run: virtio_blk_ext4,
        },
        Case {
            name: "virtio-blk-windows-isolated",
            run: virtio_blk_windows,
        },
        Case {
            name: "virtio-blk-read-only",
            run: virtio_blk_read_only,
        },
        Case {
            name: "virtio-net-switch",
            run: virtio_net_switch,
        },
        Case {
            name: "virtio-net-uplink-host-forward",
            run: virtio_net_uplink,
        },
        Case {
            name: "virtio-fs-host-directory",
            run: virtio_fs_host_dir,
        },
        Case {
            name: "virtio-fs-two-vms-share",
            run: virtio_fs_two_vms,
        },
        Case {
            name: "soak-short",
            run: soak_short,
        },
        Case {
            name: "fuzz-smoke",
            run: |_| fuzz_smoke(),
        },
        Case {
            name: "guest-rng-seeds-differ",
            run: guest_rng_seeds,
        },
        Case {
            name: "reboot-clears-guest-ram",
            run: reboot_clears_ram,
        },
        Case {
            name: "crashing-guest-is-stopped",
            run: crashing_guest,
        },
        Case {
            name: "bad-image-is-refused",
            run: bad_image,
        },
        Case {
            name: "cpu-without-h-is-refused",
            run: no_h,
        },
    ]
}

fn save_log(name: &str, s: &Session) {
    let dir = images::root().join("target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.log")), s.output());
}

fn start(name: &str, opts: &RunOpts) -> Result<Session, String> {
    let m = crate::prepare(opts, name)?;
    Session::spawn(m.command())
}

/// Runs `body`; on error appends the tail of the guest output.
fn with_session(
    name: &str,
    opts: &RunOpts,
    body: impl FnOnce(&mut Session) -> Result<(), String>,
) -> Result<(), String> {
    let mut s = start(name, opts)?;
    let r = body(&mut s);
    finish(name, &mut s, r)
}

fn no_panic(s: &Session) -> Result<(), String> {
    if s.output().contains("PANIC") {
        return Err("the hypervisor panicked".into());
    }
    Ok(())
}

fn testkernel_suite(name: &str, opts: RunOpts, must_contain: Option<&str>) -> Result<(), String> {
    with_session(name, &opts, |s| {
        s.expect("Hi!", T_BOOT)?;
        s.expect(" passed, ", T_BOOT)?;
        let st = s.wait_exit(T_BOOT)?;
        let out = s.output();
        let summary = out
            .lines()
            .find(|l| l.contains(" passed, ") && l.contains(" failed"))
            .unwrap_or("");
        let (p, f) = parse_summary(summary).ok_or(format!("no summary line in {summary:?}"))?;
        if f != 0 || out.contains("not ok") {
            return Err(format!("guest suite reported failures: {summary}"));
        }
        if p < 30 {
            return Err(format!("only {p} guest checks ran"));
        }
        if let Some(m) = must_contain {
            if !out.contains(&format!("- {m}")) {
                return Err(format!("missing check {m:?}"));
            }
        }
        no_panic(s)?;
        if !st.success() {
            return Err(format!(
                "QEMU exited with {st} after a clean guest shutdown"
            ));
        }
        Ok(())
    })
}

const T_LINUX: Duration = Duration::from_secs(240);
const T_CMD: Duration = Duration::from_secs(60);

fn linux_opts(mut o: RunOpts) -> RunOpts {
    if o.memory_mb < 512 {
        o.memory_mb = 512;
    }
    o
}

/// Boots Linux to its shell and runs commands on the console.
fn linux_shell(name: &str, opts: RunOpts) -> Result<(), String> {
    let vcpus = opts.vcpus;
    with_session(name, &linux_opts(opts), |s| {
        s.expect(&format!("guest: init ready, {vcpus} cpu(s)"), T_LINUX)?;
        s.send("echo Hello $((6*7)) World\n")?;
        s.expect("Hello 42 World", T_CMD)?;
        // Markers are built by the shell ("" splits them in the echoed
        // command line), so a match means the command really ran.
        s.send(
            "cat /proc/cpuinfo; echo CPUS=$(grep -c ^processor /proc/cpuinfo) cpuinfo\"\"-done\n",
        )?;
        s.expect("isa", T_CMD)?;
        s.expect(&format!("CPUS={vcpus} cpuinfo-done"), T_CMD)?;
        s.send("ls /; echo ls\"\"-done\n")?;
        s.expect("ls-done", T_CMD)?;
        let out = s.output();
        let listing = out.rsplit("ls /;").next().unwrap_or("");
        for dir in ["bin", "dev", "proc", "sys"] {
            if !listing.contains(dir) {
                return Err(format!("`ls /` does not show {dir}"));
            }
        }
        power_off(s)
    })
}

fn linux_reboot(name: &str) -> Result<(), String> {
    let opts = linux_opts(RunOpts {
        guest: "linux".into(),
        ..RunOpts::default()
    });
    with_session(name, &opts, |s| {
        s.expect("guest: init ready", T_LINUX)?;
        s.send("reboot -f\n")?;
        s.expect("VM linux: rebooting", T_CMD)?;
        s.expect("guest: init ready", T_LINUX)?;
        s.send("echo second boot \"\"alive\n")?;
        s.expect("second boot alive", T_CMD)?;
        power_off(s)
    })
}

/// Sends `cmd`, waits for `want` (built so it does not appear in the echo).
fn ask(s: &mut Session, cmd: &str, want: &str) -> Result<(), String> {
    s.send(&format!("{cmd}\n"))?;
    s.expect(want, T_CMD)
}

fn linux_smp4_pinned(name: &str) -> Result<(), String> {
    let opts = RunOpts {
        guest: "linux".into(),
        vcpus: 4,
        harts: 4,
        pin: true,
        icount: true,
        memory_mb: 512,
        ..RunOpts::default()
    };
    with_session(name, &opts, |s| {
        s.expect("guest: init ready, 4 cpu(s)", T_LINUX)?;
        ask(s, "echo NPROC=$(nproc)", "NPROC=4")?;
        // Four busy loops; afterwards every CPU must have run user time.
        ask(
            s,
            "for i in 1 2 3 4; do (n=0; while [ $n -lt 20000 ]; do n=$((n+1)); done) & done; wait; echo work\"\"-done",
            "work-done",
        )?;
        s.send("grep '^cpu[0-9]' /proc/stat | while read c u rest; do echo USER_$c=$u; done; echo stat\"\"-done\n")?;
        s.expect("stat-done", T_CMD)?;
        let out = s.output();
        for cpu in 0..4 {
            let key = format!("USER_cpu{cpu}=");
            let v = out
                .rsplit(&key)
                .next()
                .and_then(|t| t.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok());
            match v {
                Some(n) if n > 0 => {}
                other => return Err(format!("cpu{cpu} ran no user work ({other:?})")),
            }
        }
        power_off(s)
    })
}

fn linux_oversubscribed(name: &str) -> Result<(), String> {
    let opts = RunOpts {
        guest: "linux".into(),
        vcpus: 4,
        harts: 2,
        icount: true,
        memory_mb: 512,
        ..RunOpts::default()
    };
    with_session(name, &opts, |s| {
        s.expect("guest: init ready, 4 cpu(s)", T_LINUX)?;
        ask(s, "echo NPROC=$(nproc)", "NPROC=4")?;
        ask(s, "for i in 1 2 3 4; do (n=0; while [ $n -lt 5000 ]; do n=$((n+1)); done) & done; wait; echo work\"\"-done", "work-done")?;
        power_off(s)
    })
}

/// Types `poweroff -f` into the focused VM and expects QEMU to exit 0
/// without a hypervisor panic.
fn power_off(s: &mut Session) -> Result<(), String> {
    s.send("poweroff -f\n")?;
    exits_cleanly(s)
}

/// Waits for QEMU to exit and expects status 0 without a hypervisor panic.
fn exits_cleanly(s: &mut Session) -> Result<(), String> {
    let st = s.wait_exit(T_CMD)?;
    no_panic(s)?;
    if !st.success() {
        return Err(format!("QEMU exited with {st}"));
    }
    Ok(())
}

/// Writes a file under target/e2e (configs, images) and returns its path.
fn write_e2e_file(name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf, String> {
    let dir = images::root().join("target/e2e");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| e.to_string())?;
    Ok(path)
}

fn config_session(name: &str, config: &std::path::Path) -> Result<Session, String> {
    let opts = RunOpts {
        config: Some(config.to_path_buf()),
        icount: true,
        ..RunOpts::default()
    };
    let m = crate::prepare(&opts, name)?;
    Session::spawn(m.command())
}

/// Saves the run's log; on error appends the last 30 lines of output.
fn finish(name: &str, s: &mut Session, r: Result<(), String>) -> Result<(), String> {
    save_log(name, s);
    r.map_err(|e| {
        let out = s.output();
        let tail: String = out
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        format!("{e}\n--- last output ---\n{tail}")
    })
}

/// configs/mixed.toml: two Linux VMs and a test-kernel VM at once; each
/// answers on its own console (input focus switched with Ctrl-A n); the
/// test kernel finishes and powers its VM off while the others keep going.
fn multi_vm_consoles(name: &str) -> Result<(), String> {
    let cfg = images::root().join("configs/mixed.toml");
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.expect("[tests] ", T_LINUX)?;
        s.wait_all_ready(&["web", "db"], T_LINUX)?;
        let out = s.output();
        if !out.contains("[tests] ") || !out.contains(" passed, 0 failed") {
            // The test kernel may still be running; wait for its summary.
            s.expect(" passed, 0 failed", T_LINUX)?;
        }
        s.expect("VM tests stopped: guest requested shutdown", T_LINUX)?;
        ask(&mut s, "echo web says $((40+2))", "[web] web says 42")?;
        s.send("\x01n")?;
        s.expect("console input -> VM 1", T_CMD)?;
        ask(&mut s, "echo db says $((50+5))", "[db] db says 55")?;
        s.send("\x01l")?;
        s.expect("'tests' vmid 3 Stopped", T_CMD)?;
        s.send("poweroff -f\n")?;
        s.expect("VM db stopped", T_CMD)?;
        s.send("\x010")?;
        s.expect("console input -> VM 0", T_CMD)?;
        ask(&mut s, "echo still $((1+1)) here", "[web] still 2 here")?;
        power_off(&mut s)
    })();
    finish(name, &mut s, r)
}

/// The hostile test kernel attacks the hypervisor while a Linux VM keeps
/// answering; each refused kind of action is logged at most once.
fn hostile_guest(name: &str) -> Result<(), String> {
    let cfg = write_e2e_file("hostile.toml", "[machine]\nharts = 2\n\n[[vm]]\nname = \"bystander\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\nconsole = true\n\n[[vm]]\nname = \"hostile\"\nvcpus = 2\nmemory = \"64M\"\nkernel = \"testkernel\"\nbootargs = \"mode=hostile\"\n")?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.expect("[hostile] hostile: hypervisor still answering", T_LINUX)?;
        s.expect("VM hostile stopped: guest requested shutdown", T_LINUX)?;
        let out = s.output();
        let summary = out
            .lines()
            .find(|l| l.starts_with("[hostile]") && l.contains(" passed, "))
            .unwrap_or("");
        let (p, f) = parse_summary(summary).ok_or(format!("no hostile summary in {summary:?}"))?;
        if f != 0 || p < 50 {
            return Err(format!("hostile suite: {summary}"));
        }
        s.expect("[bystander] guest: init ready", T_LINUX)?;
        ask(
            &mut s,
            "echo bystander $((6*7))",
            "[bystander] bystander 42",
        )?;
        // Rate limit: each kind of refusal at most once.
        let warns: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("VM hostile"))
            .collect();
        let mut kinds: Vec<String> = warns
            .iter()
            .map(|l| {
                l.split(':')
                    .nth(2)
                    .unwrap_or("")
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        if kinds.len() != n || n > 8 {
            return Err(format!(
                "refusals logged more than once per kind: {warns:#?}"
            ));
        }
        power_off(&mut s)
    })();
    finish(name, &mut s, r)
}

/// Every VM boots with its own /chosen/rng-seed: two test kernels each
/// check theirs (64 bytes, not zero) and print its first bytes, which must
/// differ between them.
fn guest_rng_seeds(name: &str) -> Result<(), String> {
    let vm = |n: &str| {
        format!("\n[[vm]]\nname = \"{n}\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n")
    };
    let cfg = write_e2e_file(
        "seeds.toml",
        format!("[machine]\nharts = 2\n{}{}", vm("one"), vm("two")),
    )?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        let one = line_anywhere(&s, "[one] testkernel: rng-seed of 64 bytes: ", T_BOOT)?;
        let two = line_anywhere(&s, "[two] testkernel: rng-seed of 64 bytes: ", T_BOOT)?;
        if one.len() != 16 || one == two {
            return Err(format!("seeds {one:?} and {two:?} should be distinct"));
        }
        s.expect("all VMs stopped; powering off", T_BOOT)?;
        let st = s.wait_exit(T_CMD)?;
        let out = s.output();
        for v in ["one", "two"] {
            if !out.contains(&format!("[{v}] ok 1 - dt: /chosen/rng-seed")) {
                return Err(format!("VM {v} did not pass its rng-seed check"));
            }
        }
        if out.contains("not ok") || out.matches(" passed, 0 failed").count() < 2 {
            return Err("a guest suite failed".into());
        }
        no_panic(&s)?;
        if !st.success() {
            return Err(format!("QEMU exited with {st}"));
        }
        Ok(())
    })();
    finish(name, &mut s, r)
}

/// Guest RAM is zeroed lazily, and a reboot must clear what the last boot
/// could see: the test kernel marks its RAM and reboots, and the next boot
/// must find no mark (twice in a row).
fn reboot_clears_ram(name: &str) -> Result<(), String> {
    let opts = RunOpts {
        append: Some("mode=rezero".into()),
        memory_mb: 64,
        ..RunOpts::default()
    };
    with_session(name, &opts, |s| {
        for boot in 1..=3 {
            let marked = s
                .expect_line("rezero: clean; marked ", T_BOOT)
                .map_err(|e| format!("boot {boot}: {e}"))?;
            let n: u32 = marked
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if n < 8 {
                return Err(format!("boot {boot} marked only {marked:?}"));
            }
        }
        let out = s.output();
        if out.contains("rezero: FOUND") {
            return Err("memory from a previous boot survived a reboot".into());
        }
        no_panic(s)
    })
}

/// A crashing VM is stopped and reported while a Linux VM keeps answering.
fn vm_crash_isolated(name: &str) -> Result<(), String> {
    let cfg = write_e2e_file("crash-isolated.toml", "[machine]\nharts = 2\n\n[[vm]]\nname = \"victim\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\nconsole = true\n\n[[vm]]\nname = \"crasher\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\nbootargs = \"mode=crash\"\n")?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.expect("VM crasher stopped: guest crashed", T_LINUX)?;
        s.expect("[victim] guest: init ready", T_LINUX)?;
        ask(&mut s, "echo survivor $((3*3))", "[victim] survivor 9")?;
        s.send("poweroff -f\n")?;
        s.expect("all VMs stopped; powering off (a VM failed)", T_CMD)?;
        let st = s.wait_exit(T_CMD)?;
        no_panic(&s)?;
        if st.success() {
            return Err("QEMU exited 0 although a VM crashed".into());
        }
        Ok(())
    })();
    finish(name, &mut s, r)
}

fn host_tool(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the shell expression `expr` in the guest and returns what it
/// printed. The guest prints `KEY=<value>`; the command line spells the
/// marker `KEY""=`, so its echo can never be mistaken for the answer, and
/// the value is read only once its line is complete.
fn capture(s: &mut Session, key: &str, expr: &str) -> Result<String, String> {
    s.send(&format!("echo {key}\"\"=$({expr})\n"))?;
    s.expect_line(&format!("{key}="), T_CMD)
}

/// The rest of the last complete line, anywhere in the output so far, that
/// contains `pat` (for output from a background job or another VM, whose
/// order against the current expectations is not fixed).
fn line_anywhere(s: &Session, pat: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = s.output();
        if let Some(pos) = out.rfind(pat) {
            let rest = &out[pos + pat.len()..];
            if let Some(end) = rest.find('\n') {
                return Ok(rest[..end].trim_end_matches('\r').to_string());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {pat:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The md5 of a guest file, as its 32 hex digits.
fn guest_md5(s: &mut Session, key: &str, path: &str) -> Result<String, String> {
    let md5 = capture(s, key, &format!("md5sum {path} | cut -c1-32"))?;
    if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{key}: the guest printed {md5:?}, not an md5"));
    }
    Ok(md5)
}

/// An ext4 disk made on the host: the guest mounts it, writes a file and a
/// large file, syncs and powers off; the host reads both back with debugfs;
/// a second boot reads them back too. Also checks hwrng and hvc0.
fn virtio_blk_ext4(name: &str) -> Result<(), String> {
    let dir = images::root().join("target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    let img = dir.join("ext4.img");
    let _ = std::fs::remove_file(&img);
    std::fs::write(&img, vec![0u8; 64 << 20]).map_err(|e| e.to_string())?;
    host_tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img))?;
    let opts = RunOpts {
        guest: "linux".into(),
        disks: vec![(img.clone(), false)],
        icount: true,
        ..RunOpts::default()
    };
    let opts = linux_opts(opts);
    let mut guest_big = String::new();
    with_session(name, &opts, |s| {
        s.expect("guest: init ready", T_LINUX)?;
        ask(
            s,
            "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo mounted\"\"-ok",
            "mounted-ok",
        )?;
        ask(
            s,
            "echo 'Hello from a Rivet guest' > /mnt/hello.txt && echo wrote\"\"-small",
            "wrote-small",
        )?;
        ask(
            s,
            "dd if=/dev/urandom of=/mnt/big bs=64k count=64 2>/dev/null && echo big\"\"-written",
            "big-written",
        )?;
        guest_big = guest_md5(s, "MD5_BIG", "/mnt/big")?;
        ask(s, "sync && umount /mnt && echo synced\"\"-ok", "synced-ok")?;
        ask(
            s,
            "head -c 64 /dev/hwrng | od -An -tx1 | wc -l | sed 's/^/HWRNG_LINES=/'",
            "HWRNG_LINES=4",
        )?;
        ask(s, "echo hvc\"\"-echo-ok > /dev/hvc0", "hvc-echo-ok")?;
        power_off(s)
    })?;
    let small = host_tool(
        Command::new("debugfs")
            .args(["-R", "cat /hello.txt"])
            .arg(&img),
    )?;
    if !small.contains("Hello from a Rivet guest") {
        return Err(format!("host sees hello.txt as {small:?}"));
    }
    let dumped = dir.join("big.host");
    let _ = std::fs::remove_file(&dumped);
    host_tool(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump /big {}", dumped.display()))
            .arg(&img),
    )?;
    let host_md5 = host_tool(Command::new("md5sum").arg(&dumped))?;
    if !host_md5.starts_with(&guest_big) {
        return Err(format!(
            "big file differs: guest md5 {guest_big:?}, host {host_md5:?}"
        ));
    }
    // Second boot reads both back.
    let name2 = format!("{name}-second-boot");
    with_session(&name2, &opts, |s| {
        s.expect("guest: init ready", T_LINUX)?;
        ask(
            s,
            "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && cat /mnt/hello.txt",
            "Hello from a Rivet guest",
        )?;
        let again = guest_md5(s, "MD5_AGAIN", "/mnt/big")?;
        if again != guest_big {
            return Err(format!("second boot md5 {again:?} != {guest_big:?}"));
        }
        s.send("umount /mnt; poweroff -f\n")?;
        exits_cleanly(s)
    })
}

/// A read-only disk: the guest sees it read-only and writes fail; the
/// image is unchanged.
fn virtio_blk_read_only(name: &str) -> Result<(), String> {
    let img = write_e2e_file("ro.img", vec![0x5au8; 4 << 20])?;
    let opts = linux_opts(RunOpts {
        guest: "linux".into(),
        disks: vec![(img.clone(), true)],
        icount: true,
        ..RunOpts::default()
    });
    with_session(name, &opts, |s| {
        s.expect("guest: init ready", T_LINUX)?;
        ask(s, "echo RO=$(cat /sys/block/vda/ro)", "RO=1")?;
        ask(
            s,
            "head -c 4 /dev/vda | od -An -tx1 | tr -d ' ' | sed 's/^/HEAD=/'",
            "HEAD=5a5a5a5a",
        )?;
        ask(
            s,
            "dd if=/dev/zero of=/dev/vda bs=512 count=1 2>/dev/null; echo WRITE_RC=$?",
            "WRITE_RC=1",
        )?;
        power_off(s)
    })?;
    let data = std::fs::read(&img).map_err(|e| e.to_string())?;
    if data.iter().any(|&b| b != 0x5a) {
        return Err("the read-only image was modified".into());
    }
    Ok(())
}

/// Two VMs get disjoint sector windows of one image and cannot see each
/// other's data; the host finds each VM's data at its window's offset.
fn virtio_blk_windows(name: &str) -> Result<(), String> {
    let dir = images::root().join("target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    let img = dir.join("shared-windows.img");
    std::fs::write(&img, vec![0u8; 32 << 20]).map_err(|e| e.to_string())?;
    let cfg = dir.join("windows.toml");
    std::fs::write(
        &cfg,
        format!(
            "[machine]\nharts = 2\n\n[[vm]]\nname = \"left\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\nconsole = true\n[[vm.disk]]\nimage = \"{0}\"\nstart = 0\nsectors = 32768\n\n[[vm]]\nname = \"right\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\n[[vm.disk]]\nimage = \"{0}\"\nstart = 32768\nsectors = 32768\n",
            img.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.wait_all_ready(&["left", "right"], T_LINUX)?;
        ask(
            &mut s,
            "echo SIZE=$(cat /sys/block/vda/size)",
            "[left] SIZE=32768",
        )?;
        ask(
            &mut s,
            "echo left-secret-data > /dev/vda && sync && echo left\"\"-wrote",
            "[left] left-wrote",
        )?;
        s.send("\x01n")?;
        s.expect("console input -> VM 1", T_CMD)?;
        ask(
            &mut s,
            "echo SIZE=$(cat /sys/block/vda/size)",
            "[right] SIZE=32768",
        )?;
        let seen = capture(
            &mut s,
            "RIGHT_SEES",
            "head -c 16 /dev/vda | od -An -c | tr -d ' '",
        )?;
        if seen.contains("left") {
            return Err(format!("right VM read the left VM's data: {seen}"));
        }
        ask(
            &mut s,
            "echo right-secret-data > /dev/vda && sync && echo right\"\"-wrote",
            "[right] right-wrote",
        )?;
        ask(&mut s, "dd if=/dev/zero of=/dev/vda bs=512 seek=32768 count=1 2>&1 | tail -1; echo beyond\"\"-tried", "[right] beyond-tried")?;
        s.send("poweroff -f\n")?;
        s.expect("VM right stopped", T_CMD)?;
        s.send("\x010")?;
        s.expect("console input -> VM 0", T_CMD)?;
        power_off(&mut s)
    })();
    finish(name, &mut s, r)?;
    let data = std::fs::read(&img).map_err(|e| e.to_string())?;
    if !data.starts_with(b"left-secret-data") {
        return Err("host image lacks the left VM's data at offset 0".into());
    }
    if data.get(16 << 20..(16 << 20) + 17) != Some(&b"right-secret-data"[..]) {
        return Err("host image lacks the right VM's data at 16 MiB".into());
    }
    if data.get(32 << 20..).is_some_and(|t| !t.is_empty()) {
        return Err("image grew past its end".into());
    }
    Ok(())
}

/// Every configuration error names its file, line and field.
fn config_errors(_name: &str) -> Result<(), String> {
    let dir = images::root().join("target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    let cases: [(&str, &str, &str); 6] = [
        ("unknown-key", "[[vm]]\nname = \"a\"\nvpcus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n", ":3: vm[0].vpcus: unknown key"),
        ("too-little-memory", "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"2M\"\nkernel = \"testkernel\"\n", ":4: vm[0].memory:"),
        ("missing-image", "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"no/such/kernel\"\n", ":5: vm[0].kernel:"),
        ("too-many-pins", "[machine]\nharts = 2\n[[vm]]\nname = \"a\"\nvcpus = 3\nmemory = \"64M\"\nkernel = \"testkernel\"\npin = [0, 1, 2]\n", ":8: vm[0].pin"),
        ("machine-memory", "[machine]\nmemory = \"600M\"\n[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"testkernel\"\n", ":2: machine.memory:"),
        ("disk-overlap", "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n[[vm.disk]]\nimage = \"d.img\"\nstart = 0\nsectors = 100\n[[vm]]\nname = \"b\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"testkernel\"\n[[vm.disk]]\nimage = \"d.img\"\nstart = 50\nsectors = 100\n", "overlap"),
    ];
    let _ = std::fs::write(dir.join("d.img"), vec![0u8; 512 * 200]);
    for (tag, text, want) in cases {
        let path = dir.join(format!("bad-{tag}.toml"));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let err = match crate::prepare_config(&path, &RunOpts::default(), "config-errors") {
            Ok(_) => return Err(format!("{tag}: accepted a bad configuration")),
            Err(e) => e,
        };
        let expect = format!("{}{want}", path.display());
        let found = err.lines().any(|l| {
            l.contains(&expect)
                || (want == "overlap"
                    && l.contains(&path.display().to_string())
                    && l.contains(want))
        });
        if !found {
            return Err(format!(
                "{tag}: expected an error containing {expect:?}, got:\n{err}"
            ));
        }
    }
    Ok(())
}

/// Two VMs on network "lan" ping each other and move a file over TCP
/// (busybox nc) with matching checksums; a VM on network "other" cannot
/// reach them.
fn virtio_net_switch(name: &str) -> Result<(), String> {
    let dir = images::root().join("target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    let cfg = dir.join("net.toml");
    let vm = |n: &str, net: &str, console: bool| {
        format!(
            "\n[[vm]]\nname = \"{n}\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\n{}[[vm.nic]]\nnetwork = \"{net}\"\n",
            if console { "console = true\n" } else { "" }
        )
    };
    let text = format!(
        "[machine]\nharts = 2\n{}{}{}",
        vm("alpha", "lan", true),
        vm("beta", "lan", false),
        vm("gamma", "other", false)
    );
    std::fs::write(&cfg, text).map_err(|e| e.to_string())?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.wait_all_ready(&["alpha", "beta", "gamma"], T_LINUX)?;
        // alpha: 10.0.0.1, listens for a file.
        ask(
            &mut s,
            "ip addr add 10.0.0.1/24 dev eth0 && ip link set eth0 up && echo alpha\"\"-up",
            "[alpha] alpha-up",
        )?;
        s.send("(nc -l -p 5000 < /dev/null > /tmp/recv; echo RECV_MD5\"\"=$(md5sum /tmp/recv | cut -c1-32)) &\n")?;
        // beta: 10.0.0.2, pings alpha and sends it a file.
        s.send("\x01n")?;
        s.expect("console input -> VM 1", T_CMD)?;
        ask(
            &mut s,
            "ip addr add 10.0.0.2/24 dev eth0 && ip link set eth0 up && echo beta\"\"-up",
            "[beta] beta-up",
        )?;
        ask(
            &mut s,
            "ping -c 3 10.0.0.1 > /tmp/p; echo PINGS=$(grep -c 'bytes from' /tmp/p)",
            "[beta] PINGS=3",
        )?;
        ask(
            &mut s,
            "dd if=/dev/urandom of=/tmp/send bs=1k count=512 2>/dev/null; echo dd\"\"-done",
            "[beta] dd-done",
        )?;
        let sent = guest_md5(&mut s, "SENT_MD5", "/tmp/send")?;
        ask(
            &mut s,
            "nc -w 3 10.0.0.1 5000 < /tmp/send; echo nc\"\"-done",
            "[beta] nc-done",
        )?;
        // alpha's listener may finish before or after beta's prompt returns.
        let recv = line_anywhere(&s, "[alpha] RECV_MD5=", T_CMD)?;
        if sent != recv {
            return Err(format!(
                "TCP transfer checksum mismatch: sent {sent:?}, received {recv:?}"
            ));
        }
        // gamma, on another network, must not reach alpha.
        s.send("\x01n")?;
        s.expect("console input -> VM 2", T_CMD)?;
        ask(
            &mut s,
            "ip addr add 10.0.0.3/24 dev eth0 && ip link set eth0 up && echo gamma\"\"-up",
            "[gamma] gamma-up",
        )?;
        ask(
            &mut s,
            "ping -c 2 -W 1 10.0.0.1 > /tmp/p; echo GAMMA_PINGS=$(grep -c 'bytes from' /tmp/p)",
            "[gamma] GAMMA_PINGS=0",
        )?;
        // Per-port counters in the hypervisor console.
        s.send("\x01l")?;
        s.expect("switch ports:", T_CMD)?;
        s.expect("port 0 net 0 alpha eth0: rx ", T_CMD)?;
        s.expect("port 2 net 1 gamma eth0: rx ", T_CMD)?;
        s.send("\x01x")?;
        exits_cleanly(&mut s)
    })();
    finish(name, &mut s, r)
}

/// A network bridged to QEMU's user-mode network (restrict=on): the guest
/// reaches QEMU's gateway, and a TCP connection from the host to a forward
/// on 127.0.0.1 reaches a busybox `nc -l` in the guest, bytes intact both
/// ways.
fn virtio_net_uplink(name: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let cfg = write_e2e_file(
        "uplink.toml",
        format!(
            "[machine]\nharts = 1\nuplink = \"lan\"\nforward = [\"{port}:10.0.2.15:8080\"]\n\n[[vm]]\nname = \"web\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\n[[vm.nic]]\nnetwork = \"lan\"\n"
        ),
    )?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.expect("guest: init ready", T_LINUX)?;
        ask(
            &mut s,
            "ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && echo up\"\"-ok",
            "up-ok",
        )?;
        ask(
            &mut s,
            "ping -c 2 10.0.2.2 > /tmp/p; echo GW=$(grep -c 'bytes from' /tmp/p)",
            "GW=2",
        )?;
        s.send("(echo guest-says-hello | nc -l -p 8080 > /tmp/got; echo GOT=$(cat /tmp/got)) &\n")?;
        std::thread::sleep(Duration::from_secs(2));
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        conn.write_all(b"host-says-hello\n")
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = conn
            .read(&mut buf)
            .map_err(|e| format!("read from guest: {e}"))?;
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        if got.trim() != "guest-says-hello" {
            return Err(format!("host received {got:?}"));
        }
        drop(conn);
        s.expect("GOT=host-says-hello", T_CMD)?;
        power_off(&mut s)
    })();
    finish(name, &mut s, r)
}

fn md5_hex(path: &std::path::Path) -> Result<String, String> {
    let out = host_tool(Command::new("md5sum").arg(path))?;
    Ok(out.chars().take(32).collect())
}

/// A fresh host directory under target/e2e with known files.
fn fresh_share(name: &str) -> Result<PathBuf, String> {
    let dir = images::root().join("target/e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u32 = 0x1234_5678;
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(dir.join("big.bin"), &big).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("hello.txt"), "hello from the host\n").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("old-name.txt"), "rename me\n").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("doomed.txt"), "delete me\n").map_err(|e| e.to_string())?;
    Ok(dir)
}

fn fs_vm(name: &str, tag: &str, share: &std::path::Path, console: bool) -> String {
    format!(
        "\n[[vm]]\nname = \"{name}\"\nvcpus = 1\nmemory = \"256M\"\nkernel = \"linux\"\ninitrd = \"busybox\"\nbootargs = \"console=ttyS0\"\n{}[[vm.fs]]\ntag = \"{tag}\"\npath = \"{}\"\n",
        if console { "console = true\n" } else { "" },
        share.display()
    )
}

/// virtio-fs: the guest mounts a host directory, reads files with known
/// checksums, creates, renames and deletes; the host sees exactly that.
fn virtio_fs_host_dir(name: &str) -> Result<(), String> {
    let share = fresh_share("share-one")?;
    let big_md5 = md5_hex(&share.join("big.bin"))?;
    let cfg = write_e2e_file(
        "fs-one.toml",
        format!(
            "[machine]\nharts = 1\n{}",
            fs_vm("fsvm", "host", &share, true)
        ),
    )?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.expect("guest: init ready", T_LINUX)?;
        ask(
            &mut s,
            "mkdir -p /mnt && mount -t virtiofs host /mnt && echo mount\"\"-ok",
            "mount-ok",
        )?;
        ask(
            &mut s,
            "ls /mnt | tr '\\n' ' ' | sed 's/^/LS=/'; echo",
            "LS=big.bin doomed.txt hello.txt old-name.txt",
        )?;
        ask(&mut s, "cat /mnt/hello.txt", "hello from the host")?;
        ask(
            &mut s,
            "echo BIG=$(md5sum /mnt/big.bin | cut -c1-32)",
            &format!("BIG={big_md5}"),
        )?;
        ask(
            &mut s,
            "mkdir /mnt/newdir && echo written-by-guest > /mnt/newdir/note.txt && mv /mnt/old-name.txt /mnt/new-name.txt && rm /mnt/doomed.txt && sync && echo changes\"\"-done",
            "changes-done",
        )?;
        ask(&mut s, "umount /mnt && echo umount\"\"-ok", "umount-ok")?;
        power_off(&mut s)
    })();
    finish(name, &mut s, r)?;
    let mut names: Vec<String> = std::fs::read_dir(&share)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    if names != ["big.bin", "hello.txt", "new-name.txt", "newdir"] {
        return Err(format!("host directory after the guest: {names:?}"));
    }
    let note = std::fs::read_to_string(share.join("newdir/note.txt")).map_err(|e| e.to_string())?;
    if note != "written-by-guest\n" || md5_hex(&share.join("big.bin"))? != big_md5 {
        return Err(format!("host file contents wrong: note {note:?}"));
    }
    if std::fs::read_to_string(share.join("new-name.txt")).map_err(|e| e.to_string())?
        != "rename me\n"
    {
        return Err("renamed file lost its contents".into());
    }
    Ok(())
}

/// Two VMs mount the same directory at once and see each other's writes.
fn virtio_fs_two_vms(name: &str) -> Result<(), String> {
    let share = fresh_share("share-two")?;
    let cfg = write_e2e_file(
        "fs-two.toml",
        format!(
            "[machine]\nharts = 2\n{}{}",
            fs_vm("left", "shared", &share, true),
            fs_vm("right", "shared", &share, false)
        ),
    )?;
    let mut s = config_session(name, &cfg)?;
    let r = (|| {
        s.wait_all_ready(&["left", "right"], T_LINUX)?;
        ask(&mut s, "mkdir -p /mnt && mount -t virtiofs shared /mnt && echo from-left > /mnt/left.txt && echo left\"\"-wrote", "[left] left-wrote")?;
        s.send("\x01n")?;
        s.expect("console input -> VM 1", T_CMD)?;
        ask(
            &mut s,
            "mkdir -p /mnt && mount -t virtiofs shared /mnt && cat /mnt/left.txt",
            "[right] from-left",
        )?;
        ask(
            &mut s,
            "echo from-right > /mnt/right.txt && echo right\"\"-wrote",
            "[right] right-wrote",
        )?;
        s.send("\x010")?;
        s.expect("console input -> VM 0", T_CMD)?;
        ask(&mut s, "cat /mnt/right.txt", "[left] from-right")?;
        s.send("\x01x")?;
        exits_cleanly(&mut s)
    })();
    finish(name, &mut s, r)
}

/// CI's fuzz smoke run: every target for a few seconds plus every kept
/// regression input.
fn fuzz_smoke() -> Result<(), String> {
    let args: Vec<String> = ["--smoke", "--seconds", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match crate::fuzz::fuzz(&args)? {
        0 => Ok(()),
        _ => Err("a fuzz target failed (see the output above)".into()),
    }
}

/// CI's short soak: 30 s of checksummed disk and network I/O in two
/// oversubscribed VMs.
fn soak_short(name: &str) -> Result<(), String> {
    let r = crate::soak::run_soak(0.5, name)?;
    crate::soak::report(&r);
    if r.failed() || r.rounds < 2 || r.net_rounds < 2 {
        return Err(format!(
            "{} disk rounds, {} network transfers, {} mismatches, errors: {:?}",
            r.rounds, r.net_rounds, r.mismatches, r.errors
        ));
    }
    Ok(())
}

fn crashing_guest(name: &str) -> Result<(), String> {
    let opts = RunOpts {
        append: Some("mode=crash".into()),
        ..RunOpts::default()
    };
    with_session(name, &opts, |s| {
        s.expect("crash test: jumping", T_BOOT)?;
        s.expect(
            "guest crashed: vcpu 0 pc=0x40000000 cause=20 (instruction guest-page fault)",
            T_BOOT,
        )?;
        s.expect("all VMs stopped; powering off (a VM failed)", T_BOOT)?;
        let st = s.wait_exit(T_BOOT)?;
        no_panic(s)?;
        if st.success() {
            return Err("QEMU exited 0 after a VM crash; want a failure status".into());
        }
        Ok(())
    })
}

fn bad_image(name: &str) -> Result<(), String> {
    let bogus = images::out_dir().join("not-an-image.bin");
    std::fs::write(&bogus, vec![0x13u8; 4096]).map_err(|e| e.to_string())?;
    let opts = RunOpts {
        kernel: Some(bogus),
        ..RunOpts::default()
    };
    with_session(name, &opts, |s| {
        s.expect("not started: not a RISC-V Linux Image", T_BOOT)?;
        s.expect("no VM could be started", T_BOOT)?;
        let st = s.wait_exit(T_BOOT)?;
        no_panic(s)?;
        if st.success() {
            return Err("QEMU exited 0 although no VM could start".into());
        }
        Ok(())
    })
}

fn no_h(name: &str) -> Result<(), String> {
    let m = crate::prepare(&RunOpts::default(), name)?;
    let mut m = m;
    m.h = false;
    let mut s = Session::spawn(m.command())?;
    let r = (|| {
        s.expect("run QEMU with -cpu rv64,h=true", T_BOOT)?;
        let st = s.wait_exit(T_BOOT)?;
        if st.success() {
            return Err("QEMU exited 0 without H".to_string());
        }
        Ok(())
    })();
    save_log(name, &s);
    r
}

fn parse_summary(line: &str) -> Option<(u64, u64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let p = words.iter().position(|w| w.starts_with("passed"))?;
    let f = words.iter().position(|w| w.starts_with("failed"))?;
    Some((
        words.get(p.checked_sub(1)?)?.parse().ok()?,
        words.get(f.checked_sub(1)?)?.parse().ok()?,
    ))
}

/// The no-panic lints (`#![deny(clippy::unwrap_used, ...)]` in each crate
/// that handles guest input) only bite when clippy runs: CI runs it here.
fn clippy_guest_crates() -> Result<(), String> {
    const CRATES: &[&str] = &[
        "rivet-guest-mem",
        "rivet-gstage",
        "rivet-insn",
        "rivet-sbi",
        "rivet-vplic",
        "rivet-uart16550",
        "rivet-devtree",
        "rivet-bundle",
        "rivet-loader",
        "rivet-frame-alloc",
        "rivet-virtio",
        "rivet-vswitch",
    ];
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(images::root()).args(["clippy", "--lib"]);
    for c in CRATES {
        cmd.args(["-p", c]);
    }
    cmd.args(["--", "-D", "warnings"]);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo clippy: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs `cargo test` over the host crates and sums its result lines.
fn unit_tests() -> Result<(u64, u64), String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(images::root())
        .args([
            "test",
            "--workspace",
            "--exclude",
            "rivet-hv",
            "--exclude",
            "rivet-testkernel",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    print!("{text}");
    let (mut p, mut f) = (0, 0);
    for l in text.lines().filter(|l| l.starts_with("test result:")) {
        let nums: Vec<u64> = l
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        if nums.len() >= 2 {
            p += nums[0];
            f += nums[1];
        }
    }
    if !out.status.success() {
        eprint!("{err}");
        f = f.max(1);
    }
    Ok((p, f))
}

pub fn test(args: &[String]) -> Result<u8, String> {
    let unit_only = args.iter().any(|a| a == "--unit-only");
    let e2e_only = args.iter().any(|a| a == "--e2e-only");
    let filter = args.iter().find(|a| !a.starts_with("--")).cloned();
    let (mut passed, mut failed) = (0u64, 0u64);
    if !e2e_only {
        println!("== host unit tests");
        let (p, f) = unit_tests()?;
        println!("unit tests: {p} passed, {f} failed");
        passed += p;
        failed += f;
        println!("== clippy on the crates that handle guest input (deny unwrap/expect/...)");
        match clippy_guest_crates() {
            Ok(()) => {
                passed += 1;
                println!("clippy ... ok");
            }
            Err(e) => {
                failed += 1;
                println!("clippy ... FAILED\n{e}");
            }
        }
    }
    if !unit_only {
        crate::setup()?;
        images::build_all()?;
        println!("== end-to-end suites (QEMU)");
        for c in cases() {
            if let Some(f) = &filter {
                if !c.name.contains(f.as_str()) {
                    continue;
                }
            }
            let t = Instant::now();
            match (c.run)(c.name) {
                Ok(()) => {
                    passed += 1;
                    println!("e2e {} ... ok ({:.1}s)", c.name, t.elapsed().as_secs_f64());
                }
                Err(e) => {
                    failed += 1;
                    println!(
                        "e2e {} ... FAILED ({:.1}s)\n{e}",
                        c.name,
                        t.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    if passed + failed == 0 {
        println!("0 passed, 1 failed (no test ran)");
        return Ok(1);
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::parse_summary;

    #[test]
    fn summary_lines() {
        assert_eq!(parse_summary("31 passed, 0 failed"), Some((31, 0)));
        assert_eq!(parse_summary("x: 2 passed, 5 failed"), Some((2, 5)));
        assert_eq!(parse_summary("nothing"), None);
    }
}
