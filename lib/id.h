/* SPDX-License-Identifier: Apache-2.0 */
/*
 * id.h — random identifiers and secrets from getrandom(2).
 * Owns: the id format (time-sortable 28 lowercase hex: 12 of milliseconds + 16 random) and token
 * generation (256-bit, 64 hex). Never falls back to a weak source: failures are returned.
 */
#pragma once

#include <stddef.h>

#define ID_LEN 28
#define TOKEN_HEX_LEN 64

/* Fill buf with n random bytes. Returns 0 or -errno. */
int id_random_bytes(void *buf, size_t n);
/* Write size-1 random lowercase hex digits and a NUL into buf. Aborts only if the kernel's
 * CSPRNG is unavailable (cannot happen on Linux >= 3.17 once booted). */
void id_random_hex(char *buf, size_t size);
/* New time-sortable id into buf[ID_LEN + 1]. */
void id_new(char buf[static ID_LEN + 1]);
/* New 256-bit secret as 64 hex digits into buf[TOKEN_HEX_LEN + 1]. Returns 0 or -errno. */
int id_new_token(char buf[static TOKEN_HEX_LEN + 1]);
