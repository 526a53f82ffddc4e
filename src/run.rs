//! Runs: page-multiple spans of blocks of one class, the small-block layer behind
//! `ARENA_MALLOC_RUNS=1` (issue 30, stage 1; `heap/runs.rs` routes the thread caches through it).
//!
//! A run is an ordinary in-use chunk its arena handed out (so the break and the regions stay
//! the only memory sources, and the arena's checks see one chunk). Inside it, a header, then
//! blocks of one chunk size, each a tagged chunk of its own:
//!
//! ```text
//! run chunk (in use, from its arena)
//! 0    +------------------------------+
//!      | chunk header (arena's view)  |
//! 16   +------------------------------+  <- the run (`Run`, 96 bytes)
//!      | block size, capacity, span,  |
//!      | class                        |
//!      | local: free list (owner)     |
//!      | fresh: next never-used block |
//!      | remote: atomic free list     |  other threads push chains; the owner swaps it out
//!      | in_use (owner)               |
//!      | owner: the cache, 0: orphan  |
//!      | next, prev: the owner's list |
//! 112  +------------------------------+  <- block 0
//!      | back-offset to the run       |  the `prev_size` word: run blocks are never "prev free"
//!      | head: size | PREV_INUSE |    |
//!      |       IN_RUN, tag            |
//!      | payload ...                  |  while free: link (word 0), freed mark (word 1)
//!      +------------------------------+  <- block 1, ...
//! ```
//!
//! A block finds its run in O(1): its header's first word is the distance back to the run
//! (checked against the run's own layout, so an overwritten word is caught, never followed
//! blindly). The owner allocates from `local`, then from `fresh` (blocks are formatted only as
//! they are first handed out, so a new run touches one page at a time); it frees into `local`.
//! Any other thread frees by pushing a chain of the run's blocks onto `remote` with one
//! compare-exchange; the owner takes the whole list with one exchange ([`Run::collect`]).
//! Free blocks carry the safe-linked link and the freed mark of `link`, so a second
//! free of a block still on a list is caught as it is for cached chunks.
//!
//! # Invariants
//! - U1: `local` and `taken` hold only blocks of this run, each once, not in use; `fresh`
//!   blocks were never handed out.
//! - U2: `in_use + |local| + |taken| + (capacity - fresh index) == capacity` for the blocks
//!   the owner has counted; a block pushed on `remote` counts as in use until the owner counts
//!   it (`remote_n`, read before `remote` is taken, so `in_use` is never below the blocks
//!   truly out: a run is given back only when every block is).
//! - U3: only the owner touches `local`, `taken`, `fresh`, `in_use`, `next` and `prev`;
//!   `remote` and `remote_n` are the shared words. The owner is the thread cache named in `owner` (only that cache ever
//!   stores its own address there, so a cache that reads itself there owns the run); a run
//!   whose cache was dropped is an *orphan* (`owner` 0), on its arena's orphan list, and the
//!   holder of that arena's lock is its owner.

use core::ptr;

use crate::chunk::{Chunk, ALIGN, HEADER, IN_RUN, PREV_INUSE};
use crate::link;
use crate::os::fatal;
use crate::sync::{self, AtomicPtr, AtomicUsize, Ordering};

