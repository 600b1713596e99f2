/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for api/pipeline: the seed's example, validation with pointers (names, types,
 * params, depends_on, cycles), dependency resolution, topological order, round trip. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/json.h"
#include "api/pipeline.h"
#include "lib/fs.h"
#include "lib/str.h"
#include "tests/unit/alloc_fault.h"

struct want {
	const char *pointer;
	const char *message; /* substring */
};

/* The seed's example pipeline, converted to JSON (also docs/examples/fooservice.pipeline.json
 * and the fuzz corpus). */
static const char *fooservice =
	"{\"name\":\"FooService\",\"owner\":\"foo_team\",\"schema\":["
	"{\"name\":\"Code Build\",\"type\":\"build\",\"build_targets\":["
	"\"//repo/foo_service:main\",\"//repo/foo_service:tests\"]},"
	"{\"name\":\"Service Tests\",\"type\":\"test\",\"test_target\":\"//repo/foo_service:tests\"},"
	"{\"name\":\"us-east-1 deployment\",\"type\":\"job\","
	"\"spec\":\"//repo/foo_service/specs:north_america\"},"
	"{\"name\":\"eu-west-1 deployment\",\"depends_on\":[\"us-east-1 deployment\"],"
	"\"type\":\"job\",\"spec\":\"//repo/foo_service/specs:eu\"}]}";

static struct pipeline *decode_ok(const char *text)
{
	struct pipeline *pl = NULL;
	struct problem p;
	int r;

	problem_init(&p, 0, NULL, NULL);
	r = pipeline_from_string(text, strlen(text), &pl, &p);
	if (r != 0) {
		char *dump = problem_to_string(&p);

		fail_msg("decode failed %d: %s", r, dump);
	}
	problem_release(&p);
	return pl;
}

static void check_problem(struct problem *p, const struct want *w, size_t n)
{
	char *dump = problem_to_string(p);

	assert_non_null(dump);
	if (p->status != 422)
		fail_msg("status %d: %s", p->status, dump);
	for (size_t i = 0; i < n; i++) {
		bool found = false;

		for (size_t k = 0; k < p->n_errors && !found; k++)
			found = strcmp(p->errors[k].pointer, w[i].pointer) == 0 &&
				strstr(p->errors[k].message, w[i].message);
		if (!found)
			fail_msg("no error {%s: ...%s...} in %s", w[i].pointer, w[i].message, dump);
	}
	if (p->n_errors != n)
		fail_msg("expected %zu errors, got %zu: %s", n, p->n_errors, dump);
	free(dump);
}

static void decode_bad_n(const char *text, const struct want *w, size_t n)
{
	struct pipeline *pl = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_from_string(text, strlen(text), &pl, &p), -EINVAL);
	assert_null(pl);
	check_problem(&p, w, n);
	problem_release(&p);
}
#define decode_bad(text, ...)                                                                      \
	do {                                                                                       \
		const struct want _w[] = { __VA_ARGS__ };                                          \
		decode_bad_n(text, _w, sizeof(_w) / sizeof(_w[0]));                                \
	} while (0)

/* A pipeline around a schema text. */
#define PL(schema) "{\"name\":\"P\",\"owner\":\"team\",\"schema\":" schema "}"
#define APPROVAL(n) "{\"name\":\"" n "\",\"type\":\"approval\"}"
#define APPROVAL_DEPS(n, deps) "{\"name\":\"" n "\",\"type\":\"approval\",\"depends_on\":" deps "}"

static void assert_deps(const struct pipeline_schema *s, size_t i, const size_t *want, size_t n)
{
	const size_t *deps;

	assert_int_equal(pipeline_stage_deps(s, i, &deps), n);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(deps[k], want[k]);
}

static void assert_topo(const struct pipeline_schema *s, const size_t *want)
{
	const size_t *topo = pipeline_topo_order(s);

	for (size_t k = 0; k < s->n_stages; k++)
		if (topo[k] != want[k])
			fail_msg("topo[%zu] = %zu, want %zu", k, topo[k], want[k]);
}

