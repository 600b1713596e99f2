/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End-to-end tests of fetcher/ against a real nginx on loopback, started by this test with a
 * private config, prefix and pid file under a temp dir, on a free port, and stopped at the end.
 * A small in-process TCP proxy in front of nginx drops the first connection mid-body (nginx
 * cannot be told to), and a stalling server tests the low-speed timeout. The disk-full case
 * mounts a 1 MiB tmpfs in a private mount namespace (root only). Malicious archives are built
 * with libarchive's writer, served by nginx, fetched and refused at materialisation.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetcher/cas.h"
#include "fetcher/fetcher.h"
#include "lib/fs.h"
#include "lib/str.h"

struct tentry {
	const char *path;
	char type;
	const char *data;
	unsigned mode;
	size_t zeros;
};
int tar_build(const struct tentry *e, size_t n, char filter, void **ret, size_t *ret_len);

/* Fault injection: fsync fails with this errno while non-zero. */
int __real_fsync(int fd);
int __wrap_fsync(int fd);
static int fsync_fail_errno;
int __wrap_fsync(int fd)
{
	if (fsync_fail_errno) {
		errno = fsync_fail_errno;
		return -1;
	}
	return __real_fsync(fd);
}

static char T[64]; /* temp root: nginx prefix, www, caches */
static int nginx_port;
static int tls_port; /* https + http2 server, 0 when no certificate could be made */
static char ca_file[128];
static pid_t nginx_pid;
static char base[64]; /* http://127.0.0.1:<port> */

/* ---- helpers ------------------------------------------------------------------------------- */

static void sha256_hex(const void *data, size_t len, char out[static CAS_HEX_LEN + 1])
{
	unsigned char md[32];
	unsigned n = 0;

	assert_int_equal(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void *random_bytes(size_t len)
{
	unsigned char *p = malloc(len);
	uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)len ^ (uint64_t)getpid();

	assert_non_null(p);
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
	return p;
}

/* Serve data under www/<sub>/cas/<name>. */
static void serve(const char *sub, const char *name, const void *data, size_t len)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/www/%s/cas", T, sub);
	assert_int_equal(fs_mkdir_p(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/www/%s/cas/%s", T, sub, name);
	assert_int_equal(fs_write_atomic(path, data, len, 0644), 0);
}

/* Serve a fresh random blob of len bytes under sub; its hex in hex. */
static void serve_random(const char *sub, size_t len, char hex[static CAS_HEX_LEN + 1])
{
	_cleanup_free_ void *data = random_bytes(len);

	/* Distinct contents per call: salt the first bytes with a counter. */
	static unsigned counter;
	unsigned c = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);

	memcpy(data, &c, sizeof(c));
	sha256_hex(data, len, hex);
	serve(sub, hex, data, len);
}

/* Count access-log lines containing every needle. nginx writes a line when a request ends. */
static int log_count(const char *n1, const char *n2)
{
	char path[128], line[1024];
	int count = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/ngx/access.log", T);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, n1) && (!n2 || strstr(line, n2)))
			count++;
	fclose(f);
	return count;
}

static struct fetcher *cache_new(const char *name, uint64_t budget)
{
	char dir[128];
	struct fetcher *f = NULL;
	struct cd_error err = { 0 };

	snprintf(dir, sizeof(dir), "%s/%s", T, name);
	if (fetcher_new(dir, budget, &f, &err) < 0)
		fail_msg("fetcher_new: %s", err.msg);
	return f;
}

static void quick_options(struct fetch_options *o)
{
	fetch_options_init(o);
	o->attempts = 2;
	o->backoff_base_ms = 10;
	o->backoff_max_ms = 50;
	o->connect_timeout_ms = 2000;
	o->low_speed_limit = 1000;
	o->low_speed_time_s = 2;
}

static bool dir_has_prefix(const char *dir, const char *prefix, const char *suffix)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -q '^%s.*%s$'", dir, prefix, suffix);
	return system(cmd) == 0;
}

/* ---- nginx --------------------------------------------------------------------------------- */

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool port_open(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	close(fd);
	return ok;
}

/* Is it our nginx on nginx_port (it serves www/ready = T), not a stranger that won the port? */
static bool nginx_serves_marker(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "test \"$(curl -s http://127.0.0.1:%d/ready)\" = '%s'",
		 nginx_port, T);
	return system(cmd) == 0;
}

static const char *nginx_bin(void)
{
	return access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : NULL;
}

