/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api.h — taskd's REST API: the route table over agent/manager (PutTask, ListTasks,
 * GetTaskState, SetTaskState, DELETE, logs with tail/follow, events long-poll, /metrics).
 * Owns request decoding, bearer-token checks (taskd's own token or the cluster's agent token,
 * constant-time) and reply shapes. Does not own the server (api/http_server.h) or the tasks.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "agent/manager.h"
#include "api/http_server.h"

struct taskd_api {
	struct manager *manager;
	const char *token;	 /* taskd's own token (required) */
	const char *agent_token; /* the cluster manager's agent token; NULL = none */
	size_t log_follow_max_s; /* longest follow before the server ends it; 0 = unlimited */
};

#define TASKD_API_N_ROUTES 8
/* Fill out with the routes bound to api (api must outlive the server). */
void taskd_api_routes(struct taskd_api *api, struct http_route out[static TASKD_API_N_ROUTES]);

enum taskd_api_auth {
	TASKD_AUTH_NONE = 0,
	TASKD_AUTH_LOCAL,   /* taskd's own token (taskctl, operators) */
	TASKD_AUTH_MANAGER, /* the cluster's agent token (deployd pushing tasks) */
};
/* Exposed for unit tests: which token the Authorization header value carries. */
enum taskd_api_auth taskd_api_authorized(const struct taskd_api *api, const char *authorization);
