/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for central/pipeline_run (the advance policy) and central/runner (claims,
 * outcomes, retries with backoff, timeouts, approval, cancel, retry of a failed run, lease
 * take-over after a crash) on a real SQLite store, driven synchronously with runner_step() and
 * explicit clocks. Build/test/job executors are test doubles here: this is the runner's
 * contract, not the builder's. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "central/pipeline_run.h"
#include "central/runner.h"
#include "lib/fs.h"
#include "lib/str.h"

static char tmpdir[64];
static struct store *st;
static struct runner *rn;
static char pid_[ID_LEN + 1];

/* Wall clock of the tests: far from the real one, so nothing depends on timing. */
static const usec_t T0 = 1700000000ULL * USEC_PER_SEC;

/* Test double for the build type: what to answer, by stage name prefix, and a call log. */
static struct strbuf calls = STRBUF_INIT;
static int fail_build;		 /* stages named "fail*" fail while > 0 */
static int transient_left;	 /* "flaky*" stages return EXEC_RETRY this many times */
static bool cancel_during_build; /* "cancel*" stages cancel their own run while executing */
static int fake_build(struct exec_ctx *ctx, struct exec_result *res)
{
	const char *name = node_name(ctx->node);

	strbuf_addf(&calls, "%s#%lld;", name, (long long)ctx->claim->attempt);
	res->outcome = EXEC_FINISHED;
	if (startswith(name, "fail") && fail_build > 0) {
		res->outcome = EXEC_FAILED;
		snprintf(res->message, sizeof(res->message), "make: *** [main] Error 2");
	} else if (startswith(name, "flaky") && transient_left > 0) {
		transient_left--;
		res->outcome = EXEC_RETRY;
		snprintf(res->message, sizeof(res->message), "connection refused");
	} else if (startswith(name, "cancel") && cancel_during_build) {
		/* The run is cancelled while this stage executes: the claim's lease is gone. */
		assert_int_equal(store_run_cancel(ctx->store, ctx->claim->pipeline_id,
						  ctx->claim->run, "alice", ctx->now, NULL),
				 0);
	} else if (startswith(name, "slow")) {
		res->outcome = EXEC_DEFER;
		res->not_before = ctx->now + USEC_PER_SEC;
	}
	return 0;
}

static int setup(void **state)
{
	char path[128];
	struct cd_error err = { 0 };
	struct runner_config cfg = {
		.owner = "test-runner",
		.backoff_base = 10 * USEC_PER_SEC,
		.backoff_max = 40 * USEC_PER_SEC,
		.max_tries = 3,
	};

	strcpy(tmpdir, "/tmp/cd-test-prun.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/d.db", tmpdir);
	assert_int_equal(store_open(path, &st, &err), 0);
	cfg.store = st;
	cfg.exec[ACTION_BUILD] = fake_build;
	assert_int_equal(runner_new(&cfg, &rn, &err), 0);
	strbuf_reset(&calls);
	fail_build = 0;
	transient_left = 0;
	cancel_during_build = false;
	return 0;
}

