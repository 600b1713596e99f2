/* SPDX-License-Identifier: Apache-2.0 */
#include "central/deployd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/json.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/macro.h"

#define MAX_TOKENS 256
#define MAX_ROLES 8

struct token {
	enum deployd_principal_kind kind;
	char name[80];
	char actor[80];
	char secret[TOKEN_HEX_LEN + 1];
};

struct bound_route {
	struct deployd_route r;
	struct deployd *d;
};

struct deployd {
	const struct deployd_config *cfg;
	struct store *store;
	char *advertise_url;
	bool no_auth;
	struct token *tokens;
	size_t n_tokens;
	const char *agent_token;

	struct bound_route *routes;
	size_t n_routes;
	bool started;

	const struct deployd_role *roles[MAX_ROLES];
	void *role_state[MAX_ROLES];
	bool role_inited[MAX_ROLES], role_started[MAX_ROLES];
	size_t n_roles;

	struct http_server *server;
	void (*access_log)(const struct http_access_entry *e, void *userdata);
	void *access_log_data;

	/* Event-log retention (events_retention_days): one thread, hourly. */
	pthread_t housekeeper;
	bool housekeeper_started, housekeeper_stop;
	pthread_mutex_t hk_lock;
	pthread_cond_t hk_cond;
	uint64_t events_pruned, prune_errors;
};

#define PRUNE_FIRST_AFTER_S 1
#define PRUNE_INTERVAL_S 3600
#define PRUNE_BATCH 10000

static const struct deployd_principal anonymous = { DEPLOYD_PRINCIPAL_NONE, "anonymous",
						    "anonymous" };

/* ---- tokens -------------------------------------------------------------------------------- */

static int tokens_parse(struct deployd *d, const char *path, const char *text, struct cd_error *err)
{
	_cleanup_free_ char *copy = NULL;
	unsigned lineno = 0;
	char *line, *rest;

	d->tokens = calloc(MAX_TOKENS, sizeof(*d->tokens));
	if (!d->tokens)
		return cd_error_set(err, -ENOMEM, "out of memory");
	copy = strdup(text);
	if (!copy)
		return cd_error_set(err, -ENOMEM, "out of memory");
	for (line = copy; line; line = rest) {
		char role[80], secret[128];
		struct token *t;

		rest = strchr(line, '\n');
		if (rest)
			*rest++ = '\0';
		lineno++;
		if (strchr(line, '#'))
			*strchr(line, '#') = '\0';
		if (sscanf(line, " %79s %127s", role, secret) != 2) {
			if (strspn(line, " \t\r") == strlen(line))
				continue;
			return cd_error_set(err, -EINVAL, "%s:%u: expected '<role> <token>'", path,
					    lineno);
		}
		if (d->n_tokens >= MAX_TOKENS)
			return cd_error_set(err, -E2BIG, "%s: more than %d tokens", path,
					    MAX_TOKENS);
		if (strlen(secret) < 32 || strlen(secret) > TOKEN_HEX_LEN)
			return cd_error_set(err, -EINVAL, "%s:%u: token must be 32..64 characters",
					    path, lineno);
		t = &d->tokens[d->n_tokens];
		if (streq(role, "admin"))
			t->kind = DEPLOYD_PRINCIPAL_ADMIN;
		else if (streq(role, "agent"))
			t->kind = DEPLOYD_PRINCIPAL_AGENT;
		else if (startswith(role, "team:") && role[5])
			t->kind = DEPLOYD_PRINCIPAL_TEAM;
		else
			return cd_error_set(err, -EINVAL,
					    "%s:%u: role must be admin, agent or team:<name>", path,
					    lineno);
		snprintf(t->name, sizeof(t->name), "%s",
			 t->kind == DEPLOYD_PRINCIPAL_TEAM ? role + 5 : role);
		snprintf(t->actor, sizeof(t->actor), "%s", role);
		memcpy(t->secret, secret, strlen(secret) + 1); /* length checked above */
		if (t->kind == DEPLOYD_PRINCIPAL_AGENT && !d->agent_token)
			d->agent_token = t->secret;
		d->n_tokens++;
	}
	if (d->n_tokens == 0)
		return cd_error_set(err, -EINVAL, "%s: no tokens", path);
	return 0;
}

