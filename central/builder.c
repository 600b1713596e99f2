/* SPDX-License-Identifier: Apache-2.0 */
#include "central/builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/names.h"
#include "central/pipeline_api.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/str.h"
#include "sandbox/cgroup.h"
#include "sandbox/launch.h"

#define DEFAULT_MAX_ARTIFACT ((size_t)512 * 1024 * 1024)
#define DEFAULT_RLIMIT_CPU_S 3600
#define DEFAULT_RLIMIT_FSIZE ((uint64_t)1 << 30)
#define PACK_MAX_ENTRIES 100000
#define WAIT_STEP_USEC (100 * USEC_PER_MSEC)
#define STOP_GRACE_USEC (10 * USEC_PER_SEC)

struct builder {
	char *work_dir;
	char *log_dir;
	struct http_client *http;
	size_t max_artifact;
	uint64_t rlimit_cpu_s, rlimit_fsize;
	/* git operations on one mirror are not safe to run concurrently (fetch, worktree
	 * bookkeeping); builds themselves run in parallel. */
	pthread_mutex_t git_lock;
	/* Builds and tests run in the sandbox when set (root): their own cgroup under
	 * cg_parent, namespaces, seccomp, no capabilities, the worktree read-only at /app. */
	struct cg_system *cg;
	char cg_parent[64];
	uint64_t sb_memory, sb_storage, sb_pids;
	char *bazel_path; /* NULL = "bazel" in PATH */
};

int builder_new(const struct builder_config *cfg, struct builder **ret, struct cd_error *err)
{
	struct http_client_config hc = {
		.base_url = cfg->artifacts_url,
		.bearer_token = cfg->artifacts_token,
		.timeout_ms = 300000,
		.max_response_bytes = cfg->max_artifact_bytes ? cfg->max_artifact_bytes :
								DEFAULT_MAX_ARTIFACT,
	};
	struct builder *b;
	int r;

	if (!cfg->work_dir || !cfg->log_dir || !cfg->artifacts_url)
		return cd_error_set(
			err, -EINVAL,
			"builder needs a work dir, a log dir and the artifact store URL");
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->git_lock, NULL);
	b->work_dir = strdup(cfg->work_dir);
	b->log_dir = strdup(cfg->log_dir);
	b->max_artifact = hc.max_response_bytes;
	b->rlimit_cpu_s = cfg->rlimit_cpu_s ? cfg->rlimit_cpu_s : DEFAULT_RLIMIT_CPU_S;
	b->rlimit_fsize = cfg->rlimit_fsize_bytes ? cfg->rlimit_fsize_bytes : DEFAULT_RLIMIT_FSIZE;
	b->bazel_path = cfg->bazel_path ? strdup(cfg->bazel_path) : NULL;
	if (!b->work_dir || !b->log_dir || (cfg->bazel_path && !b->bazel_path)) {
		builder_free(b);
		return -ENOMEM;
	}
	r = fs_mkdir_p(b->work_dir, 0700);
	if (r >= 0)
		r = fs_mkdir_p(b->log_dir, 0755);
	if (r < 0) {
		cd_error_set(err, r, "creating %s: %s", b->work_dir, strerror(-r));
		builder_free(b);
		return r;
	}
	r = http_client_new(&hc, &b->http, err);
	if (r >= 0 && cfg->sandbox) {
		uint64_t h = 1469598103934665603ULL;

		/* One cgroup parent per work dir: two deployds on a host never reap each
		 * other's builds. */
		for (const char *c = b->work_dir; *c; c++)
			h = (h ^ (unsigned char)*c) * 1099511628211ULL;
		snprintf(b->cg_parent, sizeof(b->cg_parent), "codedeploy-build-%08llx",
			 (unsigned long long)(h & 0xffffffffu));
		b->sb_memory = cfg->sandbox_memory_bytes ? cfg->sandbox_memory_bytes : 2ULL << 30;
		b->sb_storage = cfg->sandbox_storage_bytes ? cfg->sandbox_storage_bytes :
							     1ULL << 30;
		b->sb_pids = 4096;
		r = cg_system_detect("/sys/fs/cgroup", &b->cg, err);
		/* Builds a crashed deployd left running are killed now: their lease is gone and
		 * another claim builds again. */
		if (r >= 0)
			r = sandbox_gc(b->cg, b->cg_parent, NULL, NULL, err);
	}
	if (r < 0) {
		builder_free(b);
		return r;
	}
	*ret = b;
	return 0;
}

void builder_free(struct builder *b)
{
	if (!b)
		return;
	http_client_free(b->http);
	if (b->cg) {
		/* every build has ended by now (the runners are stopped before the builder) */
		(void)cg_parent_remove(b->cg, b->cg_parent);
		cg_system_free(b->cg);
	}
	pthread_mutex_destroy(&b->git_lock);
	free(b->work_dir);
	free(b->log_dir);
	free(b->bazel_path);
	free(b);
}

/* snprintf for paths: vsnprintf keeps the compiler's truncation analysis out; the result is
 * checked instead. */
