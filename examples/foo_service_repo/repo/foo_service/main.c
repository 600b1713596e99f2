/* FooService: a tiny HTTP service. GET / answers a greeting with the zone (env ZONE), GET
 * /healthz answers "ok" (200) or "unhealthy" (503). Usage: main PORT. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "greeting.h"

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void reply(int fd, int status, const char *body)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s",
			 status,
			 status == 200 ? "OK" :
			 status == 404 ? "Not Found" :
					 "Unavailable",
			 strlen(body), body);

	if (n > 0 && write(fd, buf, (size_t)n) < 0)
		perror("write");
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_term };
	struct sockaddr_in addr = { .sin_family = AF_INET };
	const char *zone = getenv("ZONE");
	int one = 1, s;

	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	addr.sin_port = htons((unsigned short)atoi(argv[1]));
	addr.sin_addr.s_addr = htonl(INADDR_ANY);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(s, 64) < 0) {
		perror("listen");
		return 1;
	}
	fprintf(stderr, "FooService listening on port %s (zone %s)\n", argv[1], zone ? zone : "?");
	while (!stop) {
		char req[2048], body[256];
		ssize_t n;
		int c = accept(s, NULL, NULL);

		if (c < 0)
			continue;
		n = read(c, req, sizeof(req) - 1);
		req[n > 0 ? n : 0] = '\0';
		if (strncmp(req, "GET /healthz", 12) == 0)
			reply(c, healthy() ? 200 : 503, healthy() ? "ok\n" : "unhealthy\n");
		else if (strncmp(req, "GET / ", 6) == 0) {
			snprintf(body, sizeof(body), "%s (zone %s)\n", greeting(),
				 zone ? zone : "?");
			reply(c, 200, body);
		} else
			reply(c, 404, "not found\n");
		close(c);
	}
	fprintf(stderr, "FooService stopping\n");
	return 0;
}
