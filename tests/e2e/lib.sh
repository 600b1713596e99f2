# tests/e2e/lib.sh — what the end-to-end scripts share: TAP counters and checks, skips, the
# build paths, a private temporary directory, starting taskd and deployd and waiting until they
# answer, and one cleanup trap. Sourced (POSIX sh), after `set -u`:
#
#	. "$(dirname "$0")/lib.sh"
#
# Cleanup, from the EXIT/INT/TERM trap e2e_init installs, in this order: the script's own
# e2e_on_cleanup (if it defines one); every process whose pid is in a variable named in
# E2E_PID_VARS (the variables are read at cleanup time, so a restarted daemon's new pid is the
# one stopped); the taskd-shims recorded in the state directories of E2E_STATE_DIRS; every
# process in, and then, the cgroups named in E2E_CGROUPS; the network namespaces whose name
# starts with E2E_NETNS_PREFIX (the bridges and veths inside go with them); the address leases
# in E2E_IPAM_DIR whose address starts with one of E2E_IPAM_PREFIXES; the temporary directory $T
# (kept when KEEP is set).
# Processes are only ever stopped by pid: never by a name pattern, which would hit the
# processes of other tests running at the same time.

BUILD=${BUILD:-build}
TASKD=${TASKD:-$BUILD/taskd}
TASKCTL=${TASKCTL:-$BUILD/taskctl}
DEPLOYD=${DEPLOYD:-$BUILD/deployd}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
SHIM=${SHIM:-$BUILD/taskd-shim}
E2E_PID_VARS=${E2E_PID_VARS:-}
E2E_STATE_DIRS=${E2E_STATE_DIRS:-}
E2E_CGROUPS=${E2E_CGROUPS:-}
E2E_NETNS_PREFIX=${E2E_NETNS_PREFIX:-}
E2E_IPAM_DIR=${E2E_IPAM_DIR:-/run/codedeploy/ipam}
E2E_IPAM_PREFIXES=${E2E_IPAM_PREFIXES:-}
E2E_TASKD_WRAP=${E2E_TASKD_WRAP:-}
E2E_STOP_SIGNAL=${E2E_STOP_SIGNAL:-TERM}
T=

# ---------------------------------------------------------------- TAP
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2"; }
# check NAME SHELL-EXPR [DIAGNOSTIC]: evaluated in this shell (functions and variables visible)
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
# skip_all REASON: the whole script is skipped (kselftest's 77)
skip_all() { echo "1..0 # SKIP $1"; exit 77; }
# tap_end: the plan, and the exit status: 0 when every check passed
tap_end() { echo "1..$n"; exit "$fail"; }

# ---------------------------------------------------------------- requirements
need_root() { [ "$(id -u)" = 0 ] || skip_all "needs root (${1:-cgroups, namespaces})"; }
need_exec() { for b in "$@"; do [ -x "$b" ] || skip_all "$b not built"; done; }
need_cmd() { for c in "$@"; do command -v "$c" >/dev/null || skip_all "$c not installed"; done; }

# ---------------------------------------------------------------- helpers
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_http URL [SECONDS]: until URL answers (any status), at most SECONDS (default 5)
wait_http() { _e2e_wait_http "" "$1" "${2:-5}"; }
# _e2e_wait_http WRAP URL SECONDS: wait_http with curl run under the command prefix WRAP
_e2e_wait_http() {
	_i=0
	while [ $_i -lt $(($3 * 20)) ]; do
		$1 curl -s -o /dev/null "$2" && return 0
		sleep 0.05
		_i=$((_i + 1))
	done
	return 1
}
# hex: 64 random hex digits (a token)
hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# e2e_spawn_taskd PORT STATE-DIR CONFIG LOG [TASKD-ARGS...]: starts taskd on 127.0.0.1:PORT in
# the background (TASKD_PID; add TASKD_PID to E2E_PID_VARS), its output appended to LOG, and
# returns at once. When E2E_TASKD_WRAP is set, taskd runs under that command prefix (split into
# words), one that execs its arguments so that TASKD_PID is taskd's own pid, e.g.
# "env NOTIFY_SOCKET=$T/notify.sock" or "nsenter --net=/run/netns/NAME".
e2e_spawn_taskd() {
	_port=$1 _state=$2 _conf=$3 _log=$4
	shift 4
	$E2E_TASKD_WRAP "$TASKD" --config "$_conf" --state-dir "$_state" \
		--listen "127.0.0.1:$_port" "$@" >>"$_log" 2>&1 &
	TASKD_PID=$!
}

