/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for central/store: a real SQLite file in a temp dir. Migrations, CRUD of every
 * table, pagination, error mapping, append-only events, and crash safety (a failed or
 * interrupted write leaves nothing half-written).
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "central/store.h"
#include "central/store_internal.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/macro.h"

/* Fault injection: make the Nth sqlite3_step() from our code fail (disk I/O error), SQLite's own
 * habit for testing failure paths. 0 = off. */
int __real_sqlite3_step(sqlite3_stmt *st);
int __wrap_sqlite3_step(sqlite3_stmt *st);
static int step_fail_at;
int __wrap_sqlite3_step(sqlite3_stmt *st)
{
	if (step_fail_at > 0 && --step_fail_at == 0)
		return SQLITE_IOERR;
	return __real_sqlite3_step(st);
}

static char tmpdir[64];
static char dbpath[128];

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-store.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/deployd.db", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static struct store *open_store(void)
{
	struct cd_error err = {};
	struct store *s = NULL;
	char url[160];

	snprintf(url, sizeof(url), "sqlite://%s", dbpath);
	assert_int_equal(store_open(url, &s, &err), 0);
	return s;
}

static void make_job(struct store_job *j, const char *zone, const char *name, const char *spec)
{
	memset(j, 0, sizeof(*j));
	id_new(j->job_id);
	snprintf(j->region, sizeof(j->region), "us-east");
	snprintf(j->zone, sizeof(j->zone), "%s", zone);
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->version = 1;
	j->spec = (char *)spec;
	snprintf(j->spec_hash, sizeof(j->spec_hash), "h-%s", spec);
	strcpy(j->desired, "RUNNING");
	strcpy(j->state, "PENDING");
	j->max_unavailable = 1;
	j->auto_rollback = true;
	j->updated_at = clock_real_usec();
}

static void make_task(struct store_task *t, const char *job_id, int index)
{
	memset(t, 0, sizeof(*t));
	id_new(t->task_id);
	snprintf(t->job_id, sizeof(t->job_id), "%s", job_id);
	t->index = index;
	t->version = 1;
	strcpy(t->desired, "RUNNING");
	strcpy(t->state, "PENDING");
	t->millicpus = 1000;
	t->memory_mb = 64;
	t->updated_at = clock_real_usec();
}

static void test_open_migrates_and_reopens(void **state)
{
	struct store *s = open_store();
	int v = -1;

	assert_int_equal(store_schema_version(s, &v), 0);
	assert_int_equal(v, (int)store_migrations_n);
	store_free(s);
	/* Second open applies nothing and keeps the version. */
	s = open_store();
	assert_int_equal(store_schema_version(s, &v), 0);
	assert_int_equal(v, (int)store_migrations_n);
	store_free(s);
	/* WAL mode is on for file databases. */
	assert_int_equal(access(dbpath, F_OK), 0);
	{
		char wal[160];

		snprintf(wal, sizeof(wal), "%s-wal", dbpath);
		s = open_store();
		assert_int_equal(access(wal, F_OK), 0);
		store_free(s);
	}
}

static void test_open_refuses_bad_urls_and_newer_schema(void **state)
{
	struct cd_error err = {};
	struct store *s = NULL;
	sqlite3 *db;

	assert_int_equal(store_open("postgresql://x/y", &s, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "PostgreSQL"));
	cd_error_reset(&err);
	assert_int_equal(store_open("mysql://x", &s, &err), -EPROTONOSUPPORT);
	cd_error_reset(&err);
	assert_int_equal(store_open("", &s, &err), -EINVAL);
	cd_error_reset(&err);
	assert_true(store_open("/nonexistent-dir-cd/x.db", &s, &err) < 0);
	assert_null(s);

	/* A database written by a newer deployd is refused, not silently downgraded. */
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), 0);
	sqlite3_close(db);
	cd_error_reset(&err);
	assert_int_equal(store_open(dbpath, &s, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "newer"));
}

static void test_open_memory(void **state)
{
	struct cd_error err = {};
	struct store *s = NULL;
	int v = 0;

	assert_int_equal(store_open(":memory:", &s, &err), 0);
	assert_int_equal(store_schema_version(s, &v), 0);
	assert_int_equal(v, (int)store_migrations_n);
	store_free(s);
}

