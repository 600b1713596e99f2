/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sandbox selftest: real tasks through sandbox/launch.h on this kernel. TAP on stdout, exit 77
 * when not root or no cgroup hierarchy. Every cgroup lives under a parent unique to this run
 * ("codedeploy-selftest-<pid>", removed at the end); bridge tests run in a private network
 * namespace of this process, so the host's network is never touched.
 * The same binary is its own in-sandbox helper ("--helper ACTION"): it is copied into the
 * artifact dir and runs as /app/helper to make raw syscalls the shell cannot.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/fs.h"
#include "lib/str.h"
#include "sandbox/launch.h"

/* ---------------- helper side (runs inside the sandbox) ---------------- */

static void report(const char *name, long r)
{
	printf("%s=%s\n", name, r < 0 ? strerrorname_np(errno) : "OK");
}

static volatile sig_atomic_t got_sig;
static void on_sig(int sig)
{
	got_sig = sig;
}

static int helper(int argc, char **argv)
{
	const char *a = argv[2];

	setvbuf(stdout, NULL, _IONBF, 0);
	if (streq(a, "syscalls")) {
		struct timespec ts = { 0 };
		long r;

		report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
		report("umount2", umount2("/tmp", 0));
		report("unshare_user", unshare(CLONE_NEWUSER));
		report("unshare_user_mount", unshare(CLONE_NEWUSER | CLONE_NEWNS));
		report("bpf", syscall(SYS_bpf, 0, NULL, 0));
		report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
		report("add_key", syscall(SYS_add_key, "user", "x", "y", 1, 0));
		report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
		report("ptrace_attach_init", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
		report("clock_settime", clock_settime(CLOCK_REALTIME, &ts));
		report("init_module", syscall(SYS_init_module, NULL, 0, ""));
		report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
		report("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
		report("swapon", syscall(SYS_swapon, "/x", 0));
		report("pivot_root", syscall(SYS_pivot_root, "/", "/"));
		report("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
		report("clone3", syscall(SYS_clone3, NULL, 0));
		report("setns_any", syscall(SYS_setns, 0, 0));
		report("mkdir_sys_cgroup", mkdir("/sys/fs/cgroup/escape", 0755));
		report("getpid", getpid());
#if defined(__x86_64__)
		/* the i386 ABI is not in the profile's arch list */
		__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
		errno = r < 0 ? (int)-r : 0;
		report("i386_getpid", r < 0 ? -1 : 0);
#endif
		return 0;
	}
	if (streq(a, "kill") && argc > 3) {
		report("kill_host_pid", kill((pid_t)atoi(argv[3]), SIGKILL));
		return 0;
	}
	if (streq(a, "forkbomb")) {
		int n = 0;

		for (int i = 0; i < 40; i++) {
			pid_t pid = fork();

			if (pid == 0) {
				pause();
				_exit(0);
			}
			if (pid > 0)
				n++;
		}
		printf("forked=%d\n", n);
		kill(0, SIGKILL); /* the whole session, this helper included */
		return 0;
	}
	if (streq(a, "sigwait")) {
		struct sigaction sa = { .sa_handler = on_sig };

		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGUSR1, &sa, NULL);
		printf("ready\n");
		while (!got_sig)
			pause();
		printf("got %d\n", (int)got_sig);
		return 0;
	}
	if (streq(a, "udp-echo")) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(5000) };
		char buf[64];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			return 1;
		printf("ready\n");
		n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n > 0)
			sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
		return 0;
	}
	if (streq(a, "udp-ping") && argc > 3) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(5000) };
		struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
		char buf[64];

		inet_pton(AF_INET, argv[3], &to.sin_addr);
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		for (int i = 0; i < 20; i++) {
			if (sendto(s, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)) < 0 &&
			    errno == ENETUNREACH) {
				printf("unreachable\n");
				return 1;
			}
			if (recv(s, buf, sizeof(buf), 0) == 4) {
				printf("pong\n");
				return 0;
			}
		}
		printf("no reply\n");
		return 1;
	}
	if (streq(a, "ifaddr")) {
		struct ifreq ifr = { 0 };
		int s = socket(AF_INET, SOCK_DGRAM, 0);

		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argc > 3 ? argv[3] : "eth0");
		if (ioctl(s, SIOCGIFADDR, &ifr) < 0)
			return 1;
		printf("%s\n", inet_ntoa(((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr));
		return 0;
	}
	fprintf(stderr, "unknown helper action %s\n", a);
	return 2;
}

/* ---------------- test side ---------------- */

static int n_test, n_fail;
static struct cg_system *sys;
static char parent[64], appdir[128], helper_path[256];
static int seq;

static _printf_(2, 3) void ok(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", cond ? "" : "not ", ++n_test);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		n_fail++;
}

static void skip(const char *name, const char *why)
{
	printf("ok %d - %s # SKIP %s\n", ++n_test, name, why);
}

static void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

struct run {
	struct sandbox_config cfg;
	char id[64];
	int out; /* memfd: stdout + stderr of the task */
	struct sandbox_task *t;
	struct cd_error err;
	int r;
};

static void run_init(struct run *x, char *const *argv)
{
	memset(x, 0, sizeof(*x));
	sandbox_config_init(&x->cfg);
	snprintf(x->id, sizeof(x->id), "st%d-%d", (int)getpid(), ++seq);
	x->cfg.task_id = x->id;
	x->cfg.cgroup_parent = parent;
	x->cfg.argv = argv;
	x->cfg.app_dir = appdir;
	x->out = memfd_create("out", MFD_CLOEXEC);
	x->cfg.stdout_fd = x->out;
	x->cfg.stderr_fd = x->out;
}

static int run_start(struct run *x)
{
	x->r = sandbox_launch(sys, &x->cfg, &x->t, &x->err);
	if (x->r < 0)
		diag("launch %s: %s", x->id, cd_error_message(&x->err));
	return x->r;
}

static char *run_output(struct run *x)
{
	static char buf[65536];
	ssize_t n = pread(x->out, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Wait until the output contains s (5 s at most). */
static bool run_wait_output(struct run *x, const char *s)
{
	for (int i = 0; i < 500; i++) {
		if (strstr(run_output(x), s))
			return true;
		clock_sleep_usec(10000);
	}
	return false;
}

static int run_wait(struct run *x, struct sandbox_status *st)
{
	int r = sandbox_wait(x->t, 20 * USEC_PER_SEC, -1, st);

	if (r == 0)
		diag("%s: timeout", x->id);
	return r;
}

static void run_end(struct run *x)
{
	if (x->t) {
		struct cd_error e = { 0 };

		if (sandbox_destroy(x->t, &e) < 0)
			diag("destroy %s: %s", x->id, cd_error_message(&e));
		sandbox_task_free(x->t);
		x->t = NULL;
	}
	safe_close(x->out);
}

/* Run to completion; returns the output (static buffer) and the status. */
static char *run_full(struct run *x, struct sandbox_status *st)
{
	if (run_start(x) < 0)
		return NULL;
	if (run_wait(x, st) != 1)
		return NULL;
	return run_output(x);
}

static bool cgroup_gone(const char *id)
{
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		char path[PATH_MAX];
		const char *root = cg_system_hier_path(sys, h);

		if (!root)
			continue;
		snprintf(path, sizeof(path), "%s/%s/%s", root, parent, id);
		if (access(path, F_OK) == 0)
			return false;
	}
	return true;
}

static bool read_cg(const struct run *x, enum cg_hier h, const char *file, char *buf, size_t size)
{
	int fd = task_cgroup_fd(x->t->cg, h), f;
	ssize_t n;

	if (fd < 0)
		return false;
	f = openat(fd, file, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return false;
	n = read(f, buf, size - 1);
	close(f);
	if (n < 0)
		return false;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return true;
}

#define SH(...) ((char *[]){ "/bin/sh", "-c", __VA_ARGS__, NULL })
#define HELPER(...) ((char *[]){ "/app/helper", "--helper", __VA_ARGS__, NULL })

static void test_namespaces(void)
{
	struct run x;
	struct sandbox_status st;
	char *out, host_ns[6][64] = { 0 };
	static const char *const ns[] = { "pid", "mnt", "uts", "ipc", "net", "cgroup" };
	char cmd[512];

	for (size_t i = 0; i < ARRAY_SIZE(ns); i++) {
		char path[64];
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i]);
		n = readlink(path, host_ns[i], sizeof(host_ns[i]) - 1);
		if (n > 0)
			host_ns[i][n] = '\0';
	}
	snprintf(cmd, sizeof(cmd),
		 "echo pid=$$; echo host=$(cat /proc/sys/kernel/hostname); "
		 "for n in pid mnt uts ipc net cgroup; do echo ns_$n=$(readlink /proc/self/ns/$n); "
		 "done; echo procs=$(ls /proc | grep -cE '^[0-9]+$'); cat /proc/self/cgroup");
	run_init(&x, SH(cmd));
	out = run_full(&x, &st);
	ok(out && !st.signaled && st.code == 0, "namespaces: task ran (exit 0)");
	if (!out) {
		run_end(&x);
		return;
	}
	ok(strstr(out, "pid=2\n") != NULL, "pid ns: the command is pid 2 under our init");
	/* init, sh and the pipeline's few children: never the host's hundreds */
	{
		const char *p = strstr(out, "procs=");
		int procs = p ? atoi(p + 6) : 999;
		ok(procs >= 2 && procs <= 6, "pid ns: only the task's processes are visible (%d)",
		   procs);
	}
	{
		char want[128];
		snprintf(want, sizeof(want), "host=%s\n", x.id);
		ok(strstr(out, want) != NULL, "uts ns: hostname is the task id");
	}
	for (size_t i = 0; i < ARRAY_SIZE(ns); i++) {
		char key[32];
		const char *p;

		snprintf(key, sizeof(key), "ns_%s=", ns[i]);
		p = strstr(out, key);
		ok(p && strncmp(p + strlen(key), host_ns[i], strlen(host_ns[i])) != 0 &&
			   p[strlen(key)] != '\n',
		   "%s namespace differs from the host's", ns[i]);
	}
	ok(strstr(out, "0::/\n") != NULL, "cgroup ns: the task's cgroup is its root");
	run_end(&x);
}

