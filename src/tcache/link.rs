//! The links stored inside cached and remote-pending chunks, protected like glibc's
//! safe-linking: a link is stored XORed with its own slot address (shifted right by 12) and a
//! per-process random key, and checked for alignment when read back. A write into a freed
//! chunk therefore yields a misaligned link (caught, one-line abort) far more often than a
//! pointer an attacker chose.
//!
//! Payload layout of a chunk in a cache or on a remote list: word 0 = mangled link, word 1 =
//! the mangled link XOR [`CACHE_KEY`]. Word 1 marks the chunk as freed (a second free of it
//! aborts), and because it depends on word 0 it is also a check word for the link: a write
//! after free into either word is caught with certainty (up to a 2^-64 guess of the key)
//! when the chunk is next taken off its list, not only when the damage happens to misalign
//! the link (glibc's safe-linking alone misses one such write in 16).

use crate::os::fatal;
use crate::sync::process::{AtomicUsize, Ordering};

const LINK_KEY: &AtomicUsize = &crate::chunk::KEYS.link;
const CACHE_KEY: &AtomicUsize = &crate::chunk::KEYS.cache;

/// Sets the process-wide keys; once, at start.
pub fn set_keys(link_key: usize, cache_key: usize) {
    LINK_KEY.store(link_key & !15, Ordering::Relaxed);
    CACHE_KEY.store(cache_key | 1, Ordering::Relaxed);
}

/// Stores `next` (a payload or null) as the link in payload `p`.
///
/// # Safety
/// `p` is a payload of at least 16 bytes owned by the caller.
#[inline(always)]
pub unsafe fn set(p: *mut u8, next: *mut u8) {
    let v = next.expose_provenance() ^ (p as usize >> 12) ^ LINK_KEY.load(Ordering::Relaxed);
    // Loom sees this raw write (it orders the link's publication); nothing outside loom.
    crate::sync::shadow::write(p.addr());
    // A chunk carved from poisoned memory (feature `asan`): its link words become addressable.
    crate::asan::unpoison(p, 16);
    // SAFETY: caller: writable, 16-aligned, at least 16 bytes.
    unsafe {
        p.cast::<usize>().write(v);
        p.cast::<usize>()
            .add(1)
            .write(v ^ CACHE_KEY.load(Ordering::Relaxed));
    }
}

/// Reads the link in payload `p`; aborts when it was corrupted.
///
/// # Safety
/// `p` is a payload whose link was written by [`set`].
#[inline(always)]
pub unsafe fn get(p: *mut u8) -> *mut u8 {
    // Loom checks that this read is ordered after the link's write; nothing outside loom.
    crate::sync::shadow::read(p.addr());
    // SAFETY: caller: readable, at least 16 bytes.
    let (w0, w1) = unsafe { (p.cast::<usize>().read(), p.cast::<usize>().add(1).read()) };
    let v = w0 ^ (p as usize >> 12) ^ LINK_KEY.load(Ordering::Relaxed);
    if v & 15 != 0 || w1 != w0 ^ CACHE_KEY.load(Ordering::Relaxed) {
        fatal("malloc(): corrupted free-list link in a freed chunk (write after free?)");
    }
    core::ptr::with_exposed_provenance_mut(v)
}

/// Marks payload `p` as freed.
///
/// # Safety
/// As for [`set`].
#[inline(always)]
pub unsafe fn set_key(p: *mut u8) {
    crate::asan::unpoison(p.wrapping_add(8), 8);
    // SAFETY: caller: readable and writable; word 0 holds the link written by `set`.
    unsafe {
        let w0 = p.cast::<usize>().read();
        p.cast::<usize>()
            .add(1)
            .write(w0 ^ CACHE_KEY.load(Ordering::Relaxed));
    };
}

/// Clears the freed mark of payload `p`.
///
/// # Safety
/// As for [`set`].
#[inline(always)]
pub unsafe fn clear_key(p: *mut u8) {
    crate::asan::unpoison(p.wrapping_add(8), 8);
    // SAFETY: caller: writable.
    unsafe { p.cast::<usize>().add(1).write(0) };
}

/// Whether payload `p` carries the freed mark.
///
/// # Safety
/// `p` is readable for 16 bytes.
#[inline(always)]
pub unsafe fn has_key(p: *mut u8) -> bool {
    // Word 1 of a marked chunk is `next ^ (p >> 12) ^ LINK_KEY ^ CACHE_KEY`, where `next` is a
    // 16-aligned user-space address (or null): its low 4 bits and top 7 bits are known without
    // reading word 0. Filter on those first: word 0 was often just written by the program with
    // a narrower store, and reading it back at once stalls store forwarding (it doubled the
    // cost of a malloc/free pair that writes one byte).
    const KNOWN: usize = !0 << 57 | 15;
    // SAFETY: caller: readable.
    let w1 = unsafe { p.cast::<usize>().add(1).read() };
    let expect =
        (p as usize >> 12) ^ LINK_KEY.load(Ordering::Relaxed) ^ CACHE_KEY.load(Ordering::Relaxed);
    if (w1 ^ expect) & KNOWN != 0 {
        return false;
    }
    // SAFETY: caller: readable.
    w1 ^ unsafe { p.cast::<usize>().read() } == CACHE_KEY.load(Ordering::Relaxed)
}
