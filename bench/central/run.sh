#!/bin/sh
# deployd benchmarks (issue 8, "Benchmarks (bench/central/)"), ours and a baseline side by side:
#  1. wrk, keep-alive, on GET /v1/jobs/{region}/{zone}/{name}/state of a real deployd (one job
#     put first) vs a minimal civetweb hello server built here (bench/central/hello.c) with the
#     same thread count, keep-alive and tcp_nodelay. Goal: >= 0.5x and >= 20k req/s. Also
#     deployd's open /healthz, to split the HTTP frame's cost from the handler's.
#  2. HOSTS simulated taskd hosts and JOBS x PER_JOB tasks in each of ZONES zones: one deployd
#     (--role cluster) per zone, each with its own SQLite file, as docs/central.md describes a
#     zone's manager, and one simulator process (tests/e2e/hostsim.py, shared with
#     tests/e2e/central_scale.sh) per zone. Time from the first PutJob until every job of every
#     zone is RUNNING (goal < 60 s, capped at SCALE_TIMEOUT_S), and the deployds' RSS.
#  3. GET of a CAS_MB blob from deployd's /cas/<hex> vs a private nginx serving the same file
#     (curl -o /dev/null, REPS interleaved rounds, best and median).
# Usage: BUILD=build bench/central/run.sh   (needs $BUILD/deployd; builds only bench/central/hello.c
#   with cc -lcivetweb into $BUILD/bench-central/)
#   env: WRK_S=8 WRK_C=16 THREADS=32 ZONES=10 HOSTS=1000 JOBS=100 PER_JOB=10 SCALE_TIMEOUT_S=90
#        CAS_MB=256 REPS=3 STATE_TASKS=10 PARTS=all (PARTS=http: only part 1, for tuning the request path)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
WRK_S=${WRK_S:-8}
WRK_C=${WRK_C:-16}
THREADS=${THREADS:-32}
ZONES=${ZONES:-10}
HOSTS=${HOSTS:-1000}
JOBS=${JOBS:-100}
PER_JOB=${PER_JOB:-10}
SCALE_TIMEOUT_S=${SCALE_TIMEOUT_S:-90}
CAS_MB=${CAS_MB:-256}
REPS=${REPS:-3}
STATE_TASKS=${STATE_TASKS:-10}
[ -x "$DEPLOYD" ] || { echo "bench/central: build $DEPLOYD first (make BUILD=$BUILD)"; exit 1; }
for c in wrk nginx; do
	command -v $c >/dev/null || [ -x /usr/sbin/$c ] || apt-get install -y $c >/dev/null
