/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for api/json: strict body parsing (limits, precise errors) and the field helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/json.h"
#include "lib/macro.h"

/* Parse s; expect failure r with exactly one error at "" whose message contains want. */
static void expect_parse_error(const char *buf, size_t len, int r, int status, const char *want)
{
	struct problem p;
	json_t *j = NULL;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_parse(buf, len, &j, &p), r);
	assert_null(j);
	assert_int_equal(p.status, status);
	assert_int_equal(p.n_errors, 1);
	assert_string_equal(p.errors[0].pointer, "");
	if (!strstr(p.errors[0].message, want))
		fail_msg("message \"%s\" lacks \"%s\"", p.errors[0].message, want);
	/* whatever the input, the problem must serialise (valid UTF-8 only) */
	char *s = problem_to_string(&p);
	assert_non_null(s);
	free(s);
	problem_release(&p);
}

static json_t *parse_ok(const char *s)
{
	struct problem p;
	json_t *j = NULL;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_parse(s, strlen(s), &j, &p), 0);
	assert_non_null(j);
	assert_false(problem_has_errors(&p));
	problem_release(&p);
	return j;
}

static void test_parse_valid(void **state)
{
	json_t *j = parse_ok("{\"a\": [1, 2.5, \"x\", true, null, {}]}");

	assert_true(json_is_object(j));
	assert_int_equal(json_array_size(json_object_get(j, "a")), 6);
	json_decref(j);
	j = parse_ok("[]");
	assert_true(json_is_array(j));
	json_decref(j);
}

static void test_parse_malformed(void **state)
{
	const char *s = "{\"a\": 1,\n \"b\": }";

	expect_parse_error(s, strlen(s), -EINVAL, 400, "line 2, column");
	expect_parse_error("", 0, -EINVAL, 400, "line 1");
	expect_parse_error("\"just a string\"", 15, -EINVAL, 400, "line 1");
	expect_parse_error("{\"a\":1} x", 9, -EINVAL, 400, "end of file expected");
	expect_parse_error("{\"a\":1}{}", 9, -EINVAL, 400, "end of file expected");
}

static void test_parse_duplicate_keys(void **state)
{
	const char *s = "{\"a\": 1, \"a\": 2}";

	expect_parse_error(s, strlen(s), -EINVAL, 400, "duplicate object key");
}

static void test_parse_nul(void **state)
{
	const char esc[] = "{\"a\": \"x\\u0000y\"}";
	const char raw[] = "{\"a\": \"x\0y\"}";

	expect_parse_error(esc, strlen(esc), -EINVAL, 400, "\\u0000 is not allowed");
	expect_parse_error(raw, sizeof(raw) - 1, -EINVAL, 400, "line 1");
}

static void test_parse_invalid_utf8(void **state)
{
	const char s[] = "{\"a\": \"\xff\xfe\"}";
	const char overlong[] = "{\"a\": \"\xc0\xaf\"}";

	expect_parse_error(s, sizeof(s) - 1, -EINVAL, 400, "UTF-8");
	expect_parse_error(overlong, sizeof(overlong) - 1, -EINVAL, 400, "UTF-8");
}

static void test_parse_depth(void **state)
{
	char buf[256];
	json_t *j;
	size_t n = 0;

	/* exactly at the limit: fine */
	for (unsigned i = 0; i < API_JSON_MAX_DEPTH; i++)
		buf[n++] = '[';
	for (unsigned i = 0; i < API_JSON_MAX_DEPTH; i++)
		buf[n++] = ']';
	buf[n] = '\0';
	j = parse_ok(buf);
	json_decref(j);

	/* one more: 400 naming the limit and the column of the offending bracket */
	n = 0;
	for (unsigned i = 0; i <= API_JSON_MAX_DEPTH; i++)
		buf[n++] = '[';
	for (unsigned i = 0; i <= API_JSON_MAX_DEPTH; i++)
		buf[n++] = ']';
	buf[n] = '\0';
	expect_parse_error(buf, n, -EINVAL, 400,
			   "column 33: nesting depth exceeds the limit of 32");

	/* brackets inside strings do not count */
	j = parse_ok("{\"a\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[[[\"}");
	json_decref(j);
}

static void test_parse_deep_huge(void **state)
{
	/* 100k levels: rejected by the scan before jansson recurses */
	size_t n = 100000;
	char *buf = malloc(n);

	assert_non_null(buf);
	memset(buf, '{', n);
	expect_parse_error(buf, n, -EINVAL, 400, "nesting depth");
	free(buf);
}

static void test_parse_too_large(void **state)
{
	size_t n = 10 * 1024 * 1024;
	char *buf = malloc(n);

	assert_non_null(buf);
	memset(buf, ' ', n);
	buf[0] = '[';
	buf[n - 1] = ']';
	expect_parse_error(buf, n, -EFBIG, 413, "limit is 1048576 bytes");
	free(buf);
}

static void test_parse_custom_limits(void **state)
{
	struct problem p;
	json_t *j = NULL;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_parse_limits("[[1]]", 5, 4, 0, &j, &p), -EFBIG);
	assert_int_equal(p.status, 413);
	assert_string_equal(p.type, API_PROBLEM_TOO_LARGE);
	problem_release(&p);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_parse_limits("[[1]]", 5, 0, 1, &j, &p), -EINVAL);
	assert_int_equal(p.status, 400);
	assert_string_equal(p.type, API_PROBLEM_MALFORMED);
	problem_release(&p);
	/* NULL problem is allowed */
	assert_int_equal(api_json_parse_limits("[[1]]", 5, 0, 2, &j, NULL), 0);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),	     cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_parse_duplicate_keys), cmocka_unit_test(test_parse_nul),
		cmocka_unit_test(test_parse_invalid_utf8),   cmocka_unit_test(test_parse_depth),
		cmocka_unit_test(test_parse_deep_huge),	     cmocka_unit_test(test_parse_too_large),
		cmocka_unit_test(test_parse_custom_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
