//! arena-malloc as the C allocator of any program: this package builds `libarena_malloc.so`
//! (`cargo build --release -p arena-malloc-preload`), the crate with its `override` feature,
//! which exports the unprefixed C allocator API (`malloc`, `free`, `calloc`, `realloc`,
//! `posix_memalign`, …). Use it with `LD_PRELOAD=target/release/libarena_malloc.so program`.
//!
//! It is a package of its own so that a Rust crate depending on arena-malloc builds only an
//! rlib: Cargo builds every crate type a dependency's `[lib]` lists.

#![no_std]

// Links the allocator in; its `override` feature exports the C symbols from it.
pub use arena::capi::malloc;
