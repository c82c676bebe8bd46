//! `rivet-sbi`: `dispatch` with random VMs (RAM placement and size, vCPU
//! count, HSM states, console input, legacy hart masks) and random calls.
//!
//! The mock environment asserts the contract of every `SbiEnv` method
//! (dispatch only asks for validated things), and each outcome is checked
//! against the spec's rules that can be stated without re-implementing the
//! crate: standard error codes, `value = 0` on error, DBCN transfers that
//! match guest memory, resume/start addresses inside RAM.
//!
//! Input: a VM header, then calls until the bytes run out.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use rivet_fuzz::Input;
use rivet_guest_mem::{GuestMemory, VecMemory};
use rivet_sbi::{
    dispatch, eid, error, fid, Fence, HartSet, HartState, Outcome, SbiCall, SbiEnv, DBCN_CHUNK,
    DBCN_MAX_BYTES_PER_CALL, MAX_HARTS,
};

const STATES: [HartState; 7] = [
    HartState::Started,
    HartState::Stopped,
    HartState::StartPending,
    HartState::StopPending,
    HartState::Suspended,
    HartState::SuspendPending,
    HartState::ResumePending,
];

const BASES: [u64; 5] = [
    0x8000_0000,
    0,
    0x1000,
    u64::MAX - 0xffff, // RAM that ends at the top of the address space
    0xffff_ffff_0000_0000,
];

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Timer(u64),
    Ipi(HartSet),
    Fence(HartSet, Fence),
    Start(usize, u64, u64),
    ClearIpi,
}

struct Env {
    mem: VecMemory,
    vcpus: usize,
    current: usize,
    states: Vec<HartState>,
    console_out: Vec<u8>,
    console_in: VecDeque<u8>,
    /// `console_read` claims more than the buffer holds.
    lying_reader: bool,
    ipi_pending: bool,
    masks: Vec<(u64, u64)>,
    events: Vec<Ev>,
}

impl Env {
    fn limit(&self) -> usize {
        self.vcpus.min(MAX_HARTS as usize)
    }
    fn valid(&self) -> u64 {
        HartSet::all(self.limit() as u64).0
    }
    fn in_ram(&self, addr: u64, len: u64) -> bool {
        let base = self.mem.base();
        let size = self.mem.size();
        // RAM may end exactly at 2^64: compare offsets.
        addr >= base
            && (addr - base)
                .checked_add(len)
                .is_some_and(|end| end <= size)
    }
}

