/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox/seccomp.h"

#include <fcntl.h>
#include <pthread.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/macro.h"
#include "lib/str.h"
#ifndef SANDBOX_SECCOMP_GEN
/* $(BUILD)/gen: the profiles compiled at build time by sandbox-seccomp-gen (seccomp_gen.c) */
#include "sandbox_seccomp_bpf.h"
#endif

const struct sandbox_seccomp_rule sandbox_seccomp_rules[] = {
	{ "mount", EPERM, "file system namespace changes" },
	{ "umount", EPERM, "file system namespace changes" },
	{ "umount2", EPERM, "file system namespace changes" },
	{ "pivot_root", EPERM, "file system namespace changes" },
	{ "chroot", EPERM, "file system namespace changes" },
	{ "fsopen", EPERM, "new mount API" },
	{ "fsconfig", EPERM, "new mount API" },
	{ "fsmount", EPERM, "new mount API" },
	{ "fspick", EPERM, "new mount API" },
	{ "move_mount", EPERM, "new mount API" },
	{ "open_tree", EPERM, "new mount API" },
	{ "mount_setattr", EPERM, "new mount API" },
	{ "open_by_handle_at", EPERM, "classic container escape through file handles" },
	{ "kexec_load", EPERM, "kernel replacement" },
	{ "kexec_file_load", EPERM, "kernel replacement" },
	{ "init_module", EPERM, "kernel modules" },
	{ "finit_module", EPERM, "kernel modules" },
	{ "delete_module", EPERM, "kernel modules" },
	{ "bpf", EPERM, "kernel programs" },
	{ "perf_event_open", EPERM, "kernel introspection and side channels" },
	{ "keyctl", EPERM, "kernel keyrings are not namespaced" },
	{ "add_key", EPERM, "kernel keyrings are not namespaced" },
	{ "request_key", EPERM, "kernel keyrings are not namespaced" },
	{ "clock_settime", EPERM, "host clock" },
	{ "clock_adjtime", EPERM, "host clock" },
	{ "settimeofday", EPERM, "host clock" },
	{ "stime", EPERM, "host clock" },
	{ "reboot", EPERM, "host power" },
	{ "swapon", EPERM, "host swap" },
	{ "swapoff", EPERM, "host swap" },
	{ "acct", EPERM, "host accounting" },
	{ "quotactl", EPERM, "host quotas" },
	{ "quotactl_fd", EPERM, "host quotas" },
	{ "lookup_dcookie", EPERM, "kernel profiling" },
	{ "iopl", EPERM, "raw I/O ports" },
	{ "ioperm", EPERM, "raw I/O ports" },
	{ "syslog", EPERM, "kernel log" },
	{ "uselib", EPERM, "obsolete" },
	{ "userfaultfd", EPERM, "exploitation primitive" },
	{ "vhangup", EPERM, "terminal hijack" },
	{ "nfsservctl", EPERM, "obsolete" },
	{ "_sysctl", EPERM, "obsolete" },
	{ "sethostname", EPERM, "uts identity is set by the launcher" },
	{ "setdomainname", EPERM, "uts identity is set by the launcher" },
	{ "io_uring_setup", EPERM, "bypasses seccomp for the operations it performs" },
	{ "io_uring_enter", EPERM, "bypasses seccomp for the operations it performs" },
	{ "io_uring_register", EPERM, "bypasses seccomp for the operations it performs" },
	{ "unshare", EPERM, "only with CLONE_NEWUSER" },
	{ "clone", EPERM, "only with CLONE_NEWUSER" },
	{ "setns", EPERM, "only for user namespaces (or nstype 0)" },
	{ "ptrace", EPERM, "only PTRACE_ATTACH / PTRACE_SEIZE (non-children)" },
	{ "clone3", ENOSYS, "flags unreadable by a filter; glibc falls back to clone" },
	{ NULL, 0, NULL },
};

static bool rule_is_conditional(const char *name)
{
	return streq(name, "unshare") || streq(name, "clone") || streq(name, "setns") ||
	       streq(name, "ptrace");
}

