#!/bin/sh
# Scale smoke test of deployd's cluster manager (TAP): one deployd and a simulator of many hosts
# in one python3 process speaking the taskd side of docs/protocol-cluster.md (heartbeats,
# PutTask → RUNNING notifications, SetTaskState, DELETE) with no real processes. Every host is a
# path prefix on the simulator's one port (addr http://127.0.0.1:P/hN). Measures the time until
# every job is RUNNING, a rolling update of every job, and deployd's RSS; the sizes are small
# enough for `make check` (SCALE_HOSTS, SCALE_JOBS, SCALE_TASKS_PER_JOB override them).
set -u
BUILD=${BUILD:-build}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
HOSTS=${SCALE_HOSTS:-100}
JOBS=${SCALE_JOBS:-50}
PER_JOB=${SCALE_TASKS_PER_JOB:-10}
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }

if [ ! -x "$DEPLOYD" ]; then echo "1..0 # SKIP $DEPLOYD not built"; exit 77; fi
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 missing"; exit 77; }

T=$(mktemp -d /tmp/cd-central-scale.XXXXXX)
DPID=
SPID=
cleanup() {
	[ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
	[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT INT TERM
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
ADMIN=$(hex)
AGENT=$(hex)
printf 'admin %s\nagent %s\n' "$ADMIN" "$AGENT" >"$T/tokens"
chmod 0600 "$T/tokens"
PORT=$(free_port)
SPORT=$(free_port)
U="http://127.0.0.1:$PORT"
cat >"$T/deployd.conf" <<CONF
tick_interval_ms = 500
heartbeat_interval_s = 2
lost_after = 5
threads = 64
CONF
"$DEPLOYD" --config "$T/deployd.conf" --role cluster --region us-east --zone us-east-1 \
	--state-dir "$T/state" --listen "127.0.0.1:$PORT" --token-file "$T/tokens" \
	--log-level warn >"$T/deployd.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do curl -sf "$U/readyz" >/dev/null && break; sleep 0.1; done
check "deployd ready" "curl -sf $U/readyz >/dev/null" "$(tail -5 "$T/deployd.log")"

python3 "$(dirname "$0")/hostsim.py" "$SPORT" "$PORT" "$AGENT" "$HOSTS" >"$T/sim.log" 2>&1 &
SPID=$!
ready_hosts() {
	curl -s -H "Authorization: Bearer $ADMIN" "$U/v1/hosts?page_size=1000" |
		python3 -c "import json,sys; print(sum(1 for h in json.load(sys.stdin)['hosts'] if h['state']=='READY'))" 2>/dev/null
}
for _ in $(seq 100); do [ "$(ready_hosts)" = "$HOSTS" ] && break; sleep 0.2; done
check "$HOSTS simulated hosts registered" "[ \"\$(ready_hosts)\" = $HOSTS ]" "$(ready_hosts) $(tail -2 "$T/sim.log")"

put_jobs() { # put_jobs ENV_VALUE
	python3 - "$U" "$ADMIN" "$JOBS" "$PER_JOB" "$1" <<'PY'
import json, sys, http.client, urllib.parse
u, tok, jobs, per, v = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
p = urllib.parse.urlparse(u)
c = http.client.HTTPConnection(p.hostname, p.port, timeout=30)
for i in range(jobs):
    spec = {"name": "job%d" % i, "target": "//sim:job%d" % i,
            "reqs": {"hosts": per, "vcpus": 0.1, "memory_mb": 16, "storage": {"size_mb": 1}},
            "env": {"V": v}}
    c.request("PUT", "/v1/jobs/us-east/us-east-1/job%d?max_unavailable=%d" % (i, max(1, per // 2)),
              json.dumps(spec), {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status not in (200, 201):
        sys.exit("PutJob job%d: %d" % (i, r.status))
PY
}
all_state() { # all_state VERSION → prints how many jobs are RUNNING and stable at VERSION
	curl -s -H "Authorization: Bearer $ADMIN" "$U/v1/jobs?zone=us-east-1&page_size=1000" |
		python3 -c "
import json,sys,urllib.request
d=json.load(sys.stdin)
print(sum(1 for j in d['jobs'] if j['state']=='RUNNING' and j['version']==$1))" 2>/dev/null
}
stable() { # stable VERSION: every job RUNNING at VERSION with its rollout done
	[ "$(all_state "$1")" = "$JOBS" ] || return 1
	curl -s -H "Authorization: Bearer $ADMIN" "$U/metrics" | grep -q "deployd_jobs{zone=\"us-east-1\",state=\"RUNNING\"} $JOBS"
}
TOTAL=$((JOBS * PER_JOB))
start=$(date +%s%N)
put_jobs v1
check "PutJob of $JOBS jobs x $PER_JOB tasks" "[ $? = 0 ]"
for _ in $(seq 1200); do stable 1 && break; sleep 0.1; done
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
check "all $TOTAL tasks RUNNING on $HOSTS hosts (took ${ms} ms)" "stable 1" "$(all_state 1) of $JOBS; $(tail -1 "$T/sim.log")"
echo "# scale: $TOTAL tasks on $HOSTS hosts RUNNING in ${ms} ms"

start=$(date +%s%N)
put_jobs v2
for _ in $(seq 1800); do
	[ "$(curl -s -H "Authorization: Bearer $ADMIN" "$U/v1/jobs?zone=us-east-1&page_size=1000" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(sum(1 for j in d['jobs'] if j['version']==2 and j['state']=='RUNNING' and not j['reason']))" 2>/dev/null)" = "$JOBS" ] && break
	sleep 0.1
done
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
rolled=$(curl -s -H "Authorization: Bearer $ADMIN" "$U/v1/jobs?zone=us-east-1&page_size=1000" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(sum(1 for j in d['jobs'] if j['version']==2 and j['state']=='RUNNING' and not j['reason']))" 2>/dev/null)
check "rolling update of every job completes (took ${ms} ms)" "[ '$rolled' = $JOBS ]" "$rolled of $JOBS; $(tail -1 "$T/sim.log")"
echo "# scale: rolling update of $TOTAL tasks in ${ms} ms"
live=$(tail -1 "$T/sim.log" | python3 -c "import json,sys; print(json.load(sys.stdin)['tasks'])")
check "simulated hosts hold exactly $TOTAL tasks (old ones deleted, none duplicated)" \
	"wait_ok=0; for _ in \$(seq 50); do live=\$(tail -1 $T/sim.log | python3 -c \"import json,sys; print(json.load(sys.stdin)['tasks'])\"); [ \"\$live\" = $TOTAL ] && break; sleep 0.2; done; [ \"\$live\" = $TOTAL ]" \
	"hosts hold $live"
rss=$(awk '/VmRSS/{print $2}' "/proc/$DPID/status")
echo "# scale: deployd RSS ${rss} kB"
check "deployd RSS below 200 MB" "[ $rss -lt 204800 ]" "rss=$rss kB"
echo "1..$n"
exit $fail
