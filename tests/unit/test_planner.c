/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for central/planner: the seed's example, implicit and explicit depends_on,
 * diamonds, multiple roots, FindNode, topological order, and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "central/planner.h"
#include "lib/str.h"

/* The seed's FooService schema, converted to JSON. */
static const char seed_schema[] =
	"[{\"name\":\"Code Build\",\"type\":\"build\",\"build_targets\":"
	"[\"//repo/foo_service:main\",\"//repo/foo_service:tests\"]},"
	"{\"name\":\"Service Tests\",\"type\":\"test\",\"test_target\":\"//repo/foo_service:tests\"},"
	"{\"name\":\"us-east-1 deployment\",\"type\":\"job\","
	"\"spec\":\"//repo/foo_service/specs:north_america\"},"
	"{\"name\":\"eu-west-1 deployment\",\"depends_on\":[\"us-east-1 deployment\"],"
	"\"type\":\"job\",\"spec\":\"//repo/foo_service/specs:eu\"}]";

static struct action_dag *plan_ok(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	struct action_dag *dag = NULL;
	struct cd_error err = { 0 };
	int r;

	assert_non_null(j);
	r = planner_plan("p1", j, &dag, &err);
	if (r < 0)
		fail_msg("plan failed: %s", cd_error_message(&err));
	json_decref(j); /* the DAG keeps its own reference */
	return dag;
}

/* Plans text, expects -EINVAL and a message containing want. */
static void plan_fails(const char *text, const char *want)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	struct action_dag *dag = NULL;
	struct cd_error err = { 0 };

	assert_non_null(j);
	assert_int_equal(planner_plan("p1", j, &dag, &err), -EINVAL);
	assert_null(dag);
	if (!strstr(cd_error_message(&err), want))
		fail_msg("message \"%s\" lacks \"%s\"", cd_error_message(&err), want);
	json_decref(j);
}

static void assert_names(const struct action_node *const *v, size_t n, const char *want)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;

	for (size_t i = 0; i < n; i++)
		assert_int_equal(strbuf_addf(&sb, "%s%s", i ? "," : "", node_name(v[i])), 0);
	assert_string_equal(n ? sb.buf : "", want);
}

static void assert_deps(const struct action_node *n, const char *want)
{
	size_t k;
	const struct action_node *const *v = node_dependencies(n, &k);

	assert_names(v, k, want);
}

static void assert_next(const struct action_node *n, const char *want)
{
	size_t k;
	const struct action_node *const *v = node_next_actions(n, &k);

	assert_names(v, k, want);
}

static void test_seed_example(void **state)
{
	_cleanup_dag_ struct action_dag *dag = plan_ok(seed_schema);
	const struct action_node *start, *build, *tests, *us, *eu;
	struct action a;

	assert_int_equal(dag_n_nodes(dag), 4);
	start = dag_start(dag);
	assert_int_equal(node_type(start), ACTION_START);
	assert_null(node_params(start));
	assert_deps(start, "");
	assert_next(start, "Code Build");

	build = dag_find_node(dag, "Code Build");
	tests = dag_find_node(dag, "Service Tests");
	us = dag_find_node(dag, "us-east-1 deployment");
	eu = dag_find_node(dag, "eu-west-1 deployment");
	assert_non_null(build);
	assert_non_null(tests);
	assert_non_null(us);
	assert_non_null(eu);
	assert_null(dag_find_node(dag, "code build"));
	assert_null(dag_find_node(dag, ""));
	assert_null(dag_find_node(dag, NULL));

	assert_int_equal(node_type(build), ACTION_BUILD);
	assert_int_equal(node_type(tests), ACTION_TEST);
	assert_int_equal(node_type(us), ACTION_JOB);
	assert_int_equal(node_type(eu), ACTION_JOB);

	/* implicit depends_on: each stage after the one listed before it */
	assert_deps(build, "");
	assert_deps(tests, "Code Build");
	assert_deps(us, "Service Tests");
	assert_deps(eu, "us-east-1 deployment");
	assert_next(build, "Service Tests");
	assert_next(tests, "us-east-1 deployment");
	assert_next(us, "eu-west-1 deployment");
	assert_next(eu, "");

	/* params inline */
	assert_int_equal(node_n_build_targets(build), 2);
	assert_string_equal(node_build_target(build, 0), "//repo/foo_service:main");
	assert_string_equal(node_build_target(build, 1), "//repo/foo_service:tests");
	assert_null(node_build_target(build, 2));
	assert_string_equal(node_test_target(tests), "//repo/foo_service:tests");
	assert_string_equal(node_spec(us), "//repo/foo_service/specs:north_america");
	assert_string_equal(node_spec(eu), "//repo/foo_service/specs:eu");
	assert_null(node_spec(build));
	assert_string_equal(json_string_value(json_object_get(node_params(eu), "name")),
			    "eu-west-1 deployment");

	a = node_action(eu);
	assert_string_equal(a.pipeline_id, "p1");
	assert_string_equal(a.schema_node_name, "eu-west-1 deployment");
	assert_int_equal(a.run, 0);
	assert_int_equal(a.attempt, 0);
	assert_string_equal(dag_pipeline_id(dag), "p1");

	assert_names(dag_topological(dag), 4,
		     "Code Build,Service Tests,us-east-1 deployment,eu-west-1 deployment");
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(node_index(dag_node(dag, i)), i);
	assert_null(dag_node(dag, 4));
	assert_int_equal(node_index(start), SIZE_MAX);
}

