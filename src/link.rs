//! The words a freed chunk carries in its first 16 payload bytes while the allocator holds it
//! outside the bins: in a thread cache, a quick list, a remote list, or free in a run (`run`,
//! which keeps only the mark: its free blocks are bits, not links).
//! A leaf below the caches, the arenas and the runs, which all use it.
//!
//! Word 1 is always the *freed mark*, `p ^ CACHE_KEY` (an address-dependent value of a
//! per-process random key): `free` reads only this word to catch a second free of a chunk that
//! is cached or pending (a plain load and compare; reading word 0 there would stall on the
//! program's own narrow write to it, see [`has_key`]). Every path that hands a chunk to the
//! program clears word 1, so a stale mark in reused memory is never mistaken for a freed chunk.
//!
//! Word 0 depends on where the chunk is held:
//! - thread cache (an out-of-band pointer array, see `tcache`): nothing — the program's own
//!   bytes stay there — or, with the `expensive-checks` feature, a canary `p ^ LINK_KEY` (it
//!   costs about 8% of a malloc/free pair);
//! - quick and remote lists: the link to the next chunk, stored like glibc's safe-linking,
//!   XORed with its own slot address (shifted right by 12) and `LINK_KEY`.
//!
//! The words are checked when the chunk is taken back ([`take_cached`], [`get`]): a write
//! after free into word 1 is caught with certainty (up to a 2^-64 guess of the key), into a
//! list link unless the damaged link still demangles to a 16-aligned user-space address (one
//! write in 2^11), into word 0 of a cached chunk only with `expensive-checks` — without it
//! such a write goes unnoticed but cannot steer the allocator: a cache holds its chunks'
//! addresses in its own memory, never in theirs.

use crate::keys::KNOWN_ZERO as LINK_KNOWN_ZERO;
use crate::os::fatal;
use crate::sync::process::{AtomicUsize, Ordering};
use crate::sync::AtomicPtr;

const LINK_KEY: &AtomicUsize = &crate::keys::KEYS.link;
const CACHE_KEY: &AtomicUsize = &crate::keys::KEYS.cache;

/// The freed mark of payload `p`.
#[inline(always)]
fn mark(p: *mut u8) -> usize {
    p as usize ^ CACHE_KEY.load(Ordering::Relaxed)
}

/// Stores `next` (a payload or null) as the link in payload `p`, and the freed mark.
///
/// # Safety
/// `p` is a payload of at least 16 bytes owned by the caller.
#[inline(always)]
pub unsafe fn set(p: *mut u8, next: *mut u8) {
    let v = next.expose_provenance() ^ (p as usize >> 12) ^ LINK_KEY.load(Ordering::Relaxed);
    // Loom sees this raw write (it orders the link's publication); nothing outside loom.
    crate::sync::shadow::write(p.addr());
    // A chunk carved from poisoned memory (feature `asan`): its link words become addressable.
    crate::asan::unpoison(p, 16);
    // SAFETY: caller: writable, 16-aligned, at least 16 bytes.
    unsafe {
        p.cast::<usize>().write(v);
        p.cast::<usize>().add(1).write(mark(p));
    }
}

/// Reads the link in payload `p`; aborts when it was corrupted.
///
/// # Safety
/// `p` is a payload whose link was written by [`set`].
#[inline(always)]
pub unsafe fn get(p: *mut u8) -> *mut u8 {
    // Loom checks that this read is ordered after the link's write; nothing outside loom.
    crate::sync::shadow::read(p.addr());
    // SAFETY: caller: readable, at least 16 bytes.
    let (w0, w1) = unsafe { (p.cast::<usize>().read(), p.cast::<usize>().add(1).read()) };
    let v = w0 ^ (p as usize >> 12) ^ LINK_KEY.load(Ordering::Relaxed);
    if v & LINK_KNOWN_ZERO != 0 || w1 != mark(p) {
        fatal("malloc(): corrupted free-list link in a freed chunk (write after free?)");
    }
    core::ptr::with_exposed_provenance_mut(v)
}

/// The key of freed marks (for callers that keep a copy, such as thread caches).
#[inline]
pub fn cache_key() -> usize {
    CACHE_KEY.load(Ordering::Relaxed)
}

/// Writes the freed mark of a chunk entering a thread cache (and, with the `expensive-checks`
/// feature, the canary in word 0).
///
/// # Safety
/// As for [`set`].
#[inline(always)]
pub unsafe fn put_cached(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { put_cached_keyed(p, cache_key()) }
}

/// [`put_cached`] with the mark key `key` ([`cache_key`]) passed in.
///
/// # Safety
/// As for [`set`].
#[inline(always)]
pub unsafe fn put_cached_keyed(p: *mut u8, key: usize) {
    // SAFETY: forwarded.
    unsafe { put_cached_mark(p, mark_of(p, key)) }
}

/// [`put_cached`] with the mark itself (`p ^ key`, see [`mark_of`]) passed in: a free that
/// computed it for its double-free check stores the same value.
///
/// # Safety
/// As for [`set`]; `mark == mark_of(p, cache_key())`.
#[inline(always)]
pub unsafe fn put_cached_mark(p: *mut u8, mark: usize) {
    crate::asan::unpoison(p, 16);
    // SAFETY: caller: writable, at least 16 bytes.
    unsafe {
        if cfg!(feature = "expensive-checks") {
            p.cast::<usize>()
                .write(p as usize ^ LINK_KEY.load(Ordering::Relaxed));
        }
        p.cast::<usize>().add(1).write(mark);
    }
}

