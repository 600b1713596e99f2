/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for api/http_server and api/http_client: a real server on 127.0.0.1:<free port>
 * talked to with the real client (and raw sockets where the client would hide the behaviour).
 * No timing thresholds: timeouts appear only as behaviour (-ETIMEDOUT), never as measurements.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/http_client.h"
#include "api/http_server.h"
#include "api/json.h"
#include "lib/clock.h"
#include "lib/str.h"

#define TOKEN "s3cret-token-0123456789abcdef"

static struct http_server *srv;
static char base_url[64];

/* ---- server side: handlers ---- */

static atomic_int flaky_count;
static atomic_int flaky_fail_first; /* fail this many attempts with 503 */
static atomic_int limited_count;
static char retry_after_value[16] = "3600";
static atomic_int sleep_count;
static atomic_bool sleep_release;
static atomic_bool sleep_done;
static atomic_int header_checks; /* bit 0: framing header refused, bit 1: CRLF refused */
static atomic_bool longpoll_saw_stop;
static atomic_int follow_result = 1; /* 1 = running/not started */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
struct logged {
	char method[16];
	char path[128];
	int status;
	uint64_t bytes_in;
	uint64_t bytes_out;
};
static struct logged log_entries[512];
static size_t n_log;

static void on_access(const struct http_access_entry *e, void *userdata)
{
	pthread_mutex_lock(&log_lock);
	if (n_log < ARRAY_SIZE(log_entries)) {
		struct logged *l = &log_entries[n_log++];

		snprintf(l->method, sizeof(l->method), "%s", e->method);
		snprintf(l->path, sizeof(l->path), "%s", e->path);
		l->status = e->status;
		l->bytes_in = e->bytes_in;
		l->bytes_out = e->bytes_out;
	}
	pthread_mutex_unlock(&log_lock);
}

static size_t log_mark(void)
{
	size_t n;

	pthread_mutex_lock(&log_lock);
	n = n_log;
	pthread_mutex_unlock(&log_lock);
	return n;
}

/* The last entry for path logged after mark (copied), or false. Entries are written after the
 * reply went out, so the test waits (bounded) for the entry to appear. */
static bool find_log(const char *path, size_t mark, struct logged *ret)
{
	for (int tries = 0; tries < 1000; tries++) {
		bool found = false;

		pthread_mutex_lock(&log_lock);
		for (size_t i = n_log; i > mark; i--)
			if (streq(log_entries[i - 1].path, path)) {
				*ret = log_entries[i - 1];
				found = true;
				break;
			}
		pthread_mutex_unlock(&log_lock);
		if (found)
			return true;
		clock_sleep_usec(2 * USEC_PER_MSEC);
	}
	return false;
}

static void h_job(struct http_request *req, void *data)
{
	http_reply_json_new(req, 200,
			    json_pack("{s:s, s:s?, s:s, s:s}", "route", (const char *)data,
				      "region", http_request_param(req, "region"), "zone",
				      http_request_param(req, "zone"), "name",
				      http_request_param(req, "name")));
}

static void h_files(struct http_request *req, void *data)
{
	http_reply_text(req, 200, http_request_param(req, "path"));
}

static void h_query(struct http_request *req, void *data)
{
	const char *a = http_request_query(req, "a"), *b = http_request_query(req, "b");
	const char *c = http_request_query(req, "c"), *d = http_request_query(req, "d");
	uint64_t n;

	if (http_request_query_u64(req, "n", 7, 1000, &n) < 0) {
		http_reply_error(req, 400, "n must be an integer <= 1000");
		return;
	}
	http_reply_json_new(req, 200,
			    json_pack("{s:s?, s:s?, s:s?, s:b, s:I}", "a", a, "b", b, "c", c, "d",
				      d != NULL, "n", (json_int_t)n));
}

static void h_echo(struct http_request *req, void *data)
{
	_cleanup_problem_ struct problem p;
	json_t *j = NULL;

	problem_init(&p, 400, NULL, NULL);
	if (http_request_json(req, &j, &p) < 0) {
		http_reply_problem(req, &p);
		return;
	}
	http_reply_json_new(req, 200, j);
}

static void h_count_body(struct http_request *req, void *data)
{
	size_t len;

	http_request_body(req, &len);
	http_reply_json_new(req, 200, json_pack("{s:I}", "len", (json_int_t)len));
}

static void h_stream_upload(struct http_request *req, void *data)
{
	char buf[65536];
	uint64_t total = 0;
	ssize_t n;

	while ((n = http_request_read(req, buf, sizeof(buf))) > 0)
		total += (uint64_t)n;
	if (n == -EFBIG) {
		http_reply_error(req, 413, "blob too large");
		return;
	}
	if (n < 0) {
		http_reply_error(req, 400, "read failed");
		return;
	}
	http_reply_json_new(req, 201,
			    json_pack("{s:s, s:I}", "digest", http_request_param(req, "digest"),
				      "len", (json_int_t)total));
}

static void h_flaky(struct http_request *req, void *data)
{
	int n = atomic_fetch_add(&flaky_count, 1) + 1;

	if (n <= atomic_load(&flaky_fail_first)) {
		http_reply_error(req, 503, "try again (attempt %d)", n);
		return;
	}
	http_reply_json_new(req, 200, json_pack("{s:i}", "attempt", n));
}

static void h_limited(struct http_request *req, void *data)
{
	int n = atomic_fetch_add(&limited_count, 1) + 1;

	if (n == 1) {
		http_reply_header(req, "Retry-After", retry_after_value);
		http_reply_error(req, 429, "slow down");
		return;
	}
	http_reply_json_new(req, 200, json_pack("{s:i}", "attempt", n));
}

static void h_sleep(struct http_request *req, void *data)
{
	usec_t end = clock_mono_usec() + 20 * USEC_PER_SEC;

	atomic_fetch_add(&sleep_count, 1);
	while (!http_request_stopping(req) && !atomic_load(&sleep_release) &&
	       clock_mono_usec() < end)
		clock_sleep_usec(5 * USEC_PER_MSEC);
	atomic_store(&sleep_done, true);
	http_reply_text(req, 200, "woke up");
}

/* A long-poll that only ends when the server stops (bounded so a bug cannot hang the suite). */
static void h_longpoll(struct http_request *req, void *data)
{
	usec_t end = clock_mono_usec() + 20 * USEC_PER_SEC;

	atomic_fetch_add(&sleep_count, 1);
	while (!http_request_stopping(req) && clock_mono_usec() < end)
		clock_sleep_usec(2 * USEC_PER_MSEC);
	atomic_store(&longpoll_saw_stop, http_request_stopping(req));
	http_reply_error(req, 503, "shutting down");
}

/* A handler that sleeps on a condition variable of ours (no polling): only on_stop wakes it. */
static pthread_mutex_t cw_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cw_cond = PTHREAD_COND_INITIALIZER;
static atomic_int on_stop_calls;
static atomic_bool cw_woken_by_stop;

static void on_stop(void *data)
{
	atomic_fetch_add(&on_stop_calls, 1);
	pthread_mutex_lock(&cw_lock);
	pthread_cond_broadcast(&cw_cond);
	pthread_mutex_unlock(&cw_lock);
}

static void h_condwait(struct http_request *req, void *data)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 60; /* bounded so a bug cannot hang the suite */
	atomic_fetch_add(&sleep_count, 1);
	pthread_mutex_lock(&cw_lock);
	while (!http_request_stopping(req) &&
	       pthread_cond_timedwait(&cw_cond, &cw_lock, &deadline) == 0)
		;
	pthread_mutex_unlock(&cw_lock);
	atomic_store(&cw_woken_by_stop, http_request_stopping(req) && atomic_load(&on_stop_calls));
	http_reply_error(req, 503, "shutting down");
}

/* Log follow: write until the client goes away (bounded so a bug cannot hang the suite). */
static void h_follow(struct http_request *req, void *data)
{
	char chunk[4096];
	int r = 0;

	memset(chunk, 'L', sizeof(chunk));
	if (http_reply_start(req, 200, "text/plain") < 0)
		return;
	for (int i = 0; i < 1 << 16 && r == 0 && !http_request_stopping(req); i++)
		r = http_reply_write(req, chunk, sizeof(chunk));
	atomic_store(&follow_result, r);
}

static void h_head_only(struct http_request *req, void *data)
{
	http_reply_header(req, "X-Route", "head");
	http_reply_empty(req, 200);
}

static void h_stream(struct http_request *req, void *data)
{
	if (http_reply_start(req, 200, "text/plain") < 0)
		return;
	for (int i = 0; i < 5; i++) {
		char line[32];

		snprintf(line, sizeof(line), "line %d\n", i);
		if (http_reply_write(req, line, strlen(line)) < 0)
			return;
	}
	http_reply_end(req);
}

