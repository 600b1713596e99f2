/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: arbitrary bytes through api_json_parse() + the Pipeline decoder. Accepted
 * pipelines must round-trip (to_json → from_json, same canonical text, same resolved
 * dependencies) and have a valid topological order; refusals must give a problem that
 * serialises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "api/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(struct problem *p)
{
	char *dump;

	if (p->oom)
		return;
	if (p->n_errors == 0 || (p->status != 400 && p->status != 413 && p->status != 422))
		abort();
	dump = problem_to_string(p);
	if (!dump)
		abort();
	free(dump);
}

static void check_order(const struct pipeline_schema *s)
{
	const size_t *topo = pipeline_topo_order(s);
	size_t *rank = calloc(s->n_stages, sizeof(size_t));
	unsigned char *seen = calloc(s->n_stages, 1);

	if (!rank || !seen)
		abort();
	for (size_t k = 0; k < s->n_stages; k++) {
		if (topo[k] >= s->n_stages || seen[topo[k]])
			abort(); /* not a permutation */
		seen[topo[k]] = 1;
		rank[topo[k]] = k;
	}
	for (size_t i = 0; i < s->n_stages; i++) {
		const size_t *deps;
		size_t n = pipeline_stage_deps(s, i, &deps);

		for (size_t k = 0; k < n; k++)
			if (deps[k] >= s->n_stages || deps[k] == i || rank[deps[k]] >= rank[i])
				abort(); /* a dependency ordered after its dependent */
		if (!s->stages[i].has_depends_on && n != (i > 0))
			abort(); /* implicit dependency on the previous stage */
	}
	free(rank);
	free(seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pipeline *a = NULL, *b = NULL;
	char *ta = NULL, *tb = NULL;
	struct problem p;
	int r;

	problem_init(&p, 0, NULL, NULL);
	r = pipeline_from_string((const char *)data, size, &a, &p);
	if (r < 0) {
		if (r != -ENOMEM)
			check_refusal(&p);
		problem_release(&p);
		return 0;
	}
	problem_release(&p);
	check_order(a->schema);

	if (pipeline_to_string(a, &ta) < 0)
		abort();
	problem_init(&p, 0, NULL, NULL);
	if (pipeline_from_string(ta, strlen(ta), &b, &p) < 0)
		abort();
	problem_release(&p);
	if (pipeline_to_string(b, &tb) < 0 || strcmp(ta, tb) != 0 || !pipeline_equal(a, b))
		abort();
	if (a->schema->n_stages != b->schema->n_stages)
		abort();
	for (size_t i = 0; i < a->schema->n_stages; i++) {
		const size_t *da, *db;
		size_t na = pipeline_stage_deps(a->schema, i, &da);

		if (pipeline_stage_deps(b->schema, i, &db) != na ||
		    (na && memcmp(da, db, na * sizeof(size_t)) != 0))
			abort();
	}
	free(ta);
	free(tb);
	pipeline_free(a);
	pipeline_free(b);
	return 0;
}
