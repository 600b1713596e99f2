/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static usec_t ts_to_usec(const struct timespec *ts)
{
	return (usec_t)ts->tv_sec * USEC_PER_SEC + (usec_t)ts->tv_nsec / 1000;
}

usec_t clock_mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts_to_usec(&ts);
}

struct timespec clock_timespec_after(clockid_t clock, usec_t usec)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	ts.tv_sec += (time_t)(usec / USEC_PER_SEC);
	ts.tv_nsec += (long)(usec % USEC_PER_SEC) * 1000;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

usec_t clock_real_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts_to_usec(&ts);
}

/* Days since 1970-01-01 → civil date (proleptic Gregorian; H. Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d)
{
	int64_t era, y;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*ret_d = doy - (153 * mp + 2) / 5 + 1;
	*ret_m = mp < 10 ? mp + 3 : mp - 9;
	*ret_y = y + (*ret_m <= 2);
}

static char *put_digits(char *p, unsigned v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + n;
}

/* Without gmtime_r() and snprintf(): glibc's gmtime_r takes the process-wide timezone lock,
 * which serialised every thread formatting timestamps for API responses. */
const char *clock_format_rfc3339(usec_t realtime, char *buf, size_t size)
{
	uint64_t sec = realtime / USEC_PER_SEC, days = sec / 86400, rem = sec % 86400;
	unsigned m, d;
	int64_t y;
	char *p = buf;

	if (size < 25) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	civil_from_days((int64_t)days, &y, &m, &d);
	if (y > 9999) {
		buf[0] = '\0';
		return buf;
	}
	p = put_digits(p, (unsigned)y, 4);
	*p++ = '-';
	p = put_digits(p, m, 2);
	*p++ = '-';
	p = put_digits(p, d, 2);
	*p++ = 'T';
	p = put_digits(p, (unsigned)(rem / 3600), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned)(rem / 60 % 60), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned)(rem % 60), 2);
	*p++ = '.';
	p = put_digits(p, (unsigned)((realtime % USEC_PER_SEC) / 1000), 3);
	*p++ = 'Z';
	*p = '\0';
	return buf;
}

static int parse_digits(const char **p, int n, int *ret)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*ret = v;
	return 0;
}

int clock_parse_rfc3339(const char *s, usec_t *ret)
{
	int Y, M, D, h, m, sec, oh = 0, om = 0;
	long frac = 0;
	struct tm tm = { 0 };
	time_t t;
	const char *p = s;

	if (!s || parse_digits(&p, 4, &Y) < 0 || *p++ != '-' || parse_digits(&p, 2, &M) < 0 ||
	    *p++ != '-' || parse_digits(&p, 2, &D) < 0 || (*p != 'T' && *p != 't') ||
	    (p++, parse_digits(&p, 2, &h)) < 0 || *p++ != ':' || parse_digits(&p, 2, &m) < 0 ||
	    *p++ != ':' || parse_digits(&p, 2, &sec) < 0)
		return -EINVAL;
	if (*p == '.') {
		int digits = 0;

		p++;
		while (isdigit((unsigned char)*p)) {
			if (digits < 6) {
				frac = frac * 10 + (*p - '0');
				digits++;
			}
			p++;
		}
		if (digits == 0)
			return -EINVAL;
		while (digits++ < 6)
			frac *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1;

		if (parse_digits(&p, 2, &oh) < 0 || *p++ != ':' || parse_digits(&p, 2, &om) < 0)
			return -EINVAL;
		oh *= sign;
		om *= sign;
	} else {
		return -EINVAL;
	}
	if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
		return -EINVAL;
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	t -= (time_t)oh * 3600 + (time_t)om * 60;
	if (t < 0)
		return -EINVAL;
	*ret = (usec_t)t * USEC_PER_SEC + (usec_t)frac;
	return 0;
}

void clock_sleep_usec(usec_t usec)
{
	struct timespec ts = { .tv_sec = (time_t)(usec / USEC_PER_SEC),
			       .tv_nsec = (long)(usec % USEC_PER_SEC) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
