/* SPDX-License-Identifier: Apache-2.0 */
/*
 * launch.h — start one task's process tree in its own cgroup and namespaces, watch it, stop it,
 * clean up after it, and find it again after the launcher restarted.
 * Owns: the task cgroup (via cgroup.h), the host veth and address lease (via netns.h), the
 * task's init process (pid 1 of the task's pid namespace) and the fds in struct sandbox_task.
 * Does not own: the caller's stdio fds (duplicated into the task, never closed here), the
 * cg_system (must outlive every task), the artifact directory (bound read-only, never written).
 *
 * The process tree: sandbox_launch() clone3()s the init directly into the task's cgroup
 * (CLONE_INTO_CGROUP | CLONE_PIDFD, new pid/mnt/uts/ipc/cgroup and, per mode, net namespaces).
 * The init builds the file system view, then forks the command (pid 2), which switches uid/gid,
 * drops capabilities, sets no_new_privs and rlimits, loads the seccomp profile and execs.
 * The init forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to the command, reaps every
 * orphan, and exits when the command exits; the kernel then SIGKILLs what is left in the pid
 * namespace. The init is a clone of the caller that, when cfg->init_binary is set, execs the tiny
 * sandbox-init after forking the command (off the command's start path; see docs/sandbox.md for
 * the measured costs); it closes every inherited fd but the few it needs, and never allocates.
 * v1 hierarchies (hybrid, pure v1): the child itself writes "0" to each v1 `tasks` file (opened
 * by the caller) before anything else; a self-move skips the global lock whose RCU grace period
 * makes a move by pid cost milliseconds. Fallbacks: without CLONE_INTO_CGROUP (kernel < 5.7) the
 * caller writes the child's pid to the cgroup2 cgroup.procs, without clone3 (< 5.3) clone(2) is
 * used; the child waits on a sync socket meanwhile, so nothing of the task runs outside its
 * cgroup either way. sandbox_exec() runs further processes inside a running task.
 *
 * Final status (sandbox_wait()): a pid-namespace init cannot die by a signal it raises itself
 * (the kernel protects it, pid_namespaces(7)), so the init reports the command's status in a
 * record "exited N\n" or "signaled S[ core]\n", written to an internal pipe and, when
 * cfg->status_fd >= 0, with pwrite() at offset 0 of that file, then exits with N or 128 + S.
 * sandbox_wait() returns the record; when there is none (the init itself was SIGKILLed by
 * cgroup kill or the OOM killer) it returns the init's own wait status. With no_init the
 * command is pid 1 and its wait status is returned as it is.
 *
 * Re-adoption after the caller restarts: the init outlives the caller. Persist
 * struct sandbox_ident (pid, start time from /proc/<pid>/stat field 22, task id, cgroup parent,
 * net lease); sandbox_adopt() checks pid + start time + cgroup membership, opens a pidfd and
 * the cgroup. An adopted task is not the caller's child: its exit is seen by polling the pidfd,
 * its status by reading the status file given as cfg->status_fd (sandbox_status_parse()).
 *
 * Errors: -errno + message in struct cd_error. A failure inside the task before exec (mount,
 * setuid, seccomp, exec itself) is reported by errno and step name through a CLOEXEC pipe:
 * sandbox_launch() returns that errno and a message like "exec /bin/nope: No such file or
 * directory (step exec)" — never a silent exit 127. Nothing is left behind on failure.
 * Thread-safety: a struct sandbox_task is used by one thread at a time. sandbox_launch() may run
 * concurrently in several threads (it blocks signals on the calling thread only).
 * Caller duties: do not ignore SIGCHLD (SIG_IGN / SA_NOCLDWAIT reap the init behind our back)
 * and never waitpid(-1) — wait for your own children by pid or pidfd — or the init's status is
 * lost. Under systemd, taskd's unit needs KillMode=process (or mixed) and Delegate=yes, or a
 * `systemctl stop/restart taskd` kills every task with it (see docs/sandbox.md).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "lib/error.h"
#include "sandbox/cgroup.h"
#include "sandbox/netns.h"
#include "sandbox/seccomp.h"

#define SANDBOX_DEFAULT_CGROUP_PARENT "codedeploy"
#define SANDBOX_DEFAULT_WORK_DIR "/task"
#define SANDBOX_DEFAULT_STORAGE_BYTES (64ULL << 20)
#define SANDBOX_TASK_ID_MAX 64
#define SANDBOX_MAX_MASKS 32
#define SANDBOX_MAX_RLIMITS 16

struct sandbox_rlimit {
	int resource; /* RLIMIT_* */
	rlim_t cur, max;
};

