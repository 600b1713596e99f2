/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_watch — taskwatch benchmark, our watcher and its baseline side by side in one run:
 *
 *  1. exit-to-userspace latency: N short processes started straight into a watched cgroup2
 *     (clone3 CLONE_INTO_CGROUP); each stamps CLOCK_MONOTONIC just before it exits (by
 *     exit(code) or SIGKILL to itself) and we stamp when the watcher's callback sees the exit.
 *     Iterations alternate BPF mode and the fallback (pidfd + waitid), so both see the same
 *     machine at the same time. Every reported reason is checked against what the child did.
 *  2. overhead: a fork+exec(/bin/true) workload outside any watched cgroup, in alternating
 *     rounds with the BPF programs attached and not (no watcher at all); ratio of medians.
 *
 * Usage: bench_watch [--exits N] [--ops N] [--rounds N]   (root; prints a table and ratios)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ebpf/taskwatch.h"
#include "lib/macro.h"
#include "lib/str.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[MIN(i, n - 1)];
}

struct waiter {
	pid_t pid;
	bool seen;
	uint64_t t_user, t_kernel;
	int code, sig;
};

static int on_event(const struct taskwatch_event *ev, void *userdata)
{
	struct waiter *w = userdata;

	if (w && ev->type == TASKWATCH_EV_EXIT && (pid_t)ev->tgid == w->pid && !w->seen) {
		w->t_user = now_ns();
		w->t_kernel = ev->ts_ns;
		w->seen = true;
		w->code = ev->exit.code;
		w->sig = (int)ev->exit.signal;
	}
	return 0;
}

static int drain(struct taskwatch *tw)
{
	return taskwatch_consume(tw, on_event, NULL);
}

/* clone3 straight into the cgroup; child: wait for go, stamp, die as told. */
static pid_t spawn_into(int cgfd, int go_rd, volatile uint64_t *stamp, int code, bool kill_self,
			int *ret_pidfd)
{
	int pidfd = -1;
	struct clone_args args = {
		.flags = CLONE_INTO_CGROUP | CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)&pidfd,
		.exit_signal = SIGCHLD,
		.cgroup = (uint64_t)cgfd,
	};
	long pid = syscall(SYS_clone3, &args, sizeof(args));

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		char c;

		if (read(go_rd, &c, 1) != 1)
			_exit(120);
		*stamp = now_ns();
		if (kill_self)
			kill(getpid(), SIGKILL);
		_exit(code);
	}
	*ret_pidfd = pidfd;
	return (pid_t)pid;
}

struct mode_stats {
	const char *name;
	uint64_t *lat, *klat;
	size_t n, exact;
};

static void print_stats(struct mode_stats *m)
{
	qsort(m->lat, m->n, sizeof(uint64_t), cmp_u64);
	printf("%-9s %7zu %10.1f %10.1f %10.1f %9.1f%%", m->name, m->n,
	       (double)pct(m->lat, m->n, 0.5) / 1e3, (double)pct(m->lat, m->n, 0.99) / 1e3,
	       (double)(m->n ? m->lat[m->n - 1] : 0) / 1e3,
	       m->n ? 100.0 * (double)m->exact / (double)m->n : 0.0);
	if (m->klat) {
		qsort(m->klat, m->n, sizeof(uint64_t), cmp_u64);
		printf("   kernel->user p50 %.1f us p99 %.1f us",
		       (double)pct(m->klat, m->n, 0.5) / 1e3,
		       (double)pct(m->klat, m->n, 0.99) / 1e3);
	}
	printf("\n");
}

