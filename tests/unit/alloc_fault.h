/* SPDX-License-Identifier: Apache-2.0 */
/*
 * alloc_fault.h — allocation-failure injection for unit tests (SQLite's habit: every failure
 * point, one at a time). A test links tests/unit/alloc_fault.c with
 * $(call wrap,malloc calloc realloc strdup vasprintf): those calls made by the objects linked
 * into the test go through one counter, and the armed one fails, once — or, armed with
 * alloc_fault_arm_all(), every one fails until disarmed (memory that stays exhausted: a
 * function's fallback allocation fails too). Calls made inside shared libraries (jansson's own
 * allocations) are not counted. Not thread-safe: one thread at a time.
 */
#pragma once

#include <stdbool.h>

/* Make allocation number n (0-based, counted from this call) fail; n < 0 disarms. */
void alloc_fault_arm(long n);
/* Make every allocation from this call on fail, until alloc_fault_disarm(). */
void alloc_fault_arm_all(void);
/* Disarm. Returns whether an armed allocation was reached (and failed): for alloc_fault_arm(n),
 * false means the code under test made fewer than n + 1 allocations, so every failure point has
 * been tried; for alloc_fault_arm_all(), false means it made no allocation at all. */
bool alloc_fault_disarm(void);
