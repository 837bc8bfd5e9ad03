#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions, about 15 s each on 2 cores
# (OPSD_FUZZTIME overrides them all, e.g. 60s or 100000x). Seed corpora live in each package's
# testdata/fuzz/<Target>/ and also run as ordinary tests under `go test`. A failing input is
# written by Go under testdata/fuzz/<Target>/; commit it (it becomes a regular test) with the fix.
#
# Counts, not durations: with a duration, Go's fuzzing coordinator (before go1.27) can report a
# bare "context deadline exceeded" failure when the time ends while a worker is mid-run, with no
# failing input (golang/go#75804); a count has no deadline to race.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(
	"./config FuzzParse 20000x"
	"./config FuzzKeyTemplate 40000x"
	"./internal/schedule FuzzParse 200000x"
	"./internal/artifact FuzzManifest 3000x"
	"./internal/artifact FuzzTarVerifier 30000x"
)
for t in "${targets[@]}"; do
	read -r pkg name count <<<"$t"
	fuzztime="${OPSD_FUZZTIME:-$count}"
	echo "== fuzz $pkg $name ($fuzztime)"
	# -fuzzminimizetime bounds the minimisation of new inputs: targets that use goroutines (the tar
	# verifier) have slightly nondeterministic coverage, and unbounded minimisation stalls them.
	go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 20x -timeout 10m
done
