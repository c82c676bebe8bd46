//! `rivet-gstage`: random map / unmap / translate sequences over a checking
//! `Frames` implementation, compared with a model of the mappings.
//!
//! The frame arena asserts that the tables only touch frames they own
//! (8-byte aligned, allocated, not freed) and frees only what was
//! allocated, exactly. The model is a set of GPA intervals; after every
//! operation the result (including the error variant) and `translate` at
//! the interesting addresses must match it, a failed operation must leave
//! both the mappings and the number of frames in use unchanged, and
//! `destroy` must give every frame back.
//!
//! Input: `arbitrary`-decoded mode, allocator behaviour and operations.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rivet_gstage::{Error, Frames, GStage, Mode, Perms, PAGE_SIZE};

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
/// Host frames handed out start here (16 KiB aligned, below 2^56).
const ARENA_BASE: u64 = 0x10_0000_0000;

/// A table-memory arena that checks every access.
struct Arena {
    frames: HashMap<u64, Box<[u64; 512]>>,
    /// First frame of each live allocation, with its frame count.
    blocks: HashMap<u64, usize>,
    next: u64,
    /// Allocations left before `alloc` starts failing (`None`: unlimited).
    budget: Option<u32>,
    /// Hand out a bad address on the next allocation.
    evil: Option<Evil>,
    /// Bad addresses never repeat (they may be kept if usable).
    evil_next: u64,
}

/// Addresses a broken allocator might return.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Evil {
    /// Not 4 KiB aligned.
    Misaligned,
    /// 4 KiB but not 16 KiB aligned: unusable for the root only.
    NotRootAligned,
    /// Not representable in a PTE (at or above 2^56).
    TooHigh,
}

impl Arena {
    fn new() -> Self {
        Arena {
            frames: HashMap::new(),
            blocks: HashMap::new(),
            next: ARENA_BASE,
            budget: None,
            evil: None,
            evil_next: 0,
        }
    }
    fn in_use(&self) -> usize {
        self.frames.len()
    }
    fn frame(&self, pa: u64) -> &[u64; 512] {
        assert_eq!(pa % 8, 0, "misaligned PTE access {pa:#x}");
        self.frames
            .get(&(pa & !(PAGE_SIZE - 1)))
            .unwrap_or_else(|| panic!("PTE access outside the tables: {pa:#x}"))
    }
}

impl Frames for Arena {
    fn alloc(&mut self, count: usize, align: u64) -> Option<u64> {
        assert!(count >= 1 && align.is_power_of_two() && align >= PAGE_SIZE);
        if let Some(b) = &mut self.budget {
            if *b == 0 {
                return None;
            }
            *b -= 1;
        }
        let pa = match self.evil.take() {
            Some(kind) => {
                self.evil_next += 1;
                let slot = self.evil_next * 0x10_0000;
                match kind {
                    Evil::Misaligned => 0x1000_0000 + slot + 0x808,
                    Evil::NotRootAligned => 0x1000_0000 + slot + 0x1000,
                    Evil::TooHigh => (1 << 56) + slot,
                }
            }
            None => {
                let pa = self.next.next_multiple_of(align);
                self.next = pa + count as u64 * PAGE_SIZE;
                pa
            }
        };
        for i in 0..count as u64 {
            let prev = self.frames.insert(pa + i * PAGE_SIZE, Box::new([0; 512]));
            assert!(prev.is_none(), "frame handed out twice");
        }
        self.blocks.insert(pa, count);
        Some(pa)
    }
    fn free(&mut self, pa: u64, count: usize) {
        assert_eq!(
            self.blocks.remove(&pa),
            Some(count),
            "free({pa:#x}, {count}) of something not allocated that way"
        );
        for i in 0..count as u64 {
            self.frames.remove(&(pa + i * PAGE_SIZE));
        }
    }
    fn read_pte(&self, pa: u64) -> u64 {
        self.frame(pa)[((pa % PAGE_SIZE) / 8) as usize]
    }
    fn write_pte(&mut self, pa: u64, pte: u64) {
        let _ = self.frame(pa);
        self.frames
            .get_mut(&(pa & !(PAGE_SIZE - 1)))
            .expect("checked")[((pa % PAGE_SIZE) / 8) as usize] = pte;
    }
}

/// Mapped GPA intervals: start -> (end, hpa of start, perms).
#[derive(Clone, PartialEq, Debug, Default)]
struct Model(BTreeMap<u64, (u64, u64, Perms)>);

