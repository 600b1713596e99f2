/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/state.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/macro.h"
#include "lib/str.h"

struct state {
	sqlite3 *db;
	uint64_t coalesced;    /* undelivered messages replaced by a newer one of the same task */
	uint64_t coalesced_tx; /* ... in the open transaction (counted once it commits) */
};

static const char *const state_names[_TASK_STATE_MAX] = {
	[TASK_PENDING] = "PENDING",
	[TASK_RUNNING] = "RUNNING",
	[TASK_DONE] = "DONE",
	[TASK_ERROR] = "ERROR",
};

const char *task_state_to_string(enum task_state s)
{
	if ((unsigned)s >= _TASK_STATE_MAX)
		return NULL;
	return state_names[s];
}

int task_state_from_string(const char *s, enum task_state *ret)
{
	if (!s)
		return -EINVAL;
	for (unsigned i = 0; i < _TASK_STATE_MAX; i++)
		if (streq(s, state_names[i])) {
			*ret = (enum task_state)i;
			return 0;
		}
	return -EINVAL;
}

void task_record_release(struct task_record *t)
{
	if (!t)
		return;
	free(t->request_id);
	free(t->job_url);
	free(t->spec_json);
	free(t->message);
	free(t->artifact_json);
	t->request_id = t->job_url = t->spec_json = t->message = t->artifact_json = NULL;
}

void task_record_array_free(struct task_record *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		task_record_release(&v[i]);
	free(v);
}

static int dup_opt(const char *s, char **ret)
{
	*ret = NULL;
	if (!s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

int task_record_copy(const struct task_record *src, struct task_record *ret)
{
	struct task_record t = *src;

	t.request_id = t.job_url = t.spec_json = t.message = t.artifact_json = NULL;
	if (dup_opt(src->request_id, &t.request_id) < 0 || dup_opt(src->job_url, &t.job_url) < 0 ||
	    dup_opt(src->spec_json, &t.spec_json) < 0 || dup_opt(src->message, &t.message) < 0 ||
	    dup_opt(src->artifact_json, &t.artifact_json) < 0) {
		task_record_release(&t);
		return -ENOMEM;
	}
	*ret = t;
	return 0;
}

void state_event_array_free(struct state_event *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].data);
	free(v);
}

void outbox_msg_array_free(struct outbox_msg *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].body);
	free(v);
}

/* The one place SQLite result codes become errnos. */
static int map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_TOOBIG:
		return -E2BIG;
	default:
		return -EIO;
	}
}

static int sql_err(struct state *st, int rc, struct cd_error *err, const char *what)
{
	return cd_error_set(err, map_rc(rc), "state: %s: %s", what,
			    st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
}

static int exec_sql(struct state *st, const char *sql, struct cd_error *err)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sql_err(st, rc, err, sql);
}

static void finalizep(sqlite3_stmt **s)
{
	sqlite3_finalize(*s);
}
#define _cleanup_stmt_ _cleanup_(finalizep)

static int prepare(struct state *st, const char *sql, sqlite3_stmt **ret)
{
	int rc = sqlite3_prepare_v2(st->db, sql, -1, ret, NULL);

	return rc == SQLITE_OK ? 0 : map_rc(rc);
}

/*
 * Migrations: index i brings the schema from version i to i + 1. Append only; never edit a
 * released step. PRAGMA user_version records the applied count.
 */
