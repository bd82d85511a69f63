#!/bin/bash
# Entrypoint of ccci-postgres (scripts/build-images.sh): behaves like the official postgres
# image's entrypoint as published Co-op Cloud recipes use it, so a recipe written for
# `postgres:15` runs on this locally built image unchanged.
#
# - `postgres [args]` (the default command; a first argument starting with `-` means the same):
#   as root, make $PGDATA (a volume) and the socket directory the postgres user's, then
#   re-exec as that user. With no cluster in $PGDATA yet: initdb with the superuser
#   $POSTGRES_USER (default postgres) and the password from $POSTGRES_PASSWORD or the file named
#   by $POSTGRES_PASSWORD_FILE (a docker secret), create $POSTGRES_DB (default: the user's name)
#   owned by that user, run /docker-entrypoint-initdb.d/*.sh|*.sql, and accept connections on
#   every address with password auth ($POSTGRES_HOST_AUTH_METHOD, default scram-sha-256).
#   Connections over the local socket are trusted, as in the official image (backup hooks
#   exec'd into the container rely on that). Then `exec postgres` in the foreground, so the
#   signals docker sends reach the server itself.
# - anything else is exec'd as given (`psql`, `sh`, ...).
set -Eeuo pipefail

die() {
  printf 'docker-entrypoint: %s\n' "$*" >&2
  exit 1
}

# file_env VAR [DEFAULT]: VAR from itself, else from the file named by VAR_FILE, else DEFAULT.
file_env() {
  local var=$1 file_var="${1}_FILE" default=${2:-} value
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    die "both $var and $file_var are set; set only one"
  fi
  value=$default
  if [ -n "${!var:-}" ]; then
    value=${!var}
  elif [ -n "${!file_var:-}" ]; then
    [ -r "${!file_var}" ] || die "$file_var names ${!file_var}, which cannot be read"
    value=$(<"${!file_var}")
  fi
  export "$var=$value"
  unset "$file_var"
}

if [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

export PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  # Only the volume's top directory: a restored or upgraded volume keeps its own ownership.
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2775 /var/run/postgresql
  # setpriv execs (no child process), so postgres stays PID 1 and receives docker's signals.
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
    die "the database is uninitialised and no superuser password is set: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
  fi
  echo "docker-entrypoint: initialising a new cluster in $PGDATA"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host="$auth" --encoding=UTF8 --locale=C.UTF-8 \
    ${POSTGRES_INITDB_ARGS:-} >/dev/null
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  # A server on the socket only, so nobody connects to a half-initialised database.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -t 60 start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d postgres \
      -v db="$POSTGRES_DB" -v owner="$POSTGRES_USER" <<<'CREATE DATABASE :"db" OWNER :"owner";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    # shellcheck disable=SC1090 # scripts the user mounts
    case "$f" in
      *.sh) echo "docker-entrypoint: running $f" && . "$f" ;;
      *.sql) echo "docker-entrypoint: running $f" && psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
  unset POSTGRES_PASSWORD
  echo "docker-entrypoint: cluster initialised; database ${POSTGRES_DB} owned by ${POSTGRES_USER}"
fi

exec "$@"
