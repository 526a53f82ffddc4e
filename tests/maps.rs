//! Where memory lives, checked against /proc/self/maps, and RSS under churn: thread blocks in
//! mmap'd regions (not the break heap), freed huge blocks unmapped, RSS flat while hundreds of
//! MiB churn through a few MiB of live data.

mod common;

use common::{mapping_of, rss, solo, watchdog, Rng};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

/// These tests read process-wide figures (RSS, stats, mappings): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn thread_blocks_live_in_regions_not_the_break_heap() {
    let _serial = serial();
    watchdog(60);
    let addrs: Vec<usize> = std::thread::spawn(|| {
        let v: Vec<Box<[u8; 64]>> = (0..100).map(|_| Box::new([7u8; 64])).collect();
        let a = v.iter().map(|b| b.as_ptr() as usize).collect();
        std::mem::forget(v);
        a
    })
    .join()
    .unwrap();
    let region = arena_malloc::config::REGION_SIZE;
    for a in addrs {
        let line = mapping_of(a).expect("block not mapped");
        assert!(
            !line.contains("[heap]"),
            "thread block in the break heap: {line}"
        );
        // the mapping that holds it is (part of) a size-aligned region
        let base = a & !(region - 1);
        let head = mapping_of(base).expect("region base not mapped");
        assert!(!head.contains("[heap]"));
    }
}

#[test]
fn freed_huge_block_is_unmapped() {
    let _serial = serial();
    watchdog(60);
    let mut v = vec![1u8; 8 << 20];
    v[12345] = 2;
    let p = v.as_ptr() as usize;
    assert!(mapping_of(p).is_some());
    let stats_before = arena_malloc::stats();
    assert!(stats_before.huge_blocks >= 1);
    drop(v);
    // The whole 8 MiB range is gone (another mapping may reuse parts of it later, so check
    // right away and check the middle page too).
    assert!(
        mapping_of(p).is_none() || mapping_of(p + (4 << 20)).is_none(),
        "huge block still mapped"
    );
}

#[test]
fn rss_stays_flat_under_churn() {
    // It reads the process's RSS: alone in a child process, where no other test allocates.
    if !solo("rss_stays_flat_under_churn", 120) {
        return;
    }
    // warm up: reach the steady state
    let mut rng = Rng::new(42);
    let mut live: Vec<Vec<u8>> = Vec::new();
    let mut churn = |rounds: usize, live: &mut Vec<Vec<u8>>| {
        for _ in 0..rounds {
            let n = rng.size(200_000);
            let mut v = vec![0u8; n];
            // touch every OS page, so that the memory really is resident
            for i in (0..n).step_by(4096) {
                v[i] = 1;
            }
            v[n - 1] = 1;
            if live.len() < 64 {
                live.push(v);
            } else {
                let k = rng.below(64) as usize;
                live[k] = v;
            }
        }
    };
    churn(20_000, &mut live);
    let base = rss();
    let mut traffic = 0usize;
    for _ in 0..10 {
        churn(20_000, &mut live);
        traffic += 20_000 * 50_000;
        let now = rss();
        assert!(
            now < base + (24 << 20),
            "RSS grew from {} MiB to {} MiB after ~{} MiB of churn",
            base >> 20,
            now >> 20,
            traffic >> 20
        );
    }
    // Live data is ~64 blocks of at most 200 KB: a few MiB.
    let live_bytes: usize = live.iter().map(|v| v.len()).sum();
    assert!(live_bytes < 16 << 20);
    drop(live);
    arena_malloc::trim(0);
    let after = rss();
    assert!(
        after <= base + (8 << 20),
        "RSS after trim {} MiB, base {} MiB",
        after >> 20,
        base >> 20
    );
}

#[test]
fn stats_account_for_thread_caches_and_exits() {
    // It reads the process's counts: alone in a child process, where no other test's thread
    // holds or returns a cache meanwhile.
    if !solo("stats_account_for_thread_caches_and_exits", 60) {
        return;
    }
    let before = arena_malloc::stats();
    std::thread::spawn(|| {
        // leave chunks in this thread's cache, then exit
        let v: Vec<Box<[u8; 100]>> = (0..500).map(|_| Box::new([1u8; 100])).collect();
        drop(v);
        let s = arena_malloc::stats();
        assert!(
            s.tcache_bytes > 0,
            "no cached bytes while the thread lives: {s}"
        );
    })
    .join()
    .unwrap();
    let after = arena_malloc::stats();
    // The exited thread's cache went back to the arenas: no more cached bytes than before.
    assert!(
        after.tcache_bytes <= before.tcache_bytes,
        "cached bytes not returned at thread exit: before {before}, after {after}"
    );
    assert_eq!(
        after.arena_committed,
        after.overhead
            + after.free_in_bins
            + after.quick_bytes
            + after.top
            + (after.in_use - after.huge_bytes)
            + after.tcache_bytes
            + after.remote_pending
            + after.run_free
            + after.run_remote,
        "accounting identity"
    );
    assert_eq!(
        after.threads, before.threads,
        "the exited thread's cache is live: {after}"
    );
}
