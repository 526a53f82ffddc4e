//! The sync facade: the only module that names `std::sync` or `loom`, and with `os` (whose
//! [`process`] atomics it re-exports) the only one that names `core::sync::atomic`.
//!
//! Everything the allocator's concurrent protocols use — atomics, `Ordering`, `fence`, an
//! the non-allocating [`Mutex`], [`spin_hint`] — comes from
//! here, so that `cfg(all(test, loom))` swaps them for loom's model-checked versions. A
//! downstream crate building with `--cfg loom` does not change our types (the switch also
//! needs our own `cfg(test)`).
//!
//! [`process`] re-exports the real atomics for process-wide statics that loom never needs to see
//! (the cached page size, the tag secret): loom's atomics cannot live in a `static`.
//!
//! # The lock
//! [`RawLock`] is a three-state futex lock (0 free, 1 held, 2 held with sleepers). It never
//! allocates and never parks through `parking_lot_core` (whose parking allocates through the
//! global allocator, which is us). It implements `lock_api::RawMutex`, so the arena and
//! registry locks are `parking_lot::lock_api::Mutex<RawLock, T>`. Under loom the same state
//! machine runs on loom's atomics, over a model of the futex (`Futex`: compare-and-sleep as one
//! step, wake one sleeper), so that loom finds a lost wake-up as a deadlock.

/// Real atomics for process-wide statics, never swapped for loom's (defined in `os`, the
/// bottom layer, which uses them itself and must not depend on this module).
pub use crate::os::process;

#[cfg(not(all(test, loom)))]
#[allow(unused_imports)] // the facade offers the whole set
pub use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicUsize, Ordering,
};
#[cfg(all(test, loom))]
pub use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicUsize, Ordering,
};

// Thread-locals: std's (const-initialised, destructor-free slots in `global`) or loom's.
#[cfg(not(all(test, loom)))]
pub use std::thread_local;

#[cfg(all(test, loom))]
pub use loom::thread_local;

/// Planted bugs for the loom models (`docs/loom.md`, "Mutations"): the real code asks
/// [`mutation::on`] at each planted site. Under loom the test sets the mutation it checks
/// (`mutation::set`), for its own OS thread only: loom runs all of a model's threads as
/// coroutines on the thread that called the model, so a model run by another test on another
/// thread never sees it. In every other build `on` is a constant `false`, and each site
/// compiles to the real code alone.
pub mod mutation {
    #[cfg(all(test, loom))]
    std::thread_local! {
        static ACTIVE: core::cell::Cell<&'static str> = const { core::cell::Cell::new("") };
    }

    /// Plants `name` (or none: `""`) for the models this thread runs next.
    #[cfg(all(test, loom))]
    pub fn set(name: &'static str) {
        ACTIVE.with(|a| a.set(name));
    }

    /// Whether the planted bug `name` is active.
    #[cfg(all(test, loom))]
    #[inline]
    pub fn on(name: &str) -> bool {
        ACTIVE.with(|a| a.get() == name)
    }

    /// Whether the planted bug `name` is active: never, outside the loom models.
    #[cfg(not(all(test, loom)))]
    #[inline(always)]
    pub const fn on(_name: &str) -> bool {
        false
    }
}

/// Hint for a spin-wait loop; under loom it yields to the model's scheduler.
#[inline]
pub fn spin_hint() {
    #[cfg(not(all(test, loom)))]
    core::hint::spin_loop();
    #[cfg(all(test, loom))]
    loom::thread::yield_now();
}

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;

/// Spins before sleeping. Under loom every spin is a scheduling point that only lengthens the
/// explored paths, so one is enough there (the state machine is the same).
#[cfg(not(all(test, loom)))]
pub(crate) const SPINS: u32 = 100;
#[cfg(all(test, loom))]
pub(crate) const SPINS: u32 = 1;

/// A futex-based raw lock that never allocates.
#[derive(Debug)]
pub struct RawLock {
    state: AtomicU32,
    /// Under loom, the kernel's side of the futex word.
    #[cfg(all(test, loom))]
    futex: Futex,
}

/// Under loom: the kernel's side of a futex word, so that a lost wake-up leaves a sleeper
/// asleep and loom reports the deadlock. `wait` compares the word and goes to sleep as one
/// step, as the kernel does under its hash-bucket lock (here a loom mutex); `wake` wakes one
/// sleeper, if any. A sleeper never returns without a wake (the real one may, spuriously:
/// the lock loops on its state either way).
#[cfg(all(test, loom))]
#[derive(Debug)]
struct Futex {
    wakes: loom::sync::Mutex<u64>,
    sleepers: loom::sync::Condvar,
}

