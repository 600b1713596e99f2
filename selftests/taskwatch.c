/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Selftest for ebpf/taskwatch: real processes in real cgroups (unified + v1 memory), each case
 * in BPF mode and in the fallback, checking the exact reason the classifier gives. TAP; exit
 * 77 when not root or the hierarchies are missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ebpf/taskwatch.h"
#include "lib/fs.h"
#include "lib/macro.h"
#include "lib/str.h"
#include "selftests/taskwatch_util.h"

#define STORM_FORKS 1000
#define PUMP_TIMEOUT_MS 20000

struct run {
	struct taskwatch *tw;
	const char *mode;
	struct test_cgroup cg;
	struct taskwatch_classifier cls;
	struct taskwatch_event *evs; /* every event delivered, ours or not */
	size_t n_evs, alloc_evs;
	uint64_t lost;
	bool saw_lost, saw_empty;
	pid_t main_pid;
	int pidfd;
	bool reaped;
};

static char coredir[64];
/* main_kind for the next run_start() (tests of the tiny-init layout set it) */
static enum taskwatch_main next_main_kind = TASKWATCH_MAIN_INIT;

static int collect(const struct taskwatch_event *ev, void *userdata)
{
	struct run *r = userdata;

	if (r->n_evs == r->alloc_evs) {
		size_t n = r->alloc_evs ? r->alloc_evs * 2 : 256;
		struct taskwatch_event *v = reallocarray(r->evs, n, sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->evs = v;
		r->alloc_evs = n;
	}
	r->evs[r->n_evs++] = *ev;
	if (ev->type == TASKWATCH_EV_LOST) {
		r->saw_lost = true;
		r->lost += ev->lost.count;
		taskwatch_reason_feed(&r->cls, ev);
	} else if (ev->cgroup_id == r->cg.id) {
		if (ev->type == TASKWATCH_EV_CGROUP_EMPTY)
			r->saw_empty = true;
		taskwatch_reason_feed(&r->cls, ev);
	}
	return 0;
}

static bool until_ended(struct run *r)
{
	return r->cls.ended;
}

static bool until_empty(struct run *r)
{
	return r->saw_empty;
}

/* Consume until done(r) or timeout; false on timeout or error. */
static bool pump(struct run *r, bool (*done)(struct run *), int timeout_ms)
{
	struct pollfd p = { .fd = taskwatch_fd(r->tw), .events = POLLIN };
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int c = taskwatch_consume(r->tw, collect, r);
		long elapsed;

		if (c < 0) {
			tap_diag("taskwatch_consume: %s", strerror(-c));
			return false;
		}
		if (done(r))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		elapsed = (now.tv_sec - start.tv_sec) * 1000 +
			  (now.tv_nsec - start.tv_nsec) / 1000000;
		if (elapsed >= timeout_ms)
			return false;
		(void)poll(&p, 1, (int)MIN(100, timeout_ms - elapsed));
	}
}

static bool run_start(struct run *r, struct taskwatch *tw, const char *name, uint64_t memlimit,
		      int (*fn)(void *), void *arg)
{
	struct taskwatch_target t = TASKWATCH_TARGET_INIT;
	char cgname[64];
	int e;

	memset(r, 0, sizeof(*r));
	r->tw = tw;
	r->mode = taskwatch_mode(tw, NULL);
	r->pidfd = -EBADF;
	taskwatch_reason_init(&r->cls);
	snprintf(cgname, sizeof(cgname), "%s-%s", r->mode, name);
	e = test_cgroup_create(&r->cg, cgname, memlimit);
	if (e < 0) {
		tap_diag("%s: cgroup: %s", name, strerror(-e));
		return false;
	}
	t.cgroup_id = r->cg.id;
	t.cookie = 0xc0de0000u + r->cg.id;
	t.cgroup_path = r->cg.unified;
	t.memory_path = r->cg.memory[0] ? r->cg.memory : NULL;
	t.main_kind = next_main_kind;
	next_main_kind = TASKWATCH_MAIN_INIT;
	e = taskwatch_add(tw, &t);
	if (e < 0) {
		tap_diag("%s: taskwatch_add: %s", name, strerror(-e));
		test_cgroup_destroy(&r->cg);
		return false;
	}
	r->main_pid = test_spawn(&r->cg, fn, arg, &r->pidfd);
	if (r->main_pid < 0) {
		tap_diag("%s: spawn: %s", name, strerror(-r->main_pid));
		return false;
	}
	e = taskwatch_set_init(tw, r->cg.id, r->main_pid, r->pidfd);
	if (e < 0) {
		tap_diag("%s: taskwatch_set_init: %s", name, strerror(-e));
		return false;
	}
	return true;
}

static void run_finish(struct run *r)
{
	if (r->main_pid > 0 && !r->reaped)
		waitpid(r->main_pid, NULL, 0);
	(void)taskwatch_remove(r->tw, r->cg.id);
	test_cgroup_destroy(&r->cg);
	safe_close(r->pidfd);
	free(r->evs);
	r->evs = NULL;
}

/* Run one task to its end; returns its reason formatted into buf and in *ret. */
static bool run_task(struct run *r, struct taskwatch *tw, const char *name, uint64_t memlimit,
		     int (*fn)(void *), void *arg, struct taskwatch_reason *ret, char *buf,
		     size_t size)
{
	snprintf(buf, size, "(none)");
	memset(ret, 0, sizeof(*ret));
	if (!run_start(r, tw, name, memlimit, fn, arg))
		return false;
	if (!pump(r, until_ended, PUMP_TIMEOUT_MS)) {
		tap_diag("%s: task did not end in time", name);
		return false;
	}
	if (taskwatch_reason_get(&r->cls, ret) < 0)
		return false;
	taskwatch_reason_format(ret, buf, size);
	return true;
}

