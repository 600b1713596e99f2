/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox/launch.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/fs.h"
#include "lib/proc.h"
#include "lib/str.h"
#include "sandbox/initloop.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* The task's root is assembled on a tmpfs mounted over /tmp inside the task's own mount
 * namespace (the host's /tmp is untouched), then pivot_root()ed into. */
#define STAGE "/tmp"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_HOST_ENTRIES 16
/* Child path buffers: every configured path is validated shorter than 256 bytes, so STAGE + a
 * path always fits (no truncation to a prefix). Small, because the child runs on a copy of the
 * calling thread's stack. */
#define PATHBUF 512

/* Host top-level entries the task sees read-only (directories bound, symlinks recreated). The
 * rest of the host (/root, /home, /run, /tmp, /mnt, ...) is not visible at all. */
static const char *const host_entries[] = {
	"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "opt", "srv", "var",
};

/* Error record the child writes to the CLOEXEC pipe; one write < PIPE_BUF. */
struct child_error {
	int32_t err;
	char step[44];
};

struct host_entry {
	char name[16];
	char link[256]; /* symlink target, "" for a directory */
};

/* Everything the child needs, prepared by the parent: the child never allocates. */
struct plan {
	const struct sandbox_config *cfg;
	int sync_r, err_w, status_w, status_file;
	int fd_in, fd_out, fd_err;
	int new_cgroupns;
	bool wait_go;  /* the caller still has to finish our cgroup membership or id maps */
	bool wait_net; /* the caller sets up our network (bridge) while we mount */
	bool lo_up;    /* we have a netns of our own whose lo we bring up */
	int init_fd;   /* sandbox-init binary to exec as pid 1, -1 = in-process */
	int v1_tasks[_CG_HIER_MAX]; /* the child enters its v1 hierarchies itself */
	int n_v1_tasks;
	char tmpfs_opts[64];
	const char *work_dir;
	const char *cwd;
	struct host_entry host[MAX_HOST_ENTRIES];
	size_t n_host;
	char *const *argv; /* the command (cfg->argv, or sandbox_exec()'s) */
	char *const *envp;
	const char *path_env;
	const struct sandbox_bpf *bpf; /* cached, NULL = no seccomp */
	int pdeath_pidfd; /* sandbox_exec: SIGKILL the command when this process ends, -1 none */
	int last_cap;
};

/* ---- async-signal-safe helpers for the child ---- */

static size_t s_len(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

/* dst = a + b (b may be NULL), truncated to size. */
static char *s_join(char *dst, size_t size, const char *a, const char *b)
{
	size_t i = 0;

	for (const char *p = a; *p && i + 1 < size; p++)
		dst[i++] = *p;
	for (const char *p = b; p && *p && i + 1 < size; p++)
		dst[i++] = *p;
	dst[i] = '\0';
	return dst;
}

static void s_copy(char *dst, size_t size, const char *src)
{
	s_join(dst, size, src, NULL);
}

static _noreturn_ void child_fail(const struct plan *p, const char *step, int err)
{
	struct child_error ce = { .err = err > 0 ? err : EIO };

	s_copy(ce.step, sizeof(ce.step), step);
	(void)!write(p->err_w, &ce, sizeof(ce));
	_exit(127);
}

static void check(const struct plan *p, int r, const char *step)
{
	if (r < 0)
		child_fail(p, step, errno);
}

static int sys_mount_setattr(int dfd, const char *path, unsigned flags, uint64_t set)
{
	struct mount_attr attr = { .attr_set = set };

	return (int)syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof(attr));
}

/* Bind src onto dst and make the whole subtree read-only, nosuid, nodev. */
static void bind_ro(const struct plan *p, const char *src, const char *dst, const char *step)
{
	check(p, mount(src, dst, NULL, MS_BIND | MS_REC, NULL), step);
	check(p,
	      sys_mount_setattr(AT_FDCWD, dst, AT_RECURSIVE,
				MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV),
	      step);
}

static void touch(const struct plan *p, const char *path, const char *step)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		child_fail(p, step, errno);
	close(fd);
}

/* lo up from inside the task's netns: one ioctl, no netlink socket, no setns() by the caller
 * (libnl sets up bridge mode's veth, address and route from outside). */
static void lo_up(const struct plan *p)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		child_fail(p, "net-lo", errno);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		child_fail(p, "net-lo", errno);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		child_fail(p, "net-lo", errno);
	close(fd);
}

/*
 * /dev on the root tmpfs: the six device nodes are made with mknod (the root tmpfs is the one
 * mount without nodev: it is read-only once assembled, so these stay its only nodes; every
 * writable mount is nodev). Where mknod is refused (a user namespace, no CAP_MKNOD) the host's
 * nodes are bound instead, one mount each.
 */
static void setup_dev(const struct plan *p)
{
	static const struct {
		const char *name;
		unsigned major, minor;
	} nodes[] = { { "null", 1, 3 },	  { "zero", 1, 5 },    { "full", 1, 7 },
		      { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 } };
	static const char *const links[][2] = {
		{ "fd", "/proc/self/fd" },	 { "stdin", "/proc/self/fd/0" },
		{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
		{ "ptmx", "pts/ptmx" },
	};
	char src[64], dst[PATHBUF];
	bool bind = false;
	mode_t umask_old;

	check(p, mkdir(STAGE "/dev", 0755), "mount-dev");
	umask_old = umask(0);
	for (size_t i = 0; i < ARRAY_SIZE(nodes); i++) {
		s_join(dst, sizeof(dst), STAGE "/dev/", nodes[i].name);
		if (!bind &&
		    mknod(dst, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) == 0)
			continue;
		if (!bind && errno != EPERM)
			child_fail(p, "mount-dev", errno);
		bind = true;
		s_join(src, sizeof(src), "/dev/", nodes[i].name);
		touch(p, dst, "mount-dev");
		check(p, mount(src, dst, NULL, MS_BIND, NULL), "mount-dev");
	}
	umask(umask_old);
	for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
		s_join(dst, sizeof(dst), STAGE "/dev/", links[i][0]);
		check(p, symlink(links[i][1], dst), "mount-dev");
	}
	check(p, mkdir(STAGE "/dev/shm", 01777), "mount-dev");
	check(p, chmod(STAGE "/dev/shm", 01777), "mount-dev");
	check(p, mkdir(STAGE "/dev/pts", 0755), "mount-dev");
	check(p, mkdir(STAGE "/dev/mqueue", 0755), "mount-dev");
}

