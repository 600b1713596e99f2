/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskctl — the SRE's command line for taskd (tasks on one host) and, with --server, deployd.
 *
 *   taskctl [--host URL] [--token-file F [--role R] | --token T] [--server URL]
 *           [-o table|wide|json] VERB
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

#include "agent/taskctl_events.h"
#include "agent/taskctl_token.h"
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
#define TOKEN_FILE_MAX_BYTES (1024 * 1024) /* deployd's file holds up to 256 lines */
/* events -w: how long the server may hold one long-poll, and how much longer the client waits
 * for the answer (the client's own 30 s default would end a 30 s poll before the server does) */
#define EVENTS_WAIT_S 30
#define EVENTS_SLACK_MS 15000u

#define _cleanup_json_ _cleanup_(json_decrefp)

enum output { OUT_TABLE, OUT_WIDE, OUT_JSON };

static struct {
	const char *host;
	const char *server;
	const char *token;
	const char *token_file;
	const char *role;
	enum output output;
	struct http_client *client;
} opt = { .output = OUT_TABLE };

/* "taskctl: <message><tail>" on stderr, one line. */
static void say(const char *tail, const char *fmt, va_list ap) _printf_(2, 0);
static void say(const char *tail, const char *fmt, va_list ap)
{
	fputs("taskctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(tail, stderr);
}

/* A usage error: one line, exit code 2. */
static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(" (see taskctl --help)\n", fmt, ap);
	va_end(ap);
	return EXIT_USAGE;
}

/* Any other failure: one line, exit code 1. */
static int fail(const char *fmt, ...) _printf_(1, 2);
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say("\n", fmt, ap);
	va_end(ap);
	return 1;
}

static void main_help(void)
{
	printf("Usage: taskctl [--host URL] [--token-file F [--role R] | --token T] [--server URL]\n"
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
	       "  events [-w] [--after N]      state changes (-w: keep watching, each once)\n"
	       "  put -f FILE [...]            PutTask from a JobSpec or PutTask body (alias: run)\n"
	       "\n"
	       "The cluster (deployd, with --server URL):\n"
	       "  jobs | hosts | events [-w] [--after ID] (the audit log: id, time, actor, kind)\n"
	       "  job get|stop|start REGION/ZONE/NAME | job put -f FILE REGION/ZONE/NAME\n"
	       "  pipelines [--owner O] | pipeline create -f FILE | pipeline get ID\n"
	       "  schema get ID [--version N] | schema put ID -f FILE [--if-match V]\n"
	       "  schema activate ID VERSION\n"
	       "  run ID [--commit SHA] | run cancel|retry ID RUN | runs ID\n"
	       "  watch ID RUN (exit 0 when the run FINISHED) | approve ID RUN STAGE\n"
	       "\n"
	       "Options:\n"
	       "  --host URL        taskd base URL (default %s)\n"
	       "  --token-file F    bearer token file: taskd's one token, or deployd's\n"
	       "                    '<role> <token>' lines (default %s for taskd)\n"
	       "  --role R          the role whose token to take from deployd's token file\n"
	       "                    (admin, agent, team:NAME; default: the first admin)\n"
	       "  --token T         bearer token\n"
	       "  --server URL      talk to deployd instead of taskd\n"
	       "  -o FORMAT         table (default), wide or json\n"
	       "  --help, --version\n"
	       "\n"
	       "Exit status: 0 ok, 1 error, 2 usage, 3 not found; events -w ends on Ctrl-C\n"
	       "(killed by SIGINT: 130 in the shell). `taskctl VERB --help` for a verb.\n",
	       DEFAULT_HOST, DEFAULT_HOST, DEFAULT_TOKEN_FILE);
}

/* ---------------------------------------------------------------- client */

static void wipe_token(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
}

/* The token to send: --token, or picked from the token file (taskd's or deployd's format);
 * *ret stays NULL when there is none (--server without a token). Returns an exit code. */
static int load_token(char **ret)
{
	const char *f = opt.token_file ? opt.token_file : opt.server ? NULL : DEFAULT_TOKEN_FILE;
	_cleanup_(wipe_token) char *text = NULL;
	struct cd_error err = { 0 };
	size_t len = 0;
	int r;

	if (opt.token) {
		*ret = strdup(opt.token);
		return *ret ? 0 : fail("out of memory");
	}
	if (!f)
		return opt.role ? usage_error("--role picks a token from --token-file") : 0;
	r = fs_read_file_at(AT_FDCWD, f, TOKEN_FILE_MAX_BYTES, &text, &len);
	if (r < 0) {
		if (opt.token_file || geteuid() == 0)
			return fail("cannot read token file %s: %s", f, strerror(-r));
		return fail("cannot read token file %s: %s (run as root, or pass "
			    "--token-file/--token)",
			    f, strerror(-r));
	}
	r = taskctl_token_pick(text, len, opt.role, ret, &err);
	if (r == -ENOENT || r == -EDOM)
		return usage_error("token file %s: %s", f, cd_error_message(&err));
	if (r < 0)
		return fail("token file %s: %s", f, cd_error_message(&err));
	return 0;
}

