# Shared by tests/check.sh and tests/run-tests.sh: run one TAP-producing program and count.
# Sourced, not executed. Counters: T_PASS T_FAIL T_SKIP; logs under $LOGDIR.
T_PASS=0
T_FAIL=0
T_SKIP=0
LOGDIR=${LOGDIR:-${BUILD:-build}/test-logs}
TEST_TIMEOUT=${TEST_TIMEOUT:-900}
mkdir -p "$LOGDIR"

# tap_run KIND NAME CMD...: runs CMD, parses TAP on stdout+stderr, prints one summary line.
# Exit status 77 with no TAP failures = whole program skipped (kselftest convention).
tap_run() {
	kind=$1 name=$2
	shift 2
	log="$LOGDIR/$kind-$name.log"
	CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$TEST_TIMEOUT" "$@" >"$log" 2>&1
	rc=$?
	ok=$(grep -cE '^ok [0-9]+' "$log" | head -1)
	skip=$(grep -ciE '^ok [0-9]+.*# *skip' "$log" | head -1)
	notok=$(grep -cE '^not ok [0-9]+' "$log" | head -1)
	ok=$((ok - skip))
	if [ "$rc" = 77 ] && [ "$notok" = 0 ]; then
		reason=$(grep -m1 -iE 'skip' "$log" | sed 's/^#* *//')
		printf '  SKIP  %-10s %-28s %s\n' "$kind" "$name" "${reason:-exit 77}"
		T_SKIP=$((T_SKIP + 1))
		return 0
	fi
	if [ "$rc" != 0 ] && [ "$notok" = 0 ]; then
		# crashed, timed out or failed outside a test case: count it as one failure
		notok=1
	fi
	T_PASS=$((T_PASS + ok))
	T_FAIL=$((T_FAIL + notok))
	T_SKIP=$((T_SKIP + skip))
	if [ "$notok" != 0 ]; then
		printf '  FAIL  %-10s %-28s %d ok, %d failed, %d skipped (exit %d) — log: %s\n' \
			"$kind" "$name" "$ok" "$notok" "$skip" "$rc" "$log"
		grep -E '^not ok|ERROR|error:|Assert|FAIL|Sanitizer|runtime error' "$log" | head -20 |
			sed 's/^/        /'
	else
		printf '  PASS  %-10s %-28s %d ok, %d skipped\n' "$kind" "$name" "$ok" "$skip"
	fi
}

# pass_fail KIND NAME STATUS LOG: count a non-TAP check (fuzz run, lint) as one test.
pass_fail() {
	if [ "$3" = 0 ]; then
		T_PASS=$((T_PASS + 1))
		printf '  PASS  %-10s %s\n' "$1" "$2"
	else
		T_FAIL=$((T_FAIL + 1))
		printf '  FAIL  %-10s %s (exit %s) — log: %s\n' "$1" "$2" "$3" "$4"
		tail -20 "$4" | sed 's/^/        /'
	fi
}
