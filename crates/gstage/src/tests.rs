#![allow(clippy::unwrap_used, clippy::expect_used)]

extern crate std;

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::vec;
use std::vec::Vec;

const KIB4: u64 = 4096;
const MIB2: u64 = 2 << 20;
const GIB1: u64 = 1 << 30;

/// Test allocator over a hash map of frames. Addresses are handed out by a
/// bump pointer and never reused, so any access to a freed frame panics.
struct Arena {
    frames: HashMap<u64, Vec<u64>>,
    blocks: BTreeMap<u64, usize>,
    next: u64,
    live: usize,
    /// Allocation calls that may still succeed (None = unlimited).
    budget: Option<usize>,
    /// Return misaligned addresses (to test that they are refused).
    misalign: bool,
    alloc_calls: usize,
}

impl Arena {
    fn new() -> Self {
        Arena {
            frames: HashMap::new(),
            blocks: BTreeMap::new(),
            // Deliberately not 16 KiB aligned, so root alignment is exercised.
            next: 0x8000_1000,
            live: 0,
            budget: None,
            misalign: false,
            alloc_calls: 0,
        }
    }

    /// Full contents of every live frame: equal snapshots mean identical
    /// table state.
    fn snapshot(&self) -> BTreeMap<u64, Vec<u64>> {
        self.frames.iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

impl Frames for Arena {
    fn alloc(&mut self, count: usize, align: u64) -> Option<u64> {
        assert!(count > 0);
        assert!(
            align.is_power_of_two() && align >= 4096,
            "bad align {align:#x}"
        );
        self.alloc_calls += 1;
        if let Some(b) = self.budget.as_mut() {
            if *b == 0 {
                return None;
            }
            *b -= 1;
        }
        let mut pa = (self.next + align - 1) & !(align - 1);
        if self.misalign {
            pa += 4096;
        }
        self.next = pa + count as u64 * 4096;
        for i in 0..count as u64 {
            self.frames.insert(pa + i * 4096, vec![0u64; 512]);
        }
        self.blocks.insert(pa, count);
        self.live += count;
        Some(pa)
    }

    fn free(&mut self, pa: u64, count: usize) {
        assert_eq!(
            self.blocks.remove(&pa),
            Some(count),
            "free of {pa:#x} x{count}"
        );
        for i in 0..count as u64 {
            assert!(self.frames.remove(&(pa + i * 4096)).is_some());
        }
        self.live -= count;
    }

    fn read_pte(&self, pa: u64) -> u64 {
        assert_eq!(pa % 8, 0);
        let f = self
            .frames
            .get(&(pa & !0xfff))
            .expect("read outside live frames");
        f[((pa & 0xfff) / 8) as usize]
    }

    fn write_pte(&mut self, pa: u64, pte: u64) {
        assert_eq!(pa % 8, 0);
        let f = self
            .frames
            .get_mut(&(pa & !0xfff))
            .expect("write outside live frames");
        f[((pa & 0xfff) / 8) as usize] = pte;
    }
}

const MODES: [Mode; 3] = [Mode::Sv39x4, Mode::Sv48x4, Mode::Sv57x4];

/// A leaf found by walking the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leaf {
    gpa: u64,
    hpa: u64,
    size: u64,
    perms: Perms,
}

/// Walks every table, checks the structural invariants, and returns the
/// leaves in GPA order plus the number of non-root tables.
fn walk(gs: &GStage, a: &Arena) -> (Vec<Leaf>, usize) {
    fn rec(
        a: &Arena,
        table: u64,
        level: usize,
        tbase: u64,
        count: u64,
        leaves: &mut Vec<Leaf>,
        tables: &mut usize,
    ) {
        for i in 0..count {
            let e = a.read_pte(table + i * 8);
            let gpa = tbase + i * span(level);
            if e & pte::V == 0 {
                assert_eq!(e, 0, "invalid entries are all zero");
                continue;
            }
            assert_eq!(e >> 54, 0, "reserved/PBMT/N bits clear");
            if pte::is_leaf(e) {
                let flags = pte::V | pte::U | pte::A | pte::D;
                assert_eq!(e & flags, flags, "leaf has V|U|A|D: {e:#x}");
                assert_eq!(e & pte::G, 0, "G clear");
                let perms = Perms::from_pte(e);
                assert!(perms.is_valid());
                assert!(level <= MAX_LEAF_LEVEL, "leaf at level {level}");
                let size = span(level);
                assert_eq!(pte::pa(e) % size, 0, "superpage aligned");
                leaves.push(Leaf {
                    gpa,
                    hpa: pte::pa(e),
                    size,
                    perms,
                });
            } else {
                assert_eq!(e & 0x3ff, pte::V, "non-leaf has only V");
                assert!(level > 0);
                *tables += 1;
                let child = pte::pa(e);
                assert!(!table_is_empty(a, child, TABLE_ENTRIES), "empty table kept");
                rec(a, child, level - 1, gpa, TABLE_ENTRIES, leaves, tables);
            }
        }
    }
    let mut leaves = Vec::new();
    let mut tables = 0;
    rec(
        a,
        gs.root(),
        gs.mode().levels() - 1,
        0,
        ROOT_ENTRIES,
        &mut leaves,
        &mut tables,
    );
    assert_eq!(a.live, ROOT_FRAMES + tables, "no leaked frames");
    (leaves, tables)
}

fn leaf_level(gs: &GStage, a: &Arena, gpa: u64) -> Option<usize> {
    gs.leaf_at(a, gpa).map(|(l, _)| l)
}

#[test]
fn mode_constants() {
    assert_eq!(Mode::Sv39x4.hgatp_mode(), 8);
    assert_eq!(Mode::Sv48x4.hgatp_mode(), 9);
    assert_eq!(Mode::Sv57x4.hgatp_mode(), 10);
    assert_eq!(Mode::Sv39x4.levels(), 3);
    assert_eq!(Mode::Sv48x4.levels(), 4);
    assert_eq!(Mode::Sv57x4.levels(), 5);
    assert_eq!(Mode::Sv39x4.gpa_bits(), 41);
    assert_eq!(Mode::Sv48x4.gpa_bits(), 50);
    assert_eq!(Mode::Sv57x4.gpa_bits(), 59);
    assert_eq!(
        Mode::all_widest_first(),
        [Mode::Sv57x4, Mode::Sv48x4, Mode::Sv39x4]
    );
    for m in MODES {
        assert_eq!(Mode::from_hgatp_mode(m.hgatp_mode()), Some(m));
        // gpa bits = 12 + 9 * levels + 2 (the widened root).
        assert_eq!(m.gpa_bits() as usize, 12 + 9 * m.levels() + 2);
    }
    assert_eq!(Mode::from_hgatp_mode(0), None);
    assert_eq!(Mode::from_hgatp_mode(11), None);
}

#[test]
fn perms_validity() {
    for bits in 0..8u8 {
        let p = Perms {
            r: bits & 1 != 0,
            w: bits & 2 != 0,
            x: bits & 4 != 0,
        };
        let expect = !matches!((p.r, p.w, p.x), (false, false, false) | (false, true, _));
        assert_eq!(p.is_valid(), expect, "{p:?}");
    }
    for p in [Perms::R, Perms::RW, Perms::RX, Perms::RWX, Perms::X] {
        assert!(p.is_valid());
    }
}

#[test]
fn root_is_16k_aligned_4_frames() {
    for m in MODES {
        let mut a = Arena::new();
        let gs = GStage::new(m, &mut a).unwrap();
        assert_eq!(gs.root() % ROOT_SIZE, 0);
        assert_eq!(a.live, 4);
        assert_eq!(a.blocks.get(&gs.root()), Some(&4));
        assert_eq!(gs.mode(), m);
        assert!(table_is_empty(&a, gs.root(), ROOT_ENTRIES));
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn new_fails_cleanly() {
    let mut a = Arena::new();
    a.budget = Some(0);
    assert_eq!(GStage::new(Mode::Sv39x4, &mut a), Err(Error::NoMemory));
    assert_eq!(a.live, 0);
    let mut a = Arena::new();
    a.misalign = true;
    assert_eq!(GStage::new(Mode::Sv48x4, &mut a), Err(Error::NoMemory));
    assert_eq!(a.live, 0, "misaligned root given back");
}

#[test]
fn misaligned_table_frame_refused() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv39x4, &mut a).unwrap();
    a.misalign = true; // +4096 keeps 4 KiB alignment, so still usable
    gs.map(&mut a, 0, 0x1000_0000, KIB4, Perms::RW).unwrap();
    walk(&gs, &a);
    gs.destroy(&mut a);
    assert_eq!(a.live, 0);
}

#[test]
fn hgatp_fields() {
    for m in MODES {
        let mut a = Arena::new();
        let gs = GStage::new(m, &mut a).unwrap();
        for vmid in [0u16, 1, 0x1234, 0x3fff, 0x4000, 0xffff] {
            let h = gs.hgatp(vmid);
            assert_eq!(h >> 60, m.hgatp_mode());
            assert_eq!((h >> 58) & 3, 0, "bits 59:58 zero");
            assert_eq!((h >> 44) & 0x3fff, u64::from(vmid) & 0x3fff);
            assert_eq!(h & ((1 << 44) - 1), gs.root() >> 12);
            assert_eq!(
                (h & ((1 << 44) - 1)) % 4,
                0,
                "root PPN has low 2 bits clear"
            );
        }
        gs.destroy(&mut a);
    }
    // Concrete value.
    let mut a = Arena::new();
    let gs = GStage::new(Mode::Sv48x4, &mut a).unwrap();
    assert_eq!(gs.hgatp(5), 9 << 60 | 5 << 44 | gs.root() >> 12);
    gs.destroy(&mut a);
}

#[test]
fn map_translate_4k() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        gs.map(&mut a, 0x8000_0000, 0x1_2345_6000, KIB4, Perms::RW)
            .unwrap();
        assert_eq!(
            gs.translate(&a, 0x8000_0000),
            Some((0x1_2345_6000, Perms::RW))
        );
        assert_eq!(
            gs.translate(&a, 0x8000_0abc),
            Some((0x1_2345_6abc, Perms::RW))
        );
        assert_eq!(
            gs.translate(&a, 0x8000_0fff),
            Some((0x1_2345_6fff, Perms::RW))
        );
        assert_eq!(gs.translate(&a, 0x8000_1000), None);
        assert_eq!(gs.translate(&a, 0x7fff_ffff), None);
        assert_eq!(leaf_level(&gs, &a, 0x8000_0000), Some(0));
        // One table per level below the root.
        let (leaves, tables) = walk(&gs, &a);
        assert_eq!(tables, m.levels() - 1);
        assert_eq!(
            leaves,
            vec![Leaf {
                gpa: 0x8000_0000,
                hpa: 0x1_2345_6000,
                size: KIB4,
                perms: Perms::RW
            }]
        );
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn map_translate_2m_uses_superpage() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        gs.map(&mut a, 0x8020_0000, 0x4_0040_0000, 2 * MIB2, Perms::RX)
            .unwrap();
        for off in [0, 0x1234, MIB2 - 1, MIB2, 2 * MIB2 - 8] {
            assert_eq!(
                gs.translate(&a, 0x8020_0000 + off),
                Some((0x4_0040_0000 + off, Perms::RX))
            );
        }
        assert_eq!(gs.translate(&a, 0x8020_0000 + 2 * MIB2), None);
        assert_eq!(leaf_level(&gs, &a, 0x8020_0000), Some(1));
        assert_eq!(leaf_level(&gs, &a, 0x8040_0000), Some(1));
        let (leaves, tables) = walk(&gs, &a);
        assert_eq!(leaves.len(), 2);
        assert_eq!(tables, m.levels() - 2, "no level-0 table");
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn map_translate_1g_uses_superpage() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        gs.map(&mut a, 3 * GIB1, 7 * GIB1, 2 * GIB1, Perms::RWX)
            .unwrap();
        assert_eq!(gs.translate(&a, 3 * GIB1), Some((7 * GIB1, Perms::RWX)));
        assert_eq!(
            gs.translate(&a, 4 * GIB1 + 0x123),
            Some((8 * GIB1 + 0x123, Perms::RWX))
        );
        assert_eq!(
            gs.translate(&a, 5 * GIB1 - 1),
            Some((9 * GIB1 - 1, Perms::RWX))
        );
        assert_eq!(gs.translate(&a, 5 * GIB1), None);
        assert_eq!(leaf_level(&gs, &a, 3 * GIB1), Some(2));
        let (leaves, tables) = walk(&gs, &a);
        assert_eq!(leaves.len(), 2);
        // Sv39x4: 1 GiB leaves sit in the root itself.
        assert_eq!(tables, m.levels() - 3);
        if m == Mode::Sv39x4 {
            assert_eq!(a.live, 4);
        }
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn mixed_sizes_grow_and_shrink() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        let gpa = GIB1 - MIB2 - KIB4;
        let hpa = gpa + 4 * GIB1; // congruent modulo 1 GiB
        let size = KIB4 + MIB2 + GIB1 + MIB2 + KIB4;
        gs.map(&mut a, gpa, hpa, size, Perms::RWX).unwrap();
        let (leaves, _) = walk(&gs, &a);
        let expect = [
            (GIB1 - MIB2 - KIB4, KIB4),
            (GIB1 - MIB2, MIB2),
            (GIB1, GIB1),
            (2 * GIB1, MIB2),
            (2 * GIB1 + MIB2, KIB4),
        ];
        assert_eq!(leaves.len(), expect.len());
        for (l, (g, s)) in leaves.iter().zip(expect) {
            assert_eq!((l.gpa, l.size, l.hpa), (g, s, g + 4 * GIB1));
        }
        for g in [
            gpa,
            gpa + 0xfff,
            GIB1 - 1,
            GIB1,
            2 * GIB1 - 1,
            2 * GIB1 + MIB2 + 0xfff,
        ] {
            assert_eq!(
                gs.translate(&a, g),
                Some((g + 4 * GIB1, Perms::RWX)),
                "{g:#x}"
            );
        }
        assert_eq!(gs.translate(&a, gpa - 1), None);
        assert_eq!(gs.translate(&a, gpa + size), None);
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn hpa_alignment_limits_page_size() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv39x4, &mut a).unwrap();
    // GPA 1 GiB aligned but HPA only 4 KiB aligned: 4 KiB pages only.
    gs.map(&mut a, GIB1, 0x9000_1000, 2 * MIB2, Perms::RW)
        .unwrap();
    let (leaves, tables) = walk(&gs, &a);
    assert_eq!(leaves.len(), 1024);
    assert!(leaves.iter().all(|l| l.size == KIB4));
    assert_eq!(tables, 1 + 2);
    // HPA 2 MiB aligned only: 2 MiB pages even though GPA allows 1 GiB.
    gs.map(&mut a, 4 * GIB1, 0x10_0020_0000, GIB1, Perms::RW)
        .unwrap();
    assert_eq!(leaf_level(&gs, &a, 4 * GIB1), Some(1));
    assert_eq!(leaf_level(&gs, &a, 5 * GIB1 - KIB4), Some(1));
    let (leaves, _) = walk(&gs, &a);
    assert_eq!(leaves.len(), 1024 + 512);
    assert_eq!(
        gs.translate(&a, 5 * GIB1 - 1),
        Some((0x10_4020_0000 - 1, Perms::RW))
    );
    gs.destroy(&mut a);
    assert_eq!(a.live, 0);
}

