/* SPDX-License-Identifier: Apache-2.0 */
/*
 * taskd — the codedeploy host daemon: runs tasks (PutTask / SetTaskState / GetTaskState) in
 * sandboxes, keeps them running per their restart policy, serves their logs, and reports every
 * state change to the cluster manager through a durable outbox. Stopping or crashing taskd
 * never stops a task: each task is supervised by its own taskd-shim, and the next taskd re-adopts
 * it. See docs/taskd.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "agent/api.h"
#include "agent/config.h"
#include "agent/manager.h"
#include "agent/notify.h"
#include "agent/state.h"
#include "api/http_server.h"
#include "lib/clock.h"
#include "lib/fs.h"
#include "lib/id.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/sdnotify.h"
#include "lib/str.h"

#define TOKEN_MAX_BYTES 4096

static struct taskd_config config;
static _Atomic(struct notifier *) the_notifier;
static int state_lock_fd = -1; /* held for taskd's life */

static void help(void)
{
	printf("Usage: taskd [OPTIONS]\n"
	       "\n"
	       "The codedeploy host daemon: runs and supervises tasks, serves their state and logs.\n"
	       "\n"
	       "  --config FILE       configuration file (default %s)\n"
	       "  --state-dir DIR     state directory (default %s)\n"
	       "  --listen ADDR:PORT  HTTP API address, IPv4 (default %s)\n"
	       "  --token-file F      bearer token file (default <state-dir>/taskd.token, created)\n"
	       "  --manager URL       cluster manager base URL (default: standalone)\n"
	       "  --host-id ID        this host's id (default: the hostname)\n"
	       "  --zone ZONE         this host's zone (required with --manager)\n"
	       "  --log-level LEVEL   debug|info|warn|error (default info)\n"
	       "  --help              show this help\n"
	       "  --version           show the version\n",
	       TASKD_DEFAULT_CONFIG, TASKD_DEFAULT_STATE_DIR, TASKD_DEFAULT_LISTEN);
}

/* Read a token file: one line of printable ASCII. */
static int read_token(const char *path, char **ret)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = fs_read_file_at(AT_FDCWD, path, TOKEN_MAX_BYTES, &text, &len);

	if (r < 0)
		return r;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (len < 16 || strlen(text) != len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (text[i] < 0x21 || text[i] > 0x7e)
			return -EINVAL;
	*ret = TAKE_PTR(text);
	return 0;
}

/* The local token: the given file, or <state-dir>/taskd.token created on first start. */
static int load_or_create_token(char **ret_path, char **ret_token)
{
	_cleanup_free_ char *path = NULL;
	int r;

	if (config.token_file) {
		path = strdup(config.token_file);
		if (!path)
			return -ENOMEM;
		r = read_token(path, ret_token);
		if (r < 0)
			return log_error_errno(r, "cannot read the token file", "path=%s", path);
	} else {
		r = taskd_config_path(&config, "taskd.token", &path);
		if (r < 0)
			return r;
		r = read_token(path, ret_token);
		if (r == -ENOENT) {
			char tok[TOKEN_HEX_LEN + 2];

			r = id_new_token(tok);
			if (r < 0)
				return log_error_errno(r, "cannot generate a token");
			strcat(tok, "\n");
			r = fs_write_atomic(path, tok, strlen(tok), 0600);
			explicit_bzero(tok, sizeof(tok));
			if (r < 0)
				return log_error_errno(r, "cannot write the token file", "path=%s",
						       path);
			log_info("created the API token", "path=%s", path);
			r = read_token(path, ret_token);
		}
		if (r < 0)
			return log_error_errno(r, "cannot read the token file", "path=%s", path);
	}
	{
		struct stat st;

		if (stat(path, &st) == 0 && (st.st_mode & 0077))
			log_warn("token file is readable by group or others; chmod 0600 it",
				 "path=%s", path);
	}
	*ret_path = TAKE_PTR(path);
	return 0;
}

