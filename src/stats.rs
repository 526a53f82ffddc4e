//! Figures a service can read: [`Stats`] and its readable report.
//!
//! Accounting identity (asserted by tests and the checker):
//! `arena_committed = overhead + free_in_bins + top + (bytes in in-use chunks)`, where in-use
//! chunks include those held in thread caches (`tcache_bytes`) and those whose frees are
//! pending on remote lists (`remote_pending`); `in_use` counts only what the program holds.

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
    /// Committed memory of the arenas.
    pub arena_committed: usize,
    /// Bytes of chunks the program holds (headers included), huge blocks included.
    pub in_use: usize,
    /// Bytes in the arenas' free lists.
    pub free_in_bins: usize,
    /// Chunks in the arenas' free lists.
    pub free_chunks: usize,
    /// Bytes in the arenas' top chunks.
    pub top: usize,
    /// Arena memory outside any chunk (region headers, arena structs, fence posts).
    pub overhead: usize,
    /// Bytes held in thread caches.
    pub tcache_bytes: usize,
    /// Bytes whose frees wait on arenas' remote lists.
    pub remote_pending: usize,
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
/// from inside the allocator (`malloc_stats`).
#[derive(Debug, Default)]
pub struct StderrWriter;

impl fmt::Write for StderrWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::os::write_stderr(s.as_bytes());
        Ok(())
    }
}
