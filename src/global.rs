//! The global heap and its fronts' shared plumbing: the thread's cache slot, re-entrancy,
//! lazy initialisation, the thread-exit flush and the `fork` handlers.
//!
//! # The thread's slot
//! The slot (`ie_slot`) is a const-initialised, destructor-free thread-local pointer that is
//! never null (initial-exec TLS of our own on x86-64 Linux, `thread_local!` elsewhere): a
//! static placeholder cache (`NO_CACHE_YET`) before the thread's first slow-path call, then its
//! [`ThreadCache`] (carved from metadata mappings, never from the heap), and a second placeholder
//! (`CACHE_GONE`) once the thread-exit flush ran. A placeholder is never written: its pops miss
//! and its pushes find no room, so `malloc` and `free` use the slot without testing it and reach
//! the slow paths, which tell the placeholders apart (the heap's slow paths see null and
//! [`DEAD`] for them). Reading the slot never allocates and never panics, even during thread
//! teardown; a thread whose cache is gone uses the locked arena path.
//!
//! # Thread exit
//! The cache is registered with `pthread_setspecific` under a key made at initialisation; its
//! destructor flushes the cache to the arenas, detaches the arena (so a later thread reuses it)
//! and sets the slot to `CACHE_GONE`. Destructors that run later and allocate use the arena path.
//!
//! # Re-entrancy
//! `BUSY` is set while we call foreign code that may allocate (`pthread_setspecific`,
//! `pthread_atfork`); a nested call sees it and takes the locked arena path without a cache.
//! No foreign code is ever called while an arena or registry lock is held.

use core::cell::Cell;
use core::ptr;

use crate::config::Tunables;
use crate::heap::Heap;
use crate::sync::process::{AtomicU32, AtomicUsize, Ordering};
use crate::tcache::{RingOut, ThreadCache};

/// The process's heap.
pub static HEAP: Heap = Heap::new();

/// What the heap's slow paths are given for a thread whose cache was torn down.
pub const DEAD: *mut ThreadCache = core::ptr::dangling_mut::<u8>() as *mut ThreadCache;

/// A placeholder cache (never written: its pops miss, its pushes find no room) shared by every
/// thread's slot.
struct Placeholder(ThreadCache);
// SAFETY: a placeholder is never written (see `ThreadCache::placeholder`); its only interior
// mutability is atomics.
unsafe impl Sync for Placeholder {}

/// The slot of a thread that has not made its cache yet.
static NO_CACHE_YET: Placeholder = Placeholder(ThreadCache::placeholder());
/// The slot of a thread whose cache was torn down.
static CACHE_GONE: Placeholder = Placeholder(ThreadCache::placeholder());

#[inline(always)]
fn no_cache_yet() -> *mut ThreadCache {
    (&raw const NO_CACHE_YET.0).cast_mut()
}

#[inline(always)]
fn cache_gone() -> *mut ThreadCache {
    (&raw const CACHE_GONE.0).cast_mut()
}

// The placeholder's cache is its only field, at offset 0, so the slot's initial value (the
// static's own address, in the assembly below) is the cache's address.
const _: () = assert!(core::mem::offset_of!(Placeholder, 0) == 0);

/// The slot on x86-64 Linux: an initial-exec TLS variable of our own, defined in assembly and
/// reached with one `@GOTTPOFF` load and one `%fs`-relative load. A `thread_local!` in the C
/// library (position-independent code in a shared object) takes the general-dynamic model, a
/// call to `__tls_get_addr` on every `malloc` and `free`; stable Rust cannot ask for another
/// model, so the slot is written in assembly. In an executable the linker relaxes the load to
/// the local-exec form. A shared object with initial-exec TLS takes room in glibc's static TLS
/// surplus when it is `dlopen`ed: 8 bytes here, well inside the surplus glibc keeps for this
/// (`glibc.rtld.optional_static_tls`, 512 bytes by default); if it ran out, `dlopen` fails with
/// glibc's "cannot allocate memory in static TLS block".
#[cfg(all(
    target_arch = "x86_64",
    target_os = "linux",
    not(miri),
    not(all(test, loom))
))]
mod ie_slot {
    use super::ThreadCache;

