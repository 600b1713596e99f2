/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SQLite backend of store.h: connection, locking, transactions, migrations, error mapping and
 * the event log. Row CRUD for the cluster tables is in store_cluster.c.
 */
#include "central/store_internal.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/macro.h"
#include "lib/str.h"

/*
 * Connections. One writer (every write transaction, and the reads a thread makes while it holds
 * the writer) and a small pool of read-only connections: in WAL mode a reader on its own
 * connection sees the last committed snapshot and never waits for the writer, so GET handlers
 * on many civetweb threads no longer queue behind one mutex. Each connection keeps its prepared
 * statements (keyed by SQL text): preparing is most of the cost of a small query.
 *
 * A connection is owned by one thread between the outermost store_enter() and its store_leave();
 * the thread's connections form a stack (tls_conn → prev) so nested calls reuse the one they
 * already hold (a read inside a write transaction must see that transaction's rows).
 */
#define STMT_CACHE_SLOTS 256 /* power of two; filled to 3/4 at most */
#define READERS_MAX 4	     /* 2 per core on our 2-core hosts; more only adds memory */

struct stmt_slot {
	uint64_t hash;
	char *sql;
	sqlite3_stmt *st;
};

struct store_conn {
	struct store *store;
	sqlite3 *db;
	bool writer;
	bool read_tx;		 /* store_read_begin() opened a read transaction */
	unsigned uses;		 /* nesting on the owning thread; 0 = free */
	struct store_conn *prev; /* the owning thread's previous connection */
	struct store_conn *next_free;
	struct stmt_slot *slots; /* STMT_CACHE_SLOTS, allocated on first use */
	size_t n_cached;
	/* statements prepared uncached (cache full, or the cached one still stepping): finalized
	 * when the connection is released */
	sqlite3_stmt **extra;
	size_t n_extra, cap_extra;
};

struct store {
	struct store_conn writer;
	pthread_mutex_t lock; /* owns the writer between first enter and last leave */
	unsigned depth;	      /* open write levels (store_enter(write)/store_begin) */
	bool tx_failed;	      /* an inner call failed: the outermost leave must roll back */
	/* Read pool: opened lazily up to max_readers (0: reads use the writer, e.g. :memory:). */
	char *path;
	size_t max_readers, n_readers;
	struct store_conn *readers[READERS_MAX];
	struct store_conn *free_readers;
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	uint64_t n_prepared; /* statements compiled (cache misses), for metrics and tests */
	uint64_t n_pool_waits;
	/* Event wake-ups: the highest event id appended by the open transaction and the highest
	 * committed one. Separate (non-recursive) mutex so waiters never hold `lock`. */
	int64_t ev_pending;
	pthread_mutex_t ev_lock;
	pthread_cond_t ev_cond;
	int64_t ev_committed;
	uint64_t ev_wakeups; /* store_event_wake() calls */
};

static __thread struct store_conn *tls_conn;

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

static uint64_t sql_hash(const char *sql)
{
	uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
		h = (h ^ *p) * UINT64_C(1099511628211);
	return h;
}

