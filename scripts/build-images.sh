#!/usr/bin/env bash
# Builds the local images of the pgapp fixture recipe (recipes/pgapp) from Debian packages, as
# no image registry is reachable:
#
#   ccci-postgres:<major>     PostgreSQL from Debian bookworm, with an entrypoint that behaves
#                             like the official postgres image's (scripts/images/postgres/)
#   ccci-pgapp:1.0, :1.1      a tiny app (busybox httpd + CGI + psql) that keeps rows in that
#                             database; 1.1 ships a migration 1.0 does not (scripts/images/pgapp/)
#
# All of them share one root filesystem: `debootstrap --variant=minbase bookworm` with the
# packages in PACKAGES. Its tarball is cached under $CCCI_IMAGE_CACHE (default
# /var/cache/ccci/images), keyed by a hash of the suite, the package list and the function
# that builds it, so a host that has it only imports it; a host without it builds it (a few
# minutes). Each image carries the label ccci.build=<hash of its inputs>: an image whose label
# matches is left alone, so running this again is cheap and picks up edited sources.
#
#   scripts/build-images.sh            build what is missing or stale
#   CCCI_DEBIAN_MIRROR=URL ...         the Debian mirror (default: the one apt uses here)
#
# Needs root (or sudo) for debootstrap, and a running docker engine. Prints how long it took;
# a failure prints one line naming the step, and the end of that step's log.
set -euo pipefail

SUITE=bookworm
PACKAGES=(postgresql busybox-static)
PGAPP_VERSIONS=(1.0 1.1)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sources="$here/images"
cache=${CCCI_IMAGE_CACHE:-/var/cache/ccci/images}
started=$SECONDS
step="start"
log=""
scratch="" # the root filesystem being built, removed on exit
stage=""   # the image trees being assembled, removed on exit

say() { printf 'build-images: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

on_exit() {
  local status=$?
  if [ -n "${stage:-}" ]; then rm -rf "$stage"; fi
  if [ -n "${scratch:-}" ] && [ -d "$scratch" ]; then
    release_mounts "$scratch"
    as_root rm -rf --one-file-system "$scratch" || true
  fi
  if [ "$status" -ne 0 ]; then
    say "FAILED at step '$step' after $((SECONDS - started)) s${log:+ (log: $log)}"
    if [ -n "$log" ] && [ -s "$log" ]; then tail -n 15 "$log" | sed 's/^/  | /' >&2; fi
  fi
}
trap on_exit EXIT

# run STEP CMD...: runs CMD with its output in the step's log; the EXIT trap names the step.
run() {
  step=$1
  shift
  "$@" >>"$log" 2>&1
}

# Unmounts whatever an interrupted debootstrap left mounted below $1 (proc, sys, devpts):
# removing the directory must never reach into the host's /proc.
release_mounts() {
  local m
  awk -v root="$1/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do as_root umount -l "$m" || true; done
}

# The Debian mirror apt uses for $SUITE on this host (deb822 .sources or one-line .list).
debian_mirror() {
  if [ -n "${CCCI_DEBIAN_MIRROR:-}" ]; then
    echo "$CCCI_DEBIAN_MIRROR"
    return
  fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u = ""; s = 0; next }
      tolower($1) == "uris:" { u = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) s = 1 }
      END { if (u != "" && s) print u }' "$f" | head -n 1)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  echo "http://deb.debian.org/debian"
}

# The shared root filesystem, built into the empty directory $1. Part of the cache key: edit
# it and the next run builds a new tarball.
build_rootfs() {
  local dir=$1 mirror=$2 pkgs
  pkgs=$(IFS=,; echo "${PACKAGES[*]}")
  # debootstrap installs a policy-rc.d that keeps postgresql from starting inside the chroot.
  run "debootstrap $SUITE ($mirror)" as_root debootstrap --variant=minbase --components=main \
    --include="$pkgs" "$SUITE" "$dir" "$mirror"
  step="trim the root filesystem"
  # Debian's postinst creates a cluster; the image's entrypoint creates its own in a volume.
  as_root sh -c "rm -rf '$dir'/var/lib/postgresql/[0-9]* '$dir'/etc/postgresql/[0-9]*/main"
  as_root sh -c "rm -rf '$dir'/var/cache/apt/archives/*.deb '$dir'/var/lib/apt/lists/* \
    '$dir'/usr/share/doc/* '$dir'/usr/share/man/* '$dir'/usr/share/info/* \
    '$dir'/usr/share/locale/* '$dir'/usr/share/i18n/* '$dir'/etc/resolv.conf"
  # A third of the size is LLVM for PostgreSQL's JIT, which nothing here needs; without
  # llvmjit.so the server runs with JIT unavailable (as built without it).
  as_root sh -c "rm -f '$dir'/usr/lib/postgresql/*/lib/llvmjit*.so \
    '$dir'/usr/lib/x86_64-linux-gnu/libLLVM-*.so* '$dir'/usr/lib/x86_64-linux-gnu/libz3.so*"
  as_root rm -rf "$dir/usr/lib/postgresql/"*/lib/bitcode
  # busybox applets the app and healthchecks use; Debian's busybox-static installs no links.
  local applet
  for applet in httpd wget nc; do as_root ln -sf /bin/busybox "$dir/usr/local/bin/$applet"; done
  find "$dir/usr/lib/postgresql" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n 1 | as_root tee "$dir/etc/ccci-pg-major" >/dev/null
}

