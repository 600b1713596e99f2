/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for lib/: logging format, clocks, fs durability helpers, ids, strbuf, parsing. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/clock.h"
#include "lib/error.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/log.h"
#include "lib/proc.h"
#include "lib/sdnotify.h"
#include "lib/str.h"

/* Fault injection: make fsync fail on demand (SQLite's habit of testing failure paths). */
int __real_fsync(int fd);
int __wrap_fsync(int fd);
static int fsync_fail_errno;
int __wrap_fsync(int fd)
{
	if (fsync_fail_errno) {
		errno = fsync_fail_errno;
		return -1;
	}
	return __real_fsync(fd);
}

static char tmpdir[64];

static int setup_tmp(void **state)
{
	strcpy(tmpdir, "/tmp/cd-test-lib.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown_tmp(void **state)
{
	fsync_fail_errno = 0;
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

static char *capture_log(void (*fn)(void))
{
	char path[] = "/tmp/cd-log.XXXXXX";
	int fd = mkstemp(path);
	char *out = NULL;

	assert_true(fd >= 0);
	log_set_fd(fd);
	fn();
	log_set_fd(2);
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 1 << 20, &out, NULL), 0);
	close(fd);
	unlink(path);
	return out;
}

static void emit_info(void)
{
	log_open("testprog");
	log_set_level(LOG_LEVEL_INFO);
	log_info("task started", "task=%s pid=%d", "abc", 42);
	log_debug("hidden");
}

static void test_log_logfmt_line(void **state)
{
	_cleanup_free_ char *out = capture_log(emit_info);

	assert_non_null(
		strstr(out, " level=info prog=testprog msg=\"task started\" task=abc pid=42\n"));
	assert_true(startswith(out, "ts=") != NULL);
	assert_null(strstr(out, "hidden"));
}

static void emit_errno(void)
{
	int r = log_error_errno(-ENOENT, "open failed", "path=%s", "/x");
	assert_int_equal(r, -ENOENT);
	r = log_warn_errno(EACCES, "denied");
	assert_int_equal(r, -EACCES);
}

static void test_log_errno(void **state)
{
	_cleanup_free_ char *out = capture_log(emit_errno);

	assert_non_null(
		strstr(out, "msg=\"open failed\" path=/x err=\"No such file or directory\""));
	assert_non_null(
		strstr(out, "level=warn prog=testprog msg=denied err=\"Permission denied\""));
}

static void test_log_quote(void **state)
{
	char buf[64];

	assert_string_equal(log_quote("plain", buf, sizeof(buf)), "plain");
	assert_string_equal(log_quote("", buf, sizeof(buf)), "\"\"");
	assert_string_equal(log_quote("a b", buf, sizeof(buf)), "\"a b\"");
	assert_string_equal(log_quote("k=v", buf, sizeof(buf)), "\"k=v\"");
	assert_string_equal(log_quote("q\"\\\n\x01", buf, sizeof(buf)), "\"q\\\"\\\\\\n\\x01\"");
	char big[200];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	log_quote(big, buf, 16);
	assert_true(strlen(buf) < 16);
	assert_true(endswith(buf, "...\""));
}

static void test_log_level_parse(void **state)
{
	enum log_level l;

	assert_int_equal(log_level_from_string("debug", &l), 0);
	assert_int_equal(l, LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_from_string("WARNING", &l), 0);
	assert_int_equal(l, LOG_LEVEL_WARN);
	assert_int_equal(log_level_from_string("loud", &l), -EINVAL);
	assert_int_equal(log_level_from_string(NULL, &l), -EINVAL);
}

static void test_clock_roundtrip(void **state)
{
	char buf[40];
	usec_t t;

	assert_string_equal(clock_format_rfc3339(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z");
	assert_int_equal(clock_parse_rfc3339("2026-11-25T22:46:23.123Z", &t), 0);
	assert_string_equal(clock_format_rfc3339(t, buf, sizeof(buf)), "2026-11-25T22:46:23.123Z");
	assert_int_equal(clock_parse_rfc3339("2026-11-25T23:46:23.123+01:00", &t), 0);
	assert_string_equal(clock_format_rfc3339(t, buf, sizeof(buf)), "2026-11-25T22:46:23.123Z");
	assert_int_equal(clock_parse_rfc3339("2026-11-25T22:46:23", &t), -EINVAL);
	assert_int_equal(clock_parse_rfc3339("2026-13-25T22:46:23Z", &t), -EINVAL);
	assert_int_equal(clock_parse_rfc3339("2026-11-25T22:46:23.Z", &t), -EINVAL);
	assert_int_equal(clock_parse_rfc3339("", &t), -EINVAL);
	assert_string_equal(clock_format_rfc3339(0, buf, 10), "");
	/* leap days, century rules and year ends, against gmtime_r */
	for (int64_t sec = 0; sec < INT64_C(253402300800); sec += INT64_C(86400) * 37 + 3607) {
		struct tm tm;
		time_t tt = (time_t)sec;
		char want[40];

		assert_non_null(gmtime_r(&tt, &tm));
		strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S.042Z", &tm);
		assert_string_equal(clock_format_rfc3339((usec_t)sec * USEC_PER_SEC + 42999, buf,
							 sizeof(buf)),
				    want);
	}
	assert_string_equal(clock_format_rfc3339(951782400 * USEC_PER_SEC, buf, sizeof(buf)),
			    "2000-02-29T00:00:00.000Z");
	assert_string_equal(clock_format_rfc3339(INT64_C(253402300799) * USEC_PER_SEC + 999999, buf,
						 sizeof(buf)),
			    "9999-12-31T23:59:59.999Z");
}

static void test_clock_monotonic(void **state)
{
	usec_t a = clock_mono_usec();

	clock_sleep_usec(2000);
	assert_true(clock_mono_usec() - a >= 2000);
	assert_true(clock_real_usec() > 1700000000ULL * USEC_PER_SEC);
}

static void test_fs_atomic_write_and_read(void **state)
{
	char path[128];
	_cleanup_free_ char *got = NULL;
	size_t len;
	struct stat st;

	snprintf(path, sizeof(path), "%s/state.json", tmpdir);
	assert_int_equal(fs_write_atomic(path, "{\"a\":1}", 7, 0600), 0);
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 1024, &got, &len), 0);
	assert_int_equal(len, 7);
	assert_string_equal(got, "{\"a\":1}");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* replace */
	assert_int_equal(fs_write_atomic(path, "new", 3, 0644), 0);
	free(got);
	got = NULL;
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 1024, &got, &len), 0);
	assert_string_equal(got, "new");
}