struct sandbox_config {
	const char *task_id;	   /* required: [A-Za-z0-9._:@-], <= 64; hostname, cgroup leaf */
	const char *cgroup_parent; /* NULL = SANDBOX_DEFAULT_CGROUP_PARENT */
	char *const *argv;	   /* required; argv[0] without '/' is looked up in PATH inside */
	char *const *envp;	   /* NULL = only a default PATH */
	const char *cwd;	   /* inside the sandbox; NULL = work_dir */
	const char *app_dir;	   /* host directory bound read-only at /app; NULL = none */
	const char *work_dir;	   /* writable work dir inside; NULL = SANDBOX_DEFAULT_WORK_DIR */
	uint64_t storage_bytes;	   /* tmpfs size shared by /tmp, work dir, /dev/shm; 0 = 64 MiB */
	struct cg_limits limits;
	enum sandbox_net_mode net;
	struct netns_bridge_config bridge; /* bridge mode only */
	uid_t uid;			   /* the command's uid/gid (the init stays root) */
	gid_t gid;
	/* Optional user namespace: ids 0..userns_size-1 inside are userns_base.. outside, so root
	 * in the task is an unprivileged id on the host. userns_size 0 = none (default). */
	uid_t userns_base;
	uint32_t userns_size;
	const gid_t *groups; /* supplementary groups, n_groups entries (none by default) */
	size_t n_groups;
	uint64_t caps; /* capabilities kept, bit (1 << CAP_X); 0 = none (default) */
	/* host paths hidden from the task (taskd's state dir, token, config, runtime dir):
	 * a directory becomes an empty read-only mode-000 tmpfs, a file is covered by /dev/null */
	const char *const *mask_paths; /* NULL-terminated, absolute; missing paths are skipped */
	const struct sandbox_rlimit *rlimits;
	size_t n_rlimits;
	bool no_init; /* run the command itself as pid 1 (it then ignores SIGTERM unless it
			  * installs a handler) */
	/* The sandbox-init binary (build/sandbox-init, installed to libexec): once the command is
	 * forked the init execs it, so the long-lived pid 1 keeps no copy-on-write image of the
	 * caller's memory; the exec runs beside the command's own start. NULL = the init stays a
	 * clone of the caller (fine for a small caller like sandbox-run; a daemon should set it). */
	const char *init_binary;
	bool no_seccomp; /* skip the default seccomp profile */
	struct sandbox_seccomp_opts seccomp;
	int stdin_fd; /* duplicated into the task; -1 = /dev/null */
	int stdout_fd;
	int stderr_fd;
	int status_fd; /* optional file the init writes its final status record to; -1 = none */
	/* Benchmarks only: skip clone3(CLONE_INTO_CGROUP) and the child's own v1 entry, move the
	 * init by pid through cgroup.procs of every hierarchy (the slow, RCU-bound path). */
	bool attach_by_pid;
};
/* Set every fd to -1 and everything else to its default. */
void sandbox_config_init(struct sandbox_config *cfg);
/* Check a config without side effects: every problem found is reported in err (the first
 * decides the return code, -EINVAL or -errno of an unusable app_dir). */
int sandbox_config_validate(const struct sandbox_config *cfg, struct cd_error *err);

/* What a restarted caller needs to find a running task again. Plain data: persist as is. */
struct sandbox_ident {
	pid_t pid;	     /* the init, in the caller's pid namespace */
	uint64_t start_time; /* /proc/<pid>/stat field 22 */
	char task_id[SANDBOX_TASK_ID_MAX + 1];
	char cgroup_parent[201];
	enum sandbox_net_mode net;
	struct netns_lease lease;
};

struct sandbox_status {
	bool signaled;	  /* false: exited with code; true: killed by signal */
	int code;	  /* exit code, or the signal number */
	bool core_dumped; /* signaled only */
};

struct sandbox_task {
	struct sandbox_ident ident;
	int pidfd;	    /* owned; polls readable when the init exits */
	uint64_t cgroup_id; /* cgroup2 id for eBPF filtering; 0 on pure v1 */
	bool into_cgroup;   /* started with CLONE_INTO_CGROUP (false: moved via cgroup.procs) */
	bool is_child;	    /* the caller is the init's parent (false after sandbox_adopt()) */
	bool reaped;
	struct sandbox_status status; /* valid once reaped */
	struct task_cgroup *cg;	      /* owned */
	int status_pipe;	      /* owned: read end of the init's status record */
	uint64_t launch_usec;	      /* monotonic time sandbox_launch() took, for metrics */
	/* its phases (µs): preparation (seccomp build, pipes), cgroup creation, clone, the
	 * caller's network set-up (bridge mode; lo of mode none is the child's), and the wait for
	 * the exec report (lo, mounts, fork, credentials, exec in the child) */
	uint64_t phase_usec[5];
};

