#!/bin/sh
# bench/fetch: cdfetch against its baselines, side by side in one run, with a private nginx on
# loopback (started and stopped here).
#   1. one SIZE_MB blob: `cdfetch` (download + streaming sha256 + fsync + atomic publish) vs
#      `curl -s URL | openssl dgst -sha256` (no disk at all) and `curl -o F && sha256sum F`;
#      best of RUNS each, ratio = cdfetch throughput / baseline throughput (goal >= 0.9).
#   2. an ART_MB artifact (tar of two files): first unpack, then the cached re-materialisation
#      taskd does per task start (+ the read-only bind mount, as root) vs `cp -a` of the tree.
#   3. CONC concurrent fetchers of one CONC_MB digest: cdfetch processes vs curl|openssl
#      pipelines; wall time and GETs seen by nginx.
# Usage: bench/fetch/run.sh   (env: BUILD SIZE_MB ART_MB CONC CONC_MB RUNS BENCH_DIR)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SIZE_MB=${SIZE_MB:-1024}
ART_MB=${ART_MB:-2048}
CONC=${CONC:-100}
CONC_MB=${CONC_MB:-64}
RUNS=${RUNS:-3}
CDFETCH=$BUILD/cdfetch
MATER=$BUILD/bench/bench_materialize
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for b in "$CDFETCH" "$MATER" "$NGINX"; do
	[ -x "$b" ] || { echo "bench/fetch: $b missing (make BUILD=$BUILD bench)" >&2; exit 1; }
done

