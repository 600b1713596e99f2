/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's schema history. Append only: a released migration never changes. Each feature
 * area appends its own entries (pipelines: version 2) — see docs/central.md.
 */
#include "central/store_internal.h"

#include "lib/macro.h"

const struct store_migration store_migrations[] = {
	{
		1,
		"cluster: jobs, job versions, tasks, hosts, artifact index, events",
		"CREATE TABLE jobs ("
		"  job_id TEXT PRIMARY KEY,"
		"  region TEXT NOT NULL, zone TEXT NOT NULL, name TEXT NOT NULL,"
		"  version INTEGER NOT NULL CHECK (version >= 1),"
		"  stable_version INTEGER NOT NULL DEFAULT 0,"
		"  spec_hash TEXT NOT NULL,"
		"  desired TEXT NOT NULL CHECK (desired IN ('RUNNING','DONE')),"
		"  state TEXT NOT NULL CHECK (state IN ('PENDING','RUNNING','DONE','ERROR')),"
		"  reason TEXT,"
		"  rollout TEXT NOT NULL DEFAULT ''"
		"    CHECK (rollout IN ('','rolling','halted','rolled_back')),"
		"  rollout_reason TEXT,"
		"  max_unavailable INTEGER NOT NULL DEFAULT 1 CHECK (max_unavailable >= 1),"
		"  min_healthy_s INTEGER NOT NULL DEFAULT 0 CHECK (min_healthy_s >= 0),"
		"  auto_rollback INTEGER NOT NULL DEFAULT 1,"
		"  updated_by TEXT,"
		"  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
		"  UNIQUE (zone, name));"
		"CREATE TABLE job_versions ("
		"  job_id TEXT NOT NULL REFERENCES jobs(job_id),"
		"  version INTEGER NOT NULL,"
		"  spec TEXT NOT NULL, spec_hash TEXT NOT NULL,"
		"  created_by TEXT, created_at INTEGER NOT NULL,"
		"  PRIMARY KEY (job_id, version));"
		"CREATE TABLE tasks ("
		"  task_id TEXT PRIMARY KEY,"
		"  job_id TEXT NOT NULL REFERENCES jobs(job_id),"
		"  idx INTEGER NOT NULL CHECK (idx >= 0),"
		"  version INTEGER NOT NULL,"
		"  host_id TEXT NOT NULL DEFAULT '',"
		"  desired TEXT NOT NULL CHECK (desired IN ('RUNNING','DONE')),"
		"  state TEXT NOT NULL CHECK (state IN ('PENDING','RUNNING','DONE','ERROR')),"
		"  reason TEXT, message TEXT,"
		"  healthy INTEGER NOT NULL DEFAULT 0,"
		"  exit_code INTEGER, signal INTEGER,"
		"  restarts INTEGER NOT NULL DEFAULT 0,"
		"  last_seq INTEGER NOT NULL DEFAULT 0,"
		"  pushed INTEGER NOT NULL DEFAULT 0,"
		"  removed INTEGER NOT NULL DEFAULT 0,"
		"  millicpus INTEGER NOT NULL DEFAULT 0,"
		"  memory_mb INTEGER NOT NULL DEFAULT 0,"
		"  storage_mb INTEGER NOT NULL DEFAULT 0,"
		"  ports TEXT NOT NULL DEFAULT '[]',"
		"  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
		"  healthy_since INTEGER NOT NULL DEFAULT 0,"
		"  state_since INTEGER NOT NULL DEFAULT 0);"
		"CREATE INDEX tasks_by_job ON tasks(job_id, idx);"
		"CREATE INDEX tasks_by_host ON tasks(host_id);"
		"CREATE TABLE hosts ("
		"  host_id TEXT PRIMARY KEY,"
		"  zone TEXT NOT NULL, addr TEXT NOT NULL,"
		"  state TEXT NOT NULL CHECK (state IN ('READY','LOST')),"
		"  vcpus INTEGER NOT NULL, memory_mb INTEGER NOT NULL, storage_mb INTEGER NOT NULL,"
		"  free_json TEXT, version TEXT NOT NULL DEFAULT '',"
		"  registered_at INTEGER NOT NULL, last_heartbeat INTEGER NOT NULL);"
		"CREATE INDEX hosts_by_zone ON hosts(zone, host_id);"
		"CREATE TABLE artifacts ("
		"  target TEXT NOT NULL, commit_id TEXT NOT NULL,"
		"  digest TEXT NOT NULL, size INTEGER NOT NULL CHECK (size >= 0),"
		"  created_by TEXT, created_at INTEGER NOT NULL,"
		"  PRIMARY KEY (target, commit_id));"
		"CREATE TABLE events ("
		"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
		"  ts INTEGER NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL,"
		"  subject TEXT NOT NULL, data TEXT NOT NULL);"
		/* The audit log is append-only: the database refuses anything else. */
		"CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
		"  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
		"CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
		"  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;",
	},
	{
		2,
		"pipelines: pipelines, schema versions, runs, action_state, action_queue",
		/*
		 * Builds before this version created these tables from store_pipelines.c and
		 * counted their own versions 1-3 in a table pipelines_migrations: 1 created them,
		 * 2 added action_queue.type_bit, 3 the immutability triggers. This migration
		 * leaves such tables and their rows as they are and brings them to the final
		 * shape (IF NOT EXISTS everywhere), then drops pipelines_migrations; on a new
		 * database it simply creates everything. A pipelines_migrations version it does
		 * not know (> 3) stops it before anything changes.
		 */
		"CREATE TABLE IF NOT EXISTS pipelines_migrations ("
		"  version INTEGER PRIMARY KEY, description TEXT NOT NULL);"
		"CREATE TEMP TABLE pipelines_adopt (version INTEGER NOT NULL);"
		"CREATE TEMP TRIGGER pipelines_adopt_known BEFORE INSERT ON pipelines_adopt"
		"  WHEN NEW.version > 3 BEGIN SELECT RAISE(ABORT,"
		"  'the pipelines tables are newer than this deployd (pipelines_migrations > 3)');"
		"  END;"
		"INSERT INTO pipelines_adopt SELECT COALESCE(MAX(version), 0)"
		"  FROM pipelines_migrations;"
		"DROP TABLE pipelines_adopt;"
		"CREATE TABLE IF NOT EXISTS pipelines ("
		"  pipeline_id TEXT PRIMARY KEY,"
		"  name TEXT NOT NULL UNIQUE,"
		"  owner TEXT NOT NULL,"
		"  repo TEXT, branch TEXT, last_polled_commit TEXT,"
		"  created_by TEXT, created_at INTEGER NOT NULL);"
		"CREATE INDEX IF NOT EXISTS pipelines_by_owner ON pipelines(owner, pipeline_id);"
		"CREATE TABLE IF NOT EXISTS pipeline_schemas ("
		"  pipeline_id TEXT NOT NULL REFERENCES pipelines(pipeline_id),"
		"  version INTEGER NOT NULL CHECK (version >= 1),"
		"  state TEXT NOT NULL CHECK (state IN ('draft','active','inactive')),"
		"  schema TEXT NOT NULL,"
		"  created_by TEXT, created_at INTEGER NOT NULL,"
		"  PRIMARY KEY (pipeline_id, version));"
		"CREATE UNIQUE INDEX IF NOT EXISTS pipeline_schemas_one_active"
		"  ON pipeline_schemas(pipeline_id) WHERE state = 'active';"
		/* A version's text never changes and a version is never deleted: the DAG
		 * cache (pipeline_run.h) relies on it, and the database enforces it. */
		"CREATE TRIGGER IF NOT EXISTS pipeline_schemas_immutable BEFORE UPDATE OF"
		"  pipeline_id, version, schema ON pipeline_schemas"
		"  BEGIN SELECT RAISE(ABORT, 'pipeline schema versions are immutable'); END;"
		"CREATE TRIGGER IF NOT EXISTS pipeline_schemas_no_delete BEFORE DELETE"
		"  ON pipeline_schemas"
		"  BEGIN SELECT RAISE(ABORT, 'pipeline schema versions are immutable'); END;"
		"CREATE TABLE IF NOT EXISTS pipeline_runs ("
		"  pipeline_id TEXT NOT NULL REFERENCES pipelines(pipeline_id),"
		"  run INTEGER NOT NULL CHECK (run >= 1),"
		"  schema_version INTEGER NOT NULL,"
		"  commit_id TEXT NOT NULL,"
		"  state TEXT NOT NULL CHECK (state IN ('PENDING','IN_PROGRESS','FINISHED','ERROR',"
		"    'CANCELLED','SUPERSEDED')),"
		"  attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),"
		"  error_message TEXT,"
		"  trigger TEXT NOT NULL,"
		"  idempotency_key TEXT,"
		"  created_by TEXT,"
		"  created_at INTEGER NOT NULL, last_update INTEGER NOT NULL,"
		"  PRIMARY KEY (pipeline_id, run));"
		"CREATE UNIQUE INDEX IF NOT EXISTS pipeline_runs_idempotency ON pipeline_runs("
		"  pipeline_id, idempotency_key) WHERE idempotency_key IS NOT NULL;"
		"CREATE INDEX IF NOT EXISTS pipeline_runs_by_state"
		"  ON pipeline_runs(state, pipeline_id, run);"
		/* The seed's ActionState, keyed by run and attempt as well. */
		"CREATE TABLE IF NOT EXISTS action_state ("
		"  pipeline_id TEXT NOT NULL,"
		"  run INTEGER NOT NULL,"
		"  schema_node TEXT NOT NULL,"
		"  attempt INTEGER NOT NULL CHECK (attempt >= 1),"
		"  state TEXT NOT NULL CHECK (state IN ('PENDING','IN_PROGRESS','FINISHED','ERROR')),"
		"  error_message TEXT,"
		"  result TEXT,"
		"  approved_by TEXT,"
		"  claims INTEGER NOT NULL DEFAULT 0,"
		"  created_at INTEGER NOT NULL,"
		"  started_at INTEGER NOT NULL DEFAULT 0,"
		"  last_update INTEGER NOT NULL,"
		"  PRIMARY KEY (pipeline_id, run, schema_node, attempt),"
		"  FOREIGN KEY (pipeline_id, run) REFERENCES pipeline_runs(pipeline_id, run));"
		/*
		 * The queue. Old tables lack type_bit when they stopped at pipelines version 1,
		 * and SQLite cannot add a column only where it is missing, so the queue is
		 * rebuilt in every case, with each queued action's type_bit (1 << enum
		 * action_type: build 2, test 4, job 8, approval 16, wait 32; 0 = untyped)
		 * taken from its stage's type in the schema version of its run, which is what
		 * the runner stores when it queues the action.
		 */
		"CREATE TABLE IF NOT EXISTS action_queue ("
		"  pipeline_id TEXT NOT NULL, run INTEGER NOT NULL, schema_node TEXT NOT NULL,"
		"  attempt INTEGER NOT NULL, not_before INTEGER NOT NULL,"
		"  tries INTEGER NOT NULL DEFAULT 0, lease_owner TEXT,"
		"  lease_expires INTEGER NOT NULL DEFAULT 0, lease_token INTEGER NOT NULL DEFAULT 0,"
		"  enqueued_at INTEGER NOT NULL);"
		"CREATE TABLE action_queue_v2 ("
		"  pipeline_id TEXT NOT NULL,"
		"  run INTEGER NOT NULL,"
		"  schema_node TEXT NOT NULL,"
		"  attempt INTEGER NOT NULL,"
		"  not_before INTEGER NOT NULL,"
		"  tries INTEGER NOT NULL DEFAULT 0,"
		"  lease_owner TEXT,"
		"  lease_expires INTEGER NOT NULL DEFAULT 0,"
		"  lease_token INTEGER NOT NULL DEFAULT 0,"
		"  enqueued_at INTEGER NOT NULL,"
		"  type_bit INTEGER NOT NULL DEFAULT 0,"
		"  PRIMARY KEY (pipeline_id, run, schema_node, attempt),"
		"  FOREIGN KEY (pipeline_id, run, schema_node, attempt)"
		"    REFERENCES action_state(pipeline_id, run, schema_node, attempt));"
		"INSERT INTO action_queue_v2 (pipeline_id, run, schema_node, attempt, not_before,"
		"  tries, lease_owner, lease_expires, lease_token, enqueued_at, type_bit)"
		" SELECT q.pipeline_id, q.run, q.schema_node, q.attempt, q.not_before, q.tries,"
		"  q.lease_owner, q.lease_expires, q.lease_token, q.enqueued_at,"
		/* (json_extract() is given only objects: on other text it fails the statement) */
		"  COALESCE((SELECT CASE json_extract(st.stage, '$.type') WHEN 'build' THEN 2"
		"      WHEN 'test' THEN 4 WHEN 'job' THEN 8 WHEN 'approval' THEN 16"
		"      WHEN 'wait' THEN 32 END"
		"    FROM (SELECT CASE WHEN j.type = 'object' THEN j.value ELSE '{}' END AS stage"
		"      FROM pipeline_runs r JOIN pipeline_schemas s"
		"        ON s.pipeline_id = r.pipeline_id AND s.version = r.schema_version,"
		"      json_each(CASE WHEN json_valid(s.schema) THEN s.schema ELSE '[]' END) j"
		"      WHERE r.pipeline_id = q.pipeline_id AND r.run = q.run) st"
		"    WHERE json_extract(st.stage, '$.name') = q.schema_node LIMIT 1), 0)"
		" FROM action_queue q;"
		"DROP TABLE action_queue;"
		"ALTER TABLE action_queue_v2 RENAME TO action_queue;"
		"CREATE INDEX action_queue_ready ON action_queue(not_before, lease_expires);"
		"DROP TABLE pipelines_migrations;",
	},
	{
		3,
		"events: retention (pruning through an append-only prune log)",
		/* Every prune is recorded before it deletes; the delete trigger lets exactly the
		 * rows at or below the recorded mark go, so the log stays append-only for anything
		 * newer and a gap in the ids is always explained by a row here. */
		"CREATE TABLE events_pruned ("
		"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
		"  through_id INTEGER NOT NULL,"
		"  before_ts INTEGER NOT NULL,"
		"  deleted INTEGER NOT NULL,"
		"  ts INTEGER NOT NULL,"
		"  actor TEXT NOT NULL);"
		"CREATE TRIGGER events_pruned_no_update BEFORE UPDATE ON events_pruned"
		"  BEGIN SELECT RAISE(ABORT, 'the prune log is append-only'); END;"
		"CREATE TRIGGER events_pruned_no_delete BEFORE DELETE ON events_pruned"
		"  BEGIN SELECT RAISE(ABORT, 'the prune log is append-only'); END;"
		"DROP TRIGGER events_no_delete;"
		"CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
		"  WHEN OLD.id > (SELECT COALESCE(MAX(through_id), 0) FROM events_pruned)"
		"  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
		"CREATE INDEX events_by_ts ON events(ts);",
	},
};

const size_t store_migrations_n = ARRAY_SIZE(store_migrations);
