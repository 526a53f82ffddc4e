//! Bundles: the list nodes of quick lists and remote lists. A bundle head is a free chunk whose
//! payload holds the link to the next head and the addresses of up to a cap of other chunks of
//! its size (its members), so a list of n chunks is walked in about n / cap steps.

use core::ptr;

use crate::chunk::HEADER;
use crate::os::fatal;
use crate::size_class::NSMALL_CLASSES;
use crate::sync::Ordering;

/// Payload words of a bundle head before its member slots: link (2 words, as in cache lists)
/// and count.
const QUICK_HEAD_WORDS: usize = 3;

/// Most members a remote-list bundle holds (see [`remote_cap`]).
const REMOTE_CAP_MAX: usize = 64;

/// Members the head of a remote-list bundle of chunk size `size` holds: as for a quick bundle,
/// its payload words less the head words, at most `REMOTE_CAP_MAX`. A thread cache's flush
/// that finds the arena's lock busy pushes its chunks as bundles (`Heap::release_slice`): the
/// drainer then reads one head per bundle and never touches the members — on the remote path
/// each chunk it reads is a line written by another core.
pub fn remote_cap(size: usize) -> usize {
    ((size - HEADER) / 8)
        .saturating_sub(QUICK_HEAD_WORDS)
        .min(REMOTE_CAP_MAX)
}

/// Writes the member count of remote bundle head `h` (its cap is not 0).
///
/// # Safety
/// `h` is the payload of an in-use chunk the caller owns, with `remote_cap(size) > 0`.
pub unsafe fn remote_set_count(h: *mut u8, n: usize) {
    // SAFETY: forwarded.
    unsafe { quick_set_count(h, n) }
}

/// Stores member `p` in slot `i < remote_cap(size)` of remote bundle head `h`.
///
/// # Safety
/// As for [`remote_set_count`].
pub unsafe fn remote_slot_set(h: *mut u8, i: usize, p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { quick_slot_set(h, i, p) }
}

/// Members a bundle head of each class holds: its payload words less the head words (0 for
/// class 0, whose 16-byte payload has room for the link only: a plain list).
pub const QUICK_CAP: [usize; NSMALL_CLASSES] = {
    let mut t = [0usize; NSMALL_CLASSES];
    let mut i = 0;
    while i < NSMALL_CLASSES {
        let words = (i + 1) * 16 / 8;
        t[i] = words.saturating_sub(QUICK_HEAD_WORDS);
        i += 1;
    }
    t
};

// --- quick-list bundles ---
//
// A bundle head's payload: words 0–1 the link to the next bundle (`link`, which also
// marks the head as freed), word 2 the member count, words 3.. the members' payload addresses,
// each stored XORed with its slot address (>> 12) and the process's link key, like links.

/// The member count of bundle head `h`.
///
/// # Safety
/// `h` is a bundle head of a class with `QUICK_CAP > 0`.
#[inline(always)]
pub(super) unsafe fn quick_count_of(h: *mut u8) -> usize {
    // SAFETY: caller: word 2 lies in the payload.
    unsafe { h.cast::<usize>().add(2).read() }
}

/// Sets the member count of bundle head `h`.
///
/// # Safety
/// As for [`quick_count_of`]; `h` is ours.
#[inline(always)]
pub(super) unsafe fn quick_set_count(h: *mut u8, n: usize) {
    // A freed payload is poisoned past its first 16 bytes (feature `asan`): the count's word
    // becomes addressable.
    crate::asan::unpoison(h.wrapping_add(16), 8);
    // SAFETY: caller: word 2 lies in the payload.
    unsafe { h.cast::<usize>().add(2).write(n) }
}

#[inline(always)]
fn quick_mangle(slot: *mut usize, v: usize) -> usize {
    v ^ (slot as usize >> 12) ^ crate::keys::KEYS.link.load(Ordering::Relaxed)
}

/// Stores member `p` in slot `i` of bundle head `h`.
///
/// # Safety
/// `i < QUICK_CAP` of `h`'s class; `h` is ours.
#[inline(always)]
pub(super) unsafe fn quick_slot_set(h: *mut u8, i: usize, p: *mut u8) {
    // SAFETY: caller: the slot lies in the payload.
    unsafe {
        let slot = h.cast::<usize>().add(QUICK_HEAD_WORDS + i);
        // As in `quick_set_count` (feature `asan`).
        crate::asan::unpoison(slot.cast(), 8);
        slot.write(quick_mangle(slot, p.expose_provenance()));
    }
}

/// Member in slot `i` of bundle head `h`; aborts when the slot was overwritten.
///
/// # Safety
/// Slot `i` of `h` was written by [`quick_slot_set`].
#[inline(always)]
pub(super) unsafe fn quick_slot_get(h: *mut u8, i: usize) -> *mut u8 {
    // SAFETY: caller: the slot lies in the payload.
    let v = unsafe {
        let slot = h.cast::<usize>().add(QUICK_HEAD_WORDS + i);
        quick_mangle(slot, slot.read())
    };
    // The slot must demangle to a 16-aligned user-space address: every bit outside one is a
    // write into the bundle (before, only the low 4 bits were tested, and an overwritten slot
    // with them clear handed out a wild pointer).
    if v & crate::keys::KNOWN_ZERO != 0 || v == 0 {
        fatal("malloc(): corrupted quick list (write after free?)");
    }
    ptr::with_exposed_provenance_mut(v)
}
