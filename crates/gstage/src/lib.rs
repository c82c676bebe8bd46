//! G-stage (second-stage) page tables for the RISC-V H extension.
//!
//! This crate owns the format and the bookkeeping of the tables that translate
//! a guest physical address (GPA) into a host physical address (HPA): building
//! them ([`GStage::map`]), tearing parts down ([`GStage::unmap`]), looking an
//! address up in software ([`GStage::translate`]), producing the `hgatp` value
//! that points the hart at them ([`GStage::hgatp`]) and freeing them
//! ([`GStage::destroy`]).
//!
//! Rules taken from the RISC-V privileged specification, hypervisor chapter,
//! "Guest Physical Address Translation":
//!
//! * Modes Sv39x4, Sv48x4 and Sv57x4 (`hgatp.MODE` 8, 9, 10) translate GPAs of
//!   41, 50 and 59 bits. They are Sv39/48/57 with the root table widened by two
//!   index bits: the root is 16 KiB (2048 entries) and must be 16 KiB aligned.
//!   Every other table is an ordinary 4 KiB table with 512 entries.
//! * PTEs have the Sv39/48/57 format. G-stage leaves must have `U = 1`: every
//!   G-stage access is checked as a U-mode access. We always set `A` and `D`
//!   on leaves (no reliance on hardware A/D updating) and leave `G` clear.
//!   Non-leaf entries are `V = 1` with everything else but the PPN zero.
//! * `hgatp` (RV64) = `MODE << 60 | VMID << 44 | PPN(root)`, VMID 14 bits.
//!
//! Where table memory comes from, and how it is read and written, is the
//! caller's business: see [`Frames`]. Nothing here touches memory directly.
//!
//! Levels are numbered the way the specification numbers them: level 0 holds
//! 4 KiB leaves, level 1 entries cover 2 MiB, level 2 entries 1 GiB, and so on;
//! the root is level `levels() - 1`. Leaves are only ever created at levels
//! 0, 1 and 2 (4 KiB, 2 MiB and 1 GiB pages); 512 GiB pages are never created,
//! although [`GStage::translate`] understands a leaf at any level.
//!
//! TLB maintenance (`HFENCE.GVMA`) is the caller's job. After `unmap` it is
//! required. After `map` a hart may still use a stale "invalid" result for a
//! while (the specification lets implementations keep translations from
//! before the last fence), so either fence after `map` too, or treat a
//! guest-page fault on an address that [`GStage::translate`] now maps as
//! spurious: fence and retry. Note that `unmap` hands emptied table frames
//! back through [`Frames::free`] before it returns, i.e. before the caller
//! can fence: an implementation of [`Frames`] used while the guest runs must
//! not reuse a freed frame before the fence has been executed on every hart
//! that may hold the VMID's translations.
#![no_std]
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

/// Size of a base page and of a table frame.
pub const PAGE_SIZE: u64 = 4096;
/// Size, and required alignment, of the root table (4 frames).
pub const ROOT_SIZE: u64 = 4 * PAGE_SIZE;
/// Number of frames making up the root table.
pub const ROOT_FRAMES: usize = 4;
/// Number of entries in a non-root table.
pub const TABLE_ENTRIES: u64 = 512;
/// Number of entries in the root table.
pub const ROOT_ENTRIES: u64 = 2048;
/// Host physical addresses representable in a PTE (44-bit PPN): `[0, 1 << 56)`.
pub const MAX_PA_BITS: u32 = 56;

/// Highest level at which `map` creates leaves (2 = 1 GiB pages).
const MAX_LEAF_LEVEL: usize = 2;
/// Largest number of levels of any mode (Sv57x4).
const MAX_LEVELS: usize = 5;

