//! Stress of the whole allocator as the global one: 12 threads (more than the cores) in waves,
//! random sizes from 1 byte to 4 MiB, realloc, frees on other threads through channels, every
//! block filled with a pattern that is checked before it is freed. Scale with
//! `ARENA_STRESS_SCALE` (default 1).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

use common::{check, fill, solo, watchdog, Rng};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

struct Block {
    p: usize,
    len: usize,
    seed: u8,
}

fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, 8).unwrap()
}

fn alloc_block(rng: &mut Rng, max: usize) -> Block {
    let len = rng.size(max);
    let seed = rng.next() as u8;
    // SAFETY: non-zero layout; the block is filled before anyone reads it.
    let p = unsafe { GLOBAL.alloc(layout(len)) };
    assert!(!p.is_null(), "alloc({len}) failed");
    assert_eq!(p as usize % 16, 0);
    // SAFETY: `p` was just allocated with `len` bytes.
    unsafe { fill(p, len, seed) };
    Block {
        p: p as usize,
        len,
        seed,
    }
}

fn free_block(b: Block) {
    // SAFETY: the block is live and ours.
    unsafe {
        assert!(
            check(b.p as *const u8, b.len, b.seed),
            "block of {} bytes corrupted",
            b.len
        );
        GLOBAL.dealloc(b.p as *mut u8, layout(b.len));
    }
}

fn realloc_block(rng: &mut Rng, b: Block, max: usize) -> Block {
    let new_len = rng.size(max);
    // SAFETY: the block is live; contents up to min(len, new_len) must survive.
    unsafe {
        assert!(check(b.p as *const u8, b.len, b.seed));
        let q = GLOBAL.realloc(b.p as *mut u8, layout(b.len), new_len);
        assert!(!q.is_null());
        let keep = b.len.min(new_len);
        assert!(check(q, keep, b.seed), "realloc lost contents");
        fill(q, new_len, b.seed);
        Block {
            p: q as usize,
            len: new_len,
            seed: b.seed,
        }
    }
}

#[test]
fn threads_in_waves_with_cross_thread_frees() {
    // It reads the process's counts: alone in a child process, so no other test moves them.
    if !solo("threads_in_waves_with_cross_thread_frees", 240) {
        return;
    }
    // Counted with this thread's pipelined frees done and its cache empty, before and after.
    arena_malloc::flush_thread_cache();
    let before = arena_malloc::stats();
    let scale: usize = std::env::var("ARENA_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let threads = 12;
    let waves = 4 * scale;
    let ops = 6_000;
    for wave in 0..waves {
        let (txs, rxs): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| mpsc::channel::<Vec<Block>>()).unzip();
        let mut handles = Vec::new();
        for (t, rx) in rxs.into_iter().enumerate() {
            let peers = txs.clone();
            handles.push(std::thread::spawn(move || {
                let mut rng = Rng::new((wave * 100 + t) as u64 + 1);
                let mut live: Vec<Block> = Vec::new();
                let mut sent = 0usize;
                for i in 0..ops {
                    // Frees that other threads handed to us.
                    while let Ok(batch) = rx.try_recv() {
                        batch.into_iter().for_each(free_block);
                    }
                    let max = if rng.below(100) == 0 { 4 << 20 } else { 2048 };
                    match rng.below(10) {
                        0..=4 => live.push(alloc_block(&mut rng, max)),
                        5 | 6 if !live.is_empty() => {
                            let k = rng.below(live.len() as u64) as usize;
                            free_block(live.swap_remove(k));
                        }
                        7 if !live.is_empty() => {
                            let k = rng.below(live.len() as u64) as usize;
                            let b = live.swap_remove(k);
                            live.push(realloc_block(&mut rng, b, max));
                        }
                        _ if live.len() > 16 => {
                            // hand a batch to another thread, which frees it
                            let n = live.len() / 2;
                            let batch: Vec<Block> = live.drain(..n).collect();
                            let to = (t + 1 + rng.below(threads as u64 - 1) as usize) % threads;
                            sent += batch.len();
                            if let Err(e) = peers[to].send(batch) {
                                e.0.into_iter().for_each(free_block);
                            }
                        }
                        _ => {}
                    }
                    if i % 1000 == 0 && live.len() > 2000 {
                        live.drain(..1000).for_each(free_block);
                    }
                }
                drop(peers);
                live.into_iter().for_each(free_block);
                // Drain what is still addressed to us after everyone is done sending.
                (rx, sent)
            }));
        }
        drop(txs);
        let rxs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (rx, _) in rxs {
            while let Ok(batch) = rx.try_recv() {
                batch.into_iter().for_each(free_block);
            }
        }
    }
    arena_malloc::flush_thread_cache();
    let s = arena_malloc::stats();
    eprintln!("in use before {} after {}", before.in_use, s.in_use);
    // Every block was freed and every worker has exited (its cache went back): in use returns
    // to where it was, but for the buffers of the harness's own output (the test's name
    // printed meanwhile, at most a few KiB).
    assert!(
        s.in_use <= before.in_use + (16 << 10),
        "in use after the stress: {s}\nbefore: {before}"
    );
    assert_eq!(s.threads, before.threads, "caches of exited threads: {s}");
    let cap = (arena_malloc::os::cpu_count() * arena_malloc::config::ARENAS_PER_CPU)
        .clamp(2, arena_malloc::config::MAX_ARENAS);
    assert!(s.arenas <= cap, "more arenas than the cap {cap}: {s}");
}

#[test]
fn many_threads_first_allocation_contend() {
    // 64 threads on 2 cores, each making its very first allocations at once (cache creation,
    // arena attachment and arena locks all contended; re-entrancy through pthread_setspecific).
    watchdog(120);
    for round in 0..3 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(64));
        let hs: Vec<_> = (0..64)
            .map(|t| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    let mut rng = Rng::new(t * 7 + round);
                    let v: Vec<Block> = (0..200).map(|_| alloc_block(&mut rng, 70_000)).collect();
                    v.into_iter().for_each(free_block);
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    }
}
