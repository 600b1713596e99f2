#!/bin/bash
# End-to-end test of the PipelinesService through a real deployd (--role
# pipelines,artifacts,builder on loopback, embedded SQLite), TAP output: auth (401/403), 422 with
# every problem, owner listing, schema versions with ETag/If-Match (412), runs with
# Idempotency-Key, approval, cancel and retry, and a full build → test run of the example
# FooService repo: artifacts indexed at the commit, logs readable, a failing test stops the run.
set -u
BUILD=${BUILD:-build}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1))
	fail=1
	echo "not ok $n - $1"
	[ $# -gt 1 ] && echo "# $2"
}
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }

for c in git make cc curl python3; do
	command -v $c >/dev/null || { echo "1..0 # SKIP $c not installed"; exit 77; }
done
[ -x "$DEPLOYD" ] || { echo "1..0 # SKIP $DEPLOYD not built"; exit 77; }

T=$(mktemp -d /tmp/cd-e2e-pipeline-api.XXXXXX)
DPID=
cleanup() {
	[ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
ADMIN=$(hex)
FOO=$(hex)
BAR=$(hex)
printf 'admin %s\nagent %s\nteam:foo_team %s\nteam:bar_team %s\n' "$ADMIN" "$(hex)" "$FOO" \
	"$BAR" >"$T/tokens"
chmod 0600 "$T/tokens"
mkdir -p "$T/state"
printf 'pipelines_poll_interval_s = 1 # the polling test waits for it\npipelines_dag_cache_dags = 3\n' \
	>"$T/deployd.conf"
"$DEPLOYD" --config "$T/deployd.conf" --role pipelines,artifacts,builder --state-dir "$T/state" \
	--listen 127.0.0.1:0 --token-file "$T/tokens" >"$T/deployd.log" 2>&1 &
DPID=$!
PORT=
for _ in $(seq 1 100); do
	PORT=$(sed -n 's/.*msg="deployd ready".* port=\([0-9]*\).*/\1/p' "$T/deployd.log")
	[ -n "$PORT" ] && break
	sleep 0.1
done
if [ -z "$PORT" ]; then
	echo "1..0 # SKIP deployd did not start: $(tail -3 "$T/deployd.log" | tr '\n' ' ')"
	exit 77
fi
echo "1..28"
BASE=http://127.0.0.1:$PORT

# An earlier build's <state_dir>/pipelines.conf is not read any more: refused, not ignored.
mkdir -p "$T/legacy"
printf 'zone us-east-1 us-east http://127.0.0.1:1 %s\nlease_s 2 # old\n' "$T/tokens" \
	>"$T/legacy/pipelines.conf"
out=$("$DEPLOYD" --role pipelines --state-dir "$T/legacy" --listen 127.0.0.1:0 \
	--token-file "$T/tokens" 2>&1)
st=$?
check "an old pipelines.conf stops deployd: exit 2, one line naming the keys to write" \
	'[ $st = 2 ] && [ "$(printf "%s\n" "$out" | wc -l)" = 1 ] &&
	 printf "%s" "$out" | grep -q "legacy/pipelines.conf.*pipelines_zone, pipelines_lease_s"' "$out"

# req TOKEN METHOD PATH [BODY] [curl args...]: body in $T/body, status printed
req() {
	local tok=$1 m=$2 p=$3 body=${4:-}
	shift 4 2>/dev/null || shift $#
	local auth=()
	[ -n "$tok" ] && auth=(-H "Authorization: Bearer $tok")
	if [ -n "$body" ]; then
		curl -s -o "$T/body" -w '%{http_code}' -X "$m" "${auth[@]}" \
			-H 'Content-Type: application/json' -d "$body" "$@" "$BASE$p"
	else
		curl -s -o "$T/body" -w '%{http_code}' -X "$m" "${auth[@]}" "$@" "$BASE$p"
	fi
}
field() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d=d[int(k)] if isinstance(d,list) else d.get(k)
print("" if d is None else d)' "$T/body" "$@" 2>/dev/null; }

SEED=$(cat "$ROOT/examples/fooservice.pipeline.json")

# ---- auth and validation --------------------------------------------------------------------
check "no token: 401" '[ "$(req "" POST /v1/pipelines "$SEED")" = 401 ]'
check "bar_team cannot create foo_team's pipeline: 403" \
	'[ "$(req "$BAR" POST /v1/pipelines "$SEED")" = 403 ]'
BAD='{"name":"Bad","owner":"foo_team","schema":[
 {"name":"a","type":"build","build_targets":["not a target"]},
 {"name":"a","type":"deploy"},
 {"name":"c","type":"test"},
 {"name":"d","type":"wait","wait":{"seconds":0},"depends_on":["zz"]},
 {"name":"e","type":"job","spec":"//x:y","depends_on":["e"]}]}'
