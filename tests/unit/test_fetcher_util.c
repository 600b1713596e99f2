/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper shared by test_fetcher and test_fetcher_e2e: craft tar archives with libarchive's
 * writer (including entries a sane tar(1) would refuse to create). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "lib/macro.h"

struct tentry {
	const char *path;
	char type;	  /* f file, d dir, l symlink, h hardlink, c char device, p fifo */
	const char *data; /* file contents, or link target */
	unsigned mode;	  /* permission bits (0 → 0644/0755) */
	size_t zeros;	  /* for 'f' without data: this many zero bytes */
};

int tar_build(const struct tentry *e, size_t n, char filter, void **ret, size_t *ret_len);

int tar_build(const struct tentry *e, size_t n, char filter, void **ret, size_t *ret_len)
{
	size_t cap = 32u << 20, used = 0;
	_cleanup_free_ char *buf = malloc(cap);
	struct archive *a = archive_write_new();
	static char zeros[65536];
	int r = 0;

	if (!buf || !a)
		return -ENOMEM;
	archive_write_set_format_pax_restricted(a);
	if (filter == 'g')
		archive_write_add_filter_gzip(a);
	else if (filter == 'z')
		archive_write_add_filter_zstd(a);
	archive_write_set_bytes_in_last_block(a, 1);
	if (archive_write_open_memory(a, buf, cap, &used) != ARCHIVE_OK) {
		archive_write_free(a);
		return -EIO;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		struct archive_entry *ae = archive_entry_new();
		size_t size = e[i].data ? strlen(e[i].data) : e[i].zeros;

		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_mtime(ae, 1700000000, 0);
		switch (e[i].type) {
		case 'd':
			archive_entry_set_filetype(ae, AE_IFDIR);
			archive_entry_set_perm(ae, e[i].mode ?: 0755);
			size = 0;
			break;
		case 'l':
			archive_entry_set_filetype(ae, AE_IFLNK);
			archive_entry_set_perm(ae, 0777);
			archive_entry_set_symlink(ae, e[i].data);
			size = 0;
			break;
		case 'h':
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, 0644);
			archive_entry_set_hardlink(ae, e[i].data);
			size = 0;
			break;
		case 'c':
			archive_entry_set_filetype(ae, AE_IFCHR);
			archive_entry_set_perm(ae, 0666);
			archive_entry_set_rdev(ae, makedev(1, 3));
			size = 0;
			break;
		case 'p':
			archive_entry_set_filetype(ae, AE_IFIFO);
			archive_entry_set_perm(ae, 0644);
			size = 0;
			break;
		default:
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, e[i].mode ?: 0644);
			break;
		}
		archive_entry_set_size(ae, (la_int64_t)size);
		if (archive_write_header(a, ae) != ARCHIVE_OK)
			r = -EIO;
		if (r == 0 && size > 0 && e[i].data) {
			if (archive_write_data(a, e[i].data, size) != (la_ssize_t)size)
				r = -EIO;
		} else if (r == 0 && size > 0) {
			for (size_t done = 0; done < size && r == 0;) {
				size_t k = MIN(sizeof(zeros), size - done);

				if (archive_write_data(a, zeros, k) != (la_ssize_t)k)
					r = -EIO;
				done += k;
			}
		}
		archive_entry_free(ae);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		r = -EIO;
	archive_write_free(a);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(buf);
	*ret_len = used;
	return 0;
}
