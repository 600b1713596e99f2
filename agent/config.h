/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.h — taskd's configuration: the /etc/codedeploy/taskd.conf file format (`key = value`,
 * '#' comments), its defaults, the command-line flags that override it, and the derived paths.
 * Owns the parsing and validation of every key; docs/taskd.conf.example lists them all.
 * Does not own any process state: taskd's main.c holds the one instance.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/error.h"

#define TASKD_DEFAULT_CONFIG "/etc/codedeploy/taskd.conf"
#define TASKD_DEFAULT_STATE_DIR "/var/lib/codedeploy"
#define TASKD_DEFAULT_LISTEN "127.0.0.1:7411"
#define TASKD_DEFAULT_PORT 7411
#define TASKD_DEFAULT_PIDS_MAX 4096

struct taskd_config {
	char *config_file; /* the file read (or NULL when none was needed and none existed) */
	char *state_dir;
	char *listen;		  /* "ADDR:PORT", IPv4 only (civetweb 1.15 has no IPv6 here) */
	char *token_file;	  /* NULL = <state_dir>/taskd.token, created if missing */
	bool token_file_explicit; /* --token-file or token_file = ... was given */
	char *manager_url;	  /* NULL = standalone */
	char *manager_token_file; /* NULL = <state_dir>/manager.token */
	char *host_id;		  /* NULL = hostname */
	char *zone;		  /* reported in heartbeats; NULL = "" */
	char *advertise_url;	  /* taskd URL the manager pushes to; NULL = http://<listen> */
	char *shim_path;	  /* NULL = taskd-shim next to the taskd binary */
	char *cgroup_parent;	  /* NULL = "codedeploy" */
	char *log_level;	  /* debug|info|warn|error */
	unsigned threads;	  /* HTTP worker threads */
	unsigned heartbeat_interval_s;
	uint64_t log_max_bytes;		    /* per task stream before rotation */
	unsigned log_keep;		    /* rotated files kept per stream */
	unsigned log_line_max;		    /* longer lines are split */
	unsigned restart_reset_s;	    /* healthy this long → backoff resets */
	unsigned max_tasks;		    /* PutTask beyond this → 507 */
	uint64_t events_keep;		    /* events kept in the database */
	uint64_t cache_max_bytes;	    /* artifact cache budget */
	uint64_t process_events_ring_bytes; /* taskwatch BPF ring buffer; 0 = its default (4 MiB) */
	uint64_t default_pids_max; /* pids.max of a task whose spec sets no reqs.pids_max */
	char *bridge_name;   /* bridge networking: host bridge; NULL = the sandbox's (cdbr0) */
	char *bridge_subnet; /* its IPv4 CIDR, prefix 8..30; NULL = the sandbox's (10.88.0.0/24) */
	unsigned resources_vcpus;      /* 0 = detect */
	uint64_t resources_memory_mb;  /* 0 = detect */
	uint64_t resources_storage_mb; /* 0 = detect (free space of state_dir) */
};

/* Fill every field with its default (strings allocated). -ENOMEM. */
int taskd_config_init(struct taskd_config *c);
void taskd_config_release(struct taskd_config *c);

/*
 * Apply the text of a config file (name is used in messages). Unknown keys, missing '=',
 * invalid values are errors naming the line (-EINVAL). Later keys override earlier ones.
 */
int taskd_config_parse_text(struct taskd_config *c, const char *name, const char *text,
			    struct cd_error *err);
/* Read and apply path. -ENOENT is returned (without message) when the file does not exist. */
int taskd_config_load(struct taskd_config *c, const char *path, struct cd_error *err);

/* Set one key from a string (as in the file). -EINVAL with a message for unknown/invalid. */
int taskd_config_set(struct taskd_config *c, const char *key, const char *value,
		     struct cd_error *err);

/*
 * Checks that need every key: non-loopback listen requires an explicit token file; with a
 * manager_url, zone is required, advertise_url must be http:// and is required when listening
 * on 0.0.0.0 (what the cluster manager needs to accept heartbeats and push tasks).
 */
int taskd_config_validate(const struct taskd_config *c, struct cd_error *err);

enum taskd_action {
	TASKD_RUN,
	TASKD_HELP,
	TASKD_VERSION,
};

/*
 * Parse taskd's argv: --config FILE, --state-dir DIR, --listen ADDR:PORT, --token-file F,
 * --manager URL, --host-id ID, --zone ZONE, --log-level L, --help, --version. The config file (default
 * TASKD_DEFAULT_CONFIG, optional unless given with --config) is applied first, then the flags.
 * -EINVAL on usage errors with a one-line message in err.
 */
int taskd_config_from_args(struct taskd_config *c, int argc, char **argv,
			   enum taskd_action *ret_action, struct cd_error *err);

/* Parse "A.B.C.D:PORT" (port 1..65535). ret_loopback says whether the address is 127/8. */
int taskd_parse_listen(const char *s, bool *ret_loopback);

/* Derived path <state_dir>/<name> into a new string. -ENOMEM. */
int taskd_config_path(const struct taskd_config *c, const char *name, char **ret);