/* The benchmark's slow path (cfg.attach_by_pid): no clone3 into the cgroup, the parent moves the
 * init into every hierarchy by pid and only then lets it go on (the child waits for that go). */
static void test_attach_by_pid(void)
{
	struct run x;
	struct sandbox_status st;
	char buf[4096], pid[32];
	bool all = true;

	run_init(&x, SH("cat /sys/class/net/lo/flags; sleep 30"));
	x.cfg.attach_by_pid = true;
	if (run_start(&x) < 0) {
		ok(false, "attach_by_pid: launch");
		run_end(&x);
		return;
	}
	snprintf(pid, sizeof(pid), "%d", (int)x.t->ident.pid);
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		int fd = task_cgroup_fd(x.t->cg, h), f;
		ssize_t n = -1;

		if (fd < 0)
			continue;
		f = openat(fd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
		if (f >= 0) {
			n = read(f, buf, sizeof(buf) - 1);
			close(f);
		}
		buf[n > 0 ? n : 0] = '\0';
		if (!strstr(buf, pid)) {
			diag("attach_by_pid: init %s not in %s cgroup.procs", pid,
			     cg_hier_to_string(h));
			all = false;
		}
	}
	ok(!x.t->into_cgroup && all, "attach_by_pid: the init was moved into every hierarchy");
	ok(run_wait_output(&x, "0x9"), "attach_by_pid: the task runs (lo up)");
	ok(sandbox_stop(x.t, 100000) == 0 && run_wait(&x, &st) == 1, "attach_by_pid: stopped");
	run_end(&x);
}

static void test_limits_visible(void)
{
	struct run x;
	char buf[128], pidbuf[32];
	bool found = false;
	int r;

	run_init(&x, SH("sleep 30"));
	x.cfg.limits.memory_bytes = 64ULL << 20;
	x.cfg.limits.cpu_millis = 500;
	x.cfg.limits.pids_max = 32;
	if (run_start(&x) < 0) {
		ok(false, "limits: launch");
		run_end(&x);
		return;
	}
	ok(read_cg(&x, CG_V1_MEMORY, "memory.limit_in_bytes", buf, sizeof(buf)) &&
		   streq(buf, "67108864"),
	   "memory.limit_in_bytes = 64 MiB (%s)", buf);
	ok(read_cg(&x, CG_V1_MEMORY, "memory.memsw.limit_in_bytes", buf, sizeof(buf)) &&
		   streq(buf, "67108864"),
	   "memory.memsw.limit_in_bytes = limit (no swap)");
	ok(read_cg(&x, CG_V1_CPU, "cpu.cfs_quota_us", buf, sizeof(buf)) && streq(buf, "50000"),
	   "cpu.cfs_quota_us = 50000 for 0.5 vcpu");
	ok(read_cg(&x, CG_V1_PIDS, "pids.max", buf, sizeof(buf)) && streq(buf, "32"),
	   "pids.max = 32");
	{
		struct cg_limits more = { .memory_bytes = 128ULL << 20, .cpu_millis = 1500 };
		struct cd_error e = { 0 };
		char mem[32] = "", sw[32] = "", q[32] = "", pm[32] = "";

		r = task_cgroup_set_limits(x.t->cg, &more, &e);
		read_cg(&x, CG_V1_MEMORY, "memory.limit_in_bytes", mem, sizeof(mem));
		read_cg(&x, CG_V1_MEMORY, "memory.memsw.limit_in_bytes", sw, sizeof(sw));
		read_cg(&x, CG_V1_CPU, "cpu.cfs_quota_us", q, sizeof(q));
		read_cg(&x, CG_V1_PIDS, "pids.max", pm, sizeof(pm));
		ok(r == 0 && streq(mem, "134217728") && streq(sw, "134217728") &&
			   streq(q, "150000") && streq(pm, "max"),
		   "set_limits raises memory (memsw first), cpu 1.5, pids unlimited (%s)",
		   cd_error_message(&e));
		more.memory_bytes = 48ULL << 20;
		r = task_cgroup_set_limits(x.t->cg, &more, &e);
		read_cg(&x, CG_V1_MEMORY, "memory.limit_in_bytes", mem, sizeof(mem));
		read_cg(&x, CG_V1_MEMORY, "memory.memsw.limit_in_bytes", sw, sizeof(sw));
		ok(r == 0 && streq(mem, "50331648") && streq(sw, "50331648"),
		   "set_limits lowers memory (limit first, then memsw)");
		more.memory_bytes = 1;
		ok(task_cgroup_set_limits(x.t->cg, &more, NULL) == -EINVAL, "set_limits validates");
	}
	snprintf(pidbuf, sizeof(pidbuf), "%d", (int)x.t->ident.pid);
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		char procs[4096];
		int fd = task_cgroup_fd(x.t->cg, h), f;
		ssize_t n;

		if (fd < 0)
			continue;
		f = openat(fd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
		n = f >= 0 ? read(f, procs, sizeof(procs) - 1) : -1;
		safe_close(f);
		procs[n > 0 ? n : 0] = '\0';
		found = strstr(procs, pidbuf) != NULL;
		if (!found) {
			diag("init %s missing from %s", pidbuf, cg_hier_to_string(h));
			break;
		}
	}
	ok(found, "the init is in the task cgroup of every hierarchy");
	{
		uint64_t id = 0;
		struct stat s;
		char path[PATH_MAX];

		task_cgroup_path(x.t->cg, CG_UNIFIED, path, sizeof(path));
		bool good = task_cgroup_id(x.t->cg, &id) == 0 && stat(path, &s) == 0 &&
			    id == s.st_ino && id == x.t->cgroup_id;
		ok(good, "cgroup id is the unified directory's inode (%" PRIu64 ")", id);
	}
	{
		struct cg_stats s;
		bool good = task_cgroup_stats(x.t->cg, &s) == 0 && s.pids_current >= 2 &&
			    s.memory_current != UINT64_MAX && s.cpu_usage_ns != UINT64_MAX;
		ok(good, "stats: pids=%" PRIu64 " memory=%" PRIu64, s.pids_current,
		   s.memory_current);
	}
	r = sandbox_stop(x.t, 2 * USEC_PER_SEC);
	ok(r == 0 && x.t->reaped && x.t->status.signaled && x.t->status.code == SIGTERM,
	   "stop: SIGTERM reaches sh through init (signaled %d)", x.t->status.code);
	run_end(&x);
	ok(cgroup_gone(x.id), "destroy removed the cgroup from every hierarchy");
}

static void test_oom(void)
{
	struct run x;
	struct sandbox_status st;
	struct cg_stats s = { 0 };
	int fd = -1, r;
	bool efd = false;

	/* tail buffers a line that never ends */
	run_init(&x, ((char *[]){ "tail", "/dev/zero", NULL }));
	x.cfg.limits.memory_bytes = 32ULL << 20;
	if (run_start(&x) < 0) {
		ok(false, "oom: launch");
		run_end(&x);
		return;
	}
	r = task_cgroup_oom_watch(x.t->cg, &fd, &efd);
	ok(r == 0, "oom watch fd (%s)", efd ? "eventfd on memory.oom_control" : "memory.events");
	r = run_wait(&x, &st);
	ok(r == 1 && st.signaled && st.code == SIGKILL,
	   "memory hog is OOM-killed inside its cgroup (signaled %d)", st.code);
	if (fd >= 0) {
		uint64_t v = 0;
		bool fired = !efd || read(fd, &v, sizeof(v)) == sizeof(v);
		ok(fired, "oom watch fired (%" PRIu64 ")", v);
		close(fd);
	}
	r = task_cgroup_stats(x.t->cg, &s);
	ok(r == 0 && s.oom_kills >= 1 && s.oom_kills != UINT64_MAX,
	   "oom_kill counted (%" PRIu64 "), peak %" PRIu64 " <= limit", s.oom_kills, s.memory_peak);
	ok(getppid() > 0 && kill(getpid(), 0) == 0, "the host (this test) is fine");
	run_end(&x);
}

static void test_pids_max(void)
{
	struct run x;
	struct sandbox_status st;
	char buf[128];
	char *out;

	run_init(&x, HELPER("forkbomb"));
	x.cfg.limits.pids_max = 12;
	out = run_full(&x, &st);
	ok(out != NULL, "fork bomb ran");
	if (out) {
		const char *p = strstr(out, "forked=");
		int n = p ? atoi(p + 7) : 999;
		ok(n <= 10, "fork bomb stopped by pids.max (%d of 40 forks, max 12 tasks)", n);
	}
	ok(read_cg(&x, CG_V1_PIDS, "pids.events", buf, sizeof(buf)) &&
		   strncmp(buf, "max ", 4) == 0 && atoi(buf + 4) > 0,
	   "pids.events counts refused forks (%s)", buf);
	run_end(&x);
}

