/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The only file that includes civetweb.h. civetweb runs the sockets and the worker threads; we
 * take every request in the begin_request callback and do routing, auth, body reading and reply
 * framing ourselves, so that each of those has one obvious implementation. Quirks handled here:
 *  - civetweb never answers "Expect: 100-continue" for callback handlers (curl then stalls 1 s
 *    per large body): we send the interim 100 when we start reading a body we will accept.
 *  - It URL-decodes paths by default, which makes "%2F" indistinguishable from '/': we run it
 *    with decode_url=no and decode each segment after splitting.
 *  - It keeps a connection alive only when the body was consumed; we drain small unread bodies
 *    before an error reply and say "Connection: close" otherwise, so the header never lies.
 *  - Its own errors (malformed request line, oversized headers) go through http_error, which we
 *    turn into problem+json.
 */
#include "api/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <civetweb.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/http_parse.h"
#include "api/json.h"
#include "lib/str.h"

#define DRAIN_MAX ((uint64_t)64 * 1024)	     /* unread bodies up to this are drained, not closed */
#define SINGLE_WRITE_MAX ((size_t)16 * 1024) /* head + body in one write below this */

enum seg_kind { SEG_LITERAL, SEG_PARAM, SEG_REST };

struct segment {
	enum seg_kind kind;
	char *text; /* literal text or parameter name */
};

struct route {
	char *method;
	char *pattern;
	struct segment *segs;
	size_t n_segs;
	http_handler_fn handler;
	void *data;
	unsigned flags;
	size_t max_body;
};

struct server_token {
	char *secret;
	size_t len;
	const void *principal;
};

struct http_server {
	struct mg_context *ctx;
	struct route *routes;
	size_t n_routes;
	struct server_token *tokens; /* none = auth disabled */
	size_t n_tokens;
	size_t max_body;
	int port;
	void (*access_log)(const struct http_access_entry *e, void *userdata);
	void (*error_log)(const char *message, void *userdata);
	void *userdata;
	void (*on_stop)(void *data);
	void *on_stop_data;
	struct in_addr poke_addr; /* where http_server_free() connects to wake the accept thread */
	atomic_bool stopping;
	atomic_uint_fast64_t connections;
	atomic_uint_fast64_t requests;
};

struct http_request {
	struct http_server *srv;
	struct mg_connection *conn;
	const struct mg_request_info *ri;
	const struct route *route;
	const char *method;
	const char *path;
	usec_t start;
	bool head;
	bool http11;
	const void *principal; /* of the token that matched */

	char **segs; /* decoded path segments */
	size_t n_segs;
	char *seg_storage;
	char *rest; /* value of a trailing {param*} */

	struct http_query_param *query;
	size_t n_query;

	/* request body */
	bool has_body;
	bool chunked_in;
	int64_t content_length;
	uint64_t body_read;
	bool body_done;
	bool expect_continue;
	bool continue_sent;
	size_t max_body;
	char *body;
	size_t body_len;

	/* reply */
	struct strbuf extra_headers;
	int status;
	bool replied;
	bool streaming;
	bool chunked_out;
	bool ended;
	bool close_after;
	bool broken;
	uint64_t bytes_out;
};

static _Thread_local bool in_dispatch;

/* ---- small helpers ---- */

const char *http_status_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 206:
		return "Partial Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 416:
		return "Range Not Satisfiable";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 428:
		return "Precondition Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (!is_tchar(*s))
			return false;
	return true;
}

static void format_http_date(char *buf, size_t size)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
		 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- routes ---- */

static void route_release(struct route *r)
{
	for (size_t i = 0; i < r->n_segs; i++)
		free(r->segs[i].text);
	free(r->segs);
	free(r->method);
	free(r->pattern);
}

static bool is_param_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static bool is_literal_char(char c)
{
	/* RFC 3986 pchar without '%' (literals are matched against decoded segments) */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("-._~!$&'()*+,;=:@", c);
}

static int route_compile(const struct http_route *in, struct route *out, struct cd_error *err)
{
	const char *p;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	if (!in->handler)
		return cd_error_set(err, -EINVAL, "route %s: no handler",
				    in->pattern ? in->pattern : "(null)");
	if (!is_token(in->method))
		return cd_error_set(err, -EINVAL, "route %s: invalid method",
				    in->pattern ? in->pattern : "(null)");
	if (!in->pattern || in->pattern[0] != '/')
		return cd_error_set(err, -EINVAL, "route pattern must start with '/': %s",
				    in->pattern ? in->pattern : "(null)");
	out->method = strdup(in->method);
	out->pattern = strdup(in->pattern);
	if (!out->method || !out->pattern)
		return -ENOMEM;
	out->handler = in->handler;
	out->data = in->data;
	out->flags = in->flags;
	out->max_body = in->max_body_bytes;

	if (streq(in->pattern, "/"))
		return 0;
	for (p = in->pattern; *p; p++)
		if (*p == '/')
			n++;
	if (n > HTTP_MAX_SEGMENTS)
		return cd_error_set(err, -EINVAL, "route pattern has more than %d segments: %s",
				    HTTP_MAX_SEGMENTS, in->pattern);
	out->segs = calloc(n, sizeof(*out->segs));
	if (!out->segs)
		return -ENOMEM;
	p = in->pattern + 1;
	for (size_t i = 0; i < n; i++) {
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		struct segment *s = &out->segs[i];

		if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
			bool rest = len >= 3 && p[len - 2] == '*';
			size_t nlen = len - 2 - (rest ? 1 : 0);

			if (!is_param_name(p + 1, nlen))
				return cd_error_set(err, -EINVAL, "route %s: bad parameter name",
						    in->pattern);
			if (rest && *end)
				return cd_error_set(err, -EINVAL,
						    "route %s: {name*} must be the last segment",
						    in->pattern);
			for (size_t j = 0; j < i; j++)
				if (out->segs[j].kind != SEG_LITERAL &&
				    strlen(out->segs[j].text) == nlen &&
				    !strncmp(out->segs[j].text, p + 1, nlen))
					return cd_error_set(err, -EINVAL,
							    "route %s: duplicate parameter",
							    in->pattern);
			s->kind = rest ? SEG_REST : SEG_PARAM;
			s->text = strndup(p + 1, nlen);
		} else {
			if (len == 0)
				return cd_error_set(err, -EINVAL, "route %s: empty segment",
						    in->pattern);
			for (size_t j = 0; j < len; j++)
				if (!is_literal_char(p[j]))
					return cd_error_set(err, -EINVAL,
							    "route %s: invalid character '%c'",
							    in->pattern, p[j]);
			if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
				return cd_error_set(err, -EINVAL, "route %s: dot segment",
						    in->pattern);
			s->kind = SEG_LITERAL;
			s->text = strndup(p, len);
		}
		out->n_segs = i + 1;
		if (!s->text)
			return -ENOMEM;
		p = *end ? end + 1 : end;
	}
	return 0;
}