static int add_conditional(scmp_filter_ctx ctx, const struct sandbox_seccomp_opts *o, int nr,
			   const char *name)
{
	uint32_t act = SCMP_ACT_ERRNO(EPERM);

	if (streq(name, "unshare") || streq(name, "clone")) {
		if (o->allow_userns)
			return 0;
		/* flags are argument 0 of clone on x86_64 and arm64 (s390 swaps them) */
		return seccomp_rule_add(ctx, act, nr, 1,
					SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
	}
	if (streq(name, "setns")) {
		int r;

		if (o->allow_userns)
			return 0;
		r = seccomp_rule_add(ctx, act, nr, 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
		if (r < 0)
			return r;
		/* nstype 0 accepts any namespace fd, including a user namespace */
		return seccomp_rule_add(ctx, act, nr, 1, SCMP_A1(SCMP_CMP_EQ, 0));
	}
	if (streq(name, "ptrace")) {
		int r;

		if (o->allow_ptrace_attach)
			return 0;
		r = seccomp_rule_add(ctx, act, nr, 1, SCMP_A0(SCMP_CMP_EQ, PTRACE_ATTACH));
		if (r < 0)
			return r;
		return seccomp_rule_add(ctx, act, nr, 1, SCMP_A0(SCMP_CMP_EQ, PTRACE_SEIZE));
	}
	return -EINVAL;
}

static void seccomp_releasep(scmp_filter_ctx *ctx)
{
	if (*ctx)
		seccomp_release(*ctx);
}

int sandbox_seccomp_build(const struct sandbox_seccomp_opts *opts, struct sandbox_bpf *ret,
			  struct cd_error *err)
{
	static const struct sandbox_seccomp_opts defaults;
	_cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
	_cleanup_close_ int mfd = -EBADF;
	struct sock_filter *insns;
	struct stat st;
	int r;

	if (!opts)
		opts = &defaults;
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return cd_error_set(err, -ENOMEM, "seccomp_init failed");
	/* other ABIs (i386, x32) are not in the arch list: everything they call gets ENOSYS */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS));
	if (r < 0)
		return cd_error_set(err, r, "seccomp: cannot set the bad-arch action");
	/* the launcher sets no_new_privs itself, at the step it chooses */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (r < 0)
		return cd_error_set(err, r, "seccomp: cannot clear the NNP attribute");

	for (const struct sandbox_seccomp_rule *rule = sandbox_seccomp_rules; rule->name; rule++) {
		int nr = seccomp_syscall_resolve_name(rule->name);

		if (nr == __NR_SCMP_ERROR || nr < 0)
			continue; /* not a syscall on this architecture (umount, stime on x86_64) */
		if (rule_is_conditional(rule->name))
			r = add_conditional(ctx, opts, nr, rule->name);
		else
			r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(rule->err), nr, 0);
		if (r < 0)
			return cd_error_set(err, r, "seccomp: cannot add rule for %s: %s",
					    rule->name, strerror(-r));
	}

	mfd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
	if (mfd < 0)
		return cd_error_set(err, -errno, "seccomp: memfd_create: %m");
	r = seccomp_export_bpf(ctx, mfd);
	if (r < 0)
		return cd_error_set(err, r, "seccomp: cannot export the filter: %s", strerror(-r));
	if (fstat(mfd, &st) < 0)
		return -errno;
	if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
	    st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS)
		return cd_error_set(err, -EINVAL, "seccomp: exported filter has a bad size");
	insns = malloc(st.st_size);
	if (!insns)
		return -ENOMEM;
	if (pread(mfd, insns, st.st_size, 0) != st.st_size) {
		free(insns);
		return cd_error_set(err, -EIO, "seccomp: short read of the exported filter");
	}
	ret->insns = insns;
	ret->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
	return 0;
}

void sandbox_bpf_release(struct sandbox_bpf *bpf)
{
	if (!bpf)
		return;
	free(bpf->insns);
	bpf->insns = NULL;
	bpf->len = 0;
}

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
/* index: allow_userns | allow_ptrace_attach << 1 */
static struct sandbox_bpf cache[SANDBOX_SECCOMP_VARIANTS];

bool sandbox_seccomp_prebuilt(void)
{
#ifdef SANDBOX_SECCOMP_GEN
	return false;
#else
	/* both are plain reads of libseccomp's static data: no filter context is made */
	const struct scmp_version *v = seccomp_version();

	return v && seccomp_arch_native() == SANDBOX_SECCOMP_GEN_ARCH &&
	       v->major == SANDBOX_SECCOMP_GEN_VERSION_MAJOR &&
	       v->minor == SANDBOX_SECCOMP_GEN_VERSION_MINOR &&
	       v->micro == SANDBOX_SECCOMP_GEN_VERSION_MICRO;
#endif
}

static int cache_fill(const struct sandbox_seccomp_opts *opts, unsigned i, struct sandbox_bpf *ret,
		      struct cd_error *err)
{
#ifndef SANDBOX_SECCOMP_GEN
	if (sandbox_seccomp_prebuilt()) {
		size_t size = sandbox_seccomp_gen_len[i] * sizeof(struct sock_filter);

		ret->insns = malloc(size);
		if (!ret->insns)
			return -ENOMEM;
		memcpy(ret->insns, sandbox_seccomp_gen[i], size);
		ret->len = sandbox_seccomp_gen_len[i];
		return 0;
	}
#endif
	return sandbox_seccomp_build(opts, ret, err);
}

int sandbox_seccomp_get(const struct sandbox_seccomp_opts *opts, const struct sandbox_bpf **ret,
			struct cd_error *err)
{
	static const struct sandbox_seccomp_opts defaults;
	unsigned i;
	int r = 0;

	if (!opts)
		opts = &defaults;
	i = (unsigned)opts->allow_userns | (unsigned)opts->allow_ptrace_attach << 1;
	pthread_mutex_lock(&cache_lock);
	if (!cache[i].insns)
		r = cache_fill(opts, i, &cache[i], err);
	pthread_mutex_unlock(&cache_lock);
	if (r < 0)
		return r;
	*ret = &cache[i];
	return 0;
}

int sandbox_seccomp_load(const struct sandbox_bpf *bpf)
{
	struct sock_fprog prog = { .len = bpf->len, .filter = bpf->insns };

	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		return -errno;
	return 0;
}
