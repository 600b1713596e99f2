/* SPDX-License-Identifier: Apache-2.0 */
#include "api/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/macro.h"

static void report(struct problem *p, int status, const char *type, const char *title,
		   const char *fmt, ...) _printf_(5, 6);
static void report(struct problem *p, int status, const char *type, const char *title,
		   const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!p)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	problem_set(p, status, type, title);
	problem_add_error(p, "", "%s", msg);
}

const char *api_json_quote(char *buf, size_t size, const char *s)
{
	size_t n = 0;

	if (size < 8) { /* room for "\"...\"" at least */
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[n++] = '"';
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t el;

		if (c == '"' || c == '\\')
			el = (size_t)snprintf(esc, sizeof(esc), "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			el = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c);
		else
			el = (size_t)snprintf(esc, sizeof(esc), "%c", c);
		/* keep room for the closing quote, "..." and the NUL */
		if (n + el + 5 > size) {
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		memcpy(buf + n, esc, el);
		n += el;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

/* Copy s with bytes outside printable ASCII as \xNN (never split), truncated to size. */
static void printable(char *buf, size_t size, const char *s)
{
	size_t n = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		size_t need = c >= 0x20 && c < 0x7f ? 1 : 4;

		if (n + need + 1 > size)
			break;
		if (need == 1)
			buf[n] = (char)c;
		else
			snprintf(buf + n, 5, "\\x%02x", c);
		n += need;
	}
	buf[n] = '\0';
}

/*
 * jansson's own nesting limit is 2048 and is fixed at its build time; ours is much lower, so
 * scan first. The scan is linear, allocation-free, and tracks strings so brackets inside them do
 * not count. It does not validate anything else: jansson does.
 */
static int check_depth(const char *buf, size_t len, unsigned max_depth, struct problem *p)
{
	unsigned depth = 0;
	bool in_string = false, escaped = false;
	size_t line = 1, col = 0;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		/* columns count characters, as jansson's do: not UTF-8 continuation bytes */
		if (((unsigned char)c & 0xc0) != 0x80)
			col++;
		if (c == '\n') {
			line++;
			col = 0;
		}
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
			continue;
		}
		switch (c) {
		case '"':
			in_string = true;
			break;
		case '[':
		case '{':
			if (++depth > max_depth) {
				report(p, 400, API_PROBLEM_MALFORMED, "Malformed JSON body",
				       "line %zu, column %zu: nesting depth exceeds the limit of %u",
				       line, col, max_depth);
				return -EINVAL;
			}
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		default:
			break;
		}
	}
	return 0;
}

int api_json_parse_limits(const char *buf, size_t len, size_t max_bytes, unsigned max_depth,
			  json_t **ret, struct problem *p)
{
	char text[JSON_ERROR_TEXT_LENGTH * 4];
	json_error_t error;
	json_t *j;
	int r;

	if (max_bytes == 0)
		max_bytes = API_JSON_MAX_BYTES;
	if (max_depth == 0)
		max_depth = API_JSON_MAX_DEPTH;
	if (len > max_bytes) {
		report(p, 413, API_PROBLEM_TOO_LARGE, "Request body too large",
		       "body is %zu bytes; the limit is %zu bytes", len, max_bytes);
		return -EFBIG;
	}
	if (!buf && len > 0)
		return -EINVAL;
	r = check_depth(buf, len, max_depth, p);
	if (r < 0)
		return r;

	/* No JSON_ALLOW_NUL (\u0000 is refused), no JSON_DECODE_ANY (object or array at the top),
	 * no JSON_DISABLE_EOF_CHECK (trailing data is refused). */
	j = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &error);
	if (!j) {
		if (json_error_code(&error) == json_error_out_of_memory) {
			report(p, 500, NULL, "Internal error", "out of memory parsing the body");
			return -ENOMEM;
		}
		/* jansson quotes the offending token, which may be invalid UTF-8: make it safe. */
		printable(text, sizeof(text), error.text);
		report(p, 400, API_PROBLEM_MALFORMED, "Malformed JSON body",
		       "line %d, column %d: %s%s", error.line, error.column,
		       json_error_code(&error) == json_error_invalid_utf8 ? "invalid UTF-8: " : "",
		       text);
		return -EINVAL;
	}
	*ret = j;
	return 0;
}

