#!/bin/bash
# `make demo`: the whole system on this machine, deploying the seed's FooService pipeline.
#
# Starts (state under one temp dir, one shared SQLite database, a private bridge 10.231.0.1/24):
#   deployd "central"  --role pipelines,artifacts,builder   10.231.0.1:27400
#   deployd us-east-1  --role cluster (region us-east)       10.231.0.1:27401
#   deployd eu-west-1  --role cluster (region eu-west)       10.231.0.1:27402
#   four worker hosts, each a taskd in its own network namespace on the bridge:
#   us-host-1 10.231.0.11, us-host-2 .12 (us-east-1), eu-host-1 .21, eu-host-2 .22 (eu-west-1)
# then creates a git repo from examples/foo_service_repo, the seed's FooService pipeline, and
# walks four commits through it: v1 (deployed to both zones), v2 (a rolling update), a commit
# whose unit tests fail (the run stops at "Service Tests"), and one whose health check fails
# (us-east-1 rolls back, eu-west-1 is never touched). Everything is removed at the end (or on
# Ctrl-C); DEMO_KEEP=1 leaves it running, `./demo.sh stop` stops a kept demo.
#
# Honest by construction: every line it prints about the system comes from the system's own
# API, taskctl or curl; when a piece is missing or a step fails it says which and exits 1.
set -u
ROOT=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
BIN=$ROOT/$BUILD
NET=10.231.0
GW=$NET.1
CENTRAL=$GW:27400
US=$GW:27401
EU=$GW:27402
# name:zone-short:zone:address of each worker host; FooService listens on 18081 (us), 18082 (eu)
HOSTS="us-host-1:us:us-east-1:$NET.11 us-host-2:us:us-east-1:$NET.12 eu-host-1:eu:eu-west-1:$NET.21 eu-host-2:eu:eu-west-1:$NET.22"
zone_addrs() { # zone_addrs us|eu -> "addr:port ..."
	local h out="" port=18081
	[ "$1" = eu ] && port=18082
	for h in $HOSTS; do
		IFS=: read -r _ zs _ addr <<<"$h"
		[ "$zs" = "$1" ] && out="$out $addr:$port"
	done
	echo $out
}
STEP_TIMEOUT=${DEMO_STEP_TIMEOUT:-240}
STATE_LINK=/tmp/codedeploy-demo.current

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
say() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
die() {
	printf '\n\033[1;31mdemo: %s\033[0m\n' "$*" >&2
	exit 1
}

