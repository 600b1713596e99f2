/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's schema history. Append only: a released migration never changes. Each feature
 * area appends its own entries (pipelines: the next free version) — see docs/central.md.
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
};

const size_t store_migrations_n = ARRAY_SIZE(store_migrations);
