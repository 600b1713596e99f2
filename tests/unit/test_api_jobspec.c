/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for api/jobspec: defaults, decoding, every-field validation with JSON pointers,
 * canonical form, hash and round trip. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/jobspec.h"
#include "api/json.h"
#include "lib/str.h"
#include "tests/unit/alloc_fault.h"

#define HEX40 "0123456789abcdef0123456789abcdef01234567"

struct want {
	const char *pointer;
	const char *message; /* substring */
};

static struct jobspec *decode_ok(const char *text)
{
	struct jobspec *s = NULL;
	struct problem p;
	int r;

	problem_init(&p, 0, NULL, NULL);
	r = jobspec_from_string(text, strlen(text), &s, &p);
	if (r != 0) {
		char *dump = problem_to_string(&p);

		fail_msg("decode failed %d: %s", r, dump);
	}
	assert_non_null(s);
	assert_false(problem_has_errors(&p));
	problem_release(&p);
	return s;
}

/* Decode text expecting exactly the listed errors (any order), status 422. */
static void decode_bad_n(const char *text, const struct want *w, size_t n)
{
	struct jobspec *s = NULL;
	struct problem p;
	char *dump;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_string(text, strlen(text), &s, &p), -EINVAL);
	assert_null(s);
	dump = problem_to_string(&p);
	assert_non_null(dump);
	if (p.status != 422)
		fail_msg("status %d: %s", p.status, dump);
	assert_string_equal(p.type, API_PROBLEM_INVALID);
	for (size_t i = 0; i < n; i++) {
		bool found = false;

		for (size_t k = 0; k < p.n_errors && !found; k++)
			found = strcmp(p.errors[k].pointer, w[i].pointer) == 0 &&
				strstr(p.errors[k].message, w[i].message);
		if (!found)
			fail_msg("no error {%s: ...%s...} in %s", w[i].pointer, w[i].message, dump);
	}
	if (p.n_errors != n)
		fail_msg("expected %zu errors, got %zu: %s", n, p.n_errors, dump);
	free(dump);
	problem_release(&p);
}
#define decode_bad(text, ...)                                                                      \
	do {                                                                                       \
		const struct want _w[] = { __VA_ARGS__ };                                          \
		decode_bad_n(text, _w, sizeof(_w) / sizeof(_w[0]));                                \
	} while (0)

#define MIN_SPEC "{\"name\":\"foo\",\"target\":\"//repo/foo_service:main\""

static void test_defaults(void **state)
{
	struct jobspec *s = decode_ok(MIN_SPEC "}");

	assert_string_equal(s->name, "foo");
	assert_string_equal(s->target.target.package, "repo/foo_service");
	assert_string_equal(s->target.target.name, "main");
	assert_string_equal(s->target.commit, "");
	assert_int_equal(s->reqs.hosts, 1);
	assert_int_equal(s->reqs.millicpus, 1000);
	assert_int_equal(s->reqs.memory_mb, 256);
	assert_int_equal(s->reqs.storage.size_mb, 1024);
	assert_int_equal(s->reqs.networking.mode, JOBSPEC_NET_NONE);
	assert_int_equal(s->reqs.networking.n_ports, 0);
	assert_non_null(s->command);
	assert_string_equal(s->command[0], "/app/main");
	assert_null(s->command[1]);
	assert_int_equal(s->n_env, 0);
	assert_int_equal(s->health.type, JOBSPEC_HEALTH_NONE);
	assert_int_equal(s->restart.policy, JOBSPEC_RESTART_ON_FAILURE);
	assert_int_equal(s->restart.backoff_s, 1);
	assert_int_equal(s->restart.max_backoff_s, 60);
	assert_int_equal(s->stop_grace_s, 10);
	assert_non_null(s->zones);
	assert_null(s->zones[0]);
	jobspec_free(s);
}

static const char *full_spec =
	"{\"name\":\"foo-service\",\"target\":\"//repo/foo_service:main@" HEX40 "\","
	"\"reqs\":{\"hosts\":3,\"vcpus\":0.5,\"memory_mb\":512,\"storage\":{\"size_mb\":2048},"
	"\"networking\":{\"mode\":\"bridge\",\"ports\":[{\"name\":\"http\",\"port\":8080},"
	"{\"name\":\"admin\",\"port\":9090}]}},"
	"\"command\":[\"/app/main\",\"--port\",\"8080\"],"
	"\"env\":{\"ZED\":\"z\",\"A_B\":\"1\",\"_x\":\"\"},"
	"\"health\":{\"type\":\"http\",\"path\":\"/ready?x=1\",\"port\":8080,\"interval_s\":5,"
	"\"timeout_s\":1,\"failure_threshold\":2},"
	"\"restart\":{\"policy\":\"always\",\"backoff_s\":2,\"max_backoff_s\":30},"
	"\"stop_grace_s\":20,\"zones\":[\"us-east-1\",\"eu-west-1\"]}";

