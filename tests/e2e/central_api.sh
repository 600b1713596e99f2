#!/bin/sh
# End-to-end API test of deployd on loopback (TAP): a real deployd, curl as the client, and a
# small fake taskd (python3) that records the pushes it receives. Covers the CLI contract, auth
# (401/403), PutJob idempotency and If-Match (412/428), 422 listing every field, 400/404/409/
# 411/413/416/507, pagination, heartbeat + NotifyTaskState, GetJobState, SetJobState, pushes
# with the agent token, CAS round trips with digest verification, the artifact index, the
# events long-poll, /metrics, and state surviving kill -9.
set -u
BUILD=${BUILD:-build}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }

if [ ! -x "$DEPLOYD" ]; then echo "1..0 # SKIP $DEPLOYD not built"; exit 77; fi
for tool in curl python3 sha256sum; do
	command -v $tool >/dev/null || { echo "1..0 # SKIP $tool missing"; exit 77; }
done

T=$(mktemp -d /tmp/cd-central-e2e.XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A fake taskd: answers PutTask/SetTaskState/DELETE like docs/protocol-cluster.md and logs
# "METHOD PATH AUTH" lines to $T/taskd.log.
cat >"$T/faketaskd.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
log = open(sys.argv[2], "a", buffering=1)
class H(BaseHTTPRequestHandler):
    def _reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null")
    def do_PUT(self):
        body = self._body()
        log.write("%s %s %s %s\n" % (self.command, self.path, self.headers.get("Authorization"),
                                     json.dumps(body, sort_keys=True)))
        if self.path == "/v1/tasks":
            self._reply(201, {"task_id": body["task_id"], "state": "PENDING"})
        else:
            self._reply(200, {"state": "DONE"})
    def do_DELETE(self):
        log.write("%s %s %s\n" % (self.command, self.path, self.headers.get("Authorization")))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

# ---- CLI contract ----
check "--version prints the version" "$DEPLOYD --version | grep -q '^deployd [0-9]'"
check "--help exits 0 and lists --insecure-no-auth" "$DEPLOYD --help | grep -q -- --insecure-no-auth"
out=$($DEPLOYD --no-such-flag 2>&1); rc=$?
check "unknown flag: exit 2, one line" "[ $rc = 2 ] && [ \$(printf '%s\n' \"\$out\" | wc -l) = 1 ]" "rc=$rc out=$out"
out=$($DEPLOYD --insecure-no-auth --listen 0.0.0.0:1 --state-dir "$T/x" 2>&1); rc=$?
check "--insecure-no-auth refused off loopback (exit 2)" "[ $rc = 2 ] && echo \"\$out\" | grep -q loopback" "rc=$rc out=$out"
out=$($DEPLOYD --role cluster,bogus 2>&1); rc=$?
check "unknown role: exit 2" "[ $rc = 2 ]" "rc=$rc out=$out"
out=$($DEPLOYD --zone eu-west-1 --region us-east --state-dir "$T/x" 2>&1); rc=$?
check "zone outside its region: exit 2" "[ $rc = 2 ] && echo \"\$out\" | grep -q zone" "rc=$rc out=$out"
out=$($DEPLOYD --config "$T/missing.conf" 2>&1); rc=$?
check "explicit missing --config: exit 2" "[ $rc = 2 ]" "rc=$rc out=$out"

# ---- start deployd ----
PORT=$(free_port)
TPORT=$(free_port)
S="$T/state"
cat >"$T/deployd.conf" <<CONF
# e2e configuration
tick_interval_ms = 100
heartbeat_interval_s = 1
lost_after = 3
cas_max_bytes = 64K
cas_max_blob_bytes = 40K
push_timeout_ms = 2000
CONF
python3 "$T/faketaskd.py" "$TPORT" "$T/taskd.log" &
PIDS="$PIDS $!"
start_deployd() {
	"$DEPLOYD" --config "$T/deployd.conf" --state-dir "$S" --listen "127.0.0.1:$PORT" \
		--region us-east --zone us-east-1 --log-level debug >>"$T/deployd.log" 2>&1 &
	DPID=$!
	PIDS="$PIDS $DPID"
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0
		sleep 0.1
	done
	return 1
}
check "deployd starts and becomes ready" "start_deployd" "$(tail -5 "$T/deployd.log" 2>/dev/null)"
U="http://127.0.0.1:$PORT"
check "token file created with mode 0600" "[ \"\$(stat -c %a $S/deployd.token)\" = 600 ]"
ADMIN=$(awk '$1=="admin"{print $2}' "$S/deployd.token")
AGENT=$(awk '$1=="agent"{print $2}' "$S/deployd.token")
echo "team:foo_team $(head -c 32 /dev/urandom | sha256sum | cut -c1-64)" >>"$S/deployd.token"

# req METHOD PATH TOKEN [BODY] [extra curl args...] → sets $code and $body
req() {
	m=$1 p=$2 tok=$3
	shift 3
	if [ $# -gt 0 ]; then d=$1; shift; else d=; fi
	if [ -n "$d" ]; then
		body=$(curl -s -o "$T/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $tok" \
			-H 'Content-Type: application/json' --data-binary "$d" "$@" "$U$p")
	else
		body=$(curl -s -o "$T/resp" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $tok" \
			"$@" "$U$p")
	fi
	code=$body
	body=$(cat "$T/resp")
}
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }

# ---- auth ----
check "/healthz is open" "curl -sf $U/healthz >/dev/null"
code=$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/jobs")
check "no token: 401" "[ $code = 401 ]" "got $code"
req GET /v1/jobs 0123456789abcdef0123456789abcdef
check "wrong token: 401" "[ $code = 401 ]" "got $code"
req PUT /v1/jobs/us-east/us-east-1/web "$AGENT" '{"name":"web","target":"//app:web"}'
check "agent token cannot PutJob: 403" "[ $code = 403 ]" "got $code $body"
req GET /v1/jobs "$ADMIN"
check "admin lists jobs: 200" "[ $code = 200 ]" "got $code"

# ---- PutJob, idempotency, preconditions ----
SPEC='{"name":"web","target":"//app:web","reqs":{"hosts":2,"memory_mb":64}}'
req PUT /v1/jobs/us-east/us-east-1/web "$ADMIN" "$SPEC" -D "$T/hdr"
check "PutJob creates: 201" "[ $code = 201 ]" "got $code $body"
check "PutJob returns ETag \"1\"" "grep -qi '^etag: \"1\"' $T/hdr"
JOB_ID=$(echo "$body" | jget "['job_id']")
req PUT /v1/jobs/us-east/us-east-1/web "$ADMIN" "$SPEC"
check "identical PutJob is a no-op (200, version 1, changed false)" \
	"[ $code = 200 ] && [ \"\$(echo '$body' | jget \"['version']\")\" = 1 ] && echo '$body' | grep -q '\"changed\": *false'" "$code $body"
req PUT /v1/jobs/us-east/us-east-1/web "$ADMIN" '{"name":"web","target":"//app:web","reqs":{"hosts":2,"memory_mb":96}}' -H 'If-Match: "7"'
check "stale If-Match: 412" "[ $code = 412 ]" "got $code $body"
req PUT /v1/jobs/us-east/us-east-1/web "$ADMIN" '{"name":"web","target":"//app:web","reqs":{"hosts":2,"memory_mb":96}}' -H 'If-Match: "1"'
check "matching If-Match updates: 200 version 2" "[ $code = 200 ] && [ \"\$(echo '$body' | jget \"['version']\")\" = 2 ]" "$code $body"
req PUT /v1/jobs/us-east/us-east-1/web "$ADMIN" "$SPEC" -H 'If-None-Match: *'
check "If-None-Match * on an existing job: 412" "[ $code = 412 ]" "got $code"
req PUT /v1/jobs/us-east/us-east-1/web "$ADMIN" "$SPEC"
check "job version 3 after a changed spec" "[ \"\$(echo '$body' | jget \"['version']\")\" = 3 ]" "$body"

# ---- bad input ----
req PUT /v1/jobs/us-east/us-east-1/bad "$ADMIN" '{"name":"other","target":"nope","reqs":{"hosts":0,"vcpus":-1},"bogus":1}'
nerr=$(echo "$body" | jget "['errors'].__len__()" 2>/dev/null || echo 0)
check "invalid JobSpec: 422 listing every field (>= 4 errors)" "[ $code = 422 ] && [ $nerr -ge 4 ]" "$code $body"
check "422 names /reqs/hosts and /bogus" "echo '$body' | grep -q '/reqs/hosts' && echo '$body' | grep -q '/bogus'"
req PUT /v1/jobs/us-east/us-east-1/bad "$ADMIN" '{"name":'
check "malformed JSON: 400" "[ $code = 400 ]" "got $code"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$T/big"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' --data-binary @"$T/big" "$U/v1/jobs/us-east/us-east-1/big")
check "body over 1 MiB: 413" "[ $code = 413 ]" "got $code"
req PUT /v1/jobs/us-east/us-east-1/web2 "$ADMIN" '{"name":"web2","target":"//app:web@0123456789abcdef0123456789abcdef01234567"}'
check "target@commit missing from the index: 422 /target" "[ $code = 422 ] && echo '$body' | grep -q '/target'" "$code $body"
req PUT /v1/jobs/eu-west/eu-west-1/web "$ADMIN" "$SPEC"
check "job of another zone: 404" "[ $code = 404 ]" "got $code"
req GET /v1/jobs/us-east/us-east-1/nosuch "$ADMIN"
check "unknown job: 404" "[ $code = 404 ]" "got $code"
req GET /v1/jobs/us-east/us-east-1/BAD_NAME/state "$ADMIN"
check "invalid job name in the path: 404" "[ $code = 404 ]" "got $code"
req PUT /v1/jobs/us-east/us-east-1/web/state "$ADMIN" '{"state":"PAUSED","x":1}'
check "SetJobState bad state + unknown field: 422 with 2 errors" \
	"[ $code = 422 ] && [ \"\$(echo '$body' | jget \"['errors'].__len__()\")\" = 2 ]" "$code $body"

# ---- pagination ----
for j in pa pb pc; do
	req PUT /v1/jobs/us-east/us-east-1/$j "$ADMIN" "{\"name\":\"$j\",\"target\":\"//app:$j\",\"reqs\":{\"memory_mb\":16}}"
done
req GET "/v1/jobs?zone=us-east-1&page_size=2" "$ADMIN"
tok=$(echo "$body" | jget "['next_page_token']")
names=$(echo "$body" | jget "[' '.join(x['name'] for x in d['jobs'])]" 2>/dev/null || echo "$body" | python3 -c "import json,sys; print(' '.join(x['name'] for x in json.load(sys.stdin)['jobs']))")
check "ListJobs page 1 of size 2 with a next_page_token" "[ \"$names\" = 'pa pb' ] && [ -n '$tok' ] && [ '$tok' != None ]" "$body"
req GET "/v1/jobs?zone=us-east-1&page_size=2&page_token=$tok" "$ADMIN"
names=$(echo "$body" | python3 -c "import json,sys; print(' '.join(x['name'] for x in json.load(sys.stdin)['jobs']))")
check "ListJobs page 2 continues after the token" "[ \"$names\" = 'pc web' ]" "$body"
req GET "/v1/jobs?page_size=0" "$ADMIN"
check "page_size=0: 400" "[ $code = 400 ]" "got $code"

# ---- hosts, placement, pushes, task reports ----
HB='{"host_id":"w1","zone":"us-east-1","addr":"http://127.0.0.1:'$TPORT'","resources":{"vcpus":8,"memory_mb":8192,"storage_mb":100000},"tasks":[]}'
req POST /v1/hosts/w1/heartbeat "$ADMIN" '{"host_id":"w2","zone":"eu-west-1","addr":"ftp://x","resources":{"vcpus":-1}}'
check "bad heartbeat: 422 listing every field" "[ $code = 422 ] && [ \"\$(echo '$body' | jget \"['errors'].__len__()\")\" -ge 4 ]" "$code $body"
req POST /v1/hosts/w1/heartbeat "$AGENT" "$HB"
check "heartbeat with the agent token: 200" "[ $code = 200 ] && echo '$body' | grep -q heartbeat_interval_s" "$code $body"
HB2=$(echo "$HB" | sed 's/"w1"/"w2"/')
req POST /v1/hosts/w2/heartbeat "$AGENT" "$HB2"
req POST /v1/hosts/w1/heartbeat "$ADMIN" "$HB"
req GET /v1/hosts "$ADMIN"
check "GET /v1/hosts lists both hosts READY" "[ \"\$(echo '$body' | python3 -c \"import json,sys; print(sum(1 for h in json.load(sys.stdin)['hosts'] if h['state']=='READY'))\")\" = 2 ]" "$body"
placed() {
	req GET /v1/jobs/us-east/us-east-1/web/state "$ADMIN"
	[ "$(echo "$body" | python3 -c "import json,sys; print(len([t for t in json.load(sys.stdin)['tasks'] if t['desired']=='RUNNING' and t['host_id']]))")" = 2 ]
}
wait_for() { for _ in $(seq 100); do eval "$1" && return 0; sleep 0.1; done; return 1; }
check "the 2-task job is placed on the two hosts" "wait_for placed" "$body"
check "the hosts differ" "[ \"\$(echo '$body' | python3 -c \"import json,sys; print(len(set(t['host_id'] for t in json.load(sys.stdin)['tasks'] if t['desired']=='RUNNING')))\")\" = 2 ]"
pushed() { [ "$(grep -c '^PUT /v1/tasks ' "$T/taskd.log" 2>/dev/null)" -ge 2 ]; }
check "PutTask pushed to taskd" "wait_for pushed" "$(cat "$T/taskd.log" 2>/dev/null)"
check "pushes carry the agent token" "grep '^PUT /v1/tasks ' $T/taskd.log | grep -q 'Bearer $AGENT'"
check "PutTask body has request_id, task_id, job, index, spec" \
	"grep '^PUT /v1/tasks ' $T/taskd.log | head -1 | grep -q '\"job\": \"job://us-east/us-east-1/web\"' && grep '^PUT /v1/tasks ' $T/taskd.log | head -1 | grep -q '\"request_id\"'"
req GET /v1/jobs/us-east/us-east-1/web/state "$ADMIN"
tasks=$(echo "$body" | python3 -c "import json,sys; print(' '.join(t['task_id']+':'+t['host_id'] for t in json.load(sys.stdin)['tasks'] if t['desired']=='RUNNING'))")
seq=1
for th in $tasks; do
	tid=${th%%:*} hid=${th#*:}
	seq=$((seq + 1))
	req POST /v1/tasks/$tid/state "$AGENT" "{\"task_id\":\"$tid\",\"host_id\":\"$hid\",\"seq\":$seq,\"state\":\"RUNNING\",\"healthy\":true,\"restarts\":0}"
done
check "NotifyTaskState applied" "[ $code = 200 ] && echo '$body' | grep -q 'true'" "$code $body"
running() { req GET /v1/jobs/us-east/us-east-1/web/state "$ADMIN"; [ "$(echo "$body" | jget "['state']")" = RUNNING ]; }
check "job becomes RUNNING once every task runs healthy" "wait_for running" "$body"
check "GetJobState shows every task's state and host" "echo '$body' | python3 -c \"import json,sys; d=json.load(sys.stdin); assert all(t['state']=='RUNNING' and t['host_id'] for t in d['tasks'] if t['desired']=='RUNNING')\""
req POST /v1/tasks/$tid/state "$AGENT" "{\"task_id\":\"$tid\",\"host_id\":\"$hid\",\"seq\":1,\"state\":\"ERROR\"}"
check "replayed notification (old seq): 200 applied false" "[ $code = 200 ] && echo '$body' | grep -q false" "$code $body"
req POST /v1/tasks/$tid/state "$AGENT" "{\"task_id\":\"$tid\",\"host_id\":\"elsewhere\",\"seq\":99,\"state\":\"ERROR\"}"
check "notification from the wrong host: 410 (taskd drops it)" "[ $code = 410 ]" "got $code"
req POST /v1/tasks/ffffffffffffffffffffffffffff/state "$AGENT" '{"task_id":"ffffffffffffffffffffffffffff","host_id":"w1","seq":5,"state":"RUNNING"}'
check "notification for an unknown task: 404" "[ $code = 404 ]" "got $code"
req POST /v1/tasks/$tid/state "$AGENT" "{\"task_id\":\"other\",\"seq\":0,\"state\":\"WEIRD\"}"
check "bad notification: 422 listing every field" "[ $code = 422 ] && [ \"\$(echo '$body' | jget \"['errors'].__len__()\")\" -ge 4 ]" "$code $body"
req GET /v1/jobs/us-east/us-east-1/web/tasks "$ADMIN"
check "GET .../tasks lists the tasks" "[ $code = 200 ] && echo '$body' | grep -q task://us-east/us-east-1/web/" "$code"

# ---- SetJobState ----
req PUT /v1/jobs/us-east/us-east-1/web/state "$ADMIN" '{"state":"DONE"}' -H 'If-Match: "3"'
check "SetJobState DONE: 200" "[ $code = 200 ] && echo '$body' | grep -q '\"desired\": *\"DONE\"'" "$code $body"
stops() { [ "$(grep -c '^PUT /v1/tasks/.*/state' "$T/taskd.log")" -ge 2 ]; }
check "SetTaskState DONE pushed to taskd for each task" "wait_for stops" "$(cat "$T/taskd.log")"
deletes() { [ "$(grep -c '^DELETE /v1/tasks/' "$T/taskd.log")" -ge 2 ]; }
check "finished tasks are deleted on taskd" "wait_for deletes" "$(cat "$T/taskd.log")"
done_state() { req GET /v1/jobs/us-east/us-east-1/web/state "$ADMIN"; [ "$(echo "$body" | jget "['state']")" = DONE ]; }
check "job state DONE" "wait_for done_state" "$body"

# ---- CAS ----
head -c 20000 /dev/urandom >"$T/blob"
H=$(sha256sum "$T/blob" | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/blob" "$U/cas/$H")
check "CAS PUT of a verified blob: 201" "[ $code = 201 ]" "got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/blob" "$U/cas/$H")
check "CAS PUT again: 200" "[ $code = 200 ]" "got $code"
curl -s -o "$T/blob.get" "$U/cas/$H"
check "CAS GET (no token: public read) returns the same bytes" "cmp -s $T/blob $T/blob.get"
check "CAS HEAD: 200 with Content-Length" "curl -sI $U/cas/$H | grep -qi 'content-length: 20000'"
code=$(curl -s -o "$T/part" -w '%{http_code}' -H 'Range: bytes=100-' "$U/cas/$H")
check "CAS Range request: 206 with the tail" "[ $code = 206 ] && [ \$(stat -c %s $T/part) = 19900 ]" "got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Range: bytes=99999-' "$U/cas/$H")
check "CAS unsatisfiable range: 416" "[ $code = 416 ]" "got $code"
BAD=$(echo x | sha256sum | cut -d' ' -f1)
code=$(curl -s -o "$T/resp" -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/blob" "$U/cas/$BAD")
check "CAS PUT with a mismatched digest: 400 naming both digests" "[ $code = 400 ] && grep -q $H $T/resp" "got $code $(cat "$T/resp")"
code=$(curl -s -o /dev/null -w '%{http_code}' "$U/cas/$BAD")
check "nothing stored for the mismatched digest (GET 404)" "[ $code = 404 ]" "got $code"
check "no temporary files left behind" "[ -z \"\$(ls $S/cas/tmp)\" ]"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" -H 'Transfer-Encoding: chunked' --data-binary @"$T/blob" "$U/cas/$H")
check "CAS PUT without Content-Length: 411" "[ $code = 411 ]" "got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$T/blob" "$U/cas/$H")
check "CAS PUT without a token: 401" "[ $code = 401 ]" "got $code"
head -c 41000 /dev/urandom >"$T/huge"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/huge" "$U/cas/$(sha256sum "$T/huge" | cut -d' ' -f1)")
check "CAS blob above the size cap: 413" "[ $code = 413 ]" "got $code"
# Budget 64K: H (20000) is indexed, so pinned; an unindexed blob2 (30000) is evicted to make
# room for blob3; once every stored blob is indexed, a PUT that does not fit is 507.
C0=00000000000000000000000000000000000000aa
req PUT "/v1/artifacts/app/pin:a@$C0" "$ADMIN" "{\"digest\":\"sha256:$H\",\"size\":20000}"
check "index PUT pins the 20000-byte blob: 201" "[ $code = 201 ]" "$code $body"
head -c 30000 /dev/urandom >"$T/blob2"
H2=$(sha256sum "$T/blob2" | cut -d' ' -f1)
head -c 30000 /dev/urandom >"$T/blob3"
H3=$(sha256sum "$T/blob3" | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/blob2" "$U/cas/$H2")
code3=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/blob3" "$U/cas/$H3")
check "CAS over the budget evicts the unindexed blob: 201" "[ $code = 201 ] && [ $code3 = 201 ]" "got $code $code3"
c2=$(curl -s -o /dev/null -w '%{http_code}' "$U/cas/$H2")
c1=$(curl -s -o /dev/null -w '%{http_code}' "$U/cas/$H")
check "the LRU unindexed blob is gone, the indexed one stays" "[ $c2 = 404 ] && [ $c1 = 200 ]" "got $c2 $c1"
check "eviction counted in /metrics" "curl -s -H 'Authorization: Bearer $ADMIN' $U/metrics | grep -q '^deployd_cas_evicted_blobs_total 1$'"
check "eviction in the audit log" "curl -s -H 'Authorization: Bearer $ADMIN' '$U/v1/events?after=0' | grep -q cas.evict"
req PUT "/v1/artifacts/app/pin:b@$C0" "$ADMIN" "{\"digest\":\"sha256:$H3\",\"size\":30000}"
head -c 35000 /dev/urandom >"$T/blob4"
code=$(curl -s -o "$T/resp" -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" --data-binary @"$T/blob4" "$U/cas/$(sha256sum "$T/blob4" | cut -d' ' -f1)")
check "CAS over the budget with only indexed blobs: 507" "[ $code = 507 ] && grep -q 'budget' $T/resp" "got $code $(cat "$T/resp")"
code=$(curl -s -o /dev/null -w '%{http_code}' "$U/cas/nothex")
check "CAS GET of a non-digest: 400" "[ $code = 400 ]" "got $code"

# ---- artifact index ----
C=0123456789abcdef0123456789abcdef01234567
req PUT "/v1/artifacts/app/web:main@$C" "$ADMIN" "{\"digest\":\"sha256:$H\",\"size\":20000}"
check "index PUT target@commit: 201" "[ $code = 201 ] && echo '$body' | grep -q '//app/web:main@$C'" "$code $body"
req PUT "/v1/artifacts/%2F%2Fapp%2Fweb%3Amain%40$C" "$ADMIN" "{\"digest\":\"sha256:$H\",\"size\":20000}"
check "index PUT again (encoded //target): 200" "[ $code = 200 ]" "$code $body"
req PUT "/v1/artifacts/app/web:main@$C" "$ADMIN" "{\"digest\":\"sha256:$H3\",\"size\":30000}"
check "index PUT with another digest: 409" "[ $code = 409 ]" "$code $body"
req PUT "/v1/artifacts/app/web:other@$C" "$ADMIN" "{\"digest\":\"sha256:$BAD\",\"size\":-3,\"x\":1}"
check "index PUT bad body: 422 listing every field" "[ $code = 422 ] && [ \"\$(echo '$body' | jget \"['errors'].__len__()\")\" -ge 2 ]" "$code $body"
req GET "/v1/artifacts/app/web:main@$C" "$ADMIN"
check "index GET: digest and size" "[ $code = 200 ] && echo '$body' | grep -q sha256:$H" "$code $body"
req GET "/v1/artifacts?target=//app/web:main" "$ADMIN"
check "index list by target" "[ $code = 200 ] && echo '$body' | grep -q $C" "$code $body"
req GET "/v1/artifacts/app/web:main@ffff" "$ADMIN"
check "index GET with a bad commit: 404" "[ $code = 404 ]" "got $code"
req PUT /v1/jobs/us-east/us-east-1/pinned "$ADMIN" "{\"name\":\"pinned\",\"target\":\"//app/web:main@$C\",\"reqs\":{\"memory_mb\":16}}"
check "PutJob with an indexed target@commit: 201" "[ $code = 201 ]" "$code $body"
art() { grep '^PUT /v1/tasks ' "$T/taskd.log" | grep -q "sha256:$H"; }
check "its PutTask carries the artifact digest and mirrors" "wait_for art" "$(grep pinned "$T/taskd.log")"

# ---- events, metrics ----
req GET "/v1/events?after=0&limit=1000" "$ADMIN"
check "events hold job.put by admin and task.state by agent" \
	"echo '$body' | grep -q '\"kind\": *\"job.put\"' && echo '$body' | grep -q '\"actor\": *\"agent\"'" "$(echo "$body" | head -c 300)"
last=$(echo "$body" | jget "['last_id']")
check "the whole log in one page: more is false" "[ \"\$(echo '$body' | jget \"['more']\")\" = False ]" "$(echo "$body" | tail -c 200)"
req GET "/v1/events?after=0&limit=2" "$ADMIN"
check "a short page says more, and last_id is its last event" \
	"[ \"\$(echo '$body' | jget \"['more']\")\" = True ] && [ \"\$(echo '$body' | jget \"['events'][1]['id']\")\" = \"\$(echo '$body' | jget \"['last_id']\")\" ] && [ \"\$(echo '$body' | jget \"['events'].__len__()\")\" = 2 ]" "$(echo "$body" | head -c 300)"
start=$(date +%s%N)
req GET "/v1/events?after=999999999&wait=1" "$ADMIN"
end=$(date +%s%N)
check "long-poll with nothing new returns empty after waiting" "[ $code = 200 ] && [ \$(( (end - start) / 1000000 )) -ge 900 ] && echo '$body' | grep -q '\"events\": *\[\]'" "$code $body"
( sleep 0.5; curl -s -o /dev/null -X PUT -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
	--data-binary '{"name":"late","target":"//app:late","reqs":{"memory_mb":16}}' "$U/v1/jobs/us-east/us-east-1/late" ) &
BG=$!
req GET "/v1/events?after=999999999" "$ADMIN"
cursor=$last
seen=no
for _ in $(seq 20); do
	req GET "/v1/events?after=$cursor&wait=20" "$ADMIN"
	if echo "$body" | grep -q 'job://us-east/us-east-1/late'; then seen=yes; break; fi
	cursor=$(echo "$body" | jget "['last_id']")
done
check "long-poll wakes up on a new event" "[ $seen = yes ]" "$body"
wait "$BG"
req GET "/v1/events?after=-1" "$ADMIN"
check "events with a bad cursor: 400" "[ $code = 400 ]" "got $code"
req GET /metrics "$ADMIN"
check "/metrics in Prometheus text" "[ $code = 200 ] && echo '$body' | grep -q '^deployd_jobs{zone=\"us-east-1\",state=\"DONE\"} 1' && echo '$body' | grep -q '^deployd_cas_blobs 2'" "$(echo "$body" | grep -e deployd_jobs -e cas_blobs)"
if command -v promtool >/dev/null; then
	echo "$body" >"$T/metrics"
	check "promtool accepts /metrics" "promtool check metrics <$T/metrics >/dev/null 2>&1 || promtool check metrics <$T/metrics 2>&1 | grep -qv error"
fi
TEAM=$(awk '$1=="team:foo_team"{print $2}' "$S/deployd.token")
req GET "/v1/events?after=0&limit=1" "$ADMIN"
check "nothing pruned yet: pruned_through 0" "[ \"\$(echo '$body' | jget \"['pruned_through']\")\" = 0 ]" "$body"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null
# Retention: make the three oldest events 2 years old (the update trigger is lifted for the
# test only), then the restart's first retention pass (90 days) must prune exactly those.
sqlite3 "$S/deployd.db" "DROP TRIGGER events_no_update;
UPDATE events SET ts = ts - 63072000000000 WHERE id <= 3;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
check "restart after kill -9" "start_deployd" "$(tail -5 "$T/deployd.log" 2>/dev/null)"
for _ in $(seq 100); do
	req GET "/v1/events?after=0&limit=1" "$ADMIN"
	[ "$(echo "$body" | jget "['pruned_through']")" = 3 ] && break
	sleep 0.1
done
check "retention pruned the three old events, and says so" \
	"[ \"\$(echo '$body' | jget \"['pruned_through']\")\" = 3 ] && [ \"\$(echo '$body' | jget \"['events'][0]['id']\")\" = 4 ]" "$body"
req GET "/v1/events?after=0&limit=1000" "$ADMIN"
check "the prune is in the audit log" "echo '$body' | grep -q '\"kind\": *\"events.pruned\"'" "$(echo "$body" | tail -c 300)"
req GET /metrics "$ADMIN"
check "/metrics counts the pruned events" "echo '$body' | grep -q '^deployd_events_pruned_total 3$' && echo '$body' | grep -q '^deployd_events_prune_errors_total 0$'" "$(echo "$body" | grep prune)"
req GET /v1/jobs/us-east/us-east-1/web "$ADMIN"
check "jobs survive kill -9 (version 3, desired DONE)" "[ $code = 200 ] && [ \"\$(echo '$body' | jget \"['version']\")\" = 3 ] && echo '$body' | grep -q '\"desired\": *\"DONE\"'" "$code $body"
req GET /v1/jobs "$TEAM"
check "a team token (added to the file) reads jobs" "[ $code = 200 ]" "got $code"
req POST /v1/hosts/w1/heartbeat "$TEAM" "$HB"
check "a team token cannot heartbeat: 403" "[ $code = 403 ]" "got $code"
curl -s -o "$T/blob.get2" "$U/cas/$H"
check "blobs survive the restart" "cmp -s $T/blob $T/blob.get2"

echo "1..$n"
exit $fail
