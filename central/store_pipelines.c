/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SQLite side of store_pipelines.h. The tables are created by store_open() (store_migrations.c,
 * version 2), like every table of the store.
 */
#include "central/store_pipelines.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "central/store_internal.h"
#include "lib/macro.h"
#include "lib/str.h"

/* ---- small helpers ------------------------------------------------------------------------- */

/* Bind by a format: 's' text (NULL → SQL NULL), 'i' int64_t. */
static int vbind(sqlite3 *db, sqlite3_stmt *st, struct cd_error *err, const char *fmt, va_list ap)
{
	int r = 0;

	for (int i = 0; fmt[i] && r == 0; i++) {
		if (fmt[i] == 's')
			r = store_bind_text(st, i + 1, va_arg(ap, const char *));
		else
			r = store_bind_int64(st, i + 1, va_arg(ap, int64_t));
	}
	if (r < 0)
		return cd_error_set(err, r, "bind: %s", sqlite3_errmsg(db));
	return 0;
}

/* Prepare + bind (store_prepare(): the statement belongs to the connection). */
static int vprep(sqlite3 *db, sqlite3_stmt **ret, struct cd_error *err, const char *sql,
		 const char *fmt, va_list ap)
{
	int r = store_prepare(db, sql, ret, err);

	return r < 0 ? r : vbind(db, *ret, err, fmt, ap);
}

static int prep(sqlite3 *db, sqlite3_stmt **ret, struct cd_error *err, const char *sql,
		const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vprep(db, ret, err, sql, fmt, ap);
	va_end(ap);
	return r;
}

/* Step: 1 = row, 0 = done, < 0 mapped error. */
static int step(sqlite3 *db, sqlite3_stmt *st, struct cd_error *err, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_map_rc(db, rc, err, what);
}

static int vexec(sqlite3 *db, struct cd_error *err, const char *what, const char *sql,
		 const char *fmt, va_list ap)
{
	sqlite3_stmt *st = NULL;
	int r = vprep(db, &st, err, sql, fmt, ap);

	if (r >= 0)
		r = step(db, st, err, what);
	return r < 0 ? r : sqlite3_changes(db);
}

/* Run one statement to completion on db (taken with store_enter()); returns the number of
 * changed rows or < 0. */
static int exec_fmt(sqlite3 *db, struct cd_error *err, const char *what, const char *sql,
		    const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vexec(db, err, what, sql, fmt, ap);
	va_end(ap);
	return r;
}

/* exec_fmt() in a write transaction of its own (or the caller's): the number of changed rows. */
static int exec_tx(struct store *s, struct cd_error *err, const char *what, const char *sql,
		   const char *fmt, ...)
{
	va_list ap;
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	va_start(ap, fmt);
	r = vexec(db, err, what, sql, fmt, ap);
	va_end(ap);
	return store_leave(s, true, r, err);
}

/* The first row of a query on db, decoded into ret by row (which leaves nothing allocated when
 * it fails): 1, 0 when there is no row, < 0 on errors. */
static int query_one(sqlite3 *db, struct cd_error *err, const char *what, store_row_fn row,
		     void *ret, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vprep(db, &st, err, sql, fmt, ap);
	va_end(ap);
	if (r >= 0)
		r = step(db, st, err, what);
	if (r > 0) {
		r = row(st, ret);
		r = r < 0 ? cd_error_set(err, r, "%s: decoding row failed", what) : 1;
	}
	sqlite3_reset(st);
	return r;
}

/* Row function of a query whose answer is one integer (the first column), into an int64_t. */
static int int_row(sqlite3_stmt *st, void *elem)
{
	*(int64_t *)elem = sqlite3_column_int64(st, 0);
	return 0;
}

/* Every row of a query, on a read connection (or the caller's transaction), decoded by row
 * into a grown array (store_collect()). */
static int query_all(struct store *s, size_t elem_size, store_row_fn row, store_release_fn release,
		     void **ret, size_t *ret_n, struct cd_error *err, const char *what,
		     const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	int r;
	sqlite3 *db = store_enter(s, false, &r, err);

	va_start(ap, fmt);
	r = vprep(db, &st, err, sql, fmt, ap);
	va_end(ap);
	if (r >= 0)
		r = store_collect(db, st, elem_size, row, release, ret, ret_n, err, what);
	sqlite3_reset(st);
	return store_leave(s, false, r, err);
}

static void list_free(void *v, size_t n, size_t elem_size, store_release_fn release)
{
	for (size_t i = 0; v && i < n; i++)
		release((char *)v + i * elem_size);
	free(v);
}

static int col_dup(sqlite3_stmt *st, int i, char **ret)
{
	return store_col_strdup(st, i, ret);
}

/* ---- pipelines ----------------------------------------------------------------------------- */

void store_pipeline_release(struct store_pipeline *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->owner);
	free(p->repo);
	free(p->branch);
	free(p->last_polled_commit);
	free(p->created_by);
	memset(p, 0, sizeof(*p));
}

static void pipeline_release(void *elem)
{
	store_pipeline_release(elem);
}

