/* SPDX-License-Identifier: Apache-2.0 */
#include "central/action.h"

#include <errno.h>
#include <stddef.h>

#include "lib/str.h"

static const char *const action_state_names[_ACTION_STATE_MAX] = {
	[ACTION_PENDING] = "PENDING",
	[ACTION_IN_PROGRESS] = "IN_PROGRESS",
	[ACTION_FINISHED] = "FINISHED",
	[ACTION_ERROR] = "ERROR",
};

static const char *const run_state_names[_RUN_STATE_MAX] = {
	[RUN_PENDING] = "PENDING",     [RUN_IN_PROGRESS] = "IN_PROGRESS",
	[RUN_FINISHED] = "FINISHED",   [RUN_ERROR] = "ERROR",
	[RUN_CANCELLED] = "CANCELLED", [RUN_SUPERSEDED] = "SUPERSEDED",
};

const char *action_state_to_string(enum action_state s)
{
	return (unsigned)s < _ACTION_STATE_MAX ? action_state_names[s] : NULL;
}

int action_state_from_string(const char *s, enum action_state *ret)
{
	for (unsigned i = 0; s && i < _ACTION_STATE_MAX; i++)
		if (streq(s, action_state_names[i])) {
			*ret = (enum action_state)i;
			return 0;
		}
	return -EINVAL;
}

const char *run_state_to_string(enum run_state s)
{
	return (unsigned)s < _RUN_STATE_MAX ? run_state_names[s] : NULL;
}

int run_state_from_string(const char *s, enum run_state *ret)
{
	for (unsigned i = 0; s && i < _RUN_STATE_MAX; i++)
		if (streq(s, run_state_names[i])) {
			*ret = (enum run_state)i;
			return 0;
		}
	return -EINVAL;
}
