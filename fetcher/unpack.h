/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unpack.h — secure extraction of an artifact archive (tar, tar.gz, tar.zst) with libarchive.
 * Owns the entry policy: relative paths only, no "..", symlinks must stay inside the tree,
 * hardlinks only to other entries, no device nodes/fifos/sockets, setuid/setgid/sticky and
 * group/other write bits stripped, caps on entry count, path length and total size. Does not
 * own where the tree lives or its publication (fetcher.c extracts into a temp dir and renames).
 * Every refusal names the offending entry in the cd_error message.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

struct archive;

struct unpack_limits {
	uint64_t max_entries;	  /* entries in the archive, directories included */
	uint64_t max_total_bytes; /* sum of regular file sizes once extracted */
	size_t max_path;	  /* bytes of one entry's path or link target */
};
/* Defaults: 1,000,000 entries, 16 GiB, 4096 bytes. */
void unpack_limits_init(struct unpack_limits *l);

/*
 * Normalise an archive entry path: drops "." components and duplicate or trailing slashes.
 * Refuses (-EPERM, static reason in *why) empty and absolute paths, ".." components and paths
 * longer than max_path. On success *ret (malloc()ed, caller frees) is "" for the archive root
 * ("./"). -ENOMEM when out of memory.
 */
int unpack_normalize_path(const char *path, size_t max_path, char **ret, const char **why);

/*
 * Check a symlink at normalised entry path `entry` pointing to `target`: the target must be
 * relative and, resolved lexically from the entry's directory, must never leave the tree.
 * Returns 0, or -EPERM with the reason in why.
 */
int unpack_check_symlink(const char *entry, const char *target, size_t max_path, const char **why);

/*
 * Read every entry of the archive in memory and apply the policy without writing anything
 * (used by the fuzzer and by callers that want to vet an archive first). Returns 0, -EPERM for
 * a refused entry, -EFBIG for a cap, -EINVAL for a malformed archive (message in err).
 */
int unpack_scan_memory(const void *data, size_t size, const struct unpack_limits *l,
		       struct cd_error *err);

/*
 * Extract the archive read from fd (positioned at 0, not closed) into the existing, empty
 * directory dest, which must be an absolute path without symlinks in it. On failure dest may
 * hold a partial tree: the caller removes it. *ret_total (may be NULL) receives the bytes of
 * regular files written. Errors as unpack_scan_memory(), plus -errno from the file system.
 */
int unpack_archive_fd(int fd, const char *dest, const struct unpack_limits *l, uint64_t *ret_total,
		      struct cd_error *err);
