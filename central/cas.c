/* SPDX-License-Identifier: Apache-2.0 */
#include "central/cas.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/id.h"
#include "lib/macro.h"
#include "lib/str.h"

struct cas {
	int dirfd, blobfd, tmpfd;
	uint64_t max_bytes, max_blob;
	pthread_mutex_t lock;
	uint64_t bytes, blobs, reserved;
};

struct cas_writer {
	struct cas *cas;
	char hex[65];
	char tmpname[64];
	int fd;
	uint64_t size, written;
	EVP_MD_CTX *md;
};

bool cas_hex_valid(const char *hex)
{
	if (!hex || strlen(hex) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return false;
	return true;
}

static int scan(struct cas *c, struct cd_error *err)
{
	int fd = dup(c->blobfd);
	DIR *d;
	struct dirent *de;

	if (fd < 0)
		return cd_error_set(err, -errno, "dup: %m");
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return cd_error_set(err, -errno, "opendir: %m");
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (!cas_hex_valid(de->d_name))
			continue;
		if (fstatat(c->blobfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode)) {
			c->bytes += (uint64_t)st.st_size;
			c->blobs++;
		}
	}
	closedir(d);
	/* Leftovers of writes interrupted by a crash. */
	fd = dup(c->tmpfd);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d)))
		if (startswith(de->d_name, "put."))
			unlinkat(c->tmpfd, de->d_name, 0);
	closedir(d);
	return 0;
}

int cas_open(const char *dir, uint64_t max_bytes, uint64_t max_blob_bytes, struct cas **ret,
	     struct cd_error *err)
{
	struct cas *c;
	int r;

	r = fs_mkdir_p(dir, 0755);
	if (r < 0)
		return cd_error_set(err, r, "creating %s: %s", dir, strerror(-r));
	c = calloc(1, sizeof(*c));
	if (!c)
		return cd_error_set(err, -ENOMEM, "out of memory");
	c->dirfd = c->blobfd = c->tmpfd = -EBADF;
	c->max_bytes = max_bytes;
	c->max_blob = max_blob_bytes;
	pthread_mutex_init(&c->lock, NULL);
	c->dirfd = fs_open_dir_at(AT_FDCWD, dir);
	if (c->dirfd < 0) {
		r = cd_error_set(err, c->dirfd, "opening %s: %s", dir, strerror(-c->dirfd));
		goto fail;
	}
	if ((mkdirat(c->dirfd, "sha256", 0755) < 0 && errno != EEXIST) ||
	    (mkdirat(c->dirfd, "tmp", 0700) < 0 && errno != EEXIST)) {
		r = cd_error_set(err, -errno, "creating %s/{sha256,tmp}: %m", dir);
		goto fail;
	}
	c->blobfd = fs_open_dir_at(c->dirfd, "sha256");
	c->tmpfd = fs_open_dir_at(c->dirfd, "tmp");
	if (c->blobfd < 0 || c->tmpfd < 0) {
		r = cd_error_set(err, c->blobfd < 0 ? c->blobfd : c->tmpfd, "opening %s: %s", dir,
				 strerror(-(c->blobfd < 0 ? c->blobfd : c->tmpfd)));
		goto fail;
	}
	r = scan(c, err);
	if (r < 0)
		goto fail;
	*ret = c;
	return 0;
fail:
	cas_free(c);
	return r;
}

