#!/usr/bin/env bash
# The public API as a dependent crate sees it: builds a scratch crate that depends on
# arena-malloc with no features and checks (1) that the documented API compiles and (2) that
# every internal layer is out of reach (each `use` of one must fail). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=target/api-check
rm -rf "$dir" && mkdir -p "$dir/src"
internal=(arena asan bins check chunk config heap huge keys link os region_map run shared size_class sync tcache capi global fuzz user_heap PrivateHeap)
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "api-check"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
arena-malloc = { path = "$root" }
[workspace]
TOML
# (1) The documented API.
cat > "$dir/src/lib.rs" <<'RS'
use arena_malloc::allocator_api2::vec::Vec;
#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;
pub fn uses() -> usize {
    let heap = arena_malloc::Heap::new();
    let mut v = Vec::new_in(&heap);
    v.push(1u64);
    let s: arena_malloc::Stats = heap.stats();
    arena_malloc::flush_thread_cache();
    let _ = arena_malloc::stats();
    arena_malloc::trim(0) + s.arenas + v.len()
}
RS
CARGO_TARGET_DIR="$root/target" cargo check -q --manifest-path "$dir/Cargo.toml"
echo "api: the documented API compiles for a dependent crate"
# (2) Each internal layer, named from outside: must not resolve.
{
  for m in "${internal[@]}"; do echo "#[allow(unused_imports)] use arena_malloc::$m as _$m;"; done
} > "$dir/src/lib.rs"
if out=$(CARGO_TARGET_DIR="$root/target" cargo check --manifest-path "$dir/Cargo.toml" --message-format short 2>&1); then
  echo "api: FAIL: a dependent crate reaches the internals"; exit 1
fi
failed=0
for m in "${internal[@]}"; do
  if ! grep -q "src/lib.rs:[0-9]*:[0-9]*: error.*\b$m\b" <<<"$out"; then
    echo "api: FAIL: arena_malloc::$m is reachable from a dependent crate"; failed=1
  fi
done
[ "$failed" = 0 ] || { echo "$out" | tail -20; exit 1; }
echo "api: none of ${#internal[@]} internal names is reachable without the feature 'internals'"
