# shellcheck shell=bash
# What pgapp's CGI scripts share: the database connection, answers, form parameters.
set -uf
. /usr/local/lib/pgapp/env.sh

# respond STATUS [LINE...]: answers with STATUS and the lines as a text/plain body, and exits.
# busybox httpd turns a first `Status:` header into the status line.
respond() {
  local status=$1
  shift
  printf 'Status: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n' "$status"
  [ $# -eq 0 ] || printf '%s\n' "$@"
  exit 0
}

# respond_html STATUS HTML: answers with an HTML body, and exits.
respond_html() {
  printf 'Status: %s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n%s\n' "$1" "$2"
  exit 0
}

# param NAME FORM: the value of NAME in an application/x-www-form-urlencoded FORM; fails when
# absent. Values are not decoded: pgapp accepts only characters that need no encoding.
param() {
  local pair IFS='&'
  for pair in $2; do
    if [ "${pair%%=*}" = "$1" ] && [ "$pair" != "$1" ]; then
      printf '%s' "${pair#*=}"
      return 0
    fi
  done
  return 1
}

# valid WORD: whether WORD may be a key or a value.
valid() { [[ $1 =~ ^[A-Za-z0-9._:-]{1,200}$ ]]; }

sql() { psql -X -v ON_ERROR_STOP=1 -qtA "$@" 2>&1; }
