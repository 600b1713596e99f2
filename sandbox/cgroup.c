/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libcgroup.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/fs.h"
#include "lib/str.h"

#define CPU_PERIOD_US 100000ULL
#define CG_NAME_MAX 200

struct cg_system {
	enum cg_layout layout;
	char *root;
	char *path[_CG_HIER_MAX]; /* hierarchy roots, NULL when absent */
	int fd[_CG_HIER_MAX];	  /* their directories, opened once at detection; -EBADF absent */
};

struct task_cgroup {
	const struct cg_system *sys;
	char *name; /* "<parent>/<leaf>" */
	int fd[_CG_HIER_MAX];
};

static const char *const hier_names[_CG_HIER_MAX] = {
	[CG_UNIFIED] = "unified",    [CG_V1_MEMORY] = "memory", [CG_V1_CPU] = "cpu",
	[CG_V1_CPUACCT] = "cpuacct", [CG_V1_PIDS] = "pids",	[CG_V1_FREEZER] = "freezer",
};

const char *cg_hier_to_string(enum cg_hier h)
{
	return h >= 0 && h < _CG_HIER_MAX ? hier_names[h] : "?";
}

const char *cg_layout_to_string(enum cg_layout layout)
{
	switch (layout) {
	case CG_LAYOUT_V1:
		return "v1";
	case CG_LAYOUT_HYBRID:
		return "hybrid";
	case CG_LAYOUT_V2:
		return "v2";
	default:
		return "none";
	}
}

/* libcgroup's error codes to -errno, once, here. */
static int map_libcgroup(int r)
{
	int e;

	if (r == 0)
		return 0;
	switch (r) {
	case ECGOTHER:
		e = cgroup_get_last_errno();
		return e > 0 ? -e : -EIO;
	case ECGROUPNOTEXIST:
	case ECGROUPVALUENOTEXIST:
		return -ENOENT;
	case ECGROUPNOTMOUNTED:
	case ECGROUPSUBSYSNOTMOUNTED:
	case ECGROUPUNSUPP:
		return -EOPNOTSUPP;
	case ECGROUPNOTALLOWED:
	case ECGROUPNOTOWNER:
		return -EPERM;
	case ECGINVAL:
		return -EINVAL;
	case ECGNONEMPTY:
		return -EBUSY;
	case ECGVALUEEXISTS:
		return -EEXIST;
	case ECGCANTSETVALUE:
		return -EIO;
	case ECGFAIL:
	default:
		return -EIO;
	}
}

static pthread_once_t libcgroup_once = PTHREAD_ONCE_INIT;
static int libcgroup_init_result;
static void libcgroup_init_once(void)
{
	libcgroup_init_result = map_libcgroup(cgroup_init());
}

/*
 * Does libcgroup see the v1 hierarchies of sys at the same places? Asked only where libcgroup is
 * used (changing a running task's limits), never on the launch path: cgroup_init() parses
 * /proc/cgroups and /proc/mounts and clears ~2.4 MB of tables (≈0.4 ms of page faults per
 * process), and its create/delete re-read /proc/mounts for every controller and value.
 */
static bool libcgroup_matches(const struct cg_system *sys)
{
	pthread_once(&libcgroup_once, libcgroup_init_once);
	if (libcgroup_init_result < 0)
		return false;
	for (int h = CG_V1_MEMORY; h < _CG_HIER_MAX; h++) {
		struct stat a, b;
		char *mp = NULL;
		bool same;

		if (!sys->path[h])
			continue;
		if (cgroup_get_subsys_mount_point(hier_names[h], &mp) != 0 || !mp)
			return false;
		same = stat(mp, &a) == 0 && fstat(sys->fd[h], &b) == 0 && a.st_ino == b.st_ino &&
		       a.st_dev == b.st_dev;
		free(mp);
		if (!same)
			return false;
	}
	return true;
}

