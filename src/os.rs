//! The platform layer: the only module that calls libc.
//!
//! Contracts shared by every verb here:
//! - addresses and lengths passed to the mapping verbs are OS-page aligned;
//! - no verb allocates, panics or unwinds (each is a thin wrapper around one or two system calls);
//! - failures come back as `None`/`false`, never as an abort — except [`fatal`], whose job it is.
//!
//! Memory states used by the arenas:
//! - *reserved*: address space mapped read-only (`PROT_READ`, `MAP_NORESERVE`), never written:
//!   not counted in RSS or commit charge, and reading it returns zeros instead of faulting, so
//!   `free` may read a claimed header anywhere in a reservation without a bound check;
//! - *committed*: readable and writable; fresh pages read as zero;
//! - *purged*: still committed, but its OS pages were dropped (`MADV_DONTNEED`): reads return zero,
//!   RSS drops at once.

use core::ffi::CStr;
use core::ptr;

use self::process::{AtomicU32, AtomicUsize, Ordering};

/// Real atomics for process-wide statics (the cached page size, the tag secret, the region
/// map), never swapped for loom's: loom's atomics cannot live in a `static`. Defined here, in
/// the bottom layer, so that `os` needs nothing above it; `sync` re-exports it as
/// `sync::process` for everyone else.
pub mod process {
    #[allow(unused_imports)] // the whole set, for every layer
    pub use core::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
}

/// Cached OS page size (0 until first read).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The OS page size, read from the kernel once.
#[inline]
pub fn page_size() -> usize {
    let p = PAGE_SIZE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions and does not allocate.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let v = if v <= 0 { 4096 } else { v as usize };
    PAGE_SIZE.store(v, Ordering::Relaxed);
    v
}

/// Rounds `n` up to a multiple of the OS page size; `None` on overflow.
#[inline]
pub fn page_align_up(n: usize) -> Option<usize> {
    let p = page_size();
    n.checked_add(p - 1).map(|v| v & !(p - 1))
}

unsafe fn mmap_raw(len: usize, prot: i32, extra: i32) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping at an address the kernel picks touches no existing
    // memory; the caller owns the result.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p.cast())
    }
}

/// Maps `len` bytes of fresh, zeroed, read-write memory. `len` must be OS-page aligned.
pub fn map(len: usize) -> Option<*mut u8> {
    // SAFETY: see `mmap_raw`.
    unsafe { mmap_raw(len, libc::PROT_READ | libc::PROT_WRITE, 0) }
}

