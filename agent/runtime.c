/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/macro.h"
#include "lib/str.h"
#include "sandbox/cgroup.h"

#define KILL_TIMEOUT_USEC (10 * USEC_PER_SEC)

struct runtime_task {
	struct cg_system *sys;
	struct task_cgroup *cg;
	pid_t pid;
	int pidfd;
	bool reaped;
};

pid_t runtime_pid(const struct runtime_task *rt)
{
	return rt->pid;
}

int runtime_pidfd(const struct runtime_task *rt)
{
	return rt->pidfd;
}

static char **build_env(const struct launch_spec *spec)
{
	char **envp = calloc(spec->n_env + 2, sizeof(char *));
	size_t n = 0;

	if (!envp)
		return NULL;
	if (asprintf(&envp[n++],
		     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") < 0) {
		free(envp);
		return NULL;
	}
	for (size_t i = 0; i < spec->n_env; i++) {
		if (asprintf(&envp[n], "%s=%s", spec->env[i].key, spec->env[i].value) < 0) {
			strv_free(envp);
			return NULL;
		}
		if (streq(spec->env[i].key, "PATH")) {
			/* the task's own PATH replaces the default */
			free(envp[0]);
			envp[0] = envp[n];
		} else
			n++;
	}
	envp[n] = NULL;
	return envp;
}

/*
 * NEEDSWORK: this is the interim launcher taskd uses until sandbox/launch.h lands: clone3 into
 * the task's cgroup (unified hierarchy) + v1 attach before exec, own session, fds, env. It gives
 * cgroups, limits and the kill-the-whole-cgroup stop, but NOT the namespaces, read-only /app,
 * masked paths, seccomp and capability drop the sandbox provides. runtime_start() switches to
 * the sandbox launcher in one place once it exists.
 */
static int launch_interim(const struct launch_spec *spec, struct runtime_task *rt, int out_fd,
			  int err_fd, struct cd_error *err)
{
	_cleanup_strv_free_ char **envp = build_env(spec);
	int sync_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
	struct clone_args args = { 0 };
	int cgfd = task_cgroup_fd(rt->cg, CG_UNIFIED);
	int pidfd = -1, child_errno = 0, r;
	pid_t pid;
	ssize_t n;

	if (!envp)
		return cd_error_set(err, -ENOMEM, "out of memory");
	if (pipe2(sync_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
		r = -errno;
		safe_close(sync_pipe[0]);
		safe_close(sync_pipe[1]);
		return cd_error_set(err, r, "pipe: %s", strerror(-r));
	}
	args.flags = CLONE_PIDFD | (cgfd >= 0 ? CLONE_INTO_CGROUP : 0);
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	args.exit_signal = SIGCHLD;
	args.cgroup = cgfd >= 0 ? (uint64_t)cgfd : 0;
	pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		r = -errno;
		for (int i = 0; i < 2; i++) {
			safe_close(sync_pipe[i]);
			safe_close(err_pipe[i]);
		}
		return cd_error_set(err, r, "clone3: %s", strerror(-r));
	}
	if (pid == 0) {
		char go;
		int devnull;

		/* child: only async-signal-safe calls until exec */
		safe_close(sync_pipe[1]);
		safe_close(err_pipe[0]);
		if (read(sync_pipe[0], &go, 1) != 1)
			_exit(127);
		setsid();
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_fd, 1) < 0 ||
		    dup2(err_fd, 2) < 0)
			goto child_fail;
		if (spec->app_dir && chdir(spec->app_dir) < 0)
			goto child_fail;
		{
			sigset_t none;

			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			signal(SIGPIPE, SIG_DFL);
		}
		execvpe(spec->argv[0], spec->argv, envp);
child_fail:
		child_errno = errno;
		(void)!write(err_pipe[1], &child_errno, sizeof(child_errno));
		_exit(127);
	}
	safe_close(sync_pipe[0]);
	safe_close(err_pipe[1]);
	rt->pid = pid;
	rt->pidfd = pidfd;
	/* v1 hierarchies (memory, cpu, pids in hybrid) before the command runs */
	r = task_cgroup_attach(rt->cg, pid, cgfd >= 0);
	if (r < 0) {
		kill(pid, SIGKILL);
		safe_close(sync_pipe[1]);
		safe_close(err_pipe[0]);
		waitpid(pid, NULL, 0);
		rt->pid = 0;
		rt->pidfd = safe_close(rt->pidfd);
		return cd_error_set(err, r, "attach to cgroup: %s", strerror(-r));
	}
	(void)!write(sync_pipe[1], "g", 1);
	safe_close(sync_pipe[1]);
	n = read(err_pipe[0], &child_errno, sizeof(child_errno));
	safe_close(err_pipe[0]);
	if (n == sizeof(child_errno)) {
		waitpid(pid, NULL, 0);
		rt->pid = 0;
		rt->pidfd = safe_close(rt->pidfd);
		return cd_error_set(err, -child_errno, "exec %s: %s", spec->argv[0],
				    strerror(child_errno));
	}
	return 0;
}

