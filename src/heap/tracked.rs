//! Huge blocks of user heaps (`arena_malloc::Heap`), kept on a list so that dropping the heap
//! unmaps them too.
//!
//! A tracked block is mapped with at least 64-byte alignment, so the mapping has at least 48
//! bytes before the chunk header (`huge::alloc` records that offset as the chunk's
//! `prev_size`). The link lives there, outside the payload:
//!
//! ```text
//! mapping start                      chunk              payload
//! | ... | magic ^ owner | owner | prev | next | prev_size | head | ...
//!       ^ chunk - 32                          ^ chunk
//! ```
//!
//! `owner` is the heap's address. A huge block of the global heap (or of a test heap) has no
//! such link (its slack is zero, or absent), so `free` can tell whose a huge block is.

use core::ptr;

use crate::chunk::Chunk;
use crate::shared::Shared;

const MAGIC: usize = 0x6172_656e_615f_6870; // "arena_hp"

/// The link words before a tracked chunk.
#[repr(C)]
struct Link {
    check: usize,
    owner: usize,
    prev: *mut Link,
    next: *mut Link,
}

const LINK: usize = core::mem::size_of::<Link>();
const _: () = assert!(LINK <= 48);

/// The list of one heap's live huge blocks (behind the heap's lock for it).
#[derive(Debug)]
pub struct List {
    head: *mut Link,
    count: usize,
}

// SAFETY: only reached through its lock; the links are in the heap's own mappings.
unsafe impl Send for List {}

impl List {
    /// An empty list.
    pub const fn new() -> List {
        List {
            head: ptr::null_mut(),
            count: 0,
        }
    }

    /// Maps a huge block for `n` bytes aligned to `align` and links it. Null on failure.
    pub fn alloc(&mut self, sh: &Shared, owner: usize, n: usize, align: usize) -> *mut u8 {
        let p = crate::huge::alloc(sh, n, align.max(64));
        if p.is_null() {
            return p;
        }
        // SAFETY: a fresh huge chunk whose offset is at least 48 bytes (alignment ≥ 64 on a
        // page-aligned mapping): the link fits in the mapping before the header.
        unsafe {
            let c = Chunk::from_payload(p);
            debug_assert!(c.prev_size() >= LINK);
            let l = c.ptr().sub(LINK).cast::<Link>();
            l.write(Link {
                check: MAGIC ^ owner,
                owner,
                prev: ptr::null_mut(),
                next: self.head,
            });
            if !self.head.is_null() {
                (*self.head).prev = l;
            }
            self.head = l;
        }
        self.count += 1;
        p
    }

    /// Unlinks and unmaps a tracked block of this list.
    ///
    /// # Safety
    /// `c` is a live huge chunk, checked with `huge::check`, for which [`owner`] returned this
    /// list's heap.
    pub unsafe fn free(&mut self, sh: &Shared, c: Chunk) {
        // SAFETY: caller: a tracked chunk of ours; its neighbours are live tracked chunks.
        unsafe {
            let l = c.ptr().sub(LINK).cast::<Link>();
            let (p, n) = ((*l).prev, (*l).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
            (*l).check = 0;
            self.count -= 1;
            crate::huge::free(sh, c);
        }
    }

    /// Unmaps every block on the list (the heap is being dropped).
    ///
    /// # Safety
    /// Nothing uses the blocks any more.
    pub unsafe fn free_all(&mut self, sh: &Shared) {
        while !self.head.is_null() {
            // SAFETY: the head is a live tracked link; its chunk follows it.
            unsafe {
                let c = Chunk::at(self.head.cast::<u8>().add(LINK));
                self.free(sh, c);
            }
        }
    }
}

/// The heap that owns a huge chunk (its address), or 0 when the chunk is not tracked.
///
/// # Safety
/// `c` is a huge chunk checked with `huge::check` (its offset lies inside its mapping).
pub unsafe fn owner(c: Chunk) -> usize {
    // SAFETY: caller: the `prev_size` bytes before the header are mapped when it is ≥ LINK.
    unsafe {
        if c.prev_size() < LINK {
            return 0;
        }
        let l = c.ptr().sub(LINK).cast::<Link>();
        let owner = (*l).owner;
        if (*l).check == MAGIC ^ owner && owner != 0 {
            owner
        } else {
            0
        }
    }
}
