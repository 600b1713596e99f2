/* SPDX-License-Identifier: Apache-2.0 */
/* REST tests of central/pipeline_api over a real HTTP server on loopback and the real store:
 * create (201/409/422 listing every problem), auth (401/403), list by owner with pagination,
 * schema versions with ETag/If-Match (412), activate, runs with Idempotency-Key, state, approve,
 * cancel, retry, 404s. The runner is driven synchronously (runner_step) so nothing is timed. */
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

#include "api/http_client.h"
#include "api/http_server.h"
#include "central/pipeline_api.h"
#include "central/pipeline_run.h"
#include "lib/fs.h"
#include "lib/str.h"

#define ADMIN "admin-token-0123456789abcdef"
#define FOO "foo-team-token-0123456789abcdef"
#define BAR "bar-team-token-0123456789abcdef"
#define COMMIT1 "1111111111111111111111111111111111111111"
#define COMMIT2 "2222222222222222222222222222222222222222"

static char tmpdir[64];
static struct store *st;
static struct runner *rn;
static struct dag_cache *dags;
static struct pipeline_api *api;
static struct http_server *srv;
static char base[64];

/* The seed's example pipeline, in JSON. */
static const char seed_pipeline[] =
	"{\"name\":\"FooService\",\"owner\":\"foo_team\",\"schema\":["
	"{\"name\":\"Code Build\",\"type\":\"build\",\"build_targets\":"
	"[\"//repo/foo_service:main\",\"//repo/foo_service:tests\"]},"
	"{\"name\":\"Service Tests\",\"type\":\"test\",\"test_target\":\"//repo/foo_service:tests\"},"
	"{\"name\":\"us-east-1 deployment\",\"type\":\"job\","
	"\"spec\":\"//repo/foo_service/specs:north_america\"},"
	"{\"name\":\"eu-west-1 deployment\",\"depends_on\":[\"us-east-1 deployment\"],"
	"\"type\":\"job\",\"spec\":\"//repo/foo_service/specs:eu\"}]}";

static const char gate_pipeline[] =
	"{\"name\":\"Gate\",\"owner\":\"foo_team\",\"schema\":["
	"{\"name\":\"w\",\"type\":\"wait\",\"wait\":{\"seconds\":0}},"
	"{\"name\":\"gate\",\"type\":\"approval\"},"
	"{\"name\":\"after\",\"type\":\"wait\",\"wait\":{\"seconds\":0}}]}";

static int setup(void **state)
{
	char path[128];
	struct cd_error err = { 0 };
	const struct pipelines_token tokens[] = { { ADMIN, NULL },
						  { FOO, "foo_team" },
						  { BAR, "bar_team" } };
	struct runner_config rc = { .owner = "test" };
	struct pipeline_api_config ac = { .tokens = tokens, .n_tokens = ARRAY_SIZE(tokens) };
	struct http_server_config sc = { .listen = "127.0.0.1:0", .num_threads = 2 };
	const struct http_route *routes;

	strcpy(tmpdir, "/tmp/cd-test-papi.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/d.db", tmpdir);
	assert_int_equal(store_open(path, &st, &err), 0);
	/* shared by the runner and the API, as the pipelines role does */
	assert_int_equal(dag_cache_new(0, 0, &dags), 0);
	rc.store = st;
	rc.dags = dags;
	assert_int_equal(runner_new(&rc, &rn, &err), 0);
	ac.store = st;
	ac.runner = rn;
	ac.log_dir = tmpdir;
	ac.dags = dags;
	assert_int_equal(pipeline_api_new(&ac, &api, &err), 0);
	routes = pipeline_api_routes(api, &sc.n_routes);
	sc.routes = routes;
	sc.bearer_token = ADMIN; /* routes are OPEN and check tokens themselves */
	if (http_server_new(&sc, &srv, &err) < 0)
		fail_msg("server: %s", cd_error_message(&err));
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", http_server_port(srv));
	return 0;
}

