/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl stays behind this file: CURLcode is mapped to -errno here and nowhere else.
 * Connections live in easy handles: a request takes an idle handle from the client's pool (or
 * makes one), and puts it back afterwards with its open connection. Sequential callers thus
 * reuse one connection; concurrent callers each get their own handle. curl does not support
 * sharing the connection cache itself between concurrent threads (CURL_LOCK_DATA_CONNECT), so
 * only the DNS cache goes through a CURLSH.
 */
#include "api/http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/http_server.h" /* http_status_reason() */
#include "lib/clock.h"
#include "lib/id.h"
#include "lib/str.h"

/* Idle handles (each with its connection) kept per client; more concurrent requests than this
 * still work, their handles are just not kept afterwards. */
#define HTTP_CLIENT_POOL_MAX 16

#ifndef CD_VERSION
#define CD_VERSION "0"
#endif

struct http_client {
	char *base_url; /* without trailing '/' */
	char *auth_header;
	char *unix_socket;
	char *user_agent;
	char *no_proxy; /* loopback + the environment's no_proxy: see http_client_new() */
	unsigned connect_timeout_ms;
	unsigned timeout_ms;
	unsigned max_attempts;
	unsigned retry_base_ms;
	unsigned retry_max_ms;
	unsigned retry_after_max_ms;
	size_t max_response;
	CURLSH *share; /* DNS cache only */
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL *pool[HTTP_CLIENT_POOL_MAX]; /* idle easy handles, most recently used last */
	size_t n_pool;
	atomic_uint_fast64_t n_requests;
	atomic_uint_fast64_t n_retries;
	atomic_uint_fast64_t n_connections;
};

/* One attempt's state, filled by curl's callbacks. */
struct xfer {
	struct http_client *c;
	CURL *easy;
	const struct http_client_request *req;
	struct strbuf body;
	char **names;
	char **values;
	size_t n_headers;
	size_t alloc_headers;
	bool streamed; /* on_data got something: no retry */
	int cb_error;  /* why a callback aborted the transfer */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- error mapping (the only place CURLcode is looked at) ---- */

static int map_curl_code(CURLcode cc, long os_errno)
{
	switch (cc) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_CONNECT:
		return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
	case CURLE_BAD_FUNCTION_ARGUMENT:
		return -EINVAL;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTONOSUPPORT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return -EPROTO;
	case CURLE_ABORTED_BY_CALLBACK:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

static bool transport_retryable(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
	       cc == CURLE_GOT_NOTHING || cc == CURLE_PARTIAL_FILE;
}

static bool status_retryable(long status)
{
	return status == 429 || status == 502 || status == 503 || status == 504;
}

static bool method_idempotent(const char *m)
{
	return streq(m, "GET") || streq(m, "HEAD") || streq(m, "PUT") || streq(m, "DELETE") ||
	       streq(m, "OPTIONS");
}

/* ---- life cycle ---- */

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userp)
{
	struct http_client *c = userp;

	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *userp)
{
	struct http_client *c = userp;

	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->locks[data]);
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	pthread_mutex_destroy(&c->pool_lock);
	if (c->share)
		curl_share_cleanup(c->share);
	for (size_t i = 0; i < ARRAY_SIZE(c->locks); i++)
		pthread_mutex_destroy(&c->locks[i]);
	free(c->base_url);
	if (c->auth_header) {
		explicit_bzero(c->auth_header, strlen(c->auth_header));
		free(c->auth_header);
	}
	free(c->unix_socket);
	free(c->user_agent);
	free(c->no_proxy);
	free(c);
}

int http_client_new(const struct http_client_config *config, struct http_client **ret,
		    struct cd_error *err)
{
	_cleanup_http_client_ struct http_client *c = NULL;
	size_t n;

	if (!config || !config->base_url ||
	    !(startswith(config->base_url, "http://") || startswith(config->base_url, "https://")))
		return cd_error_set(err, -EINVAL,
				    "base URL must start with http:// or https://: %s",
				    config && config->base_url ? config->base_url : "(none)");
	if (config->bearer_token && strpbrk(config->bearer_token, "\r\n"))
		return cd_error_set(err, -EINVAL, "bearer token holds a line break");
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return cd_error_set(err, -EIO, "curl_global_init: %s",
				    curl_easy_strerror(curl_init_result));

