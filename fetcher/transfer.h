/* SPDX-License-Identifier: Apache-2.0 */
/*
 * transfer.h — (internal to fetcher/) one blob download from one mirror URL with libcurl into
 * an fd while feeding a SHA-256 context: retries with backoff, Range resume after a dropped
 * connection, restart when the server ignores Range, size cap, stall and connect timeouts.
 * Owns the mapping of CURLcode and HTTP status to -errno. Does not own the file, the digest
 * comparison or publication (fetcher.c).
 */
#pragma once

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdint.h>

#include "fetcher/fetcher.h"

struct transfer_state {
	int fd;		   /* output, written with pwrite() at offset */
	EVP_MD_CTX *md;	   /* fed with exactly the bytes at [0, offset) */
	uint64_t offset;   /* bytes written and hashed so far */
	unsigned resumes;  /* Range resumes left for the whole fetch */
	unsigned restarts; /* how often a resume was answered with 200 (statistics, tests) */
	unsigned ranges;   /* how often a 206 was accepted */
};

/* Reset st to an empty file and a fresh hash. Returns 0 or -errno. */
int transfer_reset(struct transfer_state *st);

/*
 * GET url with easy (reused, so its connection is kept alive between calls) until the body is
 * complete; st->offset then holds the size. Returns 0, or -errno with a message naming the URL:
 * -ENOENT (404), -EFBIG, -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EPROTO (unexpected status or
 * Content-Range), -EACCES (401/403), local write errors (-ENOSPC, -EIO, ...).
 */
int transfer_get(CURL *easy, const char *url, struct transfer_state *st,
		 const struct fetch_options *o, struct cd_error *err);
