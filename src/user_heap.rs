//! First-class heaps: [`Heap`], a heap of its own that a program allocates into through the
//! `Allocator` trait and drops all at once.
//!
//! # Layout
//! A `Heap` is a handle to a heap built like the global one, in a mapping of its own: a main
//! arena in a 64 MiB reservation of its own (never the program break), thread arenas in
//! 64 MiB regions made as more threads use it at once, huge blocks in their own mappings (on a
//! list, so that the drop finds them), and a few *lanes* — thread caches that any thread may
//! use while it holds the lane:
//!
//! - an operation takes the lane its thread prefers (threads are spread over the lanes round
//!   robin) with one atomic swap, or the next free one; it never waits for a lane: when every
//!   lane is busy it goes to an arena under the arena's lock, as a thread without a cache does;
//! - a lane's cache works as a thread's does (stacks per size class, refilled and flushed in
//!   batches, frees into a busy arena through its lock-free remote list);
//! - the heap's arenas are capped at its lane count, so a heap used by one thread has one.
//!
//! Its reservations carry their own region map values (`region_map::USER_*`), so the global
//! allocator refuses its blocks (with a message) and it refuses the global heap's and other
//! heaps' blocks; when it is dropped its granules are marked `DROPPED`, so that a later free of
//! one of its blocks is named as such.

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};
use crossbeam_utils::CachePadded;

use crate::config::{Tunables, REGION_SIZE};
use crate::heap::Heap as Inner;
use crate::os;
use crate::stats::Stats;
use crate::sync::process::{AtomicBool, AtomicUsize, Ordering};
use crate::tcache::ThreadCache;

/// Most lanes (thread caches) of one heap.
const MAX_LANES: usize = 8;

/// A thread cache that any thread may use while it holds the lane.
#[derive(Debug)]
struct Lane {
    busy: AtomicBool,
    /// The cache, made at the lane's first use (null until then, or if memory ran out).
    tc: Cell<*mut ThreadCache>,
}

/// The heap's mapping: the heap and its lanes.
#[derive(Debug)]
struct Body {
    heap: Inner,
    lanes: [CachePadded<Lane>; MAX_LANES],
    /// Lanes in use: a power of two, at most `MAX_LANES`.
    nlanes: usize,
}

/// A heap of its own: allocate into it through [`Allocator`] (from any thread), and drop it to
/// give every page back to the OS at once.
///
/// ```
/// use allocator_api2::vec::Vec;
/// use arena_malloc::Heap;
///
/// let heap = Heap::new();
/// let mut v = Vec::new_in(&heap);
/// v.extend(0..1000u32);
/// assert_eq!(v.iter().sum::<u32>(), 499_500);
/// assert!(heap.stats().in_use >= 4000);
/// drop(v);
/// drop(heap); // unmaps everything the heap mapped
/// ```
///
/// # Rules
/// - `Heap` is an [`Allocator`], and so is `&Heap` (through `allocator_api2`'s impl for
///   references): a `Vec<T, &Heap>` borrows the heap, and the borrow checker keeps the heap
///   alive while it holds blocks; a `Vec<T, Heap>` owns its heap (moving a `Heap` moves only a
///   handle, never the blocks).
/// - `Heap` is `Send` and `Sync`: any thread may allocate from it and free into it; a block
///   freed on another thread than the one that allocated it is an ordinary (remote) free.
/// - Dropping the heap frees every block still in it, at once, without running any
///   destructor (the memory of a leaked `Box<T, &Heap>` is reclaimed too).
/// - A block must be freed (or grown, or shrunk) through the heap that allocated it: a block of
///   another heap, or of the global allocator, aborts the process with a message, and so does a
///   heap block given to the global allocator's `free`, even after the heap was dropped (as
///   long as the OS has not reused that address for something of the global allocator's).
/// - In a child of `fork`, use a heap only if no other thread of the parent was using it at
///   the time of the `fork` (its locks are not taken across `fork`, unlike the global heap's).
pub struct Heap {
    body: NonNull<Body>,
}

// SAFETY: all of the heap's state is atomic or behind its locks; lanes hand their cache to one
// thread at a time (Acquire/Release on `busy`).
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

static NEXT_LANE: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// This thread's preferred lane number (before masking); `usize::MAX` until first used.
    static LANE_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn lane_hint() -> usize {
    LANE_HINT
        .try_with(|h| {
            let v = h.get();
            if v != usize::MAX {
                return v;
            }
            let v = NEXT_LANE.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            h.set(v);
            v
        })
        .unwrap_or(0)
}

