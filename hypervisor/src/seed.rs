//! Boot entropy for guests: every boot of every VM gets its own
//! `/chosen/rng-seed`, so the guest kernel starts with a seeded CRNG (as it
//! does on QEMU or a firmware that passes one) instead of spending its
//! first tens of milliseconds gathering entropy.
//!
//! The machine's entropy (the host device tree's `rng-seed`, which QEMU
//! fills with random bytes, plus 32 bytes from the machine's virtio-rng
//! when there is one) is hashed once into a secret pool. Each seed is
//! SHA-256 of the pool, the VM index and the boot count, so no VM can learn
//! another's seed or the pool, and a reboot never repeats a seed. Without
//! any entropy source, guests get no seed at all (never a predictable one).

use sha2::{Digest, Sha256};

/// Length of the seed each guest gets.
pub const SEED_LEN: usize = 64;

static POOL: spin::Once<Option<[u8; 32]>> = spin::Once::new();

/// Gathers the machine's entropy into the pool; called once at boot.
pub fn init(host_seed: Option<&[u8]>, rng: Option<&mut dyn rivet_virtio::rng::EntropySource>) {
    let mut h = Sha256::new();
    h.update(b"rivet seed pool v1");
    let mut have = false;
    if let Some(s) = host_seed {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s);
        have = true;
    }
    if let Some(rng) = rng {
        let mut buf = [0u8; 32];
        let n = rng.fill(&mut buf).min(buf.len());
        h.update((n as u64).to_le_bytes());
        h.update(&buf[..n]);
        have |= n > 0;
    }
    // Not entropy worth counting, but it separates boots of the machine
    // should a source repeat itself.
    h.update(crate::arch::time().to_le_bytes());
    let pool: [u8; 32] = h.finalize().into();
    POOL.call_once(|| have.then_some(pool));
    if have {
        log::info!("guest boot entropy: each VM boot gets a {SEED_LEN}-byte rng-seed");
    } else {
        log::warn!(
            "no entropy source (no host rng-seed, no virtio-rng): guests boot without an rng-seed"
        );
    }
}

/// Whether guests get seeds (an entropy source was found).
pub fn available() -> bool {
    matches!(POOL.get(), Some(Some(_)))
}

/// The seed for boot number `boot` of VM `vm`.
pub fn for_vm(vm: usize, boot: u64) -> Option<[u8; SEED_LEN]> {
    let pool = (*POOL.get()?)?;
    let mut out = [0u8; SEED_LEN];
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update(b"rivet vm seed v1");
        h.update(pool);
        h.update((vm as u64).to_le_bytes());
        h.update(boot.to_le_bytes());
        h.update((i as u64).to_le_bytes());
        let d: [u8; 32] = h.finalize().into();
        chunk.copy_from_slice(&d[..chunk.len()]);
    }
    Some(out)
}
