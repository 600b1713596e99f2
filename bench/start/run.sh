#!/bin/sh
# Start latency of a sandboxed /bin/true: sandbox-run vs `runc run` vs `crun run` vs the plain
# fork+exec floor, side by side in one run, with equivalent isolation: pid/mnt/uts/ipc/net
# namespaces, a cgroup with memory (64 MiB, no swap) and pids (64) limits, a seccomp deny list,
# read-only host /usr and /etc, no capabilities, no_new_privs. Each start is timed from fork to
# exit of the runtime process (starter.c). Prints p50/p99 per variant and the ratios the issue
# asks for. Variants run interleaved, CHUNK starts at a time, so a load change on this shared
# machine hits every variant alike.
# Usage: bench/start/run.sh [N]   (default 200; BUILD=build-x for another build dir)
set -eu
cd "$(dirname "$0")/../.."
N=${1:-${BENCH_N:-200}}
BUILD=${BUILD:-build}
CHUNK=${CHUNK:-10}
SR=$BUILD/sandbox-run
[ "$(id -u)" = 0 ] || { echo "bench/start: needs root (cgroups, namespaces)"; exit 77; }
if [ ! -x "$SR" ] || [ ! -x "$BUILD/sandbox-init" ]; then
	echo "bench/start: build $SR and $BUILD/sandbox-init first"
	exit 1
fi
if ! command -v runc >/dev/null || ! command -v crun >/dev/null; then
	apt-get install -y runc crun >/dev/null 2>&1 || {
		apt-get update >/dev/null 2>&1 && apt-get install -y runc crun >/dev/null 2>&1
	}
fi
RUNC=$(command -v runc)
CRUN=$(command -v crun)
mkdir -p "$BUILD/bench"
cc -O2 -o "$BUILD/bench/starter" bench/start/starter.c
STARTER=$BUILD/bench/starter

