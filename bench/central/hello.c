/* The baseline of bench/central: the smallest civetweb server that answers one JSON document,
 * configured like deployd's HTTP layer (same thread count, keep-alive, tcp_nodelay), so the
 * ratio measures what deployd adds per request (routing, auth, the store read, JSON).
 * Usage: hello ADDR:PORT THREADS   (runs until SIGTERM/SIGINT) */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int hello(struct mg_connection *conn, void *data)
{
	static const char body[] = "{\"state\":\"RUNNING\",\"reason\":null}\n";

	(void)data;
	mg_printf(conn,
		  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		  "Content-Length: %zu\r\n\r\n",
		  sizeof(body) - 1);
	mg_write(conn, body, sizeof(body) - 1);
	return 200;
}

int main(int argc, char **argv)
{
	struct mg_callbacks callbacks;
	struct mg_context *ctx;
	struct sigaction sa;

	if (argc != 3) {
		fprintf(stderr, "usage: %s ADDR:PORT THREADS\n", argv[0]);
		return 2;
	}
	const char *options[] = {
		"listening_ports",	 argv[1], "num_threads", argv[2],
		"enable_keep_alive",	 "yes",	  "tcp_nodelay", "1",
		"keep_alive_timeout_ms", "30000", NULL,
	};
	memset(&callbacks, 0, sizeof(callbacks));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	mg_init_library(0);
	ctx = mg_start(&callbacks, NULL, options);
	if (!ctx) {
		fprintf(stderr, "hello: cannot listen on %s\n", argv[1]);
		return 1;
	}
	mg_set_request_handler(ctx, "/", hello, NULL);
	while (!stop)
		pause();
	mg_stop(ctx);
	mg_exit_library();
	return 0;
}