static void test_full(void **state)
{
	struct jobspec *s = decode_ok(full_spec);

	assert_string_equal(s->name, "foo-service");
	assert_string_equal(s->target.commit, HEX40);
	assert_int_equal(s->reqs.hosts, 3);
	assert_int_equal(s->reqs.millicpus, 500);
	assert_int_equal(s->reqs.memory_mb, 512);
	assert_int_equal(s->reqs.storage.size_mb, 2048);
	assert_int_equal(s->reqs.networking.mode, JOBSPEC_NET_BRIDGE);
	assert_int_equal(s->reqs.networking.n_ports, 2);
	assert_string_equal(s->reqs.networking.ports[0].name, "http");
	assert_int_equal(s->reqs.networking.ports[0].port, 8080);
	assert_string_equal(s->reqs.networking.ports[1].name, "admin");
	assert_string_equal(s->command[2], "8080");
	assert_null(s->command[3]);
	/* env sorted by key */
	assert_int_equal(s->n_env, 3);
	assert_string_equal(s->env[0].key, "A_B");
	assert_string_equal(s->env[1].key, "ZED");
	assert_string_equal(s->env[2].key, "_x");
	assert_string_equal(jobspec_env_get(s, "ZED"), "z");
	assert_null(jobspec_env_get(s, "nope"));
	assert_int_equal(s->health.type, JOBSPEC_HEALTH_HTTP);
	assert_string_equal(s->health.path, "/ready?x=1");
	assert_int_equal(s->health.port, 8080);
	assert_int_equal(s->health.interval_s, 5);
	assert_int_equal(s->health.timeout_s, 1);
	assert_int_equal(s->health.failure_threshold, 2);
	assert_int_equal(s->restart.policy, JOBSPEC_RESTART_ALWAYS);
	assert_int_equal(s->restart.backoff_s, 2);
	assert_int_equal(s->restart.max_backoff_s, 30);
	assert_int_equal(s->stop_grace_s, 20);
	assert_string_equal(s->zones[0], "us-east-1");
	assert_string_equal(s->zones[1], "eu-west-1");
	assert_null(s->zones[2]);
	jobspec_free(s);
}

static void roundtrip(const char *text)
{
	struct jobspec *a = decode_ok(text), *b;
	char *t1 = NULL, *t2 = NULL, h1[JOBSPEC_HASH_LEN + 1], h2[JOBSPEC_HASH_LEN + 1];

	assert_int_equal(jobspec_to_string(a, &t1), 0);
	b = decode_ok(t1);
	assert_int_equal(jobspec_to_string(b, &t2), 0);
	assert_string_equal(t1, t2);
	assert_true(jobspec_equal(a, b));
	assert_int_equal(jobspec_hash(a, h1), 0);
	assert_int_equal(jobspec_hash(b, h2), 0);
	assert_string_equal(h1, h2);
	free(t1);
	free(t2);
	jobspec_free(a);
	jobspec_free(b);
}

static void test_roundtrip(void **state)
{
	roundtrip(MIN_SPEC "}");
	roundtrip(full_spec);
	roundtrip(MIN_SPEC ",\"health\":{\"type\":\"exec\",\"command\":[\"/bin/true\"]}}");
	roundtrip(MIN_SPEC ",\"health\":{\"type\":\"tcp\",\"port\":1}}");
	roundtrip(MIN_SPEC ",\"reqs\":{\"vcpus\":0.001}}");
	roundtrip(MIN_SPEC ",\"reqs\":{\"vcpus\":1024}}");
	roundtrip(MIN_SPEC ",\"env\":{\"U\":\"\\u00e9\\u4e2d\\ud83d\\ude00\"}}");
}

static void test_canonical_form(void **state)
{
	struct jobspec *s = decode_ok(MIN_SPEC "}");
	char *t = NULL;

	assert_int_equal(jobspec_to_string(s, &t), 0);
	assert_string_equal(
		t,
		"{\"command\":[\"/app/main\"],\"env\":{},\"name\":\"foo\",\"reqs\":{\"hosts\":1,"
		"\"memory_mb\":256,\"networking\":{\"mode\":\"none\",\"ports\":[]},\"storage\":{"
		"\"size_mb\":1024},\"vcpus\":1},\"restart\":{\"backoff_s\":1,\"max_backoff_s\":60,"
		"\"policy\":\"on-failure\"},\"stop_grace_s\":10,\"target\":\"//repo/"
		"foo_service:main\",\"zones\":[]}");
	free(t);
	jobspec_free(s);

	/* fractional vcpus come out as a short decimal */
	s = decode_ok(MIN_SPEC ",\"reqs\":{\"vcpus\":0.1}}");
	assert_int_equal(s->reqs.millicpus, 100);
	assert_int_equal(jobspec_to_string(s, &t), 0);
	assert_non_null(strstr(t, "\"vcpus\":0.1}"));
	free(t);
	jobspec_free(s);
}