static void h_noreply(struct http_request *req, void *data)
{
	http_reply_header(req, "ETag", "\"half-done\"");
}

static void h_problem(struct http_request *req, void *data)
{
	_cleanup_problem_ struct problem p;

	problem_init(&p, 422, API_PROBLEM_INVALID, "Validation failed");
	problem_set_detail(&p, "2 invalid fields");
	problem_add_error(&p, "/reqs/vcpus", "must be >= 1");
	problem_add_error(&p, "/name", "required");
	http_reply_problem(req, &p);
}

static void h_peer(struct http_request *req, void *data)
{
	int port;
	const char *peer = http_request_peer(req, &port);

	http_reply_json_new(req, 200, json_pack("{s:s, s:i}", "peer", peer, "port", port));
}

static void h_headers(struct http_request *req, void *data)
{
	int bits = 0;

	if (http_reply_header(req, "Content-Length", "5") == -EINVAL)
		bits |= 1;
	if (http_reply_header(req, "X-Evil", "a\r\nInjected: yes") == -EINVAL)
		bits |= 2;
	atomic_store(&header_checks, bits);
	http_reply_header(req, "ETag", "\"v42\"");
	http_reply_header(req, "Location", "/v1/things/42");
	http_reply_json_new(req, 201, json_pack("{s:i}", "id", 42));
	/* a second reply is refused and does not corrupt the stream */
	if (http_reply_text(req, 200, "again") != -EALREADY)
		atomic_store(&header_checks, 0);
}

static void h_whoami(struct http_request *req, void *data)
{
	const char *who = http_request_principal(req);

	http_reply_text(req, 200, who ? who : "(none)");
}

static void h_empty(struct http_request *req, void *data)
{
	http_reply_empty(req, 204);
}

static const struct http_route routes[] = {
	{ "GET", "/v1/jobs/{region}/{zone}/{name}", h_job, "generic", 0, 0 },
	{ "GET", "/v1/jobs/special/{zone}/{name}", h_job, "special", 0, 0 },
	{ "GET", "/files/{path*}", h_files, NULL, 0, 0 },
	{ "GET", "/v1/query", h_query, NULL, 0, 0 },
	{ "POST", "/v1/echo", h_echo, NULL, 0, 0 },
	{ "PUT", "/v1/echo", h_echo, NULL, 0, 0 },
	{ "POST", "/v1/small", h_count_body, NULL, 0, 16 },
	{ "POST", "/v1/count", h_count_body, NULL, 0, 8 * 1024 * 1024 },
	{ "PUT", "/cas/{digest}", h_stream_upload, NULL, HTTP_ROUTE_STREAM_BODY, SIZE_MAX },
	{ "PUT", "/tiny/{digest}", h_stream_upload, NULL, HTTP_ROUTE_STREAM_BODY, 100 },
	{ "GET", "/v1/flaky", h_flaky, NULL, 0, 0 },
	{ "POST", "/v1/flaky", h_flaky, NULL, 0, 0 },
	{ "GET", "/v1/limited", h_limited, NULL, 0, 0 },
	{ "GET", "/v1/sleep", h_sleep, NULL, 0, 0 },
	{ "GET", "/v1/stream", h_stream, NULL, 0, 0 },
	{ "GET", "/v1/noreply", h_noreply, NULL, 0, 0 },
	{ "GET", "/v1/problem", h_problem, NULL, 0, 0 },
	{ "GET", "/v1/peer", h_peer, NULL, 0, 0 },
	{ "GET", "/v1/headers", h_headers, NULL, 0, 0 },
	{ "DELETE", "/v1/things/{id}", h_empty, NULL, 0, 0 },
	{ "GET", "/v1/open", h_files, NULL, HTTP_ROUTE_OPEN, 0 },
	{ "GET", "/v1/longpoll", h_longpoll, NULL, 0, 0 },
	{ "GET", "/v1/condwait", h_condwait, NULL, 0, 0 },
	{ "HEAD", "/v1/peer", h_head_only, NULL, 0, 0 },
	{ "GET", "/v1/whoami", h_whoami, NULL, 0, 0 },
	{ "GET", "/v1/follow", h_follow, NULL, 0, 0 },
	{ "GET", "/", h_files, NULL, 0, 0 },
	{ "GET", "/v1/whoami/open", h_whoami, NULL, HTTP_ROUTE_OPEN, 0 },
};

static int start_server(const char *token, struct http_server **ret)
{
	struct http_server_config cfg = {
		.listen = "127.0.0.1:0",
		.num_threads = 8,
		.bearer_token = token,
		.routes = routes,
		.n_routes = ARRAY_SIZE(routes),
		.access_log = on_access,
		.on_stop = on_stop,
	};
	struct cd_error err = { 0 };
	int r = http_server_new(&cfg, ret, &err);

	if (r < 0)
		fprintf(stderr, "http_server_new: %s\n", cd_error_message(&err));
	return r;
}

static int group_setup(void **state)
{
	if (start_server(TOKEN, &srv) < 0)
		return -1;
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", http_server_port(srv));
	return 0;
}

static int group_teardown(void **state)
{
	http_server_free(srv);
	return 0;
}

/* ---- client helpers ---- */

static struct http_client *client_with(const char *token, unsigned max_attempts,
				       unsigned timeout_ms)
{
	struct http_client_config cfg = {
		.base_url = base_url,
		.bearer_token = token,
		.max_attempts = max_attempts,
		.retry_base_ms = 1,
		.retry_max_ms = 4,
		.timeout_ms = timeout_ms,
	};
	struct http_client *c = NULL;
	struct cd_error err = { 0 };

	assert_int_equal(http_client_new(&cfg, &c, &err), 0);
	return c;
}

static struct http_client *client(void)
{
	return client_with(TOKEN, 0, 0);
}

static long get(struct http_client *c, const char *path, struct http_client_response *resp)
{
	struct http_client_request req = { .method = "GET", .path = path };
	struct cd_error err = { 0 };
	int r = http_client_request(c, &req, resp, &err);

	if (r < 0)
		fail_msg("GET %s: %s", path, cd_error_message(&err));
	return resp->status;
}

static json_t *get_json(struct http_client *c, const char *path, long *status)
{
	struct cd_error err = { 0 };
	json_t *j = NULL;

	assert_int_equal(http_client_json(c, "GET", path, NULL, &j, status, &err), 0);
	return j;
}

static void assert_problem(const struct http_client_response *resp, long status)
{
	json_t *j;

	assert_int_equal(resp->status, status);
	assert_non_null(resp->content_type);
	assert_string_equal(resp->content_type, "application/problem+json");
	j = json_loadb(resp->body, resp->body_len, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
	assert_non_null(json_string_value(json_object_get(j, "title")));
	json_decref(j);
}

/* Raw request over a fresh TCP connection; returns what the server sent until it closed. */
static char *raw_exchange(const char *request)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(http_server_port(srv)) };
	struct strbuf sb = STRBUF_INIT;
	char buf[4096];
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		assert_int_equal(strbuf_add(&sb, buf, (size_t)n), 0);
	close(fd);
	return strbuf_detach(&sb, NULL);
}

/* ---- tests: health and routing ---- */

static void test_healthz_open_without_token(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(NULL, 0, 0);
	long status = 0;
	json_t *j = get_json(c, "/healthz", &status);

	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
	json_decref(j);
}

/* A proxy from the environment must not see loopback traffic (it would get our token): with
 * http_proxy pointing at a closed port, requests to 127.0.0.1 still go straight through. */
static void test_loopback_bypasses_env_proxy(void **state)
{
	struct http_client *c;
	long status = 0;
	json_t *j;

	setenv("http_proxy", "http://127.0.0.1:9", 1);
	setenv("no_proxy", "example.invalid", 1);
	c = client();
	j = get_json(c, "/healthz", &status);
	unsetenv("http_proxy");
	unsetenv("no_proxy");
	assert_int_equal(status, 200);
	json_decref(j);
	http_client_free(c);
}

static void test_head_on_get_route(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response resp = { 0 };
	struct http_client_request req = { .method = "HEAD", .path = "/healthz" };

	assert_int_equal(http_client_request(c, &req, &resp, NULL), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
	assert_string_equal(http_client_response_header(&resp, "Content-Length"), "15");
}

static void test_route_params(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	long status = 0;
	json_t *j = get_json(c, "/v1/jobs/us-east/us-east-1/web%20app", &status);

	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(j, "route")), "generic");
	assert_string_equal(json_string_value(json_object_get(j, "region")), "us-east");
	assert_string_equal(json_string_value(json_object_get(j, "zone")), "us-east-1");
	assert_string_equal(json_string_value(json_object_get(j, "name")), "web app");
	json_decref(j);
}