int api_json_parse(const char *buf, size_t len, json_t **ret, struct problem *p)
{
	return api_json_parse_limits(buf, len, 0, 0, ret, p);
}

char *api_json_dump_canonical(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ENCODE_ANY |
				     JSON_REAL_PRECISION(15));
}

int api_json_canonical_sha256(const json_t *j, char hex[static 65])
{
	_cleanup_free_ char *s = api_json_dump_canonical(j);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!s)
		return -ENOMEM;
	if (EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return -EIO;
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

const char *api_json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
	default:
		return "null";
	}
}

static const char *ptr(char buf[static API_JSON_POINTER_MAX], const char *base, const char *key)
{
	return problem_pointer(buf, API_JSON_POINTER_MAX, base, key);
}

/* Look key up; NULL also when the member is JSON null (null means "use the default"). Records
 * "is required" when absent and required. */
static const json_t *lookup(const json_t *obj, const char *base, const char *key, bool required,
			    int *r, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const json_t *v = json_object_get(obj, key);

	if (v && !json_is_null(v)) {
		*r = 1;
		return v;
	}
	if (required) {
		problem_add_error(p, ptr(pb, base, key), "is required");
		*r = -EINVAL;
	} else {
		*r = 0;
	}
	return NULL;
}

static int wrong_type(const json_t *v, const char *pointer, const char *want, struct problem *p)
{
	problem_add_error(p, pointer, "must be %s, not %s", want, api_json_type_name(v));
	return -EINVAL;
}

int api_json_check_string(const json_t *v, const char *pointer, size_t min_len, size_t max_len,
			  const char **ret, struct problem *p)
{
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return wrong_type(v, pointer, "a string", p);
	s = json_string_value(v);
	len = json_string_length(v);
	if (strlen(s) != len) {
		problem_add_error(p, pointer, "must not contain NUL bytes");
		return -EINVAL;
	}
	if (len < min_len) {
		if (min_len == 1)
			problem_add_error(p, pointer, "must not be empty");
		else
			problem_add_error(p, pointer, "must be at least %zu bytes long", min_len);
		return -EINVAL;
	}
	if (len > max_len) {
		problem_add_error(p, pointer, "must be at most %zu bytes long (is %zu)", max_len,
				  len);
		return -EINVAL;
	}
	*ret = s;
	return 1;
}

int api_json_expect_object(const json_t *v, const char *pointer, struct problem *p)
{
	if (!json_is_object(v))
		return wrong_type(v, pointer, "an object", p);
	return 0;
}

int api_json_get_string(const json_t *obj, const char *base, const char *key, bool required,
			size_t min_len, size_t max_len, const char **ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const json_t *v;
	int r;

	v = lookup(obj, base, key, required, &r, p);
	if (!v)
		return r;
	return api_json_check_string(v, ptr(pb, base, key), min_len, max_len, ret, p);
}

int api_json_get_int(const json_t *obj, const char *base, const char *key, bool required,
		     int64_t min, int64_t max, int64_t *ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const json_t *v;
	json_int_t i;
	int r;

	v = lookup(obj, base, key, required, &r, p);
	if (!v)
		return r;
	ptr(pb, base, key);
	if (!json_is_integer(v))
		return wrong_type(v, pb, "an integer", p);
	i = json_integer_value(v);
	if (i < min || i > max) {
		problem_add_error(p, pb, "must be between %" PRId64 " and %" PRId64 " (is %lld)",
				  min, max, (long long)i);
		return -EINVAL;
	}
	*ret = i;
	return 1;
}

int api_json_get_number(const json_t *obj, const char *base, const char *key, bool required,
			double min, double max, double *ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const json_t *v;
	double d;
	int r;

	v = lookup(obj, base, key, required, &r, p);
	if (!v)
		return r;
	ptr(pb, base, key);
	if (!json_is_number(v))
		return wrong_type(v, pb, "a number", p);
	d = json_number_value(v);
	if (!isfinite(d) || d < min || d > max) {
		problem_add_error(p, pb, "must be between %g and %g (is %g)", min, max, d);
		return -EINVAL;
	}
	*ret = d;
	return 1;
}

