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
#include <stdint.h>

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

/*
 * A small LRU cache (16 DAGs, 100,000 stages in all by default) of planned DAGs keyed by
 * (pipeline_id, schema version), so that an action costs at most one parse + plan of its schema
 * instead of two (a 10,000-stage schema costs 8-20 ms to parse and plan here,
 * bench/pipelines/RESULTS.md). Correct because a stored
 * schema version never changes: store_schema_put() inserts a new version, activate/deactivate
 * only change its state, nothing updates or deletes the text (store_pipelines.c enforces that
 * with triggers), and pipeline ids are never reused. Version 0 ("the active one") is never
 * cached. Thread-safe (one mutex, not held while planning); entries are reference counted, so
 * an evicted DAG stays valid for whoever still holds it. The runner owns one.
 */
struct dag_cache;

#define DAG_CACHE_DEFAULT_CAPACITY 16
/* A planned 10,000-stage schema (DAG + parsed JSON) takes about 10 MB here (~1 KB per stage),
 * so the cache is bounded by stages too: by default about 100 MB. A DAG larger than the budget
 * on its own is still cached, alone (it existed while planning anyway). */
#define DAG_CACHE_DEFAULT_MAX_NODES 100000

/* At most capacity DAGs (0 = DAG_CACHE_DEFAULT_CAPACITY) holding at most max_nodes stages in
 * all (0 = DAG_CACHE_DEFAULT_MAX_NODES); least recently used first out. */
int dag_cache_new(size_t capacity, size_t max_nodes, struct dag_cache **ret);
struct dag_cache *dag_cache_free(struct dag_cache *c);
/* Lookups answered from the cache and plans made on a miss, since dag_cache_new(). */
void dag_cache_stats(struct dag_cache *c, uint64_t *ret_hits, uint64_t *ret_plans);

/* pipeline_run_plan() through cache (NULL: no cache). *ret is a reference: dag_free() it.
 * Failures (-EINVAL: unplannable) are not cached. */
int pipeline_run_plan_cached(struct dag_cache *cache, struct store *s, const char *pipeline_id,
			     int64_t schema_version, struct action_dag **ret, struct cd_error *err);

/* pipeline_run_advance() / pipeline_run_start_next() planning through cache (may be NULL). */
int pipeline_run_advance_cached(struct store *s, struct dag_cache *cache, const char *pipeline_id,
				int64_t run, usec_t now, enum run_state *ret_state,
				struct cd_error *err);
int pipeline_run_start_next_cached(struct store *s, struct dag_cache *cache,
				   const char *pipeline_id, usec_t now, struct cd_error *err);

/*
 * The body of pipeline_run_advance() for a caller that already holds a store transaction
 * (store_begin()): it reads the run, enqueues, ends it, all inside that transaction; it neither
 * commits nor starts the next run (the caller does that after committing when *ret_state is
 * terminal). Lets the runner record a stage's outcome and advance its run in one commit.
 * Returns as pipeline_run_advance(): -EINVAL when the schema cannot be planned (the run was set
 * to ERROR in the transaction, which the caller should commit); other errors leave the
 * transaction to be rolled back.
 */
int pipeline_run_advance_in_tx(struct store *s, struct dag_cache *cache, const char *pipeline_id,
			       int64_t run, usec_t now, enum run_state *ret_state,
			       struct cd_error *err);
