/* SPDX-License-Identifier: Apache-2.0 */
#include "api/pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "lib/macro.h"
#include "lib/str.h"

/* Cycles named per schema; a dense cyclic graph has very many, the first few are enough. */
#define MAX_CYCLES_REPORTED 10
/* Stages shown in one cycle message before the middle is elided. */
#define CYCLE_SHOW_HEAD 4
#define CYCLE_SHOW_TAIL 3

static const char *const stage_type_names[_PIPELINE_STAGE_MAX] = {
	[PIPELINE_STAGE_BUILD] = "build", [PIPELINE_STAGE_TEST] = "test",
	[PIPELINE_STAGE_JOB] = "job",	  [PIPELINE_STAGE_APPROVAL] = "approval",
	[PIPELINE_STAGE_WAIT] = "wait",
};

/* Inline params: member name → the one stage type it belongs to. */
static const struct {
	const char *key;
	enum pipeline_stage_type type;
} stage_params[] = {
	{ "build_targets", PIPELINE_STAGE_BUILD },
	{ "test_target", PIPELINE_STAGE_TEST },
	{ "spec", PIPELINE_STAGE_JOB },
	{ "wait", PIPELINE_STAGE_WAIT },
};

const char *pipeline_stage_type_to_string(enum pipeline_stage_type t)
{
	return (unsigned)t < _PIPELINE_STAGE_MAX ? stage_type_names[t] : NULL;
}

int pipeline_stage_type_from_string(const char *s, enum pipeline_stage_type *ret)
{
	for (size_t i = 0; s && i < _PIPELINE_STAGE_MAX; i++)
		if (strcmp(stage_type_names[i], s) == 0) {
			*ret = (enum pipeline_stage_type)i;
			return 0;
		}
	return -EINVAL;
}

static void stage_release(struct pipeline_stage *st)
{
	free(st->name);
	strv_free(st->depends_on);
	free(st->deps);
	free(st->build_targets);
}

void pipeline_schema_free(struct pipeline_schema *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_stages; i++)
		stage_release(&s->stages[i]);
	free(s->stages);
	free(s->topo);
	free(s);
}

void pipeline_free(struct pipeline *pl)
{
	if (!pl)
		return;
	free(pl->name);
	free(pl->owner);
	free(pl->repo);
	free(pl->branch);
	pipeline_schema_free(pl->schema);
	free(pl);
}

int pipeline_find_stage(const struct pipeline_schema *s, const char *name)
{
	for (size_t i = 0; i < s->n_stages; i++)
		if (strcmp(s->stages[i].name, name) == 0)
			return (int)i;
	return -ENOENT;
}

size_t pipeline_stage_deps(const struct pipeline_schema *s, size_t i, const size_t **ret_deps)
{
	*ret_deps = s->stages[i].deps;
	return s->stages[i].n_deps;
}

const size_t *pipeline_topo_order(const struct pipeline_schema *s)
{
	return s->topo;
}

/* --- field checks --------------------------------------------------------------------------- */

/* Human-readable names: UTF-8 (jansson checked), no control characters, no surrounding spaces. */
static bool check_display_name(const char *s, const char *pointer, struct problem *p)
{
	size_t len = strlen(s);

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			problem_add_error(p, pointer, "must not contain control characters");
			return false;
		}
	if (s[0] == ' ' || s[len - 1] == ' ') {
		problem_add_error(p, pointer, "must not start or end with a space");
		return false;
	}
	return true;
}

static bool check_owner(const char *s, const char *pointer, struct problem *p)
{
	char q[API_JSON_QUOTE_MAX];

	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-')) {
			problem_add_error(p, pointer, "must hold only A-Z a-z 0-9 _ . - (is %s)",
					  api_json_quote(q, sizeof(q), s));
			return false;
		}
	return true;
}