static int start_nginx(void)
{
	char conf[4096], path[128], prefix[128], errlog[128], cmd[512];

	snprintf(prefix, sizeof(prefix), "%s/ngx", T);
	snprintf(path, sizeof(path), "%s/ngx/tmp", T);
	assert_int_equal(fs_mkdir_p(path, 0755), 0);
	/* A throw-away certificate for 127.0.0.1: the https/http2 server and our CA file. */
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		 "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
		 "-keyout %s/ngx/key.pem -out %s/ngx/cert.pem >/dev/null 2>&1",
		 T, T);
	if (system(cmd) == 0)
		snprintf(ca_file, sizeof(ca_file), "%s/ngx/cert.pem", T);
	snprintf(path, sizeof(path), "%s/www", T);
	assert_int_equal(fs_mkdir_p(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/www/ready", T);
	assert_int_equal(fs_write_atomic(path, T, strlen(T), 0644), 0);
	for (int attempt = 0; attempt < 5; attempt++) {
		char tls[512] = "";

		nginx_port = free_port();
		if (ca_file[0]) {
			tls_port = free_port();
			snprintf(tls, sizeof(tls),
				 "  server {\n"
				 "    listen 127.0.0.1:%d ssl http2;\n"
				 "    ssl_certificate %s/ngx/cert.pem;\n"
				 "    ssl_certificate_key %s/ngx/key.pem;\n"
				 "    root %s/www;\n"
				 "  }\n",
				 tls_port, T, T, T);
		}
		snprintf(conf, sizeof(conf),
			 "daemon off;\nmaster_process off;\nworker_processes 1;\n"
			 "pid %s/ngx/nginx.pid;\nerror_log %s/ngx/error.log warn;\n"
			 "events { worker_connections 1024; }\n"
			 "http {\n"
			 "  log_format cas '$request_method $uri $status range=$http_range "
			 "proto=$server_protocol conn=$connection';\n"
			 "  access_log %s/ngx/access.log cas;\n"
			 "  client_body_temp_path %s/ngx/tmp/body;\n"
			 "  proxy_temp_path %s/ngx/tmp/proxy;\n"
			 "  fastcgi_temp_path %s/ngx/tmp/fastcgi;\n"
			 "  uwsgi_temp_path %s/ngx/tmp/uwsgi;\n"
			 "  scgi_temp_path %s/ngx/tmp/scgi;\n"
			 "  server {\n"
			 "    listen 127.0.0.1:%d;\n"
			 "    root %s/www;\n"
			 "    location /norange/ { max_ranges 0; }\n"
			 "    location /slow/ { limit_rate 8m; }\n"
			 "    location /auth/ {\n"
			 "      if ($http_authorization != \"Bearer s3cret\") { return 401; }\n"
			 "    }\n"
			 "  }\n"
			 "%s"
			 "}\n",
			 T, T, T, T, T, T, T, T, nginx_port, T, tls);
		snprintf(path, sizeof(path), "%s/ngx/nginx.conf", T);
		assert_int_equal(fs_write_atomic(path, conf, strlen(conf), 0644), 0);
		snprintf(errlog, sizeof(errlog), "%s/ngx/error.log", T);
		nginx_pid = fork();
		assert_true(nginx_pid >= 0);
		if (nginx_pid == 0) {
			/* Never outlive the test, even if it crashes before its teardown. */
			if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)
				_exit(127);
			execl(nginx_bin(), "nginx", "-p", prefix, "-c", path, "-e", errlog,
			      (char *)NULL);
			_exit(127);
		}
		for (int i = 0; i < 100; i++) {
			if (port_open(nginx_port) && nginx_serves_marker()) {
				snprintf(base, sizeof(base), "http://127.0.0.1:%d", nginx_port);
				return 0;
			}
			if (waitpid(nginx_pid, NULL, WNOHANG) == nginx_pid)
				break;
			usleep(20000);
		}
		kill(nginx_pid, SIGKILL);
		waitpid(nginx_pid, NULL, 0);
		nginx_pid = 0;
	}
	return -1;
}

static int group_setup(void **state)
{
	strcpy(T, "/tmp/cd-fetcher-e2e.XXXXXX");
	if (!mkdtemp(T))
		return -1;
	/* nginx runs without workers as us; let it read the tree. */
	chmod(T, 0755);
	signal(SIGPIPE, SIG_IGN);
	return start_nginx();
}

static int group_teardown(void **state)
{
	if (nginx_pid > 0) {
		kill(nginx_pid, SIGTERM);
		waitpid(nginx_pid, NULL, 0);
	}
	if (T[0])
		fs_rm_rf_at(AT_FDCWD, T);
	return 0;
}

/* ---- a proxy that drops the first connection after N response bytes ----------------------- */

struct proxy {
	int listen_fd;
	int port;
	size_t drop_after; /* response bytes passed before closing a doomed connection */
	int drops_left;	   /* connections still to drop */
	int busy_left;	   /* connections still to answer with 503 (before any drops) */
	pthread_t thread;
};

struct proxy_conn {
	int client, upstream;
	size_t budget; /* SIZE_MAX = unlimited */
};

static void *proxy_conn_run(void *arg)
{
	struct proxy_conn *c = arg;
	char buf[65536];

	for (;;) {
		struct pollfd p[2] = { { c->client, POLLIN, 0 }, { c->upstream, POLLIN, 0 } };

		if (poll(p, 2, 10000) <= 0)
			break;
		if (p[0].revents) {
			ssize_t n = read(c->client, buf, sizeof(buf));

			if (n <= 0 || fs_write_all(c->upstream, buf, (size_t)n) < 0)
				break;
		}
		if (p[1].revents) {
			ssize_t n = read(c->upstream, buf, MIN(sizeof(buf), c->budget));

			if (n <= 0 || fs_write_all(c->client, buf, (size_t)n) < 0)
				break;
			if (c->budget != SIZE_MAX) {
				c->budget -= (size_t)n;
				if (c->budget == 0)
					break; /* drop mid-body */
			}
		}
	}
	close(c->client);
	close(c->upstream);
	free(c);
	return NULL;
}