void store_pipeline_list_free(struct store_pipeline *v, size_t n)
{
	list_free(v, n, sizeof(*v), pipeline_release);
}

#define PIPELINE_COLS                                                                              \
	"p.pipeline_id, p.name, p.owner, p.repo, p.branch, p.last_polled_commit, p.created_by,"    \
	" p.created_at,"                                                                           \
	" (SELECT COALESCE(MAX(version), 0) FROM pipeline_schemas s"                               \
	"   WHERE s.pipeline_id = p.pipeline_id AND s.state = 'active'),"                          \
	" (SELECT COALESCE(MAX(version), 0) FROM pipeline_schemas s"                               \
	"   WHERE s.pipeline_id = p.pipeline_id)"

static int pipeline_row(sqlite3_stmt *st, void *elem)
{
	struct store_pipeline *p = elem;

	memset(p, 0, sizeof(*p));
	store_col_strcpy(st, 0, p->pipeline_id, sizeof(p->pipeline_id));
	if (col_dup(st, 1, &p->name) < 0 || col_dup(st, 2, &p->owner) < 0 ||
	    col_dup(st, 3, &p->repo) < 0 || col_dup(st, 4, &p->branch) < 0 ||
	    col_dup(st, 5, &p->last_polled_commit) < 0 || col_dup(st, 6, &p->created_by) < 0) {
		store_pipeline_release(p);
		return -ENOMEM;
	}
	p->created_at = (usec_t)sqlite3_column_int64(st, 7);
	p->active_version = sqlite3_column_int64(st, 8);
	p->latest_version = sqlite3_column_int64(st, 9);
	return 0;
}

int store_pipeline_create(struct store *s, const char *name, const char *owner, const char *repo,
			  const char *branch, const char *schema_json, const char *created_by,
			  usec_t now, char ret_id[static ID_LEN + 1], struct cd_error *err)
{
	char id[ID_LEN + 1];
	int r;
	sqlite3 *db;

	id_new(id);
	db = store_enter(s, true, &r, err);
	if (!db)
		return r;
	r = exec_fmt(db, err, "insert pipeline",
		     "INSERT INTO pipelines(pipeline_id, name, owner, repo, branch, created_by,"
		     " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		     "ssssssi", id, name, owner, repo, branch, created_by, (int64_t)now);
	if (r == -EEXIST) {
		cd_error_reset(err);
		cd_error_set(err, -EEXIST, "a pipeline named \"%s\" exists", name);
	}
	if (r >= 0)
		r = exec_fmt(db, err, "insert schema",
			     "INSERT INTO pipeline_schemas(pipeline_id, version, state, schema,"
			     " created_by, created_at) VALUES (?, 1, 'active', ?, ?, ?)",
			     "sssi", id, schema_json, created_by, (int64_t)now);
	r = store_leave(s, true, r < 0 ? r : 0, err);
	if (r >= 0)
		memcpy(ret_id, id, sizeof(id));
	return r;
}

int store_pipeline_get(struct store *s, const char *pipeline_id, struct store_pipeline *ret,
		       struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, false, &r, err);

	r = query_one(db, err, "get pipeline", pipeline_row, ret,
		      "SELECT " PIPELINE_COLS " FROM pipelines p WHERE pipeline_id = ?", "s",
		      pipeline_id);
	if (r == 0)
		r = cd_error_set(err, -ENOENT, "no pipeline %s", pipeline_id);
	return store_leave(s, false, r < 0 ? r : 0, err);
}

int store_pipeline_list(struct store *s, const char *owner, const char *after, size_t limit,
			struct store_pipeline **ret, size_t *ret_n, struct cd_error *err)
{
	return query_all(s, sizeof(**ret), pipeline_row, pipeline_release, (void **)ret, ret_n, err,
			 "list pipelines",
			 "SELECT " PIPELINE_COLS " FROM pipelines p"
			 " WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR pipeline_id > ?2)"
			 " ORDER BY pipeline_id LIMIT ?3",
			 "ssi", owner, after, limit ? (int64_t)limit : (int64_t)-1);
}

int store_pipeline_list_polled(struct store *s, struct store_pipeline **ret, size_t *ret_n,
			       struct cd_error *err)
{
	return query_all(s, sizeof(**ret), pipeline_row, pipeline_release, (void **)ret, ret_n, err,
			 "list polled pipelines",
			 "SELECT " PIPELINE_COLS " FROM pipelines p"
			 " WHERE repo IS NOT NULL AND repo != '' ORDER BY pipeline_id",
			 "");
}

int store_pipeline_set_polled(struct store *s, const char *pipeline_id, const char *commit,
			      struct cd_error *err)
{
	int r = exec_tx(s, err, "set polled",
			"UPDATE pipelines SET last_polled_commit = ? WHERE pipeline_id = ?", "ss",
			commit, pipeline_id);

	if (r == 0)
		return cd_error_set(err, -ENOENT, "no pipeline %s", pipeline_id);
	return r < 0 ? r : 0;
}

/* ---- schemas ------------------------------------------------------------------------------- */

