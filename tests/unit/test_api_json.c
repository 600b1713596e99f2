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

static void test_parse_malformed_table(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "\xef\xbb\xbf{}",
		  "line 1, column 1: '[' or '{' expected near '\\xef\\xbb\\xbf'" },
		{ "  \n ", "line 2, column 1: '[' or '{' expected near end of file" },
		{ "1", "'[' or '{' expected near '1'" },
		{ "{\"a\":1e400}", "line 1, column 10: real number overflow" },
		{ "{\"a\":\"\\ud800\"}", "invalid Unicode '\\uD800'" },
		{ "{\"a\" 1}", "line 1, column 6: ':' expected near '1'" },
		{ "{'a':1}", "string or '}' expected near '''" },
		{ "[1,]", "unexpected token near ']'" },
		{ "{\"a\":tru}", "invalid token near 'tru'" },
		{ "{\"a\":\"x\ny\"}", "line 1, column 7: unexpected newline" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_parse_error(cases[i].in, strlen(cases[i].in), -EINVAL, 400, cases[i].want);
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

	/* columns count characters, not bytes, like jansson's */
	{
		char u[128];
		size_t k = 0;

		for (unsigned i = 0; i < 3; i++)
			u[k++] = '[';
		memcpy(u + k, "\"\xc3\xa9\xc3\xa9\",", 7);
		k += 7;
		for (unsigned i = 3; i <= API_JSON_MAX_DEPTH; i++)
			u[k++] = '[';
		u[k] = '\0';
		expect_parse_error(u, k, -EINVAL, 400, "line 1, column 38: nesting depth");
	}

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

/* --- field helpers ---------------------------------------------------------------------- */

static json_t *obj(const char *text)
{
	return parse_ok(text);
}

static void assert_one_error(struct problem *p, const char *pointer, const char *want)
{
	assert_int_equal(p->n_errors, 1);
	assert_string_equal(p->errors[0].pointer, pointer);
	if (!strstr(p->errors[0].message, want))
		fail_msg("message \"%s\" lacks \"%s\"", p->errors[0].message, want);
	problem_release(p);
	problem_init(p, 0, NULL, NULL);
}

static void test_get_string(void **state)
{
	json_t *o = obj("{\"s\":\"abc\",\"e\":\"\",\"n\":null,\"i\":1}");
	struct problem p;
	const char *v = "default";

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_get_string(o, "/x", "s", true, 1, 3, &v, &p), 1);
	assert_string_equal(v, "abc");
	/* absent or null and optional: 0, value untouched */
	v = "default";
	assert_int_equal(api_json_get_string(o, "/x", "absent", false, 0, 10, &v, &p), 0);
	assert_int_equal(api_json_get_string(o, "/x", "n", false, 0, 10, &v, &p), 0);
	assert_string_equal(v, "default");
	assert_false(problem_has_errors(&p));
	assert_int_equal(api_json_get_string(o, "/x", "absent", true, 0, 10, &v, &p), -EINVAL);
	assert_one_error(&p, "/x/absent", "is required");
	assert_int_equal(api_json_get_string(o, "/x", "s", true, 0, 2, &v, &p), -EINVAL);
	assert_one_error(&p, "/x/s", "at most 2 bytes long (is 3)");
	assert_int_equal(api_json_get_string(o, "/x", "e", true, 1, 2, &v, &p), -EINVAL);
	assert_one_error(&p, "/x/e", "must not be empty");
	assert_int_equal(api_json_get_string(o, "/x", "s", true, 5, 9, &v, &p), -EINVAL);
	assert_one_error(&p, "/x/s", "at least 5 bytes");
	assert_int_equal(api_json_get_string(o, "", "i", true, 0, 9, &v, &p), -EINVAL);
	assert_one_error(&p, "/i", "must be a string, not integer");
	assert_string_equal(v, "default");
	json_object_set_new(o, "nul", json_stringn("a\0b", 3));
	assert_int_equal(api_json_get_string(o, "", "nul", true, 0, 9, &v, &p), -EINVAL);
	assert_one_error(&p, "/nul", "must not contain NUL bytes");
	problem_release(&p);
	json_decref(o);
}

