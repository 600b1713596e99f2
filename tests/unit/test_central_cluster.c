/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for central/cluster: the cluster manager's policy against a real store in a temp
 * dir, a fake clock and a fake taskd transport that records pushes. Placement, heartbeat
 * healing, lost hosts, notifications, rolling update, rollback, halt, stop, crash loops,
 * If-Match, and resuming after a restart (a new struct cluster over the same database).
 */
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

#include "api/jobspec.h"
#include "central/cluster.h"
#include "lib/fs.h"
#include "lib/str.h"

/* ---- fakes --------------------------------------------------------------------------------- */

static usec_t fake_now = 1000 * USEC_PER_SEC;
static usec_t clock_fake(void)
{
	return fake_now;
}

#define MAX_CALLS 256
struct call {
	char kind[16]; /* put, state, delete */
	char addr[64];
	char task_id[72];
	char *body;
};
static struct call calls[MAX_CALLS];
static size_t n_calls;
static int fail_put;	/* return this from put_task when non-zero */
static bool taskd_down; /* every push fails with -ECONNREFUSED */

static void record(const char *kind, const char *addr, const char *task_id, const char *body)
{
	assert_true(n_calls < MAX_CALLS);
	snprintf(calls[n_calls].kind, sizeof(calls[n_calls].kind), "%s", kind);
	snprintf(calls[n_calls].addr, sizeof(calls[n_calls].addr), "%s", addr);
	snprintf(calls[n_calls].task_id, sizeof(calls[n_calls].task_id), "%s", task_id);
	calls[n_calls].body = body ? strdup(body) : NULL;
	n_calls++;
}

static void calls_reset(void)
{
	for (size_t i = 0; i < n_calls; i++)
		free(calls[i].body);
	n_calls = 0;
}

static size_t count_calls(const char *kind)
{
	size_t n = 0;

	for (size_t i = 0; i < n_calls; i++)
		n += streq(calls[i].kind, kind);
	return n;
}

static int fake_put(void *data, const char *addr, const char *body, char ret_state[16],
		    struct cd_error *err)
{
	json_t *j = json_loads(body, 0, NULL);

	assert_non_null(j);
	record("put", addr, json_string_value(json_object_get(j, "task_id")), body);
	json_decref(j);
	if (taskd_down)
		return -ECONNREFUSED;
	if (fail_put)
		return cd_error_set(err, fail_put, "taskd said no");
	strcpy(ret_state, "PENDING");
	return 0;
}

static int fake_state(void *data, const char *addr, const char *task_id, const char *state,
		      char ret_state[16], struct cd_error *err)
{
	record("state", addr, task_id, state);
	if (taskd_down)
		return -ECONNREFUSED;
	ret_state[0] = '\0'; /* stopping takes a while: the notification tells */
	return 0;
}

static int fake_delete(void *data, const char *addr, const char *task_id, struct cd_error *err)
{
	record("delete", addr, task_id, NULL);
	return taskd_down ? -ECONNREFUSED : 0;
}

static const struct cluster_push_ops fake_ops = { fake_put, fake_state, fake_delete };

/* Fault injection: the Nth sqlite3_step() from our code fails with an I/O error. */
int __real_sqlite3_step(sqlite3_stmt *st);
int __wrap_sqlite3_step(sqlite3_stmt *st);
static int step_fail_at;
int __wrap_sqlite3_step(sqlite3_stmt *st)
{
	if (step_fail_at > 0 && --step_fail_at == 0)
		return SQLITE_IOERR;
	return __real_sqlite3_step(st);
}

/* ---- fixture ------------------------------------------------------------------------------- */

static char tmpdir[64], dbpath[128];
static struct store *st;
static struct cluster *cl;
static int64_t seq = 1;

static const char *const mirrors[] = { "http://127.0.0.1:7400", NULL };

static struct cluster *new_cluster(bool require_if_match)
{
	struct cluster_config cfg = {
		.region = "us-east",
		.zone = "us-east-1",
		.heartbeat_interval_s = 5,
		.lost_after = 3,
		.progress_deadline_s = 60,
		.max_slot_failures = 3,
		.stop_retry_s = 5,
		.mirrors = mirrors,
		.require_if_match = require_if_match,
		.now = clock_fake,
		.push = &fake_ops,
	};
	struct cluster *c = NULL;