static void test_identical_spec_same_hash(void **state)
{
	/* defaults spelt out, other key order, shorthand target: the same spec */
	struct jobspec *a = decode_ok(MIN_SPEC "}");
	struct jobspec *b = decode_ok(
		"{\"zones\":[],\"reqs\":{\"vcpus\":1.0,\"hosts\":1,\"networking\":{\"mode\":\"none\"}},"
		"\"target\":\"//repo/foo_service:main\",\"name\":\"foo\",\"stop_grace_s\":10,"
		"\"restart\":{\"policy\":\"on-failure\"},\"command\":[\"/app/main\"],\"env\":{}}");
	struct jobspec *c = decode_ok(MIN_SPEC ",\"stop_grace_s\":11}");
	char ha[JOBSPEC_HASH_LEN + 1], hb[JOBSPEC_HASH_LEN + 1], hc[JOBSPEC_HASH_LEN + 1];

	assert_true(jobspec_equal(a, b));
	assert_false(jobspec_equal(a, c));
	assert_int_equal(jobspec_hash(a, ha), 0);
	assert_int_equal(jobspec_hash(b, hb), 0);
	assert_int_equal(jobspec_hash(c, hc), 0);
	assert_string_equal(ha, hb);
	assert_string_not_equal(ha, hc);
	assert_int_equal(strlen(ha), JOBSPEC_HASH_LEN);
	assert_memory_equal(ha, "sha256:", 7);
	jobspec_free(a);
	jobspec_free(b);
	jobspec_free(c);
}

static void test_hash_known_value(void **state)
{
	/* the hash is sha256 of the canonical text: check against an independent computation */
	struct jobspec *s = decode_ok(MIN_SPEC "}");
	char *t = NULL, h[JOBSPEC_HASH_LEN + 1], hex[65];
	json_t *j = NULL;

	assert_int_equal(jobspec_to_string(s, &t), 0);
	assert_int_equal(jobspec_to_json(s, &j), 0);
	assert_int_equal(api_json_canonical_sha256(j, hex), 0);
	assert_int_equal(jobspec_hash(s, h), 0);
	assert_string_equal(h + 7, hex);
	json_decref(j);
	free(t);
	jobspec_free(s);
}

static void test_required(void **state)
{
	decode_bad("{}", { "/name", "is required" }, { "/target", "is required" });
	decode_bad("{\"name\":null,\"target\":null}", { "/name", "is required" },
		   { "/target", "is required" });
}

static void test_not_object(void **state)
{
	decode_bad("[]", { "", "must be an object, not array" });
	decode_bad(MIN_SPEC ",\"reqs\":[]}", { "/reqs", "must be an object, not array" });
	decode_bad(MIN_SPEC ",\"env\":\"A=1\"}", { "/env", "must be an object, not string" });
}

static void test_wrong_types(void **state)
{
	decode_bad("{\"name\":1,\"target\":true,\"command\":\"/bin/sh\",\"stop_grace_s\":\"10\","
		   "\"zones\":{},\"reqs\":{\"hosts\":1.5,\"vcpus\":\"2\",\"memory_mb\":[],"
		   "\"storage\":1,\"networking\":{\"mode\":3,\"ports\":{}}},\"restart\":false}",
		   { "/name", "must be a string, not integer" },
		   { "/target", "must be a string, not boolean" },
		   { "/command", "must be an array, not string" },
		   { "/stop_grace_s", "must be an integer, not string" },
		   { "/zones", "must be an array, not object" },
		   { "/reqs/hosts", "must be an integer, not number" },
		   { "/reqs/vcpus", "must be a number, not string" },
		   { "/reqs/memory_mb", "must be an integer, not array" },
		   { "/reqs/storage", "must be an object, not integer" },
		   { "/reqs/networking/mode", "must be a string, not integer" },
		   { "/reqs/networking/ports", "must be an array, not object" },
		   { "/restart", "must be an object, not boolean" });
}

static void test_negative_and_zero_resources(void **state)
{
	decode_bad(MIN_SPEC ",\"reqs\":{\"hosts\":-1,\"vcpus\":-2,\"memory_mb\":0,"
			    "\"storage\":{\"size_mb\":-100}},\"stop_grace_s\":-1}",
		   { "/reqs/hosts", "must be between 1 and 10000 (is -1)" },
		   { "/reqs/vcpus", "must be between 0.001 and 1024 (is -2)" },
		   { "/reqs/memory_mb", "must be between 1 and 4194304 (is 0)" },
		   { "/reqs/storage/size_mb", "(is -100)" },
		   { "/stop_grace_s", "must be between 0 and 3600 (is -1)" });
	decode_bad(MIN_SPEC ",\"reqs\":{\"vcpus\":0}}", { "/reqs/vcpus", "(is 0)" });
}

