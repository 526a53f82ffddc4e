//! The C API's semantics (src/capi.rs), called as `arena_malloc::capi::*` with the allocator
//! also installed as the global one, so both fronts share one heap: the NULL and 0 cases of
//! `realloc`/`free`, overflow and `errno` of `calloc`/`reallocarray`, the error codes of
//! `posix_memalign`/`aligned_alloc`, the aligned allocators, `malloc_usable_size`,
//! `mallinfo2`, `mallopt` and `malloc_trim`.

use arena_malloc::capi::*;
use core::ffi::c_void;
use core::ptr;

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

fn errno() -> i32 {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() }
}
fn set_errno(e: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e };
}
fn page() -> usize {
    // SAFETY: sysconf is always safe.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

#[test]
fn malloc_zero_is_unique_and_freeable() {
    // SAFETY: plain C API use.
    unsafe {
        let a = malloc(0);
        let b = malloc(0);
        assert!(!a.is_null() && !b.is_null() && a != b);
        free(a);
        free(b);
        free(ptr::null_mut());
        cfree(ptr::null_mut());
    }
}

#[test]
fn malloc_impossible_sets_enomem() {
    // SAFETY: plain C API use.
    unsafe {
        set_errno(0);
        assert!(malloc(usize::MAX).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        set_errno(0);
        assert!(malloc(usize::MAX / 2).is_null());
        assert_eq!(errno(), libc::ENOMEM);
    }
}

#[test]
fn calloc_zeroes_and_overflow_gives_null_enomem() {
    // SAFETY: plain C API use.
    unsafe {
        for &(n, s) in &[
            (1usize, 1usize),
            (10, 100),
            (1000, 1000),
            (3, 300_000),
            (0, 5),
        ] {
            // Dirty some memory first so that reuse would show.
            let d = malloc(n * s + 64).cast::<u8>();
            ptr::write_bytes(d, 0xAB, n * s + 64);
            free(d.cast());
            let p = calloc(n, s).cast::<u8>();
            assert!(!p.is_null());
            assert!(
                (0..n * s).all(|i| *p.add(i) == 0),
                "calloc({n}, {s}) not zeroed"
            );
            free(p.cast());
        }
        set_errno(0);
        assert!(calloc(usize::MAX / 2 + 1, 2).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        set_errno(0);
        assert!(calloc(1 << 33, 1 << 33).is_null());
        assert_eq!(errno(), libc::ENOMEM);
    }
}

#[test]
fn realloc_null_and_zero_as_glibc() {
    // SAFETY: plain C API use.
    unsafe {
        // realloc(NULL, n) is malloc(n).
        let p = realloc(ptr::null_mut(), 100).cast::<u8>();
        assert!(!p.is_null());
        for i in 0..100 {
            *p.add(i) = i as u8;
        }
        // Growth and shrink keep contents, through every size range.
        let mut q = p;
        for &n in &[200usize, 5000, 100_000, 1 << 20, 3 << 20, 64, 100] {
            q = realloc(q.cast(), n).cast();
            assert!(!q.is_null());
            assert!(malloc_usable_size(q.cast()) >= n);
            assert!(
                (0..64).all(|i| *q.add(i) == i as u8),
                "contents lost at {n}"
            );
        }
        // realloc(p, 0) frees p and returns NULL (glibc's REALLOC_ZERO_BYTES_FREES).
        assert!(realloc(q.cast(), 0).is_null());
        // realloc(NULL, 0) is malloc(0): a unique block.
        let z = realloc(ptr::null_mut(), 0);
        assert!(!z.is_null());
        free(z);
        // Failure keeps the old block and sets ENOMEM.
        let p = malloc(32).cast::<u8>();
        *p = 7;
        set_errno(0);
        assert!(realloc(p.cast(), usize::MAX - 4096).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        assert_eq!(*p, 7);
        free(p.cast());
    }
}

#[test]
fn reallocarray_overflow() {
    // SAFETY: plain C API use.
    unsafe {
        let p = reallocarray(ptr::null_mut(), 10, 10);
        assert!(!p.is_null());
        set_errno(0);
        assert!(reallocarray(p, usize::MAX / 4, 8).is_null());
        assert_eq!(errno(), libc::ENOMEM);
        let q = reallocarray(p, 100, 10);
        assert!(!q.is_null());
        assert!(malloc_usable_size(q) >= 1000);
        free(q);
    }
}

#[test]
fn posix_memalign_errors_and_alignment() {
    // SAFETY: plain C API use.
    unsafe {
        let mut out: *mut c_void = 0x1234 as *mut c_void;
        for bad in [0usize, 1, 2, 4, 12, 24, 48, 100, 4097] {
            assert_eq!(
                posix_memalign(&mut out, bad, 16),
                libc::EINVAL,
                "align {bad}"
            );
            assert_eq!(out as usize, 0x1234, "out written on EINVAL");
        }
        assert_eq!(posix_memalign(&mut out, 64, usize::MAX - 100), libc::ENOMEM);
        assert_eq!(out as usize, 0x1234, "out written on ENOMEM");
        for shift in 3..=22 {
            let al = 1usize << shift;
            for &n in &[0usize, 1, 100, 5000, 200_000] {
                assert_eq!(posix_memalign(&mut out, al, n), 0);
                assert!(!out.is_null());
                assert_eq!(out as usize % al, 0, "align {al} size {n}");
                assert!(malloc_usable_size(out) >= n);
                ptr::write_bytes(out.cast::<u8>(), 1, n);
                free(out);
            }
        }
    }
}

#[test]
fn aligned_alloc_memalign_valloc_pvalloc() {
    // SAFETY: plain C API use.
    unsafe {
        set_errno(0);
        assert!(aligned_alloc(0, 64).is_null());
        assert_eq!(errno(), libc::EINVAL);
        set_errno(0);
        assert!(aligned_alloc(48, 96).is_null());
        assert_eq!(errno(), libc::EINVAL);
        for shift in 0..=20 {
            let al = 1usize << shift;
            let p = aligned_alloc(al, al * 3);
            assert!(!p.is_null() && p as usize % al == 0);
            free(p);
            let q = memalign(al, 1000);
            assert!(!q.is_null() && q as usize % al == 0);
            free(q);
        }
        // memalign rounds a non-power-of-two alignment up, as glibc does.
        let q = memalign(48, 100);
        assert!(!q.is_null() && q as usize % 64 == 0);
        free(q);
        set_errno(0);
        assert!(memalign(usize::MAX / 2 + 2, 10).is_null());
        assert_ne!(errno(), 0);
        let pg = page();
        let v = valloc(100);
        assert!(!v.is_null() && v as usize % pg == 0);
        free(v);
        let pv = pvalloc(pg + 1);
        assert!(!pv.is_null() && pv as usize % pg == 0);
        assert!(malloc_usable_size(pv) >= 2 * pg);
        free(pv);
        let pv0 = pvalloc(0);
        assert!(!pv0.is_null() && pv0 as usize % pg == 0);
        free(pv0);
    }
}

#[test]
fn usable_size_covers_request() {
    // SAFETY: plain C API use.
    unsafe {
        assert_eq!(malloc_usable_size(ptr::null_mut()), 0);
        for n in (0..70_000).step_by(331).chain([1 << 20, 5 << 20]) {
            let p = malloc(n);
            let u = malloc_usable_size(p);
            assert!(u >= n, "usable {u} < {n}");
            assert!(
                u <= n + 4096 + 64 || n >= 128 << 10,
                "usable {u} for {n}: too much slack"
            );
            // Every usable byte is writable.
            ptr::write_bytes(p.cast::<u8>(), 0x5A, u);
            free(p);
        }
    }
}

#[test]
fn mallinfo2_is_consistent() {
    // SAFETY: plain C API use.
    unsafe {
        let before = mallinfo2();
        let v: Vec<*mut c_void> = (0..1000).map(|i| malloc(100 + i)).collect();
        let huge = malloc(8 << 20);
        let mid = mallinfo2();
        assert!(mid.arena > 0);
        // (Other tests of this binary run meanwhile and map and unmap huge blocks of their own,
        // so only what this one holds is certain.)
        assert!(mid.hblks >= 1, "{before:?} {mid:?}");
        assert!(mid.hblkhd >= 8 << 20, "{before:?} {mid:?}");
        assert!(mid.uordblks >= 100_000, "{mid:?}");
        assert!(mid.keepcost <= mid.fordblks);
        // In use + free + cached never exceeds what the arenas hold plus the huge blocks.
        assert!(mid.uordblks <= mid.arena + mid.hblkhd, "{mid:?}");
        assert!(mid.fordblks + mid.fsmblks <= mid.arena, "{mid:?}");
        free(huge);
        for p in v {
            free(p);
        }
        let after = mallinfo2();
        assert!(after.hblkhd + (8 << 20) <= mid.hblkhd, "{after:?}");
        malloc_stats();
    }
}

#[test]
fn mallopt_settings() {
    // SAFETY: plain C API use.
    unsafe {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        assert_eq!(mallopt(M_MMAP_THRESHOLD, 64 << 10), 1);
        let before = mallinfo2().hblks;
        let p = malloc(100 << 10);
        assert!(
            mallinfo2().hblks > before,
            "100 KiB should be mmapped at a 64 KiB threshold"
        );
        free(p);
        assert_eq!(
            mallopt(M_MMAP_THRESHOLD, i32::MAX),
            0,
            "above the maximum threshold"
        );
        assert_eq!(mallopt(M_MMAP_THRESHOLD, 128 << 10), 1);
        assert_eq!(mallopt(M_TRIM_THRESHOLD, 256 << 10), 1);
        assert_eq!(mallopt(M_TOP_PAD, 64 << 10), 1);
        assert_eq!(mallopt(M_ARENA_MAX, 4), 1);
        assert_eq!(mallopt(M_ARENA_MAX, 0), 0);
        assert_eq!(mallopt(12345, 1), 0, "unknown parameter");
    }
}

#[test]
fn malloc_trim_releases() {
    // SAFETY: plain C API use.
    unsafe {
        let v: Vec<*mut c_void> = (0..4000).map(|_| malloc(2000)).collect();
        for p in v {
            free(p);
        }
        let r = malloc_trim(0);
        assert!(r == 0 || r == 1);
        // A second trim right after has nothing left to give back, or little.
        let _ = malloc_trim(0);
        let p = malloc(100);
        assert!(!p.is_null());
        free(p);
    }
}

#[test]
fn c_and_rust_fronts_share_one_heap() {
    // A block from the C front freed by the Rust front and the reverse (both glibc-shaped).
    // SAFETY: same heap behind both fronts; layouts match the C sizes.
    unsafe {
        let layout = std::alloc::Layout::from_size_align(200, 16).unwrap();
        let p = std::alloc::alloc(layout);
        assert!(malloc_usable_size(p.cast()) >= 200);
        free(p.cast());
        let q = malloc(200).cast::<u8>();
        std::alloc::dealloc(q, layout);
    }
}

#[test]
fn threads_with_c_api() {
    let hs: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                // SAFETY: plain C API use; each block is freed once.
                unsafe {
                    let mut v = Vec::new();
                    for i in 0..20_000usize {
                        let n = (i * 7919 + t * 13) % 3000;
                        let p = match i % 4 {
                            0 => calloc(1, n),
                            1 => memalign(64, n),
                            2 => realloc(malloc(n / 2 + 1), n + 1),
                            _ => malloc(n),
                        };
                        assert!(!p.is_null());
                        v.push(p as usize);
                        if v.len() > 100 {
                            free(v.swap_remove(i % 100) as *mut c_void);
                        }
                    }
                    v
                }
            })
        })
        .collect();
    // Cross-thread frees: the main thread frees what the others kept.
    for h in hs {
        for p in h.join().unwrap() {
            // SAFETY: live block from another thread.
            unsafe { free(p as *mut c_void) };
        }
    }
}
