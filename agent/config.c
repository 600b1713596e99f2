/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobspec.h"
#include "lib/fs.h"
#include "lib/macro.h"
#include "lib/str.h"
#include "sandbox/netns.h"

#define CONFIG_MAX_BYTES (256 * 1024)
#define ADVERTISE_URL_MAX 255 /* what deployd accepts as a host's addr */

enum key_type { K_STR, K_STR_OPT, K_UINT, K_U64, K_LEVEL, K_LISTEN, K_URL, K_PATH, K_PATH_OPT };

struct key {
	const char *name;
	enum key_type type;
	size_t offset;
	uint64_t min, max; /* numbers */
};

#define OFF(f) offsetof(struct taskd_config, f)

static const struct key keys[] = {
	{ "state_dir", K_PATH, OFF(state_dir), 0, 0 },
	{ "listen", K_LISTEN, OFF(listen), 0, 0 },
	{ "token_file", K_PATH_OPT, OFF(token_file), 0, 0 },
	{ "manager_url", K_URL, OFF(manager_url), 0, 0 },
	{ "manager_token_file", K_PATH_OPT, OFF(manager_token_file), 0, 0 },
	{ "host_id", K_STR_OPT, OFF(host_id), 0, 0 },
	{ "zone", K_STR_OPT, OFF(zone), 0, 0 },
	{ "advertise_url", K_URL, OFF(advertise_url), 0, 0 },
	{ "shim_path", K_PATH_OPT, OFF(shim_path), 0, 0 },
	{ "cgroup_parent", K_STR_OPT, OFF(cgroup_parent), 0, 0 },
	{ "log_level", K_LEVEL, OFF(log_level), 0, 0 },
	{ "threads", K_UINT, OFF(threads), 1, 256 },
	{ "heartbeat_interval_s", K_UINT, OFF(heartbeat_interval_s), 1, 3600 },
	{ "log_max_bytes", K_U64, OFF(log_max_bytes), 4096, UINT64_C(1) << 40 },
	{ "log_keep", K_UINT, OFF(log_keep), 0, 100 },
	{ "log_line_max", K_UINT, OFF(log_line_max), 80, 1024 * 1024 },
	{ "restart_reset_s", K_UINT, OFF(restart_reset_s), 1, 86400 },
	{ "max_tasks", K_UINT, OFF(max_tasks), 1, 100000 },
	{ "events_keep", K_U64, OFF(events_keep), 100, UINT64_C(1) << 32 },
	{ "cache_max_bytes", K_U64, OFF(cache_max_bytes), 1 << 20, UINT64_C(1) << 50 },
	{ "process_events_ring_bytes", K_U64, OFF(process_events_ring_bytes), 0,
	  UINT64_C(1) << 30 },
	/* the same range as the JobSpec's reqs.pids_max */
	{ "default_pids_max", K_U64, OFF(default_pids_max), JOBSPEC_MIN_PIDS, JOBSPEC_MAX_PIDS },
	{ "bridge_name", K_STR_OPT, OFF(bridge_name), 0, 0 },
	{ "bridge_subnet", K_STR_OPT, OFF(bridge_subnet), 0, 0 },
	{ "resources_vcpus", K_UINT, OFF(resources_vcpus), 0, 4096 },
	{ "resources_memory_mb", K_U64, OFF(resources_memory_mb), 0, UINT64_C(1) << 32 },
	{ "resources_storage_mb", K_U64, OFF(resources_storage_mb), 0, UINT64_C(1) << 40 },
};

static char **str_field(struct taskd_config *c, const struct key *k)
{
	return (char **)((char *)c + k->offset);
}

int taskd_config_init(struct taskd_config *c)
{
	*c = (struct taskd_config){
		.threads = 8,
		.heartbeat_interval_s = 5,
		.log_max_bytes = 10 * 1024 * 1024,
		.log_keep = 3,
		.log_line_max = 16 * 1024,
		.restart_reset_s = 60,
		.max_tasks = 1000,
		.events_keep = 100000,
		.cache_max_bytes = UINT64_C(10) * 1024 * 1024 * 1024,
		.default_pids_max = TASKD_DEFAULT_PIDS_MAX,
	};
	c->state_dir = strdup(TASKD_DEFAULT_STATE_DIR);
	c->listen = strdup(TASKD_DEFAULT_LISTEN);
	c->log_level = strdup("info");
	if (!c->state_dir || !c->listen || !c->log_level) {
		taskd_config_release(c);
		return -ENOMEM;
	}
	return 0;
}

