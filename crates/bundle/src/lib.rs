//! The boot bundle: how `xtask` hands the hypervisor its VMs.
//!
//! A bundle is one binary blob that QEMU loads as the hypervisor's "initrd"
//! (OpenSBI passes its location in `/chosen` of the host device tree). It holds
//! a small header, one fixed-size record per VM, and the VMs' images (kernel,
//! optional initrd, bootargs) as byte ranges of the blob. This crate owns the
//! format: [`parse`] validates every field and range before the hypervisor
//! uses any of it (the hypervisor re-validates what the host tool wrote), and
//! [`Writer`] (feature `alloc`) produces it.
//!
//! All integers are little-endian. Layout:
//! ```text
//! 0   magic "RIVETBND"            8
//! 8   version (1)                 u32
//! 12  vm count                    u32
//! 16  total length of the blob    u64
//! 24  flags (global)              u64   bit 0: keep running when the last VM stops
//! 32  log level (0 off..5 trace)  u32
//! 36  uplink network id + 1 (0 = none)  u32
//! 40  VM records, RECORD_SIZE bytes each
//! ... payload (images), each 8-byte aligned
//! ```
#![no_std]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

pub const MAGIC: &[u8; 8] = b"RIVETBND";
pub const VERSION: u32 = 4;
pub const HEADER_SIZE: usize = 40;
pub const RECORD_SIZE: usize = 512;
/// Offset of the per-vCPU pinning table in a VM record: one byte per vCPU,
/// the physical hart index it is pinned to, or [`UNPINNED`].
pub const PIN_OFFSET: usize = 96;
pub const UNPINNED: u8 = 0xff;
/// Offset of the device table in a VM record: disk count (u32), device
/// flags (u32), then [`MAX_DISKS`] disk entries of [`DISK_ENTRY`] bytes:
/// physical disk index (u32), flags (u32, bit 0 read-only), first sector
/// (u64), sector count (u64, 0 = to the end of the disk).
pub const DEV_OFFSET: usize = 160;
pub const MAX_DISKS: usize = 4;
pub const DISK_ENTRY: usize = 24;
/// VM device flag: a virtio-console (hvc) device.
pub const DEV_HVC: u32 = 1;
/// VM device flag: a virtio-rng device (backed by the machine's).
pub const DEV_RNG: u32 = 2;

/// Offset of the NIC table: count (u32), reserved (u32), then [`MAX_NICS`]
/// entries of 8 bytes: network id (u32), reserved (u32).
pub const NIC_OFFSET: usize = 264;
pub const MAX_NICS: usize = 4;
/// Offset of the shared-directory table: count (u32), reserved (u32), then
/// [`MAX_FS`] entries of [`FS_ENTRY`] bytes: physical virtio-fs index (u32),
/// reserved (u32), guest tag (NUL-padded, [`FS_TAG_LEN`] bytes), padding.
pub const FS_OFFSET: usize = 304;
pub const MAX_FS: usize = 2;
pub const FS_ENTRY: usize = 48;
pub const FS_TAG_LEN: usize = 36;
/// Offset of the NICs' MAC table: [`MAX_NICS`] entries of 8 bytes: the MAC
/// (6 bytes), a flag byte (1 = set; 0 = derive one), padding.
pub const MAC_OFFSET: usize = 408;

/// A shared directory: physical virtio-fs `fs`, seen by the guest as `tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsDesc {
    pub fs: u32,
    pub tag: [u8; FS_TAG_LEN],
}

impl Default for FsDesc {
    fn default() -> Self {
        Self {
            fs: 0,
            tag: [0; FS_TAG_LEN],
        }
    }
}

/// One guest disk: a sector window of physical disk `disk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskDesc {
    pub disk: u32,
    pub read_only: bool,
    pub start: u64,
    /// 0 = to the end of the physical disk.
    pub sectors: u64,
}
pub const NAME_LEN: usize = 32;
/// At most this many VMs in one bundle.
pub const MAX_VMS: usize = 16;
/// At most this many vCPUs per VM (the SBI hart mask width we support).
pub const MAX_VCPUS: u32 = 64;

