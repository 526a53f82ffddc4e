//! AddressSanitizer annotations (feature `asan`): tell ASan which heap bytes are live, so that
//! a program using arena-malloc as its allocator gets ASan's overflow and use-after-free reports.
//! Without the feature both functions are empty and vanish.
//!
//! What is poisoned, and when (hooks in `heap/alloc.rs` and `heap/free.rs`):
//! - on allocation, the requested bytes are unpoisoned and the slack between the request and
//!   the usable size is poisoned (an overflow into it is reported);
//! - on free, the payload from offset 16 to its end is poisoned before the chunk goes into a
//!   cache or a bin. The first 16 bytes of a freed payload stay addressable: they hold the cache
//!   link and key, or a bin's `fd`/`bk` (see `chunk` and `link`), which the allocator
//!   reads and writes without the user's involvement;
//! - every allocator access to a header or link word goes through `Chunk::word`, which
//!   unpoisons that word first: splitting, carving top and large-bin links write new headers at
//!   addresses that were inside a poisoned payload;
//! - `malloc_usable_size` unpoisons the whole usable size (the caller may now use it), and
//!   memory is unpoisoned before it is unmapped so that a later mapping at the same address
//!   starts clean.
//!
//! The crate must itself be built with `-Zsanitizer=address` (nightly) for the interface
//! symbols to exist; `cargo +nightly fuzz` and `RUSTFLAGS=-Zsanitizer=address` both do that.

#[cfg(feature = "asan")]
extern "C" {
    fn __asan_poison_memory_region(addr: *const u8, size: usize);
    fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
}

/// Marks `[p, p+len)` as not addressable (an access is reported).
#[inline(always)]
pub fn poison(p: *const u8, len: usize) {
    #[cfg(feature = "asan")]
    if len != 0 {
        // SAFETY: the interface only edits ASan's shadow memory; any address is accepted.
        unsafe { __asan_poison_memory_region(p, len) };
    }
    #[cfg(not(feature = "asan"))]
    let _ = (p, len);
}

/// Marks `[p, p+len)` as addressable.
#[inline(always)]
pub fn unpoison(p: *const u8, len: usize) {
    #[cfg(feature = "asan")]
    if len != 0 {
        // SAFETY: as above.
        unsafe { __asan_unpoison_memory_region(p, len) };
    }
    #[cfg(not(feature = "asan"))]
    let _ = (p, len);
}

/// After an allocation of `req` bytes at `p` with `usable` bytes: the request is addressable,
/// the slack is not.
#[inline(always)]
pub fn on_alloc(p: *mut u8, req: usize, usable: usize) {
    if cfg!(feature = "asan") && !p.is_null() {
        unpoison(p, req);
        if usable > req {
            poison(p.wrapping_add(req), usable - req);
        }
    }
}

/// Before a block at `p` with `usable` bytes is freed: all but its first 16 bytes (the link
/// words the allocator keeps there) become unaddressable.
#[inline(always)]
pub fn on_free(p: *mut u8, usable: usize) {
    if cfg!(feature = "asan") {
        unpoison(p, usable.min(16));
        if usable > 16 {
            poison(p.wrapping_add(16), usable - 16);
        }
    }
}
