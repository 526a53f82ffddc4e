//! The pipelined `free`: once a thread's frees overflow its cache, each free
//! starts loading its block's header and completes the free made 8 calls earlier. These tests
//! check that it keeps every property of `free`: blocks are reused only after their free is
//! done, nothing is lost (drained at flush, at thread exit, and when the pipeline turns itself
//! off), and misuse still ends in an abort naming the problem — at once for a block freed twice
//! in a row, within 8 frees otherwise.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;

use common::{child_case, expect_abort, solo, watchdog};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

/// The tests read process-wide figures: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const L48: Layout = match Layout::from_size_align(48, 8) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

/// Allocates and frees enough blocks of one class that the frees overflow the thread's cache,
/// which turns the pipeline on; returns with up to 8 frees pending.
fn churn() {
    let ps: Vec<*mut u8> = (0..4096)
        .map(|i| {
            // SAFETY: a non-zero layout.
            let p = unsafe { GLOBAL.alloc(L48) };
            assert!(!p.is_null());
            // SAFETY: 48 writable bytes.
            unsafe { p.write_bytes(i as u8, 48) };
            p
        })
        .collect();
    for p in ps {
        // SAFETY: allocated above with L48, freed once.
        unsafe { GLOBAL.dealloc(p, L48) };
    }
}

/// Asserts that `after` holds no more than 64 KiB more in use than `before` (nothing the test
/// freed was lost); `what` names the loss.
fn assert_nothing_lost(before: &arena_malloc::Stats, after: &arena_malloc::Stats, what: &str) {
    assert!(
        after.in_use <= before.in_use + (64 << 10),
        "{what}: in use {} -> {}",
        before.in_use,
        after.in_use
    );
}

fn pending() -> usize {
    arena_malloc::stats().frees_pending
}

#[test]
fn overflowing_frees_run_pipelined_and_nothing_is_lost() {
    if !solo("overflowing_frees_run_pipelined_and_nothing_is_lost", 60) {
        return;
    }
    watchdog(120);
    let before = arena_malloc::stats();
    churn();
    let n = pending();
    assert!(
        (1..=8).contains(&n),
        "after overflowing frees the last ones should be pending, got {n}"
    );
    // Every further free completes an earlier one: never more than 8 wait.
    for _ in 0..1000 {
        // SAFETY: a non-zero layout; the block is freed at once.
        unsafe {
            let p = GLOBAL.alloc(L48);
            GLOBAL.dealloc(p, L48);
        }
        assert!(pending() <= 8);
    }
    // Blocks handed out while frees are pending are distinct and keep their contents.
    let mut live: Vec<(*mut u8, u8)> = Vec::new();
    for i in 0..2000u32 {
        // SAFETY: a non-zero layout.
        let p = unsafe { GLOBAL.alloc(L48) };
        // SAFETY: 48 writable bytes.
        unsafe { p.write_bytes(i as u8, 48) };
        if i % 3 == 0 {
            // Freed at once, through the pipeline: its block may come back only after.
            // SAFETY: just allocated, freed once; not kept.
            unsafe { GLOBAL.dealloc(p, L48) };
        } else {
            live.push((p, i as u8));
        }
    }
    let mut addrs: Vec<usize> = live.iter().map(|&(p, _)| p as usize).collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), live.len(), "a block was handed out twice");
    for &(p, v) in &live {
        // SAFETY: live block of 48 bytes.
        let s = unsafe { std::slice::from_raw_parts(p, 48) };
        assert!(
            s.iter().all(|&b| b == v),
            "contents changed under pending frees"
        );
        // SAFETY: freed once.
        unsafe { GLOBAL.dealloc(p, L48) };
    }
    // A flush completes the pending frees.
    arena_malloc::flush_thread_cache();
    assert_eq!(pending(), 0, "flush_thread_cache left frees pending");
    let after = arena_malloc::stats();
    assert_nothing_lost(&before, &after, "blocks leaked");
}

#[test]
fn a_thread_that_exits_leaves_no_pending_free() {
    if !solo("a_thread_that_exits_leaves_no_pending_free", 60) {
        return;
    }
    watchdog(120);
    arena_malloc::flush_thread_cache();
    let before = arena_malloc::stats();
    std::thread::spawn(|| {
        churn();
        assert!(pending() > 0);
    })
    .join()
    .unwrap();
    let after = arena_malloc::stats();
    assert_eq!(
        after.frees_pending, 0,
        "an exited thread left frees pending"
    );
    assert_nothing_lost(
        &before,
        &after,
        "an exited thread's pending frees were lost",
    );
}

