#!/usr/bin/env bash
# `make image`: builds the job image (IMAGE, default dp-lakehouse:local) with the container engine on
# this machine, first making the Dockerfile's base image locally where it cannot be pulled
# (deploy/local-base-image.sh). Starts dockerd if no engine answers, and then stops it again.
# The build log goes to .cache/image-build.log; its last lines are shown if the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/engine.sh
. deploy/engine.sh

IMAGE=${IMAGE:-dp-lakehouse:local}
BUILD_LOG=${BUILD_LOG:-$PWD/.cache/image-build.log}

trap engine_down EXIT
engine_up
deploy/local-base-image.sh
mkdir -p "$(dirname "$BUILD_LOG")"
say "building $IMAGE (log: $BUILD_LOG)"
start=$SECONDS
if ! "$DOCKER" build -t "$IMAGE" . >"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    die "docker build failed (the end of its log is above; all of it: $BUILD_LOG)"
fi
size=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE in $((SECONDS - start)) s: $((size / 1000000)) MB"
