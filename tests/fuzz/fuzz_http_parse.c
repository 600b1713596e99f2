/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the HTTP request-target parsers (api/http_parse) on arbitrary bytes, as a
 * path and as a query string. What is accepted must survive a round trip: re-encoding every
 * decoded segment / key / value and parsing again gives the same values; what is refused is
 * refused with -EINVAL or -E2BIG only.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/http_parse.h"
#include "lib/str.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode(struct strbuf *sb, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			strbuf_add(sb, p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };

			strbuf_add(sb, e, 3);
		}
	}
}

static void check_refusal(int r)
{
	if (r < 0 && r != -EINVAL && r != -E2BIG && r != -ENOMEM)
		abort();
}

static void path_roundtrip(const char *s)
{
	struct http_path a, b;
	struct strbuf sb = STRBUF_INIT;
	int r = http_path_split(s, &a);

	check_refusal(r);
	if (r < 0)
		return;
	if (a.n_segs == 0)
		strbuf_adds(&sb, "/");
	for (size_t i = 0; i < a.n_segs; i++) {
		strbuf_adds(&sb, "/");
		encode(&sb, a.segs[i]);
	}
	if (!sb.buf || http_path_split(sb.buf, &b) != 0 || b.n_segs != a.n_segs)
		abort();
	for (size_t i = 0; i < a.n_segs; i++)
		if (strcmp(a.segs[i], b.segs[i]) != 0)
			abort();
	http_path_release(&a);
	http_path_release(&b);
	strbuf_release(&sb);
}

static void query_roundtrip(const char *s)
{
	struct http_query a, b;
	struct strbuf sb = STRBUF_INIT;
	int r = http_query_parse(s, &a);

	check_refusal(r);
	if (r < 0)
		return;
	if (a.n > HTTP_MAX_QUERY_PARAMS)
		abort();
	for (size_t i = 0; i < a.n; i++) {
		if (i)
			strbuf_adds(&sb, "&");
		encode(&sb, a.params[i].key);
		strbuf_adds(&sb, "=");
		encode(&sb, a.params[i].value);
	}
	if (http_query_parse(sb.buf, &b) != 0)
		abort();
	/* an empty key and value re-encode to "=", which is a piece of its own */
	if (b.n != a.n)
		abort();
	for (size_t i = 0; i < a.n; i++)
		if (strcmp(a.params[i].key, b.params[i].key) != 0 ||
		    strcmp(a.params[i].value, b.params[i].value) != 0)
			abort();
	http_query_release(&a);
	http_query_release(&b);
	strbuf_release(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 2);

	if (!s)
		return 0;
	memcpy(s + 1, data, size);
	s[size + 1] = '\0';
	s[0] = '/';
	path_roundtrip(s);	/* as a path */
	query_roundtrip(s + 1); /* and as a query string */
	free(s);
	return 0;
}