static bool file_exists_at(int dirfd, const char *name)
{
	return faccessat(dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static int assign_v1(struct cg_system *sys, const char *root, const char *dirname)
{
	_cleanup_free_ char *copy = strdup(dirname);
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (int h = CG_V1_MEMORY; h < _CG_HIER_MAX; h++) {
			if (!streq(tok, hier_names[h]) || sys->path[h])
				continue;
			if (asprintf(&sys->path[h], "%s/%s", root, dirname) < 0) {
				sys->path[h] = NULL;
				return -ENOMEM;
			}
		}
	}
	return 0;
}

int cg_system_detect(const char *root, struct cg_system **ret, struct cd_error *err)
{
	_cleanup_close_ int rootfd = -EBADF;
	struct cg_system *sys;
	bool any_v1 = false;
	DIR *d;
	int r = 0;

	if (!root)
		root = CG_DEFAULT_ROOT;
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return cd_error_set(err, -errno, "cannot open cgroup root %s: %m", root);
	sys = calloc(1, sizeof(*sys));
	if (!sys)
		return -ENOMEM;
	for (int h = 0; h < _CG_HIER_MAX; h++)
		sys->fd[h] = -EBADF;
	sys->root = strdup(root);
	if (!sys->root) {
		cg_system_free(sys);
		return -ENOMEM;
	}
	if (file_exists_at(rootfd, "cgroup.controllers")) {
		sys->layout = CG_LAYOUT_V2;
		sys->path[CG_UNIFIED] = strdup(root);
		if (!sys->path[CG_UNIFIED]) {
			cg_system_free(sys);
			return -ENOMEM;
		}
		sys->fd[CG_UNIFIED] = TAKE_FD(rootfd);
		*ret = sys;
		return 0;
	}

	d = fdopendir(TAKE_FD(rootfd));
	if (!d) {
		r = -errno;
		cg_system_free(sys);
		return cd_error_set(err, r, "cannot list %s", root);
	}
	for (struct dirent *de; (de = readdir(d));) {
		struct stat st;
		_cleanup_close_ int sub = -EBADF;

		if (de->d_name[0] == '.')
			continue;
		/* co-mounted hierarchies have symlinks (cpu -> cpu,cpuacct): the real dir names
		 * every controller, so skip links */
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sub < 0)
			continue;
		if (file_exists_at(sub, "cgroup.controllers")) {
			if (!sys->path[CG_UNIFIED] || streq(de->d_name, "unified")) {
				free(sys->path[CG_UNIFIED]);
				if (asprintf(&sys->path[CG_UNIFIED], "%s/%s", root, de->d_name) <
				    0) {
					sys->path[CG_UNIFIED] = NULL;
					r = -ENOMEM;
					break;
				}
			}
		} else if (file_exists_at(sub, "tasks")) {
			any_v1 = true;
			r = assign_v1(sys, root, de->d_name);
			if (r < 0)
				break;
		}
	}
	closedir(d);
	if (r < 0) {
		cg_system_free(sys);
		return r;
	}
	if (any_v1)
		sys->layout = sys->path[CG_UNIFIED] ? CG_LAYOUT_HYBRID : CG_LAYOUT_V1;
	else if (sys->path[CG_UNIFIED])
		sys->layout = CG_LAYOUT_V2; /* cgroup2 mounted below root only: use it as v2 */
	else {
		cg_system_free(sys);
		return cd_error_set(err, -ENOMEDIUM, "no cgroup hierarchy found under %s", root);
	}

	/* every later operation works relative to these (mkdirat, unlinkat, openat) */
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		if (!sys->path[h])
			continue;
		sys->fd[h] = open(sys->path[h], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sys->fd[h] < 0) {
			r = -errno;
			cd_error_set(err, r, "cannot open cgroup hierarchy %s: %m", sys->path[h]);
			cg_system_free(sys);
			return r;
		}
	}
	*ret = sys;
	return 0;
}

void cg_system_free(struct cg_system *sys)
{
	if (!sys)
		return;
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		free(sys->path[h]);
		safe_close(sys->fd[h]);
	}
	free(sys->root);
	free(sys);
}

enum cg_layout cg_system_layout(const struct cg_system *sys)
{
	return sys->layout;
}

const char *cg_system_hier_path(const struct cg_system *sys, enum cg_hier h)
{
	if (h < 0 || h >= _CG_HIER_MAX)
		return NULL;
	return sys->path[h];
}

int cg_name_validate(const char *name, bool allow_slash)
{
	size_t len, comp = 0;

	if (!name || !*name)
		return -EINVAL;
	len = strlen(name);
	if (len > CG_NAME_MAX || name[0] == '/' || name[len - 1] == '/')
		return -EINVAL;
	for (const char *p = name;; p++) {
		if (*p == '/' || *p == '\0') {
			const char *start = p - comp;

			if (comp == 0)
				return -EINVAL;
			if ((comp == 1 && start[0] == '.') ||
			    (comp == 2 && start[0] == '.' && start[1] == '.'))
				return -EINVAL;
			/* cgroupfs reserves names that look like controller files */
			if (comp >= 7 && strncmp(start, "cgroup.", 7) == 0)
				return -EINVAL;
			if (*p == '\0')
				break;
			if (!allow_slash)
				return -EINVAL;
			comp = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("._:@-", *p)))
			return -EINVAL;
		comp++;
	}
	return 0;
}

int cg_limits_validate(const struct cg_limits *limits, struct cd_error *err)
{
	if (!limits)
		return 0;
	if (limits->memory_bytes && limits->memory_bytes < 4ULL << 20)
		return cd_error_set(err, -EINVAL,
				    "memory limit %" PRIu64 " bytes is below the 4 MiB minimum",
				    limits->memory_bytes);
	if (limits->memory_bytes > (UINT64_C(1) << 50))
		return cd_error_set(err, -EINVAL, "memory limit %" PRIu64 " bytes is too large",
				    limits->memory_bytes);
	if (limits->cpu_millis > 1024000)
		return cd_error_set(err, -EINVAL, "cpu limit %u millicpus is too large",
				    limits->cpu_millis);
	if (limits->pids_max > 4194304)
		return cd_error_set(err, -EINVAL, "pids limit %" PRIu64 " is too large",
				    limits->pids_max);
	return 0;
}

