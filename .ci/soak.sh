#!/usr/bin/env bash
# Soak: runs the test suite N times in a row (default 10) and reports every failing run with
# its seed. Each run sets ARENA_TEST_SEED to a new value (the tests' generators mix it into
# their own seeds: tests/common `Rng::new`), so runs differ in their inputs as well as their
# timing; replay a failure with `ARENA_TEST_SEED=<seed> cargo test <the same arguments>`.
#
#   bash .ci/soak.sh 20                                            # cargo test, 20 times
#   bash .ci/soak.sh 100 --features override --test override_heap # one test binary
#
# Arguments after N go to `cargo test` as they are. Logs: target/soak/<start time>/run-<i>.log
# (kept for failing runs). Exits non-zero if any run failed. Not part of CI (docs/testing.md).
#
# Each run is `cargo test`, which rebuilds when a source changes: a soak measures the code it
# started with only if nobody edits the tree meanwhile (soak a clone to keep working). It stops,
# failed, at the first run that finds the sources changed since it started, rather than count
# what an edit broke (a half-made change that does not compile) against the code.
set -uo pipefail
cd "$(dirname "$0")/.."
n="${1:-10}"
shift || true
export CARGO_TERM_COLOR=never
cargo test -q --no-run "$@" >/dev/null 2>&1 || { cargo test -q --no-run "$@"; exit 1; }
dir="target/soak/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$dir"
stamp="$dir/.start"
touch "$stamp"
failed=0
start=$SECONDS
for i in $(seq 1 "$n"); do
    changed=$(find src tests Cargo.toml -newer "$stamp" -type f 2>/dev/null | head -n 3)
    if [ -n "$changed" ]; then
        echo "soak: stopped before run $i: sources changed since the soak started ($(echo $changed))"
        echo "soak: $((i - 1 - failed)) passed, $failed failed before the change (cargo test $*)"
        exit 1
    fi
    seed=$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ))
    log="$dir/run-$i.log"
    t0=$SECONDS
    if ARENA_TEST_SEED="$seed" cargo test -q "$@" >"$log" 2>&1; then
        echo "run $i/$n seed $seed: ok ($((SECONDS - t0)) s)"
        rm -f "$log"
    else
        failed=$((failed + 1))
        echo "run $i/$n seed $seed: FAILED ($((SECONDS - t0)) s), log $log:"
        grep -E '^---- |panicked at|^test .* FAILED|^failures:|child failed|error: test failed' "$log" \
            | head -n 20 | sed 's/^/    /'
    fi
done
echo "soak: $((n - failed)) passed, $failed failed in $((SECONDS - start)) s (cargo test $*)"
[ "$failed" -eq 0 ]