static int pathf(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static int pathf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* ---- child processes ----------------------------------------------------------------------- */

static void log_line(int fd, const char *fmt, ...) _printf_(2, 3);
static void log_line(int fd, const char *fmt, ...)
{
	_cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
	va_list ap;

	if (fd < 0)
		return;
	va_start(ap, fmt);
	if (strbuf_vaddf(&sb, fmt, ap) >= 0 && strbuf_adds(&sb, "\n") >= 0)
		(void)fs_write_all(fd, sb.buf, sb.len);
	va_end(ap);
}

/*
 * Run argv in cwd with stdout+stderr to log_fd (or /dev/null when < 0), in its own session so
 * the whole tree can be killed. While it runs, the runner's keep-alive is called (when ctx is
 * given): a lost lease, a timeout or a stopping runner stops the session (stop_group()) and
 * returns that code.
 * *ret_status gets the exit status (128 + signal when killed by one). The log shows show, or
 * argv when show is NULL.
 */
/*
 * Stop the process group of the child pid (its own session): SIGTERM first, then wait until the
 * child is reaped and nothing of its group is left, at most STOP_GRACE_USEC, then SIGKILL. The
 * grace matters: a build tool stops what it started in process groups of its own on SIGTERM
 * (Bazel's process-wrapper gives every action a new one), which a plain SIGKILL of the group
 * would orphan and leave running. *status gets the child's wait status.
 */
static void stop_group(pid_t pid, int *status)
{
	bool reaped = false;

	(void)kill(-pid, SIGTERM);
	for (usec_t waited = 0; waited < STOP_GRACE_USEC; waited += WAIT_STEP_USEC) {
		if (!reaped && waitpid(pid, status, WNOHANG) == pid)
			reaped = true;
		/* A zombie leader still counts as the group: reap it first. */
		if (reaped && kill(-pid, 0) < 0 && errno == ESRCH)
			return;
		clock_sleep_usec(WAIT_STEP_USEC);
	}
	(void)kill(-pid, SIGKILL);
	while (!reaped && waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

static int run_cmd_env(struct builder *b, struct exec_ctx *ctx, char *const argv[],
		       char *const envp[], const char *cwd, const char *show, int log_fd,
		       int *ret_status, struct cd_error *err)
{
	_cleanup_strbuf_ struct strbuf cmd = STRBUF_INIT;
	int status = 0, r;
	pid_t pid;

	for (size_t i = 0; !show && argv[i]; i++)
		strbuf_addf(&cmd, "%s%s", i ? " " : "", argv[i]);
	log_line(log_fd, "$ %s", show ? show : cmd.buf ? cmd.buf : "");
	pid = fork();
	if (pid < 0)
		return cd_error_set(err, -errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Child: async-signal-safe calls only until exec. */
		struct rlimit cpu = { b->rlimit_cpu_s, b->rlimit_cpu_s };
		struct rlimit fsize = { b->rlimit_fsize, b->rlimit_fsize };
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		int out = log_fd >= 0 ? log_fd : devnull;

		setsid();
		/* A build must not outlive a deployd killed with SIGKILL (its lease expires and
		 * another claim builds again). */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(126);
		if (cwd && chdir(cwd) < 0)
			_exit(126);
		(void)setrlimit(RLIMIT_CPU, &cpu);
		(void)setrlimit(RLIMIT_FSIZE, &fsize);
		signal(SIGPIPE, SIG_DFL);
		syscall(SYS_close_range, 3U, ~0U, 0U);
		if (envp)
			execvpe(argv[0], argv, envp);
		else
			execvp(argv[0], argv);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			r = -errno;
			kill(-pid, SIGKILL);
			return cd_error_set(err, r, "waitpid: %s", strerror(-r));
		}
		r = ctx ? runner_keepalive(ctx) : 0;
		if (r < 0) {
			log_line(log_fd, "# stopped: %s",
				 r == -ETIMEDOUT ? "stage timed out" :
				 r == -ESTALE	 ? "lease lost (run cancelled or taken over)" :
						   "deployd is stopping");
			stop_group(pid, &status);
			return r;
		}
		clock_sleep_usec(WAIT_STEP_USEC);
	}
	/* Whatever the command left running in its session goes with it. */
	kill(-pid, SIGKILL);
	if (WIFSIGNALED(status))
		*ret_status = 128 + WTERMSIG(status);
	else
		*ret_status = WEXITSTATUS(status);
	if (*ret_status == 127)
		log_line(log_fd, "# %s: command not found or not executable", argv[0]);
	return 0;
}

static int run_cmd(struct builder *b, struct exec_ctx *ctx, char *const argv[], const char *cwd,
		   int log_fd, int *ret_status, struct cd_error *err)
{
	return run_cmd_env(b, ctx, argv, NULL, cwd, NULL, log_fd, ret_status, err);
}

/* run_cmd that must succeed: a non-zero status is an error with the command named. */
static int run_ok(struct builder *b, struct exec_ctx *ctx, char *const argv[], const char *cwd,
		  int log_fd, struct cd_error *err)
{
	int status = 0, r = run_cmd(b, ctx, argv, cwd, log_fd, &status, err);

	if (r < 0)
		return r;
	if (status != 0)
		return cd_error_set(err, -EIO, "%s %s exited with status %d", argv[0],
				    argv[1] ? argv[1] : "", status);
	return 0;
}

#define SANDBOX_MAX_ARGS 9

/*
 * Run `sh -c script sh args...` (at most SANDBOX_MAX_ARGS args, NULL-terminated) in the sandbox
 * with app_dir read-only at /app and a writable /task: stdout to out_fd, stderr to log_fd.
 * Keep-alive and stop semantics as run_cmd(); the whole cgroup is killed on stop. *ret_status =
 * exit status (128 + signal). The log shows show, or the script and its first two args.
 */
static int run_sandboxed(struct builder *b, struct exec_ctx *ctx, const char *script,
			 char *const args[], const char *app_dir, const char *show, int out_fd,
			 int log_fd, int *ret_status, struct cd_error *err)
{
	char *argv[4 + SANDBOX_MAX_ARGS + 1] = { "/bin/sh", "-c", (char *)script, "sh" };
	char id[40], hex[17];
	char *const envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/task", "LANG=C.UTF-8",
			       NULL };
	struct sandbox_config cfg;
	struct sandbox_task *t = NULL;
	struct sandbox_status stt = { 0 };
	int r;

	for (size_t i = 0; i < SANDBOX_MAX_ARGS && args[i]; i++)
		argv[4 + i] = args[i];
	id_random_hex(hex, sizeof(hex));
	snprintf(id, sizeof(id), "build-%s", hex);
	sandbox_config_init(&cfg);
	cfg.task_id = id;
	cfg.cgroup_parent = b->cg_parent;
	cfg.argv = argv;
	cfg.envp = envp;
	cfg.app_dir = app_dir;
	cfg.storage_bytes = b->sb_storage;
	cfg.limits.memory_bytes = b->sb_memory;
	cfg.limits.pids_max = b->sb_pids;
	cfg.net = SANDBOX_NET_NONE;
	cfg.stdout_fd = out_fd;
	cfg.stderr_fd = log_fd;
	if (show)
		log_line(log_fd, "$ [sandbox %s, /app = worktree] %s", id, show);
	else
		log_line(log_fd, "$ [sandbox %s, /app = worktree] sh -c '%s' %s %s", id, script,
			 args[0] ? args[0] : "", args[0] && args[1] ? args[1] : "");
	r = sandbox_launch(b->cg, &cfg, &t, err);
	if (r < 0)
		return r;
	for (;;) {
		r = sandbox_wait(t, WAIT_STEP_USEC, -1, &stt);
		if (r != 0)
			break;
		r = ctx ? runner_keepalive(ctx) : 0;
		if (r < 0) {
			log_line(log_fd, "# stopped: %s",
				 r == -ETIMEDOUT ? "stage timed out" :
				 r == -ESTALE	 ? "lease lost (run cancelled or taken over)" :
						   "deployd is stopping");
			(void)sandbox_stop(t, 0);
			break;
		}
	}
	(void)sandbox_destroy(t, NULL);
	sandbox_task_free(t);
	if (r < 0)
		return r == -ESTALE || r == -ECANCELED || r == -ETIMEDOUT ?
			       r :
			       cd_error_set(err, r, "waiting for the sandbox: %s", strerror(-r));
	*ret_status = sandbox_status_exit_code(&stt);
	return 0;
}

/* Extract the tar at fd into the empty directory dest, refusing absolute paths, ".." and links
 * that escape (libarchive's secure extraction flags). */
static int extract_tar(int fd, const char *dest, struct cd_error *err)
{
	struct archive *a = archive_read_new(), *w = archive_write_disk_new();
	struct archive_entry *e;
	int r = 0, rc;

	if (!a || !w) {
		archive_read_free(a);
		archive_write_free(w);
		return -ENOMEM;
	}
	archive_read_support_format_tar(a);
	/* Entries are re-rooted under dest below (threads share the cwd, so no chdir): absolute
	 * names are refused by hand, ".." and escaping symlinks by libarchive. */
	archive_write_disk_set_options(w, ARCHIVE_EXTRACT_SECURE_NODOTDOT |
						  ARCHIVE_EXTRACT_SECURE_SYMLINKS |
						  ARCHIVE_EXTRACT_PERM);
	if (lseek(fd, 0, SEEK_SET) < 0 || archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK)
		r = cd_error_set(err, -EBADMSG, "build output: %s", archive_error_string(a));
	while (r >= 0 && (rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		char path[PATH_MAX];
		const char *name = archive_entry_pathname(e);
		mode_t type = archive_entry_filetype(e);

		if (!name || name[0] == '/' || streq(name, "..") || startswith(name, "../") ||
		    strstr(name, "/../") || endswith(name, "/..")) {
			r = cd_error_set(err, -EINVAL, "build output: refused entry %s",
					 name ? name : "(null)");
			break;
		}
		if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
			r = cd_error_set(err, -EINVAL, "build output: %s is not a file", name);
			break;
		}
		if (pathf(path, sizeof(path), "%s/%s", dest, name) < 0) {
			r = cd_error_set(err, -ENAMETOOLONG, "build output: path too long");
			break;
		}
		archive_entry_set_pathname(e, path);
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			r = cd_error_set(err, -EINVAL, "build output: %s", archive_error_string(w));
			break;
		}
		for (;;) {
			const void *buf;
			size_t len;
			la_int64_t off;

			rc = archive_read_data_block(a, &buf, &len, &off);
			if (rc == ARCHIVE_EOF)
				break;
			if (rc != ARCHIVE_OK ||
			    archive_write_data_block(w, buf, len, off) != ARCHIVE_OK) {
				r = cd_error_set(err, -EIO, "build output: %s",
						 archive_error_string(rc != ARCHIVE_OK ? a : w));
				break;
			}
		}
	}
	if (r >= 0 && rc != ARCHIVE_EOF)
		r = cd_error_set(err, -EBADMSG, "build output: %s", archive_error_string(a));
	archive_write_close(w);
	archive_write_free(w);
	archive_read_free(a);
	return r;
}

/* ---- checkouts ----------------------------------------------------------------------------- */

