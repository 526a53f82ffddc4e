//! Remote frees: chunks freed by threads that found the arena's lock busy wait on a lock-free
//! list (`Arena::remote`), pushed as a chain with one compare-exchange, and whoever takes the
//! lock next drains them. A thread cache's flush pushes its chunks as bundles (`bundle.rs`), so
//! the drainer reads one head per bundle.

use super::bundle::{quick_count_of, quick_slot_get, remote_cap};
use super::{Arena, ArenaGuard};
use crate::chunk::Chunk;
use crate::link;
use crate::os::fatal;
use crate::sync::{self, Ordering};

impl Arena {
    /// Pushes a chain of chunks (payloads linked head → … → tail through `link`) whose
    /// frees are pending; the next lock holder frees them.
    ///
    /// # Safety
    /// Every chunk in the chain belongs to this arena, is in use, and is owned by the caller.
    pub unsafe fn push_remote(&self, head: *mut u8, tail: *mut u8, bytes: usize) {
        // Counted before the chain is published, so that the drainer's `fetch_sub` (after its
        // Acquire swap) can never run first and wrap the figure below zero (loom_stats).
        let late = sync::mutation::on("remote_bytes_late");
        if !late {
            self.remote_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        // Mutations (loom check, see docs/loom.md): the push forgets to publish; a plain store
        // in place of the compare-exchange, so that two pushers can lose one another's chain.
        let planted = link::Planted {
            relaxed: sync::mutation::on("remote_push_relaxed"),
            not_atomic: sync::mutation::on("remote_push_lost"),
        };
        // SAFETY: caller: the chain is ours to give up.
        unsafe { link::push_chain(&self.remote, head, tail, planted) };
        // Mutation (loom check): counted after publishing.
        if late {
            self.remote_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Whether frees are pending on the remote list (a snapshot; tests).
    #[cfg(test)]
    pub fn has_remote(&self) -> bool {
        !self.remote.load(Ordering::Relaxed).is_null()
    }
}

impl ArenaGuard<'_> {
    /// Frees every chunk pending on the remote list.
    #[inline]
    pub fn drain_remote(&mut self) {
        if self.arena.remote.load(Ordering::Relaxed).is_null() {
            return;
        }
        // Mutations (loom check, see docs/loom.md): the drain forgets to acquire; a load and a
        // store in place of the swap, so that a chain pushed between the two is lost.
        let planted = link::Planted {
            relaxed: sync::mutation::on("remote_drain_relaxed"),
            not_atomic: sync::mutation::on("remote_drain_not_swapped"),
        };
        let mut p = link::take_chain(&self.arena.remote, planted);
        let sh = self.arena.shared();
        let mut bytes = 0;
        while !p.is_null() {
            // SAFETY: chunks on the remote list are in use, belong to this arena, and are ours
            // now (A4); the link, count and slots were written by the pusher before its
            // Release. Each entry is a bundle head: its members have its size and carry the
            // freed mark (they come from a thread cache), so they are released unread.
            unsafe {
                let next = link::get(p);
                let c = Chunk::from_payload(p);
                // The head's size files every chunk of the bundle: check its tag first (an
                // overwritten header would misfile them all).
                if !c.tag_ok() {
                    fatal("malloc(): corrupted chunk header on a remote-free list (write after free?)");
                }
                let size = c.size();
                let n = if remote_cap(size) > 0 {
                    quick_count_of(p)
                } else {
                    0
                };
                if n > remote_cap(size) {
                    fatal("malloc(): corrupted remote-free bundle (write after free?)");
                }
                for i in 0..n {
                    let m = Chunk::from_payload(quick_slot_get(p, i));
                    self.g.release_sized(sh, m, size, true);
                }
                bytes += size * (n + 1);
                self.g.release(sh, c);
                p = next;
            }
        }
        self.arena.remote_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}
