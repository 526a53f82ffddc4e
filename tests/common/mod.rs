//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::Duration;

/// Aborts the whole test process if it is still running after `secs` seconds: allocator bugs
/// show up as hangs, and a hung test must fail, not stall CI.
pub fn watchdog(secs: u64) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        eprintln!("watchdog: test still running after {secs} s, aborting");
        std::process::abort();
    });
}

/// A small deterministic PRNG (xorshift64*).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A size spread over orders of magnitude: mostly small, sometimes up to `max`.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = self.below(64 - (max as u64).leading_zeros() as u64 + 1);
        let cap = (1u64 << bits).min(max as u64);
        1 + self.below(cap) as usize
    }
}

/// Fills `len` bytes at `p` with a pattern derived from `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of writes.
pub unsafe fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        unsafe { *p.add(i) = seed.wrapping_add(i as u8).wrapping_mul(31) };
    }
}

/// Checks the pattern written by [`fill`]; samples long blocks (every byte of the first and
/// last 256, and every 61st in between).
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
pub unsafe fn check(p: *const u8, len: usize, seed: u8) -> bool {
    let ok = |i: usize| unsafe { *p.add(i) == seed.wrapping_add(i as u8).wrapping_mul(31) };
    if len <= 512 {
        return (0..len).all(ok);
    }
    (0..256).all(ok) && (len - 256..len).all(ok) && (256..len - 256).step_by(61).all(ok)
}

/// Runs this test binary again with `ARENA_TEST_CHILD=<case>` and the test filter `test`, and
/// returns its output.
pub fn run_child(test: &str, case: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    Command::new("timeout")
        .arg("60")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("ARENA_TEST_CHILD", case)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("spawn child")
}

/// The child case selected for this process, if any.
pub fn child_case() -> Option<String> {
    std::env::var("ARENA_TEST_CHILD").ok()
}

/// Resident set size of this process (bytes), from /proc/self/statm.
pub fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The line of /proc/self/maps whose range holds `addr`, if any.
pub fn mapping_of(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let range = line.split_whitespace().next()?;
        let (a, b) = range.split_once('-')?;
        let a = usize::from_str_radix(a, 16).ok()?;
        let b = usize::from_str_radix(b, 16).ok()?;
        if addr >= a && addr < b {
            return Some(line.to_string());
        }
    }
    None
}
