/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The artifacts role of deployd: bazel-remote compatible blob endpoints (GET/HEAD/PUT
 * /cas/<sha256 hex>) over cas.h, and the target@commit index (/v1/artifacts) over the store.
 * Blob reads are open by default (cas_public_read): a blob is addressed by its hash, and taskd's
 * fetcher, like bazel-remote clients, sends no credentials; writes need a token.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api/json.h"
#include "api/names.h"
#include "central/cas.h"
#include "central/deployd.h"
#include "lib/macro.h"
#include "lib/str.h"

struct artifacts_role {
	struct deployd *d;
	struct cas *cas;
	bool evict;
	/* Index PUTs hold it shared from "the blob exists" to the commit; an eviction holds it
	 * exclusively from reading the pinned set to its last unlink, so it never removes a blob
	 * that is being indexed. */
	pthread_rwlock_t index_lock;
	uint64_t puts_ok, puts_rejected, gets;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct pin_set {
	char **digests; /* sorted "sha256:<hex>" of the index */
	size_t n;
};

static bool blob_pinned(const char *hex, void *ctx)
{
	const struct pin_set *ps = ctx;
	char key[80], *k = key;

	snprintf(key, sizeof(key), "sha256:%s", hex);
	return bsearch(&k, ps->digests, ps->n, sizeof(char *), cmp_str) != NULL;
}

/*
 * Make room for need bytes by evicting unindexed blobs (bazel-remote cache entries, uploads
 * that were never indexed), least recently used first. Indexed blobs are releases a rollback
 * may need: they stay. Returns 0 when there is room now.
 */
static int make_room(struct artifacts_role *ar, uint64_t need, struct cd_error *err)
{
	_cleanup_strv_free_ char **pinned = NULL;
	struct pin_set ps = {};
	uint64_t freed = 0;
	int r;

	if (!ar->evict)
		return -ENOSPC;
	pthread_rwlock_wrlock(&ar->index_lock);
	r = store_artifact_digests(deployd_store(ar->d), &pinned, err);
	if (r >= 0) {
		ps.digests = pinned;
		while (pinned[ps.n])
			ps.n++;
		r = cas_evict(ar->cas, need, blob_pinned, &ps, &freed, err);
	}
	pthread_rwlock_unlock(&ar->index_lock);
	if (freed) {
		char ev[96];

		snprintf(ev, sizeof(ev), "{\"freed_bytes\":%llu,\"needed_bytes\":%llu}",
			 (unsigned long long)freed, (unsigned long long)need);
		store_event_append(deployd_store(ar->d), "deployd", "cas.evict", "cas", ev, NULL,
				   NULL);
	}
	return r;
}

/* "bytes=N-" or "bytes=N-M" → [start, end]; 0 ok, -EINVAL unsupported/invalid, -ERANGE
 * unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *ret_start, uint64_t *ret_end)
{
	const char *r = startswith(h, "bytes=");
	char a[32] = "", b[32] = "";
	const char *dash;
	uint64_t start, end = size ? size - 1 : 0;

	if (!r || strchr(r, ','))
		return -EINVAL;
	dash = strchr(r, '-');
	if (!dash || (size_t)(dash - r) >= sizeof(a) || strlen(dash + 1) >= sizeof(b))
		return -EINVAL;
	memcpy(a, r, (size_t)(dash - r));
	snprintf(b, sizeof(b), "%s", dash + 1);
	if (!*a) /* suffix range "-N" */
		return -EINVAL;
	if (parse_u64(a, &start) < 0 || (*b && parse_u64(b, &end) < 0))
		return -EINVAL;
	if (start >= size)
		return -ERANGE;
	if (end >= size)
		end = size - 1;
	if (end < start)
		return -EINVAL;
	*ret_start = start;
	*ret_end = end;
	return 0;
}

