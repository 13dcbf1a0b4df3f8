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
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" at the end of -fuzztime, having found nothing and
# written nothing (golang/go#75804, fixed in Go 1.27). Such a run is tried
# again once; a failure that writes an input, or any other failure, fails.
corpus_files() { { find "$1/testdata/fuzz/$2" -type f 2>/dev/null || true; } | wc -l; }
while read -r dir name; do
  n=$((n + 1))
  log="${TMPDIR:-/tmp}/ward-fuzz-$name.log"
  for try in 1 2; do
    echo "fuzz: $name in ./$dir for $fuzztime"
    before=$(corpus_files "$dir" "$name")
    if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$dir" < /dev/null > "$log" 2>&1; then
      break
    fi
    if [ "$(corpus_files "$dir" "$name")" = "$before" ] && grep -q '^    context deadline exceeded$' "$log" && ! grep -q 'Failing input written' "$log"; then
      echo "fuzz: $name stopped with Go's fuzztime deadline race (golang/go#75804), no input found or written"
      [ "$try" = 1 ] && continue
      break
    fi
    tail -n 30 "$log"
    failed+=("$dir $name")
    break
  done
# Each "package target" pair, from the test files' own declarations.
done < <(grep -rE --include='*_test.go' -o '^func (Fuzz[A-Za-z0-9_]+)\(' internal | sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#\1 \2#' | sort -u)
echo "fuzz: $n targets, $((SECONDS - start))s in all"
if ((${#failed[@]})); then
  echo "fuzz: FAILED (a crasher is in the package's testdata/fuzz/): ${failed[*]}" >&2
  exit 1
fi
