#!/usr/bin/env bash
# Regenerates the committed shell completions and man page from the clap definition.
# tests/it/cli.rs fails when they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked
bin=./target/debug/ccci
mkdir -p completions man
"$bin" completions bash >completions/ccci.bash
"$bin" completions zsh >completions/_ccci
"$bin" completions fish >completions/ccci.fish
"$bin" man >man/ccci.1
