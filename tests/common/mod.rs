//! Helpers for the tests that run child processes: a timeout on every child, the cdylib
//! built once per test binary, and C programs compiled with `cc`.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
/// once per test binary with `cargo build --release --features override` into its own target
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
            .args(["build", "--release", "--features", "override", "--lib"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        let o = run_with_timeout(&mut cmd, Duration::from_secs(900));
        o.assert_ok("cargo build --release --features override");
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