    // `.tdata`, initialised with the address of the first placeholder (relocated by the loader
    // in the TLS image, before any thread copies it). The symbol is hidden (never exported
    // from the C library) and carries the crate's version, so two versions of the crate in one
    // program do not collide.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl __arena_malloc_0_1_slot",
        ".hidden __arena_malloc_0_1_slot",
        ".type __arena_malloc_0_1_slot,@object",
        ".size __arena_malloc_0_1_slot,8",
        "__arena_malloc_0_1_slot:",
        ".quad {placeholder}",
        ".popsection",
        placeholder = sym super::NO_CACHE_YET,
    );

    /// The slot's value.
    #[inline(always)]
    pub fn get() -> *mut ThreadCache {
        let p: *mut ThreadCache;
        // SAFETY: the symbol is our 8-byte TLS variable; the GOT entry holds its offset from
        // the thread pointer (%fs base), so the second load reads this thread's copy, which is
        // always initialised (from the TLS image). Reading it has no other effect.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + __arena_malloc_0_1_slot@GOTTPOFF]",
                "mov {p}, qword ptr fs:[{p}]",
                p = out(reg) p,
                options(nostack, preserves_flags, readonly, pure),
            )
        };
        p
    }

    /// Sets the slot.
    #[inline(always)]
    pub fn set(v: *mut ThreadCache) {
        // SAFETY: as in `get`; the store writes only this thread's copy of the variable.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + __arena_malloc_0_1_slot@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {v}",
                t = out(reg) _,
                v = in(reg) v,
                options(nostack, preserves_flags),
            )
        };
    }
}

/// The slot elsewhere (and under loom and Miri): a const-initialised `thread_local!`.
#[cfg(not(all(
    target_arch = "x86_64",
    target_os = "linux",
    not(miri),
    not(all(test, loom))
)))]
mod ie_slot {
    use super::ThreadCache;
    use core::cell::Cell;

    crate::sync::thread_local! {
        static SLOT: Cell<*mut ThreadCache> =
            const { Cell::new((&raw const super::NO_CACHE_YET.0).cast_mut()) };
    }

    /// The slot's value.
    #[inline(always)]
    pub fn get() -> *mut ThreadCache {
        SLOT.with(Cell::get)
    }

    /// Sets the slot.
    #[inline(always)]
    pub fn set(v: *mut ThreadCache) {
        SLOT.with(|s| s.set(v))
    }
}

crate::sync::thread_local! {
    /// Set while we call foreign code that may allocate; only the slow paths read it.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

const UNINIT: u32 = 0;
const RUNNING: u32 = 1;
const READY: u32 = 2;
static INIT: AtomicU32 = AtomicU32::new(UNINIT);
static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The slot as it is: a cache or a placeholder.
#[inline(always)]
fn slot_raw() -> *mut ThreadCache {
    ie_slot::get()
}

/// The slot as the heap's slow paths take it: a cache, null (none yet) or [`DEAD`].
#[inline(always)]
fn slot() -> *mut ThreadCache {
    let tc = slot_raw();
    if tc == no_cache_yet() {
        ptr::null_mut()
    } else if tc == cache_gone() {
        DEAD
    } else {
        tc
    }
}

/// This thread's cache pointer as it stands (null, [`DEAD`], or a cache).
#[cfg(any(test, feature = "internals"))]
pub fn current_cache() -> *mut ThreadCache {
    slot()
}

/// Initialises the global heap if needed.
#[inline(always)]
pub fn ensure_init() {
    if INIT.load(Ordering::Acquire) != READY {
        init_slow();
    }
}

#[cold]
#[inline(never)]
fn init_slow() {
    if INIT
        .compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire)
        .is_ok()
    {
        let mut t = Tunables::from_env(crate::os::cpu_count());
        t.use_brk = cfg!(feature = "override");
        // SAFETY: first and only initialisation; the static never moves.
        unsafe { HEAP.init(&t) };
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: pthread_key_create does not allocate in glibc; the destructor is a plain fn.
        if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
            KEY.store(key as usize, Ordering::Relaxed);
        }
        // Release: pairs with the Acquire in `ensure_init`.
        INIT.store(READY, Ordering::Release);
        BUSY.with(|b| b.set(true));
        // SAFETY: the handlers are plain functions that never unwind; registration may
        // allocate, which BUSY routes to the arena path.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
        // SAFETY: as above: a plain function; registration may allocate (BUSY).
        unsafe { libc::atexit(at_exit) };
        BUSY.with(|b| b.set(false));
    } else {
        while INIT.load(Ordering::Acquire) != READY {
            crate::os::yield_now();
        }
    }
}

