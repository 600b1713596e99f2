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
};

int deployd_config_init(struct deployd_config *c);
void deployd_config_release(struct deployd_config *c);

/* Set one key (as in the file). -EINVAL with a message naming key and value. */
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

enum deployd_action {
	DEPLOYD_RUN,
	DEPLOYD_HELP,
	DEPLOYD_VERSION,
};

/*
 * Parse argv: --config FILE (default DEPLOYD_DEFAULT_CONFIG, optional unless given), --role,
 * --region, --zone, --state-dir, --listen, --token-file, --db, --insecure-no-auth,
 * --log-level, --help, --version. The file is applied first, then the flags. -EINVAL on usage
 * errors with a one-line message.
 */
int deployd_config_from_args(struct deployd_config *c, int argc, char **argv,
			     enum deployd_action *ret_action, struct cd_error *err);

/* Derived paths (allocated; NULL on ENOMEM). */
char *deployd_config_token_path(const struct deployd_config *c);
char *deployd_config_db_url(const struct deployd_config *c);
char *deployd_config_cas_dir(const struct deployd_config *c);
char *deployd_config_advertise_url(const struct deployd_config *c);