/// The run's header, at the start of the run chunk's payload.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct Run {
    /// Chunk size of every block (a class chunk size).
    block: usize,
    /// Blocks the run holds.
    capacity: usize,
    /// Bytes of the run's chunk (header included): `len` given to [`Run::init`] plus the
    /// chunk header.
    span: usize,
    /// Size class index (for the caller's lists; the run does not read it).
    class: usize,
    /// `ceil(2^32 / (block / 16))`: a block's index from its offset by a multiply
    /// ([`Run::slot_of`]), exact for offsets below [`MAX_RUN_SPAN`].
    recip: usize,
    /// Owner's free list (payloads linked through `link`), or null.
    local: *mut u8,
    /// A chain taken from `remote` while `local` held blocks, handed out after them (so that
    /// a collection never walks a chain), or null.
    taken: *mut u8,
    /// Index of the first block never handed out.
    fresh: usize,
    /// Blocks handed out and not back in `local` (U2).
    in_use: usize,
    /// Blocks freed by other threads: a chain of payloads the owner has not collected.
    remote: AtomicPtr<u8>,
    /// How many blocks the pushers' chains hold: each pusher adds its chain's length after its
    /// chain is on `remote`, so the owner, which reads this before it takes `remote`, never
    /// counts a block it does not take (U2 holds with `in_use` at or above the truth).
    remote_n: AtomicUsize,
    /// The owning cache's address, or 0 for an orphan (U3).
    owner: AtomicUsize,
    /// The owner's list of runs (its cache's runs of this class, or the arena's orphans).
    pub next: *mut Run,
    /// See `next`.
    pub prev: *mut Run,
}

/// Most bytes a run spans (its chunk's payload): a back-offset beyond it is corrupt.
pub const MAX_RUN_SPAN: usize = 1 << 20;

/// Bytes from the run chunk's payload to its first block: the run header, rounded to 16.
pub const RUN_HEADER: usize = (core::mem::size_of::<Run>() + ALIGN - 1) & !(ALIGN - 1);

/// Blocks a run aims to hold, within [`MIN_RUN_SPAN`] and [`MAX_CARVED_SPAN`].
pub const RUN_BLOCKS: usize = 16;
/// Least bytes a run spans (its chunk, header included).
pub const MIN_RUN_SPAN: usize = 4 << 10;
/// Most bytes a run is carved with (its chunk): runs of the largest classes hold fewer blocks.
pub const MAX_CARVED_SPAN: usize = 512 << 10;

/// The chunk size of a run of blocks of chunk size `block`: [`RUN_BLOCKS`] blocks and the
/// headers, in whole pages of `page` bytes, within [`MIN_RUN_SPAN`] and [`MAX_CARVED_SPAN`].
pub fn span_for(block: usize, page: usize) -> usize {
    let want = block * RUN_BLOCKS + RUN_HEADER + HEADER;
    want.next_multiple_of(page)
        .clamp(MIN_RUN_SPAN, MAX_CARVED_SPAN)
}

impl Run {
    /// Lays out a run of blocks of chunk size `block` in the `len` bytes at `at` (the payload
    /// of an in-use chunk the caller owns, 16-aligned) and returns it. Touches only the header:
    /// blocks are formatted as they are first handed out.
    ///
    /// # Safety
    /// `[at, at + len)` is writable memory the caller owns for the run's life; `block` is a
    /// multiple of 16 of at least 32; `len` holds the header and at least one block.
    pub unsafe fn init(at: *mut u8, len: usize, block: usize, class: usize) -> *mut Run {
        debug_assert!(at as usize % ALIGN == 0 && block % ALIGN == 0 && block >= 32);
        let capacity = (len - RUN_HEADER) / block;
        debug_assert!(capacity > 0 && len <= MAX_RUN_SPAN && block <= 1 << 16);
        let r: *mut Run = at.cast();
        // SAFETY: caller: writable, aligned, ours.
        unsafe {
            r.write(Run {
                block,
                capacity,
                span: len + HEADER,
                class,
                recip: ((1usize << 32) + block / ALIGN - 1) / (block / ALIGN),
                local: ptr::null_mut(),
                taken: ptr::null_mut(),
                fresh: 0,
                in_use: 0,
                remote: AtomicPtr::new(ptr::null_mut()),
                remote_n: AtomicUsize::new(0),
                owner: AtomicUsize::new(0),
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
            })
        };
        r
    }

    /// The owning cache's address, or 0 for an orphan (U3).
    pub fn owner(&self) -> usize {
        self.owner.load(Ordering::Relaxed)
    }

    /// Gives the run to cache `owner` (its address; 0 makes it an orphan).
    ///
    /// # Safety
    /// The caller owns the run (U3) and hands it over: to itself when it adopts an orphan
    /// under its arena's lock, to no one (0) when its cache is dropped.
    pub unsafe fn set_owner(&self, owner: usize) {
        self.owner.store(owner, Ordering::Relaxed);
    }

