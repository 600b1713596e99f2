#!/bin/sh
# Phase breakdown of sandbox-run's launch: runs `sandbox-run --timing` N times and prints the
# median and minimum of every phase it reports (µs), plus the wall time of the whole
# sandbox-run process (fork to exit, as run.sh times it). To compare builds on this shared
# machine, give several binaries as NAME=PATH in SR_LIST: they run interleaved, CHUNK starts at
# a time, so a load change hits each alike. Extra arguments go to sandbox-run before "--".
# Usage: bench/start/phases.sh [N] [sandbox-run options...]
#        SR_LIST="old=/tmp/sandbox-run.old new=build-x/sandbox-run" bench/start/phases.sh 100
set -eu
cd "$(dirname "$0")/../.."
N=${1:-40}
[ $# -gt 0 ] && shift
BUILD=${BUILD:-build}
CHUNK=${CHUNK:-10}
SR_LIST=${SR_LIST:-sandbox-run=$BUILD/sandbox-run}
[ "$(id -u)" = 0 ] || { echo "bench/start: needs root"; exit 77; }
for v in $SR_LIST; do
	[ -x "${v#*=}" ] || { echo "bench/start: build ${v#*=} first"; exit 1; }
done
W=$(mktemp -d /tmp/cd-bench-phases.XXXXXX)
P=cd-phases-$$
cleanup() {
	for d in /sys/fs/cgroup/*/"$P"; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$BUILD/bench"
cc -O2 -o "$BUILD/bench/starter" bench/start/starter.c
# CPU time (task-clock of the starter and everything it forks) is far less sensitive to the
# neighbours' load than wall time: recorded when perf is installed
PERF=
command -v perf >/dev/null && PERF="perf stat -x, -e task-clock --append -o"
echo "sandbox-run --timing, N=$N per binary, load $(cut -d' ' -f1-3 /proc/loadavg), args: $*"
off=0
while [ "$off" -lt "$N" ]; do
	for v in $SR_LIST; do
		name=${v%%=*}
		STARTER_OFFSET=$off $PERF "$W/$name.cpu" "$BUILD/bench/starter" "$CHUNK" "${v#*=}" --timing \
			--cgroup-parent "$P" --memory 64M --pids 64 --net none --id "ph-$name-%d" \
			"$@" -- /bin/true >>"$W/$name.wall" 2>>"$W/$name.timing" ||
			{ cat "$W/$name.timing"; exit 1; }
	done
	off=$((off + CHUNK))
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for v in $SR_LIST; do
	name=${v%%=*}
	sed 's/^/wall /' "$W/$name.wall" >>"$W/$name.timing"
	echo "== $name (${v#*=})"
	# "setup ... took T us", "launched pid=.. in T us (..): prepare a cgroup b clone c net d
	# child e", "ran and exited in T us", "cleanup took T us"
	awk '
	/launched/ { for (i = 1; i <= NF; i++) {
			if ($i == "in") v["launch"] = v["launch"] " " $(i + 1)
			if ($i ~ /^(prepare|cgroup|clone|net|child)$/) v[$i] = v[$i] " " $(i + 1) } }
	/setup \(/ { v["setup"] = v["setup"] " " $(NF - 1) }
	/ran and exited/ { v["run+exit"] = v["run+exit"] " " $(NF - 1) }
	/cleanup took/ { v["cleanup"] = v["cleanup"] " " $(NF - 1) }
	/^wall / { v["process"] = v["process"] " " $2 }
	END {
		n_order = split("setup prepare cgroup clone net child launch run+exit cleanup process", order, " ")
		printf "%-10s %8s %8s\n", "phase", "p50", "min"
		for (k = 1; k <= n_order; k++) {
			n = split(v[order[k]], a, " ")
			if (n == 0) continue
			for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
				t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
			printf "%-10s %8d %8d\n", order[k], a[int((n + 1) / 2)], a[1]
		}
	}' "$W/$name.timing"
	if [ -n "$PERF" ]; then
		awk -F, -v n="$(wc -l <"$W/$name.wall")" '/task-clock/ { ms += $1 }
			END { printf "cpu        %8d us per start (task-clock of the whole tree)\n", ms * 1000 / n }' \
			"$W/$name.cpu"
	fi
done
