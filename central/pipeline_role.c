/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pipelines and builder roles of deployd: wires the store's pipeline tables, the REST API
 * (behind deployd's tokens: GETs need READ, changes WRITE, owners checked by pipeline_api), the
 * runner with its stage executors (build/test when the builder role is on, job, wait,
 * approval) and the repository poller.
 *
 * Configuration: the pipelines_* keys of deployd.conf (central/config.h). Without a
 * pipelines_zone, the zone this deployd manages (--role cluster) is the only one known. The
 * planned-DAG cache is the role's, shared by the runner and the API's run views.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "central/builder.h"
#include "central/config.h"
#include "central/deployd.h"
#include "central/pipeline_api.h"
#include "central/pipeline_job.h"
#include "central/pipeline_run.h"
#include "central/poller.h"
#include "central/runner.h"
#include "central/store_pipelines.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/str.h"

struct pipelines_role {
	struct deployd *d;
	struct builder *builder;
	struct job_deployer *jobs;
	struct runner *runner;
	struct poller *poller;
	struct pipeline_api *api;
	struct dag_cache *dags;
	struct deployd_route routes[PIPELINE_API_N_ENDPOINTS];
	struct pipeline_zone zones[DEPLOYD_PIPELINES_MAX_ZONES];
	size_t n_zones;
	char *zone_tokens[DEPLOYD_PIPELINES_MAX_ZONES];
	char *artifacts_token;
	char *self_url; /* advertise URL with the port actually bound */
	const char *artifacts_url;
	bool builder_only; /* --role builder without pipelines: builds and tests only */
	bool builds;
	bool sandbox;
};

/* The admin token of a deployd token file ("admin <hex>" line). */
static int read_admin_token(const char *path, char **ret, struct cd_error *err)
{
	_cleanup_free_ char *text = NULL;
	char *save = NULL;
	int r = fs_read_file_at(AT_FDCWD, path, 65536, &text, NULL);

	if (r < 0)
		return cd_error_set(err, r, "reading token file %s: %s", path, strerror(-r));
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *tok = startswith(line, "admin ");

		if (tok) {
			while (*tok == ' ')
				tok++;
			*ret = strdup(tok);
			return *ret ? 0 : -ENOMEM;
		}
	}
	return cd_error_set(err, -ENOENT, "no admin token in %s", path);
}

/* pipelines_zone lines → zones with their admin tokens. */
static int load_zones(struct pipelines_role *pr, const struct deployd_config *cfg,
		      struct cd_error *err)
{
	if (cfg->n_pipelines_zones > ARRAY_SIZE(pr->zones))
		return cd_error_set(err, -E2BIG, "more than %zu pipelines_zone lines",
				    ARRAY_SIZE(pr->zones));
	for (size_t i = 0; i < cfg->n_pipelines_zones; i++) {
		const struct deployd_pipelines_zone *z = &cfg->pipelines_zones[i];
		struct cd_error e = {};
		int r = read_admin_token(z->token_file, &pr->zone_tokens[i], &e);

		if (r < 0)
			return cd_error_set(err, r, "pipelines_zone %s: %s", z->zone,
					    cd_error_message(&e));
		pr->zones[i] = (struct pipeline_zone){ .zone = z->zone,
						       .region = z->region,
						       .url = z->url,
						       .token = pr->zone_tokens[i] };
		pr->n_zones++;
	}
	return 0;
}

/* ---- executors: ctx->data is the role ---- */

static int exec_build(struct exec_ctx *ctx, struct exec_result *res)
{
	struct pipelines_role *pr = ctx->data;
	struct exec_ctx c = *ctx;

	c.data = pr->builder;
	return builder_exec_build(&c, res);
}

static int exec_test(struct exec_ctx *ctx, struct exec_result *res)
{
	struct pipelines_role *pr = ctx->data;
	struct exec_ctx c = *ctx;

	c.data = pr->builder;
	return builder_exec_test(&c, res);
}

static int exec_job(struct exec_ctx *ctx, struct exec_result *res)
{
	struct pipelines_role *pr = ctx->data;
	struct exec_ctx c = *ctx;

	c.data = pr->jobs;
	return job_deployer_exec(&c, res);
}

