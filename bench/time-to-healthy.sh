#!/usr/bin/env bash
# Benchmark (not a test): how long after its container starts ccci sees a healthy app, for a
# recipe whose healthcheck has a published recipe's `interval: 30s` (the slowcheck fixture).
# A container is first checked one interval after it starts, so without ccci's overlay the
# wait is at least 30 s; the overlay shortens the interval to 1 s (scaling retries so the
# window before "unhealthy" stays the recipe's). Target: <= 3 s with the overlay.
#
# Each run: `ccci test slowcheck --stage install` on a domain of its own, the engine's
# container `start` event (nanoseconds) against the arrival of ccci's `wait done` line
# (stamped in nanoseconds as it is read). Runs alternate with and without the overlay.
# A missing event or line stops the script with a message; no figure is made up.
#
#   bench/time-to-healthy.sh [runs]      (default 3)
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C

die() {
  printf 'time-to-healthy: %s\n' "$*" >&2
  exit 1
}

runs=${1:-3}
[[ $runs =~ ^[1-9][0-9]?$ ]] || die "usage: $0 [runs]: runs is a number from 1 to 99"
command -v jq >/dev/null || die "jq is not installed (apt-get install jq)"

cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
cargo build --release --locked --quiet
ccci=$PWD/target/release/ccci

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash scripts/make-recipe-repo.sh tests/fixtures/recipes/slowcheck "$work/slowcheck.git" >/dev/null

# One measurement: prints seconds from container start to ccci seeing it healthy.
measure() {
  local name=$1; shift
  local domain="tth-$name-$$.ccci.localhost" stack
  stack=$(printf '%s' "$domain" | tr . _)
  local events="$work/$name.events" lines="$work/$name.lines"
  docker events --format '{{json .}}' --filter type=container --filter event=start \
    --filter "label=com.docker.stack.namespace=$stack" >"$events" &
  local events_pid=$!
  # Make sure the event stream is attached before the deploy.
  for _ in $(seq 1 50); do kill -0 "$events_pid" 2>/dev/null && break; sleep 0.02; done
  CI=true CCCI_RUNS_DIR="$work/runs" CCCI_APP_LOCK_DIR="$work/locks" ABRA_DIR="$work/abra" \
    "$ccci" test slowcheck --source "$work/slowcheck.git" --stage install --driver stack \
    --domain "$domain" --run-id "$name-$$" "$@" 2>&1 >/dev/null |
    while IFS= read -r line; do printf '%s %s\n' "$(date +%s%N)" "$line"; done >"$lines" ||
    true
  kill "$events_pid" 2>/dev/null || true
  wait "$events_pid" 2>/dev/null || true
  local started seen
  started=$(jq -r '.timeNano' "$events" | head -1)
  seen=$(awk '/ wait done in /{print $1; exit}' "$lines")
  grep -q 'verdict: pass' "$lines" || die "$name: the run did not pass:$(printf '\n'; tail -5 "$lines")"
  [ -n "$started" ] && [ "$started" != null ] || die "$name: no container start event for $stack"
  [ -n "$seen" ] || die "$name: no 'wait done' line from ccci"
  (( seen > started )) || die "$name: ccci saw it healthy before it started?"
  awk -v a="$started" -v b="$seen" 'BEGIN { printf "%.2f\n", (b - a) / 1e9 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$work/with" ; : >"$work/without"
for i in $(seq 1 "$runs"); do
  w=$(measure "ov$i"); printf 'run %d  with overlay:    %6.2f s\n' "$i" "$w"; echo "$w" >>"$work/with"
  n=$(measure "raw$i" --no-overlay); printf 'run %d  without overlay: %6.2f s\n' "$i" "$n"; echo "$n" >>"$work/without"
done
with=$(median <"$work/with"); without=$(median <"$work/without")
printf '\ncontainer start -> ccci sees it healthy (interval: 30s in the recipe), median of %d:\n' "$runs"
printf '  with the overlay (interval 1s):  %s s   (target <= 3 s)\n' "$with"
printf '  as published (--no-overlay):     %s s\n' "$without"
