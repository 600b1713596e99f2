/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pipeline.h — the Pipeline resource {name, owner, schema: [stage], repo?, branch?} exactly as in
 * the seed's example, and its schema (the stage list) on its own (PutSchema bodies). Owns the
 * JSON codec and validation at the REST edge: every problem is reported with a JSON pointer
 * (unique names, known types, params present/well-formed/of the right type, depends_on known,
 * no self-dependency, no cycle — the message names it). Resolves the dependency lists and a
 * topological order. Does not plan or run anything: central/planner and the runner do.
 *
 * Stage: {name, type, depends_on?, timeout_s?, <params of its type>} with params inline:
 *   build:    build_targets: [Target, ...] (1..256, unique)
 *   test:     test_target: Target
 *   job:      spec: Target (its artifact at the run's commit holds a JobSpec; no "@commit")
 *   approval: (no params)       wait: wait: {seconds: 0..604800}
 * Dependencies: a stage without depends_on depends on the stage listed before it (the first on
 * none); "depends_on": [] explicitly means no dependency (starts in parallel with the first).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/names.h"
#include "api/problem.h"

#define PIPELINE_NAME_MAX 128
#define PIPELINE_OWNER_MAX 64 /* [A-Za-z0-9_.-] */
#define PIPELINE_REPO_MAX 4096
#define PIPELINE_BRANCH_MAX 255
#define PIPELINE_DEFAULT_BRANCH "main"
#define PIPELINE_MAX_STAGES 100000 /* the 1 MiB body cap is the practical bound */
#define PIPELINE_STAGE_NAME_MAX 256
#define PIPELINE_MAX_DEPENDS_ON 256
#define PIPELINE_MAX_BUILD_TARGETS 256
#define PIPELINE_MAX_WAIT_S 604800 /* 7 days */
#define PIPELINE_MAX_TIMEOUT_S 604800

enum pipeline_stage_type {
	PIPELINE_STAGE_BUILD,
	PIPELINE_STAGE_TEST,
	PIPELINE_STAGE_JOB,
	PIPELINE_STAGE_APPROVAL,
	PIPELINE_STAGE_WAIT,
	_PIPELINE_STAGE_MAX,
};

struct pipeline_stage {
	char *name; /* 1..PIPELINE_STAGE_NAME_MAX bytes, UTF-8, no control characters */
	enum pipeline_stage_type type;
	bool has_depends_on; /* depends_on was given (possibly []) */
	char **depends_on;   /* as given, NULL-terminated; NULL when !has_depends_on */
	size_t *deps;	     /* resolved dependencies: indices into the schema's stages */
	size_t n_deps;
	uint32_t timeout_s;	      /* 0 = not set (the runner's default applies) */
	struct target *build_targets; /* build */
	size_t n_build_targets;
	struct target test_target; /* test */
	struct target spec;	   /* job */
	uint32_t wait_seconds;	   /* wait */
};

struct pipeline_schema {
	struct pipeline_stage *stages; /* in list order */
	size_t n_stages;
	size_t *topo; /* n_stages indices: dependencies first, ties in list order */
};

struct pipeline {
	char *name;   /* 1..PIPELINE_NAME_MAX bytes, no control characters */
	char *owner;  /* team */
	char *repo;   /* git URL or path to poll; NULL when not polling */
	char *branch; /* NULL iff repo is NULL; defaults to "main" when repo is given */
	struct pipeline_schema *schema;
};

/*
 * Decode and validate. base is the pointer of j in the body ("" for the body itself; the stages
 * of a pipeline are at "/schema/<i>"). Every problem goes into p (initialised by the caller) and
 * then -EINVAL with p marked 422; -ENOMEM on allocation failure. *ret written only on success.
 */
int pipeline_from_json_at(const json_t *j, const char *base, struct pipeline **ret,
			  struct problem *p);
static inline int pipeline_from_json(const json_t *j, struct pipeline **ret, struct problem *p)
{
	return pipeline_from_json_at(j, "", ret, p);
}
int pipeline_from_string(const char *buf, size_t len, struct pipeline **ret, struct problem *p);
/* The schema alone: a JSON array of stages (PutSchema). */
int pipeline_schema_from_json_at(const json_t *j, const char *base, struct pipeline_schema **ret,
				 struct problem *p);
int pipeline_schema_from_string(const char *buf, size_t len, struct pipeline_schema **ret,
				struct problem *p);

/* Canonical JSON (stage order kept, depends_on only where it was given, targets in canonical
 * spelling). 0, -ENOMEM, or -EINVAL for a struct the decoder would not have produced. */
int pipeline_to_json(const struct pipeline *pl, json_t **ret);
int pipeline_schema_to_json(const struct pipeline_schema *s, json_t **ret);
/* Canonical text (sorted keys, compact). */
int pipeline_to_string(const struct pipeline *pl, char **ret);
bool pipeline_equal(const struct pipeline *a, const struct pipeline *b);

void pipeline_schema_free(struct pipeline_schema *s);
void pipeline_free(struct pipeline *pl);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct pipeline *, pipeline_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct pipeline_schema *, pipeline_schema_free);
#define _cleanup_pipeline_ _cleanup_(pipeline_freep)
#define _cleanup_pipeline_schema_ _cleanup_(pipeline_schema_freep)

/* Index of the stage called name, or -ENOENT. O(n). */
int pipeline_find_stage(const struct pipeline_schema *s, const char *name);
/* Resolved dependencies of stage i (implicit or explicit): *ret_deps borrows from s. Returns
 * the count. i must be < n_stages. */
size_t pipeline_stage_deps(const struct pipeline_schema *s, size_t i, const size_t **ret_deps);
/* A topological order (dependencies first, ties in list order); n_stages long, borrowed. */
const size_t *pipeline_topo_order(const struct pipeline_schema *s);

const char *pipeline_stage_type_to_string(enum pipeline_stage_type t);
int pipeline_stage_type_from_string(const char *s, enum pipeline_stage_type *ret);