static const char *const migrations[] = {
	/* 1: initial schema */
	"CREATE TABLE tasks ("
	" task_id TEXT PRIMARY KEY NOT NULL,"
	" request_id TEXT UNIQUE,"
	" job_url TEXT NOT NULL,"
	" task_index INTEGER NOT NULL,"
	" spec TEXT NOT NULL,"
	" desired TEXT NOT NULL,"
	" state TEXT NOT NULL,"
	" reason TEXT NOT NULL DEFAULT '',"
	" message TEXT,"
	" exit_code INTEGER NOT NULL DEFAULT -1,"
	" signal INTEGER NOT NULL DEFAULT 0,"
	" restarts INTEGER NOT NULL DEFAULT 0,"
	" generation INTEGER NOT NULL DEFAULT 0,"
	" shim_pid INTEGER NOT NULL DEFAULT 0,"
	" shim_start INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL,"
	" started_at INTEGER NOT NULL DEFAULT 0,"
	" finished_at INTEGER NOT NULL DEFAULT 0,"
	" updated_at INTEGER NOT NULL,"
	" version INTEGER NOT NULL,"
	" artifact TEXT);"
	"CREATE INDEX tasks_job ON tasks(job_url);"
	"CREATE TABLE events ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" ts INTEGER NOT NULL,"
	" task_id TEXT NOT NULL DEFAULT '',"
	" type TEXT NOT NULL,"
	" data TEXT NOT NULL DEFAULT '{}');"
	"CREATE TABLE outbox ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" msg_id TEXT UNIQUE NOT NULL,"
	" task_id TEXT NOT NULL DEFAULT '',"
	" kind TEXT NOT NULL,"
	" body TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_attempt_at INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
	/* 2: who put the task (only the cluster manager's tasks are reported to it) */
	"ALTER TABLE tasks ADD COLUMN from_manager INTEGER NOT NULL DEFAULT 0;",
	/* 3: the outbox keeps only the newest undelivered message per task and kind (see
	 * append_outbox); coalesce what an older taskd queued */
	"CREATE INDEX outbox_task ON outbox(task_id, kind);"
	"DELETE FROM outbox WHERE task_id != '' AND id NOT IN"
	" (SELECT MAX(id) FROM outbox WHERE task_id != '' GROUP BY task_id, kind);",
};

static int get_user_version(struct state *st, int *ret)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r = prepare(st, "PRAGMA user_version", &s);

	if (r < 0)
		return r;
	if (sqlite3_step(s) != SQLITE_ROW)
		return map_rc(sqlite3_errcode(st->db)) ?: -EIO;
	*ret = sqlite3_column_int(s, 0);
	return 0;
}

static int migrate(struct state *st, struct cd_error *err)
{
	int version, r;

	r = exec_sql(st, "BEGIN IMMEDIATE", err);
	if (r < 0)
		return r;
	r = get_user_version(st, &version);
	if (r < 0) {
		sql_err(st, sqlite3_errcode(st->db), err, "read schema version");
		goto rollback;
	}
	if (version > (int)ARRAY_SIZE(migrations)) {
		r = cd_error_set(err, -EPROTO,
				 "state: database schema version %d is newer than this taskd (%zu)",
				 version, ARRAY_SIZE(migrations));
		goto rollback;
	}
	for (int i = version; i < (int)ARRAY_SIZE(migrations); i++) {
		char sql[64];

		r = exec_sql(st, migrations[i], err);
		if (r < 0)
			goto rollback;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", i + 1);
		r = exec_sql(st, sql, err);
		if (r < 0)
			goto rollback;
	}
	return exec_sql(st, "COMMIT", err);
rollback:
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

int state_open(const char *path, struct state **ret, struct cd_error *err)
{
	struct state *st;
	int rc, r;

	st = calloc(1, sizeof(*st));
	if (!st)
		return cd_error_set(err, -ENOMEM, "state: out of memory");
	rc = sqlite3_open_v2(path, &st->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
				     SQLITE_OPEN_EXRESCODE,
			     NULL);
	if (rc != SQLITE_OK) {
		r = cd_error_set(err, map_rc(rc), "state: open %s: %s", path,
				 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		state_close(st);
		return r;
	}
	sqlite3_busy_timeout(st->db, 5000);
	/* WAL: readers never block the writer; synchronous=FULL: a COMMIT that returned is on disk
	 * (a state change is acknowledged only after it is durable). */
	r = exec_sql(st, "PRAGMA journal_mode=WAL", err);
	if (r >= 0)
		r = exec_sql(st, "PRAGMA synchronous=FULL", err);
	if (r >= 0)
		r = exec_sql(st, "PRAGMA foreign_keys=ON", err);
	if (r >= 0)
		r = migrate(st, err);
	if (r < 0) {
		state_close(st);
		return r;
	}
	*ret = st;
	return 0;
}

void state_close(struct state *st)
{
	if (!st)
		return;
	sqlite3_close_v2(st->db);
	free(st);
}

int state_schema_version(struct state *st)
{
	int v, r = get_user_version(st, &v);

	return r < 0 ? r : v;
}

static int bind_text_opt(sqlite3_stmt *s, int idx, const char *v)
{
	return v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, idx);
}

static int step_done(struct state *st, sqlite3_stmt *s, struct cd_error *err, const char *what)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return sql_err(st, rc, err, what);
}