/* A subset of git-check-ref-format(1) that also keeps the name safe on a command line. */
static bool check_branch(const char *s, const char *pointer, struct problem *p)
{
	char q[API_JSON_QUOTE_MAX];
	size_t len = strlen(s);
	const char *why = NULL;

	for (const char *c = s; *c && !why; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-' || *c == '/'))
			why = "must hold only A-Z a-z 0-9 _ . - /";
	if (!why && (s[0] == '-' || s[0] == '/' || s[0] == '.'))
		why = "must not start with '-', '/' or '.'";
	if (!why && (s[len - 1] == '/' || s[len - 1] == '.' || endswith(s, ".lock")))
		why = "must not end with '/', '.' or \".lock\"";
	if (!why && (strstr(s, "..") || strstr(s, "//") || strstr(s, "/.")))
		why = "must not contain \"..\", \"//\" or \"/.\"";
	if (why) {
		problem_add_error(p, pointer, "%s (is %s)", why, api_json_quote(q, sizeof(q), s));
		return false;
	}
	return true;
}

static bool check_repo(const char *s, const char *pointer, struct problem *p)
{
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
			problem_add_error(p, pointer,
					  "must not contain spaces or control characters");
			return false;
		}
	if (s[0] == '-') {
		/* it ends up as a git argument */
		problem_add_error(p, pointer, "must not start with '-'");
		return false;
	}
	return true;
}

static int check_target_value(const char *s, const char *pointer, struct target *ret,
			      struct problem *p)
{
	struct cd_error err = { 0 };

	if (strchr(s, '@')) {
		problem_add_error(
			p, pointer,
			"must be a target without \"@<commit>\": the run's commit is used");
		return -EINVAL;
	}
	if (target_parse(s, ret, &err) < 0) {
		problem_add_error(p, pointer, "%s", err.msg);
		return -EINVAL;
	}
	return 1;
}

/* A Target member; the commit is the run's, so "@commit" is refused with a clear message. */
static int get_target(const json_t *obj, const char *base, const char *key, bool required,
		      struct target *ret, struct problem *p)
{
	char pb[API_JSON_POINTER_MAX];
	const char *s;
	int r;

	r = api_json_get_string(obj, base, key, required, 1, SIZE_MAX, &s, p);
	if (r <= 0)
		return r;
	return check_target_value(s, problem_pointer(pb, sizeof(pb), base, key), ret, p);
}

/* --- decoding ------------------------------------------------------------------------------ */

static int decode_build_targets(const json_t *st, const char *base, struct pipeline_stage *out,
				struct problem *p)
{
	char pb[API_JSON_POINTER_MAX], eb[API_JSON_POINTER_MAX];
	const json_t *arr, *e;
	size_t i;
	int r;

	r = api_json_get_array(st, base, "build_targets", true, 1, PIPELINE_MAX_BUILD_TARGETS, &arr,
			       p);
	if (r <= 0)
		return 0;
	problem_pointer(pb, sizeof(pb), base, "build_targets");
	out->build_targets = calloc(json_array_size(arr), sizeof(struct target));
	if (!out->build_targets)
		return -ENOMEM;
	json_array_foreach(arr, i, e) {
		struct target t;
		const char *s;
		bool dup = false;

		problem_pointer_index(eb, sizeof(eb), pb, i);
		if (api_json_check_string(e, eb, 1, SIZE_MAX, &s, p) < 0 ||
		    check_target_value(s, eb, &t, p) < 0)
			continue;
		for (size_t k = 0; k < out->n_build_targets && !dup; k++)
			if (target_equal(&out->build_targets[k], &t)) {
				char tb[TARGET_MAX_LEN + 1];

				target_format(&t, tb, sizeof(tb));
				problem_add_error(p, eb, "duplicate build target %s", tb);
				dup = true;
			}
		if (!dup)
			out->build_targets[out->n_build_targets++] = t;
	}
	return 0;
}

static int decode_wait(const json_t *st, const char *base, struct pipeline_stage *out,
		       struct problem *p)
{
	static const char *const allowed[] = { "seconds", NULL };
	char pb[API_JSON_POINTER_MAX];
	const json_t *w;
	int64_t v;

