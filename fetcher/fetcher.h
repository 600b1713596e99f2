/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fetcher.h — content-addressed artifact cache: fetch a blob by sha256 from bazel-remote
 * compatible mirrors (GET <base>[/<instance>]/cas/<hex>), verify it while streaming, publish it
 * atomically, share one download between concurrent callers (threads and processes), keep the
 * cache under a byte budget with LRU eviction that never touches pinned blobs, unpack archives
 * securely and hand out a read-only directory for a task's /app.
 * Owns the state directory layout:
 *   <dir>/sha256/<hex>          verified blobs, mode 0444 (0555 once materialised as a program)
 *   <dir>/tmp/                  <hex>.<rand>.part downloads, <hex>.lock single-flight locks
 *   <dir>/unpacked/<hex>/       extracted trees (or one hardlinked program), <hex>.size sidecar
 *   <dir>/pins/<hex>            persisted pin refcount (decimal), absent when unpinned
 *   <dir>/lock                  flock(2) guarding pins and eviction
 * Does not own mounting (the sandbox bind-mounts the directory read-only at /app), logging, or
 * which digest a task needs. Every function is thread-safe on one struct fetcher; several
 * processes may share one state directory. Errors are -errno plus a message in err (may be NULL).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetcher/unpack.h"
#include "lib/error.h"

struct fetcher;

/* Called from the downloading thread; total is 0 while unknown. */
typedef void (*fetcher_progress_fn)(void *userdata, uint64_t done, uint64_t total);

struct fetch_options {
	const char *instance;	     /* bazel-remote instance name, NULL or "" for none */
	uint64_t max_size;	     /* refuse blobs larger than this (-EFBIG) */
	unsigned connect_timeout_ms; /* TCP (+TLS) connect */
	unsigned low_speed_limit;    /* bytes/s; below it for low_speed_time_s → timeout */
	unsigned low_speed_time_s;   /* 0 disables the stall timeout */
	unsigned attempts;	     /* tries per mirror for transient errors (>= 1) */
	unsigned backoff_base_ms;    /* first retry delay, doubled per retry, with jitter */
	unsigned backoff_max_ms;     /* cap of one delay */
	unsigned max_resumes;	     /* Range resumes after dropped connections, per fetch */
	const char *ca_file;	     /* PEM CA bundle for https mirrors; NULL = the system store */
	/* "Authorization: Bearer <token>" for deployd's /cas; NULL = none. Sent only to the
	 * mirror's own host, never across a redirect to another. */
	const char *bearer_token;
	fetcher_progress_fn progress; /* may be NULL */
	void *userdata;
};
/* Defaults: no instance, 64 GiB cap, 10 s connect, stall = below 1 KiB/s for 30 s, 3 attempts,
 * 200 ms..5 s backoff, 32 resumes, no progress. */
void fetch_options_init(struct fetch_options *o);

/*
 * Open (creating as needed, mode 0700) the cache at dir. budget_bytes caps blobs plus unpacked
 * trees (0 = unlimited); it is enforced after every fetch and by fetcher_gc(). dir may be a
 * relative path or contain symlinks: it is resolved once here. *ret is freed with fetcher_free().
 */
int fetcher_new(const char *dir, uint64_t budget_bytes, struct fetcher **ret, struct cd_error *err);
void fetcher_free(struct fetcher *f);
static inline void fetcher_freep(struct fetcher **f)
{
	if (*f)
		fetcher_free(*f);
}
#define _cleanup_fetcher_ _cleanup_(fetcher_freep)

/* The resolved state directory (owned by f). */
const char *fetcher_dir(const struct fetcher *f);

/*
 * Make the blob with digest ("sha256:<hex>" or "<hex>") available locally and return its path
 * in *ret_path (malloc()ed). A cached blob is returned at once (and marked recently used).
 * Otherwise mirrors (n_mirrors base URLs, e.g. "http://10.0.0.1:8080") are tried in order:
 * 404 moves on, transient failures are retried with backoff, a dropped connection resumes with
 * Range when the server answers 206 (and restarts when it answers 200); bytes a failing mirror
 * delivered, or a crashed download left in tmp/, are continued rather than fetched again.
 * Concurrent calls for one digest, in any thread or process using the same dir, perform one
 * download; the others wait and get the same result or the same error.
 * Errors: -EINVAL bad digest/URL/options, -ENOENT no mirror has it, -EBADMSG content did not
 * match (message names expected and actual digests; nothing is published), -EFBIG over max_size,
 * -ETIMEDOUT stalled or could not connect, -ENOSPC/-EDQUOT/-EIO local disk (no partial file
 * remains), -ECONNREFUSED/-ECONNRESET/-EPROTO other network failures.
 */
