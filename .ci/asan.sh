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
RUSTFLAGS=-Zsanitizer=address CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
  cargo +nightly test --features asan --test asan --target "$host" --target-dir target/asan
