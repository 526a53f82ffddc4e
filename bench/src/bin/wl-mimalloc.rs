//! The workloads with `mimalloc::MiMalloc` as the global allocator (see `arena_bench::workload_main`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    arena_bench::workload_main("mimalloc");
}
