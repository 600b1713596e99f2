/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskctl — the SRE's command line for taskd (tasks on one host) and, with --server, deployd.
 *
 *   taskctl [--host URL] [--token-file F | --token T] [--server URL] [-o table|wide|json] VERB
 *
 * Defaults reach the local taskd (http://127.0.0.1:7411) with its token file
 * (/var/lib/codedeploy/taskd.token), so `taskctl ps` works as root with no flags.
 * Exit codes: 0 ok, 1 error, 2 usage, 3 not found.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/http_client.h"
#include "api/json.h"
#include "lib/clock.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/macro.h"
#include "lib/str.h"

#define EXIT_USAGE 2
#define EXIT_NOTFOUND 3
#define DEFAULT_HOST "http://127.0.0.1:7411"
#define DEFAULT_TOKEN_FILE "/var/lib/codedeploy/taskd.token"
#define SPEC_MAX_BYTES (1024 * 1024)

enum output { OUT_TABLE, OUT_WIDE, OUT_JSON };

static struct {
	const char *host;
	const char *server;
	const char *token;
	const char *token_file;
	enum output output;
	struct http_client *client;
} opt = { .output = OUT_TABLE };

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("taskctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see taskctl --help)\n", stderr);
	return EXIT_USAGE;
}

static int fail(const char *fmt, ...) _printf_(1, 2);
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("taskctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static void main_help(void)
{
	printf("Usage: taskctl [--host URL] [--token-file F | --token T] [--server URL]\n"
	       "               [-o table|wide|json] VERB [ARGS]\n"
	       "\n"
	       "Tasks on a host (taskd, default %s):\n"
	       "  ps [--job URL] [--state S]   list tasks\n"
	       "  get ID                       one task (a table row)\n"
	       "  inspect ID                   one task in full (JSON)\n"
	       "  logs [-f] [--tail N] ID      the task's stdout+stderr\n"
	       "  stop ID                      SetTaskState DONE (SIGTERM, grace, kill)\n"
	       "  start ID                     SetTaskState RUNNING\n"
	       "  rm ID                        remove a finished task\n"
	       "  events [-w] [--after N]      state changes (-w: keep watching)\n"
	       "  put -f FILE [...]            PutTask from a JobSpec or PutTask body (alias: run)\n"
	       "\n"
	       "The cluster (deployd, with --server URL):\n"
	       "  jobs | hosts | events [-w]\n"
	       "  job get|stop|start REGION/ZONE/NAME | job put -f FILE REGION/ZONE/NAME\n"
	       "  pipelines [--owner O] | pipeline create -f FILE | pipeline get ID\n"
	       "  schema get ID [--version N] | schema put ID -f FILE [--if-match V]\n"
	       "  schema activate ID VERSION\n"
	       "  run ID [--commit SHA] | run cancel|retry ID RUN | runs ID\n"
	       "  watch ID RUN (exit 0 when the run FINISHED) | approve ID RUN STAGE\n"
	       "\n"
	       "Options:\n"
	       "  --host URL        taskd base URL (default %s)\n"
	       "  --token-file F    bearer token file (default %s for taskd)\n"
	       "  --token T         bearer token\n"
	       "  --server URL      talk to deployd instead of taskd\n"
	       "  -o FORMAT         table (default), wide or json\n"
	       "  --help, --version\n"
	       "\n"
	       "Exit status: 0 ok, 1 error, 2 usage, 3 not found. `taskctl VERB --help` for a verb.\n",
	       DEFAULT_HOST, DEFAULT_HOST, DEFAULT_TOKEN_FILE);
}

/* ---------------------------------------------------------------- client */

static int client_open(void)
{
	_cleanup_free_ char *token = NULL;
	struct http_client_config cc = { 0 };
	struct cd_error err = { 0 };
	const char *base = opt.server ? opt.server : opt.host ? opt.host : DEFAULT_HOST;
	int r;

	if (opt.token) {
		token = strdup(opt.token);
	} else {
		const char *f = opt.token_file ? opt.token_file :
				opt.server     ? NULL :
						 DEFAULT_TOKEN_FILE;

		if (f) {
			size_t len = 0;

			r = fs_read_file_at(AT_FDCWD, f, 4096, &token, &len);
			if (r < 0) {
				if (opt.token_file || geteuid() == 0)
					return fail("cannot read token file %s: %s", f,
						    strerror(-r));
				return fail("cannot read token file %s: %s (run as root, or pass "
					    "--token-file/--token)",
					    f, strerror(-r));
			}
			while (len > 0 && (token[len - 1] == '\n' || token[len - 1] == '\r'))
				token[--len] = '\0';
		}
	}
	cc.base_url = base;
	cc.bearer_token = token;
	r = http_client_new(&cc, &opt.client, &err);
	if (token)
		explicit_bzero(token, strlen(token));
	if (r < 0)
		return fail("%s", cd_error_message(&err));
	return 0;
}

/* Perform a JSON request; on an HTTP error print the problem and return the exit code. */
static int call(const char *method, const char *path, json_t *body, json_t **ret_body,
		long *ret_status)
{
	struct cd_error err = { 0 };
	json_t *reply = NULL;
	long status = 0;
	int r = http_client_json(opt.client, method, path, body, &reply, &status, &err);

	if (r < 0)
		return fail("%s", cd_error_message(&err));
	if (ret_status)
		*ret_status = status;
	if (status / 100 != 2) {
		struct problem p;
		char line[1024];

		if (http_client_problem(status, reply, &p) >= 0) {
			fprintf(stderr, "taskctl: %s\n",
				http_client_problem_format(&p, line, sizeof(line)));
			problem_release(&p);
		} else
			fprintf(stderr, "taskctl: HTTP %ld\n", status);
		json_decref(reply);
		return status == 404 ? EXIT_NOTFOUND : 1;
	}
	if (ret_body)
		*ret_body = reply;
	else
		json_decref(reply);
	return 0;
}

/* ---------------------------------------------------------------- output */

static const char *jstr(const json_t *o, const char *k, const char *def)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s && *s ? s : def;
}

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

	if (s) {
		puts(s);
		free(s);
	}
}

