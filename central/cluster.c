/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster manager policy over the store. Every decision is derived from stored rows on each
 * controller round (cluster_tick), so a deployd killed at any point resumes by recomputing;
 * only pacing (when a stop was last re-sent) and the orphan queue live in memory, and losing
 * them costs at most one extra push.
 */
#include "central/cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/json.h"
#include "central/sched.h"
#include "lib/id.h"
#include "lib/macro.h"
#include "lib/str.h"

#define ACTOR_CONTROLLER "deployd"

struct orphan {
	char addr[256];
	char task_id[72];
};

struct stop_mark {
	char task_id[32];
	usec_t at;
};

struct cluster {
	struct store *store;
	struct cluster_config cfg;
	char *region, *zone;
	char **mirrors;

	pthread_mutex_t lock; /* wake flag, orphans, stop marks, stats */
	pthread_cond_t cond;
	bool woken;
	struct orphan *orphans;
	size_t n_orphans;
	struct stop_mark *stops;
	size_t n_stops;
	struct cluster_stats stats;
	usec_t started_at; /* lost-host grace after a (re)start */
};

static usec_t now_usec(const struct cluster *c)
{
	return c->cfg.now ? c->cfg.now() : clock_real_usec();
}

static bool state_terminal(const char *s)
{
	return streq(s, "DONE") || streq(s, "ERROR");
}

static bool state_valid(const char *s)
{
	return s && (streq(s, "PENDING") || streq(s, "RUNNING") || streq(s, "DONE") ||
		     streq(s, "ERROR"));
}

static void set_str(char **dst, const char *src)
{
	char *n = src ? strdup(src) : NULL;

	/* On ENOMEM the field is cleared: a reason is informational, never a decision input
	 * (the decisions use state, not reason text, except the replace rules, which treat an
	 * unknown reason conservatively). */
	free(*dst);
	*dst = n;
}

static void stat_add(struct cluster *c, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&c->lock);
	*field += n;
	pthread_mutex_unlock(&c->lock);
}

int cluster_new(struct store *s, const struct cluster_config *cfg, struct cluster **ret,
		struct cd_error *err)
{
	struct cluster *c;
	size_t n = 0;

	if (!cfg->region || !cfg->zone || !cfg->push)
		return cd_error_set(err, -EINVAL, "cluster needs region, zone and push ops");
	c = calloc(1, sizeof(*c));
	if (!c)
		return cd_error_set(err, -ENOMEM, "out of memory");
	c->store = s;
	c->cfg = *cfg;
	if (!c->cfg.heartbeat_interval_s)
		c->cfg.heartbeat_interval_s = 5;
	if (!c->cfg.lost_after)
		c->cfg.lost_after = 3;
	if (!c->cfg.progress_deadline_s)
		c->cfg.progress_deadline_s = 300;
	if (!c->cfg.max_slot_failures)
		c->cfg.max_slot_failures = 3;
	if (!c->cfg.stop_retry_s)
		c->cfg.stop_retry_s = 5;
	c->region = strdup(cfg->region);
	c->zone = strdup(cfg->zone);
	for (const char *const *m = cfg->mirrors; m && *m; m++)
		n++;
	c->mirrors = calloc(n + 1, sizeof(char *));
	if (!c->region || !c->zone || !c->mirrors) {
		cluster_free(c);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		c->mirrors[i] = strdup(cfg->mirrors[i]);
		if (!c->mirrors[i]) {
			cluster_free(c);
			return cd_error_set(err, -ENOMEM, "out of memory");
		}
	}
	c->cfg.mirrors = (const char *const *)c->mirrors;
	c->cfg.region = c->region;
	c->cfg.zone = c->zone;
	c->started_at = now_usec(c);
	pthread_mutex_init(&c->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	*ret = c;
	return 0;
}

void cluster_free(struct cluster *c)
{
	if (!c)
		return;
	free(c->region);
	free(c->zone);
	strv_free(c->mirrors);
	free(c->orphans);
	free(c->stops);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void cluster_wake(struct cluster *c)
{
	pthread_mutex_lock(&c->lock);
	c->woken = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int cluster_wait(struct cluster *c, usec_t timeout)
{
	struct timespec ts = clock_timespec_after(CLOCK_MONOTONIC, timeout);
	int woken;

	pthread_mutex_lock(&c->lock);
	while (!c->woken)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) != 0)
			break;
	woken = c->woken;
	c->woken = false;
	pthread_mutex_unlock(&c->lock);
	return woken ? 1 : 0;
}

void cluster_stats(struct cluster *c, struct cluster_stats *ret)
{
	pthread_mutex_lock(&c->lock);
	*ret = c->stats;
	pthread_mutex_unlock(&c->lock);
}

/* ---- small helpers over rows ---------------------------------------------------------------- */

static void job_url_of(const struct store_job *j, char *buf, size_t size)
{
	snprintf(buf, size, "job://%s/%s/%s", j->region, j->zone, j->name);
}

static void task_url_of(const struct store_job *j, const char *task_id, char *buf, size_t size)
{
	snprintf(buf, size, "task://%s/%s/%s/%s", j->region, j->zone, j->name, task_id);
}

static int event_json(struct cluster *c, const char *actor, const char *kind, const char *subject,
		      json_t *data, struct cd_error *err)
{
	_cleanup_free_ char *text = data ? json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	int r;

	json_decref(data);
	r = store_event_append(c->store, actor, kind, subject, text, NULL, err);
	return r;
}

static int parse_etag(const char *s, int64_t *ret)
{
	char buf[32];
	size_t n;
	uint64_t v;

	if (startswith(s, "W/"))
		s += 2;
	n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		if (n - 2 >= sizeof(buf))
			return -EINVAL;
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = '\0';
		s = buf;
	}
	if (parse_u64(s, &v) < 0 || v > INT64_MAX)
		return -EINVAL;
	*ret = (int64_t)v;
	return 0;
}

/* If-Match against the job's version: NULL passes; "*" passes when the job exists. Returns 0
 * or -ESTALE. A list ("1", "2") is accepted too (RFC 9110). */
static int check_if_match(const char *if_match, const struct store_job *j)
{
	_cleanup_free_ char *copy = NULL;
	char *save = NULL;

	if (!if_match)
		return 0;
	if (!j)
		return -ESTALE;
	if (streq(if_match, "*"))
		return 0;
	copy = strdup(if_match);
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		int64_t v;

		if (parse_etag(tok, &v) >= 0 && v == j->version)
			return 0;
	}
	return -ESTALE;
}

/* ---- PutJob / SetJobState ------------------------------------------------------------------- */

static int check_url_zone(struct cluster *c, const struct job_url *url, struct problem *p)
{
	if (!streq(url->zone, c->zone) || !streq(url->region, c->region)) {
		problem_set(p, 404, NULL, "Not Found");
		problem_set_detail(p, "this cluster manager serves %s/%s, not %s/%s", c->region,
				   c->zone, url->region, url->zone);
		return -EXDEV;
	}
	return 0;
}

static void apply_opts(struct store_job *j, const struct cluster_rollout_opts *o)
{
	if (!o)
		return;
	if (o->max_unavailable > 0)
		j->max_unavailable = o->max_unavailable;
	if (o->min_healthy_s >= 0)
		j->min_healthy_s = o->min_healthy_s;
	if (o->auto_rollback >= 0)
		j->auto_rollback = o->auto_rollback;
}

static int store_problem(struct problem *p, int r, const struct cd_error *err)
{
	problem_set(p, 500, NULL, "Internal Server Error");
	problem_set_detail(p, "%s", cd_error_message(err));
	return r;
}

int cluster_put_job(struct cluster *c, const char *actor, const struct job_url *url,
		    const struct jobspec *spec, const char *if_match, const char *if_none_match,
		    const struct cluster_rollout_opts *opts, struct cluster_put_result *ret,
		    struct problem *p)
{
	_cleanup_free_ char *text = NULL;
	char hash[JOBSPEC_HASH_LEN + 1], urlbuf[512];
	struct store_job cur = {};
	struct cd_error err = {};
	bool exists;
	int r;

