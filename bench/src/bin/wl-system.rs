//! The workloads with `std::alloc::System` as the global allocator (see `arena_bench::workload_main`).

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    arena_bench::workload_main("system");
}
