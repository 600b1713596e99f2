#!/bin/bash
# End-to-end test of the packages (issue 10): build the .debs and the .rpms, lintian, install the
# .debs on this machine, check files, conffile, user, units, run taskd exactly as its unit says
# and talk to it with taskctl, purge, and check nothing is left. TAP output; exit 77 = skip.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
OUT=$BUILD/pkg
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
check() { # check "description" command...
	local d=$1
	shift
	if "$@" >>"$OUT/test.log" 2>&1; then ok "$d"; else not_ok "$d"; fi
}

if [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP packaging test needs root (it installs the .deb)"
	exit 77
fi
if dpkg -s codedeploy-agent >/dev/null 2>&1 || dpkg -s codedeploy-central >/dev/null 2>&1; then
	echo "1..0 # SKIP codedeploy packages already installed on this machine; not touching them"
	exit 77
fi
mkdir -p "$OUT"
: >"$OUT/test.log"
echo "1..16"

check "make deb builds codedeploy-agent and codedeploy-central" make -s BUILD="$BUILD" deb
agent_deb=$(ls "$OUT"/codedeploy-agent_*.deb 2>/dev/null | head -1)
central_deb=$(ls "$OUT"/codedeploy-central_*.deb 2>/dev/null | head -1)
check "lintian: no errors or warnings (overrides carry reasons)" \
	lintian --fail-on error,warning --suppress-tags-from-file /dev/null "$agent_deb" "$central_deb"
check "make rpm builds the same two packages" make -s BUILD="$BUILD" rpm

# Same payload in both formats: compare file lists (deb's /lib is rpm's /usr/lib; docs differ).
payload_deb() { for d in "$agent_deb" "$central_deb"; do dpkg-deb -c "$d"; done |
	awk '$1 !~ /^d/ {print $6}' | sed -e 's|^\./|/|' -e 's|^/lib/|/usr/lib/|' -e 's|\.gz$||' |
	grep -v -e '^/usr/share/doc/' -e '^/usr/share/lintian/' | sort; }
payload_rpm() { for r in $(find "$OUT/rpm/RPMS" -name 'codedeploy-*.rpm'); do rpm -qlp "$r"; done |
	grep -v -e '^/usr/share/doc/' -e '^/usr/lib/.build-id' -e '/codedeploy$' -e '^/etc/codedeploy$' |
	sed -e 's|\.gz$||' | sort; }
payload_deb >"$OUT/payload-deb.txt" 2>>"$OUT/test.log"
payload_rpm >"$OUT/payload-rpm.txt" 2>>"$OUT/test.log"
check "rpm -qlp lists the same payload as the .debs" diff -u "$OUT/payload-deb.txt" "$OUT/payload-rpm.txt"

check "apt-get install ./codedeploy-agent ./codedeploy-central" \
	env DEBIAN_FRONTEND=noninteractive apt-get install -y "./$agent_deb" "./$central_deb"
check "binaries installed" test -x /usr/sbin/taskd -a -x /usr/bin/taskctl -a -x /usr/sbin/deployd \
	-a -x /usr/bin/cdfetch -a -x /usr/sbin/taskwatch
check "man pages installed" test -f /usr/share/man/man8/taskd.8.gz -a \
	-f /usr/share/man/man5/taskd.conf.5.gz -a -f /usr/share/man/man1/taskctl.1.gz -a \
	-f /usr/share/man/man8/deployd.8.gz -a -f /usr/share/man/man5/deployd.conf.5.gz
check "/etc/codedeploy/taskd.conf is a conffile" \
	sh -c "dpkg-query -W -f='\${Conffiles}' codedeploy-agent | grep -q ' /etc/codedeploy/taskd.conf '"
check "deployd system user created" getent passwd deployd
check "systemd-analyze verify taskd.service deployd.service" \
	systemd-analyze verify /lib/systemd/system/taskd.service /lib/systemd/system/deployd.service
exposure=$(systemd-analyze security --offline=yes /lib/systemd/system/deployd.service 2>/dev/null |
	sed -n 's/.*Overall exposure level for deployd.service: \([0-9.]*\).*/\1/p')
check "deployd.service exposure ${exposure:-?} <= 2.5" \
	awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.5) }'

# Start taskd exactly as the unit's ExecStart says, then use taskctl with no flags.
execstart=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/taskd.service)
$execstart >"$OUT/taskd.log" 2>&1 &
taskd_pid=$!
for _ in $(seq 1 100); do
	taskctl ps >/dev/null 2>&1 && break
	sleep 0.1
done
check "taskd started as ExecStart says answers 'taskctl ps'" taskctl ps
check "token created 0600 in the state dir" sh -c \
	'[ "$(stat -c %a /var/lib/codedeploy/taskd.token)" = 600 ]'
kill "$taskd_pid" 2>/dev/null
wait "$taskd_pid" 2>/dev/null

{ dpkg -L codedeploy-agent; dpkg -L codedeploy-central; } | sort -u >"$OUT/installed.txt"
check "apt-get purge both packages" env DEBIAN_FRONTEND=noninteractive apt-get purge -y \
	codedeploy-agent codedeploy-central
left=$(while read -r f; do [ -f "$f" ] && echo "$f"; done <"$OUT/installed.txt")
check "purge leaves no files (${left:-none})" test -z "$left"
check "purge removes /etc/codedeploy and /var/lib/codedeploy" \
	sh -c '! test -e /etc/codedeploy/taskd.conf && ! test -e /var/lib/codedeploy'
[ "$fails" = 0 ]
