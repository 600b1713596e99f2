/* SPDX-License-Identifier: Apache-2.0 */
#include "api/problem.h"

#include <errno.h>
#include <stdarg.h>
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

json_t *problem_to_json(const struct problem *p)
{
	json_t *o = json_object(), *errs;
	int status = p->oom ? 500 : p->status;
	int r = 0;

	if (!o)
		return NULL;
	r |= json_object_set_new(o, "type", json_string(p->type ? p->type : "about:blank"));
	r |= json_object_set_new(o, "title", json_string(p->title ? p->title : "Error"));
	r |= json_object_set_new(o, "status", json_integer(status));
	if (p->oom)
		r |= json_object_set_new(o, "detail",
					 json_string("out of memory while reporting the error"));
	else if (p->detail)
		r |= json_object_set_new(o, "detail", json_string(p->detail));
	if (p->n_errors > 0 || p->n_dropped > 0) {
		errs = json_array();
		if (!errs) {
			json_decref(o);
			return NULL;
		}
		for (size_t i = 0; i < p->n_errors; i++)
			r |= json_array_append_new(errs, json_pack("{s:s, s:s}", "pointer",
								   p->errors[i].pointer, "message",
								   p->errors[i].message));
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
	if (ret->oom) {
		problem_release(ret);
		return -ENOMEM;
	}
	return 0;
}
