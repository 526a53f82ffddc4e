//! What `compare` and `scaling` share: locating and building the binaries, and running a
//! matrix of rows × allocators as separate processes, interleaved (every allocator once
//! per repetition, in a rotating order), reduced to medians.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::{self, Outcome, Spec};
use crate::report::{Cell, Row, Table};
use crate::stats::median;

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root (where `cargo build` must run).
    pub root: PathBuf,
    /// The directory holding this executable and the `wl-*` binaries (`target/release`).
    pub bin_dir: PathBuf,
    /// `target/compare`: reports, compiled C workloads, logs.
    pub out_dir: PathBuf,
}

impl Paths {
    /// Derives the paths from the running executable and the crate's source location.
    ///
    /// # Errors
    /// When the executable's location is unknown or the output directory can't be made.
    pub fn discover() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let bin_dir = exe
            .parent()
            .ok_or("executable has no parent directory")?
            .to_path_buf();
        let target_dir = bin_dir
            .parent()
            .ok_or("binary directory has no parent")?
            .to_path_buf();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest.parent().unwrap_or(manifest).to_path_buf();
        let out_dir = target_dir.join("compare");
        std::fs::create_dir_all(out_dir.join("logs"))
            .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
        Ok(Paths {
            root,
            bin_dir,
            out_dir,
        })
    }

    /// The workload binary for a Rust allocator (`wl-arena`, …).
    pub fn workload_bin(&self, allocator: &str) -> PathBuf {
        self.bin_dir.join(format!("wl-{allocator}"))
    }
}

/// Runs `cargo <args>` in the workspace root, echoing a one-line summary.
///
/// # Errors
/// When cargo can't be started or fails; the message carries the end of its output.
pub fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!("  $ cargo {}", args.join(" "));
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        Err(format!(
            "cargo {} failed:\n{}",
            args.join(" "),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }
}

/// Builds the four `wl-*` workload binaries (release).
///
/// # Errors
/// When the build fails.
pub fn build_workloads(paths: &Paths) -> Result<(), String> {
    cargo(
        &paths.root,
        &["build", "--release", "-p", "arena-bench", "--bins"],
    )
}

/// What one cell of the matrix runs.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Does not apply to this row ("—").
    NotApplicable,
    /// Can't run here, with the reason.
    Skip(String),
    /// Run this.
    Run(Spec),
}

/// One row of the matrix.
#[derive(Debug, Clone)]
pub struct RowPlan {
    /// Row label.
    pub name: String,
    /// One plan per allocator column.
    pub cells: Vec<Plan>,
}

/// The reduced results of a matrix run.
#[derive(Debug, Clone)]
pub struct Results {
    /// Median time, seconds.
    pub time: Table,
    /// Median peak RSS, MiB.
    pub rss: Table,
    /// Median RSS at the end of the workload (after it freed its memory), MiB.
    pub end_rss: Table,
    /// Checksum mismatches (row, column, text); the table marks them with `!`.
    pub mismatches: Vec<String>,
    /// Per row and column, each repetition's time divided by column 0's in the same repetition
    /// (the time table's bracketed ratio is their median): how much one row's ratio moves.
    pub time_ratios: Vec<Vec<Vec<f64>>>,
}

