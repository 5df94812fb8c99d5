#!/usr/bin/env bash
# Benchmark of several locations on one shared store: three release probed (eu-west,
# us-east, ap-south), each running the same N HTTP probes every INTERVAL against one local
# nginx, all writing to one fresh database on the PostgreSQL at 127.0.0.1:5432.
# Prints, per daemon: results per second, CPU per probe run, RSS; PostgreSQL's CPU (all its
# processes) and commits per second on that database; and the time from the second
# location's failure to the page (probe `edge`, every 1s, after 2, each location through a
# target of its own). Then runs benches/spine.sh for one daemon on SQLite beside it.
# Usage: benches/locations.sh     (env: N=2000 INTERVAL=10 WARM=20 MEASURE=30 BIN=target/release)
# Needs Debian's nginx and a PostgreSQL on 127.0.0.1:5432 that trusts `postgres`; everything
# on 127.0.0.1; every process stopped by PID and the database dropped at the end.
set -u
cd "$(dirname "$0")/.."
N=${N:-2000} INTERVAL=${INTERVAL:-10} WARM=${WARM:-20} MEASURE=${MEASURE:-30}
BIN=${BIN:-target/release}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 1; }
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "needs PostgreSQL on 127.0.0.1:5432" >&2; exit 1; }
[ -x "$BIN/probed" ] || cargo build --release -q
W=$(mktemp -d); PIDS=(); DB="probed_bench_$$"
PSQL=(psql -h 127.0.0.1 -U postgres -qAt)
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null; done; sleep 1
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
. benches/common.sh
pg_ticks() { local t=0; for p in $(pgrep -x postgres; pgrep -f '^postgres: '); do
  t=$((t + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
commits() { "${PSQL[@]}" -d postgres -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB" || exit 1
URL="postgres://postgres@127.0.0.1:5432/$DB"

start_nginx "$W"
{ echo "probes:"; for i in $(seq 0 $((N-1))); do
  echo "  - { name: p$i, kind: http, every: ${INTERVAL}s, timeout: 5s, request: { url: \"http://127.0.0.1:$NP/?i=$i\" } }"; done; } >"$W/probes.yaml"

# The page receiver: appends "<unix seconds> <body>" per POST.
HP=$(port)
cat >"$W/hook.py" <<'PY'
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(sys.argv[2], "a") as f:
            f.write(f"{time.time():.3f} {body.decode(errors='replace')}\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$W/hook.py" "$HP" "$W/pages" & PIDS+=($!)

LOCS=(eu-west us-east ap-south); DP=(); EDGE=(); EP=()
for i in 0 1 2; do
  loc=${LOCS[$i]}; lp=$(port); ep=$(port); DP+=("$lp"); EP+=("$ep")
  mkdir -p "$W/$loc/www"
  python3 -m http.server "$ep" --bind 127.0.0.1 -d "$W/$loc/www" >/dev/null 2>&1 & EDGE+=($!); PIDS+=($!)
  cat >"$W/$loc/probed.yaml" <<CFG
listen: 127.0.0.1:$lp
data_dir: $W/$loc/data
instance: probed-$loc
location: $loc
store: { url: "$URL" }
notifiers:
  hook: { kind: webhook, url: "http://127.0.0.1:$HP/hook" }
routes:
  - { match: { probe: edge }, notify: [hook] }
probes: $W/$loc/probes
CFG
  mkdir -p "$W/$loc/probes"; cp "$W/probes.yaml" "$W/$loc/probes/many.yaml"
  cat >"$W/$loc/probes/edge.yaml" <<CFG
probes:
  - { name: edge, kind: http, every: 1s, timeout: 900ms, alert: { after: 2 }, request: { url: "http://127.0.0.1:$ep/" } }
CFG
done
P=()
for i in 0 1 2; do
  "$BIN/probed" -c "$W/${LOCS[$i]}/probed.yaml" --log warn >"$W/${LOCS[$i]}.log" 2>&1 & P+=($!); PIDS+=($!)
done
sleep "$WARM"
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }
declare -a c0 w0 c1 w1
for i in 0 1 2; do c0[$i]=$(cpu_ticks ${P[$i]}); w0[$i]=$(metric ${DP[$i]} probed_store_written_total); done
g0=$(pg_ticks); x0=$(commits); t0=$(date +%s.%N)
sleep "$MEASURE"
for i in 0 1 2; do c1[$i]=$(cpu_ticks ${P[$i]}); w1[$i]=$(metric ${DP[$i]} probed_store_written_total); done
g1=$(pg_ticks); x1=$(commits); t1=$(date +%s.%N)
wall=$(python3 -c "print($t1 - $t0)")
echo "probes=$N every=${INTERVAL}s per daemon, 3 daemons, one PostgreSQL, measured ${wall%.*}s"
for i in 0 1 2; do
  rss=$(awk '/VmRSS/{print $2}' /proc/${P[$i]}/status)
  python3 -c "
c=(${c1[$i]}-${c0[$i]})/$TCK; runs=float('${w1[$i]:-0}')-float('${w0[$i]:-0}'); w=$wall
print(f'${LOCS[$i]}: {runs/w:.0f} results/s, cpu {c/w*100:.1f}% of a core, {c*1e6/max(runs,1):.0f} us per probe run, rss {$rss/1024:.1f} MiB')"
done
python3 -c "
c=($g1-$g0)/$TCK; w=$wall
print(f'postgresql: cpu {c/w*100:.1f}% of a core (all its processes), {($x1-$x0)/w:.1f} commits/s on the database')"

# The second location's failure to the page.
for d in "${DP[@]}"; do
  until curl -s "http://127.0.0.1:$d/api/v1/status" | grep -q '"name":"edge","kind":"http","state":"up"'; do sleep 0.5; done
done
kill "${EDGE[0]}"
for d in "${DP[@]}"; do
  until curl -s "http://127.0.0.1:$d/api/v1/status" | python3 -c '
import json,sys
p=[p for p in json.load(sys.stdin)["probes"] if p["name"]=="edge"][0]
sys.exit(0 if any(l["location"]=="eu-west" and l["state"]=="down" for l in p["locations"]) else 1)'; do sleep 0.2; done
done
: >"$W/pages"
tf=$(date +%s.%N); kill "${EDGE[1]}"
for _ in $(seq 300); do grep -q '"event":"trigger"' "$W/pages" 2>/dev/null && break; sleep 0.1; done
python3 - "$W/pages" "$tf" <<'PY'
import json, sys
tf = float(sys.argv[2]); pages = []
for line in open(sys.argv[1]):
    at, body = line.split(" ", 1)
    b = json.loads(body)
    if b.get("event") == "trigger": pages.append((float(at), b))
if not pages: print("no page within 30 s"); sys.exit()
at, b = pages[0]
print(f"second location's failure to the page: {at - tf:.2f} s ({len(pages)} page(s)): {b.get('summary', '')}")
PY
for p in "${P[@]}"; do kill -TERM "$p"; done
for p in "${P[@]}"; do wait "$p" 2>/dev/null; done
echo
echo "one daemon on SQLite, the same probes (benches/spine.sh):"
N=$N INTERVAL=$INTERVAL BIN=$BIN benches/spine.sh
