//! Hardening: each misuse of the C API must end in `abort` with a one-line message naming the
//! problem (src/heap/validate.rs `check_ptr`, heap/free.rs, heap/realloc.rs, src/arena/free.rs `free_chunk`, the safe-linked
//! cache links in src/tcache/link.rs). Each case runs in a child process: the test re-executes
//! this binary with `HARDEN_CASE` naming the case, the child performs the misuse through
//! `arena_malloc::capi`, and the parent asserts death by SIGABRT and the message on stderr.
//! A child that survives the misuse prints `CHILD SURVIVED` and leaves by `_exit(0)` (no
//! exit-time drain that could abort late), which fails the test.

// Each case body is a deliberate misuse run in a throw-away child: there is no safety
// argument to write per block.
#![allow(clippy::undocumented_unsafe_blocks)]

mod common;

use std::process::Command;
use std::time::Duration;

use arena_malloc::capi::{free, malloc, malloc_usable_size, realloc};
use core::ffi::c_void;

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

/// Runs `body` in a child (when this process is the child for `case`), or spawns the child
/// and checks that it aborted with `expect` in its message.
fn case(name: &str, expect: &str, body: unsafe fn()) {
    if std::env::var("HARDEN_CASE").as_deref() == Ok(name) {
        // SAFETY: the misuse is the point; the child dies (or reports non-detection).
        unsafe { body() };
        // A free that runs pipelined is checked at most `RING` frees later (src/tcache,
        // `ThreadCache::ring_swap`): that many frees of fresh blocks, and the misuse must have
        // been caught by then.
        for _ in 0..arena_malloc::tcache::RING {
            // SAFETY: a fresh block, freed once.
            unsafe { f(m(24)) };
        }
        // Not detected by the misuse itself: say so, and leave without the exit-time drain of
        // pipelined frees (`_exit` runs no `atexit` handler), whose abort would pass for one.
        println!("CHILD SURVIVED: {name}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: ends the process at once; nothing is left to clean up in a throw-away child.
        unsafe { libc::_exit(0) };
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HARDEN_CASE", name)
        .env("RUST_BACKTRACE", "0");
    let o = common::run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(!o.timed_out, "{name}: child hung\n{}", o.stderr);
    let line = o
        .stderr
        .lines()
        .find(|l| l.starts_with("arena-malloc: "))
        .unwrap_or("");
    println!("{name}: {line}");
    assert_eq!(
        o.signal(),
        Some(libc::SIGABRT),
        "{name}: expected SIGABRT, got {:?}\n--- stderr\n{}",
        o.status,
        o.stderr
    );
    assert!(
        !o.stdout.contains("CHILD SURVIVED"),
        "{name}: the misuse went undetected; the abort came later\n--- stderr\n{}",
        o.stderr
    );
    assert!(
        line.contains(expect),
        "{name}: message should contain {expect:?}\n--- stderr\n{}",
        o.stderr
    );
}

unsafe fn m(n: usize) -> *mut u8 {
    // SAFETY: plain allocation.
    let p = unsafe { malloc(n) }.cast::<u8>();
    assert!(!p.is_null());
    p
}

unsafe fn f(p: *mut u8) {
    // SAFETY: per the calling case.
    unsafe { free(p.cast::<c_void>()) }
}

/// Frees `count` other blocks of `size` bytes, to push a freed block out of the thread cache
/// (or through the bins) before the misuse.
unsafe fn churn(size: usize, count: usize) {
    // SAFETY: plain allocations and frees.
    unsafe {
        let v: Vec<*mut u8> = (0..count).map(|_| m(size)).collect();
        for p in v {
            f(p);
        }
    }
}

// --- double frees ---

#[test]
fn double_free_small_immediate() {
    case("double_free_small_immediate", "double free", || unsafe {
        let p = m(40);
        f(p);
        f(p);
    });
}

#[test]
fn double_free_small_after_other_frees() {
    case(
        "double_free_small_after_other_frees",
        "double free",
        || unsafe {
            let keep = m(40);
            let p = m(40);
            f(p);
            // Enough frees of the same class to flush `p` from the thread cache to its arena.
            churn(40, 500);
            f(keep);
            f(p);
        },
    );
}

#[test]
fn double_free_small_from_other_thread() {
    case(
        "double_free_small_from_other_thread",
        "double free",
        || unsafe {
            // A size class that spawning a thread does not use, so `p` stays freed.
            let p = m(3000) as usize;
            f(p as *mut u8);
            std::thread::spawn(move || f(p as *mut u8)).join().unwrap();
        },
    );
}

#[test]
fn double_free_medium_immediate() {
    // Guards above the thread cache's sizes, so they are the block's real neighbours.
    case("double_free_medium_immediate", "double free", || unsafe {
        let _guard = m(40_000);
        let p = m(60_000);
        let _fence = m(40_000);
        f(p);
        f(p);
    });
}

#[test]
fn double_free_medium_merged_into_top() {
    case(
        "double_free_medium_merged_into_top",
        "double free",
        || unsafe {
            let _guard = m(40_000);
            let p = m(60_000);
            f(p);
            f(p);
        },
    );
}

#[test]
fn double_free_medium_merged_with_neighbour() {
    case(
        "double_free_medium_merged_with_neighbour",
        "double free",
        || unsafe {
            let a = m(40_000);
            let p = m(60_000);
            let _fence = m(40_000);
            f(a);
            f(p); // merges into a's free chunk
            f(p);
        },
    );
}

#[test]
fn double_free_medium_after_other_frees() {
    case(
        "double_free_medium_after_other_frees",
        "double free",
        || unsafe {
            let _guard = m(40_000);
            let p = m(60_000);
            let _fence = m(40_000);
            f(p);
            let v: Vec<*mut u8> = (0..20).map(|i| m(50_000 + i * 1000)).collect();
            for q in v {
                f(q);
            }
            f(p);
        },
    );
}

#[test]
fn double_free_huge_immediate() {
    case(
        "double_free_huge_immediate",
        "double free of a huge block",
        || unsafe {
            let p = m(4 << 20);
            f(p);
            f(p);
        },
    );
}

#[test]
fn double_free_huge_after_other_frees() {
    case(
        "double_free_huge_after_other_frees",
        "double free of a huge block",
        || unsafe {
            let p = m(4 << 20);
            f(p);
            for _ in 0..10 {
                f(m(3 << 20));
            }
            f(p);
        },
    );
}

// --- pointers that were never ours ---

#[test]
fn free_stack_pointer() {
    case("free_stack_pointer", "points into the stack", || unsafe {
        #[repr(align(16))]
        struct Buf([u8; 256]);
        let mut b = Buf([0; 256]);
        let p = b.0.as_mut_ptr().wrapping_add(64);
        f(core::hint::black_box(p));
    });
}

#[test]
fn free_wild_pointer() {
    case("free_wild_pointer", "unmapped address", || unsafe {
        f(core::hint::black_box(0x6e75_6c6c_0000_usize) as *mut u8);
    });
}

#[test]
fn free_interior_pointer() {
    case("free_interior_pointer", "interior pointer", || unsafe {
        let p = m(200);
        f(p.add(64));
    });
}

#[test]
fn free_interior_pointer_huge() {
    case(
        "free_interior_pointer_huge",
        "invalid pointer (not a block allocated by arena-malloc)",
        || unsafe {
            let p = m(1 << 20);
            f(p.add(4096));
        },
    );
}

#[test]
fn free_misaligned_pointer() {
    case("free_misaligned_pointer", "misaligned", || unsafe {
        let p = m(200);
        f(p.add(1));
    });
}

#[test]
fn free_after_neighbour_overflow() {
    case(
        "free_after_neighbour_overflow",
        "corrupted chunk header",
        || unsafe {
            // Two blocks that are neighbours in memory (a thread cache hands out a refill batch
            // in either order).
            let v: Vec<*mut u8> = (0..8).map(|_| m(40)).collect();
            let n = malloc_usable_size(v[0].cast());
            let (a, b) = v
                .iter()
                .flat_map(|&a| v.iter().map(move |&b| (a, b)))
                .find(|&(a, b)| b as usize == a as usize + n + 16)
                .expect("no adjacent pair");
            // An overflow of `a` by 16 bytes: the next chunk's prev_size and size words.
            core::ptr::write_bytes(a, 0x41, n + 16);
            f(b);
        },
    );
}

#[test]
fn free_of_overflowing_block() {
    // The overflowing block itself goes to the arena (medium size) and meets its neighbour's
    // broken header there.
    case("free_of_overflowing_block", "heap overflow", || unsafe {
        let a = m(40_000);
        let _b = m(40_000);
        let n = malloc_usable_size(a.cast());
        core::ptr::write_bytes(a, 0x41, n + 16);
        f(a);
    });
}

// --- realloc of a freed pointer ---

#[test]
fn realloc_freed_small() {
    case(
        "realloc_freed_small",
        "realloc(): pointer already freed",
        || unsafe {
            let p = m(40);
            f(p);
            realloc(p.cast(), 100);
        },
    );
}

#[test]
fn realloc_freed_medium() {
    case(
        "realloc_freed_medium",
        "realloc(): pointer already freed",
        || unsafe {
            let _guard = m(40_000);
            let p = m(60_000);
            let _fence = m(40_000);
            f(p);
            realloc(p.cast(), 70_000);
        },
    );
}

#[test]
fn realloc_freed_medium_merged_into_top() {
    case(
        "realloc_freed_medium_merged_into_top",
        "realloc(): pointer already freed",
        || unsafe {
            let _guard = m(40_000);
            let p = m(60_000);
            f(p);
            realloc(p.cast(), 70_000);
        },
    );
}

#[test]
fn realloc_freed_huge() {
    case(
        "realloc_freed_huge",
        "realloc(): invalid pointer (unmapped address: a wild pointer, or a huge block already freed)",
        || unsafe {
            let p = m(4 << 20);
            f(p);
            realloc(p.cast(), 5 << 20);
        },
    );
}

// --- writes into freed chunks ---

#[test]
fn write_after_free_cached_link() {
    case(
        "write_after_free_cached_link",
        "overwritten (write after free?)",
        || unsafe {
            let a = m(48);
            let b = m(48);
            f(a);
            f(b);
            // A use after free that writes the first 16 bytes of `b` (the cache keeps its
            // address out of band; word 1 holds the freed mark).
            core::ptr::write_bytes(b, 0x40, 16);
            let _ = m(48); // hands out b, checks its mark: caught here
            let _ = m(48);
        },
    );
}

#[test]
fn write_after_free_cached_one_byte() {
    case(
        "write_after_free_cached_one_byte",
        "overwritten (write after free?)",
        || unsafe {
            let a = m(48);
            let b = m(48);
            f(a);
            f(b);
            // A one-bit write after free, into the freed mark (word 1). Word 0 is checked too
            // with the `expensive-checks` feature (a canary), see src/tcache/link.rs.
            *b.add(15) ^= 0x10;
            let _ = m(48);
            let _ = m(48);
        },
    );
}

#[test]
fn write_after_free_bin_links() {
    case(
        "write_after_free_bin_links",
        "corrupted free list",
        || unsafe {
            let _g = m(40_000);
            let a = m(60_000);
            let _h = m(40_000);
            let b = m(70_000);
            let _i = m(40_000);
            f(a);
            f(b);
            // Sort them into their bins, then break `b`'s links.
            let _ = m(200_000 - 4096);
            core::ptr::write_bytes(b, 0x41, 16);
            let _ = m(70_000);
            let _ = m(60_000);
        },
    );
}
