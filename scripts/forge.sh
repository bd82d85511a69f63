#!/usr/bin/env bash
# A throwaway Gitea on loopback, for the end-to-end tests of the `!testme` service mode.
#
#   scripts/forge.sh start <dir>     # set up and start; writes <dir>/forge.json, prints it
#   scripts/forge.sh stop <dir>      # stop; leaves no process behind
#   scripts/forge.sh status <dir>    # exit 0 when the instance answers, 1 otherwise
#   scripts/forge.sh selftest <dir>  # webhook, signature and REST checks against a started instance;
#                                    # adds comments, statuses and PRs, PR #1's head stays as it was
#
# With FORGE_OWNER_PID=<pid> in the environment, `start` also leaves a watchdog that stops the
# instance once that process is gone (a test binary killed before its clean-up).
#
# Everything of the instance lives under <dir>: app.ini, SQLite database, repositories, logs,
# the scratch clone of the demo recipe. The server listens on 127.0.0.1 on a free port only.
# `start` on a running instance prints its forge.json again; `start` on a stopped one wipes it
# and sets up a fresh one (the instance is disposable); `stop` on a stopped one does nothing.
# <dir> must be absent, empty, or an earlier instance (it holds a .ccci-forge marker).
#
# What `start` sets up, all through the REST API except the first user:
#   ccci-admin   site admin (CLI), owner of org coop-cloud
#   ccci-bot     member of coop-cloud (team `bots`, write access), the service mode's account
#   maintainer   member of coop-cloud (team `maintainers`, write access), the trusted commenter
#   outsider     not a member of anything
#   coop-cloud/demo  the demo recipe (scripts/make-recipe-repo.sh recipes/demo), tags included,
#                and pull request #1 from branch `testme-change` into main, opened by maintainer.
# forge.json holds the base URL, each user's password and token, the repo and the PR.
#
# Needs: bash, curl, jq, git, openssl, python3 (free port, selftest listener), and the
# binary from scripts/build-forge.sh (built on first use).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/.." && pwd)

die() { printf 'forge: %s\n' "$*" >&2; exit 1; }
say() { printf 'forge: %s\n' "$*" >&2; }

READY_TIMEOUT=${FORGE_READY_TIMEOUT:-60}
STOP_TIMEOUT=${FORGE_STOP_TIMEOUT:-20}
ORG=coop-cloud
REPO=demo
PR_BRANCH=testme-change

usage() { die "usage: $0 start|stop|status|selftest <dir>"; }

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
[ $# -eq 2 ] || [ "$cmd" = watch ] || usage
case $cmd in
start) mkdir -p "$dir" ;;
stop) [ -d "$dir" ] || exit 0 ;;
status) [ -d "$dir" ] || exit 1 ;;
esac
[ -d "$dir" ] || die "$dir does not exist"
dir=$(cd "$dir" && pwd)
ini=$dir/custom/conf/app.ini
pidfile=$dir/gitea.pid
json=$dir/forge.json

# The pid in the pid file, if that process is still the Gitea of this instance (a recycled pid
# belongs to someone else and must never be signalled).
live_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F -- "$ini" >/dev/null || return 1
  printf '%s\n' "$pid"
}

answers() {
  local url=$1
  curl -fsS --max-time 2 -o /dev/null "$url/api/v1/version" 2>/dev/null
}

watchdog_pidfile=$dir/watchdog.pid

# Ends the watchdog of this instance, unless called from it.
stop_watchdog() {
  [ -f "$watchdog_pidfile" ] || return 0
  local pid
  pid=$(cat "$watchdog_pidfile")
  if [[ $pid =~ ^[0-9]+$ ]] && [ "$pid" != "$$" ] && [ -r "/proc/$pid/cmdline" ] \
    && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F -- " watch $dir " >/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  rm -f "$watchdog_pidfile"
}

stop_instance() {
  stop_watchdog
  local pid
  if ! pid=$(live_pid); then
    rm -f "$pidfile"
    return 0
  fi
  # Gitea runs as the leader of its own session and process group (setsid at start), so the
  # group holds it and every git it spawned.
  kill -TERM -- "-$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 -- "-$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      say "gitea (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: killing it"
      kill -KILL -- "-$pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
      while kill -0 -- "-$pid" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || die "process group $pid survived SIGKILL"
        sleep 0.1
      done
      break
    fi
    sleep 0.1
  done
  rm -f "$pidfile"
}

