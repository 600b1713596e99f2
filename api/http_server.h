/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http_server.h — the HTTP/1.1 server every binary serves its REST API with (over civetweb,
 * which only http_server.c includes). Owns: listening, routing by method + path pattern, bearer
 * token auth, the request body cap, problem+json for every error it generates itself, /healthz,
 * reply framing (lengths, chunked streaming, keep-alive) and one access-log entry per request.
 * Does not own: what handlers do, logging (entries go to a callback the binary sets), TLS (see
 * docs/http.md: terminate it in front of us).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "api/problem.h"
#include "lib/clock.h"
#include "lib/error.h"
#include "lib/macro.h"

struct http_server;
struct http_request;

/*
 * A handler runs on one of the server's worker threads, concurrently with other handlers (also
 * of the same route): data is shared, locking it is the handler's business. It replies with one
 * of the http_reply_*() functions; returning without a reply sends a 500 problem. req is valid
 * until the handler returns.
 */
typedef void (*http_handler_fn)(struct http_request *req, void *data);

enum {
	/* No bearer token needed (health and readiness probes). */
	HTTP_ROUTE_OPEN = 1u << 0,
	/* The body is not read before the handler runs: it calls http_request_read() (large
	 * uploads such as CAS blobs). max_body_bytes still caps what it can read. */
	HTTP_ROUTE_STREAM_BODY = 1u << 1,
};

struct http_route {
	const char *method; /* "GET", "PUT", ...; a GET route also answers HEAD (body suppressed) */
	/*
	 * "/v1/jobs/{region}/{zone}/{name}": literal segments and {param} segments (one non-empty
	 * path segment each, percent-decoded). A last segment {param*} takes the rest of the path
	 * (one or more segments, decoded, joined by '/'), e.g. "/cas/{key*}". When several routes
	 * match a path the most specific wins, segment by segment: literal > {param} > {param*};
	 * between equals, the first in the table.
	 */
	const char *pattern;
	http_handler_fn handler;
	void *data;	       /* passed to handler */
	unsigned flags;	       /* HTTP_ROUTE_* */
	size_t max_body_bytes; /* 0 = the server's; SIZE_MAX = unlimited (streaming routes) */
};

/* One line of access log, handed to the binary's callback after each request. The strings are
 * valid for the duration of the call only. */
struct http_access_entry {
	const char *method; /* "-" when the request could not be parsed */
	const char *path;   /* raw (still percent-encoded) path, without the query */
	const char *peer;   /* client address */
	int peer_port;
	int status;
	uint64_t bytes_in;  /* request body bytes read */
	uint64_t bytes_out; /* response bytes written, headers included */
	usec_t duration_usec;
};

#define HTTP_DEFAULT_MAX_BODY ((size_t)1024 * 1024)
#define HTTP_DEFAULT_THREADS 8u
#define HTTP_DEFAULT_REQUEST_TIMEOUT_MS 30000u
#define HTTP_DEFAULT_KEEP_ALIVE_TIMEOUT_MS 2000u

/* One accepted bearer token and who it stands for (deployd: admin, agent, team:<name>). */
struct http_token {
	const char *secret;    /* copied */
	const void *principal; /* borrowed, must outlive the server; see http_request_principal() */
};

