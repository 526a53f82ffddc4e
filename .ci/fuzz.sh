#!/usr/bin/env bash
# Fuzz smoke: every cargo-fuzz target for a short run (default 30 s each, FUZZ_SECONDS to
# change), one at a time, on nightly with AddressSanitizer (cargo-fuzz's default). Exits
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
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "-- fuzz $t for ${secs}s"
  if ! cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 \
      >"artifacts/$t/smoke.log" 2>&1; then
    echo "fuzz target $t FAILED; log and crash input in fuzz/artifacts/$t/:"
    tail -n 40 "artifacts/$t/smoke.log"
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "artifacts/$t/smoke.log" \
      | tr '\n' ' '
    echo
  fi
done
exit $status