int deployd_tokens_ensure(const char *path, bool create, struct cd_error *err)
{
	char admin[TOKEN_HEX_LEN + 1], agent[TOKEN_HEX_LEN + 1], text[512], dir[4096];
	char *slash;
	int r;

	if (access(path, F_OK) == 0)
		return 0;
	if (!create)
		return cd_error_set(err, -ENOENT, "token file %s does not exist", path);
	if (strlen(path) >= sizeof(dir))
		return cd_error_set(err, -ENAMETOOLONG, "token file path too long");
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = fs_mkdir_p(dir, 0700);
		if (r < 0)
			return cd_error_set(err, r, "creating %s: %s", dir, strerror(-r));
	}
	if (id_new_token(admin) < 0 || id_new_token(agent) < 0)
		return cd_error_set(err, -EIO, "no random bytes for tokens");
	snprintf(text, sizeof(text),
		 "# deployd bearer tokens: <role> <token>; role = admin | agent | team:<name>\n"
		 "admin %s\nagent %s\n",
		 admin, agent);
	r = fs_write_atomic(path, text, strlen(text), 0600);
	if (r < 0)
		return cd_error_set(err, r, "writing %s: %s", path, strerror(-r));
	return 1;
}

static const struct token *authenticate(struct deployd *d, struct http_request *req)
{
	const char *h = http_request_header(req, "Authorization");
	const struct token *found = NULL;
	const char *tok;

	if (!h)
		return NULL;
	tok = startswith(h, "Bearer ");
	if (!tok)
		return NULL;
	/* Compare against every token (constant time each; no early exit on a match). */
	for (size_t i = 0; i < d->n_tokens; i++)
		if (ct_memeq(tok, strlen(tok), d->tokens[i].secret, strlen(d->tokens[i].secret)) &&
		    !found)
			found = &d->tokens[i];
	return found;
}

static bool permitted(enum deployd_principal_kind k, enum deployd_perm perm)
{
	switch (perm) {
	case DEPLOYD_PERM_OPEN:
		return true;
	case DEPLOYD_PERM_READ:
		return k != DEPLOYD_PRINCIPAL_NONE;
	case DEPLOYD_PERM_WRITE:
		return k == DEPLOYD_PRINCIPAL_ADMIN || k == DEPLOYD_PRINCIPAL_TEAM;
	case DEPLOYD_PERM_AGENT:
		return k == DEPLOYD_PRINCIPAL_ADMIN || k == DEPLOYD_PRINCIPAL_AGENT;
	case DEPLOYD_PERM_ADMIN:
		return k == DEPLOYD_PRINCIPAL_ADMIN;
	}
	return false;
}

static void dispatch(struct http_request *req, void *data)
{
	struct bound_route *b = data;
	struct deployd *d = b->d;
	struct deployd_principal who = anonymous;

	if (!d->no_auth && b->r.perm != DEPLOYD_PERM_OPEN) {
		const struct token *t = authenticate(d, req);

		if (!t) {
			http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"deployd\"");
			http_reply_error(req, 401, "a valid bearer token is required");
			return;
		}
		who.kind = t->kind;
		who.name = t->name;
		who.actor = t->actor;
		if (!permitted(who.kind, b->r.perm)) {
			http_reply_error(req, 403, "token role %s may not %s %s", who.actor,
					 http_request_method(req), http_request_path(req));
			return;
		}
	} else if (d->no_auth) {
		who.kind = DEPLOYD_PRINCIPAL_ADMIN;
		who.name = "admin";
		who.actor = "insecure-no-auth";
	}
	b->r.handler(req, &who, b->r.data);
}

