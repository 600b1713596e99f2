/* SPDX-License-Identifier: Apache-2.0 */
#include "fetcher/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/macro.h"
#include "lib/str.h"

void unpack_limits_init(struct unpack_limits *l)
{
	l->max_entries = 1000000;
	l->max_total_bytes = (uint64_t)16 << 30;
	l->max_path = 4096;
}

int unpack_normalize_path(const char *path, size_t max_path, char **ret, const char **why)
{
	_cleanup_free_ char *out = NULL;
	const char *p = path;
	size_t n = 0;

	if (!path || !*path) {
		*why = "empty path";
		return -EPERM;
	}
	if (strlen(path) > max_path) {
		*why = "path too long";
		return -EPERM;
	}
	if (*path == '/') {
		*why = "absolute path";
		return -EPERM;
	}
	out = malloc(strlen(path) + 1);
	if (!out)
		return -ENOMEM;
	while (*p) {
		size_t len = strcspn(p, "/");

		if (len == 2 && p[0] == '.' && p[1] == '.') {
			*why = "path contains \"..\"";
			return -EPERM;
		}
		if (len > 0 && !(len == 1 && p[0] == '.')) {
			if (n > 0)
				out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
		while (*p == '/')
			p++;
	}
	out[n] = '\0';
	*ret = TAKE_PTR(out);
	return 0;
}

int unpack_check_symlink(const char *entry, const char *target, size_t max_path, const char **why)
{
	const char *p;
	long depth = 0;

	if (!target || !*target) {
		*why = "symlink with empty target";
		return -EPERM;
	}
	if (strlen(target) > max_path) {
		*why = "symlink target too long";
		return -EPERM;
	}
	if (*target == '/') {
		*why = "symlink to an absolute path";
		return -EPERM;
	}
	/* The link resolves from its own directory: start at that directory's depth. */
	for (p = entry; *p; p++)
		if (*p == '/')
			depth++;
	for (p = target; *p;) {
		size_t len = strcspn(p, "/");

		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0) {
				*why = "symlink points outside the archive";
				return -EPERM;
			}
		} else if (len > 0 && !(len == 1 && p[0] == '.')) {
			depth++;
		}
		p += len;
		while (*p == '/')
			p++;
	}
	return 0;
}

static bool has_dotdot(const char *s)
{
	while (*s) {
		size_t len = strcspn(s, "/");

		if (len == 2 && s[0] == '.' && s[1] == '.')
			return true;
		s += len;
		while (*s == '/')
			s++;
	}
	return false;
}

struct unpack_ctx {
	const struct unpack_limits *l;
	struct archive *ar;
	struct archive *aw; /* NULL when only scanning */
	const char *dest;
	uint64_t entries;
	uint64_t total;
	char **recheck; /* symlinks whose target has "..": re-resolved by the kernel afterwards */
	size_t n_recheck;
	struct cd_error *err;
};

static const char *entry_name(struct archive_entry *e)
{
	const char *name = archive_entry_pathname(e);

	return name ? name : "(unnamed)";
}

static int refuse(struct unpack_ctx *c, int code, const char *name, const char *why)
{
	return cd_error_set(c->err, code, "archive entry \"%s\" refused: %s", name, why);
}

static int add_bytes(struct unpack_ctx *c, const char *name, uint64_t n)
{
	if (n > c->l->max_total_bytes || c->total > c->l->max_total_bytes - n)
		return cd_error_set(c->err, -EFBIG,
				    "archive entry \"%s\" refused: extracted size exceeds the "
				    "limit of %llu bytes",
				    name, (unsigned long long)c->l->max_total_bytes);
	c->total += n;
	return 0;
}

/* A write failure of libarchive: local resource problems keep their errno (a full disk is not a
 * malicious archive); anything else is the given code. */
static int write_errno(struct archive *aw, int fallback)
{
	int e = archive_errno(aw);

	if (e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == ENOMEM)
		return -e;
	return fallback;
}

static int read_error(struct unpack_ctx *c, const char *name)
{
	return cd_error_set(c->err, -EINVAL, "archive entry \"%s\": %s", name,
			    archive_error_string(c->ar) ?: "malformed archive");
}