static void age(const char *rfc3339, char *buf, size_t size)
{
	usec_t t, now = clock_real_usec();
	uint64_t s;

	if (!rfc3339 || clock_parse_rfc3339(rfc3339, &t) < 0 || t > now) {
		snprintf(buf, size, "-");
		return;
	}
	s = (now - t) / USEC_PER_SEC;
	if (s < 120)
		snprintf(buf, size, "%llus", (unsigned long long)s);
	else if (s < 7200)
		snprintf(buf, size, "%llum", (unsigned long long)(s / 60));
	else if (s < 172800)
		snprintf(buf, size, "%lluh", (unsigned long long)(s / 3600));
	else
		snprintf(buf, size, "%llud", (unsigned long long)(s / 86400));
}

static void task_header(void)
{
	if (opt.output == OUT_WIDE)
		printf("%-28s  %-32s  %-7s  %-13s  %4s  %8s  %5s  %-7s  %7s  %s\n", "TASK ID",
		       "JOB", "STATE", "REASON", "EXIT", "RESTARTS", "AGE", "HEALTHY", "PID",
		       "MESSAGE");
	else
		printf("%-28s  %-32s  %-7s  %-13s  %4s  %8s  %5s\n", "TASK ID", "JOB", "STATE",
		       "REASON", "EXIT", "RESTARTS", "AGE");
}

static void task_row(const json_t *t)
{
	char exit_s[16] = "-", age_s[16];
	const json_t *code = json_object_get(t, "exit_code"), *sig = json_object_get(t, "signal");
	const char *job = jstr(t, "job", "-");

	if (json_is_integer(code))
		snprintf(exit_s, sizeof(exit_s), "%lld", (long long)json_integer_value(code));
	else if (json_is_integer(sig))
		snprintf(exit_s, sizeof(exit_s), "s%lld", (long long)json_integer_value(sig));
	age(jstr(t, "created_at", NULL), age_s, sizeof(age_s));
	if (startswith(job, "job://"))
		job += 6;
	if (opt.output == OUT_WIDE) {
		const json_t *pid = json_object_get(t, "pid");
		char pid_s[16] = "-";

		if (json_is_integer(pid))
			snprintf(pid_s, sizeof(pid_s), "%lld", (long long)json_integer_value(pid));
		printf("%-28s  %-32s  %-7s  %-13s  %4s  %8lld  %5s  %-7s  %7s  %s\n",
		       jstr(t, "task_id", "-"), job, jstr(t, "state", "-"), jstr(t, "reason", "-"),
		       exit_s, (long long)json_integer_value(json_object_get(t, "restarts")), age_s,
		       json_is_true(json_object_get(t, "healthy")) ? "yes" : "no", pid_s,
		       jstr(t, "message", ""));
	} else
		printf("%-28s  %-32s  %-7s  %-13s  %4s  %8lld  %5s\n", jstr(t, "task_id", "-"), job,
		       jstr(t, "state", "-"), jstr(t, "reason", "-"), exit_s,
		       (long long)json_integer_value(json_object_get(t, "restarts")), age_s);
}

/* ---------------------------------------------------------------- verbs */

struct verb {
	const char *name;
	const char *usage;
	int (*fn)(int argc, char **argv);
	bool server; /* deployd verb */
};

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (streq(argv[i], "--help") || streq(argv[i], "-h"))
			return true;
	return false;
}

static char *escape(const char *s)
{
	return http_client_escape(s);
}

static int need_id(int argc, char **argv, const char *verb, const char **ret)
{
	if (argc != 2)
		return usage_error("%s needs exactly one task ID", verb);
	if (!*argv[1] || strchr(argv[1], '/'))
		return usage_error("'%s' is not a task ID", argv[1]);
	*ret = argv[1];
	return 0;
}

static int verb_ps(int argc, char **argv)
{
	static const struct option lo[] = { { "job", required_argument, NULL, 'j' },
					    { "state", required_argument, NULL, 's' },
					    {} };
	_cleanup_strbuf_ struct strbuf path = STRBUF_INIT;
	const char *job = NULL, *state = NULL;
	json_t *reply = NULL;
	int o, r;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
		if (o == 'j')
			job = optarg;
		else if (o == 's')
			state = optarg;
		else
			return usage_error("ps: unknown option");
	}
	if (optind != argc)
		return usage_error("ps takes no arguments");
	if (state && !streq(state, "PENDING") && !streq(state, "RUNNING") &&
	    !streq(state, "DONE") && !streq(state, "ERROR"))
		return usage_error("--state must be PENDING, RUNNING, DONE or ERROR");
	strbuf_adds(&path, "/v1/tasks");
	if (job || state) {
		_cleanup_free_ char *ej = job ? escape(job) : NULL;

		strbuf_addf(&path, "?%s%s%s%s%s", job ? "job=" : "", ej ? ej : "",
			    job && state ? "&" : "", state ? "state=" : "", state ? state : "");
	}
	r = client_open();
	if (r)
		return r;
	r = call("GET", path.buf, NULL, &reply, NULL);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(reply);
	else {
		size_t i;
		json_t *t;

		task_header();
		const json_t *a = json_object_get(reply, "tasks");

		for (i = 0; i < json_array_size(a) && (t = json_array_get(a, i)); i++)
			task_row(t);
	}
	json_decref(reply);
	return 0;
}

static int get_task(const char *id, json_t **ret)
{
	_cleanup_free_ char *eid = escape(id), *path = NULL;
	int r;

	if (!eid || asprintf(&path, "/v1/tasks/%s", eid) < 0)
		return fail("out of memory");
	r = client_open();
	if (r)
		return r;
	return call("GET", path, NULL, ret, NULL);
}

static int verb_get(int argc, char **argv)
{
	const char *id = NULL;
	json_t *t = NULL;
	int r = need_id(argc, argv, "get", &id);

	if (r)
		return r;
	r = get_task(id, &t);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(t);
	else {
		task_header();
		task_row(t);
	}
	json_decref(t);
	return 0;
}

static int verb_inspect(int argc, char **argv)
{
	const char *id = NULL;
	json_t *t = NULL;
	int r = need_id(argc, argv, "inspect", &id);

	if (r)
		return r;
	r = get_task(id, &t);
	if (r)
		return r;
	print_json(t);
	json_decref(t);
	return 0;
}

