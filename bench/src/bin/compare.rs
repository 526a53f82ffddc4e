//! `cargo run --release -p arena-bench --bin compare [-- --quick | --full] [options]`
//!
//! Runs every workload as its own process under each allocator (so that each is the
//! real global or C allocator), interleaved, several times, and reports medians of
//! time, peak RSS and end RSS (what stays resident once the workload freed its memory) with
//! each peer's ratio to arena-malloc:
//!
//! - Rust workloads (`bench/src/workloads.rs`): one binary per allocator (`wl-arena`,
//!   `wl-system` = `std::alloc::System`, shown as glibc, `wl-mimalloc`, `wl-jemalloc`).
//! - C workloads (`csrc/*.c`), compiled with `cc -O2 -pthread` and run under glibc and
//!   with `LD_PRELOAD` of `libarena_malloc.so` (built with `--features override`) and of
//!   Debian's jemalloc, mimalloc and tcmalloc_minimal where installed.
//!
//! Writes `target/compare/report.md` and `target/compare/chart.svg`; with
//! `--write-docs`, also `docs/benchmarks.md` and `docs/benchmarks.svg`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use arena_bench::driver::{self, option_value, Paths, Plan, RowPlan};
use arena_bench::report::{self, chart_svg, Panel};
use arena_bench::sysinfo::{self, SysInfo};
use arena_bench::workloads::WORKLOADS;

const USAGE: &str = "\
usage: cargo run --release -p arena-bench --bin compare -- [options]

scale (default: scale 2, 5 repetitions, ~3-4 minutes on 2 cores):
  --quick            scale 0.2, 3 repetitions (under a minute)
  --full             scale 6, 7 repetitions (~12 minutes)
  --scale X          workload scale factor (overrides the preset)
  --reps N           repetitions per allocator (overrides the preset)
options:
  --only a,b         run only these workloads (Rust names, or c-larson, c-mixed, c-prodcons)
  --no-c             skip the C / LD_PRELOAD workloads
  --no-install       do not try to install the Debian peer libraries
  --timeout S        seconds before a run counts as hung (default: 60 x scale, at least 60)
  --write-docs       copy the report to docs/benchmarks.md and the chart to docs/benchmarks.svg
";

/// Allocator columns, arena-malloc first (the baseline of every ratio); `arena+runs` is
/// arena-malloc with `ARENA_MALLOC_RUNS=1` (the small-block runs, off by default while they
/// mature), measured in the same interleaved run.
const ALLOCATORS: [&str; 6] = [
    "arena",
    "arena+runs",
    "glibc",
    "mimalloc",
    "jemalloc",
    "tcmalloc",
];
/// The column whose checksum the others must match.
const REFERENCE: usize = 2;
/// The environment a column's runs get besides its allocator (`arena+runs`).
fn column_env(alloc: &str) -> Vec<(String, String)> {
    if alloc == "arena+runs" {
        vec![("ARENA_MALLOC_RUNS".to_string(), "1".to_string())]
    } else {
        vec![]
    }
}
/// Debian's peer libraries, by column.
const PRELOADS: [(&str, &str); 3] = [
    ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    (
        "tcmalloc",
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    ),
];
/// C workloads: (source stem under csrc/, what it stresses).
const C_WORKLOADS: [(&str, &str); 9] = [
    ("larson", "8 pthreads replace random slots of a shared pool (16 B-128 KiB), remote frees"),
    ("mixed", "single thread over the whole C API: malloc/free/realloc/calloc/strdup/posix_memalign/aligned_alloc/memalign, checked"),
    ("prodcons", "4 producers malloc batches, 4 consumers free them, through a mutex/condvar queue"),
    ("xmalloc", "4 pthreads malloc 16 B-1 KiB blocks and hand each to one of 4 others through lock-free rings; they free it (xmalloc-test shape)"),
    ("simple", "single thread, fixed sizes 16 B-4 KiB: batches of 256 malloc'd then freed in three orders (glibc malloc-simple shape)"),
    ("tiny", "single thread, 8-96 B temporaries with nested lifetimes and cell lists (cfrac/espresso shape)"),
    ("threads", "4 pthreads each replacing random slots of their own working set, 8 B-8 KiB (glibc malloc-thread shape)"),
    ("respawn", "2 lanes of short-lived workers replacing random slots of a table (8 B-1 KiB) that the idle main thread built and each worker hands to the next (mimalloc-bench larson shape)"),
    ("large", "20 slots of 5-25 MiB blocks replaced at random and cleared whole (malloc-large shape)"),
];