/* One stage attempt's view of the repo: a worktree of the pipeline's mirror at the commit. */
struct checkout {
	struct builder *b;
	struct exec_ctx *ctx;
	const char *pipeline_id, *repo, *commit;
	int log_fd;
	char mirror[PATH_MAX];
	char dir[PATH_MAX]; /* session directory: worktree + outputs */
	char wt[PATH_MAX];
	bool ready;
	/* Chosen once per checkout by checkout_driver(). */
	enum { DRIVER_UNKNOWN, DRIVER_MAKE, DRIVER_BAZEL } driver;
	char bazel[PATH_MAX]; /* the bazel binary (DRIVER_BAZEL) */
};

static int checkout_open(struct checkout *co, struct cd_error *err)
{
	struct builder *b = co->b;
	char sid[17], tmp[PATH_MAX + 8];
	int r;

	if (co->ready)
		return 0;
	if (!co->repo || !*co->repo)
		return cd_error_set(err, -ENOENT, "the pipeline has no repo to build from");
	id_random_hex(sid, sizeof(sid));
	snprintf(co->mirror, sizeof(co->mirror), "%s/mirrors/%s.git", b->work_dir, co->pipeline_id);
	snprintf(co->dir, sizeof(co->dir), "%s/sessions/%s", b->work_dir, sid);
	(void)pathf(co->wt, sizeof(co->wt), "%s/src", co->dir);
	r = fs_mkdir_p(co->dir, 0700);
	if (r >= 0)
		r = fs_mkdir_p(b->work_dir, 0700);
	if (r < 0)
		return cd_error_set(err, r, "creating %s: %s", co->dir, strerror(-r));

	pthread_mutex_lock(&b->git_lock);
	if (access(co->mirror, F_OK) < 0) {
		char *const clone[] = { "git", "clone",		 "--bare", "--quiet",
					"--",  (char *)co->repo, tmp,	   NULL };

		snprintf(tmp, sizeof(tmp), "%s.tmp", co->mirror);
		(void)fs_rm_rf_at(AT_FDCWD, tmp);
		r = fs_mkdir_p(b->work_dir, 0700);
		if (r >= 0) {
			char parent[PATH_MAX];

			snprintf(parent, sizeof(parent), "%s/mirrors", b->work_dir);
			r = fs_mkdir_p(parent, 0700);
		}
		if (r >= 0)
			r = run_ok(b, co->ctx, clone, NULL, co->log_fd, err);
		if (r >= 0 && rename(tmp, co->mirror) < 0)
			r = cd_error_set(err, -errno, "rename %s: %s", tmp, strerror(errno));
	}
	if (r >= 0) {
		char spec[128];
		char *const has[] = { "git", "-C", co->mirror, "cat-file", "-e", spec, NULL };
		char *const fetch[] = { "git",
					"-C",
					co->mirror,
					"fetch",
					"--quiet",
					"--force",
					"origin",
					"+refs/heads/*:refs/heads/*",
					"+refs/tags/*:refs/tags/*",
					NULL };
		int status = 0;

		snprintf(spec, sizeof(spec), "%s^{commit}", co->commit);
		r = run_cmd(b, co->ctx, has, NULL, -1, &status, err);
		if (r >= 0 && status != 0) {
			r = run_ok(b, co->ctx, fetch, NULL, co->log_fd, err);
			if (r >= 0)
				r = run_cmd(b, co->ctx, has, NULL, -1, &status, err);
			if (r >= 0 && status != 0)
				/* Permanent: the commit is not in the repository. */
				r = cd_error_set(err, -ENOENT, "commit %s not found in %s",
						 co->commit, co->repo);
		}
	}
	if (r >= 0) {
		char *const add[] = {
			"git",	    "-C",      co->mirror, "worktree",	       "add", "--quiet",
			"--detach", "--force", co->wt,	   (char *)co->commit, NULL
		};

		r = run_ok(b, co->ctx, add, NULL, co->log_fd, err);
	}
	pthread_mutex_unlock(&b->git_lock);
	if (r < 0)
		return r;
	co->ready = true;
	return 0;
}

static void checkout_close(struct checkout *co)
{
	if (co->dir[0]) {
		if (co->ready) {
			char *const rm[] = { "git",    "-C",	  co->mirror, "worktree",
					     "remove", "--force", co->wt,     NULL };
			int status;

			pthread_mutex_lock(&co->b->git_lock);
			(void)run_cmd(co->b, NULL, rm, NULL, -1, &status, NULL);
			pthread_mutex_unlock(&co->b->git_lock);
		}
		(void)fs_rm_rf_at(AT_FDCWD, co->dir);
	}
	co->ready = false;
}

/* ---- packing ------------------------------------------------------------------------------- */

struct pack_list {
	char **paths;
	size_t n, alloc;
};

static int collect(const char *root, const char *rel, struct pack_list *l, struct cd_error *err)
{
	char path[PATH_MAX];
	DIR *d;
	struct dirent *de;
	int r = 0;

	snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
	d = opendir(path);
	if (!d)
		return cd_error_set(err, -errno, "opendir %s: %s", path, strerror(errno));
	while (r >= 0 && (de = readdir(d))) {
		char sub[PATH_MAX];
		struct stat stt;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "",
				     de->d_name) >= sizeof(sub)) {
			r = cd_error_set(err, -ENAMETOOLONG, "path too long under %s", path);
			break;
		}
		if (l->n >= PACK_MAX_ENTRIES) {
			r = cd_error_set(err, -E2BIG, "more than %d files in the output",
					 PACK_MAX_ENTRIES);
			break;
		}
		if (l->n == l->alloc) {
			char **nv;

			l->alloc = l->alloc ? l->alloc * 2 : 64;
			nv = realloc(l->paths, l->alloc * sizeof(*nv));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			l->paths = nv;
		}
		l->paths[l->n] = strdup(sub);
		if (!l->paths[l->n]) {
			r = -ENOMEM;
			break;
		}
		l->n++;
		if (fstatat(dirfd(d), de->d_name, &stt, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(stt.st_mode))
			r = collect(root, sub, l, err);
	}
	closedir(d);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_entry(struct archive *a, const char *root, const char *rel, struct cd_error *err)
{
	char path[PATH_MAX], link[PATH_MAX];
	struct archive_entry *e;
	struct stat stt;
	int r = 0;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (lstat(path, &stt) < 0)
		return cd_error_set(err, -errno, "lstat %s: %s", path, strerror(errno));
	e = archive_entry_new();
	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, rel);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_mtime(e, 0, 0);
	if (S_ISDIR(stt.st_mode)) {
		archive_entry_set_filetype(e, AE_IFDIR);
		archive_entry_set_perm(e, 0755);
	} else if (S_ISREG(stt.st_mode)) {
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, (stt.st_mode & 0111) ? 0755 : 0644);
		archive_entry_set_size(e, stt.st_size);
	} else if (S_ISLNK(stt.st_mode)) {
		ssize_t n = readlink(path, link, sizeof(link) - 1);

		if (n < 0)
			r = cd_error_set(err, -errno, "readlink %s: %s", path, strerror(errno));
		else {
			link[n] = '\0';
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_perm(e, 0777);
			archive_entry_set_symlink(e, link);
		}
	} else
		r = cd_error_set(err, -EINVAL,
				 "%s: only files, directories and symlinks can be "
				 "packed",
				 rel);
	if (r >= 0 && archive_write_header(a, e) != ARCHIVE_OK)
		r = cd_error_set(err, -EIO, "tar header %s: %s", rel, archive_error_string(a));
	if (r >= 0 && S_ISREG(stt.st_mode)) {
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		char buf[65536];
		ssize_t n;

		if (fd < 0)
			r = cd_error_set(err, -errno, "open %s: %s", path, strerror(errno));
		while (r >= 0 && (n = read(fd, buf, sizeof(buf))) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				r = cd_error_set(err, -errno, "read %s: %s", path, strerror(errno));
			} else if (archive_write_data(a, buf, (size_t)n) != n)
				r = cd_error_set(err, -EIO, "tar data %s: %s", rel,
						 archive_error_string(a));
		}
	}
	archive_entry_free(e);
	return r;
}

