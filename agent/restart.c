/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/restart.h"

#include <errno.h>
#include <limits.h>

#include "lib/str.h"

static const char *const mode_names[] = {
	[RESTART_NEVER] = "never",
	[RESTART_ON_FAILURE] = "on-failure",
	[RESTART_ALWAYS] = "always",
};

int restart_mode_from_string(const char *s, enum restart_mode *ret)
{
	for (unsigned i = 0; s && i < ARRAY_SIZE(mode_names); i++)
		if (streq(s, mode_names[i])) {
			*ret = (enum restart_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *restart_mode_to_string(enum restart_mode m)
{
	return (unsigned)m < ARRAY_SIZE(mode_names) ? mode_names[m] : NULL;
}

bool restart_wanted(const struct restart_policy *p, bool failed, bool stopped_by_request)
{
	if (stopped_by_request)
		return false;
	switch (p->mode) {
	case RESTART_ALWAYS:
		return true;
	case RESTART_ON_FAILURE:
		return failed;
	case RESTART_NEVER:
	default:
		return false;
	}
}

usec_t restart_delay(const struct restart_policy *p, unsigned streak)
{
	usec_t base = (usec_t)p->backoff_s * USEC_PER_SEC;
	usec_t cap = (usec_t)MAX(p->max_backoff_s, p->backoff_s) * USEC_PER_SEC;
	usec_t d = base;

	if (streak <= 1 || base == 0)
		return base;
	for (unsigned i = 1; i < streak; i++) {
		if (d >= cap / 2) /* doubling would pass the cap (and may overflow later) */
			return cap;
		d *= 2;
	}
	return MIN(d, cap);
}

unsigned restart_next_streak(unsigned streak, usec_t ran_for, usec_t reset_after)
{
	if (ran_for >= reset_after)
		return 1;
	return streak == UINT_MAX ? streak : streak + 1;
}
