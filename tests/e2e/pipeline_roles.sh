#!/bin/bash
# Split roles (TAP): deployd A runs pipelines + artifacts without the builder, deployd B runs
# only the builder; they share the database. A build stage must be executed by B (A leaves it
# queued: typed claims), the wait stage after it by A, and the run must finish.
set -u
BUILD=${BUILD:-build}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for c in git make cc curl python3; do
	command -v $c >/dev/null || { echo "1..0 # SKIP $c not installed"; exit 77; }
done
[ -x "$DEPLOYD" ] || { echo "1..0 # SKIP $DEPLOYD not built"; exit 77; }
T=$(mktemp -d /tmp/cd-e2e-pipeline-roles.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
TOK=$(hex)
printf 'admin %s\nagent %s\n' "$TOK" "$(hex)" >"$T/tokens"
chmod 0600 "$T/tokens"
mkdir -p "$T/a" "$T/b"
port_of() {
	for _ in $(seq 1 100); do
		p=$(sed -n 's/.*msg="deployd ready".* port=\([0-9]*\).*/\1/p' "$1")
		[ -n "$p" ] && { echo "$p"; return 0; }
		sleep 0.1
	done
	return 1
}
"$DEPLOYD" --role pipelines,artifacts --state-dir "$T/a" --listen 127.0.0.1:0 \
	--token-file "$T/tokens" --db "sqlite://$T/d.db" >"$T/a.log" 2>&1 &
PIDS+=($!)
A=$(port_of "$T/a.log") || { echo "1..0 # SKIP deployd A did not start"; exit 77; }
printf 'pipelines_artifacts_url = http://127.0.0.1:%s\npipelines_artifacts_token_file = %s\n' \
	"$A" "$T/tokens" >"$T/b/deployd.conf"
"$DEPLOYD" --config "$T/b/deployd.conf" --role builder --state-dir "$T/b" --listen 127.0.0.1:0 --token-file "$T/tokens" \
	--db "sqlite://$T/d.db" >"$T/b.log" 2>&1 &
PIDS+=($!)
port_of "$T/b.log" >/dev/null || { echo "1..0 # SKIP deployd B did not start"; exit 77; }
echo "1..4"
n=0
fail=0
check() {
	n=$((n + 1))
	if eval "$2"; then echo "ok $n - $1"; else fail=1; echo "not ok $n - $1"; [ -n "${3:-}" ] && echo "# $3"; fi
}
mkdir "$T/repo"
cp -r "$ROOT/examples/foo_service_repo/." "$T/repo/"
git -C "$T/repo" init -q -b main
git -C "$T/repo" add -A
git -C "$T/repo" -c user.name=t -c user.email=t@example.invalid commit -q -m v1
SHA=$(git -C "$T/repo" rev-parse HEAD)
api() {
	curl -s -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' "$@"
}
P=$(api -d "{\"name\":\"S\",\"owner\":\"t\",\"repo\":\"$T/repo\",\"schema\":[
 {\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//repo/foo_service:main\"]},
 {\"name\":\"w\",\"type\":\"wait\",\"wait\":{\"seconds\":0}}]}" "http://127.0.0.1:$A/v1/pipelines" |
	python3 -c 'import json,sys;print(json.load(sys.stdin)["pipeline_id"])')
api -o /dev/null -d "{\"commit\":\"$SHA\"}" "http://127.0.0.1:$A/v1/pipelines/$P/runs"
state=
for _ in $(seq 1 150); do
	state=$(api "http://127.0.0.1:$A/v1/pipelines/$P/state" | python3 -c 'import json,sys;print(json.load(sys.stdin)["state"])')
	case "$state" in FINISHED | ERROR) break ;; esac
	sleep 0.2
done
check "the run finishes with the build on another deployd" '[ "$state" = FINISHED ]' \
	"$(api "http://127.0.0.1:$A/v1/pipelines/$P/state")"
check "deployd A runs no builds" 'grep -q "pipelines role started.* builds=no" "$T/a.log"'
check "deployd B is a builder" 'grep -q "builder role started.* builds=yes" "$T/b.log"'
check "the build ran under B's state dir" '[ -d "$T/b/builder/mirrors" ] && [ ! -d "$T/a/builder/mirrors" ]'
exit $fail
