/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskctl_events.h — how `taskctl events` shows the two event logs it reads: taskd's
 * (GET /v1/events: {seq, ts, task_id, type, data}) and deployd's (GET /v1/events: {id, ts,
 * actor, kind, subject, data}, struct store_event). Owns the columns, the one-line summary of
 * an event's data and which member is the long-poll cursor. No HTTP: the caller fetches.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum taskctl_events_source {
	TASKCTL_EVENTS_TASKD,
	TASKCTL_EVENTS_DEPLOYD,
};

/* The event's position in its log (taskd: "seq", deployd: "id"); 0 when missing or invalid,
 * which no event has (both logs count from 1). */
uint64_t taskctl_event_cursor(enum taskctl_events_source src, const json_t *event);

/*
 * One line for data: "key=value" pairs in key order, strings unquoted unless they hold blanks,
 * '=' or quotes (then as JSON strings), other values as compact JSON; null members and the keys
 * in omit (NULL-terminated, may be NULL: what other columns show) left out; cut to fit size
 * with "..." at the end. A non-object is written as compact JSON. Returns buf ("" for no data).
 */
const char *taskctl_event_data_summary(const json_t *data, const char *const *omit, char *buf,
				       size_t size);

/* The table: header and one row per event. wide adds the data summary (deployd: DATA; taskd:
 * MESSAGE and DATA stay the last column). */
void taskctl_event_header(FILE *f, enum taskctl_events_source src, bool wide);
void taskctl_event_row(FILE *f, enum taskctl_events_source src, const json_t *event, bool wide);
