/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cdfetch — fetch a content-addressed artifact into the local cache and print its path.
 * Owns only command-line parsing and the progress line; everything else is fetcher.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetcher/cas.h"
#include "fetcher/fetcher.h"
#include "lib/clock.h"
#include "lib/fs.h"
#include "lib/str.h"

#define MAX_MIRRORS 16

static const char usage_text[] =
	"Usage: cdfetch sha256:<hex> --from URL [--from URL...] --cache DIR [OPTIONS]\n"
	"       cdfetch --gc --cache DIR [--budget BYTES]\n"
	"       cdfetch --pin|--unpin sha256:<hex> --cache DIR\n"
	"       cdfetch --pins --cache DIR\n"
	"       cdfetch --probe sha256:<hex> --from URL [--cache DIR]\n"
	"\n"
	"Fetch a blob by digest from bazel-remote compatible mirrors (GET URL/cas/<hex>), verify\n"
	"its SHA-256, publish it in the cache and print its path.\n"
	"\n"
	"  --from URL             mirror base URL, tried in the order given (up to 16)\n"
	"  --cache DIR            cache state directory\n"
	"  --instance NAME        bazel-remote instance name (URL/NAME/cas/<hex>)\n"
	"  --ca-file FILE         PEM CA bundle for https mirrors (default: system store)\n"
	"  --token-file FILE      send \"Authorization: Bearer <first line of FILE>\"\n"
	"  --unpack               extract the archive (or wrap a program) and print the directory\n"
	"  --kind auto|archive|executable   what --unpack treats the blob as (default auto)\n"
	"  --exe-name NAME        file name of a program blob in its directory (default artifact)\n"
	"  --max-size BYTES       refuse larger blobs (default 64 GiB)\n"
	"  --budget BYTES         cache byte budget, LRU eviction of unpinned blobs (0 = none)\n"
	"  --connect-timeout SEC  connect timeout (default 10)\n"
	"  --stall-timeout SEC    give up when below 1 KiB/s for this long (default 30)\n"
	"  --attempts N           tries per mirror for transient errors (default 3)\n"
	"  --gc                   remove crashed leftovers and evict down to --budget\n"
	"  --pin, --unpin         adjust the persistent pin count of the digest\n"
	"  --pins                 list pinned digests as \"<count> sha256:<hex>\"\n"
	"  --probe                HEAD each --from, print \"<size> <url>\" for those that have it\n"
	"  -q, --quiet            no progress line\n"
	"  -h, --help             show this help\n"
	"  -V, --version          show the version\n";

enum {
	OPT_FROM = 256,
	OPT_CACHE,
	OPT_INSTANCE,
	OPT_UNPACK,
	OPT_KIND,
	OPT_EXE_NAME,
	OPT_MAX_SIZE,
	OPT_BUDGET,
	OPT_CONNECT_TIMEOUT,
	OPT_STALL_TIMEOUT,
	OPT_ATTEMPTS,
	OPT_GC,
	OPT_PIN,
	OPT_UNPIN,
	OPT_PROBE,
	OPT_CA_FILE,
	OPT_PINS,
	OPT_TOKEN_FILE,
};

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cdfetch: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see --help)\n");
	return 2;
}

struct progress {
	const char *hex;
	usec_t start, last;
	bool shown;
};

