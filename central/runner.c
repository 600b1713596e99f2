/* SPDX-License-Identifier: Apache-2.0 */
#include "central/runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "central/pipeline_run.h"
#include "lib/macro.h"

struct runner {
	struct runner_config cfg;
	char owner[64];
	pthread_t *threads;
	size_t n_threads;
	pthread_t reconciler;
	bool reconciler_started;
	atomic_bool stopping;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned kicks;
	/* Planned DAGs by (pipeline, schema version), shared by the workers and the reconciler:
	 * an action plans its schema at most once, usually not at all. */
	struct dag_cache *dags;
	bool own_dags; /* dags made by runner_new(), not borrowed from the config */
};

static void runner_log(struct runner *r, const char *msg, const char *detail)
{
	if (r->cfg.log)
		r->cfg.log(msg, detail, r->cfg.log_userdata);
}

int runner_new(const struct runner_config *config, struct runner **ret, struct cd_error *err)
{
	struct runner *r;

	if (!config->store || !config->owner || !*config->owner)
		return cd_error_set(err, -EINVAL, "runner needs a store and an owner");
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->dags = config->dags;
	if (!r->dags) {
		if (dag_cache_new(0, 0, &r->dags) < 0) {
			free(r);
			return -ENOMEM;
		}
		r->own_dags = true;
	}
	r->cfg = *config;
	snprintf(r->owner, sizeof(r->owner), "%s", config->owner);
	r->cfg.owner = r->owner;
	if (!r->cfg.threads)
		r->cfg.threads = 2;
	if (!r->cfg.lease)
		r->cfg.lease = 30 * USEC_PER_SEC;
	if (!r->cfg.poll)
		r->cfg.poll = 200 * USEC_PER_MSEC;
	if (!r->cfg.reconcile)
		r->cfg.reconcile = 2 * USEC_PER_SEC;
	if (!r->cfg.max_tries)
		r->cfg.max_tries = 5;
	if (!r->cfg.backoff_base)
		r->cfg.backoff_base = USEC_PER_SEC;
	if (!r->cfg.backoff_max)
		r->cfg.backoff_max = 60 * USEC_PER_SEC;
	if (!r->cfg.exec[ACTION_WAIT] && !r->cfg.no_builtin_stages)
		r->cfg.exec[ACTION_WAIT] = runner_exec_wait;
	if (!r->cfg.exec[ACTION_APPROVAL] && !r->cfg.no_builtin_stages)
		r->cfg.exec[ACTION_APPROVAL] = runner_exec_approval;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	*ret = r;
	return 0;
}

/* ---- built-in stage types ------------------------------------------------------------------ */

int runner_exec_wait(struct exec_ctx *ctx, struct exec_result *res)
{
	/* The end is fixed by the attempt's first claim, so a re-claim after a crash does not
	 * restart the wait. */
	usec_t until = ctx->claim->started_at + (usec_t)node_wait_seconds(ctx->node) * USEC_PER_SEC;

	if (ctx->now >= until) {
		res->outcome = EXEC_FINISHED;
		return 0;
	}
	res->outcome = EXEC_DEFER;
	res->not_before = until;
	snprintf(res->message, sizeof(res->message), "waiting %llds",
		 (long long)node_wait_seconds(ctx->node));
	return 0;
}

int runner_exec_approval(struct exec_ctx *ctx, struct exec_result *res)
{
	if (ctx->claim->approved_by) {
		res->outcome = EXEC_FINISHED;
		snprintf(res->message, sizeof(res->message), "approved by %s",
			 ctx->claim->approved_by);
		return 0;
	}
	/* Parked until POST .../approve makes it ready again. */
	res->outcome = EXEC_DEFER;
	res->not_before = (usec_t)INT64_MAX;
	snprintf(res->message, sizeof(res->message), "waiting for approval");
	return 0;
}

/* ---- one claim ----------------------------------------------------------------------------- */

int runner_keepalive(struct exec_ctx *ctx)
{
	struct runner *r = ctx->runner;
	usec_t now = clock_real_usec();

	if (r && atomic_load(&r->stopping))
		return -ECANCELED;
	if (ctx->deadline && now > ctx->deadline)
		return -ETIMEDOUT;
	if (!r)
		return 0;
	/* Renew once a third of the lease has passed: a slow step never loses it. */
	if (ctx->claim->lease_expires > now + r->cfg.lease * 2 / 3)
		return 0;
	return store_action_extend(ctx->store, (struct store_claim *)ctx->claim, now, r->cfg.lease,
				   NULL);
}

