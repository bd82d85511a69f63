#!/bin/bash
# `/`: an HTML page with the app's version and its rows (busybox httpd runs
# /cgi-bin/index.cgi for a directory without index.html).
. /usr/local/lib/pgapp/cgi.sh

table=$(psql -X -v ON_ERROR_STOP=1 -q -H -P footer=off <<<'SELECT * FROM items ORDER BY key;' 2>&1) ||
  respond "503 Service Unavailable" "$table"
respond_html "200 OK" "<!doctype html>
<title>pgapp ${PGAPP_VERSION}</title>
<h1>pgapp ${PGAPP_VERSION}</h1>
${table}"
