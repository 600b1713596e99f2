/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pipeline_run.h — the policy that moves a run forward: which stages are ready (all their
 * dependencies FINISHED), when a run is FINISHED or ERROR, what a retry re-runs, and starting
 * the next pending run of a pipeline. Owns no state: it reads the store, plans the run's schema
 * version and writes back through store_pipelines.h. Every step is idempotent (enqueueing an
 * attempt twice is a no-op), so calling it again after a crash, or from two deployds, is safe.
 */
#pragma once

#include <stddef.h>

#include "central/planner.h"
#include "central/store_pipelines.h"

/*
 * Pure step. stages: the latest attempt of every stage that has an ActionState row (as
 * store_stage_list() returns them); attempt: the run's current attempt. A stage whose latest
 * row is ERROR from an older attempt counts as not started (that is what a retry re-runs).
 * Writes into ready[] (dag_n_nodes() entries) the node indices to enqueue now, *ret_n_ready
 * their count, and *ret_state:
 *   RUN_FINISHED    every stage FINISHED,
 *   RUN_ERROR       a stage is in ERROR at this attempt and nothing is still running
 *                   (*ret_failed = that stage; after a failure no new stage starts),
 *   RUN_IN_PROGRESS otherwise.
 */
void pipeline_run_step(const struct action_dag *dag, const struct store_stage *stages, size_t n,
		       int64_t attempt, size_t *ready, size_t *ret_n_ready,
		       enum run_state *ret_state, const struct store_stage **ret_failed);

/*
 * Apply one step to run (which must be IN_PROGRESS; others are left alone): enqueue the ready
 * stages at the run's attempt (ready now), and when the run ended, record FINISHED / ERROR
 * ("stage \"x\": <message>") and start the pipeline's next pending run (its first stages are
 * enqueued too). *ret_state (may be NULL) gets the run's state afterwards. -EINVAL when the
 * run's schema cannot be planned (the run is set to ERROR with that message).
 */
int pipeline_run_advance(struct store *s, const char *pipeline_id, int64_t run, usec_t now,
			 enum run_state *ret_state, struct cd_error *err);

/* Start the pipeline's next pending run if none is in progress, and advance it. Returns 1 when
 * a run was started. */
int pipeline_run_start_next(struct store *s, const char *pipeline_id, usec_t now,
			    struct cd_error *err);

/* Plan the schema version a run uses. */
int pipeline_run_plan(struct store *s, const char *pipeline_id, int64_t schema_version,
		      struct action_dag **ret, struct cd_error *err);
