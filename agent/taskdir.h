/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskdir.h — the contract between taskd and taskd-shim, the per-task supervisor that outlives
 * taskd: the files in a task's directory <state>/tasks/<task_id>/ and what they mean.
 *   launch.json   written by taskd before it spawns a shim: what to run and how (struct
 *                 launch_spec). One shim per generation (restart = new generation).
 *   status.json   written atomically by the shim on each step (struct shim_status): its own
 *                 pid + start time, the task's pid, and at the end the exit status and reason.
 *                 This record is what lets a restarted taskd report a task that ended while it
 *                 was down with its real exit code.
 *   shim.lock     flock(2)ed by taskd before the spawn and inherited by the shim, held for the
 *                 shim's whole life: "lock is free" == "no shim runs", with no window.
 *   console.log*  the task's merged stdout/stderr (agent/logfile.h), written by the shim.
 * Owns the JSON shape of both files and the /proc start-time check. No process management.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/clock.h"
#include "lib/error.h"
#include "lib/proc.h"

#define TASKDIR_LAUNCH "launch.json"
#define TASKDIR_STATUS "status.json"
#define TASKDIR_LOCK "shim.lock"
#define TASKDIR_LOG "console.log"
#define TASKDIR_INIT_STATUS "init.status" /* the sandbox init's own record ("exited 3") */

struct launch_env {
	char *key;
	char *value;
};

struct launch_spec {
	char *task_id;
	unsigned generation;
	char *cgroup_parent; /* "codedeploy" */
	char *cgroup_name;   /* "<task_id>-<generation>", unique per launch */
	char **argv;	     /* NULL-terminated, >= 1 */
	struct launch_env *env;
	size_t n_env;
	char *app_dir; /* read-only at /app; NULL = none */
	char *net;     /* "none" | "host" | "bridge" */
	char *bridge;  /* bridge mode: host bridge name; NULL = the sandbox's default (cdbr0) */
	char *subnet;  /* bridge mode: its IPv4 CIDR; NULL = the sandbox's default (10.88.0.0/24) */
	uint64_t memory_mb;
	uint32_t millicpus;
	uint64_t pids_max;
	uint64_t storage_mb;
	unsigned stop_grace_s;
	uint64_t log_max_bytes;
	unsigned log_keep;
	unsigned log_line_max;
	char **mask; /* host paths hidden from the task (taskd's state, config, token); NULL-term. */
	char *init_binary; /* sandbox-init exec'd as the task's pid 1; NULL = in-process init */
};

void launch_spec_release(struct launch_spec *s);
/* Serialise to JSON text (*ret malloc()ed). -ENOMEM / -EINVAL for an incomplete spec. */
int launch_spec_to_string(const struct launch_spec *s, char **ret);
/* Parse; every field checked. -EINVAL with a message, -ENOMEM. */
int launch_spec_from_string(const char *text, struct launch_spec *ret, struct cd_error *err);

enum shim_phase {
	SHIM_STARTING, /* shim runs, task not launched yet */
	SHIM_RUNNING,  /* task launched: pid valid */
	SHIM_EXITED,   /* task ended: exit_code/signal/reason valid; the shim is about to exit */
	SHIM_FAILED,   /* the launch failed: message says why (reason start_failed) */
	_SHIM_PHASE_MAX,
};
const char *shim_phase_to_string(enum shim_phase p);

struct shim_status {
	unsigned generation;
	enum shim_phase phase;
	pid_t shim_pid;
	uint64_t shim_start;		/* /proc/<pid>/stat starttime of the shim */
	pid_t pid;			/* the task's init (host pid namespace); 0 before RUNNING */
	uint64_t pid_start;		/* its /proc starttime; 0 = unknown (older shims) */
	usec_t started_at, finished_at; /* realtime */
	int exit_code;			/* -1 when none */
	int signal;			/* 0 when none */
	char reason[32]; /* exited | signaled | oom_killed | stopped | start_failed */
	char message[256];
	uint64_t oom_kills;
	uint64_t log_dropped;
};

void shim_status_init(struct shim_status *s);
int shim_status_to_string(const struct shim_status *s, char **ret);
int shim_status_from_string(const char *text, struct shim_status *ret);
/* Atomic write (tmp + fsync + rename) into dirfd/status.json; read it back (-ENOENT). */
int shim_status_write(int dirfd, const struct shim_status *s);
int shim_status_read(int dirfd, struct shim_status *ret);

/* Process identity (pid + start time) lives in lib/proc.h: proc_start_time(), proc_is_same(). */
