/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/state: schema, task rows, events, outbox, atomicity and crash safety on a
 * real database file. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/state.h"
#include "lib/fs.h"
#include "lib/str.h"

/* Fault injection: make our N-th sqlite3_step() call fail with SQLITE_FULL (disk full).
 * SQLite's own internal calls (sqlite3_exec) are not wrapped. */
int __real_sqlite3_step(sqlite3_stmt *s);
int __wrap_sqlite3_step(sqlite3_stmt *s);
static int step_fail_at; /* 0 = never */
static int step_calls;
int __wrap_sqlite3_step(sqlite3_stmt *s)
{
	if (step_fail_at && ++step_calls == step_fail_at)
		return SQLITE_FULL;
	return __real_sqlite3_step(s);
}

static char tmpdir[64];
static char dbpath[128];

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-agent-state.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/taskd.db", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static void make_task(struct task_record *t, const char *id, const char *req, const char *job)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->task_id, sizeof(t->task_id), "%s", id);
	t->request_id = req ? strdup(req) : NULL;
	t->job_url = strdup(job);
	t->spec_json = strdup("{\"name\":\"x\"}");
	t->desired = TASK_RUNNING;
	t->state = TASK_PENDING;
	strcpy(t->reason, "fetching");
	t->exit_code = -1;
	t->created_at = t->updated_at = clock_real_usec();
}

static void test_state_strings(void **state)
{
	enum task_state s;

	assert_string_equal(task_state_to_string(TASK_ERROR), "ERROR");
	assert_null(task_state_to_string(_TASK_STATE_MAX));
	assert_int_equal(task_state_from_string("RUNNING", &s), 0);
	assert_int_equal(s, TASK_RUNNING);
	assert_int_equal(task_state_from_string("running", &s), -EINVAL);
	assert_int_equal(task_state_from_string(NULL, &s), -EINVAL);
}

static void test_state_open_migrates_and_reopens(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct cd_error err = { 0 };

	assert_int_equal(state_open(dbpath, &st, &err), 0);
	assert_int_equal(state_schema_version(st), 3);
	state_close(st);
	st = NULL;
	assert_int_equal(state_open(dbpath, &st, &err), 0);
	assert_int_equal(state_schema_version(st), 3);
}

static void test_state_refuses_newer_schema(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct cd_error err = { 0 };
	sqlite3 *db;

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(state_open(dbpath, &st, &err), -EPROTO);
	assert_null(st);
	assert_non_null(strstr(err.msg, "newer"));
}

/* A database of schema 1 (before from_manager) is upgraded in place; its rows keep working. */
static void test_state_migrates_v1(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_task_record_ struct task_record got = { 0 };
	sqlite3 *db;

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db,
			     "CREATE TABLE tasks (task_id TEXT PRIMARY KEY NOT NULL, "
			     "request_id TEXT UNIQUE, job_url TEXT NOT NULL, task_index "
			     "INTEGER NOT NULL, spec TEXT NOT NULL, desired TEXT NOT NULL, "
			     "state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', message "
			     "TEXT, exit_code INTEGER NOT NULL DEFAULT -1, signal INTEGER NOT "
			     "NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0, generation "
			     "INTEGER NOT NULL DEFAULT 0, shim_pid INTEGER NOT NULL DEFAULT 0, "
			     "shim_start INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT "
			     "NULL, started_at INTEGER NOT NULL DEFAULT 0, finished_at INTEGER "
			     "NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL, version INTEGER "
			     "NOT NULL, artifact TEXT);"
			     "CREATE INDEX tasks_job ON tasks(job_url);"
			     "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts "
			     "INTEGER NOT NULL, task_id TEXT NOT NULL DEFAULT '', type TEXT NOT "
			     "NULL, data TEXT NOT NULL DEFAULT '{}');"
			     "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id "
			     "TEXT UNIQUE NOT NULL, task_id TEXT NOT NULL DEFAULT '', kind TEXT "
			     "NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL, attempts "
			     "INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL "
			     "DEFAULT 0);"
			     "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT "
			     "NULL);"
			     "INSERT INTO tasks (task_id, job_url, task_index, spec, desired, "
			     "state, created_at, updated_at, version) VALUES ('old', "
			     "'job://r/z/a', 0, '{}', 'RUNNING', 'RUNNING', 1, 1, 3);"
			     "PRAGMA user_version = 1;",
			     NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	assert_int_equal(state_schema_version(st), 3);
	assert_int_equal(state_task_get(st, "old", &got), 0);
	assert_int_equal(got.state, TASK_RUNNING);
	assert_int_equal(got.version, 3);
	assert_false(got.from_manager);
}