static void test_route_param_encoded_slash(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_free_ char *name = http_client_escape("a/b c~");
	char path[128];
	long status = 0;
	json_t *j;

	assert_string_equal(name, "a%2Fb%20c~");
	snprintf(path, sizeof(path), "/v1/jobs/r/z/%s", name);
	j = get_json(c, path, &status);
	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "a/b c~");
	json_decref(j);
}

static void test_route_literal_beats_param(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	long status = 0;
	json_t *j = get_json(c, "/v1/jobs/special/z1/n1", &status);

	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(j, "route")), "special");
	assert_string_equal(json_string_value(json_object_get(j, "zone")), "z1");
	assert_null(json_object_get(j, "region") ? json_string_value(json_object_get(j, "region")) :
						   NULL);
	json_decref(j);
}

static void test_route_wildcard_rest(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	assert_int_equal(get(c, "/files/a/b%20c/d.txt", &r1), 200);
	assert_string_equal(r1.body, "a/b c/d.txt");
	assert_int_equal(get(c, "/files/one", &r2), 200);
	assert_string_equal(r2.body, "one");
	/* the rest must hold at least one non-empty segment */
	assert_int_equal(get(c, "/files/", &r3), 404);
}

static void test_route_trailing_slash_and_unknown(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	assert_int_equal(get(c, "/v1/jobs/a/b/", &r1), 404);
	assert_problem(&r1, 404);
	assert_int_equal(get(c, "/v1/jobs/a/b", &r2), 404);
	assert_int_equal(get(c, "/nothing/here", &r3), 404);
	assert_problem(&r3, 404);
}

static void test_query_decoding(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	long status = 0;
	json_t *j = get_json(c, "/v1/query?a=x%20y%26z&b=1+2&c&n=12", &status);

	assert_int_equal(status, 200);
	assert_string_equal(json_string_value(json_object_get(j, "a")), "x y&z");
	assert_string_equal(json_string_value(json_object_get(j, "b")), "1 2");
	assert_string_equal(json_string_value(json_object_get(j, "c")), "");
	assert_true(json_is_false(json_object_get(j, "d")));
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 12);
	json_decref(j);

	j = get_json(c, "/v1/query", &status);
	assert_int_equal(status, 200);
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 7); /* default */
	json_decref(j);
}

static void test_query_bad_number(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };

	assert_int_equal(get(c, "/v1/query?n=abc", &r1), 400);
	assert_problem(&r1, 400);
	assert_int_equal(get(c, "/v1/query?n=1001", &r2), 400);
}

static void test_bad_encoding_rejected(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	static const char *const paths[] = {
		"/v1/jobs/a/b/c%zz",   "/v1/jobs/a/b/c%2", "/v1/jobs/a/b/c%00d",
		"/v1/jobs/a/b/%2e%2e", "/v1/query?a=%ZZ",  "/v1/query?a=b%00",
	};

	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		_cleanup_http_response_ struct http_client_response r = { 0 };

		assert_int_equal(get(c, paths[i], &r), 400);
		assert_problem(&r, 400);
	}
}

static void test_method_not_allowed(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	struct http_client_request del = { .method = "DELETE", .path = "/v1/echo" };
	struct http_client_request post = { .method = "POST", .path = "/v1/jobs/a/b/c" };

	assert_int_equal(http_client_request(c, &del, &r1, NULL), 0);
	assert_problem(&r1, 405);
	assert_string_equal(http_client_response_header(&r1, "Allow"), "POST, PUT");
	assert_int_equal(http_client_request(c, &post, &r2, NULL), 0);
	assert_problem(&r2, 405);
	assert_string_equal(http_client_response_header(&r2, "Allow"), "GET, HEAD");
}

static void test_empty_reply_204(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request del = { .method = "DELETE", .path = "/v1/things/9" };

	assert_int_equal(http_client_request(c, &del, &r, NULL), 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.body_len, 0);
}

/* ---- tests: auth ---- */

static void test_auth_missing_token(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(NULL, 0, 0);
	_cleanup_http_response_ struct http_client_response r = { 0 };

	assert_int_equal(get(c, "/v1/query", &r), 401);
	assert_problem(&r, 401);
	assert_string_equal(http_client_response_header(&r, "WWW-Authenticate"),
			    "Bearer realm=\"codedeploy\"");
}

static void test_auth_wrong_token(void **state)
{
	static const char *const tokens[] = { "wrong", TOKEN "x", "s3cret", "" };

	for (size_t i = 0; i < ARRAY_SIZE(tokens); i++) {
		_cleanup_http_client_ struct http_client *c = client_with(tokens[i], 0, 0);
		_cleanup_http_response_ struct http_client_response r = { 0 };

		assert_int_equal(get(c, "/v1/query", &r), 401);
		assert_problem(&r, 401);
		assert_non_null(strstr(http_client_response_header(&r, "WWW-Authenticate"),
				       "invalid_token"));
	}
}

static void test_auth_right_token_and_scheme_case(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(NULL, 0, 0);
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	static const char *const lower[] = { "Authorization: bearer   " TOKEN, NULL };
	static const char *const basic[] = { "Authorization: Basic " TOKEN, NULL };
	struct http_client_request req = { .method = "GET", .path = "/v1/query", .headers = lower };

	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_int_equal(r1.status, 200);
	req.headers = basic;
	assert_int_equal(http_client_request(c, &req, &r2, NULL), 0);
	assert_int_equal(r2.status, 401);
	{
		_cleanup_http_client_ struct http_client *ok = client();

		assert_int_equal(get(ok, "/v1/query", &r3), 200);
	}
}

static void test_auth_hides_unknown_paths(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(NULL, 0, 0);
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	struct http_client_request del = { .method = "DELETE", .path = "/v1/echo" };

	/* without a token nobody learns which paths or methods exist */
	assert_int_equal(get(c, "/no/such/path", &r1), 401);
	assert_int_equal(http_client_request(c, &del, &r2, NULL), 0);
	assert_int_equal(r2.status, 401);
}

static void test_open_route_without_token(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(NULL, 0, 0);
	_cleanup_http_response_ struct http_client_response r = { 0 };

	/* /v1/open has no {path}: h_files answers with an empty text */
	assert_int_equal(get(c, "/v1/open", &r), 200);
	assert_int_equal(r.body_len, 0);
}

static void test_auth_disabled(void **state)
{
	_cleanup_http_server_ struct http_server *open_srv = NULL;
	_cleanup_http_client_ struct http_client *c = NULL;
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_config cfg = { .base_url = NULL };
	char url[64];

	assert_int_equal(start_server(NULL, &open_srv), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", http_server_port(open_srv));
	cfg.base_url = url;
	assert_int_equal(http_client_new(&cfg, &c, NULL), 0);
	assert_int_equal(get(c, "/v1/query?a=1", &r), 200);
}

/* ---- tests: bodies ---- */

static void test_body_cap_content_length(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	size_t len = 10 * 1024 * 1024;
	_cleanup_free_ char *big = malloc(len);
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/echo",
		.body = big,
		.body_len = len,
		.content_type = "application/json",
	};
	struct logged l;
	json_t *j;

	size_t mark = log_mark();

	assert_non_null(big);
	memset(big, ' ', len);
	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_problem(&r, 413);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "type")), API_PROBLEM_TOO_LARGE);
	json_decref(j);
	/* refused on the announced length: nothing of the 10 MB was read */
	assert_true(find_log("/v1/echo", mark, &l));
	assert_int_equal(l.status, 413);
	assert_int_equal(l.bytes_in, 0);
}

static void test_body_cap_chunked(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	static const char *const chunked[] = { "Transfer-Encoding: chunked", NULL };
	size_t len = 10 * 1024 * 1024;
	_cleanup_free_ char *big = malloc(len);
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/echo",
		.headers = chunked,
		.body = big,
		.body_len = len,
		.content_type = "application/json",
	};
	struct logged l;

	size_t mark = log_mark();

	assert_non_null(big);
	memset(big, ' ', len);
	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_problem(&r, 413);
	/* read up to the cap (+ what was in flight), not the whole stream */
	assert_true(find_log("/v1/echo", mark, &l));
	assert_int_equal(l.status, 413);
	assert_true(l.bytes_in > HTTP_DEFAULT_MAX_BODY);
	assert_true(l.bytes_in < len);
}

