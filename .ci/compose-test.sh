#!/usr/bin/env bash
# The compose sidecar (deploy/compose.yaml), brought up as an operator would with locally built
# images: opsd from .ci/image, and a tiny stand-in for the platform API built with `docker import`
# (busybox httpd on :3100; its image holds the seven platform databases, which Docker copies into
# the shared platform-data volume). Checks: opsd becomes healthy, the admin token comes from the
# mounted secret, a backup triggered through the API backs up the databases from the shared
# volume, and a rename-write of the job file in the mounted directory is reloaded live.
# Needs: docker, docker-compose, go, sqlite3, curl, /bin/busybox. Removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
export PATH="$PATH:/usr/local/go/bin"
for c in docker docker-compose sqlite3 curl; do command -v "$c" >/dev/null || { echo "compose-test: $c is missing" >&2; exit 1; }; done
[ -x /bin/busybox ] || { echo "compose-test: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }

suffix="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
project="opsdct$suffix"
work="$(mktemp -d)"
export OPSD_IMAGE="opsd-composetest:$suffix" PLATFORM_API_IMAGE="opsd-composetest-api:$suffix"
export DOCKER_GID="$(stat -c %g /var/run/docker.sock)" NODE_ID="compose-1"
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export OPSD_PORT="$(port_of)" PLATFORM_API_PORT="$(port_of)"
dc() { docker-compose -p "$project" -f "$work/compose.yaml" "$@"; }
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then echo "--- opsd logs"; dc logs --tail 40 opsd 2>&1 || true; fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  docker rmi -f "$OPSD_IMAGE" "$PLATFORM_API_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
fail() { echo "compose-test: FAIL: $*" >&2; exit 1; }
. .ci/lib.sh

echo "== images: opsd (.ci/image) and a stand-in platform API (docker import)"
bash .ci/image >/dev/null
root="$work/api-rootfs"
mkdir -p "$root/bin" "$root/www" "$root/data/platform"
cp /bin/busybox "$root/bin/busybox"
echo '{"status":"ok","service":"platform-api"}' > "$root/www/health"
make_platform_dbs "$root/data"
chmod -R a+rwX "$root/data"
tar -C "$root" -c . | docker import --change 'CMD ["/bin/busybox", "httpd", "-f", "-p", "3100", "-h", "/www"]' - "$PLATFORM_API_IMAGE" >/dev/null

echo "== the sidecar: deploy/compose.yaml, a local-store job file, the secrets"
cp deploy/compose.yaml "$work/compose.yaml"
mkdir -p "$work/opsd" "$work/secrets"
token="compose-admin-token-$suffix"
printf '%s' "$token" > "$work/secrets/opsd_admin_token"
printf 'unused' > "$work/secrets/spaces_access_key"
printf 'unused' > "$work/secrets/spaces_secret_key"
chmod 0444 "$work/secrets/"*
jobfile() {
  cat <<YAML
node_id: \${NODE_ID}
http:
  listen: 0.0.0.0:9100
  admin_token_file: /run/secrets/opsd_admin_token
state:
  path: /var/lib/opsd/state.db
storage:
  backend: local
  local:
    path: /var/lib/opsd/store
reload:
  interval: 500ms
jobs:
  - {name: platform-db-backup, kind: sqlite_backup, schedule: "0 3 * * *"}
$1
YAML
}
jobfile "" > "$work/opsd/opsd.yaml"
chmod 0644 "$work/opsd/opsd.yaml"
dc up -d >/dev/null 2>&1 || { dc up -d; fail "docker-compose up"; }

opsd="$(dc ps -q opsd)"
wait_healthy "$opsd" 90 opsd "(the image's HEALTHCHECK runs every 30s)"
base="http://127.0.0.1:$OPSD_PORT"
grep -q '"ok"' <<<"$(curl -fsS "http://127.0.0.1:$PLATFORM_API_PORT/health")" || fail "the stand-in API does not answer"
echo "opsd healthy; /health/ready: $(curl -fsS "$base/health/ready")"

echo "== a backup through the admin API (token from the mounted secret)"
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/api/jobs/platform-db-backup/run")"
[ "$code" = 401 ] || fail "POST without a token answered $code, want 401"
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" "$base/api/jobs/platform-db-backup/run")"
[ "$code" = 202 ] || fail "POST with the secret's token answered $code, want 202"
for _ in $(seq 1 60); do
  grep -q '"outcome":"success"' <<<"$(curl -fsS "$base/api/jobs/platform-db-backup/runs")" && break
  sleep 0.5
done
grep -q '"outcome":"success"' <<<"$(curl -fsS "$base/api/jobs/platform-db-backup/runs")" || fail "the backup did not succeed: $(curl -sS "$base/api/jobs/platform-db-backup/runs")"
h="$(curl -fsS "$base/health")"
grep -q '"status":"ok"' <<<"$h" && grep -q '"totalTracked":7' <<<"$h" || fail "/health after the backup: $h"
echo "backed up the 7 databases from the shared volume; /health: $h"

echo "== live reload: a rename-write of the job file in the mounted directory"
jobfile '  - {name: reload-probe, kind: noop, schedule: "@daily"}' > "$work/opsd/opsd.yaml.new"
chmod 0644 "$work/opsd/opsd.yaml.new"
mv "$work/opsd/opsd.yaml.new" "$work/opsd/opsd.yaml"
for _ in $(seq 1 40); do
  grep -q '"reload-probe"' <<<"$(curl -fsS "$base/api/jobs")" && break
  sleep 0.5
done
grep -q '"reload-probe"' <<<"$(curl -fsS "$base/api/jobs")" || fail "the edited job file was not reloaded"
echo "reloaded: reload-probe is scheduled"
logs="$(dc logs opsd 2>&1)"
grep -q 'single-file bind mount' <<<"$logs" && fail "opsd warns about a single-file mount, but the directory is mounted"
echo "compose-test: ok"
