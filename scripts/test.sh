#!/usr/bin/env bash
# The whole test suite: sets up this host (Docker engine, single-node swarm, local images), builds
# the pinned Gitea the service-mode tests use as a real forge (once; cached under
# /var/cache/ccci), checks formatting and lints, then runs every test with nextest, real-swarm and
# real-forge tests included (the harness of tests/it lists them as ignored, so nextest counts them
# as skipped, only when there is no active swarm or no built Gitea). nextest's closing summary
# line says how many passed, failed and were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
# The dashboard tests load pages in a real headless browser; the demo itself needs none.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v chromium >/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
# A fresh Debian has no Go recent enough to build the forge: the suite then runs without it, and
# nextest counts its tests as skipped (build-forge.sh said what is missing). A build that fails
# for any other reason stops here.
forge=0
bash scripts/build-forge.sh >/dev/null || forge=$?
case $forge in
0) ;;
2) printf 'test.sh: no test forge on this machine; its tests will be reported as skipped\n' >&2 ;;
*) exit "$forge" ;;
esac
cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --locked --no-fail-fast "$@"
