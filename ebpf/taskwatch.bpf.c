/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * taskwatch.bpf.c — kernel side of taskwatch: BTF tracepoints on exec, fork, exit, signal
 * generation and OOM victim selection. Only processes whose cgroup2 id is a key of `watched`
 * produce events, one ring buffer carries them all; a full ring buffer is counted per event
 * type in lost_events[], never silent. tp_btf (not tracepoint/) because it needs no tracefs
 * mount and hands us typed task pointers; everything is read with CO-RE.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "taskwatch.h"

/* Only for static analysers that do not read libbpf's headers (cppcheck): the real
 * definitions come from bpf_helpers.h and bpf_tracing.h above. */
#ifndef SEC
#define SEC(name)
#endif
#ifndef BPF_PROG
#define BPF_PROG(name, args...) name(args)
#endif

#define SIGNAL_GROUP_EXIT 0x00000004
#define TRACE_SIGNAL_DELIVERED 0
#define SI_KERNEL 0x80
#define SIGKILL 9

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* resized by user space before load */
	__type(key, __u64);
	__type(value, struct taskwatch_watched);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); /* resized by user space before load */
} events SEC(".maps");

__u64 lost_events[TASKWATCH_EV__MAX] = {};

static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	/* The default hierarchy's cgroup, i.e. cgroup2 (the unified mount in hybrid mode): what
	 * bpf_get_current_cgroup_id() returns, but for any task. */
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

static __always_inline void count_lost(__u32 type)
{
	if (type < TASKWATCH_EV__MAX)
		__sync_fetch_and_add(&lost_events[type], 1);
}

/* Reserve an event for task t of a watched cgroup (w, cgid); fills the common header. */
static __always_inline struct taskwatch_event *
event_reserve(__u32 type, struct task_struct *t, struct taskwatch_watched *w, __u64 cgid)
{
	struct taskwatch_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_lost(type);
		return NULL;
	}
	e->type = type;
	e->flags = 0;
	e->pid = BPF_CORE_READ(t, pid);
	e->tgid = BPF_CORE_READ(t, tgid);
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	e->pad0 = 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgid;
	e->cookie = w->cookie;
	BPF_CORE_READ_STR_INTO(&e->comm, t, comm);
	return e;
}

