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
		cmocka_unit_test_setup_teardown(test_args, setup, teardown),
		cmocka_unit_test(test_validate),
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
