/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskwatch.c — the watcher: mode selection (BPF, else fallback), targets, one epoll fd over the
 * ring buffer and the per-target fds, and event delivery with main/init flags resolved here in
 * user space (so a caller may name the init or main pid after the task started, as long as it
 * does so before consuming).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ebpf/taskwatch.h"
#include "ebpf/taskwatch_internal.h"
#include "lib/macro.h"
#include "lib/str.h"
#include "taskwatch.skel.h"

#define DEFAULT_RINGBUF_BYTES (4u << 20)
#define DEFAULT_MAX_TARGETS 16384u

struct taskwatch {
	bool bpf;
	char why[512];
	int epfd;
	struct taskwatch_bpf *skel;
	/* our own ring buffer consumer (see ringbuf_open()) */
	size_t page;
	uint64_t rb_mask;
	unsigned long *rb_consumer; /* RW page: consumer position */
	void *rb_producer;	    /* RO: producer page + data mapped twice */
	size_t rb_producer_len;
	struct tw_source src_ringbuf;
	int retry_tfd; /* fallback: re-check exited, not yet reaped non-child inits */
	struct tw_source src_retry;
	uint64_t lost_seen[TASKWATCH_EV__MAX];

	struct tw_target **targets;
	size_t n_targets, alloc_targets;
	uint32_t max_targets;

	/* during taskwatch_consume() */
	bool in_consume;
	taskwatch_event_fn cb;
	void *userdata;
	int cb_ret;
	int delivered;
};

/* libbpf's print hook is process-global; it is pointed here only while we open and load, so
 * the reason for a fallback can carry libbpf's own words (its first warning). */
static char libbpf_last_msg[256];
static bool libbpf_specific;

static int libbpf_capture(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[256];
	size_t n;

	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
		line[--n] = '\0';
	if (n == 0)
		return 0;
	/* Keep the first message about a program or map ("prog 'x': BPF program load failed:
	 * ...", "map 'y': failed to create: ..."): the ones after it only unwind. */
	if (strstr(line, "prog '") || strstr(line, "map '")) {
		if (!libbpf_specific)
			memcpy(libbpf_last_msg, line, n + 1);
		libbpf_specific = true;
	} else if (!libbpf_specific) {
		memcpy(libbpf_last_msg, line, n + 1);
	}
	return 0;
}

static uint32_t round_pow2(uint32_t v, uint32_t min)
{
	uint32_t r = min;

	while (r < v && r < (1u << 30))
		r <<= 1;
	return r;
}

/*
 * The ring buffer is mapped here rather than through libbpf's ring_buffer (whose mappings are
 * out of reach in libbpf 1.1) so it can be MADV_DONTFORK: the data pages are mapped twice and
 * with VM_MIXEDMAP, so every fork() of the owning process (taskd starting a task) would copy
 * their page tables — measured +250 us per fork+exec with a 4 MiB ring.
 */