static void test_get_int(void **state)
{
	json_t *o = obj("{\"i\":5,\"neg\":-3,\"r\":5.0,\"big\":9223372036854775807,\"s\":\"5\"}");
	struct problem p;
	int64_t v = 42;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_get_int(o, "", "i", true, 5, 5, &v, &p), 1);
	assert_int_equal(v, 5);
	assert_int_equal(api_json_get_int(o, "", "neg", true, INT64_MIN, 0, &v, &p), 1);
	assert_int_equal(v, -3);
	v = 42;
	assert_int_equal(api_json_get_int(o, "", "none", false, 0, 1, &v, &p), 0);
	assert_int_equal(v, 42);
	assert_int_equal(api_json_get_int(o, "", "i", true, 6, 10, &v, &p), -EINVAL);
	assert_one_error(&p, "/i", "must be between 6 and 10 (is 5)");
	assert_int_equal(api_json_get_int(o, "", "r", true, 0, 10, &v, &p), -EINVAL);
	assert_one_error(&p, "/r", "must be an integer, not number");
	assert_int_equal(api_json_get_int(o, "", "big", true, 0, INT32_MAX, &v, &p), -EINVAL);
	assert_one_error(&p, "/big", "(is 9223372036854775807)");
	assert_int_equal(api_json_get_int(o, "", "s", true, 0, 10, &v, &p), -EINVAL);
	assert_one_error(&p, "/s", "must be an integer, not string");
	assert_int_equal(v, 42);
	problem_release(&p);
	json_decref(o);
}

static void test_get_number_bool(void **state)
{
	json_t *o = obj("{\"i\":2,\"r\":0.25,\"t\":true,\"f\":false,\"s\":\"x\"}");
	struct problem p;
	double d = -1;
	bool b = false;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_get_number(o, "", "i", true, 0, 10, &d, &p), 1);
	assert_true(d == 2.0);
	assert_int_equal(api_json_get_number(o, "", "r", true, 0, 10, &d, &p), 1);
	assert_true(d == 0.25);
	assert_int_equal(api_json_get_number(o, "", "r", true, 0.5, 10, &d, &p), -EINVAL);
	assert_one_error(&p, "/r", "must be between 0.5 and 10 (is 0.25)");
	assert_int_equal(api_json_get_number(o, "", "t", true, 0, 10, &d, &p), -EINVAL);
	assert_one_error(&p, "/t", "must be a number, not boolean");
	assert_int_equal(api_json_get_bool(o, "", "t", true, &b, &p), 1);
	assert_true(b);
	assert_int_equal(api_json_get_bool(o, "", "f", true, &b, &p), 1);
	assert_false(b);
	assert_int_equal(api_json_get_bool(o, "", "x", false, &b, &p), 0);
	assert_int_equal(api_json_get_bool(o, "", "s", false, &b, &p), -EINVAL);
	assert_one_error(&p, "/s", "must be a boolean, not string");
	problem_release(&p);
	json_decref(o);
}

static void test_get_array_object(void **state)
{
	json_t *o = obj("{\"a\":[1,2,3],\"e\":[],\"o\":{\"k\":1},\"s\":\"x\"}");
	const json_t *v = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_get_array(o, "", "a", true, 1, 3, &v, &p), 1);
	assert_int_equal(json_array_size(v), 3);
	assert_int_equal(api_json_get_array(o, "", "a", true, 0, 2, &v, &p), -EINVAL);
	assert_one_error(&p, "/a", "at most 2 items (has 3)");
	assert_int_equal(api_json_get_array(o, "", "e", true, 1, 2, &v, &p), -EINVAL);
	assert_one_error(&p, "/e", "must not be empty");
	assert_int_equal(api_json_get_array(o, "", "a", true, 4, 9, &v, &p), -EINVAL);
	assert_one_error(&p, "/a", "at least 4 items");
	assert_int_equal(api_json_get_array(o, "", "o", true, 0, 9, &v, &p), -EINVAL);
	assert_one_error(&p, "/o", "must be an array, not object");
	assert_int_equal(api_json_get_object(o, "", "o", true, &v, &p), 1);
	assert_true(json_is_object(v));
	assert_int_equal(api_json_get_object(o, "", "s", true, &v, &p), -EINVAL);
	assert_one_error(&p, "/s", "must be an object, not string");
	assert_int_equal(api_json_get_object(o, "", "none", true, &v, &p), -EINVAL);
	assert_one_error(&p, "/none", "is required");
	assert_int_equal(api_json_expect_object(json_object_get(o, "a"), "/a", &p), -EINVAL);
	assert_one_error(&p, "/a", "must be an object, not array");
	problem_release(&p);
	json_decref(o);
}

static void test_get_strv(void **state)
{
	json_t *o = obj("{\"v\":[\"a\",\"\",\"ccc\"],\"bad\":[\"a\",1,\"toolong\",null]}");
	char **v = NULL;
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_get_strv(o, "/c", "v", true, 1, 5, 0, 3, &v, &p), 1);
	assert_string_equal(v[0], "a");
	assert_string_equal(v[1], "");
	assert_string_equal(v[2], "ccc");
	assert_null(v[3]);
	strv_free(v);
	v = NULL;
	/* every bad element at its own pointer */
	assert_int_equal(api_json_get_strv(o, "/c", "bad", true, 1, 5, 1, 3, &v, &p), -EINVAL);
	assert_null(v);
	assert_int_equal(p.n_errors, 3);
	assert_string_equal(p.errors[0].pointer, "/c/bad/1");
	assert_string_equal(p.errors[1].pointer, "/c/bad/2");
	assert_string_equal(p.errors[2].pointer, "/c/bad/3");
	problem_release(&p);
	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_get_strv(o, "", "none", false, 1, 5, 1, 3, &v, &p), 0);
	assert_null(v);
	problem_release(&p);
	json_decref(o);
}

