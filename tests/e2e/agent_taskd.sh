#!/bin/sh
# End-to-end test of taskd + taskd-shim + taskctl as root (TAP): a real taskd on a loopback port
# with its own state dir and cgroup parent, artifacts served by a private nginx, real sandboxed
# tasks. Covers the CLI contract, auth, exit reasons (exited 0/3, signaled, oom_killed,
# fetch_failed, start_failed, health_failed), restart backoff, stop with grace, logs (tail,
# rotation), the token being masked from a root task on the host network, kill -9 of taskd with
# re-adoption (same pids, nothing duplicated, exit status of a task that ended while taskd was
# down), bad input (422 with every field, 404, 413, 401) and cleanup (no cgroup, no shim left).
set -u
. "$(dirname "$0")/lib.sh"
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

need_root
need_exec "$TASKD" "$SHIM" "$TASKCTL"
[ -x "$NGINX" ] || skip_all "nginx not installed"

# Not under /tmp: tasks get a private /tmp, so only a host path shows that masking works.
e2e_init agent-e2e /var/tmp
STATE=$T/state
CG=codedeploy-agent-e2e-$$
TASKD_PID=
NGINX_PID=
WATCH_PID=
IDLE_PID=
E2E_PID_VARS="TASKD_PID NGINX_PID WATCH_PID IDLE_PID"
E2E_STATE_DIRS=$STATE
E2E_CGROUPS=$CG

jget() { # jget JSON-TEXT PY-EXPR  (d is the parsed document)
	python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1" 2>/dev/null
}

# ---------------------------------------------------------------- CLI contract
"$TASKD" --help >"$T/out" 2>&1
check "taskd --help exits 0 and documents --state-dir" "[ $? = 0 ] && grep -q -- --state-dir '$T/out'"
v=$("$TASKD" --version 2>&1)
check "taskd --version" "echo '$v' | grep -q '^taskd [0-9]'"
"$TASKD" --bogus >"$T/out" 2>"$T/err"
rc=$?
check "taskd: unknown flag → exit 2 with one line" "[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ]" "rc=$rc"
"$TASKD" --config /dev/null --listen 0.0.0.0:7411 >"$T/out" 2>"$T/err"
rc=$?
check "taskd: non-loopback listen without --token-file → exit 2" \
	"[ $rc = 2 ] && grep -q token-file '$T/err'" "rc=$rc $(cat "$T/err")"
"$TASKCTL" frobnicate >"$T/out" 2>"$T/err"
rc=$?
check "taskctl: unknown verb → exit 2 with one line" "[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ]"
"$TASKCTL" logs --help >"$T/out" 2>&1
check "taskctl logs --help" "[ $? = 0 ] && grep -q -- '--tail' '$T/out'"

# ---------------------------------------------------------------- nginx with artifacts
mkdir -p "$T/www/cas" "$T/ngx/tmp"
printf '#!/bin/sh\necho "hello from the artifact: $0"\nls /app\n' >"$T/hello"
HELLO_HEX=$(sha256sum "$T/hello" | cut -d' ' -f1)
cp "$T/hello" "$T/www/cas/$HELLO_HEX"
for try in 1 2 3 4 5; do
	NPORT=$(free_port)
	cat >"$T/ngx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $T/ngx/nginx.pid;
error_log $T/ngx/error.log warn;
events { worker_connections 64; }
http {
	access_log $T/ngx/access.log;
	client_body_temp_path $T/ngx/tmp/body;
	proxy_temp_path $T/ngx/tmp/proxy;
	fastcgi_temp_path $T/ngx/tmp/fastcgi;
	uwsgi_temp_path $T/ngx/tmp/uwsgi;
	scgi_temp_path $T/ngx/tmp/scgi;
	server { listen 127.0.0.1:$NPORT; root $T/www; }
}
CONF
	"$NGINX" -p "$T/ngx" -c "$T/ngx/nginx.conf" -e "$T/ngx/error.log" 2>/dev/null &
	NGINX_PID=$!
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$NPORT/" && break
		sleep 0.1
	done
	curl -s -o /dev/null "http://127.0.0.1:$NPORT/" && break
	kill "$NGINX_PID" 2>/dev/null
	wait "$NGINX_PID" 2>/dev/null
	NGINX_PID=
done
MIRROR=http://127.0.0.1:$NPORT