static int sha256_file(const char *path, char hex[static 65], uint64_t *ret_size,
		       struct cd_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
	unsigned int mdlen = 0;
	uint64_t size = 0;
	EVP_MD_CTX *m;
	ssize_t n;
	int r = 0;

	if (fd < 0)
		return cd_error_set(err, -errno, "open %s: %s", path, strerror(errno));
	m = EVP_MD_CTX_new();
	if (!m || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(m);
		return -ENOMEM;
	}
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = cd_error_set(err, -errno, "read %s: %s", path, strerror(errno));
			break;
		}
		EVP_DigestUpdate(m, buf, (size_t)n);
		size += (uint64_t)n;
	}
	if (r >= 0 && EVP_DigestFinal_ex(m, md, &mdlen) != 1)
		r = -EIO;
	EVP_MD_CTX_free(m);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < mdlen && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	*ret_size = size;
	return 0;
}

int builder_pack_dir(const char *dir, const char *path, char ret_hex[static 65], uint64_t *ret_size,
		     struct cd_error *err)
{
	struct pack_list l = { 0 };
	struct archive *a;
	int r;

	r = collect(dir, "", &l, err);
	if (r >= 0 && l.n == 0)
		r = cd_error_set(err, -ENODATA, "the build produced no output in OUT");
	if (r >= 0) {
		qsort(l.paths, l.n, sizeof(*l.paths), cmp_str);
		a = archive_write_new();
		if (!a)
			r = -ENOMEM;
		else {
			if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
			    archive_write_open_filename(a, path) != ARCHIVE_OK)
				r = cd_error_set(err, -EIO, "creating %s: %s", path,
						 archive_error_string(a));
			for (size_t i = 0; r >= 0 && i < l.n; i++)
				r = add_entry(a, dir, l.paths[i], err);
			if (archive_write_close(a) != ARCHIVE_OK && r >= 0)
				r = cd_error_set(err, -EIO, "closing %s: %s", path,
						 archive_error_string(a));
			archive_write_free(a);
		}
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.paths[i]);
	free(l.paths);
	if (r >= 0)
		r = sha256_file(path, ret_hex, ret_size, err);
	if (r < 0)
		(void)unlink(path);
	return r;
}

/* ---- artifact store ------------------------------------------------------------------------ */

static char *artifact_path(const char *target, const char *commit)
{
	_cleanup_free_ char *key = NULL, *esc = NULL;
	char *path = NULL;

	if (asprintf(&key, "%s@%s", target, commit) < 0)
		return NULL;
	esc = http_client_escape(key);
	if (!esc || asprintf(&path, "/v1/artifacts/%s", esc) < 0)
		return NULL;
	return path;
}

static int http_problem(long status, json_t *body, const char *what, struct cd_error *err)
{
	struct problem p;
	char line[400];
	int code = status == 404 ? -ENOENT : status >= 500 || status == 429 ? -EAGAIN : -EPROTO;

	if (http_client_problem(status, body, &p) < 0)
		return -ENOMEM;
	cd_error_set(err, code, "%s: %s", what, http_client_problem_format(&p, line, sizeof(line)));
	problem_release(&p);
	return code;
}

int builder_lookup_artifact(struct builder *b, const char *target, const char *commit,
			    char ret_digest[static 72], struct cd_error *err)
{
	_cleanup_free_ char *path = artifact_path(target, commit);
	json_t *body = NULL;
	long status = 0;
	int r;

	if (!path)
		return -ENOMEM;
	r = http_client_json(b->http, "GET", path, NULL, &body, &status, err);
	if (r < 0)
		return r;
	if (status == 404) {
		json_decref(body);
		return 0;
	}
	if (status != 200) {
		r = http_problem(status, body, "artifact index", err);
		json_decref(body);
		return r;
	}
	r = snprintf(ret_digest, 72, "%s",
		     json_string_value(json_object_get(body, "digest")) ?: "");
	json_decref(body);
	if (r <= 0 || !startswith(ret_digest, "sha256:"))
		return cd_error_set(err, -EBADMSG, "artifact index: reply without a digest");
	return 1;
}

static int upload(struct builder *b, const char *file, const char *hex, uint64_t size,
		  const char *target, const char *commit, char ret_digest[static 72],
		  struct cd_error *err)
{
	_cleanup_free_ char *data = NULL, *path = artifact_path(target, commit);
	struct http_client_response resp = { 0 };
	char cas[96], digest[80];
	json_t *body = NULL, *reply = NULL;
	long status = 0;
	size_t len = 0;
	int r;

	if (!path)
		return -ENOMEM;
	snprintf(cas, sizeof(cas), "/cas/%s", hex);
	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	if (size > b->max_artifact)
		return cd_error_set(err, -EFBIG,
				    "%s: artifact of %" PRIu64 " bytes is above the "
				    "%zu byte cap",
				    target, size, b->max_artifact);
	r = http_client_request(b->http,
				&(struct http_client_request){ .method = "HEAD", .path = cas },
				&resp, err);
	if (r < 0)
		return r;
	status = resp.status;
	http_client_response_release(&resp);
	if (status != 200) {
		r = fs_read_file_at(AT_FDCWD, file, b->max_artifact, &data, &len);
		if (r < 0)
			return cd_error_set(err, r, "reading %s: %s", file, strerror(-r));
		r = http_client_request(b->http,
					&(struct http_client_request){
						.method = "PUT",
						.path = cas,
						.body = data,
						.body_len = len,
						.content_type = "application/octet-stream",
					},
					&resp, err);
		if (r < 0)
			return r;
		status = resp.status;
		if (status != 200 && status != 201 && status != 204) {
			json_t *pb = resp.body_len ? json_loads(resp.body, 0, NULL) : NULL;

			http_client_response_release(&resp);
			r = http_problem(status, pb, "CAS upload", err);
			json_decref(pb);
			return r;
		}
		http_client_response_release(&resp);
	}
	body = json_pack("{s:s, s:I}", "digest", digest, "size", (json_int_t)size);
	if (!body)
		return -ENOMEM;
	r = http_client_json(b->http, "PUT", path, body, &reply, &status, err);
	json_decref(body);
	if (r < 0)
		return r;
	if (status == 409) {
		/* Indexed meanwhile with other bytes (a non-reproducible build raced us):
		 * artifacts are immutable, the first one wins. */
		json_decref(reply);
		r = builder_lookup_artifact(b, target, commit, ret_digest, err);
		return r == 1 ? 0 : r < 0 ? r : -EPROTO;
	}
	if (status != 200 && status != 201) {
		r = http_problem(status, reply, "artifact index", err);
		json_decref(reply);
		return r;
	}
	json_decref(reply);
	(void)pathf(ret_digest, 72, "%s", digest);
	return 0;
}

int builder_read_artifact_file(struct builder *b, const char *digest, const char *suffix,
			       size_t max, char **ret, size_t *ret_len, struct cd_error *err)
{
	struct http_client_response resp = { 0 };
	struct archive *a = NULL;
	struct archive_entry *e;
	const char *hex = startswith(digest, "sha256:");
	char path[96];
	int r;

	if (!hex || strlen(hex) != 64)
		return cd_error_set(err, -EINVAL, "bad digest %s", digest);
	snprintf(path, sizeof(path), "/cas/%s", hex);
	r = http_client_request(b->http,
				&(struct http_client_request){ .method = "GET", .path = path },
				&resp, err);
	if (r < 0)
		return r;
	if (resp.status != 200) {
		r = cd_error_set(err, resp.status == 404 ? -ENOENT : -EAGAIN, "GET %s: HTTP %ld",
				 path, resp.status);
		http_client_response_release(&resp);
		return r;
	}
	a = archive_read_new();
	if (!a) {
		http_client_response_release(&resp);
		return -ENOMEM;
	}
	archive_read_support_format_tar(a);
	archive_read_support_filter_all(a);
	r = -ENOENT;
	if (archive_read_open_memory(a, resp.body, resp.body_len) != ARCHIVE_OK)
		r = cd_error_set(err, -EBADMSG, "artifact %s: %s", digest, archive_error_string(a));
	else
		while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
			const char *name = archive_entry_pathname(e);
			la_int64_t size = archive_entry_size(e);
			char *buf;

			if (archive_entry_filetype(e) != AE_IFREG || !name ||
			    !endswith(name, suffix))
				continue;
			if (size < 0 || (uint64_t)size > max) {
				r = cd_error_set(err, -EFBIG, "%s in %s is larger than %zu bytes",
						 name, digest, max);
				break;
			}
			buf = malloc((size_t)size + 1);
			if (!buf) {
				r = -ENOMEM;
				break;
			}
			if (archive_read_data(a, buf, (size_t)size) != size) {
				free(buf);
				r = cd_error_set(err, -EBADMSG, "reading %s from %s", name, digest);
				break;
			}
			buf[size] = '\0';
			*ret = buf;
			*ret_len = (size_t)size;
			r = 0;
			break;
		}
	if (r == -ENOENT)
		cd_error_set(err, -ENOENT, "no *%s file in artifact %s", suffix, digest);
	archive_read_free(a);
	http_client_response_release(&resp);
	return r;
}

