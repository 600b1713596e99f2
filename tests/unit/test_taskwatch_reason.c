/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the taskwatch reason classifier: synthetic event streams in, reasons out. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ebpf/taskwatch.h"

#define CG 4242
#define INIT 100
#define MAIN 101

static struct taskwatch_event ev_exit(pid_t pid, uint32_t flags, int status, uint64_t ts)
{
	struct taskwatch_event e = { .type = TASKWATCH_EV_EXIT, .flags = flags, .ts_ns = ts };

	e.pid = e.tgid = (uint32_t)pid;
	e.cgroup_id = CG;
	e.exit.status = (uint32_t)status;
	e.exit.signal = status & 0x7f;
	e.exit.core_dumped = (status & 0x80) != 0;
	e.exit.code = e.exit.signal ? 0 : (status >> 8) & 0xff;
	return e;
}

static struct taskwatch_event ev_signal(pid_t target, uint32_t flags, int sig, pid_t sender,
					const char *comm, uint64_t ts)
{
	struct taskwatch_event e = { .type = TASKWATCH_EV_FATAL_SIGNAL,
				     .flags = flags,
				     .ts_ns = ts };

	e.pid = e.tgid = (uint32_t)target;
	e.cgroup_id = CG;
	e.signal.sig = (uint32_t)sig;
	e.signal.sender_pid = e.signal.sender_tgid = (uint32_t)sender;
	strncpy(e.signal.sender_comm, comm, sizeof(e.signal.sender_comm) - 1);
	return e;
}

static struct taskwatch_event ev_oom(pid_t victim, uint32_t flags, uint64_t ts)
{
	struct taskwatch_event e = { .type = TASKWATCH_EV_OOM_KILL, .flags = flags, .ts_ns = ts };

	e.pid = e.tgid = (uint32_t)victim;
	e.cgroup_id = CG;
	e.oom.count = 1;
	return e;
}

static struct taskwatch_event ev_simple(enum taskwatch_event_type type, uint64_t ts)
{
	struct taskwatch_event e = { .type = type, .ts_ns = ts, .cgroup_id = CG };

	if (type == TASKWATCH_EV_LOST)
		e.lost.count = 5;
	return e;
}

#define MAIN_INIT (TASKWATCH_F_MAIN | TASKWATCH_F_INIT)
#define W_EXIT(code) ((code) << 8)

static void feed_all(struct taskwatch_classifier *c, const struct taskwatch_event *evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		taskwatch_reason_feed(c, &evs[i]);
}

static void test_exited_code(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event e = ev_exit(MAIN, MAIN_INIT, W_EXIT(3), 10);
	char buf[64];

	taskwatch_reason_init(&c);
	assert_int_equal(taskwatch_reason_get(&c, &r), -EAGAIN);
	assert_true(taskwatch_reason_feed(&c, &e));
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_EXITED);
	assert_int_equal(r.exit_code, 3);
	assert_int_equal(r.main_pid, MAIN);
	assert_false(r.uncertain);
	assert_string_equal(taskwatch_reason_format(&r, buf, sizeof(buf)), "exited(3)");
}

static void test_child_exits_do_not_end(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_event child = ev_exit(200, 0, W_EXIT(1), 5);
	struct taskwatch_event child_sig = ev_exit(201, 0, SIGKILL, 6);

	taskwatch_reason_init(&c);
	assert_false(taskwatch_reason_feed(&c, &child));
	assert_false(taskwatch_reason_feed(&c, &child_sig));
	assert_false(c.ended);
}

static void test_signaled_with_sender(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGKILL, 555, "killer", 1),
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGKILL, 556, "second", 2),
		ev_exit(MAIN, MAIN_INIT, SIGKILL, 3),
	};
	char buf[96];

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 3);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_SIGNALED);
	assert_int_equal(r.signal, SIGKILL);
	/* the first sender of the fatal signal is the one that counts */
	assert_int_equal(r.sender_pid, 555);
	assert_string_equal(r.sender_comm, "killer");
	assert_string_equal(taskwatch_reason_format(&r, buf, sizeof(buf)),
			    "signaled(SIGKILL, from 555 killer)");
}

static void test_signal_to_other_process_ignored(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_signal(300, 0, SIGTERM, 555, "killer", 1), /* not the main */
		ev_exit(MAIN, MAIN_INIT, SIGTERM, 3),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_SIGNALED);
	assert_int_equal(r.signal, SIGTERM);
	assert_int_equal(r.sender_pid, 0);
}

static void test_sender_matches_signal_number(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGTERM, 10, "a", 1),
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGKILL, 20, "b", 2),
		ev_exit(MAIN, MAIN_INIT, SIGKILL, 3),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 3);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.signal, SIGKILL);
	assert_int_equal(r.sender_pid, 20);
}

static void test_core_dumped(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_signal(MAIN, TASKWATCH_F_MAIN | TASKWATCH_F_SENDER_KERNEL, SIGSEGV, MAIN, "app",
			  1),
		ev_exit(MAIN, MAIN_INIT, SIGSEGV | 0x80, 2),
	};
	char buf[96];

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_SIGNALED);
	assert_true(r.core_dumped);
	assert_true(r.sender_kernel);
	assert_string_equal(taskwatch_reason_format(&r, buf, sizeof(buf)),
			    "signaled(SIGSEGV, core dumped, from 101 app [kernel])");
}

