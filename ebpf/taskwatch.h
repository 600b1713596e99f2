/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskwatch.h — per-task process health events: exec, fork, exit (code, signal, core dump),
 * fatal signals with their sender, OOM kills and "cgroup empty", for the cgroups a caller
 * watches. Two modes behind one API: eBPF (tp_btf programs + one ring buffer, the kernel side in
 * taskwatch.bpf.c) and a fallback without BPF (pidfd + waitid for the process that ends the
 * task, memory.events / memory.oom_control eventfd for OOM, cgroup.events for emptiness).
 * Owns: the BPF objects, the per-target fds, the event stream and the reason classifier
 * (taskwatch_reason_*). Does not own the cgroups or the processes: the caller (sandbox/taskd)
 * creates them, reaps its children and kills what it wants killed.
 *
 * The first part (struct taskwatch_event) is shared with the BPF program, so it uses only
 * kernel fixed-width types; the user API below it is hidden from the BPF compiler.
 */
#pragma once

#ifdef __bpf__
/* vmlinux.h provides __u32/__u64/__s32. */
#else
#include <linux/types.h>
#endif

#define TASKWATCH_COMM_LEN 16
#define TASKWATCH_FILENAME_LEN 256

enum taskwatch_event_type {
	TASKWATCH_EV_EXEC = 1,
	TASKWATCH_EV_FORK = 2,
	TASKWATCH_EV_EXIT = 3,	       /* a whole process (thread group) ended */
	TASKWATCH_EV_FATAL_SIGNAL = 4, /* a signal whose delivery kills the target was sent */
	TASKWATCH_EV_OOM_KILL = 5,
	TASKWATCH_EV_CGROUP_EMPTY = 6, /* user space only: cgroup.events says "populated 0" */
	TASKWATCH_EV_LOST = 7,	       /* user space only: events dropped since the last one;
					* global (cookie 0, cgroup_id 0): feed it to every task */
	TASKWATCH_EV__MAX = 8,
};

/* Flags in taskwatch_event.flags. */
#define TASKWATCH_F_MAIN 0x1		/* exit/oom/signal concerns the task's main process */
#define TASKWATCH_F_INIT 0x2		/* exit of the process whose end ends the task */
#define TASKWATCH_F_SENDER_KERNEL 0x4	/* fatal signal raised by the kernel (fault, OOM, ...) */
#define TASKWATCH_F_FILENAME_TRUNC 0x8	/* exec filename did not fit */
#define TASKWATCH_F_FALLBACK 0x10	/* produced by the non-BPF fallback */
#define TASKWATCH_F_STATUS_UNKNOWN 0x20 /* fallback exit: status not obtainable */
#define TASKWATCH_F_HANDLED 0x40	/* signal to the init, which handles (forwards) it */

/* Value of the BPF map of watched cgroups (key: cgroup2 id). */
struct taskwatch_watched {
	__u64 cookie;
	__u32 init_tgid; /* signals to it are reported even when handled (0 = none) */
	__u32 pad;
};

/*
 * One event. pid/tgid/ppid are pids in the initial pid namespace of the process the event is
 * about (for fatal_signal: the target; for oom_kill: the victim; 0 when the fallback cannot
 * know). ts_ns is CLOCK_MONOTONIC (bpf_ktime_get_ns(), or clock_gettime() in the fallback).
 */
struct taskwatch_event {
	__u32 type; /* enum taskwatch_event_type */
	__u32 flags;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u32 pad0;
	__u64 ts_ns;
	__u64 cgroup_id; /* cgroup2 (default hierarchy) id of the process */
	__u64 cookie;	 /* the caller's cookie for that cgroup */
	char comm[TASKWATCH_COMM_LEN];
	union {
		struct {
			char filename[TASKWATCH_FILENAME_LEN];
		} exec;
		struct {
			__u32 parent_pid; /* the thread that forked */
		} fork;
		struct {
			__s32 code;	   /* exit code when signal == 0 */
			__u32 signal;	   /* terminating signal, 0 for a normal exit */
			__u32 core_dumped; /* 1 when a core was written */
			__u32 status;	   /* raw wait status */
		} exit;
		struct {
			__u32 sig;
			__s32 si_code;
			__u32 sender_pid;  /* thread that sent it (0: unknown) */
			__u32 sender_tgid; /* process that sent it (0: unknown) */
			char sender_comm[TASKWATCH_COMM_LEN];
		} signal;
		struct {
			__u64 count; /* oom_kill counter delta (fallback; 1 in BPF mode) */
		} oom;
		struct {
			__u64 count; /* events lost since the previous LOST event */
		} lost;
	};
};

#ifndef __bpf__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct taskwatch;

struct taskwatch_opts {
	bool force_fallback;	/* also forced by the environment: TASKWATCH_FALLBACK=1 */
	uint32_t ringbuf_bytes; /* BPF ring buffer size; 0 = 4 MiB; rounded up to a power of 2 */
	uint32_t max_targets;	/* watched cgroups; 0 = 16384 */
};

