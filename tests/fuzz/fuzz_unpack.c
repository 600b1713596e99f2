/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for everything the fetcher parses from the outside: arbitrary bytes as a
 * (compressed) tar through the unpack policy and, when the input starts with 0x01, the rest as
 * the text parsers of cas.h (digest, Content-Range header, mirror URL and instance) and the
 * entry-path checks on their own.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetcher/cas.h"
#include "fetcher/unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct unpack_limits l;
	struct cd_error err = { 0 };

	if (size > 0 && data[0] == 0x01) {
		char *s = malloc(size), *url = NULL, *norm = NULL, hex[CAS_HEX_LEN + 1];
		const char *why, *sep;
		uint64_t a, b, t;

		if (!s)
			return 0;
		memcpy(s, data + 1, size - 1);
		s[size - 1] = '\0';
		(void)cas_digest_parse(s, hex);
		(void)cas_parse_content_range(s, &a, &b, &t);
		/* "base|instance" splits into a mirror and an instance name. */
		sep = strchr(s, '|');
		if (sep) {
			s[sep - s] = '\0';
			if (cas_blob_url(
				    s, sep + 1,
				    "0000000000000000000000000000000000000000000000000000000000000000",
				    &url) == 0)
				free(url);
		}
		if (unpack_normalize_path(s, 4096, &norm, &why) == 0) {
			(void)unpack_check_symlink(norm, sep ? sep + 1 : ".", 4096, &why);
			free(norm);
		}
		free(s);
		return 0;
	}
	unpack_limits_init(&l);
	/* Small caps keep each run fast and exercise the limit paths. */
	l.max_entries = 256;
	l.max_total_bytes = 1 << 20;
	l.max_path = 256;
	(void)unpack_scan_memory(data, size, &l, &err);
	return 0;
}
