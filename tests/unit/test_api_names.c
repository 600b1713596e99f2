/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for api/names: targets, artifacts, digests, job and task URLs (parse, format,
 * round trip, precise errors). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/names.h"

#define HEX40 "0123456789abcdef0123456789abcdef01234567"
#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void assert_msg(const struct cd_error *err, const char *want)
{
	assert_int_equal(err->code, -EINVAL);
	if (!strstr(err->msg, want))
		fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
}

static void target_bad(const char *s, const char *want)
{
	struct cd_error err = { 0 };
	struct target t;

	memset(&t, 0x5a, sizeof(t));
	assert_int_equal(target_parse(s, &t, &err), -EINVAL);
	assert_msg(&err, want);
	/* ret is written only on success */
	assert_int_equal((unsigned char)t.package[0], 0x5a);
}

static void target_roundtrip(const char *s, const char *pkg, const char *name, const char *canon)
{
	struct target t, t2;
	char buf[TARGET_MAX_LEN + 1];

	assert_int_equal(target_parse(s, &t, NULL), 0);
	assert_string_equal(t.package, pkg);
	assert_string_equal(t.name, name);
	assert_int_equal(target_format(&t, buf, sizeof(buf)), (int)strlen(canon));
	assert_string_equal(buf, canon);
	assert_int_equal(target_parse(buf, &t2, NULL), 0);
	assert_true(target_equal(&t, &t2));
}

static void test_target_valid(void **state)
{
	target_roundtrip("//repo/foo_service:main", "repo/foo_service", "main",
			 "//repo/foo_service:main");
	target_roundtrip("//a:b", "a", "b", "//a:b");
	target_roundtrip("//:root", "", "root", "//:root");
	target_roundtrip("//x-y/z.w/_q:n+1.v-2_", "x-y/z.w/_q", "n+1.v-2_",
			 "//x-y/z.w/_q:n+1.v-2_");
	target_roundtrip("//a/..b/c..:...", "a/..b/c..", "...", "//a/..b/c..:...");
	target_roundtrip("//a-/b-c:d-", "a-/b-c", "d-", "//a-/b-c:d-");
}

static void test_target_shorthand(void **state)
{
	/* "//pkg" means "//pkg:<last segment>"; the canonical form always has the colon */
	target_roundtrip("//repo/foo_service", "repo/foo_service", "foo_service",
			 "//repo/foo_service:foo_service");
	target_roundtrip("//tools", "tools", "tools", "//tools:tools");
}

static void test_target_invalid(void **state)
{
	target_bad("", "must start with \"//\"");
	target_bad("repo:main", "must start with \"//\"");
	target_bad("/repo:main", "must start with \"//\"");
	target_bad("//", "neither a package nor a target");
	target_bad("//:", "name after ':' is empty");
	target_bad("//a:", "name after ':' is empty");
	target_bad("///a:b", "segment 1 is empty (offset 2)");
	target_bad("//a//b:c", "segment 2 is empty (offset 4)");
	target_bad("//a/:c", "segment 2 is empty");
	target_bad("//a/b/", "segment 3 is empty");
	target_bad("//a/./b:c", "segment 2 must not be \".\"");
	target_bad("//a/..:c", "segment 2 must not be \"..\"");
	target_bad("//..", "segment 1 must not be \"..\"");
	target_bad("//a:.", "name must not be \".\"");
	target_bad("//a:..", "name must not be \"..\"");
	target_bad("//-rf:x", "segment 1 must not start with '-'");
	target_bad("//a/-b:x", "segment 2 must not start with '-'");
	target_bad("//a:-j", "name must not start with '-'");
	target_bad("//a/-j", "segment 2 must not start with '-'");
	target_bad("//a b:c", "invalid character ' ' at offset 3");
	target_bad("//a+b:c", "package has invalid character '+'");
	target_bad("//a:b:c", "name has invalid character ':' at offset 5");
	target_bad("//a:b/c", "name has invalid character '/'");
	target_bad("//a:b@c", "name has invalid character '@'");
	target_bad("//a\x01:b", "'\\x01'");
	target_bad("//\xc3\xa9:b", "'\\xc3' at offset 2");
	target_bad("//a:b\n", "'\\x0a'");
}

