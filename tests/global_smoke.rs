//! Smoke test of the `GlobalAlloc` front: the allocator installed as the global one, basic
//! collections, alignment, zeroing, realloc contents, impossible sizes.

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

#[test]
fn collections_work() {
    let mut v: Vec<String> = Vec::new();
    for i in 0..10_000 {
        v.push(format!("item {i}"));
    }
    let total: usize = v.iter().map(|s| s.len()).sum();
    assert!(total > 0);
    let mut m = std::collections::HashMap::new();
    for (i, s) in v.iter().enumerate() {
        m.insert(s.clone(), i);
    }
    assert_eq!(m["item 777"], 777);
}

#[test]
fn alignment_up_to_2mib() {
    let mut align = 1;
    while align <= 2 << 20 {
        for &size in &[1usize, 8, 24, 100, 4096, 70_000, 300_000] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero layout.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "align {align} size {size}");
            // SAFETY: p is valid for size bytes.
            unsafe {
                std::ptr::write_bytes(p, 0xAB, size);
                GLOBAL.dealloc(p, l);
            }
        }
        align *= 2;
    }
}

#[test]
fn zeroed_memory_is_zero() {
    for &size in &[
        1usize,
        16,
        100,
        1000,
        5000,
        40_000,
        100_000,
        200_000,
        5 << 20,
    ] {
        for _ in 0..3 {
            let l = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: non-zero layout.
            unsafe {
                // dirty some memory of the same size first
                let d = GLOBAL.alloc(l);
                std::ptr::write_bytes(d, 0xFF, size);
                GLOBAL.dealloc(d, l);
                let p = GLOBAL.alloc_zeroed(l);
                assert!(!p.is_null());
                let s = std::slice::from_raw_parts(p, size);
                assert!(s.iter().all(|&b| b == 0), "size {size}");
                GLOBAL.dealloc(p, l);
            }
        }
    }
}

#[test]
fn realloc_keeps_contents() {
    let l = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: the block is used within its current size at every step.
    unsafe {
        let mut p = GLOBAL.alloc(l);
        let mut size = 16;
        for i in 0..16 {
            *p.add(i) = i as u8;
        }
        while size < (8 << 20) {
            let new = size * 3 / 2 + 7;
            p = GLOBAL.realloc(p, Layout::from_size_align(size, 8).unwrap(), new);
            assert!(!p.is_null());
            for i in 0..16 {
                assert_eq!(*p.add(i), i as u8);
            }
            assert_eq!(*p.add(size - 1), if size == 16 { 15 } else { 0xEE });
            std::ptr::write_bytes(p.add(16), 0xEE, new - 16);
            size = new;
        }
        // shrink back down
        while size > 16 {
            let new = size / 3 + 16;
            p = GLOBAL.realloc(p, Layout::from_size_align(size, 8).unwrap(), new);
            for i in 0..16 {
                assert_eq!(*p.add(i), i as u8);
            }
            assert_eq!(*p.add(new - 1), 0xEE);
            size = new;
            if size < 40 {
                break;
            }
        }
        GLOBAL.dealloc(p, Layout::from_size_align(size, 8).unwrap());
    }
}

#[test]
fn impossible_sizes_return_null() {
    for &size in &[usize::MAX - 100, isize::MAX as usize, 1 << 62] {
        let l = Layout::from_size_align(size & !15, 16);
        if let Ok(l) = l {
            // SAFETY: non-zero layout; null is the expected answer.
            let p = unsafe { GLOBAL.alloc(l) };
            assert!(p.is_null(), "size {size}");
        }
    }
    // SAFETY: a too-large realloc returns null and keeps the block.
    unsafe {
        let l = Layout::from_size_align(64, 8).unwrap();
        let p = GLOBAL.alloc(l);
        *p = 42;
        let q = GLOBAL.realloc(p, l, usize::MAX / 2);
        assert!(q.is_null());
        assert_eq!(*p, 42);
        GLOBAL.dealloc(p, l);
    }
}

#[test]
fn stats_report() {
    let v = vec![0u8; 1 << 20];
    let s = arena_malloc::stats();
    assert!(s.arenas >= 1);
    assert!(s.mapped >= 1 << 20);
    assert!(s.in_use >= 1 << 20);
    let text = s.to_string();
    assert!(text.contains("in use"));
    drop(v);
}
