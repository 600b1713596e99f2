/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runner.h — the ActionRunner: worker threads that claim actions from the store's queue (with a
 * lease), execute the stage through the executor registered for its type, write the outcome
 * (FINISHED, ERROR, or "defer until t" for waits, polls and transient-failure backoff) and
 * advance the run, outcome and advance in one store transaction (one commit per action after
 * the claim's). If that transaction fails after the outcome, the runner records the outcome
 * alone and advances separately; a reconciler thread re-advances every run in progress, which
 * repairs the gap "stage finished, next stage not queued" that this path (or a run advanced from
 * elsewhere) can leave, and starts pending runs.
 * Owns: threads, lease keep-alive, per-stage timeouts, retry/backoff policy, the wait and
 * approval stage types, a cache of planned DAGs (pipeline_run.h). Does not own what
 * build/test/job do (builder.h, pipeline_job.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "central/planner.h"
#include "central/store_pipelines.h"
#include "lib/clock.h"
#include "lib/error.h"

struct runner;
struct dag_cache; /* pipeline_run.h */

enum exec_outcome {
	EXEC_FINISHED, /* stage FINISHED */
	EXEC_FAILED,   /* stage ERROR, message says why */
	EXEC_RETRY,    /* transient failure: back off and try again (up to max_tries) */
	EXEC_DEFER,    /* not done yet (waiting, polling): claim again at not_before */
};

struct exec_result {
	enum exec_outcome outcome;
	usec_t not_before;  /* EXEC_DEFER */
	char message[1024]; /* shown as the stage's error_message (ERROR, retries, waits) */
	char *result;	    /* JSON text kept with the stage (malloc'd, may be NULL) */
};

struct exec_ctx {
	struct runner *runner;
	struct store *store;
	const struct store_claim *claim;
	const struct store_run *run;
	const struct action_node *node;
	usec_t now;	 /* realtime at claim */
	usec_t deadline; /* realtime after which the stage times out; 0 = none */
	void *data;	 /* runner_config.exec_data */
};

/*
 * An executor runs one claim of one stage. It must be idempotent per (run, stage, attempt): a
 * claim can be executed again after a crash (look for the previous claim's result in
 * claim->result, or for the artifacts it produced). Returns 0 with *res filled, or < 0 for an
 * internal failure (treated as EXEC_RETRY with the error's message). Long executors call
 * runner_keepalive() at least every few seconds and stop when it fails.
 */
typedef int (*stage_exec_fn)(struct exec_ctx *ctx, struct exec_result *res);

struct runner_config {
	struct store *store;
	const char *owner;		  /* lease owner, unique per process ("deployd@host:pid") */
	unsigned threads;		  /* workers; 0 = 2 */
	usec_t lease;			  /* 0 = 30 s */
	usec_t poll;			  /* idle wait between claims; 0 = 200 ms */
	usec_t reconcile;		  /* 0 = 2 s */
	unsigned max_tries;		  /* transient failures per attempt before ERROR; 0 = 5 */
	usec_t backoff_base, backoff_max; /* 0 = 1 s, 60 s */
	/* Default timeout per stage type when the stage sets no timeout_s; 0 = none. */
	usec_t default_timeout[_ACTION_TYPE_MAX];
	/* Executors by type; wait and approval are built in (NULL keeps them). A type without an
	 * executor fails its stages with a clear message. */
	stage_exec_fn exec[_ACTION_TYPE_MAX];
	void *exec_data;
	/* Do not run wait and approval stages here (a builder-only deployd). */
	bool no_builtin_stages;
	/* Claim only actions of the types that have an executor here (a deployd without the
	 * builder leaves build/test to one that has it) instead of failing them. */
	bool typed_claims;
	/* Planned DAGs to plan through (borrowed: must outlive the runner, may be shared, e.g. with
	 * the API's run views); NULL = the runner makes its own with the default bounds. */
	struct dag_cache *dags;
	/* Where the binary hears about failures the store cannot show (may be NULL). */
	void (*log)(const char *msg, const char *detail, void *userdata);
	void *log_userdata;
};

int runner_new(const struct runner_config *config, struct runner **ret, struct cd_error *err);
/* Start the worker and reconciler threads. */
int runner_start(struct runner *r, struct cd_error *err);
/* Wake idle workers (a run was created or approved). Thread-safe. */
void runner_kick(struct runner *r);
/* Stop and join the threads (running executors see runner_keepalive() fail), free. */
void runner_free(struct runner *r);

/* Process at most one ready action now on the calling thread. Returns 1 when one was
 * processed, 0 when the queue had nothing ready. (Tests and benchmarks drive the runner
 * synchronously with this.) */
int runner_step(struct runner *r, usec_t now, struct cd_error *err);
/* One reconciler pass: advance every run in progress, start pending ones. */
int runner_reconcile(struct runner *r, usec_t now, struct cd_error *err);

/* How often this runner's DAG cache answered a lookup (hits) and how often it had to parse and
 * plan a schema version (plans), since runner_new(). */
void runner_plan_stats(struct runner *r, uint64_t *ret_hits, uint64_t *ret_plans);

/* Extend the current claim's lease when due; -ESTALE when it was lost (cancelled or taken
 * over), -ECANCELED when the runner is stopping, -ETIMEDOUT past ctx->deadline. */
int runner_keepalive(struct exec_ctx *ctx);

/* Built-in executors (exposed for tests). */
int runner_exec_wait(struct exec_ctx *ctx, struct exec_result *res);
int runner_exec_approval(struct exec_ctx *ctx, struct exec_result *res);
