#!/usr/bin/env bash
# Starts SeaweedFS (`weed mini`: master, volume, filer and S3 in one process) on 127.0.0.1 for the
# integration tier, waits until S3 answers, and prints the variables the tests read:
#   eval "$(.ci/start-seaweedfs.sh)"
# Telemetry is off, everything binds to loopback, and data and sockets live in one directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$("$here/seaweedfs.sh")
dir=${OPSD_WEED_DIR:-$(mktemp -d /tmp/opsd-weed.XXXXXX)}
port=${OPSD_WEED_S3_PORT:-8333}
mkdir -p "$dir/data"
export AWS_ACCESS_KEY_ID=opsd-test-access AWS_SECRET_ACCESS_KEY=opsd-test-secret-key
"$bin" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
  -s3.port="$port" -s3.port.iceberg=0 -s3.port.lance=0 -admin.ui=false \
  -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
  >"$dir/weed.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/weed.pid"
for _ in $(seq 1 120); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "export OPSD_TEST_S3_ENDPOINT=127.0.0.1:$port OPSD_TEST_S3_ACCESS_KEY=$AWS_ACCESS_KEY_ID OPSD_TEST_S3_SECRET_KEY=$AWS_SECRET_ACCESS_KEY OPSD_WEED_PID=$pid OPSD_WEED_DIR=$dir"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "seaweedfs exited during start; log:" >&2
    tail -50 "$dir/weed.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "seaweedfs did not answer on 127.0.0.1:$port within 60s; log:" >&2
tail -50 "$dir/weed.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
