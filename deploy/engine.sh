# shellcheck shell=bash
# Sourced by deploy/image-build.sh and deploy/image-test.sh: a container engine for this machine.
#
#   engine_up     install what is missing (as root, from Debian: docker.io, debootstrap), then use
#                 the Docker engine that answers, or start dockerd in the background (log in
#                 .cache/dockerd.log) and remember that we did
#   engine_down   stop dockerd again if engine_up started it (and only then)
#
# DOCKER names the client (default: docker). Docker is used rather than podman because Debian's
# docker.io (dockerd 20.10, overlay2 + runc) builds and runs the image on this kind of machine as it
# is; podman needs --runtime runc, host networking and explicit ulimits here (see README).

DOCKER=${DOCKER:-docker}
ENGINE_STARTED_PID=""
ENGINE_LOG=${ENGINE_LOG:-$PWD/.cache/dockerd.log}

die() {
    echo "${0##*/}: error: $*" >&2
    exit 1
}

say() {
    echo "${0##*/}: $*" >&2
}

engine_answers() {
    "$DOCKER" info >/dev/null 2>&1
}

# Installs debootstrap and Debian's docker.io if a command is missing; only root can.
engine_install_missing() {
    local missing=()
    command -v "$DOCKER" >/dev/null || missing+=(docker.io)
    if ! engine_answers; then
        command -v dockerd >/dev/null || missing+=(docker.io)
    fi
    # debootstrap makes the base image where it cannot be pulled; only root can run it anyway.
    if [ "$(id -u)" -eq 0 ]; then
        command -v debootstrap >/dev/null || missing+=(debootstrap)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing ${missing[*]}: install them (apt-get install docker.io debootstrap) or run as root"
    fi
    say "installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp)
    # shellcheck disable=SC2046 # the list is plain package names
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            $(printf '%s\n' "${missing[@]}" | sort -u); } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        die "apt-get install ${missing[*]} failed (the end of its output is above)"
    fi
    rm -f "$log"
}

engine_up() {
    engine_install_missing
    if engine_answers; then
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "no container engine answers and only root can start dockerd"
    mkdir -p "$(dirname "$ENGINE_LOG")"
    say "no container engine running: starting dockerd (log: $ENGINE_LOG)"
    dockerd >"$ENGINE_LOG" 2>&1 &
    ENGINE_STARTED_PID=$!
    local i
    for i in $(seq 1 60); do
        engine_answers && return 0
        kill -0 "$ENGINE_STARTED_PID" 2>/dev/null || break
        sleep 1
    done
    tail -n 20 "$ENGINE_LOG" >&2
    engine_down
    die "dockerd did not come up within ${i}s (its log is above)"
}

engine_down() {
    [ -n "$ENGINE_STARTED_PID" ] || return 0
    local pid=$ENGINE_STARTED_PID
    ENGINE_STARTED_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping the dockerd we started (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "dockerd (pid $pid) ignored SIGTERM for ${i}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}
