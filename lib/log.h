/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h — binaries' logging: one logfmt line per event on stderr (journald captures it).
 * Owns: level filtering, line formatting, quoting of values. Library layers (api/, sandbox/,
 * fetcher/, ...) never call this; they return -errno and a message and the binary logs once.
 * Thread-safe: each line is written with a single write(2).
 */
#pragma once

#include <stdarg.h>

#include "lib/macro.h"

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Program name shown as prog=...; the string must outlive all logging. */
void log_open(const char *prog);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug|info|warn|error"; returns -EINVAL for anything else. */
int log_level_from_string(const char *s, enum log_level *ret);
/* Redirect output (tests); fd is not owned. Default 2. */
void log_set_fd(int fd);

/*
 * Emit `ts=... level=... prog=... msg="<msg>" <kv>` where kv is printf-formatted and appended
 * verbatim (callers write `key=%s` pairs; use log_quote() for values that may hold spaces).
 */
void log_emit(enum log_level level, const char *msg, const char *kvfmt, ...) _printf_(3, 4);
void log_emitv(enum log_level level, const char *msg, const char *kvfmt, va_list ap) _printf_(3, 0);

/* Same, with err=<strerror(-err)>; returns -abs(err) so `return log_error_errno(r, ...)` works. */
int log_errno(enum log_level level, int err, const char *msg, const char *kvfmt, ...)
	_printf_(4, 5);

/*
 * Quote a value for logfmt into buf (always NUL-terminated, truncated with "..." if needed):
 * bare when it is safe, otherwise "..." with \" \\ \n \t and \xNN escapes. Returns buf.
 */
const char *log_quote(const char *value, char *buf, size_t size);

#define log_debug(msg, ...) log_emit(LOG_LEVEL_DEBUG, msg, "" __VA_ARGS__)
#define log_info(msg, ...) log_emit(LOG_LEVEL_INFO, msg, "" __VA_ARGS__)
#define log_warn(msg, ...) log_emit(LOG_LEVEL_WARN, msg, "" __VA_ARGS__)
#define log_error(msg, ...) log_emit(LOG_LEVEL_ERROR, msg, "" __VA_ARGS__)
#define log_warn_errno(err, msg, ...) log_errno(LOG_LEVEL_WARN, err, msg, "" __VA_ARGS__)
#define log_error_errno(err, msg, ...) log_errno(LOG_LEVEL_ERROR, err, msg, "" __VA_ARGS__)
