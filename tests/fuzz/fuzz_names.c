/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the name parsers (target, artifact, digest, job URL, task URL) on arbitrary
 * strings. Accepted input must format to a canonical spelling that parses back to the same
 * value and formats identically; refusals must carry a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK_REFUSAL(r, err)                                                                      \
	do {                                                                                       \
		if ((r) != 0 && ((r) != -EINVAL || (err).code != -EINVAL || !(err).msg[0]))        \
			abort();                                                                   \
	} while (0)

#define ROUNDTRIP(type, parse, format, equal, bufsize, s)                                          \
	do {                                                                                       \
		struct cd_error _err = { 0 };                                                      \
		struct type _a, _b;                                                                \
		char _f1[bufsize], _f2[bufsize];                                                   \
		int _r = parse(s, &_a, &_err);                                                     \
                                                                                                   \
		CHECK_REFUSAL(_r, _err);                                                           \
		if (_r == 0) {                                                                     \
			if (format(&_a, _f1, sizeof(_f1)) < 0 || parse(_f1, &_b, NULL) != 0 ||     \
			    !equal(&_a, &_b) || format(&_b, _f2, sizeof(_f2)) < 0 ||               \
			    strcmp(_f1, _f2) != 0)                                                 \
				abort();                                                           \
		}                                                                                  \
	} while (0)

static bool digest_equal(const struct digest *a, const struct digest *b)
{
	return strcmp(a->hex, b->hex) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	ROUNDTRIP(target, target_parse, target_format, target_equal, TARGET_MAX_LEN + 1, s);
	ROUNDTRIP(artifact, artifact_parse, artifact_format, artifact_equal, ARTIFACT_MAX_LEN + 1,
		  s);
	ROUNDTRIP(artifact, artifact_parse_ref, artifact_format, artifact_equal,
		  ARTIFACT_MAX_LEN + 1, s);
	ROUNDTRIP(digest, digest_parse, digest_format, digest_equal, DIGEST_STR_LEN + 1, s);
	ROUNDTRIP(job_url, job_url_parse, job_url_format, job_url_equal, JOB_URL_MAX_LEN + 1, s);
	ROUNDTRIP(task_url, task_url_parse, task_url_format, task_url_equal, TASK_URL_MAX_LEN + 1,
		  s);
	/* canonical input is a fixed point for exact spellings */
	{
		struct target t;
		char f[TARGET_MAX_LEN + 1];

		if (target_parse(s, &t, NULL) == 0 && strchr(s, ':') &&
		    (target_format(&t, f, sizeof(f)) < 0 || strcmp(f, s) != 0))
			abort();
	}
	free(s);
	return 0;
}