/* ---- drivers ------------------------------------------------------------------------------- */

/* Files that make the worktree root a Bazel workspace (Bazel 4 itself needs a WORKSPACE file;
 * MODULE.bazel alone is for a newer bazel given as bazel_path). */
static const char *const bazel_markers[] = { "MODULE.bazel", "WORKSPACE.bazel", "WORKSPACE" };

static bool is_executable(const char *path)
{
	struct stat stt;

	return stat(path, &stt) == 0 && S_ISREG(stt.st_mode) && access(path, X_OK) == 0;
}

/* The bazel binary: b->bazel_path when it holds a '/', else that name ("bazel" by default)
 * looked up in deployd's PATH now (a bazel installed later is found without a restart).
 * -ENOENT when there is none. */
static int find_bazel(const struct builder *b, char ret[static PATH_MAX])
{
	const char *name = b->bazel_path ? b->bazel_path : "bazel";
	const char *path = getenv("PATH");

	if (strchr(name, '/'))
		return is_executable(name) && pathf(ret, PATH_MAX, "%s", name) >= 0 ? 0 : -ENOENT;
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path;;) {
		size_t n = strcspn(p, ":");

		/* An empty PATH entry would mean the cwd: never for a daemon. */
		if (n > 0 && pathf(ret, PATH_MAX, "%.*s/%s", (int)n, p, name) >= 0 &&
		    is_executable(ret))
			return 0;
		if (!p[n])
			return -ENOENT;
		p += n + 1;
	}
}

/*
 * Pick the checkout's driver, once: Bazel when the worktree root holds one of bazel_markers,
 * make otherwise. Returns 0, or 1 when the repo is a Bazel workspace but no bazel binary is
 * found (err says so). Building such a repo with make instead would build something else than
 * the repo means, or fail in a confusing way, so there is no fallback.
 */
static int checkout_driver(struct checkout *co, const char *target, struct cd_error *err)
{
	const char *marker = NULL;
	char path[PATH_MAX];
	struct stat stt;

	if (co->driver != DRIVER_UNKNOWN)
		return 0;
	for (size_t i = 0; !marker && i < ARRAY_SIZE(bazel_markers); i++)
		if (pathf(path, sizeof(path), "%s/%s", co->wt, bazel_markers[i]) >= 0 &&
		    lstat(path, &stt) == 0)
			marker = bazel_markers[i];
	if (!marker) {
		co->driver = DRIVER_MAKE;
		log_line(co->log_fd,
			 "# driver: make (no MODULE.bazel, WORKSPACE.bazel or WORKSPACE "
			 "at the repository root)");
		return 0;
	}
	if (find_bazel(co->b, co->bazel) < 0) {
		const char *name = co->b->bazel_path ? co->b->bazel_path : "bazel";

		if (strchr(name, '/'))
			cd_error_set(
				err, -ENOENT,
				"%s: the repository is a Bazel workspace (%s) but bazel was not "
				"found (bazel_path %s is not an executable file)",
				target, marker, name);
		else
			cd_error_set(
				err, -ENOENT,
				"%s: the repository is a Bazel workspace (%s) but bazel was not "
				"found (\"%s\" in PATH); install it (Debian: bazel-bootstrap)",
				target, marker, name);
		log_line(co->log_fd, "# %s", cd_error_message(err));
		return 1;
	}
	co->driver = DRIVER_BAZEL;
	log_line(co->log_fd, "# driver: bazel (%s at the repository root): %s", marker, co->bazel);
	return 0;
}

/*
 * The Bazel driver: one POSIX sh script for both modes. Arguments: verb (build|test),
 * workspace, package ("" = root), name, scratch (writable: output base and stub repositories),
 * dest (build: the output directory; test: where the test.xml reports are concatenated), bazel
 * binary, JVM heap in MiB (0 = Bazel's default), stream ("1": build writes dest as a tar on
 * stdout, test cats the reports; "": files stay in dest). Exit status: Bazel's, or 125 when
 * the driver itself failed.
 * Why the flags (docs/pipelines.md has the long form):
 *  --batch: no server outliving the command (it would leave the build's session, keep its heap
 *    for hours and hold a lock in the output base);
 *  --nohome_rc: deployd's home is not the repo's config (the system rc stays: Debian's install
 *    base is set there; so does the repo's .bazelrc, our flags come after it);
 *  --output_user_root/--output_base in scratch: nothing written outside the checkout (or
 *    /task) and nothing left after it;
 *  --spawn_strategy=local: Bazel's linux-sandbox needs user namespaces, which the sandbox's
 *    seccomp profile refuses; the sandbox is the isolation;
 *  --local_termination_grace_seconds=3: on SIGTERM (stop_group()) Bazel gives its actions that
 *    long before SIGKILL, well within our grace, so no action outlives a stopped build;
 *  --symlink_prefix=/: no bazel-* links in the worktree (read-only in the sandbox);
 *  --repository_cache= and the overrides: offline. Bazel 4's implicit WORKSPACE suffix
 *    http_archive()s rules_cc, rules_java and remote_coverage_tools, which even the native cc
 *    and test rules load; stubs forwarding to the native rules replace them (the coverage tools
 *    fail when used) unless the repo's WORKSPACE names the repository itself;
 *  --incompatible_strict_action_env: actions get a fixed PATH, not deployd's environment;
 *  the aspect writes a manifest of the target's DefaultInfo files, sources included
 *    (--experimental_show_artifacts lists generated files only). Each file is copied to dest
 *    under its path relative to the target's package (external files under external/).
 */