static void test_huge_numbers(void **state)
{
	decode_bad(MIN_SPEC ",\"reqs\":{\"hosts\":9223372036854775807,\"vcpus\":1e300,"
			    "\"memory_mb\":1e30,\"storage\":{\"size_mb\":4611686018427387904}}}",
		   { "/reqs/hosts", "must be between 1 and 10000" },
		   { "/reqs/vcpus", "must be between 0.001 and 1024" },
		   { "/reqs/memory_mb", "must be an integer, not number" },
		   { "/reqs/storage/size_mb", "must be between 1 and 67108864" });
}

static void test_huge_integer_is_parse_error(void **state)
{
	/* beyond int64: jansson refuses to parse it, so it is a 400 with a position */
	const char *t = MIN_SPEC ",\"reqs\":{\"hosts\":99999999999999999999999}}";
	struct jobspec *s = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_string(t, strlen(t), &s, &p), -EINVAL);
	assert_int_equal(p.status, 400);
	assert_int_equal(p.n_errors, 1);
	assert_non_null(strstr(p.errors[0].message, "too big integer"));
	assert_non_null(strstr(p.errors[0].message, "line 1, column"));
	problem_release(&p);
}

static void test_vcpus_resolution(void **state)
{
	struct jobspec *s = decode_ok(MIN_SPEC ",\"reqs\":{\"vcpus\":2.125}}");

	assert_int_equal(s->reqs.millicpus, 2125);
	jobspec_free(s);
	decode_bad(MIN_SPEC ",\"reqs\":{\"vcpus\":1.2345}}",
		   { "/reqs/vcpus", "at most 3 decimals" });
	decode_bad(MIN_SPEC ",\"reqs\":{\"vcpus\":0.0005}}", { "/reqs/vcpus", "between 0.001" });
	/* resolution holds at the top of the range too */
	s = decode_ok(MIN_SPEC ",\"reqs\":{\"vcpus\":1023.999}}");
	assert_int_equal(s->reqs.millicpus, 1023999);
	jobspec_free(s);
	decode_bad(MIN_SPEC ",\"reqs\":{\"vcpus\":1023.9995}}",
		   { "/reqs/vcpus", "at most 3 decimals" });
}

static void test_unknown_fields(void **state)
{
	decode_bad(MIN_SPEC ",\"replicas\":3,\"reqs\":{\"gpus\":1,\"storage\":{\"iops\":1},"
			    "\"networking\":{\"vlan\":2}},\"restart\":{\"max_retries\":1},"
			    "\"health\":{\"type\":\"tcp\",\"port\":80,\"grace_s\":1}}",
		   { "/replicas", "unknown field (known: name, target, reqs" },
		   { "/reqs/gpus", "unknown field (known: hosts, vcpus" },
		   { "/reqs/storage/iops", "unknown field (known: size_mb)" },
		   { "/reqs/networking/vlan", "unknown field" },
		   { "/restart/max_retries", "unknown field" },
		   { "/health/grace_s", "unknown field" });
	/* pointer escaping of odd keys (RFC 6901) */
	decode_bad(MIN_SPEC ",\"a/b~c\":1}", { "/a~1b~0c", "unknown field" });
}

static void test_bad_target_and_name(void **state)
{
	decode_bad("{\"name\":\"Foo\",\"target\":\"//repo/../x:main\"}",
		   { "/name", "job name must be lowercase" },
		   { "/target", "segment 2 must not be \"..\"" });
	decode_bad("{\"name\":\"foo\",\"target\":\"//repo:main@deadbeef\"}",
		   { "/target", "commit must be 40 or 64 hex digits" });
	decode_bad("{\"name\":\"\",\"target\":\"\"}", { "/name", "must not be empty" },
		   { "/target", "must not be empty" });
	decode_bad("{\"name\":\"-x\",\"target\":\"repo:main\"}",
		   { "/name", "must not start or end" }, { "/target", "must start with \"//\"" });
}

static void test_ports(void **state)
{
	decode_bad(MIN_SPEC ",\"reqs\":{\"networking\":{\"mode\":\"host\",\"ports\":["
			    "{\"name\":\"http\",\"port\":80},{\"name\":\"http\",\"port\":81},"
			    "{\"name\":\"b\",\"port\":80},{\"name\":\"HTTP\",\"port\":0},"
			    "{\"name\":\"c\",\"port\":65536},{\"port\":1},7,"
			    "{\"name\":\"d\",\"port\":2,\"proto\":\"udp\"}]}}}",
		   { "/reqs/networking/ports/1/name",
		     "duplicate port name \"http\" (also at index 0)" },
		   { "/reqs/networking/ports/2/port", "duplicate port 80 (also at index 0)" },
		   { "/reqs/networking/ports/3/name", "must be a lowercase name" },
		   { "/reqs/networking/ports/3/port", "between 1 and 65535 (is 0)" },
		   { "/reqs/networking/ports/4/port", "between 1 and 65535 (is 65536)" },
		   { "/reqs/networking/ports/5/name", "is required" },
		   { "/reqs/networking/ports/6", "must be an object, not integer" },
		   { "/reqs/networking/ports/7/proto", "unknown field" });
	decode_bad(MIN_SPEC
		   ",\"reqs\":{\"networking\":{\"ports\":[{\"name\":\"h\",\"port\":80}]}}}",
		   { "/reqs/networking/ports", "need networking mode \"host\" or \"bridge\"" });
	decode_bad(MIN_SPEC ",\"reqs\":{\"networking\":{\"mode\":\"overlay\"}}}",
		   { "/reqs/networking/mode",
		     "must be one of none, host, bridge (is \"overlay\")" });
}