static void test_check_unknown(void **state)
{
	static const char *const allowed[] = { "a", "b", NULL };
	json_t *o = obj("{\"a\":1,\"x\":2,\"b\":3,\"y/z\":4}");
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_check_unknown(o, "/base", allowed, &p), 2);
	assert_int_equal(p.n_errors, 2);
	assert_string_equal(p.errors[0].pointer, "/base/x");
	assert_string_equal(p.errors[0].message, "unknown field (known: a, b)");
	assert_string_equal(p.errors[1].pointer, "/base/y~1z");
	problem_release(&p);
	json_decref(o);
}

static void test_finish_validation(void **state)
{
	struct problem p;

	problem_init(&p, 0, NULL, NULL);
	assert_int_equal(api_json_finish_validation(&p), 0);
	assert_int_equal(p.status, 0);
	problem_add_error(&p, "/a", "bad");
	assert_int_equal(api_json_finish_validation(&p), -EINVAL);
	assert_int_equal(p.status, 422);
	assert_string_equal(p.type, API_PROBLEM_INVALID);
	assert_string_equal(p.detail, "1 invalid field");
	p.oom = true;
	assert_int_equal(api_json_finish_validation(&p), -ENOMEM);
	problem_release(&p);
}

static void test_quote(void **state)
{
	char buf[API_JSON_QUOTE_MAX], small[12];
	char long_s[200];

	assert_string_equal(api_json_quote(buf, sizeof(buf), "abc"), "\"abc\"");
	assert_string_equal(api_json_quote(buf, sizeof(buf), "a\"b\\c\n\xc3\xa9"),
			    "\"a\\\"b\\\\c\\x0a\\xc3\\xa9\"");
	assert_string_equal(api_json_quote(buf, sizeof(buf), NULL), "\"\"");
	memset(long_s, 'x', sizeof(long_s) - 1);
	long_s[sizeof(long_s) - 1] = '\0';
	api_json_quote(buf, sizeof(buf), long_s);
	assert_true(strlen(buf) < sizeof(buf));
	assert_non_null(strstr(buf, "...\""));
	/* an escape is never cut in half */
	api_json_quote(small, sizeof(small), "ab\xff\xff\xff");
	assert_string_equal(small, "\"ab\\xff...\"");
	assert_string_equal(api_json_quote(small, 4, "abc"), "");
}

static void test_canonical(void **state)
{
	json_t *a = parse_ok("{\"b\":[1,2.5,{\"z\":1,\"a\":\"\\u00e9\"}],\"a\":null}");
	json_t *b = parse_ok(
		"{ \"a\" : null, \"b\" : [ 1, 2.50, { \"a\" : \"\xc3\xa9\", \"z\" : 1 } ] }");
	char ha[65], hb[65];
	char *s = api_json_dump_canonical(a);

	assert_string_equal(s, "{\"a\":null,\"b\":[1,2.5,{\"a\":\"\\u00E9\",\"z\":1}]}");
	free(s);
	assert_int_equal(api_json_canonical_sha256(a, ha), 0);
	assert_int_equal(api_json_canonical_sha256(b, hb), 0);
	assert_string_equal(ha, hb);
	assert_int_equal(strlen(ha), 64);
	json_decref(a);
	json_decref(b);
	/* known answer: sha256("[]") */
	a = parse_ok("[ ]");
	assert_int_equal(api_json_canonical_sha256(a, ha), 0);
	assert_string_equal(ha, "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945");
	json_decref(a);
}

static void test_type_names(void **state)
{
	json_t *a = parse_ok("[{},[],\"s\",1,1.5,true,false,null]");
	static const char *const want[] = { "object", "array",	 "string",  "integer",
					    "number", "boolean", "boolean", "null" };

	for (size_t i = 0; i < 8; i++)
		assert_string_equal(api_json_type_name(json_array_get(a, i)), want[i]);
	json_decref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_parse_malformed_table),
		cmocka_unit_test(test_parse_duplicate_keys),
		cmocka_unit_test(test_parse_nul),
		cmocka_unit_test(test_parse_invalid_utf8),
		cmocka_unit_test(test_parse_depth),
		cmocka_unit_test(test_parse_deep_huge),
		cmocka_unit_test(test_parse_too_large),
		cmocka_unit_test(test_parse_custom_limits),
		cmocka_unit_test(test_get_string),
		cmocka_unit_test(test_get_int),
		cmocka_unit_test(test_get_number_bool),
		cmocka_unit_test(test_get_array_object),
		cmocka_unit_test(test_get_strv),
		cmocka_unit_test(test_check_unknown),
		cmocka_unit_test(test_finish_validation),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_type_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
