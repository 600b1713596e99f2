/* SPDX-License-Identifier: Apache-2.0 */
#include "api/names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/json.h"
#include "lib/macro.h"
#include "lib/str.h"

static bool is_segment_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

static bool is_name_char(char c)
{
	return is_segment_char(c) || c == '+';
}

static bool is_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_hex(char c)
{
	return is_lower_hex(c) || (c >= 'A' && c <= 'F');
}

/* "'x'" or "'\x01'" for messages; always printable ASCII. */
static const char *show_char(char buf[static 8], char c)
{
	unsigned char u = (unsigned char)c;

	if (u >= 0x20 && u < 0x7f && u != '\'' && u != '\\')
		snprintf(buf, 8, "'%c'", c);
	else
		snprintf(buf, 8, "'\\x%02x'", u);
	return buf;
}

static bool is_dot_or_dotdot(const char *s, size_t n)
{
	return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* Validate the package part s[0..n) (no leading "//"); offsets in messages are into the whole
 * target, hence off. */
static int check_package(const char *s, size_t n, size_t off, struct cd_error *err)
{
	size_t seg_start = 0, segno = 1;
	char cb[8];

	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '/') {
			size_t len = i - seg_start;

			if (len == 0)
				return cd_error_set(
					err, -EINVAL,
					"target package segment %zu is empty (offset %zu)", segno,
					off + i);
			if (is_dot_or_dotdot(s + seg_start, len))
				return cd_error_set(
					err, -EINVAL,
					"target package segment %zu must not be \"%.*s\"", segno,
					(int)len, s + seg_start);
			/* builders pass segments and names as command-line arguments */
			if (s[seg_start] == '-')
				return cd_error_set(
					err, -EINVAL,
					"target package segment %zu must not start with '-'",
					segno);
			seg_start = i + 1;
			segno++;
			continue;
		}
		if (!is_segment_char(s[i]))
			return cd_error_set(err, -EINVAL,
					    "target package has invalid character %s at offset %zu "
					    "(allowed: A-Z a-z 0-9 _ . - and / between segments)",
					    show_char(cb, s[i]), off + i);
	}
	return 0;
}

static int check_name(const char *s, size_t n, size_t off, struct cd_error *err)
{
	char cb[8];

	if (n == 0)
		return cd_error_set(err, -EINVAL, "target name after ':' is empty");
	if (is_dot_or_dotdot(s, n))
		return cd_error_set(err, -EINVAL, "target name must not be \"%.*s\"", (int)n, s);
	if (s[0] == '-')
		return cd_error_set(err, -EINVAL, "target name must not start with '-'");
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(s[i]))
			return cd_error_set(err, -EINVAL,
					    "target name has invalid character %s at offset %zu "
					    "(allowed: A-Z a-z 0-9 _ . + -)",
					    show_char(cb, s[i]), off + i);
	return 0;
}

int target_parse(const char *s, struct target *ret, struct cd_error *err)
{
	const char *rest, *colon, *name;
	size_t len, pkg_len, name_len;
	int r;

	if (!s)
		return cd_error_set(err, -EINVAL, "target is missing");
	len = strlen(s);
	if (len > TARGET_MAX_LEN)
		return cd_error_set(err, -EINVAL, "target is %zu bytes long; the limit is %d", len,
				    TARGET_MAX_LEN);
	rest = startswith(s, "//");
	if (!rest)
		return cd_error_set(err, -EINVAL, "target must start with \"//\"");
	colon = strchr(rest, ':');
	if (colon) {
		pkg_len = (size_t)(colon - rest);
		name = colon + 1;
		name_len = strlen(name);
	} else {
		const char *slash;

		pkg_len = strlen(rest);
		if (pkg_len == 0)
			return cd_error_set(err, -EINVAL,
					    "target \"//\" names neither a package nor a target");
		slash = memrchr(rest, '/', pkg_len);
		name = slash ? slash + 1 : rest;
		name_len = pkg_len - (size_t)(name - rest);
	}
	if (pkg_len > 0) {
		r = check_package(rest, pkg_len, 2, err);
		if (r < 0)
			return r;
	}
	r = check_name(name, name_len, (size_t)(name - s), err);
	if (r < 0)
		return r;
	if (2 + pkg_len + 1 + name_len > TARGET_MAX_LEN)
		return cd_error_set(
			err, -EINVAL,
			"target's canonical form \"//package:name\" is longer than %d bytes",
			TARGET_MAX_LEN);
	memcpy(ret->package, rest, pkg_len);
	ret->package[pkg_len] = '\0';
	memcpy(ret->name, name, name_len);
	ret->name[name_len] = '\0';
	return 0;
}