static bool route_matches_path(const struct route *r, const struct http_request *req)
{
	bool rest = r->n_segs > 0 && r->segs[r->n_segs - 1].kind == SEG_REST;

	if (rest ? req->n_segs < r->n_segs : req->n_segs != r->n_segs)
		return false;
	for (size_t i = 0; i < r->n_segs; i++) {
		switch (r->segs[i].kind) {
		case SEG_LITERAL:
			if (!streq(r->segs[i].text, req->segs[i]))
				return false;
			break;
		case SEG_PARAM:
			if (!req->segs[i][0])
				return false;
			break;
		case SEG_REST:
			if (req->n_segs == r->n_segs && !req->segs[i][0])
				return false;
			break;
		}
	}
	return true;
}

/* < 0 when a is more specific than b (both match the same path). */
static int route_specificity_cmp(const struct route *a, const struct route *b)
{
	for (size_t i = 0; i < a->n_segs && i < b->n_segs; i++)
		if (a->segs[i].kind != b->segs[i].kind)
			return (int)a->segs[i].kind - (int)b->segs[i].kind;
	return 0;
}

static bool method_matches(const struct route *r, const char *method)
{
	return streq(r->method, method) || (streq(method, "HEAD") && streq(r->method, "GET"));
}

/* ---- request parsing ---- */

static void request_release(struct http_request *req)
{
	struct http_query q = { .params = req->query, .n = req->n_query };
	struct http_path p = { .segs = req->segs,
			       .n_segs = req->n_segs,
			       .storage = req->seg_storage };

	http_query_release(&q);
	http_path_release(&p);
	free(req->rest);
	free(req->body);
	strbuf_release(&req->extra_headers);
}

/* ---- body ---- */

static bool body_complete(const struct http_request *req)
{
	return !req->has_body || req->body_done;
}

static ssize_t body_read_raw(struct http_request *req, void *buf, size_t len)
{
	int n;

	if (!req->has_body || req->body_done)
		return 0;
	if (req->expect_continue && !req->continue_sent) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		req->continue_sent = true;
		if (mg_write(req->conn, cont, sizeof(cont) - 1) != (int)(sizeof(cont) - 1))
			return -ECONNRESET;
	}
	if (!req->chunked_in) {
		uint64_t left = (uint64_t)req->content_length - req->body_read;

		if (left == 0) {
			req->body_done = true;
			return 0;
		}
		if (len > left)
			len = (size_t)left;
	}
	if (len > INT32_MAX)
		len = INT32_MAX;
	errno = 0;
	n = mg_read(req->conn, buf, len);
	if (n > 0) {
		req->body_read += (uint64_t)n;
		if (!req->chunked_in && req->body_read == (uint64_t)req->content_length)
			req->body_done = true;
		return n;
	}
	if (n == 0 && req->chunked_in) {
		req->body_done = true;
		return 0;
	}
	req->close_after = true;
	return errno == EAGAIN || errno == ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET;
}

/* Discard a small unread body so the connection can stay alive; give up (close) otherwise. */
static void body_drain(struct http_request *req)
{
	char buf[4096];
	uint64_t drained = 0;

	if (body_complete(req) || req->close_after)
		return;
	/* The client waits for our verdict before sending: it will not send the body now. */
	if (req->expect_continue && !req->continue_sent) {
		req->close_after = true;
		return;
	}
	if (!req->chunked_in && (uint64_t)req->content_length - req->body_read > DRAIN_MAX) {
		req->close_after = true;
		return;
	}
	while (!req->body_done && drained <= DRAIN_MAX) {
		ssize_t n = body_read_raw(req, buf, sizeof(buf));

		if (n <= 0)
			break;
		drained += (uint64_t)n;
	}
	if (!req->body_done)
		req->close_after = true;
}

/* ---- reply framing ---- */

static bool client_wants_keep_alive(const struct http_request *req)
{
	const char *c = mg_get_header(req->conn, "Connection");

	if (c && strcasestr(c, "close"))
		return false;
	if (req->http11)
		return true;
	return c && strcasestr(c, "keep-alive");
}