impl Model {
    fn lookup(&self, gpa: u64) -> Option<(u64, Perms)> {
        let (&s, &(e, h, p)) = self.0.range(..=gpa).next_back()?;
        (gpa < e).then(|| (h + (gpa - s), p))
    }
    fn any_in(&self, start: u64, end: u64) -> bool {
        self.0
            .range(..end)
            .next_back()
            .is_some_and(|(_, &(e, _, _))| e > start)
    }
    fn all_in(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        while at < end {
            match self.lookup(at) {
                Some(_) => {
                    let (_, &(e, _, _)) = self.0.range(..=at).next_back().expect("found");
                    at = e;
                }
                None => return false,
            }
        }
        true
    }
    fn insert(&mut self, start: u64, end: u64, hpa: u64, p: Perms) {
        self.0.insert(start, (end, hpa, p));
    }
    fn remove(&mut self, start: u64, end: u64) {
        let hit: Vec<(u64, (u64, u64, Perms))> = self
            .0
            .range(..end)
            .filter(|(_, &(e, _, _))| e > start)
            .map(|(&s, &v)| (s, v))
            .collect();
        for (s, (e, h, p)) in hit {
            self.0.remove(&s);
            if s < start {
                self.0.insert(s, (start, h, p));
            }
            if e > end {
                self.0.insert(end, (e, h + (end - s), p));
            }
        }
    }
}

/// An address: a page-granular spot near interesting boundaries, or raw.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Page(u16),
    Mib2(u16, u16),
    Gib(u16, u16),
    Top(u16),
    Raw(u64),
}

