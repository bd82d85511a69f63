#!/usr/bin/env bash
# Builds the pinned Gitea that the service-mode tests use as a real forge on loopback, or
# reuses the one already built.
#
#   scripts/build-forge.sh            # prints the binary's path on stdout
#   scripts/build-forge.sh --check    # the same when it is built; builds nothing and exits 1
#                                     # when it is not (the test harness asks this)
#
# Exit 2: this machine lacks what the build needs (a Go toolchain of at least $GITEA_GO, a C
# compiler); a fresh Debian has neither Go that recent nor, always, gcc. scripts/test.sh then goes
# on without the forge, whose tests are reported as skipped. Any other failure exits 1.
#
# The source comes from the Go module registry (`go mod download`), never from this repository.
# Gitea's go.mod has replace directives, so `go install module@version` refuses it: the module is
# copied to a writable directory and built there. Templates, options and the static assets are
# embedded (`bindata`), so the binary runs from any directory; the frontend (JS/CSS) is not built,
# which only the web UI needs, never the REST API or webhooks. SQLite is linked through CGO, so a
# C compiler is needed (Debian: apt-get install gcc libc6-dev).
#
# Environment:
#   CCCI_CACHE  where the machine keeps caches (default /var/cache/ccci); the binary lands in
#               $CCCI_CACHE/forge/gitea-<version>, the Go caches in $CCCI_CACHE/go
#   GO          the Go toolchain (default /usr/local/go/bin/go, else `go` on PATH)
#   FORGE_REBUILD=1  build even when the binary is already there
#
# Timings and progress go to stderr; only the path goes to stdout.
set -euo pipefail

GITEA_MODULE=code.gitea.io/gitea
# v1.27.x needs gitea.dev/* modules that the Go module proxy refuses (403), so it cannot be
# built from the registry; v1.26.0 resolves entirely from it.
GITEA_VERSION=v1.26.0
# The least Go its go.mod accepts (with GOTOOLCHAIN=local, an older Go refuses to build it).
GITEA_GO=1.26.2
# This release links SQLite through mattn/go-sqlite3, which needs these tags and CGO.
GITEA_TAGS="bindata sqlite sqlite_unlock_notify"

die() { printf 'build-forge: %s\n' "$*" >&2; exit 1; }
say() { printf 'build-forge: %s\n' "$*" >&2; }
missing() { printf 'build-forge: cannot build the test forge here: %s\n' "$*" >&2; exit 2; }

cache=${CCCI_CACHE:-/var/cache/ccci}
forge_dir=$cache/forge
bin=$forge_dir/gitea-${GITEA_VERSION#v}

reusable() { [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; }

case ${1:-} in
"") ;;
--check)
  reusable || die "$bin is not built: run \`bash scripts/build-forge.sh\`"
  printf '%s\n' "$bin"
  exit 0
  ;;
*) die "usage: $0 [--check]" ;;
esac

if [ "${FORGE_REBUILD:-0}" != 1 ] && reusable; then
  say "reusing $bin"
  printf '%s\n' "$bin"
  exit 0
fi

# What the build needs, checked before anything is downloaded.
if [ -z "${GO:-}" ]; then
  if [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; else GO=$(command -v go) || missing "no Go toolchain: install Go $GITEA_GO or later, or set GO=/path/to/go"; fi
fi
go_version=$("$GO" env GOVERSION 2>/dev/null) || missing "$GO does not run"
go_version=${go_version#go}
if [ "$(printf '%s\n%s\n' "$GITEA_GO" "$go_version" | sort -V | head -n 1)" != "$GITEA_GO" ]; then
  missing "Gitea $GITEA_VERSION needs Go $GITEA_GO or later; $GO is $go_version"
fi
command -v "${CC:-gcc}" >/dev/null || missing "no C compiler for SQLite's CGO driver: apt-get install gcc libc6-dev"

mkdir -p "$forge_dir"
# Parallel test runs share the cache: one builds, the others wait and reuse its result.
exec 9>"$forge_dir/.build.lock"
flock 9
if [ "${FORGE_REBUILD:-0}" != 1 ] && reusable; then
  say "reusing $bin (built while waiting for the lock)"
  printf '%s\n' "$bin"
  exit 0
fi

export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=1

say "downloading $GITEA_MODULE@$GITEA_VERSION with $("$GO" version)"
info=$("$GO" mod download -json "$GITEA_MODULE@$GITEA_VERSION") \
  || die "go mod download $GITEA_MODULE@$GITEA_VERSION failed: is the Go module proxy reachable?"
moddir=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$moddir" ] || [ ! -f "$moddir/go.mod" ]; then
  die "go mod download gave no module directory: $info"
fi

# The module cache is read-only and `go generate` writes the embedded asset files next to the
# code, so the build happens in a scratch copy that is removed afterwards.
src=$forge_dir/src-$GITEA_VERSION.tmp
rm -rf "$src"
trap 'rm -rf "$src" "$bin.tmp"' EXIT
cp -r "$moddir" "$src"
chmod -R u+w "$src"

say "generating embedded assets"
(cd "$src" && "$GO" generate -tags bindata ./modules/options ./modules/templates ./modules/public ./modules/migration) >&2

say "compiling (first build takes minutes; later builds reuse $GOCACHE)"
(cd "$src" && "$GO" build -trimpath -tags "$GITEA_TAGS" \
  -ldflags "-s -w -X main.Version=${GITEA_VERSION#v} -X 'main.Tags=$GITEA_TAGS'" \
  -o "$bin.tmp" .) >&2
"$bin.tmp" --version >&2 || die "the built binary does not run"
mv -f "$bin.tmp" "$bin"

say "built $bin in ${SECONDS}s"
printf '%s\n' "$bin"
