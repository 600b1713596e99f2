/* SPDX-License-Identifier: Apache-2.0 */
/*
 * manager.h — taskd's task manager: the in-memory task table over agent/state, the lifecycle
 * PENDING → RUNNING → DONE | ERROR with exact reasons, artifact fetch (fetcher/, pinned while
 * the task exists), launches through taskd-shim (agent/shim.c), restart policy with backoff,
 * health probes, stop with grace, and re-adoption of every task after a taskd restart.
 * Owns one supervisor thread (epoll over shim pidfds, probe pidfds and one timer) and one
 * thread per artifact fetch in flight. Every public function is thread-safe (one mutex); the
 * HTTP handlers call them from civetweb's worker threads.
 * Does not own HTTP, logging policy or the notification sender: JSON in, JSON out, -errno.
 * Task objects are written as text into the caller's api/jsonw writer (one JSON value each, only
 * on success; the caller checks jsonw_finish() for allocation failures).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/state.h"
#include "api/jsonw.h"
#include "api/problem.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/str.h"

struct manager;

struct manager_config {
	const char *state_dir;
	const char *cgroup_parent; /* "codedeploy" */
	const char *shim_path;	   /* absolute path of taskd-shim */
	const char *init_path;	   /* sandbox-init exec'd as each task's pid 1; NULL = in-process */
	const char *host_id;
	bool notify; /* a cluster manager is configured: transitions go to the outbox */
	uint64_t log_max_bytes;
	unsigned log_keep;
	unsigned log_line_max;
	unsigned restart_reset_s;
	unsigned max_tasks;
	uint64_t events_keep;
	uint64_t cache_max_bytes;
	uint32_t watch_ring_bytes; /* taskwatch's BPF ring buffer; 0 = its default */
	uint64_t default_pids_max; /* pids.max when the spec sets no reqs.pids_max; 0 = 4096 */
	const char *bridge_name;   /* bridge networking: host bridge; NULL = the sandbox's cdbr0 */
	const char *bridge_subnet; /* its IPv4 CIDR; NULL = the sandbox's 10.88.0.0/24 */
	char **mask;		   /* host paths tasks must not see; NULL-terminated, copied */
	/* Called (without the manager lock) for each new outbox message and each event; may be
	 * NULL. The notify sender uses it to wake up. */
	void (*on_change)(void *userdata);
	void *userdata;
};

/*
 * Open the manager over st (taken over: freed by manager_free), create <state_dir>/tasks and the
 * artifact cache, load every task and re-adopt it: live shims are watched again, tasks that
 * ended while taskd was down get their real exit status, vanished ones are marked, leftover
 * cgroups of dead shims are removed. Then start the supervisor thread.
 */
int manager_new(const struct manager_config *cfg, struct state *st, struct manager **ret,
		struct cd_error *err);
/* Stop the supervisor and fetch threads and free. Tasks keep running (their shims own them). */
void manager_free(struct manager *m);

/* Outcome of readoption, for the start-up log line. */
struct manager_adopt_stats {
	unsigned tasks, adopted, ended_while_down, lost, relaunched, orphan_cgroups;
	const char *watch_mode; /* "bpf", or why per-process events are off (static string) */
};
void manager_adopt_stats(struct manager *m, struct manager_adopt_stats *ret);

/*
 * PutTask. body is the protocol's {request_id?, task_id?, job, index?, spec, artifact?}.
 * from_manager: the cluster manager put it (its changes go to the outbox, it is in heartbeats).
 * Returns 201 (created), 200 (idempotent replay) with the task object written to w and its id in
 * ret_task_id; or -EINVAL with p filled (422/400), -EEXIST (409, task_id with another
 * request_id), -ENOSPC (max_tasks, 507), -ENOMEM.
 */
int manager_put_task(struct manager *m, const json_t *body, bool from_manager, struct jsonw *w,
		     char ret_task_id[static TASK_ID_BUF], struct problem *p);
/*
 * GetTaskState: the task object into w; with_spec adds its spec, artifact, app_dir and — while a
 * run is live — usage from its cgroup, a reading at most RUNTIME_USAGE_MAX_AGE_USEC (1 s) old
 * (agent/runtime.h; the cgroup files are read without the manager's lock). -ENOENT.
 */
int manager_get_task(struct manager *m, const char *task_id, bool with_spec, struct jsonw *w);
/* {"tasks": [...]} filtered by job URL and state (NULL = any) into w. -EINVAL for a bad state
 * name (nothing written). */
int manager_list_tasks(struct manager *m, const char *job, const char *state, struct jsonw *w);
/* SetTaskState: "DONE" stops, "RUNNING" starts; the task object into w. -ENOENT, -EINVAL (other
 * states). */
int manager_set_state(struct manager *m, const char *task_id, const char *state, struct jsonw *w);
/* Remove a finished task: -ENOENT, -EBUSY while it runs or is pending. */
int manager_delete_task(struct manager *m, const char *task_id);
/* Absolute path of a task's directory (holds console.log*). -ENOENT. */
int manager_task_dir(struct manager *m, const char *task_id, char **ret);
/* Is the task's shim still running (logs may still grow)? false for unknown tasks. */
bool manager_task_active(struct manager *m, const char *task_id);

/*
 * Events with seq > after: {"events": [...], "last": N}. Waits up to wait_usec for the first
 * one; stop (may be NULL) is checked each time the wait is woken — by a task change or by
 * manager_wake_waiters() — and ends it early. Nothing polls: whoever makes stop() true must
 * call manager_wake_waiters() afterwards.
 */
int manager_events(struct manager *m, uint64_t after, usec_t wait_usec, size_t limit,
		   bool (*stop)(void *), void *stop_data, json_t **ret);
/* Wake every manager_events() and manager_wait_change() waiter (they re-check their stop
 * condition). Thread-safe, never blocks for long. */
void manager_wake_waiters(struct manager *m);
/* Sleep up to usec or until a task changes or manager_wake_waiters() (log followers). */
void manager_wait_change(struct manager *m, usec_t usec);

/* Prometheus text exposition of taskd's metrics into out. */
int manager_metrics(struct manager *m, struct strbuf *out);

/* [{"task_id","state","healthy"}] of every task, for the heartbeat. */
json_t *manager_heartbeat_tasks(struct manager *m);
/* Resources reserved by tasks not in a final state (for the heartbeat's "free"). */
void manager_reserved(struct manager *m, uint64_t *ret_millicpus, uint64_t *ret_memory_mb,
		      uint64_t *ret_storage_mb);

/* Outbox access for the sender (serialised with the manager's writes). */
int manager_outbox_due(struct manager *m, usec_t now, size_t limit, struct outbox_msg **ret,
		       size_t *ret_n);
int manager_outbox_ack(struct manager *m, uint64_t id);
int manager_outbox_retry(struct manager *m, uint64_t id, usec_t when);
/* Notification counters for /metrics. */
void manager_count_notify(struct manager *m, bool delivered, bool dropped);