struct http_server_config {
	/* "ADDR:PORT" with an IPv4 address ("127.0.0.1:7411", "0.0.0.0:80"); port 0 picks a free
	 * port (see http_server_port()). IPv6 and unix sockets are refused: Debian's civetweb is
	 * built without both (http_server_features()). */
	const char *listen;
	unsigned num_threads; /* worker threads = concurrent requests; 0 = default (8) */
	/* Every route not HTTP_ROUTE_OPEN needs "Authorization: Bearer <token>". NULL (and no
	 * tokens) disables auth: only for --insecure-no-auth on loopback, the binary's decision. */
	const char *bearer_token;
	/* More accepted tokens, each with a principal. Auth is on when bearer_token or any of
	 * these is set; all are compared in constant time on every request. */
	const struct http_token *tokens;
	size_t n_tokens;
	size_t max_body_bytes;	     /* 0 = 1 MiB; larger bodies get 413 */
	unsigned request_timeout_ms; /* socket read/write timeout per request; 0 = 30 s */
	/* How long an idle keep-alive connection is kept; it pins a worker thread meanwhile
	 * (civetweb is thread-per-connection). 0 = 2 s. */
	unsigned keep_alive_timeout_ms;
	/* PEM certificate+key for TLS. Always refused with -EOPNOTSUPP: see docs/http.md. */
	const char *tls_certificate;
	const struct http_route *routes; /* copied; patterns validated at new */
	size_t n_routes;
	/* Called once per request on the worker thread (must be thread-safe); may be NULL. */
	void (*access_log)(const struct http_access_entry *e, void *userdata);
	/* Internal errors civetweb reports (accept failures, ...); may be NULL (dropped). */
	void (*error_log)(const char *message, void *userdata);
	void *userdata; /* for the callbacks and http_request_userdata() */
	/* Called every 10 ms from another thread while http_server_free() waits for the workers
	 * to finish: wake handlers that sleep on something of yours (they then see
	 * http_request_stopping() true). May be NULL. Gets on_stop_data. */
	void (*on_stop)(void *data);
	void *on_stop_data;
};

/*
 * Validate config, bind and start serving. Returns 0 and *ret, or:
 *   -EINVAL bad listen address, route pattern, method or limits (message says which),
 *   -EOPNOTSUPP TLS requested,
 *   -EAFNOSUPPORT IPv6 or unix socket listen address,
 *   -EADDRINUSE / -EACCES / -EIO when listening fails,
 *   -ENOMEM.
 * SIGPIPE is set to SIG_IGN process-wide (civetweb does it; the binaries want it anyway), the
 * SIGCHLD disposition is preserved.
 */
int http_server_new(const struct http_server_config *config, struct http_server **ret,
		    struct cd_error *err);
/* Stop accepting, let running handlers finish (long-running ones poll http_request_stopping()),
 * join every thread and free. NULL is fine. */
void http_server_free(struct http_server *srv);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http_server *, http_server_free);
#define _cleanup_http_server_ _cleanup_(http_server_freep)

/* The bound TCP port (the chosen one when the config said port 0). */
int http_server_port(const struct http_server *srv);

struct http_server_stats {
	uint64_t connections; /* TCP connections accepted */
	uint64_t requests;    /* requests answered (any status) */
};
void http_server_stats(const struct http_server *srv, struct http_server_stats *ret);

/* What the linked civetweb was compiled with (mg_check_feature()). TLS compiled in does not
 * mean usable: http_server_new() refuses it regardless. */
enum {
	HTTP_FEATURE_TLS = 1u << 0,
	HTTP_FEATURE_IPV6 = 1u << 1,
	HTTP_FEATURE_UNIX_SOCKET = 1u << 2,
};
unsigned http_server_features(void);

/* ---- request accessors (valid inside the handler only) ---- */

const char *http_request_method(const struct http_request *req);
/* Raw path (percent-encoded as sent, dot segments removed), without the query. */
const char *http_request_path(const struct http_request *req);
/* Decoded value of a path parameter named in the route pattern; NULL for unknown names. */
const char *http_request_param(const struct http_request *req, const char *name);
/* First decoded value of a query parameter ('+' is a space), "" for "?flag"; NULL if absent. */
const char *http_request_query(const struct http_request *req, const char *name);
/* Query parameter as an unsigned integer: def when absent, -EINVAL when not a number, -ERANGE
 * above max. On error the handler typically answers http_reply_error(req, 400, ...). */
int http_request_query_u64(const struct http_request *req, const char *name, uint64_t def,
			   uint64_t max, uint64_t *ret);
