//! Thread exit (`Heap::drop_cache`: flush every class, detach from the arena, put the cache on
//! the registry's free list) racing a new thread's attach (`Heap::new_cache`, which takes a
//! recycled cache first and an unused arena first).
//!
//! Catches `exit_recycle_before_flush` (the cache recycled before it is flushed: the newcomer
//! gets the same cache memory, re-initialises it, and the exiting thread's cached chunks are
//! lost — `check_quiescent` finds them in use with no owner).

use super::{check_attachment, check_quiescent, heap, model, thread};

pub(crate) fn exit_races_attach() {
    model("thread_exit_vs_attach", || {
        let h = heap(2);
        let leaver = {
            let h = h.clone();
            thread::spawn(move || unsafe {
                let tc = h.new_cache();
                let p = h.malloc(tc, 24);
                let q = h.malloc(tc, 24);
                h.free(tc, p);
                h.free(tc, q);
                // Thread exit: the cache still holds chunks.
                h.drop_cache(tc);
            })
        };
        let tc = h.new_cache();
        assert!(!tc.is_null());
        unsafe {
            let p = h.malloc(tc, 24);
            assert!(!p.is_null());
            h.free(tc, p);
        }
        leaver.join().unwrap();
        check_attachment(&h);
        unsafe { h.drop_cache(tc) };
        check_quiescent(&h);
    });
}

#[test]
fn loom_thread_exit_vs_attach() {
    exit_races_attach();
}
