/* SPDX-License-Identifier: Apache-2.0 */
#include "central/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/names.h"
#include "central/pipeline_run.h"
#include "lib/fs.h"
#include "lib/macro.h"
#include "lib/str.h"

static int set_string(char **dst, const char *v)
{
	char *n = strdup(v);

	if (!n)
		return -ENOMEM;
	free(*dst);
	*dst = n;
	return 0;
}

int deployd_config_init(struct deployd_config *c)
{
	memset(c, 0, sizeof(*c));
	c->roles = DEPLOYD_ROLE_ALL;
	c->threads = 32;
	c->max_body_bytes = 1024 * 1024;
	c->heartbeat_interval_s = 5;
	c->lost_after = 3;
	c->progress_deadline_s = 300;
	c->max_slot_failures = 3;
	c->tick_interval_ms = 1000;
	c->push_timeout_ms = 5000;
	c->cas_max_bytes = 10ull << 30;
	c->cas_max_blob_bytes = 2ull << 30;
	c->cas_public_read = true;
	c->cas_evict = true;
	c->pipelines_runners = 2;
	c->pipelines_poll_interval_s = 30;
	c->pipelines_lease_s = 30;
	c->events_retention_days = 90;
	c->pipelines_dag_cache_dags = DAG_CACHE_DEFAULT_CAPACITY;
	c->pipelines_dag_cache_stages = DAG_CACHE_DEFAULT_MAX_NODES;
	c->pipelines_sandbox_builds = -1;
	if (set_string(&c->region, DEPLOYD_DEFAULT_REGION) < 0 ||
	    set_string(&c->zone, DEPLOYD_DEFAULT_ZONE) < 0 ||
	    set_string(&c->state_dir, DEPLOYD_DEFAULT_STATE_DIR) < 0 ||
	    set_string(&c->listen, DEPLOYD_DEFAULT_LISTEN) < 0 ||
	    set_string(&c->log_level, "info") < 0) {
		deployd_config_release(c);
		return -ENOMEM;
	}
	return 0;
}

void deployd_config_release(struct deployd_config *c)
{
	free(c->config_file);
	free(c->region);
	free(c->zone);
	free(c->state_dir);
	free(c->listen);
	free(c->token_file);
	free(c->db);
	free(c->log_level);
	free(c->advertise_url);
	free(c->artifact_mirrors);
	free(c->cas_dir);
	for (size_t i = 0; i < c->n_pipelines_zones; i++) {
		free(c->pipelines_zones[i].zone);
		free(c->pipelines_zones[i].region);
		free(c->pipelines_zones[i].url);
		free(c->pipelines_zones[i].token_file);
	}
	free(c->pipelines_zones);
	free(c->pipelines_artifacts_url);
	free(c->pipelines_bazel_path);
	free(c->pipelines_artifacts_token_file);
	memset(c, 0, sizeof(*c));
}

int deployd_roles_parse(const char *s, unsigned *ret, struct cd_error *err)
{
	_cleanup_free_ char *copy = strdup(s);
	unsigned roles = 0;
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (streq(t, "all"))
			roles |= DEPLOYD_ROLE_ALL;
		else if (streq(t, "pipelines"))
			roles |= DEPLOYD_ROLE_PIPELINES;
		else if (streq(t, "artifacts"))
			roles |= DEPLOYD_ROLE_ARTIFACTS;
		else if (streq(t, "builder"))
			roles |= DEPLOYD_ROLE_BUILDER;
		else if (streq(t, "cluster"))
			roles |= DEPLOYD_ROLE_CLUSTER;
		else
			return cd_error_set(
				err, -EINVAL,
				"unknown role '%s' (all, pipelines, artifacts, builder, "
				"cluster)",
				t);
	}
	if (!roles)
		return cd_error_set(err, -EINVAL, "empty role list");
	*ret = roles;
	return 0;
}

