//! The workloads with `tikv_jemallocator::Jemalloc` as the global allocator (see `arena_bench::workload_main`).

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    arena_bench::workload_main("jemalloc");
}