static int append_event(struct state *st, usec_t ts, const char *task_id, const char *type,
			const char *data, struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r = prepare(st, "INSERT INTO events (ts, task_id, type, data) VALUES (?, ?, ?, ?)", &s);

	if (r < 0)
		return sql_err(st, sqlite3_errcode(st->db), err, "prepare event");
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ts);
	sqlite3_bind_text(s, 2, task_id ? task_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, data ? data : "{}", -1, SQLITE_STATIC);
	return step_done(st, s, err, "insert event");
}

/*
 * Queue a message. A task's message carries the task's whole state and the manager applies only
 * the highest seq (= outbox id) it has seen per task, so an undelivered older message of the
 * same task and kind says nothing the new one does not: it is deleted here, in the caller's
 * transaction. That bounds the outbox by the number of tasks however long the manager is
 * unreachable. The new message inherits the replaced one's attempts and retry time: the backoff
 * is about the manager's reachability, and a crash-looping task must not turn every restart
 * into an immediate attempt. Host-level messages (no task) are never coalesced.
 */
static int append_outbox(struct state *st, const char *kind, const char *task_id, const char *body,
			 struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL, *d = NULL;
	char msg_id[ID_LEN + 1];
	bool per_task = task_id && *task_id;
	int r = prepare(st,
			per_task ?
				"INSERT INTO outbox (msg_id, task_id, kind, body, created_at, "
				"attempts, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, "
				"(SELECT IFNULL(MAX(attempts), 0) FROM outbox WHERE task_id = ?2 "
				"AND kind = ?3), (SELECT IFNULL(MAX(next_attempt_at), 0) FROM "
				"outbox WHERE task_id = ?2 AND kind = ?3))" :
				"INSERT INTO outbox (msg_id, task_id, kind, body, created_at) "
				"VALUES (?1, ?2, ?3, ?4, ?5)",
			&s);

	if (r < 0)
		return sql_err(st, sqlite3_errcode(st->db), err, "prepare outbox");
	id_new(msg_id);
	sqlite3_bind_text(s, 1, msg_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, task_id ? task_id : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, body, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)clock_real_usec());
	r = step_done(st, s, err, "insert outbox");
	if (r < 0 || !per_task)
		return r;
	r = prepare(st, "DELETE FROM outbox WHERE task_id = ?1 AND kind = ?2 AND id < ?3", &d);
	if (r < 0)
		return sql_err(st, sqlite3_errcode(st->db), err, "prepare outbox coalesce");
	sqlite3_bind_text(d, 1, task_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(d, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(d, 3, sqlite3_last_insert_rowid(st->db));
	r = step_done(st, d, err, "coalesce outbox");
	if (r >= 0)
		st->coalesced_tx += (uint64_t)sqlite3_changes(st->db);
	return r;
}

/* Run fn inside BEGIN IMMEDIATE ... COMMIT; roll back on failure. */
static int begin(struct state *st, struct cd_error *err)
{
	st->coalesced_tx = 0;
	return exec_sql(st, "BEGIN IMMEDIATE", err);
}

static int finish(struct state *st, int r, struct cd_error *err)
{
	if (r < 0) {
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return r;
	}
	r = exec_sql(st, "COMMIT", err);
	if (r < 0)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	else
		st->coalesced += st->coalesced_tx;
	return r;
}

static const char task_columns[] =
	"task_id, request_id, job_url, task_index, spec, desired, state, reason, message, "
	"exit_code, signal, restarts, generation, shim_pid, shim_start, created_at, started_at, "
	"finished_at, updated_at, version, artifact, from_manager";

static void bind_task(sqlite3_stmt *s, const struct task_record *t)
{
	sqlite3_bind_text(s, 1, t->task_id, -1, SQLITE_STATIC);
	bind_text_opt(s, 2, t->request_id);
	sqlite3_bind_text(s, 3, t->job_url ? t->job_url : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, t->task_index);
	sqlite3_bind_text(s, 5, t->spec_json ? t->spec_json : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, task_state_to_string(t->desired), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, task_state_to_string(t->state), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, t->reason, -1, SQLITE_STATIC);
	bind_text_opt(s, 9, t->message);
	sqlite3_bind_int(s, 10, t->exit_code);
	sqlite3_bind_int(s, 11, t->signal);
	sqlite3_bind_int64(s, 12, t->restarts);
	sqlite3_bind_int64(s, 13, t->generation);
	sqlite3_bind_int64(s, 14, t->shim_pid);
	sqlite3_bind_int64(s, 15, (sqlite3_int64)t->shim_start);
	sqlite3_bind_int64(s, 16, (sqlite3_int64)t->created_at);
	sqlite3_bind_int64(s, 17, (sqlite3_int64)t->started_at);
	sqlite3_bind_int64(s, 18, (sqlite3_int64)t->finished_at);
	sqlite3_bind_int64(s, 19, (sqlite3_int64)t->updated_at);
	sqlite3_bind_int64(s, 20, (sqlite3_int64)t->version);
	bind_text_opt(s, 21, t->artifact_json);
	sqlite3_bind_int(s, 22, t->from_manager ? 1 : 0);
}

static int column_dup(sqlite3_stmt *s, int col, char **ret)
{
	const unsigned char *v = sqlite3_column_text(s, col);

	return dup_opt((const char *)v, ret);
}

static int read_task(sqlite3_stmt *s, struct task_record *ret)
{
	struct task_record t = { 0 };
	const char *v;

	v = (const char *)sqlite3_column_text(s, 0);
	if (!v || strlen(v) >= TASK_ID_BUF)
		return -EUCLEAN;
	strcpy(t.task_id, v);
	if (column_dup(s, 1, &t.request_id) < 0 || column_dup(s, 2, &t.job_url) < 0 ||
	    column_dup(s, 4, &t.spec_json) < 0 || column_dup(s, 8, &t.message) < 0 ||
	    column_dup(s, 20, &t.artifact_json) < 0) {
		task_record_release(&t);
		return -ENOMEM;
	}
	t.task_index = (unsigned)sqlite3_column_int64(s, 3);
	if (task_state_from_string((const char *)sqlite3_column_text(s, 5), &t.desired) < 0 ||
	    task_state_from_string((const char *)sqlite3_column_text(s, 6), &t.state) < 0) {
		task_record_release(&t);
		return -EUCLEAN;
	}
	v = (const char *)sqlite3_column_text(s, 7);
	snprintf(t.reason, sizeof(t.reason), "%s", v ? v : "");
	t.exit_code = sqlite3_column_int(s, 9);
	t.signal = sqlite3_column_int(s, 10);
	t.restarts = (unsigned)sqlite3_column_int64(s, 11);
	t.generation = (unsigned)sqlite3_column_int64(s, 12);
	t.shim_pid = (pid_t)sqlite3_column_int64(s, 13);
	t.shim_start = (uint64_t)sqlite3_column_int64(s, 14);
	t.created_at = (usec_t)sqlite3_column_int64(s, 15);
	t.started_at = (usec_t)sqlite3_column_int64(s, 16);
	t.finished_at = (usec_t)sqlite3_column_int64(s, 17);
	t.updated_at = (usec_t)sqlite3_column_int64(s, 18);
	t.version = (uint64_t)sqlite3_column_int64(s, 19);
	t.from_manager = sqlite3_column_int(s, 21) != 0;
	*ret = t;
	return 0;
}

int state_task_insert(struct state *st, struct task_record *t, const char *event_type,
		      const char *event_data, const char *outbox_body, struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	char sql[512];
	int r;

	if (!task_state_to_string(t->state) || !task_state_to_string(t->desired))
		return cd_error_set(err, -EINVAL, "state: invalid task state");
	r = begin(st, err);
	if (r < 0)
		return r;
	t->version = 1;
	snprintf(
		sql, sizeof(sql),
		"INSERT INTO tasks (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
		"?, ?, ?, ?, ?)",
		task_columns);
	r = prepare(st, sql, &s);
	if (r < 0)
		r = sql_err(st, sqlite3_errcode(st->db), err, "prepare insert task");
	else {
		bind_task(s, t);
		r = step_done(st, s, err, "insert task");
	}
	if (r >= 0)
		r = append_event(st, t->updated_at, t->task_id, event_type, event_data, err);
	if (r >= 0 && outbox_body)
		r = append_outbox(st, "task_state", t->task_id, outbox_body, err);
	return finish(st, r, err);
}

int state_task_save(struct state *st, struct task_record *t, const char *event_type,
		    const char *event_data, const char *outbox_body, struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r;

	if (!task_state_to_string(t->state) || !task_state_to_string(t->desired) || t->version < 2)
		return cd_error_set(err, -EINVAL, "state: invalid task record");
	r = begin(st, err);
	if (r < 0)
		return r;
	r = prepare(
		st,
		"UPDATE tasks SET request_id = ?2, job_url = ?3, task_index = ?4, spec = ?5, "
		"desired = ?6, state = ?7, reason = ?8, message = ?9, exit_code = ?10, "
		"signal = ?11, restarts = ?12, generation = ?13, shim_pid = ?14, "
		"shim_start = ?15, created_at = ?16, started_at = ?17, finished_at = ?18, "
		"updated_at = ?19, version = ?20, artifact = ?21, from_manager = ?22 WHERE task_id = ?1 AND version = ?20 - 1",
		&s);
	if (r < 0)
		r = sql_err(st, sqlite3_errcode(st->db), err, "prepare update task");
	else {
		bind_task(s, t);
		r = step_done(st, s, err, "update task");
	}
	if (r >= 0 && sqlite3_changes(st->db) == 0) {
		_cleanup_stmt_ sqlite3_stmt *q = NULL;

		/* Tell "gone" from "someone else saved first". */
		r = prepare(st, "SELECT version FROM tasks WHERE task_id = ?", &q);
		if (r >= 0) {
			sqlite3_bind_text(q, 1, t->task_id, -1, SQLITE_STATIC);
			r = sqlite3_step(q) == SQLITE_ROW ?
				    cd_error_set(err, -ESTALE,
						 "state: task %s changed concurrently",
						 t->task_id) :
				    cd_error_set(err, -ENOENT, "state: no task %s", t->task_id);
		}
	}
	if (r >= 0)
		r = append_event(st, t->updated_at, t->task_id, event_type, event_data, err);
	if (r >= 0 && outbox_body)
		r = append_outbox(st, "task_state", t->task_id, outbox_body, err);
	return finish(st, r, err);
}

int state_task_delete(struct state *st, const char *task_id, struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r = begin(st, err);

	if (r < 0)
		return r;
	r = prepare(st, "DELETE FROM tasks WHERE task_id = ?", &s);
	if (r < 0)
		r = sql_err(st, sqlite3_errcode(st->db), err, "prepare delete task");
	else {
		sqlite3_bind_text(s, 1, task_id, -1, SQLITE_STATIC);
		r = step_done(st, s, err, "delete task");
	}
	if (r >= 0 && sqlite3_changes(st->db) == 0)
		r = cd_error_set(err, -ENOENT, "state: no task %s", task_id);
	if (r >= 0)
		r = append_event(st, clock_real_usec(), task_id, "deleted", NULL, err);
	return finish(st, r, err);
}

static int get_one(struct state *st, const char *where, const char *key, struct task_record *ret)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	char sql[512];
	int rc, r;

	snprintf(sql, sizeof(sql), "SELECT %s FROM tasks WHERE %s = ?", task_columns, where);
	r = prepare(st, sql, &s);
	if (r < 0)
		return r;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return map_rc(rc);
	return read_task(s, ret);
}

