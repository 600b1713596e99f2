#!/bin/sh
# End-to-end test of taskd's start-up and shutdown contract as root (TAP): refusing a manager
# without a zone (or without an address it can push to), refusing a manager token equal to its
# own, systemd readiness (READY=1 only once the state is recovered, tasks
# re-adopted and the API answers; STOPPING=1 on SIGTERM) over a NOTIFY_SOCKET datagram socket,
# and the fallback to the in-process init when sandbox-init is not beside taskd-shim.
set -u
. "$(dirname "$0")/lib.sh"

need_root
need_exec "$TASKD" "$SHIM" "$BUILD/sandbox-init" "$TASKCTL"
need_cmd python3 curl

e2e_init agent-startup /var/tmp
STATE=$T/state
CG=codedeploy-agent-startup-$$
TASKD_PID=
RECV_PID=
E2E_PID_VARS="TASKD_PID RECV_PID"
E2E_STATE_DIRS="$T/tok/state $STATE"
E2E_CGROUPS=$CG

jget() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1" 2>/dev/null; }

# ---------------------------------------------------------------- a manager needs a zone
# deployd refuses heartbeats without a zone (422): a taskd that could never send one must not
# start at all (exit 2, one line naming the setting), rather than run unscheduled.
mkdir -p "$T/tok"
echo 0123456789abcdef0123456789abcdef >"$T/tok/taskd.token"
echo fedcba9876543210fedcba9876543210 >"$T/tok/manager.token"
chmod 600 "$T/tok/"*
printf 'manager_token_file = %s\ncgroup_parent = %s\n' "$T/tok/manager.token" "$CG" >"$T/tok/taskd.conf"
"$TASKD" --config "$T/tok/taskd.conf" --state-dir "$T/tok/state" --listen "127.0.0.1:$(free_port)" \
	--token-file "$T/tok/taskd.token" --manager http://127.0.0.1:9 >"$T/tok/out" 2>"$T/tok/err"
rc=$?
check "with --manager and no zone taskd refuses to start (exit 2, one line naming zone)" \
	"[ $rc = 2 ] && [ \$(wc -l <'$T/tok/err') = 1 ] && grep -q 'zone' '$T/tok/err' && [ ! -e '$T/tok/state' ]" \
	"rc=$rc $(cat "$T/tok/err")"
"$TASKD" --config "$T/tok/taskd.conf" --state-dir "$T/tok/state" --listen 0.0.0.0:"$(free_port)" \
	--token-file "$T/tok/taskd.token" --manager http://127.0.0.1:9 --zone e2e-1 >"$T/tok/out" 2>"$T/tok/err"
rc=$?
check "with --manager, listening on 0.0.0.0 without advertise_url: exit 2 naming advertise_url" \
	"[ $rc = 2 ] && [ \$(wc -l <'$T/tok/err') = 1 ] && grep -q 'advertise_url' '$T/tok/err'" \
	"rc=$rc $(cat "$T/tok/err")"

# ---------------------------------------------------------------- one token for both roles
cp "$T/tok/taskd.token" "$T/tok/manager.token"
printf 'manager_token_file = %s\ncgroup_parent = %s\nzone = e2e-1\n' "$T/tok/manager.token" "$CG" >"$T/tok/taskd.conf"
"$TASKD" --config "$T/tok/taskd.conf" --state-dir "$T/tok/state" --listen "127.0.0.1:$(free_port)" \
	--token-file "$T/tok/taskd.token" --manager http://127.0.0.1:9 >"$T/tok/out" 2>"$T/tok/err"
rc=$?
check "taskd refuses to start when its API token is the manager token (exit 1, one line)" \
	"[ $rc = 1 ] && [ \$(wc -l <'$T/tok/err') = 1 ] && grep -q 'manager token are the same' '$T/tok/err'" \
	"rc=$rc $(cat "$T/tok/err")"
echo fedcba9876543210fedcba9876543210 >"$T/tok/manager.token"
TPORT=$(free_port)
: >"$T/tok/err"
e2e_start_taskd "$TPORT" "$T/tok/state" "$T/tok/taskd.conf" "$T/tok/err" \
	--token-file "$T/tok/taskd.token" --manager http://127.0.0.1:9
