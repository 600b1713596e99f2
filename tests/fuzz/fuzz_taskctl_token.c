/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: arbitrary token files through taskctl_token_pick(), with no role and with
 * each kind of role (the first byte chooses). Whatever is picked is one word of the input, with
 * no blank, '#' or NUL; whatever is refused has a message, and no message holds a token of the
 * file (the second word of a '<role> <token>' line, or a bare token) unless that word is also
 * (part of) a role the message may name.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/taskctl_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BLANKS " \t\r\v\f"

/* Is word part of the first word of a two-word line of text (a role the message may list)? */
static int in_role(const char *text, const char *word)
{
	char *copy = strdup(text), *line, *rest, *save;
	int found = 0;

	if (!copy)
		return 1;
	for (line = copy; line && !found; line = rest) {
		char *w1, *w2;

		rest = strchr(line, '\n');
		if (rest)
			*rest++ = '\0';
		if (strchr(line, '#'))
			*strchr(line, '#') = '\0';
		w1 = strtok_r(line, BLANKS, &save);
		w2 = w1 ? strtok_r(NULL, BLANKS, &save) : NULL;
		found = w2 && !strtok_r(NULL, BLANKS, &save) && strstr(w1, word);
	}
	free(copy);
	return found;
}

/* Does [at, at + len) of msg overlap a place where msg echoes role (the --role the user
 * typed)? A token that only shows up there is the role's own text, not the file's secret. */
static int overlaps_role(const char *msg, const char *at, size_t len, const char *role)
{
	size_t rl = role ? strlen(role) : 0;

	for (const char *q = rl ? strstr(msg, role) : NULL; q; q = strstr(q + 1, role))
		if (q < at + len && at < q + rl)
			return 1;
	return 0;
}

/* No token word of text (8+ characters, not part of a role or of the role asked for) is in
 * msg, except where msg echoes the role asked for. */
static void check_message(const char *text, const char *role, const char *msg)
{
	char *copy = strdup(text), *line, *rest, *save;

	if (!copy)
		return;
	for (line = copy; line; line = rest) {
		char *w1, *w2, *tok;

		rest = strchr(line, '\n');
		if (rest)
			*rest++ = '\0';
		if (strchr(line, '#'))
			*strchr(line, '#') = '\0';
		w1 = strtok_r(line, BLANKS, &save);
		w2 = w1 ? strtok_r(NULL, BLANKS, &save) : NULL;
		tok = w2 ? w2 : w1;
		if (!tok || strlen(tok) < 8 || (role && strstr(role, tok)) || in_role(text, tok))
			continue;
		for (const char *at = strstr(msg, tok); at; at = strstr(at + 1, tok))
			if (!overlaps_role(msg, at, strlen(tok), role))
				abort(); /* a token in an error message */
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const roles[] = { NULL, "admin", "agent", "team:foo" };
	struct cd_error err = { 0 };
	const char *role;
	char *text, *tok = NULL;
	int r;

	if (size == 0)
		return 0;
	role = roles[data[0] % 4];
	data++;
	size--;
	r = taskctl_token_pick((const char *)data, size, role, &tok, &err);
	if (r == -ENOMEM)
		return 0;
	if (r == 0) {
		if (!tok || !*tok || tok[strcspn(tok, BLANKS "\n#")])
			abort();
		if (!memmem(data, size, tok, strlen(tok)))
			abort();
		free(tok);
		return 0;
	}
	if (tok || (r != -EINVAL && r != -ENOENT && r != -EDOM) || !err.msg[0])
		abort();
	if (memchr(data, '\0', size))
		return 0; /* refused whole, nothing of it is named */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	check_message(text, role, err.msg);
	free(text);
	return 0;
}