impl Heap {
    /// A new, empty heap. Its settings are the global heap's (the `ARENA_MALLOC_*` variables of
    /// `docs/tuning.md`), but for the arena cap: one arena per lane, with at most 8 lanes (one
    /// per CPU, rounded up to a power of two).
    ///
    /// # Panics
    /// When the OS refuses the heap's first mappings; [`Heap::try_new`] returns `None` instead.
    pub fn new() -> Heap {
        match Heap::try_new() {
            Some(h) => h,
            None => panic!("arena_malloc::Heap::new: the OS refused memory for a new heap"),
        }
    }

    /// A new, empty heap, or `None` when the OS refuses the memory for it.
    pub fn try_new() -> Option<Heap> {
        let cpus = os::cpu_count();
        let nlanes = cpus.clamp(1, MAX_LANES).next_power_of_two();
        let mut t = Tunables::from_env(cpus);
        t.use_brk = false;
        t.main_reserve = REGION_SIZE;
        t.arena_max = nlanes;
        // Frees through a lane are done at once: a lane changes threads, and its pending frees
        // would outlive the operation that made them.
        t.free_pipeline = false;
        let len = os::page_align_up(core::mem::size_of::<Body>())?;
        let m = os::map(len)?;
        let body: *mut Body = m.cast();
        // SAFETY: a fresh, writable, page-aligned mapping large enough for a Body; the heap is
        // built at its final address before anyone else sees it.
        unsafe {
            body.write(Body {
                heap: Inner::new(),
                lanes: core::array::from_fn(|_| {
                    CachePadded::new(Lane {
                        busy: AtomicBool::new(false),
                        tc: Cell::new(ptr::null_mut()),
                    })
                }),
                nlanes,
            });
            (*body).heap.mark_user();
            if !(*body).heap.init(&t) {
                (*body).heap.destroy();
                ptr::drop_in_place(body);
                os::unmap(m, len);
                return None;
            }
            Some(Heap {
                body: NonNull::new_unchecked(body),
            })
        }
    }

    #[inline(always)]
    fn body(&self) -> &Body {
        // SAFETY: valid until drop.
        unsafe { self.body.as_ref() }
    }

    /// Runs `f` with a lane's cache held (null when every lane is busy, or a cache could not
    /// be made): the thread's preferred lane, else the first free one; never waits.
    #[inline]
    fn with_cache<R>(&self, f: impl FnOnce(&Inner, *mut ThreadCache) -> R) -> R {
        let b = self.body();
        let mask = b.nlanes - 1;
        let start = lane_hint();
        for k in 0..b.nlanes {
            let lane = &b.lanes[(start + k) & mask];
            // Acquire: pairs with the Release below, so this thread sees the cache as the
            // last holder left it.
            if lane.busy.load(Ordering::Relaxed) || lane.busy.swap(true, Ordering::Acquire) {
                continue;
            }
            let mut tc = lane.tc.get();
            if tc.is_null() {
                tc = b.heap.new_cache();
                lane.tc.set(tc);
            }
            let r = f(&b.heap, tc);
            lane.busy.store(false, Ordering::Release);
            return r;
        }
        f(&b.heap, ptr::null_mut())
    }

    /// Allocates a block for `layout`; null when the size is impossible or memory ran out.
    /// `layout.size()` is not 0.
    #[inline]
    fn alloc_raw(&self, layout: Layout, zero: bool) -> *mut u8 {
        self.with_cache(|h, tc| {
            // SAFETY: the heap is initialised; tc is null or a cache this thread holds.
            unsafe {
                if layout.align() <= 16 {
                    if zero {
                        h.calloc(tc, layout.size())
                    } else {
                        h.malloc(tc, layout.size())
                    }
                } else {
                    let p = h.memalign(tc, layout.align(), layout.size());
                    if zero && !p.is_null() {
                        ptr::write_bytes(p, 0, layout.size());
                    }
                    p
                }
            }
        })
    }

    /// Figures of this heap alone (arenas, in use, free, top, lanes' caches as `threads`,
    /// huge blocks). Its `Display` is the same report as [`crate::stats`]'s.
    pub fn stats(&self) -> Stats {
        self.body().heap.stats()
    }