# ---------------------------------------------------------------- taskd
PORT=$(free_port)
cat >"$T/taskd.conf" <<CONF
cgroup_parent = $CG
log_max_bytes = 4096
log_keep = 2
log_line_max = 200
restart_reset_s = 30
CONF
start_taskd() { e2e_start_taskd "$PORT" "$STATE" "$T/taskd.conf" "$T/taskd.log" --host-id e2e; }
start_taskd
check "taskd starts and answers /healthz" "curl -sf http://127.0.0.1:$PORT/healthz >/dev/null"
"$TASKD" --config "$T/taskd.conf" --state-dir "$STATE" --listen "127.0.0.1:$(free_port)" \
	>"$T/second.log" 2>&1
rc=$?
check "a second taskd on the same state dir refuses to start" \
	"[ $rc = 1 ] && grep -q 'another taskd' '$T/second.log'" "rc=$rc"
check "token created 0600 in the state dir" "[ \$(stat -c %a '$STATE/taskd.token') = 600 ]"
TOKEN=$(cat "$STATE/taskd.token")
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/tasks")
check "no token → 401" "[ '$code' = 401 ]" "got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope" \
	"http://127.0.0.1:$PORT/v1/tasks")
check "wrong token → 401" "[ '$code' = 401 ]" "got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/nothing")
code2=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/v1/tasks")
check "unknown path or method without a token → 401 (nothing is open but /healthz)" \
	"[ '$code' = 401 ] && [ '$code2' = 401 ]" "got $code $code2"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/nothing")
code2=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/tasks")
check "with the token: unknown path → 404, wrong method → 405" \
	"[ '$code' = 404 ] && [ '$code2' = 405 ]" "got $code $code2"
C="$TASKCTL --host http://127.0.0.1:$PORT --token-file $STATE/taskd.token"
# Two watchers of the event log run through the whole test, taskd's kill -9 included: one from
# the start, one after any event there will be, which only ever long-polls (30 s at a time).
$C -o json events -w >"$T/watch.jsonl" 2>"$T/watch.err" &
WATCH_PID=$!
$C events -w --after 1000000000 >"$T/idle.out" 2>"$T/idle.err" &
IDLE_PID=$!
idle_since=$(date +%s)
api() { # api METHOD PATH [BODY-FILE] → body on stdout, status in $T/status
	if [ $# -gt 2 ]; then
		curl -s -o "$T/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN" \
			-H 'Content-Type: application/json' --data-binary "@$3" \
			"http://127.0.0.1:$PORT$2" >"$T/status"
	else
		curl -s -o "$T/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN" \
			"http://127.0.0.1:$PORT$2" >"$T/status"
	fi
	cat "$T/body"
}

# put NAME SPEC-JSON-REST → prints the task id
put() {
	printf '{"name":"%s","target":"//e2e:%s",%s}' "$1" "$1" "$2" >"$T/spec-$1.json"
	$C -o json put -f "$T/spec-$1.json" --job "job://e2e/e2e-1/$1" 2>"$T/put.err" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])' 2>/dev/null
}
task_json() { $C -o json get "$1" 2>/dev/null; }
field() { jget "$(task_json "$1")" "d.get('$2')"; }
# wait_for ID STATE [REASON] [SECONDS]
wait_for() {
	i=0
	lim=$(( ${4:-20} * 10 ))
	while [ $i -lt $lim ]; do
		j=$(task_json "$1")
		s=$(jget "$j" "d['state']")
		r=$(jget "$j" "d['reason']")
		if [ "$s" = "$2" ] && { [ -z "${3:-}" ] || [ "$r" = "$3" ]; }; then return 0; fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "# $1: state=$s reason=$r (wanted $2 ${3:-})"
	return 1
}

# ---------------------------------------------------------------- exit reasons
t_ok=$(put ok '"command":["/bin/sh","-c","echo out; echo err >&2; exit 0"],"restart":{"policy":"never"}')
check "exit 0 → DONE exited" "wait_for '$t_ok' DONE exited"
check "exit 0 → exit_code 0" "[ \"\$(field '$t_ok' exit_code)\" = 0 ]"
check_no_leaks "taskctl put frees what it allocated (valgrind)" "$T/vg-put.log" \
	$C put -f "$T/spec-ok.json" --job job://e2e/e2e-1/vg