/// Page table entry bits (Sv39/48/57 format).
pub mod pte {
    /// Valid.
    pub const V: u64 = 1 << 0;
    /// Readable.
    pub const R: u64 = 1 << 1;
    /// Writable.
    pub const W: u64 = 1 << 2;
    /// Executable.
    pub const X: u64 = 1 << 3;
    /// User; required on G-stage leaves.
    pub const U: u64 = 1 << 4;
    /// Global; never set by this crate.
    pub const G: u64 = 1 << 5;
    /// Accessed.
    pub const A: u64 = 1 << 6;
    /// Dirty.
    pub const D: u64 = 1 << 7;
    /// Position of the PPN field.
    pub const PPN_SHIFT: u32 = 10;
    /// Mask of the PPN field after shifting it down (44 bits, 53:10).
    pub const PPN_MASK: u64 = (1 << 44) - 1;

    /// A leaf mapping the page at `pa` (must be aligned to the page size).
    pub const fn leaf(pa: u64, perms: super::Perms) -> u64 {
        let mut bits = V | U | A | D;
        if perms.r {
            bits |= R;
        }
        if perms.w {
            bits |= W;
        }
        if perms.x {
            bits |= X;
        }
        ((pa >> 12) & PPN_MASK) << PPN_SHIFT | bits
    }

    /// A pointer to the next-level table at `pa`.
    pub const fn table(pa: u64) -> u64 {
        ((pa >> 12) & PPN_MASK) << PPN_SHIFT | V
    }

    /// The physical address held in the PPN field.
    pub const fn pa(pte: u64) -> u64 {
        ((pte >> PPN_SHIFT) & PPN_MASK) << 12
    }

    /// Whether a valid entry is a leaf (any of R, W, X set).
    pub const fn is_leaf(pte: u64) -> bool {
        pte & (R | W | X) != 0
    }
}

/// G-stage translation mode (value of `hgatp.MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 41-bit GPAs, 3 levels, `hgatp.MODE` = 8.
    Sv39x4,
    /// 50-bit GPAs, 4 levels, `hgatp.MODE` = 9.
    Sv48x4,
    /// 59-bit GPAs, 5 levels, `hgatp.MODE` = 10.
    Sv57x4,
}

impl Mode {
    /// The `hgatp.MODE` field value.
    pub fn hgatp_mode(self) -> u64 {
        match self {
            Mode::Sv39x4 => 8,
            Mode::Sv48x4 => 9,
            Mode::Sv57x4 => 10,
        }
    }

    /// The mode with the given `hgatp.MODE` value, if it is one of ours
    /// (0 = Bare and anything else gives `None`).
    pub fn from_hgatp_mode(mode: u64) -> Option<Mode> {
        match mode {
            8 => Some(Mode::Sv39x4),
            9 => Some(Mode::Sv48x4),
            10 => Some(Mode::Sv57x4),
            _ => None,
        }
    }

    /// Number of table levels, root included.
    pub fn levels(self) -> usize {
        match self {
            Mode::Sv39x4 => 3,
            Mode::Sv48x4 => 4,
            Mode::Sv57x4 => 5,
        }
    }

    /// Width of a guest physical address in bits.
    pub fn gpa_bits(self) -> u32 {
        match self {
            Mode::Sv39x4 => 41,
            Mode::Sv48x4 => 50,
            Mode::Sv57x4 => 59,
        }
    }

    /// One past the highest translatable GPA: `1 << gpa_bits()`.
    pub fn gpa_limit(self) -> u64 {
        1u64 << self.gpa_bits()
    }

    /// All modes, widest first (the order in which to probe `hgatp`).
    pub fn all_widest_first() -> [Mode; 3] {
        [Mode::Sv57x4, Mode::Sv48x4, Mode::Sv39x4]
    }

    fn root_level(self) -> usize {
        self.levels() - 1
    }
}

