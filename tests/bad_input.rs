//! Misuse through the `GlobalAlloc` front ends in a one-line abort naming the problem, never
//! silent corruption or a segfault: each case runs in a child process (this binary re-run with
//! `ARENA_TEST_CHILD`), which must die by SIGABRT with the expected message. The C-ABI cases
//! (realloc of freed pointers, huge double frees, …) are in `hardening.rs`.

mod common;

use std::alloc::{GlobalAlloc, Layout};

use common::{child_case, expect_abort};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

fn misuse(case: &str) {
    let l = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: none — each case breaks the allocator's contract on purpose.
    unsafe {
        match case {
            "double_free" => {
                let p = GLOBAL.alloc(l);
                GLOBAL.dealloc(p, l);
                GLOBAL.dealloc(p, l);
            }
            "double_free_after_flush" => {
                let p = GLOBAL.alloc(l);
                GLOBAL.dealloc(p, l);
                arena_malloc::flush_thread_cache();
                GLOBAL.dealloc(p, l);
            }
            "stack_pointer" => {
                let mut x = [0u64; 8];
                std::hint::black_box(&mut x);
                GLOBAL.dealloc(x.as_mut_ptr().add(4).cast(), l);
            }
            "wild_pointer" => {
                GLOBAL.dealloc(0x5555_0000_1230usize as *mut u8, l);
            }
            "interior_pointer" => {
                let p = GLOBAL.alloc(Layout::from_size_align(256, 8).unwrap());
                GLOBAL.dealloc(p.add(64), l);
            }
            "misaligned_pointer" => {
                let p = GLOBAL.alloc(l);
                GLOBAL.dealloc(p.add(8), l);
            }
            "overwritten_header" => {
                let a = GLOBAL.alloc(l);
                let b = GLOBAL.alloc(l);
                // overflow `a` into `b`'s header (they are neighbours in a fresh arena)
                let dist = (b as usize).wrapping_sub(a as usize);
                assert!(
                    dist == 64 || (a as usize).wrapping_sub(b as usize) == 64,
                    "not neighbours"
                );
                let (lo, hi) = if dist == 64 { (a, b) } else { (b, a) };
                std::ptr::write_bytes(lo, 0x41, hi as usize - lo as usize);
                GLOBAL.dealloc(hi, l);
            }
            "write_after_free" => {
                let p = GLOBAL.alloc(l);
                let q = GLOBAL.alloc(l);
                GLOBAL.dealloc(q, l);
                GLOBAL.dealloc(p, l);
                // corrupt the freed mark stored in the freed block (word 1)
                *(p as *mut usize).add(1) ^= 0x1234_5677;
                let _ = GLOBAL.alloc(l);
                let _ = GLOBAL.alloc(l);
            }
            _ => unreachable!(),
        }
    }
}

const CASES: &[(&str, &str)] = &[
    ("double_free", "double free"),
    ("double_free_after_flush", "double free"),
    ("stack_pointer", "invalid pointer"),
    ("wild_pointer", "invalid pointer"),
    ("interior_pointer", "invalid pointer"),
    ("misaligned_pointer", "misaligned"),
    ("overwritten_header", "corrupted"),
    ("write_after_free", "write after free"),
];

#[test]
fn misuse_aborts_with_a_message() {
    if let Some(case) = child_case() {
        misuse(&case);
        println!("CHILD SURVIVED");
        return;
    }
    for (case, want) in CASES {
        let line = expect_abort("misuse_aborts_with_a_message", case, want);
        eprintln!("{case:26} -> {line}");
    }
}
