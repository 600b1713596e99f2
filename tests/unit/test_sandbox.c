/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sandbox/'s pure parts: cgroup layout detection on fake trees, name and limit
 * validation, launch config validation, subnet parsing, status records, and the seccomp profile
 * (built, then loaded in a forked child: needs no privilege thanks to no_new_privs). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <seccomp.h>

#include "lib/fs.h"
#include "lib/str.h"
#include "sandbox/cgroup.h"
#include "sandbox/launch.h"
#include "sandbox/netns.h"
#include "sandbox/seccomp.h"

/* libcgroup must stay off the launch path (its init costs a one-shot launcher 0.4 ms): count
 * its initialisations (linked with --wrap=cgroup_init, see sandbox/module.mk). */
static int cgroup_init_calls;
int __real_cgroup_init(void);
int __wrap_cgroup_init(void);
int __wrap_cgroup_init(void)
{
	cgroup_init_calls++;
	return __real_cgroup_init();
}

/* Pretend another libseccomp version is running (linked with --wrap=seccomp_version). */
static bool fake_seccomp_version;
const struct scmp_version *__real_seccomp_version(void);
const struct scmp_version *__wrap_seccomp_version(void);
const struct scmp_version *__wrap_seccomp_version(void)
{
	static const struct scmp_version other = { 9, 9, 9 };

	return fake_seccomp_version ? &other : __real_seccomp_version();
}

static char root[64];

static int setup_root(void **state)
{
	strcpy(root, "/tmp/cd-test-sandbox.XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int teardown_root(void **state)
{
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, root), 0);
	return 0;
}

/* mkdir -p root/dir and create root/dir/file (empty). */
static void fake(const char *dir, const char *file)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", root, dir);
	assert_int_equal(fs_mkdir_p(path, 0755), 0);
	if (file) {
		snprintf(path, sizeof(path), "%s/%s/%s", root, dir, file);
		assert_int_equal(fs_write_atomic(path, "", 0, 0644), 0);
	}
}

static void fake_v1(const char *dir)
{
	fake(dir, "tasks");
	fake(dir, "cgroup.procs");
}

static void expect_path(const struct cg_system *sys, enum cg_hier h, const char *rel)
{
	const char *p = cg_system_hier_path(sys, h);
	char want[256];

	if (!rel) {
		assert_null(p);
		return;
	}
	snprintf(want, sizeof(want), "%s/%s", root, rel);
	assert_non_null(p);
	assert_string_equal(p, want);
}

static void test_detect_hybrid(void **state)
{
	struct cg_system *sys = NULL;
	char link[256];

	fake_v1("memory");
	fake_v1("cpu,cpuacct");
	fake_v1("pids");
	fake_v1("freezer");
	fake_v1("systemd");
	fake("unified", "cgroup.controllers");
	/* the usual compatibility symlinks must not count twice */
	snprintf(link, sizeof(link), "%s/cpu", root);
	assert_int_equal(symlink("cpu,cpuacct", link), 0);
	assert_int_equal(cg_system_detect(root, &sys, NULL), 0);
	assert_int_equal(cg_system_layout(sys), CG_LAYOUT_HYBRID);
	assert_string_equal(cg_layout_to_string(cg_system_layout(sys)), "hybrid");
	expect_path(sys, CG_UNIFIED, "unified");
	expect_path(sys, CG_V1_MEMORY, "memory");
	expect_path(sys, CG_V1_CPU, "cpu,cpuacct");
	expect_path(sys, CG_V1_CPUACCT, "cpu,cpuacct");
	expect_path(sys, CG_V1_PIDS, "pids");
	expect_path(sys, CG_V1_FREEZER, "freezer");
	cg_system_free(sys);
}

static void test_detect_v1(void **state)
{
	struct cg_system *sys = NULL;

	fake_v1("memory");
	fake_v1("cpu");
	assert_int_equal(cg_system_detect(root, &sys, NULL), 0);
	assert_int_equal(cg_system_layout(sys), CG_LAYOUT_V1);
	expect_path(sys, CG_UNIFIED, NULL);
	expect_path(sys, CG_V1_MEMORY, "memory");
	expect_path(sys, CG_V1_CPU, "cpu");
	expect_path(sys, CG_V1_PIDS, NULL);
	expect_path(sys, CG_V1_FREEZER, NULL);
	cg_system_free(sys);
}

