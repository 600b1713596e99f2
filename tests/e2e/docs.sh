#!/bin/bash
# The user-facing docs match the code (TAP): every flag that taskd, deployd and taskctl (and each
# taskctl verb) print in --help is in their man page, every documented option exists; every key
# the config parsers accept is in the packaged conffile and in the man page, and every key of
# the conffile, uncommented, is accepted by the real parser; the defaults printed by --help are
# the documented ones; scdoc builds each page without a warning and each page has the sections
# a reference page needs; the bash completion parses, offers every verb and each verb's flags,
# and completes task ids from a running API through the real taskctl. Needs no root.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1))
	fails=$((fails + 1))
	echo "not ok $n - $1"
	[ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/# /'
}
# expect DESCRIPTION EXPECTED ACTUAL: ok when equal, else show what came.
expect() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected: $2"$'\n'"got: $3"; fi
}
# check_none DESCRIPTION MISSING-LIST: ok when the list is empty, else list what is missing.
check_none() {
	if [ -z "$2" ]; then ok "$1"; else not_ok "$1" "missing: $(echo $2)"; fi
}

for tool in scdoc bash python3; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "1..0 # SKIP $tool is not installed"
		exit 77
	fi
done

T=$(mktemp -d /tmp/cd-docs-e2e.XXXXXX)
SERVER_PID=
cleanup() {
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

# The pages of this area must exist; every page in docs/man/ is checked.
PAGES="taskd.8 taskd.conf.5 taskctl.1 deployd.8 deployd.conf.5"
ALL_PAGES=$(cd docs/man && for f in *.scd; do echo "${f%.scd}"; done | sort)
TASKD=$BUILD/taskd
DEPLOYD=$BUILD/deployd
TASKCTL=$BUILD/taskctl
COMPLETION=packaging/completion/taskctl.bash

if make -s BUILD="$BUILD" "$TASKD" "$TASKCTL" "$DEPLOYD" man >"$T/make.log" 2>&1; then
	ok "make builds taskd, taskctl, deployd and the man pages"
else
	not_ok "make builds taskd, taskctl, deployd and the man pages" "$(tail -20 "$T/make.log")"
fi
for b in "$TASKD" "$TASKCTL" "$DEPLOYD"; do
	if [ ! -x "$b" ]; then
		not_ok "$b exists"
		echo "1..$n"
		exit 1
	fi
done
# The other programs with a page in sections 1 and 8 (cdfetch, taskwatch): their flags are
# checked when they build here.
OTHER_PROGS=""
for p in $ALL_PAGES; do
	case $p in
	taskd.8 | deployd.8 | taskctl.1) ;;
	*.1 | *.8) OTHER_PROGS="$OTHER_PROGS ${p%.*}" ;;
	esac
done
for prog in $OTHER_PROGS; do
	make -s BUILD="$BUILD" "$BUILD/$prog" >>"$T/make-other.log" 2>&1
done

# Plain text of a page: groff through man(1) (no hyphenation, no justification, ASCII, very
# wide lines so that no option is ever split), else groff itself.
render() {
	if command -v man >/dev/null 2>&1; then
		LC_ALL=C MANWIDTH=1000 man --no-hyphenation --no-justification -E ascii -l "$1" \
			2>/dev/null | col -b
	else
		LC_ALL=C groff -man -Tascii -rLL=1000n -P-cbou "$1" 2>/dev/null
	fi
}
# has TEXT-FILE TOKEN: TOKEN appears as a whole word (an option or key) in the file.
has() { grep -qE -- "(^|[^A-Za-z0-9_-])$(printf '%s' "$2" | sed 's/[.[\*^$]/\\&/g')([^A-Za-z0-9_-]|$)" "$1"; }
# Long and short options in some --help text (stdin): --word-word and -x.
flags_of() { grep -oE -- '(^|[][ ,|(])--?[A-Za-z][A-Za-z0-9-]*' | sed 's/^[][ ,|(]//' | sort -u; }
# The paragraph of a term (an option or a key) in rendered text: its line up to the next blank.
para() { awk -v t="$2" 'substr($0, 1, length(t)) == t { p = 1 } p && /^[[:space:]]*$/ { exit } p' "$1"; }

