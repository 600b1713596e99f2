/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/config (taskd.conf + flags) and agent/restart (policy, backoff math). */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/config.h"
#include "agent/restart.h"
#include "lib/fs.h"

static char tmpdir[64];

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-agent-config.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static void test_config_defaults(void **state)
{
	struct taskd_config c;
	char *p = NULL;

	assert_int_equal(taskd_config_init(&c), 0);
	assert_string_equal(c.state_dir, "/var/lib/codedeploy");
	assert_string_equal(c.listen, "127.0.0.1:7411");
	assert_null(c.token_file);
	assert_false(c.token_file_explicit);
	assert_null(c.manager_url);
	assert_int_equal(c.heartbeat_interval_s, 5);
	assert_int_equal(c.log_keep, 3);
	assert_int_equal(c.default_pids_max, 4096);
	assert_null(c.bridge_name); /* the sandbox's defaults */
	assert_null(c.bridge_subnet);
	assert_int_equal(taskd_config_path(&c, "taskd.token", &p), 0);
	assert_string_equal(p, "/var/lib/codedeploy/taskd.token");
	free(p);
	assert_int_equal(taskd_config_validate(&c, NULL), 0);
	taskd_config_release(&c);
}

static void test_config_parse_text(void **state)
{
	struct taskd_config c;
	struct cd_error err = { 0 };
	const char *text = "# comment\n"
			   "\n"
			   "  state_dir = /srv/cd   \n"
			   "listen=127.0.0.2:9000 # trailing comment\n"
			   "manager_url = http://10.0.0.1:7400\n"
			   "host_id = worker-1\n"
			   "log_max_bytes = 1048576\n"
			   "zone = \"us-east-1\"\n"
			   "token_file = /etc/codedeploy/t\n"
			   "threads = 4\r\n"
			   "default_pids_max = 512\n"
			   "bridge_name = cdbr-prod\n"
			   "bridge_subnet = 10.200.16.0/20\n"
			   "cgroup_parent = codedeploy/prod.1\n";

	assert_int_equal(taskd_config_init(&c), 0);
	assert_int_equal(taskd_config_parse_text(&c, "t.conf", text, &err), 0);
	assert_string_equal(c.state_dir, "/srv/cd");
	assert_string_equal(c.listen, "127.0.0.2:9000");
	assert_string_equal(c.manager_url, "http://10.0.0.1:7400");
	assert_string_equal(c.host_id, "worker-1");
	assert_string_equal(c.zone, "us-east-1");
	assert_int_equal(c.log_max_bytes, 1048576);
	assert_int_equal(c.threads, 4);
	assert_int_equal(c.default_pids_max, 512);
	assert_string_equal(c.bridge_name, "cdbr-prod");
	assert_string_equal(c.bridge_subnet, "10.200.16.0/20");
	assert_string_equal(c.cgroup_parent, "codedeploy/prod.1");
	assert_true(c.token_file_explicit);
	/* an empty optional value resets to the default */
	assert_int_equal(taskd_config_parse_text(&c, "t.conf", "manager_url =\n", &err), 0);
	assert_null(c.manager_url);
	taskd_config_release(&c);
}

static void expect_bad(const char *text, const char *needle)
{
	struct taskd_config c;
	struct cd_error err = { 0 };

	assert_int_equal(taskd_config_init(&c), 0);
	assert_int_equal(taskd_config_parse_text(&c, "bad.conf", text, &err), -EINVAL);
	if (!strstr(err.msg, needle))
		fail_msg("'%s' does not contain '%s'", err.msg, needle);
	taskd_config_release(&c);
}