/// A refill drains the ring (no block whose free is pending can be handed out by the arena)
/// but leaves the pipeline on: a program that allocates and frees in a steady mix (a server)
/// keeps pipelining its frees between refills, instead of only until its next refill.
#[test]
fn a_refill_drains_the_ring_and_keeps_the_pipeline_on() {
    if !solo("a_refill_drains_the_ring_and_keeps_the_pipeline_on", 60) {
        return;
    }
    watchdog(120);
    churn();
    assert!(pending() > 0, "churn did not turn the pipeline on");
    // Empty the class's stack, then some: the allocations refill it from the arena. (An array:
    // a vector's allocation would be another class, and could refill too.)
    let mut held = [ptr::null_mut::<u8>(); 512];
    for (i, h) in held.iter_mut().enumerate() {
        // SAFETY: a non-zero layout.
        let p = unsafe { GLOBAL.alloc(L48) };
        assert!(!p.is_null());
        // SAFETY: 48 writable bytes.
        unsafe { p.write_bytes(i as u8, 48) };
        *h = p;
    }
    assert_eq!(pending(), 0, "a refill left frees pending");
    // The pipeline is still on: this free waits in the ring.
    // SAFETY: allocated above with L48, freed once.
    unsafe { GLOBAL.dealloc(held[0], L48) };
    assert_eq!(pending(), 1, "the pipeline turned off at the refill");
    for (i, &p) in held.iter().enumerate().skip(1) {
        // SAFETY: 48 bytes written above; allocated with L48, freed once.
        unsafe {
            assert!((0..48).all(|k| *p.add(k) == i as u8), "block {i} changed");
            GLOBAL.dealloc(p, L48);
        }
    }
    arena_malloc::flush_thread_cache();
    assert_eq!(pending(), 0);
}

#[test]
fn the_pipeline_turns_itself_off_without_overflows() {
    if !solo("the_pipeline_turns_itself_off_without_overflows", 60) {
        return;
    }
    watchdog(120);
    churn();
    assert!(pending() > 0);
    // Frees that never overflow the cache (a block freed right after it was allocated): after
    // at most 8192 of them the pipeline drains and turns off.
    for _ in 0..9000 {
        // SAFETY: a non-zero layout; freed once.
        unsafe {
            let p = GLOBAL.alloc(L48);
            GLOBAL.dealloc(p, L48);
        }
    }
    assert_eq!(pending(), 0, "the pipeline stayed on without overflows");
}

/// Misuse while the pipeline is on (each case runs in a child process and must abort).
fn misuse(case: &str) {
    // Allocated before the pipeline turns on: an allocation that reaches the arena turns it off.
    // SAFETY: a non-zero layout.
    let big = unsafe { GLOBAL.alloc(Layout::from_size_align(256, 8).unwrap()) };
    // The blocks `double_free_after_done` frees (an array: a vector's allocation could reach
    // the arena). After `churn` the class's stack may hold too few chunks for them (a stack
    // that only took frees is cut short, see tcache `overflow`), and a refill turns the
    // pipeline off too.
    // SAFETY: a non-zero layout.
    let early: [*mut u8; 9] = core::array::from_fn(|_| unsafe { GLOBAL.alloc(L48) });
    churn();
    assert!(
        pending() > 0,
        "the pipeline is not on: the case would test the plain free"
    );
    // SAFETY: none — each case breaks the allocator's contract on purpose.
    unsafe {
        match case {
            "double_free_in_a_row" => {
                let p = GLOBAL.alloc(L48);
                GLOBAL.dealloc(p, L48);
                GLOBAL.dealloc(p, L48);
            }
            "double_free_later" => {
                let p = GLOBAL.alloc(L48);
                GLOBAL.dealloc(p, L48);
                let q = GLOBAL.alloc(L48);
                GLOBAL.dealloc(q, L48);
                GLOBAL.dealloc(p, L48);
                // Within 8 more frees the second free of p is checked.
                for _ in 0..16 {
                    let r = GLOBAL.alloc(L48);
                    GLOBAL.dealloc(r, L48);
                }
            }
            "double_free_after_done" => {
                // p's first free is done (p is cached) when p is freed again; handing p out
                // while that second free is pending would give it to two owners.
                let (p, others) = (early[0], &early[1..]);
                GLOBAL.dealloc(p, L48);
                for &o in others {
                    GLOBAL.dealloc(o, L48);
                }
                GLOBAL.dealloc(p, L48);
                for _ in 0..8 {
                    let _ = GLOBAL.alloc(L48);
                }
            }
            "interior_pointer" => {
                GLOBAL.dealloc(big.add(64), L48);
                assert!(pending() > 0);
                arena_malloc::flush_thread_cache();
            }
            "realloc_pending" => {
                let p = GLOBAL.alloc(L48);
                GLOBAL.dealloc(p, L48);
                let _ = GLOBAL.realloc(p, L48, 96);
            }
            _ => unreachable!(),
        }
    }
}

const CASES: &[(&str, &str)] = &[
    (
        "double_free_in_a_row",
        "freed again while its first free was pending",
    ),
    (
        "double_free_later",
        "freed again while its first free was pending",
    ),
    ("double_free_after_done", "a cached block was freed again"),
    ("interior_pointer", "invalid pointer"),
    ("realloc_pending", "already freed"),
];

#[test]
fn misuse_while_pipelined_aborts_with_a_message() {
    if let Some(case) = child_case().filter(|c| c != "solo") {
        misuse(&case);
        println!("CHILD SURVIVED");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (case, want) in CASES {
        let line = expect_abort("misuse_while_pipelined_aborts_with_a_message", case, want);
        eprintln!("{case:22} -> {line}");
    }
}

#[test]
fn the_pipeline_can_be_turned_off() {
    if std::env::var_os("PIPELINE_OFF_CHILD").is_some() {
        churn();
        assert_eq!(pending(), 0, "ARENA_MALLOC_FREE_PIPELINE=0 still pipelined");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "the_pipeline_can_be_turned_off",
            "--exact",
            "--test-threads=1",
        ])
        .env("PIPELINE_OFF_CHILD", "1")
        .env("ARENA_MALLOC_FREE_PIPELINE", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
