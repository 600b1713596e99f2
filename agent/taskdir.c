/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/taskdir.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fs.h"
#include "lib/macro.h"
#include "lib/str.h"

#define TASKDIR_MAX_BYTES (4 * 1024 * 1024)

#define _cleanup_json_ _cleanup_(json_decrefp)

void launch_spec_release(struct launch_spec *s)
{
	if (!s)
		return;
	free(s->task_id);
	free(s->cgroup_parent);
	free(s->cgroup_name);
	strv_free(s->argv);
	for (size_t i = 0; i < s->n_env; i++) {
		free(s->env[i].key);
		free(s->env[i].value);
	}
	free(s->env);
	free(s->app_dir);
	free(s->net);
	free(s->bridge);
	free(s->subnet);
	strv_free(s->mask);
	free(s->init_binary);
	*s = (struct launch_spec){ 0 };
}

static json_t *strv_to_json(char *const *v)
{
	json_t *a = json_array();

	for (size_t i = 0; a && v && v[i]; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

int launch_spec_to_string(const struct launch_spec *s, char **ret)
{
	_cleanup_json_ json_t *j = NULL;
	json_t *env;
	char *text;

	if (!s->task_id || !s->cgroup_parent || !s->cgroup_name || !s->argv || !s->argv[0] ||
	    !s->net)
		return -EINVAL;
	env = json_object();
	for (size_t i = 0; env && i < s->n_env; i++)
		if (json_object_set_new(env, s->env[i].key, json_string(s->env[i].value)) < 0) {
			json_decref(env);
			return -ENOMEM;
		}
	j = json_pack("{s:s, s:I, s:s, s:s, s:o, s:o, s:s?, s:s, s:I, s:I, s:I, s:I, s:I, "
		      "s:{s:I, s:I, s:I}, s:o, s:s?}",
		      "task_id", s->task_id, "generation", (json_int_t)s->generation,
		      "cgroup_parent", s->cgroup_parent, "cgroup_name", s->cgroup_name, "argv",
		      strv_to_json(s->argv), "env", env, "app_dir", s->app_dir, "net", s->net,
		      "memory_mb", (json_int_t)s->memory_mb, "millicpus", (json_int_t)s->millicpus,
		      "pids_max", (json_int_t)s->pids_max, "storage_mb", (json_int_t)s->storage_mb,
		      "stop_grace_s", (json_int_t)s->stop_grace_s, "log", "max_bytes",
		      (json_int_t)s->log_max_bytes, "keep", (json_int_t)s->log_keep, "line_max",
		      (json_int_t)s->log_line_max, "mask", strv_to_json(s->mask), "init_binary",
		      s->init_binary);
	if (!j)
		return -ENOMEM;
	/* Only when set, so a launch.json without them reads as the sandbox's defaults. */
	if ((s->bridge && json_object_set_new(j, "bridge", json_string(s->bridge)) < 0) ||
	    (s->subnet && json_object_set_new(j, "subnet", json_string(s->subnet)) < 0))
		return -ENOMEM;
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return -ENOMEM;
	*ret = text;
	return 0;
}

static int get_str(const json_t *j, const char *key, bool required, char **ret,
		   struct cd_error *err)
{
	const json_t *v = json_object_get(j, key);

	if (!v || json_is_null(v)) {
		if (required)
			return cd_error_set(err, -EINVAL, "launch spec: missing '%s'", key);
		*ret = NULL;
		return 0;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return cd_error_set(err, -EINVAL, "launch spec: '%s' must be a string", key);
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

static int get_uint(const json_t *j, const char *key, uint64_t max, uint64_t *ret,
		    struct cd_error *err)
{
	const json_t *v = json_object_get(j, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return cd_error_set(err, -EINVAL, "launch spec: '%s' must be an integer 0..%llu",
				    key, (unsigned long long)max);
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_strv(const json_t *j, const char *key, bool nonempty, char ***ret,
		    struct cd_error *err)
{
	const json_t *a = json_object_get(j, key);
	char **v;
	size_t n;

	if (!json_is_array(a) || (nonempty && json_array_size(a) == 0))
		return cd_error_set(err, -EINVAL, "launch spec: '%s' must be a%s array", key,
				    nonempty ? " non-empty" : "n");
	n = json_array_size(a);
	v = calloc(n + 1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(a, i);

		if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
			strv_free(v);
			return cd_error_set(err, -EINVAL, "launch spec: '%s' holds a non-string",
					    key);
		}
		v[i] = strdup(json_string_value(e));
		if (!v[i]) {
			strv_free(v);
			return -ENOMEM;
		}
	}
	*ret = v;
	return 0;
}

int launch_spec_from_string(const char *text, struct launch_spec *ret, struct cd_error *err)
{
	_cleanup_json_ json_t *j = NULL;
	struct launch_spec s = { 0 };
	const json_t *env, *log;
	uint64_t u;
	int r;

	j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(j))
		return cd_error_set(err, -EINVAL, "launch spec: not a JSON object");
	log = json_object_get(j, "log");
	env = json_object_get(j, "env");
	if (!json_is_object(log) || !json_is_object(env))
		return cd_error_set(err, -EINVAL, "launch spec: 'log' and 'env' must be objects");
#define TRY(x)                                                                                     \
	do {                                                                                       \
		r = (x);                                                                           \
		if (r < 0)                                                                         \
			goto fail;                                                                 \
	} while (0)
	TRY(get_str(j, "task_id", true, &s.task_id, err));
	TRY(get_str(j, "cgroup_parent", true, &s.cgroup_parent, err));
	TRY(get_str(j, "cgroup_name", true, &s.cgroup_name, err));
	TRY(get_str(j, "app_dir", false, &s.app_dir, err));
	TRY(get_str(j, "init_binary", false, &s.init_binary, err));
	TRY(get_str(j, "net", true, &s.net, err));
	TRY(get_str(j, "bridge", false, &s.bridge, err));
	TRY(get_str(j, "subnet", false, &s.subnet, err));
	TRY(get_strv(j, "argv", true, &s.argv, err));
	TRY(get_strv(j, "mask", false, &s.mask, err));
	TRY(get_uint(j, "generation", UINT32_MAX, &u, err));
	s.generation = (unsigned)u;
	TRY(get_uint(j, "memory_mb", UINT64_C(1) << 32, &s.memory_mb, err));
	TRY(get_uint(j, "millicpus", UINT32_MAX, &u, err));
	s.millicpus = (uint32_t)u;
	TRY(get_uint(j, "pids_max", UINT64_C(1) << 32, &s.pids_max, err));
	TRY(get_uint(j, "storage_mb", UINT64_C(1) << 40, &s.storage_mb, err));
	TRY(get_uint(j, "stop_grace_s", 86400, &u, err));
	s.stop_grace_s = (unsigned)u;
	TRY(get_uint(log, "max_bytes", UINT64_C(1) << 40, &s.log_max_bytes, err));
	TRY(get_uint(log, "keep", 1000, &u, err));
	s.log_keep = (unsigned)u;
	TRY(get_uint(log, "line_max", 1 << 24, &u, err));
	s.log_line_max = (unsigned)u;
	if (s.log_max_bytes == 0 || s.log_line_max < 2) {
		r = cd_error_set(err, -EINVAL, "launch spec: log limits too small");
		goto fail;
	}
	s.n_env = json_object_size(env);
	s.env = calloc(s.n_env ? s.n_env : 1, sizeof(*s.env));
	if (!s.env) {
		r = -ENOMEM;
		goto fail;
	}
	{
		const char *k;
		const json_t *v;
		size_t i = 0;

		for (void *it = json_object_iter((json_t *)env);
		     it && (k = json_object_iter_key(it)) && (v = json_object_iter_value(it));
		     it = json_object_iter_next((json_t *)env, it)) {
			if (!json_is_string(v) || strchr(k, '=') || !*k) {
				s.n_env = i;
				r = cd_error_set(err, -EINVAL, "launch spec: bad env entry");
				goto fail;
			}
			s.env[i].key = strdup(k);
			s.env[i].value = strdup(json_string_value(v));
			i++;
			if (!s.env[i - 1].key || !s.env[i - 1].value) {
				s.n_env = i;
				r = -ENOMEM;
				goto fail;
			}
		}
	}
#undef TRY
	*ret = s;
	return 0;
fail:
	launch_spec_release(&s);
	return r;
}

static const char *const phase_names[_SHIM_PHASE_MAX] = {
	[SHIM_STARTING] = "starting",
	[SHIM_RUNNING] = "running",
	[SHIM_EXITED] = "exited",
	[SHIM_FAILED] = "failed",
};

const char *shim_phase_to_string(enum shim_phase p)
{
	return (unsigned)p < _SHIM_PHASE_MAX ? phase_names[p] : NULL;
}

void shim_status_init(struct shim_status *s)
{
	*s = (struct shim_status){ .exit_code = -1 };
}

int shim_status_to_string(const struct shim_status *s, char **ret)
{
	_cleanup_json_ json_t *j = NULL;
	char *text;

	if (!shim_phase_to_string(s->phase))
		return -EINVAL;
	j = json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:I}",
		      "generation", (json_int_t)s->generation, "phase",
		      shim_phase_to_string(s->phase), "shim_pid", (json_int_t)s->shim_pid,
		      "shim_start", (json_int_t)s->shim_start, "pid", (json_int_t)s->pid,
		      "pid_start", (json_int_t)s->pid_start, "started_at",
		      (json_int_t)s->started_at, "finished_at", (json_int_t)s->finished_at,
		      "exit_code", (json_int_t)s->exit_code, "signal", (json_int_t)s->signal,
		      "reason", s->reason, "message", s->message, "oom_kills",
		      (json_int_t)s->oom_kills, "log_dropped", (json_int_t)s->log_dropped);
	if (!j)
		return -ENOMEM;
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return -ENOMEM;
	*ret = text;
	return 0;
}

int shim_status_from_string(const char *text, struct shim_status *ret)
{
	_cleanup_json_ json_t *j = json_loads(text, 0, NULL);
	struct shim_status s;
	json_int_t gen, spid, sstart, pid, pstart = 0, sat, fat, code, sig, oom, dropped;
	const char *phase, *reason, *message;

	shim_status_init(&s);
	if (!j)
		return -EINVAL;
	/* pid_start is optional: records of shims older than the field */
	if (json_unpack(j, "{s:I, s:s, s:I, s:I, s:I, s?I, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:I}",
			"generation", &gen, "phase", &phase, "shim_pid", &spid, "shim_start",
			&sstart, "pid", &pid, "pid_start", &pstart, "started_at", &sat,
			"finished_at", &fat, "exit_code", &code, "signal", &sig, "reason", &reason,
			"message", &message, "oom_kills", &oom, "log_dropped", &dropped) < 0)
		return -EINVAL;
	s.phase = _SHIM_PHASE_MAX;
	for (unsigned i = 0; i < _SHIM_PHASE_MAX; i++)
		if (streq(phase, phase_names[i]))
			s.phase = (enum shim_phase)i;
	if (s.phase == _SHIM_PHASE_MAX || gen < 0 || spid < 0 || pid < 0 || code < -1 ||
	    code > 255 || sig < 0 || sig > 64)
		return -EINVAL;
	s.generation = (unsigned)gen;
	s.shim_pid = (pid_t)spid;
	s.shim_start = (uint64_t)sstart;
	s.pid = (pid_t)pid;
	s.pid_start = pstart > 0 ? (uint64_t)pstart : 0;
	s.started_at = (usec_t)sat;
	s.finished_at = (usec_t)fat;
	s.exit_code = (int)code;
	s.signal = (int)sig;
	s.oom_kills = (uint64_t)oom;
	s.log_dropped = (uint64_t)dropped;
	snprintf(s.reason, sizeof(s.reason), "%s", reason);
	snprintf(s.message, sizeof(s.message), "%s", message);
	*ret = s;
	return 0;
}

int shim_status_write(int dirfd, const struct shim_status *s)
{
	_cleanup_free_ char *text = NULL;
	int r = shim_status_to_string(s, &text);

	if (r < 0)
		return r;
	return fs_write_atomic_at(dirfd, TASKDIR_STATUS, text, strlen(text), 0600);
}

int shim_status_read(int dirfd, struct shim_status *ret)
{
	_cleanup_free_ char *text = NULL;
	int r = fs_read_file_at(dirfd, TASKDIR_STATUS, TASKDIR_MAX_BYTES, &text, NULL);

	if (r < 0)
		return r;
	return shim_status_from_string(text, ret);
}