/// Global flag: do not power off when the last VM stops.
pub const FLAG_KEEP_RUNNING: u64 = 1;
/// VM flag: this VM has console input focus at start.
pub const VM_FLAG_FOCUS: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    TooShort,
    BadMagic,
    BadVersion(u32),
    BadLength,
    TooManyVms(u32),
    NoVms,
    /// A VM record field is invalid: (vm index, field name).
    BadField(usize, &'static str),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooShort => write!(f, "bundle shorter than its header"),
            Error::BadMagic => write!(f, "not a Rivet bundle (bad magic)"),
            Error::BadVersion(v) => write!(f, "bundle version {v} unsupported (want {VERSION})"),
            Error::BadLength => write!(f, "bundle length field does not match its size"),
            Error::TooManyVms(n) => write!(f, "{n} VMs in bundle, at most {MAX_VMS}"),
            Error::NoVms => write!(f, "bundle describes no VM"),
            Error::BadField(i, name) => write!(f, "VM {i}: invalid field `{name}`"),
        }
    }
}

/// One VM as described by the bundle. Slices borrow the bundle.
#[derive(Debug, Clone, Copy)]
pub struct VmDesc<'a> {
    pub name: &'a str,
    pub vcpus: u32,
    pub flags: u32,
    pub memory_size: u64,
    pub kernel: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    pub bootargs: &'a str,
    /// Physical hart index per vCPU (`None` = time-sliced on any hart).
    pub pins: [Option<u8>; MAX_VCPUS as usize],
    pub disks: [DiskDesc; MAX_DISKS],
    pub disk_count: usize,
    /// [`DEV_HVC`], [`DEV_RNG`].
    pub devices: u32,
    /// Network id of each NIC.
    pub nics: [u32; MAX_NICS],
    pub nic_count: usize,
    /// Configured MAC of each NIC, if any.
    pub macs: [Option<[u8; 6]>; MAX_NICS],
    pub fs: [FsDesc; MAX_FS],
    pub fs_count: usize,
}

/// A validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle<'a> {
    pub flags: u64,
    pub log_level: u32,
    /// The network bridged to the machine's own NIC, if any.
    pub uplink: Option<u32>,
    data: &'a [u8],
    count: usize,
}

fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn slice_at(b: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let off = usize::try_from(off).ok()?;
    let len = usize::try_from(len).ok()?;
    b.get(off..off.checked_add(len)?)
}

/// Validates a bundle and every VM record in it.
pub fn parse(data: &[u8]) -> Result<Bundle<'_>, Error> {
    if data.len() < HEADER_SIZE {
        return Err(Error::TooShort);
    }
    if data.get(0..8) != Some(&MAGIC[..]) {
        return Err(Error::BadMagic);
    }
    let version = le_u32(data, 8).ok_or(Error::TooShort)?;
    if version != VERSION {
        return Err(Error::BadVersion(version));
    }
    let count = le_u32(data, 12).ok_or(Error::TooShort)?;
    let total = le_u64(data, 16).ok_or(Error::TooShort)?;
    // QEMU may pad what it loads; the blob must at least hold `total` bytes.
    if total > data.len() as u64 || total < HEADER_SIZE as u64 {
        return Err(Error::BadLength);
    }
    let data = data.get(..total as usize).ok_or(Error::BadLength)?;
    if count == 0 {
        return Err(Error::NoVms);
    }
    if count as usize > MAX_VMS {
        return Err(Error::TooManyVms(count));
    }
    let bundle = Bundle {
        flags: le_u64(data, 24).ok_or(Error::TooShort)?,
        log_level: le_u32(data, 32).ok_or(Error::TooShort)?,
        uplink: le_u32(data, 36).ok_or(Error::TooShort)?.checked_sub(1),
        data,
        count: count as usize,
    };
    for i in 0..bundle.count {
        bundle.vm(i)?;
    }
    Ok(bundle)
}

impl<'a> Bundle<'a> {
    pub fn vm_count(&self) -> usize {
        self.count
    }

    pub fn vms(&self) -> impl Iterator<Item = VmDesc<'a>> + '_ {
        (0..self.count).filter_map(|i| self.vm(i).ok())
    }

