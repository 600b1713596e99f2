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
#include <stdint.h>

#include "fetcher/fetcher.h"

struct transfer_pipeline;

/*
 * The download file and its hash. Bytes accepted by the callbacks are copied into 1 MiB buffers
 * that a helper thread hashes and pwrite()s in order, so receiving overlaps hashing and writing
 * (what `curl | openssl dgst` gets from being two processes).
 */
struct transfer_state {
	int fd;		   /* output, written with pwrite() at the right offset */
	uint64_t offset;   /* bytes accepted so far (hashed and written once drained) */
	unsigned resumes;  /* Range resumes left for the whole fetch */
	unsigned restarts; /* how often a resume was answered with 200 (statistics, tests) */
	unsigned ranges;   /* how often a 206 was accepted */
	struct transfer_pipeline *pl;
};

/* Start the helper thread for fd. Returns 0, -ENOMEM or -errno of pthread_create. */
int transfer_state_init(struct transfer_state *st, int fd, unsigned resumes);
/* Stop the thread and free everything (st->fd is not closed). Safe after a failed init. */
void transfer_state_release(struct transfer_state *st);
/* Wait until every accepted byte is hashed and written; finalise the SHA-256 into md[32]. */
int transfer_finish(struct transfer_state *st, unsigned char md[static 32]);

/* Reset st to an empty file and a fresh hash (drains first). Returns 0 or -errno. */
int transfer_reset(struct transfer_state *st);
/* Take over the first size bytes already in st->fd (a crashed download): hash them and continue
 * from there. Returns 0 or -errno. */
int transfer_adopt(struct transfer_state *st, uint64_t size);
/* The SHA-256 of the bytes accepted so far, without ending the hash. Returns 0 or -errno. */
int transfer_peek(struct transfer_state *st, unsigned char md[static 32]);

/*
 * GET url with easy (reused, so its connection is kept alive between calls) until the body is
 * complete; st->offset then holds the size. Returns 0, or -errno with a message naming the URL:
 * -ENOENT (404), -EFBIG, -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EPROTO (unexpected status or
 * Content-Range), -EACCES (401/403), local write errors (-ENOSPC, -EIO, ...).
 */
int transfer_get(CURL *easy, const char *url, struct transfer_state *st,
		 const struct fetch_options *o, struct cd_error *err);

/*
 * HEAD url: 0 and the Content-Length in *ret_size (UINT64_MAX when the server sent none) when the
 * blob exists, errors as transfer_get() (-ENOENT for 404). No retries.
 */
int transfer_head(CURL *easy, const char *url, const struct fetch_options *o, uint64_t *ret_size,
		  struct cd_error *err);
