/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: api/jsonw on arbitrary bytes as keys and strings. The output must always be
 * JSON that jansson parses; input that is valid UTF-8 without NUL must come back unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/jsonw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jsonw w = JSONW_INIT;
	char *s = malloc(size + 1);
	json_t *j, *orig;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	jsonw_object_begin(&w);
	jsonw_kstring(&w, s, s);
	jsonw_key(&w, "list");
	jsonw_array_begin(&w);
	jsonw_string(&w, s);
	jsonw_int(&w, (int64_t)size);
	jsonw_array_end(&w);
	jsonw_object_end(&w);
	if (jsonw_finish(&w) != 0)
		abort();
	j = json_loads(w.buf.buf, 0, NULL);
	if (!j)
		abort();
	/* jansson accepts exactly valid UTF-8: when it does, the writer must not have changed it */
	orig = json_stringn(s, strlen(s));
	if (orig && strlen(s) == size) {
		json_t *v = json_object_get(j, s);

		if (!v || !json_equal(v, orig) ||
		    !json_equal(json_array_get(json_object_get(j, "list"), 0), orig))
			abort();
	}
	json_decref(orig);
	json_decref(j);
	jsonw_release(&w);
	free(s);
	return 0;
}