#[cfg(all(test, loom))]
impl Futex {
    fn new() -> Self {
        Futex {
            wakes: loom::sync::Mutex::new(0),
            sleepers: loom::sync::Condvar::new(),
        }
    }

    /// Sleeps until the next `wake` if `word` still holds `val`.
    fn wait(&self, word: &AtomicU32, val: u32) {
        let mut g = self.wakes.lock().unwrap();
        if word.load(Ordering::SeqCst) != val {
            return;
        }
        let seen = *g;
        while *g == seen {
            g = self.sleepers.wait(g).unwrap();
        }
    }

    /// Wakes one sleeper.
    fn wake(&self) {
        *self.wakes.lock().unwrap() += 1;
        self.sleepers.notify_one();
    }
}

impl Default for RawLock {
    fn default() -> Self {
        RawLock::new()
    }
}

impl RawLock {
    /// A new, unlocked lock.
    #[cfg(not(all(test, loom)))]
    pub const fn new() -> Self {
        RawLock {
            state: AtomicU32::new(FREE),
        }
    }
    /// A new, unlocked lock.
    #[cfg(all(test, loom))]
    pub fn new() -> Self {
        RawLock {
            state: AtomicU32::new(FREE),
            futex: Futex::new(),
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        // Acquire: pairs with the Release in `release`, so the holder sees the previous
        // holder's writes.
        // Mutation (loom check, see docs/loom.md): the fast path forgets to acquire.
        let ord = if mutation::on("lock_acquire_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Acquire
        };
        self.state
            .compare_exchange(FREE, HELD, ord, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, spinning briefly, then sleeping.
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            self.acquire_slow();
        }
    }

    /// Spins while the lock is held without sleepers; returns the last state seen.
    fn spin(&self) -> u32 {
        let mut spins = 0u32;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s != HELD || spins >= SPINS {
                return s;
            }
            spins += 1;
            spin_hint();
        }
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self) {
        let mut s = self.spin();
        if s == FREE && self.try_acquire() {
            return;
        }
        loop {
            // Once anyone may be sleeping, take the lock only as CONTENDED, so that our own
            // release wakes the next sleeper (taking it as HELD would lose that wake-up).
            // Acquire: as in `try_acquire`.
            if s != CONTENDED && self.state.swap(CONTENDED, Ordering::Acquire) == FREE {
                return;
            }
            self.sleep();
            s = self.spin();
            // Mutation (loom check): a woken sleeper takes a free lock as HELD, so that its
            // release wakes none of the others still asleep.
            if s == FREE && mutation::on("lock_woken_takes_held") && self.try_acquire() {
                return;
            }
        }
    }

    #[cfg(not(all(test, loom)))]
    fn sleep(&self) {
        crate::os::futex_wait(&self.state, CONTENDED);
    }
    #[cfg(all(test, loom))]
    fn sleep(&self) {
        self.futex.wait(&self.state, CONTENDED);
    }

    /// Releases the lock.
    #[inline]
    pub fn release(&self) {
        // Release: pairs with the Acquire of the next `try_acquire`/`acquire`, publishing
        // everything written under the lock.
        // Mutation (loom check): the release forgets to publish.
        let ord = if mutation::on("lock_release_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        let prev = self.state.swap(FREE, ord);
        // Mutation (loom check): a sleeper is left asleep.
        if prev == CONTENDED && !mutation::on("lock_wake_dropped") {
            self.wake();
        }
    }

    #[cfg(not(all(test, loom)))]
    fn wake(&self) {
        crate::os::futex_wake(&self.state);
    }
    #[cfg(all(test, loom))]
    fn wake(&self) {
        self.futex.wake();
    }

    /// Whether the lock is held by someone (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != FREE
    }

    /// Forces the lock free. Used only in a child after `fork`, where the holder no longer
    /// exists.
    ///
    /// # Safety
    /// No thread may hold or be waiting for the lock.
    pub unsafe fn force_unlock(&self) {
        self.state.store(FREE, Ordering::Relaxed);
    }
}

