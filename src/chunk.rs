//! Chunk layout: boundary tags, flag bits, header tags, and the only pointer arithmetic on
//! chunks.
//!
//! ```text
//! in use                              free (in a bin)
//! 0  +---------------------------+    0  +---------------------------+
//!    | prev_size (if prev free)  |       | prev_size (if prev free)  |
//! 8  +---------------------------+    8  +---------------------------+
//!    | tag:16 | size:44 | flags:4 |      | tag:16 | size:44 | flags:4 |
//! 16 +---------------------------+    16 +---------------------------+
//!    | payload (size - 16 bytes) |       | fd (next chunk in bin)    |
//!    |                           |    24 +---------------------------+
//!    |                           |       | bk (previous in bin)      |
//!    |                           |       | ...                       |
//! size +-------------------------+    size +-------------------------+
//!    | next chunk: prev_size     |       | next: prev_size = size    |  <- boundary tag (footer)
//!    | next chunk: head (P bit)  |       | next: head, P bit clear   |
//! ```
//!
//! A chunk in a thread cache, a quick list or a remote list looks in use to its arena. Its
//! payload's second word (offset 24) holds the freed mark; on a quick or remote list its first
//! word (offset 16) holds the mangled link to the next chunk (a thread cache keeps its chunks'
//! addresses in its own stacks, not in them): see `link`.
//!
//! Flags (low 4 bits of the head, plus `FREE` at bit 44): `PREV_INUSE` — the chunk just below is in use (so
//! `prev_size` is not valid); `IS_MMAPPED` — a huge block, its own mapping, `prev_size` holds
//! its offset from the mapping's start; `IN_REGION` — lives in a region, its arena is found from
//! the region header by masking; `PURGED` — a free chunk whose interior OS pages were returned;
//! `FREE` — the chunk itself is free (in a bin, or top; also left in the stale header of a chunk
//! that merged into a free neighbour), so a second `free` is caught from the head alone.
//!
//! The top 16 bits of the head are a tag: a keyed hash of the chunk's address and the low 48
//! bits (15 bits of it; bit 48 is always set, so a zero word is never a valid head). Every head write sets it; `free` and `realloc` check it, so a pointer we never returned
//! or a header overwritten by an overflow is caught before anything trusts its size.
//!
//! # Invariants
//! - I1: a chunk's address and size are multiples of [`ALIGN`]; size ≥ [`MIN_CHUNK`] except
//!   fence posts (size [`FENCE`]).
//! - I2: the `PREV_INUSE` bit of a chunk is clear exactly when the chunk below is a free chunk
//!   in a bin (then `prev_size` equals that chunk's size).
//! - I3: two free chunks in bins are never adjacent, and a free chunk is never adjacent to top.
//! - I4: every head's tag matches its address and low bits.

use core::ptr::NonNull;

use crate::sync::process::{AtomicUsize, Ordering};

/// Alignment of every chunk and payload (bytes).
pub const ALIGN: usize = 16;
/// Bytes before the payload: `prev_size` and the head.
pub const HEADER: usize = 16;
/// Smallest chunk: header plus two links.
pub const MIN_CHUNK: usize = 32;
/// Size of each of the two fence-post headers that close a segment.
pub const FENCE: usize = 16;

/// The chunk below is in use.
pub const PREV_INUSE: usize = 1;
/// The chunk is a huge block with its own mapping.
pub const IS_MMAPPED: usize = 2;
/// The chunk lives in a region; its arena is in the region header.
pub const IN_REGION: usize = 4;
/// Free chunk whose interior OS pages were returned to the OS.
pub const PURGED: usize = 8;
/// All low flag bits.
pub const FLAG_MASK: usize = 15;
/// The chunk itself is free: in a bin, or the top (a bit above the size field, so that `free`
/// sees a double free in the head it has already loaded).
pub const FREE: usize = 1 << 44;
/// A free chunk that stayed free across one purge interval (the next pass purges it).
pub const AGED: usize = 1 << 45;
/// Head flag (outside the size bits, under the tag) of a block inside a run (`run`): its
/// `prev_size` word holds the distance back to its run.
pub const IN_RUN: usize = 1 << 46;

