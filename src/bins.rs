//! Free lists of one arena, used only under the arena's lock.
//!
//! ```text
//! index   0        1          2 .. 255             256 .. 383
//!        unused  unsorted   small: one size each   large: 4 per doubling from 4 KiB,
//!                           (index = size / 16)    each sorted by size, smallest first
//! bitmap: bit i set  <=>  bin i non-empty   (bins 2..383; the unsorted bin is checked directly)
//! ```
//!
//! Each bin is a circular doubly-linked list through the chunks' `fd`/`bk` words. The list head
//! is a pair of words inside the arena; its "sentinel chunk" is the address 16 bytes below it, so
//! that the sentinel's `fd`/`bk` land on the pair and list code needs no special case.
//!
//! # Invariants
//! - B1: every chunk in bin `i ≥ 2` has `bin_index(size) == i`; large bins are sorted ascending.
//! - B2: bitmap bit `i` is set exactly when bin `i` is non-empty.
//! - B3: for every chunk `c` in a list, `c.fd.bk == c` and `c.bk.fd == c`.
//! - B4: `free_bytes` is the sum of the sizes of the chunks in all bins.

use crate::chunk::{Chunk, MIN_CHUNK, PURGED};
use crate::os::fatal;

/// Number of bins (index 0 unused).
pub const NBINS: usize = 384;
/// The unsorted bin.
pub const UNSORTED: BinIdx = BinIdx(1);
/// Chunks smaller than this go to exact-size small bins.
pub const SMALL_LIMIT: usize = 4096;
/// First large bin.
pub const FIRST_LARGE: usize = 256;
/// Words of the bitmap.
const BITMAP_WORDS: usize = NBINS / 64;
const _: () = assert!(NBINS % 64 == 0 && SMALL_LIMIT >> 4 == FIRST_LARGE);

/// A bin index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BinIdx(pub usize);

