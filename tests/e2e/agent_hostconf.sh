#!/bin/sh
# End-to-end test (TAP, root) of taskd's host-level settings and its shutdown, on a real taskd
# running in a network namespace of its own (so the bridge and its addresses touch nothing of
# the host's network): taskd.conf bridge_name / bridge_subnet (refused when invalid; a bridge-mode
# task gets its address from that subnet on that bridge; veth and lease gone after removal),
# JobSpec reqs.pids_max and taskd.conf default_pids_max in the task's pids cgroup, the
# taskd_start_time_seconds gauge, and SIGTERM with a long-poll open (the time is printed, not
# asserted).
set -u
. "$(dirname "$0")/lib.sh"

need_root
need_exec "$TASKD" "$SHIM" "$BUILD/sandbox-init" "$TASKCTL"
need_cmd python3 curl ip nsenter

e2e_init agent-hostconf /var/tmp
CG=codedeploy-agent-hostconf-$$
NS=cdhc$$-host
BR=cdhc$(($$ % 100000))               # <= 9 characters, unique per run
SUBNET=10.213.$(($$ % 256)).0/28        # inside our own network namespace only
PREFIX=10.213.$(($$ % 256)).
TASKD_PID=
POLL_PID=
E2E_PID_VARS="POLL_PID TASKD_PID"
E2E_STATE_DIRS=$T/state
E2E_CGROUPS=$CG
E2E_NETNS_PREFIX=cdhc$$- # the bridge and every veth go with the namespace
E2E_IPAM_PREFIXES=$PREFIX

