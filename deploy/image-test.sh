#!/usr/bin/env bash
# `make image-test`: builds the job image (deploy/image-build.sh) and runs it the way a scheduler
# does, offline (--network none), as its non-root user, on generated Bronze mounted into it:
#
#   1. the image: runs as uid 10001, no secret in its configuration
#   2. `lakehouse --help`
#   3. `generate` + `run --show` on a small Bronze; Gold then checked from the host with delta-rs
#      (deploy/check_gold.py: every table has rows, ledger present and consistent, protocol 1/2)
#   4. `run` on a larger Bronze, SIGTERM (docker stop) while it ingests: exit 143, promptly
#   5. `run` again: exit 0, and Gold consistent (no release published twice, no orphan rows)
#
# Installs what is missing (as root: docker.io, debootstrap), starts dockerd if no engine answers and
# stops it again; leaves no container or temp folder behind. Needs the venv (`make setup`) for the
# host-side checks. The pseudonym key is random per run and passed by name only (-e NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/engine.sh
. deploy/engine.sh

IMAGE=${IMAGE:-dp-lakehouse:local}
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
SMALL_SESSIONS=${SMALL_SESSIONS:-3000}
LARGE_SESSIONS=${LARGE_SESSIONS:-100000}
STOP_AFTER_S=${STOP_AFTER_S:-3}      # after the ingest's first line: inside its Spark job
STOP_WITHIN_S=${STOP_WITHIN_S:-10}   # docker stop's grace period is longer: 143 must come first
RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-900}

[ -x "$PYTHON" ] || die "no $PYTHON: run \`make setup\` first (the host-side checks use its deltalake)"
"$PYTHON" -c "import deltalake" 2>/dev/null || die "$PYTHON has no deltalake: run \`make setup\`"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dp-lakehouse-image-test.XXXXXX")
PREFIX="dp-lakehouse-image-test-$$"
CONTAINERS=()
PASSED=0