	c = calloc(1, sizeof(*c));
	if (!c)
		return cd_error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < ARRAY_SIZE(c->locks); i++)
		pthread_mutex_init(&c->locks[i], NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	c->base_url = strdup(config->base_url);
	if (!c->base_url)
		return cd_error_set(err, -ENOMEM, "out of memory");
	n = strlen(c->base_url);
	while (n > 0 && c->base_url[n - 1] == '/')
		c->base_url[--n] = '\0';
	if (config->bearer_token &&
	    asprintf(&c->auth_header, "Authorization: Bearer %s", config->bearer_token) < 0) {
		c->auth_header = NULL;
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	if (config->unix_socket) {
		c->unix_socket = strdup(config->unix_socket);
		if (!c->unix_socket)
			return cd_error_set(err, -ENOMEM, "out of memory");
	}
	c->user_agent = strdup(config->user_agent ? config->user_agent : "codedeploy/" CD_VERSION);
	if (!c->user_agent)
		return cd_error_set(err, -ENOMEM, "out of memory");
	/* A proxy from http_proxy must never see loopback traffic: our bearer tokens would go to it.
	 * CURLOPT_NOPROXY replaces the environment's no_proxy, so keep that list too. */
	{
		const char *env = getenv("no_proxy") ?: getenv("NO_PROXY");

		if (asprintf(&c->no_proxy, "localhost,127.0.0.1,::1%s%s", env && *env ? "," : "",
			     env && *env ? env : "") < 0) {
			c->no_proxy = NULL;
			return cd_error_set(err, -ENOMEM, "out of memory");
		}
	}
	c->connect_timeout_ms = config->connect_timeout_ms ?:
							     HTTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
	c->timeout_ms = config->timeout_ms ?: HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
	c->max_attempts = config->max_attempts ?: HTTP_CLIENT_DEFAULT_MAX_ATTEMPTS;
	c->retry_base_ms = config->retry_base_ms ?: HTTP_CLIENT_DEFAULT_RETRY_BASE_MS;
	c->retry_max_ms = config->retry_max_ms ?: HTTP_CLIENT_DEFAULT_RETRY_MAX_MS;
	c->retry_after_max_ms = config->retry_after_max_ms ?:
							     HTTP_CLIENT_DEFAULT_RETRY_AFTER_MAX_MS;
	c->max_response = config->max_response_bytes ?: HTTP_CLIENT_DEFAULT_MAX_RESPONSE;

	c->share = curl_share_init();
	if (!c->share)
		return cd_error_set(err, -ENOMEM, "curl_share_init failed");
	if (curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
	    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
	    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c) != CURLSHE_OK ||
	    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
		return cd_error_set(err, -EIO, "cannot set up the curl DNS cache");
	*ret = TAKE_PTR(c);
	return 0;
}

/* An idle handle (options reset, connection kept) or a new one; NULL on ENOMEM. */
static CURL *easy_get(struct http_client *c)
{
	CURL *e = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->n_pool > 0)
		e = c->pool[--c->n_pool];
	pthread_mutex_unlock(&c->pool_lock);
	return e ? e : curl_easy_init();
}

static void easy_put(struct http_client *c, CURL *e)
{
	/* Drop the pointers into the finished request (error buffer, callbacks' data, header
	 * list) so nothing can reach them while the handle idles; the connection stays. */
	curl_easy_reset(e);
	pthread_mutex_lock(&c->pool_lock);
	if (c->n_pool < ARRAY_SIZE(c->pool)) {
		c->pool[c->n_pool++] = e;
		e = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	if (e)
		curl_easy_cleanup(e);
}

void http_client_stats(const struct http_client *c, struct http_client_stats *ret)
{
	ret->requests = atomic_load(&c->n_requests);
	ret->retries = atomic_load(&c->n_retries);
	ret->connections = atomic_load(&c->n_connections);
}

/* ---- responses ---- */

static void headers_free(char **names, char **values, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
		free(values[i]);
	}
	free(names);
	free(values);
}

void http_client_response_release(struct http_client_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	free(resp->content_type);
	headers_free(resp->header_names, resp->header_values, resp->n_headers);
	memset(resp, 0, sizeof(*resp));
}

const char *http_client_response_header(const struct http_client_response *resp, const char *name)
{
	for (size_t i = resp->n_headers; i > 0; i--)
		if (!strcasecmp(resp->header_names[i - 1], name))
			return resp->header_values[i - 1];
	return NULL;
}

