#!/usr/bin/env bash
# redis-vs-embedded.sh PG_URL REDIS_URL [ROUNDS]: BENCHMARKS.md, target 4.
# One service on the embedded default and one on PostgreSQL + Redis, the
# same binary, each loaded in turn with `wrk -t1 -c64 -d8s`, ROUNDS times
# (default 3). Prints req/s, p99, and the CPU time per request of the
# service process and of the Redis server (INFO cpu). PG_URL is a superuser
# URL (a schema of its own is created and dropped), e.g.
# postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
# With SPLIT=1, each service runs on CPU 0 and wrk on CPU 1, where Redis and
# PostgreSQL go too, to keep them off the service's CPU: pin them first, e.g.
# `for p in $(pgrep redis-server) $(pgrep postgres); do taskset -pc 1 $p; done`.
set -euo pipefail
pg=$1 redis=$2 rounds=${3:-3}
service=() load=()
if [ "${SPLIT:-0}" = 1 ]; then
	service=(taskset -c 0) load=(taskset -c 1)
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
(cd "$here/../../.." && go build -o "$out/data-api" ./cmd/data-api)
schema=bench_$$
psql -q "$pg" -c "CREATE SCHEMA $schema"
KEYS='[{"name":"bench","key":"bench-secret-0123456789","roles":["ingest","analyst","admin"]}]'
DATA_API_SERVER_ADDR=127.0.0.1:18080 DATA_API_DATABASE_DSN="$out/sqlite.db" DATA_API_AUTH_KEYS="$KEYS" \
	"${service[@]}" "$out/data-api" 2>"$out/embedded.log" &
embedded=$!
DATA_API_SERVER_ADDR=127.0.0.1:18091 DATA_API_DATABASE_DRIVER=postgres \
	DATA_API_DATABASE_DSN="$pg&search_path=$schema" \
	DATA_API_DIALOGUES_STORE=redis DATA_API_REDIS_URL="$redis" DATA_API_REDIS_PREFIX="$schema:" \
	DATA_API_JOURNAL_DIR="$out/journal" DATA_API_CURSOR_SECRET="$(openssl rand -hex 32)" DATA_API_AUTH_KEYS="$KEYS" \
	DATA_API_ENCRYPTION_KEYS="[{\"id\":\"k1\",\"key\":\"$(openssl rand -base64 32)\"}]" DATA_API_ENCRYPTION_ACTIVE=k1 \
	"${service[@]}" "$out/data-api" 2>"$out/scale.log" &
scale=$!
trap 'kill $embedded $scale 2>/dev/null; wait 2>/dev/null; psql -q "$pg" -c "DROP SCHEMA $schema CASCADE"; rm -rf "$out"' EXIT
sleep 3
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in 1/100 s
rcpu() { redis-cli -u "$redis" INFO cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {print s}'; } # seconds
for i in $(seq "$rounds"); do
	for port in 18080 18091; do
		name=embedded pid=$embedded
		[ $port = 18091 ] && name=pg+redis pid=$scale
		c0=$(cpu $pid) r0=$(rcpu)
		r=$("${load[@]}" wrk -t1 -c64 -d8s --latency -s "$here/ingest.lua" "http://127.0.0.1:$port")
		c1=$(cpu $pid) r1=$(rcpu)
		n=$(awk '/requests in/ {print $1}' <<<"$r")
		redis_cpu=""
		[ $port = 18091 ] && redis_cpu=$(awk -v a="$r0" -v b="$r1" -v n="$n" 'BEGIN {printf "  redis %.1f µs/req", (b - a) * 1e6 / n}')
		printf 'round %d %-9s %10s req/s  p99 %8s  non-2xx %s  service %.1f µs/req%s\n' "$i" $name "$(awk '/Requests\/sec/ {print $2}' <<<"$r")" \
			"$(awk '$1 == "99%" {print $2}' <<<"$r")" "$(awk '/Non-2xx/ {print $5}' <<<"$r")" \
			"$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN {print c * 10000 / n}')" "$redis_cpu"
	done
done
