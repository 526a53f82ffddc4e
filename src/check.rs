//! Invariant checkers. They never allocate (fixed buffers only), so they can run inside the
//! allocator under test; each returns the first broken invariant as a static message.
//!
//! - [`check_arena`] walks every chunk of every recorded segment (Chunk I1–I4, Arena A1–A2) and
//!   every bin (Bins B1–B4), and matches the free chunks found in memory against the bins.
//! - [`check_tcache`] walks a thread cache's lists (T1, T2).
//! - [`check_heap`] runs both over a whole heap.

use crate::arena::{Arena, ArenaState, TOP_MIN};
use crate::bins::{bin_index, BinIdx, FIRST_LARGE, NBINS, UNSORTED};
use crate::chunk::{Chunk, ALIGN, FENCE, IN_REGION, IN_RUN, IS_MMAPPED, MIN_CHUNK};
use crate::heap::Heap;
use crate::link;
use crate::run::Run;
use crate::size_class::CLASS_CHUNK_SIZE;
use crate::tcache::ThreadCache;

/// Result of a check: `Err` names the broken invariant.
pub type CheckResult = Result<(), &'static str>;

/// Checks one arena's chunks, bins and accounting.
///
/// # Safety
/// The arena's lock is held (by `&ArenaState` from its guard) and its memory is intact enough
/// to walk (the checker stops at the first inconsistency).
pub unsafe fn check_arena(st: &ArenaState) -> CheckResult {
    let mut chunk_bytes = 0usize;
    let mut free_found = 0usize;
    let mut free_found_bytes = 0usize;
    // Multiset hashes of the free chunks' addresses found in memory and in the bins: equal sums
    // mean (with overwhelming probability) the same chunks, so a chunk in two bins while another
    // is in none is caught without allocating a set.
    let mut free_found_hash = 0u64;
    let top = st.top;
    let mut saw_top = false;
    let nsegs = st.segment_count();
    if !st.segments_complete() {
        // The table of segments could not grow (no memory): some chunks cannot be reached.
        return Err("arena segments not all recorded (out of memory for the table)");
    }
    // SAFETY: caller: lock held; every read below stays inside recorded segments.
    unsafe {
        if top.size() < TOP_MIN {
            return Err("A1: top smaller than TOP_MIN");
        }
        if !top.prev_inuse() {
            return Err("A1: top's PREV_INUSE clear (free chunk below top)");
        }
        if !top.is_free() {
            return Err("A1: top not marked FREE");
        }
        for i in 0..nsegs {
            let (start, end) = st.segment(i);
            let current = i + 1 == nsegs;
            let mut c = Chunk::at(top.ptr().with_addr(start));
            let mut prev_free = false;
            let mut first = true;
            loop {
                if c.addr() >= end {
                    return Err("segment walk ran past the segment end");
                }
                if !c.tag_ok() {
                    return Err("I4: chunk header tag mismatch");
                }
                let size = c.size();
                if c.addr() % ALIGN != 0 || size % ALIGN != 0 {
                    return Err("I1: misaligned chunk or size");
                }
                if c.flags() & IS_MMAPPED != 0 {
                    return Err("I1: arena chunk flagged IS_MMAPPED");
                }
                if !first && c.prev_inuse() == prev_free {
                    return Err("I2: PREV_INUSE does not match the chunk below");
                }
                if prev_free && c.prev_size() == 0 {
                    return Err("I2: prev_size missing below a free chunk");
                }
                first = false;
                if c == top {
                    if !current || c.addr() + size != end {
                        return Err("A1: top is not the last chunk of the current segment");
                    }
                    saw_top = true;
                    break;
                }
                if size == FENCE {
                    let f2 = c.plus(FENCE);
                    if !f2.tag_ok() || f2.size() != FENCE || !f2.prev_inuse() {
                        return Err("segment end: broken fence posts");
                    }
                    break;
                }
                if size < MIN_CHUNK {
                    return Err("I1: chunk smaller than MIN_CHUNK");
                }
                let next = c.plus(size);
                let free = !next.prev_inuse();
                if free != c.is_free() {
                    return Err("FREE bit of a chunk disagrees with its neighbour's PREV_INUSE");
                }
                if free {
                    if prev_free {
                        return Err("I3: two adjacent free chunks");
                    }
                    if next == top {
                        return Err("I3: free chunk adjacent to top");
                    }
                    if next.prev_size() != size {
                        return Err("I2: footer of a free chunk does not match its size");
                    }
                    free_found += 1;
                    free_found_bytes += size;
                    free_found_hash = free_found_hash.wrapping_add(mix(c.addr()));
                }
                if (c.flags() & IN_REGION != 0) != (top.flags() & IN_REGION != 0) && current {
                    return Err("IN_REGION flag differs from the segment's kind");
                }
                chunk_bytes += size;
                prev_free = free;
                c = next;
            }
        }
        if !saw_top {
            return Err("A1: top not found in the current segment");
        }
        // Bins.
        let mut in_bins = 0usize;
        let mut in_bins_bytes = 0usize;
        let mut in_bins_hash = 0u64;
        for i in 1..NBINS {
            let idx = BinIdx(i);
            let s = st.bins.sentinel(idx);
            let mut prev = s;
            let mut c = s.fd();
            let mut last_size = 0;
            let mut n = 0usize;
            while c != s {
                if c.bk() != prev {
                    return Err("B3: broken back link");
                }
                if !c.tag_ok() {
                    return Err("I4: bin chunk tag mismatch");
                }
                let size = c.size();
                if c.plus(size).prev_inuse() || !c.is_free() {
                    return Err("B: chunk in a bin is marked in use");
                }
                if i != UNSORTED.0 {
                    if bin_index(size) != idx {
                        return Err("B1: chunk in the wrong bin");
                    }
                    if i >= FIRST_LARGE && size < last_size {
                        return Err("B1: large bin not sorted");
                    }
                }
                if !(0..nsegs)
                    .map(|k| st.segment(k))
                    .any(|(lo, hi)| c.addr() >= lo && c.addr() + size <= hi)
                {
                    return Err("B: chunk in a bin lies outside the arena's segments");
                }
                last_size = size;
                in_bins_hash = in_bins_hash.wrapping_add(mix(c.addr()));
                in_bins += 1;
                in_bins_bytes += size;
                n += 1;
                if n > (1 << 26) {
                    return Err("B3: bin list does not close (cycle)");
                }
                prev = c;
                c = c.fd();
            }
            if s.bk() != prev {
                return Err("B3: sentinel back link");
            }
            if i != UNSORTED.0 && (n > 0) != st.bins.marked(idx) {
                return Err("B2: bitmap bit does not match bin emptiness");
            }
        }
        if in_bins != st.bins.free_chunks || in_bins_bytes != st.bins.free_bytes {
            return Err("B4: bin counters do not match the bins");
        }
        if in_bins != free_found || in_bins_bytes != free_found_bytes {
            return Err("free chunks in memory do not match the chunks in bins");
        }
        if in_bins_hash != free_found_hash {
            return Err("B5: the set of free chunks in memory differs from the set in bins");
        }
        // Quick lists: whole in-use chunks of their class, carrying the cache key.
        let mut quick = 0usize;
        let mut per_class = [0usize; crate::size_class::NSMALL_CLASSES];
        let mut bad = None;
        st.for_each_quick(|cls, p| {
            per_class[cls] += 1;
            let c = Chunk::from_payload(p);
            if bad.is_none()
                && (!c.tag_ok()
                    || c.size() != CLASS_CHUNK_SIZE[cls]
                    || c.is_free()
                    || !c.plus(c.size()).prev_inuse()
                    || !link::has_key(p))
            {
                bad =
                    Some("quick list holds a chunk that is not a whole in-use chunk of its class");
            }
            quick += c.size();
        });
        if let Some(e) = bad {
            return Err(e);
        }
        if quick != st.quick_bytes {
            return Err("quick_bytes does not match the quick lists");
        }
        if per_class
            .iter()
            .enumerate()
            .any(|(cls, &n)| n != st.quick_count(cls))
        {
            return Err("A5: a quick list's count does not match its chunks");
        }
        if st.committed != st.overhead + chunk_bytes + top.size() {
            return Err("A2: committed != overhead + chunks + top");
        }
    }
    Ok(())
}

