//! AddressSanitizer with arena-malloc as the global allocator (feature `asan`): a heap overflow
//! into a block's slack and a use after free are reported. Needs nightly and an ASan build:
//!
//! ```text
//! RUSTFLAGS=-Zsanitizer=address cargo +nightly test --features asan --test asan \
//!     --target x86_64-unknown-linux-gnu
//! ```
//!
//! Each case runs in a child process (this test binary again, with `ARENA_MALLOC_ASAN_CASE`
//! set), because ASan aborts the process it reports in. Without the feature the same children
//! run to the end unreported — build with `ARENA_MALLOC_ASAN_DEMO=1` in the environment and
//! run with `--include-ignored` to see that. Without the feature the tests are ignored (the
//! children's accesses are undefined behaviour that only a sanitizer should run); run anyway,
//! they fail. CI runs them with the feature (`.ci/run`). Results: docs/fuzzing.md.

use std::process::Command;

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

fn enabled() -> bool {
    cfg!(feature = "asan") || option_env!("ARENA_MALLOC_ASAN_DEMO").is_some()
}

/// Runs case `name` in a child and checks ASan's verdict: reported with the feature, at the
/// planted access `at` (the poisoned bytes: `use-after-poison`), not reported without it.
fn run_case(name: &str, test: &str, at: &str) {
    if let Ok(c) = std::env::var("ARENA_MALLOC_ASAN_CASE") {
        if c == name {
            child(name);
        }
        return;
    }
    assert!(
        enabled(),
        "needs feature asan and an ASan build (see the module doc), or ARENA_MALLOC_ASAN_DEMO"
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("ARENA_MALLOC_ASAN_CASE", name)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let reported = err.contains("ERROR: AddressSanitizer");
    eprintln!(
        "{name}: child exit {:?}, ASan reported: {reported}\n{}",
        out.status.code(),
        err.lines()
            .filter(|l| l.contains("AddressSanitizer") || l.contains("SUMMARY"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    if cfg!(feature = "asan") {
        let summary = err
            .lines()
            .find(|l| l.starts_with("SUMMARY: AddressSanitizer"))
            .unwrap_or("");
        assert!(
            reported
                && !out.status.success()
                && summary.contains("use-after-poison")
                && summary.contains(at),
            "{name} not reported at {at} as use-after-poison:\n{err}"
        );
    } else {
        assert!(!reported, "{name} reported without the feature?\n{err}");
    }
}

#[inline(never)]
fn child(name: &str) {
    match name {
        "overflow" => {
            // 20 bytes requested: the chunk has 24+ usable bytes, so byte 20 is inside our
            // chunk: only the poisoned slack tells ASan it is past the request.
            let mut v: Vec<u8> = Vec::with_capacity(20);
            let p = v.as_mut_ptr();
            // SAFETY: none: this is the bug ASan must report.
            unsafe { std::ptr::write_volatile(p.add(20), 1) };
            std::hint::black_box(&mut v);
        }
        "use_after_free" => {
            let b = Box::new([7u64; 8]);
            let p = Box::into_raw(b);
            // SAFETY: p came from Box::into_raw.
            drop(unsafe { Box::from_raw(p) });
            // SAFETY: none: this is the bug ASan must report (offset 32: past the link words).
            let x = unsafe { std::ptr::read_volatile(p.cast::<u64>().add(4)) };
            std::hint::black_box(x);
        }
        _ => unreachable!(),
    }
    eprintln!("{name}: child finished without a report");
}

#[test]
#[cfg_attr(not(feature = "asan"), ignore = "needs feature asan and an ASan build")]
fn heap_overflow_is_reported() {
    run_case("overflow", "heap_overflow_is_reported", "write_volatile");
}

#[test]
#[cfg_attr(not(feature = "asan"), ignore = "needs feature asan and an ASan build")]
fn use_after_free_is_reported() {
    run_case(
        "use_after_free",
        "use_after_free_is_reported",
        "read_volatile",
    );
}
