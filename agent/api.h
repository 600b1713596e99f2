/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api.h — taskd's REST API: the route table over agent/manager (PutTask, ListTasks,
 * GetTaskState, SetTaskState, DELETE, logs with tail/follow, events long-poll, /metrics).
 * Owns request decoding, the accepted tokens (taskd's own and the cluster's agent token, each
 * with a principal the server checks in constant time) and reply shapes. Does not own the server (api/http_server.h) or the tasks.
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
/*
 * The bearer tokens for the server config (http_server_config.tokens): taskd's own and, when
 * set, the manager's, each with its principal. The server compares every token in constant
 * time on each request (unknown paths and methods included). Returns how many (1 or 2);
 * secrets are borrowed from api.
 */
size_t taskd_api_tokens(const struct taskd_api *api, struct http_token out[static 2]);
/* Which of taskd_api_tokens()' principals authenticated a request (http_request_principal()). */
enum taskd_api_auth taskd_api_principal(const void *principal);
