//! `arena_malloc::Heap` as a user outside the crate sees it: collections of `allocator_api2`
//! and `hashbrown` in a heap, across threads; contents, alignment, no overlap; drop with live
//! blocks (every page back to the OS); thousands of heaps with flat RSS and address space;
//! misuse across heaps and with the global allocator aborting with a message.
//!
//! The global allocator is arena-malloc too, so both kinds of heap live side by side. Two tests
//! read process-wide figures (RSS, mappings), so every test holds `SERIAL`.

mod common;

use std::alloc::Layout;
use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::{mpsc, Mutex};

use allocator_api2::alloc::Allocator;
use allocator_api2::boxed::Box as HBox;
use allocator_api2::vec::Vec as HVec;
use arena_malloc::Heap;
use common::{child_case, expect_abort, mapping_of, rss, Rng};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Virtual size of the process (bytes), from /proc/self/statm.
fn vsize() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().next().unwrap().parse().unwrap();
    pages * 4096
}

fn fill(p: *mut u8, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least len bytes.
    unsafe { common::fill(p, len, seed) }
}

fn intact(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: callers pass a live block of at least len bytes.
    unsafe { common::check(p, len, seed) }
}

#[test]
fn blocks_are_aligned_disjoint_and_keep_their_contents() {
    let _g = serial();
    let heap = Heap::new();
    let mut rng = Rng::new(7);
    let mut live: Vec<(NonNull<u8>, Layout, u8)> = Vec::new();
    for i in 0..20_000u32 {
        if !live.is_empty() && rng.below(3) == 0 {
            let k = rng.below(live.len() as u64) as usize;
            let (p, l, seed) = live.swap_remove(k);
            assert!(intact(p.as_ptr(), l.size(), seed), "block {i} changed");
            // SAFETY: a live block of this heap with layout l.
            unsafe { heap.deallocate(p, l) };
            continue;
        }
        let size = match rng.below(100) {
            0 => 200_000 + rng.below(3 << 20) as usize, // large and huge
            1..=10 => 1024 + rng.below(64 << 10) as usize,
            _ => 1 + rng.below(1024) as usize,
        };
        let align = 1usize << rng.below(13); // 1 .. 4096
        let l = Layout::from_size_align(size, align).unwrap();
        let p = heap.allocate(l).expect("allocate").cast::<u8>();
        assert_eq!(p.as_ptr() as usize % align, 0, "alignment {align}");
        let seed = i as u8;
        fill(p.as_ptr(), size, seed);
        live.push((p, l, seed));
    }
    // No two live blocks overlap.
    let mut spans: Vec<(usize, usize)> = live
        .iter()
        .map(|(p, l, _)| (p.as_ptr() as usize, p.as_ptr() as usize + l.size()))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "blocks overlap: {:x?} and {:x?}",
            w[0],
            w[1]
        );
    }
    for (p, l, seed) in live.drain(..) {
        assert!(intact(p.as_ptr(), l.size(), seed));
        // SAFETY: a live block of this heap with layout l.
        unsafe { heap.deallocate(p, l) };
    }
    let s = heap.stats();
    assert_eq!(s.in_use, 0, "everything freed, yet in use: {s}");
    assert_eq!(s.huge_blocks, 0);
}