static int write_stdout(const void *buf, size_t len, void *userdata)
{
	if (fwrite(buf, 1, len, stdout) != len)
		return -EPIPE;
	fflush(stdout);
	return 0;
}

static int verb_logs(int argc, char **argv)
{
	static const struct option lo[] = { { "follow", no_argument, NULL, 'f' },
					    { "tail", required_argument, NULL, 't' },
					    {} };
	_cleanup_free_ char *eid = NULL, *path = NULL;
	_cleanup_http_response_ struct http_client_response resp = { 0 };
	struct http_client_request rq = { 0 };
	struct cd_error err = { 0 };
	bool follow = false;
	const char *tail = NULL;
	uint64_t n;
	int o, r;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+ft:", lo, NULL)) != -1) {
		if (o == 'f')
			follow = true;
		else if (o == 't')
			tail = optarg;
		else
			return usage_error("logs: unknown option");
	}
	if (tail && parse_u64(tail, &n) < 0)
		return usage_error("--tail needs a non-negative integer");
	if (optind != argc - 1)
		return usage_error("logs needs exactly one task ID");
	eid = escape(argv[optind]);
	if (!eid || asprintf(&path, "/v1/tasks/%s/logs?follow=%d%s%s", eid, follow ? 1 : 0,
			     tail ? "&tail=" : "", tail ? tail : "") < 0)
		return fail("out of memory");
	r = client_open();
	if (r)
		return r;
	rq.method = "GET";
	rq.path = path;
	rq.timeout_ms = follow ? 24u * 3600 * 1000 : 0;
	rq.on_data = write_stdout;
	r = http_client_request(opt.client, &rq, &resp, &err);
	if (r < 0)
		return fail("%s", cd_error_message(&err));
	if (resp.status / 100 != 2) {
		json_t *j = resp.body ? json_loads(resp.body, 0, NULL) : NULL;
		struct problem p;
		char line[512];

		if (http_client_problem(resp.status, j, &p) >= 0) {
			fprintf(stderr, "taskctl: %s\n",
				http_client_problem_format(&p, line, sizeof(line)));
			problem_release(&p);
		}
		json_decref(j);
		return resp.status == 404 ? EXIT_NOTFOUND : 1;
	}
	return 0;
}

static int set_state(int argc, char **argv, const char *verb, const char *state)
{
	_cleanup_free_ char *eid = NULL, *path = NULL;
	const char *id = NULL;
	json_t *t = NULL;
	int r = need_id(argc, argv, verb, &id);

	if (r)
		return r;
	eid = escape(id);
	if (!eid || asprintf(&path, "/v1/tasks/%s/state", eid) < 0)
		return fail("out of memory");
	r = client_open();
	if (r)
		return r;
	r = call("PUT", path, json_pack("{s:s}", "state", state), &t, NULL);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(t);
	else
		printf("%s %s\n", id, jstr(t, "state", "?"));
	json_decref(t);
	return 0;
}

static int verb_stop(int argc, char **argv)
{
	return set_state(argc, argv, "stop", "DONE");
}

static int verb_start(int argc, char **argv)
{
	return set_state(argc, argv, "start", "RUNNING");
}

static int verb_rm(int argc, char **argv)
{
	_cleanup_free_ char *eid = NULL, *path = NULL;
	const char *id = NULL;
	int r = need_id(argc, argv, "rm", &id);

	if (r)
		return r;
	eid = escape(id);
	if (!eid || asprintf(&path, "/v1/tasks/%s", eid) < 0)
		return fail("out of memory");
	r = client_open();
	if (r)
		return r;
	r = call("DELETE", path, NULL, NULL, NULL);
	if (!r && opt.output != OUT_JSON)
		printf("%s removed\n", id);
	return r;
}

static int verb_events(int argc, char **argv)
{
	static const struct option lo[] = { { "watch", no_argument, NULL, 'w' },
					    { "after", required_argument, NULL, 'a' },
					    {} };
	uint64_t after = 0;
	bool watch = false;
	int o, r;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+w", lo, NULL)) != -1) {
		if (o == 'w')
			watch = true;
		else if (o == 'a') {
			if (parse_u64(optarg, &after) < 0)
				return usage_error("--after needs a non-negative integer");
		} else
			return usage_error("events: unknown option");
	}
	if (optind != argc)
		return usage_error("events takes no arguments");
	r = client_open();
	if (r)
		return r;
	do {
		char path[96];
		json_t *reply = NULL, *e;
		size_t i;

		snprintf(path, sizeof(path), "/v1/events?after=%llu&wait=%d",
			 (unsigned long long)after, watch ? 30 : 0);
		r = call("GET", path, NULL, &reply, NULL);
		if (r)
			return r;
		const json_t *a = json_object_get(reply, "events");

		for (i = 0; i < json_array_size(a) && (e = json_array_get(a, i)); i++) {
			json_int_t seq = json_integer_value(json_object_get(e, "seq"));

			if (opt.output == OUT_JSON) {
				char *s = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);

				if (s)
					puts(s);
				free(s);
			} else {
				const json_t *d = json_object_get(e, "data");

				printf("%-8lld %-24s %-28s %-10s %-7s %s\n", (long long)seq,
				       jstr(e, "ts", "-"), jstr(e, "task_id", "-"),
				       jstr(e, "type", "-"), jstr(d, "state", "-"),
				       jstr(d, "reason", ""));
			}
			if (seq > 0 && (uint64_t)seq > after)
				after = (uint64_t)seq;
		}
		fflush(stdout);
		json_decref(reply);
	} while (watch);
	return 0;
}

static int read_spec_file(const char *file, json_t **ret)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	struct problem p;
	int r;

	if (streq(file, "-")) {
		_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
		char buf[65536];
		size_t n;

		while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
			if (sb.len + n > SPEC_MAX_BYTES)
				return fail("stdin: spec larger than %d bytes", SPEC_MAX_BYTES);
			if (strbuf_add(&sb, buf, n) < 0)
				return fail("out of memory");
		}
		text = strbuf_detach(&sb, &len);
		if (!text)
			return fail("out of memory");
	} else {
		r = fs_read_file_at(AT_FDCWD, file, SPEC_MAX_BYTES, &text, &len);
		if (r < 0)
			return fail("cannot read %s: %s", file, strerror(-r));
	}
	problem_init(&p, 400, NULL, NULL);
	r = api_json_parse(text, len, ret, &p);
	if (r < 0) {
		char line[512];

		fprintf(stderr, "taskctl: %s: %s\n", file,
			http_client_problem_format(&p, line, sizeof(line)));
		problem_release(&p);
		return 1;
	}
	problem_release(&p);
	return 0;
}