static int format_done(int n, char *buf, size_t size)
{
	if (n < 0 || (size_t)n >= size) {
		if (size)
			buf[0] = '\0';
		return -ENOBUFS;
	}
	return n;
}

int target_format(const struct target *t, char *buf, size_t size)
{
	struct target check;
	int n;

	n = format_done(snprintf(buf, size, "//%s:%s", t->package, t->name), buf, size);
	if (n < 0)
		return n;
	/* Never hand out a spelling that does not parse back to the same target. */
	if (target_parse(buf, &check, NULL) < 0 || !target_equal(&check, t)) {
		buf[0] = '\0';
		return -EINVAL;
	}
	return n;
}

bool target_equal(const struct target *a, const struct target *b)
{
	return strcmp(a->package, b->package) == 0 && strcmp(a->name, b->name) == 0;
}

int commit_check(const char *s, struct cd_error *err)
{
	size_t len = strlen(s);

	if (len != COMMIT_SHA1_LEN && len != COMMIT_SHA256_LEN)
		return cd_error_set(err, -EINVAL,
				    "commit must be 40 or 64 hex digits (a full git object id), "
				    "has %zu characters",
				    len);
	for (size_t i = 0; i < len; i++) {
		if (is_lower_hex(s[i]))
			continue;
		if (is_hex(s[i]))
			return cd_error_set(err, -EINVAL, "commit must be lowercase hex");
		return cd_error_set(err, -EINVAL, "commit has a non-hex character at offset %zu",
				    i);
	}
	return 0;
}

static int artifact_parse_internal(const char *s, struct artifact *ret, bool commit_required,
				   struct cd_error *err)
{
	char tbuf[TARGET_MAX_LEN + 1];
	struct artifact a;
	const char *at;
	size_t tlen;
	int r;

	if (!s)
		return cd_error_set(err, -EINVAL, "artifact is missing");
	at = strchr(s, '@');
	if (!at) {
		if (commit_required)
			return cd_error_set(err, -EINVAL,
					    "artifact must be \"//package:name@<commit>\"; "
					    "the \"@<commit>\" is missing");
		r = target_parse(s, &a.target, err);
		if (r < 0)
			return r;
		a.commit[0] = '\0';
		*ret = a;
		return 0;
	}
	tlen = (size_t)(at - s);
	if (tlen > TARGET_MAX_LEN)
		return cd_error_set(err, -EINVAL, "target is %zu bytes long; the limit is %d", tlen,
				    TARGET_MAX_LEN);
	memcpy(tbuf, s, tlen);
	tbuf[tlen] = '\0';
	r = target_parse(tbuf, &a.target, err);
	if (r < 0)
		return r;
	r = commit_check(at + 1, err);
	if (r < 0)
		return r;
	strcpy(a.commit, at + 1);
	*ret = a;
	return 0;
}

int artifact_parse(const char *s, struct artifact *ret, struct cd_error *err)
{
	return artifact_parse_internal(s, ret, true, err);
}

int artifact_parse_ref(const char *s, struct artifact *ret, struct cd_error *err)
{
	return artifact_parse_internal(s, ret, false, err);
}

int artifact_format(const struct artifact *a, char *buf, size_t size)
{
	char tbuf[TARGET_MAX_LEN + 1];
	int n;

	n = target_format(&a->target, tbuf, sizeof(tbuf));
	if (n < 0)
		return n;
	if (a->commit[0] == '\0')
		return format_done(snprintf(buf, size, "%s", tbuf), buf, size);
	if (commit_check(a->commit, NULL) < 0)
		return -EINVAL;
	return format_done(snprintf(buf, size, "%s@%s", tbuf, a->commit), buf, size);
}

bool artifact_equal(const struct artifact *a, const struct artifact *b)
{
	return target_equal(&a->target, &b->target) && strcmp(a->commit, b->commit) == 0;
}

