//! `cargo run --release -p arena-bench --bin scaling [-- --quick | --full] [--threads 1,2,4,8,16]`
//!
//! Thread scaling: the `larson` and `service` workloads at 1, 2, 4, 8 and 16 threads
//! (the same total work at every count), each as its own process per allocator, runs
//! interleaved, medians. Meant for machines with more cores than the 2-core development
//! box, where the 1→N speedup is what to look at. Writes `target/compare/scaling.md`.

use std::process::ExitCode;
use std::time::Duration;

use arena_bench::driver::{self, option_value, Paths, Plan, RowPlan};
use arena_bench::report::render_grid;
use arena_bench::sysinfo::SysInfo;

const USAGE: &str = "\
usage: cargo run --release -p arena-bench --bin scaling -- [options]
  --quick | --full     scale 0.2 / 3 repetitions, or 4 / 7 (default: 1 / 5)
  --scale X, --reps N  override the preset
  --threads 1,2,4      thread counts (default 1,2,4,8,16)
  --only larson        one workload (larson or service)
";

const ALLOCATORS: [&str; 4] = ["arena", "glibc", "mimalloc", "jemalloc"];
const WORKLOADS: [&str; 2] = ["larson", "service"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scaling: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let has = |f: &str| args.iter().any(|a| a == f);
    let (preset, mut scale, mut reps): (&str, f64, usize) = if has("--quick") {
        ("quick", 0.2, 3)
    } else if has("--full") {
        ("full", 4.0, 7)
    } else {
        ("default", 1.0, 5)
    };
    if let Some(s) = option_value(&args, "--scale") {
        scale = s.parse().map_err(|_| format!("bad --scale {s}"))?;
    }
    if let Some(r) = option_value(&args, "--reps") {
        reps = r.parse().map_err(|_| format!("bad --reps {r}"))?;
    }
    let threads: Vec<usize> = match option_value(&args, "--threads") {
        Some(list) => list
            .split(',')
            .map(|t| t.parse().map_err(|_| format!("bad thread count {t}")))
            .collect::<Result<_, _>>()?,
        None => vec![1, 2, 4, 8, 16],
    };
    let only = option_value(&args, "--only");
    let timeout = Duration::from_secs_f64((60.0 * scale).max(60.0));

    let paths = Paths::discover()?;
    driver::build_workloads(&paths)?;
    let mut rows = Vec::new();
    for w in WORKLOADS.iter().filter(|w| only.is_none_or(|o| o == **w)) {
        for &t in &threads {
            let cells = ALLOCATORS
                .iter()
                .map(|&alloc| {
                    let bin = paths.workload_bin(if alloc == "glibc" { "system" } else { alloc });
                    Plan::Run(driver::spec(
                        &paths,
                        bin,
                        vec![
                            (*w).to_string(),
                            scale.to_string(),
                            "--threads".into(),
                            t.to_string(),
                        ],
                        vec![],
                        timeout,
                        &format!("scaling-{w}-{t}-{alloc}"),
                    ))
                })
                .collect();
            rows.push(RowPlan {
                name: format!("{w} ×{t}"),
                cells,
            });
        }
    }
    if rows.is_empty() {
        return Err(format!("unknown workload {only:?}"));
    }
    let allocators: Vec<String> = ALLOCATORS.iter().map(|s| (*s).to_string()).collect();
    let results = driver::run_matrix(&allocators, &rows, reps, 1);

    // Speedup of each allocator over its own single-thread time (when 1 is in the list).
    let mut grid = vec![std::iter::once("speedup vs 1 thread".to_string())
        .chain(ALLOCATORS.iter().map(|a| (*a).to_string()))
        .collect::<Vec<_>>()];
    for (r, row) in results.time.rows.iter().enumerate() {
        let per_workload = threads.len();
        let first = r - r % per_workload;
        let one = (threads[0] == 1).then(|| &results.time.rows[first]);
        let mut line = vec![row.name.clone()];
        for (c, cell) in row.cells.iter().enumerate() {
            let base = one.and_then(|o| o.cells[c].value());
            line.push(match (base, cell.value()) {
                (Some(b), Some(v)) if v > 0.0 => format!("{:.2}×", b / v),
                _ => "—".to_string(),
            });
        }
        grid.push(line);
    }
    let speedup = render_grid(&grid);
    let time = results.time.markdown();
    println!("\n{time}\n{speedup}");
    let notes = results.time.notes()
        + &results
            .mismatches
            .iter()
            .map(|m| format!("- {m}\n"))
            .collect::<String>();
    if !notes.is_empty() {
        println!("Notes:\n{notes}");
    }

    let info = SysInfo::collect();
    let report = format!(
        "# arena-malloc vs peers: thread scaling\n\n\
         `larson` and `service` with the same total work at each thread count ({preset} scale \
         {scale}, medians of {reps} interleaved repetitions). `service ×N` has N workers and \
         N/2 clients.\n\n## Machine\n\n{}\n## Time\n\nMedian seconds; in brackets the peer's time \
         divided by arena-malloc's (above 1 = arena-malloc is faster).\n\n{time}\n\
         ## Speedup\n\nEach allocator's 1-thread time divided by its N-thread time; with more \
         threads than CPUs ({} here) no further speedup is possible.\n\n{speedup}\n{}",
        info.markdown(),
        info.nproc,
        if notes.is_empty() {
            String::new()
        } else {
            format!("## Notes\n\n{notes}")
        }
    );
    let path = paths.out_dir.join("scaling.md");
    std::fs::write(&path, report).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