int state_task_get(struct state *st, const char *task_id, struct task_record *ret)
{
	return get_one(st, "task_id", task_id, ret);
}

int state_task_get_by_request(struct state *st, const char *request_id, struct task_record *ret)
{
	return get_one(st, "request_id", request_id, ret);
}

int state_task_list(struct state *st, const char *job_url, int state_filter,
		    struct task_record **ret, size_t *ret_n)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	struct task_record *v = NULL;
	size_t n = 0, alloc = 0;
	char sql[512];
	int rc, r;

	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM tasks WHERE (?1 IS NULL OR job_url = ?1) AND "
		 "(?2 IS NULL OR state = ?2) ORDER BY task_id",
		 task_columns);
	r = prepare(st, sql, &s);
	if (r < 0)
		return r;
	bind_text_opt(s, 1, job_url);
	bind_text_opt(s, 2, state_filter >= 0 ? task_state_to_string(state_filter) : NULL);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == alloc) {
			size_t na = alloc ? alloc * 2 : 16;
			struct task_record *nv = reallocarray(v, na, sizeof(*v));

			if (!nv) {
				task_record_array_free(v, n);
				return -ENOMEM;
			}
			v = nv;
			alloc = na;
		}
		r = read_task(s, &v[n]);
		if (r < 0) {
			task_record_array_free(v, n);
			return r;
		}
		n++;
	}
	if (rc != SQLITE_DONE) {
		task_record_array_free(v, n);
		return map_rc(rc);
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int state_events_after(struct state *st, uint64_t after, size_t limit, struct state_event **ret,
		       size_t *ret_n)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	struct state_event *v;
	size_t n = 0;
	int rc, r;

	if (limit == 0 || limit > 10000)
		return -EINVAL;
	v = calloc(limit, sizeof(*v));
	if (!v)
		return -ENOMEM;
	r = prepare(st,
		    "SELECT seq, ts, task_id, type, data FROM events WHERE seq > ? "
		    "ORDER BY seq LIMIT ?",
		    &s);
	if (r < 0) {
		free(v);
		return r;
	}
	sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct state_event *e = &v[n];
		const char *tid = (const char *)sqlite3_column_text(s, 2);
		const char *type = (const char *)sqlite3_column_text(s, 3);

		e->seq = (uint64_t)sqlite3_column_int64(s, 0);
		e->ts = (usec_t)sqlite3_column_int64(s, 1);
		snprintf(e->task_id, sizeof(e->task_id), "%s", tid ? tid : "");
		snprintf(e->type, sizeof(e->type), "%s", type ? type : "");
		if (column_dup(s, 4, &e->data) < 0) {
			state_event_array_free(v, n);
			return -ENOMEM;
		}
		n++;
	}
	if (rc != SQLITE_DONE) {
		state_event_array_free(v, n);
		return map_rc(rc);
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static int select_u64(struct state *st, const char *sql, uint64_t *ret)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int rc, r = prepare(st, sql, &s);

	if (r < 0)
		return r;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW)
		return map_rc(rc) ?: -EIO;
	*ret = (uint64_t)sqlite3_column_int64(s, 0);
	return 0;
}