int runtime_start(const struct launch_spec *spec, int stdout_fd, int stderr_fd,
		  struct runtime_task **ret, struct cd_error *err)
{
	struct runtime_task *rt;
	struct cg_limits limits = {
		.memory_bytes = spec->memory_mb * 1024 * 1024,
		.cpu_millis = spec->millicpus,
		.pids_max = spec->pids_max,
	};
	int r;

	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return cd_error_set(err, -ENOMEM, "out of memory");
	rt->pidfd = -EBADF;
	r = cg_system_detect(NULL, &rt->sys, err);
	if (r < 0)
		goto fail;
	r = task_cgroup_create(rt->sys, spec->cgroup_parent, spec->cgroup_name, &limits, &rt->cg,
			       err);
	if (r < 0)
		goto fail;
	r = launch_interim(spec, rt, stdout_fd, stderr_fd, err);
	if (r < 0) {
		(void)task_cgroup_kill(rt->cg, KILL_TIMEOUT_USEC);
		(void)task_cgroup_destroy(rt->cg, NULL);
		goto fail;
	}
	*ret = rt;
	return 0;
fail:
	task_cgroup_free(rt->cg);
	cg_system_free(rt->sys);
	free(rt);
	return r;
}

int runtime_signal(struct runtime_task *rt, int sig)
{
	if (rt->reaped)
		return -ESRCH;
	return RET_NERRNO(syscall(SYS_pidfd_send_signal, rt->pidfd, sig, NULL, 0));
}

int runtime_wait(struct runtime_task *rt, int *ret_code, int *ret_signal)
{
	siginfo_t si = { 0 };

	if (rt->reaped)
		return -ECHILD;
	if (waitid(P_PIDFD, (id_t)rt->pidfd, &si, WEXITED | WNOHANG) < 0)
		return -errno;
	if (si.si_pid == 0)
		return -EAGAIN;
	rt->reaped = true;
	if (si.si_code == CLD_EXITED) {
		*ret_code = si.si_status;
		*ret_signal = 0;
	} else {
		*ret_code = -1;
		*ret_signal = si.si_status;
	}
	return 0;
}

int runtime_kill(struct runtime_task *rt)
{
	return task_cgroup_kill(rt->cg, KILL_TIMEOUT_USEC);
}

static void usage_from_stats(const struct cg_stats *s, struct runtime_usage *u)
{
	u->memory_bytes = s->memory_current;
	u->memory_peak_bytes = s->memory_peak;
	u->cpu_usage_ns = s->cpu_usage_ns;
	u->pids = s->pids_current;
	u->oom_kills = s->oom_kills;
}

int runtime_usage(const struct runtime_task *rt, struct runtime_usage *ret)
{
	struct cg_stats s;
	int r = task_cgroup_stats(rt->cg, &s);

	if (r < 0)
		return r;
	usage_from_stats(&s, ret);
	return 0;
}

int runtime_destroy(struct runtime_task *rt, struct cd_error *err)
{
	int r;

	if (!rt)
		return 0;
	if (!rt->reaped && rt->pid > 0) {
		/* not reaped: make sure it is dead, then collect it */
		(void)task_cgroup_kill(rt->cg, KILL_TIMEOUT_USEC);
		waitpid(rt->pid, NULL, 0);
	}
	r = task_cgroup_kill(rt->cg, KILL_TIMEOUT_USEC);
	if (r >= 0)
		r = task_cgroup_destroy(rt->cg, err);
	safe_close(rt->pidfd);
	task_cgroup_free(rt->cg);
	cg_system_free(rt->sys);
	free(rt);
	return r;
}

int runtime_cleanup(const char *cgroup_parent, const char *cgroup_name, struct cd_error *err)
{
	struct cg_system *sys = NULL;
	struct task_cgroup *cg = NULL;
	int r;

	r = cg_system_detect(NULL, &sys, err);
	if (r < 0)
		return r;
	r = task_cgroup_open(sys, cgroup_parent, cgroup_name, &cg, NULL);
	if (r == -ENOENT) {
		cg_system_free(sys);
		return 0;
	}
	if (r >= 0) {
		r = task_cgroup_kill(cg, KILL_TIMEOUT_USEC);
		if (r >= 0)
			r = task_cgroup_destroy(cg, err);
	}
	task_cgroup_free(cg);
	cg_system_free(sys);
	return r;
}

int runtime_usage_by_name(const char *cgroup_parent, const char *cgroup_name,
			  struct runtime_usage *ret)
{
	struct cg_system *sys = NULL;
	struct task_cgroup *cg = NULL;
	struct cg_stats s;
	int r;

	r = cg_system_detect(NULL, &sys, NULL);
	if (r < 0)
		return r;
	r = task_cgroup_open(sys, cgroup_parent, cgroup_name, &cg, NULL);
	if (r >= 0)
		r = task_cgroup_stats(cg, &s);
	if (r >= 0)
		usage_from_stats(&s, ret);
	task_cgroup_free(cg);
	cg_system_free(sys);
	return r;
}