static int verb_put(int argc, char **argv)
{
	static const struct option lo[] = { { "file", required_argument, NULL, 'f' },
					    { "job", required_argument, NULL, 'j' },
					    { "index", required_argument, NULL, 'i' },
					    { "digest", required_argument, NULL, 'd' },
					    { "mirror", required_argument, NULL, 'm' },
					    { "request-id", required_argument, NULL, 'r' },
					    {} };
	const char *file = NULL, *job = NULL, *digest = NULL, *req = NULL;
	const char *mirrors[16];
	size_t n_mirrors = 0;
	unsigned index = 0;
	json_t *doc = NULL, *body, *t = NULL;
	char idbuf[ID_LEN + 1];
	long status = 0;
	int o, r;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+f:", lo, NULL)) != -1) {
		switch (o) {
		case 'f':
			file = optarg;
			break;
		case 'j':
			job = optarg;
			break;
		case 'i':
			if (parse_uint(optarg, 9999, &index) < 0)
				return usage_error("--index needs an integer 0..9999");
			break;
		case 'd':
			digest = optarg;
			break;
		case 'm':
			if (n_mirrors == ARRAY_SIZE(mirrors))
				return usage_error("at most %zu --mirror", ARRAY_SIZE(mirrors));
			mirrors[n_mirrors++] = optarg;
			break;
		case 'r':
			req = optarg;
			break;
		default:
			return usage_error("put: unknown option");
		}
	}
	if (!file)
		return usage_error("put needs -f FILE (a JobSpec or a PutTask body; - for stdin)");
	if (optind != argc)
		return usage_error("put takes no positional arguments");
	if (!!digest != (n_mirrors > 0))
		return usage_error("--digest and --mirror go together");
	r = read_spec_file(file, &doc);
	if (r)
		return r;
	if (json_object_get(doc, "spec")) {
		body = doc; /* a PutTask body already */
		if (job || digest)
			json_object_set_new(body, "job", json_string(job));
	} else {
		_cleanup_free_ char *dflt = NULL;
		const char *name = jstr(doc, "name", "task");

		if (!job && asprintf(&dflt, "job://local/local-1/%s", name) < 0)
			return fail("out of memory");
		body = json_pack("{s:s, s:I, s:o}", "job", job ? job : dflt, "index",
				 (json_int_t)index, "spec", doc);
		if (!body)
			return fail("out of memory");
	}
	if (digest) {
		json_t *ms = json_array();

		for (size_t i = 0; i < n_mirrors; i++)
			json_array_append_new(ms, json_string(mirrors[i]));
		json_object_set_new(body, "artifact",
				    json_pack("{s:s, s:o}", "digest", digest, "mirrors", ms));
	}
	if (!json_object_get(body, "request_id")) {
		/* one id per invocation: the client's retries of this PUT are idempotent */
		if (!req) {
			id_new(idbuf);
			req = idbuf;
		}
		json_object_set_new(body, "request_id", json_string(req));
	}
	r = client_open();
	if (r) {
		json_decref(body);
		return r;
	}
	r = call("PUT", "/v1/tasks", body, &t, &status);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(t);
	else
		printf("%s %s\n", jstr(t, "task_id", "?"), status == 201 ? "created" : "exists");
	json_decref(t);
	return 0;
}

/* ---- deployd verbs (--server) ---- */

static int server_get(const char *path)
{
	json_t *reply = NULL;
	int r = client_open();

	if (r)
		return r;
	r = call("GET", path, NULL, &reply, NULL);
	if (r)
		return r;
	print_json(reply);
	json_decref(reply);
	return 0;
}

static int verb_jobs(int argc, char **argv)
{
	if (argc != 1)
		return usage_error("jobs takes no arguments");
	return server_get("/v1/jobs");
}

static int verb_hosts(int argc, char **argv)
{
	if (argc != 1)
		return usage_error("hosts takes no arguments");
	return server_get("/v1/hosts");
}

