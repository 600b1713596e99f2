#!/bin/sh
# End-to-end test of deployd's cluster manager with real taskd hosts, as root (TAP): one deployd
# (cluster + artifacts) and three taskd worker hosts, each with its own state dir and cgroup
# parent; artifacts are uploaded to deployd's CAS and fetched by taskd. With
# CENTRAL_E2E_NETNS=1 (the default when `ip netns` works) every host is a network namespace of
# its own — deployd in one, each taskd in another, veths to a bridge in a switch namespace, all
# addresses inside the test's namespaces — and losing a host kills its taskd and deletes its
# namespace. With CENTRAL_E2E_NETNS=0 everything listens on loopback ports.
# Deploy a 2-task job on distinct hosts; kill -9 one host's taskd → its task is rescheduled on
# another host after the heartbeats stop, and when the host comes back its stale task is stopped
# and deleted; a rolling update to a healthy version goes batch by batch (never both tasks down);
# an update whose health check fails is rolled back automatically; kill -9 deployd in the middle
# of an update → the restarted deployd finishes it; no task lost or duplicated on the hosts;
# stopping the job removes every task.
set -u
. "$(dirname "$0")/lib.sh"

need_root "taskd runs tasks in cgroups"
need_exec "$DEPLOYD" "$TASKD" "$SHIM"
need_cmd curl python3 sha256sum

e2e_init central-taskd
CG=codedeploy-central-e2e-$$
P=cdc$$
DPID=
E2E_PID_VARS=DPID
E2E_STOP_SIGNAL=KILL
E2E_STATE_DIRS="$T/taskd1 $T/taskd2 $T/taskd3"
E2E_CGROUPS="$CG-1 $CG-2 $CG-3"
E2E_NETNS_PREFIX=$P-
# The taskds' pids are kept in files: a host's taskd is started again after it was killed.
e2e_on_cleanup() {
	for i in 1 2 3; do
		[ -f "$T/taskd$i.pid" ] && kill -9 "$(cat "$T/taskd$i.pid")" 2>/dev/null
	done
	return 0
}