#[test]
fn grow_and_shrink_keep_contents() {
    let _g = serial();
    let heap = Heap::new();
    let mut v: HVec<u64, &Heap> = HVec::new_in(&heap);
    for i in 0..300_000u64 {
        v.push(i * 3);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    v.truncate(1000);
    v.shrink_to_fit();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    // Over-aligned growth goes through a new block and a copy.
    #[repr(align(256))]
    #[derive(Clone, Copy)]
    struct Wide(u64);
    let mut w: HVec<Wide, &Heap> = HVec::new_in(&heap);
    for i in 0..5000u64 {
        w.push(Wide(i));
        assert_eq!(w.as_ptr() as usize % 256, 0);
    }
    assert!(w.iter().enumerate().all(|(i, x)| x.0 == i as u64));
    // Zeroed growth.
    let l = Layout::from_size_align(100, 8).unwrap();
    let p = heap.allocate_zeroed(l).unwrap().cast::<u8>();
    fill(p.as_ptr(), 100, 3);
    let l2 = Layout::from_size_align(5000, 8).unwrap();
    // SAFETY: a live block of this heap with layout l; l2 is larger.
    let q = unsafe { heap.grow_zeroed(p, l, l2) }.unwrap().cast::<u8>();
    assert!(intact(q.as_ptr(), 100, 3));
    // SAFETY: the block holds 5000 bytes.
    assert!((100..5000).all(|i| unsafe { *q.as_ptr().add(i) } == 0));
    // SAFETY: live, layout l2.
    unsafe { heap.deallocate(q, l2) };
    // Zero-sized blocks are dangling, aligned, and never reach the heap.
    let z = heap
        .allocate(Layout::from_size_align(0, 64).unwrap())
        .unwrap();
    assert_eq!(z.cast::<u8>().as_ptr() as usize % 64, 0);
    // SAFETY: a zero-sized block of this heap.
    unsafe { heap.deallocate(z.cast(), Layout::from_size_align(0, 64).unwrap()) };
}

#[test]
fn hashbrown_maps_across_threads() {
    let _g = serial();
    let heap = Heap::new();
    type Map<'h> =
        hashbrown::HashMap<u64, HVec<u8, &'h Heap>, hashbrown::DefaultHashBuilder, &'h Heap>;
    let shared: Mutex<Map<'_>> = Mutex::new(Map::with_hasher_in(Default::default(), &heap));
    let (tx, rx) = mpsc::channel::<Map<'_>>();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let tx = tx.clone();
            let heap = &heap;
            let shared = &shared;
            s.spawn(move || {
                // A map built on this thread, handed to another, which drops it.
                let mut mine: Map<'_> = Map::with_hasher_in(Default::default(), heap);
                for k in 0..5000u64 {
                    let mut v = HVec::with_capacity_in((k % 97) as usize + 1, heap);
                    v.extend(std::iter::repeat_n((k ^ t) as u8, (k % 97) as usize + 1));
                    mine.insert(k, v);
                    if k % 10 == 0 {
                        let mut v = HVec::new_in(heap);
                        v.push(t as u8);
                        shared.lock().unwrap().insert(t * 1_000_000 + k, v);
                    }
                }
                tx.send(mine).unwrap();
            });
        }
        drop(tx);
        // The collector checks every map and drops it here: remote frees into the heap.
        let mut seen = HashSet::new();
        for (n, map) in rx.iter().enumerate() {
            assert_eq!(map.len(), 5000);
            let t = (0..4u64)
                .find(|t| map[&1][0] == (1 ^ t) as u8)
                .expect("a thread's map");
            assert!(seen.insert(t), "map {n} twice");
            for (k, v) in &map {
                assert_eq!(v.len(), (k % 97) as usize + 1);
                assert!(v.iter().all(|&b| b == (k ^ t) as u8));
            }
        }
        assert_eq!(seen.len(), 4);
    });
    let m = shared.into_inner().unwrap();
    assert_eq!(m.len(), 4 * 500);
    for (k, v) in &m {
        assert_eq!(v[..], [(k / 1_000_000) as u8]);
    }
    drop(m);
    let s = heap.stats();
    assert_eq!(s.in_use, 0, "all maps dropped, yet in use: {s}");
}

#[test]
fn an_owned_heap_moves_with_its_collection() {
    let _g = serial();
    let v = {
        let heap = Heap::new();
        let mut v: HVec<String, Heap> = HVec::new_in(heap);
        for i in 0..1000 {
            v.push(format!("item {i}"));
        }
        v
    };
    let v = std::thread::spawn(move || {
        assert_eq!(v[999], "item 999");
        v
    })
    .join()
    .unwrap();
    let b: HBox<[u32; 64], &Heap> = HBox::new_in([7; 64], v.allocator());
    assert_eq!(b.iter().sum::<u32>(), 7 * 64);
    drop(b);
    assert!(v.allocator().stats().in_use > 0);
    drop(v); // elements first, then the heap
}

#[test]
fn drop_with_live_blocks_returns_every_page() {
    let _g = serial();
    let heap = Heap::new();
    let mut addrs = Vec::new();
    // Small and medium blocks from two threads (two lanes, so two arenas), and huge blocks.
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let heap = &heap;
            let h = s.spawn(move || {
                let mut mine = Vec::new();
                for i in 0..20_000usize {
                    let size = 16 + (i * 37) % 3000;
                    let v: HVec<u8, &Heap> = {
                        let mut v = HVec::with_capacity_in(size, heap);
                        v.resize(size, t);
                        v
                    };
                    if i % 1000 == 0 {
                        mine.push(v.as_ptr() as usize);
                    }
                    std::mem::forget(v); // leaked into the heap
                }
                mine
            });
            addrs.extend(h.join().unwrap());
        }
    });
    for n in [5usize << 20, 40 << 20] {
        let mut v: HVec<u8, &Heap> = HVec::with_capacity_in(n, &heap);
        v.resize(n, 1);
        addrs.push(v.as_ptr() as usize);
        addrs.push(v.as_ptr() as usize + n - 1);
        std::mem::forget(v);
    }
    let s = heap.stats();
    assert!(s.in_use > 2 * 20_000 * 16 + (45 << 20), "{s}");
    assert_eq!(s.huge_blocks, 2, "the 5 and 40 MiB blocks are huge: {s}");
    for &a in &addrs {
        assert!(mapping_of(a).is_some(), "{a:x} should be mapped");
    }
    let before = rss();
    drop(heap);
    let after = rss();
    for &a in &addrs {
        assert!(mapping_of(a).is_none(), "{a:x} still mapped after the drop");
    }
    assert!(
        before.saturating_sub(after) > 60 << 20,
        "the drop gave back only {} KiB of RSS",
        before.saturating_sub(after) >> 10
    );
}

