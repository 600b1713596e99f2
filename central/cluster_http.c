/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster role of deployd: REST endpoints of the cluster manager (jobs, hosts, task
 * reports; shapes in docs/deployd.md and docs/protocol-cluster.md), the controller thread that
 * runs cluster_tick(), and the push transport to taskd over api/http_client.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http_client.h"
#include "api/json.h"
#include "api/jsonw.h"
#include "api/names.h"
#include "central/cluster.h"
#include "central/deployd.h"
#include "lib/macro.h"
#include "lib/str.h"

#define MAX_CLIENTS 4096

struct client_entry {
	char *addr;
	struct http_client *client;
};

struct cluster_role {
	struct deployd *d;
	struct cluster *cluster;
	char **mirrors;
	pthread_mutex_t clients_lock;
	struct client_entry *clients;
	size_t n_clients;
	pthread_t thread;
	bool thread_started;
	bool stopping;
	bool ticked; /* one controller round done: /readyz */
	uint64_t tick_errors;
};

/* ---- push transport ------------------------------------------------------------------------ */

static struct http_client *client_for(struct cluster_role *cr, const char *addr,
				      struct cd_error *err)
{
	const struct deployd_config *cfg = deployd_config(cr->d);
	struct http_client_config hc = {
		.base_url = addr,
		.bearer_token = deployd_agent_token(cr->d),
		.connect_timeout_ms = MIN(2000u, cfg->push_timeout_ms),
		.timeout_ms = cfg->push_timeout_ms,
		.max_attempts = 2,
	};
	struct http_client *c = NULL;

	pthread_mutex_lock(&cr->clients_lock);
	for (size_t i = 0; i < cr->n_clients; i++)
		if (streq(cr->clients[i].addr, addr)) {
			c = cr->clients[i].client;
			goto out;
		}
	if (cr->n_clients < MAX_CLIENTS && http_client_new(&hc, &c, err) >= 0) {
		struct client_entry *n = reallocarray(cr->clients, cr->n_clients + 1, sizeof(*n));
		char *a = strdup(addr);

		if (!n || !a) {
			free(a);
			if (n)
				cr->clients = n;
			http_client_free(c);
			c = NULL;
			cd_error_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		cr->clients = n;
		n[cr->n_clients].addr = a;
		n[cr->n_clients].client = c;
		cr->n_clients++;
	}
out:
	pthread_mutex_unlock(&cr->clients_lock);
	return c;
}

static int status_to_errno(long status, const json_t *body, struct cd_error *err)
{
	struct problem p;
	char buf[256];
	int code;

	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 404:
		code = -ENOENT;
		break;
	case 409:
		code = -EEXIST;
		break;
	case 400:
	case 413:
	case 422:
		code = -EINVAL;
		break;
	case 401:
	case 403:
		code = -EACCES;
		break;
	default:
		code = -EIO;
		break;
	}
	if (http_client_problem(status, body, &p) >= 0) {
		cd_error_set(err, code, "taskd: %s",
			     http_client_problem_format(&p, buf, sizeof(buf)));
		problem_release(&p);
	} else
		cd_error_set(err, code, "taskd answered %ld", status);
	return code;
}

static void state_from(const json_t *body, char ret_state[16])
{
	const char *s = json_string_value(json_object_get(body, "state"));

	snprintf(ret_state, 16, "%s", s ? s : "");
}

static int push_put(void *data, const char *addr, const char *body, char ret_state[16],
		    struct cd_error *err)
{
	struct cluster_role *cr = data;
	struct http_client *c = client_for(cr, addr, err);
	json_t *req, *resp = NULL;
	long status = 0;
	int r;

	if (!c)
		return err && err->code ? err->code : -ENOMEM;
	req = json_loads(body, 0, NULL);
	if (!req)
		return cd_error_set(err, -ENOMEM, "bad PutTask body");
	r = http_client_json(c, "PUT", "/v1/tasks", req, &resp, &status, err);
	json_decref(req);
	if (r >= 0) {
		r = status_to_errno(status, resp, err);
		if (r >= 0)
			state_from(resp, ret_state);
	}
	json_decref(resp);
	return r;
}

static int push_state(void *data, const char *addr, const char *task_id, const char *state,
		      char ret_state[16], struct cd_error *err)
{
	struct cluster_role *cr = data;
	struct http_client *c = client_for(cr, addr, err);
	_cleanup_free_ char *esc = http_client_escape(task_id);
	char path[256];
	json_t *resp = NULL;
	long status = 0;
	int r;

	if (!c || !esc)
		return err && err->code ? err->code : -ENOMEM;
	snprintf(path, sizeof(path), "/v1/tasks/%s/state", esc);
	r = http_client_json(c, "PUT", path, json_pack("{s:s}", "state", state), &resp, &status,
			     err);
	if (r >= 0) {
		r = status_to_errno(status, resp, err);
		if (r >= 0)
			state_from(resp, ret_state);
	}
	json_decref(resp);
	return r;
}