/* Copy (or, when scanning, just read) the data of the current entry, counting its bytes. */
static int copy_data(struct unpack_ctx *c, const char *name, bool counted)
{
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int r = archive_read_data_block(c->ar, &buf, &len, &off);

		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return read_error(c, name);
		if (!counted) {
			r = add_bytes(c, name, len);
			if (r < 0)
				return r;
		}
		if (c->aw && archive_write_data_block(c->aw, buf, len, off) < ARCHIVE_WARN)
			return cd_error_set(c->err, write_errno(c->aw, -EIO),
					    "archive entry \"%s\": %s", name,
					    archive_error_string(c->aw) ?: "write failed");
	}
}

static int handle_entry(struct unpack_ctx *c, struct archive_entry *e)
{
	const char *why = NULL, *hardlink, *symlink = NULL;
	/* A copy (truncated for messages only): setting the pathname below frees the entry's
	 * own string. */
	char name[1024];
	_cleanup_free_ char *norm = NULL, *link_norm = NULL, *full = NULL, *full_link = NULL;
	mode_t type = archive_entry_filetype(e);
	bool counted = false;
	int r;

	snprintf(name, sizeof(name), "%s", entry_name(e));
	if (++c->entries > c->l->max_entries)
		return cd_error_set(c->err, -EFBIG,
				    "archive entry \"%s\" refused: more than %llu entries", name,
				    (unsigned long long)c->l->max_entries);
	r = unpack_normalize_path(archive_entry_pathname(e), c->l->max_path, &norm, &why);
	if (r == -EPERM)
		return refuse(c, r, name, why);
	if (r < 0)
		return cd_error_set(c->err, r, "out of memory");

	hardlink = archive_entry_hardlink(e);
	if (hardlink) {
		r = unpack_normalize_path(hardlink, c->l->max_path, &link_norm, &why);
		if (r == -EPERM)
			return refuse(c, r, name, "hardlink target escapes the archive");
		if (r < 0)
			return cd_error_set(c->err, r, "out of memory");
		if (!*link_norm)
			return refuse(c, -EPERM, name, "hardlink to the archive root");
	} else {
		switch (type) {
		case AE_IFREG:
		case AE_IFDIR:
			break;
		case AE_IFLNK:
			symlink = archive_entry_symlink(e);
			r = unpack_check_symlink(norm, symlink, c->l->max_path, &why);
			if (r < 0)
				return refuse(c, r, name, why);
			break;
		case AE_IFCHR:
		case AE_IFBLK:
			return refuse(c, -EPERM, name, "device node");
		case AE_IFIFO:
			return refuse(c, -EPERM, name, "fifo");
		case AE_IFSOCK:
			return refuse(c, -EPERM, name, "socket");
		default:
			return refuse(c, -EPERM, name, "unsupported entry type");
		}
	}
	if (!*norm) {
		if (type == AE_IFDIR && !hardlink)
			return 0; /* "./": the root exists already */
		return refuse(c, -EPERM, name, "entry replaces the archive root");
	}
	if (type == AE_IFREG && !hardlink && archive_entry_size_is_set(e)) {
		r = add_bytes(c, name, (uint64_t)archive_entry_size(e));
		if (r < 0)
			return r;
		counted = true;
	}
	if (!c->aw)
		return copy_data(c, name, counted);

	if (asprintf(&full, "%s/%s", c->dest, norm) < 0)
		return cd_error_set(c->err, -ENOMEM, "out of memory");
	archive_entry_set_pathname(e, full);
	if (hardlink) {
		if (asprintf(&full_link, "%s/%s", c->dest, link_norm) < 0)
			return cd_error_set(c->err, -ENOMEM, "out of memory");
		archive_entry_set_hardlink(e, full_link);
	}
	/* No setuid/setgid/sticky, nothing writable by group or others; directories stay
	 * traversable by their owner so extraction of their children cannot fail. */
	archive_entry_set_perm(e, (archive_entry_perm(e) & 0755) | (type == AE_IFDIR ? 0700 : 0));
	if (archive_write_header(c->aw, e) < ARCHIVE_WARN)
		return cd_error_set(c->err, write_errno(c->aw, -EPERM),
				    "archive entry \"%s\" refused: %s", name,
				    archive_error_string(c->aw) ?: "cannot create");
	if (symlink && has_dotdot(symlink)) {
		char **n = reallocarray(c->recheck, c->n_recheck + 1, sizeof(char *));

		if (!n)
			return cd_error_set(c->err, -ENOMEM, "out of memory");
		c->recheck = n;
		c->recheck[c->n_recheck] = TAKE_PTR(norm);
		c->n_recheck++;
	}
	r = copy_data(c, name, counted);
	if (r < 0)
		return r;
	if (archive_write_finish_entry(c->aw) < ARCHIVE_WARN)
		return cd_error_set(c->err, write_errno(c->aw, -EIO), "archive entry \"%s\": %s",
				    name, archive_error_string(c->aw) ?: "cannot finish");
	return 0;
}

