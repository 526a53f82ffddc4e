//! Telling a live block of ours from everything else before it is freed, resized or measured:
//! the one-test fast check of a pointer ([`Heap::check_ptr`]), the slow checks that name what
//! is wrong (foreign, interior, misaligned, freed, overwritten), and the messages they abort
//! with.

use core::ptr;

use super::{tracked, Heap};
use crate::arena::region::{self};
use crate::chunk::{Chunk, HEADER, IS_MMAPPED};
use crate::os::{self, fatal};
use crate::region_map;
use crate::sync::Ordering;

impl Heap {
    /// Checks that `p` is a live block of ours and returns its chunk; aborts with a message
    /// naming the problem otherwise.
    ///
    /// # Safety
    /// The heap is initialised.
    #[inline(always)]
    pub unsafe fn check_ptr(&self, p: *mut u8, op: Op) -> Chunk {
        // One test for "16-aligned and below the region map's limit" (a power of two), on the
        // chunk address `a` (a null `p` wraps high and fails it).
        const ODD: usize = !(region_map::MAP_LIMIT - 1) | 15;
        let a = (p as usize).wrapping_sub(HEADER);
        // SAFETY: a < MAP_LIMIT when the first test passes. A user heap checks every pointer
        // in `check_unusual` (its granules are not `contains`'s, the others' must be refused).
        if a & ODD != 0 || !unsafe { region_map::contains_below_limit(a) } || self.shared.user {
            // SAFETY: forwarded.
            unsafe { self.check_unusual(p, op) };
        }
        // SAFETY: the header is readable (checked above).
        let c = unsafe { Chunk::from_payload(p) };
        // SAFETY: readable.
        if !c.tag_matches(unsafe { c.head() }) {
            fatal(op.msg(Problem::BadHeader));
        }
        c
    }

    /// The rest of [`Heap::check_ptr`] for a pointer that is misaligned, high, or outside the
    /// reservations the region map knows (the break, other mappings, huge blocks).
    #[cold]
    #[inline(never)]
    unsafe fn check_unusual(&self, p: *mut u8, op: Op) {
        if p as usize & 15 != 0 {
            fatal(op.msg(Problem::Misaligned));
        }
        let a = (p as usize).wrapping_sub(HEADER);
        let k = region_map::kind(a);
        if k & region_map::USER != 0 && k != region_map::DROPPED {
            // A live user heap's reservation (readable: R1). Only that heap may free there.
            if !self.shared.user {
                fatal(op.msg(Problem::UserHeap));
            }
            let mine = if k == region_map::USER_REGION {
                // SAFETY: a live region; its header names its arena, which lives in the
                // arena's first region, unmapped last.
                ptr::eq(unsafe { (*region::arena_of(p)).shared() }, &self.shared)
            } else {
                let base = self.main_reserve.load(Ordering::Relaxed);
                a.wrapping_sub(base) < self.main_reserve_len.load(Ordering::Relaxed)
            };
            if !mine {
                fatal(op.msg(Problem::OtherHeap));
            }
            return;
        }
        if self.shared.user && k != region_map::NOT_OURS && k != region_map::DROPPED {
            // The global heap's (or a test heap's) reservations.
            fatal(op.msg(Problem::NotThisHeap));
        }
        if !self
            .shared
            .main_segs
            .contains((p as usize).wrapping_sub(HEADER))
        {
            // SAFETY: forwarded.
            unsafe { self.check_foreign(p, op) };
        }
    }

    #[cold]
    #[inline(never)]
    unsafe fn check_foreign(&self, p: *mut u8, op: Op) {
        // A pointer into what a dropped user heap gave back is named as such when it fails.
        let dropped = region_map::kind((p as usize).wrapping_sub(HEADER)) == region_map::DROPPED;
        let fail = |problem| {
            fatal(op.msg(if dropped { Problem::Dropped } else { problem }));
        };
        if p as usize <= 4096 || !os::readable(p.wrapping_sub(HEADER), HEADER) {
            fail(Problem::Unmapped);
        }
        // SAFETY: readable.
        let c = unsafe { Chunk::from_payload(p) };
        // SAFETY: readable.
        let h = unsafe { c.head() };
        if !c.tag_matches(h) {
            // Not one of ours. A local's address approximates this thread's stack pointer:
            // a pointer within the stack's usual reach (8 MiB above, a little below) is named
            // as a stack pointer. (Only here, after the tag check: thread stacks are mappings
            // like huge blocks, and may lie right beside them.)
            let here = core::ptr::addr_of!(op) as usize;
            if (p as usize).wrapping_sub(here.wrapping_sub(64 << 10)) < (8 << 20) + (64 << 10) {
                fail(Problem::Stack);
            }
            fail(Problem::NotOurs);
        }
        if h & IS_MMAPPED == 0 {
            fail(Problem::BadHeader);
        }
        // SAFETY: tag checked.
        unsafe { crate::huge::check(c) };
        // A user heap's huge blocks are linked to it (and only it may free them).
        // SAFETY: checked huge chunk.
        let owner = unsafe { tracked::owner(c) };
        if self.shared.user {
            if owner != self as *const Heap as usize {
                fatal(op.msg(if owner == 0 {
                    Problem::NotThisHeap
                } else {
                    Problem::OtherHeap
                }));
            }
        } else if owner != 0 {
            fatal(op.msg(Problem::UserHeap));
        }
    }
}

