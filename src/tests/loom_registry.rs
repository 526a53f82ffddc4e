//! Thread → arena attachment (`Heap::new_cache`, `attach_locked`, `drop_cache`,
//! `lock_some_arena`): arenas are made up to the cap, two threads race to create the last
//! allowed one, a thread that finds its arena busy takes another, and an exited thread's arena is
//! reused before a new one is made.
//!
//! Catches `attach_unlocked` (the arena chosen before the registry lock is taken: both racers
//! create arena 1 and the table loses one of them) and `attach_ignores_cap`.

use super::{check_attachment, check_quiescent, heap, model, thread, Ptr};
use crate::sync::{AtomicBool, Ordering};

/// The main thread holds the main arena; two threads race to attach with room for one more
/// arena. Each allocates and frees through its cache, then exits.
pub(crate) fn race_for_last_arena() {
    model("registry_race_for_last_arena", || {
        let h = heap(2);
        let main_tc = Ptr(h.new_cache());
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                thread::spawn(move || {
                    let tc = h.new_cache();
                    assert!(!tc.is_null());
                    check_attachment(&h);
                    unsafe {
                        let p = h.malloc(tc, 24);
                        assert!(!p.is_null());
                        h.free(tc, p);
                        h.drop_cache(tc);
                    }
                })
            })
            .collect();
        for t in racers {
            t.join().unwrap();
        }
        assert_eq!(h.arena_count(), 2, "exactly the one allowed arena was made");
        check_attachment(&h);
        unsafe { h.drop_cache(main_tc.0) };
        check_quiescent(&h);
    });
}

#[test]
fn loom_registry_race_for_last_arena() {
    race_for_last_arena();
}

/// A thread without a cache allocates while another thread holds the main arena's lock: it
/// must take the other arena (or wait), and the block must go back to the arena it came from.
pub(crate) fn busy_arena_tries_another() {
    model("registry_busy_arena_tries_another", || {
        let h = heap(2);
        // Two caches: the main arena and a second arena exist, both attached.
        let a = Ptr(h.new_cache());
        let b = Ptr(h.new_cache());
        assert_eq!(h.arena_count(), 2);
        let holder = {
            let h = h.clone();
            thread::spawn(move || {
                let g = h.arena(0).lock();
                thread::yield_now();
                drop(g);
            })
        };
        let p = unsafe { h.malloc(core::ptr::null_mut(), 100) };
        assert!(!p.is_null());
        unsafe { h.free(core::ptr::null_mut(), p) };
        holder.join().unwrap();
        unsafe {
            h.drop_cache(a.0);
            h.drop_cache(b.0);
        }
        check_quiescent(&h);
    });
}

#[test]
fn loom_registry_busy_arena_tries_another() {
    busy_arena_tries_another();
}

/// A thread exits while another attaches: if the newcomer saw the exit, it reuses the exited
/// thread's arena instead of making a new one; either way the cap holds and nothing leaks.
pub(crate) fn reuse_after_exit() {
    model("registry_reuse_after_exit", || {
        let h = heap(3);
        let main_tc = Ptr(h.new_cache()); // keeps the main arena attached
        let first = Ptr(h.new_cache()); // makes and attaches arena 1
        assert_eq!(h.arena_count(), 2);
        let exited = crate::tests::Arc::new(AtomicBool::new(false));
        let leaver = {
            let (h, exited) = (h.clone(), exited.clone());
            thread::spawn(move || unsafe {
                let p = h.malloc(first.0, 40);
                h.free(first.0, p);
                h.drop_cache(first.0);
                // Release: pairs with the Acquire below.
                exited.store(true, Ordering::Release);
            })
        };
        let seen = exited.load(Ordering::Acquire);
        let tc = h.new_cache();
        let arena = unsafe { (*tc).arena };
        if seen {
            assert_eq!(
                h.arena_count(),
                2,
                "an exited thread's arena was not reused"
            );
            assert!(core::ptr::eq(arena, h.arena(1)));
        }
        unsafe {
            let p = h.malloc(tc, 40);
            h.free(tc, p);
        }
        leaver.join().unwrap();
        check_attachment(&h);
        unsafe {
            h.drop_cache(tc);
            h.drop_cache(main_tc.0);
        }
        check_quiescent(&h);
    });
}

#[test]
fn loom_registry_reuse_after_exit() {
    reuse_after_exit();
}