static const char bazel_script[] =
	"set -u\n"
	"verb=$1 ws=$2 pkg=$3 name=$4 scratch=$5 dest=$6 bazel=$7 heap=$8 stream=$9\n"
	"label=//$pkg:$name st=$scratch/stubs\n"
	"mkdir -p \"$st/rules_cc/cc\" \"$st/rules_java/java\" \"$st/remote_coverage_tools\" \\\n"
	"  \"$st/outputs\" || exit 125\n"
	"for d in rules_cc rules_java remote_coverage_tools outputs; do\n"
	"  : > \"$st/$d/WORKSPACE\" && : > \"$st/$d/BUILD\" || exit 125\n"
	"done\n"
	": > \"$st/rules_cc/cc/BUILD\" && : > \"$st/rules_java/java/BUILD\" || exit 125\n"
	"for r in cc_binary cc_import cc_library cc_proto_library cc_test cc_toolchain \\\n"
	"    cc_toolchain_suite fdo_prefetch_hints fdo_profile objc_import objc_library; do\n"
	"  printf 'def %s(**attrs):\\n    native.%s(**attrs)\\n' $r $r\n"
	"done > \"$st/rules_cc/cc/defs.bzl\"\n"
	"for r in java_binary java_import java_library java_lite_proto_library java_plugin \\\n"
	"    java_package_configuration java_proto_library java_runtime java_test java_toolchain; do\n"
	"  printf 'def %s(**attrs):\\n    native.%s(**attrs)\\n' $r $r\n"
	"done > \"$st/rules_java/java/defs.bzl\"\n"
	"cat > \"$st/remote_coverage_tools/BUILD\" <<'E'\n"
	"package(default_visibility = [\"//visibility:public\"])\n"
	"sh_binary(name = \"coverage_report_generator\", srcs = [\"unavailable.sh\"])\n"
	"sh_binary(name = \"lcov_merger\", srcs = [\"unavailable.sh\"])\n"
	"E\n"
	"cat > \"$st/remote_coverage_tools/unavailable.sh\" <<'E'\n"
	"#!/bin/sh\n"
	"echo \"coverage tools are not available in an offline build\" >&2\n"
	"exit 1\n"
	"E\n"
	"chmod 755 \"$st/remote_coverage_tools/unavailable.sh\"\n"
	"cat > \"$st/outputs/outputs.bzl\" <<'E' || exit 125\n"
	"def _impl(target, ctx):\n"
	"    m = ctx.actions.declare_file(ctx.label.name + \".codedeploy-outputs\")\n"
	"    files = target[DefaultInfo].files.to_list()\n"
	"    lines = [f.path + \"\\t\" + f.short_path + \"\\n\" for f in files]\n"
	"    ctx.actions.write(m, \"\".join(lines))\n"
	"    return [OutputGroupInfo(codedeploy_outputs = depset([m]))]\n"
	"\n"
	"outputs = aspect(implementation = _impl)\n"
	"E\n"
	"set -- --batch --nohome_rc \"--output_user_root=$scratch/root\" \\\n"
	"  \"--output_base=$scratch/base\"\n"
	"[ \"$heap\" -gt 0 ] && set -- \"$@\" \"--host_jvm_args=-Xmx${heap}m\"\n"
	"set -- \"$@\" \"$verb\" --color=no --curses=no --show_progress_rate_limit=10 \\\n"
	"  --verbose_failures --spawn_strategy=local --local_termination_grace_seconds=3 \\\n"
	"  --symlink_prefix=/ --repository_cache= \\\n"
	"  --incompatible_strict_action_env \"--override_repository=codedeploy_outputs=$st/outputs\"\n"
	"for r in rules_cc rules_java remote_coverage_tools; do\n"
	"  grep -qsw \"$r\" \"$ws/WORKSPACE\" \"$ws/WORKSPACE.bazel\" ||\n"
	"    set -- \"$@\" \"--override_repository=$r=$st/$r\"\n"
	"done\n"
	"[ \"$heap\" -gt 0 ] && set -- \"$@\" \"--local_ram_resources=$((heap * 2))\"\n"
	"if [ \"$verb\" = build ]; then\n"
	"  set -- \"$@\" --aspects=@codedeploy_outputs//:outputs.bzl%outputs \\\n"
	"    --output_groups=+codedeploy_outputs\n"
	"else\n"
	"  set -- \"$@\" --test_output=all\n"
	"fi\n"
	"cd \"$ws\" || exit 125\n"
	"echo \"\\$ $bazel $* -- $label\" >&2\n"
	"\"$bazel\" \"$@\" -- \"$label\" >&2\n"
	"rc=$?\n"
	"if [ \"$verb\" = build ] && [ $rc -eq 0 ]; then\n"
	"  m=$(find \"$scratch/base/execroot\" \\\n"
	"    -path \"*/bazel-out/*/bin/${pkg:+$pkg/}$name.codedeploy-outputs\" | head -n 1)\n"
	"  root=${m%/bazel-out/*/bin/*} tab=$(printf '\\t')\n"
	"  [ -n \"$m\" ] && mkdir -p \"$dest\" || {\n"
	"    echo \"# no outputs of $label found\" >&2\n"
	"    rc=125\n"
	"  }\n"
	"  while [ $rc -eq 0 ] && IFS=$tab read -r path short; do\n"
	"    case $short in\n"
	"    ../*) rel=external/${short#../} ;;\n"
	"    \"$pkg\"/*) rel=${short#\"$pkg\"/} ;;\n"
	"    *) rel=$short ;;\n"
	"    esac\n"
	"    mkdir -p \"$dest/$(dirname \"$rel\")\" && cp -RL \"$root/$path\" \"$dest/$rel\" || rc=125\n"
	"  done < \"${m:-/dev/null}\"\n"
	"  chmod -R u+w \"$dest\" 2>/dev/null\n"
	"  [ $rc -eq 0 ] && [ -n \"$stream\" ] && { tar -C \"$dest\" -cf - . || rc=125; }\n"
	"elif [ \"$verb\" = test ]; then\n"
	"  # every report of the command: a test_suite or a sharded test has several\n"
	"  set -- find \"$scratch/base/execroot\" -path \"*/bazel-out/*/testlogs/*\" \\\n"
	"    -name test.xml -exec cat {} +\n"
	"  if [ -n \"$stream\" ]; then \"$@\"; else \"$@\" > \"$dest\"; fi\n"
	"fi\n"
	"[ -n \"$stream\" ] || chmod -R u+w \"$scratch\" 2>/dev/null\n"
	"exit $rc\n";

/* Run the Bazel driver for target in the checkout (the sandbox when configured). verb "build":
 * the target's outputs go to the directory dest; "test": the tests run and the JUnit reports
 * Bazel wrote (one per test, shard or suite member) are concatenated into the file dest.
 * *ret_status = the driver's exit status. */