static void test_seed_example(void **state)
{
	struct pipeline *pl = decode_ok(fooservice);
	const struct pipeline_schema *s = pl->schema;
	const struct pipeline_stage *st = s->stages;

	assert_string_equal(pl->name, "FooService");
	assert_string_equal(pl->owner, "foo_team");
	assert_null(pl->repo);
	assert_null(pl->branch);
	assert_int_equal(s->n_stages, 4);
	assert_string_equal(st[0].name, "Code Build");
	assert_int_equal(st[0].type, PIPELINE_STAGE_BUILD);
	assert_int_equal(st[0].n_build_targets, 2);
	assert_string_equal(st[0].build_targets[0].package, "repo/foo_service");
	assert_string_equal(st[0].build_targets[1].name, "tests");
	assert_int_equal(st[1].type, PIPELINE_STAGE_TEST);
	assert_string_equal(st[1].test_target.name, "tests");
	assert_int_equal(st[2].type, PIPELINE_STAGE_JOB);
	assert_string_equal(st[2].spec.package, "repo/foo_service/specs");
	assert_string_equal(st[2].spec.name, "north_america");
	assert_string_equal(st[3].spec.name, "eu");
	assert_true(st[3].has_depends_on);
	assert_false(st[2].has_depends_on);
	/* implicit: each depends on the one before; the last explicitly on us-east-1 */
	assert_deps(s, 0, NULL, 0);
	assert_deps(s, 1, (size_t[]){ 0 }, 1);
	assert_deps(s, 2, (size_t[]){ 1 }, 1);
	assert_deps(s, 3, (size_t[]){ 2 }, 1);
	assert_topo(s, (size_t[]){ 0, 1, 2, 3 });
	assert_int_equal(pipeline_find_stage(s, "eu-west-1 deployment"), 3);
	assert_int_equal(pipeline_find_stage(s, "nope"), -ENOENT);
	pipeline_free(pl);
}

static void test_seed_example_file(void **state)
{
	char *text = NULL;
	size_t len;
	struct pipeline *a = decode_ok(fooservice), *b = NULL;
	struct problem p;

	/* tests run from the source tree's top (make, tests/check.sh) */
	assert_int_equal(fs_read_file_at(AT_FDCWD, "docs/examples/fooservice.pipeline.json",
					 API_JSON_MAX_BYTES, &text, &len),
			 0);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_from_string(text, len, &b, &p), 0);
	assert_true(pipeline_equal(a, b));
	problem_release(&p);
	pipeline_free(a);
	pipeline_free(b);
	free(text);
}

static void roundtrip(const char *text)
{
	struct pipeline *a = decode_ok(text), *b;
	char *t1 = NULL, *t2 = NULL;

	assert_int_equal(pipeline_to_string(a, &t1), 0);
	b = decode_ok(t1);
	assert_int_equal(pipeline_to_string(b, &t2), 0);
	assert_string_equal(t1, t2);
	assert_true(pipeline_equal(a, b));
	for (size_t i = 0; i < a->schema->n_stages; i++) {
		const size_t *da, *db;
		size_t na = pipeline_stage_deps(a->schema, i, &da);

		assert_int_equal(pipeline_stage_deps(b->schema, i, &db), na);
		if (na)
			assert_memory_equal(da, db, na * sizeof(size_t));
	}
	free(t1);
	free(t2);
	pipeline_free(a);
	pipeline_free(b);
}

static void test_roundtrip(void **state)
{
	roundtrip(fooservice);
	roundtrip(PL("[" APPROVAL("a") "," APPROVAL_DEPS("b", "[]") "]"));
	roundtrip("{\"name\":\"P\",\"owner\":\"t\",\"repo\":\"https://git.example/foo.git\","
		  "\"branch\":\"release/1.x\",\"schema\":[{\"name\":\"w\",\"type\":\"wait\","
		  "\"wait\":{\"seconds\":0},\"timeout_s\":60}]}");
}