/*
 * Create a watcher. opts may be NULL. BPF mode is tried first (needs kernel BTF, CAP_BPF +
 * CAP_PERFMON or CAP_SYS_ADMIN, a verifier that accepts the programs); any failure there falls
 * back silently and taskwatch_mode() says why. Returns 0 or -errno (-ENOMEM, epoll failures).
 * Not thread-safe: one thread uses one watcher. The ring buffer and the BPF data are mapped
 * MADV_DONTFORK (so forking tasks stays cheap): a fork()ed child must not use the watcher.
 * BPF mode needs Linux >= 5.11 (tp_btf, ring buffer, bpf_get_current_task_btf).
 */
int taskwatch_new(const struct taskwatch_opts *opts, struct taskwatch **ret);
struct taskwatch *taskwatch_free(struct taskwatch *tw);
static inline void taskwatch_freep(struct taskwatch **tw)
{
	if (*tw)
		taskwatch_free(*tw);
}
#define _cleanup_taskwatch_ __attribute__((cleanup(taskwatch_freep)))

/* "bpf" or "fallback"; *ret_why (may be NULL) gets why the fallback was chosen ("" in BPF
 * mode). Strings live as long as tw. */
const char *taskwatch_mode(const struct taskwatch *tw, const char **ret_why);
bool taskwatch_is_bpf(const struct taskwatch *tw);

/* Which process is the task's "main" one, whose death gives the task its reason. */
enum taskwatch_main {
	TASKWATCH_MAIN_INIT = 0,       /* the init process itself (no separate init) */
	TASKWATCH_MAIN_INIT_CHILD = 1, /* the first process the init forks (taskd's tiny init) */
	TASKWATCH_MAIN_PID = 2,	       /* main_pid below */
};

/*
 * A task to watch. cgroup_id is the cgroup2 id (taskwatch_cgroup_id()) of the task's cgroup in
 * the default hierarchy; only processes directly in that cgroup produce events (not in child
 * cgroups). Add it before the task's first process starts, or early events are missed.
 *
 * init_pid is the process whose exit ends the task (pid 1 of the task's pid namespace, as seen
 * from ours); 0 = the task ends only when the cgroup becomes empty. The fallback needs it, and
 * init_pidfd (-1 = open one from init_pid; not taken over, duplicated) to wait for it without
 * pid reuse races; it must be our child for the exit status to be known (waitid WNOWAIT, so the
 * caller still reaps it) — otherwise the kernel's PIDFD_INFO_EXIT is used when available.
 *
 * main_kind says whose death gives the reason (see enum taskwatch_main). The fallback sees no
 * forks, so with TASKWATCH_MAIN_INIT_CHILD it reports the init's status (reason "uncertain").
 *
 * cgroup_path (unified cgroup directory, may be NULL) gives cgroup_empty events in both modes.
 * memory_path (may be NULL) is the memory cgroup directory for OOM in the fallback: cgroup2
 * (memory.events) or v1 (memory.oom_control + cgroup.event_control eventfd).
 */
struct taskwatch_target {
	uint64_t cgroup_id;
	uint64_t cookie;
	pid_t init_pid;
	int init_pidfd;
	enum taskwatch_main main_kind;
	pid_t main_pid; /* TASKWATCH_MAIN_PID only */
	const char *cgroup_path;
	const char *memory_path;
};
#define TASKWATCH_TARGET_INIT                                                                      \
	{                                                                                          \
		.init_pidfd = -1                                                                   \
	}

/* 0, -EEXIST (cgroup already watched), -ENOSPC (map full), -EINVAL, -ENOMEM, or the -errno of
 * opening one of the target's files (e.g. -ESRCH when init_pid already exited). */
int taskwatch_add(struct taskwatch *tw, const struct taskwatch_target *t);
/* Stop watching; events already queued for it are still delivered (without main/init flags).
 * -ENOENT if unknown. Callbacks may add and remove targets. */
int taskwatch_remove(struct taskwatch *tw, uint64_t cgroup_id);
/*
 * Name the init after the task started (add before the first process, set_init right after
 * spawning it): flags are resolved when events are consumed, so nothing is missed as long as
 * this happens before the next taskwatch_consume(). pidfd as in taskwatch_target.
 */
int taskwatch_set_init(struct taskwatch *tw, uint64_t cgroup_id, pid_t init_pid, int init_pidfd);
/* Tell the watcher which pid is the main process (when the caller learns it late). */
int taskwatch_set_main(struct taskwatch *tw, uint64_t cgroup_id, pid_t main_pid);

/* An fd that becomes readable (EPOLLIN) when taskwatch_consume() has work. Owned by tw. */
int taskwatch_fd(const struct taskwatch *tw);

/* Return 0 to go on; a negative value (e.g. -ECANCELED) stops consuming and is what
 * taskwatch_consume() returns. The event is only valid during the call. */
typedef int (*taskwatch_event_fn)(const struct taskwatch_event *ev, void *userdata);
/* Deliver every pending event in order without blocking. Returns the number delivered, the
 * callback's non-zero value, or -errno. Lost events are reported as TASKWATCH_EV_LOST.
 * Per cgroup the order is causal: OOM kill before the exit it causes, exits before
 * cgroup_empty; across cgroups, kernel order (BPF) or per-source order (fallback). */
