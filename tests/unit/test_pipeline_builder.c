/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for central/builder and central/pipeline_job against a fake artifact store and
 * fake cluster managers served on loopback by api/http_server: reproducible packing, a real
 * git + make build of a small repo, idempotent re-execution (indexed targets are not rebuilt),
 * build and test failures, and the job stage: spec artifact → target pinned to the commit →
 * PutJob per zone in order; a rollback in the first zone fails the stage and the second zone
 * is never touched. Also poller_ls_remote on a local repository. The Bazel driver: the same
 * repo with a WORKSPACE built and tested by the bazel found in PATH (skipped when there is
 * none: `make deps` installs bazel-bootstrap), sandboxed and not, offline. */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/http_server.h"
#include "central/builder.h"
#include "central/pipeline_api.h"
#include "central/pipeline_job.h"
#include "central/pipeline_run.h"
#include "central/poller.h"
#include "lib/fs.h"
#include "lib/str.h"

static char tmpdir[64];
static char repo[128];
static char sha[72];
static struct store *st;
static struct http_server *srv;
static struct builder *bld;
static char base[64];

/* ---- fake artifact store + cluster managers (one server) ----------------------------------- */

#define MAX_BLOBS 16
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char key[160];
	char *data;
	size_t len;
} blobs[MAX_BLOBS], index_[MAX_BLOBS];
static int n_blobs, n_index;
static struct strbuf puts_log = STRBUF_INIT; /* "zone:version;" per PutJob */
static char last_put_body[4096];
static const char *failing_zone; /* this zone rolls back */
static int job_version[4], job_polls[4];

static int zone_slot(const char *zone)
{
	return streq(zone, "us-east-1") ? 0 : streq(zone, "eu-west-1") ? 1 : 2;
}

static void h_cas_put(struct http_request *req, void *data)
{
	size_t len;
	const char *b = http_request_body(req, &len);

	pthread_mutex_lock(&fake_lock);
	if (n_blobs < MAX_BLOBS) {
		snprintf(blobs[n_blobs].key, sizeof(blobs[n_blobs].key), "%s",
			 http_request_param(req, "hex"));
		blobs[n_blobs].data = malloc(len + 1);
		memcpy(blobs[n_blobs].data, b, len);
		blobs[n_blobs].len = len;
		n_blobs++;
	}
	pthread_mutex_unlock(&fake_lock);
	http_reply_empty(req, 201);
}

static void h_cas_get(struct http_request *req, void *data)
{
	const char *hex = http_request_param(req, "hex");

	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < n_blobs; i++)
		if (streq(blobs[i].key, hex)) {
			http_reply_bytes(req, 200, "application/octet-stream", blobs[i].data,
					 blobs[i].len);
			pthread_mutex_unlock(&fake_lock);
			return;
		}
	pthread_mutex_unlock(&fake_lock);
	http_reply_error(req, 404, "no blob");
}

static void h_index_put(struct http_request *req, void *data)
{
	size_t len;
	const char *b = http_request_body(req, &len);

	pthread_mutex_lock(&fake_lock);
	if (n_index < MAX_BLOBS) {
		snprintf(index_[n_index].key, sizeof(index_[n_index].key), "%s",
			 http_request_param(req, "ref"));
		index_[n_index].data = strndup(b, len);
		n_index++;
	}
	pthread_mutex_unlock(&fake_lock);
	http_reply_json_new(req, 201, json_pack("{s:b}", "created", 1));
}

static void h_index_get(struct http_request *req, void *data)
{
	const char *ref = http_request_param(req, "ref");

	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < n_index; i++)
		if (streq(index_[i].key, ref)) {
			http_reply_bytes(req, 200, "application/json", index_[i].data,
					 strlen(index_[i].data));
			pthread_mutex_unlock(&fake_lock);
			return;
		}
	pthread_mutex_unlock(&fake_lock);
	http_reply_error(req, 404, "not indexed");
}

static void h_put_job(struct http_request *req, void *data)
{
	const char *zone = http_request_param(req, "zone");
	size_t len;
	const char *b = http_request_body(req, &len);
	int z = zone_slot(zone), v;

	pthread_mutex_lock(&fake_lock);
	v = ++job_version[z];
	job_polls[z] = 0;
	strbuf_addf(&puts_log, "%s:%d;", zone, v);
	snprintf(last_put_body, sizeof(last_put_body), "%.*s", (int)len, b);
	pthread_mutex_unlock(&fake_lock);
	http_reply_json_new(req, 201,
			    json_pack("{s:i, s:b, s:b}", "version", v, "created", 1, "changed", 1));
}

/* First poll: rolling; then RUNNING with the version stable, or rolled back. */
static void h_job_state(struct http_request *req, void *data)
{
	const char *zone = http_request_param(req, "zone");
	int z = zone_slot(zone), polls, v;
	bool fail;

	pthread_mutex_lock(&fake_lock);
	polls = job_polls[z]++;
	v = job_version[z];
	fail = failing_zone && streq(failing_zone, zone);
	pthread_mutex_unlock(&fake_lock);
	if (polls == 0)
		http_reply_json_new(req, 200,
				    json_pack("{s:s, s:s, s:i, s:i, s:{s:s}}", "state", "PENDING",
					      "reason", "0/1 tasks running", "version", v,
					      "stable_version", v - 1, "rollout", "state",
					      "rolling"));
	else if (fail)
		/* as the cluster does: the rollback is version v + 1 (the stable spec again);
		 * the second poll still sees tasks of v, from the third on it is complete */
		http_reply_json_new(req, 200,
				    json_pack("{s:s, s:i, s:i, s:{s:s, s:s}}", "state", "PENDING",
					      "version", v + 1, "stable_version",
					      polls < 2 ? v - 1 : v + 1, "rollout", "state",
					      "rolled_back", "reason",
					      "task 0 failed its health check"));
	else
		http_reply_json_new(req, 200,
				    json_pack("{s:s, s:i, s:i, s:{s:s}}", "state", "RUNNING",
					      "version", v, "stable_version", v, "rollout", "state",
					      "done"));
}