static int parse_bool(const char *v, bool *ret)
{
	if (streq(v, "true") || streq(v, "yes") || streq(v, "1"))
		*ret = true;
	else if (streq(v, "false") || streq(v, "no") || streq(v, "0"))
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

/* "10G", "512M", "4096" (bytes) */
static int parse_size(const char *v, uint64_t *ret)
{
	char num[32];
	size_t n = strlen(v);
	uint64_t mul = 1, x;

	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, v, n + 1);
	switch (num[n - 1]) {
	case 'K':
	case 'k':
		mul = 1ull << 10;
		break;
	case 'M':
	case 'm':
		mul = 1ull << 20;
		break;
	case 'G':
	case 'g':
		mul = 1ull << 30;
		break;
	case 'T':
	case 't':
		mul = 1ull << 40;
		break;
	default:
		break;
	}
	if (mul != 1)
		num[n - 1] = '\0';
	if (parse_u64(num, &x) < 0 || (x && UINT64_MAX / x < mul))
		return -EINVAL;
	*ret = x * mul;
	return 0;
}

struct key_uint {
	const char *key;
	size_t offset;
	unsigned min, max;
};

static const struct key_uint uint_keys[] = {
	{ "threads", offsetof(struct deployd_config, threads), 2, 1024 },
	{ "heartbeat_interval_s", offsetof(struct deployd_config, heartbeat_interval_s), 1, 3600 },
	{ "lost_after", offsetof(struct deployd_config, lost_after), 1, 1000 },
	{ "progress_deadline_s", offsetof(struct deployd_config, progress_deadline_s), 1, 86400 },
	{ "max_slot_failures", offsetof(struct deployd_config, max_slot_failures), 1, 1000 },
	{ "tick_interval_ms", offsetof(struct deployd_config, tick_interval_ms), 10, 60000 },
	{ "push_timeout_ms", offsetof(struct deployd_config, push_timeout_ms), 100, 600000 },
	{ "pipelines_runners", offsetof(struct deployd_config, pipelines_runners), 1, 64 },
	{ "pipelines_poll_interval_s", offsetof(struct deployd_config, pipelines_poll_interval_s),
	  1, 86400 },
	{ "pipelines_lease_s", offsetof(struct deployd_config, pipelines_lease_s), 1, 3600 },
	/* A planned stage takes about 1 KB: 10,000,000 stages is about 10 GB. */
	{ "pipelines_dag_cache_dags", offsetof(struct deployd_config, pipelines_dag_cache_dags), 1,
	  4096 },
	{ "pipelines_dag_cache_stages", offsetof(struct deployd_config, pipelines_dag_cache_stages),
	  1, 10000000 },
	{ "events_retention_days", offsetof(struct deployd_config, events_retention_days), 0,
	  36500 },
};