static int write_all(struct http_request *req, const void *buf, size_t len)
{
	const char *p = buf;

	if (req->broken)
		return -EPIPE;
	while (len > 0) {
		size_t chunk = len > INT32_MAX ? INT32_MAX : len;
		int n = mg_write(req->conn, p, chunk);

		if (n <= 0) {
			req->broken = true;
			req->close_after = true;
			return -EPIPE;
		}
		req->bytes_out += (uint64_t)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Build the status line and headers into sb. length >= 0: Content-Length (omitted for 1xx, 204,
 * 304); length < 0: streaming (chunked for HTTP/1.1, until close for 1.0).
 */
static int build_head(struct http_request *req, int status, const char *content_type,
		      int64_t length, struct strbuf *sb)
{
	char date[64];
	bool keep;
	int r = 0;

	if (req->replied)
		return -EALREADY;
	if (status < 200 || status > 599)
		return -EINVAL;
	if (content_type && (strchr(content_type, '\r') || strchr(content_type, '\n')))
		return -EINVAL;
	body_drain(req);
	keep = client_wants_keep_alive(req) && !req->close_after && body_complete(req) &&
	       !atomic_load(&req->srv->stopping);
	if (length < 0) {
		req->chunked_out = req->http11;
		if (!req->http11)
			keep = false;
	}
	format_http_date(date, sizeof(date));
	r |= strbuf_addf(sb, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_reason(status),
			 date);
	if (content_type)
		r |= strbuf_addf(sb, "Content-Type: %s\r\n", content_type);
	if (length >= 0 && status != 204 && status != 304)
		r |= strbuf_addf(sb, "Content-Length: %lld\r\n", (long long)length);
	else if (req->chunked_out)
		r |= strbuf_adds(sb, "Transfer-Encoding: chunked\r\n");
	if (req->extra_headers.len)
		r |= strbuf_add(sb, req->extra_headers.buf, req->extra_headers.len);
	r |= strbuf_addf(sb, "Connection: %s\r\n\r\n", keep ? "keep-alive" : "close");
	if (r < 0)
		return -ENOMEM;
	if (!keep) {
		req->close_after = true;
		mg_disable_connection_keep_alive(req->conn);
	}
	req->replied = true;
	req->status = status;
	return 0;
}

int http_reply_bytes(struct http_request *req, int status, const char *content_type,
		     const void *body, size_t len)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	bool send_body = !req->head && status != 204 && status != 304;
	int r;

	r = build_head(req, status, content_type, (int64_t)len, &sb);
	if (r < 0)
		return r;
	req->ended = true;
	if (send_body && len > 0 && len <= SINGLE_WRITE_MAX) {
		if (strbuf_add(&sb, body, len) < 0) {
			req->close_after = true;
			return -ENOMEM;
		}
		return write_all(req, sb.buf, sb.len);
	}
	r = write_all(req, sb.buf, sb.len);
	if (r < 0 || !send_body || len == 0)
		return r;
	return write_all(req, body, len);
}

int http_reply_text(struct http_request *req, int status, const char *text)
{
	return http_reply_bytes(req, status, "text/plain; charset=utf-8", text,
				text ? strlen(text) : 0);
}

static int reply_oom(struct http_request *req)
{
	static const char body[] = "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
				   "\"status\":500,\"detail\":\"out of memory\"}";

	return http_reply_bytes(req, 500, "application/problem+json", body, sizeof(body) - 1);
}

int http_reply_json(struct http_request *req, int status, const json_t *j)
{
	_cleanup_free_ char *s = NULL;

	if (req->replied)
		return -EALREADY;
	if (!j)
		return http_reply_error(req, 500, "response could not be built");
	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s) {
		reply_oom(req);
		return -ENOMEM;
	}
	return http_reply_bytes(req, status, "application/json", s, strlen(s));
}

int http_reply_json_new(struct http_request *req, int status, json_t *j)
{
	int r = http_reply_json(req, status, j);

	json_decref(j);
	return r;
}

int http_reply_problem(struct http_request *req, const struct problem *p)
{
	_cleanup_free_ char *s = NULL;

	if (req->replied)
		return -EALREADY;
	s = problem_to_string(p);
	if (!s) {
		reply_oom(req);
		return -ENOMEM;
	}
	return http_reply_bytes(req, p->oom ? 500 : p->status, "application/problem+json", s,
				strlen(s));
}

static int reply_problem_va(struct http_request *req, int status, const char *type, const char *fmt,
			    va_list ap) _printf_(4, 0);
static int reply_problem_va(struct http_request *req, int status, const char *type, const char *fmt,
			    va_list ap)
{
	_cleanup_problem_ struct problem p;
	_cleanup_free_ char *detail = NULL;

	problem_init(&p, status, type, http_status_reason(status));
	if (fmt && vasprintf(&detail, fmt, ap) >= 0)
		problem_set_detail(&p, "%s", detail);
	return http_reply_problem(req, &p);
}

static int reply_problem(struct http_request *req, int status, const char *type, const char *fmt,
			 ...) _printf_(4, 5);
static int reply_problem(struct http_request *req, int status, const char *type, const char *fmt,
			 ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = reply_problem_va(req, status, type, fmt, ap);
	va_end(ap);
	return r;
}

int http_reply_error(struct http_request *req, int status, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = reply_problem_va(req, status, NULL, fmt, ap);
	va_end(ap);
	return r;
}

int http_reply_empty(struct http_request *req, int status)
{
	return http_reply_bytes(req, status, NULL, NULL, 0);
}

int http_reply_start(struct http_request *req, int status, const char *content_type)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	int r;

	r = build_head(req, status, content_type, -1, &sb);
	if (r < 0)
		return r;
	req->streaming = true;
	return write_all(req, sb.buf, sb.len);
}

int http_reply_write(struct http_request *req, const void *buf, size_t len)
{
	char size[32];
	int r;

	if (!req->streaming || req->ended)
		return -EINVAL;
	if (len == 0 || req->head)
		return req->broken ? -EPIPE : 0;
	if (!req->chunked_out)
		return write_all(req, buf, len);
	snprintf(size, sizeof(size), "%zx\r\n", len);
	if (len <= SINGLE_WRITE_MAX) {
		_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;

		if (strbuf_adds(&sb, size) < 0 || strbuf_add(&sb, buf, len) < 0 ||
		    strbuf_adds(&sb, "\r\n") < 0)
			return -ENOMEM;
		return write_all(req, sb.buf, sb.len);
	}
	r = write_all(req, size, strlen(size));
	if (r >= 0)
		r = write_all(req, buf, len);
	if (r >= 0)
		r = write_all(req, "\r\n", 2);
	return r;
}

int http_reply_end(struct http_request *req)
{
	if (!req->streaming)
		return -EINVAL;
	if (req->ended)
		return -EALREADY;
	req->ended = true;
	if (!req->chunked_out || req->head)
		return req->broken ? -EPIPE : 0;
	return write_all(req, "0\r\n\r\n", 5);
}