/// Where table frames come from and how table memory is read and written.
///
/// The hypervisor implements it over identity-mapped physical memory; tests
/// implement it over an arena. `GStage` only ever reads and writes 8-byte
/// aligned words inside frames this allocator returned to it (and not yet
/// freed), so an implementation may treat any other access as a bug.
pub trait Frames {
    /// `count` contiguous zeroed 4 KiB frames aligned to `align` bytes (a
    /// power of two >= 4096); returns the physical address of the first.
    fn alloc(&mut self, count: usize, align: u64) -> Option<u64>;
    /// Gives back `count` frames at `pa`, exactly as returned by one `alloc`.
    fn free(&mut self, pa: u64, count: usize);
    /// Reads the 8-byte entry at `pa`.
    fn read_pte(&self, pa: u64) -> u64;
    /// Writes the 8-byte entry at `pa`.
    fn write_pte(&mut self, pa: u64, pte: u64);
}

/// Access permissions of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub r: bool,
    pub w: bool,
    pub x: bool,
}

impl Perms {
    /// Read-only.
    pub const R: Perms = Perms {
        r: true,
        w: false,
        x: false,
    };
    /// Read-write (RAM, MMIO-free devices).
    pub const RW: Perms = Perms {
        r: true,
        w: true,
        x: false,
    };
    /// Read-execute.
    pub const RX: Perms = Perms {
        r: true,
        w: false,
        x: true,
    };
    /// Read-write-execute (ordinary guest RAM).
    pub const RWX: Perms = Perms {
        r: true,
        w: true,
        x: true,
    };
    /// Execute-only.
    pub const X: Perms = Perms {
        r: false,
        w: false,
        x: true,
    };

    /// Whether these permissions can be put in a leaf: at least one of R, W,
    /// X, and W only together with R (W without R is reserved).
    pub fn is_valid(self) -> bool {
        self.r || (self.x && !self.w)
    }

    fn from_pte(pte: u64) -> Perms {
        Perms {
            r: pte & pte::R != 0,
            w: pte & pte::W != 0,
            x: pte & pte::X != 0,
        }
    }
}

/// Why an operation was refused. A refused operation changes nothing visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address or size is not a multiple of 4 KiB.
    Unaligned,
    /// The range wraps, or reaches past the mode's GPA width, or (for the
    /// host side of `map`) past the 56-bit physical address space.
    OutOfRange,
    /// `map`: some page of the range is already mapped.
    AlreadyMapped,
    /// `unmap`: some page of the range is not mapped.
    NotMapped,
    /// The frame allocator had nothing (or returned an unusable address).
    NoMemory,
    /// The permissions cannot be encoded: none of R/W/X, or W without R.
    BadPerms,
}

/// Size of the region one entry at `level` covers.
const fn span(level: usize) -> u64 {
    1u64 << (12 + 9 * level as u32)
}

/// `(index, base GPA)` of every entry of the table at `level` whose region
/// starts at `tbase` that overlaps `[start, end)`. The caller guarantees
/// `tbase <= start < end <= tbase + region of the table`.
fn entries(tbase: u64, level: usize, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
    let shift = 12 + 9 * level as u32;
    let first = (start - tbase) >> shift;
    let last = (end - 1 - tbase) >> shift;
    (first..=last).map(move |i| (i, tbase + (i << shift)))
}

/// Allocates one zeroed table frame, refusing unusable addresses.
fn alloc_table(frames: &mut impl Frames) -> Result<u64, Error> {
    let pa = frames.alloc(1, PAGE_SIZE).ok_or(Error::NoMemory)?;
    if pa & (PAGE_SIZE - 1) != 0 || pa >> MAX_PA_BITS != 0 {
        frames.free(pa, 1);
        return Err(Error::NoMemory);
    }
    Ok(pa)
}

fn table_is_empty(frames: &impl Frames, table: u64, count: u64) -> bool {
    (0..count).all(|i| frames.read_pte(table + i * 8) & pte::V == 0)
}

/// Frames set aside before `unmap` modifies anything, so that splitting
/// superpages cannot fail half-way.
struct Reserve {
    pas: [u64; 2 * MAX_LEVELS],
    len: usize,
}