static void test_map_rc(void **state)
{
	struct cd_error err = {};

	assert_int_equal(store_map_rc(NULL, SQLITE_BUSY, &err, "x"), -EBUSY);
	assert_non_null(strstr(err.msg, "x: "));
	assert_int_equal(store_map_rc(NULL, SQLITE_FULL, NULL, "x"), -ENOSPC);
	assert_int_equal(store_map_rc(NULL, SQLITE_CONSTRAINT_UNIQUE, NULL, "x"), -EEXIST);
	assert_int_equal(store_map_rc(NULL, SQLITE_CONSTRAINT_CHECK, NULL, "x"), -EINVAL);
	assert_int_equal(store_map_rc(NULL, SQLITE_READONLY, NULL, "x"), -EROFS);
	assert_int_equal(store_map_rc(NULL, SQLITE_NOTADB, NULL, "x"), -EBADMSG);
	assert_int_equal(store_map_rc(NULL, SQLITE_IOERR_FSYNC, NULL, "x"), -EIO);
	assert_int_equal(store_map_rc(NULL, SQLITE_OK, NULL, "x"), 0);
}

static void test_job_crud(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_job j, got = {}, dup;
	struct cd_error err = {};
	char *spec = NULL;

	make_job(&j, "us-east-1", "foo", "{\"v\":1}");
	assert_int_equal(store_job_insert(s, &j, &err), 0);
	assert_int_equal(store_job_get(s, "us-east-1", "foo", &got, &err), 0);
	assert_string_equal(got.job_id, j.job_id);
	assert_string_equal(got.spec, "{\"v\":1}");
	assert_string_equal(got.state, "PENDING");
	assert_int_equal(got.version, 1);
	assert_true(got.auto_rollback);
	assert_null(got.reason);
	store_job_release(&got);

	/* Same zone/name is a conflict; the first job is untouched. */
	make_job(&dup, "us-east-1", "foo", "{\"v\":9}");
	assert_int_equal(store_job_insert(s, &dup, &err), -EEXIST);
	assert_int_equal(store_job_get_by_id(s, dup.job_id, &got, NULL), -ENOENT);

	/* New version: row moves to version 2, version 1 stays readable for rollback. */
	j.version = 2;
	j.spec = "{\"v\":2}";
	strcpy(j.state, "RUNNING");
	strcpy(j.rollout, "rolling");
	j.reason = "rolling update 1/2";
	assert_int_equal(store_job_update(s, &j, &err), 0);
	assert_int_equal(store_job_get_by_id(s, j.job_id, &got, &err), 0);
	assert_int_equal(got.version, 2);
	assert_string_equal(got.spec, "{\"v\":2}");
	assert_string_equal(got.rollout, "rolling");
	assert_string_equal(got.reason, "rolling update 1/2");
	store_job_release(&got);
	assert_int_equal(store_job_version_spec(s, j.job_id, 1, &spec, &err), 0);
	assert_string_equal(spec, "{\"v\":1}");
	free(spec);
	assert_int_equal(store_job_version_spec(s, j.job_id, 7, &spec, NULL), -ENOENT);

	/* Update of an unknown job. */
	make_job(&dup, "us-east-1", "bar", "{}");
	assert_int_equal(store_job_update(s, &dup, NULL), -ENOENT);
	assert_int_equal(store_job_get(s, "us-east-1", "bar", &got, NULL), -ENOENT);

	/* Invalid values are refused by the schema, not stored. */
	j.version = 3;
	j.spec = "{\"v\":3}";
	strcpy(j.state, "BOGUS");
	cd_error_reset(&err);
	assert_int_equal(store_job_update(s, &j, &err), -EINVAL);
	assert_int_equal(store_job_get_by_id(s, j.job_id, &got, NULL), 0);
	assert_int_equal(got.version, 2);
	store_job_release(&got);
	assert_int_equal(store_job_version_spec(s, j.job_id, 3, &spec, NULL), -ENOENT);
}