	if (api_json_get_object(st, base, "wait", true, &w, p) <= 0)
		return 0;
	problem_pointer(pb, sizeof(pb), base, "wait");
	api_json_check_unknown(w, pb, allowed, p);
	if (api_json_get_int(w, pb, "seconds", true, 0, PIPELINE_MAX_WAIT_S, &v, p) > 0)
		out->wait_seconds = (uint32_t)v;
	return 0;
}

/*
 * Decode stage i at base (everything local to the stage; references are resolved later).
 * *ret_name is the stage's name as given when it is a string at all (even an invalid one), so
 * references to it do not produce a second, misleading "unknown stage" error. *ret_deps is the
 * depends_on array when there is one (borrowed from st).
 */
static int decode_stage(const json_t *st, const char *base, struct pipeline_stage *out,
			const char **ret_name, const json_t **ret_deps, struct problem *p)
{
	static const char *const allowed[] = { "name",	    "type",	     "depends_on",
					       "timeout_s", "build_targets", "test_target",
					       "spec",	    "wait",	     NULL };
	char pb[API_JSON_POINTER_MAX], q[API_JSON_QUOTE_MAX];
	const char *name, *type;
	int64_t timeout;
	int r, t = -1;

	*ret_name = NULL;
	*ret_deps = NULL;
	if (api_json_expect_object(st, base, p) < 0)
		return 0;
	api_json_check_unknown(st, base, allowed, p);

	if (json_is_string(json_object_get(st, "name")))
		*ret_name = json_string_value(json_object_get(st, "name"));
	if (api_json_get_string(st, base, "name", true, 1, PIPELINE_STAGE_NAME_MAX, &name, p) > 0 &&
	    check_display_name(name, problem_pointer(pb, sizeof(pb), base, "name"), p)) {
		out->name = strdup(name);
		if (!out->name)
			return -ENOMEM;
	}

	if (api_json_get_string(st, base, "type", true, 1, SIZE_MAX, &type, p) > 0) {
		enum pipeline_stage_type tt;

		if (pipeline_stage_type_from_string(type, &tt) < 0)
			problem_add_error(p, problem_pointer(pb, sizeof(pb), base, "type"),
					  "must be one of build, test, job, approval, wait (is %s)",
					  api_json_quote(q, sizeof(q), type));
		else
			t = (int)tt;
	}

	if (api_json_get_int(st, base, "timeout_s", false, 1, PIPELINE_MAX_TIMEOUT_S, &timeout, p) >
	    0)
		out->timeout_s = (uint32_t)timeout;

	r = api_json_get_array(st, base, "depends_on", false, 0, PIPELINE_MAX_DEPENDS_ON, ret_deps,
			       p);
	if (r > 0) {
		char db[API_JSON_POINTER_MAX], eb[API_JSON_POINTER_MAX];
		const json_t *e;
		bool bad = false;
		size_t k;

		/* Elements are checked one by one here; references are resolved (and reported
		 * per element) once every name is known. */
		out->has_depends_on = true;
		out->depends_on = calloc(json_array_size(*ret_deps) + 1, sizeof(char *));
		if (!out->depends_on)
			return -ENOMEM;
		problem_pointer(db, sizeof(db), base, "depends_on");
		json_array_foreach(*ret_deps, k, e) {
			const char *dep;

			problem_pointer_index(eb, sizeof(eb), db, k);
			if (api_json_check_string(e, eb, 1, PIPELINE_STAGE_NAME_MAX, &dep, p) < 0) {
				bad = true;
				continue;
			}
			if (!bad && !(out->depends_on[k] = strdup(dep)))
				return -ENOMEM;
		}
	}

	if (t < 0)
		return 0; /* unknown type: which params belong is unknowable */
	out->type = (enum pipeline_stage_type)t;
	for (size_t k = 0; k < ARRAY_SIZE(stage_params); k++)
		if (stage_params[k].type != out->type && json_object_get(st, stage_params[k].key))
			problem_add_error(
				p, problem_pointer(pb, sizeof(pb), base, stage_params[k].key),
				"is only valid for stages of type \"%s\" (this stage is \"%s\")",
				stage_type_names[stage_params[k].type], stage_type_names[t]);
	switch (out->type) {
	case PIPELINE_STAGE_BUILD:
		return decode_build_targets(st, base, out, p);
	case PIPELINE_STAGE_TEST:
		get_target(st, base, "test_target", true, &out->test_target, p);
		return 0;
	case PIPELINE_STAGE_JOB:
		get_target(st, base, "spec", true, &out->spec, p);
		return 0;
	case PIPELINE_STAGE_WAIT:
		return decode_wait(st, base, out, p);
	case PIPELINE_STAGE_APPROVAL:
	default:
		return 0;
	}
}

