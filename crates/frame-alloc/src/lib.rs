//! The hypervisor's physical memory allocator.
//!
//! Owns the free list of host-physical RAM left after the hypervisor image,
//! firmware, device tree and boot bundle are carved out. It hands out
//! page-granular, aligned, contiguous ranges (G-stage table frames, guest RAM
//! blocks) and takes them back, coalescing neighbours. First fit over a sorted
//! list of free ranges: allocations are few and large (a VM's RAM) or small
//! and short-lived (page-table frames), so a buddy system would buy nothing.
#![no_std]
#![deny(clippy::unwrap_used, clippy::expect_used)]

extern crate alloc;
use alloc::vec::Vec;

pub const PAGE: u64 = 4096;

/// A half-open physical range `[base, base + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

#[derive(Default, Debug)]
pub struct FrameAllocator {
    free: Vec<Range>,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

impl FrameAllocator {
    pub const fn new() -> Self {
        Self { free: Vec::new() }
    }

    /// Adds RAM `[base, base+size)` minus every range in `holes`, trimmed to pages.
    pub fn add_region(&mut self, base: u64, size: u64, holes: &[Range]) {
        let mut pieces = alloc::vec![Range { base, size }];
        for h in holes {
            let mut next = Vec::new();
            for p in pieces {
                if h.end() <= p.base || h.base >= p.end() {
                    next.push(p);
                    continue;
                }
                if h.base > p.base {
                    next.push(Range {
                        base: p.base,
                        size: h.base - p.base,
                    });
                }
                if h.end() < p.end() {
                    next.push(Range {
                        base: h.end(),
                        size: p.end() - h.end(),
                    });
                }
            }
            pieces = next;
        }
        for p in pieces {
            let Some(b) = align_up(p.base, PAGE) else {
                continue;
            };
            let e = p.end() & !(PAGE - 1);
            if e > b {
                self.free(b, e - b);
            }
        }
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.size).sum()
    }

    pub fn regions(&self) -> &[Range] {
        &self.free
    }

    /// Allocates `size` bytes (rounded up to pages) aligned to `align`
    /// (a power of two, at least a page). Returns the base address.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let align = align.max(PAGE);
        if !align.is_power_of_two() || size == 0 {
            return None;
        }
        let size = align_up(size, PAGE)?;
        for i in 0..self.free.len() {
            let r = *self.free.get(i)?;
            let Some(start) = align_up(r.base, align) else {
                continue;
            };
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            if end > r.end() {
                continue;
            }
            self.free.remove(i);
            let mut at = i;
            if start > r.base {
                self.free.insert(
                    at,
                    Range {
                        base: r.base,
                        size: start - r.base,
                    },
                );
                at += 1;
            }
            if end < r.end() {
                self.free.insert(
                    at,
                    Range {
                        base: end,
                        size: r.end() - end,
                    },
                );
            }
            return Some(start);
        }
        None
    }

    /// Returns `[base, base+size)` (page multiples) to the free list.
    pub fn free(&mut self, base: u64, size: u64) {
        if size == 0 {
            return;
        }
        let pos = self.free.partition_point(|r| r.base < base);
        self.free.insert(pos, Range { base, size });
        // Merge with the next, then the previous neighbour.
        if let (Some(a), Some(b)) = (self.free.get(pos).copied(), self.free.get(pos + 1).copied()) {
            if a.end() == b.base {
                self.free[pos].size += b.size;
                self.free.remove(pos + 1);
            }
        }
        if pos > 0 {
            if let (Some(a), Some(b)) =
                (self.free.get(pos - 1).copied(), self.free.get(pos).copied())
            {
                if a.end() == b.base {
                    self.free[pos - 1].size += b.size;
                    self.free.remove(pos);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn carves_holes_and_aligns() {
        let mut a = FrameAllocator::new();
        a.add_region(
            0x8000_0000,
            0x100_0000,
            &[
                Range {
                    base: 0x8000_0000,
                    size: 0x20_0000,
                },
                Range {
                    base: 0x8080_0100,
                    size: 0x100,
                },
            ],
        );
        assert_eq!(
            a.regions(),
            &[
                Range {
                    base: 0x8020_0000,
                    size: 0x60_0000
                },
                Range {
                    base: 0x8080_1000,
                    size: 0x7f_f000
                }
            ]
        );
    }

    #[test]
    fn alloc_aligned_and_free_coalesces() {
        let mut a = FrameAllocator::new();
        a.add_region(0x1000, 0x40_0000, &[]);
        let total = a.free_bytes();
        let p = a.alloc(0x4000, 0x4000).unwrap();
        assert_eq!(p % 0x4000, 0);
        let q = a.alloc(0x20_0000, 0x20_0000).unwrap();
        assert_eq!(q % 0x20_0000, 0);
        let r = a.alloc(1, 0).unwrap();
        assert_eq!(r % PAGE, 0);
        assert_eq!(a.free_bytes(), total - 0x4000 - 0x20_0000 - PAGE);
        a.free(q, 0x20_0000);
        a.free(p, 0x4000);
        a.free(r, PAGE);
        assert_eq!(a.free_bytes(), total);
        assert_eq!(a.regions().len(), 1);
    }

    #[test]
    fn exhaustion_and_bad_args() {
        let mut a = FrameAllocator::new();
        a.add_region(0, 0x2000, &[]);
        assert!(a.alloc(0x3000, PAGE).is_none());
        assert!(a.alloc(0, PAGE).is_none());
        assert!(a.alloc(PAGE, 3 * PAGE).is_none());
        assert!(a.alloc(u64::MAX, PAGE).is_none());
        assert!(a.alloc(0x2000, PAGE).is_some());
        assert!(a.alloc(PAGE, PAGE).is_none());
    }
}
