#!/bin/sh
# End-to-end test of taskd with the real cluster manager (TAP, root): deployd --role cluster and
# one taskd on loopback, the cluster's agent token copied to taskd as in docs/deployd.md.
# The host registers by heartbeat, `taskctl --server job put` makes deployd schedule and push
# PutTask to taskd, taskd's NotifyTaskState makes the job RUNNING, `job stop` stops and removes
# the task on the host. Skipped when deployd is not built.
set -u
. "$(dirname "$0")/lib.sh"

need_root
need_exec "$TASKD" "$SHIM" "$TASKCTL" "$DEPLOYD"

e2e_init agent-deployd /var/tmp
CG=codedeploy-agent-deployd-$$
TASKD_PID=
DEPLOYD_PID=
WATCH_PID=
E2E_PID_VARS="TASKD_PID DEPLOYD_PID WATCH_PID"
E2E_STATE_DIRS=$T/state
E2E_CGROUPS=$CG

e2e_start_deployd "$(free_port)" "$T/deployd.log" --role cluster --region e2e --zone e2e-1 \
	--state-dir "$T/central"
DPORT=$DEPLOYD_PORT
check "deployd (cluster role) starts" "curl -sf http://127.0.0.1:$DPORT/healthz >/dev/null" \
	"$(tail -3 "$T/deployd.log")"
ADMIN=$(awk '$1 == "admin" { print $2 }' "$T/central/deployd.token")
AGENT=$(awk '$1 == "agent" { print $2 }' "$T/central/deployd.token")
# deployd's own token file (admin and agent lines): taskctl takes its admin token. A watcher of
# the event log runs through the whole test.
SF="$TASKCTL --server http://127.0.0.1:$DPORT --token-file $T/central/deployd.token"
$SF -o json events -w >"$T/watch.jsonl" 2>"$T/watch.err" &
WATCH_PID=$!

mkdir -p "$T/state"
printf '%s\n' "$AGENT" >"$T/state/manager.token"
chmod 600 "$T/state/manager.token"
PORT=$(free_port)
printf 'cgroup_parent = %s\nzone = e2e-1\nheartbeat_interval_s = 1\n' "$CG" >"$T/taskd.conf"
e2e_start_taskd "$PORT" "$T/state" "$T/taskd.conf" "$T/taskd.log" --host-id w1 \
	--manager "http://127.0.0.1:$DPORT"
S="$TASKCTL --server http://127.0.0.1:$DPORT --token $ADMIN"
H="$TASKCTL --host http://127.0.0.1:$PORT --token-file $T/state/taskd.token"

i=0
while [ $i -lt 50 ]; do
	$S hosts 2>/dev/null | grep -q '"state": "READY"' && break
	sleep 0.1
	i=$((i + 1))
done
check "taskd registers by heartbeat: host READY with its resources" \
	"$S hosts | grep -q '\"host_id\": \"w1\"' && $S hosts | grep -q '\"state\": \"READY\"' && $S hosts | grep -q '\"vcpus\"'"

cat >"$T/web.json" <<'EOF'
{"name":"web","target":"//e2e:web","command":["/bin/sh","-c","echo serving; exec sleep 1000"],
 "reqs":{"hosts":1,"memory_mb":64},"zones":["e2e-1"],"stop_grace_s":1}
EOF
$S job put -f "$T/web.json" e2e/e2e-1/web >"$T/put.out" 2>&1
check "taskctl --server job put creates the job" "grep -q '\"created\": true' '$T/put.out'" \
	"$(cat "$T/put.out")"
check_no_leaks "taskctl job put frees what it allocated (valgrind)" "$T/vg-job-put.log" \
	$S job put -f "$T/web.json" e2e/e2e-1/web
i=0
while [ $i -lt 100 ]; do
	$H -o json ps 2>/dev/null | grep -q '"state": "RUNNING"' && break
	sleep 0.1
	i=$((i + 1))
done
check "deployd pushed PutTask: the task RUNS on taskd" "$H -o json ps | grep -q '\"state\": \"RUNNING\"'"
i=0
while [ $i -lt 100 ]; do
	$S job get e2e/e2e-1/web 2>/dev/null | grep -q '"healthy": true' && break
	sleep 0.1
	i=$((i + 1))
done
check "taskd's NotifyTaskState reached deployd: the job's task is RUNNING and healthy" \
	"$S job get e2e/e2e-1/web | grep -q '\"healthy\": true'"
check "taskctl --server jobs lists it" "$S jobs | grep -q 'job://e2e/e2e-1/web'"
check_no_leaks "taskctl job start (a running job) frees what it allocated (valgrind)" \
	"$T/vg-job-start.log" $S job start e2e/e2e-1/web
$S job stop e2e/e2e-1/web >/dev/null 2>&1
i=0
while [ $i -lt 150 ]; do
	[ "$($H -o json ps 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tasks"]))')" = 0 ] && break
	sleep 0.1
	i=$((i + 1))
done
check "job stop: deployd stopped and deleted the task on the host" \
	"[ \"\$($H -o json ps | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[\"tasks\"]))')\" = 0 ]"
check "no task cgroup or shim left on the host" \
	"[ \$(ls -d /sys/fs/cgroup/unified/$CG/*/ 2>/dev/null | wc -l) = 0 ] && ! pgrep -f 'taskd-shim $T/' >/dev/null"

# ---------------------------------------------------------------- deployd's events
$SF events >"$T/events.txt" 2>&1
check "events (table): the header of deployd's events" \
	"head -1 '$T/events.txt' | grep -qE '^ *ID +TIME +ACTOR +KIND +SUBJECT$'" \
	"$(head -3 "$T/events.txt")"
check "events (table): PutJob's row has its id, time, actor, kind and subject" \
	"grep -qE '^ *[1-9][0-9]* +20[0-9-]+T[0-9:.]+Z +admin +job\.put +job://e2e/e2e-1/web$' '$T/events.txt'" \
	"$(head -5 "$T/events.txt")"
$SF -o wide events >"$T/events-wide.txt" 2>&1
check "events -o wide: a DATA column summarising the event's data" \
	"head -1 '$T/events-wide.txt' | grep -qE 'SUBJECT +DATA$' && grep -qE ' job\.put +job://e2e/e2e-1/web +created=true job_id=[0-9a-z]+ spec_hash=sha256:[0-9a-f]+ version=1$' '$T/events-wide.txt'" \
	"$(grep job.put "$T/events-wide.txt")"
$SF -o json events >"$T/events.jsonl"
diff=$(same_events id "$T/watch.jsonl" "$T/events.jsonl")
rc=$?
e2e_stop "$WATCH_PID"
WATCH_PID=
check "events -w printed each of deployd's events once, in order" "[ $rc = 0 ]" \
	"$diff $(cat "$T/watch.err")"
st=$(sigint_status $SF events -w)
check "Ctrl-C ends events -w at once (killed by SIGINT: 130 in a shell)" "[ '$st' = -2 ]" \
	"ended with $st"
tap_end