static int push_delete(void *data, const char *addr, const char *task_id, struct cd_error *err)
{
	struct cluster_role *cr = data;
	struct http_client *c = client_for(cr, addr, err);
	_cleanup_free_ char *esc = http_client_escape(task_id);
	char path[256];
	json_t *resp = NULL;
	long status = 0;
	int r;

	if (!c || !esc)
		return err && err->code ? err->code : -ENOMEM;
	snprintf(path, sizeof(path), "/v1/tasks/%s", esc);
	r = http_client_json(c, "DELETE", path, NULL, &resp, &status, err);
	if (r >= 0)
		r = status_to_errno(status, resp, err);
	json_decref(resp);
	return r;
}

static const struct cluster_push_ops push_ops = { push_put, push_state, push_delete };

/* ---- JSON views ---------------------------------------------------------------------------- */

static json_t *ts_json(usec_t t)
{
	char buf[40];

	return t ? json_string(clock_format_rfc3339(t, buf, sizeof(buf))) : json_null();
}

/* The job views are written with jsonw, not built as jansson trees: GetJobState is the hot
 * read (pipelines and dashboards poll it) and the tree cost more than the query. */
static void write_task(struct jsonw *w, const struct store_job *j, const struct store_task *t)
{
	char url[512];

	snprintf(url, sizeof(url), "task://%s/%s/%s/%s", j->region, j->zone, j->name, t->task_id);
	jsonw_object_begin(w);
	jsonw_kstring(w, "task_id", t->task_id);
	jsonw_kstring(w, "task", url);
	jsonw_kint(w, "index", t->index);
	jsonw_kint(w, "version", t->version);
	jsonw_kstring(w, "host_id", t->host_id[0] ? t->host_id : NULL);
	jsonw_kstring(w, "desired", t->desired);
	jsonw_kstring(w, "state", t->state);
	jsonw_kstring(w, "reason", t->reason);
	jsonw_kstring(w, "message", t->message);
	jsonw_kbool(w, "healthy", t->healthy);
	jsonw_key(w, "exit_code");
	if (t->has_exit_code)
		jsonw_int(w, t->exit_code);
	else
		jsonw_null(w);
	jsonw_key(w, "signal");
	if (t->has_signal)
		jsonw_int(w, t->signal);
	else
		jsonw_null(w);
	jsonw_kint(w, "restarts", t->restarts);
	jsonw_ktime(w, "created_at", t->created_at);
	jsonw_ktime(w, "updated_at", t->updated_at);
	jsonw_object_end(w);
}

/* The job's fields, inside an object the caller opened. */
static void write_job_fields(struct jsonw *w, const struct store_job *j, bool with_spec)
{
	char url[512];

	snprintf(url, sizeof(url), "job://%s/%s/%s", j->region, j->zone, j->name);
	jsonw_kstring(w, "job_id", j->job_id);
	jsonw_kstring(w, "job", url);
	jsonw_kstring(w, "name", j->name);
	jsonw_kstring(w, "region", j->region);
	jsonw_kstring(w, "zone", j->zone);
	jsonw_kint(w, "version", j->version);
	jsonw_kint(w, "stable_version", j->stable_version);
	jsonw_kstring(w, "desired", j->desired);
	jsonw_kstring(w, "state", j->state);
	jsonw_kstring(w, "reason", j->reason);
	jsonw_key(w, "rollout");
	jsonw_object_begin(w);
	jsonw_kstring(w, "state", j->rollout[0] ? j->rollout : "done");
	jsonw_kstring(w, "reason", j->rollout_reason);
	jsonw_kint(w, "max_unavailable", j->max_unavailable);
	jsonw_kint(w, "min_healthy_s", j->min_healthy_s);
	jsonw_kbool(w, "auto_rollback", j->auto_rollback);
	jsonw_object_end(w);
	jsonw_kstring(w, "updated_by", j->updated_by);
	jsonw_ktime(w, "created_at", j->created_at);
	jsonw_ktime(w, "updated_at", j->updated_at);
	if (with_spec) {
		/* stored in canonical form by PutJob: valid JSON */
		jsonw_key(w, "spec");
		jsonw_raw(w, j->spec);
	}
}

static void set_etag(struct http_request *req, int64_t version)
{
	char etag[32];

	snprintf(etag, sizeof(etag), "\"%lld\"", (long long)version);
	http_reply_header(req, "ETag", etag);
}

/* ---- handlers ------------------------------------------------------------------------------ */

