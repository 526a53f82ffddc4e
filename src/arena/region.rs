//! Regions: size-aligned mappings that hold thread arenas.
//!
//! ```text
//! base (aligned to REGION_SIZE = 64 MiB)
//! 0      +----------------------------+
//!        | RegionHeader               |  arena pointer, previous region, committed bytes
//! 64     +----------------------------+
//!        | Arena (first region only)  |  lock, bins, top ... (about 4 KiB)
//!        +----------------------------+  <- first chunk (16-aligned)
//!        | chunks ...                 |
//!        | top                        |
//!        +----------------------------+  <- base + committed
//!        | reserved (read-only zeros) |
//! 64 MiB +----------------------------+
//! ```
//!
//! Any chunk flagged `IN_REGION` finds its header by masking its address with
//! `!(REGION_SIZE - 1)`, and its arena through the header. A process-wide bitmap (one bit per
//! 64 MiB of address space) records which granules are wholly heap reservations — regions, and
//! the main arena's aligned reservation — so that `free` can tell a heap pointer from a wild
//! one with one bit test: every byte of a reservation is readable (committed, or reserved
//! read-only, reading as zero), so reading a claimed header there never faults, and the
//! header's tag (never zero) rejects anything that is not a chunk.
//!
//! # Invariants
//! - R1: a granule's bitmap bit is set only while the whole granule is mapped, readable, and
//!   ours (a region from just after it is mapped until just before it is unmapped; the main
//!   reservation likewise).
//! - R2: `committed` only changes under the owning arena's lock.

use crate::arena::Arena;
use crate::config::{REGION_SHIFT, REGION_SIZE};
use crate::os;
use crate::sync::process::{AtomicU8, AtomicUsize, Ordering};

/// Header at the base of every region.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct RegionHeader {
    /// The arena this region belongs to.
    pub arena: *const Arena,
    /// The arena's previous region (older), or null.
    pub prev: *mut RegionHeader,
    committed: AtomicUsize,
}

/// Offset of the first chunk in a region that holds no arena struct.
pub const FIRST_CHUNK_OFFSET: usize = core::mem::size_of::<RegionHeader>();
const _: () = assert!(FIRST_CHUNK_OFFSET % 16 == 0);

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

/// Whether `addr` lies in a live reservation of a user heap (`arena_malloc::Heap`), which
/// [`contains`] leaves out: R1 holds for it too.
#[inline]
pub fn contains_user(addr: usize) -> bool {
    let k = kind(addr);
    k == USER_MAIN_RESERVE || k == USER_REGION
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

/// The header of the region holding `addr`.
///
/// # Safety
/// `addr` lies in a live region.
#[inline(always)]
pub unsafe fn header_of(p: *mut u8) -> *mut RegionHeader {
    p.map_addr(|a| a & !(REGION_SIZE - 1)).cast()
}

impl RegionHeader {
    /// Maps a new region for `arena` (whose previous region is `prev`), committing its first
    /// `commit` bytes, and registers it.
    /// `kind` is [`REGION`] or [`USER_REGION`].
    pub fn map(
        arena: *const Arena,
        prev: *mut RegionHeader,
        commit: usize,
        kind: u8,
    ) -> Option<*mut RegionHeader> {
        let base = os::map_aligned(REGION_SIZE, REGION_SIZE, false)?;
        // SAFETY: the first `commit` bytes of our fresh reservation.
        if !unsafe { os::commit(base, commit) } {
            // SAFETY: our own mapping.
            unsafe { os::unmap(base, REGION_SIZE) };
            return None;
        }
        let r: *mut RegionHeader = base.cast();
        // SAFETY: committed, aligned, ours.
        unsafe {
            r.write(RegionHeader {
                arena,
                prev,
                committed: AtomicUsize::new(commit),
            })
        };
        // SAFETY: R1: the region is mapped, readable (committed or reserved read-only) and ours;
        // the Release inside publishes the header.
        unsafe { register(base as usize, REGION_SIZE, kind) };
        Some(r)
    }

    /// Sets the arena pointer (for the first region, whose arena lives inside it).
    ///
    /// # Safety
    /// The region is not yet used by anyone else.
    pub unsafe fn set_arena(r: *mut RegionHeader, a: *const Arena) {
        // SAFETY: caller: sole user.
        unsafe { (*r).arena = a };
    }

    /// Records the committed length (bytes from the base).
    pub fn set_committed(&self, v: usize) {
        self.committed.store(v, Ordering::Relaxed);
    }

    /// Committed length.
    pub fn committed(&self) -> usize {
        self.committed.load(Ordering::Relaxed)
    }

    /// Unregisters and unmaps a region, leaving `left` ([`NOT_OURS`] or [`DROPPED`]) in the
    /// map.
    ///
    /// # Safety
    /// Nothing refers to the region's memory any more.
    pub unsafe fn unmap(r: *mut RegionHeader, left: u8) {
        // SAFETY: unmarked before the unmapping (R1); caller: no users.
        unsafe { register(r as usize, REGION_SIZE, left) };
        // SAFETY: caller: no users.
        unsafe { os::unmap(r.cast(), REGION_SIZE) };
    }
}

/// The arena owning a region chunk.
///
/// # Safety
/// `p` points into a live region.
#[inline(always)]
pub unsafe fn arena_of(p: *mut u8) -> *const Arena {
    // SAFETY: caller: live region, header initialised.
    unsafe { (*header_of(p)).arena }
}