static size_t count_events(const struct run *r, enum taskwatch_event_type type, pid_t ppid)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n_evs; i++)
		if (r->evs[i].type == type && r->evs[i].cgroup_id == r->cg.id &&
		    (ppid == 0 || (pid_t)r->evs[i].ppid == ppid))
			n++;
	return n;
}

/* ---- what the tasks run (in the forked child) ---- */

static int child_true(void *arg)
{
	execl("/bin/true", "true", (char *)NULL);
	return 126;
}

static int child_exit3(void *arg)
{
	execl("/bin/sh", "sh", "-c", "exit 3", (char *)NULL);
	return 126;
}

static int child_segv(void *arg)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	volatile int *p;

	/* core_pattern is relative ("core") or a pipe: give it a writable, throw-away cwd; and
	 * the default action even if a handler was inherited (sanitizer builds install one) */
	signal(SIGSEGV, SIG_DFL);
	(void)setrlimit(RLIMIT_CORE, &rl);
	if (chdir(coredir) < 0)
		return 125;
	/* A real fault at an address that was just unmapped (a NULL store may be optimised
	 * away as undefined behaviour). */
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || munmap((void *)p, 4096) < 0)
		return 123;
	*p = 1;
	return 124;
}

static int child_sleep(void *arg)
{
	execl("/bin/sleep", "sleep", "60", (char *)NULL);
	return 126;
}

static int child_killer(void *arg)
{
	pid_t target = *(pid_t *)arg;

	(void)prctl(PR_SET_NAME, "tw-killer");
	return kill(target, SIGKILL) < 0 ? 1 : 0;
}

static int child_sigterm(void *arg)
{
	pid_t target = *(pid_t *)arg;

	(void)prctl(PR_SET_NAME, "tw-killer");
	return kill(target, SIGTERM) < 0 ? 1 : 0;
}

static int child_oom(void *arg)
{
	/* 1 GiB against a 32 MiB limit, touching every page; surviving is a failure (0) */
	for (int i = 0; i < 1024; i++) {
		char *m = malloc(1 << 20);

		if (!m)
			return 2;
		memset(m, i, 1 << 20);
	}
	return 0;
}

static int child_children_exit(void *arg)
{
	for (int i = 1; i <= 3; i++) {
		pid_t c = fork();

		if (c == 0)
			_exit(i);
		if (c < 0)
			return 2;
	}
	while (wait(NULL) > 0)
		;
	usleep(100 * 1000);
	return 7;
}

static int child_orphan(void *arg)
{
	pid_t c = fork();

	if (c == 0) {
		execl("/bin/sleep", "sleep", "60", (char *)NULL);
		_exit(126);
	}
	return c < 0 ? 2 : 4;
}

static int child_storm(void *arg)
{
	int n = *(int *)arg;

	for (int i = 0; i < n; i++) {
		pid_t c = fork();

		if (c == 0)
			_exit(0);
		if (c < 0)
			return 2;
		if (waitpid(c, NULL, 0) < 0)
			return 3;
	}
	return 0;
}

/* taskd's layout: a tiny init runs the command as its child and exits with its status the
 * way shells do (128 + signal), so only the command's own death tells the real reason. */
struct init_arg {
	int (*cmd)(void *);
	void *arg;
};

static volatile pid_t init_cmd_pid;

static void init_forward(int sig)
{
	if (init_cmd_pid > 0)
		kill(init_cmd_pid, sig);
}