# e2e_start_taskd PORT STATE-DIR CONFIG LOG [TASKD-ARGS...]: e2e_spawn_taskd, then waits (5 s)
# for its /healthz, asked under E2E_TASKD_WRAP too (a taskd in a network namespace answers only
# there). Returns 1 when it did not answer.
e2e_start_taskd() {
	e2e_spawn_taskd "$@"
	_e2e_wait_http "$E2E_TASKD_WRAP" "http://127.0.0.1:$1/healthz" 5
}

# e2e_start_deployd PORT LOG [DEPLOYD-ARGS...]: starts deployd on 127.0.0.1:PORT (0: a port of
# its choice, when nothing needs its advertised URL) in the background (DEPLOYD_PID; add it to
# E2E_PID_VARS), waits for its "deployd ready" line and sets DEPLOYD_PORT and DEPLOYD_URL.
# Returns 1 when it did not come up within 10 s.
e2e_start_deployd() {
	_port=$1 _log=$2
	shift 2
	"$DEPLOYD" "$@" --listen "127.0.0.1:$_port" >>"$_log" 2>&1 &
	DEPLOYD_PID=$!
	DEPLOYD_PORT=
	_i=0
	while [ $_i -lt 100 ]; do
		DEPLOYD_PORT=$(sed -n 's/.*msg="deployd ready".* port=\([0-9]*\).*/\1/p' "$_log" |
			tail -1)
		[ -n "$DEPLOYD_PORT" ] && break
		kill -0 "$DEPLOYD_PID" 2>/dev/null || break
		sleep 0.1
		_i=$((_i + 1))
	done
	DEPLOYD_URL=http://127.0.0.1:$DEPLOYD_PORT
	[ -n "$DEPLOYD_PORT" ]
}

# e2e_start_nginx DIR ROOT [SERVER-DIRECTIVES] [LOG-FORMAT]: a private nginx (no master, one
# worker, everything under DIR: nginx.conf, error.log, access.log, temp paths) serving ROOT on a
# free loopback port, in the background (NGINX_PID; add it to E2E_PID_VARS). SERVER-DIRECTIVES
# go into its server block (locations, limits); LOG-FORMAT is the access log's format (nginx's
# combined when empty; no single quote in it). Waits until it serves a marker file it puts in ROOT (so the port is
# ours, not another test's) and sets NGINX_PORT and NGINX_URL; tries 5 ports, returns 1 when
# none worked (DIR/error.log says why).
e2e_start_nginx() {
	_dir=$1 _root=$2
	mkdir -p "$_dir/tmp" "$_root" || return 1
	printf '%s' "$_dir" >"$_root/.e2e-nginx-ready"
	for _try in 1 2 3 4 5; do
		NGINX_PORT=$(free_port)
		NGINX_URL=http://127.0.0.1:$NGINX_PORT
		{
			echo "daemon off;"
			echo "master_process off;"
			echo "worker_processes 1;"
			echo "pid $_dir/nginx.pid;"
			echo "error_log $_dir/error.log warn;"
			echo "events { worker_connections 1024; }"
			echo "http {"
			if [ -n "${4:-}" ]; then
				printf "\tlog_format e2e '%s';\n" "$4"
				echo "	access_log $_dir/access.log e2e;"
			else
				echo "	access_log $_dir/access.log;"
			fi
			for _t in client_body proxy fastcgi uwsgi scgi; do
				echo "	${_t}_temp_path $_dir/tmp/$_t;"
			done
			echo "	server {"
			echo "		listen 127.0.0.1:$NGINX_PORT;"
			echo "		root $_root;"
			printf '\t\t%s\n' "${3:-}"
			echo "	}"
			echo "}"
		} >"$_dir/nginx.conf"
		"$NGINX" -p "$_dir" -c "$_dir/nginx.conf" -e "$_dir/error.log" 2>>"$_dir/error.log" &
		NGINX_PID=$!
		_i=0
		while [ $_i -lt 100 ]; do
			[ "$(curl -s "$NGINX_URL/.e2e-nginx-ready" 2>/dev/null)" = "$_dir" ] && return 0
			kill -0 "$NGINX_PID" 2>/dev/null || break
			sleep 0.05
			_i=$((_i + 1))
		done
		e2e_stop "$NGINX_PID"
		NGINX_PID=
	done
	return 1
}