static void test_body_cap_per_route(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/small",
		.body = "0123456789abcdef",
		.body_len = 16,
		.content_type = "application/octet-stream",
	};

	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_int_equal(r1.status, 200);
	req.body_len = 17;
	req.body = "0123456789abcdefg";
	assert_int_equal(http_client_request(c, &req, &r2, NULL), 0);
	assert_problem(&r2, 413);
}

static void test_large_body_with_expect_continue(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	size_t len = 3 * 1024 * 1024; /* above curl's 1 MiB threshold for Expect: 100-continue */
	_cleanup_free_ char *big = malloc(len);
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/count",
		.body = big,
		.body_len = len,
		.content_type = "application/octet-stream",
	};
	json_t *j;

	assert_non_null(big);
	memset(big, 'x', len);
	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_int_equal(r.status, 200);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "len")), (json_int_t)len);
	json_decref(j);
}

static void test_stream_body_route(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	size_t len = 5 * 1024 * 1024; /* above the server's 1 MiB default: route says unlimited */
	_cleanup_free_ char *big = malloc(len);
	struct http_client_request req = {
		.method = "PUT",
		.path = "/cas/sha256:abc",
		.body = big,
		.body_len = len,
		.content_type = "application/octet-stream",
	};
	json_t *j;

	assert_non_null(big);
	memset(big, 'y', len);
	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_int_equal(r1.status, 201);
	j = json_loadb(r1.body, r1.body_len, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "len")), (json_int_t)len);
	assert_string_equal(json_string_value(json_object_get(j, "digest")), "sha256:abc");
	json_decref(j);

	req.path = "/tiny/d";
	req.body_len = 101;
	assert_int_equal(http_client_request(c, &req, &r2, NULL), 0);
	assert_int_equal(r2.status, 413);
}

static void test_json_echo(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	json_t *in = json_pack("{s:s, s:[i,i,i], s:{s:b}}", "name", "web", "ports", 1, 2, 3, "x",
			       "y", 1);
	json_t *out = NULL;
	long status = 0;

	assert_int_equal(http_client_json(c, "POST", "/v1/echo", in, &out, &status, NULL), 0);
	assert_int_equal(status, 200);
	assert_true(json_equal(in, out));
	json_decref(out);
	out = NULL;
	assert_int_equal(http_client_json(c, "PUT", "/v1/echo", in, &out, &status, NULL), 0);
	assert_int_equal(status, 200);
	assert_true(json_equal(in, out));
	json_decref(out);
	json_decref(in);
}

static void test_malformed_json_400(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	_cleanup_problem_ struct problem p;
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/echo",
		.body = "{\"a\": 1,",
		.body_len = 8,
		.content_type = "application/json",
	};
	json_t *j;

	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_problem(&r, 400);
	j = json_loadb(r.body, r.body_len, 0, NULL);
	assert_int_equal(http_client_problem(r.status, j, &p), 0);
	json_decref(j);
	assert_int_equal(p.status, 400);
	assert_true(p.n_errors >= 1);
	assert_string_equal(p.errors[0].pointer, "");
	assert_non_null(strstr(p.errors[0].message, "line"));
}

static void test_duplicate_key_and_media_type(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/echo",
		.body = "{\"a\":1,\"a\":2}",
		.body_len = 13,
		.content_type = "application/json",
	};

	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_problem(&r1, 400);
	req.body = "{\"a\":1}";
	req.body_len = 7;
	req.content_type = "application/x-www-form-urlencoded";
	assert_int_equal(http_client_request(c, &req, &r2, NULL), 0);
	assert_problem(&r2, 415);
}

/* ---- tests: replies ---- */

static void test_handler_without_reply_500(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };

	assert_int_equal(get(c, "/v1/noreply", &r), 500);
	assert_problem(&r, 500);
	assert_null(http_client_response_header(&r, "ETag"));
}

static void test_extra_headers(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };

	assert_int_equal(get(c, "/v1/headers", &r), 201);
	assert_string_equal(http_client_response_header(&r, "ETag"), "\"v42\"");
	assert_string_equal(http_client_response_header(&r, "location"), "/v1/things/42");
	assert_null(http_client_response_header(&r, "Injected"));
	assert_string_equal(r.body, "{\"id\":42}");
	assert_int_equal(atomic_load(&header_checks), 3);
}

static size_t stream_collect_calls;
static int stream_collect(const void *buf, size_t len, void *userdata)
{
	stream_collect_calls++;
	return strbuf_add(userdata, buf, len);
}

static int stream_abort(const void *buf, size_t len, void *userdata)
{
	return -ECANCELED;
}

static void test_chunked_streaming(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	struct http_client_request req = {
		.method = "GET",
		.path = "/v1/stream",
		.on_data = stream_collect,
		.userdata = &sb,
	};

	stream_collect_calls = 0;
	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_client_response_header(&r, "Transfer-Encoding"), "chunked");
	assert_true(stream_collect_calls >= 1);
	assert_string_equal(sb.buf, "line 0\nline 1\nline 2\nline 3\nline 4\n");
	assert_int_equal(r.body_len, 0); /* streamed, not buffered */
}

static void test_chunked_buffered_and_abort(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 }, r2 = { 0 };
	struct http_client_request req = { .method = "GET", .path = "/v1/stream" };
	struct cd_error err = { 0 };

	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_string_equal(r.body, "line 0\nline 1\nline 2\nline 3\nline 4\n");
	req.on_data = stream_abort;
	assert_int_equal(http_client_request(c, &req, &r2, &err), -ECANCELED);
}

static void test_http10_stream_until_close(void **state)
{
	_cleanup_free_ char *out =
		raw_exchange("GET /v1/stream HTTP/1.0\r\nAuthorization: Bearer " TOKEN "\r\n\r\n");

	assert_true(startswith(out, "HTTP/1.1 200 OK\r\n"));
	assert_null(strstr(out, "chunked"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_true(endswith(out, "\r\n\r\nline 0\nline 1\nline 2\nline 3\nline 4\n"));
}

static void test_civetweb_errors_are_problems(void **state)
{
	_cleanup_free_ char *out = raw_exchange("GARBAGE\r\n\r\n");

	assert_true(startswith(out, "HTTP/1.1 400 Bad Request\r\n"));
	assert_non_null(strstr(out, "Content-Type: application/problem+json\r\n"));
	assert_non_null(strstr(out, "\"status\":400"));
}

static void test_access_log_entry(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct logged l;
	size_t mark = log_mark();

	assert_int_equal(get(c, "/v1/jobs/log/zone/entry?x=1", &r), 200);
	assert_true(find_log("/v1/jobs/log/zone/entry", mark, &l));
	assert_string_equal(l.method, "GET");
	assert_int_equal(l.status, 200);
	assert_true(l.bytes_out > r.body_len); /* headers included */
}

/* ---- tests: connections and concurrency ---- */

static void test_keep_alive_reuse(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	struct http_server_stats before, after;
	struct http_client_stats cs;
	json_int_t first_port = -1;

	http_server_stats(srv, &before);
	for (int i = 0; i < 10; i++) {
		long status = 0;
		json_t *j = get_json(c, "/v1/peer", &status);
		json_int_t port = json_integer_value(json_object_get(j, "port"));

		assert_int_equal(status, 200);
		if (first_port < 0)
			first_port = port;
		assert_int_equal(port, first_port); /* same client socket every time */
		json_decref(j);
	}
	http_client_stats(c, &cs);
	assert_int_equal(cs.requests, 10);
	assert_int_equal(cs.connections, 1);
	/* the server counts a request after its reply went out: wait (bounded) for the tenth */
	for (int i = 0; i < 1000; i++) {
		http_server_stats(srv, &after);
		if (after.requests - before.requests >= 10)
			break;
		clock_sleep_usec(USEC_PER_MSEC);
	}
	assert_int_equal(after.connections - before.connections, 1);
	assert_true(after.requests - before.requests >= 10);
}

#define N_THREADS 4
#define N_PER_THREAD 25
static atomic_int concurrent_ok;

static void *concurrent_worker(void *arg)
{
	struct http_client *c = arg;
	unsigned long id = (unsigned long)pthread_self() % 100000;

	for (int i = 0; i < N_PER_THREAD; i++) {
		char path[96], name[32];
		struct cd_error err = { 0 };
		json_t *j = NULL;
		long status = 0;

		snprintf(name, sizeof(name), "t%lu-%d", id, i);
		snprintf(path, sizeof(path), "/v1/jobs/r/z/%s", name);
		if (http_client_json(c, "GET", path, NULL, &j, &status, &err) == 0 &&
		    status == 200 && streq_ptr(json_string_value(json_object_get(j, "name")), name))
			atomic_fetch_add(&concurrent_ok, 1);
		json_decref(j);
	}
	return NULL;
}

static void test_concurrent_requests(void **state)
{
	_cleanup_http_client_ struct http_client *c = client(); /* one client, shared */
	pthread_t t[N_THREADS];
	struct http_client_stats cs;

	atomic_store(&concurrent_ok, 0);
	for (int i = 0; i < N_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, concurrent_worker, c), 0);
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&concurrent_ok), N_THREADS * N_PER_THREAD);
	http_client_stats(c, &cs);
	assert_int_equal(cs.requests, N_THREADS * N_PER_THREAD);
	/* connections are pooled: at most one per thread that ran at once */
	assert_true(cs.connections >= 1 && cs.connections <= N_THREADS);
}