impl Reserve {
    const fn empty() -> Self {
        Reserve {
            pas: [0; 2 * MAX_LEVELS],
            len: 0,
        }
    }

    fn fill(frames: &mut impl Frames, count: usize) -> Result<Self, Error> {
        let mut r = Reserve::empty();
        while r.len < count {
            match (alloc_table(frames), r.pas.get_mut(r.len)) {
                (Ok(pa), Some(slot)) => {
                    *slot = pa;
                    r.len += 1;
                }
                (Ok(pa), None) => {
                    // More than we can hold: cannot happen (count is bounded).
                    frames.free(pa, 1);
                    break;
                }
                (Err(e), _) => {
                    r.release(frames);
                    return Err(e);
                }
            }
        }
        Ok(r)
    }

    /// A reserved frame, or a fresh one when the reserve is exhausted.
    fn take(&mut self, frames: &mut impl Frames) -> Result<u64, Error> {
        if let Some(n) = self.len.checked_sub(1) {
            if let Some(&pa) = self.pas.get(n) {
                self.len = n;
                return Ok(pa);
            }
        }
        alloc_table(frames)
    }

    fn release(&mut self, frames: &mut impl Frames) {
        while let Some(n) = self.len.checked_sub(1) {
            if let Some(&pa) = self.pas.get(n) {
                frames.free(pa, 1);
            }
            self.len = n;
        }
    }
}

/// One VM's G-stage page tables.
///
/// Dropping a `GStage` without calling [`GStage::destroy`] leaks its frames
/// (there is no allocator to return them to).
#[derive(Debug, PartialEq, Eq)]
pub struct GStage {
    root: u64,
    mode: Mode,
}

impl GStage {
    /// Allocates an empty 16 KiB root table (4 frames, 16 KiB aligned).
    ///
    /// `NoMemory` if the allocator fails or returns a misaligned or
    /// unrepresentable address (which is then freed again).
    pub fn new(mode: Mode, frames: &mut impl Frames) -> Result<Self, Error> {
        let root = frames
            .alloc(ROOT_FRAMES, ROOT_SIZE)
            .ok_or(Error::NoMemory)?;
        if root & (ROOT_SIZE - 1) != 0 || root >> MAX_PA_BITS != 0 {
            frames.free(root, ROOT_FRAMES);
            return Err(Error::NoMemory);
        }
        Ok(GStage { root, mode })
    }

    /// The translation mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Physical address of the root table.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The `hgatp` value selecting these tables for `vmid`. Only the low 14
    /// bits of `vmid` are used (the hardware may implement fewer: VMIDLEN is
    /// found by writing all ones to `hgatp.VMID` and reading it back).
    pub fn hgatp(&self, vmid: u16) -> u64 {
        self.mode.hgatp_mode() << 60
            | (u64::from(vmid) & 0x3fff) << 44
            | (self.root >> 12) & pte::PPN_MASK
    }

    fn root_level(&self) -> usize {
        self.mode.root_level()
    }

    /// Checks that `[gpa, gpa + size)` is page aligned and inside the GPA
    /// space; returns its end.
    fn check_range(&self, gpa: u64, size: u64) -> Result<u64, Error> {
        if (gpa | size) & (PAGE_SIZE - 1) != 0 {
            return Err(Error::Unaligned);
        }
        let end = gpa.checked_add(size).ok_or(Error::OutOfRange)?;
        if end > self.mode.gpa_limit() {
            return Err(Error::OutOfRange);
        }
        Ok(end)
    }

