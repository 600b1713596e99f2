/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sandbox-run — run one command in a task sandbox, like `systemd-run --scope` or `crun run`:
 * the debug and benchmark front end of sandbox/launch.h. The exit code mirrors the task (code,
 * or 128 + signal); SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 are forwarded to the task.
 * 125 = the sandbox could not be set up, 126 = command not executable, 127 = not found,
 * 2 = usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/id.h"
#include "lib/log.h"
#include "lib/str.h"
#include "sandbox/launch.h"

static const char *const cap_names[] = {
	"chown",
	"dac_override",
	"dac_read_search",
	"fowner",
	"fsetid",
	"kill",
	"setgid",
	"setuid",
	"setpcap",
	"linux_immutable",
	"net_bind_service",
	"net_broadcast",
	"net_admin",
	"net_raw",
	"ipc_lock",
	"ipc_owner",
	"sys_module",
	"sys_rawio",
	"sys_chroot",
	"sys_ptrace",
	"sys_pacct",
	"sys_admin",
	"sys_boot",
	"sys_nice",
	"sys_resource",
	"sys_time",
	"sys_tty_config",
	"mknod",
	"lease",
	"audit_write",
	"audit_control",
	"setfcap",
	"mac_override",
	"mac_admin",
	"syslog",
	"wake_alarm",
	"block_suspend",
	"audit_read",
	"perfmon",
	"bpf",
	"checkpoint_restore",
};

static const struct {
	const char *name;
	int resource;
} rlimit_names[] = {
	{ "NOFILE", RLIMIT_NOFILE }, { "NPROC", RLIMIT_NPROC },	    { "CORE", RLIMIT_CORE },
	{ "FSIZE", RLIMIT_FSIZE },   { "STACK", RLIMIT_STACK },	    { "AS", RLIMIT_AS },
	{ "CPU", RLIMIT_CPU },	     { "MEMLOCK", RLIMIT_MEMLOCK },
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sandbox-run [OPTIONS] -- COMMAND [ARG...]\n"
		"Run COMMAND in a task sandbox (cgroup, namespaces, seccomp, no capabilities).\n\n"
		"  --id ID               task id: hostname and cgroup name (default sbx-<random>)\n"
		"  --cgroup-parent P     cgroup parent in every hierarchy (default %s)\n"
		"  --cgroup-root DIR     cgroup mount root (default %s)\n"
		"  --memory SIZE         memory limit, swap off (e.g. 64M, 1G)\n"
		"  --memory-mb N         same, in MiB\n"
		"  --vcpus X             CPU quota in cpus (e.g. 0.5, 2)\n"
		"  --pids N              maximum number of tasks\n"
		"  --storage SIZE        size of /tmp + work dir + /dev/shm (default 64M)\n"
		"  --net MODE            none (default) | host | bridge\n"
		"  --bridge NAME         host bridge for --net bridge (default %s)\n"
		"  --subnet CIDR         subnet for --net bridge (default %s)\n"
		"  --ipam-dir DIR        address lease dir for --net bridge (default %s)\n"
		"  --isolate             --net bridge without default route (subnet only)\n"
		"  --ro-bind DIR:/app    artifact directory, read-only at /app (--app DIR too)\n"
		"  --work-dir PATH       writable work dir inside (default %s)\n"
		"  --cwd PATH            working directory inside (default: the work dir)\n"
		"  --user UID[:GID]      run the command as UID:GID (default 0:0, no capabilities)\n"
		"  --cap NAME            keep a capability (repeatable; e.g. net_raw)\n"
		"  --userns BASE:SIZE    user namespace: ids 0..SIZE-1 inside are BASE.. outside\n"
		"  --mask PATH           hide a host path (repeatable)\n"
		"  --rlimit RES=CUR[:MAX] e.g. NOFILE=1024:2048 (repeatable)\n"
		"  --env K=V             environment (repeatable; default only PATH)\n"
		"  --status-file FILE    the init writes the final status record there\n"
		"  --no-init             run COMMAND itself as pid 1\n"
		"  --init-binary PATH    pid 1 execs this sandbox-init (default: stays a clone)\n"
		"  --no-seccomp          do not load the default seccomp profile\n"
		"  --timing              print the launch time to stderr\n"
		"  --attach-by-pid       benchmark: move the task into its cgroups by pid (slow)\n"
		"  -h, --help            this help;  --version\n",
		SANDBOX_DEFAULT_CGROUP_PARENT, CG_DEFAULT_ROOT, NETNS_DEFAULT_BRIDGE,
		NETNS_DEFAULT_SUBNET, NETNS_DEFAULT_IPAM_DIR, SANDBOX_DEFAULT_WORK_DIR);
}

