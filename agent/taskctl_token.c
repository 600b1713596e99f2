/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/taskctl_token.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/str.h"

#define WORDS_MAX 3 /* a third word on a line is an error: count it, never keep it */

/* Split line (modified) into at most WORDS_MAX blank-separated words; returns how many. */
static size_t split_words(char *line, char *words[static WORDS_MAX])
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		p += strspn(p, " \t\r\v\f");
		if (!*p || n == WORDS_MAX)
			return n;
		words[n++] = p;
		p += strcspn(p, " \t\r\v\f");
		if (*p)
			*p++ = '\0';
	}
}

/* Append role to the ", "-separated list unless it is there already. */
static int add_role(struct strbuf *roles, const char *role)
{
	const char *p = roles->buf;
	size_t len = strlen(role);

	while (p && *p) {
		size_t n = strcspn(p, ",");

		if (n == len && strncmp(p, role, len) == 0)
			return 0;
		p += n;
		p += strspn(p, ", ");
	}
	return strbuf_addf(roles, "%s%s", roles->len ? ", " : "", role);
}

/* The work of taskctl_token_pick() on a NUL-terminated copy it may cut into lines. */
static int pick(char *copy, const char *role, char **ret_token, struct cd_error *err)
{
	_cleanup_strbuf_ struct strbuf roles = STRBUF_INIT;
	const char *found = NULL, *bare = NULL;
	unsigned lineno = 0, bare_line = 0, pair_line = 0;
	char *line, *rest;

	for (line = copy; line; line = rest) {
		char *words[WORDS_MAX], *hash;
		size_t n;

		rest = strchr(line, '\n');
		if (rest)
			*rest++ = '\0';
		lineno++;
		hash = strchr(line, '#'); /* as deployd reads it: '#' starts a comment */
		if (hash)
			*hash = '\0';
		n = split_words(line, words);
		if (n == 0)
			continue;
		if (n > 2)
			return cd_error_set(err, -EINVAL,
					    "line %u: expected one token, or '<role> <token>'",
					    lineno);
		if (n == 1) {
			if (bare)
				return cd_error_set(
					err, -EINVAL,
					"line %u: a second bare token (expected '<role> "
					"<token>' lines)",
					lineno);
			bare = words[0];
			bare_line = lineno;
			continue;
		}
		if (!pair_line)
			pair_line = lineno;
		if (add_role(&roles, words[0]) < 0)
			return cd_error_set(err, -ENOMEM, "out of memory");
		if (!found && streq(words[0], role ? role : "admin"))
			found = words[1];
	}
	if (bare && pair_line)
		return cd_error_set(
			err, -EINVAL,
			"line %u: a bare token in a file of '<role> <token>' lines (line %u)",
			bare_line, pair_line);
	if (bare && role)
		return cd_error_set(
			err, -EDOM,
			"--role '%s': the token file holds one token, not '<role> <token>' "
			"lines",
			role);
	if (bare)
		found = bare;
	else if (!pair_line)
		return cd_error_set(err, -EINVAL, "the token file holds no token");
	else if (!found && role)
		return cd_error_set(err, -ENOENT, "no token for role '%s'; roles in the file: %s",
				    role, roles.buf);
	else if (!found)
		return cd_error_set(
			err, -ENOENT,
			"no admin token; roles in the file: %s (choose one with --role)",
			roles.buf);
	*ret_token = strdup(found);
	if (!*ret_token)
		return cd_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

int taskctl_token_pick(const char *text, size_t len, const char *role, char **ret_token,
		       struct cd_error *err)
{
	char *copy;
	int r;

	if (memchr(text, '\0', len))
		return cd_error_set(err, -EINVAL, "the token file holds a NUL byte");
	/* not strndup: text need not be NUL-terminated, and strndup may look past len for one */
	copy = malloc(len + 1);
	if (!copy)
		return cd_error_set(err, -ENOMEM, "out of memory");
	memcpy(copy, text, len);
	copy[len] = '\0';
	r = pick(copy, role, ret_token, err);
	explicit_bzero(copy, len);
	free(copy);
	return r;
}
