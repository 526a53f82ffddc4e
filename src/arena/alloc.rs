//! Allocation inside an arena, under its lock: exact small bin, unsorted bin, large bins, the
//! bitmap's next bin, then top and growth ([`ArenaState::malloc_chunk`]); batches for thread
//! cache refills ([`ArenaState::malloc_batch`]); aligned chunks.

use super::{ArenaState, Got, TOP_MIN};
use crate::bins::{bin_index, FIRST_LARGE, SMALL_LIMIT, UNSORTED};
use crate::chunk::{Chunk, FREE, HEADER, IN_REGION, MIN_CHUNK, PREV_INUSE};
use crate::config::BATCH_BLOCK_MAX;
use crate::os::fatal;
use crate::shared::Shared;
use crate::size_class::{chunk_class, SMALL_MAX_REQUEST};

impl ArenaState {
    #[inline]
    unsafe fn take_whole(&mut self, c: Chunk, size: usize) {
        // SAFETY: c is free, unlinked, valid; its next header is ours.
        unsafe {
            let f = c.flags() & (PREV_INUSE | IN_REGION);
            c.set_head(size, f);
            c.plus(size).set_prev_inuse(true);
        }
    }

    /// Splits an unlinked free chunk `c` of `size` bytes into an in-use chunk of `nb` bytes and a
    /// free remainder (into the unsorted bin) when the remainder can be a chunk.
    #[inline]
    unsafe fn split(&mut self, c: Chunk, size: usize, nb: usize) {
        // Planted bug (`--cfg fuzz_mutation`, never in real builds): an off-by-16 in splitting
        // hands out a chunk 16 bytes short, which the `ops` fuzz target must find (docs/fuzzing.md).
        #[cfg(fuzz_mutation)]
        let nb = if nb > MIN_CHUNK && size - nb >= MIN_CHUNK {
            nb - 16
        } else {
            nb
        };
        // SAFETY: c is valid and ours; the remainder lies inside it.
        unsafe {
            let r = size - nb;
            if r >= MIN_CHUNK {
                let f = c.flags() & (PREV_INUSE | IN_REGION);
                c.set_head(nb, f);
                let rem = c.plus(nb);
                rem.set_head(r, PREV_INUSE | (f & IN_REGION) | FREE);
                rem.set_foot(r);
                self.bins.push_unsorted(rem, r);
            } else {
                self.take_whole(c, size);
            }
        }
    }

    /// Takes a free chunk out of its bin and splits it for a request of `nb` bytes.
    #[inline]
    unsafe fn take_split(&mut self, c: Chunk, nb: usize) -> Got {
        // SAFETY: caller: `c` is a free chunk in this arena's bins, at least `nb` bytes.
        unsafe {
            let size = c.size();
            self.bins.unlink(c, size);
            self.split(c, size, nb);
        }
        Got {
            chunk: c,
            zeroed: false,
        }
    }

    /// Allocates a chunk of exactly `nb` bytes (a multiple of 16, ≥ `MIN_CHUNK`) or a little more.
    ///
    /// # Safety
    /// Lock held (guaranteed by `&mut`); `nb` is a normalised chunk size.
    pub unsafe fn malloc_chunk(&mut self, sh: &Shared, nb: usize) -> Option<Got> {
        // SAFETY: every chunk reached below is in this arena's quick lists, bins or top.
        unsafe {
            if let Some(c) = self.pop_quick(nb) {
                return Some(Got {
                    chunk: c,
                    zeroed: false,
                });
            }
            self.quick_tick(sh, nb, 1);
            loop {
                if let Some(g) = self.malloc_binned(nb) {
                    return Some(g);
                }
                // Top must grow for this request: the quick lists' rule decides first, and
                // when it merged chunks the bins are searched again.
                let ts = self.top.size();
                if self.quick_bytes == 0
                    || ts >= nb + TOP_MIN
                    || self.quick_before_growth(sh, nb + TOP_MIN - ts)
                {
                    break;
                }
            }
            match self.take_top(sh, nb) {
                None if self.quick_bytes > 0 => {
                    // The OS has no more memory: whatever the quick lists hold may serve it.
                    self.consolidate(sh);
                    self.malloc_binned(nb).or_else(|| self.take_top(sh, nb))
                }
                got => got,
            }
        }
    }