int fetcher_fetch(struct fetcher *f, const char *digest, const char *const *mirrors,
		  size_t n_mirrors, const struct fetch_options *opts, char **ret_path,
		  struct cd_error *err);

/*
 * Ask one mirror whether it has the blob: HEAD <mirror>[/<instance>]/cas/<hex>. Returns 0 and the
 * size in *ret_size (UINT64_MAX if the server did not say), -ENOENT when it does not have it, or
 * the network errors of fetcher_fetch(). No retries, nothing is cached.
 */
int fetcher_probe(struct fetcher *f, const char *digest, const char *mirror,
		  const struct fetch_options *opts, uint64_t *ret_size, struct cd_error *err);

/* Path of the cached blob in *ret_path (malloc()ed), or -ENOENT; marks it recently used. */
int fetcher_lookup(struct fetcher *f, const char *digest, char **ret_path);

/*
 * Pin/unpin a digest (it need not be cached yet: pin before fetching so eviction cannot race).
 * The refcount is stored on disk and survives restarts; taskd pins while a task uses a blob and
 * unpins when the task is gone. fetcher_unpin() of an unpinned digest is -ENOENT.
 * fetcher_pin_count() returns the count (0 when unpinned) in *ret.
 */
int fetcher_pin(struct fetcher *f, const char *digest, struct cd_error *err);
int fetcher_unpin(struct fetcher *f, const char *digest, struct cd_error *err);
int fetcher_pin_count(struct fetcher *f, const char *digest, unsigned *ret);

struct fetcher_pin {
	char digest[7 + 64 + 1]; /* "sha256:<hex>" */
	unsigned count;
};
/*
 * Every pinned digest, sorted by digest, in *ret (malloc()ed array, caller frees; NULL when
 * *ret_n is 0). For taskd's reconciliation after a restart: pins whose tasks are gone can be
 * released with fetcher_unpin().
 */
int fetcher_pin_list(struct fetcher *f, struct fetcher_pin **ret, size_t *ret_n);

struct fetcher_gc_stats {
	unsigned tmp_removed;	/* leftover .part files, lock files and unpack temp dirs */
	unsigned evicted;	/* digests evicted to meet the budget */
	uint64_t bytes_evicted; /* blob + unpacked bytes of those */
	uint64_t bytes_in_use;	/* blob + unpacked bytes left in the cache */
};
/*
 * Remove leftovers of crashed fetches and unpacks (only those no live process holds), then
 * evict least recently used unpinned digests until the cache fits the budget. Digests being
 * fetched or unpacked right now are skipped. ret (may be NULL) receives what was done.
 */
int fetcher_gc(struct fetcher *f, struct fetcher_gc_stats *ret, struct cd_error *err);

enum fetcher_kind {
	FETCHER_KIND_AUTO, /* sniff: tar/gzip/zstd magic → archive, anything else → program */
	FETCHER_KIND_ARCHIVE,	 /* tar, tar.gz or tar.zst */
	FETCHER_KIND_EXECUTABLE, /* one file, materialised as <dir>/<name> with mode 0555 */
};

/*
 * Classify the first bytes of a blob (at least 262 for tar detection, fewer is fine for the
 * compressed forms): returns FETCHER_KIND_ARCHIVE or FETCHER_KIND_EXECUTABLE. Pure.
 */
enum fetcher_kind fetcher_sniff(const void *head, size_t len);

/*
 * Turn a cached blob into a directory for a task and return its path in *ret_dir
 * (<dir>/unpacked/<hex>, malloc()ed). Archives are extracted once with unpack.h's policy (limits
 * may be NULL for the defaults) into a temp dir, synced and renamed into place; a program blob
 * becomes a directory holding a hardlink named exe_name (a plain file name; NULL means
 * "artifact"; ignored for archives, also when AUTO finds one), mode 0555. Later calls for a
 * ready directory cost a stat(2): O(1), no copy. The caller bind-mounts the directory read-only
 * (MS_BIND then MS_REMOUNT|MS_RDONLY|MS_NOSUID|MS_NODEV); nothing under it is writable by group
 * or others. -ENOENT when the blob is not
 * cached; -EPERM/-EFBIG/-EINVAL for a refused archive, the message naming the entry.
 */
int fetcher_materialize(struct fetcher *f, const char *digest, enum fetcher_kind kind,
			const char *exe_name, const struct unpack_limits *limits, char **ret_dir,
			struct cd_error *err);
