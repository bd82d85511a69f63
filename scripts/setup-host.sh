#!/usr/bin/env bash
# Prepares this host for ccci: Docker engine, a single-node swarm, and the locally built images
# that the bundled demo and test recipes use (no registry is reachable, so images are built here:
# busybox below, PostgreSQL and the pgapp fixture's app by scripts/build-images.sh), and the
# headless Chromium that the dashboard tests drive.
# Idempotent: every step checks before it acts. Needs root (or sudo) for the package install.
set -euo pipefail

log() { printf 'setup-host: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
[ -x /usr/sbin/dockerd ] || need_pkgs+=(docker.io)
# grep reads the whole list: one that quit at the match (-q) would now and then kill busybox with
# SIGPIPE mid-list, and under pipefail that reads as "no httpd".
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -x httpd >/dev/null || need_pkgs+=(busybox-static)
command -v git >/dev/null || need_pkgs+=(git)
# docker's own compose merger, which the tests compare ccci's compose model with.
command -v docker-compose >/dev/null || need_pkgs+=(docker-compose)
# The benchmarks read the engine's JSON events.
command -v jq >/dev/null || need_pkgs+=(jq)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    as_root systemctl start docker
  else
    # A session of its own: the engine outlives the shell (and process group) that started it.
    as_root setsid -f dockerd >/var/log/dockerd.log 2>&1 </dev/null
  fi
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/dockerd.log"; exit 3; }
fi

if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  log "initialising a single-node swarm"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi

# A busybox root filesystem: sh, httpd, wget, tar and friends are enough for the demo recipes.
build_busybox_image() {
  local tag=$1
  if docker image inspect "$tag" >/dev/null 2>&1; then return; fi
  log "building image $tag"
  local dir; dir=$(mktemp -d)
  mkdir -p "$dir/bin" "$dir/tmp" "$dir/var/www" "$dir/data" "$dir/etc"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$dir/etc/passwd"
  echo 'root:x:0:' >"$dir/etc/group"
  tar -C "$dir" -c . | docker import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$tag" >/dev/null
  rm -rf "$dir"
}
build_busybox_image ccci-busybox:1

# PostgreSQL and the pgapp fixture's app, from Debian packages: minutes on a fresh host, seconds
# once the root filesystem is cached. CCCI_BUILD_IMAGES=0 skips them (the demo needs none).
if [ "${CCCI_BUILD_IMAGES:-1}" != 0 ]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/build-images.sh"
fi
log "ready: $(docker info --format 'docker {{.ServerVersion}}, swarm {{.Swarm.LocalNodeState}}')"
