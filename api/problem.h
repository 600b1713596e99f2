/* SPDX-License-Identifier: Apache-2.0 */
/*
 * problem.h — RFC 9457 problem details: the one error shape of every HTTP API we serve, and
 * the collector validators write into. Owns its strings (copies everything it is given).
 * Field errors carry a JSON pointer (RFC 6901) into the request body and a message; validators
 * add every problem they find, not just the first.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/macro.h"

/* Field errors beyond this many are counted but not kept (a 10 MB body cannot make a 1 GB
 * error). */
#define PROBLEM_MAX_ERRORS 100

struct problem_field {
	char *pointer; /* "/reqs/vcpus"; "" for the whole document */
	char *message;
};

struct problem {
	int status;   /* HTTP status, e.g. 422 */
	char *type;   /* URI reference; NULL means "about:blank" */
	char *title;  /* short, same for every occurrence of this type */
	char *detail; /* this occurrence; may be NULL */
	struct problem_field *errors;
	size_t n_errors;  /* kept */
	size_t n_dropped; /* beyond PROBLEM_MAX_ERRORS */
	size_t alloc;
	bool oom; /* an allocation failed while recording; status forced to 500 on send */
};

/* Initialise (no allocation on failure paths: title/type may be NULL). */
void problem_init(struct problem *p, int status, const char *type, const char *title);
void problem_release(struct problem *p);
static inline void problem_releasep(struct problem *p)
{
	problem_release(p);
}
#define _cleanup_problem_ _cleanup_(problem_releasep)

/* Replace status/type/title (NULL keeps the current one). */
void problem_set(struct problem *p, int status, const char *type, const char *title);
void problem_set_detail(struct problem *p, const char *fmt, ...) _printf_(2, 3);
/* Record a field error. pointer is a JSON pointer ("" = document root); never fails loudly:
 * on ENOMEM the problem is marked oom. */
void problem_add_error(struct problem *p, const char *pointer, const char *fmt, ...) _printf_(3, 4);
/* Build a pointer "/<base>/<token>" with RFC 6901 escaping of token (~ → ~0, / → ~1) into buf.
 * Returns buf (truncated, still NUL-terminated, if too small). */
const char *problem_pointer(char *buf, size_t size, const char *base, const char *token);
const char *problem_pointer_index(char *buf, size_t size, const char *base, size_t index);

static inline bool problem_has_errors(const struct problem *p)
{
	return p->n_errors > 0 || p->n_dropped > 0;
}

/* {"type","title","status","detail","errors":[{"pointer","message"}]}; NULL on ENOMEM.
 * The caller owns the result (json_decref / free). */
json_t *problem_to_json(const struct problem *p);
char *problem_to_string(const struct problem *p);
/* Decode a problem+json body (client side). Unknown members are ignored (RFC 9457 allows
 * extensions). Returns 0 or -EINVAL when body is not a problem object. */
int problem_from_json(const json_t *j, struct problem *ret);
