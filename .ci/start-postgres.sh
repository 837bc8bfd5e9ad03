#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests and prints the variables they read:
#   eval "$(.ci/start-postgres.sh)"      ...      .ci/stop-postgres.sh
# Installs nothing: it uses Debian's server binaries (/usr/lib/postgresql/N/bin, newest N; the
# `postgresql` package) and fails when they are missing. The cluster lives in a temp directory
# owned by an unprivileged user (initdb and postgres refuse to run as root: when run as root this
# creates the system user opsd-pg once), listens only on 127.0.0.1:$OPSD_PG_PORT (default 55432)
# and a socket in its own directory, and requires a password (scram-sha-256) for the superuser
# `opsd`, so the tests exercise real password handling.
set -euo pipefail
port=${OPSD_PG_PORT:-55432}
bindir=${OPSD_PG_BINDIR:-}
if [ -z "$bindir" ]; then
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && bindir=$d
  done
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
  exit 1
fi

run_as=()
owner=$(id -un)
if [ "$(id -u)" = 0 ]; then
  owner=${OPSD_PG_USER:-opsd-pg}
  if ! id "$owner" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$owner"
  fi
  run_as=(setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups --)
fi

dir=${OPSD_PG_DIR:-$(mktemp -d /tmp/opsd-pg.XXXXXX)}
mkdir -p "$dir"
chmod 700 "$dir"
[ "$(id -u)" = 0 ] && chown "$owner" "$dir"
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
umask 077
printf '%s\n' "$password" >"$dir/pwfile"
[ "$(id -u)" = 0 ] && chown "$owner" "$dir/pwfile"

(cd "$dir" && "${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U opsd --pwfile="$dir/pwfile" \
  --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1) || {
  echo "initdb failed; log:" >&2
  tail -30 "$dir/initdb.log" >&2
  exit 1
}
rm -f "$dir/pwfile"
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 64MB
log_min_messages = warning
CONF

(cd "$dir" && "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null) || {
  echo "postgres did not start on 127.0.0.1:$port; log:" >&2
  tail -30 "$dir/postgres.log" >&2
  exit 1
}
pid=$(head -1 "$dir/data/postmaster.pid")
for _ in $(seq 1 120); do
  if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
    echo "export OPSD_TEST_PG_DSN=postgresql://opsd:$password@127.0.0.1:$port/postgres?sslmode=disable OPSD_TEST_PG_BINDIR=$bindir OPSD_PG_PID=$pid OPSD_PG_DIR=$dir OPSD_PG_BINDIR=$bindir"
    exit 0
  fi
  sleep 0.5
done
echo "postgres did not answer on 127.0.0.1:$port within 60s; log:" >&2
tail -30 "$dir/postgres.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