static int conn_keep_extra(struct store_conn *c, sqlite3_stmt *st)
{
	if (c->n_extra == c->cap_extra) {
		size_t cap = c->cap_extra ? c->cap_extra * 2 : 8;
		sqlite3_stmt **v = reallocarray(c->extra, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->extra = v;
		c->cap_extra = cap;
	}
	c->extra[c->n_extra++] = st;
	return 0;
}

static int compile(struct store_conn *c, const char *sql, bool persistent, sqlite3_stmt **ret,
		   struct cd_error *err)
{
	int rc = sqlite3_prepare_v3(c->db, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0, ret,
				    NULL);

	if (rc != SQLITE_OK) {
		*ret = NULL;
		return store_map_rc(c->db, rc, err, "prepare");
	}
	__atomic_add_fetch(&c->store->n_prepared, 1, __ATOMIC_RELAXED);
	return 0;
}

int store_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret, struct cd_error *err)
{
	struct store_conn *c = tls_conn;
	struct stmt_slot *slot = NULL;
	sqlite3_stmt *st;
	uint64_t h;
	int r;

	while (c && c->db != db)
		c = c->prev;
	if (!c)
		return cd_error_set(err, -EINVAL,
				    "prepare: connection not taken with store_enter()");
	if (!c->slots) {
		c->slots = calloc(STMT_CACHE_SLOTS, sizeof(*c->slots));
		if (!c->slots)
			return cd_error_set(err, -ENOMEM, "out of memory");
	}
	h = sql_hash(sql);
	for (size_t i = h & (STMT_CACHE_SLOTS - 1);; i = (i + 1) & (STMT_CACHE_SLOTS - 1)) {
		struct stmt_slot *e = &c->slots[i];

		if (!e->sql) {
			slot = e;
			break;
		}
		if (e->hash == h && streq(e->sql, sql)) {
			if (sqlite3_stmt_busy(e->st))
				break; /* an outer caller is still stepping it: use a private copy */
			sqlite3_reset(e->st);
			sqlite3_clear_bindings(e->st);
			*ret = e->st;
			return 0;
		}
	}
	if (slot && c->n_cached < STMT_CACHE_SLOTS / 4 * 3) {
		char *copy = strdup(sql);

		if (!copy)
			return cd_error_set(err, -ENOMEM, "out of memory");
		r = compile(c, sql, true, &st, err);
		if (r < 0) {
			free(copy);
			return r;
		}
		*slot = (struct stmt_slot){ .hash = h, .sql = copy, .st = st };
		c->n_cached++;
		*ret = st;
		return 0;
	}
	r = compile(c, sql, false, &st, err);
	if (r < 0)
		return r;
	if (conn_keep_extra(c, st) < 0) {
		sqlite3_finalize(st);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	*ret = st;
	return 0;
}

int store_collect(sqlite3 *db, sqlite3_stmt *st, size_t elem_size, store_row_fn row,
		  store_release_fn release, void **ret, size_t *ret_n, struct cd_error *err,
		  const char *what)
{
	char *v = NULL;
	size_t n = 0, cap = 0;
	int r = 0, rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char *nv = reallocarray(v, ncap, elem_size);

			if (!nv) {
				r = cd_error_set(err, -ENOMEM, "out of memory");
				break;
			}
			v = nv;
			cap = ncap;
		}
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

/* Reset what the connection's statements still hold (read snapshots) and finalize the uncached
 * ones; called when the owning thread lets go of it. */
static void conn_quiesce(struct store_conn *c)
{
	for (size_t i = 0; c->slots && i < STMT_CACHE_SLOTS; i++)
		if (c->slots[i].st && sqlite3_stmt_busy(c->slots[i].st))
			sqlite3_reset(c->slots[i].st);
	for (size_t i = 0; i < c->n_extra; i++)
		sqlite3_finalize(c->extra[i]);
	c->n_extra = 0;
}

static void conn_close(struct store_conn *c)
{
	conn_quiesce(c);
	for (size_t i = 0; c->slots && i < STMT_CACHE_SLOTS; i++) {
		sqlite3_finalize(c->slots[i].st);
		free(c->slots[i].sql);
	}
	free(c->slots);
	free(c->extra);
	if (c->db)
		sqlite3_close_v2(c->db);
	c->slots = NULL;
	c->extra = NULL;
	c->db = NULL;
}

/* The newest connection of s this thread holds (the writer only, when writer_only). */
static struct store_conn *held_conn(struct store *s, bool writer_only)
{
	for (struct store_conn *c = tls_conn; c; c = c->prev)
		if (c->store == s && (c->writer || !writer_only))
			return c;
	return NULL;
}

static int open_db(const char *path, bool read_only, sqlite3 **ret, struct cd_error *err)
{
	/* NOMUTEX: a connection is only ever used by the thread that took it (store_enter()). */
	int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
		    (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, flags, NULL);

	if (rc != SQLITE_OK) {
		int r = store_map_rc(db, rc, err, path);

		sqlite3_close_v2(db);
		return r;
	}
	sqlite3_busy_timeout(db, 5000);
	*ret = db;
	return 0;
}

/* A free reader, opening one when the pool has room; NULL when the pool is disabled or a new
 * reader cannot be opened (the caller then reads on the writer). */
static struct store_conn *reader_take(struct store *s)
{
	struct store_conn *c = NULL;

	pthread_mutex_lock(&s->pool_lock);
	while (s->max_readers > 0) {
		c = s->free_readers;
		if (c) {
			s->free_readers = c->next_free;
			c->next_free = NULL;
			break;
		}
		if (s->n_readers < s->max_readers) {
			c = calloc(1, sizeof(*c));
			if (c && open_db(s->path, true, &c->db, NULL) < 0) {
				free(c);
				c = NULL;
			}
			if (!c) {
				s->max_readers = s->n_readers; /* do not retry on every read */
				continue;
			}
			c->store = s;
			s->readers[s->n_readers++] = c;
			break;
		}
		s->n_pool_waits++;
		pthread_cond_wait(&s->pool_cond, &s->pool_lock);
	}
	pthread_mutex_unlock(&s->pool_lock);
	return c;
}

static void conn_release(struct store_conn *c)
{
	struct store *s = c->store;

	if (--c->uses > 0)
		return;
	conn_quiesce(c);
	/* enter/leave nest, so the connection let go of is the thread's newest */
	tls_conn = c->prev;
	c->prev = NULL;
	if (c->writer) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	pthread_mutex_lock(&s->pool_lock);
	c->next_free = s->free_readers;
	s->free_readers = c;
	pthread_cond_signal(&s->pool_cond);
	pthread_mutex_unlock(&s->pool_lock);
}

sqlite3 *store_enter(struct store *s, bool write, int *ret_r, struct cd_error *err)
{
	struct store_conn *c = held_conn(s, write);

	*ret_r = 0;
	if (c)
		c->uses++;
	else {
		c = write ? NULL : reader_take(s);
		if (!c) {
			pthread_mutex_lock(&s->lock);
			c = &s->writer;
		}
		c->uses = 1;
		c->prev = tls_conn;
		tls_conn = c;
	}
	if (!write)
		return c->db;
	if (s->depth == 0) {
		int r = exec_sql(c->db, "BEGIN IMMEDIATE", err, "begin");

		if (r < 0) {
			conn_release(c);
			*ret_r = r;
			return NULL;
		}
		s->tx_failed = false;
		s->ev_pending = 0;
	}
	s->depth++;
	return c->db;
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
	struct store_conn *c = held_conn(s, write);

	assert(c);
	if (write) {
		if (r < 0)
			s->tx_failed = true;
		if (--s->depth == 0) {
			if (s->tx_failed && r >= 0)
				r = cd_error_set(
					err, -ECANCELED,
					"transaction rolled back after an earlier failure");
			if (!s->tx_failed) {
				int k = exec_sql(c->db, "COMMIT", err, "commit");

				if (k < 0) {
					r = k;
					s->tx_failed = true;
				}
			}
			if (s->tx_failed) {
				/* After a failed COMMIT SQLite may already have rolled back. */
				sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
				s->ev_pending = 0;
			} else
				wake_event_waiters(s);
			s->tx_failed = false;
		}
	}
	conn_release(c);
	return r;
}

int store_begin(struct store *s, struct cd_error *err)
{
	int r;

	if (!store_enter(s, true, &r, err))
		return r;
	/* Keep the connection and the level: store_commit()/store_rollback() release both. */
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

/* Step a cached one-word statement (BEGIN, COMMIT) on c. */
static int run_cached(struct store_conn *c, const char *sql, struct cd_error *err)
{
	sqlite3_stmt *st;
	int r = store_prepare(c->db, sql, &st, err);
	int rc;

	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : store_map_rc(c->db, rc, err, sql);
}

int store_read_begin(struct store *s, struct cd_error *err)
{
	struct store_conn *c;
	int r;

	store_enter(s, false, &r, err);
	c = held_conn(s, false);
	/* Nested, or inside a write transaction (which is already one snapshot): nothing to do. */
	if (c->uses > 1 || c->writer)
		return 0;
	r = run_cached(c, "BEGIN", err);
	if (r < 0) {
		conn_release(c);
		return r;
	}
	c->read_tx = true;
	return 0;
}

void store_read_end(struct store *s)
{
	struct store_conn *c = held_conn(s, false);

	assert(c);
	if (c->read_tx && c->uses == 1) {
		conn_quiesce(c); /* no statement may still be stepping when the snapshot ends */
		if (run_cached(c, "COMMIT", NULL) < 0)
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		c->read_tx = false;
	}
	conn_release(c);
}

void store_stats(struct store *s, struct store_stats *ret)
{
	pthread_mutex_lock(&s->pool_lock);
	*ret = (struct store_stats){
		.statements_prepared = __atomic_load_n(&s->n_prepared, __ATOMIC_RELAXED),
		.readers_open = s->n_readers,
		.reader_waits = s->n_pool_waits,
	};
	pthread_mutex_unlock(&s->pool_lock);
}

static int migrate(struct store *s, struct cd_error *err)
{
	int current = 0, r;
	sqlite3 *db;

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
		db = store_enter(s, true, &r, err);
		if (!db)
			return r;
		r = exec_sql(db, m->sql, err, m->description);
		if (r >= 0) {
			snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
			r = exec_sql(db, pragma, err, "set schema version");
		}
		r = store_leave(s, true, r, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int store_schema_version(struct store *s, int *ret)
{
	sqlite3_stmt *st = NULL;
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

static void sqlite_setup(void)
{
	/* Memory statistics take a process-wide mutex on every allocation: with many threads
	 * querying at once that mutex is the bottleneck. We never read the statistics. */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_open(const char *url, struct store **ret, struct cd_error *err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_condattr_t ca;
	struct store *s;
	const char *path;
	bool memory;
	int r;

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
	pthread_once(&once, sqlite_setup);

	s = calloc(1, sizeof(*s));
	if (!s)
		return cd_error_set(err, -ENOMEM, "out of memory");
	s->writer.store = s;
	s->writer.writer = true;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->pool_lock, NULL);
	pthread_cond_init(&s->pool_cond, NULL);
	pthread_mutex_init(&s->ev_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->ev_cond, &ca);
	pthread_condattr_destroy(&ca);

	s->path = strdup(path);
	if (!s->path) {
		store_free(s);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	r = open_db(path, false, &s->writer.db, err);
	if (r < 0) {
		store_free(s);
		return r;
	}
	/* WAL: readers never block the writer; synchronous=FULL: a transaction acknowledged to a
	 * client survives power loss (the contract: written before acknowledged). */
	r = exec_sql(s->writer.db,
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
	/* Readers only once the schema is final; an in-memory database exists only on the
	 * writer's connection. */
	s->max_readers = memory ? 0 : READERS_MAX;
	*ret = s;
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_readers; i++) {
		conn_close(s->readers[i]);
		free(s->readers[i]);
	}
	conn_close(&s->writer);
	free(s->path);
	pthread_cond_destroy(&s->ev_cond);
	pthread_mutex_destroy(&s->ev_lock);
	pthread_cond_destroy(&s->pool_cond);
	pthread_mutex_destroy(&s->pool_lock);
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
	sqlite3_stmt *st = NULL;
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

static int event_row(sqlite3_stmt *st, void *elem)
{
	struct store_event *e = elem;

	e->id = sqlite3_column_int64(st, 0);
	e->ts = (usec_t)sqlite3_column_int64(st, 1);
	if (store_col_strdup(st, 2, &e->actor) < 0 || store_col_strdup(st, 3, &e->kind) < 0 ||
	    store_col_strdup(st, 4, &e->subject) < 0 || store_col_strdup(st, 5, &e->data) < 0)
		return -ENOMEM;
	return 0;
}

static void event_release(void *elem)
{
	store_event_release(elem);
}

int store_event_list(struct store *s, int64_t after, size_t limit, struct store_event **ret,
		     size_t *ret_n, struct cd_error *err)
{
	sqlite3_stmt *st = NULL;
	sqlite3 *db;
	int r;

	if (limit == 0)
		limit = 1000;
	db = store_enter(s, false, &r, err);
	r = store_prepare(db,
			  "SELECT id, ts, actor, kind, subject, data FROM events WHERE id > ? "
			  "ORDER BY id LIMIT ?",
			  &st, err);
	if (r >= 0 &&
	    (store_bind_int64(st, 1, after) < 0 || store_bind_int64(st, 2, (int64_t)limit) < 0))
		r = cd_error_set(err, -EINVAL, "list events: bad parameters");
	if (r >= 0)
		r = store_collect(db, st, sizeof(**ret), event_row, event_release, (void **)ret,
				  ret_n, err, "list events");
	return store_leave(s, false, r, err);
}

/* One integer from sql (with ?1 = arg when it has a parameter) on db, already entered. */
static int query_int64(sqlite3 *db, const char *sql, int64_t arg, int64_t *ret,
		       struct cd_error *err, const char *what)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(db, sql, &st, err), rc;

	if (r < 0)
		return r;
	if (sqlite3_bind_parameter_count(st) > 0)
		store_bind_int64(st, 1, arg);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return store_map_rc(db, rc, err, what);
	*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

int store_event_last_id(struct store *s, int64_t *ret, struct cd_error *err)
{
	sqlite3 *db;
	int r;

	db = store_enter(s, false, &r, err);
	r = query_int64(db, "SELECT COALESCE(MAX(id), 0) FROM events", 0, ret, err,
			"last event id");
	return store_leave(s, false, r, err);
}

int store_event_pruned_through(struct store *s, int64_t *ret, struct cd_error *err)
{
	sqlite3 *db;
	int r;

	db = store_enter(s, false, &r, err);
	r = query_int64(db, "SELECT COALESCE(MAX(through_id), 0) FROM events_pruned", 0, ret, err,
			"pruned events");
	return store_leave(s, false, r, err);
}

int store_event_prune(struct store *s, usec_t before, size_t max_rows, const char *actor,
		      int64_t *ret_deleted, struct cd_error *err)
{
	int64_t first = 0, keep = 0, through, deleted = 0;
	sqlite3_stmt *st = NULL;
	sqlite3 *db;
	int r, rc;

	if (!actor)
		return cd_error_set(err, -EINVAL, "prune needs an actor");
	if (max_rows == 0)
		max_rows = 10000;
	db = store_enter(s, true, &r, err);
	if (!db)
		return r;
	r = query_int64(db, "SELECT COALESCE(MIN(id), 0) FROM events", 0, &first, err,
			"first event id");
	/* the first event to keep: every id below it is older than the cutoff */
	if (r >= 0 && first > 0)
		r = query_int64(db,
				"SELECT COALESCE(MIN(id), (SELECT MAX(id) + 1 FROM events)) "
				"FROM events WHERE ts >= ?1",
				(int64_t)before, &keep, err, "events to keep");
	if (r < 0 || first == 0 || keep <= first)
		goto out;
	through = MIN(keep - 1, first + (int64_t)max_rows - 1);
	r = query_int64(db, "SELECT COUNT(*) FROM events WHERE id <= ?1", through, &deleted, err,
			"events to prune");
	if (r >= 0)
		r = store_prepare(db,
				  "INSERT INTO events_pruned (through_id, before_ts, deleted, ts, "
				  "actor) VALUES (?, ?, ?, ?, ?)",
				  &st, err);
	if (r >= 0) {
		if (store_bind_int64(st, 1, through) < 0 ||
		    store_bind_int64(st, 2, (int64_t)before) < 0 ||
		    store_bind_int64(st, 3, deleted) < 0 ||
		    store_bind_int64(st, 4, (int64_t)clock_real_usec()) < 0 ||
		    store_bind_text(st, 5, actor) < 0)
			r = cd_error_set(err, -ENOMEM, "binding the prune record failed");
		else if ((rc = sqlite3_step(st)) != SQLITE_DONE)
			r = store_map_rc(db, rc, err, "record prune");
	}
	if (r >= 0)
		r = store_prepare(db, "DELETE FROM events WHERE id <= ?", &st, err);
	if (r >= 0) {
		store_bind_int64(st, 1, through);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE)
			r = store_map_rc(db, rc, err, "prune events");
	}
	if (r >= 0) {
		char data[128];

		snprintf(data, sizeof(data), "{\"through_id\":%lld,\"deleted\":%lld}",
			 (long long)through, (long long)deleted);
		r = store_event_append(s, actor, "events.pruned", "events", data, NULL, err);
	}
out:
	r = store_leave(s, true, r, err);
	if (r >= 0 && ret_deleted)
		*ret_deleted = deleted;
	return r;
}

void store_event_wake(struct store *s)
{
	pthread_mutex_lock(&s->ev_lock);
	s->ev_wakeups++;
	pthread_cond_broadcast(&s->ev_cond);
	pthread_mutex_unlock(&s->ev_lock);
}

int store_event_wait(struct store *s, int64_t after, usec_t timeout, struct cd_error *err)
{
	usec_t deadline = clock_mono_usec() + timeout;
	uint64_t wakeups;

	pthread_mutex_lock(&s->ev_lock);
	wakeups = s->ev_wakeups;
	pthread_mutex_unlock(&s->ev_lock);
	for (;;) {
		bool woken;
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
		ts = clock_timespec_after(CLOCK_MONOTONIC, slice);
		pthread_mutex_lock(&s->ev_lock);
		if (s->ev_committed <= after && s->ev_wakeups == wakeups)
			pthread_cond_timedwait(&s->ev_cond, &s->ev_lock, &ts);
		woken = s->ev_wakeups != wakeups;
		pthread_mutex_unlock(&s->ev_lock);
		if (woken) {
			r = store_event_last_id(s, &last, err);
			return r < 0 ? r : last > after;
		}
	}
}
