/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/pipelines: the ActionPlanner on 10,000-stage schemas of several shapes, and its
 * baselines side by side in one run.
 *
 * Per shape the schema is built as a client would send it, validated once and stored in
 * canonical JSON (pipeline_schema_to_json), exactly what the runner later reads. Then, for each
 * iteration, interleaved so that every phase sees the same machine load:
 *   parse     json_loads() of the stored text (pipeline_run_plan() pays it before planning)
 *   validate  pipeline_schema_from_json_at(): the REST edge (api/pipeline.h), with its own
 *             name index and heap-based topological order
 *   plan      planner_plan(): Plan(schema) → ActionDAG
 *   plan, client key order: planner_plan() on the schema parsed from the text as the client
 *             built it (keys in insertion order, not sorted): not a path the runner takes, shown
 *             because the parsed canonical text plans measurably slower on some shapes
 *   plan+copy json_deep_copy() + planner_plan(): the previous approach (the DAG owned a deep copy
 *             of the schema; docs/pipelines.md), emulated
 *   naive     every k-th iteration: the same resolution + topological sort written the textbook
 *             O(n²) way (duplicate names and depends_on resolved by linear scans, Kahn's algorithm
 *             picking the next ready stage by scanning every stage and releasing dependents by
 *             scanning every edge). It checks less than planner_plan() (no params), so the ratio
 *             is, if anything, in the naive code's favour.
 * Timed: the call only; freeing the result is not timed (for any variant).
 * After timing, the results are checked: the planner's order is topological and its dependency
 * lists equal the validator's; the naive order equals the validator's (both keep list order
 * among ready stages).
 *
 * Usage: bench_planner [--stages N] [--iters N] [--naive-iters N] [--seed N] [--shape NAME]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/pipeline.h"
#include "central/planner.h"
#include "lib/macro.h"
#include "lib/str.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct samples {
	uint64_t *v;
	size_t n;
};

static void samples_sort(struct samples *s)
{
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
}

/* Call after samples_sort(). */
static double median_ms(const struct samples *s)
{
	return s->n ? (double)s->v[s->n / 2] / 1e6 : 0;
}

/* Nearest-rank p99 (a sample itself, no interpolation); call after samples_sort(). */
static double p99_ms(const struct samples *s)
{
	size_t k = (s->n * 99 + 99) / 100;

	return s->n ? (double)s->v[k ? k - 1 : 0] / 1e6 : 0;
}

/* ---- schemas ------------------------------------------------------------------------------- */

/* xorshift64*: a fixed seed gives the same random DAG on every machine. */
static uint64_t rng_state;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* A stage of a type chosen by i (all five types appear), with valid params. */
static json_t *stage_new(size_t i)
{
	char name[32];

	snprintf(name, sizeof(name), "stage-%zu", i);
	switch (i % 5) {
	case 0:
		return json_pack("{s:s, s:s, s:[s]}", "name", name, "type", "build",
				 "build_targets", "//svc/foo:server");
	case 1:
		return json_pack("{s:s, s:s, s:s}", "name", name, "type", "test", "test_target",
				 "//svc/foo:server_test");
	case 2:
		return json_pack("{s:s, s:s, s:{s:i}}", "name", name, "type", "wait", "wait",
				 "seconds", 0);
	case 3:
		return json_pack("{s:s, s:s}", "name", name, "type", "approval");
	default:
		return json_pack("{s:s, s:s, s:s}", "name", name, "type", "job", "spec",
				 "//svc/foo:spec");
	}
}

static int add_dep(json_t *stage, size_t dep)
{
	char name[32];
	json_t *a = json_object_get(stage, "depends_on");

	if (!a) {
		a = json_array();
		if (!a || json_object_set_new(stage, "depends_on", a) < 0)
			return -ENOMEM;
	}
	snprintf(name, sizeof(name), "stage-%zu", dep);
	return json_array_append_new(a, json_string(name)) < 0 ? -ENOMEM : 0;
}

