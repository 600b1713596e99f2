/* SPDX-License-Identifier: Apache-2.0 */
/* store.h rows of the cluster manager and the artifact index: jobs, tasks, hosts, artifacts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "central/store_internal.h"
#include "lib/macro.h"
#include "lib/str.h"

typedef int (*bind_fn)(sqlite3_stmt *st, const void *ctx);
typedef store_row_fn row_fn;
typedef store_release_fn release_fn;

/* Run one write statement; *ret_changes (may be NULL) = rows changed. */
static int run_exec(struct store *s, const char *sql, bind_fn bind, const void *ctx,
		    int *ret_changes, struct cd_error *err, const char *what)
{
	sqlite3_stmt *st = NULL;
	sqlite3 *db;
	int r, rc;

	db = store_enter(s, true, &r, err);
	if (!db)
		return r;
	r = store_prepare(db, sql, &st, err);
	if (r >= 0 && bind) {
		r = bind(st, ctx);
		if (r < 0)
			cd_error_set(err, r, "%s: bad parameters", what);
	}
	if (r >= 0) {
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE)
			r = store_map_rc(db, rc, err, what);
		else if (ret_changes)
			*ret_changes = sqlite3_changes(db);
	}
	return store_leave(s, true, r, err);
}

/* Run one query; every row is decoded by fn into a grown array of elem_size elements. */
static int run_query(struct store *s, const char *sql, bind_fn bind, const void *ctx,
		     size_t elem_size, row_fn fn, release_fn release, void **ret, size_t *ret_n,
		     struct cd_error *err, const char *what)
{
	sqlite3_stmt *st = NULL;
	void *v = NULL;
	size_t n = 0;
	sqlite3 *db;
	int r;

	db = store_enter(s, false, &r, err);
	r = store_prepare(db, sql, &st, err);
	if (r >= 0 && bind) {
		r = bind(st, ctx);
		if (r < 0)
			cd_error_set(err, r, "%s: bad parameters", what);
	}
	if (r >= 0)
		r = store_collect(db, st, elem_size, fn, release, &v, &n, err, what);
	r = store_leave(s, false, r, err);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			release((char *)v + i * elem_size);
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* One row or -ENOENT. */
static int run_query_one(struct store *s, const char *sql, bind_fn bind, const void *ctx,
			 size_t elem_size, row_fn fn, release_fn release, void *ret,
			 struct cd_error *err, const char *what)
{
	void *v = NULL;
	size_t n = 0;
	int r;