/* ---- instance ------------------------------------------------------------------------------ */

const struct deployd_config *deployd_config(const struct deployd *d)
{
	return d->cfg;
}

struct store *deployd_store(const struct deployd *d)
{
	return d->store;
}

const char *deployd_advertise_url(const struct deployd *d)
{
	return d->advertise_url;
}

const char *deployd_agent_token(const struct deployd *d)
{
	return d->agent_token;
}

int deployd_add_routes(struct deployd *d, const struct deployd_route *routes, size_t n)
{
	struct bound_route *nr;

	if (d->started)
		return -EBUSY;
	nr = reallocarray(d->routes, d->n_routes + n, sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	d->routes = nr;
	for (size_t i = 0; i < n; i++) {
		nr[d->n_routes].r = routes[i];
		nr[d->n_routes].d = d;
		d->n_routes++;
	}
	return 0;
}

int deployd_reply_problem(struct http_request *req, const struct problem *p)
{
	return http_reply_problem(req, p);
}

int deployd_page_params(struct http_request *req, size_t def, size_t max, size_t *ret_size,
			const char **ret_token)
{
	uint64_t v;
	int r;

	r = http_request_query_u64(req, "page_size", def, max, &v);
	if (r < 0 || v == 0) {
		http_reply_error(req, 400, "page_size must be an integer 1..%zu", max);
		return -EINVAL;
	}
	*ret_size = (size_t)v;
	*ret_token = http_request_query(req, "page_token");
	if (*ret_token && !**ret_token)
		*ret_token = NULL;
	return 0;
}

/* ---- common endpoints ---------------------------------------------------------------------- */

static void h_readyz(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct deployd *d = data;
	int64_t last = 0;

	if (store_event_last_id(d->store, &last, NULL) < 0) {
		http_reply_text(req, 503, "store unavailable\n");
		return;
	}
	for (size_t i = 0; i < d->n_roles; i++)
		if (!d->role_started[i] ||
		    (d->roles[i]->ready && !d->roles[i]->ready(d, d->role_state[i]))) {
			char msg[128];

			snprintf(msg, sizeof(msg), "role %s not ready\n", d->roles[i]->name);
			http_reply_text(req, 503, msg);
			return;
		}
	http_reply_text(req, 200, "ready\n");
}

static void h_metrics(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct deployd *d = data;
	struct http_server_stats hs = {};
	struct strbuf sb = STRBUF_INIT;
	struct store_stats ss;
	int64_t last = 0;

	http_server_stats(d->server, &hs);
	store_event_last_id(d->store, &last, NULL);
	store_stats(d->store, &ss);
	strbuf_addf(
		&sb,
		"# HELP deployd_build_info deployd version.\n"
		"# TYPE deployd_build_info gauge\n"
		"deployd_build_info{version=\"%s\"} 1\n"
		"# HELP deployd_http_requests_total HTTP requests answered.\n"
		"# TYPE deployd_http_requests_total counter\n"
		"deployd_http_requests_total %llu\n"
		"# HELP deployd_http_connections_total TCP connections accepted.\n"
		"# TYPE deployd_http_connections_total counter\n"
		"deployd_http_connections_total %llu\n"
		"# HELP deployd_events_last_id Highest event id in the audit log.\n"
		"# TYPE deployd_events_last_id gauge\n"
		"deployd_events_last_id %lld\n"
		"# HELP deployd_store_statements_prepared_total SQL statements compiled (statement "
		"cache misses).\n"
		"# TYPE deployd_store_statements_prepared_total counter\n"
		"deployd_store_statements_prepared_total %llu\n"
		"# HELP deployd_store_readers Read-only database connections open.\n"
		"# TYPE deployd_store_readers gauge\n"
		"deployd_store_readers %llu\n"
		"# HELP deployd_events_pruned_total Events deleted by retention (events_retention_days).\n"
		"# TYPE deployd_events_pruned_total counter\n"
		"deployd_events_pruned_total %llu\n"
		"# HELP deployd_events_prune_errors_total Retention runs that failed (retried hourly).\n"
		"# TYPE deployd_events_prune_errors_total counter\n"
		"deployd_events_prune_errors_total %llu\n"
		"# HELP deployd_store_reader_waits_total Reads that waited for a free connection.\n"
		"# TYPE deployd_store_reader_waits_total counter\n"
		"deployd_store_reader_waits_total %llu\n",
		CD_VERSION, (unsigned long long)hs.requests, (unsigned long long)hs.connections,
		(long long)last, (unsigned long long)ss.statements_prepared,
		(unsigned long long)ss.readers_open,
		(unsigned long long)__atomic_load_n(&d->events_pruned, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&d->prune_errors, __ATOMIC_RELAXED),
		(unsigned long long)ss.reader_waits);
	for (size_t i = 0; i < d->n_roles; i++)
		if (d->role_started[i] && d->roles[i]->metrics)
			d->roles[i]->metrics(d, d->role_state[i], &sb);
	if (!sb.buf) {
		http_reply_error(req, 500, "out of memory");
		return;
	}
	http_reply_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8", sb.buf, sb.len);
	strbuf_release(&sb);
}

static json_t *event_to_json(const struct store_event *e)
{
	char ts[40];
	json_t *data = json_loads(e->data, 0, NULL);

	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o}", "id", (json_int_t)e->id, "ts",
			 clock_format_rfc3339(e->ts, ts, sizeof(ts)), "actor", e->actor, "kind",
			 e->kind, "subject", e->subject, "data", data ?: json_object());
}

