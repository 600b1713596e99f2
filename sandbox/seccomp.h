/* SPDX-License-Identifier: Apache-2.0 */
/*
 * seccomp.h — the task's default seccomp profile, built with libseccomp and exported to a
 * classic BPF program in memory, so the launched child can load it with one prctl() and no
 * allocation (the child of a multi-threaded daemon must not call malloc).
 * Owns the profile (what is denied and with which errno) and the exported program's memory.
 * Does not own no_new_privs: the launcher sets it before loading.
 *
 * Profile: default allow; the calls a task never needs and that widen the attack surface fail
 * with EPERM (mount family, module and kexec loading, bpf, perf_event_open, keyrings, clock
 * setting, reboot, swap, ptrace attach, user namespaces via clone/unshare/setns, ...); clone3
 * fails with ENOSYS because its flags live in memory a filter cannot read, and glibc then falls
 * back to clone(), whose flags are checked. Calls made through another ABI than the native one
 * (i386 int 0x80, x32) fail with ENOSYS ("unknown to the profile's arch list").
 * Errors: -errno + message.
 */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/error.h"

struct sandbox_seccomp_opts {
	/* Allow user namespaces (clone/unshare/setns with CLONE_NEWUSER); default false. */
	bool allow_userns;
	/* Allow ptrace(PTRACE_ATTACH/SEIZE) (debuggers attaching to their own children). */
	bool allow_ptrace_attach;
};

struct sandbox_bpf {
	struct sock_filter *insns; /* owned; free with sandbox_bpf_release() */
	unsigned short len;
};

/* One row of the profile, exposed for documentation and tests. */
struct sandbox_seccomp_rule {
	const char *name; /* syscall name as libseccomp knows it */
	int err;	  /* errno returned */
	const char *why;
};
/* The deny table (NULL-name terminated); the argument-filtered rows (clone, unshare, setns,
 * ptrace) are listed with their unconditional errno. */
extern const struct sandbox_seccomp_rule sandbox_seccomp_rules[];

/* Build the profile and export it. opts may be NULL (defaults). */
int sandbox_seccomp_build(const struct sandbox_seccomp_opts *opts, struct sandbox_bpf *ret,
			  struct cd_error *err);
void sandbox_bpf_release(struct sandbox_bpf *bpf);
/* Distinct option sets (allow_userns x allow_ptrace_attach). */
#define SANDBOX_SECCOMP_VARIANTS 4U

/*
 * The same program, kept for the life of the process. It was compiled by libseccomp at build
 * time (sandbox/seccomp_gen.c) and is served as is when the running libseccomp and native
 * architecture are the ones it was built with; otherwise it is built on first use per distinct
 * opts (compiling the profile costs 0.15-0.2 ms, all of a one-shot launcher's first launch).
 * *ret points to memory owned by the cache: never released. Thread-safe.
 */
int sandbox_seccomp_get(const struct sandbox_seccomp_opts *opts, const struct sandbox_bpf **ret,
			struct cd_error *err);
/* Does sandbox_seccomp_get() serve the programs compiled at build time here? */
bool sandbox_seccomp_prebuilt(void);
/*
 * Load the program into the calling thread. Async-signal-safe (a single prctl); requires
 * no_new_privs or CAP_SYS_ADMIN. Returns 0 or -errno.
 */
int sandbox_seccomp_load(const struct sandbox_bpf *bpf);