static int bench_latency(size_t exits)
{
	struct taskwatch_opts fo = { .force_fallback = true };
	_cleanup_taskwatch_ struct taskwatch *bpf = NULL, *fb = NULL;
	struct taskwatch_target t = TASKWATCH_TARGET_INIT;
	struct mode_stats ms[2] = { { .name = "bpf" }, { .name = "fallback" } };
	volatile uint64_t *stamp;
	char cgpath[128];
	_cleanup_close_ int cgfd = -EBADF;
	int r = 0;

	snprintf(cgpath, sizeof(cgpath), "/sys/fs/cgroup/unified/cd-ebpf-bench-%d", (int)getpid());
	if (mkdir(cgpath, 0755) < 0) {
		fprintf(stderr, "bench_watch: mkdir %s: %m\n", cgpath);
		return -errno;
	}
	cgfd = open(cgpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	stamp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cgfd < 0 || stamp == MAP_FAILED || taskwatch_new(NULL, &bpf) < 0 ||
	    taskwatch_new(&fo, &fb) < 0 || taskwatch_cgroup_id(cgpath, &t.cgroup_id) < 0) {
		r = -EIO;
		goto out;
	}
	if (!taskwatch_is_bpf(bpf)) {
		const char *why;

		taskwatch_mode(bpf, &why);
		fprintf(stderr, "bench_watch: BPF mode unavailable: %s\n", why);
		r = -EOPNOTSUPP;
		goto out;
	}
	if (taskwatch_add(bpf, &t) < 0 || taskwatch_add(fb, &t) < 0) {
		r = -EIO;
		goto out;
	}
	for (size_t m = 0; m < 2; m++) {
		ms[m].lat = calloc(exits, sizeof(uint64_t));
		ms[m].klat = m == 0 ? calloc(exits, sizeof(uint64_t)) : NULL;
		if (!ms[m].lat || (m == 0 && !ms[m].klat)) {
			r = -ENOMEM;
			goto out;
		}
	}

	for (size_t i = 0; i < 2 * exits; i++) {
		size_t m = i % 2; /* interleave: same machine state for both */
		struct taskwatch *tw = m == 0 ? bpf : fb;
		struct waiter w = { 0 };
		bool kill_self = i % 10 == 9;
		int code = (int)(i % 251), go[2], pidfd = -1;
		struct pollfd p = { .fd = taskwatch_fd(tw), .events = POLLIN };
		uint64_t deadline;

		if (pipe2(go, O_CLOEXEC) < 0) {
			r = -errno;
			goto out;
		}
		w.pid = spawn_into(cgfd, go[0], stamp, code, kill_self, &pidfd);
		close(go[0]);
		if (w.pid < 0) {
			close(go[1]);
			r = w.pid;
			goto out;
		}
		if (m == 1)
			r = taskwatch_set_init(fb, t.cgroup_id, w.pid, pidfd);
		if (r >= 0 && write(go[1], "g", 1) != 1)
			r = -errno;
		close(go[1]);
		deadline = now_ns() + 5000000000ull;
		while (r >= 0 && !w.seen && now_ns() < deadline) {
			(void)poll(&p, 1, 100);
			r = taskwatch_consume(tw, on_event, &w);
		}
		waitpid(w.pid, NULL, 0);
		safe_close(pidfd);
		if (r < 0)
			goto out;
		if (!w.seen) {
			fprintf(stderr, "bench_watch: %s missed the exit of %d\n", ms[m].name,
				(int)w.pid);
			continue;
		}
		ms[m].lat[ms[m].n] = w.t_user - *stamp;
		if (ms[m].klat)
			ms[m].klat[ms[m].n] = w.t_user - w.t_kernel;
		ms[m].n++;
		if (kill_self ? (w.sig == SIGKILL) : (w.sig == 0 && w.code == code))
			ms[m].exact++;
		/* the BPF watcher also saw the fallback's child: keep its ring empty */
		if (m == 1 && drain(bpf) < 0) {
			r = -EIO;
			goto out;
		}
	}

	printf("exit-to-userspace latency, %zu exits per mode (interleaved; 10%% SIGKILL, rest "
	       "exit codes)\n",
	       exits);
	printf("%-9s %7s %10s %10s %10s %10s\n", "mode", "exits", "p50(us)", "p99(us)", "max(us)",
	       "exact");
	print_stats(&ms[0]);
	print_stats(&ms[1]);
	printf("ratio p50 bpf/fallback %.2f, p99 bpf/fallback %.2f\n",
	       (double)pct(ms[0].lat, ms[0].n, 0.5) / (double)MAX(pct(ms[1].lat, ms[1].n, 0.5), 1),
	       (double)pct(ms[0].lat, ms[0].n, 0.99) /
		       (double)MAX(pct(ms[1].lat, ms[1].n, 0.99), 1));
	printf("lost events: %llu\n\n", (unsigned long long)taskwatch_lost(bpf, NULL));
out:
	for (size_t m = 0; m < 2; m++) {
		free(ms[m].lat);
		free(ms[m].klat);
	}
	if (stamp != MAP_FAILED)
		munmap((void *)stamp, 4096);
	if (rmdir(cgpath) < 0)
		fprintf(stderr, "bench_watch: rmdir %s: %m\n", cgpath);
	return r;
}

