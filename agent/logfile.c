/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/logfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/macro.h"

struct logfile {
	int dirfd;
	int fd;
	char *name;
	uint64_t max_bytes;
	unsigned keep;
	unsigned line_max;
	uint64_t size;
	uint64_t dropped;
	struct strbuf pending[LOGFILE_STREAMS];
};

static int open_current(struct logfile *lf)
{
	struct stat st;
	int fd = openat(lf->dirfd, lf->name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			0640);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	lf->fd = fd;
	lf->size = (uint64_t)st.st_size;
	return 0;
}

int logfile_open(int dirfd, const char *name, uint64_t max_bytes, unsigned keep, unsigned line_max,
		 struct logfile **ret)
{
	struct logfile *lf;
	int r;

	if (!name || !*name || strchr(name, '/') || max_bytes == 0 || line_max < 2)
		return -EINVAL;
	lf = calloc(1, sizeof(*lf));
	if (!lf)
		return -ENOMEM;
	lf->fd = -EBADF;
	lf->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	lf->name = strdup(name);
	lf->max_bytes = max_bytes;
	lf->keep = keep;
	lf->line_max = line_max;
	if (lf->dirfd < 0 || !lf->name) {
		r = lf->dirfd < 0 ? -errno : -ENOMEM;
		logfile_close(lf);
		return r;
	}
	r = open_current(lf);
	if (r < 0) {
		logfile_close(lf);
		return r;
	}
	*ret = lf;
	return 0;
}