bool http_replied(const struct http_request *req)
{
	return req->replied;
}

int http_reply_header(struct http_request *req, const char *name, const char *value)
{
	static const char *const reserved[] = { "content-length", "transfer-encoding", "connection",
						"content-type", "date" };

	if (req->replied)
		return -EALREADY;
	if (!is_token(name) || !value || strpbrk(value, "\r\n"))
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
		if (!strcasecmp(name, reserved[i]))
			return -EINVAL;
	return strbuf_addf(&req->extra_headers, "%s: %s\r\n", name, value) < 0 ? -ENOMEM : 0;
}

/* ---- request accessors ---- */

const char *http_request_method(const struct http_request *req)
{
	return req->method;
}

const char *http_request_path(const struct http_request *req)
{
	return req->path;
}

const char *http_request_param(const struct http_request *req, const char *name)
{
	const struct route *r = req->route;

	if (!r || !name)
		return NULL;
	for (size_t i = 0; i < r->n_segs; i++) {
		if (r->segs[i].kind == SEG_LITERAL || !streq(r->segs[i].text, name))
			continue;
		return r->segs[i].kind == SEG_REST ? req->rest : req->segs[i];
	}
	return NULL;
}

const char *http_request_query(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_query; i++)
		if (streq(req->query[i].key, name))
			return req->query[i].value;
	return NULL;
}

int http_request_query_u64(const struct http_request *req, const char *name, uint64_t def,
			   uint64_t max, uint64_t *ret)
{
	const char *v = http_request_query(req, name);
	uint64_t u;
	int r;

	if (!v) {
		*ret = def;
		return 0;
	}
	r = parse_u64(v, &u);
	if (r < 0)
		return r;
	if (u > max)
		return -ERANGE;
	*ret = u;
	return 0;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	return mg_get_header(req->conn, name);
}

const char *http_request_body(const struct http_request *req, size_t *ret_len)
{
	if (ret_len)
		*ret_len = req->body ? req->body_len : 0;
	return req->body ? req->body : "";
}

int64_t http_request_content_length(const struct http_request *req)
{
	return req->chunked_in ? -1 : req->content_length;
}

ssize_t http_request_read(struct http_request *req, void *buf, size_t len)
{
	if (!req->route || !(req->route->flags & HTTP_ROUTE_STREAM_BODY))
		return -EINVAL;
	if (!req->has_body || req->body_done || len == 0)
		return 0;
	if (!req->chunked_in && (uint64_t)req->content_length > req->max_body) {
		req->close_after = true;
		return -EFBIG;
	}
	if (req->body_read >= req->max_body) {
		char extra;
		ssize_t n = body_read_raw(req, &extra, 1);

		if (n <= 0)
			return n;
		req->close_after = true;
		return -EFBIG;
	}
	if (len > req->max_body - req->body_read)
		len = (size_t)(req->max_body - req->body_read);
	return body_read_raw(req, buf, len);
}

static bool is_json_type(const char *ct)
{
	size_t n = strcspn(ct, ";");

	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n == strlen("application/json") && !strncasecmp(ct, "application/json", n))
		return true;
	/* application/<anything>+json (problem+json, merge-patch+json) */
	return n > 5 && !strncasecmp(ct, "application/", 12) &&
	       !strncasecmp(ct + n - 5, "+json", 5);
}

int http_request_json(struct http_request *req, json_t **ret, struct problem *p)
{
	const char *ct = mg_get_header(req->conn, "Content-Type");

	if (req->route && (req->route->flags & HTTP_ROUTE_STREAM_BODY)) {
		problem_set(p, 500, NULL, http_status_reason(500));
		problem_set_detail(p, "JSON body requested on a streaming route");
		return -EOPNOTSUPP;
	}
	if (ct && !is_json_type(ct)) {
		problem_set(p, 415, NULL, http_status_reason(415));
		problem_set_detail(p, "the body must be application/json");
		return -EINVAL;
	}
	return api_json_parse_limits(req->body ? req->body : "", req->body ? req->body_len : 0,
				     req->max_body, 0, ret, p);
}

const char *http_request_peer(const struct http_request *req, int *ret_port)
{
	if (ret_port)
		*ret_port = req->ri->remote_port;
	return req->ri->remote_addr;
}

const void *http_request_principal(const struct http_request *req)
{
	return req->principal;
}

void *http_request_userdata(const struct http_request *req)
{
	return req->srv->userdata;
}

bool http_request_stopping(const struct http_request *req)
{
	return atomic_load(&req->srv->stopping);
}

/* ---- dispatch ---- */

static void healthz_handler(struct http_request *req, void *data)
{
	static const char ok[] = "{\"status\":\"ok\"}";

	http_reply_bytes(req, 200, "application/json", ok, sizeof(ok) - 1);
}

static bool authorized(struct http_request *req)
{
	const struct http_server *srv = req->srv;
	const char *h = mg_get_header(req->conn, "Authorization");
	const struct server_token *match = NULL;
	const char *tok;
	size_t len;

	if (srv->n_tokens == 0)
		return true;
	if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
		return false;
	tok = h + 6;
	while (*tok == ' ' || *tok == '\t')
		tok++;
	len = strlen(tok);
	/* Every token is compared, without early exit: which one matched must not show. */
	for (size_t i = 0; i < srv->n_tokens; i++)
		if (ct_memeq(tok, len, srv->tokens[i].secret, srv->tokens[i].len) && !match)
			match = &srv->tokens[i];
	if (!match)
		return false;
	req->principal = match->principal;
	return true;
}

static int reply_unauthorized(struct http_request *req)
{
	bool sent = mg_get_header(req->conn, "Authorization") != NULL;

	http_reply_header(req, "WWW-Authenticate",
			  sent ? "Bearer realm=\"codedeploy\", error=\"invalid_token\"" :
				 "Bearer realm=\"codedeploy\"");
	return reply_problem(req, 401, NULL, "%s",
			     sent ? "the bearer token is not valid" :
				    "this endpoint needs an Authorization: Bearer token");
}

