/* SPDX-License-Identifier: Apache-2.0 */
/*
 * clock.h — monotonic and realtime clocks in microseconds, RFC 3339 formatting and parsing.
 * Owns nothing; pure functions over clock_gettime(2). Monotonic for intervals and deadlines,
 * realtime only for what a human or another host reads.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;
#define USEC_PER_SEC ((usec_t)1000000)
#define USEC_PER_MSEC ((usec_t)1000)

usec_t clock_mono_usec(void);
usec_t clock_real_usec(void);
/* "2026-11-25T22:46:23.123Z" (UTC, millisecond precision). Returns buf; "" when size < 25. */
const char *clock_format_rfc3339(usec_t realtime, char *buf, size_t size);
/* Parses the format above, with or without fraction (up to 6 digits), 'Z' or +hh:mm offset.
 * Returns 0 or -EINVAL. */
int clock_parse_rfc3339(const char *s, usec_t *ret);
/* The absolute time usec from now on clock (CLOCK_MONOTONIC or CLOCK_REALTIME): the deadline
 * pthread_cond_timedwait() wants, for a condition variable using that clock. */
struct timespec clock_timespec_after(clockid_t clock, usec_t usec);
/* Sleep for usec, restarting on EINTR. */
void clock_sleep_usec(usec_t usec);