st=$(req "$FOO" POST /v1/pipelines "$BAD")
nerr=$(python3 -c 'import json;print(len(json.load(open("'"$T/body"'")).get("errors",[])))' 2>/dev/null)
check "bad schema: 422 listing every problem (got $st, $nerr errors)" '[ "$st" = 422 ] && [ "${nerr:-0}" -ge 5 ]'
CYC='{"name":"Cyc","owner":"foo_team","schema":[{"name":"x","type":"approval","depends_on":["y"]},{"name":"y","type":"approval","depends_on":["x"]}]}'
check "a dependency cycle: 422 naming it" \
	'[ "$(req "$FOO" POST /v1/pipelines "$CYC")" = 422 ] && grep -q "cycle" "$T/body"'
check "foo_team creates the seed pipeline: 201" '[ "$(req "$FOO" POST /v1/pipelines "$SEED")" = 201 ]'
PID=$(field pipeline_id)
check "same name again: 409" '[ "$(req "$ADMIN" POST /v1/pipelines "$SEED")" = 409 ]'
req "$ADMIN" POST /v1/pipelines '{"name":"Bar","owner":"bar_team","schema":[{"name":"a","type":"approval"}]}' >/dev/null
req "$BAR" GET "/v1/pipelines?owner=foo_team" >/dev/null
check "list by owner shows only foo_team's" \
	'[ "$(field pipelines 0 name)" = FooService ] && [ -z "$(field pipelines 1 name)" ]'

# ---- schema versions ------------------------------------------------------------------------
etag=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $BAR" "$BASE/v1/pipelines/$PID/schema" |
	tr -d '\r' | sed -n 's/^ETag: //Ip')
check "GetSchema ETag is the version" '[ "$etag" = "\"1\"" ]'
V2='[{"name":"w","type":"wait","wait":{"seconds":0}},{"name":"gate","type":"approval"},{"name":"after","type":"wait","wait":{"seconds":0}}]'
check "bar_team cannot PutSchema: 403" \
	'[ "$(req "$BAR" PUT "/v1/pipelines/$PID/schema" "$V2" -H "If-Match: \"1\"")" = 403 ]'
check "PutSchema with If-Match 1: 201 draft 2" \
	'[ "$(req "$FOO" PUT "/v1/pipelines/$PID/schema" "$V2" -H "If-Match: \"1\"")" = 201 ] && [ "$(field state)" = draft ] && [ "$(field version)" = 2 ]'
check "PutSchema with a stale If-Match: 412" \
	'[ "$(req "$FOO" PUT "/v1/pipelines/$PID/schema" "$V2" -H "If-Match: \"1\"")" = 412 ]'
check "activate version 2" \
	'[ "$(req "$FOO" POST "/v1/pipelines/$PID/schema/2/activate")" = 200 ] && [ "$(field state)" = active ]'
req "$FOO" GET "/v1/pipelines/$PID/schema?version=1" >/dev/null
check "version 1 is inactive now" '[ "$(field state)" = inactive ]'

# ---- runs: idempotency, approval, cancel, retry ---------------------------------------------
C1=1111111111111111111111111111111111111111
check "run with Idempotency-Key: 201" \
	'[ "$(req "$FOO" POST "/v1/pipelines/$PID/runs" "{\"commit\":\"$C1\"}" -H "Idempotency-Key: k1")" = 201 ]'
RUN=$(field run)
check "same Idempotency-Key: 200, same run" \
	'[ "$(req "$FOO" POST "/v1/pipelines/$PID/runs" "{\"commit\":\"$C1\"}" -H "Idempotency-Key: k1")" = 200 ] && [ "$(field run)" = "$RUN" ]'
waitfor() { # waitfor PATH FIELD... VALUE : poll until body field equals VALUE (10 s)
	local p=$1 v=${*: -1} args=("${@:2:$#-2}")
	for _ in $(seq 1 100); do
		req "$FOO" GET "$p" >/dev/null
		[ "$(field "${args[@]}")" = "$v" ] && return 0
		sleep 0.1
	done
	return 1
}
check "the run parks at the approval gate" \
	'waitfor "/v1/pipelines/$PID/state" stages 1 error_message "waiting for approval"'
check "bar_team cannot approve: 403" \
	'[ "$(req "$BAR" POST "/v1/pipelines/$PID/runs/$RUN/stages/gate/approve")" = 403 ]'
check "foo_team approves" '[ "$(req "$FOO" POST "/v1/pipelines/$PID/runs/$RUN/stages/gate/approve")" = 200 ]'
check "the run finishes after approval" 'waitfor "/v1/pipelines/$PID/runs/$RUN" state FINISHED'
req "$FOO" POST "/v1/pipelines/$PID/runs" "{\"commit\":\"$C1\"}" >/dev/null
RUN2=$(field run)
waitfor "/v1/pipelines/$PID/state" stages 1 error_message "waiting for approval" >/dev/null
check "cancel while waiting: CANCELLED" \
	'[ "$(req "$FOO" POST "/v1/pipelines/$PID/runs/$RUN2/cancel")" = 200 ] && [ "$(field state)" = CANCELLED ]'