/* ---- tests: retries and timeouts ---- */

static void test_retry_503_then_success(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(TOKEN, 4, 0);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_stats cs;

	atomic_store(&flaky_count, 0);
	atomic_store(&flaky_fail_first, 2);
	assert_int_equal(get(c, "/v1/flaky", &r), 200);
	assert_int_equal(r.attempts, 3);
	assert_int_equal(atomic_load(&flaky_count), 3);
	http_client_stats(c, &cs);
	assert_int_equal(cs.retries, 2);
}

static void test_retry_gives_up(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(TOKEN, 3, 0);
	_cleanup_http_response_ struct http_client_response r = { 0 };

	atomic_store(&flaky_count, 0);
	atomic_store(&flaky_fail_first, 100);
	assert_int_equal(get(c, "/v1/flaky", &r), 503);
	assert_int_equal(r.attempts, 3);
	assert_int_equal(atomic_load(&flaky_count), 3);
	assert_problem(&r, 503);
}

static void test_no_retry_for_post(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(TOKEN, 4, 0);
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	struct http_client_request req = { .method = "POST", .path = "/v1/flaky" };

	atomic_store(&flaky_count, 0);
	atomic_store(&flaky_fail_first, 2);
	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_int_equal(r1.status, 503);
	assert_int_equal(r1.attempts, 1);
	assert_int_equal(atomic_load(&flaky_count), 1);

	/* marked idempotent (the caller sends an Idempotency-Key): retried */
	atomic_store(&flaky_count, 0);
	req.idempotent = true;
	assert_int_equal(http_client_request(c, &req, &r2, NULL), 0);
	assert_int_equal(r2.status, 200);
	assert_int_equal(r2.attempts, 3);
}

static void test_retry_after_too_long_not_waited(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(TOKEN, 4, 0);
	_cleanup_http_response_ struct http_client_response r = { 0 };

	atomic_store(&limited_count, 0);
	snprintf(retry_after_value, sizeof(retry_after_value), "3600");
	assert_int_equal(get(c, "/v1/limited", &r), 429);
	assert_int_equal(r.attempts, 1);
	assert_string_equal(http_client_response_header(&r, "Retry-After"), "3600");
}

static void test_retry_after_honoured(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(TOKEN, 4, 0);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	usec_t start = clock_mono_usec();

	atomic_store(&limited_count, 0);
	snprintf(retry_after_value, sizeof(retry_after_value), "1");
	assert_int_equal(get(c, "/v1/limited", &r), 200);
	assert_int_equal(r.attempts, 2);
	/* behaviour, not performance: the client did wait the second the server asked for */
	assert_true(clock_mono_usec() - start >= USEC_PER_SEC);
}

static void test_connection_refused_retried(void **state)
{
	_cleanup_http_server_ struct http_server *tmp = NULL;
	_cleanup_http_client_ struct http_client *c = NULL;
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_config cfg = { .retry_base_ms = 1,
					  .retry_max_ms = 2,
					  .max_attempts = 3 };
	struct http_client_request req = { .method = "GET", .path = "/healthz" };
	struct http_client_stats cs;
	struct cd_error err = { 0 };
	char url[64];

	assert_int_equal(start_server(NULL, &tmp), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", http_server_port(tmp));
	http_server_free(TAKE_PTR(tmp)); /* nobody listens there now */
	cfg.base_url = url;
	assert_int_equal(http_client_new(&cfg, &c, NULL), 0);
	assert_int_equal(http_client_request(c, &req, &r, &err), -ECONNREFUSED);
	assert_non_null(strstr(cd_error_message(&err), url));
	http_client_stats(c, &cs);
	assert_int_equal(cs.requests, 3);
	assert_int_equal(cs.retries, 2);
}

static void test_client_timeout(void **state)
{
	_cleanup_http_client_ struct http_client *c = client_with(TOKEN, 4, 200);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "GET", .path = "/v1/sleep" };
	struct cd_error err = { 0 };

	atomic_store(&sleep_count, 0);
	atomic_store(&sleep_release, false);
	assert_int_equal(http_client_request(c, &req, &r, &err), -ETIMEDOUT);
	atomic_store(&sleep_release, true);
	/* timeouts are the caller's budget: not retried */
	assert_int_equal(atomic_load(&sleep_count), 1);
}

static void test_response_cap(void **state)
{
	_cleanup_http_client_ struct http_client *c = NULL;
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_config cfg = { .base_url = base_url,
					  .bearer_token = TOKEN,
					  .max_response_bytes = 10 };
	struct http_client_request req = { .method = "GET", .path = "/v1/jobs/a/b/c" };

	assert_int_equal(http_client_new(&cfg, &c, NULL), 0);
	assert_int_equal(http_client_request(c, &req, &r, NULL), -EFBIG);
}

/* ---- tests: problems ---- */

static void test_problem_decoding(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_problem_ struct problem p;
	long status = 0;
	json_t *j = get_json(c, "/v1/problem", &status);
	char line[256];

	assert_int_equal(status, 422);
	assert_int_equal(http_client_problem(status, j, &p), 0);
	json_decref(j);
	assert_int_equal(p.status, 422);
	assert_string_equal(p.type, API_PROBLEM_INVALID);
	assert_string_equal(p.title, "Validation failed");
	assert_string_equal(p.detail, "2 invalid fields");
	assert_int_equal(p.n_errors, 2);
	assert_string_equal(p.errors[0].pointer, "/reqs/vcpus");
	assert_string_equal(p.errors[1].message, "required");
	http_client_problem_format(&p, line, sizeof(line));
	assert_string_equal(line, "422 Validation failed: 2 invalid fields (/reqs/vcpus: must be "
				  ">= 1; /name: required)");
}

static void test_problem_from_non_problem(void **state)
{
	_cleanup_problem_ struct problem p;
	char line[64];

	assert_int_equal(http_client_problem(502, NULL, &p), 0);
	assert_int_equal(p.status, 502);
	assert_string_equal(p.title, "Bad Gateway");
	assert_string_equal(http_client_problem_format(&p, line, sizeof(line)), "502 Bad Gateway");
}

/* ---- tests: configuration and life cycle ---- */

static void test_tls_refused(void **state)
{
	struct http_server_config cfg = { .listen = "127.0.0.1:0", .tls_certificate = "/x.pem" };
	struct http_server *s = NULL;
	struct cd_error err = { 0 };

	assert_int_equal(http_server_new(&cfg, &s, &err), -EOPNOTSUPP);
	assert_null(s);
	assert_non_null(strstr(cd_error_message(&err), "TLS"));
}

static void test_listen_address_validation(void **state)
{
	static const struct {
		const char *listen;
		int r;
	} cases[] = {
		{ "[::1]:0", -EAFNOSUPPORT },	      { "::1:80", -EAFNOSUPPORT },
		{ "/run/taskd.sock", -EAFNOSUPPORT }, { "nonsense", -EINVAL },
		{ "127.0.0.1:70000", -EINVAL },	      { "127.0.0.1:", -EINVAL },
		{ "localhost:80", -EINVAL },	      { NULL, -EINVAL },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct http_server_config cfg = { .listen = cases[i].listen };
		struct http_server *s = NULL;
		struct cd_error err = { 0 };

		assert_int_equal(http_server_new(&cfg, &s, &err), cases[i].r);
		assert_null(s);
		assert_true(err.msg[0] != '\0');
	}
}

static void test_listen_port_in_use(void **state)
{
	struct http_server_config cfg = { 0 };
	struct http_server *s = NULL;
	struct cd_error err = { 0 };
	char listen[32];

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", http_server_port(srv));
	cfg.listen = listen;
	assert_int_equal(http_server_new(&cfg, &s, &err), -EADDRINUSE);
	assert_null(s);
}

static void dummy_handler(struct http_request *req, void *data)
{
	http_reply_empty(req, 204);
}

