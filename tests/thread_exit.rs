//! Thread exit: destructors that run after our cache was flushed (Rust TLS destructors
//! registered later, pthread key destructors of keys made after ours) still allocate and free
//! through the arena path, leak nothing, and never panic inside the allocator. Threads churn in
//! the thousands and their arenas are reused, never leaked.

mod common;

use std::cell::RefCell;

use common::solo;

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

struct AllocOnDrop(Vec<u8>);
impl Drop for AllocOnDrop {
    fn drop(&mut self) {
        // allocate and free during TLS teardown
        let v: Vec<String> = (0..50).map(|i| format!("late {i}")).collect();
        assert_eq!(v.len(), 50);
        self.0.extend_from_slice(b"more");
    }
}

thread_local! {
    static LATE: RefCell<Option<AllocOnDrop>> = const { RefCell::new(None) };
}

unsafe extern "C" fn key_dtor(p: *mut libc::c_void) {
    // a pthread key destructor that runs after ours (its key was made later): free and allocate
    // SAFETY: the value was made by Box::into_raw in the thread that set it.
    let b: Box<Vec<u64>> = unsafe { Box::from_raw(p.cast()) };
    let s: u64 = b.iter().sum();
    let again = vec![s; 100];
    assert_eq!(again.len(), 100);
}

#[test]
fn destructors_allocate_after_the_cache_is_gone() {
    // It counts the process's caches: alone in a child process, so no other test's threads
    // (nor the harness's) move the count.
    if !solo("destructors_allocate_after_the_cache_is_gone", 120) {
        return;
    }
    let mut key: libc::pthread_key_t = 0;
    // make sure our own key exists first (the allocator makes it at its first use)
    drop(Box::new(1u8));
    arena_malloc::flush_thread_cache();
    let before = arena_malloc::stats();
    assert_eq!(
        // SAFETY: plain key creation; the destructor never unwinds.
        unsafe { libc::pthread_key_create(&mut key, Some(key_dtor)) },
        0
    );
    for wave in 0..10 {
        let hs: Vec<_> = (0..40)
            .map(|i| {
                std::thread::spawn(move || {
                    let v: Vec<Box<[u8; 200]>> =
                        (0..100).map(|_| Box::new([wave as u8; 200])).collect();
                    LATE.with(|l| *l.borrow_mut() = Some(AllocOnDrop(vec![i as u8; 10])));
                    let data = Box::new(vec![i as u64; 64]);
                    // SAFETY: the key is valid; the destructor takes ownership back.
                    unsafe { libc::pthread_setspecific(key, Box::into_raw(data).cast()) };
                    drop(v);
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    }
    arena_malloc::flush_thread_cache();
    let s = arena_malloc::stats();
    let cap = (arena_malloc::os::cpu_count() * arena_malloc::config::ARENAS_PER_CPU)
        .clamp(2, arena_malloc::config::MAX_ARENAS);
    assert!(s.arenas <= cap, "arenas leaked: {s}");
    // Every thread has exited, destructors included: no cache of theirs is live, and what
    // they allocated late is free again (but for the harness's output buffers, a few KiB).
    assert_eq!(
        s.threads, before.threads,
        "caches of exited threads still live: {s}"
    );
    assert!(
        s.in_use <= before.in_use + (16 << 10),
        "late allocations leaked: {s}\nbefore: {before}"
    );
}

#[test]
fn thousands_of_short_threads_reuse_arenas() {
    if !solo("thousands_of_short_threads_reuse_arenas", 180) {
        return;
    }
    arena_malloc::flush_thread_cache();
    let before = arena_malloc::stats();
    for _ in 0..100 {
        let hs: Vec<_> = (0..20)
            .map(|i| std::thread::spawn(move || format!("thread {i}").into_bytes()))
            .collect();
        for h in hs {
            assert!(h.join().unwrap().starts_with(b"thread"));
        }
    }
    arena_malloc::flush_thread_cache();
    let s = arena_malloc::stats();
    assert_eq!(s.threads, before.threads, "caches of exited threads: {s}");
    assert!(
        s.in_use <= before.in_use + (16 << 10),
        "in use grew: {s}\nbefore: {before}"
    );
    let cap = (arena_malloc::os::cpu_count() * arena_malloc::config::ARENAS_PER_CPU)
        .clamp(2, arena_malloc::config::MAX_ARENAS);
    assert!(s.arenas <= cap, "arenas leaked: {s}");
}
