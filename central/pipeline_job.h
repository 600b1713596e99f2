/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pipeline_job.h — the `job` stage: deploys the JobSpec held by the stage's `spec` target (its
 * artifact at the run's commit, built on demand) to each zone listed in the spec's zones[], in
 * order, through the zones' cluster managers (PUT /v1/jobs/{region}/{zone}/{name}), with the
 * spec's target pinned to target@<run commit>. A zone is done when its job is RUNNING with the
 * new version as its stable version; a rollback (or halted rollout, or ERROR) fails the stage
 * with the cluster's reason and the remaining zones are never touched.
 * Progress (resolved spec, current zone, versions put) is kept in the stage's result, so a
 * re-claimed attempt continues where the previous claim stopped; PutJob of an identical spec is
 * a no-op on the cluster side, so repeating a step is harmless. Polls are deferred actions, not
 * sleeping threads.
 */
#pragma once

#include <stddef.h>

#include "central/builder.h"
#include "central/runner.h"

struct pipeline_zone {
	const char *zone;   /* "us-east-1" */
	const char *region; /* "us-east" */
	const char *url;    /* the zone's cluster manager (deployd --role cluster) */
	const char *token;  /* bearer token for it (admin or team) */
};

struct job_deployer;

struct job_deployer_config {
	struct builder *builder; /* builds spec targets; may be NULL when specs are all indexed
				  * (then the artifact store is reached through it anyway: required) */
	const struct pipeline_zone *zones; /* copied */
	size_t n_zones;
	usec_t poll;	     /* between job state polls; 0 = 1 s */
	const char *log_dir; /* stage logs (pipeline_log_path()); may be NULL */
};

int job_deployer_new(const struct job_deployer_config *cfg, struct job_deployer **ret,
		     struct cd_error *err);
void job_deployer_free(struct job_deployer *d);

/* Stage executor (runner.h contract); ctx->data must be the struct job_deployer. */
int job_deployer_exec(struct exec_ctx *ctx, struct exec_result *res);