void store_schema_release(struct store_schema *v)
{
	if (!v)
		return;
	free(v->schema);
	free(v->created_by);
	memset(v, 0, sizeof(*v));
}

static int schema_row(sqlite3_stmt *st, void *elem)
{
	struct store_schema *v = elem;

	*v = (struct store_schema){ .version = sqlite3_column_int64(st, 0),
				    .created_at = (usec_t)sqlite3_column_int64(st, 4) };
	store_col_strcpy(st, 1, v->state, sizeof(v->state));
	if (col_dup(st, 2, &v->schema) < 0 || col_dup(st, 3, &v->created_by) < 0) {
		store_schema_release(v);
		return -ENOMEM;
	}
	return 0;
}

int store_schema_get(struct store *s, const char *pipeline_id, int64_t version,
		     struct store_schema *ret, struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, false, &r, err);

	r = query_one(db, err, "get schema", schema_row, ret,
		      "SELECT version, state, schema, created_by, created_at FROM pipeline_schemas"
		      " WHERE pipeline_id = ?1 AND ((?2 = 0 AND state = 'active') OR version = ?2)",
		      "si", pipeline_id, version);
	if (r == 0)
		r = version ? cd_error_set(err, -ENOENT, "no schema version %lld",
					   (long long)version) :
			      cd_error_set(err, -ENOENT, "no active schema version");
	return store_leave(s, false, r < 0 ? r : 0, err);
}

static int pipeline_exists(sqlite3 *db, const char *pipeline_id, struct cd_error *err)
{
	int64_t one;
	int r = query_one(db, err, "pipeline exists", int_row, &one,
			  "SELECT 1 FROM pipelines WHERE pipeline_id = ?", "s", pipeline_id);

	if (r == 0)
		return cd_error_set(err, -ENOENT, "no pipeline %s", pipeline_id);
	return r < 0 ? r : 0;
}

int store_schema_put(struct store *s, const char *pipeline_id, int64_t if_match,
		     const char *schema_json, const char *created_by, usec_t now,
		     int64_t *ret_version, struct cd_error *err)
{
	int64_t latest = 0;
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = pipeline_exists(db, pipeline_id, err);
	if (r >= 0)
		r = query_one(db, err, "latest version", int_row, &latest,
			      "SELECT COALESCE(MAX(version), 0) FROM pipeline_schemas"
			      " WHERE pipeline_id = ?",
			      "s", pipeline_id);
	if (r >= 0 && if_match >= 0 && if_match != latest)
		r = cd_error_set(err, -ESTALE, "latest schema version is %lld, not %lld",
				 (long long)latest, (long long)if_match);
	if (r >= 0)
		r = exec_fmt(db, err, "insert schema",
			     "INSERT INTO pipeline_schemas(pipeline_id, version, state, schema,"
			     " created_by, created_at) VALUES (?, ?, 'draft', ?, ?, ?)",
			     "sissi", pipeline_id, latest + 1, schema_json, created_by,
			     (int64_t)now);
	r = store_leave(s, true, r < 0 ? r : 0, err);
	if (r >= 0)
		*ret_version = latest + 1;
	return r;
}

int store_schema_activate(struct store *s, const char *pipeline_id, int64_t version,
			  struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = exec_fmt(
		db, err, "check version",
		"UPDATE pipeline_schemas SET state = state WHERE pipeline_id = ? AND version = ?",
		"si", pipeline_id, version);
	if (r == 0)
		r = cd_error_set(err, -ENOENT, "no schema version %lld", (long long)version);
	if (r >= 0)
		r = exec_fmt(db, err, "deactivate",
			     "UPDATE pipeline_schemas SET state = 'inactive'"
			     " WHERE pipeline_id = ? AND state = 'active' AND version != ?",
			     "si", pipeline_id, version);
	if (r >= 0)
		r = exec_fmt(db, err, "activate",
			     "UPDATE pipeline_schemas SET state = 'active'"
			     " WHERE pipeline_id = ? AND version = ?",
			     "si", pipeline_id, version);
	return store_leave(s, true, r < 0 ? r : 0, err);
}

/* ---- runs ---------------------------------------------------------------------------------- */

void store_run_release(struct store_run *r)
{
	if (!r)
		return;
	free(r->error_message);
	free(r->trigger);
	free(r->idempotency_key);
	free(r->created_by);
	memset(r, 0, sizeof(*r));
}

static void run_release(void *elem)
{
	store_run_release(elem);
}

void store_run_list_free(struct store_run *v, size_t n)
{
	list_free(v, n, sizeof(*v), run_release);
}

#define RUN_COLS                                                                                   \
	"pipeline_id, run, schema_version, commit_id, state, attempt, error_message, trigger,"     \
	" idempotency_key, created_by, created_at, last_update"

