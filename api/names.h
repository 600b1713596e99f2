/* SPDX-License-Identifier: Apache-2.0 */
/*
 * names.h — the identifiers of the wire contract: Target (//pkg/sub:name), Artifact
 * (target@commit), content digest (sha256:<hex>), job and task URLs. Parses into fixed-size
 * structs (no allocation) and formats back to the one canonical spelling; parse(format(x)) == x.
 * Does not resolve anything (which commit, which host): that is the artifact store's and the
 * cluster manager's business.
 *
 * Grammar (see docs/api.md):
 *   target   = "//" [ package ] [ ":" name ]       package = segment *( "/" segment )
 *   segment  = 1*( ALPHA / DIGIT / "_" / "." / "-" ), not "." or "..", not starting with "-"
 *   name     = 1*( ALPHA / DIGIT / "_" / "." / "+" / "-" ), not "." or "..", not starting
 *              with "-" (builders pass both as command-line arguments)
 *   "//pkg/sub" (no ":") is shorthand for "//pkg/sub:sub"; "//:name" is the root package;
 *   the canonical spelling always has the ":" and is at most TARGET_MAX_LEN bytes.
 *   artifact = target "@" commit                   commit = 40 or 64 lowercase hex
 *   digest   = "sha256:" 64 lowercase hex
 *   job URL  = "job://" region "/" zone "/" job    task URL = "task://" region "/" zone "/" job "/" task_id
 *   region, zone, job = DNS label: [a-z0-9-]{1,63}, no leading or trailing "-";
 *   zone = region "-" suffix (us-east-1 is in us-east);  task_id = [a-z0-9-]{1,64}
 *
 * Errors: every parser returns 0 or -EINVAL, and fills err (may be NULL) with a message that
 * names the part that is wrong. Formatters return the length written (excluding the NUL) or
 * -ENOBUFS when size is too small (buf then holds ""), or -EINVAL for an invalid struct.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "lib/error.h"

#define TARGET_MAX_LEN 256 /* canonical "//pkg:name" */
#define COMMIT_SHA1_LEN 40
#define COMMIT_SHA256_LEN 64
#define ARTIFACT_MAX_LEN (TARGET_MAX_LEN + 1 + COMMIT_SHA256_LEN)
#define DIGEST_HEX_LEN 64
#define DIGEST_STR_LEN (7 + DIGEST_HEX_LEN) /* "sha256:" + hex */
#define DNS_LABEL_MAX 63
#define TASK_ID_MAX 64
#define JOB_URL_MAX_LEN (6 + 3 * DNS_LABEL_MAX + 2)
#define TASK_URL_MAX_LEN (7 + 3 * DNS_LABEL_MAX + 3 + TASK_ID_MAX)

struct target {
	char package[TARGET_MAX_LEN + 1]; /* "repo/foo_service"; "" for the root package */
	char name[TARGET_MAX_LEN + 1];	  /* "main" */
};

struct artifact {
	struct target target;
	char commit[COMMIT_SHA256_LEN + 1]; /* 40 or 64 lowercase hex; "" = none (see _parse_ref) */
};

struct digest {
	char hex[DIGEST_HEX_LEN + 1]; /* lowercase */
};

struct job_url {
	char region[DNS_LABEL_MAX + 1];
	char zone[DNS_LABEL_MAX + 1];
	char name[DNS_LABEL_MAX + 1];
};

struct task_url {
	struct job_url job;
	char task_id[TASK_ID_MAX + 1];
};

int target_parse(const char *s, struct target *ret, struct cd_error *err);
int target_format(const struct target *t, char *buf, size_t size);
bool target_equal(const struct target *a, const struct target *b);

/* "//t:name@commit"; the commit is required. */
int artifact_parse(const char *s, struct artifact *ret, struct cd_error *err);
/* A target with an optional "@commit" (JobSpec.target): ret->commit is "" when absent. */
int artifact_parse_ref(const char *s, struct artifact *ret, struct cd_error *err);
/* Formats "//t:name@commit", or just the target when commit is "". */
int artifact_format(const struct artifact *a, char *buf, size_t size);
bool artifact_equal(const struct artifact *a, const struct artifact *b);
/* 40 or 64 lowercase hex digits. */
int commit_check(const char *s, struct cd_error *err);

int digest_parse(const char *s, struct digest *ret, struct cd_error *err);
int digest_format(const struct digest *d, char *buf, size_t size);
/* The bare 64-hex form (CAS paths /cas/<hex>). */
int digest_parse_hex(const char *s, struct digest *ret, struct cd_error *err);

/* what names the label in messages ("region", "zone", "job name"). */
int dns_label_check(const char *s, const char *what, struct cd_error *err);
/* zone is a valid label and starts with region followed by '-' and at least one character. */
int zone_check(const char *region, const char *zone, struct cd_error *err);
int task_id_check(const char *s, struct cd_error *err);

int job_url_parse(const char *s, struct job_url *ret, struct cd_error *err);
/* Validate parts (e.g. from a REST path /v1/jobs/{region}/{zone}/{name}) into ret. */
int job_url_from_parts(const char *region, const char *zone, const char *name, struct job_url *ret,
		       struct cd_error *err);
int job_url_format(const struct job_url *u, char *buf, size_t size);
bool job_url_equal(const struct job_url *a, const struct job_url *b);

int task_url_parse(const char *s, struct task_url *ret, struct cd_error *err);
int task_url_format(const struct task_url *u, char *buf, size_t size);
bool task_url_equal(const struct task_url *a, const struct task_url *b);
