/* SPDX-License-Identifier: Apache-2.0 */
/*
 * deployd — the central REST service: cluster manager of one zone, artifact store, and (when
 * linked in) the pipelines and builder roles. Owns the process: flags and config, logging, the
 * state directory and token file, the store, signals and the lifetime of the roles.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "central/config.h"
#include "central/deployd.h"
#include "central/store.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/macro.h"
#include "lib/sdnotify.h"
#include "lib/str.h"

static void help(void)
{
	printf("Usage: deployd [OPTIONS]\n"
	       "\n"
	       "The codedeploy central service: cluster manager, artifact store, pipelines.\n"
	       "\n"
	       "  --config FILE         configuration file (default %s; optional)\n"
	       "  --role ROLES          all | comma list of pipelines,artifacts,builder,cluster\n"
	       "  --region R            region of the managed zone (default %s)\n"
	       "  --zone Z              zone managed by the cluster role (default %s)\n"
	       "  --state-dir DIR       state directory (default %s)\n"
	       "  --listen ADDR:PORT    IPv4 address and port (default %s)\n"
	       "  --token-file F        bearer tokens (default <state-dir>/deployd.token,\n"
	       "                        created with an admin and an agent token)\n"
	       "  --db URL              sqlite:///PATH (default <state-dir>/deployd.db)\n"
	       "  --insecure-no-auth    no tokens at all; only with a loopback --listen\n"
	       "  --log-level L         debug | info | warn | error\n"
	       "  --help, --version\n"
	       "\n"
	       "See docs/deployd.md for deployd.conf keys and the REST API.\n",
	       DEPLOYD_DEFAULT_CONFIG, DEPLOYD_DEFAULT_REGION, DEPLOYD_DEFAULT_ZONE,
	       DEPLOYD_DEFAULT_STATE_DIR, DEPLOYD_DEFAULT_LISTEN);
}

static void access_log(const struct http_access_entry *e, void *userdata)
{
	char path[256];

	log_emit(e->status >= 500 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, "request",
		 "method=%s path=%s status=%d peer=%s bytes_in=%llu bytes_out=%llu usec=%llu",
		 e->method, log_quote(e->path, path, sizeof(path)), e->status, e->peer,
		 (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out,
		 (unsigned long long)e->duration_usec);
}

static const char *role_names(unsigned roles, char *buf, size_t size)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ DEPLOYD_ROLE_PIPELINES, "pipelines" },
		{ DEPLOYD_ROLE_ARTIFACTS, "artifacts" },
		{ DEPLOYD_ROLE_BUILDER, "builder" },
		{ DEPLOYD_ROLE_CLUSTER, "cluster" },
	};
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (roles & names[i].bit)
			off += (size_t)snprintf(buf + off, off < size ? size - off : 0, "%s%s",
						off ? "," : "", names[i].name);
	return buf;
}

static int run(struct deployd_config *cfg)
{
	_cleanup_free_ char *token_path = NULL, *db_url = NULL, *advertise = NULL;
	const struct deployd_role *known[8];
	size_t n_known = deployd_roles_known(known, ARRAY_SIZE(known));
	unsigned unknown_roles = cfg->roles;
	struct deployd *d = NULL;
	struct store *store = NULL;
	struct cd_error err = {};
	char roles[128], status[256];
	sigset_t mask;
	int r, sig = 0;

	for (size_t i = 0; i < n_known; i++)
		unknown_roles &= ~known[i]->bit;
	if (unknown_roles && cfg->roles != DEPLOYD_ROLE_ALL) {
		log_error("role not built into this deployd", "roles=%s",
			  role_names(unknown_roles, roles, sizeof(roles)));
		return 1;
	}

	r = fs_mkdir_p(cfg->state_dir, 0700);
	if (r < 0)
		return log_error_errno(r, "cannot create the state directory", "dir=%s",
				       cfg->state_dir),
		       1;
	token_path = deployd_config_token_path(cfg);
	db_url = deployd_config_db_url(cfg);
	advertise = deployd_config_advertise_url(cfg);
	if (!token_path || !db_url || !advertise)
		return log_error("out of memory"), 1;

	if (cfg->insecure_no_auth)
		log_warn("authentication is OFF (--insecure-no-auth): anyone who can reach the "
			 "loopback listener may do anything",
			 "listen=%s", cfg->listen);
	else {
		r = deployd_tokens_ensure(token_path, !cfg->token_file_explicit, &err);
		if (r < 0)
			return log_error("token file", "err=\"%s\"", cd_error_message(&err)), 1;
		if (r > 0)
			log_info("created token file with an admin and an agent token",
				 "path=%s mode=0600", token_path);
	}

	r = store_open(db_url, &store, &err);
	if (r < 0)
		return log_error("cannot open the store", "db=%s err=\"%s\"", db_url,
				 cd_error_message(&err)),
		       1;

	/* Signals are taken synchronously by this thread; every other thread (server workers,
	 * controller) inherits the blocked mask. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	{
		struct deployd_options o = {
			.config = cfg,
			.store = store,
			.token_path = cfg->insecure_no_auth ? NULL : token_path,
			.advertise_url = advertise,
		};

		r = deployd_new(&o, &d, &err);
	}
	if (r >= 0) {
		deployd_set_access_log(d, access_log, NULL);
		r = deployd_start(d, &err);
	}
	if (r < 0) {
		log_error("cannot start", "err=\"%s\"", cd_error_message(&err));
		deployd_free(d);
		store_free(store);
		return 1;
	}
	role_names(cfg->roles, roles, sizeof(roles));
	log_info("deployd ready", "version=%s listen=%s port=%d roles=%s region=%s zone=%s db=%s",
		 CD_VERSION, cfg->listen, deployd_port(d), roles, cfg->region, cfg->zone, db_url);
	snprintf(status, sizeof(status), "READY=1\nSTATUS=listening on %s", cfg->listen);
	sd_notify_send(status);

	for (;;) {
		if (sigwait(&mask, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP ignored: restart deployd to apply configuration changes");
			continue;
		}
		break;
	}
	log_info("stopping", "signal=%s", strsignal(sig));
	sd_notify_send("STOPPING=1");
	deployd_free(d);
	store_free(store);
	log_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	struct deployd_config cfg;
	enum deployd_action action = DEPLOYD_RUN;
	struct cd_error err = {};
	enum log_level level;
	int r;

	log_open("deployd");
	if (deployd_config_init(&cfg) < 0) {
		fprintf(stderr, "deployd: out of memory\n");
		return 1;
	}
	r = deployd_config_from_args(&cfg, argc, argv, &action, &err);
	if (r < 0) {
		fprintf(stderr, "deployd: %s (see --help)\n", cd_error_message(&err));
		deployd_config_release(&cfg);
		return 2;
	}
	if (action == DEPLOYD_HELP) {
		help();
		deployd_config_release(&cfg);
		return 0;
	}
	if (action == DEPLOYD_VERSION) {
		printf("deployd %s\n", CD_VERSION);
		deployd_config_release(&cfg);
		return 0;
	}
	if (log_level_from_string(cfg.log_level, &level) >= 0)
		log_set_level(level);
	r = run(&cfg);
	deployd_config_release(&cfg);
	return r;
}
