/* SPDX-License-Identifier: Apache-2.0 */
#include "api/jsonw.h"

#include <errno.h>
#include <stdio.h>

void jsonw_release(struct jsonw *w)
{
	strbuf_release(&w->buf);
	*w = (struct jsonw)JSONW_INIT;
}

static void add(struct jsonw *w, const char *s, size_t n)
{
	struct strbuf *b = &w->buf;

	if (w->error)
		return;
	/* most tokens fit: append in place without strbuf_add()'s bookkeeping */
	if (b->buf && b->len + n < b->alloc) {
		memcpy(b->buf + b->len, s, n);
		b->len += n;
		b->buf[b->len] = '\0';
		return;
	}
	if (strbuf_add(b, s, n) < 0)
		w->error = -ENOMEM;
}

/* Comma and bookkeeping before any value (or key) at the current depth. */
static void before_value(struct jsonw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth > 0 && (w->has_value & (UINT64_C(1) << w->depth)))
		add(w, ",", 1);
	w->has_value |= UINT64_C(1) << w->depth;
}

static void open_container(struct jsonw *w, char c)
{
	before_value(w);
	if (w->depth + 1 >= JSONW_MAX_DEPTH) {
		w->error = w->error ?: -EINVAL;
		return;
	}
	add(w, &c, 1);
	w->depth++;
	w->has_value &= ~(UINT64_C(1) << w->depth);
}

static void close_container(struct jsonw *w, char c)
{
	if (w->depth == 0 || w->after_key) {
		w->error = w->error ?: -EINVAL;
		return;
	}
	w->depth--;
	add(w, &c, 1);
}

void jsonw_object_begin(struct jsonw *w)
{
	open_container(w, '{');
}

void jsonw_object_end(struct jsonw *w)
{
	close_container(w, '}');
}

void jsonw_array_begin(struct jsonw *w)
{
	open_container(w, '[');
}

void jsonw_array_end(struct jsonw *w)
{
	close_container(w, ']');
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned c = p[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void add_quoted(struct jsonw *w, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *run = p;

	add(w, "\"", 1);
	while (*p) {
		char esc[8];
		size_t n;

		if (*p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80) {
			p++;
			continue;
		}
		n = *p >= 0x80 ? utf8_len(p) : 0;
		if (n > 0) {
			p += n;
			continue;
		}
		add(w, (const char *)run, (size_t)(p - run));
		switch (*p) {
		case '"':
			add(w, "\\\"", 2);
			break;
		case '\\':
			add(w, "\\\\", 2);
			break;
		case '\n':
			add(w, "\\n", 2);
			break;
		case '\t':
			add(w, "\\t", 2);
			break;
		case '\r':
			add(w, "\\r", 2);
			break;
		default:
			if (*p < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				add(w, esc, 6);
			} else
				add(w, "\\ufffd", 6); /* a byte that starts no valid sequence */
			break;
		}
		run = ++p;
	}
	add(w, (const char *)run, (size_t)(p - run));
	add(w, "\"", 1);
}

void jsonw_key(struct jsonw *w, const char *key)
{
	if (w->depth == 0 || w->after_key) {
		w->error = w->error ?: -EINVAL;
		return;
	}
	before_value(w);
	add_quoted(w, key);
	add(w, ":", 1);
	w->after_key = true;
}

void jsonw_string(struct jsonw *w, const char *s)
{
	before_value(w);
	if (s)
		add_quoted(w, s);
	else
		add(w, "null", 4);
}

void jsonw_int(struct jsonw *w, int64_t v)
{
	/* by hand: snprintf is most of the cost of a small number */
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
	char b[24], *p = b + sizeof(b);

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	before_value(w);
	add(w, p, (size_t)(b + sizeof(b) - p));
}

void jsonw_bool(struct jsonw *w, bool v)
{
	before_value(w);
	if (v)
		add(w, "true", 4);
	else
		add(w, "false", 5);
}

void jsonw_null(struct jsonw *w)
{
	before_value(w);
	add(w, "null", 4);
}

void jsonw_time(struct jsonw *w, usec_t t)
{
	char b[40];

	if (!t) {
		jsonw_null(w);
		return;
	}
	jsonw_string(w, clock_format_rfc3339(t, b, sizeof(b)));
}

void jsonw_raw(struct jsonw *w, const char *json)
{
	before_value(w);
	if (json)
		add(w, json, strlen(json));
	else
		add(w, "null", 4);
}

void jsonw_kstring(struct jsonw *w, const char *key, const char *s)
{
	jsonw_key(w, key);
	jsonw_string(w, s);
}

void jsonw_kint(struct jsonw *w, const char *key, int64_t v)
{
	jsonw_key(w, key);
	jsonw_int(w, v);
}

void jsonw_kbool(struct jsonw *w, const char *key, bool v)
{
	jsonw_key(w, key);
	jsonw_bool(w, v);
}

void jsonw_ktime(struct jsonw *w, const char *key, usec_t t)
{
	jsonw_key(w, key);
	jsonw_time(w, t);
}

int jsonw_finish(struct jsonw *w)
{
	if (w->error)
		return w->error;
	if (w->depth != 0 || w->after_key || !w->buf.buf)
		return -EINVAL;
	return 0;
}