static void h_cas_get(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct artifacts_role *ar = data;
	const char *hex = http_request_param(req, "hex");
	const char *range = http_request_header(req, "Range");
	_cleanup_close_ int fd = -EBADF;
	uint64_t size = 0, start = 0, end = 0;
	void *map = NULL;
	int r;

	__atomic_add_fetch(&ar->gets, 1, __ATOMIC_RELAXED);
	r = cas_open_blob(ar->cas, hex, &fd, &size);
	if (r == -EINVAL) {
		http_reply_error(req, 400, "not a sha256 digest: 64 lowercase hex expected");
		return;
	}
	if (r < 0) {
		http_reply_error(req, 404, "no blob sha256:%s", hex);
		return;
	}
	http_reply_header(req, "Accept-Ranges", "bytes");
	http_reply_header(req, "ETag", hex);
	if (size == 0) {
		http_reply_bytes(req, 200, "application/octet-stream", "", 0);
		return;
	}
	if (range) {
		r = parse_range(range, size, &start, &end);
		if (r == -ERANGE) {
			char cr[64];

			snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
			http_reply_header(req, "Content-Range", cr);
			http_reply_error(req, 416, "range not satisfiable");
			return;
		}
		if (r < 0)
			range = NULL; /* unsupported forms: the whole blob (RFC 9110 allows it) */
	}
	map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		http_reply_error(req, 500, "mmap: %s", strerror(errno));
		return;
	}
	if (range) {
		char cr[96];

		snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)start,
			 (unsigned long long)end, (unsigned long long)size);
		http_reply_header(req, "Content-Range", cr);
		http_reply_bytes(req, 206, "application/octet-stream", (char *)map + start,
				 end - start + 1);
	} else
		http_reply_bytes(req, 200, "application/octet-stream", map, size);
	munmap(map, size);
}

static void h_cas_put(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct artifacts_role *ar = data;
	const char *hex = http_request_param(req, "hex");
	int64_t len = http_request_content_length(req);
	struct cas_writer *w = NULL;
	struct cd_error err = {};
	bool created = false;
	char buf[65536];
	int r;

	if (!cas_hex_valid(hex)) {
		http_reply_error(req, 400, "not a sha256 digest: 64 lowercase hex expected");
		return;
	}
	if (len < 0) {
		http_reply_error(req, 411, "PUT /cas needs Content-Length");
		return;
	}
	r = cas_writer_new(ar->cas, hex, (uint64_t)len, &w, &err);
	if (r == -ENOSPC && make_room(ar, (uint64_t)len, NULL) >= 0)
		r = cas_writer_new(ar->cas, hex, (uint64_t)len, &w, &err);
	if (r < 0) {
		__atomic_add_fetch(&ar->puts_rejected, 1, __ATOMIC_RELAXED);
		http_reply_error(req,
				 r == -EFBIG  ? 413 :
				 r == -ENOSPC ? 507 :
						500,
				 "%s", cd_error_message(&err));
		return;
	}
	for (;;) {
		ssize_t n = http_request_read(req, buf, sizeof(buf));

		if (n == 0)
			break;
		if (n < 0) {
			cas_writer_abort(w);
			__atomic_add_fetch(&ar->puts_rejected, 1, __ATOMIC_RELAXED);
			http_reply_error(req, n == -EFBIG ? 413 : 400, "reading the body: %s",
					 strerror((int)-n));
			return;
		}
		r = cas_writer_write(w, buf, (size_t)n, &err);
		if (r < 0) {
			cas_writer_abort(w);
			__atomic_add_fetch(&ar->puts_rejected, 1, __ATOMIC_RELAXED);
			http_reply_error(req,
					 r == -ENOSPC ? 507 :
					 r == -EFBIG  ? 400 :
							500,
					 "%s", cd_error_message(&err));
			return;
		}
	}
	r = cas_writer_commit(w, &created, &err);
	if (r < 0) {
		__atomic_add_fetch(&ar->puts_rejected, 1, __ATOMIC_RELAXED);
		http_reply_error(req,
				 r == -EBADMSG ? 400 :
				 r == -ENOSPC  ? 507 :
						 500,
				 "%s", cd_error_message(&err));
		return;
	}
	__atomic_add_fetch(&ar->puts_ok, 1, __ATOMIC_RELAXED);
	if (created) {
		char ev[128];

		snprintf(ev, sizeof(ev), "{\"size\":%lld}", (long long)len);
		store_event_append(deployd_store(ar->d), who->actor, "blob.put", hex, ev, NULL,
				   NULL);
	}
	http_reply_empty(req, created ? 201 : 200);
}