static int count_entries(const char *dir)
{
	char cmd[256];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &n), 1);
	pclose(f);
	return n;
}

static void test_fs_atomic_write_fsync_failure_keeps_old(void **state)
{
	char path[128];
	_cleanup_free_ char *got = NULL;

	snprintf(path, sizeof(path), "%s/f", tmpdir);
	assert_int_equal(fs_write_atomic(path, "old", 3, 0600), 0);
	fsync_fail_errno = EIO;
	assert_int_equal(fs_write_atomic(path, "new", 3, 0600), -EIO);
	fsync_fail_errno = 0;
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 1024, &got, NULL), 0);
	assert_string_equal(got, "old");
	/* no temporary left behind */
	assert_int_equal(count_entries(tmpdir), 1);
}

static void test_fs_atomic_write_rejects_bad_names(void **state)
{
	assert_int_equal(fs_write_atomic_at(AT_FDCWD, "a/b", "x", 1, 0600), -EINVAL);
	assert_int_equal(fs_write_atomic_at(AT_FDCWD, "", "x", 1, 0600), -EINVAL);
	assert_int_equal(fs_write_atomic("", "x", 1, 0600), -EINVAL);
	assert_int_equal(fs_write_atomic("/nonexistent-dir-xyz/f", "x", 1, 0600), -ENOENT);
}

static void test_fs_read_cap(void **state)
{
	char path[128];
	char *got = NULL;
	char data[5000];

	memset(data, 'a', sizeof(data));
	snprintf(path, sizeof(path), "%s/big", tmpdir);
	assert_int_equal(fs_write_atomic(path, data, sizeof(data), 0600), 0);
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 4999, &got, NULL), -EFBIG);
	assert_null(got);
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 5000, &got, NULL), 0);
	assert_int_equal(strlen(got), 5000);
	free(got);
	assert_int_equal(fs_read_file_at(AT_FDCWD, "/nonexistent", 10, &got, NULL), -ENOENT);
}

