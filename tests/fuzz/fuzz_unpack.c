/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for everything the fetcher parses from the outside: arbitrary bytes as a
 * (compressed) tar through the unpack policy and, when the input starts with 0x01, the rest as
 * the text parsers of cas.h (digest, Content-Range header, mirror URL and instance) and the
 * entry-path checks on their own; with 0x02, the rest is really extracted (into a scratch dir)
 * and the result is checked for the policy's promises: no setuid/setgid bits, no device nodes,
 * fifos or sockets, no symlink that resolves outside the tree.
 */
#include <fcntl.h>
#include <ftw.h>
#include <linux/openat2.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fetcher/cas.h"
#include "fetcher/unpack.h"
#include "lib/fs.h"

static char scratch[64];
static int tree_fd = -1;
static size_t tree_prefix;

static int check_node(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (st->st_mode & (S_ISUID | S_ISGID))
		abort();
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) || S_ISFIFO(st->st_mode) ||
	    S_ISSOCK(st->st_mode))
		abort();
	if (S_ISLNK(st->st_mode) && strlen(path) > tree_prefix + 1) {
		struct open_how how = { .flags = O_PATH | O_CLOEXEC,
					.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
		long fd = syscall(SYS_openat2, tree_fd, path + tree_prefix + 1, &how, sizeof(how));

		if (fd >= 0)
			close((int)fd);
		else if (errno == EXDEV)
			abort(); /* a published tree must never point outside itself */
	}
	return 0;
}

static void remove_scratch(void)
{
	(void)fs_rm_rf_at(AT_FDCWD, scratch);
}

static void extract_and_check(const uint8_t *data, size_t size)
{
	char tree[96], file[96];
	struct unpack_limits l;
	struct cd_error err = { 0 };
	int fd;

	if (!scratch[0]) {
		strcpy(scratch, "/tmp/cd-fuzz-unpack.XXXXXX");
		if (!mkdtemp(scratch))
			abort();
		atexit(remove_scratch);
	}
	snprintf(tree, sizeof(tree), "%s/tree", scratch);
	snprintf(file, sizeof(file), "%s/blob", scratch);
	(void)fs_rm_rf_at(AT_FDCWD, tree);
	if (mkdir(tree, 0755) < 0 || fs_write_atomic(file, data, size, 0600) < 0)
		abort();
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		abort();
	unpack_limits_init(&l);
	l.max_entries = 64;
	l.max_total_bytes = 256 << 10;
	l.max_path = 256;
	if (unpack_archive_fd(fd, tree, &l, NULL, &err) == 0) {
		tree_fd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		tree_prefix = strlen(tree);
		if (tree_fd < 0 || nftw(tree, check_node, 16, FTW_PHYS) != 0)
			abort();
		close(tree_fd);
	}
	close(fd);
	(void)fs_rm_rf_at(AT_FDCWD, tree);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct unpack_limits l;
	struct cd_error err = { 0 };

	if (size > 0 && data[0] == 0x01) {
		char *s = malloc(size), *url = NULL, *norm = NULL, hex[CAS_HEX_LEN + 1];
		const char *why, *sep;
		uint64_t a, b, t;

		if (!s)
			return 0;
		memcpy(s, data + 1, size - 1);
		s[size - 1] = '\0';
		(void)cas_digest_parse(s, hex);
		(void)cas_parse_content_range(s, &a, &b, &t);
		/* "base|instance" splits into a mirror and an instance name. */
		sep = strchr(s, '|');
		if (sep) {
			s[sep - s] = '\0';
			if (cas_blob_url(
				    s, sep + 1,
				    "0000000000000000000000000000000000000000000000000000000000000000",
				    &url) == 0)
				free(url);
		}
		if (unpack_normalize_path(s, 4096, &norm, &why) == 0) {
			(void)unpack_check_symlink(norm, sep ? sep + 1 : ".", 4096, &why);
			free(norm);
		}
		free(s);
		return 0;
	}
	if (size > 0 && data[0] == 0x02) {
		extract_and_check(data + 1, size - 1);
		return 0;
	}
	unpack_limits_init(&l);
	/* Small caps keep each run fast and exercise the limit paths. */
	l.max_entries = 256;
	l.max_total_bytes = 1 << 20;
	l.max_path = 256;
	(void)unpack_scan_memory(data, size, &l, &err);
	return 0;
}
