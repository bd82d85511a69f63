#!/usr/bin/env bash
# The main job on the bundled demo recipe: sets up this host (Docker engine, single-node swarm,
# local images), builds ccci, builds the demo recipe's git repository (two published versions
# and a change), and runs `ccci test demo` with every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
cargo build --release --locked --quiet
repo=${CCCI_DEMO_REPO:-/tmp/ccci-demo-recipe}
bash scripts/make-recipe-repo.sh recipes/demo "$repo" >/dev/null
exec ./target/release/ccci test demo --source "$repo" --stage all "$@"
