/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection for api/http_server + api/http_client: mg_write is wrapped (-Wl,--wrap) so a
 * reply can fail mid-flight as if the client vanished. The server must report -EPIPE to the
 * handler and close without a response; the client must see an empty reply, retry it for
 * idempotent requests and not for POST.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/http_client.h"
#include "api/http_server.h"

struct mg_connection;
int __real_mg_write(struct mg_connection *conn, const void *buf, size_t len);
int __wrap_mg_write(struct mg_connection *conn, const void *buf, size_t len);

static atomic_int fail_writes; /* fail this many mg_write calls, then pass through */

int __wrap_mg_write(struct mg_connection *conn, const void *buf, size_t len)
{
	int n = atomic_load(&fail_writes);

	while (n > 0) {
		if (atomic_compare_exchange_weak(&fail_writes, &n, n - 1))
			return -1;
	}
	return __real_mg_write(conn, buf, len);
}

static struct http_server *srv;
static char base_url[64];
static atomic_int calls;
static atomic_int last_reply_result;
static atomic_int second_write_result;

static void h_hello(struct http_request *req, void *data)
{
	atomic_fetch_add(&calls, 1);
	atomic_store(&last_reply_result, http_reply_text(req, 200, "hello"));
	/* once broken, a reply stays broken: no second response on the same request */
	atomic_store(&second_write_result, http_reply_text(req, 200, "again"));
}

static void h_stream(struct http_request *req, void *data)
{
	int r;

	atomic_fetch_add(&calls, 1);
	r = http_reply_start(req, 200, "text/plain");
	if (r == 0)
		r = http_reply_write(req, "x", 1);
	atomic_store(&last_reply_result, r);
	atomic_store(&second_write_result, http_reply_write(req, "y", 1));
}

static const struct http_route routes[] = {
	{ "GET", "/hello", h_hello, NULL, 0, 0 },
	{ "POST", "/hello", h_hello, NULL, 0, 0 },
	{ "GET", "/stream", h_stream, NULL, 0, 0 },
};

static int group_setup(void **state)
{
	struct http_server_config cfg = {
		.listen = "127.0.0.1:0",
		.routes = routes,
		.n_routes = ARRAY_SIZE(routes),
	};

	if (http_server_new(&cfg, &srv, NULL) < 0)
		return -1;
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", http_server_port(srv));
	return 0;
}

static int group_teardown(void **state)
{
	http_server_free(srv);
	return 0;
}

static int reset(void **state)
{
	atomic_store(&fail_writes, 0);
	atomic_store(&calls, 0);
	atomic_store(&last_reply_result, 1);
	atomic_store(&second_write_result, 1);
	return 0;
}

static struct http_client *client(unsigned max_attempts)
{
	struct http_client_config cfg = {
		.base_url = base_url,
		.max_attempts = max_attempts,
		.retry_base_ms = 1,
		.retry_max_ms = 2,
	};
	struct http_client *c = NULL;

	assert_int_equal(http_client_new(&cfg, &c, NULL), 0);
	return c;
}

static void test_failed_write_is_epipe_and_empty_reply(void **state)
{
	_cleanup_http_client_ struct http_client *c = client(1);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "GET", .path = "/hello" };
	struct cd_error err = { 0 };

	atomic_store(&fail_writes, 1);
	assert_int_equal(http_client_request(c, &req, &r, &err), -ECONNRESET);
	assert_non_null(strstr(err.msg, "/hello"));
	assert_int_equal(atomic_load(&calls), 1);
	assert_int_equal(atomic_load(&last_reply_result), -EPIPE);
	assert_int_equal(atomic_load(&second_write_result), -EALREADY);
}

static void test_get_retried_after_empty_reply(void **state)
{
	_cleanup_http_client_ struct http_client *c = client(3);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "GET", .path = "/hello" };
	struct http_client_stats cs;

	atomic_store(&fail_writes, 1);
	assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "hello");
	assert_int_equal(r.attempts, 2);
	assert_int_equal(atomic_load(&calls), 2);
	http_client_stats(c, &cs);
	assert_int_equal(cs.retries, 1);
	assert_int_equal(cs.connections, 2); /* the broken connection was not reused */
}

static void test_post_not_retried_after_empty_reply(void **state)
{
	_cleanup_http_client_ struct http_client *c = client(3);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "POST",
					   .path = "/hello",
					   .body = "{}",
					   .body_len = 2,
					   .content_type = "application/json" };

	atomic_store(&fail_writes, 1);
	/* the server ran the handler: repeating a POST could do the work twice */
	assert_int_equal(http_client_request(c, &req, &r, NULL), -ECONNRESET);
	assert_int_equal(atomic_load(&calls), 1);
}

static void test_stream_write_failure(void **state)
{
	_cleanup_http_client_ struct http_client *c = client(1);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "GET", .path = "/stream" };

	atomic_store(&fail_writes, 1); /* the head */
	assert_true(http_client_request(c, &req, &r, NULL) < 0);
	assert_int_equal(atomic_load(&last_reply_result), -EPIPE);
	assert_int_equal(atomic_load(&second_write_result), -EPIPE);
}

static void test_server_keeps_serving(void **state)
{
	_cleanup_http_client_ struct http_client *c = client(1);
	_cleanup_http_response_ struct http_client_response r = { 0 };
	struct http_client_request req = { .method = "GET", .path = "/hello" };

	/* after all the broken replies above the workers are all still there */
	for (int i = 0; i < 3; i++) {
		http_client_response_release(&r);
		assert_int_equal(http_client_request(c, &req, &r, NULL), 0);
		assert_int_equal(r.status, 200);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_failed_write_is_epipe_and_empty_reply, reset),
		cmocka_unit_test_setup(test_get_retried_after_empty_reply, reset),
		cmocka_unit_test_setup(test_post_not_retried_after_empty_reply, reset),
		cmocka_unit_test_setup(test_stream_write_failure, reset),
		cmocka_unit_test_setup(test_server_keeps_serving, reset),
	};
	return cmocka_run_group_tests_name("api_http_fault", tests, group_setup, group_teardown);
}