static void test_oom_of_main(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_oom(MAIN, TASKWATCH_F_MAIN, 1),
		ev_signal(MAIN, TASKWATCH_F_MAIN | TASKWATCH_F_SENDER_KERNEL, SIGKILL, 1, "x", 1),
		ev_exit(MAIN, MAIN_INIT, SIGKILL, 2),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 3);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_OOM_KILLED);
	assert_int_equal(r.signal, SIGKILL);
	assert_int_equal(r.oom_victim_pid, MAIN);
	assert_int_equal(r.oom_kills, 1);
}

static void test_oom_of_child_then_failure(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	/* a shell whose child was OOM-killed exits 137: the root cause is the OOM kill */
	struct taskwatch_event evs[] = {
		ev_oom(300, 0, 1),
		ev_exit(300, 0, SIGKILL, 2),
		ev_exit(MAIN, MAIN_INIT, W_EXIT(137), 3),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 3);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_OOM_KILLED);
	assert_int_equal(r.exit_code, 137);
	assert_int_equal(r.oom_victim_pid, 300);
}

static void test_oom_of_child_then_success(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_oom(300, 0, 1),
		ev_exit(MAIN, MAIN_INIT, W_EXIT(0), 3),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_EXITED);
	assert_int_equal(r.exit_code, 0);
	assert_int_equal(r.oom_kills, 1); /* still reported */
}

static void test_user_kill_after_child_oom(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	/* a child was OOM-killed, later an operator kills the main: that is what ended it */
	struct taskwatch_event evs[] = {
		ev_oom(300, 0, 1),
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGKILL, 777, "kill", 2),
		ev_exit(MAIN, MAIN_INIT, SIGKILL, 3),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 3);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_SIGNALED);
	assert_int_equal(r.sender_pid, 777);
	assert_int_equal(r.oom_kills, 1);
}

static void test_fallback_oom_unknown_victim(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_oom(0, TASKWATCH_F_FALLBACK, 1),
		ev_exit(MAIN, MAIN_INIT | TASKWATCH_F_FALLBACK, SIGKILL, 2),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_OOM_KILLED);
	assert_int_equal(r.oom_victim_pid, 0);
}

static void test_stop_requested(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGTERM, 1, "taskd", 101),
		ev_exit(MAIN, MAIN_INIT, SIGTERM, 102),
	};
	char buf[64];

	taskwatch_reason_init(&c);
	taskwatch_reason_stop_requested(&c, 100);
	taskwatch_reason_stop_requested(&c, 150); /* the first request counts */
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_KILLED_BY_STOP);
	assert_int_equal(r.signal, SIGTERM);
	assert_string_equal(taskwatch_reason_format(&r, buf, sizeof(buf)),
			    "killed_by_stop(SIGTERM)");
}

static void test_death_before_stop_is_not_stop(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	/* the main crashed at 90, the stop came at 100, the init noticed at 110 */
	struct taskwatch_event evs[] = {
		ev_exit(MAIN, TASKWATCH_F_MAIN, SIGABRT, 90),
		ev_exit(INIT, TASKWATCH_F_INIT, W_EXIT(134), 110),
	};

	taskwatch_reason_init(&c);
	taskwatch_reason_stop_requested(&c, 100);
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_SIGNALED);
	assert_int_equal(r.signal, SIGABRT);
	assert_int_equal(r.main_pid, MAIN);
}

static void test_init_and_main_split(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	/* main (the command) killed, init exits with 128+9 mirroring it: reason from main */
	struct taskwatch_event evs[] = {
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGKILL, 777, "sre", 1),
		ev_exit(MAIN, TASKWATCH_F_MAIN, SIGKILL, 2),
		ev_exit(INIT, TASKWATCH_F_INIT, W_EXIT(137), 3),
	};

	taskwatch_reason_init(&c);
	assert_false(taskwatch_reason_feed(&c, &evs[0]));
	assert_false(taskwatch_reason_feed(&c, &evs[1])); /* main died, init still alive */
	assert_true(taskwatch_reason_feed(&c, &evs[2]));
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_SIGNALED);
	assert_int_equal(r.signal, SIGKILL);
	assert_int_equal(r.sender_pid, 777);
	assert_false(r.uncertain);
}

static void test_sender_seen_through_init(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	/* sre -> SIGTERM -> init (handled, forwarded) -> SIGTERM -> main */
	struct taskwatch_event evs[] = {
		ev_signal(INIT, TASKWATCH_F_INIT | TASKWATCH_F_HANDLED, SIGTERM, 900, "sre", 1),
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGTERM, INIT, "tw-init", 2),
		ev_exit(MAIN, TASKWATCH_F_MAIN, SIGTERM, 3),
		ev_exit(INIT, TASKWATCH_F_INIT, W_EXIT(143), 4),
	};
	char buf[96];

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 4);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_SIGNALED);
	assert_int_equal(r.sender_pid, 900);
	assert_true(r.via_init);
	assert_string_equal(taskwatch_reason_format(&r, buf, sizeof(buf)),
			    "signaled(SIGTERM, from 900 sre via init)");
}