static void test_cpu_quota(void)
{
	struct run x;
	struct cg_stats s;
	usec_t t0;
	double used, wall;

	/* two spinning shells would use 2 cpus; the quota allows 0.5 */
	run_init(&x, SH("while :; do :; done & while :; do :; done"));
	x.cfg.limits.cpu_millis = 500;
	if (run_start(&x) < 0) {
		ok(false, "cpu: launch");
		run_end(&x);
		return;
	}
	t0 = clock_mono_usec();
	clock_sleep_usec(1000000);
	task_cgroup_stats(x.t->cg, &s);
	wall = (double)(clock_mono_usec() - t0) / 1e6;
	used = (double)s.cpu_usage_ns / 1e9;
	ok(used <= 0.5 * wall * 1.1 + 0.05, "cpu quota holds: %.3f s used in %.3f s wall (<= 0.5)",
	   used, wall);
	ok(used > 0.1, "the spinners did run (%.3f s)", used);
	ok(sandbox_stop(x.t, 200000) == 0 && task_cgroup_is_empty(x.t->cg) == 1,
	   "stop kills the whole tree");
	run_end(&x);
}

static char init_bin[PATH_MAX], cli[PATH_MAX];

/* comm of pid (waits up to 1 s for it to become want). */
static bool comm_becomes(pid_t pid, const char *want)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	for (int i = 0; i < 100; i++) {
		_cleanup_free_ char *s = NULL;

		if (fs_read_file_at(AT_FDCWD, path, 64, &s, NULL) == 0) {
			s[strcspn(s, "\n")] = '\0';
			if (streq(s, want))
				return true;
		}
		clock_sleep_usec(10000);
	}
	return false;
}

/* The init's duties, in-process (init == NULL) or exec'd into sandbox-init. */
static void test_init_duties(const char *init)
{
	const char *mode = init ? "sandbox-init" : "in-process init";
	struct run x;
	struct sandbox_status st;
	char *out;

	run_init(&x, SH("exit 7"));
	x.cfg.init_binary = init;
	out = run_full(&x, &st);
	ok(out && !st.signaled && st.code == 7, "%s exits with the command's status (7)", mode);
	run_end(&x);

	run_init(&x, SH("kill -SEGV $$"));
	x.cfg.init_binary = init;
	out = run_full(&x, &st);
	ok(out && st.signaled && st.code == SIGSEGV && sandbox_status_exit_code(&st) == 139,
	   "%s: a command killed by SIGSEGV is reported as signaled 11", mode);
	run_end(&x);

	run_init(&x, HELPER("sigwait"));
	x.cfg.init_binary = init;
	if (run_start(&x) == 0 && run_wait_output(&x, "ready")) {
		if (init)
			ok(comm_becomes(x.t->ident.pid, "sandbox-init"),
			   "pid 1 of the task is the sandbox-init binary");
		ok(sandbox_signal(x.t, SIGTERM) == 0, "SIGTERM sent to the task");
		ok(run_wait(&x, &st) == 1 && !st.signaled && st.code == 0 &&
			   strstr(run_output(&x), "got 15"),
		   "%s: SIGTERM reaches the command's handler", mode);
	} else {
		ok(false, "sigwait helper started");
	}
	run_end(&x);

	run_init(&x, SH("sh -c '(sleep 0.1; touch /tmp/orphan-done) &'; "
			"while [ ! -e /tmp/orphan-done ]; do sleep 0.05; done; "
			"for i in $(seq 60); do z=$(grep -l '^State:.*Z' /proc/[0-9]*/status "
			"2>/dev/null | wc -l); [ $z = 0 ] && break; sleep 0.05; done; "
			"echo zombies=$z"));
	x.cfg.init_binary = init;
	out = run_full(&x, &st);
	ok(out && strstr(out, "zombies=0"), "%s reaps orphans (no zombies)", mode);
	run_end(&x);

	/* the command keeps the launcher's oom_score_adj; the init shields itself with -1000
	 * (where lowering is allowed: CAP_SYS_RESOURCE). The command shares the init's memory
	 * until its exec, and the kernel applies an oom_score_adj write to every process sharing
	 * an mm: a write made before the exec would leak from one to the other. */
	{
		int fd = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
		char want[64];
		bool lowered;

		/* raising needs no privilege; lowering back to 0 is allowed again afterwards */
		if (fd >= 0 && write(fd, "300", 3) == 3) {
			lowered = write(fd, "-1", 2) == 2; /* a probe: CAP_SYS_RESOURCE? */
			(void)!pwrite(fd, "300", 3, 0);
			run_init(&x, SH("echo cmd=$(cat /proc/self/oom_score_adj) "
					"init=$(cat /proc/1/oom_score_adj)"));
			x.cfg.init_binary = init;
			out = run_full(&x, &st);
			if (out)
				out[strcspn(out, "\n")] = '\0';
			snprintf(want, sizeof(want), "cmd=300 init=%s", lowered ? "-1000" : "300");
			ok(out && streq(out, want), "%s: oom_score_adj %s (want %s)", mode,
			   out ? out : "-", want);
			run_end(&x);
			(void)!pwrite(fd, "0", 1, 0);
		} else {
			skip("oom_score_adj of the command and the init", "cannot write it");
		}
		if (fd >= 0)
			close(fd);
	}

	/* the status file is written by whichever init runs */
	{
		char path[] = "/tmp/cd-selftest-status.XXXXXX";
		int sfd = mkstemp(path);
		char buf[64] = "";

		run_init(&x, SH("exit 5"));
		x.cfg.init_binary = init;
		x.cfg.status_fd = sfd;
		out = run_full(&x, &st);
		(void)!pread(sfd, buf, sizeof(buf) - 1, 0);
		ok(out && streq(buf, "exited 5\n"), "%s writes the status file", mode);
		run_end(&x);
		close(sfd);
		unlink(path);
	}
}

static void test_signals_and_status(void)
{
	struct run x;
	int r;

	test_init_duties(NULL);
	if (access(init_bin, X_OK) == 0)
		test_init_duties(init_bin);
	else
		skip("sandbox-init binary", "not built next to the selftests");

	/* --no-init: the command is pid 1 and the kernel drops SIGTERM */
	run_init(&x, SH("sleep 30"));
	x.cfg.no_init = true;
	if (run_start(&x) == 0) {
		clock_sleep_usec(100000);
		sandbox_signal(x.t, SIGTERM);
		ok(sandbox_wait(x.t, 300000, -1, NULL) == 0,
		   "no_init: a shell as pid 1 ignores SIGTERM (why the init exists)");
		ok(sandbox_stop(x.t, 0) == 0 && x.t->reaped && x.t->status.signaled &&
			   x.t->status.code == SIGKILL,
		   "stop falls back to killing the cgroup");
	} else {
		ok(false, "no_init launch");
	}
	run_end(&x);

	/* a command that ignores SIGTERM under our init: stop waits out the grace, then kills */
	run_init(&x, SH("trap '' TERM; echo ready; sleep 30"));
	if (run_start(&x) == 0 && run_wait_output(&x, "ready")) {
		usec_t t0 = clock_mono_usec(), took;

		r = sandbox_stop(x.t, 300000);
		took = clock_mono_usec() - t0;
		ok(r == 0 && x.t->reaped && x.t->status.signaled && x.t->status.code == SIGKILL &&
			   took >= 300000 && took < 5 * USEC_PER_SEC,
		   "stop: SIGTERM ignored, grace waited out (%" PRIu64 " ms), then killed",
		   took / 1000);
	} else {
		ok(false, "trap launch");
	}
	run_end(&x);

	/* a double-forked daemon in its own session is still killed */
	run_init(&x, SH("setsid sh -c 'sleep 60 & exit 0' ; sleep 60"));
	x.cfg.no_init = false;
	if (run_start(&x) == 0) {
		clock_sleep_usec(200000);
		ok(sandbox_stop(x.t, 500000) == 0 && task_cgroup_is_empty(x.t->cg) == 1,
		   "double-forked daemon is killed with the task");
	} else {
		ok(false, "daemon launch");
	}
	run_end(&x);
}

static int count_lines(const char *path);

/* What /dev and /proc look like from inside, as root of the task (no capabilities): the six
 * device nodes work, /dev and the root are read-only, every writable mount is nodev + nosuid,
 * /proc's sensitive files are covered and /proc/sys is read-only. */
#define DEV_PROC_PROBE                                                                             \
	"for n in null zero full random urandom tty; do [ -c /dev/$n ] && printf c; done; echo; "  \
	"echo x > /dev/null && echo null=ok; echo rnd=$(head -c 8 /dev/urandom | wc -c); "         \
	"touch /dev/x 2>/dev/null && echo dev=rw || echo dev=ro; "                                 \
	"awk '$5 == \"/tmp\" || $5 == \"/task\" || $5 == \"/dev/shm\" { "                          \
	"print $5 \"=\" ($6 ~ /(^|,)nodev(,|$)/ && $6 ~ /(^|,)nosuid(,|$)/ ? \"nodev\" : $6) }' "  \
	"/proc/self/mountinfo; "                                                                   \
	"echo keys=$(wc -c < /proc/keys); "                                                        \
	"echo x 2>/dev/null > /proc/sys/kernel/domainname && echo procsys=rw || echo procsys=ro"

