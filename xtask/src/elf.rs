//! Turns an ELF64 executable into the flat image a boot loader expects
//! (what `objcopy -O binary` does), so no binutils are needed.

use std::convert::TryInto;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Concatenates the PT_LOAD segments with file contents, from the lowest
/// physical address, zero-filling gaps. bss-only tails are left out (the
/// Image header's image_size covers them).
pub fn to_flat_binary(elf: &[u8]) -> Result<Vec<u8>, String> {
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) {
        return Err("not an ELF64 file".into());
    }
    let bad = || "truncated ELF".to_string();
    let phoff = u64_at(elf, 32).ok_or_else(bad)? as usize;
    let phentsize = u16_at(elf, 54).ok_or_else(bad)? as usize;
    let phnum = u16_at(elf, 56).ok_or_else(bad)? as usize;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(elf, p).ok_or_else(bad)? != 1 {
            continue; // not PT_LOAD
        }
        let offset = u64_at(elf, p + 8).ok_or_else(bad)? as usize;
        let paddr = u64_at(elf, p + 24).ok_or_else(bad)?;
        let filesz = u64_at(elf, p + 32).ok_or_else(bad)? as usize;
        if filesz == 0 {
            continue;
        }
        let data = elf.get(offset..offset + filesz).ok_or_else(bad)?;
        segs.push((paddr, data));
    }
    let base = segs
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or("no loadable segment")?;
    let end = segs
        .iter()
        .map(|s| s.0 + s.1.len() as u64)
        .max()
        .unwrap_or(base);
    let mut out = vec![0u8; (end - base) as usize];
    for (paddr, data) in segs {
        let o = (paddr - base) as usize;
        out[o..o + data.len()].copy_from_slice(data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf() {
        assert!(to_flat_binary(b"hello").is_err());
        assert!(to_flat_binary(b"\x7fELF\x02").is_err());
    }

    #[test]
    fn concatenates_segments_with_gap() {
        // Minimal ELF64 with two PT_LOAD program headers.
        let mut e = vec![0u8; 64 + 2 * 56];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&2u16.to_le_bytes());
        let data_off = e.len() as u64;
        e.extend_from_slice(b"AAAABB");
        for (i, (off, paddr, len)) in [(data_off, 0x1000u64, 4u64), (data_off + 4, 0x1008, 2)]
            .iter()
            .enumerate()
        {
            let p = 64 + i * 56;
            e[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
            e[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            e[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
            e[p + 32..p + 40].copy_from_slice(&len.to_le_bytes());
        }
        assert_eq!(to_flat_binary(&e).unwrap(), b"AAAA\0\0\0\0BB");
    }
}