static bool job_path_valid(const char *s)
{
	int slashes = 0;

	if (!*s || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-/") != strlen(s))
		return false;
	for (const char *p = s; *p; p++)
		if (*p == '/' && (p == s || p[1] == '/' || !p[1] || ++slashes > 2))
			return false;
	return slashes == 2;
}

static int verb_job(int argc, char **argv)
{
	char path[512];
	const char *sub = argc >= 2 ? argv[1] : "";

	if (streq(sub, "get") && argc == 3) {
		if (!job_path_valid(argv[2]))
			return usage_error("'%s' is not REGION/ZONE/NAME", argv[2]);
		snprintf(path, sizeof(path), "/v1/jobs/%s/state", argv[2]);
		return server_get(path);
	}
	if ((streq(sub, "stop") || streq(sub, "start")) && argc == 3) {
		json_t *reply = NULL;
		int r;

		if (!job_path_valid(argv[2]))
			return usage_error("'%s' is not REGION/ZONE/NAME", argv[2]);
		snprintf(path, sizeof(path), "/v1/jobs/%s/state", argv[2]);
		r = client_open();
		if (r)
			return r;
		r = call("PUT", path,
			 json_pack("{s:s}", "state", streq(sub, "stop") ? "DONE" : "RUNNING"),
			 &reply, NULL);
		if (r)
			return r;
		print_json(reply);
		json_decref(reply);
		return 0;
	}
	if (streq(sub, "put") && argc == 5 && streq(argv[2], "-f")) {
		json_t *spec = NULL, *reply = NULL;
		int r;

		if (!job_path_valid(argv[4]))
			return usage_error("'%s' is not REGION/ZONE/NAME", argv[4]);
		r = read_spec_file(argv[3], &spec);
		if (r)
			return r;
		snprintf(path, sizeof(path), "/v1/jobs/%s", argv[4]);
		r = client_open();
		if (r) {
			json_decref(spec);
			return r;
		}
		r = call("PUT", path, spec, &reply, NULL);
		if (r)
			return r;
		print_json(reply);
		json_decref(reply);
		return 0;
	}
	return usage_error("usage: job get|stop|start REGION/ZONE/NAME | job put -f FILE "
			   "REGION/ZONE/NAME");
}

/* ---- pipelines (deployd, --server) ---- */

/* A JSON request with extra headers (If-Match, Idempotency-Key); like call() otherwise. body is
 * borrowed. */
static int call_headers(const char *method, const char *path, const char *const *headers,
			const json_t *body, bool idempotent, json_t **ret_body)
{
	_cleanup_http_response_ struct http_client_response resp = { 0 };
	_cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct http_client_request rq = { .method = method,
					  .path = path,
					  .headers = headers,
					  .body = text,
					  .body_len = text ? strlen(text) : 0,
					  .content_type = text ? "application/json" : NULL,
					  .idempotent = idempotent };
	struct cd_error err = { 0 };
	json_t *j;
	int r;

	if (body && !text)
		return fail("out of memory");
	r = http_client_request(opt.client, &rq, &resp, &err);
	if (r < 0)
		return fail("%s", cd_error_message(&err));
	j = resp.body_len ? json_loads(resp.body, JSON_DECODE_ANY, NULL) : NULL;
	if (resp.status / 100 != 2) {
		struct problem p;
		char line[1024];

		if (http_client_problem(resp.status, j, &p) >= 0) {
			fprintf(stderr, "taskctl: %s\n",
				http_client_problem_format(&p, line, sizeof(line)));
			problem_release(&p);
		} else
			fprintf(stderr, "taskctl: HTTP %ld\n", resp.status);
		json_decref(j);
		return resp.status == 404 ? EXIT_NOTFOUND : 1;
	}
	if (ret_body)
		*ret_body = j;
	else
		json_decref(j);
	return 0;
}

/* A pipeline id as deployd makes them: no '/', not empty. */
static int need_pipeline_id(const char *s)
{
	if (!*s || strchr(s, '/') || strchr(s, '?'))
		return usage_error("'%s' is not a pipeline ID", s);
	return 0;
}

static int need_run_number(const char *s, uint64_t *ret)
{
	if (parse_u64(s, ret) < 0 || *ret == 0)
		return usage_error("'%s' is not a run number (1, 2, ...)", s);
	return 0;
}

static void pipeline_header(void)
{
	printf("%-28s  %-24s  %-16s  %6s  %6s  %5s\n", "PIPELINE ID", "NAME", "OWNER", "ACTIVE",
	       "LATEST", "AGE");
}

static void pipeline_row(const json_t *p)
{
	char age_s[16];

	age(jstr(p, "created_at", NULL), age_s, sizeof(age_s));
	printf("%-28s  %-24s  %-16s  %6lld  %6lld  %5s", jstr(p, "pipeline_id", "-"),
	       jstr(p, "name", "-"), jstr(p, "owner", "-"),
	       (long long)json_integer_value(json_object_get(p, "active_version")),
	       (long long)json_integer_value(json_object_get(p, "latest_version")), age_s);
	if (opt.output == OUT_WIDE)
		printf("  %s %s", jstr(p, "repo", "-"), jstr(p, "branch", ""));
	putchar('\n');
}

static int verb_pipelines(int argc, char **argv)
{
	static const struct option lo[] = { { "owner", required_argument, NULL, 'O' }, {} };
	_cleanup_free_ char *eowner = NULL;
	_cleanup_free_ char *token = NULL;
	const char *owner = NULL;
	json_t *all;
	int o, r;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
		if (o == 'O')
			owner = optarg;
		else
			return usage_error("pipelines: unknown option");
	}
	if (optind != argc)
		return usage_error("pipelines takes no arguments");
	if (owner && !(eowner = escape(owner)))
		return fail("out of memory");
	r = client_open();
	if (r)
		return r;
	all = json_array();
	/* every page */
	do {
		_cleanup_strbuf_ struct strbuf path = STRBUF_INIT;
		json_t *reply = NULL;

		strbuf_addf(&path, "/v1/pipelines?page_size=100%s%s%s%s", owner ? "&owner=" : "",
			    owner ? eowner : "", token ? "&page_token=" : "", token ? token : "");
		r = call("GET", path.buf, NULL, &reply, NULL);
		if (r) {
			json_decref(all);
			return r;
		}
		json_array_extend(all, json_object_get(reply, "pipelines"));
		free(token);
		token = NULL;
		if (json_string_value(json_object_get(reply, "next_page_token")))
			token = escape(
				json_string_value(json_object_get(reply, "next_page_token")));
		json_decref(reply);
	} while (token);
	if (opt.output == OUT_JSON)
		print_json(all);
	else {
		size_t i;
		json_t *p;

		pipeline_header();
		for (i = 0; i < json_array_size(all) && (p = json_array_get(all, i)); i++)
			pipeline_row(p);
	}
	json_decref(all);
	return 0;
}

static int verb_pipeline(int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : "";
	json_t *reply = NULL;
	char path[256];
	int r;

	if (streq(sub, "create")) {
		json_t *doc = NULL;

		if (argc != 4 || (!streq(argv[2], "-f") && !streq(argv[2], "--file")))
			return usage_error("usage: pipeline create -f FILE");
		r = read_spec_file(argv[3], &doc);
		if (r)
			return r;
		r = client_open();
		if (!r)
			r = call("POST", "/v1/pipelines", doc, &reply, NULL);
		json_decref(doc);
		if (r)
			return r;
		if (opt.output == OUT_JSON)
			print_json(reply);
		else
			printf("%s created\n", jstr(reply, "pipeline_id", "?"));
		json_decref(reply);
		return 0;
	}
	if (streq(sub, "get")) {
		_cleanup_free_ char *eid = NULL;

		if (argc != 3)
			return usage_error("usage: pipeline get ID");
		r = need_pipeline_id(argv[2]);
		if (r)
			return r;
		eid = escape(argv[2]);
		if (!eid)
			return fail("out of memory");
		snprintf(path, sizeof(path), "/v1/pipelines/%s", eid);
		r = client_open();
		if (!r)
			r = call("GET", path, NULL, &reply, NULL);
		if (r)
			return r;
		if (opt.output == OUT_JSON)
			print_json(reply);
		else {
			pipeline_header();
			pipeline_row(reply);
		}
		json_decref(reply);
		return 0;
	}
	return usage_error("usage: pipeline create -f FILE | pipeline get ID");
}

