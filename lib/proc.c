/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "lib/fs.h"
#include "lib/macro.h"
#include "lib/str.h"

int proc_start_time(pid_t pid, uint64_t *ret)
{
	_cleanup_free_ char *text = NULL;
	char path[64], num[24];
	const char *p;
	size_t n;
	int r;

	if (pid <= 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = fs_read_file_at(AT_FDCWD, path, 4096, &text, NULL);
	if (r == -ENOENT)
		return -ESRCH;
	if (r < 0)
		return r;
	/* comm (field 2) may hold spaces and ')': fields resume after the LAST ')', and the char
	 * after it is the space before field 3. Each step moves to the space before the next field. */
	p = strrchr(text, ')');
	if (!p)
		return -EIO;
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
	}
	n = strcspn(p + 1, " \n");
	if (n == 0 || n >= sizeof(num))
		return -EIO;
	memcpy(num, p + 1, n);
	num[n] = '\0';
	return parse_u64(num, ret) < 0 ? -EIO : 0;
}

bool proc_is_same(pid_t pid, uint64_t start)
{
	uint64_t now;

	return pid > 0 && proc_start_time(pid, &now) >= 0 && now == start;
}
