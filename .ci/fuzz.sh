#!/usr/bin/env bash
# Runs every fuzz target for a short time (OPSD_FUZZTIME, default 15s each). Seed corpora live in
# each package's testdata/fuzz/<Target>/ and also run as ordinary tests under `go test`. A
# failing input is written by Go under testdata/fuzz/<Target>/; commit it (it becomes a
# regular test) with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${OPSD_FUZZTIME:-15s}"
targets=(
	"./config FuzzParse"
	"./config FuzzKeyTemplate"
	"./internal/schedule FuzzParse"
	"./internal/artifact FuzzManifest"
	"./internal/artifact FuzzTarVerifier"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== fuzz $pkg $name ($fuzztime)"
	# -fuzzminimizetime bounds the minimisation of new inputs: targets that use goroutines (the tar
	# verifier) have slightly nondeterministic coverage, and unbounded minimisation stalls them.
	go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 20x -timeout 10m
done