static int verb_schema(int argc, char **argv)
{
	static const struct option lo[] = { { "version", required_argument, NULL, 'v' },
					    { "file", required_argument, NULL, 'f' },
					    { "if-match", required_argument, NULL, 'm' },
					    {} };
	const char *sub = argc >= 2 ? argv[1] : "";
	const char *file = NULL;
	uint64_t version = 0, if_match = 0;
	_cleanup_free_ char *eid = NULL;
	json_t *reply = NULL;
	char path[320];
	int o, r;

	if (!streq(sub, "get") && !streq(sub, "put") && !streq(sub, "activate"))
		return usage_error("usage: schema get ID [--version N] | schema put ID -f FILE "
				   "[--if-match V] | schema activate ID VERSION");
	/* options may follow the ID (schema put ID -f FILE): permute, from the sub-verb on;
	 * optind 0 re-initialises getopt, whose ordering main() set to "+" */
	argc--;
	argv++;
	optind = 0;
	while ((o = getopt_long(argc, argv, "f:", lo, NULL)) != -1) {
		if (o == 'v' && streq(sub, "get")) {
			if (parse_u64(optarg, &version) < 0 || !version)
				return usage_error("--version needs a positive integer");
		} else if (o == 'f' && streq(sub, "put"))
			file = optarg;
		else if (o == 'm' && streq(sub, "put")) {
			if (parse_u64(optarg, &if_match) < 0 || !if_match)
				return usage_error("--if-match needs a schema version");
		} else
			return usage_error("schema %s: unknown option", sub);
	}
	if (optind >= argc)
		return usage_error("schema %s needs a pipeline ID", sub);
	r = need_pipeline_id(argv[optind]);
	if (r)
		return r;
	eid = escape(argv[optind]);
	if (!eid)
		return fail("out of memory");
	if (streq(sub, "get")) {
		if (optind + 1 != argc)
			return usage_error("schema get takes one pipeline ID");
		if (version)
			snprintf(path, sizeof(path), "/v1/pipelines/%s/schema?version=%llu", eid,
				 (unsigned long long)version);
		else
			snprintf(path, sizeof(path), "/v1/pipelines/%s/schema", eid);
		r = client_open();
		if (!r)
			r = call("GET", path, NULL, &reply, NULL);
		if (r)
			return r;
		if (opt.output == OUT_JSON)
			print_json(reply);
		else {
			printf("# pipeline %s, schema version %lld (%s), latest %lld\n",
			       jstr(reply, "pipeline_id", "?"),
			       (long long)json_integer_value(json_object_get(reply, "version")),
			       jstr(reply, "state", "?"),
			       (long long)json_integer_value(
				       json_object_get(reply, "latest_version")));
			print_json(json_object_get(reply, "schema"));
		}
		json_decref(reply);
		return 0;
	}
	if (streq(sub, "put")) {
		char hdr[64];
		const char *headers[2] = { NULL, NULL };
		json_t *doc = NULL;

		if (!file)
			return usage_error("schema put needs -f FILE");
		if (optind + 1 != argc)
			return usage_error("schema put takes one pipeline ID");
		r = read_spec_file(file, &doc);
		if (r)
			return r;
		if (if_match) {
			snprintf(hdr, sizeof(hdr), "If-Match: \"%llu\"",
				 (unsigned long long)if_match);
			headers[0] = hdr;
		}
		snprintf(path, sizeof(path), "/v1/pipelines/%s/schema", eid);
		r = client_open();
		/* with If-Match a resend is safe: a stale version gets 412, not a second draft */
		if (!r)
			r = call_headers("PUT", path, headers, doc, if_match != 0, &reply);
		json_decref(doc);
		if (r)
			return r;
		if (opt.output == OUT_JSON)
			print_json(reply);
		else
			printf("%s schema version %lld (%s)\n", jstr(reply, "pipeline_id", "?"),
			       (long long)json_integer_value(json_object_get(reply, "version")),
			       jstr(reply, "state", "?"));
		json_decref(reply);
		return 0;
	}
	/* activate ID VERSION */
	if (optind + 2 != argc)
		return usage_error("usage: schema activate ID VERSION");
	if (parse_u64(argv[optind + 1], &version) < 0 || !version)
		return usage_error("'%s' is not a schema version", argv[optind + 1]);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/schema/%llu/activate", eid,
		 (unsigned long long)version);
	r = client_open();
	if (!r)
		r = call_headers("POST", path, NULL, NULL, true, &reply);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(reply);
	else
		printf("%s schema version %llu active\n", argv[optind],
		       (unsigned long long)version);
	json_decref(reply);
	return 0;
}

static bool run_final(const char *state)
{
	return streq(state, "FINISHED") || streq(state, "ERROR") || streq(state, "CANCELLED") ||
	       streq(state, "SUPERSEDED");
}

static void run_header(void)
{
	printf("%5s  %-12s  %-11s  %7s  %-8s  %5s  %s\n", "RUN", "COMMIT", "STATE", "ATTEMPT",
	       "TRIGGER", "AGE", opt.output == OUT_WIDE ? "MESSAGE" : "");
}

static void run_row(const json_t *r)
{
	char age_s[16];

	age(jstr(r, "created_at", NULL), age_s, sizeof(age_s));
	printf("%5lld  %-12.12s  %-11s  %7lld  %-8s  %5s  %s\n",
	       (long long)json_integer_value(json_object_get(r, "run")), jstr(r, "commit", "-"),
	       jstr(r, "state", "-"), (long long)json_integer_value(json_object_get(r, "attempt")),
	       jstr(r, "trigger", "-"), age_s,
	       opt.output == OUT_WIDE ? jstr(r, "error_message", "") : "");
}

