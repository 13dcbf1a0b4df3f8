#!/usr/bin/env bash
# Builds Ward's .deb and .rpm with nfpm into $OUT (default dist/).
#
#   packaging/build.sh                      # version from packaging/VERSION plus -dev.<time>.<commit>
#   WARD_VERSION=0.1.0 packaging/build.sh   # a release
#
# nfpm runs with `go run` at a pinned version, so nothing else is installed.
# The binary gets its version, commit and build date at link time (ward
# version shows them); man pages, markdown CLI docs and bash, zsh and fish
# completion come from the binary itself.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
out=${OUT:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
build_date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
if [ -z "${WARD_VERSION:-}" ]; then
  base=$(tr -d '[:space:]' < packaging/VERSION)
  WARD_VERSION="$base-dev.$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).g${commit:0:12}"
fi
export WARD_VERSION
export WARD_ARCH=${WARD_ARCH:-$(go env GOARCH)}
export WARD_STAGE="$out/stage"
rm -rf "$WARD_STAGE"
mkdir -p "$WARD_STAGE"/{man,cli,completion}

pkg=github.com/wardcluster/ward/internal/buildinfo
echo "build.sh: ward $WARD_VERSION ($WARD_ARCH, commit ${commit:0:12}, built $build_date)"
CGO_ENABLED=0 GOOS=linux GOARCH="$WARD_ARCH" go build -trimpath \
  -ldflags "-s -w -X $pkg.version=$WARD_VERSION -X $pkg.commit=$commit -X $pkg.date=$build_date" \
  -o "$WARD_STAGE/ward" ./cmd/ward

# Documentation and completion come from a binary for this machine (the
# same as the packaged one unless cross-building).
gen="$WARD_STAGE/ward"
if [ "$WARD_ARCH" != "$(go env GOHOSTARCH)" ]; then
  gen="$out/ward-host"
  CGO_ENABLED=0 go build -o "$gen" ./cmd/ward
fi
"$gen" docs man --dir "$WARD_STAGE/man" 2>/dev/null
gzip -9n "$WARD_STAGE"/man/*.1
"$gen" docs markdown --dir "$WARD_STAGE/cli" 2>/dev/null
"$gen" completion bash > "$WARD_STAGE/completion/ward.bash"
"$gen" completion zsh > "$WARD_STAGE/completion/_ward"
"$gen" completion fish > "$WARD_STAGE/completion/ward.fish"

# nfpm expands variables in version and arch but not in file sources.
sed "s#\${WARD_STAGE}#$WARD_STAGE#g" packaging/nfpm.yaml > "$WARD_STAGE/nfpm.yaml"
for packager in deb rpm; do
  go run "$NFPM" package --config "$WARD_STAGE/nfpm.yaml" --packager "$packager" --target "$out/"
done
ls -l "$out"/*.deb "$out"/*.rpm