	r = run_query(s, sql, bind, ctx, elem_size, fn, release, &v, &n, err, what);
	if (r < 0)
		return r;
	if (n == 0) {
		free(v);
		return -ENOENT;
	}
	memcpy(ret, v, elem_size);
	for (size_t i = 1; i < n; i++)
		release((char *)v + i * elem_size);
	free(v);
	return 0;
}

static int check_len(const char *v, size_t max)
{
	return v && strlen(v) >= max ? -ENAMETOOLONG : 0;
}

/* ---- jobs ---------------------------------------------------------------------------------- */

#define JOB_COLS                                                                                   \
	"j.job_id, j.region, j.zone, j.name, j.version, j.stable_version, v.spec, j.spec_hash, "   \
	"j.desired, j.state, j.reason, j.rollout, j.max_unavailable, j.min_healthy_s, "            \
	"j.auto_rollback, j.updated_by, j.created_at, j.updated_at, j.rollout_reason "
#define JOB_FROM                                                                                   \
	" FROM jobs j JOIN job_versions v ON v.job_id = j.job_id AND v.version = j.version "

void store_job_release(struct store_job *j)
{
	free(j->spec);
	free(j->reason);
	free(j->updated_by);
	free(j->rollout_reason);
	memset(j, 0, sizeof(*j));
}

void store_job_list_free(struct store_job *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		store_job_release(&v[i]);
	free(v);
}

static void job_release_void(void *e)
{
	store_job_release(e);
}

static int job_row(sqlite3_stmt *st, void *elem)
{
	struct store_job *j = elem;

	store_col_strcpy(st, 0, j->job_id, sizeof(j->job_id));
	store_col_strcpy(st, 1, j->region, sizeof(j->region));
	store_col_strcpy(st, 2, j->zone, sizeof(j->zone));
	store_col_strcpy(st, 3, j->name, sizeof(j->name));
	j->version = sqlite3_column_int64(st, 4);
	j->stable_version = sqlite3_column_int64(st, 5);
	store_col_strcpy(st, 7, j->spec_hash, sizeof(j->spec_hash));
	store_col_strcpy(st, 8, j->desired, sizeof(j->desired));
	store_col_strcpy(st, 9, j->state, sizeof(j->state));
	store_col_strcpy(st, 11, j->rollout, sizeof(j->rollout));
	j->max_unavailable = sqlite3_column_int(st, 12);
	j->min_healthy_s = sqlite3_column_int(st, 13);
	j->auto_rollback = sqlite3_column_int(st, 14) != 0;
	j->created_at = (usec_t)sqlite3_column_int64(st, 16);
	j->updated_at = (usec_t)sqlite3_column_int64(st, 17);
	if (store_col_strdup(st, 6, &j->spec) < 0 || store_col_strdup(st, 10, &j->reason) < 0 ||
	    store_col_strdup(st, 15, &j->updated_by) < 0 ||
	    store_col_strdup(st, 18, &j->rollout_reason) < 0)
		return -ENOMEM;
	return 0;
}

struct two_str {
	const char *a, *b;
};

static int bind_two(sqlite3_stmt *st, const void *ctx)
{
	const struct two_str *t = ctx;

	if (store_bind_text(st, 1, t->a) < 0 || (t->b && store_bind_text(st, 2, t->b) < 0))
		return -ENOMEM;
	return 0;
}

int store_job_get(struct store *s, const char *zone, const char *name, struct store_job *ret,
		  struct cd_error *err)
{
	struct two_str k = { zone, name };

	return run_query_one(s, "SELECT " JOB_COLS JOB_FROM "WHERE j.zone = ? AND j.name = ?",
			     bind_two, &k, sizeof(*ret), job_row, job_release_void, ret, err,
			     "get job");
}

int store_job_get_by_id(struct store *s, const char *job_id, struct store_job *ret,
			struct cd_error *err)
{
	struct two_str k = { job_id, NULL };