void taskd_config_release(struct taskd_config *c)
{
	free(c->config_file);
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		switch (keys[i].type) {
		case K_UINT:
		case K_U64:
			break;
		default:
			free(*str_field(c, &keys[i]));
			*str_field(c, &keys[i]) = NULL;
		}
	}
	c->config_file = NULL;
}

int taskd_parse_listen(const char *s, bool *ret_loopback)
{
	const char *colon = s ? strrchr(s, ':') : NULL;
	char addr[INET_ADDRSTRLEN];
	struct in_addr in;
	unsigned port;

	if (!colon || (size_t)(colon - s) >= sizeof(addr) || colon == s)
		return -EINVAL;
	memcpy(addr, s, (size_t)(colon - s));
	addr[colon - s] = '\0';
	if (inet_pton(AF_INET, addr, &in) != 1)
		return -EINVAL;
	if (parse_uint(colon + 1, 65535, &port) < 0 || port == 0)
		return -EINVAL;
	if (ret_loopback)
		*ret_loopback = (ntohl(in.s_addr) >> 24) == 127;
	return 0;
}

static bool valid_url(const char *v)
{
	const char *rest = startswith(v, "http://");

	if (!rest)
		rest = startswith(v, "https://");
	if (!rest || !*rest || *rest == '/')
		return false;
	for (const char *p = v; *p; p++)
		if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return false;
	return true;
}

static bool valid_host_id(const char *v)
{
	size_t n = strlen(v);

	if (n < 1 || n > 63)
		return false;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return false;
	return true;
}

/* A network interface name the kernel accepts (dev_valid_name()), restricted to the characters
 * ip(8) users expect: 1..15 of [A-Za-z0-9._-], not "." or "..". */
static bool valid_ifname(const char *v)
{
	size_t n = strlen(v);

	if (n < 1 || n >= IFNAMSIZ || streq(v, ".") || streq(v, ".."))
		return false;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return false;
	return true;
}

static bool valid_cgroup_parent(const char *v)
{
	const char *p = v;

	if (!*v || strlen(v) > 200)
		return false;
	while (*p) {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!isalnum((unsigned char)p[i]) && !strchr("._-", p[i]))
				return false;
		p += n;
		if (*p == '/' && !*++p)
			return false;
	}
	return true;
}

int taskd_config_set(struct taskd_config *c, const char *key, const char *value,
		     struct cd_error *err)
{
	const struct key *k = NULL;
	char *copy;

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (streq(keys[i].name, key)) {
			k = &keys[i];
			break;
		}
	if (!k)
		return cd_error_set(err, -EINVAL, "unknown key '%s'", key);

	switch (k->type) {
	case K_UINT:
	case K_U64: {
		uint64_t v;

		if (parse_u64(value, &v) < 0)
			return cd_error_set(err, -EINVAL, "%s: '%s' is not a non-negative integer",
					    key, value);
		if (v < k->min || v > k->max)
			return cd_error_set(err, -EINVAL, "%s: %s is out of range [%llu, %llu]",
					    key, value, (unsigned long long)k->min,
					    (unsigned long long)k->max);
		if (k->type == K_UINT)
			*(unsigned *)((char *)c + k->offset) = (unsigned)v;
		else
			*(uint64_t *)((char *)c + k->offset) = v;
		return 0;
	}
	case K_LEVEL:
		if (!streq(value, "debug") && !streq(value, "info") && !streq(value, "warn") &&
		    !streq(value, "error"))
			return cd_error_set(err, -EINVAL, "%s: '%s' is not debug|info|warn|error",
					    key, value);
		break;
	case K_LISTEN:
		if (taskd_parse_listen(value, NULL) < 0)
			return cd_error_set(err, -EINVAL,
					    "%s: '%s' is not IPV4ADDR:PORT (IPv6 is unsupported)",
					    key, value);
		break;
	case K_URL:
		if (*value && !valid_url(value))
			return cd_error_set(err, -EINVAL, "%s: '%s' is not an http(s) URL", key,
					    value);
		break;
	case K_PATH:
		if (value[0] != '/')
			return cd_error_set(err, -EINVAL, "%s: '%s' is not an absolute path", key,
					    value);
		break;
	case K_PATH_OPT:
		if (*value && value[0] != '/')
			return cd_error_set(err, -EINVAL, "%s: '%s' is not an absolute path", key,
					    value);
		break;
	case K_STR:
	case K_STR_OPT:
		if (streq(key, "host_id") && *value && !valid_host_id(value))
			return cd_error_set(err, -EINVAL,
					    "%s: '%s' must match [A-Za-z0-9._-]{1,63}", key, value);
		if (streq(key, "cgroup_parent") && *value && !valid_cgroup_parent(value))
			return cd_error_set(err, -EINVAL,
					    "%s: '%s' must be a relative cgroup path of "
					    "[A-Za-z0-9._-] components",
					    key, value);
		if (streq(key, "bridge_name") && *value && !valid_ifname(value))
			return cd_error_set(err, -EINVAL,
					    "%s: '%s' is not an interface name (1..%d of "
					    "[A-Za-z0-9._-])",
					    key, value, IFNAMSIZ - 1);
		if (streq(key, "bridge_subnet") && *value) {
			struct in_addr net;
			uint8_t prefix;

			if (netns_parse_subnet(value, &net, &prefix) < 0)
				return cd_error_set(err, -EINVAL,
						    "%s: '%s' is not an IPv4 subnet a.b.c.d/8..30 "
						    "with the host bits zero",
						    key, value);
		}
		if (streq(key, "zone") && *value && !valid_host_id(value))
			return cd_error_set(err, -EINVAL, "%s: '%s' is not a zone name", key,
					    value);
		break;
	}
	/* An empty optional value means "use the default" (unset). */
	if (!*value && k->type != K_STR && k->type != K_LEVEL) {
		copy = NULL;
	} else {
		copy = strdup(value);
		if (!copy)
			return cd_error_set(err, -ENOMEM, "out of memory");
	}
	free(*str_field(c, k));
	*str_field(c, k) = copy;
	if (streq(key, "token_file"))
		c->token_file_explicit = copy != NULL;
	return 0;
}

