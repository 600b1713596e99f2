#!/bin/bash
# The shorter `make demo` inside `make check` (TAP, root): three deployds and two taskds on
# loopback deploy the seed's FooService pipeline for v1 to both zones, then an unhealthy commit
# rolls back in us-east-1 while eu-west-1 is never touched (demo.sh with DEMO_SHORT=1; every
# check is demo.sh's own, which exits 1 naming the step that failed). Skipped without root or
# when the demo's loopback ports are taken.
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root (taskd)"; exit 77; fi
for b in deployd taskd taskctl taskd-shim; do
	[ -x "$BUILD/$b" ] || { echo "1..0 # SKIP $BUILD/$b not built"; exit 77; }
done
for p in 27400 27401 27402 27411 27412 18081 18082; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "1..0 # SKIP port $p in use"
		exit 77
	fi
done
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
