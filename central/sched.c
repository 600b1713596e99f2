/* SPDX-License-Identifier: Apache-2.0 */
#include "central/sched.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/macro.h"
#include "lib/str.h"

static bool fits(uint64_t capacity, uint64_t used, uint64_t want)
{
	return used <= capacity && capacity - used >= want;
}

static bool port_clash(const struct sched_host *h, const struct sched_request *req)
{
	for (size_t i = 0; i < req->n_ports; i++)
		for (size_t j = 0; j < h->n_ports; j++)
			if (req->ports[i] == h->ports[j])
				return true;
	return false;
}

/* Load after placement in parts per million of the scarcest resource (cpu or memory). */
static uint64_t load_ppm(const struct sched_host *h, const struct sched_request *req)
{
	uint64_t cpu = h->millicpus ?
			       (h->used_millicpus + req->millicpus) * 1000000 / h->millicpus :
			       1000000;
	uint64_t mem = h->memory_mb ?
			       (h->used_memory_mb + req->memory_mb) * 1000000 / h->memory_mb :
			       1000000;

	return MAX(cpu, mem);
}

/* true when a is a better choice than b */
static bool better(const struct sched_host *a, const struct sched_host *b,
		   const struct sched_request *req)
{
	uint64_t la, lb;

	if (a->avoid != b->avoid)
		return !a->avoid;
	la = load_ppm(a, req);
	lb = load_ppm(b, req);
	if (la != lb)
		return la < lb;
	if (a->n_tasks != b->n_tasks)
		return a->n_tasks < b->n_tasks;
	return strcmp(a->host_id, b->host_id) < 0;
}

int sched_place(const struct sched_host *hosts, size_t n, const struct sched_request *req,
		struct sched_verdict *verdict)
{
	struct sched_verdict v = { .n_hosts = n };
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		const struct sched_host *h = &hosts[i];
		bool ok = true;

		/* Count every reason a host fails, so the message says all that is missing. */
		if (!h->ready) {
			v.not_ready++;
			continue;
		}
		if (h->has_job_task) {
			v.same_job++;
			continue;
		}
		if (!fits(h->millicpus, h->used_millicpus, req->millicpus)) {
			v.no_cpu++;
			ok = false;
		}
		if (!fits(h->memory_mb, h->used_memory_mb, req->memory_mb)) {
			v.no_memory++;
			ok = false;
		}
		if (!fits(h->storage_mb, h->used_storage_mb, req->storage_mb)) {
			v.no_storage++;
			ok = false;
		}
		if (port_clash(h, req)) {
			v.port_clash++;
			ok = false;
		}
		if (ok && (best < 0 || better(h, &hosts[best], req)))
			best = (int)i;
	}
	if (verdict)
		*verdict = v;
	return best >= 0 ? best : -ENOSPC;
}

const char *sched_verdict_format(const struct sched_verdict *v, const struct sched_request *req,
				 char *buf, size_t size)
{
	struct strbuf sb = STRBUF_INIT;
	const char *sep = ": ";
	char *s;

	if (v->n_hosts == 0) {
		snprintf(buf, size, "no hosts in the zone");
		return buf;
	}
	strbuf_addf(&sb, "no feasible host among %zu", v->n_hosts);
#define PART(cond, ...)                                                                            \
	do {                                                                                       \
		if (cond) {                                                                        \
			strbuf_adds(&sb, sep);                                                     \
			strbuf_addf(&sb, __VA_ARGS__);                                             \
			sep = ", ";                                                                \
		}                                                                                  \
	} while (0)
	PART(v->not_ready, "%zu not ready", v->not_ready);
	PART(v->same_job, "%zu already run a task of this job", v->same_job);
	PART(v->no_cpu, "%zu lack vcpus (need %llu.%03llu)", v->no_cpu,
	     (unsigned long long)(req->millicpus / 1000),
	     (unsigned long long)(req->millicpus % 1000));
	PART(v->no_memory, "%zu lack memory (need %llu MB)", v->no_memory,
	     (unsigned long long)req->memory_mb);
	PART(v->no_storage, "%zu lack storage (need %llu MB)", v->no_storage,
	     (unsigned long long)req->storage_mb);
	PART(v->port_clash, "%zu have a host port clash", v->port_clash);
#undef PART
	s = strbuf_detach(&sb, NULL);
	snprintf(buf, size, "%s", s ? s : "no feasible host");
	free(s);
	return buf;
}

void sched_host_reserve(struct sched_host *h, const struct sched_request *req)
{
	h->used_millicpus += req->millicpus;
	h->used_memory_mb += req->memory_mb;
	h->used_storage_mb += req->storage_mb;
	h->n_tasks++;
	h->has_job_task = true;
	/* Ports: the caller owns h->ports and appends req's before the next placement. */
}