int api_json_get_bool(const json_t *obj, const char *base, const char *key, bool required,
		      bool *ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const json_t *v;
	int r;

	v = lookup(obj, base, key, required, &r, p);
	if (!v)
		return r;
	if (!json_is_boolean(v))
		return wrong_type(v, ptr(pb, base, key), "a boolean", p);
	*ret = json_is_true(v);
	return 1;
}

int api_json_get_array(const json_t *obj, const char *base, const char *key, bool required,
		       size_t min_items, size_t max_items, const json_t **ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const json_t *v;
	size_t n;
	int r;

	v = lookup(obj, base, key, required, &r, p);
	if (!v)
		return r;
	ptr(pb, base, key);
	if (!json_is_array(v))
		return wrong_type(v, pb, "an array", p);
	n = json_array_size(v);
	if (n < min_items) {
		if (min_items == 1)
			problem_add_error(p, pb, "must not be empty");
		else
			problem_add_error(p, pb, "must have at least %zu items", min_items);
		return -EINVAL;
	}
	if (n > max_items) {
		problem_add_error(p, pb, "must have at most %zu items (has %zu)", max_items, n);
		return -EINVAL;
	}
	*ret = v;
	return 1;
}

int api_json_get_object(const json_t *obj, const char *base, const char *key, bool required,
			const json_t **ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const json_t *v;
	int r;

	v = lookup(obj, base, key, required, &r, p);
	if (!v)
		return r;
	if (!json_is_object(v))
		return wrong_type(v, ptr(pb, base, key), "an object", p);
	*ret = v;
	return 1;
}

int api_json_get_strv(const json_t *obj, const char *base, const char *key, bool required,
		      size_t min_items, size_t max_items, size_t min_len, size_t max_len,
		      char ***ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX], eb[API_JSON_POINTER_MAX];
	_cleanup_strv_free_ char **v = NULL;
	const json_t *arr, *e;
	bool bad = false;
	size_t i;
	int r;

	r = api_json_get_array(obj, base, key, required, min_items, max_items, &arr, p);
	if (r <= 0)
		return r;
	ptr(pb, base, key);
	v = calloc(json_array_size(arr) + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	json_array_foreach(arr, i, e) {
		const char *s;

		problem_pointer_index(eb, sizeof(eb), pb, i);
		if (api_json_check_string(e, eb, min_len, max_len, &s, p) < 0) {
			bad = true;
			continue;
		}
		if (bad)
			continue;
		v[i] = strdup(s);
		if (!v[i])
			return -ENOMEM;
	}
	if (bad)
		return -EINVAL;
	*ret = TAKE_PTR(v);
	return 1;
}

int api_json_check_unknown(const json_t *obj, const char *base, const char *const allowed[],
			   struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	char known_list[256];
	const char *key;
	const json_t *v;
	size_t len = 0;
	int n = 0;

	known_list[0] = '\0';
	for (size_t i = 0; allowed[i] && len < sizeof(known_list); i++)
		len += (size_t)snprintf(known_list + len, sizeof(known_list) - len, "%s%s",
					i ? ", " : "", allowed[i]);
	json_object_foreach((json_t *)obj, key, v) {
		bool known = false;

		for (size_t i = 0; allowed[i]; i++)
			if (strcmp(allowed[i], key) == 0) {
				known = true;
				break;
			}
		if (!known) {
			problem_add_error(p, ptr(pb, base, key), "unknown field (known: %s)",
					  known_list);
			n++;
		}
	}
	return n;
}

int api_json_finish_validation(struct problem *p)
{
	if (p->oom)
		return -ENOMEM;
	if (!problem_has_errors(p))
		return 0;
	problem_set(p, 422, API_PROBLEM_INVALID, "Validation failed");
	if (!p->detail)
		problem_set_detail(p, "%zu invalid field%s", p->n_errors + p->n_dropped,
				   p->n_errors + p->n_dropped == 1 ? "" : "s");
	return -EINVAL;
}
