//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Aborts the whole test process if it is still running after `secs` seconds: allocator bugs
/// show up as hangs, and a hung test must fail, not stall CI.
pub fn watchdog(secs: u64) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        eprintln!("watchdog: test still running after {secs} s, aborting");
        std::process::abort();
    });
}

/// A small deterministic PRNG (xorshift64*).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for the test's own `seed`, mixed with `ARENA_TEST_SEED` when that is set
    /// (`.ci/soak.sh` sets a new one per run and prints it, so a failure can be replayed).
    pub fn new(seed: u64) -> Self {
        let extra: u64 = std::env::var("ARENA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let seed = seed ^ extra.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A size spread over orders of magnitude: mostly small, sometimes up to `max`.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = self.below(64 - (max as u64).leading_zeros() as u64 + 1);
        let cap = (1u64 << bits).min(max as u64);
        1 + self.below(cap) as usize
    }
}

/// Fills `len` bytes at `p` with a pattern derived from `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of writes.
pub unsafe fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: caller: `p` is writable for `len` bytes and `i < len`.
        unsafe { *p.add(i) = seed.wrapping_add(i as u8).wrapping_mul(31) };
    }
}

/// Checks the pattern written by [`fill`]; samples long blocks (every byte of the first and
/// last 256, and every 61st in between).
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
pub unsafe fn check(p: *const u8, len: usize, seed: u8) -> bool {
    // SAFETY: caller: `p` is readable for `len` bytes and `i < len`.
    let ok = |i: usize| unsafe { *p.add(i) == seed.wrapping_add(i as u8).wrapping_mul(31) };
    if len <= 512 {
        return (0..len).all(ok);
    }
    (0..256).all(ok) && (len - 256..len).all(ok) && (256..len - 256).step_by(61).all(ok)
}

/// Runs this test binary again with `ARENA_TEST_CHILD=<case>` and the test filter `test`, and
/// returns its output.
pub fn run_child(test: &str, case: &str) -> Output {
    run_child_for(test, case, 60)
}

/// [`run_child`] with a time limit of `secs` seconds.
pub fn run_child_for(test: &str, case: &str, secs: u32) -> Output {
    run_child_with(test, case, secs, &[])
}

/// [`run_child_for`] with extra environment variables for the child.
pub fn run_child_with(test: &str, case: &str, secs: u32, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    Command::new("timeout")
        .envs(env.iter().copied())
        .arg(secs.to_string())
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("ARENA_TEST_CHILD", case)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("spawn child")
}

/// Runs child case `case` of test `test` (see [`run_child`]) and asserts that it died by
/// SIGABRT, before it could print `CHILD SURVIVED`, with `want` in its `arena-malloc:` line;
/// returns that line.
pub fn expect_abort(test: &str, case: &str, want: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let out = run_child(test, case);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("arena-malloc:"))
        .unwrap_or("")
        .to_string();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "case {case}: status {:?}, stderr: {err}",
        out.status
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("CHILD SURVIVED"),
        "case {case}: the abort came only after the case (at thread exit)"
    );
    assert!(
        line.contains(want),
        "case {case}: expected '{want}' in the abort message, got: {err}"
    );
    line
}

/// For a test that reads process-wide figures (stats, RSS, thread counts): runs it in a child
/// process of its own (this binary again, filtered to `test`, within `secs` seconds), where no
/// other test allocates and no other test's thread exists. Returns true in that child (run the
/// body there); in the parent, asserts that the child ran exactly this test and passed, and
/// returns false (done).
pub fn solo(test: &str, secs: u32) -> bool {
    solo_with(test, secs, &[])
}

/// [`solo`] with extra environment variables for the child (settings read once at start).
pub fn solo_with(test: &str, secs: u32, env: &[(&str, &str)]) -> bool {
    if child_case().as_deref() == Some("solo") {
        return true;
    }
    let out = run_child_with(test, "solo", secs, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test}: child failed ({:?}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// The child case selected for this process, if any.
pub fn child_case() -> Option<String> {
    std::env::var("ARENA_TEST_CHILD").ok()
}

/// Resident set size of this process (bytes), from /proc/self/statm.
pub fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The line of /proc/self/maps whose range holds `addr`, if any.
pub fn mapping_of(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let range = line.split_whitespace().next()?;
        let (a, b) = range.split_once('-')?;
        let a = usize::from_str_radix(a, 16).ok()?;
        let b = usize::from_str_radix(b, 16).ok()?;
        if addr >= a && addr < b {
            return Some(line.to_string());
        }
    }
    None
}

// --- child processes with timeouts, the LD_PRELOAD library, C programs ---

/// What a child left behind.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Outcome {
    /// The signal that killed the child, if any.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal()
    }
    /// Panics with the child's output unless it exited with status 0.
    pub fn assert_ok(&self, what: &str) {
        assert!(
            !self.timed_out && self.status.success(),
            "{what}: {:?} (timed out: {})\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.timed_out,
            tail(&self.stdout),
            tail(&self.stderr)
        );
    }
}

fn tail(s: &str) -> &str {
    let n = s.len();
    if n > 4000 {
        let mut i = n - 4000;
        while !s.is_char_boundary(i) {
            i += 1;
        }
        &s[i..]
    } else {
        s
    }
}

/// Runs `cmd` to completion or until `limit`, killing it (SIGKILL) then. Stdout and stderr are
/// collected on threads so a chatty child never blocks on a full pipe.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Outcome {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A grandchild may hold the pipes open after a kill: don't wait for it forever.
    let join = |t: std::thread::JoinHandle<Vec<u8>>| -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            String::from_utf8_lossy(&t.join().unwrap()).into_owned()
        } else {
            String::from("<output not collected: pipe still open>")
        }
    };
    Outcome {
        status,
        stdout: join(t_out),
        stderr: join(t_err),
        timed_out,
    }
}

/// The crate's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory for this test binary (under `target/`), made empty on first use.
pub fn scratch(name: &str) -> PathBuf {
    let d = root().join("target").join("test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `LD_PRELOAD` library. `ARENA_MALLOC_SO` names a prebuilt one; otherwise it is built
/// once per test binary with `cargo build --release -p arena-malloc-preload` (the crate
/// with `override`, as a cdylib) into its own target
/// directory (`target/preload`), so the build never waits on the lock of the `cargo test` that
/// runs us.
pub fn cdylib() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        if let Ok(p) = std::env::var("ARENA_MALLOC_SO") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "ARENA_MALLOC_SO={} is not a file", p.display());
            return p;
        }
        let target = root().join("target").join("preload");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root())
            .args(["build", "--release", "-p", "arena-malloc-preload"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        let o = run_with_timeout(&mut cmd, Duration::from_secs(900));
        o.assert_ok("cargo build --release -p arena-malloc-preload");
        let so = target.join("release").join("libarena_malloc.so");
        assert!(so.is_file(), "{} missing after build", so.display());
        so
    })
}

/// Compiles `tests/c/<name>.c` with `cc -O2 -pthread` (plus `extra` flags) into `dir`.
pub fn compile_c(name: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let src = root().join("tests").join("c").join(format!("{name}.c"));
    let exe = dir.join(name);
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-O2", "-g", "-pthread", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(extra);
    let o = run_with_timeout(&mut cmd, Duration::from_secs(120));
    o.assert_ok(&format!("cc {}", src.display()));
    exe
}

/// A command with the cdylib preloaded.
pub fn preloaded(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env("LD_PRELOAD", cdylib());
    c
}