static int reply_not_allowed(struct http_request *req)
{
	_cleanup_strbuf_ struct strbuf allow = STRBUF_INIT;
	const struct http_server *srv = req->srv;
	_cleanup_free_ const char **methods = calloc(srv->n_routes + 1, sizeof(char *));
	size_t n = 0;
	bool get = false, head = false;

	if (!methods)
		return reply_oom(req);
	for (size_t i = 0; i < srv->n_routes; i++) {
		const struct route *r = &srv->routes[i];
		bool dup = false;

		if (!route_matches_path(r, req))
			continue;
		for (size_t j = 0; j < n; j++)
			dup |= streq(methods[j], r->method);
		if (dup)
			continue;
		methods[n++] = r->method;
		get |= streq(r->method, "GET");
		head |= streq(r->method, "HEAD");
	}
	if (get && !head)
		methods[n++] = "HEAD";
	for (size_t j = 0; j < n; j++)
		if (strbuf_addf(&allow, "%s%s", j ? ", " : "", methods[j]) < 0)
			return reply_oom(req);
	http_reply_header(req, "Allow", allow.buf ? allow.buf : "");
	return reply_problem(req, 405, NULL, "%s is not allowed here", req->method);
}

/* 0 to run the handler, or an HTTP error status already replied. */
static int read_body(struct http_request *req)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	uint64_t cap = req->max_body;

	if (!req->has_body)
		return 0;
	if (!req->chunked_in && (uint64_t)req->content_length > cap) {
		req->close_after = true;
		reply_problem(req, 413, API_PROBLEM_TOO_LARGE,
			      "the body is %lld bytes; the limit is %zu bytes",
			      (long long)req->content_length, req->max_body);
		return 413;
	}
	if (strbuf_grow(&sb, req->chunked_in ? (size_t)MIN(cap, 64 * 1024) :
					       (size_t)req->content_length) < 0)
		return reply_oom(req), 500;
	for (;;) {
		ssize_t n;

		if (sb.alloc - sb.len < 2 && strbuf_grow(&sb, MIN((size_t)64 * 1024, sb.len)) < 0)
			return reply_oom(req), 500;
		/* never ask for more than one byte past the cap */
		n = body_read_raw(req, sb.buf + sb.len,
				  (size_t)MIN((uint64_t)(sb.alloc - sb.len - 1), cap + 1 - sb.len));
		if (n == 0)
			break;
		if (n < 0) {
			/* The client is gone or too slow; the reply will likely not arrive, but
			 * the access log gets the right status. */
			int status = n == -ETIMEDOUT ? 408 : 400;

			reply_problem(req, status, NULL, "the request body could not be read: %s",
				      n == -ETIMEDOUT ? "timed out" : "connection reset");
			return status;
		}
		sb.len += (size_t)n;
		sb.buf[sb.len] = '\0';
		if (sb.len > cap) {
			req->close_after = true;
			reply_problem(req, 413, API_PROBLEM_TOO_LARGE,
				      "the body exceeds the limit of %zu bytes", req->max_body);
			return 413;
		}
	}
	req->body = strbuf_detach(&sb, &req->body_len);
	if (!req->body)
		return reply_oom(req), 500;
	return 0;
}

static void dispatch(struct http_request *req)
{
	struct http_server *srv = req->srv;
	const struct route *best = NULL;
	bool path_known = false;
	const char *te, *expect;
	int r;

	/* Body framing first: every reply, errors included, must know whether a body is pending
	 * (drain it, or close) and whether the client waits for 100-continue. */
	te = mg_get_header(req->conn, "Transfer-Encoding");
	req->chunked_in = te && strcasestr(te, "chunked");
	req->content_length = req->ri->content_length;
	req->has_body = req->chunked_in || req->content_length > 0;
	if (!req->chunked_in && req->content_length <= 0)
		req->body_done = true;
	expect = mg_get_header(req->conn, "Expect");
	req->expect_continue = expect && req->http11 && !strcasecmp(expect, "100-continue");

	if (!req->path || req->path[0] != '/') {
		reply_problem(req, 400, NULL, "the request target must be an absolute path");
		return;
	}
	{
		struct http_path p;

		r = http_path_split(req->path, &p);
		if (r >= 0) {
			req->segs = p.segs;
			req->n_segs = p.n_segs;
			req->seg_storage = p.storage;
		}
	}
	if (r == -E2BIG) {
		reply_problem(req, 414, NULL, "the path has more than %d segments",
			      HTTP_MAX_SEGMENTS);
		return;
	}
	if (r == -ENOMEM) {
		reply_oom(req);
		return;
	}
	if (r < 0) {
		reply_problem(
			req, 400, NULL,
			"the path is not valid: bad percent-encoding, NUL byte or dot segment");
		return;
	}
	{
		struct http_query q;

		r = http_query_parse(req->ri->query_string, &q);
		if (r >= 0) {
			req->query = q.params;
			req->n_query = q.n;
		}
	}
	if (r == -ENOMEM) {
		reply_oom(req);
		return;
	}
	if (r < 0) {
		reply_problem(req, 400, NULL, "the query string is not valid%s",
			      r == -E2BIG ? ": too many parameters" : "");
		return;
	}

	for (size_t i = 0; i < srv->n_routes; i++) {
		const struct route *rt = &srv->routes[i];

		if (!route_matches_path(rt, req))
			continue;
		path_known = true;
		if (!method_matches(rt, req->method))
			continue;
		if (!best || route_specificity_cmp(rt, best) < 0 ||
		    (route_specificity_cmp(rt, best) == 0 && streq(rt->method, req->method) &&
		     !streq(best->method, req->method)))
			best = rt;
	}

	if (!(best && (best->flags & HTTP_ROUTE_OPEN)) && !authorized(req)) {
		reply_unauthorized(req);
		return;
	}
	if (!best) {
		if (path_known)
			reply_not_allowed(req);
		else
			reply_problem(req, 404, NULL, "no resource at %s", req->path);
		return;
	}
	req->route = best;
	req->max_body = best->max_body ? best->max_body : srv->max_body;

	/* The rest of a {param*} route, decoded segments joined by '/'. */
	if (best->n_segs && best->segs[best->n_segs - 1].kind == SEG_REST) {
		_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;

		for (size_t i = best->n_segs - 1; i < req->n_segs; i++)
			if (strbuf_addf(&sb, "%s%s", i >= best->n_segs ? "/" : "", req->segs[i]) <
			    0) {
				reply_oom(req);
				return;
			}
		req->rest = strbuf_detach(&sb, NULL);
		if (!req->rest) {
			reply_oom(req);
			return;
		}
	}

	if (expect && strcasecmp(expect, "100-continue") != 0) {
		req->close_after = true;
		reply_problem(req, 417, NULL, "only \"Expect: 100-continue\" is supported");
		return;
	}
	if (!(best->flags & HTTP_ROUTE_STREAM_BODY) && read_body(req) != 0)
		return;
	best->handler(req, best->data);
}

