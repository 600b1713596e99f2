/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for api/problem: the RFC 9457 builder, JSON pointers, the error cap, decoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/problem.h"
#include "tests/unit/alloc_fault.h"

static void test_init_and_serialise(void **state)
{
	struct problem p;
	char *s;

	problem_init(&p, 422, "urn:x:invalid", "Validation failed");
	assert_false(problem_has_errors(&p));
	problem_set_detail(&p, "%d invalid field%s", 2, "s");
	problem_add_error(&p, "/reqs/vcpus", "must be between %d and %d", 1, 8);
	problem_add_error(&p, "", "whole body");
	assert_true(problem_has_errors(&p));
	s = problem_to_string(&p);
	assert_string_equal(s,
			    "{\"type\":\"urn:x:invalid\",\"title\":\"Validation failed\","
			    "\"status\":422,\"detail\":\"2 invalid fields\",\"errors\":["
			    "{\"pointer\":\"/reqs/vcpus\",\"message\":\"must be between 1 and 8\"},"
			    "{\"pointer\":\"\",\"message\":\"whole body\"}]}");
	free(s);
	problem_release(&p);
}

static void test_defaults_about_blank(void **state)
{
	struct problem p;
	json_t *j;

	problem_init(&p, 404, NULL, NULL);
	j = problem_to_json(&p);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "about:blank");
	assert_string_equal(json_string_value(json_object_get(j, "title")), "Error");
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
	assert_null(json_object_get(j, "detail"));
	assert_null(json_object_get(j, "errors"));
	json_decref(j);
	problem_release(&p);
}

static void test_set_replaces(void **state)
{
	struct problem p;

	problem_init(&p, 400, "urn:a", "A");
	problem_set(&p, 0, NULL, "B"); /* 0 and NULL keep */
	assert_int_equal(p.status, 400);
	assert_string_equal(p.type, "urn:a");
	assert_string_equal(p.title, "B");
	problem_set(&p, 413, "urn:c", NULL);
	assert_int_equal(p.status, 413);
	assert_string_equal(p.type, "urn:c");
	assert_string_equal(p.title, "B");
	problem_set_detail(&p, "one");
	problem_set_detail(&p, "two");
	assert_string_equal(p.detail, "two");
	problem_release(&p);
	/* release leaves a zeroed struct: releasing twice is harmless */
	problem_release(&p);
	assert_null(p.errors);
}

static void test_pointer_escaping(void **state)
{
	char buf[64];

	assert_string_equal(problem_pointer(buf, sizeof(buf), "", "name"), "/name");
	assert_string_equal(problem_pointer(buf, sizeof(buf), "/env", "a/b~c"), "/env/a~1b~0c");
	assert_string_equal(problem_pointer(buf, sizeof(buf), "/env", ""), "/env/");
	assert_string_equal(problem_pointer(buf, sizeof(buf), NULL, NULL), "/");
	assert_string_equal(problem_pointer_index(buf, sizeof(buf), "/schema", 12), "/schema/12");
	assert_string_equal(problem_pointer_index(buf, sizeof(buf), "", 0), "/0");
}

static void test_pointer_truncation(void **state)
{
	char buf[8];

	/* always NUL-terminated, never splits an escape */
	assert_string_equal(problem_pointer(buf, sizeof(buf), "/abc", "defgh"), "/abc/de");
	assert_string_equal(problem_pointer(buf, sizeof(buf), "/abcd", "~~"), "/abcd/");
	assert_string_equal(problem_pointer(buf, sizeof(buf), "/abcde", "/"), "/abcde/");
	assert_string_equal(problem_pointer(buf, 1, "/a", "b"), "");
	buf[0] = 'x';
	problem_pointer(buf, 0, "/a", "b"); /* size 0: nothing written */
	assert_int_equal(buf[0], 'x');
}

static void test_error_cap(void **state)
{
	struct problem p;
	json_t *j;

	problem_init(&p, 422, NULL, "Validation failed");
	for (int i = 0; i < PROBLEM_MAX_ERRORS + 25; i++)
		problem_add_error(&p, "/x", "error %d", i);
	assert_int_equal(p.n_errors, PROBLEM_MAX_ERRORS);
	assert_int_equal(p.n_dropped, 25);
	j = problem_to_json(&p);
	assert_int_equal(json_array_size(json_object_get(j, "errors")), PROBLEM_MAX_ERRORS);
	assert_int_equal(json_integer_value(json_object_get(j, "errors_omitted")), 25);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(j, "errors"), 99), "message")),
			    "error 99");
	json_decref(j);
	problem_release(&p);
}

static void test_oom_is_500(void **state)
{
	struct problem p;
	json_t *j;

	problem_init(&p, 422, NULL, "Validation failed");
	problem_add_error(&p, "/a", "x");
	p.oom = true; /* what a failed allocation while recording leaves behind */
	j = problem_to_json(&p);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 500);
	assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "out of memory"));
	json_decref(j);
	problem_release(&p);
}

