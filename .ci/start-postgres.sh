#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the tests and print the URL to use.
# Installs nothing: needs the Debian `postgresql` package (apt-get install -y postgresql).
#
#   eval "$(.ci/start-postgres.sh)"     # exports TUNESAFE_TEST_PG_URL in the calling shell
#   . .ci/start-postgres.sh             # same, when sourced
#
# The data dir is a fresh temporary folder (trust auth, loopback only, nothing persistent); the server
# runs as a non-root user (postgres refuses root). Stop it with: pg_ctl -D "$TUNESAFE_PG_DATA" stop
# (as that user). Progress goes to stderr; stdout carries only the export line.
set -euo pipefail

bindir=""
for candidate in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent)")" /usr/lib/postgresql/*/bin; do
  if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then bindir="$candidate"; fi
done
if [[ -z "$bindir" ]]; then
  echo "start-postgres: no initdb/pg_ctl found; install the Debian package: apt-get install -y postgresql" >&2
  exit 1
fi

run_as=()
if [[ "$(id -u)" == "0" ]]; then
  id postgres >/dev/null 2>&1 || { echo "start-postgres: running as root but no 'postgres' user" >&2; exit 1; }
  run_as=(runuser -u postgres --)
fi

port="${TUNESAFE_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
data="$(mktemp -d "${TMPDIR:-/tmp}/tunesafe-pg.XXXXXX")"
[[ ${#run_as[@]} -gt 0 ]] && chown postgres "$data"

"${run_as[@]}" "$bindir/initdb" -D "$data" -U tunesafe --auth=trust --no-sync >&2
"${run_as[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
  -o "-h 127.0.0.1 -p $port -k $data -c fsync=off -c full_page_writes=off" start >&2
"${run_as[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U tunesafe tunesafe_test >&2

url="postgresql://tunesafe@127.0.0.1:$port/tunesafe_test"
export TUNESAFE_TEST_PG_URL="$url" TUNESAFE_PG_DATA="$data"
echo "start-postgres: server on 127.0.0.1:$port, data in $data" >&2
echo "export TUNESAFE_TEST_PG_URL=$url TUNESAFE_PG_DATA=$data"
