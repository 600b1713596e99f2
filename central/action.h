/* SPDX-License-Identifier: Apache-2.0 */
/*
 * action.h — the states of the seed's ActionState table and of a pipeline run, with their wire
 * spellings. Owns only these vocabularies; the queue lives in store_pipelines.h, the policy
 * (what runs next, when a run ends) in pipeline_run.h.
 */
#pragma once

/* ActionState.state, exactly as in the seed. */
enum action_state {
	ACTION_PENDING,
	ACTION_IN_PROGRESS,
	ACTION_FINISHED,
	ACTION_ERROR,
	_ACTION_STATE_MAX,
};

/* A run: PENDING (queued behind the pipeline's active run), IN_PROGRESS, FINISHED, ERROR (a
 * stage failed; retry possible), CANCELLED (by a user), SUPERSEDED (a newer pending run
 * replaced it before it started). */
enum run_state {
	RUN_PENDING,
	RUN_IN_PROGRESS,
	RUN_FINISHED,
	RUN_ERROR,
	RUN_CANCELLED,
	RUN_SUPERSEDED,
	_RUN_STATE_MAX,
};

/* Upper-case names ("IN_PROGRESS"); NULL when out of range. */
const char *action_state_to_string(enum action_state s);
/* Returns 0 or -EINVAL. */
int action_state_from_string(const char *s, enum action_state *ret);
const char *run_state_to_string(enum run_state s);
int run_state_from_string(const char *s, enum run_state *ret);
/* FINISHED, ERROR, CANCELLED, SUPERSEDED: nothing runs for it any more. */
static inline int run_state_is_terminal(enum run_state s)
{
	return s == RUN_FINISHED || s == RUN_ERROR || s == RUN_CANCELLED || s == RUN_SUPERSEDED;
}