	assert_int_equal(cluster_new(st, &cfg, &c, NULL), 0);
	return c;
}

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-cluster.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/deployd.db", tmpdir);
	assert_int_equal(store_open(dbpath, &st, NULL), 0);
	cl = new_cluster(false);
	fake_now = 1000 * USEC_PER_SEC;
	fail_put = 0;
	taskd_down = false;
	calls_reset();
	return 0;
}

static int teardown(void **state)
{
	calls_reset();
	cluster_free(cl);
	store_free(st);
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static void heartbeat(const char *host, int vcpus, const struct cluster_reported_task *tasks,
		      size_t n)
{
	struct cluster_heartbeat hb = {
		.host_id = host,
		.zone = "us-east-1",
		.version = "test",
		.vcpus = vcpus,
		.memory_mb = 4096,
		.storage_mb = 100000,
		.tasks = tasks,
		.n_tasks = n,
	};
	struct store_task *desired = NULL;
	size_t nd = 0;
	unsigned interval = 0;
	char addr[64];
	struct problem p;

	snprintf(addr, sizeof(addr), "http://%s:7411", host);
	hb.addr = addr;
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_heartbeat(cl, "agent", &hb, &desired, &nd, &interval, &p), 0);
	assert_int_equal(interval, 5);
	problem_release(&p);
	store_task_list_free(desired, nd);
}

static struct jobspec *spec_of(const char *json)
{
	struct jobspec *s = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	if (jobspec_from_string(json, strlen(json), &s, &p) < 0) {
		char *t = problem_to_string(&p);

		fail_msg("bad spec: %s", t);
	}
	problem_release(&p);
	return s;
}

static int put_job(const char *json, const char *if_match, struct cluster_put_result *res,
		   struct problem *p)
{
	_cleanup_jobspec_ struct jobspec *s = spec_of(json);
	struct job_url u = { "us-east", "us-east-1", "" };

	snprintf(u.name, sizeof(u.name), "%s", s->name);
	return cluster_put_job(cl, "admin", &u, s, if_match, NULL, NULL, res, p);
}

static void put_job_ok(const char *json, struct cluster_put_result *res)
{
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(put_job(json, NULL, res, &p), 0);
	problem_release(&p);
}

static void tick(void)
{
	struct cd_error err = {};
	int r = cluster_tick(cl, &err);

	if (r < 0)
		fail_msg("tick: %s", cd_error_message(&err));
}

static void get_job(const char *name, struct store_job *j, struct store_task **t, size_t *n)
{
	struct job_url u = { "us-east", "us-east-1", "" };

	snprintf(u.name, sizeof(u.name), "%s", name);
	assert_int_equal(cluster_get_job(cl, &u, j, t, n, NULL), 0);
}

static void notify(const struct store_task *t, const char *state, const char *reason, bool healthy,
		   int restarts)
{
	struct cluster_notify n = {
		.task_id = t->task_id,
		.host_id = t->host_id,
		.state = state,
		.seq = seq,
		.reason = reason,
		.healthy = healthy,
		.restarts = restarts,
	};
	bool applied = false;
	struct problem p;

	seq++;
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_notify(cl, "agent", &n, &applied, &p), 0);
	assert_true(applied);
	problem_release(&p);
}

/* Report every live, desired-RUNNING task of job `name` as running and healthy. */
static void all_running(const char *name)
{
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0;

	get_job(name, &j, &t, &n);
	for (size_t i = 0; i < n; i++)
		if (streq(t[i].desired, "RUNNING") && !streq(t[i].state, "RUNNING"))
			notify(&t[i], "RUNNING", NULL, true, 0);
	store_task_list_free(t, n);
	store_job_release(&j);
}

/* Report every task being stopped as DONE. */
static void all_stopped(const char *name)
{
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0;

	get_job(name, &j, &t, &n);
	for (size_t i = 0; i < n; i++)
		if (streq(t[i].desired, "DONE") && !streq(t[i].state, "DONE") &&
		    !streq(t[i].state, "ERROR"))
			notify(&t[i], "DONE", "stopped", false, 0);
	store_task_list_free(t, n);
	store_job_release(&j);
}

static size_t live_running_tasks(const char *name, int64_t version, char hosts[][STORE_NAME_MAX])
{
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0, k = 0;

	get_job(name, &j, &t, &n);
	for (size_t i = 0; i < n; i++)
		if (streq(t[i].desired, "RUNNING") && (version == 0 || t[i].version == version)) {
			if (hosts)
				snprintf(hosts[k], STORE_NAME_MAX, "%s", t[i].host_id);
			k++;
		}
	store_task_list_free(t, n);
	store_job_release(&j);
	return k;
}

