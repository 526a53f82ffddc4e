#!/usr/bin/env bash
# Loom model checking of the allocator's concurrent protocols (issue 4; docs/loom.md).
#
# 1. The facade rule: nothing outside src/sync.rs names std::sync, core::sync::atomic or loom,
#    except the one re-export of real atomics in `os::process` (the bottom layer's own statics,
#    never modelled; sync re-exports it, so that os needs nothing above it). Test harnesses are exempt: the models in src/tests/ (loom's threads and Arc) and the fuzz
#    driver in src/fuzz* (a OnceLock for its trace switch); neither is allocator code.
# 2. Every model (`loom_*` in src/tests/) at LOOM_MAX_PREEMPTIONS=2 (override with the env var).
#    Then the same models at LOOM_DEEP_PREEMPTIONS (default 4; 0 skips), still seconds.
# 3. Every planted bug (`sync::mutation::on("…")` in src/) must make the model meant for it fail
#    with the report that names it (`src/tests/loom_mutation.rs` has the table; the list of
#    mutations there must equal the list planted in the code), one process per mutation.
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
t0=$(date +%s)

echo "== loom: sync facade rule"
bad=$(grep -rnE 'std::sync|core::sync|loom::' src --include='*.rs' \
    | grep -vE '^src/sync\.rs:|^src/tests/|^src/fuzz(\.rs|/)' \
    | grep -vE '^src/os\.rs:[0-9]+:    pub use core::sync::atomic::\{$' \
    | grep -vE '^[^:]+:[0-9]+:\s*(//|///|//!)' || true)
if [ -n "$bad" ]; then
    echo "error: only src/sync.rs (and os::process's re-export) may name std::sync, core::sync or loom:" >&2
    echo "$bad" >&2
    exit 1
fi

echo "== loom: models (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
RUSTFLAGS="--cfg loom -C debug-assertions" CARGO_TARGET_DIR="$target" \
    timeout 480 cargo test --lib --release loom_ -- --nocapture --test-threads=2

# The same binary again, deeper: the models are small enough that 4 preemptions take seconds
# (docs/loom.md has the table); LOOM_DEEP_PREEMPTIONS=0 skips this pass. The three-thread
# lock model is left out: at 4 preemptions it runs 2.9 million executions (212 s); its bug
# (`lock_woken_takes_held`) is caught at 2.
deep="${LOOM_DEEP_PREEMPTIONS:-4}"
if [ "$deep" -gt "$LOOM_MAX_PREEMPTIONS" ]; then
    echo "== loom: models again at LOOM_MAX_PREEMPTIONS=$deep"
    LOOM_MAX_PREEMPTIONS="$deep" RUSTFLAGS="--cfg loom -C debug-assertions" \
        CARGO_TARGET_DIR="$target" \
        timeout 300 cargo test --lib --release loom_ -- --nocapture --test-threads=2 \
        --skip loom_lock_three_threads --skip loom_mutation_driver
fi

echo "== loom: every planted mutation is caught by its model, with its report"
# The mutations are switched on at run time (`sync::mutation`), so they run from the models'
# own build. Each runs in a process of its own: a deadlock that loom finds ends in an abort.
run_driver() {
    LOOM_MUTATION="$1" RUSTFLAGS="--cfg loom -C debug-assertions" CARGO_TARGET_DIR="$target" \
        timeout 300 cargo test -q --lib --release loom_mutation_driver -- \
        --ignored --exact tests::loom_mutation::loom_mutation_driver --nocapture 2>&1
}
listed=$(run_driver list | sed -n 's/^MUTATION //p' | sort)
planted=$(grep -rhoE 'mutation::on\("[a-z_]+"\)' src | sed -E 's/.*\("([a-z_]+)"\)/\1/' | sort -u)
if [ -z "$listed" ] || [ "$listed" != "$planted" ]; then
    echo "error: the mutations planted in src/ and those src/tests/loom_mutation.rs checks differ:" >&2
    diff <(echo "$planted") <(echo "$listed") >&2 || true
    exit 1
fi
missed=0
for m in $listed; do
    out=$(run_driver "$m") && rc=0 || rc=$?
    want=$(sed -n '/EXPECT /{s/^.*EXPECT //p;q;}' <<<"$out")
    rest=$(grep -v 'EXPECT ' <<<"$out" || true)
    # Here-strings, not pipes: `grep -q` leaves at its first match, and under pipefail the
    # writer's SIGPIPE would fail the test by chance (a long deadlock report did, once).
    if [ "$rc" -ne 0 ] && [ -n "$want" ] && grep -qF -- "$want" <<<"$rest" \
        && ! grep -q 'MUTATION NOT CAUGHT' <<<"$rest"; then
        echo "mutation $m: caught ($want)"
    else
        echo "mutation $m: NOT caught as expected (exit $rc, expected '$want'):" >&2
        printf '%s\n' "$rest" | grep -E 'panicked|deadlock|violation|NOT CAUGHT|assert' | head -n 8 >&2
        missed=$((missed + 1))
    fi
done
if [ "$missed" -ne 0 ]; then
    echo "error: $missed planted mutation(s) not caught by their models" >&2
    exit 1
fi

echo "== loom: all done in $(( $(date +%s) - t0 )) s"