struct name_index {
	const char *const *names;
	size_t *order; /* indices of stages with a name, sorted by name then index */
	size_t n;
};

static int name_cmp(const void *a, const void *b, void *ctx)
{
	const char *const *names = ctx;
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int c = strcmp(names[ia], names[ib]);

	if (c)
		return c;
	return ia < ib ? -1 : ia > ib;
}

/* First stage (lowest index) called name, or -1. */
static ssize_t index_find(const struct name_index *ix, const char *name)
{
	size_t lo = 0, hi = ix->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(ix->names[ix->order[mid]], name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < ix->n && strcmp(ix->names[ix->order[lo]], name) == 0)
		return (ssize_t)ix->order[lo];
	return -1;
}

/* Min-heap of stage indices, for a topological order that keeps list order among ties. */
static void heap_push(size_t *h, size_t *n, size_t v)
{
	size_t i = (*n)++;

	while (i > 0 && h[(i - 1) / 2] > v) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *n)
{
	size_t top = h[0], v = h[--(*n)], i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= v)
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = v;
	return top;
}

static void report_cycle(const struct pipeline_schema *s, const char *base, const size_t *stack,
			 size_t from, size_t to, struct problem *p)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	char pb[API_JSON_POINTER_MAX], ib[API_JSON_POINTER_MAX];
	size_t len = to - from + 1;
	bool implicit = false;
	int r = 0;

	for (size_t k = from; k <= to; k++) {
		size_t pos = k - from;

		if (!s->stages[stack[k]].has_depends_on)
			implicit = true;
		if (len > CYCLE_SHOW_HEAD + CYCLE_SHOW_TAIL + 1 && pos == CYCLE_SHOW_HEAD)
			r |= strbuf_addf(&sb, "(%zu more) -> ",
					 len - CYCLE_SHOW_HEAD - CYCLE_SHOW_TAIL);
		if (len > CYCLE_SHOW_HEAD + CYCLE_SHOW_TAIL + 1 && pos >= CYCLE_SHOW_HEAD &&
		    pos < len - CYCLE_SHOW_TAIL)
			continue;
		r |= strbuf_addf(&sb, "%s -> ", s->stages[stack[k]].name);
	}
	r |= strbuf_adds(&sb, s->stages[stack[from]].name);
	if (r < 0) {
		p->oom = true;
		return;
	}
	problem_pointer_index(ib, sizeof(ib), base, stack[from]);
	if (s->stages[stack[from]].has_depends_on)
		problem_pointer(pb, sizeof(pb), ib, "depends_on");
	else
		snprintf(pb, sizeof(pb), "%s", ib);
	problem_add_error(p, pb, "dependency cycle: %s (read \"a -> b\" as \"a depends on b\"%s)",
			  sb.buf,
			  implicit ? "; a stage without depends_on depends on the one listed "
				     "before it" :
				     "");
}

