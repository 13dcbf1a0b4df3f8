#!/usr/bin/env bash
# Runs every fuzz target in the module for a bounded time each:
#   test/fuzz.sh [TIME]      (TIME per target, default 10s; e.g. 60s, 2m)
# A crasher fails the run; Go writes it to the package's
# testdata/fuzz/FuzzName/ directory, where `go test` runs it from then on as
# a regression test: commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-10s}"
failed=()
n=0
start=$SECONDS
# Each "package target" pair, from the test files' own declarations.
while read -r dir name; do
  n=$((n + 1))
  echo "fuzz: $name in ./$dir for $fuzztime"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$dir" > "${TMPDIR:-/tmp}/ward-fuzz-$name.log" 2>&1; then
    tail -n 30 "${TMPDIR:-/tmp}/ward-fuzz-$name.log"
    failed+=("$dir $name")
  fi
done < <(grep -rE --include='*_test.go' -o '^func (Fuzz[A-Za-z0-9_]+)\(' internal | sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#\1 \2#' | sort -u)
echo "fuzz: $n targets, $((SECONDS - start))s in all"
if ((${#failed[@]})); then
  echo "fuzz: FAILED (a crasher is in the package's testdata/fuzz/): ${failed[*]}" >&2
  exit 1
fi
