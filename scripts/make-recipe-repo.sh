#!/usr/bin/env bash
# Builds a recipe git repository from a fixture directory of full recipe trees.
#
#   scripts/make-recipe-repo.sh <fixture-dir> <dest-repo>
#
# <fixture-dir> holds one directory per commit, named <NN>-<version> or <NN>-<anything else>
# (e.g. 01-0.1.0+1.0, 02-0.2.0+1.1, 03-change). In name order, each one replaces the whole work
# tree of <dest-repo> and becomes one commit on branch `main`; a directory whose suffix is a
# release version (semver, optionally +upstream version) also gets an annotated tag of that
# version, as Co-op Cloud recipes are released. Identity and dates are fixed, so the same
# fixtures always give the same commit hashes. <dest-repo> is removed and recreated on every
# run; it must be absent, empty, or a git repository.
#
# Prints one line per commit (`<hash> <tag or ->` ) on stdout.
set -euo pipefail

die() { printf 'make-recipe-repo: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 <fixture-dir> <dest-repo>"
fixture=$1
dest=$2
[ -d "$fixture" ] || die "fixture directory $fixture does not exist"

# Refuse to wipe anything that does not look like an earlier output of this script.
if [ -e "$dest" ]; then
  [ -d "$dest" ] || die "$dest exists and is not a directory"
  if [ -n "$(ls -A "$dest")" ] && [ ! -d "$dest/.git" ]; then
    die "$dest is neither empty nor a git repository; refusing to replace it"
  fi
fi

fixture=$(cd "$fixture" && pwd)
dirs=()
while IFS= read -r d; do
  dirs+=("$d")
done < <(find "$fixture" -mindepth 1 -maxdepth 1 -type d -name '[0-9][0-9]-*' -printf '%f\n' | LC_ALL=C sort)
[ ${#dirs[@]} -gt 0 ] || die "no <NN>-<name> directories in $fixture"

rm -rf "$dest"
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# A git that ignores every user and system setting (signing, hooks, autocrlf, templates...).
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME="Co-op Cloud fixtures" GIT_AUTHOR_EMAIL="fixtures@ccci.invalid"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
g() { git -C "$dest" -c core.hooksPath=/dev/null -c core.autocrlf=false -c core.filemode=true "$@"; }

git init -q -b main --template= "$dest"

version_re='^[0-9]+\.[0-9]+\.[0-9]+(\+[0-9A-Za-z.-]+)?$'
base_epoch=1704067200 # 2024-01-01T00:00:00Z; each commit one day later
i=0
for d in "${dirs[@]}"; do
  name=${d#[0-9][0-9]-}
  when="@$((base_epoch + i * 86400)) +0000"
  export GIT_AUTHOR_DATE="$when" GIT_COMMITTER_DATE="$when"

  find "$dest" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
  cp -a "$fixture/$d/." "$dest/"
  # A fresh index makes git hash every file: `cp -a` keeps mtimes and sizes, and a reused
  # inode within the same second would let git's stat cache take a changed file for the old.
  rm -f "$dest/.git/index"
  g add --all .

  if [[ $name =~ $version_re ]]; then
    g commit -q --allow-empty -m "chore: publish $name release"
    g tag -a "$name" -m "Release $name"
    tag=$name
  else
    g commit -q --allow-empty -m "$name"
    tag=-
  fi
  printf '%s %s\n' "$(g rev-parse HEAD)" "$tag"
  i=$((i + 1))
done
