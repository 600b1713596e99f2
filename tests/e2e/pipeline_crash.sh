#!/bin/bash
# Crash safety of the pipelines queue (TAP): a real deployd runs a pipeline (build → wait →
# slow build → test) and is killed with SIGKILL twice — once while a stage waits in the queue,
# once in the middle of a build — and restarted on the same state. The run must finish; stages
# that finished before a crash are never executed again (one claim each); the interrupted build
# is taken over after its lease expires and its artifact is indexed exactly once; no build of
# the dead deployd survives its restart.
set -u
BUILD=${BUILD:-build}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
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

for c in git make curl python3; do
	command -v $c >/dev/null || { echo "1..0 # SKIP $c not installed"; exit 77; }
done
[ -x "$DEPLOYD" ] || { echo "1..0 # SKIP $DEPLOYD not built"; exit 77; }

T=$(mktemp -d /tmp/cd-e2e-pipeline-crash.XXXXXX)
DPID=
cleanup() {
	[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	pkill -9 -f "$T/" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
TOK=$(hex)
printf 'admin %s\nagent %s\n' "$TOK" "$(hex)" >"$T/tokens"
chmod 0600 "$T/tokens"
mkdir -p "$T/state"
printf 'pipelines_lease_s = 2 # re-claimed soon after the kill\npipelines_runners = 2\n' \
	>"$T/deployd.conf"

starts=0
start_deployd() {
	starts=$((starts + 1))
	"$DEPLOYD" --config "$T/deployd.conf" --role pipelines,artifacts,builder \
		--state-dir "$T/state" --listen 127.0.0.1:0 --token-file "$T/tokens" >"$T/deployd.$starts.log" 2>&1 &
	DPID=$!
	PORT=
	for _ in $(seq 1 100); do
		PORT=$(sed -n 's/.*msg="deployd ready".* port=\([0-9]*\).*/\1/p' "$T/deployd.$starts.log")
		[ -n "$PORT" ] && return 0
		sleep 0.1
	done
	return 1
}
if ! start_deployd; then
	echo "1..0 # SKIP deployd did not start: $(tail -3 "$T/deployd.1.log" | tr '\n' ' ')"
	exit 77
fi
echo "1..10"

req() { # req METHOD PATH [BODY]: body to $T/body, prints the status
	local body=${3:-}
	if [ -n "$body" ]; then
		curl -s -o "$T/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOK" \
			-H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$PORT$2"
	else
		curl -s -o "$T/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOK" \
			"http://127.0.0.1:$PORT$2"
	fi
}
field() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    d=d[int(k)] if isinstance(d,list) else d.get(k)
print("" if d is None else d)' "$T/body" "$@" 2>/dev/null; }

# A repo whose "slow" target takes long enough to be killed in the middle.
REPO=$T/repo
mkdir -p "$REPO/pkg"
cat >"$REPO/pkg/Makefile" <<'EOF'
OUT ?= out
quick:
	echo quick > $(OUT)/quick
slow:
	echo started > $(OUT)/started
	sleep 4.123
	echo slow > $(OUT)/slow
	rm $(OUT)/started
check:
	printf '#!/bin/sh\necho ok - it works\n' > $(OUT)/check
	chmod +x $(OUT)/check
.PHONY: quick slow check
EOF
git -C "$REPO" init -q -b main
git -C "$REPO" add -A
git -C "$REPO" -c user.name=t -c user.email=t@example.invalid commit -q -m one
SHA=$(git -C "$REPO" rev-parse HEAD)

PL="{\"name\":\"Crash\",\"owner\":\"t\",\"repo\":\"$REPO\",\"branch\":\"main\",\"schema\":[
 {\"name\":\"A\",\"type\":\"build\",\"build_targets\":[\"//pkg:quick\"]},
 {\"name\":\"B\",\"type\":\"wait\",\"wait\":{\"seconds\":3}},
 {\"name\":\"C\",\"type\":\"build\",\"build_targets\":[\"//pkg:slow\"]},
 {\"name\":\"D\",\"type\":\"test\",\"test_target\":\"//pkg:check\"}]}"
req POST /v1/pipelines "$PL" >/dev/null
PID=$(field pipeline_id)
req POST "/v1/pipelines/$PID/runs" "{\"commit\":\"$SHA\"}" >/dev/null
RUN=$(field run)

# until STAGE-INDEX FIELD VALUE (30 s)
until_stage() {
	for _ in $(seq 1 300); do
		req GET "/v1/pipelines/$PID/runs/$RUN" >/dev/null
		[ "$(field stages "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

check "A finishes and B starts waiting" 'until_stage 0 state FINISHED && until_stage 1 state IN_PROGRESS'
req GET "/v1/pipelines/$PID/runs/$RUN" >/dev/null
B_STARTED=$(field stages 1 started_at)
kill -9 $DPID
wait $DPID 2>/dev/null
check "deployd restarts after kill -9 during the wait" 'start_deployd'

check "C starts building after the restart" 'until_stage 2 state IN_PROGRESS'
# The stage log shows make's commands as they run (the build may be in the sandbox, where its
# files are not visible from here).
running() { grep -rqs "sleep 4.123" "$T/state/pipeline-logs"; }
for _ in $(seq 1 100); do
	running && break
	sleep 0.1
done
check "the slow build is running" 'running'
kill -9 $DPID
wait $DPID 2>/dev/null
start_deployd >/dev/null
# A restarted deployd kills what the dead one left building (sandbox cgroups are reaped at
# start; outside the sandbox builds die with their parent) before anyone claims it again.
check "no build of the killed deployd survives its restart" '! pgrep -f "sleep 4.123" >/dev/null'

st=
for _ in $(seq 1 400); do
	req GET "/v1/pipelines/$PID/runs/$RUN" >/dev/null
	st=$(field state)
	case "$st" in FINISHED | ERROR) break ;; esac
	sleep 0.1
done
check "the run finishes after two crashes" '[ "$st" = FINISHED ]' "$(cat "$T/body")"
check "A (finished before the crashes) was executed once" '[ "$(field stages 0 claims)" = 1 ]'
check "B kept its start time (the wait was not restarted)" '[ "$(field stages 1 started_at)" = "$B_STARTED" ]'
check "D was executed once" '[ "$(field stages 3 claims)" = 1 ]'
LOG=$(curl -s -H "Authorization: Bearer $TOK" "http://127.0.0.1:$PORT/v1/pipelines/$PID/runs/$RUN/stages/C/log")
check "the interrupted build was taken over and indexed exactly once" \
	'[ "$(echo "$LOG" | grep -c "^# //pkg:slow@.* -> sha256:")" = 1 ] && [ "$(field stages 2 claims)" -ge 2 ]' "$LOG"
exit $fail
