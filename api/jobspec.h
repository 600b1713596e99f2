/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jobspec.h — the JobSpec resource: the seed's {name, target, reqs} plus our command, env,
 * health, restart, stop_grace_s and zones. Owns the JSON codec, validation (every invalid field
 * reported with a JSON pointer), the documented defaults, and the canonical form and hash that
 * make "PutJob with an identical spec" a cheap no-op. Does not schedule, start or probe anything:
 * the cluster manager and taskd read the public fields.
 *
 * Defaults (applied by jobspec_from_json, always present in jobspec_to_json output):
 *   reqs.hosts 1, reqs.vcpus 1, reqs.memory_mb 256, reqs.storage.size_mb 1024,
 *   reqs.networking.mode "none", reqs.networking.ports [], command ["/app/<target name>"],
 *   env {}, health absent (no probe), health.interval_s 10, health.timeout_s 2,
 *   health.failure_threshold 3, health.path "/healthz" (http), restart.policy "on-failure",
 *   restart.backoff_s 1, restart.max_backoff_s 60, stop_grace_s 10, zones [].
 * vcpus is a JSON number > 0 with at most three decimals (0.5, 1.25), kept as millicpus.
 * reqs.pids_max is optional and has no default here: absent (0) means the host's default
 * (taskd's default_pids_max), and jobspec_to_json() then omits it, so specs written before the
 * field existed keep their canonical text and hash.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/names.h"
#include "api/problem.h"

#define JOBSPEC_MAX_HOSTS 10000
#define JOBSPEC_MAX_MILLICPUS (1024 * 1000)	    /* 1024 vcpus */
#define JOBSPEC_MAX_MEMORY_MB (4 * 1024 * 1024)	    /* 4 TiB */
#define JOBSPEC_MAX_STORAGE_MB (64ll * 1024 * 1024) /* 64 TiB */
#define JOBSPEC_MAX_PORTS 64
#define JOBSPEC_PORT_NAME_MAX 15 /* [a-z0-9-], like IANA service names */
#define JOBSPEC_MAX_ARGS 256
#define JOBSPEC_ARG_MAX_LEN 4096
#define JOBSPEC_MAX_ENV 256
#define JOBSPEC_ENV_KEY_MAX 256 /* [A-Za-z_][A-Za-z0-9_]* */
#define JOBSPEC_ENV_VALUE_MAX 32768
#define JOBSPEC_MAX_ZONES 64
#define JOBSPEC_HEALTH_PATH_MAX 1024
#define JOBSPEC_MAX_INTERVAL_S 3600
#define JOBSPEC_MAX_FAILURE_THRESHOLD 100
#define JOBSPEC_MAX_BACKOFF_S 86400
#define JOBSPEC_MAX_STOP_GRACE_S 3600
/* pids.max of a task's cgroup: its init counts as one, so 2 is the least that can run a
 * command; the kernel's PID_MAX_LIMIT bounds it above. */
#define JOBSPEC_MIN_PIDS 2
#define JOBSPEC_MAX_PIDS (4 * 1024 * 1024)

#define JOBSPEC_DEFAULT_HOSTS 1
#define JOBSPEC_DEFAULT_MILLICPUS 1000
#define JOBSPEC_DEFAULT_MEMORY_MB 256
#define JOBSPEC_DEFAULT_STORAGE_MB 1024
#define JOBSPEC_DEFAULT_HEALTH_INTERVAL_S 10
#define JOBSPEC_DEFAULT_HEALTH_TIMEOUT_S 2
#define JOBSPEC_DEFAULT_HEALTH_FAILURE_THRESHOLD 3
#define JOBSPEC_DEFAULT_HEALTH_PATH "/healthz"
#define JOBSPEC_DEFAULT_BACKOFF_S 1
#define JOBSPEC_DEFAULT_MAX_BACKOFF_S 60
#define JOBSPEC_DEFAULT_STOP_GRACE_S 10

/* "sha256:" + 64 hex */
#define JOBSPEC_HASH_LEN DIGEST_STR_LEN

enum jobspec_net_mode {
	JOBSPEC_NET_NONE, /* own network namespace with loopback only */
	JOBSPEC_NET_HOST, /* the host's network namespace */
	JOBSPEC_NET_BRIDGE,
	_JOBSPEC_NET_MAX,
};

enum jobspec_health_type {
	JOBSPEC_HEALTH_NONE, /* no "health" member: the task is healthy while it runs */
	JOBSPEC_HEALTH_EXEC,
	JOBSPEC_HEALTH_HTTP,
	JOBSPEC_HEALTH_TCP,
	_JOBSPEC_HEALTH_MAX,
};

enum jobspec_restart_policy {
	JOBSPEC_RESTART_NEVER,
	JOBSPEC_RESTART_ON_FAILURE,
	JOBSPEC_RESTART_ALWAYS,
	_JOBSPEC_RESTART_MAX,
};

struct jobspec_port {
	char name[JOBSPEC_PORT_NAME_MAX + 1];
	uint16_t port; /* 1..65535; names and numbers are unique within a spec */
};

struct jobspec_env {
	char *key;
	char *value;
};

struct jobspec_reqs {
	uint32_t hosts;	    /* tasks, each on a distinct host */
	uint32_t millicpus; /* vcpus * 1000 */
	uint64_t memory_mb;
	struct {
		uint64_t size_mb;
	} storage;
	uint64_t pids_max; /* processes + threads in the task's cgroup; 0 = the host's default */
	struct {
		enum jobspec_net_mode mode;
		struct jobspec_port *ports; /* n_ports entries, in the order given */
		size_t n_ports;
	} networking;
};

struct jobspec_health {
	enum jobspec_health_type type;
	char **command; /* exec: NULL-terminated argv, >= 1 element; NULL otherwise */
	char *path;	/* http: request path starting with '/'; NULL otherwise */
	uint16_t port;	/* http, tcp: 1..65535; 0 otherwise */
	uint32_t interval_s, timeout_s, failure_threshold;
};

struct jobspec_restart {
	enum jobspec_restart_policy policy;
	uint32_t backoff_s, max_backoff_s; /* backoff_s <= max_backoff_s */
};

struct jobspec {
	char name[DNS_LABEL_MAX + 1];
	struct artifact target; /* target.commit is "" unless pinned ("//t:name@<commit>") */
	struct jobspec_reqs reqs;
	char **command;		 /* NULL-terminated argv, >= 1 element */
	struct jobspec_env *env; /* n_env entries sorted by key, keys unique */
	size_t n_env;
	struct jobspec_health health;
	struct jobspec_restart restart;
	uint32_t stop_grace_s;
	char **zones; /* NULL-terminated (possibly empty), unique zone names */
};

/*
 * Decode and validate j into a new jobspec with defaults filled in. base is the JSON pointer of
 * j inside the request body ("" when j is the body). Every invalid field is recorded in p (which
 * the caller initialised with problem_init()) with its pointer; then p is marked 422 and -EINVAL
 * returned. -ENOMEM on allocation failure. *ret is written only on success; free with
 * jobspec_free().
 */
int jobspec_from_json_at(const json_t *j, const char *base, struct jobspec **ret,
			 struct problem *p);
static inline int jobspec_from_json(const json_t *j, struct jobspec **ret, struct problem *p)
{
	return jobspec_from_json_at(j, "", ret, p);
}
/* api_json_parse() + jobspec_from_json(): a body or a stored spec in one call. */
int jobspec_from_string(const char *buf, size_t len, struct jobspec **ret, struct problem *p);

/* Canonical JSON: every field present with its value (defaults filled in), "health" only when
 * a probe is configured. Returns 0 or -ENOMEM/-EINVAL (a struct that was not made by the
 * decoder and holds invalid values). */
int jobspec_to_json(const struct jobspec *s, json_t **ret);
/* Canonical text (api_json_dump_canonical of jobspec_to_json): sorted keys, compact. */
int jobspec_to_string(const struct jobspec *s, char **ret);
/* "sha256:<hex>" of the canonical text into ret[JOBSPEC_HASH_LEN + 1]. */
int jobspec_hash(const struct jobspec *s, char ret[static JOBSPEC_HASH_LEN + 1]);
/* Same canonical text. false also when either cannot be serialised (ENOMEM): callers then treat
 * the spec as changed, which is always safe. */
bool jobspec_equal(const struct jobspec *a, const struct jobspec *b);

void jobspec_free(struct jobspec *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct jobspec *, jobspec_free);
#define _cleanup_jobspec_ _cleanup_(jobspec_freep)

/* Look up an environment variable; NULL when absent. */
const char *jobspec_env_get(const struct jobspec *s, const char *key);

const char *jobspec_net_mode_to_string(enum jobspec_net_mode m);
int jobspec_net_mode_from_string(const char *s, enum jobspec_net_mode *ret);
const char *jobspec_health_type_to_string(enum jobspec_health_type t);
int jobspec_health_type_from_string(const char *s, enum jobspec_health_type *ret);
const char *jobspec_restart_policy_to_string(enum jobspec_restart_policy p);
int jobspec_restart_policy_from_string(const char *s, enum jobspec_restart_policy *ret);
