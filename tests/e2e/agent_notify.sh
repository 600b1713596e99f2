#!/bin/sh
# End-to-end test of taskd's durable notifications (TAP, root): a test receiver plays the
# cluster manager (docs/protocol-cluster.md: NotifyTaskState + heartbeat, 503 on every third
# request to force retries). taskd runs crash-looping, short and long tasks while it is killed
# with SIGKILL at random moments and restarted, again and again. After each restart every task
# is accounted for and no task runs twice; at the end the receiver got, after de-duplication by
# seq, only state changes recorded in taskd's event log, in order per task, always the last one
# of each task, matching its final state. (Not every intermediate one: taskd keeps one undelivered
# message per task, its newest, as the manager applies only the highest seq; docs/taskd.md.)
set -u
. "$(dirname "$0")/lib.sh"
KILLS=${KILLS:-20}

need_root
need_exec "$TASKD" "$SHIM" "$TASKCTL"

e2e_init agent-notify /var/tmp
STATE=$T/state
CG=codedeploy-agent-notify-$$
TASKD_PID=
RECV_PID=
E2E_PID_VARS="TASKD_PID RECV_PID"
E2E_STATE_DIRS=$STATE
E2E_CGROUPS=$CG

# ---------------------------------------------------------------- the receiver
RPORT=$(free_port)
cat >"$T/recv.py" <<'EOF'
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, out, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
count = [0]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            count[0] += 1
            flaky = count[0] % 3 == 0
        doc = json.loads(body) if body else {}
        if self.headers.get("Authorization") != "Bearer " + token:
            code, reply = 401, {}
        elif str(doc.get("job", "")).endswith("/refused"):
            code, reply = 409, {}  # "not placed here": retried forever by the protocol
        elif flaky:
            code, reply = 503, {}
        else:
            code, reply = 200, {"applied": True, "heartbeat_interval_s": 1}
            with lock, open(out, "a") as f:
                f.write(json.dumps({"path": self.path, "body": json.loads(body)}) + "\n")
        data = json.dumps(reply).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
AGENT_TOKEN=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
python3 "$T/recv.py" "$RPORT" "$T/received.jsonl" "$AGENT_TOKEN" &
RECV_PID=$!
wait_http "http://127.0.0.1:$RPORT/" 5

# ---------------------------------------------------------------- taskd with a manager
mkdir -p "$STATE"
printf '%s\n' "$AGENT_TOKEN" >"$STATE/manager.token"
chmod 600 "$STATE/manager.token"
PORT=$(free_port)
printf 'cgroup_parent = %s\nheartbeat_interval_s = 1\nzone = e2e-1\n' "$CG" >"$T/taskd.conf"
start_taskd() {
	e2e_start_taskd "$PORT" "$STATE" "$T/taskd.conf" "$T/taskd.log" --host-id notify-e2e \
		--manager "http://127.0.0.1:$RPORT"
}
start_taskd
check "taskd starts with a manager configured" "curl -sf http://127.0.0.1:$PORT/healthz >/dev/null"
C="$TASKCTL --host http://127.0.0.1:$PORT --token-file $STATE/taskd.token"
# the manager's agent token is accepted on the task API too (the manager pushes PutTask)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AGENT_TOKEN" \
	"http://127.0.0.1:$PORT/v1/tasks")
check "the cluster's agent token is accepted by taskd" "[ '$code' = 200 ]" "got $code"

# Tasks are put with the agent token, as the manager would: only those are reported to it.
CM="$TASKCTL --host http://127.0.0.1:$PORT --token $AGENT_TOKEN"
put() {
	printf '{"name":"%s","target":"//e2e:%s",%s}' "$1" "$1" "$2" >"$T/spec-$1.json"
	$CM -o json put -f "$T/spec-$1.json" --job "job://e2e/e2e-1/$1" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])'
}
printf '{"name":"local","target":"//e2e:local","command":["/bin/true"],"restart":{"policy":"never"}}' \
	>"$T/spec-local.json"