static void h_events(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct deployd *d = data;
	struct store_event *ev = NULL;
	struct cd_error err = {};
	uint64_t after, wait_s, limit;
	int64_t pruned = 0;
	bool more;
	usec_t deadline;
	size_t n = 0;
	json_t *arr;
	int r;

	if (http_request_query_u64(req, "after", 0, INT64_MAX, &after) < 0 ||
	    http_request_query_u64(req, "wait", 0, 60, &wait_s) < 0 ||
	    http_request_query_u64(req, "limit", 100, 1000, &limit) < 0 || limit == 0) {
		http_reply_error(req, 400,
				 "after: event id >= 0; wait: seconds 0..60; limit: 1..1000");
		return;
	}
	deadline = clock_mono_usec() + wait_s * USEC_PER_SEC;
	for (;;) {
		usec_t now;

		/* one more than asked tells whether the client should ask again at once */
		r = store_event_list(d->store, (int64_t)after, limit + 1, &ev, &n, &err);
		if (r < 0) {
			http_reply_error(req, 500, "%s", cd_error_message(&err));
			return;
		}
		if (n > 0)
			break;
		store_event_list_free(ev, n);
		ev = NULL;
		now = clock_mono_usec();
		if (now >= deadline || http_request_stopping(req))
			break;
		/* Shutdown wakes this wait (store_event_wake()); the 1 s slice is a backstop. */
		r = store_event_wait(d->store, (int64_t)after, MIN(deadline - now, USEC_PER_SEC),
				     &err);
		if (r < 0) {
			http_reply_error(req, 500, "%s", cd_error_message(&err));
			return;
		}
	}
	more = n > limit;
	if (more)
		n = limit; /* the extra one is released with the rest */
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, event_to_json(&ev[i]));
	if (store_event_pruned_through(d->store, &pruned, NULL) < 0)
		pruned = 0;
	http_reply_json_new(req, 200,
			    json_pack("{s:o, s:I, s:b, s:I}", "events", arr, "last_id",
				      (json_int_t)(n ? ev[n - 1].id : (int64_t)after), "more", more,
				      "pruned_through", (json_int_t)pruned));
	if (more)
		n++;
	store_event_list_free(ev, n);
}