/* Open the client on first use, so usage errors are found before the token file is read. */
static int client_open(void)
{
	_cleanup_(wipe_token) char *token = NULL;
	struct http_client_config cc = { 0 };
	struct cd_error err = { 0 };
	int r;

	if (opt.client)
		return 0;
	r = load_token(&token);
	if (r)
		return r;
	cc.base_url = opt.server ? opt.server : opt.host ? opt.host : DEFAULT_HOST;
	cc.bearer_token = token;
	r = http_client_new(&cc, &opt.client, &err);
	if (r < 0)
		return fail("%s", cd_error_message(&err));
	return 0;
}

/* Print an error reply as one line; returns the exit code (3 for 404, else 1). */
static int print_problem(long status, const json_t *body)
{
	struct problem p;
	char line[1024];

	if (http_client_problem(status, body, &p) >= 0) {
		fprintf(stderr, "taskctl: %s\n",
			http_client_problem_format(&p, line, sizeof(line)));
		problem_release(&p);
	} else
		fprintf(stderr, "taskctl: HTTP %ld\n", status);
	return status == 404 ? EXIT_NOTFOUND : 1;
}

struct request {
	const char *method;
	const char *path;    /* escaped by the caller */
	const char *header;  /* one extra "Name: value" line (If-Match, Idempotency-Key), or NULL */
	const json_t *body;  /* borrowed; NULL = none */
	bool idempotent;     /* a POST that is safe to resend (it carries an idempotency key) */
	unsigned timeout_ms; /* 0 = the client's */
	/* a GET that outlives the server (events -w): when the server cannot be reached, say so
	 * once and try again every second until it can */
	bool reconnect;
};

static bool transport_lost(int r)
{
	return r == -ECONNREFUSED || r == -ECONNRESET || r == -ETIMEDOUT || r == -EHOSTUNREACH;
}

/*
 * One JSON request. A 2xx reply's body goes to *ret_body (NULL when empty; ret_body may be
 * NULL) and its status to *ret_status (may be NULL). Any other status prints the problem.
 * Returns the exit code: 0, 1, 2 (token usage) or 3 (404).
 */
static int request(const struct request *rq, json_t **ret_body, long *ret_status)
{
	_cleanup_http_response_ struct http_client_response resp = { 0 };
	_cleanup_free_ char *text = NULL;
	const char *headers[3] = { "Accept: application/json, application/problem+json", rq->header,
				   NULL };
	struct http_client_request hr = { .method = rq->method,
					  .path = rq->path,
					  .headers = headers,
					  .idempotent = rq->idempotent,
					  .timeout_ms = rq->timeout_ms };
	struct cd_error err = { 0 };
	_cleanup_json_ json_t *reply = NULL;
	int r = client_open();

	if (r)
		return r;
	if (rq->body) {
		text = json_dumps(rq->body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text)
			return fail("out of memory");
		hr.body = text;
		hr.body_len = strlen(text);
		hr.content_type = "application/json";
	}
	for (bool told = false;; told = true) {
		r = http_client_request(opt.client, &hr, &resp, &err);
		if (r >= 0)
			break;
		if (!rq->reconnect || !transport_lost(r))
			return fail("%s", cd_error_message(&err));
		if (!told)
			fprintf(stderr, "taskctl: %s; trying again every second\n",
				cd_error_message(&err));
		cd_error_reset(&err);
		clock_sleep_usec(USEC_PER_SEC);
	}
	if (resp.body_len)
		reply = json_loadb(resp.body, resp.body_len, JSON_DECODE_ANY, NULL);
	if (resp.status / 100 != 2)
		return print_problem(resp.status, reply);
	if (resp.body_len && !reply)
		return fail("%s %s: status %ld with a body that is not JSON", rq->method, rq->path,
			    resp.status);
	if (ret_status)
		*ret_status = resp.status;
	if (ret_body)
		*ret_body = TAKE_PTR(reply);
	return 0;
}

/* ---------------------------------------------------------------- output */

static const char *jstr(const json_t *o, const char *k, const char *def)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s && *s ? s : def;
}

static long long jint(const json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void print_json(const json_t *j)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;

	if (s) {
		puts(s);
		free(s);
	}
}

