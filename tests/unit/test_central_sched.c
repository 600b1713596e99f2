/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for central/sched: feasibility, distinct hosts, resources, ports, spreading. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "central/sched.h"
#include "lib/macro.h"

static struct sched_host host(const char *id, uint64_t mcpu, uint64_t mem)
{
	return (struct sched_host){ .host_id = id,
				    .ready = true,
				    .millicpus = mcpu,
				    .memory_mb = mem,
				    .storage_mb = 10000 };
}

static const struct sched_request small = { .millicpus = 1000,
					    .memory_mb = 256,
					    .storage_mb = 100 };

static void test_picks_least_loaded(void **state)
{
	struct sched_host h[3] = { host("a", 4000, 4096), host("b", 4000, 4096),
				   host("c", 4000, 4096) };

	h[0].used_millicpus = 2000;
	h[1].used_millicpus = 1000;
	h[2].used_millicpus = 3000;
	assert_int_equal(sched_place(h, 3, &small, NULL), 1);
	/* Memory is the scarce one on b. */
	h[1].used_memory_mb = 3800;
	assert_int_equal(sched_place(h, 3, &small, NULL), 0);
}

static void test_ties_break_by_tasks_then_id(void **state)
{
	struct sched_host h[3] = { host("c", 4000, 4096), host("b", 4000, 4096),
				   host("a", 4000, 4096) };

	assert_int_equal(sched_place(h, 3, &small, NULL), 2); /* "a" */
	h[2].n_tasks = 1;
	assert_int_equal(sched_place(h, 3, &small, NULL), 1); /* "b" */
}

static void test_spread_batch_over_distinct_hosts(void **state)
{
	struct sched_host h[3] = { host("a", 8000, 8192), host("b", 8000, 8192),
				   host("c", 8000, 8192) };
	int seen[3] = { 0 };

	for (int k = 0; k < 3; k++) {
		int i = sched_place(h, 3, &small, NULL);

		assert_true(i >= 0);
		seen[i]++;
		sched_host_reserve(&h[i], &small);
	}
	assert_int_equal(seen[0], 1);
	assert_int_equal(seen[1], 1);
	assert_int_equal(seen[2], 1);
	/* A fourth task of the same job has nowhere to go: distinct hosts only. */
	{
		struct sched_verdict v;
		char buf[256];

		assert_int_equal(sched_place(h, 3, &small, &v), -ENOSPC);
		assert_int_equal(v.same_job, 3);
		sched_verdict_format(&v, &small, buf, sizeof(buf));
		assert_string_equal(buf,
				    "no feasible host among 3: 3 already run a task of this job");
	}
}

static void test_resources_exact_fit_and_shortage(void **state)
{
	struct sched_host h[1] = { host("a", 1000, 256) };
	struct sched_verdict v;
	struct sched_request big = small;
	char buf[256];

	h[0].storage_mb = 100;
	assert_int_equal(sched_place(h, 1, &small, NULL), 0); /* exactly fits */
	big.millicpus = 1500;
	big.memory_mb = 512;
	big.storage_mb = 101;
	assert_int_equal(sched_place(h, 1, &big, &v), -ENOSPC);
	assert_int_equal(v.no_cpu, 1);
	assert_int_equal(v.no_memory, 1);
	assert_int_equal(v.no_storage, 1);
	sched_verdict_format(&v, &big, buf, sizeof(buf));
	assert_string_equal(buf, "no feasible host among 1: 1 lack vcpus (need 1.500), 1 lack "
				 "memory (need 512 MB), 1 lack storage (need 101 MB)");
	/* Over-committed host (used > capacity after a host shrank) is not a wrap-around. */
	h[0].used_memory_mb = 300;
	assert_int_equal(sched_place(h, 1, &small, &v), -ENOSPC);
	assert_int_equal(v.no_memory, 1);
}

static void test_port_clash(void **state)
{
	static const uint16_t taken[] = { 22, 8080 };
	static const uint16_t want[] = { 9090, 8080 };
	struct sched_host h[2] = { host("a", 4000, 4096), host("b", 4000, 4096) };
	struct sched_request req = small;
	struct sched_verdict v;

	req.ports = want;
	req.n_ports = ARRAY_SIZE(want);
	h[0].ports = taken;
	h[0].n_ports = ARRAY_SIZE(taken);
	h[1].used_millicpus = 3000; /* more loaded, but the only one without the clash */
	assert_int_equal(sched_place(h, 2, &req, &v), 1);
	assert_int_equal(v.port_clash, 1);
	h[1].ports = taken;
	h[1].n_ports = 1; /* only 22: no clash */
	assert_int_equal(sched_place(h, 2, &req, NULL), 1);
	h[1].n_ports = 2;
	assert_int_equal(sched_place(h, 2, &req, &v), -ENOSPC);
	assert_int_equal(v.port_clash, 2);
}

static void test_not_ready_and_empty(void **state)
{
	struct sched_host h[2] = { host("a", 4000, 4096), host("b", 4000, 4096) };
	struct sched_verdict v;
	char buf[128];

	h[0].ready = false;
	assert_int_equal(sched_place(h, 2, &small, &v), 1);
	h[1].ready = false;
	assert_int_equal(sched_place(h, 2, &small, &v), -ENOSPC);
	assert_int_equal(v.not_ready, 2);
	assert_int_equal(sched_place(NULL, 0, &small, &v), -ENOSPC);
	sched_verdict_format(&v, &small, buf, sizeof(buf));
	assert_string_equal(buf, "no hosts in the zone");
}

static void test_avoid_is_soft(void **state)
{
	struct sched_host h[2] = { host("a", 4000, 4096), host("b", 4000, 4096) };

	h[1].used_millicpus = 3000;
	h[0].avoid = true;
	assert_int_equal(sched_place(h, 2, &small, NULL), 1);
	h[1].ready = false;
	assert_int_equal(sched_place(h, 2, &small, NULL), 0); /* still usable when alone */
}

static void test_verdict_truncates_safely(void **state)
{
	struct sched_verdict v = { .n_hosts = 5, .not_ready = 1, .no_cpu = 4 };
	char buf[16];

	sched_verdict_format(&v, &small, buf, sizeof(buf));
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_picks_least_loaded),
		cmocka_unit_test(test_ties_break_by_tasks_then_id),
		cmocka_unit_test(test_spread_batch_over_distinct_hosts),
		cmocka_unit_test(test_resources_exact_fit_and_shortage),
		cmocka_unit_test(test_port_clash),
		cmocka_unit_test(test_not_ready_and_empty),
		cmocka_unit_test(test_avoid_is_soft),
		cmocka_unit_test(test_verdict_truncates_safely),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