    /// Maps `[gpa, gpa + size)` to `[hpa, hpa + size)` with `perms`.
    ///
    /// Checks, in this order: `BadPerms` (no R/W/X, or W without R);
    /// `Unaligned` (any of the three not a multiple of 4 KiB); `OutOfRange`
    /// (`gpa + size` overflows or exceeds `1 << gpa_bits`, or `hpa + size`
    /// overflows or exceeds `1 << 56`); `AlreadyMapped` (any page of the range
    /// mapped). A `size` of 0 then succeeds without doing anything.
    ///
    /// Each part of the range gets the largest page (1 GiB, 2 MiB, 4 KiB) for
    /// which the GPA, the HPA and the remaining size allow it.
    ///
    /// On `NoMemory` every table created by this call is freed again: the
    /// tables are exactly as before the call.
    pub fn map(
        &mut self,
        frames: &mut impl Frames,
        gpa: u64,
        hpa: u64,
        size: u64,
        perms: Perms,
    ) -> Result<(), Error> {
        if !perms.is_valid() {
            return Err(Error::BadPerms);
        }
        if hpa & (PAGE_SIZE - 1) != 0 {
            return Err(Error::Unaligned);
        }
        let end = self.check_range(gpa, size)?;
        let hend = hpa.checked_add(size).ok_or(Error::OutOfRange)?;
        if hend > 1u64 << MAX_PA_BITS {
            return Err(Error::OutOfRange);
        }
        if size == 0 {
            return Ok(());
        }
        let top = self.root_level();
        if self.any_mapped(frames, self.root, top, 0, gpa, end) {
            return Err(Error::AlreadyMapped);
        }
        let delta = hpa.wrapping_sub(gpa);
        let result = self.map_in(frames, self.root, top, 0, gpa, end, delta, perms);
        if result.is_err() {
            // The range was entirely unmapped before, so clearing it removes
            // exactly what this call added, and frees the tables it created
            // (they hold nothing else). No split can happen: no leaf
            // straddles the range boundary.
            let _ = self.clear_in(frames, self.root, top, 0, gpa, end, &mut Reserve::empty());
        }
        result
    }

    /// Unmaps `[gpa, gpa + size)`.
    ///
    /// Strict: `NotMapped` if any 4 KiB page of the range is not mapped, and
    /// then nothing is changed. Also `Unaligned` (gpa or size not a multiple
    /// of 4 KiB) and `OutOfRange` (wraps or exceeds the GPA width). A `size`
    /// of 0 succeeds without doing anything.
    ///
    /// A superpage only partly covered by the range is split into smaller
    /// pages first, so the rest of it stays mapped as before. The frames for
    /// the splits are all allocated before anything is modified; if that
    /// fails the result is `NoMemory` and nothing changed. Tables left empty
    /// are freed (the root is kept).
    pub fn unmap(&mut self, frames: &mut impl Frames, gpa: u64, size: u64) -> Result<(), Error> {
        let end = self.check_range(gpa, size)?;
        if size == 0 {
            return Ok(());
        }
        let top = self.root_level();
        if !self.all_mapped(frames, self.root, top, 0, gpa, end) {
            return Err(Error::NotMapped);
        }
        let need = self.splits_needed(frames, gpa, end);
        let mut reserve = Reserve::fill(frames, need)?;
        let result = self.clear_in(frames, self.root, top, 0, gpa, end, &mut reserve);
        reserve.release(frames);
        result
    }

    /// The host physical address `gpa` (any byte offset) translates to, and
    /// the permissions of its page; `None` when it is not mapped (or outside
    /// the GPA width, or the entry found is malformed).
    pub fn translate(&self, frames: &impl Frames, gpa: u64) -> Option<(u64, Perms)> {
        if gpa >= self.mode.gpa_limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.root_level();
        loop {
            let shift = 12 + 9 * level as u32;
            let mask = if level == self.root_level() {
                ROOT_ENTRIES - 1
            } else {
                TABLE_ENTRIES - 1
            };
            let entry = frames.read_pte(table + ((gpa >> shift) & mask) * 8);
            if entry & pte::V == 0 {
                return None;
            }
            if !pte::is_leaf(entry) {
                table = pte::pa(entry);
                level = level.checked_sub(1)?;
                continue;
            }
            let perms = Perms::from_pte(entry);
            if !perms.is_valid() || entry & pte::U == 0 {
                return None;
            }
            let size = span(level);
            let base = pte::pa(entry);
            if base & (size - 1) != 0 {
                // Misaligned superpage: the hardware raises a fault.
                return None;
            }
            return Some((base | (gpa & (size - 1)), perms));
        }
    }