/// A 64-bit mix of an address (for the multiset hashes above).
fn mix(a: usize) -> u64 {
    let x = (a as u64 ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x ^ (x >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB)
}

/// Checks a thread cache's lists.
///
/// # Safety
/// The cache is not in use by another thread.
pub unsafe fn check_tcache(tc: &ThreadCache) -> CheckResult {
    for (cls, &class_size) in CLASS_CHUNK_SIZE.iter().enumerate() {
        let n = tc.count(cls);
        if n > tc.max(cls) {
            return Err("T1: stack above the class bound");
        }
        // SAFETY: caller: the stacks are stable; each member is a payload we cached.
        unsafe {
            let members = tc.cached(cls);
            for (i, &p) in members.iter().enumerate() {
                if p as usize % ALIGN != 0 {
                    return Err("T2: cached payload misaligned");
                }
                let c = Chunk::from_payload(p);
                if c.flags() & IS_MMAPPED != 0 {
                    return Err("T2: cached chunk flagged IS_MMAPPED");
                }
                if !c.tag_ok() || c.size() != class_size {
                    return Err("T2: cached chunk of the wrong size or bad tag");
                }
                if c.head() & IN_RUN != 0 {
                    // A run block: its neighbour may be a block never handed out; its run
                    // must have a block here.
                    if Run::lookup(c).is_none() {
                        return Err("T2: cached run block whose run has no block there");
                    }
                } else if !c.plus(c.size()).prev_inuse() {
                    return Err("T2: cached chunk marked free in its arena");
                }
                if !link::has_key(p) {
                    return Err("T2: cached chunk lost its freed mark");
                }
                if members[..i].contains(&p) {
                    return Err("T2: chunk cached twice");
                }
            }
        }
    }
    // SAFETY: caller: the cache is quiescent, and owns its runs.
    unsafe { check_runs(tc) }
}

/// Checks a cache's runs (`heap/runs.rs`): each class's list is a well-linked ring of runs
/// of that class that name the cache as their owner, each run's own counts agree (`Run::check`).
///
/// # Safety
/// The cache is not in use by another thread.
unsafe fn check_runs(tc: &ThreadCache) -> CheckResult {
    let me = tc.run_owner_id();
    for (cls, &head) in tc.runs.iter().enumerate() {
        if head.is_null() {
            continue;
        }
        let mut r = head;
        let mut n = 0usize;
        // SAFETY: the cache's runs are live and its own (quiescent).
        unsafe {
            loop {
                let nx = (*r).next;
                if nx.is_null() || (*nx).prev != r {
                    return Err("R1: a cache's run list is broken");
                }
                if (*r).class() != cls || (*r).block_size() != CLASS_CHUNK_SIZE[cls] {
                    return Err("R1: a run on the list of another class");
                }
                if (*r).owner() != me {
                    return Err("R1: a cache's run names another owner");
                }
                (*r).check()?;
                n += 1;
                if n > 1 << 24 {
                    return Err("R1: a cache's run list does not close");
                }
                r = nx;
                if r == head {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Checks the orphan runs of an arena (lock held): each names no owner and its counts agree,
/// and the arena's figure of their free bytes is their sum.
fn check_orphans(st: &ArenaState) -> CheckResult {
    let mut r = Ok(());
    let mut free = 0usize;
    st.for_each_orphan(|o| {
        // SAFETY: orphans are live runs owned by the lock's holder.
        unsafe {
            if r.is_ok() && (*o).owner() != 0 {
                r = Err("R2: an orphan run names an owner");
            }
            if r.is_ok() {
                r = (*o).check();
            }
            free = free.wrapping_add((*o).free_bytes());
        }
    });
    if r.is_ok() && free != st.orphan_free {
        r = Err("R2: the arena's orphan free bytes are not the sum of its orphans'");
    }
    r
}

/// Checks an arena's lists of its runs by class (lock held): each list closes, holds runs of
/// its class only, and together they hold as many runs as the arena counts (`runs`).
fn check_run_lists(st: &ArenaState) -> CheckResult {
    let mut n = 0;
    for (cls, &head) in st.registry.iter().enumerate() {
        let mut r = head;
        while !r.is_null() {
            // SAFETY: the listed runs are live while the lock is held.
            unsafe {
                if (*r).class() != cls {
                    return Err("R3: an arena's run list holds a run of another class");
                }
                if (*(*r).anext).aprev != r {
                    return Err("R3: an arena's run list is broken");
                }
                n += 1;
                if n > st.runs {
                    return Err("R3: an arena's run lists hold more runs than it counts");
                }
                r = (*r).anext;
            }
            if r == head {
                break;
            }
        }
    }
    if n != st.runs {
        return Err("R3: an arena's run lists hold fewer runs than it counts");
    }
    Ok(())
}

/// Checks every arena of a heap (taking each lock in turn) and every live cache.
///
/// # Safety
/// No other thread uses any of the heap's caches meanwhile.
pub unsafe fn check_heap(heap: &Heap) -> CheckResult {
    for i in 0..heap.arena_count() {
        let a: &Arena = heap.arena(i);
        let g = a.lock();
        // SAFETY: lock held.
        unsafe { check_arena(&g)? };
        check_orphans(&g)?;
        check_run_lists(&g)?;
    }
    let mut r = Ok(());
    heap.for_each_cache(|tc| {
        if r.is_ok() {
            // SAFETY: caller: caches are quiescent.
            r = unsafe { check_tcache(&*tc) };
        }
    });
    r
}
