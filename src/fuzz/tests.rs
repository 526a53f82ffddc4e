//! Seeded replays of every fuzz entry point, so that `cargo test` runs the fuzz logic (and the
//! invariant checker) without cargo-fuzz, and minimised regressions found by the campaigns.
use super::*;

/// xorshift64*: a seeded generator for input bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }
}

/// Feeds `iters` random inputs of up to `max_len` bytes to `f`; the seed can be overridden with
/// `ARENA_MALLOC_FUZZ_SEED` and the count scaled with `ARENA_MALLOC_FUZZ_ITERS`.
fn replay(name: &str, iters: usize, max_len: usize, f: fn(&[u8])) {
    let seed = std::env::var("ARENA_MALLOC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0000_u64 ^ name.len() as u64);
    let iters = std::env::var("ARENA_MALLOC_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(iters);
    let mut rng = Rng(seed | 1);
    for i in 0..iters {
        let len = (rng.next() as usize) % max_len;
        let data = rng.bytes(len);
        let r = std::panic::catch_unwind(|| f(&data));
        if r.is_err() {
            panic!("{name}: input {i} (seed {seed:#x}) failed; bytes: {data:?}");
        }
    }
}

#[test]
fn replay_ops() {
    replay("ops", 60, 4096, run_ops);
}

#[test]
fn replay_threads() {
    replay("threads", 40, 4096, run_threads);
}

#[test]
fn replay_capi() {
    replay("capi", 40, 4096, run_capi);
}

#[test]
fn replay_global() {
    replay("global", 40, 4096, run_global);
}

#[test]
fn size_decoding_covers_every_tier() {
    assert!(Size(5).bytes() < 512);
    assert!(Size(4 << 29 | 0x1fff).bytes() < 8192);
    assert!(Size(6 << 29 | 0x3_ffff).bytes() < 256 << 10);
    assert!(Size(u32::MAX).bytes() > 1 << 20);
}

#[test]
fn shadow_catches_overlap() {
    let mut buf = vec![0u8; 256];
    let p = buf.as_mut_ptr();
    let mut sh = Shadow::default();
    // SAFETY: both ranges lie in `buf`.
    unsafe { sh.add(p, 64, 1, 64, false) };
    // SAFETY: as above.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
        sh.add(p.add(32), 64, 1, 64, false)
    }));
    assert!(r.is_err(), "overlap not reported");
}
