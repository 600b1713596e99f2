/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for api/jsonw: documents parse back with jansson to what was written; strings are
 * escaped (controls, quotes, backslash), valid UTF-8 passes through, invalid bytes become
 * U+FFFD; misuse (unbalanced, key outside an object, too deep) is an error, never bad JSON.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/jsonw.h"

static json_t *parse(struct jsonw *w)
{
	json_error_t e;
	json_t *j;

	assert_int_equal(jsonw_finish(w), 0);
	j = json_loads(w->buf.buf, JSON_DECODE_ANY, &e);
	if (!j)
		fail_msg("not JSON (%s): %s", e.text, w->buf.buf);
	return j;
}

static void test_document(void **state)
{
	struct jsonw w = JSONW_INIT;
	json_t *j;

	jsonw_object_begin(&w);
	jsonw_kstring(&w, "name", "web");
	jsonw_kint(&w, "version", INT64_C(-9007199254740993));
	jsonw_kint(&w, "min", INT64_MIN);
	jsonw_kint(&w, "max", INT64_MAX);
	jsonw_kint(&w, "zero", 0);
	jsonw_kbool(&w, "healthy", true);
	jsonw_kbool(&w, "stopped", false);
	jsonw_kstring(&w, "reason", NULL);
	jsonw_ktime(&w, "never", 0);
	jsonw_ktime(&w, "at", 1764115200123456); /* 2025-11-26T00:00:00.123Z */
	jsonw_key(&w, "spec");
	jsonw_raw(&w, "{\"a\":[1,2]}");
	jsonw_key(&w, "tasks");
	jsonw_array_begin(&w);
	for (int i = 0; i < 3; i++) {
		jsonw_object_begin(&w);
		jsonw_kint(&w, "index", i);
		jsonw_object_end(&w);
	}
	jsonw_array_begin(&w);
	jsonw_array_end(&w);
	jsonw_null(&w);
	jsonw_array_end(&w);
	jsonw_key(&w, "empty");
	jsonw_object_begin(&w);
	jsonw_object_end(&w);
	jsonw_object_end(&w);
	j = parse(&w);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "web");
	assert_true(json_integer_value(json_object_get(j, "version")) ==
		    INT64_C(-9007199254740993));
	assert_true(json_integer_value(json_object_get(j, "min")) == INT64_MIN);
	assert_true(json_integer_value(json_object_get(j, "max")) == INT64_MAX);
	assert_true(json_integer_value(json_object_get(j, "zero")) == 0);
	assert_true(json_is_true(json_object_get(j, "healthy")));
	assert_true(json_is_false(json_object_get(j, "stopped")));
	assert_true(json_is_null(json_object_get(j, "reason")));
	assert_true(json_is_null(json_object_get(j, "never")));
	assert_string_equal(json_string_value(json_object_get(j, "at")),
			    "2025-11-26T00:00:00.123Z");
	assert_int_equal(json_integer_value(json_array_get(
				 json_object_get(json_object_get(j, "spec"), "a"), 1)),
			 2);
	assert_int_equal(json_array_size(json_object_get(j, "tasks")), 5);
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(json_object_get(j, "tasks"), 2), "index")),
			 2);
	assert_true(json_is_null(json_array_get(json_object_get(j, "tasks"), 4)));
	assert_int_equal(json_object_size(json_object_get(j, "empty")), 0);
	json_decref(j);
	jsonw_release(&w);
}

static void check_string(const char *in, const char *want)
{
	struct jsonw w = JSONW_INIT;
	json_t *j;

	jsonw_string(&w, in);
	j = parse(&w);
	assert_string_equal(json_string_value(j), want);
	json_decref(j);
	jsonw_release(&w);
}

static void test_strings(void **state)
{
	check_string("", "");
	check_string("plain ascii", "plain ascii");
	check_string("quote \" backslash \\ slash /", "quote \" backslash \\ slash /");
	check_string("nl\ntab\tcr\rbell\x07"
		     "esc\x1b"
		     "del\x7f",
		     "nl\ntab\tcr\rbell\x07"
		     "esc\x1b"
		     "del\x7f");
	check_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80",
		     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80");
	/* invalid: lone continuation, truncated sequence, overlong '/', surrogate, > U+10FFFF */
	check_string("a\x80z", "a\xef\xbf\xbdz");
	check_string("a\xe2\x82", "a\xef\xbf\xbd\xef\xbf\xbd");
	check_string("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");
	check_string("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	check_string("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

static void test_misuse(void **state)
{
	struct jsonw w = JSONW_INIT;

	/* nothing written */
	assert_int_equal(jsonw_finish(&w), -EINVAL);
	/* unbalanced */
	jsonw_object_begin(&w);
	assert_int_equal(jsonw_finish(&w), -EINVAL);
	jsonw_release(&w);
	/* a key outside an object, a close without an open, a key without a value */
	jsonw_key(&w, "k");
	assert_int_equal(jsonw_finish(&w), -EINVAL);
	jsonw_release(&w);
	jsonw_array_end(&w);
	assert_int_equal(jsonw_finish(&w), -EINVAL);
	jsonw_release(&w);
	jsonw_object_begin(&w);
	jsonw_key(&w, "k");
	jsonw_object_end(&w);
	assert_int_equal(jsonw_finish(&w), -EINVAL);
	jsonw_release(&w);
	/* too deep: an error, and the error is sticky */
	for (int i = 0; i < JSONW_MAX_DEPTH + 5; i++)
		jsonw_array_begin(&w);
	for (int i = 0; i < JSONW_MAX_DEPTH + 5; i++)
		jsonw_array_end(&w);
	assert_int_equal(jsonw_finish(&w), -EINVAL);
	jsonw_release(&w);
	/* the deepest allowed nesting works */
	for (int i = 0; i < JSONW_MAX_DEPTH - 1; i++)
		jsonw_array_begin(&w);
	for (int i = 0; i < JSONW_MAX_DEPTH - 1; i++)
		jsonw_array_end(&w);
	json_decref(parse(&w));
	jsonw_release(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_document),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_misuse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
