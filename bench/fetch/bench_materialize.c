/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/fetch: cost of materialising an already unpacked artifact for a task — the
 * fetcher_materialize() call taskd makes per task start (a stat and a lock on the cached tree),
 * and, as root, the read-only bind mount the sandbox then puts at /app (done here in a private
 * mount namespace). Usage: bench_materialize CACHE_DIR DIGEST [ITERATIONS]
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetcher/fetcher.h"
#include "lib/clock.h"
#include "lib/str.h"

static int cmp_usec(const void *a, const void *b)
{
	usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	_cleanup_fetcher_ struct fetcher *f = NULL;
	struct cd_error err = { 0 };
	unsigned n = 200;
	usec_t *t;
	char mnt[] = "/tmp/cd-bench-app.XXXXXX";
	bool can_mount = geteuid() == 0;

	if (argc < 3 || (argc > 3 && parse_uint(argv[3], 100000, &n) < 0) || n == 0) {
		fprintf(stderr, "usage: bench_materialize CACHE_DIR DIGEST [ITERATIONS]\n");
		return 2;
	}
	t = calloc(n, sizeof(*t));
	if (!t || fetcher_new(argv[1], 0, &f, &err) < 0) {
		fprintf(stderr, "bench_materialize: %s\n", cd_error_message(&err));
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		char *dir = NULL;
		usec_t s = clock_mono_usec();

		if (fetcher_materialize(f, argv[2], FETCHER_KIND_AUTO, NULL, NULL, &dir, &err) <
		    0) {
			fprintf(stderr, "bench_materialize: %s\n", cd_error_message(&err));
			return 1;
		}
		t[i] = clock_mono_usec() - s;
		free(dir);
	}
	qsort(t, n, sizeof(*t), cmp_usec);
	printf("materialize_cached_us median=%llu p99=%llu max=%llu n=%u\n",
	       (unsigned long long)t[n / 2], (unsigned long long)t[n * 99 / 100],
	       (unsigned long long)t[n - 1], n);

	if (can_mount && (unshare(CLONE_NEWNS) < 0 ||
			  mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || !mkdtemp(mnt)))
		can_mount = false;
	if (!can_mount) {
		printf("bind_ro_us skipped (needs root)\n");
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		char *dir = NULL;
		usec_t s = clock_mono_usec();

		if (fetcher_materialize(f, argv[2], FETCHER_KIND_AUTO, NULL, NULL, &dir, &err) <
			    0 ||
		    mount(dir, mnt, NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    mount(NULL, mnt, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
			  NULL) < 0) {
			fprintf(stderr, "bench_materialize: mount: %s\n", strerror(errno));
			return 1;
		}
		t[i] = clock_mono_usec() - s;
		free(dir);
		if (umount2(mnt, MNT_DETACH) < 0)
			return 1;
	}
	rmdir(mnt);
	qsort(t, n, sizeof(*t), cmp_usec);
	printf("materialize_plus_bind_ro_us median=%llu p99=%llu max=%llu n=%u\n",
	       (unsigned long long)t[n / 2], (unsigned long long)t[n * 99 / 100],
	       (unsigned long long)t[n - 1], n);
	free(t);
	return 0;
}