static void test_diamond(void **state)
{
	/* a -> {b, c} -> d, with d listed before c to check the topological order is not just
	 * schema order */
	_cleanup_dag_ struct action_dag *dag = plan_ok(
		"[{\"name\":\"a\",\"type\":\"approval\"},"
		"{\"name\":\"b\",\"type\":\"wait\",\"wait\":{\"seconds\":0}},"
		"{\"name\":\"d\",\"type\":\"wait\",\"wait\":{\"seconds\":1},\"depends_on\":[\"c\",\"b\"]},"
		"{\"name\":\"c\",\"type\":\"wait\",\"wait\":{\"seconds\":2},\"depends_on\":[\"a\"]}]");
	const struct action_node *d = dag_find_node(dag, "d");

	assert_next(dag_start(dag), "a");
	assert_next(dag_find_node(dag, "a"), "b,c");
	assert_deps(d, "c,b");
	assert_next(dag_find_node(dag, "b"), "d");
	assert_next(dag_find_node(dag, "c"), "d");
	assert_names(dag_topological(dag), 4, "a,b,c,d");
	assert_int_equal(node_wait_seconds(dag_find_node(dag, "c")), 2);
	assert_int_equal(node_type(dag_find_node(dag, "a")), ACTION_APPROVAL);
}

static void test_multiple_roots(void **state)
{
	/* depends_on: [] makes a stage a root; the start node fans out to every root */
	_cleanup_dag_ struct action_dag *dag = plan_ok(
		"[{\"name\":\"x\",\"type\":\"wait\",\"wait\":{\"seconds\":0}},"
		"{\"name\":\"y\",\"type\":\"wait\",\"wait\":{\"seconds\":0},\"depends_on\":[]},"
		"{\"name\":\"z\",\"type\":\"wait\",\"wait\":{\"seconds\":0}}]");

	assert_next(dag_start(dag), "x,y");
	assert_deps(dag_find_node(dag, "y"), "");
	assert_deps(dag_find_node(dag, "z"), "y");
	assert_next(dag_find_node(dag, "x"), "");
	assert_names(dag_topological(dag), 3, "x,y,z");
}

static void test_explicit_overrides_implicit(void **state)
{
	/* c depends on a only (not on b, listed before it) */
	_cleanup_dag_ struct action_dag *dag = plan_ok(
		"[{\"name\":\"a\",\"type\":\"wait\",\"wait\":{\"seconds\":0}},"
		"{\"name\":\"b\",\"type\":\"wait\",\"wait\":{\"seconds\":0}},"
		"{\"name\":\"c\",\"type\":\"wait\",\"wait\":{\"seconds\":0},\"depends_on\":[\"a\"]}]");

	assert_deps(dag_find_node(dag, "c"), "a");
	assert_next(dag_find_node(dag, "a"), "b,c");
	assert_next(dag_find_node(dag, "b"), "");
}

