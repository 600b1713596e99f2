/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox/initloop.h"

#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const int sandbox_forwarded_signals[6] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

char *sandbox_fmt_int(char *end, long v)
{
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	*--end = '\0';
	do
		*--end = (char)('0' + u % 10);
	while (u /= 10);
	if (v < 0)
		*--end = '-';
	return end;
}

static void append(char *dst, size_t size, size_t *len, const char *s)
{
	while (*s && *len + 1 < size)
		dst[(*len)++] = *s++;
	dst[*len] = '\0';
}

static void write_status(int status_w, int status_file, int wstatus)
{
	char rec[48], num[24];
	size_t n = 0;

	if (WIFSIGNALED(wstatus)) {
		append(rec, sizeof(rec), &n, "signaled ");
		append(rec, sizeof(rec), &n, sandbox_fmt_int(num + sizeof(num), WTERMSIG(wstatus)));
		append(rec, sizeof(rec), &n, WCOREDUMP(wstatus) ? " core\n" : "\n");
	} else {
		append(rec, sizeof(rec), &n, "exited ");
		append(rec, sizeof(rec), &n,
		       sandbox_fmt_int(num + sizeof(num), WEXITSTATUS(wstatus)));
		append(rec, sizeof(rec), &n, "\n");
	}
	if (status_w >= 0)
		(void)!write(status_w, rec, n);
	if (status_file >= 0) {
		(void)!pwrite(status_file, rec, n, 0);
		(void)!ftruncate(status_file, (off_t)n);
		(void)fsync(status_file);
	}
}

void sandbox_init_loop(pid_t cmd, int status_w, int status_file)
{
	sigset_t set;
	int cmd_status = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < ARRAY_SIZE(sandbox_forwarded_signals); i++)
		sigaddset(&set, sandbox_forwarded_signals[i]);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		bool done = false;

		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			(void)kill(cmd, sig);
			continue;
		}
		for (;;) {
			int st;
			pid_t w = waitpid(-1, &st, WNOHANG);

			if (w <= 0)
				break;
			if (w == cmd) {
				cmd_status = st;
				done = true;
			}
		}
		if (done)
			break;
	}
	write_status(status_w, status_file, cmd_status);
	/* leaving takes the rest of the pid namespace with us (the kernel SIGKILLs it) */
	_exit(WIFSIGNALED(cmd_status) ? 128 + WTERMSIG(cmd_status) : WEXITSTATUS(cmd_status));
}