static void test_bad_route_patterns(void **state)
{
	static const char *const bad[] = {
		"v1/no-slash", "/v1/{rest*}/more", "/v1/{a}/{a}", "/v1//x",
		"/v1/{}",      "/v1/{bad-name}",   "/v1/%41",	  "/v1/../x",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct http_route r = { "GET", bad[i], dummy_handler, NULL, 0, 0 };
		struct http_server_config cfg = { .listen = "127.0.0.1:0",
						  .routes = &r,
						  .n_routes = 1 };
		struct http_server *s = NULL;
		struct cd_error err = { 0 };

		assert_int_equal(http_server_new(&cfg, &s, &err), -EINVAL);
		assert_null(s);
	}
	{
		struct http_route r = { "GET", "/ok", NULL, NULL, 0, 0 };
		struct http_server_config cfg = { .listen = "127.0.0.1:0",
						  .routes = &r,
						  .n_routes = 1 };
		struct http_server *s = NULL;

		assert_int_equal(http_server_new(&cfg, &s, NULL), -EINVAL);
	}
	{
		struct http_route r = { "GE T", "/ok", dummy_handler, NULL, 0, 0 };
		struct http_server_config cfg = { .listen = "127.0.0.1:0",
						  .routes = &r,
						  .n_routes = 1 };
		struct http_server *s = NULL;

		assert_int_equal(http_server_new(&cfg, &s, NULL), -EINVAL);
	}
}

static void test_free_idle_server(void **state)
{
	struct http_server *s = NULL;

	assert_int_equal(start_server(TOKEN, &s), 0);
	assert_true(http_server_port(s) > 0);
	http_server_free(s);
	http_server_free(NULL);
}

static void test_free_with_kept_alive_connection(void **state)
{
	struct http_server *s = NULL;
	_cleanup_http_client_ struct http_client *c = NULL;
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	struct http_client_config cfg = { .max_attempts = 1 };
	struct http_client_request req = { .method = "GET", .path = "/healthz" };
	char url[64];

	assert_int_equal(start_server(NULL, &s), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", http_server_port(s));
	cfg.base_url = url;
	assert_int_equal(http_client_new(&cfg, &c, NULL), 0);
	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_int_equal(r1.status, 200);
	/* the client still holds the connection open; stopping must not wait for it to go */
	http_server_free(s);
	assert_true(http_client_request(c, &req, &r2, NULL) < 0);
}

/* ---- tests: client over a unix socket ---- */

static void *unix_server(void *arg)
{
	int lfd = (int)(intptr_t)arg, fd;
	char buf[4096];
	size_t got = 0;
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				   "Content-Length: 7\r\nConnection: close\r\n\r\nunix ok";

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	if (strstr(buf, "GET /over/unix HTTP/1.1\r\n"))
		(void)!write(fd, resp, sizeof(resp) - 1);
	close(fd);
	return NULL;
}

static void test_client_unix_socket(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_http_client_ struct http_client *c = NULL, *missing = NULL;
	_cleanup_http_response_ struct http_client_response r = { 0 }, r2 = { 0 };
	struct http_client_config cfg = { .base_url = "http://localhost", .max_attempts = 1 };
	struct http_client_request req = { .method = "GET", .path = "/over/unix" };
	pthread_t t;
	int lfd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/cd-test-http-%d.sock", (int)getpid());
	unlink(sa.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(pthread_create(&t, NULL, unix_server, (void *)(intptr_t)lfd), 0);

	cfg.unix_socket = sa.sun_path;
	assert_int_equal(http_client_new(&cfg, &c, NULL), 0);
	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	pthread_join(t, NULL);
	close(lfd);
	unlink(sa.sun_path);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "unix ok");

	/* the socket is gone now */
	assert_int_equal(http_client_new(&cfg, &missing, NULL), 0);
	assert_int_equal(http_client_request(missing, &req, &r2, NULL), -ENOENT);
}

static void test_client_bad_config(void **state)
{
	struct http_client_config cfg = { .base_url = "ftp://x" };
	struct http_client *c = NULL;
	struct cd_error err = { 0 };

	assert_int_equal(http_client_new(&cfg, &c, &err), -EINVAL);
	assert_null(c);
	cfg.base_url = "http://x";
	cfg.bearer_token = "a\r\nX-Injected: 1";
	assert_int_equal(http_client_new(&cfg, &c, NULL), -EINVAL);
}

static void test_sigchld_preserved(void **state)
{
	struct sigaction sa = { .sa_handler = SIG_DFL }, old, now;
	struct http_server *s = NULL;

	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGCHLD, &sa, &old), 0);
	assert_int_equal(start_server(NULL, &s), 0);
	assert_int_equal(sigaction(SIGCHLD, NULL, &now), 0);
	assert_true(now.sa_handler == SIG_DFL);
	/* documented: writing to a vanished client must not kill the daemon */
	assert_int_equal(sigaction(SIGPIPE, NULL, &now), 0);
	assert_true(now.sa_handler == SIG_IGN);
	http_server_free(s);
	sigaction(SIGCHLD, &old, NULL);
}

struct longpoll_arg {
	char url[64];
	const char *path; /* NULL: /v1/longpoll */
	int r;
	long status;
};

static void *longpoll_client(void *p)
{
	struct longpoll_arg *a = p;
	struct http_client_config cfg = { .base_url = a->url, .max_attempts = 1 };
	struct http_client_request req = { .method = "GET", .path = a->path ?: "/v1/longpoll" };
	struct http_client_response resp = { 0 };
	struct http_client *c = NULL;

	a->r = http_client_new(&cfg, &c, NULL);
	if (a->r == 0)
		a->r = http_client_request(c, &req, &resp, NULL);
	a->status = resp.status;
	http_client_response_release(&resp);
	http_client_free(c);
	return NULL;
}

static void test_free_ends_long_poll(void **state)
{
	struct http_server *s = NULL;
	struct longpoll_arg a = { .r = 1 };
	pthread_t t;

	assert_int_equal(start_server(NULL, &s), 0);
	snprintf(a.url, sizeof(a.url), "http://127.0.0.1:%d", http_server_port(s));
	atomic_store(&sleep_count, 0);
	atomic_store(&longpoll_saw_stop, false);
	assert_int_equal(pthread_create(&t, NULL, longpoll_client, &a), 0);
	for (int i = 0; i < 5000 && atomic_load(&sleep_count) == 0; i++)
		clock_sleep_usec(USEC_PER_MSEC);
	assert_int_equal(atomic_load(&sleep_count), 1);
	http_server_free(s); /* returns once the handler saw the stop and replied */
	assert_true(atomic_load(&longpoll_saw_stop));
	pthread_join(t, NULL);
	/* the reply may or may not make it out before the socket closes; either is fine */
	assert_true(a.r < 0 || a.status == 503);
}

/* A handler sleeping on the caller's own condition variable is woken by on_stop while
 * http_server_free() waits for it (and the accept thread is woken too: free returns). */
static void test_free_calls_on_stop(void **state)
{
	struct http_server *s = NULL;
	struct longpoll_arg a = { .r = 1, .path = "/v1/condwait" };
	pthread_t t;

	assert_int_equal(start_server(NULL, &s), 0);
	snprintf(a.url, sizeof(a.url), "http://127.0.0.1:%d", http_server_port(s));
	atomic_store(&sleep_count, 0);
	atomic_store(&on_stop_calls, 0);
	atomic_store(&cw_woken_by_stop, false);
	assert_int_equal(pthread_create(&t, NULL, longpoll_client, &a), 0);
	for (int i = 0; i < 5000 && atomic_load(&sleep_count) == 0; i++)
		clock_sleep_usec(USEC_PER_MSEC);
	assert_int_equal(atomic_load(&sleep_count), 1);
	http_server_free(s);
	assert_true(atomic_load(&on_stop_calls) > 0);
	assert_true(atomic_load(&cw_woken_by_stop));
	pthread_join(t, NULL);
}

static void test_expect_unsupported_417(void **state)
{
	_cleanup_free_ char *out =
		raw_exchange("POST /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
			     "\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n{}");

	assert_true(startswith(out, "HTTP/1.1 417 Expectation Failed\r\n"));
	assert_non_null(strstr(out, "application/problem+json"));
}

static void test_pipelined_keep_alive(void **state)
{
	_cleanup_free_ char *out = raw_exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
						"GET /healthz HTTP/1.1\r\nHost: x\r\n"
						"Connection: close\r\n\r\n");
	const char *second;

	assert_true(startswith(out, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out, "Connection: keep-alive\r\n"));
	second = strstr(out + 1, "HTTP/1.1 200 OK\r\n");
	assert_non_null(second);
	assert_non_null(strstr(second, "Connection: close\r\n"));
}