static void human(uint64_t n, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void show_progress(void *userdata, uint64_t done, uint64_t total)
{
	struct progress *p = userdata;
	usec_t now = clock_mono_usec();
	char d[32], t[32], rate[32];
	double secs;

	if (now - p->last < 100 * USEC_PER_MSEC && (total == 0 || done < total))
		return;
	p->last = now;
	secs = (double)(now - p->start) / USEC_PER_SEC;
	human(done, d, sizeof(d));
	human(secs > 0 ? (uint64_t)((double)done / secs) : 0, rate, sizeof(rate));
	if (total > 0) {
		human(total, t, sizeof(t));
		fprintf(stderr, "\r\033[Ksha256:%.12s  %s / %s  %3u%%  %s/s", p->hex, d, t,
			(unsigned)(done * 100 / total), rate);
	} else {
		fprintf(stderr, "\r\033[Ksha256:%.12s  %s  %s/s", p->hex, d, rate);
	}
	p->shown = true;
}

static int parse_size(const char *s, uint64_t *ret)
{
	return parse_u64(s, ret);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, OPT_FROM },
		{ "cache", required_argument, NULL, OPT_CACHE },
		{ "instance", required_argument, NULL, OPT_INSTANCE },
		{ "unpack", no_argument, NULL, OPT_UNPACK },
		{ "kind", required_argument, NULL, OPT_KIND },
		{ "exe-name", required_argument, NULL, OPT_EXE_NAME },
		{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
		{ "budget", required_argument, NULL, OPT_BUDGET },
		{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
		{ "stall-timeout", required_argument, NULL, OPT_STALL_TIMEOUT },
		{ "attempts", required_argument, NULL, OPT_ATTEMPTS },
		{ "gc", no_argument, NULL, OPT_GC },
		{ "pin", no_argument, NULL, OPT_PIN },
		{ "unpin", no_argument, NULL, OPT_UNPIN },
		{ "probe", no_argument, NULL, OPT_PROBE },
		{ "pins", no_argument, NULL, OPT_PINS },
		{ "ca-file", required_argument, NULL, OPT_CA_FILE },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{},
	};
	const char *mirrors[MAX_MIRRORS], *cache = NULL, *exe_name = NULL, *token_file = NULL;
	_cleanup_free_ char *token = NULL;
	size_t n_mirrors = 0;
	struct fetch_options fo;
	enum fetcher_kind kind = FETCHER_KIND_AUTO;
	bool unpack = false, gc = false, pin = false, unpin = false, probe = false, pins = false;
	bool quiet = false;
	uint64_t budget = 0, v;
	unsigned u;
	char hex[CAS_HEX_LEN + 1];
	_cleanup_fetcher_ struct fetcher *f = NULL;
	_cleanup_free_ char *path = NULL;
	struct cd_error err = { 0 };
	struct progress prog = { 0 };
	int o, r;

	fetch_options_init(&fo);
	opterr = 0; /* our own one-line messages */
	while ((o = getopt_long(argc, argv, ":qhV", opts, NULL)) != -1) {
		switch (o) {
		case OPT_FROM:
			if (n_mirrors == MAX_MIRRORS)
				return usage_error("too many --from (at most 16)");
			mirrors[n_mirrors++] = optarg;
			break;
		case OPT_CACHE:
			cache = optarg;
			break;
		case OPT_INSTANCE:
			fo.instance = optarg;
			break;
		case OPT_UNPACK:
			unpack = true;
			break;
		case OPT_KIND:
			if (streq(optarg, "auto"))
				kind = FETCHER_KIND_AUTO;
			else if (streq(optarg, "archive"))
				kind = FETCHER_KIND_ARCHIVE;
			else if (streq(optarg, "executable"))
				kind = FETCHER_KIND_EXECUTABLE;
			else
				return usage_error("invalid --kind \"%s\"", optarg);
			break;
		case OPT_EXE_NAME:
			exe_name = optarg;
			break;
		case OPT_MAX_SIZE:
			if (parse_size(optarg, &v) < 0 || v == 0)
				return usage_error("invalid --max-size \"%s\"", optarg);
			fo.max_size = v;
			break;
		case OPT_BUDGET:
			if (parse_size(optarg, &budget) < 0)
				return usage_error("invalid --budget \"%s\"", optarg);
			break;
		case OPT_CONNECT_TIMEOUT:
			if (parse_uint(optarg, 3600, &u) < 0 || u == 0)
				return usage_error("invalid --connect-timeout \"%s\"", optarg);
			fo.connect_timeout_ms = u * 1000;
			break;
		case OPT_STALL_TIMEOUT:
			if (parse_uint(optarg, 3600, &u) < 0)
				return usage_error("invalid --stall-timeout \"%s\"", optarg);
			fo.low_speed_time_s = u;
			break;
		case OPT_ATTEMPTS:
			if (parse_uint(optarg, 100, &u) < 0 || u == 0)
				return usage_error("invalid --attempts \"%s\"", optarg);
			fo.attempts = u;
			break;
		case OPT_GC:
			gc = true;
			break;
		case OPT_PIN:
			pin = true;
			break;
		case OPT_UNPIN:
			unpin = true;
			break;
		case OPT_PROBE:
			probe = true;
			break;
		case OPT_PINS:
			pins = true;
			break;
		case OPT_CA_FILE:
			fo.ca_file = optarg;
			break;
		case OPT_TOKEN_FILE:
			token_file = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("cdfetch %s\n", CD_VERSION);
			return 0;
		case ':':
			return usage_error("option \"%s\" needs an argument", argv[optind - 1]);
		default:
			return usage_error("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (!cache && !probe)
		return usage_error("--cache DIR is required");
	if (gc + pin + unpin + probe + pins > 1)
		return usage_error("--gc, --pin, --unpin, --pins and --probe exclude each other");
	if (gc || pins) {
		if (optind != argc)
			return usage_error("%s takes no digest", gc ? "--gc" : "--pins");
	} else {
		if (optind + 1 != argc)
			return usage_error("%s", optind == argc ? "missing digest" :
								  "more than one digest given");
		if (cas_digest_parse(argv[optind], hex) < 0)
			return usage_error("invalid digest \"%s\" (want sha256:<64 hex>)",
					   argv[optind]);
		if (!pin && !unpin && n_mirrors == 0 && (!unpack || probe))
			return usage_error("at least one --from URL is required");
	}
	if (token_file) {
		r = fs_read_file_at(AT_FDCWD, token_file, 4096, &token, NULL);
		if (r < 0) {
			fprintf(stderr, "cdfetch: cannot read %s: %s\n", token_file, strerror(-r));
			return 1;
		}
		token[strcspn(token, "\r\n")] = '\0';
		if (!*token)
			return usage_error("%s holds no token", token_file);
		fo.bearer_token = token;
	}
	if (probe) {
		/* A private scratch cache: probing must not need (or touch) a real one. */
		char tmpl[] = "/tmp/cdfetch-probe.XXXXXX";
		int found = 0;

		if (!cache && !(cache = mkdtemp(tmpl))) {
			fprintf(stderr, "cdfetch: cannot create a scratch directory: %m\n");
			return 1;
		}
		r = fetcher_new(cache, 0, &f, &err);
		if (cache == tmpl)
			(void)fs_rm_rf_at(AT_FDCWD, tmpl);
		if (r < 0) {
			fprintf(stderr, "cdfetch: %s\n", cd_error_message(&err));
			return 1;
		}
		for (size_t i = 0; i < n_mirrors; i++) {
			uint64_t size = 0;

			cd_error_reset(&err);
			r = fetcher_probe(f, hex, mirrors[i], &fo, &size, &err);
			if (r >= 0) {
				printf("%llu %s\n", (unsigned long long)size, mirrors[i]);
				found++;
			} else if (r != -ENOENT) {
				fprintf(stderr, "cdfetch: %s\n", cd_error_message(&err));
			}
		}
		return found > 0 ? 0 : 1;
	}

	r = fetcher_new(cache, budget, &f, &err);
	if (r < 0) {
		fprintf(stderr, "cdfetch: %s\n", cd_error_message(&err));
		return 1;
	}
	if (gc) {
		struct fetcher_gc_stats st;

		r = fetcher_gc(f, &st, &err);
		if (r < 0) {
			fprintf(stderr, "cdfetch: %s\n", cd_error_message(&err));
			return 1;
		}
		printf("removed %u leftovers, evicted %u digests (%llu bytes), %llu bytes in use\n",
		       st.tmp_removed, st.evicted, (unsigned long long)st.bytes_evicted,
		       (unsigned long long)st.bytes_in_use);
		return 0;
	}
	if (pins) {
		_cleanup_free_ struct fetcher_pin *list = NULL;
		size_t n = 0;

		r = fetcher_pin_list(f, &list, &n);
		if (r < 0) {
			fprintf(stderr, "cdfetch: cannot list pins: %s\n", strerror(-r));
			return 1;
		}
		for (size_t i = 0; i < n; i++)
			printf("%u %s\n", list[i].count, list[i].digest);
		return 0;
	}
	if (pin || unpin) {
		unsigned n = 0;

		r = pin ? fetcher_pin(f, hex, &err) : fetcher_unpin(f, hex, &err);
		if (r >= 0)
			r = fetcher_pin_count(f, hex, &n);
		if (r < 0) {
			fprintf(stderr, "cdfetch: %s\n", cd_error_message(&err));
			return 1;
		}
		printf("%u\n", n);
		return 0;
	}
	if (!quiet && isatty(STDERR_FILENO)) {
		prog.hex = hex;
		prog.start = prog.last = clock_mono_usec();
		fo.progress = show_progress;
		fo.userdata = &prog;
	}
	r = n_mirrors > 0 ? fetcher_fetch(f, hex, mirrors, n_mirrors, &fo, &path, &err) :
			    fetcher_lookup(f, hex, &path);
	if (prog.shown)
		fputc('\n', stderr);
	if (r < 0) {
		if (n_mirrors == 0)
			cd_error_set(&err, r, "sha256:%s is not cached and no --from was given",
				     hex);
		fprintf(stderr, "cdfetch: %s\n", cd_error_message(&err));
		return 1;
	}
	if (unpack) {
		free(path);
		path = NULL;
		r = fetcher_materialize(f, hex, kind, exe_name, NULL, &path, &err);
		if (r < 0) {
			fprintf(stderr, "cdfetch: %s\n", cd_error_message(&err));
			return 1;
		}
	}
	printf("%s\n", path);
	return 0;
}
