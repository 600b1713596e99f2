/* SPDX-License-Identifier: Apache-2.0 */
#include "api/jobspec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "lib/macro.h"

static const char *const net_mode_names[_JOBSPEC_NET_MAX] = {
	[JOBSPEC_NET_NONE] = "none",
	[JOBSPEC_NET_HOST] = "host",
	[JOBSPEC_NET_BRIDGE] = "bridge",
};

static const char *const health_type_names[_JOBSPEC_HEALTH_MAX] = {
	[JOBSPEC_HEALTH_NONE] = NULL, /* not a wire value: "health" is absent */
	[JOBSPEC_HEALTH_EXEC] = "exec",
	[JOBSPEC_HEALTH_HTTP] = "http",
	[JOBSPEC_HEALTH_TCP] = "tcp",
};

static const char *const restart_policy_names[_JOBSPEC_RESTART_MAX] = {
	[JOBSPEC_RESTART_NEVER] = "never",
	[JOBSPEC_RESTART_ON_FAILURE] = "on-failure",
	[JOBSPEC_RESTART_ALWAYS] = "always",
};

static int lookup_name(const char *const names[], size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (names[i] && strcmp(names[i], s) == 0)
			return (int)i;
	return -EINVAL;
}

const char *jobspec_net_mode_to_string(enum jobspec_net_mode m)
{
	return (unsigned)m < _JOBSPEC_NET_MAX ? net_mode_names[m] : NULL;
}

int jobspec_net_mode_from_string(const char *s, enum jobspec_net_mode *ret)
{
	int i = lookup_name(net_mode_names, _JOBSPEC_NET_MAX, s);

	if (i < 0)
		return i;
	*ret = (enum jobspec_net_mode)i;
	return 0;
}

const char *jobspec_health_type_to_string(enum jobspec_health_type t)
{
	return (unsigned)t < _JOBSPEC_HEALTH_MAX ? health_type_names[t] : NULL;
}

int jobspec_health_type_from_string(const char *s, enum jobspec_health_type *ret)
{
	int i = lookup_name(health_type_names, _JOBSPEC_HEALTH_MAX, s);

	if (i < 0)
		return i;
	*ret = (enum jobspec_health_type)i;
	return 0;
}

const char *jobspec_restart_policy_to_string(enum jobspec_restart_policy p)
{
	return (unsigned)p < _JOBSPEC_RESTART_MAX ? restart_policy_names[p] : NULL;
}

int jobspec_restart_policy_from_string(const char *s, enum jobspec_restart_policy *ret)
{
	int i = lookup_name(restart_policy_names, _JOBSPEC_RESTART_MAX, s);

	if (i < 0)
		return i;
	*ret = (enum jobspec_restart_policy)i;
	return 0;
}

void jobspec_free(struct jobspec *s)
{
	if (!s)
		return;
	free(s->reqs.networking.ports);
	strv_free(s->command);
	for (size_t i = 0; i < s->n_env; i++) {
		free(s->env[i].key);
		free(s->env[i].value);
	}
	free(s->env);
	strv_free(s->health.command);
	free(s->health.path);
	strv_free(s->zones);
	free(s);
}

const char *jobspec_env_get(const struct jobspec *s, const char *key)
{
	for (size_t i = 0; i < s->n_env; i++)
		if (strcmp(s->env[i].key, key) == 0)
			return s->env[i].value;
	return NULL;
}

/* --- decoding ------------------------------------------------------------------------------ */

/* Enumerated string member: "must be one of a, b, c". Returns the index, -ENOENT when absent
 * (optional), -EINVAL when invalid (recorded). */
