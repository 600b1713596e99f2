/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for taskctl's pure parts: the token picked from taskd's and deployd's token files
 * (agent/taskctl_token) and the events table (agent/taskctl_events). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/taskctl_events.h"
#include "agent/taskctl_token.h"

#define ADMIN "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define AGENT "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define TEAM "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define ADMIN2 "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

/* pick from a C string; returns the code, the token (or NULL) in *tok, the message in err */
static int pick(const char *text, const char *role, char **tok, struct cd_error *err)
{
	*tok = NULL;
	cd_error_reset(err);
	return taskctl_token_pick(text, strlen(text), role, tok, err);
}

static void test_token_taskd_file(void **state)
{
	struct cd_error err;
	char *tok;

	assert_int_equal(pick(ADMIN "\n", NULL, &tok, &err), 0);
	assert_string_equal(tok, ADMIN);
	free(tok);
	assert_int_equal(pick("  " AGENT "\r\n\n", NULL, &tok, &err), 0);
	assert_string_equal(tok, AGENT);
	free(tok);
	/* no trailing newline at all */
	assert_int_equal(pick(TEAM, NULL, &tok, &err), 0);
	assert_string_equal(tok, TEAM);
	free(tok);
}

static void test_token_deployd_file(void **state)
{
	const char *file = "# deployd bearer tokens: <role> <token>\n"
			   "agent " AGENT "\n"
			   "\n"
			   "team:foo_team\t" TEAM "   # the foo team\r\n"
			   "admin " ADMIN "\n"
			   "admin " ADMIN2 "\n";
	struct cd_error err;
	char *tok;

	/* no --role: the first admin, wherever it is */
	assert_int_equal(pick(file, NULL, &tok, &err), 0);
	assert_string_equal(tok, ADMIN);
	free(tok);
	assert_int_equal(pick(file, "agent", &tok, &err), 0);
	assert_string_equal(tok, AGENT);
	free(tok);
	/* comments and CR are not part of the token */
	assert_int_equal(pick(file, "team:foo_team", &tok, &err), 0);
	assert_string_equal(tok, TEAM);
	free(tok);
	assert_int_equal(pick(file, "admin", &tok, &err), 0);
	assert_string_equal(tok, ADMIN);
	free(tok);
}

static void test_token_missing_role(void **state)
{
	const char *file = "agent " AGENT "\nteam:foo_team " TEAM "\nagent " ADMIN2 "\n";
	struct cd_error err;
	char *tok;

	/* no admin: the roles present, once each, and never a token */
	assert_int_equal(pick(file, NULL, &tok, &err), -ENOENT);
	assert_null(tok);
	assert_non_null(strstr(err.msg, "no admin token"));
	assert_non_null(strstr(err.msg, "roles in the file: agent, team:foo_team ("));
	assert_null(strstr(err.msg, AGENT));
	assert_null(strstr(err.msg, TEAM));
	assert_null(strstr(err.msg, "cccc"));
	assert_int_equal(pick(file, "team:bar", &tok, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no token for role 'team:bar'"));
	assert_non_null(strstr(err.msg, "agent, team:foo_team"));
	/* a role prefix is not the role */
	assert_int_equal(pick(file, "team", &tok, &err), -ENOENT);
	/* a role from taskd's one-token file cannot be chosen */
	assert_int_equal(pick(ADMIN "\n", "admin", &tok, &err), -EDOM);
	assert_null(strstr(err.msg, ADMIN));
}

static void test_token_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"\n  \n# only a comment\n",
		"admin " ADMIN " extra\n",
		ADMIN "\n" AGENT "\n",
		"admin " ADMIN "\n" AGENT "\n",
		AGENT "\nadmin " ADMIN "\n",
	};
	struct cd_error err;
	char *tok;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(pick(bad[i], NULL, &tok, &err), -EINVAL);
		assert_null(tok);
		assert_null(strstr(err.msg, "aaaa"));
		assert_null(strstr(err.msg, "bbbb"));
	}
	/* the line is named */
	assert_int_equal(pick("admin " ADMIN "\n\nx y z\n", NULL, &tok, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "line 3"));
	/* a NUL byte is not a line end */
	assert_int_equal(taskctl_token_pick("admin\0x " ADMIN, 8 + 64, NULL, &tok, &err), -EINVAL);
}

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
	static const char *const omit[] = { "version", "ports", NULL };
	char buf[256], small[16];

	/* key order, strings bare unless they hold blanks, everything else compact JSON */
	/* key order, strings bare unless they hold blanks, everything else compact JSON, no null */
	assert_string_equal(taskctl_event_data_summary(data, NULL, buf, sizeof(buf)),
			    "healthy=true host_id=w1 ports=[80,443] reqs={\"hosts\":2} version=4 "
			    "why=\"rolling update\"");
	/* what other columns show can be left out */
	assert_string_equal(taskctl_event_data_summary(data, omit, buf, sizeof(buf)),
			    "healthy=true host_id=w1 reqs={\"hosts\":2} why=\"rolling update\"");
	/* cut to the buffer, with "..." */
	assert_string_equal(taskctl_event_data_summary(data, NULL, small, sizeof(small)),
			    "healthy=true...");
	assert_string_equal(taskctl_event_data_summary(NULL, NULL, buf, sizeof(buf)), "");
	assert_string_equal(taskctl_event_data_summary(s, NULL, buf, sizeof(buf)), "plain");
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
	json_t *t = json_pack("{s:I, s:s, s:s, s:s, s:{s:s, s:s, s:i, s:n}}", "seq", (json_int_t)5,
			      "ts", "2026-11-26T01:02:03.456Z", "task_id", "01a2task", "type",
			      "state", "data", "state", "DONE", "reason", "exited", "exit_code", 3,
			      "signal");
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
	/* taskd's wide DATA leaves out the state and reason of their columns */
	r = row(TASKCTL_EVENTS_TASKD, t, true, false);
	assert_non_null(strstr(r, " exited "));
	assert_non_null(strstr(r, " exit_code=3\n"));
	assert_null(strstr(r, "state="));
	assert_null(strstr(r, "reason="));
	assert_null(strstr(r, "signal="));
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
		cmocka_unit_test(test_token_taskd_file),
		cmocka_unit_test(test_token_deployd_file),
		cmocka_unit_test(test_token_missing_role),
		cmocka_unit_test(test_token_malformed),
		cmocka_unit_test(test_events_cursor),
		cmocka_unit_test(test_events_data_summary),
		cmocka_unit_test(test_events_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
