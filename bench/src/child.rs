//! Runs one benchmark process and measures it: its self-reported time, checksum and end RSS
//! (the `RESULT` line), and its peak RSS from `wait4`'s `ru_maxrss`. A crash, a non-zero
//! exit, a preload that the dynamic loader refused, or a timeout is an [`Outcome::Failed`]
//! with a short reason, never an error of the driver.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::RESULT_PREFIX;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables (e.g. `LD_PRELOAD`).
    pub env: Vec<(String, String)>,
    /// Killed (and reported as a timeout) after this long.
    pub timeout: Duration,
    /// Its stdout and stderr go to `<log_stem>.out` and `<log_stem>.err`.
    pub log_stem: PathBuf,
}

/// How one run went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The process exited 0 and printed its result.
    Ok {
        /// Seconds, as measured by the process around its work.
        time_s: f64,
        /// The workload's checksum.
        checksum: u64,
        /// Peak resident set size, KiB.
        maxrss_kib: u64,
        /// Resident set size at the end of the workload, after it freed its memory (`VmRSS`
        /// read by the process just before its `RESULT` line), KiB; `None` when the line has
        /// no `rss_end_kib` field.
        end_rss_kib: Option<u64>,
        /// The last non-empty line the process wrote to stderr, if any (e.g. a workload's
        /// own check failing).
        stderr_tail: Option<String>,
    },
    /// Anything else, with a short reason ("SIGSEGV", "exit 1: …", "timeout after 60 s").
    Failed(String),
}

/// Runs `spec` to completion (or to its timeout) and reports the outcome.
pub fn run(spec: &Spec) -> Outcome {
    let out_path = spec.log_stem.with_extension("out");
    let err_path = spec.log_stem.with_extension("err");
    let (Ok(out), Ok(err)) = (File::create(&out_path), File::create(&err_path)) else {
        return Outcome::Failed(format!("cannot create logs at {}", spec.log_stem.display()));
    };
    let mut child = match Command::new(&spec.program)
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", spec.program.display())),
    };
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return Outcome::Failed("pid out of range".into());
    };

    let start = Instant::now();
    let (status, maxrss_kib) = loop {
        match try_reap(pid) {
            Reaped::Done { status, maxrss_kib } => break (status, maxrss_kib),
            Reaped::Error(e) => return Outcome::Failed(format!("wait4: {e}")),
            Reaped::Running => {}
        }
        if start.elapsed() > spec.timeout {
            // Not reaped yet, so the pid is still ours.
            let _ = child.kill();
            while matches!(try_reap(pid), Reaped::Running) {
                std::thread::sleep(Duration::from_millis(5));
            }
            return Outcome::Failed(format!("timeout after {:.1} s", spec.timeout.as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(1));
    };

    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if let Some(line) = stderr.lines().find(|l| l.contains("cannot be preloaded")) {
        return Outcome::Failed(format!("preload refused: {}", line.trim()));
    }
    if libc::WIFSIGNALED(status) {
        return Outcome::Failed(format!(
            "killed by {}{}",
            signal_name(libc::WTERMSIG(status)),
            last_line(&stderr)
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Outcome::Failed(format!(
            "exit {}{}",
            libc::WEXITSTATUS(status),
            last_line(&stderr)
        ));
    }
    match parse_result(&stdout) {
        Some(Reported {
            time_s,
            checksum,
            end_rss_kib,
        }) => Outcome::Ok {
            time_s,
            checksum,
            maxrss_kib,
            end_rss_kib,
            stderr_tail: last_line(&stderr).strip_prefix(": ").map(str::to_string),
        },
        None => Outcome::Failed(format!(
            "no {RESULT_PREFIX} line in output{}",
            last_line(&stderr)
        )),
    }
}

enum Reaped {
    Running,
    Done {
        status: libc::c_int,
        maxrss_kib: u64,
    },
    Error(std::io::Error),
}

/// One non-blocking `wait4` on `pid`.
fn try_reap(pid: libc::pid_t) -> Reaped {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data (integers and timevals), so all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, writable locals of the right types; `pid` is our
    // own unreaped child.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    if r == pid {
        Reaped::Done {
            status,
            maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        }
    } else if r == 0 {
        Reaped::Running
    } else {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            Reaped::Running
        } else {
            Reaped::Error(e)
        }
    }
}

/// What a process says about itself on its `RESULT` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reported {
    /// Seconds around the work.
    pub time_s: f64,
    /// The workload's checksum.
    pub checksum: u64,
    /// `VmRSS` at the end, KiB (optional field `rss_end_kib`).
    pub end_rss_kib: Option<u64>,
}

/// The fields of a `RESULT time_s=… checksum=… [rss_end_kib=…]` line.
pub fn parse_result(stdout: &str) -> Option<Reported> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with(RESULT_PREFIX))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    Some(Reported {
        time_s: field("time_s")?.parse().ok()?,
        checksum: field("checksum")?.parse().ok()?,
        end_rss_kib: field("rss_end_kib").and_then(|v| v.parse().ok()),
    })
}

/// This process's resident set size now (`VmRSS` in `/proc/self/status`), KiB; `None` where
/// it cannot be read.
pub fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn last_line(stderr: &str) -> String {
    match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => {
            let l: String = l.trim().chars().take(120).collect();
            format!(": {l}")
        }
        None => String::new(),
    }
}

fn signal_name(sig: libc::c_int) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_line() {
        assert_eq!(
            parse_result("noise\nRESULT time_s=1.5 checksum=42\n"),
            Some(Reported {
                time_s: 1.5,
                checksum: 42,
                end_rss_kib: None
            })
        );
        assert_eq!(
            parse_result("RESULT time_s=1.5 checksum=42 rss_end_kib=2048"),
            Some(Reported {
                time_s: 1.5,
                checksum: 42,
                end_rss_kib: Some(2048)
            })
        );
        assert!(vm_rss_kib().is_some_and(|k| k > 0));
        assert_eq!(parse_result("RESULT time_s=x checksum=42"), None);
        assert_eq!(parse_result(""), None);
    }

    #[test]
    fn reports_crash_and_rss() {
        let dir = std::env::temp_dir();
        let spec = |script: &str| Spec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            timeout: Duration::from_secs(10),
            log_stem: dir.join(format!("arena-bench-child-test-{}", std::process::id())),
        };
        match run(&spec("echo RESULT time_s=0.25 checksum=7 rss_end_kib=99")) {
            Outcome::Ok {
                time_s,
                checksum,
                maxrss_kib,
                end_rss_kib,
                ..
            } => {
                assert_eq!((time_s, checksum, end_rss_kib), (0.25, 7, Some(99)));
                assert!(maxrss_kib > 0);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(run(&spec("kill -SEGV $$")), Outcome::Failed(r) if r.contains("SIGSEGV")));
        assert!(matches!(run(&spec("exit 3")), Outcome::Failed(r) if r.starts_with("exit 3")));
    }
}