static void test_detect_v2(void **state)
{
	struct cg_system *sys = NULL;

	fake(".", "cgroup.controllers");
	fake("system.slice", "cgroup.controllers"); /* a child cgroup, not a hierarchy */
	assert_int_equal(cg_system_detect(root, &sys, NULL), 0);
	assert_int_equal(cg_system_layout(sys), CG_LAYOUT_V2);
	assert_string_equal(cg_system_hier_path(sys, CG_UNIFIED), root);
	expect_path(sys, CG_V1_MEMORY, NULL);
	cg_system_free(sys);
}

static void test_detect_none(void **state)
{
	struct cg_system *sys = NULL;
	struct cd_error err = { 0 };

	fake("empty", NULL);
	assert_int_equal(cg_system_detect(root, &sys, &err), -ENOMEDIUM);
	assert_non_null(strstr(err.msg, "no cgroup hierarchy"));
	assert_null(sys);
	assert_int_equal(cg_system_detect("/nonexistent-cgroup-root", &sys, NULL), -ENOENT);
}

static void test_name_validate(void **state)
{
	assert_int_equal(cg_name_validate("codedeploy", false), 0);
	assert_int_equal(cg_name_validate("codedeploy/prod", true), 0);
	assert_int_equal(cg_name_validate("task-1.a_b:c@d", false), 0);
	assert_int_equal(cg_name_validate("codedeploy/prod", false), -EINVAL);
	assert_int_equal(cg_name_validate("", false), -EINVAL);
	assert_int_equal(cg_name_validate(NULL, false), -EINVAL);
	assert_int_equal(cg_name_validate("/abs", true), -EINVAL);
	assert_int_equal(cg_name_validate("trailing/", true), -EINVAL);
	assert_int_equal(cg_name_validate("a//b", true), -EINVAL);
	assert_int_equal(cg_name_validate("..", false), -EINVAL);
	assert_int_equal(cg_name_validate("a/../b", true), -EINVAL);
	assert_int_equal(cg_name_validate(".", false), -EINVAL);
	assert_int_equal(cg_name_validate("cgroup.procs", false), -EINVAL);
	assert_int_equal(cg_name_validate("sp ace", false), -EINVAL);
	assert_int_equal(cg_name_validate("new\nline", false), -EINVAL);
	{
		char longname[256];

		memset(longname, 'a', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		assert_int_equal(cg_name_validate(longname, false), -EINVAL);
	}
}

static void test_limits_validate(void **state)
{
	struct cg_limits l = { 0 };
	struct cd_error err = { 0 };

	assert_int_equal(cg_limits_validate(&l, NULL), 0);
	assert_int_equal(cg_limits_validate(NULL, NULL), 0);
	l.memory_bytes = 1;
	assert_int_equal(cg_limits_validate(&l, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "memory"));
	l.memory_bytes = 64ULL << 20;
	l.cpu_millis = 2000000;
	assert_int_equal(cg_limits_validate(&l, NULL), -EINVAL);
	l.cpu_millis = 1500;
	l.pids_max = 100000000;
	assert_int_equal(cg_limits_validate(&l, NULL), -EINVAL);
	l.pids_max = 64;
	assert_int_equal(cg_limits_validate(&l, NULL), 0);
}

static void test_create_rejects_bad_names(void **state)
{
	struct cg_system *sys = NULL;
	struct task_cgroup *cg = NULL;
	struct cd_error err = { 0 };

	fake(".", "cgroup.controllers");
	assert_int_equal(cg_system_detect(root, &sys, NULL), 0);
	assert_int_equal(task_cgroup_create(sys, "../escape", "t", NULL, &cg, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "parent"));
	cd_error_reset(&err);
	assert_int_equal(task_cgroup_create(sys, "codedeploy", "a/b", NULL, &cg, &err), -EINVAL);
	assert_null(cg);
	cg_system_free(sys);
}

static bool exists(const char *rel)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	return access(path, F_OK) == 0;
}

/* Creation works through cgroupfs on the hierarchy dir fds (libcgroup does not see a fake tree
 * either way): creates, clashes, and rolls back. */