static void test_canonical_text(void **state)
{
	struct pipeline *pl = decode_ok(PL(
		"[{\"type\":\"test\",\"name\":\"t\",\"test_target\":\"//a/b\",\"depends_on\":[]}]"));
	char *t = NULL;

	assert_int_equal(pipeline_to_string(pl, &t), 0);
	assert_string_equal(t, "{\"name\":\"P\",\"owner\":\"team\",\"schema\":[{\"depends_on\":[],"
			       "\"name\":\"t\",\"test_target\":\"//a/b:b\",\"type\":\"test\"}]}");
	free(t);
	pipeline_free(pl);
}

static void test_parallel_and_topo(void **state)
{
	/* a; b: [] (parallel to a); c: implicit → b; d: [a, c]; e: [] */
	struct pipeline *pl = decode_ok(PL(
		"[" APPROVAL("a") "," APPROVAL_DEPS("b", "[]") "," APPROVAL("c") "," APPROVAL_DEPS(
			"d", "[\"c\",\"a\"]") "," APPROVAL_DEPS("e", "[]") "]"));
	const struct pipeline_schema *s = pl->schema;

	assert_deps(s, 0, NULL, 0);
	assert_deps(s, 1, NULL, 0);
	assert_deps(s, 2, (size_t[]){ 1 }, 1);
	assert_deps(s, 3, (size_t[]){ 2, 0 }, 2);
	assert_deps(s, 4, NULL, 0);
	assert_topo(s, (size_t[]){ 0, 1, 2, 3, 4 });
	pipeline_free(pl);

	/* a stage listed first may depend on a later one: order follows dependencies */
	pl = decode_ok(PL("[" APPROVAL_DEPS("x", "[\"z\"]") "," APPROVAL_DEPS(
		"y", "[]") "," APPROVAL_DEPS("z", "[\"y\"]") "]"));
	assert_topo(pl->schema, (size_t[]){ 1, 2, 0 });
	pipeline_free(pl);
}

static void test_duplicate_names(void **state)
{
	decode_bad(PL("[" APPROVAL("a") "," APPROVAL("b") "," APPROVAL("a") "," APPROVAL("a") "]"),
		   { "/schema/2/name", "duplicate stage name \"a\" (first at index 0)" },
		   { "/schema/3/name", "duplicate stage name \"a\" (first at index 0)" });
}

static void test_unknown_type(void **state)
{
	decode_bad(PL("[{\"name\":\"a\",\"type\":\"deploy\"},{\"name\":\"b\"},"
		      "{\"name\":\"c\",\"type\":7}]"),
		   { "/schema/0/type",
		     "must be one of build, test, job, approval, wait (is \"deploy\")" },
		   { "/schema/1/type", "is required" },
		   { "/schema/2/type", "must be a string, not integer" });
}

static void test_params_missing(void **state)
{
	decode_bad(PL("[{\"name\":\"a\",\"type\":\"build\"},{\"name\":\"b\",\"type\":\"test\"},"
		      "{\"name\":\"c\",\"type\":\"job\"},{\"name\":\"d\",\"type\":\"wait\"},"
		      "{\"name\":\"e\",\"type\":\"build\",\"build_targets\":[]}]"),
		   { "/schema/0/build_targets", "is required" },
		   { "/schema/1/test_target", "is required" }, { "/schema/2/spec", "is required" },
		   { "/schema/3/wait", "is required" },
		   { "/schema/4/build_targets", "must not be empty" });
}

static void test_params_of_other_type(void **state)
{
	decode_bad(PL("[{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[\"//a:b\"],"
		      "\"spec\":\"//x:y\"},{\"name\":\"b\",\"type\":\"approval\",\"test_target\":"
		      "\"//a:t\",\"wait\":{\"seconds\":1}}]"),
		   { "/schema/0/spec", "only valid for stages of type \"job\" (this stage is "
				       "\"build\")" },
		   { "/schema/1/test_target", "only valid for stages of type \"test\"" },
		   { "/schema/1/wait", "only valid for stages of type \"wait\"" });
}

