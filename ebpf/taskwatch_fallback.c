/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskwatch_fallback.c — the per-target fds behind the non-BPF mode (and cgroup.events, used in
 * both): the init's pidfd with waitid(WNOWAIT) so the caller keeps reaping its child, the
 * kernel's PIDFD_INFO_EXIT for a non-child, memory.events (cgroup2) or the v1 OOM eventfd for
 * OOM kills, and cgroup.events for emptiness. Every notifier is an fd in the watcher's epoll.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ebpf/taskwatch_internal.h"
#include "lib/fs.h"
#include "lib/macro.h"
#include "lib/str.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* PIDFD_GET_INFO (Linux 6.13) with the exit status (PIDFD_INFO_EXIT, 6.15); Debian 12's
 * headers predate both. The first published size of the struct is enough for exit_code. */
struct tw_pidfd_info {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define TW_PIDFD_INFO_EXIT (1ull << 3)
#define TW_PIDFD_GET_INFO _IOWR(0xFF, 11, struct tw_pidfd_info)

static int epoll_add(int epfd, int fd, uint32_t events, struct tw_source *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return RET_NERRNO(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev));
}

static int close_source(int epfd, int fd)
{
	if (fd >= 0) {
		(void)epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
		close(fd);
	}
	return -EBADF;
}

void tw_target_close_oom(struct tw_target *t, int epfd)
{
	t->oom_fd = close_source(epfd, t->oom_fd);
	t->oom_ctl_fd = safe_close(t->oom_ctl_fd);
	t->src_oom.ready = false;
}

void tw_target_close_cgevents(struct tw_target *t, int epfd)
{
	t->cgevents_fd = close_source(epfd, t->cgevents_fd);
	t->src_cgevents.ready = false;
}

void tw_target_close(struct tw_target *t, int epfd)
{
	t->init_pidfd = close_source(epfd, t->init_pidfd);
	t->oom_fd = close_source(epfd, t->oom_fd);
	t->oom_ctl_fd = safe_close(t->oom_ctl_fd);
	t->cgevents_fd = close_source(epfd, t->cgevents_fd);
	t->src_init.ready = t->src_oom.ready = t->src_cgevents.ready = false;
}

static int pidfd_pid(int pidfd, pid_t *ret)
{
	char path[64];
	_cleanup_free_ char *text = NULL;
	const char *p;
	unsigned v;
	int r;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	r = fs_read_file_at(AT_FDCWD, path, 1 << 16, &text, NULL);
	if (r < 0)
		return r;
	p = strstr(text, "\nPid:");
	if (!p || sscanf(p + 5, "%u", &v) != 1 || v == 0)
		return -ESRCH; /* "Pid: -1": already reaped */
	*ret = (pid_t)v;
	return 0;
}

int tw_target_open_init(struct tw_target *t, int epfd, pid_t pid, int pidfd)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (pidfd >= 0) {
		fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return -errno;
		if (pid == 0) {
			r = pidfd_pid(fd, &pid);
			if (r < 0)
				return r;
		}
	} else {
		fd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (fd < 0)
			return -errno;
	}
	t->src_init.kind = TW_SRC_INIT;
	t->src_init.t = t;
	t->init_pidfd = close_source(epfd, t->init_pidfd);
	r = epoll_add(epfd, fd, EPOLLIN, &t->src_init);
	if (r < 0)
		return r;
	t->init_pidfd = TAKE_FD(fd);
	t->init_pid = pid;
	t->init_done = false;
	t->init_retry = false;
	t->init_unreaped_ns = 0;
	return 0;
}

/* Read a "key value" line from a small cgroup file at offset 0. */
static int read_keyed(int fd, const char *key, uint64_t *ret)
{
	char buf[4096], *line, *save = NULL;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *v = startswith(line, key);

		if (v && *v == ' ')
			return parse_u64(v + 1, ret);
	}
	return -ENODATA;
}