static int url_from_req(struct http_request *req, struct job_url *u)
{
	struct cd_error err = {};

	if (job_url_from_parts(http_request_param(req, "region"), http_request_param(req, "zone"),
			       http_request_param(req, "name"), u, &err) < 0) {
		http_reply_error(req, 404, "%s", cd_error_message(&err));
		return -EINVAL;
	}
	return 0;
}

/* ?max_unavailable=&min_healthy_s=&auto_rollback= ; 400 replied on error */
static int rollout_opts(struct http_request *req, struct cluster_rollout_opts *o)
{
	const char *ar = http_request_query(req, "auto_rollback");
	uint64_t mu, mh;

	*o = (struct cluster_rollout_opts){ 0, -1, -1 };
	if (http_request_query_u64(req, "max_unavailable", 0, 10000, &mu) < 0 ||
	    http_request_query_u64(req, "min_healthy_s", 0, 86400, &mh) < 0) {
		http_reply_error(req, 400, "max_unavailable: 1..10000; min_healthy_s: 0..86400");
		return -EINVAL;
	}
	if (http_request_query(req, "max_unavailable") && mu == 0) {
		http_reply_error(req, 400, "max_unavailable must be >= 1");
		return -EINVAL;
	}
	o->max_unavailable = (int)mu;
	if (http_request_query(req, "min_healthy_s"))
		o->min_healthy_s = (int)mh;
	if (ar) {
		if (streq(ar, "true") || streq(ar, "1"))
			o->auto_rollback = 1;
		else if (streq(ar, "false") || streq(ar, "0"))
			o->auto_rollback = 0;
		else {
			http_reply_error(req, 400, "auto_rollback must be true or false");
			return -EINVAL;
		}
	}
	return 0;
}

static void h_put_job(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct cluster_role *cr = data;
	_cleanup_jobspec_ struct jobspec *spec = NULL;
	struct cluster_rollout_opts o;
	struct cluster_put_result res = {};
	struct job_url u;
	json_t *body = NULL;
	struct problem p;
	char url[512];
	int r;

	if (url_from_req(req, &u) < 0 || rollout_opts(req, &o) < 0)
		return;
	problem_init(&p, 0, NULL, NULL);
	r = http_request_json(req, &body, &p);
	if (r >= 0) {
		r = jobspec_from_json(body, &spec, &p);
		json_decref(body);
	}
	if (r >= 0)
		r = cluster_put_job(cr->cluster, who->actor, &u, spec,
				    http_request_header(req, "If-Match"),
				    http_request_header(req, "If-None-Match"), &o, &res, &p);
	if (r < 0) {
		if (!p.status)
			problem_set(&p, 500, NULL, "Internal Server Error");
		http_reply_problem(req, &p);
		problem_release(&p);
		return;
	}
	problem_release(&p);
	job_url_format(&u, url, sizeof(url));
	set_etag(req, res.version);
	http_reply_json_new(req, res.created ? 201 : 200,
			    json_pack("{s:s, s:s, s:I, s:b, s:b}", "job_id", res.job_id, "job", url,
				      "version", (json_int_t)res.version, "created", res.created,
				      "changed", res.changed));
}

static void reply_job(struct http_request *req, struct cluster_role *cr, bool with_spec,
		      bool with_tasks, bool tasks_only)
{
	struct store_task *tasks = NULL;
	struct jsonw w = JSONW_INIT;
	struct store_job j = {};
	struct cd_error err = {};
	struct job_url u;
	size_t n = 0;
	int r;

	if (url_from_req(req, &u) < 0)
		return;
	r = cluster_get_job(cr->cluster, &u, &j, with_tasks ? &tasks : NULL, &n, &err);
	if (r == -ENOENT) {
		http_reply_error(req, 404, "no job %s in %s/%s", u.name, u.region, u.zone);
		return;
	}
	if (r < 0) {
		http_reply_error(req, 500, "%s", cd_error_message(&err));
		return;
	}
	strbuf_grow(&w.buf, 1024 + n * 512); /* one allocation for a typical answer */
	jsonw_object_begin(&w);
	if (tasks_only)
		jsonw_kstring(&w, "job_id", j.job_id);
	else
		write_job_fields(&w, &j, with_spec);
	if (with_tasks) {
		jsonw_key(&w, "tasks");
		jsonw_array_begin(&w);
		for (size_t i = 0; i < n; i++)
			write_task(&w, &j, &tasks[i]);
		jsonw_array_end(&w);
	}
	jsonw_object_end(&w);
	set_etag(req, j.version);
	if (jsonw_finish(&w) < 0)
		http_reply_error(req, 500, "out of memory");
	else
		http_reply_bytes(req, 200, "application/json", w.buf.buf, w.buf.len);
	jsonw_release(&w);
	store_task_list_free(tasks, n);
	store_job_release(&j);
}

