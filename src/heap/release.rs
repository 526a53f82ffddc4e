//! Giving chunks back to their arenas in bulk: a thread cache's flush (one lock hold per arena,
//! or the arena's lock-free remote list when its lock is busy) and the free ring's batches.

use core::ptr;

use super::Heap;
use crate::arena::{self, remote_cap, Arena};
use crate::chunk::Chunk;
use crate::link;
use crate::tcache::ThreadCache;

impl Heap {
    /// Gives chunks back to their arenas: one lock hold per arena, or — with `may_defer`, when
    /// an arena's lock is busy — onto that arena's lock-free remote list in one push. The slice
    /// is scratch space (its order is changed). `size` is the chunks' common size when they come
    /// from a thread cache's stack (then no header is read, and their freed marks stay as they
    /// are), or 0.
    ///
    /// With runs on, run blocks go back to their runs first (`Heap::release_run_blocks`:
    /// `from`, the releasing thread's cache if any, says which runs are its own).
    ///
    /// # Safety
    /// Every pointer is the payload of a checked, in-use chunk of this heap that the caller owns
    /// and gives up; when `size` is not 0, of `size` bytes and carrying the freed mark.
    pub unsafe fn release_slice(
        &self,
        ps: &mut [*mut u8],
        size: usize,
        may_defer: bool,
        from: Option<&ThreadCache>,
    ) {
        let sh = &self.shared;
        let mut n = ps.len();
        if self.runs_on() {
            // SAFETY: forwarded.
            n = unsafe { self.release_run_blocks(ps, from, size != 0) };
        }
        while n > 0 {
            // SAFETY: caller: members are checked, in-use chunks of ours.
            unsafe {
                let a: &Arena = self.arena_of_payload(ps[0]);
                let mut guard = if may_defer {
                    a.try_lock()
                } else {
                    Some(a.lock())
                };
                let (mut mine, mut mine_tail) = (ptr::null_mut::<u8>(), ptr::null_mut::<u8>());
                let mut bytes = 0;
                let mut rest = 0;
                // The remote bundle being filled (its head, member count and capacity).
                let (mut head, mut members, cap) = (
                    ptr::null_mut::<u8>(),
                    0usize,
                    if size == 0 { 0 } else { remote_cap(size) },
                );
                // One pass: this arena's chunks are released at once when we hold its lock, or
                // bundled for its remote list when the lock is busy; the others move to the
                // front of the slice for a later pass.
                for i in 0..n {
                    let p = ps[i];
                    let c = Chunk::from_payload(p);
                    if !ptr::eq(self.arena_of_payload(p), a) {
                        ps[rest] = p;
                        rest += 1;
                    } else if let Some(g) = guard.as_mut() {
                        if size == 0 {
                            g.release(sh, c);
                        } else {
                            g.release_sized(sh, c, size, true);
                        }
                    } else if !head.is_null() && members < cap {
                        // A member of the current bundle (same size, marked: from a cache).
                        arena::remote_slot_set(head, members, p);
                        members += 1;
                        bytes += size;
                    } else {
                        // A new bundle head, linked onto the chain; the previous head's count
                        // is final.
                        if !head.is_null() && cap > 0 {
                            arena::remote_set_count(head, members);
                        }
                        let sz = if size == 0 { c.size() } else { size };
                        if size == 0 && arena::remote_cap(sz) > 0 {
                            arena::remote_set_count(p, 0);
                        }
                        link::set(p, mine);
                        if mine_tail.is_null() {
                            mine_tail = p;
                        }
                        mine = p;
                        head = p;
                        members = 0;
                        bytes += sz;
                    }
                }
                if !head.is_null() && cap > 0 {
                    arena::remote_set_count(head, members);
                }
                drop(guard);
                if !mine.is_null() {
                    a.push_remote(mine, mine_tail, bytes);
                }
                n = rest;
            }
        }
    }
}
