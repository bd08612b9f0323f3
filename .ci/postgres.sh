#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the store tests; print its URL, then on a
# second line the command that stops it and removes its data (.ci/run runs it when it ends).
# Installs the Debian package when the server binaries are missing. Runs the server as the
# `postgres` user (initdb refuses root); data lives in a temporary folder.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=$(mktemp -d /tmp/kw-pg.XXXXXX)
chown postgres "$data"
port=${KW_PG_PORT:-54329}
su postgres -s /bin/sh -c "$bin/initdb -D $data -A trust -U postgres" >/dev/null
su postgres -s /bin/sh -c "$bin/pg_ctl -D $data -l $data/server.log -w \
    -o '-c listen_addresses=127.0.0.1 -p $port -k $data' start" >/dev/null
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
echo "su postgres -s /bin/sh -c '$bin/pg_ctl -D $data -m fast stop' >/dev/null 2>&1; rm -rf $data"
