/* SPDX-License-Identifier: Apache-2.0 */
#include "central/pipeline_run.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/macro.h"
#include "lib/str.h"

void pipeline_run_step(const struct action_dag *dag, const struct store_stage *stages, size_t n,
		       int64_t attempt, size_t *ready, size_t *ret_n_ready,
		       enum run_state *ret_state, const struct store_stage **ret_failed)
{
	size_t nn = dag_n_nodes(dag), n_ready = 0, n_finished = 0;
	const struct store_stage **by_node = calloc(nn, sizeof(*by_node));
	const struct store_stage *failed = NULL;
	bool running = false;

	*ret_failed = NULL;
	*ret_n_ready = 0;
	if (!by_node) {
		/* Nothing decided: the caller retries later. */
		*ret_state = RUN_IN_PROGRESS;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct action_node *node = dag_find_node(dag, stages[i].name);

		/* Rows of stages the schema no longer has cannot exist for this run's version;
		 * ignore them rather than trust them. */
		if (!node)
			continue;
		/* An ERROR from an older attempt is what a retry re-runs: not started. */
		if (stages[i].state == ACTION_ERROR && stages[i].attempt < attempt)
			continue;
		by_node[node_index(node)] = &stages[i];
	}
	for (size_t i = 0; i < nn; i++) {
		const struct store_stage *sg = by_node[i];

		if (!sg)
			continue;
		if (sg->state == ACTION_FINISHED)
			n_finished++;
		else if (sg->state == ACTION_ERROR) {
			if (!failed)
				failed = sg;
		} else
			running = true;
	}
	if (!failed) {
		for (size_t i = 0; i < nn; i++) {
			const struct action_node *node = dag_node(dag, i);
			const struct action_node *const *deps;
			size_t k;
			bool ok = true;

			if (by_node[i])
				continue;
			deps = node_dependencies(node, &k);
			for (size_t j = 0; j < k && ok; j++) {
				const struct store_stage *d = by_node[node_index(deps[j])];

				ok = d && d->state == ACTION_FINISHED;
			}
			if (ok)
				ready[n_ready++] = i;
		}
	}
	free(by_node);
	*ret_n_ready = n_ready;
	if (n_finished == nn)
		*ret_state = RUN_FINISHED;
	else if (failed && !running) {
		*ret_state = RUN_ERROR;
		*ret_failed = failed;
	} else
		*ret_state = RUN_IN_PROGRESS;
}

int pipeline_run_plan(struct store *s, const char *pipeline_id, int64_t schema_version,
		      struct action_dag **ret, struct cd_error *err)
{
	struct store_schema sv = { 0 };
	json_error_t jerr;
	json_t *j;
	int r;

	r = store_schema_get(s, pipeline_id, schema_version, &sv, err);
	if (r < 0)
		return r;
	j = json_loads(sv.schema, JSON_DECODE_ANY, &jerr);
	store_schema_release(&sv);
	if (!j)
		return cd_error_set(err, -EINVAL, "stored schema version %lld is not JSON: %s",
				    (long long)schema_version, jerr.text);
	r = planner_plan(pipeline_id, j, ret, err);
	json_decref(j);
	return r;
}

/* ---- DAG cache ----------------------------------------------------------------------------- */

struct dag_cache_entry {
	char pipeline_id[ID_LEN + 1];
	int64_t version; /* 0: free slot */
	uint64_t used;	 /* dag_cache.tick at the last hit: the smallest is evicted */
	size_t nodes;	 /* dag_n_nodes(dag) */
	struct action_dag *dag;
};

struct dag_cache {
	pthread_mutex_t lock;
	uint64_t tick, hits, plans;
	size_t capacity, max_nodes;
	struct dag_cache_entry *entries;
};

int dag_cache_new(size_t capacity, size_t max_nodes, struct dag_cache **ret)
{
	struct dag_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->capacity = capacity ? capacity : DAG_CACHE_DEFAULT_CAPACITY;
	c->max_nodes = max_nodes ? max_nodes : DAG_CACHE_DEFAULT_MAX_NODES;
	c->entries = calloc(c->capacity, sizeof(*c->entries));
	if (!c->entries) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	*ret = c;
	return 0;
}

struct dag_cache *dag_cache_free(struct dag_cache *c)
{
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->capacity; i++)
		dag_free(c->entries[i].dag);
	free(c->entries);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return NULL;
}

void dag_cache_stats(struct dag_cache *c, uint64_t *ret_hits, uint64_t *ret_plans)
{
	pthread_mutex_lock(&c->lock);
	*ret_hits = c->hits;
	*ret_plans = c->plans;
	pthread_mutex_unlock(&c->lock);
}