    /// Bytes of the run's chunk the program does not hold, as the owner sees it: free and
    /// never-used blocks, the headers and the tail (remote frees not collected count as held).
    pub fn free_bytes(&self) -> usize {
        self.span - self.in_use * self.block
    }

    #[cfg(any(test, feature = "internals"))]
    /// Blocks the run holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The blocks' chunk size.
    pub fn block_size(&self) -> usize {
        self.block
    }

    /// The class index given to [`Run::init`].
    pub fn class(&self) -> usize {
        self.class
    }

    #[cfg(any(test, feature = "internals"))]
    /// Blocks out of the owner's hands (handed out, or pushed on `remote` and not collected).
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether every block is back with the owner (the run could go back to its arena).
    pub fn is_unused(&self) -> bool {
        self.in_use == 0
    }

    /// Whether the owner's lists hold free blocks (blocks never used aside).
    #[cfg(test)]
    pub fn has_listed(&self) -> bool {
        !self.local.is_null() || !self.taken.is_null()
    }

    /// Whether the owner can hand out a block without collecting remote frees.
    pub fn has_free(&self) -> bool {
        !self.local.is_null() || !self.taken.is_null() || self.fresh < self.capacity
    }

    fn first_block(&self) -> usize {
        self as *const Run as usize + RUN_HEADER
    }

    /// Hands out a block (its payload, the freed mark cleared): from `local`, else a fresh
    /// one; null when the run is full (the caller may [`Run::collect`] first).
    ///
    /// # Safety
    /// Owner only (U3).
    pub unsafe fn pop(&mut self) -> *mut u8 {
        if self.local.is_null() {
            self.local = self.taken;
            self.taken = ptr::null_mut();
        }
        let p = if !self.local.is_null() {
            let p = self.local;
            // A block taken from the remote list unwalked (`collect`) is checked here: inside
            // the run's used blocks, 16-aligned (a wild link would be caught by `get` first
            // almost always; this catches what slips through before it is handed out).
            let off = (p as usize).wrapping_sub(self.first_block() + HEADER);
            if off >= self.fresh * self.block || off % ALIGN != 0 {
                fatal("free(): a remote free list of a run holds a block of another run");
            }
            // SAFETY: U1: a free block of ours; `get` checks its link and freed mark.
            unsafe {
                self.local = link::get(p);
                link::clear_key(p);
            }
            p
        } else if self.fresh < self.capacity {
            let b = self.first_block() + self.fresh * self.block;
            self.fresh += 1;
            let at: *mut u8 = (self as *mut Run).cast::<u8>().with_addr(b);
            // SAFETY: a never-used block inside our run: write its header.
            unsafe {
                let c = Chunk::at(at);
                c.set_prev_size(b - self as *const Run as usize);
                c.set_head(self.block, PREV_INUSE | IN_RUN);
                let p = c.payload();
                link::clear_key(p);
                p
            }
        } else {
            return ptr::null_mut();
        };
        self.in_use += 1;
        p
    }

    /// Takes a block back from its user (a free on the owning thread).
    ///
    /// # Safety
    /// Owner only; `p` is a payload of this run handed out by [`Run::pop`] and not freed since
    /// (callers check that with the block's freed mark first).
    pub unsafe fn push_local(&mut self, p: *mut u8) {
        // SAFETY: caller: our block, in use: its payload is ours to write.
        unsafe { link::set(p, self.local) };
        self.local = p;
        self.in_use -= 1;
    }

