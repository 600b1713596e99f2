/* SPDX-License-Identifier: Apache-2.0 */
#include "api/http_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/str.h"

int http_pct_decode(const char *s, size_t n, bool plus_space, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -EINVAL;
			hi = unhexchar(s[i + 1]);
			lo = unhexchar(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		}
		if (c == '\0')
			return -EINVAL;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

void http_path_release(struct http_path *p)
{
	free(p->segs);
	free(p->storage);
	p->segs = NULL;
	p->storage = NULL;
	p->n_segs = 0;
}

int http_path_split(const char *path, struct http_path *ret)
{
	struct http_path p = { 0 };
	const char *s = path;
	size_t n = 0, len;
	char *out;

	if (!s || s[0] != '/')
		return -EINVAL;
	*ret = p;
	if (streq(s, "/"))
		return 0;
	len = strlen(s);
	for (const char *q = s; *q; q++)
		if (*q == '/')
			n++;
	if (n > HTTP_MAX_SEGMENTS)
		return -E2BIG;
	p.segs = calloc(n, sizeof(char *));
	p.storage = malloc(len + 1);
	if (!p.segs || !p.storage) {
		http_path_release(&p);
		return -ENOMEM;
	}
	out = p.storage;
	s++;
	for (size_t i = 0; i < n; i++) {
		const char *end = strchrnul(s, '/');
		int r = http_pct_decode(s, (size_t)(end - s), false, out);

		if (r >= 0 && (streq(out, ".") || streq(out, "..")))
			r = -EINVAL;
		if (r < 0) {
			http_path_release(&p);
			return r;
		}
		p.segs[i] = out;
		out += strlen(out) + 1;
		s = *end ? end + 1 : end;
	}
	p.n_segs = n;
	*ret = p;
	return 0;
}

void http_query_release(struct http_query *q)
{
	for (size_t i = 0; i < q->n; i++) {
		free(q->params[i].key);
		free(q->params[i].value);
	}
	free(q->params);
	q->params = NULL;
	q->n = 0;
}

int http_query_parse(const char *s, struct http_query *ret)
{
	struct http_query q = { 0 };
	size_t n = 1;

	*ret = q;
	if (!s || !*s)
		return 0;
	for (const char *c = s; *c; c++)
		if (*c == '&')
			n++;
	if (n > HTTP_MAX_QUERY_PARAMS)
		return -E2BIG;
	q.params = calloc(n, sizeof(*q.params));
	if (!q.params)
		return -ENOMEM;
	while (*s) {
		const char *end = strchrnul(s, '&');
		const char *eq = memchr(s, '=', (size_t)(end - s));
		size_t klen = eq ? (size_t)(eq - s) : (size_t)(end - s);
		size_t vlen = eq ? (size_t)(end - eq - 1) : 0;
		int r = 0;

		if (end > s) {
			struct http_query_param *qp = &q.params[q.n++];

			qp->key = malloc(klen + 1);
			qp->value = malloc(vlen + 1);
			if (!qp->key || !qp->value)
				r = -ENOMEM;
			if (r >= 0)
				r = http_pct_decode(s, klen, true, qp->key);
			if (r >= 0)
				r = http_pct_decode(eq ? eq + 1 : "", vlen, true, qp->value);
			if (r < 0) {
				http_query_release(&q);
				return r;
			}
		}
		s = *end ? end + 1 : end;
	}
	*ret = q;
	return 0;
}