static void test_config_errors_name_the_line(void **state)
{
	expect_bad("listen = 127.0.0.1:7411\nbogus = 1\n", "bad.conf:2: unknown key 'bogus'");
	expect_bad("\n\nno equals here\n", "bad.conf:3: expected 'key = value'");
	expect_bad("threads = 0\n", "out of range");
	expect_bad("threads = -1\n", "not a non-negative integer");
	expect_bad("threads = 12abc\n", "not a non-negative integer");
	expect_bad("listen = [::1]:7411\n", "IPv6");
	expect_bad("listen = 127.0.0.1:0\n", "listen");
	expect_bad("listen = 127.0.0.1\n", "listen");
	expect_bad("state_dir = relative/path\n", "absolute");
	expect_bad("manager_url = ftp://x\n", "URL");
	expect_bad("log_level = loud\n", "debug|info|warn|error");
	expect_bad("host_id = bad host\n", "host_id");
	expect_bad("zone = \"unterminated\n", "unterminated quote");
	expect_bad("cgroup_parent = ../escape\n", "cgroup_parent");
	expect_bad("cgroup_parent = /abs\n", "cgroup_parent");
	expect_bad("cgroup_parent = a//b\n", "cgroup_parent");
	expect_bad("cgroup_parent = a/\n", "cgroup_parent");
	expect_bad("cgroup_parent = sp ace\n", "cgroup_parent");
	expect_bad("default_pids_max = 1\n", "default_pids_max: 1 is out of range");
	expect_bad("bridge_name = this-is-too-long0\n", "bridge_name");
	expect_bad("bridge_name = br/0\n", "not an interface name");
	expect_bad("bridge_name = ..\n", "bridge_name");
	expect_bad("bridge_name = \"br 0\"\n", "bridge_name");
	expect_bad("bridge_subnet = 10.99.0.1/24\n", "bridge_subnet: '10.99.0.1/24'");
	expect_bad("bridge_subnet = 10.99.0.0/31\n", "bridge_subnet");
	expect_bad("bridge_subnet = 10.99.0.0/7\n", "bridge_subnet");
	expect_bad("bridge_subnet = 10.99.0.0\n", "bridge_subnet");
	expect_bad("bridge_subnet = fd00::/64\n", "bridge_subnet");
	expect_bad("default_pids_max = 4194305\n", "out of range");
}

static void test_config_listen(void **state)
{
	bool lo = false;

	assert_int_equal(taskd_parse_listen("127.0.0.1:7411", &lo), 0);
	assert_true(lo);
	assert_int_equal(taskd_parse_listen("127.9.9.9:1", &lo), 0);
	assert_true(lo);
	assert_int_equal(taskd_parse_listen("0.0.0.0:7411", &lo), 0);
	assert_false(lo);
	assert_int_equal(taskd_parse_listen("10.1.2.3:65535", &lo), 0);
	assert_false(lo);
	assert_int_equal(taskd_parse_listen("10.1.2.3:65536", &lo), -EINVAL);
	assert_int_equal(taskd_parse_listen(":7411", &lo), -EINVAL);
	assert_int_equal(taskd_parse_listen("host:7411", &lo), -EINVAL);
	assert_int_equal(taskd_parse_listen(NULL, &lo), -EINVAL);
}

static int args(struct taskd_config *c, enum taskd_action *a, struct cd_error *err, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"taskd";
	va_start(ap, err);
	for (char *s; (s = va_arg(ap, char *));)
		argv[argc++] = s;
	va_end(ap);
	argv[argc] = NULL;
	return taskd_config_from_args(c, argc, argv, a, err);
}

static void test_config_flags_override_file(void **state)
{
	struct taskd_config c;
	struct cd_error err = { 0 };
	enum taskd_action a = TASKD_HELP;
	char conf[128];
	const char *text = "state_dir = /from/file\nlisten = 127.0.0.1:1000\nthreads = 3\n";

	snprintf(conf, sizeof(conf), "%s/taskd.conf", tmpdir);
	assert_int_equal(fs_write_atomic(conf, text, strlen(text), 0644), 0);
	assert_int_equal(taskd_config_init(&c), 0);
	assert_int_equal(args(&c, &a, &err, "--config", conf, "--listen", "127.0.0.1:2000",
			      "--host-id", "h1", (char *)NULL),
			 0);
	assert_int_equal(a, TASKD_RUN);
	assert_string_equal(c.state_dir, "/from/file");
	assert_string_equal(c.listen, "127.0.0.1:2000");
	assert_string_equal(c.host_id, "h1");
	assert_int_equal(c.threads, 3);
	assert_string_equal(c.config_file, conf);
	taskd_config_release(&c);
}