check_no_leaks "taskctl stop frees what it allocated (valgrind)" "$T/vg-stop.log" $C stop "$t_ok"
t_3=$(put three '"command":["/bin/sh","-c","exit 3"],"restart":{"policy":"never"}')
check "exit 3 → ERROR exited" "wait_for '$t_3' ERROR exited"
check "exit 3 → exit_code 3" "[ \"\$(field '$t_3' exit_code)\" = 3 ]"
t_k=$(put killed '"command":["/bin/sh","-c","sleep 0.2; kill -9 $$"],"restart":{"policy":"never"}')
check "kill -9 → ERROR signaled 9" \
	"wait_for '$t_k' ERROR signaled && [ \"\$(field '$t_k' signal)\" = 9 ]"
if grep -q 'process_events=bpf' "$T/taskd.log"; then
	check "eBPF names the sender of the fatal signal" \
		"field '$t_k' message | grep -q 'signal 9 sent by pid [0-9]* (sh)'" \
		"$(field "$t_k" message)"
else
	skip "eBPF names the sender of the fatal signal" "BPF unavailable"
fi
t_oom=$(put oom '"command":["/bin/sh","-c","tail /dev/zero"],"reqs":{"memory_mb":32},"restart":{"policy":"never"}')
check "memory limit → ERROR oom_killed" "wait_for '$t_oom' ERROR oom_killed 30"
met=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics")
check "/metrics counts the OOM kill" "echo '$met' | grep -q '^taskd_task_oom_kills_total 1$'"
t_bad=$(put nocmd '"command":["/nonexistent/binary"],"restart":{"policy":"never"}')
check "missing binary → ERROR start_failed with a message" \
	"wait_for '$t_bad' ERROR start_failed && field '$t_bad' message | grep -q nonexistent"

# ---------------------------------------------------------------- artifacts
t_art=$(put hello "\"restart\":{\"policy\":\"never\"}" )
# (no artifact: the default command /app/hello cannot exist)
check "no artifact, default /app command → start_failed" "wait_for '$t_art' ERROR start_failed"
printf '{"job":"job://e2e/e2e-1/art","spec":{"name":"art","target":"//e2e:hello","restart":{"policy":"never"}},"artifact":{"digest":"sha256:%s","mirrors":["%s"]}}' \
	"$HELLO_HEX" "$MIRROR" >"$T/put-art.json"
out=$(api PUT /v1/tasks "$T/put-art.json")
t_art=$(jget "$out" "d['task_id']")
check "PutTask with an artifact → 201" "[ \"\$(cat '$T/status')\" = 201 ]" "$out"
check "artifact fetched from the mirror and run read-only at /app → DONE exited" \
	"wait_for '$t_art' DONE exited"
check "artifact task log shows it ran from /app" \
	"$C logs '$t_art' | grep -q 'hello from the artifact: /app/hello'"
mkdir -p "$T/arch/bin"
printf '#!/bin/sh\necho archive-ok\nif touch /app/x 2>/dev/null; then echo WRITABLE; else echo app-read-only; fi\n' \
	>"$T/arch/bin/run.sh"
chmod 755 "$T/arch/bin/run.sh"
tar -C "$T/arch" -czf "$T/arch.tgz" bin
ARCH_HEX=$(sha256sum "$T/arch.tgz" | cut -d' ' -f1)
cp "$T/arch.tgz" "$T/www/cas/$ARCH_HEX"
printf '{"job":"job://e2e/e2e-1/tgz","spec":{"name":"tgz","target":"//e2e:tgz","command":["/app/bin/run.sh"],"restart":{"policy":"never"}},"artifact":{"digest":"sha256:%s","mirrors":["%s/nothere","%s"]}}' \
	"$ARCH_HEX" "$MIRROR" "$MIRROR" >"$T/put-tgz.json"
t_tgz=$(jget "$(api PUT /v1/tasks "$T/put-tgz.json")" "d['task_id']")
check "tar.gz artifact (second mirror) unpacked, run from /app, /app read-only" \
	"wait_for '$t_tgz' DONE exited && $C logs '$t_tgz' | grep -q archive-ok && $C logs '$t_tgz' | grep -q app-read-only" \
	"$($C logs "$t_tgz" 2>&1 | tr '\n' ' ')"
out=$(api PUT /v1/tasks "$T/put-art.json")
check "PutTask replay without request_id makes a new task (201)" \
	"[ \"\$(cat '$T/status')\" = 201 ]"
t_art2=$(jget "$out" "d['task_id']")
printf '{"request_id":"req-e2e-1","job":"job://e2e/e2e-1/missing","spec":{"name":"missing","target":"//e2e:x","restart":{"policy":"never"}},"artifact":{"digest":"sha256:%064d","mirrors":["%s"]}}' \
	0 "$MIRROR" >"$T/put-missing.json"