static int get_enum(const json_t *obj, const char *base, const char *key, bool required,
		    const char *const names[], size_t n, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX], q[API_JSON_QUOTE_MAX], list[128] = "";
	const char *s;
	size_t len = 0;
	int r, i;

	r = api_json_get_string(obj, base, key, required, 0, SIZE_MAX, &s, p);
	if (r <= 0)
		return r == 0 ? -ENOENT : r;
	i = lookup_name(names, n, s);
	if (i >= 0)
		return i;
	for (size_t k = 0; k < n && len < sizeof(list); k++)
		if (names[k])
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
						len ? ", " : "", names[k]);
	problem_add_error(p, problem_pointer(pb, sizeof(pb), base, key),
			  "must be one of %s (is %s)", list, api_json_quote(q, sizeof(q), s));
	return -EINVAL;
}

/* Integer member into a uint32_t/uint64_t with range checks; *ret untouched when absent. */
static void get_u32(const json_t *obj, const char *base, const char *key, int64_t min, int64_t max,
		    uint32_t *ret, struct problem *p)
{
	int64_t v;

	if (api_json_get_int(obj, base, key, false, min, max, &v, p) > 0)
		*ret = (uint32_t)v;
}

static void get_u64(const json_t *obj, const char *base, const char *key, int64_t min, int64_t max,
		    uint64_t *ret, struct problem *p)
{
	int64_t v;

	if (api_json_get_int(obj, base, key, false, min, max, &v, p) > 0)
		*ret = (uint64_t)v;
}

