#!/bin/sh
# bench/pipelines: the ActionPlanner on 10,000-stage schemas (chain, explicit chain, fan-out/
# fan-in, random DAG) against a naive O(n^2) planner and the previous deep-copy planner, and
# the durable action queue (1,000 pipelines x 5 `wait 0` stages through the real store and
# runner, 1 and 2 threads) against a minimal SQLite queue with and without leases; every
# baseline runs side by side in the same run. Argo Workflows' 2,100 workflows/min is a published
# figure (bench/pipelines/RESULTS.md says where from), not measured here.
# Usage: bench/pipelines/run.sh
#   env: BUILD (default build), BENCH_DIR (database dir, default /tmp), PLANNER_ITERS (60),
#        NAIVE_ITERS (3), PIPELINES (1000), STAGES (5), ROUNDS (2: every queue variant twice,
#        round-robin; the summary shows medians). About 1.5 minutes on 2 shared vCPUs.
# Build first: make BUILD=$BUILD $BUILD/bench/bench_planner $BUILD/bench/bench_queue (or make bench)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BENCH_DIR=${BENCH_DIR:-/tmp}
PLANNER_ITERS=${PLANNER_ITERS:-60}
NAIVE_ITERS=${NAIVE_ITERS:-3}
PIPELINES=${PIPELINES:-1000}
STAGES=${STAGES:-5}
ROUNDS=${ROUNDS:-2}
for b in bench_planner bench_queue; do
	if [ ! -x "$BUILD/bench/$b" ]; then
		echo "bench/pipelines: $BUILD/bench/$b missing (make BUILD=$BUILD $BUILD/bench/$b)" >&2
		exit 1
	fi
done
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "# bench/pipelines on $(uname -r), $(nproc) cpus, $(date -u +%Y-%m-%dT%H:%MZ), load $(load)"
"$BUILD/bench/bench_planner" --iters "$PLANNER_ITERS" --naive-iters "$NAIVE_ITERS"
echo "# load $(load)"
"$BUILD/bench/bench_queue" --dir "$BENCH_DIR" --pipelines "$PIPELINES" --stages "$STAGES" \
	--rounds "$ROUNDS"
echo "# load $(load)"