out=$(api PUT /v1/tasks "$T/put-missing.json")
t_miss=$(jget "$out" "d['task_id']")
check "digest on no mirror → ERROR fetch_failed with a message" \
	"wait_for '$t_miss' ERROR fetch_failed && [ -n \"\$(field '$t_miss' message)\" ]"
out=$(api PUT /v1/tasks "$T/put-missing.json")
check "PutTask is idempotent on request_id (200, same task)" \
	"[ \"\$(cat '$T/status')\" = 200 ] && [ \"\$(jget '$out' \"d['task_id']\")\" = '$t_miss' ]"

# ---------------------------------------------------------------- bad input
printf '{"job":"nope","index":-1,"spec":{"name":"Bad Name","reqs":{"vcpus":-1}}}' >"$T/bad.json"
out=$(api PUT /v1/tasks "$T/bad.json")
check "invalid PutTask → 422 listing every field" \
	"[ \"\$(cat '$T/status')\" = 422 ] && echo '$out' | grep -q '/job' && echo '$out' | grep -q '/index' && echo '$out' | grep -q '/spec/name' && echo '$out' | grep -q '/spec/reqs/vcpus'" \
	"$out"
api GET /v1/tasks/doesnotexist >/dev/null
check "unknown task → 404" "[ \"\$(cat '$T/status')\" = 404 ]"
$C get doesnotexist >/dev/null 2>&1
check "taskctl get unknown → exit 3" "[ $? = 3 ]"
head -c 2000000 /dev/zero | tr '\0' ' ' >"$T/big.json"
api PUT /v1/tasks "$T/big.json" >/dev/null
check "oversized body → 413" "[ \"\$(cat '$T/status')\" = 413 ]" "got $(cat "$T/status")"
printf '{"state":"PAUSED"}' >"$T/st.json"
api PUT "/v1/tasks/$t_ok/state" "$T/st.json" >/dev/null
check "SetTaskState with a bad state → 422" "[ \"\$(cat '$T/status')\" = 422 ]"