int deployd_new(const struct deployd_options *o, struct deployd **ret, struct cd_error *err)
{
	struct deployd *d = calloc(1, sizeof(*d));
	const struct deployd_route common[] = {
		{ "GET", "/readyz", h_readyz, d, DEPLOYD_PERM_OPEN, 0, 0 },
		{ "GET", "/metrics", h_metrics, d, DEPLOYD_PERM_READ, 0, 0 },
		{ "GET", "/v1/events", h_events, d, DEPLOYD_PERM_READ, 0, 0 },
	};
	int r;

	if (!d)
		return cd_error_set(err, -ENOMEM, "out of memory");
	d->cfg = o->config;
	d->store = o->store;
	pthread_mutex_init(&d->hk_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&d->hk_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	d->no_auth = o->config->insecure_no_auth;
	d->advertise_url = strdup(o->advertise_url);
	if (!d->advertise_url) {
		deployd_free(d);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	if (!d->no_auth) {
		_cleanup_free_ char *text = NULL;
		struct stat stt;

		r = fs_read_file_at(AT_FDCWD, o->token_path, 1 << 20, &text, NULL);
		if (r < 0) {
			deployd_free(d);
			return cd_error_set(err, r, "reading token file %s: %s", o->token_path,
					    strerror(-r));
		}
		if (stat(o->token_path, &stt) == 0 && (stt.st_mode & 077)) {
			deployd_free(d);
			return cd_error_set(err, -EPERM,
					    "token file %s is readable by others (mode %04o); "
					    "chmod 600 it",
					    o->token_path, stt.st_mode & 07777);
		}
		r = tokens_parse(d, o->token_path, text, err);
		if (r < 0) {
			deployd_free(d);
			return r;
		}
	}
	r = deployd_add_routes(d, common, ARRAY_SIZE(common));
	if (r < 0) {
		deployd_free(d);
		return cd_error_set(err, r, "out of memory");
	}
	*ret = d;
	return 0;
}

void deployd_set_access_log(struct deployd *d,
			    void (*fn)(const struct http_access_entry *e, void *userdata),
			    void *userdata)
{
	d->access_log = fn;
	d->access_log_data = userdata;
}

/* false when asked to stop while waiting */
static bool housekeeper_sleep(struct deployd *d, unsigned seconds)
{
	struct timespec ts = clock_timespec_after(CLOCK_MONOTONIC, (usec_t)seconds * USEC_PER_SEC);
	bool stop;

	pthread_mutex_lock(&d->hk_lock);
	while (!d->housekeeper_stop &&
	       pthread_cond_timedwait(&d->hk_cond, &d->hk_lock, &ts) != ETIMEDOUT)
		;
	stop = d->housekeeper_stop;
	pthread_mutex_unlock(&d->hk_lock);
	return !stop;
}

/* Prunes the event log to events_retention_days, in batches (each its own transaction, so
 * writers wait at most one batch). Failures are counted in /metrics and retried next hour. */
static void *housekeeper_run(void *arg)
{
	struct deployd *d = arg;
	unsigned wait_s = PRUNE_FIRST_AFTER_S;

	while (housekeeper_sleep(d, wait_s)) {
		usec_t before = clock_real_usec() -
				(usec_t)d->cfg->events_retention_days * 86400 * USEC_PER_SEC;
		int64_t deleted = PRUNE_BATCH;

		wait_s = PRUNE_INTERVAL_S;
		while (deleted == PRUNE_BATCH &&
		       !__atomic_load_n(&d->housekeeper_stop, __ATOMIC_ACQUIRE)) {
			if (store_event_prune(d->store, before, PRUNE_BATCH, "deployd", &deleted,
					      NULL) < 0) {
				__atomic_add_fetch(&d->prune_errors, 1, __ATOMIC_RELAXED);
				break;
			}
			__atomic_add_fetch(&d->events_pruned, (uint64_t)deleted, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

/* While the HTTP server stops: /v1/events long-polls return at once instead of within 1 s. */
static void wake_event_waiters(void *data)
{
	store_event_wake(data);
}

int deployd_start(struct deployd *d, struct cd_error *err)
{
	const struct deployd_role *known[MAX_ROLES];
	size_t n_known = deployd_roles_known(known, MAX_ROLES);
	struct http_server_config sc = {};
	struct http_route *routes;
	int r;

	for (size_t i = 0; i < n_known; i++) {
		if (!(d->cfg->roles & known[i]->bit))
			continue;
		d->roles[d->n_roles] = known[i];
		if (known[i]->init) {
			r = known[i]->init(d, &d->role_state[d->n_roles], err);
			if (r < 0)
				return r;
		}
		d->role_inited[d->n_roles] = true;
		d->n_roles++;
	}

	routes = calloc(d->n_routes ?: 1, sizeof(*routes));
	if (!routes)
		return cd_error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < d->n_routes; i++) {
		routes[i].method = d->routes[i].r.method;
		routes[i].pattern = d->routes[i].r.pattern;
		routes[i].handler = dispatch;
		routes[i].data = &d->routes[i];
		routes[i].flags = d->routes[i].r.flags |
				  (d->routes[i].r.perm == DEPLOYD_PERM_OPEN ? HTTP_ROUTE_OPEN : 0);
		routes[i].max_body_bytes = d->routes[i].r.max_body_bytes;
	}
	d->started = true;
	sc.listen = d->cfg->listen;
	sc.num_threads = d->cfg->threads;
	sc.bearer_token = NULL; /* dispatch() authenticates: several tokens with roles */
	sc.max_body_bytes = d->cfg->max_body_bytes;
	sc.routes = routes;
	sc.n_routes = d->n_routes;
	sc.access_log = d->access_log;
	sc.userdata = d->access_log_data;
	sc.on_stop = wake_event_waiters;
	sc.on_stop_data = d->store;
	r = http_server_new(&sc, &d->server, err);
	free(routes);
	if (r < 0)
		return r;
	for (size_t i = 0; i < d->n_roles; i++) {
		if (d->roles[i]->start) {
			r = d->roles[i]->start(d, d->role_state[i], err);
			if (r < 0)
				return r;
		}
		d->role_started[i] = true;
	}
	if (d->cfg->events_retention_days > 0) {
		r = pthread_create(&d->housekeeper, NULL, housekeeper_run, d);
		if (r)
			return cd_error_set(err, -r, "starting the housekeeping thread: %s",
					    strerror(r));
		d->housekeeper_started = true;
	}
	return 0;
}

int deployd_port(const struct deployd *d)
{
	return d->server ? http_server_port(d->server) : -1;
}

void deployd_stop(struct deployd *d)
{
	if (d->housekeeper_started) {
		pthread_mutex_lock(&d->hk_lock);
		__atomic_store_n(&d->housekeeper_stop, true, __ATOMIC_RELEASE);
		pthread_cond_signal(&d->hk_cond);
		pthread_mutex_unlock(&d->hk_lock);
		pthread_join(d->housekeeper, NULL);
		d->housekeeper_started = false;
	}
	for (size_t i = d->n_roles; i-- > 0;)
		if (d->role_started[i] && d->roles[i]->stop) {
			d->roles[i]->stop(d, d->role_state[i]);
			d->role_started[i] = false;
		}
	http_server_free(d->server);
	d->server = NULL;
}

void deployd_free(struct deployd *d)
{
	if (!d)
		return;
	deployd_stop(d);
	for (size_t i = d->n_roles; i-- > 0;)
		if (d->role_inited[i] && d->roles[i]->free)
			d->roles[i]->free(d, d->role_state[i]);
	free(d->routes);
	if (d->tokens)
		explicit_bzero(d->tokens, MAX_TOKENS * sizeof(*d->tokens));
	free(d->tokens);
	free(d->advertise_url);
	pthread_cond_destroy(&d->hk_cond);
	pthread_mutex_destroy(&d->hk_lock);
	free(d);
}