static void test_http10_closes_by_default(void **state)
{
	_cleanup_free_ char *out = raw_exchange("GET /healthz HTTP/1.0\r\n\r\n");

	assert_true(startswith(out, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_non_null(strstr(out, "Content-Length: 15\r\n"));
	assert_true(endswith(out, "{\"status\":\"ok\"}"));
}

static void test_small_unread_body_keeps_connection(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	/* 40 KB: more than civetweb buffers with the headers, less than the drain limit */
	size_t len = 40 * 1024;
	_cleanup_free_ char *body = calloc(1, len);
	struct http_client_request req = {
		.method = "POST",
		.path = "/no/such/thing",
		.body = body,
		.body_len = len,
		.content_type = "application/octet-stream",
	};
	struct http_client_stats cs;

	assert_non_null(body);
	for (int i = 0; i < 3; i++) {
		_cleanup_http_response_ struct http_client_response r = { 0 };

		assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
		assert_problem(&r, 404);
	}
	http_client_stats(c, &cs);
	assert_int_equal(cs.connections, 1); /* the 404s drained the bodies and kept alive */
}

static void test_413_closes_connection(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/small",
		.body = "0123456789abcdefXYZ",
		.body_len = 19,
		.content_type = "application/octet-stream",
	};
	struct http_client_stats cs;

	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_problem(&r1, 413);
	assert_string_equal(http_client_response_header(&r1, "Connection"), "close");
	assert_int_equal(get(c, "/healthz", &r2), 200);
	http_client_stats(c, &cs);
	assert_int_equal(cs.connections, 2);
}

static void test_chunked_request_body_accepted(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	static const char *const chunked[] = { "Transfer-Encoding: chunked", NULL };
	struct http_client_request req = {
		.method = "POST",
		.path = "/v1/echo",
		.headers = chunked,
		.body = "{\"chunked\":true}",
		.body_len = 16,
		.content_type = "application/json",
	};

	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"chunked\":true}");
}

static void test_empty_json_body_400(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "POST",
					   .path = "/v1/echo",
					   .content_type = "application/json" };

	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_problem(&r, 400);
}

static void test_head_route_preferred_over_get(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "HEAD", .path = "/v1/peer" };

	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_client_response_header(&r, "X-Route"), "head");
}

static void test_client_json_non_json_2xx(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	struct cd_error err = { 0 };
	json_t *j = NULL;
	long status = 0;

	assert_int_equal(http_client_json(c, "GET", "/files/x", NULL, &j, &status, &err), -EBADMSG);
	assert_null(j);
	assert_non_null(strstr(err.msg, "text/plain"));
	/* an error status with a problem body decodes to the problem object */
	assert_int_equal(http_client_json(c, "GET", "/v1/nothing", NULL, &j, &status, &err), 0);
	assert_int_equal(status, 404);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
	json_decref(j);
}

static void test_server_config_limits(void **state)
{
	struct http_server_config cfg = { .listen = "127.0.0.1:0", .num_threads = 5000 };
	struct http_server *s = NULL;

	assert_int_equal(http_server_new(&cfg, &s, NULL), -EINVAL);
	cfg.num_threads = 0;
	cfg.bearer_token = "";
	assert_int_equal(http_server_new(&cfg, &s, NULL), -EINVAL);
	cfg.bearer_token = NULL;
	cfg.n_routes = 1;
	assert_int_equal(http_server_new(&cfg, &s, NULL), -EINVAL);
	assert_null(s);
}

static void test_body_read_timeout(void **state)
{
	struct http_server_config cfg = {
		.listen = "127.0.0.1:0",
		.routes = routes,
		.n_routes = ARRAY_SIZE(routes),
		.request_timeout_ms = 200,
		.access_log = on_access,
	};
	struct http_server *s = NULL;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	static const char req[] = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
				  "Content-Type: application/json\r\n\r\n{\"a\":";
	struct logged l;
	size_t mark = log_mark();
	char buf[256];
	int fd;

	assert_int_equal(http_server_new(&cfg, &s, NULL), 0);
	sa.sin_port = htons(http_server_port(s));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	/* the server gives up on the missing 95 bytes and closes: read returns eventually */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	assert_true(find_log("/v1/echo", mark, &l));
	assert_true(l.status == 408 || l.status == 400);
	assert_int_equal(l.bytes_in, 5);
	http_server_free(s);
}

static int raw_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Read until the end of one header block ("\r\n\r\n"); returns it (caller frees). */
static char *read_head(int fd)
{
	struct strbuf sb = STRBUF_INIT;
	char c;

	while (read(fd, &c, 1) == 1) {
		assert_int_equal(strbuf_add(&sb, &c, 1), 0);
		if (endswith(sb.buf, "\r\n\r\n"))
			break;
	}
	return strbuf_detach(&sb, NULL);
}

static void test_expect_100_continue_sent(void **state)
{
	static const char head[] =
		"POST /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
		"\r\nContent-Type: application/json\r\nContent-Length: 7\r\n"
		"Expect: 100-continue\r\n\r\n";
	_cleanup_free_ char *interim = NULL, *final = NULL;
	int fd = raw_connect(http_server_port(srv));

	assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t)sizeof(head) - 1);
	/* the body is not sent yet: the server must invite it */
	interim = read_head(fd);
	assert_string_equal(interim, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(write(fd, "{\"a\":1}", 7), 7);
	final = read_head(fd);
	assert_true(startswith(final, "HTTP/1.1 200 OK\r\n"));
	close(fd);
}

static void test_expect_100_refused_without_continue(void **state)
{
	static const char head[] =
		"POST /v1/small HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
		"\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n";
	_cleanup_free_ char *final = NULL;
	int fd = raw_connect(http_server_port(srv));

	assert_int_equal(write(fd, head, sizeof(head) - 1), (ssize_t)sizeof(head) - 1);
	/* straight to the verdict, no invitation to send 5 MB */
	final = read_head(fd);
	assert_true(startswith(final, "HTTP/1.1 413 Content Too Large\r\n"));
	assert_non_null(strstr(final, "Connection: close\r\n"));
	close(fd);
}

struct sleeper_arg {
	struct http_client *c;
	long status;
};

static void *sleeper(void *p)
{
	struct sleeper_arg *a = p;
	struct http_client_request req = { .method = "GET", .path = "/v1/sleep" };
	struct http_client_response resp = { 0 };

	if (http_client_request(a->c, &req, &resp, NULL) == 0)
		a->status = resp.status;
	http_client_response_release(&resp);
	return NULL;
}

static void test_client_not_serialised(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct sleeper_arg a = { .c = c };
	pthread_t t;

	atomic_store(&sleep_count, 0);
	atomic_store(&sleep_release, false);
	atomic_store(&sleep_done, false);
	assert_int_equal(pthread_create(&t, NULL, sleeper, &a), 0);
	for (int i = 0; i < 5000 && atomic_load(&sleep_count) == 0; i++)
		clock_sleep_usec(USEC_PER_MSEC);
	assert_int_equal(atomic_load(&sleep_count), 1);
	/* the same client answers while its other request is still parked in the server */
	assert_int_equal(get(c, "/healthz", &r), 200);
	assert_false(atomic_load(&sleep_done));
	atomic_store(&sleep_release, true);
	pthread_join(t, NULL);
	assert_int_equal(a.status, 200);
}

static void test_several_tokens_with_principals(void **state)
{
	static const char admin[] = "admin", agent[] = "agent";
	const struct http_token tokens[] = {
		{ "admin-secret-0123456789", admin },
		{ "agent-secret-0123456789", agent },
	};
	struct http_server_config cfg = {
		.listen = "127.0.0.1:0",
		.tokens = tokens,
		.n_tokens = ARRAY_SIZE(tokens),
		.routes = routes,
		.n_routes = ARRAY_SIZE(routes),
	};
	static const struct {
		const char *token;
		long status;
		const char *body;
	} cases[] = {
		{ "admin-secret-0123456789", 200, "admin" },
		{ "agent-secret-0123456789", 200, "agent" },
		{ "agent-secret-012345678", 401, NULL },
		{ NULL, 401, NULL },
	};
	_cleanup_http_server_ struct http_server *s = NULL;
	char url[64];

	assert_int_equal(http_server_new(&cfg, &s, NULL), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", http_server_port(s));
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct http_client_config cc = { .base_url = url, .bearer_token = cases[i].token };
		_cleanup_http_client_ struct http_client *c = NULL;
		_cleanup_http_response_ struct http_client_response r = { 0 }, o = { 0 };

		assert_int_equal(http_client_new(&cc, &c, NULL), 0);
		assert_int_equal(get(c, "/v1/whoami", &r), cases[i].status);
		if (cases[i].body)
			assert_string_equal(r.body, cases[i].body);
		/* open routes check no token: no principal even when a valid one was sent */
		assert_int_equal(get(c, "/v1/whoami/open", &o), 200);
		assert_string_equal(o.body, "(none)");
	}
	{
		const struct http_token empty[] = { { "", admin } };

		cfg.tokens = empty;
		cfg.n_tokens = 1;
		assert_int_equal(http_server_new(&cfg, &s, NULL), -EINVAL);
	}
}

