/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runtime.h — the narrow interface taskd-shim starts and stops one task incarnation through:
 * create the task's cgroup with its limits, launch the command sandboxed (tiny init as pid 1,
 * namespaces, read-only /app, masked paths) with stdout/stderr on given fds, signal it, kill the
 * whole cgroup, read usage, remove everything. Implemented over sandbox/ (runtime.c).
 * Owns one struct runtime_task per launch; the shim is the only user (one thread). taskd uses
 * the usage reader by cgroup name and the usage cache (pure, the caller locks).
 * Errors: -errno with a message in err.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/taskdir.h"
#include "lib/clock.h"
#include "lib/error.h"

struct cg_system;
struct runtime_task;

struct runtime_usage {
	uint64_t memory_bytes; /* UINT64_MAX when unknown */
	uint64_t memory_peak_bytes;
	uint64_t cpu_usage_ns;
	uint64_t pids;
	uint64_t oom_kills;
};

/*
 * Create the cgroup spec->cgroup_parent/spec->cgroup_name, and start spec->argv in it with
 * stdout_fd/stderr_fd (stdin is /dev/null). On success the task runs and *ret holds it; on
 * failure nothing is left behind (no cgroup, no process). status_fd (may be -1) is a file the
 * task's init writes its final status record to, so the status survives even the shim.
 */
int runtime_start(const struct launch_spec *spec, int stdout_fd, int stderr_fd, int status_fd,
		  struct runtime_task **ret, struct cd_error *err);

/* The task's first process as seen from the host (its pid 1), and a pidfd for it (owned by rt:
 * becomes readable when it exits). */
pid_t runtime_pid(const struct runtime_task *rt);
int runtime_pidfd(const struct runtime_task *rt);

/*
 * Run argv inside the running task launched from spec (health probes): in its cgroup, all its
 * namespaces (pid included), with the command's uid, capabilities, no_new_privs, rlimits and
 * seccomp profile — exactly its confinement (sandbox_exec()), with the spec's environment and
 * stdio on /dev/null. init_pid/init_start name the task's pid 1 (init_start: proc_start_time()
 * of it, 0 = unknown; the cgroup membership check refuses a recycled pid either way). On success *ret_pid is the
 * caller's child that ends as the command did and *ret_pidfd (owned by the caller) polls
 * readable then; the caller reaps it. SIGTERM to it kills the command's process group (a
 * timeout). -ESRCH when the task is gone; exec failures carry the step in err. Any thread.
 */
int runtime_exec(const struct cg_system *sys, const struct launch_spec *spec, pid_t init_pid,
		 uint64_t init_start, char *const *argv, pid_t *ret_pid, int *ret_pidfd,
		 struct cd_error *err);

/* Send sig to the task's pid 1 (the init forwards it to the command). */
int runtime_signal(struct runtime_task *rt, int sig);

/*
 * Reap the task's pid 1 once runtime_pidfd() is readable: *ret_code is the exit status (0..255)
 * and *ret_signal the killing signal (0 when it exited). -EAGAIN when it has not exited.
 */
int runtime_wait(struct runtime_task *rt, int *ret_code, int *ret_signal);

/* SIGKILL everything left in the task's cgroup and wait until it is empty. */
int runtime_kill(struct runtime_task *rt);
int runtime_usage(const struct runtime_task *rt, struct runtime_usage *ret);
/* Kill leftovers, remove cgroups (and whatever else the launch created) and free rt. */
int runtime_destroy(struct runtime_task *rt, struct cd_error *err);

/*
 * Remove leftovers of a launch whose shim died (killed -9 or crashed): kill and remove the
 * cgroup parent/name if it still exists. -ENOENT is success.
 */
int runtime_cleanup(const char *cgroup_parent, const char *cgroup_name, struct cd_error *err);

/*
 * Usage of a running task by cgroup name (taskd reads it for GetTaskState) through sys, the
 * caller's detected hierarchies (read-only here: any thread). -ENOENT if no such cgroup.
 */
int runtime_usage_by_name(const struct cg_system *sys, const char *cgroup_parent,
			  const char *cgroup_name, struct runtime_usage *ret);

/*
 * How long a reading is served again. Five cgroup files (in three v1 hierarchies) per read are
 * most of a GetTaskState's cost; a client polling faster than this sees the same numbers.
 */
#define RUNTIME_USAGE_MAX_AGE_USEC USEC_PER_SEC

/* One task's last usage reading and the generation (cgroup) it is of. Zero-initialised = empty.
 * Not locked: the owner serialises access. */
struct runtime_usage_cache {
	struct runtime_usage usage;
	usec_t read_at; /* monotonic time the read began */
	unsigned generation;
	bool valid;
};

/* true and *ret when c holds a reading of generation taken less than RUNTIME_USAGE_MAX_AGE_USEC
 * before now (monotonic); false when it must be read again. */
bool runtime_usage_cache_get(const struct runtime_usage_cache *c, unsigned generation, usec_t now,
			     struct runtime_usage *ret);
/* Remember u, read from generation's cgroup beginning at read_at (monotonic). An older reading
 * than the one held (a slower concurrent read) is dropped. */
void runtime_usage_cache_put(struct runtime_usage_cache *c, unsigned generation, usec_t read_at,
			     const struct runtime_usage *u);