static void stage_table(const json_t *run)
{
	const json_t *stages = json_object_get(run, "stages");
	size_t i;
	json_t *sg;

	printf("run %lld  commit %.12s  %s  attempt %lld\n",
	       (long long)json_integer_value(json_object_get(run, "run")), jstr(run, "commit", "-"),
	       jstr(run, "state", "-"),
	       (long long)json_integer_value(json_object_get(run, "attempt")));
	printf("  %-24s  %-8s  %-11s  %7s  %s\n", "STAGE", "TYPE", "STATE", "ATTEMPT", "MESSAGE");
	for (i = 0; i < json_array_size(stages) && (sg = json_array_get(stages, i)); i++)
		printf("  %-24s  %-8s  %-11s  %7lld  %s\n", jstr(sg, "name", "-"),
		       jstr(sg, "type", "-"), jstr(sg, "state", "-"),
		       (long long)json_integer_value(json_object_get(sg, "attempt")),
		       jstr(sg, "error_message", ""));
}

/* HEAD of the git repository in the current directory (run without --commit). */
static int git_head(char *buf, size_t size)
{
	FILE *f = popen("git rev-parse HEAD 2>/dev/null", "r");
	size_t len;

	if (!f)
		return -errno;
	if (!fgets(buf, (int)size, f)) {
		pclose(f);
		return -ENOENT;
	}
	if (pclose(f) != 0)
		return -ENOENT;
	len = strcspn(buf, "\n");
	buf[len] = '\0';
	return len ? 0 : -ENOENT;
}

static int run_action(int argc, char **argv)
{
	const char *what = argv[1];
	_cleanup_free_ char *eid = NULL;
	json_t *reply = NULL;
	uint64_t n;
	char path[320];
	int r;

	if (argc != 4)
		return usage_error("usage: run %s ID RUN", what);
	r = need_pipeline_id(argv[2]);
	if (!r)
		r = need_run_number(argv[3], &n);
	if (r)
		return r;
	eid = escape(argv[2]);
	if (!eid)
		return fail("out of memory");
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/%llu/%s", eid, (unsigned long long)n,
		 what);
	r = client_open();
	if (!r)
		r = call_headers("POST", path, NULL, NULL, false, &reply);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(reply);
	else
		printf("%s run %llu: %s\n", argv[2], (unsigned long long)n,
		       streq(what, "cancel") ? "cancelled" : "retrying the failed stages");
	json_decref(reply);
	return 0;
}

static int verb_prun(int argc, char **argv)
{
	static const struct option lo[] = { { "commit", required_argument, NULL, 'c' }, {} };
	const char *commit = NULL;
	_cleanup_free_ char *eid = NULL;
	char head[128], path[256], key[ID_LEN + 32], hdr[ID_LEN + 64];
	const char *headers[2] = { hdr, NULL };
	json_t *reply = NULL, *body;
	int o, r;

	if (argc >= 2 && (streq(argv[1], "cancel") || streq(argv[1], "retry")))
		return run_action(argc, argv);
	optind = 0; /* permute: run ID --commit SHA */
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (o == 'c')
			commit = optarg;
		else
			return usage_error("run: unknown option");
	}
	if (optind + 1 != argc)
		return usage_error("usage: run ID [--commit SHA] | run cancel|retry ID RUN");
	r = need_pipeline_id(argv[optind]);
	if (r)
		return r;
	if (!commit) {
		if (git_head(head, sizeof(head)) < 0)
			return usage_error(
				"no --commit and no git repository here to take HEAD from");
		commit = head;
	}
	eid = escape(argv[optind]);
	if (!eid)
		return fail("out of memory");
	/* one key per invocation: the client's retries of this POST make no second run */
	id_new(key);
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: taskctl-%s", key);
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs", eid);
	body = json_pack("{s:s}", "commit", commit);
	if (!body)
		return fail("out of memory");
	r = client_open();
	if (!r)
		r = call_headers("POST", path, headers, body, true, &reply);
	json_decref(body);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(reply);
	else
		printf("%s run %lld %s (commit %.12s)\n", argv[optind],
		       (long long)json_integer_value(json_object_get(reply, "run")),
		       jstr(reply, "state", "?"), commit);
	json_decref(reply);
	return 0;
}

static int verb_runs(int argc, char **argv)
{
	_cleanup_free_ char *eid = NULL;
	json_t *reply = NULL, *run;
	char path[256];
	size_t i;
	int r;

	if (argc != 2)
		return usage_error("usage: runs ID");
	r = need_pipeline_id(argv[1]);
	if (r)
		return r;
	eid = escape(argv[1]);
	if (!eid)
		return fail("out of memory");
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs", eid);
	r = client_open();
	if (!r)
		r = call("GET", path, NULL, &reply, NULL);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(reply);
	else {
		run_header();
		for (i = 0; i < json_array_size(json_object_get(reply, "runs")) &&
			    (run = json_array_get(json_object_get(reply, "runs"), i));
		     i++)
			run_row(run);
	}
	json_decref(reply);
	return 0;
}

