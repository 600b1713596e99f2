/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cluster.h — the cluster manager of one zone: jobs (PutJob, SetJobState), hosts (heartbeat,
 * lost detection), task state reports (NotifyTaskState), and the controller that reconciles
 * desired with actual state: places tasks (sched.h), replaces failed ones, rolls out new
 * versions in batches and rolls back, and pushes PutTask / SetTaskState / DELETE to taskd.
 * Owns the policy; all state lives in the store (so a restarted deployd resumes where it
 * stopped). Does not own HTTP or JSON bodies of the REST API (cluster_http.c), nor the
 * transport of pushes (struct cluster_push_ops, wired to api/http_client in main.c).
 *
 * Job state (derived, see docs/central.md): PENDING until every slot has a RUNNING healthy task;
 * RUNNING then; ERROR when a slot cannot be satisfied (policy never, crash loop, failed first
 * rollout); DONE when stopped by SetJobState DONE (or every task completed). The reason says
 * why; rollout progress is in the job's `rollout` and reason.
 *
 * Thread-safety: every function may be called from any thread; cluster_tick() must run on one
 * thread at a time (the controller).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "api/jobspec.h"
#include "api/names.h"
#include "api/problem.h"
#include "central/store.h"
#include "lib/clock.h"
#include "lib/error.h"

struct cluster;

/*
 * Transport of pushes to one taskd at base URL addr. Each returns 0 on success, -ENOENT when
 * taskd answered 404, -EEXIST for 409, -EINVAL for 400/422 (permanent), other -errno to retry
 * later. put_task/set_task_state fill *ret_state (may be NULL) with the task's state from the
 * reply when there is one ("" otherwise).
 */
struct cluster_push_ops {
	int (*put_task)(void *data, const char *addr, const char *body, char ret_state[16],
			struct cd_error *err);
	int (*set_task_state)(void *data, const char *addr, const char *task_id, const char *state,
			      char ret_state[16], struct cd_error *err);
	int (*delete_task)(void *data, const char *addr, const char *task_id, struct cd_error *err);
};

struct cluster_config {
	const char *region, *zone;
	unsigned heartbeat_interval_s; /* told to taskd; default 5 */
	unsigned lost_after;	       /* missed intervals until LOST; default 3 */
	unsigned progress_deadline_s;  /* a new task must be healthy within this; default 300 */
	unsigned max_slot_failures;    /* replacements of one slot before ERROR; default 3 */
	unsigned stop_retry_s;	       /* re-send SetTaskState DONE after this; default 5 */
	const char *const *mirrors;    /* artifact base URLs for PutTask, NULL-terminated */
	bool require_if_match;	       /* updates without If-Match → 428 */
	usec_t (*now)(void);	       /* realtime clock; NULL = clock_real_usec (tests) */
	const struct cluster_push_ops *push;
	void *push_data;
};

int cluster_new(struct store *s, const struct cluster_config *cfg, struct cluster **ret,
		struct cd_error *err);
void cluster_free(struct cluster *c);

/* ---- API operations. Each records its change and an event in one transaction. Errors:
 * -ENOENT (404), -ESTALE If-Match mismatch (412), -EPERM If-Match required (428), -EEXIST
 * If-None-Match * on an existing job (412), -EINVAL (422, p holds the field errors),
 * -EXDEV the job is in another zone/region than this manager (404 with detail), others 500. */

struct cluster_rollout_opts {
	int max_unavailable; /* >= 1; 0 = keep the job's (default 1) */
	int min_healthy_s;   /* >= 0; -1 = keep the job's (default 0) */
	int auto_rollback;   /* 0/1; -1 = keep the job's (default 1) */
};

struct cluster_put_result {
	char job_id[32];
	int64_t version;
	bool created; /* new job */
	bool changed; /* new version (false: identical spec, no-op) */
};

int cluster_put_job(struct cluster *c, const char *actor, const struct job_url *url,
		    const struct jobspec *spec, const char *if_match, const char *if_none_match,
		    const struct cluster_rollout_opts *opts, struct cluster_put_result *ret,
		    struct problem *p);
/* desired: "RUNNING" or "DONE". *ret_version = current version. */
int cluster_set_job_state(struct cluster *c, const char *actor, const struct job_url *url,
			  const char *desired, const char *if_match, int64_t *ret_version,
			  struct problem *p);

/* Job (+ its live tasks) lookups for the REST layer; release with store_*_release. */
int cluster_get_job(struct cluster *c, const struct job_url *url, struct store_job *ret,
		    struct store_task **ret_tasks, size_t *ret_n, struct cd_error *err);

struct cluster_reported_task {
	char task_id[72];
	char state[16];
	bool healthy;
};

struct cluster_heartbeat {
	const char *host_id, *zone, *addr, *version;
	int vcpus;
	int64_t memory_mb, storage_mb;
	const char *free_json; /* may be NULL */
	const struct cluster_reported_task *tasks;
	size_t n_tasks;
};

/* Register/refresh a host and heal: returns the desired task set for the reply in
 * *ret_desired (store_task_list_free) and the heartbeat interval. */
int cluster_heartbeat(struct cluster *c, const char *actor, const struct cluster_heartbeat *hb,
		      struct store_task **ret_desired, size_t *ret_n, unsigned *ret_interval_s,
		      struct problem *p);

struct cluster_notify {
	const char *task_id, *host_id, *state; /* state: PENDING|RUNNING|DONE|ERROR */
	int64_t seq;
	const char *reason, *message; /* may be NULL */
	bool healthy;
	bool has_exit_code, has_signal;
	int exit_code, signal;
	int restarts;
};

/* Apply a NotifyTaskState; *ret_applied false for a replay (seq not newer). -ENOENT unknown
 * task (404), -EXDEV reported by a host the task is not placed on (410: taskd drops it). */
int cluster_notify(struct cluster *c, const char *actor, const struct cluster_notify *n,
		   bool *ret_applied, struct problem *p);

/*
 * One controller round: mark hosts that missed heartbeats LOST (their tasks ERROR host_lost),
 * reconcile every job of the zone (place, replace, roll, derive state) and push what taskd
 * must hear. Returns the number of pushes attempted (>= 0) or -errno for store failures (the
 * round is retried next time; nothing half-done is visible).
 */
int cluster_tick(struct cluster *c, struct cd_error *err);

/* Wake the controller (after an API change) and wait for a wake-up or timeout; returns 1 when
 * woken, 0 on timeout. */
void cluster_wake(struct cluster *c);
int cluster_wait(struct cluster *c, usec_t timeout);

/* Counters for /metrics. */
struct cluster_stats {
	uint64_t ticks, pushes_ok, pushes_failed, hosts_lost, tasks_placed, rollbacks;
};
void cluster_stats(struct cluster *c, struct cluster_stats *ret);