	return run_query_one(s, "SELECT " JOB_COLS JOB_FROM "WHERE j.job_id = ?", bind_two, &k,
			     sizeof(*ret), job_row, job_release_void, ret, err, "get job");
}

/* Parameters 1..16 of both the INSERT and the UPDATE below (same order). */
static int bind_job(sqlite3_stmt *st, const void *ctx)
{
	const struct store_job *j = ctx;

	if (store_bind_text(st, 1, j->job_id) < 0 || store_bind_text(st, 2, j->region) < 0 ||
	    store_bind_text(st, 3, j->zone) < 0 || store_bind_text(st, 4, j->name) < 0 ||
	    store_bind_int64(st, 5, j->version) < 0 ||
	    store_bind_int64(st, 6, j->stable_version) < 0 ||
	    store_bind_text(st, 7, j->spec_hash) < 0 || store_bind_text(st, 8, j->desired) < 0 ||
	    store_bind_text(st, 9, j->state) < 0 || store_bind_text(st, 10, j->reason) < 0 ||
	    store_bind_text(st, 11, j->rollout) < 0 ||
	    store_bind_int64(st, 12, j->max_unavailable) < 0 ||
	    store_bind_int64(st, 13, j->min_healthy_s) < 0 ||
	    store_bind_int64(st, 14, j->auto_rollback) < 0 ||
	    store_bind_text(st, 15, j->updated_by) < 0 ||
	    store_bind_int64(st, 16, (int64_t)j->updated_at) < 0 ||
	    store_bind_text(st, 17, j->rollout_reason) < 0)
		return -ENOMEM;
	return 0;
}

static int bind_job_version(sqlite3_stmt *st, const void *ctx)
{
	const struct store_job *j = ctx;

	if (store_bind_text(st, 1, j->job_id) < 0 || store_bind_int64(st, 2, j->version) < 0 ||
	    store_bind_text(st, 3, j->spec) < 0 || store_bind_text(st, 4, j->spec_hash) < 0 ||
	    store_bind_text(st, 5, j->updated_by) < 0 ||
	    store_bind_int64(st, 6, (int64_t)j->updated_at) < 0)
		return -ENOMEM;
	return 0;
}

static int job_check(const struct store_job *j, struct cd_error *err)
{
	if (!j->spec || !*j->job_id || !*j->zone || !*j->name)
		return cd_error_set(err, -EINVAL, "job needs job_id, zone, name and spec");
	if (check_len(j->region, sizeof(j->region)) < 0 ||
	    check_len(j->zone, sizeof(j->zone)) < 0 || check_len(j->name, sizeof(j->name)) < 0)
		return cd_error_set(err, -ENAMETOOLONG, "job region, zone or name too long");
	return 0;
}

int store_job_insert(struct store *s, const struct store_job *j, struct cd_error *err)
{
	int r;

	r = job_check(j, err);
	if (r < 0)
		return r;
	r = store_begin(s, err);
	if (r < 0)
		return r;
	r = run_exec(s,
		     "INSERT INTO jobs (job_id, region, zone, name, version, stable_version, "
		     "spec_hash, desired, state, reason, rollout, max_unavailable, min_healthy_s, "
		     "auto_rollback, updated_by, updated_at, rollout_reason, created_at) "
		     "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?16)",
		     bind_job, j, NULL, err, "insert job");
	if (r >= 0)
		r = run_exec(s,
			     "INSERT INTO job_versions (job_id, version, spec, spec_hash, "
			     "created_by, created_at) VALUES (?,?,?,?,?,?)",
			     bind_job_version, j, NULL, err, "insert job version");
	if (r < 0) {
		store_rollback(s);
		return r;
	}
	return store_commit(s, err);
}

int store_job_update(struct store *s, const struct store_job *j, struct cd_error *err)
{
	int changes = 0, r;

	r = job_check(j, err);
	if (r < 0)
		return r;
	r = store_begin(s, err);
	if (r < 0)
		return r;
	r = run_exec(s,
		     "UPDATE jobs SET region = ?2, zone = ?3, name = ?4, version = ?5, "
		     "stable_version = ?6, spec_hash = ?7, desired = ?8, state = ?9, "
		     "reason = ?10, rollout = ?11, max_unavailable = ?12, "
		     "min_healthy_s = ?13, auto_rollback = ?14, updated_by = ?15, "
		     "updated_at = ?16, rollout_reason = ?17 WHERE job_id = ?1",
		     bind_job, j, &changes, err, "update job");
	if (r >= 0 && changes == 0)
		r = cd_error_set(err, -ENOENT, "no job %s", j->job_id);
	if (r >= 0)
		r = run_exec(s,
			     "INSERT INTO job_versions (job_id, version, spec, spec_hash, "
			     "created_by, created_at) VALUES (?,?,?,?,?,?) "
			     "ON CONFLICT (job_id, version) DO NOTHING",
			     bind_job_version, j, NULL, err, "insert job version");
	if (r < 0) {
		store_rollback(s);
		return r;
	}
	return store_commit(s, err);
}

struct version_key {
	const char *job_id;
	int64_t version;
};

static int bind_version_key(sqlite3_stmt *st, const void *ctx)
{
	const struct version_key *k = ctx;

	if (store_bind_text(st, 1, k->job_id) < 0 || store_bind_int64(st, 2, k->version) < 0)
		return -ENOMEM;
	return 0;
}

static int spec_row(sqlite3_stmt *st, void *elem)
{
	return store_col_strdup(st, 0, (char **)elem);
}

static void free_str_void(void *e)
{
	free(*(char **)e);
}

int store_job_version_spec(struct store *s, const char *job_id, int64_t version, char **ret,
			   struct cd_error *err)
{
	struct version_key k = { job_id, version };