static void setup_proc(const struct plan *p)
{
	static const char *const hide[] = { "kcore",	   "keys",	    "timer_list",
					    "sched_debug", "sysrq-trigger", "latency_stats",
					    "config.gz" };
	static const char *const ro[] = { "sys", "irq", "bus", "fs", "acpi", "scsi" };
	char dst[PATHBUF];

	check(p, mkdir(STAGE "/proc", 0555), "mount-proc");
	check(p, mount("proc", STAGE "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
	      "mount-proc");
	/* entries this kernel does not have are skipped (ENOENT from the bind itself) */
	for (size_t i = 0; i < ARRAY_SIZE(hide); i++) {
		s_join(dst, sizeof(dst), STAGE "/proc/", hide[i]);
		if (mount("/dev/null", dst, NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
			child_fail(p, "mount-proc", errno);
	}
	for (size_t i = 0; i < ARRAY_SIZE(ro); i++) {
		s_join(dst, sizeof(dst), STAGE "/proc/", ro[i]);
		if (mount(dst, dst, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno != ENOENT)
				child_fail(p, "mount-proc", errno);
			continue;
		}
		check(p,
		      sys_mount_setattr(AT_FDCWD, dst, AT_RECURSIVE,
					MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV),
		      "mount-proc");
	}
}

static void setup_masks(const struct plan *p)
{
	const char *const *m = p->cfg->mask_paths;
	char dst[PATHBUF];
	struct stat st;

	for (; m && *m; m++) {
		s_join(dst, sizeof(dst), STAGE, *m);
		if (lstat(dst, &st) < 0)
			continue; /* not visible in the task anyway */
		if (S_ISDIR(st.st_mode)) {
			check(p,
			      mount("tmpfs", dst, "tmpfs",
				    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
				    "size=4k,mode=000"),
			      "mask");
		} else {
			check(p, mount("/dev/null", dst, NULL, MS_BIND, NULL), "mask");
			check(p,
			      sys_mount_setattr(AT_FDCWD, dst, 0,
						MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
							MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC),
			      "mask");
		}
	}
}

/* A writable directory of the root tmpfs: bound onto itself so it stays writable when the root
 * becomes read-only. */
static void writable_dir(const struct plan *p, const char *dst, mode_t mode, uid_t uid, gid_t gid)
{
	if (mkdir(dst, mode) < 0 && errno != EEXIST)
		child_fail(p, "mount-writable", errno);
	check(p, chmod(dst, mode), "mount-writable");
	check(p, chown(dst, uid, gid), "mount-writable");
	check(p, mount(dst, dst, NULL, MS_BIND, NULL), "mount-writable");
	/* the root tmpfs is not nodev (it holds /dev's nodes): its writable parts are */
	check(p, sys_mount_setattr(AT_FDCWD, dst, 0, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV),
	      "mount-writable");
}

static void child_setup_fs(const struct plan *p)
{
	const struct sandbox_config *cfg = p->cfg;
	char src[PATHBUF], dst[PATHBUF];
	int app_tree = -1;

	check(p, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "mount-private");
	if (cfg->app_dir) {
		/* clone the artifact tree first: it may live under the host's /tmp, which the
		 * stage covers next. By path: a mount of the caller's namespace cannot be cloned */
		app_tree = (int)syscall(SYS_open_tree, AT_FDCWD, cfg->app_dir,
					OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
		check(p, app_tree, "mount-app");
		check(p,
		      sys_mount_setattr(app_tree, "", AT_EMPTY_PATH | AT_RECURSIVE,
					MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV),
		      "mount-app");
	}
	check(p, mount("tmpfs", STAGE, "tmpfs", MS_NOSUID, p->tmpfs_opts), "mount-root");

	for (size_t i = 0; i < p->n_host; i++) {
		const struct host_entry *h = &p->host[i];

		s_join(dst, sizeof(dst), STAGE "/", h->name);
		if (h->link[0]) {
			check(p, symlink(h->link, dst), "mount-host");
			continue;
		}
		check(p, mkdir(dst, 0755), "mount-host");
		s_join(src, sizeof(src), "/", h->name);
		bind_ro(p, src, dst, "mount-host");
	}
	if (app_tree >= 0) {
		check(p, mkdir(STAGE "/app", 0755), "mount-app");
		check(p,
		      (int)syscall(SYS_move_mount, app_tree, "", AT_FDCWD, STAGE "/app",
				   MOVE_MOUNT_F_EMPTY_PATH),
		      "mount-app");
		close(app_tree);
	}
	setup_dev(p);
	setup_proc(p);
	check(p, mkdir(STAGE "/sys", 0555), "mount-sys");
	if (mount("sysfs", STAGE "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) < 0)
		/* sysfs refuses a mount from a netns we do not own (host mode in a user ns) */
		bind_ro(p, "/sys", STAGE "/sys", "mount-sys");
	check(p, mkdir(STAGE "/run", 0755), "mount-root");

	writable_dir(p, STAGE "/tmp", 01777, 0, 0);
	writable_dir(p, STAGE "/dev/shm", 01777, 0, 0);
	s_join(dst, sizeof(dst), STAGE, p->work_dir);
	writable_dir(p, dst, 0755, cfg->uid, cfg->gid);
	setup_masks(p);

	/* everything else of the root tmpfs (the skeleton) is read-only */
	check(p, sys_mount_setattr(AT_FDCWD, STAGE, 0, MOUNT_ATTR_RDONLY), "mount-root");
	check(p, chdir(STAGE), "pivot-root");
	check(p, (int)syscall(SYS_pivot_root, ".", "."), "pivot-root");
	check(p, umount2(".", MNT_DETACH), "pivot-root");
	check(p, chdir("/"), "pivot-root");
}

static void drop_caps(const struct plan *p)
{
	uint64_t keep = p->cfg->caps;

	for (int c = 0; c <= p->last_cap; c++)
		if (!(keep & (UINT64_C(1) << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
		    errno != EINVAL)
			child_fail(p, "caps", errno);
}

static void set_caps(const struct plan *p)
{
	uint64_t keep = p->cfg->caps;
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)keep, (uint32_t)keep, (uint32_t)keep },
		{ (uint32_t)(keep >> 32), (uint32_t)(keep >> 32), (uint32_t)(keep >> 32) },
	};

	check(p, (int)syscall(SYS_capset, &h, d), "caps");
	check(p, prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "caps");
	if (p->cfg->uid != 0)
		/* a non-root command keeps its capabilities across exec only as ambient ones */
		for (int c = 0; c <= p->last_cap; c++)
			if (keep & (UINT64_C(1) << c))
				check(p, prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0),
				      "caps");
}

static int move_fd_high(const struct plan *p, int fd)
{
	int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);

	if (n < 0)
		child_fail(p, "stdio", errno);
	return n;
}

/* The command: credentials, limits, seccomp, exec. Never returns. */
static _noreturn_ void child_exec(const struct plan *p)
{
	const struct sandbox_config *cfg = p->cfg;
	const char *file = p->argv[0];
	sigset_t none;
	int in, out, err, last_errno = ENOENT;

	check(p, setsid(), "setsid");
	in = move_fd_high(p, p->fd_in);
	out = move_fd_high(p, p->fd_out);
	err = move_fd_high(p, p->fd_err);
	check(p, dup2(in, 0), "stdio");
	check(p, dup2(out, 1), "stdio");
	check(p, dup2(err, 2), "stdio");
	/* every other fd (the error pipe included) goes away at exec */
	check(p, (int)syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC), "stdio");
	check(p, chdir(p->cwd), "chdir");
	for (size_t i = 0; i < cfg->n_rlimits; i++) {
		struct rlimit rl = { cfg->rlimits[i].cur, cfg->rlimits[i].max };

		check(p, setrlimit(cfg->rlimits[i].resource, &rl), "rlimit");
	}
	drop_caps(p);
	if (cfg->caps && cfg->uid != 0)
		check(p, prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "caps");
	check(p, (int)syscall(SYS_setgroups, cfg->n_groups, cfg->groups), "setgroups");
	check(p, (int)syscall(SYS_setresgid, cfg->gid, cfg->gid, cfg->gid), "setgid");
	check(p, (int)syscall(SYS_setresuid, cfg->uid, cfg->uid, cfg->uid), "setuid");
	set_caps(p);
	if (p->pdeath_pidfd >= 0) {
		struct pollfd pfd = { .fd = p->pdeath_pidfd, .events = POLLIN };

		/* after setresuid, which clears it; our parent is outside our pid namespace
		 * (getppid() is 0), so its pidfd closes the race */
		check(p, prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "pdeathsig");
		if (poll(&pfd, 1, 0) != 0)
			_exit(1);
	}
	check(p, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no-new-privs");
	if (p->bpf) {
		int r = sandbox_seccomp_load(p->bpf);

		if (r < 0)
			child_fail(p, "seccomp", -r);
	}
	sigemptyset(&none);
	check(p, sigprocmask(SIG_SETMASK, &none, NULL), "sigmask");

	if (strchr(file, '/')) {
		execve(file, p->argv, p->envp);
		child_fail(p, "exec", errno);
	}
	/* PATH search without malloc (execvpe may allocate) */
	for (const char *dir = p->path_env; dir;) {
		const char *colon = strchr(dir, ':');
		size_t dlen = colon ? (size_t)(colon - dir) : s_len(dir);
		char path[PATH_MAX];

		if (dlen + 1 + s_len(file) < sizeof(path)) {
			memcpy(path, dlen ? dir : ".", dlen ? dlen : 1);
			path[dlen ? dlen : 1] = '/';
			s_copy(path + (dlen ? dlen : 1) + 1, sizeof(path) - dlen - 2, file);
			execve(path, p->argv, p->envp);
			if (errno == EACCES)
				last_errno = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR)
				child_fail(p, "exec", errno);
		}
		dir = colon ? colon + 1 : NULL;
	}
	child_fail(p, "exec", last_errno);
}

/* Close every fd but keep[]; async-signal-safe. */
static void close_all_except(const struct plan *p, int *keep, size_t n)
{
	unsigned next = 0;

	for (size_t i = 1; i < n; i++) /* insertion sort: no libc call that could allocate */
		for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int tmp = keep[j];

			keep[j] = keep[j - 1];
			keep[j - 1] = tmp;
		}
	for (size_t i = 0; i < n; i++) {
		if (keep[i] < 0 || (unsigned)keep[i] < next)
			continue;
		if ((unsigned)keep[i] > next)
			check(p, (int)syscall(SYS_close_range, next, (unsigned)keep[i] - 1, 0),
			      "close-fds");
		next = (unsigned)keep[i] + 1;
	}
	check(p, (int)syscall(SYS_close_range, next, ~0U, 0), "close-fds");
}

/* Become the sandbox-init binary (through the fd opened by the caller: its path is not in our
 * view), so the long-lived init holds no copy of the caller's memory. The status fds must
 * survive the exec; pending signals and the blocked mask do. On failure we stay in-process. */
static void exec_init(const struct plan *p, pid_t cmd)
{
	char a[3][24];
	char *argv[] = { "sandbox-init", sandbox_fmt_int(a[0] + sizeof(a[0]), cmd),
			 sandbox_fmt_int(a[1] + sizeof(a[1]), p->status_w),
			 sandbox_fmt_int(a[2] + sizeof(a[2]), p->status_file), NULL };
	char *envp[] = { NULL };

	if (fcntl(p->status_w, F_SETFD, 0) < 0 ||
	    (p->status_file >= 0 && fcntl(p->status_file, F_SETFD, 0) < 0))
		return;
	(void)syscall(SYS_execveat, p->init_fd, "", argv, envp, AT_EMPTY_PATH);
	(void)fcntl(p->status_w, F_SETFD, FD_CLOEXEC);
}

/* Write value to /proc/self/oom_score_adj. Async-signal-safe; failure (no CAP_SYS_RESOURCE, as
 * in a user namespace) only loses the protection. */
static void oom_adj_set(const char *value)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	(void)!write(fd, value, s_len(value));
	close(fd);
}