/// The bin a free chunk of `size` bytes belongs in.
#[inline]
pub fn bin_index(size: usize) -> BinIdx {
    if size < SMALL_LIMIT {
        BinIdx(size >> 4)
    } else {
        let e = (usize::BITS - 1 - size.leading_zeros()) as usize;
        let j = (size >> (e - 2)) & 3;
        BinIdx((FIRST_LARGE + (e - 12) * 4 + j).min(NBINS - 1))
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct BinHead {
    fd: *mut u8,
    bk: *mut u8,
}

/// The bins of one arena.
#[repr(C)]
#[derive(Debug)]
pub struct Bins {
    heads: [BinHead; NBINS],
    bitmap: [u64; BITMAP_WORDS],
    /// Sum of the sizes of all chunks in the bins (B4).
    pub free_bytes: usize,
    /// Number of chunks in the bins.
    pub free_chunks: usize,
}

impl Default for Bins {
    fn default() -> Self {
        Bins::new()
    }
}

impl Bins {
    /// Empty bins; [`Bins::init`] must run once the value is at its final address.
    pub const fn new() -> Self {
        Bins {
            heads: [BinHead {
                fd: core::ptr::null_mut(),
                bk: core::ptr::null_mut(),
            }; NBINS],
            bitmap: [0; BITMAP_WORDS],
            free_bytes: 0,
            free_chunks: 0,
        }
    }

    /// Makes every list empty (points at its own sentinel).
    ///
    /// # Safety
    /// `self` stays at this address for as long as it is used.
    pub unsafe fn init(&mut self) {
        for i in 0..NBINS {
            let s = self.sentinel(BinIdx(i)).ptr();
            self.heads[i] = BinHead { fd: s, bk: s };
        }
        self.bitmap = [0; BITMAP_WORDS];
        self.free_bytes = 0;
        self.free_chunks = 0;
    }

    /// The sentinel chunk of bin `i` (its `fd`/`bk` are the list head).
    #[inline(always)]
    pub fn sentinel(&self, i: BinIdx) -> Chunk {
        let p = core::ptr::addr_of!(self.heads[i.0]) as *mut u8;
        // SAFETY: the address is inside `self`, never null; only its fd/bk words (the head) are
        // ever read or written through it.
        unsafe { Chunk::at(p.wrapping_sub(16)) }
    }

    fn sentinel_index(&self, c: Chunk) -> Option<usize> {
        let base = self.sentinel(BinIdx(0)).addr();
        let off = c.addr().wrapping_sub(base);
        if off < NBINS * 16 && off % 16 == 0 {
            Some(off / 16)
        } else {
            None
        }
    }

    /// Whether bin `i` is empty.
    #[inline(always)]
    pub fn is_empty(&self, i: BinIdx) -> bool {
        self.heads[i.0].fd == self.sentinel(i).ptr()
    }

    #[inline(always)]
    fn mark(&mut self, i: usize) {
        self.bitmap[i >> 6] |= 1 << (i & 63);
    }
    #[inline(always)]
    fn unmark(&mut self, i: usize) {
        self.bitmap[i >> 6] &= !(1 << (i & 63));
    }
    /// Whether bitmap bit `i` is set.
    pub fn marked(&self, i: BinIdx) -> bool {
        self.bitmap[i.0 >> 6] & (1 << (i.0 & 63)) != 0
    }

    /// First non-empty bin with index ≥ `from` (never the unsorted bin).
    #[inline]
    pub fn first_nonempty_from(&self, from: usize) -> Option<BinIdx> {
        let mut w = from >> 6;
        if w >= BITMAP_WORDS {
            return None;
        }
        let mut bits = self.bitmap[w] & (!0u64 << (from & 63));
        loop {
            if bits != 0 {
                return Some(BinIdx(w * 64 + bits.trailing_zeros() as usize));
            }
            w += 1;
            if w == BITMAP_WORDS {
                return None;
            }
            bits = self.bitmap[w];
        }
    }

    /// Links `c` between `before` and `after` (`after == before.fd`).
    #[inline(always)]
    unsafe fn link(before: Chunk, c: Chunk, after: Chunk) {
        // SAFETY: the caller holds the lock; all three are list members or sentinels.
        unsafe {
            c.set_bk(before);
            c.set_fd(after);
            before.set_fd(c);
            after.set_bk(c);
        }
    }

    /// Puts a free chunk at the front of the unsorted bin.
    ///
    /// # Safety
    /// `c` is a free chunk with a valid head and footer, in no list; arena lock held.
    #[inline]
    pub unsafe fn push_unsorted(&mut self, c: Chunk, size: usize) {
        let s = self.sentinel(UNSORTED);
        // SAFETY: forwarded; the sentinel's fd is a list member or the sentinel.
        unsafe { Self::link(s, c, s.fd()) };
        self.free_bytes += size;
        self.free_chunks += 1;
    }

    /// Puts a free chunk into the bin for its size (sorted for large bins).
    ///
    /// # Safety
    /// As for [`Bins::push_unsorted`].
    pub unsafe fn push_sorted(&mut self, c: Chunk, size: usize) {
        let i = bin_index(size);
        let s = self.sentinel(i);
        // SAFETY: the caller holds the lock; the walk follows valid links (B3).
        unsafe {
            if i.0 < FIRST_LARGE {
                Self::link(s, c, s.fd());
            } else {
                // Ascending order: insert before the first chunk at least as large. Appending
                // the largest and prepending the smallest take no walk.
                let (first, last) = (s.fd(), s.bk());
                if first == s || size <= first.size() {
                    Self::link(s, c, first);
                } else if size >= last.size() {
                    Self::link(last, c, s);
                } else if size - first.size() <= last.size() - size {
                    // Nearer the small end: walk up from the first.
                    let mut after = first.fd();
                    while after != s && after.size() < size {
                        after = after.fd();
                    }
                    Self::link(after.bk(), c, after);
                } else {
                    // Nearer the large end: walk down from the last, and insert after the last
                    // chunk smaller than `size` (before the first chunk at least as large).
                    let mut before = last.bk();
                    while before != s && before.size() >= size {
                        before = before.bk();
                    }
                    Self::link(before, c, before.fd());
                }
            }
        }
        self.mark(i.0);
        self.free_bytes += size;
        self.free_chunks += 1;
    }

    /// Removes a free chunk from whatever list holds it, checking its links (B3).
    ///
    /// # Safety
    /// `c` is in one of these bins; arena lock held.
    #[inline]
    pub unsafe fn unlink(&mut self, c: Chunk, size: usize) {
        // SAFETY: the caller holds the lock; links are checked before they are trusted.
        unsafe {
            let fd = c.fd();
            let bk = c.bk();
            // Before following the links: a write after free leaves values that are not
            // user-space, 8-aligned addresses far more often than not; dereferencing them would
            // crash with SIGSEGV instead of this message.
            let either = fd.addr() | bk.addr();
            if either & 7 != 0 || either >> 47 != 0 || fd.addr() == 0 || bk.addr() == 0 {
                fatal("corrupted free list: a free chunk's links are broken (write after free?)");
            }
            if fd.bk() != c || bk.fd() != c {
                fatal("corrupted free list: a free chunk's links are broken (write after free?)");
            }
            fd.set_bk(bk);
            bk.set_fd(fd);
            if fd == bk {
                if let Some(i) = self.sentinel_index(fd) {
                    if i != UNSORTED.0 {
                        self.unmark(i);
                    }
                }
            }
        }
        self.free_bytes -= size;
        self.free_chunks -= 1;
    }

    /// The last (oldest) chunk of bin `i`, if any.
    ///
    /// # Safety
    /// Arena lock held.
    #[inline]
    pub unsafe fn last(&self, i: BinIdx) -> Option<Chunk> {
        let s = self.sentinel(i);
        // SAFETY: forwarded.
        let c = unsafe { s.bk() };
        if c == s {
            None
        } else {
            Some(c)
        }
    }

    /// The first chunk of bin `i`, if any (the smallest, for a large bin).
    ///
    /// # Safety
    /// Arena lock held.
    #[inline]
    pub unsafe fn first(&self, i: BinIdx) -> Option<Chunk> {
        let s = self.sentinel(i);
        // SAFETY: forwarded.
        let c = unsafe { s.fd() };
        if c == s {
            None
        } else {
            Some(c)
        }
    }

    /// Best fit in large bin `i`: the smallest chunk of at least `size` bytes.
    ///
    /// # Safety
    /// Arena lock held; `i` is a large bin.
    pub unsafe fn best_fit(&self, i: BinIdx, size: usize) -> Option<Chunk> {
        let s = self.sentinel(i);
        // SAFETY: walk of a valid list (B3).
        unsafe {
            // The largest is last: nothing fits without a walk.
            let last = s.bk();
            if last == s || last.size() < size {
                return None;
            }
            let mut c = s.fd();
            while c != s {
                if c.size() >= size {
                    return Some(c);
                }
                c = c.fd();
            }
        }
        None
    }

    /// Bytes of OS pages returned to the OS inside the chunks of the large bins that carry
    /// the `PURGED` flag: for each, the whole OS pages past its first 32 bytes (header and
    /// links), the range the purge pass (`ArenaState::purge_pass`) released. A walk of the
    /// large bins, for `stats()`; it reads only chunk heads and links, which a purge keeps
    /// resident. Only large bins: a chunk loses the flag whenever it is split or merged, and
    /// only chunks of at least `PURGE_MIN_CHUNK` (64 KiB) are purged.
    ///
    /// # Safety
    /// Arena lock held.
    pub unsafe fn purged_bytes(&self) -> usize {
        let ps = crate::os::page_size();
        let mut purged = 0;
        let mut from = FIRST_LARGE;
        while let Some(i) = self.first_nonempty_from(from) {
            // SAFETY: lock held (caller); the visit reads heads only.
            unsafe {
                self.for_each(i, |c| {
                    if c.flags() & PURGED != 0 {
                        let lo = (c.addr() + 32 + ps - 1) & !(ps - 1);
                        let hi = (c.addr() + c.size()) & !(ps - 1);
                        purged += hi.saturating_sub(lo);
                    }
                });
            }
            from = i.0 + 1;
        }
        purged
    }

    /// Calls `f` on every chunk of bin `i` (for checkers and purging; `f` must not unlink).
    ///
    /// # Safety
    /// Arena lock held.
    pub unsafe fn for_each(&self, i: BinIdx, mut f: impl FnMut(Chunk)) {
        let s = self.sentinel(i);
        // SAFETY: walk of a valid list.
        unsafe {
            let mut c = s.fd();
            while c != s {
                let next = c.fd();
                f(c);
                c = next;
            }
        }
    }
}

const _: () = assert!(MIN_CHUNK >= 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_indexes() {
        assert_eq!(bin_index(32), BinIdx(2));
        assert_eq!(bin_index(1008), BinIdx(63));
        assert_eq!(bin_index(1024), BinIdx(64));
        assert_eq!(bin_index(4080), BinIdx(255));
        assert_eq!(bin_index(4096), BinIdx(256));
        assert_eq!(bin_index(5119), BinIdx(256));
        assert_eq!(bin_index(5120), BinIdx(257));
        assert_eq!(bin_index(8192), BinIdx(260));
        assert!(bin_index(crate::chunk::MAX_CHUNK_SIZE).0 < NBINS);
        let mut prev = 0;
        let mut s = 32;
        while s < (1 << 30) {
            let i = bin_index(s).0;
            assert!(i >= prev && i < NBINS);
            prev = i;
            s += 16 + s / 64;
            s &= !15;
        }
    }

    #[test]
    fn large_bin_stays_sorted_whichever_end_the_walk_starts_from() {
        // 200 chunks with sizes spread over one large bin, pushed in a scrambled order: some
        // insertions walk up from the smallest, others down from the largest.
        let sizes: Vec<usize> = (0..200usize).map(|i| 4096 + ((i * 37) % 64) * 16).collect();
        let total: usize = sizes.iter().sum();
        let mut buf = vec![0u128; total / 16];
        let base = buf.as_mut_ptr().cast::<u8>();
        let mut bins = Box::new(Bins::new());
        // SAFETY: bins is boxed (stable address); chunks are disjoint parts of `buf`.
        unsafe {
            bins.init();
            let mut off = 0;
            let mut chunks = Vec::new();
            for &sz in &sizes {
                let c = Chunk::at(base.add(off));
                c.set_head(sz, crate::chunk::PREV_INUSE);
                off += sz;
                bins.push_sorted(c, sz);
                chunks.push((c, sz));
            }
            let i = bin_index(4096);
            assert_eq!(bin_index(4096 + 63 * 16), i, "one bin");
            let mut seen = Vec::new();
            bins.for_each(i, |c| seen.push(c.size()));
            let mut want = sizes.clone();
            want.sort_unstable();
            assert_eq!(seen, want);
            for (c, sz) in chunks {
                bins.unlink(c, sz);
            }
            assert!(bins.is_empty(i));
        }
    }

    #[test]
    fn lists_against_a_model() {
        // Chunks carved from a local buffer; only headers and links are touched.
        let mut buf = vec![0u128; 4096];
        let base = buf.as_mut_ptr().cast::<u8>();
        let mut bins = Box::new(Bins::new());
        // SAFETY: bins is boxed (stable address); chunks are disjoint parts of `buf`.
        unsafe {
            bins.init();
            let sizes = [32usize, 48, 4096, 16384, 4416, 4800, 4416, 8000, 48];
            let mut chunks = Vec::new();
            let mut off = 0;
            for &sz in &sizes {
                let c = Chunk::at(base.add(off));
                c.set_head(sz, crate::chunk::PREV_INUSE);
                off += sz;
                bins.push_sorted(c, sz);
                chunks.push((c, sz));
            }
            assert_eq!(bins.free_bytes, sizes.iter().sum::<usize>());
            // large bin 256 holds 4096, 4416, 4416, 4800 sorted
            let mut seen = Vec::new();
            bins.for_each(BinIdx(256), |c| seen.push(c.size()));
            assert_eq!(seen, vec![4096, 4416, 4416, 4800]);
            assert_eq!(bins.best_fit(BinIdx(256), 4417).unwrap().size(), 4800);
            assert!(bins.best_fit(BinIdx(256), 4801).is_none());
            assert_eq!(bins.first_nonempty_from(3), Some(BinIdx(bin_index(48).0)));
            assert_eq!(bins.first_nonempty_from(257), Some(bin_index(8000)));
            for (c, sz) in chunks {
                bins.unlink(c, sz);
            }
            assert_eq!(bins.free_bytes, 0);
            for i in 2..NBINS {
                assert!(bins.is_empty(BinIdx(i)));
                assert!(!bins.marked(BinIdx(i)), "bit {i} still set");
            }
        }
    }
}
