/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/id.h"
#include "lib/macro.h"

int fs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_fsync_dir(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

int fs_open_dir_at(int dirfd, const char *path)
{
	int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static int write_tmp_and_rename(int dirfd, const char *name, const char *tmp, const void *data,
				size_t len, mode_t mode)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	/* openat() honours the umask; the caller asked for this mode exactly. */
	if (fchmod(fd, mode) < 0)
		return -errno;
	r = fs_write_all(fd, data, len);
	if (r < 0)
		return r;
	if (fsync(fd) < 0)
		return -errno;
	if (renameat(dirfd, tmp, dirfd, name) < 0)
		return -errno;
	return 0;
}

int fs_write_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
	char tmp[NAME_MAX + 1], rnd[17];
	int r;

	if (!name || !*name || strchr(name, '/') || strlen(name) > NAME_MAX - 24)
		return -EINVAL;
	id_random_hex(rnd, sizeof(rnd));
	snprintf(tmp, sizeof(tmp), ".%s.tmp.%s", name, rnd);
	r = write_tmp_and_rename(dirfd, name, tmp, data, len, mode);
	if (r < 0) {
		unlinkat(dirfd, tmp, 0);
		return r;
	}
	return fs_fsync_dir(dirfd);
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_close_ int dfd = -EBADF;
	const char *slash, *base;

	if (!path || !*path)
		return -EINVAL;
	slash = strrchr(path, '/');
	if (slash) {
		dir = strndup(path, (size_t)(slash - path));
		if (!dir)
			return -ENOMEM;
		base = slash + 1;
	} else {
		base = path;
	}
	dfd = fs_open_dir_at(AT_FDCWD, dir ? (*dir ? dir : "/") : ".");
	if (dfd < 0)
		return dfd;
	return fs_write_atomic_at(dfd, base, data, len, mode);
}

int fs_read_file_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, alloc = 0;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (len + 1 >= alloc) {
			size_t want = alloc ? alloc * 2 : 4096;
			char *nb;

			if (want > max + 2)
				want = max + 2;
			if (want <= len + 1)
				return -EFBIG;
			nb = realloc(buf, want);
			if (!nb)
				return -ENOMEM;
			buf = nb;
			alloc = want;
		}
		n = read(fd, buf + len, alloc - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max)
			return -EFBIG;
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = NULL;
	size_t len;

	if (!path || !*path)
		return -EINVAL;
	p = strdup(path);
	if (!p)
		return -ENOMEM;
	len = strlen(p);
	while (len > 1 && p[len - 1] == '/')
		p[--len] = '\0';
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			struct stat st;

			*s = '\0';
			if (mkdir(p, mode) < 0) {
				if (errno != EEXIST)
					return -errno;
				if (stat(p, &st) < 0)
					return -errno;
				if (!S_ISDIR(st.st_mode))
					return -ENOTDIR;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	return 0;
}

static int rm_rf_children(int dfd)
{
	DIR *d;
	struct dirent *de;
	int r = 0;

	d = fdopendir(dfd);
	if (!d) {
		safe_close(dfd);
		return -errno;
	}
	while ((errno = 0, de = readdir(d))) {
		int q;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		q = fs_rm_rf_at(dirfd(d), de->d_name);
		if (q < 0 && r == 0)
			r = q;
	}
	closedir(d);
	return r;
}

int fs_rm_rf_at(int dirfd, const char *name)
{
	struct stat st;
	int fd, r;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	r = rm_rf_children(fd);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	return r;
}
