/* SPDX-License-Identifier: Apache-2.0 */
#include "fetcher/transfer.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fetcher/cas.h"
#include "lib/clock.h"
#include "lib/id.h"
#include "lib/macro.h"

/* Per-attempt state the callbacks share. */
struct attempt {
	struct transfer_state *st;
	const struct fetch_options *o;
	CURL *easy;
	uint64_t start;	      /* offset requested with Range (0 = none) */
	bool body_started;    /* first body byte of this response seen */
	bool have_range;      /* Content-Range seen in the current response */
	uint64_t range_first; /* its first byte */
	uint64_t total;	      /* expected size, 0 when unknown */
	int local_err;	      /* set when a callback aborted the transfer */
	char local_msg[256];
};

#define PL_BUFS 4
#define PL_BUF_SIZE ((size_t)1 << 20)

struct transfer_pipeline {
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int fd;
	EVP_MD_CTX *md;
	char *bufs[PL_BUFS];
	size_t lens[PL_BUFS];
	uint64_t offs[PL_BUFS];
	unsigned head;	 /* next buffer for the worker */
	unsigned queued; /* filled buffers handed to the worker, not yet done */
	unsigned fill;	 /* the buffer being filled; only the producer touches fill/cur_* */
	size_t cur_len;	 /* bytes in it */
	uint64_t cur_off;
	int error; /* first write/hash failure, sticky until reset */
	bool stop;
};