static void test_fs_mkdir_p_and_rm_rf(void **state)
{
	char path[160], file[200];
	struct stat st;

	snprintf(path, sizeof(path), "%s/a/b/c/", tmpdir);
	assert_int_equal(fs_mkdir_p(path, 0750), 0);
	assert_int_equal(fs_mkdir_p(path, 0750), 0);
	snprintf(file, sizeof(file), "%s/a/b/file", tmpdir);
	assert_int_equal(fs_write_atomic(file, "x", 1, 0600), 0);
	snprintf(path, sizeof(path), "%s/a/b/file/sub", tmpdir);
	assert_int_equal(fs_mkdir_p(path, 0750), -ENOTDIR);
	/* a symlink inside is removed, its target is not */
	snprintf(path, sizeof(path), "%s/a/b/c/link", tmpdir);
	assert_int_equal(symlink(file, path), 0);
	snprintf(path, sizeof(path), "%s/a", tmpdir);
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, path), -0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, path), 0);
}

static void test_id_format_and_uniqueness(void **state)
{
	char a[ID_LEN + 1], b[ID_LEN + 1], tok[TOKEN_HEX_LEN + 1];

	id_new(a);
	clock_sleep_usec(2000);
	id_new(b);
	assert_int_equal(strlen(a), ID_LEN);
	assert_true(strspn(a, "0123456789abcdef") == ID_LEN);
	assert_string_not_equal(a, b);
	assert_true(strcmp(a, b) < 0); /* time-sortable */
	assert_int_equal(id_new_token(tok), 0);
	assert_int_equal(strlen(tok), TOKEN_HEX_LEN);
	assert_true(strspn(tok, "0123456789abcdef") == TOKEN_HEX_LEN);
	char odd[8];
	id_random_hex(odd, sizeof(odd));
	assert_int_equal(strlen(odd), 7);
}

static void test_strbuf(void **state)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	char big[1000];
	char *d;
	size_t len;

	assert_int_equal(strbuf_adds(&sb, "hello"), 0);
	assert_int_equal(strbuf_addf(&sb, " %d %s", 42, "x"), 0);
	assert_string_equal(sb.buf, "hello 42 x");
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(strbuf_addf(&sb, "%s", big), 0);
	assert_int_equal(sb.len, 10 + 999);
	d = strbuf_detach(&sb, &len);
	assert_int_equal(len, 1009);
	assert_null(sb.buf);
	free(d);
	d = strbuf_detach(&sb, &len);
	assert_string_equal(d, "");
	free(d);
	assert_int_equal(strbuf_add(&sb, "a\0b", 3), 0);
	assert_int_equal(sb.len, 3);
	strbuf_reset(&sb);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.buf, "");
}

static void test_str_helpers(void **state)
{
	assert_string_equal(startswith("/v1/tasks", "/v1/"), "tasks");
	assert_null(startswith("/v2", "/v1/"));
	assert_true(endswith("a.tar.gz", ".tar.gz"));
	assert_false(endswith("gz", ".tar.gz"));
	assert_true(streq_ptr(NULL, NULL));
	assert_false(streq_ptr("a", NULL));
	assert_true(ct_memeq("secret", 6, "secret", 6));
	assert_false(ct_memeq("secret", 6, "secreT", 6));
	assert_false(ct_memeq("secret", 6, "secret2", 7));
	assert_false(ct_memeq("", 0, "a", 1));
	assert_true(ct_memeq("", 0, "", 0));
}