/* Live view of a run's stages until it ends: 0 when it FINISHED, 1 otherwise. */
static int verb_watch(int argc, char **argv)
{
	_cleanup_free_ char *eid = NULL, *last = NULL;
	char path[320];
	uint64_t n;
	int r;

	if (argc != 3)
		return usage_error("usage: watch ID RUN");
	r = need_pipeline_id(argv[1]);
	if (!r)
		r = need_run_number(argv[2], &n);
	if (r)
		return r;
	eid = escape(argv[1]);
	if (!eid)
		return fail("out of memory");
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/%llu", eid, (unsigned long long)n);
	r = client_open();
	if (r)
		return r;
	for (;;) {
		json_t *run = NULL, *view;
		_cleanup_free_ char *now = NULL;
		const char *state;
		size_t i;
		json_t *sg;

		r = call("GET", path, NULL, &run, NULL);
		if (r)
			return r;
		/* what a watcher sees: the run's and every stage's state, attempt and message */
		view = json_pack("{s:O?, s:O?, s:[]}", "state", json_object_get(run, "state"),
				 "attempt", json_object_get(run, "attempt"), "stages");
		for (i = 0; i < json_array_size(json_object_get(run, "stages")) &&
			    (sg = json_array_get(json_object_get(run, "stages"), i));
		     i++)
			json_array_append_new(json_object_get(view, "stages"),
					      json_pack("{s:O?, s:O?, s:O?, s:O?}", "name",
							json_object_get(sg, "name"), "state",
							json_object_get(sg, "state"), "attempt",
							json_object_get(sg, "attempt"),
							"error_message",
							json_object_get(sg, "error_message")));
		now = view ? json_dumps(view, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		json_decref(view);
		if (!now) {
			json_decref(run);
			return fail("out of memory");
		}
		if (!last || !streq(now, last)) {
			if (opt.output == OUT_JSON) {
				char *s = json_dumps(run, JSON_COMPACT | JSON_SORT_KEYS);

				if (s)
					puts(s);
				free(s);
			} else
				stage_table(run);
			fflush(stdout);
			free(last);
			last = TAKE_PTR(now);
		}
		state = jstr(run, "state", "");
		if (run_final(state)) {
			r = streq(state, "FINISHED") ? 0 : 1;
			json_decref(run);
			return r;
		}
		json_decref(run);
		clock_sleep_usec(USEC_PER_SEC);
	}
}

static int verb_approve(int argc, char **argv)
{
	_cleanup_free_ char *eid = NULL, *estage = NULL;
	json_t *reply = NULL;
	char path[512];
	uint64_t n;
	int r;

	if (argc != 4)
		return usage_error("usage: approve ID RUN STAGE");
	r = need_pipeline_id(argv[1]);
	if (!r)
		r = need_run_number(argv[2], &n);
	if (r)
		return r;
	eid = escape(argv[1]);
	estage = escape(argv[3]);
	if (!eid || !estage)
		return fail("out of memory");
	snprintf(path, sizeof(path), "/v1/pipelines/%s/runs/%llu/stages/%s/approve", eid,
		 (unsigned long long)n, estage);
	r = client_open();
	if (!r)
		r = call_headers("POST", path, NULL, NULL, false, &reply);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(reply);
	else
		printf("%s run %llu: stage %s approved\n", argv[1], (unsigned long long)n, argv[3]);
	json_decref(reply);
	return 0;
}

static const struct verb verbs[] = {
	{ "ps", "ps [--job URL] [--state PENDING|RUNNING|DONE|ERROR]", verb_ps, false },
	{ "get", "get ID", verb_get, false },
	{ "inspect", "inspect ID", verb_inspect, false },
	{ "logs", "logs [-f|--follow] [--tail N] ID", verb_logs, false },
	{ "stop", "stop ID", verb_stop, false },
	{ "start", "start ID", verb_start, false },
	{ "rm", "rm ID", verb_rm, false },
	{ "events", "events [-w|--watch] [--after N]", verb_events, false },
	{ "put",
	  "put -f FILE|- [--job job://R/Z/NAME] [--index N] [--digest sha256:HEX --mirror URL...] "
	  "[--request-id ID]",
	  verb_put, false },
	{ "run", "run -f FILE ... (same as put)", verb_put, false },
	{ "jobs", "jobs (with --server)", verb_jobs, true },
	{ "job",
	  "job get|stop|start REGION/ZONE/NAME | job put -f FILE REGION/ZONE/NAME (with --server)",
	  verb_job, true },
	{ "hosts", "hosts (with --server)", verb_hosts, true },
	{ "pipelines", "pipelines [--owner OWNER] (with --server)", verb_pipelines, true },
	{ "pipeline", "pipeline create -f FILE | pipeline get ID (with --server)", verb_pipeline,
	  true },
	{ "schema",
	  "schema get ID [--version N] | schema put ID -f FILE [--if-match VERSION] | schema "
	  "activate ID VERSION (with --server)",
	  verb_schema, true },
	{ "runs", "runs ID (with --server)", verb_runs, true },
	{ "watch", "watch ID RUN (with --server; exit 0 when the run FINISHED, 1 otherwise)",
	  verb_watch, true },
	{ "approve", "approve ID RUN STAGE (with --server)", verb_approve, true },
};

/* `run` with --server: a pipeline run; without: PutTask (alias of put). */
static const struct verb verb_pipeline_run = {
	"run", "run ID [--commit SHA] | run cancel|retry ID RUN (with --server)", verb_prun, true
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "server", required_argument, NULL, 'S' },
		{ "token", required_argument, NULL, 'T' },
		{ "token-file", required_argument, NULL, 'F' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{},
	};
	const struct verb *v = NULL;
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "+o:h", lo, NULL)) != -1) {
		switch (o) {
		case 'H':
			opt.host = optarg;
			break;
		case 'S':
			opt.server = optarg;
			break;
		case 'T':
			opt.token = optarg;
			break;
		case 'F':
			opt.token_file = optarg;
			break;
		case 'o':
			if (streq(optarg, "table"))
				opt.output = OUT_TABLE;
			else if (streq(optarg, "wide"))
				opt.output = OUT_WIDE;
			else if (streq(optarg, "json"))
				opt.output = OUT_JSON;
			else
				return usage_error("-o must be table, wide or json");
			break;
		case 'h':
			main_help();
			return 0;
		case 'V':
			printf("taskctl %s\n", CD_VERSION);
			return 0;
		default:
			return usage_error("unknown option or missing argument: %s",
					   argv[optind - 1]);
		}
	}
	if (opt.token && opt.token_file)
		return usage_error("--token and --token-file are exclusive");
	if (opt.host && opt.server)
		return usage_error("--host and --server are exclusive");
	if (optind >= argc)
		return usage_error("missing VERB");
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (streq(argv[optind], verbs[i].name))
			v = &verbs[i];
	/* events exists on both sides, run too (a pipeline run with --server) */
	if (v && streq(v->name, "run") && opt.server)
		v = &verb_pipeline_run;
	if (!v)
		return usage_error("unknown verb '%s'", argv[optind]);
	if (wants_help(argc - optind, argv + optind)) {
		printf("Usage: taskctl [OPTIONS] %s\n", v->usage);
		return 0;
	}
	if (v->server && !opt.server)
		return usage_error("'%s' needs --server URL (it is a deployd verb)", v->name);
	if (!v->server && opt.server && !streq(v->name, "events"))
		return usage_error("'%s' is a taskd verb; drop --server", v->name);
	r = v->fn(argc - optind, argv + optind);
	http_client_free(opt.client);
	return r;
}
