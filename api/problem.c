/* SPDX-License-Identifier: Apache-2.0 */
#include "api/problem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_str(char **dst, const char *src, bool *oom)
{
	char *n = NULL;

	if (src) {
		n = strdup(src);
		if (!n) {
			*oom = true;
			return;
		}
	}
	free(*dst);
	*dst = n;
}

void problem_init(struct problem *p, int status, const char *type, const char *title)
{
	memset(p, 0, sizeof(*p));
	p->status = status;
	set_str(&p->type, type, &p->oom);
	set_str(&p->title, title, &p->oom);
}

void problem_set(struct problem *p, int status, const char *type, const char *title)
{
	if (status)
		p->status = status;
	if (type)
		set_str(&p->type, type, &p->oom);
	if (title)
		set_str(&p->title, title, &p->oom);
}

void problem_release(struct problem *p)
{
	for (size_t i = 0; i < p->n_errors; i++) {
		free(p->errors[i].pointer);
		free(p->errors[i].message);
	}
	free(p->errors);
	free(p->type);
	free(p->title);
	free(p->detail);
	memset(p, 0, sizeof(*p));
}

void problem_set_detail(struct problem *p, const char *fmt, ...)
{
	va_list ap;
	char *d = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&d, fmt, ap);
	va_end(ap);
	if (n < 0) {
		p->oom = true;
		return;
	}
	free(p->detail);
	p->detail = d;
}

void problem_add_error(struct problem *p, const char *pointer, const char *fmt, ...)
{
	struct problem_field f = { 0 };
	va_list ap;
	int n;

	if (p->n_errors >= PROBLEM_MAX_ERRORS) {
		p->n_dropped++;
		return;
	}
	if (p->n_errors == p->alloc) {
		size_t na = p->alloc ? p->alloc * 2 : 8;
		struct problem_field *ne = realloc(p->errors, na * sizeof(*ne));

		if (!ne) {
			p->oom = true;
			return;
		}
		p->errors = ne;
		p->alloc = na;
	}
	va_start(ap, fmt);
	n = vasprintf(&f.message, fmt, ap);
	va_end(ap);
	f.pointer = strdup(pointer ? pointer : "");
	if (n < 0 || !f.pointer) {
		if (n >= 0)
			free(f.message);
		free(f.pointer);
		p->oom = true;
		return;
	}
	p->errors[p->n_errors++] = f;
}

const char *problem_pointer(char *buf, size_t size, const char *base, const char *token)
{
	size_t n = 0;

	if (size == 0)
		return buf;
	for (const char *s = base ? base : ""; *s && n + 1 < size; s++)
		buf[n++] = *s;
	if (n + 1 < size)
		buf[n++] = '/';
	for (const char *s = token ? token : ""; *s && n + 1 < size; s++) {
		if (*s == '~' || *s == '/') {
			if (n + 2 >= size)
				break;
			buf[n++] = '~';
			buf[n++] = *s == '~' ? '0' : '1';
		} else {
			buf[n++] = *s;
		}
	}
	buf[n] = '\0';
	return buf;
}

const char *problem_pointer_index(char *buf, size_t size, const char *base, size_t index)
{
	char idx[24];

	snprintf(idx, sizeof(idx), "%zu", index);
	return problem_pointer(buf, size, base, idx);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s does not start one (stray
 * continuation byte, overlong form, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_seq_len(const unsigned char *s)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * json_string() refuses invalid UTF-8, and one bad byte in one message must not cost the client
 * the whole problem document: such bytes become U+FFFD. Messages are ours, but some quote input.
 */
static json_t *json_string_lossy(const char *s)
{
	json_t *j = json_string(s);
	struct {
		char *buf;
		size_t len;
	} out = { 0 };
	size_t cap;

	if (j || !s)
		return j;
	cap = strlen(s) * 3 + 1;
	out.buf = malloc(cap);
	if (!out.buf)
		return NULL;
	for (const unsigned char *c = (const unsigned char *)s; *c;) {
		size_t n = utf8_seq_len(c);

		if (n == 0) {
			memcpy(out.buf + out.len, "\xef\xbf\xbd", 3);
			out.len += 3;
			c++;
		} else {
			memcpy(out.buf + out.len, c, n);
			out.len += n;
			c += n;
		}
	}
	out.buf[out.len] = '\0';
	j = json_string(out.buf);
	free(out.buf);
	return j;
}

json_t *problem_to_json(const struct problem *p)
{
	json_t *o = json_object(), *errs;
	/* a status outside 100..599 is a caller bug; never put it on the wire */
	int status = p->oom || p->status < 100 || p->status > 599 ? 500 : p->status;
	int r = 0;

	if (!o)
		return NULL;
	r |= json_object_set_new(o, "type", json_string_lossy(p->type ? p->type : "about:blank"));
	r |= json_object_set_new(o, "title", json_string_lossy(p->title ? p->title : "Error"));
	r |= json_object_set_new(o, "status", json_integer(status));
	if (p->oom)
		r |= json_object_set_new(o, "detail",
					 json_string("out of memory while reporting the error"));
	else if (p->detail)
		r |= json_object_set_new(o, "detail", json_string_lossy(p->detail));
	if (p->n_errors > 0 || p->n_dropped > 0) {
		errs = json_array();
		if (!errs) {
			json_decref(o);
			return NULL;
		}
		for (size_t i = 0; i < p->n_errors; i++)
			r |= json_array_append_new(
				errs, json_pack("{s:o, s:o}", "pointer",
						json_string_lossy(p->errors[i].pointer), "message",
						json_string_lossy(p->errors[i].message)));
		r |= json_object_set_new(o, "errors", errs);
		if (p->n_dropped)
			r |= json_object_set_new(o, "errors_omitted",
						 json_integer((json_int_t)p->n_dropped));
	}
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

char *problem_to_string(const struct problem *p)
{
	json_t *j = problem_to_json(p);
	char *s;

	if (!j)
		return NULL;
	s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(j);
	return s;
}

int problem_from_json(const json_t *j, struct problem *ret)
{
	const json_t *status, *errs, *e;
	size_t i;

	if (!json_is_object(j))
		return -EINVAL;
	status = json_object_get(j, "status");
	if (!json_is_integer(status) || json_integer_value(status) < 100 ||
	    json_integer_value(status) > 599)
		return -EINVAL;
	problem_init(ret, (int)json_integer_value(status),
		     json_string_value(json_object_get(j, "type")),
		     json_string_value(json_object_get(j, "title")));
	if (json_is_string(json_object_get(j, "detail")))
		problem_set_detail(ret, "%s", json_string_value(json_object_get(j, "detail")));
	errs = json_object_get(j, "errors");
	json_array_foreach(errs, i, e) {
		const char *ptr = json_string_value(json_object_get(e, "pointer"));
		const char *msg = json_string_value(json_object_get(e, "message"));

		if (msg)
			problem_add_error(ret, ptr ? ptr : "", "%s", msg);
	}
	if (json_is_integer(json_object_get(j, "errors_omitted")) &&
	    json_integer_value(json_object_get(j, "errors_omitted")) > 0)
		ret->n_dropped += (size_t)json_integer_value(json_object_get(j, "errors_omitted"));
	if (ret->oom) {
		problem_release(ret);
		return -ENOMEM;
	}
	return 0;
}