e2e_netns_add "$NS" || skip_all "cannot create a network namespace"
IN="nsenter --net=/run/netns/$NS" # (ip netns exec would remount /sys and hide the cgroups)
E2E_TASKD_WRAP=$IN
API=http://127.0.0.1:7411
jget() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1" 2>/dev/null; }
C="$IN $TASKCTL --host $API --token-file $T/state/taskd.token"
start_taskd() {
	e2e_start_taskd 7411 "$T/state" "$T/taskd.conf" "$T/taskd.log" --host-id hostconf
}
wait_state() { # wait_state ID STATE
	for _ in $(seq 100); do
		[ "$(jget "$($C -o json get "$1")" "d['state']")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
put() { $C -o json put -f "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])'; }
pids_max() { cat /sys/fs/cgroup/pids/"$CG"/"$1"-*/pids.max /sys/fs/cgroup/unified/"$CG"/"$1"-*/pids.max 2>/dev/null | head -1; }

# ---------------------------------------------------------------- invalid keys stop the start
for bad in "bridge_subnet = 10.213.0.1/24" "bridge_subnet = 10.213.0.0/31" "bridge_name = br/0" \
	"bridge_name = a-name-too-long0" "default_pids_max = 1"; do
	printf 'cgroup_parent = %s\n%s\n' "$CG" "$bad" >"$T/bad.conf"
	$IN "$TASKD" --config "$T/bad.conf" --state-dir "$T/bad" --listen 127.0.0.1:7411 >/dev/null 2>"$T/err"
	rc=$?
	key=${bad%% =*}
	check "taskd.conf '$bad' is refused at start: exit 2, one line naming $key" \
		"[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ] && grep -q '$key' '$T/err'" \
		"rc=$rc $(cat "$T/err")"
done

# ---------------------------------------------------------------- bridge and pids settings
printf 'cgroup_parent = %s\nbridge_name = %s\nbridge_subnet = %s\ndefault_pids_max = 300\n' \
	"$CG" "$BR" "$SUBNET" >"$T/taskd.conf"
check "taskd starts with bridge_name, bridge_subnet and default_pids_max set" start_taskd \
	"$(cat "$T/taskd.log" 2>/dev/null)"
printf '{"name":"br","target":"//e2e:br","command":["/bin/sh","-c","exec sleep 300"],"reqs":{"networking":{"mode":"bridge"}},"stop_grace_s":1}' >"$T/br.json"
printf '{"name":"lim","target":"//e2e:lim","command":["/bin/sh","-c","exec sleep 300"],"reqs":{"pids_max":50},"stop_grace_s":1}' >"$T/lim.json"
BID=$(put "$T/br.json")
LID=$(put "$T/lim.json")
wait_state "$BID" RUNNING
wait_state "$LID" RUNNING
BPID=$(jget "$($C -o json get "$BID")" "d.get('pid')")
gw=$(ip -n "$NS" -4 -o addr show dev "$BR" 2>/dev/null | awk '{print $4}')
check "the bridge is the configured one, holding the subnet's first address" \
	"[ '$gw' = '${PREFIX}1/28' ]" "bridge $BR: '$gw' ($(ip -n "$NS" -o link 2>&1 | tr '\n' ' '))"
addr=$(nsenter --net=/proc/"$BPID"/ns/net ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')
check "the bridge task's eth0 has an address of bridge_subnet" \
	"case '$addr' in ${PREFIX}*/28) [ '$addr' != '${PREFIX}1/28' ] ;; *) false ;; esac" \
	"eth0: '$addr' pid=$BPID $($C -o json get "$BID")"
veths=$(ip -n "$NS" -o link show master "$BR" 2>/dev/null | wc -l)
check "its host-side veth is attached to that bridge" "[ '$veths' = 1 ]" \
	"$(ip -n "$NS" -o link 2>&1 | tr '\n' ' ')"
# Reachability over the bridge: a TCP connect to a closed port of the task is refused (RST from
# its stack); an unreachable address would time out instead.
reach=$($IN python3 -c '
import socket, sys
s = socket.socket(); s.settimeout(3)
try:
    s.connect((sys.argv[1], 9)); print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("unreachable: %s" % e)' "${addr%/*}" 2>&1)
check "the task is reachable over the bridge from the gateway" "[ '$reach' = refused ]" "$reach"
check "reqs.pids_max 50 is the task's pids.max" "[ \"\$(pids_max '$LID')\" = 50 ]" \
	"pids.max=$(pids_max "$LID")"
check "a spec without reqs.pids_max gets default_pids_max 300" \
	"[ \"\$(pids_max '$BID')\" = 300 ]" "pids.max=$(pids_max "$BID")"
TOKEN=$(cat "$T/state/taskd.token")
st=$($IN curl -s -H "Authorization: Bearer $TOKEN" "$API/metrics" | sed -n 's/^taskd_start_time_seconds //p')
now=$(date +%s)
check "/metrics has taskd_start_time_seconds (counters count from it)" \
	"python3 -c 'import sys; v=float(sys.argv[1]); sys.exit(0 if $now - 600 < v <= $now + 1 else 1)' '$st'" \
	"taskd_start_time_seconds=$st now=$now"
$C stop "$BID" >/dev/null
$C stop "$LID" >/dev/null
wait_state "$BID" DONE
wait_state "$LID" DONE
$C rm "$BID" >/dev/null
$C rm "$LID" >/dev/null
veths=$(ip -n "$NS" -o link show master "$BR" 2>/dev/null | wc -l)
leases=$(e2e_ipam_leases "$PREFIX")
check "after removal: no veth on the bridge, no lease of the subnet left" \
	"[ '$veths' = 0 ] && [ '$leases' = 0 ]" "veths=$veths leases=$leases"

# ---------------------------------------------------------------- SIGTERM with a long-poll open
$IN curl -s -o "$T/poll.out" -H "Authorization: Bearer $TOKEN" "$API/v1/events?after=999999&wait=60" &
POLL_PID=$!
sleep 0.5
t0=$(date +%s%N)
kill -TERM "$TASKD_PID"
# a hang guard, not a timing assertion: the long-poll's own wait is 60 s
for _ in $(seq 200); do kill -0 "$TASKD_PID" 2>/dev/null || break; sleep 0.05; done
t1=$(date +%s%N)
exited=1
kill -0 "$TASKD_PID" 2>/dev/null && exited=0
wait "$TASKD_PID"
rc=$?
TASKD_PID=
# Typically ~20 ms; it was 0..2 s (civetweb's accept poll) before taskd woke it.
echo "# SIGTERM to exit with a long-poll open: $(( (t1 - t0) / 1000000 )) ms"
check "SIGTERM with a long-poll open: taskd exits (status 0) without waiting for the poll's 60 s" \
	"[ $exited = 1 ] && [ $rc = 0 ] && grep -q 'STOPPING\\|stopping' '$T/taskd.log'" \
	"exited=$exited rc=$rc"
wait "$POLL_PID" 2>/dev/null
POLL_PID=
left=$(e2e_cgroup_left "$CG")
check "no task cgroup left" "[ '$left' = 0 ]" "$(ls -d /sys/fs/cgroup/*/"$CG"/*/ 2>/dev/null)"

tap_end