# ---------------------------------------------------------------- pages build and are complete
missing=""
warned=""
for p in $PAGES; do
	[ -f "docs/man/$p.scd" ] || missing="$missing docs/man/$p.scd"
done
check_none "a scdoc source exists for each of $PAGES" "$missing"
for p in $ALL_PAGES; do
	src=docs/man/$p.scd
	if ! scdoc <"$src" >"$T/$p" 2>"$T/$p.err" || [ -s "$T/$p.err" ]; then
		warned="$warned $p: $(head -3 "$T/$p.err")"
	fi
	render "$T/$p" >"$T/$p.txt"
done
check_none "scdoc builds every page without errors or warnings ($(echo $ALL_PAGES))" "$warned"

sections_of() { # page → sections it must have
	case $1 in
	taskd.8 | deployd.8)
		echo NAME SYNOPSIS DESCRIPTION OPTIONS FILES ENVIRONMENT SIGNALS EXIT_STATUS \
			SECURITY EXAMPLES SEE_ALSO ;;
	taskctl.1) echo NAME SYNOPSIS DESCRIPTION OPTIONS FILES ENVIRONMENT EXIT_STATUS EXAMPLES SEE_ALSO ;;
	*.5) echo NAME SYNOPSIS DESCRIPTION FORMAT KEYS EXAMPLES SEE_ALSO ;;
	*) echo NAME SYNOPSIS DESCRIPTION OPTIONS EXIT_STATUS SEE_ALSO ;;
	esac
}
for p in $ALL_PAGES; do
	[ -s "$T/$p.txt" ] || continue
	missing=""
	for s in $(sections_of $p); do
		s=${s//_/ }
		grep -qx "$s" "$T/$p.txt" || missing="$missing [$s]"
	done
	check_none "$p has the sections of a reference page" "$missing"
	name=${p%.*}
	if grep -qE "^ +$name - " "$T/$p.txt"; then
		ok "$p: NAME line is '$name - ...'"
	else
		not_ok "$p: NAME line is '$name - ...'"
	fi
done

# ---------------------------------------------------------------- flags: --help ⇄ man page
# Every flag --help prints is in the page; every option the page's OPTIONS section documents
# (or one of its aliases on the same line) is printed by --help; every default --help prints
# is in that option's paragraph.
check_flags() { # NAME PAGE HELP-FILE
	local name=$1 page=$2 help=$3 missing="" f opts line v
	for f in $(flags_of <"$help"); do has "$T/$page.txt" "$f" || missing="$missing $f"; done
	check_none "$page documents every flag of '$name --help'" "$missing"

	missing=""
	opts=$(awk '/^OPTIONS$/ { p = 1; next } /^[A-Z]/ { p = 0 } p && /^       -/' "$T/$page.txt")
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		local found=0
		for f in $(printf '%s\n' "$line" | flags_of); do has "$help" "$f" && found=1; done
		[ $found = 1 ] || missing="$missing [$(echo $line)]"
	done <<<"$opts"
	if [ -z "$opts" ]; then
		not_ok "$page: OPTIONS section lists options"
	else
		check_none "every option in $page's OPTIONS exists in '$name --help'" "$missing"
	fi

	missing=""
	while IFS= read -r line; do
		f=$(printf '%s\n' "$line" | flags_of | head -1)
		v=$(printf '%s\n' "$line" | sed -n 's/.*(default:\{0,1\} \([^ ;),]*\).*/\1/p')
		[ -n "$f" ] && [ -n "$v" ] || continue
		case $v in "<"*) continue ;; esac # derived from another option
		para "$T/$page.txt" "       $f" | grep -qF -- "$v" || missing="$missing $f=$v"
	done <"$help"
	check_none "defaults printed by '$name --help' are in $page" "$missing"
}

