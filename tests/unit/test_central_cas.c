/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for central/cas: verified publish, mismatch leaves nothing, size caps and the byte
 * budget (with reservations of in-flight writes), crash leftovers removed at open, usage
 * accounting across reopen, and disk-write failures through a wrapped write(2).
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "central/cas.h"
#include "lib/fs.h"

/* Fault injection: make write(2) fail (disk full) on demand. */
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
static int write_fail_errno;
ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
	if (write_fail_errno && fd > 2) {
		errno = write_fail_errno;
		return -1;
	}
	return __real_write(fd, buf, n);
}

static char tmpdir[64];

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-cas.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	write_fail_errno = 0;
	return 0;
}

static int teardown(void **state)
{
	write_fail_errno = 0;
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static void sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned n = 0;

	assert_int_equal(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static size_t dir_entries(const char *sub)
{
	char cmd[256];
	FILE *p;
	size_t n = 0;
	char line[256];

	snprintf(cmd, sizeof(cmd), "ls -A %s/%s", tmpdir, sub);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p))
		n++;
	pclose(p);
	return n;
}

static int put(struct cas *c, const char *hex, const void *data, size_t len, bool *created,
	       struct cd_error *err)
{
	struct cas_writer *w = NULL;
	int r;

	r = cas_writer_new(c, hex, len, &w, err);
	if (r < 0)
		return r;
	/* In two pieces, like a streamed body. */
	r = cas_writer_write(w, data, len / 2, err);
	if (r >= 0)
		r = cas_writer_write(w, (const char *)data + len / 2, len - len / 2, err);
	if (r < 0) {
		cas_writer_abort(w);
		return r;
	}
	return cas_writer_commit(w, created, err);
}

static void test_put_get_roundtrip(void **state)
{
	const char data[] = "hello, artifact";
	struct cas *c = NULL;
	struct cas_usage u;
	char hex[65], back[64] = "";
	bool created = false;
	uint64_t size = 0;
	int fd = -1;

	sha256_hex(data, sizeof(data), hex);
	assert_int_equal(cas_open(tmpdir, 1 << 20, 1 << 20, &c, NULL), 0);
	assert_int_equal(put(c, hex, data, sizeof(data), &created, NULL), 0);
	assert_true(created);
	assert_int_equal(put(c, hex, data, sizeof(data), &created, NULL), 0);
	assert_false(created);
	assert_int_equal(cas_open_blob(c, hex, &fd, &size), 0);
	assert_int_equal(size, sizeof(data));
	assert_int_equal(read(fd, back, sizeof(back)), (ssize_t)sizeof(data));
	close(fd);
	assert_memory_equal(back, data, sizeof(data));
	cas_usage(c, &u);
	assert_int_equal(u.bytes, sizeof(data));
	assert_int_equal(u.blobs, 1);
	assert_int_equal(u.reserved, 0);
	assert_int_equal(dir_entries("tmp"), 0);
	cas_free(c);

	/* Usage is recounted from disk on open. */
	assert_int_equal(cas_open(tmpdir, 1 << 20, 1 << 20, &c, NULL), 0);
	cas_usage(c, &u);
	assert_int_equal(u.bytes, sizeof(data));
	assert_int_equal(u.blobs, 1);
	cas_free(c);
}