static void test_create_destroy_fake_tree(void **state)
{
	struct cg_system *sys = NULL;
	struct task_cgroup *cg = NULL;
	struct cd_error err = { 0 };
	char **kids = NULL;
	char path[256];
	int init_calls;

	fake_v1("memory");
	fake_v1("cpu,cpuacct");
	fake_v1("pids");
	fake("unified", "cgroup.controllers");
	init_calls = cgroup_init_calls;
	assert_int_equal(cg_system_detect(root, &sys, NULL), 0);
	assert_int_equal(task_cgroup_create(sys, "cd/prod", "t1", NULL, &cg, &err), 0);
	/* detection and creation never touch libcgroup (nor does removal, checked below) */
	assert_int_equal(cgroup_init_calls, init_calls);
	assert_true(exists("memory/cd/prod/t1"));
	assert_true(exists("cpu,cpuacct/cd/prod/t1"));
	assert_true(exists("pids/cd/prod/t1"));
	assert_true(exists("unified/cd/prod/t1"));
	assert_string_equal(task_cgroup_name(cg), "cd/prod/t1");
	assert_true(task_cgroup_fd(cg, CG_V1_CPUACCT) >= 0);
	assert_int_equal(task_cgroup_fd(cg, CG_V1_FREEZER), -ENOENT);
	assert_int_equal(task_cgroup_path(cg, CG_V1_PIDS, path, sizeof(path)), 0);
	assert_non_null(strstr(path, "/pids/cd/prod/t1"));
	assert_int_equal(cg_list_children(sys, "cd/prod", &kids), 0);
	assert_non_null(kids[0]);
	assert_string_equal(kids[0], "t1");
	assert_null(kids[1]);
	strv_free(kids);

	/* a second task with the same id must not share the cgroup */
	{
		struct task_cgroup *dup = NULL;

		cd_error_reset(&err);
		assert_int_equal(task_cgroup_create(sys, "cd/prod", "t1", NULL, &dup, &err),
				 -EEXIST);
		assert_non_null(strstr(err.msg, "already exists"));
		assert_null(dup);
	}
	/* new limits through cgroupfs (libcgroup does not see this tree) */
	{
		static const char *const files[] = { "memory/cd/prod/t1/memory.limit_in_bytes",
						     "cpu,cpuacct/cd/prod/t1/cpu.cfs_quota_us",
						     "pids/cd/prod/t1/pids.max" };
		struct cg_limits lim = { .memory_bytes = 64ULL << 20, .cpu_millis = 250 };
		char *got;

		for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
			snprintf(path, sizeof(path), "%s/%s", root, files[i]);
			assert_int_equal(fs_write_atomic(path, "", 0, 0644), 0);
		}
		assert_int_equal(task_cgroup_set_limits(cg, &lim, NULL), 0);
		/* a limit change asks libcgroup whether it sees this tree (it does not: cgroupfs);
		 * its initialisation happens once per process */
		assert_int_equal(cgroup_init_calls, 1);
		snprintf(path, sizeof(path), "%s/%s", root, files[0]);
		assert_int_equal(fs_read_file_at(AT_FDCWD, path, 64, &got, NULL), 0);
		assert_string_equal(got, "67108864");
		free(got);
		snprintf(path, sizeof(path), "%s/%s", root, files[1]);
		assert_int_equal(fs_read_file_at(AT_FDCWD, path, 64, &got, NULL), 0);
		assert_string_equal(got, "25000");
		free(got);
		snprintf(path, sizeof(path), "%s/%s", root, files[2]);
		assert_int_equal(fs_read_file_at(AT_FDCWD, path, 64, &got, NULL), 0);
		assert_string_equal(got, "max");
		free(got);
		lim.memory_bytes = 5;
		assert_int_equal(task_cgroup_set_limits(cg, &lim, NULL), -EINVAL);
		for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
			snprintf(path, sizeof(path), "%s/%s", root, files[i]);
			assert_int_equal(unlink(path), 0);
		}
	}
	assert_int_equal(task_cgroup_destroy(cg, NULL), 0);
	task_cgroup_free(cg);
	assert_int_equal(cgroup_init_calls, 1); /* once per process, and not for removal */
	assert_false(exists("memory/cd/prod/t1"));
	assert_false(exists("unified/cd/prod/t1"));
	assert_true(exists("memory/cd/prod")); /* the parent stays */
	/* ... until its launcher removes it; a parent still in use stays */
	fake("memory/cd/busy/t9", NULL);
	assert_int_equal(cg_parent_remove(sys, "cd/busy"), 0);
	assert_true(exists("memory/cd/busy/t9"));
	assert_int_equal(cg_parent_remove(sys, "../x"), -EINVAL);
	assert_true(cg_parent_remove(sys, "cd/prod") >= 2);
	assert_false(exists("memory/cd/prod"));
	assert_false(exists("unified/cd/prod"));

	/* rollback: the pids hierarchy cannot hold the parent (a file is in the way) */
	fake("pids/cd", NULL);
	snprintf(path, sizeof(path), "%s/pids/cd/other", root);
	assert_int_equal(fs_write_atomic(path, "", 0, 0644), 0);
	cd_error_reset(&err);
	assert_true(task_cgroup_create(sys, "cd/other", "t2", NULL, &cg, &err) < 0);
	assert_non_null(strstr(err.msg, "pids"));
	assert_false(exists("memory/cd/other/t2"));
	assert_false(exists("cpu,cpuacct/cd/other/t2"));
	assert_false(exists("unified/cd/other/t2"));

	/* limits need the controller files: a fake tree has none, so creation fails cleanly */
	{
		struct cg_limits lim = { .pids_max = 10 };

		cd_error_reset(&err);
		assert_int_equal(task_cgroup_create(sys, "cd/prod", "t3", &lim, &cg, &err),
				 -ENOENT);
		assert_non_null(strstr(err.msg, "pids"));
		assert_false(exists("pids/cd/prod/t3"));
		assert_false(exists("memory/cd/prod/t3"));
	}

	/* a leftover of task t4 in one v1 hierarchy only: -EEXIST, what this call created (the
	 * unified dir) is removed again, the leftover is not touched */
	fake("pids/cd/prod/t4", NULL);
	cd_error_reset(&err);
	cg = NULL;
	assert_int_equal(task_cgroup_create(sys, "cd/prod", "t4", NULL, &cg, &err), -EEXIST);
	assert_null(cg);
	assert_non_null(strstr(err.msg, "pids/cd/prod/t4 already exists"));
	assert_false(exists("unified/cd/prod/t4"));
	assert_false(exists("memory/cd/prod/t4"));
	assert_false(exists("cpu,cpuacct/cd/prod/t4"));
	assert_true(exists("pids/cd/prod/t4"));
	cg_system_free(sys);
}