#[derive(Debug)]
struct Options {
    preset: &'static str,
    scale: f64,
    reps: usize,
    only: Option<Vec<String>>,
    c: bool,
    install: bool,
    timeout: Duration,
    write_docs: bool,
}

fn parse_options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        std::process::exit(0);
    }
    let known_flags = [
        "--quick",
        "--full",
        "--no-c",
        "--no-install",
        "--write-docs",
    ];
    let known_values = ["--scale", "--reps", "--only", "--timeout"];
    let mut i = 0;
    while i < args.len() {
        if known_values.contains(&args[i].as_str()) {
            i += 2;
        } else if known_flags.contains(&args[i].as_str()) {
            i += 1;
        } else {
            return Err(format!("unknown argument {:?}\n{USAGE}", args[i]));
        }
    }
    let has = |f: &str| args.iter().any(|a| a == f);
    let (preset, mut scale, mut reps): (&str, f64, usize) = if has("--quick") {
        ("quick", 0.2, 3)
    } else if has("--full") {
        ("full", 6.0, 7)
    } else {
        ("default", 2.0, 5)
    };
    if let Some(s) = option_value(&args, "--scale") {
        scale = s.parse().map_err(|_| format!("bad --scale {s}"))?;
    }
    if let Some(r) = option_value(&args, "--reps") {
        reps = r.parse().map_err(|_| format!("bad --reps {r}"))?;
    }
    let timeout = match option_value(&args, "--timeout") {
        Some(t) => t.parse().map_err(|_| format!("bad --timeout {t}"))?,
        None => (60.0 * scale).max(60.0),
    };
    Ok(Options {
        preset,
        scale,
        reps: reps.max(1),
        only: option_value(&args, "--only").map(|s| s.split(',').map(str::to_string).collect()),
        c: !has("--no-c"),
        install: !has("--no-install"),
        timeout: Duration::from_secs_f64(timeout),
        write_docs: has("--write-docs"),
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let opts = parse_options()?;
    let paths = Paths::discover()?;
    let wanted = |name: &str| {
        opts.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|w| w == name))
    };
    let t0 = Instant::now();

    eprintln!(
        "compare: preparing ({} scale {}, {} repetitions)",
        opts.preset, opts.scale, opts.reps
    );
    if opts.c && opts.install {
        install_peers(&paths.root);
    }
    driver::build_workloads(&paths)?;
    let c_rows = if opts.c && C_WORKLOADS.iter().any(|(n, _)| wanted(&format!("c-{n}"))) {
        let arena_so = build_preload_lib(&paths);
        let mut rows = Vec::new();
        for (name, _) in C_WORKLOADS {
            let label = format!("c-{name}");
            if wanted(&label) {
                rows.push(c_row(&paths, &opts, name, &label, &arena_so));
            }
        }
        rows
    } else {
        Vec::new()
    };

    let mut rows: Vec<RowPlan> = WORKLOADS
        .iter()
        .filter(|w| wanted(w.name))
        .map(|w| rust_row(&paths, &opts, w.name))
        .collect();
    rows.extend(c_rows);
    if rows.is_empty() {
        return Err("no workload selected".into());
    }

    eprintln!(
        "compare: running {} workloads × {} allocators × {} repetitions",
        rows.len(),
        ALLOCATORS.len(),
        opts.reps
    );
    let allocators: Vec<String> = ALLOCATORS.iter().map(|s| (*s).to_string()).collect();
    let results = driver::run_matrix(&allocators, &rows, opts.reps, REFERENCE);

    let info = SysInfo::collect();
    let report = render_report(&paths, &opts, &info, &results);
    let svg = chart_svg(
        &format!(
            "arena-malloc vs peers ({} scale, medians of {}; {} CPUs, {})",
            opts.preset, opts.reps, info.nproc, info.date
        ),
        &[
            Panel {
                title: "time relative to arena-malloc (= 1.0; lower is better)".into(),
                table: &results.time,
            },
            Panel {
                title: "peak RSS relative to arena-malloc (= 1.0; lower is better)".into(),
                table: &results.rss,
            },
        ],
    );
    let report_path = paths.out_dir.join("report.md");
    let chart_path = paths.out_dir.join("chart.svg");
    write(&report_path, &report)?;
    write(&chart_path, &svg)?;

    println!("\n{}", results.time.markdown());
    println!("{}", results.rss.markdown());
    println!("{}", results.end_rss.markdown());
    let notes = notes(&results);
    if !notes.is_empty() {
        println!("Notes:\n{notes}");
    }
    println!(
        "wrote {} and {} in {:.0} s",
        report_path.display(),
        chart_path.display(),
        t0.elapsed().as_secs_f64()
    );

    if opts.write_docs {
        let docs = paths.root.join("docs");
        std::fs::create_dir_all(&docs)
            .map_err(|e| format!("cannot create {}: {e}", docs.display()))?;
        let body = report.replace("(chart.svg)", "(benchmarks.svg)");
        write(
            &docs.join("benchmarks.md"),
            &format!("{DOCS_HEADER}\n{body}"),
        )?;
        write(&docs.join("benchmarks.svg"), &svg)?;
        println!("wrote docs/benchmarks.md and docs/benchmarks.svg");
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Best effort: runs bench/install-peers.sh (which does nothing if all are present).
fn install_peers(root: &Path) {
    if PRELOADS.iter().all(|(_, lib)| Path::new(lib).exists()) {
        return;
    }
    let script = root.join("bench").join("install-peers.sh");
    match Command::new("sh").arg(&script).output() {
        Ok(out) => eprint!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => eprintln!("compare: could not run {}: {e}", script.display()),
    }
}

/// Builds `libarena_malloc.so` with the `override` feature and copies it next to the
/// reports, so that a later build without the feature can't replace it. Returns its
/// path, or why it can't be used.
fn build_preload_lib(paths: &Paths) -> Result<PathBuf, String> {
    driver::cargo(
        &paths.root,
        &["build", "--release", "-p", "arena-malloc-preload"],
    )
    .map_err(|e| format!("build failed: {}", e.lines().last().unwrap_or("")))?;
    let built = paths.bin_dir.join("libarena_malloc.so");
    let copy = paths.out_dir.join("libarena_malloc.so");
    std::fs::copy(&built, &copy).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    // A library without a `malloc` symbol would be preloaded silently and measure glibc.
    if let Some(symbols) =
        sysinfo::command_output("nm", &["-D", "--defined-only", &copy.to_string_lossy()])
    {
        let exports_malloc = symbols
            .lines()
            .any(|l| l.split_whitespace().last() == Some("malloc"));
        if !exports_malloc {
            return Err(
                "libarena_malloc.so does not export malloc (override feature not implemented yet?)"
                    .into(),
            );
        }
    }
    Ok(copy)
}

fn rust_row(paths: &Paths, opts: &Options, name: &str) -> RowPlan {
    let cells = ALLOCATORS
        .iter()
        .map(|&alloc| {
            if alloc == "tcmalloc" {
                return Plan::NotApplicable;
            }
            let bin = paths.workload_bin(match alloc {
                "glibc" => "system",
                "arena+runs" => "arena",
                a => a,
            });
            if !bin.exists() {
                return Plan::Skip(format!("{} not built", bin.display()));
            }
            Plan::Run(driver::spec(
                paths,
                bin,
                vec![name.to_string(), opts.scale.to_string()],
                column_env(alloc),
                opts.timeout,
                &format!("{name}-{alloc}"),
            ))
        })
        .collect();
    RowPlan {
        name: name.to_string(),
        cells,
    }
}

/// Compiles `csrc/<stem>.c` into `target/compare/c-<stem>` and plans its runs.
fn c_row(
    paths: &Paths,
    opts: &Options,
    stem: &str,
    label: &str,
    arena_so: &Result<PathBuf, String>,
) -> RowPlan {
    let src = paths.root.join("csrc").join(format!("{stem}.c"));
    let exe = paths.out_dir.join(label);
    let compiled = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output();
    let failed = match compiled {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        )),
        Err(e) => Some(format!("cannot run cc: {e}")),
    };
    let cells = ALLOCATORS
        .iter()
        .map(|&alloc| {
            if let Some(why) = &failed {
                return Plan::Skip(why.clone());
            }
            let preload = match alloc {
                "glibc" => None,
                "arena" | "arena+runs" => match arena_so {
                    Ok(so) => Some(so.to_string_lossy().into_owned()),
                    Err(why) => return Plan::Skip(why.clone()),
                },
                _ => match PRELOADS.iter().find(|(a, _)| *a == alloc) {
                    Some((_, lib)) if Path::new(lib).exists() => Some((*lib).to_string()),
                    Some((_, lib)) => {
                        return Plan::Skip(format!(
                            "{lib} not installed (see bench/install-peers.sh)"
                        ))
                    }
                    None => return Plan::NotApplicable,
                },
            };
            let mut env = preload
                .map(|p| vec![("LD_PRELOAD".to_string(), p)])
                .unwrap_or_default();
            env.extend(column_env(alloc));
            Plan::Run(driver::spec(
                paths,
                exe.clone(),
                vec![opts.scale.to_string()],
                env,
                opts.timeout,
                &format!("{label}-{alloc}"),
            ))
        })
        .collect();
    RowPlan {
        name: label.to_string(),
        cells,
    }
}

