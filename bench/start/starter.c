/* SPDX-License-Identifier: Apache-2.0 */
/*
 * starter — the start-latency driver of bench/start/run.sh: runs one command line N times,
 * sequentially, and prints the wall time of each start-to-exit (fork + exec + wait) in
 * microseconds, one per line. "%d" in an argument is replaced by the iteration number plus
 * $STARTER_OFFSET (unique container ids across calls). Exits non-zero as soon as a run fails, so a broken baseline is not timed.
 * Usage: starter N CMD [ARG...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[1]) : 0;
	int offset = getenv("STARTER_OFFSET") ? atoi(getenv("STARTER_OFFSET")) : 0;
	char **args = calloc((size_t)argc, sizeof(char *));
	char bufs[16][256];

	if (n <= 0 || !args || argc - 2 > 16) {
		fprintf(stderr, "usage: starter N CMD [ARG...] (at most 16 args)\n");
		return 2;
	}
	for (int i = 0; i < n; i++) {
		long long t0;
		pid_t pid;
		int st;

		for (int a = 2; a < argc; a++) {
			if (strstr(argv[a], "%d")) {
				snprintf(bufs[a - 2], sizeof(bufs[0]), argv[a], offset + i);
				args[a - 2] = bufs[a - 2];
			} else {
				args[a - 2] = argv[a];
			}
		}
		args[argc - 2] = NULL;
		t0 = now_usec();
		pid = fork();
		if (pid == 0) {
			execv(args[0], args);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			fprintf(stderr, "starter: run %d of %s failed (status 0x%x)\n", i, args[0],
				pid < 0 ? -1 : st);
			return 1;
		}
		printf("%lld\n", now_usec() - t0);
	}
	return 0;
}