static void check_dev_proc(const char *mode, const char *out)
{
	ok(out && strstr(out, "cccccc\n") && strstr(out, "null=ok") && strstr(out, "rnd=8"),
	   "%s: /dev null zero full random urandom tty are device nodes that work", mode);
	ok(out && strstr(out, "dev=ro"), "%s: /dev is read-only", mode);
	ok(out && strstr(out, "/tmp=nodev") && strstr(out, "/task=nodev") &&
		   strstr(out, "/dev/shm=nodev"),
	   "%s: /tmp, /task, /dev/shm are nodev,nosuid", mode);
	ok(out && strstr(out, "keys=0\n") && strstr(out, "procsys=ro"),
	   "%s: /proc/keys covered, /proc/sys read-only", mode);
	if (out && !(strstr(out, "cccccc\n") && strstr(out, "/tmp=nodev")))
		diag("%s output:\n%s", mode, out);
}

static void test_filesystem(void)
{
	struct run x;
	struct sandbox_status st;
	char *out, maskdir[128], maskfile[128], cmd[2048];
	const char *masks[3];
	int mounts_before;

	snprintf(maskdir, sizeof(maskdir), "/var/tmp/cd-selftest-%d-state", (int)getpid());
	snprintf(maskfile, sizeof(maskfile), "/var/tmp/cd-selftest-%d-token", (int)getpid());
	mkdir(maskdir, 0700);
	fs_write_atomic(maskfile, "SECRET\n", 7, 0600);
	{
		char p[256];
		snprintf(p, sizeof(p), "%s/db", maskdir);
		fs_write_atomic(p, "SECRET\n", 7, 0600);
	}
	masks[0] = maskdir;
	masks[1] = maskfile;
	masks[2] = NULL;
	snprintf(cmd, sizeof(cmd),
		 "touch /usr/x 2>/dev/null && echo usr=rw || echo usr=ro; "
		 "touch /etc/x 2>/dev/null && echo etc=rw || echo etc=ro; "
		 "touch /x 2>/dev/null && echo root=rw || echo root=ro; "
		 "cat /app/hello; touch /app/x 2>/dev/null && echo app=rw || echo app=ro; "
		 "echo a > /tmp/a && echo tmp=rw; echo b > /task/b && echo work=rw; "
		 "echo cwd=$(pwd); "
		 "head -c 3000000 /dev/zero > /tmp/big 2>/dev/null && echo big=ok || echo "
		 "big=enospc; "
		 "cat %s/db 2>/dev/null || echo maskdir=hidden; echo token=[$(cat %s)]; "
		 "ls /root 2>/dev/null || echo root=absent; "
		 "mkdir /sys/fs/cgroup/x 2>/dev/null && echo cg=rw || echo cg=ro; "
		 "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status; "
		 "echo uid=$(id -u) gid=$(id -g); mount -t tmpfs none /tmp 2>&1 | head -1",
		 maskdir, maskfile);
	mounts_before = count_lines("/proc/self/mountinfo");
	run_init(&x, SH(cmd));
	x.cfg.mask_paths = masks;
	x.cfg.storage_bytes = 2ULL << 20;
	x.cfg.uid = 65534;
	x.cfg.gid = 65534;
	out = run_full(&x, &st);
	ok(out && st.code == 0, "filesystem probe ran");
	if (out) {
		ok(strstr(out, "usr=ro") && strstr(out, "etc=ro") && strstr(out, "root=ro"),
		   "host system is read-only");
		ok(strstr(out, "hello-app") && strstr(out, "app=ro"),
		   "/app is readable, read-only");
		ok(strstr(out, "tmp=rw") && strstr(out, "work=rw"), "/tmp and /task are writable");
		ok(strstr(out, "cwd=/task\n") != NULL, "default cwd is the work dir");
		ok(strstr(out, "big=enospc") != NULL,
		   "writable area is limited by storage (2 MiB)");
		ok(strstr(out, "maskdir=hidden") && strstr(out, "token=[]"),
		   "masked dir unreadable, masked file empty");
		ok(strstr(out, "root=absent") != NULL, "/root of the host is not visible");
		ok(strstr(out, "cg=ro") != NULL, "cannot write /sys/fs/cgroup");
		ok(strstr(out, "CapEff:\t0000000000000000") &&
			   strstr(out, "CapBnd:\t0000000000000000") &&
			   strstr(out, "CapPrm:\t0000000000000000"),
		   "capabilities empty (effective, permitted, bounding)");
		ok(strstr(out, "NoNewPrivs:\t1") && strstr(out, "Seccomp:\t2"),
		   "no_new_privs set, seccomp filter mode");
		ok(strstr(out, "uid=65534 gid=65534") != NULL, "uid/gid switched");
		ok(strstr(out, "must be superuser") != NULL,
		   "setuid-root mount gives no privilege (%s)", "nosuid + no_new_privs");
		if (n_fail)
			diag("output:\n%s", out);
	}
	run_end(&x);
	ok(count_lines("/proc/self/mountinfo") == mounts_before,
	   "no mount left on the host after the task (%d)", mounts_before);

	run_init(&x, SH(DEV_PROC_PROBE));
	out = run_full(&x, &st);
	check_dev_proc("root task", out);
	run_end(&x);

	/* a kept capability survives for a non-root command */
	run_init(&x, SH("grep CapEff /proc/self/status"));
	x.cfg.uid = 1000;
	x.cfg.gid = 1000;
	x.cfg.caps = UINT64_C(1) << CAP_NET_RAW;
	out = run_full(&x, &st);
	ok(out && strstr(out, "CapEff:\t0000000000002000"), "kept capability: only CAP_NET_RAW");
	run_end(&x);
	fs_rm_rf_at(AT_FDCWD, maskdir);
	unlink(maskfile);
}

static void test_seccomp(void)
{
	static const struct {
		const char *name, *want;
	} expect[] = {
		{ "mount", "EPERM" },
		{ "umount2", "EPERM" },
		{ "unshare_user", "EPERM" },
		{ "unshare_user_mount", "EPERM" },
		{ "bpf", "EPERM" },
		{ "keyctl", "EPERM" },
		{ "add_key", "EPERM" },
		{ "perf_event_open", "EPERM" },
		{ "ptrace_attach_init", "EPERM" },
		{ "clock_settime", "EPERM" },
		{ "init_module", "EPERM" },
		{ "kexec_load", "EPERM" },
		{ "reboot", "EPERM" },
		{ "swapon", "EPERM" },
		{ "pivot_root", "EPERM" },
		{ "open_by_handle_at", "EPERM" },
		{ "clone3", "ENOSYS" },
		{ "setns_any", "EPERM" },
		{ "getpid", "OK" },
#if defined(__x86_64__)
		{ "i386_getpid", "ENOSYS" },
#endif
	};
	struct run x;
	struct sandbox_status st;
	char *out, hostpid[16];

	run_init(&x, HELPER("syscalls"));
	out = run_full(&x, &st);
	ok(out && st.code == 0, "seccomp probe ran");
	for (size_t i = 0; out && i < ARRAY_SIZE(expect); i++) {
		char key[64];
		const char *p;

		snprintf(key, sizeof(key), "%s=%s\n", expect[i].name, expect[i].want);
		p = strstr(out, key);
		ok(p != NULL, "%s -> %s", expect[i].name, expect[i].want);
		if (!p) {
			snprintf(key, sizeof(key), "%s=", expect[i].name);
			p = strstr(out, key);
			diag("got %.*s", p ? (int)strcspn(p, "\n") : 4, p ? p : "none");
		}
	}
	ok(out && strstr(out, "mkdir_sys_cgroup=E"), "mkdir in /sys/fs/cgroup fails");
	run_end(&x);

	snprintf(hostpid, sizeof(hostpid), "%d", (int)getpid());
	run_init(&x, HELPER("kill", hostpid));
	out = run_full(&x, &st);
	ok(out && strstr(out, "kill_host_pid=ESRCH") && kill(getpid(), 0) == 0,
	   "a host pid cannot be signalled from the task (ESRCH)");
	run_end(&x);
}