# ---------------------------------------------------------------- restart backoff
t_rs=$(put crash '"command":["/bin/sh","-c","exit 7"],"restart":{"policy":"on-failure","backoff_s":1,"max_backoff_s":4}')
sleep 4.5
msgs=$($C -o json events | python3 -c "
import json,sys
for l in sys.stdin:
    e=json.loads(l)
    if e['task_id']=='$t_rs' and e['type']=='restarting': print(e['data']['message'])")
check "on-failure restarts with growing backoff (1s, 2s, ...)" \
	"echo '$msgs' | head -1 | grep -q 'restart in 1.0s after exited (exit code 7)' && echo '$msgs' | sed -n 2p | grep -q 'restart in 2.0s'" \
	"$msgs"
check "restart count grows" "[ \"\$(field '$t_rs' restarts)\" -ge 2 ]"
$C stop "$t_rs" >/dev/null
check "stop during backoff → DONE stopped" "wait_for '$t_rs' DONE stopped"

# ---------------------------------------------------------------- stop with grace
t_term=$(put term '"command":["/bin/sh","-c","trap \"echo bye; exit 0\" TERM; echo up; while :; do sleep 0.05; done"],"stop_grace_s":10')
wait_for "$t_term" RUNNING >/dev/null
sleep 0.3
start=$(date +%s%N)
$C stop "$t_term" >/dev/null
wait_for "$t_term" DONE stopped >/dev/null
el=$(( ($(date +%s%N) - start) / 1000000 ))
check "SIGTERM-handling task stops at once (< 3 s, not the 10 s grace)" "[ $el -lt 3000 ]" "${el} ms"
check "its log has the handler's output" "$C logs '$t_term' | grep -q bye"
t_ign=$(put ignore '"command":["/bin/sh","-c","trap \"\" TERM; while :; do sleep 0.05; done"],"stop_grace_s":1')
wait_for "$t_ign" RUNNING >/dev/null
start=$(date +%s%N)
$C stop "$t_ign" >/dev/null
wait_for "$t_ign" DONE stopped >/dev/null
el=$(( ($(date +%s%N) - start) / 1000000 ))
check "TERM-ignoring task is killed after its 1 s grace" "[ $el -ge 900 ] && [ $el -lt 5000 ]" "${el} ms"
$C start "$t_ign" >/dev/null
check "start a stopped task → RUNNING again" "wait_for '$t_ign' RUNNING"
$C stop "$t_ign" >/dev/null
wait_for "$t_ign" DONE stopped >/dev/null

# ---------------------------------------------------------------- health
t_h=$(put health '"command":["/bin/sh","-c","sleep 60"],"health":{"type":"tcp","port":9,"interval_s":1,"timeout_s":1,"failure_threshold":2},"restart":{"policy":"never"},"stop_grace_s":1')
check "failing TCP health check → ERROR health_failed with a message" "wait_for '$t_h' ERROR health_failed 15 && field '$t_h' message | grep -q 'health check failed 2 times'"
t_hr=$(put healthr '"command":["/bin/sh","-c","exec sleep 60"],"health":{"type":"tcp","port":9,"interval_s":1,"timeout_s":1,"failure_threshold":1},"restart":{"policy":"on-failure","backoff_s":1,"max_backoff_s":1},"stop_grace_s":1')
i=0
while [ $i -lt 100 ] && ! field "$t_hr" message | grep -q 'after health_failed'; do
	sleep 0.1
	i=$((i + 1))
done
check "failing health check with on-failure → restarted (restarting after health_failed)" \
	"field '$t_hr' message | grep -q 'after health_failed'" "$(field "$t_hr" message)"
$C stop "$t_hr" >/dev/null
wait_for "$t_hr" DONE stopped >/dev/null
t_hx=$(put healthx '"command":["/bin/sh","-c","sleep 60"],"health":{"type":"exec","command":["/bin/true"],"interval_s":1,"timeout_s":1,"failure_threshold":1},"stop_grace_s":1')
wait_for "$t_hx" RUNNING >/dev/null
i=0
while [ $i -lt 40 ] && [ "$(field "$t_hx" healthy)" != True ]; do sleep 0.1; i=$((i + 1)); done
check "passing exec health check → healthy" "[ \"\$(field '$t_hx' healthy)\" = True ]"
# An exec probe runs inside the task with exactly its confinement (sandbox_exec): it writes what
# it sees into the task's private /task, the task prints that to its log.
t_hc=$(put healthconf '"command":["/bin/sh","-c","echo task-pidns=$(readlink /proc/self/ns/pid); while [ ! -s /task/probe.out ]; do sleep 0.1; done; cat /task/probe.out; exec sleep 60"],"health":{"type":"exec","command":["/bin/sh","-c","{ grep -E \"^(CapEff|CapBnd|Seccomp|NoNewPrivs):\" /proc/self/status; echo probe-pidns=$(readlink /proc/self/ns/pid); echo probe-pid=$$; echo probe-pid1=$(cat /proc/1/comm); } >/task/probe.tmp && mv /task/probe.tmp /task/probe.out"],"interval_s":2,"timeout_s":2,"failure_threshold":3},"stop_grace_s":1')
i=0
while [ $i -lt 100 ] && ! $C logs "$t_hc" 2>/dev/null | grep -q '^probe-pid1='; do sleep 0.1; i=$((i + 1)); done
pl=$($C logs "$t_hc" 2>&1)
check "exec probe has no capabilities (CapEff 0, CapBnd 0)" \
	"echo '$pl' | grep -q '^CapEff:[[:space:]]*0000000000000000$' && echo '$pl' | grep -q '^CapBnd:[[:space:]]*0000000000000000$'" "$pl"
check "exec probe runs under the task's seccomp filter with no_new_privs" \
	"echo '$pl' | grep -q '^Seccomp:[[:space:]]*2$' && echo '$pl' | grep -q '^NoNewPrivs:[[:space:]]*1$'" "$pl"
tpidns=$(echo "$pl" | sed -n 's/^task-pidns=//p')
check "exec probe is in the task's pid namespace (same ns, small pid, pid 1 is the task's init)" \
	"[ -n '$tpidns' ] && echo '$pl' | grep -qxF 'probe-pidns=$tpidns' && [ '$tpidns' != \"\$(readlink /proc/self/ns/pid)\" ] && [ \"\$(echo '$pl' | sed -n 's/^probe-pid=//p')\" -lt 100 ] && echo '$pl' | grep -qx 'probe-pid1=sandbox-init'" \
	"$pl"
check "confined exec probe passes → healthy" "[ \"\$(field '$t_hc' healthy)\" = True ]"
$C stop "$t_hc" >/dev/null
wait_for "$t_hc" DONE stopped >/dev/null
# A probe that outlives timeout_s is stopped with everything it forked inside the task, and
# counts as a failure; threshold reached → health_failed naming the timeout.
t_ht=$(put healthto '"command":["/bin/sh","-c","exec sleep 60"],"health":{"type":"exec","command":["/bin/sh","-c","sleep 30 & exec sleep 31"],"interval_s":4,"timeout_s":1,"failure_threshold":2},"restart":{"policy":"never"},"stop_grace_s":1')
wait_for "$t_ht" RUNNING >/dev/null
hf() { curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" | sed -n 's/^taskd_health_check_failures_total //p'; }
f0=$(hf)
i=0
while [ $i -lt 100 ] && [ "$(hf)" = "$f0" ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
procs=$(cat /sys/fs/cgroup/unified/$CG/$t_ht-*/cgroup.procs 2>/dev/null | wc -l)
check "timed-out exec probe: its process group is gone from the task (init + command left)" \
	"[ \"\$(hf)\" != '$f0' ] && [ '$procs' = 2 ]" "failures $f0 → $(hf), procs=$procs"
check "timed-out exec probes → ERROR health_failed naming the timeout" \
	"wait_for '$t_ht' ERROR health_failed 15 && field '$t_ht' message | grep -q 'failed 2 times in a row: timed out after 1s'" \
	"$(field "$t_ht" message)"
t_hn=$(put healthnx '"command":["/bin/sh","-c","exec sleep 60"],"health":{"type":"exec","command":["/no/such/probe"],"interval_s":1,"timeout_s":1,"failure_threshold":1},"restart":{"policy":"never"},"stop_grace_s":1')
check "exec probe that cannot start → health_failed with the exec error" \
	"wait_for '$t_hn' ERROR health_failed 15 && field '$t_hn' message | grep -q '/no/such/probe: No such file or directory'" \
	"$(field "$t_hn" message)"
# an HTTP server on the task's own loopback (net none): the probe joins its network namespace
t_hh=$(put healthh '"command":["/usr/bin/python3","-m","http.server","8080","--bind","127.0.0.1"],"health":{"type":"http","port":8080,"path":"/","interval_s":1,"timeout_s":1,"failure_threshold":3},"stop_grace_s":1')
i=0
while [ $i -lt 100 ] && [ "$(field "$t_hh" healthy)" != True ]; do sleep 0.1; i=$((i + 1)); done
check "HTTP health check inside the task's network namespace → healthy" \
	"[ \"\$(field '$t_hh' healthy)\" = True ]" "$(field "$t_hh" state) $(field "$t_hh" message)"
$C stop "$t_hh" >/dev/null
wait_for "$t_hh" DONE stopped >/dev/null

# ---------------------------------------------------------------- logs
t_log=$(put logs '"command":["/bin/sh","-c","i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; head -c 1000 /dev/zero | tr \"\\\\0\" a; echo"],"restart":{"policy":"never"}')
wait_for "$t_log" DONE exited >/dev/null
check "logs rotate at log_max_bytes keeping log_keep files" \
	"[ -f '$STATE/tasks/$t_log/console.log.1' ] && [ -f '$STATE/tasks/$t_log/console.log.2' ] && [ ! -f '$STATE/tasks/$t_log/console.log.3' ] && [ \$(stat -c %s '$STATE/tasks/$t_log/console.log') -le 4096 ]"
# the log ends with line-399 and then 1000 'a's split into 6 lines of at most 199
check "logs --tail N gives the last N lines" \
	"[ \"\$($C logs --tail 3 '$t_log' | wc -l)\" = 3 ] && $C logs --tail 7 '$t_log' | head -1 | grep -q line-399"
check "an over-long line is split at log_line_max" \
	"[ \"\$($C logs --tail 6 '$t_log' | grep -c '^aaaa')\" -ge 5 ] && [ \"\$($C logs --tail 6 '$t_log' | awk '{ if (length(\$0) > 199) bad=1 } END { print bad+0 }')\" = 0 ]"
t_f=$(put follow '"command":["/bin/sh","-c","for i in 1 2 3; do echo tick-$i; sleep 0.3; done"],"restart":{"policy":"never"}')
fl=$(timeout 10 $C logs -f "$t_f")
check "logs -f streams until the task ends" "echo '$fl' | grep -q tick-3"
# 300 lines of ~40 bytes written over ~1.5 s cross three rotations (log_max_bytes 4096):
# a follower keeps every line, in order
t_fr=$(put followrot '"command":["/bin/sh","-c","i=0; while [ $i -lt 300 ]; do echo fr-$i-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy; i=$((i+1)); [ $((i % 20)) = 0 ] && sleep 0.1; done"],"restart":{"policy":"never"}')
timeout 20 $C logs -f "$t_fr" >"$T/follow.out"
check "logs -f follows across rotations without losing or reordering lines" \
	"[ \"\$(grep -c '^fr-' '$T/follow.out')\" = 300 ] && grep '^fr-' '$T/follow.out' | cut -d- -f2 | awk '{ if (\$1 != NR - 1) bad = 1 } END { exit bad }'" \
	"$(grep -c '^fr-' "$T/follow.out") lines"

# ---------------------------------------------------------------- masking
cat >"$T/spec-mask.json" <<EOF
{"name":"mask","target":"//e2e:mask","reqs":{"networking":{"mode":"host"}},"restart":{"policy":"never"},
 "command":["/bin/sh","-c","cat $STATE/taskd.token && echo LEAKED; curl -s -o /dev/null -w 'code=%{http_code}\\\\n' http://127.0.0.1:$PORT/v1/tasks"]}
EOF
t_m=$($C -o json put -f "$T/spec-mask.json" --job job://e2e/e2e-1/mask |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
wait_for "$t_m" DONE exited >/dev/null
ml=$($C logs "$t_m")
check "root task on the host network gets 401 from taskd" "echo '$ml' | grep -q 'code=401'" "$ml"
check "root task cannot read taskd's token (state dir masked)" \
	"! echo '$ml' | grep -q LEAKED && ! echo '$ml' | grep -q '$TOKEN'" "$ml"

# ---------------------------------------------------------------- kill -9 taskd, re-adopt
t_run=$(put runner '"command":["/bin/sh","-c","echo started; exec sleep 1000"],"stop_grace_s":1')
t_end=$(put ender '"command":["/bin/sh","-c","sleep 1.5; exit 5"],"restart":{"policy":"never"}')
wait_for "$t_run" RUNNING >/dev/null
wait_for "$t_end" RUNNING >/dev/null
pid_before=$(field "$t_run" pid)
check "task runs in its own pid, mount, uts, ipc and net namespaces" \
	"( for ns in pid mnt uts ipc net; do [ \"\$(readlink /proc/$pid_before/ns/\$ns)\" != \"\$(readlink /proc/self/ns/\$ns)\" ] || exit 1; done )"
check "the task's pid 1 is the exec'd sandbox-init (no copy of the shim's memory)" \
	"[ \"\$(cat /proc/$pid_before/comm)\" = sandbox-init ]" "$(cat /proc/$pid_before/comm)"
check "task runs in its own cgroup under cgroup_parent (memory and unified)" \
	"grep -q ':memory:/$CG/$t_run-' /proc/$pid_before/cgroup && grep -q '^0::/$CG/$t_run-' /proc/$pid_before/cgroup"
check "GetTaskState reports cgroup usage" \
	"[ \"\$(jget \"\$(task_json '$t_run')\" \"d['usage']['pids']\")\" -ge 1 ]"
kill -9 "$TASKD_PID"
wait "$TASKD_PID" 2>/dev/null
TASKD_PID=
sleep 2 # t_end exits while taskd is down
check "tasks keep running while taskd is down" "kill -0 '$pid_before' 2>/dev/null"
start_taskd
check "taskd restarts after kill -9" "curl -sf http://127.0.0.1:$PORT/healthz >/dev/null"
check "running task re-adopted with the same pid" \
	"wait_for '$t_run' RUNNING && [ \"\$(field '$t_run' pid)\" = '$pid_before' ]"
check "task that exited while taskd was down has its real exit code" \
	"wait_for '$t_end' ERROR exited && [ \"\$(field '$t_end' exit_code)\" = 5 ]"
nproc_run=$(cat /sys/fs/cgroup/unified/$CG/$t_run-*/cgroup.procs 2>/dev/null | wc -l)
check "no duplicate: one init + one command in the task's cgroup" "[ '$nproc_run' = 2 ]" \
	"procs=$nproc_run"
# count shims outside the cgroup (without sandbox-init the init would be a clone of the shim)
nshim=0
for p in $(pgrep -f "taskd-shim $STATE/tasks/$t_run"); do
	grep -qx "$p" /sys/fs/cgroup/unified/$CG/$t_run-*/cgroup.procs || nshim=$((nshim + 1))
done
check "exactly one shim supervises it" "[ '$nshim' = 1 ]" "shims=$nshim"
grep -q 'adopted=' "$T/taskd.log"
check "start-up log reports the re-adoption" "grep -q 'adopted=[1-9]' '$T/taskd.log'"
kill "$TASKD_PID"
wait "$TASKD_PID" 2>/dev/null
TASKD_PID=
start_taskd
check "after a clean stop (SIGTERM) and start of taskd the task is still the same process" \
	"wait_for '$t_run' RUNNING && [ \"\$(field '$t_run' pid)\" = '$pid_before' ]"
$C stop "$t_run" >/dev/null
check "re-adopted task stops" "wait_for '$t_run' DONE stopped"

# ---------------------------------------------------------------- metrics, events, rm, cleanup
el=$(($(date +%s) - idle_since))
[ $el -lt 32 ] && sleep $((32 - el))
check "events -w waiting longer than one 30 s long-poll (and a taskd restart) keeps watching" \
	"kill -0 $IDLE_PID && [ \$(wc -l <'$T/idle.out') = 1 ] && ! grep -v 'trying again every second' '$T/idle.err' | grep -q ." \
	"$(cat "$T/idle.err")"
e2e_stop "$IDLE_PID"
IDLE_PID=
$C -o json events >"$T/events.jsonl"
diff=$(same_events seq "$T/watch.jsonl" "$T/events.jsonl")
rc=$?
e2e_stop "$WATCH_PID"
WATCH_PID=
check "events -w printed each of taskd's events once, in order" "[ $rc = 0 ]" \
	"$diff $(cat "$T/watch.err")"
$C events >"$T/events.txt"
check "events (table): a header, then seq, time, task, type, state, reason" \
	"head -1 '$T/events.txt' | grep -qE '^ *SEQ +TIME +TASK ID +TYPE +STATE +REASON$' && grep -qE '^ *[0-9]+ +20[0-9-]+T[0-9:.]+Z +$t_3 +ended +ERROR +exited$' '$T/events.txt'" \
	"$(head -3 "$T/events.txt")"
met=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics")
check "/metrics has tasks by state, starts, restarts, OOM kills, fetch bytes, start latency" \
	"echo '$met' | grep -q 'taskd_tasks{state=\"ERROR\"}' && echo '$met' | grep -q taskd_task_starts_total && echo '$met' | grep -q taskd_task_restarts_total && echo '$met' | grep -q taskd_task_oom_kills_total && echo '$met' | grep -q taskd_fetch_bytes_total && echo '$met' | grep -q taskd_task_start_latency_seconds_bucket"
ev=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/events?after=0&wait=0")
last=$(jget "$ev" "d['last']")
start=$(date +%s%N)
curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/events?after=$last&wait=1" >/dev/null
el=$(( ($(date +%s%N) - start) / 1000000 ))
check "events long-poll waits when nothing is new" "[ $el -ge 900 ]" "${el} ms"
api DELETE "/v1/tasks/$t_hx" >/dev/null
check "DELETE of a running task → 409" "[ \"\$(cat '$T/status')\" = 409 ]"
$C stop "$t_hx" >/dev/null
wait_for "$t_hx" DONE stopped >/dev/null
for id in $($C -o json ps | python3 -c 'import json,sys; print(" ".join(t["task_id"] for t in json.load(sys.stdin)["tasks"]))'); do
	$C stop "$id" >/dev/null 2>&1
done
sleep 1.5
rmfail=0
for id in $($C -o json ps | python3 -c 'import json,sys; print(" ".join(t["task_id"] for t in json.load(sys.stdin)["tasks"]))'); do
	$C rm "$id" >/dev/null 2>&1 || rmfail=1
done
check "every finished task removed" "[ $rmfail = 0 ] && [ \"\$($C -o json ps | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[\"tasks\"]))')\" = 0 ]"
left=$(ls -d /sys/fs/cgroup/*/$CG/*/ /sys/fs/cgroup/unified/$CG/*/ 2>/dev/null | wc -l)
check "no task cgroup left" "[ '$left' = 0 ]" "$(ls -d /sys/fs/cgroup/*/$CG/*/ 2>/dev/null)"
check "no shim left" "! pgrep -f 'taskd-shim $STATE/' >/dev/null"
check "task directories removed with the tasks" "[ \$(ls '$STATE/tasks' | wc -l) = 0 ]"
kill "$TASKD_PID"
wait "$TASKD_PID" 2>/dev/null
rc=$?
TASKD_PID=
check "taskd exits 0 on SIGTERM" "[ $rc = 0 ]" "rc=$rc"

tap_end