/* "ZONE REGION URL TOKEN_FILE", appended to c->pipelines_zones. */
static int add_pipelines_zone(struct deployd_config *c, const char *value, struct cd_error *err)
{
	_cleanup_free_ char *copy = strdup(value);
	struct deployd_pipelines_zone *v, *z;
	struct cd_error e = {};
	char *f[4], *save = NULL;
	size_t n = 0;

	if (!copy)
		return cd_error_set(err, -ENOMEM, "out of memory");
	for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (n == ARRAY_SIZE(f))
			return cd_error_set(err, -EINVAL,
					    "pipelines_zone: expected ZONE REGION URL TOKEN_FILE, "
					    "got more");
		f[n++] = t;
	}
	if (n != ARRAY_SIZE(f))
		return cd_error_set(err, -EINVAL,
				    "pipelines_zone: expected ZONE REGION URL TOKEN_FILE");
	if (dns_label_check(f[1], "region", &e) < 0 || zone_check(f[1], f[0], &e) < 0)
		return cd_error_set(err, -EINVAL, "pipelines_zone: %s", cd_error_message(&e));
	if (!startswith(f[2], "http://") || !f[2][strlen("http://")])
		return cd_error_set(err, -EINVAL, "pipelines_zone: URL must start with http://");
	if (f[3][0] != '/')
		return cd_error_set(err, -EINVAL,
				    "pipelines_zone: TOKEN_FILE must be an absolute path");
	for (size_t i = 0; i < c->n_pipelines_zones; i++)
		if (streq(c->pipelines_zones[i].zone, f[0]))
			return cd_error_set(err, -EINVAL, "pipelines_zone: zone %s is given twice",
					    f[0]);
	if (c->n_pipelines_zones >= DEPLOYD_PIPELINES_MAX_ZONES)
		return cd_error_set(err, -EINVAL, "pipelines_zone: more than %d zones",
				    DEPLOYD_PIPELINES_MAX_ZONES);
	v = reallocarray(c->pipelines_zones, c->n_pipelines_zones + 1, sizeof(*v));
	if (!v)
		return cd_error_set(err, -ENOMEM, "out of memory");
	c->pipelines_zones = v;
	z = &v[c->n_pipelines_zones];
	*z = (struct deployd_pipelines_zone){ .zone = strdup(f[0]),
					      .region = strdup(f[1]),
					      .url = strdup(f[2]),
					      .token_file = strdup(f[3]) };
	if (!z->zone || !z->region || !z->url || !z->token_file) {
		free(z->zone);
		free(z->region);
		free(z->url);
		free(z->token_file);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	c->n_pipelines_zones++;
	return 0;
}

int deployd_config_set(struct deployd_config *c, const char *key, const char *value,
		       struct cd_error *err)
{
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(uint_keys); i++)
		if (streq(key, uint_keys[i].key)) {
			unsigned v;

			if (parse_uint(value, uint_keys[i].max, &v) < 0 || v < uint_keys[i].min)
				return cd_error_set(err, -EINVAL, "%s: must be an integer %u..%u",
						    key, uint_keys[i].min, uint_keys[i].max);
			*(unsigned *)((char *)c + uint_keys[i].offset) = v;
			return 0;
		}
	if (streq(key, "role"))
		return deployd_roles_parse(value, &c->roles, err);
	if (streq(key, "region"))
		r = set_string(&c->region, value);
	else if (streq(key, "zone"))
		r = set_string(&c->zone, value);
	else if (streq(key, "state_dir"))
		r = set_string(&c->state_dir, value);
	else if (streq(key, "listen"))
		r = set_string(&c->listen, value);
	else if (streq(key, "token_file")) {
		r = set_string(&c->token_file, value);
		c->token_file_explicit = true;
	} else if (streq(key, "db"))
		r = set_string(&c->db, value);
	else if (streq(key, "log_level")) {
		if (!streq(value, "debug") && !streq(value, "info") && !streq(value, "warn") &&
		    !streq(value, "error"))
			return cd_error_set(err, -EINVAL, "log_level: debug, info, warn or error");
		r = set_string(&c->log_level, value);
	} else if (streq(key, "advertise_url")) {
		if (!startswith(value, "http://"))
			return cd_error_set(err, -EINVAL, "advertise_url: must start with http://");
		r = set_string(&c->advertise_url, value);
	} else if (streq(key, "artifact_mirrors"))
		r = set_string(&c->artifact_mirrors, value);
	else if (streq(key, "pipelines_zone"))
		return add_pipelines_zone(c, value, err);
	else if (streq(key, "pipelines_artifacts_url")) {
		if (!startswith(value, "http://"))
			return cd_error_set(err, -EINVAL,
					    "pipelines_artifacts_url: must start with http://");
		r = set_string(&c->pipelines_artifacts_url, value);
	} else if (streq(key, "pipelines_artifacts_token_file")) {
		if (value[0] != '/')
			return cd_error_set(
				err, -EINVAL,
				"pipelines_artifacts_token_file: must be an absolute path");
		r = set_string(&c->pipelines_artifacts_token_file, value);
	} else if (streq(key, "pipelines_bazel_path")) {
		if (!*value || strchr(value, ' '))
			return cd_error_set(err, -EINVAL,
					    "pipelines_bazel_path: a path or a command name");
		r = set_string(&c->pipelines_bazel_path, value);
	} else if (streq(key, "pipelines_sandbox_builds")) {
		bool b;

		if (parse_bool(value, &b) < 0)
			return cd_error_set(err, -EINVAL, "%s: must be true or false", key);
		c->pipelines_sandbox_builds = b;
	} else if (streq(key, "cas_dir"))
		r = set_string(&c->cas_dir, value);
	else if (streq(key, "require_if_match") || streq(key, "cas_public_read") ||
		 streq(key, "cas_evict")) {
		bool b;

		if (parse_bool(value, &b) < 0)
			return cd_error_set(err, -EINVAL, "%s: must be true or false", key);
		if (streq(key, "require_if_match"))
			c->require_if_match = b;
		else if (streq(key, "cas_public_read"))
			c->cas_public_read = b;
		else
			c->cas_evict = b;
	} else if (streq(key, "pipelines_build_memory") || streq(key, "pipelines_build_storage")) {
		uint64_t v;

		/* 64M: below that not even make and a compiler run */
		if (parse_size(value, &v) < 0 || v < (UINT64_C(64) << 20))
			return cd_error_set(err, -EINVAL, "%s: must be a size of at least 64M",
					    key);
		if (streq(key, "pipelines_build_memory"))
			c->pipelines_build_memory_bytes = v;
		else
			c->pipelines_build_storage_bytes = v;
	} else if (streq(key, "cas_max_bytes") || streq(key, "cas_max_blob_bytes") ||
		   streq(key, "max_body_bytes")) {
		uint64_t v;

		if (parse_size(value, &v) < 0 || v == 0)
			return cd_error_set(err, -EINVAL, "%s: must be a size like 4096, 512M, 10G",
					    key);
		if (streq(key, "cas_max_bytes"))
			c->cas_max_bytes = v;
		else if (streq(key, "cas_max_blob_bytes"))
			c->cas_max_blob_bytes = v;
		else
			c->max_body_bytes = v;
	} else
		return cd_error_set(err, -EINVAL, "unknown key '%s'", key);
	return r < 0 ? cd_error_set(err, r, "out of memory") : 0;
}

