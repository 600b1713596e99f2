#!/bin/sh
# End-to-end test of cdfetch against a private nginx on loopback (TAP).
# Covers the CLI contract (help, version, usage errors), a verified fetch, unpack, and 50
# concurrent cdfetch processes of one digest causing exactly one GET in nginx's access log.
# Library-level cases (resume, stalls, disk full, malicious archives) live in test_fetcher_e2e.
set -u
. "$(dirname "$0")/lib.sh"
CDFETCH=${CDFETCH:-$BUILD/cdfetch}

need_exec "$CDFETCH"
[ -x "$NGINX" ] || skip_all "nginx not installed"
need_cmd curl python3

e2e_init fetcher-e2e
NGINX_PID=
E2E_PID_VARS=NGINX_PID

# /slow/ is rate-limited so that concurrent fetches overlap; /auth/ wants a bearer token.
start_nginx() {
	mkdir -p "$T/www/cas" "$T/www/slow/cas" "$T/www/auth/cas"
	e2e_start_nginx "$T/ngx" "$T/www" \
		'location /slow/ { limit_rate 16m; } location /auth/ { if ($http_authorization != "Bearer t0ken") { return 401; } }' \
		'$request_method $uri $status range=$http_range'
}

# put FILE [SUBDIR]: store FILE under its digest, print the hex
put() {
	h=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$T/www/${2:-}${2:+/}cas/$h"
	echo "$h"
}

if ! start_nginx; then
	echo "# cannot start nginx"; sed 's/^/# /' "$T/ngx/error.log" 2>/dev/null
	exit 1
fi
URL=$NGINX_URL

# CLI contract
"$CDFETCH" --help >"$T/out" 2>&1
check "--help exits 0 and prints usage" '[ $? = 0 ] && grep -q "^Usage: cdfetch" "$T/out"'
"$CDFETCH" --version >"$T/out" 2>&1
check "--version" '[ $? = 0 ] && grep -q "^cdfetch [0-9]" "$T/out"'
"$CDFETCH" sha256:xyz --from "$URL" --cache "$T/c" >"$T/out" 2>"$T/err"
rc=$?
check "bad digest: exit 2, one line" '[ $rc = 2 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "invalid digest" "$T/err"'
"$CDFETCH" --bogus >"$T/out" 2>"$T/err"
rc=$?
check "unknown option: exit 2, one line" '[ $rc = 2 ] && [ "$(wc -l <"$T/err")" = 1 ]' "$(cat "$T/err")"
"$CDFETCH" "sha256:$(printf %064d 0)" --cache "$T/c" >"$T/out" 2>"$T/err"
rc=$?
check "no --from: exit 2" '[ $rc = 2 ]'

# normal fetch
head -c 3000000 /dev/urandom >"$T/blob"
H=$(put "$T/blob")
"$CDFETCH" "sha256:$H" --from "$URL" --cache "$T/c" >"$T/out" 2>"$T/err"
rc=$?
check "fetch prints the cached blob path" '[ $rc = 0 ] && [ "$(cat "$T/out")" = "$T/c/sha256/$H" ]' "$(cat "$T/err")"
check "cached blob is byte-identical and read-only" 'cmp -s "$T/blob" "$T/c/sha256/$H" && [ "$(stat -c %a "$T/c/sha256/$H")" = 444 ]'

# 404 on the first mirror, second mirror has it
head -c 1000 /dev/urandom >"$T/b2"
H2=$(put "$T/b2")
"$CDFETCH" "$H2" --from "$URL/nothing-here" --from "$URL" --cache "$T/c" -q >"$T/out" 2>"$T/err"
rc=$?
check "404 then second mirror" '[ $rc = 0 ] && cmp -s "$T/b2" "$(cat "$T/out")"' "$(cat "$T/err")"

# mismatch: serve other bytes under H3's name
head -c 5000 /dev/urandom >"$T/b3"
H3=$(sha256sum "$T/b3" | cut -d' ' -f1)
head -c 5000 /dev/urandom >"$T/www/cas/$H3"
"$CDFETCH" "$H3" --from "$URL" --cache "$T/c" >"$T/out" 2>"$T/err"
rc=$?
check "digest mismatch refused, names both digests" '[ $rc = 1 ] && grep -q "expected sha256:$H3, got sha256:" "$T/err"' "$(cat "$T/err")"
check "mismatched blob not published, no tmp leftovers" '[ ! -e "$T/c/sha256/$H3" ] && [ -z "$(ls "$T/c/tmp" | grep -v "\.lock$")" ]'

