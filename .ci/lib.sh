# Shell functions the .ci test scripts share; source it after defining fail (the script's own
# "FAIL: ..." and exit).

# wait_healthy CONTAINER SECONDS WHAT [HINT]: waits until the container is running and its
# HEALTHCHECK says healthy; fails as "WHAT stopped: ..." when it stops, or as "WHAT is not healthy
# after SECONDSs: ... HINT" when it is not healthy by then.
wait_healthy() {
  local container=$1 seconds=$2 what=$3 hint=${4:-} health=""
  for _ in $(seq 1 "$seconds"); do
    health="$(docker inspect --format '{{.State.Status}} {{.State.Health.Status}}' "$container")"
    [ "$health" = "running healthy" ] && return 0
    case "$health" in running*) ;; *) fail "$what stopped: $health" ;; esac
    sleep 1
  done
  fail "$what is not healthy after ${seconds}s: $health${hint:+ $hint}"
}

# make_platform_dbs DIR: the platform's seven SQLite databases as the tests expect them:
# DIR/platform/{auth,billing,credits,audit,quotas,tenant-keys}.db and DIR/snapshots.db, with the
# tables the default drill checks (rows in the critical ones). Needs sqlite3.
make_platform_dbs() {
  local d=$1
  mkdir -p "$d/platform"
  sqlite3 "$d/platform/auth.db" "CREATE TABLE user(id); CREATE TABLE session(id); CREATE TABLE account(id); INSERT INTO user VALUES (1); INSERT INTO session VALUES (1);"
  sqlite3 "$d/platform/billing.db" "CREATE TABLE meter_events(id); INSERT INTO meter_events VALUES (1);"
  sqlite3 "$d/platform/credits.db" "CREATE TABLE credit_transactions(id); INSERT INTO credit_transactions VALUES (1);"
  sqlite3 "$d/platform/audit.db" "CREATE TABLE audit_log(id);"
  sqlite3 "$d/platform/quotas.db" "CREATE TABLE quota_limits(id);"
  sqlite3 "$d/platform/tenant-keys.db" "CREATE TABLE tenant_keys(id);"
  sqlite3 "$d/snapshots.db" "CREATE TABLE snapshots(id); CREATE TABLE restore_log(id);"
}
