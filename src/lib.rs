//! # arena-malloc
//!
//! A multithreaded memory allocator for Rust services, in the ptmalloc family:
//!
//! - a **main arena** grown with the program break when the crate owns the process's C
//!   `malloc` (feature `override`, or the `LD_PRELOAD` library of the `arena-malloc-preload`
//!   package), and otherwise inside one large reserved mapping;
//! - **thread arenas** in 64 MiB, size-aligned regions (a chunk finds its arena by masking its
//!   address), capped at a multiple of the CPU count, reused when threads exit;
//! - **thread caches** in front (no lock, no atomic read-modify-write on a hit), refilled and
//!   flushed in batches;
//! - **boundary-tagged chunks** in exact small bins, an unsorted bin and sorted large bins,
//!   with coalescing, a top chunk, and direct mappings for huge blocks;
//! - checked `free`: double frees, foreign pointers and overwritten headers abort with a
//!   one-line message.
//!
//! # The global allocator
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;
//!
//! fn main() {
//!     let v = vec![0u8; 1 << 20];
//!     // Arenas, mapped and in-use bytes, free lists, top, thread caches, huge blocks.
//!     println!("{}", arena_malloc::stats());
//!     drop(v);
//!     arena_malloc::trim(0); // give free memory back to the OS now
//! }
//! ```
//!
//! # Heaps of their own
//!
//! A [`Heap`] is a separate heap, used through the [`allocator_api2`] `Allocator` trait (the
//! trait `hashbrown`, `bumpalo` and `allocator_api2`'s own collections accept on stable Rust),
//! from any thread; dropping it gives all its memory back at once:
//!
//! ```
//! use allocator_api2::vec::Vec;
//!
//! let heap = arena_malloc::Heap::new();
//! let mut names = Vec::new_in(&heap);
//! names.push(1u64);
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         let mut more = Vec::with_capacity_in(100, &heap);
//!         more.extend(0..100u64);
//!         assert_eq!(more.len(), 100);
//!     }); // freed on the other thread: a remote free into `heap`
//! });
//! println!("{}", heap.stats());
//! ```
//!
//! # Tuning
//!
//! The global heap reads its settings from `ARENA_MALLOC_*` environment variables once, at its
//! first use; see [`tuning`]. The C `mallopt` changes some of them at run time.
//!
//! # The C library
//!
//! The package `arena-malloc-preload` builds `libarena_malloc.so`, the crate as the C
//! allocator of any program (`LD_PRELOAD`); a Rust binary gets the same by enabling the
//! feature `override`. This crate alone builds only an rlib.
//!
//! The repository's `docs/design.md` follows one request through the layers.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![allow(clippy::missing_safety_doc)] // every unsafe fn has a `# Safety` section; lint kept in Cargo.toml

// The layers. They are the crate's internals: private, except with the feature `internals`,
// which the crate's own tests (through its dev-dependency on itself) and fuzz targets turn on
// to reach them (hidden from the docs, no stability promise). A crate that depends on
// arena-malloc sees only the API documented here. Each is declared once per case, not through
// a macro, so that rustfmt still finds every file.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod arena;
#[cfg(not(feature = "internals"))]
mod arena;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod asan;
#[cfg(not(feature = "internals"))]
mod asan;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod bins;
#[cfg(not(feature = "internals"))]
mod bins;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod chunk;
#[cfg(not(feature = "internals"))]
mod chunk;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod config;
#[cfg(not(feature = "internals"))]
mod config;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod heap;
#[cfg(not(feature = "internals"))]
mod heap;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod huge;
#[cfg(not(feature = "internals"))]
mod huge;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod keys;
#[cfg(not(feature = "internals"))]
mod keys;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod link;
#[cfg(not(feature = "internals"))]
mod link;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod os;
#[cfg(not(feature = "internals"))]
mod os;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod region_map;
#[cfg(not(feature = "internals"))]
mod region_map;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod run;
#[cfg(not(feature = "internals"))]
mod run;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod shared;
#[cfg(not(feature = "internals"))]
mod shared;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod size_class;
#[cfg(not(feature = "internals"))]
mod size_class;
mod stats;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod sync;
#[cfg(not(feature = "internals"))]
mod sync;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod tcache;
#[cfg(not(feature = "internals"))]
mod tcache;

// The C allocator API (`malloc`, `free`, …) with glibc's semantics, as Rust functions:
// exported unmangled with the feature `override` (public then, so that the `LD_PRELOAD`
// package can name it), and reachable with `internals`. Not part of the Rust API.
#[cfg(all(not(all(test, loom)), any(feature = "override", feature = "internals")))]
#[doc(hidden)]
pub mod capi;
#[cfg(all(
    not(all(test, loom)),
    not(any(feature = "override", feature = "internals"))
))]
#[allow(dead_code)]
mod capi;
#[cfg(all(not(all(test, loom)), feature = "internals"))]
#[doc(hidden)]
pub mod global;
#[cfg(all(not(all(test, loom)), not(feature = "internals")))]
mod global;
// The invariant checkers: tests and fuzz targets only.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod check;
#[cfg(all(test, not(feature = "internals")))]
mod check;
#[cfg(not(all(test, loom)))]
mod user_heap;

#[cfg(all(test, loom))]
mod tests;

#[cfg(all(any(test, feature = "fuzz-api"), not(all(test, loom))))]
#[doc(hidden)]
pub mod fuzz;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub use heap::PrivateHeap;
pub use stats::Stats;
#[cfg(not(all(test, loom)))]
pub use user_heap::Heap;

pub use allocator_api2;

#[doc = include_str!("../docs/tuning.md")]
pub mod tuning {}

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