static usec_t backoff(const struct runner *r, int tries)
{
	usec_t d = r->cfg.backoff_base;

	for (int i = 0; i < tries && d < r->cfg.backoff_max; i++)
		d *= 2;
	return MIN(d, r->cfg.backoff_max);
}

static usec_t stage_timeout(const struct runner *r, const struct action_node *node)
{
	int64_t t = node_timeout_seconds(node);

	if (t > 0)
		return (usec_t)t * USEC_PER_SEC;
	return r->cfg.default_timeout[node_type(node)];
}

/* Run the claim's executor (or decide without it: run gone, schema unplannable, timed out).
 * Returns 0 with *res filled, or < 0 when nothing may be recorded (-ESTALE, -ECANCELED, store
 * errors). */
static int decide(struct runner *r, struct store_claim *c, const struct store_run *run, usec_t now,
		  struct exec_result *res, struct cd_error *err)
{
	_cleanup_dag_ struct action_dag *dag = NULL;
	const struct action_node *node;
	struct cd_error xerr = { 0 };
	stage_exec_fn fn;
	usec_t timeout;
	int q;

	res->outcome = EXEC_FAILED;
	if (run->state != RUN_IN_PROGRESS) {
		snprintf(res->message, sizeof(res->message), "run is %s",
			 run_state_to_string(run->state));
		return 0;
	}
	q = pipeline_run_plan_cached(r->dags, r->cfg.store, c->pipeline_id, run->schema_version,
				     &dag, &xerr);
	if (q == -EINVAL) {
		snprintf(res->message, sizeof(res->message), "cannot plan schema: %s",
			 cd_error_message(&xerr));
		return 0;
	}
	if (q < 0)
		return cd_error_set(err, q, "%s", cd_error_message(&xerr));
	node = dag_find_node(dag, c->stage);
	if (!node) {
		snprintf(res->message, sizeof(res->message), "stage not in schema version %lld",
			 (long long)run->schema_version);
		return 0;
	}
	timeout = stage_timeout(r, node);
	if (timeout && now > c->started_at + timeout) {
		snprintf(res->message, sizeof(res->message), "timed out after %llus",
			 (unsigned long long)(timeout / USEC_PER_SEC));
		return 0;
	}
	fn = r->cfg.exec[node_type(node)];
	if (!fn) {
		snprintf(res->message, sizeof(res->message),
			 "no executor for stage type \"%s\" in this deployd (role not enabled)",
			 action_type_to_string(node_type(node)));
		return 0;
	}
	struct exec_ctx ctx = {
		.runner = r,
		.store = r->cfg.store,
		.claim = c,
		.run = run,
		.node = node,
		.now = now,
		.deadline = timeout ? c->started_at + timeout : 0,
		.data = r->cfg.exec_data,
	};
	q = fn(&ctx, res);
	if (q == -ESTALE || q == -ECANCELED)
		/* Lease lost (cancel, take-over) or shutting down: whoever holds the action now
		 * decides; a stopping runner leaves it to lease expiry. */
		return q;
	if (q == -ETIMEDOUT) {
		res->outcome = EXEC_FAILED;
		snprintf(res->message, sizeof(res->message), "timed out after %llus",
			 (unsigned long long)(timeout / USEC_PER_SEC));
	} else if (q < 0) {
		res->outcome = EXEC_RETRY;
		snprintf(res->message, sizeof(res->message), "internal error: %s", strerror(-q));
	}
	return 0;
}

