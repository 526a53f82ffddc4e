//! A description of the machine a report was taken on.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Machine facts for the report header.
#[derive(Debug, Clone)]
pub struct SysInfo {
    /// CPUs this process may use.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Total memory, GiB.
    pub mem_gib: f64,
    /// `uname -r`.
    pub kernel: String,
    /// `PRETTY_NAME` from /etc/os-release.
    pub os: String,
    /// glibc version.
    pub glibc: String,
    /// `rustc --version`.
    pub rustc: String,
    /// UTC date and time, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
}

impl SysInfo {
    /// Collects what it can; unknown fields read "unknown".
    pub fn collect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(unknown);
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| unknown());
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(unknown);
        let glibc = command_line("getconf", &["GNU_LIBC_VERSION"]).unwrap_or_else(unknown);
        let rustc = command_line("rustc", &["--version"]).unwrap_or_else(unknown);
        SysInfo {
            nproc: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            cpu,
            mem_gib,
            kernel,
            os,
            glibc,
            rustc,
            date: utc_now(),
        }
    }

    /// A Markdown bullet list.
    pub fn markdown(&self) -> String {
        format!(
            "- CPUs usable (`nproc`): {}\n- CPU: {}\n- Memory: {:.1} GiB\n- OS: {}; kernel {}; {}\n- {}\n- Date: {}\n",
            self.nproc, self.cpu, self.mem_gib, self.os, self.kernel, self.glibc, self.rustc, self.date
        )
    }
}

fn unknown() -> String {
    "unknown".to_string()
}

/// A command's stdout, if it ran and succeeded.
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first line of a command's stdout, if it ran and printed one.
pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let s = command_output(program, args)?;
    s.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// The installed version of a Debian package, if any.
pub fn dpkg_version(package: &str) -> Option<String> {
    command_line("dpkg-query", &["-W", "-f=${Version}", package])
}

/// The version of `crate_name` recorded in the workspace's Cargo.lock.
pub fn locked_version(cargo_lock: &str, crate_name: &str) -> Option<String> {
    let needle = format!("name = \"{crate_name}\"");
    let mut lines = cargo_lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == needle {
            let v = lines.next()?.trim().strip_prefix("version = ")?;
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn lock_versions() {
        let lock = "[[package]]\nname = \"mimalloc\"\nversion = \"0.1.43\"\n";
        assert_eq!(locked_version(lock, "mimalloc").as_deref(), Some("0.1.43"));
        assert_eq!(locked_version(lock, "libc"), None);
    }
}