static int teardown(void **state)
{
	http_server_free(srv);
	pipeline_api_free(api);
	runner_free(rn);
	dags = dag_cache_free(dags);
	store_free(st);
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

/* One request; returns the status, *ret_body (may be NULL) the parsed JSON body. */
static long call(const char *token, const char *method, const char *path, const char *body,
		 const char *const *headers, json_t **ret_body, char *etag, size_t etag_size)
{
	struct http_client_config cc = { .base_url = base,
					 .bearer_token = token,
					 .max_attempts = 1 };
	struct http_client *c = NULL;
	struct http_client_response resp = { 0 };
	struct cd_error err = { 0 };
	struct http_client_request rq = {
		.method = method,
		.path = path,
		.headers = headers,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.content_type = body ? "application/json" : NULL,
	};
	long status;

	assert_int_equal(http_client_new(&cc, &c, &err), 0);
	if (http_client_request(c, &rq, &resp, &err) < 0)
		fail_msg("%s %s: %s", method, path, cd_error_message(&err));
	status = resp.status;
	if (ret_body)
		*ret_body = resp.body_len ? json_loads(resp.body, 0, NULL) : NULL;
	if (etag) {
		const char *e = http_client_response_header(&resp, "ETag");

		snprintf(etag, etag_size, "%s", e ? e : "");
	}
	http_client_response_release(&resp);
	http_client_free(c);
	return status;
}

static long req(const char *token, const char *method, const char *path, const char *body,
		json_t **ret_body)
{
	return call(token, method, path, body, NULL, ret_body, NULL, 0);
}

static void create_seed(char id[static ID_LEN + 1])
{
	json_t *b = NULL;

	assert_int_equal(req(FOO, "POST", "/v1/pipelines", seed_pipeline, &b), 201);
	snprintf(id, ID_LEN + 1, "%s", json_string_value(json_object_get(b, "pipeline_id")));
	assert_int_equal(strlen(id), ID_LEN);
	json_decref(b);
}

static void test_create_get_and_auth(void **state)
{
	char id[ID_LEN + 1], path[128];
	json_t *b = NULL;

	assert_int_equal(req(NULL, "POST", "/v1/pipelines", seed_pipeline, NULL), 401);
	assert_int_equal(req("wrong", "GET", "/v1/pipelines", NULL, NULL), 401);
	/* a team creates only pipelines it owns */
	assert_int_equal(req(BAR, "POST", "/v1/pipelines", seed_pipeline, &b), 403);
	assert_non_null(strstr(json_string_value(json_object_get(b, "detail")), "foo_team"));
	json_decref(b);
	create_seed(id);
	assert_int_equal(req(ADMIN, "POST", "/v1/pipelines", seed_pipeline, NULL), 409);
	/* the audit log names who did it; the refused attempts left nothing */
	{
		struct store_event *ev = NULL;
		size_t n = 0;
		char subj[64];

		assert_int_equal(store_event_list(st, 0, 0, &ev, &n, NULL), 0);
		assert_int_equal(n, 1);
		assert_string_equal(ev[0].kind, "pipeline.create");
		assert_string_equal(ev[0].actor, "team:foo_team");
		snprintf(subj, sizeof(subj), "pipeline/%s", id);
		assert_string_equal(ev[0].subject, subj);
		store_event_list_free(ev, n);
	}

	snprintf(path, sizeof(path), "/v1/pipelines/%s", id);
	assert_int_equal(req(BAR, "GET", path, NULL, &b), 200); /* anyone may read */
	assert_string_equal(json_string_value(json_object_get(b, "name")), "FooService");
	assert_string_equal(json_string_value(json_object_get(b, "owner")), "foo_team");
	assert_int_equal(json_integer_value(json_object_get(b, "active_version")), 1);
	json_decref(b);
	assert_int_equal(req(FOO, "GET", "/v1/pipelines/0123456789abcdef0123456789ab", NULL, NULL),
			 404);
}

static void test_invalid_schema_lists_every_problem(void **state)
{
	json_t *b = NULL, *errors;
	const char *bad =
		"{\"name\":\"Bad\",\"owner\":\"foo_team\",\"schema\":["
		"{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[\"not a target\"]},"
		"{\"name\":\"a\",\"type\":\"deploy\"},"
		"{\"name\":\"c\",\"type\":\"test\"},"
		"{\"name\":\"d\",\"type\":\"wait\",\"wait\":{\"seconds\":0},\"depends_on\":[\"zz\"]}]}";

	assert_int_equal(req(FOO, "POST", "/v1/pipelines", bad, &b), 422);
	errors = json_object_get(b, "errors");
	/* bad target, duplicate name, unknown type, missing test_target, unknown depends_on */
	assert_true(json_array_size(errors) >= 5);
	json_decref(b);
	assert_int_equal(req(FOO, "POST", "/v1/pipelines", "{\"name\":", &b), 400);
	json_decref(b);
	/* a cycle is named */
	assert_int_equal(req(FOO, "POST", "/v1/pipelines",
			     "{\"name\":\"Cyc\",\"owner\":\"foo_team\",\"schema\":["
			     "{\"name\":\"x\",\"type\":\"approval\",\"depends_on\":[\"y\"]},"
			     "{\"name\":\"y\",\"type\":\"approval\",\"depends_on\":[\"x\"]}]}",
			     &b),
			 422);
	{
		char *text = json_dumps(b, 0);

		assert_non_null(text);
		assert_non_null(strstr(text, "cycle"));
		free(text);
	}
	json_decref(b);
}

static void test_list_by_owner_paginated(void **state)
{
	char name[64], body[512];
	json_t *b = NULL;
	const char *tok;
	char path[160];
	size_t seen = 0;

	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "P%d", i);
		snprintf(body, sizeof(body),
			 "{\"name\":\"%s\",\"owner\":\"%s\",\"schema\":[{\"name\":\"a\","
			 "\"type\":\"approval\"}]}",
			 name, i % 2 ? "bar_team" : "foo_team");
		assert_int_equal(req(ADMIN, "POST", "/v1/pipelines", body, NULL), 201);
	}
	snprintf(path, sizeof(path), "/v1/pipelines?owner=foo_team&page_size=2");
	for (;;) {
		json_t *v;
		size_t i;

		assert_int_equal(req(BAR, "GET", path, NULL, &b), 200);
		json_array_foreach(json_object_get(b, "pipelines"), i, v) {
			assert_string_equal(json_string_value(json_object_get(v, "owner")),
					    "foo_team");
			seen++;
		}
		tok = json_string_value(json_object_get(b, "next_page_token"));
		if (!tok) {
			json_decref(b);
			break;
		}
		snprintf(path, sizeof(path),
			 "/v1/pipelines?owner=foo_team&page_size=2&page_token=%s", tok);
		json_decref(b);
	}
	assert_int_equal(seen, 3);
	assert_int_equal(req(BAR, "GET", "/v1/pipelines?page_size=0", NULL, NULL), 400);
}

