//! An arena's side of the runs (`run`, with `Tunables::runs`): it carves a run as one ordinary
//! chunk, takes an empty run back as one chunk (to the bins, whose decay purges its pages), and
//! keeps the runs of dropped caches (*orphans*) until a cache adopts them or their blocks all
//! come back.

use super::ArenaState;
use crate::chunk::{Chunk, HEADER, RUN_CHUNK};
use crate::os::{self, fatal};
use crate::run::{self, Run};
use crate::shared::Shared;
use crate::size_class::NCLASSES;

/// Most orphans an adoption looks at for one with a free block.
const ADOPT_LOOKS: usize = 4;

impl ArenaState {
    /// Carves a run of blocks of chunk size `block` (class `cls`) owned by cache `owner` (its
    /// address); null when out of memory.
    ///
    /// # Safety
    /// Lock held (`&mut`); `block` is a class chunk size.
    pub unsafe fn carve_run(
        &mut self,
        sh: &Shared,
        block: usize,
        cls: usize,
        owner: usize,
    ) -> *mut Run {
        let span = run::span_for(block, os::page_size());
        // SAFETY: lock held; a normalised chunk size.
        let Some(got) = (unsafe { self.malloc_chunk(sh, span) }) else {
            return core::ptr::null_mut();
        };
        let c = got.chunk;
        // SAFETY: an in-use chunk of ours, 16-aligned payload of `size - HEADER` bytes (at
        // least `span - HEADER`: a header and RUN_BLOCKS blocks or MIN_RUN_SPAN).
        unsafe {
            // Memory from the arena may be poisoned (feature `asan`): the run writes its header
            // and its blocks' headers; each block is poisoned and unpoisoned as it is freed and
            // handed out (`Heap::free`, `Heap::malloc`).
            crate::asan::unpoison(c.payload(), c.size() - HEADER);
            c.set_head(c.size(), c.flags() | RUN_CHUNK);
            let len = (c.size() - HEADER).min(run::MAX_RUN_SPAN);
            let color = run::color_for(self.runs_carved, block, len);
            self.runs_carved = self.runs_carved.wrapping_add(1);
            let r = Run::init_colored(c.payload(), len, block, cls, color);
            (*r).set_owner(owner);
            self.runs += 1;
            run::reg_push(&mut self.registry[cls], r);
            self.run_bytes += c.size();
            r
        }
    }

    /// Gives an empty run back as one free chunk.
    ///
    /// # Safety
    /// Lock held; `r` is a run of this arena, owned by the caller, on no list, with no block
    /// out ([`Run::is_unused`]) and nothing on its remote list.
    pub unsafe fn free_run(&mut self, sh: &Shared, r: *mut Run) {
        // SAFETY: caller: a live run; its chunk is an in-use chunk of this arena.
        unsafe {
            if !(*r).is_unused() || (*r).has_remote() {
                fatal("free(): a run went back to its arena with blocks still out");
            }
            let c = Chunk::from_payload(r.cast::<u8>().sub((*r).color()));
            if !c.tag_ok() || c.flags() & RUN_CHUNK == 0 {
                fatal("free(): corrupted header of a run's chunk");
            }
            c.set_head(c.size(), c.flags() & !RUN_CHUNK);
            self.runs -= 1;
            run::reg_unlink(&mut self.registry[(*r).class()], r);
            self.run_bytes -= c.size();
            self.free_chunk(sh, c);
        }
    }

    /// A dropped cache's run with blocks still out: it waits on this arena's orphan list of
    /// its class, at its front when a quarter of its blocks or more are free (the next
    /// adoption takes it), else at its end (its blocks are the program's: they come back by
    /// remote frees, and an heir would get only a few blocks from it).
    ///
    /// # Safety
    /// Lock held; `r` is a run of this arena, owned by the caller (whose cache is being
    /// dropped) and on no list.
    pub unsafe fn add_orphan(&mut self, r: *mut Run) {
        // SAFETY: caller: ours to give up; the lock's holder owns orphans from here on.
        unsafe {
            (*r).set_owner(0);
            let list = &mut self.orphans[(*r).class()];
            run::list_push_front(list, r);
            if (*r).mostly_out() {
                *list = (*r).next;
            }
            self.orphan_free = self.orphan_free.wrapping_add((*r).free_bytes());
        }
        self.orphan_count += 1;
    }

    /// Takes an orphan of class `cls` with free blocks for cache `owner` (its address), or
    /// null: the first of the list's first [`ADOPT_LOOKS`] with a free block once its remote
    /// frees are collected; those with none go to the list's end (their blocks are the
    /// program's, and an heir would hold them for nothing: in `churn`, a sixth of the
    /// adoptions took such runs).
    ///
    /// # Safety
    /// Lock held.
    pub unsafe fn adopt_orphan(&mut self, cls: usize, owner: usize) -> *mut Run {
        let mut found = core::ptr::null_mut();
        let first = self.orphans[cls];
        for k in 0..ADOPT_LOOKS {
            let o = self.orphans[cls];
            // Fewer orphans than looks: each is looked at once.
            if o.is_null() || (k > 0 && o == first) {
                break;
            }
            // SAFETY: orphans are live runs of this arena, owned by the lock's holder; `o` is
            // on the list.
            unsafe {
                self.collect_orphan(o);
                if (*o).has_free() {
                    self.unlist_orphan(o);
                    (*o).set_owner(owner);
                    found = o;
                    break;
                }
                self.orphans[cls] = (*o).next;
            }
        }
        found
    }