/// Runs every row's cells `reps` times, interleaved: within a row, repetition `k` runs
/// every allocator once, starting at column `k mod n`. Prints one progress line per
/// row and repetition on stderr.
pub fn run_matrix(
    allocators: &[String],
    rows: &[RowPlan],
    reps: usize,
    reference: usize,
) -> Results {
    let total_runs: usize = rows
        .iter()
        .map(|r| r.cells.iter().filter(|c| matches!(c, Plan::Run(_))).count())
        .sum::<usize>()
        * reps;
    let started = Instant::now();
    let mut done = 0usize;
    let mut time_rows = Vec::with_capacity(rows.len());
    let mut time_paired = Vec::with_capacity(rows.len());
    let mut time_ratios = Vec::with_capacity(rows.len());
    let mut rss_rows = Vec::with_capacity(rows.len());
    let mut end_rss_rows = Vec::with_capacity(rows.len());
    let mut mismatches = Vec::new();
    let mut flags = Vec::new();
    let n = allocators.len();
    for (ri, row) in rows.iter().enumerate() {
        let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); n];
        for rep in 0..reps {
            let mut line = format!(
                "{:>3.0}s  {:<14} rep {}/{}:",
                started.elapsed().as_secs_f64(),
                row.name,
                rep + 1,
                reps
            );
            for k in 0..n {
                let c = (rep + k) % n;
                let Plan::Run(spec) = &row.cells[c] else {
                    continue;
                };
                let outcome = child::run(spec);
                done += 1;
                line.push_str(&match &outcome {
                    Outcome::Ok {
                        time_s,
                        maxrss_kib,
                        end_rss_kib,
                        ..
                    } => {
                        format!(
                            "  {} {time_s:.3}s/{:.0}M/{}",
                            allocators[c],
                            *maxrss_kib as f64 / 1024.0,
                            end_rss_kib
                                .map_or("?".into(), |k| format!("{:.0}M", k as f64 / 1024.0))
                        )
                    }
                    Outcome::Failed(_) => format!("  {} FAIL", allocators[c]),
                });
                outcomes[c].push(outcome);
            }
            eprintln!("[{done:>4}/{total_runs}] {line}");
        }
        let reference_sum = outcomes[reference]
            .iter()
            .chain(outcomes.iter().flatten())
            .find_map(|o| match o {
                Outcome::Ok { checksum, .. } => Some(*checksum),
                Outcome::Failed(_) => None,
            });
        let mut time_cells = Vec::with_capacity(n);
        let mut rss_cells = Vec::with_capacity(n);
        let mut end_rss_cells = Vec::with_capacity(n);
        for (c, plan) in row.cells.iter().enumerate() {
            let [t, m, e] = match plan {
                Plan::NotApplicable => [
                    Cell::NotApplicable,
                    Cell::NotApplicable,
                    Cell::NotApplicable,
                ],
                Plan::Skip(why) => [
                    Cell::Skipped(why.clone()),
                    Cell::Skipped(why.clone()),
                    Cell::Skipped(why.clone()),
                ],
                Plan::Run(_) => reduce(&outcomes[c]),
            };
            if let (Some(want), Some((got, said))) = (reference_sum, first_checksum(&outcomes[c])) {
                if got != want {
                    flags.push((ri, c));
                    let said = said.map_or(String::new(), |s| format!("; it said: \"{s}\""));
                    mismatches.push(format!(
                        "{} / {}: checksum {got} differs from {}'s {want}: wrong memory contents, alignment or sizes{said}",
                        row.name, allocators[c], allocators[reference]
                    ));
                }
            }
            time_cells.push(t);
            rss_cells.push(m);
            end_rss_cells.push(e);
        }
        let ratios = paired_ratios(&outcomes, 0);
        time_paired.push(ratios.iter().map(|qs| median(qs)).collect());
        time_ratios.push(ratios);
        time_rows.push(Row {
            name: row.name.clone(),
            cells: time_cells,
        });
        rss_rows.push(Row {
            name: row.name.clone(),
            cells: rss_cells,
        });
        end_rss_rows.push(Row {
            name: row.name.clone(),
            cells: end_rss_cells,
        });
    }
    let time = Table {
        quantity: "median time, s".into(),
        allocators: allocators.to_vec(),
        rows: time_rows,
        decimals: 3,
        flags: flags.clone(),
        paired: time_paired,
    };
    let rss = Table {
        quantity: "median peak RSS, MiB".into(),
        allocators: allocators.to_vec(),
        rows: rss_rows,
        decimals: 1,
        flags: flags.clone(),
        paired: Vec::new(),
    };
    let end_rss = Table {
        quantity: "median end RSS, MiB".into(),
        allocators: allocators.to_vec(),
        rows: end_rss_rows,
        decimals: 1,
        flags,
        paired: Vec::new(),
    };
    Results {
        time,
        rss,
        end_rss,
        mismatches,
        time_ratios,
    }
}

/// For each column, its time divided by column `base`'s time in the same repetition, one per
/// repetition (repetitions where either run failed are left out).
fn paired_ratios(outcomes: &[Vec<Outcome>], base: usize) -> Vec<Vec<f64>> {
    let time = |o: &Outcome| match o {
        Outcome::Ok { time_s, .. } if *time_s > 0.0 => Some(*time_s),
        _ => None,
    };
    outcomes
        .iter()
        .map(|runs| {
            runs.iter()
                .zip(outcomes.get(base).map_or(&[][..], Vec::as_slice))
                .filter_map(|(o, b)| Some(time(o)? / time(b)?))
                .collect()
        })
        .collect()
}

/// The first successful run's checksum and the last line it wrote to stderr.
fn first_checksum(outcomes: &[Outcome]) -> Option<(u64, Option<String>)> {
    outcomes.iter().find_map(|o| match o {
        Outcome::Ok {
            checksum,
            stderr_tail,
            ..
        } => Some((*checksum, stderr_tail.clone())),
        Outcome::Failed(_) => None,
    })
}

/// Median time, peak RSS and end RSS of one cell's runs, or the first failure (with how many
/// failed). The end RSS is the median of the runs that reported one.
fn reduce(outcomes: &[Outcome]) -> [Cell; 3] {
    let failures: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(why) => Some(why),
            Outcome::Ok { .. } => None,
        })
        .collect();
    if let Some(first) = failures.first() {
        let why = format!(
            "{}/{} runs failed; first: {first}",
            failures.len(),
            outcomes.len()
        );
        return [
            Cell::Failed(why.clone()),
            Cell::Failed(why.clone()),
            Cell::Failed(why),
        ];
    }
    let times: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ok { time_s, .. } => Some(*time_s),
            Outcome::Failed(_) => None,
        })
        .collect();
    let rss: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ok { maxrss_kib, .. } => Some(*maxrss_kib as f64 / 1024.0),
            Outcome::Failed(_) => None,
        })
        .collect();
    let end_rss: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ok {
                end_rss_kib: Some(k),
                ..
            } => Some(*k as f64 / 1024.0),
            _ => None,
        })
        .collect();
    let end =
        median(&end_rss).map_or_else(|| Cell::Skipped("no end RSS reported".into()), Cell::Value);
    match (median(&times), median(&rss)) {
        (Some(t), Some(m)) => [Cell::Value(t), Cell::Value(m), end],
        _ => [
            Cell::Skipped("no runs".into()),
            Cell::Skipped("no runs".into()),
            Cell::Skipped("no runs".into()),
        ],
    }
}

/// A spec with the common fields filled in; the logs go to `out_dir/logs/<stem>`.
pub fn spec(
    paths: &Paths,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
    stem: &str,
) -> Spec {
    Spec {
        program,
        args,
        env,
        timeout,
        log_stem: paths.out_dir.join("logs").join(stem),
    }
}

/// Reads `--flag value` style options: the value after `flag`, if present.
pub fn option_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}
