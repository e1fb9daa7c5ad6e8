#!/usr/bin/env bash
# The Dockerfile's base image (its FROM, python:3.11-slim-bookworm), made locally where no container
# registry is reachable: a Debian bookworm rootfs from this machine's Debian mirror (debootstrap,
# minbase + Debian's Python 3.11), imported into the container engine under the FROM name.
#
#   deploy/local-base-image.sh [IMAGE]     default IMAGE: the Dockerfile's first FROM
#
# Idempotent and cached: nothing happens if the engine already has IMAGE; otherwise it is pulled if
# a registry answers, else imported from the cached rootfs tarball (.cache/base-image/), which is
# made with debootstrap (as root) only when it is missing. REFRESH=1 rebuilds the tarball;
# PULL=0 skips the pull attempt. MIRROR / SECURITY_MIRROR override the Debian mirrors, which are
# otherwise read from this machine's apt sources (deb822 *.sources or one-line *.list).
#
# The rootfs gets bookworm, bookworm-updates and bookworm-security sources (and their upgrades), and
# this machine's extra CA certificates (/usr/local/share/ca-certificates/*.crt): without them pip
# inside the build fails with CERTIFICATE_VERIFY_FAILED where egress goes through a TLS proxy.
# Unlike the official image, Python is Debian's (/usr/bin/python3, `python` from python-is-python3).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
SUITE=${SUITE:-bookworm}
CACHE_DIR=${CACHE_DIR:-$PWD/.cache/base-image}
IMAGE=${1:-$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)}
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
TARBALL=$CACHE_DIR/debian-$SUITE-$ARCH-python3-rootfs.tar
PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates

die() {
    echo "local-base-image.sh: error: $*" >&2
    exit 1
}

say() {
    echo "local-base-image.sh: $*" >&2
}

# The first URI of the apt sources that serve SUITE_NAME (deb822 stanzas, then one-line lists).
apt_source_uri() {
    local suite_name=$1 uri=""
    shopt -s nullglob
    local sources=(/etc/apt/sources.list.d/*.sources) lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    shopt -u nullglob
    if [ ${#sources[@]} -gt 0 ]; then
        uri=$(awk -v want="$suite_name" '
            function flush() { if (uris != "" && suites ~ ("(^| )" want "( |$)") && !found) { split(uris, u, " "); print u[1]; found = 1 }
                               uris = ""; suites = "" }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            tolower($1) == "uris:" { $1 = ""; sub(/^ /, ""); uris = $0 }
            tolower($1) == "suites:" { $1 = ""; sub(/^ /, ""); suites = $0 }
            END { flush() }' "${sources[@]}")
    fi
    if [ -z "$uri" ]; then
        for list in "${lists[@]}"; do
            [ -f "$list" ] || continue
            uri=$(awk -v want="$suite_name" '
                $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                              if ($(i + 1) == want) { print $i; exit } }' "$list")
            [ -n "$uri" ] && break
        done
    fi
    echo "$uri"
}

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE is already in the engine: nothing to do"
    exit 0
fi

if [ "${PULL:-1}" != 0 ] && timeout 120 "$DOCKER" pull -q "$IMAGE" >/dev/null 2>&1; then
    say "pulled $IMAGE"
    exit 0
fi

make_rootfs_tarball() {
    [ "$(id -u)" -eq 0 ] || die "$IMAGE cannot be pulled and making it needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || die "$IMAGE cannot be pulled: install debootstrap to make it locally"
    local mirror security
    mirror=${MIRROR:-$(apt_source_uri "$SUITE")}
    security=${SECURITY_MIRROR:-$(apt_source_uri "$SUITE-security")}
    [ -n "$mirror" ] || die "no Debian mirror for $SUITE in /etc/apt/sources.list*: set MIRROR"
    security=${security:-${mirror%/debian}/debian-security}

    mkdir -p "$CACHE_DIR"
    ROOTFS=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    trap cleanup_rootfs EXIT
    chmod 0755 "$ROOTFS"  # mktemp's 0700 would lock apt's _apt user out of the chroot
    say "debootstrap $SUITE ($ARCH) from $mirror into $ROOTFS"
    debootstrap --variant=minbase --arch="$ARCH" --include="$PACKAGES" "$SUITE" "$ROOTFS" "$mirror" \
        >"$CACHE_DIR/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"; }

    rm -f "$ROOTFS/etc/apt/sources.list"
    cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # As in Debian's own container images: package installs never try to start services.
    printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

    shopt -s nullglob
    local certs=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
    if [ ${#certs[@]} -gt 0 ]; then
        say "adding this machine's CA certificates: ${certs[*]##*/}"
        mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
        cp "${certs[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
    fi
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    chroot "$ROOTFS" /usr/sbin/update-ca-certificates >>"$CACHE_DIR/debootstrap.log" 2>&1 \
        || die "update-ca-certificates in the rootfs failed (log: $CACHE_DIR/debootstrap.log)"
    say "applying $SUITE-updates and $SUITE-security"
    chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -qq && apt-get upgrade -y -qq --no-install-recommends && apt-get clean' \
        >>"$CACHE_DIR/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE_DIR/debootstrap.log" >&2; die "apt-get upgrade in the rootfs failed"; }
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/apt/* \
        "$ROOTFS"/tmp/* "$ROOTFS/etc/hostname"
    : >"$ROOTFS/etc/resolv.conf"  # the engine mounts its own

    tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
    say "cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

cleanup_rootfs() {
    [ -n "${ROOTFS:-}" ] && [ -d "$ROOTFS" ] || return 0
    # debootstrap mounts /proc and /sys in the target while it runs: never delete through a mount.
    awk -v r="$ROOTFS" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" || true
    done
    rm -rf --one-file-system "$ROOTFS"
    rm -f "$TARBALL.partial"
}

start=$SECONDS
if [ "${REFRESH:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
    make_rootfs_tarball
else
    say "using the cached rootfs $TARBALL (REFRESH=1 rebuilds it)"
fi

say "importing $TARBALL as $IMAGE"
# docker import sets no environment: PATH must be set, or the Dockerfile's PATH=/opt/venv/bin:$PATH
# would drop /usr/bin (java, ps).
"$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL dp-lakehouse.base=debootstrap-$SUITE" \
    --change 'CMD ["python3"]' \
    "$TARBALL" "$IMAGE" >/dev/null
say "$IMAGE ready ($((SECONDS - start)) s)"