static void test_state_garbage_file(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct cd_error err = { 0 };
	char junk[4096];

	memset(junk, 'x', sizeof(junk));
	assert_int_equal(fs_write_atomic(dbpath, junk, sizeof(junk), 0600), 0);
	assert_int_equal(state_open(dbpath, &st, &err), -EUCLEAN);
	assert_true(err.msg[0] != '\0');
}

static void test_state_task_roundtrip(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_task_record_ struct task_record t = { 0 }, got = { 0 }, byreq = { 0 };
	struct cd_error err = { 0 };

	assert_int_equal(state_open(dbpath, &st, &err), 0);
	make_task(&t, "00000000000100000000000000aa", "req-1", "job://us-east/us-east-1/web");
	t.task_index = 3;
	t.artifact_json = strdup("{\"digest\":\"sha256:00\"}");
	t.from_manager = true;
	assert_int_equal(state_task_insert(st, &t, "created", NULL, "{\"m\":1}", &err), 0);
	assert_int_equal(t.version, 1);

	assert_int_equal(state_task_get(st, t.task_id, &got), 0);
	assert_string_equal(got.job_url, "job://us-east/us-east-1/web");
	assert_string_equal(got.request_id, "req-1");
	assert_string_equal(got.spec_json, "{\"name\":\"x\"}");
	assert_int_equal(got.task_index, 3);
	assert_int_equal(got.state, TASK_PENDING);
	assert_int_equal(got.desired, TASK_RUNNING);
	assert_string_equal(got.reason, "fetching");
	assert_int_equal(got.exit_code, -1);
	assert_null(got.message);
	assert_string_equal(got.artifact_json, "{\"digest\":\"sha256:00\"}");
	assert_true(got.from_manager);

	assert_int_equal(state_task_get_by_request(st, "req-1", &byreq), 0);
	assert_string_equal(byreq.task_id, t.task_id);
	{
		struct task_record none;

		assert_int_equal(state_task_get_by_request(st, "nope", &none), -ENOENT);
		assert_int_equal(state_task_get(st, "nope", &none), -ENOENT);
	}
}

static void test_state_duplicate_request_refused_atomically(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_task_record_ struct task_record a = { 0 }, b = { 0 };
	struct cd_error err = { 0 };
	uint64_t n_out = 0, last = 0;

	assert_int_equal(state_open(dbpath, &st, &err), 0);
	make_task(&a, "00000000000100000000000000a1", "same", "job://r/z/a");
	make_task(&b, "00000000000100000000000000b2", "same", "job://r/z/a");
	assert_int_equal(state_task_insert(st, &a, "created", NULL, "{}", &err), 0);
	cd_error_reset(&err);
	assert_int_equal(state_task_insert(st, &b, "created", NULL, "{}", &err), -EEXIST);
	/* the failed insert left no event and no outbox message behind */
	assert_int_equal(state_outbox_count(st, &n_out), 0);
	assert_int_equal(n_out, 1);
	assert_int_equal(state_events_last(st, &last), 0);
	assert_int_equal(last, 1);
}

static void test_state_save_versions(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_task_record_ struct task_record t = { 0 }, got = { 0 };
	struct task_record stale;
	struct cd_error err = { 0 };

	assert_int_equal(state_open(dbpath, &st, &err), 0);
	make_task(&t, "00000000000100000000000000c3", NULL, "job://r/z/a");
	assert_int_equal(state_task_insert(st, &t, "created", NULL, NULL, &err), 0);

	t.version++;
	t.state = TASK_ERROR;
	strcpy(t.reason, "exited");
	t.exit_code = 3;
	t.restarts = 2;
	t.shim_pid = 1234;
	t.shim_start = 987654321;
	t.message = strdup("exit status 3");
	assert_int_equal(state_task_save(st, &t, "state", "{\"state\":\"ERROR\"}", "{}", &err), 0);
	assert_int_equal(state_task_get(st, t.task_id, &got), 0);
	assert_int_equal(got.version, 2);
	assert_int_equal(got.state, TASK_ERROR);
	assert_int_equal(got.exit_code, 3);
	assert_int_equal(got.restarts, 2);
	assert_int_equal(got.shim_pid, 1234);
	assert_int_equal(got.shim_start, 987654321);
	assert_string_equal(got.message, "exit status 3");

	/* a writer holding the old version loses */
	stale = t;
	stale.version = 2;
	cd_error_reset(&err);
	assert_int_equal(state_task_save(st, &stale, "state", NULL, NULL, &err), -ESTALE);
	stale.version = 1;
	assert_int_equal(state_task_save(st, &stale, "state", NULL, NULL, NULL), -EINVAL);

	snprintf(stale.task_id, sizeof(stale.task_id), "%s", "gone");
	stale.version = 5;
	assert_int_equal(state_task_save(st, &stale, "state", NULL, NULL, NULL), -ENOENT);
}