static char *strip(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int deployd_config_parse_text(struct deployd_config *c, const char *name, const char *text,
			      struct cd_error *err)
{
	_cleanup_free_ char *copy = strdup(text);
	char *save = NULL;
	unsigned lineno = 0;
	char *line, *rest;

	if (!copy)
		return -ENOMEM;
	/* strtok_r would skip empty lines and lose the line numbers: walk by hand. */
	for (line = copy; line; line = rest) {
		struct cd_error e = {};
		char *eq, *key, *value;
		int r;

		rest = strchr(line, '\n');
		if (rest)
			*rest++ = '\0';
		lineno++;
		if (strchr(line, '#'))
			*strchr(line, '#') = '\0';
		line = strip(line);
		if (!*line)
			continue;
		eq = strchr(line, '=');
		if (!eq)
			return cd_error_set(err, -EINVAL, "%s:%u: expected 'key = value'", name,
					    lineno);
		*eq = '\0';
		key = strip(line);
		value = strip(eq + 1);
		r = deployd_config_set(c, key, value, &e);
		if (r < 0)
			return cd_error_set(err, r, "%s:%u: %s", name, lineno,
					    cd_error_message(&e));
	}
	(void)save;
	return 0;
}

int deployd_config_load(struct deployd_config *c, const char *path, struct cd_error *err)
{
	_cleanup_free_ char *text = NULL;
	int r;

	r = fs_read_file_at(AT_FDCWD, path, 1 << 20, &text, NULL);
	if (r == -ENOENT)
		return r;
	if (r < 0)
		return cd_error_set(err, r, "%s: %s", path, strerror(-r));
	r = deployd_config_parse_text(c, path, text, err);
	if (r < 0)
		return r;
	return set_string(&c->config_file, path);
}

/* Keys of the old <state_dir>/pipelines.conf ("key args" lines); each is pipelines_<key> in
 * deployd.conf now. */
static const char *const legacy_pipelines_keys[] = {
	"zone",	   "artifacts_url",   "artifacts_token_file", "runners",
	"lease_s", "poll_interval_s", "sandbox_builds",
};

int deployd_config_check_legacy(const struct deployd_config *c, struct cd_error *err)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	_cleanup_strbuf_ struct strbuf keys = STRBUF_INIT;
	bool seen[ARRAY_SIZE(legacy_pipelines_keys)] = {};
	char *save = NULL;
	int r;

	if (!(c->roles & (DEPLOYD_ROLE_PIPELINES | DEPLOYD_ROLE_BUILDER)))
		return 0;
	if (asprintf(&path, "%s/pipelines.conf", c->state_dir) < 0) {
		path = NULL;
		return -ENOMEM;
	}
	r = fs_read_file_at(AT_FDCWD, path, 1 << 20, &text, NULL);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return cd_error_set(err, -EEXIST,
				    "%s: no longer read, and unreadable (%s): remove it", path,
				    strerror(-r));
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t n;

		line += strspn(line, " \t");
		n = strcspn(line, " \t#");
		for (size_t i = 0; n && i < ARRAY_SIZE(legacy_pipelines_keys); i++)
			if (strlen(legacy_pipelines_keys[i]) == n &&
			    !strncmp(line, legacy_pipelines_keys[i], n))
				seen[i] = true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(seen); i++)
		if (seen[i] && strbuf_addf(&keys, "%spipelines_%s", keys.len ? ", " : "",
					   legacy_pipelines_keys[i]) < 0)
			return -ENOMEM;
	if (!keys.len)
		return cd_error_set(err, -EEXIST,
				    "%s is no longer read and sets nothing: remove it", path);
	return cd_error_set(err, -EEXIST,
			    "%s is no longer read: write each line \"KEY ARGS\" into %s as "
			    "\"pipelines_KEY = ARGS\" (here: %s; see deployd.conf(5)), then remove "
			    "it",
			    path, c->config_file ? c->config_file : DEPLOYD_DEFAULT_CONFIG,
			    keys.buf);
}