    /// Gives the heap's free memory back to the OS: flushes the idle lanes' caches, then trims
    /// every arena's top above `pad` bytes and purges large free chunks. Returns the bytes
    /// released.
    pub fn trim(&self, pad: usize) -> usize {
        let b = self.body();
        for lane in &b.lanes[..b.nlanes] {
            if lane.busy.load(Ordering::Relaxed) || lane.busy.swap(true, Ordering::Acquire) {
                continue;
            }
            let tc = lane.tc.get();
            if !tc.is_null() {
                // SAFETY: we hold the lane, so nobody else uses its cache.
                unsafe { b.heap.flush_cache(tc) };
            }
            lane.busy.store(false, Ordering::Release);
        }
        b.heap.trim(pad)
    }
}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.body();
        f.debug_struct("Heap")
            .field("at", &self.body)
            .field("lanes", &b.nlanes)
            .field("arenas", &b.heap.arena_count())
            .finish()
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        let b = self.body.as_ptr();
        // SAFETY: we own the heap and `&mut self` means no one else uses it; every block in it
        // dies with it (the borrow checker keeps `&Heap` allocators from outliving it, and a
        // `Heap` allocator is dropped by its collection after its blocks).
        unsafe {
            (*b).heap.destroy();
            ptr::drop_in_place(b);
            let len = os::page_align_up(core::mem::size_of::<Body>()).unwrap_or(0);
            os::unmap(b.cast(), len);
        }
    }
}

/// A dangling, aligned pointer for a zero-sized block (never given to the heap).
#[inline]
fn dangling(layout: Layout) -> NonNull<[u8]> {
    // SAFETY: an alignment is never zero.
    let p = unsafe { NonNull::new_unchecked(ptr::without_provenance_mut::<u8>(layout.align())) };
    NonNull::slice_from_raw_parts(p, 0)
}

// SAFETY: blocks are at least `layout.size()` bytes, aligned to `layout.align()`, distinct from
// every other live block, and valid until freed or until the heap is dropped (a `Heap` is a
// handle: moving it moves no block; a `&Heap` — an `Allocator` through `allocator_api2`'s
// blanket impl — cannot outlive it); any thread may free a block of the heap through it.
// Zero-sized requests get a dangling aligned pointer that `deallocate` ignores.
unsafe impl Allocator for Heap {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let p = self.alloc_raw(layout, false);
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        let p = self.alloc_raw(layout, true);
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    #[inline]
    unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        self.with_cache(|h, tc| {
            // SAFETY: caller: a block of this heap (others abort with a message in the
            // checks); tc is null or a cache we hold.
            unsafe { h.free(tc, p.as_ptr()) }
        })
    }

    unsafe fn grow(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: caller: p is a block of this heap with layout `old`; new.size() >= old.size().
        unsafe { self.resize(p, old, new, false) }
    }

    unsafe fn grow_zeroed(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as for grow.
        unsafe { self.resize(p, old, new, true) }
    }

    unsafe fn shrink(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: caller: p is a block of this heap with layout `old`; new.size() <= old.size().
        unsafe { self.resize(p, old, new, false) }
    }
}

impl Heap {
    /// `grow`/`shrink`: `realloc` in place or by moving, when the alignment allows; else a new
    /// block, a copy and a free.
    ///
    /// # Safety
    /// `p` is a live block of this heap allocated with `old` (or dangling when `old` is
    /// zero-sized).
    unsafe fn resize(
        &self,
        p: NonNull<u8>,
        old: Layout,
        new: Layout,
        zero: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return if zero {
                self.allocate_zeroed(new)
            } else {
                self.allocate(new)
            };
        }
        if new.size() == 0 {
            // SAFETY: caller.
            unsafe { self.deallocate(p, old) };
            return Ok(dangling(new));
        }
        let q = if new.align() <= 16 && old.align() <= 16 {
            self.with_cache(|h, tc| {
                // SAFETY: caller: a live block of this heap; tc is null or a cache we hold.
                unsafe { h.realloc(tc, p.as_ptr(), new.size()) }
            })
        } else {
            let q = self.alloc_raw(new, false);
            if !q.is_null() {
                // SAFETY: both blocks are live, distinct, and valid for the copied length.
                unsafe {
                    ptr::copy_nonoverlapping(p.as_ptr(), q, old.size().min(new.size()));
                    self.deallocate(p, old);
                }
            }
            q
        };
        let q = NonNull::new(q).ok_or(AllocError)?;
        if zero && new.size() > old.size() {
            // SAFETY: the block holds new.size() bytes.
            unsafe { ptr::write_bytes(q.as_ptr().add(old.size()), 0, new.size() - old.size()) };
        }
        Ok(NonNull::slice_from_raw_parts(q, new.size()))
    }
}
