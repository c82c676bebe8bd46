//! Hart sets and the SBI "hart list" (hart mask) rule.
//!
//! binary-encoding.adoc, "Hart list parameter": a function taking a hart list
//! takes `hart_mask` (a bit vector) and `hart_mask_base` (the hart ID of bit
//! 0). `hart_mask_base == -1` means "ignore `hart_mask`, all available
//! harts". Otherwise the targets are `hart_mask_base + i` for each set bit
//! `i`; if any of them is not a valid hart ID the call fails with
//! `SBI_ERR_INVALID_PARAM` (table_hart_mask_errors), and Rivet then acts on
//! **no** hart. `hart_mask_base` itself need not be valid unless bit 0 is
//! set, so an empty mask with any base is a successful no-op.
//!
//! "Valid" here means "is one of this VM's vCPUs" (`0..vcpu_count`), in any
//! HSM state: a stopped hart is still available to the supervisor (it can be
//! started), so it is a valid target.

/// Most vCPUs a VM can have: hart sets are one 64-bit word.
pub const MAX_HARTS: u64 = 64;

/// `hart_mask_base` value meaning "all available harts" (`-1` as unsigned).
pub const HART_MASK_BASE_ALL: u64 = u64::MAX;

/// A validated set of target vCPU hart IDs: bit `i` set means hart `i`.
/// Only ever built with IDs below the VM's vCPU count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HartSet(pub u64);

/// The hart mask named at least one hart that is not a vCPU of this VM
/// (or whose ID overflowed); the SBI error is `SBI_ERR_INVALID_PARAM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHartMask;

impl HartSet {
    /// No harts.
    pub const EMPTY: HartSet = HartSet(0);

    /// Every hart of a VM with `count` vCPUs (capped at [`MAX_HARTS`]).
    pub const fn all(count: u64) -> HartSet {
        if count >= MAX_HARTS {
            HartSet(u64::MAX)
        } else {
            // count < 64, so the shift cannot overflow; 1 << count >= 1.
            match 1u64.checked_shl(count as u32) {
                Some(bit) => HartSet(bit.wrapping_sub(1)),
                None => HartSet(u64::MAX),
            }
        }
    }

    /// True if no hart is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of harts in the set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// True if `hart` is in the set.
    pub const fn contains(self, hart: usize) -> bool {
        if hart >= 64 {
            return false;
        }
        match 1u64.checked_shl(hart as u32) {
            Some(bit) => self.0 & bit != 0,
            None => false,
        }
    }

    /// The hart IDs in ascending order.
    pub const fn iter(self) -> HartIter {
        HartIter(self.0)
    }

    /// Applies the hart-list rule (see the module docs) for a VM whose valid
    /// hart IDs are `0..limit` (`limit <= 64`).
    pub fn from_mask(
        hart_mask: u64,
        hart_mask_base: u64,
        limit: u64,
    ) -> Result<HartSet, InvalidHartMask> {
        let limit = limit.min(MAX_HARTS);
        if hart_mask_base == HART_MASK_BASE_ALL {
            return Ok(HartSet::all(limit));
        }
        let mut set = 0u64;
        let mut rest = hart_mask;
        while rest != 0 {
            let bit = rest.trailing_zeros();
            rest &= rest.wrapping_sub(1); // clear the lowest set bit
            let id = hart_mask_base
                .checked_add(u64::from(bit))
                .ok_or(InvalidHartMask)?;
            if id >= limit {
                return Err(InvalidHartMask);
            }
            let shift = u32::try_from(id).map_err(|_| InvalidHartMask)?;
            set |= 1u64.checked_shl(shift).ok_or(InvalidHartMask)?;
        }
        Ok(HartSet(set))
    }
}

impl IntoIterator for HartSet {
    type Item = usize;
    type IntoIter = HartIter;
    fn into_iter(self) -> HartIter {
        self.iter()
    }
}

/// Iterator over the hart IDs of a [`HartSet`], ascending.
#[derive(Debug, Clone)]
pub struct HartIter(u64);

impl Iterator for HartIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let id = self.0.trailing_zeros();
        self.0 &= self.0.wrapping_sub(1);
        usize::try_from(id).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.0.count_ones()).unwrap_or(0);
        (n, Some(n))
    }
}

impl ExactSizeIterator for HartIter {}