static int run_row(sqlite3_stmt *st, void *elem)
{
	struct store_run *v = elem;
	char state[16];

	memset(v, 0, sizeof(*v));
	store_col_strcpy(st, 0, v->pipeline_id, sizeof(v->pipeline_id));
	v->run = sqlite3_column_int64(st, 1);
	v->schema_version = sqlite3_column_int64(st, 2);
	store_col_strcpy(st, 3, v->commit, sizeof(v->commit));
	store_col_strcpy(st, 4, state, sizeof(state));
	if (run_state_from_string(state, &v->state) < 0)
		return -EBADMSG;
	v->attempt = sqlite3_column_int64(st, 5);
	if (col_dup(st, 6, &v->error_message) < 0 || col_dup(st, 7, &v->trigger) < 0 ||
	    col_dup(st, 8, &v->idempotency_key) < 0 || col_dup(st, 9, &v->created_by) < 0) {
		store_run_release(v);
		return -ENOMEM;
	}
	v->created_at = (usec_t)sqlite3_column_int64(st, 10);
	v->last_update = (usec_t)sqlite3_column_int64(st, 11);
	return 0;
}

static int get_run_locked(sqlite3 *db, const char *pipeline_id, int64_t run, struct store_run *ret,
			  struct cd_error *err)
{
	int r = query_one(db, err, "get run", run_row, ret,
			  "SELECT " RUN_COLS " FROM pipeline_runs WHERE pipeline_id = ?1"
			  " AND (run = ?2 OR (?2 = 0 AND run = (SELECT MAX(run) FROM pipeline_runs"
			  " WHERE pipeline_id = ?1)))",
			  "si", pipeline_id, run);

	if (r == 0)
		return run ? cd_error_set(err, -ENOENT, "no run %lld", (long long)run) :
			     cd_error_set(err, -ENOENT, "no runs yet");
	return r < 0 ? r : 0;
}

int store_run_get(struct store *s, const char *pipeline_id, int64_t run, struct store_run *ret,
		  struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, false, &r, err);

	r = get_run_locked(db, pipeline_id, run, ret, err);
	return store_leave(s, false, r, err);
}

static int create_run_locked(sqlite3 *db, const char *pipeline_id, const char *commit,
			     const char *key, const char *trigger, const char *created_by,
			     usec_t now, struct store_run *ret, bool *ret_created,
			     struct cd_error *err)
{
	sqlite3_stmt *st = NULL;
	int64_t version = 0, run = 0;
	int r = pipeline_exists(db, pipeline_id, err);

	if (r < 0)
		return r;
	if (key) {
		r = query_one(db, err, "find run by key", run_row, ret,
			      "SELECT " RUN_COLS " FROM pipeline_runs WHERE pipeline_id = ?"
			      " AND idempotency_key = ?",
			      "ss", pipeline_id, key);
		if (r != 0) {
			*ret_created = false;
			return r < 0 ? r : 0;
		}
	}
	r = prep(db, &st, err,
		 "SELECT (SELECT version FROM pipeline_schemas WHERE pipeline_id = ?1"
		 "   AND state = 'active'),"
		 " (SELECT COALESCE(MAX(run), 0) FROM pipeline_runs WHERE pipeline_id = ?1)",
		 "s", pipeline_id);
	if (r >= 0)
		r = step(db, st, err, "next run");
	if (r < 0)
		return r;
	if (sqlite3_column_type(st, 0) == SQLITE_NULL)
		return cd_error_set(err, -ENODATA, "pipeline has no active schema version");
	version = sqlite3_column_int64(st, 0);
	run = sqlite3_column_int64(st, 1) + 1;

	r = exec_fmt(db, err, "supersede",
		     "UPDATE pipeline_runs SET state = 'SUPERSEDED', last_update = ?,"
		     " error_message = 'superseded by run ' || ?"
		     " WHERE pipeline_id = ? AND state = 'PENDING'",
		     "iis", (int64_t)now, run, pipeline_id);
	if (r < 0)
		return r;
	r = exec_fmt(db, err, "insert run",
		     "INSERT INTO pipeline_runs(pipeline_id, run, schema_version, commit_id, state,"
		     " trigger, idempotency_key, created_by, created_at, last_update)"
		     " VALUES (?, ?, ?, ?, 'PENDING', ?, ?, ?, ?, ?)",
		     "siissssii", pipeline_id, run, version, commit, trigger, key, created_by,
		     (int64_t)now, (int64_t)now);
	if (r < 0)
		return r;
	*ret_created = true;
	return get_run_locked(db, pipeline_id, run, ret, err);
}

int store_run_create(struct store *s, const char *pipeline_id, const char *commit,
		     const char *idempotency_key, const char *trigger, const char *created_by,
		     usec_t now, struct store_run *ret, bool *ret_created, struct cd_error *err)
{
	struct store_run v = { 0 };
	bool created = false;
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = create_run_locked(db, pipeline_id, commit, idempotency_key, trigger, created_by, now,
			      &v, &created, err);
	r = store_leave(s, true, r, err);
	if (r < 0) {
		store_run_release(&v);
		return r;
	}
	*ret = v;
	*ret_created = created;
	return 0;
}