/* taskd-shim: shim_path, else next to our binary, else ../libexec/codedeploy/ from it. */
static int find_shim(char **ret)
{
	char self[PATH_MAX], cand[PATH_MAX + 64];
	ssize_t n;
	char *slash;

	if (config.shim_path) {
		if (access(config.shim_path, X_OK) < 0)
			return -errno;
		*ret = strdup(config.shim_path);
		return *ret ? 0 : -ENOMEM;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return -errno;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	{
		const char *const rel[] = { "/taskd-shim", "/../libexec/codedeploy/taskd-shim" };

		for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
			snprintf(cand, sizeof(cand), "%s%s", self, rel[i]);
			if (access(cand, X_OK) == 0) {
				*ret = realpath(cand, NULL);
				return *ret ? 0 : -errno;
			}
		}
	}
	return -ENOENT;
}

/*
 * sandbox-init, the static pid 1 each task's init execs so that it keeps no copy of taskd's
 * memory: it is installed beside taskd-shim (LIBEXECDIR, and build/ in a build tree).
 */
static int find_init(const char *shim, char **ret)
{
	_cleanup_free_ char *path = NULL;
	const char *slash = strrchr(shim, '/');

	if (!slash)
		return -ENOENT;
	if (asprintf(&path, "%.*s/sandbox-init", (int)(slash - shim), shim) < 0)
		return -ENOMEM;
	if (access(path, X_OK) < 0)
		return -errno;
	*ret = TAKE_PTR(path);
	return 0;
}

static void access_log(const struct http_access_entry *e, void *userdata)
{
	log_debug("request",
		  "method=%s path=%s peer=%s status=%d bytes_in=%llu bytes_out=%llu "
		  "duration_us=%llu",
		  e->method, e->path, e->peer, e->status, (unsigned long long)e->bytes_in,
		  (unsigned long long)e->bytes_out, (unsigned long long)e->duration_usec);
}

static void error_log(const char *message, void *userdata)
{
	char q[512];

	log_warn("http server", "detail=%s", log_quote(message, q, sizeof(q)));
}

static void on_change(void *userdata)
{
	notifier_wake(atomic_load(&the_notifier));
}

/* While http_server_free() waits for the workers (every 10 ms): long-polls (/v1/events) and log
 * follows sleep on the manager's condition variable and return once http_request_stopping() is
 * true; this makes them look. */
static void wake_handlers(void *data)
{
	manager_wake_waiters(data);
}

