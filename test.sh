#!/usr/bin/env bash
# Installs what Ward's tests need, then runs every test. CI runs this script
# (through .ci/run); so can you, on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")"

# Outside peers the tests talk to: openssl (s_client, s_server, crl, verify),
# Java's keytool (reads our PKCS#12 trust stores), swtpm (a software TPM 2.0
# the agent's TPM-held key is tested against over its TCP socket) and
# tpm2-tools (an outside TSS loading the same key blobs). The in-process TPM
# simulator of internal/tpmkey's tests is C built with cgo against OpenSSL:
# gcc and libssl-dev. Chromium is the browser the web console's tests drive
# (headless, through chromedp).
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v keytool >/dev/null 2>&1 || need+=(default-jre-headless)
command -v swtpm >/dev/null 2>&1 || need+=(swtpm swtpm-tools)
command -v tpm2_load >/dev/null 2>&1 || need+=(tpm2-tools)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
# The package test (packaging/) installs the .deb with dpkg, checks the
# systemd units with systemd-analyze (Debian's systemd package; it works
# without systemd running) and reads the .rpm with rpm.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v rpm >/dev/null 2>&1 || need+=(rpm)
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# script(1) gives `ward run` a real terminal in the progress-line test.
command -v script >/dev/null 2>&1 || need+=(bsdutils)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

go version
# go.mod and go.sum must be exactly what `go mod tidy` writes (a module the
# code imports directly must not be marked indirect, and nothing unused may
# linger). -diff changes nothing and fails with the difference.
if ! go mod tidy -diff; then
  echo "test.sh: go.mod/go.sum are not tidy: run \`go mod tidy\` and commit the result" >&2
  exit 1
fi
go vet ./...
# The etcd server the store, e2e and bench tests start (internal/store/etcd/
# etcdtest) is built from this nested module; vetting it here fetches its
# modules and fills the build cache, so a fetch problem fails here, clearly.
go -C internal/store/etcd/etcdtest/server vet ./...
# Unit tests with the race detector, then everything (including the
# end-to-end tests that start real coordinator and agent processes).
go test -count=1 -race -timeout 20m ./internal/...
go test -count=1 -timeout 30m ./...
# Fuzzing: every fuzz target (Go's native fuzzing) for a bounded time each,
# 10 s by default (WARD_FUZZTIME). A crasher fails the run and is written to
# its package's testdata/fuzz/, where plain `go test` replays it from then on.
./test/fuzz.sh "${WARD_FUZZTIME:-10s}"
