/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/manager.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/restart.h"
#include "agent/runtime.h"
#include "agent/taskdir.h"
#include "api/json.h"
#include "api/jsonw.h"
#include "api/jobspec.h"
#include "api/names.h"
#include "ebpf/taskwatch.h"
#include "fetcher/fetcher.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/macro.h"
#include "sandbox/cgroup.h"
#include "sandbox/launch.h"

#define SHIM_READY_TIMEOUT_MS 30000
#define STATUS_WAIT_MS 5000
#define MAX_MIRRORS 16
#define REQUEST_ID_MAX_LEN 128
#define RESTART_FLOOR_USEC (100 * USEC_PER_MSEC)
/* A probe asked to stop (SIGTERM: its process group is killed) gets this long before SIGKILL. */
#define PROBE_STOP_GRACE_USEC (2 * USEC_PER_SEC)

/* Start latency histogram buckets (seconds), PutTask or restart → RUNNING. */
static const double latency_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define N_BUCKETS ARRAY_SIZE(latency_buckets)

enum phase {
	P_IDLE,	     /* nothing runs: final state, or waiting for SetTaskState RUNNING */
	P_FETCHING,  /* a fetch thread works for it */
	P_BACKOFF,   /* restart scheduled at restart_at */
	P_RUNNING,   /* a shim runs it */
	P_STOPPING,  /* SIGTERM sent to the shim; it kills the cgroup after the grace period */
	P_LAUNCHING, /* a shim was spawned; waiting (without the lock) for its ready line */
};

struct task {
	struct task *next;
	uint64_t slot; /* epoll tag; never reused */
	struct task_record rec;
	struct jobspec *spec;
	char *url;	/* task://region/zone/job/id ("" if the job URL cannot make one) */
	char *digest;	/* "sha256:..." or NULL */
	char **mirrors; /* NULL-terminated */
	char *app_dir;
	enum phase phase;
	int shim_pidfd;
	pid_t task_pid;	     /* the task's pid 1 (for probes: its namespaces) */
	uint64_t task_start; /* its /proc start time (0 = unknown: read at probe time) */
	usec_t restart_at;
	usec_t pending_since; /* for the start latency histogram */
	usec_t run_started;   /* monotonic, for the backoff reset */
	unsigned streak;
	bool health_kill; /* the stop in progress is a health failure */
	bool fetch_inflight;
	bool pinned;
	/* health */
	bool healthy;
	unsigned failures;
	usec_t next_probe;
	pid_t probe_pid;
	int probe_pidfd;
	usec_t probe_deadline;
	bool probe_stopping;   /* timed out: SIGTERM sent, its failure already counted */
	char probe_error[160]; /* why the last probe failed, for the health_failed message */
	/* per-process events (ebpf/taskwatch, BPF mode only) */
	bool watched;
	bool events_lost; /* taskwatch lost events while this generation was watched */
	uint64_t cgroup_id;
	struct taskwatch_classifier cls;
	struct runtime_usage_cache usage; /* GetTaskState's last reading of the cgroup */
};

struct manager {
	pthread_mutex_t lock;
	pthread_cond_t events_cond;
	pthread_cond_t fetch_cond;
	struct manager_config cfg;
	char *tasks_dir;
	struct state *st;
	struct fetcher *fetcher;
	struct task *tasks;
	unsigned n_tasks;
	uint64_t next_slot;
	int epfd, timerfd, wakefd;
	pthread_t thread;
	bool thread_started;
	bool stopping;
	unsigned fetches_inflight;
	struct cg_system *cgsys;
	struct taskwatch *tw; /* NULL unless BPF mode loaded */
	struct manager_adopt_stats adopt;
	/* metrics */
	uint64_t starts_total, restarts_total, oom_kills_total, fetch_bytes_total,
		start_failures_total, health_failures_total, notify_delivered, notify_dropped,
		events_lost_total;
	uint64_t latency_counts[N_BUCKETS + 1];
	uint64_t saves;
	uint64_t state_write_errors;
	double latency_sum;
	uint64_t latency_count;
	usec_t started_at; /* realtime: the counters above count from here */
};

enum { TAG_WAKE = 0, TAG_TIMER = 1, TAG_WATCH = 4 /* never a slot tag: those end in 2 or 3 */ };
#define TAG_SHIM(slot) (((slot) << 2) | 2)
#define TAG_PROBE(slot) (((slot) << 2) | 3)

static void task_launch(struct manager *m, struct task *t);
static void task_save(struct manager *m, struct task *t, const char *event);

/* ---------------------------------------------------------------- helpers */

#define CGNAME_MAX (TASK_ID_BUF + 12)
/* The cgroup of the task's current generation: "<task_id>-<generation>". */
static void task_cg_name(const struct task *t, char buf[static CGNAME_MAX])
{
	/* the sandbox caps its task id (our cgroup leaf) at 64 bytes */
	snprintf(buf, CGNAME_MAX, "%.52s-%u", t->rec.task_id, t->rec.generation);
}

static void task_free(struct task *t)
{
	if (!t)
		return;
	task_record_release(&t->rec);
	jobspec_free(t->spec);
	free(t->url);
	free(t->digest);
	strv_free(t->mirrors);
	free(t->app_dir);
	safe_close(t->shim_pidfd);
	safe_close(t->probe_pidfd);
	free(t);
}

static struct task *find_task(struct manager *m, const char *id)
{
	for (struct task *t = m->tasks; t; t = t->next)
		if (streq(t->rec.task_id, id))
			return t;
	return NULL;
}

static struct task *find_slot(struct manager *m, uint64_t slot)
{
	for (struct task *t = m->tasks; t; t = t->next)
		if (t->slot == slot)
			return t;
	return NULL;
}

static void wake(struct manager *m)
{
	uint64_t one = 1;

	(void)!write(m->wakefd, &one, sizeof(one));
}