static int run(struct unpack_ctx *c)
{
	struct archive_entry *e;
	int r;

	for (;;) {
		r = archive_read_next_header(c->ar, &e);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return cd_error_set(c->err, -EINVAL,
					    "malformed archive after %llu entries: %s",
					    (unsigned long long)c->entries,
					    archive_error_string(c->ar) ?: "unknown error");
		r = handle_entry(c, e);
		if (r < 0)
			return r;
	}
}

static struct archive *reader_new(void)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_none(a);
	archive_read_support_format_tar(a);
	return a;
}

static void archive_read_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}

static void archive_write_freep(struct archive **a)
{
	if (*a)
		archive_write_free(*a);
}

static void ctx_release(struct unpack_ctx *c)
{
	for (size_t i = 0; i < c->n_recheck; i++)
		free(c->recheck[i]);
	free(c->recheck);
}

int unpack_scan_memory(const void *data, size_t size, const struct unpack_limits *l,
		       struct cd_error *err)
{
	_cleanup_(archive_read_freep) struct archive *ar = reader_new();
	struct unpack_ctx c = { .l = l, .err = err };
	int r;

	if (!ar)
		return cd_error_set(err, -ENOMEM, "out of memory");
	if (archive_read_open_memory(ar, data, size) != ARCHIVE_OK)
		return cd_error_set(err, -EINVAL, "not an archive: %s",
				    archive_error_string(ar) ?: "unknown format");
	c.ar = ar;
	r = run(&c);
	ctx_release(&c);
	return r;
}

/* Let the kernel resolve each symlink whose target climbs with "..": chains of in-tree links
 * ("a -> ." then "b -> a/..") can escape although every link looks confined on its own. */
static int recheck_symlinks(struct unpack_ctx *c)
{
	_cleanup_close_ int dfd = open(c->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return cd_error_set(c->err, -errno, "cannot open %s: %m", c->dest);
	for (size_t i = 0; i < c->n_recheck; i++) {
		struct open_how how = {
			.flags = O_PATH | O_CLOEXEC,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
		};
		long fd = syscall(SYS_openat2, dfd, c->recheck[i], &how, sizeof(how));

		if (fd >= 0) {
			close((int)fd);
			continue;
		}
		if (errno == EXDEV)
			return cd_error_set(c->err, -EPERM,
					    "archive entry \"%s\" refused: symlink points outside "
					    "the archive",
					    c->recheck[i]);
		/* Dangling or looping links stay inside the tree: harmless. */
	}
	return 0;
}

int unpack_archive_fd(int fd, const char *dest, const struct unpack_limits *l, uint64_t *ret_total,
		      struct cd_error *err)
{
	_cleanup_(archive_read_freep) struct archive *ar = reader_new();
	_cleanup_(archive_write_freep) struct archive *aw = archive_write_disk_new();
	struct unpack_ctx c = { .l = l, .dest = dest, .err = err };
	int r;

	if (!ar || !aw)
		return cd_error_set(err, -ENOMEM, "out of memory");
	if (!dest || dest[0] != '/')
		return cd_error_set(err, -EINVAL, "destination must be an absolute path");
	/* No owner, ACL, xattr (file capabilities!) or fflags restore: the tree belongs to us. */
	archive_write_disk_set_options(aw, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
						   ARCHIVE_EXTRACT_SECURE_SYMLINKS |
						   ARCHIVE_EXTRACT_SECURE_NODOTDOT);
	if (archive_read_open_fd(ar, fd, 1 << 20) != ARCHIVE_OK)
		return cd_error_set(err, -EINVAL, "not an archive: %s",
				    archive_error_string(ar) ?: "unknown format");
	c.ar = ar;
	c.aw = aw;
	r = run(&c);
	if (r >= 0 && archive_write_close(aw) < ARCHIVE_WARN)
		r = cd_error_set(err, write_errno(aw, -EIO), "finishing extraction: %s",
				 archive_error_string(aw) ?: "unknown error");
	if (r >= 0)
		r = recheck_symlinks(&c);
	ctx_release(&c);
	if (r >= 0 && ret_total)
		*ret_total = c.total;
	return r;
}
