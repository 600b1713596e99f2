/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskwatch_internal.h — state shared by taskwatch.c (watcher, BPF mode) and
 * taskwatch_fallback.c (the per-target fds both modes use: cgroup.events, and in the fallback
 * the init's pidfd and the OOM notifier). Not installed, not for callers.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ebpf/taskwatch.h"

enum tw_source_kind {
	TW_SRC_RINGBUF = 1,
	TW_SRC_INIT,	 /* fallback: pidfd of the init */
	TW_SRC_OOM,	 /* fallback: memory.events (v2) or the oom eventfd (v1) */
	TW_SRC_CGEVENTS, /* cgroup.events of the unified cgroup */
	TW_SRC_RETRY	 /* fallback: timer to look again at unreaped non-child inits */
};

struct tw_target;

/* What an epoll_event's data.ptr points at. */
struct tw_source {
	enum tw_source_kind kind;
	struct tw_target *t;
	bool ready;
};

struct tw_target {
	uint64_t cgroup_id;
	uint64_t cookie;
	bool removed; /* by a callback during consume; freed when consume returns */
	bool in_map;  /* BPF mode: in the watched map */
	pid_t init_pid;
	enum taskwatch_main main_kind;
	pid_t main_pid; /* resolved main (0 = not known yet) */

	int init_pidfd; /* fallback */
	bool init_done;
	bool init_retry;	   /* look again when the retry timer fires */
	uint64_t init_unreaped_ns; /* when an exited non-child init was first seen unreaped */
	struct tw_source src_init;

	int oom_fd;	/* v2: memory.events; v1: eventfd */
	int oom_ctl_fd; /* v1: memory.oom_control, read for the oom_kill counter */
	uint64_t oom_kills;
	struct tw_source src_oom;

	int cgevents_fd;
	bool populated_seen; /* since the last cgroup_empty: arms the next one */
	bool empty_pending;  /* empty, reported once the init's exit is */
	int cg_state;	     /* cgroup.events read this round: 1 empty, 0 populated, -1 none */
	struct tw_source src_cgevents;
};

/* Fallback helpers (taskwatch_fallback.c). All return 0 or -errno. */
int tw_target_open_init(struct tw_target *t, int epfd, pid_t pid, int pidfd);
int tw_target_open_oom(struct tw_target *t, int epfd, const char *memory_path);
int tw_target_open_cgevents(struct tw_target *t, int epfd, const char *cgroup_path);
void tw_target_close(struct tw_target *t, int epfd);
void tw_target_close_oom(struct tw_target *t, int epfd);
void tw_target_close_cgevents(struct tw_target *t, int epfd);
/* Re-read the OOM counter; *ret_delta = kills since the previous read. */
int tw_target_read_oom(struct tw_target *t, uint64_t *ret_delta);
/* 1 when cgroup.events says "populated 0", 0 when populated, -errno. */
int tw_target_read_empty(struct tw_target *t);
/* Fill an exit event for the init if it has exited: 1 = filled, 0 = still running, -EAGAIN =
 * exited but not reaped by its (other) parent yet, so the status is not published; with
 * give_up, report it as TASKWATCH_F_STATUS_UNKNOWN instead. */
int tw_target_read_init_exit(struct tw_target *t, int epfd, struct taskwatch_event *ev,
			     bool give_up);
