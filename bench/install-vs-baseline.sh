#!/usr/bin/env bash
# Benchmark (not a test): `ccci test demo --stage install` against two references doing the same
# job on the same host, run alternately in the same run (ccci, floor, baseline, ccci, …) so that
# load from elsewhere falls on all three alike. Prints each time, the medians and two ratios:
#
#   floor     the same work by hand with no waste: create the same secret, deploy the same
#             compose files (the recipe's compose.yml and the compose.ccci.yml ccci generated for
#             its own run), poll the container's health on the engine's socket every 50 ms until
#             it is healthy, `docker stack rm` and kill the containers, poll every 50 ms until
#             they are gone, remove the volume and the secret. Target: ccci/floor <= 1.15.
#             The floor runs no checks; ccci runs the recipe's probe and install tests, and the
#             script also prints the ratio without the time run.json records for them.
#   baseline  the naive shell way: stack deploy, `docker ps` every 0.2 s until healthy, a
#             graceful `docker stack rm`, wait until the containers are gone, remove the volume
#             and the secret, wait for the network. The demo app ignores SIGTERM, so the graceful
#             stop waits out its 10 s stop grace period: that, not ccci, is most of the gap, and
#             why ccci/baseline (target <= 0.5) flatters.
#
# Then the time from the swarm's unhealthy event to the arrival of ccci's verdict line, on the
# slowdb fixture without the overlay (target <= 5 s).
#
# Every figure is a measured, positive duration: a run that fails, a verdict line that never
# comes, an engine event that is missing stops the script with a message instead.
#
#   bench/install-vs-baseline.sh [runs]      (default 5)
set -euo pipefail
# Command substitutions (every measurement runs in one) stop at the first failure too.
shopt -s inherit_errexit
export LC_ALL=C

die() {
  printf 'install-vs-baseline: %s\n' "$*" >&2
  exit 1
}

runs=${1:-5}
[[ $runs =~ ^[1-9][0-9]?$ ]] || die "usage: $0 [runs]: runs is a number from 1 to 99"
for tool in docker curl git awk jq; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
cargo build --release --locked --quiet
ccci=$PWD/target/release/ccci

# The floor talks to the engine the way ccci's API client does: over its unix socket.
case ${DOCKER_HOST:-unix:///var/run/docker.sock} in
  unix://*) socket=${DOCKER_HOST:-unix:///var/run/docker.sock}; socket=${socket#unix://} ;;
  *) die "DOCKER_HOST=$DOCKER_HOST is not a unix socket; the floor needs one" ;;
esac
api() { curl -sS --fail-with-body --unix-socket "$socket" "$@"; }
api_url=http://docker/v1.41

work=$(mktemp -d)
tag=b$$ # in every stack name of this script, so leftovers are found and nothing else is touched
events_pid=
cleanup() {
  [ -z "$events_pid" ] || kill "$events_pid" 2>/dev/null || true
  docker stack ls --format '{{.Name}}' 2>/dev/null | grep "^${tag}_" | xargs -r docker stack rm >/dev/null 2>&1 || true
  docker ps -aq --filter "name=${tag}_" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker volume ls -q --filter "name=${tag}_" | xargs -r docker volume rm >/dev/null 2>&1 || true
  docker secret ls -q --filter "name=${tag}_" | xargs -r docker secret rm >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash scripts/make-recipe-repo.sh recipes/demo "$work/demo.git" >/dev/null
bash scripts/make-recipe-repo.sh tests/fixtures/recipes/slowdb "$work/slowdb.git" >/dev/null
export CCCI_RUNS_DIR=$work/runs CCCI_APP_LOCK_DIR=$work/locks ABRA_DIR=$work/abra CCCI_CONFIG=$work/config.yml CI=true
: >"$CCCI_CONFIG"
git clone -q "$work/demo.git" "$work/tree"

now() { printf '%s' "$EPOCHREALTIME"; }

# `b - a` in seconds, refusing anything but a positive duration.
elapsed() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a !~ /^[0-9]+(\.[0-9]+)?$/ || b !~ /^[0-9]+(\.[0-9]+)?$/ || b - a <= 0) exit 1; printf "%.3f", b - a }' ||
    die "not a positive duration: from '$1' to '$2'"
}

