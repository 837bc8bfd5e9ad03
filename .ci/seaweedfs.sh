#!/usr/bin/env bash
# Builds SeaweedFS (the S3-compatible engine of the integration tier) once and caches the binary.
# `go install` refuses the module (its go.mod has replace directives), so the module is downloaded
# through the Go module proxy and built as the main module from a writable copy.
# Prints the path of the binary on stdout.
set -euo pipefail
VERSION=v0.0.0-20261109003541-7506e5f91cd6
CACHE=${OPSD_CI_CACHE:-/var/cache/opsd-ci}
BIN=$CACHE/weed-$VERSION
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE"
dir=$(cd /tmp && go mod download -json "github.com/seaweedfs/seaweedfs@$VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "seaweedfs: module download failed" >&2; exit 1; }
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$dir/." "$work/"
chmod -R u+w "$work"
echo "seaweedfs: building $VERSION (about 11 minutes cold on 2 cores)" >&2
(cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$BIN.tmp" ./weed)
mv "$BIN.tmp" "$BIN"
echo "$BIN"