static void test_bad_status_never_on_wire(void **state)
{
	struct problem p;
	json_t *j;

	problem_init(&p, 0, NULL, NULL); /* caller forgot to set a status */
	j = problem_to_json(&p);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 500);
	json_decref(j);
	p.status = 1000;
	j = problem_to_json(&p);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 500);
	json_decref(j);
	problem_release(&p);
}

static void test_invalid_utf8_is_replaced(void **state)
{
	struct problem p;
	json_t *j;
	const char *m;

	problem_init(&p, 400, NULL, "Bad \xff title");
	/* a stray byte, a truncated sequence, an overlong '/', a surrogate, and valid é and 😀 */
	problem_add_error(&p, "/k\xc3",
			  "a\xff b\xe2\x82 c\xc0\xaf d\xed\xa0\x80 \xc3\xa9\xf0\x9f\x98\x80");
	j = problem_to_json(&p);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "title")),
			    "Bad \xef\xbf\xbd title");
	m = json_string_value(
		json_object_get(json_array_get(json_object_get(j, "errors"), 0), "message"));
	assert_string_equal(m, "a\xef\xbf\xbd b\xef\xbf\xbd\xef\xbf\xbd c\xef\xbf\xbd\xef\xbf\xbd "
			       "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xc3\xa9\xf0\x9f\x98\x80");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(j, "errors"), 0), "pointer")),
			    "/k\xef\xbf\xbd");
	json_decref(j);
	problem_release(&p);
}

static void test_from_json_roundtrip(void **state)
{
	struct problem p, q;
	json_t *j;
	char *a, *b;

	problem_init(&p, 422, "urn:x", "Validation failed");
	problem_set_detail(&p, "d");
	for (int i = 0; i < PROBLEM_MAX_ERRORS + 3; i++)
		problem_add_error(&p, "/p", "m%d", i);
	j = problem_to_json(&p);
	assert_int_equal(problem_from_json(j, &q), 0);
	assert_int_equal(q.status, 422);
	assert_string_equal(q.type, "urn:x");
	assert_string_equal(q.detail, "d");
	assert_int_equal(q.n_errors, PROBLEM_MAX_ERRORS);
	assert_int_equal(q.n_dropped, 3); /* errors_omitted survives the trip */
	a = problem_to_string(&p);
	b = problem_to_string(&q);
	assert_string_equal(a, b);
	free(a);
	free(b);
	json_decref(j);
	problem_release(&p);
	problem_release(&q);
}

static void test_from_json_lenient_members(void **state)
{
	/* extensions are ignored; errors without a message are skipped; a missing pointer is "" */
	json_t *j = json_pack("{s:i, s:s, s:[{s:s}, {s:s}, {s:i}], s:b}", "status", 409, "title",
			      "Conflict", "errors", "message", "no pointer", "pointer", "/only",
			      "pointer", 3, "instance_extension", 1);
	struct problem q;

	assert_int_equal(problem_from_json(j, &q), 0);
	assert_int_equal(q.status, 409);
	assert_null(q.type);
	assert_int_equal(q.n_errors, 1);
	assert_string_equal(q.errors[0].pointer, "");
	assert_string_equal(q.errors[0].message, "no pointer");
	problem_release(&q);
	json_decref(j);
}

static void test_from_json_rejects(void **state)
{
	struct problem q;
	json_t *j;

	j = json_array();
	assert_int_equal(problem_from_json(j, &q), -EINVAL);
	json_decref(j);
	j = json_pack("{s:s}", "title", "no status");
	assert_int_equal(problem_from_json(j, &q), -EINVAL);
	json_decref(j);
	j = json_pack("{s:i}", "status", 99);
	assert_int_equal(problem_from_json(j, &q), -EINVAL);
	json_decref(j);
	j = json_pack("{s:i}", "status", 600);
	assert_int_equal(problem_from_json(j, &q), -EINVAL);
	json_decref(j);
	j = json_pack("{s:s}", "status", "400");
	assert_int_equal(problem_from_json(j, &q), -EINVAL);
	json_decref(j);
	assert_int_equal(problem_from_json(NULL, &q), -EINVAL);
}