static void xfer_reset(struct xfer *x)
{
	strbuf_release(&x->body);
	headers_free(x->names, x->values, x->n_headers);
	x->names = x->values = NULL;
	x->n_headers = x->alloc_headers = 0;
	x->cb_error = 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct xfer *x = userdata;
	size_t len = size * nitems, n = len, klen;
	const char *colon, *v;

	/* A new status line starts a new header block (100 Continue, then the final one). */
	if (len >= 5 && !memcmp(buf, "HTTP/", 5)) {
		headers_free(x->names, x->values, x->n_headers);
		x->names = x->values = NULL;
		x->n_headers = x->alloc_headers = 0;
		return len;
	}
	while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n'))
		n--;
	colon = memchr(buf, ':', n);
	if (!colon)
		return len;
	klen = (size_t)(colon - buf);
	v = colon + 1;
	while (v < buf + n && (*v == ' ' || *v == '\t'))
		v++;
	if (x->n_headers == x->alloc_headers) {
		size_t na = x->alloc_headers ? x->alloc_headers * 2 : 16;
		char **nn = realloc(x->names, na * sizeof(char *));
		char **nv;

		if (!nn)
			goto oom;
		x->names = nn;
		nv = realloc(x->values, na * sizeof(char *));
		if (!nv)
			goto oom;
		x->values = nv;
		x->alloc_headers = na;
	}
	x->names[x->n_headers] = strndup(buf, klen);
	x->values[x->n_headers] = strndup(v, (size_t)(buf + n - v));
	if (!x->names[x->n_headers] || !x->values[x->n_headers]) {
		free(x->names[x->n_headers]);
		free(x->values[x->n_headers]);
		goto oom;
	}
	x->n_headers++;
	return len;
oom:
	x->cb_error = -ENOMEM;
	return 0;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t len = size * nmemb;
	long status = 0;

	if (x->req->on_data) {
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status < 300) {
			int r = x->req->on_data(buf, len, x->req->userdata);

			x->streamed = true;
			if (r < 0) {
				x->cb_error = r;
				return CURL_WRITEFUNC_ERROR;
			}
			return len;
		}
	}
	if (x->body.len + len > x->c->max_response) {
		x->cb_error = -EFBIG;
		return CURL_WRITEFUNC_ERROR;
	}
	if (strbuf_add(&x->body, buf, len) < 0) {
		x->cb_error = -ENOMEM;
		return CURL_WRITEFUNC_ERROR;
	}
	return len;
}

/* ---- requests ---- */

static int set_options(struct xfer *x, const char *url, struct curl_slist *headers, char *errbuf)
{
	const struct http_client_request *req = x->req;
	struct http_client *c = x->c;
	CURL *e = x->easy;
	unsigned timeout = req->timeout_ms ? req->timeout_ms : c->timeout_ms;
	CURLcode cc = CURLE_OK;

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (cc == CURLE_OK)                                                                \
			cc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_SHARE, c->share);
	SET(CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM-based resolver timeouts */
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)timeout);
	SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_NOPROXY, c->no_proxy);
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, x);
	if (c->unix_socket)
		SET(CURLOPT_UNIX_SOCKET_PATH, c->unix_socket);
	if (streq(req->method, "HEAD")) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (streq(req->method, "GET") && !req->body) {
		SET(CURLOPT_HTTPGET, 1L);
	} else {
		SET(CURLOPT_CUSTOMREQUEST, req->method);
		if (req->body || streq(req->method, "POST") || streq(req->method, "PUT") ||
		    streq(req->method, "PATCH")) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
			SET(CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
		}
	}
#undef SET
	return cc == CURLE_OK ? 0 : map_curl_code(cc, 0);
}

static usec_t backoff_usec(const struct http_client *c, unsigned retry)
{
	uint64_t delay = c->retry_base_ms;
	uint64_t rnd = 0;

	for (unsigned i = 1; i < retry && delay < c->retry_max_ms; i++)
		delay *= 2;
	if (delay > c->retry_max_ms)
		delay = c->retry_max_ms;
	delay *= USEC_PER_MSEC;
	/* Equal jitter: half fixed so retries do not come too early, half random so clients that
	 * failed together do not come back together. */
	if (id_random_bytes(&rnd, sizeof(rnd)) < 0)
		rnd = (uint64_t)clock_mono_usec();
	return delay / 2 + rnd % (delay / 2 + 1);
}

