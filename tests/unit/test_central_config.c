/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for central/config (deployd.conf + flags) and the deployd token file. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "central/config.h"
#include "central/deployd.h"
#include "lib/fs.h"

static char tmpdir[64];

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-dconf.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static int from_args(struct deployd_config *c, enum deployd_action *a, struct cd_error *err,
		     int argc, ...)
{
	char *argv[32];
	va_list ap;

	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	return deployd_config_from_args(c, argc, argv, a, err);
}

static void test_defaults(void **state)
{
	struct deployd_config c;
	char *p;

	assert_int_equal(deployd_config_init(&c), 0);
	assert_int_equal(c.roles, DEPLOYD_ROLE_ALL);
	assert_string_equal(c.listen, DEPLOYD_DEFAULT_LISTEN);
	assert_int_equal(c.heartbeat_interval_s, 5);
	assert_true(c.cas_public_read);
	assert_int_equal(deployd_config_validate(&c, NULL), 0);
	p = deployd_config_token_path(&c);
	assert_string_equal(p, DEPLOYD_DEFAULT_STATE_DIR "/deployd.token");
	free(p);
	p = deployd_config_db_url(&c);
	assert_string_equal(p, "sqlite://" DEPLOYD_DEFAULT_STATE_DIR "/deployd.db");
	free(p);
	p = deployd_config_advertise_url(&c);
	assert_string_equal(p, "http://" DEPLOYD_DEFAULT_LISTEN);
	free(p);
	deployd_config_release(&c);
}

static void test_parse_text(void **state)
{
	struct deployd_config c;
	struct cd_error err = {};

	assert_int_equal(deployd_config_init(&c), 0);
	assert_int_equal(deployd_config_parse_text(&c, "t.conf",
						   "# comment\n\n"
						   "zone = us-east-1 # trailing\n"
						   "region=us-east\n"
						   "role = cluster,artifacts\n"
						   "cas_max_bytes = 10G\n"
						   "cas_max_blob_bytes = 512M\n"
						   "require_if_match = yes\n"
						   "lost_after = 4\n",
						   &err),
			 0);
	assert_string_equal(c.zone, "us-east-1");
	assert_int_equal(c.roles, DEPLOYD_ROLE_CLUSTER | DEPLOYD_ROLE_ARTIFACTS);
	assert_int_equal(c.cas_max_bytes, 10ull << 30);
	assert_int_equal(c.cas_max_blob_bytes, 512ull << 20);
	assert_true(c.require_if_match);
	assert_int_equal(c.lost_after, 4);

	/* Errors name file and line. */
	assert_int_equal(deployd_config_parse_text(&c, "t.conf", "zone = a-1\nbogus = 1\n", &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "t.conf:2"));
	assert_non_null(strstr(err.msg, "bogus"));
	cd_error_reset(&err);
	assert_int_equal(deployd_config_parse_text(&c, "t.conf", "\n\nno equals sign\n", &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "t.conf:3"));
	cd_error_reset(&err);
	assert_int_equal(deployd_config_parse_text(&c, "t.conf", "lost_after = 0\n", &err),
			 -EINVAL);
	cd_error_reset(&err);
	assert_int_equal(deployd_config_parse_text(&c, "t.conf", "cas_max_bytes = 10X\n", &err),
			 -EINVAL);
	cd_error_reset(&err);
	assert_int_equal(deployd_config_parse_text(&c, "t.conf", "cas_max_bytes = 99999999999T\n",
						   &err),
			 -EINVAL);
	cd_error_reset(&err);
	assert_int_equal(deployd_config_parse_text(&c, "t.conf", "advertise_url = ftp://x\n", &err),
			 -EINVAL);
	cd_error_reset(&err);
	assert_int_equal(deployd_config_parse_text(&c, "t.conf", "role = cluster,nope\n", &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "nope"));
	deployd_config_release(&c);
}

