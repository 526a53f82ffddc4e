//! Real programs under `LD_PRELOAD` of the cdylib (`cargo build --release --features
//! override`): python3, a multithreaded C stress program with cross-thread frees, `sort` on a
//! large file, `git` on a repository made here, a program that forks while its threads
//! allocate, early and odd callers (constructors, dlsym, thread-exit destructors), the program
//! break as the main arena's memory, and misuse caught from C. Each child has a timeout.
//!
//! Needs `cc`, `python3`, `git` and coreutils `sort` on the PATH (see `.ci/run`). Set
//! `ARENA_MALLOC_SO` to test a prebuilt library instead of building one.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{compile_c, preloaded, run_with_timeout, scratch, Outcome};

const LIMIT: Duration = Duration::from_secs(300);

fn run(cmd: &mut Command) -> Outcome {
    run_with_timeout(cmd, LIMIT)
}

/// Runs `cmd` twice, with and without the library, and checks that both succeed with the same
/// standard output.
fn same_output(what: &str, make: impl Fn(bool) -> Command) -> String {
    let with = run(&mut make(true));
    with.assert_ok(&format!("{what} under LD_PRELOAD"));
    let without = run(&mut make(false));
    without.assert_ok(&format!("{what} without LD_PRELOAD"));
    assert_eq!(
        with.stdout, without.stdout,
        "{what}: output differs with the preload"
    );
    assert!(
        !with.stderr.contains("arena-malloc:"),
        "{what}: allocator message\n{}",
        with.stderr
    );
    with.stdout
}

fn cmd(program: &str, preload: bool) -> Command {
    if preload {
        preloaded(program)
    } else {
        let mut c = Command::new(program);
        c.env_remove("LD_PRELOAD");
        c
    }
}

const PY_WORKLOAD: &str = r#"
import hashlib, json, sys, threading
# Prove the preload is in effect when asked to.
if sys.argv[1] == "1":
    maps = open("/proc/self/maps").read()
    assert "libarena_malloc" in maps, "library not loaded"
h = hashlib.sha256()
d = {}
for i in range(200000):
    d["k%d" % i] = [i, str(i) * (i % 7), {"x": i * 1.5}]
for i in range(0, 200000, 3):
    del d["k%d" % i]
s = json.dumps(d, sort_keys=True)
h.update(s.encode())
back = json.loads(s)
assert back == d
words = sorted(set(s.split(",")), key=lambda w: (len(w), w))
h.update("".join(words[:1000]).encode())
blobs = [bytearray(n % 70000) for n in range(0, 3000000, 997)]
h.update(str(sum(len(b) for b in blobs)).encode())
res = [0] * 4
def work(t):
    acc = []
    for i in range(50000):
        acc.append(("t%d-%d" % (t, i)) * (i % 5))
        if len(acc) > 1000:
            acc = acc[500:]
    res[t] = len("".join(acc))
ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
for t in ts: t.start()
for t in ts: t.join()
h.update(str(res).encode())
print(h.hexdigest())
"#;

#[test]
fn python3_workload() {
    let out = same_output("python3", |pre| {
        let mut c = cmd("python3", pre);
        c.args(["-c", PY_WORKLOAD, if pre { "1" } else { "0" }]);
        c
    });
    assert_eq!(out.trim().len(), 64);
}

#[test]
fn c_stress_cross_thread_frees() {
    let dir = scratch("ld_preload_stress");
    let exe = compile_c("stress", &dir, &[]);
    let exe = exe.to_str().unwrap();
    let out = same_output("stress", |pre| {
        let mut c = cmd(exe, pre);
        c.args(["8", "20000"]);
        c
    });
    assert!(out.starts_with("stress ok"), "{out}");
}

#[test]
fn c_stress_timed_with_thread_churn() {
    let dir = scratch("ld_preload_stress_timed");
    let exe = compile_c("stress", &dir, &[]);
    let o = run(preloaded(&exe).args(["16", "2000", "5"]));
    o.assert_ok("stress 16 2000 5s");
    assert!(o.stdout.starts_with("stress ok"), "{}", o.stdout);
}

#[test]
fn sort_large_file() {
    let dir = scratch("ld_preload_sort");
    let input = dir.join("input.txt");
    let mut text = String::with_capacity(40 << 20);
    let mut s: u64 = 0x1234_5678_9abc_def1;
    for i in 0..600_000u64 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let width = (s % 60) as usize;
        let word: String = (0..width)
            .map(|k| (b'a' + ((s >> (k % 50)) % 26) as u8) as char)
            .collect();
        text.push_str(&format!("{word} {i} {}\n", s % 1000));
    }
    std::fs::write(&input, text).unwrap();
    let input = input.to_str().unwrap().to_owned();
    let out = same_output("sort", |pre| {
        let mut c = cmd("sort", pre);
        c.env("LC_ALL", "C")
            .args(["-S", "64M", "--parallel=2", "-k1,1", "-k2,2n"])
            .arg(&input);
        c
    });
    assert_eq!(out.lines().count(), 600_000);
}