	return run_query_one(s, "SELECT spec FROM job_versions WHERE job_id = ? AND version = ?",
			     bind_version_key, &k, sizeof(*ret), spec_row, free_str_void, ret, err,
			     "get job version");
}

struct job_list_key {
	const char *zone, *after_zone, *after_name;
	size_t limit;
};

static int bind_job_list(sqlite3_stmt *st, const void *ctx)
{
	const struct job_list_key *k = ctx;

	if (store_bind_text(st, 1, k->zone) < 0 || store_bind_text(st, 2, k->after_zone) < 0 ||
	    store_bind_text(st, 3, k->after_name) < 0 ||
	    store_bind_int64(st, 4, k->limit ? (int64_t)k->limit : -1) < 0)
		return -ENOMEM;
	return 0;
}

int store_job_list(struct store *s, const char *zone, const char *after_zone,
		   const char *after_name, size_t limit, struct store_job **ret, size_t *ret_n,
		   struct cd_error *err)
{
	struct job_list_key k = { zone, after_zone ?: "", after_name ?: "", limit };

	return run_query(s,
			 "SELECT " JOB_COLS JOB_FROM
			 "WHERE (?1 IS NULL OR j.zone = ?1) AND (j.zone, j.name) > (?2, ?3) "
			 "ORDER BY j.zone, j.name LIMIT ?4",
			 bind_job_list, &k, sizeof(**ret), job_row, job_release_void, (void **)ret,
			 ret_n, err, "list jobs");
}

/* ---- tasks --------------------------------------------------------------------------------- */

#define TASK_COLS                                                                                  \
	"t.task_id, t.job_id, t.idx, t.version, t.host_id, t.desired, t.state, t.reason, "         \
	"t.message, t.healthy, t.exit_code, t.signal, t.restarts, t.last_seq, t.pushed, "          \
	"t.removed, t.millicpus, t.memory_mb, t.storage_mb, t.ports, t.created_at, t.updated_at, " \
	"t.healthy_since, t.state_since "

void store_task_release(struct store_task *t)
{
	free(t->reason);
	free(t->message);
	free(t->ports);
	memset(t, 0, sizeof(*t));
}

void store_task_list_free(struct store_task *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		store_task_release(&v[i]);
	free(v);
}

static void task_release_void(void *e)
{
	store_task_release(e);
}

static int task_row(sqlite3_stmt *st, void *elem)
{
	struct store_task *t = elem;

	store_col_strcpy(st, 0, t->task_id, sizeof(t->task_id));
	store_col_strcpy(st, 1, t->job_id, sizeof(t->job_id));
	t->index = sqlite3_column_int(st, 2);
	t->version = sqlite3_column_int64(st, 3);
	store_col_strcpy(st, 4, t->host_id, sizeof(t->host_id));
	store_col_strcpy(st, 5, t->desired, sizeof(t->desired));
	store_col_strcpy(st, 6, t->state, sizeof(t->state));
	t->healthy = sqlite3_column_int(st, 9) != 0;
	t->has_exit_code = sqlite3_column_type(st, 10) != SQLITE_NULL;
	t->exit_code = sqlite3_column_int(st, 10);
	t->has_signal = sqlite3_column_type(st, 11) != SQLITE_NULL;
	t->signal = sqlite3_column_int(st, 11);
	t->restarts = sqlite3_column_int(st, 12);
	t->last_seq = sqlite3_column_int64(st, 13);
	t->pushed = sqlite3_column_int(st, 14) != 0;
	t->removed = sqlite3_column_int(st, 15) != 0;
	t->millicpus = sqlite3_column_int(st, 16);
	t->memory_mb = sqlite3_column_int64(st, 17);
	t->storage_mb = sqlite3_column_int64(st, 18);
	t->created_at = (usec_t)sqlite3_column_int64(st, 20);
	t->updated_at = (usec_t)sqlite3_column_int64(st, 21);
	t->healthy_since = (usec_t)sqlite3_column_int64(st, 22);
	t->state_since = (usec_t)sqlite3_column_int64(st, 23);
	if (store_col_strdup(st, 7, &t->reason) < 0 || store_col_strdup(st, 8, &t->message) < 0 ||
	    store_col_strdup(st, 19, &t->ports) < 0)
		return -ENOMEM;
	return 0;
}

static int bind_task(sqlite3_stmt *st, const void *ctx)
{
	const struct store_task *t = ctx;
	int r = 0;

	r |= store_bind_text(st, 1, t->task_id);
	r |= store_bind_text(st, 2, t->job_id);
	r |= store_bind_int64(st, 3, t->index);
	r |= store_bind_int64(st, 4, t->version);
	r |= store_bind_text(st, 5, t->host_id);
	r |= store_bind_text(st, 6, t->desired);
	r |= store_bind_text(st, 7, t->state);
	r |= store_bind_text(st, 8, t->reason);
	r |= store_bind_text(st, 9, t->message);
	r |= store_bind_int64(st, 10, t->healthy);
	r |= t->has_exit_code ? store_bind_int64(st, 11, t->exit_code) : 0;
	r |= t->has_signal ? store_bind_int64(st, 12, t->signal) : 0;
	r |= store_bind_int64(st, 13, t->restarts);
	r |= store_bind_int64(st, 14, t->last_seq);
	r |= store_bind_int64(st, 15, t->pushed);
	r |= store_bind_int64(st, 16, t->removed);
	r |= store_bind_int64(st, 17, t->millicpus);
	r |= store_bind_int64(st, 18, t->memory_mb);
	r |= store_bind_int64(st, 19, t->storage_mb);
	r |= store_bind_text(st, 20, t->ports ?: "[]");
	r |= store_bind_int64(st, 21, (int64_t)t->updated_at);
	r |= store_bind_int64(st, 22, (int64_t)t->healthy_since);
	r |= store_bind_int64(st, 23, (int64_t)t->state_since);
	return r ? -ENOMEM : 0;
}

static int task_check(const struct store_task *t, struct cd_error *err)
{
	if (!*t->task_id || !*t->job_id || !*t->state || !*t->desired)
		return cd_error_set(err, -EINVAL, "task needs task_id, job_id, state, desired");
	return 0;
}

int store_task_insert(struct store *s, const struct store_task *t, struct cd_error *err)
{
	int r = task_check(t, err);

	if (r < 0)
		return r;
	return run_exec(
		s,
		"INSERT INTO tasks (task_id, job_id, idx, version, host_id, desired, state, "
		"reason, message, healthy, exit_code, signal, restarts, last_seq, pushed, "
		"removed, millicpus, memory_mb, storage_mb, ports, updated_at, healthy_since, "
		"state_since, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,"
		"?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?21)",
		bind_task, t, NULL, err, "insert task");
}

int store_task_update(struct store *s, const struct store_task *t, struct cd_error *err)
{
	int changes = 0, r = task_check(t, err);

	if (r < 0)
		return r;
	r = run_exec(
		s,
		"UPDATE tasks SET job_id = ?2, idx = ?3, version = ?4, host_id = ?5, "
		"desired = ?6, state = ?7, reason = ?8, message = ?9, healthy = ?10, "
		"exit_code = ?11, signal = ?12, restarts = ?13, last_seq = ?14, pushed = ?15, "
		"removed = ?16, millicpus = ?17, memory_mb = ?18, storage_mb = ?19, ports = ?20, "
		"updated_at = ?21, healthy_since = ?22, state_since = ?23 WHERE task_id = ?1",
		bind_task, t, &changes, err, "update task");
	if (r >= 0 && changes == 0)
		return cd_error_set(err, -ENOENT, "no task %s", t->task_id);
	return r;
}

int store_task_get(struct store *s, const char *task_id, struct store_task *ret,
		   struct cd_error *err)
{
	struct two_str k = { task_id, NULL };