/* Kahn's algorithm with a min-heap; when stages remain, name the cycles among them by DFS. */
static int order_stages(struct pipeline_schema *s, const char *base, struct problem *p)
{
	size_t n = s->n_stages, n_out = 0, n_heap = 0, n_edges = 0, n_cycles = 0;
	_cleanup_free_ size_t *pending = NULL, *heap = NULL, *rev_start = NULL, *rev = NULL,
			      *fill = NULL, *stack = NULL, *edge = NULL, *pos = NULL;
	_cleanup_free_ unsigned char *color = NULL;

	for (size_t i = 0; i < n; i++)
		n_edges += s->stages[i].n_deps;
	s->topo = calloc(MAX(n, 1), sizeof(size_t));
	pending = calloc(MAX(n, 1), sizeof(size_t));
	heap = calloc(MAX(n, 1), sizeof(size_t));
	rev_start = calloc(n + 1, sizeof(size_t));
	fill = calloc(n + 1, sizeof(size_t));
	rev = calloc(MAX(n_edges, 1), sizeof(size_t));
	if (!s->topo || !pending || !heap || !rev_start || !fill || !rev)
		return -ENOMEM;
	/* reverse edges (dependents) in CSR form */
	for (size_t i = 0; i < n; i++) {
		pending[i] = s->stages[i].n_deps;
		for (size_t k = 0; k < s->stages[i].n_deps; k++)
			rev_start[s->stages[i].deps[k] + 1]++;
	}
	for (size_t i = 0; i < n; i++)
		rev_start[i + 1] += rev_start[i];
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < s->stages[i].n_deps; k++) {
			size_t d = s->stages[i].deps[k];

			rev[rev_start[d] + fill[d]++] = i;
		}
	for (size_t i = 0; i < n; i++)
		if (pending[i] == 0)
			heap_push(heap, &n_heap, i);
	while (n_heap > 0) {
		size_t u = heap_pop(heap, &n_heap);

		s->topo[n_out++] = u;
		for (size_t k = rev_start[u]; k < rev_start[u + 1]; k++)
			if (--pending[rev[k]] == 0)
				heap_push(heap, &n_heap, rev[k]);
	}
	if (n_out == n)
		return 0;

	/* Cycles: iterative DFS over the stages Kahn could not order (pending > 0). */
	color = calloc(n, 1);
	stack = calloc(n, sizeof(size_t));
	edge = calloc(n, sizeof(size_t));
	pos = calloc(n, sizeof(size_t));
	if (!color || !stack || !edge || !pos)
		return -ENOMEM;
	for (size_t root = 0; root < n && n_cycles < MAX_CYCLES_REPORTED; root++) {
		size_t sp = 0;

		if (pending[root] == 0 || color[root])
			continue;
		color[root] = 1;
		pos[root] = 0;
		stack[sp] = root;
		edge[sp++] = 0;
		while (sp > 0) {
			size_t u = stack[sp - 1];

			if (edge[sp - 1] < s->stages[u].n_deps) {
				size_t v = s->stages[u].deps[edge[sp - 1]++];

				if (pending[v] == 0)
					continue;
				if (color[v] == 1) {
					if (n_cycles++ < MAX_CYCLES_REPORTED)
						report_cycle(s, base, stack, pos[v], sp - 1, p);
				} else if (color[v] == 0) {
					color[v] = 1;
					pos[v] = sp;
					stack[sp] = v;
					edge[sp++] = 0;
				}
			} else {
				color[u] = 2;
				sp--;
			}
		}
	}
	return 0;
}

/* A depends_on element that passed the element checks in decode_stage(). */
static const char *dep_name(const json_t *e)
{
	const char *s = json_string_value(e);
	size_t len = json_string_length(e);

	if (!s || len == 0 || len > PIPELINE_STAGE_NAME_MAX || strlen(s) != len)
		return NULL;
	return s;
}

/*
 * Resolve depends_on (or the implicit previous stage) into indices; report unknown names,
 * duplicates and self-dependencies at each element's pointer. dep_json[i] is stage i's
 * depends_on array (NULL when absent). With resolve false (names not usable) only unknown names
 * are reported.
 */
static int resolve_deps(struct pipeline_schema *s, const json_t *const *dep_json,
			const struct name_index *ix, const char *base, bool resolve,
			struct problem *p)
{
	char sb[API_JSON_POINTER_MAX], db[API_JSON_POINTER_MAX], eb[API_JSON_POINTER_MAX];
	char q[API_JSON_QUOTE_MAX];

