/* SPDX-License-Identifier: Apache-2.0 */
/*
 * restart.h — the restart policy's decisions as pure functions: whether a task that ended is
 * started again, after how long (exponential backoff with a cap), and when the backoff resets
 * (the task stayed up for a healthy period). Owns no state; taskd keeps the counters per task.
 */
#pragma once

#include <stdbool.h>

#include "lib/clock.h"

enum restart_mode {
	RESTART_NEVER,
	RESTART_ON_FAILURE,
	RESTART_ALWAYS,
};

/* "never" | "on-failure" | "always" → mode; -EINVAL otherwise. */
int restart_mode_from_string(const char *s, enum restart_mode *ret);
const char *restart_mode_to_string(enum restart_mode m);

struct restart_policy {
	enum restart_mode mode;
	unsigned backoff_s;	/* first delay; 0 means restart at once */
	unsigned max_backoff_s; /* cap; values below backoff_s are treated as backoff_s */
};

/*
 * Should a task that ended be started again? failed is true for every end except a clean exit
 * (code 0). stopped_by_request is true when an operator or the manager asked for the stop: that
 * is never restarted.
 */
bool restart_wanted(const struct restart_policy *p, bool failed, bool stopped_by_request);

/*
 * Delay before restart number `streak` of an unbroken series of quick failures (1 = the first
 * restart): backoff_s * 2^(streak-1), capped at max_backoff_s, never overflowing.
 */
usec_t restart_delay(const struct restart_policy *p, unsigned streak);

/*
 * The streak after a run that lasted ran_for: a run of at least reset_after (the healthy period)
 * starts a new series (returns 1); a shorter one extends it (streak + 1, saturating).
 */
unsigned restart_next_streak(unsigned streak, usec_t ran_for, usec_t reset_after);