static void test_schema_versions_etag(void **state)
{
	char id[ID_LEN + 1], path[160], etag[32];
	const char *hdr_ok[] = { "If-Match: \"1\"", NULL };
	const char *hdr_stale[] = { "If-Match: \"1\"", NULL };
	json_t *b = NULL;
	const char *v2 = "[{\"name\":\"only\",\"type\":\"approval\"}]";

	create_seed(id);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/schema", id);
	assert_int_equal(call(BAR, "GET", path, NULL, NULL, &b, etag, sizeof(etag)), 200);
	assert_string_equal(etag, "\"1\"");
	assert_string_equal(json_string_value(json_object_get(b, "state")), "active");
	assert_int_equal(json_array_size(json_object_get(b, "schema")), 4);
	json_decref(b);

	/* other teams cannot change it; the owner gets a draft */
	assert_int_equal(call(BAR, "PUT", path, v2, hdr_ok, NULL, NULL, 0), 403);
	assert_int_equal(call(FOO, "PUT", path, v2, hdr_ok, &b, etag, sizeof(etag)), 201);
	assert_string_equal(etag, "\"2\"");
	assert_string_equal(json_string_value(json_object_get(b, "state")), "draft");
	json_decref(b);
	/* a second writer with the old ETag loses */
	assert_int_equal(call(FOO, "PUT", path, v2, hdr_stale, NULL, NULL, 0), 412);
	assert_int_equal(call(FOO, "PUT", path, "[{\"name\":\"x\"}]", NULL, &b, NULL, 0), 422);
	json_decref(b);

	/* the active version is still 1 until activation */
	assert_int_equal(call(FOO, "GET", path, NULL, NULL, &b, etag, sizeof(etag)), 200);
	assert_string_equal(etag, "\"1\"");
	json_decref(b);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/schema/2/activate", id);
	assert_int_equal(req(BAR, "POST", path, NULL, NULL), 403);
	assert_int_equal(req(FOO, "POST", path, NULL, &b), 200);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "active");
	json_decref(b);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/schema?version=1", id);
	assert_int_equal(req(FOO, "GET", path, NULL, &b), 200);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "inactive");
	json_decref(b);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/schema/9/activate", id);
	assert_int_equal(req(FOO, "POST", path, NULL, NULL), 404);
}