static void test_errors(void)
{
	struct run x;
	struct cd_error e;

	run_init(&x, ((char *[]){ "/nonexistent/cmd", NULL }));
	ok(run_start(&x) == -ENOENT && strstr(x.err.msg, "exec") &&
		   strstr(x.err.msg, "No such file"),
	   "exec failure reported with errno and step: %s", x.err.msg);
	ok(cgroup_gone(x.id), "no cgroup left after a failed exec");
	run_end(&x);

	run_init(&x, ((char *[]){ "no-such-command-anywhere", NULL }));
	ok(run_start(&x) == -ENOENT, "PATH search failure is ENOENT");
	run_end(&x);

	run_init(&x, ((char *[]){ "/app/hello", NULL }));
	ok(run_start(&x) == -EACCES, "non-executable file is EACCES: %s", x.err.msg);
	run_end(&x);

	run_init(&x, ((char *[]){ "/bin/true", NULL }));
	x.cfg.cwd = "/does/not/exist";
	ok(run_start(&x) == -ENOENT && strstr(x.err.msg, "chdir"), "bad cwd names the step: %s",
	   x.err.msg);
	ok(cgroup_gone(x.id), "no cgroup left after a failed chdir");
	run_end(&x);

	run_init(&x, ((char *[]){ "/bin/true", NULL }));
	x.cfg.cwd = "/etc/hostname";
	ok(run_start(&x) == -ENOTDIR && strstr(x.err.msg, "chdir"), "cwd that is a file: ENOTDIR");
	run_end(&x);

	{
		/* above fs.nr_open: refused even with CAP_SYS_RESOURCE */
		static const struct sandbox_rlimit big = { RLIMIT_NOFILE, 100000000, 100000000 };

		run_init(&x, ((char *[]){ "/bin/true", NULL }));
		x.cfg.rlimits = &big;
		x.cfg.n_rlimits = 1;
		ok(run_start(&x) == -EPERM && strstr(x.err.msg, "rlimit"),
		   "impossible rlimit names the step: %s", x.err.msg);
		ok(cgroup_gone(x.id), "no cgroup left after a failed rlimit");
		run_end(&x);
	}

	{
		struct sandbox_status st;
		const char *masks[] = { "/nonexistent/secret", NULL };

		run_init(&x, SH("grep -E '^Seccomp:' /proc/self/status; "
				"mount -t tmpfs none /tmp 2>/dev/null || echo mount-refused"));
		x.cfg.mask_paths = masks;
		x.cfg.no_seccomp = true;
		ok(run_full(&x, &st) && strstr(run_output(&x), "Seccomp:\t0") &&
			   strstr(run_output(&x), "mount-refused"),
		   "no_seccomp: no filter, yet mount still refused (no capabilities); a missing "
		   "mask path is skipped");
		run_end(&x);
	}

	run_init(&x, ((char *[]){ "/bin/true", NULL }));
	x.cfg.limits.memory_bytes = 1;
	ok(run_start(&x) == -EINVAL && strstr(x.err.msg, "memory"), "invalid limit: %s", x.err.msg);
	ok(cgroup_gone(x.id), "no cgroup left after invalid input");
	run_end(&x);

	run_init(&x, ((char *[]){ NULL }));
	ok(run_start(&x) == -EINVAL && strstr(x.err.msg, "missing command"), "missing command");
	run_end(&x);

	run_init(&x, ((char *[]){ "/bin/true", NULL }));
	x.cfg.app_dir = "/nonexistent-artifact-dir";
	ok(run_start(&x) == -ENOENT && strstr(x.err.msg, "artifact"), "missing artifact dir: %s",
	   x.err.msg);
	run_end(&x);

	run_init(&x, ((char *[]){ "/bin/true", NULL }));
	x.cfg.app_dir = "/etc/hostname";
	ok(run_start(&x) == -ENOTDIR, "artifact dir that is a file: ENOTDIR");
	run_end(&x);

	/* a task id clash must not share a cgroup */
	{
		struct run a, b;

		run_init(&a, SH("sleep 30"));
		run_start(&a);
		run_init(&b, SH("true"));
		snprintf(b.id, sizeof(b.id), "%s", a.id);
		ok(a.r == 0 && run_start(&b) == -EEXIST, "same task id twice: EEXIST (%s)",
		   b.err.msg);
		ok(a.t && sandbox_wait(a.t, 0, -1, NULL) == 0, "the first task is unaffected");
		b.t = NULL;
		run_end(&b);
		if (a.t)
			sandbox_stop(a.t, 0);
		run_end(&a);
	}
	memset(&e, 0, sizeof(e));
}

static void test_adopt_and_gc(void)
{
	struct run x;
	struct sandbox_task *t2 = NULL;
	struct sandbox_status st;
	struct cd_error e = { 0 };
	char path[] = "/tmp/cd-selftest-status.XXXXXX";
	int sfd = mkstemp(path), r;

	run_init(&x, SH("sleep 30"));
	x.cfg.status_fd = sfd;
	if (run_start(&x) < 0) {
		ok(false, "adopt: launch");
		run_end(&x);
		return;
	}
	r = sandbox_adopt(sys, &x.t->ident, &t2, &e);
	ok(r == 0 && t2 && !t2->is_child && t2->cgroup_id == x.t->cgroup_id,
	   "re-adopt by pid + start time + cgroup");
	{
		struct sandbox_ident bad = x.t->ident;
		struct sandbox_task *t3 = NULL;

		bad.start_time++;
		ok(sandbox_adopt(sys, &bad, &t3, NULL) == -ESRCH,
		   "adopt refuses a pid whose start time differs");
		sandbox_task_free(t3);
	}
	if (t2) {
		ok(sandbox_signal(t2, SIGTERM) == 0, "signal through the adopted handle");
		ok(sandbox_wait(t2, 5 * USEC_PER_SEC, sfd, &st) == 1 && st.signaled &&
			   st.code == SIGTERM,
		   "adopted task's status read from the status file (signaled 15)");
		sandbox_task_free(t2);
	}
	run_end(&x);
	close(sfd);
	unlink(path);

	/* gc: a leftover cgroup with a live process in it */
	{
		struct task_cgroup *cg = NULL;
		pid_t pid;
		char name[64];

		snprintf(name, sizeof(name), "leftover-%d", (int)getpid());
		r = task_cgroup_create(sys, parent, name, NULL, &cg, &e);
		pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		task_cgroup_attach(cg, pid, false);
		task_cgroup_free(cg);
		{
			struct task_cgroup *kept = NULL;
			char kname[64];
			const char *keep[2] = { kname, NULL };

			snprintf(kname, sizeof(kname), "kept-%d", (int)getpid());
			task_cgroup_create(sys, parent, kname, NULL, &kept, &e);
			r = sandbox_gc(sys, parent, keep, "/nonexistent-ipam", &e);
			waitpid(pid, NULL, 0);
			ok(r == 1 && cgroup_gone(name),
			   "sandbox_gc kills and removes leftovers (%d)", r);
			ok(kept && !cgroup_gone(kname),
			   "sandbox_gc leaves the tasks it is told to keep");
			if (kept) {
				task_cgroup_destroy(kept, NULL);
				task_cgroup_free(kept);
			}
		}
	}
}

static int count_lines(const char *path)
{
	_cleanup_free_ char *s = NULL;
	int n = 0;

	if (fs_read_file_at(AT_FDCWD, path, 1 << 22, &s, NULL) < 0)
		return -1;
	for (const char *p = s; *p; p++)
		n += *p == '\n';
	return n;
}

/* The v2 code paths (pure-v2 layout) on this hybrid host: the unified mount has no
 * controllers, so everything but limits can run there. */
static void test_v2_on_unified(void)
{
	struct cg_system *v2 = NULL, *saved = sys;
	const char *unified = cg_system_hier_path(sys, CG_UNIFIED);
	struct run x;
	struct sandbox_status st;
	struct cg_stats s;
	int r;

	if (!unified || cg_system_detect(unified, &v2, NULL) < 0) {
		skip("v2 code paths", "no cgroup2 mount");
		return;
	}
	ok(cg_system_layout(v2) == CG_LAYOUT_V2, "unified mount detected as pure v2");
	sys = v2;
	run_init(&x, SH("sleep 30"));
	if (run_start(&x) == 0) {
		ok(x.t->into_cgroup, "v2: clone3 into the cgroup");
		ok(task_cgroup_is_empty(x.t->cg) == 0, "v2: cgroup.events populated");
		r = task_cgroup_stats(x.t->cg, &s);
		ok(r == 0 && s.cpu_usage_ns != UINT64_MAX, "v2: cpu usage from cpu.stat");
		r = task_cgroup_kill(x.t->cg, 2 * USEC_PER_SEC);
		ok(r == 0 && run_wait(&x, &st) == 1 && st.signaled && st.code == SIGKILL,
		   "v2: cgroup.kill kills the tree");
	} else {
		ok(false, "v2: launch");
	}
	run_end(&x);
	ok(cgroup_gone(x.id), "v2: destroy removed the cgroup");

	run_init(&x, SH("true"));
	x.cfg.limits.memory_bytes = 64ULL << 20;
	r = run_start(&x);
	ok(r < 0 && strstr(x.err.msg, "memory.max") && cgroup_gone(x.id),
	   "v2 without a memory controller: clear error, rolled back (%s)", x.err.msg);
	run_end(&x);
	sys = saved;
	{
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", unified, parent);
		rmdir(path);
	}
	cg_system_free(v2);
}

/* 0 when this process may create a user namespace, else the kernel's errno (EPERM in a chroot,
 * or with user.max_user_namespaces = 0). */
static int userns_refused(void)
{
	pid_t pid = fork();
	int st;

	if (pid == 0)
		_exit(unshare(CLONE_NEWUSER) < 0 ? errno : 0);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return EIO;
	return WEXITSTATUS(st);
}

