//! Benchmarks for arena-malloc: workloads run under each allocator as its own process
//! (`compare`, `scaling`), and micro-benchmarks through the `GlobalAlloc` trait (`micro`).
//!
//! The workload binaries `wl-arena`, `wl-system`, `wl-mimalloc` and `wl-jemalloc` differ
//! only in their `#[global_allocator]`; each calls [`workload_main`].

pub mod child;
pub mod driver;
pub mod report;
pub mod rng;
pub mod stats;
pub mod sysinfo;
pub mod workloads;

use std::time::Instant;

/// The prefix of the line a workload process prints on success; `child` parses it.
pub const RESULT_PREFIX: &str = "RESULT";

/// Entry point of the `wl-*` binaries: `wl-<alloc> <workload> <scale> [--threads N]`.
/// Prints `RESULT time_s=<seconds> checksum=<u64> rss_end_kib=<KiB>` and exits 0, or a usage
/// message and exits 2. `rss_end_kib` is the process's `VmRSS` once the workload has returned
/// (its threads joined, its memory freed): what the allocator kept resident.
pub fn workload_main(allocator: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        let names: Vec<&str> = workloads::WORKLOADS.iter().map(|w| w.name).collect();
        eprintln!(
            "usage: wl-{allocator} <workload> <scale> [--threads N]\nworkloads: {}",
            names.join(", ")
        );
        std::process::exit(2);
    };
    let (Some(name), Some(scale)) = (args.first(), args.get(1)) else {
        usage()
    };
    let Some(workload) = workloads::find(name) else {
        usage()
    };
    let Ok(scale) = scale.parse::<f64>() else {
        usage()
    };
    let threads = match (args.get(2).map(String::as_str), args.get(3)) {
        (None, _) => None,
        (Some("--threads"), Some(n)) => Some(n.parse::<usize>().unwrap_or_else(|_| usage())),
        _ => usage(),
    };
    let params = workloads::Params { scale, threads };
    let start = Instant::now();
    let checksum = (workload.run)(&params);
    let elapsed = start.elapsed().as_secs_f64();
    let rss_end = child::vm_rss_kib().map_or(String::new(), |k| format!(" rss_end_kib={k}"));
    println!("{RESULT_PREFIX} time_s={elapsed:.6} checksum={checksum}{rss_end}");
}