static int bazel_run(struct checkout *co, const struct target *t, const char *target,
		     const char *verb, const char *dest, int *ret_status, struct cd_error *err)
{
	struct builder *b = co->b;
	bool build = streq(verb, "build");
	char heap[24], show[TARGET_MAX_LEN + 64], scratch[PATH_MAX];
	int r;

	/* In the sandbox the JVM would size its heap from the host's memory, not the cgroup's:
	 * a quarter of the limit leaves room for the compilers and the tmpfs. */
	snprintf(heap, sizeof(heap), "%" PRIu64, b->cg ? b->sb_memory / 4 / (1024 * 1024) : 0);
	snprintf(show, sizeof(show), "[bazel driver] %s %s", verb, target);
	if (b->cg) {
		char *const args[] = { (char *)verb,
				       "/app",
				       (char *)t->package,
				       (char *)t->name,
				       "/task/bazel",
				       build ? "/task/out" : "/task/test.xml",
				       co->bazel,
				       heap,
				       "1",
				       NULL };
		char stream[PATH_MAX + 8];
		_cleanup_close_ int fd = -EBADF;

		/* A build's tar is extracted into dest; a test's reports are dest itself. */
		if (pathf(stream, sizeof(stream), build ? "%s.stream" : "%s", dest) < 0)
			return cd_error_set(err, -ENAMETOOLONG, "%s: path too long", target);
		fd = open(stream, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return cd_error_set(err, -errno, "creating %s: %s", stream,
					    strerror(errno));
		r = run_sandboxed(b, co->ctx, bazel_script, args, co->wt, show, fd, co->log_fd,
				  ret_status, err);
		if (r >= 0 && build && *ret_status == 0)
			r = extract_tar(fd, dest, err);
		if (build)
			(void)unlink(stream);
		return r;
	}
	if (pathf(scratch, sizeof(scratch), "%s/bazel", co->dir) < 0)
		return cd_error_set(err, -ENAMETOOLONG, "%s: path too long", target);
	{
		/* One output base per checkout: the targets of one build stage share it. */
		char *const argv[] = { "/bin/sh",
				       "-c",
				       (char *)bazel_script,
				       "sh",
				       (char *)verb,
				       co->wt,
				       (char *)t->package,
				       (char *)t->name,
				       scratch,
				       (char *)dest,
				       co->bazel,
				       heap,
				       "",
				       NULL };

		return run_cmd_env(b, co->ctx, argv, NULL, NULL, show, co->log_fd, ret_status, err);
	}
}

/* Bazel's exit codes (bazel's ExitCode class) and the driver's own, for the stage message. */
static const char *bazel_exit_meaning(int status)
{
	switch (status) {
	case 1:
		return "build failed";
	case 2:
		return "bad command line or BUILD file";
	case 3:
		return "tests failed";
	case 4:
		return "not a test target: no test ran";
	case 8:
		return "interrupted";
	case 33:
		return "Bazel ran out of memory";
	case 36:
		return "local environment problem";
	case 37:
		return "internal Bazel error";
	case 125:
		return "the Bazel driver failed";
	case 126:
	case 127:
		return "bazel could not be executed";
	case 128 + SIGKILL:
		return "killed: out of memory? see sandbox_memory_bytes";
	default:
		return "see the stage log";
	}
}

static int bazel_failed(const char *target, const char *verb, int status, struct cd_error *err)
{
	cd_error_set(err, -EIO, "%s: bazel %s exited with status %d (%s)", target, verb, status,
		     bazel_exit_meaning(status));
	return 1;
}

/* ---- building ------------------------------------------------------------------------------ */

/* Build target in the checkout into <dir>/out-<n> with the checkout's driver. Returns 0, 1 when
 * the build failed (err says how), or -errno. ret_out (PATH_MAX) gets the output directory. */
static int build_target(struct checkout *co, const struct target *t, const char *target,
			char ret_out[static PATH_MAX], struct cd_error *err)
{
	char pkg[PATH_MAX], outarg[PATH_MAX + 8], sid[9];
	int status = 0, r;

	r = checkout_open(co, err);
	if (r < 0)
		return r;
	id_random_hex(sid, sizeof(sid));
	if (pathf(ret_out, PATH_MAX, "%s/out-%s", co->dir, sid) < 0 ||
	    pathf(pkg, sizeof(pkg), "%s/%s", co->wt, t->package) < 0)
		return cd_error_set(err, -ENAMETOOLONG, "%s: path too long", target);
	snprintf(outarg, sizeof(outarg), "OUT=%s", ret_out);
	r = fs_mkdir_p(ret_out, 0755);
	if (r < 0)
		return cd_error_set(err, r, "creating %s: %s", ret_out, strerror(-r));
	if (access(pkg, F_OK) < 0) {
		cd_error_set(err, -ENOENT, "%s: directory //%s does not exist at %s", target,
			     t->package, co->commit);
		return 1;
	}
	r = checkout_driver(co, target, err);
	if (r != 0)
		return r;
	if (co->driver == DRIVER_BAZEL) {
		r = bazel_run(co, t, target, "build", ret_out, &status, err);
		if (r < 0)
			return r;
		return status == 0 ? 0 : bazel_failed(target, "build", status, err);
	}
	if (co->b->cg) {
		static const char script[] =
			"mkdir -p /task/out && make --no-print-directory -C \"/app/$1\" \"$2\" "
			"OUT=/task/out >&2 && tar -C /task/out -cf - .";
		char *const args[] = { (char *)t->package, (char *)t->name, NULL };
		char stream[PATH_MAX + 8];
		_cleanup_close_ int fd = -EBADF;

		if (pathf(stream, sizeof(stream), "%s.stream", ret_out) < 0)
			return cd_error_set(err, -ENAMETOOLONG, "%s: path too long", target);
		fd = open(stream, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return cd_error_set(err, -errno, "creating %s: %s", stream,
					    strerror(errno));
		r = run_sandboxed(co->b, co->ctx, script, args, co->wt, NULL, fd, co->log_fd,
				  &status, err);
		if (r >= 0 && status == 0)
			r = extract_tar(fd, ret_out, err);
		(void)unlink(stream);
	} else {
		char *const argv[] = { "make", "--no-print-directory", "-C",
				       pkg,    (char *)t->name,	       outarg,
				       NULL };

		r = run_cmd(co->b, co->ctx, argv, NULL, co->log_fd, &status, err);
	}
	if (r < 0)
		return r;
	if (status != 0) {
		cd_error_set(err, -EIO, "%s: make exited with status %d", target, status);
		return 1;
	}
	return 0;
}

static int ensure_in(struct checkout *co, const char *target, char ret_digest[static 72],
		     struct cd_error *err)
{
	struct builder *b = co->b;
	struct target t;
	char out[PATH_MAX], tar[PATH_MAX + 8], hex[65];
	uint64_t size = 0;
	int r;

	r = target_parse(target, &t, err);
	if (r < 0)
		return r;
	r = builder_lookup_artifact(b, target, co->commit, ret_digest, err);
	if (r < 0)
		return r;
	if (r == 1) {
		log_line(co->log_fd, "# %s@%s is already built: %s", target, co->commit,
			 ret_digest);
		return 0;
	}
	r = build_target(co, &t, target, out, err);
	if (r != 0)
		return r;
	snprintf(tar, sizeof(tar), "%s.tar", out);
	r = builder_pack_dir(out, tar, hex, &size, err);
	if (r == -ENODATA) {
		cd_error_reset(err);
		cd_error_set(err, -ENODATA,
			     co->driver == DRIVER_BAZEL ? "%s: the target has no default outputs" :
							  "%s: the build wrote nothing to $(OUT)",
			     target);
		return 1;
	}
	if (r < 0)
		return r;
	r = upload(b, tar, hex, size, target, co->commit, ret_digest, err);
	if (r < 0)
		return r;
	log_line(co->log_fd, "# %s@%s -> %s (%" PRIu64 " bytes)", target, co->commit, ret_digest,
		 size);
	return 0;
}

int builder_ensure_target(struct builder *b, struct exec_ctx *ctx, const char *repo,
			  const char *commit, const char *target, int log_fd,
			  char ret_digest[static 72], struct cd_error *err)
{
	struct checkout co = { .b = b,
			       .ctx = ctx,
			       .pipeline_id = ctx->claim->pipeline_id,
			       .repo = repo,
			       .commit = commit,
			       .log_fd = log_fd };
	int r = ensure_in(&co, target, ret_digest, err);

	checkout_close(&co);
	return r;
}

static int open_log(struct builder *b, struct exec_ctx *ctx, struct cd_error *err)
{
	char path[PATH_MAX], *slash;
	int r, fd;

	r = pipeline_log_path(b->log_dir, ctx->claim->pipeline_id, ctx->claim->run,
			      ctx->claim->stage, ctx->claim->attempt, path, sizeof(path));
	if (r < 0)
		return cd_error_set(err, r, "log path too long");
	slash = strrchr(path, '/');
	*slash = '\0';
	r = fs_mkdir_p(path, 0755);
	*slash = '/';
	if (r < 0)
		return cd_error_set(err, r, "creating the log directory: %s", strerror(-r));
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return cd_error_set(err, -errno, "opening %s: %s", path, strerror(errno));
	return fd;
}

static int load_repo(struct exec_ctx *ctx, char **ret, struct cd_error *err)
{
	struct store_pipeline p = { 0 };
	int r = store_pipeline_get(ctx->store, ctx->claim->pipeline_id, &p, err);

	if (r < 0)
		return r;
	*ret = p.repo ? strdup(p.repo) : NULL;
	r = p.repo && !*ret ? -ENOMEM : 0;
	store_pipeline_release(&p);
	return r;
}

/* Infrastructure errors are transient (the runner retries); "commit not found" and a missing
 * repo are not. */
static void fail_or_retry(int r, const struct cd_error *err, struct exec_result *res)
{
	res->outcome = (r == -ENOENT || r == -EINVAL || r == -EFBIG || r == -E2BIG) ? EXEC_FAILED :
										      EXEC_RETRY;
	snprintf(res->message, sizeof(res->message), "%s", cd_error_message(err));
}

int builder_exec_build(struct exec_ctx *ctx, struct exec_result *res)
{
	struct builder *b = ctx->data;
	_cleanup_free_ char *repo = NULL;
	_cleanup_close_ int log_fd = -EBADF;
	struct cd_error err = { 0 };
	struct checkout co = { .b = b, .ctx = ctx, .pipeline_id = ctx->claim->pipeline_id };
	json_t *arts = json_object();
	int r;

	if (!arts)
		return -ENOMEM;
	r = load_repo(ctx, &repo, &err);
	if (r >= 0)
		r = log_fd = open_log(b, ctx, &err);
	co.repo = repo;
	co.commit = ctx->run->commit;
	co.log_fd = log_fd;
	if (r >= 0)
		log_line(log_fd,
			 "# build stage \"%s\" run %" PRId64 " attempt %" PRId64 " claim %d at %s",
			 ctx->claim->stage, ctx->claim->run, ctx->claim->attempt,
			 ctx->claim->claims, ctx->run->commit);
	for (size_t i = 0; r >= 0 && i < node_n_build_targets(ctx->node); i++) {
		const char *target = node_build_target(ctx->node, i);
		char digest[72];

		r = ensure_in(&co, target, digest, &err);
		if (r == 0)
			r = json_object_set_new(arts, target, json_string(digest)) < 0 ? -ENOMEM :
											 0;
	}
	checkout_close(&co);
	if (r == 1) {
		res->outcome = EXEC_FAILED;
		snprintf(res->message, sizeof(res->message), "%s (see the stage log)",
			 cd_error_message(&err));
	} else if (r == -ESTALE || r == -ECANCELED || r == -ETIMEDOUT) {
		json_decref(arts);
		return r;
	} else if (r < 0) {
		fail_or_retry(r, &err, res);
		log_line(log_fd, "# error: %s", res->message);
	} else {
		res->outcome = EXEC_FINISHED;
		json_t *o = json_pack("{s:O}", "artifacts", arts);

		res->result = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
	}
	json_decref(arts);
	return 0;
}

/* Count <testcase> and <failure>/<error> elements of a JUnit XML report, CDATA sections and
 * comments skipped (not a full XML parser: the counts are what a human reads next to "passed").
 * -ENOENT when there is none. */
static int junit_counts(const char *path, unsigned *ret_tests, unsigned *ret_failures)
{
	_cleanup_free_ char *xml = NULL;
	unsigned tests = 0, failures = 0;
	int r = fs_read_file_at(AT_FDCWD, path, 16u << 20, &xml, NULL);

	if (r < 0)
		return r;
	for (const char *p = xml; (p = strchr(p, '<')); p++) {
		/* Test output quoted in the report (Bazel puts the whole log there) is text. */
		const char *end = startswith(p, "<![CDATA[") ? strstr(p, "]]>") :
				  startswith(p, "<!--")	     ? strstr(p, "-->") :
							       p;

		if (!end)
			break;
		if (end != p)
			p = end;
		else if (startswith(p, "<testcase") && p[9] && strchr(" \t\n/>", p[9]))
			tests++;
		else if ((startswith(p, "<failure") && p[8] && strchr(" \t\n/>", p[8])) ||
			 (startswith(p, "<error") && p[6] && strchr(" \t\n/>", p[6])))
			failures++;
	}
	*ret_tests = tests;
	*ret_failures = failures;
	return 0;
}

/* environ + XML_OUTPUT_FILE=<xml> (the variable Bazel gives tests for their JUnit report). */
static char **test_env(const char *xml)
{
	extern char **environ;
	size_t n = 0, k = 0;
	char **v;

	while (environ[n])
		n++;
	v = calloc(n + 2, sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!startswith(environ[i], "XML_OUTPUT_FILE="))
			v[k++] = environ[i];
	if (asprintf(&v[k], "XML_OUTPUT_FILE=%s", xml) < 0) {
		free(v);
		return NULL;
	}
	return v;
}

int builder_exec_test(struct exec_ctx *ctx, struct exec_result *res)
{
	struct builder *b = ctx->data;
	_cleanup_free_ char *repo = NULL;
	_cleanup_close_ int log_fd = -EBADF;
	struct cd_error err = { 0 };
	struct checkout co = { .b = b, .ctx = ctx, .pipeline_id = ctx->claim->pipeline_id };
	const char *target = node_test_target(ctx->node);
	char out[PATH_MAX], bin[PATH_MAX + 64], pkg[PATH_MAX], xml[PATH_MAX + 16];
	unsigned n_tests = 0, n_failures = 0;
	bool have_junit = false;
	struct target t;
	int r, status = 0;

	r = target_parse(target, &t, &err);
	if (r >= 0)
		r = load_repo(ctx, &repo, &err);
	if (r >= 0)
		r = log_fd = open_log(b, ctx, &err);
	co.repo = repo;
	co.commit = ctx->run->commit;
	co.log_fd = log_fd;
	if (r >= 0)
		r = checkout_open(&co, &err);
	if (r >= 0)
		r = checkout_driver(&co, target, &err);
	if (r == 0 && co.driver == DRIVER_BAZEL) {
		/* `bazel test` builds and runs it (in the sandbox when configured). */
		r = pathf(xml, sizeof(xml), "%s/test.xml", co.dir);
		if (r < 0)
			cd_error_set(&err, r, "%s: path too long", target);
		else
			r = bazel_run(&co, &t, target, "test", xml, &status, &err);
		if (r >= 0 && junit_counts(xml, &n_tests, &n_failures) >= 0 && n_tests > 0) {
			have_junit = true;
			log_line(log_fd, "# JUnit: %u tests, %u failed", n_tests, n_failures);
		}
		if (r >= 0 && status != 0)
			r = bazel_failed(target, "test", status, &err);
	} else if (r == 0 && b->cg) {
		/* Build and run inside: make fails with 125, the report comes back on stdout. */
		static const char script[] =
			"mkdir -p /task/out && { make --no-print-directory -C \"/app/$1\" \"$2\" "
			"OUT=/task/out >&2 || exit 125; } && cd \"/app/$1\" && "
			"XML_OUTPUT_FILE=/task/out/junit.xml \"/task/out/$2\" >&2; rc=$?; "
			"[ -f /task/out/junit.xml ] && cat /task/out/junit.xml; exit $rc";
		char *const args[] = { t.package, t.name, NULL };
		_cleanup_close_ int fd = -EBADF;

		r = pathf(xml, sizeof(xml), "%s/junit.xml", co.dir);
		if (r >= 0 && (fd = open(xml, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
			r = cd_error_set(&err, -errno, "creating %s: %s", xml, strerror(errno));
		if (r >= 0)
			r = run_sandboxed(b, ctx, script, args, co.wt, NULL, fd, log_fd, &status,
					  &err);
		if (r >= 0 && junit_counts(xml, &n_tests, &n_failures) >= 0 && n_tests > 0) {
			have_junit = true;
			log_line(log_fd, "# JUnit: %u tests, %u failed", n_tests, n_failures);
		}
		if (r >= 0 && status == 125) {
			cd_error_set(&err, -EIO, "%s: make failed", target);
			r = 1;
		} else if (r >= 0 && status != 0) {
			cd_error_set(&err, -EIO, "%s exited with status %d", target, status);
			r = 1;
		}
	} else if (r == 0)
		r = build_target(&co, &t, target, out, &err);
	if (r == 0 && !b->cg && co.driver == DRIVER_MAKE) {
		char *const argv[] = { bin, NULL };
		char **envp = NULL;

		r = pathf(bin, sizeof(bin), "%s/%s", out, t.name);
		if (r >= 0)
			r = pathf(pkg, sizeof(pkg), "%s/%s", co.wt, t.package);
		if (r >= 0)
			r = pathf(xml, sizeof(xml), "%s.junit.xml", out);
		if (r >= 0 && !(envp = test_env(xml)))
			r = -ENOMEM;
		if (r >= 0)
			r = run_cmd_env(b, ctx, argv, envp, pkg, NULL, log_fd, &status, &err);
		if (envp) {
			for (size_t i = 0; envp[i]; i++)
				if (startswith(envp[i], "XML_OUTPUT_FILE="))
					free(envp[i]);
			free(envp);
		}
		if (r >= 0 && junit_counts(xml, &n_tests, &n_failures) >= 0) {
			have_junit = true;
			log_line(log_fd, "# JUnit: %u tests, %u failed", n_tests, n_failures);
		}
		if (r == 0 && status != 0) {
			cd_error_set(&err, -EIO, "%s exited with status %d", target, status);
			r = 1;
		}
	}
	checkout_close(&co);
	if (r == -ESTALE || r == -ECANCELED || r == -ETIMEDOUT)
		return r;
	if (have_junit) {
		json_t *j = json_pack("{s:{s:i, s:i}}", "junit", "tests", (int)n_tests, "failures",
				      (int)n_failures);

		res->result = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
	}
	if (r == 1) {
		res->outcome = EXEC_FAILED;
		if (have_junit)
			snprintf(res->message, sizeof(res->message),
				 "%s (%u of %u tests failed; see the stage log)",
				 cd_error_message(&err), n_failures, n_tests);
		else
			snprintf(res->message, sizeof(res->message), "%s (see the stage log)",
				 cd_error_message(&err));
		log_line(log_fd, "# FAILED: %s", cd_error_message(&err));
	} else if (r < 0) {
		fail_or_retry(r, &err, res);
		log_line(log_fd, "# error: %s", res->message);
	} else {
		res->outcome = EXEC_FINISHED;
		if (have_junit)
			snprintf(res->message, sizeof(res->message), "%s passed (%u tests)", target,
				 n_tests);
		else
			snprintf(res->message, sizeof(res->message), "%s passed", target);
		log_line(log_fd, "# PASSED: %s", target);
	}
	return 0;
}
