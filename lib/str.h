/* SPDX-License-Identifier: Apache-2.0 */
/*
 * str.h — string helpers: a growable byte buffer (strbuf), comparisons, constant-time equality,
 * bounded integer parsing. Owns only the memory of a strbuf; everything else is pure.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/macro.h"

struct strbuf {
	char *buf; /* always NUL-terminated once anything was added; NULL when empty-new */
	size_t len;
	size_t alloc;
};
#define STRBUF_INIT                                                                                \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

int strbuf_grow(struct strbuf *sb, size_t extra);
int strbuf_add(struct strbuf *sb, const void *data, size_t len);
int strbuf_adds(struct strbuf *sb, const char *s);
int strbuf_addf(struct strbuf *sb, const char *fmt, ...) _printf_(2, 3);
int strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) _printf_(2, 0);
void strbuf_reset(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);
/* Hand out the buffer (never NULL on success: "" for empty); sb is reset. NULL on ENOMEM. */
char *strbuf_detach(struct strbuf *sb, size_t *ret_len);
static inline void strbuf_releasep(struct strbuf *sb)
{
	strbuf_release(sb);
}
#define _cleanup_strbuf_ _cleanup_(strbuf_releasep)

static inline bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}
/* Returns the rest of s after prefix, or NULL. */
const char *startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);

/* Compare a and b in time independent of where they differ (bearer tokens). Lengths leak. */
bool ct_memeq(const void *a, size_t alen, const void *b, size_t blen);

/* Strict base-10 parses: whole string, no sign for unsigned, range-checked. -EINVAL / -ERANGE. */
int parse_u64(const char *s, uint64_t *ret);
int parse_i64(const char *s, int64_t *ret);
int parse_uint(const char *s, unsigned max, unsigned *ret);

/* strdup that aborts the program on ENOMEM is deliberately absent: callers handle -ENOMEM. */

/* The value of one hex digit (either case), -1 when c is not one. */
static inline int unhexchar(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
