//! Runs: page-multiple spans of blocks of one class, the small-block layer behind
//! `ARENA_MALLOC_RUNS=1` (issue 30, stage 1; `heap/runs.rs` routes the thread caches through it).
//!
//! A run is an ordinary in-use chunk its arena handed out (so the break and the regions stay
//! the only memory sources, and the arena's checks see one chunk, flagged `RUN_CHUNK`). Inside
//! it, a header, then at most [`MAX_BLOCKS`] blocks of one chunk size, each a tagged chunk of its
//! own:
//!
//! ```text
//! run chunk (in use, from its arena)
//! 0    +------------------------------+
//!      | chunk header (arena's view)  |
//! 16   +------------------------------+
//!      | color: 0-63 cache lines      |  never touched (`color_for`)
//! 16+c +------------------------------+  <- the run (`Run`, 248 bytes)
//!      | block size, capacity, span,  |  read by every free, written once
//!      | class, reciprocal            |
//!      | owner: the cache, 0: orphan  |  written at an exit and an adoption
//!      | anext, aprev: arena's list   |  written when a neighbour is carved or given back
//!      | (48 bytes apart)             |  no cache line holds two of the three groups
//!      | remote: atomic bitmap        |  other threads set bits; the owner swaps them out
//!      | (48 bytes apart)             |
//!      | free: bitmap (owner)         |
//!      | fresh, in_use (owner)        |
//!      | idle sweeps (owner)          |
//!      | next, prev: the owner's list |
//! 272+c+------------------------------+  <- block 0
//!      | back-offset to the run       |  the `prev_size` word: run blocks are never "prev free"
//!      | head: size | PREV_INUSE |    |
//!      |       IN_RUN, tag            |
//!      | payload ...                  |  while free: the freed mark in word 1
//!      +------------------------------+  <- block 1, ...
//! ```
//!
//! Spans are whole pages, so each run is *colored*: its header, and the blocks after it, start
//! `c` bytes into the span, a multiple of 64 that differs from run to run ([`color_for`]),
//! so that block `i` of the runs of a class is not on the same L1 sets in every run.
//!
//! A block finds its run in O(1): its header's first word is the distance back to the run
//! (checked against the run's own layout, so an overwritten word is caught, never followed
//! blindly), and its index by a multiply ([`Run::slot_of`]). Free blocks are bits, not lists:
//! the owner allocates the lowest free bit, then a fresh block (blocks are formatted only as
//! they are first handed out, so a new run touches one page at a time), and frees by setting
//! its bit. Any other thread frees by setting the blocks' bits in `remote` (one atomic OR per
//! word of bits, for a whole batch of the run's blocks); the owner takes those words with one
//! exchange each ([`Run::collect`]). Neither side reads a free block's memory, so a block freed
//! on another core costs its owner no cache miss until the program uses it again, and a block
//! freed twice finds its bit already set. A thread short of blocks that would otherwise carve
//! a run may take another cache's run's remote words the same way ([`Run::steal`]): the blocks
//! stay out as the owner sees them, and come back to it when they are freed again.
//!
//! # Invariants
//! - U1: a bit set in `free` or `remote` is a block below `fresh`, not in use; no block's bit
//!   is set in both; blocks from `fresh` on were never handed out.
//! - U2: `in_use + |free| + (capacity - fresh) == capacity`: `in_use` counts blocks handed out
//!   and not yet freed to the owner (a block whose bit is in `remote` still counts until the
//!   owner collects it, and so does one a thief took from there, so `in_use` is never below
//!   the blocks truly out: a run is given back only when every block is).
//! - U3: only the owner writes `free`, `fresh`, `in_use`, `next` and `prev` (a thief reads
//!   `free` and `fresh`, to check what it took); `remote` is the shared word pair; `anext` and
//!   `aprev` are the arena lock holder's. The owner is the thread cache named in `owner` (only that cache ever
//!   stores its own address there, so a cache that reads itself there owns the run); a run
//!   whose cache was dropped is an *orphan* (`owner` 0), on its arena's orphan list, and the
//!   holder of that arena's lock is its owner.

use core::ptr;

use crate::chunk::{Chunk, ALIGN, HEADER, IN_RUN, PREV_INUSE};
use crate::link;
use crate::os::fatal;
use crate::sync::process::AtomicUsize as PAtomicUsize;
use crate::sync::{self, AtomicUsize, Ordering};

/// Most blocks a run holds: its bitmaps are two words.
pub const MAX_BLOCKS: usize = 128;
/// Words of a run's bitmaps.
pub const BIT_WORDS: usize = MAX_BLOCKS / usize::BITS as usize;

/// A set of blocks of one run, by index (bit `i % 64` of word `i / 64`).
pub type Bits = [usize; BIT_WORDS];

