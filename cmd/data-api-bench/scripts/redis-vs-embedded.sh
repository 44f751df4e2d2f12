#!/usr/bin/env bash
# redis-vs-embedded.sh PG_URL REDIS_URL [ROUNDS]: BENCHMARKS.md, target 4.
# One service on the embedded default and one on PostgreSQL + Redis, the
# same binary, each loaded in turn with `wrk -t1 -c64 -d8s`, ROUNDS times
# (default 3). PG_URL is a superuser URL (a schema of its own is created and
# dropped), e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
set -euo pipefail
pg=$1 redis=$2 rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
(cd "$here/../../.." && go build -o "$out/data-api" ./cmd/data-api)
schema=bench_$$
psql -q "$pg" -c "CREATE SCHEMA $schema"
KEYS='[{"name":"bench","key":"bench-secret-0123456789","roles":["ingest","analyst","admin"]}]'
DATA_API_SERVER_ADDR=127.0.0.1:18080 DATA_API_DATABASE_DSN="$out/sqlite.db" DATA_API_AUTH_KEYS="$KEYS" \
	"$out/data-api" 2>"$out/embedded.log" &
embedded=$!
DATA_API_SERVER_ADDR=127.0.0.1:18091 DATA_API_DATABASE_DRIVER=postgres \
	DATA_API_DATABASE_DSN="$pg&search_path=$schema" \
	DATA_API_DIALOGUES_STORE=redis DATA_API_REDIS_URL="$redis" DATA_API_REDIS_PREFIX="$schema:" \
	DATA_API_JOURNAL_DIR="$out/journal" DATA_API_CURSOR_SECRET="$(openssl rand -hex 32)" DATA_API_AUTH_KEYS="$KEYS" \
	DATA_API_ENCRYPTION_KEYS="[{\"id\":\"k1\",\"key\":\"$(openssl rand -base64 32)\"}]" DATA_API_ENCRYPTION_ACTIVE=k1 \
	"$out/data-api" 2>"$out/scale.log" &
scale=$!
trap 'kill $embedded $scale 2>/dev/null; wait 2>/dev/null; psql -q "$pg" -c "DROP SCHEMA $schema CASCADE"; rm -rf "$out"' EXIT
sleep 3
for i in $(seq "$rounds"); do
	for port in 18080 18091; do
		name=embedded
		[ $port = 18091 ] && name=pg+redis
		r=$(wrk -t1 -c64 -d8s --latency -s "$here/ingest.lua" "http://127.0.0.1:$port")
		printf 'round %d %-9s %10s req/s  p99 %8s  non-2xx %s\n' "$i" $name "$(awk '/Requests\/sec/ {print $2}' <<<"$r")" \
			"$(awk '$1 == "99%" {print $2}' <<<"$r")" "$(awk '/Non-2xx/ {print $5}' <<<"$r")"
	done
done