static void test_bad_targets(void **state)
{
	decode_bad(
		PL("[{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[\"//ok:x\","
		   "\"//bad/../x:y\",3,\"//ok:x\",\"//ok\",\"\"]},"
		   "{\"name\":\"b\",\"type\":\"test\",\"test_target\":\"repo:t\"},"
		   "{\"name\":\"c\",\"type\":\"job\",\"spec\":\"//s:eu@0123456789abcdef0123456789"
		   "abcdef01234567\"}]"),
		{ "/schema/0/build_targets/1", "segment 2 must not be \"..\"" },
		{ "/schema/0/build_targets/2", "must be a string, not integer" },
		{ "/schema/0/build_targets/3", "duplicate build target //ok:x" },
		{ "/schema/0/build_targets/5", "must not be empty" },
		{ "/schema/1/test_target", "must start with \"//\"" },
		{ "/schema/2/spec", "without \"@<commit>\"" });
}

static void test_depends_on_errors(void **state)
{
	decode_bad(
		PL("[" APPROVAL("a") "," APPROVAL_DEPS(
			"b", "[\"a\",\"zz\",\"b\",\"a\",\"\",1]") "," APPROVAL_DEPS("c",
										    "\"a\"") "]"),
		{ "/schema/1/depends_on/1", "unknown stage \"zz\"" },
		{ "/schema/1/depends_on/2", "must not depend on itself" },
		{ "/schema/1/depends_on/3", "duplicate dependency \"a\"" },
		{ "/schema/1/depends_on/4", "must not be empty" },
		{ "/schema/1/depends_on/5", "must be a string, not integer" },
		{ "/schema/2/depends_on", "must be an array, not string" });
}

static void test_cycle_explicit(void **state)
{
	decode_bad(PL("[" APPROVAL_DEPS("a", "[\"b\"]") "," APPROVAL_DEPS("b", "[\"a\"]") "]"),
		   { "/schema/0/depends_on", "dependency cycle: a -> b -> a (read" });
	decode_bad(PL("[" APPROVAL("start") "," APPROVAL_DEPS("x", "[\"z\"]") "," APPROVAL_DEPS(
			   "y", "[\"x\"]") "," APPROVAL_DEPS("z", "[\"y\"]") "]"),
		   { "/schema/1/depends_on", "dependency cycle: x -> z -> y -> x" });
}

static void test_cycle_implicit(void **state)
{
	/* b (no depends_on) depends on a, which depends on b */
	decode_bad(PL("[" APPROVAL_DEPS("a", "[\"b\"]") "," APPROVAL("b") "]"),
		   { "/schema/0/depends_on",
		     "a -> b -> a (read \"a -> b\" as \"a depends on b\"; a stage without "
		     "depends_on depends on the one listed before it)" });
}

static void test_two_cycles(void **state)
{
	decode_bad(
		PL("[" APPROVAL_DEPS("a", "[\"b\"]") "," APPROVAL_DEPS(
			"b",
			"[\"a\"]") "," APPROVAL_DEPS("c",
						     "[\"d\"]") "," APPROVAL_DEPS("d",
										  "[\"c\"]") "]"),
		{ "/schema/0/depends_on", "a -> b -> a" },
		{ "/schema/2/depends_on", "c -> d -> c" });
}