/* The pipelines and builder roles' keys: same syntax as every key (trailing comments too). */
static void test_pipelines_keys(void **state)
{
	struct deployd_config c;
	struct cd_error err = {};

	assert_int_equal(deployd_config_init(&c), 0);
	assert_int_equal(c.n_pipelines_zones, 0);
	assert_int_equal(c.pipelines_runners, 2);
	assert_int_equal(c.pipelines_lease_s, 30);
	assert_int_equal(c.pipelines_poll_interval_s, 30);
	assert_int_equal(c.pipelines_dag_cache_dags, 16);
	assert_int_equal(c.pipelines_dag_cache_stages, 100000);
	assert_int_equal(c.pipelines_sandbox_builds, -1);
	assert_int_equal(c.events_retention_days, 90);
	assert_null(c.pipelines_artifacts_url);
	assert_int_equal(
		deployd_config_parse_text(
			&c, "t.conf",
			"pipelines_zone = us-east-1 us-east http://10.0.0.5:7400 /etc/u.token # one\n"
			"pipelines_zone=eu-west-1\teu-west   http://10.1.0.5:7400 /etc/e.token\n"
			"pipelines_artifacts_url = http://10.0.0.4:7400 # the store\n"
			"pipelines_artifacts_token_file = /etc/a.token\n"
			"pipelines_runners = 4 # threads\n"
			"pipelines_poll_interval_s = 5\n"
			"pipelines_lease_s = 2\n"
			"pipelines_sandbox_builds = no # trailing comment\n"
			"pipelines_dag_cache_dags = 64\n"
			"pipelines_dag_cache_stages = 250000\n"
			"pipelines_build_memory = 4G\n"
			"pipelines_build_storage = 512M # outputs\n"
			"pipelines_bazel_path = /opt/bazel/bin/bazel\n"
			"events_retention_days = 0 # keep forever\n",
			&err),
		0);
	assert_int_equal(c.n_pipelines_zones, 2);
	assert_string_equal(c.pipelines_zones[0].zone, "us-east-1");
	assert_string_equal(c.pipelines_zones[0].region, "us-east");
	assert_string_equal(c.pipelines_zones[0].url, "http://10.0.0.5:7400");
	assert_string_equal(c.pipelines_zones[0].token_file, "/etc/u.token");
	assert_string_equal(c.pipelines_zones[1].zone, "eu-west-1");
	assert_string_equal(c.pipelines_zones[1].token_file, "/etc/e.token");
	assert_string_equal(c.pipelines_artifacts_url, "http://10.0.0.4:7400");
	assert_string_equal(c.pipelines_artifacts_token_file, "/etc/a.token");
	assert_int_equal(c.pipelines_runners, 4);
	assert_int_equal(c.pipelines_poll_interval_s, 5);
	assert_int_equal(c.pipelines_lease_s, 2);
	assert_int_equal(c.pipelines_sandbox_builds, 0);
	assert_int_equal(c.pipelines_dag_cache_dags, 64);
	assert_int_equal(c.pipelines_dag_cache_stages, 250000);
	assert_true(c.pipelines_build_memory_bytes == UINT64_C(4) << 30);
	assert_true(c.pipelines_build_storage_bytes == UINT64_C(512) << 20);
	assert_string_equal(c.pipelines_bazel_path, "/opt/bazel/bin/bazel");
	assert_int_equal(c.events_retention_days, 0);
	deployd_config_release(&c);
}