static void test_parse_numbers(void **state)
{
	uint64_t u;
	int64_t i;
	unsigned v;

	assert_int_equal(parse_u64("18446744073709551615", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(parse_u64("18446744073709551616", &u), -ERANGE);
	assert_int_equal(parse_u64("-1", &u), -EINVAL);
	assert_int_equal(parse_u64("12a", &u), -EINVAL);
	assert_int_equal(parse_u64("", &u), -EINVAL);
	assert_int_equal(parse_u64(" 1", &u), -EINVAL);
	assert_int_equal(parse_i64("-42", &i), 0);
	assert_int_equal(i, -42);
	assert_int_equal(parse_i64("--1", &i), -EINVAL);
	assert_int_equal(parse_uint("65535", 65535, &v), 0);
	assert_int_equal(parse_uint("65536", 65535, &v), -ERANGE);
}

static void test_error_buffer(void **state)
{
	struct cd_error e = { 0 };

	assert_string_equal(cd_error_message(NULL), "unknown error");
	assert_int_equal(cd_error_set(&e, EINVAL, "bad %s", "thing"), -EINVAL);
	assert_int_equal(e.code, -EINVAL);
	assert_string_equal(cd_error_message(&e), "bad thing");
	/* first error wins */
	assert_int_equal(cd_error_set(&e, -EIO, "later"), -EIO);
	assert_string_equal(cd_error_message(&e), "bad thing");
	cd_error_reset(&e);
	e.code = -ENOENT;
	assert_string_equal(cd_error_message(&e), "No such file or directory");
	assert_int_equal(cd_error_set(NULL, -EPERM, "x"), -EPERM);
}

static void test_cleanup_macros(void **state)
{
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int taken;
	char *p;
	_cleanup_free_ char *owner = strdup("x");

	assert_true(fd >= 0);
	taken = TAKE_FD(fd);
	assert_int_equal(fd, -EBADF);
	assert_int_equal(safe_close(taken), -EBADF);
	p = TAKE_PTR(owner);
	assert_null(owner);
	free(p);
	assert_int_equal(RET_NERRNO(open("/nonexistent", O_RDONLY)), -ENOENT);
}

static void test_sd_notify(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[128], buf[64];
	int fd;
	ssize_t n;

	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sd_notify_send("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(sd_notify_send("READY=1"), -EINVAL);
	snprintf(path, sizeof(path), "%s/notify", tmpdir);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(sd_notify_send("READY=1\nSTATUS=up"), 1);
	n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	assert_int_equal(n, 17);
	buf[n] = 0;
	assert_string_equal(buf, "READY=1\nSTATUS=up");
	close(fd);
	unlink(path);
	assert_int_equal(sd_notify_send("READY=1"), -ENOENT);
	unsetenv("NOTIFY_SOCKET");
}

static void test_proc_start_time(void **state)
{
	uint64_t a, b, child_start;
	void *m;
	pid_t pid;
	int st;

	assert_int_equal(proc_start_time(getpid(), &a), 0);
	/* the identity survives a change of the address space (vsize, field 23, moves) */
	m = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(proc_start_time(getpid(), &b), 0);
	assert_true(a == b);
	munmap(m, 64 << 20);
	assert_true(proc_is_same(getpid(), a));
	assert_false(proc_is_same(getpid(), a + 1));
	/* a later process started later; and once reaped it is gone */
	clock_sleep_usec(20000);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	assert_int_equal(proc_start_time(pid, &child_start), 0);
	assert_true(child_start > a);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(proc_start_time(pid, &child_start), -ESRCH);
	assert_false(proc_is_same(pid, child_start));
	assert_int_equal(proc_start_time(0, &a), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_logfmt_line),
		cmocka_unit_test(test_log_errno),
		cmocka_unit_test(test_log_quote),
		cmocka_unit_test(test_log_level_parse),
		cmocka_unit_test(test_clock_roundtrip),
		cmocka_unit_test(test_clock_monotonic),
		cmocka_unit_test_setup_teardown(test_fs_atomic_write_and_read, setup_tmp,
						teardown_tmp),
		cmocka_unit_test_setup_teardown(test_fs_atomic_write_fsync_failure_keeps_old,
						setup_tmp, teardown_tmp),
		cmocka_unit_test(test_fs_atomic_write_rejects_bad_names),
		cmocka_unit_test_setup_teardown(test_fs_read_cap, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_fs_mkdir_p_and_rm_rf, setup_tmp, teardown_tmp),
		cmocka_unit_test(test_id_format_and_uniqueness),
		cmocka_unit_test(test_strbuf),
		cmocka_unit_test(test_str_helpers),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_error_buffer),
		cmocka_unit_test(test_cleanup_macros),
		cmocka_unit_test(test_proc_start_time),
		cmocka_unit_test_setup_teardown(test_sd_notify, setup_tmp, teardown_tmp),
	};
	return cmocka_run_group_tests_name("lib", tests, NULL, NULL);
}
