/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store.h — deployd's durable state: jobs (+ every spec version), tasks, hosts, the artifact
 * index and the append-only event log. The only module that speaks SQL (SQLite in WAL mode
 * today); callers see rows as plain structs and errors as -errno + struct cd_error, never a
 * sqlite rc, so a PostgreSQL backend can sit behind the same functions (docs/central.md).
 * Does not own policy: scheduling, state derivation and HTTP live in cluster.c / main.c.
 *
 * Thread-safety: one struct store may be shared by all threads. Every call is atomic on its own;
 * store_begin()..store_commit() groups calls of one thread into one write transaction (other
 * writers wait; reads inside it see its rows). Reads outside a transaction run on a small pool of
 * read-only connections and see the last committed state without waiting for the writer.
 * Strings in returned structs are owned by the struct: release with the matching *_release()
 * (or *_list_free() for arrays).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"
#include "lib/error.h"

struct store;

/*
 * Open (creating if needed) the database named by url: "sqlite:///abs/path.db", a plain path,
 * or ":memory:". "postgresql://..." returns -EPROTONOSUPPORT (not built yet). Applies pending
 * migrations (central/store_migrations.c) in one transaction each; a database newer than this
 * binary is refused with -EPROTO.
 */
int store_open(const char *url, struct store **ret, struct cd_error *err);
void store_free(struct store *s);
static inline void store_freep(struct store **s)
{
	if (*s)
		store_free(*s);
}
#define _cleanup_store_ _cleanup_(store_freep)

/*
 * Read snapshot: this thread's reads until store_read_end() see one consistent state (one read
 * transaction), e.g. a job and its tasks from the same commit. Cheaper than separate reads, too.
 * Inside a write transaction it is that transaction. Pairs nest; a failed begin needs no end.
 */
int store_read_begin(struct store *s, struct cd_error *err);
void store_read_end(struct store *s);

/* Counters for /metrics. */
struct store_stats {
	uint64_t statements_prepared; /* SQL compiled (statement cache misses) since open */
	uint64_t readers_open;	      /* read-only connections in the pool */
	uint64_t reader_waits;	      /* reads that waited for a free pooled connection */
};
void store_stats(struct store *s, struct store_stats *ret);

/* Highest applied migration version. */
int store_schema_version(struct store *s, int *ret);

/*
 * Write transaction (BEGIN IMMEDIATE). Nested begin/commit pairs on the same thread are
 * flattened; only the outermost commit commits. Any failed call inside leaves the transaction
 * open: the caller must store_rollback(), which undoes everything since the outermost begin.
 */
int store_begin(struct store *s, struct cd_error *err);
int store_commit(struct store *s, struct cd_error *err);
void store_rollback(struct store *s);

/* ---- jobs ---------------------------------------------------------------------------------- */

#define STORE_NAME_MAX 128

struct store_job {
	char job_id[32];
	char region[STORE_NAME_MAX];
	char zone[STORE_NAME_MAX];
	char name[STORE_NAME_MAX];
	int64_t version;	/* current desired spec version, 1.. */
	int64_t stable_version; /* last version that rolled out healthy (rollback target), 0 none */
	char *spec;		/* JSON text of `version` */
	char spec_hash[72];	/* jobspec_hash() of spec */
	char desired[16];	/* RUNNING | DONE (SetJobState) */
	char state[16];		/* PENDING | RUNNING | DONE | ERROR (derived) */
	char *reason;		/* may be NULL */
	char rollout[16];	/* "" | rolling | halted | rolled_back */
	char *rollout_reason;	/* why the rollout halted or rolled back; may be NULL */
	int max_unavailable;
	int min_healthy_s;
	bool auto_rollback;
	char *updated_by; /* actor of the last change; may be NULL */
	usec_t created_at, updated_at;
};
void store_job_release(struct store_job *j);
void store_job_list_free(struct store_job *v, size_t n);

/* -ENOENT when absent. */
int store_job_get(struct store *s, const char *zone, const char *name, struct store_job *ret,
		  struct cd_error *err);