static const struct http_route routes[] = {
	{ .method = "PUT", .pattern = "/cas/{hex}", .handler = h_cas_put },
	{ .method = "GET", .pattern = "/cas/{hex}", .handler = h_cas_get },
	{ .method = "PUT", .pattern = "/v1/artifacts/{ref*}", .handler = h_index_put },
	{ .method = "GET", .pattern = "/v1/artifacts/{ref*}", .handler = h_index_get },
	{ .method = "PUT", .pattern = "/v1/jobs/{region}/{zone}/{name}", .handler = h_put_job },
	{ .method = "GET",
	  .pattern = "/v1/jobs/{region}/{zone}/{name}/state",
	  .handler = h_job_state },
};

/* ---- fixture ------------------------------------------------------------------------------- */

static void sh(const char *fmt, ...) _printf_(1, 2);
static void sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
}

static void write_file(const char *rel, const char *text)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", repo, rel);
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644), 0);
}

static void commit_all(const char *msg)
{
	FILE *f;
	char cmd[512];

	sh("git -C %s add -A && git -C %s -c user.name=t -c user.email=t@example.invalid commit "
	   "-q -m '%s'",
	   repo, repo, msg);
	snprintf(cmd, sizeof(cmd), "git -C %s rev-parse HEAD", repo);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(sha, sizeof(sha), f));
	sha[strcspn(sha, "\n")] = '\0';
	pclose(f);
}