    /// Decodes and validates VM record `i`.
    pub fn vm(&self, i: usize) -> Result<VmDesc<'a>, Error> {
        let d = self.data;
        let bad = |f| Error::BadField(i, f);
        let rec = i
            .checked_mul(RECORD_SIZE)
            .and_then(|o| o.checked_add(HEADER_SIZE))
            .ok_or(bad("record"))?;
        let r = d.get(rec..rec + RECORD_SIZE).ok_or(bad("record"))?;
        let name_raw = r.get(..NAME_LEN).ok_or(bad("name"))?;
        let name_len = name_raw.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        let name = core::str::from_utf8(name_raw.get(..name_len).ok_or(bad("name"))?)
            .map_err(|_| bad("name"))?;
        if name.is_empty() {
            return Err(bad("name"));
        }
        let vcpus = le_u32(r, 32).ok_or(bad("vcpus"))?;
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(bad("vcpus"));
        }
        let flags = le_u32(r, 36).ok_or(bad("flags"))?;
        let memory_size = le_u64(r, 40).ok_or(bad("memory"))?;
        if memory_size < (4 << 20) || memory_size % (2 << 20) != 0 {
            return Err(bad("memory"));
        }
        let field = |off: usize, name: &'static str| -> Result<&'a [u8], Error> {
            let o = le_u64(r, off).ok_or(bad(name))?;
            let l = le_u64(r, off + 8).ok_or(bad(name))?;
            slice_at(d, o, l).ok_or(bad(name))
        };
        let kernel = field(48, "kernel")?;
        if kernel.is_empty() {
            return Err(bad("kernel"));
        }
        let initrd = field(64, "initrd")?;
        let bootargs = core::str::from_utf8(field(80, "bootargs")?).map_err(|_| bad("bootargs"))?;
        let mut pins = [None; MAX_VCPUS as usize];
        let table = r
            .get(PIN_OFFSET..PIN_OFFSET + MAX_VCPUS as usize)
            .ok_or(bad("pin"))?;
        for (i, (slot, &p)) in pins.iter_mut().zip(table).enumerate() {
            if p != UNPINNED {
                if i >= vcpus as usize {
                    return Err(bad("pin"));
                }
                *slot = Some(p);
            }
        }
        let disk_count = le_u32(r, DEV_OFFSET).ok_or(bad("disks"))? as usize;
        if disk_count > MAX_DISKS {
            return Err(bad("disks"));
        }
        let devices = le_u32(r, DEV_OFFSET + 4).ok_or(bad("devices"))?;
        let mut disks = [DiskDesc::default(); MAX_DISKS];
        for (i, d) in disks.iter_mut().enumerate().take(disk_count) {
            let o = DEV_OFFSET + 8 + i * DISK_ENTRY;
            *d = DiskDesc {
                disk: le_u32(r, o).ok_or(bad("disks"))?,
                read_only: le_u32(r, o + 4).ok_or(bad("disks"))? & 1 != 0,
                start: le_u64(r, o + 8).ok_or(bad("disks"))?,
                sectors: le_u64(r, o + 16).ok_or(bad("disks"))?,
            };
        }
        let nic_count = le_u32(r, NIC_OFFSET).ok_or(bad("nics"))? as usize;
        if nic_count > MAX_NICS {
            return Err(bad("nics"));
        }
        let mut nics = [0u32; MAX_NICS];
        for (i, n) in nics.iter_mut().enumerate().take(nic_count) {
            *n = le_u32(r, NIC_OFFSET + 8 + i * 8).ok_or(bad("nics"))?;
        }
        let mut macs = [None; MAX_NICS];
        for (i, m) in macs.iter_mut().enumerate().take(nic_count) {
            let e = r
                .get(MAC_OFFSET + i * 8..MAC_OFFSET + i * 8 + 8)
                .ok_or(bad("mac"))?;
            if e.get(6) == Some(&1) {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(e.get(..6).ok_or(bad("mac"))?);
                if mac[0] & 1 != 0 {
                    return Err(bad("mac"));
                }
                *m = Some(mac);
            }
        }
        let fs_count = le_u32(r, FS_OFFSET).ok_or(bad("fs"))? as usize;
        if fs_count > MAX_FS {
            return Err(bad("fs"));
        }
        let mut fs = [FsDesc::default(); MAX_FS];
        for (i, f) in fs.iter_mut().enumerate().take(fs_count) {
            let o = FS_OFFSET + 8 + i * FS_ENTRY;
            f.fs = le_u32(r, o).ok_or(bad("fs"))?;
            let tag = r.get(o + 8..o + 8 + FS_TAG_LEN).ok_or(bad("fs"))?;
            f.tag.copy_from_slice(tag);
            let len = f.tag.iter().position(|&b| b == 0).unwrap_or(FS_TAG_LEN);
            if len == 0 || core::str::from_utf8(f.tag.get(..len).unwrap_or(&[])).is_err() {
                return Err(bad("fs"));
            }
        }
        Ok(VmDesc {
            name,
            vcpus,
            flags,
            memory_size,
            kernel,
            initrd: if initrd.is_empty() {
                None
            } else {
                Some(initrd)
            },
            bootargs,
            pins,
            disks,
            disk_count,
            devices,
            nics,
            nic_count,
            macs,
            fs,
            fs_count,
        })
    }
}

