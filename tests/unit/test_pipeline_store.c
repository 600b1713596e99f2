/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for central/store_pipelines on a real SQLite file: pipelines, schema versions,
 * runs (idempotency, supersede, one active run), the action queue (idempotent enqueue, leases,
 * expiry and re-claim, fencing), approval, cancel and retry, reopening the database, and
 * upgrading a database whose pipelines tables an earlier build created. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "central/planner.h"
#include "central/store_internal.h"
#include "central/store_pipelines.h"
#include "lib/fs.h"
#include "lib/str.h"

static char tmpdir[64];
static char dbpath[128];
static struct store *st;

static const char schema1[] = "[{\"name\":\"a\",\"type\":\"wait\",\"seconds\":0}]";
static const usec_t T0 = 1700000000ULL * USEC_PER_SEC;
#define LEASE (30 * USEC_PER_SEC)

static void open_store(void)
{
	struct cd_error err = { 0 };

	if (store_open(dbpath, &st, &err) < 0)
		fail_msg("store_open: %s", cd_error_message(&err));
}

/* A temporary directory for dbpath, no database yet (the upgrade tests make an old one). */
static int setup_dir(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-pstore.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/deployd.db", tmpdir);
	return 0;
}

static int setup(void **state)
{
	setup_dir(state);
	open_store();
	return 0;
}