static void test_job_list_pagination(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	const char *names[] = { "e", "a", "d", "b", "c" };
	struct store_job j, *v = NULL;
	char last_zone[STORE_NAME_MAX] = "", last_name[STORE_NAME_MAX] = "";
	size_t n = 0, total = 0;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		make_job(&j, "z1", names[i], "{}");
		assert_int_equal(store_job_insert(s, &j, NULL), 0);
	}
	make_job(&j, "z0", "zz", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);

	/* Zone filter, pages of 2, in name order. */
	for (int page = 0; page < 4; page++) {
		assert_int_equal(store_job_list(s, "z1", page ? last_zone : NULL,
						page ? last_name : NULL, 2, &v, &n, NULL),
				 0);
		for (size_t i = 0; i < n; i++) {
			assert_string_equal(v[i].zone, "z1");
			assert_int_equal(v[i].name[0], (char)('a' + total));
			total++;
		}
		if (n) {
			snprintf(last_zone, sizeof(last_zone), "%s", v[n - 1].zone);
			snprintf(last_name, sizeof(last_name), "%s", v[n - 1].name);
		}
		store_job_list_free(v, n);
		if (n < 2)
			break;
	}
	assert_int_equal(total, 5);

	/* All zones: z0 first. */
	assert_int_equal(store_job_list(s, NULL, NULL, NULL, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 6);
	assert_string_equal(v[0].zone, "z0");
	store_job_list_free(v, n);
}

