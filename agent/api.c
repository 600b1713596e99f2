/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/logfile.h"
#include "agent/taskdir.h"
#include "api/json.h"
#include "api/jsonw.h"
#include "lib/macro.h"
#include "lib/str.h"

#define LOG_TAIL_MAX_BYTES (8u * 1024 * 1024)
#define EVENTS_MAX_WAIT_S 60
#define EVENTS_LIMIT 1000
#define FOLLOW_POLL_USEC (200 * USEC_PER_MSEC)

/* The principals the server hands back (http_request_principal()): their addresses matter. */
static const char principal_local[] = "local";
static const char principal_manager[] = "manager";

size_t taskd_api_tokens(const struct taskd_api *api, struct http_token out[static 2])
{
	size_t n = 0;

	out[n++] = (struct http_token){ .secret = api->token, .principal = principal_local };
	if (api->agent_token)
		out[n++] = (struct http_token){ .secret = api->agent_token,
						.principal = principal_manager };
	return n;
}

enum taskd_api_auth taskd_api_principal(const void *principal)
{
	if (principal == principal_manager)
		return TASKD_AUTH_MANAGER;
	if (principal == principal_local)
		return TASKD_AUTH_LOCAL;
	return TASKD_AUTH_NONE;
}

/* Reply with what w holds (one JSON value a manager call wrote), or 500 when it could not. */
static void reply_jsonw(struct http_request *req, int status, struct jsonw *w)
{
	if (jsonw_finish(w) < 0)
		http_reply_error(req, 500, "out of memory");
	else
		http_reply_bytes(req, status, "application/json", w->buf.buf, w->buf.len);
}

static void put_task(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	_cleanup_problem_ struct problem p;
	_cleanup_(jsonw_release) struct jsonw w = JSONW_INIT;
	char id[TASK_ID_BUF];
	json_t *body = NULL;
	enum taskd_api_auth who;
	int r;

	who = taskd_api_principal(http_request_principal(req));
	problem_init(&p, 400, NULL, NULL);
	r = http_request_json(req, &body, &p);
	if (r < 0) {
		http_reply_problem(req, &p);
		return;
	}
	/* Tasks the cluster manager pushed are reported back to it; local ones never are (the
	 * manager would refuse them and, by the protocol's healing, stop them). */
	r = manager_put_task(api->manager, body, who == TASKD_AUTH_MANAGER, &w, id, &p);
	json_decref(body);
	if (r == 200 || r == 201) {
		char loc[128];

		snprintf(loc, sizeof(loc), "/v1/tasks/%s", id);
		http_reply_header(req, "Location", loc);
		reply_jsonw(req, r, &w);
		return;
	}
	if (r == -ENOMEM)
		http_reply_error(req, 500, "out of memory");
	else
		http_reply_problem(req, &p);
}

static void list_tasks(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	const char *job = http_request_query(req, "job");
	const char *state = http_request_query(req, "state");
	_cleanup_(jsonw_release) struct jsonw w = JSONW_INIT;
	int r;

	r = manager_list_tasks(api->manager, job && *job ? job : NULL,
			       state && *state ? state : NULL, &w);
	if (r == -EINVAL) {
		http_reply_error(req, 400, "state must be PENDING, RUNNING, DONE or ERROR");
		return;
	}
	if (r < 0) {
		http_reply_error(req, 500, "%s", strerror(-r));
		return;
	}
	reply_jsonw(req, 200, &w);
}

static void get_task(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	const char *id = http_request_param(req, "id");
	_cleanup_(jsonw_release) struct jsonw w = JSONW_INIT;
	int r;

	(void)strbuf_grow(&w.buf, 2048); /* one allocation for a typical task with its spec */
	r = manager_get_task(api->manager, id, true, &w);
	if (r == -ENOENT) {
		http_reply_error(req, 404, "no task %s on this host", id);
		return;
	}
	if (r < 0) {
		http_reply_error(req, 500, "%s", strerror(-r));
		return;
	}
	reply_jsonw(req, 200, &w);
}