#define WEB2 "{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":2}}"

/* ---- tests --------------------------------------------------------------------------------- */

static void test_put_place_push_run(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0;
	char hosts[4][STORE_NAME_MAX];
	json_t *body;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	heartbeat("h3", 4, NULL, 0);
	put_job_ok(WEB2, &res);
	assert_true(res.created);
	assert_true(res.changed);
	assert_int_equal(res.version, 1);

	tick();
	assert_int_equal(count_calls("put"), 2);
	assert_int_equal(live_running_tasks("web", 1, hosts), 2);
	assert_string_not_equal(hosts[0], hosts[1]); /* distinct hosts */

	/* The PutTask body follows docs/protocol-cluster.md. */
	body = json_loads(calls[0].body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(body, "job")),
			    "job://us-east/us-east-1/web");
	assert_string_equal(json_string_value(json_object_get(body, "request_id")),
			    json_string_value(json_object_get(body, "task_id")));
	assert_true(json_is_object(json_object_get(body, "spec")));
	assert_true(json_is_null(json_object_get(body, "artifact")));
	json_decref(body);

	get_job("web", &j, &t, &n);
	assert_string_equal(j.state, "PENDING");
	assert_int_equal(n, 2);
	assert_true(t[0].pushed);
	store_task_list_free(t, n);
	store_job_release(&j);

	/* A second tick pushes nothing new. */
	calls_reset();
	tick();
	assert_int_equal(n_calls, 0);

	all_running("web");
	tick();
	get_job("web", &j, NULL, NULL);
	assert_string_equal(j.state, "RUNNING");
	assert_int_equal(j.stable_version, 1);
	assert_string_equal(j.rollout, "");
	store_job_release(&j);
}

static void test_put_idempotent_and_preconditions(void **state)
{
	struct cluster_put_result res = {};
	struct problem p;

	put_job_ok(WEB2, &res);
	put_job_ok(WEB2, &res);
	assert_false(res.created);
	assert_false(res.changed);
	assert_int_equal(res.version, 1);

	/* Key order and defaults do not make a spec different. */
	put_job_ok("{\"reqs\":{\"hosts\":2,\"vcpus\":1},\"target\":\"//app:web\",\"name\":\"web\"}",
		   &res);
	assert_false(res.changed);

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(put_job(WEB2, "\"7\"", &res, &p), -ESTALE);
	assert_int_equal(p.status, 412);
	problem_release(&p);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(
		put_job("{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":3}}",
			"\"1\"", &res, &p),
		0);
	assert_true(res.changed);
	assert_int_equal(res.version, 2);
	problem_release(&p);

	/* If-None-Match: * refuses to overwrite. */
	{
		_cleanup_jobspec_ struct jobspec *s = spec_of(WEB2);
		struct job_url u = { "us-east", "us-east-1", "web" };

		problem_init(&p, 0, NULL, NULL);
		assert_int_equal(cluster_put_job(cl, "admin", &u, s, NULL, "*", NULL, &res, &p),
				 -EEXIST);
		assert_int_equal(p.status, 412);
		problem_release(&p);
	}

	/* Required If-Match: 428 for an update without it. */
	cluster_free(cl);
	cl = new_cluster(true);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(put_job(WEB2, NULL, &res, &p), -EPERM);
	assert_int_equal(p.status, 428);
	problem_release(&p);
}

static void test_put_validation_lists_every_problem(void **state)
{
	_cleanup_jobspec_ struct jobspec *s = spec_of(
		"{\"name\":\"web\",\"target\":\"//app:web@0123456789abcdef0123456789abcdef01234567\","
		"\"zones\":[\"eu-west-1\"]}");
	struct job_url u = { "us-east", "us-east-1", "other" };
	struct job_url wrong_zone = { "eu-west", "eu-west-1", "web" };
	struct cluster_put_result res = {};
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_put_job(cl, "admin", &u, s, NULL, NULL, NULL, &res, &p), -EINVAL);
	assert_int_equal(p.status, 422);
	assert_int_equal(p.n_errors, 3);
	assert_string_equal(p.errors[0].pointer, "/name");
	assert_string_equal(p.errors[1].pointer, "/zones");
	assert_string_equal(p.errors[2].pointer, "/target");
	problem_release(&p);

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_put_job(cl, "admin", &wrong_zone, s, NULL, NULL, NULL, &res, &p),
			 -EXDEV);
	assert_int_equal(p.status, 404);
	problem_release(&p);
}