/* Record the outcome (fenced by the claim's lease token). Inside or outside a transaction. */
static int record(struct runner *r, const struct store_claim *c, const struct exec_result *res,
		  usec_t now, struct cd_error *err)
{
	char msg[sizeof(res->message) + 64];

	switch (res->outcome) {
	case EXEC_FINISHED:
		return store_action_finish(r->cfg.store, c, ACTION_FINISHED,
					   res->message[0] ? res->message : NULL, res->result, now,
					   err);
	case EXEC_FAILED:
		return store_action_finish(r->cfg.store, c, ACTION_ERROR, res->message, res->result,
					   now, err);
	case EXEC_DEFER:
		return store_action_defer(r->cfg.store, c, res->not_before, false,
					  res->message[0] ? res->message : NULL, res->result, now,
					  err);
	case EXEC_RETRY:
		if ((unsigned)c->tries + 1 >= r->cfg.max_tries) {
			snprintf(msg, sizeof(msg), "gave up after %u tries: %s", r->cfg.max_tries,
				 res->message);
			return store_action_finish(r->cfg.store, c, ACTION_ERROR, msg, res->result,
						   now, err);
		}
		snprintf(msg, sizeof(msg), "retrying (try %d of %u): %s", c->tries + 2,
			 r->cfg.max_tries, res->message);
		return store_action_defer(r->cfg.store, c, now + backoff(r, c->tries), true, msg,
					  res->result, now, err);
	}
	return -EINVAL;
}

/*
 * Record the outcome and advance the run in ONE transaction (one commit, one fsync, instead of
 * two). Crash safety is that of either step alone: the lease check comes first, so a lost lease
 * (-ESTALE) rolls everything back and nothing is written; a crash before the commit leaves the
 * claim as it was (leased, stage IN_PROGRESS), so the attempt is re-claimed after the lease
 * expires and re-executed, which executors must tolerate anyway (idempotent per (run, stage,
 * attempt)); after the commit the outcome and the next stages are durable together, so the
 * "finished but next not queued" gap the reconciler repairs no longer arises on this path.
 * Returns 1 when done; 0 when the advance failed after the outcome was written (the caller falls
 * back to two transactions, so a run that cannot be advanced never loses a stage's outcome);
 * < 0 when the outcome itself could not be recorded.
 */
static int record_and_advance(struct runner *r, const struct store_claim *c,
			      const struct exec_result *res, usec_t now, enum run_state *ret_state,
			      struct cd_error *err)
{
	struct cd_error xerr = { 0 };
	int q;

	q = store_begin(r->cfg.store, err);
	if (q < 0)
		return q;
	q = record(r, c, res, now, err);
	if (q < 0) {
		store_rollback(r->cfg.store);
		return q;
	}
	q = pipeline_run_advance_in_tx(r->cfg.store, r->dags, c->pipeline_id, c->run, now,
				       ret_state, &xerr);
	if (q < 0 && q != -EINVAL) {
		store_rollback(r->cfg.store);
		return 0;
	}
	/* -EINVAL: the schema cannot be planned; the run was set to ERROR, commit that. */
	q = store_commit(r->cfg.store, &xerr);
	return q < 0 ? 0 : 1;
}

/* Decide and record the outcome of one claim, then advance its run. */
static int execute(struct runner *r, struct store_claim *c, usec_t now, struct cd_error *err)
{
	struct exec_result res = { .outcome = EXEC_FAILED };
	struct store_run run = { 0 };
	enum run_state state = RUN_IN_PROGRESS;
	int q;

	q = store_run_get(r->cfg.store, c->pipeline_id, c->run, &run, err);
	if (q < 0)
		return q;
	q = decide(r, c, &run, now, &res, err);
	store_run_release(&run);
	if (q < 0) {
		free(res.result);
		return q;
	}
	q = record_and_advance(r, c, &res, now, &state, err);
	if (q == 0) {
		/* The one-transaction path failed after the outcome (rolled back with it): the
		 * two-transaction path records the outcome alone first, and what it cannot advance
		 * the reconciler repairs. */
		q = record(r, c, &res, now, err);
		if (q >= 0)
			q = pipeline_run_advance_cached(r->cfg.store, r->dags, c->pipeline_id,
							c->run, now, NULL, err);
	} else if (q > 0 && run_state_is_terminal(state))
		/* The run ended: start the pipeline's next one (its own transaction; the
		 * reconciler starts it if this fails or a crash comes first). */
		q = pipeline_run_start_next_cached(r->cfg.store, r->dags, c->pipeline_id, now, err);
	free(res.result);
	return q == -EINVAL ? 0 : q < 0 ? q : 0;
}