static void h_get_job(struct http_request *req, const struct deployd_principal *who, void *data)
{
	reply_job(req, data, true, false, false);
}

static void h_get_job_state(struct http_request *req, const struct deployd_principal *who,
			    void *data)
{
	reply_job(req, data, false, true, false);
}

static void h_get_job_tasks(struct http_request *req, const struct deployd_principal *who,
			    void *data)
{
	reply_job(req, data, false, true, true);
}

static void h_put_job_state(struct http_request *req, const struct deployd_principal *who,
			    void *data)
{
	static const char *const allowed[] = { "state", NULL };
	struct cluster_role *cr = data;
	const char *state = NULL;
	int64_t version = 0;
	struct job_url u;
	json_t *body = NULL;
	struct problem p;
	int r;

	if (url_from_req(req, &u) < 0)
		return;
	problem_init(&p, 0, NULL, NULL);
	r = http_request_json(req, &body, &p);
	if (r >= 0) {
		r = api_json_expect_object(body, "", &p);
		if (r >= 0) {
			api_json_check_unknown(body, "", allowed, &p);
			if (api_json_get_string(body, "", "state", true, 1, 16, &state, &p) > 0 &&
			    !streq(state, "RUNNING") && !streq(state, "DONE"))
				problem_add_error(&p, "/state", "must be \"RUNNING\" or \"DONE\"");
			r = api_json_finish_validation(&p);
		}
	}
	if (r >= 0)
		r = cluster_set_job_state(cr->cluster, who->actor, &u, state,
					  http_request_header(req, "If-Match"), &version, &p);
	json_decref(body);
	if (r < 0) {
		if (!p.status)
			problem_set(&p, 500, NULL, "Internal Server Error");
		http_reply_problem(req, &p);
		problem_release(&p);
		return;
	}
	problem_release(&p);
	reply_job(req, cr, false, true, false);
}

/* page_token for jobs: "<zone>/<name>" of the last job of the previous page */
static void h_list_jobs(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct cluster_role *cr = data;
	const char *zone = http_request_query(req, "zone");
	const char *token = NULL;
	char after_zone[128] = "", after_name[128] = "";
	struct store_job *jobs = NULL;
	struct cd_error err = {};
	size_t page, n = 0;
	json_t *arr;
	int r;

	if (deployd_page_params(req, 100, 1000, &page, &token) < 0)
		return;
	if (zone && !*zone)
		zone = NULL;
	if (token) {
		const char *slash = strchr(token, '/');

		if (!slash || (size_t)(slash - token) >= sizeof(after_zone) ||
		    strlen(slash + 1) >= sizeof(after_name)) {
			http_reply_error(req, 400, "invalid page_token");
			return;
		}
		memcpy(after_zone, token, (size_t)(slash - token));
		snprintf(after_name, sizeof(after_name), "%s", slash + 1);
	}
	/* One more than asked tells whether there is a next page. */
	r = store_job_list(deployd_store(cr->d), zone, token ? after_zone : NULL,
			   token ? after_name : NULL, page + 1, &jobs, &n, &err);
	if (r < 0) {
		http_reply_error(req, 500, "%s", cd_error_message(&err));
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n && i < page; i++) {
		char url[512];

		snprintf(url, sizeof(url), "job://%s/%s/%s", jobs[i].region, jobs[i].zone,
			 jobs[i].name);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:s?}", "job_id",
						     jobs[i].job_id, "job", url, "name",
						     jobs[i].name, "state", jobs[i].state,
						     "version", (json_int_t)jobs[i].version,
						     "reason", jobs[i].reason));
	}
	if (n > page) {
		char next[300];

		snprintf(next, sizeof(next), "%s/%s", jobs[page - 1].zone, jobs[page - 1].name);
		http_reply_json_new(req, 200,
				    json_pack("{s:o, s:s}", "jobs", arr, "next_page_token", next));
	} else
		http_reply_json_new(req, 200,
				    json_pack("{s:o, s:n}", "jobs", arr, "next_page_token"));
	store_job_list_free(jobs, n);
}

static json_t *host_to_json(const struct store_host *h)
{
	json_t *free_j = h->free_json ? json_loads(h->free_json, 0, NULL) : NULL;

	return json_pack("{s:s, s:s, s:s, s:s, s:{s:i, s:I, s:I}, s:o, s:s, s:o, s:o}", "host_id",
			 h->host_id, "zone", h->zone, "addr", h->addr, "state", h->state,
			 "resources", "vcpus", h->vcpus, "memory_mb", (json_int_t)h->memory_mb,
			 "storage_mb", (json_int_t)h->storage_mb, "free", free_j ?: json_null(),
			 "version", h->version, "registered_at", ts_json(h->registered_at),
			 "last_heartbeat", ts_json(h->last_heartbeat));
}