/* Called with c->lock held. */
static struct dag_cache_entry *cache_find(struct dag_cache *c, const char *pipeline_id,
					  int64_t version)
{
	for (size_t i = 0; i < c->capacity; i++)
		if (c->entries[i].version == version &&
		    streq(c->entries[i].pipeline_id, pipeline_id))
			return &c->entries[i];
	return NULL;
}

/* Called with c->lock held; the key is not cached. Evicts least recently used entries until
 * the DAG fits in both bounds (or the cache is empty: a DAG over the budget alone is kept). */
static void cache_insert(struct dag_cache *c, const char *pipeline_id, int64_t version,
			 struct action_dag *dag)
{
	size_t need = dag_n_nodes(dag);

	for (;;) {
		struct dag_cache_entry *lru = NULL, *free_slot = NULL;
		size_t used = 0;

		for (size_t i = 0; i < c->capacity; i++) {
			struct dag_cache_entry *e = &c->entries[i];

			if (!e->version) {
				if (!free_slot)
					free_slot = e;
				continue;
			}
			used += e->nodes;
			if (!lru || e->used < lru->used)
				lru = e;
		}
		if (free_slot && (!lru || used + need <= c->max_nodes)) {
			memcpy(free_slot->pipeline_id, pipeline_id, strlen(pipeline_id) + 1);
			free_slot->version = version;
			free_slot->nodes = need;
			free_slot->used = ++c->tick;
			free_slot->dag = dag_ref(dag);
			return;
		}
		if (!lru)
			return; /* no slot at all: dag_cache_new() makes at least one */
		/* The evicted DAG lives on while callers hold references to it. */
		lru->dag = dag_free(lru->dag);
		lru->version = 0;
		lru->nodes = 0;
	}
}