/// Builds a bundle (host side).
#[cfg(any(test, feature = "alloc"))]
pub struct Writer {
    pub flags: u64,
    pub log_level: u32,
    /// Network id bridged to the machine's NIC.
    pub uplink: Option<u32>,
    vms: alloc::vec::Vec<OwnedVm>,
}

#[cfg(any(test, feature = "alloc"))]
pub struct OwnedVm {
    pub name: alloc::string::String,
    pub vcpus: u32,
    pub flags: u32,
    pub memory_size: u64,
    pub kernel: alloc::vec::Vec<u8>,
    pub initrd: alloc::vec::Vec<u8>,
    pub bootargs: alloc::string::String,
    /// Physical hart index per vCPU; empty = none pinned.
    pub pins: alloc::vec::Vec<Option<u8>>,
    /// At most [`MAX_DISKS`].
    pub disks: alloc::vec::Vec<DiskDesc>,
    pub devices: u32,
    /// Network id per NIC, at most [`MAX_NICS`].
    pub nics: alloc::vec::Vec<u32>,
    /// MAC per NIC (same length as `nics`, or empty).
    pub macs: alloc::vec::Vec<Option<[u8; 6]>>,
    /// Shared directories: (physical virtio-fs index, guest tag).
    pub fs: alloc::vec::Vec<(u32, alloc::string::String)>,
}

#[cfg(any(test, feature = "alloc"))]
impl Writer {
    pub fn new(flags: u64, log_level: u32) -> Self {
        Self {
            flags,
            log_level,
            uplink: None,
            vms: alloc::vec::Vec::new(),
        }
    }

    pub fn add_vm(&mut self, vm: OwnedVm) {
        self.vms.push(vm);
    }

