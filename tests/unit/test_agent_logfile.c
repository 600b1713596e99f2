/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for agent/logfile: merged streams, line cap, rotation, tail across rotated files. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/logfile.h"
#include "lib/fs.h"

static char tmpdir[64];
static int dfd = -1;

static int setup(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-agent-logfile.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	return 0;
}

static int teardown(void **state)
{
	close(dfd);
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static char *slurp(const char *name)
{
	char *out = NULL;
	int r = fs_read_file_at(dfd, name, 1 << 20, &out, NULL);

	if (r == -ENOENT)
		return NULL;
	assert_int_equal(r, 0);
	return out;
}

static void test_logfile_streams_do_not_interleave(void **state)
{
	struct logfile *lf = NULL;
	_cleanup_free_ char *text = NULL;

	assert_int_equal(logfile_open(dfd, "console.log", 1 << 20, 3, 1024, &lf), 0);
	assert_int_equal(logfile_feed(lf, 0, "hello ", 6), 0);
	assert_int_equal(logfile_feed(lf, 1, "err line\n", 9), 0);
	assert_int_equal(logfile_feed(lf, 0, "world\nsecond", 12), 0);
	assert_int_equal(logfile_feed(lf, 2, "x", 1), -EINVAL);
	logfile_close(lf); /* flushes "second" with a newline */
	text = slurp("console.log");
	assert_string_equal(text, "err line\nhello world\nsecond\n");
}

static void test_logfile_line_cap_splits(void **state)
{
	struct logfile *lf = NULL;
	_cleanup_free_ char *text = NULL;
	char big[25];

	memset(big, 'a', sizeof(big));
	assert_int_equal(logfile_open(dfd, "c.log", 1 << 20, 1, 11, &lf), 0);
	/* 25 bytes with line_max 11 → 10 + 10 + 5 */
	for (size_t i = 0; i < sizeof(big); i++)
		assert_int_equal(logfile_feed(lf, 0, &big[i], 1), 0);
	assert_int_equal(logfile_feed(lf, 0, "\n", 1), 0);
	assert_int_equal(logfile_feed(lf, 1, "bbbbbbbbbbbbbbb\n", 16), 0);
	logfile_close(lf);
	text = slurp("c.log");
	assert_string_equal(text, "aaaaaaaaaa\naaaaaaaaaa\naaaaa\nbbbbbbbbbb\nbbbbb\n");
}

static void test_logfile_rotation_keeps_n(void **state)
{
	struct logfile *lf = NULL;
	char line[32];

	assert_int_equal(logfile_open(dfd, "r.log", 20, 2, 100, &lf), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(line, sizeof(line), "line %02d\n", i); /* 8 bytes */
		assert_int_equal(logfile_feed(lf, 0, line, strlen(line)), 0);
		assert_true(logfile_size(lf) <= 20);
	}
	logfile_close(lf);
	{
		_cleanup_free_ char *cur = slurp("r.log"), *one = slurp("r.log.1"),
				    *two = slurp("r.log.2"), *three = slurp("r.log.3");

		assert_string_equal(cur, "line 08\nline 09\n");
		assert_string_equal(one, "line 06\nline 07\n");
		assert_string_equal(two, "line 04\nline 05\n");
		assert_null(three);
	}
	/* tail sees across the rotated files, oldest first */
	{
		_cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
		uint64_t off = 0;
		ino_t ino = 0;

		assert_int_equal(logfile_tail(dfd, "r.log", 3, 1 << 20, &out, &off, &ino), 0);
		assert_string_equal(out.buf, "line 07\nline 08\nline 09\n");
		assert_int_equal(off, 16);
		assert_true(ino != 0);
		strbuf_reset(&out);
		assert_int_equal(logfile_tail(dfd, "r.log", 100, 1 << 20, &out, NULL, NULL), 0);
		assert_string_equal(out.buf,
				    "line 04\nline 05\nline 06\nline 07\nline 08\nline 09\n");
		strbuf_reset(&out);
		assert_int_equal(logfile_tail(dfd, "r.log", 0, 1 << 20, &out, &off, NULL), 0);
		assert_int_equal(out.len, 0);
		assert_int_equal(off, 16);
	}
}

static void test_logfile_keep_zero_truncates(void **state)
{
	struct logfile *lf = NULL;
	_cleanup_free_ char *text = NULL, *one = NULL;

	assert_int_equal(logfile_open(dfd, "k.log", 10, 0, 100, &lf), 0);
	assert_int_equal(logfile_feed(lf, 0, "12345678\n", 9), 0);
	assert_int_equal(logfile_feed(lf, 0, "abcdefgh\n", 9), 0);
	logfile_close(lf);
	text = slurp("k.log");
	one = slurp("k.log.1");
	assert_string_equal(text, "abcdefgh\n");
	assert_null(one);
}

static void test_logfile_tail_missing_and_reopen_appends(void **state)
{
	_cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
	struct logfile *lf = NULL;
	uint64_t off = 99;

	assert_int_equal(logfile_tail(dfd, "none.log", 10, 1024, &out, &off, NULL), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(off, 0);

	/* a restarted shim appends to the same log */
	assert_int_equal(logfile_open(dfd, "a.log", 1 << 20, 1, 100, &lf), 0);
	assert_int_equal(logfile_feed(lf, 0, "one\n", 4), 0);
	logfile_close(lf);
	assert_int_equal(logfile_open(dfd, "a.log", 1 << 20, 1, 100, &lf), 0);
	assert_int_equal(logfile_size(lf), 4);
	assert_int_equal(logfile_feed(lf, 1, "two\n", 4), 0);
	logfile_close(lf);
	assert_int_equal(logfile_tail(dfd, "a.log", 1, 1024, &out, &off, NULL), 0);
	assert_string_equal(out.buf, "two\n");
	assert_int_equal(off, 8);
}

static void test_logfile_bad_args(void **state)
{
	struct logfile *lf = NULL;

	assert_int_equal(logfile_open(dfd, "a/b", 10, 1, 10, &lf), -EINVAL);
	assert_int_equal(logfile_open(dfd, "x", 0, 1, 10, &lf), -EINVAL);
	assert_int_equal(logfile_open(dfd, "x", 10, 1, 1, &lf), -EINVAL);
	assert_int_equal(logfile_open(-1, "x", 10, 1, 10, &lf), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_logfile_streams_do_not_interleave, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_logfile_line_cap_splits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logfile_rotation_keeps_n, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logfile_keep_zero_truncates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logfile_tail_missing_and_reopen_appends, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_logfile_bad_args, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