static int host_id_default(char **ret)
{
	char host[HOST_NAME_MAX + 1];

	if (gethostname(host, sizeof(host)) < 0)
		return -errno;
	host[sizeof(host) - 1] = '\0';
	for (char *p = host; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			*p = '-';
	host[63] = '\0';
	*ret = strdup(host);
	return *ret ? 0 : -ENOMEM;
}

static int run(void)
{
	_cleanup_free_ char *token_path = NULL, *token = NULL, *agent_token = NULL, *shim = NULL,
			    *db = NULL, *agent_token_path = NULL, *advertise = NULL,
			    *config_dir = NULL, *init = NULL;
	struct state *st = NULL;
	struct manager *m = NULL;
	struct http_server *srv = NULL;
	struct notifier *notifier = NULL;
	struct cd_error err = { 0 };
	struct manager_adopt_stats as;
	struct taskd_api api = { 0 };
	struct http_route routes[TASKD_API_N_ROUTES];
	sigset_t mask;
	int r, sig = 0;
	char *mask_paths[8] = { 0 };
	size_t n_mask = 0;

	/* Signals are taken synchronously by this thread only: block before any thread exists. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = fs_mkdir_p(config.state_dir, 0700);
	if (r < 0)
		return log_error_errno(r, "cannot create the state directory", "path=%s",
				       config.state_dir);
	/* One taskd per state dir: a second one would adopt and double-supervise every task. */
	{
		_cleanup_free_ char *lock_path = NULL;

		r = taskd_config_path(&config, "taskd.lock", &lock_path);
		if (r < 0)
			return r;
		state_lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (state_lock_fd < 0)
			return log_error_errno(-errno, "cannot open the state lock", "path=%s",
					       lock_path);
		if (flock(state_lock_fd, LOCK_EX | LOCK_NB) < 0)
			return log_error_errno(-errno,
					       "another taskd is using this state directory",
					       "path=%s", config.state_dir);
	}
	r = load_or_create_token(&token_path, &token);
	if (r < 0)
		return r;
	if (config.manager_token_file)
		agent_token_path = strdup(config.manager_token_file);
	else
		(void)taskd_config_path(&config, "manager.token", &agent_token_path);
	if (agent_token_path) {
		r = read_token(agent_token_path, &agent_token);
		if (r < 0 && (r != -ENOENT || config.manager_token_file))
			return log_error_errno(r, "cannot read the manager token file", "path=%s",
					       agent_token_path);
	}
	/* The token says who put a task: with one token for both, every task the manager puts
	 * would look local and never be reported (its job would stay PENDING without a word). */
	if (agent_token && streq(agent_token, token))
		return log_error_errno(-EINVAL,
				       "taskd's API token and the manager token are the same; give "
				       "taskd its own token",
				       "token_file=%s manager_token_file=%s", token_path,
				       agent_token_path);
	if (!config.host_id) {
		r = host_id_default(&config.host_id);
		if (r < 0)
			return log_error_errno(r, "cannot determine the host id");
	}
	r = find_shim(&shim);
	if (r < 0)
		return log_error_errno(r, "cannot find taskd-shim (set shim_path in taskd.conf)");
	r = find_init(shim, &init);
	if (r < 0)
		log_warn_errno(
			r,
			"no sandbox-init beside taskd-shim: each task's pid 1 stays a clone of "
			"the shim (more memory per task)",
			"shim=%s", shim);

	r = taskd_config_path(&config, "taskd.db", &db);
	if (r < 0)
		return r;
	r = state_open(db, &st, &err);
	if (r < 0)
		return log_error_errno(r, "cannot open the state database", "detail=\"%s\"",
				       cd_error_message(&err));

	/* What tasks must never see (the sandbox masks these). */
	mask_paths[n_mask++] = config.state_dir;
	mask_paths[n_mask++] = token_path;
	if (agent_token_path)
		mask_paths[n_mask++] = agent_token_path;
	if (config.config_file) {
		config_dir = strdup(config.config_file);
		if (config_dir && strrchr(config_dir, '/') &&
		    strrchr(config_dir, '/') != config_dir)
			*strrchr(config_dir, '/') = '\0';
		if (config_dir)
			mask_paths[n_mask++] = config_dir;
	}
	mask_paths[n_mask++] = (char *)"/run/codedeploy";
	mask_paths[n_mask] = NULL;

	{
		struct manager_config mc = {
			.state_dir = config.state_dir,
			.cgroup_parent = config.cgroup_parent ? config.cgroup_parent : "codedeploy",
			.shim_path = shim,
			.init_path = init,
			.host_id = config.host_id,
			.notify = config.manager_url != NULL,
			.log_max_bytes = config.log_max_bytes,
			.log_keep = config.log_keep,
			.log_line_max = config.log_line_max,
			.restart_reset_s = config.restart_reset_s,
			.max_tasks = config.max_tasks,
			.events_keep = config.events_keep,
			.cache_max_bytes = config.cache_max_bytes,
			.watch_ring_bytes = (uint32_t)config.process_events_ring_bytes,
			.default_pids_max = config.default_pids_max,
			.bridge_name = config.bridge_name,
			.bridge_subnet = config.bridge_subnet,
			.mask = mask_paths,
			.on_change = on_change,
		};

		r = manager_new(&mc, st, &m, &err);
		if (r < 0)
			return log_error_errno(r, "cannot start the task manager", "detail=\"%s\"",
					       cd_error_message(&err));
	}
	manager_adopt_stats(m, &as);
	{
		char q[128];

		log_info("tasks recovered",
			 "tasks=%u adopted=%u ended_while_down=%u lost=%u resumed=%u "
			 "orphan_cgroups=%u process_events=%s",
			 as.tasks, as.adopted, as.ended_while_down, as.lost, as.relaunched,
			 as.orphan_cgroups, log_quote(as.watch_mode, q, sizeof(q)));
	}

	api.manager = m;
	api.token = token;
	api.agent_token = agent_token;
	taskd_api_routes(&api, routes);
	{
		struct http_token tokens[2];
		struct http_server_config sc = {
			.listen = config.listen,
			.num_threads = config.threads,
			.tokens = tokens,
			.n_tokens = taskd_api_tokens(&api, tokens),
			.routes = routes,
			.n_routes = ARRAY_SIZE(routes),
			.access_log = access_log,
			.error_log = error_log,
			.on_stop = wake_handlers,
			.on_stop_data = m,
		};

		cd_error_reset(&err);
		r = http_server_new(&sc, &srv, &err);
		if (r < 0) {
			log_error_errno(r, "cannot serve the API", "listen=%s detail=\"%s\"",
					config.listen, cd_error_message(&err));
			manager_free(m);
			return r;
		}
	}
	if (config.manager_url) {
		struct notifier_config nc = {
			.manager_url = config.manager_url,
			.token = agent_token,
			.host_id = config.host_id,
			.zone = config.zone,
			.state_dir = config.state_dir,
			.heartbeat_interval_s = config.heartbeat_interval_s,
			.vcpus = config.resources_vcpus,
			.memory_mb = config.resources_memory_mb,
			.storage_mb = config.resources_storage_mb,
		};

		if (config.advertise_url)
			advertise = strdup(config.advertise_url);
		else if (asprintf(&advertise, "http://%s", config.listen) < 0)
			advertise = NULL;
		nc.advertise_url = advertise ? advertise : "";
		cd_error_reset(&err);
		r = notifier_new(&nc, m, &notifier, &err);
		if (r < 0) {
			log_error_errno(r, "cannot start the notifier", "detail=\"%s\"",
					cd_error_message(&err));
			http_server_free(srv);
			manager_free(m);
			return r;
		}
		atomic_store(&the_notifier, notifier);
		notifier_wake(notifier);
	}
	log_info("taskd ready", "listen=%s port=%d host_id=%s manager=%s state_dir=%s init=%s",
		 config.listen, http_server_port(srv), config.host_id,
		 config.manager_url ? config.manager_url : "none", config.state_dir,
		 init ? init : "in-process");
	/* Readiness (the unit is Type=notify): state recovered, every task re-adopted, the API
	 * listening — a client started after us finds every task where it was. */
	{
		char state[256];

		snprintf(state, sizeof(state),
			 "READY=1\nSTATUS=serving on %s, %u tasks (%u re-adopted)", config.listen,
			 as.tasks, as.adopted);
		r = sd_notify_send(state);
		if (r < 0)
			log_warn_errno(r, "cannot notify systemd (NOTIFY_SOCKET)");
	}

	for (;;) {
		if (sigwait(&mask, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP: nothing to reload (restart taskd to apply taskd.conf)");
			continue;
		}
		break;
	}
	log_info("stopping: tasks keep running and are re-adopted by the next taskd", "signal=%d",
		 sig);
	(void)sd_notify_send("STOPPING=1\nSTATUS=stopping; tasks keep running");
	http_server_free(srv);
	atomic_store(&the_notifier, NULL);
	notifier_free(notifier);
	manager_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	enum taskd_action action;
	struct cd_error err = { 0 };
	enum log_level level;
	int r;

	log_open("taskd");
	/* state, logs and tokens are private to root */
	umask(0077);
	r = taskd_config_init(&config);
	if (r < 0) {
		fprintf(stderr, "taskd: out of memory\n");
		return 1;
	}
	r = taskd_config_from_args(&config, argc, argv, &action, &err);
	if (r < 0) {
		fprintf(stderr, "taskd: %s (see taskd --help)\n", cd_error_message(&err));
		taskd_config_release(&config);
		return 2;
	}
	if (action == TASKD_HELP) {
		help();
		taskd_config_release(&config);
		return 0;
	}
	if (action == TASKD_VERSION) {
		printf("taskd %s\n", CD_VERSION);
		taskd_config_release(&config);
		return 0;
	}
	if (log_level_from_string(config.log_level, &level) >= 0)
		log_set_level(level);
	r = run();
	taskd_config_release(&config);
	return r < 0 ? 1 : 0;
}