static int child_init(void *p)
{
	const struct init_arg *a = p;
	struct sigaction sa = { .sa_handler = init_forward, .sa_flags = SA_RESTART };
	int st;
	pid_t c;

	sigset_t term, old;

	(void)prctl(PR_SET_NAME, "tw-init");
	/* like taskd's init: forward what it is sent to the command; SIGTERM stays blocked
	 * until the command's pid is known, so an early one is forwarded, not lost */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	sigaction(SIGTERM, &sa, NULL);
	c = fork();
	if (c == 0) {
		signal(SIGTERM, SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		_exit(a->cmd(a->arg));
	}
	init_cmd_pid = c;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (c < 0 || waitpid(c, &st, 0) != c)
		return 99;
	return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

static pid_t first_child(pid_t pid)
{
	char path[64];
	_cleanup_free_ char *text = NULL;
	unsigned v;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	for (int i = 0; i < 500; i++) {
		free(text);
		text = NULL;
		if (fs_read_file_at(AT_FDCWD, path, 4096, &text, NULL) == 0 &&
		    sscanf(text, "%u", &v) == 1)
			return (pid_t)v;
		usleep(10 * 1000);
	}
	return -1;
}

/* A re-adopted task after a taskd restart: its init is not our child. A (our child, a
 * subreaper) forks B, B forks G and exits, G is reparented to A. G is the init we watch; A
 * reaps it only 100 ms after it exited, so the fallback has to wait for the status. */
static int child_subreaper(void *arg)
{
	int wfd = *(int *)arg;
	pid_t b, g;

	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	b = fork();
	if (b == 0) {
		g = fork();
		if (g == 0) {
			usleep(50 * 1000);
			_exit(42);
		}
		_exit(write(wfd, &g, sizeof(g)) == (ssize_t)sizeof(g) ? 0 : 1);
	}
	if (b < 0 || waitpid(b, NULL, 0) != b)
		return 2;
	usleep(150 * 1000);
	while (wait(NULL) > 0)
		;
	return 0;
}

/* ---- cases ---- */

/* Adding a still-empty cgroup (add, then spawn: the normal order) is not an "empty" event. */
static void case_empty_at_add(struct taskwatch *tw)
{
	struct run r;
	struct pollfd p;
	size_t before;
	bool ok;

	ok = run_start(&r, tw, "empty-at-add", 0, child_true, NULL);
	/* run_start spawned already; drop that and look at a second, idle cgroup */
	if (ok)
		ok = pump(&r, until_ended, PUMP_TIMEOUT_MS);
	before = r.n_evs;
	{
		struct test_cgroup idle;
		struct taskwatch_target t = TASKWATCH_TARGET_INIT;
		bool spurious = false;

		ok = ok && test_cgroup_create(&idle, "idle", 0) == 0;
		if (ok) {
			t.cgroup_id = idle.id;
			t.cgroup_path = idle.unified;
			ok = taskwatch_add(tw, &t) == 0;
			p = (struct pollfd){ .fd = taskwatch_fd(tw), .events = POLLIN };
			(void)poll(&p, 1, 50);
			ok = ok && taskwatch_consume(tw, collect, &r) >= 0;
			for (size_t i = before; i < r.n_evs; i++)
				if (r.evs[i].cgroup_id == idle.id)
					spurious = true;
			(void)taskwatch_remove(tw, idle.id);
			test_cgroup_destroy(&idle);
		}
		tap_ok(ok && !spurious, "%s: adding an empty cgroup reports nothing", r.mode);
	}
	run_finish(&r);
}

static void case_exit0(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs;
	char buf[128];
	bool ok = run_task(&r, tw, "exit0", 0, child_true, NULL, &rs, buf, sizeof(buf));

	tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 0 && !rs.uncertain &&
		       rs.main_pid == r.main_pid,
	       "%s: exit 0 -> %s", r.mode, buf);
	if (taskwatch_is_bpf(tw)) {
		bool exec_seen = false;

		for (size_t i = 0; i < r.n_evs; i++)
			if (r.evs[i].type == TASKWATCH_EV_EXEC &&
			    (r.evs[i].flags & TASKWATCH_F_MAIN) &&
			    streq(r.evs[i].exec.filename, "/bin/true") &&
			    r.evs[i].cookie == 0xc0de0000u + r.cg.id)
				exec_seen = true;
		tap_ok(exec_seen, "%s: exec event of the main process with filename and cookie",
		       r.mode);
	}
	run_finish(&r);
}

static void case_exit3(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs;
	char buf[128];
	bool ok = run_task(&r, tw, "exit3", 0, child_exit3, NULL, &rs, buf, sizeof(buf));

	tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 3, "%s: exit 3 -> %s",
	       r.mode, buf);
	run_finish(&r);
}

static bool core_expected(void)
{
	_cleanup_free_ char *pattern = NULL;

	/* A pipe handler may refuse or be absent; a file pattern in a writable cwd dumps. */
	if (fs_read_file_at(AT_FDCWD, "/proc/sys/kernel/core_pattern", 4096, &pattern, NULL) < 0)
		return false;
	return pattern[0] != '|' && pattern[0] != '\n' && pattern[0] != '\0';
}

static void case_segv(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs;
	char buf[160];
	bool ok = run_task(&r, tw, "segv", 0, child_segv, NULL, &rs, buf, sizeof(buf));

	tap_ok(ok && rs.kind == TASKWATCH_REASON_SIGNALED && rs.signal == SIGSEGV,
	       "%s: SIGSEGV -> %s", r.mode, buf);
	if (core_expected())
		tap_ok(ok && rs.core_dumped, "%s: SIGSEGV core_dumped flag set", r.mode);
	else
		tap_skip("core_pattern is a pipe: dump not guaranteed", "%s: core_dumped", r.mode);
	if (taskwatch_is_bpf(tw))
		tap_ok(ok && rs.sender_kernel && rs.sender_pid == r.main_pid,
		       "%s: SIGSEGV raised by the kernel in the faulting process", r.mode);
	run_finish(&r);
	(void)fs_rm_rf_at(AT_FDCWD, coredir);
	(void)mkdir(coredir, 0700);
}

static void case_sigkill(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs = { 0 };
	char buf[160] = "(none)";
	pid_t killer = -1;
	bool ok = run_start(&r, tw, "sigkill", 0, child_sleep, NULL);

	if (ok) {
		usleep(50 * 1000);
		killer = test_spawn(NULL, child_killer, &r.main_pid, NULL);
		ok = killer > 0 && pump(&r, until_ended, PUMP_TIMEOUT_MS) &&
		     taskwatch_reason_get(&r.cls, &rs) == 0;
		taskwatch_reason_format(&rs, buf, sizeof(buf));
	}
	tap_ok(ok && rs.kind == TASKWATCH_REASON_SIGNALED && rs.signal == SIGKILL,
	       "%s: SIGKILL from another process -> %s", r.mode, buf);
	if (taskwatch_is_bpf(tw))
		tap_ok(ok && rs.sender_pid == killer && streq(rs.sender_comm, "tw-killer") &&
			       !rs.sender_kernel,
		       "%s: sender identified (pid %d, comm %s)", r.mode, (int)rs.sender_pid,
		       rs.sender_comm);
	else
		tap_ok(ok && rs.sender_pid == 0,
		       "%s: sender reported unknown (no BPF: waitid cannot tell)", r.mode);
	if (killer > 0)
		waitpid(killer, NULL, 0);
	run_finish(&r);
}

