/* SPDX-License-Identifier: Apache-2.0 */
#include "agent/notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "api/http_client.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/str.h"

#define BATCH 64

struct notifier {
	struct notifier_config cfg;
	struct manager *m;
	struct http_client *client;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, kick;
	unsigned interval_s;
};

int notifier_classify_status(long status)
{
	if (status >= 200 && status < 300)
		return 1;
	switch (status) {
	case 404:
	case 410:
	case 400:
	case 401:
	case 403:
	case 413:
	case 422:
		return -1;
	default:
		return 0;
	}
}

usec_t notifier_retry_delay(unsigned attempts)
{
	usec_t d = 200 * USEC_PER_MSEC;

	for (unsigned i = 0; i < attempts && d < 60 * USEC_PER_SEC; i++)
		d *= 2;
	return MIN(d, 60 * USEC_PER_SEC);
}

/* Send one outbox message. Returns 1 acked, -1 dropped, 0 retry. */
static int send_one(struct notifier *n, const struct outbox_msg *msg)
{
	_cleanup_free_ char *path = NULL, *eid = NULL;
	struct cd_error err = { 0 };
	json_t *body = json_loads(msg->body, 0, NULL);
	long status = 0;
	int r, c;

	if (!body) {
		log_error("outbox message is not JSON: dropped", "id=%llu",
			  (unsigned long long)msg->id);
		return -1;
	}
	if (asprintf(&eid, "%s:%llu", n->cfg.host_id, (unsigned long long)msg->id) < 0 ||
	    asprintf(&path, "/v1/tasks/%s/state", msg->task_id) < 0) {
		json_decref(body);
		return 0;
	}
	json_object_set_new(body, "seq", json_integer((json_int_t)msg->id));
	json_object_set_new(body, "event_id", json_string(eid));
	r = http_client_json(n->client, "POST", path, body, NULL, &status, &err);
	json_decref(body);
	if (r < 0) {
		log_debug("notify failed, will retry", "task=%s err=\"%s\"", msg->task_id,
			  cd_error_message(&err));
		return 0;
	}
	c = notifier_classify_status(status);
	if (c < 0)
		log_warn("manager refused a notification: dropped", "task=%s status=%ld seq=%llu",
			 msg->task_id, status, (unsigned long long)msg->id);
	return c;
}

/* notifier_free() was called: send nothing more (each request can take up to its timeout). */
static bool stopping(struct notifier *n)
{
	bool stop;

	pthread_mutex_lock(&n->lock);
	stop = n->stop;
	pthread_mutex_unlock(&n->lock);
	return stop;
}

static bool task_blocked(const char *const *blocked, size_t n, const char *task_id)
{
	for (size_t i = 0; i < n; i++)
		if (streq(blocked[i], task_id))
			return true;
	return false;
}

static void deliver(struct notifier *n, usec_t *ret_next)
{
	struct outbox_msg *v = NULL;
	const char *blocked[BATCH];
	size_t k = 0, n_blocked = 0;
	bool progress = false;
	usec_t now = clock_real_usec();

	/* Read the pending messages in id order, due or not: a message waiting for its retry
	 * holds back the later messages of the same task (order per task), while other tasks'
	 * messages go on — one task the manager keeps refusing cannot stall everybody. */
	if (manager_outbox_due(n->m, (usec_t)INT64_MAX, BATCH, &v, &k) < 0)
		return;
	for (size_t i = 0; i < k; i++) {
		int c;

		if (stopping(n))
			break;
		if (task_blocked(blocked, n_blocked, v[i].task_id))
			continue;
		if (v[i].next_attempt_at > now) {
			*ret_next = MIN(*ret_next, v[i].next_attempt_at - now);
			blocked[n_blocked++] = v[i].task_id;
			continue;
		}
		c = send_one(n, &v[i]);
		if (c != 0) {
			(void)manager_outbox_ack(n->m, v[i].id);
			manager_count_notify(n->m, c > 0, c < 0);
			progress = true;
			continue;
		}
		{
			usec_t d = notifier_retry_delay(v[i].attempts);

			(void)manager_outbox_retry(n->m, v[i].id, now + d);
			*ret_next = MIN(*ret_next, d);
			blocked[n_blocked++] = v[i].task_id;
		}
	}
	if (k == BATCH && progress)
		*ret_next = 0; /* more may be waiting behind this batch */
	outbox_msg_array_free(v, k);
}