/// The freed mark of payload `p` under mark key `key`.
#[inline(always)]
pub fn mark_of(p: *mut u8, key: usize) -> usize {
    p as usize ^ key
}

/// Whether payload `p` carries `mark` ([`mark_of`]), reading word 1 only (see [`has_key`]).
///
/// # Safety
/// `p` is readable for 16 bytes.
#[inline(always)]
pub unsafe fn has_mark(p: *mut u8, mark: usize) -> bool {
    // SAFETY: caller: readable.
    unsafe { p.cast::<usize>().add(1).read() == mark }
}

/// Checks the freed mark (and, with `expensive-checks`, the canary) of a chunk leaving a
/// thread cache for the program, and clears the mark; aborts when a checked word was
/// overwritten.
///
/// # Safety
/// `p` was prepared by [`put_cached`] and is owned by the caller.
#[inline(always)]
#[cfg(any(test, feature = "internals"))]
pub unsafe fn take_cached(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { take_cached_keyed(p, cache_key()) }
}

/// [`take_cached`] with the mark key `key` ([`cache_key`]) passed in.
///
/// # Safety
/// As for [`take_cached`].
#[inline(always)]
pub unsafe fn take_cached_keyed(p: *mut u8, key: usize) {
    // SAFETY: caller: readable and writable, at least 16 bytes.
    unsafe {
        let w1 = p.cast::<usize>().add(1).read();
        let canary_ok = !cfg!(feature = "expensive-checks")
            || p.cast::<usize>().read() == p as usize ^ LINK_KEY.load(Ordering::Relaxed);
        if w1 != mark_of(p, key) || !canary_ok {
            overwritten();
        }
        p.cast::<usize>().add(1).write(0);
    }
}

#[cold]
#[inline(never)]
fn overwritten() -> ! {
    fatal("malloc(): a freed chunk in a thread cache was overwritten (write after free?)")
}

/// Clears the freed mark of payload `p`.
///
/// # Safety
/// As for [`set`].
#[inline(always)]
pub unsafe fn clear_key(p: *mut u8) {
    crate::asan::unpoison(p.wrapping_add(8), 8);
    // SAFETY: caller: writable.
    unsafe { p.cast::<usize>().add(1).write(0) };
}

/// Whether payload `p` carries the freed mark (it is cached, or on a quick or remote list).
///
/// Reads word 1 only: word 0 was often just written by the program with a narrower store,
/// and reading it back at once stalls store forwarding (it once doubled the cost of a
/// malloc/free pair that writes one byte).
///
/// # Safety
/// `p` is readable for 16 bytes.
#[inline(always)]
pub unsafe fn has_key(p: *mut u8) -> bool {
    // SAFETY: forwarded.
    unsafe { has_key_keyed(p, cache_key()) }
}

/// [`has_key`] with the mark key `key` ([`cache_key`]) passed in.
///
/// # Safety
/// As for [`has_key`].
#[inline(always)]
pub unsafe fn has_key_keyed(p: *mut u8, key: usize) -> bool {
    // SAFETY: forwarded.
    unsafe { has_mark(p, mark_of(p, key)) }
}

/// The mutations (`sync::mutation`, loom checks) a caller of [`push_chain`] or [`take_chain`]
/// plants for its own list: each caller asks `mutation::on` with its own names, so that the
/// planted names stay literal at the list they belong to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Planted {
    /// The push publishes with `Relaxed` / the take acquires with `Relaxed`.
    pub relaxed: bool,
    /// The push stores in place of its compare-exchange / the take loads and stores in place
    /// of its swap: a chain pushed in between is lost.
    pub not_atomic: bool,
}

/// Pushes a chain of payloads (linked head → … → tail through [`set`]) onto the lock-free
/// list `list` with one compare-exchange (retried while other pushers win): `tail`'s link takes
/// the old first entry. Release, so that [`take_chain`]'s Acquire sees every link and what the
/// pusher wrote before. Used by an arena's remote list.
///
/// # Safety
/// The caller owns every chunk of the chain (it gives them up to whoever takes the list).
#[inline]
pub unsafe fn push_chain(list: &AtomicPtr<u8>, head: *mut u8, tail: *mut u8, planted: Planted) {
    let mut old = list.load(Ordering::Relaxed);
    if planted.not_atomic {
        // SAFETY: the caller owns `tail`.
        unsafe { set(tail, old) };
        list.store(head, Ordering::Release);
        return;
    }
    let ord = if planted.relaxed {
        Ordering::Relaxed
    } else {
        Ordering::Release
    };
    loop {
        // SAFETY: the caller owns `tail`.
        unsafe { set(tail, old) };
        match list.compare_exchange_weak(old, head, ord, Ordering::Relaxed) {
            Ok(_) => return,
            Err(cur) => old = cur,
        }
    }
}

/// Takes the whole list `list` (one exchange with null, Acquire: pairs with [`push_chain`]'s
/// Release) and returns its first entry (null when it was empty); the entries are linked
/// through [`get`].
#[inline]
pub fn take_chain(list: &AtomicPtr<u8>, planted: Planted) -> *mut u8 {
    if planted.not_atomic {
        let p = list.load(Ordering::Acquire);
        list.store(core::ptr::null_mut(), Ordering::Relaxed);
        return p;
    }
    let ord = if planted.relaxed {
        Ordering::Relaxed
    } else {
        Ordering::Acquire
    };
    list.swap(core::ptr::null_mut(), ord)
}