static void test_state_list_filters(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct task_record *v = NULL;
	size_t n = 0;
	const char *ids[] = { "00000000000100000000000000d1", "00000000000100000000000000d2",
			      "00000000000100000000000000d3" };

	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	for (unsigned i = 0; i < ARRAY_SIZE(ids); i++) {
		_cleanup_task_record_ struct task_record t = { 0 };

		make_task(&t, ids[i], NULL, i < 2 ? "job://r/z/a" : "job://r/z/b");
		t.state = i == 1 ? TASK_RUNNING : TASK_PENDING;
		assert_int_equal(state_task_insert(st, &t, "created", NULL, NULL, NULL), 0);
	}
	assert_int_equal(state_task_list(st, NULL, -1, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].task_id, ids[0]);
	task_record_array_free(v, n);

	assert_int_equal(state_task_list(st, "job://r/z/a", -1, &v, &n), 0);
	assert_int_equal(n, 2);
	task_record_array_free(v, n);

	assert_int_equal(state_task_list(st, "job://r/z/a", TASK_RUNNING, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].task_id, ids[1]);
	task_record_array_free(v, n);

	assert_int_equal(state_task_list(st, "job://r/z/zzz", -1, &v, &n), 0);
	assert_int_equal(n, 0);
	task_record_array_free(v, n);

	assert_int_equal(state_task_delete(st, ids[0], NULL), 0);
	assert_int_equal(state_task_delete(st, ids[0], NULL), -ENOENT);
	assert_int_equal(state_task_list(st, NULL, -1, &v, &n), 0);
	assert_int_equal(n, 2);
	task_record_array_free(v, n);
}

static void test_state_events(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_task_record_ struct task_record t = { 0 };
	struct state_event *ev = NULL;
	size_t n = 0;
	uint64_t last = 0;

	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	make_task(&t, "00000000000100000000000000e1", NULL, "job://r/z/a");
	assert_int_equal(state_task_insert(st, &t, "created", "{\"a\":1}", NULL, NULL), 0);
	for (int i = 0; i < 4; i++) {
		t.version++;
		assert_int_equal(state_task_save(st, &t, "state", NULL, NULL, NULL), 0);
	}
	assert_int_equal(state_events_after(st, 0, 100, &ev, &n), 0);
	assert_int_equal(n, 5);
	assert_string_equal(ev[0].type, "created");
	assert_string_equal(ev[0].data, "{\"a\":1}");
	assert_string_equal(ev[0].task_id, t.task_id);
	assert_string_equal(ev[1].data, "{}");
	for (size_t i = 1; i < n; i++)
		assert_true(ev[i].seq > ev[i - 1].seq);
	state_event_array_free(ev, n);

	assert_int_equal(state_events_after(st, 3, 1, &ev, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0].seq, 4);
	state_event_array_free(ev, n);
	assert_int_equal(state_events_after(st, 0, 0, &ev, &n), -EINVAL);

	assert_int_equal(state_events_trim(st, 2), 0);
	assert_int_equal(state_events_after(st, 0, 100, &ev, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].seq, 4);
	state_event_array_free(ev, n);
	/* the head survives trimming, so long-poll cursors never go backwards */
	assert_int_equal(state_events_last(st, &last), 0);
	assert_int_equal(last, 5);
}

