#!/bin/sh
# Install the peer allocators that `compare` preloads into the C workloads:
# Debian's jemalloc, mimalloc and tcmalloc_minimal shared libraries.
#
# Best effort: does nothing when they are already installed, only prints a note
# when not run as root or when apt-get is unavailable, and always exits 0 so that
# the benchmark driver can go on with whichever peers are present.
set -u

pkgs="libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4"

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-peers: all peer libraries installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-peers: apt-get not found; missing:$missing (those rows will be skipped)"
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    echo "install-peers: not root; to add the missing peers run as root:"
    echo "    apt-get update && apt-get install -y$missing"
    exit 0
fi

echo "install-peers: installing$missing"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >/dev/null 2>&1; then
    echo "install-peers: apt-get failed; missing peers will be skipped"
fi
exit 0
