/* SPDX-License-Identifier: Apache-2.0 */
#include "fetcher/cas.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/str.h"

bool cas_hex_valid(const char *s)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; i < CAS_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[CAS_HEX_LEN] == '\0';
}

int cas_digest_parse(const char *s, char hex[static CAS_HEX_LEN + 1])
{
	char tmp[CAS_HEX_LEN + 1];
	const char *p;
	size_t i;

	if (!s)
		return -EINVAL;
	p = startswith(s, "sha256:");
	if (!p)
		p = s;
	if (strlen(p) != CAS_HEX_LEN)
		return -EINVAL;
	for (i = 0; i < CAS_HEX_LEN; i++) {
		int v = unhexchar(p[i]);

		if (v < 0)
			return -EINVAL;
		tmp[i] = "0123456789abcdef"[v];
	}
	tmp[CAS_HEX_LEN] = '\0';
	memcpy(hex, tmp, sizeof(tmp));
	return 0;
}

static bool instance_valid(const char *s)
{
	if (strstr(s, ".."))
		return false;
	for (; *s; s++)
		if (*s == '?' || *s == '#' || *s == '%' || (unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

int cas_blob_url(const char *base, const char *instance, const char *hex, char **ret)
{
	size_t blen, ilen = 0;
	const char *inst = instance ? instance : "";
	char *url;
	int n;

	if (!base || !hex || !cas_hex_valid(hex))
		return -EINVAL;
	if (!startswith(base, "http://") && !startswith(base, "https://"))
		return -EINVAL;
	if (strpbrk(base, " \t\r\n?#"))
		return -EINVAL;
	blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	if (blen <= strlen("https://") - (startswith(base, "http://") ? 1 : 0))
		return -EINVAL;
	while (*inst == '/')
		inst++;
	ilen = strlen(inst);
	while (ilen > 0 && inst[ilen - 1] == '/')
		ilen--;
	if (!instance_valid(inst))
		return -EINVAL;
	if (ilen > 0)
		n = asprintf(&url, "%.*s/%.*s/cas/%s", (int)blen, base, (int)ilen, inst, hex);
	else
		n = asprintf(&url, "%.*s/cas/%s", (int)blen, base, hex);
	if (n < 0)
		return -ENOMEM;
	*ret = url;
	return 0;
}

/* Parse decimal digits at *p (at least one, no sign) and advance; -EINVAL / -ERANGE. */
static int take_u64(const char **p, uint64_t *ret)
{
	uint64_t v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*p = s;
	*ret = v;
	return 0;
}

int cas_parse_content_range(const char *value, uint64_t *ret_first, uint64_t *ret_last,
			    uint64_t *ret_total)
{
	uint64_t first, last, total;
	const char *p;

	if (!value)
		return -EINVAL;
	while (*value == ' ' || *value == '\t')
		value++;
	p = startswith(value, "bytes ");
	if (!p)
		return -EINVAL;
	while (*p == ' ')
		p++;
	if (take_u64(&p, &first) < 0 || *p++ != '-' || take_u64(&p, &last) < 0 || *p++ != '/')
		return -EINVAL;
	if (*p == '*') {
		total = UINT64_MAX;
		p++;
	} else if (take_u64(&p, &total) < 0) {
		return -EINVAL;
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p != '\0' || last < first || (total != UINT64_MAX && last >= total))
		return -EINVAL;
	*ret_first = first;
	*ret_last = last;
	*ret_total = total;
	return 0;
}

uint64_t cas_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd)
{
	uint64_t d = base_ms;
	unsigned i;

	for (i = 0; i < attempt && i < 63 && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	/* d/2 + rnd/2^32 * d/2, computed without overflow for any d below 2^32 ms. */
	return d / 2 + (uint64_t)(((d - d / 2) * (uint64_t)rnd) >> 32);
}
