#!/usr/bin/env bash
# AddressSanitizer with arena-malloc as the global allocator (feature `asan`, tests/asan.rs):
# an overflow into a block's slack and a use after free must be reported at the planted access.
# Needs nightly (-Zsanitizer); about 60 s from a cold target/asan, 10 s warm.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
host=$(rustc -vV | sed -n 's/^host: //p')
# Both small-block paths: runs off, then on (ARENA_MALLOC_RUNS=1).
for runs in 0 1; do
  ARENA_MALLOC_RUNS=$runs RUSTFLAGS=-Zsanitizer=address CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
    cargo +nightly test --features asan --test asan --target "$host" --target-dir target/asan
done