static void h_list_hosts(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct cluster_role *cr = data;
	const char *zone = http_request_query(req, "zone");
	const char *token = NULL;
	struct store_host *hosts = NULL;
	struct cd_error err = {};
	size_t page, n = 0;
	json_t *arr;
	int r;

	if (deployd_page_params(req, 100, 1000, &page, &token) < 0)
		return;
	if (zone && !*zone)
		zone = NULL;
	r = store_host_list(deployd_store(cr->d), zone, token, page + 1, &hosts, &n, &err);
	if (r < 0) {
		http_reply_error(req, 500, "%s", cd_error_message(&err));
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n && i < page; i++)
		json_array_append_new(arr, host_to_json(&hosts[i]));
	http_reply_json_new(req, 200,
			    json_pack("{s:o, s:s?}", "hosts", arr, "next_page_token",
				      n > page ? hosts[page - 1].host_id : NULL));
	store_host_list_free(hosts, n);
}

static void h_get_host(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct cluster_role *cr = data;
	struct store_host h = {};
	int r;

	r = store_host_get(deployd_store(cr->d), http_request_param(req, "id"), &h, NULL);
	if (r == -ENOENT) {
		http_reply_error(req, 404, "no host %s", http_request_param(req, "id"));
		return;
	}
	if (r < 0) {
		http_reply_error(req, 500, "store: %s", strerror(-r));
		return;
	}
	http_reply_json_new(req, 200, host_to_json(&h));
	store_host_release(&h);
}

static bool host_id_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
			    s[i]))
			return false;
	return true;
}

static void h_heartbeat(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct cluster_role *cr = data;
	const char *path_id = http_request_param(req, "id");
	struct cluster_heartbeat hb = {};
	struct cluster_reported_task *rt = NULL;
	const json_t *res = NULL, *tasks = NULL, *free_o = NULL;
	_cleanup_free_ char *free_text = NULL;
	struct store_task *desired = NULL;
	struct store_job j = {};
	int64_t vcpus = 0, mem = 0, sto = 0;
	size_t nd = 0;
	unsigned interval = 0;
	json_t *body = NULL, *arr;
	struct problem p;
	int r;

	problem_init(&p, 0, NULL, NULL);
	r = http_request_json(req, &body, &p);
	if (r >= 0)
		r = api_json_expect_object(body, "", &p);
	if (r < 0)
		goto fail;
	/* Lenient: unknown members are ignored (docs/protocol-cluster.md, versioning). */
	api_json_get_string(body, "", "host_id", true, 1, 63, &hb.host_id, &p);
	if (hb.host_id && !host_id_valid(hb.host_id))
		problem_add_error(&p, "/host_id", "must be 1..63 of [A-Za-z0-9._-]");
	else if (hb.host_id && !streq(hb.host_id, path_id))
		problem_add_error(&p, "/host_id", "must equal the host id in the URL (%s)",
				  path_id);
	api_json_get_string(body, "", "zone", true, 1, 63, &hb.zone, &p);
	if (api_json_get_string(body, "", "addr", true, 8, 255, &hb.addr, &p) > 0 &&
	    !startswith(hb.addr, "http://"))
		problem_add_error(&p, "/addr", "must be an http:// base URL");
	api_json_get_string(body, "", "version", false, 0, 31, &hb.version, &p);
	if (api_json_get_object(body, "", "resources", true, &res, &p) > 0) {
		api_json_get_int(res, "/resources", "vcpus", true, 0, 1 << 20, &vcpus, &p);
		api_json_get_int(res, "/resources", "memory_mb", true, 0, INT64_MAX >> 20, &mem,
				 &p);
		api_json_get_int(res, "/resources", "storage_mb", true, 0, INT64_MAX >> 20, &sto,
				 &p);
	}
	if (api_json_get_object(body, "", "free", false, &free_o, &p) > 0)
		free_text = json_dumps(free_o, JSON_COMPACT | JSON_SORT_KEYS);
	if (api_json_get_array(body, "", "tasks", false, 0, 100000, &tasks, &p) > 0) {
		size_t i;
		const json_t *t;

		rt = calloc(json_array_size(tasks) ?: 1, sizeof(*rt));
		if (!rt) {
			problem_set(&p, 500, NULL, "Internal Server Error");
			goto fail;
		}
		json_array_foreach(tasks, i, t) {
			char base[32];
			const char *id = NULL, *state = NULL;
			bool healthy = false;

			snprintf(base, sizeof(base), "/tasks/%zu", i);
			if (api_json_expect_object(t, base, &p) < 0)
				continue;
			if (api_json_get_string(t, base, "task_id", true, 1, 64, &id, &p) > 0)
				snprintf(rt[hb.n_tasks].task_id, sizeof(rt->task_id), "%s", id);
			if (api_json_get_string(t, base, "state", false, 1, 15, &state, &p) > 0)
				snprintf(rt[hb.n_tasks].state, sizeof(rt->state), "%s", state);
			api_json_get_bool(t, base, "healthy", false, &healthy, &p);
			rt[hb.n_tasks].healthy = healthy;
			if (id)
				hb.n_tasks++;
		}
		hb.tasks = rt;
	}
	r = api_json_finish_validation(&p);
	if (r < 0)
		goto fail;
	hb.vcpus = (int)vcpus;
	hb.memory_mb = mem;
	hb.storage_mb = sto;
	hb.free_json = free_text;
	r = cluster_heartbeat(cr->cluster, who->actor, &hb, &desired, &nd, &interval, &p);
	if (r < 0)
		goto fail;
	arr = json_array();
	for (size_t i = 0; i < nd; i++) {
		char url[512] = "";

		if (store_job_get_by_id(deployd_store(cr->d), desired[i].job_id, &j, NULL) >= 0) {
			snprintf(url, sizeof(url), "job://%s/%s/%s", j.region, j.zone, j.name);
			store_job_release(&j);
		}
		json_array_append_new(arr,
				      json_pack("{s:s, s:s, s:i, s:s}", "task_id",
						desired[i].task_id, "job", url, "index",
						desired[i].index, "state", desired[i].desired));
	}
	http_reply_json_new(req, 200,
			    json_pack("{s:s, s:s, s:i, s:o}", "host_id", hb.host_id, "state",
				      "READY", "heartbeat_interval_s", (int)interval,
				      "desired_tasks", arr));
	store_task_list_free(desired, nd);
	free(rt);
	json_decref(body);
	problem_release(&p);
	return;
fail:
	if (!p.status)
		problem_set(&p, 500, NULL, "Internal Server Error");
	http_reply_problem(req, &p);
	free(rt);
	json_decref(body);
	problem_release(&p);
}

