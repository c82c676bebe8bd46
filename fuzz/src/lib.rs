//! Helpers shared by Rivet's fuzz targets (`fuzz_targets/*.rs`).
//!
//! Most targets read their input as a little program: a stream of opcodes
//! and operands. [`Input`] hands those out from the front of libFuzzer's
//! byte buffer, little-endian, and yields zeros once the buffer is used up,
//! so every input (including the empty one) is a valid program and a seed
//! can be written by hand (see `seeds/make_seeds.py`).
//!
//! [`virtio`] is the hostile virtio driver (and its checks) that the
//! `virtqueue` and `virtio_net_fs` targets share.

pub mod virtio;

/// A cursor over the fuzzer's bytes. Reads past the end give 0.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// True once every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }

    /// Everything not consumed yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let n = self.remaining();
        self.bytes(n)
    }

    fn le<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.le::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.le())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.le())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.le())
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// A value in `0..n` (0 when `n == 0`) from one byte when `n <= 256`,
    /// else from four.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        if n <= 256 {
            u64::from(self.u8()) % n
        } else {
            u64::from(self.u32()) % n
        }
    }

    /// One element of `from` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    /// A 64-bit value that is often at an edge: one selector byte, then
    /// either a raw u64, a small number, a power of two (+-1), or one of
    /// `specials` plus a small signed offset.
    pub fn interesting(&mut self, specials: &[u64]) -> u64 {
        match self.u8() % 8 {
            0 | 1 => self.u64(),
            2 => u64::from(self.u8()),
            3 => {
                let bit = 1u64 << (self.u8() % 64);
                match self.u8() % 3 {
                    0 => bit,
                    1 => bit.wrapping_sub(1),
                    _ => bit.wrapping_add(1),
                }
            }
            _ if specials.is_empty() => self.u64(),
            _ => {
                let base = self.pick(specials);
                let off = i64::from(self.u8() as i8);
                base.wrapping_add(off as u64)
            }
        }
    }
}