static int ringbuf_open(struct taskwatch *tw)
{
	int fd = bpf_map__fd(tw->skel->maps.events);
	uint32_t size = bpf_map__max_entries(tw->skel->maps.events);
	void *p;

	tw->rb_mask = size - 1;
	p = mmap(NULL, tw->page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	tw->rb_consumer = p;
	tw->rb_producer_len = tw->page + 2 * (size_t)size;
	p = mmap(NULL, tw->rb_producer_len, PROT_READ, MAP_SHARED, fd, (off_t)tw->page);
	if (p == MAP_FAILED)
		return -errno;
	tw->rb_producer = p;
	if (madvise(tw->rb_consumer, tw->page, MADV_DONTFORK) < 0 ||
	    madvise(tw->rb_producer, tw->rb_producer_len, MADV_DONTFORK) < 0)
		return -errno;
	/* the skeleton's mapping of lost_events[]: same reason, smaller */
	if (tw->skel->bss && madvise(tw->skel->bss, tw->page, MADV_DONTFORK) < 0)
		return -errno;
	return 0;
}

static void ringbuf_close(struct taskwatch *tw)
{
	if (tw->rb_consumer)
		munmap(tw->rb_consumer, tw->page);
	if (tw->rb_producer)
		munmap(tw->rb_producer, tw->rb_producer_len);
	tw->rb_consumer = NULL;
	tw->rb_producer = NULL;
}

static int ringbuf_sample(void *ctx, void *data, size_t size);

/* Hand every committed record to ringbuf_sample(); stops early when it returns non-zero. */
static int ringbuf_consume(struct taskwatch *tw)
{
	const unsigned long *producer = tw->rb_producer;
	const char *data = (const char *)tw->rb_producer + tw->page;
	unsigned long cons = __atomic_load_n(tw->rb_consumer, __ATOMIC_ACQUIRE);
	bool progress;

	do {
		unsigned long prod = __atomic_load_n(producer, __ATOMIC_ACQUIRE);

		progress = false;
		while (cons < prod) {
			const uint32_t *hdr = (const uint32_t *)(data + (cons & tw->rb_mask));
			uint32_t len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
			int r = 0;

			if (len & BPF_RINGBUF_BUSY_BIT)
				return 0; /* reserved, not committed yet: the next wakeup brings it */
			if (!(len & BPF_RINGBUF_DISCARD_BIT))
				r = ringbuf_sample(tw, (void *)(hdr + 2), len);
			len &= ~(uint32_t)BPF_RINGBUF_DISCARD_BIT;
			cons += (len + BPF_RINGBUF_HDR_SZ + 7) & ~7u;
			__atomic_store_n(tw->rb_consumer, cons, __ATOMIC_RELEASE);
			progress = true;
			if (r != 0)
				return r;
		}
	} while (progress);
	return 0;
}

static int bpf_setup(struct taskwatch *tw, const struct taskwatch_opts *opts)
{
	libbpf_print_fn_t old;
	uint32_t rb_bytes = opts && opts->ringbuf_bytes ? opts->ringbuf_bytes :
							  DEFAULT_RINGBUF_BYTES;
	struct epoll_event ev = { .events = EPOLLIN };
	int r;

	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		snprintf(tw->why, sizeof(tw->why), "no kernel BTF (/sys/kernel/btf/vmlinux: %s)",
			 strerror(errno));
		return -errno;
	}

	libbpf_last_msg[0] = '\0';
	libbpf_specific = false;
	old = libbpf_set_print(libbpf_capture);
	tw->skel = taskwatch_bpf__open();
	if (!tw->skel) {
		r = -errno;
		snprintf(tw->why, sizeof(tw->why), "BPF open failed: %s", strerror(-r));
		goto out;
	}
	r = bpf_map__set_max_entries(tw->skel->maps.events,
				     round_pow2(rb_bytes, (uint32_t)tw->page));
	if (r >= 0)
		r = bpf_map__set_max_entries(tw->skel->maps.watched, tw->max_targets);
	if (r < 0) {
		snprintf(tw->why, sizeof(tw->why), "BPF map sizing failed: %s", strerror(-r));
		goto out;
	}
	r = taskwatch_bpf__load(tw->skel);
	if (r < 0) {
		snprintf(tw->why, sizeof(tw->why), "BPF load failed (%s)%s%s",
			 r == -EPERM ? "no CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN" : strerror(-r),
			 libbpf_last_msg[0] ? ": " : "", libbpf_last_msg);
		goto out;
	}
	r = taskwatch_bpf__attach(tw->skel);
	if (r < 0) {
		snprintf(tw->why, sizeof(tw->why), "BPF attach failed (%s)%s%s", strerror(-r),
			 libbpf_last_msg[0] ? ": " : "", libbpf_last_msg);
		goto out;
	}
	r = ringbuf_open(tw);
	if (r < 0) {
		snprintf(tw->why, sizeof(tw->why), "ring buffer setup failed: %s", strerror(-r));
		goto out;
	}
	tw->src_ringbuf.kind = TW_SRC_RINGBUF;
	ev.data.ptr = &tw->src_ringbuf;
	if (epoll_ctl(tw->epfd, EPOLL_CTL_ADD, bpf_map__fd(tw->skel->maps.events), &ev) < 0) {
		r = -errno;
		snprintf(tw->why, sizeof(tw->why), "epoll on ring buffer failed: %s", strerror(-r));
		goto out;
	}
	r = 0;
out:
	libbpf_set_print(old);
	if (r < 0) {
		ringbuf_close(tw);
		taskwatch_bpf__destroy(tw->skel);
		tw->skel = NULL;
	}
	return r;
}

