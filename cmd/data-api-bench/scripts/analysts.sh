#!/usr/bin/env bash
# analysts.sh [CONNS] [DURATION]: BENCHMARKS.md, target 3. Serves a copy of
# the 1M-row benchmark database (built once through the repository's bulk
# path and cached in $TMPDIR, ~1 min) with the service's default
# configuration, loads it with `data-api-bench -mode query -conns CONNS`
# (default 8) for DURATION (default 10s), and prints the tool's first-page
# latencies per filter, then the server-side latency of every GET /data
# from the service's own request log and its CPU time per request. With
# SPLIT=1 the service runs on CPU 0 and the load tool on CPU 1, so that
# neither takes the other's CPU.
set -euo pipefail
conns=${1:-8} duration=${2:-10s}
service=() load=()
if [ "${SPLIT:-0}" = 1 ]; then
	service=(taskset -c 0) load=(taskset -c 1)
fi
here=$(cd "$(dirname "$0")" && pwd)
root="$here/../../.."
tmp=${TMPDIR:-/tmp}
if ! ls "$tmp"/data-api-bench-1000000-*.db >/dev/null 2>&1; then
	(cd "$root" && DATA_API_BENCH_ROWS=1000000 go test -run '^$' -bench 'Query/filter=none/keyset-page=1$' -benchtime 1x ./repository/ >/dev/null)
fi
db=$(ls -t "$tmp"/data-api-bench-1000000-*.db | head -1)
out=$(mktemp -d)
(cd "$root" && go build -o "$out/data-api" ./cmd/data-api && go build -o "$out/data-api-bench" ./cmd/data-api-bench)
cp "$db" "$out/q.db" && cp "$db.key" "$out/q.db.key"
DATA_API_SERVER_ADDR=127.0.0.1:18181 DATA_API_DATABASE_DSN="$out/q.db" "${service[@]}" "$out/data-api" 2>"$out/service.log" &
svc=$!
trap 'kill $svc 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT
until curl -sf http://127.0.0.1:18181/readyz >/dev/null; do
	kill -0 $svc || { tail -3 "$out/service.log"; exit 1; }
	sleep 0.2
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in 1/100 s
c0=$(cpu $svc)
"${load[@]}" "$out/data-api-bench" -url http://127.0.0.1:18181 -mode query -duration "$duration" -conns "$conns" >"$out/client.txt" 2>&1
c1=$(cpu $svc)
awk '/^endpoint / && !header++ || /^query-(none|language|customer|both) /' "$out/client.txt"
python3 - "$out/service.log" $((c1 - c0)) <<'PY'
import json, sys
lat = []
for line in open(sys.argv[1]):
    if '"msg":"request"' in line:
        r = json.loads(line)
        if r["method"] == "GET" and r["route"] == "/data":
            lat.append(r["latency"] / 1e6)
lat.sort()
n = len(lat)
print(f"server-side GET /data: n={n} p50={lat[n // 2]:.2f} p90={lat[int(n * 0.9)]:.2f} p99={lat[int(n * 0.99)]:.2f} ms, "
      f"CPU {int(sys.argv[2]) * 1e4 / n:.0f} µs a request (the closing export of the 1M rows included)")
PY
