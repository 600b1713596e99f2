/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SQLite backend of store.h: connection, locking, transactions, migrations, error mapping and
 * the event log. Row CRUD for the cluster tables is in store_cluster.c.
 */
#include "central/store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/macro.h"
#include "lib/str.h"

struct store {
	sqlite3 *db;
	pthread_mutex_t lock; /* recursive: store_begin() holds it across calls of one thread */
	unsigned depth;	      /* open store_enter(write)/store_begin levels */
	bool tx_open;	      /* a BEGIN IMMEDIATE is active */
	bool tx_failed;	      /* an inner call failed: the outermost leave must roll back */
	/* Event wake-ups: the highest event id appended by the open transaction and the highest
	 * committed one. Separate (non-recursive) mutex so waiters never hold `lock`. */
	int64_t ev_pending;
	pthread_mutex_t ev_lock;
	pthread_cond_t ev_cond;
	int64_t ev_committed;
};

int store_map_rc(sqlite3 *db, int rc, struct cd_error *err, const char *what)
{
	int code;

	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = -EBUSY;
		break;
	case SQLITE_NOMEM:
		code = -ENOMEM;
		break;
	case SQLITE_READONLY:
		code = -EROFS;
		break;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		code = -EACCES;
		break;
	case SQLITE_FULL:
		code = -ENOSPC;
		break;
	case SQLITE_CANTOPEN:
		code = -ENOENT;
		break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		code = -EBADMSG;
		break;
	case SQLITE_CONSTRAINT:
		code = (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) ?
			       -EEXIST :
			       -EINVAL;
		break;
	case SQLITE_TOOBIG:
		code = -E2BIG;
		break;
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
		code = -EINVAL;
		break;
	case SQLITE_INTERRUPT:
		code = -EINTR;
		break;
	default:
		code = -EIO;
		break;
	}
	return cd_error_set(err, code, "%s: %s", what,
			    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int store_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret, struct cd_error *err)
{
	int rc = sqlite3_prepare_v2(db, sql, -1, ret, NULL);

	if (rc != SQLITE_OK) {
		*ret = NULL;
		return store_map_rc(db, rc, err, "prepare");
	}
	return 0;
}

int store_collect(sqlite3 *db, sqlite3_stmt *st, size_t elem_size, store_row_fn row,
		  store_release_fn release, void **ret, size_t *ret_n, struct cd_error *err,
		  const char *what)
{
	char *v = NULL;
	size_t n = 0;
	int r = 0, rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char *nv = reallocarray(v, n + 1, elem_size);

		if (!nv) {
			r = cd_error_set(err, -ENOMEM, "out of memory");
			break;
		}
		v = nv;
		memset(v + n * elem_size, 0, elem_size);
		n++;
		r = row(st, v + (n - 1) * elem_size);
		if (r < 0) {
			cd_error_set(err, r, "%s: decoding row failed", what);
			break;
		}
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = store_map_rc(db, rc, err, what);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			release(v + i * elem_size);
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	int rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);

	return rc == SQLITE_OK ? 0 : (rc == SQLITE_NOMEM ? -ENOMEM : -EINVAL);
}

int store_bind_int64(sqlite3_stmt *st, int i, int64_t v)
{
	return sqlite3_bind_int64(st, i, v) == SQLITE_OK ? 0 : -EINVAL;
}

int store_col_strdup(sqlite3_stmt *st, int i, char **ret)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	*ret = NULL;
	if (!t)
		return sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM ? -ENOMEM : 0;
	*ret = strdup((const char *)t);
	return *ret ? 0 : -ENOMEM;
}

void store_col_strcpy(sqlite3_stmt *st, int i, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	snprintf(buf, size, "%s", t ? (const char *)t : "");
}

static int exec_sql(sqlite3 *db, const char *sql, struct cd_error *err, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		int r = store_map_rc(NULL, rc, NULL, what);

		cd_error_set(err, r, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return r;
	}
	return 0;
}

sqlite3 *store_enter(struct store *s, bool write, int *ret_r, struct cd_error *err)
{
	pthread_mutex_lock(&s->lock);
	*ret_r = 0;
	if (!write)
		return s->db;
	if (s->depth == 0) {
		int r = exec_sql(s->db, "BEGIN IMMEDIATE", err, "begin");

		if (r < 0) {
			pthread_mutex_unlock(&s->lock);
			*ret_r = r;
			return NULL;
		}
		s->tx_open = true;
		s->tx_failed = false;
		s->ev_pending = 0;
	}
	s->depth++;
	return s->db;
}

static void wake_event_waiters(struct store *s)
{
	if (s->ev_pending <= 0)
		return;
	pthread_mutex_lock(&s->ev_lock);
	if (s->ev_pending > s->ev_committed)
		s->ev_committed = s->ev_pending;
	pthread_cond_broadcast(&s->ev_cond);
	pthread_mutex_unlock(&s->ev_lock);
	s->ev_pending = 0;
}