static int setup(void **state)
{
	struct http_server_config sc = { .listen = "127.0.0.1:0",
					 .num_threads = 4,
					 .routes = routes,
					 .n_routes = ARRAY_SIZE(routes),
					 .max_body_bytes = 64 << 20 };
	struct cd_error err = { 0 };
	char path[160], work[160], logs[160];
	struct builder_config bc = { 0 };

	strcpy(tmpdir, "/tmp/cd-test-pbuild.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(repo, sizeof(repo), "%s/repo", tmpdir);
	snprintf(path, sizeof(path), "%s/d.db", tmpdir);
	assert_int_equal(store_open(path, &st, &err), 0);
	if (http_server_new(&sc, &srv, &err) < 0)
		fail_msg("server: %s", cd_error_message(&err));
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", http_server_port(srv));
	snprintf(work, sizeof(work), "%s/work", tmpdir);
	snprintf(logs, sizeof(logs), "%s/logs", tmpdir);
	bc.work_dir = work;
	bc.log_dir = logs;
	bc.artifacts_url = base;
	assert_int_equal(builder_new(&bc, &bld, &err), 0);

	sh("mkdir -p %s/svc/specs && git init -q -b main %s", repo, repo);
	write_file("svc/Makefile",
		   "OUT ?= out\n"
		   "main:\n\tprintf 'main v1' > $(OUT)/main\n\tchmod +x $(OUT)/main\n"
		   "broken:\n\tfalse\n"
		   "nothing:\n\ttrue\n"
		   "intree:\n\techo x > intree.txt\n\tcp intree.txt $(OUT)/\n"
		   "tests:\n\tprintf '#!/bin/sh\\nexit $(RC)\\n' > $(OUT)/tests\n"
		   "\tchmod +x $(OUT)/tests\n"
		   ".PHONY: main broken nothing intree tests\n");
	write_file("svc/specs/Makefile", "OUT ?= out\nna eu both:\n\tcp $@.json $(OUT)/\n"
					 ".PHONY: na eu both\n");
	write_file("svc/specs/both.json", "{\"name\":\"svc\",\"target\":\"//svc:main\","
					  "\"zones\":[\"us-east-1\",\"eu-west-1\"]}");
	write_file("svc/specs/na.json", "{\"name\":\"svc\",\"target\":\"//svc:main\","
					"\"zones\":[\"mars-1\"]}");
	commit_all("one");
	pthread_mutex_lock(&fake_lock);
	strbuf_reset(&puts_log);
	failing_zone = NULL;
	memset(job_version, 0, sizeof(job_version));
	memset(job_polls, 0, sizeof(job_polls));
	pthread_mutex_unlock(&fake_lock);
	return 0;
}

static int teardown(void **state)
{
	builder_free(bld);
	http_server_free(srv);
	store_free(st);
	for (int i = 0; i < n_blobs; i++)
		free(blobs[i].data);
	for (int i = 0; i < n_index; i++)
		free(index_[i].data);
	n_blobs = n_index = 0;
	strbuf_release(&puts_log);
	assert_int_equal(fs_rm_rf_at(AT_FDCWD, tmpdir), 0);
	return 0;
}

/* A claimed action of a one-stage pipeline, as the runner would hand it to an executor. */
struct claimed {
	char pid[ID_LEN + 1];
	struct store_run run;
	struct store_claim claim;
	struct action_dag *dag;
	struct exec_ctx ctx;
};

static void claim_stage(struct claimed *c, const char *schema, void *data)
{
	struct cd_error err = { 0 };
	bool created;

	assert_int_equal(store_pipeline_create(st, "P", "t", repo, "main", schema, NULL,
					       clock_real_usec(), c->pid, &err),
			 0);
	assert_int_equal(store_run_create(st, c->pid, sha, NULL, "api", NULL, clock_real_usec(),
					  &c->run, &created, &err),
			 0);
	store_run_release(&c->run);
	assert_int_equal(pipeline_run_start_next(st, c->pid, clock_real_usec(), &err), 1);
	assert_int_equal(store_run_get(st, c->pid, 1, &c->run, &err), 0);
	assert_int_equal(store_action_claim(st, "t", clock_real_usec(), 600 * USEC_PER_SEC,
					    &c->claim, &err),
			 1);
	assert_int_equal(pipeline_run_plan(st, c->pid, 1, &c->dag, &err), 0);
	c->ctx = (struct exec_ctx){ .store = st,
				    .claim = &c->claim,
				    .run = &c->run,
				    .node = dag_find_node(c->dag, c->claim.stage),
				    .now = clock_real_usec(),
				    .data = data };
}

static void release(struct claimed *c)
{
	store_run_release(&c->run);
	store_claim_release(&c->claim);
	dag_free(c->dag);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_pack_is_reproducible(void **state)
{
	char a[200], b[200], dir[200], empty[200], hex1[65], hex2[65];
	uint64_t s1, s2;
	struct cd_error err = { 0 };

	sh("mkdir -p %s/p/d && echo hi > %s/p/d/f && echo x > %s/p/a && chmod 755 %s/p/a && "
	   "ln -s a %s/p/l",
	   tmpdir, tmpdir, tmpdir, tmpdir, tmpdir);
	snprintf(a, sizeof(a), "%s/1.tar", tmpdir);
	snprintf(b, sizeof(b), "%s/2.tar", tmpdir);
	snprintf(dir, sizeof(dir), "%s/p", tmpdir);
	snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
	assert_int_equal(builder_pack_dir(dir, a, hex1, &s1, &err), 0);
	/* different mtimes and owner do not change the bytes */
	sh("touch -d '2001-01-01' %s/p/a %s/p/d/f && chown 1:1 %s/p/d/f", tmpdir, tmpdir, tmpdir);
	assert_int_equal(builder_pack_dir(dir, b, hex2, &s2, &err), 0);
	assert_string_equal(hex1, hex2);
	assert_int_equal(s1, s2);
	/* listing: sorted, uid 0, mtime 0 */
	sh("tar -tvf %s --numeric-owner > %s/list", a, tmpdir);
	{
		_cleanup_free_ char *list = NULL;
		char path[200];

		snprintf(path, sizeof(path), "%s/list", tmpdir);
		assert_int_equal(fs_read_file_at(AT_FDCWD, path, 1 << 16, &list, NULL), 0);
		assert_non_null(strstr(list, "-rwxr-xr-x 0/0"));
		assert_non_null(strstr(list, "1970-01-01"));
		assert_true(strstr(list, " a\n") < strstr(list, " d/f\n"));
	}
	/* empty output and device nodes are refused */
	sh("mkdir -p %s/empty", tmpdir);
	assert_int_equal(builder_pack_dir(empty, a, hex1, &s1, &err), -ENODATA);
}

static void test_build_indexes_and_is_idempotent(void **state)
{
	struct claimed c = { 0 };
	struct exec_result res = { 0 };
	char digest[72];

	claim_stage(&c,
		    "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\","
		    "\"//svc/specs:both\"]}]",
		    bld);
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	if (res.outcome != EXEC_FINISHED)
		fail_msg("build: %s", res.message);
	assert_non_null(strstr(res.result, "\"//svc:main\":\"sha256:"));
	free(res.result);
	assert_int_equal(n_index, 2);
	assert_int_equal(builder_lookup_artifact(bld, "//svc:main", sha, digest, NULL), 1);
	assert_true(startswith(digest, "sha256:") != NULL);
	/* again (a re-claim after a crash): nothing is rebuilt or uploaded */
	memset(&res, 0, sizeof(res));
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FINISHED);
	free(res.result);
	assert_int_equal(n_index, 2);
	assert_int_equal(n_blobs, 2);
	{
		_cleanup_free_ char *text = NULL;
		size_t len;

		assert_int_equal(builder_read_artifact_file(bld, digest, "main", 1024, &text, &len,
							    NULL),
				 0);
		assert_string_equal(text, "main v1");
	}
	release(&c);
}

static void test_build_failures(void **state)
{
	struct claimed c = { 0 };
	struct exec_result res = { 0 };

	claim_stage(&c,
		    "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:broken\"]}]",
		    bld);
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	assert_non_null(strstr(res.message, "//svc:broken: make exited with status 2"));
	release(&c);
}

static void test_build_missing_dir_and_empty_output(void **state)
{
	struct claimed c = { 0 };
	struct exec_result res = { 0 };

	claim_stage(&c, "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//nope:x\"]}]",
		    bld);
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	assert_non_null(strstr(res.message, "directory //nope does not exist"));
	release(&c);
}

static void test_test_stage(void **state)
{
	struct claimed c = { 0 };
	struct exec_result res = { 0 };

	claim_stage(&c, "[{\"name\":\"t\",\"type\":\"test\",\"test_target\":\"//svc:tests\"}]",
		    bld);
	assert_int_equal(builder_exec_test(&c.ctx, &res), 0);
	if (res.outcome != EXEC_FINISHED)
		fail_msg("test: %s", res.message);
	release(&c);

	/* a failing test (exit status 3) fails the stage; its JUnit report is counted */
	write_file("svc/Makefile", "OUT ?= out\ntests:\n\tcp junit.sh $(OUT)/tests\n"
				   "\tchmod +x $(OUT)/tests\n.PHONY: tests\n");
	write_file("svc/junit.sh",
		   "#!/bin/sh\ncat > \"$XML_OUTPUT_FILE\" <<EOF\n<testsuite tests=\"3\">"
		   "<testcase name=\"a\"/><testcase name=\"b\"><failure message=\"x\"/>"
		   "</testcase><testcase name=\"c\"></testcase></testsuite>\nEOF\nexit 3\n");
	commit_all("failing");
	store_free(st);
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/d.db", tmpdir);
		unlink(path);
		assert_int_equal(store_open(path, &st, NULL), 0);
	}
	memset(&c, 0, sizeof(c));
	memset(&res, 0, sizeof(res));
	claim_stage(&c, "[{\"name\":\"t\",\"type\":\"test\",\"test_target\":\"//svc:tests\"}]",
		    bld);
	assert_int_equal(builder_exec_test(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	assert_non_null(
		strstr(res.message, "//svc:tests exited with status 3 (1 of 3 tests failed"));
	assert_string_equal(res.result, "{\"junit\":{\"tests\":3,\"failures\":1}}");
	free(res.result);
	release(&c);
}

static struct job_deployer *new_deployer(void)
{
	const struct pipeline_zone zones[] = { { "us-east-1", "us-east", base, "tok" },
					       { "eu-west-1", "eu-west", base, "tok" } };
	struct job_deployer_config jc = {
		.builder = bld, .zones = zones, .n_zones = ARRAY_SIZE(zones), .poll = 1
	};
	struct job_deployer *d = NULL;

	assert_int_equal(job_deployer_new(&jc, &d, NULL), 0);
	return d;
}

/* Drive the job executor like the runner: feed each result back as the next claim's. */
static enum exec_outcome drive_job(struct claimed *c, struct job_deployer *d, char *msg,
				   size_t msg_size)
{
	for (int i = 0; i < 20; i++) {
		struct exec_result res = { 0 };

		assert_int_equal(job_deployer_exec(&c->ctx, &res), 0);
		snprintf(msg, msg_size, "%s", res.message);
		if (res.result) {
			free(c->claim.result);
			c->claim.result = res.result;
		}
		if (res.outcome != EXEC_DEFER)
			return res.outcome;
	}
	fail_msg("job stage did not end: %s", msg);
	return EXEC_FAILED;
}

static void test_job_deploys_zones_in_order(void **state)
{
	struct job_deployer *d = new_deployer();
	struct claimed b = { 0 }, c = { 0 };
	struct exec_result res = { 0 };
	char msg[1024];

	/* the service must be built first */
	claim_stage(&b, "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\"]}]",
		    bld);
	assert_int_equal(builder_exec_build(&b.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FINISHED);
	free(res.result);
	release(&b);
	store_free(st);
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/d.db", tmpdir);
		unlink(path);
		assert_int_equal(store_open(path, &st, NULL), 0);
	}
	claim_stage(&c, "[{\"name\":\"deploy\",\"type\":\"job\",\"spec\":\"//svc/specs:both\"}]",
		    d);
	assert_int_equal(drive_job(&c, d, msg, sizeof(msg)), EXEC_FINISHED);
	assert_string_equal(msg, "svc healthy in us-east-1, eu-west-1");
	assert_string_equal(puts_log.buf, "us-east-1:1;eu-west-1:1;");
	{
		char want[128];

		snprintf(want, sizeof(want), "\"target\":\"//svc:main@%s\"", sha);
		assert_non_null(strstr(last_put_body, want));
	}
	release(&c);
	job_deployer_free(d);
}

static void test_job_rollback_stops_before_next_zone(void **state)
{
	struct job_deployer *d = new_deployer();
	struct claimed b = { 0 }, c = { 0 };
	struct exec_result res = { 0 };
	char msg[1024];

	claim_stage(&b, "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\"]}]",
		    bld);
	assert_int_equal(builder_exec_build(&b.ctx, &res), 0);
	free(res.result);
	release(&b);
	store_free(st);
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/d.db", tmpdir);
		unlink(path);
		assert_int_equal(store_open(path, &st, NULL), 0);
	}
	failing_zone = "us-east-1";
	claim_stage(&c, "[{\"name\":\"deploy\",\"type\":\"job\",\"spec\":\"//svc/specs:both\"}]",
		    d);
	assert_int_equal(drive_job(&c, d, msg, sizeof(msg)), EXEC_FAILED);
	assert_non_null(strstr(msg, "us-east-1: task 0 failed its health check"));
	assert_string_equal(puts_log.buf, "us-east-1:1;"); /* eu-west-1 never touched */
	/* it failed only once the zone served the previous version again (third poll) */
	pthread_mutex_lock(&fake_lock);
	assert_true(job_polls[zone_slot("us-east-1")] >= 3);
	pthread_mutex_unlock(&fake_lock);
	release(&c);
	job_deployer_free(d);
}

static void test_job_refusals(void **state)
{
	struct job_deployer *d = new_deployer();
	struct claimed c = { 0 };
	char msg[1024];

	/* //svc:main is not built at this commit */
	claim_stage(&c, "[{\"name\":\"deploy\",\"type\":\"job\",\"spec\":\"//svc/specs:both\"}]",
		    d);
	assert_int_equal(drive_job(&c, d, msg, sizeof(msg)), EXEC_FAILED);
	assert_non_null(strstr(msg, "is not built: add it to a build stage"));
	assert_null(puts_log.buf);
	release(&c);
	job_deployer_free(d);
}

static void test_job_unknown_zone(void **state)
{
	struct job_deployer *d = new_deployer();
	struct claimed c = { 0 };
	char msg[1024];

	claim_stage(&c, "[{\"name\":\"deploy\",\"type\":\"job\",\"spec\":\"//svc/specs:na\"}]", d);
	assert_int_equal(drive_job(&c, d, msg, sizeof(msg)), EXEC_FAILED);
	assert_non_null(strstr(msg, "zone mars-1"));
	release(&c);
	job_deployer_free(d);
}

/* Cancel while a job stage waits for the rollout: the run stops, nothing more is put. */
static void test_cancel_during_job_stage(void **state)
{
	struct job_deployer *d = new_deployer();
	struct claimed b = { 0 };
	struct exec_result res = { 0 };
	struct runner_config rc = { .store = NULL, .owner = "t", .exec_data = d };
	struct runner *rn = NULL;
	struct store_stage sg = { 0 };
	struct store_run run = { 0 };
	char pid2[ID_LEN + 1];
	bool created;

	claim_stage(&b, "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\"]}]",
		    bld);
	assert_int_equal(builder_exec_build(&b.ctx, &res), 0);
	free(res.result);
	release(&b);
	assert_int_equal(store_pipeline_create(st, "J", "t", repo, "main",
					       "[{\"name\":\"deploy\",\"type\":\"job\","
					       "\"spec\":\"//svc/specs:both\"}]",
					       NULL, clock_real_usec(), pid2, NULL),
			 0);
	assert_int_equal(store_run_create(st, pid2, sha, NULL, "api", NULL, clock_real_usec(), &run,
					  &created, NULL),
			 0);
	store_run_release(&run);
	assert_int_equal(pipeline_run_start_next(st, pid2, clock_real_usec(), NULL), 1);
	rc.store = st;
	rc.exec[ACTION_JOB] = job_deployer_exec;
	assert_int_equal(runner_new(&rc, &rn, NULL), 0);
	/* first claim: spec resolved, us-east-1 put; the stage waits for the rollout */
	assert_int_equal(runner_step(rn, clock_real_usec(), NULL), 1);
	assert_int_equal(runner_step(rn, clock_real_usec(), NULL), 1);
	assert_string_equal(puts_log.buf, "us-east-1:1;");
	assert_int_equal(store_stage_get(st, pid2, 1, "deploy", &sg, NULL), 0);
	assert_int_equal(sg.state, ACTION_IN_PROGRESS);
	store_stage_release(&sg);
	assert_int_equal(store_run_cancel(st, pid2, 1, "team:ops", clock_real_usec(), NULL), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(runner_step(rn, clock_real_usec() + 10 * USEC_PER_SEC, NULL), 0);
	assert_string_equal(puts_log.buf, "us-east-1:1;"); /* eu-west-1 never touched */
	assert_int_equal(store_stage_get(st, pid2, 1, "deploy", &sg, NULL), 0);
	assert_int_equal(sg.state, ACTION_ERROR);
	assert_string_equal(sg.error_message, "cancelled by team:ops");
	store_stage_release(&sg);
	assert_int_equal(store_run_get(st, pid2, 1, &run, NULL), 0);
	assert_int_equal(run.state, RUN_CANCELLED);
	store_run_release(&run);
	runner_free(rn);
	job_deployer_free(d);
}

/* As root the builds run in the sandbox: same results, and the source tree is read-only. */
static void test_sandboxed(void **state)
{
	struct builder_config bc = { 0 };
	struct builder *sb = NULL;
	struct claimed c = { 0 };
	struct exec_result res = { 0 };
	struct cd_error err = { 0 };
	char work[160], logs[160];

	if (geteuid() != 0)
		skip();
	snprintf(work, sizeof(work), "%s/work-sb", tmpdir);
	snprintf(logs, sizeof(logs), "%s/logs", tmpdir);
	bc.work_dir = work;
	bc.log_dir = logs;
	bc.artifacts_url = base;
	bc.sandbox = true;
	bc.sandbox_memory_bytes = 512ULL << 20;
	bc.sandbox_storage_bytes = 128ULL << 20;
	if (builder_new(&bc, &sb, &err) < 0)
		fail_msg("sandboxed builder: %s", cd_error_message(&err));
	claim_stage(&c,
		    "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\"]},"
		    "{\"name\":\"in\",\"type\":\"build\",\"build_targets\":[\"//svc:intree\"],"
		    "\"depends_on\":[]},"
		    "{\"name\":\"t\",\"type\":\"test\",\"test_target\":\"//svc:tests\","
		    "\"depends_on\":[]}]",
		    sb);
	/* the first claim is whichever root came first; run the build explicitly */
	c.ctx.node = dag_find_node(c.dag, "b");
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	if (res.outcome != EXEC_FINISHED)
		fail_msg("sandboxed build: %s", res.message);
	free(res.result);
	{
		char digest[72];
		_cleanup_free_ char *text = NULL;
		size_t len;

		assert_int_equal(builder_lookup_artifact(sb, "//svc:main", sha, digest, NULL), 1);
		assert_int_equal(
			builder_read_artifact_file(sb, digest, "main", 1024, &text, &len, NULL), 0);
		assert_string_equal(text, "main v1");
	}
	/* writing into the (read-only) source tree fails */
	memset(&res, 0, sizeof(res));
	c.ctx.node = dag_find_node(c.dag, "in");
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	if (!strstr(res.message, "//svc:intree: make exited with status"))
		fail_msg("in-tree write: %s", res.message);
	/* tests run inside too */
	memset(&res, 0, sizeof(res));
	c.ctx.node = dag_find_node(c.dag, "t");
	assert_int_equal(builder_exec_test(&c.ctx, &res), 0);
	if (res.outcome != EXEC_FINISHED)
		fail_msg("sandboxed test: %s", res.message);
	free(res.result);
	release(&c);
	builder_free(sb);
}

/* ---- the Bazel driver ---------------------------------------------------------------------- */

static bool bazel_installed(void)
{
	return system("command -v bazel >/dev/null 2>&1") == 0;
}

/* cmocka's skip() takes no reason: say it first. */
#define SKIP_WITHOUT_BAZEL()                                                                       \
	do {                                                                                       \
		if (!bazel_installed()) {                                                          \
			print_message("bazel is not installed (Debian: bazel-bootstrap): "         \
				      "skipping\n");                                               \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* The fixture's repo plus a WORKSPACE and BUILD files: the Makefiles stay, so an artifact
 * tells which driver built it (make's //svc:main is the text "main v1", Bazel's an ELF). */
static int setup_bazel(void **state)
{
	setup(state);
	write_file("WORKSPACE", "workspace(name = \"svc_repo\")\n");
	write_file("svc/BUILD",
		   "cc_binary(name = \"main\", srcs = [\"main.c\"])\n"
		   "cc_binary(name = \"broken\", srcs = [\"broken.c\"])\n"
		   "cc_test(name = \"ok_test\", srcs = [\"ok_test.c\"])\n"
		   "cc_test(name = \"bad_test\", srcs = [\"bad_test.c\"])\n"
		   "test_suite(name = \"all\", tests = [\":ok_test\", \":bad_test\"])\n");
	write_file("svc/main.c",
		   "#include <stdio.h>\nint main(void)\n{\n\tputs(\"main v1\");\n\treturn 0;\n}\n");
	write_file("svc/broken.c", "int main(void) { return missing; }\n");
	write_file("svc/ok_test.c", "#include <stdio.h>\nint main(void)\n{\n\tputs(\"all good\");"
				    "\n\treturn 0;\n}\n");
	write_file("svc/bad_test.c",
		   "#include <stdio.h>\nint main(void)\n{\n\tputs(\"<testcase> failing on "
		   "purpose\");\n\treturn 1;\n}\n");
	/* both: a source file exported by a filegroup; gen: a genrule output in a subdir */
	write_file("svc/specs/BUILD",
		   "filegroup(name = \"both\", srcs = [\"both.json\"])\n"
		   "genrule(name = \"gen\", outs = [\"out/gen.json\"],\n"
		   "        cmd = \"printf '{\\\"name\\\":\\\"gen\\\"}' > $@\")\n");
	/* an action that runs until it is stopped and tells its pid; its cc tool makes Bazel
	 * load the C++ toolchain, and with it rules_cc */
	{
		char build[640];

		snprintf(build, sizeof(build),
			 "cc_binary(name = \"helper\", srcs = [\"helper.c\"])\n"
			 "genrule(name = \"slow\", outs = [\"slow.txt\"], tools = [\":helper\"],\n"
			 "        cmd = \"$(location :helper) && echo $$$$ > %s/action.tmp && "
			 "mv %s/action.tmp %s/action.pid && exec sleep 600\")\n",
			 tmpdir, tmpdir, tmpdir);
		sh("mkdir -p %s/slow", repo);
		write_file("slow/BUILD", build);
		write_file("slow/helper.c", "int main(void)\n{\n\treturn 0;\n}\n");
	}
	commit_all("bazel");
	return 0;
}

/* The tar entries of an artifact the fake store holds, one per line, sorted as packed. */
static void artifact_listing(const char *digest, char *buf, size_t size)
{
	const char *hex = startswith(digest, "sha256:");
	char path[200], list[200];
	_cleanup_free_ char *text = NULL;

	assert_non_null(hex);
	snprintf(path, sizeof(path), "%s/blob.tar", tmpdir);
	snprintf(list, sizeof(list), "%s/blob.list", tmpdir);
	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < n_blobs; i++)
		if (streq(blobs[i].key, hex))
			assert_int_equal(fs_write_atomic(path, blobs[i].data, blobs[i].len, 0644),
					 0);
	pthread_mutex_unlock(&fake_lock);
	sh("tar -tf %s > %s", path, list);
	assert_int_equal(fs_read_file_at(AT_FDCWD, list, 1 << 16, &text, NULL), 0);
	snprintf(buf, size, "%s", text);
}

static char *stage_log(const struct claimed *c, const char *stage)
{
	char logs[160], path[PATH_MAX];
	char *text = NULL;

	snprintf(logs, sizeof(logs), "%s/logs", tmpdir);
	assert_int_equal(pipeline_log_path(logs, c->pid, 1, stage, 1, path, sizeof(path)), 0);
	assert_int_equal(fs_read_file_at(AT_FDCWD, path, 16 << 20, &text, NULL), 0);
	return text;
}

/* A build stage of four targets in one checkout (one output base): a cc_binary, a filegroup
 * of a source file, a genrule, and a cc_binary that does not compile, which fails the stage
 * after the first three are indexed. Then a job stage whose spec is the filegroup's JSON. */
static void test_bazel_build_and_job(void **state)
{
	struct job_deployer *d;
	struct claimed c = { 0 }, j = { 0 };
	struct exec_result res = { 0 };
	char digest[72], list[1024], msg[1024];
	_cleanup_free_ char *text = NULL, *log = NULL;
	size_t len;

	SKIP_WITHOUT_BAZEL();
	claim_stage(&c,
		    "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\","
		    "\"//svc/specs:both\",\"//svc/specs:gen\",\"//svc:broken\"]}]",
		    bld);
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	if (!strstr(res.message, "//svc:broken: bazel build exited with status 1 (build failed)"))
		fail_msg("message: %s", res.message);
	log = stage_log(&c, c.claim.stage);
	assert_non_null(strstr(log, "# driver: bazel (WORKSPACE at the repository root)"));
	assert_non_null(strstr(log, "--batch"));
	assert_non_null(strstr(log, "'missing' undeclared")); /* the compiler's error */
	assert_int_equal(n_index, 3);
	release(&c);

	/* the cc_binary: exactly the binary, an ELF (make's target would be text) */
	assert_int_equal(builder_lookup_artifact(bld, "//svc:main", sha, digest, NULL), 1);
	artifact_listing(digest, list, sizeof(list));
	assert_string_equal(list, "main\n");
	assert_int_equal(
		builder_read_artifact_file(bld, digest, "main", 1 << 20, &text, &len, NULL), 0);
	assert_true(len > 4 && memcmp(text, "\177ELF", 4) == 0);
	/* a source file exported by a filegroup; a genrule output keeps its subdirectory */
	assert_int_equal(builder_lookup_artifact(bld, "//svc/specs:both", sha, digest, NULL), 1);
	artifact_listing(digest, list, sizeof(list));
	assert_string_equal(list, "both.json\n");
	assert_int_equal(builder_lookup_artifact(bld, "//svc/specs:gen", sha, digest, NULL), 1);
	artifact_listing(digest, list, sizeof(list));
	assert_string_equal(list, "out/\nout/gen.json\n");
	free(text);
	text = NULL;
	assert_int_equal(builder_read_artifact_file(bld, digest, ".json", 1024, &text, &len, NULL),
			 0);
	assert_string_equal(text, "{\"name\":\"gen\"}");

	/* the job stage reads the JobSpec from the Bazel-built spec artifact */
	d = new_deployer();
	store_free(st);
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/d.db", tmpdir);
		unlink(path);
		assert_int_equal(store_open(path, &st, NULL), 0);
	}
	claim_stage(&j, "[{\"name\":\"deploy\",\"type\":\"job\",\"spec\":\"//svc/specs:both\"}]",
		    d);
	assert_int_equal(drive_job(&j, d, msg, sizeof(msg)), EXEC_FINISHED);
	assert_string_equal(puts_log.buf, "us-east-1:1;eu-west-1:1;");
	release(&j);
	job_deployer_free(d);
}

/* Test stages: a passing cc_test and a failing one (JUnit counts from Bazel's test.xml, whose
 * quoted log must not count). */
static void test_bazel_test_stage(void **state)
{
	struct claimed c = { 0 };
	struct exec_result res = { 0 };
	_cleanup_free_ char *log = NULL;

	SKIP_WITHOUT_BAZEL();
	claim_stage(&c,
		    "[{\"name\":\"ok\",\"type\":\"test\",\"test_target\":\"//svc:ok_test\"},"
		    "{\"name\":\"bad\",\"type\":\"test\",\"test_target\":\"//svc:bad_test\","
		    "\"depends_on\":[]}]",
		    bld);
	c.ctx.node = dag_find_node(c.dag, "ok");
	assert_int_equal(builder_exec_test(&c.ctx, &res), 0);
	if (res.outcome != EXEC_FINISHED)
		fail_msg("ok_test: %s", res.message);
	assert_string_equal(res.message, "//svc:ok_test passed (1 tests)");
	assert_string_equal(res.result, "{\"junit\":{\"tests\":1,\"failures\":0}}");
	free(res.result);
	log = stage_log(&c, c.claim.stage);
	assert_non_null(strstr(log, "all good")); /* the test's output is in the stage log */

	memset(&res, 0, sizeof(res));
	c.ctx.node = dag_find_node(c.dag, "bad");
	assert_int_equal(builder_exec_test(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	if (!strstr(res.message, "//svc:bad_test: bazel test exited with status 3 (tests failed) "
				 "(1 of 1 tests failed"))
		fail_msg("bad_test: %s", res.message);
	assert_string_equal(res.result, "{\"junit\":{\"tests\":1,\"failures\":1}}");
	free(res.result);
	free(log);
	log = stage_log(&c, c.claim.stage);
	assert_non_null(strstr(log, "failing on purpose"));

	release(&c);
}

/* A Bazel workspace without bazel fails the stage, named; it is not built with make. Runs
 * without bazel installed. */
static void test_bazel_missing(void **state)
{
	struct builder_config bc = { 0 };
	struct builder *nb = NULL;
	struct claimed c = { 0 };
	struct exec_result res = { 0 };
	char work[160], logs[160];

	snprintf(work, sizeof(work), "%s/work-nobazel", tmpdir);
	snprintf(logs, sizeof(logs), "%s/logs", tmpdir);
	bc.work_dir = work;
	bc.log_dir = logs;
	bc.artifacts_url = base;
	bc.bazel_path = "/nonexistent/bazel";
	assert_int_equal(builder_new(&bc, &nb, NULL), 0);
	claim_stage(&c,
		    "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\"]},"
		    "{\"name\":\"t\",\"type\":\"test\",\"test_target\":\"//svc:ok_test\","
		    "\"depends_on\":[]}]",
		    nb);
	c.ctx.node = dag_find_node(c.dag, "b");
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	if (!strstr(res.message, "//svc:main: the repository is a Bazel workspace (WORKSPACE) but "
				 "bazel was not found (bazel_path /nonexistent/bazel is not an "
				 "executable file)"))
		fail_msg("message: %s", res.message);
	assert_int_equal(n_index, 0);
	memset(&res, 0, sizeof(res));
	c.ctx.node = dag_find_node(c.dag, "t");
	assert_int_equal(builder_exec_test(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	assert_non_null(strstr(res.message, "bazel was not found"));
	release(&c);
	builder_free(nb);

	/* a name is looked up in PATH */
	bc.bazel_path = "codedeploy-no-such-bazel";
	assert_int_equal(builder_new(&bc, &nb, NULL), 0);
	memset(&c, 0, sizeof(c));
	memset(&res, 0, sizeof(res));
	store_free(st);
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/d.db", tmpdir);
		unlink(path);
		assert_int_equal(store_open(path, &st, NULL), 0);
	}
	claim_stage(&c, "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\"]}]",
		    nb);
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	if (!strstr(res.message, "bazel was not found (\"codedeploy-no-such-bazel\" in PATH)"))
		fail_msg("message: %s", res.message);
	release(&c);
	builder_free(nb);
}

/* As root, Bazel runs in the sandbox (no network, read-only worktree, its output base on the
 * task's tmpfs, the JVM heap a quarter of the memory limit), tests a test_suite, and builds
 * the same bytes as outside it. */
static void test_bazel_sandboxed(void **state)
{
	struct builder_config bc = { 0 };
	struct builder *sb = NULL;
	struct claimed c = { 0 };
	struct exec_result res = { 0 };
	struct cd_error err = { 0 };
	char work[160], logs[160], inside[72], outside[72];
	_cleanup_free_ char *log = NULL;

	SKIP_WITHOUT_BAZEL();
	if (geteuid() != 0)
		skip();
	snprintf(work, sizeof(work), "%s/work-sb", tmpdir);
	snprintf(logs, sizeof(logs), "%s/logs", tmpdir);
	bc.work_dir = work;
	bc.log_dir = logs;
	bc.artifacts_url = base;
	bc.sandbox = true; /* default limits: 2 GiB memory, 1 GiB /task */
	if (builder_new(&bc, &sb, &err) < 0)
		fail_msg("sandboxed builder: %s", cd_error_message(&err));
	claim_stage(&c,
		    "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//svc:main\"]},"
		    "{\"name\":\"t\",\"type\":\"test\",\"test_target\":\"//svc:all\","
		    "\"depends_on\":[]}]",
		    sb);
	c.ctx.node = dag_find_node(c.dag, "b");
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	if (res.outcome != EXEC_FINISHED)
		fail_msg("sandboxed bazel build: %s", res.message);
	free(res.result);
	log = stage_log(&c, c.claim.stage);
	assert_non_null(strstr(log, "[sandbox build-"));
	assert_non_null(strstr(log, "--host_jvm_args=-Xmx512m"));
	assert_int_equal(builder_lookup_artifact(sb, "//svc:main", sha, inside, NULL), 1);

	memset(&res, 0, sizeof(res));
	c.ctx.node = dag_find_node(c.dag, "t");
	assert_int_equal(builder_exec_test(&c.ctx, &res), 0);
	assert_int_equal(res.outcome, EXEC_FAILED);
	if (!strstr(res.message,
		    "//svc:all: bazel test exited with status 3 (tests failed) (1 of 2 "
		    "tests"))
		fail_msg("sandboxed test_suite: %s", res.message);
	/* a test_suite: the reports of both tests are counted */
	assert_string_equal(res.result, "{\"junit\":{\"tests\":2,\"failures\":1}}");
	free(res.result);

	/* forget the index: the same target built outside the sandbox, in another path, gives
	 * the same artifact */
	pthread_mutex_lock(&fake_lock);
	for (int i = 0; i < n_index; i++)
		free(index_[i].data);
	n_index = 0;
	pthread_mutex_unlock(&fake_lock);
	memset(&res, 0, sizeof(res));
	c.ctx.node = dag_find_node(c.dag, "b");
	c.ctx.data = bld;
	assert_int_equal(builder_exec_build(&c.ctx, &res), 0);
	if (res.outcome != EXEC_FINISHED)
		fail_msg("bazel build: %s", res.message);
	free(res.result);
	assert_int_equal(builder_lookup_artifact(bld, "//svc:main", sha, outside, NULL), 1);
	assert_string_equal(inside, outside);
	release(&c);
	builder_free(sb);
}

struct build_thread {
	struct claimed *c;
	struct exec_result res;
	int r;
	atomic_bool done;
};

static void *build_thread_main(void *p)
{
	struct build_thread *t = p;

	t->r = builder_exec_build(&t->c->ctx, &t->res);
	atomic_store(&t->done, true);
	return NULL;
}

/* A stage stopped (timeout, cancel, shutdown) while Bazel runs an action: Bazel's
 * process-wrapper runs the action in a process group of its own, which a SIGKILL of the
 * build's group would orphan; the builder's SIGTERM first makes Bazel stop it. The repo vendors
 * its own rules_cc here: the driver leaves it alone, and the action's cc tool builds with it. */
static void test_bazel_stop_kills_actions(void **state)
{
	struct claimed c = { 0 };
	struct build_thread t = { .c = &c };
	pthread_t th;
	char path[200], stat_path[64];
	_cleanup_free_ char *log = NULL;
	long pid = 0;

	SKIP_WITHOUT_BAZEL();
	sh("mkdir -p %s/third_party/rules_cc/cc", repo);
	write_file("WORKSPACE", "workspace(name = \"svc_repo\")\n"
				"local_repository(name = \"rules_cc\", path = "
				"\"third_party/rules_cc\")\n");
	write_file("third_party/rules_cc/WORKSPACE", "");
	write_file("third_party/rules_cc/BUILD", "");
	write_file("third_party/rules_cc/cc/BUILD", "");
	write_file("third_party/rules_cc/cc/defs.bzl",
		   "def cc_binary(**kw):\n    native.cc_binary(**kw)\n"
		   "def cc_library(**kw):\n    native.cc_library(**kw)\n"
		   "def cc_toolchain(**kw):\n    native.cc_toolchain(**kw)\n"
		   "def cc_toolchain_suite(**kw):\n    native.cc_toolchain_suite(**kw)\n");
	commit_all("vendored rules_cc");
	claim_stage(&c, "[{\"name\":\"b\",\"type\":\"build\",\"build_targets\":[\"//slow:slow\"]}]",
		    bld);
	snprintf(path, sizeof(path), "%s/action.pid", tmpdir);
	assert_int_equal(pthread_create(&th, NULL, build_thread_main, &t), 0);
	/* the bound only catches a build that hangs before its action */
	for (int i = 0; i < 3000 && pid <= 0 && !atomic_load(&t.done); i++) {
		_cleanup_free_ char *text = NULL;

		if (fs_read_file_at(AT_FDCWD, path, 64, &text, NULL) >= 0)
			pid = strtol(text, NULL, 10);
		else
			usleep(100 * 1000);
	}
	if (pid <= 0) {
		assert_int_equal(pthread_join(th, NULL), 0);
		log = stage_log(&c, c.claim.stage);
		fputs(log, stderr);
		fail_msg("the action did not start: %d %s", t.r, t.res.message);
	}
	/* the stage's deadline passes: the keep-alive answers -ETIMEDOUT. (The executor thread
	 * reads the field without atomics; an aligned 64-bit store is what the test needs.) */
	__atomic_store_n(&c.ctx.deadline, (usec_t)1, __ATOMIC_SEQ_CST);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.r, -ETIMEDOUT);
	/* the action is gone, or dead and not yet reaped by its new parent */
	snprintf(stat_path, sizeof(stat_path), "/proc/%ld/stat", pid);
	for (int i = 0; i < 100; i++) {
		_cleanup_free_ char *st_text = NULL;
		const char *paren;

		if (fs_read_file_at(AT_FDCWD, stat_path, 4096, &st_text, NULL) < 0)
			break;
		paren = strrchr(st_text, ')');
		/* dead, or the pid already reused by another program */
		if (!strstr(st_text, "(sleep)") || (paren && paren[1] == ' ' && paren[2] == 'Z'))
			break;
		if (i == 99)
			fail_msg("action %ld outlived the stopped build", pid);
		usleep(100 * 1000);
	}
	log = stage_log(&c, c.claim.stage);
	assert_null(strstr(log, "--override_repository=rules_cc="));
	assert_non_null(strstr(log, "--override_repository=rules_java="));
	release(&c);
}

static void test_ls_remote(void **state)
{
	char got[72];
	struct cd_error err = { 0 };

	assert_int_equal(poller_ls_remote(repo, "main", got, &err), 0);
	assert_string_equal(got, sha);
	assert_int_equal(poller_ls_remote(repo, "nope", got, &err), -ENOENT);
	assert_true(poller_ls_remote("/nonexistent/repo", "main", got, &err) < 0);
	/* an option-looking repo name stays a repo name */
	assert_true(poller_ls_remote("--upload-pack=touch /tmp/cd-pwned", "main", got, &err) < 0);
	assert_int_equal(access("/tmp/cd-pwned", F_OK), -1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define TB(f) cmocka_unit_test_setup_teardown(f, setup_bazel, teardown)
	const struct CMUnitTest tests[] = {
		T(test_pack_is_reproducible),
		T(test_build_indexes_and_is_idempotent),
		T(test_build_failures),
		T(test_build_missing_dir_and_empty_output),
		T(test_test_stage),
		T(test_job_deploys_zones_in_order),
		T(test_job_rollback_stops_before_next_zone),
		T(test_job_refusals),
		T(test_job_unknown_zone),
		T(test_cancel_during_job_stage),
		T(test_sandboxed),
		T(test_ls_remote),
		TB(test_bazel_build_and_job),
		TB(test_bazel_test_stage),
		TB(test_bazel_missing),
		TB(test_bazel_sandboxed),
		TB(test_bazel_stop_kills_actions),
	};

	/* e.g. CMOCKA_TEST_FILTER='test_bazel_*' while working on one area */
	if (getenv("CMOCKA_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
