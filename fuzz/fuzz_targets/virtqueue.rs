//! `rivet-virtio`: a hostile driver. Random bytes and half-valid
//! structures are laid into guest memory as descriptor tables, indirect
//! tables, available rings and requests, and the device is driven through
//! its virtio-mmio registers (status handshake, queue setup, `QueueNotify`,
//! interrupt acknowledgement) for the blk, console and rng models. The
//! driver is `rivet_fuzz::virtio::Driver` (shared with `virtio_net_fs`).
//!
//! Checked after every step: nothing panics or loops, the register file
//! keeps its invariants (as in `crates/virtio/tests/fuzz.rs`), reads are
//! valid exactly where the transport says, guest memory outside RAM is
//! never touched (`VecMemory` refuses it), the device writes only into
//! device-writable buffers of chains it holds and used rings, used lengths
//! never exceed the chain's writable length (see `src/virtio.rs`), and a
//! read-only disk is never written.
//!
//! Input: device header, then operations until the bytes run out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivet_fuzz::virtio::{run, Driver, Model, HEAP};
use rivet_fuzz::Input;
use rivet_guest_mem::GuestMemory;
use rivet_virtio::blk::{self, Blk, BlockBackend, RamDisk};
use rivet_virtio::console::{Console, ConsoleBackend};
use rivet_virtio::rng::{EntropySource, Rng};

struct Sink(u64);
impl ConsoleBackend for Sink {
    fn write(&mut self, data: &[u8]) {
        assert!(!data.is_empty());
        self.0 += data.len() as u64;
    }
}

/// Entropy that sometimes has nothing and sometimes claims too much.
struct Source(u64);
impl EntropySource for Source {
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        buf.fill(0x5a);
        (x % (buf.len() as u64 + 3)) as usize
    }
}

/// The models: what the device is, and its host side.
struct BlkModel;
struct ConsoleModel;
struct RngModel;

impl Model for BlkModel {
    type Device = Blk<RamDisk>;
    fn request(d: &mut Driver<Self>, input: &mut Input) {
        blk_request(d, input);
    }
    fn host_op(_d: &mut Driver<Self>, _input: &mut Input) {}
    fn check(d: &Driver<Self>) {
        let disk = d.dev.device().backend();
        if disk.read_only() {
            assert!(
                disk.data()
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern(i)),
                "read-only disk written"
            );
        }
    }
}
impl Model for ConsoleModel {
    type Device = Console<Sink>;
    fn request(d: &mut Driver<Self>, input: &mut Input) {
        blk_request(d, input);
    }
    fn host_op(d: &mut Driver<Self>, input: &mut Input) {
        let n = input.below(80) as usize;
        let bytes = input.bytes(n);
        d.dev.device_mut().push_input(bytes);
    }
}
impl Model for RngModel {
    type Device = Rng<Source>;
    fn request(d: &mut Driver<Self>, input: &mut Input) {
        blk_request(d, input);
    }
    fn host_op(d: &mut Driver<Self>, input: &mut Input) {
        d.dev.device_mut().source_mut().0 = input.u64() | 1;
    }
}

fn pattern(i: usize) -> u8 {
    (i as u8) ^ ((i >> 9) as u8).wrapping_mul(13)
}

/// A virtio-blk request: header, optional data, status byte (op 12, for
/// every model: to the others it is just a chain).
fn blk_request<D: Model>(d: &mut Driver<D>, input: &mut Input) {
    let types = [
        blk::VIRTIO_BLK_T_IN,
        blk::VIRTIO_BLK_T_OUT,
        blk::VIRTIO_BLK_T_FLUSH,
        blk::VIRTIO_BLK_T_GET_ID,
        blk::VIRTIO_BLK_T_DISCARD,
        blk::VIRTIO_BLK_T_WRITE_ZEROES,
        blk::VIRTIO_BLK_T_GET_LIFETIME,
        blk::VIRTIO_BLK_T_SECURE_ERASE,
    ];
    let t = if input.u8() < 0xf0 {
        input.pick(&types)
    } else {
        input.u32()
    };
    let sector = match input.u8() % 4 {
        0 => input.u64(),
        _ => input.below(40),
    };
    let hdr = HEAP + 0x100 * input.below(0x20);
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&t.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    let _ = d.mem.write(hdr, &h);
    let data = HEAP + 0x2000 + 0x200 * input.below(0x40);
    let dlen = [0u32, 512, 1024, 511, 4608, 20, 16, 32][input.below(8) as usize];
    let writable = matches!(
        t,
        blk::VIRTIO_BLK_T_IN | blk::VIRTIO_BLK_T_GET_ID | blk::VIRTIO_BLK_T_GET_LIFETIME
    );
    if matches!(
        t,
        blk::VIRTIO_BLK_T_DISCARD | blk::VIRTIO_BLK_T_WRITE_ZEROES | blk::VIRTIO_BLK_T_SECURE_ERASE
    ) {
        // One or two discard segments: sector, num_sectors, flags.
        for k in 0..2u64 {
            let mut s = [0u8; 16];
            s[..8].copy_from_slice(&input.below(40).to_le_bytes());
            s[8..12].copy_from_slice(&(input.below(20) as u32).to_le_bytes());
            s[12..].copy_from_slice(&(input.below(4) as u32).to_le_bytes());
            let _ = d.mem.write(data + 16 * k, &s);
        }
    }
    let status = HEAP + 0xe000 + input.below(0x100);
    let mut segs = vec![(hdr, 16, false)];
    if dlen > 0 {
        segs.push((data, dlen, writable ^ (input.u8() == 0xff)));
    }
    segs.push((status, 1, true));
    d.chain(input, &segs);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => {
            let sectors = 1 + input.below(32) as usize;
            let bytes: Vec<u8> = (0..sectors * 512 + input.below(3) as usize)
                .map(pattern)
                .collect();
            let flags = input.u8();
            let disk = RamDisk::new(bytes)
                .with_read_only(flags & 1 != 0)
                .with_discard(flags & 2 != 0);
            run(Blk::new(disk), BlkModel, &mut input);
        }
        1 => {
            let mut c = Console::new(Sink(0)).with_emergency_write(input.bool());
            c.push_input(b"hello");
            run(c, ConsoleModel, &mut input);
        }
        _ => {
            let seed = input.u64() | 1;
            run(Rng::new(Source(seed)), RngModel, &mut input);
        }
    }
});
