/* SPDX-License-Identifier: Apache-2.0 */
#include "central/pipeline_api.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "api/names.h"
#include "api/pipeline.h"
#include "central/pipeline_run.h"
#include "lib/fs.h"
#include "lib/str.h"

#define PAGE_SIZE_DEFAULT 50
#define PAGE_SIZE_MAX 500
#define LOG_MAX_BYTES ((size_t)16 * 1024 * 1024)
#define IDEMPOTENCY_KEY_MAX 255

struct principal {
	const char *name;  /* for audit fields: "admin", "team:<owner>", "anonymous" */
	const char *owner; /* NULL = admin */
	char buf[96];
};

struct pipeline_api {
	struct pipeline_api_config cfg;
	struct pipelines_token *tokens;
	char *log_dir;
	struct http_route routes[PIPELINE_API_N_ENDPOINTS];
	struct pipeline_api_endpoint endpoints[PIPELINE_API_N_ENDPOINTS];
};

/* ---- helpers ------------------------------------------------------------------------------- */

static int reply_store_error(struct http_request *req, int r, const struct cd_error *err)
{
	const char *msg = cd_error_message(err);

	switch (r) {
	case -ENOENT:
		return http_reply_error(req, 404, "%s", msg);
	case -EEXIST:
	case -EALREADY:
	case -EBUSY:
		return http_reply_error(req, 409, "%s", msg);
	case -ESTALE:
		return http_reply_error(req, 412, "%s", msg);
	case -ENODATA:
		return http_reply_error(req, 409, "%s", msg);
	default:
		return http_reply_error(req, 500, "store: %s", msg);
	}
}

/* Bearer token → principal. Replies 401 itself and returns false when there is none. */
static bool authenticate(struct pipeline_api *api, struct http_request *req, struct principal *ret)
{
	const char *h = http_request_header(req, "Authorization");
	const char *tok;

	memset(ret, 0, sizeof(*ret));
	if (api->cfg.insecure_no_auth) {
		ret->name = "anonymous";
		return true;
	}
	tok = h ? startswith(h, "Bearer ") : NULL;
	if (tok)
		for (size_t i = 0; i < api->cfg.n_tokens; i++) {
			const struct pipelines_token *t = &api->tokens[i];

			if (!ct_memeq(tok, strlen(tok), t->token, strlen(t->token)))
				continue;
			ret->owner = t->owner;
			if (t->owner) {
				snprintf(ret->buf, sizeof(ret->buf), "team:%s", t->owner);
				ret->name = ret->buf;
			} else
				ret->name = "admin";
			return true;
		}
	http_reply_header(req, "WWW-Authenticate", "Bearer");
	http_reply_error(req, 401, "a valid bearer token is required");
	return false;
}

/* Owners change only their own pipelines. Replies 403 and returns false otherwise. */
static bool may_change(struct http_request *req, const struct principal *who, const char *owner)
{
	if (!who->owner || streq(who->owner, owner))
		return true;
	http_reply_error(req, 403, "pipeline is owned by \"%s\"; this token belongs to \"%s\"",
			 owner, who->owner);
	return false;
}

static json_t *time_json(usec_t t)
{
	char buf[32];

	if (!t)
		return json_null();
	return json_string(clock_format_rfc3339(t, buf, sizeof(buf)));
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *pipeline_json(const struct store_pipeline *p)
{
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:o}", "pipeline_id", p->pipeline_id,
			 "name", p->name, "owner", p->owner, "repo", str_or_null(p->repo), "branch",
			 str_or_null(p->branch), "active_version", (json_int_t)p->active_version,
			 "latest_version", (json_int_t)p->latest_version, "created_at",
			 time_json(p->created_at));
}

static json_t *run_json(const struct store_run *r)
{
	return json_pack("{s:s, s:I, s:I, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o}", "pipeline_id",
			 r->pipeline_id, "run", (json_int_t)r->run, "schema_version",
			 (json_int_t)r->schema_version, "commit", r->commit, "state",
			 run_state_to_string(r->state), "attempt", (json_int_t)r->attempt,
			 "error_message", str_or_null(r->error_message), "trigger",
			 str_or_null(r->trigger), "created_by", str_or_null(r->created_by),
			 "created_at", time_json(r->created_at), "last_update",
			 time_json(r->last_update));
}

/* [SchemaNodeState] of a run: every stage of its schema version in schema order, with its
 * latest ActionState (or PENDING with attempt 0 when it has not been queued yet). The plan
 * comes from the DAG cache the runner shares: a run view parses and plans its schema version
 * at most once while the version stays cached (a 10,000-stage schema costs milliseconds). */