LOCAL_ID=$($C -o json put -f "$T/spec-local.json" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
ids="$(put crash1 '"command":["/bin/sh","-c","sleep 0.3; exit 2"],"restart":{"policy":"on-failure","backoff_s":1,"max_backoff_s":2}')"
ids="$ids $(put crash2 '"command":["/bin/sh","-c","exit 9"],"restart":{"policy":"always","backoff_s":1,"max_backoff_s":1}')"
ids="$ids $(put long1 '"command":["/bin/sh","-c","exec sleep 1000"],"stop_grace_s":1')"
ids="$ids $(put long2 '"command":["/bin/sh","-c","trap \"exit 0\" TERM; while :; do sleep 0.2; done"],"stop_grace_s":2')"
ids="$ids $(put short '"command":["/bin/sh","-c","sleep 2; exit 4"],"restart":{"policy":"never"}')"
check "five tasks put" "[ \$(echo $ids | wc -w) = 5 ]"
REFUSED_ID=$(put refused '"command":["/bin/sh","-c","exit 1"],"restart":{"policy":"never"}')

# ---------------------------------------------------------------- kill -9 at random moments
dups=0
lost=0
for i in $(seq "$KILLS"); do
	sleep "0.$(od -An -N1 -tu1 /dev/urandom | tr -d ' ' | cut -c1)"
	kill -9 "$TASKD_PID"
	wait "$TASKD_PID" 2>/dev/null
	TASKD_PID=
	[ $((i % 3)) = 0 ] && sleep 1.2 # let some tasks end while taskd is down
	start_taskd || { notok "taskd restart $i"; break; }
	have=$($C -o json ps | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tasks"]))')
	[ "$have" = 7 ] || lost=$((lost + 1))
	for id in $ids; do
		# one live generation at most, and one shim (the sandbox init is a clone of the
		# shim with the same command line: count only processes outside the cgroups)
		live=$(ls -d /sys/fs/cgroup/unified/$CG/$id-*/ 2>/dev/null | wc -l)
		[ "$live" -gt 1 ] && dups=$((dups + 1))
		shims=0
		for p in $(pgrep -f "taskd-shim $STATE/tasks/$id"); do
			cat /sys/fs/cgroup/unified/$CG/$id-*/cgroup.procs 2>/dev/null | grep -qx "$p" ||
				shims=$((shims + 1))
		done
		[ "$shims" -gt 1 ] && dups=$((dups + 1))
	done
done
check "all tasks accounted for after each of $KILLS kill -9 + restart" "[ $lost = 0 ]" "lost=$lost"
check "no task ever ran twice (one live cgroup, one shim)" "[ $dups = 0 ]" "dups=$dups"
long_state=$($C -o json get "$(echo $ids | cut -d' ' -f3)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
check "the long-running task is still RUNNING" "[ '$long_state' = RUNNING ]"

# ---------------------------------------------------------------- stop everything, drain
for id in $ids; do $C stop "$id" >/dev/null 2>&1; done
i=0
while [ $i -lt 100 ]; do
	busy=$($C -o json ps | python3 -c 'import json,sys; print(sum(1 for t in json.load(sys.stdin)["tasks"] if t["state"] in ("PENDING","RUNNING")))')
	[ "$busy" = 0 ] && break
	sleep 0.1
	i=$((i + 1))
done
check "every task stopped" "[ '$busy' = 0 ]"
# The refused task's newest notification stays in the outbox (409 is retried, and the outbox
# keeps one message per task); nothing else may.
refused_events=$(curl -s -H "Authorization: Bearer $(cat "$STATE/taskd.token")" \
	"http://127.0.0.1:$PORT/v1/events?after=0" | python3 -c "
import json,sys
print(sum(1 for e in json.load(sys.stdin)['events'] if e['task_id']=='$REFUSED_ID' and e['type']!='deleted'))")
i=0
while [ $i -lt 300 ]; do
	pend=$(curl -s -H "Authorization: Bearer $(cat "$STATE/taskd.token")" \
		"http://127.0.0.1:$PORT/metrics" | awk '/^taskd_outbox_pending/ { print $2 }')
	[ "$pend" = 1 ] && break
	sleep 0.1
	i=$((i + 1))
done
check "outbox drained except the refused task's one message (no head-of-line blocking)" \
	"[ '$pend' = 1 ] && [ '$refused_events' -ge 1 ]" \
	"pending=$pend refused=$refused_events"
curl -s -H "Authorization: Bearer $(cat "$STATE/taskd.token")" \
	"http://127.0.0.1:$PORT/v1/events?after=0" >"$T/events.json"
$C -o json ps >"$T/tasks.json"

python3 - "$T/events.json" "$T/received.jsonl" "$T/tasks.json" "$LOCAL_ID" "$REFUSED_ID" >"$T/verdict" 2>&1 <<'EOF'
import json, sys
local, refused = sys.argv[4], sys.argv[5]
events = [e for e in json.load(open(sys.argv[1]))["events"] if e["task_id"] not in (local, refused)]
recv = [json.loads(l) for l in open(sys.argv[2])]
tasks = {t["task_id"]: t for t in json.load(open(sys.argv[3]))["tasks"] if t["task_id"] not in (local, refused)}
recv = [r for r in recv if r["body"].get("task_id") != refused]
notes = [r["body"] for r in recv if r["path"].startswith("/v1/tasks/")]
beats = [r["body"] for r in recv if r["path"].startswith("/v1/hosts/")]
problems = []
# de-duplicate by seq (at-least-once delivery), keep the receipt order
seen, uniq = set(), []
for b in notes:
    if b["seq"] in seen:
        continue
    seen.add(b["seq"])
    uniq.append(b)
if any(b["task_id"] == local for b in notes):
    problems.append("the locally put task was reported to the manager")
for b in uniq:
    if b["event_id"] != "notify-e2e:%d" % b["seq"]:
        problems.append("bad event_id %s" % b["event_id"])
# in order per task
last = {}
for b in uniq:
    if b["seq"] <= last.get(b["task_id"], 0):
        problems.append("out of order for %s: %d after %d" % (b["task_id"], b["seq"], last[b["task_id"]]))
    last[b["task_id"]] = b["seq"]
# every notification is a recorded state change (events other than "deleted") with its state,
# and the last state change of each task is notified (coalescing drops only older ones)
per_task_events = {}
for e in events:
    if e["type"] != "deleted":
        per_task_events.setdefault(e["task_id"], []).append(e)
per_task_notes = {}
for b in uniq:
    per_task_notes.setdefault(b["task_id"], []).append(b)
for tid, evs in per_task_events.items():
    got = per_task_notes.get(tid, [])
    # the notifications' (state, reason) are a subsequence of the recorded ones (the outbox's
    # seq numbers its messages, not the events), ending with the last recorded one
    recorded = [(e["data"]["state"], e["data"].get("reason")) for e in evs]
    k = 0
    for b in got:
        while k < len(recorded) and recorded[k] != (b["state"], b.get("reason")):
            k += 1
        if k == len(recorded):
            problems.append("%s: notified %s/%s is no recorded state change in order" % (tid, b["state"], b.get("reason")))
            break
        k += 1
    if not got or (got[-1]["state"], got[-1].get("reason")) != recorded[-1]:
        problems.append("%s: its last state change %s/%s was not notified last" % ((tid,) + recorded[-1]))
    final = tasks[tid]
    if got and (got[-1]["state"] != final["state"] or got[-1]["reason"] != final["reason"]):
        problems.append("%s: last notification %s/%s, task %s/%s" % (tid, got[-1]["state"], got[-1]["reason"], final["state"], final["reason"]))
if not beats:
    problems.append("no heartbeat received")
else:
    hb = beats[-1]
    if hb["host_id"] != "notify-e2e" or hb["zone"] != "e2e-1" or "vcpus" not in hb["resources"] or len(hb["tasks"]) != len(tasks) + 1:
        problems.append("bad heartbeat %s" % hb)
print("notifications=%d unique=%d heartbeats=%d duplicates=%d" % (len(notes), len(uniq), len(beats), len(notes) - len(uniq)))
for p in problems:
    print("PROBLEM", p)
EOF
echo "# $(head -1 "$T/verdict")"
check "the manager's tasks: notified state changes in order, the last one always, final state right; local task never" \
	"! grep -q PROBLEM '$T/verdict'" "$(grep PROBLEM "$T/verdict" | head -5 | tr '\n' ';')"
check "heartbeats carry host id, zone, resources and the task list" \
	"! grep -q 'PROBLEM.*heartbeat' '$T/verdict'"

# ---------------------------------------------------------------- cleanup
for id in $ids $LOCAL_ID $REFUSED_ID; do $C rm "$id" >/dev/null 2>&1; done
check "no task cgroup left" "[ \$(ls -d /sys/fs/cgroup/unified/$CG/*/ 2>/dev/null | wc -l) = 0 ]"
check "no shim left" "! pgrep -f 'taskd-shim $STATE/' >/dev/null"
kill "$TASKD_PID"
wait "$TASKD_PID" 2>/dev/null
TASKD_PID=
tap_end