    /// The bins' part of [`ArenaState::malloc_chunk`]: exact small bin, unsorted bin, best fit,
    /// the next non-empty bin; `None` when only top (or growth) can serve `nb` bytes.
    ///
    /// # Safety
    /// As for [`ArenaState::malloc_chunk`].
    unsafe fn malloc_binned(&mut self, nb: usize) -> Option<Got> {
        // SAFETY: every chunk reached below is in this arena's bins.
        unsafe {
            if nb < SMALL_LIMIT {
                if let Some(c) = self.bins.last(bin_index(nb)) {
                    self.bins.unlink(c, nb);
                    self.take_whole(c, nb);
                    return Some(Got {
                        chunk: c,
                        zeroed: false,
                    });
                }
            }
            let mut iters = 0;
            while let Some(c) = self.bins.last(UNSORTED) {
                let size = c.size();
                if size < MIN_CHUNK || !c.tag_ok() {
                    fatal("malloc(): corrupted chunk in the unsorted bin (heap overflow?)");
                }
                self.bins.unlink(c, size);
                if size == nb {
                    self.take_whole(c, size);
                    return Some(Got {
                        chunk: c,
                        zeroed: false,
                    });
                }
                if nb < SMALL_LIMIT && size >= nb + MIN_CHUNK && self.bins.is_empty(UNSORTED) {
                    // The last recently freed chunk: carve small requests from it for locality.
                    self.split(c, size, nb);
                    return Some(Got {
                        chunk: c,
                        zeroed: false,
                    });
                }
                self.bins.push_sorted(c, size);
                iters += 1;
                if iters >= 4096 {
                    break;
                }
            }
            let idx = bin_index(nb);
            if idx.0 >= FIRST_LARGE {
                if let Some(c) = self.bins.best_fit(idx, nb) {
                    return Some(self.take_split(c, nb));
                }
            }
            if let Some(b) = self.bins.first_nonempty_from(idx.0 + 1) {
                let c = match self.bins.first(b) {
                    Some(c) => c,
                    None => fatal("bin bitmap out of sync with its bins"),
                };
                return Some(self.take_split(c, nb));
            }
            None
        }
    }

    pub(super) unsafe fn take_top(&mut self, sh: &Shared, nb: usize) -> Option<Got> {
        // SAFETY: top valid (A1); growth keeps it valid.
        unsafe {
            if self.top.size() < nb + TOP_MIN && !self.grow(sh, nb) {
                return None;
            }
            let t = self.top;
            let ts = t.size();
            let f = t.flags() & (PREV_INUSE | IN_REGION);
            let zeroed = t.addr() + HEADER >= self.top_fresh;
            t.set_head(nb, f);
            let nt = t.plus(nb);
            nt.set_head(ts - nb, PREV_INUSE | (f & IN_REGION) | FREE);
            self.top = nt;
            self.top_fresh = self.top_fresh.max(nt.addr() + HEADER);
            self.top_low = self.top_low.min(ts - nb);
            Some(Got { chunk: t, zeroed })
        }
    }

