/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store_pipelines.h — the pipelines area's durable state behind central/store.h: pipelines,
 * schema versions (draft | active | inactive), runs, the seed's ActionState table (+ run and
 * attempt) and the action queue with leases. The only pipelines code that speaks SQL.
 * Does not own policy (what runs next, retries, timeouts: pipeline_run.c and runner.c).
 *
 * Queue contract: an action is {pipeline_id, run, stage, attempt}. Enqueueing is idempotent:
 * the ActionState row of (run, stage, attempt) is created once and only then queued, so an
 * attempt that finished is never queued again. A claim takes a lease (owner + expiry + a fencing
 * token); an expired lease is claimable by anyone, so a crashed deployd loses nothing. Every
 * later call on a claimed action names its token and fails with -ESTALE once the lease was lost
 * (re-claimed, cancelled), so a slow runner can never overwrite a newer one's result.
 *
 * Thread-safety and ownership as in store.h. Times are realtime usec (the lease must mean the
 * same on every deployd sharing the database).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "central/action.h"
#include "central/store.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/id.h"

/* The store migration (store_migrations.c) that creates the tables of this file. */
#define STORE_PIPELINES_SCHEMA_VERSION 2

/* ---- pipelines and schemas ----------------------------------------------------------------- */

struct store_pipeline {
	char pipeline_id[ID_LEN + 1];
	char *name;
	char *owner;
	char *repo;		  /* may be NULL: no polling */
	char *branch;		  /* may be NULL */
	char *last_polled_commit; /* may be NULL */
	int64_t active_version;	  /* 0 when no version is active */
	int64_t latest_version;
	char *created_by; /* may be NULL */
	usec_t created_at;
};
void store_pipeline_release(struct store_pipeline *p);
void store_pipeline_list_free(struct store_pipeline *v, size_t n);

/* New pipeline with schema version 1 active. ret_id receives the new id. -EEXIST when the name
 * is taken. */
int store_pipeline_create(struct store *s, const char *name, const char *owner, const char *repo,
			  const char *branch, const char *schema_json, const char *created_by,
			  usec_t now, char ret_id[static ID_LEN + 1], struct cd_error *err);
int store_pipeline_get(struct store *s, const char *pipeline_id, struct store_pipeline *ret,
		       struct cd_error *err);
/* Ordered by pipeline_id (creation order); owner NULL = all; after = page token (the last id
 * of the previous page) or NULL; limit 0 = all. */
int store_pipeline_list(struct store *s, const char *owner, const char *after, size_t limit,
			struct store_pipeline **ret, size_t *ret_n, struct cd_error *err);
/* Pipelines with a repo to poll. */
int store_pipeline_list_polled(struct store *s, struct store_pipeline **ret, size_t *ret_n,
			       struct cd_error *err);
int store_pipeline_set_polled(struct store *s, const char *pipeline_id, const char *commit,
			      struct cd_error *err);

struct store_schema {
	int64_t version;
	char state[16]; /* draft | active | inactive */
	char *schema;	/* JSON text */
	char *created_by;
	usec_t created_at;
};
void store_schema_release(struct store_schema *v);

/* Schema versions are immutable: a version's text never changes and a version is never
 * deleted (enforced by triggers), so (pipeline_id, version) may be cached (pipeline_run.h).
 * version 0 = the active one (-ENOENT when none). */
int store_schema_get(struct store *s, const char *pipeline_id, int64_t version,
		     struct store_schema *ret, struct cd_error *err);
/* New draft version latest + 1. if_match >= 0: the caller's view of the latest version;
 * -ESTALE when it differs (HTTP 412). -ENOENT: no such pipeline. */
int store_schema_put(struct store *s, const char *pipeline_id, int64_t if_match,
		     const char *schema_json, const char *created_by, usec_t now,
		     int64_t *ret_version, struct cd_error *err);
