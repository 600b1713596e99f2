/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cas.h — deployd's content-addressed blob store on local disk: <dir>/sha256/<hex>, written
 * through <dir>/tmp with streaming SHA-256 verification, fsync and an atomic rename, under a
 * byte budget. Owns the directory layout and the budget accounting; does not own HTTP (the
 * artifacts role in artifacts.c) nor the target@commit index (store.h).
 * Thread-safe: writers and readers may run concurrently; two writers of one digest both verify
 * and the second rename is a harmless replace of identical bytes.
 * Eviction (cas_evict) removes least recently used blobs the caller does not pin; recency is
 * the file's atime, set explicitly when a blob is read (at most hourly per blob, so reads cost
 * no metadata write in the common case and the order survives a restart without an index).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

struct cas;
struct cas_writer;

/* Create dir/{sha256,tmp} if needed, remove stale tmp files, sum the stored bytes. */
int cas_open(const char *dir, uint64_t max_bytes, uint64_t max_blob_bytes, struct cas **ret,
	     struct cd_error *err);
void cas_free(struct cas *c);

/*
 * Start writing blob hex (64 lowercase hex) of exactly size bytes. -EINVAL bad hex, -EFBIG size
 * above the per-blob cap (413), -ENOSPC the budget cannot hold it (507). The bytes are reserved
 * against the budget until commit/abort.
 */
int cas_writer_new(struct cas *c, const char *hex, uint64_t size, struct cas_writer **ret,
		   struct cd_error *err);
/* Append; -EFBIG when more than size bytes arrive, -errno on I/O errors (-ENOSPC disk full). */
int cas_writer_write(struct cas_writer *w, const void *buf, size_t len, struct cd_error *err);
/*
 * Verify length and digest, fsync, publish atomically, free w. -EBADMSG on a mismatch (nothing
 * is stored; err names expected and actual digest). *ret_created false when the blob existed.
 */
int cas_writer_commit(struct cas_writer *w, bool *ret_created, struct cd_error *err);
/* Drop an unfinished write (temp file removed, reservation released), free w. NULL is fine. */
void cas_writer_abort(struct cas_writer *w);

/* Open a stored blob read-only (O_CLOEXEC); -ENOENT when absent, -EINVAL bad hex. Marks the
 * blob used (atime) when its mark is older than CAS_TOUCH_INTERVAL_S. */
#define CAS_TOUCH_INTERVAL_S 3600
int cas_open_blob(struct cas *c, const char *hex, int *ret_fd, uint64_t *ret_size);

struct cas_usage {
	uint64_t bytes, blobs, max_bytes, reserved;
	uint64_t evicted_blobs, evicted_bytes; /* since open */
};

/*
 * Make room for need more bytes: remove unpinned blobs, least recently used (later of atime and
 * mtime) first, until need bytes plus a tenth of the budget are free (so eviction runs in
 * batches, not on every PUT). pinned(hex, ctx) true keeps a blob. One eviction at a time; a
 * blob read while it is removed stays readable through its open fd. *ret_freed (may be NULL)
 * gets the bytes removed. Returns 0 when need bytes are now free, -ENOSPC when the unpinned
 * blobs cannot make room (everything that could go is gone), -errno on I/O errors.
 */
typedef bool (*cas_pinned_fn)(const char *hex, void *ctx);
int cas_evict(struct cas *c, uint64_t need, cas_pinned_fn pinned, void *ctx, uint64_t *ret_freed,
	      struct cd_error *err);
void cas_usage(struct cas *c, struct cas_usage *ret);

/* 64 lowercase hex digits. */
bool cas_hex_valid(const char *hex);