int store_job_get_by_id(struct store *s, const char *job_id, struct store_job *ret,
			struct cd_error *err);
/* Insert a new job row and its version row (j->version, j->spec). -EEXIST when zone/name is
 * taken. */
int store_job_insert(struct store *s, const struct store_job *j, struct cd_error *err);
/* Replace every mutable column of the row with job_id j->job_id; when j->version has no version
 * row yet, one is added with j->spec. -ENOENT when absent. */
int store_job_update(struct store *s, const struct store_job *j, struct cd_error *err);
/* The spec JSON of one version into *ret (caller frees). -ENOENT when absent. */
int store_job_version_spec(struct store *s, const char *job_id, int64_t version, char **ret,
			   struct cd_error *err);
/*
 * Jobs ordered by (zone, name). zone may be NULL (all zones). after_name: return only jobs whose
 * (zone, name) sorts after (after_zone, after_name) — both NULL for the first page. limit 0 =
 * no limit.
 */
int store_job_list(struct store *s, const char *zone, const char *after_zone,
		   const char *after_name, size_t limit, struct store_job **ret, size_t *ret_n,
		   struct cd_error *err);

/* ---- tasks --------------------------------------------------------------------------------- */

struct store_task {
	char task_id[32];
	char job_id[32];
	int index;		      /* slot in the job, 0..hosts-1 */
	int64_t version;	      /* job spec version this task runs */
	char host_id[STORE_NAME_MAX]; /* "" while unplaced */
	char desired[16];	      /* RUNNING | DONE */
	char state[16];		      /* PENDING | RUNNING | DONE | ERROR */
	char *reason;		      /* may be NULL */
	char *message;		      /* may be NULL */
	bool healthy;
	bool has_exit_code, has_signal;
	int exit_code, signal;
	int restarts;
	int64_t last_seq; /* highest NotifyTaskState seq applied */
	bool pushed;	  /* taskd acknowledged PutTask */
	bool removed;	  /* taskd acknowledged DELETE (row kept for history) */
	/* resources reserved on host_id (copied from the spec's reqs at placement) */
	int millicpus;
	int64_t memory_mb, storage_mb;
	char *ports; /* JSON array of port numbers, "[]" when none */
	usec_t created_at, updated_at;
	usec_t healthy_since; /* 0 when not healthy */
	usec_t state_since;   /* when state last changed */
};
void store_task_release(struct store_task *t);
void store_task_list_free(struct store_task *v, size_t n);

int store_task_insert(struct store *s, const struct store_task *t, struct cd_error *err);
/* Replace every mutable column of task t->task_id. -ENOENT when absent. */
int store_task_update(struct store *s, const struct store_task *t, struct cd_error *err);
int store_task_get(struct store *s, const char *task_id, struct store_task *ret,
		   struct cd_error *err);

struct store_task_filter {
	const char *job_id;  /* NULL = any */
	const char *host_id; /* NULL = any */
	const char *zone;    /* NULL = any; matches the job's zone */
	bool live_only;	     /* skip removed tasks */
};
/* Tasks matching filter ordered by (job_id, index, created_at). */
int store_task_list(struct store *s, const struct store_task_filter *f, struct store_task **ret,
		    size_t *ret_n, struct cd_error *err);

/* ---- hosts --------------------------------------------------------------------------------- */

struct store_host {
	char host_id[STORE_NAME_MAX];
	char zone[STORE_NAME_MAX];
	char addr[256]; /* taskd base URL */
	char state[16]; /* READY | LOST */
	int vcpus;
	int64_t memory_mb, storage_mb;
	char *free_json; /* last reported "free" object, may be NULL */
	char version[32];
	usec_t registered_at;
	usec_t last_heartbeat; /* realtime */
};
void store_host_release(struct store_host *h);
void store_host_list_free(struct store_host *v, size_t n);

/* Insert or replace the host row (registered_at kept from the first insert). */
int store_host_upsert(struct store *s, const struct store_host *h, struct cd_error *err);
int store_host_get(struct store *s, const char *host_id, struct store_host *ret,
		   struct cd_error *err);