/// Which entry point is checking a pointer (for its abort message).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// `free`/`dealloc`.
    Free,
    /// `realloc`.
    Realloc,
    /// `malloc_usable_size`.
    UsableSize,
}

#[derive(Debug, Clone, Copy)]
enum Problem {
    Misaligned,
    NotOurs,
    Unmapped,
    Stack,
    BadHeader,
    /// A user heap's block given to the global allocator.
    UserHeap,
    /// A block of another user heap.
    OtherHeap,
    /// A user heap given a block of the global heap's.
    NotThisHeap,
    /// A pointer into memory a dropped user heap gave back.
    Dropped,
}

impl Op {
    fn msg(self, p: Problem) -> &'static str {
        match (self, p) {
            (Op::Free, Problem::Misaligned) => "free(): invalid pointer (misaligned: not returned by malloc)",
            (Op::Free, Problem::NotOurs) => "free(): invalid pointer (not a block allocated by arena-malloc)",
            (Op::Free, Problem::Unmapped) => "free(): invalid pointer (unmapped address: a wild pointer, or a double free of a huge block)",
            (Op::Free, Problem::Stack) => "free(): invalid pointer (points into the stack)",
            (Op::Free, Problem::BadHeader) => "free(): invalid pointer or corrupted chunk header (interior pointer or heap overflow?)",
            (Op::Realloc, Problem::Misaligned) => "realloc(): invalid pointer (misaligned: not returned by malloc)",
            (Op::Realloc, Problem::NotOurs) => "realloc(): invalid pointer (not a block allocated by arena-malloc)",
            (Op::Realloc, Problem::Unmapped) => "realloc(): invalid pointer (unmapped address: a wild pointer, or a huge block already freed)",
            (Op::Realloc, Problem::Stack) => "realloc(): invalid pointer (points into the stack)",
            (Op::Realloc, Problem::BadHeader) => "realloc(): invalid pointer or corrupted chunk header (interior pointer or heap overflow?)",
            (Op::UsableSize, Problem::Misaligned) => "malloc_usable_size(): invalid pointer (misaligned)",
            (Op::UsableSize, Problem::NotOurs | Problem::Unmapped | Problem::Stack) => "malloc_usable_size(): invalid pointer (not allocated by arena-malloc)",
            (Op::UsableSize, Problem::BadHeader) => "malloc_usable_size(): invalid pointer or corrupted chunk header",
            (Op::Free, Problem::UserHeap) => "free(): invalid pointer (a block of an arena_malloc::Heap: free it through that heap)",
            (Op::Realloc, Problem::UserHeap) => "realloc(): invalid pointer (a block of an arena_malloc::Heap: resize it through that heap)",
            (Op::UsableSize, Problem::UserHeap) => "malloc_usable_size(): invalid pointer (a block of an arena_malloc::Heap)",
            (Op::Free, Problem::OtherHeap) => "arena_malloc::Heap: deallocate of a block of another heap",
            (Op::Realloc, Problem::OtherHeap) => "arena_malloc::Heap: grow/shrink of a block of another heap",
            (Op::UsableSize, Problem::OtherHeap) => "arena_malloc::Heap: block of another heap",
            (Op::Free, Problem::NotThisHeap) => "arena_malloc::Heap: deallocate of a block that is not this heap's (the global allocator's?)",
            (Op::Realloc, Problem::NotThisHeap) => "arena_malloc::Heap: grow/shrink of a block that is not this heap's (the global allocator's?)",
            (Op::UsableSize, Problem::NotThisHeap) => "arena_malloc::Heap: a block that is not this heap's",
            (Op::Free, Problem::Dropped) => "free(): invalid pointer (a block of an arena_malloc::Heap that was dropped)",
            (Op::Realloc, Problem::Dropped) => "realloc(): invalid pointer (a block of an arena_malloc::Heap that was dropped)",
            (Op::UsableSize, Problem::Dropped) => "malloc_usable_size(): invalid pointer (a block of an arena_malloc::Heap that was dropped)",
        }
    }
}