static void access_log(struct http_request *req)
{
	struct http_server *srv = req->srv;
	struct http_access_entry e = {
		.method = req->method ? req->method : "-",
		.path = req->path ? req->path : "-",
		.peer = req->ri ? req->ri->remote_addr : "-",
		.peer_port = req->ri ? req->ri->remote_port : 0,
		.status = req->status,
		.bytes_in = req->body_read,
		.bytes_out = req->bytes_out,
		.duration_usec = clock_mono_usec() - req->start,
	};

	atomic_fetch_add(&srv->requests, 1);
	if (srv->access_log)
		srv->access_log(&e, srv->userdata);
}

static int begin_request(struct mg_connection *conn)
{
	struct http_server *srv = mg_get_user_data(mg_get_context(conn));
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct http_request req = {
		.srv = srv,
		.conn = conn,
		.ri = ri,
		.method = ri->request_method,
		.path = ri->local_uri,
		.start = clock_mono_usec(),
		.head = ri->request_method && streq(ri->request_method, "HEAD"),
		.http11 = ri->http_version && !streq(ri->http_version, "1.0") &&
			  !streq(ri->http_version, "0.9"),
		.content_length = -1,
	};
	int status;

	in_dispatch = true;
	dispatch(&req);
	if (!req.replied) {
		strbuf_reset(&req.extra_headers); /* the handler's ETag & co. belong to its reply */
		reply_problem(&req, 500, NULL, "the handler returned without a reply");
	} else if (req.streaming && !req.ended)
		http_reply_end(&req);
	if (req.close_after)
		mg_disable_connection_keep_alive(conn);
	in_dispatch = false;
	status = req.status;
	access_log(&req);
	request_release(&req);
	return status > 0 && status < 1000 ? status : 500;
}

/* civetweb's own errors (unparsable request line, headers too large, unknown method): answer
 * them in the same problem+json shape. */
static int http_error(struct mg_connection *conn, int status, const char *errmsg)
{
	struct http_server *srv = mg_get_user_data(mg_get_context(conn));
	const struct mg_request_info *ri = mg_get_request_info(conn);
	_cleanup_problem_ struct problem p;
	_cleanup_free_ char *body = NULL;
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	char date[64];
	struct http_access_entry e = { 0 };
	usec_t start = clock_mono_usec();
	int n;

	if (in_dispatch)
		return 0; /* we reply ourselves; never mix two responses */
	if (status < 400 || status > 599)
		status = 400;
	problem_init(&p, status, NULL, http_status_reason(status));
	if (errmsg && *errmsg)
		problem_set_detail(&p, "%s", errmsg);
	body = problem_to_string(&p);
	format_http_date(date, sizeof(date));
	if (!body ||
	    strbuf_addf(&sb,
			"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/problem+json\r\n"
			"Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			status, http_status_reason(status), date, strlen(body), body) < 0)
		return 1; /* let civetweb send its plain-text page */
	mg_disable_connection_keep_alive(conn);
	n = mg_write(conn, sb.buf, sb.len);

	e.method = ri && ri->request_method ? ri->request_method : "-";
	e.path = ri && ri->local_uri ? ri->local_uri : "-";
	e.peer = ri ? ri->remote_addr : "-";
	e.peer_port = ri ? ri->remote_port : 0;
	e.status = status;
	e.bytes_out = n > 0 ? (uint64_t)n : 0;
	e.duration_usec = clock_mono_usec() - start;
	atomic_fetch_add(&srv->requests, 1);
	if (srv->access_log)
		srv->access_log(&e, srv->userdata);
	return 0;
}

static int init_connection(const struct mg_connection *conn, void **conn_data)
{
	struct http_server *srv = mg_get_user_data(mg_get_context(conn));

	atomic_fetch_add(&srv->connections, 1);
	*conn_data = NULL;
	return 0;
}

static int log_message(const struct mg_connection *conn, const char *message)
{
	struct http_server *srv = conn ? mg_get_user_data(mg_get_context(conn)) : NULL;

	if (srv && srv->error_log)
		srv->error_log(message, srv->userdata);
	return 1; /* library layers do not print */
}

static int log_access(const struct mg_connection *conn, const char *message)
{
	return 1; /* we log every request ourselves, with our fields */
}

/* ---- life cycle ---- */

static pthread_once_t civetweb_once = PTHREAD_ONCE_INIT;

static void civetweb_init(void)
{
	/* No TLS: initialising OpenSSL through civetweb is what crashes with OpenSSL 3. */
	(void)mg_init_library(0);
}

unsigned http_server_features(void)
{
	unsigned f = 0;

	if (mg_check_feature(MG_FEATURES_TLS))
		f |= HTTP_FEATURE_TLS;
	if (mg_check_feature(MG_FEATURES_IPV6))
		f |= HTTP_FEATURE_IPV6;
	if (mg_check_feature(MG_FEATURES_X_DOMAIN_SOCKET))
		f |= HTTP_FEATURE_UNIX_SOCKET;
	return f;
}

static int check_listen(const char *listen, struct cd_error *err)
{
	const char *colon;
	char addr[64];
	struct in_addr in;
	unsigned port;

	if (!listen || !*listen)
		return cd_error_set(err, -EINVAL, "no listen address (want ADDR:PORT)");
	if (listen[0] == '/' || listen[0] == '@' || startswith(listen, "unix:"))
		return cd_error_set(err, -EAFNOSUPPORT,
				    "cannot listen on unix socket %s: civetweb is built without "
				    "AF_UNIX support; use a loopback TCP address",
				    listen);
	if (listen[0] == '[')
		return cd_error_set(err, -EAFNOSUPPORT,
				    "cannot listen on %s: civetweb is built without IPv6 support",
				    listen);
	colon = strrchr(listen, ':');
	if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof(addr))
		return cd_error_set(err, -EINVAL, "invalid listen address %s (want ADDR:PORT)",
				    listen);
	memcpy(addr, listen, (size_t)(colon - listen));
	addr[colon - listen] = '\0';
	if (strchr(addr, ':'))
		return cd_error_set(err, -EAFNOSUPPORT,
				    "cannot listen on %s: civetweb is built without IPv6 support",
				    listen);
	if (inet_pton(AF_INET, addr, &in) != 1)
		return cd_error_set(err, -EINVAL,
				    "invalid listen address %s: %s is not an IPv4 "
				    "address",
				    listen, addr);
	if (parse_uint(colon + 1, 65535, &port) < 0)
		return cd_error_set(err, -EINVAL, "invalid listen address %s: bad port", listen);
	return 0;
}

/* civetweb reports only "Failed to setup server ports"; find out why by trying the same bind. */
static int probe_listen_error(const char *address)
{
	const char *colon = strrchr(address, ':');
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char addr[64];
	unsigned port;
	int fd, r = -EIO, one = 1;

	if (!colon || (size_t)(colon - address) >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, address, (size_t)(colon - address));
	addr[colon - address] = '\0';
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || parse_uint(colon + 1, 65535, &port) < 0)
		return -EINVAL;
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
		r = -errno;
	close(fd);
	return r;
}