	return run_query_one(s, "SELECT " TASK_COLS "FROM tasks t WHERE t.task_id = ?", bind_two,
			     &k, sizeof(*ret), task_row, task_release_void, ret, err, "get task");
}

static int bind_task_filter(sqlite3_stmt *st, const void *ctx)
{
	const struct store_task_filter *f = ctx;

	if (store_bind_text(st, 1, f->job_id) < 0 || store_bind_text(st, 2, f->host_id) < 0 ||
	    store_bind_text(st, 3, f->zone) < 0 || store_bind_int64(st, 4, f->live_only) < 0)
		return -ENOMEM;
	return 0;
}

/* The most selective filter leads, so its index is used: one (?N IS NULL OR ...) form for all
 * filters would make SQLite scan every task of every zone for one job's list. */
#define TASK_LIST_REST                                                                             \
	"(?1 IS NULL OR t.job_id = ?1) AND (?2 IS NULL OR t.host_id = ?2) AND "                    \
	"(?3 IS NULL OR j.zone = ?3) AND (?4 = 0 OR t.removed = 0) "                               \
	"ORDER BY t.job_id, t.idx, t.created_at, t.task_id"
#define TASK_LIST_FROM "SELECT " TASK_COLS "FROM tasks t JOIN jobs j ON j.job_id = t.job_id "

int store_task_list(struct store *s, const struct store_task_filter *f, struct store_task **ret,
		    size_t *ret_n, struct cd_error *err)
{
	const char *sql = f->job_id  ? TASK_LIST_FROM "WHERE t.job_id = ?1 AND " TASK_LIST_REST :
			  f->host_id ? TASK_LIST_FROM "WHERE t.host_id = ?2 AND " TASK_LIST_REST :
			  f->zone    ? TASK_LIST_FROM "WHERE j.zone = ?3 AND " TASK_LIST_REST :
				       TASK_LIST_FROM "WHERE " TASK_LIST_REST;

	return run_query(s, sql, bind_task_filter, f, sizeof(**ret), task_row, task_release_void,
			 (void **)ret, ret_n, err, "list tasks");
}

/* ---- hosts --------------------------------------------------------------------------------- */

#define HOST_COLS                                                                                  \
	"host_id, zone, addr, state, vcpus, memory_mb, storage_mb, free_json, version, "           \
	"registered_at, last_heartbeat "

void store_host_release(struct store_host *h)
{
	free(h->free_json);
	memset(h, 0, sizeof(*h));
}

void store_host_list_free(struct store_host *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		store_host_release(&v[i]);
	free(v);
}

static void host_release_void(void *e)
{
	store_host_release(e);
}

static int host_row(sqlite3_stmt *st, void *elem)
{
	struct store_host *h = elem;

	store_col_strcpy(st, 0, h->host_id, sizeof(h->host_id));
	store_col_strcpy(st, 1, h->zone, sizeof(h->zone));
	store_col_strcpy(st, 2, h->addr, sizeof(h->addr));
	store_col_strcpy(st, 3, h->state, sizeof(h->state));
	h->vcpus = sqlite3_column_int(st, 4);
	h->memory_mb = sqlite3_column_int64(st, 5);
	h->storage_mb = sqlite3_column_int64(st, 6);
	store_col_strcpy(st, 8, h->version, sizeof(h->version));
	h->registered_at = (usec_t)sqlite3_column_int64(st, 9);
	h->last_heartbeat = (usec_t)sqlite3_column_int64(st, 10);
	return store_col_strdup(st, 7, &h->free_json);
}

static int bind_host(sqlite3_stmt *st, const void *ctx)
{
	const struct store_host *h = ctx;
	int r = 0;

	r |= store_bind_text(st, 1, h->host_id);
	r |= store_bind_text(st, 2, h->zone);
	r |= store_bind_text(st, 3, h->addr);
	r |= store_bind_text(st, 4, h->state);
	r |= store_bind_int64(st, 5, h->vcpus);
	r |= store_bind_int64(st, 6, h->memory_mb);
	r |= store_bind_int64(st, 7, h->storage_mb);
	r |= store_bind_text(st, 8, h->free_json);
	r |= store_bind_text(st, 9, h->version);
	r |= store_bind_int64(st, 10, (int64_t)h->registered_at);
	r |= store_bind_int64(st, 11, (int64_t)h->last_heartbeat);
	return r ? -ENOMEM : 0;
}

int store_host_upsert(struct store *s, const struct store_host *h, struct cd_error *err)
{
	if (!*h->host_id || !*h->zone || !*h->state)
		return cd_error_set(err, -EINVAL, "host needs host_id, zone and state");
	return run_exec(
		s,
		"INSERT INTO hosts (" HOST_COLS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11) "
		"ON CONFLICT (host_id) DO UPDATE SET zone = ?2, addr = ?3, state = ?4, "
		"vcpus = ?5, memory_mb = ?6, storage_mb = ?7, free_json = ?8, version = ?9, "
		"last_heartbeat = ?11",
		bind_host, h, NULL, err, "upsert host");
}

