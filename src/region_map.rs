//! The region map: one byte per 64 MiB granule of the address space, saying whose the granule
//! is — not ours, the main arena's reservation, a thread arena's region, or the same two of a
//! user heap (`arena_malloc::Heap`), or a granule a dropped user heap gave back.
//!
//! `free` tells a heap pointer from a wild one with one byte test ([`contains`]): every byte of
//! a marked granule is readable (committed, or reserved read-only, reading as zero), so reading
//! a claimed header there never faults, and the header's tag (never zero) rejects anything that
//! is not a chunk. A leaf: it names only `config` and the process atomics.
//!
//! # Invariants
//! - R1: a granule is marked only while the whole granule is mapped, readable, and ours (a
//!   region from just after it is mapped and its header written until just before it is
//!   unmapped; the main reservation likewise).

use crate::config::{REGION_SHIFT, REGION_SIZE};
use crate::sync::process::{AtomicU8, Ordering};

/// Addresses the map covers: the 47-bit user address space of x86-64 and AArch64 (48-bit VA).
pub const MAP_LIMIT: usize = 1 << 47;
const MAP_LEN: usize = MAP_LIMIT >> REGION_SHIFT;
/// One byte per granule (2 MiB of zero-initialised static memory, of which only the pages
/// holding marked granules are ever touched): a byte test is one instruction shorter than a bit
/// test on the `free` path.
static REGION_MAP: [AtomicU8; MAP_LEN] = [const { AtomicU8::new(0) }; MAP_LEN];

/// Whether `addr` lies in a live heap reservation (a region or the main reservation): R1, so
/// reading there does not fault.
#[inline(always)]
pub fn contains(addr: usize) -> bool {
    // SAFETY: checked just before.
    addr < MAP_LIMIT && unsafe { contains_below_limit(addr) }
}

/// [`contains`] for an address the caller has already compared with [`MAP_LIMIT`].
///
/// # Safety
/// `addr < MAP_LIMIT`.
#[inline(always)]
pub unsafe fn contains_below_limit(addr: usize) -> bool {
    // SAFETY: caller: the index is in bounds.
    let b = unsafe { REGION_MAP.get_unchecked(addr >> REGION_SHIFT) };
    // Acquire: pairs with the Release in `register`, publishing a region's header.
    // The granules of user heaps ([`USER`] set) are negative as `i8`: one signed test.
    (b.load(Ordering::Acquire) as i8) > 0
}

/// Map value of a granule that is not ours.
pub const NOT_OURS: u8 = 0;
/// Map value of a granule of the main arena's reservation (no region header).
pub const MAIN_RESERVE: u8 = 1;
/// Map value of a region granule (its header gives the arena).
pub const REGION: u8 = 2;
/// Bit set in the map values of user heaps (`arena_malloc::Heap`): their granules are not
/// [`contains`]'s, so the global heap's `free` never takes their blocks on its fast path, and
/// its slow path names the mistake.
pub const USER: u8 = 0x80;
/// [`MAIN_RESERVE`] of a user heap.
pub const USER_MAIN_RESERVE: u8 = USER | MAIN_RESERVE;
/// [`REGION`] of a user heap.
pub const USER_REGION: u8 = USER | REGION;
/// A granule a dropped user heap gave back (not ours, nothing there is readable for sure):
/// only read to name the problem when a pointer there fails every other check.
pub const DROPPED: u8 = USER;

/// What the map says of the granule holding `addr`.
#[inline(always)]
pub fn kind(addr: usize) -> u8 {
    if addr >= MAP_LIMIT {
        return NOT_OURS;
    }
    // Acquire: pairs with the Release in `register`, publishing a region's header.
    REGION_MAP[addr >> REGION_SHIFT].load(Ordering::Acquire)
}

/// Sets the map value `kind` (or [`NOT_OURS`]) for every whole granule of the reservation
/// `[base, base+len)` (`base` a multiple of `REGION_SIZE`; a partial last granule stays unmarked).
///
/// # Safety
/// R1: marking, the reservation is mapped, readable and ours until it is unmarked.
pub unsafe fn register(base: usize, len: usize, kind: u8) {
    let mut g = base;
    while g + REGION_SIZE <= base + len && g + REGION_SIZE <= MAP_LIMIT {
        // Release: pairs with the Acquire in `contains`.
        REGION_MAP[g >> REGION_SHIFT].store(kind, Ordering::Release);
        g += REGION_SIZE;
    }
}
