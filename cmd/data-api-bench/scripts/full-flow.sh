#!/usr/bin/env bash
# full-flow.sh [DURATION] [ENV=VALUE...]: BENCHMARKS.md, targets 2 and 5.
# The service with its default configuration (one API key, a fresh database;
# ENV=VALUE pairs are added to its environment last, so they may name
# another database) under `data-api-bench -mode full` (64 chatbot
# connections, 2 analysts; more flags in $BENCH_FLAGS); prints the tool's
# summary, the consent transactions and the retention purge's deletions
# from /metrics, and the server-side latency percentiles per route from the
# service's own request log. With SPLIT=1 the service runs on CPU 0 and the
# load tool on CPU 1, so that neither takes the other's CPU.
set -euo pipefail
duration=${1:-20s}
shift || true
service=() load=()
if [ "${SPLIT:-0}" = 1 ]; then
	service=(taskset -c 0) load=(taskset -c 1)
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
(cd "$here/../../.." && go build -o "$out/data-api" ./cmd/data-api && go build -o "$out/data-api-bench" ./cmd/data-api-bench)
KEYS='[{"name":"bench","key":"bench-secret-0123456789","roles":["ingest","analyst","admin"]}]'
env DATA_API_SERVER_ADDR=127.0.0.1:18080 DATA_API_DATABASE_DSN="$out/sqlite.db" DATA_API_AUTH_KEYS="$KEYS" "$@" \
	"${service[@]}" "$out/data-api" 2>"$out/service.log" &
svc=$!
trap 'kill $svc 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT
until curl -sf http://127.0.0.1:18080/readyz >/dev/null; do
	kill -0 $svc || { tail -3 "$out/service.log"; exit 1; }
	sleep 0.2
done
metrics() {
	curl -s -H 'Authorization: Bearer bench-secret-0123456789' http://127.0.0.1:18080/metrics |
		grep -E '^data_api_db_write_duration_seconds_(sum|count)\{op="consent"|^data_api_messages_deleted_total\{cause="retention"'  || true
}
echo "before:"; metrics
# shellcheck disable=SC2086 # BENCH_FLAGS holds several flags
"${load[@]}" "$out/data-api-bench" -url http://127.0.0.1:18080 -key bench-secret-0123456789 -mode full -duration "$duration" ${BENCH_FLAGS:-} || true
echo "after:"; metrics
python3 - "$out/service.log" <<'PY'
import json, sys
from collections import defaultdict
lat = defaultdict(list)
for line in open(sys.argv[1]):
    if '"msg":"request"' in line:
        r = json.loads(line)
        lat[(r["method"], r["route"])].append(r["latency"] / 1e6)
print("server-side latency, from the request log:")
for (method, route), v in sorted(lat.items()):
    v.sort()
    n = len(v)
    print(f"  {method:6} {route:28} n={n:7d} p50={v[n // 2]:6.2f} ms p99={v[int(n * 0.99)]:6.2f} ms max={v[-1]:6.2f} ms")
PY