int store_host_get(struct store *s, const char *host_id, struct store_host *ret,
		   struct cd_error *err)
{
	struct two_str k = { host_id, NULL };

	return run_query_one(s, "SELECT " HOST_COLS "FROM hosts WHERE host_id = ?", bind_two, &k,
			     sizeof(*ret), host_row, host_release_void, ret, err, "get host");
}

struct host_list_key {
	const char *zone, *after;
	size_t limit;
};

static int bind_host_list(sqlite3_stmt *st, const void *ctx)
{
	const struct host_list_key *k = ctx;

	if (store_bind_text(st, 1, k->zone) < 0 || store_bind_text(st, 2, k->after) < 0 ||
	    store_bind_int64(st, 3, k->limit ? (int64_t)k->limit : -1) < 0)
		return -ENOMEM;
	return 0;
}

int store_host_list(struct store *s, const char *zone, const char *after, size_t limit,
		    struct store_host **ret, size_t *ret_n, struct cd_error *err)
{
	struct host_list_key k = { zone, after ?: "", limit };

	return run_query(s,
			 "SELECT " HOST_COLS "FROM hosts WHERE (?1 IS NULL OR zone = ?1) AND "
			 "host_id > ?2 ORDER BY host_id LIMIT ?3",
			 bind_host_list, &k, sizeof(**ret), host_row, host_release_void,
			 (void **)ret, ret_n, err, "list hosts");
}