/// The run's header, at the start of the run chunk's payload.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct Run {
    /// Chunk size of every block (a class chunk size).
    block: usize,
    /// Blocks the run holds (at most [`MAX_BLOCKS`]).
    capacity: usize,
    /// Bytes of the run's chunk (header included): `len` given to [`Run::init`] plus the
    /// chunk header.
    span: usize,
    /// Size class index (for the caller's lists; the run does not read it).
    class: usize,
    /// `ceil(2^32 / (block / 16))`: a block's index from its offset by a multiply
    /// ([`Run::slot_of`]), exact for offsets below [`MAX_RUN_SPAN`].
    recip: usize,
    /// The owning cache's address, or 0 for an orphan (U3).
    owner: AtomicUsize,
    /// The arena's list of its runs of this class (its lock's holder only): where a refill
    /// about to carve a run looks for other caches' remote frees to take ([`Run::steal`]).
    /// Written when a run beside it on the list is carved or given back.
    pub anext: *mut Run,
    /// See `anext`.
    pub aprev: *mut Run,
    /// Keeps `remote` off the cache lines of the fields above, which every free reads: the
    /// run's address is only 16-aligned, so 48 bytes between them put them on two lines
    /// whatever it is. With `remote` in the same line as `block`, a thread freeing into a
    /// run read `block` from a line another freeing thread had just taken for its atomic OR,
    /// then took the line for its own (two transfers per freed set instead of one): half of
    /// `c-xmalloc`'s samples in `release_slice` were on that read.
    _apart_read: [core::mem::MaybeUninit<u8>; 48],
    /// Blocks freed by other threads, by index: the owner has not collected them.
    remote: [AtomicUsize; BIT_WORDS],
    /// Keeps the owner's fields below off `remote`'s cache line: without it the owner's
    /// writes to `free` and `in_use` took that line from the freeing core at each refill.
    _apart: [core::mem::MaybeUninit<u8>; 48],
    /// The owner's free blocks, by index (U1). Atomics only so that a thread taking the
    /// remote frees ([`Run::steal`]) may check them: the owner's plain loads and stores.
    free: [PAtomicUsize; BIT_WORDS],
    /// Index of the first block never handed out (the owner's; read by [`Run::steal`]).
    fresh: PAtomicUsize,
    /// Blocks handed out and not freed to the owner (U2).
    in_use: usize,
    /// Bytes from the run chunk's payload to this header (a multiple of 64: the run's
    /// *color*, [`color_for`]); read when the run goes back to its arena.
    color: usize,
    /// Collection sweeps in a row that found the run with no block out and no block taken
    /// from it since the previous one (owner only; `Heap::sweep_some_runs`).
    pub idle_sweeps: usize,
    /// The owner's list of runs (its cache's runs of this class, or the arena's orphans).
    pub next: *mut Run,
    /// See `next`.
    pub prev: *mut Run,
}

// Three groups that no cache line shares whatever the run's 16-byte alignment (48 bytes between
// each): what every free reads (the first 64 bytes), `remote` (what a remote free writes), the
// owner's own fields.
const _: () = assert!(core::mem::offset_of!(Run, aprev) + 8 <= 64);
const _: () = assert!(core::mem::offset_of!(Run, remote) >= 64 + 48);
const _: () =
    assert!(core::mem::offset_of!(Run, free) >= core::mem::offset_of!(Run, remote) + 16 + 48);

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
/// headers, in whole pages of `page` bytes, within [`MIN_RUN_SPAN`] and [`MAX_CARVED_SPAN`],
/// and no more than [`MAX_BLOCKS`] blocks need (rounded to whole pages).
pub fn span_for(block: usize, page: usize) -> usize {
    let want = block * RUN_BLOCKS + RUN_HEADER + HEADER;
    let most = (block * MAX_BLOCKS + RUN_HEADER + HEADER).next_multiple_of(page);
    want.next_multiple_of(page)
        .clamp(MIN_RUN_SPAN, MAX_CARVED_SPAN)
        .min(most)
}

/// Bytes of addresses that map to distinct L1 sets (sets × line: 64 × 64 B on x86-64 cores,
/// whatever their ways).
const L1_SET_SPAN: usize = 4096;

/// Colors a run gives up a block for, where its span's slack holds fewer.
const MIN_COLORS: usize = 8;

/// The color (bytes from the run chunk's payload to its header, a multiple of 64) of the `n`th
/// run an arena carves, for blocks of chunk size `block` in a span of `len` bytes: `n` picks
/// one of as many cache lines as one block spans (at least 8, at most [`L1_SET_SPAN`]'s 64),
/// as far as the span's slack and one block more allow (a run gives up at most one block for
/// its color).
///
/// Spans are whole pages, so without colors block `i` of every run of a class would sit at the
/// same offset in a page, on the same L1 sets: in `c-simple` (batches of 256 blocks written
/// and freed) the 8-way sets ran out, with 30-200x the L1 misses of the boundary-tagged path.
pub fn color_for(n: usize, block: usize, len: usize) -> usize {
    let fit = (len.saturating_sub(RUN_HEADER) / block).min(MAX_BLOCKS);
    // Blocks of a line or less already tile every set of a page whatever the run's offset.
    if fit < 2 || block <= 64 {
        return 0;
    }
    let lines = (block.min(L1_SET_SPAN) / 64).max(MIN_COLORS);
    // The slack past the blocks that fit uncolored; where it holds fewer than MIN_COLORS
    // lines, one of the blocks too, for MIN_COLORS at most.
    let slack = len - RUN_HEADER - fit * block;
    let colors = if slack / 64 + 1 >= MIN_COLORS {
        (slack / 64 + 1).min(lines)
    } else {
        ((slack + block) / 64 + 1).min(MIN_COLORS)
    };
    // Fibonacci hashing: consecutive runs land far apart in 0..colors, so a few runs of a class
    // already spread over the sets (`n % colors` put 16 runs of 4 KiB blocks on 20 of 64 sets).
    let spread = ((n as u32).wrapping_mul(0x9E37_79B9) as u64 * colors as u64) >> 32;
    spread as usize * 64
}