int tw_target_read_oom(struct tw_target *t, uint64_t *ret_delta)
{
	uint64_t now;
	int r;

	*ret_delta = 0;
	if (t->oom_fd < 0)
		return 0;
	if (t->oom_ctl_fd >= 0) {
		uint64_t cnt;

		/* v1: drain the eventfd, the counter lives in memory.oom_control */
		if (read(t->oom_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			return -errno;
		r = read_keyed(t->oom_ctl_fd, "oom_kill", &now);
	} else {
		r = read_keyed(t->oom_fd, "oom_kill", &now);
	}
	if (r < 0)
		return r;
	if (now > t->oom_kills)
		*ret_delta = now - t->oom_kills;
	t->oom_kills = now;
	return 0;
}

int tw_target_open_oom(struct tw_target *t, int epfd, const char *memory_path)
{
	_cleanup_close_ int dfd = -EBADF, fd = -EBADF, ctl = -EBADF, efd = -EBADF;
	char reg[64];
	int r;

	dfd = open(memory_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	t->src_oom.kind = TW_SRC_OOM;
	t->src_oom.t = t;
	fd = openat(dfd, "memory.events", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		/* cgroup2: kernfs signals a changed file with EPOLLPRI */
		r = read_keyed(fd, "oom_kill", &t->oom_kills);
		if (r < 0)
			return r;
		r = epoll_add(epfd, fd, EPOLLPRI, &t->src_oom);
		if (r < 0)
			return r;
		t->oom_fd = TAKE_FD(fd);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	/* v1: register an eventfd for OOM notifications through cgroup.event_control */
	ctl = openat(dfd, "memory.oom_control", O_RDONLY | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	r = read_keyed(ctl, "oom_kill", &t->oom_kills);
	if (r < 0)
		return r;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return -errno;
	fd = openat(dfd, "cgroup.event_control", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(reg, sizeof(reg), "%d %d", efd, ctl);
	r = fs_write_all(fd, reg, strlen(reg));
	if (r < 0)
		return r;
	r = epoll_add(epfd, efd, EPOLLIN, &t->src_oom);
	if (r < 0)
		return r;
	t->oom_fd = TAKE_FD(efd);
	t->oom_ctl_fd = TAKE_FD(ctl);
	return 0;
}

int tw_target_open_cgevents(struct tw_target *t, int epfd, const char *cgroup_path)
{
	_cleanup_close_ int dfd = -EBADF, fd = -EBADF;
	int r;

	dfd = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fd = openat(dfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	t->src_cgevents.kind = TW_SRC_CGEVENTS;
	t->src_cgevents.t = t;
	r = epoll_add(epfd, fd, EPOLLPRI, &t->src_cgevents);
	if (r < 0)
		return r;
	t->cgevents_fd = TAKE_FD(fd);
	/* A fresh open polls as changed: read once so only later transitions wake us, and an
	 * empty cgroup at add time (the normal case: add, then spawn) is not an "empty" event. */
	r = tw_target_read_empty(t);
	if (r < 0)
		return r;
	t->populated_seen = r == 0;
	return 0;
}

int tw_target_read_empty(struct tw_target *t)
{
	uint64_t populated;
	int r;

	if (t->cgevents_fd < 0)
		return 0;
	r = read_keyed(t->cgevents_fd, "populated", &populated);
	if (r < 0)
		return r;
	return populated == 0;
}

static void fill_status(struct taskwatch_event *ev, int status)
{
	ev->exit.status = (uint32_t)status;
	if (WIFSIGNALED(status)) {
		ev->exit.signal = (uint32_t)WTERMSIG(status);
		ev->exit.core_dumped = WCOREDUMP(status) ? 1 : 0;
	} else {
		ev->exit.code = WEXITSTATUS(status);
	}
}

int tw_target_read_init_exit(struct tw_target *t, int epfd, struct taskwatch_event *ev,
			     bool give_up)
{
	siginfo_t si = { 0 };
	struct tw_pidfd_info info = { .mask = TW_PIDFD_INFO_EXIT };
	int r;

	if (t->init_pidfd < 0 || t->init_done)
		return 0;
	/* WNOWAIT: the caller reaps its own child; we only look. */
	r = waitid((idtype_t)P_PIDFD, (id_t)t->init_pidfd, &si, WEXITED | WNOHANG | WNOWAIT);
	if (r == 0 && si.si_pid == 0)
		return 0; /* spurious wakeup: still running */
	ev->pid = ev->tgid = (uint32_t)t->init_pid;
	if (r == 0) {
		switch (si.si_code) {
		case CLD_EXITED:
			ev->exit.code = si.si_status;
			ev->exit.status = (uint32_t)(si.si_status & 0xff) << 8;
			break;
		case CLD_KILLED:
		case CLD_DUMPED:
			ev->exit.signal = (uint32_t)si.si_status;
			ev->exit.core_dumped = si.si_code == CLD_DUMPED;
			ev->exit.status = (uint32_t)si.si_status |
					  (ev->exit.core_dumped ? 0x80 : 0);
			break;
		default:
			return 0; /* stopped/continued are not exits */
		}
	} else if (errno == ECHILD) {
		/* Not our child, or already reaped by the caller: ask pidfs (Linux >= 6.15). */
		r = ioctl(t->init_pidfd, TW_PIDFD_GET_INFO, &info);
		if (r == 0 && (info.mask & TW_PIDFD_INFO_EXIT))
			fill_status(ev, info.exit_code);
		else if (r == 0 && !give_up)
			return -EAGAIN; /* the ioctl works: the status appears at reap time */
		else
			ev->flags |= TASKWATCH_F_STATUS_UNKNOWN;
	} else {
		return -errno;
	}
	t->init_done = true;
	/* Explicitly out of epoll: the caller may hold another fd of the same pidfd file, and
	 * an epoll registration lives as long as the file, not our fd. */
	t->init_pidfd = close_source(epfd, t->init_pidfd);
	return 1;
}