static int write_at(int dirfd, const char *file, const char *value)
{
	_cleanup_close_ int fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		return -errno;
	return 0;
}

static int read_u64_at(int dirfd, const char *file, uint64_t *ret)
{
	_cleanup_free_ char *s = NULL;
	int r = fs_read_file_at(dirfd, file, 4096, &s, NULL);

	if (r < 0)
		return r;
	s[strcspn(s, "\n")] = '\0';
	if (streq(s, "max")) {
		*ret = UINT64_MAX;
		return 0;
	}
	return parse_u64(s, ret);
}

/* Find "key value" in a flat-keyed file (memory.events, cpu.stat, memory.oom_control). */
static int read_key_at(int dirfd, const char *file, const char *key, uint64_t *ret)
{
	_cleanup_free_ char *s = NULL;
	int r = fs_read_file_at(dirfd, file, 65536, &s, NULL);
	size_t klen = strlen(key);

	if (r < 0)
		return r;
	for (char *line = s; line && *line;) {
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = '\0';
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
			return parse_u64(line + klen + 1, ret);
		line = nl ? nl + 1 : NULL;
	}
	return -ENOENT;
}

static struct task_cgroup *task_cgroup_alloc(const struct cg_system *sys, const char *parent,
					     const char *name)
{
	struct task_cgroup *cg = calloc(1, sizeof(*cg));

	if (!cg)
		return NULL;
	cg->sys = sys;
	for (int h = 0; h < _CG_HIER_MAX; h++)
		cg->fd[h] = -EBADF;
	if (asprintf(&cg->name, "%s/%s", parent, name) < 0) {
		free(cg);
		return NULL;
	}
	return cg;
}

void task_cgroup_free(struct task_cgroup *cg)
{
	if (!cg)
		return;
	for (int h = 0; h < _CG_HIER_MAX; h++)
		safe_close(cg->fd[h]);
	free(cg->name);
	free(cg);
}

const char *task_cgroup_name(const struct task_cgroup *cg)
{
	return cg->name;
}

int task_cgroup_fd(const struct task_cgroup *cg, enum cg_hier h)
{
	if (h < 0 || h >= _CG_HIER_MAX || cg->fd[h] < 0)
		return -ENOENT;
	return cg->fd[h];
}

int task_cgroup_path(const struct task_cgroup *cg, enum cg_hier h, char *buf, size_t size)
{
	int n;

	if (h < 0 || h >= _CG_HIER_MAX || !cg->sys->path[h])
		return -ENOENT;
	n = snprintf(buf, size, "%s/%s", cg->sys->path[h], cg->name);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

int task_cgroup_id(const struct task_cgroup *cg, uint64_t *ret)
{
	struct stat st;

	if (cg->fd[CG_UNIFIED] < 0)
		return -EOPNOTSUPP;
	/* kernfs inode numbers are the 64-bit cgroup ids on 64-bit kernels (>= 5.5) */
	if (fstat(cg->fd[CG_UNIFIED], &st) < 0)
		return -errno;
	*ret = (uint64_t)st.st_ino;
	return 0;
}

static int open_hier_dirs(struct task_cgroup *cg)
{
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		if (cg->sys->fd[h] < 0 || cg->fd[h] >= 0)
			continue;
		cg->fd[h] = openat(cg->sys->fd[h], cg->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cg->fd[h] < 0 && errno != ENOENT)
			return -errno;
	}
	return 0;
}

/* v2: enable the controllers we limit by in every ancestor of the task cgroup. */
static int v2_enable_controllers(const char *root, const char *parent, struct cd_error *err)
{
	static const char *const want[] = { "cpu", "memory", "pids" };
	_cleanup_free_ char *avail = NULL;
	_cleanup_close_ int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ char *copy = NULL;
	char *save = NULL, *tok;
	int r;

	if (dfd < 0)
		return cd_error_set(err, -errno, "cannot open %s: %m", root);
	r = fs_read_file_at(dfd, "cgroup.controllers", 4096, &avail, NULL);
	if (r < 0)
		return cd_error_set(err, r, "cannot read %s/cgroup.controllers", root);
	copy = strdup(parent);
	if (!copy)
		return -ENOMEM;
	tok = strtok_r(copy, "/", &save);
	for (;;) {
		for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
			char buf[32];

			if (!strstr(avail, want[i]))
				continue;
			snprintf(buf, sizeof(buf), "+%s", want[i]);
			r = write_at(dfd, "cgroup.subtree_control", buf);
			if (r < 0)
				return cd_error_set(err, r,
						    "cannot enable %s controller below %s/%s",
						    want[i], root, parent);
		}
		if (!tok)
			break;
		if (mkdirat(dfd, tok, 0755) < 0 && errno != EEXIST)
			return cd_error_set(err, -errno, "cannot create cgroup %s/%s: %m", root,
					    parent);
		int next = openat(dfd, tok, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (next < 0)
			return -errno;
		safe_close(dfd);
		dfd = next;
		tok = strtok_r(NULL, "/", &save);
	}
	return 0;
}

