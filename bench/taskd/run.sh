#!/bin/sh
# taskd benchmarks (issue 7), our code and its baseline side by side in one run:
#  1. PutTask → RUNNING with the artifact already cached, p50/p99, vs `runc run -d` of the same
#     workload (a shell script that execs sleep) from a prepared bundle; interleaved, sequential.
#  2. taskd's RSS and CPU with K idle tasks (issue goal: 1,000 tasks, < 20 MB, < 1% CPU).
#  3. API GET req/s with wrk (GetTaskState of one task, ListTasks?state=, /healthz; keep-alive)
#     and taskd's CPU time per request (utime+stime from /proc/<pid>/stat over the wrk run /
#     the requests wrk counted): far less sensitive to the machine's other load than req/s.
# Usage: bench/taskd/run.sh   (env: BUILD=build-x, N=50 starts, IDLE=1000 tasks, IDLE_S=20,
#        PARTS="start idle api" (any subset; the idle tasks are started whenever idle or api is
#        asked for: the API part runs with them), WRK_S=10, PERF=file: perf record -g taskd during
#        the GetTaskState run into that file)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
N=${N:-50}
IDLE=${IDLE:-1000}
IDLE_S=${IDLE_S:-20}
PARTS=${PARTS:-start idle api}
WRK_S=${WRK_S:-10}
PERF=${PERF:-}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
[ "$(id -u)" = 0 ] || { echo "bench/taskd: needs root"; exit 77; }
for b in taskd taskd-shim sandbox-init; do
	[ -x "$BUILD/$b" ] || { echo "bench/taskd: build $BUILD/$b first"; exit 1; }
done
for c in runc wrk python3; do
	command -v $c >/dev/null || { echo "bench/taskd: $c is not installed (make deps)"; exit 1; }
done