static void test_infeasible_stays_pending_with_reason(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;

	heartbeat("h1", 1, NULL, 0);
	put_job_ok("{\"name\":\"big\",\"target\":\"//app:big\",\"reqs\":{\"hosts\":2,\"vcpus\":2}}",
		   &res);
	tick();
	get_job("big", &j, NULL, NULL);
	assert_string_equal(j.state, "PENDING");
	assert_non_null(j.reason);
	assert_non_null(strstr(j.reason, "lack vcpus (need 2.000)"));
	store_job_release(&j);
	assert_int_equal(count_calls("put"), 0);

	/* Capacity arrives: placed. */
	heartbeat("h2", 8, NULL, 0);
	heartbeat("h3", 8, NULL, 0);
	tick();
	assert_int_equal(count_calls("put"), 2);
}

static void test_host_lost_reschedules(void **state)
{
	struct cluster_put_result res = {};
	char before[4][STORE_NAME_MAX], after[4][STORE_NAME_MAX];
	struct store_job j;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	heartbeat("h3", 4, NULL, 0);
	put_job_ok(WEB2, &res);
	tick();
	all_running("web");
	tick();
	assert_int_equal(live_running_tasks("web", 0, before), 2);

	/* 16 s later only the hosts that are not before[0] have heartbeated. */
	fake_now += 16 * USEC_PER_SEC;
	for (const char *h = "h1"; h; h = streq(h, "h1") ? "h2" : streq(h, "h2") ? "h3" : NULL)
		if (!streq(h, before[0]))
			heartbeat(h, 4, NULL, 0);
	calls_reset();
	tick();
	assert_int_equal(live_running_tasks("web", 0, after), 2);
	for (int i = 0; i < 2; i++)
		assert_string_not_equal(after[i], before[0]);
	assert_string_not_equal(after[0], after[1]);
	assert_int_equal(count_calls("put"), 1);
	get_job("web", &j, NULL, NULL);
	assert_string_equal(j.state, "PENDING"); /* the replacement is not running yet */
	store_job_release(&j);

	/* The lost host comes back still holding its old task: it is stopped and deleted. */
	{
		struct store_event *ev = NULL;
		size_t ne = 0;
		struct cluster_reported_task rt = { .state = "RUNNING", .healthy = true };
		bool found = false;

		assert_int_equal(store_event_list(st, 0, 0, &ev, &ne, NULL), 0);
		for (size_t i = 0; i < ne; i++)
			if (streq(ev[i].kind, "task.state") && strstr(ev[i].data, "host_lost")) {
				const char *id = strrchr(ev[i].subject, '/') + 1;

				snprintf(rt.task_id, sizeof(rt.task_id), "%s", id);
				found = true;
			}
		store_event_list_free(ev, ne);
		assert_true(found);
		calls_reset();
		heartbeat(before[0], 4, &rt, 1);
		tick();
		assert_int_equal(count_calls("state"), 1);
		assert_int_equal(count_calls("delete"), 1);
		assert_string_equal(calls[0].task_id, rt.task_id);
	}
}

static void test_heartbeat_heals_lost_push(void **state)
{
	struct cluster_put_result res = {};

	heartbeat("h1", 4, NULL, 0);
	put_job_ok("{\"name\":\"one\",\"target\":\"//app:one\"}", &res);
	tick();
	assert_int_equal(count_calls("put"), 1);
	/* taskd restarted with an empty state: the heartbeat does not list the task. */
	heartbeat("h1", 4, NULL, 0);
	calls_reset();
	tick();
	assert_int_equal(count_calls("put"), 1);
}

static void test_push_retried_while_taskd_down(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0;

	heartbeat("h1", 4, NULL, 0);
	put_job_ok("{\"name\":\"one\",\"target\":\"//app:one\"}", &res);
	taskd_down = true;
	tick();
	tick();
	assert_int_equal(count_calls("put"), 2);
	get_job("one", &j, &t, &n);
	assert_int_equal(n, 1); /* retries re-push the same task: no duplicate */
	assert_false(t[0].pushed);
	store_task_list_free(t, n);
	store_job_release(&j);
	taskd_down = false;
	calls_reset();
	tick();
	assert_int_equal(count_calls("put"), 1);
	get_job("one", &j, &t, &n);
	assert_true(t[0].pushed);
	store_task_list_free(t, n);
	store_job_release(&j);
}

