//! Guest image loading rules: the RISC-V Linux `Image` header and the layout
//! of kernel, initrd and device tree in guest RAM.
//!
//! Follows Documentation/arch/riscv/boot-image-header.rst and boot.rst of
//! Linux: the image is placed at a 2 MiB-aligned address plus `text_offset`
//! from the start of RAM, the device tree is 8-byte aligned and must not
//! overlap the kernel, and the kernel's `image_size` (its whole footprint,
//! including bss) must fit. This crate only computes; the hypervisor copies.
#![no_std]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#[cfg(test)]
extern crate std;

/// `"RISCV\0\0\0"` at offset 48 (deprecated but still written by Linux).
pub const MAGIC: u64 = 0x0000_0056_4353_4952;
/// `"RSC\x05"` at offset 56.
pub const MAGIC2: u32 = 0x0543_5352;
pub const HEADER_SIZE: usize = 64;
/// Room reserved for the guest device tree at the top of RAM.
pub const DTB_MAX: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    pub image_size: u64,
    pub flags: u64,
    pub version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    TooSmall,
    BadMagic,
    /// text_offset not 4 KiB aligned or larger than 2 MiB granularity allows.
    BadTextOffset(u64),
    /// The kernel, initrd and device tree do not fit in guest RAM.
    DoesNotFit {
        need: u64,
        have: u64,
    },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::TooSmall => write!(f, "kernel image smaller than the 64-byte Image header"),
            LoadError::BadMagic => write!(
                f,
                "not a RISC-V Linux Image (magic \"RSC\\x05\" missing at offset 56)"
            ),
            LoadError::BadTextOffset(o) => {
                write!(f, "Image text_offset {o:#x} is not 4 KiB aligned")
            }
            LoadError::DoesNotFit { need, have } => {
                write!(
                    f,
                    "images need {need:#x} bytes of guest RAM but the VM has {have:#x}"
                )
            }
        }
    }
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Parses and checks the 64-byte header at the start of `image`.
pub fn parse_header(image: &[u8]) -> Result<ImageHeader, LoadError> {
    if image.len() < HEADER_SIZE {
        return Err(LoadError::TooSmall);
    }
    let magic2 = u32_at(image, 56).ok_or(LoadError::TooSmall)?;
    if magic2 != MAGIC2 {
        return Err(LoadError::BadMagic);
    }
    let text_offset = u64_at(image, 8).ok_or(LoadError::TooSmall)?;
    if text_offset % 4096 != 0 || text_offset >= (1 << 30) {
        return Err(LoadError::BadTextOffset(text_offset));
    }
    Ok(ImageHeader {
        text_offset,
        image_size: u64_at(image, 16).ok_or(LoadError::TooSmall)?,
        flags: u64_at(image, 24).ok_or(LoadError::TooSmall)?,
        version: u32_at(image, 32).ok_or(LoadError::TooSmall)?,
    })
}

/// Where everything goes in guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub kernel: u64,
    /// Bytes the kernel occupies once running (max of file size and image_size).
    pub kernel_footprint: u64,
    pub initrd: Option<(u64, u64)>,
    pub dtb: u64,
}