/* One compact line (JSON Lines: events, watch). */
static void print_json_line(const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

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

/* How a verb shows a reply when the output is not JSON; ctx is the verb's. */
typedef void (*show_fn)(const json_t *reply, const void *ctx);

/* Perform rq and print its reply: JSON with -o json or when human is NULL, else human(). */
static int show(const struct request *rq, show_fn human, const void *ctx)
{
	_cleanup_json_ json_t *reply = NULL;
	int r = request(rq, &reply, NULL);

	if (r)
		return r;
	if (opt.output == OUT_JSON || !human)
		print_json(reply);
	else
		human(reply, ctx);
	return 0;
}

static int get_show(const char *path, show_fn human, const void *ctx)
{
	const struct request rq = { .method = "GET", .path = path };

	return show(&rq, human, ctx);
}

/* "<prefix><escaped id><suffix>", the suffix printf-formatted (numbers, fixed words, strings the
 * caller escaped). NULL on ENOMEM. */
static char *path_for(const char *prefix, const char *id, const char *suffix_fmt, ...)
	_printf_(3, 4);
static char *path_for(const char *prefix, const char *id, const char *suffix_fmt, ...)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	_cleanup_free_ char *eid = http_client_escape(id);
	va_list ap;
	int r;

	if (!eid || strbuf_addf(&sb, "%s%s", prefix, eid) < 0)
		return NULL;
	va_start(ap, suffix_fmt);
	r = strbuf_vaddf(&sb, suffix_fmt, ap);
	va_end(ap);
	return r < 0 ? NULL : strbuf_detach(&sb, NULL);
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
	printf("%-28s  %-32s  %-7s  %-13s  %4s  %8lld  %5s", jstr(t, "task_id", "-"), job,
	       jstr(t, "state", "-"), jstr(t, "reason", "-"), exit_s, jint(t, "restarts"), age_s);
	if (opt.output == OUT_WIDE) {
		const json_t *pid = json_object_get(t, "pid");
		char pid_s[16] = "-";

		if (json_is_integer(pid))
			snprintf(pid_s, sizeof(pid_s), "%lld", (long long)json_integer_value(pid));
		printf("  %-7s  %7s  %s",
		       json_is_true(json_object_get(t, "healthy")) ? "yes" : "no", pid_s,
		       jstr(t, "message", ""));
	}
	putchar('\n');
}

static void show_task(const json_t *t, const void *ctx)
{
	task_header();
	task_row(t);
}

static void show_tasks(const json_t *reply, const void *ctx)
{
	const json_t *a = json_object_get(reply, "tasks");
	json_t *t;

	task_header();
	for (size_t i = 0; i < json_array_size(a) && (t = json_array_get(a, i)); i++)
		task_row(t);
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
	_cleanup_free_ char *ej = NULL;
	const char *job = NULL, *state = NULL;
	int o;

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
	if (job && !(ej = http_client_escape(job)))
		return fail("out of memory");
	if (strbuf_addf(&path, "/v1/tasks%s%s%s%s%s%s", job || state ? "?" : "", job ? "job=" : "",
			ej ? ej : "", job && state ? "&" : "", state ? "state=" : "",
			state ? state : "") < 0)
		return fail("out of memory");
	return get_show(path.buf, show_tasks, NULL);
}

static int verb_get(int argc, char **argv)
{
	_cleanup_free_ char *path = NULL;
	const char *id = NULL;
	int r = need_id(argc, argv, argv[0], &id);

	if (r)
		return r;
	path = path_for("/v1/tasks/", id, "%s", "");
	if (!path)
		return fail("out of memory");
	/* inspect: the whole object, always JSON */
	return get_show(path, streq(argv[0], "inspect") ? NULL : show_task, NULL);
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
	_cleanup_free_ char *path = NULL;
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
	path = path_for("/v1/tasks/", argv[optind], "/logs?follow=%d%s%s", follow ? 1 : 0,
			tail ? "&tail=" : "", tail ? tail : "");
	if (!path)
		return fail("out of memory");
	r = client_open();
	if (r)
		return r;
	/* streamed as it comes, not JSON: the one verb that does not go through request() */
	rq.method = "GET";
	rq.path = path;
	rq.timeout_ms = follow ? 24u * 3600 * 1000 : 0;
	rq.on_data = write_stdout;
	r = http_client_request(opt.client, &rq, &resp, &err);
	if (r < 0)
		return fail("%s", cd_error_message(&err));
	if (resp.status / 100 != 2) {
		_cleanup_json_ json_t *j = resp.body ? json_loads(resp.body, 0, NULL) : NULL;

		return print_problem(resp.status, j);
	}
	return 0;
}

static void show_task_state(const json_t *t, const void *ctx)
{
	printf("%s %s\n", (const char *)ctx, jstr(t, "state", "?"));
}

