/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for agent/manager (PutTask validation, idempotency, conflicts, listing, SetTaskState
 * and DELETE errors, events, metrics, the outbox written with each change), agent/api's token
 * check, agent/notify's delivery rules, and agent/taskdir's records. The manager runs on a
 * temporary state dir with a shim path that cannot start, so no task process is created: a put
 * task ends in ERROR start_failed, which is itself checked.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/api.h"
#include "agent/manager.h"
#include "agent/notify.h"
#include "agent/runtime.h"
#include "agent/state.h"
#include "agent/taskdir.h"
#include "api/http_client.h"
#include "api/jobspec.h"
#include "api/jsonw.h"
#include "lib/fs.h"
#include "sandbox/cgroup.h"

static char tmpdir[64];
static char cgparent[64];
static struct manager *mgr;
static unsigned changes;
static usec_t setup_at; /* realtime just before manager_new() */

static void on_change(void *userdata)
{
	changes++;
}

static int setup(void **state)
{
	struct manager_config mc = { 0 };
	struct state *st = NULL;
	char db[128];
	char *mask[] = { tmpdir, NULL };

	strcpy(tmpdir, "/tmp/cd-test-agent-manager.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(cgparent, sizeof(cgparent), "cd-test-agent-manager-%d", (int)getpid());
	snprintf(db, sizeof(db), "%s/taskd.db", tmpdir);
	assert_int_equal(state_open(db, &st, NULL), 0);
	mc.state_dir = tmpdir;
	mc.cgroup_parent = cgparent;
	mc.shim_path = "/nonexistent/taskd-shim";
	mc.host_id = "unit";
	mc.notify = true;
	mc.log_max_bytes = 1 << 20;
	mc.log_keep = 1;
	mc.log_line_max = 1024;
	mc.restart_reset_s = 60;
	mc.max_tasks = 3;
	mc.events_keep = 1000;
	mc.cache_max_bytes = 1 << 30;
	mc.default_pids_max = 1234;   /* taskd.conf default_pids_max */
	mc.bridge_name = "cdbr-unit"; /* never created: no task starts here */
	mc.bridge_subnet = "10.123.4.0/24";
	mc.mask = mask;
	mc.on_change = on_change;
	changes = 0;
	setup_at = clock_real_usec();
	assert_int_equal(manager_new(&mc, st, &mgr, NULL), 0);
	return 0;
}

static int teardown(void **state)
{
	manager_free(mgr);
	mgr = NULL;
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static json_t *body(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);

	assert_non_null(j);
	return j;
}

static bool has_pointer(const struct problem *p, const char *ptr)
{
	for (size_t i = 0; i < p->n_errors; i++)
		if (streq(p->errors[i].pointer, ptr))
			return true;
	return false;
}

/* What a manager call wrote, parsed back as a client would; w is released. */
static json_t *parsed(struct jsonw *w)
{
	json_t *j;

	assert_int_equal(jsonw_finish(w), 0);
	j = json_loads(w->buf.buf, 0, NULL);
	assert_non_null(j);
	jsonw_release(w);
	return j;
}

/* The manager's task calls with their reply parsed; nothing is written on failure. */
static int put_as(const char *text, bool from_manager, json_t **ret, struct problem *p)
{
	struct jsonw w = JSONW_INIT;
	json_t *b = body(text);
	char id[TASK_ID_BUF];
	int r;

	problem_init(p, 400, NULL, NULL);
	r = manager_put_task(mgr, b, from_manager, &w, id, p);
	json_decref(b);
	if (r < 0) {
		assert_null(w.buf.buf);
		return r;
	}
	*ret = parsed(&w);
	assert_string_equal(json_string_value(json_object_get(*ret, "task_id")), id);
	return r;
}

static int put(const char *text, json_t **ret, struct problem *p)
{
	return put_as(text, true, ret, p);
}

static int get_task(const char *id, bool full, json_t **ret)
{
	struct jsonw w = JSONW_INIT;
	int r = manager_get_task(mgr, id, full, &w);

	if (r < 0) {
		assert_null(w.buf.buf);
		return r;
	}
	*ret = parsed(&w);
	return r;
}

static int list_tasks(const char *job, const char *state, json_t **ret)
{
	struct jsonw w = JSONW_INIT;
	int r = manager_list_tasks(mgr, job, state, &w);

	if (r < 0) {
		assert_null(w.buf.buf);
		return r;
	}
	*ret = parsed(&w);
	return r;
}

static int set_state(const char *id, const char *state, json_t **ret)
{
	struct jsonw w = JSONW_INIT;
	int r = manager_set_state(mgr, id, state, &w);

	if (r < 0) {
		assert_null(w.buf.buf);
		return r;
	}
	*ret = parsed(&w);
	return r;
}

#define SPEC                                                                                       \
	"\"spec\":{\"name\":\"web\",\"target\":\"//a:web\",\"command\":[\"/bin/true\"],"           \
	"\"restart\":{\"policy\":\"never\"}}"

static void test_put_reports_every_invalid_field(void **state)
{
	struct problem p;
	json_t *t = NULL;

	assert_int_equal(put("{\"job\":\"nope\",\"index\":-1,\"task_id\":\"Bad_Id\","
			     "\"request_id\":\"has space\",\"extra\":1,"
			     "\"artifact\":{\"digest\":\"md5:1\",\"mirrors\":[\"ftp://x\"]},"
			     "\"spec\":{\"name\":\"Bad Name\",\"reqs\":{\"vcpus\":-1}}}",
			     &t, &p),
			 -EINVAL);
	assert_int_equal(p.status, 422);
	assert_true(has_pointer(&p, "/job"));
	assert_true(has_pointer(&p, "/index"));
	assert_true(has_pointer(&p, "/task_id"));
	assert_true(has_pointer(&p, "/request_id"));
	assert_true(has_pointer(&p, "/extra"));
	assert_true(has_pointer(&p, "/artifact/digest"));
	assert_true(has_pointer(&p, "/artifact/mirrors/0"));
	assert_true(has_pointer(&p, "/spec/name"));
	assert_true(has_pointer(&p, "/spec/reqs/vcpus"));
	problem_release(&p);

	assert_int_equal(put("[1]", &t, &p), -EINVAL);
	assert_int_equal(p.status, 422);
	problem_release(&p);
	assert_int_equal(put("{}", &t, &p), -EINVAL);
	assert_true(has_pointer(&p, "/job"));
	assert_true(has_pointer(&p, "/spec"));
	problem_release(&p);
}

static void test_put_idempotent_and_conflicts(void **state)
{
	struct problem p;
	json_t *a = NULL, *b = NULL, *c = NULL;
	const char *id;

	assert_int_equal(put("{\"request_id\":\"r1\",\"task_id\":\"t-1\",\"job\":\"job://us-east/"
			     "us-east-1/web\",\"index\":2," SPEC "}",
			     &a, &p),
			 201);
	problem_release(&p);
	id = json_string_value(json_object_get(a, "task_id"));
	assert_string_equal(id, "t-1");
	assert_string_equal(json_string_value(json_object_get(a, "task")),
			    "task://us-east/us-east-1/web/t-1");
	assert_int_equal(json_integer_value(json_object_get(a, "index")), 2);
	/* the same request again: the same task, 200 */
	assert_int_equal(put("{\"request_id\":\"r1\",\"task_id\":\"t-1\",\"job\":\"job://us-east/"
			     "us-east-1/web\",\"index\":2," SPEC "}",
			     &b, &p),
			 200);
	problem_release(&p);
	assert_string_equal(json_string_value(json_object_get(b, "task_id")), "t-1");
	/* the task id with another request id: 409 */
	assert_int_equal(put("{\"request_id\":\"r2\",\"task_id\":\"t-1\",\"job\":\"job://us-east/"
			     "us-east-1/web\"," SPEC "}",
			     &c, &p),
			 -EEXIST);
	assert_int_equal(p.status, 409);
	problem_release(&p);
	/* a request id reused for another task id: 409 */
	assert_int_equal(put("{\"request_id\":\"r1\",\"task_id\":\"t-2\",\"job\":\"job://us-east/"
			     "us-east-1/web\"," SPEC "}",
			     &c, &p),
			 -EEXIST);
	problem_release(&p);
	json_decref(a);
	json_decref(b);
	assert_true(changes > 0);
}

static void test_put_capacity(void **state)
{
	struct problem p;
	json_t *t = NULL;

	for (int i = 0; i < 3; i++) {
		assert_int_equal(put("{\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p), 201);
		problem_release(&p);
		json_decref(t);
	}
	assert_int_equal(put("{\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p), -ENOSPC);
	assert_int_equal(p.status, 507);
	problem_release(&p);
}

/* The launch.json of a task (taskd writes it before spawning the shim). */
static void launched(const char *id, struct launch_spec *ret)
{
	_cleanup_free_ char *dir = NULL, *path = NULL, *text = NULL;
	struct cd_error err = { 0 };

	assert_int_equal(manager_task_dir(mgr, id, &dir), 0);
	assert_true(asprintf(&path, "%s/%s", dir, TASKDIR_LAUNCH) > 0);
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 1 << 20, &text, NULL), 0);
	assert_int_equal(launch_spec_from_string(text, ret, &err), 0);
}

static uint64_t launched_pids_max(const char *id)
{
	struct launch_spec ls;
	uint64_t v;

	launched(id, &ls);
	v = ls.pids_max;
	launch_spec_release(&ls);
	return v;
}

/* taskd.conf's bridge_name / bridge_subnet reach the launch of a bridge-mode task only. */
static void test_bridge_config(void **state)
{
	struct problem p;
	json_t *t = NULL;
	struct launch_spec ls;

	assert_int_equal(put("{\"task_id\":\"t-b\",\"job\":\"job://r/r-1/web\",\"spec\":{"
			     "\"name\":\"web\",\"target\":\"//a:web\",\"command\":[\"/bin/true\"],"
			     "\"reqs\":{\"networking\":{\"mode\":\"bridge\"}},"
			     "\"restart\":{\"policy\":\"never\"}}}",
			     &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	launched("t-b", &ls);
	assert_string_equal(ls.net, "bridge");
	assert_string_equal(ls.bridge, "cdbr-unit");
	assert_string_equal(ls.subnet, "10.123.4.0/24");
	launch_spec_release(&ls);
	assert_int_equal(put("{\"task_id\":\"t-n\",\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	launched("t-n", &ls);
	assert_string_equal(ls.net, "none");
	assert_null(ls.bridge);
	assert_null(ls.subnet);
	launch_spec_release(&ls);
}

/* reqs.pids_max of the JobSpec becomes the task's pids.max; without it, taskd's
 * default_pids_max (not a fixed 4096). Out-of-range values are refused with their pointer. */
static void test_pids_max(void **state)
{
	struct problem p;
	json_t *t = NULL, *g = NULL;

	assert_int_equal(put("{\"task_id\":\"t-p\",\"job\":\"job://r/r-1/web\",\"spec\":{"
			     "\"name\":\"web\",\"target\":\"//a:web\",\"command\":[\"/bin/true\"],"
			     "\"reqs\":{\"pids_max\":64},\"restart\":{\"policy\":\"never\"}}}",
			     &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	assert_int_equal(launched_pids_max("t-p"), 64);
	assert_int_equal(get_task("t-p", true, &g), 0);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(json_object_get(g, "spec"), "reqs"), "pids_max")),
			 64);
	json_decref(g);

	assert_int_equal(put("{\"task_id\":\"t-d\",\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	assert_int_equal(launched_pids_max("t-d"), 1234);
	/* unset stays unset in the stored spec: the host's default is not a value of the spec */
	assert_int_equal(get_task("t-d", true, &g), 0);
	assert_null(
		json_object_get(json_object_get(json_object_get(g, "spec"), "reqs"), "pids_max"));
	json_decref(g);

	for (int i = 0; i < 3; i++) {
		static const char *const bad[] = { "1", "4194305", "\"64\"" };
		char text[512];

		snprintf(text, sizeof(text),
			 "{\"job\":\"job://r/r-1/web\",\"spec\":{\"name\":\"web\",\"target\":"
			 "\"//a:web\",\"reqs\":{\"pids_max\":%s}}}",
			 bad[i]);
		assert_int_equal(put(text, &t, &p), -EINVAL);
		assert_int_equal(p.status, 422);
		assert_true(has_pointer(&p, "/spec/reqs/pids_max"));
		problem_release(&p);
	}
}

static void wait_final(const char *id, json_t **ret)
{
	/* The launch fails synchronously inside PutTask (no shim binary), so the state is final
	 * by the time put returns; no waiting is needed. */
	assert_int_equal(get_task(id, true, ret), 0);
}

static void test_failed_launch_is_start_failed_and_notified(void **state)
{
	struct problem p;
	json_t *t = NULL, *g = NULL, *list = NULL;
	struct outbox_msg *v = NULL;
	size_t n = 0;

	assert_int_equal(put("{\"task_id\":\"t-9\",\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	wait_final("t-9", &g);
	assert_string_equal(json_string_value(json_object_get(g, "state")), "ERROR");
	assert_string_equal(json_string_value(json_object_get(g, "reason")), "start_failed");
	assert_non_null(json_string_value(json_object_get(g, "message")));
	assert_non_null(json_object_get(g, "spec"));
	assert_true(json_is_false(json_object_get(g, "healthy")));
	json_decref(g);

	/* Every change went to the outbox (PENDING, then ERROR) with the protocol's members;
	 * undelivered, the older is replaced by the newer: the manager applies only the highest
	 * seq per task, so one message per task is all it needs. */
	assert_int_equal(manager_outbox_due(mgr, (usec_t)INT64_MAX, 100, &v, &n), 0);
	assert_int_equal(n, 1);
	{
		json_t *last = json_loads(v[0].body, 0, NULL);

		assert_string_equal(v[0].task_id, "t-9");
		assert_string_equal(json_string_value(json_object_get(last, "host_id")), "unit");
		assert_string_equal(json_string_value(json_object_get(last, "state")), "ERROR");
		assert_string_equal(json_string_value(json_object_get(last, "reason")),
				    "start_failed");
		assert_true(json_is_null(json_object_get(last, "exit_code")));
		json_decref(last);
	}
	{
		struct strbuf out = STRBUF_INIT;

		assert_int_equal(manager_metrics(mgr, &out), 0);
		assert_non_null(strstr(out.buf, "taskd_outbox_pending 1\n"));
		assert_null(strstr(out.buf, "taskd_notifications_coalesced_total 0\n"));
		assert_non_null(
			strstr(out.buf, "# TYPE taskd_notifications_coalesced_total counter"));
		strbuf_release(&out);
	}
	assert_int_equal(manager_outbox_ack(mgr, v[0].id), 0);
	outbox_msg_array_free(v, n);

	assert_int_equal(list_tasks(NULL, "ERROR", &list), 0);
	assert_int_equal(json_array_size(json_object_get(list, "tasks")), 1);
	json_decref(list);
	assert_int_equal(list_tasks("job://r/r-1/other", NULL, &list), 0);
	assert_int_equal(json_array_size(json_object_get(list, "tasks")), 0);
	json_decref(list);
	assert_int_equal(list_tasks(NULL, "SLEEPING", &list), -EINVAL);
}

/* The task object's members in the order taskd has always written them (clients and the e2e
 * tests read them by name; the order is kept all the same). */
static const char *const base_keys[] = { "task_id",    "task",	     "job",	    "index",
					 "state",      "reason",     "message",	    "healthy",
					 "exit_code",  "signal",     "restarts",    "created_at",
					 "updated_at", "started_at", "finished_at", "desired",
					 "generation", "request_id", NULL };

/* obj has exactly base_keys, then extra (NULL-terminated), in that order. */
static void assert_keys(const json_t *obj, const char *const *extra)
{
	void *it = json_object_iter((json_t *)obj);
	size_t i = 0;

	for (const char *const *k = base_keys; *k; k++, i++) {
		assert_non_null(it);
		assert_string_equal(json_object_iter_key(it), *k);
		it = json_object_iter_next((json_t *)obj, it);
	}
	for (const char *const *k = extra; *k; k++, i++) {
		assert_non_null(it);
		assert_string_equal(json_object_iter_key(it), *k);
		it = json_object_iter_next((json_t *)obj, it);
	}
	assert_null(it);
	assert_int_equal(json_object_size(obj), i);
}

static void assert_time_between(const json_t *v, usec_t lo, usec_t hi)
{
	usec_t t = 0;

	assert_true(json_is_string(v));
	assert_int_equal(clock_parse_rfc3339(json_string_value(v), &t), 0);
	/* milliseconds on the wire */
	assert_true(t + USEC_PER_MSEC > lo);
	assert_true(t <= hi);
}

#define GOLDEN_SPEC                                                                                \
	"{\"name\":\"web\",\"target\":\"//a:web\",\"command\":[\"/bin/true\",\"a \\\"q\\\" \\\\ "  \
	"\\u00e9\\u0001\"],\"env\":{\"K\":\"line\\nnext\"},\"restart\":{\"policy\":\"never\"}}"

/*
 * GetTaskState, ListTasks, PutTask and SetTaskState write the same task object (streamed by
 * api/jsonw, not built as a jansson tree): every member the protocol has always had, in its
 * order, with the same values — the spec equal to the JobSpec codec's JSON of the spec put
 * (strings with quotes, backslashes, control characters and UTF-8 survive), the artifact equal
 * to the one put.
 */
static void test_task_object_golden(void **state)
{
	static const char *const none[] = { NULL };
	static const char *const with_spec[] = { "spec", NULL };
	static const char *const with_artifact[] = { "spec", "artifact", NULL };
	struct problem p;
	json_t *t = NULL, *g = NULL, *list = NULL, *want_spec = NULL, *art = NULL;
	struct jobspec *spec = NULL;
	usec_t before = clock_real_usec(), after;

	assert_int_equal(put("{\"request_id\":\"rq-g\",\"task_id\":\"t-g\",\"job\":\"job://r/r-1/"
			     "web\",\"index\":4,\"spec\":" GOLDEN_SPEC "}",
			     &t, &p),
			 201);
	problem_release(&p);
	assert_keys(t, none);
	json_decref(t);
	after = clock_real_usec();

	assert_int_equal(get_task("t-g", true, &g), 0);
	assert_keys(g, with_spec);
	assert_string_equal(json_string_value(json_object_get(g, "task_id")), "t-g");
	assert_string_equal(json_string_value(json_object_get(g, "task")), "task://r/r-1/web/t-g");
	assert_string_equal(json_string_value(json_object_get(g, "job")), "job://r/r-1/web");
	assert_int_equal(json_integer_value(json_object_get(g, "index")), 4);
	/* no shim binary: the launch failed inside PutTask */
	assert_string_equal(json_string_value(json_object_get(g, "state")), "ERROR");
	assert_string_equal(json_string_value(json_object_get(g, "reason")), "start_failed");
	assert_true(strlen(json_string_value(json_object_get(g, "message"))) > 0);
	assert_true(json_is_false(json_object_get(g, "healthy")));
	assert_true(json_is_null(json_object_get(g, "exit_code")));
	assert_true(json_is_null(json_object_get(g, "signal")));
	assert_int_equal(json_integer_value(json_object_get(g, "restarts")), 0);
	assert_time_between(json_object_get(g, "created_at"), before, after);
	assert_time_between(json_object_get(g, "updated_at"), before, after);
	assert_true(json_is_null(json_object_get(g, "started_at")));
	assert_time_between(json_object_get(g, "finished_at"), before, after);
	assert_string_equal(json_string_value(json_object_get(g, "desired")), "RUNNING");
	assert_int_equal(json_integer_value(json_object_get(g, "generation")), 1);
	assert_string_equal(json_string_value(json_object_get(g, "request_id")), "rq-g");
	{
		json_t *in = body(GOLDEN_SPEC);

		problem_init(&p, 400, NULL, NULL);
		assert_int_equal(jobspec_from_json_at(in, "", &spec, &p), 0);
		problem_release(&p);
		json_decref(in);
		assert_int_equal(jobspec_to_json(spec, &want_spec), 0);
		assert_true(json_equal(json_object_get(g, "spec"), want_spec));
		assert_string_equal(
			json_string_value(json_array_get(
				json_object_get(json_object_get(g, "spec"), "command"), 1)),
			"a \"q\" \\ \xc3\xa9\x01");
		json_decref(want_spec);
		jobspec_free(spec);
	}
	json_decref(g);

	/* without the spec (ListTasks' and the internal callers' form) */
	assert_int_equal(get_task("t-g", false, &g), 0);
	assert_keys(g, none);
	json_decref(g);
	assert_int_equal(list_tasks(NULL, NULL, &list), 0);
	assert_int_equal(json_object_size(list), 1);
	assert_int_equal(json_array_size(json_object_get(list, "tasks")), 1);
	assert_keys(json_array_get(json_object_get(list, "tasks"), 0), none);
	json_decref(list);
	assert_int_equal(set_state("t-g", "DONE", &g), 0);
	assert_keys(g, none);
	assert_string_equal(json_string_value(json_object_get(g, "desired")), "DONE");
	json_decref(g);

	/* an artifact comes back as it was put; its mirror refuses connections (port 1), so the
	 * task is fetching or failed by now: neither runs, so no pid or usage either way */
	assert_int_equal(
		put("{\"task_id\":\"t-a\",\"job\":\"job://r/r-1/web\",\"spec\":" GOLDEN_SPEC
		    ",\"artifact\":{\"mirrors\":[\"http://127.0.0.1:1\"],\"digest\":"
		    "\"sha256:"
		    "0000000000000000000000000000000000000000000000000000000000000000\"}}",
		    &t, &p),
		201);
	problem_release(&p);
	json_decref(t);
	assert_int_equal(get_task("t-a", true, &g), 0);
	assert_keys(g, with_artifact);
	art = body("{\"digest\":\"sha256:"
		   "0000000000000000000000000000000000000000000000000000000000000000\","
		   "\"mirrors\":[\"http://127.0.0.1:1\"]}");
	assert_true(json_equal(json_object_get(g, "artifact"), art));
	json_decref(art);
	json_decref(g);
	assert_int_equal(list_tasks("job://r/r-1/web", "ERROR", &list), 0);
	assert_true(json_array_size(json_object_get(list, "tasks")) >= 1);
	json_decref(list);
}

/*
 * GetTaskState's usage cache: a reading is served again while it is younger than
 * RUNTIME_USAGE_MAX_AGE_USEC, read again once it is that old, never served for another
 * generation (another cgroup), and a slower concurrent read does not replace a newer reading.
 */
static void test_usage_cache(void **state)
{
	struct runtime_usage_cache c = { 0 };
	struct runtime_usage a = { .memory_bytes = 1,
				   .memory_peak_bytes = 2,
				   .cpu_usage_ns = 3,
				   .pids = 4,
				   .oom_kills = UINT64_MAX };
	struct runtime_usage b = { .memory_bytes = 10, .pids = 40 };
	struct runtime_usage got;
	const usec_t t0 = 100 * USEC_PER_SEC;

	assert_false(runtime_usage_cache_get(&c, 0, t0, &got)); /* empty, even for generation 0 */
	runtime_usage_cache_put(&c, 3, t0, &a);
	memset(&got, 0, sizeof(got));
	assert_true(runtime_usage_cache_get(&c, 3, t0, &got));
	assert_memory_equal(&got, &a, sizeof(a));
	assert_true(runtime_usage_cache_get(&c, 3, t0 + RUNTIME_USAGE_MAX_AGE_USEC - 1, &got));
	assert_int_equal(got.cpu_usage_ns, 3);
	assert_false(runtime_usage_cache_get(&c, 3, t0 + RUNTIME_USAGE_MAX_AGE_USEC, &got));
	assert_false(runtime_usage_cache_get(&c, 4, t0, &got)); /* a new run: another cgroup */
	assert_false(runtime_usage_cache_get(&c, 3, t0 - 1, &got));
	/* a read begun before the held one is older: dropped */
	runtime_usage_cache_put(&c, 3, t0 - 5, &b);
	assert_true(runtime_usage_cache_get(&c, 3, t0, &got));
	assert_int_equal(got.memory_bytes, 1);
	/* a newer one replaces it and its age counts from its own read */
	runtime_usage_cache_put(&c, 3, t0 + RUNTIME_USAGE_MAX_AGE_USEC, &b);
	assert_true(runtime_usage_cache_get(&c, 3, t0 + 2 * RUNTIME_USAGE_MAX_AGE_USEC - 1, &got));
	assert_int_equal(got.memory_bytes, 10);
	assert_int_equal(got.pids, 40);
	/* another generation's reading replaces any, whatever its time */
	runtime_usage_cache_put(&c, 5, t0 - 10, &a);
	assert_false(runtime_usage_cache_get(&c, 3, t0, &got));
	assert_true(runtime_usage_cache_get(&c, 5, t0 - 10, &got));
	assert_int_equal(got.memory_bytes, 1);
}

/* The reader uses the caller's detected hierarchies; a cgroup that does not exist is -ENOENT
 * (GetTaskState then has no usage), not a reading of zeros. */
static void test_usage_by_name_missing(void **state)
{
	struct cg_system *sys = NULL;
	struct runtime_usage u;

	if (cg_system_detect(NULL, &sys, NULL) < 0)
		skip(); /* no cgroup hierarchy here */
	assert_int_equal(runtime_usage_by_name(sys, cgparent, "no-such-task-1", &u), -ENOENT);
	cg_system_free(sys);
}

static void test_set_state_and_delete(void **state)
{
	struct problem p;
	json_t *t = NULL;
	char *dir = NULL;

	assert_int_equal(set_state("nope", "DONE", &t), -ENOENT);
	assert_int_equal(manager_delete_task(mgr, "nope"), -ENOENT);
	assert_int_equal(put("{\"task_id\":\"t-3\",\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	assert_int_equal(set_state("t-3", "PENDING", &t), -EINVAL);
	assert_int_equal(set_state("t-3", "DONE", &t), 0);
	assert_string_equal(json_string_value(json_object_get(t, "desired")), "DONE");
	json_decref(t);
	assert_false(manager_task_active(mgr, "t-3"));
	assert_int_equal(manager_task_dir(mgr, "t-3", &dir), 0);
	assert_int_equal(access(dir, F_OK), 0);
	assert_int_equal(manager_delete_task(mgr, "t-3"), 0);
	assert_int_equal(access(dir, F_OK), -1);
	free(dir);
	assert_int_equal(get_task("t-3", false, &t), -ENOENT);
	assert_int_equal(manager_delete_task(mgr, "t-3"), -ENOENT);
}

static void test_events_and_metrics(void **state)
{
	struct problem p;
	json_t *t = NULL, *ev = NULL;
	struct strbuf out = STRBUF_INIT;
	json_int_t last;

	assert_int_equal(put("{\"task_id\":\"t-4\",\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	assert_int_equal(manager_events(mgr, 0, 0, 100, NULL, NULL, &ev), 0);
	assert_true(json_array_size(json_object_get(ev, "events")) >= 2);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(ev, "events"), 0), "type")),
			    "created");
	last = json_integer_value(json_object_get(ev, "last"));
	json_decref(ev);
	/* nothing newer, no wait: an empty page with the same head */
	assert_int_equal(manager_events(mgr, (uint64_t)last, 0, 100, NULL, NULL, &ev), 0);
	assert_int_equal(json_array_size(json_object_get(ev, "events")), 0);
	assert_int_equal(json_integer_value(json_object_get(ev, "last")), last);
	json_decref(ev);

	assert_int_equal(manager_metrics(mgr, &out), 0);
	assert_non_null(strstr(out.buf, "taskd_tasks{state=\"ERROR\"} 1\n"));
	/* counters restart at 0 with taskd; the start time tells a dashboard when */
	{
		const char *g = strstr(out.buf, "\ntaskd_start_time_seconds ");
		double v;

		assert_non_null(strstr(out.buf, "# TYPE taskd_start_time_seconds gauge\n"));
		assert_non_null(g);
		v = strtod(g + strlen("\ntaskd_start_time_seconds "), NULL);
		assert_true(v >= (double)setup_at / USEC_PER_SEC - 1e-6);
		assert_true(v <= (double)clock_real_usec() / USEC_PER_SEC);
	}
	assert_non_null(strstr(out.buf, "taskd_task_start_failures_total 1\n"));
	assert_non_null(strstr(out.buf, "# TYPE taskd_task_start_latency_seconds histogram"));
	assert_non_null(strstr(out.buf, "taskd_task_start_latency_seconds_bucket{le=\"+Inf\"} 0"));
	strbuf_release(&out);
}

struct poller {
	atomic_bool waiting; /* stop() was asked at least once: the waiter holds the lock */
	atomic_bool stop;
	int r;
	json_t *reply;
};

static bool poller_stop(void *data)
{
	struct poller *p = data;

	atomic_store(&p->waiting, true);
	return atomic_load(&p->stop);
}

static void *poller_run(void *data)
{
	struct poller *p = data;

	/* ten minutes: only manager_wake_waiters() can end this wait in time */
	p->r = manager_events(mgr, UINT64_MAX - 1, 600 * USEC_PER_SEC, 10, poller_stop, p,
			      &p->reply);
	return NULL;
}

/*
 * A long-poll ends as soon as its stop condition turns true and manager_wake_waiters() is
 * called (what taskd does on SIGTERM), not at its deadline or the next poll: there is none.
 * poller_stop() runs under the manager's lock right before the waiter sleeps, and the wake
 * takes that lock, so the wake cannot slip in before the sleep.
 */
static void test_long_poll_wakes_on_shutdown(void **state)
{
	struct poller p = { .r = 1 };
	pthread_t th;
	struct timespec limit;

	assert_int_equal(pthread_create(&th, NULL, poller_run, &p), 0);
	while (!atomic_load(&p.waiting))
		sched_yield();
	atomic_store(&p.stop, true);
	manager_wake_waiters(mgr);
	/* a hang guard (a broken wake would wait ten minutes), not a timing assertion */
	clock_gettime(CLOCK_REALTIME, &limit);
	limit.tv_sec += 120;
	assert_int_equal(pthread_timedjoin_np(th, NULL, &limit), 0);
	assert_int_equal(p.r, 0);
	assert_int_equal(json_array_size(json_object_get(p.reply, "events")), 0);
	json_decref(p.reply);
}

static void test_restart_reloads_tasks(void **state)
{
	struct problem p;
	json_t *t = NULL, *before = NULL;
	struct manager_config mc = { 0 };
	struct state *st = NULL;
	struct manager_adopt_stats as;
	char db[128];

	assert_int_equal(put("{\"task_id\":\"t-5\",\"request_id\":\"q\",\"job\":\"job://r/r-1/"
			     "web\"," SPEC "}",
			     &t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	assert_int_equal(get_task("t-5", true, &before), 0);
	manager_free(mgr);
	mgr = NULL;
	snprintf(db, sizeof(db), "%s/taskd.db", tmpdir);
	assert_int_equal(state_open(db, &st, NULL), 0);
	mc.state_dir = tmpdir;
	mc.cgroup_parent = cgparent;
	mc.shim_path = "/nonexistent/taskd-shim";
	mc.host_id = "unit";
	mc.log_max_bytes = 1 << 20;
	mc.log_line_max = 1024;
	mc.max_tasks = 3;
	mc.events_keep = 1000;
	mc.cache_max_bytes = 1 << 30;
	assert_int_equal(manager_new(&mc, st, &mgr, NULL), 0);
	manager_adopt_stats(mgr, &as);
	assert_int_equal(as.tasks, 1);
	assert_int_equal(get_task("t-5", false, &t), 0);
	assert_string_equal(json_string_value(json_object_get(t, "state")), "ERROR");
	json_decref(t);
	/* a task loaded from the database reads back exactly as it did before (its URL, spec and
	 * times are made from the stored row, not kept from the PutTask) */
	assert_int_equal(get_task("t-5", true, &t), 0);
	assert_true(json_equal(t, before));
	json_decref(before);
	json_decref(t);
	/* idempotency survives the restart */
	assert_int_equal(put("{\"task_id\":\"t-5\",\"request_id\":\"q\",\"job\":\"job://r/r-1/"
			     "web\"," SPEC "}",
			     &t, &p),
			 200);
	problem_release(&p);
	json_decref(t);
}

/* One request; body (may be NULL) is taken over. */
static long api_call(int port, const char *token, const char *method, const char *path,
		     json_t *body, json_t **ret)
{
	struct http_client_config cc = { 0 };
	struct http_client *c = NULL;
	char base[64];
	long status = 0;

	snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
	cc.base_url = base;
	cc.bearer_token = token;
	assert_int_equal(http_client_new(&cc, &c, NULL), 0);
	assert_int_equal(http_client_json(c, method, path, body, ret, &status, NULL), 0);
	json_decref(body); /* borrowed by the client: the helper takes it */
	http_client_free(c);
	return status;
}

/* The server checks both tokens on every route (unknown ones too) and tells handlers which. */
static void test_api_tokens(void **state)
{
	struct taskd_api api = { .manager = mgr,
				 .token = "0123456789abcdef",
				 .agent_token = "fedcba9876543210" };
	struct taskd_api only = { .token = "0123456789abcdef" };
	struct http_route routes[TASKD_API_N_ROUTES];
	struct http_token tokens[2];
	struct http_server *srv = NULL;
	json_t *r = NULL;
	int port;

	assert_int_equal(taskd_api_tokens(&only, tokens), 1);
	assert_int_equal(taskd_api_principal(tokens[0].principal), TASKD_AUTH_LOCAL);
	assert_int_equal(taskd_api_tokens(&api, tokens), 2);
	assert_int_equal(taskd_api_principal(tokens[1].principal), TASKD_AUTH_MANAGER);
	assert_int_equal(taskd_api_principal(NULL), TASKD_AUTH_NONE);
	taskd_api_routes(&api, routes);
	{
		struct http_server_config sc = { .listen = "127.0.0.1:0",
						 .num_threads = 2,
						 .tokens = tokens,
						 .n_tokens = 2,
						 .routes = routes,
						 .n_routes = TASKD_API_N_ROUTES };

		assert_int_equal(http_server_new(&sc, &srv, NULL), 0);
	}
	port = http_server_port(srv);
	assert_int_equal(api_call(port, NULL, "GET", "/v1/tasks", NULL, NULL), 401);
	assert_int_equal(api_call(port, "0123456789abcdeF", "GET", "/v1/tasks", NULL, NULL), 401);
	assert_int_equal(api_call(port, "0123456789abcde", "GET", "/v1/tasks", NULL, NULL), 401);
	/* unknown paths and methods are no longer open: 401 first, 404/405 with a token */
	assert_int_equal(api_call(port, NULL, "GET", "/v1/nothing", NULL, NULL), 401);
	assert_int_equal(api_call(port, NULL, "POST", "/v1/tasks", NULL, NULL), 401);
	assert_int_equal(api_call(port, "0123456789abcdef", "GET", "/v1/nothing", NULL, NULL), 404);
	assert_int_equal(api_call(port, "fedcba9876543210", "POST", "/v1/tasks", NULL, NULL), 405);
	assert_int_equal(api_call(port, NULL, "GET", "/healthz", NULL, NULL), 200);
	/* the principal decides whether a task is the manager's (reported) or local */
	assert_int_equal(api_call(port, "fedcba9876543210", "PUT", "/v1/tasks",
				  json_pack("{s:s, s:s, s:{s:s, s:s, s:[s], s:{s:s}}}", "task_id",
					    "by-manager", "job", "job://r/r-1/web", "spec", "name",
					    "web", "target", "//a:web", "command", "/bin/true",
					    "restart", "policy", "never"),
				  &r),
			 201);
	json_decref(r);
	assert_int_equal(api_call(port, "0123456789abcdef", "PUT", "/v1/tasks",
				  json_pack("{s:s, s:s, s:{s:s, s:s, s:[s], s:{s:s}}}", "task_id",
					    "by-operator", "job", "job://r/r-1/web", "spec", "name",
					    "web", "target", "//a:web", "command", "/bin/true",
					    "restart", "policy", "never"),
				  &r),
			 201);
	json_decref(r);
	http_server_free(srv);
	r = manager_heartbeat_tasks(mgr);
	assert_int_equal(json_array_size(r), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "task_id")),
			    "by-manager");
	json_decref(r);
}

/* A task put locally (taskd's own token) is never reported to the manager. */
static void test_local_tasks_are_not_notified(void **state)
{
	struct problem p;
	json_t *t = NULL;
	uint64_t before = 0, after = 0;
	struct outbox_msg *v = NULL;
	size_t n = 0;

	assert_int_equal(manager_outbox_due(mgr, (usec_t)INT64_MAX, 1000, &v, &n), 0);
	before = n;
	outbox_msg_array_free(v, n);
	assert_int_equal(put_as("{\"task_id\":\"loc\",\"job\":\"job://r/r-1/web\"," SPEC "}", false,
				&t, &p),
			 201);
	problem_release(&p);
	json_decref(t);
	assert_int_equal(manager_outbox_due(mgr, (usec_t)INT64_MAX, 1000, &v, &n), 0);
	after = n;
	outbox_msg_array_free(v, n);
	assert_int_equal(after, before);
	t = manager_heartbeat_tasks(mgr);
	assert_int_equal(json_array_size(t), 0);
	json_decref(t);
}

static void test_notify_rules(void **state)
{
	assert_int_equal(notifier_classify_status(200), 1);
	assert_int_equal(notifier_classify_status(204), 1);
	assert_int_equal(notifier_classify_status(404), -1);
	assert_int_equal(notifier_classify_status(410), -1);
	assert_int_equal(notifier_classify_status(422), -1);
	assert_int_equal(notifier_classify_status(401), -1);
	assert_int_equal(notifier_classify_status(409), 0);
	assert_int_equal(notifier_classify_status(429), 0);
	assert_int_equal(notifier_classify_status(503), 0);
	assert_int_equal(notifier_classify_status(500), 0);
	assert_int_equal(notifier_retry_delay(0), 200 * USEC_PER_MSEC);
	assert_int_equal(notifier_retry_delay(1), 400 * USEC_PER_MSEC);
	assert_int_equal(notifier_retry_delay(30), 60 * USEC_PER_SEC);
	assert_int_equal(notifier_retry_delay(1000), 60 * USEC_PER_SEC);
}

/*
 * A stop waits for the one request in flight, never for the next: with a manager that accepts
 * connections and never answers, notifier_free() must not go on to the other tasks' messages
 * (nor the heartbeat), each of which would wait its own timeout. The "manager" is a listening
 * socket nobody accepts on: every request the notifier makes is one queued connection.
 */
static void test_notifier_stop_sends_nothing_more(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct notifier *n = NULL;
	struct problem p;
	json_t *t = NULL;
	char url[64];
	int lfd, cfd, conns = 0;

	for (int i = 0; i < 3; i++) {
		assert_int_equal(put("{\"job\":\"job://r/r-1/web\"," SPEC "}", &t, &p), 201);
		problem_release(&p);
		json_decref(t);
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
	{
		struct notifier_config nc = {
			.manager_url = url,
			.host_id = "unit",
			.zone = "z",
			.advertise_url = "http://127.0.0.1:1",
			.state_dir = tmpdir,
			.heartbeat_interval_s = 1,
			.request_timeout_ms = 300,
		};

		assert_int_equal(notifier_new(&nc, mgr, &n, NULL), 0);
	}
	/* the first notification is on its way (its connection is queued) ... */
	{
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };

		assert_int_equal(poll(&pfd, 1, -1), 1);
	}
	/* ... stop now: it times out, and the other two and the heartbeat are not sent */
	notifier_free(n);
	while ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		conns++;
		close(cfd);
	}
	close(lfd);
	assert_int_equal(conns, 1);
}

static void test_taskdir_records(void **state)
{
	struct launch_spec s = { 0 }, back;
	struct shim_status st, st2;
	struct cd_error err = { 0 };
	char *argv[] = { "/bin/echo", "hi", NULL };
	char *mask[] = { "/var/lib/codedeploy", NULL };
	struct launch_env env[] = { { "A", "1" }, { "B", "x=y" } };
	char *text = NULL;
	uint64_t start = 0;

	s.task_id = "t";
	s.generation = 7;
	s.cgroup_parent = "codedeploy";
	s.cgroup_name = "t-7";
	s.argv = argv;
	s.env = env;
	s.n_env = 2;
	s.net = "none";
	s.memory_mb = 64;
	s.millicpus = 500;
	s.log_max_bytes = 4096;
	s.log_keep = 2;
	s.log_line_max = 100;
	s.mask = mask;
	assert_int_equal(launch_spec_to_string(&s, &text), 0);
	assert_int_equal(launch_spec_from_string(text, &back, &err), 0);
	free(text);
	assert_int_equal(back.generation, 7);
	assert_string_equal(back.argv[1], "hi");
	assert_null(back.argv[2]);
	assert_int_equal(back.n_env, 2);
	assert_null(back.app_dir);
	assert_null(back.init_binary);
	assert_null(back.bridge); /* absent: the sandbox's default bridge and subnet */
	assert_null(back.subnet);
	assert_string_equal(back.mask[0], "/var/lib/codedeploy");
	assert_int_equal(back.millicpus, 500);
	launch_spec_release(&back);
	s.init_binary = "/usr/libexec/codedeploy/sandbox-init";
	assert_int_equal(launch_spec_to_string(&s, &text), 0);
	assert_int_equal(launch_spec_from_string(text, &back, &err), 0);
	free(text);
	assert_string_equal(back.init_binary, "/usr/libexec/codedeploy/sandbox-init");
	launch_spec_release(&back);
	/* taskd.conf's bridge_name / bridge_subnet travel to the shim in launch.json */
	s.net = "bridge";
	s.bridge = "cdbr-test";
	s.subnet = "10.77.0.0/24";
	assert_int_equal(launch_spec_to_string(&s, &text), 0);
	assert_int_equal(launch_spec_from_string(text, &back, &err), 0);
	free(text);
	assert_string_equal(back.net, "bridge");
	assert_string_equal(back.bridge, "cdbr-test");
	assert_string_equal(back.subnet, "10.77.0.0/24");
	launch_spec_release(&back);
	assert_int_equal(launch_spec_from_string("{\"task_id\":1}", &back, &err), -EINVAL);
	assert_int_equal(launch_spec_from_string("nonsense", &back, &err), -EINVAL);

	shim_status_init(&st);
	st.phase = SHIM_EXITED;
	st.generation = 3;
	st.exit_code = 3;
	strcpy(st.reason, "exited");
	strcpy(st.message, "with \"quotes\"");
	st.oom_kills = 2;
	st.pid = 42;
	st.pid_start = 123456;
	assert_int_equal(shim_status_to_string(&st, &text), 0);
	assert_int_equal(shim_status_from_string(text, &st2), 0);
	free(text);
	assert_int_equal(st2.phase, SHIM_EXITED);
	assert_int_equal(st2.exit_code, 3);
	assert_int_equal(st2.oom_kills, 2);
	assert_int_equal(st2.pid, 42);
	assert_int_equal(st2.pid_start, 123456);
	assert_string_equal(st2.message, "with \"quotes\"");
	assert_int_equal(shim_status_from_string("{\"phase\":\"bogus\"}", &st2), -EINVAL);
	/* a record of an older shim, without pid_start, still reads (start unknown: 0) */
	assert_int_equal(
		shim_status_from_string(
			"{\"exit_code\":-1,\"finished_at\":0,\"generation\":2,\"log_dropped\":0,"
			"\"message\":\"\",\"oom_kills\":0,\"phase\":\"running\",\"pid\":77,"
			"\"reason\":\"\",\"shim_pid\":76,\"shim_start\":5,\"signal\":0,"
			"\"started_at\":1}",
			&st2),
		0);
	assert_int_equal(st2.pid, 77);
	assert_int_equal(st2.pid_start, 0);

	assert_int_equal(proc_start_time(getpid(), &start), 0);
	assert_true(start > 0);
	assert_true(proc_is_same(getpid(), start));
	assert_false(proc_is_same(getpid(), start + 1));
	assert_int_equal(proc_start_time(0, &start), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_reports_every_invalid_field, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_put_idempotent_and_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_launch_is_start_failed_and_notified,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_state_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_and_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pids_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_poll_wakes_on_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notifier_stop_sends_nothing_more, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bridge_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_reloads_tasks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_tasks_are_not_notified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_task_object_golden, setup, teardown),
		cmocka_unit_test(test_usage_cache),
		cmocka_unit_test_setup_teardown(test_usage_by_name_missing, setup, teardown),
		cmocka_unit_test(test_notify_rules),
		cmocka_unit_test(test_taskdir_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
