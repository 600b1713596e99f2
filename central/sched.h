/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sched.h — task placement as a pure function: given the hosts of a zone with what is already
 * reserved on them and one task's requirements, pick a host or explain why none fits.
 * Owns the placement policy (feasibility: healthy, distinct from the job's other tasks, enough
 * free millicpus / memory / storage, no host-port clash; preference: least loaded after
 * placement, then fewest tasks, then host id). Owns no state, does no I/O, never allocates.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHED_MAX_PORTS 64

struct sched_host {
	const char *host_id;
	bool ready; /* READY (heartbeating); LOST hosts are never chosen */
	/* capacity offered by the host */
	uint64_t millicpus, memory_mb, storage_mb;
	/* already reserved by live tasks placed there */
	uint64_t used_millicpus, used_memory_mb, used_storage_mb;
	unsigned n_tasks;
	/* host ports taken by live tasks with host networking */
	const uint16_t *ports;
	size_t n_ports;
	/* a live task of the job being placed already runs here (tasks go to distinct hosts) */
	bool has_job_task;
	/* soft: prefer other hosts (e.g. the task's previous host failed to fetch/start it) */
	bool avoid;
};

struct sched_request {
	uint64_t millicpus, memory_mb, storage_mb;
	const uint16_t *ports; /* host ports the task binds (host networking), n_ports entries */
	size_t n_ports;
};

/* Why hosts were rejected, for the job's PENDING reason. */
struct sched_verdict {
	size_t n_hosts;
	size_t not_ready, same_job, no_cpu, no_memory, no_storage, port_clash;
};

/*
 * Choose a host for req among hosts[0..n). Returns the index (>= 0), or -ENOSPC when no host is
 * feasible; verdict (may be NULL) is filled in both cases. Deterministic: equal inputs give the
 * same choice.
 */
int sched_place(const struct sched_host *hosts, size_t n, const struct sched_request *req,
		struct sched_verdict *verdict);

/*
 * "no feasible host among 3: 1 not ready, 2 lack memory (need 512 MB)" into buf. Returns buf.
 */
const char *sched_verdict_format(const struct sched_verdict *v, const struct sched_request *req,
				 char *buf, size_t size);

/* Account a placement on h (what the caller does between placements of one batch). */
void sched_host_reserve(struct sched_host *h, const struct sched_request *req);