	r = check_url_zone(c, url, p);
	if (r < 0)
		return r;
	if (!streq(spec->name, url->name))
		problem_add_error(p, "/name", "must equal the job name in the URL (%s)", url->name);
	if (spec->zones && spec->zones[0]) {
		bool found = false;

		for (char **z = spec->zones; *z; z++)
			found = found || streq(*z, c->zone);
		if (!found)
			problem_add_error(p, "/zones", "does not include this cluster's zone %s",
					  c->zone);
	}
	if (spec->target.commit[0]) {
		char target[TARGET_MAX_LEN + 1];
		struct store_artifact a = {};

		target_format(&spec->target.target, target, sizeof(target));
		r = store_artifact_get(c->store, target, spec->target.commit, &a, &err);
		if (r == -ENOENT)
			problem_add_error(p, "/target", "%s@%s is not in the artifact index",
					  target, spec->target.commit);
		else if (r < 0)
			return store_problem(p, r, &err);
		store_artifact_release(&a);
	}
	r = api_json_finish_validation(p);
	if (r < 0)
		return r;

	r = jobspec_to_string(spec, &text);
	if (r >= 0)
		r = jobspec_hash(spec, hash);
	if (r < 0) {
		problem_set(p, 500, NULL, "Internal Server Error");
		return r;
	}

	r = store_begin(c->store, &err);
	if (r < 0)
		return store_problem(p, r, &err);
	r = store_job_get(c->store, url->zone, url->name, &cur, &err);
	if (r < 0 && r != -ENOENT)
		goto fail_store;
	exists = r >= 0;
	cd_error_reset(&err);

	if (exists && if_none_match && streq(if_none_match, "*")) {
		r = -EEXIST;
		problem_set(p, 412, NULL, "Precondition Failed");
		problem_set_detail(p, "job exists (version %lld)", (long long)cur.version);
		goto fail;
	}
	r = check_if_match(if_match, exists ? &cur : NULL);
	if (r < 0) {
		problem_set(p, 412, NULL, "Precondition Failed");
		if (exists)
			problem_set_detail(p,
					   "If-Match does not match the current version \"%lld\"",
					   (long long)cur.version);
		else
			problem_set_detail(p, "If-Match given but the job does not exist");
		r = -ESTALE;
		goto fail;
	}
	if (exists && c->cfg.require_if_match && !if_match) {
		r = -EPERM;
		problem_set(p, 428, NULL, "Precondition Required");
		problem_set_detail(p, "updating a job needs If-Match: \"%lld\"",
				   (long long)cur.version);
		goto fail;
	}

	job_url_of(exists ? &cur : &(struct store_job){}, urlbuf, sizeof(urlbuf));
	if (!exists) {
		struct store_job j = {};

		id_new(j.job_id);
		snprintf(j.region, sizeof(j.region), "%s", url->region);
		snprintf(j.zone, sizeof(j.zone), "%s", url->zone);
		snprintf(j.name, sizeof(j.name), "%s", url->name);
		j.version = 1;
		j.spec = text;
		snprintf(j.spec_hash, sizeof(j.spec_hash), "%s", hash);
		strcpy(j.desired, "RUNNING");
		strcpy(j.state, "PENDING");
		strcpy(j.rollout, "rolling");
		j.max_unavailable = 1;
		j.auto_rollback = true;
		apply_opts(&j, opts);
		j.updated_by = (char *)actor;
		j.created_at = j.updated_at = now_usec(c);
		r = store_job_insert(c->store, &j, &err);
		if (r < 0)
			goto fail_store;
		job_url_of(&j, urlbuf, sizeof(urlbuf));
		r = event_json(c, actor, "job.put", urlbuf,
			       json_pack("{s:s, s:I, s:s, s:b}", "job_id", j.job_id, "version",
					 (json_int_t)1, "spec_hash", hash, "created", 1),
			       &err);
		if (r < 0)
			goto fail_store;
		memcpy(ret->job_id, j.job_id, sizeof(ret->job_id));
		ret->version = 1;
		ret->created = ret->changed = true;
	} else {
		bool same = streq(cur.spec_hash, hash);
		struct store_job j = cur;
		bool was_done = streq(cur.desired, "DONE");

		apply_opts(&j, opts);
		if (!same) {
			j.version = cur.version + 1;
			j.spec = text;
			snprintf(j.spec_hash, sizeof(j.spec_hash), "%s", hash);
			strcpy(j.rollout, "rolling");
			j.rollout_reason = NULL;
		}
		strcpy(j.desired, "RUNNING");
		j.updated_by = (char *)actor;
		j.updated_at = now_usec(c);
		if (!same || was_done || j.max_unavailable != cur.max_unavailable ||
		    j.min_healthy_s != cur.min_healthy_s || j.auto_rollback != cur.auto_rollback) {
			r = store_job_update(c->store, &j, &err);
			if (r < 0)
				goto fail_store;
			r = event_json(c, actor, same ? "job.update" : "job.put", urlbuf,
				       json_pack("{s:s, s:I, s:s, s:b}", "job_id", j.job_id,
						 "version", (json_int_t)j.version, "spec_hash",
						 j.spec_hash, "created", 0),
				       &err);
			if (r < 0)
				goto fail_store;
		}
		memcpy(ret->job_id, cur.job_id, sizeof(ret->job_id));
		ret->version = j.version;
		ret->created = false;
		ret->changed = !same;
	}
	r = store_commit(c->store, &err);
	store_job_release(&cur);
	if (r < 0)
		return store_problem(p, r, &err);
	cluster_wake(c);
	return 0;

fail_store:
	store_problem(p, r, &err);
fail:
	store_rollback(c->store);
	store_job_release(&cur);
	return r;
}

int cluster_set_job_state(struct cluster *c, const char *actor, const struct job_url *url,
			  const char *desired, const char *if_match, int64_t *ret_version,
			  struct problem *p)
{
	struct store_job cur = {};
	struct cd_error err = {};
	char urlbuf[512];
	int r;

	r = check_url_zone(c, url, p);
	if (r < 0)
		return r;
	if (!desired || (!streq(desired, "RUNNING") && !streq(desired, "DONE"))) {
		problem_add_error(p, "/state", "must be \"RUNNING\" or \"DONE\"");
		return api_json_finish_validation(p);
	}
	r = store_begin(c->store, &err);
	if (r < 0)
		return store_problem(p, r, &err);
	r = store_job_get(c->store, url->zone, url->name, &cur, &err);
	if (r == -ENOENT) {
		problem_set(p, 404, NULL, "Not Found");
		problem_set_detail(p, "no job %s in %s", url->name, url->zone);
		goto fail;
	}
	if (r < 0) {
		store_problem(p, r, &err);
		goto fail;
	}
	r = check_if_match(if_match, &cur);
	if (r < 0) {
		problem_set(p, 412, NULL, "Precondition Failed");
		problem_set_detail(p, "If-Match does not match the current version \"%lld\"",
				   (long long)cur.version);
		r = -ESTALE;
		goto fail;
	}
	if (!streq(cur.desired, desired)) {
		strcpy(cur.desired, desired);
		cur.updated_at = now_usec(c);
		set_str(&cur.updated_by, actor);
		r = store_job_update(c->store, &cur, &err);
		if (r >= 0) {
			job_url_of(&cur, urlbuf, sizeof(urlbuf));
			r = event_json(c, actor, "job.desired", urlbuf,
				       json_pack("{s:s, s:I}", "desired", desired, "version",
						 (json_int_t)cur.version),
				       &err);
		}
		if (r < 0) {
			store_problem(p, r, &err);
			goto fail;
		}
	}
	r = store_commit(c->store, &err);
	*ret_version = cur.version;
	store_job_release(&cur);
	if (r < 0)
		return store_problem(p, r, &err);
	cluster_wake(c);
	return 0;
fail:
	store_rollback(c->store);
	store_job_release(&cur);
	return r;
}