int store_host_set_state(struct store *s, const char *host_id, const char *state,
			 struct cd_error *err)
{
	struct two_str k = { state, host_id };
	int changes = 0, r;

	r = run_exec(s, "UPDATE hosts SET state = ?1 WHERE host_id = ?2", bind_two, &k, &changes,
		     err, "set host state");
	if (r >= 0 && changes == 0)
		return cd_error_set(err, -ENOENT, "no host %s", host_id);
	return r;
}

/* ---- artifacts ----------------------------------------------------------------------------- */

void store_artifact_release(struct store_artifact *a)
{
	free(a->target);
	free(a->created_by);
	memset(a, 0, sizeof(*a));
}

void store_artifact_list_free(struct store_artifact *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		store_artifact_release(&v[i]);
	free(v);
}

static void artifact_release_void(void *e)
{
	store_artifact_release(e);
}

static int artifact_row(sqlite3_stmt *st, void *elem)
{
	struct store_artifact *a = elem;

	store_col_strcpy(st, 1, a->commit, sizeof(a->commit));
	store_col_strcpy(st, 2, a->digest, sizeof(a->digest));
	a->size = sqlite3_column_int64(st, 3);
	a->created_at = (usec_t)sqlite3_column_int64(st, 5);
	if (store_col_strdup(st, 0, &a->target) < 0 || store_col_strdup(st, 4, &a->created_by) < 0)
		return -ENOMEM;
	return 0;
}