	for (size_t i = 0; i < s->n_stages; i++) {
		struct pipeline_stage *st = &s->stages[i];
		const json_t *e;
		size_t k;

		if (!dep_json[i]) {
			if (!resolve || i == 0 || st->has_depends_on)
				continue;
			st->deps = malloc(sizeof(size_t));
			if (!st->deps)
				return -ENOMEM;
			st->deps[0] = i - 1;
			st->n_deps = 1;
			continue;
		}
		if (resolve) {
			st->deps = calloc(MAX(json_array_size(dep_json[i]), 1), sizeof(size_t));
			if (!st->deps)
				return -ENOMEM;
		}
		problem_pointer_index(sb, sizeof(sb), base, i);
		problem_pointer(db, sizeof(db), sb, "depends_on");
		json_array_foreach(dep_json[i], k, e) {
			const char *dep = dep_name(e);
			ssize_t d;
			bool dup = false;

			if (!dep)
				continue; /* already reported */
			problem_pointer_index(eb, sizeof(eb), db, k);
			d = index_find(ix, dep);
			if (d < 0) {
				problem_add_error(p, eb, "unknown stage %s",
						  api_json_quote(q, sizeof(q), dep));
				continue;
			}
			if (!resolve)
				continue;
			if ((size_t)d == i) {
				problem_add_error(p, eb, "a stage must not depend on itself");
				continue;
			}
			for (size_t m = 0; m < k && !dup; m++)
				dup = json_equal(json_array_get(dep_json[i], m), e);
			if (dup) {
				problem_add_error(p, eb, "duplicate dependency %s",
						  api_json_quote(q, sizeof(q), dep));
				continue;
			}
			st->deps[st->n_deps++] = (size_t)d;
		}
	}
	return 0;
}

int pipeline_schema_from_json_at(const json_t *j, const char *base, struct pipeline_schema **ret,
				 struct problem *p)
{
	char sb[API_JSON_POINTER_MAX], nb[API_JSON_POINTER_MAX], q[API_JSON_QUOTE_MAX];
	_cleanup_(pipeline_schema_freep) struct pipeline_schema *s = NULL;
	_cleanup_free_ const char **names = NULL;
	_cleanup_free_ const json_t **dep_json = NULL;
	struct name_index ix = { 0 };
	_cleanup_free_ size_t *order = NULL;
	bool names_ok = true;
	const json_t *st;
	size_t i, n;
	int r;