static void case_oom(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs;
	char buf[160];
	bool ok;

	if (access(CG_MEMORY_ROOT "/memory.limit_in_bytes", F_OK) < 0) {
		tap_skip("no v1 memory controller", "%s: OOM", taskwatch_mode(tw, NULL));
		if (taskwatch_is_bpf(tw))
			tap_skip("no v1 memory controller", "bpf: OOM victim");
		return;
	}
	ok = run_task(&r, tw, "oom", 32 << 20, child_oom, NULL, &rs, buf, sizeof(buf));
	tap_ok(ok && rs.kind == TASKWATCH_REASON_OOM_KILLED && rs.oom_kills >= 1 &&
		       rs.signal == SIGKILL,
	       "%s: OOM in a 32 MiB v1 memory cgroup -> %s (not \"signal 9\")", r.mode, buf);
	if (taskwatch_is_bpf(tw))
		tap_ok(ok && rs.oom_victim_pid == r.main_pid,
		       "%s: OOM victim matched by its cgroup2 id (pid %d)", r.mode,
		       (int)rs.oom_victim_pid);
	run_finish(&r);
}

static void case_init_oom(struct taskwatch *tw)
{
	struct init_arg a = { child_oom, NULL };
	struct run r;
	struct taskwatch_reason rs;
	char buf[160];
	bool ok;

	if (access(CG_MEMORY_ROOT "/memory.limit_in_bytes", F_OK) < 0) {
		tap_skip("no v1 memory controller", "%s: init + OOM", taskwatch_mode(tw, NULL));
		if (taskwatch_is_bpf(tw))
			tap_skip("no v1 memory controller", "bpf: init + OOM victim");
		return;
	}
	next_main_kind = TASKWATCH_MAIN_INIT_CHILD;
	ok = run_task(&r, tw, "init-oom", 32 << 20, child_init, &a, &rs, buf, sizeof(buf));
	/* the init itself exits 137: without the OOM event this would read "exited(137)" */
	tap_ok(ok && rs.kind == TASKWATCH_REASON_OOM_KILLED,
	       "%s: tiny init, command OOM-killed, init exits 137 -> %s", r.mode, buf);
	if (taskwatch_is_bpf(tw))
		tap_ok(ok && rs.main_pid > 0 && rs.main_pid != r.main_pid &&
			       rs.oom_victim_pid == rs.main_pid && rs.signal == SIGKILL &&
			       !rs.uncertain,
		       "%s: main = the init's child (pid %d), it was the OOM victim", r.mode,
		       (int)rs.main_pid);
	run_finish(&r);
}

static void case_init_sigkill(struct taskwatch *tw)
{
	struct init_arg a = { child_sleep, NULL };
	struct run r;
	struct taskwatch_reason rs = { 0 };
	char buf[160] = "(none)";
	pid_t killer = -1, cmd = -1;
	bool ok;

	next_main_kind = TASKWATCH_MAIN_INIT_CHILD;
	ok = run_start(&r, tw, "init-kill", 0, child_init, &a);
	if (ok) {
		cmd = first_child(r.main_pid);
		killer = cmd > 0 ? test_spawn(NULL, child_killer, &cmd, NULL) : -1;
		ok = killer > 0 && pump(&r, until_ended, PUMP_TIMEOUT_MS) &&
		     taskwatch_reason_get(&r.cls, &rs) == 0;
		taskwatch_reason_format(&rs, buf, sizeof(buf));
	}
	if (taskwatch_is_bpf(tw)) {
		tap_ok(ok && rs.kind == TASKWATCH_REASON_SIGNALED && rs.signal == SIGKILL,
		       "%s: tiny init, command SIGKILLed, init exits 137 -> %s", r.mode, buf);
		tap_ok(ok && rs.main_pid == cmd && rs.sender_pid == killer && !rs.uncertain,
		       "%s: reason taken from the command (pid %d), sender %d", r.mode, (int)cmd,
		       (int)rs.sender_pid);
	} else {
		/* documented limit: the fallback only sees the init's status */
		tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 137 &&
			       rs.uncertain,
		       "%s: tiny init, command SIGKILLed -> %s (init's status, marked uncertain)",
		       r.mode, buf);
	}
	if (killer > 0)
		waitpid(killer, NULL, 0);
	run_finish(&r);
}

static void case_not_our_child(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs = { 0 };
	char buf[128] = "(none)";
	int p[2] = { -1, -1 };
	pid_t g = -1;
	bool ok;

	memset(&r, 0, sizeof(r));
	ok = pipe2(p, O_CLOEXEC) == 0;
	/* run_start() makes A the init; the init we want is G, named once known */
	ok = ok && run_start(&r, tw, "notchild", 0, child_subreaper, &p[1]);
	ok = ok && read(p[0], &g, sizeof(g)) == (ssize_t)sizeof(g) && g > 0;
	ok = ok && taskwatch_set_init(tw, r.cg.id, g, -1) == 0;
	if (ok) {
		taskwatch_reason_init(&r.cls); /* A's events so far are not G's */
		ok = pump(&r, until_ended, PUMP_TIMEOUT_MS) &&
		     taskwatch_reason_get(&r.cls, &rs) == 0;
		taskwatch_reason_format(&rs, buf, sizeof(buf));
	}
	tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 42 && !rs.uncertain &&
		       rs.main_pid == g,
	       "%s: init that is not our child (re-adopted task) exits 42 -> %s", r.mode, buf);
	safe_close(p[0]);
	safe_close(p[1]);
	run_finish(&r);
}