#[test]
fn pte_bits() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv39x4, &mut a).unwrap();
    gs.map(&mut a, 0, 0x40_0000_0000, GIB1, Perms::RWX).unwrap();
    let e = a.read_pte(gs.root());
    assert_eq!(
        e & 0x3ff,
        pte::V | pte::R | pte::W | pte::X | pte::U | pte::A | pte::D
    );
    assert_eq!(e >> 10, 0x40_0000_0000 >> 12);
    gs.map(&mut a, 2 * GIB1 + MIB2 + KIB4, 0x5000, KIB4, Perms::R)
        .unwrap();
    let e2 = a.read_pte(gs.root() + 2 * 8);
    assert_eq!(e2 & 0x3ff, pte::V, "non-leaf: only V");
    let l1 = pte::pa(e2);
    let e1 = a.read_pte(l1 + 8);
    assert_eq!(e1 & 0x3ff, pte::V);
    let e0 = a.read_pte(pte::pa(e1) + 8);
    assert_eq!(
        e0,
        (0x5000 >> 12) << 10 | pte::V | pte::R | pte::U | pte::A | pte::D
    );
    // Execute-only.
    gs.map(&mut a, 3 * GIB1, 0x6000, KIB4, Perms::X).unwrap();
    assert_eq!(gs.translate(&a, 3 * GIB1 + 4), Some((0x6004, Perms::X)));
    gs.destroy(&mut a);
    assert_eq!(a.live, 0);
}

