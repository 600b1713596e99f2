/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskwatch_util.h — selftest scaffolding for taskwatch: TAP output, throw-away cgroups in the
 * unified hierarchy plus the v1 memory controller (hybrid mode), and processes started inside
 * them before they run anything (fork, move through a sync pipe, then release). Test code
 * only: aborts the test program on impossible failures, reports the rest as TAP.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CG_UNIFIED_ROOT "/sys/fs/cgroup/unified"
#define CG_MEMORY_ROOT "/sys/fs/cgroup/memory"

void tap_plan(int n);
void tap_ok(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_skip(const char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int tap_failures(void);

struct test_cgroup {
	char unified[256];
	char memory[256]; /* "" when the v1 memory controller is not mounted */
	uint64_t id;	  /* cgroup2 id of unified */
};

/* Create <root>/cd-ebpf-test-<pid>-<name> in the unified hierarchy and (when mounted) the v1
 * memory controller; memory_limit (bytes, 0 = none) is set on the latter. 0 or -errno. */
int test_cgroup_create(struct test_cgroup *cg, const char *name, uint64_t memory_limit);
/* Kill what is left (cgroup.kill), wait until empty, remove both directories. */
void test_cgroup_destroy(struct test_cgroup *cg);
/* Number of processes in the unified cgroup, -errno. */
int test_cgroup_nprocs(const struct test_cgroup *cg);

/* Fork a child that runs fn(arg) and _exit()s with its return value, after it has been moved
 * into cg (both hierarchies). cg may be NULL (child stays where we are). *ret_pidfd (may be
 * NULL) gets a pidfd. Returns the pid or -errno. */
pid_t test_spawn(const struct test_cgroup *cg, int (*fn)(void *), void *arg, int *ret_pidfd);

/* Remove leftovers from earlier runs that died before cleaning up (our prefix only). */
void test_cgroup_sweep_stale(void);
