//! Resizing: `realloc` in place when the chunk can grow or shrink where it is, moved otherwise,
//! and `malloc_usable_size`.

use core::ptr;

use super::{grow_target, Heap, Op};
use crate::chunk::{FREE, HEADER, IN_RUN, IS_MMAPPED, MIN_CHUNK, RUN_CHUNK};
use crate::config::MMAP_THRESHOLD_MAX;
use crate::link;
use crate::os::{self, fatal};
use crate::size_class::{request_to_chunk, MAX_CLASS_REQUEST, MAX_REQUEST};
use crate::sync::Ordering;
use crate::tcache::ThreadCache;

impl Heap {
    /// Resizes a block, in place when it can. Null (old block untouched) when impossible.
    ///
    /// # Safety
    /// As for [`Heap::free`]; `p` is non-null.
    pub unsafe fn realloc(&self, tc: *mut ThreadCache, p: *mut u8, n: usize) -> *mut u8 {
        if cfg!(feature = "asan") {
            // The old slack becomes readable for the copy; the old block is live until the new
            // one exists.
            // SAFETY: validated first.
            let usable = unsafe { self.check_ptr(p, Op::Realloc).size() } - HEADER;
            crate::asan::unpoison(p, usable);
        }
        // SAFETY: forwarded.
        let q = unsafe { self.realloc_raw(tc, p, n) };
        // SAFETY: null or our live block.
        unsafe { self.asan_alloc(q, n) };
        q
    }

    /// `realloc` proper. A block that must grow gets headroom (see [`grow_target`]), so that
    /// a run of small growth steps mostly returns early, without the lock or a copy.
    unsafe fn realloc_raw(&self, tc: *mut ThreadCache, p: *mut u8, n: usize) -> *mut u8 {
        // The frees pending in this thread's ring (pipelined `free`) are done first: a block
        // pending there (a realloc after its free) is then found freed by the checks below,
        // and none of their memory is kept from this request. An empty ring costs one load, so
        // a run of reallocs after a run of frees scans nothing (a check of `p` against the ring
        // made every realloc read its 8 slots while one free stayed pending).
        // SAFETY: our cache, if any.
        unsafe { self.settle_pending(tc) };
        // SAFETY: validated before use, as in `free`.
        unsafe {
            let c = self.check_ptr(p, Op::Realloc);
            let Some(nb) = request_to_chunk(n) else {
                return ptr::null_mut();
            };
            let old_usable;
            let mut move_n = n;
            if c.head() & IS_MMAPPED != 0 {
                crate::huge::check(c);
                old_usable = crate::huge::usable(c);
                if nb >= self.shared.mmap_threshold.load(Ordering::Relaxed) / 2 || n > old_usable {
                    // Slack within four pages or the headroom bound (a quarter) stays.
                    if n <= old_usable && old_usable - n < (os::page_size() * 4).max(n / 4) {
                        return p;
                    }
                    // Growth gets headroom as in the arenas: up to a quarter more.
                    let to = if n > old_usable {
                        n.max((old_usable + old_usable / 4).min(MAX_REQUEST))
                    } else {
                        n
                    };
                    let mut q = crate::huge::realloc(&self.shared, c, to);
                    if q.is_null() && to != n {
                        q = crate::huge::realloc(&self.shared, c, n);
                    }
                    if !q.is_null() {
                        return q;
                    }
                }
            } else {
                let size = c.size();
                if c.head() & RUN_CHUNK != 0 {
                    fatal("realloc(): invalid pointer (it points at a run of small blocks: a stale pointer)");
                }
                if c.head() & FREE != 0 || link::has_key(p) {
                    fatal("realloc(): pointer already freed (use after free)");
                }
                old_usable = size - HEADER;
                if c.head() & IN_RUN != 0 {
                    // A run block never grows into its neighbour nor gives back a tail: it stays
                    // while the request fits its class and uses at least half of it (the least
                    // classes always), else moves (a new block, a copy, a free).
                    if nb <= size && (nb * 2 >= size || size <= 64 + HEADER) {
                        return p;
                    }
                    if nb > size {
                        move_n = grow_target(size, nb) - HEADER;
                    }
                } else {
                    if nb <= size {
                        // Slack within the headroom bound stays (a grown block keeps its room).
                        if size - nb > nb / 4 && size - nb >= MIN_CHUNK && size > 1024 + HEADER + 16
                        {
                            let mut g = self.arena_of(c).lock();
                            g.shrink_chunk(&self.shared, c, nb);
                        }
                        return p;
                    }
                    let want = grow_target(size, nb);
                    if nb <= MMAP_THRESHOLD_MAX {
                        let mut g = self.arena_of(c).lock();
                        if g.grow_chunk(&self.shared, c, nb, want) {
                            return p;
                        }
                        // A large block that must move goes to the start of top when top has the
                        // room: its later growth is then in place (no copy), where a best fit would
                        // leave it hemmed in. Class-sized blocks move through the thread cache.
                        if want > MAX_CLASS_REQUEST + HEADER
                            && want < self.shared.mmap_threshold.load(Ordering::Relaxed)
                        {
                            if let Some(got) = g.take_top_for_move(&self.shared, want) {
                                drop(g);
                                let q = Self::hand_out(got.chunk);
                                // Memory from top may be poisoned (feature `asan`); `realloc`
                                // poisons the slack past `n` again afterwards.
                                crate::asan::unpoison(q, want - HEADER);
                                ptr::copy_nonoverlapping(p, q, old_usable);
                                self.free(tc, p);
                                return q;
                            }
                        }
                    }
                    move_n = want - HEADER;
                }
            }
            let mut q = self.malloc(tc, move_n);
            if q.is_null() && move_n != n {
                q = self.malloc(tc, n);
            }
            if q.is_null() {
                return q;
            }
            ptr::copy_nonoverlapping(p, q, old_usable.min(n));
            self.free(tc, p);
            q
        }
    }

    /// Usable bytes of a live block.
    ///
    /// # Safety
    /// As for [`Heap::free`]; `p` is non-null.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: validated before use.
        unsafe {
            let c = self.check_ptr(p, Op::UsableSize);
            if c.head() & RUN_CHUNK != 0 {
                fatal("malloc_usable_size(): invalid pointer (it points at a run of small blocks: a stale pointer)");
            }
            c.size().saturating_sub(HEADER)
        }
    }
}