#[test]
fn root_uses_two_extra_index_bits() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        let top_span = span(m.levels() - 1);
        let gpa = 2047 * top_span; // last root entry
        gs.map(&mut a, gpa, 0x1000, KIB4, Perms::RW).unwrap();
        assert_ne!(a.read_pte(gs.root() + 2047 * 8), 0);
        assert_eq!(gs.translate(&a, gpa), Some((0x1000, Perms::RW)));
        assert_eq!(gs.translate(&a, gpa - 2048 * top_span / 2), None);
        gs.destroy(&mut a);
    }
}

#[test]
fn width_limits() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        let lim = m.gpa_limit();
        assert_eq!(
            gs.map(&mut a, lim, 0, KIB4, Perms::RW),
            Err(Error::OutOfRange)
        );
        assert_eq!(
            gs.map(&mut a, lim - KIB4, 0, 2 * KIB4, Perms::RW),
            Err(Error::OutOfRange)
        );
        assert_eq!(
            gs.map(&mut a, !0xfff, 0, KIB4, Perms::RW),
            Err(Error::OutOfRange)
        );
        assert_eq!(
            gs.map(&mut a, KIB4, 0, !0xfff, Perms::RW),
            Err(Error::OutOfRange),
            "gpa + size overflows"
        );
        assert_eq!(
            gs.map(&mut a, lim, 0, 0, Perms::RW),
            Ok(()),
            "empty range at the end"
        );
        assert_eq!(a.live, 4);
        // Top page fits.
        gs.map(&mut a, lim - KIB4, 0x2000, KIB4, Perms::RW).unwrap();
        assert_eq!(gs.translate(&a, lim - 1), Some((0x2fff, Perms::RW)));
        assert_eq!(gs.translate(&a, lim), None);
        assert_eq!(gs.translate(&a, u64::MAX), None);
        // The top 1 GiB fits as a superpage.
        gs.map(&mut a, lim - 2 * GIB1, 3 * GIB1, GIB1, Perms::RW)
            .unwrap();
        assert_eq!(leaf_level(&gs, &a, lim - 2 * GIB1), Some(2));
        // Host side: 56-bit PA space.
        let hlim = 1u64 << 56;
        gs.map(&mut a, 0, hlim - KIB4, KIB4, Perms::RW).unwrap();
        assert_eq!(
            gs.translate(&a, 0x10),
            Some((hlim - KIB4 + 0x10, Perms::RW))
        );
        assert_eq!(
            gs.map(&mut a, KIB4, hlim - KIB4, 2 * KIB4, Perms::RW),
            Err(Error::OutOfRange)
        );
        assert_eq!(
            gs.map(&mut a, KIB4, hlim, KIB4, Perms::RW),
            Err(Error::OutOfRange)
        );
        assert_eq!(
            gs.map(&mut a, KIB4, !0xfff, KIB4, Perms::RW),
            Err(Error::OutOfRange)
        );
        // unmap range checks.
        assert_eq!(gs.unmap(&mut a, lim, KIB4), Err(Error::OutOfRange));
        assert_eq!(
            gs.unmap(&mut a, lim - KIB4, 2 * KIB4),
            Err(Error::OutOfRange)
        );
        assert_eq!(gs.unmap(&mut a, KIB4, !0xfff), Err(Error::OutOfRange));
        gs.unmap(&mut a, lim - KIB4, KIB4).unwrap();
        assert_eq!(gs.translate(&a, lim - 1), None);
        walk(&gs, &a);
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn unaligned_and_bad_perms() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv48x4, &mut a).unwrap();
    for (g, h, s) in [
        (1, 0, KIB4),
        (0x800, 0, KIB4),
        (0, 8, KIB4),
        (0, 0, 100),
        (0, 0, KIB4 + 1),
    ] {
        assert_eq!(
            gs.map(&mut a, g, h, s, Perms::RW),
            Err(Error::Unaligned),
            "{g:#x} {h:#x} {s:#x}"
        );
    }
    assert_eq!(gs.unmap(&mut a, 0x10, KIB4), Err(Error::Unaligned));
    assert_eq!(gs.unmap(&mut a, 0, 0x10), Err(Error::Unaligned));
    for p in [
        Perms {
            r: false,
            w: false,
            x: false,
        },
        Perms {
            r: false,
            w: true,
            x: false,
        },
        Perms {
            r: false,
            w: true,
            x: true,
        },
    ] {
        assert_eq!(gs.map(&mut a, 0, 0, KIB4, p), Err(Error::BadPerms));
    }
    assert_eq!(a.live, 4);
    assert!(table_is_empty(&a, gs.root(), ROOT_ENTRIES));
    assert_eq!(gs.unmap(&mut a, 0, 0), Ok(()));
    gs.destroy(&mut a);
    assert_eq!(a.live, 0);
}