int cluster_get_job(struct cluster *c, const struct job_url *url, struct store_job *ret,
		    struct store_task **ret_tasks, size_t *ret_n, struct cd_error *err)
{
	struct store_task_filter f = { .live_only = true };
	struct store_job j = {};
	int r;

	if (!streq(url->zone, c->zone) || !streq(url->region, c->region))
		return -ENOENT;
	/* One snapshot: the tasks belong to the job version returned. */
	r = store_read_begin(c->store, err);
	if (r < 0)
		return r;
	r = store_job_get(c->store, url->zone, url->name, &j, err);
	if (r >= 0 && ret_tasks) {
		f.job_id = j.job_id;
		r = store_task_list(c->store, &f, ret_tasks, ret_n, err);
		if (r < 0)
			store_job_release(&j);
	}
	store_read_end(c->store);
	if (r < 0)
		return r;
	*ret = j;
	return 0;
}

/* ---- heartbeat / notify --------------------------------------------------------------------- */

static void queue_orphan(struct cluster *c, const char *addr, const char *task_id)
{
	struct orphan *n;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_orphans; i++)
		if (streq(c->orphans[i].task_id, task_id))
			goto out;
	if (c->n_orphans >= 4096) /* bounded: the next heartbeat re-reports what is dropped */
		goto out;
	n = reallocarray(c->orphans, c->n_orphans + 1, sizeof(*n));
	if (!n)
		goto out;
	c->orphans = n;
	snprintf(n[c->n_orphans].addr, sizeof(n->addr), "%s", addr);
	snprintf(n[c->n_orphans].task_id, sizeof(n->task_id), "%s", task_id);
	c->n_orphans++;
out:
	pthread_mutex_unlock(&c->lock);
}

int cluster_heartbeat(struct cluster *c, const char *actor, const struct cluster_heartbeat *hb,
		      struct store_task **ret_desired, size_t *ret_n, unsigned *ret_interval_s,
		      struct problem *p)
{
	struct store_task_filter f = { .host_id = hb->host_id, .live_only = true };
	struct store_task *tasks = NULL;
	struct store_host cur = {}, h = {};
	struct cd_error err = {};
	size_t n = 0;
	bool was_lost = false, known;
	usec_t now = now_usec(c);
	int r;

	if (!streq(hb->zone, c->zone)) {
		problem_add_error(p, "/zone", "this cluster manager serves zone %s", c->zone);
		return api_json_finish_validation(p);
	}
	r = store_begin(c->store, &err);
	if (r < 0)
		return store_problem(p, r, &err);
	r = store_host_get(c->store, hb->host_id, &cur, &err);
	if (r < 0 && r != -ENOENT)
		goto fail;
	known = r >= 0;
	cd_error_reset(&err);
	was_lost = known && streq(cur.state, "LOST");
	snprintf(h.host_id, sizeof(h.host_id), "%s", hb->host_id);
	snprintf(h.zone, sizeof(h.zone), "%s", hb->zone);
	snprintf(h.addr, sizeof(h.addr), "%s", hb->addr);
	snprintf(h.version, sizeof(h.version), "%s", hb->version ?: "");
	strcpy(h.state, "READY");
	h.vcpus = hb->vcpus;
	h.memory_mb = hb->memory_mb;
	h.storage_mb = hb->storage_mb;
	h.free_json = (char *)hb->free_json;
	h.registered_at = now;
	h.last_heartbeat = now;
	r = store_host_upsert(c->store, &h, &err);
	if (r >= 0 && (!known || was_lost))
		r = event_json(c, actor, known ? "host.ready" : "host.register", hb->host_id,
			       json_pack("{s:s, s:i, s:I, s:I}", "addr", hb->addr, "vcpus",
					 hb->vcpus, "memory_mb", (json_int_t)hb->memory_mb,
					 "storage_mb", (json_int_t)hb->storage_mb),
			       &err);
	if (r >= 0)
		r = store_task_list(c->store, &f, &tasks, &n, &err);
	if (r < 0)
		goto fail;

	/* Heal: a task we pushed that the host does not hold was lost on the way (or the host
	 * lost its state): push it again. */
	for (size_t i = 0; i < n; i++) {
		struct store_task *t = &tasks[i];
		bool reported = false;

		for (size_t k = 0; k < hb->n_tasks && !reported; k++)
			reported = streq(hb->tasks[k].task_id, t->task_id);
		if (!reported && t->pushed && streq(t->desired, "RUNNING") &&
		    !state_terminal(t->state)) {
			t->pushed = false;
			t->updated_at = now;
			r = store_task_update(c->store, t, &err);
			if (r < 0)
				goto fail;
		}
	}
	r = store_commit(c->store, &err);
	if (r < 0) {
		store_task_list_free(tasks, n);
		store_host_release(&cur);
		return store_problem(p, r, &err);
	}

	/* Tasks the host holds that we do not want there: stop and delete them (outside the
	 * transaction; the controller does the calls). */
	for (size_t k = 0; k < hb->n_tasks; k++) {
		bool wanted = false;

		for (size_t i = 0; i < n && !wanted; i++)
			wanted = streq(hb->tasks[k].task_id, tasks[i].task_id);
		if (!wanted)
			queue_orphan(c, hb->addr, hb->tasks[k].task_id);
	}
	store_host_release(&cur);
	*ret_desired = tasks;
	*ret_n = n;
	*ret_interval_s = c->cfg.heartbeat_interval_s;
	if (!known || was_lost || hb->n_tasks != n)
		cluster_wake(c);
	return 0;
fail:
	store_rollback(c->store);
	store_task_list_free(tasks, n);
	store_host_release(&cur);
	return store_problem(p, r, &err);
}

int cluster_notify(struct cluster *c, const char *actor, const struct cluster_notify *n,
		   bool *ret_applied, struct problem *p)
{
	struct store_task t = {};
	struct store_job j = {};
	struct cd_error err = {};
	char urlbuf[512];
	usec_t now = now_usec(c);
	int r;

	if (!state_valid(n->state)) {
		problem_add_error(p, "/state", "must be PENDING, RUNNING, DONE or ERROR");
		return api_json_finish_validation(p);
	}
	r = store_begin(c->store, &err);
	if (r < 0)
		return store_problem(p, r, &err);
	r = store_task_get(c->store, n->task_id, &t, &err);
	if (r == -ENOENT) {
		problem_set(p, 404, NULL, "Not Found");
		problem_set_detail(p, "no task %s", n->task_id);
		goto fail;
	}
	if (r >= 0)
		r = store_job_get_by_id(c->store, t.job_id, &j, &err);
	if (r < 0) {
		store_problem(p, r, &err);
		goto fail;
	}
	if (!streq(j.zone, c->zone)) {
		r = -ENOENT;
		problem_set(p, 404, NULL, "Not Found");
		problem_set_detail(p, "task %s is not in zone %s", n->task_id, c->zone);
		goto fail;
	}
	if (!streq(t.host_id, n->host_id)) {
		/* 410, not 409: taskd drops the message instead of retrying it forever (which
		 * would hold back the task's later messages). */
		r = -EXDEV;
		problem_set(p, 410, NULL, "Gone");
		problem_set_detail(p, "task %s is placed on %s, not %s", n->task_id, t.host_id,
				   n->host_id);
		goto fail;
	}
	if (n->seq <= t.last_seq) {
		*ret_applied = false;
		store_rollback(c->store);
		store_task_release(&t);
		store_job_release(&j);
		return 0;
	}
	if (!t.removed) {
		if (!streq(t.state, n->state))
			t.state_since = now;
		snprintf(t.state, sizeof(t.state), "%s", n->state);
		set_str(&t.reason, n->reason);
		set_str(&t.message, n->message);
		if (n->healthy && streq(n->state, "RUNNING")) {
			if (!t.healthy || !t.healthy_since)
				t.healthy_since = now;
			t.healthy = true;
		} else {
			t.healthy = false;
			t.healthy_since = 0;
		}
		t.has_exit_code = n->has_exit_code;
		t.exit_code = n->exit_code;
		t.has_signal = n->has_signal;
		t.signal = n->signal;
		t.restarts = n->restarts;
		t.pushed = true; /* taskd holds it, whatever happened to the PutTask reply */
	}
	t.last_seq = n->seq;
	t.updated_at = now;
	r = store_task_update(c->store, &t, &err);
	if (r >= 0) {
		task_url_of(&j, t.task_id, urlbuf, sizeof(urlbuf));
		r = event_json(c, actor, "task.state", urlbuf,
			       json_pack("{s:s, s:s?, s:b, s:i, s:s, s:I}", "state", n->state,
					 "reason", n->reason, "healthy", n->healthy, "restarts",
					 n->restarts, "host_id", n->host_id, "seq",
					 (json_int_t)n->seq),
			       &err);
	}
	if (r >= 0)
		r = store_commit(c->store, &err);
	else
		store_rollback(c->store);
	store_task_release(&t);
	store_job_release(&j);
	if (r < 0)
		return store_problem(p, r, &err);
	*ret_applied = true;
	cluster_wake(c);
	return 0;
fail:
	store_rollback(c->store);
	store_task_release(&t);
	store_job_release(&j);
	return r;
}