static void case_init_forward(struct taskwatch *tw)
{
	struct init_arg a = { child_sleep, NULL };
	struct run r;
	struct taskwatch_reason rs = { 0 };
	char buf[160] = "(none)";
	pid_t sender = -1;
	bool ok;

	next_main_kind = TASKWATCH_MAIN_INIT_CHILD;
	ok = run_start(&r, tw, "init-fwd", 0, child_init, &a);
	if (ok) {
		ok = first_child(r.main_pid) > 0; /* the init has its handler and its command */
		/* SIGTERM to the init, which forwards it to the command */
		sender = ok ? test_spawn(NULL, child_sigterm, &r.main_pid, NULL) : -1;
		ok = sender > 0 && pump(&r, until_ended, PUMP_TIMEOUT_MS) &&
		     taskwatch_reason_get(&r.cls, &rs) == 0;
		taskwatch_reason_format(&rs, buf, sizeof(buf));
	}
	if (taskwatch_is_bpf(tw))
		tap_ok(ok && rs.kind == TASKWATCH_REASON_SIGNALED && rs.signal == SIGTERM &&
			       rs.via_init && rs.sender_pid == sender &&
			       streq(rs.sender_comm, "tw-killer"),
		       "%s: SIGTERM to the init, forwarded to the command -> %s", r.mode, buf);
	else
		tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 128 + SIGTERM,
		       "%s: SIGTERM forwarded by the init -> %s (init's status)", r.mode, buf);
	if (sender > 0)
		waitpid(sender, NULL, 0);
	run_finish(&r);
}

static void case_children_exit(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs;
	char buf[128];
	bool ok = run_task(&r, tw, "children", 0, child_children_exit, NULL, &rs, buf, sizeof(buf));

	tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 7,
	       "%s: children exiting 1,2,3 do not end the task; main's exit 7 does -> %s", r.mode,
	       buf);
	if (taskwatch_is_bpf(tw)) {
		size_t child_exits = count_events(&r, TASKWATCH_EV_EXIT, r.main_pid);

		tap_ok(child_exits == 3, "%s: 3 child exits seen, none flagged main (%zu)", r.mode,
		       child_exits);
	}
	run_finish(&r);
}

static void case_orphan(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs;
	char buf[128];
	int left = -1;
	bool ok = run_task(&r, tw, "orphan", 0, child_orphan, NULL, &rs, buf, sizeof(buf));

	if (ok)
		left = test_cgroup_nprocs(&r.cg);
	tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 4 && left >= 1,
	       "%s: main exits 4 while a child lives (%d left) -> %s", r.mode, left, buf);
	/* the caller kills what is left; the emptiness then shows up as an event */
	if (ok) {
		char path[300];
		_cleanup_close_ int fd = -EBADF;

		snprintf(path, sizeof(path), "%s/cgroup.kill", r.cg.unified);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		ok = fd >= 0 && fs_write_all(fd, "1", 1) == 0;
	}
	tap_ok(ok && pump(&r, until_empty, PUMP_TIMEOUT_MS),
	       "%s: cgroup_empty after the leftover child is killed", r.mode);
	run_finish(&r);
}

static void case_storm(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs;
	char buf[128];
	int n = STORM_FORKS;
	struct timespec a, b;
	bool ok;
	double secs;

	clock_gettime(CLOCK_MONOTONIC, &a);
	ok = run_task(&r, tw, "storm", 0, child_storm, &n, &rs, buf, sizeof(buf));
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	tap_ok(ok && rs.kind == TASKWATCH_REASON_EXITED && rs.exit_code == 0,
	       "%s: %d forks in %.2fs (%.0f/s) -> %s", r.mode, n, secs, n / secs, buf);
	if (taskwatch_is_bpf(tw)) {
		size_t exits = count_events(&r, TASKWATCH_EV_EXIT, r.main_pid);
		size_t forks = count_events(&r, TASKWATCH_EV_FORK, r.main_pid);

		tap_ok(exits == (size_t)n && forks == (size_t)n && !r.saw_lost &&
			       taskwatch_lost(tw, NULL) == 0,
		       "%s: storm: %zu/%d exits, %zu forks, none lost", r.mode, exits, n, forks);
	}
	run_finish(&r);
}