static void test_userns(void)
{
	struct run x;
	struct sandbox_status st;
	char path[64];
	_cleanup_free_ char *status = NULL;
	char *out;
	int refused = userns_refused();

	if (refused) {
		char why[128];

		snprintf(why, sizeof(why), "the kernel refuses new user namespaces here (%s)",
			 strerror(refused));
		skip("userns: the init is uid N on the host", why);
		skip("userns: the command is root inside", why);
		skip("userns: host root files are unmapped (nobody)", why);
		skip("userns: the seccomp profile still applies", why);
		skip("userns: uid outside the range refused", why);
		skip("userns: /dev, /proc view", why);
		return;
	}
	run_init(&x, SH("cat /proc/self/uid_map; echo id=$(id -u); "
			"echo etc_owner=$(stat -c %u /etc); sleep 0.5"));
	x.cfg.userns_base = 200000 + (uint32_t)getpid() % 1000 * 65536;
	x.cfg.userns_size = 65536;
	if (run_start(&x) < 0) {
		ok(false, "userns: launch");
		run_end(&x);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/status", (int)x.t->ident.pid);
	fs_read_file_at(AT_FDCWD, path, 65536, &status, NULL);
	{
		char want[64];
		snprintf(want, sizeof(want), "Uid:\t%u\t", (unsigned)x.cfg.userns_base);
		ok(status && strstr(status, want), "userns: the init is uid %u on the host",
		   (unsigned)x.cfg.userns_base);
	}
	out = run_wait(&x, &st) == 1 ? run_output(&x) : NULL;
	ok(out && strstr(out, "id=0\n"), "userns: the command is root inside");
	ok(out && strstr(out, "etc_owner=65534\n"),
	   "userns: host root files are unmapped (nobody)");
	run_end(&x);

	run_init(&x, HELPER("syscalls"));
	x.cfg.userns_base = 200000 + (uint32_t)getpid() % 1000 * 65536;
	x.cfg.userns_size = 65536;
	out = run_full(&x, &st);
	ok(out && strstr(out, "mount=EPERM") && strstr(out, "unshare_user=EPERM"),
	   "userns: the seccomp profile still applies");
	run_end(&x);

	/* no mknod in a user namespace: the host's nodes are bound instead */
	run_init(&x, SH(DEV_PROC_PROBE));
	x.cfg.userns_base = 200000 + (uint32_t)getpid() % 1000 * 65536;
	x.cfg.userns_size = 65536;
	out = run_full(&x, &st);
	check_dev_proc("userns", out);
	run_end(&x);

	run_init(&x, SH("true"));
	x.cfg.userns_base = 100000;
	x.cfg.userns_size = 1000;
	x.cfg.uid = 5000;
	ok(run_start(&x) == -EINVAL && strstr(x.err.msg, "outside"),
	   "userns: uid outside the range refused (%s)", x.err.msg);
	run_end(&x);
}

/* The pure-v1 code paths (no cgroup2 at all: no CLONE_INTO_CGROUP, no cgroup.kill) in a forked
 * child whose private mount namespace shows only the v1 hierarchies. */
static void pure_v1_child(void)
{
	static const char *const ctrls[] = { "memory", "cpu", "cpuacct", "pids", "freezer" };
	char root[] = "/tmp/cd-selftest-v1.XXXXXX", src[PATH_MAX], dst[PATH_MAX];
	struct cg_system *v1 = NULL;
	struct run x;
	struct sandbox_status st;
	int r;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    !mkdtemp(root) || mount("tmpfs", root, "tmpfs", 0, NULL) < 0) {
		ok(false, "pure v1: private mount namespace");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ctrls); i++) {
		snprintf(src, sizeof(src), "/sys/fs/cgroup/%s", ctrls[i]);
		snprintf(dst, sizeof(dst), "%s/%s", root, ctrls[i]);
		if (mkdir(dst, 0755) < 0 || mount(src, dst, NULL, MS_BIND, NULL) < 0) {
			ok(false, "pure v1: bind %s", ctrls[i]);
			return;
		}
	}
	r = cg_system_detect(root, &v1, NULL);
	ok(r == 0 && cg_system_layout(v1) == CG_LAYOUT_V1, "pure v1 view detected as v1");
	if (r < 0)
		return;
	sys = v1;
	run_init(&x, SH("sleep 30 & sleep 30 & echo started; wait"));
	x.cfg.limits.memory_bytes = 64ULL << 20;
	x.cfg.limits.pids_max = 16;
	if (run_start(&x) == 0 && run_wait_output(&x, "started")) {
		char buf[64];

		ok(!x.t->into_cgroup && x.t->cgroup_id == 0,
		   "pure v1: no clone3 into a cgroup, no cgroup2 id");
		ok(read_cg(&x, CG_V1_PIDS, "pids.max", buf, sizeof(buf)) && streq(buf, "16"),
		   "pure v1: limits applied");
		ok(task_cgroup_is_empty(x.t->cg) == 0, "pure v1: the task is in its cgroup");
		r = task_cgroup_kill(x.t->cg, 2 * USEC_PER_SEC);
		ok(r == 0 && task_cgroup_is_empty(x.t->cg) == 1,
		   "pure v1: freeze + SIGKILL loop empties the cgroup");
		ok(run_wait(&x, &st) == 1 && st.signaled && st.code == SIGKILL,
		   "pure v1: the init was killed with the tree");
	} else {
		ok(false, "pure v1: launch");
	}
	run_end(&x);
	ok(cgroup_gone(x.id), "pure v1: destroy removed the cgroups");
	umount2(root, MNT_DETACH);
	rmdir(root);
}

static void test_pure_v1(void)
{
	int before = n_test, before_fail = n_fail, st;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		pure_v1_child();
		fflush(stdout);
		/* report how many ran and failed: the parent's counters continue from there */
		_exit(((n_test - before) << 4) | (n_fail != before_fail ? 1 : 0));
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
		ok(false, "pure v1 child");
		return;
	}
	n_test += WEXITSTATUS(st) >> 4;
	n_fail += WEXITSTATUS(st) & 1;
}

struct thread_arg {
	int index, ok;
};
static volatile int hammer_stop;

static void *malloc_hammer(void *arg)
{
	/* keeps malloc's locks busy: a child that allocated after clone would deadlock */
	while (!hammer_stop) {
		void *p[64];

		for (int i = 0; i < 64; i++)
			p[i] = malloc((size_t)(i * 97 % 4096) + 1);
		for (int i = 0; i < 64; i++)
			free(p[i]);
	}
	return NULL;
}

static void *launcher_thread(void *arg)
{
	struct thread_arg *ta = arg;

	for (int i = 0; i < 5; i++) {
		struct sandbox_config cfg;
		struct sandbox_task *t = NULL;
		struct sandbox_status st;
		struct cd_error err = { 0 };
		char id[64];
		char *argv[] = { "/bin/sh", "-c", "exit 3", NULL };

		sandbox_config_init(&cfg);
		snprintf(id, sizeof(id), "thr%d-%d-%d", (int)getpid(), ta->index, i);
		cfg.task_id = id;
		cfg.cgroup_parent = parent;
		cfg.argv = argv;
		cfg.limits.pids_max = 16;
		if (sandbox_launch(sys, &cfg, &t, &err) < 0) {
			diag("thread %d: %s", ta->index, cd_error_message(&err));
			continue;
		}
		if (sandbox_wait(t, 20 * USEC_PER_SEC, -1, &st) == 1 && !st.signaled &&
		    st.code == 3)
			ta->ok++;
		sandbox_destroy(t, NULL);
		sandbox_task_free(t);
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[4], hammer;
	struct thread_arg args[4];
	int total = 0;

	hammer_stop = 0;
	pthread_create(&hammer, NULL, malloc_hammer, NULL);
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){ .index = i };
		pthread_create(&th[i], NULL, launcher_thread, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += args[i].ok;
	}
	hammer_stop = 1;
	pthread_join(hammer, NULL);
	ok(total == 20, "20 launches from 4 threads beside a malloc-heavy thread (%d ok)", total);
}

static int exec_wait(int pidfd, siginfo_t *si)
{
	memset(si, 0, sizeof(*si));
	return waitid((idtype_t)P_PIDFD, (id_t)pidfd, si, WEXITED);
}