int taskwatch_consume(struct taskwatch *tw, taskwatch_event_fn cb, void *userdata);
/* Total events dropped because the ring buffer was full: the sum, and per type into per_type
 * (may be NULL). Always 0 in the fallback. */
uint64_t taskwatch_lost(struct taskwatch *tw, uint64_t per_type[TASKWATCH_EV__MAX]);

/* cgroup2 id of a cgroup directory (what bpf_get_current_cgroup_id() reports for it).
 * -EMEDIUMTYPE when path is not on a cgroup2 mount. */
int taskwatch_cgroup_id(const char *path, uint64_t *ret);

const char *taskwatch_event_type_to_string(enum taskwatch_event_type t);

/*
 * Reason classifier: feed it a task's events (those with its cookie/cgroup) in order; it says
 * when the task ended and why. Pure: no I/O, usable on recorded streams.
 *
 * The task ends at the exit of its init (TASKWATCH_F_INIT) or at cgroup_empty. The reason is
 * taken from the main process (TASKWATCH_F_MAIN), which is the init itself unless the watcher
 * was told otherwise:
 *   killed_by_stop  the caller called taskwatch_reason_stop_requested() before the main died;
 *   oom_killed      the main process was the OOM victim, or it died after an OOM kill in the
 *                   task with a non-zero status (the kill of a child is the root cause) —
 *                   unless a process (not the kernel) sent the signal that killed it;
 *   signaled        the main died of a signal: sig, sender pid/comm when known; when the
 *                   sender is the init and someone sent the init that signal first, that
 *                   someone is the sender (via_init: the init forwarded it);
 *   exited          the main exited: code.
 * When the main's death was not observed (lost events, no init), the init's status is used and
 * `uncertain` is set.
 */
enum taskwatch_reason_kind {
	TASKWATCH_REASON_NONE = 0, /* task has not ended */
	TASKWATCH_REASON_EXITED,
	TASKWATCH_REASON_SIGNALED,
	TASKWATCH_REASON_OOM_KILLED,
	TASKWATCH_REASON_KILLED_BY_STOP,
	TASKWATCH_REASON_UNKNOWN, /* ended, but no exit status was observed */
};

struct taskwatch_reason {
	enum taskwatch_reason_kind kind;
	int exit_code; /* EXITED (and the status behind other kinds when known) */
	int signal;    /* SIGNALED (and the signal behind other kinds when known) */
	bool core_dumped;
	pid_t main_pid;	  /* 0 when unknown */
	pid_t sender_pid; /* SIGNALED: sending process, 0 when unknown (fallback) */
	bool sender_kernel;
	bool via_init; /* the init forwarded it; sender_* is who signalled the init */
	char sender_comm[TASKWATCH_COMM_LEN];
	pid_t oom_victim_pid; /* last OOM victim in the task, 0 when none or unknown */
	uint64_t oom_kills;   /* OOM kills seen in the task */
	uint64_t ended_ns;    /* CLOCK_MONOTONIC of the ending event */
	bool uncertain;	      /* events were lost or the main's death was not seen */
};

#define TASKWATCH_REASON_MAX_SIGNALS 8

/* Classifier state: treat as opaque (embedded so callers need no allocation). */
struct taskwatch_classifier {
	struct taskwatch_reason r;
	uint64_t stop_ns; /* 0 = no stop requested */
	bool ended;
	bool lost;
	bool main_dead, main_status_known, main_oom;
	int main_status;
	pid_t main_pid;
	uint64_t main_dead_ns;
	bool init_dead, init_status_known;
	int init_status;
	/* the first fatal signals aimed at the main process (the first unblocked one wins), and
	 * the first signals sent to the init (to see through forwarding) */
	pid_t init_pid;
	unsigned n_signals, n_init_signals;
	struct taskwatch_reason_signal {
		uint32_t sig;
		pid_t sender;
		bool kernel;
		char comm[TASKWATCH_COMM_LEN];
	} signals[TASKWATCH_REASON_MAX_SIGNALS], init_signals[TASKWATCH_REASON_MAX_SIGNALS];
};

void taskwatch_reason_init(struct taskwatch_classifier *c);
/* The caller started stopping the task at CLOCK_MONOTONIC ns (0 = now). */
void taskwatch_reason_stop_requested(struct taskwatch_classifier *c, uint64_t ts_ns);
/* Feed one event; returns true once the task has ended (later events are ignored). */
bool taskwatch_reason_feed(struct taskwatch_classifier *c, const struct taskwatch_event *ev);
/* 0 and *ret when ended, -EAGAIN otherwise. */
int taskwatch_reason_get(const struct taskwatch_classifier *c, struct taskwatch_reason *ret);
const char *taskwatch_reason_kind_to_string(enum taskwatch_reason_kind k);
/* "exited(3)", "signaled(SIGKILL, from 1234 kill)", "oom_killed", ... into buf; returns buf. */
const char *taskwatch_reason_format(const struct taskwatch_reason *r, char *buf, size_t size);

#endif /* !__bpf__ */