static void case_storm_overflow(void)
{
	struct taskwatch_opts o = { .ringbuf_bytes = 4096 };
	_cleanup_taskwatch_ struct taskwatch *tw = NULL;
	uint64_t lost[TASKWATCH_EV__MAX];
	struct run r;
	struct taskwatch_reason rs = { 0 };
	int n = STORM_FORKS, st;
	size_t exits;
	bool ok;

	if (taskwatch_new(&o, &tw) < 0 || !taskwatch_is_bpf(tw)) {
		tap_skip("BPF mode unavailable", "bpf: ring buffer overflow is counted");
		return;
	}
	ok = run_start(&r, tw, "overflow", 0, child_storm, &n);
	/* do not consume while the storm runs: a 4 KiB ring must overflow */
	ok = ok && waitpid(r.main_pid, &st, 0) == r.main_pid;
	r.reaped = ok;
	ok = ok && pump(&r, until_ended, PUMP_TIMEOUT_MS) && taskwatch_reason_get(&r.cls, &rs) == 0;
	taskwatch_lost(tw, lost);
	exits = count_events(&r, TASKWATCH_EV_EXIT, 0);
	tap_ok(ok && r.saw_lost && lost[TASKWATCH_EV_EXIT] > 0 &&
		       exits + lost[TASKWATCH_EV_EXIT] == (size_t)n + 1 && rs.uncertain,
	       "bpf: 4 KiB ring: %zu exits delivered + %llu counted lost = %d, LOST event seen, "
	       "reason marked uncertain",
	       exits, (unsigned long long)lost[TASKWATCH_EV_EXIT], n + 1);
	run_finish(&r);
}

static void case_outside(struct taskwatch *tw)
{
	struct run r;
	struct taskwatch_reason rs = { 0 };
	char buf[128];
	pid_t outside;
	bool foreign = false, ok;

	/* a watched task and, at the same time, a process in our own (unwatched) cgroup */
	ok = run_start(&r, tw, "outside", 0, child_sleep, NULL);
	outside = test_spawn(NULL, child_true, NULL, NULL);
	if (outside > 0)
		waitpid(outside, NULL, 0);
	if (ok) {
		kill(r.main_pid, SIGTERM);
		ok = pump(&r, until_ended, PUMP_TIMEOUT_MS) &&
		     taskwatch_reason_get(&r.cls, &rs) == 0;
	}
	for (size_t i = 0; i < r.n_evs; i++)
		if ((pid_t)r.evs[i].tgid == outside || r.evs[i].cgroup_id != r.cg.id)
			foreign = r.evs[i].type != TASKWATCH_EV_LOST;
	taskwatch_reason_format(&rs, buf, sizeof(buf));
	tap_ok(ok && outside > 0 && !foreign && rs.kind == TASKWATCH_REASON_SIGNALED &&
		       rs.signal == SIGTERM,
	       "%s: a process outside watched cgroups produced no event (%zu events, all ours; "
	       "task -> %s)",
	       r.mode, r.n_evs, buf);
	run_finish(&r);
}

static int child_count_bpf_maps(void *arg)
{
	_cleanup_free_ char *maps = NULL;
	int n = 0;

	if (fs_read_file_at(AT_FDCWD, "/proc/self/maps", 1 << 22, &maps, NULL) < 0)
		return 255;
	for (const char *p = maps; (p = strstr(p, "bpf-map")); p++)
		n++;
	return MIN(n, 254);
}

/* taskd forks every task from the process that owns the watcher: the ring buffer's mappings
 * (VM_MIXEDMAP, data mapped twice) must not be copied into each child. */