static void test_task_crud_and_filters(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_job a, b;
	struct store_task t0, t1, t2, got = {}, *v = NULL;
	struct store_task_filter f = {};
	size_t n = 0;

	make_job(&a, "z1", "a", "{}");
	make_job(&b, "z2", "b", "{}");
	assert_int_equal(store_job_insert(s, &a, NULL), 0);
	assert_int_equal(store_job_insert(s, &b, NULL), 0);
	make_task(&t0, a.job_id, 0);
	make_task(&t1, a.job_id, 1);
	make_task(&t2, b.job_id, 0);
	strcpy(t0.host_id, "h1");
	strcpy(t1.host_id, "h2");
	strcpy(t2.host_id, "h1");
	t0.ports = "[8080]";
	assert_int_equal(store_task_insert(s, &t0, NULL), 0);
	assert_int_equal(store_task_insert(s, &t1, NULL), 0);
	assert_int_equal(store_task_insert(s, &t2, NULL), 0);
	assert_int_equal(store_task_insert(s, &t2, NULL), -EEXIST);

	/* A task of an unknown job violates the foreign key. */
	{
		struct store_task orphan;

		make_task(&orphan, "0000000000000000000000000000", 0);
		assert_true(store_task_insert(s, &orphan, NULL) < 0);
	}

	assert_int_equal(store_task_get(s, t0.task_id, &got, NULL), 0);
	assert_string_equal(got.ports, "[8080]");
	assert_false(got.has_exit_code);
	store_task_release(&got);

	t0.has_exit_code = true;
	t0.exit_code = 3;
	strcpy(t0.state, "ERROR");
	t0.reason = "exited";
	t0.last_seq = 42;
	assert_int_equal(store_task_update(s, &t0, NULL), 0);
	assert_int_equal(store_task_get(s, t0.task_id, &got, NULL), 0);
	assert_true(got.has_exit_code);
	assert_int_equal(got.exit_code, 3);
	assert_int_equal(got.last_seq, 42);
	assert_string_equal(got.reason, "exited");
	store_task_release(&got);

	f.host_id = "h1";
	assert_int_equal(store_task_list(s, &f, &v, &n, NULL), 0);
	assert_int_equal(n, 2);
	store_task_list_free(v, n);
	f.host_id = NULL;
	f.zone = "z1";
	assert_int_equal(store_task_list(s, &f, &v, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].index, 0);
	assert_int_equal(v[1].index, 1);
	store_task_list_free(v, n);
	t1.removed = true;
	assert_int_equal(store_task_update(s, &t1, NULL), 0);
	f.live_only = true;
	assert_int_equal(store_task_list(s, &f, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	store_task_list_free(v, n);
	f = (struct store_task_filter){ .job_id = b.job_id };
	assert_int_equal(store_task_list(s, &f, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].task_id, t2.task_id);
	store_task_list_free(v, n);
	assert_int_equal(store_task_get(s, "nope", &got, NULL), -ENOENT);
}

static void test_hosts(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_host h = {}, got = {}, *v = NULL;
	size_t n = 0;

	strcpy(h.host_id, "h2");
	strcpy(h.zone, "z1");
	strcpy(h.addr, "http://127.0.0.1:7411");
	strcpy(h.state, "READY");
	h.vcpus = 4;
	h.memory_mb = 1024;
	h.storage_mb = 2048;
	h.registered_at = h.last_heartbeat = 100;
	assert_int_equal(store_host_upsert(s, &h, NULL), 0);
	strcpy(h.host_id, "h1");
	assert_int_equal(store_host_upsert(s, &h, NULL), 0);
	/* A later heartbeat keeps registered_at. */
	h.registered_at = 500;
	h.last_heartbeat = 500;
	h.vcpus = 8;
	h.free_json = "{\"vcpus\":7}";
	assert_int_equal(store_host_upsert(s, &h, NULL), 0);
	assert_int_equal(store_host_get(s, "h1", &got, NULL), 0);
	assert_int_equal(got.registered_at, 100);
	assert_int_equal(got.last_heartbeat, 500);
	assert_int_equal(got.vcpus, 8);
	assert_string_equal(got.free_json, "{\"vcpus\":7}");
	store_host_release(&got);

	assert_int_equal(store_host_set_state(s, "h1", "LOST", NULL), 0);
	assert_int_equal(store_host_set_state(s, "h1", "WEIRD", NULL), -EINVAL);
	assert_int_equal(store_host_set_state(s, "h9", "LOST", NULL), -ENOENT);
	assert_int_equal(store_host_list(s, "z1", NULL, 1, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].host_id, "h1");
	assert_string_equal(v[0].state, "LOST");
	store_host_list_free(v, n);
	assert_int_equal(store_host_list(s, "z1", "h1", 0, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].host_id, "h2");
	store_host_list_free(v, n);
	assert_int_equal(store_host_list(s, "z9", NULL, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 0);
	store_host_list_free(v, n);
}

static void test_artifacts_immutable(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_artifact a = {}, got = {}, *v = NULL;
	struct cd_error err = {};
	bool created = false;
	size_t n = 0;

	a.target = "//repo/foo:main";
	strcpy(a.commit, "0123456789abcdef0123456789abcdef01234567");
	strcpy(a.digest, "sha256:aaaa");
	a.size = 10;
	assert_int_equal(store_artifact_put(s, &a, &created, &err), 0);
	assert_true(created);
	assert_int_equal(store_artifact_put(s, &a, &created, &err), 0);
	assert_false(created);
	strcpy(a.digest, "sha256:bbbb");
	assert_int_equal(store_artifact_put(s, &a, &created, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "sha256:aaaa"));
	assert_int_equal(store_artifact_get(s, a.target, a.commit, &got, NULL), 0);
	assert_string_equal(got.digest, "sha256:aaaa");
	store_artifact_release(&got);

	strcpy(a.commit, "1123456789abcdef0123456789abcdef01234567");
	assert_int_equal(store_artifact_put(s, &a, &created, NULL), 0);
	a.target = "//repo/bar:main";
	assert_int_equal(store_artifact_put(s, &a, &created, NULL), 0);
	assert_int_equal(store_artifact_list(s, "//repo/foo:main", 0, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 2);
	store_artifact_list_free(v, n);
	assert_int_equal(store_artifact_list(s, NULL, 1, 1, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].target, "//repo/foo:main");
	store_artifact_list_free(v, n);
	assert_int_equal(store_artifact_get(s, "//x:y", a.commit, &got, NULL), -ENOENT);
}

static void test_transaction_rollback_leaves_nothing(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_job j, got;
	struct store_task t;
	struct store_event *ev = NULL;
	size_t n = 0;
	int64_t last = -1;

	make_job(&j, "z1", "atomic", "{}");
	assert_int_equal(store_begin(s, NULL), 0);
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(
		store_event_append(s, "test", "job.put", "job://r/z1/atomic", NULL, NULL, NULL), 0);
	make_task(&t, j.job_id, 0);
	strcpy(t.state, "NOPE"); /* violates the CHECK: the whole transaction must go */
	assert_int_equal(store_task_insert(s, &t, NULL), -EINVAL);
	store_rollback(s);

	assert_int_equal(store_job_get(s, "z1", "atomic", &got, NULL), -ENOENT);
	assert_int_equal(store_event_last_id(s, &last, NULL), 0);
	assert_int_equal(last, 0);
	assert_int_equal(store_event_list(s, 0, 0, &ev, &n, NULL), 0);
	assert_int_equal(n, 0);
	store_event_list_free(ev, n);

	/* A failed call inside an explicit transaction poisons it: commit rolls back. */
	assert_int_equal(store_begin(s, NULL), 0);
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(store_task_insert(s, &t, NULL), -EINVAL);
	assert_int_equal(store_commit(s, NULL), -ECANCELED);
	assert_int_equal(store_job_get(s, "z1", "atomic", &got, NULL), -ENOENT);

	/* And a good transaction commits everything. */
	strcpy(t.state, "PENDING");
	assert_int_equal(store_begin(s, NULL), 0);
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(store_task_insert(s, &t, NULL), 0);
	assert_int_equal(store_commit(s, NULL), 0);
	assert_int_equal(store_job_get(s, "z1", "atomic", &got, NULL), 0);
	store_job_release(&got);
}

/* A process that dies in the middle of a transaction (kill -9, power cut after the write()
 * but before COMMIT) leaves the database as it was before the transaction. */
static void test_crash_mid_transaction(void **state)
{
	struct store_job j, got;
	pid_t pid;
	int status;

	make_job(&j, "z1", "committed", "{}");
	{
		_cleanup_store_ struct store *s = open_store();

		assert_int_equal(store_job_insert(s, &j, NULL), 0);
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s = open_store();
		struct store_job k;

		make_job(&k, "z1", "uncommitted", "{}");
		if (store_begin(s, NULL) < 0 || store_job_insert(s, &k, NULL) < 0)
			_exit(2);
		j.version = 2;
		j.spec = "{\"half\":true}";
		if (store_job_update(s, &j, NULL) < 0)
			_exit(3);
		_exit(0); /* no commit, no close: like kill -9 */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	_cleanup_store_ struct store *s = open_store();
	assert_int_equal(store_job_get(s, "z1", "uncommitted", &got, NULL), -ENOENT);
	assert_int_equal(store_job_get(s, "z1", "committed", &got, NULL), 0);
	assert_int_equal(got.version, 1);
	assert_string_equal(got.spec, "{}");
	store_job_release(&got);
}

static void test_events_append_only_and_ordered(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_event *v = NULL;
	int64_t id1 = 0, id2 = 0;
	size_t n = 0;
	sqlite3 *db;
	int r;

	assert_int_equal(store_event_append(s, "admin", "job.put", "job://r/z/a", "{\"v\":1}", &id1,
					    NULL),
			 0);
	assert_int_equal(store_event_append(s, "agent", "task.state", "task://r/z/a/1", NULL, &id2,
					    NULL),
			 0);
	assert_true(id2 > id1);
	assert_int_equal(store_event_append(s, NULL, "x", "y", NULL, NULL, NULL), -EINVAL);
	assert_int_equal(store_event_list(s, id1, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].id, id2);
	assert_string_equal(v[0].actor, "agent");
	assert_string_equal(v[0].data, "{}");
	store_event_list_free(v, n);

	/* The database itself refuses to rewrite history. */
	db = store_enter(s, true, &r, NULL);
	assert_non_null(db);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE events SET actor = 'x'", NULL, NULL, NULL),
			     SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_leave(s, true, 0, NULL), 0);
	assert_int_equal(store_event_list(s, 0, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].actor, "admin");
	store_event_list_free(v, n);
}

/* Appends one event from another thread; whether it lands before or after the main thread
 * starts waiting, the wait must report it (it re-checks the table before blocking). */
static void *append_later(void *arg)
{
	store_event_append(arg, "t", "k", "s", NULL, NULL, NULL);
	return NULL;
}

static void test_event_wait(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	pthread_t th;
	int64_t last = 0;

	assert_int_equal(store_event_last_id(s, &last, NULL), 0);
	/* Nothing new: a zero timeout returns 0 at once. */
	assert_int_equal(store_event_wait(s, last, 0, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, append_later, s), 0);
	/* Generous timeout: the test asserts the wake-up, not its latency. */
	assert_int_equal(store_event_wait(s, last, 60 * USEC_PER_SEC, NULL), 1);
	pthread_join(th, NULL);
	assert_int_equal(store_event_wait(s, last, 0, NULL), 1);
}

static void *wake_later(void *arg)
{
	clock_sleep_usec(50 * USEC_PER_MSEC);
	store_event_wake(arg);
	return NULL;
}

/* store_event_wake() ends a wait with nothing new at once (0), long before its timeout. */
static void test_event_wake(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	usec_t t0 = clock_mono_usec();
	int64_t last = 0;
	pthread_t th;

	assert_int_equal(store_event_last_id(s, &last, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, wake_later, s), 0);
	assert_int_equal(store_event_wait(s, last, 600 * USEC_PER_SEC, NULL), 0);
	pthread_join(th, NULL);
	/* a liveness bound (the timeout was 10 minutes), not a latency one */
	assert_true(clock_mono_usec() - t0 < 300 * USEC_PER_SEC);
}

/* Retention: the oldest events older than the cutoff go, at most max_rows a call, recorded in
 * the prune log and as an event; newer events stay append-only. */
static void test_event_prune(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_event *v = NULL;
	int64_t ids[6], deleted = -1, through = -1;
	usec_t cutoff;
	size_t n = 0;
	sqlite3 *db;
	char *msg = NULL;
	int r;

	for (int i = 0; i < 6; i++) {
		assert_int_equal(store_event_append(s, "t", "k", "s", NULL, &ids[i], NULL), 0);
		clock_sleep_usec(2 * USEC_PER_MSEC); /* distinct timestamps */
	}
	assert_int_equal(store_event_list(s, 0, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 6);
	cutoff = v[4].ts; /* events 0..3 are older */
	store_event_list_free(v, n);

	assert_int_equal(store_event_pruned_through(s, &through, NULL), 0);
	assert_int_equal(through, 0);
	/* at most 3 per call */
	assert_int_equal(store_event_prune(s, cutoff, 3, "deployd", &deleted, NULL), 0);
	assert_int_equal(deleted, 3);
	assert_int_equal(store_event_pruned_through(s, &through, NULL), 0);
	assert_int_equal(through, ids[2]);
	assert_int_equal(store_event_prune(s, cutoff, 3, "deployd", &deleted, NULL), 0);
	assert_int_equal(deleted, 1);
	/* nothing older is left */
	assert_int_equal(store_event_prune(s, cutoff, 3, "deployd", &deleted, NULL), 0);
	assert_int_equal(deleted, 0);
	assert_int_equal(store_event_list(s, 0, 0, &v, &n, NULL), 0);
	/* events 4 and 5, and the two "events.pruned" records */
	assert_int_equal(n, 4);
	assert_int_equal(v[0].id, ids[4]);
	assert_int_equal(v[1].id, ids[5]);
	assert_string_equal(v[2].kind, "events.pruned");
	assert_non_null(strstr(v[3].data, "\"deleted\":1"));
	store_event_list_free(v, n);

	/* anything newer than the prune mark stays append-only, and so does the prune log */
	db = store_enter(s, true, &r, NULL);
	assert_non_null(db);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events", NULL, NULL, &msg), SQLITE_OK);
	assert_non_null(strstr(msg, "append-only"));
	sqlite3_free(msg);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE events SET actor = 'x'", NULL, NULL, NULL),
			     SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events_pruned", NULL, NULL, NULL),
			     SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE events_pruned SET deleted = 0", NULL, NULL,
					  NULL),
			     SQLITE_OK);
	store_leave(s, true, -ECANCELED, NULL);
	assert_int_equal(store_event_list(s, 0, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 4);
	store_event_list_free(v, n);
}

/* Two connections (two deployd processes sharing one database): writes of one are visible to
 * the other and a write transaction of one makes the other wait, not fail. */
static void test_two_connections(void **state)
{
	_cleanup_store_ struct store *a = open_store();
	_cleanup_store_ struct store *b = open_store();
	struct store_job j, got;

	make_job(&j, "z1", "shared", "{}");
	assert_int_equal(store_begin(a, NULL), 0);
	assert_int_equal(store_job_insert(a, &j, NULL), 0);
	/* WAL: b reads the last committed state while a writes. */
	assert_int_equal(store_job_get(b, "z1", "shared", &got, NULL), -ENOENT);
	assert_int_equal(store_commit(a, NULL), 0);
	assert_int_equal(store_job_get(b, "z1", "shared", &got, NULL), 0);
	store_job_release(&got);
}

/* Statements are compiled once per connection: repeating a query compiles nothing new. */
static void test_statement_cache(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_stats before, after;
	struct store_job j, got;

	make_job(&j, "z1", "cached", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(store_job_get(s, "z1", "cached", &got, NULL), 0);
	store_job_release(&got);
	store_stats(s, &before);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(store_job_get(s, "z1", "cached", &got, NULL), 0);
		assert_string_equal(got.name, "cached");
		store_job_release(&got);
		/* a miss binds other values into the same statement */
		assert_int_equal(store_job_get(s, "z1", "absent", &got, NULL), -ENOENT);
	}
	store_stats(s, &after);
	assert_int_equal(after.statements_prepared, before.statements_prepared);
}

/* A statement still being stepped by an outer caller is not handed out again: the inner use
 * gets its own copy and both see their own rows. */
static void test_statement_in_use_not_shared(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	const char *sql = "SELECT name FROM jobs WHERE zone = ? ORDER BY name";
	sqlite3_stmt *outer = NULL, *inner = NULL;
	struct store_job j;
	sqlite3 *db;
	int r;

	make_job(&j, "z1", "a", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	make_job(&j, "z1", "b", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	db = store_enter(s, false, &r, NULL);
	assert_non_null(db);
	assert_int_equal(store_prepare(db, sql, &outer, NULL), 0);
	assert_int_equal(store_bind_text(outer, 1, "z1"), 0);
	assert_int_equal(sqlite3_step(outer), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(outer, 0), "a");
	assert_int_equal(store_prepare(db, sql, &inner, NULL), 0);
	assert_ptr_not_equal(inner, outer);
	assert_int_equal(store_bind_text(inner, 1, "none"), 0);
	assert_int_equal(sqlite3_step(inner), SQLITE_DONE);
	assert_int_equal(sqlite3_step(outer), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(outer, 0), "b");
	assert_int_equal(store_leave(s, false, 0, NULL), 0);
	/* Outside store_enter() there is no connection to prepare on. */
	assert_int_equal(store_prepare(db, sql, &inner, NULL), -EINVAL);
}

struct reader_arg {
	struct store *s;
	int result; /* store_job_get's return */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void *read_job(void *p)
{
	struct reader_arg *a = p;
	struct store_job got;
	int r = store_job_get(a->s, "z1", "snap", &got, NULL);

	if (r == 0)
		store_job_release(&got);
	pthread_mutex_lock(&a->lock);
	a->result = r;
	a->done = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/*
 * While one thread holds an open write transaction, its own reads see its rows and another
 * thread's read neither waits for it nor sees them (WAL snapshot on a pooled reader).
 */
static void test_reads_do_not_wait_for_writer(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct reader_arg a = { .s = s, .result = 1 };
	struct store_job j, got;
	struct timespec deadline;
	pthread_t th;
	bool done;

	pthread_mutex_init(&a.lock, NULL);
	pthread_cond_init(&a.cond, NULL);
	make_job(&j, "z1", "snap", "{}");
	assert_int_equal(store_begin(s, NULL), 0);
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(store_job_get(s, "z1", "snap", &got, NULL), 0);
	store_job_release(&got);
	assert_int_equal(pthread_create(&th, NULL, read_job, &a), 0);
	/* A liveness bound, not a latency one: a reader stuck behind the writer never finishes
	 * while we hold the transaction. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 60;
	pthread_mutex_lock(&a.lock);
	while (!a.done && pthread_cond_timedwait(&a.cond, &a.lock, &deadline) == 0)
		;
	done = a.done;
	pthread_mutex_unlock(&a.lock);
	assert_int_equal(store_commit(s, NULL), 0);
	pthread_join(th, NULL);
	assert_true(done);
	assert_int_equal(a.result, -ENOENT);
	/* after the commit every reader sees it */
	a.done = false;
	read_job(&a);
	assert_int_equal(a.result, 0);
	pthread_cond_destroy(&a.cond);
	pthread_mutex_destroy(&a.lock);
}

static void *read_many(void *p)
{
	struct store *s = p;

	for (int i = 0; i < 200; i++) {
		struct store_task *v = NULL;
		size_t n = 0;
		struct store_task_filter f = { .zone = "z1" };

		if (store_task_list(s, &f, &v, &n, NULL) < 0 || n != 3)
			return (void *)1;
		store_task_list_free(v, n);
	}
	return NULL;
}

/* Many threads reading at once share a bounded pool and all get the right rows. */
static void test_reader_pool_bounded(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	struct store_stats st;
	struct store_job j;
	pthread_t th[12];

	make_job(&j, "z1", "pool", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	for (int i = 0; i < 3; i++) {
		struct store_task t;

		make_task(&t, j.job_id, i);
		assert_int_equal(store_task_insert(s, &t, NULL), 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(th); i++)
		assert_int_equal(pthread_create(&th[i], NULL, read_many, s), 0);
	for (size_t i = 0; i < ARRAY_SIZE(th); i++) {
		void *ret = (void *)1;

		pthread_join(th[i], &ret);
		assert_null(ret);
	}
	store_stats(s, &st);
	assert_true(st.readers_open >= 1 && st.readers_open <= 4);
}

/* store_read_begin(): the reads until store_read_end() see one commit, even when the same
 * thread or another one commits in between. */
static void test_read_snapshot(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	_cleanup_store_ struct store *other = open_store();
	struct store_job j, got;

	make_job(&j, "z1", "first", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(store_read_begin(s, NULL), 0);
	assert_int_equal(store_job_get(s, "z1", "first", &got, NULL), 0);
	store_job_release(&got);
	/* nested pairs are flattened */
	assert_int_equal(store_read_begin(s, NULL), 0);
	make_job(&j, "z1", "second", "{}");
	assert_int_equal(store_job_insert(other, &j, NULL), 0);
	make_job(&j, "z1", "third", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0); /* writes go to the writer */
	assert_int_equal(store_job_get(s, "z1", "second", &got, NULL), -ENOENT);
	store_read_end(s);
	assert_int_equal(store_job_get(s, "z1", "third", &got, NULL), -ENOENT);
	store_read_end(s);
	assert_int_equal(store_job_get(s, "z1", "second", &got, NULL), 0);
	store_job_release(&got);
	assert_int_equal(store_job_get(s, "z1", "third", &got, NULL), 0);
	store_job_release(&got);
	/* inside a write transaction the snapshot is that transaction */
	assert_int_equal(store_begin(s, NULL), 0);
	make_job(&j, "z1", "fourth", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(store_read_begin(s, NULL), 0);
	assert_int_equal(store_job_get(s, "z1", "fourth", &got, NULL), 0);
	store_job_release(&got);
	store_read_end(s);
	store_rollback(s);
	assert_int_equal(store_job_get(s, "z1", "fourth", &got, NULL), -ENOENT);
}

/* An in-memory database exists on one connection only: reads stay on it. */
static void test_memory_store_reads_on_writer(void **state)
{
	_cleanup_store_ struct store *s = NULL;
	struct store_stats st;
	struct store_job j, got;

	assert_int_equal(store_open(":memory:", &s, NULL), 0);
	make_job(&j, "z1", "mem", "{}");
	assert_int_equal(store_job_insert(s, &j, NULL), 0);
	assert_int_equal(store_job_get(s, "z1", "mem", &got, NULL), 0);
	store_job_release(&got);
	store_stats(s, &st);
	assert_int_equal(st.readers_open, 0);
}

/* Every write fails at every step once: the result is all or nothing, never half. */
static void test_injected_failures_are_atomic(void **state)
{
	_cleanup_store_ struct store *s = open_store();
	int failures = 0;

	for (int at = 1; at < 20; at++) {
		struct store_job j, got;
		char name[32], *spec = NULL;
		int64_t before = 0, after = 0;
		int r, present;

		snprintf(name, sizeof(name), "job%d", at);
		make_job(&j, "z1", name, "{\"x\":1}");
		assert_int_equal(store_event_last_id(s, &before, NULL), 0);
		step_fail_at = at;
		/* A job, its version row and an event in one transaction. */
		r = store_begin(s, NULL);
		if (r >= 0)
			r = store_job_insert(s, &j, NULL);
		if (r >= 0)
			r = store_event_append(s, "t", "job.put", name, NULL, NULL, NULL);
		if (r >= 0)
			r = store_commit(s, NULL);
		else
			store_rollback(s);
		step_fail_at = 0;
		if (r < 0)
			failures++;
		present = store_job_get(s, "z1", name, &got, NULL) == 0;
		if (present)
			store_job_release(&got);
		assert_int_equal(present, r >= 0);
		assert_int_equal(store_job_version_spec(s, j.job_id, 1, &spec, NULL) == 0, r >= 0);
		free(spec);
		assert_int_equal(store_event_last_id(s, &after, NULL), 0);
		assert_int_equal(after > before, r >= 0);
	}
	/* The injection did hit every statement of the transaction at least once. */
	assert_true(failures >= 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_migrates_and_reopens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_refuses_bad_urls_and_newer_schema, setup,
						teardown),
		cmocka_unit_test(test_open_memory),
		cmocka_unit_test(test_map_rc),
		cmocka_unit_test_setup_teardown(test_job_crud, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_list_pagination, setup, teardown),
		cmocka_unit_test_setup_teardown(test_task_crud_and_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hosts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_artifacts_immutable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transaction_rollback_leaves_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_crash_mid_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_append_only_and_ordered, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_event_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_wake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statement_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statement_in_use_not_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reads_do_not_wait_for_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_pool_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_store_reads_on_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_injected_failures_are_atomic, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