void cas_free(struct cas *c)
{
	if (!c)
		return;
	safe_close(c->dirfd);
	safe_close(c->blobfd);
	safe_close(c->tmpfd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void cas_usage(struct cas *c, struct cas_usage *ret)
{
	pthread_mutex_lock(&c->lock);
	ret->bytes = c->bytes;
	ret->blobs = c->blobs;
	ret->reserved = c->reserved;
	ret->max_bytes = c->max_bytes;
	pthread_mutex_unlock(&c->lock);
}

int cas_writer_new(struct cas *c, const char *hex, uint64_t size, struct cas_writer **ret,
		   struct cd_error *err)
{
	struct cas_writer *w;
	char rnd[17];

	if (!cas_hex_valid(hex))
		return cd_error_set(err, -EINVAL, "not a sha256 digest: 64 lowercase hex expected");
	if (size > c->max_blob)
		return cd_error_set(err, -EFBIG, "blob of %llu bytes exceeds the cap of %llu",
				    (unsigned long long)size, (unsigned long long)c->max_blob);
	pthread_mutex_lock(&c->lock);
	if (c->bytes + c->reserved + size > c->max_bytes) {
		uint64_t used = c->bytes + c->reserved;

		pthread_mutex_unlock(&c->lock);
		return cd_error_set(
			err, -ENOSPC,
			"artifact store budget full: %llu of %llu bytes used, %llu needed",
			(unsigned long long)used, (unsigned long long)c->max_bytes,
			(unsigned long long)size);
	}
	c->reserved += size;
	pthread_mutex_unlock(&c->lock);

	w = calloc(1, sizeof(*w));
	if (!w)
		goto nomem;
	w->cas = c;
	w->size = size;
	w->fd = -EBADF;
	snprintf(w->hex, sizeof(w->hex), "%s", hex);
	id_random_hex(rnd, sizeof(rnd));
	snprintf(w->tmpname, sizeof(w->tmpname), "put.%.16s.%s", hex, rnd);
	w->md = EVP_MD_CTX_new();
	if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
		cas_writer_abort(w);
		return cd_error_set(err, -ENOMEM, "sha256 init failed");
	}
	w->fd = openat(c->tmpfd, w->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int r = -errno;

		cas_writer_abort(w);
		return cd_error_set(err, r, "creating temporary blob: %s", strerror(-r));
	}
	*ret = w;
	return 0;
nomem:
	pthread_mutex_lock(&c->lock);
	c->reserved -= size;
	pthread_mutex_unlock(&c->lock);
	return cd_error_set(err, -ENOMEM, "out of memory");
}

int cas_writer_write(struct cas_writer *w, const void *buf, size_t len, struct cd_error *err)
{
	int r;

	if (len > w->size - w->written)
		return cd_error_set(err, -EFBIG, "more than the announced %llu bytes",
				    (unsigned long long)w->size);
	if (EVP_DigestUpdate(w->md, buf, len) != 1)
		return cd_error_set(err, -EIO, "sha256 update failed");
	r = fs_write_all(w->fd, buf, len);
	if (r < 0)
		return cd_error_set(err, r, "writing blob: %s", strerror(-r));
	w->written += len;
	return 0;
}

void cas_writer_abort(struct cas_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0) {
		safe_close(w->fd);
		unlinkat(w->cas->tmpfd, w->tmpname, 0);
	}
	pthread_mutex_lock(&w->cas->lock);
	w->cas->reserved -= w->size;
	pthread_mutex_unlock(&w->cas->lock);
	EVP_MD_CTX_free(w->md);
	free(w);
}

int cas_writer_commit(struct cas_writer *w, bool *ret_created, struct cd_error *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char actual[65];
	struct stat st;
	bool existed;
	int r;

	if (w->written != w->size) {
		r = cd_error_set(err, -EBADMSG, "got %llu of %llu bytes",
				 (unsigned long long)w->written, (unsigned long long)w->size);
		cas_writer_abort(w);
		return r;
	}
	if (EVP_DigestFinal_ex(w->md, md, &mdlen) != 1 || mdlen != 32) {
		cas_writer_abort(w);
		return cd_error_set(err, -EIO, "sha256 final failed");
	}
	for (unsigned i = 0; i < 32; i++)
		snprintf(actual + 2 * i, 3, "%02x", md[i]);
	if (!streq(actual, w->hex)) {
		r = cd_error_set(err, -EBADMSG,
				 "digest mismatch: expected sha256:%s, got sha256:%s", w->hex,
				 actual);
		cas_writer_abort(w);
		return r;
	}
	if (fsync(w->fd) < 0) {
		r = cd_error_set(err, -errno, "fsync: %m");
		cas_writer_abort(w);
		return r;
	}
	existed = fstatat(w->cas->blobfd, w->hex, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (renameat(w->cas->tmpfd, w->tmpname, w->cas->blobfd, w->hex) < 0) {
		r = cd_error_set(err, -errno, "publishing blob: %m");
		cas_writer_abort(w);
		return r;
	}
	fs_fsync_dir(w->cas->blobfd);
	w->fd = safe_close(w->fd); /* renamed: abort must not unlink */
	pthread_mutex_lock(&w->cas->lock);
	if (!existed) {
		w->cas->bytes += w->size;
		w->cas->blobs++;
	}
	pthread_mutex_unlock(&w->cas->lock);
	if (ret_created)
		*ret_created = !existed;
	cas_writer_abort(w); /* releases the reservation and frees */
	return 0;
}

int cas_open_blob(struct cas *c, const char *hex, int *ret_fd, uint64_t *ret_size)
{
	struct stat st;
	int fd;

	if (!cas_hex_valid(hex))
		return -EINVAL;
	fd = openat(c->blobfd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		safe_close(fd);
		return -EIO;
	}
	*ret_fd = fd;
	*ret_size = (uint64_t)st.st_size;
	return 0;
}
