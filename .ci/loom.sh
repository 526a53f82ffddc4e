#!/usr/bin/env bash
# Loom model checking of the allocator's concurrent protocols (issue 4; docs/loom.md).
#
# 1. The facade rule: nothing outside src/sync.rs names std::sync, core::sync::atomic or loom.
#    Test harnesses are exempt: the models in src/tests/ (loom's threads and Arc) and the fuzz
#    driver in src/fuzz* (a OnceLock for its trace switch); neither is allocator code.
# 2. Every model (`loom_*` in src/tests/) at LOOM_MAX_PREEMPTIONS=2 (override with the env var).
#    Then the same models at LOOM_DEEP_PREEMPTIONS (default 4; 0 skips), still seconds.
# 3. One planted bug (LOOM_MUTATION, default remote_push_relaxed) must make its model fail:
#    `loom_mutation_is_caught` runs the model under catch_unwind and asserts that loom reported it.
#
# Exits non-zero on any failure. Measured on the 2 shared cores with CARGO_BUILD_JOBS=1: 177 s
# from a cold target directory (building loom and the crate twice, once per RUSTFLAGS set),
# 18 s warm after a source change; the models themselves take about 6 s (docs/loom.md).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export RUST_BACKTRACE=0
target="${CARGO_TARGET_DIR:-target}"
mutation="${LOOM_MUTATION:-remote_push_relaxed}"
t0=$(date +%s)

echo "== loom: sync facade rule"
bad=$(grep -rnE 'std::sync|core::sync|loom::' src --include='*.rs' \
    | grep -vE '^src/sync\.rs:|^src/tests/|^src/fuzz(\.rs|/)' \
    | grep -vE '^[^:]+:[0-9]+:\s*(//|///|//!)' || true)
if [ -n "$bad" ]; then
    echo "error: only src/sync.rs may name std::sync, core::sync or loom:" >&2
    echo "$bad" >&2
    exit 1
fi

echo "== loom: models (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
RUSTFLAGS="--cfg loom -C debug-assertions" CARGO_TARGET_DIR="$target" \
    timeout 480 cargo test --lib --release loom_ -- --nocapture --test-threads=2

# The same binary again, deeper: the models are small enough that 4 preemptions take seconds
# (docs/loom.md has the table); LOOM_DEEP_PREEMPTIONS=0 skips this pass.
deep="${LOOM_DEEP_PREEMPTIONS:-4}"
if [ "$deep" -gt "$LOOM_MAX_PREEMPTIONS" ]; then
    echo "== loom: models again at LOOM_MAX_PREEMPTIONS=$deep"
    LOOM_MAX_PREEMPTIONS="$deep" RUSTFLAGS="--cfg loom -C debug-assertions" \
        CARGO_TARGET_DIR="$target" \
        timeout 300 cargo test --lib --release loom_ -- --nocapture --test-threads=2
fi

echo "== loom: planted bug '$mutation' must be caught"
# A target directory of its own, so that the two RUSTFLAGS sets do not rebuild each other.
RUSTFLAGS="--cfg loom -C debug-assertions --cfg loom_mutation=\"$mutation\"" \
    CARGO_TARGET_DIR="$target/loom-mutation" \
    timeout 480 cargo test --lib --release loom_mutation_is_caught -- --nocapture

echo "== loom: all done in $(( $(date +%s) - t0 )) s"