#[test]
fn already_mapped_changes_nothing() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        gs.map(
            &mut a,
            4 * GIB1 + 5 * MIB2 + 3 * KIB4,
            0x1000,
            KIB4,
            Perms::RW,
        )
        .unwrap();
        gs.map(&mut a, 8 * GIB1, 16 * GIB1, GIB1, Perms::RWX)
            .unwrap();
        let snap = a.snapshot();
        let live = a.live;
        let attempts = [
            // Starts far before (would create tables first), ends on the 4K page.
            (GIB1, 3 * GIB1 + 5 * MIB2 + 4 * KIB4),
            // Exactly the page.
            (4 * GIB1 + 5 * MIB2 + 3 * KIB4, KIB4),
            // Inside the 1 GiB superpage.
            (8 * GIB1 + 3 * MIB2 + KIB4, KIB4),
            // Covers the superpage and more.
            (7 * GIB1, 3 * GIB1),
            // Starts in an unmapped gap and runs into the superpage's last 4K.
            (9 * GIB1 - KIB4, 2 * KIB4),
        ];
        for (g, s) in attempts {
            assert_eq!(
                gs.map(&mut a, g, g, s, Perms::RW),
                Err(Error::AlreadyMapped),
                "{g:#x}"
            );
            assert_eq!(a.snapshot(), snap);
            assert_eq!(a.live, live);
        }
        // Adjacent ranges are fine.
        gs.map(&mut a, 9 * GIB1, 0, KIB4, Perms::RW).unwrap();
        gs.map(&mut a, 8 * GIB1 - KIB4, 0, KIB4, Perms::RW).unwrap();
        walk(&gs, &a);
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn unmap_splits_1g_superpage() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv39x4, &mut a).unwrap();
    let base = GIB1;
    let hbase = 5 * GIB1;
    gs.map(&mut a, base, hbase, GIB1, Perms::RWX).unwrap();
    assert_eq!(a.live, 4);
    let hole = base + 3 * MIB2 + KIB4;
    gs.unmap(&mut a, hole, KIB4).unwrap();
    // 1 GiB -> table of 2 MiB leaves; the 2 MiB one -> table of 4 KiB leaves.
    assert_eq!(a.live, 6);
    let (leaves, _) = walk(&gs, &a);
    assert_eq!(leaves.len(), 511 + 511);
    for page in (0..GIB1).step_by(KIB4 as usize) {
        let g = base + page;
        let t = gs.translate(&a, g + 0x18);
        if g == hole {
            assert_eq!(t, None);
        } else {
            assert_eq!(t, Some((hbase + page + 0x18, Perms::RWX)), "{g:#x}");
        }
    }
    assert_eq!(leaf_level(&gs, &a, base), Some(1));
    assert_eq!(leaf_level(&gs, &a, base + 3 * MIB2), Some(0));
    // Unmap the rest piecewise; tables disappear when empty.
    gs.unmap(&mut a, base, 3 * MIB2 + KIB4).unwrap();
    assert_eq!(a.live, 6);
    gs.unmap(&mut a, hole + KIB4, base + GIB1 - hole - KIB4)
        .unwrap();
    assert_eq!(a.live, 4);
    assert!(table_is_empty(&a, gs.root(), ROOT_ENTRIES));
    gs.destroy(&mut a);
    assert_eq!(a.live, 0);
}