int pipeline_run_plan_cached(struct dag_cache *c, struct store *s, const char *pipeline_id,
			     int64_t schema_version, struct action_dag **ret, struct cd_error *err)
{
	struct dag_cache_entry *e;
	struct action_dag *dag = NULL;
	int r;

	/* Version 0 names whichever version is active now: not a stable key. */
	if (!c || schema_version <= 0 || strlen(pipeline_id) > ID_LEN)
		return pipeline_run_plan(s, pipeline_id, schema_version, ret, err);
	pthread_mutex_lock(&c->lock);
	e = cache_find(c, pipeline_id, schema_version);
	if (e) {
		e->used = ++c->tick;
		c->hits++;
		*ret = dag_ref(e->dag);
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	c->plans++;
	pthread_mutex_unlock(&c->lock);

	/* Plan without the lock: a 10,000-stage schema takes milliseconds and other threads may
	 * want other entries meanwhile. Two threads missing on the same key both plan; the first
	 * to insert wins, the other's DAG is used once and dropped. */
	r = pipeline_run_plan(s, pipeline_id, schema_version, &dag, err);
	if (r < 0)
		return r;

	pthread_mutex_lock(&c->lock);
	e = cache_find(c, pipeline_id, schema_version);
	if (e)
		e->used = ++c->tick;
	else
		cache_insert(c, pipeline_id, schema_version, dag);
	pthread_mutex_unlock(&c->lock);
	*ret = dag;
	return 0;
}

/* ---- advancing a run ----------------------------------------------------------------------- */

static int advance_locked(struct store *s, struct dag_cache *cache, const struct store_run *run,
			  usec_t now, enum run_state *ret_state, struct cd_error *err)
{
	_cleanup_dag_ struct action_dag *dag = NULL;
	struct store_stage *stages = NULL;
	const struct store_stage *failed = NULL;
	_cleanup_free_ size_t *ready = NULL;
	size_t n = 0, n_ready = 0;
	enum run_state state;
	int r;

	r = pipeline_run_plan_cached(cache, s, run->pipeline_id, run->schema_version, &dag, err);
	if (r == -EINVAL) {
		/* A schema that cannot be planned can never run: end the run, say why. */
		char msg[sizeof(err->msg) + 32];

		snprintf(msg, sizeof(msg), "cannot plan schema: %s", cd_error_message(err));
		r = store_run_set_state(s, run->pipeline_id, run->run, RUN_ERROR, msg, now, NULL);
		if (ret_state)
			*ret_state = RUN_ERROR;
		return r < 0 ? r : -EINVAL;
	}
	if (r < 0)
		return r;
	r = store_stage_list(s, run->pipeline_id, run->run, &stages, &n, err);
	if (r < 0)
		return r;
	ready = calloc(dag_n_nodes(dag), sizeof(*ready));
	if (!ready) {
		store_stage_list_free(stages, n);
		return -ENOMEM;
	}
	pipeline_run_step(dag, stages, n, run->attempt, ready, &n_ready, &state, &failed);
	for (size_t i = 0; i < n_ready && r >= 0; i++)
		r = store_action_enqueue_typed(s, run->pipeline_id, run->run,
					       node_name(dag_node(dag, ready[i])), run->attempt,
					       1u << node_type(dag_node(dag, ready[i])), now, now,
					       err);
	if (r >= 0 && state == RUN_FINISHED)
		r = store_run_set_state(s, run->pipeline_id, run->run, RUN_FINISHED, NULL, now,
					err);
	else if (r >= 0 && state == RUN_ERROR) {
		_cleanup_free_ char *msg = NULL;

		if (asprintf(&msg, "stage \"%s\": %s", failed->name,
			     failed->error_message ? failed->error_message : "failed") < 0)
			r = -ENOMEM;
		else
			r = store_run_set_state(s, run->pipeline_id, run->run, RUN_ERROR, msg, now,
						err);
	}
	if (r >= 0 && (state == RUN_FINISHED || state == RUN_ERROR)) {
		/* The audit log sees every run end, in the same transaction. */
		char subject[128];
		json_t *data = json_pack("{s:s, s:s?}", "state", run_state_to_string(state),
					 "failed_stage", failed ? failed->name : NULL);
		char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;

		snprintf(subject, sizeof(subject), "pipeline/%s/run/%lld", run->pipeline_id,
			 (long long)run->run);
		r = text ? store_event_append(s, "deployd", "pipeline.run.end", subject, text, NULL,
					      err) :
			   -ENOMEM;
		free(text);
		json_decref(data);
	}
	store_stage_list_free(stages, n);
	if (r >= 0 && ret_state)
		*ret_state = state;
	return r < 0 ? r : 0;
}

int pipeline_run_advance_in_tx(struct store *s, struct dag_cache *cache, const char *pipeline_id,
			       int64_t run, usec_t now, enum run_state *ret_state,
			       struct cd_error *err)
{
	struct store_run v = { 0 };
	enum run_state state = RUN_PENDING;
	int r;

	r = store_run_get(s, pipeline_id, run, &v, err);
	if (r >= 0) {
		state = v.state;
		if (v.state == RUN_IN_PROGRESS)
			r = advance_locked(s, cache, &v, now, &state, err);
	}
	store_run_release(&v);
	if (ret_state && (r >= 0 || r == -EINVAL))
		*ret_state = state;
	return r;
}

int pipeline_run_advance_cached(struct store *s, struct dag_cache *cache, const char *pipeline_id,
				int64_t run, usec_t now, enum run_state *ret_state,
				struct cd_error *err)
{
	enum run_state state = RUN_PENDING;
	int r, c;

	/* One transaction: the decision and its effects land together, and two deployds
	 * advancing the same run serialise on it. */
	r = store_begin(s, err);
	if (r < 0)
		return r;
	r = pipeline_run_advance_in_tx(s, cache, pipeline_id, run, now, &state, err);
	if (r < 0 && r != -EINVAL) {
		store_rollback(s);
		return r;
	}
	/* A failed commit has already rolled back and released the store. */
	c = store_commit(s, err);
	if (c < 0)
		return c;
	if (ret_state)
		*ret_state = state;
	if (run_state_is_terminal(state)) {
		int q = pipeline_run_start_next_cached(s, cache, pipeline_id, now, err);

		if (q < 0)
			return q;
	}
	return r;
}

int pipeline_run_advance(struct store *s, const char *pipeline_id, int64_t run, usec_t now,
			 enum run_state *ret_state, struct cd_error *err)
{
	return pipeline_run_advance_cached(s, NULL, pipeline_id, run, now, ret_state, err);
}

int pipeline_run_start_next_cached(struct store *s, struct dag_cache *cache,
				   const char *pipeline_id, usec_t now, struct cd_error *err)
{
	struct store_run v = { 0 };
	int r = store_run_start_next(s, pipeline_id, now, &v, err);
	int64_t run;

	if (r <= 0)
		return r;
	run = v.run;
	store_run_release(&v);
	r = pipeline_run_advance_cached(s, cache, pipeline_id, run, now, NULL, err);
	/* A run that failed to plan is ERROR now; the pipeline is not stuck. */
	return r < 0 && r != -EINVAL ? r : 1;
}

int pipeline_run_start_next(struct store *s, const char *pipeline_id, usec_t now,
			    struct cd_error *err)
{
	return pipeline_run_start_next_cached(s, NULL, pipeline_id, now, err);
}