# unpack a tar.gz
mkdir -p "$T/tree/bin" && echo hello >"$T/tree/bin/hello.txt" && chmod 4755 "$T/tree/bin/hello.txt"
tar -C "$T/tree" -czf "$T/app.tgz" .
H4=$(put "$T/app.tgz")
"$CDFETCH" "$H4" --from "$URL" --cache "$T/c" --unpack >"$T/out" 2>"$T/err"
rc=$?
check "--unpack prints the tree, setuid stripped" '[ $rc = 0 ] && [ "$(cat "$T/out")" = "$T/c/unpacked/$H4" ] && [ "$(cat "$T/c/unpacked/$H4/bin/hello.txt")" = hello ] && [ "$(stat -c %a "$T/c/unpacked/$H4/bin/hello.txt")" = 755 ]' "$(cat "$T/err")"

# 50 concurrent processes, one digest, slow enough that they overlap: exactly one GET
head -c 8000000 /dev/urandom >"$T/big"
H5=$(put "$T/big" slow)
pids=
for i in $(seq 50); do
	"$CDFETCH" "$H5" --from "$URL/slow" --cache "$T/c" -q >"$T/out.$i" 2>&1 &
	pids="$pids $!"
done
bad=0
for p in $pids; do wait "$p" || bad=$((bad + 1)); done
check "50 concurrent cdfetch all succeed" '[ $bad = 0 ]' "$bad failed: $(cat "$T"/out.* | grep -v "^/" | head -3)"
gets=$(grep -c "^GET /slow/cas/$H5 " "$T/ngx/access.log")
check "exactly one GET for 50 concurrent fetches" '[ "$gets" = 1 ]' "nginx saw $gets GETs"

# progress line on a terminal (script(1) provides one), none when stderr is not a terminal
if command -v script >/dev/null; then
	head -c 2000000 /dev/urandom >"$T/b6"
	H6=$(put "$T/b6")
	script -qec "$CDFETCH $H6 --from $URL --cache $T/c" /dev/null >"$T/tty.out" 2>&1
	check "progress line on a terminal" 'grep -q "sha256:$(echo "$H6" | cut -c1-12) .*100%" "$T/tty.out"' "$(cat -v "$T/tty.out" | head -3)"
	"$CDFETCH" "$H6" --from "$URL" --cache "$T/c7" >"$T/out" 2>"$T/err"
	check "no progress line when not a terminal" '[ ! -s "$T/err" ]'
else
	skip "progress line on a terminal" "script(1) missing"
	skip "no progress line when not a terminal" "script(1) missing"
fi

# processes share the leader's error too: one GET of wrong bytes, every process refuses
BADH=$(printf '7%.0s' $(seq 64))
head -c 4000000 /dev/urandom >"$T/www/slow/cas/$BADH"
pids=
for i in $(seq 20); do
	"$CDFETCH" "$BADH" --from "$URL/slow" --cache "$T/c" -q >"$T/bad.$i" 2>&1 &
	pids="$pids $!"
done
okc=0
for p in $pids; do wait "$p" && okc=$((okc + 1)); done
check "20 concurrent fetches of a bad blob all fail" '[ $okc = 0 ] && [ "$(grep -l "expected sha256:$BADH" "$T"/bad.* | wc -l)" = 20 ]' "$(head -2 "$T/bad.1")"
gets=$(grep -c "^GET /slow/cas/$BADH " "$T/ngx/access.log")
check "the failing download happened once" '[ "$gets" = 1 ]' "nginx saw $gets GETs"

# a fetcher killed mid-download leaves a .part; the next fetch and --gc recover
head -c 6000000 /dev/urandom >"$T/b8"
H8=$(put "$T/b8" slow)
"$CDFETCH" "$H8" --from "$URL/slow" --cache "$T/c8" -q >/dev/null 2>&1 &
kp=$!
for _ in $(seq 50); do ls "$T/c8/tmp" 2>/dev/null | grep -q "^$H8\..*\.part$" && break; sleep 0.02; done
sleep 0.2
kill -9 "$kp" 2>/dev/null; wait "$kp" 2>/dev/null
check "SIGKILL leaves a .part, nothing published" 'ls "$T/c8/tmp" | grep -q "\.part$" && [ ! -e "$T/c8/sha256/$H8" ]'
"$CDFETCH" --gc --cache "$T/c8" >"$T/out" 2>&1
check "--gc removes the dead download" '! ls "$T/c8/tmp" | grep -q "\.part$"' "$(cat "$T/out")"
"$CDFETCH" "$H8" --from "$URL/slow" --cache "$T/c8" -q >"$T/out" 2>"$T/err"
rc=$?
check "fetch after the crash succeeds" '[ $rc = 0 ] && cmp -s "$T/b8" "$T/c8/sha256/$H8"' "$(cat "$T/err")"