static int set_root(json_t *stage)
{
	return json_object_set_new(stage, "depends_on", json_array()) < 0 ? -ENOMEM : 0;
}

enum shape {
	SHAPE_CHAIN_IMPLICIT,
	SHAPE_CHAIN_EXPLICIT,
	SHAPE_FAN,
	SHAPE_RANDOM,
	_SHAPE_MAX,
};

static const char *const shape_names[_SHAPE_MAX] = {
	[SHAPE_CHAIN_IMPLICIT] = "chain-implicit",
	[SHAPE_CHAIN_EXPLICIT] = "chain-explicit",
	[SHAPE_FAN] = "fan-out/fan-in",
	[SHAPE_RANDOM] = "random-dag",
};

/*
 * chain-implicit: no depends_on anywhere (each stage depends on the one before it).
 * chain-explicit: depends_on: [previous] on every stage but the first.
 * fan-out/fan-in: one root; M stages depending on it; joins of up to 256 of them each
 *   (PIPELINE_MAX_DEPENDS_ON); one final stage depending on every join. M is chosen so the
 *   total is n.
 * random-dag: stage 0 is a root; every later stage is a root with probability 1/64, otherwise
 *   depends on 1..4 distinct stages drawn uniformly from the earlier ones (fixed seed).
 */
static int build_schema(enum shape shape, size_t n, uint64_t seed, json_t **ret)
{
	json_t *a = json_array();
	size_t mid = 0, joins = 0;
	int r = 0;

	if (!a)
		return -ENOMEM;
	if (shape == SHAPE_FAN) {
		/* 1 + mid + ceil(mid / 256) + 1 == n */
		for (mid = n - 2;
		     mid > 0 &&
		     mid + (mid + PIPELINE_MAX_DEPENDS_ON - 1) / PIPELINE_MAX_DEPENDS_ON > n - 2;
		     mid--)
			;
		joins = n - 2 - mid;
	}
	rng_state = seed ? seed : 1;
	for (size_t i = 0; i < n && r >= 0; i++) {
		json_t *st = stage_new(i);

		if (!st || json_array_append_new(a, st) < 0) {
			r = -ENOMEM;
			break;
		}
		switch (shape) {
		case SHAPE_CHAIN_IMPLICIT:
			break;
		case SHAPE_CHAIN_EXPLICIT:
			if (i > 0)
				r = add_dep(st, i - 1);
			break;
		case SHAPE_FAN:
			if (i == 0)
				break;
			if (i <= mid)
				r = add_dep(st, 0);
			else if (i <= mid + joins) {
				size_t from = 1 + (i - mid - 1) * PIPELINE_MAX_DEPENDS_ON;

				for (size_t k = from;
				     k < from + PIPELINE_MAX_DEPENDS_ON && k <= mid && r >= 0; k++)
					r = add_dep(st, k);
			} else
				for (size_t k = mid + 1; k <= mid + joins && r >= 0; k++)
					r = add_dep(st, k);
			break;
		case SHAPE_RANDOM:
			if (i == 0)
				break;
			if (rng() % 64 == 0) {
				r = set_root(st);
				break;
			}
			{
				size_t want = 1 + rng() % 4, got = 0, picked[4];

				want = MIN(want, i);
				while (got < want && r >= 0) {
					size_t d = rng() % i;
					bool dup = false;

					for (size_t k = 0; k < got; k++)
						dup = dup || picked[k] == d;
					if (dup)
						continue;
					picked[got++] = d;
					r = add_dep(st, d);
				}
			}
			break;
		case _SHAPE_MAX:
			break;
		}
	}
	if (r < 0) {
		json_decref(a);
		return r;
	}
	*ret = a;
	return 0;
}

/* ---- the naive baseline -------------------------------------------------------------------- */

struct naive {
	size_t n;
	const char **names;
	size_t **deps;
	size_t *n_deps;
	size_t *order;
};

