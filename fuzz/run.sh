#!/usr/bin/env bash
# Fuzzes presence with cargo-fuzz (libFuzzer, AddressSanitizer, debug
# assertions on) on a stable toolchain.
#
#   fuzz/run.sh smoke          every target for SMOKE_SECONDS (default 20) each
#   fuzz/run.sh full [TARGET]  each target (or one) until RUNS executions
#                              (default 10000000); prints execs and exec/s
#   fuzz/run.sh build          only builds the targets
#
# MAX_SECONDS (full mode) caps each target's time; 0 (default) is no cap.
# SANITIZER (default address) is passed to cargo fuzz's -s: `none` runs
# about twice as fast (our crates forbid unsafe code; panics, debug
# assertions and the harnesses' invariants are checked either way).
#
# New corpus entries go to fuzz/corpus/<target> (not committed); the
# committed seeds are fuzz/seeds/<target>, and the inputs that once failed
# fuzz/regressions/<target> (replayed by `cargo test` as well). A failing
# input lands in fuzz/artifacts/<target>; the script then exits non-zero.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(decode connection settings)
RUNS="${RUNS:-10000000}"
SMOKE_SECONDS="${SMOKE_SECONDS:-20}"
SANITIZER="${SANITIZER:-address}"
MAX_SECONDS="${MAX_SECONDS:-0}"

# cargo-fuzz passes nightly-only flags (-Z sanitizer=…) to rustc: a stable
# toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
}

build() {
  cargo fuzz build --debug-assertions -s "$SANITIZER" "$@"
}

# fuzz TARGET LIBFUZZER_FLAGS...: runs one target over its corpus, seeds
# and regressions, then prints libFuzzer's final statistics.
fuzz() {
  local target="$1"
  shift
  local corpus="corpus/$target"
  local log="artifacts/$target.log"
  mkdir -p "$corpus" "seeds/$target" "regressions/$target" "artifacts/$target"
  local started=$SECONDS status=0 extra=()
  # Leak checks are off for the connection harness: they cost it about
  # 10x the speed.
  [ "$target" = connection ] && extra=(-detect_leaks=0)
  cargo fuzz run --debug-assertions -s "$SANITIZER" "$target" "$corpus" "seeds/$target" "regressions/$target" -- \
    -max_len=4096 -timeout=10 -print_final_stats=1 "${extra[@]}" "$@" >"$log" 2>&1 || status=$?
  local runs rate
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  printf '%-12s %12s execs %8s exec/s %5ss  %s\n' "$target" "${runs:-?}" "${rate:-?}" \
    "$((SECONDS - started))" "$([ "$status" -eq 0 ] && echo ok || echo "FAILED (see fuzz/$log)")"
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
  fi
  return "$status"
}

ensure_cargo_fuzz
mode="${1:-smoke}"
case "$mode" in
  build)
    build
    ;;
  smoke)
    build
    failed=0
    for target in "${TARGETS[@]}"; do
      fuzz "$target" -max_total_time="$SMOKE_SECONDS" || failed=1
    done
    exit "$failed"
    ;;
  full)
    build
    failed=0
    for target in "${@:2}"; do
      [[ " ${TARGETS[*]} " == *" $target "* ]] || { echo "unknown target $target" >&2; exit 2; }
    done
    selected=("${@:2}")
    [ "${#selected[@]}" -gt 0 ] || selected=("${TARGETS[@]}")
    for target in "${selected[@]}"; do
      fuzz "$target" -runs="$RUNS" -max_total_time="$MAX_SECONDS" || failed=1
    done
    exit "$failed"
    ;;
  *)
    echo "usage: $0 [smoke|full [TARGET...]|build]" >&2
    exit 2
    ;;
esac
