#!/bin/sh
# `make bench`: run every benchmark (bench/<area>/run.sh). Each runs our code and its baseline
# side by side in one run and prints a ratio; results are recorded in bench/RESULTS.md.
set -u
cd "$(dirname "$0")/.."
rc=0
for b in bench/*/run.sh; do
	[ -x "$b" ] || continue
	echo "== $b"
	"$b" || { echo "bench: $b failed" >&2; rc=1; }
done
exit $rc