/* stop and start: SetTaskState DONE / RUNNING */
static int verb_set_state(int argc, char **argv)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = NULL;
	const char *id = NULL;
	int r = need_id(argc, argv, argv[0], &id);

	if (r)
		return r;
	path = path_for("/v1/tasks/", id, "/state");
	body = json_pack("{s:s}", "state", streq(argv[0], "stop") ? "DONE" : "RUNNING");
	if (!path || !body)
		return fail("out of memory");
	return show(&(struct request){ .method = "PUT", .path = path, .body = body },
		    show_task_state, id);
}

static void show_removed(const json_t *reply, const void *ctx)
{
	printf("%s removed\n", (const char *)ctx);
}

static int verb_rm(int argc, char **argv)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *reply = NULL;
	const char *id = NULL;
	int r = need_id(argc, argv, "rm", &id);

	if (r)
		return r;
	path = path_for("/v1/tasks/", id, "%s", "");
	if (!path)
		return fail("out of memory");
	r = request(&(struct request){ .method = "DELETE", .path = path }, &reply, NULL);
	if (!r && opt.output != OUT_JSON)
		show_removed(reply, id);
	return r;
}

/*
 * events, on taskd and on deployd (--server): every event after --after, page by page, and with
 * -w long-polls for more until interrupted. The cursor is the highest seq (taskd) or id
 * (deployd) printed, so each event prints once. Ctrl-C keeps SIGINT's default action: taskctl
 * dies of it (130 in the shell), as a caller's script expects of an interrupted command.
 */
