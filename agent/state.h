/* SPDX-License-Identifier: Apache-2.0 */
/*
 * state.h — taskd's durable state: one SQLite database (WAL, synchronous=FULL) holding tasks,
 * the append-only event log and the outbox of notifications for the cluster manager.
 * Owns: the schema, its migrations and every SQL statement taskd runs. A task change, its event
 * and its outbox message (replacing the task's undelivered older one) are written in ONE
 * transaction, so a crash never shows one without the others. Does not own: the meaning of specs or message bodies (opaque JSON strings here).
 * Not thread-safe: the caller serialises access to one struct state (taskd holds its lock).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/clock.h"
#include "lib/error.h"
#include "lib/id.h"

enum task_state {
	TASK_PENDING,
	TASK_RUNNING,
	TASK_DONE,
	TASK_ERROR,
	_TASK_STATE_MAX,
};

/* "PENDING" ... "ERROR"; NULL for an out-of-range value. */
const char *task_state_to_string(enum task_state s);
/* Exact, case-sensitive; -EINVAL otherwise. */
int task_state_from_string(const char *s, enum task_state *ret);

#define TASK_REASON_MAX 32
#define REQUEST_ID_MAX 128
#define TASK_ID_BUF 65 /* api/names.h TASK_ID_MAX + NUL */

/*
 * One task as stored. Strings are owned by the record (task_record_release frees them).
 * desired is what the operator/manager asked for: TASK_RUNNING (keep it running) or TASK_DONE
 * (stopped on request). shim_pid/shim_start identify the per-task supervisor process that
 * outlives taskd (pid + start time in clock ticks since boot, so a recycled pid is detected).
 */
struct task_record {
	char task_id[TASK_ID_BUF];
	char *request_id; /* client-supplied idempotency key; may be NULL */
	char *job_url;	  /* job://region/zone/name */
	unsigned task_index;
	char *spec_json;     /* the JobSpec (canonical JSON) */
	char *artifact_json; /* {"digest", "mirrors"} of PutTask; NULL = no artifact */
	bool from_manager;   /* put with the cluster's agent token: reported to the manager */
	enum task_state desired;
	enum task_state state;
	char reason[TASK_REASON_MAX]; /* "" when none */
	char *message;		      /* human detail; may be NULL */
	int exit_code;		      /* -1 when none */
	int signal;		      /* 0 when none */
	unsigned restarts;
	unsigned generation; /* incarnation counter: bumps on every launch */
	pid_t shim_pid;	     /* 0 when no supervisor runs */
	uint64_t shim_start;
	usec_t created_at, started_at, finished_at, updated_at; /* realtime; 0 = never */
	uint64_t version; /* bumps on every save; orders notifications per task */
};

void task_record_release(struct task_record *t);
static inline void task_record_releasep(struct task_record *t)
{
	task_record_release(t);
}
#define _cleanup_task_record_ _cleanup_(task_record_releasep)
void task_record_array_free(struct task_record *v, size_t n);
/* Deep copy (strings duplicated). -ENOMEM. */
int task_record_copy(const struct task_record *src, struct task_record *ret);

struct state_event {
	uint64_t seq;
	usec_t ts;
	char task_id[TASK_ID_BUF];
	char type[32];
	char *data; /* JSON object text */
};
void state_event_array_free(struct state_event *v, size_t n);

struct outbox_msg {
	uint64_t id; /* local sequence, strictly increasing: delivery order */
	char msg_id[ID_LEN + 1];
	char task_id[TASK_ID_BUF]; /* "" for host-level messages */
	char kind[32];		   /* "task_state" */
	char *body;		   /* JSON text */
	unsigned attempts;
	usec_t next_attempt_at; /* realtime */
};
void outbox_msg_array_free(struct outbox_msg *v, size_t n);

struct state;

