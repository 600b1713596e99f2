/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http_client.h — the HTTP client every binary talks to our APIs with (over libcurl, which only
 * http_client.c includes). Owns: connection reuse, timeouts, unix-socket transport, retries with
 * exponential backoff and jitter for idempotent requests, response size caps, JSON in/out and
 * decoding problem+json errors, and mapping CURLcode to -errno + message once.
 * Does not own: artifact downloads to disk (fetcher/ streams and verifies those itself).
 *
 * Thread-safety: a client is immutable after http_client_new() and may be used from any number
 * of threads at once. Each request borrows a CURL easy handle from the client's pool of idle
 * handles (a new one when none is idle) and returns it with its open connection, so sequential
 * requests reuse one connection and concurrent ones run in parallel on their own. (One easy
 * handle per client would serialise every caller; curl does not support sharing one connection
 * cache between concurrent threads, so only the DNS cache is shared, through a CURLSH.)
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/problem.h"
#include "lib/error.h"
#include "lib/macro.h"

struct http_client;

#define HTTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define HTTP_CLIENT_DEFAULT_TIMEOUT_MS 30000u
#define HTTP_CLIENT_DEFAULT_MAX_ATTEMPTS 4u
#define HTTP_CLIENT_DEFAULT_RETRY_BASE_MS 100u
#define HTTP_CLIENT_DEFAULT_RETRY_MAX_MS 5000u
#define HTTP_CLIENT_DEFAULT_RETRY_AFTER_MAX_MS 30000u
#define HTTP_CLIENT_DEFAULT_MAX_RESPONSE ((size_t)64 * 1024 * 1024)

struct http_client_config {
	/* "http://127.0.0.1:7411" (a trailing '/' is ignored). With unix_socket set, the host
	 * part only fills the Host header: "http://localhost". */
	const char *base_url;
	const char *bearer_token;    /* sent as Authorization: Bearer; NULL = none */
	const char *unix_socket;     /* connect to this AF_UNIX path instead of TCP; NULL = TCP */
	unsigned connect_timeout_ms; /* 0 = 5 s */
	unsigned timeout_ms;	     /* whole exchange, per attempt; 0 = 30 s */
	/* Attempts for retryable requests, the first included: 1 = never retry; 0 = 4. */
	unsigned max_attempts;
	unsigned retry_base_ms; /* first backoff, doubled each retry; 0 = 100 ms */
	unsigned retry_max_ms;	/* backoff cap; 0 = 5 s */
	/* A Retry-After longer than this is not waited for: the 429/503 is returned. 0 = 30 s. */
	unsigned retry_after_max_ms;
	size_t max_response_bytes; /* buffered bodies above this fail with -EFBIG; 0 = 64 MiB */
	const char *user_agent;	   /* NULL = "codedeploy/<version>" */
};

/*
 * Retry policy: a request is retried when it is idempotent — GET, HEAD, PUT, DELETE, OPTIONS, or
 * any method with .idempotent set (POST with an Idempotency-Key) — and the attempt failed to
 * connect, lost the connection, got nothing, or got 502/503/504/429. The wait is
 * base * 2^retry capped at retry_max, with "equal jitter" (a random point in its upper half), or
 * Retry-After when the server sent a longer one. Timeouts are not retried: the timeout is the
 * caller's budget. Streaming responses are not retried once data reached on_data.
 */
struct http_client_request {
	const char *method;	    /* "GET", "PUT", ... */
	const char *path;	    /* "/v1/jobs?page_size=10": appended to base_url, the
					 * caller encodes it (http_client_escape()) */
	const char *const *headers; /* NULL-terminated "Name: value" lines, may be NULL */
	const void *body;	    /* may be NULL */
	size_t body_len;
	const char *content_type; /* of body; NULL = none sent */
	bool idempotent;	  /* safe to retry although the method is not */
	unsigned timeout_ms;	  /* 0 = the client's */
	/*
	 * Stream the response body (log follow, long-poll) instead of buffering it: called for
	 * each piece as it arrives, for 2xx responses only (error bodies are still buffered into
	 * the response so they can be decoded). Return < 0 to abort: the request then fails
	 * with that code.
	 */
	int (*on_data)(const void *buf, size_t len, void *userdata);
	void *userdata;
};

struct http_client_response {
	long status;
	char *body; /* NUL-terminated (may also hold NULs); never NULL after success */
	size_t body_len;
	char *content_type; /* NULL when the server sent none */
	unsigned attempts;  /* 1 + retries */
	/* headers of the final response */
	char **header_names;
	char **header_values;
	size_t n_headers;
};

void http_client_response_release(struct http_client_response *resp);
static inline void http_client_response_releasep(struct http_client_response *resp)
{
	http_client_response_release(resp);
}
#define _cleanup_http_response_ _cleanup_(http_client_response_releasep)
/* Value of a response header (case-insensitive name; the last one when repeated), or NULL. */
const char *http_client_response_header(const struct http_client_response *resp, const char *name);

/* Returns 0 or -EINVAL (no/bad base_url), -ENOMEM, -EIO (curl could not be initialised). */
int http_client_new(const struct http_client_config *config, struct http_client **ret,
		    struct cd_error *err);
void http_client_free(struct http_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http_client *, http_client_free);
#define _cleanup_http_client_ _cleanup_(http_client_freep)

/*
 * Perform a request. Any HTTP status is a success here (0, *ret filled; release it with
 * http_client_response_release()). Failures, with err describing method, URL and cause:
 *   -ECONNREFUSED, -ENOENT (no such unix socket), -EHOSTUNREACH, -ECONNRESET (connection lost
 *   or empty reply), -ETIMEDOUT, -EFBIG (body above max_response_bytes), -EPROTO (TLS or
 *   protocol error), -EINVAL (bad URL or request), -ENOMEM, the on_data callback's code, -EIO.
 */
int http_client_request(struct http_client *c, const struct http_client_request *req,
			struct http_client_response *ret, struct cd_error *err);

/*
 * JSON convenience: body (may be NULL) is sent as application/json; the response body, when
 * there is one and it is JSON (application/json or application/problem+json), is parsed into
 * *ret_body (a new reference; NULL for empty bodies or non-JSON error pages). Any HTTP status
 * returns 0 with *ret_status; decode errors with http_client_problem(). A 2xx with a body that is
 * not JSON fails with -EBADMSG. ret_body and ret_status may be NULL.
 */
int http_client_json(struct http_client *c, const char *method, const char *path, json_t *body,
		     json_t **ret_body, long *ret_status, struct cd_error *err);

/*
 * Turn an error response into a problem: problem+json bodies are decoded (problem_from_json),
 * anything else becomes {status, title: reason phrase}. ret is initialised here. 0 or -ENOMEM.
 */
int http_client_problem(long status, const json_t *body, struct problem *ret);
/* One line for a human: "422 Validation failed: 2 invalid fields (/reqs/vcpus: must be >= 1;
 * /name: required)". Returns buf. */
const char *http_client_problem_format(const struct problem *p, char *buf, size_t size);

/* Percent-encode s for use in a path segment or query value (RFC 3986 unreserved kept). The
 * caller frees the result; NULL on ENOMEM. */
char *http_client_escape(const char *s);

struct http_client_stats {
	uint64_t requests; /* attempts made (retries included) */
	uint64_t retries;
	uint64_t connections; /* new connections opened (CURLINFO_NUM_CONNECTS summed) */
};
void http_client_stats(const struct http_client *c, struct http_client_stats *ret);
