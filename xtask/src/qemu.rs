//! QEMU command lines and sessions: interactive runs on the terminal, and
//! captured runs the end-to-end tests drive (wait for text, type, wait for
//! exit), each with a hard timeout so nothing hangs CI.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One QEMU machine: Rivet as the -kernel, the bundle as the -initrd.
#[derive(Debug, Clone)]
pub struct Machine {
    pub hypervisor: PathBuf,
    pub bundle: PathBuf,
    pub harts: u32,
    pub memory_mb: u64,
    pub sstc: bool,
    pub h: bool,
    /// Deterministic guest time: 1 instruction = 1 ns.
    pub icount: bool,
    pub extra: Vec<String>,
}

impl Machine {
    pub fn new(hypervisor: &Path, bundle: &Path) -> Self {
        Self {
            hypervisor: hypervisor.to_path_buf(),
            bundle: bundle.to_path_buf(),
            harts: 1,
            memory_mb: 1024,
            sstc: true,
            h: true,
            icount: false,
            extra: Vec::new(),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new("qemu-system-riscv64");
        let mut cpu = String::from("rv64");
        cpu.push_str(if self.h { ",h=true" } else { ",h=false" });
        if !self.sstc {
            cpu.push_str(",sstc=false");
        }
        c.args(["-M", "virt", "-cpu", &cpu, "-smp", &self.harts.to_string()]);
        c.args(["-m", &format!("{}M", self.memory_mb)]);
        c.args([
            "-bios",
            "default",
            "-no-reboot",
            "-display",
            "none",
            "-monitor",
            "none",
        ]);
        // Modern (version 2) virtio-mmio for the machine's own devices:
        // Rivet's virtio-fs driver speaks only that (QEMU's default is legacy).
        c.args(["-global", "virtio-mmio.force-legacy=false"]);
        // Plain stdio serial (no QEMU mux): Ctrl-A belongs to Rivet's console.
        c.args(["-chardev", "stdio,id=con0", "-serial", "chardev:con0"]);
        c.arg("-kernel").arg(&self.hypervisor);
        c.arg("-initrd").arg(&self.bundle);
        if self.icount {
            c.args(["-icount", "shift=0,sleep=off"]);
        }
        c.args(&self.extra);
        c
    }

    pub fn command_line(&self) -> String {
        let c = self.command();
        std::iter::once(c.get_program().to_string_lossy().into_owned())
            .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A captured QEMU run.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    cursor: usize,
}

impl Session {
    pub fn spawn(mut cmd: Command) -> Result<Session, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
        let out = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().ok_or("no stdout")?) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().ok_or("no stderr")?),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut o) = out.lock() {
                        o.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Session {
            child,
            stdin,
            out,
            cursor: 0,
        })
    }

    pub fn output(&self) -> String {
        self.out
            .lock()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default()
    }

    /// Waits until `pat` appears after the previous match; moves past it.
    pub fn expect(&mut self, pat: &str, timeout: Duration) -> Result<(), String> {
        self.wait_for(pat, false, timeout).map(|_| ())
    }

    /// Waits until `pat` appears after the previous match and its line is
    /// complete; returns the rest of that line (without `\r`) and moves
    /// past it. Use it to read a value the guest prints after a marker.
    pub fn expect_line(&mut self, pat: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for(pat, true, timeout)
    }

    fn wait_for(&mut self, pat: &str, line: bool, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        // Returns the text after `pat` (up to the end of its line when
        // `line`) and how far the cursor moves, once it is all there.
        let scan = |o: &[u8], cursor: usize| -> Option<(String, usize)> {
            let hay = &o[cursor.min(o.len())..];
            let start = find(hay, pat.as_bytes())? + pat.len();
            if !line {
                return Some((String::new(), start));
            }
            let len = hay[start..].iter().position(|&b| b == b'\n')?;
            let text = String::from_utf8_lossy(&hay[start..start + len]);
            Some((text.trim_end_matches('\r').to_string(), start + len + 1))
        };
        loop {
            {
                let o = self.out.lock().map_err(|_| "poisoned")?;
                if let Some((text, moved)) = scan(&o, self.cursor) {
                    self.cursor += moved;
                    return Ok(text);
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let o = self.out.lock().map_err(|_| "poisoned")?;
                if scan(&o, self.cursor).is_some() {
                    drop(o);
                    continue;
                }
                return Err(format!("QEMU exited ({st}) before printing {pat:?}"));
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {timeout:?} waiting for {pat:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every one of `pats` has appeared anywhere in the
    /// output, in any order (output from concurrent VMs or background jobs).
    pub fn wait_all(&self, pats: &[&str], timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            let missing: Vec<&str> = pats.iter().copied().filter(|p| !out.contains(p)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {missing:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every named VM of a multi-VM run has printed `init
    /// ready`, in any order (the VMs boot concurrently, so a sequence of
    /// `expect`s could step past one VM's line while waiting for another).
    pub fn wait_all_ready(&self, vms: &[&str], timeout: Duration) -> Result<(), String> {
        let pats: Vec<String> = vms
            .iter()
            .map(|v| format!("[{v}] guest: init ready"))
            .collect();
        let pats: Vec<&str> = pats.iter().map(String::as_str).collect();
        self.wait_all(&pats, timeout)
    }

    pub fn send(&mut self, text: &str) -> Result<(), String> {
        let s = self.stdin.as_mut().ok_or("stdin closed")?;
        // Type slowly enough for a 64-byte UART FIFO.
        for chunk in text.as_bytes().chunks(32) {
            s.write_all(chunk).map_err(|e| e.to_string())?;
            s.flush().map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(())
    }

    /// Waits for QEMU to exit; kills it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                std::thread::sleep(Duration::from_millis(50));
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("QEMU did not exit within {timeout:?} (killed)"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