/*
 * The command's stack while it shares the init's memory: it is cloned with CLONE_VM |
 * CLONE_VFORK (as posix_spawn does), so no page table is copied and no copy-on-write fault taken
 * for a process that execs right away, and the init sleeps until that exec (or the command's
 * early exit). Every init is a separate copy of the caller's memory, so concurrent launches never
 * share it. The command runs with every signal at its default action (child_main reset them)
 * and blocked until just before exec, writes nothing but this stack, and calls only
 * async-signal-safe functions: the init's memory is as it left it when it resumes.
 */
static char cmd_stack[64 << 10] __attribute__((aligned(64)));

static int cmd_main(void *arg)
{
	const struct plan *p = arg;

	close(p->status_w);
	if (p->status_file >= 0)
		close(p->status_file);
	child_exec(p);
}

static _noreturn_ void child_main(const struct plan *p)
{
	int keep[8 + _CG_HIER_MAX] = { p->sync_r, p->err_w,  p->status_w, p->status_file,
				       p->fd_in,  p->fd_out, p->fd_err,	  p->init_fd };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	char c;
	pid_t cmd;

	/* the caller's handlers mean nothing here; signals stay blocked until exec / sigwait */
	for (int sig = 1; sig < _NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &dfl, NULL);
	for (int i = 0; i < _CG_HIER_MAX; i++)
		keep[8 + i] = i < p->n_v1_tasks ? p->v1_tasks[i] : -1;
	close_all_except(p, keep, ARRAY_SIZE(keep));
	for (int i = 0; i < p->n_v1_tasks; i++) {
		if (write(p->v1_tasks[i], "0", 1) != 1)
			child_fail(p, "cgroup-attach", errno);
		close(p->v1_tasks[i]);
	}
	/* "g": the caller finished our cgroup membership (unified tree on fallback paths) and
	 * the user namespace's id maps. Not needed after clone3 into the cgroup without userns. */
	if (p->wait_go && read(p->sync_r, &c, 1) != 1)
		_exit(1); /* the caller gave up: nothing to report to */
	if (p->cfg->userns_size) {
		/* our ids did not change when the maps were written: become the mapped root */
		check(p, (int)syscall(SYS_setresgid, 0, 0, 0), "userns");
		check(p, (int)syscall(SYS_setresuid, 0, 0, 0), "userns");
	}
	if (p->new_cgroupns)
		/* after the caller moved us into every hierarchy: the task's cgroup is its root */
		check(p, unshare(CLONE_NEWCGROUP), "cgroupns");
	check(p, sethostname(p->cfg->task_id, s_len(p->cfg->task_id)), "hostname");
	if (p->lo_up)
		lo_up(p);
	child_setup_fs(p);
	/* "n": the caller finished the network (bridge, set up in parallel with our mounts) */
	if (p->wait_net && read(p->sync_r, &c, 1) != 1)
		_exit(1);
	close(p->sync_r);
	if (p->cfg->no_init)
		child_exec(p);

	/* returns once the command exec'd (or died trying: its error is in the pipe) */
	cmd = clone(cmd_main, cmd_stack + sizeof(cmd_stack), CLONE_VM | CLONE_VFORK | SIGCHLD,
		    (void *)p);
	if (cmd < 0)
		child_fail(p, "fork", errno);
	/* the OOM killer must never pick the init: its status record is how the caller learns
	 * what happened. Set after the command's exec, which keeps the inherited score: while
	 * two processes share an mm the kernel applies a write to both. */
	oom_adj_set("-1000");
	/* the command holds the error pipe until exec; the init lets go of everything else */
	close(p->err_w);
	close(p->fd_in);
	close(p->fd_out);
	close(p->fd_err);
	if (p->init_fd >= 0)
		exec_init(p, cmd);
	sandbox_init_loop(cmd, p->status_w, p->status_file);
}

/* ---- parent side ---- */

void sandbox_config_init(struct sandbox_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->net = SANDBOX_NET_NONE;
	cfg->stdin_fd = cfg->stdout_fd = cfg->stderr_fd = cfg->status_fd = -1;
}

static bool abs_path_ok(const char *p)
{
	return p && p[0] == '/' && strlen(p) < 256 && !strstr(p, "/../") && !endswith(p, "/..");
}