static int task_dir_path(struct manager *m, const char *id, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/%s", m->tasks_dir, id);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int task_dir_fd(struct manager *m, const char *id)
{
	char path[PATH_MAX];

	if (task_dir_path(m, id, path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	return RET_NERRNO(open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

static void set_message(struct task *t, const char *fmt, ...) _printf_(2, 3);
static void set_message(struct task *t, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	free(t->rec.message);
	t->rec.message = NULL;
	if (!fmt)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	t->rec.message = s;
}

static void set_reason(struct task *t, const char *reason)
{
	snprintf(t->rec.reason, sizeof(t->rec.reason), "%s", reason ? reason : "");
}

static bool task_is_final(const struct task *t)
{
	return t->rec.state == TASK_DONE || t->rec.state == TASK_ERROR;
}

static bool task_healthy(const struct task *t)
{
	if (t->rec.state != TASK_RUNNING)
		return false;
	return t->spec->health.type == JOBSPEC_HEALTH_NONE || t->healthy;
}

static json_t *json_str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static int task_url(const struct task *t, char *buf, size_t size)
{
	struct job_url ju;
	struct task_url tu = { 0 };

	if (job_url_parse(t->rec.job_url, &ju, NULL) < 0)
		return -EINVAL;
	tu.job = ju;
	snprintf(tu.task_id, sizeof(tu.task_id), "%s", t->rec.task_id);
	return task_url_format(&tu, buf, size);
}

static bool task_has_cgroup(const struct task *t)
{
	return t->phase == P_RUNNING || t->phase == P_STOPPING;
}

static void write_str_or_null(struct jsonw *w, const char *key, const char *s)
{
	jsonw_kstring(w, key, s && *s ? s : NULL);
}

static void write_usage_value(struct jsonw *w, const char *key, uint64_t v)
{
	jsonw_key(w, key);
	if (v == UINT64_MAX)
		jsonw_null(w);
	else
		jsonw_int(w, (int64_t)v);
}

/*
 * The protocol's task object into w; with full, also the usage (when given: the caller reads
 * it, see task_usage()), spec, artifact and app_dir. Called with the lock held: it only copies.
 * The spec is its canonical text, serialised once at PutTask (and validated at load), the
 * artifact the compact text stored with the task: both are written as they are.
 */
static void task_write(struct jsonw *w, const struct task *t, bool full,
		       const struct runtime_usage *u)
{
	jsonw_object_begin(w);
	jsonw_kstring(w, "task_id", t->rec.task_id);
	jsonw_kstring(w, "task", t->url);
	jsonw_kstring(w, "job", t->rec.job_url);
	jsonw_kint(w, "index", t->rec.task_index);
	jsonw_kstring(w, "state", task_state_to_string(t->rec.state));
	write_str_or_null(w, "reason", t->rec.reason);
	write_str_or_null(w, "message", t->rec.message);
	jsonw_kbool(w, "healthy", task_healthy(t));
	jsonw_key(w, "exit_code");
	if (t->rec.exit_code >= 0)
		jsonw_int(w, t->rec.exit_code);
	else
		jsonw_null(w);
	jsonw_key(w, "signal");
	if (t->rec.signal > 0)
		jsonw_int(w, t->rec.signal);
	else
		jsonw_null(w);
	jsonw_kint(w, "restarts", t->rec.restarts);
	jsonw_ktime(w, "created_at", t->rec.created_at);
	jsonw_ktime(w, "updated_at", t->rec.updated_at);
	jsonw_ktime(w, "started_at", t->rec.started_at);
	jsonw_ktime(w, "finished_at", t->rec.finished_at);
	jsonw_kstring(w, "desired", task_state_to_string(t->rec.desired));
	jsonw_kint(w, "generation", t->rec.generation);
	write_str_or_null(w, "request_id", t->rec.request_id);
	if (task_has_cgroup(t))
		jsonw_kint(w, "pid", t->task_pid);
	if (full) {
		if (u) {
			jsonw_key(w, "usage");
			jsonw_object_begin(w);
			write_usage_value(w, "memory_bytes", u->memory_bytes);
			write_usage_value(w, "memory_peak_bytes", u->memory_peak_bytes);
			write_usage_value(w, "cpu_usage_ns", u->cpu_usage_ns);
			write_usage_value(w, "pids", u->pids);
			write_usage_value(w, "oom_kills", u->oom_kills);
			jsonw_object_end(w);
		}
		if (t->rec.spec_json) {
			jsonw_key(w, "spec");
			jsonw_raw(w, t->rec.spec_json);
		}
		if (t->rec.artifact_json) {
			jsonw_key(w, "artifact");
			jsonw_raw(w, t->rec.artifact_json);
		}
		if (t->app_dir)
			jsonw_kstring(w, "app_dir", t->app_dir);
	}
	jsonw_object_end(w);
}

/* The NotifyTaskState body without seq/event_id (the sender adds them from the outbox id). */
static char *notify_body(struct manager *m, const struct task *t)
{
	char ts[40];
	json_t *j = json_pack(
		"{s:s, s:s, s:s, s:s, s:o, s:o, s:b, s:o, s:o, s:I, s:s}", "task_id",
		t->rec.task_id, "job", t->rec.job_url, "host_id",
		m->cfg.host_id ? m->cfg.host_id : "", "state", task_state_to_string(t->rec.state),
		"reason", json_str_or_null(t->rec.reason), "message",
		json_str_or_null(t->rec.message), "healthy", task_healthy(t), "exit_code",
		t->rec.exit_code >= 0 ? json_integer(t->rec.exit_code) : json_null(), "signal",
		t->rec.signal > 0 ? json_integer(t->rec.signal) : json_null(), "restarts",
		(json_int_t)t->rec.restarts, "ts",
		clock_format_rfc3339(t->rec.updated_at, ts, sizeof(ts)));
	char *s;

	if (!j)
		return NULL;
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

static char *event_data(const struct task *t)
{
	json_t *j = json_pack("{s:s, s:o, s:o, s:o, s:o, s:I, s:b, s:I}", "state",
			      task_state_to_string(t->rec.state), "reason",
			      json_str_or_null(t->rec.reason), "message",
			      json_str_or_null(t->rec.message), "exit_code",
			      t->rec.exit_code >= 0 ? json_integer(t->rec.exit_code) : json_null(),
			      "signal",
			      t->rec.signal > 0 ? json_integer(t->rec.signal) : json_null(),
			      "restarts", (json_int_t)t->rec.restarts, "healthy", task_healthy(t),
			      "generation", (json_int_t)t->rec.generation);
	char *s;

	if (!j)
		return NULL;
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

/*
 * Persist t (one transaction: row + event + outbox message). A failure to persist is logged by
 * nobody here (library layer): the in-memory state stays ahead and the next save carries it.
 */
static void task_save(struct manager *m, struct task *t, const char *event)
{
	_cleanup_free_ char *data = event_data(t);
	_cleanup_free_ char *body = NULL;
	int r;

	t->rec.updated_at = clock_real_usec();
	t->rec.version++;
	if (m->cfg.notify && t->rec.from_manager)
		body = notify_body(m, t);
	r = state_task_save(m->st, &t->rec, event, data, body, NULL);
	if (r < 0) {
		t->rec.version--;
		m->state_write_errors++; /* visible in /metrics; the next save carries the row */
	} else if (++m->saves % 1024 == 0)
		(void)state_events_trim(m->st, m->cfg.events_keep);
	pthread_cond_broadcast(&m->events_cond);
	if (m->cfg.on_change)
		m->cfg.on_change(m->cfg.userdata);
}

static void latency_observe(struct manager *m, usec_t since)
{
	double s;

	if (!since)
		return;
	s = (double)(clock_mono_usec() - since) / (double)USEC_PER_SEC;
	for (size_t i = 0; i < N_BUCKETS; i++)
		if (s <= latency_buckets[i])
			m->latency_counts[i]++;
	m->latency_counts[N_BUCKETS]++;
	m->latency_sum += s;
	m->latency_count++;
}

/* ---------------------------------------------------------------- timer */

static void arm_timer(struct manager *m)
{
	usec_t next = 0, now = clock_mono_usec();
	struct itimerspec its = { 0 };

	for (struct task *t = m->tasks; t; t = t->next) {
		usec_t d = 0;

		if (t->phase == P_BACKOFF)
			d = t->restart_at;
		else if (t->phase == P_RUNNING && t->spec->health.type != JOBSPEC_HEALTH_NONE)
			d = t->probe_pid > 0 ? t->probe_deadline : t->next_probe;
		if (d && (!next || d < next))
			next = d;
	}
	if (next) {
		usec_t delta = next > now ? next - now : 1;

		its.it_value.tv_sec = (time_t)(delta / USEC_PER_SEC);
		its.it_value.tv_nsec = (long)(delta % USEC_PER_SEC) * 1000;
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1000;
	}
	timerfd_settime(m->timerfd, 0, &its, NULL);
}

/* ---------------------------------------------------------------- ending and restarting */

/* Forget a reaped probe. */
static void probe_forget(struct manager *m, struct task *t)
{
	if (t->probe_pidfd >= 0)
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, t->probe_pidfd, NULL);
	t->probe_pid = 0;
	t->probe_pidfd = safe_close(t->probe_pidfd);
	t->probe_stopping = false;
}

/*
 * Stop a probe in flight and reap it now (its task ended, or taskd stops). SIGTERM first: an
 * exec probe's middle process then kills the probe command's whole process group inside the
 * task (a SIGKILL would leave what the command forked running there).
 */
static void probe_cancel(struct manager *m, struct task *t)
{
	if (t->probe_pid > 0) {
		struct pollfd pfd = { .fd = t->probe_pidfd, .events = POLLIN };

		syscall(SYS_pidfd_send_signal, t->probe_pidfd, SIGTERM, NULL, 0);
		if (poll(&pfd, 1, (int)(PROBE_STOP_GRACE_USEC / USEC_PER_MSEC)) <= 0)
			syscall(SYS_pidfd_send_signal, t->probe_pidfd, SIGKILL, NULL, 0);
		waitpid(t->probe_pid, NULL, 0);
	}
	probe_forget(m, t);
}

/* ---------------------------------------------------------------- per-process events */

static int watch_event(const struct taskwatch_event *ev, void *userdata)
{
	struct manager *m = userdata;
	struct task *t;

	/* Lost events are reported globally (cookie 0): any watched task may have lost some, so
	 * every classifier hears it and gives an uncertain reason rather than a wrong one. */
	if (ev->type == TASKWATCH_EV_LOST) {
		m->events_lost_total += ev->lost.count;
		for (t = m->tasks; t; t = t->next)
			if (t->watched) {
				(void)taskwatch_reason_feed(&t->cls, ev);
				t->events_lost = true;
			}
		return 0;
	}
	t = find_slot(m, ev->cookie);
	if (t && t->watched)
		(void)taskwatch_reason_feed(&t->cls, ev);
	return 0;
}

static void watch_consume(struct manager *m)
{
	if (m->tw)
		(void)taskwatch_consume(m->tw, watch_event, m);
}

/* Watch the running generation's cgroup: exits, fatal signals with their sender, OOM kills. */
static void watch_task(struct manager *m, struct task *t)
{
	struct taskwatch_target tg = TASKWATCH_TARGET_INIT;
	const char *root;
	char name[CGNAME_MAX], path[PATH_MAX];

	if (!m->tw || t->watched || t->task_pid <= 0)
		return;
	root = cg_system_hier_path(m->cgsys, CG_UNIFIED);
	task_cg_name(t, name);
	if (!root ||
	    snprintf(path, sizeof(path), "%s/%s/%s", root, m->cfg.cgroup_parent, name) >=
		    (int)sizeof(path) ||
	    taskwatch_cgroup_id(path, &tg.cgroup_id) < 0)
		return;
	tg.cookie = t->slot;
	tg.init_pid = t->task_pid;
	/* The sandbox init forks the command: the main process. We start watching after that
	 * fork, so name it explicitly (the init's first child) rather than wait for a fork event
	 * that already happened. */
	{
		_cleanup_free_ char *kids = NULL;
		char kpath[96];
		unsigned main_pid;

		snprintf(kpath, sizeof(kpath), "/proc/%d/task/%d/children", (int)t->task_pid,
			 (int)t->task_pid);
		if (fs_read_file_at(AT_FDCWD, kpath, 4096, &kids, NULL) >= 0 &&
		    sscanf(kids, "%u", &main_pid) == 1 && main_pid > 0) {
			tg.main_kind = TASKWATCH_MAIN_PID;
			tg.main_pid = (pid_t)main_pid;
		} else
			tg.main_kind = TASKWATCH_MAIN_INIT_CHILD;
	}
	tg.cgroup_path = path;
	if (taskwatch_add(m->tw, &tg) < 0)
		return;
	taskwatch_reason_init(&t->cls);
	t->cgroup_id = tg.cgroup_id;
	t->watched = true;
	t->events_lost = false;
}

/*
 * What the watcher saw, to sharpen the shim's record: the OOM killer as the root cause of a
 * death the shim saw as a plain signal or exit code, and who sent a fatal signal. Unwatches.
 */
static const char *watch_conclude(struct manager *m, struct task *t, const char *reason,
				  char *detail, size_t size)
{
	struct taskwatch_reason r;

	detail[0] = '\0';
	if (!t->watched)
		return reason;
	watch_consume(m);
	(void)taskwatch_remove(m->tw, t->cgroup_id);
	t->watched = false;
	if (taskwatch_reason_get(&t->cls, &r) < 0)
		return reason;
	if (r.uncertain) {
		/* the shim's record stands; say why there is no sender */
		if (t->events_lost && streq(reason, "signaled"))
			snprintf(detail, size, "sender unknown: process events were lost");
		return reason;
	}
	if (r.kind == TASKWATCH_REASON_OOM_KILLED &&
	    (streq(reason, "signaled") || streq(reason, "exited")))
		return "oom_killed";
	if (r.kind == TASKWATCH_REASON_SIGNALED && streq(reason, "signaled")) {
		if (r.sender_kernel)
			snprintf(detail, size, "signal %d raised by the kernel", r.signal);
		else if (r.sender_pid > 0)
			snprintf(detail, size, "signal %d sent by pid %d (%.16s)", r.signal,
				 (int)r.sender_pid, r.sender_comm);
	}
	return reason;
}

/*
 * A run ended (or could not start). Decide: final state, or PENDING with a restart scheduled.
 * reason is the shim's (exited, signaled, oom_killed, stopped, start_failed) or ours (lost).
 */
static void task_ended(struct manager *m, struct task *t, const char *reason, int code, int sig,
		       const char *message)
{
	struct restart_policy pol = {
		.mode = (enum restart_mode)t->spec->restart.policy,
		.backoff_s = t->spec->restart.backoff_s,
		.max_backoff_s = t->spec->restart.max_backoff_s,
	};
	bool by_request, failed;
	usec_t ran_for = t->run_started ? clock_mono_usec() - t->run_started : 0;
	char detail[256];

	reason = watch_conclude(m, t, reason, detail, sizeof(detail));
	if (detail[0] && !message)
		message = detail;
	by_request = streq(reason, "stopped") && !t->health_kill;

	if (t->health_kill) {
		reason = "health_failed";
		if (!message) {
			snprintf(detail, sizeof(detail),
				 "health check failed %u times in a row%s%s", t->failures,
				 t->probe_error[0] ? ": " : "", t->probe_error);
			message = detail;
		}
	}
	t->health_kill = false;
	probe_cancel(m, t);
	t->shim_pidfd = safe_close(t->shim_pidfd);
	t->rec.shim_pid = 0;
	t->rec.shim_start = 0;
	t->task_pid = 0;
	t->task_start = 0;
	t->healthy = false;
	t->failures = 0;
	t->probe_error[0] = '\0';
	t->rec.exit_code = code;
	t->rec.signal = sig;
	t->rec.finished_at = clock_real_usec();
	if (streq(reason, "oom_killed"))
		m->oom_kills_total++;
	failed = !(streq(reason, "exited") && code == 0) && !by_request;
	if (t->rec.desired == TASK_RUNNING && restart_wanted(&pol, failed, by_request)) {
		usec_t delay;

		t->streak = restart_next_streak(t->streak, ran_for,
						(usec_t)m->cfg.restart_reset_s * USEC_PER_SEC);
		/* a floor, so that backoff_s 0 cannot turn a crash loop into a busy loop */
		delay = MAX(restart_delay(&pol, t->streak), RESTART_FLOOR_USEC);
		t->phase = P_BACKOFF;
		t->restart_at = clock_mono_usec() + delay;
		t->rec.state = TASK_PENDING;
		set_reason(t, "restarting");
		{
			char why[32] = "";

			if (sig)
				snprintf(why, sizeof(why), " (signal %d)", sig);
			else if (code >= 0)
				snprintf(why, sizeof(why), " (exit code %d)", code);
			set_message(t, "restart in %.1fs after %s%s%s%s",
				    (double)delay / USEC_PER_SEC, reason, why, message ? ": " : "",
				    message ? message : "");
		}
		task_save(m, t, "restarting");
		return;
	}
	t->phase = P_IDLE;
	t->streak = 0;
	set_reason(t, reason);
	set_message(t, message && *message ? "%s" : NULL, message);
	t->rec.state = (streq(reason, "stopped") || (streq(reason, "exited") && code == 0)) ?
			       TASK_DONE :
			       TASK_ERROR;
	task_save(m, t, "ended");
}

/*
 * The sandbox init's own record (init.status: "exited 3", "signaled 9"), written when the
 * command ended. Lets us report the real status when the shim died after the task ended.
 */
static bool read_init_status(int dfd, int *ret_code, int *ret_sig)
{
	_cleanup_free_ char *text = NULL;
	struct sandbox_status st;

	if (fs_read_file_at(dfd, TASKDIR_INIT_STATUS, 256, &text, NULL) < 0 ||
	    sandbox_status_parse(text, &st) < 0)
		return false;
	*ret_code = st.signaled ? -1 : st.code;
	*ret_sig = st.signaled ? st.code : 0;
	return true;
}

/* Read a finished shim's record and end the run with it. */
static void shim_finished(struct manager *m, struct task *t)
{
	_cleanup_close_ int dfd = task_dir_fd(m, t->rec.task_id);
	struct shim_status st;
	int r = dfd >= 0 ? shim_status_read(dfd, &st) : dfd;

	if (r >= 0 && st.generation == t->rec.generation &&
	    (st.phase == SHIM_EXITED || st.phase == SHIM_FAILED)) {
		if (st.phase == SHIM_FAILED)
			m->start_failures_total++;
		task_ended(m, t, st.reason[0] ? st.reason : "exited", st.exit_code, st.signal,
			   st.message[0] ? st.message : NULL);
		return;
	}
	/* The shim died without a final record (killed -9, crashed): its task may live on in the
	 * cgroup. Kill it, so nothing runs that nobody accounts for, and report it lost — unless
	 * the sandbox init recorded how the command ended. */
	{
		char name[CGNAME_MAX];
		int code, sig;

		task_cg_name(t, name);
		(void)runtime_cleanup(m->cfg.cgroup_parent, name, NULL);
		if (dfd >= 0 && read_init_status(dfd, &code, &sig)) {
			task_ended(m, t, sig ? "signaled" : "exited", code, sig,
				   "taskd-shim died; status from the sandbox init");
			return;
		}
	}
	task_ended(m, t, "lost", -1, 0, "the task's supervisor (taskd-shim) died unexpectedly");
}

/* ---------------------------------------------------------------- health probes */

static struct launch_env *launch_fill(struct manager *m, struct task *t,
				      char name[static CGNAME_MAX], struct launch_spec *ls);

static int probe_connect(pid_t task_pid, const struct jobspec_health *h, bool net_host)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(h->port) };
	int fd;

	if (!net_host && task_pid > 0) {
		char path[64];
		int ns;

		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)task_pid);
		ns = open(path, O_RDONLY | O_CLOEXEC);
		if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
			return -1;
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return fd;
}

/*
 * An http/tcp probe, in a forked child of taskd: it joins only the task's network namespace
 * (so 127.0.0.1 is the task's loopback), connects, and for http sends one GET. It runs no code
 * of the task's. Only async-signal-safe calls (a fork of a threaded process). Exit 0 = healthy.
 */
static _noreturn_ void probe_net_child(pid_t task_pid, const struct jobspec_health *h,
				       bool net_host)
{
	sigset_t none;
	int fd;

	/* Nothing of taskd's (its state lock, sockets) may outlive it in a probe. */
	syscall(SYS_close_range, 3, ~0U, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	fd = probe_connect(task_pid, h, net_host);
	if (fd < 0)
		_exit(1);
	if (h->type == JOBSPEC_HEALTH_HTTP) {
		char req[JOBSPEC_HEALTH_PATH_MAX + 128], resp[64];
		int n = snprintf(req, sizeof(req),
				 "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\nUser-Agent: "
				 "taskd-probe\r\n\r\n",
				 h->path, (unsigned)h->port);
		ssize_t k, got = 0;

		if (n < 0 || write(fd, req, (size_t)n) != n)
			_exit(1);
		while (got < (ssize_t)sizeof(resp) - 1 &&
		       (k = read(fd, resp + got, sizeof(resp) - 1 - (size_t)got)) > 0)
			got += k;
		resp[got] = '\0';
		/* "HTTP/1.x NNN": 2xx and 3xx are healthy */
		if (got < 12 || strncmp(resp, "HTTP/1.", 7) != 0 ||
		    (resp[9] != '2' && resp[9] != '3'))
			_exit(1);
	}
	_exit(0);
}

/*
 * An exec probe is part of the task: it runs inside it through sandbox_exec() with exactly the
 * command's confinement (cgroup and limits, every namespace including pid, uid, no
 * capabilities, no_new_privs, seccomp), so a probe can do nothing the task could not, and a
 * stop kills it with the task.
 */
static int probe_exec(struct manager *m, struct task *t, pid_t *ret_pid, int *ret_pidfd)
{
	struct launch_spec ls;
	struct cd_error err = { 0 };
	char name[CGNAME_MAX];
	_cleanup_free_ struct launch_env *env = launch_fill(m, t, name, &ls);
	int r;

	if (!env) {
		snprintf(t->probe_error, sizeof(t->probe_error), "out of memory");
		return -ENOMEM;
	}
	r = runtime_exec(m->cgsys, &ls, t->task_pid, t->task_start, t->spec->health.command,
			 ret_pid, ret_pidfd, &err);
	if (r < 0)
		snprintf(t->probe_error, sizeof(t->probe_error), "%s",
			 err.code ? cd_error_message(&err) : strerror(-r));
	return r;
}

static void shim_stop(struct task *t)
{
	if (t->watched)
		taskwatch_reason_stop_requested(&t->cls, 0);
	if (t->shim_pidfd >= 0)
		syscall(SYS_pidfd_send_signal, t->shim_pidfd, SIGTERM, NULL, 0);
	t->phase = P_STOPPING;
}

/* Count one probe outcome and schedule the next probe. */
static void probe_record(struct manager *m, struct task *t, bool ok)
{
	bool was = task_healthy(t);

	t->next_probe = clock_mono_usec() + (usec_t)t->spec->health.interval_s * USEC_PER_SEC;
	if (t->phase != P_RUNNING)
		return;
	if (ok) {
		t->failures = 0;
		t->healthy = true;
		t->probe_error[0] = '\0';
	} else {
		t->failures++;
		m->health_failures_total++;
		if (t->failures >= t->spec->health.failure_threshold) {
			t->healthy = false;
			t->health_kill = true;
			shim_stop(t);
		}
	}
	if (was != task_healthy(t))
		task_save(m, t, "health");
}

static void probe_start(struct manager *m, struct task *t)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int pidfd = -1;
	pid_t pid;

	if (t->spec->health.type == JOBSPEC_HEALTH_EXEC) {
		if (probe_exec(m, t, &pid, &pidfd) < 0) {
			probe_record(m, t, false);
			return;
		}
	} else {
		struct clone_args args = { 0 };

		args.flags = CLONE_PIDFD;
		args.pidfd = (uint64_t)(uintptr_t)&pidfd;
		args.exit_signal = SIGCHLD;
		pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
		if (pid < 0) {
			t->next_probe = clock_mono_usec() +
					(usec_t)t->spec->health.interval_s * USEC_PER_SEC;
			return;
		}
		if (pid == 0)
			probe_net_child(t->task_pid, &t->spec->health,
					t->spec->reqs.networking.mode == JOBSPEC_NET_HOST);
	}
	t->probe_pid = pid;
	t->probe_pidfd = pidfd;
	t->probe_stopping = false;
	t->probe_deadline = clock_mono_usec() + (usec_t)t->spec->health.timeout_s * USEC_PER_SEC;
	ev.data.u64 = TAG_PROBE(t->slot);
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, pidfd, &ev);
}

/*
 * A probe outlived its timeout: it failed. SIGTERM makes an exec probe's middle process kill
 * the command's process group; it is reaped when its pidfd fires (without blocking this
 * thread on a task that may be slow to die), and SIGKILLed if it is still there after a grace.
 */
static void probe_timeout(struct manager *m, struct task *t)
{
	usec_t now = clock_mono_usec();

	t->probe_deadline = now + PROBE_STOP_GRACE_USEC;
	if (t->probe_stopping) {
		syscall(SYS_pidfd_send_signal, t->probe_pidfd, SIGKILL, NULL, 0);
		return;
	}
	syscall(SYS_pidfd_send_signal, t->probe_pidfd, SIGTERM, NULL, 0);
	t->probe_stopping = true;
	snprintf(t->probe_error, sizeof(t->probe_error), "timed out after %us",
		 t->spec->health.timeout_s);
	probe_record(m, t, false);
}

/* The probe process ended: reap it and, unless its timeout already counted, record it. */
static void probe_reaped(struct manager *m, struct task *t, const siginfo_t *si)
{
	bool counted = t->probe_stopping;
	bool ok = si->si_code == CLD_EXITED && si->si_status == 0;

	probe_forget(m, t);
	if (counted)
		return;
	if (!ok) {
		if (t->spec->health.type != JOBSPEC_HEALTH_EXEC)
			snprintf(t->probe_error, sizeof(t->probe_error), "%s to port %u failed",
				 t->spec->health.type == JOBSPEC_HEALTH_HTTP ? "HTTP GET" :
									       "TCP connect",
				 (unsigned)t->spec->health.port);
		else if (si->si_code == CLD_EXITED)
			snprintf(t->probe_error, sizeof(t->probe_error), "probe exited with %d",
				 si->si_status);
		else
			snprintf(t->probe_error, sizeof(t->probe_error),
				 "probe killed by signal %d", si->si_status);
	}
	probe_record(m, t, ok);
}

/* ---------------------------------------------------------------- launching */

/*
 * The launch spec of the task's current generation, pointing into t and m (valid while both
 * are unchanged). Returns the env array it points to (free it), NULL on -ENOMEM.
 */
static struct launch_env *launch_fill(struct manager *m, struct task *t,
				      char name[static CGNAME_MAX], struct launch_spec *ls)
{
	struct launch_env *env = calloc(t->spec->n_env + 1, sizeof(*env));

	if (!env)
		return NULL;
	for (size_t i = 0; i < t->spec->n_env; i++) {
		env[i].key = t->spec->env[i].key;
		env[i].value = t->spec->env[i].value;
	}
	task_cg_name(t, name);
	*ls = (struct launch_spec){ 0 };
	ls->task_id = t->rec.task_id;
	ls->generation = t->rec.generation;
	ls->cgroup_parent = (char *)m->cfg.cgroup_parent;
	ls->cgroup_name = name;
	ls->argv = t->spec->command;
	ls->n_env = t->spec->n_env;
	ls->env = env;
	ls->app_dir = t->app_dir;
	ls->net = (char *)jobspec_net_mode_to_string(t->spec->reqs.networking.mode);
	if (t->spec->reqs.networking.mode == JOBSPEC_NET_BRIDGE) {
		ls->bridge = (char *)m->cfg.bridge_name;
		ls->subnet = (char *)m->cfg.bridge_subnet;
	}
	ls->memory_mb = t->spec->reqs.memory_mb;
	ls->millicpus = t->spec->reqs.millicpus;
	ls->pids_max = t->spec->reqs.pids_max  ? t->spec->reqs.pids_max :
		       m->cfg.default_pids_max ? m->cfg.default_pids_max :
						 TASKD_DEFAULT_PIDS_MAX;
	ls->storage_mb = t->spec->reqs.storage.size_mb;
	ls->stop_grace_s = t->spec->stop_grace_s;
	ls->log_max_bytes = m->cfg.log_max_bytes;
	ls->log_keep = m->cfg.log_keep;
	ls->log_line_max = m->cfg.log_line_max;
	ls->mask = m->cfg.mask;
	ls->init_binary = (char *)m->cfg.init_path;
	return env;
}

static int write_launch(struct manager *m, struct task *t, int dfd)
{
	_cleanup_free_ char *text = NULL;
	struct launch_spec ls;
	char name[CGNAME_MAX];
	_cleanup_free_ struct launch_env *env = launch_fill(m, t, name, &ls);
	int r;

	if (!env)
		return -ENOMEM;
	r = launch_spec_to_string(&ls, &text);
	if (r < 0)
		return r;
	return fs_write_atomic_at(dfd, TASKDIR_LAUNCH, text, strlen(text), 0600);
}

/* Wait until the shim wrote a status for this generation or a later one (taskd may have died
 * between writing launch.json of generation N+1 and saving N+1). The shim writes it first. */
static int wait_status(int dfd, unsigned generation, struct shim_status *ret, int timeout_ms)
{
	for (int waited = 0;; waited += 10) {
		int r = shim_status_read(dfd, ret);

		if (r >= 0 && ret->generation >= generation)
			return 0;
		if (waited >= timeout_ms)
			return r < 0 ? r : -ETIMEDOUT;
		clock_sleep_usec(10 * USEC_PER_MSEC);
	}
}

static int open_shim_pidfd(pid_t pid, uint64_t start)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd < 0)
		return -errno;
	/* pidfd first, identity second: a pid recycled after the check cannot fool us. */
	if (!proc_is_same(pid, start)) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

static void watch_shim(struct manager *m, struct task *t, int pidfd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_SHIM(t->slot) };

	t->shim_pidfd = pidfd;
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, pidfd, &ev);
}