static int teardown(void **state)
{
	store_free(st);
	st = NULL;
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static void create_pipeline(const char *name, const char *owner, char id[static ID_LEN + 1])
{
	struct cd_error err = { 0 };

	if (store_pipeline_create(st, name, owner, NULL, NULL, schema1, "team:foo", T0, id, &err) <
	    0)
		fail_msg("create: %s", cd_error_message(&err));
}

static int64_t new_run(const char *id, const char *commit, const char *key, bool *created)
{
	struct store_run r = { 0 };
	struct cd_error err = { 0 };
	bool c = false;
	int64_t n;

	if (store_run_create(st, id, commit, key, "api", "team:foo", T0, &r, &c, &err) < 0)
		fail_msg("run create: %s", cd_error_message(&err));
	if (created)
		*created = c;
	n = r.run;
	store_run_release(&r);
	return n;
}

static void test_pipeline_crud_and_list(void **state)
{
	char a[ID_LEN + 1], b[ID_LEN + 1], c[ID_LEN + 1], dup[ID_LEN + 1];
	struct store_pipeline p = { 0 }, *v = NULL;
	struct cd_error err = { 0 };
	size_t n = 0;

	create_pipeline("FooService", "foo_team", a);
	create_pipeline("BarService", "bar_team", b);
	create_pipeline("FooWorker", "foo_team", c);
	assert_int_equal(store_pipeline_create(st, "FooService", "x", NULL, NULL, schema1, NULL, T0,
					       dup, &err),
			 -EEXIST);
	assert_non_null(strstr(cd_error_message(&err), "FooService"));

	assert_int_equal(store_pipeline_get(st, a, &p, NULL), 0);
	assert_string_equal(p.pipeline_id, a);
	assert_string_equal(p.name, "FooService");
	assert_string_equal(p.owner, "foo_team");
	assert_null(p.repo);
	assert_int_equal(p.active_version, 1);
	assert_int_equal(p.latest_version, 1);
	assert_int_equal(p.created_at, T0);
	assert_string_equal(p.created_by, "team:foo");
	store_pipeline_release(&p);
	assert_int_equal(store_pipeline_get(st, "nope", &p, NULL), -ENOENT);

	/* by owner, paginated by id (ids made in the same millisecond sort randomly, so check
	 * the pages cover both without overlap) */
	{
		char first[ID_LEN + 1];

		assert_int_equal(store_pipeline_list(st, "foo_team", NULL, 1, &v, &n, NULL), 0);
		assert_int_equal(n, 1);
		assert_true(streq(v[0].pipeline_id, a) || streq(v[0].pipeline_id, c));
		assert_string_equal(v[0].owner, "foo_team");
		strcpy(first, v[0].pipeline_id);
		store_pipeline_list_free(v, n);
		assert_int_equal(store_pipeline_list(st, "foo_team", first, 1, &v, &n, NULL), 0);
		assert_int_equal(n, 1);
		assert_string_equal(v[0].pipeline_id, streq(first, a) ? c : a);
		assert_true(strcmp(v[0].pipeline_id, first) > 0);
		store_pipeline_list_free(v, n);
		assert_int_equal(store_pipeline_list(st, "foo_team", streq(first, a) ? c : a, 1, &v,
						     &n, NULL),
				 0);
		assert_int_equal(n, 0);
		store_pipeline_list_free(v, n);
	}
	assert_int_equal(store_pipeline_list(st, NULL, NULL, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 3);
	store_pipeline_list_free(v, n);
}

static void test_polled_pipelines(void **state)
{
	char a[ID_LEN + 1], b[ID_LEN + 1];
	struct store_pipeline *v = NULL;
	size_t n = 0;

	create_pipeline("NoRepo", "t", a);
	assert_int_equal(store_pipeline_create(st, "WithRepo", "t", "/srv/git/foo", "main", schema1,
					       NULL, T0, b, NULL),
			 0);
	assert_int_equal(store_pipeline_list_polled(st, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].repo, "/srv/git/foo");
	assert_string_equal(v[0].branch, "main");
	assert_null(v[0].last_polled_commit);
	store_pipeline_list_free(v, n);
	assert_int_equal(store_pipeline_set_polled(st, b, "abc", NULL), 0);
	assert_int_equal(store_pipeline_set_polled(st, "zz", "abc", NULL), -ENOENT);
	assert_int_equal(store_pipeline_list_polled(st, &v, &n, NULL), 0);
	assert_string_equal(v[0].last_polled_commit, "abc");
	store_pipeline_list_free(v, n);
}

static void test_schema_versions(void **state)
{
	char id[ID_LEN + 1];
	struct store_schema v = { 0 };
	struct cd_error err = { 0 };
	int64_t ver = 0;

	create_pipeline("P", "t", id);
	assert_int_equal(store_schema_get(st, id, 0, &v, NULL), 0);
	assert_int_equal(v.version, 1);
	assert_string_equal(v.state, "active");
	assert_string_equal(v.schema, schema1);
	store_schema_release(&v);

	/* PutSchema: new draft, If-Match checked against the latest version */
	assert_int_equal(store_schema_put(st, id, 1, "[2]", "u", T0 + 1, &ver, NULL), 0);
	assert_int_equal(ver, 2);
	assert_int_equal(store_schema_put(st, id, 1, "[3]", "u", T0 + 2, &ver, &err), -ESTALE);
	assert_non_null(strstr(cd_error_message(&err), "latest schema version is 2"));
	assert_int_equal(store_schema_put(st, id, -1, "[3]", "u", T0 + 2, &ver, NULL), 0);
	assert_int_equal(ver, 3);
	assert_int_equal(store_schema_put(st, "nope", -1, "[3]", "u", T0, &ver, NULL), -ENOENT);

	assert_int_equal(store_schema_get(st, id, 2, &v, NULL), 0);
	assert_string_equal(v.state, "draft");
	assert_string_equal(v.schema, "[2]");
	store_schema_release(&v);
	assert_int_equal(store_schema_get(st, id, 0, &v, NULL), 0);
	assert_int_equal(v.version, 1); /* drafts do not change the active version */
	store_schema_release(&v);

	/* activate: the previous active one becomes inactive */
	assert_int_equal(store_schema_activate(st, id, 2, NULL), 0);
	assert_int_equal(store_schema_get(st, id, 0, &v, NULL), 0);
	assert_int_equal(v.version, 2);
	store_schema_release(&v);
	assert_int_equal(store_schema_get(st, id, 1, &v, NULL), 0);
	assert_string_equal(v.state, "inactive");
	store_schema_release(&v);
	/* re-activating the active one is a no-op; unknown versions are refused */
	assert_int_equal(store_schema_activate(st, id, 2, NULL), 0);
	assert_int_equal(store_schema_activate(st, id, 9, NULL), -ENOENT);
	assert_int_equal(store_schema_get(st, id, 9, &v, NULL), -ENOENT);
	/* roll back to version 1 */
	assert_int_equal(store_schema_activate(st, id, 1, NULL), 0);
	assert_int_equal(store_schema_get(st, id, 2, &v, NULL), 0);
	assert_string_equal(v.state, "inactive");
	store_schema_release(&v);
}

static void test_runs_idempotency_and_supersede(void **state)
{
	char id[ID_LEN + 1];
	struct store_run r = { 0 }, *v = NULL;
	bool created;
	size_t n = 0;

	create_pipeline("P", "t", id);
	assert_int_equal(store_run_get(st, id, 0, &r, NULL), -ENOENT);
	assert_int_equal(new_run(id, "c1", "key-1", &created), 1);
	assert_true(created);
	/* the same key again: same run, nothing new */
	assert_int_equal(new_run(id, "c-other", "key-1", &created), 1);
	assert_false(created);
	assert_int_equal(new_run(id, "c2", NULL, &created), 2);
	assert_true(created);

	/* run 1 was PENDING when run 2 arrived: superseded */
	assert_int_equal(store_run_get(st, id, 1, &r, NULL), 0);
	assert_int_equal(r.state, RUN_SUPERSEDED);
	assert_string_equal(r.error_message, "superseded by run 2");
	assert_string_equal(r.commit, "c1");
	assert_string_equal(r.idempotency_key, "key-1");
	store_run_release(&r);

	/* one run active per pipeline */
	assert_int_equal(store_run_start_next(st, id, T0, &r, NULL), 1);
	assert_int_equal(r.run, 2);
	assert_int_equal(r.state, RUN_IN_PROGRESS);
	assert_int_equal(r.schema_version, 1);
	assert_int_equal(r.attempt, 1);
	store_run_release(&r);
	assert_int_equal(new_run(id, "c3", NULL, NULL), 3);
	assert_int_equal(store_run_start_next(st, id, T0, &r, NULL), 0);
	assert_int_equal(store_run_set_state(st, id, 2, RUN_FINISHED, NULL, T0, NULL), 0);
	assert_int_equal(store_run_start_next(st, id, T0, &r, NULL), 1);
	assert_int_equal(r.run, 3);
	store_run_release(&r);

	assert_int_equal(store_run_get(st, id, 0, &r, NULL), 0);
	assert_int_equal(r.run, 3);
	store_run_release(&r);
	assert_int_equal(store_run_list(st, id, 0, 2, &v, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].run, 3);
	assert_int_equal(v[1].run, 2);
	store_run_list_free(v, n);
	assert_int_equal(store_run_list(st, id, 2, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].run, 1);
	store_run_list_free(v, n);
	assert_int_equal(store_run_list_by_state(st, RUN_IN_PROGRESS, &v, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].run, 3);
	store_run_list_free(v, n);

	assert_int_equal(store_run_create(st, "nope", "c", NULL, "api", NULL, T0, &r, &created,
					  NULL),
			 -ENOENT);
	assert_int_equal(store_run_set_state(st, id, 99, RUN_ERROR, NULL, T0, NULL), -ENOENT);
}

static void test_queue_idempotent_enqueue(void **state)
{
	char id[ID_LEN + 1];
	struct store_claim c = { 0 };
	struct store_stage sg = { 0 };
	int64_t len = -1;

	create_pipeline("P", "t", id);
	new_run(id, "c1", NULL, NULL);
	assert_int_equal(store_action_enqueue(st, id, 1, "a", 1, T0, T0, NULL), 1);
	assert_int_equal(store_action_enqueue(st, id, 1, "a", 1, T0, T0, NULL), 0);
	assert_int_equal(store_action_queue_len(st, &len, NULL), 0);
	assert_int_equal(len, 1);

	assert_int_equal(store_action_claim(st, "r1", T0, LEASE, &c, NULL), 1);
	assert_int_equal(
		store_action_finish(st, &c, ACTION_FINISHED, NULL, "{\"x\":1}", T0 + 5, NULL), 0);
	store_claim_release(&c);
	/* a finished attempt is never queued again */
	assert_int_equal(store_action_enqueue(st, id, 1, "a", 1, T0, T0 + 6, NULL), 0);
	assert_int_equal(store_action_claim(st, "r1", T0 + 7, LEASE, &c, NULL), 0);
	assert_int_equal(store_stage_get(st, id, 1, "a", &sg, NULL), 0);
	assert_int_equal(sg.state, ACTION_FINISHED);
	assert_int_equal(sg.claims, 1);
	assert_false(sg.queued);
	assert_string_equal(sg.result, "{\"x\":1}");
	assert_int_equal(sg.started_at, T0);
	assert_int_equal(sg.last_update, T0 + 5);
	store_stage_release(&sg);
	/* a new attempt is a new action */
	assert_int_equal(store_action_enqueue(st, id, 1, "a", 2, T0, T0 + 8, NULL), 1);
	assert_int_equal(store_stage_get(st, id, 1, "a", &sg, NULL), 0);
	assert_int_equal(sg.attempt, 2);
	assert_int_equal(sg.state, ACTION_PENDING);
	assert_true(sg.queued);
	store_stage_release(&sg);
	assert_int_equal(store_stage_get(st, id, 1, "b", &sg, NULL), -ENOENT);
}

static void test_queue_lease_expiry_and_fencing(void **state)
{
	char id[ID_LEN + 1];
	struct store_claim c1 = { 0 }, c2 = { 0 }, c3 = { 0 };
	struct store_stage sg = { 0 };
	struct cd_error err = { 0 };

	create_pipeline("P", "t", id);
	new_run(id, "c1", NULL, NULL);
	assert_int_equal(store_action_enqueue(st, id, 1, "a", 1, T0, T0, NULL), 1);
	assert_int_equal(store_action_claim(st, "runner-1", T0, LEASE, &c1, NULL), 1);
	assert_string_equal(c1.stage, "a");
	assert_int_equal(c1.run, 1);
	assert_int_equal(c1.attempt, 1);
	assert_int_equal(c1.claims, 1);
	assert_int_equal(c1.lease_expires, T0 + LEASE);
	assert_int_equal(store_stage_get(st, id, 1, "a", &sg, NULL), 0);
	assert_int_equal(sg.state, ACTION_IN_PROGRESS);
	store_stage_release(&sg);

	/* leased: nobody else gets it, not even just before expiry */
	assert_int_equal(store_action_claim(st, "runner-2", T0 + LEASE - 1, LEASE, &c2, NULL), 0);
	/* extending moves the expiry */
	assert_int_equal(store_action_extend(st, &c1, T0 + 10 * USEC_PER_SEC, LEASE, NULL), 0);
	assert_int_equal(store_action_claim(st, "runner-2", T0 + LEASE, LEASE, &c2, NULL), 0);

	/* runner-1 "crashes": after expiry runner-2 re-claims the same attempt */
	assert_int_equal(store_action_claim(st, "runner-2", T0 + 10 * USEC_PER_SEC + LEASE, LEASE,
					    &c2, NULL),
			 1);
	assert_string_equal(c2.stage, "a");
	assert_int_equal(c2.attempt, 1);
	assert_int_equal(c2.claims, 2);
	assert_int_equal(c2.started_at, T0); /* the attempt's first claim, for its timeout */
	assert_true(c2.lease_token > c1.lease_token);

	/* the old holder is fenced off: it can neither extend, defer nor finish */
	assert_int_equal(store_action_extend(st, &c1, T0 + 50 * USEC_PER_SEC, LEASE, &err),
			 -ESTALE);
	assert_int_equal(store_action_finish(st, &c1, ACTION_ERROR, "late", NULL,
					     T0 + 50 * USEC_PER_SEC, NULL),
			 -ESTALE);
	assert_int_equal(store_action_defer(st, &c1, T0, true, NULL, NULL, T0, NULL), -ESTALE);
	assert_int_equal(store_action_finish(st, &c2, ACTION_FINISHED, NULL, NULL,
					     T0 + 51 * USEC_PER_SEC, NULL),
			 0);
	assert_int_equal(store_stage_get(st, id, 1, "a", &sg, NULL), 0);
	assert_int_equal(sg.state, ACTION_FINISHED);
	assert_null(sg.error_message);
	assert_int_equal(sg.claims, 2);
	store_stage_release(&sg);
	/* finishing twice is refused too */
	assert_int_equal(store_action_finish(st, &c2, ACTION_FINISHED, NULL, NULL, T0, NULL),
			 -ESTALE);
	assert_int_equal(
		store_action_claim(st, "runner-3", T0 + 100 * USEC_PER_SEC, LEASE, &c3, NULL), 0);
	assert_int_equal(store_action_finish(st, &c2, ACTION_PENDING, NULL, NULL, T0, NULL),
			 -EINVAL);
	store_claim_release(&c1);
	store_claim_release(&c2);
}

static void test_queue_defer_and_order(void **state)
{
	char id[ID_LEN + 1];
	struct store_claim c = { 0 };
	struct store_stage sg = { 0 };

	create_pipeline("P", "t", id);
	new_run(id, "c1", NULL, NULL);
	/* not_before orders the queue and hides what is not due */
	assert_int_equal(store_action_enqueue(st, id, 1, "late", 1, T0 + 100, T0, NULL), 1);
	assert_int_equal(store_action_enqueue(st, id, 1, "early", 1, T0 + 10, T0, NULL), 1);
	assert_int_equal(store_action_claim(st, "r", T0 + 5, LEASE, &c, NULL), 0);
	assert_int_equal(store_action_claim(st, "r", T0 + 200, LEASE, &c, NULL), 1);
	assert_string_equal(c.stage, "early");

	/* defer = give back with a backoff; tries counted, result kept for the next claim */
	assert_int_equal(store_action_defer(st, &c, T0 + 1000, true,
					    "transient: connection refused", "{\"step\":1}",
					    T0 + 200, NULL),
			 0);
	store_claim_release(&c);
	assert_int_equal(store_stage_get(st, id, 1, "early", &sg, NULL), 0);
	assert_int_equal(sg.state, ACTION_IN_PROGRESS);
	assert_string_equal(sg.error_message, "transient: connection refused");
	assert_true(sg.queued);
	store_stage_release(&sg);
	assert_int_equal(store_action_claim(st, "r", T0 + 500, LEASE, &c, NULL), 1);
	assert_string_equal(c.stage, "late");
	assert_int_equal(store_action_finish(st, &c, ACTION_FINISHED, NULL, NULL, T0 + 500, NULL),
			 0);
	store_claim_release(&c);
	assert_int_equal(store_action_claim(st, "r", T0 + 999, LEASE, &c, NULL), 0);
	assert_int_equal(store_action_claim(st, "r", T0 + 1000, LEASE, &c, NULL), 1);
	assert_string_equal(c.stage, "early");
	assert_int_equal(c.tries, 1);
	assert_string_equal(c.result, "{\"step\":1}");
	assert_int_equal(store_action_finish(st, &c, ACTION_ERROR, "build failed", NULL, T0 + 1001,
					     NULL),
			 0);
	store_claim_release(&c);
	assert_int_equal(store_stage_get(st, id, 1, "early", &sg, NULL), 0);
	assert_int_equal(sg.state, ACTION_ERROR);
	assert_string_equal(sg.error_message, "build failed");
	assert_string_equal(sg.result, "{\"step\":1}");
	store_stage_release(&sg);
}

static void test_approval(void **state)
{
	char id[ID_LEN + 1];
	struct store_claim c = { 0 };
	struct cd_error err = { 0 };

	create_pipeline("P", "t", id);
	new_run(id, "c1", NULL, NULL);
	assert_int_equal(store_stage_approve(st, id, 1, "gate", "alice", T0, &err), -ENOENT);
	assert_int_equal(store_action_enqueue(st, id, 1, "gate", 1, T0, T0, NULL), 1);
	assert_int_equal(store_action_claim(st, "r", T0, LEASE, &c, NULL), 1);
	assert_null(c.approved_by);
	/* the approval executor parks the action until someone approves */
	assert_int_equal(store_action_defer(st, &c, INT64_MAX, false, "waiting for approval", NULL,
					    T0, NULL),
			 0);
	store_claim_release(&c);
	assert_int_equal(store_action_claim(st, "r", T0 + 1000 * USEC_PER_SEC, LEASE, &c, NULL), 0);
	assert_int_equal(store_stage_approve(st, id, 1, "gate", "alice", T0 + 5, NULL), 0);
	assert_int_equal(store_stage_approve(st, id, 1, "gate", "bob", T0 + 6, &err), -EALREADY);
	assert_int_equal(store_action_claim(st, "r", T0 + 5, LEASE, &c, NULL), 1);
	assert_string_equal(c.approved_by, "alice");
	assert_int_equal(store_action_finish(st, &c, ACTION_FINISHED, NULL, NULL, T0 + 6, NULL), 0);
	store_claim_release(&c);
	assert_int_equal(store_stage_approve(st, id, 1, "gate", "bob", T0 + 7, NULL), -EALREADY);
}

static void test_cancel_and_retry(void **state)
{
	char id[ID_LEN + 1];
	struct store_claim c = { 0 };
	struct store_stage *v = NULL;
	struct store_run r = { 0 };
	int64_t attempt = 0;
	size_t n = 0;

	create_pipeline("P", "t", id);
	new_run(id, "c1", NULL, NULL);
	assert_int_equal(store_run_start_next(st, id, T0, &r, NULL), 1);
	store_run_release(&r);
	assert_int_equal(store_action_enqueue(st, id, 1, "a", 1, T0, T0, NULL), 1);
	assert_int_equal(store_action_enqueue(st, id, 1, "b", 1, T0, T0, NULL), 1);
	assert_int_equal(store_action_claim(st, "r", T0, LEASE, &c, NULL), 1);

	/* cannot retry what is running; cancel kills the queue and the lease */
	assert_int_equal(store_run_retry(st, id, 1, T0, &attempt, NULL), -EALREADY);
	assert_int_equal(store_run_cancel(st, id, 1, "alice", T0 + 1, NULL), 0);
	assert_int_equal(store_run_cancel(st, id, 1, "alice", T0 + 1, NULL), -EALREADY);
	assert_int_equal(store_run_cancel(st, id, 7, "alice", T0 + 1, NULL), -ENOENT);
	assert_int_equal(store_action_finish(st, &c, ACTION_FINISHED, NULL, NULL, T0 + 2, NULL),
			 -ESTALE);
	store_claim_release(&c);
	assert_int_equal(store_action_claim(st, "r", T0 + 3, LEASE, &c, NULL), 0);
	assert_int_equal(store_stage_list(st, id, 1, &v, &n, NULL), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i].state, ACTION_ERROR);
		assert_string_equal(v[i].error_message, "cancelled by alice");
		assert_false(v[i].queued);
	}
	store_stage_list_free(v, n);
	assert_int_equal(store_run_get(st, id, 1, &r, NULL), 0);
	assert_int_equal(r.state, RUN_CANCELLED);
	store_run_release(&r);

	/* retry: attempt 2, IN_PROGRESS; a second run in progress blocks it */
	new_run(id, "c2", NULL, NULL);
	assert_int_equal(store_run_start_next(st, id, T0, &r, NULL), 1);
	assert_int_equal(r.run, 2);
	store_run_release(&r);
	assert_int_equal(store_run_retry(st, id, 1, T0, &attempt, NULL), -EBUSY);
	assert_int_equal(store_run_set_state(st, id, 2, RUN_ERROR, "x", T0, NULL), 0);
	assert_int_equal(store_run_retry(st, id, 1, T0 + 10, &attempt, NULL), 0);
	assert_int_equal(attempt, 2);
	assert_int_equal(store_run_get(st, id, 1, &r, NULL), 0);
	assert_int_equal(r.state, RUN_IN_PROGRESS);
	assert_int_equal(r.attempt, 2);
	assert_null(r.error_message);
	store_run_release(&r);
}

