#!/bin/sh
# Run unit tests or selftests given as paths; prints "N passed, N failed" last.
# Usage: tests/run-tests.sh --unit|--selftest|--e2e PROG...
set -u
. "$(dirname "$0")/tap.sh"
kind=unit
case "${1:-}" in
--unit) kind=unit; shift ;;
--selftest) kind=selftest; shift ;;
--e2e) kind=e2e; shift ;;
esac
if [ "$kind" = selftest ] && [ "$(id -u)" != 0 ]; then
	echo "selftests need root: skipped"
	set --
fi
for t in "$@"; do
	tap_run "$kind" "$(basename "$t" .sh)" "$t"
done
echo "$T_SKIP skipped"
echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" = 0 ]
