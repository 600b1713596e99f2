#!/bin/sh
# bench/watch: taskwatch exit-to-userspace latency (BPF vs the pidfd fallback, interleaved) and
# the overhead of the attached programs on a fork/exec workload outside watched cgroups.
# Built by `make bench` ($(BUILD)/bench/bench_watch); needs root. Record results in
# bench/watch/RESULTS.md. Extra arguments go to bench_watch (--exits N --ops N --rounds N).
set -u
cd "$(dirname "$0")/../.."
bin="${BUILD:-build}/bench/bench_watch"
if [ ! -x "$bin" ]; then
	echo "bench/watch: $bin missing (make BUILD=${BUILD:-build} $bin)" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "bench/watch: SKIP (needs root: BPF programs and cgroups)"
	exit 0
fi
exec "$bin" "$@"