static void test_forward_reference(void **state)
{
	/* depends_on may name a stage listed later */
	_cleanup_dag_ struct action_dag *dag = plan_ok(
		"[{\"name\":\"late\",\"type\":\"wait\",\"wait\":{\"seconds\":0},\"depends_on\":[\"early\"]},"
		"{\"name\":\"early\",\"type\":\"wait\",\"wait\":{\"seconds\":0},\"depends_on\":[]}]");

	assert_next(dag_start(dag), "early");
	assert_names(dag_topological(dag), 2, "early,late");
}

static void test_types_roundtrip(void **state)
{
	enum action_type t;

	for (t = ACTION_BUILD; t < _ACTION_TYPE_MAX; t++) {
		enum action_type back;

		assert_int_equal(action_type_from_string(action_type_to_string(t), &back), 0);
		assert_int_equal(back, t);
	}
	assert_int_equal(action_type_from_string("start", &t), -EINVAL);
	assert_int_equal(action_type_from_string("Build", &t), -EINVAL);
	assert_int_equal(action_type_from_string(NULL, &t), -EINVAL);
	assert_null(action_type_to_string(_ACTION_TYPE_MAX));
	assert_string_equal(action_type_to_string(ACTION_START), "start");
}

static void test_timeout_param(void **state)
{
	_cleanup_dag_ struct action_dag *dag = plan_ok(
		"[{\"name\":\"a\",\"type\":\"wait\",\"wait\":{\"seconds\":0},\"timeout_s\":30},"
		"{\"name\":\"b\",\"type\":\"approval\"}]");

	assert_int_equal(node_timeout_seconds(dag_find_node(dag, "a")), 30);
	assert_int_equal(node_timeout_seconds(dag_find_node(dag, "b")), 0);
	assert_int_equal(node_wait_seconds(dag_find_node(dag, "b")), 0);
	plan_fails("[{\"name\":\"a\",\"type\":\"approval\",\"timeout_s\":0}]",
		   "timeout_s must be a positive integer");
}

static void test_refusals(void **state)
{
	plan_fails("{}", "schema must be an array");
	plan_fails("[]", "no stages");
	plan_fails("[1]", "stage 0: not an object");
	plan_fails("[{\"type\":\"approval\"}]", "stage 0: name missing");
	plan_fails("[{\"name\":\"\",\"type\":\"approval\"}]", "stage 0: name missing");
	plan_fails("[{\"name\":\"a\"}]", "unknown type \"(missing)\"");
	plan_fails("[{\"name\":\"a\",\"type\":\"deploy\"}]", "unknown type \"deploy\"");
	plan_fails("[{\"name\":\"a\",\"type\":\"start\"}]", "unknown type \"start\"");
	plan_fails(
		"[{\"name\":\"a\",\"type\":\"approval\"},{\"name\":\"a\",\"type\":\"approval\"}]",
		"stage 1: duplicate name \"a\"");
	plan_fails("[{\"name\":\"a\",\"type\":\"build\"}]", "build_targets must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[]}]",
		   "build_targets must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[\"//a:b\",3]}]",
		   "build_targets must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"test\"}]", "test_target must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"test\",\"test_target\":[]}]",
		   "test_target must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"job\",\"spec\":\"\"}]", "spec must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"wait\"}]", "wait.seconds must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"wait\",\"wait\":{\"seconds\":-1}}]",
		   "wait.seconds must be");
	plan_fails("[{\"name\":\"a\",\"type\":\"approval\",\"depends_on\":\"b\"}]",
		   "depends_on must be an array");
	plan_fails("[{\"name\":\"a\",\"type\":\"approval\",\"depends_on\":[\"nope\"]}]",
		   "depends_on names unknown stage \"nope\"");
	plan_fails("[{\"name\":\"a\",\"type\":\"approval\"},"
		   "{\"name\":\"b\",\"type\":\"approval\",\"depends_on\":[\"a\",\"a\"]}]",
		   "lists \"a\" twice");
}

static void test_cycles_named(void **state)
{
	plan_fails("[{\"name\":\"a\",\"type\":\"approval\",\"depends_on\":[\"a\"]}]",
		   "cycle in depends_on: a -> a");
	/* a (root) <- b <- c <- d, and b depends on d too: cycle b -> d -> c -> b */
	plan_fails("[{\"name\":\"a\",\"type\":\"approval\"},"
		   "{\"name\":\"b\",\"type\":\"approval\",\"depends_on\":[\"a\",\"d\"]},"
		   "{\"name\":\"c\",\"type\":\"approval\"},"
		   "{\"name\":\"d\",\"type\":\"approval\"}]",
		   "cycle in depends_on: b -> d -> c -> b");
	/* a tail hanging off the cycle is not part of the message */
	plan_fails("[{\"name\":\"t\",\"type\":\"approval\",\"depends_on\":[\"x\"]},"
		   "{\"name\":\"x\",\"type\":\"approval\",\"depends_on\":[\"y\"]},"
		   "{\"name\":\"y\",\"type\":\"approval\",\"depends_on\":[\"x\"]}]",
		   "cycle in depends_on: x -> y -> x");
}

