//! `fork` while other threads allocate (src/global.rs `fork_prepare/parent/child`): the
//! handlers take the registry and every arena lock before `fork` and release them after, and
//! the child drops the caches of threads that do not exist in it. The child must be able to
//! allocate at once (a lock left held would hang it: every wait has a timeout), and the
//! memory those threads had cached must come back to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

/// Waits for `pid` up to `limit`; kills it then. Returns its wait status, or None on timeout.
fn wait_with_timeout(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r == pid {
            return Some(st);
        }
        assert!(r == 0, "waitpid failed");
        if start.elapsed() > limit {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut st, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The child's work: allocate through both fronts without creating threads (only
/// async-signal-safe calls besides our allocator are allowed after fork in a multithreaded
/// parent, and our allocator is made safe by the handlers). Exit codes name the failure.
fn child_body() -> ! {
    let mut v: Vec<Vec<u8>> = Vec::new();
    for i in 0..2000usize {
        v.push(vec![(i % 251) as u8; i * 13 % 5000 + 1]);
    }
    for (i, b) in v.iter().enumerate() {
        if b[0] != (i % 251) as u8 {
            // SAFETY: exit without running destructors or atexit handlers.
            unsafe { libc::_exit(3) };
        }
    }
    drop(v);
    let big = vec![7u8; 4 << 20];
    if big[(4 << 20) - 1] != 7 {
        // SAFETY: as above.
        unsafe { libc::_exit(4) };
    }
    drop(big);
    // SAFETY: C front of the same heap.
    unsafe {
        let p = arena_malloc::capi::malloc(1000);
        if p.is_null() {
            libc::_exit(5);
        }
        arena_malloc::capi::free(p);
        // The caches of the parent's other threads were given back: nothing is held in
        // caches except this thread's own.
        let info = arena_malloc::capi::mallinfo2();
        let _ = info;
        libc::_exit(0)
    }
}

fn spawn_churn(stop: &Arc<AtomicBool>, n: usize) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|t| {
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut s: u64 = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
                let mut slots: Vec<Option<Vec<u8>>> = (0..256).map(|_| None).collect();
                while !stop.load(Ordering::Relaxed) {
                    for slot in slots.iter_mut() {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        let n = if s % 7 == 0 {
                            (s % 300_000) as usize
                        } else {
                            (s % 2048) as usize
                        };
                        *slot = Some(vec![1u8; n]);
                    }
                }
            })
        })
        .collect()
}

#[test]
fn fork_while_threads_allocate() {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = spawn_churn(&stop, 4);
    let mut bad = Vec::new();
    for i in 0..100 {
        // SAFETY: the child only runs `child_body`, which ends in `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            child_body();
        }
        match wait_with_timeout(pid, Duration::from_secs(30)) {
            None => bad.push(format!("fork {i}: child hung (lock held across fork?)")),
            Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
            Some(st) => bad.push(format!("fork {i}: child status {st:#x}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn child_gets_back_memory_cached_by_vanished_threads() {
    // Threads fill their caches and then park; the child sees them as gone.
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(std::sync::Barrier::new(5));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let ready = Arc::clone(&ready);
            std::thread::spawn(move || {
                let v: Vec<Vec<u8>> = (0..5000).map(|i| vec![0u8; i % 1000 + 1]).collect();
                drop(v); // now mostly in this thread's cache
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    ready.wait();
    // SAFETY: C front.
    let held = unsafe { arena_malloc::capi::mallinfo2() }.fsmblks;
    assert!(
        held >= 64 << 10,
        "the threads should hold cached bytes ({held})"
    );
    // SAFETY: as above; the child ends in `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: C front.
        let info = unsafe { arena_malloc::capi::mallinfo2() };
        // SAFETY: as above.
        unsafe { libc::_exit(if info.fsmblks < 64 << 10 { 0 } else { 9 }) };
    }
    let st = wait_with_timeout(pid, Duration::from_secs(30)).expect("child hung");
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "child status {st:#x} (9: the vanished threads' cached bytes were not given back)"
    );
}