int store_leave(struct store *s, bool write, int r, struct cd_error *err)
{
	if (!write) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	if (r < 0)
		s->tx_failed = true;
	if (--s->depth == 0) {
		if (s->tx_failed && r >= 0)
			r = cd_error_set(err, -ECANCELED,
					 "transaction rolled back after an earlier failure");
		if (!s->tx_failed) {
			int c = exec_sql(s->db, "COMMIT", err, "commit");

			if (c < 0) {
				r = c;
				s->tx_failed = true;
			}
		}
		if (s->tx_failed) {
			/* After a failed COMMIT SQLite may already have rolled back; ignore that. */
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			s->ev_pending = 0;
		} else
			wake_event_waiters(s);
		s->tx_open = false;
		s->tx_failed = false;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_begin(struct store *s, struct cd_error *err)
{
	int r;

	if (!store_enter(s, true, &r, err))
		return r;
	/* Keep the lock and the level: store_commit()/store_rollback() release both. */
	return 0;
}

int store_commit(struct store *s, struct cd_error *err)
{
	return store_leave(s, true, 0, err);
}

void store_rollback(struct store *s)
{
	store_leave(s, true, -ECANCELED, NULL);
}

static int migrate(struct store *s, struct cd_error *err)
{
	int current = 0, r;

	r = store_schema_version(s, &current);
	if (r < 0)
		return cd_error_set(err, r, "reading schema version failed");
	if (current > (int)store_migrations_n)
		return cd_error_set(err, -EPROTO,
				    "database schema version %d is newer than this deployd (%zu)",
				    current, store_migrations_n);
	for (size_t i = (size_t)current; i < store_migrations_n; i++) {
		const struct store_migration *m = &store_migrations[i];
		char pragma[64];

		if (m->version != (int)i + 1)
			return cd_error_set(err, -EINVAL, "migration list out of order at %d",
					    m->version);
		if (!store_enter(s, true, &r, err))
			return r;
		r = exec_sql(s->db, m->sql, err, m->description);
		if (r >= 0) {
			snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
			r = exec_sql(s->db, pragma, err, "set schema version");
		}
		r = store_leave(s, true, r, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int store_schema_version(struct store *s, int *ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	sqlite3 *db;
	int r;

	db = store_enter(s, false, &r, NULL);
	r = store_prepare(db, "PRAGMA user_version", &st, NULL);
	if (r >= 0) {
		if (sqlite3_step(st) == SQLITE_ROW)
			*ret = sqlite3_column_int(st, 0);
		else
			r = store_map_rc(db, sqlite3_errcode(db), NULL, "user_version");
	}
	return store_leave(s, false, r, NULL);
}

static const char *url_to_path(const char *url)
{
	const char *p;

	p = startswith(url, "sqlite://");
	if (p)
		return p; /* sqlite:///abs/path → /abs/path */
	p = startswith(url, "file:");
	if (p)
		return p;
	return url;
}

int store_open(const char *url, struct store **ret, struct cd_error *err)
{
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	struct store *s;
	const char *path;
	bool memory;
	int rc, r;

	if (!url || !*url)
		return cd_error_set(err, -EINVAL, "empty database URL");
	if (startswith(url, "postgresql://") || startswith(url, "postgres://"))
		return cd_error_set(err, -EPROTONOSUPPORT,
				    "PostgreSQL backend is not built yet; use sqlite:///PATH");
	if (strstr(url, "://") && !startswith(url, "sqlite://"))
		return cd_error_set(err, -EPROTONOSUPPORT, "unsupported database URL scheme: %s",
				    url);
	path = url_to_path(url);
	if (!*path)
		return cd_error_set(err, -EINVAL, "database URL has no path: %s", url);
	memory = streq(path, ":memory:");

	s = calloc(1, sizeof(*s));
	if (!s)
		return cd_error_set(err, -ENOMEM, "out of memory");
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&s->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_mutex_init(&s->ev_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->ev_cond, &ca);
	pthread_condattr_destroy(&ca);

	rc = sqlite3_open_v2(path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
				     SQLITE_OPEN_EXRESCODE,
			     NULL);
	if (rc != SQLITE_OK) {
		r = store_map_rc(s->db, rc, err, path);
		store_free(s);
		return r;
	}
	sqlite3_busy_timeout(s->db, 5000);
	/* WAL: readers never block the writer; synchronous=FULL: a transaction acknowledged to a
	 * client survives power loss (the contract: written before acknowledged). */
	r = exec_sql(s->db,
		     memory ? "PRAGMA foreign_keys = ON;" :
			      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			      "PRAGMA foreign_keys = ON;",
		     err, "configure database");
	if (r >= 0)
		r = migrate(s, err);
	if (r >= 0)
		r = store_event_last_id(s, &s->ev_committed, err);
	if (r < 0) {
		store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	if (s->db)
		sqlite3_close_v2(s->db);
	pthread_cond_destroy(&s->ev_cond);
	pthread_mutex_destroy(&s->ev_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- events -------------------------------------------------------------------------------- */

void store_event_release(struct store_event *e)
{
	free(e->actor);
	free(e->kind);
	free(e->subject);
	free(e->data);
	memset(e, 0, sizeof(*e));
}

void store_event_list_free(struct store_event *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		store_event_release(&v[i]);
	free(v);
}

int store_event_append(struct store *s, const char *actor, const char *kind, const char *subject,
		       const char *data, int64_t *ret_id, struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	sqlite3 *db;
	int r;

	if (!actor || !kind || !subject)
		return cd_error_set(err, -EINVAL, "event needs actor, kind and subject");
	db = store_enter(s, true, &r, err);
	if (!db)
		return r;
	r = store_prepare(db,
			  "INSERT INTO events (ts, actor, kind, subject, data) VALUES (?,?,?,?,?)",
			  &st, err);
	if (r >= 0) {
		int rc;

		if (store_bind_int64(st, 1, (int64_t)clock_real_usec()) < 0 ||
		    store_bind_text(st, 2, actor) < 0 || store_bind_text(st, 3, kind) < 0 ||
		    store_bind_text(st, 4, subject) < 0 || store_bind_text(st, 5, data ?: "{}") < 0)
			r = cd_error_set(err, -ENOMEM, "binding event failed");
		else if ((rc = sqlite3_step(st)) != SQLITE_DONE)
			r = store_map_rc(db, rc, err, "append event");
		else {
			int64_t id = sqlite3_last_insert_rowid(db);

			s->ev_pending = id;
			if (ret_id)
				*ret_id = id;
		}
	}
	return store_leave(s, true, r, err);
}

int store_event_list(struct store *s, int64_t after, size_t limit, struct store_event **ret,
		     size_t *ret_n, struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct store_event *v = NULL;
	size_t n = 0;
	sqlite3 *db;
	int r, rc;

	if (limit == 0 || limit > 1000)
		limit = 1000;
	db = store_enter(s, false, &r, err);
	r = store_prepare(db,
			  "SELECT id, ts, actor, kind, subject, data FROM events WHERE id > ? "
			  "ORDER BY id LIMIT ?",
			  &st, err);
	if (r >= 0) {
		store_bind_int64(st, 1, after);
		store_bind_int64(st, 2, (int64_t)limit);
	}
	while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_event *e;
		struct store_event *nv = reallocarray(v, n + 1, sizeof(*v));

		if (!nv) {
			r = cd_error_set(err, -ENOMEM, "out of memory");
			break;
		}
		v = nv;
		e = &v[n++];
		memset(e, 0, sizeof(*e));
		e->id = sqlite3_column_int64(st, 0);
		e->ts = (usec_t)sqlite3_column_int64(st, 1);
		if (store_col_strdup(st, 2, &e->actor) < 0 ||
		    store_col_strdup(st, 3, &e->kind) < 0 ||
		    store_col_strdup(st, 4, &e->subject) < 0 ||
		    store_col_strdup(st, 5, &e->data) < 0)
			r = cd_error_set(err, -ENOMEM, "out of memory");
	}
	if (r >= 0 && rc != SQLITE_DONE)
		r = store_map_rc(db, rc, err, "list events");
	r = store_leave(s, false, r, err);
	if (r < 0) {
		store_event_list_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int store_event_last_id(struct store *s, int64_t *ret, struct cd_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	sqlite3 *db;
	int r, rc;

	db = store_enter(s, false, &r, err);
	r = store_prepare(db, "SELECT COALESCE(MAX(id), 0) FROM events", &st, err);
	if (r >= 0) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			*ret = sqlite3_column_int64(st, 0);
		else
			r = store_map_rc(db, rc, err, "last event id");
	}
	return store_leave(s, false, r, err);
}

int store_event_wait(struct store *s, int64_t after, usec_t timeout, struct cd_error *err)
{
	usec_t deadline = clock_mono_usec() + timeout;

	for (;;) {
		int64_t last = 0;
		usec_t now, slice;
		struct timespec ts;
		int r;

		r = store_event_last_id(s, &last, err);
		if (r < 0)
			return r;
		if (last > after)
			return 1;
		now = clock_mono_usec();
		if (now >= deadline)
			return 0;
		slice = MIN(deadline - now, 250 * USEC_PER_MSEC);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(slice / USEC_PER_SEC);
		ts.tv_nsec += (long)(slice % USEC_PER_SEC) * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&s->ev_lock);
		if (s->ev_committed <= after)
			pthread_cond_timedwait(&s->ev_cond, &s->ev_lock, &ts);
		pthread_mutex_unlock(&s->ev_lock);
	}
}
