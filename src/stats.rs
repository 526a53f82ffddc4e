//! Figures a service can read: [`Stats`] and its readable report.
//!
//! Accounting identity (asserted by tests and the checker):
//! `arena_committed = overhead + free_in_bins + quick_bytes + top + (bytes in in-use chunks)`,
//! where in-use chunks include those held in thread caches (`tcache_bytes`) and those whose
//! frees are pending on remote lists (`remote_pending`), and runs (`run_free`, `run_remote`);
//! `in_use` counts only what the program holds. So, with huge blocks: `mapped = overhead +
//! free_in_bins + quick_bytes + top + tcache_bytes + remote_pending + run_free + run_remote +
//! in_use`, where `in_use` includes `huge_bytes`.
//!
//! `purged` is the part of `free_in_bins` whose OS pages went back to the OS, and `resident`
//! is `mapped - purged`: an estimate of the resident bytes, which counts committed pages that
//! were never touched as resident (see [`Stats::resident`]).

use core::fmt;

/// A snapshot of one heap's figures (bytes unless the name says otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Arenas made.
    pub arenas: usize,
    /// Threads with a live cache.
    pub threads: usize,
    /// All memory held from the OS: arenas' committed memory plus huge mappings.
    pub mapped: usize,
    /// Bytes of OS pages inside free chunks that were returned to the OS (`MADV_DONTNEED`, the
    /// purge pass: chunks of at least 64 KiB that stayed free a while); part of
    /// `free_in_bins`, mapped but not resident.
    pub purged: usize,
    /// Estimate of the resident bytes: `mapped - purged`. An upper bound in practice: committed
    /// OS pages never written (fresh top, the untouched tail of a huge block) count as
    /// resident, and so do purged pages of a chunk that has since merged with a neighbour or
    /// been split (it loses its purged mark; its pages fault in only when written). The
    /// allocator's own metadata outside the arenas (thread-cache structs, the region map) is
    /// not counted.
    pub resident: usize,
    /// Committed memory of the arenas.
    pub arena_committed: usize,
    /// Bytes of chunks the program holds (headers included), huge blocks included.
    pub in_use: usize,
    /// Bytes in the arenas' bins (free chunks, coalesced; `purged` is part of it).
    pub free_in_bins: usize,
    /// Chunks in the arenas' bins.
    pub free_chunks: usize,
    /// Bytes in the arenas' quick lists: small chunks that thread caches gave back, kept whole
    /// (not coalesced) for the next refill of their class, until they age out.
    pub quick_bytes: usize,
    /// Bytes in the arenas' top chunks.
    pub top: usize,
    /// Arena memory outside any chunk (region headers, arena structs, fence posts).
    pub overhead: usize,
    /// Bytes held in thread caches.
    pub tcache_bytes: usize,
    /// Bytes whose frees wait on arenas' remote lists.
    pub remote_pending: usize,
    /// Bytes of runs (`ARENA_MALLOC_RUNS=1`) the program does not hold: free and never-used
    /// blocks, run headers and tails, as the runs' owners (caches, or arenas for orphans) see
    /// them; 0 with runs off.
    pub run_free: usize,
    /// Bytes of run blocks freed by threads that do not own their run, not yet collected by
    /// the owner (an estimate: its parts are read one cache at a time); 0 with runs off.
    pub run_remote: usize,
    /// Runs live: carved from the arenas and not given back (owned by a cache, or orphans); 0
    /// with runs off.
    pub runs: usize,
    /// Bytes of the live runs' chunks (headers included): the part of the arenas' in-use
    /// chunks that runs hold. Of it, `run_free` and `run_remote` are free; the rest,
    /// `run_bytes - run_free - run_remote`, are blocks out of their runs (held by the program,
    /// cached by threads, or waiting in their pipelines): a low share means the runs are
    /// fragmented. 0 with runs off.
    pub run_bytes: usize,
    /// Frees waiting in threads' pipelines (at most 8 per thread, done within 8 more frees;
    /// their blocks still count in `in_use`).
    pub frees_pending: usize,
    /// Live huge blocks.
    pub huge_blocks: usize,
    /// Bytes mapped for huge blocks.
    pub huge_bytes: usize,
    /// Current mmap threshold.
    pub mmap_threshold: usize,
}

struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 {
            write!(f, "{:.2} GiB", b as f64 / (1u64 << 30) as f64)
        } else if b >= 1 << 20 {
            write!(f, "{:.2} MiB", b as f64 / (1u64 << 20) as f64)
        } else if b >= 1 << 10 {
            write!(f, "{:.1} KiB", b as f64 / 1024.0)
        } else {
            write!(f, "{b} B")
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "arena-malloc statistics")?;
        writeln!(
            f,
            "  arenas           {:>12}   threads with caches {}",
            self.arenas, self.threads
        )?;
        writeln!(
            f,
            "  mapped           {:>12}",
            Bytes(self.mapped).to_string_lossless()
        )?;
        writeln!(
            f,
            "  resident (est.)  {:>12}   (mapped - purged {})",
            Bytes(self.resident).to_string_lossless(),
            Bytes(self.purged).to_string_lossless()
        )?;
        writeln!(
            f,
            "  in use           {:>12}",
            Bytes(self.in_use).to_string_lossless()
        )?;
        writeln!(
            f,
            "  free in bins     {:>12}   ({} chunks)",
            Bytes(self.free_in_bins).to_string_lossless(),
            self.free_chunks
        )?;
        writeln!(
            f,
            "  quick lists      {:>12}",
            Bytes(self.quick_bytes).to_string_lossless()
        )?;
        writeln!(
            f,
            "  top              {:>12}",
            Bytes(self.top).to_string_lossless()
        )?;
        writeln!(
            f,
            "  thread caches    {:>12}",
            Bytes(self.tcache_bytes).to_string_lossless()
        )?;
        writeln!(
            f,
            "  remote pending   {:>12}   (frees pipelined {})",
            Bytes(self.remote_pending).to_string_lossless(),
            self.frees_pending
        )?;
        writeln!(
            f,
            "  runs: free       {:>12}   (remote pending {}; {} runs of {})",
            Bytes(self.run_free).to_string_lossless(),
            Bytes(self.run_remote).to_string_lossless(),
            self.runs,
            Bytes(self.run_bytes).to_string_lossless()
        )?;
        writeln!(
            f,
            "  overhead         {:>12}",
            Bytes(self.overhead).to_string_lossless()
        )?;
        writeln!(
            f,
            "  huge blocks      {:>12}   ({} blocks, threshold {})",
            Bytes(self.huge_bytes).to_string_lossless(),
            self.huge_blocks,
            Bytes(self.mmap_threshold).to_string_lossless()
        )
    }
}

impl Bytes {
    /// Formats into a fixed buffer (the report must not allocate when printed from an
    /// allocator hook; `Display` padding needs a `str`).
    fn to_string_lossless(&self) -> FixedStr {
        let mut s = FixedStr::default();
        let _ = fmt::write(&mut s, format_args!("{self}"));
        s
    }
}

#[derive(Default)]
struct FixedStr {
    buf: [u8; 32],
    len: usize,
}

impl fmt::Write for FixedStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let b = s.as_bytes();
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Display for FixedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?"))
    }
}

/// A `fmt::Write` sink that writes to standard error through `write(2)`, for reports printed
/// from inside the allocator (`malloc_stats`; not built for the loom models, which have no C
/// API).
#[cfg(not(all(test, loom)))]
#[derive(Debug, Default)]
pub struct StderrWriter;

