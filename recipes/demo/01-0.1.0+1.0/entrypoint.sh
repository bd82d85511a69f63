#!/bin/sh
# Entrypoint of the demo app: refuses to start without its admin password secret, then runs
# the service command. Its content is versioned by ENTRYPOINT_VERSION in abra.sh: change one,
# bump the other (swarm configs are immutable).
set -eu

if [ ! -s /run/secrets/admin_password ]; then
  echo "demo: secret admin_password is missing or empty at /run/secrets/admin_password" >&2
  exit 1
fi

mkdir -p /var/www /data
exec "$@"
