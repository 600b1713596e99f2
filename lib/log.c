/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"

static const char *log_prog = "codedeploy";
static enum log_level log_level = LOG_LEVEL_INFO;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

void log_open(const char *prog)
{
	log_prog = prog;
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_set_fd(int fd)
{
	log_fd = fd;
}

int log_level_from_string(const char *s, enum log_level *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
		if (s && strcasecmp(s, level_names[i]) == 0) {
			*ret = (enum log_level)i;
			return 0;
		}
	if (s && strcasecmp(s, "warning") == 0) {
		*ret = LOG_LEVEL_WARN;
		return 0;
	}
	return -EINVAL;
}

static int needs_quotes(const char *v)
{
	if (!*v)
		return 1;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p >= 0x7f)
			return 1;
	return 0;
}

const char *log_quote(const char *value, char *buf, size_t size)
{
	size_t n = 0;

	if (size < 8) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	if (!value)
		value = "";
	if (!needs_quotes(value)) {
		size_t len = strlen(value);
		if (len < size) {
			memcpy(buf, value, len + 1);
			return buf;
		}
	}
	buf[n++] = '"';
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		char esc[5];
		size_t elen;

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			elen = 2;
		} else if (*p == '\n') {
			memcpy(esc, "\\n", 2);
			elen = 2;
		} else if (*p == '\t') {
			memcpy(esc, "\\t", 2);
			elen = 2;
		} else if (*p < ' ' || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
			elen = 4;
		} else {
			esc[0] = (char)*p;
			elen = 1;
		}
		/* keep room for `..."` and NUL */
		if (n + elen + 5 > size) {
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		memcpy(buf + n, esc, elen);
		n += elen;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

void log_emitv(enum log_level level, const char *msg, const char *kvfmt, va_list ap)
{
	char line[4096], ts[40], qmsg[1024];
	int n;

	if (level < log_level)
		return;
	clock_format_rfc3339(clock_real_usec(), ts, sizeof(ts));
	n = snprintf(line, sizeof(line), "ts=%s level=%s prog=%s msg=%s", ts, level_names[level],
		     log_prog, log_quote(msg, qmsg, sizeof(qmsg)));
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (kvfmt && *kvfmt && (size_t)n < sizeof(line) - 3) {
		int m;

		line[n++] = ' ';
		m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, kvfmt, ap);
		if (m > 0)
			n += MIN(m, (int)(sizeof(line) - (size_t)n - 2));
	}
	line[n++] = '\n';
	/* One write per line keeps concurrent lines whole; a short write to stderr is dropped. */
	(void)!write(log_fd, line, (size_t)n);
}

void log_emit(enum log_level level, const char *msg, const char *kvfmt, ...)
{
	va_list ap;

	va_start(ap, kvfmt);
	log_emitv(level, msg, kvfmt, ap);
	va_end(ap);
}

int log_errno(enum log_level level, int err, const char *msg, const char *kvfmt, ...)
{
	char kv[3072], qerr[256];
	va_list ap;

	err = err < 0 ? -err : err;
	va_start(ap, kvfmt);
	vsnprintf(kv, sizeof(kv), kvfmt ? kvfmt : "", ap);
	va_end(ap);
	log_emit(level, msg, "%s%serr=%s", kv, *kv ? " " : "",
		 log_quote(strerror(err), qerr, sizeof(qerr)));
	return -err;
}