/* ---- monitor ------------------------------------------------------------------------------- */

static int monitor_hosts(struct cluster *c, usec_t now, struct cd_error *err)
{
	usec_t limit = (usec_t)c->cfg.lost_after * c->cfg.heartbeat_interval_s * USEC_PER_SEC;
	struct store_host *hosts = NULL;
	size_t n = 0;
	int r;

	r = store_host_list(c->store, c->zone, NULL, 0, &hosts, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n && r >= 0; i++) {
		struct store_host *h = &hosts[i];
		struct store_task_filter f = { .host_id = h->host_id, .live_only = true };
		struct store_task *tasks = NULL;
		size_t nt = 0;

		/* Count missed heartbeats from our own start at the earliest: after deployd was
		 * down, every host's last heartbeat is old, and that is not the hosts' fault. */
		if (!streq(h->state, "READY") ||
		    MAX(h->last_heartbeat, c->started_at) + limit > now)
			continue;
		r = store_begin(c->store, err);
		if (r < 0)
			break;
		r = store_host_set_state(c->store, h->host_id, "LOST", err);
		if (r >= 0)
			r = event_json(c, ACTOR_CONTROLLER, "host.lost", h->host_id,
				       json_pack("{s:I}", "missed_heartbeats",
						 (json_int_t)c->cfg.lost_after),
				       err);
		if (r >= 0)
			r = store_task_list(c->store, &f, &tasks, &nt, err);
		for (size_t k = 0; k < nt && r >= 0; k++) {
			struct store_task *t = &tasks[k];
			struct store_job j = {};
			char urlbuf[512];

			if (!state_terminal(t->state)) {
				strcpy(t->state, "ERROR");
				set_str(&t->reason, "host_lost");
				set_str(&t->message, "host missed its heartbeats");
				t->state_since = now;
			}
			strcpy(t->desired, "DONE");
			t->healthy = false;
			t->healthy_since = 0;
			/* No taskd to talk to: the row leaves the live set now; if the host comes
			 * back, its heartbeat reports the task and it is stopped as an orphan. */
			t->removed = true;
			t->updated_at = now;
			r = store_task_update(c->store, t, err);
			if (r >= 0)
				r = store_job_get_by_id(c->store, t->job_id, &j, err);
			if (r >= 0) {
				task_url_of(&j, t->task_id, urlbuf, sizeof(urlbuf));
				r = event_json(c, ACTOR_CONTROLLER, "task.state", urlbuf,
					       json_pack("{s:s, s:s, s:s}", "state", "ERROR",
							 "reason", "host_lost", "host_id",
							 h->host_id),
					       err);
			}
			store_job_release(&j);
		}
		store_task_list_free(tasks, nt);
		if (r >= 0)
			r = store_commit(c->store, err);
		else
			store_rollback(c->store);
		if (r >= 0)
			stat_add(c, &c->stats.hosts_lost, 1);
	}
	store_host_list_free(hosts, n);
	return r;
}

/* ---- reconcile one job ---------------------------------------------------------------------- */

enum outcome {
	OUT_LIVE,      /* not terminal */
	OUT_WAIT,      /* terminal, taskd may still restart it */
	OUT_COMPLETED, /* exited 0, not to be restarted */
	OUT_REPLACE,   /* replace with a new task */
	OUT_FINAL,     /* failed, policy never: the slot is failed */
};

static bool reason_is(const struct store_task *t, const char *r)
{
	return t->reason && streq(t->reason, r);
}

static enum outcome task_outcome(const struct cluster *c, const struct jobspec *spec,
				 const struct store_task *t, usec_t now)
{
	usec_t grace = ((usec_t)spec->restart.max_backoff_s + 2 * c->cfg.heartbeat_interval_s + 5) *
		       USEC_PER_SEC;

	if (!state_terminal(t->state))
		return OUT_LIVE;
	if (streq(t->state, "DONE")) {
		if (spec->restart.policy != JOBSPEC_RESTART_ALWAYS)
			return OUT_COMPLETED;
		return now >= t->state_since + grace ? OUT_REPLACE : OUT_WAIT;
	}
	/* ERROR. Failures that are about the host, not the program: try elsewhere now. */
	if (reason_is(t, "host_lost") || reason_is(t, "fetch_failed") ||
	    reason_is(t, "start_failed") || reason_is(t, "rejected"))
		return OUT_REPLACE;
	if (spec->restart.policy == JOBSPEC_RESTART_NEVER)
		return OUT_FINAL;
	/* taskd restarts it in place with backoff; if it stays down longer than the longest
	 * backoff, taskd gave up. */
	return now >= t->state_since + grace ? OUT_REPLACE : OUT_WAIT;
}

static bool healthy_for(const struct store_job *j, const struct store_task *t, usec_t now)
{
	return streq(t->state, "RUNNING") && t->healthy && t->healthy_since &&
	       now >= t->healthy_since + (usec_t)j->min_healthy_s * USEC_PER_SEC;
}

struct zone_view {
	struct store_host *hosts;
	size_t n_hosts;
	struct store_task *tasks; /* live tasks of the zone */
	size_t n_tasks;
};

static void zone_view_release(struct zone_view *z)
{
	store_host_list_free(z->hosts, z->n_hosts);
	store_task_list_free(z->tasks, z->n_tasks);
	memset(z, 0, sizeof(*z));
}

static int zone_view_load(struct cluster *c, struct zone_view *z, struct cd_error *err)
{
	struct store_task_filter f = { .zone = c->zone, .live_only = true };
	int r;

	r = store_host_list(c->store, c->zone, NULL, 0, &z->hosts, &z->n_hosts, err);
	if (r >= 0)
		r = store_task_list(c->store, &f, &z->tasks, &z->n_tasks, err);
	if (r < 0)
		zone_view_release(z);
	return r;
}

/* "[8080, 9090]" → ports; ignores anything unexpected (the column is ours). */
static size_t parse_ports(const char *json, uint16_t *out, size_t max)
{
	json_t *a = json ? json_loads(json, 0, NULL) : NULL;
	size_t n = 0, i;
	json_t *v;

	if (json_is_array(a)) {
		json_array_foreach(a, i, v) {
			json_int_t p = json_is_integer(v) ? json_integer_value(v) : 0;

			if (n < max && p > 0 && p <= 65535)
				out[n++] = (uint16_t)p;
		}
	}
	json_decref(a);
	return n;
}

static bool spec_uses_host_ports(const struct jobspec *spec)
{
	return spec->reqs.networking.mode == JOBSPEC_NET_HOST ||
	       spec->reqs.networking.mode == JOBSPEC_NET_BRIDGE;
}

/* Place one new task for slot idx of job j; returns 0 with the new row inserted, -ENOSPC with
 * reason filled, or a store error. */