/*
 * Spawn taskd-shim for the task's next generation: flock shim.lock before the fork so that the
 * lock is held without a gap from here until the shim exits (the shim inherits it), double fork
 * so the shim is nobody's child but init's (taskd may die any time), wait for "OK"/"E ..." on
 * the ready pipe.
 */
static int spawn_shim(struct manager *m, struct task *t, int dfd, char *errbuf, size_t errsize)
{
	_cleanup_close_ int lockfd = -EBADF, rd = -EBADF;
	char path[PATH_MAX], line[300] = "";
	char *argv[3];
	int ready[2];
	struct shim_status st;
	pid_t mid;
	ssize_t n = 0;
	int r, pidfd;

	if (task_dir_path(m, t->rec.task_id, path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	lockfd = openat(dfd, TASKDIR_LOCK, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0)
		return -errno;
	if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(errbuf, errsize, "a previous taskd-shim still runs");
		return -EBUSY;
	}
	if (pipe2(ready, O_CLOEXEC) < 0)
		return -errno;
	rd = ready[0];
	argv[0] = (char *)m->cfg.shim_path;
	argv[1] = path;
	argv[2] = NULL;
	mid = fork();
	if (mid < 0) {
		r = -errno;
		close(ready[1]);
		return r;
	}
	if (mid == 0) {
		/* async-signal-safe only: we are a fork of a threaded process */
		pid_t shim;
		sigset_t none;

		setsid();
		shim = fork();
		if (shim != 0)
			_exit(shim < 0 ? 1 : 0);
		if (dup2(ready[1], 3) < 0 || dup2(lockfd, 4) < 0)
			_exit(1);
		{
			int devnull = open("/dev/null", O_RDWR);

			if (devnull >= 0) {
				dup2(devnull, 0);
				dup2(devnull, 1);
				/* keep stderr: the shim logs to taskd's journal */
			}
		}
		syscall(SYS_close_range, 5, ~0U, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(argv[0], argv);
		_exit(127);
	}
	close(ready[1]);
	waitpid(mid, NULL, 0);
	/* Our copy of the lock goes; the shim's copy (same open file description) holds it. */
	lockfd = safe_close(lockfd);
	/* The sandbox launch takes milliseconds, but nothing else must wait for it: drop the
	 * lock meanwhile. The task cannot go away (DELETE refuses a launching task, and the
	 * manager is freed only after every launching thread has returned). */
	t->phase = P_LAUNCHING;
	pthread_mutex_unlock(&m->lock);
	{
		struct pollfd pfd = { .fd = rd, .events = POLLIN };
		size_t got = 0;

		while (got < sizeof(line) - 1) {
			int p = poll(&pfd, 1, SHIM_READY_TIMEOUT_MS);

			if (p <= 0)
				break;
			n = read(rd, line + got, sizeof(line) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			if (memchr(line, '\n', got))
				break;
		}
		line[got] = '\0';
	}
	pthread_mutex_lock(&m->lock);
	if (!startswith(line, "OK")) {
		const char *msg = startswith(line, "E ");

		snprintf(errbuf, errsize, "%.*s", msg ? (int)strcspn(msg, "\n") : 0,
			 msg ? msg : "");
		if (!msg)
			snprintf(errbuf, errsize, "taskd-shim (%s) did not start", argv[0]);
		return -ECHILD;
	}
	r = wait_status(dfd, t->rec.generation, &st, STATUS_WAIT_MS);
	if (r < 0) {
		snprintf(errbuf, errsize, "taskd-shim wrote no status");
		return r;
	}
	pidfd = open_shim_pidfd(st.shim_pid, st.shim_start);
	if (pidfd < 0) {
		/* It already finished (a very short task): the record says how. */
		t->rec.shim_pid = 0;
		return 1;
	}
	t->rec.shim_pid = st.shim_pid;
	t->rec.shim_start = st.shim_start;
	t->task_pid = st.pid;
	t->task_start = st.pid_start;
	watch_shim(m, t, pidfd);
	return 0;
}

static void task_launch(struct manager *m, struct task *t)
{
	_cleanup_close_ int dfd = task_dir_fd(m, t->rec.task_id);
	char errbuf[300] = "";
	int r;

	if (dfd < 0) {
		task_ended(m, t, "start_failed", -1, 0, "task directory is missing");
		return;
	}
	t->rec.generation++;
	(void)unlinkat(dfd, TASKDIR_STATUS, 0);
	(void)unlinkat(dfd, TASKDIR_INIT_STATUS, 0);
	r = write_launch(m, t, dfd);
	if (r < 0) {
		m->start_failures_total++;
		task_ended(m, t, "start_failed", -1, 0, "cannot write launch spec");
		return;
	}
	r = spawn_shim(m, t, dfd, errbuf, sizeof(errbuf));
	if (r == -ECHILD) {
		/* the shim reported the launch failure (or could not run at all) */
		m->start_failures_total++;
		task_ended(m, t, "start_failed", -1, 0, errbuf);
		return;
	}
	if (r < 0) {
		m->start_failures_total++;
		task_ended(m, t, "start_failed", -1, 0, errbuf[0] ? errbuf : strerror(-r));
		return;
	}
	m->starts_total++;
	latency_observe(m, t->pending_since);
	t->pending_since = 0;
	t->phase = P_RUNNING;
	t->run_started = clock_mono_usec();
	t->rec.state = TASK_RUNNING;
	t->rec.exit_code = -1;
	t->rec.signal = 0;
	t->rec.started_at = clock_real_usec();
	t->rec.finished_at = 0;
	t->healthy = false;
	t->failures = 0;
	t->next_probe = clock_mono_usec() + (usec_t)t->spec->health.interval_s * USEC_PER_SEC;
	set_reason(t, "");
	set_message(t, NULL);
	watch_task(m, t);
	task_save(m, t, "running");
	if (r == 1)
		shim_finished(m, t);
	else if (t->rec.desired == TASK_DONE)
		shim_stop(t); /* SetTaskState DONE arrived while it was launching */
}

/* ---------------------------------------------------------------- fetching */

struct fetch_job {
	struct manager *m;
	uint64_t slot;
	char *digest;
	char **mirrors;
	char *exe_name;
};

static void fetch_job_free(struct fetch_job *j)
{
	free(j->digest);
	strv_free(j->mirrors);
	free(j->exe_name);
	free(j);
}

static void *fetch_thread(void *arg)
{
	struct fetch_job *j = arg;
	struct manager *m = j->m;
	struct cd_error err = { 0 };
	_cleanup_free_ char *blob = NULL, *dir = NULL;
	struct fetch_options o;
	size_t n = 0;
	uint64_t fetched = 0;
	int r;

	while (j->mirrors && j->mirrors[n])
		n++;
	fetch_options_init(&o);
	r = fetcher_lookup(m->fetcher, j->digest, &blob);
	if (r == -ENOENT) {
		struct stat sb;

		r = fetcher_fetch(m->fetcher, j->digest, (const char *const *)j->mirrors, n, &o,
				  &blob, &err);
		if (r >= 0 && stat(blob, &sb) == 0)
			fetched = (uint64_t)sb.st_size;
	}
	/* AUTO: an archive is unpacked, a program blob becomes /app/<exe_name> (the JobSpec's
	 * default command is /app/<target name>). */
	if (r >= 0)
		r = fetcher_materialize(m->fetcher, j->digest, FETCHER_KIND_AUTO, j->exe_name, NULL,
					&dir, &err);

	pthread_mutex_lock(&m->lock);
	m->fetch_bytes_total += fetched;
	{
		struct task *t = find_slot(m, j->slot);

		if (t) {
			t->fetch_inflight = false;
			if (t->phase == P_FETCHING) {
				if (r < 0) {
					t->phase = P_IDLE;
					task_ended(m, t, "fetch_failed", -1, 0,
						   err.code ? cd_error_message(&err) :
							      strerror(-r));
				} else {
					free(t->app_dir);
					t->app_dir = TAKE_PTR(dir);
					if (t->rec.desired == TASK_RUNNING)
						task_launch(m, t);
					else
						t->phase = P_IDLE;
				}
			}
		}
	}
	m->fetches_inflight--;
	pthread_cond_broadcast(&m->fetch_cond);
	arm_timer(m);
	pthread_mutex_unlock(&m->lock);
	fetch_job_free(j);
	return NULL;
}

/* Begin a run: fetch the artifact (if any) then launch. Called with the lock held. */
static void task_begin(struct manager *m, struct task *t)
{
	struct fetch_job *j;
	pthread_t th;
	pthread_attr_t attr;

	if (!t->pending_since)
		t->pending_since = clock_mono_usec();
	if (!t->digest || t->app_dir) {
		task_launch(m, t);
		return;
	}
	if (t->fetch_inflight)
		return;
	j = calloc(1, sizeof(*j));
	if (!j)
		goto oom;
	j->m = m;
	j->slot = t->slot;
	j->digest = strdup(t->digest);
	j->mirrors = calloc(MAX_MIRRORS + 1, sizeof(char *));
	j->exe_name =
		strdup(t->spec->target.target.name[0] ? t->spec->target.target.name : "artifact");
	if (!j->digest || !j->mirrors || !j->exe_name) {
		fetch_job_free(j);
		goto oom;
	}
	for (size_t i = 0; t->mirrors && t->mirrors[i] && i < MAX_MIRRORS; i++)
		if (!(j->mirrors[i] = strdup(t->mirrors[i]))) {
			fetch_job_free(j);
			goto oom;
		}
	if (!t->pinned && fetcher_pin(m->fetcher, t->digest, NULL) >= 0)
		t->pinned = true;
	t->phase = P_FETCHING;
	t->fetch_inflight = true;
	if (t->rec.state != TASK_PENDING || !streq(t->rec.reason, "fetching")) {
		t->rec.state = TASK_PENDING;
		set_reason(t, "fetching");
		set_message(t, NULL);
		task_save(m, t, "fetching");
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, fetch_thread, j) != 0) {
		pthread_attr_destroy(&attr);
		t->fetch_inflight = false;
		fetch_job_free(j);
		goto oom;
	}
	pthread_attr_destroy(&attr);
	m->fetches_inflight++;
	return;
oom:
	t->phase = P_IDLE;
	task_ended(m, t, "fetch_failed", -1, 0, "out of memory starting the fetch");
}

/* ---------------------------------------------------------------- supervisor thread */

static void handle_timer(struct manager *m)
{
	usec_t now = clock_mono_usec();

	for (struct task *t = m->tasks; t; t = t->next) {
		if (t->phase == P_BACKOFF && t->restart_at <= now) {
			t->rec.restarts++;
			m->restarts_total++;
			t->pending_since = now;
			task_begin(m, t);
		} else if (t->phase == P_RUNNING && t->spec->health.type != JOBSPEC_HEALTH_NONE) {
			if (t->probe_pid > 0 && t->probe_deadline <= now)
				probe_timeout(m, t);
			else if (t->probe_pid == 0 && t->next_probe <= now)
				probe_start(m, t);
		}
	}
}

static void *supervisor(void *arg)
{
	struct manager *m = arg;

	pthread_mutex_lock(&m->lock);
	arm_timer(m);
	while (!m->stopping) {
		struct epoll_event evs[32];
		int n;

		pthread_mutex_unlock(&m->lock);
		n = epoll_wait(m->epfd, evs, ARRAY_SIZE(evs), -1);
		pthread_mutex_lock(&m->lock);
		if (n < 0)
			continue;
		for (int i = 0; i < n && !m->stopping; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_WAKE) {
				uint64_t v;

				(void)!read(m->wakefd, &v, sizeof(v));
			} else if (tag == TAG_WATCH) {
				watch_consume(m);
			} else if (tag == TAG_TIMER) {
				uint64_t v;

				(void)!read(m->timerfd, &v, sizeof(v));
				handle_timer(m);
			} else if ((tag & 3) == 2) {
				struct task *t = find_slot(m, tag >> 2);

				if (t && t->shim_pidfd >= 0) {
					epoll_ctl(m->epfd, EPOLL_CTL_DEL, t->shim_pidfd, NULL);
					shim_finished(m, t);
				}
			} else if ((tag & 3) == 3) {
				struct task *t = find_slot(m, tag >> 2);
				siginfo_t si = { 0 };

				if (t && t->probe_pid > 0 &&
				    waitid(P_PIDFD, (id_t)t->probe_pidfd, &si, WEXITED | WNOHANG) >=
					    0 &&
				    si.si_pid != 0)
					probe_reaped(m, t, &si);
			}
		}
		arm_timer(m);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* ---------------------------------------------------------------- loading and re-adoption */

static int task_parse_doc(struct task *t, struct problem *p)
{
	json_t *a;

	if (!t->url) {
		/* immutable per task: made once, not per reply (parsing the job URL is most of it) */
		char url[TASK_URL_MAX_LEN + 1] = "";

		(void)task_url(t, url, sizeof(url));
		t->url = strdup(url);
		if (!t->url)
			return -ENOMEM;
	}
	if (!t->spec) {
		struct jobspec *spec = NULL;
		int r = jobspec_from_string(t->rec.spec_json, strlen(t->rec.spec_json), &spec, p);

		if (r < 0)
			return r;
		t->spec = spec;
	}
	if (!t->rec.artifact_json)
		return 0;
	a = json_loads(t->rec.artifact_json, 0, NULL);
	if (!a)
		return -EINVAL;
	{
		const char *digest = json_string_value(json_object_get(a, "digest"));
		const json_t *mirrors = json_object_get(a, "mirrors");
		size_t n = json_array_size(mirrors);

		t->digest = digest ? strdup(digest) : NULL;
		t->mirrors = calloc(n + 1, sizeof(char *));
		for (size_t i = 0; t->mirrors && i < n; i++)
			t->mirrors[i] = strdup(json_string_value(json_array_get(mirrors, i)) ?: "");
	}
	json_decref(a);
	return t->digest && t->mirrors ? 0 : -ENOMEM;
}

static struct task *task_new(struct manager *m)
{
	struct task *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->slot = ++m->next_slot;
	t->shim_pidfd = -EBADF;
	t->probe_pidfd = -EBADF;
	return t;
}

static void task_link(struct manager *m, struct task *t)
{
	struct task **pp = &m->tasks;

	/* keep creation order (ids are time-sortable) */
	while (*pp)
		pp = &(*pp)->next;
	*pp = t;
	m->n_tasks++;
}

/*
 * Bring one loaded task back under supervision. The shim lock says whether a shim runs; its
 * status record says what happened while we were away.
 */
static void adopt(struct manager *m, struct task *t, char ***keep_cgroups)
{
	_cleanup_close_ int dfd = task_dir_fd(m, t->rec.task_id);
	_cleanup_close_ int lockfd = -EBADF;
	struct shim_status st;
	char name[CGNAME_MAX];
	bool shim_alive;

	task_cg_name(t, name);
	if (task_is_final(t) || dfd < 0) {
		t->phase = P_IDLE;
		return;
	}
	lockfd = openat(dfd, TASKDIR_LOCK, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	shim_alive = lockfd >= 0 && flock(lockfd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	if (lockfd >= 0 && !shim_alive)
		flock(lockfd, LOCK_UN);

	if (shim_alive && wait_status(dfd, t->rec.generation, &st, STATUS_WAIT_MS) >= 0) {
		int pidfd = open_shim_pidfd(st.shim_pid, st.shim_start);

		if (pidfd >= 0) {
			size_t n = 0;

			t->rec.generation = st.generation;
			task_cg_name(t, name);
			watch_shim(m, t, pidfd);
			t->rec.shim_pid = st.shim_pid;
			t->rec.shim_start = st.shim_start;
			t->task_pid = st.pid;
			t->task_start = st.pid_start;
			t->phase = P_RUNNING;
			t->run_started = clock_mono_usec();
			t->next_probe = clock_mono_usec();
			while (*keep_cgroups && (*keep_cgroups)[n])
				n++;
			{
				char **v = reallocarray(*keep_cgroups, n + 2, sizeof(char *));

				if (v) {
					v[n] = strdup(name);
					v[n + 1] = NULL;
					*keep_cgroups = v;
				}
			}
			m->adopt.adopted++;
			watch_task(m, t);
			/* A stop was asked for before we died: make sure the shim heard it (a second
			 * SIGTERM is harmless: the shim's grace timer is already running). */
			if (t->rec.desired == TASK_DONE)
				shim_stop(t);
			if (t->rec.state != TASK_RUNNING && st.phase == SHIM_RUNNING) {
				/* we died between the spawn and saving RUNNING */
				t->rec.state = TASK_RUNNING;
				set_reason(t, "");
				t->rec.started_at = st.started_at;
				task_save(m, t, "running");
			}
			if (st.phase != SHIM_RUNNING && st.phase != SHIM_STARTING) {
				/* finishing right now: the pidfd fires shortly */
			}
			return;
		}
	}
	/* No shim runs for this task. */
	if (shim_status_read(dfd, &st) >= 0 && st.generation >= t->rec.generation &&
	    st.generation > 0 && (st.phase == SHIM_EXITED || st.phase == SHIM_FAILED)) {
		m->adopt.ended_while_down++;
		t->rec.generation = st.generation;
		t->phase = P_RUNNING;
		t->run_started = clock_mono_usec();
		task_ended(m, t, st.reason[0] ? st.reason : "exited", st.exit_code, st.signal,
			   st.message[0] ? st.message : NULL);
		return;
	}
	if (t->rec.state == TASK_RUNNING || t->rec.shim_pid != 0 ||
	    (shim_status_read(dfd, &st) >= 0 && st.generation >= t->rec.generation &&
	     st.generation > 0)) {
		if (shim_status_read(dfd, &st) >= 0 && st.generation > t->rec.generation)
			t->rec.generation = st.generation;
		task_cg_name(t, name);
		/* A shim existed for this generation and died without a final record. */
		int code, sig;

		(void)runtime_cleanup(m->cfg.cgroup_parent, name, NULL);
		if (read_init_status(dfd, &code, &sig)) {
			m->adopt.ended_while_down++;
			t->phase = P_RUNNING;
			task_ended(m, t, sig ? "signaled" : "exited", code, sig,
				   "taskd-shim died; status from the sandbox init");
			return;
		}
		m->adopt.lost++;
		t->phase = P_RUNNING;
		task_ended(m, t, "lost", -1, 0,
			   "taskd-shim died while taskd was down; exit status unknown");
		return;
	}
	/* PENDING (fetching, restarting, or a launch that never got a shim): carry on. */
	m->adopt.relaunched++;
	if (t->rec.desired == TASK_RUNNING) {
		if (streq(t->rec.reason, "restarting")) {
			struct restart_policy pol = { (enum restart_mode)t->spec->restart.policy,
						      t->spec->restart.backoff_s,
						      t->spec->restart.max_backoff_s };

			t->phase = P_BACKOFF;
			t->restart_at = clock_mono_usec() + restart_delay(&pol, 1);
		} else
			task_begin(m, t);
	} else {
		t->phase = P_IDLE;
		t->rec.state = TASK_DONE;
		set_reason(t, "stopped");
		task_save(m, t, "ended");
	}
}

static void gc_cgroups(struct manager *m, char **keep)
{
	_cleanup_strv_free_ char **children = NULL;
	struct cg_system *sys = NULL;

	if (cg_system_detect(NULL, &sys, NULL) < 0)
		return;
	if (cg_list_children(sys, m->cfg.cgroup_parent, &children) >= 0) {
		for (size_t i = 0; children && children[i]; i++) {
			bool keepit = false;

			for (size_t k = 0; keep && keep[k]; k++)
				if (streq(keep[k], children[i]))
					keepit = true;
			if (!keepit &&
			    runtime_cleanup(m->cfg.cgroup_parent, children[i], NULL) >= 0)
				m->adopt.orphan_cgroups++;
		}
	}
	cg_system_free(sys);
}

static int load_and_adopt(struct manager *m, struct cd_error *err)
{
	struct task_record *v = NULL;
	size_t n = 0;
	char **keep = NULL;
	int r = state_task_list(m->st, NULL, -1, &v, &n);

	if (r < 0)
		return cd_error_set(err, r, "cannot load tasks: %s", strerror(-r));
	for (size_t i = 0; i < n; i++) {
		struct task *t = task_new(m);
		struct problem p;

		if (!t) {
			task_record_array_free(v, n);
			return cd_error_set(err, -ENOMEM, "out of memory");
		}
		t->rec = v[i];
		memset(&v[i], 0, sizeof(v[i]));
		problem_init(&p, 422, NULL, NULL);
		r = task_parse_doc(t, &p);
		problem_release(&p);
		if (r < 0) {
			/* A stored spec this taskd cannot read: keep the row, never run it. */
			task_free(t);
			continue;
		}
		t->pinned = t->digest != NULL; /* pinned when it was put */
		task_link(m, t);
		m->adopt.tasks++;
	}
	free(v);
	for (struct task *t = m->tasks; t; t = t->next)
		adopt(m, t, &keep);
	gc_cgroups(m, keep);
	strv_free(keep);
	return 0;
}

/* ---------------------------------------------------------------- lifecycle of the manager */

int manager_new(const struct manager_config *cfg, struct state *st, struct manager **ret,
		struct cd_error *err)
{
	struct manager *m;
	_cleanup_free_ char *cache = NULL;
	struct epoll_event ev = { .events = EPOLLIN };
	int r;

	m = calloc(1, sizeof(*m));
	if (!m) {
		state_close(st);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	m->started_at = clock_real_usec();
	m->st = st;
	m->cfg = *cfg;
	m->cfg.mask = NULL;
	m->epfd = m->timerfd = m->wakefd = -EBADF;
	pthread_mutex_init(&m->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m->events_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_cond_init(&m->fetch_cond, NULL);
	for (size_t i = 0; cfg->mask && cfg->mask[i]; i++) {
		char **v = reallocarray(m->cfg.mask, i + 2, sizeof(char *));

		if (!v)
			goto oom;
		m->cfg.mask = v;
		v[i] = strdup(cfg->mask[i]);
		v[i + 1] = NULL;
		if (!v[i])
			goto oom;
	}
	if (asprintf(&m->tasks_dir, "%s/tasks", cfg->state_dir) < 0 ||
	    asprintf(&cache, "%s/cache", cfg->state_dir) < 0)
		goto oom;
	r = fs_mkdir_p(m->tasks_dir, 0700);
	if (r < 0) {
		cd_error_set(err, r, "cannot create %s: %s", m->tasks_dir, strerror(-r));
		goto fail;
	}
	r = fetcher_new(cache, cfg->cache_max_bytes, &m->fetcher, err);
	if (r < 0)
		goto fail;
	/* leftovers of downloads and unpacks a crash interrupted; pinned blobs are kept */
	(void)fetcher_gc(m->fetcher, NULL, NULL);
	m->epfd = epoll_create1(EPOLL_CLOEXEC);
	m->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	m->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->epfd < 0 || m->timerfd < 0 || m->wakefd < 0) {
		r = cd_error_set(err, -errno, "epoll/timerfd/eventfd: %s", strerror(errno));
		goto fail;
	}
	ev.data.u64 = TAG_WAKE;
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->wakefd, &ev);
	r = cg_system_detect(NULL, &m->cgsys, err);
	if (r < 0)
		goto fail;
	/* Per-process events only in BPF mode: the fallback needs to be the init's parent, and
	 * the shim is. Without BPF the shim's record (wait status + cgroup OOM count) suffices. */
	m->adopt.watch_mode = "off (BPF unavailable)";
	if (taskwatch_new(&(struct taskwatch_opts){ .ringbuf_bytes = cfg->watch_ring_bytes },
			  &m->tw) >= 0) {
		if (taskwatch_is_bpf(m->tw)) {
			m->adopt.watch_mode = "bpf";
			ev.data.u64 = TAG_WATCH;
			epoll_ctl(m->epfd, EPOLL_CTL_ADD, taskwatch_fd(m->tw), &ev);
		} else {
			taskwatch_free(m->tw);
			m->tw = NULL;
		}
	}
	ev.data.u64 = TAG_TIMER;
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->timerfd, &ev);

	pthread_mutex_lock(&m->lock);
	r = load_and_adopt(m, err);
	pthread_mutex_unlock(&m->lock);
	if (r < 0)
		goto fail;
	r = pthread_create(&m->thread, NULL, supervisor, m);
	if (r != 0) {
		r = cd_error_set(err, -r, "cannot start the supervisor thread");
		goto fail;
	}
	m->thread_started = true;
	*ret = m;
	return 0;
oom:
	r = cd_error_set(err, -ENOMEM, "out of memory");
fail:
	manager_free(m);
	return r;
}

void manager_free(struct manager *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started) {
		wake(m);
		pthread_join(m->thread, NULL);
	}
	pthread_mutex_lock(&m->lock);
	/* fetch threads hold no reference but m: wait for them (they end with their download) */
	while (m->fetches_inflight > 0)
		pthread_cond_wait(&m->fetch_cond, &m->lock);
	pthread_mutex_unlock(&m->lock);
	while (m->tasks) {
		struct task *t = m->tasks;

		m->tasks = t->next;
		probe_cancel(m, t);
		task_free(t);
	}
	fetcher_free(m->fetcher);
	if (m->tw)
		taskwatch_free(m->tw);
	cg_system_free(m->cgsys);
	state_close(m->st);
	safe_close(m->epfd);
	safe_close(m->timerfd);
	safe_close(m->wakefd);
	strv_free(m->cfg.mask);
	free(m->tasks_dir);
	pthread_cond_destroy(&m->events_cond);
	pthread_cond_destroy(&m->fetch_cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void manager_adopt_stats(struct manager *m, struct manager_adopt_stats *ret)
{
	pthread_mutex_lock(&m->lock);
	*ret = m->adopt;
	pthread_mutex_unlock(&m->lock);
}

/* ---------------------------------------------------------------- API operations */

static int validate_put(const json_t *body, const char **ret_req, const char **ret_tid,
			const char **ret_job, int64_t *ret_index, const json_t **ret_spec,
			const json_t **ret_art, struct problem *p)
{
	static const char *const allowed[] = { "request_id", "task_id",	 "job", "index",
					       "spec",	     "artifact", NULL };
	const json_t *art = NULL, *spec = NULL;
	const char *req = NULL, *tid = NULL, *job = NULL;
	int64_t index = 0;

	if (api_json_expect_object(body, "", p) < 0)
		return api_json_finish_validation(p) ?: -EINVAL;
	api_json_check_unknown(body, "", allowed, p);
	if (api_json_get_string(body, "", "request_id", false, 1, REQUEST_ID_MAX_LEN, &req, p) >
	    0) {
		for (const char *c = req; *c; c++)
			if (*c < 0x21 || *c > 0x7e) {
				problem_add_error(p, "/request_id",
						  "must be printable ASCII without "
						  "spaces");
				break;
			}
	}
	if (api_json_get_string(body, "", "task_id", false, 1, TASK_ID_MAX, &tid, p) > 0) {
		struct cd_error e = { 0 };

		if (task_id_check(tid, &e) < 0)
			problem_add_error(p, "/task_id", "%s", cd_error_message(&e));
	}
	if (api_json_get_string(body, "", "job", true, 1, JOB_URL_MAX_LEN, &job, p) > 0) {
		struct job_url ju;
		struct cd_error e = { 0 };

		if (job_url_parse(job, &ju, &e) < 0)
			problem_add_error(p, "/job", "%s", cd_error_message(&e));
	}
	api_json_get_int(body, "", "index", false, 0, JOBSPEC_MAX_HOSTS - 1, &index, p);
	api_json_get_object(body, "", "spec", true, &spec, p);
	{
		const json_t *a = json_object_get(body, "artifact");

		if (a && !json_is_null(a)) {
			static const char *const aallowed[] = { "digest", "mirrors", NULL };
			const char *digest = NULL;
			const json_t *mirrors = NULL;

			if (api_json_get_object(body, "", "artifact", false, &art, p) > 0) {
				api_json_check_unknown(art, "/artifact", aallowed, p);
				if (api_json_get_string(art, "/artifact", "digest", true, 1, 80,
							&digest, p) > 0) {
					struct digest d;
					struct cd_error e = { 0 };

					if (digest_parse(digest, &d, &e) < 0)
						problem_add_error(p, "/artifact/digest", "%s",
								  cd_error_message(&e));
				}
				if (api_json_get_array(art, "/artifact", "mirrors", true, 1,
						       MAX_MIRRORS, &mirrors, p) > 0) {
					size_t i;
					const json_t *v;

					for (i = 0; i < json_array_size(mirrors) &&
						    (v = json_array_get(mirrors, i));
					     i++) {
						char ptr[64];
						const char *u = NULL;

						snprintf(ptr, sizeof(ptr), "/artifact/mirrors/%zu",
							 i);
						if (api_json_check_string(v, ptr, 1, 2048, &u, p) >=
							    0 &&
						    !startswith(u, "http://") &&
						    !startswith(u, "https://"))
							problem_add_error(p, ptr,
									  "must be an http(s) URL");
					}
				}
			}
		}
	}
	*ret_req = req;
	*ret_tid = tid;
	*ret_job = job;
	*ret_index = index;
	*ret_spec = spec;
	*ret_art = art;
	return 0;
}

int manager_put_task(struct manager *m, const json_t *body, bool from_manager, struct jsonw *w,
		     char ret_task_id[static TASK_ID_BUF], struct problem *p)
{
	const char *req = NULL, *tid = NULL, *job = NULL;
	const json_t *spec_j = NULL, *art = NULL;
	int64_t index = 0;
	struct jobspec *spec = NULL;
	struct task *t;
	char idbuf[ID_LEN + 1];
	int r;

	r = validate_put(body, &req, &tid, &job, &index, &spec_j, &art, p);
	if (r < 0)
		return r;
	if (spec_j) {
		/* collects its own errors into p under /spec */
		(void)jobspec_from_json_at(spec_j, "/spec", &spec, p);
	}
	r = api_json_finish_validation(p);
	if (r < 0 || !spec) {
		jobspec_free(spec);
		return r < 0 ? r : -EINVAL;
	}

	pthread_mutex_lock(&m->lock);
	/* Idempotency: the same request_id returns the task it created. */
	if (req) {
		for (t = m->tasks; t; t = t->next)
			if (t->rec.request_id && streq(t->rec.request_id, req)) {
				if (tid && !streq(tid, t->rec.task_id)) {
					r = -EEXIST;
					problem_set(p, 409, NULL, "Conflict");
					problem_set_detail(p, "request_id %s created task %s", req,
							   t->rec.task_id);
					goto out;
				}
				task_write(w, t, false, NULL);
				memcpy(ret_task_id, t->rec.task_id, TASK_ID_BUF);
				r = 200;
				goto out;
			}
	}
	if (tid && find_task(m, tid)) {
		r = -EEXIST;
		problem_set(p, 409, NULL, "Conflict");
		problem_set_detail(p, "task %s exists with another request_id", tid);
		goto out;
	}
	if (m->n_tasks >= m->cfg.max_tasks) {
		r = -ENOSPC;
		problem_set(p, 507, NULL, "Insufficient Storage");
		problem_set_detail(p, "this host holds its maximum of %u tasks", m->cfg.max_tasks);
		goto out;
	}
	t = task_new(m);
	if (!t) {
		r = -ENOMEM;
		goto out;
	}
	if (!tid) {
		id_new(idbuf);
		tid = idbuf;
	}
	snprintf(t->rec.task_id, sizeof(t->rec.task_id), "%s", tid);
	t->rec.request_id = req ? strdup(req) : NULL;
	t->rec.job_url = strdup(job);
	t->rec.task_index = (unsigned)index;
	t->spec = TAKE_PTR(spec);
	r = jobspec_to_string(t->spec, &t->rec.spec_json);
	t->rec.artifact_json = art ? json_dumps(art, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (r < 0 || !t->rec.job_url || (req && !t->rec.request_id) ||
	    (art && !t->rec.artifact_json) || task_parse_doc(t, p) < 0) {
		task_free(t);
		r = -ENOMEM;
		goto out;
	}
	t->rec.desired = TASK_RUNNING;
	t->rec.from_manager = from_manager;
	t->rec.state = TASK_PENDING;
	set_reason(t, t->digest ? "fetching" : "starting");
	t->rec.exit_code = -1;
	t->rec.created_at = t->rec.updated_at = clock_real_usec();
	{
		char path[PATH_MAX];
		_cleanup_free_ char *data = event_data(t), *nbody = NULL;

		if (task_dir_path(m, t->rec.task_id, path, sizeof(path)) < 0 ||
		    (mkdir(path, 0700) < 0 && errno != EEXIST)) {
			r = -errno;
			task_free(t);
			problem_set(p, 500, NULL, "Internal Server Error");
			problem_set_detail(p, "cannot create the task directory");
			goto out;
		}
		if (m->cfg.notify && t->rec.from_manager)
			nbody = notify_body(m, t);
		r = state_task_insert(m->st, &t->rec, "created", data, nbody, NULL);
		if (r < 0) {
			task_free(t);
			(void)rmdir(path);
			problem_set(p, r == -EEXIST ? 409 : 500, NULL,
				    r == -EEXIST ? "Conflict" : "Internal Server Error");
			problem_set_detail(p, "cannot record the task: %s", strerror(-r));
			goto out;
		}
	}
	task_link(m, t);
	pthread_cond_broadcast(&m->events_cond);
	if (m->cfg.on_change)
		m->cfg.on_change(m->cfg.userdata);
	t->pending_since = clock_mono_usec();
	task_begin(m, t);
	arm_timer(m);
	task_write(w, t, false, NULL);
	memcpy(ret_task_id, t->rec.task_id, TASK_ID_BUF);
	r = 201;
out:
	pthread_mutex_unlock(&m->lock);
	jobspec_free(spec);
	return r;
}

/*
 * The usage of t's current cgroup for GetTaskState: the cached reading while it is fresh,
 * otherwise read now — with the lock dropped, so the file reads hold up no other request or
 * the supervisor. Returns the task again (NULL when it was deleted meanwhile) and sets
 * *ret_have when *ret holds a reading of the generation that task is in now.
 */
static struct task *task_usage(struct manager *m, struct task *t, struct runtime_usage *ret,
			       bool *ret_have)
{
	*ret_have = false;
	/* a generation that changes during the read is read again; twice is plenty */
	for (int attempt = 0; attempt < 3 && task_has_cgroup(t); attempt++) {
		char id[TASK_ID_BUF], name[CGNAME_MAX];
		unsigned generation = t->rec.generation;
		usec_t now = clock_mono_usec();
		int r;

		if (runtime_usage_cache_get(&t->usage, generation, now, ret)) {
			*ret_have = true;
			break;
		}
		memcpy(id, t->rec.task_id, sizeof(id));
		task_cg_name(t, name);
		pthread_mutex_unlock(&m->lock);
		r = runtime_usage_by_name(m->cgsys, m->cfg.cgroup_parent, name, ret);
		pthread_mutex_lock(&m->lock);
		t = find_task(m, id);
		if (!t)
			return NULL;
		if (r < 0) /* the cgroup is gone (the run ended) or unreadable: no usage */
			break;
		if (task_has_cgroup(t) && t->rec.generation == generation) {
			runtime_usage_cache_put(&t->usage, generation, now, ret);
			*ret_have = true;
			break;
		}
	}
	return t;
}

int manager_get_task(struct manager *m, const char *task_id, bool with_spec, struct jsonw *w)
{
	struct runtime_usage u;
	bool have_usage = false;
	struct task *t;

	pthread_mutex_lock(&m->lock);
	t = find_task(m, task_id);
	if (t && with_spec)
		t = task_usage(m, t, &u, &have_usage);
	if (t)
		task_write(w, t, with_spec, have_usage ? &u : NULL);
	pthread_mutex_unlock(&m->lock);
	return t ? 0 : -ENOENT;
}

int manager_list_tasks(struct manager *m, const char *job, const char *state, struct jsonw *w)
{
	enum task_state sf = TASK_PENDING;

	if (state && task_state_from_string(state, &sf) < 0)
		return -EINVAL;
	jsonw_object_begin(w);
	jsonw_key(w, "tasks");
	jsonw_array_begin(w);
	pthread_mutex_lock(&m->lock);
	for (struct task *t = m->tasks; t; t = t->next) {
		if (job && !streq(job, t->rec.job_url))
			continue;
		if (state && t->rec.state != sf)
			continue;
		task_write(w, t, false, NULL);
	}
	pthread_mutex_unlock(&m->lock);
	jsonw_array_end(w);
	jsonw_object_end(w);
	return 0;
}

int manager_set_state(struct manager *m, const char *task_id, const char *state, struct jsonw *w)
{
	enum task_state want;
	struct task *t;
	int r = 0;

	if (task_state_from_string(state, &want) < 0 || (want != TASK_DONE && want != TASK_RUNNING))
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	t = find_task(m, task_id);
	if (!t) {
		r = -ENOENT;
		goto out;
	}
	if (want == TASK_DONE) {
		bool changed = t->rec.desired != TASK_DONE;

		t->rec.desired = TASK_DONE;
		switch (t->phase) {
		case P_RUNNING:
			t->health_kill = false;
			shim_stop(t);
			if (changed)
				task_save(m, t, "stopping");
			break;
		case P_STOPPING:
			t->health_kill = false; /* now it is a stop on request */
			break;
		case P_LAUNCHING:
			/* task_launch() sees desired DONE once the shim is up and stops it */
			if (changed)
				task_save(m, t, "desired");
			break;
		case P_BACKOFF:
		case P_FETCHING:
		case P_IDLE:
			if (!task_is_final(t) || changed) {
				t->phase = P_IDLE;
				if (!task_is_final(t)) {
					t->rec.state = TASK_DONE;
					set_reason(t, "stopped");
					set_message(t, NULL);
					t->rec.finished_at = clock_real_usec();
				}
				task_save(m, t, task_is_final(t) ? "stopped" : "desired");
			}
			break;
		}
	} else {
		bool changed = t->rec.desired != TASK_RUNNING;

		t->rec.desired = TASK_RUNNING;
		if (t->phase == P_IDLE && task_is_final(t)) {
			t->streak = 0;
			t->pending_since = clock_mono_usec();
			t->rec.state = TASK_PENDING;
			set_reason(t, "starting");
			set_message(t, NULL);
			task_save(m, t, "starting");
			task_begin(m, t);
		} else if (changed)
			task_save(m, t, "desired");
	}
	arm_timer(m);
	task_write(w, t, false, NULL);
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int manager_delete_task(struct manager *m, const char *task_id)
{
	struct task *t, **pp;
	char path[PATH_MAX];
	int r;

	pthread_mutex_lock(&m->lock);
	for (pp = &m->tasks; *pp && !streq((*pp)->rec.task_id, task_id); pp = &(*pp)->next)
		;
	t = *pp;
	if (!t) {
		r = -ENOENT;
		goto out;
	}
	if (t->phase != P_IDLE || !task_is_final(t)) {
		r = -EBUSY;
		goto out;
	}
	r = state_task_delete(m->st, task_id, NULL);
	if (r < 0)
		goto out;
	if (t->pinned)
		(void)fetcher_unpin(m->fetcher, t->digest, NULL);
	if (task_dir_path(m, task_id, path, sizeof(path)) >= 0)
		(void)fs_rm_rf_at(AT_FDCWD, path);
	*pp = t->next;
	m->n_tasks--;
	task_free(t);
	pthread_cond_broadcast(&m->events_cond);
	r = 0;
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int manager_task_dir(struct manager *m, const char *task_id, char **ret)
{
	char path[PATH_MAX];
	int r = -ENOENT;

	pthread_mutex_lock(&m->lock);
	if (find_task(m, task_id) && task_dir_path(m, task_id, path, sizeof(path)) >= 0) {
		*ret = strdup(path);
		r = *ret ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

bool manager_task_active(struct manager *m, const char *task_id)
{
	struct task *t;
	bool active;

	pthread_mutex_lock(&m->lock);
	t = find_task(m, task_id);
	active = t && !(t->phase == P_IDLE && task_is_final(t));
	pthread_mutex_unlock(&m->lock);
	return active;
}

/* Sleep on events_cond until woken or deadline (monotonic). Called with the lock held. */
static void wait_until(struct manager *m, usec_t deadline)
{
	struct timespec ts = {
		.tv_sec = (time_t)(deadline / USEC_PER_SEC),
		.tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000,
	};

	pthread_cond_timedwait(&m->events_cond, &m->lock, &ts);
}

void manager_wake_waiters(struct manager *m)
{
	pthread_mutex_lock(&m->lock);
	pthread_cond_broadcast(&m->events_cond);
	pthread_mutex_unlock(&m->lock);
}

void manager_wait_change(struct manager *m, usec_t usec)
{
	pthread_mutex_lock(&m->lock);
	if (!m->stopping)
		wait_until(m, clock_mono_usec() + usec);
	pthread_mutex_unlock(&m->lock);
}

int manager_events(struct manager *m, uint64_t after, usec_t wait_usec, size_t limit,
		   bool (*stop)(void *), void *stop_data, json_t **ret)
{
	struct state_event *ev = NULL;
	size_t n = 0;
	uint64_t last = 0;
	usec_t deadline = clock_mono_usec() + wait_usec;
	json_t *a, *j;
	int r;

	pthread_mutex_lock(&m->lock);
	for (;;) {
		r = state_events_after(m->st, after, limit, &ev, &n);
		if (r < 0 || n > 0 || m->stopping || (stop && stop(stop_data)))
			break;
		state_event_array_free(ev, n);
		ev = NULL;
		if (clock_mono_usec() >= deadline)
			break;
		/* Woken by every task change and by manager_wake_waiters(): no polling, so a
		 * shutdown ends the wait at once instead of at the next poll. */
		wait_until(m, deadline);
	}
	if (r >= 0)
		r = state_events_last(m->st, &last);
	pthread_mutex_unlock(&m->lock);
	if (r < 0) {
		state_event_array_free(ev, n);
		return r;
	}
	a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		char ts[40];
		json_t *data = json_loads(ev[i].data ? ev[i].data : "{}", 0, NULL);

		json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:o}", "seq",
						   (json_int_t)ev[i].seq, "ts",
						   clock_format_rfc3339(ev[i].ts, ts, sizeof(ts)),
						   "task_id", ev[i].task_id, "type", ev[i].type,
						   "data", data ? data : json_object()));
	}
	state_event_array_free(ev, n);
	if (!a)
		return -ENOMEM;
	j = json_pack("{s:o, s:I}", "events", a, "last", (json_int_t)last);
	if (!j)
		return -ENOMEM;
	*ret = j;
	return 0;
}

int manager_metrics(struct manager *m, struct strbuf *out)
{
	unsigned by_state[_TASK_STATE_MAX] = { 0 };
	uint64_t outbox = 0;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	for (struct task *t = m->tasks; t; t = t->next)
		by_state[t->rec.state]++;
	(void)state_outbox_count(m->st, &outbox);
	/* The counters below start from 0 with every taskd: Prometheus's rate() handles that
	 * reset, and this gauge lets a dashboard show when it happened. */
	r |= strbuf_addf(out,
			 "# HELP taskd_start_time_seconds Start time of this taskd since the Unix "
			 "epoch; counters count from here.\n# TYPE taskd_start_time_seconds gauge\n"
			 "taskd_start_time_seconds %llu.%06llu\n",
			 (unsigned long long)(m->started_at / USEC_PER_SEC),
			 (unsigned long long)(m->started_at % USEC_PER_SEC));
	r |= strbuf_adds(out, "# HELP taskd_tasks Tasks on this host by state.\n"
			      "# TYPE taskd_tasks gauge\n");
	for (unsigned i = 0; i < _TASK_STATE_MAX; i++)
		r |= strbuf_addf(out, "taskd_tasks{state=\"%s\"} %u\n",
				 task_state_to_string((enum task_state)i), by_state[i]);
#define COUNTER(name, help, v)                                                                     \
	r |= strbuf_addf(out,                                                                      \
			 "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",     \
			 (unsigned long long)(v))
	COUNTER("taskd_task_starts_total", "Task processes started.", m->starts_total);
	COUNTER("taskd_task_restarts_total", "Restarts by the restart policy.", m->restarts_total);
	COUNTER("taskd_task_oom_kills_total", "Task runs ended by the OOM killer.",
		m->oom_kills_total);
	COUNTER("taskd_task_start_failures_total", "Launches that failed.",
		m->start_failures_total);
	COUNTER("taskd_health_check_failures_total", "Failed health probes.",
		m->health_failures_total);
	COUNTER("taskd_fetch_bytes_total", "Artifact bytes downloaded.", m->fetch_bytes_total);
	COUNTER("taskd_process_events_lost_total",
		"Per-process events (eBPF) dropped; exit reasons then rest on the shim record.",
		m->events_lost_total);
	COUNTER("taskd_state_write_errors_total", "Task changes the database refused (disk full?).",
		m->state_write_errors);
	COUNTER("taskd_notifications_delivered_total", "NotifyTaskState messages acknowledged.",
		m->notify_delivered);
	COUNTER("taskd_notifications_dropped_total", "Notifications refused permanently.",
		m->notify_dropped);
	COUNTER("taskd_notifications_coalesced_total",
		"Undelivered notifications replaced by a newer state of the same task.",
		state_outbox_coalesced(m->st));
#undef COUNTER
	r |= strbuf_addf(out,
			 "# HELP taskd_outbox_pending Notifications waiting for delivery (at most "
			 "one per task).\n"
			 "# TYPE taskd_outbox_pending gauge\ntaskd_outbox_pending %llu\n",
			 (unsigned long long)outbox);
	r |= strbuf_adds(out, "# HELP taskd_task_start_latency_seconds PutTask or restart to "
			      "RUNNING.\n# TYPE taskd_task_start_latency_seconds histogram\n");
	for (size_t i = 0; i < N_BUCKETS; i++)
		r |= strbuf_addf(out, "taskd_task_start_latency_seconds_bucket{le=\"%g\"} %llu\n",
				 latency_buckets[i], (unsigned long long)m->latency_counts[i]);
	r |= strbuf_addf(out,
			 "taskd_task_start_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
			 "taskd_task_start_latency_seconds_sum %.6f\n"
			 "taskd_task_start_latency_seconds_count %llu\n",
			 (unsigned long long)m->latency_counts[N_BUCKETS], m->latency_sum,
			 (unsigned long long)m->latency_count);
	pthread_mutex_unlock(&m->lock);
	return r < 0 ? -ENOMEM : 0;
}

json_t *manager_heartbeat_tasks(struct manager *m)
{
	json_t *a = json_array();

	pthread_mutex_lock(&m->lock);
	for (struct task *t = m->tasks; a && t; t = t->next)
		if (t->rec.from_manager)
			json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "task_id",
							   t->rec.task_id, "state",
							   task_state_to_string(t->rec.state),
							   "healthy", task_healthy(t)));
	pthread_mutex_unlock(&m->lock);
	return a;
}

void manager_reserved(struct manager *m, uint64_t *ret_millicpus, uint64_t *ret_memory_mb,
		      uint64_t *ret_storage_mb)
{
	uint64_t c = 0, mem = 0, s = 0;

	pthread_mutex_lock(&m->lock);
	for (struct task *t = m->tasks; t; t = t->next)
		if (!task_is_final(t)) {
			c += t->spec->reqs.millicpus;
			mem += t->spec->reqs.memory_mb;
			s += t->spec->reqs.storage.size_mb;
		}
	pthread_mutex_unlock(&m->lock);
	*ret_millicpus = c;
	*ret_memory_mb = mem;
	*ret_storage_mb = s;
}

int manager_outbox_due(struct manager *m, usec_t now, size_t limit, struct outbox_msg **ret,
		       size_t *ret_n)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = state_outbox_due(m->st, now, limit, ret, ret_n);
	pthread_mutex_unlock(&m->lock);
	return r;
}

int manager_outbox_ack(struct manager *m, uint64_t id)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = state_outbox_ack(m->st, id);
	pthread_mutex_unlock(&m->lock);
	return r;
}

int manager_outbox_retry(struct manager *m, uint64_t id, usec_t when)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = state_outbox_retry(m->st, id, when);
	pthread_mutex_unlock(&m->lock);
	return r;
}

void manager_count_notify(struct manager *m, bool delivered, bool dropped)
{
	pthread_mutex_lock(&m->lock);
	if (delivered)
		m->notify_delivered++;
	if (dropped)
		m->notify_dropped++;
	pthread_mutex_unlock(&m->lock);
}