int digest_parse_hex(const char *s, struct digest *ret, struct cd_error *err)
{
	size_t len;

	if (!s)
		return cd_error_set(err, -EINVAL, "digest is missing");
	len = strlen(s);
	if (len != DIGEST_HEX_LEN)
		return cd_error_set(err, -EINVAL, "sha256 digest must be 64 hex digits, has %zu",
				    len);
	for (size_t i = 0; i < len; i++) {
		if (is_lower_hex(s[i]))
			continue;
		if (is_hex(s[i]))
			return cd_error_set(err, -EINVAL, "sha256 digest must be lowercase hex");
		return cd_error_set(err, -EINVAL,
				    "sha256 digest has a non-hex character at offset %zu", i);
	}
	memcpy(ret->hex, s, DIGEST_HEX_LEN + 1);
	return 0;
}

int digest_parse(const char *s, struct digest *ret, struct cd_error *err)
{
	const char *colon;

	if (!s)
		return cd_error_set(err, -EINVAL, "digest is missing");
	colon = strchr(s, ':');
	if (!colon)
		return cd_error_set(err, -EINVAL, "digest must be \"sha256:<64 hex digits>\"");
	if ((size_t)(colon - s) != 6 || strncmp(s, "sha256", 6) != 0) {
		char q[API_JSON_QUOTE_MAX];
		char alg[API_JSON_QUOTE_MAX];
		size_t n = MIN((size_t)(colon - s), sizeof(alg) - 1);

		memcpy(alg, s, n);
		alg[n] = '\0';
		return cd_error_set(err, -EINVAL,
				    "digest algorithm %s is not supported (only sha256)",
				    api_json_quote(q, sizeof(q), alg));
	}
	return digest_parse_hex(colon + 1, ret, err);
}

int digest_format(const struct digest *d, char *buf, size_t size)
{
	if (digest_parse_hex(d->hex, &(struct digest){}, NULL) < 0)
		return -EINVAL;
	return format_done(snprintf(buf, size, "sha256:%s", d->hex), buf, size);
}

static int label_check_n(const char *s, size_t len, size_t max, bool dns, const char *what,
			 struct cd_error *err)
{
	char cb[8];

	if (len == 0)
		return cd_error_set(err, -EINVAL, "%s is empty", what);
	if (len > max)
		return cd_error_set(err, -EINVAL, "%s is %zu characters long; the limit is %zu",
				    what, len, max);
	for (size_t i = 0; i < len; i++) {
		if (is_label_char(s[i]))
			continue;
		if (s[i] >= 'A' && s[i] <= 'Z')
			return cd_error_set(err, -EINVAL, "%s must be lowercase", what);
		return cd_error_set(
			err, -EINVAL,
			"%s has invalid character %s at offset %zu (allowed: a-z 0-9 -)", what,
			show_char(cb, s[i]), i);
	}
	if (dns && (s[0] == '-' || s[len - 1] == '-'))
		return cd_error_set(err, -EINVAL, "%s must not start or end with '-'", what);
	return 0;
}

int dns_label_check(const char *s, const char *what, struct cd_error *err)
{
	if (!s)
		return cd_error_set(err, -EINVAL, "%s is missing", what);
	return label_check_n(s, strlen(s), DNS_LABEL_MAX, true, what, err);
}

int zone_check(const char *region, const char *zone, struct cd_error *err)
{
	size_t rlen;
	int r;

	r = dns_label_check(zone, "zone", err);
	if (r < 0)
		return r;
	rlen = strlen(region);
	if (strncmp(zone, region, rlen) != 0 || zone[rlen] != '-' || zone[rlen + 1] == '\0')
		return cd_error_set(err, -EINVAL,
				    "zone \"%s\" is not in region \"%s\" (zones are named "
				    "<region>-<suffix>, e.g. us-east-1 in us-east)",
				    zone, region);
	return 0;
}

int task_id_check(const char *s, struct cd_error *err)
{
	if (!s)
		return cd_error_set(err, -EINVAL, "task id is missing");
	return label_check_n(s, strlen(s), TASK_ID_MAX, false, "task id", err);
}

/*
 * Split s into exactly n '/'-separated parts no longer than max, copying each into parts[i]
 * (DNS_LABEL_MAX or TASK_ID_MAX + 1 bytes each, as the caller sizes them).
 */
