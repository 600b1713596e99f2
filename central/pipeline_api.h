/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pipeline_api.h — the PipelinesService REST API (`deployd --role pipelines`): pipelines,
 * schema versions (ETag/If-Match), runs (Idempotency-Key), cancel, retry, approve, state and
 * stage logs. Owns request decoding (api/pipeline.h validates, 422 lists every problem),
 * authorisation (owners change only their own pipelines: 403) and the JSON shapes of replies.
 * Does not own storage (store_pipelines.h) or execution (runner.h): it writes rows and kicks
 * the runner.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "api/http_server.h"
#include "central/runner.h"
#include "central/store_pipelines.h"

/* Who may do what: admin tokens act on every pipeline; team tokens (owner set) read everything
 * and change only pipelines whose owner is theirs. */
struct pipelines_token {
	const char *token;
	const char *owner; /* team name; NULL = admin */
};

struct pipeline_api_config {
	struct store *store;
	struct runner *runner;		      /* kicked after writes that queue work; may be NULL */
	const struct pipelines_token *tokens; /* copied */
	size_t n_tokens;
	/* No tokens at all: every caller is admin "anonymous" (deployd --insecure-no-auth, which
	 * only a loopback listener accepts). */
	bool insecure_no_auth;
	/* Where stage logs are (<log_dir>/<pipeline>/<run>/<stage>.<attempt>.log); may be NULL. */
	const char *log_dir;
	/* Planned DAGs (pipeline_run.h), borrowed: give the runner's (runner_config.dags) so a run
	 * view and the runner plan a schema version once between them. NULL = plan every time. */
	struct dag_cache *dags;
};

struct pipeline_api;

int pipeline_api_new(const struct pipeline_api_config *config, struct pipeline_api **ret,
		     struct cd_error *err);
void pipeline_api_free(struct pipeline_api *api);
/* The routes to register with a plain HTTP server: they check the bearer token against
 * config.tokens themselves, so they are flagged HTTP_ROUTE_OPEN. Array owned by api. */
const struct http_route *pipeline_api_routes(struct pipeline_api *api, size_t *ret_n);

/* For front-ends with their own authentication (deployd's token file and principals): every
 * endpoint, whether it changes anything (write: admins and teams only), and the call that runs
 * it for an authenticated caller. team NULL = admin (may change every pipeline); otherwise the
 * caller may change only pipelines owned by team (403). actor is recorded as created_by. */
#define PIPELINE_API_N_ENDPOINTS 14
struct pipeline_api_endpoint {
	struct pipeline_api *api;
	size_t index;
	const char *method, *pattern;
	bool write;
};
const struct pipeline_api_endpoint *pipeline_api_endpoints(struct pipeline_api *api, size_t *ret_n);
void pipeline_api_handle(const struct pipeline_api_endpoint *e, struct http_request *req,
			 const char *actor, const char *team);

/* Path of a stage attempt's log, <log_dir>/<pipeline>/<run>/<h>.<attempt>.log, into buf. Stage
 * names may hold any character ('/' too) and be 256 bytes long, so <h> is the first 32 hex
 * digits of the name's SHA-256. Returns 0, -ENAMETOOLONG or -EIO. */
int pipeline_log_path(const char *log_dir, const char *pipeline_id, int64_t run, const char *stage,
		      int64_t attempt, char *buf, size_t size);
