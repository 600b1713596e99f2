/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskwatch — debug CLI: print a cgroup's process events as they happen (like libbpf-tools'
 * execsnoop/exitsnoop), and with --init the reason the classifier gives when the task ends.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "ebpf/taskwatch.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/str.h"

#define MAX_CGROUPS 64

struct cli {
	struct taskwatch_classifier cls;
	uint64_t init_cgroup;
	bool track_reason;
	bool exit_on_end;
	bool ended;
	uint64_t t0;
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: taskwatch --cgroup PATH [--cgroup PATH...] [OPTIONS]\n"
		   "Print exec/fork/exit/fatal-signal/OOM/cgroup-empty events of processes in the\n"
		   "given cgroup2 directories (e.g. /sys/fs/cgroup/unified/<task>).\n\n"
		   "  -c, --cgroup PATH     cgroup2 directory to watch (repeatable, up to 64)\n"
		   "  -p, --init PID        the task's init (first --cgroup): print its reason at "
		   "the end\n"
		   "      --init-child      the main process is the init's first child\n"
		   "  -m, --memory PATH     memory cgroup directory (fallback OOM detection)\n"
		   "  -f, --fallback        do not use BPF\n"
		   "  -x, --exit            exit when the task ends (with --init)\n"
		   "  -h, --help            this text\n"
		   "      --version         print the version\n");
}