static void test_typed_claims(void **state)
{
	char id[ID_LEN + 1];
	struct store_claim c = { 0 };

	create_pipeline("P", "t", id);
	new_run(id, "c1", NULL, NULL);
	assert_int_equal(store_action_enqueue_typed(st, id, 1, "build", 1, 1u << 1, T0, T0, NULL),
			 1);
	assert_int_equal(
		store_action_enqueue_typed(st, id, 1, "wait", 1, 1u << 5, T0 + 1, T0, NULL), 1);
	/* a runner without the builder skips the older build action */
	assert_int_equal(store_action_claim_typed(st, "p", 1u << 5, T0 + 2, LEASE, &c, NULL), 1);
	assert_string_equal(c.stage, "wait");
	store_claim_release(&c);
	assert_int_equal(store_action_claim_typed(st, "p", 1u << 5, T0 + 2, LEASE, &c, NULL), 0);
	/* a builder takes it; an untyped claim would have too */
	assert_int_equal(store_action_claim_typed(st, "b", (1u << 1) | (1u << 2), T0 + 2, LEASE, &c,
						  NULL),
			 1);
	assert_string_equal(c.stage, "build");
	store_claim_release(&c);
}

/* Everything above is on disk: a second process (here: a reopen) sees the same queue, and the
 * lease of a holder that died is claimable after expiry. */