/* zone NULL = all; ordered by host_id; after: page token (host_id) or NULL. limit 0 = all. */
int store_host_list(struct store *s, const char *zone, const char *after, size_t limit,
		    struct store_host **ret, size_t *ret_n, struct cd_error *err);
int store_host_set_state(struct store *s, const char *host_id, const char *state,
			 struct cd_error *err);

/* ---- artifact index ------------------------------------------------------------------------ */

struct store_artifact {
	char *target; /* //dir:name */
	char commit[72];
	char digest[80]; /* sha256:<hex> */
	int64_t size;
	char *created_by;
	usec_t created_at;
};
void store_artifact_release(struct store_artifact *a);
void store_artifact_list_free(struct store_artifact *v, size_t n);

/* Record target@commit → digest. Same digest again: 0 (no-op, *ret_created false). A different
 * digest for an existing target@commit: -EEXIST (artifacts are immutable). */
int store_artifact_put(struct store *s, const struct store_artifact *a, bool *ret_created,
		       struct cd_error *err);
int store_artifact_get(struct store *s, const char *target, const char *commit,
		       struct store_artifact *ret, struct cd_error *err);
/* target NULL = all; ordered by (target, created_at desc, commit); offset pagination. */
int store_artifact_list(struct store *s, const char *target, size_t offset, size_t limit,
			struct store_artifact **ret, size_t *ret_n, struct cd_error *err);

/* Every distinct digest the index points at ("sha256:<hex>"), sorted, as a NULL-terminated
 * vector (strv_free()). The artifact store pins these against eviction. */
int store_artifact_digests(struct store *s, char ***ret, struct cd_error *err);

/* ---- events (append-only; audit log and /v1/events feed) ---------------------------------- */

struct store_event {
	int64_t id; /* strictly increasing */
	usec_t ts;
	char *actor;   /* token role or "deployd" */
	char *kind;    /* job.put, job.state, task.state, host.lost, artifact.put, ... */
	char *subject; /* job/task URL, host id, artifact */
	char *data;    /* JSON text */
};
void store_event_release(struct store_event *e);
void store_event_list_free(struct store_event *v, size_t n);

/* Append; *ret_id (may be NULL) gets the new id. data: JSON text or NULL ("{}"). Wakes
 * store_event_wait() callers once the surrounding transaction commits. */
int store_event_append(struct store *s, const char *actor, const char *kind, const char *subject,
		       const char *data, int64_t *ret_id, struct cd_error *err);
/* Events with id > after, ascending, at most limit (0 = 1000). */
int store_event_list(struct store *s, int64_t after, size_t limit, struct store_event **ret,
		     size_t *ret_n, struct cd_error *err);
/*
 * Retention: delete the oldest events, in id order, while they are older than before
 * (realtime), at most max_rows (0 = 10000) per call, in one transaction that first records the
 * prune (events_pruned: through which id, the cutoff, how many, who) and appends an
 * "events.pruned" event. Newer events stay append-only (a trigger refuses anything else).
 * *ret_deleted (may be NULL) gets the number deleted.
 */
int store_event_prune(struct store *s, usec_t before, size_t max_rows, const char *actor,
		      int64_t *ret_deleted, struct cd_error *err);
/* Every event with id <= *ret was pruned (0 when nothing ever was). */
int store_event_pruned_through(struct store *s, int64_t *ret, struct cd_error *err);
/* Highest event id (0 when none). */
int store_event_last_id(struct store *s, int64_t *ret, struct cd_error *err);
/* Wake every store_event_wait() of this process now (each returns 1 if something is new, else 0). */
void store_event_wake(struct store *s);
/*
 * Block until an event with id > after exists or timeout passes. Returns 1 when there is one,
 * 0 on timeout. Woken by commits in this process; other processes sharing the database are
 * noticed by re-checking every 250 ms.
 */
int store_event_wait(struct store *s, int64_t after, usec_t timeout, struct cd_error *err);