static _noreturn_ _printf_(1, 2) void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "sandbox-run: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static int parse_size(const char *s, uint64_t *ret)
{
	char num[32];
	size_t n = strspn(s, "0123456789");
	uint64_t v, mult = 1;

	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	if (parse_u64(num, &v) < 0)
		return -EINVAL;
	if (streq(s + n, "") || streq(s + n, "B"))
		mult = 1;
	else if (streq(s + n, "K") || streq(s + n, "k") || streq(s + n, "KiB"))
		mult = 1ULL << 10;
	else if (streq(s + n, "M") || streq(s + n, "m") || streq(s + n, "MiB"))
		mult = 1ULL << 20;
	else if (streq(s + n, "G") || streq(s + n, "g") || streq(s + n, "GiB"))
		mult = 1ULL << 30;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*ret = v * mult;
	return 0;
}

/* "1.5" cpus → 1500 millicpus, three decimals at most. */
static int parse_vcpus(const char *s, uint32_t *ret)
{
	unsigned whole = 0, frac = 0, digits = 0;
	const char *p = s;

	if (!*p)
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (unsigned)(*p - '0');
		if (whole > 1024)
			return -ERANGE;
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (++digits > 3)
				return -EINVAL;
			frac = frac * 10 + (unsigned)(*p - '0');
		}
		if (digits == 0)
			return -EINVAL;
	}
	if (*p || p == s)
		return -EINVAL;
	while (digits++ < 3)
		frac *= 10;
	*ret = whole * 1000 + frac;
	return *ret ? 0 : -EINVAL;
}

static int parse_cap(const char *s, int *ret)
{
	if (startswith(s, "cap_") || startswith(s, "CAP_"))
		s += 4;
	for (size_t i = 0; i < ARRAY_SIZE(cap_names); i++)
		if (strcasecmp(s, cap_names[i]) == 0) {
			*ret = (int)i;
			return 0;
		}
	return -EINVAL;
}

