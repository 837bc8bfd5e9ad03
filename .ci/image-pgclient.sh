#!/usr/bin/env bash
# Copies PostgreSQL's client tools (pg_dump, pg_restore) of BINDIR and every shared library they
# load (as ldd lists them, the dynamic loader included) into ROOT at the same paths, so a FROM
# scratch image can run the postgres_backup and postgres_drill kinds and `opsd restore postgres`.
# opsd finds them under /usr/lib/postgresql/N/bin (the newest N) like on a Debian host.
#   .ci/image-pgclient.sh /usr/lib/postgresql/16/bin ROOT
# The tools must be at least the server's major version: pg_dump refuses newer servers (opsd
# checks at config time). Pick the directory with OPSD_PG_CLIENT_BINDIR in .ci/image.
set -euo pipefail
bindir=${1:?usage: image-pgclient.sh BINDIR ROOT}
root=${2:?usage: image-pgclient.sh BINDIR ROOT}
command -v ldd >/dev/null || { echo "image-pgclient: ldd is missing (libc-bin)" >&2; exit 1; }
copy() {
  mkdir -p "$root$(dirname "$1")"
  cp -L "$1" "$root$1"
}
for tool in pg_dump pg_restore; do
  [ -x "$bindir/$tool" ] || { echo "image-pgclient: no $tool in $bindir (apt-get install postgresql-client)" >&2; exit 1; }
  copy "$bindir/$tool"
  ldd "$bindir/$tool" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
    copy "$lib"
  done
done
"$bindir/pg_dump" --version
