#!/usr/bin/env bash
# The fuzz harness (issue 12): runs each target for a fixed number of executions.
#
#   fuzz/run.sh                          every target, each for its default number of runs
#   fuzz/run.sh config_loader            one target
#   fuzz/run.sh config_loader 5000000    one target, that many runs
#
# libFuzzer through libfuzzer-sys on the stable toolchain: coverage comes from LLVM's
# sanitizer-coverage pass (-Cpasses=sancov-module), no sanitizer and no nightly needed, and
# no cargo-fuzz (the crate is laid out for it all the same: `cargo fuzz run <target>` works
# where cargo-fuzz and a nightly toolchain are installed). Needs cargo and a C++ compiler
# (libFuzzer itself is C++); installs g++ when there is none. The first build instruments
# the whole dependency tree: about 10 minutes on 2 cores, at the lowest CPU priority.
#
# Limits: -timeout=1 (one input taking over 1 s is a finding), -rss_limit_mb=256. A crash,
# timeout or out-of-memory stops that target; its input is in fuzz/artifacts/<target>/.
# Minimize it (the command is printed), keep it in fuzz/regressions/<target>/ (where
# tests/fuzz_regressions.rs runs it on every `cargo test`), then fix the cause.
# What the fuzzer learns goes to fuzz/corpus/<target>/ (not committed; the seeds are in
# fuzz/seeds/<target>/). Logs: fuzz/target/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"

targets=(config_loader units push_url api_request http_reply redis_reply)
default_runs() {
  case $1 in
    config_loader | units | push_url | api_request) echo 1000000 ;;
    *) echo 200000 ;;
  esac
}

if [ $# -gt 0 ]; then
  case " ${targets[*]} " in
    *" $1 "*) targets=("$1") ;;
    *) echo "unknown target $1 (one of: ${targets[*]})" >&2; exit 2 ;;
  esac
fi
runs_arg=${2:-}

if ! command -v c++ >/dev/null; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends g++
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
# As cargo-fuzz instruments: edge counters, the PC table, comparisons traced. Given with
# --target, so build scripts and proc macros stay uninstrumented.
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
nice -n 19 cargo build --release --locked --target "$triple" ${FUZZ_JOBS:+-j "$FUZZ_JOBS"} "${bins[@]}"

mkdir -p target/logs
failed=()
for t in "${targets[@]}"; do
  runs=${runs_arg:-$(default_runs "$t")}
  mkdir -p "corpus/$t" "artifacts/$t" "regressions/$t"
  # The entry points' scratch folders (the config sandbox, the daemon's data) go here,
  # emptied before each run.
  export TMPDIR="$PWD/target/tmp/$t"
  rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
  log="target/logs/$t.log"
  echo "== $t: $runs runs (log: fuzz/$log)"
  start=$(date +%s.%N)
  status=0
  "target/$triple/release/$t" "corpus/$t" "seeds/$t" "regressions/$t" \
    -runs="$runs" -timeout=1 -rss_limit_mb=256 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=$?
  end=$(date +%s.%N)
  rm -rf "$TMPDIR"
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  execs=$(stat number_of_executed_units)
  wall=$(awk "BEGIN { print $end - $start }")
  rate=$(awk "BEGIN { if ($wall > 0) printf \"%.0f\", ${execs:-0} / $wall; else print 0 }")
  printf '%s: %s executions in %.0f s (%s exec/s), slowest %s s, peak RSS %s MB, exit %s\n' \
    "$t" "${execs:-?}" "$wall" "$rate" "$(stat slowest_unit_time_sec)" "$(stat peak_rss_mb)" \
    "$status"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    grep -E "^(==[0-9]+== ERROR|SUMMARY|artifact_prefix|Test unit written)|panicked at" "$log" | head -5 || true
    for a in "artifacts/$t"/*; do
      [ -e "$a" ] || continue
      echo "   minimize: fuzz/target/$triple/release/$t -minimize_crash=1 -runs=100000 -timeout=1 -exact_artifact_path=fuzz/regressions/$t/$(basename "$a") fuzz/$a"
    done
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]}" >&2
  exit 1
fi