int taskwatch_new(const struct taskwatch_opts *opts, struct taskwatch **ret)
{
	struct taskwatch *tw;
	const char *env = getenv("TASKWATCH_FALLBACK");

	tw = calloc(1, sizeof(*tw));
	if (!tw)
		return -ENOMEM;
	tw->max_targets = opts && opts->max_targets ? opts->max_targets : DEFAULT_MAX_TARGETS;
	tw->page = (size_t)sysconf(_SC_PAGESIZE);
	tw->retry_tfd = -EBADF;
	tw->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (tw->epfd < 0) {
		int r = -errno;

		free(tw);
		return r;
	}
	if (opts && opts->force_fallback)
		snprintf(tw->why, sizeof(tw->why), "forced by caller");
	else if (env && streq(env, "1"))
		snprintf(tw->why, sizeof(tw->why), "forced by TASKWATCH_FALLBACK=1");
	else if (bpf_setup(tw, opts) >= 0)
		tw->bpf = true;
	*ret = tw;
	return 0;
}

struct taskwatch *taskwatch_free(struct taskwatch *tw)
{
	if (!tw)
		return NULL;
	for (size_t i = 0; i < tw->n_targets; i++) {
		tw_target_close(tw->targets[i], tw->epfd);
		free(tw->targets[i]);
	}
	free(tw->targets);
	ringbuf_close(tw);
	taskwatch_bpf__destroy(tw->skel);
	safe_close(tw->retry_tfd);
	safe_close(tw->epfd);
	free(tw);
	return NULL;
}

const char *taskwatch_mode(const struct taskwatch *tw, const char **ret_why)
{
	if (ret_why)
		*ret_why = tw->bpf ? "" : tw->why;
	return tw->bpf ? "bpf" : "fallback";
}

bool taskwatch_is_bpf(const struct taskwatch *tw)
{
	return tw->bpf;
}

int taskwatch_fd(const struct taskwatch *tw)
{
	return tw->epfd;
}

static struct tw_target *target_find(struct taskwatch *tw, uint64_t cgroup_id, size_t *ret_idx)
{
	for (size_t i = 0; i < tw->n_targets; i++)
		if (tw->targets[i]->cgroup_id == cgroup_id && !tw->targets[i]->removed) {
			if (ret_idx)
				*ret_idx = i;
			return tw->targets[i];
		}
	return NULL;
}

static void target_free(struct taskwatch *tw, struct tw_target *t)
{
	tw_target_close(t, tw->epfd);
	free(t);
}

static int set_init(struct taskwatch *tw, struct tw_target *t, pid_t pid, int pidfd);