static void test_single_token_has_no_principal(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };

	assert_int_equal(get(c, "/v1/whoami", &r), 200);
	assert_string_equal(r.body, "(none)");
}

static int stop_after_first(const void *buf, size_t len, void *userdata)
{
	int *calls = userdata;

	return ++*calls > 1 ? -ECANCELED : 0;
}

static void test_follow_ends_when_client_leaves(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r = { 0 };
	int calls = 0;
	struct http_client_request req = {
		.method = "GET",
		.path = "/v1/follow",
		.on_data = stop_after_first,
		.userdata = &calls,
	};

	atomic_store(&follow_result, 1);
	assert_int_equal(http_client_request(c, &req, &r, NULL), -ECANCELED);
	/* curl closed the connection; the handler's writes must start failing */
	for (int i = 0; i < 10000 && atomic_load(&follow_result) == 1; i++)
		clock_sleep_usec(USEC_PER_MSEC);
	assert_int_equal(atomic_load(&follow_result), -EPIPE);
}

static void test_stream_route_cap_chunked(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 };
	static const char *const chunked[] = { "Transfer-Encoding: chunked", NULL };
	char body[200];
	struct http_client_request req = {
		.method = "PUT",
		.path = "/tiny/x",
		.headers = chunked,
		.body = body,
		.body_len = 100,
		.content_type = "application/octet-stream",
	};

	memset(body, 'z', sizeof(body));
	assert_int_equal(http_client_request(c, &req, &r1, NULL), 0);
	assert_int_equal(r1.status, 201); /* exactly the cap */
	req.body_len = 101;
	assert_int_equal(http_client_request(c, &req, &r2, NULL), 0);
	assert_problem(&r2, 413);
}

static void test_root_route_and_limits(void **state)
{
	_cleanup_http_client_ struct http_client *c = client();
	_cleanup_http_response_ struct http_client_response r1 = { 0 }, r2 = { 0 }, r3 = { 0 },
							    r4 = { 0 };
	_cleanup_strbuf_ struct strbuf deep = STRBUF_INIT, query = STRBUF_INIT;

	assert_int_equal(get(c, "/", &r1), 200);
	/* civetweb folds repeated slashes before we see the path */
	assert_int_equal(get(c, "/files//a//b", &r2), 200);
	assert_string_equal(r2.body, "a/b");
	for (int i = 0; i < 65; i++)
		assert_int_equal(strbuf_adds(&deep, "/a"), 0);
	assert_int_equal(get(c, deep.buf, &r3), 414);
	assert_problem(&r3, 414);
	assert_int_equal(strbuf_adds(&query, "/v1/query?"), 0);
	for (int i = 0; i < 129; i++)
		assert_int_equal(strbuf_addf(&query, "k%d=v&", i), 0);
	assert_int_equal(get(c, query.buf, &r4), 400);
}

static void test_problem_format_and_escape_edges(void **state)
{
	_cleanup_problem_ struct problem p;
	_cleanup_free_ char *e = http_client_escape("\xc3\xa9 ~/?#");
	char small[16], line[256];

	assert_string_equal(e, "%C3%A9%20~%2F%3F%23");
	problem_init(&p, 400, NULL, "Bad Request");
	problem_add_error(&p, "", "unexpected end of input at line 1");
	assert_string_equal(http_client_problem_format(&p, line, sizeof(line)),
			    "400 Bad Request (/: unexpected end of input at line 1)");
	/* truncated, still terminated */
	http_client_problem_format(&p, small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthz_open_without_token),
		cmocka_unit_test(test_loopback_bypasses_env_proxy),
		cmocka_unit_test(test_head_on_get_route),
		cmocka_unit_test(test_route_params),
		cmocka_unit_test(test_route_param_encoded_slash),
		cmocka_unit_test(test_route_literal_beats_param),
		cmocka_unit_test(test_route_wildcard_rest),
		cmocka_unit_test(test_route_trailing_slash_and_unknown),
		cmocka_unit_test(test_query_decoding),
		cmocka_unit_test(test_query_bad_number),
		cmocka_unit_test(test_bad_encoding_rejected),
		cmocka_unit_test(test_method_not_allowed),
		cmocka_unit_test(test_empty_reply_204),
		cmocka_unit_test(test_auth_missing_token),
		cmocka_unit_test(test_auth_wrong_token),
		cmocka_unit_test(test_auth_right_token_and_scheme_case),
		cmocka_unit_test(test_auth_hides_unknown_paths),
		cmocka_unit_test(test_open_route_without_token),
		cmocka_unit_test(test_auth_disabled),
		cmocka_unit_test(test_body_cap_content_length),
		cmocka_unit_test(test_body_cap_chunked),
		cmocka_unit_test(test_body_cap_per_route),
		cmocka_unit_test(test_large_body_with_expect_continue),
		cmocka_unit_test(test_stream_body_route),
		cmocka_unit_test(test_json_echo),
		cmocka_unit_test(test_malformed_json_400),
		cmocka_unit_test(test_duplicate_key_and_media_type),
		cmocka_unit_test(test_handler_without_reply_500),
		cmocka_unit_test(test_extra_headers),
		cmocka_unit_test(test_chunked_streaming),
		cmocka_unit_test(test_chunked_buffered_and_abort),
		cmocka_unit_test(test_http10_stream_until_close),
		cmocka_unit_test(test_civetweb_errors_are_problems),
		cmocka_unit_test(test_access_log_entry),
		cmocka_unit_test(test_keep_alive_reuse),
		cmocka_unit_test(test_concurrent_requests),
		cmocka_unit_test(test_retry_503_then_success),
		cmocka_unit_test(test_retry_gives_up),
		cmocka_unit_test(test_no_retry_for_post),
		cmocka_unit_test(test_retry_after_too_long_not_waited),
		cmocka_unit_test(test_retry_after_honoured),
		cmocka_unit_test(test_connection_refused_retried),
		cmocka_unit_test(test_client_timeout),
		cmocka_unit_test(test_response_cap),
		cmocka_unit_test(test_problem_decoding),
		cmocka_unit_test(test_problem_from_non_problem),
		cmocka_unit_test(test_tls_refused),
		cmocka_unit_test(test_listen_address_validation),
		cmocka_unit_test(test_listen_port_in_use),
		cmocka_unit_test(test_bad_route_patterns),
		cmocka_unit_test(test_free_idle_server),
		cmocka_unit_test(test_free_with_kept_alive_connection),
		cmocka_unit_test(test_client_unix_socket),
		cmocka_unit_test(test_client_bad_config),
		cmocka_unit_test(test_sigchld_preserved),
		cmocka_unit_test(test_free_ends_long_poll),
		cmocka_unit_test(test_free_calls_on_stop),
		cmocka_unit_test(test_expect_unsupported_417),
		cmocka_unit_test(test_pipelined_keep_alive),
		cmocka_unit_test(test_http10_closes_by_default),
		cmocka_unit_test(test_small_unread_body_keeps_connection),
		cmocka_unit_test(test_413_closes_connection),
		cmocka_unit_test(test_chunked_request_body_accepted),
		cmocka_unit_test(test_empty_json_body_400),
		cmocka_unit_test(test_head_route_preferred_over_get),
		cmocka_unit_test(test_client_json_non_json_2xx),
		cmocka_unit_test(test_server_config_limits),
		cmocka_unit_test(test_body_read_timeout),
		cmocka_unit_test(test_expect_100_continue_sent),
		cmocka_unit_test(test_expect_100_refused_without_continue),
		cmocka_unit_test(test_client_not_serialised),
		cmocka_unit_test(test_several_tokens_with_principals),
		cmocka_unit_test(test_single_token_has_no_principal),
		cmocka_unit_test(test_follow_ends_when_client_leaves),
		cmocka_unit_test(test_stream_route_cap_chunked),
		cmocka_unit_test(test_root_route_and_limits),
		cmocka_unit_test(test_problem_format_and_escape_edges),
	};
	return cmocka_run_group_tests_name("api_http", tests, group_setup, group_teardown);
}
