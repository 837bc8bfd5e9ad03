#!/usr/bin/env bash
# Stops the cluster .ci/start-postgres.sh started (OPSD_PG_PID, OPSD_PG_DIR from its output), waits
# until it is gone, and removes its directory. Never fails: it is cleanup.
pid=${OPSD_PG_PID:-}
dir=${OPSD_PG_DIR:-}
[ -n "$pid" ] || exit 0
kill -INT "$pid" 2>/dev/null || true # fast shutdown
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
case "$dir" in
/tmp/opsd-pg.*) rm -rf "$dir" 2>/dev/null || true ;;
esac
exit 0