"$TASKD" --help >"$T/taskd.help" 2>&1
"$DEPLOYD" --help >"$T/deployd.help" 2>&1
"$TASKCTL" --help >"$T/taskctl.help" 2>&1
[ -s "$T/taskd.8.txt" ] && check_flags taskd taskd.8 "$T/taskd.help"
[ -s "$T/deployd.8.txt" ] && check_flags deployd deployd.8 "$T/deployd.help"
[ -s "$T/taskctl.1.txt" ] && check_flags taskctl taskctl.1 "$T/taskctl.help"
for prog in $OTHER_PROGS; do
	page=$(cd docs/man && for f in "$prog".[18].scd; do echo "${f%.scd}"; done | head -1)
	if [ -x "$BUILD/$prog" ] && "$BUILD/$prog" --help >"$T/$prog.help" 2>&1; then
		check_flags "$prog" "$page" "$T/$prog.help"
	else
		ok "$page: flags not checked # SKIP $BUILD/$prog did not build here"
	fi
done

# taskctl verbs: the table in agent/taskctl.c is the truth.
VERBS=$(sed -n '/^static const struct verb verbs\[\] = {/,/^};/p' agent/taskctl.c |
	grep -oE '^[[:space:]]*\{ "[a-z]+"' | grep -oE '[a-z]+' | sort -u)
SERVER_VERBS=$(sed -n '/^static const struct verb verbs\[\] = {/,/^};/p' agent/taskctl.c |
	tr -d '\n' | grep -oE '\{ "[a-z]+",[^}]*,[[:space:]]*true[[:space:]]*\}' | grep -oE '^\{ "[a-z]+"' |
	grep -oE '[a-z]+' | sort -u)
TASKD_VERBS=$(comm -23 <(echo "$VERBS") <(echo "$SERVER_VERBS"))
if [ "$(echo $VERBS | wc -w)" -ge 10 ] && [ -n "$SERVER_VERBS" ]; then
	ok "taskctl's verb table read from agent/taskctl.c ($(echo $VERBS))"
else
	not_ok "taskctl's verb table read from agent/taskctl.c" "got: $VERBS / $SERVER_VERBS"
fi
# A taskd verb that --server does not refuse is a deployd verb too (events).
for v in $TASKD_VERBS; do
	"$TASKCTL" --server http://127.0.0.1:1 "$v" 2>&1 </dev/null | grep -q -- 'drop --server' ||
		SERVER_VERBS="$SERVER_VERBS $v"
done

GLOBAL_FLAGS=$(sed -n '/^Options:/,/^$/p' "$T/taskctl.help" | flags_of)
# verb_flags VERB: the flags of `taskctl VERB --help` that belong to the verb (not globals).
verb_flags() {
	sed 's/^Usage: taskctl \[OPTIONS\] //' "$T/verb-$1.help" | flags_of |
		grep -vxF -f <(printf '%s\n' $GLOBAL_FLAGS)
}
missing=""
bad_help=""
missing_flags=""
for v in $VERBS; do
	# the verb is documented as a term of its own ("job" as "job get ...")
	grep -qE "^ {7}$v( |$)" "$T/taskctl.1.txt" || missing="$missing $v"
	if ! "$TASKCTL" "$v" --help >"$T/verb-$v.help" 2>&1; then
		bad_help="$bad_help $v"
		continue
	fi
	for f in $(verb_flags "$v"); do
		# the flag must be on the verb's term line or in its paragraph
		grep -E "^ {7}$v( |$)" -A12 "$T/taskctl.1.txt" | has /dev/stdin "$f" ||
			missing_flags="$missing_flags $v:$f"
	done
done
check_none "taskctl.1 documents every verb" "$missing"
check_none "'taskctl VERB --help' exits 0 for every verb" "$bad_help"
check_none "taskctl.1 documents every flag of each 'taskctl VERB --help'" "$missing_flags"