/* With reset, a 0 field is written as "max" (used by task_cgroup_set_limits); without, it is
 * left at the kernel's default. */
static int v2_apply_limits(int fd, const struct cg_limits *lim, bool reset, struct cd_error *err)
{
	char buf[64];
	int r;

	if (lim->memory_bytes || reset) {
		if (lim->memory_bytes)
			snprintf(buf, sizeof(buf), "%" PRIu64, lim->memory_bytes);
		else
			snprintf(buf, sizeof(buf), "max");
		r = write_at(fd, "memory.max", buf);
		if (r < 0)
			return cd_error_set(err, r, "cannot set memory.max: %s", strerror(-r));
		if (file_exists_at(fd, "memory.swap.max")) {
			r = write_at(fd, "memory.swap.max", "0");
			if (r < 0)
				return cd_error_set(err, r, "cannot set memory.swap.max");
		}
	}
	if (lim->cpu_millis || reset) {
		if (lim->cpu_millis)
			snprintf(buf, sizeof(buf), "%llu %llu",
				 (unsigned long long)lim->cpu_millis * CPU_PERIOD_US / 1000,
				 (unsigned long long)CPU_PERIOD_US);
		else
			snprintf(buf, sizeof(buf), "max %llu", (unsigned long long)CPU_PERIOD_US);
		r = write_at(fd, "cpu.max", buf);
		if (r < 0)
			return cd_error_set(err, r, "cannot set cpu.max: %s", strerror(-r));
	}
	if (lim->pids_max || reset) {
		if (lim->pids_max)
			snprintf(buf, sizeof(buf), "%" PRIu64, lim->pids_max);
		else
			snprintf(buf, sizeof(buf), "max");
		r = write_at(fd, "pids.max", buf);
		if (r < 0)
			return cd_error_set(err, r, "cannot set pids.max: %s", strerror(-r));
	}
	return 0;
}

/* mkdir name (parent/leaf) below the hierarchy dir hfd: the parent components are created when
 * missing (EEXIST is fine for them), the leaf must be new (-EEXIST otherwise). The common case,
 * parent present, is one mkdirat(). */