/* Each bad pipelines line stops the parse with file:line and what is wrong. */
static void test_pipelines_errors(void **state)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{ "pipelines_zone = us-east-1 us-east http://x\n", "ZONE REGION URL TOKEN_FILE" },
		{ "pipelines_zone = us-east-1 us-east http://x /t extra\n", "got more" },
		{ "pipelines_zone = eu-west-1 us-east http://x /t\n", "eu-west-1" },
		{ "pipelines_zone = us-east-1 Us_East http://x /t\n", "region" },
		{ "pipelines_zone = us-east-1 us-east https://x /t\n", "http://" },
		{ "pipelines_zone = us-east-1 us-east http:// /t\n", "http://" },
		{ "pipelines_zone = us-east-1 us-east http://x t.token\n", "absolute" },
		{ "pipelines_zone = a-1 a http://x /t\npipelines_zone = a-1 a http://y /u\n",
		  "given twice" },
		{ "pipelines_artifacts_url = 10.0.0.4:7400\n", "http://" },
		{ "pipelines_artifacts_token_file = tokens\n", "absolute" },
		{ "pipelines_runners = 0\n", "1..64" },
		{ "pipelines_runners = 65\n", "1..64" },
		{ "pipelines_lease_s = 3601\n", "1..3600" },
		{ "pipelines_poll_interval_s = x\n", "1..86400" },
		{ "pipelines_sandbox_builds = maybe\n", "true or false" },
		{ "pipelines_dag_cache_dags = 0\n", "1..4096" },
		{ "pipelines_dag_cache_dags = 4097\n", "1..4096" },
		{ "pipelines_dag_cache_stages = 0\n", "1..10000000" },
		{ "pipelines_dag_cache_stages = 10000001\n", "1..10000000" },
		{ "pipelines_dag_cache_stages = -5\n", "1..10000000" },
		{ "pipelines_build_memory = 10M\n", "at least 64M" },
		{ "events_retention_days = 36501\n", "0..36500" },
		{ "pipelines_build_storage = lots\n", "at least 64M" },
		{ "pipelines_bazel_path = /opt/my bazel\n", "a path or a command name" },
		/* the old pipelines.conf spelling is not a deployd.conf line */
		{ "lease_s 2\n", "expected 'key = value'" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct deployd_config c;
		struct cd_error err = {};
		char line[32];

		assert_int_equal(deployd_config_init(&c), 0);
		/* two good lines first: the error names the line of the bad one */
		snprintf(line, sizeof(line),
			 "t.conf:%d:", 3 + (strstr(cases[i].want, "twice") ? 1 : 0));
		{
			char text[512];

			snprintf(text, sizeof(text), "# pipelines\npipelines_runners = 3\n%s",
				 cases[i].text);
			assert_int_equal(deployd_config_parse_text(&c, "t.conf", text, &err),
					 -EINVAL);
		}
		if (!strstr(err.msg, line) || !strstr(err.msg, cases[i].want))
			fail_msg("case %zu: '%s' for %s", i, err.msg, cases[i].text);
		deployd_config_release(&c);
	}

	/* 64 zones at most */
	{
		struct deployd_config c;
		struct cd_error err = {};
		char v[64];
		int r = 0;

		assert_int_equal(deployd_config_init(&c), 0);
		for (int i = 1; i <= DEPLOYD_PIPELINES_MAX_ZONES + 1 && r == 0; i++) {
			snprintf(v, sizeof(v), "r-%d r http://h%d /t", i, i);
			r = deployd_config_set(&c, "pipelines_zone", v, &err);
		}
		assert_int_equal(r, -EINVAL);
		assert_int_equal(c.n_pipelines_zones, DEPLOYD_PIPELINES_MAX_ZONES);
		assert_non_null(strstr(err.msg, "more than 64"));
		deployd_config_release(&c);
	}
}

/* A pipelines.conf left in the state directory by an earlier build stops the pipelines and
 * builder roles with one line saying what to move where; other roles never read it. */
