/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store_internal.h — what the store's own translation units share: the migration list, the
 * locked connection and the sqlite rc → -errno mapping. Only central/store*.c and a feature
 * area's own SQL file (e.g. central/pipeline_store.c) include this; everyone else uses store.h.
 */
#pragma once

#include <sqlite3.h>

#include "central/store.h"

/*
 * Schema migrations, applied in order at store_open(), each in its own transaction together
 * with `PRAGMA user_version = version`. Versions are 1, 2, 3, ... without gaps; a migration, once
 * released, never changes — add a new one instead. Feature areas append their entries here.
 */
struct store_migration {
	int version;
	const char *description;
	const char *sql; /* one or more statements */
};
extern const struct store_migration store_migrations[];
extern const size_t store_migrations_n;

/*
 * Take the connection for one operation. write=true opens (or joins) a write transaction; the
 * matching store_leave() commits it when it is the outermost one and r >= 0, rolls back when
 * outermost and r < 0, and otherwise only unlocks. Returns r (or the commit error).
 */
sqlite3 *store_enter(struct store *s, bool write, int *ret_r, struct cd_error *err);
int store_leave(struct store *s, bool write, int r, struct cd_error *err);

/* Map a sqlite result code (with the connection's message) to -errno and fill err with
 * "<what>: <sqlite message>". */
int store_map_rc(sqlite3 *db, int rc, struct cd_error *err, const char *what);

/*
 * Prepare sql on db, which must come from this thread's store_enter(). The statement belongs to
 * the connection (its cache, keyed by the SQL text): never finalize it. It is reset with its
 * bindings cleared when handed out, and reset again when the outermost store_leave() releases
 * the connection, so a caller may simply stop using it; sqlite3_reset() lets it go earlier.
 */
int store_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret, struct cd_error *err);

/*
 * Step st to its end, one elem_size element per row: each element is zeroed, then filled by
 * row(st, elem). On success *ret (NULL when there are no rows; the caller frees it and releases
 * each element) and *ret_n are set. On failure every collected element (the one being filled
 * too) is released, nothing is returned, and err says "<what>: ...".
 */
typedef int (*store_row_fn)(sqlite3_stmt *st, void *elem);
typedef void (*store_release_fn)(void *elem);
int store_collect(sqlite3 *db, sqlite3_stmt *st, size_t elem_size, store_row_fn row,
		  store_release_fn release, void **ret, size_t *ret_n, struct cd_error *err,
		  const char *what);

/* Bind helpers: NULL strings bind SQL NULL. Return 0 or a mapped error. */
int store_bind_text(sqlite3_stmt *st, int i, const char *v);
int store_bind_int64(sqlite3_stmt *st, int i, int64_t v);

/* Column helpers. col_strdup returns -ENOMEM or 0 and stores NULL for SQL NULL. */
int store_col_strdup(sqlite3_stmt *st, int i, char **ret);
void store_col_strcpy(sqlite3_stmt *st, int i, char *buf, size_t size);
