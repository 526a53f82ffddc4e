//! The workloads with `arena_malloc::ArenaMalloc` as the global allocator (see `arena_bench::workload_main`).

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

fn main() {
    arena_bench::workload_main("arena");
}