static bool listen_is_loopback(const char *listen)
{
	char host[64];
	const char *colon = strrchr(listen, ':');
	struct in_addr a;

	if (!colon || (size_t)(colon - listen) >= sizeof(host))
		return false;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (inet_pton(AF_INET, host, &a) != 1)
		return streq(host, "localhost");
	return (ntohl(a.s_addr) >> 24) == 127;
}

int deployd_config_validate(const struct deployd_config *c, struct cd_error *err)
{
	const char *colon = strrchr(c->listen, ':');
	unsigned port;

	if (!colon || colon == c->listen || parse_uint(colon + 1, 65535, &port) < 0)
		return cd_error_set(err, -EINVAL, "--listen: expected ADDR:PORT, got '%s'",
				    c->listen);
	if (c->roles & DEPLOYD_ROLE_CLUSTER) {
		struct cd_error e = {};

		if (dns_label_check(c->region, "region", &e) < 0 ||
		    zone_check(c->region, c->zone, &e) < 0)
			return cd_error_set(err, -EINVAL, "%s", cd_error_message(&e));
	}
	if (c->insecure_no_auth && !listen_is_loopback(c->listen))
		return cd_error_set(err, -EINVAL,
				    "--insecure-no-auth is only allowed with a loopback --listen");
	if (!listen_is_loopback(c->listen) && !c->token_file_explicit && !c->insecure_no_auth)
		return cd_error_set(err, -EINVAL,
				    "listening on %s (not loopback) needs an explicit --token-file",
				    c->listen);
	return 0;
}

