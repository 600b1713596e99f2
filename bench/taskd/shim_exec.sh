#!/bin/sh
# exec + start-up CPU of taskd-shim binaries, interleaved: perf stat -r RUNS of `taskd-shim`
# without arguments (it prints its usage line and exits 2 right after ld.so and libc start-up,
# i.e. before any task work), ROUNDS times each. What static linking changes is exactly this part
# of every task start. Usage: bench/taskd/shim_exec.sh SHIM [SHIM...]  (env: RUNS=300 ROUNDS=3)
set -eu
RUNS=${RUNS:-300}
ROUNDS=${ROUNDS:-3}
[ $# -ge 1 ] || { echo "usage: $0 SHIM [SHIM...]" >&2; exit 2; }
command -v perf >/dev/null || { echo "bench/taskd: perf is not installed" >&2; exit 1; }
for s in "$@"; do
	[ -x "$s" ] || { echo "bench/taskd: $s is not executable" >&2; exit 1; }
	printf '%s: %s shared objects (%s)\n' "$s" "$(ldd "$s" | grep -c '=>')" \
		"$(ldd "$s" | awk '/=>/ { printf "%s ", $1 }')"
done
for r in $(seq "$ROUNDS"); do
	for s in "$@"; do
		# -x,: CSV; the first field is task-clock in ms (averaged over the runs)
		perf stat -r "$RUNS" -x, -e task-clock "$s" 2>&1 >/dev/null |
			awk -F, -v s="$s" -v r="$r" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" \
				'/task-clock/ { printf "round %d %s: %.0f us CPU per exec (+-%s, load %s)\n",
					r, s, $1 * 1000, $4, l }'
	done
done