W=$(mktemp -d /var/tmp/cd-bench-taskd.XXXXXX)
CG=cd-bench-taskd-$$
TPID=
HPID=
cleanup() {
	set +e # a failing kill or wait must not end the cleanup early
	[ -n "$TPID" ] && kill "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null
	[ -n "$HPID" ] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null
	for p in $(pgrep -f "taskd-shim $W/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	for c in $(runc list -q 2>/dev/null | grep "^cdbench$$-"); do runc delete -f "$c" >/dev/null 2>&1; done
	for d in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/unified/"$CG"; do
		[ -d "$d" ] || continue
		for c in "$d"/*/; do
			[ -f "$c/cgroup.procs" ] || continue
			for p in $(cat "$c/cgroup.procs"); do kill -9 "$p" 2>/dev/null; done
			sleep 0.05
			rmdir "$c" 2>/dev/null
		done
		rmdir "$d" 2>/dev/null
	done
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the workload, as an artifact on a local mirror
mkdir -p "$W/www/cas"
printf '#!/bin/sh\nexec sleep 100000\n' >"$W/app"
HEX=$(sha256sum "$W/app" | cut -d' ' -f1)
cp "$W/app" "$W/www/cas/$HEX"
MPORT=$(free_port)
(cd "$W/www" && exec python3 -m http.server "$MPORT" --bind 127.0.0.1 >/dev/null 2>&1) &
HPID=$!

# ---- taskd
PORT=$(free_port)
printf 'cgroup_parent = %s\nmax_tasks = %s\nlog_level = warn\n' "$CG" "$((IDLE + N + 10))" >"$W/taskd.conf"
"$BUILD/taskd" --config "$W/taskd.conf" --state-dir "$W/state" --listen "127.0.0.1:$PORT" \
	--host-id bench >"$W/taskd.log" 2>&1 &
TPID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.05; done
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$MPORT/" && break; sleep 0.05; done
TOKEN=$(cat "$W/state/taskd.token")

# ---- the same workload as an OCI bundle for runc (host /usr, /etc read-only, net ns, no caps)
B=$W/bundle
mkdir -p "$B/rootfs/usr" "$B/rootfs/etc" "$B/rootfs/app" "$B/rootfs/proc" "$B/rootfs/dev" \
	"$B/rootfs/tmp"
for l in bin sbin lib lib64; do [ -e /$l ] && ln -s usr/$l "$B/rootfs/$l"; done
cp "$W/app" "$B/rootfs/app/app"
chmod 755 "$B/rootfs/app/app"
python3 - "$B/config.json" <<'PY'
import json, sys
cfg = {"ociVersion": "1.0.2",
       "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/app/app"],
                   "env": ["PATH=/usr/bin:/bin"], "cwd": "/", "noNewPrivileges": True,
                   "capabilities": {k: [] for k in ("bounding", "effective", "permitted",
                                                    "inheritable", "ambient")}},
       "root": {"path": "rootfs", "readonly": True}, "hostname": "bench",
       "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                  {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "mode=755"]},
                  {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
                  {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
                  {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]}],
       "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "uts", "ipc", "network")],
                 "resources": {"memory": {"limit": 67108864}, "pids": {"limit": 4096}}}}
json.dump(cfg, open(sys.argv[1], "w"))
PY

# ---- 1. start latency, interleaved: taskd PutTask → RUNNING (event seen), runc run -d
part start && python3 - "$PORT" "$TOKEN" "$MPORT" "$HEX" "$N" "$B" "$$" <<'PY'
import json, subprocess, sys, time, urllib.request
port, token, mport, hexd, n, bundle, pid = sys.argv[1:8]
n = int(n)
base = "http://127.0.0.1:%s" % port
H = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def req(method, path, body=None):
    r = urllib.request.Request(base + path, method=method, headers=H,
                               data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(r, timeout=60) as f:
        return json.loads(f.read() or b"null")
def last_seq():
    return req("GET", "/v1/events?after=0&wait=0")["last"]
def put(i):
    return {"job": "job://bench/bench-1/lat", "index": i,
            "spec": {"name": "lat", "target": "//bench:app", "command": ["/app/app"],
                     "stop_grace_s": 1, "restart": {"policy": "never"}},
            "artifact": {"digest": "sha256:" + hexd, "mirrors": ["http://127.0.0.1:" + mport]}}
def wait_running(tid, after):
    while True:
        ev = req("GET", "/v1/events?after=%d&wait=10" % after)
        for e in ev["events"]:
            after = max(after, e["seq"])
            if e["task_id"] == tid and e["data"]["state"] == "RUNNING":
                return
            if e["task_id"] == tid and e["data"]["state"] == "ERROR":
                sys.exit("task failed: %s" % e)
# warm: the first put fetches the artifact; it is cached from then on
seq = last_seq()
t = req("PUT", "/v1/tasks", put(0))
wait_running(t["task_id"], seq)
ids = [t["task_id"]]
td, rc = [], []
for i in range(1, n + 1):
    seq = last_seq()
    t0 = time.perf_counter()
    t = req("PUT", "/v1/tasks", put(i))
    wait_running(t["task_id"], seq)
    td.append(time.perf_counter() - t0)
    ids.append(t["task_id"])
    name = "cdbench%s-%d" % (pid, i)
    t0 = time.perf_counter()
    subprocess.run(["runc", "run", "-d", "-b", bundle, name], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rc.append(time.perf_counter() - t0)
    subprocess.run(["runc", "delete", "-f", name], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
for tid in ids:
    req("PUT", "/v1/tasks/%s/state" % tid, {"state": "DONE"})
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] * 1000
print("start to RUNNING, %d sequential starts each (artifact cached):" % n)
print("  taskd PutTask -> RUNNING   p50 %6.1f ms  p99 %6.1f ms" % (pct(td, 50), pct(td, 99)))
print("  runc run -d               p50 %6.1f ms  p99 %6.1f ms" % (pct(rc, 50), pct(rc, 99)))
print("  ratio taskd/runc          p50 %.2f  p99 %.2f" % (pct(td, 50) / pct(rc, 50),
                                                          pct(td, 99) / pct(rc, 99)))
PY

# ---- 2. idle tasks: taskd RSS and CPU
part idle || part api || exit 0
python3 - "$PORT" "$TOKEN" "$MPORT" "$HEX" "$IDLE" <<'PY'
import json, sys, urllib.request
port, token, mport, hexd, k = sys.argv[1:6]
base = "http://127.0.0.1:%s" % port
H = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
for i in range(int(k)):
    body = {"job": "job://bench/bench-1/idle", "index": i,
            "spec": {"name": "idle", "target": "//bench:app", "command": ["/app/app"],
                     "stop_grace_s": 1, "reqs": {"memory_mb": 16}},
            "artifact": {"digest": "sha256:" + hexd, "mirrors": ["http://127.0.0.1:" + mport]}}
    r = urllib.request.Request(base + "/v1/tasks", method="PUT", headers=H,
                               data=json.dumps(body).encode())
    urllib.request.urlopen(r, timeout=120).read()
PY
running=0
for _ in $(seq 600); do
	running=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" |
		sed -n 's/^taskd_tasks{state="RUNNING"} //p')
	[ "${running:-0}" -ge "$IDLE" ] && break
	sleep 0.5
done
sleep 3
ticks() { awk '{ print $14 + $15 }' "/proc/$TPID/stat"; }
HZ=$(getconf CLK_TCK)
if part idle; then
c0=$(ticks)
sleep "$IDLE_S"
c1=$(ticks)
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$TPID/status")
anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$TPID/status")
shimrss=$(for p in $(pgrep -f "taskd-shim $W/" | head -20); do awk '/^RssAnon/ { print $2 }' /proc/$p/status; done |
	awk '{ s += $1; n++ } END { if (n) printf "%.0f", s / n }')
echo "idle: $running tasks RUNNING (asked for $IDLE)"
echo "  taskd RSS $((rss / 1024)) MB (anonymous $((anon / 1024)) MB); a taskd-shim ~${shimrss} kB anonymous"
awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$IDLE_S" \
	'BEGIN { printf "  taskd CPU %.2f%% of one core over %d s\n", (b - a) * 100 / hz / s, s }'
fi

# ---- 3. API: req/s (wrk, keep-alive) and taskd CPU per request, with the idle tasks there
# wrk_cpu LABEL URL [perf-file]: one wrk run; prints req/s, latency and taskd's CPU µs/request
wrk_cpu() {
	out=$W/wrk.out
	echo "wrk -t2 -c16 -d${WRK_S}s GET $1:"
	PERFPID=
	if [ -n "${3:-}" ]; then
		perf record -g -o "$3" -p "$TPID" -- sleep "$((WRK_S + 1))" >/dev/null 2>&1 &
		PERFPID=$!
		sleep 0.5
	fi
	c0=$(ticks)
	wrk -t2 -c16 -d"${WRK_S}s" -H "Authorization: Bearer $TOKEN" "$2" >"$out"
	c1=$(ticks)
	[ -z "$PERFPID" ] || wait "$PERFPID" || true
	sed -n 's/^ *\(Requests\/sec\|Latency\).*/  &/p' "$out"
	n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$out")
	awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v n="$n" -v l="$(cat /proc/loadavg)" 'BEGIN {
		printf "  taskd CPU per request: %.1f us (%d requests, %.2f s CPU; loadavg %s)\n",
		       (b - a) / hz * 1e6 / n, n, (b - a) / hz, l }'
}
if part api; then
	ID=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/tasks?state=RUNNING" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"][0]["task_id"])')
	wrk_cpu "/v1/tasks/$ID" "http://127.0.0.1:$PORT/v1/tasks/$ID" "$PERF"
	wrk_cpu "/healthz" "http://127.0.0.1:$PORT/healthz"
fi

# ---- stop everything (tasks outlive taskd by design: stop them through it)
for id in $(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/tasks" |
	python3 -c 'import json,sys; print(" ".join(t["task_id"] for t in json.load(sys.stdin)["tasks"]))'); do
	curl -s -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		-d '{"state":"DONE"}' "http://127.0.0.1:$PORT/v1/tasks/$id/state"
done
for _ in $(seq 300); do
	pgrep -f "taskd-shim $W/" >/dev/null || break
	sleep 0.2
done