static int mkdirat_cgroup(int hfd, const char *name)
{
	_cleanup_free_ char *copy = NULL;

	if (mkdirat(hfd, name, 0755) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	for (char *slash = strchr(copy, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdirat(hfd, copy, 0755) < 0 && errno != EEXIST)
			return -errno;
		*slash = '/';
	}
	if (mkdirat(hfd, name, 0755) < 0)
		return -errno;
	return 0;
}

/* rmdir name below hfd; -ENOENT is success. */
static int rmdirat_cgroup(int hfd, const char *name)
{
	/* tasks that were just killed leave the cgroup asynchronously: retry EBUSY briefly */
	for (int i = 0;; i++) {
		if (unlinkat(hfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY || i >= 200)
			return -errno;
		clock_sleep_usec(1000);
	}
}

/* Distinct v1 hierarchies (co-mounted controllers share one directory). */
static bool v1_is_duplicate(const struct cg_system *sys, int h)
{
	for (int o = CG_V1_MEMORY; o < h; o++)
		if (sys->path[o] && streq(sys->path[o], sys->path[h]))
			return true;
	return false;
}

/* Is h the first of the hierarchies sharing its directory (or the unified one)? */
static bool hier_is_distinct(const struct cg_system *sys, int h)
{
	return sys->path[h] && (h == CG_UNIFIED || !v1_is_duplicate(sys, h));
}

/* The v1 limits of one task group through its directory fd: every controller co-mounted in
 * this hierarchy gets its own (memory: limit first, memsw must never be below it). */
static int v1_apply_limits(const struct cg_system *sys, int h, int fd, const struct cg_limits *lim,
			   const char *name, struct cd_error *err)
{
	for (int c = CG_V1_MEMORY; c < _CG_HIER_MAX; c++) {
		char buf[64];
		int r = 0;

		if (!sys->path[c] || !streq(sys->path[c], sys->path[h]))
			continue;
		if (c == CG_V1_MEMORY && lim->memory_bytes) {
			snprintf(buf, sizeof(buf), "%" PRIu64, lim->memory_bytes);
			r = write_at(fd, "memory.limit_in_bytes", buf);
			if (r == 0 && file_exists_at(fd, "memory.memsw.limit_in_bytes"))
				r = write_at(fd, "memory.memsw.limit_in_bytes", buf);
			else if (r == 0)
				/* no swap accounting: keep the task out of swap at least */
				r = write_at(fd, "memory.swappiness", "0");
		} else if (c == CG_V1_CPU && lim->cpu_millis) {
			snprintf(buf, sizeof(buf), "%llu",
				 (unsigned long long)lim->cpu_millis * CPU_PERIOD_US / 1000);
			r = write_at(fd, "cpu.cfs_period_us", "100000");
			if (r == 0)
				r = write_at(fd, "cpu.cfs_quota_us", buf);
		} else if (c == CG_V1_PIDS && lim->pids_max) {
			snprintf(buf, sizeof(buf), "%" PRIu64, lim->pids_max);
			r = write_at(fd, "pids.max", buf);
		}
		if (r < 0)
			return cd_error_set(err, r, "cannot set %s limits on %s/%s: %s",
					    hier_names[c], sys->path[h], name, strerror(-r));
	}
	return 0;
}

static int destroy_all(const struct cg_system *sys, const char *name, struct cd_error *err)
{
	int ret = 0;

	for (int h = 0; h < _CG_HIER_MAX; h++) {
		int r;

		if (!hier_is_distinct(sys, h))
			continue;
		r = rmdirat_cgroup(sys->fd[h], name);
		if (r < 0 && ret == 0)
			ret = cd_error_set(err, r, "cannot remove cgroup %s/%s: %s", sys->path[h],
					   name, strerror(-r));
	}
	return ret;
}

/*
 * Creation works on the hierarchy dir fds of cg_system (cgroupfs, no mount table parsing):
 * mkdirat + openat + the limit files, per distinct hierarchy. libcgroup is not used here: its
 * create re-reads /proc/mounts for every controller and every value, and its initialisation
 * alone costs a one-shot launcher ~0.4 ms (see libcgroup_matches()).
 */
int task_cgroup_create(const struct cg_system *sys, const char *parent, const char *name,
		       const struct cg_limits *limits, struct task_cgroup **ret,
		       struct cd_error *err)
{
	static const struct cg_limits none;
	bool created[_CG_HIER_MAX] = { false };
	struct task_cgroup *cg;
	int r;

	if (!limits)
		limits = &none;
	if (cg_name_validate(parent, true) < 0)
		return cd_error_set(err, -EINVAL, "invalid cgroup parent \"%s\"", parent);
	if (cg_name_validate(name, false) < 0)
		return cd_error_set(err, -EINVAL, "invalid cgroup name \"%s\"", name);
	r = cg_limits_validate(limits, err);
	if (r < 0)
		return r;
	cg = task_cgroup_alloc(sys, parent, name);
	if (!cg)
		return -ENOMEM;

	if (sys->layout == CG_LAYOUT_V2) {
		r = v2_enable_controllers(sys->path[CG_UNIFIED], parent, err);
		if (r < 0)
			goto fail;
	}
	/* the unified tree first: it is the clone3 target, and a name clash shows up there */
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		if (!hier_is_distinct(sys, h))
			continue;
		r = mkdirat_cgroup(sys->fd[h], cg->name);
		if (r < 0) {
			cd_error_set(err, r,
				     r == -EEXIST ? "cgroup %s/%s already exists" :
						    "cannot create cgroup %s/%s: %s",
				     sys->path[h], cg->name, strerror(-r));
			goto fail;
		}
		created[h] = true;
		cg->fd[h] = openat(sys->fd[h], cg->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cg->fd[h] < 0) {
			r = cd_error_set(err, -errno, "cannot open cgroup %s/%s: %m", sys->path[h],
					 cg->name);
			goto fail;
		}
		if (h == CG_UNIFIED)
			r = sys->layout == CG_LAYOUT_V2 ?
				    v2_apply_limits(cg->fd[h], limits, false, err) :
				    0;
		else
			r = v1_apply_limits(sys, h, cg->fd[h], limits, cg->name, err);
		if (r < 0)
			goto fail;
	}
	/* co-mounted v1 controllers (cpu,cpuacct) get their own fd of the shared directory */
	r = open_hier_dirs(cg);
	if (r < 0) {
		cd_error_set(err, r, "cannot open cgroup %s: %s", cg->name, strerror(-r));
		goto fail;
	}
	*ret = cg;
	return 0;
fail:
	/* roll back what this call created, never a clashing task's cgroup */
	for (int h = 0; h < _CG_HIER_MAX; h++)
		cg->fd[h] = safe_close(cg->fd[h]);
	for (int h = 0; h < _CG_HIER_MAX; h++)
		if (created[h])
			(void)rmdirat_cgroup(sys->fd[h], cg->name);
	task_cgroup_free(cg);
	return r;
}

/* New v1 limits on an existing group. memsw must never be below the memory limit: raise memsw
 * before the limit, lower it after. 0 = unlimited (-1 in v1 files, "max" for pids). */
static int v1_set_limits(const struct task_cgroup *cg, const struct cg_limits *lim,
			 struct cd_error *err)
{
	const struct cg_system *sys = cg->sys;
	int64_t mem = lim->memory_bytes ? (int64_t)lim->memory_bytes : -1;
	int64_t quota = lim->cpu_millis ? (int64_t)(lim->cpu_millis * CPU_PERIOD_US / 1000) : -1;
	uint64_t cur = 0;
	bool memsw = cg->fd[CG_V1_MEMORY] >= 0 &&
		     file_exists_at(cg->fd[CG_V1_MEMORY], "memory.memsw.limit_in_bytes");
	bool raising;
	struct cgroup *lcg;
	int r = 0;

	if (cg->fd[CG_V1_MEMORY] >= 0)
		(void)read_u64_at(cg->fd[CG_V1_MEMORY], "memory.limit_in_bytes", &cur);
	raising = mem < 0 || (uint64_t)mem > cur;
	if (!libcgroup_matches(sys)) {
		char buf[32];
		int fd;

		if ((fd = cg->fd[CG_V1_MEMORY]) >= 0) {
			snprintf(buf, sizeof(buf), "%" PRId64, mem);
			if (memsw && raising)
				r = write_at(fd, "memory.memsw.limit_in_bytes", buf);
			if (r == 0)
				r = write_at(fd, "memory.limit_in_bytes", buf);
			if (r == 0 && memsw && !raising)
				r = write_at(fd, "memory.memsw.limit_in_bytes", buf);
		}
		if (r == 0 && (fd = cg->fd[CG_V1_CPU]) >= 0) {
			snprintf(buf, sizeof(buf), "%" PRId64, quota);
			r = write_at(fd, "cpu.cfs_quota_us", buf);
		}
		if (r == 0 && (fd = cg->fd[CG_V1_PIDS]) >= 0) {
			if (lim->pids_max)
				snprintf(buf, sizeof(buf), "%" PRIu64, lim->pids_max);
			else
				snprintf(buf, sizeof(buf), "max");
			r = write_at(fd, "pids.max", buf);
		}
		if (r < 0)
			return cd_error_set(err, r, "cannot change the limits of %s: %s", cg->name,
					    strerror(-r));
		return 0;
	}

	lcg = cgroup_new_cgroup(cg->name);
	if (!lcg)
		return -ENOMEM;
	for (int h = CG_V1_MEMORY; h < _CG_HIER_MAX && r == 0; h++) {
		struct cgroup_controller *c;

		if (cg->fd[h] < 0 || (h != CG_V1_MEMORY && h != CG_V1_CPU && h != CG_V1_PIDS))
			continue;
		c = cgroup_add_controller(lcg, hier_names[h]);
		if (!c) {
			r = -ENOMEM;
			break;
		}
		if (h == CG_V1_MEMORY) {
			/* libcgroup writes values in the order they were added */
			if (memsw && raising)
				r = map_libcgroup(cgroup_add_value_int64(
					c, "memory.memsw.limit_in_bytes", mem));
			if (r == 0)
				r = map_libcgroup(
					cgroup_add_value_int64(c, "memory.limit_in_bytes", mem));
			if (r == 0 && memsw && !raising)
				r = map_libcgroup(cgroup_add_value_int64(
					c, "memory.memsw.limit_in_bytes", mem));
		} else if (h == CG_V1_CPU) {
			r = map_libcgroup(cgroup_add_value_int64(c, "cpu.cfs_quota_us", quota));
		} else if (lim->pids_max) {
			r = map_libcgroup(cgroup_add_value_uint64(c, "pids.max", lim->pids_max));
		} else {
			r = map_libcgroup(cgroup_add_value_string(c, "pids.max", "max"));
		}
	}
	if (r == 0) {
		int lr = cgroup_modify_cgroup(lcg);

		r = map_libcgroup(lr);
		if (r < 0)
			cd_error_set(err, r, "libcgroup cannot change the limits of %s: %s",
				     cg->name, cgroup_strerror(lr));
	}
	cgroup_free(&lcg);
	return r;
}

int task_cgroup_set_limits(struct task_cgroup *cg, const struct cg_limits *limits,
			   struct cd_error *err)
{
	static const struct cg_limits none;
	int r;

	if (!limits)
		limits = &none;
	r = cg_limits_validate(limits, err);
	if (r < 0)
		return r;
	if (cg->sys->layout == CG_LAYOUT_V2)
		return v2_apply_limits(cg->fd[CG_UNIFIED], limits, true, err);
	return v1_set_limits(cg, limits, err);
}

int task_cgroup_open(const struct cg_system *sys, const char *parent, const char *name,
		     struct task_cgroup **ret, struct cd_error *err)
{
	struct task_cgroup *cg;
	bool any = false;
	int r;

	if (cg_name_validate(parent, true) < 0 || cg_name_validate(name, false) < 0)
		return cd_error_set(err, -EINVAL, "invalid cgroup name \"%s/%s\"", parent, name);
	cg = task_cgroup_alloc(sys, parent, name);
	if (!cg)
		return -ENOMEM;
	r = open_hier_dirs(cg);
	for (int h = 0; h < _CG_HIER_MAX; h++)
		any = any || cg->fd[h] >= 0;
	if (r == 0 && !any)
		r = cd_error_set(err, -ENOENT, "cgroup %s does not exist", cg->name);
	if (r < 0) {
		task_cgroup_free(cg);
		return r;
	}
	*ret = cg;
	return 0;
}

int task_cgroup_attach(const struct task_cgroup *cg, pid_t pid, bool skip_unified)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d", (int)pid);
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		int r;

		if (cg->fd[h] < 0 || (h == CG_UNIFIED && skip_unified) ||
		    (h != CG_UNIFIED && v1_is_duplicate(cg->sys, h)))
			continue;
		r = write_at(cg->fd[h], "cgroup.procs", buf);
		if (r < 0)
			return r;
	}
	return 0;
}

