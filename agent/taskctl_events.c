/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/taskctl_events.h"

#include <stdlib.h>
#include <string.h>

#include "lib/macro.h"
#include "lib/str.h"

uint64_t taskctl_event_cursor(enum taskctl_events_source src, const json_t *event)
{
	const json_t *v = json_object_get(event, src == TASKCTL_EVENTS_DEPLOYD ? "id" : "seq");
	json_int_t n = json_integer_value(v);

	return json_is_integer(v) && n > 0 ? (uint64_t)n : 0;
}

static const char *str_or(const json_t *o, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && *s ? s : def;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* value as it appears after "key=": bare when unambiguous, else JSON */
static int add_value(struct strbuf *sb, const json_t *v)
{
	_cleanup_free_ char *text = NULL;
	const char *s = json_string_value(v);

	if (s && *s && !s[strcspn(s, " \t\r\n=\"")])
		return strbuf_adds(sb, s);
	text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	return text ? strbuf_adds(sb, text) : -1;
}

static bool omitted(const char *key, const char *const *omit)
{
	for (; omit && *omit; omit++)
		if (streq(key, *omit))
			return true;
	return false;
}

const char *taskctl_event_data_summary(const json_t *data, const char *const *omit, char *buf,
				       size_t size)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	_cleanup_free_ const char **keys = NULL;
	size_t n = 0, i = 0;
	const char *key;
	json_t *v;
	int r = 0;

	if (!size)
		return buf;
	buf[0] = '\0';
	if (!data)
		return buf;
	if (!json_is_object(data))
		r = add_value(&sb, data);
	else {
		n = json_object_size(data);
		keys = n ? calloc(n, sizeof(*keys)) : NULL;
		if (n && !keys)
			return buf;
		json_object_foreach((json_t *)data, key, v) {
			if (i < n && !json_is_null(v) && !omitted(key, omit))
				keys[i++] = key;
		}
		qsort(keys, i, sizeof(*keys), cmp_str);
		for (size_t k = 0; k < i && r >= 0 && sb.len < size; k++) {
			r = strbuf_addf(&sb, "%s%s=", k ? " " : "", keys[k]);
			if (r >= 0)
				r = add_value(&sb, json_object_get(data, keys[k]));
		}
	}
	if (r < 0 || !sb.buf)
		return buf;
	if (sb.len < size) {
		memcpy(buf, sb.buf, sb.len + 1);
		return buf;
	}
	/* cut, with "..." when there is room for it */
	if (size > 4) {
		memcpy(buf, sb.buf, size - 4);
		memcpy(buf + size - 4, "...", 4);
	} else {
		memcpy(buf, sb.buf, size - 1);
		buf[size - 1] = '\0';
	}
	return buf;
}

/* The last column has no padding: no line ends in blanks. */
static void last_columns(FILE *f, bool wide, const char *col, int width, const char *data)
{
	if (wide && *data)
		fprintf(f, "%-*s  %s\n", width, col, data);
	else
		fprintf(f, "%s\n", col);
}

void taskctl_event_header(FILE *f, enum taskctl_events_source src, bool wide)
{
	if (src == TASKCTL_EVENTS_DEPLOYD) {
		fprintf(f, "%8s  %-24s  %-16s  %-24s  ", "ID", "TIME", "ACTOR", "KIND");
		last_columns(f, wide, "SUBJECT", 42, "DATA");
	} else {
		fprintf(f, "%8s  %-24s  %-28s  %-10s  %-7s  ", "SEQ", "TIME", "TASK ID", "TYPE",
			"STATE");
		last_columns(f, wide, "REASON", 13, "DATA");
	}
}

void taskctl_event_row(FILE *f, enum taskctl_events_source src, const json_t *event, bool wide)
{
	/* taskd's state and reason have their columns */
	static const char *const taskd_columns[] = { "state", "reason", NULL };
	const json_t *data = json_object_get(event, "data");
	unsigned long long cursor = taskctl_event_cursor(src, event);
	char summary[256] = "";

	if (wide)
		taskctl_event_data_summary(data, src == TASKCTL_EVENTS_TASKD ? taskd_columns : NULL,
					   summary, sizeof(summary));
	if (src == TASKCTL_EVENTS_DEPLOYD) {
		fprintf(f, "%8llu  %-24s  %-16s  %-24s  ", cursor, str_or(event, "ts", "-"),
			str_or(event, "actor", "-"), str_or(event, "kind", "-"));
		last_columns(f, wide, str_or(event, "subject", "-"), 42, summary);
	} else {
		fprintf(f, "%8llu  %-24s  %-28s  %-10s  %-7s  ", cursor, str_or(event, "ts", "-"),
			str_or(event, "task_id", "-"), str_or(event, "type", "-"),
			str_or(data, "state", "-"));
		last_columns(f, wide, str_or(data, "reason", "-"), 13, summary);
	}
}