static void test_long_cycle_elided(void **state)
{
	/* s0 depends on s19; every other stage implicitly on the previous one: a cycle of 20 */
	struct strbuf sb = STRBUF_INIT;
	struct pipeline *pl = NULL;
	struct problem p;

	strbuf_adds(&sb, "{\"name\":\"P\",\"owner\":\"t\",\"schema\":[");
	for (int i = 0; i < 20; i++)
		strbuf_addf(&sb, "%s{\"name\":\"s%d\",\"type\":\"approval\"%s}", i ? "," : "", i,
			    i == 0 ? ",\"depends_on\":[\"s19\"]" : "");
	strbuf_adds(&sb, "]}");
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_from_string(sb.buf, sb.len, &pl, &p), -EINVAL);
	assert_int_equal(p.n_errors, 1);
	assert_string_equal(p.errors[0].pointer, "/schema/0/depends_on");
	assert_non_null(strstr(p.errors[0].message,
			       "dependency cycle: s0 -> s19 -> s18 -> s17 -> (13 more) -> s3 -> s2 "
			       "-> s1 -> s0"));
	problem_release(&p);
	strbuf_release(&sb);
}

static void test_wait_and_timeout(void **state)
{
	struct pipeline *pl;

	decode_bad(PL("[{\"name\":\"w\",\"type\":\"wait\",\"wait\":{}},"
		      "{\"name\":\"x\",\"type\":\"wait\",\"wait\":{\"seconds\":-1,\"jitter\":1}},"
		      "{\"name\":\"y\",\"type\":\"wait\",\"wait\":30},"
		      "{\"name\":\"z\",\"type\":\"approval\",\"timeout_s\":0}]"),
		   { "/schema/0/wait/seconds", "is required" },
		   { "/schema/1/wait/seconds", "between 0 and 604800 (is -1)" },
		   { "/schema/1/wait/jitter", "unknown field" },
		   { "/schema/2/wait", "must be an object, not integer" },
		   { "/schema/3/timeout_s", "between 1 and 604800 (is 0)" });
	pl = decode_ok(PL("[{\"name\":\"w\",\"type\":\"wait\",\"wait\":{\"seconds\":604800},"
			  "\"timeout_s\":5}]"));
	assert_int_equal(pl->schema->stages[0].wait_seconds, 604800);
	assert_int_equal(pl->schema->stages[0].timeout_s, 5);
	pipeline_free(pl);
}

static void test_stage_shape(void **state)
{
	decode_bad(PL("[[],\"x\",{\"name\":\"a\",\"type\":\"approval\",\"retries\":3},"
		      "{\"name\":\" pad\",\"type\":\"approval\"},{\"name\":\"tab\\there\","
		      "\"type\":\"approval\"}]"),
		   { "/schema/0", "must be an object, not array" },
		   { "/schema/1", "must be an object, not string" },
		   { "/schema/2/retries", "unknown field (known: name, type, depends_on" },
		   { "/schema/3/name", "must not start or end with a space" },
		   { "/schema/4/name", "must not contain control characters" });
}

static void test_unknown_reference_with_bad_names(void **state)
{
	/* a stage without a usable name does not stop unknown references being reported, and
	 * references to an invalid-but-present name are not reported twice */
	decode_bad(PL("[{\"name\":\" a\",\"type\":\"approval\"},{\"type\":\"approval\"},"
		      "{\"name\":\"c\",\"type\":\"approval\",\"depends_on\":[\" a\",\"nope\"]}]"),
		   { "/schema/0/name", "must not start or end with a space" },
		   { "/schema/1/name", "is required" },
		   { "/schema/2/depends_on/1", "unknown stage \"nope\"" });
}

static void test_top_level(void **state)
{
	decode_bad("{}", { "/name", "is required" }, { "/owner", "is required" },
		   { "/schema", "is required" });
	decode_bad("{\"name\":\"P\",\"owner\":\"foo team\",\"schema\":[],\"id\":1}",
		   { "/owner", "must hold only A-Z a-z 0-9 _ . - (is \"foo team\")" },
		   { "/schema", "must have 1 to 100000 stages (has 0)" },
		   { "/id", "unknown field (known: name, owner, schema, repo, branch)" });
	decode_bad("{\"name\":\"\",\"owner\":\"t\",\"schema\":{}}",
		   { "/name", "must not be empty" }, { "/schema", "must be an array, not object" });
	decode_bad("[1]", { "", "must be an object, not array" });
}