#[cfg(not(all(test, loom)))]
// SAFETY: `try_acquire`/`acquire` give exclusive ownership until `release`, with
// Acquire/Release ordering, which is what `RawMutex` requires.
unsafe impl lock_api::RawMutex for RawLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawLock = RawLock::new();
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        self.acquire();
    }
    #[inline]
    fn try_lock(&self) -> bool {
        self.try_acquire()
    }
    #[inline]
    unsafe fn unlock(&self) {
        self.release();
    }
    fn is_locked(&self) -> bool {
        RawLock::is_locked(self)
    }
}

#[cfg(not(all(test, loom)))]
use parking_lot::lock_api;

/// The allocator's mutex: `parking_lot::lock_api::Mutex` over [`RawLock`].
#[cfg(not(all(test, loom)))]
pub type Mutex<T> = lock_api::Mutex<RawLock, T>;
/// Guard of [`Mutex`].
#[cfg(not(all(test, loom)))]
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawLock, T>;

#[cfg(all(test, loom))]
pub use loom_mutex::{Mutex, MutexGuard};

#[cfg(all(test, loom))]
mod loom_mutex {
    use super::RawLock;
    use loom::cell::{MutPtr, UnsafeCell};

    /// Loom stand-in for the allocator's mutex: the same [`RawLock`] state machine on loom
    /// atomics, with the data in a loom `UnsafeCell` so that the model sees every access.
    #[derive(Debug)]
    pub struct Mutex<T> {
        raw: RawLock,
        data: UnsafeCell<T>,
    }
    // SAFETY: the lock serialises access to `data`.
    unsafe impl<T: Send> Sync for Mutex<T> {}
    // SAFETY: owning the mutex owns the data.
    unsafe impl<T: Send> Send for Mutex<T> {}

    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Mutex {
                raw: RawLock::new(),
                data: UnsafeCell::new(v),
            }
        }
        // `track_caller`: loom reports the caller's line for an access the lock failed to order.
        #[track_caller]
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.raw.acquire();
            MutexGuard {
                m: self,
                ptr: core::mem::ManuallyDrop::new(self.data.get_mut()),
            }
        }
        #[track_caller]
        pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            if self.raw.try_acquire() {
                Some(MutexGuard {
                    m: self,
                    ptr: core::mem::ManuallyDrop::new(self.data.get_mut()),
                })
            } else {
                None
            }
        }
        pub fn raw(&self) -> &RawLock {
            &self.raw
        }
    }

    /// Guard of the loom [`Mutex`]: holds loom's tracked mutable access to the data for as
    /// long as the lock is held, so an access that the lock does not order (a weakened
    /// `Acquire`/`Release` in [`RawLock`], a lock skipped) is reported as a causality violation.
    pub struct MutexGuard<'a, T> {
        m: &'a Mutex<T>,
        ptr: core::mem::ManuallyDrop<MutPtr<T>>,
    }
    impl<T> core::fmt::Debug for MutexGuard<'_, T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("MutexGuard")
        }
    }
    impl<T> core::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the lock is held, so no other access to the data is live.
            unsafe { MutPtr::deref(&self.ptr) }
        }
    }
    impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as for `deref`.
            unsafe { MutPtr::deref(&self.ptr) }
        }
    }
    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            // End the tracked access before the lock is released, as a real guard does.
            // SAFETY: `ptr` is not used again.
            unsafe { core::mem::ManuallyDrop::drop(&mut self.ptr) };
            self.m.raw.release();
        }
    }
}

/// A pointer with the atomics' `load`/`store` API that is an atomic, except under the
/// `tcache_count_torn` mutation, which makes it a plain pointer in a loom cell: the thread
/// caches' stack tops, so that loom reports the statistics reader's unsynchronised read of a
/// top that its owner writes. The mutation is read once, when the pointer is made.
#[cfg(all(test, loom))]
#[derive(Debug)]
pub struct MaybePlainPtr<T> {
    atomic: AtomicPtr<T>,
    plain: loom::cell::UnsafeCell<*mut T>,
    torn: bool,
}