static int place_task(struct cluster *c, const struct store_job *j, const struct jobspec *spec,
		      int idx, const char *avoid_host, struct zone_view *z, usec_t now,
		      char *reason, size_t reason_size, struct cd_error *err)
{
	struct sched_host *sh = calloc(z->n_hosts ?: 1, sizeof(*sh));
	uint16_t(*ports)[SCHED_MAX_PORTS] = calloc(z->n_hosts ?: 1, sizeof(*ports));
	uint16_t want[JOBSPEC_MAX_PORTS];
	struct sched_request req = {};
	struct sched_verdict v;
	struct store_task t = {};
	struct strbuf pj = STRBUF_INIT;
	char urlbuf[512];
	int pick, r;

	if (!sh || !ports) {
		free(sh);
		free(ports);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	req.millicpus = spec->reqs.millicpus;
	req.memory_mb = spec->reqs.memory_mb;
	req.storage_mb = spec->reqs.storage.size_mb;
	if (spec_uses_host_ports(spec)) {
		for (size_t i = 0; i < spec->reqs.networking.n_ports && i < JOBSPEC_MAX_PORTS; i++)
			want[req.n_ports++] = spec->reqs.networking.ports[i].port;
		req.ports = want;
	}
	for (size_t i = 0; i < z->n_hosts; i++) {
		struct store_host *h = &z->hosts[i];

		sh[i].host_id = h->host_id;
		sh[i].ready = streq(h->state, "READY");
		sh[i].millicpus = (uint64_t)MAX(h->vcpus, 0) * 1000;
		sh[i].memory_mb = (uint64_t)MAX(h->memory_mb, 0);
		sh[i].storage_mb = (uint64_t)MAX(h->storage_mb, 0);
		sh[i].avoid = avoid_host && streq(avoid_host, h->host_id);
		sh[i].ports = ports[i];
		for (size_t k = 0; k < z->n_tasks; k++) {
			struct store_task *t2 = &z->tasks[k];

			if (!streq(t2->host_id, h->host_id) || state_terminal(t2->state))
				continue;
			sh[i].used_millicpus += (uint64_t)MAX(t2->millicpus, 0);
			sh[i].used_memory_mb += (uint64_t)MAX(t2->memory_mb, 0);
			sh[i].used_storage_mb += (uint64_t)MAX(t2->storage_mb, 0);
			sh[i].n_tasks++;
			if (streq(t2->job_id, j->job_id))
				sh[i].has_job_task = true;
			sh[i].n_ports += parse_ports(t2->ports, ports[i] + sh[i].n_ports,
						     SCHED_MAX_PORTS - sh[i].n_ports);
		}
	}
	pick = sched_place(sh, z->n_hosts, &req, &v);
	if (pick < 0) {
		sched_verdict_format(&v, &req, reason, reason_size);
		free(sh);
		free(ports);
		return -ENOSPC;
	}

	id_new(t.task_id);
	memcpy(t.job_id, j->job_id, sizeof(t.job_id));
	t.index = idx;
	t.version = j->version;
	snprintf(t.host_id, sizeof(t.host_id), "%s", z->hosts[pick].host_id);
	strcpy(t.desired, "RUNNING");
	strcpy(t.state, "PENDING");
	t.millicpus = (int)req.millicpus;
	t.memory_mb = (int64_t)req.memory_mb;
	t.storage_mb = (int64_t)req.storage_mb;
	strbuf_adds(&pj, "[");
	for (size_t i = 0; i < req.n_ports; i++)
		strbuf_addf(&pj, "%s%u", i ? "," : "", (unsigned)req.ports[i]);
	strbuf_adds(&pj, "]");
	t.ports = pj.buf;
	t.created_at = t.updated_at = t.state_since = now;
	free(sh);
	free(ports);
	if (!t.ports)
		return cd_error_set(err, -ENOMEM, "out of memory");
	r = store_task_insert(c->store, &t, err);
	if (r >= 0) {
		task_url_of(j, t.task_id, urlbuf, sizeof(urlbuf));
		r = event_json(c, ACTOR_CONTROLLER, "task.placed", urlbuf,
			       json_pack("{s:s, s:i, s:I}", "host_id", t.host_id, "index", idx,
					 "version", (json_int_t)t.version),
			       err);
	}
	if (r >= 0) {
		/* Keep the zone view current for the next placement of this round. */
		struct store_task *nt = reallocarray(z->tasks, z->n_tasks + 1, sizeof(*nt));

		if (nt) {
			z->tasks = nt;
			z->tasks[z->n_tasks++] = t;
			stat_add(c, &c->stats.tasks_placed, 1);
			return 0;
		}
		r = cd_error_set(err, -ENOMEM, "out of memory");
	}
	strbuf_release(&pj);
	return r;
}

static int stop_task(struct cluster *c, const struct store_job *j, struct store_task *t,
		     const char *why, usec_t now, struct cd_error *err)
{
	char urlbuf[512];
	int r;

	strcpy(t->desired, "DONE");
	t->updated_at = now;
	r = store_task_update(c->store, t, err);
	if (r < 0)
		return r;
	task_url_of(j, t->task_id, urlbuf, sizeof(urlbuf));
	return event_json(c, ACTOR_CONTROLLER, "task.stop", urlbuf,
			  json_pack("{s:s, s:I}", "why", why, "version", (json_int_t)t->version),
			  err);
}

struct slot {
	struct store_task *active; /* desired RUNNING */
	bool stopping;		   /* a task of the slot is being stopped (not terminal yet) */
	unsigned failures;	   /* failed tasks of the slot at the job's version */
	const char *last_failed_host;
	const struct store_task *last_failure;
};

/* Derive state + reason; returns whether the row changed. */
static bool set_job_state(struct store_job *j, const char *state, const char *reason)
{
	bool changed = !streq(j->state, state) || !streq_ptr(j->reason, reason);

	if (changed) {
		if (state != j->state)
			snprintf(j->state, sizeof(j->state), "%s", state);
		if (reason != j->reason)
			set_str(&j->reason, reason);
	}
	return changed;
}

/* One job in one transaction. z is the zone's hosts and live tasks, loaded once per round and
 * shared by the jobs of the round: only this thread places tasks, so a round never over-commits;
 * a placement whose transaction fails stays in z until the next round (conservative). */
static int reconcile_job(struct cluster *c, const char *job_id, usec_t now, struct zone_view *zv,
			 struct cd_error *err)
{
	_cleanup_jobspec_ struct jobspec *spec = NULL;
	struct store_task_filter f = { .job_id = job_id };
	struct store_task *tasks = NULL;
	struct store_job j = {}, orig = {};
	struct zone_view *z = zv;
	struct slot *slots = NULL;
	struct problem p;
	char reason[512] = "", urlbuf[512];
	size_t n = 0, hosts;
	unsigned n_running = 0, n_completed = 0, n_slots_current = 0;
	bool crashloop = false, final_fail = false, unplaceable = false, changed = false;
	const struct store_task *fail_task = NULL;
	int r;

	r = store_begin(c->store, err);
	if (r < 0)
		return r;
	r = store_job_get_by_id(c->store, job_id, &j, err);
	if (r < 0)
		goto out;
	orig = j;
	orig.reason = j.reason ? strdup(j.reason) : NULL;
	orig.spec = NULL;
	orig.updated_by = NULL;
	orig.rollout_reason = NULL;
	job_url_of(&j, urlbuf, sizeof(urlbuf));

	problem_init(&p, 422, NULL, NULL);
	r = jobspec_from_string(j.spec, strlen(j.spec), &spec, &p);
	problem_release(&p);
	if (r < 0) {
		/* A stored spec that no longer parses (a newer deployd wrote it?) */
		set_job_state(&j, "ERROR", "stored spec does not parse with this deployd");
		goto write;
	}
	r = store_task_list(c->store, &f, &tasks, &n, err);
	if (r < 0)
		goto out;
	hosts = spec->reqs.hosts;
	slots = calloc(hosts ?: 1, sizeof(*slots));
	if (!slots) {
		r = cd_error_set(err, -ENOMEM, "out of memory");
		goto out;
	}

	/* Bucket tasks into slots. */
	for (size_t i = 0; i < n; i++) {
		struct store_task *t = &tasks[i];
		struct slot *s;

		if (t->index < 0)
			continue;
		if ((size_t)t->index >= hosts) {
			/* The job shrank: tasks beyond the new size go. */
			if (streq(t->desired, "RUNNING") && !t->removed) {
				r = stop_task(c, &j, t, "scaled down", now, err);
				if (r < 0)
					goto out;
			}
			continue;
		}
		s = &slots[t->index];
		if (t->version == j.version && streq(t->state, "ERROR") &&
		    !reason_is(t, "host_lost")) {
			s->failures++;
			s->last_failure = t;
			s->last_failed_host = t->host_id;
		}
		if (t->removed)
			continue;
		if (streq(t->desired, "RUNNING")) {
			if (s->active) {
				/* Two active tasks in one slot cannot be made by this code; if a
				 * bug or a crash did it, keep the newest. */
				struct store_task *old =
					s->active->created_at <= t->created_at ? s->active : t;

				if (old == s->active)
					s->active = t;
				r = stop_task(c, &j, old, "duplicate", now, err);
				if (r < 0)
					goto out;
			} else
				s->active = t;
		} else if (!state_terminal(t->state))
			s->stopping = true;
	}

	if (streq(j.desired, "DONE")) {
		bool all_terminal = true;

		for (size_t i = 0; i < n; i++) {
			struct store_task *t = &tasks[i];

			if (t->removed)
				continue;
			if (streq(t->desired, "RUNNING")) {
				r = stop_task(c, &j, t, "job stopped", now, err);
				if (r < 0)
					goto out;
			}
			if (!state_terminal(t->state))
				all_terminal = false;
		}
		changed |= all_terminal ? set_job_state(&j, "DONE", "stopped") :
					  set_job_state(&j, j.state, "stopping");
		goto write;
	}

	/* Outcomes of active tasks: replace what failed. */
	for (size_t i = 0; i < hosts; i++) {
		struct slot *s = &slots[i];
		enum outcome o;

		if (!s->active)
			continue;
		o = task_outcome(c, spec, s->active, now);
		if (o == OUT_FINAL) {
			final_fail = true;
			fail_task = s->active;
		} else if (o == OUT_REPLACE) {
			r = stop_task(c, &j, s->active, "replaced", now, err);
			if (r < 0)
				goto out;
			s->active = NULL;
		} else if (o == OUT_COMPLETED)
			n_completed++;
	}

	/* Rollout failure detection: a task of the new version that errors, restarts or does not
	 * become healthy in time fails the rollout. */
	if (streq(j.rollout, "rolling")) {
		const struct store_task *bad = NULL;
		char why[256] = "";

		for (size_t i = 0; i < hosts && !bad; i++) {
			const struct store_task *t = slots[i].active;

			if (slots[i].failures && slots[i].last_failure) {
				t = slots[i].last_failure;
				snprintf(why, sizeof(why), "task %s failed: %s", t->task_id,
					 t->reason ?: "error");
				bad = t;
			} else if (t && t->version == j.version && t->restarts > 0) {
				snprintf(why, sizeof(why), "task %s restarted (%s)", t->task_id,
					 t->reason ?: "restart");
				bad = t;
			} else if (t && t->version == j.version && !t->healthy &&
				   now >= t->created_at + (usec_t)c->cfg.progress_deadline_s *
								  USEC_PER_SEC) {
				snprintf(why, sizeof(why), "task %s not healthy within %us",
					 t->task_id, c->cfg.progress_deadline_s);
				bad = t;
			}
		}
		if (bad) {
			_cleanup_free_ char *stable_spec = NULL;
			char msg[512];

			if (j.stable_version > 0 && j.stable_version != j.version &&
			    j.auto_rollback) {
				_cleanup_jobspec_ struct jobspec *ss = NULL;
				char h[JOBSPEC_HASH_LEN + 1];
				int64_t failed = j.version;

				r = store_job_version_spec(c->store, j.job_id, j.stable_version,
							   &stable_spec, err);
				if (r < 0)
					goto out;
				problem_init(&p, 422, NULL, NULL);
				r = jobspec_from_string(stable_spec, strlen(stable_spec), &ss, &p);
				problem_release(&p);
				if (r >= 0)
					r = jobspec_hash(ss, h);
				if (r < 0) {
					r = cd_error_set(err, r, "stable spec of %s unusable",
							 urlbuf);
					goto out;
				}
				snprintf(msg, sizeof(msg),
					 "rolled back from version %lld to %lld: %s",
					 (long long)failed, (long long)j.stable_version, why);
				free(j.spec);
				j.spec = TAKE_PTR(stable_spec);
				snprintf(j.spec_hash, sizeof(j.spec_hash), "%s", h);
				j.version = failed + 1;
				strcpy(j.rollout, "rolled_back");
				/* Tasks of the stable version run exactly this spec: they become
				 * tasks of the new version instead of being replaced. */
				for (size_t i = 0; i < n; i++) {
					if (tasks[i].version != j.stable_version ||
					    tasks[i].removed)
						continue;
					tasks[i].version = j.version;
					r = store_task_update(c->store, &tasks[i], err);
					if (r < 0)
						goto out;
				}
				set_str(&j.rollout_reason, msg);
				stat_add(c, &c->stats.rollbacks, 1);
				r = event_json(c, ACTOR_CONTROLLER, "job.rollback", urlbuf,
					       json_pack("{s:I, s:I, s:s}", "failed_version",
							 (json_int_t)failed, "version",
							 (json_int_t)j.version, "why", why),
					       err);
				if (r < 0)
					goto out;
				set_job_state(&j, j.state, msg);
				changed = true;
				/* Tasks are replaced from the next round on, against the new version. */
				goto write;
			}
			snprintf(msg, sizeof(msg), "rollout of version %lld halted: %s",
				 (long long)j.version, why);
			strcpy(j.rollout, "halted");
			set_str(&j.rollout_reason, msg);
			r = event_json(c, ACTOR_CONTROLLER, "job.halt", urlbuf,
				       json_pack("{s:I, s:s}", "version", (json_int_t)j.version,
						 "why", why),
				       err);
			if (r < 0)
				goto out;
			changed = true;
		}
	}

	/* Crash loops: a slot whose tasks of this version failed too often is not refilled. */
	for (size_t i = 0; i < hosts; i++)
		if (slots[i].failures >= c->cfg.max_slot_failures && !slots[i].active) {
			crashloop = true;
			fail_task = slots[i].last_failure;
		}

	/* Rolling replacement of old-version tasks, at most max_unavailable slots in flight. */
	if (!streq(j.rollout, "halted")) {
		int in_flight = 0, budget;

		for (size_t i = 0; i < hosts; i++) {
			struct slot *s = &slots[i];

			if (!s->active ||
			    (s->active->version == j.version && !healthy_for(&j, s->active, now) &&
			     task_outcome(c, spec, s->active, now) != OUT_COMPLETED))
				in_flight++;
		}
		budget = j.max_unavailable - in_flight;
		/* Unhealthy old tasks first, then by slot. */
		for (int pass = 0; pass < 2 && budget > 0; pass++)
			for (size_t i = 0; i < hosts && budget > 0; i++) {
				struct slot *s = &slots[i];

				if (!s->active || s->active->version == j.version)
					continue;
				if (pass == 0 && healthy_for(&j, s->active, now))
					continue;
				r = stop_task(c, &j, s->active, "rolling update", now, err);
				if (r < 0)
					goto out;
				s->stopping = !state_terminal(s->active->state);
				s->active = NULL;
				budget--;
			}
	}

	/* Fill empty slots (stop-then-start: wait until the slot's old task is down, so ports
	 * and resources are free). */
	for (size_t i = 0; i < hosts; i++) {
		struct slot *s = &slots[i];
		char why[256];

		if (s->active || s->stopping || s->failures >= c->cfg.max_slot_failures)
			continue;
		if (streq(j.rollout, "halted") && j.stable_version == 0)
			continue; /* a first rollout that failed is not retried forever */
		r = place_task(c, &j, spec, (int)i, s->last_failed_host, z, now, why, sizeof(why),
			       err);
		if (r == -ENOSPC) {
			unplaceable = true;
			snprintf(reason, sizeof(reason), "task %zu: %s", i, why);
			r = 0;
			continue;
		}
		if (r < 0)
			goto out;
		changed = true;
	}

	/* Count what runs now (after the changes above). */
	for (size_t i = 0; i < hosts; i++) {
		struct slot *s = &slots[i];

		if (s->active && streq(s->active->state, "RUNNING") && s->active->healthy)
			n_running++;
		if (s->active && s->active->version == j.version && healthy_for(&j, s->active, now))
			n_slots_current++;
	}

	/* Rollout done: every slot runs the job's version, healthy for min_healthy_s. */
	if ((streq(j.rollout, "rolling") || streq(j.rollout, "rolled_back")) &&
	    n_slots_current == hosts && j.stable_version != j.version) {
		j.stable_version = j.version;
		if (streq(j.rollout, "rolling"))
			strcpy(j.rollout, "");
		r = event_json(c, ACTOR_CONTROLLER, "job.rollout_done", urlbuf,
			       json_pack("{s:I}", "version", (json_int_t)j.version), err);
		if (r < 0)
			goto out;
		changed = true;
	}

	/* Derive the job state. */
	if (crashloop && fail_task) {
		snprintf(reason, sizeof(reason),
			 "crash loop: task slot %d failed %u times (last: %s)", fail_task->index,
			 c->cfg.max_slot_failures, fail_task->reason ?: "error");
		changed |= set_job_state(&j, "ERROR", reason);
	} else if (final_fail && fail_task) {
		char code[48] = "";

		if (fail_task->has_exit_code)
			snprintf(code, sizeof(code), ", exit code %d", fail_task->exit_code);
		else if (fail_task->has_signal)
			snprintf(code, sizeof(code), ", signal %d", fail_task->signal);
		snprintf(reason, sizeof(reason), "task %s failed: %s%s (restart policy never)",
			 fail_task->task_id, fail_task->reason ?: "error", code);
		changed |= set_job_state(&j, "ERROR", reason);
	} else if (streq(j.rollout, "halted") && j.rollout_reason) {
		changed |= set_job_state(&j, "ERROR", j.rollout_reason);
	} else if (unplaceable) {
		changed |= set_job_state(&j, "PENDING", reason);
	} else if (n_completed == hosts && hosts > 0) {
		changed |= set_job_state(&j, "DONE", "completed");
	} else if (n_running + n_completed == hosts) {
		if (streq(j.rollout, "rolled_back") && j.rollout_reason)
			snprintf(reason, sizeof(reason), "%s", j.rollout_reason);
		else if (streq(j.rollout, "rolling"))
			snprintf(reason, sizeof(reason),
				 "rolling update to version %lld: %u/%zu updated",
				 (long long)j.version, n_slots_current, hosts);
		changed |= set_job_state(&j, "RUNNING", reason[0] ? reason : NULL);
	} else {
		if (streq(j.rollout, "rolled_back") && j.rollout_reason)
			snprintf(reason, sizeof(reason), "%s; %u/%zu tasks running",
				 j.rollout_reason, n_running, hosts);
		else
			snprintf(reason, sizeof(reason), "%u/%zu tasks running", n_running, hosts);
		changed |= set_job_state(&j, "PENDING", reason);
	}

write:
	if (changed || !streq(orig.state, j.state) || j.version != orig.version ||
	    !streq(orig.rollout, j.rollout) || j.stable_version != orig.stable_version) {
		j.updated_at = now;
		r = store_job_update(c->store, &j, err);
		if (r >= 0 && (!streq(orig.state, j.state) || !streq_ptr(orig.reason, j.reason)))
			r = event_json(c, ACTOR_CONTROLLER, "job.state", urlbuf,
				       json_pack("{s:s, s:s?, s:I, s:s}", "state", j.state,
						 "reason", j.reason, "version",
						 (json_int_t)j.version, "rollout", j.rollout),
				       err);
	}
out:
	if (r >= 0)
		r = store_commit(c->store, err);
	else
		store_rollback(c->store);
	free(slots);
	store_task_list_free(tasks, n);
	free(orig.reason);
	store_job_release(&j);
	return r;
}

/* ---- pushes -------------------------------------------------------------------------------- */

static bool stop_due(struct cluster *c, const char *task_id, usec_t mono)
{
	usec_t every = (usec_t)c->cfg.stop_retry_s * USEC_PER_SEC;
	bool due = true;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_stops; i++)
		if (streq(c->stops[i].task_id, task_id)) {
			due = mono >= c->stops[i].at + every;
			if (due)
				c->stops[i].at = mono;
			goto out;
		}
	{
		struct stop_mark *n = reallocarray(c->stops, c->n_stops + 1, sizeof(*n));

		if (n) {
			c->stops = n;
			snprintf(n[c->n_stops].task_id, sizeof(n->task_id), "%s", task_id);
			n[c->n_stops].at = mono;
			c->n_stops++;
		}
	}
out:
	pthread_mutex_unlock(&c->lock);
	return due;
}

