/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/macro.h"
#include "lib/str.h"
#include "sandbox/cgroup.h"
#include "sandbox/launch.h"

#define KILL_TIMEOUT_USEC (10 * USEC_PER_SEC)

struct runtime_task {
	struct cg_system *sys;
	struct sandbox_task *sb;
};

pid_t runtime_pid(const struct runtime_task *rt)
{
	return rt->sb->ident.pid;
}

int runtime_pidfd(const struct runtime_task *rt)
{
	return rt->sb->pidfd;
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

/* The sandbox config of a launch spec: shared by the launch and by runtime_exec(), so a process
 * run inside the task later gets exactly the command's confinement. Pointers are borrowed. */
static int config_from_spec(const struct launch_spec *spec, char *const *envp,
			    struct sandbox_config *cfg, struct cd_error *err)
{
	enum sandbox_net_mode net;

	if (netns_mode_from_string(spec->net, &net) < 0)
		return cd_error_set(err, -EINVAL, "unknown networking mode '%s'", spec->net);
	sandbox_config_init(cfg);
	cfg->task_id = spec->cgroup_name; /* unique per launch: cgroup leaf and hostname */
	cfg->cgroup_parent = spec->cgroup_parent;
	cfg->argv = spec->argv;
	cfg->envp = envp;
	cfg->app_dir = spec->app_dir;
	cfg->storage_bytes = spec->storage_mb * 1024 * 1024;
	cfg->limits.memory_bytes = spec->memory_mb * 1024 * 1024;
	cfg->limits.cpu_millis = spec->millicpus;
	cfg->limits.pids_max = spec->pids_max;
	cfg->net = net;
	cfg->bridge.bridge = spec->bridge;
	cfg->bridge.subnet = spec->subnet;
	cfg->mask_paths = (const char *const *)spec->mask;
	cfg->init_binary = spec->init_binary;
	return 0;
}

int runtime_start(const struct launch_spec *spec, int stdout_fd, int stderr_fd, int status_fd,
		  struct runtime_task **ret, struct cd_error *err)
{
	_cleanup_strv_free_ char **envp = build_env(spec);
	struct sandbox_config cfg;
	struct runtime_task *rt;
	int r;

	if (!envp)
		return cd_error_set(err, -ENOMEM, "out of memory");
	r = config_from_spec(spec, envp, &cfg, err);
	if (r < 0)
		return r;
	cfg.stdout_fd = stdout_fd;
	cfg.stderr_fd = stderr_fd;
	cfg.status_fd = status_fd;

	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return cd_error_set(err, -ENOMEM, "out of memory");
	r = cg_system_detect(NULL, &rt->sys, err);
	if (r >= 0)
		r = sandbox_launch(rt->sys, &cfg, &rt->sb, err);
	if (r < 0) {
		cg_system_free(rt->sys);
		free(rt);
		return r;
	}
	*ret = rt;
	return 0;
}

int runtime_exec(const struct cg_system *sys, const struct launch_spec *spec, pid_t init_pid,
		 uint64_t init_start, char *const *argv, pid_t *ret_pid, int *ret_pidfd,
		 struct cd_error *err)
{
	_cleanup_strv_free_ char **envp = build_env(spec);
	struct sandbox_ident ident = { .pid = init_pid, .start_time = init_start };
	struct sandbox_task *sb = NULL;
	struct sandbox_config cfg;
	int r;

	if (!envp)
		return cd_error_set(err, -ENOMEM, "out of memory");
	if (init_pid <= 0)
		return cd_error_set(err, -ESRCH, "the task has no running process");
	r = config_from_spec(spec, envp, &cfg, err);
	if (r < 0)
		return r;
	/* Identity: pid + start time (recorded by the shim at launch; 0 for records older than the
	 * field, then read now), then sandbox_adopt() pins the pid with a pidfd and checks the
	 * cgroup membership (a pid recycled in between is in no task cgroup of ours). */
	if (!init_start && proc_start_time(init_pid, &ident.start_time) < 0)
		return cd_error_set(err, -ESRCH, "the task's pid %d is gone", (int)init_pid);
	if (snprintf(ident.task_id, sizeof(ident.task_id), "%s", spec->cgroup_name) >=
		    (int)sizeof(ident.task_id) ||
	    snprintf(ident.cgroup_parent, sizeof(ident.cgroup_parent), "%s", spec->cgroup_parent) >=
		    (int)sizeof(ident.cgroup_parent))
		return cd_error_set(err, -ENAMETOOLONG, "cgroup name too long");
	ident.net = cfg.net;
	/* pid + start time + cgroup membership: a recycled pid is never entered */
	r = sandbox_adopt(sys, &ident, &sb, err);
	if (r >= 0)
		r = sandbox_exec(sb, &cfg, argv, ret_pid, ret_pidfd, err);
	sandbox_task_free(sb); /* closes our pidfd and cgroup handle; the task is untouched */
	return r;
}

int runtime_signal(struct runtime_task *rt, int sig)
{
	return sandbox_signal(rt->sb, sig);
}

int runtime_wait(struct runtime_task *rt, int *ret_code, int *ret_signal)
{
	struct sandbox_status st;
	int r = sandbox_wait(rt->sb, 0, -1, &st);

	if (r < 0)
		return r;
	if (r == 0)
		return -EAGAIN;
	*ret_code = st.signaled ? -1 : st.code;
	*ret_signal = st.signaled ? st.code : 0;
	return 0;
}

int runtime_kill(struct runtime_task *rt)
{
	return task_cgroup_kill(rt->sb->cg, KILL_TIMEOUT_USEC);
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
	int r = task_cgroup_stats(rt->sb->cg, &s);

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
	r = sandbox_destroy(rt->sb, err);
	sandbox_task_free(rt->sb);
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

int runtime_usage_by_name(const struct cg_system *sys, const char *cgroup_parent,
			  const char *cgroup_name, struct runtime_usage *ret)
{
	struct task_cgroup *cg = NULL;
	struct cg_stats s;
	int r;

	r = task_cgroup_open(sys, cgroup_parent, cgroup_name, &cg, NULL);
	if (r >= 0)
		r = task_cgroup_stats(cg, &s);
	if (r >= 0)
		usage_from_stats(&s, ret);
	task_cgroup_free(cg);
	return r;
}

bool runtime_usage_cache_get(const struct runtime_usage_cache *c, unsigned generation, usec_t now,
			     struct runtime_usage *ret)
{
	/* now < read_at: a concurrent reader stored a reading begun after our clock read; it is
	 * fresh, but re-reading is the simple answer to a case this rare */
	if (!c->valid || c->generation != generation || now < c->read_at ||
	    now - c->read_at >= RUNTIME_USAGE_MAX_AGE_USEC)
		return false;
	*ret = c->usage;
	return true;
}

void runtime_usage_cache_put(struct runtime_usage_cache *c, unsigned generation, usec_t read_at,
			     const struct runtime_usage *u)
{
	if (c->valid && c->generation == generation && c->read_at > read_at)
		return;
	c->usage = *u;
	c->read_at = read_at;
	c->generation = generation;
	c->valid = true;
}