static void h_notify(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct cluster_role *cr = data;
	const char *path_id = http_request_param(req, "id");
	struct cluster_notify n = {};
	int64_t seq = 0, restarts = 0, code = 0, sig = 0;
	bool applied = false, healthy = false;
	int has_healthy;
	json_t *body = NULL;
	struct problem p;
	int r;

	problem_init(&p, 0, NULL, NULL);
	r = http_request_json(req, &body, &p);
	if (r >= 0)
		r = api_json_expect_object(body, "", &p);
	if (r < 0)
		goto fail;
	if (api_json_get_string(body, "", "task_id", true, 1, 64, &n.task_id, &p) > 0 &&
	    !streq(n.task_id, path_id))
		problem_add_error(&p, "/task_id", "must equal the task id in the URL (%s)",
				  path_id);
	api_json_get_int(body, "", "seq", true, 1, INT64_MAX, &seq, &p);
	api_json_get_string(body, "", "host_id", true, 1, 63, &n.host_id, &p);
	if (api_json_get_string(body, "", "state", true, 1, 15, &n.state, &p) > 0 &&
	    !streq(n.state, "PENDING") && !streq(n.state, "RUNNING") && !streq(n.state, "DONE") &&
	    !streq(n.state, "ERROR"))
		problem_add_error(&p, "/state", "must be PENDING, RUNNING, DONE or ERROR");
	api_json_get_string(body, "", "reason", false, 0, 64, &n.reason, &p);
	api_json_get_string(body, "", "message", false, 0, 4096, &n.message, &p);
	has_healthy = api_json_get_bool(body, "", "healthy", false, &healthy, &p);
	n.has_exit_code = api_json_get_int(body, "", "exit_code", false, -1, 255, &code, &p) > 0 &&
			  code >= 0;
	n.has_signal = api_json_get_int(body, "", "signal", false, 0, 128, &sig, &p) > 0 && sig > 0;
	api_json_get_int(body, "", "restarts", false, 0, INT32_MAX, &restarts, &p);
	r = api_json_finish_validation(&p);
	if (r < 0)
		goto fail;
	n.seq = seq;
	n.exit_code = (int)code;
	n.signal = (int)sig;
	n.restarts = (int)restarts;
	/* A taskd that does not send "healthy" runs tasks without probes: RUNNING is healthy. */
	n.healthy = has_healthy > 0 ? healthy : streq(n.state, "RUNNING");
	r = cluster_notify(cr->cluster, who->actor, &n, &applied, &p);
	if (r < 0)
		goto fail;
	http_reply_json_new(req, 200, json_pack("{s:b}", "applied", applied));
	json_decref(body);
	problem_release(&p);
	return;
fail:
	if (!p.status)
		problem_set(&p, 500, NULL, "Internal Server Error");
	http_reply_problem(req, &p);
	json_decref(body);
	problem_release(&p);
}