#[cfg(all(test, loom))]
impl<T> MaybePlainPtr<T> {
    /// A new value.
    pub fn new(v: *mut T) -> Self {
        MaybePlainPtr {
            atomic: AtomicPtr::new(v),
            plain: loom::cell::UnsafeCell::new(v),
            torn: mutation::on("tcache_count_torn"),
        }
    }
    /// Reads the value (under the mutation a tracked, non-atomic read).
    #[track_caller]
    pub fn load(&self, o: Ordering) -> *mut T {
        if self.torn {
            // SAFETY: loom checks the access; the value is a plain pointer.
            self.plain.with(|p| unsafe { *p })
        } else {
            self.atomic.load(o)
        }
    }
    /// Writes the value (under the mutation a tracked, non-atomic write).
    #[track_caller]
    pub fn store(&self, v: *mut T, o: Ordering) {
        if self.torn {
            // SAFETY: as for `load`.
            self.plain.with_mut(|p| unsafe { *p = v });
        } else {
            self.atomic.store(v, o);
        }
    }
}

/// Loom-visible ownership of raw memory words that pass between threads.
///
/// Chunks move between threads through raw memory: a thread-cache flush links them together
/// and pushes the chain on an arena's lock-free remote list, and the lock holder that drains the
/// list reads those links. Loom sees atomics and its own cells only, so under loom every link
/// write ([`shadow::write`]) and read ([`shadow::read`]) also touches a loom `UnsafeCell` kept
/// per payload address: a link read that the code's atomics do not order after the write (a
/// `Release` weakened to `Relaxed`, say) is reported as a causality violation. Outside loom both
/// are empty and inlined away.
#[cfg(not(all(test, loom)))]
pub mod shadow {
    /// Records a write of the word at `addr` (nothing outside loom).
    #[inline(always)]
    pub fn write(_addr: usize) {}
    /// Records a read of the word at `addr` (nothing outside loom).
    #[inline(always)]
    pub fn read(_addr: usize) {}
}

/// Loom-visible ownership of raw memory words (see the non-loom twin for the idea).
#[cfg(all(test, loom))]
pub mod shadow {
    use loom::cell::UnsafeCell;
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    loom::lazy_static! {
        // One cell per address, made at its first access; loom resets lazy statics at the start
        // of every execution. The std mutex is never contended: loom runs one model thread at a
        // time, and nothing done while it is held (a cell access) is a scheduling point.
        static ref CELLS: Mutex<HashMap<usize, UnsafeCell<()>>> = Mutex::new(HashMap::new());
    }

    fn cells() -> std::sync::MutexGuard<'static, HashMap<usize, UnsafeCell<()>>> {
        CELLS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the table exist; the model helper calls it before spawning threads so that its
    /// initialisation adds no happens-before edge between model threads.
    pub fn touch() {
        drop(cells());
    }
    /// Records a write of the word at `addr` (loom reports the caller's line).
    #[track_caller]
    pub fn write(addr: usize) {
        let mut m = cells();
        m.entry(addr)
            .or_insert_with(|| UnsafeCell::new(()))
            .with_mut(|_| ());
    }
    /// Records a read of the word at `addr` (loom reports the caller's line).
    #[track_caller]
    pub fn read(addr: usize) {
        let mut m = cells();
        m.entry(addr)
            .or_insert_with(|| UnsafeCell::new(()))
            .with(|_| ());
    }
}

/// A const-constructible mutex constructor that works for both backends.
#[cfg(not(all(test, loom)))]
pub const fn new_mutex<T>(v: T) -> Mutex<T> {
    Mutex::const_new(RawLock::new(), v)
}
/// A mutex constructor that works for both backends.
#[cfg(all(test, loom))]
pub fn new_mutex<T>(v: T) -> Mutex<T> {
    Mutex::new(v)
}

/// The raw lock of a [`Mutex`], for the `fork` handlers that lock and unlock without guards.
#[cfg(not(all(test, loom)))]
pub fn raw_of<T>(m: &Mutex<T>) -> &RawLock {
    // SAFETY: we only lock and unlock through the raw lock in matched pairs (fork handlers).
    unsafe { m.raw() }
}
/// The raw lock of a [`Mutex`].
#[cfg(all(test, loom))]
pub fn raw_of<T>(m: &Mutex<T>) -> &RawLock {
    m.raw()
}

/// Declares a `const fn` in normal builds and a plain `fn` under loom (whose atomics and
/// locks cannot be built in const context).
macro_rules! const_fn_unless_loom {
    ($(#[$m:meta])* $v:vis fn $name:ident($($args:tt)*) -> $ret:ty $body:block) => {
        #[cfg(not(all(test, loom)))]
        $(#[$m])* $v const fn $name($($args)*) -> $ret $body
        #[cfg(all(test, loom))]
        $(#[$m])* $v fn $name($($args)*) -> $ret $body
    };
}
pub(crate) use const_fn_unless_loom;
