#!/usr/bin/env bash
# Benchmark of the public side with a year of history: N public probes (in G groups), each
# with 365 days of hourly rollups and some resolved incidents, served by the release probed.
# Prints the time to build and serve each public document cold (the first request after the
# view's 10 s cache expires) and warm (from the cache), as curl measures it.
# Usage: benches/status_page.sh          (env: N=200 G=10 REPEAT=5)
# Everything on 127.0.0.1; every process stopped by PID.
set -u
cd "$(dirname "$0")/.."
N=${N:-200} G=${G:-10} REPEAT=${REPEAT:-5}
[ -x target/release/probed ] || cargo build --release -q
W=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null; done; sleep 0.5; rm -rf "$W"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
LP=$(port)
# Probes of a port where nothing listens: every run fails fast, nothing else is loaded.
{ echo "probes:"; for i in $(seq 0 $((N-1))); do
  echo "  - { name: p$i, kind: tcp, host: 127.0.0.1, port: 9, every: 60s, public: true, title: \"Service $i\", group: \"Group $((i % G))\" }"; done; } >"$W/probes.yaml"
printf 'listen: 127.0.0.1:%s\ndata_dir: %s/data\nprobes: %s/probes.yaml\n' "$LP" "$W" "$W" >"$W/probed.yaml"
start() { target/release/probed -c "$W/probed.yaml" --log warn >>"$W/probed.log" 2>&1 & P=$!; PIDS+=($P)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$LP/healthz" >/dev/null && return; sleep 0.1; done; }
start; kill "$P"; wait "$P" 2>/dev/null
# A year of hourly rollups per probe, and 20 resolved incidents per probe.
python3 - "$W/data/probed.db" <<'PY'
import sqlite3, sys, time, random
db = sqlite3.connect(sys.argv[1])
now = int(time.time() * 1000); hour = 3_600_000
h0 = now - now % hour - 365 * 24 * hour
ids = [r[0] for r in db.execute("SELECT id FROM probes")]
rows = []
for pid in ids:
    for h in range(365 * 24):
        runs = 60; ok = 60 if random.random() > 0.01 else 45
        rows.append((pid, h0 + h * hour, runs, ok, runs * 20_000, 80_000))
db.executemany("INSERT OR REPLACE INTO rollups_hourly VALUES (?,?,?,?,?,?)", rows)
# The daily rollups the writer keeps beside the hourly ones.
db.execute("INSERT OR REPLACE INTO rollups_daily SELECT probe_id, hour - hour % 86400000, sum(runs), "
           "sum(ok), sum(sum_duration_us), max(max_duration_us) FROM rollups_hourly "
           "GROUP BY probe_id, hour - hour % 86400000")
for pid, name in db.execute("SELECT id, name FROM probes").fetchall():
    for k in range(20):
        t = now - (k + 1) * 4 * 86_400_000
        db.execute("INSERT INTO incidents (probe_id, probe, severity, opened_at, reason, alert, paged, "
                   "recovered_at, resolved_at) VALUES (?,?,?,?,?,'{}',1,?,?)",
                   (pid, name, "critical", t, "x", t + 600_000, t + 600_000))
db.commit()
print(f"rollups: {len(rows)} rows for {len(ids)} probes; incidents: {20 * len(ids)}")
PY
start
for path in /api/v2/summary.json /status /feed.atom; do
  cold=(); warm=()
  for _ in $(seq "$REPEAT"); do
    sleep 10.5   # let the cached view expire
    cold+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$LP$path")")
    warm+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$LP$path")")
  done
  size=$(curl -s "http://127.0.0.1:$LP$path" | wc -c)
  gz=$(curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://127.0.0.1:$LP$path")
  size="$size, $gz on the wire with Accept-Encoding: gzip"
  printf '%-24s cold %s s   warm %s s   (%s bytes)\n' "$path" \
    "$(printf '%s\n' "${cold[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" \
    "$(printf '%s\n' "${warm[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "$size"
done
echo "rss: $(awk '/VmRSS/{print $2}' /proc/$P/status) kB"