static void test_target_length(void **state)
{
	char buf[TARGET_MAX_LEN + 2], out[TARGET_MAX_LEN + 1];
	struct target t;

	/* "//" + 252 'a' + ":b" = 256: the limit exactly */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "//", 2);
	memcpy(buf + 254, ":b", 2);
	buf[256] = '\0';
	assert_int_equal(target_parse(buf, &t, NULL), 0);
	assert_int_equal(target_format(&t, out, sizeof(out)), 256);
	/* 257 */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "//", 2);
	memcpy(buf + 255, ":b", 2);
	buf[257] = '\0';
	target_bad(buf, "is 257 bytes long; the limit is 256");
	/* shorthand whose canonical form would exceed the limit */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "//", 2);
	buf[200] = '/';
	buf[256] = '\0';
	target_bad(buf, "canonical form");
}

static void test_target_format_errors(void **state)
{
	struct target t = { .package = "a/b", .name = "c" };
	char small[6];

	assert_int_equal(target_format(&t, small, sizeof(small)), -ENOBUFS);
	assert_string_equal(small, "");
	/* a struct that does not hold a valid target is never formatted */
	strcpy(t.package, "a/../b");
	assert_int_equal(target_format(&t, small, 0), -ENOBUFS);
	{
		char big[TARGET_MAX_LEN + 1];

		assert_int_equal(target_format(&t, big, sizeof(big)), -EINVAL);
		strcpy(t.package, "a");
		strcpy(t.name, "");
		assert_int_equal(target_format(&t, big, sizeof(big)), -EINVAL);
		/* a package with ':' would re-parse differently */
		strcpy(t.package, "a:b");
		strcpy(t.name, "c");
		assert_int_equal(target_format(&t, big, sizeof(big)), -EINVAL);
	}
}

static void test_artifact(void **state)
{
	struct cd_error err = { 0 };
	struct artifact a, b;
	char buf[ARTIFACT_MAX_LEN + 1];

	assert_int_equal(artifact_parse("//repo/foo:main@" HEX40, &a, NULL), 0);
	assert_string_equal(a.target.package, "repo/foo");
	assert_string_equal(a.target.name, "main");
	assert_string_equal(a.commit, HEX40);
	assert_int_equal(artifact_format(&a, buf, sizeof(buf)),
			 (int)strlen("//repo/foo:main@" HEX40));
	assert_string_equal(buf, "//repo/foo:main@" HEX40);
	assert_int_equal(artifact_parse(buf, &b, NULL), 0);
	assert_true(artifact_equal(&a, &b));

	assert_int_equal(artifact_parse("//repo/foo@" HEX64, &a, NULL), 0);
	assert_string_equal(a.target.name, "foo");
	assert_int_equal(artifact_format(&a, buf, sizeof(buf)), 14 + 1 + 64);
	assert_string_equal(buf, "//repo/foo:foo@" HEX64);

	assert_int_equal(artifact_parse("//repo/foo:main", &a, &err), -EINVAL);
	assert_msg(&err, "\"@<commit>\" is missing");
}