static void test_recording_oom(void **state)
{
	struct problem p;
	char *s;

	/* every recording call survives allocation failure and marks the problem */
	alloc_fault_arm_all();
	problem_init(&p, 422, "urn:x", "T");
	assert_true(alloc_fault_disarm());
	assert_true(p.oom);
	assert_null(p.type);
	assert_null(p.title);
	problem_release(&p);

	problem_init(&p, 422, "urn:x", "T");
	problem_add_error(&p, "/a", "kept");
	alloc_fault_arm_all();
	problem_add_error(&p, "/b", "lost %d", 1); /* vasprintf fails */
	problem_set_detail(&p, "lost");
	problem_set(&p, 0, NULL, "lost title");
	assert_true(alloc_fault_disarm());
	assert_true(p.oom);
	assert_int_equal(p.n_errors, 1);
	assert_string_equal(p.title, "T"); /* a failed replacement keeps the old value */
	assert_null(p.detail);
	s = problem_to_string(&p);
	assert_non_null(strstr(s, "\"status\":500"));
	assert_non_null(strstr(s, "out of memory"));
	free(s);
	problem_release(&p);

	/* growth of the error array fails at the 9th error (initial capacity 8) */
	problem_init(&p, 422, NULL, NULL);
	for (int i = 0; i < 8; i++)
		problem_add_error(&p, "/x", "e%d", i);
	alloc_fault_arm_all();
	problem_add_error(&p, "/x", "e8");
	assert_true(alloc_fault_disarm());
	assert_true(p.oom);
	assert_int_equal(p.n_errors, 8);
	problem_release(&p);
}

/* What a handler records: type, title, detail, nine errors (the array grows once), a new title. */
static void record(struct problem *p)
{
	problem_init(p, 422, "urn:x", "T");
	problem_set_detail(p, "%d invalid", 9);
	for (int i = 0; i < 9; i++)
		problem_add_error(p, "/x", "e%d", i);
	problem_set(p, 0, NULL, "T2");
}

static void test_recording_every_failure_point(void **state)
{
	long n;

	/* each allocation of record() failing alone: the problem is marked, what it kept is whole
	 * (no error with a NULL member), it still serialises (as a 500) and nothing leaks */
	for (n = 0;; n++) {
		struct problem p;
		json_t *j;
		bool hit;

		alloc_fault_arm(n);
		record(&p);
		hit = alloc_fault_disarm();
		if (!hit) {
			assert_false(p.oom);
			assert_int_equal(p.n_errors, 9);
			problem_release(&p);
			break;
		}
		assert_true(p.oom);
		assert_true(p.n_errors <= 9);
		for (size_t i = 0; i < p.n_errors; i++) {
			assert_non_null(p.errors[i].pointer);
			assert_non_null(p.errors[i].message);
		}
		j = problem_to_json(&p);
		assert_non_null(j);
		assert_int_equal(json_integer_value(json_object_get(j, "status")), 500);
		json_decref(j);
		problem_release(&p);
	}
	assert_true(n > 0); /* record() allocates: the loop did inject failures */
}

static void test_to_json_oom(void **state)
{
	struct problem p;

	/* the U+FFFD replacement of invalid UTF-8 needs a buffer: without it, NULL (not a
	 * document missing its title) */
	problem_init(&p, 400, NULL, "Bad \xff title");
	problem_add_error(&p, "/a", "x");
	alloc_fault_arm_all();
	assert_null(problem_to_json(&p));
	assert_null(problem_to_string(&p));
	assert_true(alloc_fault_disarm());
	problem_release(&p);
}

static void test_from_json_oom(void **state)
{
	json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:[{s:s, s:s}, {s:s, s:s}]}", "status", 422,
			      "type", "urn:x", "title", "T", "detail", "d", "errors", "pointer",
			      "/a", "message", "m1", "pointer", "/b", "message", "m2");
	struct problem q;
	long n;

	assert_non_null(j);
	alloc_fault_arm_all();
	assert_int_equal(problem_from_json(j, &q), -ENOMEM);
	assert_true(alloc_fault_disarm());
	/* nothing half-decoded is handed back (and nothing leaks) */
	assert_null(q.type);
	assert_null(q.title);
	assert_null(q.errors);
	assert_int_equal(q.n_errors, 0);

	for (n = 0;; n++) {
		int r;

		alloc_fault_arm(n);
		r = problem_from_json(j, &q);
		if (!alloc_fault_disarm()) {
			assert_int_equal(r, 0);
			assert_int_equal(q.n_errors, 2);
			assert_string_equal(q.detail, "d");
			problem_release(&q);
			break;
		}
		assert_int_equal(r, -ENOMEM);
		assert_null(q.title);
		assert_int_equal(q.n_errors, 0);
	}
	assert_true(n > 0);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_and_serialise),
		cmocka_unit_test(test_defaults_about_blank),
		cmocka_unit_test(test_set_replaces),
		cmocka_unit_test(test_pointer_escaping),
		cmocka_unit_test(test_pointer_truncation),
		cmocka_unit_test(test_error_cap),
		cmocka_unit_test(test_oom_is_500),
		cmocka_unit_test(test_bad_status_never_on_wire),
		cmocka_unit_test(test_invalid_utf8_is_replaced),
		cmocka_unit_test(test_from_json_roundtrip),
		cmocka_unit_test(test_from_json_lenient_members),
		cmocka_unit_test(test_from_json_rejects),
		cmocka_unit_test(test_recording_oom),
		cmocka_unit_test(test_recording_every_failure_point),
		cmocka_unit_test(test_to_json_oom),
		cmocka_unit_test(test_from_json_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
