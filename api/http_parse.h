/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http_parse.h — the request-target parsers of the HTTP server (api/http_server.c), apart so
 * that a fuzzer can reach them: percent-decoding, path segments and query parameters. Pure
 * functions on strings; no civetweb, no I/O. Decoded text never contains NUL; an encoded "." or
 * ".." path segment is refused (civetweb already removed the raw ones).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_SEGMENTS 64
#define HTTP_MAX_QUERY_PARAMS 128

/* Decode n bytes of s into out (room for n + 1 bytes), '+' as a space when plus_space.
 * -EINVAL on a malformed escape or an encoded NUL. */
int http_pct_decode(const char *s, size_t n, bool plus_space, char *out);

struct http_path {
	char **segs; /* decoded segments, n_segs of them; "/" has none */
	size_t n_segs;
	char *storage; /* the segments' bytes */
};
/* Split an absolute path ("/a/b%2Fc" → "a", "b/c"). -EINVAL not absolute, bad escape, NUL or a
 * dot segment; -E2BIG more than HTTP_MAX_SEGMENTS; -ENOMEM. Nothing to release on failure. */
int http_path_split(const char *path, struct http_path *ret);
void http_path_release(struct http_path *p);

struct http_query_param {
	char *key;
	char *value; /* "" for a key without '=' */
};
struct http_query {
	struct http_query_param *params;
	size_t n;
};
/* Parse "a=1&b=x+y&c" (NULL or "" is an empty query). Empty pieces ("a=1&&b") are skipped.
 * -EINVAL bad escape or NUL; -E2BIG more than HTTP_MAX_QUERY_PARAMS pieces; -ENOMEM. Nothing to
 * release on failure. */
int http_query_parse(const char *q, struct http_query *ret);
void http_query_release(struct http_query *q);
