#!/usr/bin/env bash
# Benchmark of the spine: N HTTP probes every INTERVAL against one local nginx, run by the
# release probed. Prints start jitter (p50/p99/max from probed_schedule_lag_seconds), CPU per
# probe, RSS, `probectl status` latency, and store growth per probe per day.
# Usage: benches/spine.sh     (env: N=2000 INTERVAL=10 WARM=15 MEASURE=30 BIN=target/release,
# BIN naming another build's folder to compare builds)
# Needs Debian's nginx; everything on 127.0.0.1; every process stopped by PID.
set -u
cd "$(dirname "$0")/.."
N=${N:-2000} INTERVAL=${INTERVAL:-10} WARM=${WARM:-15} MEASURE=${MEASURE:-30}
BIN=${BIN:-target/release}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 1; }
[ -x "$BIN/probed" ] || cargo build --release -q
W=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null; done; sleep 0.5; rm -rf "$W"; }
trap cleanup EXIT
. benches/common.sh

LP=$(port)
start_nginx "$W"
{ echo "probes:"; for i in $(seq 0 $((N-1))); do
  echo "  - { name: p$i, kind: http, every: ${INTERVAL}s, timeout: 5s, request: { url: \"http://127.0.0.1:$NP/?i=$i\" } }"; done; } >"$W/probes.yaml"
printf 'listen: 127.0.0.1:%s\ndata_dir: %s/data\nprobes: %s/probes.yaml\n' "$LP" "$W" "$W" >"$W/probed.yaml"
"$BIN/probed" -c "$W/probed.yaml" --log warn >"$W/probed.log" 2>&1 & P=$!; PIDS+=($P)
sleep "$WARM"; [ -n "${PERF:-}" ] && (perf record -F 999 -g -p $P -o /tmp/perf.data -- sleep 20 >/dev/null 2>&1 &)
metric() { curl -s "http://127.0.0.1:$LP/metrics" | awk -v m="$1" '$1==m {print $2}'; }
lag_hist() { curl -s "http://127.0.0.1:$LP/metrics" | grep '^probed_schedule_lag_seconds_'; }
lag_hist >"$W/lag0"; c0=$(cpu_ticks $P); w0=$(metric probed_store_written_total); t0=$(date +%s.%N)
sleep "$MEASURE"
lag_hist >"$W/lag1"; c1=$(cpu_ticks $P); w1=$(metric probed_store_written_total); t1=$(date +%s.%N)
rss=$(awk '/VmRSS/{print $2}' /proc/$P/status)
# probectl status: median of 10 runs
st=$(for i in $(seq 10); do s=$(date +%s%N); "$BIN/probectl" --url "http://127.0.0.1:$LP" status --json >/dev/null; e=$(date +%s%N); echo $(( (e-s)/1000 )); done | sort -n | sed -n 5p)
dropped=$(metric probed_store_dropped_total); skipped=$(curl -s "http://127.0.0.1:$LP/metrics" | awk '/^probed_runs_skipped_total/ {s+=$2} END {print s+0}')
kill -TERM $P; wait $P 2>/dev/null
db=$W/data/probed.db
rows=$(python3 -c "import sqlite3;print(sqlite3.connect('$db').execute('select count(*) from results').fetchone()[0])")
bytes=$(du -cb "$W"/data/probed.db* | tail -1 | cut -f1)
python3 - "$W/lag0" "$W/lag1" <<PY
import sys, re
def hist(f):
    b = {}
    for line in open(f):
        m = re.match(r'probed_schedule_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m: b[m.group(1)] = float(m.group(2))
    return b
h0, h1 = hist(sys.argv[1]), hist(sys.argv[2])
les = sorted((float(k) if k != "+Inf" else float("inf"), h1[k] - h0.get(k, 0)) for k in h1)
total = les[-1][1]
def q(p):
    for le, c in les:
        if c >= p * total: return le
c = ($c1 - $c0) / $TCK; runs = $w1 - $w0; wall = $t1 - $t0
print(f"probes={$N} every={$INTERVAL}s measured={wall:.0f}s runs={runs:.0f} ({runs/wall:.0f}/s)")
print(f"start lag: p50 <= {q(0.5)*1000:g} ms, p99 <= {q(0.99)*1000:g} ms, p99.9 <= {q(0.999)*1000:g} ms (histogram bucket bounds, {total:.0f} starts)")
print(f"cpu: {c/wall*100:.1f}% of a core, {c*1e6/runs:.0f} us per probe run (scheduling, check, metrics, store included)")
print(f"rss: {$rss/1024:.1f} MiB")
print(f"probectl status --json with {$N} probes: median {$st/1000:.1f} ms over 10 runs")
print(f"store: {$rows} results in {$bytes/1e6:.1f} MB = {$bytes/max($rows,1):.0f} bytes per result; at every {$INTERVAL}s that is {86400/$INTERVAL*$bytes/max($rows,1)/1e6:.2f} MB per probe per day before retention")
print(f"dropped results: {int(float('$dropped' or 0))}, skipped runs: {int(float('$skipped' or 0))}")
PY
