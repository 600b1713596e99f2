/* SPDX-License-Identifier: Apache-2.0 */
#include "fetcher/fetcher.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetcher/cas.h"
#include "fetcher/transfer.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/macro.h"
#include "lib/str.h"

#define EXE_DEFAULT_NAME "artifact"

struct fetcher {
	char *dir;
	int dir_fd, blobs_fd, tmp_fd, unpacked_fd, pins_fd;
	uint64_t budget;
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
};

void fetch_options_init(struct fetch_options *o)
{
	*o = (struct fetch_options){
		.max_size = (uint64_t)64 << 30,
		.connect_timeout_ms = 10000,
		.low_speed_limit = 1024,
		.low_speed_time_s = 30,
		.attempts = 3,
		.backoff_base_ms = 200,
		.backoff_max_ms = 5000,
		.max_resumes = 32,
	};
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userdata)
{
	struct fetcher *f = userdata;

	pthread_mutex_lock(&f->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userdata)
{
	struct fetcher *f = userdata;

	pthread_mutex_unlock(&f->share_locks[data]);
}

const char *fetcher_dir(const struct fetcher *f)
{
	return f->dir;
}

void fetcher_free(struct fetcher *f)
{
	if (!f)
		return;
	if (f->share)
		curl_share_cleanup(f->share);
	for (size_t i = 0; i < ARRAY_SIZE(f->share_locks); i++)
		pthread_mutex_destroy(&f->share_locks[i]);
	safe_close(f->dir_fd);
	safe_close(f->blobs_fd);
	safe_close(f->tmp_fd);
	safe_close(f->unpacked_fd);
	safe_close(f->pins_fd);
	free(f->dir);
	free(f);
}

static int open_subdir(struct fetcher *f, const char *name, int *ret, struct cd_error *err)
{
	int fd;

	if (mkdirat(f->dir_fd, name, 0700) < 0 && errno != EEXIST)
		return cd_error_set(err, -errno, "cannot create %s/%s: %m", f->dir, name);
	fd = fs_open_dir_at(f->dir_fd, name);
	if (fd < 0)
		return cd_error_set(err, fd, "cannot open %s/%s: %s", f->dir, name, strerror(-fd));
	*ret = fd;
	return 0;
}

int fetcher_new(const char *dir, uint64_t budget_bytes, struct fetcher **ret, struct cd_error *err)
{
	struct fetcher *f;
	int r;

	if (!dir || !*dir)
		return cd_error_set(err, -EINVAL, "no cache directory given");
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return cd_error_set(err, -ENOMEM, "curl_global_init failed");
	r = fs_mkdir_p(dir, 0700);
	if (r < 0)
		return cd_error_set(err, r, "cannot create %s: %s", dir, strerror(-r));
	f = calloc(1, sizeof(*f));
	if (!f)
		return cd_error_set(err, -ENOMEM, "out of memory");
	f->dir_fd = f->blobs_fd = f->tmp_fd = f->unpacked_fd = f->pins_fd = -EBADF;
	f->budget = budget_bytes;
	for (size_t i = 0; i < ARRAY_SIZE(f->share_locks); i++)
		pthread_mutex_init(&f->share_locks[i], NULL);
	/* Resolved once: libarchive refuses to extract through symlinks anywhere in the path. */
	f->dir = realpath(dir, NULL);
	if (!f->dir) {
		r = cd_error_set(err, -errno, "cannot resolve %s: %m", dir);
		goto fail;
	}
	f->dir_fd = fs_open_dir_at(AT_FDCWD, f->dir);
	if (f->dir_fd < 0) {
		r = cd_error_set(err, f->dir_fd, "cannot open %s: %s", f->dir,
				 strerror(-f->dir_fd));
		goto fail;
	}
	if ((r = open_subdir(f, "sha256", &f->blobs_fd, err)) < 0 ||
	    (r = open_subdir(f, "tmp", &f->tmp_fd, err)) < 0 ||
	    (r = open_subdir(f, "unpacked", &f->unpacked_fd, err)) < 0 ||
	    (r = open_subdir(f, "pins", &f->pins_fd, err)) < 0)
		goto fail;
	/* One connection cache for every fetch of this process: keep-alive across blobs. */
	f->share = curl_share_init();
	if (!f->share) {
		r = cd_error_set(err, -ENOMEM, "curl_share_init failed");
		goto fail;
	}
	curl_share_setopt(f->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(f->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(f->share, CURLSHOPT_USERDATA, f);
	curl_share_setopt(f->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(f->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	*ret = f;
	return 0;
fail:
	fetcher_free(f);
	return r;
}

static uint64_t boottime_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	/* Never 0: 0 means "did not wait". */
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000 + 1;
}

static void easy_cleanupp(CURL **e)
{
	if (*e)
		curl_easy_cleanup(*e);
}

static int blob_path(const struct fetcher *f, const char *hex, char **ret)
{
	return asprintf(ret, "%s/sha256/%s", f->dir, hex) < 0 ? -ENOMEM : 0;
}

/* A hit marks the blob recently used: mtime is the LRU clock (content never changes). A cache
 * we may not stamp (read-only mount, foreign owner) still serves hits. */
static int cache_hit(struct fetcher *f, const char *hex, char **ret_path)
{
	if (utimensat(f->blobs_fd, hex, NULL, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		if (faccessat(f->blobs_fd, hex, R_OK, AT_EACCESS) < 0)
			return -errno;
	}
	return blob_path(f, hex, ret_path);
}

int fetcher_probe(struct fetcher *f, const char *digest, const char *mirror,
		  const struct fetch_options *opts, uint64_t *ret_size, struct cd_error *err)
{
	char hex[CAS_HEX_LEN + 1];
	struct fetch_options defaults;
	_cleanup_(easy_cleanupp) CURL *easy = NULL;
	_cleanup_free_ char *url = NULL;
	int r;

	if (cas_digest_parse(digest, hex) < 0)
		return cd_error_set(err, -EINVAL, "invalid digest \"%s\"",
				    digest ? digest : "(null)");
	if (!opts) {
		fetch_options_init(&defaults);
		opts = &defaults;
	}
	r = cas_blob_url(mirror, opts->instance, hex, &url);
	if (r < 0)
		return cd_error_set(err, r, "invalid mirror URL \"%s\"",
				    mirror ? mirror : "(null)");
	easy = curl_easy_init();
	if (!easy)
		return cd_error_set(err, -ENOMEM, "out of memory");
	curl_easy_setopt(easy, CURLOPT_SHARE, f->share);
	return transfer_head(easy, url, opts, ret_size, err);
}

int fetcher_lookup(struct fetcher *f, const char *digest, char **ret_path)
{
	char hex[CAS_HEX_LEN + 1];

	if (cas_digest_parse(digest, hex) < 0)
		return -EINVAL;
	return cache_hit(f, hex, ret_path);
}

/*
 * Take the single-flight lock of a digest: flock(2) on tmp/<hex>.lock. flock locks belong to
 * the open file description, so threads of one process exclude each other exactly like
 * processes do. gc may unlink an idle lock file; re-open when we locked a stale inode.
 * *ret_waited_since is 0 when we got the lock at once, else the CLOCK_BOOTTIME (µs, one clock
 * for every process) at which we started waiting for another holder.
 */
static int digest_lock(struct fetcher *f, const char *hex, uint64_t *ret_waited_since)
{
	char name[CAS_HEX_LEN + 8];
	uint64_t waited = 0;

	snprintf(name, sizeof(name), "%s.lock", hex);
	for (;;) {
		_cleanup_close_ int fd = -EBADF;
		struct stat a, b;

		fd = openat(f->tmp_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK)
				return -errno;
			if (!waited)
				waited = boottime_usec();
			while (flock(fd, LOCK_EX) < 0)
				if (errno != EINTR)
					return -errno;
		}
		if (fstat(fd, &a) < 0)
			return -errno;
		if (fstatat(f->tmp_fd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
			*ret_waited_since = waited;
			return TAKE_FD(fd);
		}
	}
}

/* The metadata lock: pins and eviction. */
static int meta_lock(struct fetcher *f)
{
	_cleanup_close_ int fd =
		openat(f->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return -errno;
	return TAKE_FD(fd);
}

/*
 * The failure of a leader is left in its lock file as "<-errno> <boottime µs> <message>" for the
 * callers that waited on it; a new leader truncates it. The time keeps a caller that merely
 * waited for gc (which holds idle locks briefly) from picking up an old failure.
 */
static void record_failure(int lock_fd, const struct cd_error *e)
{
	char buf[sizeof(e->msg) + 40];
	int n = snprintf(buf, sizeof(buf), "%d %llu %s", e->code,
			 (unsigned long long)boottime_usec(), e->msg);

	if (ftruncate(lock_fd, 0) == 0 && n > 0)
		(void)!pwrite(lock_fd, buf, MIN((size_t)n, sizeof(buf) - 1), 0);
}

/* The failure recorded by a leader that failed after we started waiting, or 0. */
static int shared_failure(int lock_fd, uint64_t waited_since, struct cd_error *err)
{
	char buf[sizeof(err->msg) + 40];
	ssize_t n = pread(lock_fd, buf, sizeof(buf) - 1, 0);
	unsigned long long when;
	char *end;
	long code;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	code = strtol(buf, &end, 10);
	if (code >= 0 || code < -4095 || *end != ' ')
		return 0;
	when = strtoull(end + 1, &end, 10);
	if (*end != ' ' || when < waited_since)
		return 0;
	return cd_error_set(err, (int)code, "%s", end + 1);
}

static const char *hex_of(const unsigned char *md, char out[static CAS_HEX_LEN + 1])
{
	for (size_t i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return out;
}

static bool local_failure(int r)
{
	return r == -ENOSPC || r == -EDQUOT || r == -EIO || r == -EROFS || r == -ENOMEM ||
	       r == -EBADF;
}

/* Which error wins when every mirror failed: the most actionable one. */
static int error_rank(int r)
{
	if (local_failure(r))
		return 5;
	if (r == -EBADMSG)
		return 4;
	if (r == -EFBIG)
		return 3;
	if (r == -ENOENT)
		return 1;
	return 2;
}

/* Download into part_fd from the mirrors until one yields the expected digest. */
static int download(struct fetcher *f, const char *hex, int part_fd, uint64_t adopt,
		    const char *const *mirrors, size_t n_mirrors, const struct fetch_options *o,
		    struct cd_error *err)
{
	_cleanup_(easy_cleanupp) CURL *easy = curl_easy_init();
	_cleanup_(transfer_state_release) struct transfer_state st = { 0 };
	_cleanup_strbuf_ struct strbuf msgs = STRBUF_INIT;
	bool carry = false;
	int best = 0, r;

	if (!easy)
		return cd_error_set(err, -ENOMEM, "out of memory");
	r = transfer_state_init(&st, part_fd, o->max_resumes);
	if (r < 0)
		return cd_error_set(err, r, "cannot start the download writer: %s", strerror(-r));
	curl_easy_setopt(easy, CURLOPT_SHARE, f->share);
	/* carry: st holds verified-by-nobody-yet bytes worth continuing with a Range request — a
	 * crashed download's leftover, or what a failing mirror delivered before it gave up (the
	 * content is addressed by its hash, so any mirror serves the same bytes). */
	for (size_t i = 0; i < n_mirrors;) {
		_cleanup_free_ char *url = NULL;
		struct cd_error e = { 0 };
		unsigned char sum[32];
		char got[CAS_HEX_LEN + 1];
		bool carried;

		r = cas_blob_url(mirrors[i], o->instance, hex, &url);
		if (r < 0)
			return cd_error_set(err, r, "invalid mirror URL \"%s\"", mirrors[i]);
		if (adopt > 0) {
			r = transfer_adopt(&st, adopt);
			adopt = 0;
			carry = r >= 0;
		} else if (!carry) {
			r = transfer_reset(&st);
		}
		if (r < 0)
			return cd_error_set(err, r, "cannot reset the download file: %s",
					    strerror(-r));
		carried = carry && st.offset > 0;
		/* A leftover complete but unpublished (died before the rename): nothing to fetch. */
		if (carried && transfer_peek(&st, sum) == 0 && streq(hex_of(sum, got), hex))
			return 0;
		r = transfer_get(easy, url, &st, o, &e);
		if (r >= 0) {
			r = transfer_finish(&st, sum);
			if (r < 0)
				return cd_error_set(err, r, "cannot write the download file: %s",
						    strerror(-r));
			if (streq(hex_of(sum, got), hex))
				return 0;
			if (carried) {
				/* The carried bytes may be the bad ones (a torn leftover): ask this
				 * mirror again from byte 0 before blaming it. */
				carry = false;
				continue;
			}
			r = cd_error_set(&e, -EBADMSG,
					 "%s: digest mismatch: expected sha256:%s, got sha256:%s "
					 "(%llu bytes)",
					 url, hex, got, (unsigned long long)st.offset);
		}
		carry = st.offset > 0 && r != -EBADMSG && !local_failure(r);
		if (msgs.len > 0)
			(void)strbuf_adds(&msgs, "; ");
		(void)strbuf_adds(&msgs, e.msg);
		if (!best || error_rank(r) > error_rank(best))
			best = r;
		if (local_failure(r))
			break;
		i++;
	}
	if (!best)
		return cd_error_set(err, -EINVAL, "no mirrors given");
	return cd_error_set(err, best, "sha256:%s: %s", hex, msgs.buf ? msgs.buf : "");
}

static int evict_locked(struct fetcher *f, const char *keep, struct fetcher_gc_stats *stats);

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

/*
 * Find the largest "<hex>.*.part" in tmp/ (called with the digest lock held, so its writer is
 * dead), remove any others, and return its name and size. -ENOENT when there is none.
 */
static int adopt_leftover(struct fetcher *f, const char *hex, char name[static NAME_MAX + 1],
			  uint64_t *ret_size)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	uint64_t best = 0;
	bool found = false;
	int fd;

	fd = openat(f->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (strncmp(de->d_name, hex, CAS_HEX_LEN) != 0 || de->d_name[CAS_HEX_LEN] != '.' ||
		    !endswith(de->d_name, ".part") ||
		    fstatat(f->tmp_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (found && (uint64_t)st.st_size <= best) {
			(void)unlinkat(f->tmp_fd, de->d_name, 0);
			continue;
		}
		if (found)
			(void)unlinkat(f->tmp_fd, name, 0);
		snprintf(name, NAME_MAX + 1, "%s", de->d_name);
		best = (uint64_t)st.st_size;
		found = true;
	}
	if (!found)
		return -ENOENT;
	*ret_size = best;
	return 0;
}

/* Leader path: download to tmp/, fsync, rename into sha256/, fsync the directory. */
static int fetch_and_publish(struct fetcher *f, const char *hex, const char *const *mirrors,
			     size_t n_mirrors, const struct fetch_options *o, struct cd_error *err)
{
	char part[NAME_MAX + 1], rnd[17];
	_cleanup_close_ int fd = -EBADF;
	uint64_t adopt = 0;
	int r;

	/* We hold the digest lock: a .part of this digest belongs to a download that died. */
	if (adopt_leftover(f, hex, part, &adopt) == 0) {
		fd = openat(f->tmp_fd, part, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			adopt = 0;
	}
	if (fd < 0) {
		id_random_hex(rnd, sizeof(rnd));
		snprintf(part, sizeof(part), "%s.%s.part", hex, rnd);
		fd = openat(f->tmp_fd, part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			    0600);
		if (fd < 0)
			return cd_error_set(err, -errno, "cannot create %s/tmp/%s: %m", f->dir,
					    part);
	}
	r = download(f, hex, fd, adopt, mirrors, n_mirrors, o, err);
	if (r >= 0 && fsync(fd) < 0)
		r = cd_error_set(err, -errno, "fsync of the downloaded blob failed: %m");
	if (r >= 0 && fchmod(fd, 0444) < 0)
		r = cd_error_set(err, -errno, "chmod of the downloaded blob failed: %m");
	if (r >= 0 && renameat(f->tmp_fd, part, f->blobs_fd, hex) < 0)
		r = cd_error_set(err, -errno, "cannot publish sha256:%s: %m", hex);
	if (r < 0) {
		(void)unlinkat(f->tmp_fd, part, 0);
		return r;
	}
	r = fs_fsync_dir(f->blobs_fd);
	if (r < 0)
		return cd_error_set(err, r, "fsync of %s/sha256 failed: %s", f->dir, strerror(-r));
	return 0;
}

static int enforce_budget(struct fetcher *f, const char *keep)
{
	_cleanup_close_ int lock = -EBADF;

	if (f->budget == 0)
		return 0;
	lock = meta_lock(f);
	if (lock < 0)
		return lock;
	return evict_locked(f, keep, NULL);
}

int fetcher_fetch(struct fetcher *f, const char *digest, const char *const *mirrors,
		  size_t n_mirrors, const struct fetch_options *opts, char **ret_path,
		  struct cd_error *err)
{
	char hex[CAS_HEX_LEN + 1];
	struct fetch_options defaults;
	_cleanup_close_ int lock = -EBADF;
	uint64_t waited = 0;
	int r;

	if (cas_digest_parse(digest, hex) < 0)
		return cd_error_set(err, -EINVAL, "invalid digest \"%s\" (want sha256:<64 hex>)",
				    digest ? digest : "(null)");
	if (!opts) {
		fetch_options_init(&defaults);
		opts = &defaults;
	}
	if (cache_hit(f, hex, ret_path) == 0)
		return 0;
	if (n_mirrors == 0 || !mirrors)
		return cd_error_set(err, -EINVAL, "sha256:%s is not cached and no mirror was given",
				    hex);
	lock = digest_lock(f, hex, &waited);
	if (lock < 0)
		return cd_error_set(err, lock, "cannot lock sha256:%s: %s", hex, strerror(-lock));
	/* Someone else may have published it while we waited for the lock. */
	if (cache_hit(f, hex, ret_path) == 0)
		return 0;
	if (waited) {
		r = shared_failure(lock, waited, err);
		if (r < 0)
			return r;
	}
	if (ftruncate(lock, 0) < 0)
		return cd_error_set(err, -errno, "cannot reset the lock of sha256:%s: %m", hex);
	{
		struct cd_error e = { 0 };

		r = fetch_and_publish(f, hex, mirrors, n_mirrors, opts, &e);
		if (r < 0) {
			record_failure(lock, &e);
			return cd_error_set(err, r, "%s", e.msg);
		}
	}
	/* Over budget is not this fetch's failure: gc reports eviction problems. */
	(void)enforce_budget(f, hex);
	return cache_hit(f, hex, ret_path) < 0 ?
		       cd_error_set(err, -ENOENT, "sha256:%s vanished after publication", hex) :
		       0;
}

/* ---- pins ---------------------------------------------------------------------------------- */

static int pin_read(struct fetcher *f, const char *hex, unsigned *ret)
{
	_cleanup_free_ char *s = NULL;
	int r = fs_read_file_at(f->pins_fd, hex, 32, &s, NULL);

	if (r == -ENOENT) {
		*ret = 0;
		return 0;
	}
	if (r < 0)
		return r;
	s[strcspn(s, "\n")] = '\0';
	return parse_uint(s, UINT_MAX, ret);
}

static int pin_write(struct fetcher *f, const char *hex, unsigned n)
{
	char buf[16];
	int len;

	if (n == 0) {
		if (unlinkat(f->pins_fd, hex, 0) < 0 && errno != ENOENT)
			return -errno;
		return fs_fsync_dir(f->pins_fd);
	}
	len = snprintf(buf, sizeof(buf), "%u\n", n);
	return fs_write_atomic_at(f->pins_fd, hex, buf, (size_t)len, 0600);
}

static int pin_adjust(struct fetcher *f, const char *digest, int delta, struct cd_error *err)
{
	char hex[CAS_HEX_LEN + 1];
	_cleanup_close_ int lock = -EBADF;
	unsigned n;
	int r;

	if (cas_digest_parse(digest, hex) < 0)
		return cd_error_set(err, -EINVAL, "invalid digest \"%s\"",
				    digest ? digest : "(null)");
	lock = meta_lock(f);
	if (lock < 0)
		return cd_error_set(err, lock, "cannot lock %s/lock: %s", f->dir, strerror(-lock));
	r = pin_read(f, hex, &n);
	if (r < 0)
		return cd_error_set(err, r, "cannot read pin of sha256:%s: %s", hex, strerror(-r));
	if (delta < 0 && n == 0)
		return cd_error_set(err, -ENOENT, "sha256:%s is not pinned", hex);
	if (delta > 0 && n == UINT_MAX)
		return cd_error_set(err, -EOVERFLOW, "sha256:%s pinned too often", hex);
	r = pin_write(f, hex, delta > 0 ? n + 1 : n - 1);
	if (r < 0)
		return cd_error_set(err, r, "cannot write pin of sha256:%s: %s", hex, strerror(-r));
	return 0;
}

int fetcher_pin(struct fetcher *f, const char *digest, struct cd_error *err)
{
	return pin_adjust(f, digest, +1, err);
}

int fetcher_unpin(struct fetcher *f, const char *digest, struct cd_error *err)
{
	return pin_adjust(f, digest, -1, err);
}

int fetcher_pin_count(struct fetcher *f, const char *digest, unsigned *ret)
{
	char hex[CAS_HEX_LEN + 1];
	_cleanup_close_ int lock = -EBADF;

	if (cas_digest_parse(digest, hex) < 0)
		return -EINVAL;
	lock = meta_lock(f);
	if (lock < 0)
		return lock;
	return pin_read(f, hex, ret);
}

static int pin_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fetcher_pin *)a)->digest,
		      ((const struct fetcher_pin *)b)->digest);
}

int fetcher_pin_list(struct fetcher *f, struct fetcher_pin **ret, size_t *ret_n)
{
	_cleanup_close_ int lock = -EBADF;
	_cleanup_(closedirp) DIR *d = NULL;
	_cleanup_free_ struct fetcher_pin *v = NULL;
	size_t n = 0, alloc = 0;
	struct dirent *de;
	int fd;

	lock = meta_lock(f);
	if (lock < 0)
		return lock;
	fd = openat(f->pins_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		unsigned count = 0;

		if (!cas_hex_valid(de->d_name) || pin_read(f, de->d_name, &count) < 0 || count == 0)
			continue;
		if (n == alloc) {
			struct fetcher_pin *nv;

			alloc = alloc ? alloc * 2 : 16;
			nv = reallocarray(v, alloc, sizeof(*v));
			if (!nv)
				return -ENOMEM;
			v = nv;
		}
		snprintf(v[n].digest, sizeof(v[n].digest), "sha256:%.64s", de->d_name);
		v[n].count = count;
		n++;
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), pin_cmp);
	*ret = n > 0 ? TAKE_PTR(v) : NULL;
	*ret_n = n;
	return 0;
}

/* ---- eviction and gc ----------------------------------------------------------------------- */

/* True when a live fetch or unpack holds the digest's lock. */
static bool digest_busy(struct fetcher *f, const char *hex, int *ret_lock)
{
	char name[CAS_HEX_LEN + 8];
	_cleanup_close_ int fd = -EBADF;

	snprintf(name, sizeof(name), "%s.lock", hex);
	fd = openat(f->tmp_fd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK;
	if (ret_lock)
		*ret_lock = TAKE_FD(fd);
	return false;
}

static uint64_t unpacked_size(struct fetcher *f, const char *hex)
{
	char name[CAS_HEX_LEN + 8];
	_cleanup_free_ char *s = NULL;
	uint64_t v = 0;

	snprintf(name, sizeof(name), "%s.size", hex);
	if (fs_read_file_at(f->unpacked_fd, name, 32, &s, NULL) < 0)
		return 0;
	s[strcspn(s, "\n")] = '\0';
	return parse_u64(s, &v) < 0 ? 0 : v;
}

static int remove_digest(struct fetcher *f, const char *hex)
{
	char name[CAS_HEX_LEN + 8];
	int r;

	/* Tree first: a blob without a tree is a valid state, a tree without a blob is not. */
	r = fs_rm_rf_at(f->unpacked_fd, hex);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "%s.size", hex);
	if (unlinkat(f->unpacked_fd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	if (unlinkat(f->blobs_fd, hex, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

struct lru_entry {
	char hex[CAS_HEX_LEN + 1];
	uint64_t bytes;
	struct timespec used;
};

static int lru_cmp(const void *a, const void *b)
{
	const struct lru_entry *x = a, *y = b;

	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
	return strcmp(x->hex, y->hex);
}

/* Called with the metadata lock held. */
static int evict_locked(struct fetcher *f, const char *keep, struct fetcher_gc_stats *stats)
{
	_cleanup_(closedirp) DIR *d = NULL;
	_cleanup_free_ struct lru_entry *v = NULL;
	size_t n = 0, alloc = 0;
	uint64_t total = 0;
	struct dirent *de;
	int fd;

	fd = openat(f->blobs_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (!cas_hex_valid(de->d_name))
			continue;
		if (fstatat(f->blobs_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (n == alloc) {
			struct lru_entry *nv;

			alloc = alloc ? alloc * 2 : 64;
			nv = reallocarray(v, alloc, sizeof(*v));
			if (!nv)
				return -ENOMEM;
			v = nv;
		}
		memcpy(v[n].hex, de->d_name, sizeof(v[n].hex));
		v[n].bytes = (uint64_t)st.st_size + unpacked_size(f, v[n].hex);
		v[n].used = st.st_mtim;
		total += v[n].bytes;
		n++;
	}
	if (f->budget > 0 && total > f->budget) {
		qsort(v, n, sizeof(*v), lru_cmp);
		for (size_t i = 0; i < n && total > f->budget; i++) {
			_cleanup_close_ int lock = -EBADF;
			unsigned pins = 0;

			if (keep && streq(v[i].hex, keep))
				continue;
			if (pin_read(f, v[i].hex, &pins) < 0 || pins > 0)
				continue;
			if (digest_busy(f, v[i].hex, &lock))
				continue;
			if (remove_digest(f, v[i].hex) < 0)
				continue;
			total -= v[i].bytes;
			if (stats) {
				stats->evicted++;
				stats->bytes_evicted += v[i].bytes;
			}
		}
		(void)fs_fsync_dir(f->blobs_fd);
	}
	if (stats)
		stats->bytes_in_use = total;
	return 0;
}

/* Leftover names start with the digest they belong to: "<hex>.*" in tmp/, ".tmp-<hex>-*" and
 * "<hex>.size" in unpacked/. */
static bool prefix_hex(const char *name, char hex[static CAS_HEX_LEN + 1])
{
	if (strlen(name) <= CAS_HEX_LEN)
		return false;
	memcpy(hex, name, CAS_HEX_LEN);
	hex[CAS_HEX_LEN] = '\0';
	return cas_hex_valid(hex);
}

static int gc_dir(struct fetcher *f, int dfd, bool unpacked, unsigned *removed)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int fd;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		_cleanup_close_ int lock = -EBADF;
		char hex[CAS_HEX_LEN + 1];
		const char *name = de->d_name;
		struct stat st;

		if (unpacked) {
			const char *rest = startswith(name, ".tmp-");

			if (rest) {
				if (!prefix_hex(rest, hex))
					continue;
			} else if (prefix_hex(name, hex) && streq(name + CAS_HEX_LEN, ".size")) {
				/* A sidecar whose tree never made it (crash before rename). */
				if (fstatat(dfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0)
					continue;
			} else {
				continue;
			}
		} else if (!prefix_hex(name, hex)) {
			continue;
		}
		if (digest_busy(f, hex, &lock))
			continue;
		if (fs_rm_rf_at(dfd, name) == 0)
			(*removed)++;
	}
	return 0;
}

int fetcher_gc(struct fetcher *f, struct fetcher_gc_stats *ret, struct cd_error *err)
{
	struct fetcher_gc_stats stats = { 0 };
	_cleanup_close_ int lock = -EBADF;
	int r;

	lock = meta_lock(f);
	if (lock < 0)
		return cd_error_set(err, lock, "cannot lock %s/lock: %s", f->dir, strerror(-lock));
	r = gc_dir(f, f->unpacked_fd, true, &stats.tmp_removed);
	if (r < 0)
		return cd_error_set(err, r, "cannot scan %s/unpacked: %s", f->dir, strerror(-r));
	r = gc_dir(f, f->tmp_fd, false, &stats.tmp_removed);
	if (r < 0)
		return cd_error_set(err, r, "cannot scan %s/tmp: %s", f->dir, strerror(-r));
	r = evict_locked(f, NULL, &stats);
	if (r < 0)
		return cd_error_set(err, r, "eviction in %s failed: %s", f->dir, strerror(-r));
	if (ret)
		*ret = stats;
	return 0;
}

/* ---- materialisation ----------------------------------------------------------------------- */

enum fetcher_kind fetcher_sniff(const void *head, size_t len)
{
	const unsigned char *p = head;

	if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b)
		return FETCHER_KIND_ARCHIVE; /* gzip */
	if (len >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd)
		return FETCHER_KIND_ARCHIVE; /* zstd */
	if (len >= 262 && memcmp(p + 257, "ustar", 5) == 0)
		return FETCHER_KIND_ARCHIVE; /* POSIX/GNU tar */
	return FETCHER_KIND_EXECUTABLE;
}

static bool exe_name_valid(const char *s)
{
	return *s && !strchr(s, '/') && !streq(s, ".") && !streq(s, "..") && strlen(s) <= NAME_MAX;
}

static int sniff_blob(int fd, enum fetcher_kind *ret)
{
	unsigned char head[512];
	ssize_t n = pread(fd, head, sizeof(head), 0);

	if (n < 0)
		return -errno;
	*ret = fetcher_sniff(head, (size_t)n);
	return 0;
}

static int make_tmp_dir(struct fetcher *f, const char *hex, char name[static CAS_HEX_LEN + 32])
{
	char rnd[17];

	id_random_hex(rnd, sizeof(rnd));
	snprintf(name, CAS_HEX_LEN + 32, ".tmp-%s-%s", hex, rnd);
	if (mkdirat(f->unpacked_fd, name, 0755) < 0)
		return -errno;
	/* mkdirat() honours the umask; the tree must be readable by the task's user. */
	if (fchmodat(f->unpacked_fd, name, 0755, 0) < 0)
		return -errno;
	return 0;
}

static int publish_tree(struct fetcher *f, const char *tmp, const char *hex, uint64_t bytes,
			struct cd_error *err)
{
	char name[CAS_HEX_LEN + 8], buf[32];
	_cleanup_close_ int tfd = -EBADF;
	int r, len;

	/* One syncfs() instead of an fsync() per extracted file: the tree must be complete on
	 * disk before its name says it is. */
	tfd = openat(f->unpacked_fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0 || syncfs(tfd) < 0)
		return cd_error_set(err, -errno, "cannot sync %s/unpacked/%s: %m", f->dir, tmp);
	snprintf(name, sizeof(name), "%s.size", hex);
	len = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)bytes);
	r = fs_write_atomic_at(f->unpacked_fd, name, buf, (size_t)len, 0644);
	if (r < 0)
		return cd_error_set(err, r, "cannot write %s/unpacked/%s: %s", f->dir, name,
				    strerror(-r));
	if (renameat(f->unpacked_fd, tmp, f->unpacked_fd, hex) < 0)
		return cd_error_set(err, -errno, "cannot publish %s/unpacked/%s: %m", f->dir, hex);
	r = fs_fsync_dir(f->unpacked_fd);
	if (r < 0)
		return cd_error_set(err, r, "fsync of %s/unpacked failed: %s", f->dir,
				    strerror(-r));
	return 0;
}

static int materialize_archive(struct fetcher *f, const char *hex, int blob_fd,
			       const struct unpack_limits *limits, struct cd_error *err)
{
	char tmp[CAS_HEX_LEN + 32];
	_cleanup_free_ char *dest = NULL;
	struct unpack_limits defaults;
	uint64_t bytes = 0;
	int r;

	if (!limits) {
		unpack_limits_init(&defaults);
		limits = &defaults;
	}
	r = make_tmp_dir(f, hex, tmp);
	if (r < 0)
		return cd_error_set(err, r, "cannot create a directory in %s/unpacked: %s", f->dir,
				    strerror(-r));
	if (asprintf(&dest, "%s/unpacked/%s", f->dir, tmp) < 0) {
		(void)fs_rm_rf_at(f->unpacked_fd, tmp);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	r = unpack_archive_fd(blob_fd, dest, limits, &bytes, err);
	if (r >= 0)
		r = publish_tree(f, tmp, hex, bytes, err);
	if (r < 0)
		(void)fs_rm_rf_at(f->unpacked_fd, tmp);
	return r;
}

static int materialize_executable(struct fetcher *f, const char *hex, const char *exe_name,
				  struct cd_error *err)
{
	char tmp[CAS_HEX_LEN + 32];
	_cleanup_close_ int dfd = -EBADF;
	int r;

	/* The blob's inode becomes executable: its bytes stay verified and immutable. */
	if (fchmodat(f->blobs_fd, hex, 0555, 0) < 0)
		return cd_error_set(err, -errno, "cannot chmod sha256:%s: %m", hex);
	dfd = openat(f->unpacked_fd, hex, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		/* The directory exists with another program name: add this one. */
		if (linkat(f->blobs_fd, hex, dfd, exe_name, 0) < 0 && errno != EEXIST)
			return cd_error_set(err, -errno, "cannot link %s into %s/unpacked/%s: %m",
					    exe_name, f->dir, hex);
		return fs_fsync_dir(dfd);
	}
	r = make_tmp_dir(f, hex, tmp);
	if (r < 0)
		return cd_error_set(err, r, "cannot create a directory in %s/unpacked: %s", f->dir,
				    strerror(-r));
	dfd = openat(f->unpacked_fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || linkat(f->blobs_fd, hex, dfd, exe_name, 0) < 0) {
		r = cd_error_set(err, -errno, "cannot link sha256:%s into %s/unpacked/%s: %m", hex,
				 f->dir, tmp);
		(void)fs_rm_rf_at(f->unpacked_fd, tmp);
		return r;
	}
	r = publish_tree(f, tmp, hex, 0, err);
	if (r < 0)
		(void)fs_rm_rf_at(f->unpacked_fd, tmp);
	return r;
}

/* Ready when the tree exists (and, for a program, holds exe_name). */
static bool materialized(struct fetcher *f, const char *hex, const char *exe_name)
{
	char path[CAS_HEX_LEN + NAME_MAX + 2];
	struct stat st;

	if (!exe_name)
		return fstatat(f->unpacked_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		       S_ISDIR(st.st_mode);
	snprintf(path, sizeof(path), "%s/%s", hex, exe_name);
	return fstatat(f->unpacked_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

int fetcher_materialize(struct fetcher *f, const char *digest, enum fetcher_kind kind,
			const char *exe_name, const struct unpack_limits *limits, char **ret_dir,
			struct cd_error *err)
{
	char hex[CAS_HEX_LEN + 1];
	_cleanup_close_ int lock = -EBADF, blob = -EBADF;
	_cleanup_free_ char *dir = NULL;
	uint64_t waited;
	int r;

	if (cas_digest_parse(digest, hex) < 0)
		return cd_error_set(err, -EINVAL, "invalid digest \"%s\"",
				    digest ? digest : "(null)");
	if (kind == FETCHER_KIND_ARCHIVE)
		exe_name = NULL;
	else if (!exe_name)
		exe_name = EXE_DEFAULT_NAME;
	if (exe_name && !exe_name_valid(exe_name))
		return cd_error_set(err, -EINVAL, "invalid program name \"%s\"", exe_name);
	if (asprintf(&dir, "%s/unpacked/%s", f->dir, hex) < 0)
		return cd_error_set(err, -ENOMEM, "out of memory");
	if (utimensat(f->blobs_fd, hex, NULL, AT_SYMLINK_NOFOLLOW) < 0)
		return cd_error_set(err, -errno, "sha256:%s is not cached: %m", hex);
	if (kind != FETCHER_KIND_AUTO && materialized(f, hex, exe_name))
		goto done;

	lock = digest_lock(f, hex, &waited);
	if (lock < 0)
		return cd_error_set(err, lock, "cannot lock sha256:%s: %s", hex, strerror(-lock));
	blob = openat(f->blobs_fd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (blob < 0)
		return cd_error_set(err, -errno, "sha256:%s is not cached: %m", hex);
	if (kind == FETCHER_KIND_AUTO) {
		r = sniff_blob(blob, &kind);
		if (r < 0)
			return cd_error_set(err, r, "cannot read sha256:%s: %s", hex, strerror(-r));
		if (kind == FETCHER_KIND_ARCHIVE)
			exe_name = NULL;
	}
	if (materialized(f, hex, exe_name))
		goto done;
	if (kind == FETCHER_KIND_ARCHIVE)
		r = materialize_archive(f, hex, blob, limits, err);
	else
		r = materialize_executable(f, hex, exe_name, err);
	if (r < 0)
		return r;
	/* The new tree counts against the budget too. */
	(void)enforce_budget(f, hex);
done:
	*ret_dir = TAKE_PTR(dir);
	return 0;
}