#[test]
fn unmap_middle_of_2m_and_span_boundaries() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        gs.map(&mut a, 0, 0, 4 * MIB2, Perms::RW).unwrap();
        // Range straddles two 2 MiB pages, partially each.
        gs.unmap(&mut a, MIB2 - 2 * KIB4, 4 * KIB4).unwrap();
        let (leaves, _) = walk(&gs, &a);
        let total: u64 = leaves.iter().map(|l| l.size).sum();
        assert_eq!(total, 4 * MIB2 - 4 * KIB4);
        for g in (0..4 * MIB2).step_by(KIB4 as usize) {
            let hole = (MIB2 - 2 * KIB4..MIB2 + 2 * KIB4).contains(&g);
            assert_eq!(gs.translate(&a, g).is_none(), hole, "{g:#x}");
            if !hole {
                assert_eq!(gs.translate(&a, g), Some((g, Perms::RW)));
            }
        }
        assert_eq!(
            leaf_level(&gs, &a, 2 * MIB2),
            Some(1),
            "untouched 2 MiB page kept"
        );
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn unmap_not_mapped_changes_nothing() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv48x4, &mut a).unwrap();
    gs.map(&mut a, GIB1, GIB1, GIB1, Perms::RW).unwrap();
    gs.map(&mut a, 2 * GIB1 + KIB4, 0, KIB4, Perms::RW).unwrap();
    let snap = a.snapshot();
    for (g, s) in [
        (0, KIB4),
        (GIB1 - KIB4, 2 * KIB4),
        (GIB1 + MIB2 + KIB4, GIB1),
        (2 * GIB1, 2 * KIB4),
        (100 * GIB1, KIB4),
    ] {
        assert_eq!(gs.unmap(&mut a, g, s), Err(Error::NotMapped), "{g:#x}");
        assert_eq!(a.snapshot(), snap);
    }
    gs.unmap(&mut a, GIB1, GIB1).unwrap();
    gs.unmap(&mut a, 2 * GIB1 + KIB4, KIB4).unwrap();
    assert_eq!(a.live, 4);
    assert_eq!(gs.unmap(&mut a, GIB1, KIB4), Err(Error::NotMapped));
    gs.destroy(&mut a);
    assert_eq!(a.live, 0);
}