/// Head flag of a run's own chunk (`run`): an in-use chunk of its arena that no pointer the
/// program holds may free, resize or measure (such a pointer is stale: the memory of a freed
/// block now holds a run).
pub const RUN_CHUNK: usize = 1 << 47;
/// Every flag a head keeps besides its size.
const HEAD_FLAGS: usize = FLAG_MASK | FREE | AGED | IN_RUN | RUN_CHUNK;

const LOW_MASK: usize = (1 << 48) - 1;
/// Bits of a head word that hold the chunk size.
pub const SIZE_MASK: usize = ((1 << 44) - 1) & !FLAG_MASK;
/// Largest chunk size the head can describe.
pub const MAX_CHUNK_SIZE: usize = SIZE_MASK;

/// The tag key (0 until [`crate::keys::init`]).
const SECRET: &AtomicUsize = &crate::keys::KEYS.tag;

/// The keyed hash behind a tag, of a chunk address and a head word (whose tag bits it ignores):
/// its top 16 bits, with bit 48 forced on, are the tag. The head's low 48 bits move up by 16
/// (the tag bits fall out) so that they do not overlap the address's low bits; the odd
/// multiplier carries every input bit into the top 16 bits.
#[inline(always)]
fn tag_hash(addr: usize, head: usize) -> usize {
    tag_hash_keyed(addr, head, SECRET.load(Ordering::Relaxed))
}

#[inline(always)]
fn tag_hash_keyed(addr: usize, head: usize, s: usize) -> usize {
    // Bit 48 is always set: a zero word (untouched reserved memory) never passes for a head.
    ((head << 16) ^ addr ^ s).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 << 48
}

/// The key of header tags (for callers that keep a copy, such as thread caches; 0 before
/// [`crate::keys::init`]).
#[inline]
pub fn tag_key() -> usize {
    SECRET.load(Ordering::Relaxed)
}

#[inline(always)]
fn tag_of(addr: usize, low: usize) -> usize {
    tag_hash(addr, low) & !LOW_MASK
}

/// A pointer to a chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk(NonNull<u8>);

impl Chunk {
    /// A chunk at `p`.
    ///
    /// # Safety
    /// `p` is non-null and points at (or will hold) a chunk header.
    #[inline(always)]
    pub unsafe fn at(p: *mut u8) -> Chunk {
        // SAFETY: the caller guarantees non-null.
        Chunk(unsafe { NonNull::new_unchecked(p) })
    }

    /// The chunk whose payload starts at `p`.
    ///
    /// # Safety
    /// `p` is a non-null payload pointer (at least [`HEADER`] bytes above its mapping's start).
    #[inline(always)]
    pub unsafe fn from_payload(p: *mut u8) -> Chunk {
        // SAFETY: the header sits HEADER bytes below the payload, inside the same mapping.
        unsafe { Chunk::at(p.wrapping_sub(HEADER)) }
    }