static int teardown(void **state)
{
	runner_free(rn);
	store_free(st);
	strbuf_release(&calls);
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static void create(const char *schema)
{
	struct cd_error err = { 0 };

	if (store_pipeline_create(st, "P", "team", NULL, NULL, schema, NULL, T0, pid_, &err) < 0)
		fail_msg("create: %s", cd_error_message(&err));
}

static int64_t trigger(const char *commit, usec_t now)
{
	struct store_run r = { 0 };
	struct cd_error err = { 0 };
	bool created;
	int64_t n;

	assert_int_equal(
		store_run_create(st, pid_, commit, NULL, "api", NULL, now, &r, &created, &err), 0);
	n = r.run;
	store_run_release(&r);
	assert_true(pipeline_run_start_next(st, pid_, now, &err) >= 0);
	return n;
}

/* Step the runner at time now until the queue has nothing ready; returns steps taken. */
static int drain(usec_t now)
{
	struct cd_error err = { 0 };
	int n = 0, q;

	while ((q = runner_step(rn, now, &err)) > 0)
		n++;
	if (q < 0)
		fail_msg("runner_step: %s", cd_error_message(&err));
	return n;
}

static enum run_state run_state(int64_t run)
{
	struct store_run r = { 0 };
	enum run_state s;

	assert_int_equal(store_run_get(st, pid_, run, &r, NULL), 0);
	s = r.state;
	store_run_release(&r);
	return s;
}

static void assert_run_error(int64_t run, const char *want)
{
	struct store_run r = { 0 };

	assert_int_equal(store_run_get(st, pid_, run, &r, NULL), 0);
	assert_int_equal(r.state, RUN_ERROR);
	if (!r.error_message || !strstr(r.error_message, want))
		fail_msg("run error \"%s\" lacks \"%s\"", r.error_message ? r.error_message : "",
			 want);
	store_run_release(&r);
}

static void assert_stage(int64_t run, const char *name, enum action_state state, int claims)
{
	struct store_stage sg = { 0 };

	if (store_stage_get(st, pid_, run, name, &sg, NULL) < 0)
		fail_msg("stage %s has no state", name);
	if (sg.state != state)
		fail_msg("stage %s is %s, want %s (%s)", name, action_state_to_string(sg.state),
			 action_state_to_string(state), sg.error_message ? sg.error_message : "");
	if (claims >= 0)
		assert_int_equal(sg.claims, claims);
	store_stage_release(&sg);
}

static void assert_not_started(int64_t run, const char *name)
{
	struct store_stage sg = { 0 };

	assert_int_equal(store_stage_get(st, pid_, run, name, &sg, NULL), -ENOENT);
}

static void assert_calls(const char *want)
{
	assert_string_equal(calls.len ? calls.buf : "", want);
}

static const char chain[] =
	"[{\"name\":\"build\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"
	"{\"name\":\"w\",\"type\":\"wait\",\"wait\":{\"seconds\":0}},"
	"{\"name\":\"ship\",\"type\":\"build\",\"build_targets\":[\"//a:c\"]}]";

static void test_chain_runs_in_order_once(void **state)
{
	int64_t run;

	create(chain);
	run = trigger("c1", T0);
	assert_int_equal(run_state(run), RUN_IN_PROGRESS);
	assert_stage(run, "build", ACTION_PENDING, 0);
	assert_not_started(run, "w");
	assert_int_equal(drain(T0), 3);
	assert_calls("build#1;ship#1;");
	assert_int_equal(run_state(run), RUN_FINISHED);
	assert_stage(run, "build", ACTION_FINISHED, 1);
	assert_stage(run, "w", ACTION_FINISHED, 1);
	assert_stage(run, "ship", ACTION_FINISHED, 1);
	assert_int_equal(drain(T0), 0);
}

static void test_diamond_fans_out_and_joins(void **state)
{
	int64_t run;

	create("[{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"
	       "{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"
	       "{\"name\":\"c\",\"type\":\"build\",\"build_targets\":[\"//a:b\"],"
	       "\"depends_on\":[\"a\"]},"
	       "{\"name\":\"d\",\"type\":\"build\",\"build_targets\":[\"//a:b\"],"
	       "\"depends_on\":[\"b\",\"c\"]}]");
	run = trigger("c1", T0);
	assert_int_equal(runner_step(rn, T0, NULL), 1);
	/* a finished: b and c are both queued, d is not */
	assert_stage(run, "b", ACTION_PENDING, 0);
	assert_stage(run, "c", ACTION_PENDING, 0);
	assert_not_started(run, "d");
	assert_int_equal(runner_step(rn, T0, NULL), 1);
	assert_not_started(run, "d");
	assert_int_equal(drain(T0), 2);
	assert_int_equal(run_state(run), RUN_FINISHED);
	/* d ran last, after both of its dependencies */
	assert_true(endswith(calls.buf, "d#1;"));
}

static void test_failure_stops_and_retry_reruns_only_failed(void **state)
{
	int64_t run, attempt = 0;

	create("[{\"name\":\"build\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"
	       "{\"name\":\"fail-tests\",\"type\":\"build\",\"build_targets\":[\"//a:t\"]},"
	       "{\"name\":\"deploy\",\"type\":\"build\",\"build_targets\":[\"//a:d\"]}]");
	fail_build = 1;
	run = trigger("c1", T0);
	drain(T0);
	assert_calls("build#1;fail-tests#1;");
	assert_run_error(run, "stage \"fail-tests\": make: *** [main] Error 2");
	assert_stage(run, "fail-tests", ACTION_ERROR, 1);
	assert_not_started(run, "deploy");

	/* retry: only the failed stage and what follows run, at attempt 2 */
	fail_build = 0;
	strbuf_reset(&calls);
	assert_int_equal(store_run_retry(st, pid_, run, T0 + 1, &attempt, NULL), 0);
	assert_int_equal(attempt, 2);
	assert_int_equal(pipeline_run_advance(st, pid_, run, T0 + 1, NULL, NULL), 0);
	drain(T0 + 1);
	assert_calls("fail-tests#2;deploy#2;");
	assert_int_equal(run_state(run), RUN_FINISHED);
	assert_stage(run, "build", ACTION_FINISHED, 1);
}

static void test_transient_retry_backs_off(void **state)
{
	int64_t run;

	create("[{\"name\":\"flaky\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]}]");
	transient_left = 2;
	run = trigger("c1", T0);
	assert_int_equal(drain(T0), 1);
	assert_stage(run, "flaky", ACTION_IN_PROGRESS, 1);
	{
		struct store_stage sg = { 0 };

		assert_int_equal(store_stage_get(st, pid_, run, "flaky", &sg, NULL), 0);
		assert_string_equal(sg.error_message, "retrying (try 2 of 3): connection refused");
		store_stage_release(&sg);
	}
	/* backoff 10 s after the first failure, 20 s after the second */
	assert_int_equal(drain(T0 + 10 * USEC_PER_SEC - 1), 0);
	assert_int_equal(drain(T0 + 10 * USEC_PER_SEC), 1);
	assert_int_equal(drain(T0 + 29 * USEC_PER_SEC), 0);
	assert_int_equal(drain(T0 + 30 * USEC_PER_SEC), 1);
	assert_int_equal(run_state(run), RUN_FINISHED);
	assert_stage(run, "flaky", ACTION_FINISHED, 3);
}

static void test_transient_gives_up(void **state)
{
	int64_t run;

	create("[{\"name\":\"flaky\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]}]");
	transient_left = 100;
	run = trigger("c1", T0);
	drain(T0);
	drain(T0 + 100 * USEC_PER_SEC);
	drain(T0 + 200 * USEC_PER_SEC);
	assert_run_error(run, "gave up after 3 tries: connection refused");
	assert_stage(run, "flaky", ACTION_ERROR, 3);
}

static void test_stage_timeout(void **state)
{
	int64_t run;

	create("[{\"name\":\"slow\",\"type\":\"build\",\"build_targets\":[\"//a:b\"],"
	       "\"timeout_s\":5}]");
	run = trigger("c1", T0);
	assert_int_equal(drain(T0), 1);
	assert_int_equal(drain(T0 + 3 * USEC_PER_SEC), 1); /* still within 5 s: deferred again */
	assert_stage(run, "slow", ACTION_IN_PROGRESS, 2);
	assert_int_equal(drain(T0 + 6 * USEC_PER_SEC), 1);
	assert_run_error(run, "timed out after 5s");
}

static void test_wait_stage_survives_reclaim(void **state)
{
	int64_t run;

	create("[{\"name\":\"w\",\"type\":\"wait\",\"wait\":{\"seconds\":60}}]");
	run = trigger("c1", T0);
	assert_int_equal(drain(T0), 1);
	assert_stage(run, "w", ACTION_IN_PROGRESS, 1);
	/* the end is fixed at the first claim: claims in between do not extend it */
	assert_int_equal(drain(T0 + 59 * USEC_PER_SEC), 0);
	assert_int_equal(drain(T0 + 60 * USEC_PER_SEC), 1);
	assert_int_equal(run_state(run), RUN_FINISHED);
}

static void test_approval_gate(void **state)
{
	int64_t run;

	create("[{\"name\":\"build\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"
	       "{\"name\":\"gate\",\"type\":\"approval\"},"
	       "{\"name\":\"ship\",\"type\":\"build\",\"build_targets\":[\"//a:c\"]}]");
	run = trigger("c1", T0);
	assert_int_equal(drain(T0), 2);
	assert_stage(run, "gate", ACTION_IN_PROGRESS, 1);
	assert_int_equal(drain(T0 + 86400 * USEC_PER_SEC), 0);
	assert_not_started(run, "ship");
	assert_int_equal(store_stage_approve(st, pid_, run, "gate", "team:ops", T0 + 5, NULL), 0);
	assert_int_equal(drain(T0 + 5), 2);
	assert_calls("build#1;ship#1;");
	assert_int_equal(run_state(run), RUN_FINISHED);
	{
		struct store_stage sg = { 0 };

		assert_int_equal(store_stage_get(st, pid_, run, "gate", &sg, NULL), 0);
		assert_string_equal(sg.error_message, "approved by team:ops");
		store_stage_release(&sg);
	}
}

static void test_one_active_run_and_supersede(void **state)
{
	int64_t r1, r2, r3;

	create(chain);
	r1 = trigger("c1", T0);
	r2 = trigger("c2", T0);
	r3 = trigger("c3", T0);
	assert_int_equal(run_state(r1), RUN_IN_PROGRESS);
	assert_int_equal(run_state(r2), RUN_SUPERSEDED);
	assert_int_equal(run_state(r3), RUN_PENDING);
	drain(T0);
	/* r1 finished, then r3 started and ran in the same drain */
	assert_int_equal(run_state(r1), RUN_FINISHED);
	assert_int_equal(run_state(r3), RUN_FINISHED);
	assert_calls("build#1;ship#1;build#1;ship#1;");
	assert_not_started(r2, "build");
}

static void test_cancel_mid_run(void **state)
{
	int64_t run, r2;

	create("[{\"name\":\"build\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"
	       "{\"name\":\"w\",\"type\":\"wait\",\"wait\":{\"seconds\":100}},"
	       "{\"name\":\"ship\",\"type\":\"build\",\"build_targets\":[\"//a:c\"]}]");
	run = trigger("c1", T0);
	drain(T0);
	assert_stage(run, "w", ACTION_IN_PROGRESS, 1);
	r2 = trigger("c2", T0 + 1);
	assert_int_equal(run_state(r2), RUN_PENDING);
	assert_int_equal(store_run_cancel(st, pid_, run, "alice", T0 + 2, NULL), 0);
	assert_stage(run, "w", ACTION_ERROR, 1);
	/* the reconciler starts the next run of the pipeline */
	assert_int_equal(runner_reconcile(rn, T0 + 3, NULL), 0);
	assert_int_equal(run_state(r2), RUN_IN_PROGRESS);
	drain(T0 + 200 * USEC_PER_SEC);
	drain(T0 + 400 * USEC_PER_SEC);
	assert_int_equal(run_state(run), RUN_CANCELLED);
	assert_not_started(run, "ship");
	assert_int_equal(run_state(r2), RUN_FINISHED);
}

/* A runner that dies between claim and finish: the lease expires, another runner takes the same
 * attempt over; stages already FINISHED are never executed again. */
static void test_crash_takeover(void **state)
{
	struct store_claim dead = { 0 };
	int64_t run;

	create(chain);
	run = trigger("c1", T0);
	assert_int_equal(runner_step(rn, T0, NULL), 1); /* build finished, w queued */
	assert_int_equal(store_action_claim(st, "crashed", T0 + 1, 30 * USEC_PER_SEC, &dead, NULL),
			 1);
	assert_string_equal(dead.stage, "w");
	assert_int_equal(drain(T0 + 2), 0); /* leased by the dead runner */
	assert_int_equal(drain(T0 + 1 + 30 * USEC_PER_SEC), 2);
	assert_int_equal(run_state(run), RUN_FINISHED);
	assert_stage(run, "build", ACTION_FINISHED, 1);
	assert_stage(run, "w", ACTION_FINISHED, 2);
	assert_stage(run, "ship", ACTION_FINISHED, 1);
	assert_calls("build#1;ship#1;");
	/* the dead runner's late result is refused */
	assert_int_equal(store_action_finish(st, &dead, ACTION_ERROR, "late", NULL, T0 + 100, NULL),
			 -ESTALE);
	store_claim_release(&dead);
	assert_int_equal(run_state(run), RUN_FINISHED);
}

/* The gap between "stage finished" and "next stage queued" (a crash there) is repaired by the
 * reconciler. */
static void test_reconcile_repairs_gap(void **state)
{
	struct store_claim c = { 0 };
	int64_t run;

	create(chain);
	run = trigger("c1", T0);
	assert_int_equal(store_action_claim(st, "x", T0, 30 * USEC_PER_SEC, &c, NULL), 1);
	assert_int_equal(store_action_finish(st, &c, ACTION_FINISHED, NULL, NULL, T0, NULL), 0);
	store_claim_release(&c);
	assert_int_equal(drain(T0), 0); /* nothing queued: the advance never happened */
	assert_int_equal(runner_reconcile(rn, T0, NULL), 0);
	assert_int_equal(drain(T0), 2);
	assert_int_equal(run_state(run), RUN_FINISHED);
}

static void test_no_executor_for_type(void **state)
{
	int64_t run;

	create("[{\"name\":\"deploy\",\"type\":\"job\",\"spec\":\"//a/specs:eu\"}]");
	run = trigger("c1", T0);
	drain(T0);
	assert_run_error(run, "no executor for stage type \"job\"");
}

static void test_step_pure(void **state)
{
	json_t *j = json_loads(chain, 0, NULL);
	struct action_dag *dag = NULL;
	struct store_stage sg[2] = {
		{ .name = (char *)"build", .attempt = 1, .state = ACTION_FINISHED },
		{ .name = (char *)"w", .attempt = 1, .state = ACTION_ERROR },
	};
	const struct store_stage *failed;
	size_t ready[3], n;
	enum run_state rs;

	assert_int_equal(planner_plan("p", j, &dag, NULL), 0);
	json_decref(j);
	pipeline_run_step(dag, NULL, 0, 1, ready, &n, &rs, &failed);
	assert_int_equal(n, 1);
	assert_int_equal(ready[0], 0);
	assert_int_equal(rs, RUN_IN_PROGRESS);
	pipeline_run_step(dag, sg, 2, 1, ready, &n, &rs, &failed);
	assert_int_equal(n, 0);
	assert_int_equal(rs, RUN_ERROR);
	assert_ptr_equal(failed, &sg[1]);
	/* at attempt 2 the old error is "not started": w is ready again */
	pipeline_run_step(dag, sg, 2, 2, ready, &n, &rs, &failed);
	assert_int_equal(n, 1);
	assert_int_equal(ready[0], 1);
	assert_int_equal(rs, RUN_IN_PROGRESS);
	/* a stage still running keeps the run IN_PROGRESS even after a failure elsewhere */
	sg[0].state = ACTION_IN_PROGRESS;
	pipeline_run_step(dag, sg, 2, 1, ready, &n, &rs, &failed);
	assert_int_equal(rs, RUN_IN_PROGRESS);
	assert_int_equal(n, 0);
	dag_free(dag);
}

/* With typed claims a runner without a build executor leaves build stages queued (for a
 * builder deployd) instead of failing them; one with it picks them up. */
static void test_typed_claims_leave_builds(void **state)
{
	struct runner_config cfg = { .owner = "no-builder", .typed_claims = true };
	struct runner *plain = NULL;
	int64_t run;

	cfg.store = st;
	assert_int_equal(runner_new(&cfg, &plain, NULL), 0);
	create(chain);
	run = trigger("c1", T0);
	assert_int_equal(runner_step(plain, T0, NULL), 0);
	assert_stage(run, "build", ACTION_PENDING, 0);
	assert_int_equal(drain(T0), 3); /* rn has the build executor */
	assert_int_equal(run_state(run), RUN_FINISHED);
	runner_free(plain);
}

/* The threaded runner end to end: a kick wakes it, the run finishes without runner_step(). */
static void test_threads(void **state)
{
	struct cd_error err = { 0 };
	int64_t run;

	create("[{\"name\":\"a\",\"type\":\"wait\",\"wait\":{\"seconds\":0}},"
	       "{\"name\":\"b\",\"type\":\"wait\",\"wait\":{\"seconds\":0}}]");
	{
		struct store_run r = { 0 };
		bool created;

		assert_int_equal(store_run_create(st, pid_, "c1", NULL, "api", NULL,
						  clock_real_usec(), &r, &created, NULL),
				 0);
		run = r.run;
		store_run_release(&r);
	}
	assert_int_equal(runner_start(rn, &err), 0);
	runner_kick(rn);
	for (int i = 0; i < 500 && run_state(run) != RUN_FINISHED; i++)
		usleep(10000);
	assert_int_equal(run_state(run), RUN_FINISHED);
}

/* Each action plans its schema at most once: the runner's DAG cache answers decide() and the
 * advance; a new schema version is a new key. */
static void test_plans_once_per_schema_version(void **state)
{
	uint64_t hits = 0, plans = 0;
	int64_t run, v = 0;

	create(chain);
	run = trigger("c1", T0);
	assert_int_equal(drain(T0), 3);
	assert_int_equal(run_state(run), RUN_FINISHED);
	runner_plan_stats(rn, &hits, &plans);
	assert_int_equal(plans, 1);
	/* decide() and the advance of each of the 3 actions */
	assert_true(hits >= 5);

	assert_int_equal(store_schema_put(st, pid_, -1,
					  "[{\"name\":\"only\",\"type\":\"wait\","
					  "\"wait\":{\"seconds\":0}}]",
					  NULL, T0, &v, NULL),
			 0);
	assert_int_equal(store_schema_activate(st, pid_, v, NULL), 0);
	run = trigger("c2", T0);
	assert_int_equal(drain(T0), 1);
	assert_int_equal(run_state(run), RUN_FINISHED);
	assert_stage(run, "only", ACTION_FINISHED, 1);
	runner_plan_stats(rn, &hits, &plans);
	assert_int_equal(plans, 2);
}

/* A cache given in the config (the pipelines role's, shared with the API) is the one the runner
 * plans through, with the caller's bounds, and it outlives the runner. */
static void test_borrowed_dag_cache(void **state)
{
	struct runner_config cfg = { .store = st, .owner = "borrower" };
	struct dag_cache *c = NULL;
	struct runner *r2 = NULL;
	uint64_t hits = 0, plans = 0, own_hits = 0, own_plans = 0;
	struct action_dag *dag = NULL;
	int64_t run;

	assert_int_equal(dag_cache_new(1, 10, &c), 0);
	cfg.dags = c;
	cfg.exec[ACTION_BUILD] = fake_build;
	assert_int_equal(runner_new(&cfg, &r2, NULL), 0);
	create(chain);
	run = trigger("c1", T0);
	while (runner_step(r2, T0, NULL) > 0)
		;
	assert_int_equal(run_state(run), RUN_FINISHED);
	runner_plan_stats(r2, &own_hits, &own_plans);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(plans, 1);
	assert_true(hits >= 5);
	assert_int_equal(own_plans, plans);
	assert_int_equal(own_hits, hits);
	runner_free(r2);
	/* still usable: the runner did not free it */
	assert_int_equal(pipeline_run_plan_cached(c, st, pid_, 1, &dag, NULL), 0);
	dag_free(dag);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(plans, 1);
	dag_cache_free(c);
}

static void create_named(const char *name, const char *schema, char id[static ID_LEN + 1])
{
	assert_int_equal(
		store_pipeline_create(st, name, "team", NULL, NULL, schema, NULL, T0, id, NULL), 0);
}

/* The cache is bounded and LRU; an evicted DAG stays valid for a holder (ASan would see a use
 * after free); version 0 (whichever is active) is never cached. */
static void test_dag_cache_lru(void **state)
{
	struct dag_cache *c = NULL;
	struct action_dag *held = NULL, *d = NULL;
	char a[ID_LEN + 1], b[ID_LEN + 1], x[ID_LEN + 1];
	uint64_t hits, plans;

	create_named("A", chain, a);
	create_named("B", "[{\"name\":\"b\",\"type\":\"approval\"}]", b);
	create_named("X", "[{\"name\":\"x\",\"type\":\"approval\"}]", x);
	assert_int_equal(dag_cache_new(2, 0, &c), 0);

	assert_int_equal(pipeline_run_plan_cached(c, st, a, 1, &held, NULL), 0);
	assert_int_equal(pipeline_run_plan_cached(c, st, b, 1, &d, NULL), 0);
	d = dag_free(d);
	assert_int_equal(pipeline_run_plan_cached(c, st, a, 1, &d, NULL), 0); /* hit, a is MRU */
	assert_ptr_equal(d, held);
	d = dag_free(d);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(hits, 1);
	assert_int_equal(plans, 2);
	/* x evicts b (least recently used), not a */
	assert_int_equal(pipeline_run_plan_cached(c, st, x, 1, &d, NULL), 0);
	d = dag_free(d);
	assert_int_equal(pipeline_run_plan_cached(c, st, a, 1, &d, NULL), 0);
	d = dag_free(d);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(hits, 2);
	assert_int_equal(plans, 3);
	assert_int_equal(pipeline_run_plan_cached(c, st, b, 1, &d, NULL), 0); /* miss: evicts x */
	d = dag_free(d);
	assert_int_equal(pipeline_run_plan_cached(c, st, x, 1, &d, NULL), 0); /* miss: evicts a */
	d = dag_free(d);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(plans, 5);
	/* a was evicted while held: still whole */
	assert_int_equal(dag_n_nodes(held), 3);
	assert_string_equal(node_name(dag_node(held, 2)), "ship");
	held = dag_free(held);
	/* version 0 bypasses the cache; an unknown version is an error, not an entry */
	assert_int_equal(pipeline_run_plan_cached(c, st, a, 0, &d, NULL), 0);
	d = dag_free(d);
	assert_int_equal(pipeline_run_plan_cached(c, st, a, 9, &d, NULL), -ENOENT);
	assert_null(d);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(hits, 2);
	assert_int_equal(plans, 6);
	dag_cache_free(c);
}

struct cache_worker {
	struct dag_cache *cache;
	const char *ids[3];
	int failures;
};

static void *cache_worker_main(void *arg)
{
	struct cache_worker *w = arg;

	for (int i = 0; i < 300; i++) {
		struct action_dag *d = NULL;
		const char *id = w->ids[i % 3];

		if (pipeline_run_plan_cached(w->cache, st, id, 1, &d, NULL) < 0 || !d ||
		    !streq(dag_pipeline_id(d), id) || dag_n_nodes(d) != 3)
			w->failures++;
		dag_free(d);
	}
	return NULL;
}

/* The cache is bounded by stages too: a DAG that does not fit evicts the least recently used
 * ones until it does; one larger than the whole budget is kept alone. */
static void test_dag_cache_node_budget(void **state)
{
	static const char one[] = "[{\"name\":\"o\",\"type\":\"approval\"}]";
	struct dag_cache *c = NULL;
	struct action_dag *d = NULL;
	char a[ID_LEN + 1], b[ID_LEN + 1], x[ID_LEN + 1], y[ID_LEN + 1];
	uint64_t hits, plans;

	create_named("A", chain, a); /* 3 stages */
	create_named("B", one, b);
	create_named("X", one, x);
	create_named("Y", chain, y);
	assert_int_equal(dag_cache_new(8, 5, &c), 0);
#define PLAN(id)                                                                                   \
	do {                                                                                       \
		assert_int_equal(pipeline_run_plan_cached(c, st, id, 1, &d, NULL), 0);             \
		d = dag_free(d);                                                                   \
	} while (0)
	PLAN(a);
	PLAN(b);
	PLAN(x); /* 3 + 1 + 1 = 5 stages: all fit */
	PLAN(a);
	PLAN(b);
	PLAN(x);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(plans, 3);
	assert_int_equal(hits, 3);
	/* y (3) evicts a (LRU, 3): 1 + 1 + 3 = 5 */
	PLAN(y);
	PLAN(b);
	PLAN(x);
	PLAN(y);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(plans, 4);
	assert_int_equal(hits, 6);
	PLAN(a); /* a (3) back: evicts b and x (LRU first) but then still needs room, evicts y */
	PLAN(a);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(plans, 5);
	assert_int_equal(hits, 7);
	dag_cache_free(c);

	/* a budget smaller than one DAG: that DAG is still cached, alone */
	assert_int_equal(dag_cache_new(8, 2, &c), 0);
	PLAN(a);
	PLAN(a);
	PLAN(b); /* evicts a */
	PLAN(a);
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(plans, 3);
	assert_int_equal(hits, 1);
#undef PLAN
	dag_cache_free(c);
}

/* Four threads share a cache smaller than what they ask for, so entries are evicted while other
 * threads hold them: every lookup gets the right DAG, and (under ASan) none is used after it
 * was freed. */
static void test_dag_cache_threads(void **state)
{
	struct dag_cache *c = NULL;
	char a[ID_LEN + 1], b[ID_LEN + 1], x[ID_LEN + 1];
	struct cache_worker w[4];
	pthread_t t[4];
	uint64_t hits, plans;

	create_named("A", chain, a);
	create_named("B", chain, b);
	create_named("X", chain, x);
	assert_int_equal(dag_cache_new(2, 0, &c), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct cache_worker){ .cache = c, .ids = { a, b, x } };
		assert_int_equal(pthread_create(&t[i], NULL, cache_worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	dag_cache_stats(c, &hits, &plans);
	assert_int_equal(hits + plans, 4 * 300);
	assert_true(plans >= 3);
	dag_cache_free(c);
}

/* A child process does what the runner does after executing "build" (record the outcome and
 * advance the run in one transaction) and is killed with SIGKILL just before or just after
 * the commit. */
static void kill_in_finish_advance(bool commit)
{
	char path[128];
	pid_t child;
	int status = 0;

	snprintf(path, sizeof(path), "%s/d.db", tmpdir);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		/* Own connection: SQLite connections must not cross fork(). */
		struct store *cs = NULL;
		struct store_claim c = { 0 };
		enum run_state rs;

		if (store_open(path, &cs, NULL) < 0 ||
		    store_action_claim(cs, "doomed", T0, 30 * USEC_PER_SEC, &c, NULL) != 1 ||
		    store_begin(cs, NULL) < 0 ||
		    store_action_finish(cs, &c, ACTION_FINISHED, NULL, NULL, T0, NULL) < 0 ||
		    pipeline_run_advance_in_tx(cs, NULL, c.pipeline_id, c.run, T0, &rs, NULL) < 0)
			_exit(1);
		if (commit && store_commit(cs, NULL) < 0)
			_exit(1);
		raise(SIGKILL);
		_exit(1);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

/* Killed inside the transaction: nothing of it is visible, the claim stands until its lease
 * expires, then the attempt is re-executed once and the run finishes with each stage finished
 * exactly once. */
static void test_kill_before_finish_advance_commit(void **state)
{
	int64_t run;

	create(chain);
	run = trigger("c1", T0);
	kill_in_finish_advance(false);
	assert_stage(run, "build", ACTION_IN_PROGRESS, 1);
	assert_not_started(run, "w");
	assert_int_equal(drain(T0 + 1), 0); /* still leased by the dead process */
	assert_int_equal(runner_reconcile(rn, T0 + 1, NULL), 0);
	assert_not_started(run, "w");
	assert_int_equal(drain(T0 + 31 * USEC_PER_SEC), 3);
	assert_calls("build#1;ship#1;");
	assert_stage(run, "build", ACTION_FINISHED, 2);
	assert_stage(run, "w", ACTION_FINISHED, 1);
	assert_stage(run, "ship", ACTION_FINISHED, 1);
	assert_int_equal(run_state(run), RUN_FINISHED);
}

/* Killed right after the commit: the outcome and the next stage landed together, so the run
 * goes on without the reconciler and "build" is never executed again. */
static void test_kill_after_finish_advance_commit(void **state)
{
	int64_t run;

	create(chain);
	run = trigger("c1", T0);
	kill_in_finish_advance(true);
	assert_stage(run, "build", ACTION_FINISHED, 1);
	assert_stage(run, "w", ACTION_PENDING, 0);
	assert_int_equal(drain(T0), 2);
	assert_calls("ship#1;");
	assert_int_equal(run_state(run), RUN_FINISHED);
}

/* Fault injection: the advance fails inside the one-transaction path (a trigger refuses to
 * queue "w"). The runner rolls back and falls back to two transactions: the outcome of "build"
 * is recorded, the advance fails again and is repaired by the reconciler once the fault is
 * gone. Nothing runs twice. */
static void test_advance_failure_keeps_outcome(void **state)
{
	char path[128];
	sqlite3 *db = NULL;
	int64_t run;

	create(chain);
	run = trigger("c1", T0);
	snprintf(path, sizeof(path), "%s/d.db", tmpdir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TRIGGER inject BEFORE INSERT ON action_queue"
				      " WHEN NEW.schema_node = 'w'"
				      " BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_true(runner_step(rn, T0, NULL) < 0);
	assert_stage(run, "build", ACTION_FINISHED, 1);
	assert_not_started(run, "w");
	assert_int_equal(drain(T0), 0);
	assert_int_equal(sqlite3_exec(db, "DROP TRIGGER inject", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(runner_reconcile(rn, T0, NULL), 0);
	assert_int_equal(drain(T0), 2);
	assert_calls("build#1;ship#1;");
	assert_stage(run, "build", ACTION_FINISHED, 1);
	assert_int_equal(run_state(run), RUN_FINISHED);
}

/* A lease lost while executing (the run is cancelled meanwhile): the fenced write of the outcome
 * fails first, so the one transaction writes nothing and advances nothing. */
static void test_stale_lease_writes_nothing(void **state)
{
	int64_t run;

	create("[{\"name\":\"cancel-me\",\"type\":\"build\",\"build_targets\":[\"//a:b\"]},"
	       "{\"name\":\"ship\",\"type\":\"build\",\"build_targets\":[\"//a:c\"]}]");
	run = trigger("c1", T0);
	cancel_during_build = true;
	assert_int_equal(runner_step(rn, T0, NULL), 1); /* -ESTALE is logged, not an error */
	assert_calls("cancel-me#1;");
	{
		struct store_stage sg = { 0 };

		assert_int_equal(store_stage_get(st, pid_, run, "cancel-me", &sg, NULL), 0);
		assert_int_equal(sg.state, ACTION_ERROR);
		assert_non_null(strstr(sg.error_message, "cancel"));
		store_stage_release(&sg);
	}
	assert_not_started(run, "ship");
	assert_int_equal(run_state(run), RUN_CANCELLED);
	assert_int_equal(drain(T0 + 100 * USEC_PER_SEC), 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_chain_runs_in_order_once),
		T(test_diamond_fans_out_and_joins),
		T(test_failure_stops_and_retry_reruns_only_failed),
		T(test_transient_retry_backs_off),
		T(test_transient_gives_up),
		T(test_stage_timeout),
		T(test_wait_stage_survives_reclaim),
		T(test_approval_gate),
		T(test_one_active_run_and_supersede),
		T(test_cancel_mid_run),
		T(test_crash_takeover),
		T(test_reconcile_repairs_gap),
		T(test_no_executor_for_type),
		T(test_step_pure),
		T(test_typed_claims_leave_builds),
		T(test_threads),
		T(test_plans_once_per_schema_version),
		T(test_borrowed_dag_cache),
		T(test_dag_cache_lru),
		T(test_dag_cache_threads),
		T(test_dag_cache_node_budget),
		T(test_kill_before_finish_advance_commit),
		T(test_kill_after_finish_advance_commit),
		T(test_advance_failure_keeps_outcome),
		T(test_stale_lease_writes_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
