#!/usr/bin/env bash
# Smoke test of the image and docker-compose.yml against a real Docker engine:
# build the image, bring up each compose profile with fresh random secrets,
# walk the README's flow through it, check every status, tear it down.
#
#   deploy/smoke.sh            # both profiles
#   deploy/smoke.sh default    # SQLite only, port 8080
#   deploy/smoke.sh scale      # 3 replicas on PostgreSQL + Redis behind nginx, port 8090
#
# Environment:
#   COMPOSE            compose command (default: `docker compose` if present, else `docker-compose`)
#   API_IMAGE     image tag to build and run (default data-api:local)
#   SMOKE_BUILD_FLAGS  extra `docker build` flags (default --network host: the
#                      classic builder on a host whose containers reach the
#                      network only through the host's)
#   SMOKE_NO_BUILD=1   use the image as it is
#   API_PORT, LB_PORT  host ports (default 8080, 8090)
# The stack runs as its own compose project (data-api-smoke) and is removed
# with its volumes at the end, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(default scale)

if [ -z "${COMPOSE:-}" ]; then
	if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE="docker-compose"; fi
fi
read -r -a compose_cmd <<<"$COMPOSE"
compose=("${compose_cmd[@]}" -p data-api-smoke -f docker-compose.yml)
# No buildx: the classic builder (BuildKit would need the buildx plugin).
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

export API_IMAGE=${API_IMAGE:-data-api:local}
export API_PORT=${API_PORT:-8080} LB_PORT=${LB_PORT:-8090}
unset PUBLISH_ADDR # the smoke stack listens on 127.0.0.1 only

# Fresh secrets, known to this run only. Two API keys: the chatbot's (ingest)
# and the data protection officer's (analyst, admin).
hex() { openssl rand -hex "$1"; }
sha() { printf '%s' "$1" | sha256sum | cut -c1-64; }
bot_key=$(hex 24) dpo_key=$(hex 24)
export DATA_API_CURSOR_SECRET=$(hex 32) POSTGRES_PASSWORD=$(hex 24) REDIS_PASSWORD=$(hex 24)
export DATA_API_ENCRYPTION_KEYS="[{\"id\":\"k1\",\"key\":\"$(openssl rand -base64 32)\"}]"
export DATA_API_ENCRYPTION_ACTIVE=k1
export DATA_API_AUTH_KEYS="[{\"name\":\"chatbot\",\"sha256\":\"$(sha "$bot_key")\",\"roles\":[\"ingest\"]},{\"name\":\"dpo\",\"sha256\":\"$(sha "$dpo_key")\",\"roles\":[\"analyst\",\"admin\"]}]"

passed=0 failed=0 up=0
run=smoke-$(hex 4) # request ids of this run: smoke-<hex>-<step>
work=$(mktemp -d)
ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$*"; }
step() { printf '\n[%3ss] %s\n' "$SECONDS" "$*"; }