    /// Frees every table frame, the root included.
    pub fn destroy(self, frames: &mut impl Frames) {
        let top = self.root_level();
        Self::free_children(frames, self.root, top, ROOT_ENTRIES);
        frames.free(self.root, ROOT_FRAMES);
    }

    fn free_children(frames: &mut impl Frames, table: u64, level: usize, count: u64) {
        let Some(child_level) = level.checked_sub(1) else {
            return;
        };
        for i in 0..count {
            let entry = frames.read_pte(table + i * 8);
            if entry & pte::V != 0 && !pte::is_leaf(entry) {
                let child = pte::pa(entry);
                Self::free_children(frames, child, child_level, TABLE_ENTRIES);
                frames.free(child, 1);
            }
        }
    }

    /// Whether any part of `[start, end)` is mapped, within the table at
    /// `level` covering GPAs from `tbase`.
    fn any_mapped(
        &self,
        frames: &impl Frames,
        table: u64,
        level: usize,
        tbase: u64,
        start: u64,
        end: u64,
    ) -> bool {
        for (i, eb) in entries(tbase, level, start, end) {
            let entry = frames.read_pte(table + i * 8);
            if entry & pte::V == 0 {
                continue;
            }
            let Some(child_level) = level.checked_sub(1) else {
                return true;
            };
            if pte::is_leaf(entry) {
                return true;
            }
            let s = start.max(eb);
            let e = end.min(eb + span(level));
            if self.any_mapped(frames, pte::pa(entry), child_level, eb, s, e) {
                return true;
            }
        }
        false
    }

    /// Whether every page of `[start, end)` is mapped.
    fn all_mapped(
        &self,
        frames: &impl Frames,
        table: u64,
        level: usize,
        tbase: u64,
        start: u64,
        end: u64,
    ) -> bool {
        for (i, eb) in entries(tbase, level, start, end) {
            let entry = frames.read_pte(table + i * 8);
            if entry & pte::V == 0 {
                return false;
            }
            if pte::is_leaf(entry) {
                continue;
            }
            let Some(child_level) = level.checked_sub(1) else {
                // A pointer at level 0 is malformed: treat as unmapped.
                return false;
            };
            let s = start.max(eb);
            let e = end.min(eb + span(level));
            if !self.all_mapped(frames, pte::pa(entry), child_level, eb, s, e) {
                return false;
            }
        }
        true
    }

    /// Finds the leaf mapping `gpa`: `(level, entry)`.
    fn leaf_at(&self, frames: &impl Frames, gpa: u64) -> Option<(usize, u64)> {
        if gpa >= self.mode.gpa_limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.root_level();
        loop {
            let shift = 12 + 9 * level as u32;
            let mask = if level == self.root_level() {
                ROOT_ENTRIES - 1
            } else {
                TABLE_ENTRIES - 1
            };
            let entry = frames.read_pte(table + ((gpa >> shift) & mask) * 8);
            if entry & pte::V == 0 {
                return None;
            }
            if pte::is_leaf(entry) {
                return Some((level, entry));
            }
            table = pte::pa(entry);
            level = level.checked_sub(1)?;
        }
    }

    /// Number of superpage splits (one table frame each) unmapping
    /// `[start, end)` will perform: only the leaves containing `start` and
    /// `end` can straddle the range boundary.
    fn splits_needed(&self, frames: &impl Frames, start: u64, end: u64) -> usize {
        let mut seen = [(0usize, 0u64); 2 * MAX_LEVELS];
        let mut n = 0usize;
        for b in [start, end] {
            let Some((level, _)) = self.leaf_at(frames, b) else {
                continue;
            };
            let mut k = level;
            while k > 0 && b & (span(k) - 1) != 0 {
                let key = (k, b & !(span(k) - 1));
                let known = seen.iter().take(n).any(|&s| s == key);
                if !known {
                    if let Some(slot) = seen.get_mut(n) {
                        *slot = key;
                        n += 1;
                    }
                }
                k -= 1;
            }
        }
        n
    }

