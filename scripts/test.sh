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
bash scripts/build-forge.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --locked --no-fail-fast "$@"