static char *const true_argv[] = { "/bin/true", NULL };

static void base_config(struct sandbox_config *cfg)
{
	sandbox_config_init(cfg);
	cfg->task_id = "t1";
	cfg->argv = true_argv;
}

static void expect_invalid(struct sandbox_config *cfg, int code, const char *needle)
{
	struct cd_error err = { 0 };

	assert_int_equal(sandbox_config_validate(cfg, &err), code);
	if (!strstr(err.msg, needle))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_config_validate(void **state)
{
	struct sandbox_config cfg;
	char *const empty_argv[] = { NULL };
	const char *bad_masks[] = { "relative/path", NULL };
	struct sandbox_rlimit bad_rl = { RLIMIT_NOFILE, 10, 5 };

	base_config(&cfg);
	assert_int_equal(cfg.stdin_fd, -1);
	assert_int_equal(cfg.status_fd, -1);
	assert_int_equal(cfg.net, SANDBOX_NET_NONE);
	assert_int_equal(sandbox_config_validate(&cfg, NULL), 0);

	base_config(&cfg);
	cfg.task_id = NULL;
	expect_invalid(&cfg, -EINVAL, "task id");
	base_config(&cfg);
	cfg.task_id = "has/slash";
	expect_invalid(&cfg, -EINVAL, "task id");
	base_config(&cfg);
	cfg.task_id = "a234567890123456789012345678901234567890123456789012345678901234567890";
	expect_invalid(&cfg, -EINVAL, "task id");
	base_config(&cfg);
	cfg.argv = empty_argv;
	expect_invalid(&cfg, -EINVAL, "missing command");
	base_config(&cfg);
	cfg.argv = NULL;
	expect_invalid(&cfg, -EINVAL, "missing command");
	base_config(&cfg);
	cfg.limits.memory_bytes = 100;
	expect_invalid(&cfg, -EINVAL, "memory");
	base_config(&cfg);
	cfg.work_dir = "/usr";
	expect_invalid(&cfg, -EINVAL, "work dir");
	base_config(&cfg);
	cfg.work_dir = "/a/b";
	expect_invalid(&cfg, -EINVAL, "work dir");
	base_config(&cfg);
	cfg.work_dir = "relative";
	expect_invalid(&cfg, -EINVAL, "work dir");
	base_config(&cfg);
	cfg.cwd = "../x";
	expect_invalid(&cfg, -EINVAL, "working directory");
	base_config(&cfg);
	cfg.storage_bytes = 1000;
	expect_invalid(&cfg, -EINVAL, "storage");
	base_config(&cfg);
	cfg.net = (enum sandbox_net_mode)42;
	expect_invalid(&cfg, -EINVAL, "network mode");
	base_config(&cfg);
	cfg.mask_paths = bad_masks;
	expect_invalid(&cfg, -EINVAL, "mask path");
	base_config(&cfg);
	cfg.rlimits = &bad_rl;
	cfg.n_rlimits = 1;
	expect_invalid(&cfg, -EINVAL, "rlimit");
	base_config(&cfg);
	cfg.caps = UINT64_C(1) << 63;
	expect_invalid(&cfg, -EINVAL, "capability");
	base_config(&cfg);
	cfg.app_dir = "/nonexistent-app-dir";
	expect_invalid(&cfg, -ENOENT, "artifact dir");
	base_config(&cfg);
	cfg.app_dir = "/etc/passwd";
	expect_invalid(&cfg, -ENOTDIR, "not a directory");
	base_config(&cfg);
	cfg.cgroup_parent = "/abs";
	expect_invalid(&cfg, -EINVAL, "cgroup parent");
	base_config(&cfg);
	cfg.userns_size = 65536; /* base 0 would map the host's root */
	expect_invalid(&cfg, -EINVAL, "user namespace range");
	base_config(&cfg);
	cfg.userns_base = 0xffff0000;
	cfg.userns_size = 0x20000;
	expect_invalid(&cfg, -EINVAL, "user namespace range");
	base_config(&cfg);
	cfg.userns_base = 100000;
	cfg.userns_size = 1000;
	cfg.gid = 1000;
	expect_invalid(&cfg, -EINVAL, "outside the user namespace");
	cfg.gid = 999;
	assert_int_equal(sandbox_config_validate(&cfg, NULL), 0);
}

static void test_subnet_parse(void **state)
{
	struct in_addr net;
	uint8_t prefix;

	assert_int_equal(netns_parse_subnet("10.88.0.0/24", &net, &prefix), 0);
	assert_int_equal(prefix, 24);
	assert_int_equal(ntohl(net.s_addr), 0x0a580000);
	assert_int_equal(netns_parse_subnet("10.88.0.1/24", &net, &prefix), -EINVAL);
	assert_int_equal(netns_parse_subnet("10.88.0.0/31", &net, &prefix), -EINVAL);
	assert_int_equal(netns_parse_subnet("10.0.0.0/7", &net, &prefix), -EINVAL);
	assert_int_equal(netns_parse_subnet("10.88.0.0", &net, &prefix), -EINVAL);
	assert_int_equal(netns_parse_subnet("10.88.0.0/", &net, &prefix), -EINVAL);
	assert_int_equal(netns_parse_subnet("10.88.0.0/24x", &net, &prefix), -EINVAL);
	assert_int_equal(netns_parse_subnet("300.1.1.0/24", &net, &prefix), -EINVAL);
	assert_int_equal(netns_parse_subnet(NULL, &net, &prefix), -EINVAL);
}

static void write_lease(const char *dir, const char *addr, const char *line)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, addr);
	assert_int_equal(fs_write_atomic(path, line, strlen(line), 0600), 0);
}