    /// Pushes a chain of `n` of this run's blocks (payloads linked head → … → tail through
    /// `link`) freed by a thread that does not own the run: one compare-exchange, then the
    /// count. Returns whether the remote list was empty before (the owner may want telling:
    /// `heap/runs.rs`).
    ///
    /// # Safety
    /// `run` is live; every block of the chain belongs to it, was handed out, and is given up by
    /// the caller, who linked the chain (`tail`'s link is written here); `n` is its length.
    pub unsafe fn push_remote(run: *const Run, head: *mut u8, tail: *mut u8, n: usize) -> bool {
        // Mutations (loom check): the push forgets to publish; a plain store in place of the
        // compare-exchange, so that two pushers can lose one another's chain; the count comes
        // before the chain (the owner may count blocks it has not taken, and give the run back
        // with them on its list).
        let planted = link::Planted {
            relaxed: sync::mutation::on("run_push_relaxed"),
            not_atomic: sync::mutation::on("run_push_lost"),
        };
        let early = sync::mutation::on("run_count_early");
        // SAFETY: caller: a live run (its `remote` words are shared and atomic); the chain is
        // the caller's to give up.
        unsafe {
            if early {
                (*run).remote_n.fetch_add(n, Ordering::Release);
            }
            let was_empty = link::push_chain(&(*run).remote, head, tail, planted);
            if !early {
                // Release: an owner that reads this count (Acquire) then takes `remote` finds
                // this chain there.
                (*run).remote_n.fetch_add(n, Ordering::Release);
            }
            was_empty
        }
    }

    /// Whether other threads freed blocks the owner has not collected or counted (a snapshot).
    pub fn has_remote(&self) -> bool {
        !self.remote.load(Ordering::Relaxed).is_null() || self.remote_n.load(Ordering::Relaxed) > 0
    }