# Waits until `$@` succeeds, looking every `every` seconds, for at most `limit` seconds.
poll() {
  local every=$1 limit=$2 what=$3 start
  shift 3
  start=$SECONDS
  until "$@"; do
    ((SECONDS - start < limit)) || die "$what: still not so after ${limit} s"
    sleep "$every"
  done
}

# Ids of the stack's containers (`healthy` ones only, or `all`), from the engine's socket. An
# engine that does not answer stops the script: an empty answer must mean "none".
containers() {
  local filters='{"label":["com.docker.stack.namespace='"$1"'"]' out
  [ "$2" = healthy ] && filters+=',"health":["healthy"]'
  out=$(api -G --data-urlencode "filters=$filters}" --data-urlencode all=true "$api_url/containers/json") ||
    die "the engine did not answer a container list"
  grep -o '"Id":"[0-9a-f]*"' <<<"$out" | cut -d'"' -f4 || true
}
# A failed query stops the script here: inside `$(…)` it would only end that subshell.
healthy() {
  ids=$(containers "$1" healthy) || die "the engine did not answer a container list"
  [ -n "$ids" ]
}
gone() {
  local left
  left=$(containers "$1" all) || die "the engine did not answer a container list"
  [ -z "$left" ]
}

# The deploy environment of the demo recipe: its env file's variables and abra.sh's exports.
demo_env() {
  export STACK_NAME=$1 DOMAIN=$1.bench.example TYPE=demo SECRET_ADMIN_PASSWORD_VERSION=v1 ENTRYPOINT_VERSION=v1
}

run_ccci() {
  local id=$1 t0 t1 status=0
  t0=$(now)
  "$ccci" test demo --source "$work/demo.git" --stage install --run-id "$id" >"$work/$id.out" 2>&1 || status=$?
  t1=$(now)
  if [ "$status" -ne 0 ]; then
    tail -n 20 "$work/$id.out" >&2
    die "ccci run $id did not pass (exit $status)"
  fi
  grep -q '"verdict": "pass"' "$CCCI_RUNS_DIR/$id/run.json" || die "ccci run $id: run.json has no pass verdict"
  elapsed "$t0" "$t1"
}

# Seconds ccci spent in the stage's checks (the recipe's probe and install tests), which the
# floor does not run.
checks_of() {
  jq -e '[.stages[].checks[].seconds] | add // 0' "$CCCI_RUNS_DIR/$1/run.json" ||
    die "ccci run $1: no checks in run.json"
}