static int parse_rlimit(const char *s, struct sandbox_rlimit *ret)
{
	const char *eq = strchr(s, '=');
	char name[16], *colon;
	uint64_t cur, max;

	if (!eq || (size_t)(eq - s) >= sizeof(name))
		return -EINVAL;
	memcpy(name, s, eq - s);
	name[eq - s] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(rlimit_names); i++) {
		_cleanup_free_ char *v = NULL;

		if (strcasecmp(name, rlimit_names[i].name) != 0)
			continue;
		v = strdup(eq + 1);
		if (!v)
			return -ENOMEM;
		colon = strchr(v, ':');
		if (colon)
			*colon++ = '\0';
		if (parse_u64(v, &cur) < 0 || (colon && parse_u64(colon, &max) < 0))
			return -EINVAL;
		ret->resource = rlimit_names[i].resource;
		ret->cur = cur;
		ret->max = colon ? max : cur;
		return 0;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	enum {
		OPT_ID = 0x100,
		OPT_PARENT,
		OPT_ROOT,
		OPT_MEMORY,
		OPT_MEMORY_MB,
		OPT_VCPUS,
		OPT_PIDS,
		OPT_STORAGE,
		OPT_NET,
		OPT_BRIDGE,
		OPT_SUBNET,
		OPT_IPAM,
		OPT_RO_BIND,
		OPT_APP,
		OPT_WORK,
		OPT_CWD,
		OPT_USER,
		OPT_CAP,
		OPT_MASK,
		OPT_RLIMIT,
		OPT_ENV,
		OPT_STATUS,
		OPT_NO_INIT,
		OPT_NO_SECCOMP,
		OPT_TIMING,
		OPT_ATTACH_BY_PID,
		OPT_USERNS,
		OPT_ISOLATE,
		OPT_INIT_BINARY,
		OPT_VERSION,
	};
	static const struct option opts[] = {
		{ "id", required_argument, NULL, OPT_ID },
		{ "cgroup-parent", required_argument, NULL, OPT_PARENT },
		{ "cgroup-root", required_argument, NULL, OPT_ROOT },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "memory-mb", required_argument, NULL, OPT_MEMORY_MB },
		{ "vcpus", required_argument, NULL, OPT_VCPUS },
		{ "pids", required_argument, NULL, OPT_PIDS },
		{ "storage", required_argument, NULL, OPT_STORAGE },
		{ "net", required_argument, NULL, OPT_NET },
		{ "bridge", required_argument, NULL, OPT_BRIDGE },
		{ "subnet", required_argument, NULL, OPT_SUBNET },
		{ "ipam-dir", required_argument, NULL, OPT_IPAM },
		{ "ro-bind", required_argument, NULL, OPT_RO_BIND },
		{ "app", required_argument, NULL, OPT_APP },
		{ "work-dir", required_argument, NULL, OPT_WORK },
		{ "cwd", required_argument, NULL, OPT_CWD },
		{ "user", required_argument, NULL, OPT_USER },
		{ "cap", required_argument, NULL, OPT_CAP },
		{ "mask", required_argument, NULL, OPT_MASK },
		{ "rlimit", required_argument, NULL, OPT_RLIMIT },
		{ "env", required_argument, NULL, OPT_ENV },
		{ "status-file", required_argument, NULL, OPT_STATUS },
		{ "no-init", no_argument, NULL, OPT_NO_INIT },
		{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
		{ "timing", no_argument, NULL, OPT_TIMING },
		{ "attach-by-pid", no_argument, NULL, OPT_ATTACH_BY_PID },
		{ "userns", required_argument, NULL, OPT_USERNS },
		{ "isolate", no_argument, NULL, OPT_ISOLATE },
		{ "init-binary", required_argument, NULL, OPT_INIT_BINARY },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{},
	};
	struct sandbox_config cfg;
	const char *masks[SANDBOX_MAX_MASKS + 1] = { 0 };
	struct sandbox_rlimit rlimits[SANDBOX_MAX_RLIMITS];
	char *envs[129] = { 0 };
	size_t n_masks = 0, n_env = 0;
	const char *cg_root = NULL, *status_path = NULL;
	char id_buf[32];
	bool timing = false;
	struct cg_system *sys = NULL;
	struct sandbox_task *t = NULL;
	struct cd_error err = { 0 };
	struct sandbox_status st;
	sigset_t fwd;
	int c, r, sfd, status_fd = -1, code;
	usec_t t_main = clock_mono_usec(), t_launched = 0, t_exited = 0;

	log_open("sandbox-run");
	sandbox_config_init(&cfg);
	opterr = 0; /* one line of our own on a usage error */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		uint64_t v;
		unsigned u;
		int cap;

		switch (c) {
		case OPT_ID:
			cfg.task_id = optarg;
			break;
		case OPT_PARENT:
			cfg.cgroup_parent = optarg;
			break;
		case OPT_ROOT:
			cg_root = optarg;
			break;
		case OPT_MEMORY:
			if (parse_size(optarg, &cfg.limits.memory_bytes) < 0)
				die_usage("invalid --memory \"%s\"", optarg);
			break;
		case OPT_MEMORY_MB:
			if (parse_u64(optarg, &v) < 0 || v > (1ULL << 30))
				die_usage("invalid --memory-mb \"%s\"", optarg);
			cfg.limits.memory_bytes = v << 20;
			break;
		case OPT_VCPUS:
			if (parse_vcpus(optarg, &cfg.limits.cpu_millis) < 0)
				die_usage("invalid --vcpus \"%s\"", optarg);
			break;
		case OPT_PIDS:
			if (parse_u64(optarg, &cfg.limits.pids_max) < 0 || !cfg.limits.pids_max)
				die_usage("invalid --pids \"%s\"", optarg);
			break;
		case OPT_STORAGE:
			if (parse_size(optarg, &cfg.storage_bytes) < 0)
				die_usage("invalid --storage \"%s\"", optarg);
			break;
		case OPT_NET:
			if (netns_mode_from_string(optarg, &cfg.net) < 0)
				die_usage("invalid --net \"%s\" (none|host|bridge)", optarg);
			break;
		case OPT_BRIDGE:
			cfg.bridge.bridge = optarg;
			break;
		case OPT_SUBNET:
			cfg.bridge.subnet = optarg;
			break;
		case OPT_IPAM:
			cfg.bridge.ipam_dir = optarg;
			break;
		case OPT_RO_BIND: {
			char *colon = strrchr(optarg, ':');

			if (!colon || !streq(colon, ":/app"))
				die_usage("invalid --ro-bind \"%s\" (only DIR:/app)", optarg);
			*colon = '\0';
			cfg.app_dir = optarg;
			break;
		}
		case OPT_APP:
			cfg.app_dir = optarg;
			break;
		case OPT_WORK:
			cfg.work_dir = optarg;
			break;
		case OPT_CWD:
			cfg.cwd = optarg;
			break;
		case OPT_USER: {
			char *colon = strchr(optarg, ':');

			if (colon)
				*colon = '\0';
			if (parse_uint(optarg, 0xfffffffe, &u) < 0)
				die_usage("invalid --user \"%s\"", optarg);
			cfg.uid = u;
			cfg.gid = u;
			if (colon && parse_uint(colon + 1, 0xfffffffe, &u) < 0)
				die_usage("invalid --user group \"%s\"", colon + 1);
			if (colon)
				cfg.gid = u;
			break;
		}
		case OPT_CAP:
			if (parse_cap(optarg, &cap) < 0)
				die_usage("unknown capability \"%s\"", optarg);
			cfg.caps |= UINT64_C(1) << cap;
			break;
		case OPT_MASK:
			if (n_masks >= SANDBOX_MAX_MASKS)
				die_usage("too many --mask (%s)", optarg);
			masks[n_masks++] = optarg;
			break;
		case OPT_RLIMIT:
			if (cfg.n_rlimits >= SANDBOX_MAX_RLIMITS ||
			    parse_rlimit(optarg, &rlimits[cfg.n_rlimits]) < 0)
				die_usage("invalid --rlimit \"%s\"", optarg);
			cfg.n_rlimits++;
			break;
		case OPT_ENV:
			if (n_env >= ARRAY_SIZE(envs) - 1 || !strchr(optarg, '='))
				die_usage("invalid --env \"%s\"", optarg);
			envs[n_env++] = optarg;
			break;
		case OPT_STATUS:
			status_path = optarg;
			break;
		case OPT_NO_INIT:
			cfg.no_init = true;
			break;
		case OPT_NO_SECCOMP:
			cfg.no_seccomp = true;
			break;
		case OPT_TIMING:
			timing = true;
			break;
		case OPT_USERNS: {
			char *colon = strchr(optarg, ':');

			if (!colon)
				die_usage("invalid --userns \"%s\" (BASE:SIZE)", optarg);
			*colon = '\0';
			if (parse_uint(optarg, 0xfffffffe, &u) < 0 || u == 0)
				die_usage("invalid --userns base \"%s\"", optarg);
			cfg.userns_base = u;
			if (parse_uint(colon + 1, 0xffffffff, &u) < 0 || u == 0)
				die_usage("invalid --userns size \"%s\"", colon + 1);
			cfg.userns_size = u;
			break;
		}
		case OPT_INIT_BINARY:
			cfg.init_binary = optarg;
			break;
		case OPT_ISOLATE:
			cfg.bridge.isolate = true;
			break;
		case OPT_ATTACH_BY_PID:
			cfg.attach_by_pid = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("sandbox-run %s\n", CD_VERSION);
			return 0;
		default:
			fprintf(stderr,
				"sandbox-run: invalid option or missing argument: %s (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind >= argc)
		die_usage("%s", "missing command (sandbox-run [OPTIONS] -- COMMAND)");
	cfg.argv = argv + optind;
	if (n_env) {
		bool has_path = false;

		for (size_t i = 0; i < n_env; i++)
			has_path = has_path || startswith(envs[i], "PATH=");
		if (!has_path && n_env < ARRAY_SIZE(envs) - 1)
			envs[n_env++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
					"/sbin:/bin";
		cfg.envp = envs;
	}
	if (n_masks)
		cfg.mask_paths = masks;
	if (cfg.n_rlimits)
		cfg.rlimits = rlimits;
	if (!cfg.task_id) {
		char rnd[9];

		id_random_hex(rnd, sizeof(rnd));
		snprintf(id_buf, sizeof(id_buf), "sbx-%s", rnd);
		cfg.task_id = id_buf;
	}
	cfg.stdin_fd = 0;
	cfg.stdout_fd = 1;
	cfg.stderr_fd = 2;
	r = sandbox_config_validate(&cfg, &err);
	if (r < 0) {
		fprintf(stderr, "sandbox-run: %s\n", cd_error_message(&err));
		return 2;
	}
	if (status_path) {
		status_fd = open(status_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (status_fd < 0) {
			fprintf(stderr, "sandbox-run: %s: %s\n", status_path, strerror(errno));
			return 125;
		}
		cfg.status_fd = status_fd;
	}

	/* the forwarded signals are taken through a signalfd from here on */
	sigemptyset(&fwd);
	sigaddset(&fwd, SIGTERM);
	sigaddset(&fwd, SIGINT);
	sigaddset(&fwd, SIGHUP);
	sigaddset(&fwd, SIGQUIT);
	sigaddset(&fwd, SIGUSR1);
	sigaddset(&fwd, SIGUSR2);
	sigprocmask(SIG_BLOCK, &fwd, NULL);
	sfd = signalfd(-1, &fwd, SFD_CLOEXEC);
	if (sfd < 0) {
		log_error_errno(-errno, "signalfd");
		return 125;
	}

	r = cg_system_detect(cg_root, &sys, &err);
	if (r < 0) {
		log_error("cgroup detection failed", "err=\"%s\"", cd_error_message(&err));
		return 125;
	}
	if (timing)
		fprintf(stderr,
			"sandbox-run: setup (options, cgroup detection) took %" PRIu64 " us\n",
			clock_mono_usec() - t_main);
	r = sandbox_launch(sys, &cfg, &t, &err);
	if (r < 0) {
		fprintf(stderr, "sandbox-run: %s\n", cd_error_message(&err));
		cg_system_free(sys);
		return r == -ENOENT ? 127 : (r == -EACCES || r == -ENOEXEC) ? 126 : 125;
	}
	if (timing)
		fprintf(stderr,
			"sandbox-run: launched pid=%d in %" PRIu64 " us (%s): prepare %" PRIu64
			" cgroup %" PRIu64 " clone %" PRIu64 " net %" PRIu64 " child %" PRIu64 "\n",
			(int)t->ident.pid, t->launch_usec,
			t->into_cgroup ? "clone3 into cgroup" : "moved into cgroup",
			t->phase_usec[0], t->phase_usec[1], t->phase_usec[2], t->phase_usec[3],
			t->phase_usec[4]);
	t_launched = clock_mono_usec();

	for (;;) {
		struct pollfd pfd[2] = { { .fd = t->pidfd, .events = POLLIN },
					 { .fd = sfd, .events = POLLIN } };

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				(void)sandbox_signal(t, (int)si.ssi_signo);
		}
		if (pfd[0].revents & POLLIN)
			break;
	}
	t_exited = clock_mono_usec();
	if (timing)
		fprintf(stderr, "sandbox-run: ran and exited in %" PRIu64 " us\n",
			t_exited - t_launched);
	r = sandbox_wait(t, UINT64_MAX, -1, &st);
	code = r == 1 ? sandbox_status_exit_code(&st) : 125;
	cd_error_reset(&err);
	{
		usec_t t0 = clock_mono_usec();

		r = sandbox_destroy(t, &err);
		if (timing)
			fprintf(stderr, "sandbox-run: cleanup took %" PRIu64 " us\n",
				clock_mono_usec() - t0);
	}
	if (r < 0)
		log_warn("cleanup failed", "err=\"%s\"", cd_error_message(&err));
	sandbox_task_free(t);
	cg_system_free(sys);
	return code;
}