static void test_legacy_pipelines_conf(void **state)
{
	struct deployd_config c;
	enum deployd_action a;
	struct cd_error err = {};
	char path[128];
	const char *old = "# old\nzone us-east-1 us-east http://x /t\nlease_s 2\n  runners 3\n"
			  "lease_s 3\n";

	assert_int_equal(deployd_config_init(&c), 0);
	assert_int_equal(from_args(&c, &a, &err, 5, "deployd", "--state-dir", tmpdir, "--role",
				   "pipelines"),
			 0);
	deployd_config_release(&c);

	snprintf(path, sizeof(path), "%s/pipelines.conf", tmpdir);
	assert_int_equal(fs_write_atomic(path, old, strlen(old), 0644), 0);
	assert_int_equal(deployd_config_init(&c), 0);
	assert_int_equal(from_args(&c, &a, &err, 5, "deployd", "--state-dir", tmpdir, "--role",
				   "builder"),
			 -EEXIST);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "pipelines_zone, pipelines_runners, pipelines_lease_s;"));
	assert_null(strstr(err.msg, "pipelines_poll_interval_s"));
	assert_null(strchr(err.msg, '\n'));
	deployd_config_release(&c);

	/* a cluster manager never read it */
	assert_int_equal(deployd_config_init(&c), 0);
	cd_error_reset(&err);
	assert_int_equal(from_args(&c, &a, &err, 5, "deployd", "--state-dir", tmpdir, "--role",
				   "cluster,artifacts"),
			 0);
	deployd_config_release(&c);

	/* only comments: nothing to move, still refused */
	assert_int_equal(fs_write_atomic(path, "# x\n", 4, 0644), 0);
	assert_int_equal(deployd_config_init(&c), 0);
	cd_error_reset(&err);
	assert_int_equal(deployd_config_set(&c, "state_dir", tmpdir, NULL), 0);
	assert_int_equal(deployd_config_check_legacy(&c, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "sets nothing"));
	deployd_config_release(&c);
}

static void test_args(void **state)
{
	struct deployd_config c;
	enum deployd_action a;
	struct cd_error err = {};
	char conf[128];

	assert_int_equal(deployd_config_init(&c), 0);
	assert_int_equal(from_args(&c, &a, &err, 2, "deployd", "--help"), 0);
	assert_int_equal(a, DEPLOYD_HELP);
	assert_int_equal(from_args(&c, &a, &err, 2, "deployd", "--version"), 0);
	assert_int_equal(a, DEPLOYD_VERSION);
	assert_int_equal(from_args(&c, &a, &err, 2, "deployd", "--frob"), -EINVAL);
	assert_non_null(strstr(err.msg, "--frob"));
	cd_error_reset(&err);
	assert_int_equal(from_args(&c, &a, &err, 2, "deployd", "--zone"), -EINVAL);
	assert_non_null(strstr(err.msg, "needs a value"));
	cd_error_reset(&err);
	assert_int_equal(from_args(&c, &a, &err, 3, "deployd", "--config", "/nonexistent/x.conf"),
			 -EINVAL);
	cd_error_reset(&err);
	assert_int_equal(from_args(&c, &a, &err, 2, "deployd", "stray"), -EINVAL);
	deployd_config_release(&c);

	/* The file first, then flags override it. */
	snprintf(conf, sizeof(conf), "%s/d.conf", tmpdir);
	assert_int_equal(fs_write_atomic(conf, "zone = eu-west-1\nregion = eu-west\nthreads = 4\n",
					 46, 0644),
			 0);
	assert_int_equal(deployd_config_init(&c), 0);
	cd_error_reset(&err);
	assert_int_equal(from_args(&c, &a, &err, 9, "deployd", "--config", conf, "--zone",
				   "eu-west-2", "--listen", "127.0.0.1:9999", "--role", "cluster"),
			 0);
	assert_int_equal(a, DEPLOYD_RUN);
	assert_string_equal(c.zone, "eu-west-2");
	assert_string_equal(c.region, "eu-west");
	assert_int_equal(c.threads, 4);
	assert_int_equal(c.roles, DEPLOYD_ROLE_CLUSTER);
	assert_string_equal(c.config_file, conf);
	deployd_config_release(&c);
}