rootfs_key() {
  { printf '%s\n' "$SUITE" "${PACKAGES[*]}"; declare -f build_rootfs; } | sha256sum | cut -c1-16
}

# sources_key DIR...: a hash of the files under DIR... (names, modes and contents).
sources_key() {
  (cd "$sources" && find "$@" -type f -print0 | LC_ALL=C sort -z |
    xargs -0 sh -c 'for f; do stat -c "%n %a" "$f"; cat "$f"; done' sh) | sha256sum | cut -c1-16
}

image_label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

install_debootstrap() {
  local get=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)
  step="install debootstrap"
  as_root env DEBIAN_FRONTEND=noninteractive "${get[@]}" install debootstrap >>"$log" 2>&1 && return
  run "apt-get update" as_root "${get[@]}" update
  run "install debootstrap" as_root env DEBIAN_FRONTEND=noninteractive "${get[@]}" install debootstrap
}

# Makes sure the image ccci-rootfs:<key> exists: from the cached tarball, or built first.
ensure_rootfs_image() {
  local key=$1 tag="ccci-rootfs:$1" tarball="$cache/$SUITE-rootfs-$1.tar"
  if docker image inspect "$tag" >/dev/null 2>&1; then return; fi
  if [ ! -s "$tarball" ]; then
    local mirror t0=$SECONDS
    mirror=$(debian_mirror)
    command -v debootstrap >/dev/null || install_debootstrap
    say "no cached root filesystem $tarball: debootstrap $SUITE from $mirror (a few minutes)"
    scratch=$(as_root mktemp -d "$cache/.rootfs.XXXXXX")
    build_rootfs "$scratch/root" "$mirror"
    step="write $tarball"
    as_root tar --numeric-owner -C "$scratch/root" -cf "$scratch/rootfs.tar" .
    as_root mv "$scratch/rootfs.tar" "$tarball"
    find "$cache" -maxdepth 1 -name "$SUITE-rootfs-*" ! -name "$SUITE-rootfs-$key.*" -exec rm -f {} + 2>/dev/null || true
    release_mounts "$scratch"
    as_root rm -rf --one-file-system "$scratch"
    scratch=""
    say "root filesystem built in $((SECONDS - t0)) s ($(du -h "$tarball" | cut -f1)); cached as $tarball"
  fi
  run "docker import $tarball" docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' --change "LABEL ccci.build=$key" \
    --message "debootstrap --variant=minbase $SUITE + ${PACKAGES[*]}" "$tarball" "$tag"
  # Root filesystems of older keys are no longer needed by anything this script builds.
  docker image ls --format '{{.Repository}}:{{.Tag}}' ccci-rootfs | grep -vx "$tag" |
    xargs -r docker rmi >/dev/null 2>&1 || true
}

# derive TAG KEY BASE SOURCE_DIR CHANGE...: BASE plus the files of SOURCE_DIR (a tree rooted at
# /), committed as TAG with the given Dockerfile-style changes. Skipped when TAG already carries
# ccci.build=KEY.
derive() {
  local tag=$1 key=$2 base=$3 tree=$4 cid
  shift 4
  if [ "$(image_label "$tag" ccci.build)" = "$key" ]; then
    say "$tag is up to date"
    return
  fi
  step="create a container of $base for $tag"
  cid=$(docker create "$base" /bin/true 2>>"$log")
  local changes=()
  for c in "$@" "LABEL ccci.build=$key"; do changes+=(--change "$c"); done
  if run "copy $tree into $tag" docker cp "$tree/." "$cid:/" &&
    run "commit $tag" docker commit "${changes[@]}" "$cid" "$tag"; then
    docker rm "$cid" >/dev/null
  else
    docker rm "$cid" >/dev/null 2>&1 || true
    return 1
  fi
  say "built $tag"
}

