#!/bin/sh
# End-to-end test of taskd with the real cluster manager (TAP, root): deployd --role cluster and
# one taskd on loopback, the cluster's agent token copied to taskd as in docs/deployd.md.
# The host registers by heartbeat, `taskctl --server job put` makes deployd schedule and push
# PutTask to taskd, taskd's NotifyTaskState makes the job RUNNING, `job stop` stops and removes
# the task on the host. Skipped when deployd is not built.
set -u
BUILD=${BUILD:-build}
TASKD=${TASKD:-$BUILD/taskd}
TASKCTL=${TASKCTL:-$BUILD/taskctl}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }

if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root (cgroups, namespaces)"; exit 77; fi
for b in "$TASKD" "$BUILD/taskd-shim" "$TASKCTL" "$DEPLOYD"; do
	if [ ! -x "$b" ]; then echo "1..0 # SKIP $b not built"; exit 77; fi
done

T=$(mktemp -d /var/tmp/cd-agent-deployd.XXXXXX)
CG=codedeploy-agent-deployd-$$
TASKD_PID=
DEPLOYD_PID=
cleanup() {
	[ -n "$TASKD_PID" ] && kill "$TASKD_PID" 2>/dev/null && wait "$TASKD_PID" 2>/dev/null
	[ -n "$DEPLOYD_PID" ] && kill "$DEPLOYD_PID" 2>/dev/null && wait "$DEPLOYD_PID" 2>/dev/null
	for p in $(pgrep -f "taskd-shim $T/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	for d in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/unified/"$CG"; do
		[ -d "$d" ] || continue
		for c in "$d"/*/; do
			[ -f "$c/cgroup.procs" ] || continue
			for p in $(cat "$c/cgroup.procs"); do kill -9 "$p" 2>/dev/null; done
			sleep 0.1
			rmdir "$c" 2>/dev/null
		done
		rmdir "$d" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() {
	for _ in $(seq 100); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.05
	done
	return 1
}

DPORT=$(free_port)
"$DEPLOYD" --role cluster --region e2e --zone e2e-1 --state-dir "$T/central" \
	--listen "127.0.0.1:$DPORT" >"$T/deployd.log" 2>&1 &
DEPLOYD_PID=$!
wait_http "http://127.0.0.1:$DPORT/healthz"
check "deployd (cluster role) starts" "curl -sf http://127.0.0.1:$DPORT/healthz >/dev/null"
ADMIN=$(awk '$1 == "admin" { print $2 }' "$T/central/deployd.token")
AGENT=$(awk '$1 == "agent" { print $2 }' "$T/central/deployd.token")

mkdir -p "$T/state"
printf '%s\n' "$AGENT" >"$T/state/manager.token"
chmod 600 "$T/state/manager.token"
PORT=$(free_port)
printf 'cgroup_parent = %s\nzone = e2e-1\nheartbeat_interval_s = 1\n' "$CG" >"$T/taskd.conf"
"$TASKD" --config "$T/taskd.conf" --state-dir "$T/state" --listen "127.0.0.1:$PORT" \
	--host-id w1 --manager "http://127.0.0.1:$DPORT" >"$T/taskd.log" 2>&1 &
TASKD_PID=$!
wait_http "http://127.0.0.1:$PORT/healthz"
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
echo "1..$n"
exit $fail