/* Request header value (case-insensitive name), NULL if absent. */
const char *http_request_header(const struct http_request *req, const char *name);
/* The body read before the handler ran (NUL-terminated for convenience; may hold NULs). Empty
 * ("" and 0) for HTTP_ROUTE_STREAM_BODY routes and bodiless requests. */
const char *http_request_body(const struct http_request *req, size_t *ret_len);
/* Content-Length, or -1 when absent (chunked or no body). */
int64_t http_request_content_length(const struct http_request *req);
/*
 * Streaming routes: read up to len body bytes. Returns the count, 0 at the end of the body,
 * -EFBIG past the route's cap (reply 413), -ETIMEDOUT, -ECONNRESET when the client went away.
 */
ssize_t http_request_read(struct http_request *req, void *buf, size_t len);
/*
 * Parse the body as JSON with api_json_parse() limits (the route's body cap). Non-JSON content
 * types give 415. Returns 0 and a new reference in *ret, or -errno with p filled (initialise p
 * with problem_init() first); the handler answers http_reply_problem(req, p).
 */
int http_request_json(struct http_request *req, json_t **ret, struct problem *p);
/* Client address (static storage of req) and port. */
const char *http_request_peer(const struct http_request *req, int *ret_port);
/* The principal of the token that authenticated this request: NULL for bearer_token, for open
 * routes (no token checked) and when auth is disabled. Handlers decide 403 with it. */
const void *http_request_principal(const struct http_request *req);
/* config.userdata of the server. */
void *http_request_userdata(const struct http_request *req);
/* True once http_server_free() started: long-polls and log follows return early. */
bool http_request_stopping(const struct http_request *req);

/* ---- replies: exactly one per request ----
 * Each returns 0, -EALREADY when a reply was already sent, -EINVAL for a bad status/header,
 * -ENOMEM, or -EPIPE when the client is gone (nothing more to do then). HEAD requests get the
 * headers only. */

/* Queue an extra response header ("ETag", "Location", "Retry-After", ...) for the next reply.
 * Name and value must not hold CR/LF; framing headers (Content-Length, Transfer-Encoding,
 * Connection, Content-Type) are set by the reply functions and refused here. */
int http_reply_header(struct http_request *req, const char *name, const char *value);
int http_reply_bytes(struct http_request *req, int status, const char *content_type,
		     const void *body, size_t len);
/* text/plain; charset=utf-8 */
int http_reply_text(struct http_request *req, int status, const char *text);
/* application/json, compact; j is borrowed (NULL → 500). */
int http_reply_json(struct http_request *req, int status, const json_t *j);
/* Same, stealing the reference (so json_pack() can be passed directly). */
int http_reply_json_new(struct http_request *req, int status, json_t *j);
/* application/problem+json with p->status (500 if p->oom). */
int http_reply_problem(struct http_request *req, const struct problem *p);
/* A problem with type about:blank, the status' reason as title and detail from fmt (may be
 * NULL). */
int http_reply_error(struct http_request *req, int status, const char *fmt, ...) _printf_(3, 4);
/* No body: 204/304 without Content-Length, other statuses with "Content-Length: 0". */
int http_reply_empty(struct http_request *req, int status);
/*
 * Streaming (long-poll, log follow): chunked transfer encoding (HTTP/1.0 clients: body until
 * close). start sends the headers, write sends one chunk per call (0 bytes is a no-op), end sends
 * the last chunk; a handler returning after start without end gets end implicitly.
 */
int http_reply_start(struct http_request *req, int status, const char *content_type);
int http_reply_write(struct http_request *req, const void *buf, size_t len);
int http_reply_end(struct http_request *req);
/* Whether a reply (or its start) was sent. */
bool http_replied(const struct http_request *req);

/* Reason phrase for a status ("Not Found"); "Unknown" for codes we do not name. */
const char *http_status_reason(int status);