static void test_config_flag_errors(void **state)
{
	struct taskd_config c;
	struct cd_error err = { 0 };
	enum taskd_action a;
	char missing[128];

	snprintf(missing, sizeof(missing), "%s/nope.conf", tmpdir);
	assert_int_equal(taskd_config_init(&c), 0);
	assert_int_equal(args(&c, &a, &err, "--config", missing, (char *)NULL), -EINVAL);
	assert_non_null(strstr(err.msg, "no such file"));
	cd_error_reset(&err);
	assert_int_equal(args(&c, &a, &err, "--bogus", (char *)NULL), -EINVAL);
	assert_non_null(strstr(err.msg, "--bogus"));
	cd_error_reset(&err);
	assert_int_equal(args(&c, &a, &err, "--listen", (char *)NULL), -EINVAL);
	cd_error_reset(&err);
	assert_int_equal(args(&c, &a, &err, "extra", (char *)NULL), -EINVAL);
	assert_non_null(strstr(err.msg, "extra"));
	cd_error_reset(&err);
	assert_int_equal(args(&c, &a, &err, "--state-dir", "rel", (char *)NULL), -EINVAL);
	assert_non_null(strstr(err.msg, "--state-dir"));
	cd_error_reset(&err);
	/* non-loopback listen needs an explicit token file */
	assert_int_equal(args(&c, &a, &err, "--config", "/dev/null", "--listen", "0.0.0.0:7411",
			      (char *)NULL),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "--token-file"));
	cd_error_reset(&err);
	assert_int_equal(args(&c, &a, &err, "--config", "/dev/null", "--listen", "0.0.0.0:7411",
			      "--token-file", "/etc/t", (char *)NULL),
			 0);
	assert_int_equal(a, TASKD_RUN);
	assert_int_equal(args(&c, &a, &err, "--version", (char *)NULL), 0);
	assert_int_equal(a, TASKD_VERSION);
	assert_int_equal(args(&c, &a, &err, "--listen", "127.0.0.1:1", "--help", (char *)NULL), 0);
	assert_int_equal(a, TASKD_HELP);
	taskd_config_release(&c);
}

/* What deployd's heartbeat handler requires (central/cluster_http.c h_heartbeat): a zone and
 * an http:// addr. A taskd that cannot send an acceptable heartbeat must not start. */
static void test_config_manager_needs(void **state)
{
	struct taskd_config c;
	struct cd_error err = { 0 };
	enum taskd_action a = TASKD_HELP;

	assert_int_equal(taskd_config_init(&c), 0);
	/* standalone: no zone needed */
	assert_int_equal(args(&c, &a, &err, "--config", "/dev/null", (char *)NULL), 0);
	assert_int_equal(a, TASKD_RUN);
	/* a manager without a zone: refused, the message names the setting */
	assert_int_equal(args(&c, &a, &err, "--config", "/dev/null", "--manager",
			      "http://127.0.0.1:7400", (char *)NULL),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "zone"));
	assert_null(strchr(err.msg, '\n'));
	cd_error_reset(&err);
	/* --zone (or zone = in the file) satisfies it */
	assert_int_equal(args(&c, &a, &err, "--config", "/dev/null", "--manager",
			      "http://127.0.0.1:7400", "--zone", "us-east-1", (char *)NULL),
			 0);
	assert_string_equal(c.zone, "us-east-1");
	assert_int_equal(taskd_config_validate(&c, &err), 0);
	/* the manager pushes over http:// only */
	assert_int_equal(taskd_config_set(&c, "advertise_url", "https://10.0.0.1:7411", &err), 0);
	assert_int_equal(taskd_config_validate(&c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "advertise_url"));
	cd_error_reset(&err);
	{
		char long_url[300];

		snprintf(long_url, sizeof(long_url), "http://%0250d:7411", 1);
		assert_int_equal(taskd_config_set(&c, "advertise_url", long_url, &err), 0);
		assert_int_equal(taskd_config_validate(&c, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "at most 255"));
		cd_error_reset(&err);
	}
	/* listening on 0.0.0.0: http://0.0.0.0:PORT is no address to push to */
	assert_int_equal(taskd_config_set(&c, "advertise_url", "", &err), 0);
	assert_int_equal(taskd_config_set(&c, "listen", "0.0.0.0:7411", &err), 0);
	assert_int_equal(taskd_config_set(&c, "token_file", "/etc/t", &err), 0);
	assert_int_equal(taskd_config_validate(&c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "advertise_url"));
	cd_error_reset(&err);
	assert_int_equal(taskd_config_set(&c, "advertise_url", "http://10.0.0.1:7411", &err), 0);
	assert_int_equal(taskd_config_validate(&c, &err), 0);
	/* without a manager none of this matters */
	assert_int_equal(taskd_config_set(&c, "manager_url", "", &err), 0);
	assert_int_equal(taskd_config_set(&c, "zone", "", &err), 0);
	assert_int_equal(taskd_config_validate(&c, &err), 0);
	taskd_config_release(&c);
}