	if (!base)
		base = "";
	if (!json_is_array(j)) {
		problem_add_error(p, base, "must be an array of stages, not %s",
				  api_json_type_name(j));
		return api_json_finish_validation(p);
	}
	n = json_array_size(j);
	if (n == 0 || n > PIPELINE_MAX_STAGES) {
		problem_add_error(p, base, "must have 1 to %d stages (has %zu)",
				  PIPELINE_MAX_STAGES, n);
		return api_json_finish_validation(p);
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->stages = calloc(n, sizeof(struct pipeline_stage));
	names = calloc(n, sizeof(char *));
	order = calloc(n, sizeof(size_t));
	dep_json = calloc(n, sizeof(json_t *));
	if (!s->stages || !names || !order || !dep_json)
		return -ENOMEM;
	s->n_stages = n;

	json_array_foreach(j, i, st) {
		r = decode_stage(st, problem_pointer_index(sb, sizeof(sb), base, i), &s->stages[i],
				 &names[i], &dep_json[i], p);
		if (r < 0)
			return r;
		if (!s->stages[i].name)
			names_ok = false;
		if (names[i])
			order[ix.n++] = i;
	}

	/* duplicate names, found on a sorted index (10,000 stages must not cost n²) */
	ix.names = names;
	ix.order = order;
	qsort_r(order, ix.n, sizeof(size_t), name_cmp, names);
	for (size_t k = 1; k < ix.n; k++)
		if (strcmp(names[order[k]], names[order[k - 1]]) == 0) {
			problem_pointer(nb, sizeof(nb),
					problem_pointer_index(sb, sizeof(sb), base, order[k]),
					"name");
			problem_add_error(p, nb, "duplicate stage name %s (first at index %zu)",
					  api_json_quote(q, sizeof(q), names[order[k]]),
					  (size_t)index_find(&ix, names[order[k]]));
			names_ok = false;
		}

	/* with unusable names, still report unknown references, but resolve nothing */
	r = resolve_deps(s, dep_json, &ix, base, names_ok, p);
	if (r < 0)
		return r;
	if (!names_ok)
		return api_json_finish_validation(p);
	r = order_stages(s, base, p);
	if (r < 0)
		return r;
	r = api_json_finish_validation(p);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

static int set_string(char **dst, const char *s)
{
	char *c = strdup(s);

	if (!c)
		return -ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

int pipeline_from_json_at(const json_t *j, const char *base, struct pipeline **ret,
			  struct problem *p)
{
	static const char *const allowed[] = { "name", "owner", "schema", "repo", "branch", NULL };
	char pb[API_JSON_POINTER_MAX];
	_cleanup_pipeline_ struct pipeline *pl = NULL;
	const json_t *schema;
	const char *s;
	int r;

	if (!base)
		base = "";
	if (api_json_expect_object(j, base, p) < 0)
		return api_json_finish_validation(p);
	pl = calloc(1, sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	api_json_check_unknown(j, base, allowed, p);

	if (api_json_get_string(j, base, "name", true, 1, PIPELINE_NAME_MAX, &s, p) > 0 &&
	    check_display_name(s, problem_pointer(pb, sizeof(pb), base, "name"), p)) {
		r = set_string(&pl->name, s);
		if (r < 0)
			return r;
	}
	if (api_json_get_string(j, base, "owner", true, 1, PIPELINE_OWNER_MAX, &s, p) > 0 &&
	    check_owner(s, problem_pointer(pb, sizeof(pb), base, "owner"), p)) {
		r = set_string(&pl->owner, s);
		if (r < 0)
			return r;
	}
	if (api_json_get_string(j, base, "repo", false, 1, PIPELINE_REPO_MAX, &s, p) > 0 &&
	    check_repo(s, problem_pointer(pb, sizeof(pb), base, "repo"), p)) {
		r = set_string(&pl->repo, s);
		if (r < 0)
			return r;
	}
	if (api_json_get_string(j, base, "branch", false, 1, PIPELINE_BRANCH_MAX, &s, p) > 0) {
		problem_pointer(pb, sizeof(pb), base, "branch");
		if (!json_object_get(j, "repo") || json_is_null(json_object_get(j, "repo"))) {
			problem_add_error(p, pb, "needs \"repo\" (the repository to poll)");
		} else if (check_branch(s, pb, p)) {
			r = set_string(&pl->branch, s);
			if (r < 0)
				return r;
		}
	}
	if (pl->repo && !pl->branch) {
		r = set_string(&pl->branch, PIPELINE_DEFAULT_BRANCH);
		if (r < 0)
			return r;
	}

	r = api_json_get_array(j, base, "schema", true, 0, SIZE_MAX, &schema, p);
	if (r > 0) {
		/* the schema's own errors are collected into the same problem */
		r = pipeline_schema_from_json_at(
			schema, problem_pointer(pb, sizeof(pb), base, "schema"), &pl->schema, p);
		if (r == -ENOMEM)
			return r;
	}
	r = api_json_finish_validation(p);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(pl);
	return 0;
}

int pipeline_from_string(const char *buf, size_t len, struct pipeline **ret, struct problem *p)
{
	json_t *j = NULL;
	int r;

	r = api_json_parse(buf, len, &j, p);
	if (r < 0)
		return r;
	r = pipeline_from_json(j, ret, p);
	json_decref(j);
	return r;
}

int pipeline_schema_from_string(const char *buf, size_t len, struct pipeline_schema **ret,
				struct problem *p)
{
	json_t *j = NULL;
	int r;

	r = api_json_parse(buf, len, &j, p);
	if (r < 0)
		return r;
	r = pipeline_schema_from_json_at(j, "", ret, p);
	json_decref(j);
	return r;
}

/* --- encoding ------------------------------------------------------------------------------ */

static json_t *target_json(const struct target *t)
{
	char buf[TARGET_MAX_LEN + 1];

	if (target_format(t, buf, sizeof(buf)) < 0)
		return NULL;
	return json_string(buf);
}

static json_t *stage_to_json(const struct pipeline_stage *st)
{
	json_t *o, *a;
	int r = 0;

	if (!st->name || !pipeline_stage_type_to_string(st->type))
		return NULL;
	o = json_pack("{s:s, s:s}", "name", st->name, "type",
		      pipeline_stage_type_to_string(st->type));
	if (!o)
		return NULL;
	if (st->has_depends_on) {
		a = json_array();
		for (size_t k = 0; a && st->depends_on && st->depends_on[k]; k++)
			r |= json_array_append_new(a, json_string(st->depends_on[k]));
		r |= json_object_set_new(o, "depends_on", a);
	}
	if (st->timeout_s)
		r |= json_object_set_new(o, "timeout_s", json_integer(st->timeout_s));
	switch (st->type) {
	case PIPELINE_STAGE_BUILD:
		if (st->n_build_targets == 0)
			r = -1;
		a = json_array();
		for (size_t k = 0; a && k < st->n_build_targets; k++)
			r |= json_array_append_new(a, target_json(&st->build_targets[k]));
		r |= json_object_set_new(o, "build_targets", a);
		break;
	case PIPELINE_STAGE_TEST:
		r |= json_object_set_new(o, "test_target", target_json(&st->test_target));
		break;
	case PIPELINE_STAGE_JOB:
		r |= json_object_set_new(o, "spec", target_json(&st->spec));
		break;
	case PIPELINE_STAGE_WAIT:
		r |= json_object_set_new(
			o, "wait", json_pack("{s:I}", "seconds", (json_int_t)st->wait_seconds));
		break;
	case PIPELINE_STAGE_APPROVAL:
	default:
		break;
	}
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int pipeline_schema_to_json(const struct pipeline_schema *s, json_t **ret)
{
	json_t *a = json_array();

	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_stages; i++) {
		json_t *o = stage_to_json(&s->stages[i]);

		/* NULL is either ENOMEM or an invalid stage; an invalid one is the caller's bug,
		 * which -EINVAL names better */
		if (!o || json_array_append_new(a, o) < 0) {
			json_decref(a);
			return -EINVAL;
		}
	}
	*ret = a;
	return 0;
}

int pipeline_to_json(const struct pipeline *pl, json_t **ret)
{
	json_t *o, *schema = NULL;
	int r;

	if (!pl->name || !pl->owner || !pl->schema || (!pl->repo != !pl->branch))
		return -EINVAL;
	r = pipeline_schema_to_json(pl->schema, &schema);
	if (r < 0)
		return r;
	o = json_pack("{s:s, s:s, s:o}", "name", pl->name, "owner", pl->owner, "schema", schema);
	if (!o)
		return -ENOMEM;
	if (pl->repo && (json_object_set_new(o, "repo", json_string(pl->repo)) < 0 ||
			 json_object_set_new(o, "branch", json_string(pl->branch)) < 0)) {
		json_decref(o);
		return -ENOMEM;
	}
	*ret = o;
	return 0;
}

int pipeline_to_string(const struct pipeline *pl, char **ret)
{
	json_t *j = NULL;
	char *s;
	int r;

	r = pipeline_to_json(pl, &j);
	if (r < 0)
		return r;
	s = api_json_dump_canonical(j);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

bool pipeline_equal(const struct pipeline *a, const struct pipeline *b)
{
	_cleanup_free_ char *sa = NULL, *sb = NULL;

	if (pipeline_to_string(a, &sa) < 0 || pipeline_to_string(b, &sb) < 0)
		return false;
	return strcmp(sa, sb) == 0;
}
