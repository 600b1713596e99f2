#!/bin/sh
# Style and static checks: clang-format (kernel-derived .clang-format) and cppcheck.
# `tests/lint.sh --list-sources` prints the files checked (used by `make format`).
set -u
cd "$(dirname "$0")/.."
sources() {
	git ls-files --cached --others --exclude-standard -- '*.c' '*.h' 2>/dev/null |
		grep -v -e '^build/' -e 'vmlinux.h$' -e '^tests/fuzz/corpus/'
}
if [ "${1:-}" = --list-sources ]; then
	sources
	exit 0
fi
rc=0
files=$(sources)
# shellcheck disable=SC2086
if ! clang-format --dry-run -Werror $files; then
	echo "lint: clang-format differs (run 'make format')"
	rc=1
fi
# shellcheck disable=SC2086
if ! cppcheck -q --error-exitcode=1 --inline-suppr --std=c11 --enable=warning,portability \
	--suppress=missingIncludeSystem -I. -D__GNUC__ -D_GNU_SOURCE $files; then
	echo "lint: cppcheck found problems"
	rc=1
fi
[ "$rc" = 0 ] && echo "lint: clean ($(echo "$files" | wc -l) files)"
exit $rc
