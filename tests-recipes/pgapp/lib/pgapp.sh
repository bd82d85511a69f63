# shellcheck shell=bash
# Helpers of pgapp's tests and hooks, sourced by them. The app is reachable only inside the
# swarm (no proxy here), so requests run in the app's container: `wget` against 127.0.0.1,
# which goes through the app's CGI scripts and psql to the `db` service. `db_sql` asks the
# database directly, for what the app does not show (row versions, the schema).
: "${STACK_NAME:?STACK_NAME is not set}"

fail() {
  printf '%s: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}

# A name for this run usable in keys and values (pgapp accepts [A-Za-z0-9._:-]).
run_tag() { printf '%s' "${RUN_ID:-manual}" | tr -c 'A-Za-z0-9._:-' '-'; }

# healthy_container SERVICE [SECONDS]: the id of a running, healthy container of the stack's
# SERVICE, waiting up to SECONDS (default 0) for one. Fails naming what runs instead.
healthy_container() {
  local service="${STACK_NAME}_$1" deadline=$((SECONDS + ${2:-0})) cid
  if ! docker service inspect "$service" >/dev/null 2>&1; then
    fail "service ${service} is not deployed"
  fi
  while :; do
    cid=$(docker ps -q --filter "label=com.docker.swarm.service.name=${service}" --filter health=healthy | head -n 1)
    [ -n "$cid" ] && { printf '%s' "$cid"; return; }
    if [ "$SECONDS" -ge "$deadline" ]; then
      docker ps -a --filter "label=com.docker.swarm.service.name=${service}" >&2 || true
      fail "no healthy running container of ${service}"
    fi
    sleep 2
  done
}

APP=""
app() { [ -n "$APP" ] || APP=$(healthy_container app "${PGAPP_WAIT:-0}"); printf '%s' "$APP"; }

# app_get PATH: the body the app answers to GET PATH; fails on an HTTP error.
app_get() {
  local cid
  cid=$(app)
  docker exec "$cid" wget -q -O - "http://127.0.0.1$1" || fail "GET $1 failed"
}

# app_put KEY VALUE: stores a row through the app; prints what the app answers.
app_put() {
  local cid
  cid=$(app)
  docker exec "$cid" wget -q -O - --post-data "key=$1&value=$2" "http://127.0.0.1/cgi-bin/rows" ||
    fail "POST /cgi-bin/rows key=$1 failed"
}

# app_value KEY: the value of row KEY as the app reads it.
app_value() { app_get "/cgi-bin/rows?key=$1"; }

# db_sql SQL: runs SQL in the db container as the database's owner; prints unaligned tuples.
db_sql() {
  local cid
  cid=$(healthy_container db "${PGAPP_WAIT:-0}")
  printf '%s\n' "$1" | docker exec -i "$cid" sh -c 'psql -X -v ON_ERROR_STOP=1 -qtA -U "$POSTGRES_USER" -d "$POSTGRES_DB"' ||
    fail "psql in ${STACK_NAME}_db failed: $1"
}

# The app version the service is deployed with: the tag of its image (ccci-pgapp:<version>).
deployed_app_version() {
  local image
  image=$(docker service inspect "${STACK_NAME}_app" --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}')
  image=${image%@*}
  printf '%s' "${image##*:}"
}

# Hooks run before ccci deploys anything when their stage is the first one selected: say so
# instead of waiting for an app that will not come.
require_deployed() {
  docker service inspect "${STACK_NAME}_app" >/dev/null 2>&1 ||
    fail "${STACK_NAME}_app is not deployed yet: ccci runs this hook before it deploys the app when ${STAGE:-this} is the first stage selected; select the install stage too"
}
