//! The workloads with `arena_malloc::ArenaMalloc` as the global allocator (see `arena_bench::workload_main`).
//!
//! `ARENA_BENCH_STATS=MS` prints, every `MS` milliseconds and at the end, the RSS and the
//! allocator's own figures to standard error: where the resident bytes are while a workload runs.

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

fn main() {
    let every_ms = std::env::var("ARENA_BENCH_STATS").ok();
    if let Some(ms) = every_ms.as_deref().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            report();
        });
    }
    arena_bench::workload_main("arena");
    if every_ms.is_some() {
        report();
    }
}

fn report() {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let s = arena_malloc::stats();
    eprintln!(
        "{rss} | arenas {} threads {} resident {} committed {} in_use {} bins {} in {} chunks (purged {}) quick {} top {} tcache {} remote {} runs {} of {} free {} remote {} overhead {} huge {}",
        s.arenas,
        s.threads,
        s.resident >> 10,
        s.arena_committed >> 10,
        s.in_use >> 10,
        s.free_in_bins >> 10,
        s.free_chunks,
        s.purged >> 10,
        s.quick_bytes >> 10,
        s.top >> 10,
        s.tcache_bytes >> 10,
        s.remote_pending >> 10,
        s.runs,
        s.run_bytes >> 10,
        s.run_free >> 10,
        s.run_remote >> 10,
        s.overhead >> 10,
        s.huge_bytes >> 10
    );
}
