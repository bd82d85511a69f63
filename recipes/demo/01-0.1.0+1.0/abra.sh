# shellcheck shell=sh
# Versions of the swarm configs this recipe creates; abra reads the exports below.
export ENTRYPOINT_VERSION=v1
