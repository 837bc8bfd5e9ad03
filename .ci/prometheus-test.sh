#!/usr/bin/env bash
# The real-Prometheus test: Debian's `prometheus` server (installed by .ci/test's apt step)
# scrapes a real opsd daemon with a scrape job named `opsd` and dashboards/rules.yml loaded; see
# TestRealPrometheus in cmd/opsd/prometheus_test.go. Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
if ! command -v prometheus >/dev/null; then
  echo "prometheus-test: the prometheus server is not installed (apt-get install prometheus)" >&2
  exit 1
fi
echo "== real Prometheus: $(prometheus --version 2>&1 | head -n 1)"
OPSD_TEST_REQUIRE_PROMETHEUS=1 go test -count=1 -timeout 10m -run '^TestRealPrometheus$' ./cmd/opsd/