static bool is_port_name(const char *s)
{
	if (!*s || s[0] == '-' || s[strlen(s) - 1] == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

static int decode_ports(const json_t *arr, const char *base, struct jobspec_reqs *reqs,
			struct problem *p)
{
	char eb[API_JSON_POINTER_MAX], fb[API_JSON_POINTER_MAX], q[API_JSON_QUOTE_MAX];
	static const char *const allowed[] = { "name", "port", NULL };
	const json_t *e;
	size_t i;

	reqs->networking.ports = calloc(MAX(json_array_size(arr), 1), sizeof(struct jobspec_port));
	if (!reqs->networking.ports)
		return -ENOMEM;
	json_array_foreach(arr, i, e) {
		struct jobspec_port port = { 0 };
		const char *name = NULL;
		int64_t num = 0;
		bool ok = true;

		problem_pointer_index(eb, sizeof(eb), base, i);
		if (api_json_expect_object(e, eb, p) < 0)
			continue;
		api_json_check_unknown(e, eb, allowed, p);
		if (api_json_get_string(e, eb, "name", true, 1, JOBSPEC_PORT_NAME_MAX, &name, p) >
		    0) {
			if (!is_port_name(name)) {
				problem_add_error(
					p, problem_pointer(fb, sizeof(fb), eb, "name"),
					"must be a lowercase name of a-z, 0-9 and '-', not starting or "
					"ending with '-' (is %s)",
					api_json_quote(q, sizeof(q), name));
				ok = false;
			}
		} else {
			ok = false;
		}
		if (api_json_get_int(e, eb, "port", true, 1, 65535, &num, p) <= 0)
			ok = false;
		for (size_t k = 0; k < i; k++) {
			const json_t *o = json_array_get(arr, k);
			const char *oname = json_string_value(json_object_get(o, "name"));
			const json_t *oport = json_object_get(o, "port");

			if (name && oname && strcmp(name, oname) == 0) {
				problem_add_error(p, problem_pointer(fb, sizeof(fb), eb, "name"),
						  "duplicate port name %s (also at index %zu)",
						  api_json_quote(q, sizeof(q), name), k);
				ok = false;
			}
			if (num > 0 && json_is_integer(oport) && json_integer_value(oport) == num) {
				problem_add_error(p, problem_pointer(fb, sizeof(fb), eb, "port"),
						  "duplicate port %lld (also at index %zu)",
						  (long long)num, k);
				ok = false;
			}
		}
		if (!ok)
			continue;
		snprintf(port.name, sizeof(port.name), "%s", name);
		port.port = (uint16_t)num;
		reqs->networking.ports[reqs->networking.n_ports++] = port;
	}
	return 0;
}

static int decode_reqs(const json_t *obj, const char *base, struct jobspec_reqs *reqs,
		       struct problem *p)
{
	static const char *const allowed[] = { "hosts",	     "vcpus",	 "memory_mb", "storage",
					       "networking", "pids_max", NULL };
	static const char *const storage_allowed[] = { "size_mb", NULL };
	static const char *const net_allowed[] = { "mode", "ports", NULL };
	char pb[API_JSON_POINTER_MAX], sb[API_JSON_POINTER_MAX];
	const json_t *storage = NULL, *net = NULL, *ports = NULL;
	double vcpus;
	int r;

	api_json_check_unknown(obj, base, allowed, p);
	get_u32(obj, base, "hosts", 1, JOBSPEC_MAX_HOSTS, &reqs->hosts, p);
	if (api_json_get_number(obj, base, "vcpus", false, 0.001, JOBSPEC_MAX_MILLICPUS / 1000.0,
				&vcpus, p) > 0) {
		double m = vcpus * 1000.0;

		/* at most three decimals; tolerate binary rounding (0.1 * 1000 = 100.00000000000001) */
		if (fabs(m - round(m)) > 1e-6)
			problem_add_error(
				p, problem_pointer(pb, sizeof(pb), base, "vcpus"),
				"must have at most 3 decimals (millicpu resolution), is %g", vcpus);
		else
			reqs->millicpus = (uint32_t)round(m);
	}
	get_u64(obj, base, "memory_mb", 1, JOBSPEC_MAX_MEMORY_MB, &reqs->memory_mb, p);
	get_u64(obj, base, "pids_max", JOBSPEC_MIN_PIDS, JOBSPEC_MAX_PIDS, &reqs->pids_max, p);

	if (api_json_get_object(obj, base, "storage", false, &storage, p) > 0) {
		problem_pointer(sb, sizeof(sb), base, "storage");
		api_json_check_unknown(storage, sb, storage_allowed, p);
		get_u64(storage, sb, "size_mb", 1, JOBSPEC_MAX_STORAGE_MB, &reqs->storage.size_mb,
			p);
	}

	if (api_json_get_object(obj, base, "networking", false, &net, p) > 0) {
		problem_pointer(sb, sizeof(sb), base, "networking");
		api_json_check_unknown(net, sb, net_allowed, p);
		r = get_enum(net, sb, "mode", false, net_mode_names, _JOBSPEC_NET_MAX, p);
		if (r >= 0)
			reqs->networking.mode = (enum jobspec_net_mode)r;
		if (api_json_get_array(net, sb, "ports", false, 0, JOBSPEC_MAX_PORTS, &ports, p) >
		    0) {
			problem_pointer(pb, sizeof(pb), sb, "ports");
			if (r != -EINVAL && reqs->networking.mode == JOBSPEC_NET_NONE &&
			    json_array_size(ports) > 0)
				problem_add_error(p, pb,
						  "ports need networking mode \"host\" or "
						  "\"bridge\" (mode is \"none\")");
			else if (decode_ports(ports, pb, reqs, p) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static bool is_env_key(const char *s)
{
	if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static int env_cmp(const void *a, const void *b)
{
	return strcmp(((const struct jobspec_env *)a)->key, ((const struct jobspec_env *)b)->key);
}

static int decode_env(const json_t *obj, const char *base, struct jobspec *s, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX], q[API_JSON_QUOTE_MAX];
	const char *key;
	const json_t *v;
	bool bad = false;

	if (json_object_size(obj) > JOBSPEC_MAX_ENV) {
		problem_add_error(p, base, "must have at most %d variables (has %zu)",
				  JOBSPEC_MAX_ENV, json_object_size(obj));
		return 0;
	}
	s->env = calloc(MAX(json_object_size(obj), 1), sizeof(struct jobspec_env));
	if (!s->env)
		return -ENOMEM;
	json_object_foreach((json_t *)obj, key, v) {
		const char *value;

		problem_pointer(pb, sizeof(pb), base, key);
		if (strlen(key) > JOBSPEC_ENV_KEY_MAX) {
			problem_add_error(p, pb, "variable name is longer than %d bytes",
					  JOBSPEC_ENV_KEY_MAX);
			bad = true;
		} else if (!is_env_key(key)) {
			problem_add_error(p, pb,
					  "variable name %s must match [A-Za-z_][A-Za-z0-9_]*",
					  api_json_quote(q, sizeof(q), key));
			bad = true;
		}
		if (api_json_check_string(v, pb, 0, JOBSPEC_ENV_VALUE_MAX, &value, p) < 0)
			bad = true;
		if (bad)
			continue;
		s->env[s->n_env].key = strdup(key);
		s->env[s->n_env].value = strdup(value);
		if (!s->env[s->n_env].key || !s->env[s->n_env].value) {
			free(s->env[s->n_env].key);
			free(s->env[s->n_env].value);
			return -ENOMEM;
		}
		s->n_env++;
	}
	/* JSON object keys are unique (the parser rejects duplicates), so sorting is enough for a
	 * canonical order. */
	qsort(s->env, s->n_env, sizeof(*s->env), env_cmp);
	return 0;
}

static bool is_http_path(const char *s)
{
	if (s[0] != '/')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static int decode_health(const json_t *obj, const char *base, struct jobspec_health *h,
			 struct problem *p)
{
	static const char *const allowed[] = {
		"type",	     "command",		  "path", "port", "interval_s",
		"timeout_s", "failure_threshold", NULL
	};
	/* which of command/path/port each type takes */
	static const char *const only_for[] = { "command", "exec", "path", "http", NULL };
	char pb[API_JSON_POINTER_MAX], cb[API_JSON_POINTER_MAX], q[API_JSON_QUOTE_MAX];
	const char *path;
	int64_t port;
	int r, t;

	api_json_check_unknown(obj, base, allowed, p);
	t = get_enum(obj, base, "type", true, health_type_names, _JOBSPEC_HEALTH_MAX, p);
	get_u32(obj, base, "interval_s", 1, JOBSPEC_MAX_INTERVAL_S, &h->interval_s, p);
	get_u32(obj, base, "timeout_s", 1, JOBSPEC_MAX_INTERVAL_S, &h->timeout_s, p);
	get_u32(obj, base, "failure_threshold", 1, JOBSPEC_MAX_FAILURE_THRESHOLD,
		&h->failure_threshold, p);
	if (h->timeout_s > h->interval_s)
		problem_add_error(p, problem_pointer(pb, sizeof(pb), base, "timeout_s"),
				  "must not exceed interval_s (%u > %u)", h->timeout_s,
				  h->interval_s);
	if (t < 0) {
		/* unknown type: still check types of the members we know */
		return 0;
	}
	h->type = (enum jobspec_health_type)t;

	for (size_t i = 0; only_for[i]; i += 2)
		if (json_object_get(obj, only_for[i]) &&
		    strcmp(only_for[i + 1], health_type_names[t]) != 0)
			problem_add_error(p, problem_pointer(pb, sizeof(pb), base, only_for[i]),
					  "is only valid for health type \"%s\" (type is \"%s\")",
					  only_for[i + 1], health_type_names[t]);
	if (json_object_get(obj, "port") && h->type == JOBSPEC_HEALTH_EXEC)
		problem_add_error(p, problem_pointer(pb, sizeof(pb), base, "port"),
				  "is only valid for health types \"http\" and \"tcp\" (type is "
				  "\"exec\")");

	switch (h->type) {
	case JOBSPEC_HEALTH_EXEC:
		r = api_json_get_strv(obj, base, "command", true, 1, JOBSPEC_MAX_ARGS, 0,
				      JOBSPEC_ARG_MAX_LEN, &h->command, p);
		if (r == -ENOMEM)
			return r;
		if (r > 0 && h->command[0][0] == '\0')
			problem_add_error(p,
					  problem_pointer_index(pb, sizeof(pb),
								problem_pointer(cb, sizeof(cb),
										base, "command"),
								0),
					  "must not be empty (the program to run)");
		break;
	case JOBSPEC_HEALTH_HTTP:
		path = JOBSPEC_DEFAULT_HEALTH_PATH;
		if (api_json_get_string(obj, base, "path", false, 1, JOBSPEC_HEALTH_PATH_MAX, &path,
					p) > 0 &&
		    !is_http_path(path))
			problem_add_error(
				p, problem_pointer(pb, sizeof(pb), base, "path"),
				"must start with '/' and hold only printable ASCII without "
				"spaces (is %s)",
				api_json_quote(q, sizeof(q), path));
		h->path = strdup(path);
		if (!h->path)
			return -ENOMEM;
		__attribute__((fallthrough));
	case JOBSPEC_HEALTH_TCP:
		if (api_json_get_int(obj, base, "port", true, 1, 65535, &port, p) > 0)
			h->port = (uint16_t)port;
		break;
	default:
		break;
	}
	return 0;
}

static int decode_restart(const json_t *obj, const char *base, struct jobspec_restart *rs,
			  struct problem *p)
{
	static const char *const allowed[] = { "policy", "backoff_s", "max_backoff_s", NULL };
	char pb[API_JSON_POINTER_MAX];
	int r;

	api_json_check_unknown(obj, base, allowed, p);
	r = get_enum(obj, base, "policy", false, restart_policy_names, _JOBSPEC_RESTART_MAX, p);
	if (r >= 0)
		rs->policy = (enum jobspec_restart_policy)r;
	get_u32(obj, base, "backoff_s", 0, JOBSPEC_MAX_BACKOFF_S, &rs->backoff_s, p);
	get_u32(obj, base, "max_backoff_s", 0, JOBSPEC_MAX_BACKOFF_S, &rs->max_backoff_s, p);
	if (rs->backoff_s > rs->max_backoff_s)
		problem_add_error(p, problem_pointer(pb, sizeof(pb), base, "backoff_s"),
				  "must not exceed max_backoff_s (%u > %u)", rs->backoff_s,
				  rs->max_backoff_s);
	return 0;
}

static int decode_zones(const json_t *obj, const char *base, struct jobspec *s, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX], eb[API_JSON_POINTER_MAX];
	_cleanup_strv_free_ char **zones = NULL;
	const json_t *arr, *e;
	bool bad = false;
	size_t i;
	int r;

	r = api_json_get_array(obj, base, "zones", false, 0, JOBSPEC_MAX_ZONES, &arr, p);
	if (r <= 0)
		return 0;
	problem_pointer(pb, sizeof(pb), base, "zones");
	zones = calloc(json_array_size(arr) + 1, sizeof(char *));
	if (!zones)
		return -ENOMEM;
	/* Check every element on its own, so one bad zone does not hide a duplicate. */
	json_array_foreach(arr, i, e) {
		struct cd_error err = { 0 };
		const char *zone;

		problem_pointer_index(eb, sizeof(eb), pb, i);
		if (api_json_check_string(e, eb, 1, SIZE_MAX, &zone, p) < 0) {
			bad = true;
			continue;
		}
		if (dns_label_check(zone, "zone", &err) < 0) {
			problem_add_error(p, eb, "%s", err.msg);
			bad = true;
			continue;
		}
		for (size_t k = 0; k < i; k++)
			if (json_equal(e, json_array_get(arr, k))) {
				problem_add_error(p, eb,
						  "duplicate zone \"%s\" (also at index %zu)", zone,
						  k);
				bad = true;
				break;
			}
		if (bad)
			continue;
		zones[i] = strdup(zone);
		if (!zones[i])
			return -ENOMEM;
	}
	if (!bad)
		s->zones = TAKE_PTR(zones);
	return 0;
}

static void set_defaults(struct jobspec *s)
{
	s->reqs.hosts = JOBSPEC_DEFAULT_HOSTS;
	s->reqs.millicpus = JOBSPEC_DEFAULT_MILLICPUS;
	s->reqs.memory_mb = JOBSPEC_DEFAULT_MEMORY_MB;
	s->reqs.storage.size_mb = JOBSPEC_DEFAULT_STORAGE_MB;
	s->reqs.networking.mode = JOBSPEC_NET_NONE;
	s->health.type = JOBSPEC_HEALTH_NONE;
	s->health.interval_s = JOBSPEC_DEFAULT_HEALTH_INTERVAL_S;
	s->health.timeout_s = JOBSPEC_DEFAULT_HEALTH_TIMEOUT_S;
	s->health.failure_threshold = JOBSPEC_DEFAULT_HEALTH_FAILURE_THRESHOLD;
	s->restart.policy = JOBSPEC_RESTART_ON_FAILURE;
	s->restart.backoff_s = JOBSPEC_DEFAULT_BACKOFF_S;
	s->restart.max_backoff_s = JOBSPEC_DEFAULT_MAX_BACKOFF_S;
	s->stop_grace_s = JOBSPEC_DEFAULT_STOP_GRACE_S;
}

static char **strv_new1(const char *a, const char *b)
{
	char **v = calloc(2, sizeof(char *));

	if (!v)
		return NULL;
	if (asprintf(&v[0], "%s%s", a, b) < 0) {
		free(v);
		return NULL;
	}
	return v;
}

int jobspec_from_json_at(const json_t *j, const char *base, struct jobspec **ret, struct problem *p)
{
	static const char *const allowed[] = { "name",	"target", "reqs",    "command",
					       "env",	"health", "restart", "stop_grace_s",
					       "zones", NULL };
	char pb[API_JSON_POINTER_MAX], cb[API_JSON_POINTER_MAX];
	_cleanup_jobspec_ struct jobspec *s = NULL;
	const json_t *sub;
	const char *str;
	int r;

	if (!base)
		base = "";
	if (api_json_expect_object(j, base, p) < 0)
		return api_json_finish_validation(p);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	set_defaults(s);

	api_json_check_unknown(j, base, allowed, p);

	if (api_json_get_string(j, base, "name", true, 1, SIZE_MAX, &str, p) > 0) {
		struct cd_error err = { 0 };

		if (dns_label_check(str, "job name", &err) < 0)
			problem_add_error(p, problem_pointer(pb, sizeof(pb), base, "name"), "%s",
					  err.msg);
		else
			snprintf(s->name, sizeof(s->name), "%s", str);
	}
	if (api_json_get_string(j, base, "target", true, 1, SIZE_MAX, &str, p) > 0) {
		struct cd_error err = { 0 };

		if (artifact_parse_ref(str, &s->target, &err) < 0)
			problem_add_error(p, problem_pointer(pb, sizeof(pb), base, "target"), "%s",
					  err.msg);
	}

	if (api_json_get_object(j, base, "reqs", false, &sub, p) > 0) {
		r = decode_reqs(sub, problem_pointer(pb, sizeof(pb), base, "reqs"), &s->reqs, p);
		if (r < 0)
			return r;
	}

	r = api_json_get_strv(j, base, "command", false, 1, JOBSPEC_MAX_ARGS, 0,
			      JOBSPEC_ARG_MAX_LEN, &s->command, p);
	if (r == -ENOMEM)
		return r;
	if (r > 0 && s->command[0][0] == '\0')
		problem_add_error(
			p,
			problem_pointer_index(pb, sizeof(pb),
					      problem_pointer(cb, sizeof(cb), base, "command"), 0),
			"must not be empty (the program to run)");

	if (api_json_get_object(j, base, "env", false, &sub, p) > 0) {
		r = decode_env(sub, problem_pointer(pb, sizeof(pb), base, "env"), s, p);
		if (r < 0)
			return r;
	}
	if (api_json_get_object(j, base, "health", false, &sub, p) > 0) {
		r = decode_health(sub, problem_pointer(pb, sizeof(pb), base, "health"), &s->health,
				  p);
		if (r < 0)
			return r;
	}
	if (api_json_get_object(j, base, "restart", false, &sub, p) > 0)
		decode_restart(sub, problem_pointer(pb, sizeof(pb), base, "restart"), &s->restart,
			       p);
	get_u32(j, base, "stop_grace_s", 0, JOBSPEC_MAX_STOP_GRACE_S, &s->stop_grace_s, p);
	r = decode_zones(j, base, s, p);
	if (r < 0)
		return r;

	r = api_json_finish_validation(p);
	if (r < 0)
		return r;

	if (!s->command) {
		s->command = strv_new1("/app/", s->target.target.name);
		if (!s->command)
			return -ENOMEM;
	}
	if (!s->zones) {
		s->zones = calloc(1, sizeof(char *));
		if (!s->zones)
			return -ENOMEM;
	}
	if (!s->env) {
		s->env = calloc(1, sizeof(struct jobspec_env));
		if (!s->env)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(s);
	return 0;
}

int jobspec_from_string(const char *buf, size_t len, struct jobspec **ret, struct problem *p)
{
	json_t *j = NULL;
	int r;

	r = api_json_parse(buf, len, &j, p);
	if (r < 0)
		return r;
	r = jobspec_from_json(j, ret, p);
	json_decref(j);
	return r;
}

/* --- encoding ------------------------------------------------------------------------------ */

static json_t *strv_to_json(char *const *v)
{
	json_t *a = json_array();

	if (!a)
		return NULL;
	for (size_t i = 0; v && v[i]; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *vcpus_to_json(uint32_t millicpus)
{
	if (millicpus % 1000 == 0)
		return json_integer(millicpus / 1000);
	return json_real(millicpus / 1000.0);
}

int jobspec_to_json(const struct jobspec *s, json_t **ret)
{
	char target[ARTIFACT_MAX_LEN + 1];
	json_t *o = NULL, *ports, *env, *health = NULL;
	int r = 0;

	/* Refuse what the decoder would refuse, so canonical text always decodes again. */
	if (dns_label_check(s->name, "job name", NULL) < 0 ||
	    artifact_format(&s->target, target, sizeof(target)) < 0 || !s->command ||
	    !s->command[0] || !s->command[0][0] ||
	    !jobspec_net_mode_to_string(s->reqs.networking.mode) ||
	    !jobspec_restart_policy_to_string(s->restart.policy) ||
	    (unsigned)s->health.type >= _JOBSPEC_HEALTH_MAX ||
	    (s->health.type == JOBSPEC_HEALTH_EXEC &&
	     (!s->health.command || !s->health.command[0])) ||
	    ((s->health.type == JOBSPEC_HEALTH_HTTP || s->health.type == JOBSPEC_HEALTH_TCP) &&
	     s->health.port == 0) ||
	    (s->reqs.pids_max &&
	     (s->reqs.pids_max < JOBSPEC_MIN_PIDS || s->reqs.pids_max > JOBSPEC_MAX_PIDS)))
		return -EINVAL;

	ports = json_array();
	env = json_object();
	if (!ports || !env)
		goto oom;
	for (size_t i = 0; i < s->reqs.networking.n_ports; i++)
		r |= json_array_append_new(
			ports, json_pack("{s:s, s:i}", "name", s->reqs.networking.ports[i].name,
					 "port", (int)s->reqs.networking.ports[i].port));
	for (size_t i = 0; i < s->n_env; i++)
		r |= json_object_set_new(env, s->env[i].key, json_string(s->env[i].value));

	if (s->health.type != JOBSPEC_HEALTH_NONE) {
		health = json_pack("{s:s, s:I, s:I, s:I}", "type",
				   jobspec_health_type_to_string(s->health.type), "interval_s",
				   (json_int_t)s->health.interval_s, "timeout_s",
				   (json_int_t)s->health.timeout_s, "failure_threshold",
				   (json_int_t)s->health.failure_threshold);
		if (!health)
			goto oom;
		if (s->health.type == JOBSPEC_HEALTH_EXEC)
			r |= json_object_set_new(health, "command",
						 strv_to_json(s->health.command));
		if (s->health.type == JOBSPEC_HEALTH_HTTP)
			r |= json_object_set_new(health, "path",
						 json_string(s->health.path ?
								     s->health.path :
								     JOBSPEC_DEFAULT_HEALTH_PATH));
		if (s->health.type == JOBSPEC_HEALTH_HTTP || s->health.type == JOBSPEC_HEALTH_TCP)
			r |= json_object_set_new(health, "port", json_integer(s->health.port));
	}
	if (r)
		goto oom;

	/* json_pack steals the "o" references, also on failure. */
	o = json_pack("{s:s, s:s, s:{s:I, s:o, s:I, s:{s:I}, s:{s:s, s:o}}, s:o, s:o, "
		      "s:{s:s, s:I, s:I}, s:I, s:o}",
		      "name", s->name, "target", target, "reqs", "hosts", (json_int_t)s->reqs.hosts,
		      "vcpus", vcpus_to_json(s->reqs.millicpus), "memory_mb",
		      (json_int_t)s->reqs.memory_mb, "storage", "size_mb",
		      (json_int_t)s->reqs.storage.size_mb, "networking", "mode",
		      jobspec_net_mode_to_string(s->reqs.networking.mode), "ports", ports,
		      "command", strv_to_json(s->command), "env", env, "restart", "policy",
		      jobspec_restart_policy_to_string(s->restart.policy), "backoff_s",
		      (json_int_t)s->restart.backoff_s, "max_backoff_s",
		      (json_int_t)s->restart.max_backoff_s, "stop_grace_s",
		      (json_int_t)s->stop_grace_s, "zones", strv_to_json(s->zones));
	ports = env = NULL;
	if (!o)
		goto oom;
	if (health && json_object_set_new(o, "health", TAKE_PTR(health)) < 0)
		goto oom;
	/* Only when set: an unset limit is the host's default, not a value of the spec. */
	if (s->reqs.pids_max && json_object_set_new(json_object_get(o, "reqs"), "pids_max",
						    json_integer((json_int_t)s->reqs.pids_max)) < 0)
		goto oom;
	*ret = o;
	return 0;
oom:
	json_decref(ports);
	json_decref(env);
	json_decref(health);
	json_decref(o);
	return -ENOMEM;
}

int jobspec_to_string(const struct jobspec *s, char **ret)
{
	json_t *j = NULL;
	char *str;
	int r;

	r = jobspec_to_json(s, &j);
	if (r < 0)
		return r;
	str = api_json_dump_canonical(j);
	json_decref(j);
	if (!str)
		return -ENOMEM;
	*ret = str;
	return 0;
}

int jobspec_hash(const struct jobspec *s, char ret[static JOBSPEC_HASH_LEN + 1])
{
	char hex[65];
	json_t *j = NULL;
	int r;

	r = jobspec_to_json(s, &j);
	if (r < 0)
		return r;
	r = api_json_canonical_sha256(j, hex);
	json_decref(j);
	if (r < 0)
		return r;
	snprintf(ret, JOBSPEC_HASH_LEN + 1, "sha256:%s", hex);
	return 0;
}

bool jobspec_equal(const struct jobspec *a, const struct jobspec *b)
{
	_cleanup_free_ char *sa = NULL, *sb = NULL;

	if (jobspec_to_string(a, &sa) < 0 || jobspec_to_string(b, &sb) < 0)
		return false;
	return strcmp(sa, sb) == 0;
}
