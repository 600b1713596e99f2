#!/bin/sh
# End-to-end test of taskctl's pipeline verbs against a real deployd (--role pipelines on
# loopback, embedded SQLite, a token file with an admin and a team token), TAP output:
# pipelines/pipeline create|get, schema get|put|activate with If-Match, run with an
# Idempotency-Key, runs, watch (exit 0 on FINISHED, 1 on a cancelled run), approve, cancel,
# retry, -o json, --help per verb, usage errors (exit 2, one line) and not found (exit 3).
set -u
. "$(dirname "$0")/lib.sh"

need_exec "$DEPLOYD" "$TASKCTL"
need_cmd python3

e2e_init agent-pipelines
DEPLOYD_PID=
WPID=
E2E_PID_VARS="DEPLOYD_PID WPID"

ADMIN=$(hex)
FOO=$(hex)
printf 'admin %s\nagent %s\nteam:foo_team %s\n' "$ADMIN" "$(hex)" "$FOO" >"$T/tokens"
chmod 0600 "$T/tokens"
printf '%s\n' "$FOO" >"$T/foo.token"
chmod 0600 "$T/foo.token"
mkdir -p "$T/state"
e2e_start_deployd 0 "$T/deployd.log" --role pipelines --state-dir "$T/state" \
	--token-file "$T/tokens" ||
	skip_all "deployd did not start: $(tail -3 "$T/deployd.log" | tr '\n' ' ')"
PORT=$DEPLOYD_PORT
C="$TASKCTL --server http://127.0.0.1:$PORT --token-file $T/foo.token"
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }

# ---------------------------------------------------------------- usage
$C pipeline >"$T/out" 2>"$T/err"
rc=$?
check "pipeline without a sub-verb → exit 2, one line" "[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ]"
$C watch onlyone >"$T/out" 2>"$T/err"
rc=$?
check "watch with one argument → exit 2, one line" "[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ]"
$C watch p 0 >"$T/out" 2>"$T/err"
check "watch with run 0 → exit 2" "[ $? = 2 ]"
$TASKCTL pipelines >"$T/out" 2>"$T/err"
check "pipelines without --server → exit 2 naming --server" "[ $? = 2 ] && grep -q -- --server '$T/err'"
$C schema put --help >"$T/out" 2>&1
check "schema --help shows --if-match" "[ $? = 0 ] && grep -q -- --if-match '$T/out'"
$C run --help >"$T/out" 2>&1
check "run --help with --server is the pipeline run" "[ $? = 0 ] && grep -q -- --commit '$T/out'"
$C watch --help >"$T/out" 2>&1
check "watch --help" "[ $? = 0 ] && grep -q 'FINISHED' '$T/out'"

# ---------------------------------------------------------------- pipelines and schemas
cat >"$T/p.json" <<'EOF'
{"name":"Gate","owner":"foo_team","schema":[{"name":"w","type":"wait","wait":{"seconds":0}},{"name":"gate","type":"approval"},{"name":"after","type":"wait","wait":{"seconds":0}}]}
EOF
out=$($C pipeline create -f "$T/p.json")
PID=${out%% created}
check "pipeline create -f → ID created" "echo '$out' | grep -q ' created$' && [ -n '$PID' ]" "$out"
$C -o json pipeline create -f "$T/p.json" >"$T/out" 2>"$T/err"
check "a second create with the same name → exit 1 with the problem on one line" \
	"[ $? = 1 ] && [ \$(wc -l <'$T/err') = 1 ]" "$(cat "$T/err")"
check "pipelines --owner lists it (table)" "$C pipelines --owner foo_team | grep -q '^$PID  *Gate  *foo_team'"
check "pipelines -o json" "[ \"\$($C -o json pipelines | jget 'd[0][\"name\"]')\" = Gate ]"
check "pipeline get ID" "$C pipeline get '$PID' | grep -q Gate"
$C pipeline get nosuchpipeline >/dev/null 2>&1
check "pipeline get of an unknown ID → exit 3" "[ $? = 3 ]"
check "schema get → version 1 active, the stages" \
	"$C schema get '$PID' | head -1 | grep -q 'version 1 (active)' && $C schema get '$PID' | grep -q '\"gate\"'"
printf '[{"name":"only","type":"wait","wait":{"seconds":0}}]\n' >"$T/s2.json"
$C schema put "$PID" -f "$T/s2.json" --if-match 7 >"$T/out" 2>"$T/err"
check "schema put with a stale --if-match → exit 1 (412)" "[ $? = 1 ] && grep -q 412 '$T/err'" "$(cat "$T/err")"
check "schema put --if-match 1 → version 2 draft" \
	"$C schema put '$PID' -f '$T/s2.json' --if-match 1 | grep -q 'version 2 (draft)'"
check "schema get --version 2 -o json" \
	"[ \"\$($C -o json schema get '$PID' --version 2 | jget 'd[\"schema\"][0][\"name\"]')\" = only ]"