static void case_ringbuf_not_inherited(struct taskwatch *tw)
{
	_cleanup_free_ char *maps = NULL;
	int in_parent = 0, st = -1;
	pid_t pid;

	if (fs_read_file_at(AT_FDCWD, "/proc/self/maps", 1 << 22, &maps, NULL) == 0)
		for (const char *p = maps; (p = strstr(p, "bpf-map")); p++)
			in_parent++;
	pid = test_spawn(NULL, child_count_bpf_maps, NULL, NULL);
	if (pid > 0)
		waitpid(pid, &st, 0);
	tap_ok(in_parent >= 2 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "bpf: ring buffer mapped in the watcher (%d mappings), none inherited by a fork "
	       "(%d)",
	       in_parent, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Without CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN the load fails and the fallback says why. */
static int child_nocaps(void *arg)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	static const int drop[] = { CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON };
	struct taskwatch *tw = NULL;
	const char *why = "";
	int ok;

	if (syscall(SYS_capget, &h, d) < 0)
		return 2;
	for (size_t i = 0; i < ARRAY_SIZE(drop); i++) {
		d[drop[i] / 32].effective &= ~(1u << (drop[i] % 32));
		d[drop[i] / 32].permitted &= ~(1u << (drop[i] % 32));
	}
	if (syscall(SYS_capset, &h, d) < 0)
		return 3;
	if (taskwatch_new(NULL, &tw) < 0)
		return 4;
	ok = !taskwatch_is_bpf(tw);
	taskwatch_mode(tw, &why);
	ok = ok && strstr(why, "CAP_") != NULL;
	printf("# without capabilities: %s\n", why);
	fflush(stdout);
	taskwatch_free(tw);
	return ok ? 0 : 5;
}

static void case_no_caps(void)
{
	int st = -1;
	pid_t pid = test_spawn(NULL, child_nocaps, NULL, NULL);

	if (pid > 0)
		waitpid(pid, &st, 0);
	tap_ok(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "without CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN: fallback, reason names the capabilities "
	       "(child status %d)",
	       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Two tasks at once, told apart by cookie; the callback removes each target as its task
 * ends (taskd's pattern), which must be safe in the middle of a consume. */
struct pair {
	struct taskwatch *tw;
	struct test_cgroup cg[2];
	struct taskwatch_classifier cls[2];
	int ended, removed_ok, foreign;
};

static int pair_collect(const struct taskwatch_event *ev, void *userdata)
{
	struct pair *p = userdata;

	for (int i = 0; i < 2; i++) {
		if (ev->type == TASKWATCH_EV_LOST) {
			taskwatch_reason_feed(&p->cls[i], ev);
			continue;
		}
		if (ev->cookie != (uint64_t)(100 + i))
			continue;
		if (ev->cgroup_id != p->cg[i].id)
			p->foreign++;
		if (!p->cls[i].ended && taskwatch_reason_feed(&p->cls[i], ev)) {
			p->ended++;
			if (taskwatch_remove(p->tw, p->cg[i].id) == 0)
				p->removed_ok++;
		}
	}
	return 0;
}

static int child_exit5(void *arg)
{
	usleep(20 * 1000);
	return 5;
}

static void case_two_tasks(struct taskwatch *tw)
{
	struct pair p = { .tw = tw };
	struct taskwatch_reason r0 = { 0 }, r1 = { 0 };
	pid_t pid[2] = { -1, -1 };
	int pidfd[2] = { -1, -1 };
	bool ok = true;
	char b0[96] = "", b1[96] = "";

	for (int i = 0; i < 2; i++) {
		struct taskwatch_target t = TASKWATCH_TARGET_INIT;

		char name[32];
		int e;

		taskwatch_reason_init(&p.cls[i]);
		snprintf(name, sizeof(name), "%s-pair%d", taskwatch_mode(tw, NULL), i);
		e = test_cgroup_create(&p.cg[i], name, 0);
		if (e < 0) {
			tap_diag("pair: cgroup: %s", strerror(-e));
			ok = false;
			break;
		}
		t.cgroup_id = p.cg[i].id;
		t.cookie = (uint64_t)(100 + i);
		t.cgroup_path = p.cg[i].unified;
		e = taskwatch_add(tw, &t);
		if (e < 0) {
			tap_diag("pair: add: %s", strerror(-e));
			ok = false;
		}
	}
	for (int i = 0; ok && i < 2; i++) {
		int e = 0;

		pid[i] = test_spawn(&p.cg[i], i ? child_sleep : child_exit5, NULL, &pidfd[i]);
		if (pid[i] > 0)
			e = taskwatch_set_init(tw, p.cg[i].id, pid[i], pidfd[i]);
		if (pid[i] <= 0 || e < 0) {
			tap_diag("pair: spawn/set_init: %s", strerror(pid[i] <= 0 ? -pid[i] : -e));
			ok = false;
		}
	}
	if (ok)
		kill(pid[1], SIGKILL);
	for (int n = 0; ok && p.ended < 2 && n < PUMP_TIMEOUT_MS / 10; n++) {
		struct pollfd pf = { .fd = taskwatch_fd(tw), .events = POLLIN };

		(void)poll(&pf, 1, 10);
		int c = taskwatch_consume(tw, pair_collect, &p);

		if (c < 0)
			tap_diag("consume: %s", strerror(-c));
		ok = c >= 0;
	}
	ok = ok && taskwatch_reason_get(&p.cls[0], &r0) == 0 &&
	     taskwatch_reason_get(&p.cls[1], &r1) == 0;
	taskwatch_reason_format(&r0, b0, sizeof(b0));
	taskwatch_reason_format(&r1, b1, sizeof(b1));
	tap_ok(ok && r0.kind == TASKWATCH_REASON_EXITED && r0.exit_code == 5 &&
		       r1.kind == TASKWATCH_REASON_SIGNALED && r1.signal == SIGKILL &&
		       p.removed_ok == 2 && p.foreign == 0 &&
		       taskwatch_remove(tw, p.cg[0].id) == -ENOENT,
	       "%s: two tasks at once -> %s and %s; each removed from its own callback",
	       taskwatch_mode(tw, NULL), b0, b1);
	for (int i = 0; i < 2; i++) {
		if (pid[i] > 0)
			waitpid(pid[i], NULL, 0);
		safe_close(pidfd[i]);
		(void)taskwatch_remove(tw, p.cg[i].id);
		test_cgroup_destroy(&p.cg[i]);
	}
}

/* build/taskwatch, the debug CLI, next to build/selftests/taskwatch */
static int child_gated_exit3(void *arg)
{
	char c;

	if (read(*(int *)arg, &c, 1) != 1)
		return 126;
	return child_exit3(NULL);
}

static void case_cli(bool fallback)
{
	char exe[512], cli[560], out[8192] = "", pidbuf[16];
	struct test_cgroup cg;
	int gate[2] = { -1, -1 }, outp[2] = { -1, -1 };
	pid_t task = -1, cpid = -1;
	size_t len = 0;
	ssize_t n, e;
	bool ok;

	e = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (e <= 0) {
		tap_skip("no /proc/self/exe", "cli");
		return;
	}
	exe[e] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(cli, sizeof(cli), "%s/../taskwatch", exe);
	if (access(cli, X_OK) < 0) {
		tap_skip("taskwatch CLI not built", "cli %s", fallback ? "--fallback" : "");
		return;
	}
	ok = test_cgroup_create(&cg, fallback ? "cli-fb" : "cli-bpf", 0) == 0;
	ok = ok && pipe2(gate, O_CLOEXEC) == 0 && pipe2(outp, O_CLOEXEC) == 0;
	if (ok)
		task = test_spawn(&cg, child_gated_exit3, &gate[0], NULL);
	ok = ok && task > 0;
	if (ok) {
		snprintf(pidbuf, sizeof(pidbuf), "%d", (int)task);
		cpid = fork();
		if (cpid == 0) {
			dup2(outp[1], 1);
			execl(cli, "taskwatch", "--cgroup", cg.unified, "--init", pidbuf, "--exit",
			      fallback ? "--fallback" : NULL, (char *)NULL);
			_exit(127);
		}
		close(outp[1]);
		outp[1] = -1;
		/* the header is printed once every cgroup is watched: then let the task go */
		while (ok && !strstr(out, "DETAILS") && len < sizeof(out) - 1 &&
		       (n = read(outp[0], out + len, sizeof(out) - 1 - len)) > 0)
			out[len += (size_t)n] = '\0';
		ok = strstr(out, "DETAILS") && write(gate[1], "g", 1) == 1;
		/* we are the task's parent, not the CLI: reap it, which is when the kernel
		 * publishes the status to a non-parent's pidfd (the CLI's fallback) */
		ok = ok && waitpid(task, NULL, 0) == task;
		task = -1;
		while (ok && len < sizeof(out) - 1 &&
		       (n = read(outp[0], out + len, sizeof(out) - 1 - len)) > 0)
			out[len += (size_t)n] = '\0';
	}
	if (cpid > 0) {
		int st = -1;

		kill(cpid, SIGTERM); /* no-op when --exit already ended it */
		waitpid(cpid, &st, 0);
	}
	if (task > 0)
		waitpid(task, NULL, 0);
	tap_ok(ok && strstr(out, "# task ended: exited(3)") &&
		       (fallback || strstr(out, "filename=/bin/sh")),
	       "taskwatch CLI%s prints events and the task's reason",
	       fallback ? " --fallback" : "");
	if (!ok || !strstr(out, "# task ended: exited(3)"))
		tap_diag("cli output: %s", out);
	safe_close(gate[0]);
	safe_close(gate[1]);
	safe_close(outp[0]);
	safe_close(outp[1]);
	test_cgroup_destroy(&cg);
}

static void case_forced_env(void)
{
	_cleanup_taskwatch_ struct taskwatch *tw = NULL;
	const char *why = NULL;
	int e;

	const char *mode = "";

	setenv("TASKWATCH_FALLBACK", "1", 1);
	e = taskwatch_new(NULL, &tw);
	unsetenv("TASKWATCH_FALLBACK");
	if (e == 0)
		mode = taskwatch_mode(tw, &why);
	tap_ok(e == 0 && streq(mode, "fallback") && why && strstr(why, "TASKWATCH"),
	       "TASKWATCH_FALLBACK=1 forces the fallback and says so (%s)", why ? why : "?");
}

static void run_mode(struct taskwatch *tw)
{
	case_empty_at_add(tw);
	case_exit0(tw);
	case_exit3(tw);
	case_segv(tw);
	case_sigkill(tw);
	case_oom(tw);
	case_children_exit(tw);
	case_orphan(tw);
	case_storm(tw);
	case_outside(tw);
	case_init_oom(tw);
	case_init_sigkill(tw);
	case_not_our_child(tw);
	case_init_forward(tw);
	case_two_tasks(tw);
}

/* tests per mode (bpf/fallback): two-tasks 1, init-forward 1, not-our-child 1, empty-at-add 1, exit0 2/1, exit3 1, segv 3/2, sigkill 2, oom 2/1,
 * children 2/1, orphan 2, storm 2/1, outside 1, init-oom 2/1, init-kill 2/1 */
#define TESTS_BPF 25
#define TESTS_FALLBACK 18

int main(void)
{
	struct taskwatch_opts fb = { .force_fallback = true };
	_cleanup_taskwatch_ struct taskwatch *bpf = NULL, *fallback = NULL;
	const char *why = NULL, *mode;
	int e;

	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 77;
	}
	if (access(CG_UNIFIED_ROOT "/cgroup.procs", F_OK) < 0) {
		printf("1..0 # SKIP no cgroup2 hierarchy at " CG_UNIFIED_ROOT "\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_cgroup_sweep_stale();
	snprintf(coredir, sizeof(coredir), "/tmp/cd-ebpf-core.%d", (int)getpid());
	if (mkdir(coredir, 0700) < 0 && errno != EEXIST) {
		printf("1..0 # SKIP cannot create %s\n", coredir);
		return 77;
	}

	/* + load, + overflow, + not inherited; + forced by env, + no capabilities, + CLI x2 */
	tap_plan(1 + TESTS_BPF + 2 + TESTS_FALLBACK + 4);
	e = taskwatch_new(NULL, &bpf);
	if (e < 0) {
		tap_ok(false, "taskwatch_new: %s", strerror(-e));
		return 1;
	}
	mode = taskwatch_mode(bpf, &why);
	tap_ok(taskwatch_is_bpf(bpf), "BPF mode loads (mode=%s%s%s)", mode, why[0] ? ": " : "",
	       why);
	if (taskwatch_is_bpf(bpf)) {
		run_mode(bpf);
		case_storm_overflow();
		case_ringbuf_not_inherited(bpf);
	} else {
		for (int i = 0; i < TESTS_BPF + 2; i++)
			tap_skip("BPF mode unavailable", "bpf case %d", i + 1);
	}

	e = taskwatch_new(&fb, &fallback);
	if (e < 0) {
		tap_ok(false, "taskwatch_new(fallback): %s", strerror(-e));
		return 1;
	}
	run_mode(fallback);
	case_forced_env();
	case_no_caps();
	case_cli(false);
	case_cli(true);

	(void)fs_rm_rf_at(AT_FDCWD, coredir);
	return tap_failures() ? 1 : 0;
}