    /// The raw header pointer.
    #[inline(always)]
    pub fn ptr(self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The header address.
    #[inline(always)]
    pub fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The payload pointer.
    #[inline(always)]
    pub fn payload(self) -> *mut u8 {
        self.0.as_ptr().wrapping_add(HEADER)
    }

    /// The chunk `off` bytes above this one.
    ///
    /// # Safety
    /// The result lies in the same mapping.
    #[inline(always)]
    pub unsafe fn plus(self, off: usize) -> Chunk {
        // SAFETY: non-null: an in-mapping address above a non-null one.
        unsafe { Chunk::at(self.0.as_ptr().wrapping_add(off)) }
    }

    /// The chunk `off` bytes below this one.
    ///
    /// # Safety
    /// The result lies in the same mapping.
    #[inline(always)]
    pub unsafe fn minus(self, off: usize) -> Chunk {
        // SAFETY: as for `plus`.
        unsafe { Chunk::at(self.0.as_ptr().wrapping_sub(off)) }
    }

    #[inline(always)]
    unsafe fn word(self, off: usize) -> *mut usize {
        let w = self.0.as_ptr().wrapping_add(off);
        // Headers and bin links may be written inside a payload that was poisoned when it was
        // freed (split, top carving): the allocator's own words are always addressable.
        crate::asan::unpoison(w, 8);
        w.cast()
    }

    /// The raw head word (tag, size, flags).
    ///
    /// # Safety
    /// The header is mapped and readable.
    #[inline(always)]
    pub unsafe fn head(self) -> usize {
        // SAFETY: caller: header readable; aligned by I1.
        unsafe { self.word(8).read() }
    }

    /// The chunk size (bytes, header included).
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn size(self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.head() & SIZE_MASK }
    }