/* The same when t's cgroup is watched, else NULL. */
static __always_inline struct taskwatch_event *event_start(__u32 type, struct task_struct *t)
{
	__u64 cgid = task_cgroup_id(t);
	struct taskwatch_watched *w = bpf_map_lookup_elem(&watched, &cgid);

	return w ? event_reserve(type, t, w, cgid) : NULL;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(taskwatch_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct taskwatch_event *e = event_start(TASKWATCH_EV_EXEC, p);
	const char *filename;
	long n;

	if (!e)
		return 0;
	filename = BPF_CORE_READ(bprm, filename);
	n = bpf_probe_read_kernel_str(e->exec.filename, sizeof(e->exec.filename), filename);
	if (n < 0)
		e->exec.filename[0] = '\0';
	else if (n == sizeof(e->exec.filename))
		e->flags |= TASKWATCH_F_FILENAME_TRUNC;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(taskwatch_fork, struct task_struct *parent, struct task_struct *child)
{
	struct taskwatch_event *e;

	/* New threads are not processes: a task's health is about processes. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	/* The child's own cgroup: with clone3(CLONE_INTO_CGROUP) it differs from the parent's. */
	e = event_start(TASKWATCH_EV_FORK, child);
	if (!e)
		return 0;
	e->fork.parent_pid = BPF_CORE_READ(parent, pid);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(taskwatch_exit, struct task_struct *p)
{
	struct signal_struct *sig = BPF_CORE_READ(p, signal);
	struct taskwatch_event *e;
	unsigned int status;

	/*
	 * One event per process, from its last thread: do_exit() has decremented signal->live
	 * before this tracepoint. Read instead of the tracepoint's group_dead argument, which only
	 * newer kernels pass.
	 */
	if (BPF_CORE_READ(sig, live.counter) != 0)
		return 0;
	e = event_start(TASKWATCH_EV_EXIT, p);
	if (!e)
		return 0;
	/* What wait(2) will report (wait_task_zombie): the group exit code once the group exits,
	 * which the last thread sets itself since 5.19 (synchronize_group_exit). */
	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		status = BPF_CORE_READ(sig, group_exit_code);
	else
		status = BPF_CORE_READ(p, group_leader, exit_code);
	e->exit.status = status;
	e->exit.signal = status & 0x7f;
	e->exit.core_dumped = (status & 0x80) ? 1 : 0;
	e->exit.code = e->exit.signal ? 0 : (status >> 8) & 0xff;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline bool sig_default_fatal(int sig)
{
	/* Default action terminate or core: everything but ignore (CHLD, URG, WINCH), continue
	 * and stop signals. */
	switch (sig) {
	case 17: /* SIGCHLD */
	case 18: /* SIGCONT */
	case 19: /* SIGSTOP */
	case 20: /* SIGTSTP */
	case 21: /* SIGTTIN */
	case 22: /* SIGTTOU */
	case 23: /* SIGURG */
	case 28: /* SIGWINCH */
		return false;
	default:
		return sig >= 1 && sig <= 64;
	}
}

SEC("tp_btf/signal_generate")
int BPF_PROG(taskwatch_signal, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task_btf();
	struct taskwatch_watched *w;
	struct sighand_struct *sighand;
	struct taskwatch_event *e;
	unsigned long handler = 0;
	unsigned long infop = (unsigned long)info;
	bool handled = false;
	__u64 cgid;
	int si_code;

	if (result != TRACE_SIGNAL_DELIVERED || !sig_default_fatal(sig))
		return 0;
	cgid = task_cgroup_id(task);
	w = bpf_map_lookup_elem(&watched, &cgid);
	if (!w)
		return 0;
	if (sig != SIGKILL) {
		/* Only signals that will kill: a handler or SIG_IGN makes them harmless. */
		sighand = BPF_CORE_READ(task, sighand);
		bpf_probe_read_kernel(&handler, sizeof(handler),
				      &sighand->action[(sig - 1) & 63].sa.sa_handler);
		handled = handler != 0; /* SIG_DFL */
	}
	/* ...except for the init, which forwards what it catches: its senders are the real
	 * senders of what the main process dies of. */
	if (handled && (w->init_tgid == 0 || BPF_CORE_READ(task, tgid) != w->init_tgid))
		return 0;
	e = event_reserve(TASKWATCH_EV_FATAL_SIGNAL, task, w, cgid);
	if (!e)
		return 0;
	if (handled)
		e->flags |= TASKWATCH_F_HANDLED;
	/* SEND_SIG_NOINFO (0) means a user kill, SEND_SIG_PRIV (1) the kernel. */
	if (infop == 0)
		si_code = 0; /* SI_USER */
	else if (infop == 1)
		si_code = SI_KERNEL;
	else
		si_code = BPF_CORE_READ(info, si_code);
	e->signal.sig = sig;
	e->signal.si_code = si_code;
	if (si_code > 0)
		e->flags |= TASKWATCH_F_SENDER_KERNEL;
	e->signal.sender_pid = cur->pid;
	e->signal.sender_tgid = cur->tgid;
	bpf_get_current_comm(e->signal.sender_comm, sizeof(e->signal.sender_comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(taskwatch_oom, struct task_struct *victim)
{
	/* The memory limit may live in a v1 memory cgroup (hybrid mode): matching the victim by
	 * its cgroup2 id works whichever hierarchy enforced the limit. */
	struct taskwatch_event *e = event_start(TASKWATCH_EV_OOM_KILL, victim);

	if (!e)
		return 0;
	e->oom.count = 1;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The kernel only needs to know the GPL applies (GPL-only helpers). */
char LICENSE[] SEC("license") = "GPL";