# ---------------------------------------------------------------- REST routes
# Every route in the route tables (agent/api.c; central/*.c, the pipelines endpoints included)
# is a term of its page, "METHOD /path/PARAM" with {param} written in capitals, and every
# route term of the page is in the code. /healthz is built into api/http_server.c.
routes_of() { # FILES... → "METHOD path" lines
	{
		echo "GET /healthz"
		grep -ohE '\{ "(GET|PUT|POST|DELETE|HEAD|PATCH)", "/[^"]*"' "$@" |
			sed -E 's/^\{ "([A-Z]+)", "([^"]*)"/\1 \2/'
	} | sort -u
}
page_routes() { grep -oE '^       (GET|PUT|POST|DELETE|HEAD|PATCH) /[^ ?[]*' "$1" | sed 's/^ *//' | sort -u; }
check_routes() { # PAGE FILES...
	local page=$1 r re missing="" extra="" found
	shift
	routes_of "$@" >"$T/routes.code"
	page_routes "$T/$page.txt" >"$T/routes.page"
	while read -r r; do
		re=$(printf '%s' "$r" | sed -E 's/\{[a-z_]+\*?\}/[A-Z][A-Z_@]*/g')
		grep -qxE "$re" "$T/routes.page" || missing="$missing [$r]"
	done <"$T/routes.code"
	check_none "$page documents every route in the code ($(wc -l <"$T/routes.code"))" "$missing"
	while read -r r; do
		found=0
		while read -r re; do
			re=$(printf '%s' "$re" | sed -E 's/\{[a-z_]+\*?\}/[A-Z][A-Z_@]*/g')
			printf '%s\n' "$r" | grep -qxE "$re" && found=1 && break
		done <"$T/routes.code"
		[ $found = 1 ] || extra="$extra [$r]"
	done <"$T/routes.page"
	check_none "every route $page documents exists in the code" "$extra"
}
check_routes taskd.8 agent/api.c
check_routes deployd.8 central/*.c

# ---------------------------------------------------------------- config keys
# The parsers' key tables are the truth: agent/config.c keys[], central/config.c
# deployd_config_set() and uint_keys[] (the pipelines role's keys are deployd.conf keys).
TASKD_KEYS=$(sed -n '/^static const struct key keys\[\] = {/,/^};/p' agent/config.c |
	grep -oE '\{ "[a-z_]+", K_' | grep -oE '"[a-z_]+"' | tr -d '"' | sort -u)
DEPLOYD_KEYS=$({
	grep -oE 'streq\(key, "[a-z_]+"\)' central/config.c
	grep -oE '\{ "[a-z_]+", offsetof\(struct deployd_config' central/config.c
} | grep -oE '"[a-z_]+"' | tr -d '"' | sort -u)
for set in "taskd:TASKD_KEYS:20" "deployd:DEPLOYD_KEYS:20"; do
	IFS=: read -r what var min <<<"$set"
	cnt=$(echo ${!var} | wc -w)
	if [ "$cnt" -ge "$min" ]; then
		ok "$what keys read from the parser ($cnt)"
	else
		not_ok "$what keys read from the parser" "only $cnt: ${!var} (did the parser change shape?)"
	fi
done

conf_keys() { sed -n 's/^#\{0,1\}\([a-z_][a-z_]*\) =.*/\1/p' "$1" | sort -u; }
# man page terms "key = VALUE" (conf pages).
man_keys() { grep -oE '^ {7}[a-z_]+ = ' "$1" | grep -oE '[a-z_]+' | sort -u; }

check_keys() { # PROG CONF PAGE KEYS...
	local prog=$1 conf=$2 page=$3 k missing=""
	shift 3
	for k in "$@"; do conf_keys "$conf" | grep -qx "$k" || missing="$missing $k"; done
	check_none "$conf lists every key $prog accepts" "$missing"
	missing=""
	for k in "$@"; do man_keys "$T/$page.txt" | grep -qx "$k" || missing="$missing $k"; done
	check_none "$page documents every key $prog accepts" "$missing"
	missing=""
	for k in $(conf_keys "$conf") $(man_keys "$T/$page.txt"); do
		printf '%s\n' "$@" | grep -qx "$k" || missing="$missing $k"
	done
	check_none "$conf and $page document no key $prog does not accept" "$missing"
}
check_keys taskd packaging/taskd.conf taskd.conf.5 $TASKD_KEYS
check_keys deployd packaging/deployd.conf deployd.conf.5 $DEPLOYD_KEYS


