# Simulator of many taskd hosts, shared by tests/e2e/central_scale.sh and bench/central/run.sh:
# one python process speaking the taskd side of docs/protocol-cluster.md (heartbeats every
# 1.5 s, PutTask -> RUNNING notification, SetTaskState, DELETE; no real processes). Every host
# is a path prefix on this process's one port. Prints its counters as one JSON line a second.
# Usage: hostsim.py PORT DEPLOYD_PORT AGENT_TOKEN NHOSTS [ZONE]   (ZONE default us-east-1)
import json, sys, threading, time, http.client, queue
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, dport, token, nhosts = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
zone = sys.argv[5] if len(sys.argv) > 5 else "us-east-1"
lock = threading.RLock()
tasks = {h: {} for h in range(nhosts)}      # host -> task_id -> dict
seq = [0]
outq = queue.Queue()
stats = {"put": 0, "state": 0, "delete": 0, "notify": 0, "hb": 0, "errors": 0}

def next_seq():
    with lock:
        seq[0] += 1
        return seq[0]

def notify(host, t):
    outq.put(("/v1/tasks/%s/state" % t["task_id"], {
        "task_id": t["task_id"], "job": t["job"], "host_id": "h%d" % host, "seq": next_seq(),
        "state": t["state"], "reason": t.get("reason"), "healthy": t["state"] == "RUNNING",
        "restarts": 0}))

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, obj=None):
        b = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(code)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def route(self):
        parts = self.path.split("/")        # ['', 'h3', 'v1', 'tasks', ...]
        if self.headers.get("Authorization") != "Bearer " + token:
            return None, None
        return int(parts[1][1:]), parts[2:]
    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        host, rest = self.route()
        if host is None: return self.reply(401, {})
        with lock:
            if rest == ["v1", "tasks"]:
                stats["put"] += 1
                t = tasks[host].get(body["task_id"])
                if t is None:
                    t = {"task_id": body["task_id"], "job": body["job"], "state": "RUNNING"}
                    tasks[host][t["task_id"]] = t
                    notify(host, t)
                return self.reply(201, {"task_id": t["task_id"], "state": "PENDING"})
            stats["state"] += 1
            t = tasks[host].get(rest[2])
            if t is None: return self.reply(404, {"status": 404})
            if body.get("state") == "DONE" and t["state"] == "RUNNING":
                t["state"], t["reason"] = "DONE", "stopped"
                notify(host, t)
            return self.reply(200, {"task_id": t["task_id"], "state": t["state"]})
    def do_DELETE(self):
        host, rest = self.route()
        if host is None: return self.reply(401, {})
        with lock:
            stats["delete"] += 1
            tasks[host].pop(rest[2], None)
        self.reply(204)

def sender():
    c = http.client.HTTPConnection("127.0.0.1", dport, timeout=30)
    while True:
        path, body = outq.get()
        for attempt in range(20):
            try:
                c.request("POST", path, json.dumps(body), {"Authorization": "Bearer " + token,
                          "Content-Type": "application/json"})
                r = c.getresponse(); r.read()
                if r.status < 500: break
            except Exception:
                c = http.client.HTTPConnection("127.0.0.1", dport, timeout=30)
            time.sleep(0.05)
        with lock: stats["notify"] += 1

def heartbeats():
    c = http.client.HTTPConnection("127.0.0.1", dport, timeout=30)
    while True:
        start = time.time()
        for h in range(nhosts):
            with lock:
                ts = [{"task_id": t["task_id"], "state": t["state"], "healthy": t["state"] == "RUNNING"}
                      for t in tasks[h].values()]
            body = {"host_id": "h%d" % h, "zone": zone, "addr": "http://127.0.0.1:%d/h%d" % (port, h),
                    "resources": {"vcpus": 64, "memory_mb": 262144, "storage_mb": 10000000},
                    "tasks": ts, "version": "sim"}
            try:
                c.request("POST", "/v1/hosts/h%d/heartbeat" % h, json.dumps(body),
                          {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
                r = c.getresponse(); r.read()
                with lock: stats["hb"] += 1
            except Exception:
                c = http.client.HTTPConnection("127.0.0.1", dport, timeout=30)
                with lock: stats["errors"] += 1
        time.sleep(max(0, 1.5 - (time.time() - start)))

for _ in range(4):
    threading.Thread(target=sender, daemon=True).start()
threading.Thread(target=heartbeats, daemon=True).start()
srv = ThreadingHTTPServer(("127.0.0.1", port), H)
srv.daemon_threads = True
threading.Thread(target=srv.serve_forever, daemon=True).start()
while True:
    time.sleep(1)
    with lock:
        n = sum(len(v) for v in tasks.values())
        print(json.dumps(dict(stats, tasks=n)), flush=True)
