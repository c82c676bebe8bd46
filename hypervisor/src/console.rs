//! The physical console multiplexer: routes keyboard input to the VM in
//! focus and runs the hypervisor console behind the escape key.
//!
//! Ctrl-A starts an escape sequence; the next key selects:
//! `n` next VM gets input, `0`-`9` that VM gets input, `c` toggle between
//! its UART (ttyS0) and its virtio console (hvc0), `l` list VMs and
//! exit statistics, `s` stop the focused VM, `r` restart it, `x` power the
//! machine off, `h` help, Ctrl-A a literal Ctrl-A for the guest.

use crate::vm::Vm;

pub const ESCAPE: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Byte(u8),
    Report,
    Stop(usize),
    Restart(usize),
    PowerOff,
}

pub struct Console {
    pub focus: usize,
    /// Input goes to the focused VM's hvc0 (virtio-console), not its UART.
    pub to_hvc: bool,
    escaped: bool,
}

impl Console {
    pub const fn new() -> Self {
        Self {
            focus: 0,
            to_hvc: false,
            escaped: false,
        }
    }

    pub fn input(&mut self, b: u8, vms: usize) -> Action {
        if !self.escaped {
            if b == ESCAPE {
                self.escaped = true;
                return Action::None;
            }
            return Action::Byte(b);
        }
        self.escaped = false;
        match b {
            ESCAPE => Action::Byte(ESCAPE),
            b'n' => {
                self.focus = (self.focus + 1) % vms.max(1);
                crate::println!("\r\n[rivet] console input -> VM {}", self.focus);
                Action::None
            }
            b'0'..=b'9' if ((b - b'0') as usize) < vms => {
                self.focus = (b - b'0') as usize;
                crate::println!("\r\n[rivet] console input -> VM {}", self.focus);
                Action::None
            }
            b'l' => Action::Report,
            b'c' => {
                self.to_hvc = !self.to_hvc;
                crate::println!(
                    "\r\n[rivet] console input -> VM {} {}",
                    self.focus,
                    if self.to_hvc { "hvc0" } else { "ttyS0" }
                );
                Action::None
            }
            b's' => Action::Stop(self.focus),
            b'r' => Action::Restart(self.focus),
            b'x' => Action::PowerOff,
            _ => {
                crate::println!(
                    "\r\n[rivet] Ctrl-A then: n next VM, 0-9 pick VM, c ttyS0/hvc0, l list, s stop, r restart, x power off, Ctrl-A literal"
                );
                Action::None
            }
        }
    }
}

/// Prints every VM with its state, vCPU states and exit counts by reason.
pub fn report(vms: &[Vm], harts: &[crate::machine::HartSlot]) {
    crate::println!("\r\n[rivet] {} VM(s):", vms.len());
    for vm in vms {
        crate::println!(
            "[rivet]  {} '{}' vmid {} {:?} boots {}",
            vm.index,
            vm.name,
            vm.vmid,
            vm.state,
            vm.boots
        );
        let mut total = crate::vcpu::ExitStats::default();
        for v in &vm.vcpus {
            let place = match (v.running_on, v.pin) {
                (Some(h), _) => alloc::format!(
                    "running on hart {}",
                    harts.get(h).map(|x| x.hartid).unwrap_or(0)
                ),
                (None, Some(p)) => alloc::format!(
                    "pinned to hart {}",
                    harts.get(p).map(|x| x.hartid).unwrap_or(0)
                ),
                (None, None) => alloc::string::String::from("time-sliced"),
            };
            crate::println!(
                "[rivet]    vcpu {} {:?}{} {place}, {} exits",
                v.id,
                v.hsm,
                if v.wfi { " (halted)" } else { "" },
                v.stats.total()
            );
            total.add(&v.stats);
        }
        let s = &total;
        crate::print_exit_stats(s);
    }
}

/// Prints the virtual switch's ports with their owners and counters.
pub fn report_switch(sw: &rivet_vswitch::Switch, owners: &[(usize, usize)], vms: &[Vm]) {
    if owners.is_empty() {
        return;
    }
    crate::println!("[rivet] switch ports:");
    for (i, owner) in owners.iter().enumerate() {
        let port = rivet_vswitch::PortId(i as u16);
        let Some(st) = sw.port_stats(port) else {
            continue;
        };
        let who = match *owner {
            crate::machine::UPLINK => alloc::string::String::from("uplink (machine NIC)"),
            (v, k) => match vms.get(v) {
                Some(vm) => alloc::format!("{} eth{k}", vm.name),
                None => alloc::string::String::from("(unused)"),
            },
        };
        let net = sw.port_info(port).map(|p| p.network.0).unwrap_or(0);
        crate::println!(
            "[rivet]   port {i} net {net} {who}: rx {} frames/{} B, tx {} frames/{} B, dropped {}, flooded {}",
            st.rx_frames, st.rx_bytes, st.tx_frames, st.tx_bytes, st.dropped, st.flooded
        );
    }
}