#[test]
fn map_no_memory_rolls_back() {
    for m in MODES {
        // Mapping one 4 KiB page far from anything needs levels-1 tables;
        // fail at every possible point.
        let needed = m.levels() - 1;
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        gs.map(&mut a, 0, 0, KIB4, Perms::RW).unwrap();
        let snap = a.snapshot();
        let live = a.live;
        let target = m.gpa_limit() - KIB4;
        for budget in 0..needed {
            a.budget = Some(budget);
            assert_eq!(
                gs.map(&mut a, target, 0x3000, KIB4, Perms::RW),
                Err(Error::NoMemory)
            );
            assert_eq!(a.snapshot(), snap, "budget {budget}");
            assert_eq!(a.live, live);
        }
        // A large multi-table range failing half way also rolls back.
        let calls = a.alloc_calls;
        a.budget = None;
        gs.map(&mut a, 3 * GIB1 + KIB4, 0, 3 * MIB2, Perms::RW)
            .unwrap();
        let big_needed = a.alloc_calls - calls;
        gs.unmap(&mut a, 3 * GIB1 + KIB4, 3 * MIB2).unwrap();
        assert_eq!(a.snapshot(), snap);
        for budget in 0..big_needed {
            a.budget = Some(budget);
            assert_eq!(
                gs.map(&mut a, 3 * GIB1 + KIB4, 0, 3 * MIB2, Perms::RW),
                Err(Error::NoMemory)
            );
            assert_eq!(a.snapshot(), snap, "budget {budget}");
        }
        a.budget = None;
        // Later use still works.
        gs.map(&mut a, target, 0x3000, KIB4, Perms::RW).unwrap();
        assert_eq!(gs.translate(&a, target + 1), Some((0x3001, Perms::RW)));
        assert_eq!(a.live, live + needed);
        walk(&gs, &a);
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}

#[test]
fn unmap_no_memory_changes_nothing() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv39x4, &mut a).unwrap();
    gs.map(&mut a, 0, 0, 2 * GIB1, Perms::RWX).unwrap();
    let snap = a.snapshot();
    // Range cuts into both 1 GiB pages at 4 KiB granularity: 4 splits.
    let (g, s) = (GIB1 - MIB2 - KIB4, 2 * MIB2 + 2 * KIB4);
    assert_eq!(gs.splits_needed(&a, g, g + s), 4);
    for budget in 0..4 {
        a.budget = Some(budget);
        assert_eq!(gs.unmap(&mut a, g, s), Err(Error::NoMemory));
        assert_eq!(a.snapshot(), snap, "budget {budget}");
        assert_eq!(a.live, 4);
    }
    a.budget = Some(4);
    gs.unmap(&mut a, g, s).unwrap();
    assert_eq!(a.live, 8);
    assert_eq!(gs.translate(&a, g - 1), Some((g - 1, Perms::RWX)));
    assert_eq!(gs.translate(&a, g), None);
    assert_eq!(gs.translate(&a, g + s - 1), None);
    assert_eq!(gs.translate(&a, g + s), Some((g + s, Perms::RWX)));
    walk(&gs, &a);
    gs.destroy(&mut a);
    assert_eq!(a.live, 0);
}