# ---------------------------------------------------------------- runs
SHA=0123456789abcdef0123456789abcdef01234567
out=$($C -o json run "$PID" --commit $SHA)
R1=$(echo "$out" | jget 'd["run"]')
check "run ID --commit → run 1" "[ '$R1' = 1 ]" "$out"
timeout 30 $C watch "$PID" 1 >"$T/watch1" 2>&1 &
WPID=$!
# the approval stage waits (IN_PROGRESS) once the wait stage before it finished
for _ in $(seq 100); do
	grep -q 'gate  *approval  *IN_PROGRESS' "$T/watch1" && break
	sleep 0.1
done
check "watch shows the stages live (the approval waiting)" \
	"grep -q 'gate  *approval  *IN_PROGRESS' '$T/watch1' && grep -q 'w  *wait  *FINISHED' '$T/watch1'" \
	"$(cat "$T/watch1")"
check "approve ID RUN STAGE" "$C approve '$PID' 1 gate | grep -q approved"
wait $WPID
rc=$?
check "watch follows the run to FINISHED and exits 0" \
	"[ $rc = 0 ] && grep -q 'FINISHED' '$T/watch1' && grep -q 'after  *wait  *FINISHED' '$T/watch1'" \
	"rc=$rc $(tail -6 "$T/watch1")"
check "runs ID (table)" "$C runs '$PID' | grep -q '^ *1  *0123456789ab  *FINISHED'"
out=$($C -o json run "$PID" --commit $SHA)
R2=$(echo "$out" | jget 'd["run"]')
check "another run → run 2 (each invocation its own Idempotency-Key)" "[ '$R2' = 2 ]" "$out"
check "run cancel ID RUN" "$C run cancel '$PID' 2 | grep -q cancelled"
timeout 10 $C watch "$PID" 2 >"$T/watch2" 2>&1
check "watch of a cancelled run exits 1" "[ $? = 1 ] && grep -q CANCELLED '$T/watch2'"
check "run retry ID RUN" "$C run retry '$PID' 2 | grep -q retrying"
$C run retry "$PID" 99 >/dev/null 2>&1
check "retry of an unknown run → exit 3" "[ $? = 3 ]"
check "watch -o json prints the run as JSON lines" \
	"$C -o json run cancel '$PID' 2 >/dev/null; timeout 10 $C -o json watch '$PID' 2 | tail -1 | jget 'd[\"state\"]' | grep -q CANCELLED"
check "schema activate ID VERSION" "$C schema activate '$PID' 2 | grep -q 'version 2 active'"
check "the active schema is now version 2" "$C schema get '$PID' | head -1 | grep -q 'version 2 (active)'"


# ---------------------------------------------------------------- token files
# deployd's token file itself: admin (the first admin without --role), or the --role asked for.
CF="$TASKCTL --server http://127.0.0.1:$PORT --token-file $T/tokens"
printf '{"name":"Other","owner":"bar_team","schema":[{"name":"w","type":"wait","wait":{"seconds":0}}]}\n' \
	>"$T/bar.json"
out=$($CF pipeline create -f "$T/bar.json" 2>&1)
check "--token-file with deployd's token file: its admin token (creates another team's pipeline)" \
	"echo '$out' | grep -q ' created$'" "$out"
$CF --role team:foo_team pipeline create -f "$T/bar.json" >"$T/out" 2>"$T/err"
rc=$?
check "--role team:foo_team sends that team's token (another team's pipeline → 403, exit 1)" \
	"[ $rc = 1 ] && grep -q 403 '$T/err'" "rc=$rc $(cat "$T/err")"
check "--role team:foo_team lists the pipelines" \
	"$CF --role team:foo_team pipelines | grep -q ' Other  *bar_team '"
$CF --role nosuch pipelines >"$T/out" 2>"$T/err"
rc=$?
check "--role that the file lacks → exit 2, one line naming the roles there, no token" \
	"[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ] && grep -q 'admin, agent, team:foo_team' '$T/err' && ! grep -q '$ADMIN' '$T/err' && ! grep -q '$FOO' '$T/err'" \
	"rc=$rc $(cat "$T/err")"
grep -v '^admin ' "$T/tokens" >"$T/noadmin.tokens"
chmod 0600 "$T/noadmin.tokens"
$TASKCTL --server "http://127.0.0.1:$PORT" --token-file "$T/noadmin.tokens" pipelines \
	>"$T/out" 2>"$T/err"
rc=$?
check "a token file without an admin and no --role → exit 2, one line naming the roles there" \
	"[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ] && grep -q 'roles in the file: agent, team:foo_team' '$T/err' && ! grep -q '$FOO' '$T/err'" \
	"rc=$rc $(cat "$T/err")"
$C --role admin pipelines >"$T/out" 2>"$T/err"
rc=$?
check "--role with a one-token file (taskd's format) → exit 2" \
	"[ $rc = 2 ] && [ \$(wc -l <'$T/err') = 1 ] && ! grep -q '$FOO' '$T/err'" "rc=$rc $(cat "$T/err")"
$TASKCTL --server "http://127.0.0.1:$PORT" --token "$FOO" --role admin pipelines >"$T/out" 2>"$T/err"
check "--role with --token → exit 2" "[ $? = 2 ] && [ \$(wc -l <'$T/err') = 1 ]"

tap_end