main() {
  as_root mkdir -p "$cache"
  step="lock $cache"
  # Two setups at once would debootstrap twice into the same cache.
  exec 9>>"$cache/.lock"
  flock -w 900 9 || { say "another build has held $cache/.lock for over 15 min"; exit 1; }
  log="$cache/build.log"
  : >"$log"

  step="docker info"
  docker info >/dev/null 2>&1 || { say "docker is not reachable: start dockerd first"; exit 1; }

  local rkey base major pg_path
  rkey=$(rootfs_key)
  base="ccci-rootfs:$rkey"
  local pg_key app_keys=() v
  pg_key=$(printf '%s %s' "$rkey" "$(sources_key postgres)" | sha256sum | cut -c1-16)
  for v in "${PGAPP_VERSIONS[@]}"; do
    app_keys+=("$(printf '%s %s %s' "$rkey" "$v" "$(sources_key pgapp)" | sha256sum | cut -c1-16)")
  done

  # Nothing to do when every image is current: no need for the root filesystem at all.
  local stale=0 i
  major=$(cat "$cache/$SUITE-rootfs-$rkey.pg-major" 2>/dev/null || true)
  [ -n "$major" ] && [ "$(image_label "ccci-postgres:$major" ccci.build)" = "$pg_key" ] || stale=1
  for i in "${!PGAPP_VERSIONS[@]}"; do
    [ "$(image_label "ccci-pgapp:${PGAPP_VERSIONS[$i]}" ccci.build)" = "${app_keys[$i]}" ] || stale=1
  done
  if [ "$stale" -eq 0 ]; then
    say "images up to date (ccci-postgres:$major, ccci-pgapp:${PGAPP_VERSIONS[*]}); $((SECONDS - started)) s"
    return
  fi

  ensure_rootfs_image "$rkey"
  step="read the postgresql version of $base"
  major=$(docker run --rm --entrypoint cat "$base" /etc/ccci-pg-major)
  [ -n "$major" ] || { say "$base has no /etc/ccci-pg-major"; exit 1; }
  printf '%s\n' "$major" | as_root tee "$cache/$SUITE-rootfs-$rkey.pg-major" >/dev/null
  pg_path="/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

  stage=$(mktemp -d)
  mkdir -p "$stage/postgres/usr/local/bin"
  install -m 0755 "$sources/postgres/docker-entrypoint.sh" "$stage/postgres/usr/local/bin/"
  derive "ccci-postgres:$major" "$pg_key" "$base" "$stage/postgres" \
    "ENV PATH=$pg_path" "ENV PGDATA=/var/lib/postgresql/data" \
    'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["postgres"]' 'EXPOSE 5432'

  for i in "${!PGAPP_VERSIONS[@]}"; do
    v=${PGAPP_VERSIONS[$i]}
    step="stage ccci-pgapp:$v"
    local tree="$stage/pgapp-$v" highest m
    mkdir -p "$tree/usr/local/bin" "$tree/usr/local/lib/pgapp" "$tree/usr/share/pgapp/migrations" "$tree/var/www"
    install -m 0755 "$sources"/pgapp/bin/* "$tree/usr/local/bin/"
    install -m 0644 "$sources"/pgapp/lib/* "$tree/usr/local/lib/pgapp/"
    cp -r "$sources/pgapp/www/." "$tree/var/www/"
    chmod 0755 "$tree"/var/www/cgi-bin/*
    # A release ships the migrations up to the one it names in pgapp/releases.
    highest=$(awk -v v="$v" '$1 == v { print $2 }' "$sources/pgapp/releases")
    [ -n "$highest" ] || { say "pgapp/releases names no migration for $v"; exit 1; }
    for m in "$sources"/pgapp/migrations/*.sql; do
      if [ "$(basename "$m" | cut -d- -f1)" -le "$highest" ]; then
        install -m 0644 "$m" "$tree/usr/share/pgapp/migrations/"
      fi
    done
    printf '%s\n' "$v" >"$tree/usr/share/pgapp/VERSION"
    derive "ccci-pgapp:$v" "${app_keys[$i]}" "$base" "$tree" \
      "ENV PATH=$pg_path" 'ENTRYPOINT ["pgapp-start"]' 'CMD []' 'EXPOSE 80'
  done
  step="done"
  say "images ready (ccci-postgres:$major, ccci-pgapp:${PGAPP_VERSIONS[*]}) in $((SECONDS - started)) s"
}

main "$@"
