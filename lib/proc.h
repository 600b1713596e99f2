/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proc.h — process identity from /proc: a pid plus its start time (field 22 of /proc/<pid>/stat,
 * clock ticks since boot) names one process for its whole life, across exec, so a recycled pid
 * is never mistaken for the process we recorded. Owns nothing; reads /proc only.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Start time of pid. -EINVAL for pid <= 0, -ESRCH when gone, -EIO on an unparsable stat. */
int proc_start_time(pid_t pid, uint64_t *ret);
/* pid is alive and still the process that had start time `start`. */
bool proc_is_same(pid_t pid, uint64_t start);