/*
 * civetweb 1.15's accept thread polls the listening socket in 2 s quanta and mg_stop() waits for
 * it to see the stop flag, so a plain stop takes 0..2 s. While mg_stop() runs, a helper thread
 * connects to our own port every 10 ms (the first attempt may come before civetweb sets its
 * flag; once it is set the thread exits without accepting, and the kernel resets the
 * connection) and calls on_stop, which wakes handlers sleeping on something of the caller's.
 */
struct stop_poker {
	struct http_server *srv;
	pthread_t thread_id;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void poke_listener(const struct http_server *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)srv->port),
				 .sin_addr = srv->poke_addr };
	struct timeval tv = { .tv_usec = 100 * 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return;
	/* bounds a blocking connect (a full backlog) */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)connect(fd, (const struct sockaddr *)&a, sizeof(a));
	close(fd);
}

static void *stop_poker_run(void *arg)
{
	struct stop_poker *k = arg;

	pthread_mutex_lock(&k->lock);
	while (!k->done) {
		struct timespec ts;

		pthread_mutex_unlock(&k->lock);
		if (k->srv->on_stop)
			k->srv->on_stop(k->srv->on_stop_data);
		poke_listener(k->srv);
		pthread_mutex_lock(&k->lock);
		if (k->done)
			break;
		ts = clock_timespec_after(CLOCK_MONOTONIC, 10 * USEC_PER_MSEC);
		pthread_cond_timedwait(&k->cond, &k->lock, &ts);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

static void stop_server(struct http_server *srv)
{
	struct stop_poker k = { .srv = srv };
	pthread_condattr_t ca;
	bool started;

	pthread_mutex_init(&k.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k.cond, &ca);
	pthread_condattr_destroy(&ca);
	started = srv->port > 0 && pthread_create(&k.thread_id, NULL, stop_poker_run, &k) == 0;
	mg_stop(srv->ctx); /* without the poker (no thread): the plain 0..2 s stop */
	if (started) {
		pthread_mutex_lock(&k.lock);
		k.done = true;
		pthread_cond_signal(&k.cond);
		pthread_mutex_unlock(&k.lock);
		pthread_join(k.thread_id, NULL);
	}
	pthread_cond_destroy(&k.cond);
	pthread_mutex_destroy(&k.lock);
}

void http_server_free(struct http_server *srv)
{
	if (!srv)
		return;
	atomic_store(&srv->stopping, true);
	if (srv->ctx)
		stop_server(srv);
	for (size_t i = 0; i < srv->n_routes; i++)
		route_release(&srv->routes[i]);
	free(srv->routes);
	for (size_t i = 0; i < srv->n_tokens; i++) {
		explicit_bzero(srv->tokens[i].secret, srv->tokens[i].len);
		free(srv->tokens[i].secret);
	}
	free(srv->tokens);
	free(srv);
}

/* Copy the configuration and compile the routes (the built-in /healthz last). */
static int server_setup(struct http_server *srv, const struct http_server_config *config,
			struct cd_error *err)
{
	static const struct http_route healthz = {
		.method = "GET",
		.pattern = "/healthz",
		.handler = healthz_handler,
		.flags = HTTP_ROUTE_OPEN,
	};
	int r;

	srv->max_body = config->max_body_bytes ? config->max_body_bytes : HTTP_DEFAULT_MAX_BODY;
	srv->access_log = config->access_log;
	srv->error_log = config->error_log;
	srv->userdata = config->userdata;
	srv->on_stop = config->on_stop;
	srv->on_stop_data = config->on_stop_data;
	srv->tokens = calloc(config->n_tokens + 1, sizeof(*srv->tokens));
	if (!srv->tokens)
		return cd_error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i <= config->n_tokens; i++) {
		const char *secret = i < config->n_tokens ? config->tokens[i].secret :
							    config->bearer_token;
		struct server_token *t = &srv->tokens[srv->n_tokens];

		if (!secret)
			continue;
		t->secret = strdup(secret);
		if (!t->secret)
			return cd_error_set(err, -ENOMEM, "out of memory");
		t->len = strlen(secret);
		t->principal = i < config->n_tokens ? config->tokens[i].principal : NULL;
		srv->n_tokens++;
	}
	srv->routes = calloc(config->n_routes + 1, sizeof(*srv->routes));
	if (!srv->routes)
		return cd_error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i <= config->n_routes; i++) {
		const struct http_route *in = i < config->n_routes ? &config->routes[i] : &healthz;

		/* count first so a half-compiled route is released too */
		srv->n_routes = i + 1;
		r = route_compile(in, &srv->routes[i], err);
		if (r < 0)
			return cd_error_set(err, r, "route %s: %s", in->pattern ? in->pattern : "?",
					    strerror(-r));
	}

	return 0;
}

