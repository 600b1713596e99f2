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
#include <time.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/id.h"
#include "lib/macro.h"
#include "lib/str.h"

struct cas {
	int dirfd, blobfd, tmpfd;
	uint64_t max_bytes, max_blob;
	pthread_mutex_t lock; /* counters below; publishing and evicting a name */
	uint64_t bytes, blobs, reserved;
	uint64_t evicted_blobs, evicted_bytes;
	pthread_mutex_t evict_lock; /* one eviction at a time */
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
	pthread_mutex_init(&c->evict_lock, NULL);
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
	pthread_mutex_destroy(&c->evict_lock);
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
	ret->evicted_blobs = c->evicted_blobs;
	ret->evicted_bytes = c->evicted_bytes;
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
	/* Under the lock: an eviction of the same name cannot slip between the check and the
	 * rename and leave the byte count wrong. */
	pthread_mutex_lock(&w->cas->lock);
	existed = fstatat(w->cas->blobfd, w->hex, &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (renameat(w->cas->tmpfd, w->tmpname, w->cas->blobfd, w->hex) < 0) {
		r = cd_error_set(err, -errno, "publishing blob: %m");
		pthread_mutex_unlock(&w->cas->lock);
		cas_writer_abort(w);
		return r;
	}
	if (!existed) {
		w->cas->bytes += w->size;
		w->cas->blobs++;
	}
	pthread_mutex_unlock(&w->cas->lock);
	fs_fsync_dir(w->cas->blobfd);
	w->fd = safe_close(w->fd); /* renamed: abort must not unlink */
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
	if (st.st_atime < time(NULL) - CAS_TOUCH_INTERVAL_S) {
		const struct timespec ts[2] = { { .tv_nsec = UTIME_NOW },
						{ .tv_nsec = UTIME_OMIT } };

		(void)futimens(fd, ts); /* best effort: only the eviction order depends on it */
	}
	*ret_fd = fd;
	*ret_size = (uint64_t)st.st_size;
	return 0;
}

struct evict_candidate {
	char hex[65];
	uint64_t size;
	struct timespec used;
	dev_t dev;
	ino_t ino;
};

static int cmp_used(const void *a, const void *b)
{
	const struct evict_candidate *x = a, *y = b;

	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
	return strcmp(x->hex, y->hex);
}

static struct timespec later(struct timespec a, struct timespec b)
{
	return (a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec)) ? a : b;
}

/* Unpinned blobs, least recently used first. */
static int list_candidates(struct cas *c, cas_pinned_fn pinned, void *ctx,
			   struct evict_candidate **ret, size_t *ret_n, struct cd_error *err)
{
	struct evict_candidate *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd = fcntl(c->blobfd, F_DUPFD_CLOEXEC, 3);
	DIR *d;

	if (fd < 0)
		return cd_error_set(err, -errno, "dup: %m");
	d = fdopendir(fd);
	if (!d) {
		int r = -errno;

		close(fd);
		return cd_error_set(err, r, "opendir: %s", strerror(-r));
	}
	rewinddir(d); /* the dup shares blobfd's offset, which an earlier scan left at the end */
	while ((de = readdir(d))) {
		struct stat st;

		if (!cas_hex_valid(de->d_name) || pinned(de->d_name, ctx))
			continue;
		if (fstatat(c->blobfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct evict_candidate *nv = reallocarray(v, ncap, sizeof(*v));

			if (!nv) {
				closedir(d);
				free(v);
				return cd_error_set(err, -ENOMEM, "out of memory");
			}
			v = nv;
			cap = ncap;
		}
		memcpy(v[n].hex, de->d_name, 65);
		v[n].size = (uint64_t)st.st_size;
		v[n].used = later(st.st_atim, st.st_mtim);
		v[n].dev = st.st_dev;
		v[n].ino = st.st_ino;
		n++;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_used);
	*ret = v;
	*ret_n = n;
	return 0;
}

static bool has_room(struct cas *c, uint64_t need)
{
	return c->bytes + c->reserved + need <= c->max_bytes;
}

int cas_evict(struct cas *c, uint64_t need, cas_pinned_fn pinned, void *ctx, uint64_t *ret_freed,
	      struct cd_error *err)
{
	_cleanup_free_ struct evict_candidate *v = NULL;
	uint64_t freed = 0, goal;
	size_t n = 0;
	int r;

	if (need > c->max_bytes)
		return cd_error_set(err, -ENOSPC, "%llu bytes can never fit a budget of %llu",
				    (unsigned long long)need, (unsigned long long)c->max_bytes);
	pthread_mutex_lock(&c->evict_lock);
	pthread_mutex_lock(&c->lock);
	/* another eviction may have just made room */
	r = has_room(c, need);
	/* headroom: a tenth of the budget, so the next PUTs do not each start an eviction */
	goal = need + MIN(c->max_bytes / 10, c->max_bytes - need);
	pthread_mutex_unlock(&c->lock);
	if (r)
		goto out;
	r = list_candidates(c, pinned, ctx, &v, &n, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		bool done;

		pthread_mutex_lock(&c->lock);
		done = c->bytes + c->reserved + goal <= c->max_bytes;
		/* Remove only the file we ranked: a PUT may have replaced it since. */
		if (!done && fstatat(c->blobfd, v[i].hex, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_ino == v[i].ino && st.st_dev == v[i].dev &&
		    unlinkat(c->blobfd, v[i].hex, 0) == 0) {
			c->bytes -= MIN(c->bytes, (uint64_t)st.st_size);
			c->blobs -= MIN(c->blobs, 1);
			c->evicted_blobs++;
			c->evicted_bytes += (uint64_t)st.st_size;
			freed += (uint64_t)st.st_size;
		}
		pthread_mutex_unlock(&c->lock);
		if (done)
			break;
	}
	if (freed)
		fs_fsync_dir(c->blobfd);
	pthread_mutex_lock(&c->lock);
	r = has_room(c, need);
	pthread_mutex_unlock(&c->lock);
	if (!r)
		r = cd_error_set(
			err, -ENOSPC,
			"artifact store budget full: only pinned (indexed) blobs are left");
out:
	pthread_mutex_unlock(&c->evict_lock);
	if (ret_freed)
		*ret_freed = freed;
	return r < 0 ? r : 0;
}