    /// Serializes; panics only on host-side misuse (name too long), which
    /// the configuration validator rules out first.
    pub fn finish(&self) -> alloc::vec::Vec<u8> {
        use alloc::vec::Vec;
        let mut out = Vec::new();
        let payload_start = HEADER_SIZE + RECORD_SIZE * self.vms.len();
        let mut payload: Vec<u8> = Vec::new();
        let place = |bytes: &[u8], payload: &mut Vec<u8>| -> (u64, u64) {
            while (payload_start + payload.len()) % 8 != 0 {
                payload.push(0);
            }
            let off = (payload_start + payload.len()) as u64;
            payload.extend_from_slice(bytes);
            (if bytes.is_empty() { 0 } else { off }, bytes.len() as u64)
        };
        let mut records = Vec::new();
        for vm in &self.vms {
            let mut r = [0u8; RECORD_SIZE];
            let name = vm.name.as_bytes();
            assert!(
                name.len() <= NAME_LEN,
                "VM name longer than {NAME_LEN} bytes"
            );
            r[..name.len()].copy_from_slice(name);
            r[32..36].copy_from_slice(&vm.vcpus.to_le_bytes());
            r[36..40].copy_from_slice(&vm.flags.to_le_bytes());
            r[40..48].copy_from_slice(&vm.memory_size.to_le_bytes());
            r[PIN_OFFSET..PIN_OFFSET + MAX_VCPUS as usize].fill(UNPINNED);
            assert!(
                vm.disks.len() <= MAX_DISKS,
                "at most {MAX_DISKS} disks per VM"
            );
            r[DEV_OFFSET..DEV_OFFSET + 4].copy_from_slice(&(vm.disks.len() as u32).to_le_bytes());
            r[DEV_OFFSET + 4..DEV_OFFSET + 8].copy_from_slice(&vm.devices.to_le_bytes());
            for (i, d) in vm.disks.iter().enumerate() {
                let o = DEV_OFFSET + 8 + i * DISK_ENTRY;
                r[o..o + 4].copy_from_slice(&d.disk.to_le_bytes());
                r[o + 4..o + 8].copy_from_slice(&(d.read_only as u32).to_le_bytes());
                r[o + 8..o + 16].copy_from_slice(&d.start.to_le_bytes());
                r[o + 16..o + 24].copy_from_slice(&d.sectors.to_le_bytes());
            }
            assert!(vm.nics.len() <= MAX_NICS, "at most {MAX_NICS} NICs per VM");
            r[NIC_OFFSET..NIC_OFFSET + 4].copy_from_slice(&(vm.nics.len() as u32).to_le_bytes());
            for (i, n) in vm.nics.iter().enumerate() {
                let o = NIC_OFFSET + 8 + i * 8;
                r[o..o + 4].copy_from_slice(&n.to_le_bytes());
            }
            for (i, m) in vm.macs.iter().enumerate().take(MAX_NICS) {
                if let Some(mac) = m {
                    r[MAC_OFFSET + i * 8..MAC_OFFSET + i * 8 + 6].copy_from_slice(mac);
                    r[MAC_OFFSET + i * 8 + 6] = 1;
                }
            }
            assert!(
                vm.fs.len() <= MAX_FS,
                "at most {MAX_FS} shared directories per VM"
            );
            r[FS_OFFSET..FS_OFFSET + 4].copy_from_slice(&(vm.fs.len() as u32).to_le_bytes());
            for (i, (idx, tag)) in vm.fs.iter().enumerate() {
                let o = FS_OFFSET + 8 + i * FS_ENTRY;
                r[o..o + 4].copy_from_slice(&idx.to_le_bytes());
                let t = tag.as_bytes();
                assert!(
                    !t.is_empty() && t.len() <= FS_TAG_LEN,
                    "fs tag must be 1..={FS_TAG_LEN} bytes"
                );
                r[o + 8..o + 8 + t.len()].copy_from_slice(t);
            }
            for (i, p) in vm.pins.iter().enumerate().take(MAX_VCPUS as usize) {
                if let Some(h) = p {
                    r[PIN_OFFSET + i] = *h;
                }
            }
            for (off, bytes) in [
                (48, &vm.kernel[..]),
                (64, &vm.initrd[..]),
                (80, vm.bootargs.as_bytes()),
            ] {
                let (o, l) = place(bytes, &mut payload);
                r[off..off + 8].copy_from_slice(&o.to_le_bytes());
                r[off + 8..off + 16].copy_from_slice(&l.to_le_bytes());
            }
            records.push(r);
        }
        let total = (payload_start + payload.len()) as u64;
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.vms.len() as u32).to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.log_level.to_le_bytes());
        out.extend_from_slice(&self.uplink.map_or(0, |u| u.saturating_add(1)).to_le_bytes());
        for r in &records {
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&payload);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn vm(name: &str) -> OwnedVm {
        OwnedVm {
            name: name.to_string(),
            vcpus: 2,
            flags: VM_FLAG_FOCUS,
            memory_size: 64 << 20,
            kernel: vec![1, 2, 3],
            initrd: vec![],
            bootargs: "console=ttyS0".to_string(),
            pins: vec![],
            disks: vec![],
            devices: 0,
            nics: vec![],
            macs: vec![],
            fs: vec![],
        }
    }

    #[test]
    fn round_trip_two_vms() {
        let mut w = Writer::new(FLAG_KEEP_RUNNING, 3);
        w.add_vm(vm("a"));
        let mut b = vm("linux");
        b.initrd = vec![9; 17];
        w.add_vm(b);
        let blob = w.finish();
        let p = parse(&blob).unwrap();
        assert_eq!(p.vm_count(), 2);
        assert_eq!(p.uplink, None);
        assert_eq!(p.flags, FLAG_KEEP_RUNNING);
        assert_eq!(p.log_level, 3);
        let v0 = p.vm(0).unwrap();
        assert_eq!(v0.name, "a");
        assert_eq!(v0.kernel, &[1, 2, 3]);
        assert!(v0.initrd.is_none());
        let v1 = p.vm(1).unwrap();
        assert_eq!(v1.initrd.unwrap(), &[9; 17][..]);
        assert_eq!(v1.bootargs, "console=ttyS0");
        assert_eq!(v1.vcpus, 2);
    }

    #[test]
    fn pins_round_trip_and_are_checked() {
        let mut w = Writer::new(0, 0);
        let mut v = vm("p");
        v.pins = vec![Some(1), None];
        w.add_vm(v);
        let blob = w.finish();
        let p = parse(&blob).unwrap();
        let d = p.vm(0).unwrap();
        assert_eq!(&d.pins[..3], &[Some(1), None, None]);
        // A pin for a vCPU the VM does not have is refused.
        let mut b = blob.clone();
        b[HEADER_SIZE + PIN_OFFSET + 5] = 0;
        assert_eq!(parse(&b).unwrap_err(), Error::BadField(0, "pin"));
    }

    #[test]
    fn disks_round_trip_and_are_checked() {
        let mut w = Writer::new(0, 0);
        let mut v = vm("d");
        v.disks = vec![DiskDesc {
            disk: 1,
            read_only: true,
            start: 2048,
            sectors: 4096,
        }];
        v.devices = DEV_HVC | DEV_RNG;
        v.nics = vec![3, 7];
        v.macs = vec![None, Some([2, 0, 0, 0, 0, 9])];
        v.fs = vec![(1, "host".to_string())];
        w.add_vm(v);
        let blob = w.finish();
        let d = parse(&blob).unwrap().vm(0).unwrap();
        assert_eq!(d.disk_count, 1);
        assert_eq!(
            d.disks[0],
            DiskDesc {
                disk: 1,
                read_only: true,
                start: 2048,
                sectors: 4096
            }
        );
        assert_eq!(d.devices, DEV_HVC | DEV_RNG);
        assert_eq!(&d.nics[..d.nic_count], &[3, 7]);
        assert_eq!(d.macs[..2], [None, Some([2, 0, 0, 0, 0, 9])]);
        assert_eq!(d.fs_count, 1);
        assert_eq!(d.fs[0].fs, 1);
        assert_eq!(&d.fs[0].tag[..5], b"host\0");
        let mut b = blob.clone();
        b[HEADER_SIZE + DEV_OFFSET] = 9;
        assert_eq!(parse(&b).unwrap_err(), Error::BadField(0, "disks"));
    }

    #[test]
    fn padding_after_total_is_accepted() {
        let mut w = Writer::new(0, 0);
        w.add_vm(vm("a"));
        let mut blob = w.finish();
        blob.extend_from_slice(&[0xff; 100]);
        assert!(parse(&blob).is_ok());
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(parse(&[0; 10]).unwrap_err(), Error::TooShort);
        let mut w = Writer::new(0, 0);
        w.add_vm(vm("a"));
        let good = w.finish();
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(parse(&b).unwrap_err(), Error::BadMagic);
        let mut b = good.clone();
        b[8] = 7;
        assert_eq!(parse(&b).unwrap_err(), Error::BadVersion(7));
        let mut b = good.clone();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&b).unwrap_err(), Error::BadLength);
        let mut b = good.clone();
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(parse(&b).unwrap_err(), Error::NoVms);
    }

    #[test]
    fn rejects_bad_records() {
        let mut w = Writer::new(0, 0);
        w.add_vm(vm("a"));
        let good = w.finish();
        let rec = HEADER_SIZE;
        let cases: [(usize, [u8; 8], &str); 4] = [
            (rec + 32, [0; 8], "vcpus"),
            (rec + 40, (3u64 << 20).to_le_bytes(), "memory"),
            (rec + 48, u64::MAX.to_le_bytes(), "kernel"),
            (rec + 88, (1u64 << 40).to_le_bytes(), "bootargs"),
        ];
        for (off, val, field) in cases {
            let mut b = good.clone();
            let n = if field == "vcpus" { 4 } else { 8 };
            b[off..off + n].copy_from_slice(&val[..n]);
            assert_eq!(parse(&b).unwrap_err(), Error::BadField(0, field), "{field}");
        }
    }

    #[test]
    fn truncation_never_panics() {
        let mut w = Writer::new(0, 0);
        w.add_vm(vm("a"));
        let good = w.finish();
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_err());
        }
    }
}
