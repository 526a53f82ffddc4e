//! # arena-malloc
//!
//! A ptmalloc-style multithreaded memory allocator, written in Rust:
//!
//! - a **main arena** grown with the program break when the crate owns the process's C
//!   `malloc` (feature `override`, or the cdylib for `LD_PRELOAD`), and otherwise inside one
//!   large reserved mapping;
//! - **thread arenas** in 64 MiB, size-aligned regions (a chunk finds its arena by masking its
//!   address), capped at a multiple of the CPU count, reused when threads exit;
//! - **thread caches** in front (no lock, no atomic read-modify-write on a hit), refilled and
//!   flushed in batches;
//! - **boundary-tagged chunks** in exact small bins, an unsorted bin and sorted large bins,
//!   with coalescing, a top chunk, and direct mappings for huge blocks;
//! - checked `free`: double frees, foreign pointers and overwritten headers abort with a
//!   one-line message.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;
//! ```
//!
//! See `docs/design.md` for a request's path through the layers.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)] // every unsafe fn has a `# Safety` section; lint kept in Cargo.toml

pub mod arena;
pub mod asan;
pub mod bins;
pub mod check;
pub mod chunk;
pub mod config;
pub mod heap;
pub mod huge;
pub mod os;
pub mod size_class;
pub mod stats;
pub mod sync;
pub mod tcache;

#[cfg(not(all(test, loom)))]
pub mod capi;
#[cfg(not(all(test, loom)))]
pub mod global;

#[cfg(all(test, loom))]
mod tests;

#[cfg(all(any(test, feature = "fuzz-api"), not(all(test, loom))))]
#[doc(hidden)]
pub mod fuzz;

pub use heap::PrivateHeap;
pub use stats::Stats;

#[cfg(not(all(test, loom)))]
mod front {
    use core::alloc::{GlobalAlloc, Layout};
    use core::ptr;

    use crate::global;

    /// The allocator, for `#[global_allocator]`.
    ///
    /// ```no_run
    /// #[global_allocator]
    /// static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;
    /// ```
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ArenaMalloc;

    // SAFETY: every block returned is at least `layout.size()` bytes, aligned to
    // `layout.align()`, and distinct from every other live block; `dealloc` and `realloc` accept
    // exactly the blocks we returned.
    unsafe impl GlobalAlloc for ArenaMalloc {
        #[inline(always)]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= 16 {
                // SAFETY: forwarded.
                unsafe { global::malloc(layout.size()) }
            } else {
                // SAFETY: forwarded; the alignment is a power of two (Layout invariant).
                unsafe { global::memalign(layout.align(), layout.size()) }
            }
        }

        #[inline(always)]
        unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
            // SAFETY: caller: p came from this allocator.
            unsafe { global::free(p) }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= 16 {
                // SAFETY: forwarded; fresh OS memory is not cleared again.
                unsafe { global::calloc(layout.size()) }
            } else {
                // SAFETY: forwarded.
                let p = unsafe { global::memalign(layout.align(), layout.size()) };
                if !p.is_null() {
                    // SAFETY: p has layout.size() writable bytes.
                    unsafe { ptr::write_bytes(p, 0, layout.size()) };
                }
                p
            }
        }

        #[inline]
        unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= 16 {
                // SAFETY: caller: p came from us with this layout; new_size > 0.
                return unsafe { global::realloc(p, new_size) };
            }
            // SAFETY: forwarded.
            let q = unsafe { global::memalign(layout.align(), new_size) };
            if !q.is_null() {
                // SAFETY: both blocks are valid for the copied length and distinct.
                unsafe {
                    ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    global::free(p);
                }
            }
            q
        }
    }

    /// The global heap's figures (initialises the heap if nothing was allocated yet).
    pub fn stats() -> crate::Stats {
        global::ensure_init();
        global::HEAP.stats()
    }

    /// Flushes the calling thread's cache and returns free memory to the OS, keeping `pad`
    /// bytes of top per arena. Returns the bytes released.
    pub fn trim(pad: usize) -> usize {
        global::ensure_init();
        global::flush_thread_cache();
        global::HEAP.trim(pad)
    }

    /// Flushes the calling thread's cache back to the arenas.
    pub fn flush_thread_cache() {
        global::flush_thread_cache();
    }
}

#[cfg(not(all(test, loom)))]
pub use front::{flush_thread_cache, stats, trim, ArenaMalloc};
