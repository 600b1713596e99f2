/* SPDX-License-Identifier: Apache-2.0 */
/*
 * notify.h — taskd's reports to its cluster manager (docs/protocol-cluster.md): the durable
 * outbox sender (NotifyTaskState, at-least-once, in order, with the outbox id as idempotent
 * seq) and the heartbeat with host resources and the task list.
 * Owns one thread and one HTTP client. Logs what it drops (it runs inside taskd).
 */
#pragma once

#include <stdint.h>

#include "agent/manager.h"
#include "lib/error.h"

struct notifier_config {
	const char *manager_url;
	const char *token; /* the cluster's agent token; may be NULL */
	const char *host_id;
	const char *zone;
	const char *advertise_url;
	const char *state_dir; /* storage figures come from its file system */
	unsigned heartbeat_interval_s;
	unsigned vcpus;		     /* 0 = online CPUs */
	uint64_t memory_mb;	     /* 0 = physical memory */
	uint64_t storage_mb;	     /* 0 = size of the state dir's file system */
	unsigned request_timeout_ms; /* per notification/heartbeat; 0 = 10 s */
};

struct notifier;

int notifier_new(const struct notifier_config *cfg, struct manager *m, struct notifier **ret,
		 struct cd_error *err);
/* Something new is in the outbox: send soon. Thread-safe, never blocks. */
void notifier_wake(void *notifier);
/* Stop and free: waits for the request in flight (bounded by its timeout), sends no other. */
void notifier_free(struct notifier *n);

/* Delivery rule of the protocol for a reply status: 1 = acknowledged, 0 = retry later,
 * -1 = permanent refusal (drop). Exposed for unit tests. */
int notifier_classify_status(long status);
/* Backoff before retry number attempts (0-based): 200 ms doubling, capped at 60 s. */
usec_t notifier_retry_delay(unsigned attempts);
