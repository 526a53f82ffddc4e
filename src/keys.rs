//! The process-wide secrets: the key of chunk header tags (`chunk`), the key mixed into
//! free-list links and the freed mark of cached chunks (`link`), and the key of the
//! slot words in quick-list and remote bundles (`arena`).
//!
//! They are drawn from the kernel's random bytes once, before the first heap makes its first
//! chunk ([`init`]), and never change after. A leaf: it names only `os`.

use crate::os;
use crate::sync::process::{AtomicUsize, Ordering};

/// The process-wide keys, in one cache line (the fast paths read two of them).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Keys {
    /// Key of header tags (0 until [`init`]; odd after).
    pub tag: AtomicUsize,
    /// Key mixed into free-list links (its low 4 bits clear).
    pub link: AtomicUsize,
    /// Marker stored at payload+8 of chunks in caches and remote lists (odd).
    pub cache: AtomicUsize,
}

/// Bits known to be clear in a pointer stored under the link key, once demangled: a 16-aligned
/// user-space address (or null) has its low 4 bits and its top 7 bits clear (even with 5-level
/// page tables). Free-list links and bundle slots check them when read.
pub const KNOWN_ZERO: usize = !0 << 57 | 15;

/// The keys.
pub static KEYS: Keys = Keys {
    tag: AtomicUsize::new(0),
    link: AtomicUsize::new(0x2545_f491_4f6c_dd10),
    cache: AtomicUsize::new(0x7c3a_91d2_a55a_0f0f),
};

/// Sets the keys from the kernel's random bytes, once, before the first heap makes its first
/// chunk. Later calls (and calls racing with the first) return once the keys are set.
pub fn init() {
    static CLAIMED: AtomicUsize = AtomicUsize::new(0);
    if KEYS.tag.load(Ordering::Acquire) != 0 {
        return;
    }
    if CLAIMED
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        KEYS.link
            .store(os::random_u64(2) as usize & !15, Ordering::Relaxed);
        KEYS.cache
            .store(os::random_u64(3) as usize | 1, Ordering::Relaxed);
        // Release: pairs with the Acquire above, so every heap sees the link keys first.
        KEYS.tag
            .store((os::random_u64(1) as usize) | 1, Ordering::Release);
    } else {
        while KEYS.tag.load(Ordering::Acquire) == 0 {
            os::yield_now();
        }
    }
}