static void stop_forget(struct cluster *c, const char *task_id)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n_stops; i++)
		if (streq(c->stops[i].task_id, task_id)) {
			c->stops[i] = c->stops[--c->n_stops];
			break;
		}
	pthread_mutex_unlock(&c->lock);
}

/* Re-read the task and apply fn to it in one transaction (the row may have changed while the
 * push was in flight: a notification, a heartbeat). */
typedef void (*task_fix_fn)(struct store_task *t, const void *ctx, usec_t now);

static int task_fix(struct cluster *c, const char *task_id, task_fix_fn fn, const void *ctx,
		    const char *event_kind, struct cd_error *err)
{
	struct store_task t = {};
	struct store_job j = {};
	usec_t now = now_usec(c);
	char urlbuf[512];
	int r;

	r = store_begin(c->store, err);
	if (r < 0)
		return r;
	r = store_task_get(c->store, task_id, &t, err);
	if (r >= 0) {
		fn(&t, ctx, now);
		t.updated_at = now;
		r = store_task_update(c->store, &t, err);
	}
	if (r >= 0 && event_kind) {
		r = store_job_get_by_id(c->store, t.job_id, &j, err);
		if (r >= 0) {
			task_url_of(&j, t.task_id, urlbuf, sizeof(urlbuf));
			r = event_json(c, ACTOR_CONTROLLER, event_kind, urlbuf,
				       json_pack("{s:s, s:s?, s:s}", "state", t.state, "reason",
						 t.reason, "host_id", t.host_id),
				       err);
		}
	}
	if (r >= 0)
		r = store_commit(c->store, err);
	else
		store_rollback(c->store);
	store_task_release(&t);
	store_job_release(&j);
	return r;
}