# The floor deploys the overlay ccci generated for run `$2`, with ccci's stack and domain
# replaced by its own.
run_floor() {
  local stack=${tag}_floor_$1 from=$CCCI_RUNS_DIR/$2 t0 t1 ids id ccci_stack ccci_domain
  local secret=${stack}_admin_password_v1 value code
  ccci_stack=$(sed -n 's/^ *"stack": "\(.*\)",$/\1/p' "$from/run.json")
  ccci_domain=$(sed -n 's/^ *"domain": "\(.*\)",$/\1/p' "$from/run.json")
  [[ -n $ccci_stack && -n $ccci_domain ]] || die "no stack or domain in $from/run.json"
  [ -f "$from/abra/recipes/demo/compose.ccci.yml" ] || die "ccci run $2 left no compose.ccci.yml"
  sed "s/$ccci_stack/$stack/g; s/$ccci_domain/$stack.bench.example/g" \
    "$from/abra/recipes/demo/compose.ccci.yml" >"$work/tree/compose.ccci.yml"
  value=$(head -c 24 /dev/urandom | base64)
  t0=$(now)
  (
    cd "$work/tree"
    demo_env "$stack"
    api -H 'Content-Type: application/json' \
      -d '{"Name":"'"$secret"'","Labels":{"com.docker.stack.namespace":"'"$stack"'"},"Data":"'"$(printf %s "$value" | base64)"'"}' \
      "$api_url/secrets/create" >/dev/null || die "floor: cannot create secret $secret"
    docker stack deploy --resolve-image never --detach=true -c compose.yml -c compose.ccci.yml "$stack" >/dev/null 2>"$work/floor.err" ||
      die "floor: deploy failed: $(cat "$work/floor.err")"
  ) || exit 1
  poll 0.05 300 "floor: $stack healthy" healthy "$stack"
  docker stack rm "$stack" >/dev/null || die "floor: stack rm $stack failed"
  for id in $ids; do
    api -X DELETE "$api_url/containers/$id?force=true" >/dev/null || die "floor: cannot kill container $id"
  done
  poll 0.05 120 "floor: containers of $stack gone" gone "$stack"
  api -X DELETE "$api_url/volumes/${stack}_data" >/dev/null || die "floor: cannot remove volume ${stack}_data"
  # `stack rm` removes the secret already when it carries the stack's label, as ccci's does.
  code=$(curl -sS -o /dev/null -w '%{http_code}' --unix-socket "$socket" -X DELETE "$api_url/secrets/$secret") ||
    die "floor: the engine did not answer the removal of secret $secret"
  [[ $code == 204 || $code == 404 ]] || die "floor: cannot remove secret $secret (HTTP $code)"
  t1=$(now)
  elapsed "$t0" "$t1"
}

# The naive baseline's own predicates: one docker CLI call each.
base_healthy() {
  local found
  found=$(docker ps -q --filter "label=com.docker.stack.namespace=$1" --filter health=healthy) || die "baseline: docker ps failed"
  [ -n "$found" ]
}
base_gone() {
  local left
  left=$(docker ps -aq --filter "label=com.docker.stack.namespace=$1") || die "baseline: docker ps failed"
  [ -z "$left" ]
}
base_network_gone() { ! docker network inspect "$1_default" >/dev/null 2>&1; }

run_baseline() {
  local stack=${tag}_base_$1 t0 t1
  t0=$(now)
  (
    cd "$work/tree"
    rm -f compose.ccci.yml
    demo_env "$stack"
    head -c 32 /dev/urandom | base64 | docker secret create "${stack}_admin_password_v1" - >/dev/null
    docker stack deploy -c compose.yml "$stack" >/dev/null 2>&1
  ) || die "baseline: deploy of $stack failed"
  poll 0.2 300 "baseline: $stack healthy" base_healthy "$stack"
  docker stack rm "$stack" >/dev/null || die "baseline: stack rm $stack failed"
  poll 0.2 120 "baseline: containers of $stack gone" base_gone "$stack"
  poll 0.2 60 "baseline: volume ${stack}_data removed" docker volume rm "${stack}_data" >/dev/null 2>&1
  docker secret rm "${stack}_admin_password_v1" >/dev/null || die "baseline: cannot remove its secret"
  poll 0.2 60 "baseline: network ${stack}_default gone" base_network_gone "$stack"
  t1=$(now)
  elapsed "$t0" "$t1"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) exit 1; printf "%.2f", a / b }'; }

: >"$work/ccci.times"
: >"$work/floor.times"
: >"$work/base.times"
: >"$work/nochecks.times"
for i in $(seq 1 "$runs"); do
  c=$(run_ccci "bench-$i")
  f=$(run_floor "$i" "bench-$i")
  b=$(run_baseline "$i")
  echo "$c" >>"$work/ccci.times"
  echo "$f" >>"$work/floor.times"
  echo "$b" >>"$work/base.times"
  k=$(checks_of "bench-$i")
  awk -v c="$c" -v k="$k" 'BEGIN { printf "%.3f\n", c - k }' >>"$work/nochecks.times"
  printf 'run %d: ccci %.2fs (of which checks %.2fs)  floor %.2fs  baseline %.2fs\n' "$i" "$c" "$k" "$f" "$b"
