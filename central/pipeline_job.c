/* SPDX-License-Identifier: Apache-2.0 */
#include "central/pipeline_job.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobspec.h"
#include "api/names.h"
#include "central/pipeline_api.h"
#include "lib/fs.h"
#include "lib/str.h"

#define SPEC_MAX_BYTES ((size_t)1024 * 1024)

struct zone_client {
	char *zone, *region, *url;
	struct http_client *http;
};

struct job_deployer {
	struct builder *builder;
	char *log_dir;
	struct zone_client *zones;
	size_t n_zones;
	usec_t poll;
};

void job_deployer_free(struct job_deployer *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n_zones; i++) {
		free(d->zones[i].zone);
		free(d->zones[i].region);
		free(d->zones[i].url);
		http_client_free(d->zones[i].http);
	}
	free(d->zones);
	free(d->log_dir);
	free(d);
}

int job_deployer_new(const struct job_deployer_config *cfg, struct job_deployer **ret,
		     struct cd_error *err)
{
	struct job_deployer *d;
	int r;

	if (!cfg->builder)
		return cd_error_set(err, -EINVAL, "the job stage needs the builder");
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->builder = cfg->builder;
	if (cfg->log_dir && !(d->log_dir = strdup(cfg->log_dir))) {
		free(d);
		return -ENOMEM;
	}
	d->poll = cfg->poll ? cfg->poll : USEC_PER_SEC;
	d->zones = calloc(cfg->n_zones + 1, sizeof(*d->zones));
	if (!d->zones) {
		job_deployer_free(d);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const struct pipeline_zone *z = &cfg->zones[i];
		struct http_client_config hc = { .base_url = z->url,
						 .bearer_token = z->token,
						 .timeout_ms = 30000 };

		d->n_zones++;
		d->zones[i].zone = strdup(z->zone);
		d->zones[i].region = strdup(z->region);
		d->zones[i].url = strdup(z->url);
		if (!d->zones[i].zone || !d->zones[i].region || !d->zones[i].url) {
			job_deployer_free(d);
			return -ENOMEM;
		}
		r = http_client_new(&hc, &d->zones[i].http, err);
		if (r < 0) {
			job_deployer_free(d);
			return r;
		}
	}
	*ret = d;
	return 0;
}

static struct zone_client *find_zone(struct job_deployer *d, const char *zone)
{
	for (size_t i = 0; i < d->n_zones; i++)
		if (streq(d->zones[i].zone, zone))
			return &d->zones[i];
	return NULL;
}

static void set_msg(struct exec_result *res, enum exec_outcome o, const char *fmt, ...)
	_printf_(3, 4);
static void set_msg(struct exec_result *res, enum exec_outcome o, const char *fmt, ...)
{
	va_list ap;

	res->outcome = o;
	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
}