# Uncomment every key of a conffile: the real parser must accept the whole file. An invalid
# --log-level, applied after the file, makes the binary stop right there with exit 2; its
# message names --log-level only when the file itself was fine.
check_conf_parses() { # PROG BIN CONF
	local out
	sed -n -e 's/^#\([a-z_][a-z_]* =\)/\1/' -e '/^[a-z_][a-z_]* =/p' "$3" >"$T/$1.conf"
	out=$("$2" --config "$T/$1.conf" --log-level not-a-level 2>&1)
	if [ $? = 2 ] && printf '%s' "$out" | grep -q -- '--log-level' &&
		! printf '%s' "$out" | grep -q "$T/$1.conf"; then
		ok "$3 with every key uncommented is accepted by $1's parser ($(wc -l <"$T/$1.conf") keys)"
	else
		not_ok "$3 with every key uncommented is accepted by $1's parser" "$out"
	fi
}
check_conf_parses taskd "$TASKD" packaging/taskd.conf
check_conf_parses deployd "$DEPLOYD" packaging/deployd.conf

# The conffile's defaults and the man page's agree (for plain values).
check_conf_defaults() { # CONF PAGE
	local k v missing=""
	while IFS='=' read -r k v; do
		k=$(echo $k)
		v=$(echo $v)
		case $v in '' | */*) continue ;; esac
		para "$T/$2.txt" "       $k = " | grep -qF "Default: $v" || missing="$missing $k=$v"
	done < <(sed -n 's/^#\([a-z_][a-z_]* =.*\)/\1/p' "$1")
	check_none "defaults in $1 match $2" "$missing"
}
check_conf_defaults packaging/taskd.conf taskd.conf.5
check_conf_defaults packaging/deployd.conf deployd.conf.5

# The packaged units and conffiles agree on the state directory.
unit_state() { sed -n 's/^StateDirectory=//p' "$1" | awk '{ print "/var/lib/" $1 }'; }
conf_state() { sed -n 's/^state_dir = *//p' "$1"; }
ts=$(conf_state packaging/taskd.conf)
ts=${ts:-$(sed -n 's/^#define TASKD_DEFAULT_STATE_DIR "\(.*\)"/\1/p' agent/config.h)}
ds=$(conf_state packaging/deployd.conf)
ds=${ds:-$(sed -n 's/^#define DEPLOYD_DEFAULT_STATE_DIR "\(.*\)"/\1/p' central/config.h)}
expect "taskd's state dir is taskd.service's StateDirectory" \
	"$(unit_state packaging/systemd/taskd.service)" "$ts"
expect "deployd's state dir is deployd.service's StateDirectory" \
	"$(unit_state packaging/systemd/deployd.service)" "$ds"
missing=""
for ref in $(sed -n 's/^Documentation=//p' packaging/systemd/*.service); do
	case $ref in
	man:*'('*')')
		m=${ref#man:}
		sec=${m#*(}
		[ -f "docs/man/${m%%(*}.${sec%)}.scd" ] || missing="$missing $ref"
		;;
	esac
done
check_none "every man: page named in the units' Documentation= exists" "$missing"

# ---------------------------------------------------------------- bash completion
if bash -n "$COMPLETION" 2>"$T/bash-n.err"; then
	ok "bash -n $COMPLETION"
else
	not_ok "bash -n $COMPLETION" "$(cat "$T/bash-n.err")"
fi

# complete [--full] WORD...: COMPREPLY of the completion function for the words (the last one
# is being completed), one per line; --full first loads bash-completion as an interactive
# shell would (it changes how words are split).
complete_words() {
	local full=""
	[ "$1" = --full ] && full=1 && shift
	bash -c '
		[ -n "$1" ] && [ -f /usr/share/bash-completion/bash_completion ] &&
			. /usr/share/bash-completion/bash_completion
		shift
		. "$1" || exit 1
		shift
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE="${COMP_WORDS[*]}"
		COMP_POINT=${#COMP_LINE}
		COMPREPLY=()
		_taskctl
		printf "%s\n" "${COMPREPLY[@]}"
	' _ "$full" "$COMPLETION" "$@"
}

for mode in "" --full; do
	label=${mode:+ (with bash-completion loaded)}
	out=$(complete_words $mode taskctl "")
	missing=""
	for v in $TASKD_VERBS; do printf '%s\n' "$out" | grep -qx "$v" || missing="$missing $v"; done
	check_none "completion offers every taskd verb$label" "$missing"
	out=$(complete_words $mode taskctl --server http://127.0.0.1:7400 "")
	missing=""
	for v in $SERVER_VERBS; do printf '%s\n' "$out" | grep -qx "$v" || missing="$missing $v"; done
	check_none "completion offers every deployd verb after --server$label" "$missing"
done

out=$(complete_words taskctl -)
missing=""
for f in $GLOBAL_FLAGS; do
	printf '%s\n' "$out" | grep -qx -- "$f" || missing="$missing $f"
done
check_none "completion offers every global flag of taskctl --help" "$missing"
out=$(complete_words taskctl -o "" | sort | tr '\n' ' ')
expect "completion offers table, wide, json after -o" "json table wide " "$out"
out=$(complete_words taskctl --server http://127.0.0.1:7400 job "" | sort | tr '\n' ' ')
expect "completion offers job's subcommands" "get put start stop " "$out"
out=$(complete_words taskctl --server http://127.0.0.1:7400 job put "")
expect "completion offers -f after job put" "-f" "$out"
out=$(complete_words taskctl ps --state "" | sort | tr '\n' ' ')
expect "completion offers the states after ps --state" "DONE ERROR PENDING RUNNING " "$out"

# A verb's flags are offered after "VERB -", or after "VERB SUB -" for a deployd verb with
# subcommands (job put -f).
missing=""
for v in $VERBS; do
	[ -s "$T/verb-$v.help" ] || continue
	if printf ' %s ' $SERVER_VERBS | grep -q " $v " && ! printf ' %s ' $TASKD_VERBS | grep -q " $v "; then
		srv=(--server http://127.0.0.1:7400)
		subs=$(complete_words taskctl "${srv[@]}" "$v" "" | grep -v '^-')
	else
		srv=()
		subs=""
	fi
	out=$(
		complete_words taskctl "${srv[@]}" "$v" -
		for sub in $subs; do complete_words taskctl "${srv[@]}" "$v" "$sub" -; done
	)
	for f in $(verb_flags "$v"); do
		printf '%s\n' "$out" | grep -qx -- "$f" || missing="$missing $v:$f"
	done
done
check_none "completion offers each verb's flags from 'taskctl VERB --help'" "$missing"

# Task ids and job URLs come from `taskctl ps -o json`, jobs of `job get` from `taskctl
# --server URL jobs`, run by the completion with the --host/--server and --token typed on the
# line. A minimal stand-in for GET /v1/tasks (taskd) and GET /v1/jobs (deployd) checks the
# token, so the real taskctl's JSON output is what the completion parses.
cat >"$T/api.py" <<'EOF'
import http.server, json, sys
TASKS = {"tasks": [
    {"task_id": "01a0c0ffee0000000000000000aa", "job": "job://local/local-1/web",
     "state": "RUNNING", "reason": None, "restarts": 0},
    {"task_id": "01a0c0ffee0000000000000000bb", "job": "job://local/local-1/web",
     "state": "DONE", "reason": "exited", "exit_code": 0, "restarts": 0},
]}
JOBS = {"jobs": [
    {"job_id": "01a0c0ffee00000000000000j001", "job": "job://local/local-1/web", "name": "web",
     "state": "RUNNING", "version": 1, "reason": None},
    {"job_id": "01a0c0ffee00000000000000j002", "job": "job://local/local-1/batch",
     "name": "batch", "state": "DONE", "version": 3, "reason": "completed"},
], "next_page_token": None}
PIPELINES = {"pipelines": [
    {"pipeline_id": "01a0c0ffee00000000000000p001", "name": "fooservice", "owner": "team-foo",
     "active_version": 1, "latest_version": 2},
], "next_page_token": None}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer docs-e2e-token-0123456789":
            self.send_response(401); self.end_headers(); return
        doc = {"/v1/tasks": TASKS, "/v1/jobs": JOBS,
               "/v1/pipelines": PIPELINES}.get(self.path.split("?")[0])
        if doc is None:
            self.send_response(404); self.end_headers(); return
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
python3 "$T/api.py" >"$T/api.port" 2>"$T/api.err" &
SERVER_PID=$!
for _ in $(seq 1 50); do [ -s "$T/api.port" ] && break; sleep 0.1; done
port=$(head -1 "$T/api.port")
TOKEN=docs-e2e-token-0123456789
if [ -n "$port" ]; then
	url=http://127.0.0.1:$port
	for mode in "" --full; do
		out=$(complete_words $mode "$TASKCTL" --host "$url" --token $TOKEN stop "" |
			sort | tr '\n' ' ')
		expect "completion offers task ids from 'taskctl ps -o json' for stop${mode:+ ($mode)}" \
			"01a0c0ffee0000000000000000aa 01a0c0ffee0000000000000000bb " "$out"
	done
	out=$(complete_words "$TASKCTL" --host "$url" --token $TOKEN logs -f 01a0c0ffee0000000000000000b)
	expect "completion completes a task id prefix after logs -f" \
		01a0c0ffee0000000000000000bb "$out"
	out=$(complete_words "$TASKCTL" --host "$url" --token $TOKEN rm 01a0c0ffee0000000000000000aa "")
	expect "completion offers no second task id" "" "$out"
	for mode in "" --full; do
		out=$(complete_words $mode "$TASKCTL" --host "$url" --token $TOKEN ps --job "")
		expect "completion offers the job URLs of the tasks after ps --job${mode:+ ($mode)}" \
			"job://local/local-1/web" "$out"
	done
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN job get "" | sort | tr '\n' ' ')
	expect "completion offers the cluster's jobs after job get" \
		"local/local-1/batch local/local-1/web " "$out"
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN job get local/local-1/w)
	expect "completion completes a job prefix after job get" "local/local-1/web" "$out"
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN job stop "" | sort | tr '\n' ' ')
	expect "completion offers the cluster's jobs after job stop" \
		"local/local-1/batch local/local-1/web " "$out"
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN job put -f "$T/api.py" l |
		sort | tr '\n' ' ')
	expect "completion offers the cluster's jobs after job put -f FILE" \
		"local/local-1/batch local/local-1/web " "$out"
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN runs "")
	expect "completion offers pipeline ids after runs" "01a0c0ffee00000000000000p001" "$out"
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN run "" | sort | tr '\n' ' ')
	expect "completion offers pipeline ids, cancel and retry after run --server" \
		"01a0c0ffee00000000000000p001 cancel retry " "$out"
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN schema put 01a "")
	expect "completion offers no second pipeline id after schema put ID" "" "$out"
	out=$(complete_words "$TASKCTL" --server "$url" --token $TOKEN schema put 01a -)
	expect "completion offers schema put's flags" "$(printf '%s\n' -f --file --if-match --help)" "$out"
	out=$(complete_words "$TASKCTL" --host "$url" --token wrong-token-0123456789 get "" 2>&1)
	expect "completion is quiet when the token is refused" "" "$out"
else
	not_ok "stand-in task API started" "$(cat "$T/api.err")"
fi
# Unreachable taskd: nothing offered, nothing printed, no hang.
out=$(complete_words "$TASKCTL" --host http://127.0.0.1:1 --token $TOKEN get "" 2>&1)
expect "completion is quiet when taskd is unreachable" "" "$out"

echo "1..$n"
[ "$fails" = 0 ]