/* ---- role ---------------------------------------------------------------------------------- */

static void *controller(void *arg)
{
	struct cluster_role *cr = arg;
	const struct deployd_config *cfg = deployd_config(cr->d);

	while (!__atomic_load_n(&cr->stopping, __ATOMIC_ACQUIRE)) {
		struct cd_error err = {};

		if (cluster_tick(cr->cluster, &err) < 0)
			__atomic_add_fetch(&cr->tick_errors, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&cr->ticked, true, __ATOMIC_RELEASE);
		cluster_wait(cr->cluster, (usec_t)cfg->tick_interval_ms * USEC_PER_MSEC);
	}
	return NULL;
}

static char **split_mirrors(const char *s)
{
	_cleanup_free_ char *copy = strdup(s);
	char **v = calloc(strlen(s) + 2, sizeof(char *));
	char *save = NULL;
	size_t n = 0;

	if (!copy || !v) {
		free(v);
		return NULL;
	}
	for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		v[n] = strdup(t);
		if (!v[n]) {
			strv_free(v);
			return NULL;
		}
		n++;
	}
	return v;
}

static int cluster_role_init(struct deployd *d, void **ret, struct cd_error *err)
{
	const struct deployd_config *cfg = deployd_config(d);
	struct cluster_role *cr = calloc(1, sizeof(*cr));
	struct cluster_config cc = {};
	const char *mirrors;
	int r;

	if (!cr)
		return cd_error_set(err, -ENOMEM, "out of memory");
	cr->d = d;
	pthread_mutex_init(&cr->clients_lock, NULL);
	mirrors = cfg->artifact_mirrors ?: deployd_advertise_url(d);
	cr->mirrors = split_mirrors(mirrors);
	if (!cr->mirrors) {
		free(cr);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	cc.region = cfg->region;
	cc.zone = cfg->zone;
	cc.heartbeat_interval_s = cfg->heartbeat_interval_s;
	cc.lost_after = cfg->lost_after;
	cc.progress_deadline_s = cfg->progress_deadline_s;
	cc.max_slot_failures = cfg->max_slot_failures;
	cc.mirrors = (const char *const *)cr->mirrors;
	cc.require_if_match = cfg->require_if_match;
	cc.push = &push_ops;
	cc.push_data = cr;
	r = cluster_new(deployd_store(d), &cc, &cr->cluster, err);
	if (r < 0) {
		strv_free(cr->mirrors);
		free(cr);
		return r;
	}
	{
		const struct deployd_route routes[] = {
			{ "GET", "/v1/jobs", h_list_jobs, cr, DEPLOYD_PERM_READ, 0, 0 },
			{ "PUT", "/v1/jobs/{region}/{zone}/{name}", h_put_job, cr,
			  DEPLOYD_PERM_WRITE, 0, 0 },
			{ "GET", "/v1/jobs/{region}/{zone}/{name}", h_get_job, cr,
			  DEPLOYD_PERM_READ, 0, 0 },
			{ "PUT", "/v1/jobs/{region}/{zone}/{name}/state", h_put_job_state, cr,
			  DEPLOYD_PERM_WRITE, 0, 0 },
			{ "GET", "/v1/jobs/{region}/{zone}/{name}/state", h_get_job_state, cr,
			  DEPLOYD_PERM_READ, 0, 0 },
			{ "GET", "/v1/jobs/{region}/{zone}/{name}/tasks", h_get_job_tasks, cr,
			  DEPLOYD_PERM_READ, 0, 0 },
			{ "GET", "/v1/hosts", h_list_hosts, cr, DEPLOYD_PERM_READ, 0, 0 },
			{ "GET", "/v1/hosts/{id}", h_get_host, cr, DEPLOYD_PERM_READ, 0, 0 },
			{ "POST", "/v1/hosts/{id}/heartbeat", h_heartbeat, cr, DEPLOYD_PERM_AGENT,
			  0, 0 },
			{ "POST", "/v1/tasks/{id}/state", h_notify, cr, DEPLOYD_PERM_AGENT, 0, 0 },
		};

		r = deployd_add_routes(d, routes, ARRAY_SIZE(routes));
	}
	if (r < 0) {
		cluster_free(cr->cluster);
		strv_free(cr->mirrors);
		free(cr);
		return cd_error_set(err, r, "out of memory");
	}
	*ret = cr;
	return 0;
}

static int cluster_role_start(struct deployd *d, void *state, struct cd_error *err)
{
	struct cluster_role *cr = state;
	int r = pthread_create(&cr->thread, NULL, controller, cr);

	if (r)
		return cd_error_set(err, -r, "starting the controller thread: %s", strerror(r));
	cr->thread_started = true;
	return 0;
}

static void cluster_role_stop(struct deployd *d, void *state)
{
	struct cluster_role *cr = state;

	if (!cr->thread_started)
		return;
	__atomic_store_n(&cr->stopping, true, __ATOMIC_RELEASE);
	cluster_wake(cr->cluster);
	pthread_join(cr->thread, NULL);
	cr->thread_started = false;
}

static void cluster_role_free(struct deployd *d, void *state)
{
	struct cluster_role *cr = state;

	cluster_free(cr->cluster);
	for (size_t i = 0; i < cr->n_clients; i++) {
		free(cr->clients[i].addr);
		http_client_free(cr->clients[i].client);
	}
	free(cr->clients);
	strv_free(cr->mirrors);
	pthread_mutex_destroy(&cr->clients_lock);
	free(cr);
}

static bool cluster_role_ready(struct deployd *d, void *state)
{
	struct cluster_role *cr = state;

	return __atomic_load_n(&cr->ticked, __ATOMIC_ACQUIRE);
}

static void cluster_role_metrics(struct deployd *d, void *state, struct strbuf *out)
{
	static const char *const states[] = { "PENDING", "RUNNING", "DONE", "ERROR" };
	struct cluster_role *cr = state;
	const struct deployd_config *cfg = deployd_config(d);
	struct store_job *jobs = NULL;
	struct store_host *hosts = NULL;
	struct cluster_stats s;
	size_t nj = 0, nh = 0;

	cluster_stats(cr->cluster, &s);
	strbuf_addf(out,
		    "# TYPE deployd_cluster_ticks_total counter\n"
		    "deployd_cluster_ticks_total %llu\n"
		    "# TYPE deployd_cluster_tick_errors_total counter\n"
		    "deployd_cluster_tick_errors_total %llu\n"
		    "# TYPE deployd_cluster_pushes_total counter\n"
		    "deployd_cluster_pushes_total{result=\"ok\"} %llu\n"
		    "deployd_cluster_pushes_total{result=\"failed\"} %llu\n"
		    "# TYPE deployd_cluster_hosts_lost_total counter\n"
		    "deployd_cluster_hosts_lost_total %llu\n"
		    "# TYPE deployd_cluster_tasks_placed_total counter\n"
		    "deployd_cluster_tasks_placed_total %llu\n"
		    "# TYPE deployd_cluster_rollbacks_total counter\n"
		    "deployd_cluster_rollbacks_total %llu\n",
		    (unsigned long long)s.ticks,
		    (unsigned long long)__atomic_load_n(&cr->tick_errors, __ATOMIC_RELAXED),
		    (unsigned long long)s.pushes_ok, (unsigned long long)s.pushes_failed,
		    (unsigned long long)s.hosts_lost, (unsigned long long)s.tasks_placed,
		    (unsigned long long)s.rollbacks);
	if (store_job_list(deployd_store(d), cfg->zone, NULL, NULL, 0, &jobs, &nj, NULL) >= 0) {
		strbuf_adds(out, "# TYPE deployd_jobs gauge\n");
		for (size_t k = 0; k < ARRAY_SIZE(states); k++) {
			size_t c = 0;

			for (size_t i = 0; i < nj; i++)
				c += streq(jobs[i].state, states[k]);
			strbuf_addf(out, "deployd_jobs{zone=\"%s\",state=\"%s\"} %zu\n", cfg->zone,
				    states[k], c);
		}
		store_job_list_free(jobs, nj);
	}
	if (store_host_list(deployd_store(d), cfg->zone, NULL, 0, &hosts, &nh, NULL) >= 0) {
		size_t ready = 0;

		for (size_t i = 0; i < nh; i++)
			ready += streq(hosts[i].state, "READY");
		strbuf_addf(out,
			    "# TYPE deployd_hosts gauge\n"
			    "deployd_hosts{zone=\"%s\",state=\"READY\"} %zu\n"
			    "deployd_hosts{zone=\"%s\",state=\"LOST\"} %zu\n",
			    cfg->zone, ready, cfg->zone, nh - ready);
		store_host_list_free(hosts, nh);
	}
}

const struct deployd_role deployd_role_cluster = {
	.name = "cluster",
	.bit = DEPLOYD_ROLE_CLUSTER,
	.init = cluster_role_init,
	.start = cluster_role_start,
	.stop = cluster_role_stop,
	.free = cluster_role_free,
	.metrics = cluster_role_metrics,
	.ready = cluster_role_ready,
};