static void test_exec_in_task(void)
{
	struct run x;
	struct cd_error e = { 0 };
	siginfo_t si;
	pid_t pid;
	int pidfd = -1, out = memfd_create("exec-out", MFD_CLOEXEC), r;
	char buf[4096], want[128];
	ssize_t n;

	run_init(&x, SH("echo ready; sleep 30"));
	x.cfg.uid = 65534;
	x.cfg.gid = 65534;
	if (run_start(&x) < 0 || !run_wait_output(&x, "ready")) {
		ok(false, "exec: task launch");
		run_end(&x);
		close(out);
		return;
	}
	x.cfg.stdout_fd = out;
	x.cfg.stderr_fd = out;
	r = sandbox_exec(x.t, &x.cfg,
			 SH("echo pid=$$; echo uid=$(id -u); echo host=$(hostname); "
			    "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
			    "echo sleepers=$(pgrep -c sleep); cat /proc/self/cgroup | tail -1; "
			    "echo cwd=$(pwd)"),
			 &pid, &pidfd, &e);
	ok(r == 0, "sandbox_exec starts a command inside the task (%s)", cd_error_message(&e));
	if (r == 0) {
		r = exec_wait(pidfd, &si);
		close(pidfd);
		n = pread(out, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		snprintf(want, sizeof(want), "host=%s\n", x.id);
		ok(r == 0 && si.si_code == CLD_EXITED && si.si_status == 0,
		   "exec: exit 0 mirrored");
		ok(strstr(buf, want) && strstr(buf, "uid=65534\n") && strstr(buf, "cwd=/task\n"),
		   "exec: the task's uts namespace, uid and work dir");
		ok(!strstr(buf, "pid=1\n") && !strstr(buf, "pid=2\n") &&
			   strstr(buf, "sleepers=1\n"),
		   "exec: the task's pid namespace (sees the task's sleep)");
		ok(strstr(buf, "CapEff:\t0000000000000000") && strstr(buf, "NoNewPrivs:\t1") &&
			   strstr(buf, "Seccomp:\t2") && strstr(buf, "0::/\n"),
		   "exec: no caps, no_new_privs, seccomp, the task's cgroup namespace");
		if (n_fail)
			diag("exec output:\n%s", buf);
	}

	r = sandbox_exec(x.t, &x.cfg, SH("kill -TERM $$"), &pid, &pidfd, &e);
	ok(r == 0 && exec_wait(pidfd, &si) == 0 && si.si_code == CLD_KILLED &&
		   si.si_status == SIGTERM,
	   "exec: a signal death is mirrored by the middle process");
	safe_close(pidfd);

	/* "; true" makes the shell fork sleep: a tree, not one process */
	r = sandbox_exec(x.t, &x.cfg, SH("sleep 30; true"), &pid, &pidfd, &e);
	if (r == 0) {
		char procs[4096];
		int lines = 0;

		clock_sleep_usec(100000);
		syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0);
		exec_wait(pidfd, &si);
		close(pidfd);
		for (int i = 0; i < 100; i++) {
			lines = 0;
			if (read_cg(&x, CG_V1_PIDS, "cgroup.procs", procs, sizeof(procs))) {
				int f = openat(task_cgroup_fd(x.t->cg, CG_V1_PIDS), "cgroup.procs",
					       O_RDONLY | O_CLOEXEC);
				ssize_t k = f >= 0 ? read(f, procs, sizeof(procs) - 1) : 0;

				safe_close(f);
				procs[k > 0 ? k : 0] = '\0';
				for (char *c = procs; *c; c++)
					lines += *c == '\n';
			}
			if (lines == 3) /* init, sh, the task's sleep */
				break;
			clock_sleep_usec(10000);
		}
		ok(lines == 3 && si.si_code == CLD_KILLED && si.si_status == SIGKILL,
		   "exec: SIGTERM to the middle kills the command's whole tree (%d left)", lines);
	} else {
		ok(false, "exec sleep");
	}

	r = sandbox_exec(x.t, &x.cfg, ((char *[]){ "/nonexistent", NULL }), &pid, &pidfd, &e);
	ok(r == -ENOENT && strstr(e.msg, "step exec"), "exec: failure reported with errno (%s)",
	   e.msg);
	sandbox_stop(x.t, 0);
	ok(sandbox_exec(x.t, &x.cfg, SH("true"), &pid, &pidfd, NULL) == -ESRCH,
	   "exec into a stopped task: ESRCH");
	run_end(&x);
	close(out);
}

static void test_net_none(void)
{
	struct run x;
	struct sandbox_status st;
	char *out;

	run_init(&x, SH("echo ifs=$(ls /sys/class/net | tr '\\n' ' '); "
			"echo loflags=$(cat /sys/class/net/lo/flags)"));
	out = run_full(&x, &st);
	ok(out && strstr(out, "ifs=lo\n"), "net none: only lo");
	ok(out && strstr(out, "loflags=0x9"), "net none: lo is up");
	run_end(&x);

	run_init(&x, SH("ls /sys/class/net | wc -l"));
	x.cfg.net = SANDBOX_NET_HOST;
	out = run_full(&x, &st);
	ok(out && atoi(out) >= 1, "net host: the host's interfaces (%d)", out ? atoi(out) : -1);
	run_end(&x);
}

static void test_net_bridge(void)
{
	struct run a, b, c;
	struct sandbox_status st;
	char ipam[] = "/tmp/cd-selftest-ipam.XXXXXX", addr[INET_ADDRSTRLEN], host_if[IFNAMSIZ];
	char *out;

	/* private netns for this process: the "host" bridge lives here, not on the machine */
	if (unshare(CLONE_NEWNET) < 0) {
		skip("bridge mode", "cannot create a private netns");
		return;
	}
	if (!mkdtemp(ipam)) {
		skip("bridge mode", "mkdtemp");
		return;
	}
	run_init(&a, HELPER("udp-echo"));
	a.cfg.net = SANDBOX_NET_BRIDGE;
	a.cfg.bridge = (struct netns_bridge_config){ .bridge = "cdbrtest0",
						     .subnet = "10.231.7.0/29",
						     .ipam_dir = ipam };
	if (run_start(&a) < 0 || !run_wait_output(&a, "ready")) {
		ok(false, "bridge: echo server started");
		run_end(&a);
		return;
	}
	inet_ntop(AF_INET, &a.t->ident.lease.addr, addr, sizeof(addr));
	snprintf(host_if, sizeof(host_if), "%s", a.t->ident.lease.host_ifname);
	ok(streq(addr, "10.231.7.2"), "bridge: first address leased (%s)", addr);
	ok(if_nametoindex(host_if) > 0 && if_nametoindex("cdbrtest0") > 0,
	   "bridge: host veth %s and bridge exist", host_if);

	run_init(&b, HELPER("ifaddr"));
	b.cfg.net = SANDBOX_NET_BRIDGE;
	b.cfg.bridge = a.cfg.bridge;
	out = run_full(&b, &st);
	ok(out && strstr(out, "10.231.7.3"), "bridge: eth0 inside has the leased address (%s)",
	   out ? out : "");
	run_end(&b);

	run_init(&c, HELPER("udp-ping", addr));
	c.cfg.net = SANDBOX_NET_BRIDGE;
	c.cfg.bridge = a.cfg.bridge;
	c.cfg.bridge.isolate = true;
	out = run_full(&c, &st);
	ok(out && strstr(out, "pong") && st.code == 0, "bridge: two sandboxes talk by address");
	run_end(&c);
	ok(run_wait(&a, &st) == 1, "echo server done");

	/* the "host" (this test's netns) has another interface with 192.0.2.1 and a UDP echo on
	 * it: reachable through the default route, unreachable when isolated */
	if (system("ip link add cdsthost0 type veth peer name cdsthost1 && "
		   "ip addr add 192.0.2.1/24 dev cdsthost0 && ip link set cdsthost0 up && "
		   "ip link set cdsthost1 up") == 0) {
		pid_t echo = fork();

		if (echo == 0) {
			int sock = socket(AF_INET, SOCK_DGRAM, 0);
			struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(5000) };
			char buf[16];
			struct sockaddr_in from;
			socklen_t fl = sizeof(from);

			inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
			if (bind(sock, (struct sockaddr *)&sin, sizeof(sin)) < 0)
				_exit(1);
			for (;;) {
				ssize_t n = recvfrom(sock, buf, sizeof(buf), 0,
						     (struct sockaddr *)&from, &fl);
				if (n > 0)
					sendto(sock, buf, (size_t)n, 0, (struct sockaddr *)&from,
					       fl);
			}
		}
		clock_sleep_usec(50000);
		run_init(&c, HELPER("udp-ping", "192.0.2.1"));
		c.cfg.net = SANDBOX_NET_BRIDGE;
		c.cfg.bridge = a.cfg.bridge;
		out = run_full(&c, &st);
		ok(out && strstr(out, "pong"), "bridge: the default route reaches a host address");
		run_end(&c);
		run_init(&c, HELPER("udp-ping", "192.0.2.1"));
		c.cfg.net = SANDBOX_NET_BRIDGE;
		c.cfg.bridge = a.cfg.bridge;
		c.cfg.bridge.isolate = true;
		out = run_full(&c, &st);
		ok(out && strstr(out, "unreachable") && st.code != 0,
		   "bridge isolate: the host's other interfaces are unreachable (%s)",
		   out ? out : "");
		run_end(&c);
		kill(echo, SIGKILL);
		waitpid(echo, NULL, 0);
		(void)!system("ip link del cdsthost0");
	} else {
		skip("bridge: host interface reachability",
		     "cannot create a veth in the test netns");
	}

	/* exhaust the /29: .2 .. .6 are five addresses, a holds one */
	{
		struct run more[5];
		int last = 0;

		for (int i = 0; i < 5; i++) {
			run_init(&more[i], SH("sleep 10"));
			more[i].cfg.net = SANDBOX_NET_BRIDGE;
			more[i].cfg.bridge = a.cfg.bridge;
			last = run_start(&more[i]);
		}
		ok(last == -ENOSPC && strstr(more[4].err.msg, "exhausted"),
		   "subnet exhausted: ENOSPC (%s)", more[4].err.msg);
		ok(cgroup_gone(more[4].id), "no cgroup left after ENOSPC");
		for (int i = 0; i < 5; i++) {
			if (more[i].t)
				sandbox_stop(more[i].t, 0);
			run_end(&more[i]);
		}
	}
	run_end(&a);
	ok(if_nametoindex(host_if) == 0, "host veth removed after destroy");
	{
		char lease[PATH_MAX];
		snprintf(lease, sizeof(lease), "%s/%s", ipam, addr);
		ok(access(lease, F_OK) < 0, "lease released after destroy");
	}

	/* veth name clash */
	{
		struct run d;
		char cmd[256], ifname[IFNAMSIZ];

		run_init(&d, SH("true"));
		d.cfg.net = SANDBOX_NET_BRIDGE;
		d.cfg.bridge = a.cfg.bridge;
		netns_host_ifname(d.id, ifname);
		snprintf(cmd, sizeof(cmd), "ip link add %s type veth peer name %.11sp", ifname,
			 ifname);
		if (system(cmd) == 0) {
			ok(run_start(&d) == -EEXIST && strstr(d.err.msg, ifname),
			   "veth name clash: EEXIST (%s)", d.err.msg);
			ok(cgroup_gone(d.id), "no cgroup left after a veth clash");
		} else {
			skip("veth name clash", "ip link add failed");
		}
		run_end(&d);
	}
	fs_rm_rf_at(AT_FDCWD, ipam);
}