# EXIT trap of `start`: a start that fails half-way leaves no server running.
stop_unless_started() {
  local rc=$?
  [ "$rc" -eq 0 ] || stop_instance
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

ms_since() { echo $(( (${EPOCHREALTIME/./} - ${1/./}) / 1000 )); }

random_hex() { openssl rand -hex "$1"; }

write_ini() {
  local port=$1 bin=$2
  local secret internal
  secret=$(random_hex 32)
  internal=$("$bin" generate secret INTERNAL_TOKEN)
  local as_root=false
  [ "$(id -u)" -ne 0 ] || as_root=true
  mkdir -p "$(dirname "$ini")" "$dir/data" "$dir/repos" "$dir/log"
  cat >"$ini" <<EOF
; Throwaway Gitea for ccci's tests; written by scripts/forge.sh, rewritten on every start.
APP_NAME = ccci test forge
RUN_MODE = prod
RUN_USER = $(id -un)
WORK_PATH = $dir
; Gitea refuses root unless told; this instance is disposable and listens on loopback only.
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = $as_root

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:$port/
APP_DATA_PATH = $dir/data
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
OFFLINE_MODE = true

[database]
DB_TYPE = sqlite3
PATH = $dir/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = $dir/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = $secret
INTERNAL_TOKEN = $internal
PASSWORD_COMPLEXITY = off
MIN_PASSWORD_LENGTH = 8

[service]
DISABLE_REGISTRATION = true
ENABLE_NOTIFY_MAIL = false
DEFAULT_KEEP_EMAIL_PRIVATE = true
NO_REPLY_ADDRESS = noreply.invalid

[mailer]
ENABLED = false

[webhook]
; Deliveries to 127.0.0.1 are refused unless allowed.
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 5

[oauth2]
ENABLED = false

[actions]
ENABLED = false

[packages]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[api]
ENABLE_SWAGGER = false

[session]
PROVIDER = memory

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = Info
ROOT_PATH = $dir/log
EOF
}

gitea() { "$bin" --config "$ini" --work-path "$dir" "$@"; }

# api METHOD PATH [JSON] with $auth (curl -H or -u args): prints the body, fails on non-2xx.
api() {
  local method=$1 path=$2 body=${3:-}
  local args=(-sS --max-time 30 -X "$method" -H 'Accept: application/json' "${auth[@]}")
  [ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
  local out code
  out=$(curl "${args[@]}" -w '\n%{http_code}' "$base/api/v1$path") || die "$method $path: curl failed"
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  [[ $code == 2* ]] || die "$method $path answered $code: $out"
  printf '%s' "$out"
}

# user_token NAME PASSWORD SCOPES-JSON: a new token of that user, made with its own password.
user_token() {
  local auth=(-u "$1:$2")
  api POST "/users/$1/tokens" "{\"name\":\"ccci-test-$1\",\"scopes\":$3}" | jq -er .sha1
}

start_server() {
  local port
  for _ in 1 2 3; do
    port=$(free_port)
    write_ini "$port" "$bin"
    base=http://127.0.0.1:$port
    [ -f "$dir/data/gitea.db" ] || {
      gitea migrate >"$dir/log/migrate.log" 2>&1 || die "gitea migrate failed; see $dir/log/migrate.log"
    }
    local t0=$EPOCHREALTIME
    setsid "$bin" --config "$ini" --work-path "$dir" web >"$dir/log/gitea.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    local deadline=$((SECONDS + READY_TIMEOUT))
    while ! answers "$base"; do
      if ! live_pid >/dev/null; then
        if grep -q 'address already in use' "$dir/log/gitea.log"; then
          say "port $port was taken meanwhile; trying another"
          continue 2
        fi
        die "gitea exited during start-up; see $dir/log/gitea.log: $(tail -n 5 "$dir/log/gitea.log")"
      fi
      if [ $SECONDS -ge $deadline ]; then
        stop_instance
        die "gitea did not answer $base/api/v1/version within ${READY_TIMEOUT}s; see $dir/log/gitea.log"
      fi
      sleep 0.1
    done
    say "API ready on $base $(ms_since "$t0") ms after the server started"
    return 0
  done
  die "no free port found in three attempts"
}

populate() {
  local pw_admin pw_bot pw_maint pw_out
  pw_admin=$(random_hex 12) pw_bot=$(random_hex 12) pw_maint=$(random_hex 12) pw_out=$(random_hex 12)

  gitea admin user create --admin --username ccci-admin --password "$pw_admin" \
    --email ccci-admin@example.invalid --must-change-password=false >>"$dir/log/setup.log" 2>&1 \
    || die "creating the admin user failed; see $dir/log/setup.log"
  local t_admin t_bot t_maint t_out
  t_admin=$(user_token ccci-admin "$pw_admin" '["all"]')
  local auth=(-H "Authorization: token $t_admin")

  local u pw
  for u in ccci-bot:$pw_bot maintainer:$pw_maint outsider:$pw_out; do
    pw=${u#*:} u=${u%%:*}
    api POST /admin/users "{\"username\":\"$u\",\"email\":\"$u@example.invalid\",\"password\":\"$pw\",\"must_change_password\":false}" >/dev/null
  done
  api POST /orgs "{\"username\":\"$ORG\",\"visibility\":\"public\"}" >/dev/null

  local team units='["repo.code","repo.issues","repo.pulls","repo.releases"]'
  for t in bots:ccci-bot maintainers:maintainer; do
    team=$(api POST "/orgs/$ORG/teams" "{\"name\":\"${t%%:*}\",\"permission\":\"write\",\"includes_all_repositories\":true,\"units\":$units}" | jq -er .id)
    api PUT "/teams/$team/members/${t#*:}" >/dev/null
  done

  # The service mode's token: comments, reactions, statuses, org membership; nothing more.
  t_bot=$(user_token ccci-bot "$pw_bot" '["write:issue","write:repository","read:organization","read:user"]')
  t_maint=$(user_token maintainer "$pw_maint" '["write:issue","write:repository","read:organization","read:user"]')
  t_out=$(user_token outsider "$pw_out" '["write:issue","read:repository","read:organization","read:user"]')

  api POST "/orgs/$ORG/repos" "{\"name\":\"$REPO\",\"default_branch\":\"main\",\"auto_init\":false}" >/dev/null

  # The demo recipe, pushed over HTTP with the admin's token, then a change on a branch.
  local work=$dir/work/$REPO
  bash "$repo_root/scripts/make-recipe-repo.sh" "$repo_root/recipes/demo" "$work" >/dev/null
  export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME="Co-op Cloud fixtures" GIT_AUTHOR_EMAIL="fixtures@ccci.invalid"
  export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
  export GIT_AUTHOR_DATE="@1735689600 +0000" GIT_COMMITTER_DATE="@1735689600 +0000"
  local g=(git -C "$work" -c core.hooksPath=/dev/null -c credential.helper=)
  local push_url=${base/http:\/\//http://ccci-admin:$t_admin@}/$ORG/$REPO.git
  "${g[@]}" push -q "$push_url" main --tags 2>>"$dir/log/setup.log" || die "git push failed; see $dir/log/setup.log"
  "${g[@]}" checkout -q -b "$PR_BRANCH"
  printf '\nChanged on a pull request branch, for the service-mode tests.\n' >>"$work/README.md"
  "${g[@]}" commit -q -am "Describe the demo recipe's test branch"
  "${g[@]}" push -q "$push_url" "$PR_BRANCH" 2>>"$dir/log/setup.log" || die "git push failed; see $dir/log/setup.log"
  local head_sha
  head_sha=$("${g[@]}" rev-parse HEAD)

  # Gitea records pushed branches from a queue after the push returns; a pull request opened
  # before that answers 404 (the repository still counts as empty).
  local deadline=$((SECONDS + READY_TIMEOUT))
  until [ "$(api GET "/repos/$ORG/$REPO/branches/$PR_BRANCH" 2>/dev/null | jq -r .commit.id 2>/dev/null)" = "$head_sha" ] \
    && [ "$(api GET "/repos/$ORG/$REPO" | jq -r .empty)" = false ]; do
    [ $SECONDS -lt $deadline ] || die "the pushed branch $PR_BRANCH did not show up within ${READY_TIMEOUT}s"
    sleep 0.1
  done

  auth=(-H "Authorization: token $t_maint")
  local pr
  pr=$(api POST "/repos/$ORG/$REPO/pulls" \
    "{\"head\":\"$PR_BRANCH\",\"base\":\"main\",\"title\":\"Test branch for the service mode\",\"body\":\"Opened by scripts/forge.sh.\"}")
  [ "$(jq -r .head.sha <<<"$pr")" = "$head_sha" ] || die "the pull request's head is not the pushed commit"

  local version
  version=$(curl -fsS "$base/api/v1/version" | jq -er .version)
  jq -n --arg base "$base" --arg version "$version" --arg dir "$dir" --argjson pid "$(cat "$pidfile")" \
    --arg pw_admin "$pw_admin" --arg t_admin "$t_admin" \
    --arg pw_bot "$pw_bot" --arg t_bot "$t_bot" \
    --arg pw_maint "$pw_maint" --arg t_maint "$t_maint" \
    --arg pw_out "$pw_out" --arg t_out "$t_out" \
    --arg org "$ORG" --arg repo "$ORG/$REPO" --arg clone "$base/$ORG/$REPO.git" \
    --argjson number "$(jq .number <<<"$pr")" --arg sha "$head_sha" --arg ref "$PR_BRANCH" \
    --arg html "$(jq -r .html_url <<<"$pr")" \
    '{base_url: $base, api_url: ($base + "/api/v1"), version: $version, dir: $dir, pid: $pid,
      users: {
        admin: {username: "ccci-admin", password: $pw_admin, token: $t_admin},
        bot: {username: "ccci-bot", password: $pw_bot, token: $t_bot},
        maintainer: {username: "maintainer", password: $pw_maint, token: $t_maint},
        outsider: {username: "outsider", password: $pw_out, token: $t_out}},
      org: $org, repo: $repo, clone_url: $clone,
      pr: {number: $number, head_sha: $sha, head_ref: $ref, base_ref: "main", html_url: $html}}' \
    >"$json.tmp"
  mv "$json.tmp" "$json"
}

# A webhook receiver on a free loopback port: every request's headers and raw body are saved as
# <out>/<n>.headers and <out>/<n>.body, then answered 200. Prints its port once it listens.
listener_py='
import http.server, os, sys
out = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    n = 0
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        H.n += 1
        base = os.path.join(out, str(H.n))
        with open(base + ".body.tmp", "wb") as f: f.write(body)
        with open(base + ".headers", "w") as f: f.write("".join(f"{k}: {v}\n" for k, v in self.headers.items()))
        os.rename(base + ".body.tmp", base + ".body")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
'

# Exercises what the service mode relies on against the running instance and prints what the
# forge answered; exits 1 when anything differs from docs/forge-facts.md.
selftest() {
  base=$(jq -r .base_url "$json")
  local repo org pr sha t_admin t_bot t_maint t_out
  repo=$(jq -r .repo "$json") org=$(jq -r .org "$json")
  pr=$(jq -r .pr.number "$json") sha=$(jq -r .pr.head_sha "$json")
  t_admin=$(jq -r .users.admin.token "$json") t_bot=$(jq -r .users.bot.token "$json")
  t_maint=$(jq -r .users.maintainer.token "$json") t_out=$(jq -r .users.outsider.token "$json")
  local failures=0 code body
  check() { # check DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then printf 'ok    %s: %s\n' "$1" "$3"; else
      printf 'FAIL  %s: expected %s, got %s\n' "$1" "$2" "$3"; failures=$((failures + 1)); fi
  }
  show() { printf '      %s: %s\n' "$1" "$2"; }
  # call TOKEN METHOD PATH [JSON]: sets $code and $body; follows no redirect.
  call() {
    local args=(-sS --max-time 30 -X "$2" -H "Authorization: token $1" -H 'Accept: application/json')
    [ -z "${4:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "$4")
    local out
    out=$(curl "${args[@]}" -w '\n%{http_code}' "$base/api/v1$3")
    code=${out##*$'\n'} body=${out%$'\n'*}
  }

  local out=$dir/selftest
  rm -rf "$out" && mkdir -p "$out"
  python3 -c "$listener_py" "$out" >"$out/port" 2>"$out/listener.log" &
  local listener=$!
  trap 'kill "$listener" 2>/dev/null || true' EXIT
  local deadline=$((SECONDS + 10))
  until [ -s "$out/port" ]; do
    [ $SECONDS -lt $deadline ] || die "the webhook listener did not start; see $out/listener.log"
    sleep 0.05
  done
  # delivery JQ-FILTER: the first delivered body matching the filter (bounded wait), as a path
  # without extension; empty when none came.
  delivery() {
    local deadline=$((SECONDS + 15)) f
    while [ $SECONDS -lt $deadline ]; do
      for f in "$out"/*.body; do
        [ -f "$f" ] && jq -e "$1" "$f" >/dev/null 2>&1 && { printf '%s\n' "${f%.body}"; return 0; }
      done
      sleep 0.05
    done
  }
  local port secret
  port=$(cat "$out/port") secret=$(openssl rand -hex 16)

  echo "== webhook registration"
  call "$t_admin" POST "/repos/$repo/hooks" "{\"type\":\"gitea\",\"active\":true,\"events\":[\"issue_comment\",\"pull_request\"],\"config\":{\"url\":\"http://127.0.0.1:$port/hook\",\"content_type\":\"json\",\"secret\":\"$secret\"}}"
  check "POST /repos/{o}/{r}/hooks (site admin)" 201 "$code"
  show hook "$(jq -c '{id, type, events, active, config}' <<<"$body")"
  local hook_id
  hook_id=$(jq -r .id <<<"$body")
  call "$t_bot" POST "/repos/$repo/hooks" '{"type":"gitea","config":{"url":"http://127.0.0.1:1/","content_type":"json"}}'
  check "POST /repos/{o}/{r}/hooks (bot, team write)" 403 "$code"
  # Comments on pull requests are the pull_request_comment event, which `pull_request` turns on
  # and `issue_comment` alone does not.
  call "$t_admin" POST "/repos/$repo/hooks" '{"type":"gitea","events":["issue_comment"],"config":{"url":"http://127.0.0.1:1/","content_type":"json"}}'
  check "a hook for issue_comment alone stores only that" '201 ["issue_comment"]' "$code $(jq -c .events <<<"$body")"
  call "$t_admin" DELETE "/repos/$repo/hooks/$(jq -r .id <<<"$body")"

  echo "== !testme comment and its delivery"
  call "$t_maint" POST "/repos/$repo/issues/$pr/comments" '{"body":"!testme"}'
  check "POST /repos/{o}/{r}/issues/{pr}/comments (maintainer)" 201 "$code"
  show comment "$(jq -c '{id, user: .user.login, body, pull_request_url, issue_url, html_url, created_at, updated_at}' <<<"$body")"
  local comment_id created
  comment_id=$(jq -r .id <<<"$body") created=$(jq -r .created_at <<<"$body")
  local d
  d=$(delivery ".comment.id == $comment_id and .action == \"created\"")
  [ -n "$d" ] || die "no delivery for comment $comment_id within 15s; see $dir/log/gitea.log"
  header() { sed -n "s/^$1: //Ip" "$d.headers" | tr -d '\r'; }
  check "X-Gitea-Event" issue_comment "$(header X-Gitea-Event)"
  check "X-Gitea-Event-Type" pull_request_comment "$(header X-Gitea-Event-Type)"
  check "Content-Type" application/json "$(header Content-Type)"
  local mac
  mac=$(openssl dgst -sha256 -hmac "$secret" -r "$d.body" | cut -d' ' -f1)
  check "X-Gitea-Signature = hex HMAC-SHA256(secret, raw body)" "$mac" "$(header X-Gitea-Signature)"
  check "X-Gogs-Signature" "$mac" "$(header X-Gogs-Signature)"
  check "X-Hub-Signature-256" "sha256=$mac" "$(header X-Hub-Signature-256)"
  show "X- headers" "$(grep -io '^x-[a-z0-9-]*' "$d.headers" | sort | tr '\n' ' ')"
  show "X-Gitea-Delivery" "$(header X-Gitea-Delivery)"
  check "payload action, is_pull, comment.id, comment.body" "created true $comment_id !testme" \
    "$(jq -r '"\(.action) \(.is_pull) \(.comment.id) \(.comment.body)"' "$d.body")"
  check "payload issue.pull_request is set" true "$(jq -r '.issue.pull_request != null' "$d.body")"
  check "payload pull_request.head.sha (embedded PR)" "$sha" "$(jq -r .pull_request.head.sha "$d.body")"
  show "payload keys" "$(jq -c keys "$d.body")"
  show payload "$(jq -c '{action, is_pull, issue: {number: .issue.number, pull_request: .issue.pull_request}, comment: {id: .comment.id, user: .comment.user.login, pull_request_url: .comment.pull_request_url}, pull_request: {number: .pull_request.number, head: {ref: .pull_request.head.ref, sha: .pull_request.head.sha, repo: .pull_request.head.repo.full_name}, base: .pull_request.base.ref, state: .pull_request.state}, repository: {full_name: .repository.full_name, clone_url: .repository.clone_url, owner: .repository.owner.login}, sender: .sender.login}' "$d.body")"
  show "body starts" "$(head -c 40 "$d.body" | tr '\n' '~')"

  echo "== reactions"
  call "$t_bot" POST "/repos/$repo/issues/comments/$comment_id/reactions" '{"content":"eyes"}'
  check "eyes (bot), first time" 201 "$code"
  show reaction "$(jq -c '{content, user: .user.login, created_at}' <<<"$body")"
  call "$t_bot" POST "/repos/$repo/issues/comments/$comment_id/reactions" '{"content":"eyes"}'
  check "eyes (bot), again" 200 "$code"
  call "$t_bot" POST "/repos/$repo/issues/comments/$comment_id/reactions" '{"content":"robot"}'
  check "a reaction outside [ui] REACTIONS" 403 "$code"
  show answer "$(jq -c . <<<"$body")"

  echo "== commit statuses"
  local st
  for st in pending success failure error warning; do
    call "$t_bot" POST "/repos/$repo/statuses/$sha" "{\"state\":\"$st\",\"context\":\"ccci/selftest-$st\",\"description\":\"selftest\",\"target_url\":\"http://127.0.0.1:1/run/1\"}"
    check "state $st (bot)" 201 "$code"
  done
  show status "$(jq -c '{id, status, context, target_url, description, creator: .creator.login, url}' <<<"$body")"
  call "$t_bot" POST "/repos/$repo/statuses/$sha" '{"state":"no-such-state","context":"ccci/selftest-bogus"}'
  check "an unknown state is stored as given, unvalidated" "201 no-such-state" "$code $(jq -r .status <<<"$body")"
  call "$t_bot" POST "/repos/$repo/statuses/$sha" '{"state":"pending","context":"ccci/selftest-pending","description":"again"}'
  check "the same context again" 201 "$code"
  call "$t_bot" GET "/repos/$repo/commits/$sha/status"
  check "combined status: one entry per context, newest wins" "200 6 pending/again" \
    "$code $(jq -r '"\(.total_count) \(.statuses[] | select(.context == "ccci/selftest-pending") | "\(.status)/\(.description)")"' <<<"$body")"
  show "combined state" "$(jq -r .state <<<"$body")"

  echo "== editing comments"
  call "$t_bot" POST "/repos/$repo/issues/$pr/comments" '{"body":"ccci: queued"}'
  check "comment (bot)" 201 "$code"
  local bot_comment
  bot_comment=$(jq -r .id <<<"$body")
  call "$t_bot" PATCH "/repos/$repo/issues/comments/$bot_comment" '{"body":"ccci: passed"}'
  check "PATCH own comment (bot)" "200 ccci: passed" "$code $(jq -r .body <<<"$body")"
  d=$(delivery ".comment.id == $bot_comment and .action == \"edited\"")
  check "edit delivered as action edited with changes.body.from" "ccci: queued" "$(jq -r .changes.body.from "$d.body" 2>/dev/null)"
  call "$t_maint" POST "/repos/$repo/issues/$pr/comments" '{"body":"an older comment"}'
  local older
  older=$(jq -r .id <<<"$body")
  call "$t_bot" PATCH "/repos/$repo/issues/comments/$older" '{"body":"an older comment, edited by the bot"}'
  check "PATCH someone else's comment (bot, team write on issues/pulls)" 200 "$code"

  echo "== authorization queries"
  call "$t_bot" GET "/orgs/$org/members/maintainer"
  check "GET /orgs/{org}/members/{member} (bot token)" 204 "$code"
  call "$t_bot" GET "/orgs/$org/members/outsider"
  check "GET /orgs/{org}/members/{non-member} (bot token)" 404 "$code"
  local out_loc
  out_loc=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -H "Authorization: token $t_out" "$base/api/v1/orgs/$org/members/maintainer")
  check "same asked by a non-member (read:organization)" 303 "${out_loc%% *}"
  show Location "${out_loc#* }"
  local pw_out no_org
  pw_out=$(jq -r .users.outsider.password "$json")
  no_org=$(curl -fsS -u "outsider:$pw_out" -H 'Content-Type: application/json' -X POST "$base/api/v1/users/outsider/tokens" \
    -d "{\"name\":\"selftest-$(openssl rand -hex 4)\",\"scopes\":[\"read:repository\"]}" | jq -r .sha1)
  call "$no_org" GET "/orgs/$org/members/maintainer"
  check "same with a token lacking read:organization" 403 "$code"
  show answer "$(jq -c . <<<"$body")"
  call "$t_bot" GET "/repos/$repo/collaborators/maintainer/permission"
  check "GET /repos/{o}/{r}/collaborators/{u}/permission (bot)" 403 "$code"
  call "$t_admin" GET "/repos/$repo/collaborators/maintainer/permission"
  check "same (site admin) for a member of a team with unit-level write" "200 read read" \
    "$code $(jq -r '"\(.permission) \(.role_name)"' <<<"$body")"
  call "$t_admin" GET "/repos/$repo/collaborators/ccci-admin/permission"
  check "same for the org owner" "200 owner" "$code $(jq -r .permission <<<"$body")"
  call "$t_admin" GET "/repos/$repo/collaborators/outsider/permission"
  check "same for a non-member (public repo)" "200 read" "$code $(jq -r .permission <<<"$body")"
  call "$t_bot" GET "/repos/$repo/collaborators/maintainer"
  check "GET /repos/{o}/{r}/collaborators/{member via team}" 404 "$code"

  echo "== polling: repo-wide comment listing"
  call "$t_bot" GET "/repos/$repo/issues/comments?since=$created&limit=50"
  check "since=<created_at of the !testme comment> (inclusive)" "200 $comment_id" "$code $(jq -r '.[0].id' <<<"$body")"
  show listing "$(jq -c '[.[] | {id, user: .user.login, body, pull_request_url, created_at, updated_at}]' <<<"$body")"
  # `since` compares the update time: an old comment edited later comes back. Timestamps have
  # one-second resolution and `since` is inclusive, so the watermark is taken in a later second
  # than every earlier comment.
  local tick=$(($(date +%s) + 1))
  until [ "$(date +%s)" -ge "$tick" ]; do sleep 0.05; done
  local watermark
  watermark=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  call "$t_maint" PATCH "/repos/$repo/issues/comments/$comment_id" '{"body":"!testme (edited)"}'
  call "$t_bot" GET "/repos/$repo/issues/comments?since=$watermark"
  check "since=<now>, then an older comment is edited" "200 $comment_id" "$code $(jq -r '[.[].id] | join(",")' <<<"$body")"
  show "its created_at < since <= updated_at" "$(jq -c '.[0] | {created_at, updated_at}' <<<"$body")"
  call "$t_bot" GET "/repos/$repo/issues/comments?since=not-a-time"
  check "a malformed since" 422 "$code"

  echo "== pull request events"
  call "$t_bot" GET "/repos/$repo/pulls/$pr"
  check "GET /repos/{o}/{r}/pulls/{n}" "200 $sha open false" "$code $(jq -r '"\(.head.sha) \(.state) \(.merged)"' <<<"$body")"
  local work=$dir/work/demo g
  g=(git -C "$work" -c core.hooksPath=/dev/null -c credential.helper=)
  local push_url=${base/http:\/\//http://ccci-admin:$t_admin@}/$repo.git
  "${g[@]}" checkout -q -B selftest-sync main
  printf 'selftest\n' >"$work/SELFTEST"
  "${g[@]}" add SELFTEST && "${g[@]}" commit -q -m "selftest: first"
  "${g[@]}" push -q -f "$push_url" selftest-sync 2>/dev/null
  deadline=$((SECONDS + 15))
  until call "$t_maint" POST "/repos/$repo/pulls" '{"head":"selftest-sync","base":"main","title":"selftest"}'; [ "$code" = 201 ]; do
    [ $SECONDS -lt $deadline ] || break
    sleep 0.1
  done
  check "open a second PR" 201 "$code"
  local pr2
  pr2=$(jq -r .number <<<"$body")
  d=$(delivery ".number == $pr2 and .action == \"opened\"")
  check "pull_request opened delivered" pull_request "$(sed -n 's/^X-Gitea-Event: //Ip' "$d.headers" 2>/dev/null | tr -d '\r')"
  printf 'more\n' >>"$work/SELFTEST"
  "${g[@]}" commit -q -am "selftest: second" && "${g[@]}" push -q "$push_url" selftest-sync 2>/dev/null
  local new_sha
  new_sha=$("${g[@]}" rev-parse HEAD)
  # Match on the new head: the push that created the branch may be processed after the PR was
  # opened and then arrives as a synchronized event of its own.
  d=$(delivery ".number == $pr2 and .action == \"synchronized\" and .pull_request.head.sha == \"$new_sha\"")
  check "a push to the PR branch: action synchronized, new head" "pull_request $new_sha" \
    "$(sed -n 's/^X-Gitea-Event: //Ip' "$d.headers" 2>/dev/null | tr -d '\r') $(jq -r .pull_request.head.sha "$d.body" 2>/dev/null)"
  show "X-Gitea-Event-Type" "$(sed -n 's/^X-Gitea-Event-Type: //Ip' "$d.headers" 2>/dev/null | tr -d '\r')"
  show payload "$(jq -c '{action, number, keys: keys, before, after, head: .pull_request.head.sha}' "$d.body" 2>/dev/null)"
  call "$t_maint" PATCH "/repos/$repo/pulls/$pr2" '{"state":"closed"}'
  d=$(delivery ".number == $pr2 and .action == \"closed\"")
  check "closing it: action closed" closed "$(jq -r .action "$d.body" 2>/dev/null)"
  "${g[@]}" checkout -q "$PR_BRANCH"

  call "$t_admin" GET "/repos/$repo/hooks/$hook_id"
  show "hook after deliveries" "$(jq -c '{id, active, updated_at}' <<<"$body")"
  call "$t_admin" DELETE "/repos/$repo/hooks/$hook_id"
  check "DELETE hook" 204 "$code"
  kill "$listener" 2>/dev/null || true
  trap - EXIT
  [ "$failures" -eq 0 ] || die "$failures check(s) failed"
  say "all checks passed on Gitea $(jq -r .version "$json")"
}

case $cmd in
start)
  if live_pid >/dev/null && [ -f "$json" ] && answers "$(jq -r .base_url "$json")"; then
    cat "$json"
    exit 0
  fi
  if [ -n "$(ls -A "$dir")" ] && [ ! -f "$dir/.ccci-forge" ]; then
    die "$dir is neither empty nor an earlier test forge; refusing to use it"
  fi
  stop_instance
  trap stop_unless_started EXIT
  find "$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  touch "$dir/.ccci-forge"
  bin=$("$here/build-forge.sh")
  t_start=$EPOCHREALTIME
  start_server
  if [ -n "${FORGE_OWNER_PID:-}" ]; then
    if ! [[ $FORGE_OWNER_PID =~ ^[0-9]+$ ]] || ! kill -0 "$FORGE_OWNER_PID" 2>/dev/null; then
      die "FORGE_OWNER_PID=$FORGE_OWNER_PID is not a running process"
    fi
    setsid bash "$here/forge.sh" watch "$dir" "$FORGE_OWNER_PID" </dev/null >/dev/null 2>&1 &
    echo $! >"$watchdog_pidfile"
  fi
  populate
  trap - EXIT
  say "instance set up in $(ms_since "$t_start") ms: $(jq -r .base_url "$json")"
  cat "$json"
  ;;
watch)
  # Internal: stops the instance once the process that started it is gone, so a test killed
  # before its clean-up leaves no server behind. Exits by itself when the instance is stopped.
  owner=${3:?}
  while kill -0 "$owner" 2>/dev/null && live_pid >/dev/null; do sleep 1; done
  stop_instance
  ;;
stop)
  [ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || [ -f "$dir/.ccci-forge" ] \
    || die "$dir is not a test forge"
  stop_instance
  ;;
status)
  live_pid >/dev/null && [ -f "$json" ] && answers "$(jq -r .base_url "$json")"
  ;;
selftest)
  if [ ! -f "$json" ] || ! live_pid >/dev/null; then
    die "no running instance in $dir: run '$0 start $dir' first"
  fi
  selftest
  ;;
*) usage ;;
esac