cleanup() {
    local rc=$?
    local name
    for name in "${CONTAINERS[@]}"; do
        "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
    done
    # The lakehouse folders belong to the container's uid: a non-root caller removes them through it.
    if ! rm -rf "$WORK" 2>/dev/null && engine_answers; then
        "$DOCKER" run --rm --network none --entrypoint /bin/sh -v "$WORK:/work" "$IMAGE" \
            -c 'rm -rf /work/*' >/dev/null 2>&1 || true
        rm -rf "$WORK" || say "could not remove $WORK"
    fi
    engine_down
    # The closing line comes last, after dockerd has stopped.
    if [ "$rc" -eq 0 ]; then
        echo "image-test: $PASSED passed, 0 failed"
    else
        echo "image-test: FAILED after $PASSED checks passed"
        echo "image-test: $PASSED passed, 1 failed"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() {
    PASSED=$((PASSED + 1))
    echo "image-test: ok: $*"
}

# A lakehouse folder the container's user (uid 10001) can write.
new_lakehouse() {
    local dir=$WORK/$1
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown 10001:10001 "$dir"; else chmod 0777 "$dir"; fi
    echo "$dir"
}

# start NAME LAKEHOUSE_DIR ARGS...: `lakehouse ARGS` in a detached, offline container $PREFIX-NAME.
start() {
    local name=$PREFIX-$1 dir=$2
    shift 2
    CONTAINERS+=("$name")
    "$DOCKER" run -d --name "$name" --network none \
        -v "$dir:/lake" -e LAKEHOUSE_CONF=/app/conf/local.toml -e LAKEHOUSE_PSEUDONYM_KEY \
        "$IMAGE" --root /lake "$@" >/dev/null || die "could not start the container for: lakehouse $*"
}

# finish NAME: waits for the container (RUN_TIMEOUT_S at most); its output goes to $WORK/NAME.log;
# prints the exit code.
finish() {
    local name=$1 code
    if ! code=$(timeout "$RUN_TIMEOUT_S" "$DOCKER" wait "$name"); then
        "$DOCKER" logs "$name" >"$WORK/$name.log" 2>&1 || true
        tail -n 30 "$WORK/$name.log" >&2
        die "$name still running after ${RUN_TIMEOUT_S}s (its log is above)"
    fi
    "$DOCKER" logs "$name" >"$WORK/$name.log" 2>&1
    "$DOCKER" rm "$name" >/dev/null
    echo "$code"
}

# expect CODE NAME WHAT: container $PREFIX-NAME exited with CODE, else its log is shown.
expect() {
    local want=$1 name=$PREFIX-$2 what=$3 code
    code=$(finish "$name")
    if [ "$code" != "$want" ]; then
        tail -n 40 "$WORK/$name.log" >&2
        die "$what: exit $code, expected $want (the container's log is above)"
    fi
}

check_gold() {
    local out
    if ! out=$("$PYTHON" deploy/check_gold.py "$1" 2>&1); then
        echo "$out" >&2
        die "Gold under $1 fails its checks (above)"
    fi
    local line
    while IFS= read -r line; do echo "image-test:     $line"; done <<<"$out"
}

start_s=$SECONDS
engine_up
deploy/image-build.sh
LAKEHOUSE_PSEUDONYM_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export LAKEHOUSE_PSEUDONYM_KEY

# 1. the image itself
user=$("$DOCKER" image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = 10001 ] || die "$IMAGE runs as '$user', expected the non-root uid 10001"
if "$DOCKER" image inspect --format '{{json .Config.Env}}' "$IMAGE" | grep -qiE 'PSEUDONYM_KEY|SECRET|ACCOUNT_KEY'; then
    die "$IMAGE has a secret-like variable in its configuration"
fi
pass "$IMAGE runs as uid 10001 and carries no secret in its configuration"

# 2. --help, offline
help=$("$DOCKER" run --rm --network none "$IMAGE" --help) || die "lakehouse --help failed in the container"
grep -q "^usage: lakehouse" <<<"$help" || die "lakehouse --help printed no usage line"
pass "lakehouse --help"

# 3. generate + run --show, offline, on a small Bronze; Gold checked from the host
small=$(new_lakehouse small)
start generate-small "$small" generate --sessions "$SMALL_SESSIONS" --files 3 --seed 1
expect 0 generate-small "generate"
t=$SECONDS
start run-small "$small" run --show
expect 0 run-small "run --show"
log=$WORK/$PREFIX-run-small.log
grep -q "gold.privacy_ledger" "$log" || die "run --show printed no ledger (log: $log)"
pass "run --show offline on $SMALL_SESSIONS sessions in $((SECONDS - t)) s"
check_gold "$small"
pass "Gold read from the host with delta-rs: every table has rows, ledger consistent"

# 4. SIGTERM mid-run
large=$(new_lakehouse large)
start generate-large "$large" generate --sessions "$LARGE_SESSIONS" --files 4 --seed 2
expect 0 generate-large "generate"
start run-stopped "$large" run
if ! timeout 300 grep -q -m1 "ingest: " < <("$DOCKER" logs -f "$PREFIX-run-stopped" 2>&1); then
    "$DOCKER" logs "$PREFIX-run-stopped" 2>&1 | tail -n 30 >&2
    die "the run never logged the start of its ingest"
fi
sleep "$STOP_AFTER_S"
[ "$("$DOCKER" inspect --format '{{.State.Running}}' "$PREFIX-run-stopped")" = true ] \
    || die "the run ended before the SIGTERM: raise LARGE_SESSIONS (now $LARGE_SESSIONS)"
t=$SECONDS
"$DOCKER" stop --time 60 "$PREFIX-run-stopped" >/dev/null
stop_s=$((SECONDS - t))
expect 143 run-stopped "run stopped by SIGTERM"
[ "$stop_s" -le "$STOP_WITHIN_S" ] || die "the run took ${stop_s}s to stop after SIGTERM (limit ${STOP_WITHIN_S}s)"
pass "SIGTERM mid-ingest: exit 143 after ${stop_s} s"

# 5. the next run finishes what the stopped one left
t=$SECONDS
start run-again "$large" run
expect 0 run-again "run after the SIGTERM"
pass "the next run exits 0 ($((SECONDS - t)) s on $LARGE_SESSIONS sessions)"
check_gold "$large"
pass "Gold after the interrupted run: no release published twice, no orphan rows"

echo "image-test: build and checks took $((SECONDS - start_s)) s"
