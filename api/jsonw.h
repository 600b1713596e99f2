/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jsonw.h — a streaming JSON writer into a strbuf, for hot response paths where building a
 * jansson tree and dumping it costs more than the request (deployd's GetJobState lists). Emits
 * compact RFC 8259 JSON: strings escaped, invalid UTF-8 replaced by U+FFFD, commas placed by
 * the writer. Owns only its buffer. Parsing and everything off the hot path stay on jansson.
 * Errors are sticky: calls after an allocation failure do nothing and jsonw_finish() reports it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/clock.h"
#include "lib/str.h"

#define JSONW_MAX_DEPTH 64

struct jsonw {
	struct strbuf buf;
	uint64_t has_value; /* bit d: the container at depth d already holds a value */
	unsigned depth;
	bool after_key;
	int error; /* 0 or -ENOMEM / -EINVAL (unbalanced or too deep) */
};
#define JSONW_INIT                                                                                 \
	{                                                                                          \
		.buf = STRBUF_INIT                                                                 \
	}

void jsonw_release(struct jsonw *w);

void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);
/* The next value's key; only inside an object. */
void jsonw_key(struct jsonw *w, const char *key);

/* Values. jsonw_string(NULL) and jsonw_raw(NULL) write null. */
void jsonw_string(struct jsonw *w, const char *s);
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_null(struct jsonw *w);
/* An RFC 3339 UTC timestamp with milliseconds, or null when t is 0. */
void jsonw_time(struct jsonw *w, usec_t t);
/* JSON text the caller guarantees to be one valid JSON value (e.g. a stored, validated spec). */
void jsonw_raw(struct jsonw *w, const char *json);

/* key + value in one call */
void jsonw_kstring(struct jsonw *w, const char *key, const char *s);
void jsonw_kint(struct jsonw *w, const char *key, int64_t v);
void jsonw_kbool(struct jsonw *w, const char *key, bool v);
void jsonw_ktime(struct jsonw *w, const char *key, usec_t t);

/* 0 and the text in w->buf (NUL-terminated) when the document is complete and nothing failed;
 * -ENOMEM or -EINVAL otherwise. */
int jsonw_finish(struct jsonw *w);
