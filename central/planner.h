/* SPDX-License-Identifier: Apache-2.0 */
/*
 * planner.h — the seed's ActionPlanner: Plan(schema) → ActionDAG of ActionNodes.
 * Owns the translation of a stored pipeline schema (the JSON array of stages) into a DAG with
 * resolved dependencies (implicit "depends on the stage before" or explicit depends_on), a
 * topological order and name lookup. Pure: no I/O, no store, no clock. It does not validate
 * targets or produce the 422 list (api/pipeline.h does that at the REST edge); it refuses any
 * schema it cannot plan with -EINVAL and one message.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"
#include "lib/macro.h"

/* Stage types of the seed plus ours. ACTION_START is the synthetic node dag_start() returns:
 * it has no dependencies and its next actions are the stages without dependencies. */
enum action_type {
	ACTION_START,
	ACTION_BUILD,
	ACTION_TEST,
	ACTION_JOB,
	ACTION_APPROVAL,
	ACTION_WAIT,
	_ACTION_TYPE_MAX,
};

/* "build", "test", "job", "approval", "wait" ("start" for ACTION_START); NULL when out of range. */
const char *action_type_to_string(enum action_type t);
/* Stage types only (never ACTION_START). Returns 0 or -EINVAL. */
int action_type_from_string(const char *s, enum action_type *ret);

/* The seed's Action message: what is placed in the action queue. Strings are borrowed from the
 * DAG (valid while it lives); run and attempt are filled in by whoever enqueues. */
struct action {
	const char *pipeline_id;
	const char *schema_node_name;
	uint64_t run;
	unsigned attempt;
};

struct action_dag;
struct action_node;

/* Caps that keep a hostile schema from costing more than its body size already did. */
#define PLANNER_MAX_STAGES 100000
#define PLANNER_MAX_NAME 256

/*
 * Plan(schema): schema is the JSON array of stage objects exactly as stored ({name, type,
 * depends_on?, type params inline}). The DAG takes a reference (json_incref) instead of a copy
 * (a deep copy was 80% of planning time): the caller may drop its own reference at once but must
 * not modify schema while the DAG lives. pipeline_id (may be NULL) is copied and returned in
 * node_action(). A 10,000-stage chain plans in about 2 ms here.
 *
 * Checked (each failure -EINVAL, message in err): array of objects, 1..PLANNER_MAX_STAGES
 * stages, non-empty unique names, known type, params of the right JSON type for the stage type
 * (build_targets non-empty array of strings, test_target string, spec string, wait.seconds
 * non-negative integer for wait: {"wait": {"seconds": N}} as api/pipeline.h), depends_on an array of distinct known names, no cycle (the
 * message names it: "a -> b -> a", read "a depends on b ..."). -ENOMEM on allocation failure.
 */
int planner_plan(const char *pipeline_id, const json_t *schema, struct action_dag **ret,
		 struct cd_error *err);
/*
 * A DAG is immutable once planner_plan() returned it, so several threads may read one DAG at
 * once (jansson 2.14's refcounts are atomic and its getters do not write). It is reference
 * counted: dag_ref() takes another reference (returns dag), dag_free() drops one and frees on
 * the last; both are thread-safe. A caller that never calls dag_ref() sees plain ownership.
 */
struct action_dag *dag_ref(struct action_dag *dag);
struct action_dag *dag_free(struct action_dag *dag);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct action_dag *, dag_free);
#define _cleanup_dag_ _cleanup_(dag_freep)

/* GetStart(): the synthetic start node (never NULL). */
const struct action_node *dag_start(const struct action_dag *dag);
/* FindNode(schema_node): the stage with that name, or NULL. O(1). */
const struct action_node *dag_find_node(const struct action_dag *dag, const char *name);
/* Stages in schema order: dag_node(dag, i) for i < dag_n_nodes(dag). */
size_t dag_n_nodes(const struct action_dag *dag);
const struct action_node *dag_node(const struct action_dag *dag, size_t i);
/* Stages in a topological order (dependencies first; ties keep schema order). Array owned by
 * the DAG, dag_n_nodes() long. */
const struct action_node *const *dag_topological(const struct action_dag *dag);
const char *dag_pipeline_id(const struct action_dag *dag);

enum action_type node_type(const struct action_node *n);
/* Stage name; "" for the start node. */
const char *node_name(const struct action_node *n);
/* Params(): the stage's JSON object (type params are inline members). Borrowed from the DAG;
 * NULL for the start node. */
const json_t *node_params(const struct action_node *n);
/* GetAction(): {pipeline_id, schema_node_name} with run = attempt = 0. */
struct action node_action(const struct action_node *n);
/* GetDependencies() / GetNextActions(): arrays owned by the DAG; *ret_n is set (may be 0).
 * Order: depends_on order for dependencies; schema order for next actions. The start node's
 * next actions are the stages without dependencies; those stages list no dependency (the start
 * node is not one). */
const struct action_node *const *node_dependencies(const struct action_node *n, size_t *ret_n);
const struct action_node *const *node_next_actions(const struct action_node *n, size_t *ret_n);
/* Position in schema order (dag_node(dag, node_index(n)) == n); SIZE_MAX for the start node. */
size_t node_index(const struct action_node *n);

/* Typed params (borrowed; NULL / 0 when the member is absent or the type is different). */
const char *node_test_target(const struct action_node *n);
const char *node_spec(const struct action_node *n);
size_t node_n_build_targets(const struct action_node *n);
const char *node_build_target(const struct action_node *n, size_t i);
int64_t node_wait_seconds(const struct action_node *n);
/* Optional per-stage timeout_s (positive integer) or 0 when absent. */
int64_t node_timeout_seconds(const struct action_node *n);