/* "{ref*}" → target + commit. Accepts "//t:name@commit" (percent-encoded) and the same without
 * the leading "//" (a path cannot hold "//" without encoding). 404 replied on error. */
static int ref_from_req(struct http_request *req, struct artifact *a, char *target, size_t tsize)
{
	const char *ref = http_request_param(req, "ref");
	struct cd_error err = {};
	char buf[ARTIFACT_MAX_LEN + 3];

	if (!ref || strlen(ref) > ARTIFACT_MAX_LEN) {
		http_reply_error(req, 404, "expected /v1/artifacts/<target>@<commit>");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s%s", startswith(ref, "//") ? "" : "//", ref);
	if (artifact_parse(buf, a, &err) < 0) {
		http_reply_error(req, 404, "%s", cd_error_message(&err));
		return -EINVAL;
	}
	target_format(&a->target, target, tsize);
	return 0;
}

static json_t *artifact_to_json(const struct store_artifact *a)
{
	char ts[40], ref[ARTIFACT_MAX_LEN + 1];

	snprintf(ref, sizeof(ref), "%s@%s", a->target, a->commit);
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s?, s:s}", "artifact", ref, "target",
			 a->target, "commit", a->commit, "digest", a->digest, "size",
			 (json_int_t)a->size, "created_by", a->created_by, "created_at",
			 clock_format_rfc3339(a->created_at, ts, sizeof(ts)));
}

static void h_index_put(struct http_request *req, const struct deployd_principal *who, void *data)
{
	static const char *const allowed[] = { "digest", "size", NULL };
	struct artifacts_role *ar = data;
	char target[TARGET_MAX_LEN + 1];
	struct store_artifact a = {}, got = {};
	struct cd_error err = {};
	struct artifact ref;
	struct digest dg;
	const char *digest = NULL;
	int64_t size = -1;
	bool created = false, locked = false;
	json_t *body = NULL;
	struct problem p;
	int r;

	if (ref_from_req(req, &ref, target, sizeof(target)) < 0)
		return;
	problem_init(&p, 0, NULL, NULL);
	r = http_request_json(req, &body, &p);
	if (r >= 0)
		r = api_json_expect_object(body, "", &p);
	if (r >= 0) {
		api_json_check_unknown(body, "", allowed, &p);
		if (api_json_get_string(body, "", "digest", true, 1, 80, &digest, &p) > 0 &&
		    digest_parse(digest, &dg, &err) < 0)
			problem_add_error(&p, "/digest", "%s", cd_error_message(&err));
		api_json_get_int(body, "", "size", true, 0, INT64_MAX, &size, &p);
		if (digest && size >= 0 && !problem_has_errors(&p)) {
			_cleanup_close_ int fd = -EBADF;
			uint64_t have = 0;

			/* NEEDSWORK: orders index PUTs against this process's evictions only;
			 * artifacts processes sharing one CAS directory would need the pin in
			 * the database. */
			pthread_rwlock_rdlock(&ar->index_lock);
			locked = true;
			/* The index only points at blobs that exist and match. */
			if (cas_open_blob(ar->cas, dg.hex, &fd, &have) < 0)
				problem_add_error(&p, "/digest",
						  "sha256:%s is not in the store; "
						  "PUT /cas/%s first",
						  dg.hex, dg.hex);
			else if (have != (uint64_t)size)
				problem_add_error(&p, "/size", "the blob has %llu bytes",
						  (unsigned long long)have);
		}
		r = api_json_finish_validation(&p);
	}
	if (r < 0) {
		if (!p.status)
			problem_set(&p, 500, NULL, "Internal Server Error");
		http_reply_problem(req, &p);
		goto out;
	}
	a.target = target;
	snprintf(a.commit, sizeof(a.commit), "%s", ref.commit);
	snprintf(a.digest, sizeof(a.digest), "sha256:%s", dg.hex);
	a.size = size;
	a.created_by = (char *)who->actor;
	r = store_begin(deployd_store(ar->d), &err);
	if (r >= 0)
		r = store_artifact_put(deployd_store(ar->d), &a, &created, &err);
	if (r >= 0 && created) {
		char subj[ARTIFACT_MAX_LEN + 1], ev[128];

		snprintf(subj, sizeof(subj), "%s@%s", target, ref.commit);
		snprintf(ev, sizeof(ev), "{\"digest\":\"%s\",\"size\":%lld}", a.digest,
			 (long long)size);
		r = store_event_append(deployd_store(ar->d), who->actor, "artifact.put", subj, ev,
				       NULL, &err);
	}
	if (r >= 0)
		r = store_commit(deployd_store(ar->d), &err);
	else
		store_rollback(deployd_store(ar->d));
	if (r == -EEXIST) {
		http_reply_error(req, 409, "%s (artifacts are immutable)", cd_error_message(&err));
		goto out;
	}
	if (r < 0) {
		http_reply_error(req, 500, "%s", cd_error_message(&err));
		goto out;
	}
	r = store_artifact_get(deployd_store(ar->d), target, ref.commit, &got, &err);
	if (r < 0)
		http_reply_error(req, 500, "%s", cd_error_message(&err));
	else
		http_reply_json_new(req, created ? 201 : 200, artifact_to_json(&got));
	store_artifact_release(&got);
out:
	if (locked)
		pthread_rwlock_unlock(&ar->index_lock);
	json_decref(body);
	problem_release(&p);
}