#[test]
fn thousands_of_heaps_keep_rss_and_address_space_flat() {
    let _g = serial();
    let round = |i: usize| {
        let heap = Heap::new();
        let mut v: HVec<u64, &Heap> = HVec::new_in(&heap);
        v.extend(0..2000u64 + i as u64 % 100);
        // 1 MiB, touched, leaked: the drop reclaims it.
        let big = heap
            .allocate(Layout::from_size_align(1 << 20, 64).unwrap())
            .unwrap();
        // SAFETY: a fresh block of 1 MiB.
        unsafe { big.cast::<u8>().as_ptr().write_bytes(9, 1 << 20) };
        let mut m: hashbrown::HashMap<u32, u32, hashbrown::DefaultHashBuilder, &Heap> =
            hashbrown::HashMap::with_hasher_in(Default::default(), &heap);
        m.extend((0..500).map(|k| (k, k * 2)));
        assert_eq!(m[&499], 998);
        // SAFETY: inside the block.
        assert_eq!(unsafe { *big.cast::<u8>().as_ptr().add(12345) }, 9);
        drop(m);
        drop(v);
    };
    for i in 0..200 {
        round(i);
    }
    let (rss0, vs0) = (rss(), vsize());
    let mut rss_max = rss0;
    for i in 0..3000 {
        round(i);
        if i % 100 == 0 {
            rss_max = rss_max.max(rss());
        }
    }
    let (rss1, vs1) = (rss(), vsize());
    eprintln!(
        "3000 heaps: RSS {} -> {} KiB (max {}), address space {} -> {} MiB",
        rss0 >> 10,
        rss1 >> 10,
        rss_max >> 10,
        vs0 >> 20,
        vs1 >> 20
    );
    assert!(rss_max < rss0 + (8 << 20), "RSS grew with heap churn");
    assert!(
        vs1 < vs0 + (256 << 20),
        "address space grew with heap churn"
    );
}

#[test]
fn stats_are_per_heap() {
    let _g = serial();
    let a = Heap::new();
    let b = Heap::new();
    let va: HVec<u8, &Heap> = HVec::with_capacity_in(100_000, &a);
    let sa = a.stats();
    let sb = b.stats();
    assert!(sa.in_use >= 100_000, "{sa}");
    assert_eq!(sb.in_use, 0, "{sb}");
    drop(va);
    assert!(a.trim(0) > 0 || a.stats().top < 1 << 20);
    assert_eq!(a.stats().in_use, 0);
}

fn misuse(case: &str) {
    let l = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: none: each case breaks the contract on purpose.
    unsafe {
        match case {
            "global_free_of_heap_block" => {
                let h = Heap::new();
                let p = h.allocate(l).unwrap().cast::<u8>();
                std::alloc::dealloc(p.as_ptr(), l);
            }
            "global_free_of_heap_huge_block" => {
                let h = Heap::new();
                let big = Layout::from_size_align(64 << 20, 8).unwrap();
                let p = h.allocate(big).unwrap().cast::<u8>();
                std::alloc::dealloc(p.as_ptr(), big);
            }
            "heap_free_of_global_block" => {
                let h = Heap::new();
                let p = std::alloc::alloc(l);
                h.deallocate(NonNull::new(p).unwrap(), l);
            }
            "free_into_another_heap" => {
                let a = Heap::new();
                let b = Heap::new();
                let p = a.allocate(l).unwrap().cast::<u8>();
                b.deallocate(p, l);
            }
            "huge_into_another_heap" => {
                let a = Heap::new();
                let b = Heap::new();
                let big = Layout::from_size_align(64 << 20, 8).unwrap();
                let p = a.allocate(big).unwrap().cast::<u8>();
                b.deallocate(p, big);
            }
            "free_after_the_heap_was_dropped" => {
                let h = Heap::new();
                let p = h.allocate(l).unwrap().cast::<u8>();
                drop(h);
                std::alloc::dealloc(p.as_ptr(), l);
            }
            "double_free_into_a_heap" => {
                let h = Heap::new();
                let p = h.allocate(l).unwrap().cast::<u8>();
                h.deallocate(p, l);
                h.deallocate(p, l);
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn misuse_across_heaps_aborts_with_a_message() {
    if let Some(case) = child_case() {
        misuse(&case);
        println!("CHILD SURVIVED");
        return;
    }
    // Its children run while this process waits: held so that its own allocations and its
    // thread's stack do not move the figures the other tests read.
    let _g = serial();
    for (case, want) in [
        (
            "global_free_of_heap_block",
            "a block of an arena_malloc::Heap: free it through",
        ),
        (
            "global_free_of_heap_huge_block",
            "a block of an arena_malloc::Heap: free it through",
        ),
        ("heap_free_of_global_block", "not this heap's"),
        ("free_into_another_heap", "a block of another heap"),
        ("huge_into_another_heap", "a block of another heap"),
        ("free_after_the_heap_was_dropped", "that was dropped"),
        ("double_free_into_a_heap", "double free"),
    ] {
        let line = expect_abort("misuse_across_heaps_aborts_with_a_message", case, want);
        eprintln!("{case:34} -> {line}");
    }
}
