#!/bin/sh
# `make check`'s runner: unit tests (ASan+UBSan), selftests (root), end-to-end tests, fuzz smoke,
# lint. Prints one line per program and, last, "N passed, N failed" for the CI.
# Usage: tests/check.sh [--unit "PROGS"] [--selftest "PROGS"] [--fuzz "PROGS"] [--e2e "SCRIPTS"] [--lint]
set -u
. "$(dirname "$0")/tap.sh"
unit="" selftest="" fuzz="" e2e="" lint=0
while [ $# -gt 0 ]; do
	case "$1" in
	--unit) unit=$2 ;;
	--selftest) selftest=$2 ;;
	--fuzz) fuzz=$2 ;;
	--e2e) e2e=$2 ;;
	--lint) lint=1; shift; continue ;;
	*) echo "check.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift 2
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

[ -n "$unit" ] && echo "== unit tests (ASan+UBSan)"
for t in $unit; do tap_run unit "$(basename "$t")" "$t"; done

[ -n "$selftest" ] && echo "== selftests"
if [ -z "$selftest" ]; then
	:
elif [ "$(id -u)" = 0 ]; then
	for t in $selftest; do tap_run selftest "$(basename "$t")" "$t"; done
else
	echo "  SKIP  selftests: need root"
fi

[ -n "$e2e" ] && echo "== end-to-end tests"
for t in $e2e; do tap_run e2e "$(basename "$t" .sh)" "$t"; done

[ -n "$fuzz" ] && echo "== fuzz smoke (${FUZZ_SECONDS:-30}s per target)"
for f in $fuzz; do
	name=$(basename "$f")
	log="$LOGDIR/fuzz-$name.log"
	mkdir -p "${BUILD:-build}/fuzz-corpus/$name"
	"$f" -max_total_time="${FUZZ_SECONDS:-30}" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="${BUILD:-build}/fuzz-crash-$name-" \
		"${BUILD:-build}/fuzz-corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
	st=$?
	runs=$(grep -m1 'stat::number_of_executed_units' "$log" | grep -o '[0-9]*$')
	pass_fail fuzz "$name (${runs:-0} runs)" $st "$log"
done

if [ "$lint" = 1 ]; then
	echo "== lint"
	tests/lint.sh >"$LOGDIR/lint.log" 2>&1
	pass_fail lint "clang-format + cppcheck" $? "$LOGDIR/lint.log"
fi

echo "$T_SKIP skipped"
echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" = 0 ]