/* Make version active, the previously active one inactive. -ENOENT when absent. */
int store_schema_activate(struct store *s, const char *pipeline_id, int64_t version,
			  struct cd_error *err);

/* ---- runs ---------------------------------------------------------------------------------- */

struct store_run {
	char pipeline_id[ID_LEN + 1];
	int64_t run; /* 1, 2, ... per pipeline */
	int64_t schema_version;
	char commit[72];
	enum run_state state;
	int64_t attempt;       /* 1 + number of retries */
	char *error_message;   /* may be NULL */
	char *trigger;	       /* "api", "poll", ... */
	char *idempotency_key; /* may be NULL */
	char *created_by;      /* may be NULL */
	usec_t created_at, last_update;
};
void store_run_release(struct store_run *r);
void store_run_list_free(struct store_run *v, size_t n);

/*
 * New PENDING run of the active schema for commit. Older PENDING runs of the pipeline become
 * SUPERSEDED. With an idempotency_key already used on this pipeline the existing run is returned
 * and *ret_created is false (nothing changes). -ENOENT: no such pipeline; -ENODATA: no active
 * schema version.
 */
int store_run_create(struct store *s, const char *pipeline_id, const char *commit,
		     const char *idempotency_key, const char *trigger, const char *created_by,
		     usec_t now, struct store_run *ret, bool *ret_created, struct cd_error *err);
/* run 0 = the latest run. -ENOENT when absent. */
int store_run_get(struct store *s, const char *pipeline_id, int64_t run, struct store_run *ret,
		  struct cd_error *err);
/* Newest first; before = only runs numbered below it (0 = from the newest); limit 0 = all. */
int store_run_list(struct store *s, const char *pipeline_id, int64_t before, size_t limit,
		   struct store_run **ret, size_t *ret_n, struct cd_error *err);
/* Runs in a given state across all pipelines, oldest first. */
int store_run_list_by_state(struct store *s, enum run_state state, struct store_run **ret,
			    size_t *ret_n, struct cd_error *err);
/* Set state (+ message, may be NULL). */
int store_run_set_state(struct store *s, const char *pipeline_id, int64_t run, enum run_state state,
			const char *message, usec_t now, struct cd_error *err);
/* One run active per pipeline: when none is IN_PROGRESS, the oldest PENDING becomes
 * IN_PROGRESS and is returned (1); 0 when nothing was started. */
int store_run_start_next(struct store *s, const char *pipeline_id, usec_t now,
			 struct store_run *ret, struct cd_error *err);
/* Cancel: run → CANCELLED, its queued actions are removed (their leases die with them) and its
 * PENDING/IN_PROGRESS stages become ERROR "cancelled". -ENOENT; -EALREADY when the run already
 * ended. */
int store_run_cancel(struct store *s, const char *pipeline_id, int64_t run, const char *who,
		     usec_t now, struct cd_error *err);
/* Retry an ERROR (or CANCELLED) run: attempt + 1, state IN_PROGRESS; *ret_attempt gets the new
 * attempt. -EALREADY when the run is not in ERROR/CANCELLED; -EBUSY when another run of the
 * pipeline is IN_PROGRESS. The caller then queues the failed stages (pipeline_run.c). */
int store_run_retry(struct store *s, const char *pipeline_id, int64_t run, usec_t now,
		    int64_t *ret_attempt, struct cd_error *err);

/* ---- stage states (ActionState) and the queue ---------------------------------------------- */

struct store_stage {
	char *name;
	int64_t attempt;
	enum action_state state;
	char *error_message; /* may be NULL */
	char *result;	     /* JSON text written by the executor, may be NULL */
	char *approved_by;   /* may be NULL */
	int claims;	     /* how many times a runner claimed this (run, stage, attempt) */
	bool queued;	     /* an action_queue row exists */
	usec_t created_at, started_at, last_update;
};
void store_stage_release(struct store_stage *st);
void store_stage_list_free(struct store_stage *v, size_t n);