impl Addr {
    fn get(self, mode: Mode) -> u64 {
        match self {
            Addr::Page(p) => u64::from(p) * PAGE_SIZE,
            Addr::Mib2(m, p) => u64::from(m) * MIB2 + u64::from(p % 1024) * PAGE_SIZE,
            Addr::Gib(g, p) => u64::from(g % 4096) * GIB + u64::from(p) * PAGE_SIZE,
            Addr::Top(p) => mode.gpa_limit().wrapping_sub(u64::from(p) * PAGE_SIZE),
            Addr::Raw(r) => r,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Pages(u8),
    Mib2(u8, u8),
    Gib(u8),
    Raw(u64),
}

impl Size {
    fn get(self) -> u64 {
        match self {
            Size::Pages(n) => u64::from(n) * PAGE_SIZE,
            Size::Mib2(n, p) => u64::from(n % 8) * MIB2 + u64::from(p) * PAGE_SIZE,
            Size::Gib(n) => u64::from(n % 8) * GIB,
            Size::Raw(r) => r,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Map {
        gpa: Addr,
        hpa: Addr,
        size: Size,
        r: bool,
        w: bool,
        x: bool,
    },
    Unmap {
        gpa: Addr,
        size: Size,
    },
    Translate {
        gpa: Addr,
        offset: u16,
    },
    /// The next `n` allocations succeed, then they fail.
    Budget(Option<u8>),
    /// The next allocation returns a bad address.
    Evil(Evil),
}

/// Too many 4 KiB leaves would make one input slow, not more interesting.
fn too_slow(gpa: u64, hpa: u64, size: u64) -> bool {
    let delta = gpa.wrapping_sub(hpa);
    let cap = if delta % GIB == 0 {
        64 * GIB
    } else if delta % MIB2 == 0 {
        4 * GIB
    } else {
        16 * MIB2
    };
    size > cap
}

struct World {
    mode: Mode,
    arena: Arena,
    gs: GStage,
    model: Model,
}

impl World {
    fn check_at(&self, gpa: u64) {
        assert_eq!(
            self.gs.translate(&self.arena, gpa),
            self.model
                .lookup(gpa)
                .filter(|_| gpa < self.mode.gpa_limit()),
            "translate({gpa:#x})"
        );
    }

    fn check_around(&self, a: u64, b: u64) {
        for g in [
            a,
            a.wrapping_sub(1),
            a.wrapping_add(PAGE_SIZE - 1),
            b,
            b.wrapping_sub(1),
            b.wrapping_sub(PAGE_SIZE),
        ] {
            self.check_at(g);
        }
        for (&s, &(e, _, _)) in self.model.0.iter().take(8) {
            self.check_at(s);
            self.check_at(e - 1);
            self.check_at(e);
        }
    }

    fn op(&mut self, op: Op) {
        let limit = self.mode.gpa_limit();
        match op {
            Op::Map {
                gpa,
                hpa,
                size,
                r,
                w,
                x,
            } => {
                let (g, h, s) = (
                    gpa.get(self.mode),
                    hpa.get(self.mode) & !(u64::MAX << 57),
                    size.get(),
                );
                if too_slow(g, h, s) {
                    return;
                }
                let perms = Perms { r, w, x };
                let frames = self.arena.in_use();
                let before = self.model.clone();
                let res = self.gs.map(&mut self.arena, g, h, s, perms);
                let expect = if !perms.is_valid() {
                    Err(Error::BadPerms)
                } else if (g | h | s) % PAGE_SIZE != 0 {
                    Err(Error::Unaligned)
                } else if g.checked_add(s).is_none_or(|e| e > limit)
                    || h.checked_add(s).is_none_or(|e| e > 1 << 56)
                {
                    Err(Error::OutOfRange)
                } else if s > 0 && self.model.any_in(g, g + s) {
                    Err(Error::AlreadyMapped)
                } else {
                    Ok(())
                };
                match (res, expect) {
                    (Ok(()), Ok(())) => {
                        if s > 0 {
                            self.model.insert(g, g + s, h, perms);
                        }
                    }
                    (Err(Error::NoMemory), Ok(())) => {
                        assert_eq!(
                            self.arena.in_use(),
                            frames,
                            "map NoMemory leaked or freed frames"
                        );
                    }
                    (got, want) if got == want => {}
                    (got, want) => panic!(
                        "map({g:#x}, {h:#x}, {s:#x}, {perms:?}) = {got:?}, expected {want:?}"
                    ),
                }
                if res.is_err() {
                    assert_eq!(self.model, before);
                    assert_eq!(self.arena.in_use(), frames, "failed map changed the tables");
                }
                self.check_around(g, g.wrapping_add(s));
            }
            Op::Unmap { gpa, size } => {
                let (g, s) = (gpa.get(self.mode), size.get());
                let frames = self.arena.in_use();
                let res = self.gs.unmap(&mut self.arena, g, s);
                let expect = if (g | s) % PAGE_SIZE != 0 {
                    Err(Error::Unaligned)
                } else if g.checked_add(s).is_none_or(|e| e > limit) {
                    Err(Error::OutOfRange)
                } else if s > 0 && !self.model.all_in(g, g + s) {
                    Err(Error::NotMapped)
                } else {
                    Ok(())
                };
                match (res, expect) {
                    (Ok(()), Ok(())) => {
                        if s > 0 {
                            self.model.remove(g, g + s);
                        }
                    }
                    (Err(Error::NoMemory), Ok(())) => {
                        assert_eq!(
                            self.arena.in_use(),
                            frames,
                            "unmap NoMemory changed the tables"
                        );
                    }
                    (got, want) if got == want => {}
                    (got, want) => panic!("unmap({g:#x}, {s:#x}) = {got:?}, expected {want:?}"),
                }
                self.check_around(g, g.wrapping_add(s));
            }
            Op::Translate { gpa, offset } => {
                self.check_at(gpa.get(self.mode).wrapping_add(u64::from(offset)))
            }
            Op::Budget(n) => self.arena.budget = n.map(u32::from),
            Op::Evil(kind) => self.arena.evil = Some(kind),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(m) = u.int_in_range(0u8..=2) else {
        return;
    };
    let mode = [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4][usize::from(m)];
    let mut arena = Arena::new();
    if let Ok(Some(bad)) = u.arbitrary::<Option<Evil>>() {
        // `new` must refuse (and free) a misaligned or too-high root.
        arena.evil = Some(bad);
        match GStage::new(mode, &mut arena) {
            Ok(gs) => panic!("root at unusable {:#x} accepted", gs.root()),
            Err(e) => assert_eq!(e, Error::NoMemory),
        }
        assert_eq!(arena.in_use(), 0);
    }
    let gs = GStage::new(mode, &mut arena).expect("root table");
    assert_eq!(gs.hgatp(0x7fff) >> 60, mode.hgatp_mode());
    assert_eq!((gs.hgatp(0x7fff) >> 44) & 0xffff, 0x3fff);
    let mut w = World {
        mode,
        arena,
        gs,
        model: Model::default(),
    };
    let mut ops = 0;
    while !u.is_empty() && ops < 64 {
        ops += 1;
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        w.op(op);
    }
    // Everything mapped is still there; then tear down.
    let intervals: Vec<(u64, u64)> = w.model.0.iter().map(|(&s, &(e, _, _))| (s, e)).collect();
    for (s, e) in intervals {
        w.check_at(s);
        w.check_at(e - 1);
    }
    let World { mut arena, gs, .. } = w;
    arena.budget = None;
    gs.destroy(&mut arena);
    assert_eq!(arena.in_use(), 0, "destroy leaked frames");
    assert!(arena.blocks.is_empty());
});