static void set_state(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	const char *id = http_request_param(req, "id");
	_cleanup_problem_ struct problem p;
	_cleanup_(jsonw_release) struct jsonw w = JSONW_INIT;
	json_t *body = NULL;
	const char *state = NULL;
	int r;

	problem_init(&p, 400, NULL, NULL);
	r = http_request_json(req, &body, &p);
	if (r < 0) {
		http_reply_problem(req, &p);
		return;
	}
	{
		static const char *const allowed[] = { "state", NULL };

		if (api_json_expect_object(body, "", &p) >= 0) {
			api_json_check_unknown(body, "", allowed, &p);
			if (api_json_get_string(body, "", "state", true, 1, 16, &state, &p) > 0 &&
			    !streq(state, "DONE") && !streq(state, "RUNNING"))
				problem_add_error(&p, "/state", "must be \"DONE\" or \"RUNNING\"");
		}
	}
	if (api_json_finish_validation(&p) < 0) {
		json_decref(body);
		http_reply_problem(req, &p);
		return;
	}
	r = manager_set_state(api->manager, id, state, &w);
	json_decref(body);
	if (r == -ENOENT)
		http_reply_error(req, 404, "no task %s on this host", id);
	else if (r < 0)
		http_reply_error(req, 500, "%s", strerror(-r));
	else
		reply_jsonw(req, 200, &w);
}

static void delete_task(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	const char *id = http_request_param(req, "id");
	int r;

	r = manager_delete_task(api->manager, id);
	if (r == -ENOENT)
		http_reply_error(req, 404, "no task %s on this host", id);
	else if (r == -EBUSY)
		http_reply_error(req, 409, "task %s is not finished: stop it first (state DONE)",
				 id);
	else if (r < 0)
		http_reply_error(req, 500, "%s", strerror(-r));
	else
		http_reply_empty(req, 204);
}

/* Copy what was appended to the log since *offset; follows a rotation by draining the old file
 * (still open as *fd) before switching to the new one. Returns -EPIPE when the client left. */
