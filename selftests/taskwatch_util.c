/* SPDX-License-Identifier: Apache-2.0 */
/* Selftest scaffolding for taskwatch: TAP, throw-away cgroups, processes started inside them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ebpf/taskwatch.h"
#include "lib/fs.h"
#include "lib/macro.h"
#include "lib/str.h"
#include "selftests/taskwatch_util.h"

static int tap_n, tap_failed;

void tap_plan(int n)
{
	printf("1..%d\n", n);
	fflush(stdout);
}

void tap_ok(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", ok ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		tap_failed++;
}

void tap_skip(const char *why, const char *fmt, ...)
{
	va_list ap;

	printf("ok %d - ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" # SKIP %s\n", why);
	fflush(stdout);
}

void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

int tap_failures(void)
{
	return tap_failed;
}

static int write_file(const char *dir, const char *file, const char *value)
{
	char path[512];
	_cleanup_close_ int fd = -EBADF;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return RET_NERRNO(write(fd, value, strlen(value)));
}

int test_cgroup_create(struct test_cgroup *cg, const char *name, uint64_t memory_limit)
{
	char buf[32];
	int r;

	memset(cg, 0, sizeof(*cg));
	snprintf(cg->unified, sizeof(cg->unified), CG_UNIFIED_ROOT "/cd-ebpf-test-%d-%s",
		 (int)getpid(), name);
	if (mkdir(cg->unified, 0755) < 0)
		return -errno;
	r = taskwatch_cgroup_id(cg->unified, &cg->id);
	if (r < 0)
		goto fail;
	if (access(CG_MEMORY_ROOT "/memory.limit_in_bytes", F_OK) == 0) {
		snprintf(cg->memory, sizeof(cg->memory), CG_MEMORY_ROOT "/cd-ebpf-test-%d-%s",
			 (int)getpid(), name);
		if (mkdir(cg->memory, 0755) < 0) {
			r = -errno;
			cg->memory[0] = '\0';
			goto fail;
		}
		if (memory_limit) {
			snprintf(buf, sizeof(buf), "%llu", (unsigned long long)memory_limit);
			r = write_file(cg->memory, "memory.limit_in_bytes", buf);
			if (r < 0)
				goto fail;
		}
	}
	return 0;
fail:
	test_cgroup_destroy(cg);
	return r;
}

int test_cgroup_nprocs(const struct test_cgroup *cg)
{
	char path[512];
	_cleanup_free_ char *text = NULL;
	int n = 0;
	int r;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg->unified);
	r = fs_read_file_at(AT_FDCWD, path, 1 << 20, &text, NULL);
	if (r < 0)
		return r;
	for (const char *p = text; *p; p++)
		if (*p == '\n')
			n++;
	return n;
}

static void rmdir_retry(const char *path)
{
	/* A dying process may still pin the cgroup for a moment after it left cgroup.procs. */
	for (int i = 0; i < 200; i++) {
		if (rmdir(path) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		usleep(10000);
	}
	tap_diag("could not remove %s: %s", path, strerror(errno));
}

void test_cgroup_destroy(struct test_cgroup *cg)
{
	if (cg->unified[0]) {
		(void)write_file(cg->unified, "cgroup.kill", "1");
		for (int i = 0; i < 200 && test_cgroup_nprocs(cg) > 0; i++)
			usleep(10000);
		rmdir_retry(cg->unified);
		cg->unified[0] = '\0';
	}
	if (cg->memory[0]) {
		rmdir_retry(cg->memory);
		cg->memory[0] = '\0';
	}
}

void test_cgroup_sweep_stale(void)
{
	static const char *const roots[] = { CG_UNIFIED_ROOT, CG_MEMORY_ROOT };

	for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
		DIR *d = opendir(roots[i]);
		struct dirent *de;

		if (!d)
			continue;
		while ((de = readdir(d))) {
			char path[512];
			int pid;

			/* only cgroups of our test whose creator is gone */
			if (sscanf(de->d_name, "cd-ebpf-test-%d-", &pid) != 1 || pid == getpid() ||
			    kill(pid, 0) == 0 || errno != ESRCH)
				continue;
			snprintf(path, sizeof(path), "%s/%s", roots[i], de->d_name);
			if (i == 0)
				(void)write_file(path, "cgroup.kill", "1");
			(void)rmdir(path);
		}
		closedir(d);
	}
}

pid_t test_spawn(const struct test_cgroup *cg, int (*fn)(void *), void *arg, int *ret_pidfd)
{
	int go[2];
	char c = 0, buf[32];
	pid_t pid;
	int r = 0;

	if (pipe2(go, O_CLOEXEC) < 0)
		return -errno;
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(go[0]);
		close(go[1]);
		return r;
	}
	if (pid == 0) {
		close(go[1]);
		/* wait until the parent has moved us; EOF without a byte means abort */
		if (read(go[0], &c, 1) != 1)
			_exit(127);
		close(go[0]);
		_exit(fn(arg));
	}
	close(go[0]);
	if (cg) {
		snprintf(buf, sizeof(buf), "%d", (int)pid);
		r = write_file(cg->unified, "cgroup.procs", buf);
		if (r >= 0 && cg->memory[0])
			r = write_file(cg->memory, "cgroup.procs", buf);
	}
	if (r >= 0 && ret_pidfd) {
		*ret_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (*ret_pidfd < 0)
			r = -errno;
	}
	if (r < 0) {
		close(go[1]); /* child exits 127 */
		waitpid(pid, NULL, 0);
		return r;
	}
	if (write(go[1], &c, 1) != 1)
		r = -errno;
	close(go[1]);
	return r < 0 ? r : pid;
}