/* Run sandbox-run with args; returns its exit code (or 128 + signal), output in buf. With
 * term_on, SIGTERM is sent to sandbox-run itself once its output contains that string. */
static int run_cli(char *const *args, const char *term_on, char *buf, size_t size)
{
	bool termed = false;
	int fds[2], st;
	pid_t pid;
	ssize_t n, total = 0;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		execv(cli, args);
		_exit(99);
	}
	close(fds[1]);
	while (total < (ssize_t)size - 1 && (n = read(fds[0], buf + total, size - 1 - total)) > 0) {
		total += n;
		buf[total] = '\0';
		if (term_on && !termed && strstr(buf, term_on)) {
			kill(pid, SIGTERM);
			termed = true;
		}
	}
	buf[total] = '\0';
	close(fds[0]);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_cli(void)
{
	char out[4096], idarg[64], parg[96];
	int rc;

	if (access(cli, X_OK) < 0) {
		skip("sandbox-run CLI", "sandbox-run not built next to the selftests");
		return;
	}
	snprintf(parg, sizeof(parg), "--cgroup-parent=%s", parent);
	snprintf(idarg, sizeof(idarg), "--id=cli%d", (int)getpid());
	rc = run_cli((char *[]){ cli, parg, idarg, "--memory", "64M", "--pids", "32", "--",
				 "/bin/sh", "-c", "echo out; exit 3", NULL },
		     NULL, out, sizeof(out));
	ok(rc == 3 && strstr(out, "out\n"), "sandbox-run mirrors the exit code (3)");
	rc = run_cli((char *[]){ cli, parg, idarg, "--", "/bin/sh", "-c", "kill -KILL $$", NULL },
		     NULL, out, sizeof(out));
	ok(rc == 137, "sandbox-run: a command killed by SIGKILL gives 137 (%d)", rc);
	rc = run_cli((char *[]){ cli, parg, idarg, "--", "/nonexistent", NULL }, NULL, out,
		     sizeof(out));
	ok(rc == 127 && strstr(out, "No such file"), "sandbox-run: command not found is 127: %s",
	   out);
	rc = run_cli((char *[]){ cli, parg, "--memory", "1", "--", "true", NULL }, NULL, out,
		     sizeof(out));
	ok(rc == 2 && strstr(out, "memory"), "sandbox-run: invalid limit is a usage error (2)");
	rc = run_cli((char *[]){ cli, parg, "--net", "wifi", "--", "true", NULL }, NULL, out,
		     sizeof(out));
	ok(rc == 2 && strstr(out, "--net"), "sandbox-run: unknown --net is a usage error (2)");
	rc = run_cli((char *[]){ cli, parg, NULL }, NULL, out, sizeof(out));
	ok(rc == 2 && strstr(out, "missing command"), "sandbox-run: missing command (2)");
	{
		char ro[256];

		snprintf(ro, sizeof(ro), "--ro-bind=%s:/app", appdir);
		rc = run_cli((char *[]){ cli, parg, idarg, ro, "--", "/app/helper", "--helper",
					 "sigwait", NULL },
			     "ready", out, sizeof(out));
		ok(rc == 0 && strstr(out, "got 15"),
		   "sandbox-run forwards SIGTERM to the command's handler (exit %d)", rc);
		rc = run_cli((char *[]){ cli, parg, idarg, ro, "--", "/bin/sh", "-c",
					 "echo ready; sleep 30", NULL },
			     "ready", out, sizeof(out));
		ok(rc == 143,
		   "sandbox-run: a shell without handler dies by the forwarded SIGTERM "
		   "(exit %d = 128 + 15)",
		   rc);
		rc = run_cli((char *[]){ cli, parg, idarg, ro, "--user", "1000:1000", "--",
					 "/bin/sh", "-c", "cat /app/hello; id -u", NULL },
			     NULL, out, sizeof(out));
		ok(rc == 0 && strstr(out, "hello-app\n1000\n"),
		   "sandbox-run --ro-bind DIR:/app --user");
	}
	rc = run_cli((char *[]){ cli,
				 parg,
				 idarg,
				 "--rlimit",
				 "NOFILE=64:128",
				 "--env",
				 "FOO=bar",
				 "--user",
				 "1000",
				 "--cap",
				 "net_raw",
				 "--vcpus",
				 "0.5",
				 "--storage",
				 "1M",
				 "--",
				 "/bin/sh",
				 "-c",
				 "ulimit -n; ulimit -Hn; echo $FOO; grep CapEff /proc/self/status; "
				 "head -c 2000000 /dev/zero > /tmp/f 2>/dev/null || echo full",
				 NULL },
		     NULL, out, sizeof(out));
	ok(rc == 0 && strstr(out, "64\n128\nbar\nCapEff:\t0000000000002000\nfull\n"),
	   "sandbox-run --rlimit --env --user --cap --vcpus --storage");
	{
		static const char *const bad[][2] = {
			{ "--vcpus", "0" },	{ "--vcpus", "1.2345" }, { "--memory", "12X" },
			{ "--cap", "nope" },	{ "--rlimit", "FOO=1" }, { "--user", "x" },
			{ "--userns", "0:10" }, { "--pids", "0" }
		};
		int good = 0;

		for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
			rc = run_cli((char *[]){ cli, (char *)bad[i][0], (char *)bad[i][1], "--",
						 "true", NULL },
				     NULL, out, sizeof(out));
			if (rc == 2 && strchr(out, '\n') == out + strlen(out) - 1)
				good++;
			else
				diag("%s %s: rc %d, %s", bad[i][0], bad[i][1], rc, out);
		}
		ok(good == (int)ARRAY_SIZE(bad),
		   "sandbox-run: %d bad option values, exit 2 with one line", good);
	}
	ok(cgroup_gone(idarg + 5), "sandbox-run cleaned up its cgroup");
}

static int copy_file(const char *src, const char *dst)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r = fs_read_file_at(AT_FDCWD, src, 64 << 20, &data, &len);

	if (r < 0)
		return r;
	return fs_write_atomic(dst, data, len, 0755);
}

static void remove_parent(void)
{
	/* whatever a failed check left behind */
	(void)sandbox_gc(sys, parent, NULL, "/nonexistent-ipam", NULL);
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		char path[PATH_MAX];
		const char *root = cg_system_hier_path(sys, h);

		if (!root)
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, parent);
		if (rmdir(path) < 0 && errno != ENOENT)
			diag("cannot remove %s: %m", path);
	}
}

int main(int argc, char **argv)
{
	struct cd_error err = { 0 };
	char self[PATH_MAX];
	ssize_t n;

	if (argc > 2 && streq(argv[1], "--helper"))
		return helper(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("1..0 # SKIP sandbox selftests need root\n");
		return 77;
	}
	if (cg_system_detect(NULL, &sys, &err) < 0) {
		printf("1..0 # SKIP no cgroup hierarchy: %s\n", cd_error_message(&err));
		return 77;
	}
	diag("cgroup layout: %s", cg_layout_to_string(cg_system_layout(sys)));
	snprintf(parent, sizeof(parent), "codedeploy-selftest-%d", (int)getpid());
	snprintf(appdir, sizeof(appdir), "/tmp/cd-selftest-app.XXXXXX");
	if (!mkdtemp(appdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	chmod(appdir, 0755);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	snprintf(helper_path, sizeof(helper_path), "%s/helper", appdir);
	{
		char hello[256];
		snprintf(hello, sizeof(hello), "%s/hello", appdir);
		if (copy_file(self, helper_path) < 0 ||
		    fs_write_atomic(hello, "hello-app\n", 10, 0644) < 0) {
			printf("Bail out! cannot prepare %s\n", appdir);
			return 1;
		}
	}

	{
		char dir[PATH_MAX], *slash;

		snprintf(dir, sizeof(dir), "%s", self);
		slash = strrchr(dir, '/');
		if (slash) {
			*slash = '\0';
			char p[PATH_MAX + 32];

			snprintf(p, sizeof(p), "%s/../sandbox-run", dir);
			if (!realpath(p, cli))
				cli[0] = '\0';
			snprintf(p, sizeof(p), "%s/../sandbox-init", dir);
			if (!realpath(p, init_bin))
				init_bin[0] = '\0';
		}
	}
	test_namespaces();
	test_limits_visible();
	test_attach_by_pid();
	test_filesystem();
	test_seccomp();
	test_signals_and_status();
	test_errors();
	test_oom();
	test_pids_max();
	test_cpu_quota();
	test_net_none();
	test_exec_in_task();
	test_threads();
	test_userns();
	test_v2_on_unified();
	test_pure_v1();
	test_adopt_and_gc();
	{
		char *slash = strrchr(self, '/');

		if (slash) {
			*slash = '\0';
			snprintf(cli, sizeof(cli), "%.*s/../sandbox-run", (int)(sizeof(cli) - 20),
				 self);
		}
	}
	test_cli();
	test_net_bridge(); /* last: moves this process into a private netns */

	remove_parent();
	fs_rm_rf_at(AT_FDCWD, appdir);
	cg_system_free(sys);
	printf("1..%d\n", n_test);
	return n_fail ? 1 : 0;
}