# e2e_stop PID [SIGNAL]: signal one process (default TERM) and reap it when it is our child.
e2e_stop() {
	[ -n "$1" ] || return 0
	kill "-${2:-TERM}" "$1" 2>/dev/null && wait "$1" 2>/dev/null
	return 0
}

# e2e_kill_shims STATE-DIR: SIGKILL the taskd-shims that taskd recorded in
# STATE-DIR/tasks/*/status.json, by pid, only when that pid is still the same process (its
# /proc start time is the recorded one, its name taskd-shim): a reused pid is left alone.
e2e_kill_shims() {
	[ -d "$1/tasks" ] || return 0
	python3 - "$1" <<'EOF'
import glob, json, os, signal, sys
for path in glob.glob(os.path.join(sys.argv[1], "tasks", "*", "status.json")):
    try:
        st = json.load(open(path))
        pid, start = int(st["shim_pid"]), int(st["shim_start"])
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if pid > 1 and comm == "taskd-shim" and int(stat[stat.rindex(")") + 2:].split()[19]) == start:
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, KeyError, IndexError):
        pass
EOF
}

# e2e_cgroup_cleanup NAME: SIGKILL every process in the cgroups below NAME (in every mounted
# hierarchy), then remove them and NAME.
e2e_cgroup_cleanup() {
	for _d in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/unified/"$1"; do
		[ -d "$_d" ] || continue
		for _c in "$_d"/*/; do
			[ -f "$_c/cgroup.procs" ] || continue
			for _p in $(cat "$_c/cgroup.procs"); do kill -9 "$_p" 2>/dev/null; done
			sleep 0.1
			rmdir "$_c" 2>/dev/null
		done
		rmdir "$_d" 2>/dev/null
	done
	return 0
}

# e2e_cgroup_left NAME: prints how many cgroups are left below NAME, in every hierarchy (0 once
# every task cgroup is gone).
e2e_cgroup_left() {
	ls -d /sys/fs/cgroup/*/"$1"/*/ /sys/fs/cgroup/unified/"$1"/*/ 2>/dev/null | wc -l
}

# e2e_netns_add NAME: a network namespace NAME with its loopback up; 1 when it cannot be made.
# For the cleanup to delete it, NAME starts with E2E_NETNS_PREFIX; end that prefix with a
# separator ("cdx$$-"), or it is also a prefix of the names of another run (pid $$ followed by
# more digits).
e2e_netns_add() {
	ip netns add "$1" 2>/dev/null || return 1
	ip -n "$1" link set lo up
}

# e2e_netns_cleanup PREFIX: delete the network namespaces whose name starts with PREFIX.
e2e_netns_cleanup() {
	[ -n "$1" ] || return 0
	command -v ip >/dev/null || return 0
	for _ns in $(ip netns list 2>/dev/null | awk -v p="$1" 'index($1, p) == 1 {print $1}'); do
		ip netns del "$_ns" 2>/dev/null
	done
	return 0
}

# e2e_ipam_leases PREFIX: prints how many address leases (taskd's IPAM: one file per leased
# address, named by it) in E2E_IPAM_DIR are of an address starting with PREFIX — a whole
# address, or a prefix ending in "." ("10.213.7.") so that it cannot match a longer octet.
e2e_ipam_leases() {
	_c=0
	for _f in "$E2E_IPAM_DIR/$1"*; do
		[ -e "$_f" ] && _c=$((_c + 1))
	done
	echo "$_c"
}