static void naive_free(struct naive *v)
{
	for (size_t i = 0; v->deps && i < v->n; i++)
		free(v->deps[i]);
	free(v->deps);
	free(v->n_deps);
	free(v->names);
	free(v->order);
	memset(v, 0, sizeof(*v));
}

static const char *const naive_types[] = { "build", "test", "job", "approval", "wait" };

/* -EINVAL for what it cannot order (unknown type or name, duplicate, cycle). */
static int naive_plan(const json_t *schema, struct naive *v)
{
	_cleanup_free_ size_t *indeg = NULL;
	_cleanup_free_ bool *done = NULL;
	size_t n = json_array_size(schema);

	v->n = n;
	v->names = calloc(n, sizeof(*v->names));
	v->deps = calloc(n, sizeof(*v->deps));
	v->n_deps = calloc(n, sizeof(*v->n_deps));
	v->order = calloc(n, sizeof(*v->order));
	indeg = calloc(n, sizeof(*indeg));
	done = calloc(n, sizeof(*done));
	if (!v->names || !v->deps || !v->n_deps || !v->order || !indeg || !done)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *st = json_array_get(schema, i);
		const char *type = json_string_value(json_object_get(st, "type"));
		bool known = false;

		v->names[i] = json_string_value(json_object_get(st, "name"));
		if (!v->names[i] || !type)
			return -EINVAL;
		for (size_t t = 0; t < ARRAY_SIZE(naive_types); t++)
			known = known || streq(type, naive_types[t]);
		if (!known)
			return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (streq(v->names[j], v->names[i]))
				return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *d = json_object_get(json_array_get(schema, i), "depends_on");

		if (!d) {
			if (i == 0)
				continue;
			v->deps[i] = malloc(sizeof(size_t));
			if (!v->deps[i])
				return -ENOMEM;
			v->deps[i][v->n_deps[i]++] = i - 1;
			continue;
		}
		v->deps[i] = calloc(MAX(json_array_size(d), 1), sizeof(size_t));
		if (!v->deps[i])
			return -ENOMEM;
		for (size_t k = 0; k < json_array_size(d); k++) {
			const char *name = json_string_value(json_array_get(d, k));
			size_t j = 0;

			while (j < n && !streq_ptr(v->names[j], name))
				j++;
			if (j == n)
				return -EINVAL;
			v->deps[i][v->n_deps[i]++] = j;
		}
	}
	for (size_t i = 0; i < n; i++)
		indeg[i] = v->n_deps[i];
	for (size_t k = 0; k < n; k++) {
		size_t u = 0;

		while (u < n && (done[u] || indeg[u] > 0))
			u++;
		if (u == n)
			return -EINVAL; /* cycle */
		done[u] = true;
		v->order[k] = u;
		for (size_t m = 0; m < n; m++)
			for (size_t e = 0; e < v->n_deps[m]; e++)
				if (v->deps[m][e] == u)
					indeg[m]--;
	}
	return 0;
}

/* ---- checks -------------------------------------------------------------------------------- */

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* The planner's dependencies equal the validator's, its order is topological, the naive order
 * equals the validator's. Returns 0 or -EBADMSG with a message on stderr. */