static void role_log(const char *msg, const char *detail, void *userdata)
{
	char q[1024];

	log_warn(msg, "role=pipelines detail=%s", log_quote(detail, q, sizeof(q)));
}

/* deployd principal → the API's (team NULL = admin). */
static void route_trampoline(struct http_request *req, const struct deployd_principal *who,
			     void *data)
{
	const struct pipeline_api_endpoint *e = data;

	switch (who->kind) {
	case DEPLOYD_PRINCIPAL_TEAM:
		pipeline_api_handle(e, req, who->actor, who->name);
		break;
	case DEPLOYD_PRINCIPAL_ADMIN:
	case DEPLOYD_PRINCIPAL_NONE:
		pipeline_api_handle(e, req, who->actor, NULL);
		break;
	case DEPLOYD_PRINCIPAL_AGENT:
		if (e->write)
			http_reply_error(req, 403, "agent tokens cannot change pipelines");
		else
			pipeline_api_handle(e, req, who->actor, NULL);
		break;
	}
}

static void role_free(struct deployd *d, void *state)
{
	struct pipelines_role *pr = state;

	if (!pr)
		return;
	poller_free(pr->poller);
	runner_free(pr->runner);
	pipeline_api_free(pr->api);
	job_deployer_free(pr->jobs);
	builder_free(pr->builder);
	dag_cache_free(pr->dags);
	for (size_t i = 0; i < ARRAY_SIZE(pr->zone_tokens); i++)
		free(pr->zone_tokens[i]);
	free(pr->artifacts_token);
	free(pr->self_url);
	free(pr);
}