static void create_gate(char id[static ID_LEN + 1])
{
	json_t *b = NULL;

	assert_int_equal(req(FOO, "POST", "/v1/pipelines", gate_pipeline, &b), 201);
	snprintf(id, ID_LEN + 1, "%s", json_string_value(json_object_get(b, "pipeline_id")));
	json_decref(b);
}

static void drain(void)
{
	while (runner_step(rn, clock_real_usec(), NULL) > 0)
		;
}

static const char *stage_state(json_t *run, size_t i)
{
	return json_string_value(
		json_object_get(json_array_get(json_object_get(run, "stages"), i), "state"));
}

static void test_runs_idempotency_state_approve(void **state)
{
	char id[ID_LEN + 1], path[200];
	const char *key[] = { "Idempotency-Key: hook-42", NULL };
	json_t *b = NULL;

	create_gate(id);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs", id);
	assert_int_equal(req(BAR, "POST", path, "{\"commit\":\"" COMMIT1 "\"}", NULL), 403);
	assert_int_equal(req(FOO, "POST", path, "{\"commit\":\"nothex\"}", &b), 422);
	json_decref(b);
	assert_int_equal(call(FOO, "POST", path, "{\"commit\":\"" COMMIT1 "\"}", key, &b, NULL, 0),
			 201);
	assert_int_equal(json_integer_value(json_object_get(b, "run")), 1);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "IN_PROGRESS");
	assert_string_equal(stage_state(b, 0), "PENDING");
	json_decref(b);
	/* the hook fires again: same run */
	assert_int_equal(call(FOO, "POST", path, "{\"commit\":\"" COMMIT1 "\"}", key, &b, NULL, 0),
			 200);
	assert_int_equal(json_integer_value(json_object_get(b, "run")), 1);
	json_decref(b);

	drain();
	snprintf(path, sizeof(path), "/v1/pipelines/%s/state", id);
	assert_int_equal(req(BAR, "GET", path, NULL, &b), 200);
	assert_string_equal(stage_state(b, 0), "FINISHED");
	assert_string_equal(stage_state(b, 1), "IN_PROGRESS");
	assert_string_equal(stage_state(b, 2), "PENDING");
	json_decref(b);

	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/1/stages/gate/approve", id);
	assert_int_equal(req(BAR, "POST", path, NULL, NULL), 403);
	assert_int_equal(req(FOO, "POST", path, NULL, NULL), 200);
	assert_int_equal(req(FOO, "POST", path, NULL, NULL), 409);
	drain();
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/1", id);
	assert_int_equal(req(FOO, "GET", path, NULL, &b), 200);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "FINISHED");
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(json_object_get(b, "stages"), 1),
						  "approved_by")),
		"team:foo_team");
	json_decref(b);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/7", id);
	assert_int_equal(req(FOO, "GET", path, NULL, NULL), 404);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/x", id);
	assert_int_equal(req(FOO, "GET", path, NULL, NULL), 400);
}

