#!/usr/bin/env bash
# Benchmark (not a test): `ccci test demo --stage install` against a naive shell baseline that
# does the same job the obvious way (stack deploy, wait healthy, stack rm, wait until gone,
# remove the volume), run alternately N times on the same host. Prints each time, the medians
# and the ratio ccci/baseline (target ≤ 0.5), and the time from the swarm's unhealthy kill to
# ccci's verdict on the slowdb fixture without the overlay (target ≤ 5 s).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bash scripts/setup-host.sh
cargo build --release --locked --quiet
ccci=./target/release/ccci
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash scripts/make-recipe-repo.sh recipes/demo "$work/demo.git" >/dev/null
bash scripts/make-recipe-repo.sh tests/fixtures/recipes/slowdb "$work/slowdb.git" >/dev/null
export CCCI_RUNS_DIR=$work/runs CCCI_APP_LOCK_DIR=$work/locks ABRA_DIR=$work/abra CCCI_CONFIG=$work/config.yml CI=true
: >"$CCCI_CONFIG"

now() { date +%s.%N; }

baseline() {
  local dir=$work/baseline stack=bench_baseline_$1
  rm -rf "$dir"; git clone -q "$work/demo.git" "$dir"
  (
    cd "$dir"
    export STACK_NAME=$stack DOMAIN=bench.example SECRET_ADMIN_PASSWORD_VERSION=v1 ENTRYPOINT_VERSION=v1
    head -c 32 /dev/urandom | base64 | docker secret create "${stack}_admin_password_v1" - >/dev/null
    docker stack deploy -c compose.yml "$stack" >/dev/null 2>&1
    until [ "$(docker ps -q --filter "label=com.docker.stack.namespace=$stack" --filter health=healthy | wc -l)" -ge 1 ]; do sleep 0.2; done
    docker stack rm "$stack" >/dev/null
    while [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")" ]; do sleep 0.2; done
    until docker volume rm "${stack}_data" >/dev/null 2>&1; do sleep 0.2; done
    docker secret rm "${stack}_admin_password_v1" >/dev/null 2>&1 || true
    while docker network inspect "${stack}_default" >/dev/null 2>&1; do sleep 0.2; done
  )
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$work/ccci.times"; : >"$work/base.times"
for i in $(seq 1 "$runs"); do
  t0=$(now); "$ccci" test demo --source "$work/demo.git" --stage install --run-id "bench-$i" >/dev/null 2>&1; t1=$(now)
  baseline "$i"; t2=$(now)
  c=$(echo "$t1 - $t0" | bc); b=$(echo "$t2 - $t1" | bc)
  echo "$c" >>"$work/ccci.times"; echo "$b" >>"$work/base.times"
  printf 'run %d: ccci %.2fs  baseline %.2fs\n' "$i" "$c" "$b"
done
mc=$(median <"$work/ccci.times"); mb=$(median <"$work/base.times")
printf 'median: ccci %.2fs, baseline %.2fs, ratio ccci/baseline %.2f (target <= 0.5)\n' "$mc" "$mb" "$(echo "$mc / $mb" | bc -l)"

# Kill → verdict: the swarm's unhealthy event (nanoseconds) vs the arrival of ccci's verdict line.
events=$work/events
docker events --since "$(date +%s)" --filter event=die --filter event=health_status --format '{{.TimeNano}} {{.Status}} {{index .Actor.Attributes "com.docker.swarm.service.name"}}' >"$events" &
ev=$!
# The verdict is timed the moment its line arrives on ccci's (plain, CI-style) stderr.
CI=true "$ccci" test slowdb --source "$work/slowdb.git" --stage install --no-overlay --run-id bench-kill 2>&1 >/dev/null |
  while IFS= read -r line; do
    case $line in *"verdict: "*) date +%s.%N >"$work/verdict_at" ;; esac
  done || true
kill "$ev" 2>/dev/null || true
unhealthy=$(awk '/health_status: unhealthy/ {print $1; exit}' "$events")
verdict_at=$(cat "$work/verdict_at" 2>/dev/null || echo 0)
if [ -n "$unhealthy" ]; then
  printf 'unhealthy → verdict: %.2fs (target <= 5 s)\n' "$(echo "$verdict_at - $unhealthy / 1000000000" | bc -l)"
else
  echo "unhealthy → verdict: no unhealthy event seen"
fi