static void test_artifact_bad_commit(void **state)
{
	static const struct {
		const char *s, *want;
	} cases[] = {
		{ "//a:b@", "40 or 64 hex digits" },
		{ "//a:b@abc", "has 3 characters" },
		{ "//a:b@" HEX40 "0", "has 41 characters" },
		{ "//a:b@0123456789ABCDEF0123456789abcdef01234567", "lowercase" },
		{ "//a:b@0123456789xbcdef0123456789abcdef01234567",
		  "non-hex character at offset 10" },
		{ "//a:b@" HEX40 "@" HEX40, "has 81 characters" },
		{ "//a:@" HEX40, "name after ':' is empty" },
		{ "a:b@" HEX40, "must start with" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cd_error err = { 0 };
		struct artifact a;

		assert_int_equal(artifact_parse(cases[i].s, &a, &err), -EINVAL);
		assert_msg(&err, cases[i].want);
	}
}

static void test_artifact_ref(void **state)
{
	struct artifact a;
	char buf[ARTIFACT_MAX_LEN + 1];

	assert_int_equal(artifact_parse_ref("//a/b:c", &a, NULL), 0);
	assert_string_equal(a.commit, "");
	assert_int_equal(artifact_format(&a, buf, sizeof(buf)), 7);
	assert_string_equal(buf, "//a/b:c");
	assert_int_equal(artifact_parse_ref("//a/b:c@" HEX40, &a, NULL), 0);
	assert_string_equal(a.commit, HEX40);
	assert_int_equal(artifact_parse_ref("//a/b:c@", &a, NULL), -EINVAL);
	assert_int_equal(artifact_parse_ref(NULL, &a, NULL), -EINVAL);
	/* a too-long target before '@' */
	{
		char big[400];

		memset(big, 'a', sizeof(big));
		memcpy(big, "//", 2);
		big[300] = ':';
		big[301] = 'b';
		big[302] = '@';
		strcpy(big + 303, HEX40);
		assert_int_equal(artifact_parse_ref(big, &a, NULL), -EINVAL);
	}
}

static void test_digest(void **state)
{
	struct cd_error err = { 0 };
	struct digest d, d2;
	char buf[DIGEST_STR_LEN + 1];

	assert_int_equal(digest_parse("sha256:" HEX64, &d, NULL), 0);
	assert_string_equal(d.hex, HEX64);
	assert_int_equal(digest_format(&d, buf, sizeof(buf)), DIGEST_STR_LEN);
	assert_string_equal(buf, "sha256:" HEX64);
	assert_int_equal(digest_parse(buf, &d2, NULL), 0);
	assert_string_equal(d.hex, d2.hex);
	assert_int_equal(digest_format(&d, buf, DIGEST_STR_LEN), -ENOBUFS);
	assert_int_equal(digest_parse_hex(HEX64, &d2, NULL), 0);

	assert_int_equal(digest_parse("md5:" HEX64, &d, &err), -EINVAL);
	assert_msg(&err, "algorithm \"md5\" is not supported");
	cd_error_reset(&err);
	assert_int_equal(digest_parse(HEX64, &d, &err), -EINVAL);
	assert_msg(&err, "must be \"sha256:<64 hex digits>\"");
	cd_error_reset(&err);
	assert_int_equal(digest_parse("sha256:" HEX40, &d, &err), -EINVAL);
	assert_msg(&err, "64 hex digits, has 40");
	cd_error_reset(&err);
	assert_int_equal(digest_parse("SHA256:" HEX64, &d, &err), -EINVAL);
	assert_msg(&err, "not supported");
	cd_error_reset(&err);
	assert_int_equal(digest_parse("sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef"
				      "0123456789abcdef",
				      &d, &err),
			 -EINVAL);
	assert_msg(&err, "lowercase");
	cd_error_reset(&err);
	assert_int_equal(digest_parse("sha256:g123456789abcdef0123456789abcdef0123456789abcdef"
				      "0123456789abcdef",
				      &d, &err),
			 -EINVAL);
	assert_msg(&err, "non-hex character at offset 0");
	/* invalid struct */
	memset(d.hex, 'z', DIGEST_HEX_LEN);
	assert_int_equal(digest_format(&d, buf, sizeof(buf)), -EINVAL);
}

static void test_dns_labels(void **state)
{
	struct cd_error err = { 0 };
	char l63[64], l64[65];

	assert_int_equal(dns_label_check("us-east", "region", NULL), 0);
	assert_int_equal(dns_label_check("a", "region", NULL), 0);
	assert_int_equal(dns_label_check("0a-9", "region", NULL), 0);
	memset(l63, 'a', 63);
	l63[63] = '\0';
	memset(l64, 'a', 64);
	l64[64] = '\0';
	assert_int_equal(dns_label_check(l63, "job name", NULL), 0);
	assert_int_equal(dns_label_check(l64, "job name", &err), -EINVAL);
	assert_msg(&err, "job name is 64 characters long; the limit is 63");
	cd_error_reset(&err);
	assert_int_equal(dns_label_check("", "region", &err), -EINVAL);
	assert_msg(&err, "region is empty");
	cd_error_reset(&err);
	assert_int_equal(dns_label_check("-a", "region", &err), -EINVAL);
	assert_msg(&err, "must not start or end with '-'");
	cd_error_reset(&err);
	assert_int_equal(dns_label_check("a-", "region", &err), -EINVAL);
	assert_msg(&err, "must not start or end with '-'");
	cd_error_reset(&err);
	assert_int_equal(dns_label_check("Us-east", "region", &err), -EINVAL);
	assert_msg(&err, "region must be lowercase");
	cd_error_reset(&err);
	assert_int_equal(dns_label_check("us_east", "region", &err), -EINVAL);
	assert_msg(&err, "invalid character '_' at offset 2");
}

static void test_zone_check(void **state)
{
	struct cd_error err = { 0 };

	assert_int_equal(zone_check("us-east", "us-east-1", NULL), 0);
	assert_int_equal(zone_check("eu", "eu-west-1", NULL), 0);
	assert_int_equal(zone_check("us-east", "us-east1", &err), -EINVAL);
	assert_msg(&err, "not in region \"us-east\"");
	assert_int_equal(zone_check("us-east", "us-east", NULL), -EINVAL);
	assert_int_equal(zone_check("us-east", "us-east-", NULL), -EINVAL);
	assert_int_equal(zone_check("us-east", "eu-west-1", NULL), -EINVAL);
	assert_int_equal(zone_check("us", "us-east-1", NULL), 0);
}

static void test_job_url(void **state)
{
	struct job_url u, u2;
	char buf[JOB_URL_MAX_LEN + 1];

	assert_int_equal(job_url_parse("job://us-east/us-east-1/foo-service", &u, NULL), 0);
	assert_string_equal(u.region, "us-east");
	assert_string_equal(u.zone, "us-east-1");
	assert_string_equal(u.name, "foo-service");
	assert_int_equal(job_url_format(&u, buf, sizeof(buf)), 35);
	assert_string_equal(buf, "job://us-east/us-east-1/foo-service");
	assert_int_equal(job_url_parse(buf, &u2, NULL), 0);
	assert_true(job_url_equal(&u, &u2));
	assert_int_equal(job_url_format(&u, buf, 10), -ENOBUFS);
	assert_int_equal(job_url_from_parts("eu-west", "eu-west-1", "x", &u, NULL), 0);
	assert_int_equal(job_url_format(&u, buf, sizeof(buf)), 25);
	assert_string_equal(buf, "job://eu-west/eu-west-1/x");

	/* maximum lengths fit the buffer size macro */
	{
		char l[64], url[256];

		memset(l, 'a', 63);
		l[63] = '\0';
		snprintf(url, sizeof(url), "job://%s/%.61s-1/%s", l, l, l);
		/* the zone's region prefix must match: use a region of 61 */
		snprintf(url, sizeof(url), "job://%.61s/%.61s-1/%s", l, l, l);
		assert_int_equal(job_url_parse(url, &u, NULL), 0);
		assert_int_equal(job_url_format(&u, buf, sizeof(buf)), (int)strlen(url));
	}
}

static void test_job_url_invalid(void **state)
{
	static const struct {
		const char *s, *want;
	} cases[] = {
		{ "", "must start with \"job://\"" },
		{ "task://us-east/us-east-1/x", "must start with \"job://\"" },
		{ "JOB://us-east/us-east-1/x", "must start with \"job://\"" },
		{ "job://us-east", "has no zone" },
		{ "job://us-east/us-east-1", "has no job name" },
		{ "job://us-east/us-east-1/x/y", "extra text after the job name" },
		{ "job://us-east/us-east-1/x/", "extra text after the job name" },
		{ "job:///us-east-1/x", "empty region" },
		{ "job://us-east//x", "empty zone" },
		{ "job://us-east/us-east-1/", "empty job name" },
		{ "job://us-east/eu-west-1/x", "not in region" },
		{ "job://us-east/us-east-1/Foo", "job name must be lowercase" },
		{ "job://us-east/us-east-1/-x", "job name must not start or end with '-'" },
		{ "job://us_east/us_east-1/x", "region has invalid character '_'" },
		{ "job://us-east/us-east-1/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "job name is 64 characters long; the limit is 63" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cd_error err = { 0 };
		struct job_url u;

		assert_int_equal(job_url_parse(cases[i].s, &u, &err), -EINVAL);
		assert_msg(&err, cases[i].want);
	}
	assert_int_equal(job_url_parse(NULL, &(struct job_url){}, NULL), -EINVAL);
}

static void test_task_url(void **state)
{
	struct task_url u, u2;
	char buf[TASK_URL_MAX_LEN + 1];
	const char *s = "task://us-east/us-east-1/foo/0193b2c4d5e6f708192a3b4c5d6e";

	assert_int_equal(task_url_parse(s, &u, NULL), 0);
	assert_string_equal(u.job.region, "us-east");
	assert_string_equal(u.job.zone, "us-east-1");
	assert_string_equal(u.job.name, "foo");
	assert_string_equal(u.task_id, "0193b2c4d5e6f708192a3b4c5d6e");
	assert_int_equal(task_url_format(&u, buf, sizeof(buf)), (int)strlen(s));
	assert_string_equal(buf, s);
	assert_int_equal(task_url_parse(buf, &u2, NULL), 0);
	assert_true(task_url_equal(&u, &u2));
	/* task ids may start with '-' or a digit; 64 chars max */
	assert_int_equal(task_url_parse("task://a/a-b/c/-0", &u, NULL), 0);
	strcpy(u.task_id, "BAD");
	assert_int_equal(task_url_format(&u, buf, sizeof(buf)), -EINVAL);
}

static void test_task_url_invalid(void **state)
{
	static const struct {
		const char *s, *want;
	} cases[] = {
		{ "job://us-east/us-east-1/x/y", "must start with \"task://\"" },
		{ "task://us-east/us-east-1/x", "has no task id" },
		{ "task://us-east/us-east-1/x/", "empty task id" },
		{ "task://us-east/us-east-1/x/y/z", "extra text after the task id" },
		{ "task://us-east/us-east-1/x/Y", "task id must be lowercase" },
		{ "task://us-east/us-east-1/x/a.b", "task id has invalid character '.'" },
		{ "task://us-east/us-east-1/x/"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "task id is 65 characters long; the limit is 64" },
		{ "task://us-east/us-west-1/x/y", "not in region" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cd_error err = { 0 };
		struct task_url u;

		assert_int_equal(task_url_parse(cases[i].s, &u, &err), -EINVAL);
		assert_msg(&err, cases[i].want);
	}
}

static void test_commit_check(void **state)
{
	assert_int_equal(commit_check(HEX40, NULL), 0);
	assert_int_equal(commit_check(HEX64, NULL), 0);
	assert_int_equal(commit_check("", NULL), -EINVAL);
	assert_int_equal(commit_check(HEX40 "0", NULL), -EINVAL);
}

static void test_url_limits_and_parts(void **state)
{
	struct cd_error err = { 0 };
	struct task_url u;
	struct job_url j;
	char l63[64], id64[65], url[TASK_URL_MAX_LEN + 2], buf[TASK_URL_MAX_LEN + 1];

	memset(l63, 'a', 63);
	l63[63] = '\0';
	memset(id64, '7', 64);
	id64[64] = '\0';
	/* the longest valid task URL fits TASK_URL_MAX_LEN exactly */
	snprintf(url, sizeof(url), "task://%.61s/%.61s-1/%s/%s", l63, l63, l63, id64);
	assert_int_equal(task_url_parse(url, &u, NULL), 0);
	assert_int_equal(task_url_format(&u, buf, sizeof(buf)), (int)strlen(url));
	assert_true(strlen(url) <= TASK_URL_MAX_LEN);
	assert_string_equal(buf, url);

	assert_int_equal(job_url_from_parts("us-east", "us-east-1", "Web", &j, &err), -EINVAL);
	assert_msg(&err, "job name must be lowercase");
	cd_error_reset(&err);
	assert_int_equal(job_url_from_parts("", "us-east-1", "web", &j, &err), -EINVAL);
	assert_msg(&err, "region is empty");
	cd_error_reset(&err);
	assert_int_equal(job_url_from_parts("us-east", NULL, "web", &j, &err), -EINVAL);
	assert_msg(&err, "zone is missing");
	assert_int_equal(task_id_check("", NULL), -EINVAL);
	assert_int_equal(task_id_check(id64, NULL), 0);
}

static void test_digest_hex(void **state)
{
	struct cd_error err = { 0 };
	struct digest d;

	assert_int_equal(digest_parse_hex("", &d, &err), -EINVAL);
	assert_msg(&err, "64 hex digits, has 0");
	assert_int_equal(digest_parse_hex(NULL, &d, NULL), -EINVAL);
	assert_int_equal(digest_parse(NULL, &d, NULL), -EINVAL);
	assert_int_equal(digest_parse("sha256:", &d, NULL), -EINVAL);
	assert_int_equal(digest_parse(":" HEX64, &d, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target_valid),
		cmocka_unit_test(test_target_shorthand),
		cmocka_unit_test(test_target_invalid),
		cmocka_unit_test(test_target_length),
		cmocka_unit_test(test_target_format_errors),
		cmocka_unit_test(test_artifact),
		cmocka_unit_test(test_artifact_bad_commit),
		cmocka_unit_test(test_artifact_ref),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_dns_labels),
		cmocka_unit_test(test_zone_check),
		cmocka_unit_test(test_job_url),
		cmocka_unit_test(test_job_url_invalid),
		cmocka_unit_test(test_task_url),
		cmocka_unit_test(test_task_url_invalid),
		cmocka_unit_test(test_commit_check),
		cmocka_unit_test(test_url_limits_and_parts),
		cmocka_unit_test(test_digest_hex),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
