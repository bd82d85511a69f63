#!/usr/bin/env bash
# The whole test suite: sets up this host (Docker engine, single-node swarm, local images),
# checks formatting and lints, then runs every test with nextest, real-swarm tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
if ! command -v cargo-nextest >/dev/null; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --locked --no-fail-fast "$@"