static int print_event(const struct taskwatch_event *ev, void *userdata)
{
	struct cli *c = userdata;
	double t = (double)(ev->ts_ns - c->t0) / 1e9;
	const char *type = taskwatch_event_type_to_string(ev->type);
	char flags[32];

	snprintf(flags, sizeof(flags), "%s%s%s", ev->flags & TASKWATCH_F_MAIN ? "M" : "",
		 ev->flags & TASKWATCH_F_INIT ? "I" : "",
		 ev->flags & TASKWATCH_F_FALLBACK ? "F" : "");
	printf("%-10.6f %-12s %-7u %-7u %-16.16s %-3s ", t, type, ev->tgid, ev->ppid, ev->comm,
	       flags);
	switch (ev->type) {
	case TASKWATCH_EV_EXEC:
		printf("filename=%s%s", ev->exec.filename,
		       ev->flags & TASKWATCH_F_FILENAME_TRUNC ? "..." : "");
		break;
	case TASKWATCH_EV_FORK:
		printf("parent_tid=%u", ev->fork.parent_pid);
		break;
	case TASKWATCH_EV_EXIT:
		if (ev->flags & TASKWATCH_F_STATUS_UNKNOWN)
			printf("status=unknown");
		else if (ev->exit.signal)
			printf("signal=%u%s", ev->exit.signal,
			       ev->exit.core_dumped ? " core_dumped" : "");
		else
			printf("code=%d", ev->exit.code);
		break;
	case TASKWATCH_EV_FATAL_SIGNAL:
		printf("sig=%u si_code=%d sender=%u/%s%s", ev->signal.sig, ev->signal.si_code,
		       ev->signal.sender_tgid, ev->signal.sender_comm,
		       ev->flags & TASKWATCH_F_SENDER_KERNEL ? " kernel" : "");
		break;
	case TASKWATCH_EV_OOM_KILL:
		printf("count=%llu", (unsigned long long)ev->oom.count);
		break;
	case TASKWATCH_EV_LOST:
		printf("lost=%llu", (unsigned long long)ev->lost.count);
		break;
	default:
		break;
	}
	printf(" cgroup=%llu\n", (unsigned long long)ev->cgroup_id);

	if (c->track_reason && (ev->cgroup_id == c->init_cgroup || ev->type == TASKWATCH_EV_LOST) &&
	    !c->ended && taskwatch_reason_feed(&c->cls, ev)) {
		struct taskwatch_reason r;
		char buf[160];

		c->ended = true;
		(void)taskwatch_reason_get(&c->cls, &r);
		printf("# task ended: %s\n", taskwatch_reason_format(&r, buf, sizeof(buf)));
	}
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "cgroup", required_argument, NULL, 'c' },
		{ "init", required_argument, NULL, 'p' },
		{ "init-child", no_argument, NULL, 'C' },
		{ "memory", required_argument, NULL, 'm' },
		{ "fallback", no_argument, NULL, 'f' },
		{ "exit", no_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{},
	};
	const char *cgroups[MAX_CGROUPS];
	const char *memory = NULL, *why = NULL, *mode;
	char q[600];
	struct taskwatch_opts opts = { 0 };
	_cleanup_taskwatch_ struct taskwatch *tw = NULL;
	_cleanup_close_ int sfd = -EBADF;
	struct cli c = { 0 };
	unsigned init_pid = 0;
	bool init_child = false;
	int n_cgroups = 0, opt, r;
	sigset_t mask;
	struct timespec ts;

	log_open("taskwatch");
	while ((opt = getopt_long(argc, argv, "c:p:m:fxh", longopts, NULL)) >= 0) {
		switch (opt) {
		case 'c':
			if (n_cgroups == MAX_CGROUPS) {
				fprintf(stderr, "taskwatch: at most %d --cgroup\n", MAX_CGROUPS);
				return 2;
			}
			cgroups[n_cgroups++] = optarg;
			break;
		case 'p':
			if (parse_uint(optarg, 1u << 22, &init_pid) < 0 || init_pid == 0) {
				fprintf(stderr, "taskwatch: invalid --init pid: %s\n", optarg);
				return 2;
			}
			break;
		case 'C':
			init_child = true;
			break;
		case 'm':
			memory = optarg;
			break;
		case 'f':
			opts.force_fallback = true;
			break;
		case 'x':
			c.exit_on_end = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("taskwatch %s\n", CD_VERSION);
			return 0;
		default:
			fprintf(stderr, "taskwatch: try --help\n");
			return 2;
		}
	}
	if (optind < argc || n_cgroups == 0) {
		fprintf(stderr, "taskwatch: %s\n",
			optind < argc ? "unexpected argument" : "--cgroup PATH is required");
		return 2;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0)
		return log_error_errno(errno, "signalfd failed") ? 1 : 1;

	r = taskwatch_new(&opts, &tw);
	if (r < 0) {
		log_error_errno(r, "cannot create watcher");
		return 1;
	}
	mode = taskwatch_mode(tw, &why);
	if (taskwatch_is_bpf(tw))
		log_info("watching", "mode=%s", mode);
	else
		log_info("watching", "mode=%s why=%s", mode, log_quote(why, q, sizeof(q)));

	for (int i = 0; i < n_cgroups; i++) {
		struct taskwatch_target t = TASKWATCH_TARGET_INIT;

		r = taskwatch_cgroup_id(cgroups[i], &t.cgroup_id);
		if (r < 0) {
			log_error_errno(r, "not a cgroup2 directory", "path=%s",
					log_quote(cgroups[i], q, sizeof(q)));
			return 1;
		}
		t.cookie = (uint64_t)i;
		t.cgroup_path = cgroups[i];
		if (i == 0) {
			t.init_pid = (pid_t)init_pid;
			t.main_kind = init_child ? TASKWATCH_MAIN_INIT_CHILD : TASKWATCH_MAIN_INIT;
			t.memory_path = memory;
			c.init_cgroup = t.cgroup_id;
			c.track_reason = init_pid > 0;
		}
		r = taskwatch_add(tw, &t);
		if (r < 0) {
			log_error_errno(r, "cannot watch cgroup", "path=%s",
					log_quote(cgroups[i], q, sizeof(q)));
			return 1;
		}
	}
	taskwatch_reason_init(&c.cls);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	c.t0 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;

	printf("%-10s %-12s %-7s %-7s %-16s %-3s %s\n", "TIME(s)", "EVENT", "PID", "PPID", "COMM",
	       "FL", "DETAILS");
	fflush(stdout);
	for (;;) {
		struct pollfd p[2] = { { .fd = taskwatch_fd(tw), .events = POLLIN },
				       { .fd = sfd, .events = POLLIN } };

		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			log_error_errno(errno, "poll failed");
			return 1;
		}
		if (p[1].revents)
			break;
		r = taskwatch_consume(tw, print_event, &c);
		if (r < 0) {
			log_error_errno(r, "consuming events failed");
			return 1;
		}
		if (c.ended && c.exit_on_end)
			break;
	}
	return 0;
}