static void fix_pushed(struct store_task *t, const void *ctx, usec_t now)
{
	t->pushed = true;
}

static void fix_rejected(struct store_task *t, const void *ctx, usec_t now)
{
	strcpy(t->state, "ERROR");
	set_str(&t->reason, "rejected");
	set_str(&t->message, ctx);
	t->state_since = now;
}

static void fix_stopped_unknown(struct store_task *t, const void *ctx, usec_t now)
{
	if (!state_terminal(t->state)) {
		strcpy(t->state, "DONE");
		set_str(&t->reason, "stopped");
		t->state_since = now;
	}
	t->healthy = false;
	t->healthy_since = 0;
	if (ctx)
		t->removed = true;
}

static void fix_removed(struct store_task *t, const void *ctx, usec_t now)
{
	t->removed = true;
}

static void fix_state_from_reply(struct store_task *t, const void *ctx, usec_t now)
{
	const char *state = ctx;

	if (state_terminal(state) && !state_terminal(t->state)) {
		snprintf(t->state, sizeof(t->state), "%s", state);
		if (!t->reason)
			set_str(&t->reason, "stopped");
		t->state_since = now;
		t->healthy = false;
		t->healthy_since = 0;
	}
}

/* Build the PutTask body (docs/protocol-cluster.md). */
static int put_task_body(struct cluster *c, const struct store_job *j, const struct store_task *t,
			 char **ret, struct cd_error *err)
{
	_cleanup_jobspec_ struct jobspec *spec = NULL;
	_cleanup_free_ char *spec_text = NULL;
	json_t *body = NULL, *spec_json = NULL, *artifact = json_null();
	struct problem p;
	char urlbuf[512];
	int r;

	r = store_job_version_spec(c->store, j->job_id, t->version, &spec_text, err);
	if (r < 0)
		return r;
	problem_init(&p, 422, NULL, NULL);
	r = jobspec_from_string(spec_text, strlen(spec_text), &spec, &p);
	problem_release(&p);
	if (r < 0)
		return cd_error_set(err, r == -ENOMEM ? r : -EINVAL,
				    "stored spec of version %lld does not parse",
				    (long long)t->version);
	r = jobspec_to_json(spec, &spec_json);
	if (r < 0)
		return cd_error_set(err, r, "encoding spec failed");
	if (spec->target.commit[0]) {
		char target[TARGET_MAX_LEN + 1];
		struct store_artifact a = {};
		json_t *mirrors = json_array();

		target_format(&spec->target.target, target, sizeof(target));
		r = store_artifact_get(c->store, target, spec->target.commit, &a, err);
		if (r < 0) {
			json_decref(mirrors);
			json_decref(spec_json);
			if (r != -ENOENT)
				return r; /* the store's message is in err */
			return cd_error_set(err, r, "artifact %s@%s not in the index", target,
					    spec->target.commit);
		}
		for (char **m = c->mirrors; m && *m; m++)
			json_array_append_new(mirrors, json_string(*m));
		artifact = json_pack("{s:s, s:o}", "digest", a.digest, "mirrors", mirrors);
		store_artifact_release(&a);
	}
	job_url_of(j, urlbuf, sizeof(urlbuf));
	body = json_pack("{s:s, s:s, s:s, s:i, s:o, s:o}", "request_id", t->task_id, "task_id",
			 t->task_id, "job", urlbuf, "index", t->index, "spec", spec_json,
			 "artifact", artifact ?: json_null());
	if (!body)
		return cd_error_set(err, -ENOMEM, "out of memory");
	*ret = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	return *ret ? 0 : cd_error_set(err, -ENOMEM, "out of memory");
}