static int check(const char *shape, const struct pipeline_schema *s, const struct action_dag *dag,
		 const struct naive *nv)
{
	const struct action_node *const *topo = dag_topological(dag);
	size_t n = s->n_stages, *pos = calloc(n, sizeof(size_t));
	const size_t *api_topo = pipeline_topo_order(s);
	int r = 0;

	if (!pos)
		return -ENOMEM;
	if (dag_n_nodes(dag) != n || nv->n != n) {
		fprintf(stderr, "%s: stage counts differ\n", shape);
		r = -EBADMSG;
	}
	for (size_t k = 0; k < n && r == 0; k++)
		pos[node_index(topo[k])] = k;
	for (size_t i = 0; i < n && r == 0; i++) {
		const struct action_node *node = dag_node(dag, i), *const * deps;
		const size_t *want;
		size_t nd, nw = pipeline_stage_deps(s, i, &want), got[PIPELINE_MAX_DEPENDS_ON],
			   exp[PIPELINE_MAX_DEPENDS_ON];

		deps = node_dependencies(node, &nd);
		if (nd != nw || nd > PIPELINE_MAX_DEPENDS_ON) {
			fprintf(stderr, "%s: stage %zu: %zu dependencies, validator says %zu\n",
				shape, i, nd, nw);
			r = -EBADMSG;
			break;
		}
		for (size_t j = 0; j < nd; j++) {
			got[j] = node_index(deps[j]);
			exp[j] = want[j];
			if (pos[got[j]] >= pos[i]) {
				fprintf(stderr,
					"%s: planner order puts stage %zu before its "
					"dependency %zu\n",
					shape, i, got[j]);
				r = -EBADMSG;
			}
		}
		qsort(got, nd, sizeof(size_t), cmp_size);
		qsort(exp, nd, sizeof(size_t), cmp_size);
		if (r == 0 && memcmp(got, exp, nd * sizeof(size_t)) != 0) {
			fprintf(stderr, "%s: stage %zu: dependencies differ from the validator's\n",
				shape, i);
			r = -EBADMSG;
		}
	}
	for (size_t k = 0; k < n && r == 0; k++)
		if (nv->order[k] != api_topo[k]) {
			fprintf(stderr, "%s: naive order differs from the validator's at %zu\n",
				shape, k);
			r = -EBADMSG;
		}
	free(pos);
	return r;
}

/* ---- main ---------------------------------------------------------------------------------- */

enum phase {
	PH_PARSE,
	PH_VALIDATE,
	PH_PLAN,
	PH_PLAN_AS_SENT,
	PH_PLAN_COPY,
	PH_NAIVE,
	PH_RUNNER,
	_PH_MAX
};
static const char *const phase_names[_PH_MAX] = {
	[PH_PARSE] = "parse (json_loads of stored text)",
	[PH_VALIDATE] = "validate (api/pipeline.h)",
	[PH_PLAN] = "plan (planner_plan)",
	[PH_PLAN_AS_SENT] = "plan, client key order (not stored)",
	[PH_PLAN_COPY] = "baseline: deep copy + plan (previous)",
	[PH_NAIVE] = "baseline: naive O(n^2) Kahn",
	[PH_RUNNER] = "parse + plan (pipeline_run_plan path)",
};

struct goals {
	unsigned shapes, median_met, p99_met;
};

static int stored_text(const json_t *schema, char **ret, char **ret_sent,
		       struct pipeline_schema **ret_s)
{
	_cleanup_problem_ struct problem p = { 0 };
	_cleanup_pipeline_schema_ struct pipeline_schema *s = NULL;
	json_t *canon = NULL;
	int r;

	problem_init(&p, 422, NULL, NULL);
	r = pipeline_schema_from_json_at(schema, "", &s, &p);
	if (r < 0) {
		char *why = problem_to_string(&p);

		fprintf(stderr, "bench_planner: schema refused: %s\n", why ? why : "?");
		free(why);
		return r;
	}
	r = pipeline_schema_to_json(s, &canon);
	if (r < 0)
		return r;
	*ret = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(canon);
	*ret_sent = json_dumps(schema, JSON_COMPACT);
	if (!*ret || !*ret_sent)
		return -ENOMEM;
	*ret_s = TAKE_PTR(s);
	return 0;
}

