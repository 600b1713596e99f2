/* SPDX-License-Identifier: Apache-2.0 */
/*
 * logfile.h — a task's console log: stdout and stderr lines merged into one file with
 * size-based rotation (name, name.1 .. name.<keep>) and a cap on line length (longer lines are
 * split, so one runaway line cannot hold the buffer). Lines of the two streams never interleave
 * mid-line: partial lines are held per stream until their newline. Also the reader side: the
 * last N lines across the rotated files, for `taskctl logs --tail N`.
 * Owns its file descriptor and line buffers. The writer is used by one thread (the shim).
 * Never blocks the producer for long: a write error (disk full) drops the line and counts it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/str.h"

#define LOGFILE_STREAMS 2 /* 0 = stdout, 1 = stderr */

struct logfile;

/*
 * Open (append, creating 0640) dirfd/name. max_bytes: rotate before a write would pass it
 * (>= 1); keep: rotated files kept (0 = truncate instead); line_max: longest line written
 * (>= 2, newline included). dirfd is duplicated.
 */
int logfile_open(int dirfd, const char *name, uint64_t max_bytes, unsigned keep, unsigned line_max,
		 struct logfile **ret);
/* Flush partial lines (as if they ended) and close. NULL is fine. */
void logfile_close(struct logfile *lf);

/* Append bytes read from stream (0/1). Complete lines are written at once. Returns 0 or -errno
 * of a rotation failure (the bytes are still accounted: logging never stops the task). */
int logfile_feed(struct logfile *lf, unsigned stream, const char *buf, size_t len);
/* Write a stream's pending partial line with a newline (at EOF of that stream). */
int logfile_flush(struct logfile *lf, unsigned stream);
/* Lines dropped because writing failed. */
uint64_t logfile_dropped(const struct logfile *lf);
/* Bytes in the current file. */
uint64_t logfile_size(const struct logfile *lf);

/*
 * Append the last n_lines lines of dirfd/name (looking into name.1, name.2, ... when the current
 * file holds fewer) to out, at most max_bytes (older lines are dropped first). *ret_offset
 * (may be NULL) receives the size of the current file read up to, and *ret_ino its inode, so a
 * follower continues there and notices a rotation. n_lines == 0 returns nothing but the offset.
 * A missing file is an empty log.
 */
int logfile_tail(int dirfd, const char *name, size_t n_lines, size_t max_bytes, struct strbuf *out,
		 uint64_t *ret_offset, ino_t *ret_ino);
