#!/bin/bash
# bench/pipelines/runview.sh: GET /v1/pipelines/{id}/runs/1 (the run view: the run and every
# stage's state) of one large run, through a real deployd (--role pipelines,artifacts, embedded
# SQLite, loopback). The schema is an approval gate followed by STAGES-1 stages: with ROOTS=0
# `wait 0` stages chained behind the gate (one stage row: the run is parked at the gate), with
# ROOTS=1 approval stages without dependencies (every stage queued: STAGES rows). Prints one
# "<HTTP status> <seconds>" line per request; compare two binaries by running it for each.
# Usage: bench/pipelines/runview.sh DEPLOYD [REQUESTS]   env: STAGES (10000), ROOTS (0),
#        SETTLE (seconds between starting the run and the first GET; 3)
set -eu
D=$1 N=${2:-20} STAGES=${STAGES:-10000} ROOTS=${ROOTS:-0} SETTLE=${SETTLE:-3}
for c in curl python3; do command -v $c >/dev/null || { echo "runview: needs $c" >&2; exit 1; }; done
T=$(mktemp -d /tmp/cd-bench-runview.XXXXXX)
hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
TOK=$(hex)
printf 'admin %s\nagent %s\n' "$TOK" "$(hex)" >"$T/tokens"
chmod 600 "$T/tokens"
"$D" --role pipelines,artifacts --state-dir "$T/s" --listen 127.0.0.1:0 --token-file "$T/tokens" \
	>"$T/log" 2>&1 &
PID=$!
trap 'kill $PID; wait $PID 2>/dev/null; rm -rf "$T"' EXIT
PORT=
for _ in $(seq 100); do
	PORT=$(sed -n 's/.*msg="deployd ready".* port=\([0-9]*\).*/\1/p' "$T/log")
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || { echo "runview: deployd did not start: $(tail -3 "$T/log")" >&2; exit 1; }
B=http://127.0.0.1:$PORT
python3 - "$T/p.json" "$STAGES" "$ROOTS" <<'PY'
import json, sys
path, n, roots = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
rest = ({"name": "s%05d" % i, "type": "approval", "depends_on": []} if roots else
        {"name": "s%05d" % i, "type": "wait", "wait": {"seconds": 0}} for i in range(1, n))
json.dump({"name": "Big", "owner": "t",
           "schema": [{"name": "gate", "type": "approval"}] + list(rest)}, open(path, "w"))
PY
api() { curl -s -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' "$@"; }
ID=$(api --data-binary @"$T/p.json" "$B/v1/pipelines" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["pipeline_id"])')
api -o /dev/null -d '{"commit":"1111111111111111111111111111111111111111"}' "$B/v1/pipelines/$ID/runs"
sleep "$SETTLE"
for _ in $(seq "$N"); do
	curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "Authorization: Bearer $TOK" \
		"$B/v1/pipelines/$ID/runs/1"
done