    /// Takes orphan `r` off its list, with its free bytes out of the orphans' figure.
    ///
    /// # Safety
    /// Lock held; `r` is an orphan of this arena (on its list).
    unsafe fn unlist_orphan(&mut self, r: *mut Run) {
        // SAFETY: caller.
        unsafe {
            run::list_unlink(&mut self.orphans[(*r).class()], r);
            self.orphan_free = self.orphan_free.wrapping_sub((*r).free_bytes());
        }
        self.orphan_count -= 1;
    }

    /// Collects orphan `r`'s remote frees and gives it back when its blocks are all back.
    /// Returns whether it went back.
    ///
    /// # Safety
    /// Lock held; `r` is an orphan of this arena (on its list).
    pub unsafe fn settle_orphan(&mut self, sh: &Shared, r: *mut Run) -> bool {
        // SAFETY: forwarded.
        unsafe {
            self.collect_orphan(r);
            self.release_orphan_if_unused(sh, r)
        }
    }

    /// Collects orphan `r`'s remote frees: their bytes move from pending to free.
    ///
    /// # Safety
    /// Lock held; `r` is an orphan of this arena.
    unsafe fn collect_orphan(&mut self, r: *mut Run) {
        // SAFETY: caller: orphans are live runs of this arena, owned by the lock's holder.
        let back = unsafe { (*r).collect() * (*r).block_size() };
        self.orphan_collected = self.orphan_collected.wrapping_add(back);
        self.orphan_free = self.orphan_free.wrapping_add(back);
    }

    /// Gives orphan `r` back as one chunk when its blocks are all back (as the owner saw
    /// them: remote frees not collected aside). Returns whether it went back.
    ///
    /// # Safety
    /// Lock held; `r` is an orphan of this arena (on its list).
    unsafe fn release_orphan_if_unused(&mut self, sh: &Shared, r: *mut Run) -> bool {
        // SAFETY: caller: as above.
        unsafe {
            if !(*r).is_unused() {
                return false;
            }
            self.unlist_orphan(r);
            self.free_run(sh, r);
        }
        true
    }

    /// Collects the remote frees of up to `most` orphans (going on, class by class, from where
    /// the last sweep stopped) and gives back those whose blocks are all back. Returns how many
    /// went back.
    ///
    /// # Safety
    /// Lock held.
    pub unsafe fn sweep_orphans(&mut self, sh: &Shared, most: usize) -> usize {
        let mut n = 0;
        let mut left = most.min(self.orphan_count);
        // Mutation (loom check): the sweep tests for emptiness without collecting the remote
        // frees first, so an orphan whose last blocks came back remotely is never given back.
        let no_collect = crate::sync::mutation::on("orphan_sweep_no_collect");
        let mut steps = 0;
        while left > 0 && steps < NCLASSES {
            let cls = self.orphan_cursor;
            // The class's orphans, each once: the list turns by one at each step, and empty
            // ones leave it.
            let mut k = run::list_len_at_most(self.orphans[cls], left);
            left -= k;
            while k > 0 {
                k -= 1;
                let r = self.orphans[cls];
                // SAFETY: orphans are live runs of this arena, owned by the lock's holder.
                unsafe {
                    if !no_collect {
                        self.collect_orphan(r);
                    }
                    if self.release_orphan_if_unused(sh, r) {
                        n += 1;
                    } else {
                        self.orphans[cls] = (*r).next;
                    }
                }
            }
            if left > 0 {
                self.orphan_cursor = (cls + 1) % NCLASSES;
                steps += 1;
            }
        }
        n
    }

    /// Runs on the orphan list.
    pub fn orphan_count(&self) -> usize {
        self.orphan_count
    }

    /// Calls `f` on each orphan run.
    #[cfg(any(test, feature = "internals"))]
    pub fn for_each_orphan(&self, mut f: impl FnMut(*mut Run)) {
        for &head in &self.orphans {
            let mut r = head;
            while !r.is_null() {
                f(r);
                // SAFETY: a live orphan (lock held by the caller of `&self`); the list is
                // circular.
                r = unsafe { (*r).next };
                if r == head {
                    break;
                }
            }
        }
    }

    /// Takes the remote frees of a run of class `cls` that a live cache other than `me` owns
    /// ([`Run::steal`]), looking at up to `most` of this arena's runs of the class, from where
    /// the last look stopped. Returns the run, the set and its size (0: none found).
    ///
    /// # Safety
    /// Lock held.
    pub unsafe fn steal_remote(
        &mut self,
        cls: usize,
        me: usize,
        most: usize,
    ) -> (*mut Run, run::Bits, usize) {
        let head = self.registry[cls];
        let mut r = head;
        // SAFETY: the runs on the arena's lists are live while its lock is held (they leave
        // the lists when they go back, `free_run`); the list is circular.
        unsafe {
            for _ in 0..most {
                if r.is_null() {
                    break;
                }
                let o = (*r).owner();
                if o != me && o != 0 && (*r).has_remote() {
                    let (bits, n) = Run::steal(r);
                    if n > 0 {
                        self.registry[cls] = (*r).anext;
                        return (r, bits, n);
                    }
                }
                r = (*r).anext;
                if r == head {
                    break;
                }
            }
        }
        if !r.is_null() {
            self.registry[cls] = r;
        }
        (core::ptr::null_mut(), [0; run::BIT_WORDS], 0)
    }
}
