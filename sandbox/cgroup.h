/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup.h — the task cgroup backend: layout detection (pure v2, pure v1, hybrid), creation of
 * one task's cgroup in every hierarchy with its limits, attach, kill of the whole tree, usage
 * statistics, removal and garbage collection.
 * Owns the cgroup directories it creates and the dir fds it opens (cg_system keeps one per
 * hierarchy from detection to cg_system_free()). Does not own processes: it kills what is inside
 * a task cgroup but never moves anything out of one.
 * Task cgroups are created and removed through cgroupfs relative to those hierarchy fds
 * (mkdirat, openat, unlinkat): the launch path needs no mount table. libcgroup changes the v1
 * limits of a running task (task_cgroup_set_limits) when its mount table matches the detected
 * one; it is initialised on that first use only (its init parses /proc/mounts and clears ~2.4 MB
 * of tables, and its create/delete re-read /proc/mounts per controller: 0.4 + 0.3 ms a launch).
 * Everything libcgroup 2.0.2 cannot do (layout detection, the unified hierarchy, cgroup.kill,
 * memory.events, pure v2) goes through cgroupfs as well.
 * Errors: -errno (libcgroup ECG* codes are mapped here) plus a message in struct cd_error.
 * Thread-safety: a struct task_cgroup is used by one thread at a time; cg_system is read-only
 * after detection and may be shared.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/error.h"

#define CG_DEFAULT_ROOT "/sys/fs/cgroup"

enum cg_layout {
	CG_LAYOUT_NONE,	  /* no cgroup file system found under the root */
	CG_LAYOUT_V1,	  /* only v1 hierarchies */
	CG_LAYOUT_HYBRID, /* v1 controllers plus a cgroup2 mount at <root>/unified */
	CG_LAYOUT_V2,	  /* <root> itself is cgroup2 */
};

/* The hierarchies a task cgroup lives in. CG_UNIFIED is the cgroup2 tree (pure v2 or the
 * hybrid's unified mount); the others are v1 controller hierarchies. */
enum cg_hier {
	CG_UNIFIED,
	CG_V1_MEMORY,
	CG_V1_CPU,
	CG_V1_CPUACCT,
	CG_V1_PIDS,
	CG_V1_FREEZER,
	_CG_HIER_MAX,
};

struct cg_system;
struct task_cgroup;

/* Resource limits; 0 means "no limit" for each field. */
struct cg_limits {
	uint64_t memory_bytes; /* memory limit; swap is forbidden (memsw / memory.swap.max = 0) */
	uint32_t cpu_millis;   /* 1000 = one vcpu: quota = cpu_millis * period / 1000 */
	uint64_t pids_max;     /* maximum number of tasks (threads) */
};

/* Usage for GetTaskState. Fields that the layout cannot provide are UINT64_MAX. */
struct cg_stats {
	uint64_t memory_current; /* bytes */
	uint64_t memory_peak;	 /* bytes, high-water mark since creation */
	uint64_t cpu_usage_ns;	 /* CPU time consumed by all tasks, nanoseconds */
	uint64_t pids_current;
	uint64_t oom_kills; /* processes killed by the OOM killer inside the cgroup */
};

/*
 * Detect the layout under root (NULL = CG_DEFAULT_ROOT). Detection only looks at files, so a
 * test can point root at a fake tree: a directory holding cgroup.controllers is cgroup2; a
 * directory holding `tasks` is a v1 hierarchy whose controllers are named by its directory
 * name ("cpu,cpuacct"); root itself with cgroup.controllers is pure v2, otherwise a cgroup2
 * directory named "unified" makes the layout hybrid. *ret is owned by the caller
 * (cg_system_free()). -ENOENT when root does not exist, -ENOMEDIUM when nothing is mounted.
 */
int cg_system_detect(const char *root, struct cg_system **ret, struct cd_error *err);
void cg_system_free(struct cg_system *sys);
enum cg_layout cg_system_layout(const struct cg_system *sys);
/* Directory of a hierarchy's root (e.g. "/sys/fs/cgroup/memory"), NULL when absent. */
const char *cg_system_hier_path(const struct cg_system *sys, enum cg_hier h);
const char *cg_layout_to_string(enum cg_layout layout);
const char *cg_hier_to_string(enum cg_hier h);

/*
 * Validate a cgroup parent ("codedeploy", "codedeploy/prod") or leaf name: relative, no "."/"..
 * " components, no empty components, only [A-Za-z0-9._:@-] per component, at most 200 bytes.
 * Returns 0 or -EINVAL.
 */
int cg_name_validate(const char *name, bool allow_slash);
/* Validate limits (0 = unlimited; memory >= 4 MiB; cpu_millis <= 1024000; pids >= 1 when set). */
int cg_limits_validate(const struct cg_limits *limits, struct cd_error *err);

/*
 * Create <parent>/<name> in every hierarchy the layout has (the unified/v2 tree first, then v1
 * memory, cpu, cpuacct, pids, freezer) with mkdirat() on the hierarchy fds, and apply limits
 * (v1: memory.limit_in_bytes then memory.memsw.limit_in_bytes, or memory.swappiness=0 without
 * swap accounting; cpu.cfs_period_us/cfs_quota_us; pids.max). The parent is created when
 * missing and left in place. -EEXIST when the task cgroup already exists in any hierarchy (a
 * name clash must not share a cgroup); on any failure everything created by this call is
 * removed again, and nothing else. sys must outlive *ret.
 */