int task_cgroup_open_v1_tasks(const struct task_cgroup *cg, int *fds, size_t max)
{
	size_t n = 0;

	for (int h = CG_V1_MEMORY; h < _CG_HIER_MAX; h++) {
		int fd;

		if (cg->fd[h] < 0 || v1_is_duplicate(cg->sys, h))
			continue;
		if (n >= max) {
			fd = -ENOBUFS;
			goto fail;
		}
		fd = openat(cg->fd[h], "tasks", O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			fd = -errno;
			goto fail;
		}
		fds[n++] = fd;
		continue;
fail:
		while (n > 0)
			close(fds[--n]);
		return fd;
	}
	return (int)n;
}

static int first_procs_fd(const struct task_cgroup *cg)
{
	for (int h = 0; h < _CG_HIER_MAX; h++)
		if (cg->fd[h] >= 0)
			return cg->fd[h];
	return -ENOENT;
}

int task_cgroup_is_empty(const struct task_cgroup *cg)
{
	_cleanup_free_ char *s = NULL;
	uint64_t populated;
	int fd, r;

	if (cg->fd[CG_UNIFIED] >= 0 &&
	    read_key_at(cg->fd[CG_UNIFIED], "cgroup.events", "populated", &populated) == 0) {
		if (populated)
			return 0;
		if (cg->sys->layout == CG_LAYOUT_V2)
			return 1;
	}
	/* hybrid: processes attached to v1 only (fallback launches) still count */
	for (int h = CG_V1_MEMORY; h < _CG_HIER_MAX; h++) {
		if (cg->fd[h] < 0)
			continue;
		r = fs_read_file_at(cg->fd[h], "cgroup.procs", 1 << 20, &s, NULL);
		if (r < 0)
			return r;
		return s[0] == '\0';
	}
	fd = first_procs_fd(cg);
	if (fd < 0)
		return fd;
	r = fs_read_file_at(fd, "cgroup.procs", 1 << 20, &s, NULL);
	if (r < 0)
		return r;
	return s[0] == '\0';
}

