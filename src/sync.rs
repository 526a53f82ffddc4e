//! The sync facade: the only module that names `core::sync::atomic` or `loom`.
//!
//! Everything the allocator's concurrent protocols use — atomics, `Ordering`, `fence`, an
//! `UnsafeCell` with closure accessors, the non-allocating [`Mutex`], [`spin_hint`] — comes from
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
//! machine runs on loom's atomics, with `yield_now` in place of the futex sleep.

/// Real atomics for process-wide statics, never swapped for loom's.
pub mod process {
    pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

#[cfg(not(all(test, loom)))]
pub use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicUsize, Ordering,
};
#[cfg(all(test, loom))]
pub use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicUsize, Ordering,
};

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

/// A futex-based raw lock that never allocates.
#[derive(Debug)]
pub struct RawLock {
    state: AtomicU32,
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
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        // Acquire: pairs with the Release in `release`, so the holder sees the previous
        // holder's writes.
        self.state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
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
            if s != HELD || spins >= 100 {
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
        }
    }

    #[cfg(not(all(test, loom)))]
    fn sleep(&self) {
        crate::os::futex_wait(&self.state, CONTENDED);
    }
    #[cfg(all(test, loom))]
    fn sleep(&self) {
        loom::thread::yield_now();
    }

    /// Releases the lock.
    #[inline]
    pub fn release(&self) {
        // Release: pairs with the Acquire of the next `try_acquire`/`acquire`, publishing
        // everything written under the lock.
        #[cfg(not(loom_mutation = "lock_release_relaxed"))]
        let prev = self.state.swap(FREE, Ordering::Release);
        #[cfg(loom_mutation = "lock_release_relaxed")]
        let prev = self.state.swap(FREE, Ordering::Relaxed);
        if prev == CONTENDED {
            self.wake();
        }
    }

    #[cfg(not(all(test, loom)))]
    fn wake(&self) {
        crate::os::futex_wake(&self.state);
    }
    #[cfg(all(test, loom))]
    fn wake(&self) {}

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
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.raw.acquire();
            MutexGuard {
                m: self,
                ptr: core::mem::ManuallyDrop::new(self.data.get_mut()),
            }
        }
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

    pub struct MutexGuard<'a, T> {
        m: &'a Mutex<T>,
        ptr: core::mem::ManuallyDrop<MutPtr<T>>,
    }
    impl<T> core::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the lock is held, so no other access to the data is live.
            unsafe { self.ptr.deref() }
        }
    }
    impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as for `deref`.
            unsafe { self.ptr.deref() }
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