    /// The flag bits, [`FREE`] and [`AGED`] included.
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn flags(self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.head() & HEAD_FLAGS }
    }

    /// Whether the chunk's own head says it is free.
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn is_free(self) -> bool {
        // SAFETY: forwarded.
        unsafe { self.head() & FREE != 0 }
    }

    /// Whether the chunk below is in use.
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn prev_inuse(self) -> bool {
        // SAFETY: forwarded.
        unsafe { self.head() & PREV_INUSE != 0 }
    }

    /// Whether the tag of a head word matches this chunk's address.
    #[inline(always)]
    pub fn tag_matches(self, head: usize) -> bool {
        // The tags agree exactly when the top 16 bits of hash ^ head are zero.
        (tag_hash(self.addr(), head) ^ head) <= LOW_MASK
    }

    /// [`Chunk::tag_matches`] with the tag key `key` passed in ([`tag_key`]): no load of the
    /// process-wide key on a fast path that keeps a copy of it.
    #[inline(always)]
    pub fn tag_matches_keyed(self, head: usize, key: usize) -> bool {
        (tag_hash_keyed(self.addr(), head, key) ^ head) <= LOW_MASK
    }

    /// Whether the header's tag is right (I4).
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn tag_ok(self) -> bool {
        // SAFETY: forwarded.
        self.tag_matches(unsafe { self.head() })
    }

    /// Writes the head: size, flags and tag.
    ///
    /// # Safety
    /// The header is writable and owned by the caller (arena lock or sole ownership).
    #[inline(always)]
    pub unsafe fn set_head(self, size: usize, flags: usize) {
        debug_assert!(size & FLAG_MASK == 0 && size <= SIZE_MASK);
        let low = size | (flags & HEAD_FLAGS);
        // SAFETY: caller: writable.
        unsafe { self.word(8).write(low | tag_of(self.addr(), low)) };
    }

    /// Sets or clears `PREV_INUSE`, keeping size and other flags.
    ///
    /// # Safety
    /// As for [`Chunk::set_head`].
    #[inline(always)]
    pub unsafe fn set_prev_inuse(self, on: bool) {
        // SAFETY: forwarded.
        unsafe {
            let h = self.head();
            let f = if on { h | PREV_INUSE } else { h & !PREV_INUSE };
            self.set_head(h & SIZE_MASK, f & HEAD_FLAGS);
        }
    }

    /// The `prev_size` word (valid only when `PREV_INUSE` is clear).
    ///
    /// # Safety
    /// As for [`Chunk::head`].
    #[inline(always)]
    pub unsafe fn prev_size(self) -> usize {
        // SAFETY: forwarded.
        unsafe { self.word(0).read() }
    }

    /// Writes the `prev_size` word.
    ///
    /// # Safety
    /// As for [`Chunk::set_head`].
    #[inline(always)]
    pub unsafe fn set_prev_size(self, v: usize) {
        // SAFETY: forwarded.
        unsafe { self.word(0).write(v) }
    }

    /// The chunk just above.
    ///
    /// # Safety
    /// The size is trusted and the next header is in the same mapping.
    #[inline(always)]
    pub unsafe fn next(self) -> Chunk {
        // SAFETY: forwarded.
        unsafe { self.plus(self.size()) }
    }

    /// The free chunk just below (valid only when `PREV_INUSE` is clear).
    ///
    /// # Safety
    /// As for [`Chunk::next`].
    #[inline(always)]
    #[cfg(any(test, feature = "internals"))]
    pub unsafe fn prev(self) -> Chunk {
        // SAFETY: forwarded.
        unsafe { self.minus(self.prev_size()) }
    }

    /// Whether this chunk is in use (the `PREV_INUSE` bit of the chunk above).
    ///
    /// # Safety
    /// As for [`Chunk::next`].
    #[inline(always)]
    pub unsafe fn inuse(self) -> bool {
        // SAFETY: forwarded.
        unsafe { self.next().prev_inuse() }
    }

    /// Writes the boundary tag: the next chunk's `prev_size` = `size`.
    ///
    /// # Safety
    /// As for [`Chunk::set_head`]; `size` is this chunk's size.
    #[inline(always)]
    pub unsafe fn set_foot(self, size: usize) {
        // SAFETY: forwarded.
        unsafe { self.plus(size).set_prev_size(size) }
    }

    /// Forward link of a free chunk.
    ///
    /// # Safety
    /// The chunk is free (in a bin) or a bin sentinel.
    #[inline(always)]
    pub unsafe fn fd(self) -> Chunk {
        // SAFETY: forwarded; links are never null in a circular list.
        unsafe { Chunk::at(self.word(16).cast::<*mut u8>().read()) }
    }

    /// Backward link of a free chunk.
    ///
    /// # Safety
    /// As for [`Chunk::fd`].
    #[inline(always)]
    pub unsafe fn bk(self) -> Chunk {
        // SAFETY: forwarded.
        unsafe { Chunk::at(self.word(24).cast::<*mut u8>().read()) }
    }

    /// Sets the forward link.
    ///
    /// # Safety
    /// As for [`Chunk::fd`], and writable.
    #[inline(always)]
    pub unsafe fn set_fd(self, c: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.word(16).cast::<*mut u8>().write(c.ptr()) }
    }

    /// Sets the backward link.
    ///
    /// # Safety
    /// As for [`Chunk::set_fd`].
    #[inline(always)]
    pub unsafe fn set_bk(self, c: Chunk) {
        // SAFETY: forwarded.
        unsafe { self.word(24).cast::<*mut u8>().write(c.ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trip_and_tags() {
        let mut buf = [0u128; 16];
        let base = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: all chunks below lie inside `buf`.
        unsafe {
            let c = Chunk::at(base);
            for &(size, flags) in &[
                (32usize, 0usize),
                (48, PREV_INUSE),
                (128, PREV_INUSE | IN_REGION),
                (16, 0),
            ] {
                c.set_head(size, flags);
                assert_eq!(c.size(), size);
                assert_eq!(c.flags(), flags);
                assert!(c.tag_ok());
            }
            c.set_head(64, 0);
            c.set_prev_inuse(true);
            assert!(c.prev_inuse() && c.size() == 64 && c.tag_ok());
            c.set_prev_inuse(false);
            assert!(!c.prev_inuse() && c.tag_ok());
            // an overwritten size is caught
            let h = c.head();
            c.word(8).write(h ^ 0x40);
            assert!(!c.tag_ok());
            // the same head at another address is caught
            c.set_head(64, PREV_INUSE);
            let h = c.head();
            let d = c.plus(64);
            d.word(8).write(h);
            assert!(!d.tag_ok());
            c.set_foot(64);
            assert_eq!(d.prev_size(), 64);
            assert_eq!(Chunk::from_payload(c.payload()), c);
        }
    }
}