#[test]
fn splits_shared_between_ends() {
    let mut a = Arena::new();
    let mut gs = GStage::new(Mode::Sv39x4, &mut a).unwrap();
    gs.map(&mut a, 0, 0, GIB1, Perms::RW).unwrap();
    // Both ends inside the same 2 MiB page inside the same 1 GiB page: one
    // split of the 1 GiB page and one of the 2 MiB page.
    assert_eq!(
        gs.splits_needed(&a, 5 * MIB2 + KIB4, 5 * MIB2 + 3 * KIB4),
        2
    );
    // Ends in different 2 MiB pages of the same 1 GiB page: 1 + 2.
    assert_eq!(
        gs.splits_needed(&a, 5 * MIB2 + KIB4, 7 * MIB2 + 3 * KIB4),
        3
    );
    // 2 MiB aligned ends: just the 1 GiB split.
    assert_eq!(gs.splits_needed(&a, 5 * MIB2, 7 * MIB2), 1);
    a.budget = Some(2);
    gs.unmap(&mut a, 5 * MIB2 + KIB4, 2 * KIB4).unwrap();
    assert_eq!(a.live, 6);
    walk(&gs, &a);
    gs.destroy(&mut a);
}

#[test]
fn destroy_frees_everything() {
    for m in MODES {
        let mut a = Arena::new();
        let mut gs = GStage::new(m, &mut a).unwrap();
        let lim = m.gpa_limit();
        gs.map(&mut a, 0, 0, 3 * GIB1 + 5 * MIB2 + 7 * KIB4, Perms::RWX)
            .unwrap();
        gs.map(&mut a, lim / 2 + KIB4, 0x1000, 600 * KIB4, Perms::R)
            .unwrap();
        gs.map(&mut a, lim - MIB2, 0x20_0000, MIB2, Perms::RW)
            .unwrap();
        gs.unmap(&mut a, GIB1 + KIB4, KIB4).unwrap();
        let (_, tables) = walk(&gs, &a);
        assert!(tables > 5);
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
        assert!(a.frames.is_empty());
    }
}

// ---- randomized comparison against a simple interval model ----

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Non-overlapping mapped intervals: gpa -> (size, hpa, perms).
type Model = BTreeMap<u64, (u64, u64, Perms)>;

fn model_overlaps(m: &Model, g: u64, e: u64) -> bool {
    m.iter().any(|(&mg, &(ms, _, _))| mg < e && g < mg + ms)
}

fn model_covered(m: &Model, g: u64, e: u64) -> bool {
    let mut cur = g;
    for (&mg, &(ms, _, _)) in m.range(..e) {
        if mg + ms <= cur {
            continue;
        }
        if mg > cur {
            return false;
        }
        cur = mg + ms;
        if cur >= e {
            return true;
        }
    }
    cur >= e
}

fn model_remove(m: &mut Model, g: u64, e: u64) {
    let keys: Vec<u64> = m.keys().copied().collect();
    for k in keys {
        let (s, h, p) = m[&k];
        if k + s <= g || k >= e {
            continue;
        }
        m.remove(&k);
        if k < g {
            m.insert(k, (g - k, h, p));
        }
        if k + s > e {
            m.insert(e, (k + s - e, h + (e - k), p));
        }
    }
}

fn model_translate(m: &Model, g: u64) -> Option<(u64, Perms)> {
    let (&mg, &(ms, h, p)) = m.range(..=g).next_back()?;
    (g < mg + ms).then(|| (h + (g - mg), p))
}

/// Probes the boundaries of every model interval and random points; with
/// `full`, also walks all tables (structural invariants, no leaked frames)
/// and checks that the leaves are exactly the model.
fn check_against_model(
    gs: &GStage,
    a: &Arena,
    m: &Model,
    rng: &mut Rng,
    wbase: u64,
    window: u64,
    full: bool,
) {
    if full {
        let (leaves, _) = walk(gs, a);
        let leaf_total: u64 = leaves.iter().map(|l| l.size).sum();
        let model_total: u64 = m.values().map(|v| v.0).sum();
        assert_eq!(leaf_total, model_total);
        for l in &leaves {
            assert_eq!(model_translate(m, l.gpa), Some((l.hpa, l.perms)));
            let last = l.gpa + l.size - 1;
            assert_eq!(
                model_translate(m, last),
                Some((l.hpa + l.size - 1, l.perms))
            );
        }
    }
    for (&g, &(s, _, _)) in m {
        for p in [g.wrapping_sub(1), g, g + s - 1, g + s] {
            assert_eq!(gs.translate(a, p), model_translate(m, p), "{p:#x}");
        }
    }
    for _ in 0..64 {
        let p = wbase + rng.below(window);
        assert_eq!(gs.translate(a, p), model_translate(m, p), "{p:#x}");
    }
}

