//! The arena and registry lock (`sync::RawLock`, a three-state futex lock) on its own: mutual
//! exclusion with the holder's writes published to the next holder, and no lost wake-up. Under
//! loom the futex is modelled (`sync::Futex`: compare-and-sleep as one step, wake one
//! sleeper), so a sleeper that nobody wakes stays asleep and loom reports the deadlock.
//!
//! Catches `lock_acquire_relaxed` (the holder's writes race the next holder's: a causality
//! violation), `lock_wake_dropped` (a release leaves a sleeper asleep: a deadlock) and
//! `lock_woken_takes_held` (a woken sleeper takes the lock as held without sleepers, so its
//! release wakes nobody while a third thread sleeps: a deadlock).

use super::{model, thread, Arc};
use crate::sync::Mutex;

/// `n` threads each add one to a counter under the lock (the loom stand-in keeps the data in a
/// loom cell, so an access the lock does not order is reported); the total is `n`.
fn add_under_lock(n: usize) {
    let lock = Arc::new(crate::sync::new_mutex(0usize));
    // The holder passes scheduling points while it holds the lock, more than a waiter spins,
    // so that waiters go to sleep and the release must wake them.
    let add = |lock: &Mutex<usize>| {
        let mut g = lock.lock();
        for _ in 0..=crate::sync::SPINS {
            thread::yield_now();
        }
        *g += 1;
    };
    let others: Vec<_> = (1..n)
        .map(|_| {
            let lock = lock.clone();
            thread::spawn(move || add(&lock))
        })
        .collect();
    add(&lock);
    for t in others {
        t.join().unwrap();
    }
    assert_eq!(*lock.lock(), n, "an increment under the lock was lost");
}

pub(crate) fn two_threads() {
    model("lock_two_threads", || add_under_lock(2));
}

pub(crate) fn three_threads() {
    model("lock_three_threads", || add_under_lock(3));
}

#[test]
fn loom_lock_two_threads() {
    two_threads();
}

#[test]
fn loom_lock_three_threads() {
    three_threads();
}
