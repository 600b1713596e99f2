/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cas.h — pure helpers of the content-addressed-storage protocol the fetcher speaks: digest
 * parsing ("sha256:<64 hex>"), bazel-remote compatible blob URLs (<base>[/<instance>]/cas/<hex>),
 * Content-Range parsing for resumed downloads, and the retry backoff schedule.
 * Owns no state and does no I/O; everything here is unit-tested and fuzzable.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAS_HEX_LEN 64

/*
 * Parse "sha256:<64 hex>" or a bare "<64 hex>" into hex[65], lower-cased. Any other algorithm,
 * length or character is -EINVAL. hex is written only on success.
 */
int cas_digest_parse(const char *s, char hex[static CAS_HEX_LEN + 1]);

/* True when s is exactly 64 lowercase hex digits (the form used for file names). */
bool cas_hex_valid(const char *s);

/*
 * Build "<base>[/<instance>]/cas/<hex>" into a malloc()ed string (*ret, caller frees). Trailing
 * slashes of base and slashes around instance are dropped. base must start with http:// or
 * https://; instance (may be NULL or "") must not contain "..", '?', '#' or whitespace.
 * Returns 0, -EINVAL, -ENOMEM.
 */
int cas_blob_url(const char *base, const char *instance, const char *hex, char **ret);

/*
 * Parse a Content-Range header value "bytes <first>-<last>/<complete|*>" (RFC 9110 14.4).
 * *ret_total is UINT64_MAX when the complete length is "*". Returns 0 or -EINVAL.
 */
int cas_parse_content_range(const char *value, uint64_t *ret_first, uint64_t *ret_last,
			    uint64_t *ret_total);

/*
 * Delay before retry number attempt (0 = first retry): exponential base_ms * 2^attempt capped at
 * max_ms, with "equal jitter" — half fixed, half scaled by rnd (a uniform random value in
 * [0, UINT32_MAX]) — so a herd of hosts retrying one mirror spreads out but never retries
 * immediately. Returns milliseconds.
 */
uint64_t cas_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd);