/// Plans the layout for a kernel of `kernel_len` bytes with `header`, an
/// optional initrd of `initrd_len` bytes, in RAM `[ram_base, ram_base+ram_size)`.
/// Kernel at the bottom, device tree in the top 2 MiB, initrd just below it.
pub fn plan(
    header: &ImageHeader,
    kernel_len: u64,
    initrd_len: Option<u64>,
    ram_base: u64,
    ram_size: u64,
) -> Result<Layout, LoadError> {
    const MIB2: u64 = 2 << 20;
    let too_big = |need: u64| LoadError::DoesNotFit {
        need,
        have: ram_size,
    };
    let kernel = ram_base
        .checked_add(header.text_offset)
        .ok_or(too_big(u64::MAX))?;
    let footprint = kernel_len.max(header.image_size);
    let kernel_end_off = header
        .text_offset
        .checked_add(footprint)
        .ok_or(too_big(u64::MAX))?;
    // The device tree lives in the last 2 MiB-aligned block (Linux maps it
    // early with a 2 MiB mapping, so it must not straddle that boundary).
    if ram_size < MIB2 || !ram_size.is_multiple_of(MIB2) {
        return Err(too_big(MIB2));
    }
    let dtb_off = ram_size - MIB2;
    // Every address below is at most `ram_base + dtb_off`: RAM must lie
    // inside the address space (it may end exactly at 2^64).
    let dtb = ram_base.checked_add(dtb_off).ok_or(too_big(u64::MAX))?;
    let mut top = dtb_off;
    let initrd = match initrd_len {
        Some(len) => {
            let start = top
                .checked_sub(len)
                .map(|s| s & !4095)
                .ok_or(too_big(len.saturating_add(MIB2)))?;
            top = start;
            Some((ram_base + start, len))
        }
        None => None,
    };
    if kernel_end_off > top {
        let need = kernel_end_off
            .saturating_add(initrd_len.unwrap_or(0))
            .saturating_add(MIB2);
        return Err(too_big(need));
    }
    Ok(Layout {
        kernel,
        kernel_footprint: footprint,
        initrd,
        dtb,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[48..56].copy_from_slice(&MAGIC.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC2.to_le_bytes());
        h
    }

    #[test]
    fn parses_linux_header() {
        let h = parse_header(&header(0x20_0000, 0x140_0000)).unwrap();
        assert_eq!(h.text_offset, 0x20_0000);
        assert_eq!(h.image_size, 0x140_0000);
    }

    #[test]
    fn real_prebuilt_image_when_present() {
        let Ok(img) = std::fs::read("../../../shared/guests/linux-6.12-Image") else {
            return;
        };
        let h = parse_header(&img).unwrap();
        assert_eq!(h.text_offset, 0x20_0000);
        assert!(h.image_size >= img.len() as u64);
    }

    #[test]
    fn refuses_bad_images() {
        assert_eq!(parse_header(&[0; 10]), Err(LoadError::TooSmall));
        let mut h = header(0x20_0000, 0);
        h[57] = 0;
        assert_eq!(parse_header(&h), Err(LoadError::BadMagic));
        assert_eq!(
            parse_header(&header(0x123, 0)),
            Err(LoadError::BadTextOffset(0x123))
        );
    }

    #[test]
    fn layout_places_everything() {
        let h = parse_header(&header(0x20_0000, 0x100_0000)).unwrap();
        let l = plan(&h, 0x80_0000, Some(0x10_0001), 0x8000_0000, 128 << 20).unwrap();
        assert_eq!(l.kernel, 0x8020_0000);
        assert_eq!(l.dtb, 0x8000_0000 + (126 << 20));
        let (start, len) = l.initrd.unwrap();
        assert_eq!(start % 4096, 0);
        assert!(start + len <= l.dtb);
        assert!(start >= l.kernel + l.kernel_footprint);
    }

    /// Found by `cargo xtask fuzz` (target `bundle_loader`, input kept in
    /// `fuzz/regressions/bundle_loader/plan-ram-past-top`): RAM reaching past
    /// 2^64 made `plan` overflow (a panic with overflow checks) instead of
    /// refusing.
    #[test]
    fn layout_refuses_ram_past_the_top_of_the_address_space() {
        let h = parse_header(&header(0, 0x1000)).unwrap();
        let base = 0xffff_ffff_ffe0_0000; // 2 MiB below 2^64
        assert!(matches!(
            plan(&h, 0x100, None, base, 4 << 20),
            Err(LoadError::DoesNotFit { .. })
        ));
        assert!(matches!(
            plan(&h, 0x100, Some(0x10), base, 4 << 20),
            Err(LoadError::DoesNotFit { .. })
        ));
        // RAM that ends exactly at 2^64 is still usable.
        let l = plan(&h, 0x100, Some(0x10), base - (2 << 20), 4 << 20).unwrap();
        assert_eq!(l.dtb, base);
        assert_eq!(l.initrd, Some((base - 4096, 0x10)));
    }

    #[test]
    fn layout_refuses_what_does_not_fit() {
        let h = parse_header(&header(0x20_0000, 0x100_0000)).unwrap();
        assert!(matches!(plan(&h, 0x10, None, 0x8000_0000, 32 << 20), Ok(_)));
        assert!(matches!(
            plan(&h, 0x10, Some(30 << 20), 0x8000_0000, 32 << 20),
            Err(LoadError::DoesNotFit { .. })
        ));
        assert!(matches!(
            plan(&h, 0x10, Some(u64::MAX), 0x8000_0000, 32 << 20),
            Err(_)
        ));
        assert!(matches!(plan(&h, 0x10, None, 0x8000_0000, 3 << 20), Err(_)));
    }
}
