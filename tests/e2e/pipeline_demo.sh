#!/bin/bash
# The shorter `make demo` inside `make check` (TAP, root): three deployds on a private bridge and
# four taskds, each in its own network namespace, deploy the seed's FooService pipeline for v1 to both zones, then an unhealthy commit
# rolls back in us-east-1 while eu-west-1 is never touched (demo.sh with DEMO_SHORT=1; every
# check is demo.sh's own, which exits 1 naming the step that failed). Skipped without root or
# when the demo's bridge address is taken.
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root (taskd)"; exit 77; fi
for b in deployd taskd taskctl taskd-shim; do
	[ -x "$BUILD/$b" ] || { echo "1..0 # SKIP $BUILD/$b not built"; exit 77; }
done
for c in ip nsenter git make cc curl python3; do
	command -v $c >/dev/null || { echo "1..0 # SKIP $c not installed"; exit 77; }
done
if ip -o addr show | grep -q " 10.231.0.1/"; then
	echo "1..0 # SKIP 10.231.0.1 in use (a demo running?)"
	exit 77
fi
echo "1..3"
LOG=$(mktemp /tmp/cd-e2e-pipeline-demo.XXXXXX)
BUILD=$BUILD DEMO_SHORT=1 DEMO_STEP_TIMEOUT=120 "$ROOT/demo.sh" >"$LOG" 2>&1
rc=$?
n=0
res() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
grep -q "foo-service healthy in eu-west-1" "$LOG"
res $? "v1 deployed through build, test, us-east-1 and eu-west-1"
grep -q "us-east-1 deployment   ERROR" "$LOG"
res $? "the unhealthy commit fails at us-east-1"
res $rc "demo.sh passed every check and cleaned up"
if [ $rc != 0 ]; then
	sed 's/^/# /' "$LOG" | tail -40
fi
rm -f "$LOG"
[ $rc = 0 ]