int deployd_config_from_args(struct deployd_config *c, int argc, char **argv,
			     enum deployd_action *ret_action, struct cd_error *err)
{
	enum {
		OPT_ROLE = 0x100,
		OPT_REGION,
		OPT_ZONE,
		OPT_STATE_DIR,
		OPT_LISTEN,
		OPT_TOKEN_FILE,
		OPT_DB,
		OPT_INSECURE,
		OPT_LOG_LEVEL,
		OPT_CONFIG,
		OPT_HELP,
		OPT_VERSION,
	};
	static const struct option opts[] = {
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "role", required_argument, NULL, OPT_ROLE },
		{ "region", required_argument, NULL, OPT_REGION },
		{ "zone", required_argument, NULL, OPT_ZONE },
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "db", required_argument, NULL, OPT_DB },
		{ "insecure-no-auth", no_argument, NULL, OPT_INSECURE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{},
	};
	const char *config = NULL;
	int opt, r;

	*ret_action = DEPLOYD_RUN;
	/* Pass 1: --config, --help, --version and unknown options. */
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_CONFIG:
			config = optarg;
			break;
		case OPT_HELP:
			*ret_action = DEPLOYD_HELP;
			return 0;
		case OPT_VERSION:
			*ret_action = DEPLOYD_VERSION;
			return 0;
		case ':':
			return cd_error_set(err, -EINVAL, "option %s needs a value",
					    argv[optind - 1]);
		case '?':
			return cd_error_set(err, -EINVAL, "unknown option %s", argv[optind - 1]);
		default:
			break;
		}
	}
	if (optind < argc)
		return cd_error_set(err, -EINVAL, "unexpected argument '%s'", argv[optind]);

	r = deployd_config_load(c, config ?: DEPLOYD_DEFAULT_CONFIG, err);
	if (r == -ENOENT && config)
		return cd_error_set(err, -EINVAL, "config file %s does not exist", config);
	if (r < 0 && r != -ENOENT)
		return r;

	optind = 1;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		const char *key = NULL;

		switch (opt) {
		case OPT_ROLE:
			key = "role";
			break;
		case OPT_REGION:
			key = "region";
			break;
		case OPT_ZONE:
			key = "zone";
			break;
		case OPT_STATE_DIR:
			key = "state_dir";
			break;
		case OPT_LISTEN:
			key = "listen";
			break;
		case OPT_TOKEN_FILE:
			key = "token_file";
			break;
		case OPT_DB:
			key = "db";
			break;
		case OPT_LOG_LEVEL:
			key = "log_level";
			break;
		case OPT_INSECURE:
			c->insecure_no_auth = true;
			break;
		default:
			break;
		}
		if (key) {
			struct cd_error e = {};

			r = deployd_config_set(c, key, optarg, &e);
			if (r < 0)
				return cd_error_set(err, r, "--%s: %s",
						    opts[opt - OPT_ROLE + 1].name,
						    cd_error_message(&e));
		}
	}
	r = deployd_config_validate(c, err);
	if (r < 0)
		return r;
	return deployd_config_check_legacy(c, err);
}

static char *join(const char *a, const char *b)
{
	char *s = NULL;

	return asprintf(&s, "%s%s", a, b) < 0 ? NULL : s;
}

char *deployd_config_token_path(const struct deployd_config *c)
{
	return c->token_file ? strdup(c->token_file) : join(c->state_dir, "/deployd.token");
}

char *deployd_config_db_url(const struct deployd_config *c)
{
	char *s = NULL;

	if (c->db)
		return strdup(c->db);
	return asprintf(&s, "sqlite://%s/deployd.db", c->state_dir) < 0 ? NULL : s;
}

char *deployd_config_cas_dir(const struct deployd_config *c)
{
	return c->cas_dir ? strdup(c->cas_dir) : join(c->state_dir, "/cas");
}

char *deployd_config_advertise_url(const struct deployd_config *c)
{
	return c->advertise_url ? strdup(c->advertise_url) : join("http://", c->listen);
}
