/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskctl_token.h — which bearer token taskctl sends, picked from the text of a token file.
 * Two formats are read: taskd's (one token on one line) and deployd's (`<role> <token>` lines,
 * '#' comments and blank lines ignored, roles admin | agent | team:<name>; see deployd(8)).
 * Pure: works on text the caller read, prints nothing, and no message ever contains a token.
 */
#pragma once

#include <stddef.h>

#include "lib/error.h"

/*
 * Pick the token from text (len bytes, need not be NUL-terminated). With a deployd file: the
 * token of role when role is set, else the first admin token. With taskd's single token: that
 * token; a role cannot be chosen from it.
 * *ret_token is a new string (the caller wipes and frees it). Errors, with err's message:
 *   -EINVAL  malformed file (names the line, never its content), or an empty one
 *   -ENOENT  role (or, without one, admin) not in the file; the message lists the roles present
 *   -EDOM    role given for a single-token file
 *   -ENOMEM
 */
int taskctl_token_pick(const char *text, size_t len, const char *role, char **ret_token,
		       struct cd_error *err);