int store_run_list(struct store *s, const char *pipeline_id, int64_t before, size_t limit,
		   struct store_run **ret, size_t *ret_n, struct cd_error *err)
{
	return query_all(s, sizeof(**ret), run_row, run_release, (void **)ret, ret_n, err,
			 "list runs",
			 "SELECT " RUN_COLS " FROM pipeline_runs WHERE pipeline_id = ?1"
			 " AND (?2 = 0 OR run < ?2) ORDER BY run DESC LIMIT ?3",
			 "sii", pipeline_id, before, limit ? (int64_t)limit : (int64_t)-1);
}

int store_run_list_by_state(struct store *s, enum run_state state, struct store_run **ret,
			    size_t *ret_n, struct cd_error *err)
{
	return query_all(s, sizeof(**ret), run_row, run_release, (void **)ret, ret_n, err,
			 "list runs by state",
			 "SELECT " RUN_COLS " FROM pipeline_runs WHERE state = ?"
			 " ORDER BY created_at, run",
			 "s", run_state_to_string(state));
}

int store_run_set_state(struct store *s, const char *pipeline_id, int64_t run, enum run_state state,
			const char *message, usec_t now, struct cd_error *err)
{
	int r = exec_tx(s, err, "set run state",
			"UPDATE pipeline_runs SET state = ?, error_message = ?, last_update = ?"
			" WHERE pipeline_id = ? AND run = ?",
			"ssisi", run_state_to_string(state), message, (int64_t)now, pipeline_id,
			run);

	if (r == 0)
		return cd_error_set(err, -ENOENT, "no run %lld", (long long)run);
	return r < 0 ? r : 0;
}

static int start_next_locked(sqlite3 *db, const char *pipeline_id, usec_t now,
			     struct store_run *ret, struct cd_error *err)
{
	sqlite3_stmt *st = NULL;
	int64_t run;
	int r = prep(db, &st, err,
		     "SELECT (SELECT COUNT(*) FROM pipeline_runs WHERE pipeline_id = ?1"
		     "   AND state = 'IN_PROGRESS'),"
		     " (SELECT MIN(run) FROM pipeline_runs WHERE pipeline_id = ?1"
		     "   AND state = 'PENDING')",
		     "s", pipeline_id);

	if (r >= 0)
		r = step(db, st, err, "start next");
	if (r < 0)
		return r;
	if (sqlite3_column_int64(st, 0) > 0 || sqlite3_column_type(st, 1) == SQLITE_NULL)
		return 0;
	run = sqlite3_column_int64(st, 1);
	r = exec_fmt(db, err, "start run",
		     "UPDATE pipeline_runs SET state = 'IN_PROGRESS', last_update = ?"
		     " WHERE pipeline_id = ? AND run = ?",
		     "isi", (int64_t)now, pipeline_id, run);
	if (r < 0)
		return r;
	r = get_run_locked(db, pipeline_id, run, ret, err);
	return r < 0 ? r : 1;
}

int store_run_start_next(struct store *s, const char *pipeline_id, usec_t now,
			 struct store_run *ret, struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = start_next_locked(db, pipeline_id, now, ret, err);
	return store_leave(s, true, r, err);
}

int store_run_cancel(struct store *s, const char *pipeline_id, int64_t run, const char *who,
		     usec_t now, struct cd_error *err)
{
	_cleanup_free_ char *msg = NULL;
	struct store_run v = { 0 };
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = get_run_locked(db, pipeline_id, run, &v, err);
	if (r >= 0 && run_state_is_terminal(v.state))
		r = cd_error_set(err, -EALREADY, "run %lld already ended (%s)", (long long)run,
				 run_state_to_string(v.state));
	if (r >= 0 && asprintf(&msg, "cancelled by %s", who ? who : "unknown") < 0) {
		msg = NULL;
		r = -ENOMEM;
	}
	if (r >= 0)
		r = exec_fmt(db, err, "cancel run",
			     "UPDATE pipeline_runs SET state = 'CANCELLED', error_message = ?,"
			     " last_update = ? WHERE pipeline_id = ? AND run = ?",
			     "sisi", msg, (int64_t)now, pipeline_id, run);
	if (r >= 0)
		r = exec_fmt(db, err, "cancel actions",
			     "DELETE FROM action_queue WHERE pipeline_id = ? AND run = ?", "si",
			     pipeline_id, run);
	if (r >= 0)
		r = exec_fmt(db, err, "cancel stages",
			     "UPDATE action_state SET state = 'ERROR', error_message = ?,"
			     " last_update = ? WHERE pipeline_id = ? AND run = ?"
			     " AND state IN ('PENDING','IN_PROGRESS')",
			     "sisi", msg, (int64_t)now, pipeline_id, run);
	store_run_release(&v);
	return store_leave(s, true, r < 0 ? r : 0, err);
}