static int init_common(struct deployd *d, bool builder_only, void **ret_state, struct cd_error *err)
{
	const struct deployd_config *cfg = deployd_config(d);
	struct store *store = deployd_store(d);
	struct pipelines_role *pr;
	char logs[PATH_MAX], owner[128];
	const struct pipeline_api_endpoint *eps;
	size_t n_eps;
	int r;

	pr = calloc(1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	pr->d = d;
	pr->builds = cfg->roles & DEPLOYD_ROLE_BUILDER;
	pr->builder_only = builder_only;
	pr->sandbox = cfg->pipelines_sandbox_builds < 0 ? geteuid() == 0 :
							  cfg->pipelines_sandbox_builds;
	pr->artifacts_url = cfg->pipelines_artifacts_url;
	snprintf(logs, sizeof(logs), "%s/pipeline-logs", cfg->state_dir);
	r = load_zones(pr, cfg, err);
	if (r >= 0 && cfg->pipelines_artifacts_token_file)
		r = read_admin_token(cfg->pipelines_artifacts_token_file, &pr->artifacts_token,
				     err);
	else if (r >= 0 && !cfg->insecure_no_auth) {
		_cleanup_free_ char *tp = deployd_config_token_path(cfg);

		r = tp ? read_admin_token(tp, &pr->artifacts_token, err) : -ENOMEM;
	}
	if (r >= 0)
		r = dag_cache_new(cfg->pipelines_dag_cache_dags, cfg->pipelines_dag_cache_stages,
				  &pr->dags);
	if (r >= 0) {
		struct runner_config rc = {
			.store = store,
			.owner = owner,
			.threads = cfg->pipelines_runners,
			.lease = (usec_t)cfg->pipelines_lease_s * USEC_PER_SEC,
			.exec_data = pr,
			.log = role_log,
			/* Stages this deployd cannot run stay queued for one that can. */
			.typed_claims = true,
			.dags = pr->dags,
		};

		snprintf(owner, sizeof(owner), "deployd@%d-%llx", (int)getpid(),
			 (unsigned long long)clock_real_usec());
		rc.default_timeout[ACTION_BUILD] = 3600 * USEC_PER_SEC;
		rc.default_timeout[ACTION_TEST] = 3600 * USEC_PER_SEC;
		rc.default_timeout[ACTION_JOB] = 3600 * USEC_PER_SEC;
		if (!builder_only)
			rc.exec[ACTION_JOB] = exec_job;
		else
			/* wait and approval belong to the pipelines role's runners */
			rc.no_builtin_stages = true;
		if (pr->builds) {
			rc.exec[ACTION_BUILD] = exec_build;
			rc.exec[ACTION_TEST] = exec_test;
		}
		r = runner_new(&rc, &pr->runner, err);
	}
	if (r >= 0 && builder_only) {
		*ret_state = pr;
		return 0;
	}
	if (r >= 0) {
		struct poller_config pc = {
			.store = store,
			.runner = pr->runner,
			.interval = (usec_t)cfg->pipelines_poll_interval_s * USEC_PER_SEC,
			.log = role_log,
		};

		r = poller_new(&pc, &pr->poller, err);
	}
	if (r >= 0) {
		struct pipeline_api_config ac = {
			.store = store,
			.runner = pr->runner,
			.insecure_no_auth = true, /* deployd authenticates */
			.log_dir = logs,
			.dags = pr->dags,
		};

		r = pipeline_api_new(&ac, &pr->api, err);
	}
	if (r >= 0) {
		eps = pipeline_api_endpoints(pr->api, &n_eps);
		for (size_t i = 0; i < n_eps; i++)
			pr->routes[i] = (struct deployd_route){
				.method = eps[i].method,
				.pattern = eps[i].pattern,
				.handler = route_trampoline,
				.data = (void *)&eps[i],
				.perm = eps[i].write ? DEPLOYD_PERM_WRITE : DEPLOYD_PERM_READ,
			};
		r = deployd_add_routes(d, pr->routes, n_eps);
	}
	if (r < 0) {
		role_free(d, pr);
		return r;
	}
	*ret_state = pr;
	return 0;
}

/* This deployd's URL once it listens (the advertised one may name port 0); NULL on ENOMEM. */
static const char *self_url(struct pipelines_role *pr)
{
	const char *adv = deployd_advertise_url(pr->d);

	if (!adv || !endswith(adv, ":0"))
		return adv;
	if (!pr->self_url && asprintf(&pr->self_url, "%.*s:%d", (int)(strlen(adv) - 2), adv,
				      deployd_port(pr->d)) < 0)
		pr->self_url = NULL;
	return pr->self_url;
}

static int role_start(struct deployd *d, void *state, struct cd_error *err)
{
	struct pipelines_role *pr = state;
	const struct deployd_config *cfg = deployd_config(d);
	char work[PATH_MAX], logs[PATH_MAX];
	int r = 0;

	snprintf(work, sizeof(work), "%s/builder", cfg->state_dir);
	snprintf(logs, sizeof(logs), "%s/pipeline-logs", cfg->state_dir);
	if (!pr->artifacts_url)
		pr->artifacts_url = self_url(pr);
	/* Without pipelines_zone: the zone this deployd manages, known only once it listens. */
	if (pr->n_zones == 0 && (cfg->roles & DEPLOYD_ROLE_CLUSTER)) {
		pr->zones[0] = (struct pipeline_zone){ .zone = cfg->zone,
						       .region = cfg->region,
						       .url = self_url(pr),
						       .token = pr->artifacts_token };
		if (!pr->zones[0].url)
			return -ENOMEM;
		pr->n_zones = 1;
	}
	if (!pr->artifacts_url)
		return -ENOMEM;
	{
		struct builder_config bc = {
			.work_dir = work,
			.log_dir = logs,
			.artifacts_url = pr->artifacts_url,
			.artifacts_token = pr->artifacts_token,
			.sandbox = pr->sandbox,
			.sandbox_memory_bytes = cfg->pipelines_build_memory_bytes,
			.sandbox_storage_bytes = cfg->pipelines_build_storage_bytes,
			.bazel_path = cfg->pipelines_bazel_path,
		};

		r = builder_new(&bc, &pr->builder, err);
	}
	if (r >= 0 && !pr->builder_only) {
		struct job_deployer_config jc = { .builder = pr->builder,
						  .zones = pr->zones,
						  .n_zones = pr->n_zones,
						  .log_dir = logs };

		r = job_deployer_new(&jc, &pr->jobs, err);
	}
	if (r >= 0)
		r = runner_start(pr->runner, err);

	if (r >= 0 && pr->poller)
		r = poller_start(pr->poller, err);
	if (r >= 0)
		log_info(pr->builder_only ? "builder role started" : "pipelines role started",
			 "runners=%u zones=%zu builds=%s sandbox=%s artifacts=%s dag_cache=%u/%u",
			 cfg->pipelines_runners, pr->n_zones, pr->builds ? "yes" : "no",
			 pr->sandbox ? "yes" : "no", pr->artifacts_url,
			 cfg->pipelines_dag_cache_dags, cfg->pipelines_dag_cache_stages);
	return r;
}

static void role_stop(struct deployd *d, void *state)
{
	struct pipelines_role *pr = state;

	if (!pr)
		return;
	/* Threads first: in-flight stages keep their leases, which expire for the next
	 * deployd (or this one after a restart) to take over. */
	poller_free(pr->poller);
	pr->poller = NULL;
	runner_free(pr->runner);
	pr->runner = NULL;
}

static void role_metrics(struct deployd *d, void *state, struct strbuf *out)
{
	struct pipelines_role *pr = state;
	struct store_run *v = NULL;
	uint64_t hits = 0, plans = 0;
	int64_t qlen = 0;
	size_t n = 0;

	dag_cache_stats(pr->dags, &hits, &plans);
	strbuf_addf(out,
		    "# HELP codedeploy_pipeline_dag_cache_hits_total Planned schemas found in the "
		    "DAG cache.\n"
		    "# TYPE codedeploy_pipeline_dag_cache_hits_total counter\n"
		    "codedeploy_pipeline_dag_cache_hits_total %" PRIu64 "\n"
		    "# HELP codedeploy_pipeline_dag_cache_plans_total Schemas parsed and planned "
		    "on a DAG cache miss.\n"
		    "# TYPE codedeploy_pipeline_dag_cache_plans_total counter\n"
		    "codedeploy_pipeline_dag_cache_plans_total %" PRIu64 "\n",
		    hits, plans);

	if (store_action_queue_len(deployd_store(pr->d), &qlen, NULL) >= 0)
		strbuf_addf(out,
			    "# HELP codedeploy_pipeline_queue_actions Actions in the queue.\n"
			    "# TYPE codedeploy_pipeline_queue_actions gauge\n"
			    "codedeploy_pipeline_queue_actions %lld\n",
			    (long long)qlen);
	if (store_run_list_by_state(deployd_store(pr->d), RUN_IN_PROGRESS, &v, &n, NULL) >= 0) {
		strbuf_addf(out,
			    "# HELP codedeploy_pipeline_runs_in_progress Runs in progress.\n"
			    "# TYPE codedeploy_pipeline_runs_in_progress gauge\n"
			    "codedeploy_pipeline_runs_in_progress %zu\n",
			    n);
		store_run_list_free(v, n);
	}
}

static int role_init(struct deployd *d, void **ret_state, struct cd_error *err)
{
	return init_common(d, false, ret_state, err);
}

const struct deployd_role deployd_role_pipelines = {
	.name = "pipelines",
	.bit = DEPLOYD_ROLE_PIPELINES,
	.init = role_init,
	.start = role_start,
	.stop = role_stop,
	.free = role_free,
	.metrics = role_metrics,
};

/* With the pipelines role on, builds run on its runners (state NULL here); alone, the builder
 * role runs runners that claim only build and test actions. */
static int builder_role_init(struct deployd *d, void **ret_state, struct cd_error *err)
{
	*ret_state = NULL;
	if (deployd_config(d)->roles & DEPLOYD_ROLE_PIPELINES)
		return 0;
	return init_common(d, true, ret_state, err);
}

static int builder_role_start(struct deployd *d, void *state, struct cd_error *err)
{
	return state ? role_start(d, state, err) : 0;
}

const struct deployd_role deployd_role_builder = {
	.name = "builder",
	.bit = DEPLOYD_ROLE_BUILDER,
	.init = builder_role_init,
	.start = builder_role_start,
	.stop = role_stop,
	.free = role_free,
};