static int verb_events(int argc, char **argv)
{
	static const struct option lo[] = { { "watch", no_argument, NULL, 'w' },
					    { "after", required_argument, NULL, 'a' },
					    {} };
	enum taskctl_events_source src = opt.server ? TASKCTL_EVENTS_DEPLOYD : TASKCTL_EVENTS_TASKD;
	uint64_t after = 0;
	bool watch = false;
	int o, r;

	optind = 1;
	while ((o = getopt_long(argc, argv, "+w", lo, NULL)) != -1) {
		if (o == 'w')
			watch = true;
		else if (o == 'a') {
			if (parse_u64(optarg, &after) < 0 || after > INT64_MAX)
				return usage_error("--after needs a non-negative integer");
		} else
			return usage_error("events: unknown option");
	}
	if (optind != argc)
		return usage_error("events takes no arguments");
	r = client_open();
	if (r)
		return r;
	if (opt.output != OUT_JSON)
		taskctl_event_header(stdout, src, opt.output == OUT_WIDE);
	for (;;) {
		_cleanup_json_ json_t *reply = NULL;
		const json_t *a;
		char path[128];
		size_t n;
		bool moved = false;
		json_t *e;

		/* deployd sends 100 a page unless asked for more; taskd up to 1000 */
		snprintf(path, sizeof(path), "/v1/events?after=%llu&wait=%d%s",
			 (unsigned long long)after, watch ? EVENTS_WAIT_S : 0,
			 src == TASKCTL_EVENTS_DEPLOYD ? "&limit=1000" : "");
		r = request(&(struct request){ .method = "GET",
					       .path = path,
					       .reconnect = watch,
					       .timeout_ms = watch ? EVENTS_WAIT_S * 1000u +
									     EVENTS_SLACK_MS :
								     0 },
			    &reply, NULL);
		if (r)
			return r;
		a = json_object_get(reply, "events");
		n = json_array_size(a);
		for (size_t i = 0; i < n && (e = json_array_get(a, i)); i++) {
			uint64_t cur = taskctl_event_cursor(src, e);

			if (cur <= after)
				continue; /* not after the cursor: printed already */
			if (opt.output == OUT_JSON)
				print_json_line(e);
			else
				taskctl_event_row(stdout, src, e, opt.output == OUT_WIDE);
			after = cur;
			moved = true;
		}
		fflush(stdout);
		if (n > 0 && !moved)
			return fail("the server's events carry no %s past %llu: is it %s?",
				    src == TASKCTL_EVENTS_DEPLOYD ? "id" : "seq",
				    (unsigned long long)after,
				    src == TASKCTL_EVENTS_DEPLOYD ? "deployd" : "taskd");
		if (n == 0 && !watch)
			return 0;
	}
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

/* The PutTask body from a file holding either a JobSpec or a whole PutTask body. */
static int put_body(const char *file, const char *job, unsigned index, json_t **ret)
{
	_cleanup_free_ char *dflt = NULL;
	json_t *doc = NULL;
	int r = read_spec_file(file, &doc);

	if (r)
		return r;
	if (json_object_get(doc, "spec")) {
		/* a PutTask body already */
		if (job && json_object_set_new(doc, "job", json_string(job)) < 0) {
			json_decref(doc);
			return fail("out of memory");
		}
		*ret = doc;
		return 0;
	}
	if (!job && asprintf(&dflt, "job://local/local-1/%s", jstr(doc, "name", "task")) < 0) {
		json_decref(doc);
		return fail("out of memory");
	}
	/* "o" takes doc's reference, also when packing fails */
	*ret = json_pack("{s:s, s:I, s:o}", "job", job ? job : dflt, "index", (json_int_t)index,
			 "spec", doc);
	return *ret ? 0 : fail("out of memory");
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
	_cleanup_json_ json_t *body = NULL, *t = NULL;
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
	r = put_body(file, job, index, &body);
	if (r)
		return r;
	if (digest) {
		_cleanup_json_ json_t *ms = json_array();

		for (size_t i = 0; i < n_mirrors; i++)
			if (!ms || json_array_append_new(ms, json_string(mirrors[i])) < 0)
				return fail("out of memory");
		if (!ms || json_object_set_new(body, "artifact",
					       json_pack("{s:s, s:O}", "digest", digest, "mirrors",
							 ms)) < 0)
			return fail("out of memory");
	}
	if (!json_object_get(body, "request_id")) {
		/* one id per invocation: the client's retries of this PUT are idempotent */
		if (!req) {
			id_new(idbuf);
			req = idbuf;
		}
		if (json_object_set_new(body, "request_id", json_string(req)) < 0)
			return fail("out of memory");
	}
	r = request(&(struct request){ .method = "PUT", .path = "/v1/tasks", .body = body }, &t,
		    &status);
	if (r)
		return r;
	if (opt.output == OUT_JSON)
		print_json(t);
	else
		printf("%s %s\n", jstr(t, "task_id", "?"), status == 201 ? "created" : "exists");
	return 0;
}

/* ---- deployd verbs (--server) ---- */

static int verb_jobs(int argc, char **argv)
{
	if (argc != 1)
		return usage_error("%s takes no arguments", argv[0]);
	/* JSON whatever -o says: the completion and scripts read it */
	return get_show(streq(argv[0], "jobs") ? "/v1/jobs" : "/v1/hosts", NULL, NULL);
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
	_cleanup_json_ json_t *body = NULL;
	const char *sub = argc >= 2 ? argv[1] : "", *job;
	char path[512];
	int r;

	if (argc == 3 && (streq(sub, "get") || streq(sub, "stop") || streq(sub, "start")))
		job = argv[2];
	else if (argc == 5 && streq(sub, "put") && streq(argv[2], "-f"))
		job = argv[4];
	else
		return usage_error("usage: job get|stop|start REGION/ZONE/NAME | job put -f FILE "
				   "REGION/ZONE/NAME");
	if (!job_path_valid(job))
		return usage_error("'%s' is not REGION/ZONE/NAME", job);
	snprintf(path, sizeof(path), "/v1/jobs/%s%s", job, streq(sub, "put") ? "" : "/state");
	if (streq(sub, "get"))
		return get_show(path, NULL, NULL);
	if (streq(sub, "put")) {
		r = read_spec_file(argv[3], &body);
		if (r)
			return r;
	} else if (!(body = json_pack("{s:s}", "state", streq(sub, "stop") ? "DONE" : "RUNNING")))
		return fail("out of memory");
	return show(&(struct request){ .method = "PUT", .path = path, .body = body }, NULL, NULL);
}

/* ---- pipelines (deployd, --server) ---- */

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

/* "ID RUN" arguments: checked, the run number in *ret_run. */
static int need_pipeline_run(const char *id, const char *run, uint64_t *ret_run)
{
	int r = need_pipeline_id(id);

	return r ? r : need_run_number(run, ret_run);
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
	       jstr(p, "name", "-"), jstr(p, "owner", "-"), jint(p, "active_version"),
	       jint(p, "latest_version"), age_s);
	if (opt.output == OUT_WIDE)
		printf("  %s %s", jstr(p, "repo", "-"), jstr(p, "branch", ""));
	putchar('\n');
}

static void show_pipeline(const json_t *p, const void *ctx)
{
	pipeline_header();
	pipeline_row(p);
}

