/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for taskctl's pure parts: the events table (agent/taskctl_events). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/taskctl_events.h"

static void test_events_cursor(void **state)
{
	json_t *d = json_pack("{s:I, s:s}", "id", (json_int_t)42, "kind", "job.put");
	json_t *t = json_pack("{s:I, s:s}", "seq", (json_int_t)7, "type", "state");

	assert_int_equal(taskctl_event_cursor(TASKCTL_EVENTS_DEPLOYD, d), 42);
	assert_int_equal(taskctl_event_cursor(TASKCTL_EVENTS_TASKD, t), 7);
	/* the other log's member is not a cursor: 0, which no event has */
	assert_int_equal(taskctl_event_cursor(TASKCTL_EVENTS_TASKD, d), 0);
	assert_int_equal(taskctl_event_cursor(TASKCTL_EVENTS_DEPLOYD, t), 0);
	json_decref(d);
	json_decref(t);
}

static void test_events_data_summary(void **state)
{
	json_t *data = json_pack("{s:s, s:i, s:b, s:n, s:s, s:{s:i}, s:[i,i]}", "why",
				 "rolling update", "version", 4, "healthy", 1, "reason", "host_id",
				 "w1", "reqs", "hosts", 2, "ports", 80, 443);
	json_t *s = json_string("plain");
	char buf[256], small[16];

	/* key order, strings bare unless they hold blanks, everything else compact JSON */
	assert_string_equal(taskctl_event_data_summary(data, buf, sizeof(buf)),
			    "healthy=true host_id=w1 ports=[80,443] reason=null reqs={\"hosts\":2} "
			    "version=4 why=\"rolling update\"");
	/* cut to the buffer, with "..." */
	assert_string_equal(taskctl_event_data_summary(data, small, sizeof(small)),
			    "healthy=true...");
	assert_string_equal(taskctl_event_data_summary(NULL, buf, sizeof(buf)), "");
	assert_string_equal(taskctl_event_data_summary(s, buf, sizeof(buf)), "plain");
	json_decref(data);
	json_decref(s);
}

/* the row of a deployd event in a table, read back from a memory stream */
static char *row(enum taskctl_events_source src, const json_t *e, bool wide, bool header)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	if (header)
		taskctl_event_header(f, src, wide);
	else
		taskctl_event_row(f, src, e, wide);
	fclose(f);
	return out;
}

static void test_events_rows(void **state)
{
	json_t *d = json_pack("{s:I, s:s, s:s, s:s, s:s, s:{s:i}}", "id", (json_int_t)12, "ts",
			      "2026-11-26T01:02:03.456Z", "actor", "team:foo", "kind", "job.put",
			      "subject", "job://us-east/us-east-1/web", "data", "version", 3);
	json_t *t = json_pack("{s:I, s:s, s:s, s:s, s:{s:s, s:s}}", "seq", (json_int_t)5, "ts",
			      "2026-11-26T01:02:03.456Z", "task_id", "01a2task", "type", "state",
			      "data", "state", "DONE", "reason", "exited");
	char *h, *r;
	char a[32], b[32], c[32], k[32], s[64], x[64];

	h = row(TASKCTL_EVENTS_DEPLOYD, NULL, false, true);
	assert_int_equal(sscanf(h, "%31s %31s %31s %31s %63s", a, b, c, k, s), 5);
	assert_string_equal(a, "ID");
	assert_string_equal(b, "TIME");
	assert_string_equal(c, "ACTOR");
	assert_string_equal(k, "KIND");
	assert_string_equal(s, "SUBJECT");
	assert_null(strstr(h, "DATA"));
	free(h);
	r = row(TASKCTL_EVENTS_DEPLOYD, d, false, false);
	assert_int_equal(sscanf(r, "%31s %31s %31s %31s %63s", a, b, c, k, s), 5);
	assert_string_equal(a, "12");
	assert_string_equal(b, "2026-11-26T01:02:03.456Z");
	assert_string_equal(c, "team:foo");
	assert_string_equal(k, "job.put");
	assert_string_equal(s, "job://us-east/us-east-1/web");
	assert_null(strstr(r, "version"));
	free(r);
	h = row(TASKCTL_EVENTS_DEPLOYD, NULL, true, true);
	assert_non_null(strstr(h, "SUBJECT"));
	assert_non_null(strstr(h, "DATA"));
	free(h);
	r = row(TASKCTL_EVENTS_DEPLOYD, d, true, false);
	assert_int_equal(sscanf(r, "%*s %*s %*s %*s %*s %63s", x), 1);
	assert_string_equal(x, "version=3");
	free(r);
	r = row(TASKCTL_EVENTS_TASKD, t, false, false);
	assert_int_equal(sscanf(r, "%31s %*s %31s %31s %31s %63s", a, b, c, k, s), 5);
	assert_string_equal(a, "5");
	assert_string_equal(b, "01a2task");
	assert_string_equal(c, "state");
	assert_string_equal(k, "DONE");
	assert_string_equal(s, "exited");
	free(r);
	json_decref(d);
	json_decref(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_events_cursor),
		cmocka_unit_test(test_events_data_summary),
		cmocka_unit_test(test_events_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