static void test_repo_branch(void **state)
{
	struct pipeline *pl;

	pl = decode_ok("{\"name\":\"P\",\"owner\":\"t\",\"repo\":\"/srv/git/foo\",\"schema\":["
		       "{\"name\":\"a\",\"type\":\"approval\"}]}");
	assert_string_equal(pl->repo, "/srv/git/foo");
	assert_string_equal(pl->branch, "main");
	pipeline_free(pl);
	decode_bad("{\"name\":\"P\",\"owner\":\"t\",\"branch\":\"main\",\"schema\":[" APPROVAL(
			   "a") "]}",
		   { "/branch", "needs \"repo\"" });
	decode_bad(
		"{\"name\":\"P\",\"owner\":\"t\",\"repo\":\"--upload-pack=x\",\"branch\":\"a..b\","
		"\"schema\":[" APPROVAL("a") "]}",
		{ "/repo", "must not start with '-'" }, { "/branch", "must not contain \"..\"" });
	decode_bad("{\"name\":\"P\",\"owner\":\"t\",\"repo\":\"a b\",\"branch\":\"-x\","
		   "\"schema\":[" APPROVAL("a") "]}",
		   { "/repo", "must not contain spaces" },
		   { "/branch", "must not start with '-'" });
	decode_bad("{\"name\":\"P\",\"owner\":\"t\",\"repo\":\"r\",\"branch\":\"x.lock\","
		   "\"schema\":[" APPROVAL("a") "]}",
		   { "/branch", "must not end with" });
	decode_bad("{\"name\":\"P\",\"owner\":\"t\",\"repo\":\"r\",\"branch\":\"a~1\","
		   "\"schema\":[" APPROVAL("a") "]}",
		   { "/branch", "must hold only" });
}

static void test_schema_alone(void **state)
{
	const char *t = "[" APPROVAL("a") "," APPROVAL_DEPS("b", "[\"c\"]") "]";
	struct pipeline_schema *s = NULL;
	struct problem p;
	json_t *j = NULL;
	char *dump;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_schema_from_string(t, strlen(t), &s, &p), -EINVAL);
	check_problem(&p, (struct want[]){ { "/1/depends_on/0", "unknown stage \"c\"" } }, 1);
	problem_release(&p);

	t = "[" APPROVAL("a") "," APPROVAL("b") "]";
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_schema_from_string(t, strlen(t), &s, &p), 0);
	assert_int_equal(s->n_stages, 2);
	assert_int_equal(pipeline_schema_to_json(s, &j), 0);
	dump = api_json_dump_canonical(j);
	assert_string_equal(dump, "[{\"name\":\"a\",\"type\":\"approval\"},{\"name\":\"b\","
				  "\"type\":\"approval\"}]");
	free(dump);
	json_decref(j);
	pipeline_schema_free(s);
	problem_release(&p);

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_schema_from_string("{}", 2, &s, &p), -EINVAL);
	check_problem(&p, (struct want[]){ { "", "must be an array of stages, not object" } }, 1);
	problem_release(&p);
}

static void test_large_dag(void **state)
{
	/* 10,000 stages: a chain with every 10th stage also depending on stage 0 — validated in
	 * O(n log n), topological order = list order */
	struct strbuf sb = STRBUF_INIT;
	struct pipeline_schema *s = NULL;
	struct problem p;
	const size_t n = 10000;
	const size_t *topo;

	strbuf_adds(&sb, "[");
	for (size_t i = 0; i < n; i++) {
		strbuf_addf(&sb, "%s{\"name\":\"s%zu\",\"type\":\"wait\",\"wait\":{\"seconds\":0}",
			    i ? "," : "", i);
		if (i > 0 && i % 10 == 0)
			strbuf_addf(&sb, ",\"depends_on\":[\"s%zu\",\"s0\"]", i - 1);
		strbuf_adds(&sb, "}");
	}
	strbuf_adds(&sb, "]");
	assert_true(sb.len < API_JSON_MAX_BYTES);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_schema_from_string(sb.buf, sb.len, &s, &p), 0);
	topo = pipeline_topo_order(s);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(topo[i], i);
	assert_deps(s, 20, (size_t[]){ 19, 0 }, 2);
	assert_int_equal(pipeline_find_stage(s, "s9999"), 9999);
	pipeline_schema_free(s);
	problem_release(&p);
	strbuf_release(&sb);
}