#[test]
fn random_ops_match_model() {
    let perms = [Perms::R, Perms::RW, Perms::RX, Perms::RWX, Perms::X];
    let sizes = [
        KIB4,
        3 * KIB4,
        MIB2,
        MIB2 + KIB4,
        3 * MIB2,
        GIB1,
        GIB1 + MIB2 + KIB4,
    ];
    for (seed, mode) in [
        (1u64, Mode::Sv39x4),
        (2, Mode::Sv48x4),
        (3, Mode::Sv57x4),
        (4, Mode::Sv39x4),
    ] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut a = Arena::new();
        let mut gs = GStage::new(mode, &mut a).unwrap();
        let mut model = Model::new();
        // Outcome counts: map ok/nomem/err, unmap ok/nomem/err.
        let mut seen = [0usize; 6];
        // A window of 8 GiB placed somewhere in the GPA space.
        let window = 8 * GIB1;
        let wbase = if seed % 2 == 0 {
            0
        } else {
            mode.gpa_limit() - window
        };
        for step in 0..600 {
            // Addresses that are mostly aligned to something interesting.
            let align = [KIB4, MIB2, GIB1][rng.below(3) as usize];
            let g = wbase + (rng.below(window / align) * align + rng.below(3) * KIB4) % window;
            let size = sizes[rng.below(sizes.len() as u64) as usize];
            let starve = rng.below(5) == 0;
            a.budget = starve.then(|| rng.below(4) as usize);
            if rng.below(3) == 0 || model.is_empty() {
                // Congruent to the GPA modulo 1 GiB, modulo 2 MiB only, or
                // 4 KiB aligned only (kept small: that means 4 KiB leaves).
                let h = match rng.below(3) {
                    0 => g - wbase,
                    1 => g - wbase + MIB2,
                    _ if size < GIB1 => rng.below(1 << 30) << 12,
                    _ => rng.below(1 << 20) << 21,
                };
                let p = perms[rng.below(perms.len() as u64) as usize];
                let end = g + size;
                let expect_err = if end > mode.gpa_limit() {
                    Some(Error::OutOfRange)
                } else if model_overlaps(&model, g, end) {
                    Some(Error::AlreadyMapped)
                } else {
                    None
                };
                let snap = (starve || expect_err.is_some()).then(|| a.snapshot());
                let r = gs.map(&mut a, g, h, size, p);
                match (r, expect_err) {
                    (Ok(()), None) => {
                        seen[0] += 1;
                        model.insert(g, (size, h, p));
                    }
                    (Err(Error::NoMemory), None) if starve => {
                        seen[1] += 1;
                        assert_eq!(Some(a.snapshot()), snap);
                    }
                    (Err(e), Some(x)) => {
                        seen[2] += 1;
                        assert_eq!(e, x, "step {step}");
                        assert_eq!(Some(a.snapshot()), snap);
                    }
                    other => panic!("step {step}: map {g:#x}+{size:#x}: {other:?}"),
                }
            } else {
                // Unmap, often a sub-range of an existing mapping.
                let (ug, us) = if rng.below(2) == 0 {
                    let idx = rng.below(model.len() as u64) as usize;
                    let (&mg, &(ms, _, _)) = model.iter().nth(idx).unwrap();
                    let pages = ms / KIB4;
                    let first = rng.below(pages);
                    let n = 1 + rng.below(pages - first);
                    (mg + first * KIB4, n * KIB4)
                } else {
                    (g, size)
                };
                let end = ug + us;
                let expect_err = if end > mode.gpa_limit() {
                    Some(Error::OutOfRange)
                } else if !model_covered(&model, ug, end) {
                    Some(Error::NotMapped)
                } else {
                    None
                };
                let snap = (starve || expect_err.is_some()).then(|| a.snapshot());
                let r = gs.unmap(&mut a, ug, us);
                match (r, expect_err) {
                    (Ok(()), None) => {
                        seen[3] += 1;
                        model_remove(&mut model, ug, end);
                    }
                    (Err(Error::NoMemory), None) if starve => {
                        seen[4] += 1;
                        assert_eq!(Some(a.snapshot()), snap);
                    }
                    (Err(e), Some(x)) => {
                        seen[5] += 1;
                        assert_eq!(e, x, "step {step}");
                        assert_eq!(Some(a.snapshot()), snap);
                    }
                    other => panic!("step {step}: unmap {ug:#x}+{us:#x}: {other:?}"),
                }
            }
            a.budget = None;
            check_against_model(&gs, &a, &model, &mut rng, wbase, window, step % 8 == 0);
        }
        check_against_model(&gs, &a, &model, &mut rng, wbase, window, true);
        assert!(
            seen.iter().all(|&n| n > 0),
            "every outcome exercised: {seen:?}"
        );
        gs.destroy(&mut a);
        assert_eq!(a.live, 0);
    }
}