check "with distinct tokens the same configuration starts" \
	"curl -sf http://127.0.0.1:$TPORT/healthz >/dev/null" "$(cat "$T/tok/err")"
e2e_stop "$TASKD_PID"
TASKD_PID=

# ---------------------------------------------------------------- readiness (sd_notify)
PORT=$(free_port)
printf 'cgroup_parent = %s\n' "$CG" >"$T/taskd.conf"
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", 0) as f:
    while True:
        f.write(s.recv(4096).replace(b"\n", b" ") + b"\n")
' "$T/notify.sock" "$T/notify.log" &
RECV_PID=$!
for _ in $(seq 50); do [ -S "$T/notify.sock" ] && break; sleep 0.05; done
# spawn_taskd [NOTIFY-SOCKET]: taskd with NOTIFY_SOCKET set (when given), no waiting here
spawn_taskd() {
	E2E_TASKD_WRAP=${1:+env NOTIFY_SOCKET=$1}
	e2e_spawn_taskd "$PORT" "$STATE" "$T/taskd.conf" "$T/taskd.log" --host-id startup
}
# start_taskd [NOTIFY-SOCKET]: the same, then until its API answers
start_taskd() {
	E2E_TASKD_WRAP=${1:+env NOTIFY_SOCKET=$1}
	e2e_start_taskd "$PORT" "$STATE" "$T/taskd.conf" "$T/taskd.log" --host-id startup
}
wait_line() { # wait_line PATTERN: a notify datagram matching PATTERN arrived (10 s)
	for _ in $(seq 200); do
		grep -q "$1" "$T/notify.log" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
spawn_taskd "$T/notify.sock"
check "READY=1 is sent at start-up" "wait_line '^READY=1 '"
check "the ready datagram carries a STATUS line" \
	"grep -q '^READY=1 STATUS=serving on 127.0.0.1:$PORT, 0 tasks' '$T/notify.log'" \
	"$(cat "$T/notify.log")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
check "the API answers as soon as READY=1 arrived" "[ '$code' = 200 ]" "got $code"
C="$TASKCTL --host http://127.0.0.1:$PORT --token-file $STATE/taskd.token"
printf '{"name":"sleeper","target":"//e2e:s","command":["/bin/sh","-c","exec sleep 300"],"stop_grace_s":1}' >"$T/sleeper.json"
TID=$($C -o json put -f "$T/sleeper.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
for _ in $(seq 100); do
	[ "$(jget "$($C -o json get "$TID")" "d['state']")" = RUNNING ] && break
	sleep 0.1
done
PID1=$(jget "$($C -o json get "$TID")" "d.get('pid')")
kill -9 "$TASKD_PID"
wait "$TASKD_PID" 2>/dev/null
: >"$T/notify.log"
spawn_taskd "$T/notify.sock"
wait_line '^READY=1 '
# No polling between READY=1 and this request: readiness must mean the task is re-adopted.
j=$($C -o json get "$TID" 2>&1)
check "after kill -9 and restart, READY=1 comes with the task already re-adopted (same pid)" \
	"[ \"\$(jget '$j' \"d['state']\")\" = RUNNING ] && [ \"\$(jget '$j' \"d.get('pid')\")\" = '$PID1' ] && grep -q '1 tasks (1 re-adopted)' '$T/notify.log'" \
	"$j / $(cat "$T/notify.log")"
kill "$TASKD_PID"
wait "$TASKD_PID"
rc=$?
TASKD_PID=
check "SIGTERM → STOPPING=1, exit 0" "wait_line '^STOPPING=1' && [ $rc = 0 ]" \
	"rc=$rc $(cat "$T/notify.log")"
check "the task outlives taskd's stop" "kill -0 '$PID1' 2>/dev/null"
start_taskd "$T/nonexistent.sock"
check "an unreachable NOTIFY_SOCKET is a warning, not a failure" \
	"curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && grep -q 'cannot notify systemd' '$T/taskd.log'"
$C stop "$TID" >/dev/null
for _ in $(seq 100); do
	[ "$(jget "$($C -o json get "$TID")" "d['state']")" = DONE ] && break
	sleep 0.1
done
$C rm "$TID" >/dev/null
e2e_stop "$TASKD_PID"
TASKD_PID=

# ---------------------------------------------------------------- no sandbox-init beside the shim
mkdir -p "$T/bin"
cp "$BUILD/taskd-shim" "$T/bin/"
printf 'cgroup_parent = %s\nshim_path = %s\n' "$CG" "$T/bin/taskd-shim" >"$T/taskd.conf"
: >"$T/taskd.log"
start_taskd
check "without sandbox-init beside taskd-shim: a warning naming it, init=in-process" \
	"grep -q 'no sandbox-init beside taskd-shim' '$T/taskd.log' && grep -q 'init=in-process' '$T/taskd.log'" \
	"$(cat "$T/taskd.log")"
TID=$($C -o json put -f "$T/sleeper.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
for _ in $(seq 100); do
	[ "$(jget "$($C -o json get "$TID")" "d['state']")" = RUNNING ] && break
	sleep 0.1
done
PID1=$(jget "$($C -o json get "$TID")" "d.get('pid')")
check "... and the task still runs, its pid 1 being the in-process init (a clone of the shim)" \
	"[ -n '$PID1' ] && [ \"\$(cat /proc/$PID1/comm 2>/dev/null)\" = taskd-shim ]" \
	"pid=$PID1 comm=$(cat /proc/"$PID1"/comm 2>/dev/null)"
$C stop "$TID" >/dev/null
for _ in $(seq 100); do
	[ "$(jget "$($C -o json get "$TID")" "d['state']")" = DONE ] && break
	sleep 0.1
done
$C rm "$TID" >/dev/null
e2e_stop "$TASKD_PID"
TASKD_PID=
# ---------------------------------------------------------------- lost per-process events
# A 4 KiB ring holds about a dozen events: a task spawning processes in a loop while taskd is
# stopped overflows it. The loss is reported once, globally: every watched task's reason must
# become uncertain (no signal sender named) instead of being built from a partial stream.
wait_state() { # wait_state ID STATE [SECONDS]
	for _ in $(seq $(( ${3:-10} * 10 ))); do
		[ "$(jget "$($C -o json get "$1")" "d['state']")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
if grep -q 'process_events=bpf' "$T/taskd.log"; then
	printf 'cgroup_parent = %s\nprocess_events_ring_bytes = 4096\n' "$CG" >"$T/taskd.conf"
	start_taskd
	printf '{"name":"noisy","target":"//e2e:n","command":["/bin/sh","-c","while :; do /bin/true; done"],"stop_grace_s":1}' >"$T/noisy.json"
	printf '{"name":"victim","target":"//e2e:v","command":["/bin/sh","-c","sleep 3; kill -9 $$"],"restart":{"policy":"never"}}' >"$T/victim.json"
	NID=$($C -o json put -f "$T/noisy.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
	VID=$($C -o json put -f "$T/victim.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
	wait_state "$NID" RUNNING
	wait_state "$VID" RUNNING
	kill -STOP "$TASKD_PID"
	sleep 0.5
	kill -CONT "$TASKD_PID"
	$C stop "$NID" >/dev/null
	wait_state "$VID" ERROR
	j=$($C -o json get "$VID")
	lost=$(curl -s -H "Authorization: Bearer $(cat "$STATE/taskd.token")" "http://127.0.0.1:$PORT/metrics" |
		sed -n 's/^taskd_process_events_lost_total //p')
	check "lost events are counted in /metrics" "[ \"\${lost:-0}\" -gt 0 ]" "lost=$lost"
	check "a task watched during the loss: signaled 9, sender unknown (not a guessed sender)" \
		"[ \"\$(jget '$j' \"d['reason']\")\" = signaled ] && [ \"\$(jget '$j' \"d['signal']\")\" = 9 ] && [ \"\$(jget '$j' \"d['message']\")\" = 'sender unknown: process events were lost' ]" \
		"$j"
	wait_state "$NID" DONE
	$C rm "$NID" >/dev/null
	$C rm "$VID" >/dev/null
	e2e_stop "$TASKD_PID"
	TASKD_PID=
else
	skip "lost per-process events" "BPF unavailable"
fi
left=$(e2e_cgroup_left "$CG")
check "no task cgroup left" "[ '$left' = 0 ]" "$(ls -d /sys/fs/cgroup/*/"$CG"/*/ 2>/dev/null)"

tap_end