static bool lease_exists(const char *dir, const char *addr)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, addr);
	return access(path, F_OK) == 0;
}

/*
 * netns_gc() removes leases of this network namespace whose veth is gone, keeps those whose
 * veth exists, and leaves leases taken in another namespace alone (a deployd builder in the
 * host namespace must not free the addresses of tasks of a taskd in its own namespace).
 */
static void test_netns_gc_scope(void **state)
{
	char dir[] = "/tmp/cd-test-ipam.XXXXXX", mine[64], line[128];
	struct stat st;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(stat("/proc/self/ns/net", &st), 0);
	snprintf(mine, sizeof(mine), "%llu", (unsigned long long)st.st_ino);
	snprintf(line, sizeof(line), "cdvgone000001 t1 %s\n", mine);
	write_lease(dir, "10.9.0.2", line); /* ours, veth gone: removed */
	snprintf(line, sizeof(line), "lo t2 %s\n", mine);
	write_lease(dir, "10.9.0.3", line); /* ours, interface exists: kept */
	snprintf(line, sizeof(line), "cdvgone000002 t3 %llu\n", (unsigned long long)st.st_ino + 1);
	write_lease(dir, "10.9.0.4", line);		    /* another namespace's: kept */
	write_lease(dir, "10.9.0.5", "cdvgone000003 t4\n"); /* old format, veth gone: removed */
	write_lease(dir, "not-an-address", "x\n");	    /* not a lease: kept */
	assert_int_equal(netns_gc(dir), 2);
	assert_false(lease_exists(dir, "10.9.0.2"));
	assert_true(lease_exists(dir, "10.9.0.3"));
	assert_true(lease_exists(dir, "10.9.0.4"));
	assert_false(lease_exists(dir, "10.9.0.5"));
	assert_true(lease_exists(dir, "not-an-address"));
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, dir), 0);
}

