//! Device trees for Rivet: read the host's, write each guest's.
//!
//! Two jobs live here, both host-testable (`#![no_std]` + `alloc`):
//!
//! 1. [`parse_host`] turns the flattened device tree (DTB) that OpenSBI hands
//!    the hypervisor in `a1` into a [`HostInfo`]: RAM, reserved ranges, harts
//!    and their ISA extensions, the timebase, the UART, the PLIC and its
//!    context map, virtio-mmio slots, the initrd and the bootargs.
//! 2. [`build_guest`] writes the DTB a VM boots with from a [`GuestDt`]
//!    description, in the shape Linux 6.12 (riscv) expects: vCPUs with their
//!    `riscv,cpu-intc` controllers, one `/memory` node, `/chosen`, and a
//!    `/soc` bus with a PLIC (one S-mode context per vCPU), an optional
//!    ns16550a UART and virtio-mmio devices.
//!
//! # Malformed input
//!
//! The host blob is firmware input, but a broken one must still not take the
//! hypervisor down with a panic: every failure is an [`Error`]. The blob is
//! therefore read by a small, fully bounds-checked reader of our own
//! (`reader`), not by the `fdt` crate, whose accessors panic (`unwrap`,
//! `expect`, slice indexing, `assert!`) on inconsistent blobs and whose
//! `find_node` can recurse without bound through `/aliases`. The `fdt` crate is
//! used in the tests as an independent parser to cross-check what
//! [`build_guest`] writes.
//!
//! The hypervisor builds the input slice itself: read the 40-byte header at
//! the address in `a1`, ask [`total_size`] how long the blob is, then build
//! the full slice and call [`parse_host`]. No `unsafe` is needed in this
//! crate.
#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
#![forbid(unsafe_code)]

extern crate alloc;

mod guest;
mod host;
mod isa;
mod reader;

pub use guest::{build_guest, rng_seed_offset, GuestDt, MAX_VCPUS};
pub use host::{parse_host, HartInfo, HostInfo, Plic, PLIC_CONTEXT_ABSENT};
pub use isa::isa_string;
pub use reader::total_size;

use core::fmt;

/// A physical address range `[base, base + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region {
    /// First byte of the range.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// Creates a region.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte, or `None` when `base + size` overflows.
    pub const fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Whether `other` lies entirely inside `self` (both must not wrap).
    pub fn contains(&self, other: &Region) -> bool {
        match (self.end(), other.end()) {
            (Some(end), Some(other_end)) => other.base >= self.base && other_end <= end,
            _ => false,
        }
    }

    /// Whether the two ranges share at least one byte (wrapping ranges are
    /// treated as reaching the top of the address space).
    pub fn overlaps(&self, other: &Region) -> bool {
        if self.size == 0 || other.size == 0 {
            return false;
        }
        let self_last = self.base.saturating_add(self.size - 1);
        let other_last = other.base.saturating_add(other.size - 1);
        self.base <= other_last && other.base <= self_last
    }
}

/// A memory-mapped device: its register window and its (first) interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Device {
    /// Physical base address of the register window.
    pub base: u64,
    /// Size of the register window in bytes.
    pub size: u64,
    /// Interrupt source number at the interrupt controller (PLIC/APLIC), if
    /// the node has one. For the guest DT this is required for the UART and
    /// for every virtio-mmio device.
    pub irq: Option<u32>,
}

impl Device {
    /// The register window as a [`Region`].
    pub const fn region(&self) -> Region {
        Region::new(self.base, self.size)
    }
}

/// Why a device tree could not be read or written.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The blob is shorter than its header says (or than a header).
    Truncated,
    /// The first word is not `0xd00dfeed`.
    BadMagic,
    /// The header's version fields say this is not a version-17 compatible
    /// blob.
    BadVersion {
        version: u32,
        last_comp_version: u32,
    },
    /// A header offset/size points outside the blob.
    BadHeader(&'static str),
    /// The structure block is not a well-formed token stream.
    BadStructure(&'static str),
    /// A node this crate needs is absent (`/cpus`, a memory node, ...).
    MissingNode(&'static str),
    /// A node lacks a property this crate needs.
    MissingProperty {
        /// Name of the node (without its path).
        node: alloc::string::String,
        /// Name of the missing property.
        property: &'static str,
    },
    /// A property is present but its value has the wrong shape or an
    /// impossible value.
    BadProperty {
        /// Name of the node (without its path).
        node: alloc::string::String,
        /// Name of the property.
        property: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A [`GuestDt`] field is out of range or inconsistent.
    InvalidConfig(&'static str),
    /// The `vm-fdt` writer refused (should not happen after validation).
    Writer(vm_fdt::Error),
}

impl From<vm_fdt::Error> for Error {
    fn from(e: vm_fdt::Error) -> Self {
        Error::Writer(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "device tree blob is truncated"),
            Error::BadMagic => write!(f, "not a device tree blob (bad magic)"),
            Error::BadVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "unsupported device tree version {version} (last compatible {last_comp_version})"
            ),
            Error::BadHeader(what) => write!(f, "bad device tree header: {what}"),
            Error::BadStructure(what) => write!(f, "bad device tree structure: {what}"),
            Error::MissingNode(what) => write!(f, "device tree lacks {what}"),
            Error::MissingProperty { node, property } => {
                write!(f, "device tree node {node:?} lacks property {property:?}")
            }
            Error::BadProperty {
                node,
                property,
                reason,
            } => write!(
                f,
                "device tree node {node:?} property {property:?}: {reason}"
            ),
            Error::InvalidConfig(what) => write!(f, "invalid guest device tree config: {what}"),
            Error::Writer(e) => write!(f, "device tree writer: {e}"),
        }
    }
}

impl core::error::Error for Error {}
