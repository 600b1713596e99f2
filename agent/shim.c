/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskd-shim — the per-task supervisor that outlives taskd (like conmon for podman).
 *
 *   taskd-shim TASKDIR        (spawned by taskd only; fd 3 = ready pipe, fd 4 = locked shim.lock)
 *
 * It reads TASKDIR/launch.json, starts the task through agent/runtime.h (sandbox), copies the
 * task's stdout/stderr into TASKDIR/console.log (rotated, lines capped), stops it on SIGTERM
 * (SIGTERM to the task, stop_grace_s, then kill the whole cgroup), reaps it, classifies why it
 * ended and records that in TASKDIR/status.json before it removes the cgroup and exits.
 * Because the shim — not taskd — is the task's parent and the log reader, taskd can crash or be
 * restarted at any moment without the task noticing, and the exit status is never lost.
 * Exit status: 0 when the task ran (whatever its own status), 1 when it could not be started,
 * 2 on usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "agent/logfile.h"
#include "agent/runtime.h"
#include "agent/taskdir.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/macro.h"

#define SHIM_READY_FD 3
#define SHIM_LOCK_FD 4
#define LAUNCH_MAX_BYTES (4 * 1024 * 1024)
/* After the task's pid 1 is gone, leftovers are killed; their pipe ends close within this. */
#define DRAIN_TIMEOUT_MS 2000

static void ready_reply(int fd, const char *msg)
{
	if (fd < 0)
		return;
	(void)fs_write_all(fd, msg, strlen(msg));
	close(fd);
}

static char *oom_adj_saved;

static int write_oom_adj(const char *value)
{
	_cleanup_close_ int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return fs_write_all(fd, value, strlen(value));
}