static int verb_pipelines(int argc, char **argv)
{
	static const struct option lo[] = { { "owner", required_argument, NULL, 'O' }, {} };
	_cleanup_free_ char *eowner = NULL, *token = NULL;
	_cleanup_json_ json_t *all = NULL;
	const char *owner = NULL;
	json_t *p;
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
	if (owner && !(eowner = http_client_escape(owner)))
		return fail("out of memory");
	all = json_array();
	if (!all)
		return fail("out of memory");
	/* every page */
	do {
		_cleanup_strbuf_ struct strbuf path = STRBUF_INIT;
		_cleanup_json_ json_t *reply = NULL;
		const char *next;

		if (strbuf_addf(&path, "/v1/pipelines?page_size=100%s%s%s%s",
				owner ? "&owner=" : "", owner ? eowner : "",
				token ? "&page_token=" : "", token ? token : "") < 0)
			return fail("out of memory");
		r = request(&(struct request){ .method = "GET", .path = path.buf }, &reply, NULL);
		if (r)
			return r;
		if (json_array_extend(all, json_object_get(reply, "pipelines")) < 0 &&
		    json_object_get(reply, "pipelines"))
			return fail("out of memory");
		free(TAKE_PTR(token));
		next = json_string_value(json_object_get(reply, "next_page_token"));
		if (next && !(token = http_client_escape(next)))
			return fail("out of memory");
	} while (token);
	if (opt.output == OUT_JSON) {
		print_json(all);
		return 0;
	}
	pipeline_header();
	for (size_t i = 0; i < json_array_size(all) && (p = json_array_get(all, i)); i++)
		pipeline_row(p);
	return 0;
}

static void show_created(const json_t *reply, const void *ctx)
{
	printf("%s created\n", jstr(reply, "pipeline_id", "?"));
}

static int verb_pipeline(int argc, char **argv)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *doc = NULL;
	const char *sub = argc >= 2 ? argv[1] : "";
	int r;

	if (streq(sub, "create")) {
		if (argc != 4 || (!streq(argv[2], "-f") && !streq(argv[2], "--file")))
			return usage_error("usage: pipeline create -f FILE");
		r = read_spec_file(argv[3], &doc);
		if (r)
			return r;
		return show(
			&(struct request){ .method = "POST", .path = "/v1/pipelines", .body = doc },
			show_created, NULL);
	}
	if (!streq(sub, "get"))
		return usage_error("usage: pipeline create -f FILE | pipeline get ID");
	if (argc != 3)
		return usage_error("usage: pipeline get ID");
	r = need_pipeline_id(argv[2]);
	if (r)
		return r;
	path = path_for("/v1/pipelines/", argv[2], "%s", "");
	if (!path)
		return fail("out of memory");
	return get_show(path, show_pipeline, NULL);
}

static void show_schema(const json_t *reply, const void *ctx)
{
	printf("# pipeline %s, schema version %lld (%s), latest %lld\n",
	       jstr(reply, "pipeline_id", "?"), jint(reply, "version"), jstr(reply, "state", "?"),
	       jint(reply, "latest_version"));
	print_json(json_object_get(reply, "schema"));
}

static void show_schema_put(const json_t *reply, const void *ctx)
{
	printf("%s schema version %lld (%s)\n", jstr(reply, "pipeline_id", "?"),
	       jint(reply, "version"), jstr(reply, "state", "?"));
}

static void show_activated(const json_t *reply, const void *ctx)
{
	const char *const *args = ctx; /* ID VERSION */

	printf("%s schema version %s active\n", args[0], args[1]);
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
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *doc = NULL;
	char hdr[64];
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
	if (streq(sub, "get")) {
		if (optind + 1 != argc)
			return usage_error("schema get takes one pipeline ID");
		path = version ? path_for("/v1/pipelines/", argv[optind], "/schema?version=%llu",
					  (unsigned long long)version) :
				 path_for("/v1/pipelines/", argv[optind], "/schema");
		if (!path)
			return fail("out of memory");
		return get_show(path, show_schema, NULL);
	}
	if (streq(sub, "put")) {
		if (!file)
			return usage_error("schema put needs -f FILE");
		if (optind + 1 != argc)
			return usage_error("schema put takes one pipeline ID");
		r = read_spec_file(file, &doc);
		if (r)
			return r;
		snprintf(hdr, sizeof(hdr), "If-Match: \"%llu\"", (unsigned long long)if_match);
		path = path_for("/v1/pipelines/", argv[optind], "/schema");
		if (!path)
			return fail("out of memory");
		/* with If-Match a resend is safe: a stale version gets 412, not a second draft */
		return show(&(struct request){ .method = "PUT",
					       .path = path,
					       .header = if_match ? hdr : NULL,
					       .body = doc,
					       .idempotent = if_match != 0 },
			    show_schema_put, NULL);
	}
	/* activate ID VERSION */
	if (optind + 2 != argc)
		return usage_error("usage: schema activate ID VERSION");
	if (parse_u64(argv[optind + 1], &version) < 0 || !version)
		return usage_error("'%s' is not a schema version", argv[optind + 1]);
	path = path_for("/v1/pipelines/", argv[optind], "/schema/%llu/activate",
			(unsigned long long)version);
	if (!path)
		return fail("out of memory");
	return show(&(struct request){ .method = "POST", .path = path, .idempotent = true },
		    show_activated, (const char *const[]){ argv[optind], argv[optind + 1] });
}