int state_events_last(struct state *st, uint64_t *ret)
{
	/* sqlite_sequence survives deletes, so a trimmed log still reports its true head. */
	uint64_t a = 0, b = 0;
	int r = select_u64(st, "SELECT COALESCE(MAX(seq), 0) FROM events", &a);

	if (r < 0)
		return r;
	r = select_u64(st,
		       "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'),"
		       " 0)",
		       &b);
	if (r < 0)
		return r;
	*ret = MAX(a, b);
	return 0;
}

int state_events_trim(struct state *st, uint64_t keep)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r = prepare(
		st,
		"DELETE FROM events WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM events) - ?",
		&s);

	if (r < 0)
		return r;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)keep);
	return map_rc(sqlite3_step(s));
}

int state_outbox_add(struct state *st, const char *kind, const char *task_id, const char *body,
		     struct cd_error *err)
{
	int r = begin(st, err);

	if (r < 0)
		return r;
	r = append_outbox(st, kind, task_id, body, err);
	return finish(st, r, err);
}

int state_outbox_due(struct state *st, usec_t now, size_t limit, struct outbox_msg **ret,
		     size_t *ret_n)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	struct outbox_msg *v;
	size_t n = 0;
	int rc, r;

	if (limit == 0 || limit > 10000)
		return -EINVAL;
	v = calloc(limit, sizeof(*v));
	if (!v)
		return -ENOMEM;
	r = prepare(st,
		    "SELECT id, msg_id, task_id, kind, body, attempts, next_attempt_at FROM outbox "
		    "WHERE next_attempt_at <= ? ORDER BY id LIMIT ?",
		    &s);
	if (r < 0) {
		free(v);
		return r;
	}
	sqlite3_bind_int64(s, 1, (sqlite3_int64)now);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)limit);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct outbox_msg *m = &v[n];
		const char *mid = (const char *)sqlite3_column_text(s, 1);
		const char *tid = (const char *)sqlite3_column_text(s, 2);
		const char *kind = (const char *)sqlite3_column_text(s, 3);

		m->id = (uint64_t)sqlite3_column_int64(s, 0);
		snprintf(m->msg_id, sizeof(m->msg_id), "%s", mid ? mid : "");
		snprintf(m->task_id, sizeof(m->task_id), "%s", tid ? tid : "");
		snprintf(m->kind, sizeof(m->kind), "%s", kind ? kind : "");
		m->attempts = (unsigned)sqlite3_column_int64(s, 5);
		m->next_attempt_at = (usec_t)sqlite3_column_int64(s, 6);
		if (column_dup(s, 4, &m->body) < 0) {
			outbox_msg_array_free(v, n);
			return -ENOMEM;
		}
		n++;
	}
	if (rc != SQLITE_DONE) {
		outbox_msg_array_free(v, n);
		return map_rc(rc);
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

uint64_t state_outbox_coalesced(const struct state *st)
{
	return st->coalesced;
}

int state_outbox_count(struct state *st, uint64_t *ret)
{
	return select_u64(st, "SELECT COUNT(*) FROM outbox", ret);
}

int state_outbox_ack(struct state *st, uint64_t id)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r = prepare(st, "DELETE FROM outbox WHERE id = ?", &s);

	if (r < 0)
		return r;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
	r = map_rc(sqlite3_step(s));
	if (r < 0)
		return r;
	return sqlite3_changes(st->db) > 0 ? 0 : -ENOENT;
}

int state_outbox_retry(struct state *st, uint64_t id, usec_t when)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r = prepare(
		st, "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
		&s);

	if (r < 0)
		return r;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)when);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)id);
	r = map_rc(sqlite3_step(s));
	if (r < 0)
		return r;
	return sqlite3_changes(st->db) > 0 ? 0 : -ENOENT;
}

int state_meta_get(struct state *st, const char *key, char **ret)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int rc, r = prepare(st, "SELECT value FROM meta WHERE key = ?", &s);

	if (r < 0)
		return r;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return map_rc(rc);
	return column_dup(s, 0, ret);
}

int state_meta_set(struct state *st, const char *key, const char *value)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r = prepare(st, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", &s);

	if (r < 0)
		return r;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
	return map_rc(sqlite3_step(s));
}