static int fd_valid(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static void classify(struct shim_status *st, bool stop_requested)
{
	if (stop_requested) {
		snprintf(st->reason, sizeof(st->reason), "stopped");
		return;
	}
	/* An OOM kill in the task followed by a non-clean end of its main process is the root
	 * cause, whatever signal or status the init reports (the ebpf classifier's rule). */
	if (st->oom_kills > 0 && (st->signal != 0 || st->exit_code != 0)) {
		snprintf(st->reason, sizeof(st->reason), "oom_killed");
		return;
	}
	snprintf(st->reason, sizeof(st->reason), "%s", st->signal ? "signaled" : "exited");
}

static int epoll_add(int ep, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return RET_NERRNO(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
}

enum { TAG_OUT = 0, TAG_ERR = 1, TAG_SIGNAL, TAG_PID, TAG_TIMER };

int main(int argc, char **argv)
{
	_cleanup_close_ int dirfd = -EBADF, sfd = -EBADF, ep = -EBADF, tfd = -EBADF,
			    status_fd = -EBADF;
	_cleanup_free_ char *text = NULL;
	struct launch_spec spec = { 0 };
	struct shim_status st;
	struct cd_error err = { 0 };
	struct runtime_task *rt = NULL;
	struct logfile *lf = NULL;
	int pipes[2][2] = { { -1, -1 }, { -1, -1 } };
	int ready_fd = -1, r;
	bool stop_requested = false, exited = false, open_streams[2] = { true, true };
	usec_t drain_deadline = 0;
	sigset_t mask;
	uint64_t start;

	log_open("taskd-shim");
	if (argc != 2 || argv[1][0] != '/') {
		fprintf(stderr, "usage: taskd-shim TASKDIR (started by taskd)\n");
		return 2;
	}
	/* The lock fd keeps "a shim runs" true for our whole life; the task must not inherit it. */
	if (!fd_valid(SHIM_LOCK_FD)) {
		log_error("no lock fd: taskd-shim is started by taskd only");
		return 2;
	}
	(void)fcntl(SHIM_LOCK_FD, F_SETFD, FD_CLOEXEC);
	if (fd_valid(SHIM_READY_FD)) {
		ready_fd = SHIM_READY_FD;
		(void)fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
	}

	dirfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		log_error_errno(-errno, "cannot open task directory");
		ready_reply(ready_fd, "E cannot open task directory\n");
		return 1;
	}
	r = fs_read_file_at(dirfd, TASKDIR_LAUNCH, LAUNCH_MAX_BYTES, &text, NULL);
	if (r >= 0)
		r = launch_spec_from_string(text, &spec, &err);
	if (r < 0) {
		log_error_errno(r, "cannot read launch spec");
		ready_reply(ready_fd, "E cannot read launch spec\n");
		return 1;
	}

	shim_status_init(&st);
	st.generation = spec.generation;
	st.phase = SHIM_STARTING;
	st.shim_pid = getpid();
	if (proc_start_time(st.shim_pid, &start) < 0)
		start = 0;
	st.shim_start = start;
	r = shim_status_write(dirfd, &st);
	if (r < 0) {
		log_error_errno(r, "cannot write status");
		ready_reply(ready_fd, "E cannot write status\n");
		return 1;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (sfd < 0 || ep < 0 || tfd < 0 || pipe2(pipes[0], O_CLOEXEC) < 0 ||
	    pipe2(pipes[1], O_CLOEXEC) < 0) {
		r = -errno;
		goto fail_start;
	}
	r = logfile_open(dirfd, TASKDIR_LOG, spec.log_max_bytes, spec.log_keep, spec.log_line_max,
			 &lf);
	if (r < 0)
		goto fail_start;

	/* taskd (and so the shim) may run protected from the OOM killer (the unit's
	 * OOMScoreAdjust): the task must not inherit that. Launch it with 0, then restore ours. */
	{
		_cleanup_free_ char *old_adj = NULL;

		if (fs_read_file_at(AT_FDCWD, "/proc/self/oom_score_adj", 64, &old_adj, NULL) >= 0)
			oom_adj_saved = strdup(old_adj);
		(void)write_oom_adj("0");
	}
	/* The init also writes its final status here: it outlives even a shim killed -9. */
	status_fd = openat(dirfd, TASKDIR_INIT_STATUS,
			   O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	r = runtime_start(&spec, pipes[0][1], pipes[1][1], status_fd, &rt, &err);
	if (r < 0)
		goto fail_start;
	pipes[0][1] = safe_close(pipes[0][1]);
	pipes[1][1] = safe_close(pipes[1][1]);
	if (oom_adj_saved)
		(void)write_oom_adj(oom_adj_saved);

	st.phase = SHIM_RUNNING;
	st.pid = runtime_pid(rt);
	if (proc_start_time(st.pid, &start) >= 0)
		st.pid_start = start;
	st.started_at = clock_real_usec();
	r = shim_status_write(dirfd, &st);
	if (r < 0)
		log_warn_errno(r, "cannot write running status");
	ready_reply(ready_fd, "OK\n");
	ready_fd = -1;

	for (int i = 0; i < 2; i++) {
		(void)fcntl(pipes[i][0], F_SETFL, O_NONBLOCK);
		epoll_add(ep, pipes[i][0], (uint64_t)i);
	}
	epoll_add(ep, sfd, TAG_SIGNAL);
	epoll_add(ep, runtime_pidfd(rt), TAG_PID);
	epoll_add(ep, tfd, TAG_TIMER);

	while (!exited || open_streams[0] || open_streams[1]) {
		struct epoll_event evs[8];
		int timeout = -1, n;

		if (exited) {
			usec_t now = clock_mono_usec();

			if (now >= drain_deadline)
				break;
			timeout = (int)((drain_deadline - now) / USEC_PER_MSEC) + 1;
		}
		n = epoll_wait(ep, evs, ARRAY_SIZE(evs), timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error_errno(-errno, "epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_OUT || tag == TAG_ERR) {
				char buf[65536];
				ssize_t k = read(pipes[tag][0], buf, sizeof(buf));

				if (k > 0)
					(void)logfile_feed(lf, (unsigned)tag, buf, (size_t)k);
				else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
					(void)logfile_flush(lf, (unsigned)tag);
					epoll_ctl(ep, EPOLL_CTL_DEL, pipes[tag][0], NULL);
					open_streams[tag] = false;
				}
			} else if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;

				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGCHLD || si.ssi_signo == SIGPIPE ||
					    si.ssi_signo == SIGHUP)
						continue;
					/* SIGTERM/SIGINT: stop the task (taskd's SetTaskState DONE). */
					if (!stop_requested && !exited) {
						struct itimerspec its = {
							.it_value.tv_sec = spec.stop_grace_s,
							.it_value.tv_nsec = spec.stop_grace_s ? 0 :
												1,
						};

						stop_requested = true;
						(void)runtime_signal(rt, SIGTERM);
						timerfd_settime(tfd, 0, &its, NULL);
					}
				}
			} else if (tag == TAG_TIMER) {
				uint64_t ticks;

				(void)!read(tfd, &ticks, sizeof(ticks));
				if (!exited)
					(void)runtime_kill(rt);
			} else if (tag == TAG_PID && !exited) {
				int code = -1, sig = 0;

				if (runtime_wait(rt, &code, &sig) < 0)
					continue;
				exited = true;
				st.exit_code = sig ? -1 : code;
				st.signal = sig;
				st.finished_at = clock_real_usec();
				epoll_ctl(ep, EPOLL_CTL_DEL, runtime_pidfd(rt), NULL);
				/* The task ends with its pid 1; a daemon it left behind goes too. */
				{
					struct runtime_usage u;

					if (runtime_usage(rt, &u) >= 0 && u.oom_kills != UINT64_MAX)
						st.oom_kills = u.oom_kills;
				}
				(void)runtime_kill(rt);
				drain_deadline =
					clock_mono_usec() + DRAIN_TIMEOUT_MS * USEC_PER_MSEC;
			}
		}
	}
	if (!exited) {
		/* epoll failed: make sure nothing survives us unaccounted. */
		(void)runtime_kill(rt);
		st.finished_at = clock_real_usec();
		snprintf(st.message, sizeof(st.message), "shim lost track of the task");
	}
	classify(&st, stop_requested);
	st.log_dropped = logfile_dropped(lf);
	logfile_close(lf);
	for (int i = 0; i < 2; i++)
		safe_close(pipes[i][0]);
	r = runtime_destroy(rt, &err);
	if (r < 0)
		log_warn_errno(r, "cannot remove task cgroup", "detail=\"%s\"",
			       cd_error_message(&err));
	st.phase = SHIM_EXITED;
	r = shim_status_write(dirfd, &st);
	if (r < 0)
		log_error_errno(r, "cannot write final status");
	launch_spec_release(&spec);
	free(oom_adj_saved);
	return 0;

fail_start:
	st.phase = SHIM_FAILED;
	st.finished_at = clock_real_usec();
	snprintf(st.reason, sizeof(st.reason), "start_failed");
	snprintf(st.message, sizeof(st.message), "%s",
		 err.code ? cd_error_message(&err) : strerror(-r));
	(void)shim_status_write(dirfd, &st);
	{
		char line[300];

		snprintf(line, sizeof(line), "E %s\n", st.message);
		ready_reply(ready_fd, line);
	}
	logfile_close(lf);
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < 2; k++)
			safe_close(pipes[i][k]);
	launch_spec_release(&spec);
	if (oom_adj_saved)
		(void)write_oom_adj(oom_adj_saved);
	free(oom_adj_saved);
	return 1;
}
