//! Huge blocks: requests at or above the mmap threshold get a mapping of their own.
//!
//! ```text
//! mapping start (OS-page aligned)
//! |<-- offset -->|<--------------------- size ---------------------->|
//! +--------------+-----------+-----------+--------------------------+
//! | (alignment   | prev_size | head      | payload ...              |
//! |  slack)      | = offset  | IS_MMAPPED|                          |
//! +--------------+-----------+-----------+--------------------------+
//! ```
//! The offset is non-zero only for alignments above 16 bytes. Freeing unmaps the whole
//! mapping; `realloc` of an unaligned block uses `mremap`, which may move it without copying.
//! The threshold adapts upward (as glibc's does): freeing a huge block larger than the
//! threshold (up to [`MMAP_THRESHOLD_MAX`]) raises the threshold to its size and the trim
//! threshold to twice that, so programs that churn such blocks keep them in the arenas.

use crate::chunk::{Chunk, HEADER, IS_MMAPPED};
use crate::config::MMAP_THRESHOLD_MAX;
use crate::os;
use crate::shared::Shared;
use crate::sync::process::Ordering;

/// Maps a huge block for `n` bytes aligned to `align` (a power of two); null on failure.
pub fn alloc(sh: &Shared, n: usize, align: usize) -> *mut u8 {
    let ps = os::page_size();
    let slack = if align > HEADER { align } else { 0 };
    let Some(len) = n.checked_add(HEADER + slack).and_then(os::page_align_up) else {
        return core::ptr::null_mut();
    };
    if len > isize::MAX as usize {
        return core::ptr::null_mut();
    }
    let Some(base) = os::map(len) else {
        return core::ptr::null_mut();
    };
    let mut off = 0;
    if slack > 0 {
        let p = base as usize + HEADER;
        off = ((p + align - 1) & !(align - 1)) - p;
    }
    debug_assert!(off + HEADER + n <= len && off < ps.max(align));
    // SAFETY: the chunk header lies inside the fresh mapping.
    unsafe {
        let c = Chunk::at(base.add(off));
        c.set_prev_size(off);
        c.set_head(len - off, IS_MMAPPED);
        sh.huge_count.fetch_add(1, Ordering::Relaxed);
        sh.huge_bytes.fetch_add(len, Ordering::Relaxed);
        c.payload()
    }
}

/// Checks that a chunk flagged `IS_MMAPPED` describes a plausible mapping; aborts otherwise.
///
/// # Safety
/// The chunk's header is readable and its tag was checked.
pub unsafe fn check(c: Chunk) {
    let ps = os::page_size();
    // SAFETY: caller: readable.
    let (off, size) = unsafe { (c.prev_size(), c.size()) };
    let base = c.addr().wrapping_sub(off);
    if off > c.addr() || base & (ps - 1) != 0 || (off + size) & (ps - 1) != 0 {
        os::fatal("free(): invalid pointer (corrupted huge block header)");
    }
}

/// Unmaps a huge block and adapts the thresholds.
///
/// # Safety
/// `c` is a live huge chunk owned by the caller, checked with [`check`].
pub unsafe fn free(sh: &Shared, c: Chunk) {
    // SAFETY: caller.
    let (off, size) = unsafe { (c.prev_size(), c.size()) };
    let len = off + size;
    if sh.mmap_dynamic.load(Ordering::Relaxed)
        && len > sh.mmap_threshold.load(Ordering::Relaxed)
        && len <= MMAP_THRESHOLD_MAX
    {
        sh.mmap_threshold.store(len, Ordering::Relaxed);
        sh.trim_threshold.store(2 * len, Ordering::Relaxed);
    }
    sh.huge_count.fetch_sub(1, Ordering::Relaxed);
    sh.huge_bytes.fetch_sub(len, Ordering::Relaxed);
    // SAFETY: caller: the whole mapping is ours.
    unsafe { os::unmap(c.ptr().wrapping_sub(off), len) };
}

/// Resizes a huge block with `mremap`; null when it cannot (the caller copies instead).
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(sh: &Shared, c: Chunk, n: usize) -> *mut u8 {
    // SAFETY: caller.
    let (off, size) = unsafe { (c.prev_size(), c.size()) };
    if off != 0 {
        return core::ptr::null_mut();
    }
    let Some(new_len) = n.checked_add(HEADER).and_then(os::page_align_up) else {
        return core::ptr::null_mut();
    };
    if new_len == size {
        return c.payload();
    }
    // SAFETY: caller: the mapping is ours; on success the old address is dead.
    let Some(q) = (unsafe { os::remap(c.ptr(), size, new_len) }) else {
        return core::ptr::null_mut();
    };
    sh.huge_bytes.fetch_add(new_len, Ordering::Relaxed);
    sh.huge_bytes.fetch_sub(size, Ordering::Relaxed);
    // SAFETY: the header moved with the mapping.
    unsafe {
        let nc = Chunk::at(q);
        nc.set_head(new_len, IS_MMAPPED);
        nc.payload()
    }
}

/// Usable bytes of a huge chunk.
///
/// # Safety
/// As for [`free`].
pub unsafe fn usable(c: Chunk) -> usize {
    // SAFETY: caller.
    unsafe { c.size() - HEADER }
}