int store_run_retry(struct store *s, const char *pipeline_id, int64_t run, usec_t now,
		    int64_t *ret_attempt, struct cd_error *err)
{
	struct store_run v = { 0 };
	int64_t busy = 0;
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = get_run_locked(db, pipeline_id, run, &v, err);
	if (r >= 0 && v.state != RUN_ERROR && v.state != RUN_CANCELLED)
		r = cd_error_set(err, -EALREADY,
				 "run %lld is %s; only ERROR or CANCELLED runs "
				 "can be retried",
				 (long long)run, run_state_to_string(v.state));
	if (r >= 0)
		r = query_one(db, err, "busy runs", int_row, &busy,
			      "SELECT COUNT(*) FROM pipeline_runs WHERE pipeline_id = ?"
			      " AND state = 'IN_PROGRESS'",
			      "s", pipeline_id);
	if (r >= 0 && busy > 0)
		r = cd_error_set(err, -EBUSY, "another run of this pipeline is in progress");
	if (r >= 0)
		r = exec_fmt(
			db, err, "retry run",
			"UPDATE pipeline_runs SET state = 'IN_PROGRESS', attempt = attempt + 1,"
			" error_message = NULL, last_update = ? WHERE pipeline_id = ? AND run = ?",
			"isi", (int64_t)now, pipeline_id, run);
	r = store_leave(s, true, r < 0 ? r : 0, err);
	if (r >= 0)
		*ret_attempt = v.attempt + 1;
	store_run_release(&v);
	return r;
}

/* ---- stages -------------------------------------------------------------------------------- */

void store_stage_release(struct store_stage *st)
{
	if (!st)
		return;
	free(st->name);
	free(st->error_message);
	free(st->result);
	free(st->approved_by);
	memset(st, 0, sizeof(*st));
}

static void stage_release(void *elem)
{
	store_stage_release(elem);
}

void store_stage_list_free(struct store_stage *v, size_t n)
{
	list_free(v, n, sizeof(*v), stage_release);
}

/* Latest attempt per stage: the row whose attempt is the stage's maximum. */
#define STAGE_SELECT                                                                               \
	"SELECT a.schema_node, a.attempt, a.state, a.error_message, a.result, a.approved_by,"      \
	" a.claims, a.created_at, a.started_at, a.last_update,"                                    \
	" EXISTS (SELECT 1 FROM action_queue q WHERE q.pipeline_id = a.pipeline_id"                \
	"   AND q.run = a.run AND q.schema_node = a.schema_node AND q.attempt = a.attempt)"        \
	" FROM action_state a WHERE a.pipeline_id = ?1 AND a.run = ?2"                             \
	" AND a.attempt = (SELECT MAX(b.attempt) FROM action_state b"                              \
	"   WHERE b.pipeline_id = a.pipeline_id AND b.run = a.run"                                 \
	"   AND b.schema_node = a.schema_node)"

static int stage_row(sqlite3_stmt *st, void *elem)
{
	struct store_stage *v = elem;
	char state[16];

	memset(v, 0, sizeof(*v));
	v->attempt = sqlite3_column_int64(st, 1);
	store_col_strcpy(st, 2, state, sizeof(state));
	if (action_state_from_string(state, &v->state) < 0)
		return -EBADMSG;
	if (col_dup(st, 0, &v->name) < 0 || col_dup(st, 3, &v->error_message) < 0 ||
	    col_dup(st, 4, &v->result) < 0 || col_dup(st, 5, &v->approved_by) < 0) {
		store_stage_release(v);
		return -ENOMEM;
	}
	v->claims = sqlite3_column_int(st, 6);
	v->created_at = (usec_t)sqlite3_column_int64(st, 7);
	v->started_at = (usec_t)sqlite3_column_int64(st, 8);
	v->last_update = (usec_t)sqlite3_column_int64(st, 9);
	v->queued = sqlite3_column_int(st, 10) != 0;
	return 0;
}

int store_stage_list(struct store *s, const char *pipeline_id, int64_t run,
		     struct store_stage **ret, size_t *ret_n, struct cd_error *err)
{
	return query_all(s, sizeof(**ret), stage_row, stage_release, (void **)ret, ret_n, err,
			 "list stages", STAGE_SELECT, "si", pipeline_id, run);
}

/* The latest attempt of one stage: 1, or 0 when it has none. */
static int get_stage_locked(sqlite3 *db, const char *pipeline_id, int64_t run, const char *stage,
			    struct store_stage *ret, struct cd_error *err)
{
	return query_one(db, err, "get stage", stage_row, ret,
			 STAGE_SELECT " AND a.schema_node = ?3", "sis", pipeline_id, run, stage);
}

int store_stage_get(struct store *s, const char *pipeline_id, int64_t run, const char *stage,
		    struct store_stage *ret, struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, false, &r, err);

	r = get_stage_locked(db, pipeline_id, run, stage, ret, err);
	if (r == 0)
		r = cd_error_set(err, -ENOENT, "stage \"%s\" has not started", stage);
	return store_leave(s, false, r < 0 ? r : 0, err);
}

/* ---- queue --------------------------------------------------------------------------------- */