int sandbox_config_validate(const struct sandbox_config *cfg, struct cd_error *err)
{
	int r = 0;

	if (!cfg->task_id || strlen(cfg->task_id) > SANDBOX_TASK_ID_MAX ||
	    cg_name_validate(cfg->task_id, false) < 0)
		r = cd_error_set(err, -EINVAL, "invalid task id \"%s\" (1-64 of [A-Za-z0-9._:@-])",
				 cfg->task_id ? cfg->task_id : "");
	if (cfg->cgroup_parent && cg_name_validate(cfg->cgroup_parent, true) < 0)
		r = cd_error_set(err, -EINVAL, "invalid cgroup parent \"%s\"", cfg->cgroup_parent);
	if (!cfg->argv || !cfg->argv[0] || !cfg->argv[0][0])
		r = cd_error_set(err, -EINVAL, "missing command");
	else if (strlen(cfg->argv[0]) >= PATH_MAX)
		r = cd_error_set(err, -ENAMETOOLONG, "command path too long");
	if (cg_limits_validate(&cfg->limits, err) < 0)
		r = -EINVAL;
	if (cfg->work_dir && (!abs_path_ok(cfg->work_dir) || streq(cfg->work_dir, "/") ||
			      strchr(cfg->work_dir + 1, '/') || streq(cfg->work_dir, "/app") ||
			      streq(cfg->work_dir, "/tmp") || streq(cfg->work_dir, "/proc") ||
			      streq(cfg->work_dir, "/dev") || streq(cfg->work_dir, "/sys")))
		r = cd_error_set(
			err, -EINVAL,
			"invalid work dir \"%s\" (one new top-level directory, like /task)",
			cfg->work_dir);
	for (size_t i = 0; cfg->work_dir && i < ARRAY_SIZE(host_entries); i++)
		if (streq(cfg->work_dir + 1, host_entries[i]))
			r = cd_error_set(err, -EINVAL, "work dir \"%s\" would hide the host's",
					 cfg->work_dir);
	if (cfg->cwd && !abs_path_ok(cfg->cwd))
		r = cd_error_set(err, -EINVAL, "invalid working directory \"%s\"", cfg->cwd);
	if (cfg->storage_bytes && cfg->storage_bytes < (1ULL << 20))
		r = cd_error_set(err, -EINVAL, "storage %" PRIu64 " bytes is below 1 MiB",
				 cfg->storage_bytes);
	if (cfg->net != SANDBOX_NET_NONE && cfg->net != SANDBOX_NET_HOST &&
	    cfg->net != SANDBOX_NET_BRIDGE)
		r = cd_error_set(err, -EINVAL, "invalid network mode %d", (int)cfg->net);
	if (cfg->n_groups > 64 || (cfg->n_groups && !cfg->groups))
		r = cd_error_set(err, -EINVAL, "invalid supplementary groups");
	if (cfg->userns_size) {
		if (cfg->userns_base == 0 ||
		    (uint64_t)cfg->userns_base + cfg->userns_size > UINT32_MAX)
			r = cd_error_set(err, -EINVAL, "invalid user namespace range %u+%u",
					 (unsigned)cfg->userns_base, cfg->userns_size);
		if (cfg->uid >= cfg->userns_size || cfg->gid >= cfg->userns_size)
			r = cd_error_set(err, -EINVAL,
					 "uid/gid %u/%u outside the user namespace's %u ids",
					 (unsigned)cfg->uid, (unsigned)cfg->gid, cfg->userns_size);
		for (size_t i = 0; i < cfg->n_groups && cfg->groups; i++)
			if (cfg->groups[i] >= cfg->userns_size)
				r = cd_error_set(err, -EINVAL,
						 "group %u outside the user namespace",
						 (unsigned)cfg->groups[i]);
	}
	if (cfg->n_rlimits > SANDBOX_MAX_RLIMITS || (cfg->n_rlimits && !cfg->rlimits))
		r = cd_error_set(err, -EINVAL, "invalid rlimits");
	for (size_t i = 0; i < cfg->n_rlimits && cfg->rlimits; i++)
		if (cfg->rlimits[i].resource < 0 || cfg->rlimits[i].resource >= RLIM_NLIMITS ||
		    cfg->rlimits[i].cur > cfg->rlimits[i].max)
			r = cd_error_set(err, -EINVAL, "invalid rlimit #%zu", i);
	if (cfg->init_binary) {
		if (!abs_path_ok(cfg->init_binary))
			r = cd_error_set(err, -EINVAL, "invalid init binary \"%s\"",
					 cfg->init_binary);
		else if (access(cfg->init_binary, X_OK) < 0)
			r = cd_error_set(err, -errno, "init binary %s: %m", cfg->init_binary);
	}
	if (cfg->caps >> (CAP_LAST_CAP + 1))
		r = cd_error_set(err, -EINVAL, "unknown capability bits in 0x%" PRIx64, cfg->caps);
	if (cfg->mask_paths) {
		size_t n = 0;

		for (const char *const *m = cfg->mask_paths; *m; m++, n++)
			if (!abs_path_ok(*m) || streq(*m, "/"))
				r = cd_error_set(err, -EINVAL, "invalid mask path \"%s\"", *m);
		if (n > SANDBOX_MAX_MASKS)
			r = cd_error_set(err, -EINVAL, "too many mask paths (%zu > %d)", n,
					 SANDBOX_MAX_MASKS);
	}
	if (cfg->app_dir) {
		struct stat st;

		if (!abs_path_ok(cfg->app_dir))
			r = cd_error_set(err, -EINVAL, "invalid artifact dir \"%s\"", cfg->app_dir);
		else if (stat(cfg->app_dir, &st) < 0)
			r = cd_error_set(err, -errno, "artifact dir %s: %m", cfg->app_dir);
		else if (!S_ISDIR(st.st_mode))
			r = cd_error_set(err, -ENOTDIR, "artifact dir %s is not a directory",
					 cfg->app_dir);
		else if (access(cfg->app_dir, R_OK | X_OK) < 0)
			r = cd_error_set(err, -errno, "artifact dir %s is not readable: %m",
					 cfg->app_dir);
	}
	return r;
}

static int read_last_cap(void)
{
	_cleanup_free_ char *s = NULL;
	unsigned v;

	if (fs_read_file_at(AT_FDCWD, "/proc/sys/kernel/cap_last_cap", 64, &s, NULL) < 0)
		return CAP_LAST_CAP;
	s[strcspn(s, "\n")] = '\0';
	if (parse_uint(s, 63, &v) < 0)
		return CAP_LAST_CAP;
	return (int)v;
}

