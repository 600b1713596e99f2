/* SPDX-License-Identifier: Apache-2.0 */
#include "central/planner.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/str.h"

struct action_node {
	struct action_dag *dag;
	size_t index; /* SIZE_MAX for the start node */
	enum action_type type;
	const char *name; /* borrowed from dag->schema */
	const json_t *params;
	const struct action_node **deps;
	size_t n_deps;
	const struct action_node **next;
	size_t n_next;
};

struct action_dag {
	atomic_uint refs; /* dag_ref()/dag_free(); the DAG is immutable once planned */
	json_t *schema;	  /* a reference: owns every string the nodes point to */
	char *pipeline_id;
	struct action_node start;
	struct action_node *nodes;
	size_t n_nodes;
	const struct action_node **topo;
	const struct action_node **edge_pool; /* deps and next arrays of every node */
	size_t *table;			      /* open addressing: node index + 1, 0 = empty */
	size_t table_mask;
};

static const char *const type_names[_ACTION_TYPE_MAX] = {
	[ACTION_START] = "start", [ACTION_BUILD] = "build",	  [ACTION_TEST] = "test",
	[ACTION_JOB] = "job",	  [ACTION_APPROVAL] = "approval", [ACTION_WAIT] = "wait",
};

const char *action_type_to_string(enum action_type t)
{
	if ((unsigned)t >= _ACTION_TYPE_MAX)
		return NULL;
	return type_names[t];
}

int action_type_from_string(const char *s, enum action_type *ret)
{
	if (!s)
		return -EINVAL;
	for (enum action_type t = ACTION_BUILD; t < _ACTION_TYPE_MAX; t++)
		if (streq(s, type_names[t])) {
			*ret = t;
			return 0;
		}
	return -EINVAL;
}

/* FNV-1a: names are short and attacker-chosen only by their owner; the table is sized 2n+ so
 * probe chains stay short. */
static size_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

static const struct action_node *table_find(const struct action_dag *dag, const char *name)
{
	for (size_t i = name_hash(name) & dag->table_mask;; i = (i + 1) & dag->table_mask) {
		size_t slot = dag->table[i];

		if (slot == 0)
			return NULL;
		if (streq(dag->nodes[slot - 1].name, name))
			return &dag->nodes[slot - 1];
	}
}

/* Returns false when the name is already present. */
static bool table_insert(struct action_dag *dag, size_t index)
{
	const char *name = dag->nodes[index].name;

	for (size_t i = name_hash(name) & dag->table_mask;; i = (i + 1) & dag->table_mask) {
		size_t slot = dag->table[i];

		if (slot == 0) {
			dag->table[i] = index + 1;
			return true;
		}
		if (streq(dag->nodes[slot - 1].name, name))
			return false;
	}
}

struct action_dag *dag_ref(struct action_dag *dag)
{
	if (dag)
		atomic_fetch_add_explicit(&dag->refs, 1, memory_order_relaxed);
	return dag;
}

struct action_dag *dag_free(struct action_dag *dag)
{
	if (!dag)
		return NULL;
	/* acq_rel: every reader's last use happens before the thread that frees it. */
	if (atomic_fetch_sub_explicit(&dag->refs, 1, memory_order_acq_rel) > 1)
		return NULL;
	json_decref(dag->schema);
	free(dag->pipeline_id);
	free(dag->nodes);
	free(dag->topo);
	free(dag->edge_pool);
	free(dag->table);
	free(dag);
	return NULL;
}

static bool is_string_array(const json_t *a, bool need_nonempty)
{
	size_t i;
	const json_t *v;

	if (!json_is_array(a) || (need_nonempty && json_array_size(a) == 0))
		return false;
	json_array_foreach(a, i, v)
		if (!json_is_string(v) || json_string_length(v) == 0)
			return false;
	return true;
}

