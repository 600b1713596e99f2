/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs.h — file-system helpers: crash-safe writes, bounded reads, directory creation and removal.
 * Owns the durability recipe (tmp + fsync + rename + fsync(dir)); callers own their fds.
 * All fds opened here are O_CLOEXEC. Errors are -errno.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/*
 * Atomically replace dirfd/name with data: write "<name>.tmp.<random>" (mode), fsync it, rename
 * over name, fsync dirfd. On any failure the temporary is removed and name is untouched.
 * name must be a plain file name (no '/'). dirfd may be AT_FDCWD.
 */
int fs_write_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
/* Same, for a path: opens the parent directory. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * Read a whole file, at most max bytes (-EFBIG when larger). *ret is NUL-terminated and owned by
 * the caller (free()); *ret_len (may be NULL) excludes the NUL.
 */
int fs_read_file_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len);

/* mkdir -p with mode for every created component; existing directories are fine. */
int fs_mkdir_p(const char *path, mode_t mode);

/* Open a directory O_RDONLY|O_DIRECTORY|O_CLOEXEC relative to dirfd; returns the fd. */
int fs_open_dir_at(int dirfd, const char *path);

/* fsync a directory given by fd. */
int fs_fsync_dir(int dirfd);

/* Remove dirfd/name recursively without following symlinks; -ENOENT is success. */
int fs_rm_rf_at(int dirfd, const char *name);

/* write(2) all of buf, restarting on EINTR and short writes. */
int fs_write_all(int fd, const void *buf, size_t len);
