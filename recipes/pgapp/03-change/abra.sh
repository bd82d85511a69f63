# shellcheck shell=sh
# Versions of the swarm configs this recipe creates; abra reads the exports below.
export PG_BACKUP_VERSION=v1
