//! With feature `override` the crate is the process's C `malloc` and owns the program break.
//! The rule for the break's arena (docs/design.md, "Who gets the main arena"): the main arena
//! is the process's main thread's alone; every other thread's blocks live in mmap'd regions,
//! however many threads there are and whichever allocates first, unless the arena cap is 1.
//!
//! A test without libtest's harness (`harness = false` in Cargo.toml): libtest runs every test
//! on a thread of its own, and the rule is about the main thread. `main` runs the checks on the
//! main thread of this process and of children with other arena caps, where no other test's
//! threads exist, and prints libtest's closing line.

mod common;

use common::mapping_of;
use std::process::Command;
use std::sync::{Arc, Barrier};

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

/// Whether `addr` lies in the `[heap]` mapping (the program break).
fn on_break(addr: usize) -> bool {
    mapping_of(addr).unwrap_or_default().ends_with("[heap]")
}

/// The rule, checked from the main thread: its block is on the break; 12 threads alive at once
/// (more than the cap of a 2-core machine), each allocating many sizes so that it refills from
/// its arena and now and then finds that arena's lock busy, have none of their blocks on it
/// (`shared`: all of them on it, the arena cap being 1). `Err` says what broke it. (A block
/// the main thread made and another thread freed may be reused by that thread from its cache:
/// the rule is about which arena carves a thread's blocks, so the threads empty their caches
/// first.)
fn arena_rule(shared: bool) -> Result<(), String> {
    // SAFETY: getpid and gettid have no preconditions.
    let main = unsafe { libc::syscall(libc::SYS_gettid) as i32 == libc::getpid() };
    if !main {
        return Err("not run on the main thread".into());
    }
    let mine = Box::new([3u8; 32]);
    if !on_break(mine.as_ptr() as usize) {
        return Err("the main thread's block is not on the break".into());
    }
    const THREADS: usize = 12;
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                // Blocks the main thread made and this thread freed (its start-up's) sit in
                // this thread's cache and would be reused: back to their arena with them, so
                // that every block below is carved by this thread's arena.
                arena_malloc::flush_thread_cache();
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                for i in 0..3000usize {
                    blocks.push(vec![t as u8; 16 + (i * 37 + t * 101) % 2000]);
                    if i % 3 == 0 {
                        blocks.swap_remove((i * 7) % blocks.len());
                    }
                }
                let on = blocks
                    .iter()
                    .filter(|b| on_break(b.as_ptr() as usize))
                    .count();
                (on, blocks.len())
            })
        })
        .collect();
    let (mut on, mut all) = (0, 0);
    for h in handles {
        let (o, n) = h.join().unwrap();
        on += o;
        all += n;
    }
    drop(mine);
    match (shared, on) {
        (false, 0) => Ok(()),
        (false, _) => Err(format!("{on} of {all} thread blocks on the break")),
        (true, _) if on == all => Ok(()),
        (true, _) => Err(format!(
            "arena cap 1: only {on} of {all} thread blocks on the break"
        )),
    }
}

/// Runs this binary again with `ARENA_MALLOC_ARENA_MAX=arena_max`, as a child that checks the
/// rule and prints `RULE OK` or `RULE FAIL <why>`.
fn rule_in_child(arena_max: &str, shared: bool) -> Result<(), String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(std::env::current_exe().unwrap())
        .env("ARENA_TEST_CHILD", if shared { "shared" } else { "rule" })
        .env("ARENA_MALLOC_ARENA_MAX", arena_max)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find(|l| l.starts_with("RULE ")) {
        Some("RULE OK") if out.status.success() => Ok(()),
        _ => Err(format!(
            "ARENA_MALLOC_ARENA_MAX={arena_max}: status {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn c_malloc_is_ours() -> Result<(), String> {
    // SAFETY: plain C allocation through the exported symbol.
    let p = unsafe { libc::malloc(40) };
    if p.is_null() {
        return Err("malloc(40) returned null".into());
    }
    // SAFETY: p is live; both report its usable size.
    let (theirs, ours) = unsafe {
        (
            libc::malloc_usable_size(p),
            arena_malloc::capi::malloc_usable_size(p),
        )
    };
    // SAFETY: p came from malloc above.
    unsafe { libc::free(p) };
    if theirs != ours {
        return Err(format!("libc's malloc_usable_size {theirs}, ours {ours}"));
    }
    Ok(())
}

fn main() {
    if let Ok(case) = std::env::var("ARENA_TEST_CHILD") {
        match arena_rule(case == "shared") {
            Ok(()) => println!("RULE OK"),
            Err(e) => println!("RULE FAIL {e}"),
        }
        return;
    }
    // A hung allocator must fail the test, not stall CI.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(120));
        eprintln!("watchdog: override_heap still running after 120 s, aborting");
        std::process::abort();
    });
    type Check = fn() -> Result<(), String>;
    let checks: [(&str, Check); 5] = [
        ("c_malloc_is_ours", c_malloc_is_ours),
        // The cap of this machine (2 per CPU), with a watchdog thread already running.
        ("main_thread_has_the_break_no_other_thread_does", || {
            arena_rule(false)
        }),
        // One thread arena for 12 threads: its lock is often busy, and the fallback that tries
        // other arenas must not take the main one.
        ("cap_2_threads_never_on_the_break", || {
            rule_in_child("2", false)
        }),
        ("cap_64_threads_never_on_the_break", || {
            rule_in_child("64", false)
        }),
        ("cap_1_shares_the_break", || rule_in_child("1", true)),
    ];
    println!("\nrunning {} tests", checks.len());
    let mut failed = Vec::new();
    for (name, check) in checks {
        match check() {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED\n{e}");
                failed.push(name);
            }
        }
    }
    let passed = checks.len() - failed.len();
    if failed.is_empty() {
        println!(
            "\ntest result: ok. {passed} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"
        );
    } else {
        println!(
            "\nfailures: {failed:?}\ntest result: FAILED. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out",
            failed.len()
        );
        std::process::exit(101);
    }
}