static char *strip(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

int taskd_config_parse_text(struct taskd_config *c, const char *name, const char *text,
			    struct cd_error *err)
{
	_cleanup_free_ char *copy = strdup(text);
	char *next, *line;
	unsigned lineno = 0;

	if (!copy)
		return cd_error_set(err, -ENOMEM, "out of memory");
	/* strtok_r would skip empty lines and get the numbering wrong: walk by hand. */
	for (line = copy; line; lineno++) {
		char *nl = strchr(line, '\n'), *eq, *key, *value;
		struct cd_error kerr = { 0 };
		int r;

		if (nl)
			*nl = '\0';
		next = nl ? nl + 1 : NULL;
		key = strip(line);
		if (*key && *key != '#') {
			eq = strchr(key, '=');
			if (!eq)
				return cd_error_set(err, -EINVAL, "%s:%u: expected 'key = value'",
						    name, lineno + 1);
			*eq = '\0';
			value = strip(eq + 1);
			key = strip(key);
			/* Optional double quotes around a value (for values with '#'). */
			if (value[0] == '"') {
				size_t n = strlen(value);

				if (n < 2 || value[n - 1] != '"')
					return cd_error_set(err, -EINVAL,
							    "%s:%u: unterminated quote", name,
							    lineno + 1);
				value[n - 1] = '\0';
				value++;
			} else {
				char *hash = strstr(value, " #");

				if (hash)
					*hash = '\0';
				value = strip(value);
			}
			r = taskd_config_set(c, key, value, &kerr);
			if (r < 0)
				return cd_error_set(err, r, "%s:%u: %s", name, lineno + 1,
						    cd_error_message(&kerr));
		}
		line = next;
	}
	return 0;
}

int taskd_config_load(struct taskd_config *c, const char *path, struct cd_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = fs_read_file_at(AT_FDCWD, path, CONFIG_MAX_BYTES, &text, &len);

	if (r == -ENOENT)
		return r;
	if (r < 0)
		return cd_error_set(err, r, "%s: %s", path, strerror(-r));
	if (strlen(text) != len)
		return cd_error_set(err, -EINVAL, "%s: contains a NUL byte", path);
	r = taskd_config_parse_text(c, path, text, err);
	if (r < 0)
		return r;
	free(c->config_file);
	c->config_file = strdup(path);
	return c->config_file ? 0 : -ENOMEM;
}

int taskd_config_validate(const struct taskd_config *c, struct cd_error *err)
{
	bool loopback = false;

	if (taskd_parse_listen(c->listen, &loopback) < 0)
		return cd_error_set(err, -EINVAL, "listen: '%s' is not IPV4ADDR:PORT", c->listen);
	if (!loopback && !c->token_file_explicit)
		return cd_error_set(
			err, -EINVAL,
			"listening on non-loopback %s requires an explicit --token-file",
			c->listen);
	if (!c->manager_url)
		return 0;
	/* What the cluster manager requires of every heartbeat (central/cluster_http.c): a zone,
	 * and an http:// address it can push PutTask to. Without them taskd would run, and
	 * every heartbeat would be refused (422) — the host would never be scheduled on. */
	if (!c->zone)
		return cd_error_set(err, -EINVAL,
				    "manager_url is set but zone is not: the cluster manager "
				    "refuses heartbeats without the host's zone (set zone in "
				    "taskd.conf or --zone)");
	if (c->advertise_url && (!startswith(c->advertise_url, "http://") ||
				 strlen(c->advertise_url) > ADVERTISE_URL_MAX))
		return cd_error_set(
			err, -EINVAL,
			"advertise_url: '%.64s' must be an http:// URL of at most %d characters "
			"(the cluster manager pushes to taskd over plain HTTP)",
			c->advertise_url, ADVERTISE_URL_MAX);
	if (!c->advertise_url && startswith(c->listen, "0.0.0.0:"))
		return cd_error_set(err, -EINVAL,
				    "manager_url is set and listen is %s: set advertise_url to the "
				    "address the cluster manager reaches this host at",
				    c->listen);
	return 0;
}

int taskd_config_path(const struct taskd_config *c, const char *name, char **ret)
{
	return asprintf(ret, "%s/%s", c->state_dir, name) < 0 ? -ENOMEM : 0;
}

int taskd_config_from_args(struct taskd_config *c, int argc, char **argv,
			   enum taskd_action *ret_action, struct cd_error *err)
{
	enum {
		OPT_CONFIG = 0x100,
		OPT_STATE,
		OPT_LISTEN,
		OPT_TOKEN,
		OPT_MANAGER,
		OPT_HOST,
		OPT_ZONE,
		OPT_LOG
	};
	static const struct option opts[] = {
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "state-dir", required_argument, NULL, OPT_STATE },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "token-file", required_argument, NULL, OPT_TOKEN },
		{ "manager", required_argument, NULL, OPT_MANAGER },
		{ "host-id", required_argument, NULL, OPT_HOST },
		{ "zone", required_argument, NULL, OPT_ZONE },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{},
	};
	static const char *const flag_key[] = {
		[OPT_STATE - OPT_CONFIG] = "state_dir",	 [OPT_LISTEN - OPT_CONFIG] = "listen",
		[OPT_TOKEN - OPT_CONFIG] = "token_file", [OPT_MANAGER - OPT_CONFIG] = "manager_url",
		[OPT_HOST - OPT_CONFIG] = "host_id",	 [OPT_ZONE - OPT_CONFIG] = "zone",
		[OPT_LOG - OPT_CONFIG] = "log_level",
	};
	const char *config = NULL;
	int o, r;

	/* Pass 1: usage errors, --help/--version, --config. Pass 2 applies flags over the file. */
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		switch (o) {
		case 'h':
			*ret_action = TASKD_HELP;
			return 0;
		case 'V':
			*ret_action = TASKD_VERSION;
			return 0;
		case OPT_CONFIG:
			config = optarg;
			break;
		case '?':
			if (optopt)
				return cd_error_set(err, -EINVAL,
						    "option '-%c' is unknown or needs "
						    "an argument",
						    optopt);
			return cd_error_set(err, -EINVAL, "unknown option or missing argument: %s",
					    argv[optind - 1]);
		default:
			break;
		}
	}
	if (optind < argc)
		return cd_error_set(err, -EINVAL, "unexpected argument '%s'", argv[optind]);

	r = taskd_config_load(c, config ? config : TASKD_DEFAULT_CONFIG, err);
	if (r == -ENOENT && config)
		return cd_error_set(err, -EINVAL, "--config %s: no such file", config);
	if (r < 0 && r != -ENOENT)
		return r;

	optind = 0;
	while ((o = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		struct cd_error kerr = { 0 };

		if (o < OPT_STATE || o > OPT_LOG)
			continue;
		if (*optarg == '\0')
			return cd_error_set(err, -EINVAL, "--%s needs a non-empty value",
					    opts[o - OPT_CONFIG].name);
		r = taskd_config_set(c, flag_key[o - OPT_CONFIG], optarg, &kerr);
		if (r < 0)
			return cd_error_set(err, r, "--%s: %s", opts[o - OPT_CONFIG].name,
					    cd_error_message(&kerr));
	}
	r = taskd_config_validate(c, err);
	if (r < 0)
		return r;
	*ret_action = TASKD_RUN;
	return 0;
}