/* One pass of SIGKILL over cgroup.procs of hierarchy fd. Returns how many were signalled. */
static int kill_procs(int fd)
{
	_cleanup_free_ char *s = NULL;
	int r, n = 0;

	r = fs_read_file_at(fd, "cgroup.procs", 1 << 22, &s, NULL);
	if (r < 0)
		return r;
	for (char *p = s, *end; *p; p = end) {
		long pid = strtol(p, &end, 10);

		if (end == p)
			break;
		if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
			n++;
		while (*end == '\n')
			end++;
	}
	return n;
}

static int v1_freeze(const struct task_cgroup *cg, bool freeze)
{
	int fd = cg->fd[CG_V1_FREEZER];

	if (fd < 0)
		return -ENOENT;
	return write_at(fd, "freezer.state", freeze ? "FROZEN" : "THAWED");
}

int task_cgroup_kill(const struct task_cgroup *cg, uint64_t timeout_usec)
{
	usec_t deadline = clock_mono_usec() + timeout_usec, sleep = 200;
	bool use_kill_file = cg->fd[CG_UNIFIED] >= 0 &&
			     file_exists_at(cg->fd[CG_UNIFIED], "cgroup.kill");
	int r;

	/* the common case at cleanup: everything already exited */
	r = task_cgroup_is_empty(cg);
	if (r != 0)
		return r < 0 ? r : 0;
	for (unsigned round = 0;; round++) {
		if (use_kill_file) {
			r = write_at(cg->fd[CG_UNIFIED], "cgroup.kill", "1");
			if (r < 0)
				return r;
		}
		/* v1 (and, from the second round on, hybrid tasks attached to v1 only): freeze so
		 * nothing forks while we kill, then thaw so SIGKILL is acted upon */
		for (int h = CG_V1_MEMORY; h < _CG_HIER_MAX && !(use_kill_file && round == 0);
		     h++) {
			if (cg->fd[h] < 0 || v1_is_duplicate(cg->sys, h))
				continue;
			bool frozen = v1_freeze(cg, true) == 0;
			r = kill_procs(cg->fd[h]);
			if (frozen)
				(void)v1_freeze(cg, false);
			if (r < 0 && r != -ENOENT)
				return r;
			break; /* every v1 hierarchy holds the same processes */
		}
		if (!use_kill_file && cg->fd[CG_UNIFIED] >= 0 && cg->sys->layout == CG_LAYOUT_V2) {
			r = kill_procs(cg->fd[CG_UNIFIED]);
			if (r < 0)
				return r;
		}
		r = task_cgroup_is_empty(cg);
		if (r != 0)
			return r < 0 ? r : 0;
		if (clock_mono_usec() >= deadline)
			return -ETIMEDOUT;
		clock_sleep_usec(sleep);
		sleep = MIN(sleep * 2, 20000);
	}
}

