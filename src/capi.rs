//! The C allocator API with glibc's semantics.
//!
//! The functions always exist under these names in this module (tests call them as
//! `arena_malloc::capi::malloc`); with the `override` feature they are also exported unmangled,
//! which makes the crate the process's C allocator (and the cdylib an `LD_PRELOAD` library).
//! Only `override` builds let the main arena own the program break.

use core::ffi::{c_int, c_void};
use core::ptr;

use crate::global;
use crate::os;

/// Returns `p`, setting `errno` to `ENOMEM` when it is null (glibc's failure convention).
#[inline]
fn or_enomem(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

#[inline]
fn set_errno(e: c_int) {
    // SAFETY: the errno location is valid for the calling thread.
    unsafe { *libc::__errno_location() = e };
}

/// `malloc(3)`: null with `ENOMEM` on failure; `malloc(0)` returns a unique minimum block.
///
/// # Safety
/// None beyond C's.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn malloc(n: usize) -> *mut c_void {
    // SAFETY: forwarded.
    or_enomem(unsafe { global::malloc(n) })
}

/// `free(3)`: null is ignored; a pointer we did not return, or one already freed, aborts with
/// a message.
///
/// # Safety
/// `p` is null or from this allocator.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { global::free(p.cast()) }
}

/// `cfree`, an old alias of `free`.
///
/// # Safety
/// As for [`free`].
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { global::free(p.cast()) }
}

/// `calloc(3)`: overflow of `n * size` gives null with `ENOMEM`.
///
/// # Safety
/// None beyond C's.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: forwarded.
    or_enomem(unsafe { global::calloc(total) })
}

/// `realloc(3)` as glibc: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and
/// returns null; on failure the old block is untouched and `errno` is `ENOMEM`.
///
/// # Safety
/// `p` is null or from this allocator.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: forwarded.
        return unsafe { malloc(n) };
    }
    if n == 0 {
        // SAFETY: forwarded.
        unsafe { global::free(p.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: forwarded.
    or_enomem(unsafe { global::realloc(p.cast(), n) })
}

/// `reallocarray(3)`: `realloc(p, n * size)` with overflow giving null and `ENOMEM`.
///
/// # Safety
/// As for [`realloc`].
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two multiple of
/// `sizeof(void *)`; `ENOMEM` on failure (`*out` untouched then).
///
/// # Safety
/// `out` is valid for a write.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, n: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: forwarded.
    let p = unsafe { global::memalign(align, n) };
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: caller: out is writable.
    unsafe { *out = p.cast() };
    0
}

/// `aligned_alloc(3)`: null with `EINVAL` unless `align` is a power of two.
///
/// # Safety
/// None beyond C's.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, n: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    // SAFETY: forwarded.
    or_enomem(unsafe { global::memalign(align, n) })
}

/// `memalign(3)`: as glibc, an alignment that is not a power of two is rounded up to one.
///
/// # Safety
/// None beyond C's.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, n: usize) -> *mut c_void {
    let align = if align.is_power_of_two() {
        align
    } else {
        match align.checked_next_power_of_two() {
            Some(a) => a,
            None => {
                set_errno(libc::EINVAL);
                return ptr::null_mut();
            }
        }
    };
    // SAFETY: forwarded.
    or_enomem(unsafe { global::memalign(align, n) })
}

/// `valloc(3)`: page-aligned.
///
/// # Safety
/// None beyond C's.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn valloc(n: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { memalign(os::page_size(), n) }
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole OS pages.
///
/// # Safety
/// None beyond C's.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn pvalloc(n: usize) -> *mut c_void {
    let Some(n) = os::page_align_up(n.max(1)) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: forwarded.
    unsafe { memalign(os::page_size(), n) }
}

/// `malloc_usable_size(3)`: 0 for null.
///
/// # Safety
/// `p` is null or a live block from this allocator.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: forwarded.
    let n = unsafe { global::usable_size(p.cast()) };
    // The caller may now use every usable byte (feature `asan`).
    crate::asan::unpoison(p.cast(), n);
    n
}

/// `malloc_trim(3)`: returns free memory to the OS, keeping `pad` bytes of top per arena;
/// 1 if anything was released.
///
/// # Safety
/// None.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn malloc_trim(pad: usize) -> c_int {
    global::ensure_init();
    global::flush_thread_cache();
    c_int::from(global::HEAP.trim(pad) > 0)
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Mallinfo2 {
    /// Non-mmapped space allocated (bytes).
    pub arena: usize,
    /// Free chunks.
    pub ordblks: usize,
    /// Free fastbin blocks (always 0: thread caches play that role).
    pub smblks: usize,
    /// Mmapped regions (huge blocks).
    pub hblks: usize,
    /// Bytes in mmapped regions.
    pub hblkhd: usize,
    /// Unused (0).
    pub usmblks: usize,
    /// Bytes in thread caches.
    pub fsmblks: usize,
    /// Bytes in use.
    pub uordblks: usize,
    /// Free bytes (bins and top).
    pub fordblks: usize,
    /// Releasable top bytes.
    pub keepcost: usize,
}

/// `mallinfo2(3)`.
///
/// # Safety
/// None.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn mallinfo2() -> Mallinfo2 {
    global::ensure_init();
    let s = global::HEAP.stats();
    Mallinfo2 {
        arena: s.arena_committed,
        ordblks: s.free_chunks,
        smblks: 0,
        hblks: s.huge_blocks,
        hblkhd: s.huge_bytes,
        usmblks: 0,
        fsmblks: s.tcache_bytes,
        uordblks: s.in_use,
        fordblks: s.free_in_bins + s.quick_bytes + s.top,
        keepcost: s.top,
    }
}

/// `malloc_stats(3)`: the report, on standard error.
///
/// # Safety
/// None.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn malloc_stats() {
    global::ensure_init();
    let s = global::HEAP.stats();
    let _ = core::fmt::write(&mut crate::stats::StderrWriter, format_args!("{s}"));
}

/// `mallopt(3)`: `M_MMAP_THRESHOLD`, `M_TRIM_THRESHOLD`, `M_ARENA_MAX` and friends; 1 when
/// the setting was accepted, 0 otherwise.
///
/// # Safety
/// None.
#[cfg_attr(feature = "override", no_mangle)]
pub unsafe extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    global::ensure_init();
    c_int::from(global::HEAP.set_option(param, value))
}