static int plan_host_entries(struct plan *p)
{
	for (size_t i = 0; i < ARRAY_SIZE(host_entries); i++) {
		struct host_entry *h = &p->host[p->n_host];
		char path[32];
		struct stat st;

		snprintf(path, sizeof(path), "/%s", host_entries[i]);
		if (lstat(path, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(path, h->link, sizeof(h->link) - 1);

			if (n <= 0 || n >= (ssize_t)sizeof(h->link) - 1)
				continue; /* a target that long is not a distribution's usr merge */
			h->link[n] = '\0';
		} else if (S_ISDIR(st.st_mode)) {
			h->link[0] = '\0';
		} else {
			continue;
		}
		snprintf(h->name, sizeof(h->name), "%s", host_entries[i]);
		p->n_host++;
	}
	return 0;
}

int sandbox_proc_start_time(pid_t pid, uint64_t *ret)
{
	return proc_start_time(pid, ret);
}

/* The child dup2()s the command's stdio onto 0-2: an fd of ours there (a daemon that closed its
 * stdio gets them from pipe2/open) would be overwritten. Moves fd to >= 3; -1 on failure. */
static int fd_above_stdio(int fd)
{
	int high;

	if (fd < 0 || fd > 2)
		return fd;
	high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return high;
}

static void plan_env(struct plan *p, const struct sandbox_config *cfg)
{
	static char *const default_env[] = { "PATH=" DEFAULT_PATH, NULL };

	p->envp = cfg->envp ? cfg->envp : default_env;
	p->path_env = DEFAULT_PATH;
	for (char *const *e = p->envp; *e; e++)
		if (startswith(*e, "PATH="))
			p->path_env = *e + 5;
}

static void plan_release(struct plan *p)
{
	if (p->init_fd >= 0)
		p->init_fd = safe_close(p->init_fd);
	for (int i = 0; i < p->n_v1_tasks; i++)
		safe_close(p->v1_tasks[i]);
	p->n_v1_tasks = 0;
	safe_close(p->sync_r);
	safe_close(p->err_w);
	safe_close(p->status_w);
}

/* Does the child wait for a go byte? Only when the caller still has work for it after the clone:
 * the user namespace's id maps, or a move into the cgroups (no CLONE_INTO_CGROUP, or the
 * benchmark's attach_by_pid). */
static bool child_waits_for_go(const struct sandbox_config *cfg, bool into_cgroup)
{
	return cfg->userns_size || cfg->attach_by_pid || !into_cgroup;
}

struct clone_args_v2 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
		set_tid_size, cgroup;
};

/* clone3 into the cgroup when we can; the documented fallbacks otherwise. Returns pid (0 in
 * the child). */
static pid_t do_clone(uint64_t ns_flags, int cgroup_fd, int *ret_pidfd, bool *ret_into)
{
	struct clone_args_v2 args = {
		.flags = ns_flags | CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)ret_pidfd,
		.exit_signal = SIGCHLD,
	};
	long pid;

	if (cgroup_fd >= 0) {
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)cgroup_fd;
		pid = syscall(SYS_clone3, &args, sizeof(args));
		if (pid >= 0) {
			*ret_into = true;
			return (pid_t)pid;
		}
		if (errno != EINVAL && errno != E2BIG && errno != EOPNOTSUPP && errno != ENOSYS)
			return -1;
		args.flags &= ~CLONE_INTO_CGROUP;
		args.cgroup = 0;
	}
	*ret_into = false;
	pid = syscall(SYS_clone3, &args, sizeof(args.flags) * 8);
	if (pid >= 0 || errno != ENOSYS)
		return (pid_t)pid;
	/* kernel < 5.3: clone(2) returns the pidfd through parent_tid (x86_64 argument order) */
	return (pid_t)syscall(SYS_clone, (unsigned long)(ns_flags | CLONE_PIDFD | SIGCHLD), NULL,
			      ret_pidfd, NULL, 0);
}

static int write_pid(int cgfd, pid_t pid)
{
	char buf[16];
	_cleanup_close_ int fd = openat(cgfd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
	int n;

	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d", (int)pid);
	if (write(fd, buf, (size_t)n) != n)
		return -errno;
	return 0;
}

/* uid_map and gid_map "0 base size": written by us (root outside), so setgroups() stays
 * allowed inside. */
static int write_id_maps(pid_t pid, uid_t base, uint32_t size)
{
	static const char *const files[] = { "uid_map", "gid_map" };
	char path[64], line[64];

	snprintf(line, sizeof(line), "0 %u %u\n", (unsigned)base, size);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_close_ int fd = -EBADF;

		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		if (write(fd, line, strlen(line)) < 0)
			return -errno;
	}
	return 0;
}

