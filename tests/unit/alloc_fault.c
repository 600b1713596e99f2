/* SPDX-License-Identifier: Apache-2.0 */
/* The --wrap side of alloc_fault.h. */
#include "tests/unit/alloc_fault.h"

#include <stdarg.h>
#include <stddef.h>

static long fail_at = -1, n_allocs;
static bool fail_all, injected;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_vasprintf(char **ret, const char *fmt, va_list ap);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
int __wrap_vasprintf(char **ret, const char *fmt, va_list ap);

void alloc_fault_arm(long n)
{
	n_allocs = 0;
	injected = false;
	fail_all = false;
	fail_at = n;
}

void alloc_fault_arm_all(void)
{
	alloc_fault_arm(-1);
	fail_all = true;
}

bool alloc_fault_disarm(void)
{
	fail_at = -1;
	fail_all = false;
	return injected;
}

static bool should_fail(void)
{
	if (!fail_all && (fail_at < 0 || n_allocs++ != fail_at))
		return false;
	injected = true;
	return true;
}

void *__wrap_malloc(size_t n)
{
	return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return should_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return should_fail() ? NULL : __real_strdup(s);
}

int __wrap_vasprintf(char **ret, const char *fmt, va_list ap)
{
	return should_fail() ? -1 : __real_vasprintf(ret, fmt, ap);
}
