#!/usr/bin/env bash
# The image, tested as an operator runs it: .ci/image builds it (no registry), it runs with a job
# file, the platform's data directory and the Docker socket mounted, becomes healthy on the job
# file's (non-default) listen address, and inside it a database backup, a container export and
# both drills succeed (they write temp files under /tmp as the non-root user). Also checks that
# .dockerignore keeps the multi-stage build's context to the Go sources. With PostgreSQL (the
# cluster in OPSD_TEST_PG_DSN, else one started by .ci/start-postgres.sh), the image's own
# pg_dump and pg_restore back up and drill a database (a second container on the host network).
# Needs: a Docker engine, go, sqlite3, psql, /bin/busybox (busybox-static). Removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
for c in docker sqlite3; do command -v "$c" >/dev/null || { echo "image-test: $c is missing" >&2; exit 1; }; done
[ -x /bin/busybox ] || { echo "image-test: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }

suffix="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
image="opsd-imgtest:$suffix"
name="opsd-imgtest-$suffix"
tenant="tenant_opsdimg${suffix}_a"
tenant_image="opsd-imgtest-busybox:$suffix"
ctx_image="opsd-imgtest-context:$suffix"
port=9311
work="$(mktemp -d)"
pgdb="opsd_imgtest_$suffix"
started_pg=""
cleanup() {
  status=$?
  if [ -n "${OPSD_TEST_PG_DSN:-}" ]; then
    psql -q "$OPSD_TEST_PG_DSN" -c "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1 || true
  fi
  [ -n "$started_pg" ] && bash .ci/stop-postgres.sh
  if [ "$status" -ne 0 ] && docker inspect "$name" >/dev/null 2>&1; then
    echo "--- opsd container logs"; docker logs --tail 50 "$name" 2>&1 || true
    docker inspect --format '{{json .State.Health}}' "$name" 2>/dev/null || true
  fi
  docker rm -f -v "$name" "$tenant" >/dev/null 2>&1 || true
  docker rm -f "ctx-$suffix" "$name-pg" >/dev/null 2>&1 || true
  docker rmi -f "$image" "$tenant_image" "$ctx_image" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }
. .ci/lib.sh

echo "== .dockerignore: the multi-stage build's context is the Go sources only"
mkdir -p "$work/ctxcheck"
printf 'FROM scratch\nCOPY . /ctx\n' > "$work/ctxcheck/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -f "$work/ctxcheck/Dockerfile" -t "$ctx_image" . >/dev/null 2>&1 || fail "context build"
docker create --name "ctx-$suffix" "$ctx_image" /none >/dev/null
files="$(docker export "ctx-$suffix" | tar -t | grep '^ctx/' || true)"
for bad in ctx/.git/ ctx/opsd-demo/ ctx/opsd ctx/README.md; do
  if grep -qx "$bad" <<<"$files"; then fail "$bad is in the build context"; fi
done
grep -qx 'ctx/cmd/opsd/main.go' <<<"$files" || fail "cmd/opsd/main.go is not in the build context"
grep -q '_test.go$' <<<"$files" && fail "test files are in the build context"
echo "context: $(grep -c . <<<"$files") entries, no .git, demo directory, binaries or tests"

echo "== build"
OPSD_IMAGE="$image" bash .ci/image
user="$(docker image inspect --format '{{.Config.User}}' "$image")"
[ "$user" = "65532:65532" ] || fail "the image runs as '$user', not the non-root 65532"

echo "== a tenant container and the platform's databases"
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/sh"
tar -C "$work/rootfs" -c . | docker import - "$tenant_image" >/dev/null
docker run -d --name "$tenant" "$tenant_image" /bin/busybox sh -c 'echo tenant-state > /state.txt; exec /bin/busybox sleep 3600' >/dev/null
mkdir -p "$work/data/platform" "$work/etc"
make_platform_dbs "$work/data"
chmod -R a+rwX "$work/data"
cat > "$work/etc/opsd.yaml" <<YAML
node_id: imgtest
http:
  listen: 0.0.0.0:$port   # not the default 9100: the HEALTHCHECK must read it from here
  admin_token: imgtest-admin-token-123456
state:
  path: /var/lib/opsd/state.db
storage:
  backend: local
  local:
    path: /var/lib/opsd/store
jobs:
  - name: platform-db-backup      # no temp_dir: the copy goes to /tmp
    kind: sqlite_backup
    schedule: "0 3 * * *"
  - name: containers-nightly
    kind: container_export
    schedule: "0 2 * * *"
    name_prefix: tenant_opsdimg${suffix}_
  - {name: platform-drill, kind: sqlite_drill, schedule: "@monthly"}
  - {name: container-drill, kind: container_drill, schedule: "@quarterly", tenant: $tenant}
YAML
chmod 644 "$work/etc/opsd.yaml"

echo "== run $image"
docker run -d --init --name "$name" --health-interval 1s --health-retries 3 \
  -v "$work/etc/opsd.yaml:/etc/opsd/opsd.yaml:ro" -v "$work/data:/data" \
  -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
  "$image" >/dev/null
wait_healthy "$name" 60 "the container"
echo "healthy (HEALTHCHECK probed :$port from the job file)"
logs="$(docker logs "$name" 2>&1)"
grep -q 'single-file bind mount' <<<"$logs" || fail "no warning that the job file is a single-file bind mount (live reload cannot see host edits)"
echo "warned that the single-file job file mount hides host edits from live reload"

echo "== opsd backup db (inside the image)"
out="$(docker exec "$name" /opsd backup db 2>&1)" || fail "backup db: $out"
echo "$out" | tail -n 3
echo "== opsd backup containers"
out="$(docker exec "$name" /opsd backup containers 2>&1)" || fail "backup containers: $out"
grep -q "$tenant" <<<"$out" || fail "the export does not name $tenant: $out"
echo "$out" | tail -n 2
echo "== opsd drill db"
out="$(docker exec "$name" /opsd drill db 2>&1)" || fail "drill db: $out"
grep -q 'Result: 7 passed, 0 failed, 0 skipped' <<<"$out" || fail "drill db: $out"
grep 'RTO' <<<"$out"
echo "== opsd drill containers"
out="$(docker exec "$name" /opsd drill containers 2>&1)" || fail "drill containers: $out"
echo "$out" | tail -n 2
echo "== what the store holds"
list="$(docker exec "$name" /opsd backups list -o json)"
grep -q "nightly/imgtest/$tenant/" <<<"$list" || fail "no nightly export of $tenant in the store: $list"
grep -q 'platform/' <<<"$list" || fail "no platform backup in the store"

echo "== postgres_backup and postgres_drill with the image's pg_dump and pg_restore"
command -v psql >/dev/null || fail "psql is missing (apt-get install postgresql-client)"
if [ -z "${OPSD_TEST_PG_DSN:-}" ]; then
  eval "$(OPSD_PG_PORT=${OPSD_PG_PORT:-55439} bash .ci/start-postgres.sh)"
  started_pg=1
fi
psql -q "$OPSD_TEST_PG_DSN" -c "CREATE DATABASE $pgdb" >/dev/null
pgdsn="$(sed -E "s#^(postgres(ql)?://[^/]+)/[^?]*#\1/$pgdb#" <<<"$OPSD_TEST_PG_DSN")"
psql -q "$pgdsn" -c "CREATE TABLE credit_transactions(id int primary key, amount bigint); INSERT INTO credit_transactions SELECT g, g*10 FROM generate_series(1, 1000) g;" >/dev/null
mkdir -p "$work/pg/etc" "$work/pg/var"
printf '%s\n' "$pgdsn" > "$work/pg/etc/dsn"
cat > "$work/pg/etc/opsd.yaml" <<YAML
node_id: imgtest-pg
state: {path: /var/lib/opsd/state.db}
storage: {backend: local, local: {path: /var/lib/opsd/store}}
jobs:
  - {name: platform-pg, kind: postgres_backup, schedule: "0 3 * * *", dsn_file: /etc/opsd/dsn}
  - name: platform-pg-drill
    kind: postgres_drill
    schedule: "@monthly"
    dsn_file: /etc/opsd/dsn
    tables: [credit_transactions]
    critical: [credit_transactions]
YAML
chmod 644 "$work/pg/etc/opsd.yaml" "$work/pg/etc/dsn"
chmod 777 "$work/pg/var"
pgrun() {
  docker run --rm --name "$name-pg" --network host -v "$work/pg/etc:/etc/opsd:ro" -v "$work/pg/var:/var/lib/opsd" "$image" "$@" 2>&1
}
out="$(pgrun config check -c /etc/opsd/opsd.yaml)" || fail "config check: $out"
echo "$out"
out="$(pgrun backup postgres -c /etc/opsd/opsd.yaml)" || fail "backup postgres: $out"
grep -q "postgres/" <<<"$out" || fail "backup postgres names no dump: $out"
echo "$out" | tail -n 2
out="$(pgrun drill postgres -c /etc/opsd/opsd.yaml)" || fail "drill postgres: $out"
grep -q "RTO" <<<"$out" || fail "drill postgres reports no RTO: $out"
echo "$out" | tail -n 3
pw="$(sed -E 's#^[^:]+://[^:]+:([^@]+)@.*#\1#' <<<"$OPSD_TEST_PG_DSN")"
grep -qF "$pw" <<<"$out" && fail "the drill printed the password"
echo "image-test: ok"