int cg_parent_remove(const struct cg_system *sys, const char *parent)
{
	int n = 0;

	if (cg_name_validate(parent, true) < 0)
		return -EINVAL;
	for (int h = 0; h < _CG_HIER_MAX; h++)
		/* no retry on EBUSY (unlike a task's cgroup): busy means in use, leave it */
		if (hier_is_distinct(sys, h) && unlinkat(sys->fd[h], parent, AT_REMOVEDIR) == 0)
			n++;
	return n;
}

int task_cgroup_destroy(struct task_cgroup *cg, struct cd_error *err)
{
	for (int h = 0; h < _CG_HIER_MAX; h++)
		cg->fd[h] = safe_close(cg->fd[h]);
	return destroy_all(cg->sys, cg->name, err);
}

int task_cgroup_stats(const struct task_cgroup *cg, struct cg_stats *ret)
{
	struct cg_stats st = { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX };
	int u = cg->fd[CG_UNIFIED], fd;
	uint64_t v;

	if ((fd = cg->fd[CG_V1_MEMORY]) >= 0) {
		(void)read_u64_at(fd, "memory.usage_in_bytes", &st.memory_current);
		(void)read_u64_at(fd, "memory.max_usage_in_bytes", &st.memory_peak);
		(void)read_key_at(fd, "memory.oom_control", "oom_kill", &st.oom_kills);
	} else if (u >= 0) {
		(void)read_u64_at(u, "memory.current", &st.memory_current);
		(void)read_u64_at(u, "memory.peak", &st.memory_peak);
		(void)read_key_at(u, "memory.events", "oom_kill", &st.oom_kills);
	}
	if ((fd = cg->fd[CG_V1_CPUACCT]) >= 0)
		(void)read_u64_at(fd, "cpuacct.usage", &st.cpu_usage_ns);
	else if (u >= 0 && read_key_at(u, "cpu.stat", "usage_usec", &v) == 0)
		st.cpu_usage_ns = v * 1000;
	if ((fd = cg->fd[CG_V1_PIDS]) >= 0)
		(void)read_u64_at(fd, "pids.current", &st.pids_current);
	else if (u >= 0)
		(void)read_u64_at(u, "pids.current", &st.pids_current);
	*ret = st;
	return 0;
}

int task_cgroup_oom_watch(const struct task_cgroup *cg, int *ret_fd, bool *ret_is_eventfd)
{
	int fd;

	if (cg->fd[CG_V1_MEMORY] >= 0) {
		_cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		_cleanup_close_ int ofd = -EBADF;
		char buf[64];
		int r;

		if (efd < 0)
			return -errno;
		ofd = openat(cg->fd[CG_V1_MEMORY], "memory.oom_control", O_RDONLY | O_CLOEXEC);
		if (ofd < 0)
			return -errno;
		snprintf(buf, sizeof(buf), "%d %d", efd, ofd);
		r = write_at(cg->fd[CG_V1_MEMORY], "cgroup.event_control", buf);
		if (r < 0)
			return r;
		*ret_fd = TAKE_FD(efd);
		*ret_is_eventfd = true;
		return 0;
	}
	if (cg->fd[CG_UNIFIED] < 0)
		return -EOPNOTSUPP;
	fd = openat(cg->fd[CG_UNIFIED], "memory.events", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -EOPNOTSUPP : -errno;
	*ret_fd = fd;
	*ret_is_eventfd = false;
	return 0;
}

static int strv_push_unique(char ***v, size_t *n, const char *s)
{
	char **nv;

	for (size_t i = 0; i < *n; i++)
		if (streq((*v)[i], s))
			return 0;
	nv = realloc(*v, (*n + 2) * sizeof(char *));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strdup(s);
	if (!nv[*n])
		return -ENOMEM;
	nv[++*n] = NULL;
	return 0;
}

int cg_list_children(const struct cg_system *sys, const char *parent, char ***ret)
{
	_cleanup_strv_free_ char **v = NULL;
	size_t n = 0;

	if (cg_name_validate(parent, true) < 0)
		return -EINVAL;
	v = calloc(1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (int h = 0; h < _CG_HIER_MAX; h++) {
		char path[PATH_MAX];
		DIR *d;

		if (!sys->path[h])
			continue;
		snprintf(path, sizeof(path), "%s/%s", sys->path[h], parent);
		d = opendir(path);
		if (!d) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		for (struct dirent *de; (de = readdir(d));) {
			int r;

			if (de->d_type != DT_DIR || de->d_name[0] == '.')
				continue;
			r = strv_push_unique(&v, &n, de->d_name);
			if (r < 0) {
				closedir(d);
				return r;
			}
		}
		closedir(d);
	}
	*ret = TAKE_PTR(v);
	return 0;
}
