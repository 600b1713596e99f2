/* SPDX-License-Identifier: Apache-2.0 */
/*
 * builder.h — the builder and test runner behind `build` and `test` stages: checks the
 * pipeline's repository out at the run's commit (a bare mirror per pipeline + one git worktree
 * per stage attempt), builds each target //dir:name with a driver, packs the outputs as a
 * reproducible tar (entries sorted, mtime 0, uid/gid 0, modes normalised), stores it in the
 * artifact store (PUT /cas/<sha256>) and indexes target@commit → digest (PUT /v1/artifacts/...).
 * Drivers: Bazel when the worktree root has MODULE.bazel, WORKSPACE.bazel or WORKSPACE (`bazel
 * --batch build //dir:name`, the outputs are the target's default files; bazel missing fails
 * the stage, there is no fallback), else make (`make -C <dir> <name> OUT=<out>`, the outputs are
 * what <out> holds). A target already indexed at the commit is not rebuilt, which makes a
 * re-executed stage attempt (after a crash) idempotent. Test stages: make builds the test
 * target the same way and runs <out>/<name>; Bazel runs `bazel test //dir:name`; the exit status
 * decides, a JUnit report is counted. Logs go to one file per stage attempt
 * (pipeline_log_path()).
 * Owns: the work directory, child processes of builds (in the sandbox when configured, else
 * their own session; killed on timeout, cancel or shutdown), rlimits of builds. Does not own
 * the artifact store (HTTP). In the sandbox a build may write only to $(OUT): the source tree
 * is read-only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/http_client.h"
#include "central/runner.h"
#include "lib/error.h"

struct builder;

struct builder_config {
	const char *work_dir; /* mirrors and worktrees (created) */
	const char *log_dir;  /* stage logs (created) */
	/* The artifact store (deployd --role artifacts): base URL and token. */
	const char *artifacts_url;
	const char *artifacts_token;
	size_t max_artifact_bytes; /* 0 = 512 MiB */
	/* rlimits for builds and tests; 0 = defaults (CPU 3600 s, file size 1 GiB). */
	uint64_t rlimit_cpu_s, rlimit_fsize_bytes;
	/* Run make and tests in the sandbox (needs root): own cgroup with memory and pids limits,
	 * namespaces, no network, seccomp, no capabilities, the worktree read-only at /app and a
	 * private /task where $(OUT) lives; the output comes back as a tar on stdout. Builds a
	 * crashed deployd left are killed at builder_new(). 0 = 2 GiB memory, 1 GiB /task. */
	bool sandbox;
	uint64_t sandbox_memory_bytes, sandbox_storage_bytes;
	/* The bazel binary for Bazel workspaces: a path, or a name looked up in deployd's PATH at
	 * each build; NULL = "bazel". In the sandbox it must live under /usr, /opt, /etc, /srv or
	 * /var (what the sandbox shows of the host). Bazel's JVM gets a quarter of
	 * sandbox_memory_bytes as heap; below 1 GiB Bazel builds are unlikely to fit. */
	const char *bazel_path;
};

int builder_new(const struct builder_config *cfg, struct builder **ret, struct cd_error *err);
void builder_free(struct builder *b);

/* Stage executors (runner.h contract); ctx->data must be the struct builder. */
int builder_exec_build(struct exec_ctx *ctx, struct exec_result *res);
int builder_exec_test(struct exec_ctx *ctx, struct exec_result *res);

/*
 * Make sure target (//dir:name) is built at commit of the pipeline's repo and indexed: when
 * the index already has it, nothing is built. *ret_digest ("sha256:<hex>", 72 bytes) gets the
 * digest. Build output goes to log_fd. Returns 0, 1 when the build ran and failed or cannot
 * run (message in err: "make exited with status 2", "bazel build exited with status 1 (build
 * failed)", "... is a Bazel workspace ... but bazel was not found"), or -errno
 * (-ESTALE/-ETIMEDOUT/-ECANCELED from the keep-alive; -EIO etc. for infrastructure, which the
 * runner retries).
 */
int builder_ensure_target(struct builder *b, struct exec_ctx *ctx, const char *repo,
			  const char *commit, const char *target, int log_fd,
			  char ret_digest[static 72], struct cd_error *err);

/* Download an artifact blob (digest "sha256:<hex>") and return the content of its first
 * regular file whose name ends with suffix (e.g. ".json"), at most max bytes. Caller frees. */
int builder_read_artifact_file(struct builder *b, const char *digest, const char *suffix,
			       size_t max, char **ret, size_t *ret_len, struct cd_error *err);

/* Look up target@commit in the index. 1 found (*ret_digest set), 0 not indexed, < 0 error. */
int builder_lookup_artifact(struct builder *b, const char *target, const char *commit,
			    char ret_digest[static 72], struct cd_error *err);

/*
 * Pack directory dir into the reproducible tar at path (created 0644): entries sorted by name,
 * mtime 0, uid/gid 0 without names, directories 0755, files 0644 or 0755 (any exec bit),
 * symlinks kept as they are; other file types are refused (-EINVAL). *ret_hex (65 bytes) gets
 * the SHA-256 of the archive and *ret_size its size. Same tree → same bytes.
 */
int builder_pack_dir(const char *dir, const char *path, char ret_hex[static 65], uint64_t *ret_size,
		     struct cd_error *err);