static void h_index_get(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct artifacts_role *ar = data;
	char target[TARGET_MAX_LEN + 1];
	struct store_artifact a = {};
	struct cd_error err = {};
	struct artifact ref;
	int r;

	if (ref_from_req(req, &ref, target, sizeof(target)) < 0)
		return;
	r = store_artifact_get(deployd_store(ar->d), target, ref.commit, &a, &err);
	if (r == -ENOENT) {
		http_reply_error(req, 404, "no artifact %s@%s", target, ref.commit);
		return;
	}
	if (r < 0) {
		http_reply_error(req, 500, "%s", cd_error_message(&err));
		return;
	}
	http_reply_json_new(req, 200, artifact_to_json(&a));
	store_artifact_release(&a);
}

static void h_index_list(struct http_request *req, const struct deployd_principal *who, void *data)
{
	struct artifacts_role *ar = data;
	const char *target_q = http_request_query(req, "target");
	char target[TARGET_MAX_LEN + 1];
	struct store_artifact *v = NULL;
	struct cd_error err = {};
	const char *token = NULL;
	size_t page, n = 0;
	uint64_t offset = 0;
	json_t *arr;
	int r;

	if (deployd_page_params(req, 100, 1000, &page, &token) < 0)
		return;
	if (token && parse_u64(token, &offset) < 0) {
		http_reply_error(req, 400, "invalid page_token");
		return;
	}
	if (target_q && *target_q) {
		struct target t;

		if (target_parse(target_q, &t, &err) < 0) {
			http_reply_error(req, 400, "target: %s", cd_error_message(&err));
			return;
		}
		target_format(&t, target, sizeof(target));
		target_q = target;
	} else
		target_q = NULL;
	r = store_artifact_list(deployd_store(ar->d), target_q, offset, page + 1, &v, &n, &err);
	if (r < 0) {
		http_reply_error(req, 500, "%s", cd_error_message(&err));
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n && i < page; i++)
		json_array_append_new(arr, artifact_to_json(&v[i]));
	if (n > page) {
		char next[32];

		snprintf(next, sizeof(next), "%llu", (unsigned long long)(offset + page));
		http_reply_json_new(req, 200,
				    json_pack("{s:o, s:s}", "artifacts", arr, "next_page_token",
					      next));
	} else
		http_reply_json_new(req, 200,
				    json_pack("{s:o, s:n}", "artifacts", arr, "next_page_token"));
	store_artifact_list_free(v, n);
}