static void test_reopen_keeps_queue(void **state)
{
	char id[ID_LEN + 1];
	struct store_claim c = { 0 };

	create_pipeline("P", "t", id);
	new_run(id, "c1", NULL, NULL);
	assert_int_equal(store_action_enqueue(st, id, 1, "a", 1, T0, T0, NULL), 1);
	assert_int_equal(store_action_claim(st, "dead", T0, LEASE, &c, NULL), 1);
	store_claim_release(&c);
	store_free(st);
	st = NULL;
	open_store(); /* migrations are idempotent */
	assert_int_equal(store_action_claim(st, "alive", T0 + 1, LEASE, &c, NULL), 0);
	assert_int_equal(store_action_claim(st, "alive", T0 + LEASE, LEASE, &c, NULL), 1);
	assert_string_equal(c.stage, "a");
	assert_int_equal(c.claims, 2);
	store_claim_release(&c);
}

/* Schema versions are immutable in the database itself (the runner caches their plans by
 * (pipeline, version)): another connection can neither rewrite nor delete one, while activating
 * a version (a state change) still works. */
static void test_schema_versions_immutable(void **state)
{
	char id[ID_LEN + 1], sql[256];
	int64_t v = 0;
	struct store_schema sv = { 0 };
	sqlite3 *db = NULL;
	char *msg = NULL;

	create_pipeline("imm", "team:foo", id);
	assert_int_equal(store_schema_put(st, id, -1, "[]", NULL, T0, &v, NULL), 0);
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	snprintf(
		sql, sizeof(sql),
		"UPDATE pipeline_schemas SET schema = '[]' WHERE pipeline_id = '%s' AND version = 1",
		id);
	assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK);
	assert_non_null(msg);
	assert_non_null(strstr(msg, "immutable"));
	sqlite3_free(msg);
	msg = NULL;
	snprintf(sql, sizeof(sql),
		 "UPDATE pipeline_schemas SET version = 7 WHERE pipeline_id = '%s' AND version = 2",
		 id);
	assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	snprintf(sql, sizeof(sql), "DELETE FROM pipeline_schemas WHERE pipeline_id = '%s'", id);
	assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(store_schema_activate(st, id, v, NULL), 0);
	assert_int_equal(store_schema_get(st, id, 1, &sv, NULL), 0);
	assert_string_equal(sv.schema, schema1);
	assert_string_equal(sv.state, "inactive");
	store_schema_release(&sv);
	assert_int_equal(store_schema_get(st, id, 0, &sv, NULL), 0);
	assert_int_equal(sv.version, 2);
	store_schema_release(&sv);
}