    /// Takes every block other threads freed (one exchange) onto `local`, and counts the ones
    /// their pushers have counted; returns how many were counted (blocks whose count was late
    /// are counted by a later call). The chain is kept as it is, unread, as `local` when that
    /// is empty (a refill), else as `taken` (handed out after `local`): its blocks are checked
    /// as they are handed out ([`Run::pop`]). Only when both hold blocks is it walked.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn collect(&mut self) -> usize {
        if !self.has_remote() {
            return 0;
        }
        // The count first (Acquire, pairs with the pushers' Release): every chain it counts is
        // on `remote` before the exchange below takes it.
        let n = self.remote_n.swap(0, Ordering::Acquire);
        // Mutation (loom check): the exchange forgets to acquire.
        let planted = link::Planted {
            relaxed: sync::mutation::on("run_collect_relaxed"),
            not_atomic: false,
        };
        let head = link::take_chain(&self.remote, planted);
        if !head.is_null() {
            if self.local.is_null() {
                self.local = head;
            } else if self.taken.is_null() {
                self.taken = head;
            } else {
                // Both lists hold blocks (rare: a collection outside a refill): the chain is
                // walked to its last block, each checked, and goes in front of `taken`.
                let mut p = head;
                let mut k = 0;
                loop {
                    if self.index_of(p).is_none() {
                        fatal("free(): a remote free list of a run holds a block of another run");
                    }
                    k += 1;
                    if k > self.capacity {
                        fatal("free(): double free (a run's remote free list holds more blocks than the run)");
                    }
                    // SAFETY: the chain's blocks are ours now; `get` checks each link and mark.
                    let next = unsafe { link::get(p) };
                    if next.is_null() {
                        break;
                    }
                    p = next;
                }
                // SAFETY: `p`, the chain's last block, is ours: link it to `taken`.
                unsafe { link::set(p, self.taken) };
                self.taken = head;
            }
        }
        if n > self.in_use {
            fatal("free(): double free (a run got back more blocks than it handed out)");
        }
        self.in_use -= n;
        n
    }

    /// The index of the block whose payload is `p`, if `p` is one of this run's handed-out
    /// positions (the owner's check: it reads `fresh`).
    pub fn index_of(&self, p: *mut u8) -> Option<usize> {
        self.slot_of(p).filter(|&i| i < self.fresh)
    }

    /// The index of the block whose payload is `p`, if `p` is one of this run's block
    /// positions: any thread's check, from the run's fixed layout only (`fresh` is the
    /// owner's to change).
    pub fn slot_of(&self, p: *mut u8) -> Option<usize> {
        let off = (p as usize).wrapping_sub(self.first_block() + HEADER);
        if off >= self.capacity * self.block || off % ALIGN != 0 {
            return None;
        }
        // No division on the free path: with x = off / 16 < 2^16 and m = block / 16 ≤ 2^12,
        // (x · ceil(2^32 / m)) >> 32 is x / m rounded down (the error, below x / 2^32 < 2^-16,
        // never reaches the next integer: x / m is at least 1/m ≥ 2^-12 below it).
        let (x, m) = (off / ALIGN, self.block / ALIGN);
        let i = (x * self.recip) >> 32;
        (i * m == x).then_some(i)
    }

    /// The run of a block whose chunk is flagged [`IN_RUN`], from the back-offset in its header;
    /// aborts when the offset does not lead to a run whose layout has a block there.
    ///
    /// # Safety
    /// `c` is a chunk with a valid tag (checked by the caller) and the `IN_RUN` flag.
    pub unsafe fn of(c: Chunk) -> *mut Run {
        // SAFETY: forwarded.
        match unsafe { Run::lookup(c) } {
            Some(r) => r,
            None => fatal("free(): corrupted run block header (bad offset to its run)"),
        }
    }

    /// [`Run::of`] without the abort (for the invariant checker): `None` when the back-offset
    /// does not lead to a run whose layout has a block there.
    ///
    /// # Safety
    /// As for [`Run::of`].
    pub unsafe fn lookup(c: Chunk) -> Option<*mut Run> {
        // SAFETY: caller: a tagged chunk's header is readable.
        let off = unsafe { c.prev_size() };
        if !(RUN_HEADER..=MAX_RUN_SPAN).contains(&off) || off % ALIGN != 0 {
            return None;
        }
        let r: *mut Run = c.ptr().with_addr(c.addr() - off).cast();
        // SAFETY: the offset stays inside the run chunk when the header is intact; the check
        // rejects any offset the run's own layout does not give.
        let ok = unsafe { (*r).block == c.size() && (*r).slot_of(c.payload()).is_some() };
        ok.then_some(r)
    }

    #[cfg(any(test, feature = "internals"))]
    /// Checks the owner's side of the run (its free list against its counts, U1 and U2
    /// without the remote list): for the invariant checker.
    ///
    /// # Safety
    /// The caller owns the run (U3).
    pub unsafe fn check(&self) -> Result<(), &'static str> {
        if self.fresh > self.capacity || self.in_use > self.fresh {
            return Err("U2: run counts out of range");
        }
        let mut n = 0;
        for list in [self.local, self.taken] {
            let mut p = list;
            while !p.is_null() {
                if self.index_of(p).is_none() {
                    return Err("U1: a run's free list holds a block of another run");
                }
                n += 1;
                if n > self.fresh {
                    return Err("U1: a run's free list is longer than its blocks (a cycle?)");
                }
                // SAFETY: a block of this run on its free list (checked above); `get` checks
                // the link and the freed mark.
                p = unsafe { link::get(p) };
            }
        }
        if n != self.fresh - self.in_use {
            return Err("U2: a run's free list and its in-use count disagree");
        }
        Ok(())
    }
}

/// Links run `r` at the front of the circular list at `head` (a cache's runs of one class, or
/// an arena's orphans): `head` is the first run, `head.prev` the last.
///
/// # Safety
/// The caller owns the list and `r` (U3), and `r` is on no list.
pub unsafe fn list_push_front(head: &mut *mut Run, r: *mut Run) {
    // SAFETY: caller: live runs the caller owns.
    unsafe {
        if head.is_null() {
            (*r).next = r;
            (*r).prev = r;
        } else {
            let h = *head;
            let t = (*h).prev;
            (*r).next = h;
            (*r).prev = t;
            (*t).next = r;
            (*h).prev = r;
        }
    }
    *head = r;
}