#[cfg(not(all(test, loom)))]
impl fmt::Write for StderrWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::os::write_stderr(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::check::check_heap;
    use crate::config::Tunables;
    use crate::heap::PrivateHeap;

    /// Every byte of the arenas is in exactly one figure.
    fn assert_identity(s: &super::Stats) {
        assert_eq!(
            s.mapped,
            s.overhead
                + s.free_in_bins
                + s.quick_bytes
                + s.top
                + s.tcache_bytes
                + s.remote_pending
                + s.run_free
                + s.run_remote
                + s.in_use,
            "accounting identity: {s}"
        );
        assert_eq!(s.resident, s.mapped - s.purged, "{s}");
        assert!(s.purged <= s.free_in_bins, "{s}");
    }

    /// With runs on, the bytes of runs the program does not hold are `run_free`, blocks freed
    /// by a cache that does not own their run are `run_remote` until the owner collects them,
    /// and the identity holds throughout; when every block is freed and the caches dropped,
    /// runs hold nothing.
    #[test]
    fn stats_report_what_runs_hold() {
        let mut t = Tunables::defaults(2);
        t.runs = true;
        t.main_reserve = 256 << 20;
        let h = PrivateHeap::new(&t).expect("private heap");
        let (a, b) = (h.new_cache(), h.new_cache());
        // SAFETY: private heap driven from this thread; every pointer is live when passed.
        unsafe {
            let ps: Vec<_> = (0..4000).map(|i| h.malloc(a, 16 + i % 700)).collect();
            assert!(ps.iter().all(|p| !p.is_null()));
            let held: usize = ps.iter().map(|&p| h.usable_size(p) + 16).sum();
            let s0 = h.stats();
            assert_identity(&s0);
            assert!(s0.run_free > 0, "{s0}");
            assert_eq!(s0.run_remote, 0, "{s0}");
            assert!(s0.in_use >= held, "{s0}");
            // Every block out of a run is the program's or cached: the runs' bytes are those
            // and the runs' free bytes, exactly.
            assert!(s0.runs > 0, "{s0}");
            assert_eq!(s0.run_bytes, s0.run_free + held + s0.tcache_bytes, "{s0}");
            // Cache `b` frees half of them: its flush pushes them onto `a`'s runs.
            for &p in ps.iter().step_by(2) {
                h.free(b, p);
            }
            h.flush_cache(b);
            let s1 = h.stats();
            assert_identity(&s1);
            assert!(s1.run_remote >= held / 3, "{s1}");
            let kept: usize = ps
                .iter()
                .skip(1)
                .step_by(2)
                .map(|&p| h.usable_size(p) + 16)
                .sum();
            assert_eq!(s1.runs, s0.runs, "{s1}");
            assert_eq!(
                s1.run_bytes,
                s1.run_free + s1.run_remote + kept + s1.tcache_bytes,
                "{s1}"
            );
            // `a` frees the rest; its flush collects nothing yet (no refill), its drop does.
            for &p in ps.iter().skip(1).step_by(2) {
                h.free(a, p);
            }
            h.drop_cache(a);
            h.drop_cache(b);
            let s2 = h.stats();
            assert_identity(&s2);
            assert_eq!(s2.in_use, 0, "{s2}");
            assert_eq!(s2.run_free, 0, "{s2}");
            assert_eq!(s2.run_remote, 0, "{s2}");
            assert_eq!((s2.runs, s2.run_bytes), (0, 0), "{s2}");
            check_heap(&h).unwrap();
        }
    }

    /// Small blocks a cache gives back are reported as quick-list bytes, not as free bytes in
    /// bins; large free chunks whose pages were purged are reported as `purged`, and leave
    /// `resident` when they are, and come back into it when they are taken again.
    #[test]
    fn stats_report_quick_lists_and_purged_pages() {
        const BLOCK: usize = 512 << 10;
        const N: usize = 16;
        let mut t = Tunables::defaults(2);
        // The quick lists are the arena's mechanism for cached classes with runs off.
        t.runs = false;
        t.main_reserve = 256 << 20;
        t.mmap_threshold = 4 << 20;
        t.mmap_threshold_dynamic = false;
        let h = PrivateHeap::new(&t).expect("private heap");
        let tc = h.new_cache();
        // SAFETY: private heap driven from this thread; every pointer is live when passed.
        unsafe {
            let small: Vec<_> = (0..2000).map(|i| h.malloc(tc, 16 + i % 500)).collect();
            assert!(small.iter().all(|p| !p.is_null()));
            let large: Vec<_> = (0..N)
                .map(|_| {
                    let p = h.malloc(tc, BLOCK);
                    assert!(!p.is_null());
                    core::ptr::write_bytes(p, 0xA5, BLOCK);
                    // A guard keeps the blocks from coalescing with each other or with top.
                    assert!(!h.malloc(tc, 40 << 10).is_null());
                    p
                })
                .collect();
            let s0 = h.stats();
            assert_identity(&s0);
            assert_eq!(s0.purged, 0, "{s0}");
            for &p in &small {
                h.free(tc, p);
            }
            // The cache's flush sends its small chunks to the quick lists, whole.
            h.flush_cache(tc);
            let s1 = h.stats();
            assert_identity(&s1);
            assert!(s1.quick_bytes > 100 << 10, "{s1}");
            assert!(s1.free_in_bins < s1.quick_bytes, "{s1}");
            for &p in &large {
                h.free(tc, p);
            }
            // Purges every large free chunk (and merges the quick lists).
            h.trim(0);
            let s2 = h.stats();
            assert_identity(&s2);
            assert_eq!(s2.quick_bytes, 0, "{s2}");
            let ps = crate::os::page_size();
            assert!(s2.purged >= N * (BLOCK - 2 * ps), "{s2}");
            check_heap(&h).unwrap();
            let again: Vec<_> = (0..N).map(|_| h.malloc(tc, BLOCK)).collect();
            let s3 = h.stats();
            assert_identity(&s3);
            assert!(s3.purged < s2.purged - (N - 1) * BLOCK, "{s3}");
            for &p in &again {
                h.free(tc, p);
            }
            h.drop_cache(tc);
            check_heap(&h).unwrap();
        }
    }
}