static void test_rejected_task_is_replaced_then_crash_loop(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	put_job_ok("{\"name\":\"one\",\"target\":\"//app:one\"}", &res);
	tick();
	all_running("one");
	tick(); /* rollout done: failures now count as crash loop, not as a failed rollout */
	get_job("one", &j, NULL, NULL);
	assert_int_equal(j.stable_version, 1);
	store_job_release(&j);

	for (int i = 0; i < 3; i++) {
		struct store_task *t = NULL;
		size_t n = 0;

		get_job("one", &j, &t, &n);
		for (size_t k = 0; k < n; k++)
			if (streq(t[k].desired, "RUNNING"))
				notify(&t[k], "ERROR", "fetch_failed", false, 0);
		store_task_list_free(t, n);
		store_job_release(&j);
		tick();
	}
	get_job("one", &j, NULL, NULL);
	assert_string_equal(j.state, "ERROR");
	assert_non_null(strstr(j.reason, "crash loop"));
	store_job_release(&j);
	assert_int_equal(live_running_tasks("one", 0, NULL), 0);
}

static void test_policy_never_error_is_final(void **state)
{
	struct cluster_put_result res = {};
	struct store_task *t = NULL;
	struct store_job j;
	size_t n = 0;

	heartbeat("h1", 4, NULL, 0);
	put_job_ok("{\"name\":\"batch\",\"target\":\"//app:b\",\"restart\":{\"policy\":\"never\"}}",
		   &res);
	tick();
	all_running("batch");
	tick();
	get_job("batch", &j, &t, &n);
	notify(&t[0], "ERROR", "exited", false, 0);
	store_task_list_free(t, n);
	store_job_release(&j);
	calls_reset();
	tick();
	get_job("batch", &j, NULL, NULL);
	assert_string_equal(j.state, "ERROR");
	assert_non_null(strstr(j.reason, "exited"));
	store_job_release(&j);
	assert_int_equal(count_calls("put"), 0);
}

static void test_rolling_update_batches(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;
	int rounds = 0;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	heartbeat("h3", 4, NULL, 0);
	put_job_ok("{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":3}}", &res);
	tick();
	all_running("web");
	tick();
	put_job_ok("{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":3},"
		   "\"env\":{\"V\":\"2\"}}",
		   &res);
	assert_int_equal(res.version, 2);

	/* max_unavailable 1: never more than one slot without a healthy task. */
	for (;;) {
		size_t old, cur;

		calls_reset();
		tick();
		old = live_running_tasks("web", 1, NULL);
		cur = live_running_tasks("web", 2, NULL);
		assert_true(old + cur <= 3);
		assert_true(old >= 2 || cur >= 1 || rounds > 0);
		assert_true(count_calls("state") <= 1);
		get_job("web", &j, NULL, NULL);
		if (j.stable_version == 2) {
			store_job_release(&j);
			break;
		}
		store_job_release(&j);
		all_stopped("web");
		tick();
		all_running("web");
		assert_true(++rounds < 10);
	}
	assert_int_equal(rounds, 3); /* one batch per slot */
	assert_int_equal(live_running_tasks("web", 2, NULL), 3);
	get_job("web", &j, NULL, NULL);
	assert_string_equal(j.state, "RUNNING");
	assert_string_equal(j.rollout, "");
	store_job_release(&j);
}