    /// Allocates up to `n` chunks of exactly `nb` bytes under one lock hold, handing each to
    /// `sink` with whether its payload carries the freed mark already (a quick-list chunk);
    /// returns how many it gave: the quick list and the exact small bin first, then blocks cut
    /// into pieces — one for all the rest, or for chunks above the small classes blocks of at
    /// most `BATCH_BLOCK_MAX` bytes each (two chunks at least).
    ///
    /// # Safety
    /// As for [`ArenaState::malloc_chunk`].
    pub unsafe fn malloc_batch(
        &mut self,
        sh: &Shared,
        nb: usize,
        n: usize,
        mut sink: impl FnMut(Chunk, bool),
    ) -> usize {
        let mut k = 0;
        // SAFETY: as in `malloc_chunk`.
        unsafe {
            if self.quick_bytes > 0 && nb <= SMALL_MAX_REQUEST + HEADER {
                if let Some(cls) = chunk_class(nb) {
                    while k < n {
                        let p = self.pop_class(cls.0);
                        if p.is_null() {
                            break;
                        }
                        sink(Chunk::from_payload(p), true);
                        k += 1;
                    }
                }
            }
            if k == n {
                return k;
            }
            self.quick_tick(sh, nb, n - k);
            if nb < SMALL_LIMIT {
                let i = bin_index(nb);
                while k < n {
                    let Some(c) = self.bins.last(i) else { break };
                    self.bins.unlink(c, nb);
                    self.take_whole(c, nb);
                    sink(c, false);
                    k += 1;
                }
            }
            if k == n {
                return k;
            }
            // Blocks for the rest, each cut into pieces; above the small classes each block is
            // of at most `BATCH_BLOCK_MAX` bytes (two chunks at least), so that the holes of a
            // fragmented heap can serve it (one block of the whole rest, up to 32 KiB, came
            // from top or a large free chunk, often purged: `c-mixed`'s peak RSS +10 %). Every
            // block takes at least one chunk, so the loop ends.
            let per_block = if nb > SMALL_MAX_REQUEST + HEADER {
                (BATCH_BLOCK_MAX / nb).max(2)
            } else {
                n
            };
            while k < n {
                let rest = (n - k).min(per_block);
                let got = if rest > 1 {
                    self.malloc_chunk(sh, nb * rest)
                } else {
                    None
                };
                let Some(g) = got else {
                    // One at a time (memory is short, or one chunk is left); a chunk that
                    // absorbed a remainder goes back, and the tries are bounded.
                    let n = k + rest;
                    let mut tries = 2 * rest;
                    while k < n && tries > 0 {
                        tries -= 1;
                        let Some(g) = self.malloc_chunk(sh, nb) else {
                            break;
                        };
                        let sz = g.chunk.size();
                        if sz == nb {
                            sink(g.chunk, false);
                            k += 1;
                        } else {
                            self.release_sized(sh, g.chunk, sz, false);
                        }
                    }
                    break;
                };
                let c = g.chunk;
                let total = c.size();
                let f = c.flags() & (PREV_INUSE | IN_REGION);
                let rf = f & IN_REGION;
                let mut off = 0;
                for i in 0..rest {
                    let piece = c.plus(off);
                    let sz = if i + 1 == rest { total - off } else { nb };
                    piece.set_head(sz, if i == 0 { f } else { PREV_INUSE | rf });
                    if sz == nb {
                        sink(piece, false);
                        k += 1;
                    } else {
                        // The last piece absorbed a remainder too small to split off.
                        self.release_sized(sh, piece, sz, false);
                    }
                    off += sz;
                }
            }
        }
        k
    }

    /// Allocates a chunk whose payload is aligned to `align` (a power of two > 16).
    ///
    /// # Safety
    /// As for [`ArenaState::malloc_chunk`].
    pub unsafe fn memalign_chunk(&mut self, sh: &Shared, align: usize, nb: usize) -> Option<Got> {
        let want = nb.checked_add(align)?.checked_add(MIN_CHUNK)?;
        // SAFETY: the chunk is ours; the split points lie inside it.
        unsafe {
            let g = self.malloc_chunk(sh, want)?;
            let mut c = g.chunk;
            let p = c.payload() as usize;
            if p & (align - 1) != 0 {
                let mut q = (p + align - 1) & !(align - 1);
                if q - p < MIN_CHUNK {
                    q += align;
                }
                let lead = q - p;
                let size = c.size();
                let f = c.flags() & (PREV_INUSE | IN_REGION);
                let nc = c.plus(lead);
                nc.set_head(size - lead, PREV_INUSE | (f & IN_REGION));
                c.set_head(lead, f);
                self.free_chunk(sh, c);
                c = nc;
            }
            self.shrink_chunk(sh, c, nb);
            Some(Got {
                chunk: c,
                zeroed: false,
            })
        }
    }
}