/* Run views (POST/GET runs, GET state) plan the run's schema version through the DAG cache the
 * runner uses: once for the run's whole life, however often it is looked at. */
static void test_run_views_use_dag_cache(void **state)
{
	char id[ID_LEN + 1], path[200];
	uint64_t hits0 = 0, plans0 = 0, hits = 0, plans = 0;
	json_t *b = NULL;

	create_gate(id);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs", id);
	assert_int_equal(req(FOO, "POST", path, "{\"commit\":\"" COMMIT1 "\"}", &b), 201);
	assert_int_equal(json_array_size(json_object_get(b, "stages")), 3);
	json_decref(b);
	drain(); /* parked at the gate: the runner planned through the same cache */
	dag_cache_stats(dags, &hits0, &plans0);
	assert_int_equal(plans0, 1);

	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/1", id);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(req(BAR, "GET", path, NULL, &b), 200);
		assert_string_equal(stage_state(b, 1), "IN_PROGRESS");
		json_decref(b);
	}
	snprintf(path, sizeof(path), "/v1/pipelines/%s/state", id);
	assert_int_equal(req(BAR, "GET", path, NULL, &b), 200);
	assert_string_equal(stage_state(b, 0), "FINISHED");
	json_decref(b);
	dag_cache_stats(dags, &hits, &plans);
	assert_int_equal(plans, 1);
	assert_int_equal(hits, hits0 + 4);
}

static void test_cancel_retry_list(void **state)
{
	char id[ID_LEN + 1], path[200];
	json_t *b = NULL;

	create_gate(id);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs", id);
	assert_int_equal(req(FOO, "POST", path, "{\"commit\":\"" COMMIT1 "\"}", NULL), 201);
	drain(); /* parked at the gate */
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/1/cancel", id);
	assert_int_equal(req(BAR, "POST", path, NULL, NULL), 403);
	assert_int_equal(req(FOO, "POST", path, NULL, &b), 200);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "CANCELLED");
	assert_string_equal(stage_state(b, 1), "ERROR");
	json_decref(b);
	assert_int_equal(req(FOO, "POST", path, NULL, NULL), 409);

	/* retry re-runs the cancelled gate only */
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/1/retry", id);
	assert_int_equal(req(FOO, "POST", path, NULL, &b), 200);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "IN_PROGRESS");
	assert_int_equal(json_integer_value(json_object_get(b, "attempt")), 2);
	assert_string_equal(stage_state(b, 0), "FINISHED");
	assert_string_equal(stage_state(b, 1), "PENDING");
	json_decref(b);
	assert_int_equal(req(FOO, "POST", path, NULL, NULL), 409);

	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs", id);
	assert_int_equal(req(FOO, "POST", path, "{\"commit\":\"" COMMIT2 "\"}", &b), 201);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "PENDING");
	json_decref(b);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs?page_size=1", id);
	assert_int_equal(req(FOO, "GET", path, NULL, &b), 200);
	assert_int_equal(json_array_size(json_object_get(b, "runs")), 1);
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(json_object_get(b, "runs"), 0), "run")),
			 2);
	assert_string_equal(json_string_value(json_object_get(b, "next_page_token")), "2");
	json_decref(b);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_create_get_and_auth),
		T(test_invalid_schema_lists_every_problem),
		T(test_list_by_owner_paginated),
		T(test_schema_versions_etag),
		T(test_runs_idempotency_state_approve),
		T(test_cancel_retry_list),
		T(test_run_views_use_dag_cache),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