static void test_failed_update_rolls_back(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	heartbeat("h3", 4, NULL, 0);
	put_job_ok(WEB2, &res);
	tick();
	all_running("web");
	tick();
	put_job_ok("{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":2},"
		   "\"env\":{\"BROKEN\":\"1\"}}",
		   &res);
	tick(); /* stops one old task */
	all_stopped("web");
	tick(); /* places the new one */
	get_job("web", &j, &t, &n);
	for (size_t i = 0; i < n; i++)
		if (t[i].version == 2 && streq(t[i].desired, "RUNNING"))
			notify(&t[i], "RUNNING", "health_failed", false, 1); /* restarted */
	store_task_list_free(t, n);
	store_job_release(&j);
	tick();
	get_job("web", &j, NULL, NULL);
	assert_int_equal(j.version, 3);
	assert_string_equal(j.rollout, "rolled_back");
	assert_non_null(strstr(j.rollout_reason, "rolled back from version 2 to 1"));
	store_job_release(&j);

	/* Converges back to two healthy tasks of the old spec, now version 3. */
	for (int i = 0; i < 5; i++) {
		tick();
		all_stopped("web");
		tick();
		all_running("web");
	}
	tick();
	get_job("web", &j, NULL, NULL);
	assert_int_equal(j.stable_version, 3);
	assert_string_equal(j.state, "RUNNING");
	assert_non_null(strstr(j.reason, "rolled back"));
	store_job_release(&j);
	assert_int_equal(live_running_tasks("web", 3, NULL), 2);
	assert_int_equal(live_running_tasks("web", 0, NULL), 2);
	{
		char *spec = NULL;

		assert_int_equal(store_job_version_spec(st, res.job_id, 3, &spec, NULL), 0);
		assert_null(strstr(spec, "BROKEN"));
		free(spec);
	}
}

static void test_failed_update_halts_without_auto_rollback(void **state)
{
	_cleanup_jobspec_ struct jobspec *s2 = NULL;
	struct cluster_rollout_opts o = { .max_unavailable = 2,
					  .min_healthy_s = -1,
					  .auto_rollback = 0 };
	struct job_url u = { "us-east", "us-east-1", "web" };
	struct cluster_put_result res = {};
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0;
	struct problem p;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	put_job_ok(WEB2, &res);
	tick();
	all_running("web");
	tick();
	s2 = spec_of("{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":2},"
		     "\"env\":{\"X\":\"1\"}}");
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_put_job(cl, "admin", &u, s2, NULL, NULL, &o, &res, &p), 0);
	problem_release(&p);
	tick(); /* both slots at once: max_unavailable 2 */
	assert_int_equal(count_calls("state"), 2);
	all_stopped("web");
	tick();
	get_job("web", &j, &t, &n);
	for (size_t i = 0; i < n; i++)
		if (t[i].version == 2 && streq(t[i].desired, "RUNNING"))
			notify(&t[i], "ERROR", "exited", false, 0);
	store_task_list_free(t, n);
	store_job_release(&j);
	tick();
	get_job("web", &j, NULL, NULL);
	assert_string_equal(j.rollout, "halted");
	assert_string_equal(j.state, "ERROR");
	assert_int_equal(j.version, 2);
	assert_int_equal(j.stable_version, 1);
	store_job_release(&j);
}

static void test_stop_job_and_restart(void **state)
{
	struct cluster_put_result res = {};
	struct job_url u = { "us-east", "us-east-1", "web" };
	struct store_job j;
	int64_t version = 0;
	struct problem p;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	put_job_ok(WEB2, &res);
	tick();
	all_running("web");
	tick();

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_set_job_state(cl, "admin", &u, "PAUSED", NULL, &version, &p),
			 -EINVAL);
	problem_release(&p);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_set_job_state(cl, "admin", &u, "DONE", "\"9\"", &version, &p),
			 -ESTALE);
	problem_release(&p);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_set_job_state(cl, "admin", &u, "DONE", "\"1\"", &version, &p), 0);
	problem_release(&p);
	calls_reset();
	tick();
	assert_int_equal(count_calls("state"), 2);
	get_job("web", &j, NULL, NULL);
	assert_string_equal(j.desired, "DONE");
	assert_string_equal(j.reason, "stopping");
	store_job_release(&j);
	all_stopped("web");
	calls_reset();
	tick();
	get_job("web", &j, NULL, NULL);
	assert_string_equal(j.state, "DONE");
	store_job_release(&j);
	tick();
	assert_int_equal(count_calls("delete"), 2);
	assert_int_equal(live_running_tasks("web", 0, NULL), 0);

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_set_job_state(cl, "admin", &u, "RUNNING", NULL, &version, &p), 0);
	problem_release(&p);
	tick();
	assert_int_equal(live_running_tasks("web", 0, NULL), 2);
}

