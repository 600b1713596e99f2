/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/id.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "lib/clock.h"

int id_random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
}

void id_random_hex(char *buf, size_t size)
{
	unsigned char raw[64];
	size_t digits;

	if (size == 0)
		return;
	digits = size - 1;
	while (digits > 0) {
		size_t chunk = digits > 2 * sizeof(raw) ? 2 * sizeof(raw) : digits;
		char tmp[2 * sizeof(raw)];

		if (id_random_bytes(raw, (chunk + 1) / 2) < 0)
			abort();
		to_hex(raw, (chunk + 1) / 2, tmp);
		for (size_t i = 0; i < chunk; i++)
			buf[size - 1 - digits + i] = tmp[i];
		digits -= chunk;
	}
	buf[size - 1] = '\0';
}

void id_new(char buf[static ID_LEN + 1])
{
	uint64_t ms = clock_real_usec() / 1000;

	snprintf(buf, 13, "%012llx", (unsigned long long)(ms & 0xffffffffffffULL));
	id_random_hex(buf + 12, ID_LEN - 12 + 1);
}

int id_new_token(char buf[static TOKEN_HEX_LEN + 1])
{
	unsigned char raw[TOKEN_HEX_LEN / 2];
	int r = id_random_bytes(raw, sizeof(raw));

	if (r < 0)
		return r;
	to_hex(raw, sizeof(raw), buf);
	buf[TOKEN_HEX_LEN] = '\0';
	return 0;
}