    /// Writes the mappings for `[start, end)` (GPA `g` to HPA `g + delta`)
    /// into the table at `level` covering GPAs from `tbase`, creating
    /// next-level tables as needed.
    #[allow(clippy::too_many_arguments)]
    fn map_in(
        &self,
        frames: &mut impl Frames,
        table: u64,
        level: usize,
        tbase: u64,
        start: u64,
        end: u64,
        delta: u64,
        perms: Perms,
    ) -> Result<(), Error> {
        let size = span(level);
        for (i, eb) in entries(tbase, level, start, end) {
            let slot = table + i * 8;
            let s = start.max(eb);
            let e = end.min(eb + size);
            let hpa = s.wrapping_add(delta);
            if level <= MAX_LEAF_LEVEL && s == eb && e == eb + size && hpa & (size - 1) == 0 {
                frames.write_pte(slot, pte::leaf(hpa, perms));
                continue;
            }
            // Level 0 always takes the branch above (everything is 4 KiB
            // aligned), so there is a next level here.
            let Some(child_level) = level.checked_sub(1) else {
                return Err(Error::Unaligned);
            };
            let entry = frames.read_pte(slot);
            let child = if entry & pte::V == 0 {
                let t = alloc_table(frames)?;
                frames.write_pte(slot, pte::table(t));
                t
            } else if pte::is_leaf(entry) {
                return Err(Error::AlreadyMapped);
            } else {
                pte::pa(entry)
            };
            self.map_in(frames, child, child_level, eb, s, e, delta, perms)?;
        }
        Ok(())
    }

    /// Removes the mappings of `[start, end)` from the table at `level`
    /// covering GPAs from `tbase`, splitting leaves that straddle the range
    /// boundary (frames from `reserve`) and freeing next-level tables that
    /// become empty. Unmapped parts are skipped.
    #[allow(clippy::too_many_arguments)]
    fn clear_in(
        &self,
        frames: &mut impl Frames,
        table: u64,
        level: usize,
        tbase: u64,
        start: u64,
        end: u64,
        reserve: &mut Reserve,
    ) -> Result<(), Error> {
        let size = span(level);
        for (i, eb) in entries(tbase, level, start, end) {
            let slot = table + i * 8;
            let entry = frames.read_pte(slot);
            if entry & pte::V == 0 {
                continue;
            }
            let s = start.max(eb);
            let e = end.min(eb + size);
            let Some(child_level) = level.checked_sub(1) else {
                frames.write_pte(slot, 0);
                continue;
            };
            let child = if pte::is_leaf(entry) {
                if s == eb && e == eb + size {
                    frames.write_pte(slot, 0);
                    continue;
                }
                // Split: an equivalent table of next-size leaves, filled
                // before it replaces the superpage.
                let t = reserve.take(frames)?;
                let base = pte::pa(entry);
                let flags = entry & ((1 << pte::PPN_SHIFT) - 1);
                let step = span(child_level);
                for j in 0..TABLE_ENTRIES {
                    let pa = base + j * step;
                    let leaf = ((pa >> 12) & pte::PPN_MASK) << pte::PPN_SHIFT | flags;
                    frames.write_pte(t + j * 8, leaf);
                }
                frames.write_pte(slot, pte::table(t));
                t
            } else {
                pte::pa(entry)
            };
            self.clear_in(frames, child, child_level, eb, s, e, reserve)?;
            if table_is_empty(frames, child, TABLE_ENTRIES) {
                frames.write_pte(slot, 0);
                frames.free(child, 1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
