/* SPDX-License-Identifier: Apache-2.0 */
#include "central/poller.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/names.h"
#include "central/pipeline_run.h"
#include "lib/str.h"

#define LS_REMOTE_MAX 65536

struct poller {
	struct poller_config cfg;
	pthread_t thread;
	bool started;
	atomic_bool stopping;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

int poller_ls_remote(const char *repo, const char *branch, char ret[static 72],
		     struct cd_error *err)
{
	char ref[300], buf[LS_REMOTE_MAX];
	int pfd[2], status = 0;
	size_t len = 0;
	pid_t pid;

	if ((size_t)snprintf(ref, sizeof(ref), "refs/heads/%s", branch) >= sizeof(ref))
		return cd_error_set(err, -EINVAL, "branch name too long");
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cd_error_set(err, -errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		int r = -errno;

		close(pfd[0]);
		close(pfd[1]);
		return cd_error_set(err, r, "fork: %s", strerror(-r));
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0 ||
		    dup2(devnull, 2) < 0)
			_exit(126);
		syscall(SYS_close_range, 3U, ~0U, 0U);
		/* "--" ends options: a repo named "--upload-pack=..." stays a repo name. */
		execlp("git", "git", "ls-remote", "--", repo, ref, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t n = read(pfd[0], buf + len, sizeof(buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	buf[len] = '\0';
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return cd_error_set(err, -EIO, "git ls-remote %s exited with status %d", repo,
				    WIFEXITED(status) ? WEXITSTATUS(status) : 128);
	/* "<sha>\trefs/heads/<branch>\n" */
	{
		char *tab = strchr(buf, '\t');

		if (!tab)
			return cd_error_set(err, -ENOENT, "%s has no branch %s", repo, branch);
		*tab = '\0';
		if (commit_check(buf, err) < 0)
			return -EBADMSG;
		/* commit_check() bounds it to 64 hex digits */
		memcpy(ret, buf, strlen(buf) + 1);
	}
	return 0;
}

int poller_new(const struct poller_config *cfg, struct poller **ret, struct cd_error *err)
{
	struct poller *p;

	if (!cfg->store)
		return cd_error_set(err, -EINVAL, "poller needs a store");
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	if (!p->cfg.interval)
		p->cfg.interval = 30 * USEC_PER_SEC;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	*ret = p;
	return 0;
}

static void plog(struct poller *p, const char *msg, const char *detail)
{
	if (p->cfg.log)
		p->cfg.log(msg, detail, p->cfg.log_userdata);
}

int poller_poll_once(struct poller *p, struct cd_error *err)
{
	struct store_pipeline *v = NULL;
	size_t n = 0;
	int r, started = 0, first = 0;

	r = store_pipeline_list_polled(p->cfg.store, &v, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n && !atomic_load(&p->stopping); i++) {
		struct cd_error e = { 0 };
		struct store_run run = { 0 };
		char sha[72], key[96], detail[700];
		bool created = false;

		r = poller_ls_remote(v[i].repo, v[i].branch ? v[i].branch : "main", sha, &e);
		if (r >= 0 && v[i].last_polled_commit && streq(v[i].last_polled_commit, sha))
			continue;
		/* A commit a hook already started a run for (POST .../runs) is not new. */
		if (r >= 0 && store_run_get(p->cfg.store, v[i].pipeline_id, 0, &run, NULL) >= 0 &&
		    streq(run.commit, sha)) {
			store_run_release(&run);
			(void)store_pipeline_set_polled(p->cfg.store, v[i].pipeline_id, sha, NULL);
			continue;
		}
		store_run_release(&run);
		snprintf(key, sizeof(key), "poll:%s", sha);
		if (r >= 0)
			r = store_run_create(p->cfg.store, v[i].pipeline_id, sha, key, "poll",
					     "poller", clock_real_usec(), &run, &created, &e);
		store_run_release(&run);
		if (r >= 0)
			r = pipeline_run_start_next(p->cfg.store, v[i].pipeline_id,
						    clock_real_usec(), &e);
		if (r >= 0)
			r = store_pipeline_set_polled(p->cfg.store, v[i].pipeline_id, sha, &e);
		if (r < 0) {
			snprintf(detail, sizeof(detail), "pipeline=%s repo=%s: %s",
				 v[i].pipeline_id, v[i].repo, cd_error_message(&e));
			plog(p, "polling failed", detail);
			if (!first)
				first = r;
			continue;
		}
		if (created) {
			started++;
			runner_kick(p->cfg.runner);
		}
	}
	store_pipeline_list_free(v, n);
	return first < 0 && started == 0 ? first : started;
}

static void *poller_main(void *arg)
{
	struct poller *p = arg;

	while (!atomic_load(&p->stopping)) {
		struct timespec ts;

		(void)poller_poll_once(p, NULL);
		ts = clock_timespec_after(CLOCK_REALTIME, p->cfg.interval);
		pthread_mutex_lock(&p->lock);
		while (!atomic_load(&p->stopping))
			if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

int poller_start(struct poller *p, struct cd_error *err)
{
	int r = pthread_create(&p->thread, NULL, poller_main, p);

	if (r != 0)
		return cd_error_set(err, -r, "starting the poller thread");
	p->started = true;
	return 0;
}

void poller_free(struct poller *p)
{
	if (!p)
		return;
	atomic_store(&p->stopping, true);
	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->started)
		pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}