fn notes(results: &driver::Results) -> String {
    let mut notes = results.time.notes();
    for m in &results.mismatches {
        notes.push_str(&format!("- {m}\n"));
    }
    notes
}

const DOCS_HEADER: &str = "\
# Benchmarks

How arena-malloc compares with glibc's malloc, mimalloc, jemalloc and tcmalloc on
allocation-heavy workloads. What each workload stresses, the micro-benchmarks and the
caveats are in [`benches/README.md`](../benches/README.md).

## Reproduce

```sh
cargo run --release -p arena-bench --bin compare            # ~14 min on 2 cores
cargo run --release -p arena-bench --bin compare -- --quick # under a minute
cargo run --release -p arena-bench --bin compare -- --full  # about an hour (estimated), steadier
cargo run --release -p arena-bench --bin compare -- --write-docs  # refresh this page
```

The ratios depend on the CPU as well as on the code: the same code gave the runs-on
column 0.735x on the cross-thread rows on an Intel Xeon machine and 0.82-0.83x on an AMD EPYC
one (both 2 cores, 2026-12-07). Compare ratios within one report, and check its Machine
section before comparing two.

Everything below this line is generated by `compare --write-docs` from
`target/compare/report.md`; do not edit the numbers by hand.

---
";

fn render_report(
    paths: &Paths,
    opts: &Options,
    info: &SysInfo,
    results: &driver::Results,
) -> String {
    let lock = std::fs::read_to_string(paths.root.join("Cargo.lock")).unwrap_or_default();
    let crate_version =
        |name: &str| sysinfo::locked_version(&lock, name).unwrap_or_else(|| "?".into());
    let deb = |pkg: &str| sysinfo::dpkg_version(pkg).unwrap_or_else(|| "not installed".into());
    let commit = sysinfo::command_line(
        "git",
        &[
            "-C",
            &paths.root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_else(|| "unknown".into());
    let dirty = sysinfo::command_output(
        "git",
        &[
            "-C",
            &paths.root.to_string_lossy(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_some_and(|s| !s.trim().is_empty());

    let mut r = String::new();
    r.push_str("# arena-malloc vs peers: workloads\n\n");
    r.push_str(&format!(
        "Scale **{}** ({}), **{}** interleaved repetitions per allocator, medians. \
         arena-malloc at commit `{commit}`{}.\n\n",
        opts.scale,
        opts.preset,
        opts.reps,
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    ));
    r.push_str("## Machine\n\n");
    r.push_str(&info.markdown());
    r.push_str(&format!(
        "- Peers in Rust workloads (global allocator): `mimalloc` crate {}, `tikv-jemallocator` crate {}; `glibc` is `std::alloc::System`\n",
        crate_version("mimalloc"),
        crate_version("tikv-jemallocator")
    ));
    r.push_str(&format!(
        "- Peers in C workloads (`LD_PRELOAD`): Debian libmimalloc2.0 {}, libjemalloc2 {}, libtcmalloc-minimal4 {}; arena is `libarena_malloc.so` built with `--features override`\n\n",
        deb("libmimalloc2.0"),
        deb("libjemalloc2"),
        deb("libtcmalloc-minimal4")
    ));
    r.push_str("## Time\n\nCells: median seconds, and in brackets the median over repetitions of the peer's time \
                divided by arena-malloc's in the same repetition (above 1 = arena-malloc is faster). The last row \
                is the geometric mean of those ratios. \
                `!` marks a wrong checksum, `FAIL` a crash, error or timeout, `—` not applicable.\n\n");
    r.push_str(&results.time.markdown());
    if let Some(k) = results
        .time
        .allocators
        .iter()
        .position(|a| a == "arena+runs")
    {
        let names: Vec<String> = results.time.rows.iter().map(|w| w.name.clone()).collect();
        let ratios: Vec<Vec<f64>> = results
            .time_ratios
            .iter()
            .map(|row| row.get(k).cloned().unwrap_or_default())
            .collect();
        r.push_str(
            "\n### Runs on ÷ off, repetition by repetition\n\nEach repetition's `arena+runs` time divided \
             by `arena`'s in the same repetition: the bracketed ratio above is the median; a row whose \
             repetitions spread far on both sides of 1 cannot tell a few percent from noise.\n\n",
        );
        r.push_str(&report::spread_markdown(
            "arena+runs",
            &names,
            &ratios,
            1.05,
        ));
    }
    r.push_str("\n## Peak RSS\n\nCells: median peak resident set size (`ru_maxrss` from `wait4`) in MiB; in brackets \
                peer ÷ arena-malloc (above 1 = arena-malloc uses less).\n\n");
    r.push_str(&results.rss.markdown());
    r.push_str("\n## End RSS\n\nCells: median resident set size at the end of the workload, once it has freed \
                its memory and joined its threads (`VmRSS` read by the process just before its `RESULT` line) in \
                MiB: what the allocator keeps resident; in brackets peer ÷ arena-malloc (above 1 = arena-malloc \
                keeps less).\n\n");
    r.push_str(&results.end_rss.markdown());
    r.push_str("\n## Chart\n\n![time and peak RSS relative to arena-malloc](chart.svg)\n\n");
    let notes = notes(results);
    if !notes.is_empty() {
        r.push_str("## Notes\n\n");
        r.push_str(&notes);
        r.push('\n');
    }
    r.push_str("## Workloads\n\n");
    for w in WORKLOADS {
        r.push_str(&format!("- `{}`: {}\n", w.name, w.about));
    }
    for (stem, about) in C_WORKLOADS {
        r.push_str(&format!("- `c-{stem}` (`csrc/{stem}.c`): {about}\n"));
    }
    r.push_str(
        "\nThis machine's speed can drift by up to 2× over minutes; the runs are interleaved \
         (every allocator once per repetition, rotating the order) so the ratios are meaningful, \
         the absolute times less so.\n",
    );
    r
}