static int push_round(struct cluster *c, struct cd_error *err)
{
	const struct cluster_push_ops *ops = c->cfg.push;
	struct zone_view z = {};
	struct orphan *orphans;
	size_t n_orphans;
	usec_t mono = clock_mono_usec();
	int r, pushes = 0;

	r = zone_view_load(c, &z, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < z.n_tasks; i++) {
		struct store_task *t = &z.tasks[i];
		const struct store_host *h = NULL;
		struct cd_error perr = {};
		char state[16] = "";

		for (size_t k = 0; k < z.n_hosts; k++)
			if (streq(z.hosts[k].host_id, t->host_id))
				h = &z.hosts[k];
		if (!h || !streq(h->state, "READY"))
			continue;

		if (streq(t->desired, "RUNNING") && !t->pushed && streq(t->state, "PENDING")) {
			_cleanup_free_ char *body = NULL;
			struct store_job j = {};

			r = store_job_get_by_id(c->store, t->job_id, &j, err);
			if (r >= 0)
				r = put_task_body(c, &j, t, &body, &perr);
			store_job_release(&j);
			if (r == -EINVAL || r == -ENOENT) {
				/* The stored spec does not parse or its artifact is not indexed: a
				 * permanent problem of this task. */
				r = task_fix(c, t->task_id, fix_rejected, cd_error_message(&perr),
					     "task.state", err);
				if (r < 0)
					break;
				continue;
			}
			if (r < 0) {
				/* The store failed (busy, I/O): try again next round. */
				r = 0;
				continue;
			}
			pushes++;
			r = ops->put_task(c->cfg.push_data, h->addr, body, state, &perr);
			if (r >= 0 || r == -EEXIST) {
				stat_add(c, &c->stats.pushes_ok, 1);
				r = task_fix(c, t->task_id, fix_pushed, NULL, NULL, err);
			} else if (r == -EINVAL) {
				stat_add(c, &c->stats.pushes_failed, 1);
				r = task_fix(c, t->task_id, fix_rejected, cd_error_message(&perr),
					     "task.state", err);
			} else {
				stat_add(c, &c->stats.pushes_failed, 1);
				r = 0; /* retried next round */
			}
		} else if (streq(t->desired, "DONE") && !state_terminal(t->state)) {
			if (!t->pushed) {
				/* Never delivered: nothing to stop. Should the push have arrived
				 * after all, the heartbeat reports it and it is stopped as an
				 * orphan. */
				r = task_fix(c, t->task_id, fix_stopped_unknown, "", "task.state",
					     err);
			} else if (stop_due(c, t->task_id, mono)) {
				pushes++;
				r = ops->set_task_state(c->cfg.push_data, h->addr, t->task_id,
							"DONE", state, &perr);
				if (r == -ENOENT)
					r = task_fix(c, t->task_id, fix_stopped_unknown, "",
						     "task.state", err);
				else if (r >= 0 && state_terminal(state))
					r = task_fix(c, t->task_id, fix_state_from_reply, state,
						     "task.state", err);
				else
					r = 0;
				stat_add(c, r >= 0 ? &c->stats.pushes_ok : &c->stats.pushes_failed,
					 1);
			} else
				r = 0;
		} else if (streq(t->desired, "DONE") && state_terminal(t->state)) {
			if (t->pushed) {
				pushes++;
				r = ops->delete_task(c->cfg.push_data, h->addr, t->task_id, &perr);
				if (r >= 0 || r == -ENOENT) {
					stat_add(c, &c->stats.pushes_ok, 1);
					stop_forget(c, t->task_id);
					r = task_fix(c, t->task_id, fix_removed, NULL, NULL, err);
				} else {
					stat_add(c, &c->stats.pushes_failed, 1);
					r = 0;
				}
			} else
				r = task_fix(c, t->task_id, fix_removed, NULL, NULL, err);
		}
		if (r < 0)
			break;
	}
	zone_view_release(&z);
	if (r < 0)
		return r;

	/* Orphans reported by heartbeats: stop, then delete. */
	pthread_mutex_lock(&c->lock);
	orphans = TAKE_PTR(c->orphans);
	n_orphans = c->n_orphans;
	c->n_orphans = 0;
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < n_orphans; i++) {
		struct cd_error perr = {};
		char state[16] = "";
		int q;

		pushes++;
		q = ops->set_task_state(c->cfg.push_data, orphans[i].addr, orphans[i].task_id,
					"DONE", state, &perr);
		if (q >= 0 || q == -ENOENT)
			q = ops->delete_task(c->cfg.push_data, orphans[i].addr, orphans[i].task_id,
					     &perr);
		stat_add(c, q >= 0 || q == -ENOENT ? &c->stats.pushes_ok : &c->stats.pushes_failed,
			 1);
	}
	free(orphans);
	return pushes;
}

int cluster_tick(struct cluster *c, struct cd_error *err)
{
	struct store_job *jobs = NULL;
	struct zone_view z = {};
	size_t n = 0;
	usec_t now = now_usec(c);
	int r;

	stat_add(c, &c->stats.ticks, 1);
	r = monitor_hosts(c, now, err);
	if (r >= 0)
		r = store_job_list(c->store, c->zone, NULL, NULL, 0, &jobs, &n, err);
	if (r >= 0 && n > 0)
		r = zone_view_load(c, &z, err);
	for (size_t i = 0; i < n && r >= 0; i++)
		r = reconcile_job(c, jobs[i].job_id, now, &z, err);
	zone_view_release(&z);
	store_job_list_free(jobs, n);
	if (r < 0)
		return r;
	return push_round(c, err);
}