/// Adds block `i` to set `b`.
#[inline]
pub fn add_block(b: &mut Bits, i: usize) {
    b[i / usize::BITS as usize] |= 1 << (i % usize::BITS as usize);
}

/// The number of blocks in a set.
fn count(b: &Bits) -> usize {
    b.iter().map(|w| w.count_ones() as usize).sum()
}

impl Run {
    /// Lays out a run of blocks of chunk size `block` in the `len` bytes at `at` (the payload
    /// of an in-use chunk the caller owns, 16-aligned) and returns it. Touches only the header:
    /// blocks are formatted as they are first handed out.
    ///
    /// # Safety
    /// `[at, at + len)` is writable memory the caller owns for the run's life; `block` is a
    /// multiple of 16 of at least 32; `len` holds the header and at least one block.
    #[cfg(test)]
    pub unsafe fn init(at: *mut u8, len: usize, block: usize, class: usize) -> *mut Run {
        // SAFETY: forwarded; color 0 keeps the header at `at`.
        unsafe { Run::init_colored(at, len, block, class, 0) }
    }

    /// [`Run::init`] with the header `color` bytes into the span (a multiple of 64 from
    /// [`color_for`]); the blocks follow it, as many as still fit.
    ///
    /// # Safety
    /// As for [`Run::init`], and `len` holds `color`, the header and at least one block.
    pub unsafe fn init_colored(
        at: *mut u8,
        len: usize,
        block: usize,
        class: usize,
        color: usize,
    ) -> *mut Run {
        debug_assert!(at as usize % ALIGN == 0 && block % ALIGN == 0 && block >= 32);
        debug_assert!(color % 64 == 0 && color + RUN_HEADER + block <= len);
        let capacity = ((len - color - RUN_HEADER) / block).min(MAX_BLOCKS);
        debug_assert!(capacity > 0 && len <= MAX_RUN_SPAN && block <= 1 << 16);
        // SAFETY: caller: `color` bytes in, inside the span; 16-aligned as `at` is.
        let r: *mut Run = unsafe { at.add(color) }.cast();
        // SAFETY: caller: writable, aligned, ours.
        unsafe {
            r.write(Run {
                block,
                capacity,
                span: len + HEADER,
                class,
                recip: (1usize << 32).div_ceil(block / ALIGN),
                free: [const { PAtomicUsize::new(0) }; BIT_WORDS],
                fresh: PAtomicUsize::new(0),
                in_use: 0,
                color,
                idle_sweeps: 0,
                remote: core::array::from_fn(|_| AtomicUsize::new(0)),
                owner: AtomicUsize::new(0),
                _apart_read: [core::mem::MaybeUninit::uninit(); 48],
                _apart: [core::mem::MaybeUninit::uninit(); 48],
                anext: ptr::null_mut(),
                aprev: ptr::null_mut(),
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

    /// Word `w` of the owner's free set.
    #[inline(always)]
    fn free_word(&self, w: usize) -> usize {
        self.free[w].load(Ordering::Relaxed)
    }

    /// Sets word `w` of the owner's free set (owner only: a plain store).
    #[inline(always)]
    fn set_free_word(&self, w: usize, v: usize) {
        self.free[w].store(v, Ordering::Relaxed);
    }

    /// The owner's free set.
    fn free_set(&self) -> Bits {
        core::array::from_fn(|w| self.free_word(w))
    }

    /// Index of the first block never handed out.
    #[inline(always)]
    fn fresh(&self) -> usize {
        self.fresh.load(Ordering::Relaxed)
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

    /// Blocks the run holds.
    #[cfg(any(test, feature = "internals"))]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The blocks' chunk size.
    pub fn block_size(&self) -> usize {
        self.block
    }

    /// Bytes from the run chunk's payload to the run (its header).
    pub fn color(&self) -> usize {
        self.color
    }

    /// The class index given to [`Run::init`].
    pub fn class(&self) -> usize {
        self.class
    }

    /// Blocks out of the owner's hands (handed out, or freed remotely and not collected).
    #[cfg(any(test, feature = "internals"))]
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether every block is back with the owner (the run could go back to its arena).
    pub fn is_unused(&self) -> bool {
        self.in_use == 0
    }

    /// Whether the owner holds freed blocks (blocks never used aside).
    #[cfg(test)]
    pub fn has_listed(&self) -> bool {
        self.free_set().iter().any(|&w| w != 0)
    }

    /// Whether fewer than a quarter of its blocks are with the owner (free or never used).
    pub fn mostly_out(&self) -> bool {
        self.in_use * 4 > self.capacity * 3
    }

    /// Whether the owner can hand out a block without collecting remote frees.
    pub fn has_free(&self) -> bool {
        self.free_set().iter().any(|&w| w != 0) || self.fresh() < self.capacity
    }

    fn first_block(&self) -> usize {
        self as *const Run as usize + RUN_HEADER
    }

    /// The payload of block `i` (any thread: the run's fixed layout).
    pub fn payload(&self, i: usize) -> *mut u8 {
        (self as *const Run)
            .cast_mut()
            .cast::<u8>()
            .with_addr(self.first_block() + i * self.block + HEADER)
    }

    /// Hands out a block (its payload, the freed mark cleared): the lowest free one, else a
    /// fresh one; null when the run is full (the caller may [`Run::collect`] first).
    ///
    /// # Safety
    /// Owner only (U3).
    #[cfg(test)]
    pub unsafe fn pop(&mut self) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { self.pop_marked() };
        if !p.is_null() {
            // SAFETY: a block of ours, handed out now: its freed mark goes.
            unsafe { link::clear_key(p) };
        }
        p
    }

    /// Takes a block for a thread cache's stack: the lowest free one, else a fresh one, with
    /// the freed mark (`link::put_cached`) as cached blocks carry it; null when the run is full.
    /// A free block is not touched: it kept the mark its free gave it (`heap/runs.rs` marks
    /// every block it frees to a run), so a block freed on another core costs no miss here.
    ///
    /// # Safety
    /// Owner only (U3).
    pub unsafe fn pop_marked(&mut self) -> *mut u8 {
        let free = self.free_set();
        let p = if let Some(w) = free.iter().position(|&w| w != 0) {
            let i = w * usize::BITS as usize + free[w].trailing_zeros() as usize;
            self.set_free_word(w, free[w] & (free[w] - 1));
            let p = self.payload(i);
            // Loom: the block's last writes by the thread that freed it are ordered before
            // this (through the bits' exchange); nothing outside loom.
            sync::shadow::read(p.addr());
            p
        } else if self.fresh() < self.capacity {
            let f = self.fresh();
            let b = self.first_block() + f * self.block;
            self.fresh.store(f + 1, Ordering::Relaxed);
            let at: *mut u8 = (self as *mut Run).cast::<u8>().with_addr(b);
            // SAFETY: a never-used block inside our run: write its header and its mark.
            unsafe {
                let c = Chunk::at(at);
                c.set_prev_size(b - self as *const Run as usize);
                c.set_head(self.block, PREV_INUSE | IN_RUN);
                let p = c.payload();
                link::put_cached(p);
                p
            }
        } else {
            return ptr::null_mut();
        };
        self.in_use += 1;
        p
    }

    /// Takes block `i` back from its user (a free on the owning thread); aborts on a double
    /// free (its bit already set).
    ///
    /// # Safety
    /// Owner only; `i` is a slot of this run ([`Run::slot_of`]).
    pub unsafe fn push_local(&mut self, i: usize) {
        let (w, bit) = (
            i / usize::BITS as usize,
            1usize << (i % usize::BITS as usize),
        );
        let f = self.free_word(w);
        if f & bit != 0 || i >= self.fresh() || self.in_use == 0 {
            fatal("free(): double free (the block is already free in its run)");
        }
        self.set_free_word(w, f | bit);
        self.in_use -= 1;
    }

    /// Frees the `n` blocks of set `bits` of this run on behalf of a thread that does not own
    /// it: one atomic OR per word of bits. Aborts on a double free (a bit already set).
    /// Returns whether the run had no remote frees before (the owner may want telling:
    /// `heap/runs.rs`).
    ///
    /// # Safety
    /// `run` is live; every block of the set belongs to it and was handed out, and is given up
    /// by the caller.
    pub unsafe fn push_remote(run: *const Run, bits: &Bits, n: usize) -> bool {
        debug_assert_eq!(count(bits), n);
        // Mutations (loom check): the OR forgets to publish (the blocks' last writes are not
        // ordered before the owner's reuse); a load and a store in place of the OR, so that
        // two freers can lose one another's bits.
        let ord = if sync::mutation::on("run_push_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        let lost = sync::mutation::on("run_push_lost");
        let mut was_empty = true;
        for (w, &b) in bits.iter().enumerate() {
            if b == 0 {
                continue;
            }
            // SAFETY: caller: a live run; its `remote` words are shared and atomic.
            let word = unsafe { &(*run).remote[w] };
            let old = if lost {
                let old = word.load(Ordering::Relaxed);
                word.store(old | b, ord);
                old
            } else {
                word.fetch_or(b, ord)
            };
            if old & b != 0 {
                fatal(
                    "free(): double free (the block is already freed to its run by another thread)",
                );
            }
            was_empty &= old == 0;
        }
        was_empty
    }

    /// Whether other threads freed blocks the owner has not collected (a snapshot).
    pub fn has_remote(&self) -> bool {
        self.remote.iter().any(|w| w.load(Ordering::Relaxed) != 0)
    }

    /// Takes every block other threads freed (one exchange per word of bits) into the owner's
    /// free set; returns how many. Aborts on a double free (a block free on both sides, or
    /// more blocks back than out) or a bit for a block never handed out.
    ///
    /// # Safety
    /// Owner only.
    pub unsafe fn collect(&mut self) -> usize {
        // Mutation (loom check): the exchange forgets to acquire.
        let ord = if sync::mutation::on("run_collect_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Acquire
        };
        let mut n = 0;
        for w in 0..BIT_WORDS {
            if self.remote[w].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let b = self.remote[w].swap(0, ord);
            self.check_back(w, b);
            self.set_free_word(w, self.free_word(w) | b);
            n += b.count_ones() as usize;
        }
        if n > self.in_use {
            fatal("free(): double free (a run got back more blocks than it handed out)");
        }
        self.in_use -= n;
        n
    }

    /// Checks the owner's side of the run (its free set against its counts, U1 and U2
    /// without the remote set): for the invariant checker.
    ///
    /// # Safety
    /// The caller owns the run (U3).
    #[cfg(any(test, feature = "internals"))]
    pub unsafe fn check(&self) -> Result<(), &'static str> {
        let (fresh, free) = (self.fresh(), self.free_set());
        if fresh > self.capacity || self.in_use > fresh || self.capacity > MAX_BLOCKS {
            return Err("U2: run counts out of range");
        }
        for (w, &b) in free.iter().enumerate() {
            let base = w * usize::BITS as usize;
            for k in 0..usize::BITS as usize {
                if b & (1 << k) != 0 && base + k >= fresh {
                    return Err("U1: a run's free set holds a block never handed out");
                }
            }
        }
        if count(&free) != fresh - self.in_use {
            return Err("U2: a run's free set and its in-use count disagree");
        }
        Ok(())
    }

    /// Where the blocks' payloads lie: the first one's address and the length of the span
    /// from it to the end of the last block (any thread: the run's fixed layout).
    pub fn payloads(&self) -> (usize, usize) {
        (self.first_block() + HEADER, self.capacity * self.block)
    }

    /// Aborts unless the blocks of word `w` of a set coming back (`b`, taken from the remote
    /// set) were handed out and are not free with the owner: a foreign or corrupted pointer, or
    /// a block freed twice (once on each side).
    fn check_back(&self, w: usize, b: usize) {
        let base = w * usize::BITS as usize;
        // Bits at or above `fresh` name blocks never handed out.
        let handed = self.fresh().saturating_sub(base).min(usize::BITS as usize);
        let valid = if handed == usize::BITS as usize {
            usize::MAX
        } else {
            (1usize << handed) - 1
        };
        if b & !valid != 0 {
            fatal("free(): a run got back a block it never handed out (a foreign or corrupted pointer)");
        }
        if b & self.free_word(w) != 0 {
            fatal("free(): double free (the block is already free in its run)");
        }
    }

    /// Takes the blocks other threads freed to the run for a thread that does not own it (one
    /// exchange per word of bits, as the owner's [`Run::collect`]; each bit goes to one side):
    /// a refill about to carve a run uses another cache's remote frees instead (the owner
    /// would only collect them when its own refills come round to the run, and meanwhile
    /// the thread short of blocks would carve). The blocks stay out as the owner sees them
    /// (`in_use`), and come back to it when they are freed again. Checked as a collection
    /// checks them (a block never handed out, or free with the owner too, aborts): the
    /// owner's `fresh` and free set are read after the exchange, which orders every store of
    /// the owner's that came before the blocks' hand-out and frees. Returns the set and its
    /// size.
    ///
    /// # Safety
    /// `run` is live for the call (its arena's lock is held: runs go back under it).
    pub unsafe fn steal(run: *const Run) -> (Bits, usize) {
        // Mutations (loom check): the exchange forgets to acquire (the freer's last writes
        // are not ordered before the thief's reuse); a load and a store in place of the
        // exchange, so that the owner's collection and the thief can both take a bit.
        let ord = if sync::mutation::on("run_steal_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Acquire
        };
        let torn = sync::mutation::on("run_steal_torn");
        let mut bits = [0; BIT_WORDS];
        let mut n = 0;
        for (w, out) in bits.iter_mut().enumerate() {
            // SAFETY: caller: a live run; its `remote` words are shared and atomic.
            let word = unsafe { &(*run).remote[w] };
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let b = if torn {
                let b = word.load(ord);
                word.store(0, Ordering::Relaxed);
                b
            } else {
                word.swap(0, ord)
            };
            // SAFETY: as above.
            unsafe { (*run).check_back(w, b) };
            *out = b;
            n += b.count_ones() as usize;
        }
        (bits, n)
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

    /// The run of a block whose chunk is flagged [`IN_RUN`], and the block's index, from the
    /// back-offset in its header; aborts when the offset does not lead to a run whose layout
    /// has a block there.
    ///
    /// # Safety
    /// `c` is a chunk with a valid tag (checked by the caller) and the `IN_RUN` flag.
    pub unsafe fn of(c: Chunk) -> (*mut Run, usize) {
        // SAFETY: forwarded.
        match unsafe { Run::lookup(c) } {
            Some(found) => found,
            None => fatal("free(): corrupted run block header (bad offset to its run)"),
        }
    }

    /// Asks for the cache lines of the run header that [`Run::of`] will read for block chunk
    /// `c`, when `c` is a run block (a hint: nothing is checked or followed but the address).
    /// A release reads the header of each block it frees and then its run's: for a block
    /// freed on another core both are often out of the CPU cache, and asking for the run a
    /// few blocks ahead lets that miss overlap the work on the blocks before it.
    ///
    /// # Safety
    /// `c` is an in-use chunk of ours (its header is readable and only its owner writes it).
    #[inline(always)]
    pub unsafe fn prefetch_of(c: Chunk) {
        // SAFETY: caller: a readable header; the back-offset is read only from a run block,
        // whose `prev_size` word is the run's, written once when the block was formatted.
        unsafe {
            if c.head() & IN_RUN != 0 {
                if let Some(r) = Run::back_offset_target(c) {
                    // `block` to `owner`: the 48 bytes a release reads, on one or two lines.
                    crate::os::prefetch(r.cast());
                    crate::os::prefetch(r.cast::<u8>().wrapping_add(47));
                }
            }
        }
    }

    /// Where the back-offset in run block chunk `c`'s header points, when it is one a run's
    /// layout can give (within [`RUN_HEADER`]..=[`MAX_RUN_SPAN`], a multiple of 16); not
    /// dereferenced, so not yet known to be a run.
    ///
    /// # Safety
    /// `c`'s header is readable.
    unsafe fn back_offset_target(c: Chunk) -> Option<*mut Run> {
        // SAFETY: caller.
        let off = unsafe { c.prev_size() };
        if !(RUN_HEADER..=MAX_RUN_SPAN).contains(&off) || off % ALIGN != 0 {
            return None;
        }
        Some(c.ptr().with_addr(c.addr() - off).cast())
    }

    /// [`Run::of`] without the abort (for the invariant checker): `None` when the back-offset
    /// does not lead to a run whose layout has a block there.
    ///
    /// # Safety
    /// As for [`Run::of`].
    pub unsafe fn lookup(c: Chunk) -> Option<(*mut Run, usize)> {
        // SAFETY: caller: a tagged chunk's header is readable.
        let r = unsafe { Run::back_offset_target(c) }?;
        // SAFETY: the offset stays inside the run chunk when the header is intact; the checks
        // reject any offset the run's own layout does not give.
        unsafe {
            if (*r).block != c.size() {
                return None;
            }
            (*r).slot_of(c.payload()).map(|i| (r, i))
        }
    }
}

/// Which pair of links a circular list of runs goes through: the owner's (`next`, `prev`) or
/// the arena's (`anext`, `aprev`).
type Links = unsafe fn(*mut Run) -> (*mut *mut Run, *mut *mut Run);

/// The owner's links of run `r` (a cache's runs of one class, or an arena's orphans).
///
/// # Safety
/// `r` is a live run.
unsafe fn owner_links(r: *mut Run) -> (*mut *mut Run, *mut *mut Run) {
    // SAFETY: caller: live; only the fields' addresses are taken.
    unsafe { (&raw mut (*r).next, &raw mut (*r).prev) }
}

/// The arena's links of run `r` (its list of its runs of one class).
///
/// # Safety
/// `r` is a live run.
unsafe fn arena_links(r: *mut Run) -> (*mut *mut Run, *mut *mut Run) {
    // SAFETY: caller: live; only the fields' addresses are taken.
    unsafe { (&raw mut (*r).anext, &raw mut (*r).aprev) }
}

/// Links run `r` at the front of the circular list at `head`, through links `l`: `head` is
/// the first run, its previous the last.
///
/// # Safety
/// The caller owns the list and `r`, and `r` is on no list of these links.
#[inline]
unsafe fn push_front_on(head: &mut *mut Run, r: *mut Run, l: Links) {
    // SAFETY: caller: live runs the caller owns.
    unsafe {
        let (rn, rp) = l(r);
        if head.is_null() {
            rn.write(r);
            rp.write(r);
        } else {
            let h = *head;
            let t = l(h).1.read();
            rn.write(h);
            rp.write(t);
            l(t).0.write(r);
            l(h).1.write(r);
        }
    }
    *head = r;
}

/// Unlinks run `r` from the circular list at `head`, through links `l`; aborts when its
/// neighbours do not link back to it.
///
/// # Safety
/// The caller owns the list and `r`, which is on it.
#[inline]
unsafe fn unlink_on(head: &mut *mut Run, r: *mut Run, l: Links) {
    // SAFETY: caller: live runs the caller owns, linked on this list.
    unsafe {
        let (p, n) = (l(r).1.read(), l(r).0.read());
        if p.is_null() || n.is_null() || l(p).0.read() != r || l(n).1.read() != r {
            fatal("malloc(): corrupted run list");
        }
        if n == r {
            *head = ptr::null_mut();
        } else {
            l(p).0.write(n);
            l(n).1.write(p);
            if *head == r {
                *head = n;
            }
        }
        let (rn, rp) = l(r);
        rn.write(ptr::null_mut());
        rp.write(ptr::null_mut());
    }
}

/// Links run `r` at the front of the circular list at `head` (a cache's runs of one class, or
/// an arena's orphans): `head` is the first run, `head.prev` the last.
///
/// # Safety
/// The caller owns the list and `r` (U3), and `r` is on no list.
pub unsafe fn list_push_front(head: &mut *mut Run, r: *mut Run) {
    // SAFETY: forwarded.
    unsafe { push_front_on(head, r, owner_links) }
}

/// Moves run `r`, on the circular list at `head` and not its first, to the list's end (just
/// before `head`).
///
/// # Safety
/// The caller owns the list and `r`, which is on it.
pub unsafe fn list_move_to_back(head: &mut *mut Run, r: *mut Run) {
    let h = *head;
    if h == r {
        fatal("malloc(): corrupted run list");
    }
    // SAFETY: forwarded; `r` is off the list between the two calls.
    unsafe {
        list_unlink(head, r);
        list_push_front(head, r);
    }
    *head = h;
}

/// The number of runs on the circular list at `head`.
///
/// # Safety
/// The caller owns the list.
pub fn list_len(head: *mut Run) -> usize {
    list_len_at_most(head, usize::MAX)
}

/// The number of runs on the circular list at `head`, counted up to `most` (a list of
/// thousands of runs costs a walk of `most`, not of the whole list).
///
/// # Safety
/// The caller owns the list.
pub fn list_len_at_most(head: *mut Run, most: usize) -> usize {
    let mut n = 0;
    let mut r = head;
    while !r.is_null() && n < most {
        n += 1;
        // SAFETY: caller: live runs, linked in a ring.
        r = unsafe { (*r).next };
        if r == head {
            break;
        }
    }
    n
}

/// Unlinks run `r` from the circular list at `head`.
///
/// # Safety
/// The caller owns the list and `r`, which is on it.
pub unsafe fn list_unlink(head: &mut *mut Run, r: *mut Run) {
    // SAFETY: forwarded.
    unsafe { unlink_on(head, r, owner_links) }
}

/// Links run `r` into an arena's circular list of its runs of one class (`anext`, `aprev`).
///
/// # Safety
/// The arena's lock is held; `r` is on no such list.
pub unsafe fn reg_push(head: &mut *mut Run, r: *mut Run) {
    // SAFETY: forwarded.
    unsafe { push_front_on(head, r, arena_links) }
}

/// Unlinks run `r` from the arena list at `head`; aborts when its neighbours do not link back
/// to it.
///
/// # Safety
/// The arena's lock is held; `r` is on the list.
pub unsafe fn reg_unlink(head: &mut *mut Run, r: *mut Run) {
    // SAFETY: forwarded.
    unsafe { unlink_on(head, r, arena_links) }
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

    /// The set of blocks `idx`.
    fn bits_of(idx: &[usize]) -> Bits {
        let mut b = [0; BIT_WORDS];
        for &i in idx {
            add_block(&mut b, i);
        }
        b
    }

    /// The index of a payload the run handed out.
    fn slot(r: &Run, p: *mut u8) -> usize {
        r.slot_of(p).expect("a block of the run")
    }

    #[test]
    fn a_run_hands_out_every_block_once_aligned_and_in_place() {
        let len = 8 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; a run owned by this thread.
        unsafe {
            let r = &mut *Run::init(at, len - HEADER, 48, 2);
            let cap = r.capacity();
            assert_eq!(cap, ((len - HEADER - RUN_HEADER) / 48).min(MAX_BLOCKS));
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
                let (found, i) = Run::of(c);
                assert!(ptr::eq(found, r));
                assert_eq!(r.payload(i), p);
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
    fn a_run_never_holds_more_blocks_than_its_bits() {
        for &block in crate::size_class::CLASS_CHUNK_SIZE.iter() {
            let span = span_for(block, 4096);
            assert_eq!(span % 4096, 0);
            assert!((span - HEADER - RUN_HEADER) / block >= 1, "block {block}");
            assert!(span <= MAX_CARVED_SPAN.max(4096));
        }
        let at = buffer(64 << 10);
        // SAFETY: our buffer; only the header is written.
        let r = unsafe { &*Run::init(at, (64 << 10) - HEADER, 32, 0) };
        assert_eq!(r.capacity(), MAX_BLOCKS, "capped at the bitmap's size");
    }

    #[test]
    fn colored_runs_fit_their_spans_and_spread_block_zero_over_the_l1_sets() {
        let at = buffer(MAX_CARVED_SPAN + 4096);
        for &block in crate::size_class::CLASS_CHUNK_SIZE.iter() {
            let len = span_for(block, 4096) - HEADER;
            let fit = ((len - RUN_HEADER) / block).min(MAX_BLOCKS);
            let slack = len - RUN_HEADER - fit * block;
            let mut sets = std::collections::HashSet::new();
            let mut colors = std::collections::HashSet::new();
            for n in 0..16 {
                let c = color_for(n, block, len);
                assert_eq!(c % 64, 0, "block {block}: color {c} off a cache line");
                colors.insert(c);
                // SAFETY: our buffer; only the header is written.
                let r = unsafe { &*Run::init_colored(at, len, block, 0, c) };
                let cap = r.capacity();
                assert!(
                    cap >= 1 && cap + 1 >= fit,
                    "block {block}: {cap} of {fit} blocks"
                );
                if c <= slack {
                    assert_eq!(
                        cap, fit,
                        "block {block}: color {c} within the slack cost a block"
                    );
                }
                let (first, bytes) = r.payloads();
                assert_eq!(first, at as usize + c + RUN_HEADER + HEADER);
                assert!(
                    first - HEADER + bytes <= at as usize + len,
                    "block {block}: past the span"
                );
                // The run is found from its blocks, and gives its color back.
                // SAFETY: a block position of the run; its header is written here.
                unsafe {
                    let b = Chunk::from_payload(r.payload(cap - 1));
                    b.set_prev_size(b.addr() - r as *const Run as usize);
                    b.set_head(block, PREV_INUSE | IN_RUN);
                    let (found, i) = Run::of(b);
                    assert!(ptr::eq(found, r) && i == cap - 1 && (*found).color() == c);
                }
                sets.insert((first - HEADER) / 64 % 64);
            }
            // 16 runs of a class carved one after another (spans on the same page offsets):
            // block 0 on as many L1 sets as there are colors, up to 8.
            if block > 64 {
                assert!(
                    sets.len() >= colors.len().min(8) && colors.len() >= 2,
                    "block {block}: 16 runs' block 0 on {} sets ({} colors)",
                    sets.len(),
                    colors.len()
                );
            }
        }
    }

    #[test]
    fn local_frees_are_reused_lowest_first_and_counted() {
        let len = 8 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; a run owned by this thread.
        unsafe {
            let r = &mut *Run::init(at, len - HEADER, 64, 3);
            let a = r.pop();
            let b = r.pop();
            link::put_cached(b);
            r.push_local(slot(r, b));
            link::put_cached(a);
            r.push_local(slot(r, a));
            assert!(r.is_unused());
            assert!(link::has_key(a), "a free block keeps the freed mark");
            assert_eq!(r.pop(), a, "the lowest free block comes back first");
            assert!(!link::has_key(a), "a block handed out has no freed mark");
            assert_eq!(r.pop(), b);
            assert_eq!(r.in_use(), 2);
            r.check().unwrap();
        }
    }

    #[test]
    fn remote_frees_from_other_threads_all_come_back_once() {
        let len = 16 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; this thread owns the run, the others only free blocks it handed
        // them.
        unsafe {
            let r = Run::init(at, len - HEADER, 64, 0);
            let cap = (*r).capacity();
            let blocks: Vec<usize> = (0..cap).map(|_| (*r).pop() as usize).collect();
            let run = r as usize;
            let threads: Vec<_> = blocks
                .chunks(cap / 4 + 1)
                .map(|part| {
                    let part = part.to_vec();
                    std::thread::spawn(move || {
                        let r = run as *const Run;
                        // Sets of up to 7 blocks, freed at once.
                        for set in part.chunks(7) {
                            let idx: Vec<usize> =
                                set.iter().map(|&p| slot(&*r, p as *mut u8)).collect();
                            Run::push_remote(r, &bits_of(&idx), idx.len());
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
            (*r).check().unwrap();
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
    fn a_bad_back_offset_or_a_block_never_handed_out_aborts() {
        let len = 8 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; each corruption is planted on purpose and caught.
        unsafe {
            let r = &mut *Run::init(at, len - HEADER, 64, 3);
            let _p = r.pop();
            let q = r.pop();
            let c = Chunk::from_payload(q);
            let off = c.prev_size();
            c.set_prev_size(off + 16);
            crate::os::assert_fatal("bad offset to its run", || {
                Run::of(c);
            });
            c.set_prev_size(off);
            assert!(ptr::eq(Run::of(c).0, r));
            // A bit for a block the run never handed out (a pointer into its fresh blocks).
            Run::push_remote(r, &bits_of(&[5]), 1);
            crate::os::assert_fatal("never handed out", || {
                r.collect();
            });
        }
    }

    #[test]
    fn every_kind_of_double_free_into_a_run_aborts() {
        let len = 8 << 10;
        let at = buffer(len);
        // SAFETY: our buffer; the double frees are planted on purpose and caught.
        unsafe {
            let r = &mut *Run::init(at, len - HEADER, 64, 3);
            let (a, b, c, d) = (r.pop(), r.pop(), r.pop(), r.pop());
            let (ia, ib, ic, id) = (slot(r, a), slot(r, b), slot(r, c), slot(r, d));
            // Twice on the owner's side.
            r.push_local(ia);
            crate::os::assert_fatal("already free in its run", || r.push_local(ia));
            // Twice remotely before the owner collects: the second OR finds the bit.
            Run::push_remote(r, &bits_of(&[ib]), 1);
            crate::os::assert_fatal("already freed to its run", || {
                Run::push_remote(r, &bits_of(&[ib]), 1);
            });
            // Remotely after the owner freed it (or collected it).
            Run::push_remote(r, &bits_of(&[ia]), 1);
            crate::os::assert_fatal("already free in its run", || {
                r.collect();
            });
            // The owner frees a block whose remote free it collected.
            let r2 = &mut *Run::init(at.add(4 << 10), (4 << 10) - HEADER, 64, 3);
            let e = r2.pop();
            let ie = slot(r2, e);
            Run::push_remote(r2, &bits_of(&[ie]), 1);
            assert_eq!(r2.collect(), 1);
            crate::os::assert_fatal("already free in its run", || r2.push_local(ie));
            let _ = (ic, id);
        }
    }
}
