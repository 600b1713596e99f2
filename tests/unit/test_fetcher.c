/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for fetcher/ without a network: CAS protocol helpers, the archive entry policy,
 * extraction, pins, eviction, gc and materialisation on a local cache directory. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetcher/cas.h"
#include "fetcher/fetcher.h"
#include "fetcher/unpack.h"
#include "lib/fs.h"
#include "lib/str.h"

struct tentry {
	const char *path;
	char type;
	const char *data;
	unsigned mode;
	size_t zeros;
};
int tar_build(const struct tentry *e, size_t n, char filter, void **ret, size_t *ret_len);

#define HEX_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HEX_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define HEX_D "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

static char tmpdir[64];

static int setup_tmp(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-fetcher.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown_tmp(void **state)
{
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

/* ---- cas.h --------------------------------------------------------------------------------- */

static void test_digest_parse(void **state)
{
	char hex[CAS_HEX_LEN + 1];
	const char *upper =
		"sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

	assert_int_equal(cas_digest_parse("sha256:" HEX_A, hex), 0);
	assert_string_equal(hex, HEX_A);
	assert_int_equal(cas_digest_parse(HEX_B, hex), 0);
	assert_string_equal(hex, HEX_B);
	assert_int_equal(cas_digest_parse(upper, hex), 0);
	assert_string_equal(hex,
			    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_true(cas_hex_valid(hex));
	assert_int_equal(cas_digest_parse("sha512:" HEX_A, hex), -EINVAL);
	assert_int_equal(cas_digest_parse("sha256:" HEX_A "a", hex), -EINVAL);
	assert_int_equal(cas_digest_parse("sha256:abc", hex), -EINVAL);
	assert_int_equal(cas_digest_parse("sha256:g" HEX_A + 1, hex), -EINVAL);
	assert_int_equal(cas_digest_parse("", hex), -EINVAL);
	assert_int_equal(cas_digest_parse(NULL, hex), -EINVAL);
	assert_false(
		cas_hex_valid("ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"));
	assert_false(cas_hex_valid(HEX_A "0"));
}

static void test_blob_url(void **state)
{
	char *u = NULL;

	assert_int_equal(cas_blob_url("http://h:8080", NULL, HEX_A, &u), 0);
	assert_string_equal(u, "http://h:8080/cas/" HEX_A);
	free(u);
	assert_int_equal(cas_blob_url("https://h/base//", "", HEX_A, &u), 0);
	assert_string_equal(u, "https://h/base/cas/" HEX_A);
	free(u);
	assert_int_equal(cas_blob_url("http://h/", "/main/x/", HEX_A, &u), 0);
	assert_string_equal(u, "http://h/main/x/cas/" HEX_A);
	free(u);
	assert_int_equal(cas_blob_url("ftp://h", NULL, HEX_A, &u), -EINVAL);
	assert_int_equal(cas_blob_url("http://", NULL, HEX_A, &u), -EINVAL);
	assert_int_equal(cas_blob_url("http:///", NULL, HEX_A, &u), -EINVAL);
	assert_int_equal(cas_blob_url("http://h?x=1", NULL, HEX_A, &u), -EINVAL);
	assert_int_equal(cas_blob_url("http://h", "../etc", HEX_A, &u), -EINVAL);
	assert_int_equal(cas_blob_url("http://h", "a b", HEX_A, &u), -EINVAL);
	assert_int_equal(cas_blob_url("http://h", NULL, "abc", &u), -EINVAL);
}

static void test_content_range(void **state)
{
	uint64_t a, b, t;

	assert_int_equal(cas_parse_content_range(" bytes 0-99/100\r\n", &a, &b, &t), 0);
	assert_true(a == 0 && b == 99 && t == 100);
	assert_int_equal(cas_parse_content_range("bytes 5-9/*", &a, &b, &t), 0);
	assert_true(a == 5 && b == 9 && t == UINT64_MAX);
	assert_int_equal(cas_parse_content_range("bytes 9-5/10", &a, &b, &t), -EINVAL);
	assert_int_equal(cas_parse_content_range("bytes 0-10/10", &a, &b, &t), -EINVAL);
	assert_int_equal(cas_parse_content_range("items 0-1/2", &a, &b, &t), -EINVAL);
	assert_int_equal(cas_parse_content_range("bytes 0-1/2x", &a, &b, &t), -EINVAL);
	assert_int_equal(cas_parse_content_range("bytes -1/2", &a, &b, &t), -EINVAL);
	assert_int_equal(cas_parse_content_range("bytes 0-99999999999999999999/1", &a, &b, &t),
			 -EINVAL);
	assert_int_equal(cas_parse_content_range(NULL, &a, &b, &t), -EINVAL);
}

static void test_backoff(void **state)
{
	/* Equal jitter: within [d/2, d], d doubling from base up to max. */
	assert_int_equal(cas_backoff_ms(0, 100, 5000, 0), 50);
	assert_in_range(cas_backoff_ms(0, 100, 5000, UINT32_MAX), 99, 100);
	assert_int_equal(cas_backoff_ms(3, 100, 5000, 0), 400);
	assert_in_range(cas_backoff_ms(3, 100, 5000, UINT32_MAX / 2), 599, 601);
	assert_int_equal(cas_backoff_ms(10, 100, 5000, 0), 2500);
	assert_in_range(cas_backoff_ms(1000, 100, 5000, UINT32_MAX), 4999, 5000);
	for (unsigned i = 0; i < 70; i++)
		assert_true(cas_backoff_ms(i, 200, 5000, 0x12345678u) <= 5000);
}

/* ---- unpack policy ------------------------------------------------------------------------- */

static void check_norm(const char *in, const char *want)
{
	char *out = NULL;
	const char *why = NULL;
	int r = unpack_normalize_path(in, 4096, &out, &why);

	if (want) {
		assert_int_equal(r, 0);
		assert_string_equal(out, want);
		free(out);
	} else {
		assert_int_equal(r, -EPERM);
		assert_non_null(why);
	}
}

static void test_normalize_path(void **state)
{
	char long_path[5000];

	check_norm("./a//b/", "a/b");
	check_norm("./", "");
	check_norm(".", "");
	check_norm("a/./b/.", "a/b");
	check_norm("...", "...");
	check_norm("..a/b..", "..a/b..");
	check_norm("/etc/passwd", NULL);
	check_norm("a/../b", NULL);
	check_norm("..", NULL);
	check_norm("a/..", NULL);
	check_norm("", NULL);
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = '\0';
	check_norm(long_path, NULL);
}

static void test_check_symlink(void **state)
{
	const char *why = NULL;

	assert_int_equal(unpack_check_symlink("a/l", "../b", 4096, &why), 0);
	assert_int_equal(unpack_check_symlink("a/b/l", "../../x", 4096, &why), 0);
	assert_int_equal(unpack_check_symlink("l", "a/..", 4096, &why), 0);
	assert_int_equal(unpack_check_symlink("l", "./x/./y", 4096, &why), 0);
	assert_int_equal(unpack_check_symlink("l", "../x", 4096, &why), -EPERM);
	assert_string_equal(why, "symlink points outside the archive");
	assert_int_equal(unpack_check_symlink("a/l", "../../x", 4096, &why), -EPERM);
	assert_int_equal(unpack_check_symlink("l", "a/../../x", 4096, &why), -EPERM);
	assert_int_equal(unpack_check_symlink("l", "/etc/passwd", 4096, &why), -EPERM);
	assert_string_equal(why, "symlink to an absolute path");
	assert_int_equal(unpack_check_symlink("l", "", 4096, &why), -EPERM);
}

static void test_sniff(void **state)
{
	unsigned char buf[512] = { 0 };

	memcpy(buf, "\x1f\x8b\x08", 3);
	assert_int_equal(fetcher_sniff(buf, 3), FETCHER_KIND_ARCHIVE);
	memcpy(buf, "\x28\xb5\x2f\xfd", 4);
	assert_int_equal(fetcher_sniff(buf, 4), FETCHER_KIND_ARCHIVE);
	memset(buf, 0, sizeof(buf));
	memcpy(buf + 257, "ustar", 5);
	assert_int_equal(fetcher_sniff(buf, sizeof(buf)), FETCHER_KIND_ARCHIVE);
	assert_int_equal(fetcher_sniff(buf, 200), FETCHER_KIND_EXECUTABLE);
	memcpy(buf,
	       "\x7f"
	       "ELF",
	       4);
	memset(buf + 257, 0, 5);
	assert_int_equal(fetcher_sniff(buf, sizeof(buf)), FETCHER_KIND_EXECUTABLE);
	assert_int_equal(fetcher_sniff("#!/bin/sh\n", 10), FETCHER_KIND_EXECUTABLE);
	assert_int_equal(fetcher_sniff(buf, 0), FETCHER_KIND_EXECUTABLE);
}

/* Scan one crafted archive; expect code and a message naming `entry` when code < 0. */
static void scan_expect(const struct tentry *e, size_t n, char filter,
			const struct unpack_limits *lim, int code, const char *entry)
{
	void *data = NULL;
	size_t len = 0;
	struct cd_error err = { 0 };
	struct unpack_limits l;
	char want[256];

	if (!lim) {
		unpack_limits_init(&l);
		lim = &l;
	}
	assert_int_equal(tar_build(e, n, filter, &data, &len), 0);
	assert_int_equal(unpack_scan_memory(data, len, lim, &err), code);
	if (code < 0) {
		snprintf(want, sizeof(want), "archive entry \"%s\"", entry);
		if (!strstr(err.msg, want))
			fail_msg("message \"%s\" does not name %s", err.msg, want);
	}
	free(data);
}

static void test_scan_policy(void **state)
{
	struct unpack_limits lim;
	const struct tentry good[] = {
		{ .path = "./", .type = 'd' },
		{ .path = "bin", .type = 'd' },
		{ .path = "bin/app", .type = 'f', .data = "#!/bin/sh\necho hi\n", .mode = 04755 },
		{ .path = "bin/link", .type = 'l', .data = "app" },
		{ .path = "lib/up", .type = 'l', .data = "../bin/app" },
		{ .path = "bin/hard", .type = 'h', .data = "bin/app" },
	};
	const struct tentry abs[] = { { .path = "/etc/evil", .type = 'f', .data = "x" } };
	const struct tentry dotdot[] = { { .path = "a/../../evil", .type = 'f', .data = "x" } };
	const struct tentry sym_abs[] = { { .path = "ok", .type = 'f', .data = "x" },
					  { .path = "lnk", .type = 'l', .data = "/etc/passwd" } };
	const struct tentry sym_up[] = { { .path = "d/lnk", .type = 'l', .data = "../../etc" } };
	const struct tentry hard_out[] = { { .path = "hl", .type = 'h', .data = "../outside" } };
	const struct tentry hard_abs[] = { { .path = "hl", .type = 'h', .data = "/etc/shadow" } };
	const struct tentry dev[] = { { .path = "dev/null0", .type = 'c' } };
	const struct tentry fifo[] = { { .path = "pipe", .type = 'p' } };
	const struct tentry bomb[] = {
		{ .path = "zeros", .type = 'f', .data = NULL, .mode = 0, .zeros = 4u << 20 }
	};
	const struct tentry many[] = { { .path = "a", .type = 'f', .data = "1" },
				       { .path = "b", .type = 'f', .data = "2" },
				       { .path = "c", .type = 'f', .data = "3" } };

	scan_expect(good, ARRAY_SIZE(good), 0, NULL, 0, NULL);
	scan_expect(good, ARRAY_SIZE(good), 'g', NULL, 0, NULL);
	scan_expect(good, ARRAY_SIZE(good), 'z', NULL, 0, NULL);
	scan_expect(abs, 1, 0, NULL, -EPERM, "/etc/evil");
	scan_expect(dotdot, 1, 'g', NULL, -EPERM, "a/../../evil");
	scan_expect(sym_abs, 2, 0, NULL, -EPERM, "lnk");
	scan_expect(sym_up, 1, 'z', NULL, -EPERM, "d/lnk");
	scan_expect(hard_out, 1, 0, NULL, -EPERM, "hl");
	scan_expect(hard_abs, 1, 0, NULL, -EPERM, "hl");
	scan_expect(dev, 1, 0, NULL, -EPERM, "dev/null0");
	scan_expect(fifo, 1, 0, NULL, -EPERM, "pipe");
	unpack_limits_init(&lim);
	lim.max_total_bytes = 1 << 20;
	scan_expect(bomb, 1, 'g', &lim, -EFBIG, "zeros");
	unpack_limits_init(&lim);
	lim.max_entries = 2;
	scan_expect(many, 3, 0, &lim, -EFBIG, "c");
}

static void test_scan_garbage(void **state)
{
	struct unpack_limits l;
	struct cd_error err = { 0 };
	char junk[1024];

	unpack_limits_init(&l);
	memset(junk, 'x', sizeof(junk));
	assert_true(unpack_scan_memory(junk, sizeof(junk), &l, &err) < 0);
	assert_true(err.msg[0] != '\0');
}

/* Extract one crafted archive into tmpdir/out; returns the result, message in err. */
static int extract(const struct tentry *e, size_t n, char filter, struct cd_error *err)
{
	char path[128], dest[128];
	void *data = NULL;
	size_t len = 0;
	struct unpack_limits l;
	int fd, r;

	assert_int_equal(tar_build(e, n, filter, &data, &len), 0);
	snprintf(path, sizeof(path), "%s/archive", tmpdir);
	assert_int_equal(fs_write_atomic(path, data, len, 0644), 0);
	free(data);
	snprintf(dest, sizeof(dest), "%s/out", tmpdir);
	(void)fs_rm_rf_at(AT_FDCWD, dest);
	assert_int_equal(mkdir(dest, 0755), 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	unpack_limits_init(&l);
	r = unpack_archive_fd(fd, dest, &l, NULL, err);
	close(fd);
	return r;
}

static void test_extract_good(void **state)
{
	const struct tentry good[] = {
		{ .path = "./", .type = 'd' },
		{ .path = "bin", .type = 'd', .data = NULL, .mode = 0777 },
		{ .path = "bin/app", .type = 'f', .data = "#!/bin/sh\necho hi\n", .mode = 06777 },
		{ .path = "bin/link", .type = 'l', .data = "app" },
		{ .path = "bin/hard", .type = 'h', .data = "bin/app" },
		{ .path = "share/doc/readme", .type = 'f', .data = "read me" },
	};
	struct cd_error err = { 0 };
	char p[256], target[64];
	struct stat st, st2;
	ssize_t n;

	assert_int_equal(extract(good, ARRAY_SIZE(good), 'z', &err), 0);
	snprintf(p, sizeof(p), "%s/out/bin/app", tmpdir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755); /* setuid, setgid, g+w, o+w stripped */
	snprintf(p, sizeof(p), "%s/out/bin", tmpdir);
	assert_int_equal(stat(p, &st2), 0);
	assert_int_equal(st2.st_mode & 07777, 0755);
	snprintf(p, sizeof(p), "%s/out/bin/hard", tmpdir);
	assert_int_equal(stat(p, &st2), 0);
	assert_true(st.st_ino == st2.st_ino);
	snprintf(p, sizeof(p), "%s/out/bin/link", tmpdir);
	n = readlink(p, target, sizeof(target) - 1);
	assert_int_equal(n, 3);
	target[n] = '\0';
	assert_string_equal(target, "app");
}

static void test_extract_refusals(void **state)
{
	/* Each link is confined on its own; together "b" resolves to the parent of the tree. */
	const struct tentry chain[] = { { .path = "a", .type = 'l', .data = "." },
					{ .path = "b", .type = 'l', .data = "a/.." } };
	/* Writing through a symlink to a directory is refused too. */
	const struct tentry through[] = { { .path = "sub", .type = 'd' },
					  { .path = "l", .type = 'l', .data = "sub" },
					  { .path = "l/f", .type = 'f', .data = "x" } };
	const struct tentry dev[] = { { .path = "ok", .type = 'f', .data = "x" },
				      { .path = "dev/sda", .type = 'c' } };
	/* A hardlink whose target path runs through a symlink (which could lead anywhere). */
	const struct tentry hard_through[] = { { .path = "sub", .type = 'd' },
					       { .path = "sub/f", .type = 'f', .data = "x" },
					       { .path = "l", .type = 'l', .data = "sub" },
					       { .path = "h", .type = 'h', .data = "l/f" } };
	char p[256];
	struct cd_error err = { 0 };

	assert_int_equal(extract(chain, ARRAY_SIZE(chain), 0, &err), -EPERM);
	assert_non_null(strstr(err.msg, "archive entry \"b\""));
	cd_error_reset(&err);
	assert_int_equal(extract(through, ARRAY_SIZE(through), 0, &err), -EPERM);
	assert_non_null(strstr(err.msg, "archive entry \"l/f\""));
	cd_error_reset(&err);
	assert_int_equal(extract(hard_through, ARRAY_SIZE(hard_through), 0, &err), -EPERM);
	assert_non_null(strstr(err.msg, "archive entry \"h\""));
	cd_error_reset(&err);
	assert_int_equal(extract(dev, ARRAY_SIZE(dev), 'g', &err), -EPERM);
	assert_non_null(strstr(err.msg, "archive entry \"dev/sda\" refused: device node"));
	snprintf(p, sizeof(p), "%s/out/dev/sda", tmpdir);
	assert_int_equal(access(p, F_OK), -1);
}

static void test_extract_never_writes_through_final_symlink(void **state)
{
	/* A later entry with the same name as a symlink replaces the link, never its target. */
	const struct tentry e[] = {
		{ .path = "dir", .type = 'd' },
		{ .path = "l", .type = 'l', .data = "dir/target" },
		{ .path = "l", .type = 'f', .data = "payload" },
	};
	struct cd_error err = { 0 };
	char p[256];
	struct stat st;

	assert_int_equal(extract(e, ARRAY_SIZE(e), 0, &err), 0);
	snprintf(p, sizeof(p), "%s/out/l", tmpdir);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	snprintf(p, sizeof(p), "%s/out/dir/target", tmpdir);
	assert_int_equal(access(p, F_OK), -1);
}

/* ---- cache: pins, eviction, gc, materialisation ------------------------------------------- */

static void put_blob(const char *cache, const char *hex, size_t size, time_t mtime)
{
	char path[256];
	char *buf = calloc(1, size + 1);
	struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };

	assert_non_null(buf);
	snprintf(path, sizeof(path), "%s/sha256/%s", cache, hex);
	assert_int_equal(fs_write_atomic(path, buf, size, 0444), 0);
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	free(buf);
}

static bool blob_exists(const char *cache, const char *hex)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/sha256/%s", cache, hex);
	return access(path, F_OK) == 0;
}

static void test_pins_persist(void **state)
{
	struct fetcher *f = NULL;
	struct cd_error err = { 0 };
	unsigned n = 99;

	assert_int_equal(fetcher_new(tmpdir, 0, &f, &err), 0);
	assert_int_equal(fetcher_pin_count(f, HEX_A, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(fetcher_pin(f, HEX_A, &err), 0);
	assert_int_equal(fetcher_pin(f, "sha256:" HEX_A, &err), 0);
	assert_int_equal(fetcher_unpin(f, HEX_B, &err), -ENOENT);
	assert_int_equal(fetcher_pin(f, "md5:x", &err), -EINVAL);
	fetcher_free(f);

	/* A restarted daemon sees the same count. */
	assert_int_equal(fetcher_new(tmpdir, 0, &f, &err), 0);
	assert_int_equal(fetcher_pin_count(f, HEX_A, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(fetcher_pin(f, HEX_C, &err), 0);
	{
		struct fetcher_pin *pins = NULL;
		size_t np = 0;

		assert_int_equal(fetcher_pin_list(f, &pins, &np), 0);
		assert_int_equal(np, 2);
		assert_string_equal(pins[0].digest, "sha256:" HEX_A);
		assert_int_equal(pins[0].count, 2);
		assert_string_equal(pins[1].digest, "sha256:" HEX_C);
		assert_int_equal(pins[1].count, 1);
		free(pins);
	}
	assert_int_equal(fetcher_unpin(f, HEX_C, &err), 0);
	assert_int_equal(fetcher_unpin(f, HEX_A, &err), 0);
	assert_int_equal(fetcher_unpin(f, HEX_A, &err), 0);
	{
		struct fetcher_pin *pins = (void *)1;
		size_t np = 9;

		assert_int_equal(fetcher_pin_list(f, &pins, &np), 0);
		assert_int_equal(np, 0);
		assert_null(pins);
	}
	assert_int_equal(fetcher_pin_count(f, HEX_A, &n), 0);
	assert_int_equal(n, 0);
	cd_error_reset(&err);
	assert_int_equal(fetcher_unpin(f, HEX_A, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not pinned"));
	fetcher_free(f);
}

static void test_eviction_spares_pins(void **state)
{
	struct fetcher *f = NULL;
	struct cd_error err = { 0 };
	struct fetcher_gc_stats st;

	/* 4 blobs of 1000 bytes, budget 2500: two must go. A is oldest but pinned. */
	assert_int_equal(fetcher_new(tmpdir, 2500, &f, &err), 0);
	put_blob(tmpdir, HEX_A, 1000, 1000);
	put_blob(tmpdir, HEX_B, 1000, 2000);
	put_blob(tmpdir, HEX_C, 1000, 3000);
	put_blob(tmpdir, HEX_D, 1000, 4000);
	assert_int_equal(fetcher_pin(f, HEX_A, &err), 0);
	assert_int_equal(fetcher_gc(f, &st, &err), 0);
	assert_int_equal(st.evicted, 2);
	assert_true(st.bytes_evicted == 2000 && st.bytes_in_use == 2000);
	assert_true(blob_exists(tmpdir, HEX_A));
	assert_false(blob_exists(tmpdir, HEX_B));
	assert_false(blob_exists(tmpdir, HEX_C));
	assert_true(blob_exists(tmpdir, HEX_D));

	/* Everything pinned: over budget, but nothing pinned is ever removed. */
	put_blob(tmpdir, HEX_B, 1000, 5000);
	assert_int_equal(fetcher_pin(f, HEX_B, &err), 0);
	assert_int_equal(fetcher_pin(f, HEX_D, &err), 0);
	assert_int_equal(fetcher_gc(f, &st, &err), 0);
	assert_int_equal(st.evicted, 0);
	assert_true(blob_exists(tmpdir, HEX_A) && blob_exists(tmpdir, HEX_B) &&
		    blob_exists(tmpdir, HEX_D));
	/* Unpinned and recently used (a lookup touches it): the older A goes first. */
	assert_int_equal(fetcher_unpin(f, HEX_A, &err), 0);
	assert_int_equal(fetcher_unpin(f, HEX_D, &err), 0);
	{
		char *p = NULL;

		assert_int_equal(fetcher_lookup(f, HEX_D, &p), 0);
		free(p);
	}
	assert_int_equal(fetcher_gc(f, &st, &err), 0);
	assert_int_equal(st.evicted, 1);
	assert_false(blob_exists(tmpdir, HEX_A));
	assert_true(blob_exists(tmpdir, HEX_D));
	fetcher_free(f);
}

static void test_budget_counts_unpacked_trees(void **state)
{
	const struct tentry tree[] = { { .path = "zeros", .type = 'f', .zeros = 60000 } };
	struct fetcher *f = NULL;
	struct cd_error err = { 0 };
	char path[256], *dir = NULL;
	void *data = NULL;
	size_t len = 0;

	assert_int_equal(tar_build(tree, 1, 'g', &data, &len), 0);
	/* Room for both blobs, not for the 60000 extracted bytes as well. */
	assert_int_equal(fetcher_new(tmpdir, 1000 + len + 30000, &f, &err), 0);
	put_blob(tmpdir, HEX_A, 1000, 1000);
	snprintf(path, sizeof(path), "%s/sha256/" HEX_B, tmpdir);
	assert_int_equal(fs_write_atomic(path, data, len, 0444), 0);
	free(data);
	if (fetcher_materialize(f, HEX_B, FETCHER_KIND_AUTO, NULL, NULL, &dir, &err) < 0)
		fail_msg("%s", err.msg);
	free(dir);
	assert_false(blob_exists(tmpdir, HEX_A)); /* evicted to make room for the tree */
	assert_true(blob_exists(tmpdir, HEX_B));
	fetcher_free(f);
}

static void test_gc_leftovers(void **state)
{
	struct fetcher *f = NULL;
	struct cd_error err = { 0 };
	struct fetcher_gc_stats st;
	char p[256];
	int busy;

	assert_int_equal(fetcher_new(tmpdir, 0, &f, &err), 0);
	snprintf(p, sizeof(p), "%s/tmp/" HEX_A ".0123.part", tmpdir);
	assert_int_equal(fs_write_atomic(p, "x", 1, 0600), 0);
	snprintf(p, sizeof(p), "%s/tmp/" HEX_A ".lock", tmpdir);
	assert_int_equal(fs_write_atomic(p, "", 0, 0600), 0);
	snprintf(p, sizeof(p), "%s/unpacked/.tmp-" HEX_C "-99", tmpdir);
	assert_int_equal(mkdir(p, 0755), 0);
	/* B is being downloaded right now by someone holding its lock: hands off. */
	snprintf(p, sizeof(p), "%s/tmp/" HEX_B ".5678.part", tmpdir);
	assert_int_equal(fs_write_atomic(p, "y", 1, 0600), 0);
	snprintf(p, sizeof(p), "%s/tmp/" HEX_B ".lock", tmpdir);
	busy = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(busy >= 0);
	assert_int_equal(flock(busy, LOCK_EX), 0);

	assert_int_equal(fetcher_gc(f, &st, &err), 0);
	assert_int_equal(st.tmp_removed, 3);
	snprintf(p, sizeof(p), "%s/tmp/" HEX_A ".0123.part", tmpdir);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/tmp/" HEX_B ".5678.part", tmpdir);
	assert_int_equal(access(p, F_OK), 0);
	close(busy);
	fetcher_free(f);
}

static void test_materialize_executable(void **state)
{
	struct fetcher *f = NULL;
	struct cd_error err = { 0 };
	char *dir = NULL, p[256], blob[256];
	struct stat a, b;

	assert_int_equal(fetcher_new(tmpdir, 0, &f, &err), 0);
	assert_int_equal(fetcher_materialize(f, HEX_A, FETCHER_KIND_AUTO, NULL, NULL, &dir, &err),
			 -ENOENT);
	put_blob(tmpdir, HEX_A, 100, 1000); /* zeros: no archive magic → a program */
	assert_int_equal(fetcher_materialize(f, HEX_A, FETCHER_KIND_AUTO, NULL, NULL, &dir, &err),
			 0);
	snprintf(p, sizeof(p), "%s/artifact", dir);
	snprintf(blob, sizeof(blob), "%s/sha256/" HEX_A, fetcher_dir(f));
	assert_int_equal(stat(p, &a), 0);
	assert_int_equal(stat(blob, &b), 0);
	assert_true(a.st_ino == b.st_ino); /* a hardlink, not a copy */
	assert_int_equal(a.st_mode & 07777, 0555);
	free(dir);
	/* Another name for the same program joins the same directory. */
	assert_int_equal(
		fetcher_materialize(f, HEX_A, FETCHER_KIND_EXECUTABLE, "srv", NULL, &dir, &err), 0);
	snprintf(p, sizeof(p), "%s/srv", dir);
	assert_int_equal(access(p, X_OK), 0);
	free(dir);
	assert_int_equal(fetcher_materialize(f, HEX_A, FETCHER_KIND_EXECUTABLE, "../x", NULL, &dir,
					     &err),
			 -EINVAL);
	fetcher_free(f);
}

static void test_fetch_without_mirrors(void **state)
{
	struct fetcher *f = NULL;
	struct cd_error err = { 0 };
	char *p = NULL;

	assert_int_equal(fetcher_new(tmpdir, 0, &f, &err), 0);
	assert_int_equal(fetcher_fetch(f, HEX_A, NULL, 0, NULL, &p, &err), -EINVAL);
	put_blob(tmpdir, HEX_A, 10, 1000);
	assert_int_equal(fetcher_fetch(f, HEX_A, NULL, 0, NULL, &p, &err), 0);
	assert_true(endswith(p, "/sha256/" HEX_A));
	free(p);
	cd_error_reset(&err);
	assert_int_equal(fetcher_fetch(f, "sha256:nothex", NULL, 0, NULL, &p, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid digest"));
	fetcher_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_parse),
		cmocka_unit_test(test_blob_url),
		cmocka_unit_test(test_content_range),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_normalize_path),
		cmocka_unit_test(test_check_symlink),
		cmocka_unit_test(test_sniff),
		cmocka_unit_test(test_scan_policy),
		cmocka_unit_test(test_scan_garbage),
		cmocka_unit_test_setup_teardown(test_extract_good, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_extract_refusals, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_extract_never_writes_through_final_symlink,
						setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_pins_persist, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_eviction_spares_pins, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_budget_counts_unpacked_trees, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_gc_leftovers, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_materialize_executable, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_fetch_without_mirrors, setup_tmp,
						teardown_tmp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