static int split_url(const char *s, const char *kind, const char *const what[], size_t n,
		     char *const parts[], const size_t sizes[], struct cd_error *err)
{
	const char *p = s;
	size_t i;

	for (i = 0; i < n; i++) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (!end && i + 1 < n)
			return cd_error_set(err, -EINVAL, "%s URL has no %s", kind, what[i + 1]);
		if (end && i + 1 == n)
			return cd_error_set(err, -EINVAL,
					    "%s URL has extra text after the %s (\"/...\")", kind,
					    what[i]);
		if (len == 0)
			return cd_error_set(err, -EINVAL, "%s URL has an empty %s", kind, what[i]);
		if (len >= sizes[i])
			return cd_error_set(err, -EINVAL,
					    "%s URL: %s is %zu characters long; the limit is %zu",
					    kind, what[i], len, sizes[i] - 1);
		memcpy(parts[i], p, len);
		parts[i][len] = '\0';
		p += len + 1;
	}
	return 0;
}

int job_url_from_parts(const char *region, const char *zone, const char *name, struct job_url *ret,
		       struct cd_error *err)
{
	int r;

	r = dns_label_check(region, "region", err);
	if (r < 0)
		return r;
	r = zone_check(region, zone, err);
	if (r < 0)
		return r;
	r = dns_label_check(name, "job name", err);
	if (r < 0)
		return r;
	if (ret != NULL) {
		snprintf(ret->region, sizeof(ret->region), "%s", region);
		snprintf(ret->zone, sizeof(ret->zone), "%s", zone);
		snprintf(ret->name, sizeof(ret->name), "%s", name);
	}
	return 0;
}

int job_url_parse(const char *s, struct job_url *ret, struct cd_error *err)
{
	static const char *const what[] = { "region", "zone", "job name" };
	struct job_url u = { 0 };
	char *const parts[] = { u.region, u.zone, u.name };
	const size_t sizes[] = { sizeof(u.region), sizeof(u.zone), sizeof(u.name) };
	const char *rest;
	int r;

	if (!s)
		return cd_error_set(err, -EINVAL, "job URL is missing");
	rest = startswith(s, "job://");
	if (!rest)
		return cd_error_set(
			err, -EINVAL,
			"job URL must start with \"job://\" (job://<region>/<zone>/<name>)");
	r = split_url(rest, "job", what, 3, parts, sizes, err);
	if (r < 0)
		return r;
	r = job_url_from_parts(u.region, u.zone, u.name, NULL, err);
	if (r < 0)
		return r;
	*ret = u;
	return 0;
}

int job_url_format(const struct job_url *u, char *buf, size_t size)
{
	if (job_url_from_parts(u->region, u->zone, u->name, NULL, NULL) < 0)
		return -EINVAL;
	return format_done(snprintf(buf, size, "job://%s/%s/%s", u->region, u->zone, u->name), buf,
			   size);
}

bool job_url_equal(const struct job_url *a, const struct job_url *b)
{
	return strcmp(a->region, b->region) == 0 && strcmp(a->zone, b->zone) == 0 &&
	       strcmp(a->name, b->name) == 0;
}

int task_url_parse(const char *s, struct task_url *ret, struct cd_error *err)
{
	static const char *const what[] = { "region", "zone", "job name", "task id" };
	struct task_url u = { 0 };
	char *const parts[] = { u.job.region, u.job.zone, u.job.name, u.task_id };
	const size_t sizes[] = { sizeof(u.job.region), sizeof(u.job.zone), sizeof(u.job.name),
				 sizeof(u.task_id) };
	const char *rest;
	int r;

	if (!s)
		return cd_error_set(err, -EINVAL, "task URL is missing");
	rest = startswith(s, "task://");
	if (!rest)
		return cd_error_set(err, -EINVAL,
				    "task URL must start with \"task://\" "
				    "(task://<region>/<zone>/<job>/<task id>)");
	r = split_url(rest, "task", what, 4, parts, sizes, err);
	if (r < 0)
		return r;
	r = job_url_from_parts(u.job.region, u.job.zone, u.job.name, NULL, err);
	if (r < 0)
		return r;
	r = task_id_check(u.task_id, err);
	if (r < 0)
		return r;
	*ret = u;
	return 0;
}

int task_url_format(const struct task_url *u, char *buf, size_t size)
{
	if (job_url_from_parts(u->job.region, u->job.zone, u->job.name, NULL, NULL) < 0 ||
	    task_id_check(u->task_id, NULL) < 0)
		return -EINVAL;
	return format_done(snprintf(buf, size, "task://%s/%s/%s/%s", u->job.region, u->job.zone,
				    u->job.name, u->task_id),
			   buf, size);
}

bool task_url_equal(const struct task_url *a, const struct task_url *b)
{
	return job_url_equal(&a->job, &b->job) && strcmp(a->task_id, b->task_id) == 0;
}