/// Maps `len` bytes aligned to `align` (a power of two ≥ the OS page size), reserved only
/// (read-only, see the module doc) when `commit` is false, else read-write and zeroed.
pub fn map_aligned(len: usize, align: usize, commit: bool) -> Option<*mut u8> {
    let total = len.checked_add(align)?;
    let prot = if commit {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: see `mmap_raw`.
    let base = unsafe { mmap_raw(total, prot, libc::MAP_NORESERVE)? };
    let addr = base as usize;
    let aligned = (addr + align - 1) & !(align - 1);
    let lead = aligned - addr;
    let trail = total - lead - len;
    if lead > 0 {
        // SAFETY: [base, base+lead) is part of the mapping just made and nobody else uses it.
        unsafe { libc::munmap(base.cast(), lead) };
    }
    if trail > 0 {
        // SAFETY: as above, for the tail past the aligned range.
        unsafe { libc::munmap(base.wrapping_add(lead + len).cast(), trail) };
    }
    Some(base.wrapping_add(lead))
}

/// Makes reserved pages readable and writable (they read as zero the first time).
///
/// # Safety
/// `[p, p+len)` must be OS-page aligned and inside a mapping owned by the caller.
pub unsafe fn commit(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller owns the range.
    unsafe { libc::mprotect(p.cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Returns committed pages to the reserved state: RSS drops at once, later reads see zeros and
/// writes fault.
///
/// # Safety
/// As for [`commit`]; nothing may use the range afterwards until it is committed again.
pub unsafe fn decommit(p: *mut u8, len: usize) {
    // SAFETY: the caller owns the range and no longer uses its contents.
    unsafe {
        libc::madvise(p.cast(), len, libc::MADV_DONTNEED);
        libc::mprotect(p.cast(), len, libc::PROT_READ);
    }
}

/// Drops the OS pages of a committed range: RSS drops at once, the range stays usable and
/// reads as zero afterwards.
///
/// # Safety
/// As for [`commit`]; the contents of the range are lost.
pub unsafe fn purge(p: *mut u8, len: usize) {
    // SAFETY: the caller owns the range and no longer needs its contents.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// A monotonic clock in milliseconds (coarse: a few milliseconds' resolution, read without
/// a system call through the vDSO). Never fails: 0 if the clock cannot be read.
pub fn now_ms() -> u64 {
    // Miri knows only the plain monotonic clock.
    #[cfg(any(miri, not(target_os = "linux")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    #[cfg(all(not(miri), target_os = "linux"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(CLOCK, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Unmaps a range.
///
/// # Safety
/// The caller owns `[p, p+len)` and nothing refers to it afterwards.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    // Feature `asan`: no unpoisoning here: ASan's munmap interceptor clears the range's shadow
    // (checked; doing it ourselves cost 20 ms per private heap torn down).
    // SAFETY: the caller owns the range.
    unsafe { libc::munmap(p.cast(), len) };
}

/// Resizes a mapping, moving it if needed (`MREMAP_MAYMOVE`).
///
/// # Safety
/// `[p, p+old)` is a whole mapping owned by the caller; on success the old address is invalid.
pub unsafe fn remap(p: *mut u8, old: usize, new: usize) -> Option<*mut u8> {
    // Feature `asan`: mremap is not intercepted; the old range must not stay poisoned.
    crate::asan::unpoison(p, old);
    // SAFETY: the caller owns the mapping.
    let q = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE) };
    if q == libc::MAP_FAILED {
        None
    } else {
        Some(q.cast())
    }
}

/// Moves the program break by `incr` bytes through `libc::sbrk` (which keeps glibc's cached
/// break right); returns the old break, or `None` on failure.
///
/// # Safety
/// The caller holds the main arena's lock and owns the break (feature `override`).
pub unsafe fn sbrk(incr: isize) -> Option<*mut u8> {
    // SAFETY: the caller serialises every break movement made by this crate.
    let p = unsafe { libc::sbrk(incr) };
    if p as isize == -1 {
        None
    } else {
        Some(p.cast())
    }
}

/// Writes raw bytes to standard error without allocating.
pub fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// In the crate's unit tests: runs `f` and asserts that it stopped in [`fatal`] (which panics
/// there) with `want` in its message.
#[cfg(test)]
pub fn assert_fatal(want: &str, f: impl FnOnce()) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let payload = r.expect_err("not caught: the corruption went on unnoticed");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains(want), "expected {want:?} in: {msg}");
}

/// Reports an impossible state or a misuse of the allocator and aborts the process.
///
/// Writes `arena-malloc: <msg>` on one line to standard error with `write(2)`, then
/// `abort()`s. Under the crate's own unit tests it panics instead, so a test sees the message.
#[cold]
#[inline(never)]
pub fn fatal(msg: &str) -> ! {
    #[cfg(test)]
    {
        panic!("arena-malloc: {msg}");
    }
    #[cfg(not(test))]
    {
        write_stderr(b"arena-malloc: ");
        write_stderr(msg.as_bytes());
        write_stderr(b"\n");
        // SAFETY: abort never returns and needs no preconditions.
        unsafe { libc::abort() }
    }
}

/// Reads an environment variable as a decimal or `0x` hexadecimal number, with an optional
/// `k`/`m`/`g` suffix, without allocating. `None` when unset or malformed.
pub fn env_usize(name: &CStr) -> Option<usize> {
    // SAFETY: getenv reads the environment without allocating; the name is NUL-terminated.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    if v.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string that stays valid while the environment
    // is not modified, and we copy out of it at once.
    let s = unsafe { CStr::from_ptr(v) }.to_bytes();
    parse_usize(s)
}

/// Parses the number format of [`env_usize`].
pub fn parse_usize(s: &[u8]) -> Option<usize> {
    let (digits, radix) = match s {
        [b'0', b'x' | b'X', rest @ ..] => (rest, 16),
        _ => (s, 10),
    };
    let (digits, mult) = match digits.last() {
        Some(b'k' | b'K') => (&digits[..digits.len() - 1], 1usize << 10),
        Some(b'm' | b'M') => (&digits[..digits.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&digits[..digits.len() - 1], 1 << 30),
        _ => (digits, 1),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: usize = 0;
    for &b in digits {
        let d = (b as char).to_digit(radix)? as usize;
        v = v.checked_mul(radix as usize)?.checked_add(d)?;
    }
    v.checked_mul(mult)
}

/// The number of CPUs this process may run on (at least 1).
pub fn cpu_count() -> usize {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: the set is a valid out-parameter of the given size.
    let r =
        unsafe { libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r == 0 {
        // SAFETY: the set was filled in by the kernel.
        let n = unsafe { libc::CPU_COUNT(&set) };
        if n > 0 {
            return n as usize;
        }
    }
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// A random 64-bit value from the kernel's per-process `AT_RANDOM` bytes (no system call),
/// mixed with `salt` so that several callers get different values.
pub fn random_u64(salt: u64) -> u64 {
    // SAFETY: getauxval has no preconditions.
    let p = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u8;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ salt;
    if !p.is_null() {
        let mut b = [0u8; 8];
        // SAFETY: AT_RANDOM points to 16 readable bytes for the life of the process.
        unsafe { ptr::copy_nonoverlapping(p.add((salt as usize & 1) * 8), b.as_mut_ptr(), 8) };
        x ^= u64::from_ne_bytes(b).rotate_left(salt as u32 * 7);
    } else {
        x ^= &PAGE_SIZE as *const _ as u64;
    }
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Whether `len` bytes at `p` can be read, asked of the kernel so that a wild pointer
/// never faults inside the allocator.
pub fn readable(p: *const u8, len: usize) -> bool {
    let mut buf = [0u8; 32];
    let len = len.min(buf.len());
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: p as *mut _,
        iov_len: len,
    };
    // SAFETY: process_vm_readv on our own pid reads through the kernel, which reports an
    // unmapped or unreadable source as EFAULT instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n == len as isize {
        return true;
    }
    if n < 0 {
        // SAFETY: errno location is always valid for the calling thread.
        let e = unsafe { *libc::__errno_location() };
        if e == libc::ENOSYS || e == libc::EPERM {
            return mapped(p, len);
        }
    }
    false
}

/// Fallback for [`readable`] where process_vm_readv is refused: asks whether the OS pages are
/// mapped at all (cannot tell `PROT_NONE`).
fn mapped(p: *const u8, len: usize) -> bool {
    let ps = page_size();
    let start = p as usize & !(ps - 1);
    let end = (p as usize + len + ps - 1) & !(ps - 1);
    let mut vec = [0u8; 4];
    // SAFETY: mincore only inspects the range and writes one byte per OS page into `vec`,
    // which holds the at most 2 OS pages a 32-byte read can touch.
    let r = unsafe {
        libc::mincore(
            start as *mut _,
            (end - start).min(2 * ps),
            vec.as_mut_ptr().cast(),
        )
    };
    r == 0
}

/// Sleeps while `*word == val` (futex wait, private).
pub fn futex_wait(word: &AtomicU32, val: u32) {
    // SAFETY: the futex word is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one waiter of `word`.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: as for `futex_wait`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const AtomicU32,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// The kernel's id of the calling thread.
pub fn thread_id() -> usize {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as usize }
}

/// Whether the calling thread is the process's main thread (its thread id is the process id;
/// in a child of `fork`, the thread that forked). One system call each: for rare paths only.
pub fn is_main_thread() -> bool {
    // SAFETY: getpid has no preconditions and cannot fail.
    thread_id() == unsafe { libc::getpid() } as usize
}

/// Yields the CPU to another runnable thread.
pub fn yield_now() {
    // SAFETY: no preconditions.
    unsafe { libc::sched_yield() };
}

/// A hint to load the cache line at `p` (never faults; nothing on targets without one).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_numbers() {
        assert_eq!(parse_usize(b"128"), Some(128));
        assert_eq!(parse_usize(b"64k"), Some(64 << 10));
        assert_eq!(parse_usize(b"2M"), Some(2 << 20));
        assert_eq!(parse_usize(b"0x10"), Some(16));
        assert_eq!(parse_usize(b""), None);
        assert_eq!(parse_usize(b"12q"), None);
        assert_eq!(parse_usize(b"99999999999999999999999"), None);
    }

    #[test]
    fn readable_probe() {
        let x = 5u64;
        assert!(readable((&x as *const u64).cast(), 8));
        assert!(!readable(core::ptr::null(), 8));
        assert!(!readable(16 as *const u8, 8));
        let r = map_aligned(1 << 20, 1 << 20, false).unwrap();
        assert_eq!(r as usize & ((1 << 20) - 1), 0);
        // Reserved memory is read-only zeros (see the module doc).
        assert!(readable(r, 16));
        // SAFETY: r is our mapping, 16 bytes are readable.
        assert_eq!(unsafe { r.cast::<u128>().read() }, 0);
        // SAFETY: r is our mapping.
        unsafe {
            assert!(commit(r, 4096));
            assert!(readable(r, 16));
            unmap(r, 1 << 20);
        }
    }
}