static int check_params(const json_t *stage, enum action_type type, size_t i, struct cd_error *err)
{
	const json_t *v, *t;

	switch (type) {
	case ACTION_BUILD:
		if (!is_string_array(json_object_get(stage, "build_targets"), true))
			return cd_error_set(err, -EINVAL,
					    "stage %zu: build_targets must be a non-empty array of "
					    "targets",
					    i);
		break;
	case ACTION_TEST:
		v = json_object_get(stage, "test_target");
		if (!json_is_string(v) || json_string_length(v) == 0)
			return cd_error_set(err, -EINVAL, "stage %zu: test_target must be a target",
					    i);
		break;
	case ACTION_JOB:
		v = json_object_get(stage, "spec");
		if (!json_is_string(v) || json_string_length(v) == 0)
			return cd_error_set(err, -EINVAL, "stage %zu: spec must be a target", i);
		break;
	case ACTION_WAIT:
		v = json_object_get(json_object_get(stage, "wait"), "seconds");
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return cd_error_set(
				err, -EINVAL,
				"stage %zu: wait.seconds must be a non-negative integer", i);
		break;
	case ACTION_APPROVAL:
	case ACTION_START:
	case _ACTION_TYPE_MAX:
		break;
	}
	t = json_object_get(stage, "timeout_s");
	if (t && (!json_is_integer(t) || json_integer_value(t) <= 0))
		return cd_error_set(err, -EINVAL, "stage %zu: timeout_s must be a positive integer",
				    i);
	return 0;
}

/* First pass: names, types, params; fills nodes[] and the name table; counts edges. */
static int plan_nodes(struct action_dag *dag, size_t *ret_edges, struct cd_error *err)
{
	size_t edges = 0;

	for (size_t i = 0; i < dag->n_nodes; i++) {
		const json_t *stage = json_array_get(dag->schema, i), *deps;
		struct action_node *n = &dag->nodes[i];
		const char *name, *type;
		int r;

		if (!json_is_object(stage))
			return cd_error_set(err, -EINVAL, "stage %zu: not an object", i);
		name = json_string_value(json_object_get(stage, "name"));
		if (!name || !*name)
			return cd_error_set(err, -EINVAL, "stage %zu: name missing or empty", i);
		if (strlen(name) > PLANNER_MAX_NAME)
			return cd_error_set(err, -EINVAL, "stage %zu: name longer than %d bytes", i,
					    PLANNER_MAX_NAME);
		type = json_string_value(json_object_get(stage, "type"));
		n->dag = dag;
		n->index = i;
		n->name = name;
		n->params = stage;
		if (action_type_from_string(type, &n->type) < 0)
			return cd_error_set(err, -EINVAL, "stage \"%s\": unknown type \"%s\"", name,
					    type ? type : "(missing)");
		r = check_params(stage, n->type, i, err);
		if (r < 0)
			return r;
		if (!table_insert(dag, i))
			return cd_error_set(err, -EINVAL, "stage %zu: duplicate name \"%s\"", i,
					    name);
		deps = json_object_get(stage, "depends_on");
		if (deps) {
			if (!is_string_array(deps, false))
				return cd_error_set(err, -EINVAL,
						    "stage \"%s\": depends_on must be an array of "
						    "stage names",
						    name);
			edges += json_array_size(deps);
		} else if (i > 0)
			edges++;
	}
	*ret_edges = edges;
	return 0;
}

/* Second pass: resolve depends_on into deps[] (pointers into the pool), then count and fill
 * next[] so that next actions come out in schema order. */