/* Latest attempt of every stage of the run that has a row, in no particular order. */
int store_stage_list(struct store *s, const char *pipeline_id, int64_t run,
		     struct store_stage **ret, size_t *ret_n, struct cd_error *err);
/* Latest attempt of one stage. -ENOENT when it has none. */
int store_stage_get(struct store *s, const char *pipeline_id, int64_t run, const char *stage,
		    struct store_stage *ret, struct cd_error *err);

/*
 * Create the PENDING ActionState row of (run, stage, attempt) and queue it (not_before: earliest
 * claim time). Returns 1 when created, 0 when that attempt already had a row (no-op).
 */
int store_action_enqueue(struct store *s, const char *pipeline_id, int64_t run, const char *stage,
			 int64_t attempt, usec_t not_before, usec_t now, struct cd_error *err);

struct store_claim {
	char pipeline_id[ID_LEN + 1];
	int64_t run;
	char *stage;
	int64_t attempt;
	int64_t lease_token; /* fencing token: pass back unchanged */
	char owner[64];
	int tries;	   /* transient failures so far */
	int claims;	   /* including this one */
	usec_t started_at; /* first claim of this attempt */
	usec_t lease_expires;
	char *result;	   /* last result JSON saved by store_action_defer(), may be NULL */
	char *approved_by; /* may be NULL */
};
void store_claim_release(struct store_claim *c);

/*
 * Typed queue: type_bit (one bit per stage type, 1u << enum action_type; 0 = untyped) is stored
 * with the action; a claim with types != 0 takes only actions whose bit is in types (or untyped
 * ones). A deployd running only the builder claims build and test actions, one without it
 * leaves them to a builder. store_action_enqueue()/store_action_claim() are the untyped forms.
 */
int store_action_enqueue_typed(struct store *s, const char *pipeline_id, int64_t run,
			       const char *stage, int64_t attempt, unsigned type_bit,
			       usec_t not_before, usec_t now, struct cd_error *err);
int store_action_claim_typed(struct store *s, const char *owner, unsigned types, usec_t now,
			     usec_t lease, struct store_claim *ret, struct cd_error *err);

/*
 * Claim the oldest ready action (not_before <= now, lease free or expired) for owner (<= 63
 * bytes) until now + lease. Its stage becomes IN_PROGRESS. Returns 1 with *ret filled, 0 when
 * nothing is ready.
 */
int store_action_claim(struct store *s, const char *owner, usec_t now, usec_t lease,
		       struct store_claim *ret, struct cd_error *err);
/* Extend the lease to now + lease. -ESTALE when the lease was lost. */
int store_action_extend(struct store *s, struct store_claim *c, usec_t now, usec_t lease,
			struct cd_error *err);
/* Final result: stage FINISHED or ERROR (message may be NULL, result JSON may be NULL), queue
 * row removed. -ESTALE when the lease was lost (nothing changes). */
int store_action_finish(struct store *s, const struct store_claim *c, enum action_state state,
			const char *message, const char *result, usec_t now, struct cd_error *err);
/* Give the action back to the queue until not_before (lease released, stage stays
 * IN_PROGRESS): waiting, polling or backing off. count_try adds one to tries. message (may be
 * NULL: unchanged) is shown as the stage's error_message meanwhile; result (may be NULL:
 * unchanged) is saved for the next claim. -ESTALE when the lease was lost. */
int store_action_defer(struct store *s, const struct store_claim *c, usec_t not_before,
		       bool count_try, const char *message, const char *result, usec_t now,
		       struct cd_error *err);
/* Record an approval on the latest attempt of stage and make its queued action ready now.
 * -ENOENT: no such stage attempt queued; -EALREADY: already approved or no longer queued. */
int store_stage_approve(struct store *s, const char *pipeline_id, int64_t run, const char *stage,
			const char *who, usec_t now, struct cd_error *err);
/* Number of queued actions (all pipelines). */
int store_action_queue_len(struct store *s, int64_t *ret, struct cd_error *err);
