#!/usr/bin/env bash
# Fuzz smoke: every cargo-fuzz target for a short run (default 30 s each, FUZZ_SECONDS to
# change; half with runs off, half with ARENA_MALLOC_RUNS=1), one at a time, on nightly with
# AddressSanitizer (cargo-fuzz's default). Exits
# non-zero when a target crashes; the crashing input is left in fuzz/artifacts/<target>/.
# Long campaigns: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-"ops threads capi global"}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

cd fuzz
cargo +nightly fuzz build
status=0
# Each target's time is split between the two small-block paths: runs off, then runs on
# (ARENA_MALLOC_RUNS=1, read by the fuzzed heaps and by the process heap of `global`/`capi`).
half=$(( (secs + 1) / 2 ))
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  for runs in 0 1; do
    log="artifacts/$t/smoke-runs$runs.log"
    echo "-- fuzz $t for ${half}s, ARENA_MALLOC_RUNS=$runs"
    if ! ARENA_MALLOC_RUNS=$runs cargo +nightly fuzz run "$t" -- -max_total_time="$half" \
        -print_final_stats=1 >"$log" 2>&1; then
      echo "fuzz target $t FAILED (ARENA_MALLOC_RUNS=$runs); log and crash input in fuzz/artifacts/$t/:"
      tail -n 40 "$log"
      status=1
    else
      grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "$log" | tr '\n' ' '
      echo
    fi
  done
done
exit $status