/* ---- upgrade from the tables of earlier builds ------------------------------------------- */

/*
 * Until store migration 2, store_pipelines.c created its tables itself and counted their
 * versions in pipelines_migrations. These are those migrations exactly as released (commit
 * 0e8fbc3, central/store_pipelines.c): the old databases the upgrade must take over.
 */
static const struct store_migration old_pipelines_migrations[] = {
	{
		1,
		"pipelines: pipelines, schema versions, runs, action_state, action_queue",
		"CREATE TABLE pipelines ("
		"  pipeline_id TEXT PRIMARY KEY,"
		"  name TEXT NOT NULL UNIQUE,"
		"  owner TEXT NOT NULL,"
		"  repo TEXT, branch TEXT, last_polled_commit TEXT,"
		"  created_by TEXT, created_at INTEGER NOT NULL);"
		"CREATE INDEX pipelines_by_owner ON pipelines(owner, pipeline_id);"
		"CREATE TABLE pipeline_schemas ("
		"  pipeline_id TEXT NOT NULL REFERENCES pipelines(pipeline_id),"
		"  version INTEGER NOT NULL CHECK (version >= 1),"
		"  state TEXT NOT NULL CHECK (state IN ('draft','active','inactive')),"
		"  schema TEXT NOT NULL,"
		"  created_by TEXT, created_at INTEGER NOT NULL,"
		"  PRIMARY KEY (pipeline_id, version));"
		"CREATE UNIQUE INDEX pipeline_schemas_one_active ON pipeline_schemas(pipeline_id)"
		"  WHERE state = 'active';"
		"CREATE TABLE pipeline_runs ("
		"  pipeline_id TEXT NOT NULL REFERENCES pipelines(pipeline_id),"
		"  run INTEGER NOT NULL CHECK (run >= 1),"
		"  schema_version INTEGER NOT NULL,"
		"  commit_id TEXT NOT NULL,"
		"  state TEXT NOT NULL CHECK (state IN ('PENDING','IN_PROGRESS','FINISHED','ERROR',"
		"    'CANCELLED','SUPERSEDED')),"
		"  attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),"
		"  error_message TEXT,"
		"  trigger TEXT NOT NULL,"
		"  idempotency_key TEXT,"
		"  created_by TEXT,"
		"  created_at INTEGER NOT NULL, last_update INTEGER NOT NULL,"
		"  PRIMARY KEY (pipeline_id, run));"
		"CREATE UNIQUE INDEX pipeline_runs_idempotency ON pipeline_runs(pipeline_id,"
		"  idempotency_key) WHERE idempotency_key IS NOT NULL;"
		"CREATE INDEX pipeline_runs_by_state ON pipeline_runs(state, pipeline_id, run);"
		/* The seed's ActionState, keyed by run and attempt as well. */
		"CREATE TABLE action_state ("
		"  pipeline_id TEXT NOT NULL,"
		"  run INTEGER NOT NULL,"
		"  schema_node TEXT NOT NULL,"
		"  attempt INTEGER NOT NULL CHECK (attempt >= 1),"
		"  state TEXT NOT NULL CHECK (state IN ('PENDING','IN_PROGRESS','FINISHED','ERROR')),"
		"  error_message TEXT,"
		"  result TEXT,"
		"  approved_by TEXT,"
		"  claims INTEGER NOT NULL DEFAULT 0,"
		"  created_at INTEGER NOT NULL,"
		"  started_at INTEGER NOT NULL DEFAULT 0,"
		"  last_update INTEGER NOT NULL,"
		"  PRIMARY KEY (pipeline_id, run, schema_node, attempt),"
		"  FOREIGN KEY (pipeline_id, run) REFERENCES pipeline_runs(pipeline_id, run));"
		"CREATE TABLE action_queue ("
		"  pipeline_id TEXT NOT NULL,"
		"  run INTEGER NOT NULL,"
		"  schema_node TEXT NOT NULL,"
		"  attempt INTEGER NOT NULL,"
		"  not_before INTEGER NOT NULL,"
		"  tries INTEGER NOT NULL DEFAULT 0,"
		"  lease_owner TEXT,"
		"  lease_expires INTEGER NOT NULL DEFAULT 0,"
		"  lease_token INTEGER NOT NULL DEFAULT 0,"
		"  enqueued_at INTEGER NOT NULL,"
		"  PRIMARY KEY (pipeline_id, run, schema_node, attempt),"
		"  FOREIGN KEY (pipeline_id, run, schema_node, attempt)"
		"    REFERENCES action_state(pipeline_id, run, schema_node, attempt));"
		"CREATE INDEX action_queue_ready ON action_queue(not_before, lease_expires);",
	},
	{
		2,
		"pipelines: stage type bit on queued actions (typed claims for builder-only runners)",
		"ALTER TABLE action_queue ADD COLUMN type_bit INTEGER NOT NULL DEFAULT 0;",
	},
	{
		3,
		"pipelines: schema versions are immutable (the runner caches their plans)",
		/* Nothing here updates a version's text or deletes a version (put inserts
		 * latest + 1, activate changes only state), and the runner's DAG cache
		 * (pipeline_run.h) relies on it: (pipeline_id, version) always names the same
		 * schema. The triggers make that a property of the database, not of this file. */
		"CREATE TRIGGER pipeline_schemas_immutable BEFORE UPDATE OF pipeline_id, version,"
		"  schema ON pipeline_schemas"
		"  BEGIN SELECT RAISE(ABORT, 'pipeline schema versions are immutable'); END;"
		"CREATE TRIGGER pipeline_schemas_no_delete BEFORE DELETE ON pipeline_schemas"
		"  BEGIN SELECT RAISE(ABORT, 'pipeline schema versions are immutable'); END;",
	},
};