static void test_restart_modes(void **state)
{
	enum restart_mode m;
	struct restart_policy never = { RESTART_NEVER, 1, 10 };
	struct restart_policy onf = { RESTART_ON_FAILURE, 1, 10 };
	struct restart_policy always = { RESTART_ALWAYS, 1, 10 };

	assert_int_equal(restart_mode_from_string("on-failure", &m), 0);
	assert_int_equal(m, RESTART_ON_FAILURE);
	assert_int_equal(restart_mode_from_string("sometimes", &m), -EINVAL);
	assert_string_equal(restart_mode_to_string(RESTART_ALWAYS), "always");

	assert_false(restart_wanted(&never, true, false));
	assert_true(restart_wanted(&onf, true, false));
	assert_false(restart_wanted(&onf, false, false));
	assert_true(restart_wanted(&always, false, false));
	assert_false(restart_wanted(&always, true, true));
	assert_false(restart_wanted(&onf, true, true));
}

static void test_restart_backoff(void **state)
{
	struct restart_policy p = { RESTART_ALWAYS, 2, 30 };
	struct restart_policy zero = { RESTART_ALWAYS, 0, 30 };
	struct restart_policy inv = { RESTART_ALWAYS, 10, 5 };
	struct restart_policy huge = { RESTART_ALWAYS, UINT_MAX, UINT_MAX };

	assert_int_equal(restart_delay(&p, 1), 2 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&p, 2), 4 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&p, 3), 8 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&p, 4), 16 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&p, 5), 30 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&p, 1000), 30 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&p, UINT_MAX), 30 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&zero, 7), 0);
	assert_int_equal(restart_delay(&inv, 3), 10 * USEC_PER_SEC);
	assert_int_equal(restart_delay(&huge, 64), (usec_t)UINT_MAX * USEC_PER_SEC);
	/* growth is monotonic */
	for (unsigned s = 1; s < 100; s++)
		assert_true(restart_delay(&p, s + 1) >= restart_delay(&p, s));
}

static void test_restart_streak(void **state)
{
	usec_t reset = 60 * USEC_PER_SEC;

	assert_int_equal(restart_next_streak(0, 1, reset), 1);
	assert_int_equal(restart_next_streak(3, 5 * USEC_PER_SEC, reset), 4);
	assert_int_equal(restart_next_streak(9, reset, reset), 1);
	assert_int_equal(restart_next_streak(UINT_MAX, 0, reset), UINT_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_parse_text),
		cmocka_unit_test(test_config_errors_name_the_line),
		cmocka_unit_test(test_config_listen),
		cmocka_unit_test_setup_teardown(test_config_flags_override_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_flag_errors, setup, teardown),
		cmocka_unit_test(test_config_manager_needs),
		cmocka_unit_test(test_restart_modes),
		cmocka_unit_test(test_restart_backoff),
		cmocka_unit_test(test_restart_streak),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