static int follow_step(struct http_request *req, int dirfd, int *fd, uint64_t *offset,
		       bool *ret_progress)
{
	char buf[65536];
	struct stat cur, byname;

	*ret_progress = false;
	for (;;) {
		ssize_t n = pread(*fd, buf, sizeof(buf), (off_t)*offset);

		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		if (http_reply_write(req, buf, (size_t)n) < 0)
			return -EPIPE;
		*offset += (uint64_t)n;
		*ret_progress = true;
	}
	if (fstat(*fd, &cur) < 0)
		return -errno;
	if (fstatat(dirfd, TASKDIR_LOG, &byname, AT_SYMLINK_NOFOLLOW) == 0 &&
	    byname.st_ino != cur.st_ino) {
		int nfd = openat(dirfd, TASKDIR_LOG, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

		if (nfd >= 0) {
			close(*fd);
			*fd = nfd;
			*offset = 0;
			*ret_progress = true;
		}
	} else if ((uint64_t)cur.st_size < *offset) {
		*offset = 0; /* truncated (keep = 0 rotation) */
	}
	return 0;
}

static void get_logs(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	const char *id = http_request_param(req, "id");
	const char *follow_s = http_request_query(req, "follow");
	bool follow = follow_s && (streq(follow_s, "1") || streq(follow_s, "true") || !*follow_s);
	_cleanup_free_ char *dir = NULL;
	_cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
	_cleanup_close_ int dirfd = -EBADF, fd = -EBADF;
	uint64_t tail = 0, offset = 0;
	int r;

	r = http_request_query_u64(req, "tail", UINT64_MAX, UINT64_MAX, &tail);
	if (r < 0) {
		http_reply_error(req, 400, "tail must be a non-negative integer");
		return;
	}
	r = manager_task_dir(api->manager, id, &dir);
	if (r == -ENOENT) {
		http_reply_error(req, 404, "no task %s on this host", id);
		return;
	}
	if (r < 0 || (dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		http_reply_error(req, 500, "cannot open the task's log directory");
		return;
	}
	r = logfile_tail(dirfd, TASKDIR_LOG, tail > SIZE_MAX ? SIZE_MAX : (size_t)tail,
			 LOG_TAIL_MAX_BYTES, &out, &offset, NULL);
	if (r < 0) {
		http_reply_error(req, 500, "cannot read the log: %s", strerror(-r));
		return;
	}
	if (!follow) {
		http_reply_bytes(req, 200, "text/plain; charset=utf-8", out.buf ? out.buf : "",
				 out.len);
		return;
	}
	if (http_reply_start(req, 200, "text/plain; charset=utf-8") < 0)
		return;
	if (out.len && http_reply_write(req, out.buf, out.len) < 0)
		return;
	fd = openat(dirfd, TASKDIR_LOG, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	{
		usec_t end = api->log_follow_max_s ?
				     clock_mono_usec() + api->log_follow_max_s * USEC_PER_SEC :
				     0;

		while (!http_request_stopping(req) && (!end || clock_mono_usec() < end)) {
			bool progress = false, active;

			if (fd < 0) {
				fd = openat(dirfd, TASKDIR_LOG, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
				offset = 0;
			}
			/* Read "active" before draining: a task that ended before the drain has
			 * all its output in the file by then, so nothing is cut off. */
			active = manager_task_active(api->manager, id);
			if (fd >= 0 && follow_step(req, dirfd, &fd, &offset, &progress) == -EPIPE)
				return;
			if (!active && !progress)
				break;
			/* a task change or taskd's shutdown (manager_wake_waiters) ends the
			 * pause early; file growth is polled */
			if (!progress)
				manager_wait_change(api->manager, FOLLOW_POLL_USEC);
		}
	}
	http_reply_end(req);
}

static bool req_stopping(void *data)
{
	return http_request_stopping(data);
}

static void get_events(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	uint64_t after = 0, wait = 0;
	json_t *j = NULL;
	int r;

	if (http_request_query_u64(req, "after", 0, UINT64_MAX, &after) < 0 ||
	    http_request_query_u64(req, "wait", 0, EVENTS_MAX_WAIT_S, &wait) < 0) {
		http_reply_error(req, 400, "after must be an integer, wait an integer 0..%d",
				 EVENTS_MAX_WAIT_S);
		return;
	}
	r = manager_events(api->manager, after, wait * USEC_PER_SEC, EVENTS_LIMIT, req_stopping,
			   req, &j);
	if (r < 0) {
		http_reply_error(req, 500, "%s", strerror(-r));
		return;
	}
	http_reply_json_new(req, 200, j);
}

static void get_metrics(struct http_request *req, void *data)
{
	struct taskd_api *api = data;
	_cleanup_strbuf_ struct strbuf out = STRBUF_INIT;

	if (manager_metrics(api->manager, &out) < 0) {
		http_reply_error(req, 500, "out of memory");
		return;
	}
	http_reply_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8",
			 out.buf ? out.buf : "", out.len);
}

void taskd_api_routes(struct taskd_api *api, struct http_route out[static TASKD_API_N_ROUTES])
{
	/* None is open: the server checks the bearer token (taskd's own or the manager's, see
	 * taskd_api_tokens()) before routing, so unknown paths and methods need one too. */
	const struct http_route routes[TASKD_API_N_ROUTES] = {
		{ "PUT", "/v1/tasks", put_task, api, 0, 0 },
		{ "GET", "/v1/tasks", list_tasks, api, 0, 0 },
		{ "GET", "/v1/tasks/{id}", get_task, api, 0, 0 },
		{ "PUT", "/v1/tasks/{id}/state", set_state, api, 0, 0 },
		{ "DELETE", "/v1/tasks/{id}", delete_task, api, 0, 0 },
		{ "GET", "/v1/tasks/{id}/logs", get_logs, api, 0, 0 },
		{ "GET", "/v1/events", get_events, api, 0, 0 },
		{ "GET", "/metrics", get_metrics, api, 0, 0 },
	};

	memcpy(out, routes, sizeof(routes));
}