static void kill_and_reap(pid_t pid, int pidfd)
{
	if (pidfd >= 0)
		(void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	else if (pid > 0)
		(void)kill(pid, SIGKILL);
	if (pid > 0)
		(void)waitpid(pid, NULL, __WALL);
}

int sandbox_launch(const struct cg_system *sys, const struct sandbox_config *cfg,
		   struct sandbox_task **ret, struct cd_error *err)
{
	usec_t t0 = clock_mono_usec(), phase[4];
	struct plan p = { .cfg = cfg,
			  .sync_r = -EBADF,
			  .err_w = -EBADF,
			  .status_w = -EBADF,
			  .pdeath_pidfd = -1 };
	_cleanup_close_ int sync_w = -EBADF, err_r = -EBADF, status_r = -EBADF, devnull = -EBADF,
			    pidfd = -EBADF;
	struct sandbox_task *t = NULL;
	struct task_cgroup *cg = NULL;
	struct netns_lease lease = { 0 };
	const char *parent = cfg->cgroup_parent ? cfg->cgroup_parent :
						  SANDBOX_DEFAULT_CGROUP_PARENT;
	uint64_t ns_flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
	sigset_t all, old;
	bool into = false;
	int fds[2], r, cgfd;
	pid_t pid;

	r = sandbox_config_validate(cfg, err);
	if (r < 0)
		return r;

	/* ---- prepare everything the child needs ---- */
	p.status_file = cfg->status_fd;
	p.work_dir = cfg->work_dir ? cfg->work_dir : SANDBOX_DEFAULT_WORK_DIR;
	p.cwd = cfg->cwd ? cfg->cwd : p.work_dir;
	snprintf(p.tmpfs_opts, sizeof(p.tmpfs_opts), "size=%llu,mode=0755",
		 (unsigned long long)(cfg->storage_bytes ? cfg->storage_bytes :
							   SANDBOX_DEFAULT_STORAGE_BYTES));
	p.argv = cfg->argv;
	plan_env(&p, cfg);
	p.last_cap = read_last_cap();
	p.init_fd = -1;
	if (cfg->init_binary && !cfg->no_init) {
		p.init_fd = fd_above_stdio(open(cfg->init_binary, O_PATH | O_CLOEXEC));
		if (p.init_fd < 0)
			return cd_error_set(err, -errno, "init binary %s: %m", cfg->init_binary);
	}
	plan_host_entries(&p);
	if (!cfg->no_seccomp) {
		r = sandbox_seccomp_get(&cfg->seccomp, &p.bpf, err);
		if (r < 0)
			goto out;
	}
	if (cfg->stdin_fd < 0 || cfg->stdout_fd < 0 || cfg->stderr_fd < 0) {
		devnull = fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
		if (devnull < 0) {
			r = cd_error_set(err, -errno, "/dev/null: %m");
			goto out;
		}
	}
	p.fd_in = cfg->stdin_fd >= 0 ? cfg->stdin_fd : devnull;
	p.fd_out = cfg->stdout_fd >= 0 ? cfg->stdout_fd : devnull;
	p.fd_err = cfg->stderr_fd >= 0 ? cfg->stderr_fd : devnull;
	/* a socket, so a dead child means EPIPE from send(MSG_NOSIGNAL), never SIGPIPE */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
		goto fail_errno;
	p.sync_r = fd_above_stdio(fds[0]);
	sync_w = fds[1];
	if (pipe2(fds, O_CLOEXEC) < 0)
		goto fail_errno;
	err_r = fds[0];
	p.err_w = fd_above_stdio(fds[1]);
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		goto fail_errno;
	status_r = fds[0];
	p.status_w = fd_above_stdio(fds[1]);
	if (p.sync_r < 0 || p.err_w < 0 || p.status_w < 0) {
		r = cd_error_set(err, -EMFILE, "out of file descriptors");
		goto out;
	}

	phase[0] = clock_mono_usec();
	r = task_cgroup_create(sys, parent, cfg->task_id, &cfg->limits, &cg, err);
	if (r < 0)
		goto out;
	phase[1] = clock_mono_usec();

	if (cfg->net != SANDBOX_NET_HOST)
		ns_flags |= CLONE_NEWNET;
	if (cfg->userns_size)
		ns_flags |= CLONE_NEWUSER;
	p.new_cgroupns = 1;
	if (!cfg->attach_by_pid) {
		r = task_cgroup_open_v1_tasks(cg, p.v1_tasks, ARRAY_SIZE(p.v1_tasks));
		if (r < 0) {
			cd_error_set(err, r, "cannot open the v1 tasks files: %s", strerror(-r));
			goto fail_cgroup;
		}
		p.n_v1_tasks = r;
		for (int i = 0; i < p.n_v1_tasks; i++)
			p.v1_tasks[i] = fd_above_stdio(p.v1_tasks[i]);
	}
	cgfd = cfg->attach_by_pid ? -1 : task_cgroup_fd(cg, CG_UNIFIED);

	/* block everything so the child starts with no handler running on its copied stack */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/* what the child must wait for: clone3 into the cgroup without a user namespace leaves
	 * the caller nothing to do for it but bridge networking */
	p.wait_net = cfg->net == SANDBOX_NET_BRIDGE;
	p.lo_up = cfg->net == SANDBOX_NET_NONE;
	pid = do_clone(ns_flags, cgfd, &pidfd, &into);
	if (pid == 0) {
		p.wait_go = child_waits_for_go(cfg, into);
		child_main(&p);
	}
	r = pid < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	phase[2] = clock_mono_usec();
	if (r < 0) {
		cd_error_set(err, r, "clone: %s", strerror(-r));
		goto fail_cgroup;
	}
	p.sync_r = safe_close(p.sync_r);
	p.err_w = safe_close(p.err_w);
	p.status_w = safe_close(p.status_w);
	if (p.init_fd >= 0)
		p.init_fd = safe_close(p.init_fd);
	for (int i = 0; i < p.n_v1_tasks; i++)
		p.v1_tasks[i] = safe_close(p.v1_tasks[i]);
	p.n_v1_tasks = 0;

	/* ---- the child moved itself into the v1 hierarchies; the unified one is ours to do when
	 * clone3 could not place it there ---- */
	if (cfg->userns_size) {
		r = write_id_maps(pid, cfg->userns_base, cfg->userns_size);
		if (r < 0) {
			cd_error_set(err, r, "cannot write the user namespace maps: %s",
				     strerror(-r));
			goto fail_child;
		}
	}
	if (cfg->attach_by_pid)
		r = task_cgroup_attach(cg, pid, false);
	else if (!into && task_cgroup_fd(cg, CG_UNIFIED) >= 0)
		r = write_pid(task_cgroup_fd(cg, CG_UNIFIED), pid);
	if (r < 0) {
		cd_error_set(err, r, "cannot move the task into its cgroup: %s", strerror(-r));
		goto fail_child;
	}
	if (child_waits_for_go(cfg, into) && send(sync_w, "g", 1, MSG_NOSIGNAL) != 1) {
		r = cd_error_set(err, -errno, "cannot start the task: %m");
		goto fail_child;
	}
	/* bridge networking, while the child builds its file system view (in mode none the child
	 * brings its lo up itself) */
	if (cfg->net == SANDBOX_NET_BRIDGE) {
		r = netns_setup_bridge(pidfd, pid, cfg->task_id, &cfg->bridge, &lease, err);
		if (r < 0)
			goto fail_child;
		if (send(sync_w, "n", 1, MSG_NOSIGNAL) != 1) {
			r = cd_error_set(err, -errno, "cannot start the task: %m");
			goto fail_child;
		}
	}
	sync_w = safe_close(sync_w);

	phase[3] = clock_mono_usec();
	/* ---- EOF: exec happened; a record: errno + step ---- */
	{
		struct child_error ce;
		ssize_t n;

		do
			n = read(err_r, &ce, sizeof(ce));
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			r = cd_error_set(err, -errno, "reading the task's start report: %m");
			goto fail_child;
		}
		if (n > 0) {
			ce.step[sizeof(ce.step) - 1] = '\0';
			if (streq(ce.step, "exec"))
				r = cd_error_set(err, -ce.err, "exec %s: %s (step exec)",
						 cfg->argv[0], strerror(ce.err));
			else
				r = cd_error_set(err, -ce.err, "task setup failed at step %s: %s",
						 ce.step, strerror(ce.err));
			goto fail_child;
		}
	}

	t = calloc(1, sizeof(*t));
	if (!t) {
		r = -ENOMEM;
		goto fail_child;
	}
	t->ident.pid = pid;
	(void)sandbox_proc_start_time(pid, &t->ident.start_time);
	snprintf(t->ident.task_id, sizeof(t->ident.task_id), "%s", cfg->task_id);
	snprintf(t->ident.cgroup_parent, sizeof(t->ident.cgroup_parent), "%s", parent);
	t->ident.net = cfg->net;
	t->ident.lease = lease;
	t->pidfd = TAKE_FD(pidfd);
	(void)task_cgroup_id(cg, &t->cgroup_id);
	t->into_cgroup = into;
	t->is_child = true;
	t->cg = cg;
	t->status_pipe = TAKE_FD(status_r);
	t->launch_usec = clock_mono_usec() - t0;
	t->phase_usec[0] = phase[0] - t0;
	for (int i = 1; i < 4; i++)
		t->phase_usec[i] = phase[i] - phase[i - 1];
	t->phase_usec[4] = t0 + t->launch_usec - phase[3];
	*ret = t;
	plan_release(&p);
	return 0;

fail_errno:
	r = cd_error_set(err, -errno, "pipe: %m");
	goto out;
fail_child:
	kill_and_reap(pid, pidfd);
	/* a parent-side failure (EPIPE, ESRCH) is often the echo of the child's own: prefer it */
	{
		struct child_error ce;

		p.err_w = safe_close(p.err_w);
		if (read(err_r, &ce, sizeof(ce)) == (ssize_t)sizeof(ce)) {
			ce.step[sizeof(ce.step) - 1] = '\0';
			cd_error_reset(err);
			r = cd_error_set(err, -ce.err, "task setup failed at step %s: %s", ce.step,
					 strerror(ce.err));
		}
	}
	(void)netns_teardown(&lease, NULL);
fail_cgroup:
	(void)task_cgroup_kill(cg, 1000000);
	(void)task_cgroup_destroy(cg, NULL);
	task_cgroup_free(cg);
out:
	plan_release(&p);
	return r;
}

int sandbox_status_parse(const char *s, struct sandbox_status *ret)
{
	struct sandbox_status st = { 0 };
	const char *rest;
	char num[16];
	size_t n;
	unsigned v;

	if (!s || !*s)
		return -ENODATA;
	if ((rest = startswith(s, "exited ")))
		st.signaled = false;
	else if ((rest = startswith(s, "signaled ")))
		st.signaled = true;
	else
		return -EINVAL;
	n = strspn(rest, "0123456789");
	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, rest, n);
	num[n] = '\0';
	if (parse_uint(num, st.signaled ? 64 : 255, &v) < 0)
		return -EINVAL;
	st.code = (int)v;
	rest += n;
	if (st.signaled && startswith(rest, " core"))
		st.core_dumped = true;
	*ret = st;
	return 0;
}

int sandbox_status_exit_code(const struct sandbox_status *st)
{
	return st->signaled ? 128 + st->code : st->code;
}

