/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json.h — strict parsing of request bodies and typed field access for validators.
 * Owns the body limits (size, nesting depth), the parse-error shape (400 with line/column) and
 * the "every invalid field gets a JSON pointer" helpers the codecs (jobspec, pipeline) build on.
 * Does not own any resource type: those live in their own modules.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/problem.h"

#define API_JSON_MAX_BYTES ((size_t)1024 * 1024) /* request bodies; larger → 413 */
#define API_JSON_MAX_DEPTH 32u			 /* nested arrays/objects; deeper → 400 */
#define API_JSON_POINTER_MAX 512		 /* longer pointers are truncated in reports */

/* Problem types (RFC 9457 "type"); clients switch on these, titles are for humans. */
#define API_PROBLEM_MALFORMED "urn:codedeploy:problem:malformed-json"
#define API_PROBLEM_TOO_LARGE "urn:codedeploy:problem:body-too-large"
#define API_PROBLEM_INVALID "urn:codedeploy:problem:validation-failed"

/*
 * Parse a request body strictly: at most API_JSON_MAX_BYTES, nesting at most API_JSON_MAX_DEPTH,
 * an object or array at the top, no trailing data, valid UTF-8, no NUL in strings (raw or
 * \u0000), no duplicate keys. On success *ret owns a new reference. On failure p (initialised by
 * the caller with problem_init(); may be NULL) gets status/type/title and one error at pointer ""
 * whose message names the line and column:
 *   -EFBIG  body too large (413),
 *   -EINVAL malformed (400),
 *   -ENOMEM out of memory (jansson reports it like a syntax error; we cannot tell, see .c).
 */
int api_json_parse(const char *buf, size_t len, json_t **ret, struct problem *p);
/* Same with explicit limits (0 = the default). */
int api_json_parse_limits(const char *buf, size_t len, size_t max_bytes, unsigned max_depth,
			  json_t **ret, struct problem *p);

/*
 * Canonical serialisation: compact, keys sorted, ASCII-only (non-ASCII as \uXXXX), reals with
 * 15 significant digits. Equal documents give equal bytes; used for hashing. NULL on ENOMEM.
 * The caller frees the result.
 */
char *api_json_dump_canonical(const json_t *j);
/* Lowercase hex SHA-256 of api_json_dump_canonical(j) into hex[65]. 0 or -ENOMEM/-EIO. */
int api_json_canonical_sha256(const json_t *j, char hex[static 65]);

/*
 * Quote a user-supplied string for an error message: '"' + s + '"', control bytes, quotes,
 * backslashes and non-ASCII as escapes, cut (with "...") to fit size without splitting anything.
 * The result is always printable ASCII, so messages stay valid UTF-8 whatever the input.
 * Returns buf.
 */
const char *api_json_quote(char *buf, size_t size, const char *s);
#define API_JSON_QUOTE_MAX 80

/* Name of a JSON type as users read it: "object", "array", "string", "integer", "number",
 * "boolean", "null". */
const char *api_json_type_name(const json_t *v);

/*
 * Field helpers. Each reports what is wrong with a JSON pointer built from base (the pointer of
 * obj, "" for the root) and key into p, and returns:
 *   1  present and valid: *ret written,
 *   0  absent (or null) and optional: *ret untouched, so callers pre-load the default,
 *  <0  -EINVAL: invalid, or absent while required; the error is already recorded in p.
 * obj must be an object (callers check with api_json_expect_object()). Strings are rejected when
 * they hold NUL bytes (possible only for programmatically built values) or are longer than
 * max_len bytes; min_len 0 allows "".
 */
int api_json_get_string(const json_t *obj, const char *base, const char *key, bool required,
			size_t min_len, size_t max_len, const char **ret, struct problem *p);
/* Integers only (1.0 is a number, not an integer), range [min, max] inclusive. */
int api_json_get_int(const json_t *obj, const char *base, const char *key, bool required,
		     int64_t min, int64_t max, int64_t *ret, struct problem *p);
/* Integers or reals, finite, range [min, max]. */
int api_json_get_number(const json_t *obj, const char *base, const char *key, bool required,
			double min, double max, double *ret, struct problem *p);
int api_json_get_bool(const json_t *obj, const char *base, const char *key, bool required,
		      bool *ret, struct problem *p);
/* Array with min_items..max_items elements; *ret borrows from obj. */
int api_json_get_array(const json_t *obj, const char *base, const char *key, bool required,
		       size_t min_items, size_t max_items, const json_t **ret, struct problem *p);
/* Object; *ret borrows from obj. */
int api_json_get_object(const json_t *obj, const char *base, const char *key, bool required,
			const json_t **ret, struct problem *p);

/*
 * Array of strings (each min_len..max_len bytes, no NUL) into a new NULL-terminated vector
 * (strv_free()). Every bad element is reported at its own pointer ("/command/2"). Returns 1, 0
 * (absent, optional; *ret untouched), -EINVAL, or -ENOMEM.
 */
int api_json_get_strv(const json_t *obj, const char *base, const char *key, bool required,
		      size_t min_items, size_t max_items, size_t min_len, size_t max_len,
		      char ***ret, struct problem *p);

/* Value-level checks for callers iterating arrays themselves; pointer is the value's own. */
int api_json_check_string(const json_t *v, const char *pointer, size_t min_len, size_t max_len,
			  const char **ret, struct problem *p);
/* If v is not an object, record "must be an object" at pointer and return -EINVAL; else 0. */
int api_json_expect_object(const json_t *v, const char *pointer, struct problem *p);

/*
 * Reject members of obj whose key is not in allowed (NULL-terminated): one error per unknown
 * member, at the member's own pointer, "unknown field". Returns the number of unknown members
 * (0 = all known).
 */
int api_json_check_unknown(const json_t *obj, const char *base, const char *const allowed[],
			   struct problem *p);

/*
 * Mark p as a validation failure (422, API_PROBLEM_INVALID) when it holds field errors; returns
 * -EINVAL in that case, -ENOMEM if recording ran out of memory, else 0. Codecs call it last.
 */
int api_json_finish_validation(struct problem *p);