#[test]
fn git_repository() {
    let dir = scratch("ld_preload_git");
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for i in 0..300 {
        let sub = repo.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        let body: String = (0..(i * 37 % 400))
            .map(|k| format!("line {k} of {i}\n"))
            .collect();
        std::fs::write(sub.join(format!("f{i}.txt")), body).unwrap();
    }
    let git = |args: &[&str]| {
        let mut c = preloaded("git");
        c.current_dir(&repo)
            .env("HOME", &dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
            .args(args);
        let o = run(&mut c);
        o.assert_ok(&format!("git {args:?}"));
        assert!(!o.stderr.contains("arena-malloc:"), "{}", o.stderr);
        o.stdout
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    for i in 0..300 {
        if i % 3 == 0 {
            let f = repo.join(format!("d{}", i % 10)).join(format!("f{i}.txt"));
            std::fs::write(f, format!("changed {i}\n")).unwrap();
        }
    }
    git(&["commit", "-q", "-am", "second"]);
    let log = git(&["log", "--oneline"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    let stat = git(&["diff", "--stat", "HEAD~1", "HEAD"]);
    assert!(stat.contains("100 files changed"), "{stat}");
    git(&["gc", "-q"]);
    let fsck = git(&["fsck", "--full"]);
    assert!(!fsck.contains("error"), "{fsck}");
    let files = git(&["ls-files"]);
    assert_eq!(files.lines().count(), 300);
}

#[test]
fn fork_while_allocating() {
    let dir = scratch("ld_preload_fork");
    let exe = compile_c("fork", &dir, &[]);
    let o = run(preloaded(&exe).args(["4", "150"]));
    o.assert_ok("fork 4 threads, 150 forks");
    assert!(o.stdout.contains("fork ok forks=150 bad=0"), "{}", o.stdout);
}

#[test]
fn main_arena_uses_the_program_break() {
    let dir = scratch("ld_preload_brk");
    let exe = compile_c("brk", &dir, &[]);
    let o = run(&mut preloaded(&exe));
    o.assert_ok("brk");
    assert!(o.stdout.contains("small in [heap]: yes"), "{}", o.stdout);
    assert!(o.stdout.contains("break moved: yes"), "{}", o.stdout);
}

#[test]
fn early_and_odd_callers() {
    let dir = scratch("ld_preload_early");
    let exe = compile_c("early", &dir, &["-ldl"]);
    let o = run(&mut preloaded(&exe));
    o.assert_ok("early");
    // 20 rounds of 8 threads, each with 40 keys whose destructors allocate.
    assert!(
        o.stdout.contains("early ok dtor_allocs=6400"),
        "{}",
        o.stdout
    );
}

#[test]
fn misuse_from_c_aborts_with_message() {
    let dir = scratch("ld_preload_harden");
    // Without builtins, so the compiler cannot elide the misused malloc/free pairs.
    let exe = compile_c("harden", &dir, &["-O0", "-fno-builtin"]);
    for (case, expect) in [
        ("double_free", "double free"),
        ("stack", "points into the stack"),
        ("overflow", "corrupted chunk header"),
        ("uaf_write", "write after free"),
        ("realloc_freed", "realloc(): pointer already freed"),
    ] {
        let o = run_with_timeout(preloaded(&exe).arg(case), Duration::from_secs(60));
        assert_eq!(
            o.signal(),
            Some(libc::SIGABRT),
            "{case}: {:?}\n{}",
            o.status,
            o.stderr
        );
        assert!(o.stderr.contains(expect), "{case}: {}", o.stderr);
    }
}

/// The library `dlopen`ed (not preloaded): its initial-exec TLS slot (`global::ie_slot`) takes
/// static TLS room at load time, which glibc gives from its surplus; the slot must work in the
/// main thread, in a thread that existed before the `dlopen`, and in threads started after.
#[test]
fn dlopen_with_initial_exec_tls() {
    let dir = scratch("ld_preload_dlopen");
    let exe = compile_c("dlopen", &dir, &["-ldl"]);
    let mut cmd = Command::new(&exe);
    cmd.arg(common::cdylib()).env_remove("LD_PRELOAD");
    let o = run(&mut cmd);
    o.assert_ok("dlopen");
    // 6 threads (main, one from before the dlopen, 4 after) × 20 rounds × 2000 blocks.
    assert!(
        o.stdout.contains("dlopen ok blocks=240000 bad=0"),
        "{}",
        o.stdout
    );
}