static void test_mismatch_stores_nothing(void **state)
{
	const char data[] = "the real bytes";
	char hex[65], other[65];
	struct cd_error err = {};
	struct cas *c = NULL;
	struct cas_writer *w = NULL;
	struct cas_usage u;
	uint64_t size;
	int fd;

	sha256_hex(data, sizeof(data), hex);
	sha256_hex("x", 1, other);
	assert_int_equal(cas_open(tmpdir, 1 << 20, 1 << 20, &c, NULL), 0);
	assert_int_equal(put(c, other, data, sizeof(data), NULL, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, other));
	assert_non_null(strstr(err.msg, hex));
	assert_int_equal(cas_open_blob(c, other, &fd, &size), -ENOENT);
	assert_int_equal(dir_entries("sha256"), 0);
	assert_int_equal(dir_entries("tmp"), 0);

	/* Short body: fewer bytes than announced. */
	cd_error_reset(&err);
	assert_int_equal(cas_writer_new(c, hex, sizeof(data) + 5, &w, NULL), 0);
	assert_int_equal(cas_writer_write(w, data, sizeof(data), NULL), 0);
	assert_int_equal(cas_writer_commit(w, NULL, &err), -EBADMSG);
	/* Long body: more bytes than announced. */
	assert_int_equal(cas_writer_new(c, hex, 3, &w, NULL), 0);
	assert_int_equal(cas_writer_write(w, data, sizeof(data), NULL), -EFBIG);
	cas_writer_abort(w);
	assert_int_equal(dir_entries("sha256"), 0);
	assert_int_equal(dir_entries("tmp"), 0);
	cas_usage(c, &u);
	assert_int_equal(u.reserved, 0);
	assert_int_equal(u.bytes, 0);
	cas_free(c);
}

static void test_caps_and_budget(void **state)
{
	char big[3000], hex[65], hex2[65];
	struct cd_error err = {};
	struct cas *c = NULL;
	struct cas_writer *w = NULL, *w2 = NULL;

	memset(big, 'a', sizeof(big));
	sha256_hex(big, 2000, hex);
	sha256_hex(big, 1500, hex2);
	assert_int_equal(cas_open(tmpdir, 3000, 2500, &c, NULL), 0);
	assert_int_equal(cas_writer_new(c, hex, 2600, &w, &err), -EFBIG);
	assert_int_equal(cas_writer_new(c, "ABC", 1, &w, NULL), -EINVAL);
	/* An in-flight write reserves its bytes: a second one that would overflow gets ENOSPC. */
	assert_int_equal(cas_writer_new(c, hex, 2000, &w, NULL), 0);
	cd_error_reset(&err);
	assert_int_equal(cas_writer_new(c, hex2, 1500, &w2, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "budget"));
	assert_int_equal(cas_writer_write(w, big, 2000, NULL), 0);
	assert_int_equal(cas_writer_commit(w, NULL, NULL), 0);
	/* Stored bytes count too. */
	assert_int_equal(cas_writer_new(c, hex2, 1500, &w2, NULL), -ENOSPC);
	assert_int_equal(cas_writer_new(c, hex2, 1000, &w2, NULL), 0);
	cas_writer_abort(w2);
	cas_free(c);
}

static void test_disk_full_leaves_nothing(void **state)
{
	char data[100], hex[65];
	struct cd_error err = {};
	struct cas *c = NULL;
	struct cas_usage u;

	memset(data, 'z', sizeof(data));
	sha256_hex(data, sizeof(data), hex);
	assert_int_equal(cas_open(tmpdir, 1 << 20, 1 << 20, &c, NULL), 0);
	write_fail_errno = ENOSPC;
	assert_int_equal(put(c, hex, data, sizeof(data), NULL, &err), -ENOSPC);
	write_fail_errno = 0;
	assert_int_equal(dir_entries("sha256"), 0);
	assert_int_equal(dir_entries("tmp"), 0);
	cas_usage(c, &u);
	assert_int_equal(u.reserved, 0);
	cas_free(c);
}

static void test_crash_leftovers_removed(void **state)
{
	struct cas *c = NULL;
	char path[160];

	assert_int_equal(cas_open(tmpdir, 1 << 20, 1 << 20, &c, NULL), 0);
	cas_free(c);
	snprintf(path, sizeof(path), "%s/tmp/put.0123456789abcdef.deadbeef", tmpdir);
	assert_int_equal(fs_write_atomic(path, "half", 4, 0644), 0);
	assert_int_equal(dir_entries("tmp"), 1);
	assert_int_equal(cas_open(tmpdir, 1 << 20, 1 << 20, &c, NULL), 0);
	assert_int_equal(dir_entries("tmp"), 0);
	cas_free(c);
}