int store_action_enqueue_typed(struct store *s, const char *pipeline_id, int64_t run,
			       const char *stage, int64_t attempt, unsigned type_bit,
			       usec_t not_before, usec_t now, struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = exec_fmt(db, err, "insert action_state",
		     "INSERT OR IGNORE INTO action_state(pipeline_id, run, schema_node, attempt,"
		     " state, created_at, last_update) VALUES (?, ?, ?, ?, 'PENDING', ?, ?)",
		     "sisiii", pipeline_id, run, stage, attempt, (int64_t)now, (int64_t)now);
	if (r > 0)
		r = exec_fmt(db, err, "enqueue",
			     "INSERT INTO action_queue(pipeline_id, run, schema_node, attempt,"
			     " not_before, enqueued_at, type_bit) VALUES (?, ?, ?, ?, ?, ?, ?)",
			     "sisiiii", pipeline_id, run, stage, attempt, (int64_t)not_before,
			     (int64_t)now, (int64_t)type_bit);
	r = store_leave(s, true, r, err);
	return r < 0 ? r : (r > 0 ? 1 : 0);
}

int store_action_enqueue(struct store *s, const char *pipeline_id, int64_t run, const char *stage,
			 int64_t attempt, usec_t not_before, usec_t now, struct cd_error *err)
{
	return store_action_enqueue_typed(s, pipeline_id, run, stage, attempt, 0, not_before, now,
					  err);
}

void store_claim_release(struct store_claim *c)
{
	if (!c)
		return;
	free(c->stage);
	free(c->result);
	free(c->approved_by);
	memset(c, 0, sizeof(*c));
}

static int claim_locked(sqlite3 *db, const char *owner, unsigned types, usec_t now, usec_t lease,
			struct store_claim *ret, struct cd_error *err)
{
	sqlite3_stmt *st = NULL;
	struct store_claim c = { 0 };
	int r = prep(db, &st, err,
		     "SELECT q.pipeline_id, q.run, q.schema_node, q.attempt, q.lease_token,"
		     " q.tries, a.claims, a.started_at, a.result, a.approved_by"
		     " FROM action_queue q JOIN action_state a USING (pipeline_id, run,"
		     "   schema_node, attempt)"
		     " WHERE q.not_before <= ?1 AND q.lease_expires <= ?1"
		     "   AND (?2 = 0 OR q.type_bit = 0 OR (q.type_bit & ?2) != 0)"
		     " ORDER BY q.not_before, q.enqueued_at LIMIT 1",
		     "ii", (int64_t)now, (int64_t)types);

	if (r >= 0)
		r = step(db, st, err, "claim");
	if (r <= 0)
		return r;
	store_col_strcpy(st, 0, c.pipeline_id, sizeof(c.pipeline_id));
	c.run = sqlite3_column_int64(st, 1);
	c.attempt = sqlite3_column_int64(st, 3);
	c.lease_token = sqlite3_column_int64(st, 4) + 1;
	c.tries = sqlite3_column_int(st, 5);
	c.claims = sqlite3_column_int(st, 6) + 1;
	c.started_at = (usec_t)sqlite3_column_int64(st, 7);
	if (c.started_at == 0)
		c.started_at = now;
	c.lease_expires = now + lease;
	snprintf(c.owner, sizeof(c.owner), "%s", owner);
	if (col_dup(st, 2, &c.stage) < 0 || col_dup(st, 8, &c.result) < 0 ||
	    col_dup(st, 9, &c.approved_by) < 0) {
		store_claim_release(&c);
		return -ENOMEM;
	}
	sqlite3_reset(st);
	r = exec_fmt(db, err, "lease",
		     "UPDATE action_queue SET lease_owner = ?, lease_expires = ?, lease_token = ?"
		     " WHERE pipeline_id = ? AND run = ? AND schema_node = ? AND attempt = ?",
		     "siisisi", c.owner, (int64_t)c.lease_expires, c.lease_token, c.pipeline_id,
		     c.run, c.stage, c.attempt);
	if (r >= 0)
		r = exec_fmt(
			db, err, "stage in progress",
			"UPDATE action_state SET state = 'IN_PROGRESS', claims = claims + 1,"
			" started_at = ?, last_update = ?"
			" WHERE pipeline_id = ? AND run = ? AND schema_node = ? AND attempt = ?",
			"iisisi", (int64_t)c.started_at, (int64_t)now, c.pipeline_id, c.run,
			c.stage, c.attempt);
	if (r < 0) {
		store_claim_release(&c);
		return r;
	}
	*ret = c;
	return 1;
}

int store_action_claim_typed(struct store *s, const char *owner, unsigned types, usec_t now,
			     usec_t lease, struct store_claim *ret, struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = claim_locked(db, owner, types, now, lease, ret, err);
	return store_leave(s, true, r, err);
}

int store_action_claim(struct store *s, const char *owner, usec_t now, usec_t lease,
		       struct store_claim *ret, struct cd_error *err)
{
	return store_action_claim_typed(s, owner, 0, now, lease, ret, err);
}

/* Fencing: the row must still exist with our token. */
static int check_lease(sqlite3 *db, const struct store_claim *c, struct cd_error *err)
{
	int64_t token = 0;
	int r = query_one(db, err, "check lease", int_row, &token,
			  "SELECT lease_token FROM action_queue WHERE pipeline_id = ? AND run = ?"
			  " AND schema_node = ? AND attempt = ?",
			  "sisi", c->pipeline_id, c->run, c->stage, c->attempt);

	if (r < 0)
		return r;
	if (r == 0 || token != c->lease_token)
		return cd_error_set(err, -ESTALE, "lease on %s/%lld/%s#%lld lost", c->pipeline_id,
				    (long long)c->run, c->stage, (long long)c->attempt);
	return 0;
}

