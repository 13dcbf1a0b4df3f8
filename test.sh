#!/usr/bin/env bash
# Installs what Ward's tests need, then runs every test. CI runs this script
# (through .ci/run); so can you, on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")"

# Outside peers the tests talk to: openssl (s_client, s_server, crl, verify)
# and Java's keytool (reads our PKCS#12 trust stores).
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v keytool >/dev/null 2>&1 || need+=(default-jre-headless)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

go version
go vet ./...
# Unit tests with the race detector, then everything (including the
# end-to-end tests that start real coordinator and agent processes).
go test -count=1 -race -timeout 20m ./internal/...
go test -count=1 -timeout 30m ./...