int task_cgroup_create(const struct cg_system *sys, const char *parent, const char *name,
		       const struct cg_limits *limits, struct task_cgroup **ret,
		       struct cd_error *err);
/*
 * Change the limits of a running task (0 = unlimited for each field: all three are written).
 * v1 goes through libcgroup (cgroup_modify_cgroup) when its mount table matches, else cgroupfs;
 * v1 keeps memsw >= the memory limit at every step (raised first, lowered last). Lowering memory
 * below current usage makes the kernel reclaim, and may OOM-kill inside the cgroup. Errors:
 * -EINVAL (limits), -errno of the failing write with a message.
 */
int task_cgroup_set_limits(struct task_cgroup *cg, const struct cg_limits *limits,
			   struct cd_error *err);
/* Open an existing task cgroup (re-adoption after a restart, gc). -ENOENT when it exists in no
 * hierarchy. */
int task_cgroup_open(const struct cg_system *sys, const char *parent, const char *name,
		     struct task_cgroup **ret, struct cd_error *err);
/* Close fds and free memory; the cgroups stay. NULL is fine. */
void task_cgroup_free(struct task_cgroup *cg);

/* "<parent>/<name>", owned by cg. */
const char *task_cgroup_name(const struct task_cgroup *cg);
/*
 * Directory fd of the task cgroup in hierarchy h, owned by cg (do not close), or -ENOENT when
 * the layout has no such hierarchy. Watchers use it with openat(): memory.events (v2),
 * memory.oom_control + cgroup.event_control (v1), cgroup.events.
 */
int task_cgroup_fd(const struct task_cgroup *cg, enum cg_hier h);
/* Absolute path of the task cgroup in hierarchy h written to buf; -ENOENT / -ENAMETOOLONG. */
int task_cgroup_path(const struct task_cgroup *cg, enum cg_hier h, char *buf, size_t size);
/* The cgroup2 id (what bpf_get_current_cgroup_id() returns): the inode number of the unified
 * directory. -EOPNOTSUPP on pure v1. */
int task_cgroup_id(const struct task_cgroup *cg, uint64_t *ret);

/*
 * Move pid into the task cgroup in every hierarchy; with skip_unified the cgroup2 tree is left
 * alone (the pid was cloned into it with CLONE_INTO_CGROUP). Moving into v1 costs an RCU grace
 * period per write: start tasks with clone3(CLONE_INTO_CGROUP) where possible.
 */
int task_cgroup_attach(const struct task_cgroup *cg, pid_t pid, bool skip_unified);

/*
 * Open the `tasks` file of the task cgroup in every distinct v1 hierarchy, O_WRONLY|O_CLOEXEC,
 * into fds[] (at most max). Returns how many were opened (the caller closes them) or -errno.
 * A freshly cloned, single-threaded child moves itself into every v1 hierarchy by writing "0"
 * to each: unlike a move by pid through cgroup.procs this does not take the global
 * threadgroup lock, whose RCU grace period costs milliseconds per launch. Opened by the caller
 * so the child needs no permission of its own (it may already be in a user namespace).
 */
int task_cgroup_open_v1_tasks(const struct task_cgroup *cg, int *fds, size_t max);

/* True when no process is left in the cgroup (any hierarchy). Negative errno on read errors. */
int task_cgroup_is_empty(const struct task_cgroup *cg);
/*
 * SIGKILL everything in the cgroup and wait (at most timeout_usec) until it is empty:
 * cgroup.kill where the unified tree has it (kernel >= 5.14), otherwise freeze (v1 freezer),
 * SIGKILL every pid in cgroup.procs, thaw, repeat. -ETIMEDOUT when processes remain.
 */
int task_cgroup_kill(const struct task_cgroup *cg, uint64_t timeout_usec);
/* Remove the task cgroup from every hierarchy. Fails with -EBUSY when processes remain (kill
 * first); -ENOENT in a hierarchy is fine. cg is still to be freed with task_cgroup_free(). */
int task_cgroup_destroy(struct task_cgroup *cg, struct cd_error *err);
/* Read usage. Works on a cgroup whose tasks already exited (until destroy). */
int task_cgroup_stats(const struct task_cgroup *cg, struct cg_stats *ret);
/*
 * A pollable fd that becomes readable when the OOM killer acts in the cgroup: v2 memory.events
 * (poll POLLPRI, then re-read), v1 an eventfd registered on memory.oom_control (read 8 bytes).
 * The fd is owned by the caller. *ret_is_eventfd tells which kind it is.
 */
int task_cgroup_oom_watch(const struct task_cgroup *cg, int *ret_fd, bool *ret_is_eventfd);

/*
 * List the task cgroup names directly under parent (union over hierarchies), NUL-separated
 * strv owned by the caller (strv_free). Used by sandbox_gc() to find leftovers of a crash.
 */
int cg_list_children(const struct cg_system *sys, const char *parent, char ***ret);

/*
 * Remove the (last component of the) parent cgroup in every hierarchy where it is empty; one
 * that still holds task cgroups or processes, or is absent, is left alone. For a launcher done
 * with its parent (the builder at shutdown), so test runs and uninstalls leave no empty cgroups.
 * Returns how many directories were removed, -EINVAL for an invalid parent name.
 */
int cg_parent_remove(const struct cg_system *sys, const char *parent);
