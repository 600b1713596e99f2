/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sandbox-init — the tiny init a task's cloned child execs into once the command is forked, so
 * that the long-lived pid 1 of every task does not keep a copy-on-write image of the launching
 * daemon's memory. Started only by sandbox/launch.c, with every signal blocked:
 *   sandbox-init CMD_PID STATUS_FD STATUS_FILE_FD
 * (fds may be -1). Runs sandbox_init_loop(): forwards signals, reaps, mirrors the status.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sandbox/initloop.h"

static int parse_num(const char *s, long max, int *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < -1 || v > max)
		return -1;
	*ret = (int)v;
	return 0;
}

int main(int argc, char **argv)
{
	int cmd, status_w, status_file;

	if (argc != 4 || parse_num(argv[1], INT32_MAX, &cmd) < 0 || cmd <= 0 ||
	    parse_num(argv[2], 1 << 20, &status_w) < 0 ||
	    parse_num(argv[3], 1 << 20, &status_file) < 0) {
		fprintf(stderr, "sandbox-init: started by sandbox/launch.c only "
				"(CMD_PID STATUS_FD STATUS_FILE_FD)\n");
		return 2;
	}
	sandbox_init_loop((pid_t)cmd, status_w, status_file);
}