static int rotated_name(char *buf, size_t size, const char *name, unsigned i)
{
	int n = snprintf(buf, size, "%s.%u", name, i);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int rotate(struct logfile *lf)
{
	char from[NAME_MAX + 16], to[NAME_MAX + 16];
	int r = 0;

	lf->fd = safe_close(lf->fd);
	if (lf->keep == 0) {
		if (unlinkat(lf->dirfd, lf->name, 0) < 0 && errno != ENOENT)
			r = -errno;
	} else {
		/* name.(keep) falls off; name.(i) → name.(i+1); name → name.1 */
		for (unsigned i = lf->keep; i >= 1; i--) {
			if (rotated_name(to, sizeof(to), lf->name, i) < 0)
				return -ENAMETOOLONG;
			if (i == 1)
				snprintf(from, sizeof(from), "%s", lf->name);
			else if (rotated_name(from, sizeof(from), lf->name, i - 1) < 0)
				return -ENAMETOOLONG;
			if (renameat(lf->dirfd, from, lf->dirfd, to) < 0 && errno != ENOENT &&
			    r == 0)
				r = -errno;
		}
	}
	{
		int q = open_current(lf);

		return q < 0 ? q : r;
	}
}

/* Write one complete line (already capped), rotating first when it would not fit. */
static int write_line(struct logfile *lf, const char *p, size_t len)
{
	int r = 0;

	if (lf->size > 0 && lf->size + len > lf->max_bytes)
		r = rotate(lf);
	if (lf->fd < 0) {
		lf->dropped++;
		return r < 0 ? r : -EBADF;
	}
	if (fs_write_all(lf->fd, p, len) < 0) {
		lf->dropped++;
		return r;
	}
	lf->size += len;
	return r;
}

int logfile_feed(struct logfile *lf, unsigned stream, const char *buf, size_t len)
{
	struct strbuf *pend;
	size_t room = lf->line_max - 1; /* bytes of text per line, the newline excluded */
	int r = 0, q;

	if (stream >= LOGFILE_STREAMS)
		return -EINVAL;
	pend = &lf->pending[stream];
	while (len > 0) {
		const char *nl = memchr(buf, '\n', len);
		size_t take = nl ? (size_t)(nl - buf) : len;
		size_t have = pend->len;

		if (have + take >= room || nl) {
			/* complete the line: up to room bytes of text, then '\n' */
			size_t part = MIN(take, room - MIN(have, room));

			if (strbuf_add(pend, buf, part) < 0 || strbuf_add(pend, "\n", 1) < 0) {
				lf->dropped++;
				strbuf_reset(pend);
				return -ENOMEM;
			}
			q = write_line(lf, pend->buf, pend->len);
			if (q < 0 && r == 0)
				r = q;
			strbuf_reset(pend);
			/* an over-long line continues as a new line; a newline is consumed */
			if (part < take) {
				buf += part;
				len -= part;
			} else {
				buf += take + (nl ? 1 : 0);
				len -= take + (nl ? 1 : 0);
			}
			continue;
		}
		if (strbuf_add(pend, buf, take) < 0) {
			lf->dropped++;
			return -ENOMEM;
		}
		buf += take;
		len -= take;
	}
	return r;
}

int logfile_flush(struct logfile *lf, unsigned stream)
{
	struct strbuf *pend;
	int r;

	if (stream >= LOGFILE_STREAMS)
		return -EINVAL;
	pend = &lf->pending[stream];
	if (pend->len == 0)
		return 0;
	if (strbuf_add(pend, "\n", 1) < 0) {
		strbuf_reset(pend);
		return -ENOMEM;
	}
	r = write_line(lf, pend->buf, pend->len);
	strbuf_reset(pend);
	return r;
}

void logfile_close(struct logfile *lf)
{
	if (!lf)
		return;
	for (unsigned i = 0; i < LOGFILE_STREAMS; i++) {
		if (lf->fd >= 0)
			logfile_flush(lf, i);
		strbuf_release(&lf->pending[i]);
	}
	safe_close(lf->fd);
	safe_close(lf->dirfd);
	free(lf->name);
	free(lf);
}

uint64_t logfile_dropped(const struct logfile *lf)
{
	return lf->dropped;
}

uint64_t logfile_size(const struct logfile *lf)
{
	return lf->size;
}

/* Read at most max bytes from the end of the file at fd (whole lines only unless the file is
 * shorter). Appends to chunk. */
static int read_tail_bytes(int fd, uint64_t size, size_t max, struct strbuf *chunk)
{
	uint64_t start = size > max ? size - max : 0;
	size_t want = (size_t)(size - start);
	int r = strbuf_grow(chunk, want + 1);

	if (r < 0)
		return r;
	while (want > 0) {
		ssize_t n = pread(fd, chunk->buf + chunk->len, want, (off_t)start);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		chunk->len += (size_t)n;
		start += (uint64_t)n;
		want -= (size_t)n;
	}
	chunk->buf[chunk->len] = '\0';
	return 0;
}

/* Keep the last n lines of text (which ends with '\n' unless empty): returns the offset of the
 * first kept byte and how many lines were found (<= n). */
static size_t last_lines(const char *text, size_t len, size_t n, size_t *ret_found)
{
	size_t found = 0, i = len;

	if (len > 0 && text[len - 1] == '\n')
		i--;
	while (i > 0) {
		if (text[i - 1] == '\n') {
			if (++found == n) {
				*ret_found = found;
				return i;
			}
		}
		i--;
	}
	*ret_found = len > 0 ? found + 1 : 0;
	return 0;
}

int logfile_tail(int dirfd, const char *name, size_t n_lines, size_t max_bytes, struct strbuf *out,
		 uint64_t *ret_offset, ino_t *ret_ino)
{
	_cleanup_strbuf_ struct strbuf acc = STRBUF_INIT;
	uint64_t cur_size = 0;
	ino_t cur_ino = 0;
	size_t need = n_lines;
	int r;

	/* Walk name, name.1, name.2 ... newest first, prepending what each contributes. */
	for (unsigned i = 0; i <= 1000; i++) {
		_cleanup_strbuf_ struct strbuf chunk = STRBUF_INIT;
		_cleanup_close_ int fd = -EBADF;
		char fname[NAME_MAX + 16];
		struct stat st;
		size_t found = 0, off;

		if (i == 0)
			snprintf(fname, sizeof(fname), "%s", name);
		else if (rotated_name(fname, sizeof(fname), name, i) < 0)
			return -ENAMETOOLONG;
		fd = openat(dirfd, fname, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			if (errno == ENOENT)
				break;
			return -errno;
		}
		if (fstat(fd, &st) < 0)
			return -errno;
		if (i == 0) {
			cur_size = (uint64_t)st.st_size;
			cur_ino = st.st_ino;
		}
		if (need == 0 || acc.len >= max_bytes)
			break;
		r = read_tail_bytes(fd, i == 0 ? cur_size : (uint64_t)st.st_size,
				    max_bytes - acc.len, &chunk);
		if (r < 0)
			return r;
		off = last_lines(chunk.buf ? chunk.buf : "", chunk.len, need, &found);
		/* prepend chunk[off..] to acc */
		{
			_cleanup_strbuf_ struct strbuf merged = STRBUF_INIT;

			if (strbuf_add(&merged, chunk.buf ? chunk.buf + off : "", chunk.len - off) <
				    0 ||
			    strbuf_add(&merged, acc.buf ? acc.buf : "", acc.len) < 0)
				return -ENOMEM;
			strbuf_release(&acc);
			acc = merged;
			merged = (struct strbuf)STRBUF_INIT;
		}
		need -= MIN(found, need);
	}
	if (acc.len > 0 && strbuf_add(out, acc.buf, acc.len) < 0)
		return -ENOMEM;
	if (ret_offset)
		*ret_offset = cur_size;
	if (ret_ino)
		*ret_ino = cur_ino;
	return 0;
}