#define OLD_SCHEMA                                                                                 \
	"[{\"name\":\"Code Build\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"             \
	"{\"name\":\"t\",\"type\":\"test\",\"test_target\":\"//a:t\"},"                            \
	"{\"name\":\"j\",\"type\":\"job\",\"spec\":\"//a:s\"},"                                    \
	"{\"name\":\"gate ✓\",\"type\":\"approval\"},"                                           \
	"{\"name\":\"w\",\"type\":\"wait\",\"wait\":{\"seconds\":5}},"                             \
	"{\"name\":\"done\",\"type\":\"wait\",\"wait\":{\"seconds\":0},\"depends_on\":[]}]"

/* Queued stages of OLD_SCHEMA with their types, in claim order (enqueued_at). */
static const struct {
	const char *name;
	enum action_type type;
} old_queued[] = {
	{ "Code Build", ACTION_BUILD }, { "t", ACTION_TEST }, { "j", ACTION_JOB },
	{ "gate ✓", ACTION_APPROVAL },	{ "w", ACTION_WAIT },
};

static void sql_or_fail(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
}

static int64_t sql_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *q = NULL;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return v;
}

/*
 * What an earlier deployd left: store migration 1 (user_version 1) and the pipelines tables at
 * their version `version` (1..3; 4 records a version no build made), with pipeline P1 whose run 1
 * (schema version 2) has one FINISHED stage and five queued ones, their leases expired and
 * their fencing tokens at 7.
 */
