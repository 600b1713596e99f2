/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskwatch_reason.c — the reason classifier: one task's event stream in, its final reason out.
 * Pure (no I/O, no clocks except for stop_requested(…, 0)), so unit tests drive it with
 * synthetic streams and taskd can replay recorded ones.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "ebpf/taskwatch.h"

void taskwatch_reason_init(struct taskwatch_classifier *c)
{
	memset(c, 0, sizeof(*c));
}

void taskwatch_reason_stop_requested(struct taskwatch_classifier *c, uint64_t ts_ns)
{
	if (ts_ns == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	/* The first request counts: a second SIGKILL after a SIGTERM is the same stop. */
	if (c->stop_ns == 0)
		c->stop_ns = ts_ns;
}

static void record_signal(struct taskwatch_reason_signal *v, unsigned *n,
			  const struct taskwatch_event *ev)
{
	struct taskwatch_reason_signal *s;

	if (*n >= TASKWATCH_REASON_MAX_SIGNALS)
		return;
	s = &v[(*n)++];
	s->sig = ev->signal.sig;
	s->sender = (pid_t)ev->signal.sender_tgid;
	s->kernel = (ev->flags & TASKWATCH_F_SENDER_KERNEL) != 0;
	memcpy(s->comm, ev->signal.sender_comm, TASKWATCH_COMM_LEN);
	s->comm[TASKWATCH_COMM_LEN - 1] = '\0';
}

static const struct taskwatch_reason_signal *find_signal(const struct taskwatch_reason_signal *v,
							 unsigned n, int sig)
{
	for (unsigned i = 0; i < n; i++)
		if ((int)v[i].sig == sig)
			return &v[i];
	return NULL;
}

static void finish(struct taskwatch_classifier *c, uint64_t ts_ns)
{
	struct taskwatch_reason *r = &c->r;
	bool known = true, clean, user_kill;
	uint64_t death_ns = c->main_dead ? c->main_dead_ns : ts_ns;
	int st = 0;

	c->ended = true;
	r->ended_ns = ts_ns;
	r->main_pid = c->main_pid;
	r->uncertain = c->lost;
	if (c->main_dead && c->main_status_known) {
		st = c->main_status;
	} else if (c->init_dead && c->init_status_known) {
		/* the main's death was not seen: the init mirrors its status */
		st = c->init_status;
		r->uncertain = true;
	} else {
		known = false;
		r->uncertain = true;
	}

	if (known) {
		if (WIFSIGNALED(st)) {
			r->signal = WTERMSIG(st);
			r->core_dumped = WCOREDUMP(st);
		} else {
			r->exit_code = WEXITSTATUS(st);
		}
	}
	clean = known && !WIFSIGNALED(st) && WEXITSTATUS(st) == 0;

	if (r->signal) {
		/* The first fatal signal of that number sent to the main is the one that killed
		 * it (complete_signal() fixes the group exit code at send time). */
		const struct taskwatch_reason_signal *s =
			find_signal(c->signals, c->n_signals, r->signal);
		const struct taskwatch_reason_signal *fwd = NULL;

		/* Sent by our own init: it forwarded what someone sent it. */
		if (s && c->init_pid > 0 && s->sender == c->init_pid && c->main_pid != c->init_pid)
			fwd = find_signal(c->init_signals, c->n_init_signals, r->signal);
		if (fwd) {
			s = fwd;
			r->via_init = true;
		}
		if (s) {
			r->sender_pid = s->sender;
			r->sender_kernel = s->kernel;
			memcpy(r->sender_comm, s->comm, TASKWATCH_COMM_LEN);
		}
	}
	/* Killed by a process (not the kernel) on purpose: that is the story even if a child
	 * was OOM-killed earlier. */
	user_kill = r->signal && r->sender_pid > 0 && !r->sender_kernel;

	if (c->stop_ns && death_ns >= c->stop_ns)
		r->kind = TASKWATCH_REASON_KILLED_BY_STOP;
	else if (c->main_oom || (r->oom_kills > 0 && !clean && !user_kill))
		r->kind = TASKWATCH_REASON_OOM_KILLED;
	else if (!known)
		r->kind = TASKWATCH_REASON_UNKNOWN;
	else if (r->signal)
		r->kind = TASKWATCH_REASON_SIGNALED;
	else
		r->kind = TASKWATCH_REASON_EXITED;
}

bool taskwatch_reason_feed(struct taskwatch_classifier *c, const struct taskwatch_event *ev)
{
	if (c->ended)
		return true;
	switch (ev->type) {
	case TASKWATCH_EV_LOST:
		c->lost = true;
		break;
	case TASKWATCH_EV_FATAL_SIGNAL:
		if (ev->flags & TASKWATCH_F_INIT) {
			c->init_pid = (pid_t)ev->tgid;
			record_signal(c->init_signals, &c->n_init_signals, ev);
		}
		/* a handled signal to an init that is also the main did not kill it */
		if ((ev->flags & TASKWATCH_F_MAIN) && !(ev->flags & TASKWATCH_F_HANDLED))
			record_signal(c->signals, &c->n_signals, ev);
		break;
	case TASKWATCH_EV_OOM_KILL:
		c->r.oom_kills += ev->oom.count ? ev->oom.count : 1;
		if (ev->tgid)
			c->r.oom_victim_pid = (pid_t)ev->tgid;
		if (ev->flags & TASKWATCH_F_MAIN)
			c->main_oom = true;
		break;
	case TASKWATCH_EV_EXIT:
		if ((ev->flags & TASKWATCH_F_MAIN) && !c->main_dead) {
			c->main_dead = true;
			c->main_pid = (pid_t)ev->tgid;
			c->main_dead_ns = ev->ts_ns;
			c->main_status_known = !(ev->flags & TASKWATCH_F_STATUS_UNKNOWN);
			c->main_status = (int)ev->exit.status;
		}
		if (ev->flags & TASKWATCH_F_INIT) {
			c->init_pid = (pid_t)ev->tgid;
			c->init_dead = true;
			c->init_status_known = !(ev->flags & TASKWATCH_F_STATUS_UNKNOWN);
			c->init_status = (int)ev->exit.status;
			finish(c, ev->ts_ns);
		}
		break;
	case TASKWATCH_EV_CGROUP_EMPTY:
		finish(c, ev->ts_ns);
		break;
	default:
		break;
	}
	return c->ended;
}

int taskwatch_reason_get(const struct taskwatch_classifier *c, struct taskwatch_reason *ret)
{
	if (!c->ended)
		return -EAGAIN;
	*ret = c->r;
	return 0;
}

const char *taskwatch_reason_kind_to_string(enum taskwatch_reason_kind k)
{
	switch (k) {
	case TASKWATCH_REASON_NONE:
		return "running";
	case TASKWATCH_REASON_EXITED:
		return "exited";
	case TASKWATCH_REASON_SIGNALED:
		return "signaled";
	case TASKWATCH_REASON_OOM_KILLED:
		return "oom_killed";
	case TASKWATCH_REASON_KILLED_BY_STOP:
		return "killed_by_stop";
	case TASKWATCH_REASON_UNKNOWN:
		return "unknown";
	}
	return "invalid";
}

static const char *signame(int sig, char *buf, size_t size)
{
	const char *abbrev = sig > 0 ? sigabbrev_np(sig) : NULL;

	if (abbrev)
		snprintf(buf, size, "SIG%s", abbrev);
	else
		snprintf(buf, size, "%d", sig);
	return buf;
}

const char *taskwatch_reason_format(const struct taskwatch_reason *r, char *buf, size_t size)
{
	const char *kind = taskwatch_reason_kind_to_string(r->kind);
	char sig[24];

	switch (r->kind) {
	case TASKWATCH_REASON_EXITED:
		snprintf(buf, size, "%s(%d)%s", kind, r->exit_code, r->uncertain ? "?" : "");
		break;
	case TASKWATCH_REASON_SIGNALED:
		if (r->sender_pid > 0)
			snprintf(buf, size, "%s(%s%s, from %d %s%s%s)%s", kind,
				 signame(r->signal, sig, sizeof(sig)),
				 r->core_dumped ? ", core dumped" : "", r->sender_pid,
				 r->sender_comm, r->sender_kernel ? " [kernel]" : "",
				 r->via_init ? " via init" : "", r->uncertain ? "?" : "");
		else
			snprintf(buf, size, "%s(%s%s)%s", kind,
				 signame(r->signal, sig, sizeof(sig)),
				 r->core_dumped ? ", core dumped" : "", r->uncertain ? "?" : "");
		break;
	case TASKWATCH_REASON_KILLED_BY_STOP:
		if (r->signal)
			snprintf(buf, size, "%s(%s)", kind, signame(r->signal, sig, sizeof(sig)));
		else
			snprintf(buf, size, "%s(exit %d)", kind, r->exit_code);
		break;
	default:
		snprintf(buf, size, "%s%s", kind, r->uncertain ? "?" : "");
		break;
	}
	return buf;
}