teardown() {
	[ "$up" = 1 ] || return 0
	step "${compose[*]} down -v"
	"${compose[@]}" --profile scale down -v --remove-orphans >"$work/down.log" 2>&1 || cat "$work/down.log"
	up=0
}
finish() {
	local rc=$?
	[ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || bad "stopped early (exit status $rc)"
	if [ "$up" = 1 ] && { [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; }; then
		step "logs (last 40 lines of each service)"
		"${compose[@]}" --profile scale logs --no-color --tail 40 2>&1 || true
	fi
	teardown
	rm -rf "$work"
	printf '\nsmoke: %d passed, %d failed\n' "$passed" "$failed"
	[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
}
trap finish EXIT

# req NAME METHOD URL [curl args...]: the response's status in $work/NAME.status,
# headers in $work/NAME.h, body in $work/NAME.b.
req() {
	local name=$1 method=$2 url=$3
	shift 3
	curl -sS -o "$work/$name.b" -D "$work/$name.h" -w '%{http_code}' -X "$method" \
		-H "X-Request-ID: $run-$name" "$@" "$url" >"$work/$name.status" ||
		echo 000 >"$work/$name.status"
}
# expect NAME STATUS [BODY_SUBSTRING...]: check the last response called NAME.
expect() {
	local name=$1 want=$2 got
	shift 2
	got=$(cat "$work/$name.status")
	if [ "$got" != "$want" ]; then
		bad "$name: status $got, want $want: $(head -c 300 "$work/$name.b")"
		return
	fi
	for s in "$@"; do
		if ! grep -qF -- "$s" "$work/$name.b"; then
			bad "$name: $got, but the body lacks $s: $(head -c 300 "$work/$name.b")"
			return
		fi
	done
	ok "$name: $got"
}
header() { tr -d '\r' <"$work/$1.h" | sed -n "s/^$2: //Ip" | head -n1; }

# compose_up ARGS...: compose ARGS, output indented; a failure ends the run.
compose_up() {
	up=1
	if "${compose[@]}" "$@" >"$work/up.log" 2>&1; then
		sed 's/^/    /' "$work/up.log"
	else
		sed 's/^/    /' "$work/up.log"
		bad "${compose[*]} $*"
		exit 1
	fi
}
# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
	if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
		bad "127.0.0.1:$1 is in use: stop what listens there, or pick another port (API_PORT, LB_PORT)"
		exit 1
	fi
}

# wait_healthy: until every container of the project reports healthy.
wait_healthy() {
	local deadline=$((SECONDS + 180)) ids states
	while :; do
		ids=$("${compose[@]}" --profile scale ps -q)
		states=$(for id in $ids; do docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "$id"; done)
		if [ -n "$ids" ] && ! grep -qv ' healthy$' <<<"$states"; then
			ok "every container healthy after ${SECONDS}s: $(awk '{printf "%s%s", sep, substr($1, 2); sep=", "}' <<<"$states")"
			return
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			bad "containers not healthy in 180 s: $(tr '\n' ';' <<<"$states")"
			return 1
		fi
		sleep 2
	done
}

# walk BASE: the README's flow, through the port of one profile.
walk() {
	local base=$1 customer dialogue bot=(-H "Authorization: Bearer $bot_key") dpo=(-H "Authorization: Bearer $dpo_key")
	customer=$((RANDOM * 32768 + RANDOM))
	dialogue=$(cat /proc/sys/kernel/random/uuid)

	req healthz GET "$base/healthz" && expect healthz 200
	req readyz GET "$base/readyz" && expect readyz 200

	req ingest-1 POST "$base/data/$customer/$dialogue" "${bot[@]}" \
		-d '{"text": "Hello, my order #1234 has not arrived", "language": "EN"}'
	expect ingest-1 202 '"pendingMessages":1'
	req ingest-2 POST "$base/data/$customer/$dialogue" "${bot[@]}" \
		-d '{"text": "It was due on Monday", "language": "en"}'
	expect ingest-2 202 '"pendingMessages":2'

	req consent POST "$base/consents/$dialogue" "${bot[@]}" -d true
	expect consent 200 '"consent":true' '"storedMessages":2'

	req page-1 GET "$base/data?language=en&customerId=$customer&limit=1" "${dpo[@]}"
	expect page-1 200 '"text":"It was due on Monday"'
	local link
	link=$(header page-1 Link)
	if [[ $link =~ ^\<(/data\?[^>]*)\>\;\ rel=\"next\"$ ]]; then
		ok "page-1: Link header names the next page"
		req page-2 GET "$base${BASH_REMATCH[1]}" "${dpo[@]}"
		expect page-2 200 '"text":"Hello, my order #1234 has not arrived"'
	else
		bad "page-1: Link header '$link', want </data?cursor=...>; rel=\"next\""
	fi

	req export GET "$base/data/export?customerId=$customer" "${dpo[@]}"
	expect export 200 '"text":"It was due on Monday"' '"text":"Hello, my order #1234 has not arrived"'
	local lines ctype
	lines=$(grep -c . "$work/export.b" || true) ctype=$(header export Content-Type)
	if [ "$lines" = 2 ] && [[ $ctype == application/x-ndjson* ]]; then
		ok "export: 2 NDJSON lines, $ctype"
	else
		bad "export: $lines lines of $ctype, want 2 of application/x-ndjson"
	fi

	req decision GET "$base/consents/$dialogue" "${dpo[@]}"
	expect decision 200 '"consent":true' '"messages":2'

	req withdraw POST "$base/consents/$dialogue" "${bot[@]}" -d false
	expect withdraw 200 '"consent":false' '"deletedMessages":2'

	req erase DELETE "$base/customers/$customer/data" "${dpo[@]}"
	expect erase 200 '"deletedMessages":0'

	req after-erase GET "$base/data?customerId=$customer" "${dpo[@]}"
	expect after-erase 200 '"data":[]'

	req typo GET "$base/data?customer_id=$customer" "${dpo[@]}"
	expect typo 400 'customer_id is not a known query parameter'
	ctype=$(header typo Content-Type)
	[[ $ctype == application/problem+json* ]] && ok "typo: $ctype" || bad "typo: Content-Type $ctype, want application/problem+json"

	req no-key POST "$base/data/$customer/$dialogue" -d '{"text": "hi", "language": "en"}'
	expect no-key 401 'urn:data-api:problem:unauthorized'
	[ -n "$(header no-key WWW-Authenticate)" ] && ok "no-key: WWW-Authenticate sent" || bad "no-key: no WWW-Authenticate header"
	req wrong-role GET "$base/data" "${bot[@]}"
	expect wrong-role 403 'urn:data-api:problem:forbidden'

	req metrics GET "$base/metrics" "${dpo[@]}"
	expect metrics 200 'data_api_consents_total{decision="true"}'
}

if [ -z "${SMOKE_NO_BUILD:-}" ]; then
	step "docker build ${SMOKE_BUILD_FLAGS---network host} -t $API_IMAGE ."
	# shellcheck disable=SC2086 # flags are words
	docker build ${SMOKE_BUILD_FLAGS---network host} -t "$API_IMAGE" . >"$work/build.log" 2>&1 ||
		{ tail -n 30 "$work/build.log"; bad "docker build"; exit 1; }
	ok "built $API_IMAGE ($(docker image inspect -f '{{.Size}}' "$API_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
fi
owner=$(docker run --rm --entrypoint stat "$API_IMAGE" -c '%u:%g %a' /var/lib/data-api)
[ "$owner" = "10001:10001 750" ] && ok "image: /var/lib/data-api is 10001:10001, mode 750" ||
	bad "image: /var/lib/data-api is $owner, want 10001:10001 750"

step "$("${compose_cmd[@]}" version 2>/dev/null | head -n1)"
for p in "${profiles[@]}"; do
	case $p in
	default)
		step "profile default: ${compose[*]} up -d (SQLite, 127.0.0.1:$API_PORT)"
		port_free "$API_PORT"
		compose_up up -d --no-build
		wait_healthy
		walk "http://127.0.0.1:$API_PORT"
		teardown
		;;
	scale)
		step "profile scale: ${compose[*]} --profile scale up -d (3 replicas, PostgreSQL, Redis, nginx on 127.0.0.1:$LB_PORT)"
		port_free "$API_PORT"
		port_free "$LB_PORT"
		compose_up --profile scale up -d --no-build
		wait_healthy
		replicas=$("${compose[@]}" --profile scale ps -q api | wc -l)
		[ "$replicas" = 3 ] && ok "3 api replicas" || bad "$replicas api replicas, want 3"
		walk "http://127.0.0.1:$LB_PORT"
		served=$(for id in $("${compose[@]}" --profile scale ps -q api); do docker logs "$id" 2>&1 | grep -c "$run-" || true; done | tr '\n' ' ')
		[[ " $served" != *" 0 "* ]] && ok "every replica served part of the walk (requests per replica: $served)" ||
			bad "a replica served none of the walk (requests per replica: $served)"

		req lb-health GET "http://127.0.0.1:$LB_PORT/nginx-health"
		expect lb-health 404 'urn:data-api:problem:no-such-route'

		step "a fourth replica gets traffic without restarting nginx"
		before=$("${compose[@]}" --profile scale ps -q api | sort)
		compose_up --profile scale up -d --no-build --no-recreate --scale api=4
		wait_healthy
		added=$(comm -13 <(echo "$before") <("${compose[@]}" --profile scale ps -q api | sort))
		sleep 6 # nginx's resolver answer is valid for 5 s
		tag=smoke-$(hex 4)
		for i in $(seq 40); do curl -s -o /dev/null -H "X-Request-ID: $tag-$i" "http://127.0.0.1:$LB_PORT/healthz"; done
		hits=$(docker logs "$added" 2>&1 | grep -c "$tag" || true)
		[ "$hits" -gt 0 ] && ok "the added replica served $hits of 40 requests" ||
			bad "the added replica served none of 40 requests"
		teardown
		;;
	*) echo "unknown profile $p (default, scale)" >&2; exit 2 ;;
	esac
done