static int build_headers(const struct http_client *c, const struct http_client_request *req,
			 struct curl_slist **ret)
{
	struct curl_slist *h = NULL, *n;
	_cleanup_free_ char *ct = NULL;

#define ADD(s)                                                                                     \
	do {                                                                                       \
		n = curl_slist_append(h, s);                                                       \
		if (!n) {                                                                          \
			curl_slist_free_all(h);                                                    \
			return -ENOMEM;                                                            \
		}                                                                                  \
		h = n;                                                                             \
	} while (0)
	if (c->auth_header)
		ADD(c->auth_header);
	if (req->content_type) {
		if (strpbrk(req->content_type, "\r\n")) {
			curl_slist_free_all(h);
			return -EINVAL;
		}
		if (asprintf(&ct, "Content-Type: %s", req->content_type) < 0) {
			ct = NULL;
			curl_slist_free_all(h);
			return -ENOMEM;
		}
		ADD(ct);
	} else {
		ADD("Content-Type:"); /* no form-urlencoded default for bodies */
	}
	for (const char *const *p = req->headers; p && *p; p++) {
		if (strpbrk(*p, "\r\n")) {
			curl_slist_free_all(h);
			return -EINVAL;
		}
		ADD(*p);
	}
#undef ADD
	*ret = h;
	return 0;
}

int http_client_request(struct http_client *c, const struct http_client_request *req,
			struct http_client_response *ret, struct cd_error *err)
{
	_cleanup_free_ char *url = NULL;
	struct curl_slist *headers = NULL;
	struct xfer x = { .c = c, .req = req };
	bool retryable;
	unsigned attempt;
	int r;