done
# Every figure is computed into a variable first: a failed computation then stops the script
# (set -e), where inside printf's arguments it would print an empty figure.
mc=$(median <"$work/ccci.times")
mf=$(median <"$work/floor.times")
mb=$(median <"$work/base.times")
mn=$(median <"$work/nochecks.times")
to_floor=$(ratio "$mc" "$mf") || die "no ratio of $mc to $mf"
to_floor_unchecked=$(ratio "$mn" "$mf") || die "no ratio of $mn to $mf"
to_baseline=$(ratio "$mc" "$mb") || die "no ratio of $mc to $mb"
printf 'median of %d: ccci %.2fs, floor %.2fs, baseline %.2fs\n' "$runs" "$mc" "$mf" "$mb"
printf 'ratio ccci/floor %s (target <= 1.15)\n' "$to_floor"
printf '  without its checks, which the floor does not run: %s\n' "$to_floor_unchecked"
printf 'ratio ccci/baseline %s (target <= 0.5; the baseline waits out a 10 s stop grace period)\n' "$to_baseline"

# Unhealthy → verdict: the engine's health_status event (its own nanosecond clock) against the
# moment ccci's verdict line arrives on its plain (CI-style) stderr, read as it is written.
events=$work/events
docker events --since "$(date +%s)" --filter type=container --filter event=health_status \
  --format '{{.TimeNano}} {{.Status}} {{index .Actor.Attributes "com.docker.stack.namespace"}}' >"$events" &
events_pid=$!
set +e
"$ccci" test slowdb --source "$work/slowdb.git" --stage install --no-overlay --run-id bench-kill 2>&1 >/dev/null |
  while IFS= read -r line; do
    if [[ $line =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\ verdict:\  ]]; then
      printf '%s %s\n' "$EPOCHREALTIME" "$line" >"$work/verdict"
    fi
  done
status=("${PIPESTATUS[@]}")
set -e
[ "${status[0]}" -ne 0 ] || die "slowdb without the overlay passed: it should have been killed unhealthy"
[ -s "$work/verdict" ] || die "slowdb run: no verdict line arrived on ccci's stderr"
read -r verdict_at verdict_line <"$work/verdict"
case $verdict_line in *"verdict: fail"*) ;; *) die "slowdb run: expected a failing verdict, got: $verdict_line" ;; esac
stack=$(sed -n 's/^ *"stack": "\(.*\)",$/\1/p' "$CCCI_RUNS_DIR/bench-kill/run.json")
[ -n "$stack" ] || die "slowdb run: no stack in run.json"
unhealthy() { awk -v s="$stack" '$2 == "health_status:" && $3 == "unhealthy" && $4 == s { print $1; exit }' "$events"; }
seen_unhealthy() { [ -n "$(unhealthy)" ]; }
# The event came before the verdict; its line may still be on its way through the CLI.
poll 0.05 5 "slowdb run: the engine's unhealthy event of $stack" seen_unhealthy
unhealthy_ns=$(unhealthy)
[[ $unhealthy_ns =~ ^[0-9]{10,}$ ]] || die "slowdb run: unexpected event time '$unhealthy_ns'"
# Whole seconds and nanoseconds as text: awk's doubles cannot hold 19 digits exactly.
unhealthy_at=${unhealthy_ns:0:${#unhealthy_ns}-9}.${unhealthy_ns: -9}
to_verdict=$(elapsed "$unhealthy_at" "$verdict_at")
printf 'unhealthy -> verdict: %ss (target <= 5 s)\n' "$to_verdict"