stop_demo() {
	local t=$1
	[ -d "$t" ] || return 0
	# Jobs first, so their tasks stop cleanly (tasks outlive taskd by design).
	if [ -f "$t/tokens" ]; then
		local admin
		admin=$(awk '$1 == "admin" {print $2}' "$t/tokens")
		for z in "$US us-east us-east-1" "$EU eu-west eu-west-1"; do
			set -- $z
			curl -s -m 5 -o /dev/null -X PUT -H "Authorization: Bearer $admin" \
				-H 'Content-Type: application/json' -d '{"state":"DONE"}' \
				"http://$1/v1/jobs/$2/$3/foo-service/state" 2>/dev/null
		done
		sleep 3
	fi
	for p in "$t"/pids/*; do
		[ -f "$p" ] || continue
		kill "$(cat "$p")" 2>/dev/null
	done
	sleep 1
	for p in "$t"/pids/*; do
		[ -f "$p" ] || continue
		kill -9 "$(cat "$p")" 2>/dev/null
		rm -f "$p"
	done
	# Whatever is left in the demo's task cgroups (processes, then the groups).
	local pat
	pat=$(cat "$t/cgroup_parent" 2>/dev/null || echo none)
	find /sys/fs/cgroup -maxdepth 3 -type d -name "$pat" 2>/dev/null | while read -r cg; do
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
		sleep 0.2
		find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	# The hosts' network namespaces and the bridge.
	if [ -f "$t/net" ]; then
		local tag
		tag=$(cat "$t/net")
		for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$tag-"); do
			ip netns del "$ns" 2>/dev/null
		done
		ip link del "${tag}br" 2>/dev/null
	fi
	# Worktrees and mounts never outlive their processes; the state goes last.
	rm -rf "$t"
	[ "$(readlink "$STATE_LINK" 2>/dev/null)" = "$t" ] && rm -f "$STATE_LINK"
}

if [ "${1:-}" = stop ]; then
	t=$(readlink "$STATE_LINK" 2>/dev/null) || {
		echo "demo: nothing to stop"
		exit 0
	}
	stop_demo "$t"
	echo "demo: stopped and removed $t"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (taskd runs tasks in cgroups and namespaces)"
for b in deployd taskd taskctl; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing: run 'make' first (or it is not written yet)"
done
for c in git make cc curl ip nsenter; do
	command -v $c >/dev/null || die "$c is not installed"
done
if ip -o addr show | grep -q " $GW/"; then
	die "$GW is in use (another demo? './demo.sh stop')"
fi

T=$(mktemp -d /tmp/codedeploy-demo.XXXXXX)
ln -sfn "$T" "$STATE_LINK"
mkdir -p "$T/pids" "$T/logs"
echo "cddemo$$" >"$T/cgroup_parent"
if [ "${DEMO_KEEP:-0}" = 1 ]; then
	trap 'echo; echo "demo: kept running; ./demo.sh stop removes it"' EXIT
else
	trap 'say "cleaning up"; stop_demo "$T"; echo "removed $T"' EXIT
fi
trap 'exit 130' INT TERM

# ---- tokens: one file shared by the three deployds; taskd talks to its manager with the agent token
hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
ADMIN=$(hex)
AGENT=$(hex)
TEAM=$(hex)
printf 'admin %s\nagent %s\nteam:foo_team %s\n' "$ADMIN" "$AGENT" "$TEAM" >"$T/tokens"
printf '%s\n' "$AGENT" >"$T/agent.token"
chmod 0600 "$T/tokens" "$T/agent.token"

api() { # api METHOD HOSTPORT PATH [BODY] [extra curl args...]
	local m=$1 hp=$2 p=$3 body=${4:-}
	shift 4 2>/dev/null || shift $#
	if [ -n "$body" ]; then
		curl -s -m 30 -X "$m" -H "Authorization: Bearer $TEAM" \
			-H 'Content-Type: application/json' -d "$body" "$@" "http://$hp$p"
	else
		curl -s -m 30 -X "$m" -H "Authorization: Bearer $TEAM" "$@" "http://$hp$p"
	fi
}
jget() { # jget FIELD... < json : prints the value of a top-level field (python3-free)
	python3 -c 'import json,sys
d=json.load(sys.stdin)
for k in sys.argv[1:]:
    d=d.get(k) if isinstance(d,dict) else None
print("" if d is None else d)' "$@" 2>/dev/null
}
command -v python3 >/dev/null || die "python3 is needed to read JSON in this script"

wait_http() { # wait_http HOSTPORT NAME LOG
	for _ in $(seq 1 100); do
		curl -s -m 1 -o /dev/null "http://$1/healthz" && return 0
		sleep 0.1
	done
	tail -20 "$3" >&2
	die "$2 did not come up on $1 (log above: $3)"
}

start() { # start NAME LOG CMD...
	local name=$1 log=$2
	shift 2
	"$@" >"$log" 2>&1 &
	echo $! >"$T/pids/$name"
	disown $!
}

# ---- a private bridge and four host network namespaces --------------------------------------
say "creating a bridge ($GW/24) and four worker-host network namespaces"
TAG=cdd$$
echo "$TAG" >"$T/net"
ip link add "${TAG}br" type bridge || die "cannot create bridge ${TAG}br"
ip addr add "$GW/24" dev "${TAG}br"
ip link set "${TAG}br" up
i=0
for h in $HOSTS; do
	IFS=: read -r name _ _ addr <<<"$h"
	i=$((i + 1))
	ns=$TAG-$name
	ip netns add "$ns" || die "cannot create netns $ns"
	ip link add "${TAG}v$i" type veth peer name eth0 netns "$ns" || die "cannot create veth"
	ip link set "${TAG}v$i" master "${TAG}br" up
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	ip -n "$ns" route add default via "$GW"
done

# ---- deployd x3 ----------------------------------------------------------------------------
say "starting deployd (pipelines, artifacts, builder) and two cluster managers"
mkdir -p "$T/central" "$T/us" "$T/eu"
cat >"$T/central/deployd.conf" <<EOF
pipelines_zone = us-east-1 us-east http://$US $T/tokens
pipelines_zone = eu-west-1 eu-west http://$EU $T/tokens
pipelines_artifacts_url = http://$CENTRAL
pipelines_runners = 3
pipelines_poll_interval_s = 5
EOF
for z in us eu; do
	printf 'artifact_mirrors = http://%s\n' "$CENTRAL" >"$T/$z/deployd.conf"
done
DB="sqlite://$T/deployd.db"
start central "$T/logs/deployd-central.log" "$BIN/deployd" --config "$T/central/deployd.conf" \
	--role pipelines,artifacts,builder --state-dir "$T/central" --listen $CENTRAL --token-file "$T/tokens" --db "$DB"
wait_http $CENTRAL "deployd (central)" "$T/logs/deployd-central.log"
start us "$T/logs/deployd-us-east-1.log" "$BIN/deployd" --config "$T/us/deployd.conf" \
	--role cluster --region us-east --zone us-east-1 --state-dir "$T/us" --listen $US \
	--token-file "$T/tokens" --db "$DB"
wait_http $US "deployd us-east-1" "$T/logs/deployd-us-east-1.log"
start eu "$T/logs/deployd-eu-west-1.log" "$BIN/deployd" --config "$T/eu/deployd.conf" \
	--role cluster --region eu-west --zone eu-west-1 --state-dir "$T/eu" --listen $EU \
	--token-file "$T/tokens" --db "$DB"
wait_http $EU "deployd eu-west-1" "$T/logs/deployd-eu-west-1.log"
echo "deployd central http://$CENTRAL, us-east-1 http://$US, eu-west-1 http://$EU"

# ---- taskd on each worker host -------------------------------------------------------------
say "starting taskd on the four worker hosts"
CGP=$(cat "$T/cgroup_parent")
for h in $HOSTS; do
	IFS=: read -r name zs zone addr <<<"$h"
	mgr=$US
	[ "$zs" = eu ] && mgr=$EU
	mkdir -p "$T/$name"
	# Its own API token for SREs (taskctl); the cluster manager pushes with the agent token,
	# which is how taskd tells its tasks from local ones.
	hex >"$T/$name/local.token"
	chmod 0600 "$T/$name/local.token"
	cat >"$T/$name/taskd.conf" <<EOF
state_dir = $T/$name
listen = $addr:7411
advertise_url = http://$addr:7411
token_file = $T/$name/local.token
manager_url = http://$mgr
manager_token_file = $T/agent.token
host_id = $name
zone = $zone
cgroup_parent = $CGP-$name
EOF
	# nsenter switches only the network namespace (ip netns exec would remount /sys and hide
	# the cgroup hierarchies taskd needs).
	start "$name" "$T/logs/taskd-$name.log" nsenter --net="/run/netns/$TAG-$name" \
		"$BIN/taskd" --config "$T/$name/taskd.conf"
	wait_http "$addr:7411" "taskd $name" "$T/logs/taskd-$name.log"
done
# taskd's cgroups are <parent>-<host>: remember the pattern for cleanup
echo "$CGP-*" >"$T/cgroup_parent"
sleep 2
for z in $US $EU; do
	echo "\$ taskctl --server http://$z hosts"
	"$BIN/taskctl" --server "http://$z" --token "$ADMIN" hosts ||
		die "taskctl could not list the hosts of http://$z"
done

# ---- the repository ------------------------------------------------------------------------
say "creating the FooService git repository"
REPO=$T/git/foo
mkdir -p "$REPO"
cp -r "$ROOT/examples/foo_service_repo/." "$REPO/"
git_c() { git -C "$REPO" -c user.name=demo -c user.email=demo@example.invalid "$@"; }
git_c init -q -b main
git_c add -A
git_c commit -q -m "FooService v1"
git -C "$REPO" log --oneline | cat

# ---- the pipeline --------------------------------------------------------------------------
say "creating the seed's FooService pipeline (build -> test -> us-east-1 -> eu-west-1)"
BODY=$(sed "1s|{|{\"repo\": \"$REPO\", \"branch\": \"main\",|" "$ROOT/examples/fooservice.pipeline.json")
OUT=$(api POST $CENTRAL /v1/pipelines "$BODY")
PID=$(echo "$OUT" | jget pipeline_id)
[ -n "$PID" ] || die "creating the pipeline failed: $OUT"
echo "pipeline $PID"
api GET $CENTRAL "/v1/pipelines/$PID/schema" "" | python3 -m json.tool | sed -n '1,40p'

# show_run RUN: prints the stage table whenever it changes, until the run ends.
# Returns 0 when FINISHED, 1 when ERROR/CANCELLED, dies on timeout.
watch_run() {
	local run=$1 last="" now state deadline=$((SECONDS + STEP_TIMEOUT))
	while :; do
		now=$(api GET $CENTRAL "/v1/pipelines/$PID/runs/$run" "" | python3 -c '
import json,sys
r=json.load(sys.stdin)
print("run %s  commit %s  %s" % (r["run"], r["commit"][:10], r["state"]))
for s in r["stages"]:
    msg=s.get("error_message") or ""
    print("  %-22s %-12s %s" % (s["name"], s["state"], msg[:90]))
' 2>/dev/null)
		if [ -n "$now" ] && [ "$now" != "$last" ]; then
			printf '%s  %s\n' "$(date +%T)" "$(echo "$now" | head -1)"
			echo "$now" | tail -n +2
			last=$now
		fi
		state=$(echo "$now" | head -1 | awk '{print $NF}')
		case "$state" in
		FINISHED) return 0 ;;
		ERROR | CANCELLED) return 1 ;;
		esac
		[ $SECONDS -lt $deadline ] || die "run $run did not end within ${STEP_TIMEOUT}s (logs: $T/logs)"
		sleep 1
	done
}

trigger() { # trigger MESSAGE -> sets RUN for the repo's HEAD, as a git hook would
	local sha out
	sha=$(git -C "$REPO" rev-parse HEAD)
	out=$(api POST $CENTRAL "/v1/pipelines/$PID/runs" "{\"commit\":\"$sha\"}" -H "Idempotency-Key: hook:$sha")
	RUN=$(echo "$out" | jget run)
	[ -n "$RUN" ] || die "starting a run failed: $out"
	echo "run $RUN for $sha ($1)"
}

show_service() {
	local h name addr
	for h in $HOSTS; do
		IFS=: read -r name _ _ addr <<<"$h"
		echo "\$ taskctl --host http://$addr:7411 ps    ($name)"
		"$BIN/taskctl" --host "http://$addr:7411" --token-file "$T/$name/local.token" ps
	done
	for hp in $(zone_addrs us) $(zone_addrs eu); do
		printf '$ curl http://%s/  ->  ' "$hp"
		curl -s -m 5 "http://$hp/" || echo "(no answer)"
	done
}

# serves ZONE-SHORT VERSION ZONE: every host of the zone answers "VERSION (zone ZONE)"
serves() {
	local hp
	for hp in $(zone_addrs "$1"); do
		curl -s -m 5 "http://$hp/" | grep -q "$2 (zone $3)" || return 1
	done
}

# ---- 1: v1 to both zones -------------------------------------------------------------------
say "commit 1: FooService v1 — the run builds, tests, deploys us-east-1, then eu-west-1 (2 hosts each)"
trigger "v1"
watch_run "$RUN" || die "run $RUN failed; stage logs: curl http://$CENTRAL/v1/pipelines/$PID/runs/$RUN/stages/<name>/log"
show_service
serves us v1 us-east-1 || die "us-east-1 does not serve v1 on both hosts"
serves eu v1 eu-west-1 || die "eu-west-1 does not serve v1 on both hosts"

PREV=v1
# ---- 2: rolling update to v2 ---------------------------------------------------------------
# make check's shorter version (DEMO_SHORT=1) goes from v1 straight to the unhealthy commit.
[ "${DEMO_SHORT:-0}" = 1 ] || {
PREV=v2
say "commit 2: FooService v2 — a rolling update in both zones, one host at a time"
sed -i 's/FooService v1/FooService v2/' "$REPO/repo/foo_service/greeting.c"
git_c commit -q -am "FooService v2"
trigger "v2"
watch_run "$RUN" || die "run $RUN failed"
show_service
serves us v2 us-east-1 || die "us-east-1 does not serve v2 on both hosts"
serves eu v2 eu-west-1 || die "eu-west-1 does not serve v2 on both hosts"

# ---- 3: failing unit tests -----------------------------------------------------------------
say "commit 3: a change that fails its unit tests — the run stops at \"Service Tests\""
sed -i 's/Hello from FooService v2/Goodbye from FooService v3/' "$REPO/repo/foo_service/greeting.c"
git_c commit -q -am "FooService v3 (breaks the greeting test)"
trigger "failing tests"
if watch_run "$RUN"; then die "run $RUN should have failed at Service Tests"; fi
echo "\$ curl http://$CENTRAL/v1/pipelines/$PID/runs/$RUN/stages/Service%20Tests/log"
api GET $CENTRAL "/v1/pipelines/$PID/runs/$RUN/stages/Service%20Tests/log" "" | tail -8
serves us v2 us-east-1 || die "us-east-1 changed although tests failed"
}

# ---- 4: failing health check ---------------------------------------------------------------
say "commit 4: v4 passes its tests but fails its health check — us-east-1 rolls back, eu-west-1 is never touched"
sed -i -e 's/\(Goodbye\|Hello\) from FooService v[123]/Hello from FooService v4/' \
	-e 's/return true;/return false;/' "$REPO/repo/foo_service/greeting.c"
git_c commit -q -am "FooService v4 (unhealthy)"
trigger "unhealthy"
if watch_run "$RUN"; then die "run $RUN should have failed at us-east-1"; fi
show_service
serves us "$PREV" us-east-1 || die "us-east-1 did not roll back to $PREV"
serves eu "$PREV" eu-west-1 || die "eu-west-1 was touched"

say "done: every step above came from the running system"
cat <<EOF
Where to look next:
  pipeline state   curl -H 'Authorization: Bearer <team token>' http://$CENTRAL/v1/pipelines/$PID/state
  runs             curl ... http://$CENTRAL/v1/pipelines/$PID/runs
  stage logs       curl ... http://$CENTRAL/v1/pipelines/$PID/runs/<n>/stages/<name>/log
  jobs             taskctl --server http://$US --token <admin> jobs
  tasks on a host  taskctl --host http://$NET.11:7411 --token-file $T/us-host-1/local.token ps
  daemon logs      $T/logs/
  docs             docs/pipelines.md, docs/demo.md
(DEMO_KEEP=1 make demo keeps everything running; ./demo.sh stop removes it.)
EOF