check "retry re-runs only the cancelled stage (attempt 2, first stage kept)" \
	'[ "$(req "$FOO" POST "/v1/pipelines/$PID/runs/$RUN2/retry")" = 200 ] && [ "$(field attempt)" = 2 ] && [ "$(field stages 0 attempt)" = 1 ] && [ "$(field stages 1 attempt)" = 2 ]'

# ---- a real build and test through the builder -----------------------------------------------
REPO=$T/repo
mkdir -p "$REPO"
cp -r "$ROOT/examples/foo_service_repo/." "$REPO/"
g() { git -C "$REPO" -c user.name=t -c user.email=t@example.invalid "$@"; }
g init -q -b main && g add -A && g commit -q -m v1
SHA=$(git -C "$REPO" rev-parse HEAD)
BT="{\"name\":\"Build\",\"owner\":\"foo_team\",\"repo\":\"$REPO\",\"branch\":\"main\",\"schema\":[
 {\"name\":\"Code Build\",\"type\":\"build\",\"build_targets\":[\"//repo/foo_service:main\",\"//repo/foo_service:tests\"]},
 {\"name\":\"Service Tests\",\"type\":\"test\",\"test_target\":\"//repo/foo_service:tests\"}]}"
req "$FOO" POST /v1/pipelines "$BT" >/dev/null
BPID=$(field pipeline_id)
req "$FOO" POST "/v1/pipelines/$BPID/runs" "{\"commit\":\"$SHA\"}" -H "Idempotency-Key: hook:$SHA" >/dev/null
BRUN=$(field run)
ok=0
for _ in $(seq 1 300); do
	req "$FOO" GET "/v1/pipelines/$BPID/runs/$BRUN" >/dev/null
	case "$(field state)" in FINISHED) ok=1; break ;; ERROR) break ;; esac
	sleep 0.2
done
check "build → test run of FooService finishes" '[ $ok = 1 ]' "$(cat "$T/body")"
REF=$(python3 -c 'import urllib.parse,sys;print(urllib.parse.quote(sys.argv[1],safe=""))' "//repo/foo_service:main@$SHA")
check "//repo/foo_service:main@<commit> is indexed with a digest" \
	'[ "$(req "$FOO" GET "/v1/artifacts/$REF")" = 200 ] && field digest | grep -q "^sha256:"'
check "the build log is readable through the API" \
	'[ "$(req "$FOO" GET "/v1/pipelines/$BPID/runs/$BRUN/stages/Code%20Build/log")" = 200 ] && grep -q "# build stage" "$T/body"'
sed -i 's/Hello from/Goodbye from/' "$REPO/repo/foo_service/greeting.c"
g commit -q -am broken
SHA2=$(git -C "$REPO" rev-parse HEAD)
req "$FOO" POST "/v1/pipelines/$BPID/runs" "{\"commit\":\"$SHA2\"}" >/dev/null
BRUN2=$(field run)
st=
for _ in $(seq 1 300); do
	req "$FOO" GET "/v1/pipelines/$BPID/runs/$BRUN2" >/dev/null
	st=$(field state)
	case "$st" in FINISHED | ERROR) break ;; esac
	sleep 0.2
done
check "a failing unit test stops the run at Service Tests" \
	'[ "$st" = ERROR ] && [ "$(field stages 1 state)" = ERROR ] && field error_message | grep -q "Service Tests"' \
	"$(cat "$T/body")"

# ---- repository polling: a new commit starts a run by itself ---------------------------------
sed -i 's/Goodbye from/Hello from/' "$REPO/repo/foo_service/greeting.c"
g commit -q -am fixed
SHA3=$(git -C "$REPO" rev-parse HEAD)
polled=0
for _ in $(seq 1 100); do
	req "$FOO" GET "/v1/pipelines/$BPID/runs?page_size=1" >/dev/null
	if [ "$(field runs 0 commit)" = "$SHA3" ] && [ "$(field runs 0 trigger)" = poll ]; then
		polled=1
		break
	fi
	sleep 0.2
done
check "the poller starts a run for a new commit" '[ $polled = 1 ]' "$(cat "$T/body")"

# ---- the DAG cache: sized by deployd.conf, shared by the runner and the run views -----------
curl -s -H "Authorization: Bearer $ADMIN" "$BASE/metrics" >"$T/metrics"
plans=$(sed -n 's/^codedeploy_pipeline_dag_cache_plans_total \([0-9]*\)$/\1/p' "$T/metrics")
hits=$(sed -n 's/^codedeploy_pipeline_dag_cache_hits_total \([0-9]*\)$/\1/p' "$T/metrics")
check "pipelines_dag_cache_dags applies; /metrics counts the cache's plans ($plans) and hits ($hits)" \
	'grep -q "pipelines role started.* dag_cache=3/100000" "$T/deployd.log" &&
	 [ "${plans:-0}" -ge 1 ] && [ "${hits:-0}" -gt "${plans:-0}" ]' "$(grep dag_cache "$T/deployd.log")"
exit $fail