static int stages_json(struct pipeline_api *api, const struct store_run *run, json_t **ret,
		       struct cd_error *err)
{
	_cleanup_dag_ struct action_dag *dag = NULL;
	_cleanup_free_ const struct store_stage **by_node = NULL;
	struct store_stage *v = NULL;
	size_t n = 0;
	json_t *a = NULL;
	int r;

	r = pipeline_run_plan_cached(api->cfg.dags, api->cfg.store, run->pipeline_id,
				     run->schema_version, &dag, err);
	if (r < 0)
		return r;
	r = store_stage_list(api->cfg.store, run->pipeline_id, run->run, &v, &n, err);
	if (r < 0)
		return r;
	by_node = calloc(dag_n_nodes(dag), sizeof(*by_node));
	if (by_node)
		a = json_array();
	/* One row per stage name (its latest attempt); rows of names the schema does not have
	 * cannot belong to this run's version and are not shown. */
	for (size_t k = 0; a && k < n; k++) {
		const struct action_node *node = dag_find_node(dag, v[k].name);

		if (node)
			by_node[node_index(node)] = &v[k];
	}
	for (size_t i = 0; a && i < dag_n_nodes(dag); i++) {
		const struct action_node *node = dag_node(dag, i);
		const struct store_stage *sg = by_node[i];
		json_t *o, *res = NULL;

		if (sg && sg->result)
			res = json_loads(sg->result, JSON_DECODE_ANY, NULL);
		o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:i, s:b, s:o}",
			      "name", node_name(node), "type",
			      action_type_to_string(node_type(node)), "state",
			      action_state_to_string(sg ? sg->state : ACTION_PENDING), "attempt",
			      (json_int_t)(sg ? sg->attempt : 0), "error_message",
			      str_or_null(sg ? sg->error_message : NULL), "approved_by",
			      str_or_null(sg ? sg->approved_by : NULL), "created_at",
			      time_json(sg ? sg->created_at : 0), "started_at",
			      time_json(sg ? sg->started_at : 0), "last_update",
			      time_json(sg ? sg->last_update : 0), "claims", sg ? sg->claims : 0,
			      "queued", sg ? sg->queued : false, "result", res ? res : json_null());
		if (!o || json_array_append_new(a, o) < 0) {
			json_decref(a);
			a = NULL;
		}
	}
	store_stage_list_free(v, n);
	if (!a)
		return -ENOMEM;
	*ret = a;
	return 0;
}

static int run_with_stages_json(struct pipeline_api *api, const struct store_run *run, json_t **ret,
				struct cd_error *err)
{
	json_t *o = run_json(run), *stages = NULL;
	int r;

	if (!o)
		return -ENOMEM;
	r = stages_json(api, run, &stages, err);
	if (r < 0) {
		json_decref(o);
		return r;
	}
	if (json_object_set_new(o, "stages", stages) < 0) {
		json_decref(o);
		return -ENOMEM;
	}
	*ret = o;
	return 0;
}

/* Load the pipeline named by the {id} parameter; replies 404/500 itself. */
static bool load_pipeline(struct pipeline_api *api, struct http_request *req,
			  struct store_pipeline *ret)
{
	struct cd_error err = { 0 };
	int r = store_pipeline_get(api->cfg.store, http_request_param(req, "id"), ret, &err);

	if (r < 0) {
		reply_store_error(req, r, &err);
		return false;
	}
	return true;
}

static bool parse_run_param(struct http_request *req, int64_t *ret)
{
	uint64_t v;

	if (parse_u64(http_request_param(req, "run"), &v) < 0 || v == 0 || v > INT64_MAX) {
		http_reply_error(req, 400, "run must be a positive integer");
		return false;
	}
	*ret = (int64_t)v;
	return true;
}