static int plan_edges(struct action_dag *dag, size_t edges, struct cd_error *err)
{
	const struct action_node **pool;
	size_t used = 0;

	/* deps + next for every edge, plus the start node's next (at most n_nodes). */
	pool = calloc(2 * edges + dag->n_nodes, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	dag->edge_pool = pool;

	for (size_t i = 0; i < dag->n_nodes; i++) {
		struct action_node *n = &dag->nodes[i];
		const json_t *deps = json_object_get(n->params, "depends_on");

		n->deps = pool + used;
		if (!deps) {
			if (i > 0)
				pool[used + n->n_deps++] = &dag->nodes[i - 1];
		} else {
			size_t k;
			const json_t *v;

			json_array_foreach(deps, k, v) {
				const char *dn = json_string_value(v);
				const struct action_node *d = table_find(dag, dn);

				if (!d)
					return cd_error_set(
						err, -EINVAL,
						"stage \"%s\": depends_on names unknown "
						"stage \"%s\"",
						n->name, dn);
				for (size_t j = 0; j < n->n_deps; j++)
					if (n->deps[j] == d)
						return cd_error_set(
							err, -EINVAL,
							"stage \"%s\": depends_on lists "
							"\"%s\" twice",
							n->name, dn);
				pool[used + n->n_deps++] = d;
			}
		}
		used += n->n_deps;
		for (size_t j = 0; j < n->n_deps; j++)
			((struct action_node *)n->deps[j])->n_next++;
	}

	for (size_t i = 0; i < dag->n_nodes; i++) {
		struct action_node *n = &dag->nodes[i];

		n->next = pool + used;
		used += n->n_next;
		n->n_next = 0; /* refilled below */
	}
	dag->start.next = pool + used;
	for (size_t i = 0; i < dag->n_nodes; i++) {
		struct action_node *n = &dag->nodes[i];

		if (n->n_deps == 0)
			dag->start.next[dag->start.n_next++] = n;
		for (size_t j = 0; j < n->n_deps; j++) {
			struct action_node *d = (struct action_node *)n->deps[j];

			d->next[d->n_next++] = n;
		}
	}
	return 0;
}

/* Name a cycle among the nodes Kahn's algorithm could not order (indeg > 0): each of them has a
 * dependency that is also unordered, so following dependencies must revisit a node. */
static int report_cycle(struct action_dag *dag, const size_t *indeg, struct cd_error *err)
{
	_cleanup_free_ size_t *seen = NULL; /* step number + 1 at which a node was visited */
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	const struct action_node *n = NULL, *m;
	size_t step = 0;

	for (size_t i = 0; i < dag->n_nodes && !n; i++)
		if (indeg[i] > 0)
			n = &dag->nodes[i];
	if (!n)
		return cd_error_set(err, -EINVAL, "cycle in depends_on");
	seen = calloc(dag->n_nodes, sizeof(*seen));
	if (!seen)
		return -ENOMEM;
	while (!seen[n->index]) {
		seen[n->index] = ++step;
		for (size_t j = 0; j < n->n_deps; j++)
			if (indeg[n->deps[j]->index] > 0) {
				n = n->deps[j];
				break;
			}
	}
	/* n is on the cycle; walk it once more to print it. */
	m = n;
	do {
		if (strbuf_addf(&sb, "%s -> ", m->name) < 0)
			return -ENOMEM;
		for (size_t j = 0; j < m->n_deps; j++)
			if (indeg[m->deps[j]->index] > 0) {
				m = m->deps[j];
				break;
			}
	} while (m != n && sb.len < 400);
	if (strbuf_adds(&sb, m == n ? n->name : "...") < 0)
		return -ENOMEM;
	return cd_error_set(err, -EINVAL, "cycle in depends_on: %s", sb.buf);
}

/* Kahn's algorithm; the FIFO starts with roots in schema order and appends in next[] order,
 * which keeps the result deterministic. */
static int plan_topo(struct action_dag *dag, struct cd_error *err)
{
	_cleanup_free_ size_t *indeg = NULL;
	size_t head = 0, tail = 0;

	dag->topo = calloc(dag->n_nodes, sizeof(*dag->topo));
	indeg = calloc(dag->n_nodes, sizeof(*indeg));
	if (!dag->topo || !indeg)
		return -ENOMEM;
	for (size_t i = 0; i < dag->n_nodes; i++) {
		indeg[i] = dag->nodes[i].n_deps;
		if (indeg[i] == 0)
			dag->topo[tail++] = &dag->nodes[i];
	}
	while (head < tail) {
		const struct action_node *n = dag->topo[head++];

		for (size_t j = 0; j < n->n_next; j++)
			if (--indeg[n->next[j]->index] == 0)
				dag->topo[tail++] = n->next[j];
	}
	if (tail != dag->n_nodes)
		return report_cycle(dag, indeg, err);
	return 0;
}

static struct action_dag *dag_alloc(size_t n_nodes)
{
	struct action_dag *dag = calloc(1, sizeof(*dag));

	if (dag) {
		atomic_init(&dag->refs, 1);
		dag->n_nodes = n_nodes;
	}
	return dag;
}

int planner_plan(const char *pipeline_id, const json_t *schema, struct action_dag **ret,
		 struct cd_error *err)
{
	_cleanup_dag_ struct action_dag *dag = NULL;
	size_t n, cap = 4, edges = 0;
	int r;

	if (!json_is_array(schema))
		return cd_error_set(err, -EINVAL, "schema must be an array of stages");
	n = json_array_size(schema);
	if (n == 0)
		return cd_error_set(err, -EINVAL, "schema has no stages");
	if (n > PLANNER_MAX_STAGES)
		return cd_error_set(err, -EINVAL, "schema has more than %d stages",
				    PLANNER_MAX_STAGES);

	dag = dag_alloc(n);
	if (!dag)
		return -ENOMEM;
	/* Read-only from here on (contract in planner.h). */
	dag->schema = json_incref((json_t *)schema);
	if (pipeline_id)
		dag->pipeline_id = strdup(pipeline_id);
	dag->nodes = calloc(n, sizeof(*dag->nodes));
	while (cap < 2 * n)
		cap <<= 1;
	dag->table = calloc(cap, sizeof(*dag->table));
	if (!dag->schema || (pipeline_id && !dag->pipeline_id) || !dag->nodes || !dag->table)
		return -ENOMEM;
	dag->table_mask = cap - 1;
	dag->start = (struct action_node){
		.dag = dag, .index = SIZE_MAX, .type = ACTION_START, .name = ""
	};

	r = plan_nodes(dag, &edges, err);
	if (r < 0)
		return r;
	r = plan_edges(dag, edges, err);
	if (r < 0)
		return r;
	r = plan_topo(dag, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(dag);
	return 0;
}

const struct action_node *dag_start(const struct action_dag *dag)
{
	return &dag->start;
}

const struct action_node *dag_find_node(const struct action_dag *dag, const char *name)
{
	if (!name)
		return NULL;
	return table_find(dag, name);
}

size_t dag_n_nodes(const struct action_dag *dag)
{
	return dag->n_nodes;
}

const struct action_node *dag_node(const struct action_dag *dag, size_t i)
{
	return i < dag->n_nodes ? &dag->nodes[i] : NULL;
}

const struct action_node *const *dag_topological(const struct action_dag *dag)
{
	return dag->topo;
}

const char *dag_pipeline_id(const struct action_dag *dag)
{
	return dag->pipeline_id;
}

enum action_type node_type(const struct action_node *n)
{
	return n->type;
}

const char *node_name(const struct action_node *n)
{
	return n->name;
}

const json_t *node_params(const struct action_node *n)
{
	return n->params;
}

struct action node_action(const struct action_node *n)
{
	return (struct action){ .pipeline_id = n->dag->pipeline_id, .schema_node_name = n->name };
}

const struct action_node *const *node_dependencies(const struct action_node *n, size_t *ret_n)
{
	*ret_n = n->n_deps;
	return n->deps;
}

const struct action_node *const *node_next_actions(const struct action_node *n, size_t *ret_n)
{
	*ret_n = n->n_next;
	return n->next;
}

size_t node_index(const struct action_node *n)
{
	return n->index;
}

const char *node_test_target(const struct action_node *n)
{
	return n->params ? json_string_value(json_object_get(n->params, "test_target")) : NULL;
}

const char *node_spec(const struct action_node *n)
{
	return n->params ? json_string_value(json_object_get(n->params, "spec")) : NULL;
}

size_t node_n_build_targets(const struct action_node *n)
{
	return n->params ? json_array_size(json_object_get(n->params, "build_targets")) : 0;
}

const char *node_build_target(const struct action_node *n, size_t i)
{
	if (!n->params)
		return NULL;
	return json_string_value(json_array_get(json_object_get(n->params, "build_targets"), i));
}

int64_t node_wait_seconds(const struct action_node *n)
{
	const json_t *v =
		n->params ? json_object_get(json_object_get(n->params, "wait"), "seconds") : NULL;

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

int64_t node_timeout_seconds(const struct action_node *n)
{
	const json_t *v = n->params ? json_object_get(n->params, "timeout_s") : NULL;

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}