# e2e_ipam_cleanup PREFIX: remove those leases (after taskd and its tasks are gone; a lease of a
# running task is its address).
e2e_ipam_cleanup() {
	[ -n "$1" ] || return 0
	for _f in "$E2E_IPAM_DIR/$1"*; do
		[ -e "$_f" ] && rm -f "$_f"
	done
	return 0
}

e2e_cleanup() {
	trap - EXIT INT TERM
	command -v e2e_on_cleanup >/dev/null 2>&1 && e2e_on_cleanup
	for _v in $E2E_PID_VARS; do
		eval "_pid=\${$_v:-}"
		e2e_stop "$_pid" "$E2E_STOP_SIGNAL"
	done
	for _s in $E2E_STATE_DIRS; do e2e_kill_shims "$_s"; done
	for _cg in $E2E_CGROUPS; do e2e_cgroup_cleanup "$_cg"; done
	e2e_netns_cleanup "$E2E_NETNS_PREFIX"
	for _p in $E2E_IPAM_PREFIXES; do e2e_ipam_cleanup "$_p"; done
	if [ -n "$T" ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$T"
	elif [ -n "$T" ]; then
		echo "# kept $T" >&2
	fi
}

# e2e_init NAME [PARENT]: the private temporary directory T (PARENT/cd-NAME.XXXXXX, default
# /tmp) and the cleanup trap. On INT/TERM the trap cleans up and exits 130/143.
e2e_init() {
	T=$(mktemp -d "${2:-/tmp}/cd-$1.XXXXXX") || skip_all "cannot create a temporary directory"
	trap e2e_cleanup EXIT
	trap 'e2e_cleanup; exit 130' INT
	trap 'e2e_cleanup; exit 143' TERM
}

# e2e_valgrind_leaks LOG CMD...: run CMD under valgrind, 0 when it leaked nothing definitely or
# indirectly (its own exit status does not count here); the report is in LOG. 77 when valgrind
# is not installed.
e2e_valgrind_leaks() {
	command -v valgrind >/dev/null || return 77
	_log=$1
	shift
	valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file="$_log" \
		"$@" >/dev/null 2>&1
	[ $? != 99 ]
}

# check_no_leaks NAME LOG CMD...: one check, that CMD leaks no memory (e2e_valgrind_leaks);
# skipped without valgrind.
check_no_leaks() {
	_name=$1 _vlog=$2
	shift 2
	e2e_valgrind_leaks "$_vlog" "$@"
	case $? in
	0) ok "$_name" ;;
	77) skip "$_name" "valgrind not installed" ;;
	*) notok "$_name" "$(grep -E 'definitely|indirectly|at 0x|by 0x' "$_vlog" | head -8 | tr '\n' ' ')" ;;
	esac
}

# sigint_status CMD...: start CMD with SIGINT's default action (a background job of a script
# ignores it), interrupt it after a second as Ctrl-C would, print how it ended: "-2" = killed by
# SIGINT (130 in a shell), a number = its exit status, "hung" = still running 5 s later.
sigint_status() {
	python3 - "$@" <<'EOF'
import signal, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
time.sleep(1)
p.send_signal(signal.SIGINT)
try:
    print(p.wait(timeout=5))
except subprocess.TimeoutExpired:
    p.kill()
    print("hung")
EOF
}

# same_events CURSOR WATCHED FULL: the JSON Lines of WATCHED (what a running `events -w` prints)
# come to hold the events of FULL (`events` afterwards) in the same order, each once, within 5 s;
# CURSOR is the member that numbers them (seq or id). Prints what differs when they do not.
same_events() {
	python3 - "$@" <<'EOF'
import json, sys, time
key = sys.argv[1]
full = [json.loads(l)[key] for l in open(sys.argv[3]) if l.strip()]
for _ in range(50):
    watched = [json.loads(l)[key] for l in open(sys.argv[2]) if l.strip() and l.endswith("\n")]
    if full and full[-1] in watched:
        break
    time.sleep(0.1)
dups = len(watched) - len(set(watched))
if dups or watched[:len(full)] != full or not full:
    print("watched %d (%d repeated), expected %d: %s ... vs %s ..." %
          (len(watched), dups, len(full), watched[:12], full[:12]))
    sys.exit(1)
EOF
}