static int artifacts_init(struct deployd *d, void **ret, struct cd_error *err)
{
	const struct deployd_config *cfg = deployd_config(d);
	struct artifacts_role *ar = calloc(1, sizeof(*ar));
	_cleanup_free_ char *dir = deployd_config_cas_dir(cfg);
	int r;

	if (!ar || !dir) {
		free(ar);
		return cd_error_set(err, -ENOMEM, "out of memory");
	}
	ar->d = d;
	ar->evict = cfg->cas_evict;
	pthread_rwlock_init(&ar->index_lock, NULL);
	r = cas_open(dir, cfg->cas_max_bytes, cfg->cas_max_blob_bytes, &ar->cas, err);
	if (r < 0) {
		free(ar);
		return r;
	}
	{
		const struct deployd_route routes[] = {
			{ "GET", "/cas/{hex}", h_cas_get, ar,
			  cfg->cas_public_read ? DEPLOYD_PERM_OPEN : DEPLOYD_PERM_READ, 0, 0 },
			{ "PUT", "/cas/{hex}", h_cas_put, ar, DEPLOYD_PERM_WRITE,
			  HTTP_ROUTE_STREAM_BODY, cfg->cas_max_blob_bytes },
			{ "GET", "/v1/artifacts", h_index_list, ar, DEPLOYD_PERM_READ, 0, 0 },
			{ "PUT", "/v1/artifacts/{ref*}", h_index_put, ar, DEPLOYD_PERM_WRITE, 0,
			  0 },
			{ "GET", "/v1/artifacts/{ref*}", h_index_get, ar, DEPLOYD_PERM_READ, 0, 0 },
		};

		r = deployd_add_routes(d, routes, ARRAY_SIZE(routes));
	}
	if (r < 0) {
		cas_free(ar->cas);
		free(ar);
		return cd_error_set(err, r, "out of memory");
	}
	*ret = ar;
	return 0;
}

static void artifacts_free(struct deployd *d, void *state)
{
	struct artifacts_role *ar = state;

	cas_free(ar->cas);
	pthread_rwlock_destroy(&ar->index_lock);
	free(ar);
}

static void artifacts_metrics(struct deployd *d, void *state, struct strbuf *out)
{
	struct artifacts_role *ar = state;
	struct cas_usage u;

	cas_usage(ar->cas, &u);
	strbuf_addf(out,
		    "# HELP deployd_cas_evicted_blobs_total Unindexed blobs evicted to make room.\n"
		    "# TYPE deployd_cas_evicted_blobs_total counter\n"
		    "deployd_cas_evicted_blobs_total %llu\n"
		    "# HELP deployd_cas_evicted_bytes_total Bytes evicted to make room.\n"
		    "# TYPE deployd_cas_evicted_bytes_total counter\n"
		    "deployd_cas_evicted_bytes_total %llu\n",
		    (unsigned long long)u.evicted_blobs, (unsigned long long)u.evicted_bytes);
	strbuf_addf(out,
		    "# TYPE deployd_cas_bytes gauge\n"
		    "deployd_cas_bytes %llu\n"
		    "# TYPE deployd_cas_budget_bytes gauge\n"
		    "deployd_cas_budget_bytes %llu\n"
		    "# TYPE deployd_cas_blobs gauge\n"
		    "deployd_cas_blobs %llu\n"
		    "# TYPE deployd_cas_puts_total counter\n"
		    "deployd_cas_puts_total{result=\"ok\"} %llu\n"
		    "deployd_cas_puts_total{result=\"rejected\"} %llu\n"
		    "# TYPE deployd_cas_gets_total counter\n"
		    "deployd_cas_gets_total %llu\n",
		    (unsigned long long)u.bytes, (unsigned long long)u.max_bytes,
		    (unsigned long long)u.blobs,
		    (unsigned long long)__atomic_load_n(&ar->puts_ok, __ATOMIC_RELAXED),
		    (unsigned long long)__atomic_load_n(&ar->puts_rejected, __ATOMIC_RELAXED),
		    (unsigned long long)__atomic_load_n(&ar->gets, __ATOMIC_RELAXED));
}

const struct deployd_role deployd_role_artifacts = {
	.name = "artifacts",
	.bit = DEPLOYD_ROLE_ARTIFACTS,
	.init = artifacts_init,
	.free = artifacts_free,
	.metrics = artifacts_metrics,
};
