//! With feature `override` the crate is the process's C `malloc` and owns the program break:
//! the main thread's small blocks live in the `[heap]` mapping, C code's `malloc` is ours, and
//! a thread's blocks still live in mmap'd regions.
#![cfg(feature = "override")]

mod common;

use common::{mapping_of, watchdog};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

#[test]
fn main_thread_small_blocks_live_in_the_break_heap() {
    watchdog(60);
    // The test harness runs tests on their own threads; the main arena is attached by the first
    // thread that allocates, so check through the C entry point on a block from the main arena:
    // a thread whose cache is the main arena's. Simplest: the libc symbol is ours.
    // SAFETY: plain C allocation through the exported symbol.
    let p = unsafe { libc::malloc(40) };
    assert!(!p.is_null());
    // SAFETY: p is ours: malloc_usable_size must agree with our allocator.
    let usable = unsafe { libc::malloc_usable_size(p) };
    assert_eq!(usable, unsafe { arena_malloc::capi::malloc_usable_size(p) });
    unsafe { libc::free(p) };

    // Blocks of the main arena: the first allocations of the process went there.
    let s = arena_malloc::stats();
    assert!(s.arenas >= 1);
    // The break moved past its start: the [heap] mapping exists and holds main-arena blocks.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_reports_heap_mapping",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ARENA_TEST_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("IN_HEAP"),
        "main-arena block not in [heap]: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn child_reports_heap_mapping() {
    if std::env::var("ARENA_TEST_CHILD").is_err() {
        return;
    }
    // In a fresh process whose only allocating thread so far is the main one (the harness
    // allocated on it first), a small block comes from the main arena, on the break.
    let b = Box::new([3u8; 32]);
    let line = mapping_of(b.as_ptr() as usize).unwrap_or_default();
    let heap_start = {
        // SAFETY: sbrk(0) only reads the break.
        unsafe { libc::sbrk(0) as usize }
    };
    if line.contains("[heap]") {
        println!("IN_HEAP {line} brk={heap_start:#x}");
    } else {
        // harness threads may have attached the main arena first; a thread-less check:
        let v: Vec<usize> = std::thread::spawn(|| {
            (0..10)
                .map(|_| Box::into_raw(Box::new([0u8; 32])) as usize)
                .collect()
        })
        .join()
        .unwrap();
        let in_region = v
            .iter()
            .all(|&a| !mapping_of(a).unwrap_or_default().contains("[heap]"));
        println!("NOT_IN_HEAP {line} brk={heap_start:#x} thread_blocks_in_regions={in_region}");
    }
}

#[test]
fn thread_blocks_are_not_on_the_break() {
    watchdog(60);
    let addrs: Vec<usize> = std::thread::spawn(|| {
        (0..50)
            .map(|_| Box::into_raw(Box::new([1u8; 48])) as usize)
            .collect()
    })
    .join()
    .unwrap();
    for a in addrs {
        let line = mapping_of(a).unwrap();
        assert!(!line.contains("[heap]"), "{line}");
    }
}
