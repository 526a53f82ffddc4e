//! Settings read from the environment at the heap's first use (docs/tuning.md), checked in
//! child processes: the heap reads them once, so each setting needs a fresh process.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

const CHILD: &str = "ENV_SETTINGS_CHILD";

/// In a child: frees a 2 MiB huge block and prints the mmap threshold that follows.
fn child() {
    let l = Layout::from_size_align(2 << 20, 16).unwrap();
    // SAFETY: a non-zero layout; freed once, with the same layout.
    unsafe {
        let p = GLOBAL.alloc(l);
        assert!(!p.is_null());
        p.write_bytes(7, l.size());
        GLOBAL.dealloc(p, l);
    }
    println!("mmap_threshold={}", arena_malloc::stats().mmap_threshold);
}

/// Runs this test in a child with `env` set; returns the threshold it printed.
fn threshold_with(env: &[(&str, &str)]) -> usize {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "a_chosen_trim_threshold_stops_adaptation",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .env_remove("ARENA_MALLOC_TRIM_THRESHOLD")
    .env_remove("ARENA_MALLOC_MMAP_THRESHOLD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {text}");
    // The harness prints the test's name on the same line, before the child's output.
    let at = text
        .find("mmap_threshold=")
        .unwrap_or_else(|| panic!("no threshold in the child's output: {text}"));
    text[at + "mmap_threshold=".len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable threshold in the child's output: {text}"))
}

#[test]
fn a_chosen_trim_threshold_stops_adaptation() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    // By default, freeing a huge block raises the mmap threshold to its size (and the trim
    // threshold to twice that), as glibc's dynamic thresholds do.
    let adapted = threshold_with(&[]);
    assert!(
        adapted >= 2 << 20,
        "default: threshold {adapted} did not adapt"
    );
    // A trim threshold set in the environment is the user's choice: the huge free must not
    // overwrite it, so the thresholds stop adapting (glibc: MALLOC_TRIM_THRESHOLD_).
    let chosen = threshold_with(&[("ARENA_MALLOC_TRIM_THRESHOLD", "1m")]);
    assert_eq!(
        chosen,
        128 << 10,
        "ARENA_MALLOC_TRIM_THRESHOLD set: the mmap threshold still adapted"
    );
    // Likewise for a chosen mmap threshold.
    let mmap = threshold_with(&[("ARENA_MALLOC_MMAP_THRESHOLD", "256k")]);
    assert_eq!(
        mmap,
        256 << 10,
        "ARENA_MALLOC_MMAP_THRESHOLD set: it adapted"
    );
}
