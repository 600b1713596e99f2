/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes as a (compressed) tar through the unpack policy. */
#include <stddef.h>
#include <stdint.h>

#include "fetcher/unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct unpack_limits l;
	struct cd_error err = { 0 };

	unpack_limits_init(&l);
	/* Small caps keep each run fast and exercise the limit paths. */
	l.max_entries = 256;
	l.max_total_bytes = 1 << 20;
	l.max_path = 256;
	(void)unpack_scan_memory(data, size, &l, &err);
	return 0;
}
