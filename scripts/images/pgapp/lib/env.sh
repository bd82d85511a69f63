# shellcheck shell=bash
# pgapp's connection to its database, for psql and pg_isready: DB_HOST (the compose service
# name, `db`), DB_PORT, DB_USER, DB_NAME, and the password from the docker secret named by
# DB_PASSWORD_FILE. Sourced by pgapp-start and by every CGI script.
export PGHOST=${DB_HOST:-db}
export PGPORT=${DB_PORT:-5432}
export PGUSER=${DB_USER:-pgapp}
export PGDATABASE=${DB_NAME:-pgapp}
export PGCONNECT_TIMEOUT=${DB_CONNECT_TIMEOUT:-5}
export PGAPPNAME=pgapp
if [ -n "${DB_PASSWORD_FILE:-}" ]; then
  PGPASSWORD=$(cat "$DB_PASSWORD_FILE")
  export PGPASSWORD
fi
PGAPP_VERSION=$(cat /usr/share/pgapp/VERSION)
export PGAPP_VERSION