/// This thread's cache, made on first use; null or [`DEAD`] when there is none to use.
#[cold]
#[inline(never)]
pub fn cache_slow() -> *mut ThreadCache {
    ensure_init();
    let tc = slot();
    if !tc.is_null() || BUSY.with(Cell::get) {
        return tc;
    }
    let tc = HEAP.new_cache();
    if tc.is_null() {
        return tc;
    }
    ie_slot::set(tc);
    let key = KEY.load(Ordering::Relaxed);
    if key != usize::MAX {
        BUSY.with(|b| b.set(true));
        // SAFETY: the key is valid; glibc may allocate the key's second-level block, which
        // BUSY routes to the arena path.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, tc.cast()) };
        BUSY.with(|b| b.set(false));
    }
    tc
}

/// At `exit`: the exiting thread's pipelined frees are done (their checks may abort), since
/// the main thread runs no thread-exit destructor.
extern "C" fn at_exit() {
    let tc = slot();
    if tc as usize > 1 {
        // SAFETY: our own cache.
        unsafe { HEAP.drain_ring(tc) };
    }
}

unsafe extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let tc: *mut ThreadCache = arg.cast();
    if tc.is_null() {
        return;
    }
    ie_slot::set(cache_gone());
    // SAFETY: the thread is exiting; nothing else uses its cache.
    unsafe { HEAP.drop_cache(tc) };
}

// --- the C-shaped operations every front uses ---

/// `malloc`: `n` bytes, 16-byte aligned; null when impossible or out of memory.
///
/// # Safety
/// None beyond the C contract; callable from any thread at any time.
#[inline(always)]
pub unsafe fn malloc(n: usize) -> *mut u8 {
    // SAFETY: our own cache or a placeholder (whose pop misses).
    let p = unsafe { (*slot_raw()).pop_request(n) };
    if !p.is_null() {
        // SAFETY: a block we just took from our cache (feature `asan`; empty otherwise).
        unsafe { HEAP.asan_alloc(p, n) };
        return p;
    }
    // SAFETY: forwarded.
    unsafe { malloc_slow(n) }
}

#[cold]
#[inline(never)]
unsafe fn malloc_slow(n: usize) -> *mut u8 {
    let tc = cache_slow();
    // SAFETY: heap initialised by cache_slow; tc is ours or none.
    unsafe { HEAP.malloc(tc, n) }
}

/// `free`.
///
/// # Safety
/// `p` is null or a live block from this allocator (violations abort with a message).
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let tc = slot_raw();
    // While the thread's frees overflow its cache, they run pipelined: this call frees the
    // pointer given `RING` (4) calls earlier, whose header its call started loading. Pointers
    // outside the heap's reservations (huge blocks: their unmapping should not wait) are not.
    // SAFETY: our own cache or a placeholder (never pipelined).
    let p = unsafe {
        if (*tc).ring_on() {
            match (*tc).ring_swap(p) {
                RingOut::Pending => return,
                RingOut::Free(q) => q,
                RingOut::Last(q) => return ring_last(tc, q),
                RingOut::Twice => return freed_twice(),
                RingOut::Now => p,
            }
        } else {
            p
        }
    };
    // SAFETY: our own cache or a placeholder (whose push fails); before the heap's
    // initialisation no pointer is ours, and the slow path's checks abort for it as they should.
    if !unsafe { HEAP.free_fast(tc, p) } {
        // SAFETY: forwarded.
        unsafe { free_slow(p) }
    }
}

