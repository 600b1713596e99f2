/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.h — deployd's configuration: the deployd.conf format (`key = value`, '#' comments),
 * every key's default, the command-line flags that override the file, and validation.
 * Owns parsing only; main.c holds the one instance. docs/deployd.md lists every key.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/error.h"

#define DEPLOYD_DEFAULT_CONFIG "/etc/codedeploy/deployd.conf"
#define DEPLOYD_DEFAULT_STATE_DIR "/var/lib/codedeploy-central"
#define DEPLOYD_DEFAULT_LISTEN "127.0.0.1:7400"
#define DEPLOYD_DEFAULT_REGION "local"
#define DEPLOYD_DEFAULT_ZONE "local-1"

/* Role bits; "all" = every role this binary knows. */
enum {
	DEPLOYD_ROLE_PIPELINES = 1u << 0,
	DEPLOYD_ROLE_ARTIFACTS = 1u << 1,
	DEPLOYD_ROLE_BUILDER = 1u << 2,
	DEPLOYD_ROLE_CLUSTER = 1u << 3,
	DEPLOYD_ROLE_ALL = 0xfu,
};

/* The pipelines role's job stages deploy to these zones through their cluster managers. */
struct deployd_pipelines_zone {
	char *zone, *region;
	char *url;	  /* http:// base URL of the zone's cluster manager */
	char *token_file; /* absolute path of a token file whose "admin" line is used */
};

#define DEPLOYD_PIPELINES_MAX_ZONES 64

struct deployd_config {
	char *config_file; /* read, or NULL */
	unsigned roles;
	char *region, *zone;
	char *state_dir;
	char *listen;
	char *token_file; /* NULL = <state_dir>/deployd.token, created on first start */
	bool token_file_explicit;
	char *db;	       /* NULL = sqlite://<state_dir>/deployd.db */
	bool insecure_no_auth; /* flag only; loopback listen only */
	char *log_level;
	char *advertise_url;	/* how others reach us; NULL = http://<listen> */
	char *artifact_mirrors; /* comma-separated base URLs for PutTask; NULL = advertise_url
				 * when the artifacts role runs here */
	unsigned threads;
	uint64_t max_body_bytes;
	unsigned events_retention_days; /* 0 = keep the event log forever */
	/* cluster */
	unsigned heartbeat_interval_s, lost_after, progress_deadline_s, max_slot_failures;
	unsigned tick_interval_ms, push_timeout_ms;
	bool require_if_match;
	/* artifacts */
	char *cas_dir; /* NULL = <state_dir>/cas */
	uint64_t cas_max_bytes;
	uint64_t cas_max_blob_bytes;
	bool cas_public_read;
	bool cas_evict; /* make room by evicting unindexed blobs, LRU (default true) */
	/* pipelines and builder (pipelines_* keys; docs/man/deployd.conf.5.scd) */
	struct deployd_pipelines_zone *pipelines_zones; /* one per pipelines_zone line */
	size_t n_pipelines_zones;
	char *pipelines_artifacts_url;	      /* NULL = advertise_url (artifacts role here) */
	char *pipelines_artifacts_token_file; /* NULL = token_file */
	unsigned pipelines_runners, pipelines_poll_interval_s, pipelines_lease_s;
	unsigned pipelines_dag_cache_dags, pipelines_dag_cache_stages;
	int pipelines_sandbox_builds; /* -1 = when running as root, else 0 / 1 */
	char *pipelines_bazel_path;   /* NULL = "bazel" looked up in PATH */
	uint64_t pipelines_build_memory_bytes, pipelines_build_storage_bytes; /* 0 = builder's */
};

int deployd_config_init(struct deployd_config *c);
void deployd_config_release(struct deployd_config *c);

/* Set one key (as in the file). -EINVAL with a message naming key and value. Every key takes
 * its last value, except pipelines_zone, which adds a zone each time (a zone named twice is an
 * error). */
int deployd_config_set(struct deployd_config *c, const char *key, const char *value,
		       struct cd_error *err);
/* Apply a file's text; errors name the line. */
int deployd_config_parse_text(struct deployd_config *c, const char *name, const char *text,
			      struct cd_error *err);
/* Read path; -ENOENT (no message) when absent. */
int deployd_config_load(struct deployd_config *c, const char *path, struct cd_error *err);
/* "all" or a comma list of pipelines,artifacts,builder,cluster. */
int deployd_roles_parse(const char *s, unsigned *ret, struct cd_error *err);
/* Cross-key checks (zone inside region, --insecure-no-auth only on loopback, ...). */
int deployd_config_validate(const struct deployd_config *c, struct cd_error *err);
/*
 * <state_dir>/pipelines.conf, which earlier builds read for the pipelines and builder roles,
 * is not read any more: its settings are pipelines_* keys of deployd.conf. When one of those
 * roles is on and the file exists: -EEXIST with one line naming the file and the keys its
 * lines become; 0 otherwise.
 */
int deployd_config_check_legacy(const struct deployd_config *c, struct cd_error *err);

enum deployd_action {
	DEPLOYD_RUN,
	DEPLOYD_HELP,
	DEPLOYD_VERSION,
};

/*
 * Parse argv: --config FILE (default DEPLOYD_DEFAULT_CONFIG, optional unless given), --role,
 * --region, --zone, --state-dir, --listen, --token-file, --db, --insecure-no-auth,
 * --log-level, --help, --version. The file is applied first, then the flags, then
 * deployd_config_validate() and deployd_config_check_legacy(). -EINVAL (-EEXIST for a legacy
 * file) with a one-line message.
 */
int deployd_config_from_args(struct deployd_config *c, int argc, char **argv,
			     enum deployd_action *ret_action, struct cd_error *err);

/* Derived paths (allocated; NULL on ENOMEM). */
char *deployd_config_token_path(const struct deployd_config *c);
char *deployd_config_db_url(const struct deployd_config *c);
char *deployd_config_cas_dir(const struct deployd_config *c);
char *deployd_config_advertise_url(const struct deployd_config *c);