py() { python3 -c "import json,sys; d=json.load(sys.stdin); $1" 2>/dev/null; }
wait_for() { # wait_for EXPR SECONDS
	i=0
	while [ $i -lt $(($2 * 10)) ]; do
		eval "$1" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

ADMIN=$(hex)
AGENT=$(hex)
printf 'admin %s\nagent %s\n' "$ADMIN" "$AGENT" >"$T/tokens"
printf '%s\n' "$AGENT" >"$T/agent.token"
chmod 0600 "$T/tokens" "$T/agent.token"

# ---- network: loopback, or one namespace per host ----
NETNS=${CENTRAL_E2E_NETNS:-auto}
if [ "$NETNS" = auto ]; then
	if ip netns add "$P-probe" 2>/dev/null; then ip netns del "$P-probe"; NETNS=1; else NETNS=0; fi
fi
# nsenter switches only the network namespace (ip netns exec would also remount /sys and hide
# the cgroup hierarchy taskd needs).
in_ns() { ns=$1; shift; if [ "$NETNS" = 1 ]; then nsenter --net=/run/netns/$P-$ns "$@"; else "$@"; fi; }
ctl() { in_ns ctl "$@"; }
# For background daemons: `spawn_in NS CMD... &` execs CMD, so $! is the daemon's own pid.
spawn_in() {
	ns=$1
	shift
	if [ "$NETNS" = 1 ]; then exec nsenter --net=/run/netns/$P-$ns "$@"; else exec "$@"; fi
}
ns_up() { # ns_up NAME ADDR: namespace with lo up and eth0 on the switch's bridge
	# A deleted namespace lives on while processes (a task's shim) are inside: drop the old
	# switch port so the name can be reused.
	ip -n "$P-sw" link del "v$1" 2>/dev/null
	ip netns add "$P-$1" &&
		ip -n "$P-sw" link add "v$1" type veth peer name eth0 netns "$P-$1" &&
		ip -n "$P-sw" link set "v$1" master br0 up &&
		ip -n "$P-$1" addr add "$2/24" dev eth0 &&
		ip -n "$P-$1" link set eth0 up && ip -n "$P-$1" link set lo up
}
if [ "$NETNS" = 1 ]; then
	ip netns add "$P-sw" && ip -n "$P-sw" link add br0 type bridge &&
		ip -n "$P-sw" link set br0 up && ip -n "$P-sw" link set lo up &&
		ns_up ctl 10.77.0.1 && ns_up h1 10.77.0.11 && ns_up h2 10.77.0.12 && ns_up h3 10.77.0.13
	check "network namespaces: switch, controller and three hosts" "[ $? = 0 ]"
	DADDR=10.77.0.1
	PORT=7400
else
	DADDR=127.0.0.1
	PORT=$(free_port)
fi
U="http://$DADDR:$PORT"
mkdir -p "$T/deployd"
cat >"$T/deployd.conf" <<CONF
tick_interval_ms = 200
heartbeat_interval_s = 1
lost_after = 2
progress_deadline_s = 30
CONF
start_deployd() {
	spawn_in ctl "$DEPLOYD" --config "$T/deployd.conf" --role cluster,artifacts --region us-east \
		--zone us-east-1 --state-dir "$T/deployd" --listen "$DADDR:$PORT" \
		--token-file "$T/tokens" --log-level debug >>"$T/deployd.log" 2>&1 &
	DPID=$!
	wait_for 'ctl curl -sf $U/readyz >/dev/null' 10
}
api() { # api METHOD PATH [BODY] → stdout body
	if [ $# -ge 3 ]; then
		ctl curl -s -m 10 -X "$1" -H "Authorization: Bearer $ADMIN" \
			-H 'Content-Type: application/json' --data-binary "$3" "$U$2"
	else
		ctl curl -s -m 10 -X "$1" -H "Authorization: Bearer $ADMIN" "$U$2"
	fi
}
check "deployd starts" "start_deployd" "$(tail -5 "$T/deployd.log" 2>/dev/null)"

start_taskd() { # start_taskd I
	i=$1
	mkdir -p "$T/taskd$i"
	if [ "$NETNS" = 1 ]; then
		[ -e "/run/netns/$P-h$i" ] || ns_up "h$i" "10.77.0.1$i"
		echo 7411 >"$T/taskd$i.port"
		echo "10.77.0.1$i" >"$T/taskd$i.addr"
	else
		[ -f "$T/taskd$i.port" ] || free_port >"$T/taskd$i.port"
		echo 127.0.0.1 >"$T/taskd$i.addr"
	fi
	p=$(cat "$T/taskd$i.port")
	a=$(cat "$T/taskd$i.addr")
	# Each taskd has its own API token; the manager's pushes carry the agent token, which taskd
	# also accepts (docs/protocol-cluster.md).
	[ -f "$T/taskd$i.token" ] || { hex >"$T/taskd$i.token"; chmod 0600 "$T/taskd$i.token"; }
	cat >"$T/taskd$i/taskd.conf" <<CONF
state_dir = $T/taskd$i
listen = $a:$p
advertise_url = http://$a:$p
token_file = $T/taskd$i.token
manager_url = $U
manager_token_file = $T/agent.token
host_id = worker-$i
zone = us-east-1
cgroup_parent = $CG-$i
heartbeat_interval_s = 1
CONF
	spawn_in "h$i" "$TASKD" --config "$T/taskd$i/taskd.conf" >>"$T/taskd$i.log" 2>&1 &
	echo $! >"$T/taskd$i.pid"
	wait_for "in_ns h$i curl -sf http://$a:$p/healthz >/dev/null" 10
}
for i in 1 2 3; do
	check "taskd worker-$i starts" "start_taskd $i" "$(tail -5 "$T/taskd$i.log" 2>/dev/null)"
done
ready_hosts() { api GET /v1/hosts | py "print(sum(1 for h in d['hosts'] if h['state']=='READY'))"; }
check "three hosts register by heartbeat" "wait_for '[ \"\$(ready_hosts)\" = 3 ]' 10" "$(api GET /v1/hosts)"

# ---- artifacts: program blobs uploaded to deployd's CAS and indexed ----
publish() { # publish COMMIT SCRIPT
	printf '%s' "$2" >"$T/blob-$1"
	h=$(sha256sum "$T/blob-$1" | cut -d' ' -f1)
	ctl curl -s -o /dev/null -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/blob-$1" "$U/cas/$h"
	api PUT "/v1/artifacts/app:web@$1" "{\"digest\":\"sha256:$h\",\"size\":$(stat -c %s "$T/blob-$1")}" >/dev/null
}
C1=1111111111111111111111111111111111111111
C2=2222222222222222222222222222222222222222
C3=3333333333333333333333333333333333333333
C5=5555555555555555555555555555555555555555
for v in 1 2 3 5; do
	eval "commit=\$C$v"
	publish "$commit" "#!/bin/sh
echo \"web v$v\"
exec sleep 1000
"
done
check "artifacts indexed" "api GET /v1/artifacts/app:web@$C5 | grep -q sha256:"

spec() { # spec COMMIT HEALTH_CMD
	printf '{"name":"web","target":"//app:web@%s","reqs":{"hosts":2,"vcpus":0.1,"memory_mb":32,"storage":{"size_mb":10}},"restart":{"policy":"on-failure","backoff_s":1,"max_backoff_s":2},"health":{"type":"exec","command":["/bin/sh","-c","%s"],"interval_s":1,"timeout_s":1,"failure_threshold":1},"stop_grace_s":1}' "$1" "$2"
}
state() { api GET /v1/jobs/us-east/us-east-1/web/state; }
field() { state | py "print(d$1)"; }
running_hosts() { # "host host" of desired RUNNING, RUNNING healthy tasks
	state | py "print(' '.join(sorted(t['host_id'] for t in d['tasks'] if t['desired']=='RUNNING' and t['state']=='RUNNING' and t['healthy'])))"
}
job_ok() { # job_ok VERSION: RUNNING, stable at VERSION, 2 healthy tasks of VERSION on distinct hosts
	s=$(state)
	echo "$s" | py "
ts=[t for t in d['tasks'] if t['desired']=='RUNNING' and t['state']=='RUNNING' and t['healthy'] and t['version']==$1]
assert d['state']=='RUNNING' and d['stable_version']==$1 and len(ts)==2 and len(set(t['host_id'] for t in ts))==2
print('ok')" | grep -q ok
}

# ---- deploy ----
out=$(api PUT "/v1/jobs/us-east/us-east-1/web?min_healthy_s=1" "$(spec $C1 true)")
check "PutJob v1 accepted" "echo '$out' | grep -q '\"version\": *1'" "$out"
check "v1: two healthy tasks on distinct hosts, job RUNNING" "wait_for 'job_ok 1' 60" "$(state)"

# ---- host loss ----
victim=$(running_hosts | cut -d' ' -f1)
vi=${victim#worker-}
kill -9 "$(cat "$T/taskd$vi.pid")"
[ "$NETNS" = 1 ] && ip netns del "$P-h$vi"
killed_at=$(date +%s)
lost() { api GET /v1/hosts/$victim | grep -q '"state": *"LOST"'; }
check "the killed host becomes LOST" "wait_for lost 10"
moved() { [ "$(running_hosts | grep -c "$victim")" = 0 ] && [ "$(running_hosts | wc -w)" = 2 ]; }
check "its task is rescheduled on another host and runs" "wait_for moved 30" "$(state)"
placed_at=$(api GET "/v1/events?after=0&limit=1000" | py "
import calendar,time
ev=[e for e in d['events'] if e['kind']=='task.placed' and e['data']['host_id']!='$victim']
print(calendar.timegm(time.strptime(ev[-1]['ts'][:19], '%Y-%m-%dT%H:%M:%S')))")
check "replacement placed within lost_after + 2 heartbeat intervals of the kill" \
	"[ \$((placed_at - killed_at)) -le 4 ]" "killed $killed_at placed $placed_at"
check "job back to RUNNING with 2 tasks" "wait_for 'job_ok 1' 30" "$(state)"
# The host comes back with its old task still running (tasks outlive taskd): it is stopped and
# deleted by the manager as an orphan.
start_taskd "$vi"
taskd_get() { # taskd_get I PATH
	in_ns "h$1" curl -s -m 5 -H "Authorization: Bearer $AGENT" "http://$(cat "$T/taskd$1.addr"):$(cat "$T/taskd$1.port")$2"
}
vtasks() { taskd_get "$vi" /v1/tasks | py "print(len([t for t in d['tasks'] if t['job']=='job://us-east/us-east-1/web']))"; }
check "the returning host's stale task is stopped and deleted" "wait_for '[ \"\$(vtasks)\" = 0 ]' 30" \
	"$(taskd_get "$vi" /v1/tasks)"
check "three hosts READY again" "wait_for '[ \"\$(ready_hosts)\" = 3 ]' 10"

# ---- rolling update to a healthy version: batch by batch ----
api PUT "/v1/jobs/us-east/us-east-1/web" "$(spec $C2 true)" >/dev/null
minup=2
i=0
while [ $i -lt 600 ]; do
	up=$(running_hosts | wc -w)
	[ "$up" -lt "$minup" ] && minup=$up
	job_ok 2 && break
	sleep 0.1
	i=$((i + 1))
done
check "rolling update to v2 completes" "job_ok 2" "$(state)"
check "never both tasks down during the update (max_unavailable 1)" "[ $minup -ge 1 ]" "min up $minup"
stops=$(api GET "/v1/events?after=0&limit=1000" | py "
ev=[e for e in d['events'] if e['kind']=='task.stop' and e['data'].get('why')=='rolling update' and e['data']['version']==1]
print(len(ev))")
check "one rolling-update stop per task (2 batches)" "[ '$stops' = 2 ]" "stops=$stops"

# ---- update whose health check fails: rolled back ----
api PUT "/v1/jobs/us-east/us-east-1/web" "$(spec $C3 false)" >/dev/null
rolled() { state | py "assert d['rollout']['state']=='rolled_back'; print('ok')" | grep -q ok; }
check "failing health check → rollout rolled back" "wait_for rolled 60" "$(state)"
check "rollback reason names the failure" "field \"['rollout']['reason']\" | grep -q 'rolled back from version 3'" "$(field "['rollout']")"
check "after the rollback: version 4 (the v2 spec) healthy on 2 hosts" "wait_for 'job_ok 4' 60" "$(state)"
check "the rolled-back spec is v2's artifact" "api GET /v1/jobs/us-east/us-east-1/web | grep -q '@$C2'"

# ---- kill -9 deployd in the middle of an update ----
api PUT "/v1/jobs/us-east/us-east-1/web" "$(spec $C5 true)" >/dev/null
first_stop() { api GET "/v1/events?after=0&limit=1000" | py "print(sum(1 for e in d['events'] if e['kind']=='task.stop' and e['data']['version']==4))" | grep -qv '^0$'; }
check "update to v5 started" "wait_for first_stop 30"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null
check "deployd restarts after kill -9" "start_deployd" "$(tail -5 "$T/deployd.log")"
check "the update resumes and finishes (v5 healthy on 2 hosts)" "wait_for 'job_ok 5' 90" "$(state)"

# ---- no task lost, none duplicated ----
host_tasks() { # every web task on every taskd, RUNNING: "task_id" lines
	for i in 1 2 3; do
		taskd_get "$i" /v1/tasks |
			py "print('\n'.join(t['task_id'] for t in d['tasks'] if t['job']=='job://us-east/us-east-1/web' and t['state']=='RUNNING'))"
	done | sort | grep -v '^$'
}
want=$(state | py "print('\n'.join(sorted(t['task_id'] for t in d['tasks'] if t['desired']=='RUNNING')))")
settled() { [ "$(host_tasks)" = "$want" ]; }
check "hosts run exactly the manager's tasks (no loss, no duplicate)" "wait_for settled 30" \
	"hosts: $(host_tasks | tr '\n' ' ') manager: $(echo "$want" | tr '\n' ' ')"

# ---- stop ----
api PUT /v1/jobs/us-east/us-east-1/web/state '{"state":"DONE"}' >/dev/null
check "SetJobState DONE → job DONE" "wait_for '[ \"\$(field \"[\\\"state\\\"]\")\" = DONE ]' 30" "$(state)"
gone() { [ -z "$(host_tasks)" ] && [ "$(for i in 1 2 3; do taskd_get "$i" /v1/tasks | py "print(len([t for t in d['tasks'] if t['job']=='job://us-east/us-east-1/web']))"; done | awk "{s+=\$1} END {print s+0}")" = 0 ]; }
check "every task deleted from the hosts" "wait_for gone 30"

tap_end