static void test_net_mode_and_ifname(void **state)
{
	enum sandbox_net_mode m;
	char a[IFNAMSIZ], b[IFNAMSIZ], c[IFNAMSIZ];

	assert_int_equal(netns_mode_from_string("none", &m), 0);
	assert_int_equal(m, SANDBOX_NET_NONE);
	assert_int_equal(netns_mode_from_string("host", &m), 0);
	assert_int_equal(m, SANDBOX_NET_HOST);
	assert_int_equal(netns_mode_from_string("bridge", &m), 0);
	assert_int_equal(m, SANDBOX_NET_BRIDGE);
	assert_string_equal(netns_mode_to_string(m), "bridge");
	assert_int_equal(netns_mode_from_string("Bridge", &m), -EINVAL);
	assert_int_equal(netns_mode_from_string(NULL, &m), -EINVAL);
	netns_host_ifname("task-a", a);
	netns_host_ifname("task-a", b);
	netns_host_ifname("task-b", c);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_int_equal(strlen(a), 15); /* IFNAMSIZ - 1: the longest name the kernel takes */
	assert_non_null(startswith(a, "cdv"));
}

static void test_status_parse(void **state)
{
	struct sandbox_status st;

	assert_int_equal(sandbox_status_parse("exited 3\n", &st), 0);
	assert_false(st.signaled);
	assert_int_equal(st.code, 3);
	assert_int_equal(sandbox_status_exit_code(&st), 3);
	assert_int_equal(sandbox_status_parse("signaled 9\n", &st), 0);
	assert_true(st.signaled);
	assert_false(st.core_dumped);
	assert_int_equal(st.code, 9);
	assert_int_equal(sandbox_status_exit_code(&st), 137);
	assert_int_equal(sandbox_status_parse("signaled 11 core\n", &st), 0);
	assert_true(st.core_dumped);
	assert_int_equal(sandbox_status_parse("", &st), -ENODATA);
	assert_int_equal(sandbox_status_parse("exited 256", &st), -EINVAL);
	assert_int_equal(sandbox_status_parse("signaled 65", &st), -EINVAL);
	assert_int_equal(sandbox_status_parse("exited x", &st), -EINVAL);
	assert_int_equal(sandbox_status_parse("running", &st), -EINVAL);
}

static void test_seccomp_table(void **state)
{
	bool has_mount = false, has_clone3 = false;

	for (const struct sandbox_seccomp_rule *r = sandbox_seccomp_rules; r->name; r++) {
		assert_true(r->err == EPERM || r->err == ENOSYS);
		assert_non_null(r->why);
		if (streq(r->name, "mount"))
			has_mount = r->err == EPERM;
		if (streq(r->name, "clone3"))
			has_clone3 = r->err == ENOSYS;
	}
	assert_true(has_mount);
	assert_true(has_clone3);
}