static int connect_port(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *proxy_run(void *arg)
{
	struct proxy *px = arg;

	for (;;) {
		int fd = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		struct proxy_conn *c;
		pthread_t t;

		if (fd < 0)
			return NULL;
		if (__atomic_load_n(&px->busy_left, __ATOMIC_SEQ_CST) > 0) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
						   "Content-Length: 0\r\nConnection: close\r\n\r\n";
			char req[4096];

			__atomic_sub_fetch(&px->busy_left, 1, __ATOMIC_SEQ_CST);
			(void)!read(fd, req, sizeof(req));
			(void)!write(fd, busy, sizeof(busy) - 1);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		c->client = fd;
		c->upstream = connect_port(nginx_port);
		c->budget = SIZE_MAX;
		if (px->drops_left > 0) {
			px->drops_left--;
			c->budget = px->drop_after;
		}
		if (c->upstream < 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_create(&t, NULL, proxy_conn_run, c);
		pthread_detach(t);
	}
}

static int listen_any(int *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

static void proxy_start(struct proxy *px, size_t drop_after, int drops)
{
	px->listen_fd = listen_any(&px->port);
	px->drop_after = drop_after;
	px->drops_left = drops;
	assert_int_equal(pthread_create(&px->thread, NULL, proxy_run, px), 0);
}

static void proxy_stop(struct proxy *px)
{
	shutdown(px->listen_fd, SHUT_RDWR);
	pthread_join(px->thread, NULL);
	close(px->listen_fd);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_normal_fetch(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-normal", 0);
	char hex[CAS_HEX_LEN + 1], want[256];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL, *path2 = NULL;
	struct stat st;

	quick_options(&o);
	serve_random("", 3 << 20, hex);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	snprintf(want, sizeof(want), "%s/sha256/%s", fetcher_dir(f), hex);
	assert_string_equal(path, want);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 3 << 20);
	assert_int_equal(st.st_mode & 0777, 0444);
	/* A second fetch is a cache hit: no new request. */
	assert_int_equal(fetcher_fetch(f, hex, m, 1, &o, &path2, &err), 0);
	assert_int_equal(log_count(hex, NULL), 1);
}

/* The conn=<n> of the access-log line naming hex, or -1. */
static long log_conn(const char *hex)
{
	char path[128], line[1024];
	long conn = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/ngx/access.log", T);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		const char *c = strstr(line, " conn=");

		if (strstr(line, hex) && c)
			conn = strtol(c + 6, NULL, 10);
	}
	fclose(f);
	return conn;
}

static void test_connection_reuse(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-reuse", 0);
	char hex[3][CAS_HEX_LEN + 1];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };

	quick_options(&o);
	for (int i = 0; i < 3; i++) {
		_cleanup_free_ char *path = NULL;

		serve_random("", 100000, hex[i]);
		if (fetcher_fetch(f, hex[i], m, 1, &o, &path, &err) < 0)
			fail_msg("fetch: %s", err.msg);
	}
	/* Three blobs, one keep-alive connection (the struct fetcher's connection cache). */
	assert_true(log_conn(hex[0]) > 0);
	assert_int_equal(log_conn(hex[1]), log_conn(hex[0]));
	assert_int_equal(log_conn(hex[2]), log_conn(hex[0]));
}

static void test_instance_prefix(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-inst", 0);
	char hex[CAS_HEX_LEN + 1];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	o.instance = "main";
	serve_random("main", 1000, hex);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	assert_int_equal(log_count("GET /main/cas/", hex), 1);
}

static void test_404_then_second_mirror(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-404", 0);
	char hex[CAS_HEX_LEN + 1], m1[96], m2[96], refused[64];
	const char *m[3];
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	serve_random("second", 20000, hex);
	snprintf(refused, sizeof(refused), "http://127.0.0.1:%d", free_port());
	snprintf(m1, sizeof(m1), "%s/first", base);
	snprintf(m2, sizeof(m2), "%s/second", base);
	m[0] = refused; /* nothing listens: connection refused, retried, then next */
	m[1] = m1;	/* 404 */
	m[2] = m2;
	if (fetcher_fetch(f, hex, m, 3, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	assert_int_equal(log_count("GET /first/cas/", "404"), 1);
	assert_int_equal(log_count("GET /second/cas/", "200"), 1);

	/* Nobody has it: -ENOENT naming the digest. */
	{
		char missing[CAS_HEX_LEN + 1];
		_cleanup_free_ char *p = NULL;
		struct cd_error e = { 0 };

		memset(missing, 'e', CAS_HEX_LEN);
		missing[CAS_HEX_LEN] = '\0';
		assert_int_equal(fetcher_fetch(f, missing, m + 1, 2, &o, &p, &e), -ENOENT);
		assert_non_null(strstr(e.msg, missing));
	}
}

static void test_digest_mismatch(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-bad", 0);
	char hex[CAS_HEX_LEN + 1], got[CAS_HEX_LEN + 1], want[200], bad[96], p[256];
	_cleanup_free_ void *real = random_bytes(50000);
	_cleanup_free_ void *other = random_bytes(50001);
	const char *m[1];
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	sha256_hex(real, 50000, hex);
	sha256_hex(other, 50001, got);
	serve("bad", hex, other, 50001);
	snprintf(bad, sizeof(bad), "%s/bad", base);
	m[0] = bad;
	assert_int_equal(fetcher_fetch(f, hex, m, 1, &o, &path, &err), -EBADMSG);
	snprintf(want, sizeof(want), "expected sha256:%s, got sha256:%s", hex, got);
	if (!strstr(err.msg, want))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
	assert_null(path);
	snprintf(p, sizeof(p), "%s/sha256/%s", fetcher_dir(f), hex);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/tmp", fetcher_dir(f));
	assert_false(dir_has_prefix(p, hex, ".part"));
}

static void test_resume_after_drop(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-resume", 0);
	char hex[CAS_HEX_LEN + 1], url[96];
	const char *m[] = { url };
	struct proxy px = { 0 };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;
	struct stat st;

	quick_options(&o);
	serve_random("resume", 4 << 20, hex);
	proxy_start(&px, 1 << 20, 1);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/resume", px.port);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	proxy_stop(&px);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 4 << 20);
	/* nginx served the rest as a 206 to a Range request. */
	assert_int_equal(log_count(hex, " 206 range=bytes="), 1);
}

static void test_multiple_drops(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-drops", 0);
	char hex[CAS_HEX_LEN + 1], url[96];
	const char *m[] = { url };
	struct proxy px = { 0 };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	serve_random("drops", 3 << 20, hex);
	proxy_start(&px, 512 << 10, 3);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/drops", px.port);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	proxy_stop(&px);
	assert_int_equal(log_count(hex, " 206 range=bytes="), 3);

	/* With resumes disabled and one attempt, the first drop is final. */
	{
		_cleanup_fetcher_ struct fetcher *g = cache_new("c-drops2", 0);
		_cleanup_free_ char *p2 = NULL;
		struct cd_error e = { 0 };

		o.max_resumes = 0;
		o.attempts = 1;
		proxy_start(&px, 512 << 10, 1);
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/drops", px.port);
		assert_int_equal(fetcher_fetch(g, hex, m, 1, &o, &p2, &e), -ECONNRESET);
		proxy_stop(&px);
	}
}

static void test_resume_on_next_mirror(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-carry", 0);
	_cleanup_free_ void *data = random_bytes(3 << 20);
	char hex[CAS_HEX_LEN + 1], m1[96], m2[96];
	const char *m[] = { m1, m2 };
	struct proxy px = { 0 };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	o.attempts = 1;
	o.max_resumes = 0;
	memcpy(data, "carry", 5);
	sha256_hex(data, 3 << 20, hex);
	serve("carry1", hex, data, 3 << 20);
	serve("carry2", hex, data, 3 << 20);
	/* Mirror 1 gives up after 1 MiB; mirror 2 is asked only for the rest. */
	proxy_start(&px, 1 << 20, 1);
	snprintf(m1, sizeof(m1), "http://127.0.0.1:%d/carry1", px.port);
	snprintf(m2, sizeof(m2), "%s/carry2", base);
	if (fetcher_fetch(f, hex, m, 2, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	proxy_stop(&px);
	assert_int_equal(log_count("GET /carry2/cas/", " 206 range=bytes="), 1);
	assert_int_equal(log_count("GET /carry2/cas/", " 200 "), 0);
}

static void test_retry_after_503(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-503", 0);
	char hex[CAS_HEX_LEN + 1], url[96];
	const char *m[] = { url };
	struct proxy px = { .busy_left = 2 };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL, *p2 = NULL;

	quick_options(&o);
	o.attempts = 3;
	serve_random("busy", 10000, hex);
	/* Two 503s, then the real thing: backoff and retry on the same mirror. */
	proxy_start(&px, 0, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/busy", px.port);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	assert_int_equal(log_count(hex, NULL), 1);
	/* Out of attempts: the 503 is the error. */
	{
		_cleanup_fetcher_ struct fetcher *g = cache_new("c-503b", 0);

		__atomic_store_n(&px.busy_left, 5, __ATOMIC_SEQ_CST);
		o.attempts = 2;
		cd_error_reset(&err);
		assert_int_equal(fetcher_fetch(g, hex, m, 1, &o, &p2, &err), -EAGAIN);
		assert_non_null(strstr(err.msg, "HTTP 503"));
	}
	proxy_stop(&px);
}

static void test_size_cap(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-cap", 0);
	char hex[CAS_HEX_LEN + 1], p[256];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	o.max_size = 10000;
	serve_random("", 20000, hex);
	assert_int_equal(fetcher_fetch(f, hex, m, 1, &o, &path, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "size limit"));
	snprintf(p, sizeof(p), "%s/tmp", fetcher_dir(f));
	assert_false(dir_has_prefix(p, hex, ".part"));
	snprintf(p, sizeof(p), "%s/sha256/%s", fetcher_dir(f), hex);
	assert_int_equal(access(p, F_OK), -1);
}

static void test_https_http2(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-tls", 0);
	char hex[CAS_HEX_LEN + 1], url[96];
	const char *m[] = { url };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL, *p2 = NULL;

	if (!tls_port)
		skip();
	quick_options(&o);
	serve_random("", 300000, hex);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", tls_port);
	/* Unknown CA: refused, nothing cached. */
	assert_true(fetcher_fetch(f, hex, m, 1, &o, &p2, &err) < 0);
	assert_null(p2);
	cd_error_reset(&err);
	o.ca_file = ca_file;
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	/* ALPN picked HTTP/2. */
	assert_int_equal(log_count(hex, "proto=HTTP/2.0"), 1);
}

static void test_bearer_token(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-auth", 0);
	char hex[CAS_HEX_LEN + 1], url[96];
	const char *m[] = { url };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL, *p2 = NULL;

	quick_options(&o);
	serve_random("auth", 4000, hex);
	snprintf(url, sizeof(url), "%s/auth", base);
	assert_int_equal(fetcher_fetch(f, hex, m, 1, &o, &p2, &err), -EACCES);
	assert_non_null(strstr(err.msg, "401"));
	o.bearer_token = "s3cret";
	cd_error_reset(&err);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
}

static void test_probe(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-probe", 0);
	char hex[CAS_HEX_LEN + 1], missing[CAS_HEX_LEN + 1];
	struct cd_error err = { 0 };
	uint64_t size = 0;

	serve_random("", 12345, hex);
	assert_int_equal(fetcher_probe(f, hex, base, NULL, &size, &err), 0);
	assert_int_equal(size, 12345);
	assert_int_equal(log_count("HEAD /cas/", hex), 1);
	memset(missing, '3', CAS_HEX_LEN);
	missing[CAS_HEX_LEN] = '\0';
	assert_int_equal(fetcher_probe(f, missing, base, NULL, &size, &err), -ENOENT);
	assert_int_equal(fetcher_probe(f, hex, "gopher://x", NULL, &size, &err), -EINVAL);
}

struct holder {
	int fd;
	pthread_t thread;
};

static void *hold_then_release(void *arg)
{
	struct holder *h = arg;

	usleep(200000);
	flock(h->fd, LOCK_UN);
	return NULL;
}

static void test_stale_failure_not_shared(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-stale", 0);
	char hex[CAS_HEX_LEN + 1], p[256];
	static const char stale[] = "-74 1 an old failure nobody waited for";
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;
	struct holder h;

	quick_options(&o);
	serve_random("", 5000, hex);
	/* A failure record from long ago, and someone (like gc) holding the lock for a moment: the
	 * fetch waits, but must try itself rather than report the old failure. */
	snprintf(p, sizeof(p), "%s/tmp/%s.lock", fetcher_dir(f), hex);
	h.fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(h.fd >= 0);
	assert_int_equal(write(h.fd, stale, sizeof(stale) - 1), (ssize_t)sizeof(stale) - 1);
	assert_int_equal(flock(h.fd, LOCK_EX), 0);
	assert_int_equal(pthread_create(&h.thread, NULL, hold_then_release, &h), 0);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	pthread_join(h.thread, NULL);
	close(h.fd);
}

static void put_leftover(struct fetcher *f, const char *hex, const void *data, size_t len)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/tmp/%s.0badc0ffee.part", fetcher_dir(f), hex);
	assert_int_equal(fs_write_atomic(p, data, len, 0600), 0);
}

static void test_adopt_crashed_download(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-adopt", 0);
	_cleanup_free_ void *data = random_bytes(3 << 20);
	_cleanup_free_ void *junk = random_bytes(1 << 20);
	char hex[CAS_HEX_LEN + 1], p[256];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL, *path2 = NULL;

	quick_options(&o);
	memcpy(data, "adopt-1", 7);
	sha256_hex(data, 3 << 20, hex);
	serve("", hex, data, 3 << 20);
	/* A download that died after 1 MiB: the next fetch continues it with a Range. */
	put_leftover(f, hex, data, 1 << 20);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	assert_int_equal(log_count(hex, " 206 range=bytes=1048576-"), 1);
	assert_int_equal(log_count(hex, NULL), 1);
	snprintf(p, sizeof(p), "%s/tmp", fetcher_dir(f));
	assert_false(dir_has_prefix(p, hex, ".part"));

	/* A torn leftover (garbage): the digest catches it, the mirror is asked again in full. */
	memcpy(data, "adopt-2", 7);
	sha256_hex(data, 3 << 20, hex);
	serve("", hex, data, 3 << 20);
	put_leftover(f, hex, junk, 1 << 20);
	if (fetcher_fetch(f, hex, m, 1, &o, &path2, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	assert_int_equal(log_count(hex, " 206 range=bytes=1048576-"), 1);
	assert_int_equal(log_count(hex, " 200 range=- "), 1); /* nginx logs "-" for no Range */

	/* Complete but unpublished (died between the last byte and the rename): no request. */
	{
		_cleanup_free_ char *path3 = NULL;

		memcpy(data, "adopt-3", 7);
		sha256_hex(data, 3 << 20, hex);
		put_leftover(f, hex, data, 3 << 20);
		if (fetcher_fetch(f, hex, m, 1, &o, &path3, &err) < 0)
			fail_msg("fetch: %s", err.msg);
		assert_int_equal(log_count(hex, NULL), 0);
	}
}

static void test_fsync_failure(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-fsync", 0);
	char hex[CAS_HEX_LEN + 1], p[256];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;
	int r;

	quick_options(&o);
	serve_random("", 100000, hex);
	fsync_fail_errno = EIO;
	r = fetcher_fetch(f, hex, m, 1, &o, &path, &err);
	fsync_fail_errno = 0;
	assert_int_equal(r, -EIO);
	assert_non_null(strstr(err.msg, "fsync"));
	snprintf(p, sizeof(p), "%s/sha256/%s", fetcher_dir(f), hex);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/tmp", fetcher_dir(f));
	assert_false(dir_has_prefix(p, hex, ".part"));
	/* The disk recovered: the same fetch works. */
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
}

static void test_server_without_range(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-norange", 0);
	char hex[CAS_HEX_LEN + 1], url[96];
	const char *m[] = { url };
	struct proxy px = { 0 };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	serve_random("norange", 4 << 20, hex);
	proxy_start(&px, 1 << 20, 1);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/norange", px.port);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	proxy_stop(&px);
	/* We asked for a range, got the whole blob with 200, restarted and verified it. */
	assert_int_equal(log_count(hex, " 200 range=bytes="), 1);
	assert_int_equal(log_count(hex, " 206 "), 0);
}

struct staller {
	int fd;
	pthread_t thread;
};

static void *staller_run(void *arg)
{
	struct staller *s = arg;
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n0123456789";

	for (;;) {
		char buf[4096];
		int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			return NULL;
		(void)!read(c, buf, sizeof(buf));
		(void)!write(c, resp, sizeof(resp) - 1);
		/* Then nothing, until the client gives up. */
		{
			struct pollfd p = { c, POLLIN, 0 };

			(void)poll(&p, 1, 10000);
		}
		close(c);
	}
}

static void test_stalled_server_times_out(void **state)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-stall", 0);
	char hex[CAS_HEX_LEN + 1], url[96], p[256];
	const char *m[] = { url };
	struct staller s;
	int port;
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *path = NULL;

	quick_options(&o);
	o.attempts = 1;
	o.low_speed_time_s = 1;
	memset(hex, 'f', CAS_HEX_LEN);
	hex[CAS_HEX_LEN] = '\0';
	s.fd = listen_any(&port);
	assert_int_equal(pthread_create(&s.thread, NULL, staller_run, &s), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	if (fetcher_fetch(f, hex, m, 1, &o, &path, &err) != -ETIMEDOUT)
		fail_msg("want a timeout, got: %s", err.msg);
	shutdown(s.fd, SHUT_RDWR);
	pthread_join(s.thread, NULL);
	close(s.fd);
	snprintf(p, sizeof(p), "%s/tmp", fetcher_dir(f));
	assert_false(dir_has_prefix(p, hex, ".part"));
}

struct racer {
	struct fetcher *f;
	const char *hex;
	const char *mirror;
	int r;
	char *path;
	char msg[512];
};

static void *racer_run(void *arg)
{
	struct racer *r = arg;
	const char *m[] = { r->mirror };
	struct fetch_options o;
	struct cd_error err = { 0 };

	quick_options(&o);
	r->r = fetcher_fetch(r->f, r->hex, m, 1, &o, &r->path, &err);
	memcpy(r->msg, err.msg, sizeof(r->msg));
	return NULL;
}

/* 50 threads: half share one struct fetcher (taskd's case), half have their own (like separate
 * processes: separate lock file descriptions). */
static void race(const char *hex, const char *mirror, struct racer *rs, pthread_t *ts)
{
	_cleanup_fetcher_ struct fetcher *shared = cache_new("c-race", 0);
	struct fetcher *own[25];

	for (int i = 0; i < 50; i++) {
		if (i >= 25)
			own[i - 25] = cache_new("c-race", 0);
		rs[i] = (struct racer){ .f = i < 25 ? shared : own[i - 25],
					.hex = hex,
					.mirror = mirror };
		assert_int_equal(pthread_create(&ts[i], NULL, racer_run, &rs[i]), 0);
	}
	for (int i = 0; i < 50; i++)
		pthread_join(ts[i], NULL);
	for (int i = 0; i < 25; i++)
		fetcher_free(own[i]);
}

static void test_single_flight(void **state)
{
	char hex[CAS_HEX_LEN + 1], bad[CAS_HEX_LEN + 1], mirror[96];
	struct racer rs[50];
	pthread_t ts[50];
	_cleanup_free_ void *junk = random_bytes(3 << 20);

	/* 8 MiB at 8 MiB/s: every thread starts while the first download runs. */
	serve_random("slow", 8 << 20, hex);
	snprintf(mirror, sizeof(mirror), "%s/slow", base);
	race(hex, mirror, rs, ts);
	for (int i = 0; i < 50; i++) {
		if (rs[i].r < 0)
			fail_msg("racer %d: %s", i, rs[i].msg);
		assert_string_equal(rs[i].path, rs[0].path);
	}
	for (int i = 0; i < 50; i++)
		free(rs[i].path);
	assert_int_equal(log_count("GET /slow/cas/", hex), 1);

	/* The error is shared too: one download of wrong bytes, 50 identical refusals. */
	memset(bad, '7', CAS_HEX_LEN);
	bad[CAS_HEX_LEN] = '\0';
	serve("slow", bad, junk, 3 << 20);
	race(bad, mirror, rs, ts);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(rs[i].r, -EBADMSG);
		assert_non_null(strstr(rs[i].msg, "expected sha256:"));
		assert_null(rs[i].path);
	}
	assert_int_equal(log_count("GET /slow/cas/", bad), 1);
}

static void test_eviction_keeps_pinned(void **state)
{
	/* Budget for two 1 MiB blobs and a bit. */
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-evict", (5u << 20) / 2);
	char a[CAS_HEX_LEN + 1], b[CAS_HEX_LEN + 1], c[CAS_HEX_LEN + 1], d[CAS_HEX_LEN + 1];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	char *p = NULL;

	quick_options(&o);
	serve_random("", 1 << 20, a);
	serve_random("", 1 << 20, b);
	serve_random("", 1 << 20, c);
	serve_random("", 1 << 20, d);
	assert_int_equal(fetcher_pin(f, a, &err), 0); /* pinned before it even exists */
	const char *order[] = { a, b, c, d };
	for (size_t i = 0; i < 4; i++) {
		if (fetcher_fetch(f, order[i], m, 1, &o, &p, &err) < 0)
			fail_msg("fetch: %s", err.msg);
		free(p);
		p = NULL;
		usleep(20000); /* distinct LRU stamps */
	}
	/* a is the oldest but pinned; b and c went, d is the newest. */
	assert_int_equal(fetcher_lookup(f, a, &p), 0);
	free(p);
	assert_int_equal(fetcher_lookup(f, b, &p), -ENOENT);
	assert_int_equal(fetcher_lookup(f, c, &p), -ENOENT);
	assert_int_equal(fetcher_lookup(f, d, &p), 0);
	free(p);
}

static void test_disk_full(void **state)
{
	char hex[CAS_HEX_LEN + 1], mnt[128], arc[CAS_HEX_LEN + 1];
	const struct tentry zeros[] = { { .path = "big", .type = 'f', .zeros = 3u << 20 } };
	_cleanup_free_ void *gz = NULL;
	size_t gz_len = 0;
	pid_t pid;
	int status;

	if (geteuid() != 0)
		skip();
	serve_random("", 3 << 20, hex);
	/* A few KiB compressed, 3 MiB extracted: fits as a blob, not as a tree. */
	assert_int_equal(tar_build(zeros, 1, 'g', &gz, &gz_len), 0);
	sha256_hex(gz, gz_len, arc);
	serve("", arc, gz, gz_len);
	snprintf(mnt, sizeof(mnt), "%s/small", T);
	assert_int_equal(mkdir(mnt, 0755), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A private mount namespace: the tmpfs can never leak into the host's. */
		char p[512];
		const char *m[] = { base };
		struct fetch_options o;
		struct cd_error err = { 0 };
		struct fetcher *f = NULL;
		char *path = NULL;
		int r;

		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0755") < 0)
			_exit(10);
		snprintf(p, sizeof(p), "%s/cache", mnt);
		if (fetcher_new(p, 0, &f, &err) < 0)
			_exit(11);
		quick_options(&o);
		r = fetcher_fetch(f, hex, m, 1, &o, &path, &err);
		if (r != -ENOSPC) {
			fprintf(stderr, "# fetch returned %d: %s\n", r, err.msg);
			_exit(12);
		}
		snprintf(p, sizeof(p), "ls -A %s/cache/tmp %s/cache/sha256 | grep -q part", mnt,
			 mnt);
		if (system(p) == 0)
			_exit(13); /* a partial file survived */
		snprintf(p, sizeof(p), "%s/cache/sha256/%s", mnt, hex);
		if (access(p, F_OK) == 0)
			_exit(14);
		/* Extraction that runs out of space: -ENOSPC, no temp tree, nothing published. */
		free(path);
		path = NULL;
		if (fetcher_fetch(f, arc, m, 1, &o, &path, &err) < 0)
			_exit(16);
		cd_error_reset(&err);
		r = fetcher_materialize(f, arc, FETCHER_KIND_AUTO, NULL, NULL, &path, &err);
		if (r != -ENOSPC) {
			fprintf(stderr, "# materialise returned %d: %s\n", r, err.msg);
			_exit(17);
		}
		snprintf(p, sizeof(p), "ls -A %s/cache/unpacked | grep -q .", mnt);
		if (system(p) == 0)
			_exit(18);
		free(path);
		fetcher_free(f);
		if (umount2(mnt, 0) < 0)
			_exit(15);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Fetch a crafted archive and materialise it: expect code and a message naming entry. */
static void archive_case(const struct tentry *e, size_t n, char filter,
			 const struct unpack_limits *lim, int code, const char *entry)
{
	_cleanup_fetcher_ struct fetcher *f = cache_new("c-archives", 0);
	char hex[CAS_HEX_LEN + 1], want[256], p[256];
	const char *m[] = { base };
	struct fetch_options o;
	struct cd_error err = { 0 };
	_cleanup_free_ char *blob = NULL, *dir = NULL;
	_cleanup_free_ void *data = NULL;
	size_t len = 0;
	int r;

	quick_options(&o);
	assert_int_equal(tar_build(e, n, filter, &data, &len), 0);
	sha256_hex(data, len, hex);
	serve("", hex, data, len);
	if (fetcher_fetch(f, hex, m, 1, &o, &blob, &err) < 0)
		fail_msg("fetch: %s", err.msg);
	r = fetcher_materialize(f, hex, FETCHER_KIND_AUTO, NULL, lim, &dir, &err);
	if (r != code)
		fail_msg("materialise: %d (want %d): %s", r, code, err.msg);
	if (code == 0)
		return;
	snprintf(want, sizeof(want), "archive entry \"%s\"", entry);
	if (!strstr(err.msg, want))
		fail_msg("message \"%s\" does not name %s", err.msg, want);
	snprintf(p, sizeof(p), "%s/unpacked/%s", fetcher_dir(f), hex);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/unpacked", fetcher_dir(f));
	assert_false(dir_has_prefix(p, ".tmp-", ""));
}

#define E(...)                                                                                     \
	{                                                                                          \
		__VA_ARGS__                                                                        \
	}
static void test_malicious_archives(void **state)
{
	const struct tentry abs[] = { E(.path = "ok", .type = 'f', .data = "x"),
				      E(.path = "/etc/cron.d/evil", .type = 'f', .data = "x") };
	const struct tentry dotdot[] = { E(.path = "a/../../evil", .type = 'f', .data = "x") };
	const struct tentry sym_abs[] = { E(.path = "passwd", .type = 'l', .data = "/etc/passwd") };
	const struct tentry sym_up[] = { E(.path = "d", .type = 'd'),
					 E(.path = "d/up", .type = 'l', .data = "../../etc") };
	const struct tentry sym_chain[] = { E(.path = "a", .type = 'l', .data = "."),
					    E(.path = "b", .type = 'l', .data = "a/..") };
	const struct tentry through[] = { E(.path = "sub", .type = 'd'),
					  E(.path = "l", .type = 'l', .data = "sub"),
					  E(.path = "l/f", .type = 'f', .data = "x") };
	const struct tentry hard_out[] = { E(.path = "h", .type = 'h',
					     .data = "../../etc/shadow") };
	const struct tentry hard_abs[] = { E(.path = "h2", .type = 'h', .data = "/etc/shadow") };
	const struct tentry dev[] = { E(.path = "dev/mem", .type = 'c') };
	const struct tentry fifo[] = { E(.path = "run/fifo", .type = 'p') };
	const struct tentry bomb[] = { E(.path = "bomb", .type = 'f', .zeros = 8u << 20) };
	const struct tentry many[] = { E(.path = "1", .type = 'f', .data = "1"),
				       E(.path = "2", .type = 'f', .data = "2"),
				       E(.path = "3", .type = 'f', .data = "3") };
	struct unpack_limits small;

	archive_case(abs, 2, 'g', NULL, -EPERM, "/etc/cron.d/evil");
	archive_case(dotdot, 1, 'z', NULL, -EPERM, "a/../../evil");
	archive_case(sym_abs, 1, 0, NULL, -EPERM, "passwd");
	archive_case(sym_up, 2, 'g', NULL, -EPERM, "d/up");
	archive_case(sym_chain, 2, 'g', NULL, -EPERM, "b");
	archive_case(through, 3, 0, NULL, -EPERM, "l/f");
	archive_case(hard_out, 1, 0, NULL, -EPERM, "h");
	archive_case(hard_abs, 1, 'z', NULL, -EPERM, "h2");
	archive_case(dev, 1, 'g', NULL, -EPERM, "dev/mem");
	archive_case(fifo, 1, 'g', NULL, -EPERM, "run/fifo");
	unpack_limits_init(&small);
	small.max_total_bytes = 1 << 20;
	archive_case(bomb, 1, 'g', &small, -EFBIG, "bomb");
	unpack_limits_init(&small);
	small.max_entries = 2;
	archive_case(many, 3, 'z', &small, -EFBIG, "3");
}

static void test_good_archives(void **state)
{
	const struct tentry tree[] = {
		E(.path = "./", .type = 'd'),
		E(.path = "bin", .type = 'd'),
		E(.path = "bin/server", .type = 'f', .data = "#!/bin/sh\necho ok\n", .mode = 06755),
		E(.path = "bin/alias", .type = 'l', .data = "server"),
		E(.path = "etc/conf", .type = 'f', .data = "k=v\n", .mode = 0666),
	};
	const char filters[] = { 0, 'g', 'z' };

	for (size_t i = 0; i < sizeof(filters); i++) {
		_cleanup_fetcher_ struct fetcher *f = cache_new("c-good", 0);
		char hex[CAS_HEX_LEN + 1], p[256];
		const char *m[] = { base };
		_cleanup_free_ void *data = NULL;
		_cleanup_free_ char *blob = NULL, *dir = NULL, *dir2 = NULL;
		struct cd_error err = { 0 };
		struct stat st;
		size_t len = 0;

		assert_int_equal(tar_build(tree, ARRAY_SIZE(tree), filters[i], &data, &len), 0);
		sha256_hex(data, len, hex);
		serve("", hex, data, len);
		if (fetcher_fetch(f, hex, m, 1, NULL, &blob, &err) < 0 ||
		    fetcher_materialize(f, hex, FETCHER_KIND_AUTO, NULL, NULL, &dir, &err) < 0)
			fail_msg("%s", err.msg);
		snprintf(p, sizeof(p), "%s/bin/server", dir);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0755);
		snprintf(p, sizeof(p), "%s/etc/conf", dir);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0644);
		snprintf(p, sizeof(p), "%s/bin/alias", dir);
		assert_int_equal(access(p, R_OK), 0);
		/* Cached: same directory, no work. */
		assert_int_equal(
			fetcher_materialize(f, hex, FETCHER_KIND_AUTO, NULL, NULL, &dir2, &err), 0);
		assert_string_equal(dir, dir2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normal_fetch),
		cmocka_unit_test(test_connection_reuse),
		cmocka_unit_test(test_instance_prefix),
		cmocka_unit_test(test_404_then_second_mirror),
		cmocka_unit_test(test_digest_mismatch),
		cmocka_unit_test(test_resume_after_drop),
		cmocka_unit_test(test_multiple_drops),
		cmocka_unit_test(test_resume_on_next_mirror),
		cmocka_unit_test(test_retry_after_503),
		cmocka_unit_test(test_size_cap),
		cmocka_unit_test(test_server_without_range),
		cmocka_unit_test(test_fsync_failure),
		cmocka_unit_test(test_adopt_crashed_download),
		cmocka_unit_test(test_stale_failure_not_shared),
		cmocka_unit_test(test_https_http2),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_bearer_token),
		cmocka_unit_test(test_stalled_server_times_out),
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_eviction_keeps_pinned),
		cmocka_unit_test(test_disk_full),
		cmocka_unit_test(test_malicious_archives),
		cmocka_unit_test(test_good_archives),
	};

	if (!nginx_bin()) {
		/* kselftest convention, understood by tests/tap.sh: the whole program is skipped. */
		printf("1..0 # SKIP nginx not installed (make deps)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