static void make_old_db(int version)
{
	char sql[1024];
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	sql_or_fail(db, "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; BEGIN");
	sql_or_fail(db, store_migrations[0].sql);
	sql_or_fail(db, "PRAGMA user_version = 1; CREATE TABLE pipelines_migrations ("
			"version INTEGER PRIMARY KEY, description TEXT NOT NULL)");
	for (int v = 1; v <= version; v++) {
		if (v <= (int)ARRAY_SIZE(old_pipelines_migrations))
			sql_or_fail(db, old_pipelines_migrations[v - 1].sql);
		snprintf(sql, sizeof(sql), "INSERT INTO pipelines_migrations VALUES (%d, 'v%d')", v,
			 v);
		sql_or_fail(db, sql);
	}
	sql_or_fail(db, "INSERT INTO pipelines VALUES ('P1', 'Foo', 'foo_team', '/srv/git/foo',"
			" 'main', 'c0ffee', 'team:foo_team', 1700000000000000)");
	sql_or_fail(db, "INSERT INTO pipeline_schemas VALUES ('P1', 1, 'inactive',"
			" '[{\"name\":\"old\",\"type\":\"approval\"}]', 'admin', 1)");
	sql_or_fail(db, "INSERT INTO pipeline_schemas VALUES ('P1', 2, 'active', '" OLD_SCHEMA
			"', 'admin', 2)");
	sql_or_fail(db, "INSERT INTO pipeline_runs VALUES ('P1', 1, 2, 'c0ffee', 'IN_PROGRESS', 1,"
			" NULL, 'api', 'key-1', 'team:foo_team', 3, 4)");
	sql_or_fail(db, "INSERT INTO action_state VALUES ('P1', 1, 'done', 1, 'FINISHED', NULL,"
			" '{\"ok\":true}', NULL, 1, 5, 5, 6)");
	for (size_t i = 0; i < ARRAY_SIZE(old_queued); i++) {
		snprintf(sql, sizeof(sql),
			 "INSERT INTO action_state VALUES ('P1', 1, '%s', 1, 'IN_PROGRESS', NULL,"
			 " NULL, NULL, 1, 5, 5, 6)",
			 old_queued[i].name);
		sql_or_fail(db, sql);
		/* untyped (0) before version 2, the runner's 1 << type after */
		snprintf(
			sql, sizeof(sql),
			"INSERT INTO action_queue (pipeline_id, run, schema_node, attempt,"
			" not_before, tries, lease_owner, lease_expires, lease_token, enqueued_at%s)"
			" VALUES ('P1', 1, '%s', 1, 10, 2, 'deployd@dead', 11, 7, %zu%s)",
			version >= 2 ? ", type_bit" : "", old_queued[i].name, 100 + i,
			version >= 2 ? (i == 0 ? ", 2" :
					i == 1 ? ", 4" :
					i == 2 ? ", 8" :
					i == 3 ? ", 16" :
						 ", 32") :
				       "");
		sql_or_fail(db, sql);
	}
	sql_or_fail(db, "COMMIT");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Closes the store and looks at the file: the final pipelines schema (typed queue, its index,
 * the immutability triggers, which still refuse) and nothing left of the adoption. */
static void check_final_schema(void)
{
	sqlite3 *db = NULL;

	store_free(st);
	st = NULL;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sql_int(db, "SELECT COUNT(*) FROM sqlite_master"
				     " WHERE name IN ('pipelines_migrations', 'action_queue_v2')"),
			 0);
	assert_int_equal(sql_int(db, "SELECT COUNT(*) FROM pragma_table_info('action_queue')"
				     " WHERE name = 'type_bit'"),
			 1);
	assert_int_equal(sql_int(db, "SELECT COUNT(*) FROM sqlite_master"
				     " WHERE type = 'index' AND name = 'action_queue_ready'"),
			 1);
	assert_int_equal(sql_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'"
				     " AND name LIKE 'pipeline_schemas_%'"),
			 2);
	assert_int_equal(sqlite3_exec(db,
				      "INSERT INTO pipelines VALUES ('P9', 'N9', 'o', NULL,"
				      " NULL, NULL, NULL, 1);"
				      "INSERT INTO pipeline_schemas VALUES ('P9', 1, 'active',"
				      " '[]', NULL, 1)",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE pipeline_schemas SET schema = '[1]'", NULL,
					  NULL, NULL),
			     SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM pipeline_schemas", NULL, NULL, NULL),
			     SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The old rows, read through store_pipelines.h after the upgrade. */
static void check_upgraded(void)
{
	struct store_pipeline p = { 0 };
	struct store_schema sv = { 0 };
	struct store_run r = { 0 };
	struct store_stage *stages = NULL;
	size_t n = 0;
	int version = 0;

	assert_int_equal(store_schema_version(st, &version), 0);
	assert_int_equal(version, (int)store_migrations_n);
	assert_int_equal(store_pipeline_get(st, "P1", &p, NULL), 0);
	assert_string_equal(p.name, "Foo");
	assert_string_equal(p.owner, "foo_team");
	assert_string_equal(p.repo, "/srv/git/foo");
	assert_string_equal(p.last_polled_commit, "c0ffee");
	assert_int_equal(p.active_version, 2);
	assert_int_equal(p.latest_version, 2);
	store_pipeline_release(&p);
	assert_int_equal(store_schema_get(st, "P1", 0, &sv, NULL), 0);
	assert_int_equal(sv.version, 2);
	assert_string_equal(sv.schema, OLD_SCHEMA);
	store_schema_release(&sv);
	assert_int_equal(store_run_get(st, "P1", 1, &r, NULL), 0);
	assert_int_equal(r.state, RUN_IN_PROGRESS);
	assert_string_equal(r.commit, "c0ffee");
	assert_string_equal(r.idempotency_key, "key-1");
	store_run_release(&r);
	assert_int_equal(store_stage_list(st, "P1", 1, &stages, &n, NULL), 0);
	assert_int_equal(n, 6);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(stages[i].queued, !streq(stages[i].name, "done"));
		if (streq(stages[i].name, "done"))
			assert_string_equal(stages[i].result, "{\"ok\":true}");
	}
	store_stage_list_free(stages, n);

	/* Each queued action has its stage's type: a claim for one type takes exactly that stage
	 * (claimed newest first: untyped rows would come oldest first), with its lease history
	 * (fencing token 7 + 1, 2 tries) intact. */
	for (size_t i = ARRAY_SIZE(old_queued); i-- > 0;) {
		struct store_claim c = { 0 };

		assert_int_equal(store_action_claim_typed(st, "me", 1u << old_queued[i].type, T0,
							  LEASE, &c, NULL),
				 1);
		assert_string_equal(c.stage, old_queued[i].name);
		assert_int_equal(c.lease_token, 8);
		assert_int_equal(c.tries, 2);
		assert_int_equal(c.claims, 2);
		store_claim_release(&c);
	}

	check_final_schema();
	open_store(); /* and opening it again changes nothing */
	assert_int_equal(store_schema_version(st, &version), 0);
	assert_int_equal(version, (int)store_migrations_n);
}