/*
 * Open (creating) the database at path, apply pending migrations, set WAL + synchronous=FULL +
 * busy timeout. A database written by a newer taskd (unknown schema version) is refused with
 * -EPROTO. Errors: -errno mapped from SQLite (-ENOSPC full, -EBUSY locked, -EUCLEAN corrupt,
 * -EIO otherwise) with a message in err.
 */
int state_open(const char *path, struct state **ret, struct cd_error *err);
void state_close(struct state *st);
static inline void state_closep(struct state **st)
{
	if (*st)
		state_close(*st);
}
#define _cleanup_state_ _cleanup_(state_closep)

/* Schema version currently applied. */
int state_schema_version(struct state *st);

/*
 * Insert a new task; in the same transaction append event (type, event_data JSON may be NULL)
 * and, when outbox_body != NULL, an outbox message. -EEXIST when task_id or request_id exists.
 * t->version is written as 1 and updated_at set by the caller.
 */
int state_task_insert(struct state *st, struct task_record *t, const char *event_type,
		      const char *event_data, const char *outbox_body, struct cd_error *err);

/*
 * Write every mutable column of t (matched by task_id). The caller bumps t->version by one
 * before the call (so it can put the new version into outbox_body); the row is updated only if
 * it still holds t->version - 1, otherwise -ESTALE (a concurrent writer). In the same
 * transaction append an event and (when outbox_body != NULL) an outbox message.
 * -ENOENT when the task does not exist.
 */
int state_task_save(struct state *st, struct task_record *t, const char *event_type,
		    const char *event_data, const char *outbox_body, struct cd_error *err);

/* Remove a task row (its events stay, they are history) and append a "deleted" event. */
int state_task_delete(struct state *st, const char *task_id, struct cd_error *err);

/* Lookups: -ENOENT when absent. ret is filled only on success. */
int state_task_get(struct state *st, const char *task_id, struct task_record *ret);
int state_task_get_by_request(struct state *st, const char *request_id, struct task_record *ret);

/* All tasks ordered by creation (task_id), optionally filtered (NULL / negative = any). */
int state_task_list(struct state *st, const char *job_url, int state_filter,
		    struct task_record **ret, size_t *ret_n);

/* Events with seq > after, at most limit, ascending. */
int state_events_after(struct state *st, uint64_t after, size_t limit, struct state_event **ret,
		       size_t *ret_n);
/* Highest event seq (0 when none). */
int state_events_last(struct state *st, uint64_t *ret);
/* Keep at most keep newest events (older ones are deleted). */
int state_events_trim(struct state *st, uint64_t keep);

/*
 * Outbox messages carry a task's whole state, and the manager applies only the newest (highest
 * seq) per task: so appending a message for a task (here, or with a task insert/save) deletes,
 * in the same transaction, the task's undelivered older messages of the same kind, and the new
 * one inherits their attempts and retry time. The outbox therefore holds at most one message
 * per task and kind (plus host-level ones, task_id NULL/"", which are kept as they are).
 */
int state_outbox_add(struct state *st, const char *kind, const char *task_id, const char *body,
		     struct cd_error *err);
/* Oldest undelivered messages whose next_attempt_at <= now, ascending id, at most limit. */
int state_outbox_due(struct state *st, usec_t now, size_t limit, struct outbox_msg **ret,
		     size_t *ret_n);
/* Number of undelivered messages. */
int state_outbox_count(struct state *st, uint64_t *ret);
/* Undelivered messages replaced by a newer one of the same task since state_open(). */
uint64_t state_outbox_coalesced(const struct state *st);
/* Acknowledged: delete. -ENOENT when unknown (already acked). */
int state_outbox_ack(struct state *st, uint64_t id);
/* Delivery failed: attempts++ and next_attempt_at = when. */
int state_outbox_retry(struct state *st, uint64_t id, usec_t when);

/* Generic key/value for small host facts (e.g. "boot_id"). get: -ENOENT when absent. */
int state_meta_get(struct state *st, const char *key, char **ret);
int state_meta_set(struct state *st, const char *key, const char *value);