static void heartbeat(struct notifier *n)
{
	_cleanup_free_ char *path = NULL;
	struct cd_error err = { 0 };
	struct sysinfo si;
	struct statvfs sv;
	uint64_t vcpus = n->cfg.vcpus, mem = n->cfg.memory_mb, storage = n->cfg.storage_mb;
	uint64_t rc = 0, rm = 0, rs = 0, storage_free = 0;
	json_t *body, *reply = NULL;
	long status = 0;
	int r;

	if (!vcpus)
		vcpus = (uint64_t)MAX(sysconf(_SC_NPROCESSORS_ONLN), 1);
	if (!mem && sysinfo(&si) == 0)
		mem = (uint64_t)si.totalram * si.mem_unit / (1024 * 1024);
	if (statvfs(n->cfg.state_dir, &sv) == 0) {
		if (!storage)
			storage = (uint64_t)sv.f_blocks * sv.f_frsize / (1024 * 1024);
		storage_free = (uint64_t)sv.f_bavail * sv.f_frsize / (1024 * 1024);
	}
	manager_reserved(n->m, &rc, &rm, &rs);
	body = json_pack("{s:s, s:s, s:s, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}, s:o, s:s}",
			 "host_id", n->cfg.host_id, "zone", n->cfg.zone ? n->cfg.zone : "", "addr",
			 n->cfg.advertise_url, "resources", "vcpus", (json_int_t)vcpus, "memory_mb",
			 (json_int_t)mem, "storage_mb", (json_int_t)storage, "free", "vcpus",
			 (json_int_t)(vcpus * 1000 > rc ? (vcpus * 1000 - rc) / 1000 : 0),
			 "memory_mb", (json_int_t)(mem > rm ? mem - rm : 0), "storage_mb",
			 (json_int_t)MIN(storage_free, storage > rs ? storage - rs : 0), "tasks",
			 manager_heartbeat_tasks(n->m), "version", CD_VERSION);
	if (!body || asprintf(&path, "/v1/hosts/%s/heartbeat", n->cfg.host_id) < 0) {
		json_decref(body);
		return;
	}
	r = http_client_json(n->client, "POST", path, body, &reply, &status, &err);
	json_decref(body);
	if (r < 0) {
		log_warn("heartbeat failed", "manager=%s err=\"%s\"", n->cfg.manager_url,
			 cd_error_message(&err));
		return;
	}
	if (status / 100 != 2)
		log_warn("heartbeat refused", "status=%ld", status);
	else {
		json_int_t iv = json_integer_value(json_object_get(reply, "heartbeat_interval_s"));

		if (iv >= 1 && iv <= 3600)
			n->interval_s = (unsigned)iv;
	}
	json_decref(reply);
}

static void *sender(void *arg)
{
	struct notifier *n = arg;
	usec_t next_hb = clock_mono_usec();

	pthread_mutex_lock(&n->lock);
	while (!n->stop) {
		usec_t wait = USEC_PER_SEC, now;

		n->kick = false;
		pthread_mutex_unlock(&n->lock);
		deliver(n, &wait);
		now = clock_mono_usec();
		if (now >= next_hb && !stopping(n)) {
			heartbeat(n);
			next_hb = clock_mono_usec() + (usec_t)n->interval_s * USEC_PER_SEC;
		}
		wait = MIN(wait, next_hb > now ? next_hb - now : 0);
		pthread_mutex_lock(&n->lock);
		if (!n->stop && !n->kick && wait > 0) {
			struct timespec ts = clock_timespec_after(CLOCK_MONOTONIC, wait);

			pthread_cond_timedwait(&n->cond, &n->lock, &ts);
		}
	}
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

int notifier_new(const struct notifier_config *cfg, struct manager *m, struct notifier **ret,
		 struct cd_error *err)
{
	struct http_client_config cc = {
		.base_url = cfg->manager_url,
		.bearer_token = cfg->token,
		.timeout_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : 10000,
		.max_attempts = 1, /* the outbox is our retry loop */
	};
	struct notifier *n = calloc(1, sizeof(*n));
	pthread_condattr_t ca;
	int r;

	if (!n)
		return cd_error_set(err, -ENOMEM, "out of memory");
	n->cfg = *cfg;
	n->m = m;
	n->interval_s = cfg->heartbeat_interval_s ? cfg->heartbeat_interval_s : 5;
	r = http_client_new(&cc, &n->client, err);
	if (r < 0) {
		free(n);
		return r;
	}
	pthread_mutex_init(&n->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n->cond, &ca);
	pthread_condattr_destroy(&ca);
	r = pthread_create(&n->thread, NULL, sender, n);
	if (r != 0) {
		http_client_free(n->client);
		free(n);
		return cd_error_set(err, -r, "cannot start the notification thread");
	}
	*ret = n;
	return 0;
}

void notifier_wake(void *p)
{
	struct notifier *n = p;

	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	n->kick = true;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
}

void notifier_free(struct notifier *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
	pthread_join(n->thread, NULL);
	http_client_free(n->client);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	free(n);
}