static int open_log(struct exec_ctx *ctx, const char *log_dir)
{
	char path[PATH_MAX], *slash;

	if (!log_dir ||
	    pipeline_log_path(log_dir, ctx->claim->pipeline_id, ctx->claim->run, ctx->claim->stage,
			      ctx->claim->attempt, path, sizeof(path)) < 0)
		return -1;
	slash = strrchr(path, '/');
	*slash = '\0';
	if (fs_mkdir_p(path, 0755) < 0)
		return -1;
	*slash = '/';
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/*
 * First claim: build (or find) the spec target at the run's commit, read its JobSpec, pin the
 * target to the commit, check the target is built and every zone is configured. Writes the
 * progress object into *ret_state, or fills res for a failure.
 */
static int resolve(struct job_deployer *d, struct exec_ctx *ctx, const char *log_dir,
		   json_t **ret_state, struct exec_result *res)
{
	_cleanup_jobspec_ struct jobspec *spec = NULL;
	_cleanup_problem_ struct problem p;
	_cleanup_free_ char *text = NULL;
	_cleanup_close_ int log_fd = -EBADF;
	struct cd_error err = { 0 };
	struct store_pipeline pl = { 0 };
	const char *spec_target = node_spec(ctx->node);
	char digest[72], target[600], pinned[700], line[400];
	json_t *sj = NULL, *zones;
	size_t len = 0;
	int r;

	problem_init(&p, 422, NULL, NULL);
	r = store_pipeline_get(ctx->store, ctx->claim->pipeline_id, &pl, &err);
	if (r < 0)
		return r;
	log_fd = open_log(ctx, log_dir);
	r = builder_ensure_target(d->builder, ctx, pl.repo, ctx->run->commit, spec_target, log_fd,
				  digest, &err);
	store_pipeline_release(&pl);
	if (r == 1 || r == -ENOENT) {
		set_msg(res, EXEC_FAILED, "spec %s: %s", spec_target, cd_error_message(&err));
		return 0;
	}
	if (r == -ESTALE || r == -ECANCELED || r == -ETIMEDOUT)
		return r;
	if (r < 0) {
		set_msg(res, EXEC_RETRY, "spec %s: %s", spec_target, cd_error_message(&err));
		return 0;
	}
	r = builder_read_artifact_file(d->builder, digest, ".json", SPEC_MAX_BYTES, &text, &len,
				       &err);
	if (r < 0) {
		set_msg(res, r == -EAGAIN ? EXEC_RETRY : EXEC_FAILED, "spec %s: %s", spec_target,
			cd_error_message(&err));
		return 0;
	}
	r = jobspec_from_string(text, len, &spec, &p);
	if (r < 0) {
		set_msg(res, EXEC_FAILED, "spec %s@%s is not a valid JobSpec: %s", spec_target,
			ctx->run->commit, http_client_problem_format(&p, line, sizeof(line)));
		return 0;
	}
	if (spec->target.commit[0]) {
		set_msg(res, EXEC_FAILED,
			"spec %s pins its target to a commit; the pipeline pins it to the run's",
			spec_target);
		return 0;
	}
	if (!spec->zones || !spec->zones[0]) {
		set_msg(res, EXEC_FAILED, "spec %s lists no zones", spec_target);
		return 0;
	}
	for (char **z = spec->zones; *z; z++)
		if (!find_zone(d, *z)) {
			set_msg(res, EXEC_FAILED,
				"zone %s (from %s) has no cluster manager configured here", *z,
				spec_target);
			return 0;
		}
	target_format(&spec->target.target, target, sizeof(target));
	r = builder_lookup_artifact(d->builder, target, ctx->run->commit, digest, &err);
	if (r == 0) {
		set_msg(res, EXEC_FAILED,
			"%s@%s is not built: add it to a build stage before \"%s\"", target,
			ctx->run->commit, ctx->claim->stage);
		return 0;
	}
	if (r < 0) {
		set_msg(res, EXEC_RETRY, "%s", cd_error_message(&err));
		return 0;
	}
	/* Pin: the cluster resolves target@commit to the digest the build indexed. */
	snprintf(pinned, sizeof(pinned), "%s@%s", target, ctx->run->commit);
	r = jobspec_to_json(spec, &sj);
	if (r < 0)
		return r;
	if (json_object_set_new(sj, "target", json_string(pinned)) < 0) {
		json_decref(sj);
		return -ENOMEM;
	}
	zones = json_array();
	for (char **z = spec->zones; zones && *z; z++)
		json_array_append_new(zones, json_string(*z));
	*ret_state = json_pack("{s:o, s:s, s:o, s:i, s:{}}", "spec", sj, "name", spec->name,
			       "zones", zones ? zones : json_null(), "zone_index", 0, "versions");
	if (!*ret_state)
		return -ENOMEM;
	if (log_fd >= 0) {
		char msg[1024];
		int n = snprintf(msg, sizeof(msg), "# deploying %s (%s) to %zu zone(s)\n", pinned,
				 spec->name, json_array_size(zones));

		if (n > 0)
			(void)fs_write_all(log_fd, msg, MIN((size_t)n, sizeof(msg) - 1));
	}
	return 0;
}

static int put_job(struct zone_client *z, const char *name, json_t *spec, int64_t *ret_version,
		   struct exec_result *res)
{
	_cleanup_free_ char *ename = http_client_escape(name);
	struct cd_error err = { 0 };
	char path[512], line[400];
	json_t *reply = NULL;
	long status = 0;
	int r;

	if (!ename)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/v1/jobs/%s/%s/%s", z->region, z->zone, ename);
	r = http_client_json(z->http, "PUT", path, spec, &reply, &status, &err);
	if (r < 0) {
		set_msg(res, EXEC_RETRY, "%s: PutJob: %s", z->zone, cd_error_message(&err));
		return 0;
	}
	if (status == 200 || status == 201) {
		*ret_version = json_integer_value(json_object_get(reply, "version"));
		json_decref(reply);
		return 1;
	}
	{
		struct problem p;

		if (http_client_problem(status, reply, &p) < 0) {
			json_decref(reply);
			return -ENOMEM;
		}
		set_msg(res, status >= 500 || status == 429 ? EXEC_RETRY : EXEC_FAILED,
			"%s: PutJob: %s", z->zone,
			http_client_problem_format(&p, line, sizeof(line)));
		problem_release(&p);
	}
	json_decref(reply);
	return 0;
}

/* 1 = healthy at version, 0 = not yet (res says what it is doing) or failed (res). */
static int poll_job(struct zone_client *z, const char *name, int64_t version,
		    struct exec_result *res)
{
	_cleanup_free_ char *ename = http_client_escape(name);
	struct cd_error err = { 0 };
	char path[512];
	json_t *reply = NULL, *rollout;
	const char *state, *rstate, *reason, *rreason;
	int64_t stable, current;
	long status = 0;
	int r;

	if (!ename)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/v1/jobs/%s/%s/%s/state", z->region, z->zone, ename);
	r = http_client_json(z->http, "GET", path, NULL, &reply, &status, &err);
	if (r < 0) {
		set_msg(res, EXEC_RETRY, "%s: GetJobState: %s", z->zone, cd_error_message(&err));
		return 0;
	}
	if (status != 200) {
		set_msg(res, status >= 500 ? EXEC_RETRY : EXEC_FAILED, "%s: GetJobState: HTTP %ld",
			z->zone, status);
		json_decref(reply);
		return 0;
	}
	state = json_string_value(json_object_get(reply, "state"));
	reason = json_string_value(json_object_get(reply, "reason"));
	stable = json_integer_value(json_object_get(reply, "stable_version"));
	current = json_integer_value(json_object_get(reply, "version"));
	rollout = json_object_get(reply, "rollout");
	rstate = json_string_value(json_object_get(rollout, "state"));
	rreason = json_string_value(json_object_get(rollout, "reason"));
	r = 0;
	if (rstate && streq(rstate, "rolled_back") && stable < current) {
		/* The rollback was decided but the zone still runs tasks of the failed version:
		 * the stage ends when it serves the previous version again, so a pipeline that
		 * says "rolled back" means it (the stage timeout bounds a rollback that hangs). */
		set_msg(res, EXEC_DEFER, "%s: rolling back: %s", z->zone,
			rreason ? rreason :
			reason	? reason :
				  "version failed");
	} else if (rstate && (streq(rstate, "rolled_back") || streq(rstate, "halted"))) {
		/* The cluster's reason says what happened ("rolled back from version 3 to 2:
		 * task ... failed its health check"). */
		const char *why = rreason ? rreason : reason;

		if (why)
			set_msg(res, EXEC_FAILED, "%s: %s", z->zone, why);
		else
			set_msg(res, EXEC_FAILED, "%s: version %" PRId64 " %s", z->zone, version,
				streq(rstate, "halted") ? "rollout halted" : "rolled back");
	} else if (state && streq(state, "ERROR"))
		set_msg(res, EXEC_FAILED, "%s: job is ERROR: %s", z->zone,
			reason ? reason : "no reason given");
	else if (state && streq(state, "RUNNING") && stable >= version &&
		 (!rstate || streq(rstate, "done")))
		r = 1;
	else
		set_msg(res, EXEC_DEFER, "%s: rolling out version %" PRId64 " (%s%s%s)", z->zone,
			version, state ? state : "?", reason ? ": " : "", reason ? reason : "");
	json_decref(reply);
	return r;
}

int job_deployer_exec(struct exec_ctx *ctx, struct exec_result *res)
{
	struct job_deployer *d = ctx->data;
	json_t *state = NULL, *zones, *versions;
	const char *name, *zone;
	size_t i;
	int r;

	if (ctx->claim->result)
		state = json_loads(ctx->claim->result, 0, NULL);
	if (!json_is_object(state) || !json_object_get(state, "spec")) {
		json_decref(state);
		state = NULL;
		r = resolve(d, ctx, d->log_dir, &state, res);
		if (r < 0 || !state)
			return r;
	}
	zones = json_object_get(state, "zones");
	versions = json_object_get(state, "versions");
	name = json_string_value(json_object_get(state, "name"));
	i = (size_t)json_integer_value(json_object_get(state, "zone_index"));
	res->outcome = EXEC_DEFER;
	res->not_before = ctx->now + d->poll;
	for (; i < json_array_size(zones); i++) {
		struct zone_client *z;
		int64_t version;
		json_t *v;

		zone = json_string_value(json_array_get(zones, i));
		z = find_zone(d, zone);
		if (!z) {
			set_msg(res, EXEC_FAILED, "zone %s has no cluster manager configured",
				zone);
			break;
		}
		v = json_object_get(versions, zone);
		if (!v) {
			r = put_job(z, name, json_object_get(state, "spec"), &version, res);
			if (r <= 0) {
				if (r < 0) {
					json_decref(state);
					return r;
				}
				break;
			}
			json_object_set_new(versions, zone, json_integer(version));
			set_msg(res, EXEC_DEFER, "%s: put version %" PRId64, zone, version);
			res->not_before = ctx->now + d->poll;
			break;
		}
		version = json_integer_value(v);
		r = poll_job(z, name, version, res);
		if (r < 0) {
			json_decref(state);
			return r;
		}
		if (r == 0) {
			if (res->outcome == EXEC_DEFER)
				res->not_before = ctx->now + d->poll;
			break;
		}
		json_object_set_new(state, "zone_index", json_integer((json_int_t)i + 1));
	}
	if (i >= json_array_size(zones)) {
		_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
		for (size_t k = 0; k < json_array_size(zones); k++)
			strbuf_addf(&sb, "%s%s", k ? ", " : "",
				    json_string_value(json_array_get(zones, k)));
		set_msg(res, EXEC_FINISHED, "%s healthy in %s", name ? name : "job",
			sb.buf ? sb.buf : "");
	}
	res->result = json_dumps(state, JSON_COMPACT);
	json_decref(state);
	return res->result ? 0 : -ENOMEM;
}