static void test_every_error_reported(void **state)
{
	decode_bad("{\"name\":\"P\",\"owner\":\"t!\",\"extra\":true,\"schema\":["
		   "{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[\"x\"]},"
		   "{\"name\":\"a\",\"type\":\"nope\"},"
		   "{\"name\":\"c\",\"type\":\"job\",\"spec\":\"//s:x\",\"depends_on\":[\"q\"]}]}",
		   { "/owner", "must hold only" }, { "/extra", "unknown field" },
		   { "/schema/0/build_targets/0", "must start with" },
		   { "/schema/1/name", "duplicate stage name" },
		   { "/schema/1/type", "must be one of" },
		   { "/schema/2/depends_on/0", "unknown stage \"q\"" });
}

static void test_body_errors(void **state)
{
	struct pipeline *pl = NULL;
	struct problem p;
	const char dup[] = "{\"name\":\"P\",\"name\":\"Q\"}";
	const char utf8[] = "{\"name\":\"\xed\xa0\x80\"}"; /* a UTF-16 surrogate in UTF-8 */

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_from_string(dup, sizeof(dup) - 1, &pl, &p), -EINVAL);
	assert_int_equal(p.status, 400);
	assert_non_null(strstr(p.errors[0].message, "duplicate object key"));
	problem_release(&p);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_from_string(utf8, sizeof(utf8) - 1, &pl, &p), -EINVAL);
	assert_int_equal(p.status, 400);
	assert_non_null(strstr(p.errors[0].message, "invalid UTF-8"));
	problem_release(&p);
}

static void test_to_json_invalid(void **state)
{
	struct pipeline *pl = decode_ok(fooservice);
	json_t *j = NULL;

	pl->schema->stages[1].type = (enum pipeline_stage_type)99;
	assert_int_equal(pipeline_to_json(pl, &j), -EINVAL);
	pl->schema->stages[1].type = PIPELINE_STAGE_TEST;
	strcpy(pl->schema->stages[1].test_target.name, "");
	assert_int_equal(pipeline_to_json(pl, &j), -EINVAL);
	assert_null(j);
	pipeline_free(pl);
	pipeline_free(NULL);
	pipeline_schema_free(NULL);
}

static void test_stage_type_strings(void **state)
{
	enum pipeline_stage_type t;

	assert_int_equal(pipeline_stage_type_from_string("approval", &t), 0);
	assert_int_equal(t, PIPELINE_STAGE_APPROVAL);
	assert_int_equal(pipeline_stage_type_from_string("Build", &t), -EINVAL);
	assert_string_equal(pipeline_stage_type_to_string(PIPELINE_STAGE_WAIT), "wait");
	assert_null(pipeline_stage_type_to_string(_PIPELINE_STAGE_MAX));
}

static void test_base_pointer_and_null(void **state)
{
	json_t *body = json_pack("{s:{s:s, s:s, s:[{s:s, s:s, s:[s]}]}}", "pipeline", "name", "P",
				 "owner", "t", "schema", "name", "a", "type", "approval",
				 "depends_on", "a");
	struct pipeline *pl = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(pipeline_from_json_at(json_object_get(body, "pipeline"), "/pipeline", &pl,
					       &p),
			 -EINVAL);
	check_problem(&p,
		      (struct want[]){
			      { "/pipeline/schema/0/depends_on/0", "must not depend on itself" } },
		      1);
	problem_release(&p);
	json_decref(body);

	/* null depends_on means absent: the implicit dependency applies */
	pl = decode_ok(PL("[" APPROVAL("a") "," APPROVAL_DEPS("b", "null") "]"));
	assert_false(pl->schema->stages[1].has_depends_on);
	assert_deps(pl->schema, 1, (size_t[]){ 0 }, 1);
	pipeline_free(pl);
}