/* ns per fork+exec(/bin/true)+wait, ops times */
static uint64_t workload(size_t ops)
{
	uint64_t t0 = now_ns();

	for (size_t i = 0; i < ops; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	return (now_ns() - t0) / (ops ? ops : 1);
}

/*
 * The workload runs in a helper forked before any watcher exists, so it is a bystander that
 * shares nothing with the watcher: the system-wide cost of the attached programs. Protocol:
 * we write ops (size_t), it answers ns/op (uint64_t).
 */
struct helper {
	pid_t pid;
	int cmd, res;
};

static int helper_start(struct helper *h)
{
	int c[2], r[2];

	if (pipe2(c, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(r, O_CLOEXEC) < 0) {
		close(c[0]);
		close(c[1]);
		return -errno;
	}
	h->pid = fork();
	if (h->pid < 0)
		return -errno;
	if (h->pid == 0) {
		size_t ops;

		close(c[1]);
		close(r[0]);
		while (read(c[0], &ops, sizeof(ops)) == (ssize_t)sizeof(ops)) {
			uint64_t ns = workload(ops);

			if (write(r[1], &ns, sizeof(ns)) != (ssize_t)sizeof(ns))
				_exit(1);
		}
		_exit(0);
	}
	close(c[0]);
	close(r[1]);
	h->cmd = c[1];
	h->res = r[0];
	return 0;
}

static uint64_t helper_run(struct helper *h, size_t ops)
{
	uint64_t ns = 0;

	if (write(h->cmd, &ops, sizeof(ops)) != (ssize_t)sizeof(ops) ||
	    read(h->res, &ns, sizeof(ns)) != (ssize_t)sizeof(ns))
		return 0;
	return ns;
}

static void helper_stop(struct helper *h)
{
	close(h->cmd);
	close(h->res);
	waitpid(h->pid, NULL, 0);
}

static void print_ratio(const char *what, uint64_t *off, uint64_t *on, size_t rounds)
{
	double *ratio = calloc(rounds, sizeof(double));

	/* Adjacent rounds share the machine's load: the median of the per-pair ratios is far
	 * less noisy than the ratio of two medians on a shared box. */
	for (size_t i = 0; ratio && i < rounds; i++)
		ratio[i] = (double)on[i] / (double)off[i];
	if (ratio)
		qsort(ratio, rounds, sizeof(double), cmp_double);
	qsort(off, rounds, sizeof(uint64_t), cmp_u64);
	qsort(on, rounds, sizeof(uint64_t), cmp_u64);
	printf("  %s\n", what);
	printf("    without programs: median %.1f us/op (min %.1f)\n",
	       (double)off[rounds / 2] / 1e3, (double)off[0] / 1e3);
	printf("    with programs:    median %.1f us/op (min %.1f)\n", (double)on[rounds / 2] / 1e3,
	       (double)on[0] / 1e3);
	if (ratio)
		printf("    ratio with/without: %.3f (median of %zu paired rounds; min-to-min %.3f)\n",
		       ratio[rounds / 2], rounds, (double)on[0] / (double)off[0]);
	free(ratio);
}

static int bench_overhead(struct helper *h, size_t ops, size_t rounds)
{
	uint64_t *v = calloc(4 * rounds, sizeof(uint64_t));
	uint64_t *off, *on, *own_off, *own_on;
	char cgpath[128];
	int r = 0;

	if (!v)
		return -ENOMEM;
	off = v;
	on = v + rounds;
	own_off = v + 2 * rounds;
	own_on = v + 3 * rounds;
	/* a watched cgroup exists (non-empty map), the workload runs outside it */
	snprintf(cgpath, sizeof(cgpath), "/sys/fs/cgroup/unified/cd-ebpf-bench-ovh-%d",
		 (int)getpid());
	if (mkdir(cgpath, 0755) < 0) {
		r = -errno;
		goto out;
	}
	(void)helper_run(h, ops / 4 + 1); /* warm up page cache and allocator */
	for (size_t i = 0; i < rounds; i++) {
		struct taskwatch *tw = NULL;
		struct taskwatch_target t = TASKWATCH_TARGET_INIT;

		off[i] = helper_run(h, ops);
		own_off[i] = workload(ops / 4 + 1);
		if (taskwatch_new(NULL, &tw) < 0 || !taskwatch_is_bpf(tw) ||
		    taskwatch_cgroup_id(cgpath, &t.cgroup_id) < 0 || taskwatch_add(tw, &t) < 0) {
			taskwatch_free(tw);
			r = -EIO;
			goto out;
		}
		on[i] = helper_run(h, ops);
		own_on[i] = workload(ops / 4 + 1);
		if (drain(tw) < 0)
			r = -EIO;
		taskwatch_free(tw);
		if (off[i] == 0 || on[i] == 0) {
			r = -EIO;
			goto out;
		}
	}
	printf("overhead: fork+exec(/bin/true)+wait outside watched cgroups, %zu ops x %zu "
	       "rounds, alternating without/with the programs attached\n",
	       ops, rounds);
	print_ratio("system (a bystander process runs the workload):", off, on, rounds);
	print_ratio("the watcher's own process forking (ring buffer mapped in it):", own_off,
		    own_on, rounds);
out:
	(void)rmdir(cgpath);
	free(v);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "exits", required_argument, NULL, 'e' },
		{ "ops", required_argument, NULL, 'o' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	unsigned exits = 10000, ops = 1000, rounds = 15;
	struct helper helper = { .pid = -1, .cmd = -1, .res = -1 };
	int opt, r;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
		unsigned *dst = opt == 'e' ? &exits : opt == 'o' ? &ops : &rounds;

		if (opt == 'h') {
			printf("Usage: bench_watch [--exits N] [--ops N] [--rounds N]\n");
			return 0;
		}
		if (opt == '?' || parse_uint(optarg, 10000000, dst) < 0 || *dst == 0) {
			fprintf(stderr, "bench_watch: bad arguments (try --help)\n");
			return 2;
		}
	}
	if (geteuid() != 0) {
		fprintf(stderr, "bench_watch: needs root\n");
		return 77;
	}
	/* before any watcher exists, so the bystander inherits none of its mappings */
	r = helper_start(&helper);
	if (r < 0)
		return 1;
	r = bench_latency(exits);
	if (r >= 0)
		r = bench_overhead(&helper, ops, rounds);
	helper_stop(&helper);
	return r < 0 ? 1 : 0;
}