	if (!req || !req->method || !req->path || !*req->method)
		return cd_error_set(err, -EINVAL, "request without method or path");
	if (strpbrk(req->method, " \r\n") || strpbrk(req->path, " \r\n"))
		return cd_error_set(err, -EINVAL, "invalid method or path");
	if (asprintf(&url, "%s%s%s", c->base_url, req->path[0] == '/' ? "" : "/", req->path) < 0) {
		url = NULL;
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	r = build_headers(c, req, &headers);
	if (r < 0)
		return cd_error_set(err, r, "%s %s: invalid request headers", req->method, url);
	retryable = method_idempotent(req->method) || req->idempotent;

	for (attempt = 1;; attempt++) {
		char errbuf[CURL_ERROR_SIZE] = "";
		long status = 0, os_errno = 0, nconn = 0;
		curl_off_t retry_after = 0;
		bool again;
		CURLcode cc;
		usec_t wait;

		xfer_reset(&x);
		if (!x.easy)
			x.easy = easy_get(c);
		if (!x.easy) {
			r = cd_error_set(err, -ENOMEM, "%s %s: curl_easy_init failed", req->method,
					 url);
			break;
		}
		/* options back to defaults; the handle's open connection survives this */
		curl_easy_reset(x.easy);
		r = set_options(&x, url, headers, errbuf);
		if (r < 0) {
			cd_error_set(err, r, "%s %s: cannot set up the request", req->method, url);
			break;
		}
		cc = curl_easy_perform(x.easy);
		atomic_fetch_add(&c->n_requests, 1);
		if (curl_easy_getinfo(x.easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK &&
		    nconn > 0)
			atomic_fetch_add(&c->n_connections, (uint64_t)nconn);
		curl_easy_getinfo(x.easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(x.easy, CURLINFO_OS_ERRNO, &os_errno);
		curl_easy_getinfo(x.easy, CURLINFO_RETRY_AFTER, &retry_after);

		if (cc == CURLE_OK)
			again = status_retryable(status);
		else
			again = transport_retryable(cc) && x.cb_error == 0;
		again = again && retryable && !x.streamed && attempt < c->max_attempts;
		wait = again ? backoff_usec(c, attempt) : 0;
		if (again && retry_after > 0) {
			if ((uint64_t)retry_after * 1000 > c->retry_after_max_ms)
				again = false; /* not worth waiting: hand the 429/503 back */
			else if ((usec_t)retry_after * USEC_PER_SEC > wait)
				wait = (usec_t)retry_after * USEC_PER_SEC;
		}
		if (again) {
			atomic_fetch_add(&c->n_retries, 1);
			clock_sleep_usec(wait);
			continue;
		}

		if (cc != CURLE_OK) {
			r = x.cb_error ? x.cb_error : map_curl_code(cc, os_errno);
			if (r == -EFBIG)
				cd_error_set(err, r, "%s %s: response body larger than %zu bytes",
					     req->method, url, c->max_response);
			else
				cd_error_set(err, r, "%s %s: %s%s%s%s", req->method, url,
					     curl_easy_strerror(cc), errbuf[0] ? " (" : "", errbuf,
					     errbuf[0] ? ")" : "");
			break;
		}

		{
			struct http_client_response resp = { .status = status,
							     .attempts = attempt };
			const char *ct = NULL;

			resp.body = strbuf_detach(&x.body, &resp.body_len);
			if (curl_easy_getinfo(x.easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
				resp.content_type = strdup(ct);
			resp.header_names = TAKE_PTR(x.names);
			resp.header_values = TAKE_PTR(x.values);
			resp.n_headers = x.n_headers;
			x.n_headers = x.alloc_headers = 0;
			if (!resp.body || (ct && !resp.content_type)) {
				http_client_response_release(&resp);
				r = cd_error_set(err, -ENOMEM, "out of memory");
				break;
			}
			*ret = resp;
			r = 0;
		}
		break;
	}
	if (x.easy)
		easy_put(c, x.easy);
	xfer_reset(&x);
	curl_slist_free_all(headers);
	return r;
}

/* ---- JSON ---- */

static bool is_json_type(const char *ct)
{
	size_t n;

	if (!ct)
		return false;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n == 16 && !strncasecmp(ct, "application/json", 16))
		return true;
	return n > 17 && !strncasecmp(ct, "application/", 12) &&
	       !strncasecmp(ct + n - 5, "+json", 5);
}

int http_client_json(struct http_client *c, const char *method, const char *path, json_t *body,
		     json_t **ret_body, long *ret_status, struct cd_error *err)
{
	static const char *const accept[] = { "Accept: application/json, application/problem+json",
					      NULL };
	_cleanup_http_response_ struct http_client_response resp = { 0 };
	_cleanup_free_ char *out = NULL;
	struct http_client_request req = {
		.method = method,
		.path = path,
		.headers = accept,
	};
	json_t *parsed = NULL;
	int r;

	if (body) {
		out = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!out)
			return cd_error_set(err, -ENOMEM, "cannot serialise the request body");
		req.body = out;
		req.body_len = strlen(out);
		req.content_type = "application/json";
	}
	r = http_client_request(c, &req, &resp, err);
	if (r < 0)
		return r;
	if (resp.body_len > 0 && is_json_type(resp.content_type)) {
		json_error_t jerr;

		parsed = json_loadb(resp.body, resp.body_len, JSON_REJECT_DUPLICATES, &jerr);
		if (!parsed)
			return cd_error_set(err, -EBADMSG,
					    "%s %s: status %ld with invalid JSON (line %d: %s)",
					    method, path, resp.status, jerr.line, jerr.text);
	} else if (resp.body_len > 0 && resp.status >= 200 && resp.status < 300) {
		return cd_error_set(err, -EBADMSG, "%s %s: status %ld with a %s body, not JSON",
				    method, path, resp.status,
				    resp.content_type ? resp.content_type : "untyped");
	}
	if (ret_status)
		*ret_status = resp.status;
	if (ret_body)
		*ret_body = parsed;
	else
		json_decref(parsed);
	return 0;
}

int http_client_problem(long status, const json_t *body, struct problem *ret)
{
	if (body && problem_from_json(body, ret) == 0)
		return 0;
	problem_init(ret, (int)status, NULL, http_status_reason((int)status));
	if (ret->oom) {
		problem_release(ret);
		return -ENOMEM;
	}
	return 0;
}

const char *http_client_problem_format(const struct problem *p, char *buf, size_t size)
{
	size_t n;

	if (size == 0)
		return buf;
	n = (size_t)snprintf(buf, size, "%d %s", p->status,
			     p->title ? p->title : http_status_reason(p->status));
	if (n < size && p->detail)
		n += (size_t)snprintf(buf + n, size - n, ": %s", p->detail);
	for (size_t i = 0; i < p->n_errors && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%s%s: %s", i ? "; " : " (",
				      p->errors[i].pointer[0] ? p->errors[i].pointer : "/",
				      p->errors[i].message);
	if (p->n_errors && n < size)
		n += (size_t)snprintf(buf + n, size - n, "%s)", p->n_dropped ? "; ..." : "");
	return buf;
}

char *http_client_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(s);
	char *out = malloc(len * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}