static bool run_final(const char *state)
{
	return streq(state, "FINISHED") || streq(state, "ERROR") || streq(state, "CANCELLED") ||
	       streq(state, "SUPERSEDED");
}

static void show_runs(const json_t *reply, const void *ctx)
{
	const json_t *runs = json_object_get(reply, "runs");
	char age_s[16];
	json_t *run;

	printf("%5s  %-12s  %-11s  %7s  %-8s  %5s  %s\n", "RUN", "COMMIT", "STATE", "ATTEMPT",
	       "TRIGGER", "AGE", opt.output == OUT_WIDE ? "MESSAGE" : "");
	for (size_t i = 0; i < json_array_size(runs) && (run = json_array_get(runs, i)); i++) {
		age(jstr(run, "created_at", NULL), age_s, sizeof(age_s));
		printf("%5lld  %-12.12s  %-11s  %7lld  %-8s  %5s  %s\n", jint(run, "run"),
		       jstr(run, "commit", "-"), jstr(run, "state", "-"), jint(run, "attempt"),
		       jstr(run, "trigger", "-"), age_s,
		       opt.output == OUT_WIDE ? jstr(run, "error_message", "") : "");
	}
}

static void stage_table(const json_t *run)
{
	const json_t *stages = json_object_get(run, "stages");
	json_t *sg;

	printf("run %lld  commit %.12s  %s  attempt %lld\n", jint(run, "run"),
	       jstr(run, "commit", "-"), jstr(run, "state", "-"), jint(run, "attempt"));
	printf("  %-24s  %-8s  %-11s  %7s  %s\n", "STAGE", "TYPE", "STATE", "ATTEMPT", "MESSAGE");
	for (size_t i = 0; i < json_array_size(stages) && (sg = json_array_get(stages, i)); i++)
		printf("  %-24s  %-8s  %-11s  %7lld  %s\n", jstr(sg, "name", "-"),
		       jstr(sg, "type", "-"), jstr(sg, "state", "-"), jint(sg, "attempt"),
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

/* What the run verbs print: "ID run N: <done>" */
struct run_note {
	const char *id;
	uint64_t run;
	const char *done;
};

static void show_run_note(const json_t *reply, const void *ctx)
{
	const struct run_note *n = ctx;

	printf("%s run %llu: %s\n", n->id, (unsigned long long)n->run, n->done);
}

/* run cancel|retry ID RUN */
static int run_action(int argc, char **argv)
{
	const char *what = argv[1];
	_cleanup_free_ char *path = NULL;
	uint64_t n;
	int r;

	if (argc != 4)
		return usage_error("usage: run %s ID RUN", what);
	r = need_pipeline_run(argv[2], argv[3], &n);
	if (r)
		return r;
	path = path_for("/v1/pipelines/", argv[2], "/runs/%llu/%s", (unsigned long long)n, what);
	if (!path)
		return fail("out of memory");
	return show(&(struct request){ .method = "POST", .path = path }, show_run_note,
		    &(struct run_note){ argv[2], n,
					streq(what, "cancel") ? "cancelled" :
								"retrying the failed stages" });
}

static void show_run_started(const json_t *reply, const void *ctx)
{
	const char *const *args = ctx; /* ID COMMIT */

	printf("%s run %lld %s (commit %.12s)\n", args[0], jint(reply, "run"),
	       jstr(reply, "state", "?"), args[1]);
}

static int verb_prun(int argc, char **argv)
{
	static const struct option lo[] = { { "commit", required_argument, NULL, 'c' }, {} };
	const char *commit = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = NULL;
	char head[128], key[ID_LEN + 1], hdr[ID_LEN + 64];
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
	/* one key per invocation: the client's retries of this POST make no second run */
	id_new(key);
	snprintf(hdr, sizeof(hdr), "Idempotency-Key: taskctl-%s", key);
	path = path_for("/v1/pipelines/", argv[optind], "/runs");
	body = json_pack("{s:s}", "commit", commit);
	if (!path || !body)
		return fail("out of memory");
	return show(&(struct request){ .method = "POST",
				       .path = path,
				       .header = hdr,
				       .body = body,
				       .idempotent = true },
		    show_run_started, (const char *const[]){ argv[optind], commit });
}

static int verb_runs(int argc, char **argv)
{
	_cleanup_free_ char *path = NULL;
	int r;

	if (argc != 2)
		return usage_error("usage: runs ID");
	r = need_pipeline_id(argv[1]);
	if (r)
		return r;
	path = path_for("/v1/pipelines/", argv[1], "/runs");
	if (!path)
		return fail("out of memory");
	return get_show(path, show_runs, NULL);
}

/* What a watcher sees of a run, to tell a change: the run's and every stage's state, attempt
 * and message, as compact JSON. NULL on ENOMEM. */
static char *run_view(const json_t *run)
{
	_cleanup_json_ json_t *view = json_pack("{s:O?, s:O?, s:[]}", "state",
						json_object_get(run, "state"), "attempt",
						json_object_get(run, "attempt"), "stages");
	const json_t *stages = json_object_get(run, "stages");
	json_t *sg;

	if (!view)
		return NULL;
	for (size_t i = 0; i < json_array_size(stages) && (sg = json_array_get(stages, i)); i++)
		if (json_array_append_new(json_object_get(view, "stages"),
					  json_pack("{s:O?, s:O?, s:O?, s:O?}", "name",
						    json_object_get(sg, "name"), "state",
						    json_object_get(sg, "state"), "attempt",
						    json_object_get(sg, "attempt"), "error_message",
						    json_object_get(sg, "error_message"))) < 0)
			return NULL;
	return json_dumps(view, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Live view of a run's stages until it ends: 0 when it FINISHED, 1 otherwise. */
static int verb_watch(int argc, char **argv)
{
	_cleanup_free_ char *path = NULL, *last = NULL;
	uint64_t n;
	int r;

	if (argc != 3)
		return usage_error("usage: watch ID RUN");
	r = need_pipeline_run(argv[1], argv[2], &n);
	if (r)
		return r;
	path = path_for("/v1/pipelines/", argv[1], "/runs/%llu", (unsigned long long)n);
	if (!path)
		return fail("out of memory");
	for (;;) {
		_cleanup_json_ json_t *run = NULL;
		_cleanup_free_ char *now = NULL;
		const char *state;

		r = request(&(struct request){ .method = "GET", .path = path }, &run, NULL);
		if (r)
			return r;
		now = run_view(run);
		if (!now)
			return fail("out of memory");
		if (!last || !streq(now, last)) {
			if (opt.output == OUT_JSON)
				print_json_line(run);
			else
				stage_table(run);
			fflush(stdout);
			free(last);
			last = TAKE_PTR(now);
		}
		state = jstr(run, "state", "");
		if (run_final(state))
			return streq(state, "FINISHED") ? 0 : 1;
		clock_sleep_usec(USEC_PER_SEC);
	}
}

static int verb_approve(int argc, char **argv)
{
	_cleanup_free_ char *estage = NULL, *path = NULL;
	char done[320];
	uint64_t n;
	int r;

	if (argc != 4)
		return usage_error("usage: approve ID RUN STAGE");
	r = need_pipeline_run(argv[1], argv[2], &n);
	if (r)
		return r;
	estage = http_client_escape(argv[3]);
	if (estage)
		path = path_for("/v1/pipelines/", argv[1], "/runs/%llu/stages/%s/approve",
				(unsigned long long)n, estage);
	if (!path)
		return fail("out of memory");
	snprintf(done, sizeof(done), "stage %s approved", argv[3]);
	return show(&(struct request){ .method = "POST", .path = path }, show_run_note,
		    &(struct run_note){ argv[1], n, done });
}

static const struct verb verbs[] = {
	{ "ps", "ps [--job URL] [--state PENDING|RUNNING|DONE|ERROR]", verb_ps, false },
	{ "get", "get ID", verb_get, false },
	{ "inspect", "inspect ID", verb_get, false },
	{ "logs", "logs [-f|--follow] [--tail N] ID", verb_logs, false },
	{ "stop", "stop ID", verb_set_state, false },
	{ "start", "start ID", verb_set_state, false },
	{ "rm", "rm ID", verb_rm, false },
	{ "events", "events [-w|--watch] [--after N] (with --server: deployd's audit log)",
	  verb_events, false },
	{ "put",
	  "put -f FILE|- [--job job://R/Z/NAME] [--index N] [--digest sha256:HEX --mirror URL...] "
	  "[--request-id ID]",
	  verb_put, false },
	{ "run", "run -f FILE ... (same as put)", verb_put, false },
	{ "jobs", "jobs (with --server)", verb_jobs, true },
	{ "job",
	  "job get|stop|start REGION/ZONE/NAME | job put -f FILE REGION/ZONE/NAME (with --server)",
	  verb_job, true },
	{ "hosts", "hosts (with --server)", verb_jobs, true },
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
		{ "role", required_argument, NULL, 'R' },
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
		case 'R':
			if (!*optarg || optarg[strcspn(optarg, " \t\r\n#")])
				return usage_error("--role needs a role name (admin, agent, "
						   "team:NAME)");
			opt.role = optarg;
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
	if (opt.token && opt.role)
		return usage_error("--role picks a token from --token-file, not --token");
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
