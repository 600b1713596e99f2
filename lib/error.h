/* SPDX-License-Identifier: Apache-2.0 */
/*
 * error.h — the message buffer that travels with a -errno. Library calls whose failures need
 * more than an errno to be understood (which file, which field, which foreign code) take a
 * `struct cd_error *err` that may be NULL and fill it; the binary decides what to print.
 * Foreign codes (sqlite, curl, libnl, libcgroup) are mapped to -errno where they are caught.
 */
#pragma once

#include "lib/macro.h"

struct cd_error {
	int code;      /* negative errno, 0 when unset */
	char msg[512]; /* human-readable, never ends with a newline */
};

/* Record code (negative errno) and a formatted message into err (may be NULL); returns code so
 * `return cd_error_set(err, -EINVAL, "bad %s", x);` works. A first error is not overwritten
 * unless overwrite is requested with cd_error_reset() first. */
int cd_error_set(struct cd_error *err, int code, const char *fmt, ...) _printf_(3, 4);
void cd_error_reset(struct cd_error *err);
/* The message, or strerror(-code) when no message was recorded. */
const char *cd_error_message(const struct cd_error *err);
