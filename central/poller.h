/* SPDX-License-Identifier: Apache-2.0 */
/*
 * poller.h — repository polling: for every pipeline with a repo, `git ls-remote <repo>
 * refs/heads/<branch>` every interval; a commit different from the last one seen, and not the
 * commit of the pipeline's latest run (a hook may have started that already), starts a run
 * (trigger "poll", Idempotency-Key "poll:<commit>", so a crash between "run created" and
 * "commit recorded" cannot start the same run twice). Owns one thread and the git child
 * processes it starts; runs go through the store and pipeline_run.h like API-created ones.
 */
#pragma once

#include "central/runner.h"
#include "central/store_pipelines.h"
#include "lib/clock.h"
#include "lib/error.h"

struct poller;

struct poller_config {
	struct store *store;
	struct runner *runner; /* kicked when a run starts; may be NULL */
	usec_t interval;       /* 0 = 30 s */
	void (*log)(const char *msg, const char *detail, void *userdata); /* may be NULL */
	void *log_userdata;
};

int poller_new(const struct poller_config *cfg, struct poller **ret, struct cd_error *err);
int poller_start(struct poller *p, struct cd_error *err);
/* One pass over every polled pipeline (tests; the thread calls it too). Returns the number of
 * runs started, or the first error. */
int poller_poll_once(struct poller *p, struct cd_error *err);
/* The head commit of branch in repo (40/64 hex into ret). -ENOENT when the branch does not
 * exist; -EIO with git's exit status otherwise. */
int poller_ls_remote(const char *repo, const char *branch, char ret[static 72],
		     struct cd_error *err);
void poller_free(struct poller *p);