W=$(mktemp -d /tmp/cd-bench-start.XXXXXX)
cleanup() {
	for d in /sys/fs/cgroup/*/"cd-bench-$$"; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

# ---- an OCI bundle equivalent to sandbox-run's defaults ----
B=$W/bundle
mkdir -p "$B/rootfs/usr" "$B/rootfs/etc" "$B/rootfs/proc" "$B/rootfs/dev" "$B/rootfs/sys" \
	"$B/rootfs/tmp"
for l in bin sbin lib lib64; do [ -e /$l ] && ln -s usr/$l "$B/rootfs/$l"; done
python3 - "$B/config.json" "$$" <<'PY'
import json, sys
deny = ["mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
        "move_mount", "open_tree", "mount_setattr", "open_by_handle_at", "kexec_load",
        "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
        "perf_event_open", "keyctl", "add_key", "request_key", "clock_settime", "clock_adjtime",
        "settimeofday", "reboot", "swapon", "swapoff", "acct", "quotactl", "lookup_dcookie",
        "iopl", "ioperm", "syslog", "uselib", "userfaultfd", "vhangup", "sethostname",
        "setdomainname", "io_uring_setup", "io_uring_enter", "io_uring_register"]
cfg = {
  "ociVersion": "1.0.2",
  "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
              "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
              "capabilities": {"bounding": [], "effective": [], "permitted": [],
                               "inheritable": [], "ambient": []},
              "noNewPrivileges": True},
  "root": {"path": "rootfs", "readonly": True},
  "hostname": "bench",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "nodev", "size=65536k"]},
    {"destination": "/usr", "type": "bind", "source": "/usr",
     "options": ["rbind", "ro", "nosuid", "nodev"]},
    {"destination": "/etc", "type": "bind", "source": "/etc",
     "options": ["rbind", "ro", "nosuid", "nodev"]},
  ],
  "linux": {
    "namespaces": [{"type": t} for t in ["pid", "network", "ipc", "uts", "mount", "cgroup"]],
    "resources": {"memory": {"limit": 64 << 20, "swap": 64 << 20}, "pids": {"limit": 64}},
    "cgroupsPath": "/cd-bench-%s/oci" % sys.argv[2],
    "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": deny, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                             {"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": 38}]},
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
    "readonlyPaths": ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"],
  },
}
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
# crun 1.8 refuses hybrid cgroups; in a cgroup2-only view the memory and pids controllers are
# absent (bound to v1 here), so crun runs without resource limits: a lower bound for crun.
del cfg["linux"]["resources"]
json.dump(cfg, open(sys.argv[1].replace(".json", "-nolimits.json"), "w"), indent=1)
PY

# the crun lower bound's starter runs in a private mount namespace that sees only cgroup2 (one
# unshare per chunk, so crun is not charged for it)
cat >"$W/cgroup2-view" <<'SH'
#!/bin/sh
exec unshare -m --propagation private /bin/sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec "$0" "$@"' "$@"
SH
chmod +x "$W/cgroup2-view"
# ... and crun with its limits: a private mount namespace without the cgroup2 mount makes the
# host look pure v1, which crun supports (memory + pids limits applied through v1)
cat >"$W/v1-view" <<'SH'
#!/bin/sh
exec unshare -m --propagation private /bin/sh -c 'umount /sys/fs/cgroup/unified && exec "$0" "$@"' "$@"
SH
chmod +x "$W/v1-view"

stats() { # file -> "p50 p99" in microseconds
	sort -n "$1" | awk '{a[NR]=$1} END {i=int(NR*0.99+0.5); if (i<1) i=1; print a[int((NR+1)/2)], a[i]}'
}

# CPU time per start (perf stat task-clock of the starter and everything it forks, inside the
# wrapper so unshare is not counted) where perf is installed: the neighbours' load disturbs it
# far less than wall time.
PERF=
command -v perf >/dev/null && PERF="perf stat -x, -e task-clock --append -o"

chunk() { # offset name [wrap] -- command...
	off=$1 name=$2 wrap=$3
	shift 4
	[ -e "$W/$name.failed" ] && return 0
	# shellcheck disable=SC2086 # $PERF is a command prefix or nothing
	if ! STARTER_OFFSET=$off $wrap $PERF ${PERF:+"$W/$name.cpu"} "$STARTER" "$CHUNK" "$@" \
		>>"$W/$name.txt" 2>"$W/$name.err"; then
		touch "$W/$name.failed"
	fi
}

report() { # name
	name=$1
	if [ -e "$W/$name.failed" ]; then
		printf '%-28s FAILED: %s\n' "$name" "$(tail -3 "$W/$name.err" | tr '\n' ' ')"
		return
	fi
	# shellcheck disable=SC2046 # two numbers, split on purpose
	set -- $(stats "$W/$name.txt")
	cpu=
	[ -s "$W/$name.cpu" ] && cpu=$(awk -F, -v n="$(wc -l <"$W/$name.txt")" \
		'/task-clock/ { ms += $1 } END { printf "%d", ms * 1000 / n }' "$W/$name.cpu")
	awk -v n="$name" -v a="$1" -v b="$2" -v c="$(wc -l <"$W/$name.txt")" -v cpu="$cpu" \
		'BEGIN {printf "%-28s p50 %8.2f ms   p99 %8.2f ms   (n=%d)", n, a / 1000, b / 1000, c
			if (cpu != "") printf "   cpu %6.2f ms per start", cpu / 1000
			printf "\n"}'
	var=$(echo "$name" | tr -c 'a-zA-Z0-9\n' _)
	eval "P50_$var=$1 CPU_$var=$cpu"
}

ratio() { # a b label
	a=$(eval echo "\${P50_$1:-}")
	b=$(eval echo "\${P50_$2:-}")
	ca=$(eval echo "\${CPU_$1:-}")
	cb=$(eval echo "\${CPU_$2:-}")
	if [ -n "$a" ] && [ -n "$b" ]; then
		awk -v n="$1/$2" -v a="$a" -v b="$b" -v g="$3" -v ca="$ca" -v cb="$cb" \
			'BEGIN {printf "p50 ratio %-42s %6.2fx", n, a / b
				if (ca != "" && cb != "" && cb > 0) printf "  cpu %6.2fx", ca / cb
				printf "  (%s)\n", g}'
	else
		printf 'p50 ratio %-42s n/a\n' "$1/$2"
	fi
}

echo "start latency of /bin/true, N=$N per variant, $(nproc) cpus, kernel $(uname -r)," \
	"load $(cut -d' ' -f1-3 /proc/loadavg)"
SRARGS="--cgroup-parent cd-bench-$$ --memory 64M --pids 64 --net none"
VARIANTS="fork-exec sandbox-run sandbox-run-init-binary sandbox-run-attach-by-pid crun crun-v1-view crun-cgroup2-view-no-limits runc"
for v in $VARIANTS; do : >"$W/$v.txt"; done
off=0
while [ "$off" -lt "$N" ]; do
	chunk "$off" fork-exec "" -- /bin/true
	# shellcheck disable=SC2086
	chunk "$off" sandbox-run "" -- "$SR" $SRARGS --id "cdbench-$$-%d" -- /bin/true
	# shellcheck disable=SC2086
	chunk "$off" sandbox-run-init-binary "" -- "$SR" $SRARGS --init-binary "$(realpath "$BUILD/sandbox-init")" \
		--id "cdbench-$$-i%d" -- /bin/true
	# shellcheck disable=SC2086
	chunk "$off" sandbox-run-attach-by-pid "" -- "$SR" $SRARGS --attach-by-pid \
		--id "cdbench-$$-p%d" -- /bin/true
	chunk "$off" crun "" -- "$CRUN" --root "$W/crun" run --bundle "$B" "cdbench-$$-c%d"
	chunk "$off" crun-v1-view "$W/v1-view" -- "$CRUN" --root "$W/crun" run --bundle "$B" \
		"cdbench-$$-w%d"
	chunk "$off" crun-cgroup2-view-no-limits "$W/cgroup2-view" -- "$CRUN" --root "$W/crun" run \
		--config "$B/config-nolimits.json" --bundle "$B" "cdbench-$$-v%d"
	chunk "$off" runc "" -- "$RUNC" --root "$W/runc" run --bundle "$B" "cdbench-$$-r%d"
	off=$((off + CHUNK))
done
for v in $VARIANTS; do report "$v"; done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

ratio sandbox_run runc "goal <= 0.5"
ratio sandbox_run crun "goal <= 1"
ratio sandbox_run crun_v1_view "goal <= 1; crun with limits, host seen as pure v1"
ratio sandbox_run crun_cgroup2_view_no_limits "goal <= 1; crun runs without limits"
ratio sandbox_run fork_exec "goal <= 3"
ratio sandbox_run_attach_by_pid sandbox_run "moving by pid vs clone3 into cgroup"
ratio sandbox_run_init_binary sandbox_run "init exec'ing sandbox-init vs staying a clone"