# ... and without gc, the next fetch continues the dead download's bytes with a Range request
"$CDFETCH" "$H8" --from "$URL/slow" --cache "$T/c10" -q >/dev/null 2>&1 &
kp=$!
for _ in $(seq 100); do
	[ -n "$(find "$T/c10/tmp" -name "$H8.*.part" -size +100k 2>/dev/null)" ] && break
	sleep 0.02
done
kill -9 "$kp" 2>/dev/null; wait "$kp" 2>/dev/null
check "killed again mid-download" 'ls "$T/c10/tmp" | grep -q "\.part$"'
before=$(grep -c "^GET /slow/cas/$H8 206 range=bytes=" "$T/ngx/access.log")
"$CDFETCH" "$H8" --from "$URL/slow" --cache "$T/c10" -q >"$T/out" 2>"$T/err"
rc=$?
after=$(grep -c "^GET /slow/cas/$H8 206 range=bytes=" "$T/ngx/access.log")
check "the next fetch resumes the dead download" '[ $rc = 0 ] && [ $((after - before)) = 1 ] && cmp -s "$T/b8" "$T/c10/sha256/$H8"' "rc=$rc 206s: $before -> $after $(cat "$T/err")"

# pins via the CLI persist; unpin of an unpinned digest fails
"$CDFETCH" --pin "$H" --cache "$T/c" >/dev/null && out=$("$CDFETCH" --pin "$H" --cache "$T/c")
check "--pin twice counts 2" '[ "$out" = 2 ]'
out=$("$CDFETCH" --pins --cache "$T/c")
check "--pins lists it" '[ "$out" = "2 sha256:$H" ]' "$out"
"$CDFETCH" --unpin "$H" --cache "$T/c" >/dev/null && "$CDFETCH" --unpin "$H" --cache "$T/c" >/dev/null
"$CDFETCH" --unpin "$H" --cache "$T/c" >"$T/out" 2>"$T/err"
rc=$?
check "--unpin of an unpinned digest exits 1" '[ $rc = 1 ] && grep -q "not pinned" "$T/err"'

# bearer token from a file (deployd's /cas needs one)
head -c 3000 /dev/urandom >"$T/b9"
H9=$(put "$T/b9" auth)
"$CDFETCH" "$H9" --from "$URL/auth" --cache "$T/c" >"$T/out" 2>"$T/err"
rc=$?
check "401 without a token" '[ $rc = 1 ] && grep -q "HTTP 401" "$T/err"' "$(cat "$T/err")"
printf 't0ken\n' >"$T/token"
"$CDFETCH" "$H9" --from "$URL/auth" --cache "$T/c" --token-file "$T/token" >"$T/out" 2>"$T/err"
rc=$?
check "--token-file authorises" '[ $rc = 0 ] && cmp -s "$T/b9" "$(cat "$T/out")"' "$(cat "$T/err")"

# --probe: HEAD per mirror, no cache needed
"$CDFETCH" --probe "$H2" --from "$URL/nothing-here" --from "$URL" >"$T/out" 2>"$T/err"
rc=$?
check "--probe prints size and the mirror that has it" '[ $rc = 0 ] && [ "$(cat "$T/out")" = "1000 $URL" ]' "$(cat "$T/out" "$T/err")"
"$CDFETCH" --probe "$(printf %064d 5)" --from "$URL" >"$T/out" 2>"$T/err"
rc=$?
check "--probe of a missing digest exits 1" '[ $rc = 1 ] && [ ! -s "$T/out" ]'

# gc keeps live data, removes leftovers
: >"$T/c/tmp/$H5.deadbeef.part"
"$CDFETCH" --gc --cache "$T/c" >"$T/out" 2>"$T/err"
rc=$?
check "--gc removes a crashed leftover" '[ $rc = 0 ] && [ ! -e "$T/c/tmp/$H5.deadbeef.part" ] && [ -e "$T/c/sha256/$H5" ]' "$(cat "$T/out" "$T/err")"
tap_end