static int status_from_pipe(struct sandbox_task *t, struct sandbox_status *st)
{
	char buf[64];
	ssize_t n;

	if (t->status_pipe < 0)
		return -ENODATA;
	n = read(t->status_pipe, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -ENODATA;
	buf[n] = '\0';
	return sandbox_status_parse(buf, st);
}

static int status_from_file(int fd, struct sandbox_status *st)
{
	char buf[64];
	ssize_t n;

	if (fd < 0)
		return -ENODATA;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -ENODATA;
	buf[n] = '\0';
	return sandbox_status_parse(buf, st);
}

int sandbox_wait(struct sandbox_task *t, uint64_t timeout_usec, int status_fd,
		 struct sandbox_status *ret)
{
	struct pollfd pfd = { .fd = t->pidfd, .events = POLLIN };
	usec_t deadline = timeout_usec == UINT64_MAX ? UINT64_MAX :
						       clock_mono_usec() + timeout_usec;

	if (t->reaped) {
		if (ret)
			*ret = t->status;
		return 1;
	}
	for (;;) {
		usec_t now = clock_mono_usec();
		int ms = deadline == UINT64_MAX ? -1 :
			 now >= deadline	? 0 :
						  (int)MIN((deadline - now + 999) / 1000, INT_MAX);
		int r = poll(&pfd, 1, ms);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return 0;
		break;
	}
	if (t->is_child) {
		siginfo_t si = { 0 };

		if (waitid((idtype_t)P_PIDFD, (id_t)t->pidfd, &si, WEXITED) < 0)
			return -errno;
		if (status_from_pipe(t, &t->status) < 0) {
			/* no record: the init itself was killed, or it is the command (no_init) */
			t->status.signaled = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
			t->status.core_dumped = si.si_code == CLD_DUMPED;
			t->status.code = si.si_status;
		}
	} else {
		int r = status_from_file(status_fd, &t->status);

		if (r < 0)
			return r;
	}
	t->reaped = true;
	if (ret)
		*ret = t->status;
	return 1;
}

int sandbox_signal(struct sandbox_task *t, int sig)
{
	if (t->reaped)
		return -ESRCH;
	if (syscall(SYS_pidfd_send_signal, t->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

int sandbox_stop(struct sandbox_task *t, uint64_t grace_usec)
{
	int r;

	if (!t->reaped) {
		r = sandbox_signal(t, SIGTERM);
		if (r < 0 && r != -ESRCH)
			return r;
		r = sandbox_wait(t, grace_usec, -1, NULL);
		if (r < 0 && r != -ENODATA)
			return r;
	}
	r = task_cgroup_kill(t->cg, 5 * USEC_PER_SEC);
	if (r < 0)
		return r;
	if (!t->reaped && t->is_child) {
		r = sandbox_wait(t, 5 * USEC_PER_SEC, -1, NULL);
		if (r < 0)
			return r;
	}
	return 0;
}

int sandbox_destroy(struct sandbox_task *t, struct cd_error *err)
{
	int r, ret = 0;

	if (!t->cg)
		return 0;
	r = task_cgroup_kill(t->cg, 5 * USEC_PER_SEC);
	if (r < 0)
		ret = cd_error_set(err, r, "cannot empty cgroup %s: %s", task_cgroup_name(t->cg),
				   strerror(-r));
	if (t->is_child && !t->reaped)
		(void)sandbox_wait(t, 5 * USEC_PER_SEC, -1, NULL);
	r = task_cgroup_destroy(t->cg, err);
	if (r < 0 && ret == 0)
		ret = r;
	r = netns_teardown(&t->ident.lease, err);
	if (r < 0 && ret == 0)
		ret = r;
	if (ret == 0)
		memset(&t->ident.lease, 0, sizeof(t->ident.lease));
	return ret;
}

void sandbox_task_free(struct sandbox_task *t)
{
	if (!t)
		return;
	safe_close(t->pidfd);
	safe_close(t->status_pipe);
	task_cgroup_free(t->cg);
	free(t);
}

/* Is pid in the task cgroup? Checked through /proc/<pid>/cgroup (any hierarchy line). */
static bool pid_in_cgroup(pid_t pid, const char *name)
{
	char path[64], want[256];
	_cleanup_free_ char *s = NULL;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if (fs_read_file_at(AT_FDCWD, path, 65536, &s, NULL) < 0)
		return false;
	snprintf(want, sizeof(want), ":/%s\n", name);
	return strstr(s, want) != NULL;
}

int sandbox_adopt(const struct cg_system *sys, const struct sandbox_ident *ident,
		  struct sandbox_task **ret, struct cd_error *err)
{
	_cleanup_close_ int pidfd = -EBADF;
	struct task_cgroup *cg = NULL;
	struct sandbox_task *t;
	uint64_t start;
	int r;

	pidfd = (int)syscall(SYS_pidfd_open, ident->pid, 0);
	if (pidfd < 0)
		return cd_error_set(err, -errno, "task %s: pid %d: %m", ident->task_id,
				    (int)ident->pid);
	/* the pidfd pins the pid: checks below cannot race with pid reuse */
	r = sandbox_proc_start_time(ident->pid, &start);
	if (r < 0 || start != ident->start_time)
		return cd_error_set(err, -ESRCH, "task %s: pid %d is another process now",
				    ident->task_id, (int)ident->pid);
	r = task_cgroup_open(sys, ident->cgroup_parent, ident->task_id, &cg, err);
	if (r < 0)
		return r;
	if (!pid_in_cgroup(ident->pid, task_cgroup_name(cg))) {
		task_cgroup_free(cg);
		return cd_error_set(err, -ESRCH, "task %s: pid %d is not in cgroup %s",
				    ident->task_id, (int)ident->pid, ident->cgroup_parent);
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		task_cgroup_free(cg);
		return -ENOMEM;
	}
	t->ident = *ident;
	t->pidfd = TAKE_FD(pidfd);
	t->status_pipe = -EBADF;
	(void)task_cgroup_id(cg, &t->cgroup_id);
	t->cg = cg;
	*ret = t;
	return 0;
}

int sandbox_gc(const struct cg_system *sys, const char *parent, const char *const *keep,
	       const char *ipam_dir, struct cd_error *err)
{
	_cleanup_strv_free_ char **names = NULL;
	int r, n = 0;

	if (!parent)
		parent = SANDBOX_DEFAULT_CGROUP_PARENT;
	r = cg_list_children(sys, parent, &names);
	if (r < 0)
		return cd_error_set(err, r, "cannot list cgroups under %s: %s", parent,
				    strerror(-r));
	for (char **name = names; *name; name++) {
		struct task_cgroup *cg = NULL;
		bool kept = false;

		for (const char *const *k = keep; k && *k; k++)
			kept = kept || streq(*k, *name);
		if (kept || cg_name_validate(*name, false) < 0)
			continue;
		if (task_cgroup_open(sys, parent, *name, &cg, NULL) < 0)
			continue;
		r = task_cgroup_kill(cg, 5 * USEC_PER_SEC);
		if (r == 0)
			r = task_cgroup_destroy(cg, err);
		task_cgroup_free(cg);
		if (r == 0)
			n++;
	}
	(void)netns_gc(ipam_dir);
	return n;
}

/* ---- running another process inside a running task ---- */

/* The middle process of sandbox_exec(): enters the task, forks the command into its pid
 * namespace, and mirrors the command's end. Never returns. */
static _noreturn_ void exec_child(const struct plan *p, int task_pidfd, int root_fd,
				  unsigned ns_flags)
{
	int keep[6 + _CG_HIER_MAX] = {
		p->err_w, p->fd_in, p->fd_out, p->fd_err, task_pidfd, root_fd
	};
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t set;
	pid_t cmd;
	int st = 0, self;

	for (int sig = 1; sig < _NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &dfl, NULL);
	for (int i = 0; i < _CG_HIER_MAX; i++)
		keep[6 + i] = i < p->n_v1_tasks ? p->v1_tasks[i] : -1;
	close_all_except(p, keep, ARRAY_SIZE(keep));
	for (int i = 0; i < p->n_v1_tasks; i++) {
		if (write(p->v1_tasks[i], "0", 1) != 1)
			child_fail(p, "cgroup-attach", errno);
		close(p->v1_tasks[i]);
	}
	/* every namespace of the task at once; the pid namespace applies to our children */
	check(p, setns(task_pidfd, (int)ns_flags), "setns");
	close(task_pidfd);
	/* setns() put root and cwd at the top of the mount namespace's root mount, which is the
	 * task's pivoted root only when the launcher itself was not chrooted: take the task's root
	 * from the fd opened before (as nsenter(1) does). */
	check(p, fchdir(root_fd), "chroot");
	check(p, chroot("."), "chroot");
	close(root_fd);
	if (p->cfg->userns_size) {
		check(p, (int)syscall(SYS_setresgid, 0, 0, 0), "userns");
		check(p, (int)syscall(SYS_setresuid, 0, 0, 0), "userns");
	}
	self = (int)syscall(SYS_pidfd_open, getpid(), 0);
	check(p, self, "pidfd");
	/* fds 0-2 may be free here and the command dup2()s its stdio over them */
	if (self < 3) {
		int high = fcntl(self, F_DUPFD_CLOEXEC, 3);

		check(p, high, "pidfd");
		close(self);
		self = high;
	}
	cmd = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, 0);
	if (cmd < 0)
		child_fail(p, "fork", errno);
	if (cmd == 0) {
		struct plan q = *p;

		/* a killed middle (probe timeout) takes the command with it (set by child_exec
		 * after the credential change, which clears it) */
		q.pdeath_pidfd = self;
		child_exec(&q);
	}
	close(self);
	close(p->err_w);
	close(p->fd_in);
	close(p->fd_out);
	close(p->fd_err);
	/* forward what the init would forward, but SIGTERM; everything else stays blocked */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < ARRAY_SIZE(sandbox_forwarded_signals); i++)
		sigaddset(&set, sandbox_forwarded_signals[i]);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);

		/* SIGTERM = stop (probe timeout): the command's process group, now */
		if (sig == SIGTERM)
			(void)kill(-cmd, SIGKILL);
		else if (sig > 0 && sig != SIGCHLD)
			(void)kill(cmd, sig);
		if (sig == SIGCHLD && waitpid(cmd, &st, WNOHANG) == cmd)
			break;
	}
	if (WIFSIGNALED(st)) {
		/* not a namespace init: we can die the same way, so the caller sees the signal */
		sigset_t one;

		sigemptyset(&one);
		sigaddset(&one, WTERMSIG(st));
		(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no second core dump */
		(void)kill(getpid(), WTERMSIG(st));
		(void)sigprocmask(SIG_UNBLOCK, &one, NULL);
		_exit(128 + WTERMSIG(st));
	}
	_exit(WEXITSTATUS(st));
}

int sandbox_exec(const struct sandbox_task *t, const struct sandbox_config *cfg, char *const *argv,
		 pid_t *ret_pid, int *ret_pidfd, struct cd_error *err)
{
	struct plan p = { .cfg = cfg,
			  .sync_r = -EBADF,
			  .err_w = -EBADF,
			  .status_w = -EBADF,
			  .status_file = -1,
			  .init_fd = -1,
			  .pdeath_pidfd = -1 };
	_cleanup_close_ int err_r = -EBADF, devnull = -EBADF, pidfd = -EBADF, root_fd = -EBADF;
	unsigned ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID |
			    CLONE_NEWCGROUP;
	struct clone_args_v2 args = { .flags = CLONE_PIDFD, .exit_signal = SIGCHLD };
	struct child_error ce;
	sigset_t all, old;
	int fds[2], r, cgfd;
	ssize_t n;
	pid_t pid;

	if (!argv || !argv[0] || !argv[0][0])
		return cd_error_set(err, -EINVAL, "missing command");
	if (strlen(argv[0]) >= PATH_MAX)
		return cd_error_set(err, -ENAMETOOLONG, "command path too long");
	if (t->reaped || !t->cg)
		return cd_error_set(err, -ESRCH, "task %s is not running", t->ident.task_id);
	if (cfg->net != SANDBOX_NET_HOST)
		ns_flags |= CLONE_NEWNET;
	if (cfg->userns_size)
		ns_flags |= CLONE_NEWUSER;

	p.argv = argv;
	plan_env(&p, cfg);
	p.work_dir = cfg->work_dir ? cfg->work_dir : SANDBOX_DEFAULT_WORK_DIR;
	p.cwd = cfg->cwd ? cfg->cwd : p.work_dir;
	p.last_cap = read_last_cap();
	if (!cfg->no_seccomp) {
		r = sandbox_seccomp_get(&cfg->seccomp, &p.bpf, err);
		if (r < 0)
			return r;
	}
	devnull = fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
	if (devnull < 0)
		return cd_error_set(err, -errno, "/dev/null: %m");
	p.fd_in = cfg->stdin_fd >= 0 ? cfg->stdin_fd : devnull;
	p.fd_out = cfg->stdout_fd >= 0 ? cfg->stdout_fd : devnull;
	p.fd_err = cfg->stderr_fd >= 0 ? cfg->stderr_fd : devnull;
	r = task_cgroup_open_v1_tasks(t->cg, p.v1_tasks, ARRAY_SIZE(p.v1_tasks));
	if (r < 0)
		return cd_error_set(err, r, "cannot open the task's v1 tasks files: %s",
				    strerror(-r));
	p.n_v1_tasks = r;
	for (int i = 0; i < p.n_v1_tasks; i++)
		p.v1_tasks[i] = fd_above_stdio(p.v1_tasks[i]);
	if (pipe2(fds, O_CLOEXEC) < 0) {
		r = cd_error_set(err, -errno, "pipe: %m");
		goto out;
	}
	err_r = fds[0];
	p.err_w = fd_above_stdio(fds[1]);
	if (p.err_w < 0) {
		r = cd_error_set(err, -EMFILE, "out of file descriptors");
		goto out;
	}

	{
		char root[64];

		snprintf(root, sizeof(root), "/proc/%d/root", (int)t->ident.pid);
		root_fd = fd_above_stdio(open(root, O_PATH | O_DIRECTORY | O_CLOEXEC));
		if (root_fd < 0) {
			r = cd_error_set(err, -errno, "%s: %m", root);
			goto out;
		}
	}
	cgfd = task_cgroup_fd(t->cg, CG_UNIFIED);
	if (cgfd >= 0) {
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)cgfd;
	}
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0)
		exec_child(&p, t->pidfd, root_fd, ns_flags);
	r = pid < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		/* NEEDSWORK: no clone(2) fallback here; sandbox_exec needs clone3 (5.3) and
		 * setns() on a pidfd (5.8) */
		cd_error_set(err, r, "clone3: %s", strerror(-r));
		goto out;
	}
	p.err_w = safe_close(p.err_w);
	do
		n = read(err_r, &ce, sizeof(ce));
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		ce.step[sizeof(ce.step) - 1] = '\0';
		kill_and_reap(pid, pidfd);
		if (streq(ce.step, "exec"))
			r = cd_error_set(err, -ce.err, "exec %s: %s (step exec)", argv[0],
					 strerror(ce.err));
		else
			r = cd_error_set(err, -ce.err, "exec in task %s failed at step %s: %s",
					 t->ident.task_id, ce.step, strerror(ce.err));
		goto out;
	}
	*ret_pid = pid;
	*ret_pidfd = TAKE_FD(pidfd);
	r = 0;
out:
	plan_release(&p);
	return r;
}