static void test_validate(void **state)
{
	struct deployd_config c;
	struct cd_error err = {};

	assert_int_equal(deployd_config_init(&c), 0);
	assert_int_equal(deployd_config_set(&c, "zone", "eu-west-1", NULL), 0);
	assert_int_equal(deployd_config_validate(&c, &err), -EINVAL); /* not in region "local" */
	assert_int_equal(deployd_config_set(&c, "region", "eu-west", NULL), 0);
	assert_int_equal(deployd_config_validate(&c, NULL), 0);
	assert_int_equal(deployd_config_set(&c, "listen", "0.0.0.0:7400", NULL), 0);
	cd_error_reset(&err);
	assert_int_equal(deployd_config_validate(&c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "--token-file"));
	c.insecure_no_auth = true;
	cd_error_reset(&err);
	assert_int_equal(deployd_config_validate(&c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "loopback"));
	c.insecure_no_auth = false;
	assert_int_equal(deployd_config_set(&c, "token_file", "/etc/t", NULL), 0);
	assert_int_equal(deployd_config_validate(&c, NULL), 0);
	assert_int_equal(deployd_config_set(&c, "listen", "nocolon", NULL), 0);
	assert_int_equal(deployd_config_validate(&c, NULL), -EINVAL);
	assert_int_equal(deployd_config_set(&c, "listen", "127.0.0.1:99999", NULL), 0);
	assert_int_equal(deployd_config_validate(&c, NULL), -EINVAL);
	deployd_config_release(&c);
}

static void test_tokens(void **state)
{
	struct deployd_config cfg;
	struct deployd_options o = {};
	struct deployd *d = NULL;
	struct cd_error err = {};
	char path[128], text[1024];
	struct stat st;
	int r;

	assert_int_equal(deployd_config_init(&cfg), 0);
	snprintf(path, sizeof(path), "%s/sub/deployd.token", tmpdir);
	assert_int_equal(deployd_tokens_ensure(path, false, &err), -ENOENT);
	assert_int_equal(deployd_tokens_ensure(path, true, &err), 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(deployd_tokens_ensure(path, true, &err), 0); /* kept */

	o.config = &cfg;
	o.token_path = path;
	o.advertise_url = "http://127.0.0.1:1";
	assert_int_equal(deployd_new(&o, &d, &err), 0);
	assert_non_null(deployd_agent_token(d));
	assert_int_equal(strlen(deployd_agent_token(d)), 64);
	deployd_free(d);
	d = NULL;

	/* Readable by others: refused. */
	assert_int_equal(chmod(path, 0644), 0);
	cd_error_reset(&err);
	assert_int_equal(deployd_new(&o, &d, &err), -EPERM);
	assert_non_null(strstr(err.msg, "chmod 600"));

	/* Bad lines name the line. */
	snprintf(text, sizeof(text), "admin %064d\nwizard %064d\n", 1, 2);
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0600), 0);
	cd_error_reset(&err);
	assert_int_equal(deployd_new(&o, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, ":2:"));
	snprintf(text, sizeof(text), "admin short\n");
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0600), 0);
	cd_error_reset(&err);
	assert_int_equal(deployd_new(&o, &d, &err), -EINVAL);
	snprintf(text, sizeof(text), "# only comments\n\n");
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0600), 0);
	cd_error_reset(&err);
	r = deployd_new(&o, &d, &err);
	assert_int_equal(r, -EINVAL);
	snprintf(text, sizeof(text), "team:foo_team %064d\nteam: %064d\n", 3, 4);
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0600), 0);
	cd_error_reset(&err);
	assert_int_equal(deployd_new(&o, &d, &err), -EINVAL);
	snprintf(text, sizeof(text), "team:foo_team %064d\n", 3);
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0600), 0);
	assert_int_equal(deployd_new(&o, &d, &err), 0);
	assert_null(deployd_agent_token(d)); /* no agent token in this file */
	deployd_free(d);
	deployd_config_release(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_parse_text),
		cmocka_unit_test(test_pipelines_keys),
		cmocka_unit_test(test_pipelines_errors),
		cmocka_unit_test_setup_teardown(test_legacy_pipelines_conf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_args, setup, teardown),
		cmocka_unit_test(test_validate),
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