/// The pipelined `free` turned itself off: frees `q` and everything still in the ring.
#[cold]
#[inline(never)]
unsafe fn ring_last(tc: *mut ThreadCache, q: *mut u8) {
    // SAFETY: our own cache (a placeholder is never pipelined); q was freed by this thread.
    unsafe {
        if !q.is_null() {
            free(q);
        }
        HEAP.drain_ring(tc);
    }
}

#[cold]
#[inline(never)]
fn freed_twice() {
    crate::os::fatal("free(): double free detected (freed again while its first free was pending)");
}

#[cold]
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    if p.is_null() {
        return;
    }
    let tc = cache_slow();
    // SAFETY: heap initialised.
    unsafe { HEAP.free(tc, p) }
}

/// `calloc` of `n` bytes (already multiplied and checked).
///
/// # Safety
/// As for [`malloc`].
pub unsafe fn calloc(n: usize) -> *mut u8 {
    let tc = cache_slow_if_needed();
    // SAFETY: heap initialised.
    unsafe { HEAP.calloc(tc, n) }
}

/// `realloc` of a non-null block to `n` bytes; null (old block kept) on failure.
///
/// # Safety
/// As for [`free`].
pub unsafe fn realloc(p: *mut u8, n: usize) -> *mut u8 {
    let tc = cache_slow_if_needed();
    // SAFETY: heap initialised.
    unsafe { HEAP.realloc(tc, p, n) }
}

/// `memalign` with a power-of-two `align`.
///
/// # Safety
/// As for [`malloc`].
pub unsafe fn memalign(align: usize, n: usize) -> *mut u8 {
    let tc = cache_slow_if_needed();
    // SAFETY: heap initialised.
    unsafe { HEAP.memalign(tc, align, n) }
}

/// `malloc_usable_size` of a non-null block.
///
/// # Safety
/// As for [`free`].
pub unsafe fn usable_size(p: *mut u8) -> usize {
    ensure_init();
    // SAFETY: heap initialised.
    unsafe { HEAP.usable_size(p) }
}

#[inline(always)]
fn cache_slow_if_needed() -> *mut ThreadCache {
    let tc = slot();
    if tc as usize > 1 {
        tc
    } else {
        cache_slow()
    }
}

/// Flushes this thread's cache back to the arenas (its lists stay usable), after doing the
/// frees pending in its ring.
pub fn flush_thread_cache() {
    let tc = slot();
    if tc as usize > 1 {
        // SAFETY: our own cache.
        unsafe {
            HEAP.drain_ring(tc);
            HEAP.flush_cache(tc)
        };
    }
}

// --- fork ---

extern "C" fn fork_prepare() {
    HEAP.registry_raw_lock().acquire();
    for i in 0..HEAP.arena_count() {
        HEAP.arena(i).raw_lock().acquire();
    }
}

extern "C" fn fork_parent() {
    for i in (0..HEAP.arena_count()).rev() {
        HEAP.arena(i).raw_lock().release();
    }
    HEAP.registry_raw_lock().release();
}

extern "C" fn fork_child() {
    // SAFETY: the child has one thread, this one; the locks' holders (us, in the parent) are
    // gone, and no one waits on them.
    unsafe {
        for i in (0..HEAP.arena_count()).rev() {
            HEAP.arena(i).raw_lock().force_unlock();
        }
        HEAP.registry_raw_lock().force_unlock();
    }
    // Caches of threads that do not exist in the child: give their chunks back.
    let me = slot();
    loop {
        let mut orphan: *mut ThreadCache = ptr::null_mut();
        HEAP.for_each_cache(|tc| {
            if tc != me && orphan.is_null() {
                orphan = tc;
            }
        });
        if orphan.is_null() {
            break;
        }
        // SAFETY: its thread does not exist in the child.
        unsafe { HEAP.drop_orphaned_cache(orphan) };
    }
}