static int pwrite_all(int fd, const char *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t w = pwrite(fd, buf, len, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static void *pipeline_run(void *arg)
{
	struct transfer_pipeline *pl = arg;

	pthread_mutex_lock(&pl->mu);
	for (;;) {
		unsigned i;
		int r = 0;

		while (pl->queued == 0 && !pl->stop)
			pthread_cond_wait(&pl->cv, &pl->mu);
		if (pl->queued == 0)
			break;
		i = pl->head;
		pthread_mutex_unlock(&pl->mu);
		if (!pl->error) {
			if (EVP_DigestUpdate(pl->md, pl->bufs[i], pl->lens[i]) != 1)
				r = -ENOMEM;
			else
				r = pwrite_all(pl->fd, pl->bufs[i], pl->lens[i], pl->offs[i]);
		}
		pthread_mutex_lock(&pl->mu);
		if (r < 0 && !pl->error)
			pl->error = r;
		pl->head = (pl->head + 1) % PL_BUFS;
		pl->queued--;
		pthread_cond_broadcast(&pl->cv);
	}
	pthread_mutex_unlock(&pl->mu);
	return NULL;
}

/* Hand the buffer being filled to the worker; wait for a free one. Returns the sticky error. */
static int pipeline_submit(struct transfer_pipeline *pl)
{
	int r;

	pthread_mutex_lock(&pl->mu);
	if (pl->cur_len > 0) {
		unsigned i = pl->fill;

		pl->fill = (pl->fill + 1) % PL_BUFS;
		pl->lens[i] = pl->cur_len;
		pl->offs[i] = pl->cur_off;
		pl->cur_off += pl->cur_len;
		pl->cur_len = 0;
		pl->queued++;
		pthread_cond_broadcast(&pl->cv);
	}
	while (pl->queued == PL_BUFS)
		pthread_cond_wait(&pl->cv, &pl->mu);
	r = pl->error;
	pthread_mutex_unlock(&pl->mu);
	return r;
}

static int pipeline_drain(struct transfer_pipeline *pl)
{
	int r = pipeline_submit(pl);

	pthread_mutex_lock(&pl->mu);
	while (pl->queued > 0)
		pthread_cond_wait(&pl->cv, &pl->mu);
	r = pl->error;
	pthread_mutex_unlock(&pl->mu);
	return r;
}

static int pipeline_put(struct transfer_pipeline *pl, const char *data, size_t len)
{
	while (len > 0) {
		/* Slot fill is free: pipeline_submit() waited for one before returning. */
		char *buf = pl->bufs[pl->fill];
		size_t k = MIN(len, PL_BUF_SIZE - pl->cur_len);

		memcpy(buf + pl->cur_len, data, k);
		pl->cur_len += k;
		data += k;
		len -= k;
		if (pl->cur_len == PL_BUF_SIZE) {
			int r = pipeline_submit(pl);

			if (r < 0)
				return r;
		}
	}
	return 0;
}

int transfer_state_init(struct transfer_state *st, int fd, unsigned resumes)
{
	struct transfer_pipeline *pl = calloc(1, sizeof(*pl));
	int r;

	*st = (struct transfer_state){ .fd = fd, .resumes = resumes, .pl = pl };
	if (!pl)
		return -ENOMEM;
	pl->fd = fd;
	pthread_mutex_init(&pl->mu, NULL);
	pthread_cond_init(&pl->cv, NULL);
	pl->md = EVP_MD_CTX_new();
	if (!pl->md || EVP_DigestInit_ex(pl->md, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	for (size_t i = 0; i < PL_BUFS; i++) {
		pl->bufs[i] = malloc(PL_BUF_SIZE);
		if (!pl->bufs[i])
			return -ENOMEM;
	}
	r = pthread_create(&pl->thread, NULL, pipeline_run, pl);
	if (r != 0)
		return -r;
	pl->thread_started = true;
	return 0;
}

void transfer_state_release(struct transfer_state *st)
{
	struct transfer_pipeline *pl = st->pl;

	if (!pl)
		return;
	if (pl->thread_started) {
		pthread_mutex_lock(&pl->mu);
		pl->stop = true;
		pthread_cond_broadcast(&pl->cv);
		pthread_mutex_unlock(&pl->mu);
		pthread_join(pl->thread, NULL);
	}
	for (size_t i = 0; i < PL_BUFS; i++)
		free(pl->bufs[i]);
	EVP_MD_CTX_free(pl->md);
	pthread_cond_destroy(&pl->cv);
	pthread_mutex_destroy(&pl->mu);
	free(pl);
	st->pl = NULL;
}

int transfer_finish(struct transfer_state *st, unsigned char md[static 32])
{
	unsigned len = 0;
	int r = pipeline_drain(st->pl);

	if (r < 0)
		return r;
	if (EVP_DigestFinal_ex(st->pl->md, md, &len) != 1 || len != 32)
		return -ENOMEM;
	return 0;
}

int transfer_adopt(struct transfer_state *st, uint64_t size)
{
	struct transfer_pipeline *pl = st->pl;
	uint64_t off = 0;

	(void)pipeline_drain(pl);
	pl->error = 0;
	pl->cur_len = 0;
	if (EVP_DigestInit_ex(pl->md, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	/* Hash what the file holds (the final digest covers every byte, so a torn leftover is
	 * caught), then continue after it. */
	while (off < size) {
		ssize_t n = pread(st->fd, pl->bufs[0], MIN(PL_BUF_SIZE, size - off), (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		if (EVP_DigestUpdate(pl->md, pl->bufs[0], (size_t)n) != 1)
			return -ENOMEM;
		off += (uint64_t)n;
	}
	if (ftruncate(st->fd, (off_t)off) < 0)
		return -errno;
	pl->cur_off = off;
	st->offset = off;
	return 0;
}

int transfer_peek(struct transfer_state *st, unsigned char md[static 32])
{
	EVP_MD_CTX *copy = EVP_MD_CTX_new();
	unsigned len = 0;
	int r = pipeline_drain(st->pl);

	if (r >= 0 && (!copy || EVP_MD_CTX_copy_ex(copy, st->pl->md) != 1 ||
		       EVP_DigestFinal_ex(copy, md, &len) != 1 || len != 32))
		r = -ENOMEM;
	EVP_MD_CTX_free(copy);
	return r;
}

int transfer_reset(struct transfer_state *st)
{
	struct transfer_pipeline *pl = st->pl;

	(void)pipeline_drain(pl);
	pl->error = 0;
	pl->cur_len = 0;
	pl->cur_off = 0;
	if (ftruncate(st->fd, 0) < 0)
		return -errno;
	if (EVP_DigestInit_ex(pl->md, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	st->offset = 0;
	return 0;
}

static size_t header_cb(char *buf, size_t size, size_t n, void *userdata)
{
	struct attempt *a = userdata;
	size_t len = size * n;

	/* A new status line (redirect, 100-continue) starts a new header block. */
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		a->have_range = false;
		return len;
	}
	if (len > 14 && strncasecmp(buf, "Content-Range:", 14) == 0) {
		char value[128];
		uint64_t first, last, total;
		size_t vlen = MIN(len - 14, sizeof(value) - 1);

		memcpy(value, buf + 14, vlen);
		value[vlen] = '\0';
		if (cas_parse_content_range(value, &first, &last, &total) == 0) {
			a->have_range = true;
			a->range_first = first;
			if (total != UINT64_MAX)
				a->total = total;
		}
	}
	return len;
}

static size_t abort_write(struct attempt *a, int code, const char *msg)
{
	a->local_err = code;
	snprintf(a->local_msg, sizeof(a->local_msg), "%s", msg);
	return CURL_WRITEFUNC_ERROR;
}

/* First body byte: decide whether this response continues our file or replaces it. */
static size_t begin_body(struct attempt *a)
{
	struct transfer_state *st = a->st;
	curl_off_t clen = -1;
	long code = 0;

	a->body_started = true;
	curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(a->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	if (code == 206) {
		if (!a->have_range || a->range_first != st->offset)
			return abort_write(a, -EPROTO,
					   "206 response without a matching Content-Range");
		st->ranges++;
	} else if (code == 200) {
		if (st->offset > 0) {
			/* The server ignored Range: start over with the full body. */
			int r = transfer_reset(st);

			if (r < 0)
				return abort_write(a, r, "cannot truncate the download file");
			st->restarts++;
		}
		a->total = clen >= 0 ? (uint64_t)clen : 0;
	} else {
		char msg[64];

		snprintf(msg, sizeof(msg), "unexpected HTTP status %ld", code);
		return abort_write(a, -EPROTO, msg);
	}
	if (a->total > a->o->max_size)
		return abort_write(a, -EFBIG, "blob exceeds the size limit");
	return 0;
}

static size_t write_cb(char *buf, size_t size, size_t n, void *userdata)
{
	struct attempt *a = userdata;
	struct transfer_state *st = a->st;
	size_t len = size * n;

	if (!a->body_started && begin_body(a) != 0)
		return CURL_WRITEFUNC_ERROR;
	if (len > a->o->max_size || st->offset > a->o->max_size - len)
		return abort_write(a, -EFBIG, "blob exceeds the size limit");
	{
		int r = pipeline_put(st->pl, buf, len);

		if (r < 0)
			return abort_write(a, r, "cannot write the download file");
	}
	st->offset += len;
	if (a->o->progress)
		a->o->progress(a->o->userdata, st->offset, a->total);
	return len;
}

static bool transient(int r)
{
	return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -ECONNRESET || r == -EAGAIN ||
	       r == -EHOSTUNREACH;
}

/* Map the outcome of one curl_easy_perform() to -errno and a message. */
static int classify(struct attempt *a, CURLcode cc, const char *url, const char *errbuf,
		    struct cd_error *err)
{
	long code = 0;

	curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &code);
	if (a->local_err)
		return cd_error_set(err, a->local_err, "%s: %s (%s)", url, a->local_msg,
				    strerror(-a->local_err));
	switch (cc) {
	case CURLE_OK:
		if (!a->body_started && code != 200 && code != 206)
			return cd_error_set(err, -EPROTO, "%s: unexpected HTTP status %ld", url,
					    code);
		if (!a->body_started && a->start > 0 && code == 200) {
			/* Resume answered with an empty full body: the blob is empty. */
			int r = transfer_reset(a->st);

			if (r < 0)
				return cd_error_set(err, r, "cannot truncate the download file");
		}
		return 0;
	case CURLE_HTTP_RETURNED_ERROR:
		if (code == 404)
			return cd_error_set(err, -ENOENT, "%s: 404 not found", url);
		if (code == 401 || code == 403)
			return cd_error_set(err, -EACCES, "%s: HTTP %ld", url, code);
		if (code == 416)
			return cd_error_set(err, -ERANGE, "%s: range not satisfiable", url);
		if (code == 408 || code == 429 || code >= 500)
			return cd_error_set(err, -EAGAIN, "%s: HTTP %ld", url, code);
		return cd_error_set(err, -EPROTO, "%s: HTTP %ld", url, code);
	case CURLE_FILESIZE_EXCEEDED:
		return cd_error_set(err, -EFBIG, "%s: blob exceeds the size limit of %llu bytes",
				    url, (unsigned long long)a->o->max_size);
	case CURLE_OPERATION_TIMEDOUT:
		return cd_error_set(err, -ETIMEDOUT, "%s: %s", url, errbuf[0] ? errbuf : "timeout");
	case CURLE_COULDNT_CONNECT:
		return cd_error_set(err, -ECONNREFUSED, "%s: %s", url,
				    errbuf[0] ? errbuf : "cannot connect");
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return cd_error_set(err, -EHOSTUNREACH, "%s: %s", url,
				    errbuf[0] ? errbuf : "cannot resolve");
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return cd_error_set(err, -ECONNRESET, "%s: %s", url,
				    errbuf[0] ? errbuf : curl_easy_strerror(cc));
	case CURLE_OUT_OF_MEMORY:
		return cd_error_set(err, -ENOMEM, "%s: out of memory", url);
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return cd_error_set(err, -EINVAL, "%s: %s", url, curl_easy_strerror(cc));
	default:
		return cd_error_set(err, -EPROTO, "%s: %s", url,
				    errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
}

/* Options shared by GET and HEAD. */
static void setup_common(CURL *easy, const char *url, const struct fetch_options *o, char *errbuf)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(easy, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "codedeploy-fetcher/" CD_VERSION);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, (long)o->low_speed_limit);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (long)o->low_speed_time_s);
	if (o->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, o->ca_file);
	if (o->bearer_token) {
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, o->bearer_token);
	}
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
}

static void setup(CURL *easy, const char *url, struct attempt *a, char *errbuf,
		  char range[static 32])
{
	const struct fetch_options *o = a->o;

	setup_common(easy, url, o, errbuf);
	curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
			 (curl_off_t)MIN(o->max_size, (uint64_t)INT64_MAX));
	/* CURLOPT_RANGE rather than RESUME_FROM: curl would fail a 200 answer to a resume itself,
	 * while we want to restart with that full body. */
	if (a->start > 0) {
		snprintf(range, 32, "%llu-", (unsigned long long)a->start);
		curl_easy_setopt(easy, CURLOPT_RANGE, range);
	} else {
		curl_easy_setopt(easy, CURLOPT_RANGE, NULL);
	}
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
}

int transfer_get(CURL *easy, const char *url, struct transfer_state *st,
		 const struct fetch_options *o, struct cd_error *err)
{
	unsigned attempt = 0;

	for (;;) {
		struct attempt a = { .st = st, .o = o, .easy = easy, .start = st->offset };
		struct cd_error e = { 0 };
		char errbuf[CURL_ERROR_SIZE] = "", range[32];
		CURLcode cc;
		int r;

		setup(easy, url, &a, errbuf, range);
		cc = curl_easy_perform(easy);
		r = pipeline_drain(st->pl);
		if (r < 0)
			return cd_error_set(err, r, "%s: cannot write the download file (%s)", url,
					    strerror(-r));
		r = classify(&a, cc, url, errbuf, &e);
		if (r >= 0)
			return 0;
		if (r == -ERANGE && st->offset > 0) {
			/* Our offset is beyond what the server has: start over. */
			int q = transfer_reset(st);

			if (q < 0)
				return cd_error_set(err, q, "cannot truncate the download file");
			st->restarts++;
			r = -ECONNRESET;
		}
		if (!transient(r))
			return cd_error_set(err, r, "%s", e.msg);
		if (r == -ECONNRESET && st->offset > a.start && st->resumes > 0) {
			/* Progress before the drop: resume right away without using an attempt. A
			 * stall (timeout) uses one: a server that trickles a byte per minute must
			 * not keep us forever. Either way the next request asks for a Range. */
			st->resumes--;
			continue;
		}
		if (++attempt >= MAX(o->attempts, 1u))
			return cd_error_set(err, r, "%s", e.msg);
		{
			uint32_t rnd = 0;

			(void)id_random_bytes(&rnd, sizeof(rnd));
			clock_sleep_usec(cas_backoff_ms(attempt - 1, o->backoff_base_ms,
							o->backoff_max_ms, rnd) *
					 USEC_PER_MSEC);
		}
	}
}

int transfer_head(CURL *easy, const char *url, const struct fetch_options *o, uint64_t *ret_size,
		  struct cd_error *err)
{
	struct attempt a = { .o = o, .easy = easy, .body_started = true };
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_off_t clen = -1;
	CURLcode cc;
	int r;

	setup_common(easy, url, o, errbuf);
	curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
	cc = curl_easy_perform(easy);
	r = classify(&a, cc, url, errbuf, err);
	if (r < 0)
		return r;
	curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	*ret_size = clen >= 0 ? (uint64_t)clen : UINT64_MAX;
	return 0;
}