static void test_hex_valid(void **state)
{
	assert_true(
		cas_hex_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	assert_false(
		cas_hex_valid("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
	assert_false(cas_hex_valid("e3b0"));
	assert_false(
		cas_hex_valid("../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	assert_false(cas_hex_valid(NULL));
}

/* Blob i of the eviction tests: 100 bytes of 'a'+i. */
static void blob(int i, char data[100], char hex[65])
{
	memset(data, 'a' + i, 100);
	sha256_hex(data, 100, hex);
}

/* Set a blob's last use (atime and mtime) to `age` seconds ago. */
static void age_blob(const char *hex, time_t age)
{
	char path[256];
	struct timespec ts[2] = { { .tv_sec = time(NULL) - age }, { .tv_sec = time(NULL) - age } };

	snprintf(path, sizeof(path), "%s/sha256/%s", tmpdir, hex);
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static bool pin_hex(const char *hex, void *ctx)
{
	return strcmp(hex, ctx) == 0;
}

static bool blob_present(const char *hex)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/sha256/%s", tmpdir, hex);
	return access(path, F_OK) == 0;
}

/*
 * A full budget evicts least recently used unpinned blobs first, down to need + a tenth of the
 * budget; a read marks a blob used; a pinned blob is never evicted; when only pinned blobs are
 * left the answer is -ENOSPC.
 */
static void test_evict_lru_unpinned(void **state)
{
	char dir[128], data[5][100], hex[5][65];
	struct cas *c = NULL;
	struct cas_usage u;
	uint64_t freed = 0;
	int fd = -1;
	uint64_t size;

	snprintf(dir, sizeof(dir), "%s", tmpdir);
	assert_int_equal(cas_open(dir, 400, 400, &c, NULL), 0);
	for (int i = 0; i < 4; i++) {
		blob(i, data[i], hex[i]);
		assert_int_equal(put(c, hex[i], data[i], 100, NULL, NULL), 0);
	}
	/* oldest first: 0 (pinned), 1, 2, 3; then 1 is read, so it becomes the newest */
	age_blob(hex[0], 4 * 86400);
	age_blob(hex[1], 3 * 86400);
	age_blob(hex[2], 2 * 86400);
	age_blob(hex[3], 1 * 86400);
	assert_int_equal(cas_open_blob(c, hex[1], &fd, &size), 0);
	close(fd);
	blob(4, data[4], hex[4]);
	assert_int_equal(put(c, hex[4], data[4], 100, NULL, NULL), -ENOSPC);
	/* need 100 + headroom 40: two blobs go, 2 then 3; 0 is pinned, 1 was read */
	assert_int_equal(cas_evict(c, 100, pin_hex, hex[0], &freed, NULL), 0);
	assert_int_equal(freed, 200);
	assert_true(blob_present(hex[0]));
	assert_true(blob_present(hex[1]));
	assert_false(blob_present(hex[2]));
	assert_false(blob_present(hex[3]));
	cas_usage(c, &u);
	assert_int_equal(u.bytes, 200);
	assert_int_equal(u.blobs, 2);
	assert_int_equal(u.evicted_blobs, 2);
	assert_int_equal(u.evicted_bytes, 200);
	assert_int_equal(put(c, hex[4], data[4], 100, NULL, NULL), 0);
	/* Room already there: nothing is evicted. */
	assert_int_equal(cas_evict(c, 100, pin_hex, hex[0], &freed, NULL), 0);
	assert_int_equal(freed, 0);
	/* Needing more than the unpinned blobs can give: they go, and the answer is -ENOSPC. */
	assert_int_equal(cas_evict(c, 350, pin_hex, hex[0], &freed, NULL), -ENOSPC);
	assert_true(blob_present(hex[0]));
	assert_false(blob_present(hex[1]));
	/* More than the whole budget can never fit. */
	assert_int_equal(cas_evict(c, 401, pin_hex, hex[0], &freed, NULL), -ENOSPC);
	cas_free(c);
	/* The accounting after eviction matches what a fresh scan finds. */
	assert_int_equal(cas_open(dir, 400, 400, &c, NULL), 0);
	cas_usage(c, &u);
	assert_int_equal(u.blobs, 1);
	assert_int_equal(u.bytes, 100);
	cas_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mismatch_stores_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_caps_and_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_leftovers_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_evict_lru_unpinned, setup, teardown),
		cmocka_unit_test(test_hex_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