static void test_env(void **state)
{
	decode_bad(MIN_SPEC ",\"env\":{\"1X\":\"a\",\"A-B\":\"b\",\"\":\"c\",\"OK\":1,"
			    "\"N\":null,\"a/b\":\"d\"}}",
		   { "/env/1X", "must match [A-Za-z_][A-Za-z0-9_]*" }, { "/env/A-B", "must match" },
		   { "/env/", "must match" }, { "/env/OK", "must be a string, not integer" },
		   { "/env/N", "must be a string, not null" }, { "/env/a~1b", "must match" });
}

static void test_nul_bytes(void **state)
{
	/* through the parser: a 400 before validation */
	const char *t = MIN_SPEC ",\"env\":{\"A\":\"x\\u0000y\"}}";
	struct jobspec *s = NULL;
	struct problem p;
	json_t *j;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_string(t, strlen(t), &s, &p), -EINVAL);
	assert_int_equal(p.status, 400);
	problem_release(&p);

	/* built programmatically (another decoder, JSON_ALLOW_NUL): validation catches it */
	j = json_pack("{s:s, s:s, s:[s], s:{s:o}}", "name", "foo", "target", "//a:b", "command",
		      "/bin/x", "env", "A", json_stringn("x\0y", 3));
	assert_non_null(j);
	json_array_append_new(json_object_get(j, "command"), json_stringn("a\0b", 3));
	json_object_set_new(j, "name", json_stringn("fo\0o", 4));
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_json(j, &s, &p), -EINVAL);
	assert_int_equal(p.n_errors, 3);
	assert_string_equal(p.errors[0].pointer, "/name");
	assert_non_null(strstr(p.errors[0].message, "NUL"));
	assert_string_equal(p.errors[1].pointer, "/command/1");
	assert_string_equal(p.errors[2].pointer, "/env/A");
	problem_release(&p);
	json_decref(j);
}

static void test_command(void **state)
{
	decode_bad(MIN_SPEC ",\"command\":[]}", { "/command", "must not be empty" });
	decode_bad(MIN_SPEC ",\"command\":[\"\"]}", { "/command/0", "must not be empty" });
	decode_bad(MIN_SPEC ",\"command\":[\"/bin/x\",1,null,\"ok\",[]]}",
		   { "/command/1", "must be a string, not integer" },
		   { "/command/2", "must be a string, not null" },
		   { "/command/4", "must be a string, not array" });
	/* empty arguments after the program are fine */
	struct jobspec *s = decode_ok(MIN_SPEC ",\"command\":[\"/bin/x\",\"\"]}");

	assert_string_equal(s->command[1], "");
	jobspec_free(s);
}

static void test_command_limits(void **state)
{
	/* 257 arguments, and one argument of 4097 bytes */
	size_t n = 64 + 257 * 4 + 8;
	char *t = malloc(n), *big = malloc(4200 + 64);
	size_t len;

	assert_non_null(t);
	assert_non_null(big);
	len = (size_t)snprintf(t, n, MIN_SPEC ",\"command\":[");
	for (int i = 0; i < 257; i++)
		len += (size_t)snprintf(t + len, n - len, "%s\"a\"", i ? "," : "");
	snprintf(t + len, n - len, "]}");
	decode_bad(t, { "/command", "must have at most 256 items (has 257)" });
	len = (size_t)snprintf(big, 4200 + 64, MIN_SPEC ",\"command\":[\"");
	memset(big + len, 'x', 4097);
	snprintf(big + len + 4097, 16, "\"]}");
	decode_bad(big, { "/command/0", "at most 4096 bytes long (is 4097)" });
	free(t);
	free(big);
}