static int bind_artifact(sqlite3_stmt *st, const void *ctx)
{
	const struct store_artifact *a = ctx;
	int r = 0;

	r |= store_bind_text(st, 1, a->target);
	r |= store_bind_text(st, 2, a->commit);
	r |= store_bind_text(st, 3, a->digest);
	r |= store_bind_int64(st, 4, a->size);
	r |= store_bind_text(st, 5, a->created_by);
	r |= store_bind_int64(st, 6, (int64_t)(a->created_at ?: clock_real_usec()));
	return r ? -ENOMEM : 0;
}

int store_artifact_put(struct store *s, const struct store_artifact *a, bool *ret_created,
		       struct cd_error *err)
{
	struct store_artifact cur = {};
	int changes = 0, r;

	if (!a->target || !*a->commit || !*a->digest || a->size < 0)
		return cd_error_set(err, -EINVAL, "artifact needs target, commit, digest, size");
	r = store_begin(s, err);
	if (r < 0)
		return r;
	r = run_exec(s,
		     "INSERT INTO artifacts (target, commit_id, digest, size, created_by, "
		     "created_at) VALUES (?,?,?,?,?,?) ON CONFLICT (target, commit_id) DO NOTHING",
		     bind_artifact, a, &changes, err, "put artifact");
	if (r >= 0 && changes == 0) {
		r = store_artifact_get(s, a->target, a->commit, &cur, err);
		if (r >= 0 && (!streq(cur.digest, a->digest) || cur.size != a->size))
			r = cd_error_set(err, -EEXIST, "%s@%s is already %s", a->target, a->commit,
					 cur.digest);
		store_artifact_release(&cur);
	}
	if (r < 0) {
		store_rollback(s);
		return r;
	}
	r = store_commit(s, err);
	if (r >= 0 && ret_created)
		*ret_created = changes > 0;
	return r;
}

int store_artifact_get(struct store *s, const char *target, const char *commit,
		       struct store_artifact *ret, struct cd_error *err)
{
	struct two_str k = { target, commit };

	return run_query_one(s,
			     "SELECT target, commit_id, digest, size, created_by, created_at "
			     "FROM artifacts WHERE target = ? AND commit_id = ?",
			     bind_two, &k, sizeof(*ret), artifact_row, artifact_release_void, ret,
			     err, "get artifact");
}

struct artifact_list_key {
	const char *target;
	size_t offset, limit;
};

static int bind_artifact_list(sqlite3_stmt *st, const void *ctx)
{
	const struct artifact_list_key *k = ctx;

	if (store_bind_text(st, 1, k->target) < 0 ||
	    store_bind_int64(st, 2, k->limit ? (int64_t)k->limit : -1) < 0 ||
	    store_bind_int64(st, 3, (int64_t)k->offset) < 0)
		return -ENOMEM;
	return 0;
}

int store_artifact_list(struct store *s, const char *target, size_t offset, size_t limit,
			struct store_artifact **ret, size_t *ret_n, struct cd_error *err)
{
	struct artifact_list_key k = { target, offset, limit };

	return run_query(s,
			 "SELECT target, commit_id, digest, size, created_by, created_at "
			 "FROM artifacts WHERE (?1 IS NULL OR target = ?1) "
			 "ORDER BY target, created_at DESC, commit_id LIMIT ?2 OFFSET ?3",
			 bind_artifact_list, &k, sizeof(**ret), artifact_row, artifact_release_void,
			 (void **)ret, ret_n, err, "list artifacts");
}

static int digest_row(sqlite3_stmt *st, void *elem)
{
	return store_col_strdup(st, 0, elem);
}

static void digest_release(void *elem)
{
	free(*(char **)elem);
}

int store_artifact_digests(struct store *s, char ***ret, struct cd_error *err)
{
	char **v = NULL, **nv;
	size_t n = 0;
	int r;

	r = run_query(s, "SELECT DISTINCT digest FROM artifacts ORDER BY digest", NULL, NULL,
		      sizeof(char *), digest_row, digest_release, (void **)&v, &n, err,
		      "list indexed digests");
	if (r < 0)
		return r;
	nv = reallocarray(v, n + 1, sizeof(*v));
	if (!nv) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	nv[n] = NULL;
	*ret = nv;
	return 0;
}