static void test_notify_replay_wrong_host_unknown(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;
	struct store_task *t = NULL;
	size_t n = 0;
	bool applied = true;
	struct problem p;
	struct cluster_notify nt = { .state = "RUNNING", .healthy = true };

	heartbeat("h1", 4, NULL, 0);
	put_job_ok("{\"name\":\"one\",\"target\":\"//app:one\"}", &res);
	tick();
	get_job("one", &j, &t, &n);
	nt.task_id = t[0].task_id;
	nt.host_id = t[0].host_id;
	nt.seq = 10;
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_notify(cl, "agent", &nt, &applied, &p), 0);
	assert_true(applied);
	nt.state = "ERROR";
	nt.seq = 9; /* older message delivered late: ignored */
	assert_int_equal(cluster_notify(cl, "agent", &nt, &applied, &p), 0);
	assert_false(applied);
	nt.seq = 11;
	nt.host_id = "h9";
	assert_int_equal(cluster_notify(cl, "agent", &nt, &applied, &p), -EXDEV);
	assert_int_equal(p.status, 410);
	problem_release(&p);
	nt.task_id = "ffffffffffffffffffffffffffff";
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(cluster_notify(cl, "agent", &nt, &applied, &p), -ENOENT);
	assert_int_equal(p.status, 404);
	problem_release(&p);
	store_task_list_free(t, n);
	store_job_release(&j);
	get_job("one", &j, &t, &n);
	assert_string_equal(t[0].state, "RUNNING");
	assert_true(t[0].healthy);
	assert_int_equal(t[0].last_seq, 10);
	store_task_list_free(t, n);
	store_job_release(&j);
}

/* deployd killed mid-update: a new cluster over the same database finishes the rollout
 * without losing or duplicating tasks. */
static void test_resume_after_restart(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	heartbeat("h3", 4, NULL, 0);
	put_job_ok(WEB2, &res);
	tick();
	all_running("web");
	tick();
	put_job_ok("{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":2},"
		   "\"env\":{\"V\":\"2\"}}",
		   &res);
	tick();
	all_stopped("web");

	cluster_free(cl);
	store_free(st);
	assert_int_equal(store_open(dbpath, &st, NULL), 0);
	cl = new_cluster(false);

	for (int i = 0; i < 6; i++) {
		tick();
		all_stopped("web");
		tick();
		all_running("web");
		assert_true(live_running_tasks("web", 0, NULL) <= 2);
	}
	tick();
	get_job("web", &j, NULL, NULL);
	assert_int_equal(j.stable_version, 2);
	assert_string_equal(j.state, "RUNNING");
	store_job_release(&j);
	assert_int_equal(live_running_tasks("web", 2, NULL), 2);
}

static void test_host_ports_do_not_clash(void **state)
{
	struct cluster_put_result res = {};
	struct store_job j;

	heartbeat("h1", 8, NULL, 0);
	heartbeat("h2", 8, NULL, 0);
	put_job_ok(
		"{\"name\":\"a\",\"target\":\"//app:a\",\"reqs\":{\"networking\":{\"mode\":\"host\","
		"\"ports\":[{\"name\":\"http\",\"port\":8080}]}}}",
		&res);
	put_job_ok(
		"{\"name\":\"b\",\"target\":\"//app:b\",\"reqs\":{\"networking\":{\"mode\":\"host\","
		"\"ports\":[{\"name\":\"http\",\"port\":8080}]}}}",
		&res);
	put_job_ok(
		"{\"name\":\"c\",\"target\":\"//app:c\",\"reqs\":{\"networking\":{\"mode\":\"host\","
		"\"ports\":[{\"name\":\"http\",\"port\":8080}]}}}",
		&res);
	tick();
	assert_int_equal(count_calls("put"), 2);
	get_job("c", &j, NULL, NULL);
	assert_string_equal(j.state, "PENDING");
	assert_non_null(strstr(j.reason, "port clash"));
	store_job_release(&j);
}

/* deployd was down longer than the lost timeout: after its restart the hosts get a grace period
 * to heartbeat before anything is declared lost (else every task would be replaced). */