int runner_step(struct runner *r, usec_t now, struct cd_error *err)
{
	struct store_claim c = { 0 };
	unsigned types = 0;
	int q;

	if (r->cfg.typed_claims)
		for (enum action_type t = ACTION_BUILD; t < _ACTION_TYPE_MAX; t++)
			if (r->cfg.exec[t])
				types |= 1u << t;
	q = store_action_claim_typed(r->cfg.store, r->owner, types, now, r->cfg.lease, &c, err);

	if (q <= 0)
		return q;
	q = execute(r, &c, now, err);
	if (q == -ESTALE) {
		char detail[256];

		snprintf(detail, sizeof(detail), "pipeline=%s run=%lld stage=\"%s\"", c.pipeline_id,
			 (long long)c.run, c.stage);
		runner_log(r, "lease lost while executing; result dropped", detail);
		q = 0;
	}
	store_claim_release(&c);
	return q < 0 ? q : 1;
}

int runner_reconcile(struct runner *r, usec_t now, struct cd_error *err)
{
	struct store_run *v = NULL;
	size_t n = 0;
	int q, first = 0;

	q = store_run_list_by_state(r->cfg.store, RUN_IN_PROGRESS, &v, &n, err);
	if (q < 0)
		return q;
	for (size_t i = 0; i < n; i++) {
		q = pipeline_run_advance_cached(r->cfg.store, r->dags, v[i].pipeline_id, v[i].run,
						now, NULL, NULL);
		if (q < 0 && q != -EINVAL && first == 0)
			first = q;
	}
	store_run_list_free(v, n);
	q = store_run_list_by_state(r->cfg.store, RUN_PENDING, &v, &n, err);
	if (q < 0)
		return q;
	for (size_t i = 0; i < n; i++) {
		q = pipeline_run_start_next_cached(r->cfg.store, r->dags, v[i].pipeline_id, now,
						   NULL);
		if (q < 0 && first == 0)
			first = q;
	}
	store_run_list_free(v, n);
	return first;
}

void runner_plan_stats(struct runner *r, uint64_t *ret_hits, uint64_t *ret_plans)
{
	dag_cache_stats(r->dags, ret_hits, ret_plans);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void wait_kick(struct runner *r, usec_t timeout, unsigned *seen)
{
	struct timespec ts = clock_timespec_after(CLOCK_REALTIME, timeout);

	pthread_mutex_lock(&r->lock);
	while (*seen == r->kicks && !atomic_load(&r->stopping))
		if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT)
			break;
	*seen = r->kicks;
	pthread_mutex_unlock(&r->lock);
}

static void *worker_main(void *arg)
{
	struct runner *r = arg;
	unsigned seen = 0;

	while (!atomic_load(&r->stopping)) {
		struct cd_error err = { 0 };
		int q = runner_step(r, clock_real_usec(), &err);

		if (q < 0 && q != -ECANCELED)
			runner_log(r, "runner step failed", cd_error_message(&err));
		if (q <= 0)
			wait_kick(r, r->cfg.poll, &seen);
	}
	return NULL;
}

static void *reconciler_main(void *arg)
{
	struct runner *r = arg;
	unsigned seen = 0;

	while (!atomic_load(&r->stopping)) {
		struct cd_error err = { 0 };

		if (runner_reconcile(r, clock_real_usec(), &err) < 0)
			runner_log(r, "reconcile failed", cd_error_message(&err));
		wait_kick(r, r->cfg.reconcile, &seen);
	}
	return NULL;
}

int runner_start(struct runner *r, struct cd_error *err)
{
	int q;

	r->threads = calloc(r->cfg.threads, sizeof(*r->threads));
	if (!r->threads)
		return -ENOMEM;
	q = pthread_create(&r->reconciler, NULL, reconciler_main, r);
	if (q != 0)
		return cd_error_set(err, -q, "starting the reconciler thread");
	r->reconciler_started = true;
	for (; r->n_threads < r->cfg.threads; r->n_threads++) {
		q = pthread_create(&r->threads[r->n_threads], NULL, worker_main, r);
		if (q != 0)
			return cd_error_set(err, -q, "starting runner thread %zu", r->n_threads);
	}
	return 0;
}

void runner_kick(struct runner *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->kicks++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

void runner_free(struct runner *r)
{
	if (!r)
		return;
	atomic_store(&r->stopping, true);
	runner_kick(r);
	for (size_t i = 0; i < r->n_threads; i++)
		pthread_join(r->threads[i], NULL);
	if (r->reconciler_started)
		pthread_join(r->reconciler, NULL);
	free(r->threads);
	if (r->own_dags)
		dag_cache_free(r->dags);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}