int taskwatch_add(struct taskwatch *tw, const struct taskwatch_target *spec)
{
	struct tw_target *t;
	int r;

	if (!spec || spec->cgroup_id == 0 || spec->main_kind > TASKWATCH_MAIN_PID ||
	    (spec->main_kind == TASKWATCH_MAIN_PID && spec->main_pid <= 0) || spec->init_pid < 0)
		return -EINVAL;
	if (target_find(tw, spec->cgroup_id, NULL))
		return -EEXIST;
	if (tw->n_targets >= tw->max_targets)
		return -ENOSPC;
	if (tw->n_targets == tw->alloc_targets) {
		size_t n = tw->alloc_targets ? tw->alloc_targets * 2 : 16;
		struct tw_target **v = reallocarray(tw->targets, n, sizeof(*v));

		if (!v)
			return -ENOMEM;
		tw->targets = v;
		tw->alloc_targets = n;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->cgroup_id = spec->cgroup_id;
	t->cookie = spec->cookie;
	t->main_kind = spec->main_kind;
	t->main_pid = spec->main_kind == TASKWATCH_MAIN_PID ? spec->main_pid : 0;
	t->init_pidfd = t->oom_fd = t->oom_ctl_fd = t->cgevents_fd = -EBADF;
	t->cg_state = -1;

	if (spec->cgroup_path) {
		r = tw_target_open_cgevents(t, tw->epfd, spec->cgroup_path);
		if (r < 0)
			goto fail;
	}
	if (!tw->bpf && spec->memory_path) {
		r = tw_target_open_oom(t, tw->epfd, spec->memory_path);
		if (r < 0)
			goto fail;
	}
	if (spec->init_pid > 0 || spec->init_pidfd >= 0) {
		r = set_init(tw, t, spec->init_pid, spec->init_pidfd);
		if (r < 0)
			goto fail;
	}
	if (tw->bpf) {
		struct taskwatch_watched val = { .cookie = spec->cookie,
						 .init_tgid = (uint32_t)t->init_pid };

		r = bpf_map_update_elem(bpf_map__fd(tw->skel->maps.watched), &spec->cgroup_id, &val,
					BPF_NOEXIST);
		if (r < 0) {
			r = -errno;
			goto fail;
		}
	}
	t->in_map = tw->bpf;
	tw->targets[tw->n_targets++] = t;
	return 0;
fail:
	target_free(tw, t);
	return r;
}

static int set_init(struct taskwatch *tw, struct tw_target *t, pid_t pid, int pidfd)
{
	int r;

	if (pid < 0)
		return -EINVAL;
	if (!tw->bpf) {
		r = tw_target_open_init(t, tw->epfd, pid, pidfd);
		if (r < 0)
			return r;
		/* tw_target_open_init resolves pid from pidfd when pid is 0 */
		pid = t->init_pid;
	}
	t->init_pid = pid;
	t->populated_seen = true; /* the init ran in it */
	if (tw->bpf && t->in_map) {
		struct taskwatch_watched val = { .cookie = t->cookie, .init_tgid = (uint32_t)pid };

		if (bpf_map_update_elem(bpf_map__fd(tw->skel->maps.watched), &t->cgroup_id, &val,
					BPF_EXIST) < 0)
			return -errno;
	}
	if (t->main_kind == TASKWATCH_MAIN_INIT)
		t->main_pid = pid;
	return 0;
}

int taskwatch_set_init(struct taskwatch *tw, uint64_t cgroup_id, pid_t init_pid, int init_pidfd)
{
	struct tw_target *t = target_find(tw, cgroup_id, NULL);

	if (!t)
		return -ENOENT;
	if (init_pid <= 0 && init_pidfd < 0)
		return -EINVAL;
	return set_init(tw, t, init_pid, init_pidfd);
}

int taskwatch_set_main(struct taskwatch *tw, uint64_t cgroup_id, pid_t main_pid)
{
	struct tw_target *t = target_find(tw, cgroup_id, NULL);

	if (!t)
		return -ENOENT;
	if (main_pid <= 0)
		return -EINVAL;
	t->main_kind = TASKWATCH_MAIN_PID;
	t->main_pid = main_pid;
	return 0;
}

static void sweep_removed(struct taskwatch *tw)
{
	for (size_t i = 0; i < tw->n_targets;) {
		if (tw->targets[i]->removed) {
			target_free(tw, tw->targets[i]);
			tw->targets[i] = tw->targets[--tw->n_targets];
		} else {
			i++;
		}
	}
}

int taskwatch_remove(struct taskwatch *tw, uint64_t cgroup_id)
{
	size_t idx;
	struct tw_target *t = target_find(tw, cgroup_id, &idx);

	if (!t)
		return -ENOENT;
	if (tw->bpf && bpf_map_delete_elem(bpf_map__fd(tw->skel->maps.watched), &cgroup_id) < 0 &&
	    errno != ENOENT)
		return -errno;
	/* From a callback, the target loop of taskwatch_consume() still walks the array: only
	 * mark it; the sweep at the end of consume frees it. Its fds leave epoll now. */
	tw_target_close(t, tw->epfd);
	t->removed = true;
	if (!tw->in_consume)
		sweep_removed(tw);
	return 0;
}

/* Resolve main/init flags for an event about process ev->tgid in target t. */
static void classify_flags(struct tw_target *t, struct taskwatch_event *ev)
{
	if (!t)
		return;
	if (ev->type == TASKWATCH_EV_FORK && t->main_kind == TASKWATCH_MAIN_INIT_CHILD &&
	    t->main_pid == 0 && t->init_pid > 0 && (pid_t)ev->ppid == t->init_pid)
		t->main_pid = (pid_t)ev->tgid;
	if (t->main_pid > 0 && (pid_t)ev->tgid == t->main_pid)
		ev->flags |= TASKWATCH_F_MAIN;
	if ((ev->type == TASKWATCH_EV_EXIT || ev->type == TASKWATCH_EV_FATAL_SIGNAL) &&
	    t->init_pid > 0 && (pid_t)ev->tgid == t->init_pid)
		ev->flags |= TASKWATCH_F_INIT;
}

static int deliver(struct taskwatch *tw, const struct taskwatch_event *ev)
{
	int r = tw->cb(ev, tw->userdata);

	tw->delivered++;
	if (r != 0)
		tw->cb_ret = r;
	return r;
}

static int ringbuf_sample(void *ctx, void *data, size_t size)
{
	struct taskwatch *tw = ctx;
	struct taskwatch_event ev;
	struct tw_target *t;

	if (size < sizeof(ev))
		return 0; /* not ours: cannot happen with a matching skeleton */
	memcpy(&ev, data, sizeof(ev));
	t = target_find(tw, ev.cgroup_id, NULL);
	if (t)
		t->populated_seen = true; /* even if cgroup.events only shows the end state */
	classify_flags(t, &ev);
	/* the callback's own value is kept in cb_ret */
	return deliver(tw, &ev) != 0 ? -ECANCELED : 0;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void event_init(struct taskwatch_event *ev, enum taskwatch_event_type type,
		       const struct tw_target *t)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->ts_ns = monotonic_ns();
	if (t) {
		ev->cgroup_id = t->cgroup_id;
		ev->cookie = t->cookie;
	}
}

static int report_lost(struct taskwatch *tw)
{
	uint64_t total = 0;

	if (!tw->bpf)
		return 0;
	for (size_t i = 0; i < TASKWATCH_EV__MAX; i++) {
		uint64_t now = __atomic_load_n(&tw->skel->bss->lost_events[i], __ATOMIC_RELAXED);

		total += now - tw->lost_seen[i];
		tw->lost_seen[i] = now;
	}
	if (total > 0) {
		struct taskwatch_event ev;

		event_init(&ev, TASKWATCH_EV_LOST, NULL);
		ev.lost.count = total;
		return deliver(tw, &ev);
	}
	return 0;
}

uint64_t taskwatch_lost(struct taskwatch *tw, uint64_t per_type[TASKWATCH_EV__MAX])
{
	uint64_t total = 0;

	for (size_t i = 0; i < TASKWATCH_EV__MAX; i++) {
		uint64_t v = tw->bpf ? __atomic_load_n(&tw->skel->bss->lost_events[i],
						       __ATOMIC_RELAXED) :
				       0;

		if (per_type)
			per_type[i] = v;
		total += v;
	}
	return total;
}

#define UNREAPED_GIVE_UP_NS (2000000000ull)
#define UNREAPED_RETRY_NS (10000000ull)

static int retry_arm(struct taskwatch *tw)
{
	struct itimerspec its = { .it_value.tv_nsec = UNREAPED_RETRY_NS };

	if (tw->retry_tfd < 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tw->src_retry };
		int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

		if (fd < 0)
			return -errno;
		tw->src_retry.kind = TW_SRC_RETRY;
		if (epoll_ctl(tw->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			int r = -errno;

			close(fd);
			return r;
		}
		tw->retry_tfd = fd;
	}
	return RET_NERRNO(timerfd_settime(tw->retry_tfd, 0, &its, NULL));
}

/* Fallback: the init's exit has not been reported yet (its pidfd is still open). */
static bool init_pending(const struct tw_target *t)
{
	return t->init_pidfd >= 0 && !t->init_done;
}

/* Fallback: OOM first, then the init's exit, so the classifier sees the cause before the
 * effect even though the two notifications race. */
static int handle_fallback_target(struct taskwatch *tw, struct tw_target *t)
{
	struct taskwatch_event ev;
	uint64_t delta = 0;
	int r;

	if (t->src_oom.ready || (t->src_init.ready && t->oom_fd >= 0)) {
		t->src_oom.ready = false;
		r = tw_target_read_oom(t, &delta);
		if (r < 0) {
			/* The memory cgroup was removed under us (-ENODEV): nothing more to
			 * learn from it; one dead target must not stop the others. */
			tw_target_close_oom(t, tw->epfd);
			delta = 0;
		}
		if (delta > 0) {
			event_init(&ev, TASKWATCH_EV_OOM_KILL, t);
			ev.flags |= TASKWATCH_F_FALLBACK;
			ev.oom.count = delta;
			r = deliver(tw, &ev);
			if (r != 0)
				return r;
		}
	}
	if (t->src_init.ready) {
		uint64_t now = monotonic_ns();
		bool give_up = t->init_unreaped_ns &&
			       now - t->init_unreaped_ns > UNREAPED_GIVE_UP_NS;

		t->src_init.ready = false;
		event_init(&ev, TASKWATCH_EV_EXIT, t);
		r = tw_target_read_init_exit(t, tw->epfd, &ev, give_up);
		if (r == -EAGAIN) {
			/* A non-child exited but its parent has not reaped it yet, and the
			 * kernel publishes the status at reap time: look again in a moment.
			 * The pidfd leaves epoll meanwhile (it would poll readable non-stop). */
			if (!t->init_unreaped_ns) {
				t->init_unreaped_ns = now;
				(void)epoll_ctl(tw->epfd, EPOLL_CTL_DEL, t->init_pidfd, NULL);
			}
			t->init_retry = true;
			return retry_arm(tw);
		}
		if (r < 0)
			return r;
		if (r > 0) {
			ev.flags |= TASKWATCH_F_FALLBACK;
			classify_flags(t, &ev);
			r = deliver(tw, &ev);
			if (r != 0)
				return r;
		}
	}
	return 0;
}

static int consume(struct taskwatch *tw);

int taskwatch_consume(struct taskwatch *tw, taskwatch_event_fn cb, void *userdata)
{
	int r;

	if (!cb || tw->in_consume)
		return -EINVAL;
	tw->in_consume = true;
	tw->cb = cb;
	tw->userdata = userdata;
	r = consume(tw);
	tw->in_consume = false;
	tw->cb = NULL;
	sweep_removed(tw);
	return r;
}

static int consume(struct taskwatch *tw)
{
	struct epoll_event evs[64];
	int n, r;

	tw->cb_ret = 0;
	tw->delivered = 0;

	do {
		n = epoll_wait(tw->epfd, evs, ARRAY_SIZE(evs), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			struct tw_source *s = evs[i].data.ptr;

			s->ready = true;
		}
	} while (n == (int)ARRAY_SIZE(evs));

	if (tw->src_retry.ready) {
		uint64_t expirations;

		tw->src_retry.ready = false;
		if (read(tw->retry_tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
			return -errno;
		for (size_t i = 0; i < tw->n_targets; i++)
			if (tw->targets[i]->init_retry) {
				tw->targets[i]->init_retry = false;
				tw->targets[i]->src_init.ready = true;
			}
	}

	/* Read cgroup.events before the ring: an "empty" read now comes after every exit that
	 * is committed to the ring by now, so exits are delivered before the emptiness. */
	for (size_t i = 0; i < tw->n_targets; i++) {
		struct tw_target *t = tw->targets[i];

		if (!t->src_cgevents.ready)
			continue;
		t->src_cgevents.ready = false;
		r = tw_target_read_empty(t);
		if (r < 0) {
			/* removed cgroup (-ENODEV): it can only be removed when empty */
			tw_target_close_cgevents(t, tw->epfd);
			r = 1;
		}
		t->cg_state = r;
	}

	if (tw->bpf) {
		tw->src_ringbuf.ready = false;
		r = ringbuf_consume(tw);
		if (tw->cb_ret != 0)
			return tw->cb_ret;
		if (r < 0)
			return r;
		r = report_lost(tw);
		if (r != 0)
			return r;
	}

	for (size_t i = 0; i < tw->n_targets; i++) {
		struct tw_target *t = tw->targets[i];

		if (t->removed)
			continue;
		if (t->cg_state >= 0) {
			r = t->cg_state;
			t->cg_state = -1;
			if (r == 0) {
				t->populated_seen = true;
			} else if (t->populated_seen) {
				/* one event per populated -> empty transition */
				t->populated_seen = false;
				t->empty_pending = true;
				/* an empty cgroup means the init has exited: report that first */
				if (init_pending(t))
					t->src_init.ready = true;
			}
		}
		r = handle_fallback_target(tw, t);
		if (r != 0)
			return r;
		if (t->empty_pending && !init_pending(t)) {
			struct taskwatch_event ev;

			t->empty_pending = false;
			event_init(&ev, TASKWATCH_EV_CGROUP_EMPTY, t);
			if (!tw->bpf)
				ev.flags |= TASKWATCH_F_FALLBACK;
			r = deliver(tw, &ev);
			if (r != 0)
				return r;
		}
	}
	return tw->delivered;
}

int taskwatch_cgroup_id(const char *path, uint64_t *ret)
{
	struct statfs sfs;
	struct stat st;

	/* cgroup2 is kernfs: a directory's inode number is its node id, the cgroup id BPF sees
	 * (also true of the root, which name_to_handle_at() refuses). */
	if (statfs(path, &sfs) < 0 || stat(path, &st) < 0)
		return -errno;
	if (sfs.f_type != CGROUP2_SUPER_MAGIC)
		return -EMEDIUMTYPE;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	*ret = (uint64_t)st.st_ino;
	return 0;
}

const char *taskwatch_event_type_to_string(enum taskwatch_event_type t)
{
	static const char *const names[TASKWATCH_EV__MAX] = {
		[TASKWATCH_EV_EXEC] = "exec",	      [TASKWATCH_EV_FORK] = "fork",
		[TASKWATCH_EV_EXIT] = "exit",	      [TASKWATCH_EV_FATAL_SIGNAL] = "fatal_signal",
		[TASKWATCH_EV_OOM_KILL] = "oom_kill", [TASKWATCH_EV_CGROUP_EMPTY] = "cgroup_empty",
		[TASKWATCH_EV_LOST] = "lost",
	};

	if ((unsigned)t >= TASKWATCH_EV__MAX || !names[t])
		return "unknown";
	return names[t];
}
