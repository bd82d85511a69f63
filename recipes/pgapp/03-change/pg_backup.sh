#!/bin/bash
# Backup and restore of pgapp's database, run in the db container by backupbot's hooks:
#
#   /pg_backup.sh backup    dump the database into backup/ of the postgres volume, the one
#                           path the backup labels name
#   /pg_backup.sh restore   replace the database with the dump found there
#
# Its content is versioned by PG_BACKUP_VERSION in abra.sh: change one, bump the other (swarm
# configs are immutable).
set -euo pipefail

PGDATA=${PGDATA:-/var/lib/postgresql/data}
BACKUP_DIR=$PGDATA/backup
BACKUP_FILE=$BACKUP_DIR/$POSTGRES_DB.sql
HBA=$PGDATA/pg_hba.conf

sql() { psql -X -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" "$@"; }

backup() {
  mkdir -p "$BACKUP_DIR"
  pg_dump -U "$POSTGRES_USER" -d "$POSTGRES_DB" >"$BACKUP_FILE.partial"
  mv "$BACKUP_FILE.partial" "$BACKUP_FILE"
}

restore() {
  if [ ! -s "$BACKUP_FILE" ]; then
    echo "pg_backup: no dump at $BACKUP_FILE to restore" >&2
    exit 1
  fi
  # While the database is replaced only local connections are allowed: the app must neither
  # see it half restored nor recreate its tables in the empty database.
  cp "$HBA" "$HBA.pg_backup"
  trap 'cat "$HBA.pg_backup" >"$HBA" && rm -f "$HBA.pg_backup" && sql -d postgres -c "SELECT pg_reload_conf();" >/dev/null' EXIT
  echo "local all all trust" >"$HBA"
  sql -d postgres -c "SELECT pg_reload_conf();" >/dev/null

  sql -d postgres -v db="$POSTGRES_DB" <<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);'
  sql -d postgres -v db="$POSTGRES_DB" -v owner="$POSTGRES_USER" <<<'CREATE DATABASE :"db" OWNER :"owner";'
  sql -d "$POSTGRES_DB" -1 -f "$BACKUP_FILE" >/dev/null
}

case "${1:-}" in
  backup) backup ;;
  restore) restore ;;
  *)
    echo "usage: $0 backup|restore" >&2
    exit 2
    ;;
esac