static int run_shape(enum shape shape, size_t n, unsigned iters, unsigned naive_iters,
		     uint64_t seed, struct goals *goals)
{
	_cleanup_free_ char *text = NULL, *sent = NULL;
	_cleanup_pipeline_schema_ struct pipeline_schema *canon = NULL;
	struct samples sm[_PH_MAX] = { 0 };
	struct naive nv = { 0 };
	struct action_dag *last_dag = NULL;
	struct cd_error err = { 0 };
	json_t *schema = NULL;
	size_t edges = 0;
	unsigned naive_every = naive_iters ? MAX(iters / naive_iters, 1u) : 0;
	int r;

	r = build_schema(shape, n, seed, &schema);
	if (r < 0)
		return r;
	r = stored_text(schema, &text, &sent, &canon);
	json_decref(schema);
	if (r < 0)
		return r;
	for (size_t i = 0; i < canon->n_stages; i++)
		edges += canon->stages[i].n_deps;
	for (int p = 0; p < _PH_MAX; p++) {
		sm[p].v = calloc(iters, sizeof(uint64_t));
		if (!sm[p].v)
			return -ENOMEM;
	}

	for (unsigned it = 0; it < iters; it++) {
		_cleanup_problem_ struct problem p = { 0 };
		struct pipeline_schema *s = NULL;
		struct action_dag *dag = NULL, *dag2 = NULL;
		json_t *j, *copy;
		json_error_t jerr;
		uint64_t t0, t1, t2, t3, t4, t5;

		t0 = now_ns();
		j = json_loads(text, JSON_DECODE_ANY, &jerr);
		t1 = now_ns();
		if (!j) {
			fprintf(stderr, "bench_planner: %s\n", jerr.text);
			return -EBADMSG;
		}
		problem_init(&p, 422, NULL, NULL);
		t2 = now_ns();
		r = pipeline_schema_from_json_at(j, "", &s, &p);
		t3 = now_ns();
		if (r < 0) {
			fprintf(stderr, "bench_planner: validation failed on iteration %u\n", it);
			json_decref(j);
			return r;
		}
		t4 = now_ns();
		r = planner_plan("bench", j, &dag, &err);
		t5 = now_ns();
		if (r < 0) {
			fprintf(stderr, "bench_planner: plan: %s\n", cd_error_message(&err));
			pipeline_schema_free(s);
			json_decref(j);
			return r;
		}
		sm[PH_PARSE].v[sm[PH_PARSE].n++] = t1 - t0;
		sm[PH_VALIDATE].v[sm[PH_VALIDATE].n++] = t3 - t2;
		sm[PH_PLAN].v[sm[PH_PLAN].n++] = t5 - t4;
		sm[PH_RUNNER].v[sm[PH_RUNNER].n++] = (t1 - t0) + (t5 - t4);

		t0 = now_ns();
		copy = json_deep_copy(j);
		r = copy ? planner_plan("bench", copy, &dag2, &err) : -ENOMEM;
		t1 = now_ns();
		json_decref(copy);
		dag_free(dag2);
		if (r < 0)
			return r;
		sm[PH_PLAN_COPY].v[sm[PH_PLAN_COPY].n++] = t1 - t0;

		copy = json_loads(sent, JSON_DECODE_ANY, &jerr);
		dag2 = NULL;
		t0 = now_ns();
		r = copy ? planner_plan("bench", copy, &dag2, &err) : -ENOMEM;
		t1 = now_ns();
		json_decref(copy);
		dag_free(dag2);
		if (r < 0)
			return r;
		sm[PH_PLAN_AS_SENT].v[sm[PH_PLAN_AS_SENT].n++] = t1 - t0;

		if (naive_every && it % naive_every == 0 && sm[PH_NAIVE].n < naive_iters) {
			naive_free(&nv);
			t0 = now_ns();
			r = naive_plan(j, &nv);
			t1 = now_ns();
			if (r < 0) {
				fprintf(stderr, "bench_planner: naive plan failed: %s\n",
					strerror(-r));
				return r;
			}
			sm[PH_NAIVE].v[sm[PH_NAIVE].n++] = t1 - t0;
		}

		pipeline_schema_free(s);
		dag_free(last_dag);
		last_dag = dag;
		json_decref(j);
	}

	if (last_dag && nv.order) {
		r = check(shape_names[shape], canon, last_dag, &nv);
		if (r < 0)
			return r;
	}
	dag_free(last_dag);
	naive_free(&nv);

	printf("%s: %zu stages, %zu edges, stored schema %zu bytes\n", shape_names[shape],
	       canon->n_stages, edges, strlen(text));
	for (int p = 0; p < _PH_MAX; p++) {
		if (!sm[p].n)
			continue;
		samples_sort(&sm[p]);
		printf("  %-40s median %9.3f ms  p99 %9.3f ms  (n=%zu)\n", phase_names[p],
		       median_ms(&sm[p]), p99_ms(&sm[p]), sm[p].n);
	}
	{
		double plan = median_ms(&sm[PH_PLAN]);

		if (sm[PH_NAIVE].n)
			printf("  ratio naive / plan (medians)             %9.1fx\n",
			       median_ms(&sm[PH_NAIVE]) / plan);
		printf("  ratio deep-copy+plan / plan (medians)    %9.2fx\n",
		       median_ms(&sm[PH_PLAN_COPY]) / plan);
		double p99 = p99_ms(&sm[PH_PLAN]);

		printf("  goal plan < 10 ms: median %s (%.3f ms), p99 %s (%.3f ms)\n",
		       plan < 10 ? "met" : "NOT met", plan, p99 < 10 ? "met" : "NOT met", p99);
		goals->shapes++;
		goals->median_met += plan < 10;
		goals->p99_met += p99 < 10;
	}
	for (int p = 0; p < _PH_MAX; p++)
		free(sm[p].v);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "stages", required_argument, NULL, 's' },
		{ "iters", required_argument, NULL, 'i' },
		{ "naive-iters", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 'S' },
		{ "shape", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	unsigned stages = 10000, iters = 100, naive_iters = 3, seed = 42;
	const char *only = NULL;
	struct goals goals = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		int r = 0;

		switch (c) {
		case 's':
			r = parse_uint(optarg, 50000, &stages);
			if (r >= 0 && stages < 3)
				r = -ERANGE;
			break;
		case 'i':
			r = parse_uint(optarg, 1000000, &iters);
			if (r >= 0 && iters == 0)
				r = -ERANGE;
			break;
		case 'n':
			r = parse_uint(optarg, 1000, &naive_iters);
			break;
		case 'S':
			r = parse_uint(optarg, UINT32_MAX, &seed);
			break;
		case 'x':
			only = optarg;
			r = -EINVAL;
			for (enum shape s = 0; s < _SHAPE_MAX; s++)
				if (streq(optarg, shape_names[s]))
					r = 0;
			break;
		default:
			r = -EINVAL;
		}
		if (r < 0 || c == 'h') {
			fprintf(stderr, "usage: bench_planner [--stages N (>= 3)] [--iters N] "
					"[--naive-iters N] [--seed N]\n"
					"       [--shape chain-implicit|chain-explicit|"
					"fan-out/fan-in|random-dag]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	printf("planner: %u stages per schema, %u iterations per shape (naive baseline %u), "
	       "seed %u; times are per call, frees not timed\n",
	       stages, iters, naive_iters, seed);
	for (enum shape s = 0; s < _SHAPE_MAX; s++) {
		int r;

		if (only && !streq(only, shape_names[s]))
			continue;
		r = run_shape(s, stages, iters, naive_iters, seed, &goals);

		if (r < 0) {
			fprintf(stderr, "bench_planner: %s: %s\n", shape_names[s], strerror(-r));
			return 1;
		}
		fflush(stdout);
	}
	printf("planner goal (plan < 10 ms on %u stages): median met on %u of %u shapes, p99 on "
	       "%u of %u\n",
	       stages, goals.median_met, goals.shapes, goals.p99_met, goals.shapes);
	return 0;
}