static void test_state_outbox_order_retry_ack(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct outbox_msg *m = NULL;
	size_t n = 0;
	uint64_t count = 0;
	usec_t now = clock_real_usec();

	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	assert_int_equal(state_outbox_add(st, "task_state", "t1", "{\"n\":1}", NULL), 0);
	assert_int_equal(state_outbox_add(st, "task_state", "t2", "{\"n\":2}", NULL), 0);
	assert_int_equal(state_outbox_add(st, "heartbeat", NULL, "{\"n\":3}", NULL), 0);
	assert_int_equal(state_outbox_due(st, now, 10, &m, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(m[0].body, "{\"n\":1}");
	assert_string_equal(m[2].kind, "heartbeat");
	assert_string_equal(m[2].task_id, "");
	assert_int_equal(strlen(m[0].msg_id), ID_LEN);
	assert_string_not_equal(m[0].msg_id, m[1].msg_id);
	assert_true(m[0].id < m[1].id && m[1].id < m[2].id);
	uint64_t first = m[0].id, second = m[1].id;
	outbox_msg_array_free(m, n);

	/* a failed delivery is held back until its retry time */
	assert_int_equal(state_outbox_retry(st, first, now + 10 * USEC_PER_SEC), 0);
	assert_int_equal(state_outbox_due(st, now, 10, &m, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(m[0].id, second);
	outbox_msg_array_free(m, n);
	assert_int_equal(state_outbox_due(st, now + 11 * USEC_PER_SEC, 10, &m, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(m[0].attempts, 1);
	outbox_msg_array_free(m, n);

	assert_int_equal(state_outbox_ack(st, first), 0);
	assert_int_equal(state_outbox_ack(st, first), -ENOENT);
	assert_int_equal(state_outbox_retry(st, first, now), -ENOENT);
	assert_int_equal(state_outbox_count(st, &count), 0);
	assert_int_equal(count, 2);
}

static size_t outbox_pending(struct state *st)
{
	uint64_t count = 0;

	assert_int_equal(state_outbox_count(st, &count), 0);
	return (size_t)count;
}

/*
 * The manager applies only the highest seq per task (central/cluster.c cluster_notify), so an
 * undelivered message of a task is replaced by the task's next one: while the manager is
 * unreachable the outbox holds one message per task, however many transitions happen.
 */
static void test_state_outbox_coalesces_per_task(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_task_record_ struct task_record a = { 0 }, b = { 0 };
	struct outbox_msg *m = NULL;
	size_t n = 0;
	usec_t now = clock_real_usec();
	uint64_t prev = 0;

	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	make_task(&a, "00000000000100000000000000a1", NULL, "job://r/z/a");
	make_task(&b, "00000000000100000000000000b2", NULL, "job://r/z/b");
	assert_int_equal(state_task_insert(st, &a, "created", NULL, "{\"a\":0}", NULL), 0);
	assert_int_equal(state_task_insert(st, &b, "created", NULL, "{\"b\":0}", NULL), 0);
	/* a crash loop: 200 transitions of a, 3 of b, with the manager away */
	for (int i = 1; i <= 200; i++) {
		char body[32];

		a.version++;
		snprintf(body, sizeof(body), "{\"a\":%d}", i);
		assert_int_equal(state_task_save(st, &a, "restarting", NULL, body, NULL), 0);
		if (i <= 3) {
			b.version++;
			snprintf(body, sizeof(body), "{\"b\":%d}", i);
			assert_int_equal(state_task_save(st, &b, "running", NULL, body, NULL), 0);
		}
		assert_int_equal(outbox_pending(st), 2);
	}
	assert_int_equal(state_outbox_coalesced(st), 200 + 3);
	/* what is left is each task's newest state, with a seq above every replaced one */
	assert_int_equal(state_outbox_due(st, now, 10, &m, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(m[0].task_id, b.task_id);
	assert_string_equal(m[0].body, "{\"b\":3}");
	assert_string_equal(m[1].task_id, a.task_id);
	assert_string_equal(m[1].body, "{\"a\":200}");
	assert_true(m[0].id < m[1].id);
	prev = m[1].id;
	outbox_msg_array_free(m, n);

	/* a failed delivery's backoff carries over to the message that replaces it */
	assert_int_equal(state_outbox_retry(st, prev, now + 30 * USEC_PER_SEC), 0);
	assert_int_equal(state_outbox_retry(st, prev, now + 60 * USEC_PER_SEC), 0);
	a.version++;
	assert_int_equal(state_task_save(st, &a, "running", NULL, "{\"a\":201}", NULL), 0);
	assert_int_equal(outbox_pending(st), 2);
	assert_int_equal(state_outbox_due(st, now + 59 * USEC_PER_SEC, 10, &m, &n), 0);
	assert_int_equal(n, 1); /* only b's: a's new message waits for the inherited retry time */
	assert_string_equal(m[0].task_id, b.task_id);
	outbox_msg_array_free(m, n);
	assert_int_equal(state_outbox_due(st, now + 60 * USEC_PER_SEC, 10, &m, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(m[1].body, "{\"a\":201}");
	assert_int_equal(m[1].attempts, 2);
	assert_true(m[1].id > prev);
	outbox_msg_array_free(m, n);
	/* the replaced message is gone: a late ack or retry of it finds nothing */
	assert_int_equal(state_outbox_ack(st, prev), -ENOENT);
	assert_int_equal(state_outbox_retry(st, prev, now), -ENOENT);

	/* saves without a message (a local task) leave the queue alone */
	a.version++;
	assert_int_equal(state_task_save(st, &a, "running", NULL, NULL, NULL), 0);
	assert_int_equal(outbox_pending(st), 2);
	/* host-level messages are not coalesced; other kinds of the same task are separate */
	assert_int_equal(state_outbox_add(st, "host", NULL, "{}", NULL), 0);
	assert_int_equal(state_outbox_add(st, "host", "", "{}", NULL), 0);
	assert_int_equal(state_outbox_add(st, "other", a.task_id, "{}", NULL), 0);
	assert_int_equal(outbox_pending(st), 5);
}

/* An outbox queued by a taskd before coalescing (schema 2) is coalesced by the migration. */
static void test_state_migration_coalesces_old_outbox(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct outbox_msg *m = NULL;
	size_t n = 0;
	sqlite3 *db;

	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	state_close(TAKE_PTR(st));
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db,
			     "DROP INDEX outbox_task; PRAGMA user_version = 2;"
			     "INSERT INTO outbox (msg_id, task_id, kind, body, created_at) "
			     "VALUES ('m1', 't1', 'task_state', '1', 0), "
			     "('m2', 't2', 'task_state', '2', 0), "
			     "('m3', 't1', 'task_state', '3', 0), "
			     "('m4', '', 'host', '4', 0), ('m5', '', 'host', '5', 0), "
			     "('m6', 't1', 'task_state', '6', 0);",
			     NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	assert_int_equal(state_schema_version(st), 3);
	assert_int_equal(state_outbox_due(st, clock_real_usec(), 10, &m, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(m[0].body, "2");
	assert_string_equal(m[1].body, "4");
	assert_string_equal(m[2].body, "5");
	assert_string_equal(m[3].body, "6");
	outbox_msg_array_free(m, n);
}

static void test_state_meta(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_free_ char *v = NULL;

	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	assert_int_equal(state_meta_get(st, "k", &v), -ENOENT);
	assert_int_equal(state_meta_set(st, "k", "one"), 0);
	assert_int_equal(state_meta_set(st, "k", "two"), 0);
	assert_int_equal(state_meta_get(st, "k", &v), 0);
	assert_string_equal(v, "two");
}

/* A process that dies mid-transaction leaves nothing; one that committed leaves everything. */
static void test_state_crash_safety(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct task_record *v = NULL;
	size_t n = 0;
	uint64_t count = 0;
	int status;

	for (int committed = 0; committed < 2; committed++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			struct state *cst = NULL;
			struct task_record t;

			if (state_open(dbpath, &cst, NULL) < 0)
				_exit(10);
			make_task(&t,
				  committed ? "00000000000100000000000000f2" :
					      "00000000000100000000000000f1",
				  NULL, "job://r/z/a");
			if (!committed) {
				sqlite3 *db;

				/* open a second connection, start a write and die inside it */
				if (sqlite3_open(dbpath, &db) != SQLITE_OK)
					_exit(11);
				sqlite3_exec(db,
					     "BEGIN IMMEDIATE; INSERT INTO tasks (task_id, job_url,"
					     " task_index, spec, desired, state, created_at, "
					     "updated_at, version) VALUES ('x', 'j', 0, '{}', "
					     "'RUNNING', 'PENDING', 0, 0, 1); INSERT INTO outbox "
					     "(msg_id, kind, body, created_at) VALUES ('m', 'k', "
					     "'{}', 0);",
					     NULL, NULL, NULL);
				_exit(0);
			}
			if (state_task_insert(cst, &t, "created", NULL, "{}", NULL) < 0)
				_exit(12);
			_exit(0); /* no close: as if killed right after the commit */
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	assert_int_equal(state_task_list(st, NULL, -1, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].task_id, "00000000000100000000000000f2");
	task_record_array_free(v, n);
	assert_int_equal(state_outbox_count(st, &count), 0);
	assert_int_equal(count, 1);
}

static void test_state_copy(void **state)
{
	_cleanup_task_record_ struct task_record t = { 0 }, c = { 0 };

	make_task(&t, "00000000000100000000000000aa", "r", "job://r/z/a");
	assert_int_equal(task_record_copy(&t, &c), 0);
	assert_ptr_not_equal(c.job_url, t.job_url);
	assert_string_equal(c.job_url, t.job_url);
	assert_string_equal(c.request_id, "r");
	assert_null(c.message);
}

/* A failure at any statement of a task insert leaves no row, no event and no outbox message. */
static void test_state_insert_is_atomic_under_faults(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	struct cd_error err = { 0 };

	assert_int_equal(state_open(dbpath, &st, &err), 0);
	for (int at = 1; at <= 4; at++) {
		_cleanup_task_record_ struct task_record t = { 0 };
		struct task_record *v = NULL;
		size_t n = 0;
		uint64_t count = 0, last = 0;

		make_task(&t, "00000000000100000000000000f9", "req", "job://r/z/a");
		cd_error_reset(&err);
		step_calls = 0;
		step_fail_at = at;
		assert_int_equal(state_task_insert(st, &t, "created", NULL, "{}", &err), -ENOSPC);
		step_fail_at = 0;
		assert_int_equal(state_task_list(st, NULL, -1, &v, &n), 0);
		assert_int_equal(n, 0);
		task_record_array_free(v, n);
		assert_int_equal(state_outbox_count(st, &count), 0);
		assert_int_equal(count, 0);
		assert_int_equal(state_events_last(st, &last), 0);
		assert_int_equal(last, 0);
	}
	/* and the same insert succeeds once the disk has room again */
	{
		_cleanup_task_record_ struct task_record t = { 0 };

		make_task(&t, "00000000000100000000000000f9", "req", "job://r/z/a");
		assert_int_equal(state_task_insert(st, &t, "created", NULL, "{}", &err), 0);
	}
}

/* A failed save leaves the previous row, and no event or message of the failed change. */
static void test_state_save_is_atomic_under_faults(void **state)
{
	_cleanup_state_ struct state *st = NULL;
	_cleanup_task_record_ struct task_record t = { 0 }, got = { 0 };
	uint64_t count = 0;

	assert_int_equal(state_open(dbpath, &st, NULL), 0);
	make_task(&t, "00000000000100000000000000fa", NULL, "job://r/z/a");
	assert_int_equal(state_task_insert(st, &t, "created", NULL, "{}", NULL), 0);
	t.version++;
	t.state = TASK_RUNNING;
	/* update, event, outbox insert, coalescing delete: a failure at any of them */
	for (int at = 1; at <= 4; at++) {
		struct outbox_msg *m = NULL;
		size_t n = 0;

		task_record_release(&got);
		step_calls = 0;
		step_fail_at = at;
		assert_int_equal(state_task_save(st, &t, "running", NULL, "{\"new\":1}", NULL),
				 -ENOSPC);
		step_fail_at = 0;
		assert_int_equal(state_task_get(st, t.task_id, &got), 0);
		assert_int_equal(got.state, TASK_PENDING);
		assert_int_equal(got.version, 1);
		/* the old message is still there: the coalescing delete rolled back too */
		assert_int_equal(state_outbox_due(st, clock_real_usec(), 10, &m, &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(m[0].body, "{}");
		outbox_msg_array_free(m, n);
		assert_int_equal(state_outbox_coalesced(st), 0);
	}
	/* retried with the same version: succeeds, and replaces the old message */
	assert_int_equal(state_task_save(st, &t, "running", NULL, "{}", NULL), 0);
	assert_int_equal(state_outbox_count(st, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(state_outbox_coalesced(st), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_strings),
		cmocka_unit_test(test_state_copy),
		cmocka_unit_test_setup_teardown(test_state_open_migrates_and_reopens, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_state_refuses_newer_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_migrates_v1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_garbage_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_task_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_duplicate_request_refused_atomically,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_save_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_list_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_outbox_order_retry_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_outbox_coalesces_per_task, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_state_migration_coalesces_old_outbox, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_state_meta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_crash_safety, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_insert_is_atomic_under_faults, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_state_save_is_atomic_under_faults, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