done
for c in wrk curl python3 cc; do
	command -v $c >/dev/null || { echo "bench/central: $c is not installed"; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HPZ=$((HOSTS / ZONES))

T=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cd-bench-central.XXXXXX")
PIDS=
cleanup() {
	set +e # a failing kill or wait must not end the cleanup early
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() { # URL PID: until URL answers 2xx, or PID died
	for _ in $(seq 200); do
		curl -sf -o /dev/null "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "n/a" }'; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

ADMIN=$(hex)
AGENT=$(hex)
printf 'admin %s\nagent %s\n' "$ADMIN" "$AGENT" >"$T/tokens"
chmod 0600 "$T/tokens"
start_deployd() { # NAME ROLE ZONE PORT CONF → DPID
	"$DEPLOYD" --config "$5" --role "$2" --region us-east --zone "$3" --state-dir "$T/$1" \
		--listen "127.0.0.1:$4" --token-file "$T/tokens" --log-level warn >"$T/$1.log" 2>&1 &
	DPID=$!
	PIDS="$PIDS $DPID"
	wait_http "http://127.0.0.1:$4/readyz" "$DPID" || {
		echo "bench/central: deployd $1 did not start:" >&2
		tail -5 "$T/$1.log" >&2
		exit 1
	}
}

echo "# bench/central on $(uname -r), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# deployd: $DEPLOYD ($("$DEPLOYD" --version)); wrk, $("$NGINX" -v 2>&1 | sed 's/.*: //')"

# ---- 1. GET state vs civetweb hello ---------------------------------------------------------
mkdir -p "${BUILD}/bench-central"
cc -O2 -Wall -Wextra -Werror -o "$BUILD/bench-central/hello" bench/central/hello.c -lcivetweb
printf 'threads = %s\ntick_interval_ms = 1000\n' "$THREADS" >"$T/api.conf"
APORT=$(free_port)
start_deployd api cluster,artifacts us-east-1 "$APORT" "$T/api.conf"
API_PID=$DPID
spec='{"name":"web","target":"//bench:web","reqs":{"hosts":1,"vcpus":0.1,"memory_mb":16,"storage":{"size_mb":1}}}'
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" \
	-H 'Content-Type: application/json' --data "$spec" \
	"http://127.0.0.1:$APORT/v1/jobs/us-east/us-east-1/web")
[ "$code" = 201 ] || [ "$code" = 200 ] || { echo "bench/central: PutJob answered $code" >&2; exit 1; }
SURL="http://127.0.0.1:$APORT/v1/jobs/us-east/us-east-1/web/state"
curl -sf -H "Authorization: Bearer $ADMIN" "$SURL" >"$T/state.json"
echo "# GET state body: $(cat "$T/state.json")"
# A second job with STATE_TASKS tasks running on simulated hosts: the realistic body size.
SIMPORT=$(free_port)
python3 tests/e2e/hostsim.py "$SIMPORT" "$APORT" "$AGENT" "$STATE_TASKS" us-east-1 >"$T/sim0.log" 2>&1 &
PIDS="$PIDS $!"
spec10="{\"name\":\"web$STATE_TASKS\",\"target\":\"//bench:web\",\"reqs\":{\"hosts\":$STATE_TASKS,\"vcpus\":0.1,\"memory_mb\":16,\"storage\":{\"size_mb\":1}}}"
S10URL="http://127.0.0.1:$APORT/v1/jobs/us-east/us-east-1/web$STATE_TASKS/state"
for _ in $(seq 300); do # hosts register within a heartbeat
	curl -s -o /dev/null -X PUT -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
		--data "$spec10" "http://127.0.0.1:$APORT/v1/jobs/us-east/us-east-1/web$STATE_TASKS"
	curl -s -H "Authorization: Bearer $ADMIN" "$S10URL" | grep -q '^{"job_id[^}]*"state":"RUNNING"' && break
	sleep 0.1
done
curl -s -H "Authorization: Bearer $ADMIN" "$S10URL" >"$T/state10.json"
grep -q '"state":"RUNNING"' "$T/state10.json" || { echo "bench/central: web$STATE_TASKS did not reach RUNNING" >&2; exit 1; }
echo "# GET state of web$STATE_TASKS: $(wc -c <"$T/state10.json") bytes, $STATE_TASKS tasks RUNNING"
HPORT=$(free_port)
"$BUILD/bench-central/hello" "127.0.0.1:$HPORT" "$THREADS" &
HELLO_PID=$!
PIDS="$PIDS $HELLO_PID"
wait_http "http://127.0.0.1:$HPORT/" "$HELLO_PID" || { echo "bench/central: hello did not start" >&2; exit 1; }
rps() { # wrk args... → req/s
	wrk -t2 -c"$WRK_C" -d"${WRK_S}s" --latency "$@" >"$T/wrk.out" 2>&1
	cat "$T/wrk.out" >>"$T/wrk.all"
	awk '/^Requests\/sec/{printf "%.0f", $2}' "$T/wrk.out"
}
lat() { awk '/^ +50%/{p50=$2} /^ +99%/{p99=$2} END{print p50 " / " p99}' "$T/wrk.out"; }
ours=$(rps -H "Authorization: Bearer $ADMIN" "$SURL")
ours_lat=$(lat)
ours10=$(rps -H "Authorization: Bearer $ADMIN" "$S10URL")
ours10_lat=$(lat)
base=$(rps "http://127.0.0.1:$HPORT/")
base_lat=$(lat)
hz=$(rps "http://127.0.0.1:$APORT/healthz")
hz_lat=$(lat)
echo "1. GET state, wrk -t2 -c$WRK_C ${WRK_S}s, $THREADS server threads each:"
echo "   deployd GET .../state  $ours req/s  (p50 / p99 $ours_lat)  job without tasks"
echo "   deployd GET .../state  $ours10 req/s  (p50 / p99 $ours10_lat)  job with $STATE_TASKS tasks RUNNING"
echo "   civetweb hello         $base req/s  (p50 / p99 $base_lat)"
echo "   (deployd GET /healthz  $hz req/s  (p50 / p99 $hz_lat): the HTTP frame alone, no auth, no store)"
echo "   ratio $(ratio "$ours" "$base")x without tasks, $(ratio "$ours10" "$base")x with $STATE_TASKS tasks   (goal >= 0.5x and >= 20000 req/s)"
errs=$(grep -c 'Non-2xx' "$T/wrk.all" || true)
[ "$errs" = 0 ] || { echo "   WARNING: wrk saw non-2xx answers:"; grep 'Non-2xx' "$T/wrk.all"; }
kill "$HELLO_PID"; wait "$HELLO_PID" 2>/dev/null || true
[ "${PARTS:-all}" = http ] && exit 0

# ---- 3. CAS GET vs nginx (before the scale run, to keep it on a quiet box) ------------------
head -c "$((CAS_MB << 20))" /dev/urandom >"$T/blob"
BHEX=$(sha256sum "$T/blob" | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" \
	-H 'Content-Type: application/octet-stream' --data-binary @"$T/blob" \
	"http://127.0.0.1:$APORT/cas/$BHEX")
[ "$code" = 201 ] || { echo "bench/central: PUT /cas answered $code" >&2; exit 1; }
mkdir -p "$T/www/cas" "$T/ngx/tmp"
mv "$T/blob" "$T/www/cas/$BHEX"
NPORT=$(free_port)
cat >"$T/ngx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $T/ngx/nginx.pid;
error_log $T/ngx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $T/ngx/tmp/body;
	proxy_temp_path $T/ngx/tmp/proxy;
	fastcgi_temp_path $T/ngx/tmp/fastcgi;
	uwsgi_temp_path $T/ngx/tmp/uwsgi;
	scgi_temp_path $T/ngx/tmp/scgi;
	server { listen 127.0.0.1:$NPORT; root $T/www; }
}
CONF
"$NGINX" -p "$T/ngx" -c "$T/ngx/nginx.conf" -e "$T/ngx/error.log" &
NGINX_PID=$!
PIDS="$PIDS $NGINX_PID"
wait_http "http://127.0.0.1:$NPORT/cas/$BHEX" "$NGINX_PID" || { echo "bench/central: nginx did not start" >&2; exit 1; }
get_mbps() { # URL → MB/s (checks the size)
	curl -s -o /dev/null -w '%{size_download} %{time_total}\n' "$1" |
		awk -v want="$((CAS_MB << 20))" '{ if ($1 != want) print 0; else printf "%.0f", $1 / 1048576 / $2 }'
}
: >"$T/cas.ours"
: >"$T/cas.ngx"
for _ in $(seq "$REPS"); do
	get_mbps "http://127.0.0.1:$APORT/cas/$BHEX" >>"$T/cas.ours"
	echo >>"$T/cas.ours"
	get_mbps "http://127.0.0.1:$NPORT/cas/$BHEX" >>"$T/cas.ngx"
	echo >>"$T/cas.ngx"
done
med() { grep . "$1" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
best() { grep . "$1" | sort -n | tail -1; }
co=$(med "$T/cas.ours")
cn=$(med "$T/cas.ngx")
echo "3. CAS GET of a $CAS_MB MiB blob, curl -o /dev/null, $REPS interleaved rounds (MiB/s):"
echo "   deployd /cas/<hex>  median $co  best $(best "$T/cas.ours")  all: $(grep . "$T/cas.ours" | tr '\n' ' ')"
echo "   nginx (sendfile)    median $cn  best $(best "$T/cas.ngx")  all: $(grep . "$T/cas.ngx" | tr '\n' ' ')"
echo "   ratio $(ratio "$co" "$cn")x (median)"
API_RSS=$(rss_kb "$API_PID")
kill "$NGINX_PID" "$API_PID"
wait "$NGINX_PID" 2>/dev/null || true
wait "$API_PID" 2>/dev/null || true
rm -rf "$T/www" "$T/api"
echo "   (deployd RSS after serving it: $API_RSS kB)"

# ---- 2. scale: HOSTS hosts, ZONES zones, JOBS x PER_JOB tasks per zone -----------------------
printf 'tick_interval_ms = 500\nheartbeat_interval_s = 2\nlost_after = 5\nthreads = 64\n' >"$T/zone.conf"
DPIDS=
PORTS=
for z in $(seq "$ZONES"); do
	p=$(free_port)
	sp=$(free_port)
	start_deployd "z$z" cluster "us-east-$z" "$p" "$T/zone.conf"
	DPIDS="$DPIDS $DPID"
	PORTS="$PORTS $p"
	python3 tests/e2e/hostsim.py "$sp" "$p" "$AGENT" "$HPZ" "us-east-$z" >"$T/sim$z.log" 2>&1 &
	PIDS="$PIDS $!"
done
ready_hosts() { # PORT
	curl -s -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$1/metrics" |
		awk '/^deployd_hosts\{.*state="READY"/{s+=$2} END{print s+0}'
}
for _ in $(seq 200); do
	all=0
	for p in $PORTS; do all=$((all + $(ready_hosts "$p"))); done
	[ "$all" = "$HOSTS" ] && break
	sleep 0.1
done
echo "2. scale: $HOSTS hosts ($HPZ per zone) READY: $all"
start=$(date +%s%N)
# shellcheck disable=SC2086 # one argument per zone port
python3 - "$ADMIN" "$JOBS" "$PER_JOB" $PORTS <<'PY' || { echo "bench/central: PutJob failed" >&2; exit 1; }
import json, sys, http.client, threading
tok, jobs, per, ports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
errs = []
def put(z, port):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    for i in range(jobs):
        spec = {"name": "job%d" % i, "target": "//sim:job%d" % i,
                "reqs": {"hosts": per, "vcpus": 0.1, "memory_mb": 16, "storage": {"size_mb": 1}}}
        c.request("PUT", "/v1/jobs/us-east/us-east-%d/job%d" % (z, i), json.dumps(spec),
                  {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status not in (200, 201):
            errs.append("zone %d job%d: %d" % (z, i, r.status)); return
ts = [threading.Thread(target=put, args=(z + 1, p)) for z, p in enumerate(ports)]
for t in ts: t.start()
for t in ts: t.join()
if errs: sys.exit("; ".join(errs))
PY
put_ms=$((($(date +%s%N) - start) / 1000000))
running_jobs() { # PORT
	curl -s -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$1/metrics" |
		awk '/^deployd_jobs\{.*state="RUNNING"/{s+=$2} END{print s+0}'
}
WANT=$((JOBS * ZONES))
deadline=$(($(date +%s) + SCALE_TIMEOUT_S))
while :; do
	run=0
	for p in $PORTS; do run=$((run + $(running_jobs "$p"))); done
	[ "$run" = "$WANT" ] && break
	[ "$(date +%s)" -ge "$deadline" ] && break
	sleep 0.2
done
ms=$((($(date +%s%N) - start) / 1000000))
sleep 1.5 # the simulators print their counters once a second
live=0
for z in $(seq "$ZONES"); do
	n=$(tail -1 "$T/sim$z.log" | python3 -c "import json,sys; print(json.load(sys.stdin)['tasks'])" 2>/dev/null || echo 0)
	live=$((live + n))
done
rss_sum=0
rss_max=0
for p in $DPIDS; do
	r=$(rss_kb "$p")
	rss_sum=$((rss_sum + r))
	[ "$r" -gt "$rss_max" ] && rss_max=$r
done
echo "   PutJob of $WANT jobs x $PER_JOB tasks ($((WANT * PER_JOB)) tasks, $ZONES zones in parallel): ${put_ms} ms"
if [ "$run" = "$WANT" ]; then
	echo "   all $((WANT * PER_JOB)) tasks RUNNING after ${ms} ms   (goal < 60000 ms)"
else
	echo "   NOT DONE: $run of $WANT jobs RUNNING after ${ms} ms (timeout ${SCALE_TIMEOUT_S} s)"
fi
echo "   tasks held by the simulated hosts: $live"
echo "   deployd RSS: $ZONES processes, max $rss_max kB, sum $rss_sum kB"
echo "   simulator (zone 1): $(tail -1 "$T/sim1.log")"
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