/* The last pipelines version earlier builds made (3): type bits and triggers already there. */
static void test_upgrade_from_pipelines_v3(void **state)
{
	make_old_db(3);
	open_store();
	check_upgraded();
}

/* Version 1 (no type_bit column, no triggers): the type of each queued action comes from its
 * run's schema. */
static void test_upgrade_from_pipelines_v1(void **state)
{
	make_old_db(1);
	open_store();
	check_upgraded();
}

/* A pipelines_migrations version no build made: refused before anything changes. */
static void test_upgrade_refuses_unknown_pipelines_version(void **state)
{
	struct cd_error err = { 0 };
	sqlite3 *db = NULL;

	make_old_db(4);
	assert_int_equal(store_open(dbpath, &st, &err), -EINVAL);
	assert_null(st);
	if (!strstr(err.msg, "newer than this deployd"))
		fail_msg("%s", err.msg);
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sql_int(db, "PRAGMA user_version"), 1);
	assert_int_equal(sql_int(db, "SELECT MAX(version) FROM pipelines_migrations"), 4);
	assert_int_equal(sql_int(db, "SELECT COUNT(*) FROM action_queue"), 5);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A new database gets the final tables straight away and nothing of the adoption. */
static void test_new_database_schema(void **state)
{
	check_final_schema();
	open_store();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pipeline_crud_and_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_polled_pipelines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runs_idempotency_and_supersede, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_queue_idempotent_enqueue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_lease_expiry_and_fencing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_queue_defer_and_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_approval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_and_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_typed_claims, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_versions_immutable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_from_pipelines_v3, setup_dir,
						teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_from_pipelines_v1, setup_dir,
						teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_refuses_unknown_pipelines_version,
						setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_new_database_schema, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