static void test_restart_grace_for_hosts(void **state)
{
	struct cluster_put_result res = {};
	struct store_host h = {};
	struct store_job j;

	heartbeat("h1", 4, NULL, 0);
	heartbeat("h2", 4, NULL, 0);
	put_job_ok(WEB2, &res);
	tick();
	all_running("web");
	tick();

	cluster_free(cl);
	fake_now += 3600 * USEC_PER_SEC; /* an hour without a manager */
	cl = new_cluster(false);
	calls_reset();
	tick();
	assert_int_equal(store_host_get(st, "h1", &h, NULL), 0);
	assert_string_equal(h.state, "READY");
	store_host_release(&h);
	get_job("web", &j, NULL, NULL);
	assert_string_equal(j.state, "RUNNING");
	store_job_release(&j);
	assert_int_equal(count_calls("put"), 0);

	/* h1 heartbeats, h2 stays silent: only h2 is lost once the grace is over. */
	fake_now += 10 * USEC_PER_SEC;
	heartbeat("h1", 4, NULL, 0);
	fake_now += 6 * USEC_PER_SEC;
	tick();
	assert_int_equal(store_host_get(st, "h1", &h, NULL), 0);
	assert_string_equal(h.state, "READY");
	store_host_release(&h);
	assert_int_equal(store_host_get(st, "h2", &h, NULL), 0);
	assert_string_equal(h.state, "LOST");
	store_host_release(&h);
}

/* PutJob (update) and a controller round with a store failure at every possible statement: the
 * job is at the old or the new version with its event, tasks are placed with their events or
 * not at all — never half. The next round without failures converges. */
static void test_store_failures_leave_nothing_half_done(void **state)
{
	struct cluster_put_result res = {};
	int put_failures = 0;

	heartbeat("h1", 8, NULL, 0);
	heartbeat("h2", 8, NULL, 0);
	put_job_ok(WEB2, &res);
	for (int at = 1; at < 30; at++) {
		char spec[160];
		struct store_job j;
		struct store_event *ev = NULL;
		size_t ne = 0, puts = 0;
		int64_t before;
		struct problem p;
		int r;

		get_job("web", &j, NULL, NULL);
		before = j.version;
		store_job_release(&j);
		snprintf(spec, sizeof(spec),
			 "{\"name\":\"web\",\"target\":\"//app:web\",\"reqs\":{\"hosts\":2},"
			 "\"env\":{\"AT\":\"%d\"}}",
			 at);
		problem_init(&p, 0, NULL, NULL);
		step_fail_at = at;
		r = put_job(spec, NULL, &res, &p);
		step_fail_at = 0;
		problem_release(&p);
		put_failures += r < 0;
		get_job("web", &j, NULL, NULL);
		assert_int_equal(j.version, r < 0 ? before : before + 1);
		{
			char needle[32];

			snprintf(needle, sizeof(needle), "\"AT\":\"%d\"", at);
			assert_int_equal(strstr(j.spec, needle) != NULL, r >= 0);
		}
		store_job_release(&j);
		assert_int_equal(store_event_list(st, 0, 0, &ev, &ne, NULL), 0);
		for (size_t i = 0; i < ne; i++)
			puts += streq(ev[i].kind, "job.put");
		store_event_list_free(ev, ne);
		/* one job.put event per version that exists */
		assert_int_equal(puts, (size_t)(r < 0 ? before : before + 1));
	}
	assert_true(put_failures >= 3);

	/* Controller rounds that fail somewhere: whatever was written is consistent, and a clean
	 * round afterwards leaves exactly two live tasks, each with its placement event. */
	for (int at = 1; at < 60; at += 3) {
		struct cd_error err = {};

		step_fail_at = at;
		(void)cluster_tick(cl, &err);
		step_fail_at = 0;
	}
	tick();
	tick();
	{
		struct store_job j;
		struct store_task *t = NULL;
		struct store_event *ev = NULL;
		size_t n = 0, ne = 0;

		get_job("web", &j, &t, &n);
		assert_int_equal(live_running_tasks("web", j.version, NULL), 2);
		assert_int_equal(store_event_list(st, 0, 1000, &ev, &ne, NULL), 0);
		for (size_t i = 0; i < n; i++) {
			bool placed = false;

			for (size_t k = 0; k < ne && !placed; k++)
				placed = streq(ev[k].kind, "task.placed") &&
					 strstr(ev[k].subject, t[i].task_id);
			assert_true(placed);
		}
		store_event_list_free(ev, ne);
		store_task_list_free(t, n);
		store_job_release(&j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_place_push_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_idempotent_and_preconditions, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_validation_lists_every_problem, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_infeasible_stays_pending_with_reason, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_host_lost_reschedules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_heals_lost_push, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_retried_while_taskd_down, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rejected_task_is_replaced_then_crash_loop,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_never_error_is_final, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rolling_update_batches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_update_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_update_halts_without_auto_rollback,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_job_and_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_replay_wrong_host_unknown, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resume_after_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_ports_do_not_clash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_grace_for_hosts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_failures_leave_nothing_half_done, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