int http_server_new(const struct http_server_config *config, struct http_server **ret,
		    struct cd_error *err)
{
	_cleanup_http_server_ struct http_server *srv = NULL;
	char threads[16], req_timeout[16], ka_timeout[16], ebuf[256] = "";
	unsigned code = 0;
	struct mg_error_data edata = { .code = &code,
				       .text = ebuf,
				       .text_buffer_size = sizeof(ebuf) };
	struct mg_callbacks callbacks = {
		.begin_request = begin_request,
		.http_error = http_error,
		.init_connection = init_connection,
		.log_message = log_message,
		.log_access = log_access,
	};
	struct mg_server_port ports[4];
	struct sigaction old_chld;
	unsigned nthreads;
	int r;

	if (!config || !ret)
		return cd_error_set(err, -EINVAL, "no configuration");
	if (config->tls_certificate)
		return cd_error_set(
			err, -EOPNOTSUPP,
			"TLS is not supported: Debian's civetweb 1.15 crashes in the TLS "
			"handshake with OpenSSL 3; terminate TLS in a proxy in front "
			"(see docs/http.md)");
	r = check_listen(config->listen, err);
	if (r < 0)
		return r;
	nthreads = config->num_threads ? config->num_threads : HTTP_DEFAULT_THREADS;
	if (nthreads > 1024)
		return cd_error_set(err, -EINVAL, "num_threads %u is above 1024", nthreads);
	if (config->bearer_token && !*config->bearer_token)
		return cd_error_set(err, -EINVAL, "empty bearer token (NULL disables auth)");
	if (config->n_tokens && !config->tokens)
		return cd_error_set(err, -EINVAL, "n_tokens without tokens");
	for (size_t i = 0; i < config->n_tokens; i++)
		if (!config->tokens[i].secret || !*config->tokens[i].secret)
			return cd_error_set(err, -EINVAL, "token %zu is empty", i);
	if (config->n_routes && !config->routes)
		return cd_error_set(err, -EINVAL, "n_routes without routes");

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return cd_error_set(err, -ENOMEM, "out of memory");
	r = server_setup(srv, config, err);
	if (r < 0)
		return r;

	snprintf(threads, sizeof(threads), "%u", nthreads);
	snprintf(req_timeout, sizeof(req_timeout), "%u",
		 config->request_timeout_ms ? config->request_timeout_ms :
					      HTTP_DEFAULT_REQUEST_TIMEOUT_MS);
	snprintf(ka_timeout, sizeof(ka_timeout), "%u",
		 config->keep_alive_timeout_ms ? config->keep_alive_timeout_ms :
						 HTTP_DEFAULT_KEEP_ALIVE_TIMEOUT_MS);
	{
		const char *options[] = {
			"listening_ports",
			config->listen,
			"num_threads",
			threads,
			"request_timeout_ms",
			req_timeout,
			"keep_alive_timeout_ms",
			ka_timeout,
			"enable_keep_alive",
			"yes",
			"tcp_nodelay",
			"1",
			"decode_url",
			"no",
			NULL,
		};
		struct mg_init_data init = {
			.callbacks = &callbacks,
			.user_data = srv,
			.configuration_options = options,
		};

		pthread_once(&civetweb_once, civetweb_init);
		/* civetweb may touch signal dispositions; a daemon reaping its tasks must keep
		 * its SIGCHLD handling. */
		sigaction(SIGCHLD, NULL, &old_chld);
		srv->ctx = mg_start2(&init, &edata);
		sigaction(SIGCHLD, &old_chld, NULL);
	}
	if (!srv->ctx) {
		r = probe_listen_error(config->listen);
		if (r != -EIO)
			return cd_error_set(err, r, "cannot listen on %s: %s", config->listen,
					    strerror(-r));
		return cd_error_set(err, r, "cannot listen on %s: %s", config->listen,
				    ebuf[0] ? ebuf : "civetweb failed to start");
	}
	r = mg_get_server_ports(srv->ctx, (int)ARRAY_SIZE(ports), ports);
	if (r < 1)
		return cd_error_set(err, -EIO, "cannot read the bound port of %s", config->listen);
	srv->port = ports[0].port;
	{
		/* check_listen() validated the address; 0.0.0.0 is reached on loopback */
		char addr[64];
		const char *colon = strrchr(config->listen, ':');

		snprintf(addr, sizeof(addr), "%.*s", (int)(colon - config->listen), config->listen);
		if (inet_pton(AF_INET, addr, &srv->poke_addr) != 1 ||
		    srv->poke_addr.s_addr == htonl(INADDR_ANY))
			srv->poke_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	*ret = TAKE_PTR(srv);
	return 0;
}

int http_server_port(const struct http_server *srv)
{
	return srv->port;
}

void http_server_stats(const struct http_server *srv, struct http_server_stats *ret)
{
	ret->connections = atomic_load(&srv->connections);
	ret->requests = atomic_load(&srv->requests);
}