static char *schema_text(const struct pipeline_schema *schema)
{
	json_t *j = NULL;
	char *s;

	if (pipeline_schema_to_json(schema, &j) < 0)
		return NULL;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

/* Audited changes: the change and its event (the audit log, /v1/events) commit together. */
static int tx_begin(struct pipeline_api *api, struct cd_error *err)
{
	return store_begin(api->cfg.store, err);
}

/* Append event kind (NULL: none) about subject with data (stolen, may be NULL) when r >= 0,
 * then commit; roll back when anything failed. Returns r or the first error. */
static int tx_end(struct pipeline_api *api, int r, const struct principal *who, const char *kind,
		  const char *subject, json_t *data, struct cd_error *err)
{
	if (r >= 0 && kind) {
		char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;

		r = data && !text ? -ENOMEM :
				    store_event_append(api->cfg.store, who->name, kind, subject,
						       text, NULL, err);
		free(text);
	}
	json_decref(data);
	if (r >= 0)
		return store_commit(api->cfg.store, err);
	store_rollback(api->cfg.store);
	return r;
}

static const char *subject_of(char *buf, size_t size, const char *pipeline_id, int64_t run)
{
	if (run > 0)
		snprintf(buf, size, "pipeline/%s/run/%" PRId64, pipeline_id, run);
	else
		snprintf(buf, size, "pipeline/%s", pipeline_id);
	return buf;
}

/* ---- pipelines ----------------------------------------------------------------------------- */

static void h_create_pipeline(struct pipeline_api *api, struct http_request *req,
			      const struct principal *who)
{
	_cleanup_problem_ struct problem p;
	_cleanup_pipeline_ struct pipeline *pl = NULL;
	_cleanup_free_ char *schema = NULL;
	struct store_pipeline row = { 0 };
	struct cd_error err = { 0 };
	char id[ID_LEN + 1], loc[64];
	json_t *body = NULL;
	int r;

	problem_init(&p, 400, NULL, NULL);
	if (http_request_json(req, &body, &p) < 0) {
		http_reply_problem(req, &p);
		return;
	}
	r = pipeline_from_json(body, &pl, &p);
	json_decref(body);
	if (r < 0) {
		if (r == -ENOMEM)
			http_reply_error(req, 500, "out of memory");
		else
			http_reply_problem(req, &p);
		return;
	}
	if (!may_change(req, who, pl->owner))
		return;
	schema = schema_text(pl->schema);
	if (!schema) {
		http_reply_error(req, 500, "out of memory");
		return;
	}
	r = tx_begin(api, &err);
	if (r >= 0) {
		char subj[96];

		r = store_pipeline_create(api->cfg.store, pl->name, pl->owner, pl->repo, pl->branch,
					  schema, who->name, clock_real_usec(), id, &err);
		r = tx_end(api, r, who, "pipeline.create",
			   r >= 0 ? subject_of(subj, sizeof(subj), id, 0) : "",
			   json_pack("{s:s, s:s}", "name", pl->name, "owner", pl->owner), &err);
	}
	if (r < 0) {
		reply_store_error(req, r, &err);
		return;
	}
	r = store_pipeline_get(api->cfg.store, id, &row, &err);
	if (r < 0) {
		reply_store_error(req, r, &err);
		return;
	}
	snprintf(loc, sizeof(loc), "/v1/pipelines/%s", id);
	http_reply_header(req, "Location", loc);
	http_reply_json_new(req, 201, pipeline_json(&row));
	store_pipeline_release(&row);
}

static void h_list_pipelines(struct pipeline_api *api, struct http_request *req,
			     const struct principal *who)
{
	struct store_pipeline *v = NULL;
	struct cd_error err = { 0 };
	const char *owner = http_request_query(req, "owner");
	const char *token = http_request_query(req, "page_token");
	uint64_t size;
	size_t n = 0;
	json_t *a, *o;
	int r;

	if (http_request_query_u64(req, "page_size", PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, &size) < 0 ||
	    size == 0) {
		http_reply_error(req, 400, "page_size must be 1..%d", PAGE_SIZE_MAX);
		return;
	}
	if (token && (strlen(token) != ID_LEN)) {
		http_reply_error(req, 400, "invalid page_token");
		return;
	}
	r = store_pipeline_list(api->cfg.store, owner && *owner ? owner : NULL, token, size + 1, &v,
				&n, &err);
	if (r < 0) {
		reply_store_error(req, r, &err);
		return;
	}
	a = json_array();
	for (size_t i = 0; a && i < n && i < size; i++)
		if (json_array_append_new(a, pipeline_json(&v[i])) < 0) {
			json_decref(a);
			a = NULL;
		}
	o = json_pack("{s:o, s:o}", "pipelines", a ? a : json_null(), "next_page_token",
		      n > size ? json_string(v[size - 1].pipeline_id) : json_null());
	store_pipeline_list_free(v, n);
	http_reply_json_new(req, 200, a ? o : NULL);
}

static void h_get_pipeline(struct pipeline_api *api, struct http_request *req,
			   const struct principal *who)
{
	struct store_pipeline row = { 0 };

	if (!load_pipeline(api, req, &row))
		return;
	http_reply_json_new(req, 200, pipeline_json(&row));
	store_pipeline_release(&row);
}

/* ---- schemas ------------------------------------------------------------------------------- */

static void reply_schema(struct http_request *req, int status, const struct store_schema *sv,
			 const struct store_pipeline *row)
{
	json_t *schema = json_loads(sv->schema, JSON_DECODE_ANY, NULL);
	char etag[32];

	snprintf(etag, sizeof(etag), "\"%" PRId64 "\"", sv->version);
	http_reply_header(req, "ETag", etag);
	http_reply_json_new(req, status,
			    json_pack("{s:s, s:I, s:s, s:I, s:o, s:o}", "pipeline_id",
				      row->pipeline_id, "version", (json_int_t)sv->version, "state",
				      sv->state, "latest_version", (json_int_t)row->latest_version,
				      "created_at", time_json(sv->created_at), "schema",
				      schema ? schema : json_null()));
}

static void h_get_schema(struct pipeline_api *api, struct http_request *req,
			 const struct principal *who)
{
	struct store_pipeline row = { 0 };
	struct store_schema sv = { 0 };
	struct cd_error err = { 0 };
	uint64_t version;
	int r;

	if (http_request_query_u64(req, "version", 0, INT64_MAX, &version) < 0) {
		http_reply_error(req, 400, "version must be a positive integer");
		return;
	}
	if (!load_pipeline(api, req, &row))
		return;
	r = store_schema_get(api->cfg.store, row.pipeline_id, (int64_t)version, &sv, &err);
	if (r < 0)
		reply_store_error(req, r, &err);
	else
		reply_schema(req, 200, &sv, &row);
	store_schema_release(&sv);
	store_pipeline_release(&row);
}

/* If-Match: "<version>" (quoted per RFC 9110, bare accepted) → version; -1 when absent. */
static int parse_if_match(struct http_request *req, int64_t *ret)
{
	const char *h = http_request_header(req, "If-Match");
	char buf[32];
	size_t len;
	uint64_t v;

	*ret = -1;
	if (!h)
		return 0;
	len = strlen(h);
	if (len >= 2 && h[0] == '"' && h[len - 1] == '"' && len - 2 < sizeof(buf)) {
		memcpy(buf, h + 1, len - 2);
		buf[len - 2] = '\0';
	} else
		snprintf(buf, sizeof(buf), "%s", h);
	if (parse_u64(buf, &v) < 0 || v > INT64_MAX)
		return -EINVAL;
	*ret = (int64_t)v;
	return 0;
}

static void h_put_schema(struct pipeline_api *api, struct http_request *req,
			 const struct principal *who)
{
	_cleanup_problem_ struct problem p;
	_cleanup_pipeline_schema_ struct pipeline_schema *schema = NULL;
	_cleanup_free_ char *text = NULL;
	struct store_pipeline row = { 0 };
	struct store_schema sv = { 0 };
	struct cd_error err = { 0 };
	int64_t if_match, version = 0;
	json_t *body = NULL, *arr;
	const char *base = "";
	int r;

	problem_init(&p, 400, NULL, NULL);
	if (parse_if_match(req, &if_match) < 0) {
		http_reply_error(req, 400, "If-Match must be a schema version (an ETag of GET)");
		return;
	}
	if (!load_pipeline(api, req, &row))
		return;
	if (!may_change(req, who, row.owner)) {
		store_pipeline_release(&row);
		return;
	}
	if (http_request_json(req, &body, &p) < 0) {
		store_pipeline_release(&row);
		http_reply_problem(req, &p);
		return;
	}
	/* The schema itself (a stage array) or {"schema": [...]}. */
	arr = body;
	if (json_is_object(body)) {
		arr = json_object_get(body, "schema");
		base = "/schema";
		if (!arr) {
			problem_set(&p, 422, API_PROBLEM_INVALID, "Validation failed");
			problem_add_error(&p, "/schema", "required");
		}
	}
	r = arr ? pipeline_schema_from_json_at(arr, base, &schema, &p) : -EINVAL;
	json_decref(body);
	if (r >= 0) {
		text = schema_text(schema);
		r = text ? tx_begin(api, &err) : -ENOMEM;
		if (r >= 0) {
			char subj[96];

			r = store_schema_put(api->cfg.store, row.pipeline_id, if_match, text,
					     who->name, clock_real_usec(), &version, &err);
			r = tx_end(api, r, who, "pipeline.schema.put",
				   subject_of(subj, sizeof(subj), row.pipeline_id, 0),
				   json_pack("{s:I}", "version", (json_int_t)version), &err);
		}
		if (r < 0 && r != -ENOMEM)
			reply_store_error(req, r, &err);
		else if (r >= 0)
			r = store_schema_get(api->cfg.store, row.pipeline_id, version, &sv, &err);
		if (r >= 0) {
			row.latest_version = version;
			reply_schema(req, 201, &sv, &row);
		}
	} else if (r != -ENOMEM)
		http_reply_problem(req, &p);
	if (r == -ENOMEM)
		http_reply_error(req, 500, "out of memory");
	store_schema_release(&sv);
	store_pipeline_release(&row);
}

static void h_activate_schema(struct pipeline_api *api, struct http_request *req,
			      const struct principal *who)
{
	struct store_pipeline row = { 0 };
	struct store_schema sv = { 0 };
	struct cd_error err = { 0 };
	uint64_t version;
	int r;

	if (parse_u64(http_request_param(req, "version"), &version) < 0 || version == 0 ||
	    version > INT64_MAX) {
		http_reply_error(req, 400, "version must be a positive integer");
		return;
	}
	if (!load_pipeline(api, req, &row))
		return;
	if (may_change(req, who, row.owner)) {
		char subj[96];

		r = tx_begin(api, &err);
		if (r >= 0) {
			r = store_schema_activate(api->cfg.store, row.pipeline_id, (int64_t)version,
						  &err);
			r = tx_end(api, r, who, "pipeline.schema.activate",
				   subject_of(subj, sizeof(subj), row.pipeline_id, 0),
				   json_pack("{s:I}", "version", (json_int_t)version), &err);
		}
		if (r >= 0)
			r = store_schema_get(api->cfg.store, row.pipeline_id, (int64_t)version, &sv,
					     &err);
		if (r < 0)
			reply_store_error(req, r, &err);
		else
			reply_schema(req, 200, &sv, &row);
	}
	store_schema_release(&sv);
	store_pipeline_release(&row);
}

/* ---- runs ---------------------------------------------------------------------------------- */

static void h_get_state(struct pipeline_api *api, struct http_request *req,
			const struct principal *who)
{
	struct store_pipeline row = { 0 };
	struct store_run run = { 0 };
	struct cd_error err = { 0 };
	json_t *o = NULL;
	int r;

	if (!load_pipeline(api, req, &row))
		return;
	r = store_run_get(api->cfg.store, row.pipeline_id, 0, &run, &err);
	if (r == -ENOENT)
		http_reply_json_new(req, 200,
				    json_pack("{s:s, s:n, s:[]}", "pipeline_id", row.pipeline_id,
					      "run", "stages"));
	else if (r < 0)
		reply_store_error(req, r, &err);
	else if ((r = run_with_stages_json(api, &run, &o, &err)) < 0)
		reply_store_error(req, r, &err);
	else
		http_reply_json_new(req, 200, o);
	store_run_release(&run);
	store_pipeline_release(&row);
}

static void store_run_releasep(struct store_run *r)
{
	store_run_release(r);
}

/* The body of POST .../runs for a loaded pipeline the caller may change. */
static void create_run(struct pipeline_api *api, struct http_request *req,
		       const struct principal *who, const struct store_pipeline *row,
		       const char *key)
{
	_cleanup_problem_ struct problem p;
	_cleanup_(store_run_releasep) struct store_run run = { 0 };
	json_auto_t *body = NULL;
	struct cd_error err = { 0 }, cerr = { 0 };
	const char *commit = NULL;
	bool created = false;
	json_t *o = NULL;
	char loc[96], subj[128];
	int64_t n;
	int r;

	problem_init(&p, 400, NULL, NULL);
	if (http_request_json(req, &body, &p) < 0) {
		http_reply_problem(req, &p);
		return;
	}
	if (api_json_expect_object(body, "", &p) >= 0)
		api_json_get_string(body, "", "commit", true, 1, 64, &commit, &p);
	if (commit && commit_check(commit, &cerr) < 0)
		problem_add_error(&p, "/commit", "%s", cd_error_message(&cerr));
	if (problem_has_errors(&p)) {
		problem_set(&p, 422, API_PROBLEM_INVALID, "Validation failed");
		http_reply_problem(req, &p);
		return;
	}
	r = tx_begin(api, &err);
	if (r >= 0) {
		r = store_run_create(api->cfg.store, row->pipeline_id, commit, key, "api",
				     who->name, clock_real_usec(), &run, &created, &err);
		r = tx_end(api, r, who, created ? "pipeline.run.create" : NULL,
			   subject_of(subj, sizeof(subj), row->pipeline_id, run.run),
			   created ? json_pack("{s:s}", "commit", commit) : NULL, &err);
	}
	n = run.run;
	if (r >= 0 && created) {
		/* Start it now when the pipeline is idle; otherwise it waits its turn. */
		r = pipeline_run_start_next_cached(api->cfg.store, api->cfg.dags, row->pipeline_id,
						   clock_real_usec(), &err);
		if (r >= 0) {
			store_run_release(&run);
			r = store_run_get(api->cfg.store, row->pipeline_id, n, &run, &err);
		}
		runner_kick(api->cfg.runner);
	}
	if (r >= 0)
		r = run_with_stages_json(api, &run, &o, &err);
	if (r < 0) {
		reply_store_error(req, r, &err);
		return;
	}
	snprintf(loc, sizeof(loc), "/v1/pipelines/%s/runs/%" PRId64, row->pipeline_id, n);
	http_reply_header(req, "Location", loc);
	http_reply_json_new(req, created ? 201 : 200, o);
}

static void h_create_run(struct pipeline_api *api, struct http_request *req,
			 const struct principal *who)
{
	const char *key = http_request_header(req, "Idempotency-Key");
	struct store_pipeline row = { 0 };

	if (key && (!*key || strlen(key) > IDEMPOTENCY_KEY_MAX)) {
		http_reply_error(req, 400, "Idempotency-Key must be 1..%d bytes",
				 IDEMPOTENCY_KEY_MAX);
		return;
	}
	if (!load_pipeline(api, req, &row))
		return;
	if (may_change(req, who, row.owner))
		create_run(api, req, who, &row, key);
	store_pipeline_release(&row);
}

static void h_list_runs(struct pipeline_api *api, struct http_request *req,
			const struct principal *who)
{
	struct store_pipeline row = { 0 };
	struct store_run *v = NULL;
	struct cd_error err = { 0 };
	uint64_t size, before;
	size_t n = 0;
	json_t *a;
	int r;

	if (http_request_query_u64(req, "page_size", PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, &size) < 0 ||
	    size == 0 || http_request_query_u64(req, "page_token", 0, INT64_MAX, &before) < 0) {
		http_reply_error(req, 400, "page_size must be 1..%d, page_token a run number",
				 PAGE_SIZE_MAX);
		return;
	}
	if (!load_pipeline(api, req, &row))
		return;
	r = store_run_list(api->cfg.store, row.pipeline_id, (int64_t)before, size + 1, &v, &n,
			   &err);
	if (r < 0) {
		reply_store_error(req, r, &err);
		store_pipeline_release(&row);
		return;
	}
	a = json_array();
	for (size_t i = 0; a && i < n && i < size; i++)
		if (json_array_append_new(a, run_json(&v[i])) < 0) {
			json_decref(a);
			a = NULL;
		}
	if (a) {
		char tok[24];

		snprintf(tok, sizeof(tok), "%" PRId64, n > size ? v[size - 1].run : 0);
		http_reply_json_new(req, 200,
				    json_pack("{s:o, s:o}", "runs", a, "next_page_token",
					      n > size ? json_string(tok) : json_null()));
	} else
		http_reply_error(req, 500, "out of memory");
	store_run_list_free(v, n);
	store_pipeline_release(&row);
}

static void h_get_run(struct pipeline_api *api, struct http_request *req,
		      const struct principal *who)
{
	struct store_pipeline row = { 0 };
	struct store_run run = { 0 };
	struct cd_error err = { 0 };
	json_t *o = NULL;
	int64_t n;
	int r;

	if (!parse_run_param(req, &n) || !load_pipeline(api, req, &row))
		return;
	r = store_run_get(api->cfg.store, row.pipeline_id, n, &run, &err);
	if (r >= 0)
		r = run_with_stages_json(api, &run, &o, &err);
	if (r < 0)
		reply_store_error(req, r, &err);
	else
		http_reply_json_new(req, 200, o);
	store_run_release(&run);
	store_pipeline_release(&row);
}

enum run_verb { VERB_CANCEL, VERB_RETRY, VERB_APPROVE };

static void run_verb(struct pipeline_api *api, struct http_request *req,
		     const struct principal *who, enum run_verb verb)
{
	struct store_pipeline row = { 0 };
	struct store_run run = { 0 };
	struct cd_error err = { 0 };
	usec_t now = clock_real_usec();
	int64_t n, attempt = 0;
	json_t *o = NULL;
	char subj[128];
	int r = -EINVAL;

	if (!parse_run_param(req, &n) || !load_pipeline(api, req, &row))
		return;
	if (!may_change(req, who, row.owner)) {
		store_pipeline_release(&row);
		return;
	}
	r = tx_begin(api, &err);
	if (r < 0) {
		reply_store_error(req, r, &err);
		store_pipeline_release(&row);
		return;
	}
	switch (verb) {
	case VERB_CANCEL:
		r = store_run_cancel(api->cfg.store, row.pipeline_id, n, who->name, now, &err);
		r = tx_end(api, r, who, "pipeline.run.cancel",
			   subject_of(subj, sizeof(subj), row.pipeline_id, n), NULL, &err);
		if (r >= 0)
			/* The pipeline's next pending run may start now. */
			r = pipeline_run_start_next_cached(api->cfg.store, api->cfg.dags,
							   row.pipeline_id, now, &err);
		break;
	case VERB_RETRY:
		r = store_run_retry(api->cfg.store, row.pipeline_id, n, now, &attempt, &err);
		r = tx_end(api, r, who, "pipeline.run.retry",
			   subject_of(subj, sizeof(subj), row.pipeline_id, n),
			   json_pack("{s:I}", "attempt", (json_int_t)attempt), &err);
		if (r >= 0)
			r = pipeline_run_advance_cached(api->cfg.store, api->cfg.dags,
							row.pipeline_id, n, now, NULL, &err);
		break;
	case VERB_APPROVE:
		r = store_stage_approve(api->cfg.store, row.pipeline_id, n,
					http_request_param(req, "stage"), who->name, now, &err);
		r = tx_end(api, r, who, "pipeline.stage.approve",
			   subject_of(subj, sizeof(subj), row.pipeline_id, n),
			   json_pack("{s:s}", "stage", http_request_param(req, "stage")), &err);
		break;
	}
	runner_kick(api->cfg.runner);
	if (r >= 0)
		r = store_run_get(api->cfg.store, row.pipeline_id, n, &run, &err);
	if (r >= 0)
		r = run_with_stages_json(api, &run, &o, &err);
	if (r < 0)
		reply_store_error(req, r, &err);
	else
		http_reply_json_new(req, 200, o);
	store_run_release(&run);
	store_pipeline_release(&row);
}

static void h_cancel(struct pipeline_api *api, struct http_request *req,
		     const struct principal *who)
{
	run_verb(api, req, who, VERB_CANCEL);
}

static void h_retry(struct pipeline_api *api, struct http_request *req, const struct principal *who)
{
	run_verb(api, req, who, VERB_RETRY);
}

static void h_approve(struct pipeline_api *api, struct http_request *req,
		      const struct principal *who)
{
	run_verb(api, req, who, VERB_APPROVE);
}

int pipeline_log_path(const char *log_dir, const char *pipeline_id, int64_t run, const char *stage,
		      int64_t attempt, char *buf, size_t size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[33];
	int n;

	if (!EVP_Digest(stage, strlen(stage), md, &mdlen, EVP_sha256(), NULL) || mdlen < 16)
		return -EIO;
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	n = snprintf(buf, size, "%s/%s/%" PRId64 "/%s.%" PRId64 ".log", log_dir, pipeline_id, run,
		     hex, attempt);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static void h_stage_log(struct pipeline_api *api, struct http_request *req,
			const struct principal *who)
{
	struct store_pipeline row = { 0 };
	struct store_stage sg = { 0 };
	struct cd_error err = { 0 };
	_cleanup_free_ char *text = NULL;
	char path[4096];
	size_t len = 0;
	int64_t n;
	int r;

	if (!parse_run_param(req, &n) || !load_pipeline(api, req, &row))
		return;
	r = store_stage_get(api->cfg.store, row.pipeline_id, n, http_request_param(req, "stage"),
			    &sg, &err);
	if (r < 0)
		reply_store_error(req, r, &err);
	else if (!api->log_dir || pipeline_log_path(api->log_dir, row.pipeline_id, n, sg.name,
						    sg.attempt, path, sizeof(path)) < 0)
		http_reply_error(req, 404, "no log for this stage");
	else if ((r = fs_read_file_at(AT_FDCWD, path, LOG_MAX_BYTES, &text, &len)) == -ENOENT)
		http_reply_error(req, 404, "stage \"%s\" attempt %" PRId64 " wrote no log", sg.name,
				 sg.attempt);
	else if (r < 0)
		http_reply_error(req, 500, "reading the log: %s", strerror(-r));
	else
		http_reply_bytes(req, 200, "text/plain; charset=utf-8", text, len);
	store_stage_release(&sg);
	store_pipeline_release(&row);
}

/* ---- lifecycle and front-ends -------------------------------------------------------------- */

typedef void (*endpoint_fn)(struct pipeline_api *api, struct http_request *req,
			    const struct principal *who);

static const struct {
	const char *method, *pattern;
	endpoint_fn fn;
	bool write;
} endpoints[PIPELINE_API_N_ENDPOINTS] = {
	{ "POST", "/v1/pipelines", h_create_pipeline, true },
	{ "GET", "/v1/pipelines", h_list_pipelines, false },
	{ "GET", "/v1/pipelines/{id}", h_get_pipeline, false },
	{ "GET", "/v1/pipelines/{id}/schema", h_get_schema, false },
	{ "PUT", "/v1/pipelines/{id}/schema", h_put_schema, true },
	{ "POST", "/v1/pipelines/{id}/schema/{version}/activate", h_activate_schema, true },
	{ "GET", "/v1/pipelines/{id}/state", h_get_state, false },
	{ "POST", "/v1/pipelines/{id}/runs", h_create_run, true },
	{ "GET", "/v1/pipelines/{id}/runs", h_list_runs, false },
	{ "GET", "/v1/pipelines/{id}/runs/{run}", h_get_run, false },
	{ "POST", "/v1/pipelines/{id}/runs/{run}/cancel", h_cancel, true },
	{ "POST", "/v1/pipelines/{id}/runs/{run}/retry", h_retry, true },
	{ "POST", "/v1/pipelines/{id}/runs/{run}/stages/{stage}/approve", h_approve, true },
	{ "GET", "/v1/pipelines/{id}/runs/{run}/stages/{stage}/log", h_stage_log, false },
};

static void http_trampoline(struct http_request *req, void *data)
{
	struct pipeline_api_endpoint *e = data;
	struct principal who;

	if (authenticate(e->api, req, &who))
		endpoints[e->index].fn(e->api, req, &who);
}

void pipeline_api_handle(const struct pipeline_api_endpoint *e, struct http_request *req,
			 const char *actor, const char *team)
{
	struct principal who = { .name = actor ? actor : "anonymous", .owner = team };

	endpoints[e->index].fn(e->api, req, &who);
}

int pipeline_api_new(const struct pipeline_api_config *config, struct pipeline_api **ret,
		     struct cd_error *err)
{
	struct pipeline_api *api;

	if (!config->store)
		return cd_error_set(err, -EINVAL, "pipeline API needs a store");
	api = calloc(1, sizeof(*api));
	if (!api)
		return -ENOMEM;
	api->cfg = *config;
	api->tokens = calloc(config->n_tokens + 1, sizeof(*api->tokens));
	if (!api->tokens) {
		pipeline_api_free(api);
		return -ENOMEM;
	}
	for (size_t i = 0; i < config->n_tokens; i++) {
		api->tokens[i].token = strdup(config->tokens[i].token);
		api->tokens[i].owner = config->tokens[i].owner ? strdup(config->tokens[i].owner) :
								 NULL;
		if (!api->tokens[i].token || (config->tokens[i].owner && !api->tokens[i].owner)) {
			api->cfg.n_tokens = i + 1;
			pipeline_api_free(api);
			return -ENOMEM;
		}
	}
	api->cfg.tokens = api->tokens;
	if (config->log_dir) {
		api->log_dir = strdup(config->log_dir);
		if (!api->log_dir) {
			pipeline_api_free(api);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < PIPELINE_API_N_ENDPOINTS; i++) {
		api->endpoints[i] = (struct pipeline_api_endpoint){
			.api = api,
			.index = i,
			.method = endpoints[i].method,
			.pattern = endpoints[i].pattern,
			.write = endpoints[i].write,
		};
		api->routes[i] = (struct http_route){
			.method = endpoints[i].method,
			.pattern = endpoints[i].pattern,
			.handler = http_trampoline,
			.data = &api->endpoints[i],
			/* own token check, see authenticate() */
			.flags = HTTP_ROUTE_OPEN,
		};
	}
	*ret = api;
	return 0;
}

void pipeline_api_free(struct pipeline_api *api)
{
	if (!api)
		return;
	for (size_t i = 0; api->tokens && i < api->cfg.n_tokens; i++) {
		free((char *)api->tokens[i].token);
		free((char *)api->tokens[i].owner);
	}
	free(api->tokens);
	free(api->log_dir);
	free(api);
}

const struct http_route *pipeline_api_routes(struct pipeline_api *api, size_t *ret_n)
{
	*ret_n = PIPELINE_API_N_ENDPOINTS;
	return api->routes;
}

const struct pipeline_api_endpoint *pipeline_api_endpoints(struct pipeline_api *api, size_t *ret_n)
{
	*ret_n = PIPELINE_API_N_ENDPOINTS;
	return api->endpoints;
}