static void test_build_targets_cap(void **state)
{
	struct strbuf sb = STRBUF_INIT;

	strbuf_adds(&sb, "{\"name\":\"P\",\"owner\":\"t\",\"schema\":[{\"name\":\"b\",\"type\":"
			 "\"build\",\"build_targets\":[");
	for (int i = 0; i < PIPELINE_MAX_BUILD_TARGETS + 1; i++)
		strbuf_addf(&sb, "%s\"//t:n%d\"", i ? "," : "", i);
	strbuf_adds(&sb, "]}]}");
	decode_bad(sb.buf, { "/schema/0/build_targets", "at most 256 items (has 257)" });
	strbuf_release(&sb);
}

/* Every allocation failure point: -ENOMEM (or the expected result), never a crash or a leak. */
static long alloc_failures(const char *text, int want)
{
	for (long n = 0;; n++) {
		struct pipeline *pl = NULL;
		struct problem p;
		int r;

		problem_init(&p, 0, NULL, NULL);
		alloc_fault_arm(n);
		r = pipeline_from_string(text, strlen(text), &pl, &p);
		if (!alloc_fault_disarm()) {
			assert_int_equal(r, want);
			pipeline_free(pl);
			problem_release(&p);
			return n;
		}
		if (r != -ENOMEM && r != want)
			fail_msg("allocation %ld failed: got %d", n, r);
		if (r == 0)
			assert_int_equal(pl->schema->n_stages, 4);
		pipeline_free(pl);
		problem_release(&p);
	}
}

static void test_allocation_failures(void **state)
{
	assert_true(alloc_failures(fooservice, 0) > 20);
	/* a cycle and bad references: the error paths allocate too */
	assert_true(alloc_failures(PL("[" APPROVAL_DEPS("a", "[\"b\"]") "," APPROVAL_DEPS(
					   "b", "[\"a\"]") "," APPROVAL("c") "," APPROVAL("d") "]"),
				   -EINVAL) > 5);
	assert_true(alloc_failures("{\"name\":\"P\",\"owner\":\"t\",\"repo\":\"r\",\"schema\":["
				   "{\"name\":\"a\",\"type\":\"build\",\"build_targets\":[\"x\"]},"
				   "{\"name\":\"a\",\"type\":\"test\",\"depends_on\":[\"q\"]}]}",
				   -EINVAL) > 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_example),
		cmocka_unit_test(test_seed_example_file),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_canonical_text),
		cmocka_unit_test(test_parallel_and_topo),
		cmocka_unit_test(test_duplicate_names),
		cmocka_unit_test(test_unknown_type),
		cmocka_unit_test(test_params_missing),
		cmocka_unit_test(test_params_of_other_type),
		cmocka_unit_test(test_bad_targets),
		cmocka_unit_test(test_depends_on_errors),
		cmocka_unit_test(test_cycle_explicit),
		cmocka_unit_test(test_cycle_implicit),
		cmocka_unit_test(test_two_cycles),
		cmocka_unit_test(test_long_cycle_elided),
		cmocka_unit_test(test_wait_and_timeout),
		cmocka_unit_test(test_stage_shape),
		cmocka_unit_test(test_unknown_reference_with_bad_names),
		cmocka_unit_test(test_top_level),
		cmocka_unit_test(test_repo_branch),
		cmocka_unit_test(test_schema_alone),
		cmocka_unit_test(test_large_dag),
		cmocka_unit_test(test_every_error_reported),
		cmocka_unit_test(test_body_errors),
		cmocka_unit_test(test_to_json_invalid),
		cmocka_unit_test(test_stage_type_strings),
		cmocka_unit_test(test_base_pointer_and_null),
		cmocka_unit_test(test_build_targets_cap),
		cmocka_unit_test(test_allocation_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