impl SbiEnv for Env {
    type Mem = VecMemory;
    fn mem(&mut self) -> &mut VecMemory {
        &mut self.mem
    }
    fn console_write(&mut self, bytes: &[u8]) {
        assert!(
            !bytes.is_empty() && bytes.len() <= DBCN_CHUNK,
            "console_write of {}",
            bytes.len()
        );
        self.console_out.extend_from_slice(bytes);
    }
    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        assert!(
            !buf.is_empty() && buf.len() <= DBCN_CHUNK,
            "console_read of {}",
            buf.len()
        );
        let mut n = 0;
        while n < buf.len() {
            match self.console_in.pop_front() {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        if self.lying_reader {
            n + 4096
        } else {
            n
        }
    }
    fn vcpu_count(&self) -> usize {
        self.vcpus
    }
    fn current_hart(&self) -> usize {
        self.current
    }
    fn hart_state(&self, hart: usize) -> HartState {
        assert!(
            hart < self.limit(),
            "hart_state({hart}) of a nonexistent hart"
        );
        self.states[hart]
    }
    fn hart_start(&mut self, hart: usize, start_addr: u64, opaque: u64) {
        assert!(
            hart < self.limit(),
            "hart_start({hart}) of a nonexistent hart"
        );
        assert_eq!(
            self.states[hart],
            HartState::Stopped,
            "hart_start of a hart that is not stopped"
        );
        assert!(
            self.in_ram(start_addr, 4),
            "hart_start at {start_addr:#x} outside RAM"
        );
        self.states[hart] = HartState::StartPending;
        self.events.push(Ev::Start(hart, start_addr, opaque));
    }
    fn set_timer(&mut self, stime_value: u64) {
        self.events.push(Ev::Timer(stime_value));
    }
    fn send_ipi(&mut self, targets: HartSet) {
        assert!(!targets.is_empty(), "empty IPI target set");
        assert_eq!(
            targets.0 & !self.valid(),
            0,
            "IPI to nonexistent harts {targets:?}"
        );
        self.events.push(Ev::Ipi(targets));
    }
    fn remote_fence(&mut self, targets: HartSet, fence: Fence) {
        assert!(!targets.is_empty(), "empty fence target set");
        assert_eq!(
            targets.0 & !self.valid(),
            0,
            "fence to nonexistent harts {targets:?}"
        );
        match fence {
            Fence::I => {}
            Fence::Vma { start, size } | Fence::VmaAsid { start, size, .. } => {
                assert!(
                    fence.is_full() || size == 0 || start.checked_add(size - 1).is_some(),
                    "fence range wraps: {fence:?}"
                );
            }
        }
        if let Fence::VmaAsid { asid, .. } = fence {
            assert!(asid <= 0xffff, "ASID {asid:#x} wider than 16 bits");
        }
        self.events.push(Ev::Fence(targets, fence));
    }
    fn clear_ipi(&mut self) -> bool {
        self.events.push(Ev::ClearIpi);
        std::mem::replace(&mut self.ipi_pending, false)
    }
    fn read_legacy_hart_mask(&mut self, va: u64) -> Option<u64> {
        assert_ne!(va, 0, "a null legacy hart mask must not be read");
        self.masks.iter().find(|(a, _)| *a == va).map(|&(_, m)| m)
    }
    fn machine_ids(&self) -> (u64, u64, u64) {
        (0x489, 0x8000_0000_0000_0007, 0x2024)
    }
}

const EIDS: [u64; 20] = [
    eid::LEGACY_SET_TIMER,
    eid::LEGACY_CONSOLE_PUTCHAR,
    eid::LEGACY_CONSOLE_GETCHAR,
    eid::LEGACY_CLEAR_IPI,
    eid::LEGACY_SEND_IPI,
    eid::LEGACY_REMOTE_FENCE_I,
    eid::LEGACY_REMOTE_SFENCE_VMA,
    eid::LEGACY_REMOTE_SFENCE_VMA_ASID,
    eid::LEGACY_SHUTDOWN,
    0x09,
    eid::BASE,
    eid::TIME,
    eid::IPI,
    eid::RFENCE,
    eid::HSM,
    eid::SRST,
    eid::DBCN,
    eid::PMU,
    eid::SUSP,
    0xffff_ffff_8000_0000 | eid::HSM, // not a sign extension of a 32-bit ID
];

fn env_from(input: &mut Input) -> Env {
    let base = input.pick(&BASES);
    let size = [0usize, 4, 0x1000, 0x1_0000][input.below(4) as usize];
    let vcpus = input.below(70) as usize;
    let n = vcpus.min(MAX_HARTS as usize);
    let mut states = Vec::with_capacity(n);
    for _ in 0..n {
        states.push(input.pick(&STATES));
    }
    let mut mem = VecMemory::new(base, size);
    for (i, b) in mem.bytes_mut().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let flags = input.u8();
    let current = if n == 0 {
        0
    } else {
        input.below(n as u64) as usize
    };
    Env {
        mem,
        vcpus,
        current,
        states,
        console_out: Vec::new(),
        console_in: VecDeque::new(),
        lying_reader: flags & 1 != 0,
        ipi_pending: flags & 2 != 0,
        masks: Vec::new(),
        events: Vec::new(),
    }
}

fn arg(input: &mut Input, env: &Env) -> u64 {
    let base = env.mem.base();
    let end = base.wrapping_add(env.mem.size());
    input.interesting(&[
        0,
        1,
        base,
        end,
        end.wrapping_sub(4),
        env.vcpus as u64,
        63,
        64,
        u64::MAX,
        0x8000_0000,
        0xffff_ffff,
        0xe000_0000,
        0xffff,
    ])
}

fn check_ret(call: &SbiCall, error: i64, value: u64) {
    assert!(
        (error::LOWEST..=error::SUCCESS).contains(&error),
        "non-standard error {error} for {call:x?}"
    );
    if error != error::SUCCESS {
        assert_eq!(value, 0, "value must be 0 on error ({call:x?})");
    }
}

fn one_call(env: &mut Env, call: &SbiCall) {
    let out_before = env.console_out.len();
    let in_before: Vec<u8> = env.console_in.iter().copied().collect();
    let mem_before = env.mem.bytes().to_vec();
    let states_before = env.states.clone();
    env.events.clear();

    let outcome = dispatch(env, call);

    // Only DBCN console_read writes guest memory, and only one hart can be
    // started per call.
    let mem_changed = env.mem.bytes() != &mem_before[..];
    let starts = env
        .events
        .iter()
        .filter(|e| matches!(e, Ev::Start(..)))
        .count();
    assert!(starts <= 1);
    if starts == 0 {
        assert_eq!(env.states, states_before, "states changed without a start");
    }
    match outcome {
        Outcome::Ret(r) => {
            check_ret(call, r.error, r.value);
            if call.eid == eid::DBCN && r.error == 0 {
                let n = r.value;
                assert!(n <= call.args[0] && n <= DBCN_MAX_BYTES_PER_CALL);
                let lo = call.args[1];
                let off = lo.wrapping_sub(env.mem.base()) as usize;
                match call.fid {
                    fid::dbcn::CONSOLE_WRITE => {
                        let written = &env.console_out[out_before..];
                        assert_eq!(written.len() as u64, n, "console_write count");
                        if n > 0 {
                            assert_eq!(written, &mem_before[off..off + n as usize]);
                        }
                    }
                    fid::dbcn::CONSOLE_READ => {
                        let n = n as usize;
                        let mut expect = mem_before.clone();
                        if n > 0 {
                            let got = &env.mem.bytes()[off..off + n];
                            if !env.lying_reader {
                                // What the console really delivered, in order.
                                assert!(n <= in_before.len());
                                assert_eq!(got, &in_before[..n]);
                            }
                            expect[off..off + n].copy_from_slice(got);
                        }
                        assert_eq!(
                            env.mem.bytes(),
                            &expect[..],
                            "read wrote outside its buffer"
                        );
                    }
                    _ => {}
                }
            }
            if call.eid == eid::BASE && call.fid == fid::base::PROBE_EXTENSION {
                assert_eq!(r.value, u64::from(rivet_sbi::probe(call.args[0])));
            }
            if call.eid == eid::HSM && call.fid == fid::hsm::HART_GET_STATUS && r.error == 0 {
                assert!(r.value <= HartState::ResumePending.id());
            }
            if starts == 1 {
                assert_eq!(
                    (r.error, call.eid, call.fid),
                    (0, eid::HSM, fid::hsm::HART_START)
                );
            }
        }
        Outcome::Legacy(v) => {
            assert!(call.eid <= eid::LEGACY_SHUTDOWN);
            assert!((-5..=255).contains(&v), "legacy return {v}");
        }
        Outcome::Reset { .. } => {
            assert!(call.eid == eid::SRST || call.eid == eid::LEGACY_SHUTDOWN);
        }
        Outcome::HartStop => assert_eq!((call.eid, call.fid), (eid::HSM, fid::hsm::HART_STOP)),
        Outcome::Suspend {
            retentive,
            resume_addr,
            ..
        } => {
            assert_eq!((call.eid, call.fid), (eid::HSM, fid::hsm::HART_SUSPEND));
            if !retentive {
                assert!(
                    env.in_ram(resume_addr, 4),
                    "non-retentive resume outside RAM"
                );
            }
        }
    }
    if mem_changed {
        assert_eq!((call.eid, call.fid), (eid::DBCN, fid::dbcn::CONSOLE_READ));
    }
    if env.console_out.len() != out_before {
        assert!(matches!(
            (call.eid, call.fid),
            (eid::DBCN, _) | (eid::LEGACY_CONSOLE_PUTCHAR, _)
        ));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut env = env_from(&mut input);
    let mut calls = 0;
    while !input.is_empty() && calls < 256 {
        calls += 1;
        match input.u8() {
            // Host-side changes between calls.
            0xf0 => {
                let n = input.below(64) as usize;
                let bytes = input.bytes(n);
                env.console_in.extend(bytes);
            }
            0xf1 => {
                let va = arg(&mut input, &env);
                let mask = input.u64();
                env.masks.push((va, mask));
            }
            0xf2 => {
                if !env.states.is_empty() {
                    let h = input.below(env.states.len() as u64) as usize;
                    env.states[h] = input.pick(&STATES);
                }
            }
            0xf3 => env = env_from(&mut input),
            sel => {
                let eid = if sel & 0x80 != 0 {
                    input.u64()
                } else {
                    EIDS[(sel % 20) as usize]
                };
                let fid = match input.u8() {
                    0xff => input.u64(),
                    f => u64::from(f % 8),
                };
                let mut args = [0u64; 6];
                for a in &mut args {
                    *a = arg(&mut input, &env);
                }
                one_call(&mut env, &SbiCall::new(eid, fid, args));
            }
        }
    }
});
