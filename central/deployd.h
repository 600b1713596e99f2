/* SPDX-License-Identifier: Apache-2.0 */
/*
 * deployd.h — what every deployd role shares: the configuration, the store, bearer tokens with
 * their roles (admin, agent, team:<name>), the route table every role adds its REST endpoints
 * to (with the permission each needs), and the role table (cluster, artifacts, and the
 * pipelines/builder roles another module provides). Owns authentication and authorization
 * (constant-time token compare, principal per request) and the common endpoints: /readyz,
 * /metrics, /v1/events. Does not own any role's logic.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "api/http_server.h"
#include "central/config.h"
#include "central/store.h"
#include "lib/str.h"

struct deployd;

/* Who sent a request. */
enum deployd_principal_kind {
	DEPLOYD_PRINCIPAL_NONE,	 /* open route, or --insecure-no-auth */
	DEPLOYD_PRINCIPAL_ADMIN, /* everything */
	DEPLOYD_PRINCIPAL_AGENT, /* taskd: heartbeats, task reports, artifact reads */
	DEPLOYD_PRINCIPAL_TEAM,	 /* a pipeline owner: reads, jobs, artifacts, own pipelines */
};

struct deployd_principal {
	enum deployd_principal_kind kind;
	const char *name;  /* team name for TEAM, else the kind ("admin", "agent", "anonymous") */
	const char *actor; /* for the audit log: "admin", "agent", "team:foo", "anonymous" */
};

/* What a route needs. */
enum deployd_perm {
	DEPLOYD_PERM_OPEN,  /* no token */
	DEPLOYD_PERM_READ,  /* admin, team, agent */
	DEPLOYD_PERM_WRITE, /* admin, team */
	DEPLOYD_PERM_AGENT, /* admin, agent */
	DEPLOYD_PERM_ADMIN, /* admin */
};

typedef void (*deployd_handler_fn)(struct http_request *req, const struct deployd_principal *who,
				   void *data);

struct deployd_route {
	const char *method;
	const char *pattern; /* http_server.h syntax */
	deployd_handler_fn handler;
	void *data;
	enum deployd_perm perm;
	unsigned flags;	       /* HTTP_ROUTE_STREAM_BODY */
	size_t max_body_bytes; /* 0 = the server's */
};

/*
 * A role: init before the server starts (allocate, open what it needs, add routes), start once
 * the server listens (threads), stop before the server goes, free after. Any hook may be NULL.
 * metrics appends Prometheus text; ready reports readiness for /readyz (NULL = ready).
 */
struct deployd_role {
	const char *name; /* "cluster" */
	unsigned bit;	  /* DEPLOYD_ROLE_* */
	int (*init)(struct deployd *d, void **ret_state, struct cd_error *err);
	int (*start)(struct deployd *d, void *state, struct cd_error *err);
	void (*stop)(struct deployd *d, void *state);
	void (*free)(struct deployd *d, void *state);
	void (*metrics)(struct deployd *d, void *state, struct strbuf *out);
	bool (*ready)(struct deployd *d, void *state);
};

/* The roles this binary knows (central/roles.c holds the table; a new role adds one line
 * there). Writes up to max pointers into ret and returns how many. */
extern const struct deployd_role deployd_role_cluster;
extern const struct deployd_role deployd_role_artifacts;
size_t deployd_roles_known(const struct deployd_role **ret, size_t max);

/* ---- the instance (main.c owns it) ---- */

struct deployd_options {
	const struct deployd_config *config;
	struct store *store;	/* borrowed */
	const char *token_path; /* NULL with insecure_no_auth */
	const char *advertise_url;
};

int deployd_new(const struct deployd_options *o, struct deployd **ret, struct cd_error *err);
void deployd_free(struct deployd *d);

const struct deployd_config *deployd_config(const struct deployd *d);
struct store *deployd_store(const struct deployd *d);
const char *deployd_advertise_url(const struct deployd *d);
/* The agent token (for pushes to taskd); NULL with --insecure-no-auth. */
const char *deployd_agent_token(const struct deployd *d);

/* Roles call this from init. Copies the routes. */
int deployd_add_routes(struct deployd *d, const struct deployd_route *routes, size_t n);

/* Init the configured roles, start the server (listening), start the roles. */
int deployd_start(struct deployd *d, struct cd_error *err);
/* Stop roles and server (reverse order). */
void deployd_stop(struct deployd *d);
int deployd_port(const struct deployd *d);

/* Access log and metrics hooks for main.c. */
void deployd_set_access_log(struct deployd *d,
			    void (*fn)(const struct http_access_entry *e, void *userdata),
			    void *userdata);

/* ---- token file ---- */

/*
 * Token file: one "<role> <64 hex>" per line, role = admin | agent | team:<name>, '#' comments.
 * deployd_tokens_ensure() creates it (0600, in a 0700 directory) with a fresh admin and agent
 * token when it does not exist and create is true.
 */
int deployd_tokens_ensure(const char *path, bool create, struct cd_error *err);

/* ---- helpers for handlers ---- */

/* Reply with a problem built by a role (p->status). */
int deployd_reply_problem(struct http_request *req, const struct problem *p);
/* page_size query (default def, 1..max) and page_token; 400 replied on error (returns < 0). */
int deployd_page_params(struct http_request *req, size_t def, size_t max, size_t *ret_size,
			const char **ret_token);