static void test_long_name_refused(void **state)
{
	_cleanup_free_ char *name = malloc(PLANNER_MAX_NAME + 2);
	_cleanup_free_ char *doc = NULL;

	assert_non_null(name);
	memset(name, 'n', PLANNER_MAX_NAME + 1);
	name[PLANNER_MAX_NAME + 1] = '\0';
	assert_true(asprintf(&doc, "[{\"name\":\"%s\",\"type\":\"approval\"}]", name) > 0);
	plan_fails(doc, "longer than");
}

/* A 10,000-stage chain with a fan-in at the end: builds the planner's biggest realistic case
 * and checks every edge, which also exercises the name table under load. */
static void test_large_dag(void **state)
{
	const size_t n = 10000;
	json_t *schema = json_array();
	_cleanup_dag_ struct action_dag *dag = NULL;
	struct cd_error err = { 0 };
	const struct action_node *const *topo;
	json_t *last_deps = json_array();

	assert_non_null(schema);
	for (size_t i = 0; i < n; i++) {
		char name[32];
		json_t *st;

		snprintf(name, sizeof(name), "stage-%zu", i);
		st = json_pack("{s:s, s:s, s:{s:i}}", "name", name, "type", "wait", "wait",
			       "seconds", 0);
		assert_non_null(st);
		if (i % 1000 == 999)
			assert_int_equal(json_array_append_new(last_deps, json_string(name)), 0);
		assert_int_equal(json_array_append_new(schema, st), 0);
	}
	assert_int_equal(json_array_append_new(schema, json_pack("{s:s, s:s, s:o}", "name",
								 "fan-in", "type", "approval",
								 "depends_on", last_deps)),
			 0);
	assert_int_equal(planner_plan(NULL, schema, &dag, &err), 0);
	json_decref(schema);

	assert_int_equal(dag_n_nodes(dag), n + 1);
	assert_null(dag_pipeline_id(dag));
	topo = dag_topological(dag);
	for (size_t i = 0; i < n; i++) {
		char name[32];
		const struct action_node *node;

		snprintf(name, sizeof(name), "stage-%zu", i);
		node = dag_find_node(dag, name);
		assert_non_null(node);
		assert_int_equal(node_index(node), i);
		assert_ptr_equal(topo[i], node);
	}
	assert_deps(dag_find_node(dag, "fan-in"),
		    "stage-999,stage-1999,stage-2999,stage-3999,stage-4999,stage-5999,stage-6999,"
		    "stage-7999,stage-8999,stage-9999");
	assert_next(dag_find_node(dag, "stage-999"), "stage-1000,fan-in");
	assert_ptr_equal(topo[n], dag_find_node(dag, "fan-in"));
}

/* Reference counting: the DAG (and the schema strings its nodes borrow) lives until the last
 * dag_free(); under ASan a premature free is a use after free here. */
static void test_dag_refcount(void **state)
{
	struct action_dag *dag = plan_ok(seed_schema), *other;

	other = dag_ref(dag);
	assert_ptr_equal(other, dag);
	assert_null(dag_free(dag));
	assert_string_equal(node_name(dag_node(other, 0)), "Code Build");
	assert_int_equal(dag_n_nodes(other), 4);
	assert_null(dag_free(other));
	assert_null(dag_ref(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_example),
		cmocka_unit_test(test_diamond),
		cmocka_unit_test(test_multiple_roots),
		cmocka_unit_test(test_explicit_overrides_implicit),
		cmocka_unit_test(test_forward_reference),
		cmocka_unit_test(test_types_roundtrip),
		cmocka_unit_test(test_timeout_param),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_cycles_named),
		cmocka_unit_test(test_long_name_refused),
		cmocka_unit_test(test_large_dag),
		cmocka_unit_test(test_dag_refcount),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
