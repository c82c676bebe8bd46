//! Guest physical memory access, bounds-checked.
//!
//! This crate owns the one rule every device model and SBI handler relies on:
//! guest memory is reached only through [`GuestMemory`], which takes a guest
//! physical address (GPA) and a length and either serves the whole range from
//! the VM's own RAM or refuses with [`MemError`]. Nothing here can touch memory
//! outside the range the implementation was given, and no arithmetic on a
//! guest-supplied address or length may overflow (all of it is checked).
//!
//! The hypervisor implements the trait over the VM's host-physical RAM block;
//! host tests use [`VecMemory`].
#![no_std]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(any(test, feature = "std"))]
extern crate std;

/// Why a guest memory access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// Some byte of `[gpa, gpa + len)` lies outside guest RAM, or the range wraps.
    OutOfRange { gpa: u64, len: u64 },
}

/// A guest's RAM as seen from the hypervisor: one contiguous GPA range.
pub trait GuestMemory {
    /// First guest physical address of RAM.
    fn base(&self) -> u64;
    /// Size of RAM in bytes.
    fn size(&self) -> u64;
    /// Copies `buf.len()` bytes from `gpa` into `buf`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Copies `buf` to guest memory at `gpa`.
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError>;

    /// Returns the offset of `[gpa, gpa+len)` within RAM when the whole range
    /// is inside it (an empty range must still start inside or at the end).
    fn check_range(&self, gpa: u64, len: u64) -> Result<u64, MemError> {
        range_offset(self.base(), self.size(), gpa, len)
    }

    /// Reads a little-endian u16/u32/u64 helper.
    fn read_u64(&self, gpa: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn read_u32(&self, gpa: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn read_u16(&self, gpa: u64) -> Result<u16, MemError> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn write_u16(&mut self, gpa: u64, v: u16) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
    fn write_u32(&mut self, gpa: u64, v: u32) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
    fn write_u64(&mut self, gpa: u64, v: u64) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// Offset of `[gpa, gpa+len)` inside `[base, base+size)`, with every step
/// overflow-checked. This is the single bounds rule all implementations use.
pub fn range_offset(base: u64, size: u64, gpa: u64, len: u64) -> Result<u64, MemError> {
    let err = MemError::OutOfRange { gpa, len };
    let off = gpa.checked_sub(base).ok_or(err)?;
    let end = off.checked_add(len).ok_or(err)?;
    if off > size || end > size {
        return Err(err);
    }
    Ok(off)
}

/// Heap-backed guest memory for host tests.
#[cfg(any(test, feature = "std"))]
pub struct VecMemory {
    base: u64,
    bytes: std::vec::Vec<u8>,
}

#[cfg(any(test, feature = "std"))]
impl VecMemory {
    pub fn new(base: u64, size: usize) -> Self {
        Self {
            base,
            bytes: std::vec![0; size],
        }
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

#[cfg(any(test, feature = "std"))]
impl GuestMemory for VecMemory {
    fn base(&self) -> u64 {
        self.base
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = self.check_range(gpa, buf.len() as u64)? as usize;
        let src = self
            .bytes
            .get(off..off + buf.len())
            .ok_or(MemError::OutOfRange {
                gpa,
                len: buf.len() as u64,
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
        let off = self.check_range(gpa, buf.len() as u64)? as usize;
        let dst = self
            .bytes
            .get_mut(off..off + buf.len())
            .ok_or(MemError::OutOfRange {
                gpa,
                len: buf.len() as u64,
            })?;
        dst.copy_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_and_edges() {
        assert_eq!(
            range_offset(0x8000_0000, 0x1000, 0x8000_0000, 0x1000),
            Ok(0)
        );
        assert_eq!(range_offset(0x8000_0000, 0x1000, 0x8000_0ff8, 8), Ok(0xff8));
        assert_eq!(
            range_offset(0x8000_0000, 0x1000, 0x8000_1000, 0),
            Ok(0x1000)
        );
    }

    #[test]
    fn outside_below_above_and_wrapping() {
        assert!(range_offset(0x8000_0000, 0x1000, 0x7fff_ffff, 1).is_err());
        assert!(range_offset(0x8000_0000, 0x1000, 0x8000_0ff9, 8).is_err());
        assert!(range_offset(0x8000_0000, 0x1000, 0x8000_1001, 0).is_err());
        assert!(range_offset(0x8000_0000, 0x1000, 0x8000_0010, u64::MAX).is_err());
        assert!(range_offset(0, u64::MAX, u64::MAX, 2).is_err());
    }

    #[test]
    fn vec_memory_round_trip() {
        let mut m = VecMemory::new(0x1000, 64);
        m.write_u64(0x1008, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u64(0x1008).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u16(0x1008).unwrap(), 0x7788);
        assert!(m.write_u32(0x103e, 1).is_err());
        assert!(m.read_u32(0xffc).is_err());
    }
}
