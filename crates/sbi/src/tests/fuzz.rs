//! Random-input sweep: `dispatch` must never panic, never hand the
//! environment an unvalidated request (MockEnv asserts that), and only ever
//! return standard error codes (binary-encoding.adoc,
//! table_standard_sbi_errors).

use super::*;
use crate::{eid, error};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const EIDS: &[u64] = &[
    0x00,
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
    0x08,
    0x09,
    0x0F,
    eid::BASE,
    eid::TIME,
    eid::IPI,
    eid::RFENCE,
    eid::HSM,
    eid::SRST,
    eid::DBCN,
    eid::PMU,
    eid::SUSP,
    eid::SSE,
    0x0800_0000,
    0x0900_0000,
    0x0A00_0000,
    u64::MAX,
    1 << 63,
];

fn interesting(rng: &mut XorShift) -> u64 {
    let specials = [
        0,
        1,
        2,
        3,
        63,
        64,
        0xFF,
        0x8000_0000,
        0xFFFF_FFFF,
        0xFFFF_FFFF_8000_0000,
        RAM_BASE,
        RAM_BASE + 1,
        RAM_END - 4,
        RAM_END - 1,
        RAM_END,
        RAM_SIZE,
        1 << 32,
        1 << 63,
        u64::MAX,
        u64::MAX - 1,
        u64::MAX - 63,
    ];
    match rng.next() % 4 {
        0 => rng.next(),
        1 => rng.next() % 300,
        _ => rng
            .pick(&specials)
            .wrapping_add(rng.next() % 3)
            .wrapping_sub(1),
    }
}

fn random_env(rng: &mut XorShift) -> MockEnv {
    let mut env = MockEnv::new((rng.next() % 70) as usize);
    let states = [
        HartState::Started,
        HartState::Stopped,
        HartState::StartPending,
        HartState::StopPending,
        HartState::Suspended,
        HartState::SuspendPending,
        HartState::ResumePending,
    ];
    for s in env.states.iter_mut() {
        *s = rng.pick(&states);
    }
    env.lying_reader = rng.next().is_multiple_of(8);
    env.ipi_pending = rng.next().is_multiple_of(2);
    for _ in 0..3 {
        let va = interesting(rng);
        let mask = interesting(rng);
        env.legacy_masks.push((va, mask));
    }
    env
}

/// 100k random calls: no panic, only standard error codes, legacy returns
/// in the range Rivet documents (-5..=255), and every env request valid.
#[test]
fn random_calls_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut env = random_env(&mut rng);
    // [Ret ok, Ret err, Legacy, Reset, HartStop, Suspend, env actions]
    let mut seen = [0u32; 7];
    for i in 0..100_000u32 {
        if i % 500 == 0 {
            env = random_env(&mut rng);
        }
        if i % 7 == 0 {
            env.console_in
                .extend((0..rng.next() % 600).map(|x| x as u8));
        }
        let eid = if rng.next().is_multiple_of(8) {
            rng.next()
        } else {
            rng.pick(EIDS)
        };
        let fid = if rng.next().is_multiple_of(8) {
            rng.next()
        } else {
            rng.next() % 8
        };
        let a0 = if rng.next().is_multiple_of(4) {
            // Type-like values: suspend types, reset types, small hart IDs.
            rng.pick(&[
                0,
                1,
                2,
                0x8000_0000,
                0xFFFF_FFFF_8000_0000,
                1 << 32,
                0xF000_0000,
            ])
        } else {
            interesting(&mut rng)
        };
        let args = [
            a0,
            interesting(&mut rng),
            interesting(&mut rng),
            interesting(&mut rng),
            interesting(&mut rng),
            interesting(&mut rng),
        ];
        let before = env.events.len();
        let out = crate::dispatch(&mut env, &SbiCall::new(eid, fid, args));
        if env.events.len() > before {
            seen[6] += 1;
        }
        seen[match out {
            Outcome::Ret(r) if r.error == 0 => 0,
            Outcome::Ret(_) => 1,
            Outcome::Legacy(_) => 2,
            Outcome::Reset { .. } => 3,
            Outcome::HartStop => 4,
            Outcome::Suspend { .. } => 5,
        }] += 1;
        match out {
            Outcome::Ret(r) => {
                assert!(
                    (error::LOWEST..=error::SUCCESS).contains(&r.error),
                    "{eid:#x}/{fid:#x}/{args:x?} -> {r:?}"
                );
                if r.error != error::SUCCESS {
                    assert_eq!(r.value, 0);
                }
            }
            Outcome::Legacy(v) => {
                assert!(eid <= 0x08);
                assert!((-5..=255).contains(&v), "{eid:#x} -> {v}");
            }
            Outcome::Reset { .. } => assert!(eid == crate::eid::SRST || eid == 0x08),
            Outcome::HartStop | Outcome::Suspend { .. } => assert_eq!(eid, crate::eid::HSM),
        }
        if env.events.len() > 10_000 {
            env.events.clear();
        }
        if env.console_out.len() > 1 << 20 {
            env.console_out.clear();
        }
    }
    // The sweep must reach every kind of outcome and real side effects.
    assert!(seen.iter().all(|&n| n >= 20), "coverage {seen:?}");
}
