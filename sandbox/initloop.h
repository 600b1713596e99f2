/* SPDX-License-Identifier: Apache-2.0 */
/*
 * initloop.h — the loop of a task's init, pid 1 of the task's pid namespace: forward the
 * forwardable signals to the command, reap every child (orphans included), and when the command
 * exits write its status record and exit with its code (or 128 + signal).
 * Internal to sandbox/: run in-process by the cloned child (launch.c) or by the tiny
 * sandbox-init binary the child execs into (init_main.c). Owns nothing but the fds it is given.
 * Async-signal-safe throughout and allocation-free.
 */
#pragma once

#include <sys/types.h>

#include "lib/macro.h"

/* Signals the init forwards to the command (the rest of its mask stays blocked). */
extern const int sandbox_forwarded_signals[6];

/*
 * Run the loop for command pid cmd. The caller has every signal blocked. The record ("exited
 * N\n" / "signaled S[ core]\n") goes to status_w (a pipe, -1 = none) and, with pwrite at offset
 * 0 + ftruncate + fsync, to status_file (-1 = none). Never returns.
 */
_noreturn_ void sandbox_init_loop(pid_t cmd, int status_w, int status_file);

/* Decimal of v (may be negative) written backwards ending at end (NUL placed at end[-1]);
 * returns the start. Async-signal-safe. */
char *sandbox_fmt_int(char *end, long v);