static void test_init_own_signal_not_rewritten(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	/* the init killed the command on its own (nobody signalled the init) */
	struct taskwatch_event evs[] = {
		ev_signal(MAIN, TASKWATCH_F_MAIN, SIGKILL, INIT, "tw-init", 2),
		ev_exit(MAIN, TASKWATCH_F_MAIN, SIGKILL, 3),
		ev_exit(INIT, TASKWATCH_F_INIT, W_EXIT(137), 4),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 3);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.sender_pid, INIT);
	assert_false(r.via_init);
}

static void test_handled_signal_to_init_main_ignored(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	/* init == main handled SIGTERM (no death), later exits 0 */
	struct taskwatch_event evs[] = {
		ev_signal(MAIN, MAIN_INIT | TASKWATCH_F_HANDLED, SIGTERM, 5, "x", 1),
		ev_exit(MAIN, MAIN_INIT, W_EXIT(0), 2),
	};

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_EXITED);
	assert_int_equal(c.n_signals, 0);
}

static void test_main_unseen_uses_init_uncertain(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event evs[] = {
		ev_simple(TASKWATCH_EV_LOST, 1),
		ev_exit(INIT, TASKWATCH_F_INIT, W_EXIT(2), 3),
	};
	char buf[64];

	taskwatch_reason_init(&c);
	feed_all(&c, evs, 2);
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_EXITED);
	assert_int_equal(r.exit_code, 2);
	assert_true(r.uncertain);
	assert_string_equal(taskwatch_reason_format(&r, buf, sizeof(buf)), "exited(2)?");
}

static void test_cgroup_empty_without_exit(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event e = ev_simple(TASKWATCH_EV_CGROUP_EMPTY, 9);

	taskwatch_reason_init(&c);
	assert_true(taskwatch_reason_feed(&c, &e));
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_UNKNOWN);
	assert_true(r.uncertain);
	assert_int_equal(r.ended_ns, 9);
}

static void test_status_unknown(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event e =
		ev_exit(MAIN, MAIN_INIT | TASKWATCH_F_STATUS_UNKNOWN | TASKWATCH_F_FALLBACK, 0, 4);

	taskwatch_reason_init(&c);
	assert_true(taskwatch_reason_feed(&c, &e));
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_UNKNOWN);
	assert_true(r.uncertain);
}

static void test_events_after_end_ignored(void **state)
{
	struct taskwatch_classifier c;
	struct taskwatch_reason r;
	struct taskwatch_event a = ev_exit(MAIN, MAIN_INIT, W_EXIT(0), 1);
	struct taskwatch_event b = ev_oom(MAIN, TASKWATCH_F_MAIN, 2);

	taskwatch_reason_init(&c);
	taskwatch_reason_feed(&c, &a);
	assert_true(taskwatch_reason_feed(&c, &b));
	assert_int_equal(taskwatch_reason_get(&c, &r), 0);
	assert_int_equal(r.kind, TASKWATCH_REASON_EXITED);
	assert_int_equal(r.oom_kills, 0);
}

static void test_event_type_names(void **state)
{
	assert_string_equal(taskwatch_event_type_to_string(TASKWATCH_EV_OOM_KILL), "oom_kill");
	assert_string_equal(taskwatch_event_type_to_string(TASKWATCH_EV_CGROUP_EMPTY),
			    "cgroup_empty");
	assert_string_equal(taskwatch_event_type_to_string((enum taskwatch_event_type)99),
			    "unknown");
	assert_string_equal(taskwatch_reason_kind_to_string(TASKWATCH_REASON_KILLED_BY_STOP),
			    "killed_by_stop");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exited_code),
		cmocka_unit_test(test_child_exits_do_not_end),
		cmocka_unit_test(test_signaled_with_sender),
		cmocka_unit_test(test_signal_to_other_process_ignored),
		cmocka_unit_test(test_sender_matches_signal_number),
		cmocka_unit_test(test_core_dumped),
		cmocka_unit_test(test_oom_of_main),
		cmocka_unit_test(test_oom_of_child_then_failure),
		cmocka_unit_test(test_oom_of_child_then_success),
		cmocka_unit_test(test_user_kill_after_child_oom),
		cmocka_unit_test(test_fallback_oom_unknown_victim),
		cmocka_unit_test(test_stop_requested),
		cmocka_unit_test(test_death_before_stop_is_not_stop),
		cmocka_unit_test(test_init_and_main_split),
		cmocka_unit_test(test_sender_seen_through_init),
		cmocka_unit_test(test_init_own_signal_not_rewritten),
		cmocka_unit_test(test_handled_signal_to_init_main_ignored),
		cmocka_unit_test(test_main_unseen_uses_init_uncertain),
		cmocka_unit_test(test_cgroup_empty_without_exit),
		cmocka_unit_test(test_status_unknown),
		cmocka_unit_test(test_events_after_end_ignored),
		cmocka_unit_test(test_event_type_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