/*
 * Launch. On success *ret is owned by the caller: sandbox_wait()/sandbox_stop(), then
 * sandbox_destroy() (removes cgroups and veth) and sandbox_task_free().
 * Errors: -EINVAL (config), -EEXIST (a task with this id exists: cgroup or veth), -ENOSPC
 * (subnet exhausted), -errno of the failing step inside the task (message names the step).
 */
int sandbox_launch(const struct cg_system *sys, const struct sandbox_config *cfg,
		   struct sandbox_task **ret, struct cd_error *err);

/*
 * Wait for the init to exit (timeout_usec 0 = poll once, UINT64_MAX = forever) and fill
 * *ret (may be NULL). Returns 1 when it has exited, 0 on timeout, -errno. For a child the
 * init is reaped; for an adopted task the status comes from status_fd's file if given
 * (sandbox_status_parse) — without it -ENODATA is returned after the exit.
 */
int sandbox_wait(struct sandbox_task *t, uint64_t timeout_usec, int status_fd,
		 struct sandbox_status *ret);
/* Send a signal to the init (which forwards the forwardable ones to the command). */
int sandbox_signal(struct sandbox_task *t, int sig);
/*
 * Stop: SIGTERM, wait grace_usec for the init to exit, then SIGKILL the whole cgroup and wait
 * for it to empty. The task is reaped when it is a child. Returns 0 or -errno.
 */
int sandbox_stop(struct sandbox_task *t, uint64_t grace_usec);
/* Kill whatever is left, remove the cgroups and the veth + lease. Idempotent. */
int sandbox_destroy(struct sandbox_task *t, struct cd_error *err);
void sandbox_task_free(struct sandbox_task *t);

/*
 * Run argv inside a running task (health probes, `taskctl exec`): in its cgroup, all its
 * namespaces (pid included: the process is a child of nobody there, reaped by the task's init
 * if orphaned), with the same uid/gid, capabilities, no_new_privs, rlimits and seccomp profile as
 * the task's command. cfg is the task's launch config (its argv is ignored; stdio fds, cwd and
 * envp are used). On success *ret_pid is a middle process in the caller's pid namespace that
 * exits as the command did (same code, or killed by the same signal); *ret_pidfd (owned by the
 * caller) polls readable at its end; the caller reaps it (waitid P_PIDFD). Stopping (a probe's
 * timeout): send SIGTERM to the middle — it SIGKILLs the command's process group (the command
 * runs setsid) and then ends as the command did (signaled 9). SIGINT/SIGHUP/SIGQUIT/SIGUSR1/
 * SIGUSR2 are forwarded to the command. SIGKILL of the middle kills the command itself
 * (PR_SET_PDEATHSIG) but not what it forked, which then lives on in the task until it ends.
 * Errors: -errno + message, exec failures with the step, as sandbox_launch(). Needs clone3 and
 * setns() on a pidfd (5.8).
 */
int sandbox_exec(const struct sandbox_task *t, const struct sandbox_config *cfg, char *const *argv,
		 pid_t *ret_pid, int *ret_pidfd, struct cd_error *err);

/* Find a task again after a restart. -ESRCH when the pid is gone or is another process. */
int sandbox_adopt(const struct cg_system *sys, const struct sandbox_ident *ident,
		  struct sandbox_task **ret, struct cd_error *err);

/*
 * Remove leftovers of a crash under parent: every task cgroup whose name is not in keep
 * (NULL-terminated task ids, may be NULL) is killed and removed; stale address leases in
 * ipam_dir (NULL = default) whose veth is gone are released. Returns the number of cgroups
 * removed. Call at daemon start, before launching anything.
 */
int sandbox_gc(const struct cg_system *sys, const char *parent, const char *const *keep,
	       const char *ipam_dir, struct cd_error *err);

/* Parse a status record ("exited 3", "signaled 9 core"). -EINVAL / -ENODATA (empty). */
int sandbox_status_parse(const char *s, struct sandbox_status *ret);
/* Exit code a CLI should mirror: code, or 128 + signal. */
int sandbox_status_exit_code(const struct sandbox_status *st);
/* Start time (field 22 of /proc/<pid>/stat) of a process. */
int sandbox_proc_start_time(pid_t pid, uint64_t *ret);