T=$(mktemp -d "${BENCH_DIR:-/tmp}/cd-bench-fetch.XXXXXX")
NGINX_PID=
cleanup() {
	[ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

now_ns() { date +%s%N; }
mbps() { echo "$1 $2" | awk '{ printf "%.0f", $1 / ($2 / 1e9) }'; }   # MB, ns → MB/s

mkdir -p "$T/www/cas" "$T/ngx/tmp"
printf '%s' "$T" >"$T/www/ready"
for try in 1 2 3 4 5; do
	PORT=$(shuf -i 20000-60999 -n 1)
	cat >"$T/ngx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $T/ngx/nginx.pid;
error_log $T/ngx/error.log warn;
events { worker_connections 1024; }
http {
	log_format cas '\$request_method \$uri \$status';
	access_log $T/ngx/access.log cas;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $T/ngx/tmp/body;
	proxy_temp_path $T/ngx/tmp/proxy;
	fastcgi_temp_path $T/ngx/tmp/fastcgi;
	uwsgi_temp_path $T/ngx/tmp/uwsgi;
	scgi_temp_path $T/ngx/tmp/scgi;
	server { listen 127.0.0.1:$PORT; root $T/www; }
}
CONF
	"$NGINX" -p "$T/ngx" -c "$T/ngx/nginx.conf" -e "$T/ngx/error.log" &
	NGINX_PID=$!
	up=0
	for _ in $(seq 100); do
		# our nginx (it serves our marker), not whoever else owns a random port
		if [ "$(curl -s "http://127.0.0.1:$PORT/ready" 2>/dev/null)" = "$T" ]; then
			up=1
			break
		fi
		kill -0 "$NGINX_PID" 2>/dev/null || break
		sleep 0.05
	done
	[ "$up" = 1 ] && break
	kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; NGINX_PID=
done
[ -n "$NGINX_PID" ] || { echo "bench/fetch: cannot start nginx" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"

put() { # FILE → hex (served)
	h=$(sha256sum "$1" | cut -d' ' -f1)
	mv "$1" "$T/www/cas/$h"
	echo "$h"
}

echo "# bench/fetch on $(uname -r), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# cache dir: $T (fs: $(stat -f -c %T "$T")); nginx $("$NGINX" -v 2>&1 | sed 's/.*\///')"

# ---- 1. throughput -------------------------------------------------------------------------
head -c "$((SIZE_MB << 20))" /dev/urandom >"$T/blob"
H=$(put "$T/blob")
cat "$T/www/cas/$H" >/dev/null # page cache warm for every contender
best_pipe=0 best_file=0 best_cd=0
for r in $(seq "$RUNS"); do
	s=$(now_ns)
	got=$(curl -s "$URL/cas/$H" | openssl dgst -sha256 | sed 's/.*= //')
	e=$(now_ns)
	[ "$got" = "$H" ] || { echo "baseline hash mismatch" >&2; exit 1; }
	v=$(mbps "$SIZE_MB" $((e - s))); [ "$v" -gt "$best_pipe" ] && best_pipe=$v

	s=$(now_ns)
	curl -s -o "$T/curl.out" "$URL/cas/$H"
	got=$(sha256sum "$T/curl.out" | cut -d' ' -f1)
	e=$(now_ns)
	rm -f "$T/curl.out"
	[ "$got" = "$H" ] || { echo "baseline hash mismatch" >&2; exit 1; }
	v=$(mbps "$SIZE_MB" $((e - s))); [ "$v" -gt "$best_file" ] && best_file=$v

	rm -rf "$T/c1"
	s=$(now_ns)
	"$CDFETCH" "sha256:$H" --from "$URL" --cache "$T/c1" -q >/dev/null
	e=$(now_ns)
	v=$(mbps "$SIZE_MB" $((e - s))); [ "$v" -gt "$best_cd" ] && best_cd=$v
	echo "run $r: curl|openssl ${best_pipe} MB/s best, curl -o+sha256sum ${best_file} MB/s best, cdfetch ${best_cd} MB/s best"
done
rm -rf "$T/c1"
echo "throughput ${SIZE_MB} MiB: cdfetch ${best_cd} MB/s; curl|openssl dgst ${best_pipe} MB/s; curl -o + sha256sum ${best_file} MB/s"
echo "ratio cdfetch / (curl|openssl) = $(echo "$best_cd $best_pipe" | awk '{ printf "%.2f", $1 / $2 }')"
echo "ratio cdfetch / (curl -o + sha256sum) = $(echo "$best_cd $best_file" | awk '{ printf "%.2f", $1 / $2 }')"
rm -f "$T/www/cas/$H"

# ---- 2. materialisation --------------------------------------------------------------------
mkdir -p "$T/art"
head -c "$((ART_MB << 19))" /dev/urandom >"$T/art/part1"
head -c "$((ART_MB << 19))" /dev/urandom >"$T/art/part2"
tar -C "$T/art" -cf "$T/art.tar" .
rm -rf "$T/art"
A=$(put "$T/art.tar")
s=$(now_ns)
DIR=$("$CDFETCH" "sha256:$A" --from "$URL" --cache "$T/c2" --unpack -q)
e=$(now_ns)
echo "first fetch + unpack of ${ART_MB} MiB artifact: $(((e - s) / 1000000)) ms"
"$MATER" "$T/c2" "$A" 200
s=$(now_ns)
cp -a "$DIR" "$T/copy"
sync -f "$T/copy"
e=$(now_ns)
echo "cp -a of the ${ART_MB} MiB tree (+ sync, for reference): $(((e - s) / 1000000)) ms"
rm -rf "$T/copy" "$T/c2" "$T/www/cas/$A"

# ---- 3. concurrency ------------------------------------------------------------------------
head -c "$((CONC_MB << 20))" /dev/urandom >"$T/conc"
C=$(put "$T/conc")
: >"$T/ngx/access.log"
s=$(now_ns)
pids=
for i in $(seq "$CONC"); do
	"$CDFETCH" "sha256:$C" --from "$URL" --cache "$T/c3" -q >/dev/null &
	pids="$pids $!"
done
fails=0
for p in $pids; do wait "$p" || fails=$((fails + 1)); done
e=$(now_ns)
gets_cd=$(grep -c "^GET /cas/$C " "$T/ngx/access.log" || true)
t_cd=$(((e - s) / 1000000))
: >"$T/ngx/access.log"
s=$(now_ns)
pids=
for i in $(seq "$CONC"); do
	(curl -s "$URL/cas/$C" | openssl dgst -sha256 >/dev/null) &
	pids="$pids $!"
done
for p in $pids; do wait "$p"; done
e=$(now_ns)
gets_curl=$(grep -c "^GET /cas/$C " "$T/ngx/access.log" || true)
t_curl=$(((e - s) / 1000000))
echo "${CONC} concurrent fetchers of one ${CONC_MB} MiB digest: cdfetch ${t_cd} ms (${gets_cd} GET, ${fails} failed); curl|openssl ${t_curl} ms (${gets_curl} GETs); ratio $(echo "$t_curl $t_cd" | awk '{ printf "%.1f", $1 / $2 }')x"