/// Unlinks run `r` from the circular list at `head`.
///
/// # Safety
/// The caller owns the list and `r`, which is on it.
pub unsafe fn list_unlink(head: &mut *mut Run, r: *mut Run) {
    // SAFETY: caller: live runs the caller owns, linked on this list.
    unsafe {
        let (p, n) = ((*r).prev, (*r).next);
        if p.is_null() || n.is_null() || (*p).next != r || (*n).prev != r {
            fatal("malloc(): corrupted run list");
        }
        if n == r {
            *head = ptr::null_mut();
        } else {
            (*p).next = n;
            (*n).prev = p;
            if *head == r {
                *head = n;
            }
        }
        (*r).next = ptr::null_mut();
        (*r).prev = ptr::null_mut();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A page-aligned buffer standing in for the payload of a run chunk (the tag key is set
    /// up first: blocks carry tagged headers).
    fn buffer(len: usize) -> *mut u8 {
        crate::keys::init();
        let m = crate::os::map(len).expect("map");
        // Leave room for the run chunk's own header, as in an arena.
        m.wrapping_add(HEADER)
    }

    #[test]
    fn a_run_hands_out_every_block_once_aligned_and_in_place() {
        let len = 64 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; a run owned by this thread.
        unsafe {
            let r = &mut *Run::init(at, len - HEADER, 48, 2);
            let cap = r.capacity();
            assert_eq!(cap, (len - HEADER - RUN_HEADER) / 48);
            let mut seen = HashSet::new();
            for _ in 0..cap {
                let p = r.pop();
                assert!(!p.is_null());
                assert_eq!(p as usize % 16, 0, "payload alignment");
                assert!(p as usize >= at as usize + RUN_HEADER + HEADER);
                assert!(
                    p as usize + 32 <= at as usize + len - HEADER,
                    "block past the run"
                );
                assert!(seen.insert(p as usize), "block handed out twice");
                let c = Chunk::from_payload(p);
                assert!(c.tag_ok());
                assert_eq!(c.size(), 48);
                assert_ne!(c.head() & IN_RUN, 0, "a run block is flagged IN_RUN");
                assert!(ptr::eq(Run::of(c), r));
                p.write_bytes(0xab, 32);
            }
            assert!(r.pop().is_null(), "a full run hands out nothing");
            assert_eq!(r.in_use(), cap);
            // Distinct blocks never overlap: sorted, each starts past the previous payload.
            let mut v: Vec<usize> = seen.iter().copied().collect();
            v.sort();
            assert!(v.windows(2).all(|w| w[1] - w[0] >= 48));
        }
    }

    #[test]
    fn a_block_index_by_multiply_matches_division_for_every_class() {
        let at = buffer(MAX_RUN_SPAN + 4096);
        for &block in crate::size_class::CLASS_CHUNK_SIZE.iter() {
            // SAFETY: our buffer; only the header is written.
            let r = unsafe { &*Run::init(at, MAX_RUN_SPAN, block, 0) };
            let base = r.first_block() + HEADER;
            for off in (0..r.capacity() * block).step_by(16) {
                let want = (off % block == 0).then_some(off / block);
                assert_eq!(
                    r.slot_of((base + off) as *mut u8),
                    want,
                    "block {block} offset {off}"
                );
            }
            let past = (base + r.capacity() * block) as *mut u8;
            assert_eq!(r.slot_of(past), None);
            assert_eq!(r.slot_of((base + 8) as *mut u8), None);
        }
    }

    #[test]
    fn local_frees_are_reused_first_and_counted() {
        let len = 16 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; a run owned by this thread.
        unsafe {
            let r = &mut *Run::init(at, len - HEADER, 64, 3);
            let a = r.pop();
            let b = r.pop();
            r.push_local(a);
            assert_eq!(r.in_use(), 1);
            assert!(link::has_key(a), "a free block carries the freed mark");
            assert_eq!(r.pop(), a, "the last freed block comes back first");
            assert!(!link::has_key(a), "a block handed out has no freed mark");
            r.push_local(a);
            r.push_local(b);
            assert!(r.is_unused());
            let again: HashSet<usize> = (0..2).map(|_| r.pop() as usize).collect();
            assert_eq!(again, [a as usize, b as usize].into_iter().collect());
        }
    }

    #[test]
    fn remote_frees_from_other_threads_all_come_back_once() {
        let len = 256 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; this thread owns the run, the others only push chains of blocks
        // it handed them.
        unsafe {
            let r = Run::init(at, len - HEADER, 32, 0);
            let cap = (*r).capacity();
            let blocks: Vec<usize> = (0..cap).map(|_| (*r).pop() as usize).collect();
            let run = r as usize;
            let threads: Vec<_> = blocks
                .chunks(cap / 4 + 1)
                .map(|part| {
                    let part = part.to_vec();
                    std::thread::spawn(move || {
                        // Chains of up to 7 blocks, linked then pushed at once.
                        for chain in part.chunks(7) {
                            for w in chain.windows(2) {
                                link::set(w[0] as *mut u8, w[1] as *mut u8);
                            }
                            let head = chain[0] as *mut u8;
                            let tail = *chain.last().unwrap() as *mut u8;
                            Run::push_remote(run as *const Run, head, tail, chain.len());
                        }
                    })
                })
                .collect();
            let mut collected = 0;
            for t in threads {
                collected += (*r).collect();
                t.join().unwrap();
            }
            collected += (*r).collect();
            assert_eq!(collected, cap, "every remote free is collected once");
            assert!((*r).is_unused());
            let again: HashSet<usize> = (0..cap).map(|_| (*r).pop() as usize).collect();
            assert_eq!(
                again,
                blocks.iter().copied().collect(),
                "the same blocks, each once"
            );
            assert!((*r).pop().is_null());
        }
    }

    #[test]
    fn a_bad_back_offset_or_a_foreign_remote_block_aborts() {
        let len = 32 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; each corruption is planted on purpose and caught.
        unsafe {
            let r = &mut *Run::init(at, (8 << 10) - HEADER, 64, 3);
            let _p = r.pop();
            let q = r.pop();
            let c = Chunk::from_payload(q);
            let off = c.prev_size();
            c.set_prev_size(off + 16);
            crate::os::assert_fatal("bad offset to its run", || {
                Run::of(c);
            });
            c.set_prev_size(off);
            assert!(ptr::eq(Run::of(c), r));
            // A block of another run pushed on this run's remote list: taken unread into an
            // empty local list, it is caught as it would be handed out.
            let other = &mut *Run::init(at.add(8 << 10), (8 << 10) - HEADER, 64, 3);
            let x = other.pop();
            Run::push_remote(r, x, x, 1);
            assert_eq!(r.collect(), 1);
            crate::os::assert_fatal("block of another run", || {
                r.pop();
            });
            // When both of the owner's lists hold blocks the chain is walked: caught by the
            // collection.
            let r2 = &mut *Run::init(at.add(16 << 10), (16 << 10) - HEADER, 64, 3);
            let (a, b, _c) = (r2.pop(), r2.pop(), r2.pop());
            r2.push_local(a);
            Run::push_remote(r2, b, b, 1);
            assert_eq!(r2.collect(), 1);
            let y = other.pop();
            Run::push_remote(r2, y, y, 1);
            crate::os::assert_fatal("block of another run", || {
                r2.collect();
            });
        }
    }

    #[test]
    fn more_remote_frees_than_blocks_out_is_a_double_free() {
        let len = 16 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; the double free is planted on purpose and caught.
        unsafe {
            let r = &mut *Run::init(at, len - HEADER, 64, 3);
            let p = r.pop();
            let q = r.pop();
            r.push_local(q);
            // `p` freed remotely once (fine) ...
            Run::push_remote(r, p, p, 1);
            assert_eq!(r.collect(), 1);
            // ... and `q`, already back in `local`, pushed remotely again (after both were
            // handed out and freed once more: `local` first, then the chain taken remotely).
            assert_eq!((r.pop(), r.pop()), (q, p));
            r.push_local(p);
            r.push_local(q);
            assert!(r.is_unused());
            link::clear_key(q);
            Run::push_remote(r, q, q, 1);
            crate::os::assert_fatal("double free", || {
                r.collect();
            });
        }
    }
}
