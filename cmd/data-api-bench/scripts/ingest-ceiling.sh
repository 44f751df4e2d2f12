#!/usr/bin/env bash
# ingest-ceiling.sh [ROUNDS]: BENCHMARKS.md, target 1. Builds the service and
# the load tool from this checkout; runs the bare ceiling (data-api-bench
# bare) and the service with its default configuration (one API key, request
# log on), each in its own process; loads each in turn with
# `wrk -t1 -c64 -d8s` (a separate process), ROUNDS times (default 3). Prints
# req/s, p99 and the server process's CPU time per request.
set -euo pipefail
rounds=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
(cd "$here/../../.." && go build -o "$out/data-api" ./cmd/data-api && go build -o "$out/data-api-bench" ./cmd/data-api-bench)
KEYS='[{"name":"bench","key":"bench-secret-0123456789","roles":["ingest","analyst","admin"]}]'
DATA_API_SERVER_ADDR=127.0.0.1:18080 DATA_API_DATABASE_DSN="$out/sqlite.db" DATA_API_AUTH_KEYS="$KEYS" "$out/data-api" 2>"$out/service.log" &
svc=$!
"$out/data-api-bench" bare -addr 127.0.0.1:18099 >"$out/bare.log" 2>&1 &
bare=$!
trap 'kill $svc $bare 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT
sleep 2
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in 1/100 s
for i in $(seq "$rounds"); do
	for port in 18099 18080; do
		pid=$bare name=bare
		[ $port = 18080 ] && pid=$svc name=service
		c0=$(cpu $pid)
		r=$(wrk -t1 -c64 -d8s --latency -s "$here/ingest.lua" "http://127.0.0.1:$port")
		c1=$(cpu $pid)
		rps=$(awk '/Requests\/sec/ {print $2}' <<<"$r")
		n=$(awk '/requests in/ {print $1}' <<<"$r")
		p99=$(awk '$1 == "99%" {print $2}' <<<"$r")
		non=$(awk '/Non-2xx/ {print $5}' <<<"$r")
		printf 'round %d %-7s %10s req/s  p99 %8s  cpu %5.1f µs/req  non-2xx %s\n' "$i" $name "$rps" "$p99" \
			"$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN {print c * 10000 / n}')" "${non:-0}"
	done
done