int store_action_extend(struct store *s, struct store_claim *c, usec_t now, usec_t lease,
			struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = check_lease(db, c, err);
	if (r >= 0)
		r = exec_fmt(db, err, "extend lease",
			     "UPDATE action_queue SET lease_expires = ? WHERE pipeline_id = ?"
			     " AND run = ? AND schema_node = ? AND attempt = ?",
			     "isisi", (int64_t)(now + lease), c->pipeline_id, c->run, c->stage,
			     c->attempt);
	r = store_leave(s, true, r < 0 ? r : 0, err);
	if (r >= 0)
		c->lease_expires = now + lease;
	return r;
}

int store_action_finish(struct store *s, const struct store_claim *c, enum action_state state,
			const char *message, const char *result, usec_t now, struct cd_error *err)
{
	int r;
	sqlite3 *db;

	if (state != ACTION_FINISHED && state != ACTION_ERROR)
		return -EINVAL;
	db = store_enter(s, true, &r, err);
	if (!db)
		return r;
	r = check_lease(db, c, err);
	if (r >= 0)
		r = exec_fmt(db, err, "dequeue",
			     "DELETE FROM action_queue WHERE pipeline_id = ? AND run = ?"
			     " AND schema_node = ? AND attempt = ?",
			     "sisi", c->pipeline_id, c->run, c->stage, c->attempt);
	if (r >= 0)
		r = exec_fmt(
			db, err, "finish stage",
			"UPDATE action_state SET state = ?, error_message = ?,"
			" result = COALESCE(?, result), last_update = ?"
			" WHERE pipeline_id = ? AND run = ? AND schema_node = ? AND attempt = ?",
			"sssisisi", action_state_to_string(state), message, result, (int64_t)now,
			c->pipeline_id, c->run, c->stage, c->attempt);
	return store_leave(s, true, r < 0 ? r : 0, err);
}

int store_action_defer(struct store *s, const struct store_claim *c, usec_t not_before,
		       bool count_try, const char *message, const char *result, usec_t now,
		       struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = check_lease(db, c, err);
	if (r >= 0)
		r = exec_fmt(
			db, err, "defer",
			"UPDATE action_queue SET not_before = ?, lease_owner = NULL,"
			" lease_expires = 0, tries = tries + ? WHERE pipeline_id = ? AND run = ?"
			" AND schema_node = ? AND attempt = ?",
			"iisisi", (int64_t)not_before, (int64_t)(count_try ? 1 : 0), c->pipeline_id,
			c->run, c->stage, c->attempt);
	if (r >= 0)
		r = exec_fmt(
			db, err, "defer stage",
			"UPDATE action_state SET error_message = COALESCE(?, error_message),"
			" result = COALESCE(?, result), last_update = ?"
			" WHERE pipeline_id = ? AND run = ? AND schema_node = ? AND attempt = ?",
			"ssisisi", message, result, (int64_t)now, c->pipeline_id, c->run, c->stage,
			c->attempt);
	return store_leave(s, true, r < 0 ? r : 0, err);
}

int store_stage_approve(struct store *s, const char *pipeline_id, int64_t run, const char *stage,
			const char *who, usec_t now, struct cd_error *err)
{
	struct store_stage v = { 0 };
	int r;
	sqlite3 *db = store_enter(s, true, &r, err);

	if (!db)
		return r;
	r = get_stage_locked(db, pipeline_id, run, stage, &v, err);
	if (r == 0)
		r = cd_error_set(err, -ENOENT, "stage \"%s\" is not waiting", stage);
	if (r >= 0 && (!v.queued || v.approved_by))
		r = cd_error_set(err, -EALREADY, "stage \"%s\" is %s", stage,
				 v.approved_by ? "already approved" : "not waiting");
	if (r >= 0)
		r = exec_fmt(
			db, err, "approve",
			"UPDATE action_state SET approved_by = ?, last_update = ?"
			" WHERE pipeline_id = ? AND run = ? AND schema_node = ? AND attempt = ?",
			"sisisi", who ? who : "unknown", (int64_t)now, pipeline_id, run, stage,
			v.attempt);
	if (r >= 0)
		r = exec_fmt(
			db, err, "wake approval",
			"UPDATE action_queue SET not_before = ? WHERE pipeline_id = ? AND run = ?"
			" AND schema_node = ? AND attempt = ?",
			"isisi", (int64_t)now, pipeline_id, run, stage, v.attempt);
	store_stage_release(&v);
	return store_leave(s, true, r < 0 ? r : 0, err);
}

int store_action_queue_len(struct store *s, int64_t *ret, struct cd_error *err)
{
	int r;
	sqlite3 *db = store_enter(s, false, &r, err);

	r = query_one(db, err, "queue length", int_row, ret, "SELECT COUNT(*) FROM action_queue",
		      "");
	return store_leave(s, false, r < 0 ? r : 0, err);
}