/* Load the profile in a child and report errno of a few calls through the exit code. */
static int probe(const struct sandbox_bpf *bpf, int which)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		long r = 0;

		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || sandbox_seccomp_load(bpf) < 0)
			_exit(200);
		errno = 0;
		switch (which) {
		case 0:
			r = mount("none", "/nonexistent", "tmpfs", 0, NULL);
			break;
		case 1:
			r = syscall(SYS_clone3, NULL, 0);
			break;
		case 2:
			r = syscall(SYS_bpf, 0, NULL, 0);
			break;
		case 3:
			r = unshare(CLONE_NEWUSER);
			break;
		case 4:
			r = getppid() > 0 ? 0 : -1;
			break;
		case 5:
			r = syscall(SYS_keyctl, 0, 0, 0, 0, 0);
			break;
		}
		_exit(r < 0 ? errno : 0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* unshare(CLONE_NEWUSER) in a child without any filter: 0 or the kernel's errno */
static int probe_unfiltered_userns(void)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(unshare(CLONE_NEWUSER) < 0 ? errno : 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_seccomp_profile(void **state)
{
	struct sandbox_bpf bpf = { 0 };
	struct cd_error err = { 0 };

	assert_int_equal(sandbox_seccomp_build(NULL, &bpf, &err), 0);
	assert_non_null(bpf.insns);
	assert_true(bpf.len > 10);
	assert_int_equal(probe(&bpf, 0), EPERM);
	assert_int_equal(probe(&bpf, 1), ENOSYS);
	assert_int_equal(probe(&bpf, 2), EPERM);
	assert_int_equal(probe(&bpf, 3), EPERM);
	assert_int_equal(probe(&bpf, 4), 0);
	assert_int_equal(probe(&bpf, 5), EPERM);
	sandbox_bpf_release(&bpf);
	assert_null(bpf.insns);
	sandbox_bpf_release(&bpf); /* idempotent */
}

static void test_seccomp_cache(void **state)
{
	const struct sandbox_bpf *a = NULL, *b = NULL, *c = NULL;
	struct sandbox_seccomp_opts ptrace_ok = { .allow_ptrace_attach = true };

	assert_int_equal(sandbox_seccomp_get(NULL, &a, NULL), 0);
	assert_int_equal(sandbox_seccomp_get(&(struct sandbox_seccomp_opts){ 0 }, &b, NULL), 0);
	assert_ptr_equal(a, b); /* built once */
	assert_int_equal(sandbox_seccomp_get(&ptrace_ok, &c, NULL), 0);
	assert_ptr_not_equal(a, c);
	assert_int_equal(probe(a, 0), EPERM);
	assert_int_equal(probe(c, 0), EPERM);
}

/* The programs compiled at build time are what libseccomp compiles here and now, for every
 * option set, and sandbox_seccomp_get() serves them (this test runs where it was built). */
static void test_seccomp_prebuilt(void **state)
{
	/* only the libseccomp the programs were compiled with may serve them */
	fake_seccomp_version = true;
	assert_false(sandbox_seccomp_prebuilt());
	fake_seccomp_version = false;
	assert_true(sandbox_seccomp_prebuilt());
	for (unsigned i = 0; i < SANDBOX_SECCOMP_VARIANTS; i++) {
		struct sandbox_seccomp_opts opts = { .allow_userns = i & 1,
						     .allow_ptrace_attach = (i >> 1) & 1 };
		const struct sandbox_bpf *got = NULL;
		struct sandbox_bpf want = { 0 };

		assert_int_equal(sandbox_seccomp_get(&opts, &got, NULL), 0);
		assert_int_equal(sandbox_seccomp_build(&opts, &want, NULL), 0);
		assert_int_equal(got->len, want.len);
		assert_memory_equal(got->insns, want.insns, want.len * sizeof(*want.insns));
		sandbox_bpf_release(&want);
	}
}

static void test_seccomp_userns_option(void **state)
{
	struct sandbox_seccomp_opts opts = { .allow_userns = true };
	struct sandbox_bpf bpf = { 0 };
	int r;

	int kernel;

	assert_int_equal(sandbox_seccomp_build(&opts, &bpf, NULL), 0);
	/* the filter no longer answers: the kernel decides, exactly as without any filter (success,
	 * or its own refusal: EPERM in a chroot, ENOSPC at user.max_user_namespaces, ...) */
	kernel = probe_unfiltered_userns();
	r = probe(&bpf, 3);
	assert_int_equal(r, kernel);
	assert_int_equal(probe(&bpf, 0), EPERM);
	sandbox_bpf_release(&bpf);
}

/* Root only: the parent side of launch / exec / adopt / destroy under ASan+LSan (leaks, fd
 * leaks, use-after-free on the error paths). The kernel-facing behaviour is the selftest's. */
static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");

	for (struct dirent *de; d && (de = readdir(d));)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* Teardown that also runs after a failed assertion: gc whatever the test left, then the
 * parent. */
static int teardown_launch(void **state)
{
	struct cg_system *sys = NULL;
	char parent[64];

	if (geteuid() != 0 || cg_system_detect(NULL, &sys, NULL) < 0)
		return 0;
	snprintf(parent, sizeof(parent), "cd-unit-sandbox-%d", (int)getpid());
	(void)sandbox_gc(sys, parent, NULL, "/nonexistent-ipam", NULL);
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		char path[256];
		const char *r = cg_system_hier_path(sys, h);

		if (r) {
			snprintf(path, sizeof(path), "%s/%s", r, parent);
			(void)rmdir(path);
		}
	}
	cg_system_free(sys);
	return 0;
}

static void test_launch_under_asan(void **state)
{
	struct cg_system *sys = NULL;
	struct sandbox_config cfg;
	struct sandbox_task *t = NULL, *t2 = NULL;
	struct sandbox_status st;
	struct cd_error err = { 0 };
	char parent[64], id[64];
	char *argv[] = { "/bin/sh", "-c", "exit 3", NULL };
	char *bad[] = { "/nonexistent", NULL };
	int fds_before;

	/* before detection: cg_system holds a dir fd per hierarchy until it is freed */
	fds_before = count_fds();
	if (geteuid() != 0 || cg_system_detect(NULL, &sys, NULL) < 0)
		skip();
	snprintf(parent, sizeof(parent), "cd-unit-sandbox-%d", (int)getpid());
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "u%d-%d", (int)getpid(), i);
		sandbox_config_init(&cfg);
		cfg.task_id = id;
		cfg.cgroup_parent = parent;
		cfg.argv = argv;
		cfg.limits.memory_bytes = 32ULL << 20;
		assert_int_equal(sandbox_launch(sys, &cfg, &t, &err), 0);
		if (i == 1) {
			pid_t pid;
			int pidfd;
			siginfo_t si;

			assert_int_equal(sandbox_adopt(sys, &t->ident, &t2, &err), 0);
			sandbox_task_free(t2);
			if (sandbox_exec(t, &cfg, argv, &pid, &pidfd, &err) == 0) {
				assert_int_equal(
					waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED), 0);
				close(pidfd);
			}
		}
		assert_int_equal(sandbox_wait(t, 20ULL * 1000000, -1, &st), 1);
		assert_int_equal(st.code, 3);
		assert_int_equal(sandbox_destroy(t, &err), 0);
		sandbox_task_free(t);
	}
	cfg.argv = bad;
	snprintf(id, sizeof(id), "u%d-bad", (int)getpid());
	cd_error_reset(&err);
	assert_int_equal(sandbox_launch(sys, &cfg, &t, &err), -ENOENT);
	cg_system_free(sys);
	assert_int_equal(count_fds(), fds_before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_detect_hybrid, setup_root, teardown_root),
		cmocka_unit_test_setup_teardown(test_detect_v1, setup_root, teardown_root),
		cmocka_unit_test_setup_teardown(test_detect_v2, setup_root, teardown_root),
		cmocka_unit_test_setup_teardown(test_detect_none, setup_root, teardown_root),
		cmocka_unit_test(test_name_validate),
		cmocka_unit_test(test_limits_validate),
		cmocka_unit_test_setup_teardown(test_create_rejects_bad_names, setup_root,
						teardown_root),
		cmocka_unit_test_setup_teardown(test_create_destroy_fake_tree, setup_root,
						teardown_root),
		cmocka_unit_test(test_config_validate),
		cmocka_unit_test(test_subnet_parse),
		cmocka_unit_test(test_net_mode_and_ifname),
		cmocka_unit_test(test_netns_gc_scope),
		cmocka_unit_test(test_status_parse),
		cmocka_unit_test(test_seccomp_table),
		cmocka_unit_test(test_seccomp_profile),
		cmocka_unit_test(test_seccomp_userns_option),
		cmocka_unit_test(test_seccomp_cache),
		cmocka_unit_test(test_seccomp_prebuilt),
		cmocka_unit_test_teardown(test_launch_under_asan, teardown_launch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