static void test_health(void **state)
{
	struct jobspec *s;

	decode_bad(MIN_SPEC ",\"health\":{}}", { "/health/type", "is required" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"grpc\"}}",
		   { "/health/type", "must be one of exec, http, tcp (is \"grpc\")" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"exec\"}}",
		   { "/health/command", "is required" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"http\"}}", { "/health/port", "is required" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"tcp\",\"port\":80,\"path\":\"/x\","
			    "\"command\":[\"x\"]}}",
		   { "/health/path", "only valid for health type \"http\" (type is \"tcp\")" },
		   { "/health/command", "only valid for health type \"exec\"" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"exec\",\"command\":[\"x\"],\"port\":1}}",
		   { "/health/port", "only valid for health types \"http\" and \"tcp\"" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"http\",\"port\":80,\"path\":\"no-slash\"}}",
		   { "/health/path", "must start with '/'" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"http\",\"port\":80,\"path\":\"/a b\"}}",
		   { "/health/path", "without spaces" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"tcp\",\"port\":80,\"interval_s\":2,"
			    "\"timeout_s\":3,\"failure_threshold\":0}}",
		   { "/health/timeout_s", "must not exceed interval_s (3 > 2)" },
		   { "/health/failure_threshold", "between 1 and 100 (is 0)" });
	decode_bad(MIN_SPEC ",\"health\":{\"type\":\"exec\",\"command\":[\"\"]}}",
		   { "/health/command/0", "must not be empty" });

	s = decode_ok(MIN_SPEC ",\"health\":{\"type\":\"http\",\"port\":8080}}");
	assert_int_equal(s->health.type, JOBSPEC_HEALTH_HTTP);
	assert_string_equal(s->health.path, "/healthz");
	assert_int_equal(s->health.interval_s, 10);
	assert_int_equal(s->health.timeout_s, 2);
	assert_int_equal(s->health.failure_threshold, 3);
	jobspec_free(s);
	s = decode_ok(MIN_SPEC
		      ",\"health\":{\"type\":\"exec\",\"command\":[\"/bin/check\",\"-q\"]}}");
	assert_string_equal(s->health.command[1], "-q");
	assert_null(s->health.path);
	assert_int_equal(s->health.port, 0);
	jobspec_free(s);
}

static void test_restart(void **state)
{
	struct jobspec *s;

	decode_bad(MIN_SPEC ",\"restart\":{\"policy\":\"sometimes\",\"backoff_s\":100,"
			    "\"max_backoff_s\":10}}",
		   { "/restart/policy", "must be one of never, on-failure, always" },
		   { "/restart/backoff_s", "must not exceed max_backoff_s (100 > 10)" });
	decode_bad(MIN_SPEC ",\"restart\":{\"max_backoff_s\":86401}}",
		   { "/restart/max_backoff_s", "between 0 and 86400" });
	s = decode_ok(MIN_SPEC ",\"restart\":{\"policy\":\"never\",\"backoff_s\":0}}");
	assert_int_equal(s->restart.policy, JOBSPEC_RESTART_NEVER);
	assert_int_equal(s->restart.backoff_s, 0);
	assert_int_equal(s->restart.max_backoff_s, 60);
	jobspec_free(s);
}

static void test_zones(void **state)
{
	decode_bad(MIN_SPEC ",\"zones\":[\"us-east-1\",\"us-east-1\",\"EU\",\"\",3]}",
		   { "/zones/1", "duplicate zone \"us-east-1\" (also at index 0)" },
		   { "/zones/2", "zone must be lowercase" }, { "/zones/3", "must not be empty" },
		   { "/zones/4", "must be a string, not integer" });
}

static void test_every_error_reported(void **state)
{
	/* one body, many independent problems: all of them come back */
	decode_bad("{\"name\":\"A\",\"target\":\"x\",\"bogus\":1,\"reqs\":{\"hosts\":0,\"vcpus\":0,"
		   "\"memory_mb\":-1},\"command\":[],\"restart\":{\"policy\":\"x\"},"
		   "\"stop_grace_s\":99999,\"zones\":[\"\"]}",
		   { "/name", "lowercase" }, { "/target", "//" }, { "/bogus", "unknown field" },
		   { "/reqs/hosts", "(is 0)" }, { "/reqs/vcpus", "(is 0)" },
		   { "/reqs/memory_mb", "(is -1)" }, { "/command", "must not be empty" },
		   { "/restart/policy", "must be one of" }, { "/stop_grace_s", "(is 99999)" },
		   { "/zones/0", "must not be empty" });
}

static void test_error_cap(void **state)
{
	/* 300 unknown fields: 100 kept, the rest counted; the serialised problem says so */
	size_t n = 300 * 16 + 128, len;
	char *t = malloc(n), *dump;
	struct jobspec *s = NULL;
	struct problem p;

	assert_non_null(t);
	len = (size_t)snprintf(t, n, MIN_SPEC);
	for (int i = 0; i < 300; i++)
		len += (size_t)snprintf(t + len, n - len, ",\"x%d\":1", i);
	snprintf(t + len, n - len, "}");
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_string(t, strlen(t), &s, &p), -EINVAL);
	assert_int_equal(p.n_errors, PROBLEM_MAX_ERRORS);
	assert_int_equal(p.n_dropped, 200);
	dump = problem_to_string(&p);
	assert_non_null(strstr(dump, "\"errors_omitted\":200"));
	assert_non_null(strstr(dump, "300 invalid fields"));
	free(dump);
	problem_release(&p);
	free(t);
}

static void test_base_pointer(void **state)
{
	json_t *body = json_pack("{s:{s:s, s:s, s:{s:i}}}", "spec", "name", "x", "target", "//a:b",
				 "reqs", "hosts", 0);
	struct jobspec *s = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_json_at(json_object_get(body, "spec"), "/spec", &s, &p),
			 -EINVAL);
	assert_int_equal(p.n_errors, 1);
	assert_string_equal(p.errors[0].pointer, "/spec/reqs/hosts");
	problem_release(&p);
	json_decref(body);
}

static void test_body_limits(void **state)
{
	size_t n = 10 * 1024 * 1024;
	char *t = malloc(n);
	struct jobspec *s = NULL;
	struct problem p;

	assert_non_null(t);
	memset(t, ' ', n);
	memcpy(t, MIN_SPEC, strlen(MIN_SPEC));
	t[n - 1] = '}';
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_string(t, n, &s, &p), -EFBIG);
	assert_int_equal(p.status, 413);
	problem_release(&p);
	free(t);

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_string("{\"name\":", 8, &s, &p), -EINVAL);
	assert_int_equal(p.status, 400);
	problem_release(&p);

	/* deep nesting inside an otherwise valid spec: 400, not a stack of unknown-field errors */
	{
		char deep[256];
		size_t len = (size_t)snprintf(deep, sizeof(deep), MIN_SPEC ",\"x\":");

		for (int i = 0; i < 40; i++)
			deep[len++] = '[';
		for (int i = 0; i < 40; i++)
			deep[len++] = ']';
		deep[len++] = '}';
		deep[len] = '\0';
		problem_init(&p, 0, NULL, NULL);
		assert_int_equal(jobspec_from_string(deep, len, &s, &p), -EINVAL);
		assert_int_equal(p.status, 400);
		assert_non_null(strstr(p.errors[0].message, "nesting depth"));
		problem_release(&p);
	}
}

static void test_null_means_default(void **state)
{
	struct jobspec *s = decode_ok(MIN_SPEC ",\"reqs\":{\"hosts\":null},\"health\":null,"
					       "\"command\":null,\"zones\":null}");

	assert_int_equal(s->reqs.hosts, 1);
	assert_int_equal(s->health.type, JOBSPEC_HEALTH_NONE);
	assert_string_equal(s->command[0], "/app/main");
	jobspec_free(s);
}

static void test_to_json_rejects_invalid_struct(void **state)
{
	struct jobspec *s = decode_ok(MIN_SPEC "}");
	json_t *j = NULL;

	s->reqs.networking.mode = (enum jobspec_net_mode)42;
	assert_int_equal(jobspec_to_json(s, &j), -EINVAL);
	s->reqs.networking.mode = JOBSPEC_NET_HOST;
	strcpy(s->target.target.name, "..");
	assert_int_equal(jobspec_to_json(s, &j), -EINVAL);
	assert_null(j);
	strcpy(s->target.target.name, "main");
	assert_int_equal(jobspec_to_json(s, &j), 0);
	json_decref(j);
	j = NULL;
	s->name[0] = '\0';
	assert_int_equal(jobspec_to_json(s, &j), -EINVAL);
	strcpy(s->name, "foo");
	s->health.type = JOBSPEC_HEALTH_TCP; /* port 0 */
	assert_int_equal(jobspec_to_json(s, &j), -EINVAL);
	s->health.type = JOBSPEC_HEALTH_EXEC; /* no command */
	assert_int_equal(jobspec_to_json(s, &j), -EINVAL);
	s->health.type = JOBSPEC_HEALTH_NONE;
	s->command[0][0] = '\0';
	assert_int_equal(jobspec_to_json(s, &j), -EINVAL);
	assert_null(j);
	jobspec_free(s);
	jobspec_free(NULL);
}

static void test_enum_strings(void **state)
{
	enum jobspec_net_mode m;
	enum jobspec_health_type h;
	enum jobspec_restart_policy r;

	assert_int_equal(jobspec_net_mode_from_string("bridge", &m), 0);
	assert_int_equal(m, JOBSPEC_NET_BRIDGE);
	assert_string_equal(jobspec_net_mode_to_string(JOBSPEC_NET_HOST), "host");
	assert_int_equal(jobspec_net_mode_from_string("Host", &m), -EINVAL);
	assert_int_equal(jobspec_health_type_from_string("tcp", &h), 0);
	assert_int_equal(h, JOBSPEC_HEALTH_TCP);
	assert_null(jobspec_health_type_to_string(JOBSPEC_HEALTH_NONE));
	assert_int_equal(jobspec_health_type_from_string(NULL, &h), -EINVAL);
	assert_int_equal(jobspec_restart_policy_from_string("on-failure", &r), 0);
	assert_int_equal(r, JOBSPEC_RESTART_ON_FAILURE);
	assert_null(jobspec_restart_policy_to_string(_JOBSPEC_RESTART_MAX));
}

static void test_networking_modes(void **state)
{
	struct jobspec *s;

	s = decode_ok(MIN_SPEC
		      ",\"reqs\":{\"networking\":{\"mode\":\"host\",\"ports\":["
		      "{\"name\":\"http\",\"port\":80},{\"name\":\"h-2\",\"port\":65535}]}}}");
	assert_int_equal(s->reqs.networking.mode, JOBSPEC_NET_HOST);
	assert_int_equal(s->reqs.networking.ports[1].port, 65535);
	assert_string_equal(s->reqs.networking.ports[1].name, "h-2");
	jobspec_free(s);
	s = decode_ok(MIN_SPEC ",\"reqs\":{\"networking\":{\"mode\":\"none\",\"ports\":[]}}}");
	assert_int_equal(s->reqs.networking.n_ports, 0);
	jobspec_free(s);
	decode_bad(MIN_SPEC
		   ",\"reqs\":{\"networking\":{\"mode\":\"bridge\",\"ports\":[{\"name\":"
		   "\"a-very-long-port-name\",\"port\":1},{\"name\":\"-x\",\"port\":2}]}}}",
		   { "/reqs/networking/ports/0/name", "at most 15 bytes" },
		   { "/reqs/networking/ports/1/name", "must be a lowercase name" });
}

static void expect_one_error(const char *text, const char *want)
{
	struct jobspec *s = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(jobspec_from_string(text, strlen(text), &s, &p), -EINVAL);
	assert_int_equal(p.n_errors, 1);
	if (!strstr(p.errors[0].message, want))
		fail_msg("message \"%s\" lacks \"%s\"", p.errors[0].message, want);
	problem_release(&p);
}

static void test_env_limits(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	char key[258];
	struct jobspec *s;

	/* a 256-byte key is fine, 257 is not */
	memset(key, 'K', sizeof(key));
	key[256] = '\0';
	strbuf_addf(&sb, MIN_SPEC ",\"env\":{\"%s\":\"v\"}}", key);
	s = decode_ok(sb.buf);
	assert_string_equal(jobspec_env_get(s, key), "v");
	jobspec_free(s);
	strbuf_reset(&sb);
	key[256] = 'K';
	key[257] = '\0';
	strbuf_addf(&sb, MIN_SPEC ",\"env\":{\"%s\":\"v\"}}", key);
	expect_one_error(sb.buf, "variable name is longer than 256 bytes");
	/* 257 variables */
	strbuf_reset(&sb);
	strbuf_adds(&sb, MIN_SPEC ",\"env\":{");
	for (int i = 0; i < 257; i++)
		strbuf_addf(&sb, "%s\"V%d\":\"\"", i ? "," : "", i);
	strbuf_adds(&sb, "}}");
	expect_one_error(sb.buf, "at most 256 variables (has 257)");
	strbuf_release(&sb);
}

/* Every allocation failure point: -ENOMEM (or the expected result), never a crash or a leak. */
static long alloc_failures(const char *text, int want)
{
	for (long n = 0;; n++) {
		struct jobspec *s = NULL;
		struct problem p;
		int r;

		problem_init(&p, 0, NULL, NULL);
		alloc_fault_arm(n);
		r = jobspec_from_string(text, strlen(text), &s, &p);
		if (!alloc_fault_disarm()) {
			assert_int_equal(r, want);
			jobspec_free(s);
			problem_release(&p);
			return n;
		}
		if (r != -ENOMEM && r != want)
			fail_msg("allocation %ld failed: got %d", n, r);
		if (r == 0) {
			char *t = NULL;

			assert_int_equal(jobspec_to_string(s, &t), 0);
			free(t);
		}
		jobspec_free(s);
		problem_release(&p);
	}
}

static void test_allocation_failures(void **state)
{
	/* the full spec allocates at least once per string it keeps */
	assert_true(alloc_failures(full_spec, 0) > 15);
	alloc_failures(MIN_SPEC ",\"health\":{\"type\":\"exec\",\"command\":[\"a\",\"b\"]}}", 0);
	assert_true(
		alloc_failures("{\"name\":\"A\",\"target\":\"x\",\"bogus\":1,\"env\":{\"1\":\"\"},"
			       "\"zones\":[\"a\",\"a\"]}",
			       -EINVAL) > 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_canonical_form),
		cmocka_unit_test(test_identical_spec_same_hash),
		cmocka_unit_test(test_hash_known_value),
		cmocka_unit_test(test_required),
		cmocka_unit_test(test_not_object),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_negative_and_zero_resources),
		cmocka_unit_test(test_huge_numbers),
		cmocka_unit_test(test_huge_integer_is_parse_error),
		cmocka_unit_test(test_vcpus_resolution),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_bad_target_and_name),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_command),
		cmocka_unit_test(test_command_limits),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_zones),
		cmocka_unit_test(test_every_error_reported),
		cmocka_unit_test(test_error_cap),
		cmocka_unit_test(test_base_pointer),
		cmocka_unit_test(test_body_limits),
		cmocka_unit_test(test_null_means_default),
		cmocka_unit_test(test_to_json_rejects_invalid_struct),
		cmocka_unit_test(test_enum_strings),
		cmocka_unit_test(test_networking_modes),
		cmocka_unit_test(test_env_limits),
		cmocka_unit_test(test_allocation_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
